/* Unit tests for base/arena: alignment, chunk chaining, big allocations, reset reuse.
 * Includes the .c to look at the chunk list. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/base/arena.c"

static size_t chunk_count(const struct arena *a)
{
    size_t n = 0;
    for (const struct arena_chunk *c = a->head; c; c = c->next)
        n++;
    return n;
}

static void test_alignment_and_distinct(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256);
    assert_null(a.head); /* lazy */
    unsigned char *prev = NULL;
    for (size_t n = 0; n < 40; n++) {
        unsigned char *p = arena_alloc(&a, n);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 16, 0);
        memset(p, 0xab, n); /* ASan would flag an overlap or overrun */
        assert_ptr_not_equal(p, prev);
        prev = p;
    }
    arena_free(&a);
    assert_null(a.head);
}

static void test_chunks_and_big(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 256);
    char *first = arena_alloc(&a, 100);
    assert_int_equal(chunk_count(&a), 1);
    struct arena_chunk *head = a.head;
    /* Bigger than half a chunk: own chunk, slotted behind head so head keeps filling. */
    char *big = arena_alloc(&a, 1000);
    memset(big, 1, 1000);
    assert_int_equal(chunk_count(&a), 2);
    assert_ptr_equal(a.head, head);
    char *small = arena_alloc(&a, 16);
    assert_true(small > first && small < first + 256); /* same chunk as first */
    /* Filling the head starts a new one. */
    arena_alloc(&a, 120);
    arena_alloc(&a, 120);
    assert_int_equal(chunk_count(&a), 3);
    arena_free(&a);
}

static void test_strings(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 0);
    assert_int_equal(a.chunk_size, 4096);
    assert_string_equal(arena_strdup(&a, "hello"), "hello");
    assert_string_equal(arena_strndup(&a, "hello world", 5), "hello");
    assert_string_equal(arena_sprintf(&a, "%s-%d-%.1f", "x", 42, 2.5), "x-42-2.5");
    /* Formatted text longer than the chunk size still fits (own chunk). */
    char *long_text = arena_sprintf(&a, "%05000d", 7);
    assert_int_equal(strlen(long_text), 5000);
    assert_int_equal(long_text[4999], '7');
    unsigned char *z = arena_calloc(&a, 64);
    for (int i = 0; i < 64; i++)
        assert_int_equal(z[i], 0);
    arena_free(&a);
}

static void test_reset_keeps_one_chunk(void **state)
{
    (void)state;
    struct arena a;
    arena_init(&a, 128);
    char *first = arena_alloc(&a, 32);
    for (int i = 0; i < 20; i++)
        arena_alloc(&a, 48);
    arena_alloc(&a, 4000);
    assert_true(chunk_count(&a) > 3);
    arena_reset(&a);
    assert_int_equal(chunk_count(&a), 1);
    assert_int_equal(a.head->used, 0);
    /* The kept chunk is the first one, reused from its start. */
    assert_ptr_equal(arena_alloc(&a, 32), first);
    arena_free(&a);

    /* An arena whose only chunk is a big one keeps nothing. */
    arena_init(&a, 128);
    arena_alloc(&a, 1000);
    arena_reset(&a);
    assert_null(a.head);
    arena_alloc(&a, 8);
    arena_free(&a);
}

/* A size that would wrap the alignment rounding must abort, not hand back 16 bytes. */
static void test_huge_request_aborts(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct arena a;
        arena_init(&a, 0);
        char *p = arena_alloc(&a, SIZE_MAX - 3);
        p[0] = 1;
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_distinct),
        cmocka_unit_test(test_chunks_and_big),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_reset_keeps_one_chunk),
        cmocka_unit_test(test_huge_request_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
