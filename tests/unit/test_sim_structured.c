/* Unit tests for src/sim/structured: every generated text parses and validates against
 * its schema (a small validator written here, independent of the generator) over many
 * seeds and schemas; output is deterministic; bad or unsupported schemas give errors
 * that name the keyword; recursion and size are bounded. */
#include <math.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/json.h"
#include "sim/structured.h"

/* --- validator ----------------------------------------------------------------------- */

static const json_t *v_root;
static char v_why[512];

static bool vfail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static bool vfail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v_why, sizeof v_why, fmt, ap);
    va_end(ap);
    return false;
}

static size_t utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

/* ECMA-ish pattern -> POSIX ERE: \d becomes [0-9], (?: becomes (. Enough for the test
 * patterns below. */
static bool pattern_matches(const char *pat, const char *s)
{
    char ere[512];
    size_t o = 0;
    for (const char *p = pat; *p && o + 8 < sizeof ere; p++) {
        if (p[0] == '\\' && p[1] == 'd') {
            memcpy(ere + o, "[0-9]", 5);
            o += 5;
            p++;
        } else if (p[0] == '(' && p[1] == '?' && p[2] == ':') {
            ere[o++] = '(';
            p += 2;
        } else {
            ere[o++] = *p;
        }
    }
    ere[o] = 0;
    regex_t re;
    if (regcomp(&re, ere, REG_EXTENDED | REG_NOSUB) != 0)
        return vfail("test pattern %s does not compile", ere);
    bool ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok ? true : vfail("'%s' does not match /%s/", s, pat);
}

static bool format_ok(const char *f, const char *s)
{
    if (!strcmp(f, "date"))
        return pattern_matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", s);
    if (!strcmp(f, "date-time"))
        return pattern_matches("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$", s);
    if (!strcmp(f, "email"))
        return pattern_matches("^[^@ ]+@[^@ ]+\\.[a-z]+$", s);
    if (!strcmp(f, "uuid"))
        return pattern_matches(
            "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", s);
    return true;
}

static bool validate(const json_t *inst, const json_t *s);

static const json_t *resolve(const char *ref)
{
    /* Only "#", "#/$defs/X" and "#/definitions/X" in these tests. */
    if (!strcmp(ref, "#"))
        return v_root;
    const char *slash = strrchr(ref, '/');
    const json_t *defs =
        json_object_get(v_root, strncmp(ref, "#/$defs/", 8) ? "definitions" : "$defs");
    return json_object_get(defs, slash + 1);
}

static bool type_ok(const json_t *inst, const char *t)
{
    if (!strcmp(t, "null"))
        return json_is_null(inst);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(inst);
    if (!strcmp(t, "integer"))
        return json_is_integer(inst) ||
               (json_is_real(inst) && json_real_value(inst) == floor(json_real_value(inst)));
    if (!strcmp(t, "number"))
        return json_is_number(inst);
    if (!strcmp(t, "string"))
        return json_is_string(inst);
    if (!strcmp(t, "array"))
        return json_is_array(inst);
    if (!strcmp(t, "object"))
        return json_is_object(inst);
    return false;
}

static bool validate_object(const json_t *inst, const json_t *s)
{
    const json_t *props = json_object_get(s, "properties");
    const json_t *addl = json_object_get(s, "additionalProperties");
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(s, "required"), i, r)
    {
        if (!json_object_get(inst, json_string_value(r)))
            return vfail("missing required '%s'", json_string_value(r));
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)inst, k, v)
    {
        const json_t *ps = json_object_get(props, k);
        if (ps) {
            if (!validate(v, ps))
                return false;
        } else if (json_is_false(addl)) {
            return vfail("additional property '%s'", k);
        } else if (json_is_object(addl) && !validate(v, addl)) {
            return false;
        }
    }
    const json_t *mn = json_object_get(s, "minProperties");
    const json_t *mx = json_object_get(s, "maxProperties");
    if (mn && (long long)json_object_size(inst) < json_integer_value(mn))
        return vfail("fewer than minProperties");
    if (mx && (long long)json_object_size(inst) > json_integer_value(mx))
        return vfail("more than maxProperties");
    return true;
}

