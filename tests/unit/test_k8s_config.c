/* kubeconfig and in-cluster configuration: contexts, data vs file fields (relative to
 * the kubeconfig), tokenFile, the $KUBECONFIG list where the first file wins, and errors
 * that name the file and the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8s/k8s.h"

static char dir[64];

static void write_file(const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static const char *KC =
    "apiVersion: v1\n"
    "kind: Config\n"
    "current-context: dev\n"
    "clusters:\n"
    "- name: c1\n"
    "  cluster:\n"
    "    server: https://127.0.0.1:6443/\n"
    "    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
    "- name: c2\n"
    "  cluster:\n"
    "    server: https://10.0.0.1\n"
    "    certificate-authority: ca.pem\n"
    "    insecure-skip-tls-verify: true\n"
    "users:\n"
    "- name: u1\n"
    "  user:\n"
    "    token: abc123\n"
    "- name: u2\n"
    "  user:\n"
    "    tokenFile: tok\n"
    "    client-certificate: crt.pem\n"
    "    client-key-data: a2V5\n"
    "contexts:\n"
    "- name: dev\n"
    "  context: {cluster: c1, user: u1, namespace: team-a}\n"
    "- name: other\n"
    "  context: {cluster: c2, user: u2}\n";

static void test_current_context(void **state)
{
    struct k8s_config c;
    char err[512];
    assert_true(k8s_config_from_kubeconfig(KC, strlen(KC), "/x/kc", NULL, &c, err, sizeof err));
    assert_string_equal(c.server, "https://127.0.0.1:6443"); /* trailing slash dropped */
    assert_string_equal(c.ca_pem, "-----BEGIN CERTIFICATE-----\n");
    assert_string_equal(c.token, "abc123");
    assert_null(c.token_file);
    assert_string_equal(c.namespace, "team-a");
    assert_false(c.insecure);
    k8s_config_free(&c);
}

static void test_named_context_files_relative(void **state)
{
    write_file("ca.pem", "CA-PEM\n");
    write_file("crt.pem", "CERT-PEM\n");
    char path[256];
    snprintf(path, sizeof path, "%s/kubeconfig", dir);
    struct k8s_config c;
    char err[512];
    assert_true(k8s_config_from_kubeconfig(KC, strlen(KC), path, "other", &c, err, sizeof err));
    assert_string_equal(c.server, "https://10.0.0.1");
    assert_string_equal(c.ca_pem, "CA-PEM\n");
    assert_true(c.insecure);
    char tok[256];
    snprintf(tok, sizeof tok, "%s/tok", dir);
    assert_string_equal(c.token_file, tok);
    assert_string_equal(c.client_cert_pem, "CERT-PEM\n");
    assert_string_equal(c.client_key_pem, "key");
    assert_string_equal(c.namespace, "default");
    k8s_config_free(&c);
}

static void expect_error(const char *text, const char *ctx, const char *needle)
{
    struct k8s_config c;
    char err[512] = "";
    assert_false(k8s_config_from_kubeconfig(text, strlen(text), "/etc/kc", ctx, &c, err,
                                            sizeof err));
    if (!strstr(err, needle) || strncmp(err, "/etc/kc", 7) != 0)
        fail_msg("error '%s' lacks '%s' or the file name", err, needle);
}

static void test_errors_name_file_and_field(void **state)
{
    expect_error(KC, "nope", "contexts[nope]");
    expect_error("clusters: []\n", NULL, "current-context");
    expect_error("current-context: a\ncontexts:\n- name: a\n  context: {cluster: x}\n", NULL,
                 "clusters[x]");
    expect_error("current-context: a\ncontexts:\n- name: a\n  context: {cluster: x}\n"
                 "clusters:\n- name: x\n  cluster: {server: ftp://h}\n",
                 NULL, "clusters[x].cluster.server");
    expect_error("current-context: a\ncontexts:\n- name: a\n  context: {cluster: x, user: u}\n"
                 "clusters:\n- name: x\n  cluster: {server: https://h}\n"
                 "users:\n- name: u\n  user: {exec: {command: aws}}\n",
                 NULL, "exec credentials are not supported");
    expect_error("current-context: a\ncontexts:\n- name: a\n  context: {cluster: x, user: u}\n"
                 "clusters:\n- name: x\n  cluster: {server: https://h}\n"
                 "users:\n- name: u\n  user: {client-certificate-data: 'a2V5'}\n",
                 NULL, "client-certificate and client-key go together");
    expect_error("current-context: a\ncontexts:\n- name: a\n  context: {cluster: x}\n"
                 "clusters:\n- name: x\n  cluster: {server: https://h, "
                 "certificate-authority: /nonexistent/ca}\n",
                 NULL, "certificate-authority: cannot read /nonexistent/ca");
    expect_error("- just\n- a list\n", NULL, "not a kubeconfig");
    expect_error("a: [unclosed\n", NULL, "/etc/kc:");
}

static void test_kubeconfig_list_first_wins(void **state)
{
    write_file("a.yaml", "current-context: first\n"
                         "contexts:\n- name: first\n  context: {cluster: ca, user: ua}\n"
                         "users:\n- name: ua\n  user: {token: from-a}\n");
    write_file("b.yaml", "current-context: second\n"
                         "contexts:\n- name: first\n  context: {cluster: cb}\n"
                         "clusters:\n- name: ca\n  cluster: {server: 'https://a:1'}\n"
                         "users:\n- name: ua\n  user: {token: from-b}\n");
    char list[600];
    snprintf(list, sizeof list, "%s/a.yaml:%s/missing.yaml:%s/b.yaml", dir, dir, dir);
    struct k8s_config c;
    char err[512];
    assert_true(k8s_config_load(list, NULL, &c, err, sizeof err));
    assert_string_equal(c.server, "https://a:1");
    assert_string_equal(c.token, "from-a");
    k8s_config_free(&c);
    /* An explicit single file that is missing is an error naming it. */
    snprintf(list, sizeof list, "%s/missing.yaml", dir);
    assert_false(k8s_config_load(list, NULL, &c, err, sizeof err));
    assert_non_null(strstr(err, "missing.yaml"));
}

static void test_in_cluster(void **state)
{
    write_file("token", "tok-1\n");
    write_file("ca.crt", "CLUSTER-CA\n");
    write_file("namespace", "llm\n");
    unsetenv("KUBERNETES_SERVICE_HOST");
    struct k8s_config c;
    char err[512];
    assert_false(k8s_config_in_cluster(dir, &c, err, sizeof err));
    assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_true(k8s_config_in_cluster(dir, &c, err, sizeof err));
    assert_string_equal(c.server, "https://[fd00::1]:443");
    assert_string_equal(c.ca_pem, "CLUSTER-CA\n");
    assert_string_equal(c.namespace, "llm");
    assert_non_null(strstr(c.token_file, "/token"));
    assert_null(c.token); /* read by the client, and again when it changes */
    k8s_config_free(&c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_query_escape(void **state)
{
    char out[64];
    k8s_query_escape("llm-d.ai/role=decode,a in (b)", out, sizeof out);
    assert_string_equal(out, "llm-d.ai%2Frole%3Ddecode%2Ca%20in%20%28b%29");
    k8s_query_escape("x", out, 2);
    assert_string_equal(out, "");
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/tandem-k8scfg-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_context),
        cmocka_unit_test(test_named_context_files_relative),
        cmocka_unit_test(test_errors_name_file_and_field),
        cmocka_unit_test(test_kubeconfig_list_first_wins),
        cmocka_unit_test(test_in_cluster),
        cmocka_unit_test(test_query_escape),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
