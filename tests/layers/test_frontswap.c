/* SPDX-License-Identifier: MIT */
/*
 * test_frontswap.c - the frontswap layer against a model of what a pager may
 * assume, in-process and through real tmemd processes.
 *
 * The model is the pager of include/tmem/frontswap.h: every slot has a
 * latest content; a store that returns nonzero is followed by a write of
 * the swap file (a second array); a load that returns -ENOENT is followed by
 * a read of the swap file.  Whatever tmem keeps or refuses, the page the
 * pager ends up with must be the latest, the bitmap must say exactly which
 * slots tmem holds, and curr_pages must count them.
 *
 * Replay: test_frontswap --seed N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem/frontswap.h"
#include "tmem_test.h"

static uint64_t g_seed;

/* ---- the pager --------------------------------------------------------- */
#define AREAS 2
#define SLOTS 1000

struct pager {
    tmem_frontswap_t *fs;
    uint8_t (*swap)[AREAS][SLOTS][PG];      /* the swap file */
    uint64_t latest[AREAS][SLOTS];          /* tag of the latest content, 0 never written */
    bool in_tmem[AREAS][SLOTS];             /* what the bitmap must say */
    bool resident[AREAS][SLOTS];            /* the pager holds the page in memory */
    bool keep, wt;
    uint64_t stores_ok, stores_refused, loads_tmem, loads_swap;
};

static void pager_init(struct pager *p, tmem_frontswap_t *fs, bool keep, bool wt)
{
    memset(p, 0, sizeof(*p));
    p->fs = fs;
    p->keep = keep;
    p->wt = wt;
    p->swap = calloc(1, sizeof(*p->swap));
    assert_non_null(p->swap);
    for (unsigned a = 0; a < AREAS; a++)
        assert_int_equal(tmem_frontswap_init(fs, a, SLOTS), 0);
}

static void pager_free(struct pager *p) { free(p->swap); }

/* swap out: the page with tag goes to tmem or the swap file */
static void pager_store(struct pager *p, unsigned a, unsigned s, uint64_t tag)
{
    uint8_t page[PG];
    tt_fill(page, (enum tt_kind)(tag % 5 == 0 ? TT_TEXT : TT_RANDOM), tag);
    int r = tmem_frontswap_store(p->fs, a, s, page);
    p->latest[a][s] = tag;
    p->resident[a][s] = false;
    if (r == 0 || r == 1) {
        p->in_tmem[a][s] = true;
        p->stores_ok++;
        assert_int_equal(r, p->wt ? 1 : 0);
    } else {
        assert_true(r < 0);
        p->in_tmem[a][s] = false;
        p->stores_refused++;
    }
    if (r != 0)
        memcpy((*p->swap)[a][s], page, PG);
    assert_int_equal(tmem_frontswap_test(p->fs, a, s), p->in_tmem[a][s]);
}

/* swap in: the page must be the latest, from tmem or the swap file */
static void pager_load(struct pager *p, unsigned a, unsigned s)
{
    if (!p->latest[a][s] || p->resident[a][s])
        return;                             /* nothing swapped out there */
    uint8_t page[PG], want[PG];
    tt_fill(want, (enum tt_kind)(p->latest[a][s] % 5 == 0 ? TT_TEXT : TT_RANDOM), p->latest[a][s]);
    int r = tmem_frontswap_load(p->fs, a, s, page);
    if (r == 0) {
        assert_true(p->in_tmem[a][s]);
        p->loads_tmem++;
        if (!p->keep)
            p->in_tmem[a][s] = false;
    } else {
        assert_int_equal(r, -ENOENT);       /* never -EIO: nothing may be lost */
        assert_false(p->in_tmem[a][s] && !p->wt);
        p->in_tmem[a][s] = false;
        memcpy(page, (*p->swap)[a][s], PG);
        p->loads_swap++;
    }
    assert_memory_equal(page, want, PG);
    p->resident[a][s] = true;
    assert_int_equal(tmem_frontswap_test(p->fs, a, s), p->in_tmem[a][s]);
}

