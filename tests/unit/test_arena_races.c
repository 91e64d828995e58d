/* SPDX-License-Identifier: MIT */
/*
 * test_arena_races.c - the engine's arena code (src/core/arena.c,
 * src/core/frame.c) against a release racing a revocation, with a memory
 * source of two memfds as in test_arena.c: it lends units, punches them
 * when they are given back or taken by force, and keeps the owner's view of
 * each unit (free, lent, taken) as tmemd does.
 *
 * Seeded (--seed N replays the page contents and the units chosen).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tmem/arena.h"
#include "tmem_test.h"

static uint64_t SEED;

#define SRC_UNITS 256u
#define UFRAMES   16u
#define UBYTES    ((size_t)UFRAMES * PG)

enum { U_FREE = 0, U_LENT = 1, U_TAKEN = 2 };

struct source {
    int fd[TMEM_ARENA_KINDS];
    pthread_mutex_t lock;
    uint8_t st[TMEM_ARENA_KINDS][SRC_UNITS];
    unsigned grows, shrinks, cleaned;
    unsigned shrink_not_lent;           /* shrink() of a unit not lent (taken, or free) */
    unsigned cleaned_not_taken;
    _Atomic uint64_t epoch;
    /* what another thread of the owner's side does at the moment cleaned()
     * is first called (NULL: nothing) */
    void (*at_first_cleaned)(struct source *s);
    tmem_t *t;
};

static int src_attach(void *arg, int kind, void *base, size_t len)
{
    struct source *s = arg;
    void *p = mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->fd[kind], 0);
    return p == MAP_FAILED ? -errno : 0;
}

