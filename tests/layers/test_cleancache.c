/* SPDX-License-Identifier: MIT */
/*
 * test_cleancache.c - the cleancache layer against a model of what a
 * filesystem may assume, in-process and through real tmemd processes.
 *
 * The model is a filesystem that keeps cleancache's rule (invalidate before
 * the backing copy changes; put only pages equal to the backing copy).  It
 * may then assume: a get returns the latest contents of the page or misses,
 * never older contents; a page invalidated (page, inode or fs) misses until
 * it is put again; a hit on a private pool takes the page (the next get
 * misses).  Counters count what was asked.
 *
 * Replay: test_cleancache --seed N.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem/cleancache.h"
#include "tmem_test.h"

static uint64_t g_seed;

#define NFS    3
#define NFILES 24
#define NIDX   48

struct fsmodel {
    tmem_cleancache_t *cc;
    int fs[NFS];
    uint64_t latest[NFS][NFILES][NIDX];   /* the backing copy's tag; 0 = a hole */
    bool maybe[NFS][NFILES][NIDX];        /* cleancache may hold the latest */
    uint64_t gets, hits, puts, invalidates;
};

static tmem_cleancache_filekey_t key_of(unsigned f)
{
    /* file handles of 24 bytes, not just inode numbers */
    tmem_cleancache_filekey_t k = {{ f + 1, 0xabcd, f * 7, 0, 0xffffffffu, f }};
    return k;
}

static void content(uint8_t *page, unsigned f, unsigned i, uint64_t tag)
{
    tt_fill(page, tag % 4 == 0 ? TT_TEXT : TT_RANDOM, tag * 1000003u + f * 131u + i);
}

static void m_get(struct fsmodel *m, unsigned s, unsigned f, unsigned i)
{
    uint8_t page[PG], want[PG];
    tmem_cleancache_filekey_t k = key_of(f);
    int r = tmem_cleancache_get_page(m->cc, m->fs[s], &k, i, page);
    m->gets++;
    if (r == 0) {
        m->hits++;
        assert_true(m->maybe[s][f][i]);   /* invalidated pages never come back */
        content(want, f, i, m->latest[s][f][i]);
        assert_memory_equal(page, want, PG);
        m->maybe[s][f][i] = false;        /* private pool: the hit took it */
    } else {
        assert_true(r == -ENOENT || r == -ENOTCONN);
    }
}

static void m_put(struct fsmodel *m, unsigned s, unsigned f, unsigned i)
{
    if (!m->latest[s][f][i])
        return;
    uint8_t page[PG];
    content(page, f, i, m->latest[s][f][i]);
    tmem_cleancache_filekey_t k = key_of(f);
    if (tmem_cleancache_put_page(m->cc, m->fs[s], &k, i, page) == 0)
        m->maybe[s][f][i] = true;
    m->puts++;
}

/* A read-ahead window: pages i..i+n-1 of file f in one batch, each as
 * m_get would check it. */
static void m_get_run(struct fsmodel *m, unsigned s, unsigned f, unsigned i, unsigned n)
{
    uint8_t pages[8][PG], want[PG];
    void *out[8];
    int res[8];
    for (unsigned j = 0; j < n; j++)
        out[j] = pages[j];
    tmem_cleancache_filekey_t k = key_of(f);
    int ok = tmem_cleancache_get_pages(m->cc, m->fs[s], &k, i, n, out, res);
    int count = 0;
    for (unsigned j = 0; j < n; j++) {
        m->gets++;
        if (res[j] == 0) {
            m->hits++;
            count++;
            assert_true(m->maybe[s][f][i + j]);
            content(want, f, i + j, m->latest[s][f][i + j]);
            assert_memory_equal(pages[j], want, PG);
            m->maybe[s][f][i + j] = false;
        } else {
            assert_true(res[j] == -ENOENT || res[j] == -ENOTCONN);
        }
    }
    assert_int_equal(ok, count);
}

/* A run of evicted pages of file f put in one batch (holes are skipped, as
 * m_put skips them: the run stops before the first). */