/* A swap cluster out: slots s.. (n, within the area) in one batch; each
 * page as pager_store would have it. */
static void pager_store_cluster(struct pager *p, unsigned a, unsigned s, unsigned n,
                                uint64_t *tag)
{
    uint8_t pages[16][PG];
    const void *in[16];
    int res[16];
    uint64_t tags[16];
    for (unsigned i = 0; i < n; i++) {
        tags[i] = (*tag)++;
        tt_fill(pages[i], (enum tt_kind)(tags[i] % 5 == 0 ? TT_TEXT : TT_RANDOM), tags[i]);
        in[i] = pages[i];
    }
    int ok = tmem_frontswap_store_pages(p->fs, a, s, n, in, res);
    int count = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned t = s + i;
        p->latest[a][t] = tags[i];
        p->resident[a][t] = false;
        if (res[i] == 0 || res[i] == 1) {
            assert_int_equal(res[i], p->wt ? 1 : 0);
            p->in_tmem[a][t] = true;
            p->stores_ok++;
            count++;
        } else {
            assert_true(res[i] < 0);
            p->in_tmem[a][t] = false;
            p->stores_refused++;
        }
        if (res[i] != 0)
            memcpy((*p->swap)[a][t], pages[i], PG);
        assert_int_equal(tmem_frontswap_test(p->fs, a, t), p->in_tmem[a][t]);
    }
    assert_int_equal(ok, count);
}

/* A cluster in (swap read-ahead): slots s.. (n) in one batch; a slot tmem
 * holds comes back from it whether the pager holds the page or not (its
 * data is the latest either way), the others are read from the swap file
 * if swapped out. */
static void pager_load_cluster(struct pager *p, unsigned a, unsigned s, unsigned n)
{
    uint8_t pages[16][PG], want[PG];
    void *out[16];
    int res[16];
    for (unsigned i = 0; i < n; i++)
        out[i] = pages[i];
    int ok = tmem_frontswap_load_pages(p->fs, a, s, n, out, res);
    int count = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned t = s + i;
        if (p->latest[a][t])
            tt_fill(want, (enum tt_kind)(p->latest[a][t] % 5 == 0 ? TT_TEXT : TT_RANDOM),
                    p->latest[a][t]);
        if (res[i] == 0) {
            assert_true(p->in_tmem[a][t]);
            assert_memory_equal(pages[i], want, PG);
            p->loads_tmem++;
            count++;
            if (!p->keep)
                p->in_tmem[a][t] = false;
            p->resident[a][t] = true;
        } else {
            assert_int_equal(res[i], -ENOENT);  /* never -EIO: nothing may be lost */
            assert_false(p->in_tmem[a][t] && !p->wt);
            p->in_tmem[a][t] = false;
            if (p->latest[a][t] && !p->resident[a][t]) {
                assert_memory_equal((*p->swap)[a][t], want, PG);
                p->loads_swap++;
                p->resident[a][t] = true;
            }
        }
        assert_int_equal(tmem_frontswap_test(p->fs, a, t), p->in_tmem[a][t]);
    }
    assert_int_equal(ok, count);
}

static void pager_free_slot(struct pager *p, unsigned a, unsigned s)
{
    tmem_frontswap_invalidate_page(p->fs, a, s);
    p->latest[a][s] = 0;
    p->resident[a][s] = false;
    p->in_tmem[a][s] = false;
    assert_int_equal(tmem_frontswap_test(p->fs, a, s), 0);
}

static void pager_check_map(struct pager *p)
{
    uint64_t n = 0;
    for (unsigned a = 0; a < AREAS; a++) {
        uint64_t slots;
        const uint64_t *m = tmem_frontswap_map(p->fs, a, &slots);
        assert_non_null(m);
        assert_int_equal(slots, SLOTS);
        for (unsigned s = 0; s < SLOTS; s++) {
            bool bit = (m[s / 64] >> (s % 64)) & 1;
            assert_int_equal(bit, p->in_tmem[a][s]);
            n += bit;
        }
    }
    assert_int_equal(tmem_frontswap_curr_pages(p->fs), n);
}

