/* url_parse: the accepted forms, defaults, and the rejections users will hit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "net/url.h"

static void test_host_port(void **state)
{
    struct url u;
    const char *why = NULL;
    assert_true(url_parse("10.0.0.5:8200", 80, &u, &why));
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 8200);
    assert_string_equal(u.path, "/");
    assert_false(u.tls);

    assert_true(url_parse("localhost", 8000, &u, &why));
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 8000);
}

static void test_ipv6(void **state)
{
    struct url u;
    const char *why = NULL;
    assert_true(url_parse("[::1]:9000", 80, &u, &why));
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 9000);
    assert_true(url_parse("http://[fe80::1%25eth0]/x", 81, &u, &why));
    assert_string_equal(u.host, "fe80::1%25eth0");
    assert_int_equal(u.port, 81);
    assert_string_equal(u.path, "/x");
    assert_true(url_parse("[2001:db8::2]", 7, &u, &why));
    assert_int_equal(u.port, 7);

    assert_false(url_parse("::1:9000", 80, &u, &why));
    assert_non_null(strstr(why, "brackets"));
    assert_false(url_parse("[::1", 80, &u, &why));
    assert_false(url_parse("[::1]x", 80, &u, &why));
    assert_false(url_parse("[]:80", 80, &u, &why));
}

static void test_scheme_and_path(void **state)
{
    struct url u;
    const char *why = NULL;
    assert_true(url_parse("http://prefill-0.svc:8000/v1/completions?x=1", 80, &u, &why));
    assert_string_equal(u.host, "prefill-0.svc");
    assert_int_equal(u.port, 8000);
    assert_string_equal(u.path, "/v1/completions?x=1");
    assert_false(u.tls);

    assert_true(url_parse("HTTPS://example.com", 443, &u, &why));
    assert_true(u.tls);
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/");

    assert_true(url_parse("http://h:1?q=2#frag", 80, &u, &why));
    assert_string_equal(u.path, "/?q=2");
    assert_true(url_parse("http://h:1/a#frag", 80, &u, &why));
    assert_string_equal(u.path, "/a");
}

static void test_rejections(void **state)
{
    struct url u;
    const char *why = NULL;
    assert_false(url_parse("", 80, &u, &why));
    assert_false(url_parse(NULL, 80, &u, &why));
    assert_false(url_parse("ftp://h:1", 80, &u, &why));
    assert_non_null(strstr(why, "scheme"));
    assert_false(url_parse("h:0", 80, &u, &why));
    assert_false(url_parse("h:65536", 80, &u, &why));
    assert_false(url_parse("h:12a", 80, &u, &why));
    assert_false(url_parse("h:", 80, &u, &why));
    assert_false(url_parse(":80", 80, &u, &why));
    assert_false(url_parse("http://", 80, &u, &why));
    assert_false(url_parse("http://user@h:1/", 80, &u, &why));
    assert_false(url_parse("h:80/path", 80, &u, &why)); /* a path needs a scheme */
    assert_false(url_parse("bad host:80", 80, &u, &why));
    assert_false(url_parse("http://h:1/a b", 80, &u, &why));
    assert_false(url_parse("h", 0, &u, &why)); /* no port anywhere */
    assert_non_null(strstr(why, "port"));

    char longhost[400];
    memset(longhost, 'a', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    assert_false(url_parse(longhost, 80, &u, &why));
    assert_non_null(strstr(why, "too long"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_port),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_scheme_and_path),
        cmocka_unit_test(test_rejections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
