/* SPDX-License-Identifier: MIT */
/*
 * test_uswap.c - uswap (frontends/uswap) end to end: a region paged through
 * a real tmemd and a swap file, checked byte for byte against a model (a
 * plain copy of what the region must hold).
 *
 *   random_*           random writes, reads, zero pages and discards over a
 *                      region 4x the budget: tmem that refuses (small
 *                      daemon), the swap file alone, writethrough, exclusive
 *                      loads, the clock, read-ahead; each asserts which paths were taken
 *   batched_*          runs of neighbouring pages written, zeroed, read,
 *                      swept and dirtied again, so that evictions go in
 *                      batches of neighbours and faults bring runs in: every
 *                      page reads back what was last written (tmem that
 *                      refuses, exclusive loads, the swap file alone)
 *   threads            several threads faulting at once (with read-ahead)
 *   tenant_killed      a tenant SIGKILLed mid-run: the daemon and another
 *                      tenant go on, their data right
 *   restart_state_file a daemon restarted (with its state file) under load
 *   writethrough_kill  a daemon SIGKILLed under load, in writethrough mode
 *   lost_is_loud       a page only tmem held, lost: the process aborts with
 *                      a FATAL line (never silent zeros)
 *   shim_*             the launcher and LD_PRELOAD shim on unmodified
 *                      programs (the examples, GNU sort)
 *
 *   shim_found         the launcher finds the shim beside itself (the build
 *                      tree; installed, scripts/test.sh checks it from a
 *                      relocated prefix), or says where it looked
 *
 * All but shim_needs_root_message and shim_found page with userfaultfd,
 * which needs root
 * here: without it they are skipped, the reason on stderr.  --uffd runs only
 * those (ctest's test_uswap: exit 77 before anything runs if userfaultfd is
 * not usable, which ctest reports as skipped), --no-uffd only the others
 * (test_uswap_launcher); neither, all of them (exit 77 if every one
 * skipped).
 * Replay: test_uswap --seed N.  Children: test_uswap --tenant SOCK SEED and
 * test_uswap --lost-child SOCK (run by the tests themselves).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "td_harness.h"
#include "tmem_test.h"
#include "uswap.h"

#define PGSZ 4096u

static uint64_t g_seed;
static bool g_ok;                   /* userfaultfd works here */
static char g_why[256];
static td_t g_d;
static bool g_d_up;

#define NEED_UFFD()                                                       \
    do {                                                                  \
        if (!g_ok)                                                        \
            TT_SKIP_CASE("%s", g_why);                                    \
    } while (0)

static void start_daemon(const char *const *extra)
{
    assert_int_equal(td_start(&g_d, extra), 0);
    g_d_up = true;
}

/* The test's daemons run their clients' pools (memory.lend=false): what a
 * daemon's crash or restart takes from a client is then real. */
static int window_mode(void **state)
{
    (void)state;
    td_window_mode = 1;
    return 0;
}

static int stop_daemon(void **state)
{
    (void)state;
    td_window_mode = 0;
    if (g_d_up) {
        int rc = td_stop(&g_d);
        g_d_up = false;
        assert_int_equal(rc, 0);    /* a clean exit: its self-check passed */
    }
    return 0;
}

/* ---- the workload and its model ---------------------------------------------- */

struct work {
    uint8_t *reg, *model;
    size_t pages;
    uswap_t *u;                 /* for discards; NULL: none */
    tt_rng rng;
    size_t hot_base, hot;
    const char *who;
    bool threaded;              /* off the main thread: record, do not assert */
    _Atomic int bad;
    size_t bad_off;
};

static void fill_random(tt_rng *r, uint8_t *p, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = tt_next(r);
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)tt_next(r);
}

static void check_range(struct work *w, size_t off, size_t len)
{
    if (memcmp(w->reg + off, w->model + off, len) == 0)
        return;
    size_t i = 0;
    while (w->reg[off + i] == w->model[off + i])
        i++;
    if (w->threaded) {
        if (!w->bad)
            w->bad_off = off + i;
        w->bad = 1;
        return;
    }
    fail_msg("%s: byte %zu (page %zu) reads %02x, model %02x (seed %llu)", w->who,
             off + i, (off + i) / PGSZ, w->reg[off + i], w->model[off + i],
             (unsigned long long)g_seed);
}

static void work_init(struct work *w, uint8_t *reg, uint8_t *model, size_t pages,
                      uswap_t *u, uint64_t seed, const char *who)
{
    memset(w, 0, sizeof *w);
    w->reg = reg;
    w->model = model;
    w->pages = pages;
    w->u = u;
    w->who = who;
    w->hot = pages / 8 ? pages / 8 : 1;
    tt_seed(&w->rng, seed);
}

/* Fills every page with random bytes (every page is then worth keeping). */
static void work_fill(struct work *w)
{
    fill_random(&w->rng, w->model, w->pages * PGSZ);
    memcpy(w->reg, w->model, w->pages * PGSZ);
}