static void pager_run(struct pager *p, unsigned ops, uint64_t seed)
{
    tt_rng r;
    tt_seed(&r, seed);
    uint64_t tag = 1;
    for (unsigned i = 0; i < ops; i++) {
        unsigned a = (unsigned)tt_below(&r, AREAS), s = (unsigned)tt_below(&r, SLOTS);
        unsigned k = (unsigned)tt_below(&r, 100);
        unsigned n = 1 + (unsigned)tt_below(&r, 16);
        if (s + n > SLOTS)
            n = SLOTS - s;
        if (k < 45)
            pager_store(p, a, s, tag++);
        else if (k < 50)
            pager_store_cluster(p, a, s, n, &tag);
        else if (k < 84)
            pager_load(p, a, s);
        else if (k < 90)
            pager_load_cluster(p, a, s, n);
        else
            pager_free_slot(p, a, s);
        if (i % 997 == 0)
            pager_check_map(p);
    }
    pager_check_map(p);
    /* every page comes back */
    for (unsigned a = 0; a < AREAS; a++)
        for (unsigned s = 0; s < SLOTS; s++)
            pager_load(p, a, s);
    tmem_frontswap_stats_t st;
    tmem_frontswap_stats(p->fs, &st);
    assert_int_equal(st.succ_stores, p->stores_ok);
    assert_int_equal(st.failed_stores, p->stores_refused);
    assert_int_equal(st.loads, p->loads_tmem);
    assert_int_equal(st.lost, 0);
    /* the engine was small: both paths ran */
    assert_true(p->stores_ok > 0);
    assert_true(p->stores_refused > 0);
    assert_true(p->loads_tmem > 0);
    assert_true(p->loads_swap > 0);
}

/* ---- in-process --------------------------------------------------------- */
static void model(bool keep, bool wt, uint64_t seed)
{
    /* 1 MiB: a couple of hundred pages fit, the rest is refused */
    tmem_t *t = tt_open(1u << 20, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "pager");
    unsigned flags = (keep ? TMEM_FRONTSWAP_KEEP_ON_LOAD : 0) | (wt ? TMEM_FRONTSWAP_WRITETHROUGH : 0);
    tmem_frontswap_t *fs = tmem_frontswap_open(c, flags);
    assert_non_null(fs);
    struct pager p;
    pager_init(&p, fs, keep, wt);
    pager_run(&p, 20000, seed);
    /* what the bitmap says is what the engine holds */
    tmem_stats_t st;
    tmem_stats_get(t, &st);
    assert_int_equal(st.persistent_pages, tmem_frontswap_curr_pages(fs));
    pager_free(&p);
    tmem_frontswap_close(fs);
    tmem_stats_get(t, &st);
    assert_int_equal(st.persistent_pages, 0);
    tmem_client_close(c);
    tt_close(t);
}

static void model_exclusive(void **state) { (void)state; model(false, false, g_seed); }
static void model_keep(void **state) { (void)state; model(true, false, g_seed + 1); }
static void model_writethrough(void **state) { (void)state; model(false, true, g_seed + 2); }

