/* Kubernetes client configuration: kubeconfig files (a colon list in $KUBECONFIG, the
 * first file to set a key wins) and the in-cluster service account. Everything in a
 * struct k8s_config is owned by it. Errors name the file and the field, as
 * "FILE: users[NAME].user.client-key: cannot read /x: No such file or directory".
 *
 * Supported user credentials: token, tokenFile, client-certificate(-data) +
 * client-key(-data). exec plugins and auth-provider are refused by name (docs). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/b64.h"
#include "base/buf.h"
#include "base/yaml.h"
#include "k8s/k8s.h"

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

void k8s_config_free(struct k8s_config *c)
{
    free(c->server);
    free(c->ca_pem);
    free(c->token);
    free(c->token_file);
    free(c->client_cert_pem);
    free(c->client_key_pem);
    free(c->namespace);
    free(c->source);
    memset(c, 0, sizeof *c);
}

/* base64 (padding optional, whitespace ignored) -> a NUL-terminated copy, or NULL. */
static char *b64_copy(const char *in)
{
    size_t len = strlen(in);
    char *out = xmalloc(len / 4 * 3 + 4);
    if (b64_decode(in, len, out, len / 4 * 3 + 4) == (size_t)-1) {
        free(out);
        return NULL;
    }
    return out;
}

/* A path in a kubeconfig is relative to the file's directory. */
static char *resolve_path(const char *base_file, const char *p)
{
    if (p[0] == '/' || !base_file)
        return xstrdup(p);
    const char *slash = strrchr(base_file, '/');
    if (!slash)
        return xstrdup(p);
    return xasprintf("%.*s/%s", (int)(slash - base_file), base_file, p);
}

static char *read_text(const char *path, char *why, size_t whylen)
{
    struct buf b = BUF_INIT;
    int e = buf_read_file(&b, path);
    if (e) {
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(e));
        buf_free(&b);
        return NULL;
    }
    if (!b.data)
        return xstrdup("");
    return buf_steal(&b, NULL);
}

/* "-data" (base64) or the file form of a PEM field. *out stays NULL when neither is set.
 * false with why. */
static bool pem_field(const json_t *obj, const char *key, const char *path, char **out,
                      char *why, size_t whylen)
{
    char dkey[96];
    snprintf(dkey, sizeof dkey, "%s-data", key);
    const json_t *data = json_object_get(obj, dkey);
    const json_t *file = json_object_get(obj, key);
    if (data && !json_is_null(data)) {
        if (!json_is_string(data)) {
            snprintf(why, whylen, "%s: must be a base64 string", dkey);
            return false;
        }
        *out = b64_copy(json_string_value(data));
        if (!*out) {
            snprintf(why, whylen, "%s: not valid base64", dkey);
            return false;
        }
        return true;
    }
    if (file && !json_is_null(file)) {
        if (!json_is_string(file)) {
            snprintf(why, whylen, "%s: must be a file path", key);
            return false;
        }
        char *p = resolve_path(path, json_string_value(file));
        char inner[400];
        *out = read_text(p, inner, sizeof inner);
        free(p);
        if (!*out) {
            snprintf(why, whylen, "%s: %s", key, inner);
            return false;
        }
    }
    return true;
}

/* The entry named `name` of a named list (clusters, users, contexts). */
static const json_t *named(const json_t *doc, const char *list, const char *name)
{
    size_t i;
    const json_t *item;
    json_array_foreach(json_object_get(doc, list), i, item)
    {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (n && !strcmp(n, name))
            return item;
    }
    return NULL;
}

static bool fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool fail(char *err, size_t errlen, const char *path, const char *fmt, ...)
{
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s: %s", path, msg);
    return false;
}