static void work_ops(struct work *w, size_t ops)
{
    tt_rng *r = &w->rng;
    size_t total = w->pages * PGSZ;
    uint8_t buf[2 * PGSZ];
    for (size_t i = 0; i < ops; i++) {
        if (i % 1000 == 0)
            w->hot_base = tt_below(r, w->pages - w->hot + 1);
        size_t p = tt_below(r, 100) < 70 ? w->hot_base + tt_below(r, w->hot)
                                         : tt_below(r, w->pages);
        size_t off = p * PGSZ + tt_below(r, PGSZ);
        size_t len = 1 + tt_below(r, 2 * PGSZ);
        if (off + len > total)
            len = total - off;
        unsigned k = (unsigned)tt_below(r, 100);
        if (k < 40) {                                   /* write */
            fill_random(r, buf, len);
            memcpy(w->model + off, buf, len);
            memcpy(w->reg + off, buf, len);
        } else if (k < 85) {                            /* read */
            check_range(w, off, len);
        } else if (k < 92) {                            /* a whole page, often zeros */
            int v = tt_below(r, 2) ? 0 : (int)tt_below(r, 256);
            memset(w->model + p * PGSZ, v, PGSZ);
            memset(w->reg + p * PGSZ, v, PGSZ);
        } else if (k < 95 && w->u) {                    /* discard some pages */
            size_t n = 1 + tt_below(r, 8);
            if (p + n > w->pages)
                n = w->pages - p;
            assert_int_equal(uswap_discard(w->u, w->reg + p * PGSZ, n * PGSZ), 0);
            memset(w->model + p * PGSZ, 0, n * PGSZ);
        } else {                                        /* scattered single bytes */
            for (int j = 0; j < 8; j++) {
                size_t o = tt_below(r, total);
                if (w->reg[o] != w->model[o])
                    check_range(w, o, 1);
            }
        }
    }
}

static void work_verify(struct work *w)
{
    for (size_t p = 0; p < w->pages; p++)
        check_range(w, p * PGSZ, PGSZ);
}

static void print_stats(const char *what, uswap_t *u)
{
    uswap_stats_t s;
    uswap_stats(u, &s);
    print_message("%s: faults %llu wp %llu zero %llu | tmem loads %llu stores ok %llu "
                  "refused %llu | swap reads %llu writes %llu | evictions %llu (clean %llu, "
                  "zero %llu) lost %llu\n", what,
                  (unsigned long long)s.faults, (unsigned long long)s.wp_faults,
                  (unsigned long long)s.zero_fills, (unsigned long long)s.tmem_loads,
                  (unsigned long long)s.tmem_stores_ok,
                  (unsigned long long)s.tmem_stores_refused,
                  (unsigned long long)s.swap_reads, (unsigned long long)s.swap_writes,
                  (unsigned long long)s.evictions, (unsigned long long)s.clean_evictions,
                  (unsigned long long)s.zero_evictions, (unsigned long long)s.lost);
}

/* ---- random: one region, one configuration ------------------------------------ */

#define R_PAGES  4096u          /* 16 MiB */
#define R_BUDGET 1024u          /* a quarter */
#define R_OPS    30000u

enum { M_TMEM, M_NOTMEM, M_WRITETHROUGH, M_EXCLUSIVE, M_CLOCK, M_READAHEAD };

static void random_mode(int mode)
{
    NEED_UFFD();
    /* 6 MiB of tmem for 16 MiB of random pages: it must refuse some */
    static const char *const small[] = { "--max-memory", "6M", NULL };
    tmem_frontswap_t *fs = NULL;
    if (mode != M_NOTMEM) {
        start_daemon(small);
        unsigned fl = mode == M_EXCLUSIVE ? 0 : TMEM_FRONTSWAP_KEEP_ON_LOAD;
        if (mode == M_WRITETHROUGH)
            fl |= TMEM_FRONTSWAP_WRITETHROUGH;
        fs = tmem_frontswap_connect(g_d.sock, "uswap-random", fl);
        assert_non_null(fs);
    }
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)R_PAGES * PGSZ;
    cfg.budget_pages = R_BUDGET;
    cfg.fs = fs;
    cfg.writethrough = mode == M_WRITETHROUGH;
    cfg.policy = mode == M_CLOCK ? USWAP_CLOCK : USWAP_FIFO;
    cfg.readahead = mode == M_READAHEAD ? 16 : 0;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        fail_msg("uswap_open: %s", uswap_last_error());
    uint8_t *model = malloc((size_t)R_PAGES * PGSZ);
    assert_non_null(model);
    struct work w;
    work_init(&w, uswap_base(u), model, R_PAGES, u, g_seed + (uint64_t)mode, "random");
    work_fill(&w);
    work_verify(&w);            /* a sequential pass: read-ahead's case */
    work_ops(&w, R_OPS);
    work_verify(&w);

    static const char *names[] = { "tmem", "no-tmem", "writethrough", "exclusive", "clock",
                                   "readahead" };
    print_stats(names[mode], u);
    uswap_stats_t s;
    uswap_stats(u, &s);
    assert_true(s.resident <= R_BUDGET);
    assert_true(s.evictions > R_PAGES);
    assert_true(s.faults > R_PAGES);
    assert_int_equal(s.lost, 0);
    assert_true(s.zero_evictions > 0);          /* the zero pages written */
    assert_true(s.clean_evictions > 0);         /* pages read back and not written */
    if (mode == M_READAHEAD)
        assert_true(s.readaheads > 0);
    else
        assert_int_equal(s.readaheads, 0);
    if (mode == M_NOTMEM) {
        assert_int_equal(s.tmem_stores_ok + s.tmem_stores_refused + s.tmem_loads, 0);
        assert_true(s.swap_writes > 0 && s.swap_reads > 0);
    } else {
        assert_true(s.tmem_stores_ok > 0 && s.tmem_loads > 0);
        if (mode == M_WRITETHROUGH) {
            /* every store also went to the file */
            assert_true(s.swap_writes >= s.tmem_stores_ok + s.tmem_stores_refused);
        } else {
            /* both paths: tmem kept some, refused some (the file took those) */
            assert_true(s.tmem_stores_refused > 0);
            assert_true(s.swap_writes >= s.tmem_stores_refused);
            assert_true(s.swap_reads > 0);
        }
    }
    uswap_close(u);
    if (fs) {
        tmem_frontswap_stats_t fst;
        tmem_frontswap_stats(fs, &fst);
        assert_int_equal(fst.lost, 0);
        assert_int_equal(tmem_frontswap_curr_pages(fs), 0);   /* the area is off */
        tmem_frontswap_close(fs);
    }
    free(model);
}

