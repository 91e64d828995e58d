/* SPDX-License-Identifier: MIT */
/*
 * tmem_test.h - helpers shared by the tests: cmocka, engines with small
 * limits, deterministic page contents, a seeded PRNG, and the rule that
 * every test ends with tmem_check() == 0.
 */
#ifndef TMEM_TEST_H
#define TMEM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tmem/tmem.h"

#define PG TMEM_PAGE_SIZE

/* Page contents that say what they are.  Kinds:
 *   TT_RANDOM   incompressible (xorshift stream from tag)
 *   TT_TEXT     compressible, differs with tag
 *   TT_ZERO     all zero
 *   TT_WORD     one repeated 64-bit word (tag)
 *   TT_HALF     first half random, second half zero */
enum tt_kind { TT_RANDOM, TT_TEXT, TT_ZERO, TT_WORD, TT_HALF, TT_KINDS };
void tt_fill(void *page, enum tt_kind kind, uint64_t tag);

/* The default configuration with max_bytes (0: default), codec, dedup. */
void tt_config(tmem_config_t *cfg, uint64_t max_bytes, int codec, int dedup);
/* An engine with max_bytes (0: default), codec, dedup on/off. */
tmem_t *tt_open(uint64_t max_bytes, int codec, int dedup);
/* tmem_check() must be 0, then close. */
void tt_close(tmem_t *t);

static inline tmem_oid_t tt_oid(uint64_t a, uint64_t b, uint64_t c)
{
    tmem_oid_t o = { { a, b, c } };
    return o;
}

/* xoshiro-style PRNG, seedable and replayable. */
typedef struct { uint64_t s[2]; } tt_rng;
void     tt_seed(tt_rng *r, uint64_t seed);
uint64_t tt_next(tt_rng *r);
static inline uint64_t tt_below(tt_rng *r, uint64_t n) { return n ? tt_next(r) % n : 0; }
/* A seed from argv ("-s N" or "--seed N"), else the environment TMEM_SEED,
 * else the clock; printed so that a failure can be replayed. */
uint64_t tt_seed_from_args(int argc, char **argv, const char *test);

/* Replaces path's contents with text at once (written aside, then renamed:
 * a reader never sees half a file). */
void tt_write_file(const char *path, const char *text);

/* A growable buffer for save streams, with tmem_write_fn / tmem_read_fn
 * callbacks.  Reads stop at min(len, limit) (-EIO past it: a truncated
 * stream); writes fail with -EIO once len would pass fail_at (if non-zero). */
typedef struct tt_buf {
    uint8_t *p;
    size_t len, cap, pos;
    size_t limit;           /* TT_BUF_INIT: no limit */
    size_t fail_at;         /* 0: writes never fail */
} tt_buf;
#define TT_BUF_INIT { .limit = SIZE_MAX }
int  tt_buf_write(void *arg, const void *p, size_t len);
int  tt_buf_read(void *arg, void *p, size_t len);
void tt_buf_free(tt_buf *b);

/* ---- failures in threads the test starts --------------------------------
 * cmocka's assert_*() and fail() belong to the test's own thread: they
 * longjmp back to its runner, which from another thread is undefined
 * behaviour.  A thread the test starts records failures instead, and the
 * test's thread asserts after joining it:
 *   tt_fails      a failure count and the first failure (its message, file
 *                 and line); zero-initialised (TT_FAILS_INIT, or static or
 *                 memset storage) it holds none; shared by any number of
 *                 threads;
 *   TT_CHECK(f, cond)            records "cond" in f when cond is false;
 *   TT_CHECK_INT_EQ(f, a, b)     records "a == b" and both values when they
 *                                differ (as assert_int_equal);
 *   TT_FAIL(f, fmt, ...)         records a failure with its own message;
 *   tt_fails_assert(f)           in the test's thread, after the joins:
 *                                fails the test at the first failure's
 *                                line, saying it and the count, if any.
 * Each records the first failures on stderr as they happen (a few, then
 * only counts).  The checks evaluate to cond's truth, so a thread can stop
 * or go on as the case needs. */
typedef struct tt_fails {
    atomic_ulong count;
    char first[256];            /* written by the thread that counted 1 */
    const char *file;
    int line;
} tt_fails;
#define TT_FAILS_INIT { 0 }
void tt_fail_at(tt_fails *f, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void tt_fails_assert(tt_fails *f);
#define TT_FAIL(f, ...) tt_fail_at((f), __FILE__, __LINE__, __VA_ARGS__)
#define TT_CHECK(f, cond) \
    ((cond) ? 1 : (tt_fail_at((f), __FILE__, __LINE__, "%s", #cond), 0))
#define TT_CHECK_INT_EQ(f, a, b) \
    tt_check_int_eq((f), (intmax_t)(a), (intmax_t)(b), #a " == " #b, __FILE__, __LINE__)
static inline int tt_check_int_eq(tt_fails *f, intmax_t a, intmax_t b, const char *what,
                                  const char *file, int line)
{
    if (a == b)
        return 1;
    tt_fail_at(f, file, line, "%s: %jd != %jd", what, a, b);
    return 0;
}

/* ---- tests that cannot run here ----------------------------------------
 * A test that lacks what it needs (root, a device, a kernel feature, a
 * tool) is reported as skipped, never as passed or failed: its binary exits
 * with TT_SKIP, which ctest counts as skipped on a test with the property
 * SKIP_RETURN_CODE 77 (docs/testing.md, "Tests that cannot run here").
 *   tt_skip_all   every case main is about to run needs what is missing:
 *                 "TEST: skipped: MISSING" on stderr, exit(TT_SKIP) before
 *                 anything runs.
 *   TT_SKIP_CASE  this case cannot run (others of the binary may): one line
 *                 on stderr, counted, then cmocka's skip().
 *   tt_run_tests  runs tests[0..n) (only those whose name matches the
 *                 glob only, if not NULL, as cmocka's test filter) and
 *                 returns main's exit code: 1 if any failed (or only
 *                 matches none), TT_SKIP if every case run was skipped with
 *                 TT_SKIP_CASE, else 0. */
#define TT_SKIP 77
_Noreturn void tt_skip_all(const char *test, const char *missing);
void tt_skip_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define TT_SKIP_CASE(...)            \
    do {                             \
        tt_skip_note(__VA_ARGS__);   \
        skip();                      \
    } while (0)
int tt_run_tests(const struct CMUnitTest *tests, size_t n, const char *only);
/* Is name an executable file in a directory of $PATH? */
int tt_have_tool(const char *name);

#endif