static void m_put_run(struct fsmodel *m, unsigned s, unsigned f, unsigned i, unsigned n)
{
    uint8_t pages[8][PG];
    const void *in[8];
    int res[8];
    unsigned len = 0;
    while (len < n && m->latest[s][f][i + len]) {
        content(pages[len], f, i + len, m->latest[s][f][i + len]);
        in[len] = pages[len];
        len++;
    }
    if (!len)
        return;
    tmem_cleancache_filekey_t k = key_of(f);
    int ok = tmem_cleancache_put_pages(m->cc, m->fs[s], &k, i, len, in, res);
    int count = 0;
    for (unsigned j = 0; j < len; j++) {
        if (res[j] == 0) {
            m->maybe[s][f][i + j] = true;
            count++;
        }
        m->puts++;
    }
    assert_int_equal(ok, count);
}

static void m_write(struct fsmodel *m, unsigned s, unsigned f, unsigned i, uint64_t tag)
{
    tmem_cleancache_filekey_t k = key_of(f);
    tmem_cleancache_invalidate_page(m->cc, m->fs[s], &k, i);
    m->invalidates++;
    m->maybe[s][f][i] = false;
    m->latest[s][f][i] = tag;
}

static void m_truncate(struct fsmodel *m, unsigned s, unsigned f)
{
    tmem_cleancache_filekey_t k = key_of(f);
    tmem_cleancache_invalidate_inode(m->cc, m->fs[s], &k);
    m->invalidates++;
    memset(m->maybe[s][f], 0, sizeof(m->maybe[s][f]));
    memset(m->latest[s][f], 0, sizeof(m->latest[s][f]));
}

static void m_remount(struct fsmodel *m, unsigned s)
{
    tmem_cleancache_invalidate_fs(m->cc, m->fs[s]);
    m->invalidates++;
    m->fs[s] = tmem_cleancache_init_fs(m->cc);
    assert_true(m->fs[s] >= 0);
    memset(m->maybe[s], 0, sizeof(m->maybe[s]));
}

static void m_run(struct fsmodel *m, unsigned ops, uint64_t seed)
{
    tt_rng r;
    tt_seed(&r, seed);
    uint64_t tag = 1;
    for (unsigned s = 0; s < NFS; s++) {
        m->fs[s] = tmem_cleancache_init_fs(m->cc);
        assert_true(m->fs[s] >= 0);
    }
    for (unsigned n = 0; n < ops; n++) {
        unsigned s = (unsigned)tt_below(&r, NFS), f = (unsigned)tt_below(&r, NFILES);
        unsigned i = (unsigned)tt_below(&r, NIDX), k = (unsigned)tt_below(&r, 1000);
        unsigned run = 1 + (unsigned)tt_below(&r, 8);
        if (i + run > NIDX)
            run = NIDX - i;
        if (k < 400)
            m_put(m, s, f, i);
        else if (k < 450)
            m_put_run(m, s, f, i, run);
        else if (k < 750)
            m_get(m, s, f, i);
        else if (k < 800)
            m_get_run(m, s, f, i, run);
        else if (k < 996)
            m_write(m, s, f, i, tag++);
        else if (k < 999)
            m_truncate(m, s, f);
        else
            m_remount(m, s);
    }
    tmem_cleancache_stats_t st;
    tmem_cleancache_stats(m->cc, &st);
    assert_int_equal(st.succ_gets, m->hits);
    assert_int_equal(st.succ_gets + st.failed_gets, m->gets);
    assert_int_equal(st.puts, m->puts);
    assert_int_equal(st.invalidates, m->invalidates);
    /* a small engine: hits and misses both happened */
    assert_true(m->hits > 0);
    assert_true(st.failed_gets > 0);
}

static void model_in_process(void **state)
{
    (void)state;
    /* 1 MiB: far less than the pages put, so eviction makes gets miss */
    tmem_t *t = tt_open(1u << 20, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "fs");
    struct fsmodel *m = calloc(1, sizeof(*m));
    m->cc = tmem_cleancache_open(c);
    assert_non_null(m->cc);
    m_run(m, 60000, g_seed);
    tmem_stats_t st;
    tmem_stats_get(t, &st);
    assert_true(st.evictions > 0);
    tmem_cleancache_close(m->cc);
    tmem_stats_get(t, &st);
    assert_int_equal(st.pools, 0);              /* close invalidated every fs */
    free(m);
    tmem_client_close(c);
    tt_close(t);
}