/* Fills out from the merged documents docs[0..n) (first wins), paths[i] naming each. */
static bool from_docs(json_t **docs, const char **paths, size_t n, const char *context,
                      struct k8s_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *ctx_name = context;
    for (size_t i = 0; i < n && !ctx_name; i++)
        ctx_name = json_string_value(json_object_get(docs[i], "current-context"));
    const char *first = n ? paths[0] : "kubeconfig";
    if (!ctx_name || !*ctx_name)
        return fail(err, errlen, first, "current-context: not set (and no --context given)");
    const json_t *ctx = NULL, *cluster = NULL, *user = NULL;
    const char *ctx_path = first, *cl_path = first, *user_path = first;
    for (size_t i = 0; i < n && !ctx; i++)
        if ((ctx = named(docs[i], "contexts", ctx_name)))
            ctx_path = paths[i];
    if (!ctx)
        return fail(err, errlen, first, "contexts[%s]: no context of that name", ctx_name);
    const json_t *c = json_object_get(ctx, "context");
    const char *cl_name = json_string_value(json_object_get(c, "cluster"));
    const char *user_name = json_string_value(json_object_get(c, "user"));
    const char *ns = json_string_value(json_object_get(c, "namespace"));
    if (!cl_name)
        return fail(err, errlen, ctx_path, "contexts[%s].context.cluster: required string",
                    ctx_name);
    for (size_t i = 0; i < n && !cluster; i++)
        if ((cluster = named(docs[i], "clusters", cl_name)))
            cl_path = paths[i];
    if (!cluster)
        return fail(err, errlen, ctx_path, "clusters[%s]: no cluster of that name (context %s)",
                    cl_name, ctx_name);
    const json_t *cl = json_object_get(cluster, "cluster");
    const char *server = json_string_value(json_object_get(cl, "server"));
    if (!server || strncmp(server, "http", 4) != 0)
        return fail(err, errlen, cl_path, "clusters[%s].cluster.server: required http(s) URL",
                    cl_name);
    char why[512] = "";
    out->server = xstrdup(server);
    size_t sl = strlen(out->server);
    while (sl > 0 && out->server[sl - 1] == '/')
        out->server[--sl] = '\0';
    out->insecure = json_is_true(json_object_get(cl, "insecure-skip-tls-verify"));
    if (!pem_field(cl, "certificate-authority", cl_path, &out->ca_pem, why, sizeof why)) {
        fail(err, errlen, cl_path, "clusters[%s].cluster.%s", cl_name, why);
        k8s_config_free(out);
        return false;
    }
    if (user_name) {
        for (size_t i = 0; i < n && !user; i++)
            if ((user = named(docs[i], "users", user_name)))
                user_path = paths[i];
        if (!user) {
            fail(err, errlen, ctx_path, "users[%s]: no user of that name (context %s)",
                 user_name, ctx_name);
            k8s_config_free(out);
            return false;
        }
        const json_t *u = json_object_get(user, "user");
        if (json_object_get(u, "exec") || json_object_get(u, "auth-provider")) {
            fail(err, errlen, user_path,
                 "users[%s].user: %s credentials are not supported; use a token, tokenFile or "
                 "a client certificate",
                 user_name, json_object_get(u, "exec") ? "exec" : "auth-provider");
            k8s_config_free(out);
            return false;
        }
        const char *tok = json_string_value(json_object_get(u, "token"));
        const char *tokf = json_string_value(json_object_get(u, "tokenFile"));
        if (tok)
            out->token = xstrdup(tok);
        else if (tokf)
            out->token_file = resolve_path(user_path, tokf);
        if (!pem_field(u, "client-certificate", user_path, &out->client_cert_pem, why,
                       sizeof why) ||
            !pem_field(u, "client-key", user_path, &out->client_key_pem, why, sizeof why)) {
            fail(err, errlen, user_path, "users[%s].user.%s", user_name, why);
            k8s_config_free(out);
            return false;
        }
        if (!out->client_cert_pem != !out->client_key_pem) {
            fail(err, errlen, user_path,
                 "users[%s].user: client-certificate and client-key go together", user_name);
            k8s_config_free(out);
            return false;
        }
    }
    out->namespace = xstrdup(ns && *ns ? ns : "default");
    out->source = xstrdup(first);
    return true;
}

bool k8s_config_from_kubeconfig(const char *text, size_t len, const char *path,
                                const char *context, struct k8s_config *out, char *err,
                                size_t errlen)
{
    struct errinfo ye;
    json_t *doc = yaml_parse(text, len, path, &ye);
    if (!doc) {
        snprintf(err, errlen, "%s", ye.msg);
        return false;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        snprintf(err, errlen, "%s: not a kubeconfig (expected a mapping)", path);
        return false;
    }
    bool ok = from_docs(&doc, &path, 1, context, out, err, errlen);
    json_decref(doc);
    return ok;
}