static bool validate_array(const json_t *inst, const json_t *s)
{
    const json_t *prefix = json_object_get(s, "prefixItems");
    const json_t *items = json_object_get(s, "items");
    size_t n = json_array_size(inst);
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(inst, i);
        const json_t *sub = i < json_array_size(prefix) ? json_array_get(prefix, i) : items;
        if (json_is_false(sub))
            return vfail("item %zu not allowed", i);
        if (sub && !validate(e, sub))
            return false;
        if (json_is_true(json_object_get(s, "uniqueItems")))
            for (size_t j = 0; j < i; j++)
                if (json_equal(json_array_get(inst, j), e))
                    return vfail("items %zu and %zu are equal", j, i);
    }
    const json_t *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
    if (mn && (long long)n < json_integer_value(mn))
        return vfail("fewer than minItems");
    if (mx && (long long)n > json_integer_value(mx))
        return vfail("more than maxItems");
    return true;
}

static bool validate_string(const json_t *inst, const json_t *s)
{
    const char *str = json_string_value(inst);
    size_t len = utf8_len(str, json_string_length(inst));
    const json_t *mn = json_object_get(s, "minLength"), *mx = json_object_get(s, "maxLength");
    if (mn && (long long)len < json_integer_value(mn))
        return vfail("'%s' shorter than minLength", str);
    if (mx && (long long)len > json_integer_value(mx))
        return vfail("'%s' longer than maxLength", str);
    const json_t *pat = json_object_get(s, "pattern");
    if (pat && !pattern_matches(json_string_value(pat), str))
        return false;
    const json_t *fmt = json_object_get(s, "format");
    if (fmt && !format_ok(json_string_value(fmt), str))
        return vfail("'%s' is not a %s", str, json_string_value(fmt));
    return true;
}

static bool validate_number(const json_t *inst, const json_t *s)
{
    double x = json_number_value(inst);
    const json_t *v;
    if ((v = json_object_get(s, "minimum")) && x < json_number_value(v))
        return vfail("%g below minimum", x);
    if ((v = json_object_get(s, "maximum")) && x > json_number_value(v))
        return vfail("%g above maximum", x);
    if ((v = json_object_get(s, "exclusiveMinimum")) && json_is_number(v) &&
        x <= json_number_value(v))
        return vfail("%g not above exclusiveMinimum", x);
    if ((v = json_object_get(s, "exclusiveMaximum")) && json_is_number(v) &&
        x >= json_number_value(v))
        return vfail("%g not below exclusiveMaximum", x);
    if ((v = json_object_get(s, "multipleOf"))) {
        double q = x / json_number_value(v);
        if (fabs(q - round(q)) > 1e-9)
            return vfail("%g not a multiple of %g", x, json_number_value(v));
    }
    return true;
}