static void bad_input(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = tmem_client_open(t, "bad");
    assert_null(tmem_frontswap_open(c, 0x80));
    assert_int_equal(errno, EINVAL);
    assert_null(tmem_frontswap_open(NULL, 0));
    tmem_frontswap_t *fs = tmem_frontswap_open(c, 0);
    assert_non_null(fs);
    uint8_t page[PG] = { 1 };
    assert_int_equal(tmem_frontswap_init(fs, TMEM_FRONTSWAP_MAX_TYPES, 10), -EINVAL);
    assert_int_equal(tmem_frontswap_init(fs, 0, 0), -EINVAL);
    assert_int_equal(tmem_frontswap_init(fs, 0, TMEM_FRONTSWAP_MAX_SLOTS + 1), -EINVAL);
    assert_int_equal(tmem_frontswap_init(fs, 0, 100), 0);
    assert_int_equal(tmem_frontswap_init(fs, 0, 100), -EBUSY);
    assert_int_equal(tmem_frontswap_store(fs, 0, 100, page), -EINVAL);   /* past the area */
    assert_int_equal(tmem_frontswap_store(fs, 1, 0, page), -EINVAL);     /* area off */
    assert_int_equal(tmem_frontswap_store(fs, 0, 0, NULL), -EINVAL);
    assert_int_equal(tmem_frontswap_load(fs, 0, 100, page), -EINVAL);
    assert_int_equal(tmem_frontswap_load(fs, 0, 5, page), -ENOENT);      /* never stored */
    /* clusters: past the area, too long, a NULL page: refused whole */
    const void *two[2] = { page, page };
    void *two_out[2] = { page, NULL };
    int res[2] = { 7, 7 };
    assert_int_equal(tmem_frontswap_store_pages(fs, 0, 99, 2, two, res), -EINVAL);
    assert_int_equal(tmem_frontswap_store_pages(fs, 0, 0, TMEM_FRONTSWAP_MAX_BATCH + 1, two,
                                                res), -EINVAL);
    assert_int_equal(tmem_frontswap_store_pages(fs, 1, 0, 2, two, res), -EINVAL);
    assert_int_equal(tmem_frontswap_load_pages(fs, 0, 0, 2, two_out, res), -EINVAL);
    assert_int_equal(res[0], 7);                                         /* nothing done */
    assert_int_equal(tmem_frontswap_curr_pages(fs), 0);
    assert_int_equal(tmem_frontswap_store_pages(fs, 0, 0, 0, NULL, res), 0);
    assert_int_equal(tmem_frontswap_test(fs, 0, 1000), 0);
    tmem_frontswap_invalidate_page(fs, 0, 1000);                         /* harmless */
    tmem_frontswap_invalidate_area(fs, 7);                               /* harmless */
    uint64_t slots = 1;
    assert_null(tmem_frontswap_map(fs, 3, &slots));
    assert_int_equal(slots, 0);
    /* an area spread over 16 objects: slots 0..15 are 16 objects */
    for (unsigned s = 0; s < 16; s++)
        assert_int_equal(tmem_frontswap_store(fs, 0, s, page), 0);
    tmem_stats_t st;
    tmem_stats_get(t, &st);
    assert_int_equal(st.objects, 16);
    /* swapoff: everything goes */
    tmem_frontswap_invalidate_area(fs, 0);
    assert_int_equal(tmem_frontswap_curr_pages(fs), 0);
    assert_null(tmem_frontswap_map(fs, 0, NULL));
    tmem_stats_get(t, &st);
    assert_int_equal(st.persistent_pages, 0);
    assert_int_equal(tmem_frontswap_init(fs, 0, 100), 0);                /* swapon again */
    tmem_frontswap_close(fs);
    tmem_client_close(c);
    tt_close(t);
}

/* shrink hands pages back until target remain; a take that fails stops it
 * and leaves that page in tmem */
struct taken { uint8_t (*pages)[PG]; bool *got; unsigned n, fail_after; };

static int take(void *arg, unsigned type, uint64_t offset, const void *page)
{
    struct taken *tk = arg;
    assert_int_equal(type, 0);
    if (tk->fail_after && tk->n == tk->fail_after)
        return -EIO;
    memcpy(tk->pages[offset], page, PG);
    tk->got[offset] = true;
    tk->n++;
    return 0;
}

