/* base64 through libcrypto: round trips of every length around the group boundaries,
 * the URL-safe alphabet, missing padding and whitespace, and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "base/b64.h"

static void test_known_values(void **state)
{
    char out[64];
    assert_int_equal(b64_encode("decode-0", 8, out, sizeof out), 12);
    assert_string_equal(out, "ZGVjb2RlLTA=");
    assert_int_equal(b64_encode("", 0, out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(b64_decode("ZGVjb2RlLTA=", 12, out, sizeof out), 8);
    assert_string_equal(out, "decode-0");
    assert_int_equal(b64_decode("ZGVjb2RlLTA", 11, out, sizeof out), 8); /* no padding */
    assert_string_equal(out, "decode-0");
    assert_int_equal(b64_decode("ZGVj\nb2Rl LTA=\n", 16, out, sizeof out), 8); /* PEM-style */
    assert_int_equal(b64_decode("-_-_", 4, out, sizeof out), 3); /* URL-safe == "+/+/" */
    char std[8];
    assert_int_equal(b64_decode("+/+/", 4, std, sizeof std), 3);
    assert_memory_equal(out, std, 3);
}

static void test_round_trips(void **state)
{
    unsigned char in[40];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof in; n++) {
        char enc[80], dec[64];
        size_t e = b64_encode(in, n, enc, sizeof enc);
        assert_int_equal(e, 4 * ((n + 2) / 3));
        assert_int_equal(b64_decode(enc, e, dec, sizeof dec), n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_refusals(void **state)
{
    char out[8];
    assert_int_equal(b64_decode("A", 1, out, sizeof out), (size_t)-1);     /* lone char */
    assert_int_equal(b64_decode("ab$d", 4, out, sizeof out), (size_t)-1);  /* bad char */
    assert_int_equal(b64_decode("ZGVjb2RlLTA=", 12, out, 4), (size_t)-1); /* too small */
    char small[4];
    assert_int_equal(b64_encode("abcd", 4, small, sizeof small), 0); /* needs 9 bytes */
    assert_string_equal(small, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