static bool validate(const json_t *inst, const json_t *s)
{
    if (json_is_true(s))
        return true;
    if (json_is_false(s))
        return vfail("schema false");
    const json_t *v;
    if ((v = json_object_get(s, "$ref")) && !validate(inst, resolve(json_string_value(v))))
        return false;
    size_t i;
    const json_t *b;
    json_array_foreach(json_object_get(s, "allOf"), i, b) if (!validate(inst, b)) return false;
    if ((v = json_object_get(s, "anyOf"))) {
        bool any = false;
        json_array_foreach(v, i, b) any = any || validate(inst, b);
        if (!any)
            return vfail("no anyOf branch matches");
    }
    if ((v = json_object_get(s, "oneOf"))) {
        int n = 0;
        json_array_foreach(v, i, b) n += validate(inst, b);
        if (n != 1)
            return vfail("%d oneOf branches match", n);
    }
    if ((v = json_object_get(s, "const")) && !json_equal(inst, v))
        return vfail("not the const");
    if ((v = json_object_get(s, "enum"))) {
        bool in = false;
        json_array_foreach(v, i, b) in = in || json_equal(inst, b);
        if (!in)
            return vfail("not in enum");
    }
    if ((v = json_object_get(s, "type"))) {
        bool ok = false;
        if (json_is_string(v))
            ok = type_ok(inst, json_string_value(v));
        json_array_foreach(v, i, b) ok = ok || type_ok(inst, json_string_value(b));
        if (!ok)
            return vfail("wrong type");
    }
    if (json_is_object(inst))
        return validate_object(inst, s);
    if (json_is_array(inst))
        return validate_array(inst, s);
    if (json_is_string(inst))
        return validate_string(inst, s);
    if (json_is_number(inst))
        return validate_number(inst, s);
    return true;
}

/* --- helpers ------------------------------------------------------------------------- */

static json_t *schema_of(const char *text)
{
    json_error_t e;
    json_t *s = json_loads(text, JSON_DECODE_ANY, &e);
    if (!s)
        fail_msg("test schema does not parse: %s: %s", text, e.text);
    return s;
}

/* Generates with seeds 0..n-1 and validates each output. */
static void check_schema(const char *text, int n)
{
    json_t *s = schema_of(text);
    v_root = s;
    for (int seed = 0; seed < n; seed++) {
        struct buf out = BUF_INIT;
        char err[512];
        if (!sim_structured_generate(s, (uint64_t)seed, &out, err, sizeof err))
            fail_msg("schema %s seed %d: %s", text, seed, err);
        json_error_t je;
        json_t *inst = json_loadb(out.data, out.len, JSON_DECODE_ANY, &je);
        if (!inst)
            fail_msg("schema %s seed %d: output does not parse: %.*s", text, seed, (int)out.len,
                     out.data);
        if (!validate(inst, s))
            fail_msg("schema %s seed %d: %.*s: %s", text, seed, (int)out.len, out.data, v_why);
        json_decref(inst);
        buf_free(&out);
    }
    json_decref(s);
}

static void expect_error(const char *text, const char *needle)
{
    json_t *s = schema_of(text);
    struct buf out = BUF_INIT;
    buf_append_str(&out, "keep");
    char err[512];
    bool ok = sim_structured_generate(s, 1, &out, err, sizeof err);
    if (ok)
        fail_msg("schema %s: expected an error with '%s', got %.*s", text, needle, (int)out.len,
                 out.data);
    if (!strstr(err, needle))
        fail_msg("schema %s: error '%s' lacks '%s'", text, err, needle);
    assert_int_equal(out.len, 4); /* restored */
    buf_free(&out);
    json_decref(s);
}

/* --- tests --------------------------------------------------------------------------- */

static void test_scalars(void **state)
{
    (void)state;
    check_schema("{\"type\":\"string\"}", 200);
    check_schema("{\"type\":\"integer\"}", 200);
    check_schema("{\"type\":\"number\"}", 200);
    check_schema("{\"type\":\"boolean\"}", 50);
    check_schema("{\"type\":\"null\"}", 10);
    check_schema("{\"type\":[\"string\",\"null\",\"integer\"]}", 200);
    check_schema("true", 100);
    check_schema("{}", 100);
    check_schema("{\"enum\":[\"red\",\"green\",3,null,{\"a\":[1]}]}", 100);
    check_schema("{\"const\":{\"x\":[1,2,\"three\"]}}", 10);
}

