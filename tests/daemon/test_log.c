/* SPDX-License-Identifier: MIT */
/*
 * test_log.c - the rate limit of tmemd's logs (tmd_log_limiter_*, on a
 * clock the test drives, and tmd_log_limited on the real one): each
 * (cause, uid) writes TMD_LOG_BURST lines at once and TMD_LOG_PER_S a
 * second after, independently of the others; every line is either written
 * or counted, and the count is said once, with the key's next line or by a
 * flush; a full table shares one key without losing counts, and idle
 * entries are taken over; threads on one key never lose a count.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/daemon.h"

static struct tmd_log_limiter *fresh(void)
{
    static struct tmd_log_limiter lim;
    pthread_mutex_destroy(&lim.lock);
    memset(&lim, 0, sizeof(lim));
    pthread_mutex_init(&lim.lock, NULL);
    return &lim;
}

static bool take(struct tmd_log_limiter *lim, const char *cause, uid_t uid, uint64_t now,
                 uint64_t *n)
{
    uint64_t dummy;
    return tmd_log_limiter_take(lim, cause, uid, LOG_WARNING, now, n ? n : &dummy);
}

/* What a flush said: the sum of its counts, per cause and uid. */
struct said {
    unsigned calls;
    uint64_t total;
    const char *cause;
    uid_t uid;
};

static void collect(const struct tmd_log_key *k, uint64_t n, void *arg)
{
    struct said *s = arg;
    s->calls++;
    s->total += n;
    s->cause = k->cause;
    s->uid = k->uid;
}

/* A burst, then suppressed; other uids and other causes are not touched. */
static void burst_per_key(void **state)
{
    (void)state;
    struct tmd_log_limiter *lim = fresh();
    uint64_t t = 1000000, n;
    for (int i = 0; i < TMD_LOG_BURST; i++) {
        assert_true(take(lim, "bad-hello", 1000, t, &n));
        assert_int_equal(n, 0);
    }
    for (int i = 0; i < 500; i++)
        assert_false(take(lim, "bad-hello", 1000, t, NULL));
    /* the flooder's other causes, and another uid, each have their own */
    for (int i = 0; i < TMD_LOG_BURST; i++) {
        assert_true(take(lim, "bad-hello", 1001, t, &n));
        assert_true(take(lim, "refused", 1000, t, &n));
    }
    assert_false(take(lim, "bad-hello", 1001, t, NULL));
    /* a cause is compared by its text, not its address */
    char copy[] = "bad-hello";
    assert_false(take(lim, copy, 1000, t, NULL));
    /* one token comes back after 1/TMD_LOG_PER_S s, not before; the line
     * written then carries the count: the 500, the copy's, the early one */
    uint64_t step = 1000 / TMD_LOG_PER_S;
    assert_false(take(lim, "bad-hello", 1000, t + step - 1, NULL));
    assert_true(take(lim, "bad-hello", 1000, t + step, &n));
    assert_int_equal(n, 502);
    assert_false(take(lim, "bad-hello", 1000, t + step, NULL));
    assert_true(take(lim, "bad-hello", 1000, t + 2 * step, &n));
    assert_int_equal(n, 1);                         /* the count started again */
    /* a clock that goes back gives nothing and breaks nothing */
    assert_false(take(lim, "bad-hello", 1000, t, NULL));
    /* a long quiet time refills to the burst, no more */
    t += 3600 * 1000;
    unsigned written = 0;
    for (int i = 0; i < 100; i++)
        written += take(lim, "bad-hello", 1000, t, &n);
    assert_int_equal(written, TMD_LOG_BURST);
}

/* A sustained flood of 10 s, one call every 100 us: BURST + 10 s * PER_S
 * lines written at most, and written + counts said == calls. */