static void random_tmem(void **state) { (void)state; random_mode(M_TMEM); }
static void random_no_tmem(void **state) { (void)state; random_mode(M_NOTMEM); }
static void random_writethrough(void **state) { (void)state; random_mode(M_WRITETHROUGH); }
static void random_exclusive(void **state) { (void)state; random_mode(M_EXCLUSIVE); }
static void random_clock(void **state) { (void)state; random_mode(M_CLOCK); }
static void random_readahead(void **state) { (void)state; random_mode(M_READAHEAD); }

/* ---- batched: runs of neighbours, against the model ---------------------------------- */

#define B_RUN 64u               /* longest run an operation touches */

/* Operations on runs of neighbouring pages, so that victims and faults come
 * in runs: evictions go in batches of neighbours, fill runs bring several
 * pages in at once. */
static void batch_ops(struct work *w, size_t ops)
{
    tt_rng *r = &w->rng;
    for (size_t i = 0; i < ops; i++) {
        size_t p = tt_below(r, w->pages);
        size_t n = 1 + tt_below(r, B_RUN);
        if (p + n > w->pages)
            n = w->pages - p;
        size_t off = p * PGSZ, len = n * PGSZ;
        unsigned k = (unsigned)tt_below(r, 100);
        if (k < 25) {                                   /* a run written whole */
            fill_random(r, w->model + off, len);
            memcpy(w->reg + off, w->model + off, len);
        } else if (k < 35) {                            /* a run of zeros */
            memset(w->model + off, 0, len);
            memset(w->reg + off, 0, len);
        } else if (k < 70) {                            /* a run read */
            check_range(w, off, len);
        } else if (k < 78) {                            /* a long sweep (a stream) */
            size_t m = 4 * B_RUN;
            if (p + m > w->pages)
                m = w->pages - p;
            check_range(w, off, m * PGSZ);
        } else if (k < 93) {                            /* some pages of a run dirtied */
            for (size_t q = p; q < p + n; q += 1 + tt_below(r, 3)) {
                size_t o = q * PGSZ + tt_below(r, PGSZ);
                uint8_t v = (uint8_t)tt_next(r);
                w->model[o] = v;
                w->reg[o] = v;
            }
        } else if (k < 97) {                            /* a run discarded */
            assert_int_equal(uswap_discard(w->u, w->reg + off, len), 0);
            memset(w->model + off, 0, len);
        } else {                                        /* scattered bytes */
            for (int j = 0; j < 16; j++) {
                size_t o = tt_below(r, w->pages * PGSZ);
                if (w->reg[o] != w->model[o])
                    check_range(w, o, 1);
            }
        }
    }
}

enum { B_TMEM, B_EXCLUSIVE, B_NOTMEM };

static void batched_mode(int mode)
{
    NEED_UFFD();
    static const char *const small[] = { "--max-memory", "6M", NULL };
    tmem_frontswap_t *fs = NULL;
    if (mode != B_NOTMEM) {
        start_daemon(small);
        fs = tmem_frontswap_connect(g_d.sock, "uswap-batched",
                                    mode == B_EXCLUSIVE ? 0 : TMEM_FRONTSWAP_KEEP_ON_LOAD);
        assert_non_null(fs);
    }
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)R_PAGES * PGSZ;
    cfg.budget_pages = R_BUDGET;        /* batches of 32 victims */
    cfg.fs = fs;
    cfg.readahead = 32;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        fail_msg("uswap_open: %s", uswap_last_error());
    uint8_t *model = malloc((size_t)R_PAGES * PGSZ);
    assert_non_null(model);
    struct work w;
    work_init(&w, uswap_base(u), model, R_PAGES, u, g_seed + 100 + (uint64_t)mode, "batched");
    work_fill(&w);
    work_verify(&w);
    batch_ops(&w, 6000);
    work_verify(&w);
    batch_ops(&w, 6000);
    work_verify(&w);

    static const char *names[] = { "batched tmem", "batched exclusive", "batched no-tmem" };
    print_stats(names[mode], u);
    uswap_stats_t s;
    uswap_stats(u, &s);
    print_message("%s: %llu evictions in %llu batches, %llu pages in %llu fill runs\n",
                  names[mode], (unsigned long long)s.evictions,
                  (unsigned long long)s.evict_batches,
                  (unsigned long long)(s.faults + s.readaheads), (unsigned long long)s.fill_runs);
    assert_true(s.resident <= R_BUDGET);
    assert_int_equal(s.lost, 0);
    assert_true(s.evictions > R_PAGES);
    /* evictions went in batches (of stream pages up to budget / 32; of the
     * ring's, smaller), faults brought runs in */
    assert_true(s.evict_batches > 0 && s.evictions >= 3 * s.evict_batches);
    assert_true(s.readaheads > 0);
    assert_int_equal(s.fill_runs, s.faults);
    assert_true(s.zero_evictions > 0 && s.clean_evictions > 0);
    if (mode == B_NOTMEM) {
        assert_int_equal(s.tmem_stores_ok + s.tmem_stores_refused + s.tmem_loads, 0);
        assert_true(s.swap_writes > 0 && s.swap_reads > 0);
    } else {
        assert_true(s.tmem_stores_ok > 0 && s.tmem_loads > 0);
        assert_true(s.tmem_stores_refused > 0);
        assert_true(s.swap_writes >= s.tmem_stores_refused && s.swap_reads > 0);
    }
    uswap_close(u);
    if (fs) {
        tmem_frontswap_stats_t fst;
        tmem_frontswap_stats(fs, &fst);
        assert_int_equal(fst.lost, 0);
        assert_int_equal(tmem_frontswap_curr_pages(fs), 0);
        tmem_frontswap_close(fs);
    }
    free(model);
}

static void batched_tmem(void **state) { (void)state; batched_mode(B_TMEM); }
static void batched_exclusive(void **state) { (void)state; batched_mode(B_EXCLUSIVE); }
static void batched_no_tmem(void **state) { (void)state; batched_mode(B_NOTMEM); }