static void bad_input(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = tmem_client_open(t, "bad");
    assert_null(tmem_cleancache_open(NULL));
    tmem_cleancache_t *cc = tmem_cleancache_open(c);
    uint8_t page[PG] = { 1 };
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(42);
    assert_int_equal(k.fh[0], 42);
    assert_int_equal(tmem_cleancache_get_page(cc, 0, &k, 0, page), -ENODEV);   /* no fs yet */
    assert_int_equal(tmem_cleancache_get_page(cc, -1, &k, 0, page), -EINVAL);
    assert_int_equal(tmem_cleancache_get_page(cc, TMEM_CLEANCACHE_MAX_FS, &k, 0, page), -EINVAL);
    int fs = tmem_cleancache_init_fs(cc);
    assert_int_equal(fs, 0);
    assert_int_equal(tmem_cleancache_put_page(cc, fs, NULL, 0, page), -EINVAL);
    assert_int_equal(tmem_cleancache_put_page(cc, fs, &k, 0, NULL), -EINVAL);
    assert_int_equal(tmem_cleancache_get_page(cc, fs, &k, 0, NULL), -EINVAL);
    /* runs: a NULL page, a bad fs or too long a run: every result says so */
    void *run[2] = { page, NULL };
    int res[2] = { 7, 7 };
    assert_int_equal(tmem_cleancache_get_pages(cc, fs, &k, 0, 2, run, res), -EINVAL);
    assert_true(res[0] == -EINVAL && res[1] == -EINVAL);
    run[1] = page;
    assert_int_equal(tmem_cleancache_get_pages(cc, -1, &k, 0, 2, run, res), -EINVAL);
    assert_int_equal(tmem_cleancache_get_pages(cc, 9, &k, 0, 2, run, res), 0);  /* no fs 9 */
    assert_true(res[0] == -ENODEV && res[1] == -ENODEV);
    assert_int_equal(tmem_cleancache_put_pages(cc, fs, &k, 0, TMEM_CLEANCACHE_MAX_BATCH + 1,
                                               (const void *const *)run, res), -EINVAL);
    assert_int_equal(tmem_cleancache_get_pages(cc, fs, &k, 0, 2, run, res), 0);   /* misses */
    assert_true(res[0] == -ENOENT && res[1] == -ENOENT);
    assert_int_equal(tmem_cleancache_fs_is_shared(cc, fs), 0);
    assert_int_equal(tmem_cleancache_fs_is_shared(cc, 5), -ENODEV);
    /* tmem allows 16 pools per client: the 17th fs is refused by tmem */
    for (int i = 1; i < (int)TMEM_MAX_POOLS; i++)
        assert_int_equal(tmem_cleancache_init_fs(cc), i);
    assert_true(tmem_cleancache_init_fs(cc) < 0);
    tmem_cleancache_invalidate_fs(cc, 3);
    assert_int_equal(tmem_cleancache_init_fs(cc), 3);          /* the id is reused */
    /* an unauthorised shared fs is a private pool (tmem's rule) */
    tmem_cleancache_invalidate_fs(cc, 4);
    tmem_uuid_t u = { 1, 2 };
    assert_int_equal(tmem_cleancache_init_shared_fs(cc, u), 4);
    assert_int_equal(tmem_cleancache_fs_is_shared(cc, 4), 0);
    /* asking again while the first is private gives a distinct pool */
    tmem_cleancache_invalidate_fs(cc, 5);
    assert_int_equal(tmem_cleancache_init_shared_fs(cc, u), 5);
    tmem_cleancache_invalidate_fs(cc, 5);
    tmem_cleancache_close(cc);
    tmem_client_close(c);
    tt_close(t);
}

/* ---- through tmemd ------------------------------------------------------ */
static td_t g_d, g_d2;
static char g_link[256];

/* The test's daemons serve every call through the window. */
static int window_mode(void **state)
{
    (void)state;
    td_window_mode = 1;
    return 0;
}

static int stop_daemons(void **state)
{
    td_window_mode = 0;
    (void)state;
    td_t *const ds[] = { &g_d, &g_d2 };
    assert_int_equal(td_stop_all(ds, 2), 0);    /* every daemon's self-check passed */
    if (g_link[0])
        unlink(g_link);
    g_link[0] = 0;
    return 0;
}

static void model_daemon(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "1M", NULL };
    assert_int_equal(td_start(&g_d, args), 0);
    struct fsmodel *m = calloc(1, sizeof(*m));
    m->cc = tmem_cleancache_connect(g_d.sock, "fs");
    assert_non_null(m->cc);
    m_run(m, 20000, g_seed + 1);
    tmem_cleancache_close(m->cc);
    free(m);
}

/* Two tenants mount one filesystem with the same uuid; once authorised,
 * pages one put serve the other's gets (a shared pool: gets do not take
 * the page), and an invalidate by one is seen by the other. */
