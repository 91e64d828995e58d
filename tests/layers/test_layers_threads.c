/* SPDX-License-Identifier: MIT */
/*
 * test_layers_threads.c - the layers under threads and a daemon restart.
 *
 * Several threads share one frontswap (writethrough: a restart without a
 * state file must lose nothing) and one cleancache, each on its own slots
 * and files, checking every page it gets back, and one more thread swaps
 * another area on and off, while the main thread replaces the daemon under
 * them (a new tmemd on the same path).  The link
 * must reconnect once for all of them; no call may crash, hang or return
 * wrong data.  Run under ThreadSanitizer in CI (label "thread").
 *
 * Replay: test_layers_threads --seed N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

#include "td_harness.h"
#include "tmem/cleancache.h"
#include "tmem/frontswap.h"
#include "tmem_test.h"

#define THREADS 4
#define SLOTS_PER_THREAD 64

static uint64_t g_seed;
static tmem_frontswap_t *g_fs;
static tmem_cleancache_t *g_cc;
static int g_ccfs;
static atomic_int g_stop;

struct worker {
    pthread_t th;
    unsigned id;
    uint64_t latest[SLOTS_PER_THREAD];          /* 0: nothing swapped out */
    uint8_t swap[SLOTS_PER_THREAD][PG];         /* this thread's part of the swap file */
    uint64_t ops, tmem_loads, swap_loads, cc_hits, errors;
};

static void fill(uint8_t *p, unsigned id, unsigned s, uint64_t tag)
{
    tt_fill(p, TT_RANDOM, ((uint64_t)id << 48) ^ ((uint64_t)s << 32) ^ tag);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tt_rng r;
    tt_seed(&r, g_seed + w->id);
    uint8_t page[PG], want[PG];
    uint64_t tag = 1;
    tmem_cleancache_filekey_t key = tmem_cleancache_key_ino(1000 + w->id);
    while (!atomic_load(&g_stop)) {
        unsigned s = (unsigned)tt_below(&r, SLOTS_PER_THREAD);
        uint64_t off = (uint64_t)w->id * SLOTS_PER_THREAD + s;
        if (tt_below(&r, 2) == 0) {
            fill(page, w->id, s, tag);
            int rc = tmem_frontswap_store(g_fs, 0, off, page);
            w->latest[s] = tag++;
            if (rc != 0)                        /* writethrough: 1 when kept */
                memcpy(w->swap[s], page, PG);
            if (rc == 0)
                w->errors++;                    /* writethrough never says 0 */
        } else if (w->latest[s]) {
            fill(want, w->id, s, w->latest[s]);
            int rc = tmem_frontswap_load(g_fs, 0, off, page);
            if (rc == 0) {
                w->tmem_loads++;
            } else if (rc == -ENOENT) {
                memcpy(page, w->swap[s], PG);
                w->swap_loads++;
            } else {
                w->errors++;
            }
            if (memcmp(page, want, PG) != 0)
                w->errors++;
            w->latest[s] = 0;                   /* back in "memory" */
        }
        /* cleancache: a page per thread, always the same contents */
        fill(want, w->id, 9999, 1);
        if (tt_below(&r, 2) == 0) {
            tmem_cleancache_put_page(g_cc, g_ccfs, &key, s, want);
        } else if (tmem_cleancache_get_page(g_cc, g_ccfs, &key, s, page) == 0) {
            w->cc_hits++;
            if (memcmp(page, want, PG) != 0)
                w->errors++;
        }
        w->ops++;
    }
    return NULL;
}

/* swapon and swapoff of area 1 over and over, next to the workers' area 0
 * and the reconnection (whose rebuild walks every area) */
static void *swapper_main(void *arg)
{
    uint64_t *cycles = arg;
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 7);
    while (!atomic_load(&g_stop)) {
        if (tmem_frontswap_init(g_fs, 1, 256) != 0)
            break;
        for (uint64_t s = 0; s < 8; s++)
            tmem_frontswap_store(g_fs, 1, s * 31, page);
        tmem_frontswap_invalidate_area(g_fs, 1);
        (*cycles)++;
    }
    return NULL;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static td_t g_d1, g_d2;
static char g_link[256];

static int stop_daemons(void **state)
{
    (void)state;
    td_t *const ds[] = { &g_d1, &g_d2 };
    assert_int_equal(td_stop_all(ds, 2), 0);    /* every daemon's self-check passed */
    if (g_link[0])
        unlink(g_link);
    return 0;
}