/* ---- replacement: stream pages first, guessed writes ------------------------ */

#define S_PAGES  4096u
#define S_BUDGET 1024u
#define S_HOT    768u           /* pages used at random: fit, with room to spare */
#define S_STREAM 3000u          /* pages read once, in order */
#define S_TOUCH  8              /* random hot accesses per stream page */

/* A scan past a working set that fits must not push the working set out:
 * the stream's pages go first.  Without it (FIFO), every hot page is
 * evicted about every budget's worth of stream pages: thousands of faults
 * more. */
static void stream_pages_first(void **state)
{
    (void)state;
    NEED_UFFD();
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)S_PAGES * PGSZ;
    cfg.budget_pages = S_BUDGET;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        fail_msg("uswap_open: %s", uswap_last_error());
    uint8_t *reg = uswap_base(u), *model = malloc((size_t)S_PAGES * PGSZ);
    assert_non_null(model);
    tt_rng r;
    tt_seed(&r, g_seed);
    /* everything written once, in a random order (no stream): the stream's
     * pages and the hot ones */
    uint32_t *order = malloc(S_PAGES * sizeof *order);
    assert_non_null(order);
    for (uint32_t i = 0; i < S_PAGES; i++)
        order[i] = i;
    for (uint32_t i = S_PAGES - 1; i > 0; i--) {
        uint32_t j = (uint32_t)tt_below(&r, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < S_PAGES; i++) {
        size_t p = order[i];
        fill_random(&r, model + p * PGSZ, 64);
        memcpy(reg + p * PGSZ, model + p * PGSZ, 64);
    }
    /* the hot pages (the last ones), brought in at random */
    size_t hot0 = S_PAGES - S_HOT;
    for (size_t i = 0; i < S_PAGES; i++)
        if (order[i] >= hot0)
            assert_memory_equal(reg + order[i] * PGSZ, model + order[i] * PGSZ, 64);
    free(order);
    uswap_stats_t s0, s1;
    uswap_stats(u, &s0);
    for (size_t i = 0; i < S_STREAM; i++) {
        assert_memory_equal(reg + i * PGSZ, model + i * PGSZ, 64);     /* the scan */
        for (int k = 0; k < S_TOUCH; k++) {
            size_t p = hot0 + tt_below(&r, S_HOT), off = p * PGSZ + tt_below(&r, 64);
            if (tt_below(&r, 2)) {
                uint8_t b = (uint8_t)tt_below(&r, 256);
                model[off] = b;
                reg[off] = b;
            } else if (reg[off] != model[off]) {
                fail_msg("page %zu: byte %zu is %u, wrote %u (seed %llu)", p, off % PGSZ,
                         reg[off], model[off], (unsigned long long)g_seed);
            }
        }
    }
    uswap_stats(u, &s1);
    uint64_t faults = s1.faults - s0.faults, streamed = s1.stream_evictions - s0.stream_evictions;
    print_message("stream_pages_first: %llu faults for %u stream pages, %llu stream evictions\n",
                  (unsigned long long)faults, S_STREAM, (unsigned long long)streamed);
    /* one fault per stream page (but those resident already), and the hot
     * pages stay (a few come back) */
    assert_true(faults >= S_STREAM - S_BUDGET);
    assert_true(faults < S_STREAM + S_HOT / 4);
    assert_true(streamed > S_STREAM - S_BUDGET);
    for (size_t p = 0; p < S_PAGES; p++)
        if (memcmp(reg + p * PGSZ, model + p * PGSZ, 64) != 0)
            fail_msg("page %zu differs at the end (seed %llu)", p, (unsigned long long)g_seed);
    uswap_close(u);
    free(model);
}

#define G_PAGES  64u
#define G_BUDGET 8u

/* A page the program writes whenever it has it comes back writable (no
 * write-protect fault); one it only reads again is guessed at most three
 * times, then comes back clean. */
static void dirty_guesses(void **state)
{
    (void)state;
    NEED_UFFD();
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)G_PAGES * PGSZ;
    cfg.budget_pages = G_BUDGET;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        fail_msg("uswap_open: %s", uswap_last_error());
    uint8_t *reg = uswap_base(u);
    uint8_t model[G_PAGES];
    for (size_t p = 0; p < G_PAGES; p++) {
        model[p] = (uint8_t)(p + 1);
        reg[p * PGSZ] = model[p];
    }
    /* read then write, every page, four rounds (each evicts every page) */
    uswap_stats_t s0, s1, s2;
    uswap_stats(u, &s0);
    for (int round = 0; round < 4; round++)
        for (size_t p = 0; p < G_PAGES; p++) {
            assert_int_equal(reg[p * PGSZ], model[p]);
            model[p] = (uint8_t)(model[p] * 3 + 1);
            reg[p * PGSZ] = model[p];
        }
    uswap_stats(u, &s1);
    uint64_t faults = s1.faults - s0.faults, wp = s1.wp_faults - s0.wp_faults;
    print_message("dirty_guesses: written pages: %llu faults, %llu write-protect faults, "
                  "%llu guesses\n", (unsigned long long)faults, (unsigned long long)wp,
                  (unsigned long long)(s1.dirty_guesses - s0.dirty_guesses));
    /* every page faults once a round (but those still resident from the
     * writes before) */
    assert_true(faults >= 4 * G_PAGES - 2 * G_BUDGET && faults <= 4 * G_PAGES);
    assert_true(wp <= faults / 4 + G_BUDGET);   /* one in four residencies, about */
    /* now only read: three more guesses per page at most, then clean */
    for (int round = 0; round < 6; round++)
        for (size_t p = 0; p < G_PAGES; p++)
            assert_int_equal(reg[p * PGSZ], model[p]);
    uswap_stats(u, &s2);
    uint64_t guesses = s2.dirty_guesses - s1.dirty_guesses;
    print_message("dirty_guesses: read-only pages: %llu faults, %llu guesses, %llu clean "
                  "evictions\n", (unsigned long long)(s2.faults - s1.faults),
                  (unsigned long long)guesses,
                  (unsigned long long)(s2.clean_evictions - s1.clean_evictions));
    assert_true(s2.faults - s1.faults >= 6 * G_PAGES - 2 * G_BUDGET);
    assert_true(guesses <= 3 * G_PAGES);
    assert_true(s2.clean_evictions - s1.clean_evictions >= 2 * G_PAGES);
    assert_int_equal(s2.wp_faults, s1.wp_faults);
    uswap_close(u);
}