static void shared_fs_two_tenants(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d, NULL), 0);
    tmem_uuid_t u;
    assert_int_equal(tmem_uuid_parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", &u), 0);
    tmem_cleancache_t *a = tmem_cleancache_connect(g_d.sock, "tenant-a");
    tmem_cleancache_t *b = tmem_cleancache_connect(g_d.sock, "tenant-b");
    tmem_cleancache_t *x = tmem_cleancache_connect(g_d.sock, "outsider");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(x);
    tmem_cleancache_t *ccs[] = { a, b };
    for (int i = 0; i < 2; i++)
        assert_int_equal(tmc_shared_auth(g_d.ctl, tmem_client_id(tmem_cleancache_client(ccs[i])),
                                         u, 1), 0);
    int fa = tmem_cleancache_init_shared_fs(a, u), fb = tmem_cleancache_init_shared_fs(b, u);
    int fx = tmem_cleancache_init_shared_fs(x, u);
    assert_true(fa >= 0 && fb >= 0 && fx >= 0);
    assert_int_equal(tmem_cleancache_fs_is_shared(a, fa), 1);
    assert_int_equal(tmem_cleancache_fs_is_shared(b, fb), 1);
    assert_int_equal(tmem_cleancache_fs_is_shared(x, fx), 0);   /* not authorised */
    /* one fs per shared pool: a second fs of the uuid would get a's pool */
    assert_int_equal(tmem_cleancache_init_shared_fs(a, u), -EBUSY);
    uint8_t page[PG], got[PG];
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(77);
    for (uint32_t i = 0; i < 20; i++) {
        content(page, 77, i, 5);
        assert_int_equal(tmem_cleancache_put_page(a, fa, &k, i, page), 0);
    }
    for (int round = 0; round < 2; round++)    /* twice: shared gets keep the page */
        for (uint32_t i = 0; i < 20; i++) {
            content(page, 77, i, 5);
            assert_int_equal(tmem_cleancache_get_page(b, fb, &k, i, got), 0);
            assert_memory_equal(got, page, PG);
        }
    /* the outsider's private pool never sees them */
    assert_int_equal(tmem_cleancache_get_page(x, fx, &k, 0, got), -ENOENT);
    /* a write through tenant a invalidates the page for b too */
    tmem_cleancache_invalidate_page(a, fa, &k, 3);
    assert_int_equal(tmem_cleancache_get_page(b, fb, &k, 3, got), -ENOENT);
    tmem_cleancache_invalidate_inode(b, fb, &k);
    assert_int_equal(tmem_cleancache_get_page(a, fa, &k, 4, got), -ENOENT);
    tmem_cleancache_stats_t st;
    tmem_cleancache_stats(b, &st);
    assert_int_equal(st.succ_gets, 40);
    assert_int_equal(st.failed_gets, 1);
    tmem_cleancache_close(a);
    tmem_cleancache_close(b);
    tmem_cleancache_close(x);
}

/* Starts g_d with a standing authorisation of this uid for uuid text u
 * ([memory] shared_allow); *uuid receives it parsed.  args must hold 3. */
static void start_with_rule(const char *u, tmem_uuid_t *uuid, char *rule, size_t rulelen,
                            const char **args)
{
    snprintf(rule, rulelen, "memory.shared_allow=%s:%u", u, (unsigned)geteuid());
    args[0] = "--set";
    args[1] = rule;
    args[2] = NULL;
    assert_int_equal(td_start(&g_d, args), 0);
    assert_int_equal(tmem_uuid_parse(u, uuid), 0);
}

/* Points the symlink g_link at target (a daemon's socket, or nowhere). */
static void relink(const char *target)
{
    unlink(g_link);
    assert_int_equal(symlink(target, g_link), 0);
}

/* A standing authorisation in the daemon's configuration ([memory]
 * shared_allow): tenants of the uid share the pool without an
 * administrator's call, and again after the daemon was restarted under
 * them (the layers reconnect to fresh clients). */