static void restart_under_threads(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d1, NULL), 0);
    snprintf(g_link, sizeof(g_link), "%s.link", g_d1.dir);
    assert_int_equal(symlink(g_d1.sock, g_link), 0);
    g_fs = tmem_frontswap_connect(g_link, "threads-fs", TMEM_FRONTSWAP_WRITETHROUGH);
    g_cc = tmem_cleancache_connect(g_link, "threads-cc");
    assert_non_null(g_fs);
    assert_non_null(g_cc);
    tmem_cleancache_set_reconnect_ms(g_cc, 50);
    assert_int_equal(tmem_frontswap_init(g_fs, 0, THREADS * SLOTS_PER_THREAD), 0);
    g_ccfs = tmem_cleancache_init_fs(g_cc);
    assert_true(g_ccfs >= 0);

    struct worker *ws = calloc(THREADS, sizeof(*ws));
    for (unsigned i = 0; i < THREADS; i++) {
        ws[i].id = i;
        assert_int_equal(pthread_create(&ws[i].th, NULL, worker_main, &ws[i]), 0);
    }
    pthread_t swapper;
    uint64_t swap_cycles = 0;
    assert_int_equal(pthread_create(&swapper, NULL, swapper_main, &swap_cycles), 0);
    sleep_ms(300);
    /* the daemon goes; a new one comes up on the same path */
    assert_int_equal(td_stop(&g_d1), 0);
    g_d1.pid = 0;
    sleep_ms(200);
    assert_int_equal(td_start(&g_d2, NULL), 0);
    unlink(g_link);
    assert_int_equal(symlink(g_d2.sock, g_link), 0);
    /* run until both layers are back on the new daemon (bounded) */
    for (int i = 0; i < 200; i++) {
        tmem_frontswap_stats_t fst;
        tmem_cleancache_stats_t cst;
        tmem_frontswap_stats(g_fs, &fst);
        tmem_cleancache_stats(g_cc, &cst);
        if (fst.reconnects && cst.reconnects)
            break;
        sleep_ms(50);
    }
    sleep_ms(300);
    atomic_store(&g_stop, 1);
    pthread_join(swapper, NULL);
    assert_true(swap_cycles > 0);
    assert_null(tmem_frontswap_map(g_fs, 1, NULL));     /* the swapper ends swapped off */
    uint64_t ops = 0, tl = 0, sl = 0, errors = 0;
    for (unsigned i = 0; i < THREADS; i++) {
        pthread_join(ws[i].th, NULL);
        ops += ws[i].ops;
        tl += ws[i].tmem_loads;
        sl += ws[i].swap_loads;
        errors += ws[i].errors;
    }
    tmem_frontswap_stats_t fst;
    tmem_cleancache_stats_t cst;
    tmem_frontswap_stats(g_fs, &fst);
    tmem_cleancache_stats(g_cc, &cst);
    fprintf(stderr, "ops %lu, tmem loads %lu, swap loads %lu, fs reconnects %lu, cc reconnects %lu\n",
            (unsigned long)ops, (unsigned long)tl, (unsigned long)sl,
            (unsigned long)fst.reconnects, (unsigned long)cst.reconnects);
    assert_int_equal(errors, 0);
    assert_int_equal(fst.lost, 0);
    assert_int_equal(fst.reconnects, 1);
    assert_int_equal(cst.reconnects, 1);
    assert_true(tl > 0);
    /* after the restart both layers work again */
    uint8_t page[PG], got[PG];
    fill(page, 0, 0, 424242);
    assert_int_equal(tmem_frontswap_store(g_fs, 0, 0, page), 1);
    assert_int_equal(tmem_frontswap_load(g_fs, 0, 0, got), 0);
    assert_memory_equal(got, page, PG);
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(5);
    assert_int_equal(tmem_cleancache_put_page(g_cc, g_ccfs, &k, 0, page), 0);
    assert_int_equal(tmem_cleancache_get_page(g_cc, g_ccfs, &k, 0, got), 0);
    free(ws);
    tmem_frontswap_close(g_fs);
    tmem_cleancache_close(g_cc);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    g_seed = tt_seed_from_args(argc, argv, "test_layers_threads");
    /* the layers' own reconnection, to a daemon that runs their pools (a
     * handle with lent memory keeps its private pools and comes back by
     * itself: test_frontswap daemon_killed_lent, test_lend) */
    td_window_mode = 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(restart_under_threads, stop_daemons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
