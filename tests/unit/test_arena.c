/* SPDX-License-Identifier: MIT */
/*
 * test_arena.c - an engine over lent memory (include/tmem/arena.h), with a
 * source made of real memfds that lends units, takes them back when the
 * engine gives them, and takes them by force with a hole punch, as tmemd
 * does:
 *
 *   open         bad arenas refused; one client only; no lending of frames;
 *   grow         units come one at a time as puts need them; a source that
 *                refuses makes the engine evict its own ephemeral pages, and
 *                refuse persistent puts (evicting none for them); a full
 *                persistent store refuses before compressing, until room
 *                appears (a flush, or a unit granted a few ms later);
 *   shrink       free units go first; then the least used ephemeral units,
 *                their pages evicted, every other page intact; persistent
 *                units only when free;
 *   revoked      units punched under the engine: until it has processed the
 *                revocation every ephemeral get misses (and drops its page),
 *                afterwards what is left reads back exactly, the punched
 *                units' pages are gone, cleaned() is called for each;
 *   race         threads put and get (LZ4 fragments and whole pages, their
 *                own handles, each against a model) while another thread
 *                revokes units: no get ever returns anything but the last
 *                version put (never zeros, never another page), persistent
 *                pages all survive (TSan in CI);
 *   info         units held, free units, the oldest ephemeral page's age.
 *
 * Seeded (--seed N replays the choices, not the thread interleaving).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "tmem/arena.h"
#include "tmem_test.h"

static uint64_t SEED;

/* ------------------------------------------------------------------------
 * A source over two memfds
 * ---------------------------------------------------------------------- */
#define SRC_UNITS 256u                      /* per kind: 64 MiB of address space */
static unsigned UFRAMES = 64;              /* frames per unit of the engines opened */
#define UBYTES ((size_t)UFRAMES * PG)

struct source {
    int fd[TMEM_ARENA_KINDS];
    pthread_mutex_t lock;
    uint8_t held[TMEM_ARENA_KINDS][SRC_UNITS];  /* 1 lent, 2 taken back by force */
    unsigned nheld[TMEM_ARENA_KINDS];
    unsigned limit[TMEM_ARENA_KINDS];           /* units it lends at most */
    unsigned grows, refused, shrinks, cleaned, bad;
    _Atomic uint64_t epoch;
    tt_fails fails;         /* punches that failed (src_take runs in threads too) */
};

static int src_attach(void *arg, int kind, void *base, size_t len)
{
    struct source *s = arg;
    if (len != (size_t)SRC_UNITS * UBYTES)
        return -EINVAL;
    void *p = mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->fd[kind], 0);
    return p == MAP_FAILED ? -errno : 0;
}

