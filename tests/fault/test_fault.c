/* SPDX-License-Identifier: MIT */
/*
 * test_fault.c - allocation-failure injection (SQLite-style OOM loop).
 *
 * A scripted, deterministic workload (two clients of a source engine with
 * persistent, keep-on-get, ephemeral and shared pools; puts of every page
 * kind, duplicate puts, gets, flushes, flush_object, a persistent cap, a
 * frozen client, save of one client and restore into a second engine,
 * destroy_pool, client close) is run once counting the internal allocations
 * of each engine (tmem__fault_inject(t, UINT64_MAX, 0)), then again from
 * scratch for every N = 1..count, failing the Nth allocation of one engine,
 * in transient (only the Nth fails) and persistent (the Nth and every later
 * one fails) mode.  Every run must:
 *   - return only the documented result for each call, given what a model of
 *     the workload knows (refusals are fine, a lost persistent page is not:
 *     every persistent page whose put returned 0, and that was not flushed or
 *     got since, reads back exactly, in the source and after a restore);
 *   - end with tmem_check() == 0 on both engines;
 *   - free everything: after the clients are closed no page, frame, body or
 *     pool is left and the metadata is exactly that of the tombstones (and
 *     LeakSanitizer checks the process at exit).
 */
#include "tmem_test.h"

#include <errno.h>
#include <stdbool.h>

#include "core/testing.h"

#define NOBJ 3
#define NIDX 16
#define NO_POOL (-1)

enum { H_ABSENT, H_MAYBE, H_PRESENT };

struct hm {
    uint64_t tag;
    uint8_t st, kind;
};

struct pool {
    int id;                     /* the client's pool id, or NO_POOL */
    bool persistent, keep, shared;
    struct hm h[NOBJ][NIDX];
};

struct client {
    const char *name;
    tmem_client_t *c;
    bool used[TMEM_MAX_POOLS];
    bool frozen;
    uint64_t cap, npers;        /* the model's persistent pages of this client */
};

struct fcfg {
    const char *name;
    int codec, dedup, across;
    uint64_t max;
    bool roomy;                 /* enough memory: without injection nothing is refused */
};

static const struct fcfg configs[] = {
    { "lz4-dedup-64MiB", TMEM_COMPRESS_LZ4, 1, 0, 64u << 20, true },
    { "zstd-across-160KiB", TMEM_COMPRESS_ZSTD, 1, 1, 160u << 10, false },
    { "none-nodedup-64MiB", TMEM_COMPRESS_NONE, 0, 0, 64u << 20, true },
};
#define NCONFIGS (sizeof(configs) / sizeof(configs[0]))

enum { TARGET_NONE, TARGET_SRC, TARGET_DST };

struct run {
    const struct fcfg *cfg;
    int target;                 /* which engine fails, or none (counting) */
    uint64_t nth;
    int persistent;
    const char *step;
    tmem_t *src, *dst;
    struct client c1, c2, cb;
    struct pool P, K, E, S, Q;  /* c1: P K E, shared S (c1 and c2), c2: Q */
    int s_id1, s_id2;           /* S's pool id in c1 and c2 */
    int sharers;
    uint64_t src_allocs, dst_allocs;
    uint64_t tomb_src, tomb_dst;    /* tombstones left in each engine */
    uint64_t nomem, refusals, lost, enospc, restore_failed, open_failed, pool_failed;
    tt_buf st;
    _Alignas(64) uint8_t page[PG];
    _Alignas(64) uint8_t got[PG];
};

static uint64_t g_tomb[NCONFIGS];   /* metadata of one tombstone, per config */