static void test_numeric_bounds(void **state)
{
    (void)state;
    check_schema("{\"type\":\"integer\",\"minimum\":18,\"maximum\":21}", 200);
    check_schema("{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":3}", 200);
    check_schema("{\"type\":\"integer\",\"minimum\":-50,\"maximum\":50,\"multipleOf\":7}", 200);
    check_schema("{\"type\":\"integer\",\"minimum\":-9223372036854775808,"
                 "\"maximum\":9223372036854775807}",
                 100);
    check_schema("{\"type\":\"integer\",\"maximum\":-1000}", 100);
    check_schema("{\"type\":\"number\",\"minimum\":0.5,\"maximum\":0.75}", 200);
    check_schema("{\"type\":\"number\",\"exclusiveMinimum\":1,\"exclusiveMaximum\":1.01}", 200);
    check_schema("{\"type\":\"number\",\"minimum\":0,\"maximum\":10,\"multipleOf\":0.25}", 200);
    /* draft 4 boolean exclusives */
    check_schema("{\"type\":\"integer\",\"minimum\":1,\"maximum\":2,\"exclusiveMaximum\":true}",
                 50);
    expect_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "bounds");
    expect_error("{\"type\":\"integer\",\"minimum\":1,\"maximum\":6,\"multipleOf\":7}",
                 "multipleOf");
    expect_error("{\"type\":\"integer\",\"multipleOf\":0}", "multipleOf");
}

static void test_strings(void **state)
{
    (void)state;
    check_schema("{\"type\":\"string\",\"minLength\":5,\"maxLength\":8}", 200);
    check_schema("{\"type\":\"string\",\"minLength\":300}", 20);
    check_schema("{\"type\":\"string\",\"maxLength\":0}", 10);
    check_schema("{\"type\":\"string\",\"maxLength\":1}", 50);
    check_schema("{\"type\":\"string\",\"format\":\"date\"}", 100);
    check_schema("{\"type\":\"string\",\"format\":\"date-time\"}", 100);
    check_schema("{\"type\":\"string\",\"format\":\"email\"}", 100);
    check_schema("{\"type\":\"string\",\"format\":\"uuid\"}", 100);
    check_schema("{\"type\":\"string\",\"format\":\"hostname\",\"maxLength\":3}", 20);
    check_schema("{\"type\":\"string\",\"format\":\"date\",\"maxLength\":10}", 20);
    expect_error("{\"type\":\"string\",\"minLength\":9,\"maxLength\":3}", "maxLength");
}

static void test_patterns(void **state)
{
    (void)state;
    check_schema("{\"type\":\"string\",\"pattern\":\"^[A-Z]{3}-\\\\d{4}$\"}", 200);
    check_schema("{\"type\":\"string\",\"pattern\":\"^(cat|dog|bird)s?$\"}", 200);
    check_schema("{\"type\":\"string\",\"pattern\":\"^[a-z0-9._-]+@[a-z]+\\\\.(com|org)$\"}", 200);
    check_schema("{\"type\":\"string\",\"pattern\":\"^\\\\+?[0-9]{1,3}( [0-9]{3}){2,3}$\"}", 200);
    check_schema("{\"type\":\"string\",\"pattern\":\"^[^0-9]x*y+z?$\"}", 200);
    check_schema("{\"type\":\"string\",\"pattern\":\"^(?:ab|c(d|e)){1,2}\\\\.$\"}", 200);
    check_schema("{\"pattern\":\"^v[0-9]+\\\\.[0-9]+$\"}", 50); /* type implied */
    expect_error("{\"type\":\"string\",\"pattern\":\"^(?=a)b$\"}", "pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"^(a)\\\\1$\"}", "backreference");
    expect_error("{\"type\":\"string\",\"pattern\":\"^[a-\"}", "pattern");
    expect_error("{\"type\":\"string\",\"pattern\":\"(ab\"}", "unbalanced");
    expect_error("{\"type\":\"string\",\"pattern\":\"a{3,1}\"}", "quantifier");
}