static int src_grow(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (unit >= SRC_UNITS || s->held[kind][unit] == 1) {
        s->bad++;
        rc = -EINVAL;
    } else if (s->nheld[kind] >= s->limit[kind]) {
        s->refused++;
        rc = -ENOMEM;
    } else if (fallocate(s->fd[kind], 0, (off_t)(unit * UBYTES), UBYTES) != 0) {
        rc = -errno;
    } else {
        s->held[kind][unit] = 1;
        s->nheld[kind]++;
        s->grows++;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void src_shrink(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    pthread_mutex_lock(&s->lock);
    if (unit >= SRC_UNITS || s->held[kind][unit] != 1) {
        s->bad++;
    } else {
        fallocate(s->fd[kind], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(unit * UBYTES), UBYTES);
        s->held[kind][unit] = 0;
        s->nheld[kind]--;
        s->shrinks++;
    }
    pthread_mutex_unlock(&s->lock);
}

static void src_cleaned(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    pthread_mutex_lock(&s->lock);
    if (kind != TMEM_ARENA_EPHEMERAL || unit >= SRC_UNITS || s->held[kind][unit] != 2)
        s->bad++;
    else
        s->held[kind][unit] = 0;
    s->cleaned++;
    pthread_mutex_unlock(&s->lock);
}

static const tmem_arena_ops_t src_ops = {
    .attach = src_attach, .grow = src_grow, .shrink = src_shrink, .cleaned = src_cleaned,
};

static struct source *src_new(unsigned eph_limit, unsigned pers_limit)
{
    struct source *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        s->fd[k] = memfd_create("test-arena", MFD_CLOEXEC);
        assert_true(s->fd[k] >= 0);
        assert_int_equal(ftruncate(s->fd[k], (off_t)SRC_UNITS * UBYTES), 0);
    }
    s->limit[TMEM_ARENA_EPHEMERAL] = eph_limit;
    s->limit[TMEM_ARENA_PERSISTENT] = pers_limit;
    return s;
}

static void src_free(struct source *s)
{
    tt_fails_assert(&s->fails);
    assert_int_equal(s->bad, 0);
    for (int k = 0; k < TMEM_ARENA_KINDS; k++)
        close(s->fd[k]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static tmem_t *open_over(struct source *s, int codec)
{
    tmem_config_t cfg;
    tt_config(&cfg, 0, codec, 1);
    tmem_arena_t a = { .ops = &src_ops, .arg = s, .revoke_epoch = &s->epoch,
                       .bytes = { (uint64_t)SRC_UNITS * UBYTES, (uint64_t)SRC_UNITS * UBYTES },
                       .unit_frames = UFRAMES };
    tmem_t *t = tmem_open_arena(&cfg, &a);
    assert_non_null(t);
    return t;
}

/* The owner takes ephemeral unit u by force: epoch first, then the punch.
 * A failed punch is recorded in s->fails (asserted by the test's thread). */
static uint64_t src_take(struct source *s, size_t u)
{
    pthread_mutex_lock(&s->lock);
    bool held = s->held[TMEM_ARENA_EPHEMERAL][u] == 1;
    if (held) {
        s->held[TMEM_ARENA_EPHEMERAL][u] = 2;
        s->nheld[TMEM_ARENA_EPHEMERAL]--;
    }
    pthread_mutex_unlock(&s->lock);
    uint64_t e = atomic_fetch_add(&s->epoch, 1) + 1;
    if (held)
        TT_CHECK_INT_EQ(&s->fails, fallocate(s->fd[TMEM_ARENA_EPHEMERAL],
                                             FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                             (off_t)(u * UBYTES), UBYTES), 0);
    return e;
}

/* A unit the source lends now (-1 if none), chosen at random. */
static long src_pick(struct source *s, tt_rng *r)
{
    long found = -1;
    pthread_mutex_lock(&s->lock);
    unsigned start = (unsigned)tt_below(r, SRC_UNITS);
    for (unsigned i = 0; i < SRC_UNITS && found < 0; i++)
        if (s->held[TMEM_ARENA_EPHEMERAL][(start + i) % SRC_UNITS] == 1)
            found = (start + i) % SRC_UNITS;
    pthread_mutex_unlock(&s->lock);
    return found;
}

static const tmem_uuid_t NOUUID = { 0, 0 };

static void page_of(uint8_t *page, uint64_t tag, bool compressible)
{
    tt_fill(page, compressible ? TT_HALF : TT_RANDOM, tag);
}

/* ------------------------------------------------------------------------
 * open
 * ---------------------------------------------------------------------- */
static void open_refuses_bad_arenas(void **state)
{
    (void)state;
    struct source *s = src_new(4, 4);
    tmem_arena_t a = { .ops = &src_ops, .arg = s,
                       .bytes = { (uint64_t)SRC_UNITS * UBYTES, (uint64_t)SRC_UNITS * UBYTES } };
    errno = 0;
    assert_null(tmem_open_arena(NULL, NULL));
    assert_int_equal(errno, EINVAL);
    tmem_arena_t b = a;
    b.bytes[0] = UBYTES;                /* not whole 2 MiB */
    assert_null(tmem_open_arena(NULL, &b));
    b = a;
    b.unit_frames = 8;                  /* 16, 32 or 64 */
    assert_null(tmem_open_arena(NULL, &b));
    b = a;
    b.bytes[1] = 0;
    assert_null(tmem_open_arena(NULL, &b));
    tmem_arena_ops_t no_grow = src_ops;
    no_grow.grow = NULL;
    b = a;
    b.ops = &no_grow;
    assert_null(tmem_open_arena(NULL, &b));
    b = a;
    b.bytes[0] = 2 * (uint64_t)SRC_UNITS * UBYTES;     /* attach refuses */
    errno = 0;
    assert_null(tmem_open_arena(NULL, &b));
    assert_int_equal(errno, EINVAL);

    tmem_t *t = tmem_open_arena(NULL, &a);
    assert_non_null(t);
    tmem_client_t *c = tmem_client_open(t, "one");
    assert_non_null(c);
    errno = 0;
    assert_null(tmem_client_open(t, "two"));
    assert_int_equal(errno, EBUSY);
    assert_null(tmem_relinquish_page(t));       /* the owner's memory is not ours to lend */
    assert_int_equal(tmem_set_max_bytes(t, 1 << 20), -EOPNOTSUPP);
    tmem_client_close(c);
    assert_non_null(c = tmem_client_open(t, "three"));  /* after a close, another */
    tt_close(t);
    src_free(s);
}

/* ------------------------------------------------------------------------
 * grow
 * ---------------------------------------------------------------------- */
static void grow_takes_units_as_needed(void **state)
{
    (void)state;
    struct source *s = src_new(3, 2);
    tmem_t *t = open_over(s, TMEM_COMPRESS_NONE);
    tmem_client_t *c = tmem_client_open(t, "grow");
    int pe = tmem_new_pool(c, NOUUID, 0), pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pe >= 0 && pp >= 0);
    assert_int_equal(s->grows, 0);
    uint8_t page[PG], got[PG];
    /* 3 ephemeral units: 3 * UFRAMES frames; more puts evict the oldest */
    const uint32_t NPUT = 6 * UFRAMES + 16;
    for (uint32_t i = 0; i < NPUT; i++) {
        page_of(page, i, false);
        assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, page), 0);
    }
    assert_int_equal(s->nheld[TMEM_ARENA_EPHEMERAL], 3);
    assert_true(s->refused >= 1);
    tmem_arena_info_t inf;
    assert_int_equal(tmem_arena_get_info(t, &inf), 0);
    assert_int_equal(inf.units[TMEM_ARENA_EPHEMERAL], 3);
    assert_int_equal(inf.units[TMEM_ARENA_PERSISTENT], 0);
    assert_true(inf.oldest_ephemeral_ms >= 1);
    /* the newest pages are there, the oldest were evicted */
    assert_int_equal(tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), 0, got), -ENOENT);
    page_of(page, NPUT - 1, false);
    assert_int_equal(tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), NPUT - 1, got), 0);
    assert_memory_equal(got, page, PG);
    /* 2 persistent units: 2 * UFRAMES frames, then -ENOMEM: evicting the
     * ephemeral pages would free no persistent frame, so none goes */
    tmem_stats_t st0, st1;
    assert_int_equal(tmem_stats_get(t, &st0), 0);
    uint32_t ok = 0;
    for (uint32_t i = 0; i < 3 * UFRAMES; i++) {
        page_of(page, 1000 + i, false);
        int rc = tmem_put_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, page);
        assert_true(rc == 0 || rc == -ENOMEM);
        ok += rc == 0;
    }
    assert_int_equal(ok, 2 * UFRAMES);
    assert_int_equal(s->nheld[TMEM_ARENA_PERSISTENT], 2);
    assert_int_equal(tmem_stats_get(t, &st1), 0);
    assert_int_equal(st1.ephemeral_pages, st0.ephemeral_pages);
    assert_int_equal(st1.evictions, st0.evictions);
    for (uint32_t i = 0; i < 2 * UFRAMES; i++) {
        page_of(page, 1000 + i, false);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tt_close(t);
    src_free(s);
}

