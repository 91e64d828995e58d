/* SPDX-License-Identifier: MIT */
/*
 * test_threads.c - concurrent stress with integrity checks (run under
 * ThreadSanitizer in CI).
 *
 *   workers  each its own client with a persistent and an ephemeral pool and
 *            its own model: persistent gets must return exactly the last
 *            stored version, ephemeral gets the last version or a miss;
 *   racers   two clients in one shared pool put, flush and get the SAME
 *            handles (rule 8): a get returns a miss or one whole, valid
 *            version of that handle, never torn data;
 *   host     evicts, relinquishes, lends and returns frames, changes the
 *            limit, freezes and thaws, reads statistics and the listing;
 *   churn    opens and closes clients with pools full of pages;
 *   slots    creates and destroys an extra pool on the workers' own clients
 *            while they run (the client lock's writer against its readers).
 *
 * Pages describe themselves (handle, version, and a body derived from
 * them), so any torn or misplaced data is detected.  Seeded; the seed is
 * printed and "--seed N" replays the per-thread choices (thread interleaving
 * is not replayable, by nature).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "tmem_test.h"

#define NWORKERS 3
#define KEYS 256

static tmem_t *T;
static uint64_t SEED;
static long OPS = 60000;
static tmem_uuid_t SHARED_UUID = { 0x5eed, 0xcafe };
static _Atomic int stop_host;
static tt_fails host_fails;     /* the host thread's failed checks (asserted in stress) */

struct hdr { uint64_t magic, oid0; uint32_t index, version; uint64_t sum; };

/* Fills page as version v of handle (oid0, index); the body is half
 * compressible text, half pseudo-random, or all one word. */
static void make_page(uint8_t *page, uint64_t oid0, uint32_t index, uint32_t v)
{
    uint64_t tag = oid0 * 1000003u ^ ((uint64_t)index << 20) ^ v;
    switch (v % 3) {
    case 0: tt_fill(page, TT_TEXT, tag); break;
    case 1: tt_fill(page, TT_HALF, tag); break;
    default: tt_fill(page, TT_RANDOM, tag); break;
    }
    struct hdr h = { 0x7465737470616765ull, oid0, index, v, tag };
    memcpy(page + 128, &h, sizeof(h));
}

/* The version a page claims, or -1 if it is not a valid page of handle. */
static long page_version(const uint8_t *page, uint64_t oid0, uint32_t index)
{
    struct hdr h;
    memcpy(&h, page + 128, sizeof(h));
    if (h.magic != 0x7465737470616765ull || h.oid0 != oid0 || h.index != index)
        return -1;
    uint8_t want[PG];
    make_page(want, oid0, index, h.version);
    return memcmp(want, page, PG) == 0 ? (long)h.version : -1;
}