static void sustained_flood(void **state)
{
    (void)state;
    struct tmd_log_limiter *lim = fresh();
    uint64_t t0 = 5000, written = 0, said = 0, n;
    const uint64_t calls = 100000;
    for (uint64_t i = 0; i < calls; i++) {
        if (take(lim, "protocol", 42, t0 + i / 10, &n)) {
            written++;
            said += n;
        }
    }
    assert_true(written <= TMD_LOG_BURST + 10 * TMD_LOG_PER_S + 1);
    assert_true(written >= 10 * TMD_LOG_PER_S);
    struct said s = { 0 };
    tmd_log_limiter_flush(lim, t0 + calls / 10, true, collect, &s);
    assert_int_equal(written + said + s.total, calls);
}

/* A flood that stops is summed up by the flush, once, when its key has a
 * token; with all, at once. */
static void flush_once(void **state)
{
    (void)state;
    struct tmd_log_limiter *lim = fresh();
    uint64_t t = 777;
    for (int i = 0; i < TMD_LOG_BURST + 40; i++)
        take(lim, "control-refused", 65534, t, NULL);
    struct said s = { 0 };
    /* no token yet: nothing said */
    assert_int_equal(tmd_log_limiter_flush(lim, t, false, collect, &s), 0);
    assert_int_equal(tmd_log_limiter_flush(lim, t + 1000 / TMD_LOG_PER_S, false, collect, &s),
                     1);
    assert_int_equal(s.total, 40);
    assert_string_equal(s.cause, "control-refused");
    assert_int_equal(s.uid, 65534);
    /* the flush took the token */
    assert_false(take(lim, "control-refused", 65534, t + 1000 / TMD_LOG_PER_S, NULL));
    /* said once (that last line is new: 1) */
    memset(&s, 0, sizeof(s));
    assert_int_equal(tmd_log_limiter_flush(lim, t + 60000, false, collect, &s), 1);
    assert_int_equal(s.total, 1);
    assert_int_equal(tmd_log_limiter_flush(lim, t + 60000, false, collect, &s), 0);
    assert_int_equal(tmd_log_limiter_flush(lim, t + 60000, true, collect, &s), 0);
    /* refilled over the minute, less the token of that flush */
    unsigned written = 0;
    for (int i = 0; i < 20; i++)
        written += take(lim, "control-refused", 65534, t + 60000, NULL);
    assert_int_equal(written, TMD_LOG_BURST - 1);
    /* all: whatever the tokens */
    memset(&s, 0, sizeof(s));
    assert_int_equal(tmd_log_limiter_flush(lim, t + 60000, true, collect, &s), 1);
    assert_int_equal(s.total, 20 - (TMD_LOG_BURST - 1));
}

/* More keys than entries: the rest share "other" (its count said only by a
 * flush, as "various"); idle entries are taken over by new keys. */
static void table_full(void **state)
{
    (void)state;
    struct tmd_log_limiter *lim = fresh();
    uint64_t t = 100, n;
    const uid_t extra = 50;
    uint64_t calls = 0, written = 0, said = 0;
    for (uid_t u = 0; u < TMD_LOG_KEYS + extra; u++) {
        for (int i = 0; i < TMD_LOG_BURST + 5; i++) {
            calls++;
            if (take(lim, "bad-hello", 2000 + u, t, &n)) {
                written++;
                said += n;
            }
        }
    }
    /* every entry is busy (each has 5 to say): the extra uids shared one
     * bucket, so far fewer lines than a bucket each */
    assert_int_equal(written, (uint64_t)TMD_LOG_KEYS * TMD_LOG_BURST + TMD_LOG_BURST);
    struct said s = { 0 };
    size_t keys = tmd_log_limiter_flush(lim, t, true, collect, &s);
    assert_int_equal(keys, TMD_LOG_KEYS + 1);
    assert_int_equal(written + said + s.total, calls);
    assert_null(s.cause);                           /* the last one said is "other" */
    /* once said and refilled, entries are idle and a new uid gets its own
     * bucket again (a full burst, not other's leftovers) */
    t += 10000;
    unsigned mine = 0;
    for (int i = 0; i < TMD_LOG_BURST; i++)
        mine += take(lim, "bad-hello", 9999, t, &n);
    assert_int_equal(mine, TMD_LOG_BURST);
    bool own = false;
    for (size_t i = 0; i < TMD_LOG_KEYS; i++)
        own |= lim->keys[i].cause && lim->keys[i].uid == 9999;
    assert_true(own);
}