bool k8s_config_in_cluster(const char *sa_dir, struct k8s_config *out, char *err,
                           size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port) {
        snprintf(err, errlen, "not in a cluster: KUBERNETES_SERVICE_HOST and "
                              "KUBERNETES_SERVICE_PORT must both be set");
        return false;
    }
    const char *dir = sa_dir ? sa_dir : SA_DIR;
    bool v6 = strchr(host, ':') != NULL;
    out->server = xasprintf("https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
    out->token_file = xasprintf("%s/token", dir);
    char *ca = xasprintf("%s/ca.crt", dir);
    char why[400];
    out->ca_pem = read_text(ca, why, sizeof why);
    free(ca);
    char *probe = read_text(out->token_file, why, sizeof why);
    if (!out->ca_pem || !probe) {
        snprintf(err, errlen, "in-cluster service account: %s", why);
        free(probe);
        k8s_config_free(out);
        return false;
    }
    free(probe);
    char *nsf = xasprintf("%s/namespace", dir);
    char *ns = read_text(nsf, why, sizeof why);
    free(nsf);
    if (ns) {
        ns[strcspn(ns, " \r\n\t")] = '\0';
    }
    out->namespace = ns && *ns ? ns : xstrdup("default");
    if (ns && !*ns)
        free(ns);
    out->source = xstrdup("in-cluster");
    return true;
}

/* $KUBECONFIG-style colon list, or one file. */
static bool load_files(const char *list, const char *context, struct k8s_config *out,
                       char *err, size_t errlen)
{
    char *copy = xstrdup(list);
    json_t *docs[16];
    const char *paths[16];
    size_t n = 0;
    bool ok = true;
    for (char *save = NULL, *p = strtok_r(copy, ":", &save); p && ok && n < 16;
         p = strtok_r(NULL, ":", &save)) {
        if (!*p)
            continue;
        struct buf b = BUF_INIT;
        int e = buf_read_file(&b, p);
        if (e) {
            buf_free(&b);
            if (e == ENOENT && strchr(list, ':'))
                continue; /* like kubectl: missing files in a list are skipped */
            snprintf(err, errlen, "%s: cannot read kubeconfig: %s", p, strerror(e));
            ok = false;
            break;
        }
        struct errinfo ye;
        json_t *doc = yaml_parse(b.data ? b.data : "", b.len, p, &ye);
        buf_free(&b);
        if (!doc || !json_is_object(doc)) {
            if (doc)
                snprintf(err, errlen, "%s: not a kubeconfig (expected a mapping)", p);
            else
                snprintf(err, errlen, "%s", ye.msg);
            json_decref(doc);
            ok = false;
            break;
        }
        docs[n] = doc;
        paths[n] = p;
        n++;
    }
    if (ok && n == 0) {
        snprintf(err, errlen, "%s: no kubeconfig file found", list);
        ok = false;
    }
    if (ok)
        ok = from_docs(docs, paths, n, context, out, err, errlen);
    if (ok) { /* source names the list as given, not a pointer into copy */
        free(out->source);
        out->source = xstrdup(list);
    }
    for (size_t i = 0; i < n; i++)
        json_decref(docs[i]);
    free(copy);
    return ok;
}

bool k8s_config_load(const char *kubeconfig, const char *context, struct k8s_config *out,
                     char *err, size_t errlen)
{
    if (kubeconfig && *kubeconfig)
        return load_files(kubeconfig, context, out, err, errlen);
    const char *env = getenv("KUBECONFIG");
    if (env && *env)
        return load_files(env, context, out, err, errlen);
    if (getenv("KUBERNETES_SERVICE_HOST"))
        return k8s_config_in_cluster(NULL, out, err, errlen);
    const char *home = getenv("HOME");
    char *path = xasprintf("%s/.kube/config", home && *home ? home : "");
    bool ok = load_files(path, context, out, err, errlen);
    if (!ok && strstr(err, "cannot read kubeconfig"))
        snprintf(err, errlen,
                 "no Kubernetes configuration: give --kubeconfig, set KUBECONFIG, run in a "
                 "cluster, or create %s",
                 path);
    free(path);
    return ok;
}