struct worker {
    int id;
    tmem_client_t *c;
    uint32_t version[2][KEYS];  /* 0: absent; else the version last stored */
    uint8_t known_absent[KEYS]; /* ephemeral: a get missed, no put since */
    long errors;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tt_rng r;
    tt_seed(&r, SEED * 31 + (uint64_t)w->id);
    uint8_t page[PG], got[PG];
    uint32_t next_v = 1;
    for (long op = 0; op < OPS; op++) {
        int pool = (int)tt_below(&r, 2);          /* 0 persistent, 1 ephemeral */
        uint32_t k = (uint32_t)tt_below(&r, KEYS);
        uint64_t oid0 = (uint64_t)w->id << 32 | (k & 7);
        uint32_t *ver = &w->version[pool][k];
        int what = (int)tt_below(&r, 10);
        if (what < 5) {
            uint32_t v = next_v++;
            make_page(page, oid0, k, v);
            int rc = tmem_put_page(w->c, (uint32_t)pool, tt_oid(oid0, 0, 0), k, page);
            if (rc == 0) {
                *ver = v;
                w->known_absent[k] = pool ? 0 : w->known_absent[k];
            } else if (rc == -ENOSPC) {
                *ver = 0;
            } else if (rc == -ENOMEM || rc == -TMEM_EFROZEN) {
                /* a refused new put changes nothing; a refused duplicate
                 * (frozen cannot refuse a duplicate) is -ENOSPC above */
            } else {
                print_error("worker %d: put returned %d\n", w->id, rc);
                w->errors++;
            }
        } else if (what < 9) {
            int rc = tmem_get_page(w->c, (uint32_t)pool, tt_oid(oid0, 0, 0), k, got);
            if (rc == 0) {
                long v = page_version(got, oid0, k);
                if (v < 0 || (uint32_t)v != *ver || (pool == 1 && w->known_absent[k])) {
                    print_error("worker %d pool %d key %u: got version %ld, expected %u%s\n",
                                w->id, pool, k, v, *ver,
                                w->known_absent[k] ? " (known absent)" : "");
                    w->errors++;
                }
            } else if (rc == -ENOENT) {
                if (pool == 0 && *ver != 0) {
                    print_error("worker %d: persistent key %u lost (version %u)\n", w->id, k,
                                *ver);
                    w->errors++;
                }
                if (pool == 1) {
                    *ver = 0;
                    w->known_absent[k] = 1;
                }
            } else {
                print_error("worker %d: get returned %d\n", w->id, rc);
                w->errors++;
            }
        } else {
            if (tmem_flush_page(w->c, (uint32_t)pool, tt_oid(oid0, 0, 0), k) != 0)
                w->errors++;
            *ver = 0;
        }
    }
    /* every persistent page stored must still be there, exactly */
    for (uint32_t k = 0; k < KEYS; k++) {
        if (!w->version[0][k])
            continue;
        uint64_t oid0 = (uint64_t)w->id << 32 | (k & 7);
        if (tmem_get_page(w->c, 0, tt_oid(oid0, 0, 0), k, got) != 0 ||
            page_version(got, oid0, k) != (long)w->version[0][k]) {
            print_error("worker %d: final check of persistent key %u failed\n", w->id, k);
            w->errors++;
        }
    }
    return NULL;
}

struct racer { int id; tmem_client_t *c; int pool; long errors, hits; };

static void *racer_main(void *arg)
{
    struct racer *x = arg;
    tt_rng r;
    tt_seed(&r, SEED * 77 + (uint64_t)x->id);
    uint8_t page[PG], got[PG];
    for (long op = 0; op < OPS; op++) {
        uint32_t k = (uint32_t)tt_below(&r, 8);    /* few handles: constant collisions */
        int what = (int)tt_below(&r, 3);
        if (what == 0) {
            make_page(page, 99, k, (uint32_t)tt_below(&r, 1000) + 1);
            int rc = tmem_put_page(x->c, (uint32_t)x->pool, tt_oid(99, 0, 0), k, page);
            if (rc != 0 && rc != -ENOMEM && rc != -ENOSPC && rc != -TMEM_EFROZEN)
                x->errors++;
        } else if (what == 1) {
            if (tmem_flush_page(x->c, (uint32_t)x->pool, tt_oid(99, 0, 0), k) != 0)
                x->errors++;
        } else {
            int rc = tmem_get_page(x->c, (uint32_t)x->pool, tt_oid(99, 0, 0), k, got);
            if (rc == 0) {
                x->hits++;
                if (page_version(got, 99, k) < 0) {
                    print_error("racer %d: torn or foreign data for key %u\n", x->id, k);
                    x->errors++;
                }
            } else if (rc != -ENOENT) {
                x->errors++;
            }
        }
    }
    return NULL;
}

static void *host_main(void *arg)
{
    struct worker *ws = arg;
    tt_rng r;
    tt_seed(&r, SEED * 13);
    char list[8192];
    while (!stop_host) {
        switch (tt_below(&r, 8)) {
        case 0: tmem_evict_npages(T, 1 + tt_below(&r, 16)); break;
        case 1: tmem_relinquish_pages(T, 1 + tt_below(&r, 16)); break;
        case 2: {
            unsigned order = (unsigned)tt_below(&r, 3);
            void *p = tmem_relinquish_pageblock(T, order);
            if (p) {
                memset(p, 0x5a, (size_t)PG << order);   /* it is ours to use */
                TT_CHECK_INT_EQ(&host_fails, tmem_return_pages(T, p, order), 0);
            }
            break;
        }
        case 3: tmem_set_max_bytes(T, (6u + tt_below(&r, 3)) << 20); break;
        case 4: {
            uint32_t id = tmem_client_id(ws[tt_below(&r, NWORKERS)].c);
            tmem_admin_freeze(T, id);
            tmem_admin_thaw(T, id);
            break;
        }
        case 5: {
            tmem_stats_t s;
            tmem_stats_get(T, &s);
            break;
        }
        case 6: tmem_list(T, TMEM_CLIENT_ALL, 1, list, sizeof(list)); break;
        default: (void)tmem_freeable_pages(T); break;
        }
    }
    return NULL;
}