static void shrink_brings_back(void **state)
{
    (void)state;
    for (int keep = 0; keep < 2; keep++) {
        tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
        tmem_client_t *c = tmem_client_open(t, "shrink");
        tmem_frontswap_t *fs = tmem_frontswap_open(c, keep ? TMEM_FRONTSWAP_KEEP_ON_LOAD : 0);
        assert_int_equal(tmem_frontswap_init(fs, 0, 200), 0);
        uint8_t page[PG];
        for (unsigned s = 0; s < 200; s++) {
            tt_fill(page, TT_RANDOM, s + 1000);
            assert_int_equal(tmem_frontswap_store(fs, 0, s, page), 0);
        }
        struct taken tk = { calloc(200, PG), calloc(200, sizeof(bool)), 0, 0 };
        assert_int_equal(tmem_frontswap_shrink(fs, 150, take, &tk), 50);
        assert_int_equal(tmem_frontswap_curr_pages(fs), 150);
        tk.fail_after = tk.n + 10;
        assert_int_equal(tmem_frontswap_shrink(fs, 0, take, &tk), 10);
        assert_int_equal(tmem_frontswap_curr_pages(fs), 140);
        tmem_stats_t st;
        tmem_stats_get(t, &st);
        assert_int_equal(st.persistent_pages, 140);
        /* every page is either taken or still in tmem, and right */
        for (unsigned s = 0; s < 200; s++) {
            uint8_t want[PG];
            tt_fill(want, TT_RANDOM, s + 1000);
            if (tk.got[s]) {
                assert_false(tmem_frontswap_test(fs, 0, s));
                assert_memory_equal(tk.pages[s], want, PG);
            } else {
                assert_int_equal(tmem_frontswap_load(fs, 0, s, page), 0);
                assert_memory_equal(page, want, PG);
            }
        }
        free(tk.pages);
        free(tk.got);
        tmem_frontswap_close(fs);
        tmem_client_close(c);
        tt_close(t);
    }
}

/* shrink's take refuses a page and tmem refuses to take it back (the client
 * is frozen): exclusive mode cannot hide that the page is lost (-EIO from
 * shrink and from its load); keep-on-load never took it out. */
static int take_never(void *arg, unsigned type, uint64_t offset, const void *page)
{
    (void)arg; (void)type; (void)offset; (void)page;
    return -ENOSPC;
}

static void shrink_put_back_refused(void **state)
{
    (void)state;
    for (int keep = 0; keep < 2; keep++) {
        tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
        tmem_client_t *c = tmem_client_open(t, "frozen");
        tmem_frontswap_t *fs = tmem_frontswap_open(c, keep ? TMEM_FRONTSWAP_KEEP_ON_LOAD : 0);
        assert_int_equal(tmem_frontswap_init(fs, 0, 8), 0);
        uint8_t page[PG], want[PG];
        tt_fill(want, TT_RANDOM, 99);
        assert_int_equal(tmem_frontswap_store(fs, 0, 3, want), 0);
        assert_int_equal(tmem_admin_freeze(t, tmem_client_id(c)), 0);
        int64_t r = tmem_frontswap_shrink(fs, 0, take_never, NULL);
        tmem_frontswap_stats_t st;
        tmem_frontswap_stats(fs, &st);
        assert_true(tmem_frontswap_test(fs, 0, 3));
        if (keep) {
            assert_int_equal(r, -ENOSPC);
            assert_int_equal(st.lost, 0);
            assert_int_equal(tmem_frontswap_load(fs, 0, 3, page), 0);
            assert_memory_equal(page, want, PG);
        } else {
            assert_int_equal(r, -EIO);
            assert_int_equal(st.lost, 1);
            assert_int_equal(tmem_frontswap_load(fs, 0, 3, page), -EIO);
        }
        tmem_frontswap_close(fs);
        tmem_client_close(c);
        tt_close(t);
    }
}

/* ---- through tmemd ------------------------------------------------------ */
static td_t g_d;

/* The test's daemons serve every call through the window. */
static int window_mode(void **state)
{
    (void)state;
    td_window_mode = 1;
    return 0;
}

static int stop_daemon(void **state)
{
    td_window_mode = 0;
    (void)state;
    td_t *const ds[] = { &g_d };
    assert_int_equal(td_stop_all(ds, 1), 0);    /* the daemon's self-check passed */
    return 0;
}