/* ---- threads ------------------------------------------------------------------------ */

#define T_THREADS 4
#define T_PAGES   4096u
#define T_SHARED  256u          /* pages every thread reads, none writes */
#define T_BUDGET  512u
#define T_OPS     20000u

struct tharg {
    uint8_t *reg, *model;
    unsigned id;
    uint64_t seed;
    _Atomic int bad;            /* a wrong byte seen (the thread cannot assert) */
    size_t bad_off;
};

static void *thread_main(void *arg)
{
    struct tharg *a = arg;
    tt_rng r;
    tt_seed(&r, a->seed);
    uint8_t buf[PGSZ];
    for (unsigned i = 0; i < T_OPS && !a->bad; i++) {
        if (tt_below(&r, 4) == 0) {             /* read the shared pages */
            size_t off = tt_below(&r, (size_t)T_SHARED * PGSZ - 64);
            if (memcmp(a->reg + off, a->model + off, 64) != 0) {
                a->bad_off = off;
                a->bad = 1;
            }
            continue;
        }
        /* its own pages: p % T_THREADS == id, above the shared ones */
        size_t own = (T_PAGES - T_SHARED) / T_THREADS;
        size_t p = T_SHARED + tt_below(&r, own) * T_THREADS + a->id;
        size_t off = p * PGSZ + tt_below(&r, PGSZ / 2);
        size_t len = 1 + tt_below(&r, PGSZ / 2);
        if (tt_below(&r, 2)) {
            fill_random(&r, buf, len);
            memcpy(a->model + off, buf, len);
            memcpy(a->reg + off, buf, len);
        } else if (memcmp(a->reg + off, a->model + off, len) != 0) {
            a->bad_off = off;
            a->bad = 1;
        }
    }
    return NULL;
}

static void threads(void **state)
{
    (void)state;
    NEED_UFFD();
    start_daemon(NULL);
    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "uswap-threads",
                                                  TMEM_FRONTSWAP_KEEP_ON_LOAD);
    assert_non_null(fs);
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)T_PAGES * PGSZ;
    cfg.budget_pages = T_BUDGET;
    cfg.fs = fs;
    cfg.readahead = 16;         /* read-ahead among concurrent faults */
    uswap_t *u = uswap_open(&cfg);
    assert_non_null(u);
    uint8_t *model = malloc((size_t)T_PAGES * PGSZ);
    assert_non_null(model);
    struct work w;
    work_init(&w, uswap_base(u), model, T_PAGES, NULL, g_seed, "threads");
    work_fill(&w);
    struct tharg a[T_THREADS];
    pthread_t th[T_THREADS];
    for (unsigned i = 0; i < T_THREADS; i++) {
        a[i] = (struct tharg){ .reg = w.reg, .model = model, .id = i, .seed = g_seed * 31 + i };
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, &a[i]), 0);
    }
    for (unsigned i = 0; i < T_THREADS; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < T_THREADS; i++)
        if (a[i].bad)
            fail_msg("thread %u: wrong bytes at %zu (page %zu; seed %llu)", i, a[i].bad_off,
                     a[i].bad_off / PGSZ, (unsigned long long)g_seed);
    work_verify(&w);
    print_stats("threads", u);
    uswap_stats_t s;
    uswap_stats(u, &s);
    assert_true(s.faults > T_PAGES && s.tmem_loads > 0);
    uswap_close(u);
    tmem_frontswap_close(fs);
    free(model);
}

/* ---- children ---------------------------------------------------------------------- */

/* test_uswap --tenant SOCK SEED: writes its region forever, says "ready"
 * on stdout once tmem has taken pages. */
static int tenant_main(const char *sock, uint64_t seed)
{
    tmem_frontswap_t *fs = tmem_frontswap_connect(sock, "uswap-victim",
                                                  TMEM_FRONTSWAP_KEEP_ON_LOAD);
    if (!fs)
        return 3;
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = 2048 * PGSZ;
    cfg.budget_pages = 256;
    cfg.fs = fs;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        return 4;
    uint8_t *reg = uswap_base(u);
    tt_rng r;
    tt_seed(&r, seed);
    bool said = false;
    for (;;) {
        size_t p = tt_below(&r, 2048);
        fill_random(&r, reg + p * PGSZ, 64);
        uswap_stats_t s;
        uswap_stats(u, &s);
        if (!said && s.tmem_stores_ok > 500) {
            printf("ready\n");
            fflush(stdout);
            said = true;
        }
    }
}

/* test_uswap --lost-child SOCK: its pages go to tmem alone; after a line on
 * stdin (the daemon was killed meanwhile) it reads them all back. */
static int lost_main(const char *sock)
{
    tmem_frontswap_t *fs = tmem_frontswap_connect(sock, "uswap-lost", 0);
    if (!fs)
        return 3;
    tmem_frontswap_set_reconnect_wait_ms(fs, 300);
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = 256 * PGSZ;
    cfg.budget_pages = 16;
    cfg.fs = fs;
    uswap_t *u = uswap_open(&cfg);
    if (!u)
        return 4;
    uint8_t *reg = uswap_base(u);
    for (size_t p = 0; p < 256; p++)
        memset(reg + p * PGSZ, (int)(p | 1), PGSZ);
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 5;
    unsigned sum = 0;
    for (size_t p = 0; p < 256; p++)
        sum += reg[p * PGSZ];
    printf("read %u\n", sum);       /* never reached: the lost page aborts */
    return 0;
}