static void *churn_main(void *arg)
{
    long *errors = arg;
    tt_rng r;
    tt_seed(&r, SEED * 17);
    uint8_t page[PG];
    for (long round = 0; round < OPS / 500; round++) {
        tmem_client_t *c = tmem_client_open(T, "churn");
        if (!c)
            continue;
        int p = tmem_new_pool(c, (tmem_uuid_t){ 0, 0 }, round % 2 ? TMEM_POOL_PERSIST : 0);
        int s = tmem_new_pool(c, SHARED_UUID, TMEM_POOL_SHARED);
        for (uint32_t i = 0; i < 64; i++) {
            make_page(page, 5, i, (uint32_t)round + 1);
            if (p >= 0)
                tmem_put_page(c, (uint32_t)p, tt_oid(5, 0, 0), i, page);
            if (s >= 0 && i < 8)
                tmem_put_page(c, (uint32_t)s, tt_oid(98, 0, 0), i, page);
        }
        if (tt_below(&r, 2) && p >= 0 && tmem_destroy_pool(c, (uint32_t)p) != 0)
            (*errors)++;
        tmem_client_close(c);
    }
    return NULL;
}

struct slots_arg { struct worker *ws; long errors, cycles; };

static void *slots_main(void *arg)
{
    struct slots_arg *a = arg;
    tt_rng r;
    tt_seed(&r, SEED * 19);
    uint8_t page[PG];
    while (!stop_host) {
        struct worker *w = &a->ws[tt_below(&r, NWORKERS)];
        int p = tmem_new_pool(w->c, (tmem_uuid_t){ 0, 0 }, 0);
        if (p < 0)
            continue;
        if (p < 2) {                        /* the workers own slots 0 and 1 */
            a->errors++;
            continue;
        }
        make_page(page, 7, 0, 1);
        int rc = tmem_put_page(w->c, (uint32_t)p, tt_oid(7, 0, 0), 0, page);
        if (rc != 0 && rc != -ENOMEM && rc != -TMEM_EFROZEN)
            a->errors++;
        if (tmem_destroy_pool(w->c, (uint32_t)p) != 0)
            a->errors++;
        a->cycles++;
    }
    return NULL;
}