/* A persistent store that found no room refuses the next puts before it
 * compresses them (the source is not asked again), but not once room
 * appears: a page flushed, or (after a few milliseconds) a unit the source
 * would now grant. */
static void full_persistent_store_refuses_early(void **state)
{
    (void)state;
    struct source *s = src_new(1, 1);
    tmem_t *t = open_over(s, TMEM_COMPRESS_LZ4);
    tmem_client_t *c = tmem_client_open(t, "full");
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pp >= 0);
    uint8_t page[PG], got[PG];
    uint32_t n = 0;
    int rc;
    while ((rc = tmem_put_page(c, (uint32_t)pp, tt_oid(3, 0, 0), n, (page_of(page, n, true),
                                                                     page))) == 0)
        n++;
    assert_int_equal(rc, -ENOMEM);
    assert_true(n > UFRAMES);                   /* compressed: more pages than frames */
    unsigned refused = s->refused;
    for (uint32_t i = 0; i < 20; i++) {
        page_of(page, 1000 + i, true);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(4, 0, 0), i, page), -ENOMEM);
    }
    assert_true(s->refused <= refused + 1);     /* refused before asking the source */
    /* a page flushed: the next put finds its room */
    assert_int_equal(tmem_flush_page(c, (uint32_t)pp, tt_oid(3, 0, 0), 0), 0);
    page_of(page, 2000, true);
    assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(5, 0, 0), 0, page), 0);
    /* full again; then the source would lend one more unit: within a few
     * milliseconds the store asks again and gets it */
    for (uint32_t i = 1; tmem_put_page(c, (uint32_t)pp, tt_oid(5, 0, 0), i,
                                       (page_of(page, 2000 + i, true), page)) == 0; i++)
        assert_true(i < 10 * UFRAMES);
    pthread_mutex_lock(&s->lock);
    s->limit[TMEM_ARENA_PERSISTENT] = 2;
    pthread_mutex_unlock(&s->lock);
    struct timespec ts = { 0, 20000000 };       /* past the 5 ms of a full store */
    nanosleep(&ts, NULL);
    page_of(page, 3000, true);
    assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(6, 0, 0), 0, page), 0);
    assert_int_equal(s->nheld[TMEM_ARENA_PERSISTENT], 2);
    assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(6, 0, 0), 0, got), 0);
    assert_memory_equal(got, page, PG);
    tt_close(t);
    src_free(s);
}