static void test_objects(void **state)
{
    (void)state;
    const char *person =
        "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1},"
        "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":130},"
        "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3}},"
        "\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    check_schema(person, 300);
    check_schema("{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}", 100);
    check_schema("{\"type\":\"object\",\"required\":[\"a\",\"b\"]}", 50);
    check_schema("{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{},\"c\":{}},"
                 "\"minProperties\":2,\"maxProperties\":2}",
                 100);
    check_schema("{\"type\":\"object\",\"minProperties\":3}", 30);
    check_schema("{\"properties\":{\"x\":{\"type\":\"boolean\"}},\"required\":[\"x\"]}", 20);
    expect_error("{\"type\":\"object\",\"required\":[\"a\"],\"additionalProperties\":false}",
                 "'a'");
    expect_error("{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}},\"required\":[\"a\"]}",
                 "'not'");
}

static void test_arrays(void **state)
{
    (void)state;
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"integer\"},\"minItems\":2,"
                 "\"maxItems\":5}",
                 200);
    check_schema("{\"type\":\"array\",\"prefixItems\":[{\"type\":\"string\"},"
                 "{\"type\":\"integer\"}],\"items\":false}",
                 100);
    check_schema("{\"type\":\"array\",\"items\":{\"enum\":[1,2,3,4]},\"minItems\":4,"
                 "\"uniqueItems\":true}",
                 100);
    check_schema("{\"type\":\"array\",\"items\":{\"type\":\"boolean\"},\"uniqueItems\":true}", 100);
    check_schema("{\"type\":\"array\",\"maxItems\":0}", 10);
    expect_error("{\"type\":\"array\",\"items\":{\"enum\":[1,2]},\"minItems\":3,"
                 "\"uniqueItems\":true}",
                 "unique");
    expect_error("{\"type\":\"array\",\"contains\":{\"type\":\"integer\"}}", "'contains'");
}

static void test_combinators_and_refs(void **state)
{
    (void)state;
    check_schema("{\"anyOf\":[{\"type\":\"string\",\"maxLength\":4},{\"type\":\"integer\"},"
                 "{\"type\":\"null\"}]}",
                 200);
    check_schema("{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"boolean\"}]}", 100);
    check_schema("{\"allOf\":[{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}},"
                 "\"required\":[\"a\"]},{\"properties\":{\"b\":{\"type\":\"string\"}},"
                 "\"required\":[\"b\"]},{\"properties\":{\"a\":{\"minimum\":10,\"maximum\":12}}}]}",
                 200);
    check_schema("{\"allOf\":[{\"type\":\"integer\",\"minimum\":3},{\"maximum\":5}]}", 100);
    check_schema("{\"type\":\"object\",\"properties\":{\"p\":{\"$ref\":\"#/$defs/point\"},"
                 "\"q\":{\"$ref\":\"#/definitions/color\"}},\"required\":[\"p\",\"q\"],"
                 "\"$defs\":{\"point\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
                 "\"number\"},\"y\":{\"type\":\"number\"}},\"required\":[\"x\",\"y\"]}},"
                 "\"definitions\":{\"color\":{\"enum\":[\"red\",\"blue\"]}}}",
                 200);
    /* pydantic's Optional: anyOf with null, a $ref inside */
    check_schema("{\"type\":\"object\",\"properties\":{\"c\":{\"anyOf\":[{\"$ref\":"
                 "\"#/$defs/C\"},{\"type\":\"null\"}],\"default\":null}},\"required\":[\"c\"],"
                 "\"$defs\":{\"C\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":"
                 "\"integer\"}},\"required\":[\"v\"]}}}",
                 200);
    /* a $ref with a sibling constraint */
    check_schema("{\"$defs\":{\"n\":{\"type\":\"integer\"}},\"$ref\":\"#/$defs/n\","
                 "\"minimum\":40,\"maximum\":41}",
                 50);
    /* anyOf with sibling constraints merges */
    check_schema("{\"type\":\"object\",\"required\":[\"k\"],\"anyOf\":[{\"properties\":{\"k\":"
                 "{\"const\":1}}},{\"properties\":{\"k\":{\"const\":2}}}]}",
                 50);
    expect_error("{\"$ref\":\"https://example.com/s.json\"}", "$ref");
    expect_error("{\"$ref\":\"#/$defs/missing\"}", "does not resolve");
    expect_error("{\"type\":\"strang\"}", "strang");
    expect_error("{\"allOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}", "no type");
    expect_error("{\"if\":{\"type\":\"string\"},\"then\":{\"minLength\":2}}", "'if'");
    expect_error("{\"type\":\"object\",\"patternProperties\":{\"^x\":{}}}", "patternProperties");
}