/* Starts this program with args; *out reads its stdout, *in writes its stdin. */
static pid_t spawn_self(char *const args[], FILE **out, FILE **in, const char *err_path)
{
    int po[2], pi[2];
    assert_int_equal(pipe(po), 0);
    assert_int_equal(pipe(pi), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pi[0], 0);
        if (err_path) {
            int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0)
                dup2(fd, 2);
        }
        close(po[0]); close(po[1]); close(pi[0]); close(pi[1]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(po[1]);
    close(pi[0]);
    *out = fdopen(po[0], "r");
    *in = fdopen(pi[1], "w");
    return pid;
}

/* ---- tenant_killed --------------------------------------------------------------- */

static void tenant_killed(void **state)
{
    (void)state;
    NEED_UFFD();
    start_daemon(NULL);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)g_seed);
    char *args[] = { "test_uswap", "--tenant", g_d.sock, seed, NULL };
    FILE *out, *in;
    pid_t child = spawn_self(args, &out, &in, NULL);

    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "uswap-survivor",
                                                  TMEM_FRONTSWAP_KEEP_ON_LOAD);
    assert_non_null(fs);
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)R_PAGES * PGSZ;
    cfg.budget_pages = R_BUDGET;
    cfg.fs = fs;
    uswap_t *u = uswap_open(&cfg);
    assert_non_null(u);
    uint8_t *model = malloc((size_t)R_PAGES * PGSZ);
    assert_non_null(model);
    struct work w;
    work_init(&w, uswap_base(u), model, R_PAGES, u, g_seed, "survivor");
    work_fill(&w);
    work_ops(&w, R_OPS / 3);

    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, out));
    assert_string_equal(line, "ready\n");
    kill(child, SIGKILL);                       /* mid-run: it is still writing */
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    fclose(out);
    fclose(in);

    work_ops(&w, R_OPS / 3);
    work_verify(&w);
    /* the daemon dropped the dead tenant and serves the survivor */
    assert_int_equal(td_wait_connections(&g_d, 1), 0);
    uswap_stats_t s;
    uswap_stats(u, &s);
    assert_true(s.tmem_loads > 0 && s.tmem_stores_ok > 0);
    print_stats("survivor", u);
    uswap_close(u);
    tmem_frontswap_close(fs);
    free(model);
}

/* ---- a daemon restarted or killed under load ------------------------------------- */

struct loader {
    struct work w;
    _Atomic int phase;          /* 0 before, 1 during, 2 after the event; 3 stop */
    _Atomic uint64_t ops_after;
};

static void *loader_main(void *arg)
{
    struct loader *l = arg;
    while (l->phase < 3) {
        work_ops(&l->w, 200);
        if (l->phase == 2)
            l->ops_after += 200;
    }
    return NULL;
}

static void under_load(bool writethrough, const char *state_path)
{
    const char *const with_state[] = { "--state-file", state_path, NULL };
    start_daemon(state_path ? with_state : NULL);
    unsigned fl = TMEM_FRONTSWAP_KEEP_ON_LOAD | (writethrough ? TMEM_FRONTSWAP_WRITETHROUGH : 0);
    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "uswap-restart", fl);
    assert_non_null(fs);
    tmem_frontswap_set_reconnect_wait_ms(fs, 30000);
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = (size_t)R_PAGES * PGSZ;
    cfg.budget_pages = R_BUDGET;
    cfg.fs = fs;
    cfg.writethrough = writethrough;
    uswap_t *u = uswap_open(&cfg);
    assert_non_null(u);
    uint8_t *model = malloc((size_t)R_PAGES * PGSZ);
    assert_non_null(model);
    struct loader l;
    memset(&l, 0, sizeof l);
    /* the worker runs on another thread: no cmocka calls there (no
     * discards, which assert; wrong bytes are recorded and failed here) */
    work_init(&l.w, uswap_base(u), model, R_PAGES, NULL, g_seed, "restart");
    l.w.threaded = true;
    work_fill(&l.w);
    uswap_stats_t before;
    uswap_stats(u, &before);
    assert_true(before.tmem_stores_ok > 0);

    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, loader_main, &l), 0);
    struct timespec ts = { 0, 200 * 1000000L };
    nanosleep(&ts, NULL);
    l.phase = 1;
    if (state_path) {
        assert_int_equal(td_restart(&g_d, with_state), 0);     /* SIGTERM: it saves */
    } else {
        assert_int_equal(td_kill(&g_d), 0);                     /* a crash */
        nanosleep(&ts, NULL);                                   /* load meanwhile */
        assert_int_equal(td_restart(&g_d, NULL), 0);            /* empty */
    }
    l.phase = 2;
    while (l.ops_after < 3000)
        nanosleep(&(struct timespec){ 0, 10 * 1000000L }, NULL);
    l.phase = 3;
    pthread_join(th, NULL);
    l.w.threaded = false;
    if (l.w.bad)
        fail_msg("restart: wrong bytes at %zu (page %zu) under load (seed %llu)", l.w.bad_off,
                 l.w.bad_off / PGSZ, (unsigned long long)g_seed);
    work_verify(&l.w);

    tmem_frontswap_stats_t fst;
    tmem_frontswap_stats(fs, &fst);
    print_stats(state_path ? "restart" : "writethrough-kill", u);
    print_message("frontswap: reconnects %llu failed loads %llu lost %llu\n",
                  (unsigned long long)fst.reconnects, (unsigned long long)fst.failed_loads,
                  (unsigned long long)fst.lost);
    uswap_stats_t s;
    uswap_stats(u, &s);
    assert_int_equal(s.lost, 0);
    assert_int_equal(fst.lost, 0);
    assert_true(fst.reconnects >= 1);
    /* tmem served pages after the event too */
    assert_true(s.tmem_loads > before.tmem_loads);
    if (!state_path)
        assert_true(s.swap_reads > 0);        /* what the killed daemon had */
    uswap_close(u);
    tmem_frontswap_close(fs);
    free(model);
}