/* Starts g_d, then restarts it with a state file in its directory, so that
 * later td_restart(&g_d, args) keep persistent pages.  args must hold 3. */
static void start_with_state(char *statefile, size_t len, const char **args)
{
    assert_int_equal(td_start(&g_d, NULL), 0);
    snprintf(statefile, len, "%s/tmemd.state", g_d.dir);
    args[0] = "--state-file";
    args[1] = statefile;
    args[2] = NULL;
    assert_int_equal(td_restart(&g_d, args), 0);
}

static void daemon_model(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "1M", NULL };
    assert_int_equal(td_start(&g_d, args), 0);
    for (int mode = 0; mode < 2; mode++) {
        tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "pager",
                                                      mode ? TMEM_FRONTSWAP_WRITETHROUGH : 0);
        assert_non_null(fs);
        assert_true(tmem_client_is_remote(tmem_frontswap_client(fs)));
        struct pager p;
        pager_init(&p, fs, false, mode == 1);
        pager_run(&p, 6000, g_seed + 10 + (uint64_t)mode);
        pager_free(&p);
        tmem_frontswap_close(fs);
    }
}

/* The daemon dies (SIGKILL): stores are refused and written to the swap
 * file; in writethrough mode every page comes back from the swap file; in
 * the default mode the pages only tmem had are reported lost (-EIO), never
 * as wrong data. */
static void daemon_killed(void **state)
{
    (void)state;
    for (int wt = 0; wt < 2; wt++) {
        assert_int_equal(td_start(&g_d, NULL), 0);
        tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "victim",
                                                      wt ? TMEM_FRONTSWAP_WRITETHROUGH : 0);
        assert_non_null(fs);
        tmem_frontswap_set_reconnect_wait_ms(fs, 300);
        struct pager p;
        pager_init(&p, fs, false, wt);
        for (unsigned s = 0; s < 100; s++)
            pager_store(&p, 0, s, s + 1);
        assert_int_equal(p.stores_ok, 100);
        kill(g_d.pid, SIGKILL);
        int st;
        waitpid(g_d.pid, &st, 0);
        g_d.pid = 0;
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", g_d.dir);
        assert_int_equal(system(cmd), 0);
        /* refused now, and the caller writes the swap file */
        pager_store(&p, 1, 0, 7777);
        assert_false(tmem_frontswap_test(fs, 1, 0));
        uint8_t page[PG];
        if (wt) {
            for (unsigned s = 0; s < 100; s++)
                pager_load(&p, 0, s);       /* from the swap file, all right */
        } else {
            assert_int_equal(tmem_frontswap_load(fs, 0, 0, page), -EIO);
            tmem_frontswap_stats_t fst;
            tmem_frontswap_stats(fs, &fst);
            assert_int_equal(fst.lost, 1);
            assert_false(tmem_frontswap_test(fs, 0, 0));
        }
        pager_load(&p, 1, 0);
        pager_free(&p);
        tmem_frontswap_close(fs);
    }
}

/* With lent memory a client's pages are in its own process: a daemon
 * SIGKILLed takes none of them.  Every page loads back from tmem while the
 * daemon is away, stores go on (into the memory the client holds, or to
 * the swap file), and the daemon started again adopts the client's memory
 * (one reconnection of the handle, none of the layer's) with nothing lost,
 * in both modes. */