static void shared_fs_standing_rule(void **state)
{
    (void)state;
    char rule[128];
    const char *args[3];
    tmem_uuid_t u;
    start_with_rule("11111111-2222-3333-4444-555555555555", &u, rule, sizeof(rule), args);
    tmem_cleancache_t *a = tmem_cleancache_connect(g_d.sock, "rule-a");
    tmem_cleancache_t *b = tmem_cleancache_connect(g_d.sock, "rule-b");
    assert_non_null(a);
    assert_non_null(b);
    tmem_cleancache_set_reconnect_ms(a, 0);
    tmem_cleancache_set_reconnect_ms(b, 0);
    int fa = tmem_cleancache_init_shared_fs(a, u), fb = tmem_cleancache_init_shared_fs(b, u);
    tmem_uuid_t other = { 7, 7 };
    int fo = tmem_cleancache_init_shared_fs(a, other);          /* no rule for it */
    assert_int_equal(tmem_cleancache_fs_is_shared(a, fo), 0);
    uint8_t page[PG], got[PG];
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(3);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(tmem_cleancache_fs_is_shared(a, fa), 1);
        assert_int_equal(tmem_cleancache_fs_is_shared(b, fb), 1);
        content(page, 3, 0, 10 + (uint64_t)round);
        assert_int_equal(tmem_cleancache_put_page(a, fa, &k, 0, page), 0);
        assert_int_equal(tmem_cleancache_get_page(b, fb, &k, 0, got), 0);
        assert_memory_equal(got, page, PG);
        if (round == 0) {
            assert_int_equal(td_restart(&g_d, args), 0);
            /* the first call after finds the daemon gone and reconnects */
            assert_true(tmem_cleancache_get_page(a, fa, &k, 0, got) < 0);
            assert_true(tmem_cleancache_get_page(b, fb, &k, 0, got) < 0);
        }
    }
    tmem_cleancache_stats_t st;
    tmem_cleancache_stats(a, &st);
    assert_int_equal(st.reconnects, 1);
    tmem_cleancache_close(a);
    tmem_cleancache_close(b);
}

/* An fs made after the daemon went away, before any call noticed: the
 * first call finds out, reconnects, and the fs gets its pool. */
static void init_while_away(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d, NULL), 0);
    snprintf(g_link, sizeof(g_link), "%s.link", g_d.dir);
    assert_int_equal(symlink(g_d.sock, g_link), 0);
    tmem_cleancache_t *cc = tmem_cleancache_connect(g_link, "away");
    assert_non_null(cc);
    tmem_cleancache_set_reconnect_ms(cc, 0);
    assert_int_equal(td_stop(&g_d), 0);
    g_d.pid = 0;
    assert_int_equal(td_start(&g_d2, NULL), 0);
    relink(g_d2.sock);
    int fs = tmem_cleancache_init_fs(cc);
    assert_true(fs >= 0);
    uint8_t page[PG], got[PG];
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(1);
    content(page, 1, 0, 1);
    assert_int_equal(tmem_cleancache_put_page(cc, fs, &k, 0, page), -ENOTCONN);
    assert_int_equal(tmem_cleancache_put_page(cc, fs, &k, 0, page), 0);
    assert_int_equal(tmem_cleancache_get_page(cc, fs, &k, 0, got), 0);
    assert_memory_equal(got, page, PG);
    tmem_cleancache_close(cc);
}

/* Tenant a invalidates a page of a shared fs while it cannot reach the
 * (restarted) daemon, and tenant b, already back, holds the old page in the
 * shared pool: the invalidate is kept and replayed when a reconnects, so
 * that b stops reading the old page. */