static void restart_state_file(void **state)
{
    (void)state;
    NEED_UFFD();
    char dir[] = "/tmp/uswap-state.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/state", dir);
    under_load(false, path);
    unlink(path);
    rmdir(dir);
}

static void writethrough_kill(void **state)
{
    (void)state;
    NEED_UFFD();
    under_load(true, NULL);
}

static void lost_is_loud(void **state)
{
    (void)state;
    NEED_UFFD();
    start_daemon(NULL);
    char err[] = "/tmp/uswap-lost.XXXXXX";
    int efd = mkstemp(err);
    assert_true(efd >= 0);
    close(efd);
    char *args[] = { "test_uswap", "--lost-child", g_d.sock, NULL };
    FILE *out, *in;
    pid_t child = spawn_self(args, &out, &in, err);
    char line[64] = "";
    assert_non_null(fgets(line, sizeof line, out));
    assert_string_equal(line, "ready\n");
    assert_int_equal(td_kill(&g_d), 0);
    fputs("go\n", in);
    fflush(in);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    fclose(out);
    fclose(in);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "grep -q 'uswap: FATAL: page .* is lost' %s", err);
    assert_int_equal(system(cmd), 0);
    unlink(err);
    assert_int_equal(td_restart(&g_d, NULL), 0);    /* for stop_daemon */
}

/* ---- the launcher and the shim on unmodified programs ------------------------------ */

/* Runs cmd (a shell line), 0 if it exited 0; its stdout in out. */
static int run(const char *cmd, char *out, size_t outlen)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static unsigned long long stat_of(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, " %s=", key);
    const char *p = strstr(line, k);
    return p ? strtoull(p + strlen(k), NULL, 10) : ~0ull;
}

static void shim_examples(void **state)
{
    (void)state;
    NEED_UFFD();
    start_daemon(NULL);
    char stats[] = "/tmp/uswap-stats.XXXXXX";
    int sfd = mkstemp(stats);
    assert_true(sfd >= 0);
    close(sfd);
    const char *progs[] = { USWAP_SORT " -m 24 -s 7", USWAP_HASHJOIN " -m 24 -s 7" };
    for (int tm = 0; tm < 2; tm++) {
        for (int i = 0; i < 2; i++) {
            char cmd[1024], out[512], st[1024] = "";
            truncate(stats, 0);
            snprintf(cmd, sizeof cmd, "%s --budget 6M --stats-file %s %s%s -- %s",
                     USWAP_LAUNCHER, stats, tm ? "--socket " : "--no-tmem",
                     tm ? g_d.sock : "", progs[i]);
            print_message("%s\n", cmd);
            assert_int_equal(run(cmd, out, sizeof out), 0);
            assert_non_null(strstr(out, ", ok\n"));
            FILE *f = fopen(stats, "r");
            assert_non_null(f);
            assert_non_null(fgets(st, sizeof st, f));
            fclose(f);
            print_message("%s%s", out, st);
            /* it was paged: 24 MiB through 6 MiB */
            assert_true(stat_of(st, "faults") > 6144);
            assert_true(stat_of(st, "evictions") > 4096);
            assert_int_equal(stat_of(st, "lost"), 0);
            if (tm)
                assert_true(stat_of(st, "tmem_stores_ok") > 0 && stat_of(st, "tmem_loads") > 0);
            else
                assert_true(stat_of(st, "swap_writes") > 0 && stat_of(st, "swap_reads") > 0);
        }
    }
    unlink(stats);
}

/* GNU sort, unmodified: the same output with and without paging. */
static void shim_gnu_sort(void **state)
{
    (void)state;
    NEED_UFFD();
    if (!tt_have_tool("sort") || !tt_have_tool("awk") || !tt_have_tool("cmp"))
        TT_SKIP_CASE("GNU sort, awk and cmp are needed in $PATH");
    start_daemon(NULL);
    char dir[] = "/tmp/uswap-sort.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048], out[512], st[1024] = "";
    /* 300k lines, about 10 MiB */
    snprintf(cmd, sizeof cmd, "awk 'BEGIN{srand(%llu); for(i=0;i<300000;i++) "
             "printf \"%%08x %%d line\\n\", int(rand()*4294967295), i}' > %s/in",
             (unsigned long long)(g_seed % 100000), dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "LC_ALL=C sort -S 64M --parallel=1 %s/in > %s/want", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "LC_ALL=C %s --budget 4M --threshold 256K --socket %s "
             "--stats-file %s/stats -- sort -S 64M --parallel=1 %s/in > %s/got && "
             "cmp %s/want %s/got", USWAP_LAUNCHER, g_d.sock, dir, dir, dir, dir, dir);
    print_message("%s\n", cmd);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    snprintf(cmd, sizeof cmd, "%s/stats", dir);
    FILE *f = fopen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(st, sizeof st, f));
    fclose(f);
    print_message("%s", st);
    assert_true(stat_of(st, "faults") > 1024);
    assert_true(stat_of(st, "evictions") > 0);
    assert_true(stat_of(st, "tmem_stores_ok") > 0);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Without root, the launcher says why and fails. */
static void shim_needs_root_message(void **state)
{
    (void)state;
    char cmd[1024], out[512];
    snprintf(cmd, sizeof cmd, "%s --no-tmem -- true 2>&1", USWAP_LAUNCHER);
    int rc = run(cmd, out, sizeof out);
    if (g_ok) {
        assert_int_equal(rc, 0);
    } else {
        assert_int_equal(rc, 1);
        assert_non_null(strstr(out, "userfaultfd"));
    }
    snprintf(cmd, sizeof cmd, "%s --budget 12Q -- true 2>&1", USWAP_LAUNCHER);
    assert_int_equal(run(cmd, out, sizeof out), 2);
    assert_non_null(strstr(out, "not a size"));
}