static void daemon_killed_lent(void **state)
{
    (void)state;
    for (int wt = 0; wt < 2; wt++) {
        assert_int_equal(td_start(&g_d, NULL), 0);
        tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "survivor",
                                                      wt ? TMEM_FRONTSWAP_WRITETHROUGH : 0);
        assert_non_null(fs);
        tmem_frontswap_set_reconnect_wait_ms(fs, 300);
        struct pager p;
        pager_init(&p, fs, false, wt);
        for (unsigned s = 0; s < 100; s++)
            pager_store(&p, 0, s, s + 1);
        assert_int_equal(p.stores_ok, 100);
        assert_int_equal(td_kill(&g_d), 0);
        for (unsigned s = 0; s < 50; s++)
            pager_load(&p, 0, s);
        pager_store(&p, 1, 0, 7777);           /* tmem or the swap file: never lost */
        assert_int_equal(td_restart(&g_d, NULL), 0);
        assert_int_equal(td_wait_connections(&g_d, 1), 0);     /* it came back */
        struct tmw_ctl_stats st;
        assert_int_equal(tmc_stats(g_d.ctl, &st), 0);
        assert_true(st.lent_bytes[1] > 0);      /* its persistent units, adopted */
        assert_true(st.lend_adopted_units > 0);
        for (unsigned s = 50; s < 100; s++)
            pager_load(&p, 0, s);
        pager_load(&p, 1, 0);
        tmem_frontswap_stats_t fst;
        tmem_frontswap_stats(fs, &fst);
        assert_int_equal(fst.lost, 0);
        assert_int_equal(p.loads_tmem, 100 + (p.stores_ok > 100));
        pager_free(&p);
        tmem_frontswap_close(fs);
        assert_int_equal(td_stop(&g_d), 0);
    }
}

/* A clean restart of a daemon with a state file: the layer reconnects under
 * the same name, the daemon hands it its old client, and every page tmem
 * held comes back, in the default (not writethrough) mode: nothing lost. */
static void daemon_restart_keeps_pages(void **state)
{
    (void)state;
    char statefile[300];
    const char *args[3];
    start_with_state(statefile, sizeof(statefile), args);
    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "restarted", 0);
    assert_non_null(fs);
    struct pager p;
    pager_init(&p, fs, false, false);
    for (unsigned s = 0; s < 300; s++)
        pager_store(&p, s % AREAS, s, s + 1);
    assert_int_equal(p.stores_ok, 300);
    for (unsigned s = 0; s < 50; s++)
        pager_load(&p, s % AREAS, s);           /* some come back before */
    assert_int_equal(td_restart(&g_d, args), 0);
    /* a store while the new daemon is up but not yet reconnected */
    pager_store(&p, 0, 999, 5000);
    for (unsigned s = 0; s < 300; s++)
        pager_load(&p, s % AREAS, s);
    pager_load(&p, 0, 999);
    tmem_frontswap_stats_t st;
    tmem_frontswap_stats(fs, &st);
    assert_int_equal(st.lost, 0);
    assert_int_equal(st.reconnects, 1);
    assert_int_equal(p.loads_tmem, 300);        /* every page from tmem, none lost */
    assert_int_equal(tmem_frontswap_curr_pages(fs), 0);
    pager_free(&p);
    tmem_frontswap_close(fs);
}

/* Writethrough counts per store: a page stored with 0 is only in tmem even
 * if writethrough is turned on later (its loss is -EIO), and a page stored
 * with 1 is on the swap file even if writethrough is turned off later (its
 * loss is -ENOENT: read the swap file). */
static void writethrough_per_store(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d, NULL), 0);
    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "wt-toggle", 0);
    assert_non_null(fs);
    tmem_frontswap_set_reconnect_wait_ms(fs, 200);
    assert_int_equal(tmem_frontswap_init(fs, 0, 16), 0);
    uint8_t page[PG];
    tt_fill(page, TT_RANDOM, 1);
    assert_int_equal(tmem_frontswap_store(fs, 0, 0, page), 0);
    tmem_frontswap_writethrough(fs, 1);
    assert_int_equal(tmem_frontswap_store(fs, 0, 1, page), 1);
    tmem_frontswap_writethrough(fs, 0);
    assert_int_equal(td_kill(&g_d), 0);
    assert_int_equal(tmem_frontswap_load(fs, 0, 1, page), -ENOENT);
    assert_int_equal(tmem_frontswap_load(fs, 0, 0, page), -EIO);
    tmem_frontswap_stats_t st;
    tmem_frontswap_stats(fs, &st);
    assert_int_equal(st.lost, 1);
    assert_int_equal(st.failed_loads, 2);
    tmem_frontswap_close(fs);
}

