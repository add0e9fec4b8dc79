/* The Gateway API Inference Extension conformance-test plugins that llm-d's EPP binary
 * registers (they exist for GAIE's conformance suite, not for production routing):
 *   - header-based-testing-filter: keeps the candidates named in the request header
 *     test-epp-endpoint-selection ("IP" or "IP:port", comma-separated, IPv6 bracketed);
 *   - destination-endpoint-served-verifier: on the response headers, copies the
 *     endpoint Envoy reports having served the request (metadata envoy.lb,
 *     x-gateway-destination-endpoint-served) into x-conformance-test-served-endpoint.
 * Both take no parameters (llm-d ignores any given). They own no state. */
#include <stdio.h>
#include <string.h>

#include "sched/sched_internal.h"

#define SELECT_HEADER "test-epp-endpoint-selection"
#define SERVED_HEADER "x-conformance-test-served-endpoint"

static int ignore_params_create(const json_t *params, void **state, struct sched_perr *err)
{
    (void)params;
    (void)err;
    *state = NULL;
    return 0;
}

/* A [p, e) string view. */
struct sv {
    const char *p;
    size_t n;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static struct sv trim_space(struct sv s)
{
    while (s.n && is_space(s.p[0])) {
        s.p++;
        s.n--;
    }
    while (s.n && is_space(s.p[s.n - 1]))
        s.n--;
    return s;
}

/* Strips every leading and trailing '[' / ']' (Go's strings.Trim(s, "[]")). */
static struct sv trim_brackets(struct sv s)
{
    while (s.n && (s.p[0] == '[' || s.p[0] == ']')) {
        s.p++;
        s.n--;
    }
    while (s.n && (s.p[s.n - 1] == '[' || s.p[s.n - 1] == ']'))
        s.n--;
    return s;
}

static const char *mem_chr(struct sv s, char c)
{
    return s.n ? memchr(s.p, c, s.n) : NULL;
}

/* Go's net.SplitHostPort: "host:port" or "[host]:port" (brackets removed). false when it
 * is not one (no port, too many colons, stray brackets). */
static bool split_host_port(struct sv s, struct sv *host, struct sv *port)
{
    const char *last = NULL;
    for (size_t i = 0; i < s.n; i++)
        if (s.p[i] == ':')
            last = s.p + i;
    if (!last)
        return false;
    size_t i = (size_t)(last - s.p), j = 0, k = 0;
    if (s.n && s.p[0] == '[') {
        const char *rb = mem_chr(s, ']');
        if (!rb)
            return false;
        size_t end = (size_t)(rb - s.p);
        if (end + 1 != i) /* "[h]" alone, "[h]x:p", "[h]:p:q" */
            return false;
        *host = (struct sv){s.p + 1, end - 1};
        j = 1;
        k = end + 1;
    } else {
        *host = (struct sv){s.p, i};
        if (mem_chr(*host, ':'))
            return false;
    }
    if (mem_chr((struct sv){s.p + j, s.n - j}, '['))
        return false;
    if (mem_chr((struct sv){s.p + k, s.n - k}, ']'))
        return false;
    *port = (struct sv){s.p + i + 1, s.n - i - 1};
    return true;
}

static bool sv_eq(struct sv a, const char *b)
{
    return strlen(b) == a.n && (a.n == 0 || !memcmp(a.p, b, a.n));
}

static bool sv_eq2(struct sv a, struct sv b)
{
    return a.n == b.n && (a.n == 0 || !memcmp(a.p, b.p, a.n));
}

/* An endpoint's address as llm-d's filter normalizes it: brackets trimmed. */
static struct sv ep_ip(const struct sched_endpoint *e)
{
    const char *h = sched_endpoint_host(e);
    return trim_brackets(trim_space((struct sv){h ? h : "", h ? strlen(h) : 0}));
}

/* llm-d's HeaderBasedTestingFilter: for each header item in order, an "IP" item names the
 * last candidate with that IP, an "IP:port" item the candidate with exactly that IP and
 * port; each IP is kept once (the first item naming it wins). No header, or a blank one,
 * keeps nothing. */
static size_t header_filter(struct sched_plugin *self, struct sched_cycle *c, const uint16_t *in,
                            size_t n, uint16_t *out)
{
    (void)self;
    const char *hv = c->req->headers ? http_headers_get(c->req->headers, SELECT_HEADER) : NULL;
    if (!hv)
        return 0;
    struct sv all = trim_space((struct sv){hv, strlen(hv)});
    if (!all.n)
        return 0;
    size_t m = 0;
    const char *p = hv, *end = hv + strlen(hv);
    while (p <= end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *e = comma ? comma : end;
        struct sv item = trim_space((struct sv){p, (size_t)(e - p)});
        p = e + 1;
        if (!item.n)
            continue;
        struct sv host, port = {"", 0};
        if (!split_host_port(item, &host, &port)) {
            host = item;
            port = (struct sv){"", 0};
        }
        host = trim_brackets(host);
        int found = -1;
        for (size_t i = 0; i < n; i++) {
            const struct sched_endpoint *ep = c->eps[in[i]];
            struct sv ip = ep_ip(ep);
            if (!ip.n || !sv_eq2(ip, host))
                continue;
            if (port.n) {
                char ps[16];
                snprintf(ps, sizeof ps, "%d", sched_endpoint_port(ep));
                if (sv_eq(port, ps)) {
                    found = (int)i; /* ip:port keys are unique per endpoint in practice */
                    break;
                }
            } else {
                found = (int)i; /* the last endpoint with this IP, as llm-d's map keeps */
            }
        }
        if (found < 0)
            continue;
        struct sv fip = ep_ip(c->eps[in[found]]);
        bool dup = false;
        for (size_t k = 0; k < m && !dup; k++)
            dup = sv_eq2(ep_ip(c->eps[out[k]]), fip);
        if (!dup)
            out[m++] = in[found];
        if (!comma)
            break;
    }
    return m;
}

const struct sched_plugin_type sched_header_based_testing_filter = {
    .type = "header-based-testing-filter",
    .kind = SCHED_PK_FILTER,
    .create = ignore_params_create,
    .filter = header_filter,
};

static bool served_header(struct sched_plugin *self, const struct sched_lb_meta *lb,
                          struct sched_resp_header *out)
{
    (void)self;
    out->name = SERVED_HEADER;
    const char *v;
    if (!lb || !lb->has_lb)
        v = "fail: missing envoy lb metadata";
    else if (!lb->served)
        v = "fail: missing destination endpoint served metadata";
    else
        v = lb->served;
    snprintf(out->value, sizeof out->value, "%s", v);
    return true;
}

const struct sched_plugin_type sched_destination_endpoint_served_verifier = {
    .type = "destination-endpoint-served-verifier",
    .kind = SCHED_PK_REPORTER,
    .create = ignore_params_create,
    .response_header = served_header,
};

size_t sched_response_headers(const struct sched *s, const struct sched_lb_meta *lb,
                              struct sched_resp_header *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; s && i < s->n_plugins && n < max; i++)
        if (s->plugins[i]->t->response_header &&
            s->plugins[i]->t->response_header(s->plugins[i], lb, &out[n]))
            n++;
    return n;
}

bool sched_has_response_headers(const struct sched *s)
{
    for (size_t i = 0; s && i < s->n_plugins; i++)
        if (s->plugins[i]->t->response_header)
            return true;
    return false;
}