/* ------------------------------------------------------------------------
 * shrink
 * ---------------------------------------------------------------------- */
static void shrink_gives_free_then_least_used(void **state)
{
    (void)state;
    struct source *s = src_new(16, 16);
    tmem_t *t = open_over(s, TMEM_COMPRESS_NONE);
    tmem_client_t *c = tmem_client_open(t, "shrink");
    int pe = tmem_new_pool(c, NOUUID, 0), pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG], got[PG];
    const uint32_t U = UFRAMES, NE = 6 * U, NP = 3 * U;
    for (uint32_t i = 0; i < NE; i++) {
        page_of(page, i, false);
        assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, page), 0);
    }
    for (uint32_t i = 0; i < NP; i++) {
        page_of(page, 5000 + i, false);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, page), 0);
    }
    assert_int_equal(s->nheld[TMEM_ARENA_EPHEMERAL], 6);
    /* flush two units' worth: those units come free */
    for (uint32_t i = 0; i < 2 * U; i++)
        assert_int_equal(tmem_flush_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i), 0);
    uint64_t out[8];
    assert_int_equal(tmem_arena_shrink(t, TMEM_ARENA_EPHEMERAL, 2, out), 2);
    assert_int_equal(s->nheld[TMEM_ARENA_EPHEMERAL], 4);
    assert_int_equal(s->shrinks, 2);
    /* every remaining page is still there: free units went first */
    for (uint32_t i = 2 * U; i < NE; i++) {
        page_of(page, i, false);
        assert_int_equal(tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
        assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, page), 0);
    }
    /* one more: a used unit, its U pages evicted, the rest intact */
    tmem_client_info_t ci;
    assert_int_equal(tmem_client_info(t, tmem_client_id(c), &ci), 0);
    uint64_t evicted0 = ci.evicted;
    assert_int_equal(tmem_arena_shrink(t, TMEM_ARENA_EPHEMERAL, 1, out), 1);
    assert_int_equal(s->nheld[TMEM_ARENA_EPHEMERAL], 3);
    assert_int_equal(tmem_client_info(t, tmem_client_id(c), &ci), 0);
    assert_int_equal(ci.evicted - evicted0, U);
    assert_int_equal(ci.ephemeral_pages, NE - 3 * U);
    uint32_t hits = 0;
    for (uint32_t i = 2 * U; i < NE; i++) {
        page_of(page, i, false);
        if (tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got) == 0) {
            assert_memory_equal(got, page, PG);
            hits++;
        }
    }
    assert_int_equal(hits, NE - 3 * U);
    /* persistent units: none is free, none goes, no page is lost */
    assert_int_equal(tmem_arena_shrink(t, TMEM_ARENA_PERSISTENT, 3, out), 0);
    for (uint32_t i = 0; i < U; i++)
        assert_int_equal(tmem_flush_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i), 0);
    assert_int_equal(tmem_arena_shrink(t, TMEM_ARENA_PERSISTENT, 3, out), 1);
    for (uint32_t i = U; i < NP; i++) {
        page_of(page, 5000 + i, false);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    assert_int_equal(tmem_check(t), 0);
    tt_close(t);
    src_free(s);
}