static void run_fail(struct run *r, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_fail(struct run *r, int line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fflush(stdout);
    if (r->target == TARGET_NONE)
        fprintf(stderr, "\nFAULT RUN FAILED: config %s, counting run (no injection), step \"%s\" "
                        "(line %d):\n  %s\n",
                r->cfg->name, r->step, line, msg);
    else
        fprintf(stderr, "\nFAULT RUN FAILED: config %s, allocation %llu of the %s engine fails "
                        "(%s mode), step \"%s\" (line %d):\n  %s\n",
                r->cfg->name, (unsigned long long)r->nth,
                r->target == TARGET_SRC ? "source" : "target",
                r->persistent ? "persistent: and every later one" : "transient", r->step, line,
                msg);
    fail_msg("config %s target %d nth %llu persistent %d: %s", r->cfg->name, r->target,
             (unsigned long long)r->nth, r->persistent, msg);
}

#define CHECK(r, cond, ...)                                                                  \
    do {                                                                                     \
        if (!(cond))                                                                         \
            run_fail((r), __LINE__, __VA_ARGS__);                                            \
    } while (0)

/* ------------------------------------------------------------------------
 * Model helpers
 * ---------------------------------------------------------------------- */
static tmem_oid_t oid_of(int o) { return tt_oid(0x10 + (uint64_t)o, (uint64_t)o << 40, 7); }
static uint32_t index_of(int i) { return (uint32_t)i * 3u + (i & 1 ? 0x10000u : 0); }
static const tmem_uuid_t g_uuid = { 0x5348415245440001ull, 42 };

static void pool_init(struct pool *p, bool persistent, bool keep, bool shared)
{
    memset(p, 0, sizeof(*p));
    p->id = NO_POOL;
    p->persistent = persistent;
    p->keep = keep;
    p->shared = shared;
}

static void hset(struct client *owner, struct pool *p, struct hm *h, int st, int kind,
                 uint64_t tag)
{
    if (h->st == H_PRESENT)
        owner->npers--;
    if (st == H_PRESENT)
        owner->npers++;
    h->st = (uint8_t)st;
    h->kind = (uint8_t)kind;
    h->tag = tag;
    (void)p;
}

static void pool_clear(struct client *owner, struct pool *p)
{
    for (int o = 0; o < NOBJ; o++)
        for (int i = 0; i < NIDX; i++)
            hset(owner, p, &p->h[o][i], H_ABSENT, 0, 0);
}

static int lowest_free(const struct client *c)
{
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
        if (!c->used[s])
            return s;
    return -1;
}

static void open_client(struct run *r, tmem_t *t, struct client *c, const char *name)
{
    r->step = "client_open";
    memset(c, 0, sizeof(*c));
    c->name = name;
    errno = 0;
    c->c = tmem_client_open(t, name);
    if (!c->c) {
        CHECK(r, errno == ENOMEM, "client_open %s: NULL with errno %d", name, errno);
        r->open_failed++;
        CHECK(r, r->target != TARGET_NONE || !r->cfg->roomy,
              "client_open %s failed without injection", name);
        r->nomem++;
    }
}

static int new_pool(struct run *r, struct client *c, struct pool *p, uint32_t flags,
                    tmem_uuid_t uuid, bool expect_shared)
{
    r->step = "new_pool";
    if (!c->c)
        return NO_POOL;
    int expect = lowest_free(c);
    int rc = tmem_new_pool(c->c, uuid, flags);
    CHECK(r, rc == expect || rc == -ENOMEM,
          "new_pool %s flags 0x%x: rc %d, expected slot %d or -ENOMEM", c->name, flags, rc,
          expect);
    if (rc < 0) {
        CHECK(r, r->target != TARGET_NONE || !r->cfg->roomy, "new_pool refused without injection");
        r->pool_failed++;
        r->nomem++;
        return NO_POOL;
    }
    c->used[rc] = true;
    int sh = tmem_pool_is_shared(c->c, (uint32_t)rc);
    CHECK(r, sh == (int)expect_shared, "pool %d of %s: is_shared %d, expected %d", rc, c->name,
          sh, (int)expect_shared);
    if (p && !p->shared)
        p->id = rc;
    return rc;
}

/* A put and its documented outcomes for the model's state. */
static void put(struct run *r, struct client *c, struct client *owner, struct pool *p, int id,
                int o, int i, int kind, uint64_t tag)
{
    if (!c->c || id == NO_POOL)
        return;
    struct hm *h = &p->h[o][i];
    tt_fill(r->page, (enum tt_kind)kind, tag);
    int rc = tmem_put_page(c->c, (uint32_t)id, oid_of(o), index_of(i), r->page);
    bool ok;
    if (p->persistent) {
        if (h->st == H_PRESENT)
            ok = rc == 0 || rc == -ENOSPC;
        else if (c->frozen)
            ok = rc == -TMEM_EFROZEN;
        else if (c->cap && c->npers >= c->cap)
            ok = rc == -EDQUOT || rc == -ENOMEM;
        else
            ok = rc == 0 || rc == -ENOMEM;
    } else if (h->st == H_MAYBE) {
        ok = rc == 0 || rc == -ENOMEM || rc == -ENOSPC || (c->frozen && rc == -TMEM_EFROZEN);
    } else {
        ok = c->frozen ? rc == -TMEM_EFROZEN : (rc == 0 || rc == -ENOMEM);
    }
    CHECK(r, ok,
          "put %s pool %d (%s) obj %d idx %d, model %s, frozen %d cap %llu pages %llu: "
          "rc %d (%s)",
          c->name, id, p->persistent ? "persistent" : "ephemeral", o, i,
          h->st == H_PRESENT ? "present" : h->st == H_MAYBE ? "maybe" : "absent", c->frozen,
          (unsigned long long)c->cap, (unsigned long long)c->npers, rc, tmem_strerror(rc));
    if (rc == -ENOMEM || rc == -ENOSPC) {
        CHECK(r, r->target != TARGET_NONE || !r->cfg->roomy,
              "put refused (%d) without injection in a roomy engine", rc);
        r->nomem++;
    }
    if (rc != 0)
        r->refusals++;
    if (rc == -ENOSPC)
        r->enospc++;
    if (rc == 0)
        hset(owner, p, h, p->persistent ? H_PRESENT : H_MAYBE, kind, tag);
    else
        hset(owner, p, h, H_ABSENT, 0, 0);
}

/* A get, checked: persistent exact, ephemeral latest or miss. */
static void get(struct run *r, struct client *c, struct client *owner, struct pool *p, int id,
                int o, int i)
{
    if (!c->c || id == NO_POOL)
        return;
    struct hm *h = &p->h[o][i];
    memset(r->got, 0x5a, PG);
    int rc = tmem_get_page(c->c, (uint32_t)id, oid_of(o), index_of(i), r->got);
    if (p->persistent && h->st == H_PRESENT) {
        if (rc != 0)
            r->lost++;
        CHECK(r, rc == 0, "persistent page %s pool %d obj %d idx %d lost: get rc %d (%s)",
              c->name, id, o, i, rc, tmem_strerror(rc));
    } else if (rc == 0) {
        CHECK(r, h->st != H_ABSENT, "get %s pool %d obj %d idx %d hit an absent handle", c->name,
              id, o, i);
    } else {
        CHECK(r, rc == -ENOENT, "get %s pool %d obj %d idx %d: rc %d (%s)", c->name, id, o, i,
              rc, tmem_strerror(rc));
    }
    if (rc == 0) {
        tt_fill(r->page, (enum tt_kind)h->kind, h->tag);
        CHECK(r, memcmp(r->page, r->got, PG) == 0,
              "get %s pool %d obj %d idx %d: data is not that of the last put (kind %u tag %llu)",
              c->name, id, o, i, h->kind, (unsigned long long)h->tag);
        if (!p->shared && !p->keep)
            hset(owner, p, h, H_ABSENT, 0, 0);
    } else {
        hset(owner, p, h, H_ABSENT, 0, 0);
    }
}

static void flush(struct run *r, struct client *c, struct client *owner, struct pool *p, int id,
                  int o, int i)
{
    if (!c->c || id == NO_POOL)
        return;
    int rc = tmem_flush_page(c->c, (uint32_t)id, oid_of(o), index_of(i));
    CHECK(r, rc == 0, "flush_page %s pool %d: rc %d", c->name, id, rc);
    hset(owner, p, &p->h[o][i], H_ABSENT, 0, 0);
}

static void flush_object(struct run *r, struct client *c, struct client *owner, struct pool *p,
                         int id, int o)
{
    if (!c->c || id == NO_POOL)
        return;
    int present = 0, maybe = 0;
    for (int i = 0; i < NIDX; i++) {
        present += p->h[o][i].st == H_PRESENT;
        maybe += p->h[o][i].st == H_MAYBE;
    }
    int rc = tmem_flush_object(c->c, (uint32_t)id, oid_of(o));
    if (p->persistent)
        CHECK(r, rc == present, "flush_object %s pool %d obj %d: %d pages, the model has %d",
              c->name, id, o, rc, present);
    else
        CHECK(r, rc >= 0 && rc <= maybe, "flush_object %s pool %d obj %d: %d pages, at most %d",
              c->name, id, o, rc, maybe);
    for (int i = 0; i < NIDX; i++)
        hset(owner, p, &p->h[o][i], H_ABSENT, 0, 0);
}

/* Reads back every handle of a persistent pool: present exactly, absent missing. */
static void verify_pool(struct run *r, struct client *c, struct pool *p, int id)
{
    if (!c->c || id == NO_POOL)
        return;
    for (int o = 0; o < NOBJ; o++)
        for (int i = 0; i < NIDX; i++)
            get(r, c, c, p, id, o, i);
}

static void check_engine(struct run *r, tmem_t *t, const char *which)
{
    int bad = tmem_check(t);
    CHECK(r, bad == 0, "tmem_check(%s) = %d", which, bad);
    tmem_stats_t s;
    CHECK(r, tmem_stats_get(t, &s) == 0, "stats");
    CHECK(r, s.bytes_held <= s.max_bytes + 64 * 1024, "%s holds %llu bytes, limit %llu", which,
          (unsigned long long)s.bytes_held, (unsigned long long)s.max_bytes);
}

/* After every client is closed: nothing may be left but tombstones. */
static void check_empty(struct run *r, tmem_t *t, uint64_t tombs, const char *which)
{
    tmem_stats_t s;
    CHECK(r, tmem_stats_get(t, &s) == 0, "stats");
    CHECK(r, s.ephemeral_pages == 0 && s.persistent_pages == 0 && s.pools == 0 &&
                 s.objects == 0 && s.frames_whole == 0 && s.frames_zalloc == 0 && s.bodies == 0 &&
                 s.clients == 0 && s.pages_same_filled == 0,
          "%s after closing every client: ephemeral %llu persistent %llu pools %llu objects %llu "
          "whole %llu zalloc %llu bodies %llu clients %llu",
          which, (unsigned long long)s.ephemeral_pages, (unsigned long long)s.persistent_pages,
          (unsigned long long)s.pools, (unsigned long long)s.objects,
          (unsigned long long)s.frames_whole, (unsigned long long)s.frames_zalloc,
          (unsigned long long)s.bodies, (unsigned long long)s.clients);
    if (!r->cfg->across) {      /* the global stores keep their dedup tables */
        uint64_t tomb = g_tomb[r->cfg - configs];
        /* glibc may hand a tombstone up to 31 bytes more than its minimum
         * (it does not split off a remainder smaller than its minimum chunk),
         * and the probe that measured one may itself have got more */
        CHECK(r, s.meta_bytes + tombs * 31 >= tombs * tomb && s.meta_bytes <= tombs * (tomb + 31),
              "%s leaks metadata: %llu bytes held, %llu tombstones explain %llu", which,
              (unsigned long long)s.meta_bytes, (unsigned long long)tombs,
              (unsigned long long)(tombs * tomb));
    }
    int bad = tmem_check(t);
    CHECK(r, bad == 0, "tmem_check(%s) = %d after closing every client", which, bad);
}

static void arm(struct run *r, tmem_t *t, int which)
{
    if (r->target == TARGET_NONE)
        tmem__fault_inject(t, UINT64_MAX, 0);           /* count only */
    else if (r->target == which)
        tmem__fault_inject(t, r->nth, r->persistent);
}

static tmem_t *open_engine(const struct fcfg *cfg)
{
    tmem_config_t tc;
    tmem_config_init(&tc);
    tc.max_bytes = cfg->max;
    tc.compress = cfg->codec;
    tc.dedup = cfg->dedup;
    tc.dedup_across_clients = cfg->across;
    tmem_t *t = tmem_open(&tc);
    if (t)      /* a fixed key: the same objects grow the same tables each run */
        tmem__set_hash_key(t, 0x6661756c74ull);
    return t;
}

/* ------------------------------------------------------------------------
 * The workload
 * ---------------------------------------------------------------------- */
static void save_restore(struct run *r)
{
    struct client *c1 = &r->c1;
    if (!c1->c)
        return;
    r->step = "save";
    r->st = (tt_buf)TT_BUF_INIT;
    int64_t saved = tmem_client_save(r->src, tmem_client_id(c1->c), tt_buf_write, &r->st);
    /* save allocates nothing of the engine's: it cannot be refused */
    CHECK(r, saved == (int64_t)c1->npers, "save: %lld pages, the model has %llu",
          (long long)saved, (unsigned long long)c1->npers);

    r->step = "open target engine";
    r->dst = open_engine(r->cfg);
    if (!r->dst) {
        CHECK(r, errno == ENOMEM, "tmem_open: NULL with errno %d", errno);
        tt_buf_free(&r->st);
        return;
    }
    arm(r, r->dst, TARGET_DST);
    struct client *cb = &r->cb;
    open_client(r, r->dst, cb, "cb");
    if (cb->c) {
        r->step = "restore";
        int64_t n = tmem_client_restore(cb->c, tt_buf_read, &r->st);
        if (n >= 0) {
            CHECK(r, n == saved, "restore: %lld pages, saved %lld", (long long)n,
                  (long long)saved);
            /* the same pools at the same ids; persistent pages exact; the
             * shared pool comes back private (cb is not authorised) */
            r->step = "verify restored pages";
            cb->npers = (uint64_t)n;
            struct pool *pools[] = { &r->P, &r->K, &r->E };
            for (unsigned k = 0; k < 3; k++) {
                if (pools[k]->id == NO_POOL)
                    continue;
                struct pool copy = *pools[k];
                if (!copy.persistent)   /* ephemeral pages are not saved */
                    for (int o = 0; o < NOBJ; o++)
                        for (int i = 0; i < NIDX; i++)
                            copy.h[o][i].st = H_ABSENT;
                CHECK(r, tmem_pool_is_shared(cb->c, (uint32_t)copy.id) == 0,
                      "restored pool %d missing or shared", copy.id);
                verify_pool(r, cb, &copy, copy.id);
            }
            if (r->s_id1 != NO_POOL)
                CHECK(r, tmem_pool_is_shared(cb->c, (uint32_t)r->s_id1) == 0,
                      "restored shared pool %d: is_shared %d (not authorised: private)", r->s_id1,
                      tmem_pool_is_shared(cb->c, (uint32_t)r->s_id1));
        } else {
            r->restore_failed++;
            CHECK(r, n == -ENOMEM, "restore: rc %lld (%s)", (long long)n,
                  tmem_strerror((int)n));
            CHECK(r, r->target == TARGET_DST || !r->cfg->roomy,
                  "restore refused without injection in the target");
            for (uint32_t id = 0; id < TMEM_MAX_POOLS; id++)
                CHECK(r, tmem_pool_is_shared(cb->c, id) == -ENODEV,
                      "failed restore left pool %u (all or nothing)", id);
        }
        check_engine(r, r->dst, "target engine");
        tmem_client_close(cb->c);
        r->tomb_dst++;
    }
    tt_buf_free(&r->st);
    check_empty(r, r->dst, r->tomb_dst, "target engine");
    r->dst_allocs = tmem__alloc_count(r->dst);
    tmem_close(r->dst);
    r->dst = NULL;
}

static void workload(struct run *r)
{
    struct client *c1 = &r->c1, *c2 = &r->c2;
    r->step = "open source engine";
    r->src = open_engine(r->cfg);
    CHECK(r, r->src != NULL, "tmem_open failed (errno %d)", errno);
    arm(r, r->src, TARGET_SRC);

    pool_init(&r->P, true, false, false);
    pool_init(&r->K, true, true, false);
    pool_init(&r->E, false, false, false);
    pool_init(&r->S, false, false, true);
    pool_init(&r->Q, true, false, false);
    r->s_id1 = r->s_id2 = NO_POOL;
    open_client(r, r->src, c1, "c1");
    open_client(r, r->src, c2, "c2");
    for (struct client *c = c1; c; c = c == c1 ? c2 : NULL)
        if (c->c)
            CHECK(r, tmem_admin_shared_auth(r->src, tmem_client_id(c->c), g_uuid, 1) == 0,
                  "shared_auth");
    new_pool(r, c1, &r->P, TMEM_POOL_PERSIST, (tmem_uuid_t){ 0, 0 }, false);
    new_pool(r, c1, &r->E, 0, (tmem_uuid_t){ 0, 0 }, false);
    new_pool(r, c1, &r->K, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET, (tmem_uuid_t){ 0, 0 },
             false);
    r->s_id1 = new_pool(r, c1, &r->S, TMEM_POOL_SHARED, g_uuid, true);
    new_pool(r, c2, &r->Q, TMEM_POOL_PERSIST, (tmem_uuid_t){ 0, 0 }, false);
    r->s_id2 = new_pool(r, c2, &r->S, TMEM_POOL_SHARED, g_uuid, true);
    r->sharers = (r->s_id1 != NO_POOL) + (r->s_id2 != NO_POOL);

    /* puts of every kind; small tags repeat (dedup), large ones do not */
    r->step = "puts";
    for (int o = 0; o < NOBJ; o++) {
        for (int i = 0; i < NIDX; i++) {
            int k = (o * NIDX + i) % TT_KINDS;
            put(r, c1, c1, &r->P, r->P.id, o, i, k, (uint64_t)(i % 4));
            put(r, c1, c1, &r->K, r->K.id, o, i, (k + 1) % TT_KINDS, 100 + (uint64_t)(o * 31 + i));
            put(r, c1, c1, &r->E, r->E.id, o, i, (k + 2) % TT_KINDS, (uint64_t)(i % 3));
        }
    }
    r->step = "duplicate puts";
    for (int i = 0; i < NIDX; i += 2) {
        put(r, c1, c1, &r->P, r->P.id, 0, i, TT_HALF, 500 + (uint64_t)i);
        put(r, c1, c1, &r->K, r->K.id, 1, i, TT_TEXT, (uint64_t)i % 2);
        put(r, c1, c1, &r->E, r->E.id, 2, i, TT_RANDOM, 700 + (uint64_t)i);
    }
    r->step = "gets";
    for (int i = 0; i < NIDX; i += 3) {
        get(r, c1, c1, &r->P, r->P.id, 0, i);
        get(r, c1, c1, &r->P, r->P.id, 0, i);     /* destructive: now a miss */
        get(r, c1, c1, &r->K, r->K.id, 1, i);
        get(r, c1, c1, &r->K, r->K.id, 1, i);     /* keep: still a hit */
        get(r, c1, c1, &r->E, r->E.id, 2, i);
        get(r, c1, c1, &r->E, r->E.id, 2, i);     /* get-get */
    }
    r->step = "flushes";
    for (int i = 1; i < NIDX; i += 4) {
        flush(r, c1, c1, &r->P, r->P.id, 1, i);
        flush(r, c1, c1, &r->E, r->E.id, 0, i);
    }
    flush_object(r, c1, c1, &r->P, r->P.id, 2);
    flush_object(r, c1, c1, &r->E, r->E.id, 1);
    flush_object(r, c1, c1, &r->K, r->K.id, 2);

    r->step = "shared pool";
    for (int i = 0; i < NIDX; i++)
        put(r, c2, c2, &r->S, r->s_id2, i % NOBJ, i, i % TT_KINDS, 900 + (uint64_t)(i % 5));
    for (int i = 0; i < NIDX; i++)
        get(r, c1, c1, &r->S, r->s_id1, i % NOBJ, i);   /* c1 sees c2's pages */

    r->step = "persistent cap";
    for (int i = 0; i < NIDX; i++)
        put(r, c2, c2, &r->Q, r->Q.id, 0, i, TT_TEXT, 300 + (uint64_t)i);
    if (c2->c) {
        c2->cap = c2->npers + 3;
        CHECK(r, tmem_admin_set_cap(r->src, tmem_client_id(c2->c), c2->cap) == 0, "set_cap");
        for (int i = 0; i < 8; i++)
            put(r, c2, c2, &r->Q, r->Q.id, 1, i, TT_HALF, 400 + (uint64_t)i);
        put(r, c2, c2, &r->Q, r->Q.id, 0, 0, TT_RANDOM, 444);  /* duplicate: no cap */
    }

    r->step = "frozen client";
    if (c1->c) {
        CHECK(r, tmem_admin_freeze(r->src, tmem_client_id(c1->c)) == 0, "freeze");
        c1->frozen = true;
        put(r, c1, c1, &r->P, r->P.id, 1, 2, TT_TEXT, 1);       /* new: refused */
        put(r, c1, c1, &r->K, r->K.id, 0, 3, TT_RANDOM, 77);    /* duplicate: works */
        put(r, c1, c1, &r->E, r->E.id, 0, 5, TT_WORD, 5);
        flush(r, c1, c1, &r->K, r->K.id, 0, 4);
        CHECK(r, tmem_admin_thaw(r->src, tmem_client_id(c1->c)) == 0, "thaw");
        c1->frozen = false;
    }

    save_restore(r);

    r->step = "after save";
    put(r, c1, c1, &r->P, r->P.id, 1, 2, TT_TEXT, 2);           /* not frozen any more */
    put(r, c1, c1, &r->K, r->K.id, 2, 7, TT_HALF, 3);

    r->step = "destroy and close";
    if (c1->c && r->E.id != NO_POOL) {
        CHECK(r, tmem_destroy_pool(c1->c, (uint32_t)r->E.id) == 0, "destroy_pool");
        pool_clear(c1, &r->E);
        r->E.id = NO_POOL;
    }
    if (c2->c) {
        tmem_client_close(c2->c);
        r->tomb_src++;
        pool_clear(c2, &r->Q);
        if (r->s_id2 != NO_POOL && --r->sharers == 0)
            pool_clear(c2, &r->S);
        c2->c = NULL;
        c2->npers = 0;
    }
    for (int i = 0; i < NIDX; i++)     /* the shared pool lives on with c1 */
        get(r, c1, c1, &r->S, r->s_id1, i % NOBJ, i);

    r->step = "final verification";
    if (c1->c) {
        tmem_stats_t s;
        CHECK(r, tmem_stats_get(r->src, &s) == 0, "stats");
        CHECK(r, s.persistent_pages == c1->npers, "stats: %llu persistent pages, model %llu",
              (unsigned long long)s.persistent_pages, (unsigned long long)c1->npers);
    }
    verify_pool(r, c1, &r->K, r->K.id);
    verify_pool(r, c1, &r->K, r->K.id);         /* keep: twice */
    verify_pool(r, c1, &r->P, r->P.id);
    check_engine(r, r->src, "source engine");
    if (c1->c) {
        tmem_client_close(c1->c);
        r->tomb_src++;
        c1->c = NULL;
    }
    check_empty(r, r->src, r->tomb_src, "source engine");
    r->src_allocs = tmem__alloc_count(r->src);
    tmem_close(r->src);
    r->src = NULL;
}

/* ------------------------------------------------------------------------
 * The loop
 * ---------------------------------------------------------------------- */
static struct run *g_run;

static int teardown(void **state)
{
    (void)state;
    if (g_run) {                /* after a failure */
        if (g_run->src)
            tmem_close(g_run->src);
        if (g_run->dst)
            tmem_close(g_run->dst);
        tt_buf_free(&g_run->st);
        free(g_run);
        g_run = NULL;
    }
    return 0;
}

static void one_run(const struct fcfg *cfg, int target, uint64_t nth, int persistent,
                    struct run *out)
{
    struct run *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    g_run = r;
    r->cfg = cfg;
    r->target = target;
    r->nth = nth;
    r->persistent = persistent;
    workload(r);
    if (target == TARGET_SRC && cfg->roomy)
        CHECK(r, r->src_allocs >= nth,
              "the run made %llu allocations in the source, the failing one was %llu",
              (unsigned long long)r->src_allocs, (unsigned long long)nth);
    if (target == TARGET_DST && cfg->roomy)
        CHECK(r, r->dst_allocs >= nth,
              "the run made %llu allocations in the target, the failing one was %llu",
              (unsigned long long)r->dst_allocs, (unsigned long long)nth);
    if (out)
        *out = *r;
    g_run = NULL;
    free(r);
}

static void run_config(unsigned ci)
{
    const struct fcfg *cfg = &configs[ci];

    /* what one tombstone costs in this configuration */
    tmem_t *t = open_engine(cfg);
    assert_non_null(t);
    tmem_stats_t s;
    assert_int_equal(tmem_stats_get(t, &s), 0);
    uint64_t m0 = s.meta_bytes;
    tmem_client_t *c = tmem_client_open(t, "probe");
    assert_non_null(c);
    tmem_client_close(c);
    assert_int_equal(tmem_stats_get(t, &s), 0);
    g_tomb[ci] = s.meta_bytes - m0;
    tt_close(t);
    if (!cfg->across)
        assert_int_equal(m0, 0);    /* an engine without clients holds no metadata */

    struct run count;
    one_run(cfg, TARGET_NONE, 0, 0, &count);
    printf("%s: %llu allocations in the source engine, %llu in the target; %llu refusals "
           "without injection\n",
           cfg->name, (unsigned long long)count.src_allocs, (unsigned long long)count.dst_allocs,
           (unsigned long long)count.refusals);
    fflush(stdout);
    assert_true(count.src_allocs > 100 && count.dst_allocs > 10);
    assert_int_equal(count.lost, 0);

    uint64_t runs = 0;
    struct run sum;
    memset(&sum, 0, sizeof(sum));
    for (int persistent = 0; persistent <= 1; persistent++) {
        for (int target = TARGET_SRC; target <= TARGET_DST; target++) {
            uint64_t n = target == TARGET_SRC ? count.src_allocs : count.dst_allocs;
            for (uint64_t nth = 1; nth <= n; nth++) {
                struct run res;
                one_run(cfg, target, nth, persistent, &res);
                runs++;
                sum.nomem += res.nomem;
                sum.enospc += res.enospc;
                sum.restore_failed += res.restore_failed;
                sum.open_failed += res.open_failed;
                sum.pool_failed += res.pool_failed;
            }
        }
    }
    printf("%s: %llu injection runs passed; they saw %llu refused puts or pools (%llu -ENOSPC), "
           "%llu failed client opens, %llu failed pool creations, %llu failed restores\n",
           cfg->name, (unsigned long long)runs, (unsigned long long)sum.nomem,
           (unsigned long long)sum.enospc, (unsigned long long)sum.open_failed,
           (unsigned long long)sum.pool_failed, (unsigned long long)sum.restore_failed);
    /* the injection reached every kind of call */
    assert_true(sum.enospc > 0 && sum.open_failed > 0 && sum.pool_failed > 0 &&
                sum.restore_failed > 0);
    fflush(stdout);
}

static void test_config0(void **state) { (void)state; run_config(0); }
static void test_config1(void **state) { (void)state; run_config(1); }
static void test_config2(void **state) { (void)state; run_config(2); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_config0, teardown),
        cmocka_unit_test_teardown(test_config1, teardown),
        cmocka_unit_test_teardown(test_config2, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