/* In the build tree the launcher finds the shim beside itself (--print-preload
 * needs no userfaultfd); with $TMEM_USWAP_PRELOAD naming nothing it fails
 * and says where it looked. */
static void shim_found(void **state)
{
    (void)state;
    char cmd[1024], out[PATH_MAX + 512], want[PATH_MAX + 64];
    assert_non_null(realpath(USWAP_LAUNCHER, want));     /* as /proc/self/exe has it */
    char *slash = strrchr(want, '/');
    assert_non_null(slash);
    snprintf(slash + 1, sizeof want - (size_t)(slash + 1 - want), "libtmem-uswap-preload.so\n");
    snprintf(cmd, sizeof cmd, "env -u TMEM_USWAP_PRELOAD %s --print-preload 2>&1",
             USWAP_LAUNCHER);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_string_equal(out, want);
    snprintf(cmd, sizeof cmd, "TMEM_USWAP_PRELOAD=/nonexistent/shim.so %s --print-preload 2>&1",
             USWAP_LAUNCHER);
    assert_int_equal(run(cmd, out, sizeof out), 1);
    assert_non_null(strstr(out, "looked at /nonexistent/shim.so"));
}

/* A program that forks without exec: a child that keeps to its own memory
 * works; one that touches the paged memory dies of SIGSEGV with a line
 * saying why, never reads zeros; the parent goes on with its data. */
static void shim_fork(void **state)
{
    (void)state;
    NEED_UFFD();
    char err[] = "/tmp/uswap-fork-err.XXXXXX";
    int efd = mkstemp(err);
    assert_true(efd >= 0);
    close(efd);
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd, "%s --no-tmem --budget 1M --threshold 64K -- %s 2>%s",
             USWAP_LAUNCHER, USWAP_FORK_PROGRAM, err);
    print_message("%s\n", cmd);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_string_equal(out, "fork-program: child 1 exit 0, child 2 SIGSEGV, data ok\n");
    snprintf(cmd, sizeof cmd, "grep -c 'a child forked from a program under tmem-uswap "
             "touched memory' %s", err);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_string_equal(out, "1\n");
    unlink(err);
    /* the same program unpaged: the second child reads the bytes */
    snprintf(cmd, sizeof cmd, "%s", USWAP_FORK_PROGRAM);
    assert_int_equal(run(cmd, out, sizeof out), 0);
    assert_string_equal(out, "fork-program: child 1 exit 0, child 2 exit 0, data ok\n");
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--tenant") == 0)
        return tenant_main(argv[2], strtoull(argv[3], NULL, 10));
    if (argc == 3 && strcmp(argv[1], "--lost-child") == 0)
        return lost_main(argv[2]);
    int part = 0;                   /* 1: --uffd, 2: --no-uffd, 0: all */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--uffd"))
            part = 1;
        else if (!strcmp(argv[i], "--no-uffd"))
            part = 2;
    }
    signal(SIGPIPE, SIG_IGN);
    g_ok = uswap_probe(g_why, sizeof g_why) == 0;
    if (!g_ok && part == 1)
        tt_skip_all("test_uswap", g_why);
    g_seed = tt_seed_from_args(argc, argv, "test_uswap");
    if (!g_ok && part == 0)
        fprintf(stderr, "test_uswap: userfaultfd is not usable, its tests are skipped: %s\n",
                g_why);
    /* the tests that page with userfaultfd */
    const struct CMUnitTest uffd_tests[] = {
        cmocka_unit_test_teardown(random_tmem, stop_daemon),
        cmocka_unit_test_teardown(random_no_tmem, stop_daemon),
        cmocka_unit_test_teardown(random_writethrough, stop_daemon),
        cmocka_unit_test_teardown(random_exclusive, stop_daemon),
        cmocka_unit_test_teardown(random_clock, stop_daemon),
        cmocka_unit_test_teardown(random_readahead, stop_daemon),
        cmocka_unit_test_teardown(batched_tmem, stop_daemon),
        cmocka_unit_test_teardown(batched_exclusive, stop_daemon),
        cmocka_unit_test_teardown(batched_no_tmem, stop_daemon),
        cmocka_unit_test(stream_pages_first),
        cmocka_unit_test(dirty_guesses),
        cmocka_unit_test_teardown(threads, stop_daemon),
        cmocka_unit_test_teardown(tenant_killed, stop_daemon),
        cmocka_unit_test_setup_teardown(restart_state_file, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(writethrough_kill, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(lost_is_loud, window_mode, stop_daemon),
        cmocka_unit_test_teardown(shim_examples, stop_daemon),
        cmocka_unit_test_teardown(shim_gnu_sort, stop_daemon),
        cmocka_unit_test(shim_fork),
    };
    /* the tests that run without it too */
    const struct CMUnitTest other_tests[] = {
        cmocka_unit_test(shim_needs_root_message),
        cmocka_unit_test(shim_found),
    };
    const size_t nu = sizeof(uffd_tests) / sizeof(uffd_tests[0]);
    const size_t no = sizeof(other_tests) / sizeof(other_tests[0]);
    if (part == 1)
        return tt_run_tests(uffd_tests, nu, NULL);
    if (part == 2)
        return tt_run_tests(other_tests, no, NULL);
    struct CMUnitTest all[sizeof(uffd_tests) / sizeof(uffd_tests[0]) +
                          sizeof(other_tests) / sizeof(other_tests[0])];
    memcpy(all, uffd_tests, sizeof(uffd_tests));
    memcpy(all + nu, other_tests, sizeof(other_tests));
    return tt_run_tests(all, nu + no, NULL);
}