/* Threads on one key at one instant: exactly a burst written, and every
 * other call counted. */
struct thr {
    struct tmd_log_limiter *lim;
    uint64_t written, said;
};

static void *hammer(void *arg)
{
    struct thr *a = arg;
    for (int i = 0; i < 20000; i++) {
        uint64_t n;
        if (tmd_log_limiter_take(a->lim, i & 1 ? "protocol" : "bad-hello", 7, LOG_WARNING, 1,
                                 &n)) {
            a->written++;
            a->said += n;
        }
    }
    return NULL;
}

static void threads(void **state)
{
    (void)state;
    struct tmd_log_limiter *lim = fresh();
    struct thr a[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr){ .lim = lim };
        assert_int_equal(pthread_create(&th[i], NULL, hammer, &a[i]), 0);
    }
    uint64_t written = 0, said = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        written += a[i].written;
        said += a[i].said;
    }
    assert_int_equal(written, 2 * TMD_LOG_BURST);   /* two keys */
    struct said s = { 0 };
    assert_int_equal(tmd_log_limiter_flush(lim, 1, true, collect, &s), 2);
    assert_int_equal(written + said + s.total, 4 * 20000);
}

/* tmd_log_limited itself, on the real clock, into a file: a burst of lines,
 * the rest said as suppressed (with a later line or the flush), nothing
 * lost; another uid's line is written in the middle of the flood. */
static void limited_lines(void **state)
{
    (void)state;
    char path[] = "/tmp/tmem-log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_int_equal(dup2(fd, 2), 2);
    unsetenv("JOURNAL_STREAM");                     /* lines with a timestamp and level */
    tmd_log_init(LOG_INFO);
    for (int i = 0; i < 1000; i++) {
        tmd_log_limited(LOG_WARNING, "bad-hello", 4242, "pid %d uid 4242: malformed HELLO", i);
        if (i == 500)
            tmd_log_limited(LOG_WARNING, "bad-hello", 4343, "uid 4343 still heard");
    }
    tmd_log_limited(LOG_DEBUG, "bad-hello", 4242, "below the level: neither written nor "
                    "counted");
    tmd_log_flush_suppressed(true);
    fflush(stderr);
    assert_int_equal(dup2(saved, 2), 2);
    close(saved);

    FILE *f = fdopen(fd, "r");
    assert_non_null(f);
    rewind(f);
    char line[1200];
    unsigned lines = 0, flood = 0, other = 0, summaries = 0;
    uint64_t suppressed = 0;
    while (fgets(line, sizeof(line), f)) {
        lines++;
        unsigned long long n;
        const char *b = strstr(line, " [");
        if (strstr(line, "malformed HELLO")) {
            flood++;
            if (b && sscanf(b, " [%llu similar messages suppressed]", &n) == 1)
                suppressed += n;
        } else if (strstr(line, "uid 4343 still heard")) {
            other++;
        } else if (strstr(line, "similar messages suppressed (bad-hello, uid 4242)")) {
            const char *m = strstr(line, "warning: ");
            assert_non_null(m);
            assert_int_equal(sscanf(m, "warning: %llu", &n), 1);
            suppressed += n;
            summaries++;
        } else {
            fail_msg("unexpected line: %s", line);
        }
    }
    fclose(f);
    unlink(path);
    assert_int_equal(other, 1);
    assert_true(flood >= TMD_LOG_BURST);
    assert_true(flood < 100);                       /* 1000 calls take far less than 18 s */
    assert_int_equal(summaries, 1);
    assert_int_equal(flood + suppressed, 1000);
    assert_int_equal(lines, flood + other + summaries);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_per_key),
        cmocka_unit_test(sustained_flood),
        cmocka_unit_test(flush_once),
        cmocka_unit_test(table_full),
        cmocka_unit_test(threads),
        cmocka_unit_test(limited_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