/* ------------------------------------------------------------------------
 * revoked
 * ---------------------------------------------------------------------- */
static void revoked_units_miss_never_zeros(void **state)
{
    (void)state;
    struct source *s = src_new(64, 64);
    for (int codec = TMEM_COMPRESS_NONE; codec <= TMEM_COMPRESS_LZ4; codec++) {
        tmem_t *t = open_over(s, codec);
        tmem_client_t *c = tmem_client_open(t, "revoked");
        int pe = tmem_new_pool(c, NOUUID, TMEM_POOL_KEEP_ON_GET);
        int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
        uint8_t page[PG], got[PG];
        enum { N = 1000 };
        for (uint32_t i = 0; i < N; i++) {
            page_of(page, i, codec != TMEM_COMPRESS_NONE);
            assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, page), 0);
            page_of(page, 90000 + i, codec != TMEM_COMPRESS_NONE);
            assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, page), 0);
        }
        unsigned units0 = s->nheld[TMEM_ARENA_EPHEMERAL], cleaned0 = s->cleaned;
        assert_true(units0 >= 2);
        /* the owner takes two units: every ephemeral get misses until the
         * engine has processed it, and drops its page; persistent ones hit */
        tt_rng r;
        tt_seed(&r, SEED);
        uint64_t take[2] = { (uint64_t)src_pick(s, &r), 0 };
        src_take(s, take[0]);
        do
            take[1] = (uint64_t)src_pick(s, &r);
        while (take[1] == take[0]);
        uint64_t e = src_take(s, take[1]);
        tt_fails_assert(&s->fails);
        for (uint32_t i = 0; i < 10; i++) {
            memset(got, 0xa5, PG);
            assert_int_equal(tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got), -ENOENT);
            assert_int_equal(tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got), -ENOENT);
            page_of(page, 90000 + i, codec != TMEM_COMPRESS_NONE);
            assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, got), 0);
            assert_memory_equal(got, page, PG);
        }
        assert_int_equal(tmem_arena_revoked(t, take, 2, e), 0);
        assert_int_equal(s->cleaned - cleaned0, 2);
        assert_int_equal(tmem_check(t), 0);
        tmem_arena_info_t inf;
        assert_int_equal(tmem_arena_get_info(t, &inf), 0);
        assert_int_equal(inf.units[TMEM_ARENA_EPHEMERAL], units0 - 2);
        assert_int_equal(inf.revoked, 2);
        assert_int_equal(inf.epoch_done, e);
        /* now: every page hits with its data or misses; some were lost */
        uint32_t hits = 0;
        for (uint32_t i = 0; i < N; i++) {
            page_of(page, i, codec != TMEM_COMPRESS_NONE);
            memset(got, 0, PG);
            int rc = tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got);
            assert_true(rc == 0 || rc == -ENOENT);
            if (rc == 0) {
                assert_memory_equal(got, page, PG);
                hits++;
            }
            page_of(page, 90000 + i, codec != TMEM_COMPRESS_NONE);
            assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(2, 0, 0), i, got), 0);
            assert_memory_equal(got, page, PG);
        }
        assert_true(hits > 0 && hits < N - 10);
        /* the units can be lent again */
        for (uint32_t i = 0; i < N; i++) {
            page_of(page, 7 * i, codec != TMEM_COMPRESS_NONE);
            assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(3, 0, 0), i, page), 0);
        }
        assert_int_equal(tmem_check(t), 0);
        tt_close(t);
        for (unsigned u = 0; u < SRC_UNITS; u++)
            for (int k = 0; k < TMEM_ARENA_KINDS; k++)
                s->held[k][u] = 0;
        memset(s->nheld, 0, sizeof(s->nheld));
    }
    src_free(s);
}