static void stress(void **state)
{
    (void)state;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = 8u << 20;
    cfg.shared_auth_required = 0;
    T = tmem_open(&cfg);
    assert_non_null(T);
    static struct worker ws[NWORKERS];
    struct racer xs[2];
    pthread_t tw[NWORKERS], tx[2], th, tc;
    for (int i = 0; i < NWORKERS; i++) {
        memset(&ws[i], 0, sizeof(ws[i]));
        ws[i].id = i;
        ws[i].c = tmem_client_open(T, "worker");
        assert_int_equal(tmem_new_pool(ws[i].c, (tmem_uuid_t){ 0, 0 },
                                       TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET), 0);
        assert_int_equal(tmem_new_pool(ws[i].c, (tmem_uuid_t){ 0, 0 }, TMEM_POOL_KEEP_ON_GET), 1);
        tmem_admin_set_compress(T, tmem_client_id(ws[i].c), i % 3);
    }
    for (int i = 0; i < 2; i++) {
        xs[i] = (struct racer){ .id = i, .c = tmem_client_open(T, "racer") };
        xs[i].pool = tmem_new_pool(xs[i].c, SHARED_UUID, TMEM_POOL_SHARED);
        assert_int_equal(tmem_pool_is_shared(xs[i].c, (uint32_t)xs[i].pool), 1);
    }
    long churn_errors = 0;
    stop_host = 0;
    memset(&host_fails, 0, sizeof(host_fails));
    for (int i = 0; i < NWORKERS; i++)
        pthread_create(&tw[i], NULL, worker_main, &ws[i]);
    for (int i = 0; i < 2; i++)
        pthread_create(&tx[i], NULL, racer_main, &xs[i]);
    struct slots_arg sa = { .ws = ws };
    pthread_t ts;
    pthread_create(&th, NULL, host_main, ws);
    pthread_create(&tc, NULL, churn_main, &churn_errors);
    pthread_create(&ts, NULL, slots_main, &sa);
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(tw[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(tx[i], NULL);
    pthread_join(tc, NULL);
    stop_host = 1;
    pthread_join(th, NULL);
    pthread_join(ts, NULL);

    long errors = churn_errors + sa.errors;
    for (int i = 0; i < NWORKERS; i++)
        errors += ws[i].errors;
    for (int i = 0; i < 2; i++)
        errors += xs[i].errors;
    tmem_stats_t s;
    tmem_stats_get(T, &s);
    print_message("ops/thread %ld: puts %llu gets %llu (hits %llu) evictions %llu busy-skips %llu "
                  "racer hits %ld+%ld, pool create/destroy cycles %ld\n",
                  OPS, (unsigned long long)s.puts, (unsigned long long)s.gets,
                  (unsigned long long)s.gets_hit, (unsigned long long)s.evictions,
                  (unsigned long long)s.evict_skipped_busy, xs[0].hits, xs[1].hits, sa.cycles);
    tt_fails_assert(&host_fails);
    assert_int_equal(errors, 0);
    assert_true(s.evictions > 0);
    assert_true(xs[0].hits + xs[1].hits > 0);
    assert_true(sa.cycles > 0);                 /* the writer really ran */
    assert_int_equal(tmem_check(T), 0);
    tmem_close(T);
}

/* tmem_client_release() frees a handle at once (tmemd drops clients that
 * way); statistics, tmem-list, client info and the self-check look at
 * clients meanwhile.  They pin what they look at and release waits for
 * the pins (use after free before that: found by test_model_daemon and by
 * review). */
struct walker_arg {
    tmem_t *t;
    atomic_int stop;
    atomic_ulong walks;
    tt_fails fails;             /* asserted by the test's thread after the join */
};

static void *walker_main(void *arg)
{
    struct walker_arg *w = arg;
    char buf[4096];
    while (!atomic_load(&w->stop)) {
        tmem_stats_t s;
        TT_CHECK_INT_EQ(&w->fails, tmem_stats_get(w->t, &s), 0);
        tmem_list(w->t, TMEM_CLIENT_ALL, 1, buf, sizeof(buf));
        uint32_t ids[4];
        size_t n = tmem_client_ids(w->t, ids, 4);
        for (size_t i = 0; i < n && i < 4; i++) {
            tmem_client_info_t info;
            int rc = tmem_client_info(w->t, ids[i], &info);    /* may race a release */
            TT_CHECK(&w->fails, rc == 0 || rc == -ENOENT);
        }
        atomic_fetch_add(&w->walks, 1);
    }
    return NULL;
}

static void release_while_walking(void **state)
{
    (void)state;
    tmem_t *t = tt_open(4 << 20, TMEM_COMPRESS_LZ4, 1);
    struct walker_arg w = { .t = t };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walker_main, &w), 0);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    for (int i = 0; i < 20000 || atomic_load(&w.walks) < 100; i++) {
        tmem_client_t *c = tmem_client_open(t, "short-lived");
        assert_non_null(c);
        if (i & 1) {
            int p = tmem_new_pool(c, (tmem_uuid_t){ 0, 0 }, TMEM_POOL_PERSIST);
            assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), 0);
        }
        tmem_client_release(c);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    tt_fails_assert(&w.fails);
    tmem_stats_t s;
    tmem_stats_get(t, &s);
    assert_int_equal(s.clients, 0);
    assert_int_equal(s.persistent_pages, 0);
    tt_close(t);
}

int main(int argc, char **argv)
{
    SEED = tt_seed_from_args(argc, argv, "test_threads");
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-n"))
            OPS = strtol(argv[i + 1], NULL, 0);
    const struct CMUnitTest tests[] = { cmocka_unit_test(stress),
                                        cmocka_unit_test(release_while_walking) };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