static void shared_invalidate_replayed(void **state)
{
    (void)state;
    char rule[128];
    const char *args[3];
    tmem_uuid_t u;
    start_with_rule("99999999-2222-3333-4444-555555555555", &u, rule, sizeof(rule), args);
    snprintf(g_link, sizeof(g_link), "%s.link", g_d.dir);
    relink(g_d.sock);
    tmem_cleancache_t *a = tmem_cleancache_connect(g_link, "replay-a");
    tmem_cleancache_t *b = tmem_cleancache_connect(g_d.sock, "replay-b");
    assert_non_null(a);
    assert_non_null(b);
    tmem_cleancache_set_reconnect_ms(a, 0);
    tmem_cleancache_set_reconnect_ms(b, 0);
    int fa = tmem_cleancache_init_shared_fs(a, u), fb = tmem_cleancache_init_shared_fs(b, u);
    assert_int_equal(tmem_cleancache_fs_is_shared(a, fa), 1);
    /* a crash and a restart; a cannot reach the new daemon yet */
    assert_int_equal(td_kill(&g_d), 0);
    relink("/nonexistent/tmemd.sock");
    assert_int_equal(td_restart(&g_d, args), 0);
    uint8_t page[PG], got[PG];
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(8);
    content(page, 8, 0, 1);
    assert_true(tmem_cleancache_get_page(b, fb, &k, 0, got) < 0);   /* b reconnects */
    assert_int_equal(tmem_cleancache_fs_is_shared(b, fb), 1);
    assert_int_equal(tmem_cleancache_put_page(b, fb, &k, 0, page), 0);
    assert_int_equal(tmem_cleancache_put_page(b, fb, &k, 1, page), 0);
    /* a's invalidates cannot be sent: kept */
    tmem_cleancache_invalidate_page(a, fa, &k, 0);
    tmem_cleancache_invalidate_inode(a, fa, &k);
    assert_int_equal(tmem_cleancache_get_page(b, fb, &k, 0, got), 0);  /* still there */
    /* a gets through: its invalidates are replayed before it uses the pool */
    relink(g_d.sock);
    assert_true(tmem_cleancache_get_page(a, fa, &k, 5, got) < 0);
    assert_int_equal(tmem_cleancache_fs_is_shared(a, fa), 1);
    assert_int_equal(tmem_cleancache_get_page(b, fb, &k, 0, got), -ENOENT);
    assert_int_equal(tmem_cleancache_get_page(b, fb, &k, 1, got), -ENOENT);
    tmem_cleancache_close(a);
    tmem_cleancache_close(b);
}

/* The daemon goes away and another one comes up on the same path: while it
 * is away gets miss and puts are dropped (the backing store serves); then
 * the layer reconnects by itself, with its fs ids unchanged. */
static void daemon_restart(void **state)
{
    (void)state;
    assert_int_equal(td_start(&g_d, NULL), 0);
    snprintf(g_link, sizeof(g_link), "%s.link", g_d.dir);
    assert_int_equal(symlink(g_d.sock, g_link), 0);
    tmem_cleancache_t *cc = tmem_cleancache_connect(g_link, "restart");
    assert_non_null(cc);
    tmem_cleancache_set_reconnect_ms(cc, 0);
    int fs = tmem_cleancache_init_fs(cc);
    int fs2 = tmem_cleancache_init_fs(cc);
    assert_true(fs >= 0 && fs2 >= 0);
    uint8_t page[PG], got[PG];
    tmem_cleancache_filekey_t k = tmem_cleancache_key_ino(9);
    content(page, 9, 0, 1);
    assert_int_equal(tmem_cleancache_put_page(cc, fs, &k, 0, page), 0);
    assert_int_equal(td_stop(&g_d), 0);
    g_d.pid = 0;
    /* away: a miss, a dropped put, no crash, no wait */
    assert_true(tmem_cleancache_get_page(cc, fs, &k, 0, got) < 0);
    assert_true(tmem_cleancache_put_page(cc, fs, &k, 0, page) < 0);
    tmem_cleancache_stats_t st;
    tmem_cleancache_stats(cc, &st);
    assert_true(st.disconnected >= 2);
    assert_int_equal(st.reconnects, 0);
    /* back */
    assert_int_equal(td_start(&g_d2, NULL), 0);
    relink(g_d2.sock);
    int r = tmem_cleancache_get_page(cc, fs, &k, 0, got);   /* fails, and reconnects */
    assert_true(r < 0);
    for (int i = 0; i < 2; i++) {
        int f = i ? fs2 : fs;
        assert_int_equal(tmem_cleancache_put_page(cc, f, &k, 0, page), 0);
        assert_int_equal(tmem_cleancache_get_page(cc, f, &k, 0, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tmem_cleancache_stats(cc, &st);
    assert_int_equal(st.reconnects, 1);
    tmem_cleancache_close(cc);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    g_seed = tt_seed_from_args(argc, argv, "test_cleancache");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_in_process),
        cmocka_unit_test(bad_input),
        cmocka_unit_test_teardown(model_daemon, stop_daemons),
        cmocka_unit_test_teardown(shared_fs_two_tenants, stop_daemons),
        cmocka_unit_test_teardown(shared_fs_standing_rule, stop_daemons),
        /* the daemon's death as a daemon that runs its clients' pools
         * sees it (memory.lend=false) */
        cmocka_unit_test_setup_teardown(daemon_restart, window_mode, stop_daemons),
        cmocka_unit_test_setup_teardown(init_while_away, window_mode, stop_daemons),
        cmocka_unit_test_teardown(shared_invalidate_replayed, stop_daemons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