/* ------------------------------------------------------------------------
 * race: revocations against puts and gets
 * ---------------------------------------------------------------------- */
#define RT_THREADS 3
#define RT_KEYS    1200

struct race {
    tmem_t *t;
    tmem_client_t *c;
    struct source *s;
    int pe, pp;
    _Atomic int stop;
    _Atomic unsigned long bad, hits, gets, revokes;
    tt_fails fails;         /* the revoker's failed calls */
};

struct worker {
    struct race *R;
    unsigned id;
    long ops;
    uint32_t ver[RT_KEYS];      /* 0: never put, else the version last stored */
    uint32_t pver[RT_KEYS / 4]; /* persistent: the version that must be there */
};

/* Counts a wrong outcome; the first few are told. */
static void race_bad(struct race *R, const char *what, unsigned id, uint32_t key, int rc)
{
    if (atomic_fetch_add(&R->bad, 1) < 5)
        fprintf(stderr, "race: thread %u key %u: %s (%d)\n", id, key, what, rc);
}

static uint64_t tag_of(unsigned id, uint32_t key, uint32_t ver)
{
    return ((uint64_t)id << 48) ^ ((uint64_t)key << 20) ^ ver;
}

static void *race_worker(void *arg)
{
    struct worker *w = arg;
    struct race *R = w->R;
    tt_rng r;
    tt_seed(&r, SEED * 31 + w->id);
    uint8_t page[PG], got[PG];
    tmem_oid_t oe = tt_oid(10 + w->id, 0, 0), op = tt_oid(20 + w->id, 0, 0);
    for (long n = 0; n < w->ops; n++) {
        uint32_t k = (uint32_t)tt_below(&r, RT_KEYS);
        unsigned what = (unsigned)tt_below(&r, 10);
        if (what < 4) {
            uint32_t v = w->ver[k] + 1;
            page_of(page, tag_of(w->id, k, v), v % 2);
            int rc = tmem_put_page(R->c, (uint32_t)R->pe, oe, k, page);
            if (rc == 0)
                w->ver[k] = v;
            else if (rc == -ENOSPC || rc == -ENOMEM)
                w->ver[k] = v;          /* the old copy is gone: any hit is wrong */
            else
                race_bad(R, "ephemeral put", w->id, k, rc);
        } else if (what < 9) {
            memset(got, 0, PG);
            int rc = tmem_get_page(R->c, (uint32_t)R->pe, oe, k, got);
            atomic_fetch_add(&R->gets, 1);
            if (rc == 0) {
                page_of(page, tag_of(w->id, k, w->ver[k]), w->ver[k] % 2);
                if (w->ver[k] == 0 || memcmp(got, page, PG) != 0)
                    race_bad(R, "ephemeral get: not the last version put", w->id, k, rc);
                atomic_fetch_add(&R->hits, 1);
                w->ver[k]++;            /* exclusive: taken; a later hit is wrong */
            } else if (rc != -ENOENT) {
                race_bad(R, "ephemeral get", w->id, k, rc);
            }
        } else {
            uint32_t pk = k % (RT_KEYS / 4);
            if (w->pver[pk] && tt_below(&r, 2)) {
                page_of(page, tag_of(w->id + 100, pk, w->pver[pk]), 1);
                int rc = tmem_get_page(R->c, (uint32_t)R->pp, op, pk, got);
                if (rc != 0 || memcmp(got, page, PG) != 0)
                    race_bad(R, "persistent get", w->id, pk, rc);
                w->pver[pk] = 0;        /* an exclusive get took it */
            } else {
                uint32_t v = w->pver[pk] + 1;
                page_of(page, tag_of(w->id + 100, pk, v), 1);
                int rc = tmem_put_page(R->c, (uint32_t)R->pp, op, pk, page);
                if (rc == 0)
                    w->pver[pk] = v;
                else if (rc == -ENOSPC)
                    w->pver[pk] = 0;        /* removed: nothing must be there */
                else if (rc != -ENOMEM)
                    race_bad(R, "persistent put", w->id, pk, rc);
            }
        }
    }
    return NULL;
}