static void test_recursion_bounded(void **state)
{
    (void)state;
    /* A tree: recursion with a finite instance terminates (children become empty). */
    const char *tree =
        "{\"$ref\":\"#/$defs/node\",\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":"
        "{\"value\":{\"type\":\"integer\"},\"children\":{\"type\":\"array\",\"items\":{\"$ref\":"
        "\"#/$defs/node\"}}},\"required\":[\"value\",\"children\"]}}}";
    check_schema(tree, 100);
    /* A linked list whose "next" is required and never ends: no finite instance. */
    expect_error("{\"$defs\":{\"l\":{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":"
                 "\"#/$defs/l\"}},\"required\":[\"next\"]}},\"$ref\":\"#/$defs/l\"}",
                 "deeper");
    expect_error("{\"$ref\":\"#\"}", "$ref");
    /* Thousands of items under an allOf: merged once, not once per item. */
    check_schema("{\"type\":\"array\",\"minItems\":3000,\"items\":{\"allOf\":[{\"type\":"
                 "\"integer\"},{\"minimum\":1,\"maximum\":3}]}}",
                 3);
    /* Empty groups repeated without end are cut off, not looped over. */
    expect_error("{\"type\":\"string\",\"pattern\":\"((){9999}){9999}\"}", "complex");
    expect_error("{\"type\":\"string\",\"minLength\":100000000}", "limit");
    expect_error("{\"type\":\"array\",\"minItems\":5000,\"items\":{\"type\":\"string\","
                 "\"minLength\":1000}}",
                 "exceeds");
}

static void test_deterministic_and_varied(void **state)
{
    (void)state;
    json_t *s = schema_of("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"},"
                          "\"b\":{\"type\":\"integer\"}},\"required\":[\"a\",\"b\"]}");
    struct buf x = BUF_INIT, y = BUF_INIT;
    char err[256];
    assert_true(sim_structured_generate(s, 42, &x, err, sizeof err));
    assert_true(sim_structured_generate(s, 42, &y, err, sizeof err));
    assert_int_equal(x.len, y.len);
    assert_memory_equal(x.data, y.data, x.len);
    int differ = 0;
    for (uint64_t seed = 0; seed < 20; seed++) {
        buf_reset(&y);
        assert_true(sim_structured_generate(s, seed, &y, err, sizeof err));
        differ += y.len != x.len || memcmp(x.data, y.data, x.len) != 0;
    }
    assert_true(differ >= 15);
    buf_free(&x);
    buf_free(&y);
    json_decref(s);
}

static void test_generic_object(void **state)
{
    (void)state;
    for (uint64_t seed = 0; seed < 200; seed++) {
        struct buf out = BUF_INIT;
        char err[64];
        assert_true(sim_structured_generate(NULL, seed, &out, err, sizeof err));
        json_t *v = json_loadb(out.data, out.len, 0, NULL);
        assert_non_null(v);
        assert_true(json_is_object(v));
        assert_true(json_object_size(v) >= 1);
        json_decref(v);
        buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_numeric_bounds),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_patterns),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_combinators_and_refs),
        cmocka_unit_test(test_recursion_bounded),
        cmocka_unit_test(test_deterministic_and_varied),
        cmocka_unit_test(test_generic_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