static int src_grow(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    int rc = 0;
    pthread_mutex_lock(&s->lock);
    if (unit >= SRC_UNITS || s->st[kind][unit] != U_FREE)
        rc = -EINVAL;                   /* as tmemd: not a free unit of its arena */
    else if (fallocate(s->fd[kind], 0, (off_t)(unit * UBYTES), UBYTES) != 0)
        rc = -errno;
    else {
        s->st[kind][unit] = U_LENT;
        s->grows++;
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static void src_shrink(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    pthread_mutex_lock(&s->lock);
    if (unit >= SRC_UNITS || s->st[kind][unit] != U_LENT) {
        s->shrink_not_lent++;           /* tmemd ignores it (counted as bad) */
    } else {
        fallocate(s->fd[kind], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  (off_t)(unit * UBYTES), UBYTES);
        s->st[kind][unit] = U_FREE;
        s->shrinks++;
    }
    pthread_mutex_unlock(&s->lock);
}

static void src_cleaned(void *arg, int kind, size_t unit)
{
    struct source *s = arg;
    void (*hook)(struct source *) = NULL;
    pthread_mutex_lock(&s->lock);
    if (kind != TMEM_ARENA_EPHEMERAL || unit >= SRC_UNITS || s->st[kind][unit] != U_TAKEN) {
        s->cleaned_not_taken++;
    } else {
        s->st[kind][unit] = U_FREE;
        s->cleaned++;
    }
    hook = s->at_first_cleaned;
    s->at_first_cleaned = NULL;
    pthread_mutex_unlock(&s->lock);
    if (hook)
        hook(s);
}

static const tmem_arena_ops_t src_ops = {
    .attach = src_attach, .grow = src_grow, .shrink = src_shrink, .cleaned = src_cleaned,
};

static struct source *src_new(void)
{
    struct source *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    pthread_mutex_init(&s->lock, NULL);
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        s->fd[k] = memfd_create("test-arena-races", MFD_CLOEXEC);
        assert_true(s->fd[k] >= 0);
        assert_int_equal(ftruncate(s->fd[k], (off_t)SRC_UNITS * UBYTES), 0);
    }
    return s;
}

static void src_free(struct source *s)
{
    for (int k = 0; k < TMEM_ARENA_KINDS; k++)
        close(s->fd[k]);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static tmem_t *open_over(struct source *s)
{
    tmem_config_t cfg;
    tt_config(&cfg, 0, TMEM_COMPRESS_NONE, 0);
    tmem_arena_t a = { .ops = &src_ops, .arg = s, .revoke_epoch = &s->epoch,
                       .bytes = { (uint64_t)SRC_UNITS * UBYTES, (uint64_t)SRC_UNITS * UBYTES },
                       .unit_frames = UFRAMES };
    tmem_t *t = tmem_open_arena(&cfg, &a);
    assert_non_null(t);
    s->t = t;
    return t;
}

/* The owner takes ephemeral unit u by force: epoch first, then the punch. */
static uint64_t src_take(struct source *s, size_t u)
{
    pthread_mutex_lock(&s->lock);
    assert_int_equal(s->st[TMEM_ARENA_EPHEMERAL][u], U_LENT);
    s->st[TMEM_ARENA_EPHEMERAL][u] = U_TAKEN;
    pthread_mutex_unlock(&s->lock);
    uint64_t e = atomic_fetch_add(&s->epoch, 1) + 1;
    assert_int_equal(fallocate(s->fd[TMEM_ARENA_EPHEMERAL],
                               FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                               (off_t)(u * UBYTES), UBYTES), 0);
    return e;
}

static const tmem_uuid_t NOUUID = { 0, 0 };

/* ------------------------------------------------------------------------
 * Units given back in the middle of a revocation.
 *
 * The rule (src/core/arena.c tmem_arena_revoked, frame.c
 * release_units_locked): from the moment a revocation marks a unit until it
 * drops it, a release running meanwhile (tmem_relinquish_pages, as tmemd's
 * library gives free units back) leaves it alone (fr->withheld): the owner
 * took it, so it is not given back, and the revocation drops it and calls
 * cleaned() for it.  The drop is checked under the stripe lock, and waits
 * for frames another thread is moving from a cache to the maps.
 *
 * Here the moment is made certain: the first cleaned() call (unit A, made
 * between the walk and the tm_unit_drop of unit B) runs what the service
 * thread runs, tmem_relinquish_pages, as another thread would at that
 * moment.
 * ---------------------------------------------------------------------- */
static void give_back_free_units(struct source *s)
{
    tmem_relinquish_pages(s->t, (size_t)SRC_UNITS * UFRAMES);
}

static void revoked_units_given_back_meanwhile(void **state)
{
    (void)state;
    struct source *s = src_new();
    tmem_t *t = open_over(s);
    tmem_client_t *c = tmem_client_open(t, "races");
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pe >= 0);
    uint8_t page[PG], got[PG];
    const uint32_t N = 4 * UFRAMES;
    for (uint32_t i = 0; i < N; i++) {
        tt_fill(page, TT_RANDOM, SEED + i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, page), 0);
    }
    /* two of the units held, chosen by the seed */
    uint64_t held[SRC_UNITS];
    size_t nheld = 0;
    for (uint64_t u = 0; u < SRC_UNITS; u++)
        if (s->st[TMEM_ARENA_EPHEMERAL][u] == U_LENT)
            held[nheld++] = u;
    assert_true(nheld >= 3);
    tt_rng r;
    tt_seed(&r, SEED);
    uint64_t take[2];
    take[0] = held[tt_below(&r, nheld)];
    do
        take[1] = held[tt_below(&r, nheld)];
    while (take[1] == take[0]);
    src_take(s, take[0]);
    uint64_t e = src_take(s, take[1]);
    s->at_first_cleaned = give_back_free_units;
    assert_int_equal(tmem_arena_revoked(t, take, 2, e), 0);
    printf("units %llu and %llu taken: cleaned %u, shrink() of a unit not lent %u\n",
           (unsigned long long)take[0], (unsigned long long)take[1], s->cleaned,
           s->shrink_not_lent);
    /* what is left reads back exactly, or misses */
    for (uint32_t i = 0; i < N; i++) {
        int rc = tmem_get_page(c, (uint32_t)pe, tt_oid(1, 0, 0), i, got);
        assert_true(rc == 0 || rc == -ENOENT);
        if (rc == 0) {
            tt_fill(page, TT_RANDOM, SEED + i);
            assert_memory_equal(got, page, PG);
        }
    }
    unsigned cleaned = s->cleaned, stray = s->shrink_not_lent;
    uint8_t st1 = s->st[TMEM_ARENA_EPHEMERAL][take[1]];
    assert_int_equal(tmem_arena_held(t, TMEM_ARENA_EPHEMERAL, take[0]), 0);
    assert_int_equal(tmem_arena_held(t, TMEM_ARENA_EPHEMERAL, take[1]), 0);
    tt_close(t);
    src_free(s);
    assert_int_equal(stray, 0);         /* no RETURN of a unit taken by force */
    assert_int_equal(cleaned, 2);       /* both units cleaned: the owner may lend them again */
    assert_int_equal(st1, U_FREE);
}