static void *race_revoker(void *arg)
{
    struct race *R = arg;
    tt_rng r;
    tt_seed(&r, SEED * 77);
    while (!atomic_load(&R->stop)) {
        long u = src_pick(R->s, &r);
        if (u >= 0) {
            uint64_t unit = (uint64_t)u;
            uint64_t e = src_take(R->s, unit);
            struct timespec ts = { 0, (long)(tt_below(&r, 300) * 1000) };
            nanosleep(&ts, NULL);           /* gets run into the pending revocation */
            TT_CHECK_INT_EQ(&R->fails, tmem_arena_revoked(R->t, &unit, 1, e), 0);
            atomic_fetch_add(&R->revokes, 1);
        }
        if (tt_below(&r, 4) == 0)           /* and units given back on request */
            tmem_arena_shrink(R->t, TMEM_ARENA_EPHEMERAL, 1 + tt_below(&r, 2), NULL);
        struct timespec ts = { 0, (long)(200 + tt_below(&r, 800)) * 1000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void race_revocations_with_calls(void **state)
{
    (void)state;
    struct race R = { 0 };
    R.s = src_new(24, 64);
    R.t = open_over(R.s, TMEM_COMPRESS_LZ4);
    R.c = tmem_client_open(R.t, "race");
    R.pe = tmem_new_pool(R.c, NOUUID, 0);
    R.pp = tmem_new_pool(R.c, NOUUID, TMEM_POOL_PERSIST);
    struct worker *w = calloc(RT_THREADS, sizeof(*w));
    assert_non_null(w);
    pthread_t th[RT_THREADS], rv;
    long ops = getenv("TMEM_TEST_QUICK") ? 20000 : 60000;
    for (unsigned i = 0; i < RT_THREADS; i++) {
        w[i].R = &R;
        w[i].id = i;
        w[i].ops = ops;
        assert_int_equal(pthread_create(&th[i], NULL, race_worker, &w[i]), 0);
    }
    assert_int_equal(pthread_create(&rv, NULL, race_revoker, &R), 0);
    for (unsigned i = 0; i < RT_THREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&R.stop, 1);
    pthread_join(rv, NULL);
    tt_fails_assert(&R.fails);
    tt_fails_assert(&R.s->fails);
    printf("race: %lu gets, %lu hits, %lu revocations, %u grows, %u shrinks\n",
           atomic_load(&R.gets), atomic_load(&R.hits), atomic_load(&R.revokes), R.s->grows,
           R.s->shrinks);
    assert_int_equal(atomic_load(&R.bad), 0);
    assert_true(atomic_load(&R.revokes) > 0);
    assert_true(atomic_load(&R.hits) > 0);
    /* every persistent page is there, exactly */
    uint8_t page[PG], got[PG];
    for (unsigned i = 0; i < RT_THREADS; i++) {
        for (uint32_t pk = 0; pk < RT_KEYS / 4; pk++) {
            if (!w[i].pver[pk])
                continue;
            page_of(page, tag_of(i + 100, pk, w[i].pver[pk]), 1);
            assert_int_equal(tmem_get_page(R.c, (uint32_t)R.pp, tt_oid(20 + i, 0, 0), pk, got), 0);
            assert_memory_equal(got, page, PG);
        }
    }
    free(w);
    tt_close(R.t);
    src_free(R.s);
}

int main(int argc, char **argv)
{
    SEED = tt_seed_from_args(argc, argv, "test_arena");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(open_refuses_bad_arenas),
        cmocka_unit_test(grow_takes_units_as_needed),
        cmocka_unit_test(full_persistent_store_refuses_early),
        cmocka_unit_test(shrink_gives_free_then_least_used),
        cmocka_unit_test(revoked_units_miss_never_zeros),
        cmocka_unit_test(race_revocations_with_calls),
    };
    int failed = 0;
    static const unsigned sizes[] = { 64, 16 };     /* units of 256 KiB, of 64 KiB */
    for (unsigned i = 0; i < 2; i++) {
        UFRAMES = sizes[i];
        printf("units of %u frames\n", UFRAMES);
        failed += cmocka_run_group_tests(tests, NULL, NULL);
    }
    return failed;
}