/* A borrowed client cannot reconnect: a load that finds its daemon gone
 * answers at once instead of waiting for a reconnection that never comes
 * (a hang check: the bound is far above any honest answer). */
static void borrowed_client_does_not_wait(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d, NULL), 0);
    tmem_client_t *c = tmem_connect(g_d.sock, "borrowed");
    assert_non_null(c);
    tmem_frontswap_t *fs = tmem_frontswap_open(c, 0);
    assert_non_null(fs);
    assert_int_equal(tmem_frontswap_init(fs, 0, 16), 0);
    uint8_t page[PG];
    tt_fill(page, TT_RANDOM, 2);
    for (unsigned s = 0; s < 3; s++)
        assert_int_equal(tmem_frontswap_store(fs, 0, s, page), 0);
    assert_int_equal(td_kill(&g_d), 0);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned s = 0; s < 3; s++)
        assert_int_equal(tmem_frontswap_load(fs, 0, s, page), -EIO);
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_true(b.tv_sec - a.tv_sec < 10);      /* the default wait is 30 s per load */
    tmem_frontswap_close(fs);
    tmem_client_close(c);
}

/* Copies left behind clear bits by calls that could not reach the daemon
 * (here: invalidates made before the layer noticed the restart) are flushed
 * once it is back: the daemon ends up holding exactly curr_pages pages. */
static void stale_copies_flushed(void **state)
{
    (void)state;
    char statefile[300];
    const char *args[3];
    start_with_state(statefile, sizeof(statefile), args);
    tmem_frontswap_t *fs = tmem_frontswap_connect(g_d.sock, "stale", 0);
    assert_non_null(fs);
    assert_int_equal(tmem_frontswap_init(fs, 0, 64), 0);
    uint8_t page[PG];
    for (unsigned s = 0; s < 32; s++) {
        tt_fill(page, TT_RANDOM, s);
        assert_int_equal(tmem_frontswap_store(fs, 0, s, page), 0);
    }
    assert_int_equal(td_restart(&g_d, args), 0);
    /* the first invalidate finds the old connection dead: its flush is not
     * sent, the copy is marked stale, and the layer reconnects */
    for (unsigned s = 0; s < 16; s++)
        tmem_frontswap_invalidate_page(fs, 0, s);
    struct tmw_ctl_stats st;
    assert_int_equal(tmc_stats(g_d.ctl, &st), 0);
    assert_int_equal(tmem_frontswap_curr_pages(fs), 16);
    assert_int_equal(st.engine.persistent_pages, 16);
    for (unsigned s = 16; s < 32; s++) {
        uint8_t want[PG];
        tt_fill(want, TT_RANDOM, s);
        assert_int_equal(tmem_frontswap_load(fs, 0, s, page), 0);
        assert_memory_equal(page, want, PG);
    }
    assert_int_equal(tmc_stats(g_d.ctl, &st), 0);
    assert_int_equal(st.engine.persistent_pages, 0);
    tmem_frontswap_close(fs);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    g_seed = tt_seed_from_args(argc, argv, "test_frontswap");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_exclusive),
        cmocka_unit_test(model_keep),
        cmocka_unit_test(model_writethrough),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(shrink_brings_back),
        cmocka_unit_test_teardown(daemon_model, stop_daemon),
        /* a daemon that dies takes its clients' pages with it only when
         * it runs their pools (memory.lend=false) */
        cmocka_unit_test_setup_teardown(daemon_killed, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(daemon_restart_keeps_pages, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(writethrough_per_store, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(borrowed_client_does_not_wait, window_mode, stop_daemon),
        cmocka_unit_test_setup_teardown(stale_copies_flushed, window_mode, stop_daemon),
        cmocka_unit_test_teardown(daemon_killed_lent, stop_daemon),
        cmocka_unit_test(shrink_put_back_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