/* The same with real threads, as in the client library: one thread gives
 * free units back all the time (the service thread's give_back_free), the
 * other takes units by force and processes the revocations (the job
 * thread).  Every unit taken must be cleaned, none given back.  Bounded
 * rounds; the interleaving is the scheduler's, the units the seed's. */
struct giver {
    tmem_t *t;
    _Atomic int stop;
};

static void *giver_main(void *arg)
{
    struct giver *g = arg;
    while (!atomic_load(&g->stop))
        tmem_relinquish_pages(g->t, (size_t)SRC_UNITS * UFRAMES);
    return NULL;
}

static void revoked_units_given_back_threads(void **state)
{
    (void)state;
    struct source *s = src_new();
    tmem_t *t = open_over(s);
    tmem_client_t *c = tmem_client_open(t, "races");
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pe >= 0);
    struct giver g = { t, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, giver_main, &g), 0);
    tt_rng r;
    tt_seed(&r, SEED * 7 + 1);
    uint8_t page[PG];
    unsigned rounds = 0, taken = 0;
    uint64_t key = 0;
    for (; rounds < 3000; rounds++) {
        for (uint32_t i = 0; i < 4 * UFRAMES; i++, key++) {
            tt_fill(page, TT_RANDOM, SEED + key);
            tmem_put_page(c, (uint32_t)pe, tt_oid(2, 0, 0), (uint32_t)key, page);
        }
        /* two units lent now, marked taken at once (the giver may give
         * one back meanwhile: a RETURN crossing the REVOKED, which is fine) */
        uint64_t held[SRC_UNITS], take[2];
        size_t nheld = 0;
        pthread_mutex_lock(&s->lock);
        for (uint64_t u = 0; u < SRC_UNITS; u++)
            if (s->st[TMEM_ARENA_EPHEMERAL][u] == U_LENT)
                held[nheld++] = u;
        if (nheld >= 2) {
            take[0] = held[tt_below(&r, nheld)];
            do
                take[1] = held[tt_below(&r, nheld)];
            while (take[1] == take[0]);
            for (int k = 0; k < 2; k++)
                s->st[TMEM_ARENA_EPHEMERAL][take[k]] = U_TAKEN;
        }
        pthread_mutex_unlock(&s->lock);
        if (nheld < 2)
            continue;
        uint64_t e = atomic_fetch_add(&s->epoch, 1) + 1;
        for (int k = 0; k < 2; k++)
            fallocate(s->fd[TMEM_ARENA_EPHEMERAL], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)(take[k] * UBYTES), UBYTES);
        assert_int_equal(tmem_arena_revoked(t, take, 2, e), 0);
        taken += 2;
        if (s->cleaned != taken)
            break;
    }
    atomic_store(&g.stop, 1);
    pthread_join(th, NULL);
    printf("%u rounds, %u units taken: cleaned %u, shrink() of a unit not lent %u\n", rounds,
           taken, s->cleaned, s->shrink_not_lent);
    unsigned cleaned = s->cleaned;
    tt_close(t);
    src_free(s);
    /* (a shrink() of a unit taken is no bug by itself here: the giver may
     * give a free unit back just before the revocation starts, as a client
     * may before its REVOKED arrives; but then the walk cleans it too) */
    assert_int_equal(cleaned, taken);
}

int main(int argc, char **argv)
{
    SEED = tt_seed_from_args(argc, argv, "test_arena_races");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(revoked_units_given_back_meanwhile),
        cmocka_unit_test(revoked_units_given_back_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
