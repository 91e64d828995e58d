/* SPDX-License-Identifier: MIT */
/*
 * test_model.c - model-based randomized test of the tmem semantics
 * (docs: include/tmem/tmem.h).
 *
 * Several phases (codec LZ4 / ZSTD / none, dedup on / off / across clients,
 * shared-pool authorisation on / off, a default persistent cap), each a fresh
 * engine with a small memory limit, run together >= 1,000,000 mixed
 * operations from NCLI clients: new/destroy pool (ephemeral and persistent
 * private, KEEP_ON_GET, shared), put, get, flush page, flush object, client
 * close/reopen, freeze/thaw, caps, codecs, weights, limit changes, eviction,
 * relinquishing and lending of frames on demand, and bad calls.  A small key space makes
 * duplicates, flushes and hits frequent.  Every result is checked against a
 * reference model:
 *   - persistent pools are exact (a get returns the last stored data until
 *     flushed, got from a destructive pool, destroyed or closed);
 *   - ephemeral gets return the latest data or miss, and once a handle is
 *     known absent (miss, flush, destructive get, refused put) they miss
 *     until the next successful put (get-get);
 *   - put results are the documented ones for the model's state (frozen
 *     clients, persistent caps, duplicates: -ENOSPC only with an old copy);
 *   - shared pools are non-destructive and seen by every sharer.
 * Every CHECK_EVERY operations (and halfway): a probe of cross-client sharing
 * that needs no luck (op_share: two clients in one shared pool, one puts, the
 * other gets at once); then tmem_check() == 0, the limit, and the stats
 * against the model.  Replay a failure with: test_model --seed N [-n OPS].
 * (Eviction picks among a client's pools by millisecond ages, so a replay may
 * evict other pages; the model accepts any eviction.)
 *
 * The same source is built with TT_DAEMON=1 as test_model_daemon: each phase
 * starts a real tmemd configured like the phase's engine (tests/harness/host.c
 * passes the configuration as memory.* settings), the clients connect to it
 * with tmem_connect(), and the engine-side calls go through the control
 * socket:
 *   - freeze/thaw, set cap/weight/compress, shared-pool authorisation and
 *     client info as the control operations (tmc_*); set_compress for every
 *     client walks the client list (TMW_CTL_SET takes one client);
 *   - evict-all and relinquish as `tmemctl flush` (tmc_flush: free frames go
 *     back first, ephemeral pages are evicted for what they lack);
 *   - statistics are the engine's own (tmc_stats .engine), so every counter
 *     rule of the checkpoints holds through the daemon too;
 *   - a closed client is released by the daemon (no tombstone is left), and
 *     closes are asynchronous: th_client_close waits for the daemon.
 * Skipped through the daemon, having no daemon equivalent: set_max_bytes
 * (and the over-limit squeeze; only the governor changes the daemon's
 * limit), lending frames (tmem_relinquish_page*, tmem_return_pages: the
 * daemon's memory is not the test's), tmem_check() at checkpoints (the
 * daemon checks its engine when it stops: td_stop() == 0 ends each phase),
 * and the fixed hash key (tmem__set_hash_key, a testing hook): the daemon
 * picks its own, which must not change any result the model checks.  In
 * place of the over-limit squeeze the daemon gets op_fill_limit (the limit
 * reached by persistent growth: -ENOMEM, then room again once flushed),
 * which runs in-process too.  Default: 300,000 operations through the daemon.
 *
 * Each phase prints two digests: of its operation sequence and of the
 * results.  A replay with the same seed must show the same operation digest
 * as long as every pool creation and client open gets the same result (the
 * sequence follows the model's pool slots); the result digest may differ,
 * since eviction (ages in milliseconds, the hash key) may pick other
 * ephemeral pages, which the model accepts.  --trace FILE writes every
 * operation and its result, to compare two runs line by line.
 */
#include "host.h"

#if !TT_DAEMON
#include "core/testing.h"
#endif

#include <errno.h>
#include <stdbool.h>

#define NCLI 4
#define NOBJ 16
#define NIDX 32
#define NUUID 3
#define SLACK (64u * 1024u)
#define CHECK_EVERY (TT_DAEMON ? 10000u : 50000u)
#if TT_DAEMON
#define DEFAULT_OPS 300000u     /* every call is a round trip to the daemon */
#define PROG "test_model_daemon"
#else
#define DEFAULT_OPS 1000000u
#define PROG "test_model"
#endif
/* the coverage checks need this many operations in a phase */
#define COVER_OPS (TT_DAEMON ? 30000u : 100000u)
#define NPHASES 4
#define LOGN 24
#define MAXLENT 6

static uint64_t g_seed;
static uint64_t g_nops = DEFAULT_OPS;
static FILE *g_trace;           /* --trace FILE: every operation and its result */

/* ------------------------------------------------------------------------
 * The model
 * ---------------------------------------------------------------------- */
enum { H_ABSENT, H_MAYBE, H_PRESENT };

struct hm {
    uint64_t tag;
    uint8_t st, kind, who;
};

struct cm;

struct pm {                     /* one pool's contents */
    bool persistent, keep, shared;
    struct cm *owner;           /* private pools: whose persistent count */
    struct hm h[NOBJ][NIDX];
};

struct cslot {
    bool used;
    int uuid;                   /* >= 0: the shared pool of that uuid */
    struct pm *pm;
};

struct cm {
    int idx;
    tmem_client_t *c;
    uint32_t id;
    bool open, frozen;
    uint64_t cap, npers;
    struct cslot slot[TMEM_MAX_POOLS];
    struct pm own[TMEM_MAX_POOLS];
};

struct sm {
    int sharers;                /* slots referring to it */
    struct pm pm;
};

struct phase_cfg {
    const char *name;
    int codec, dedup, across, auth_required;
    uint64_t max, default_cap;
    uint32_t compress_max;
};

static const struct phase_cfg phases[NPHASES] = {
    { "lz4-dedup", TMEM_COMPRESS_LZ4, 1, 0, 1, 3u << 20, 0, 3584 },
    { "zstd-nodedup", TMEM_COMPRESS_ZSTD, 0, 0, 1, 2u << 20, 0, 3584 },
    { "none-dedup-cap-noauth", TMEM_COMPRESS_NONE, 1, 0, 0, 4u << 20, 150, 3584 },
    { "lz4-dedup-across", TMEM_COMPRESS_LZ4, 1, 1, 1, 2u << 20, 0, 2048 },
};

enum opcode {
    OP_PUT, OP_GET, OP_FLUSH, OP_FLUSHOBJ, OP_NEWPOOL, OP_DESTROY, OP_CLOSE, OP_OPEN,
    OP_FREEZE, OP_THAW, OP_CAP, OP_COMPRESS, OP_WEIGHT, OP_SETMAX, OP_EVICTALL,
    OP_RELINQ, OP_BAD, OP_FILL, OP_CHECK, OP_LEND, OP_RETURN, OP_FILL_LIMIT,
};
static const char *const opname[] = {
    "put", "get", "flush", "flush_object", "new_pool", "destroy_pool", "close", "open",
    "freeze", "thaw", "set_cap", "set_compress", "set_weight", "set_max_bytes", "evict_all",
    "relinquish", "bad_call", "fill_slots", "check", "lend", "return", "fill_limit",
};

struct logent {
    uint64_t op, tag, arg;
    int rc;
    uint8_t code, cli, slot, obj, idx, kind, st;
    bool quiet;                 /* not in the digests (see op_fill_limit) */
};

struct counters {
    uint64_t puts, puts_ok, gets, hits, eph_hits, cross_hits, absent_misses;
    uint64_t enomem, enospc, edquot, efrozen, flushes, fobjs, fobj_pages;
    uint64_t pools_made, pool_nomem, closes, open_nomem, setmax, setmax_nomem, evict_all;
    uint64_t checks, lends, lend_fails, fills, fill_nomem, share_probes, share_hits;
};

struct world {
    const struct phase_cfg *cfg;
    int phase;
    tt_host *host;
    tmem_t *t;                  /* the engine in-process, NULL through the daemon */
    tt_rng rng;
    tt_rng lrng;                /* lending's own stream: whether a lend succeeds
                                   depends on eviction, and must not shift rng */
    uint64_t op, nops, tagctr, nlog;
    uint64_t sdigest, rdigest;  /* the operation sequence, and with the results */
    uint64_t ndigested;         /* log entries folded into rdigest */
    bool quiet;                 /* operations now are left out of the digests */
    uint64_t base_max, max;
    uint64_t npers, nmaybe;     /* persistent pages present, ephemeral maybe-present */
    uint32_t last_id;
    uint64_t ntomb, tomb_bytes, meta0;
    struct cm cl[NCLI];
    struct sm sh[NUUID];
    struct logent log[LOGN];
    struct counters n;
    struct { uint8_t *p; unsigned order; uint64_t fill; } lent[MAXLENT];
    int nlent;
    _Alignas(64) uint8_t exp[PG];
    _Alignas(64) uint8_t got[PG];
};

static struct world *g_w;       /* for the teardown after a failure */

/* ------------------------------------------------------------------------
 * Failure reports
 * ---------------------------------------------------------------------- */
static const char *st_name(int st)
{
    return st == H_PRESENT ? "present" : st == H_MAYBE ? "maybe" : "absent";
}

static void print_log(const struct world *w)
{
    fprintf(stderr, "last operations (oldest first):\n");
    for (unsigned k = 0; k < LOGN; k++) {
        if (w->nlog + k < LOGN)
            continue;
        const struct logent *e = &w->log[(w->nlog + k) % LOGN];
        fprintf(stderr,
                "  op %llu %-13s client %u slot %u obj %u idx %u kind %u tag %llu arg %llu "
                "model %s -> rc %d\n",
                (unsigned long long)e->op, opname[e->code], e->cli, e->slot, e->obj, e->idx,
                e->kind, (unsigned long long)e->tag, (unsigned long long)e->arg,
                st_name(e->st), e->rc);
    }
}

static void model_fail(struct world *w, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void model_fail(struct world *w, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "\nMODEL MISMATCH: phase %d (%s), seed %llu, operation %llu (line %d):\n  %s\n",
            w->phase, w->cfg->name, (unsigned long long)g_seed, (unsigned long long)w->op, line,
            msg);
    print_log(w);
    fprintf(stderr, "replay: " PROG " --seed %llu -n %llu\n", (unsigned long long)g_seed,
            (unsigned long long)g_nops);
    fail_msg("model mismatch at phase %d operation %llu: %s", w->phase,
             (unsigned long long)w->op, msg);
}

#define CHECK(w, cond, ...)                                                                  \
    do {                                                                                     \
        if (!(cond))                                                                         \
            model_fail((w), __LINE__, __VA_ARGS__);                                          \
    } while (0)

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

/* The digests: what an operation is when it starts, and with its result and
 * the model's state once the next one starts (or the phase ends). */
static void digest_done(struct world *w)
{
    if (w->ndigested == w->nlog)
        return;
    w->ndigested = w->nlog;
    const struct logent *e = &w->log[(w->nlog - 1) % LOGN];
    if (g_trace)
        fprintf(g_trace, "%d %llu %s c%u s%u o%u i%u | kind %u tag %llu model %s rc %d\n",
                w->phase, (unsigned long long)e->op, opname[e->code], e->cli, e->slot, e->obj,
                e->idx, e->kind, (unsigned long long)e->tag, st_name(e->st), e->rc);
    if (e->quiet)
        return;
    w->rdigest = mix(w->rdigest, ((uint64_t)e->code << 56) ^ ((uint64_t)e->st << 48) ^
                                     (uint64_t)(uint32_t)e->rc);
    w->rdigest = mix(w->rdigest, e->tag);
}

static struct logent *logop(struct world *w, enum opcode code, int cli, int slot, int obj,
                            int idx, int kind, uint64_t tag, int st)
{
    digest_done(w);
    bool drawn = code != OP_GET;    /* a get logs the model's data */
    if (!w->quiet) {
        w->sdigest = mix(w->sdigest, ((uint64_t)code << 40) ^ ((uint64_t)cli << 32) ^
                                         ((uint64_t)slot << 24) ^ ((uint64_t)obj << 16) ^
                                         ((uint64_t)idx << 8) ^ (uint64_t)(drawn ? kind : 0));
        w->sdigest = mix(w->sdigest, drawn ? tag : 0);
    }
    struct logent *e = &w->log[w->nlog++ % LOGN];
    *e = (struct logent){ .op = w->op, .tag = tag, .rc = 0, .code = (uint8_t)code,
                          .cli = (uint8_t)cli, .slot = (uint8_t)slot, .obj = (uint8_t)obj,
                          .idx = (uint8_t)idx, .kind = (uint8_t)kind, .st = (uint8_t)st,
                          .quiet = w->quiet };
    return e;
}

/* ------------------------------------------------------------------------
 * Model helpers
 * ---------------------------------------------------------------------- */
static uint64_t rnd(struct world *w, uint64_t n) { return tt_below(&w->rng, n); }

static tmem_oid_t oid_of(int o)
{
    uint64_t x = (uint64_t)o;
    if (o == 0)
        return tt_oid(0, 0, 0);
    return tt_oid(x, x * 0x9e3779b97f4a7c15ull, ~x);
}

static uint32_t index_of(int i)
{
    return i < 24 ? (uint32_t)i : UINT32_MAX - (uint32_t)(i - 24) * 4097u;
}

static tmem_uuid_t uuid_of(int u)
{
    if (u < 0)
        return (tmem_uuid_t){ UINT64_MAX, UINT64_MAX };
    return (tmem_uuid_t){ 0x746d656d00000100ull + (uint64_t)u, 0x5eed };
}

static void hset(struct world *w, struct pm *p, struct hm *h, int st, int kind, uint64_t tag,
                 int who)
{
    if (h->st == H_PRESENT) {
        p->owner->npers--;
        w->npers--;
    } else if (h->st == H_MAYBE) {
        w->nmaybe--;
    }
    if (st == H_PRESENT) {
        p->owner->npers++;
        w->npers++;
    } else if (st == H_MAYBE) {
        w->nmaybe++;
    }
    h->st = (uint8_t)st;
    h->kind = (uint8_t)kind;
    h->tag = tag;
    h->who = (uint8_t)who;
}

static void pm_clear(struct world *w, struct pm *p)
{
    for (int o = 0; o < NOBJ; o++)
        for (int i = 0; i < NIDX; i++)
            hset(w, p, &p->h[o][i], H_ABSENT, 0, 0, 0);
}

static bool authorised(const struct world *w, const struct cm *c, int u)
{
    if (u < 0)
        return false;                               /* all-ones uuid: never shared */
    if (!w->cfg->auth_required)
        return true;
    return u == 0 || (u == 1 && c->idx % 2 == 0);   /* uuid 2: never authorised */
}

static int nused(const struct cm *c)
{
    int n = 0;
    for (unsigned s = 0; s < TMEM_MAX_POOLS; s++)
        n += c->slot[s].used;
    return n;
}

static int lowest_free(const struct cm *c)
{
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
        if (!c->slot[s].used)
            return s;
    return -1;
}

static int pick_slot(struct world *w, const struct cm *c)
{
    int n = nused(c);
    if (n == 0)
        return -1;
    int k = (int)rnd(w, (uint64_t)n);
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
        if (c->slot[s].used && k-- == 0)
            return s;
    return -1;
}

static void leave_slot(struct world *w, struct cm *c, int s)
{
    struct cslot *sl = &c->slot[s];
    if (sl->uuid >= 0) {
        struct sm *sh = &w->sh[sl->uuid];
        if (--sh->sharers == 0)
            pm_clear(w, &sh->pm);       /* the last sharer left: the pool is gone */
    } else {
        pm_clear(w, sl->pm);
    }
    sl->used = false;
    sl->pm = NULL;
    sl->uuid = -1;
}

/* A handle: half the time from a small hot set (hits, duplicates), else from
 * the whole key space (memory pressure). */
static void pick_handle(struct world *w, int *o, int *i)
{
    bool hot = rnd(w, 2);
    *o = (int)rnd(w, hot ? 2 : NOBJ);
    *i = (int)rnd(w, hot ? 8 : NIDX);
}

static void fill_kind(struct world *w, int *kind, uint64_t *tag)
{
    uint64_t r = rnd(w, 100);
    *kind = r < 20 ? TT_RANDOM : r < 50 ? TT_TEXT : r < 60 ? TT_ZERO : r < 75 ? TT_WORD : TT_HALF;
    /* half the tags from a small set (duplicate data: dedup), half unique */
    *tag = rnd(w, 2) ? rnd(w, 24) : 1000 + ++w->tagctr;
}

/* rc as a bit, for the sets of allowed put results */
enum { A_OK = 1, A_NOMEM = 2, A_NOSPC = 4, A_DQUOT = 8, A_FROZEN = 16 };
static unsigned rc_bit(int rc)
{
    switch (rc) {
    case 0: return A_OK;
    case -ENOMEM: return A_NOMEM;
    case -ENOSPC: return A_NOSPC;
    case -EDQUOT: return A_DQUOT;
    case -TMEM_EFROZEN: return A_FROZEN;
    default: return 0;
    }
}

/* Compares w->got with the model's data for h. */
static void check_data(struct world *w, const struct hm *h, const char *what)
{
    tt_fill(w->exp, (enum tt_kind)h->kind, h->tag);
    if (memcmp(w->exp, w->got, PG) != 0) {
        unsigned off = 0;
        while (off < PG && w->exp[off] == w->got[off])
            off++;
        CHECK(w, 0,
              "%s: data differs from the last put (kind %u tag %llu) at byte %u: "
              "got 0x%02x want 0x%02x",
              what, h->kind, (unsigned long long)h->tag, off, w->got[off], w->exp[off]);
    }
}

/* ------------------------------------------------------------------------
 * Operations
 * ---------------------------------------------------------------------- */
/* A put of (kind, tag) at handle (o, i) of c's slot s, checked; returns rc. */
static int put_at(struct world *w, struct cm *c, int s, int o, int i, int kind, uint64_t tag)
{
    struct pm *p = c->slot[s].pm;
    tt_fill(w->exp, (enum tt_kind)kind, tag);
    struct hm *h = &p->h[o][i];
    struct logent *e = logop(w, OP_PUT, c->idx, s, o, i, kind, tag, h->st);
    int rc = tmem_put_page(c->c, (uint32_t)s, oid_of(o), index_of(i), w->exp);
    e->rc = rc;
    unsigned allowed;
    const char *why;
    if (p->persistent) {
        if (h->st == H_PRESENT) {
            allowed = A_OK | A_NOSPC;
            why = "duplicate persistent put: 0 or -ENOSPC";
        } else if (c->frozen) {
            allowed = A_FROZEN;
            why = "new put on a frozen client: -TMEM_EFROZEN";
        } else if (c->cap && c->npers >= c->cap) {
            allowed = A_DQUOT | A_NOMEM;
            why = "new persistent put at the cap: -EDQUOT (or -ENOMEM)";
        } else {
            allowed = A_OK | A_NOMEM;
            why = "new persistent put under the cap: 0 or -ENOMEM";
        }
    } else if (h->st == H_MAYBE) {
        allowed = A_OK | A_NOMEM | A_NOSPC | (c->frozen ? A_FROZEN : 0);
        why = c->frozen ? "ephemeral put of a maybe-present handle, frozen client"
                        : "ephemeral put of a maybe-present handle";
    } else {
        allowed = c->frozen ? A_FROZEN : A_OK | A_NOMEM;
        why = c->frozen ? "new put on a frozen client: -TMEM_EFROZEN"
                        : "ephemeral put of an absent handle: 0 or -ENOMEM (no old copy)";
    }
    CHECK(w, rc_bit(rc) & allowed,
          "put client %d pool %d (%s%s%s) obj %d idx %d: rc %d (%s); expected %s "
          "[frozen %d cap %llu persistent pages %llu]",
          c->idx, s, p->persistent ? "persistent" : "ephemeral", p->shared ? " shared" : "",
          p->keep ? " keep" : "", o, i, rc, tmem_strerror(rc), why, c->frozen,
          (unsigned long long)c->cap, (unsigned long long)c->npers);
    w->n.puts++;
    switch (rc) {
    case 0: w->n.puts_ok++; break;
    case -ENOMEM: w->n.enomem++; break;
    case -ENOSPC: w->n.enospc++; break;
    case -EDQUOT: w->n.edquot++; break;
    default: w->n.efrozen++; break;
    }
    if (rc == 0)
        hset(w, p, h, p->persistent ? H_PRESENT : H_MAYBE, kind, tag, c->idx);
    else
        hset(w, p, h, H_ABSENT, 0, 0, 0);   /* refused, or the old copy was removed */
    return rc;
}

static void op_put(struct world *w, struct cm *c, int s)
{
    int o, i, kind;
    pick_handle(w, &o, &i);
    uint64_t tag;
    fill_kind(w, &kind, &tag);
    put_at(w, c, s, o, i, kind, tag);
}

/* A get at handle (o, i) of c's slot s, checked against the model. */
static void get_at(struct world *w, struct cm *c, int s, int o, int i)
{
    struct pm *p = c->slot[s].pm;
    struct hm *h = &p->h[o][i];
    struct logent *e = logop(w, OP_GET, c->idx, s, o, i, h->kind, h->tag, h->st);
    memset(w->got, 0xa5, PG);
    int rc = tmem_get_page(c->c, (uint32_t)s, oid_of(o), index_of(i), w->got);
    e->rc = rc;
    w->n.gets++;
    if (p->persistent) {
        if (h->st == H_PRESENT) {
            CHECK(w, rc == 0,
                  "get client %d persistent pool %d obj %d idx %d: rc %d (%s), but a put "
                  "stored it and nothing removed it",
                  c->idx, s, o, i, rc, tmem_strerror(rc));
            check_data(w, h, "persistent get");
            w->n.hits++;
            if (!p->keep)
                hset(w, p, h, H_ABSENT, 0, 0, 0);
        } else {
            CHECK(w, rc == -ENOENT,
                  "get client %d persistent pool %d obj %d idx %d: rc %d (%s), but the "
                  "handle is absent",
                  c->idx, s, o, i, rc, tmem_strerror(rc));
        }
        return;
    }
    if (rc == 0) {
        CHECK(w, h->st == H_MAYBE,
              "get client %d ephemeral%s pool %d obj %d idx %d hit, but the handle is "
              "known absent (missed, flushed, got or refused since its last put)",
              c->idx, p->shared ? " shared" : "", s, o, i);
        check_data(w, h, "ephemeral get (latest put or miss)");
        w->n.hits++;
        w->n.eph_hits++;
        if (p->shared && h->who != c->idx)
            w->n.cross_hits++;
        if (!p->shared && !p->keep)
            hset(w, p, h, H_ABSENT, 0, 0, 0);
    } else {
        CHECK(w, rc == -ENOENT, "get client %d ephemeral pool %d: rc %d (%s)", c->idx, s, rc,
              tmem_strerror(rc));
        if (h->st == H_ABSENT)
            w->n.absent_misses++;
        hset(w, p, h, H_ABSENT, 0, 0, 0);
    }
}

static void op_get(struct world *w, struct cm *c, int s)
{
    int o, i;
    pick_handle(w, &o, &i);
    get_at(w, c, s, o, i);
}

static void op_flush(struct world *w, struct cm *c, int s)
{
    struct pm *p = c->slot[s].pm;
    int o, i;
    pick_handle(w, &o, &i);
    struct hm *h = &p->h[o][i];
    struct logent *e = logop(w, OP_FLUSH, c->idx, s, o, i, 0, 0, h->st);
    int rc = tmem_flush_page(c->c, (uint32_t)s, oid_of(o), index_of(i));
    e->rc = rc;
    CHECK(w, rc == 0, "flush_page client %d pool %d obj %d idx %d (model %s): rc %d", c->idx, s,
          o, i, st_name(h->st), rc);
    w->n.flushes++;
    hset(w, p, h, H_ABSENT, 0, 0, 0);
}

static void op_flush_object(struct world *w, struct cm *c, int s)
{
    struct pm *p = c->slot[s].pm;
    int o = (int)rnd(w, rnd(w, 2) ? 2 : NOBJ);
    int present = 0, maybe = 0;
    for (int i = 0; i < NIDX; i++) {
        present += p->h[o][i].st == H_PRESENT;
        maybe += p->h[o][i].st == H_MAYBE;
    }
    struct logent *e = logop(w, OP_FLUSHOBJ, c->idx, s, o, 0, 0, 0, 0);
    int rc = tmem_flush_object(c->c, (uint32_t)s, oid_of(o));
    e->rc = rc;
    if (p->persistent)
        CHECK(w, rc == present,
              "flush_object client %d persistent pool %d obj %d: returned %d, the model holds "
              "%d pages",
              c->idx, s, o, rc, present);
    else
        CHECK(w, rc >= 0 && rc <= maybe,
              "flush_object client %d ephemeral pool %d obj %d: returned %d, at most %d pages "
              "can be there",
              c->idx, s, o, rc, maybe);
    w->n.fobjs++;
    w->n.fobj_pages += rc > 0 ? (uint64_t)rc : 0;
    for (int i = 0; i < NIDX; i++)
        hset(w, p, &p->h[o][i], H_ABSENT, 0, 0, 0);
}

/* Creates a pool of a random kind (kind < 0) or of `kind`; returns its slot or -1. */
static int op_new_pool(struct world *w, struct cm *c, int kind)
{
    int k = kind >= 0 ? kind : (int)rnd(w, 100);
    uint32_t flags;
    int u = -2;                 /* -2: private request */
    if (k < 20)
        flags = 0;
    else if (k < 40)
        flags = TMEM_POOL_PERSIST;
    else if (k < 50)
        flags = TMEM_POOL_KEEP_ON_GET;
    else if (k < 60)
        flags = TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET;
    else {
        flags = TMEM_POOL_SHARED;
        u = k < 95 ? (int)rnd(w, NUUID) : -1;  /* -1: the all-ones uuid */
    }
    if (rnd(w, 2))
        flags |= TMEM_SPEC_VERSION << TMEM_POOL_VERSION_SHIFT;
    tmem_uuid_t uuid = u == -2 ? (tmem_uuid_t){ rnd(w, 1000), rnd(w, 1000) } : uuid_of(u);
    bool shared = (flags & TMEM_POOL_SHARED) && authorised(w, c, u);
    int expect = lowest_free(c), joined = -1;
    for (int s = 0; shared && s < (int)TMEM_MAX_POOLS; s++)
        if (c->slot[s].used && c->slot[s].uuid == u)
            joined = s;     /* c is in this shared pool already */
    struct logent *e = logop(w, OP_NEWPOOL, c->idx, expect < 0 ? 99 : expect, 0, 0, 0, flags, 0);
    e->arg = (uint64_t)(u + 2);
    int rc = tmem_new_pool(c->c, uuid, flags);
    e->rc = rc;
    /* Joining a shared pool the client is in already is not specified: a new
     * slot for the same pool (what the engine does) or that slot again. */
    if (joined >= 0 && rc == joined)
        return rc;
    if (expect < 0)
        CHECK(w, rc == -ENOMEM, "new_pool client %d with all %u slots used: rc %d", c->idx,
              TMEM_MAX_POOLS, rc);
    else
        CHECK(w, rc == expect || rc == -ENOMEM,
              "new_pool client %d flags 0x%x: rc %d, expected the lowest free slot %d "
              "(or -ENOMEM)",
              c->idx, flags, rc, expect);
    if (rc < 0) {
        w->n.pool_nomem++;
        return -1;
    }
    w->n.pools_made++;
    int is = tmem_pool_is_shared(c->c, (uint32_t)rc);
    CHECK(w, is == (int)shared,
          "new_pool client %d flags 0x%x uuid #%d: tmem_pool_is_shared %d, expected %d", c->idx,
          flags, u, is, (int)shared);
    struct cslot *sl = &c->slot[rc];
    sl->used = true;
    if (shared) {
        sl->uuid = u;
        sl->pm = &w->sh[u].pm;
        w->sh[u].sharers++;
    } else {
        sl->uuid = -1;
        sl->pm = &c->own[rc];
        sl->pm->persistent = (flags & TMEM_POOL_PERSIST) != 0;
        sl->pm->keep = (flags & TMEM_POOL_KEEP_ON_GET) != 0;
        sl->pm->shared = false;
        sl->pm->owner = c;
    }
    return rc;
}

static void op_destroy(struct world *w, struct cm *c, int s)
{
    struct logent *e = logop(w, OP_DESTROY, c->idx, s, 0, 0, 0, 0, 0);
    int rc = tmem_destroy_pool(c->c, (uint32_t)s);
    e->rc = rc;
    CHECK(w, rc == 0, "destroy_pool client %d pool %d: rc %d", c->idx, s, rc);
    leave_slot(w, c, s);
}

static void op_open(struct world *w, struct cm *c)
{
    char name[32];
    snprintf(name, sizeof(name), "client-%d", c->idx);
    struct logent *e = logop(w, OP_OPEN, c->idx, 0, 0, 0, 0, 0, 0);
    errno = 0;
    tmem_client_t *h = th_client_try(w->host, name);
    if (!h) {
        e->rc = -errno;
        CHECK(w, errno == ENOMEM, "client_open: NULL with errno %d", errno);
        w->n.open_nomem++;
        return;
    }
    uint32_t id = tmem_client_id(h);
    e->arg = id;
    CHECK(w, id > w->last_id, "client_open: id %u reused (last %u)", id, w->last_id);
    w->last_id = id;
    c->c = h;
    c->id = id;
    c->open = true;
    c->frozen = false;
    c->cap = w->cfg->default_cap;
    CHECK(w, c->npers == 0, "model: a new client with persistent pages");
    for (int u = 0; u < NUUID; u++) {
        if (!authorised(w, c, u) || !w->cfg->auth_required)
            continue;
        int rc = th_shared_auth(w->host, id, uuid_of(u), 1);
        CHECK(w, rc == 0, "shared_auth client %u uuid %d: rc %d", id, u, rc);
    }
}

static void op_close(struct world *w, struct cm *c)
{
    tmem_client_t *old = c->c;
    uint32_t oldid = c->id;
    struct logent *e = logop(w, OP_CLOSE, c->idx, 0, 0, 0, 0, 0, 0);
    e->arg = oldid;
    th_client_close(w->host, old);  /* through the daemon: waits until it dropped it */
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
        if (c->slot[s].used)
            leave_slot(w, c, s);
    c->open = false;
    c->c = NULL;
    if (!TT_DAEMON)
        w->ntomb++;                 /* the daemon releases its clients: no tombstone */
    w->n.closes++;
    /* the handle is a tombstone now */
    tt_fill(w->exp, TT_TEXT, 1);
    int rc = tmem_put_page(old, 0, oid_of(1), 0, w->exp);
    CHECK(w, rc == -ENODEV, "put on a closed client: rc %d", rc);
    rc = tmem_get_page(old, 0, oid_of(1), 0, w->got);
    CHECK(w, rc == -ENODEV, "get on a closed client: rc %d", rc);
    rc = tmem_flush_object(old, 0, oid_of(1));
    CHECK(w, rc == -ENODEV, "flush_object on a closed client: rc %d", rc);
    rc = tmem_new_pool(old, uuid_of(0), 0);
    CHECK(w, rc == -ENODEV, "new_pool on a closed client: rc %d", rc);
    tmem_client_close(old);     /* twice is harmless */
    rc = th_freeze(w->host, oldid, 1);
    CHECK(w, rc == -ENOENT, "freeze of a closed client: rc %d", rc);
    tmem_client_info_t info;
    rc = th_client_info(w->host, oldid, &info);
    CHECK(w, rc == -ENOENT, "client_info of a closed client: rc %d", rc);
}

static void op_admin(struct world *w, struct cm *c, enum opcode code)
{
    struct logent *e = logop(w, code, c->idx, 0, 0, 0, 0, 0, 0);
    int rc = 0;
    bool all = rnd(w, 8) == 0;
    uint32_t id = all ? TMEM_CLIENT_ALL : c->id;
    switch (code) {
    case OP_FREEZE:
    case OP_THAW:
        rc = th_freeze(w->host, id, code == OP_FREEZE);
        CHECK(w, rc == 0, "%s client %u: rc %d", opname[code], id, rc);
        for (int k = 0; k < NCLI; k++)
            if (w->cl[k].open && (all || k == c->idx))
                w->cl[k].frozen = code == OP_FREEZE;
        break;
    case OP_CAP: {
        uint64_t cap = rnd(w, 2) ? 0 : 1 + rnd(w, 400);
        e->arg = cap;
        rc = th_set_cap(w->host, c->id, cap);
        CHECK(w, rc == 0, "set_cap client %u %llu: rc %d", c->id, (unsigned long long)cap, rc);
        c->cap = cap;
        break;
    }
    case OP_COMPRESS: {
        int codec = (int)rnd(w, 3);
        if (rnd(w, 20) == 0) {
            codec = rnd(w, 2) ? 3 : -1;
            rc = th_set_compress(w->host, c->id, codec);
            CHECK(w, rc == -EINVAL, "set_compress %d: rc %d", codec, rc);
        } else {
            rc = th_set_compress(w->host, all ? TMEM_CLIENT_ALL : c->id, codec);
            CHECK(w, rc == 0, "set_compress %d: rc %d", codec, rc);
        }
        e->arg = (uint64_t)codec;
        break;
    }
    case OP_WEIGHT: {
        uint32_t wt = (uint32_t)rnd(w, 300);
        e->arg = wt;
        rc = th_set_weight(w->host, c->id, wt);
        CHECK(w, rc == 0, "set_weight: rc %d", rc);
        break;
    }
    default:
        break;
    }
    e->rc = rc;
}

/* Every ephemeral page is gone (eviction of everything): the model knows it. */
static void model_all_ephemeral_gone(struct world *w)
{
    for (int k = 0; k < NCLI; k++)
        for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
            if (w->cl[k].slot[s].used && w->cl[k].slot[s].uuid < 0 &&
                !w->cl[k].slot[s].pm->persistent)
                pm_clear(w, w->cl[k].slot[s].pm);
    for (int u = 0; u < NUUID; u++)
        pm_clear(w, &w->sh[u].pm);
}

static void get_stats(struct world *w, tmem_stats_t *s)
{
    th_stats(w->host, s);       /* through the daemon: tmc_stats() .engine */
}

/* Sets the limit to nmax (0: a random one).  In-process only: the daemon's
 * limit is its configuration's, changed by its governor alone (no control
 * operation sets it), so through the daemon this is skipped. */
static void op_setmax(struct world *w, uint64_t nmax)
{
#if TT_DAEMON
    (void)w;
    (void)nmax;
#else
    if (nmax == 0)
        nmax = rnd(w, 5) == 0 ? w->base_max
                              : (w->base_max / 3 + rnd(w, w->base_max)) & ~(uint64_t)(PG - 1);
    uint64_t prev = w->max;
    struct logent *e = logop(w, OP_SETMAX, 0, 0, 0, 0, 0, 0, 0);
    e->arg = nmax;
    int rc = tmem_set_max_bytes(w->t, nmax);
    e->rc = rc;
    w->n.setmax++;
    tmem_stats_t st;
    get_stats(w, &st);
    CHECK(w, st.max_bytes == nmax, "set_max_bytes %llu: the limit is now %llu",
          (unsigned long long)nmax, (unsigned long long)st.max_bytes);
    if (rc == 0) {
        CHECK(w, st.bytes_held <= nmax, "set_max_bytes %llu returned 0 but %llu bytes are held",
              (unsigned long long)nmax, (unsigned long long)st.bytes_held);
        w->max = nmax;
        return;
    }
    CHECK(w, rc == -ENOMEM, "set_max_bytes %llu: rc %d", (unsigned long long)nmax, rc);
    w->n.setmax_nomem++;
    /* documented: persistent data alone exceeds the limit; the limit is set
     * anyway (so every ephemeral page was evicted trying) */
    CHECK(w, st.ephemeral_pages == 0 && st.bytes_held > nmax,
          "set_max_bytes %llu returned -ENOMEM with %llu ephemeral pages and %llu bytes held",
          (unsigned long long)nmax, (unsigned long long)st.ephemeral_pages,
          (unsigned long long)st.bytes_held);
    model_all_ephemeral_gone(w);
    w->max = nmax;
    /* "puts are refused until data is flushed": a new persistent page */
    for (int k = 0; k < NCLI; k++) {
        struct cm *c = &w->cl[k];
        for (int s = 0; c->open && s < (int)TMEM_MAX_POOLS; s++) {
            if (!c->slot[s].used || !c->slot[s].pm->persistent)
                continue;
            for (int o = 0; o < NOBJ; o++) {
                if (c->slot[s].pm->h[o][0].st != H_ABSENT)
                    continue;
                tt_fill(w->exp, TT_WORD, 3);
                int prc = tmem_put_page(c->c, (uint32_t)s, oid_of(o), index_of(0), w->exp);
                CHECK(w, prc == -ENOMEM || prc == -EDQUOT || prc == -TMEM_EFROZEN,
                      "a new put over the limit (held %llu, limit %llu): rc %d",
                      (unsigned long long)st.bytes_held, (unsigned long long)nmax, prc);
                w->n.enomem += prc == -ENOMEM;
                goto tried;
            }
        }
    }
tried:
    /* a documented, quiescent state: the engine must be consistent in it */
    int bad = tmem_check(w->t);
    CHECK(w, bad == 0,
          "tmem_check() = %d after set_max_bytes(%llu) returned -ENOMEM (%llu bytes of "
          "persistent data and metadata held): the documented over-limit state fails the check",
          bad, (unsigned long long)nmax, (unsigned long long)st.bytes_held);
    /* back to the previous limit, which held everything */
    rc = tmem_set_max_bytes(w->t, prev);
    CHECK(w, rc == 0, "set_max_bytes back to %llu: rc %d", (unsigned long long)prev, rc);
    w->max = prev;
#endif
}

/* Evicts every ephemeral page.  Through the daemon: `tmemctl flush` of more
 * than it holds, which also gives every free frame back to the OS. */
static void op_evict_all(struct world *w)
{
    struct logent *e = logop(w, OP_EVICTALL, 0, 0, 0, 0, 0, 0, 0);
#if TT_DAEMON
    tmem_stats_t a;
    get_stats(w, &a);
    uint64_t freed = 0;
    int frc = th_flush(w->host, (uint64_t)1 << 52, &freed);
    e->rc = frc;
    e->arg = freed;
    CHECK(w, frc == 0, "flush of everything: rc %d", frc);
    tmem_stats_t st;
    get_stats(w, &st);
    /* lent memory comes back in whole units from the clients, whose frame
     * figures the daemon only reports: the pages are what is checked */
    bool lent = th_local_pools(w->host);
    CHECK(w, lent || (st.frames_free == 0 && st.frames_held == a.frames_held - freed / PG &&
                 st.relinquished_frames == a.relinquished_frames + freed / PG),
          "flush of everything gave back %llu bytes: frames held %llu -> %llu, free %llu, "
          "relinquished %llu -> %llu",
          (unsigned long long)freed, (unsigned long long)a.frames_held,
          (unsigned long long)st.frames_held, (unsigned long long)st.frames_free,
          (unsigned long long)a.relinquished_frames,
          (unsigned long long)st.relinquished_frames);
#else
    bool lent = false;
    size_t n = tmem_evict_npages(w->t, (size_t)1 << 40);
    e->arg = n;
    tmem_stats_t st;
    get_stats(w, &st);
#endif
    CHECK(w, st.ephemeral_pages == 0,
          "tmem_evict_npages(all) stopped with %llu ephemeral pages left",
          (unsigned long long)st.ephemeral_pages);
    uint64_t freeable = th_freeable(w->host);
    CHECK(w, lent || freeable == st.frames_free,
          "after evicting everything, freeable %llu != free frames %llu",
          (unsigned long long)freeable, (unsigned long long)st.frames_free);
    model_all_ephemeral_gone(w);
    w->n.evict_all++;
}

/* Free frames go back to the OS.  Through the daemon: `tmemctl flush` of
 * that many pages, which evicts ephemeral pages only for what the free
 * frames lack. */
static void op_relinquish(struct world *w)
{
    tmem_stats_t a, b;
    get_stats(w, &a);
    size_t want = (size_t)rnd(w, 64);
    struct logent *e = logop(w, OP_RELINQ, 0, 0, 0, 0, 0, want, 0);
#if TT_DAEMON
    uint64_t freed = 0;
    int frc = th_flush(w->host, (uint64_t)want * PG, &freed);
    e->rc = frc;
    e->arg = freed;
    size_t got = (size_t)(freed / PG);
    get_stats(w, &b);
    if (th_local_pools(w->host)) {  /* lent memory: whole units come back (op_evict_all) */
        CHECK(w, frc == 0 && freed % PG == 0, "flush of %zu pages: rc %d, %llu bytes", want, frc,
              (unsigned long long)freed);
        return;
    }
    CHECK(w, frc == 0 && freed % PG == 0 && got <= want, "flush of %zu pages: rc %d, %llu bytes",
          want, frc, (unsigned long long)freed);
    CHECK(w, b.frames_held == a.frames_held - got &&
                 b.relinquished_frames == a.relinquished_frames + got,
          "flush of %zu pages gave back %zu: frames held %llu -> %llu, relinquished %llu -> %llu",
          want, got, (unsigned long long)a.frames_held, (unsigned long long)b.frames_held,
          (unsigned long long)a.relinquished_frames, (unsigned long long)b.relinquished_frames);
    if (want <= a.frames_free) {    /* the free frames were enough: nothing evicted */
        CHECK(w, got == want && b.frames_free == a.frames_free - got &&
                     b.ephemeral_pages == a.ephemeral_pages && b.evictions == a.evictions,
              "flush of %zu pages with %llu free frames: gave %zu, free now %llu, ephemeral "
              "pages %llu -> %llu, evictions %llu -> %llu",
              want, (unsigned long long)a.frames_free, got, (unsigned long long)b.frames_free,
              (unsigned long long)a.ephemeral_pages, (unsigned long long)b.ephemeral_pages,
              (unsigned long long)a.evictions, (unsigned long long)b.evictions);
    } else {                        /* every free frame first, then what eviction freed */
        CHECK(w, got >= a.frames_free && (got == want || b.frames_free == 0),
              "flush of %zu pages with %llu free frames: gave %zu, free now %llu", want,
              (unsigned long long)a.frames_free, got, (unsigned long long)b.frames_free);
    }
#else
    size_t got = tmem_relinquish_pages(w->t, want);
    e->arg = got;
    get_stats(w, &b);
    size_t expect = want < a.frames_free ? want : (size_t)a.frames_free;
    CHECK(w, got == expect && b.frames_free == a.frames_free - got &&
                 b.frames_held == a.frames_held - got,
          "relinquish_pages(%zu) with %llu free: gave %zu, free now %llu, held %llu -> %llu",
          want, (unsigned long long)a.frames_free, got, (unsigned long long)b.frames_free,
          (unsigned long long)a.frames_held, (unsigned long long)b.frames_held);
#endif
}

static void op_fill_limit(struct world *w);

/* The limit just below what persistent data and metadata need: set_max_bytes
 * must evict everything, say -ENOMEM and refuse new puts.  Through the
 * daemon only the first half: `tmemctl flush` of everything. */
static void op_squeeze(struct world *w)
{
#if TT_DAEMON
    uint64_t freed = 0;
    int frc = th_flush(w->host, (uint64_t)1 << 52, &freed);
    CHECK(w, frc == 0, "flush of everything: rc %d", frc);
#else
    tmem_evict_npages(w->t, (size_t)1 << 40);
#endif
    model_all_ephemeral_gone(w);
#if !TT_DAEMON
    tmem_relinquish_pages(w->t, (size_t)1 << 40);
#endif
    tmem_stats_t st;
    get_stats(w, &st);
    /* lent memory: free frames of the clients' persistent units are theirs */
    CHECK(w, st.ephemeral_pages == 0 && (st.frames_free == 0 || th_local_pools(w->host)),
          "after evicting and relinquishing everything: %llu ephemeral pages, %llu free frames",
          (unsigned long long)st.ephemeral_pages, (unsigned long long)st.frames_free);
    if (TT_DAEMON) {            /* no set_max_bytes through the daemon */
        op_fill_limit(w);
        return;
    }
    uint64_t nmax = (st.bytes_held - 2 * PG) & ~(uint64_t)(PG - 1);
    uint64_t before = w->n.setmax_nomem;
    op_setmax(w, nmax);
    CHECK(w, w->n.setmax_nomem == before + 1,
          "set_max_bytes(%llu) below the %llu bytes of persistent data and metadata did not "
          "say -ENOMEM", (unsigned long long)nmax, (unsigned long long)st.bytes_held);
    op_fill_limit(w);           /* and the limit reached by growth */
}

/* The limit reached by growth: with every ephemeral page gone, one client
 * (thawed, no cap) stores incompressible persistent pages in new handles
 * until the engine says -ENOMEM; then memory must really be (nearly) full,
 * a further new put must be refused too, and once the pages are flushed a
 * put must be taken again.  Through the daemon this stands in for the
 * over-limit half of op_squeeze (no set_max_bytes there).  How many pages
 * fit depends on eviction history (fragments), so these operations are left
 * out of the digests and draw nothing from rng: a replay stays in step. */
#define FILL_HEADROOM (4u * PG)    /* metadata a put may need beyond its frame */

static int fill_new_pool(struct world *w, struct cm *c)
{
    int expect = lowest_free(c);
    struct logent *e = logop(w, OP_NEWPOOL, c->idx, expect < 0 ? 99 : expect, 0, 0, 0,
                             TMEM_POOL_PERSIST, 0);
    int rc = tmem_new_pool(c->c, (tmem_uuid_t){ 0, 0 }, TMEM_POOL_PERSIST);
    e->rc = rc;
    CHECK(w, rc == (expect < 0 ? -ENOMEM : expect) || (expect >= 0 && rc == -ENOMEM),
          "new_pool client %d (persistent, filling): rc %d, expected the lowest free slot %d "
          "(or -ENOMEM)", c->idx, rc, expect);
    if (rc < 0)
        return -1;
    struct cslot *sl = &c->slot[rc];
    sl->used = true;
    sl->uuid = -1;
    sl->pm = &c->own[rc];
    sl->pm->persistent = true;
    sl->pm->keep = false;
    sl->pm->shared = false;
    sl->pm->owner = c;
    return rc;
}

static void op_fill_limit(struct world *w)
{
    struct cm *c = NULL;
    for (int k = 0; k < NCLI && !c; k++)
        if (w->cl[k].open)
            c = &w->cl[k];
    if (!c)
        return;
    digest_done(w);
    w->quiet = true;
    struct logent *e = logop(w, OP_FILL_LIMIT, c->idx, 0, 0, 0, 0, 0, 0);
    w->n.fills++;
    int rc = th_freeze(w->host, c->id, 0);
    CHECK(w, rc == 0, "thaw client %u: rc %d", c->id, rc);
    c->frozen = false;
    rc = th_set_cap(w->host, c->id, 0);
    CHECK(w, rc == 0, "set_cap client %u 0: rc %d", c->id, rc);
    c->cap = 0;

    static struct { uint8_t s, o, i; } put[TMEM_MAX_POOLS * NOBJ * NIDX];
    int nput = 0, made[TMEM_MAX_POOLS], nmade = 0;
    uint64_t tag = 1ull << 48;  /* unique data: no dedup, whole frames */
    bool refused = false;
    tmem_stats_t st;
    for (int s = 0; !refused;) {
        while (s < (int)TMEM_MAX_POOLS &&
               !(c->slot[s].used && c->slot[s].uuid < 0 && c->slot[s].pm->persistent))
            s++;
        if (s == (int)TMEM_MAX_POOLS) {     /* every persistent pool is full: another */
            s = fill_new_pool(w, c);
            if (s < 0)
                break;
            made[nmade++] = s;
        }
        struct pm *p = c->slot[s].pm;
        for (int o = 0; o < NOBJ && !refused; o++) {
            for (int i = 0; i < NIDX && !refused; i++) {
                if (p->h[o][i].st != H_ABSENT)
                    continue;
                rc = put_at(w, c, s, o, i, TT_RANDOM, ++tag);
                if (rc == 0) {
                    put[nput].s = (uint8_t)s;
                    put[nput].o = (uint8_t)o;
                    put[nput].i = (uint8_t)i;
                    nput++;
                    continue;
                }
                refused = true;     /* put_at allowed only -ENOMEM */
                get_stats(w, &st);
                /* lent memory goes in units (at most 256 KiB), each client
                 * keeps a few free ones, and the daemon's engine keeps a
                 * sixteenth of a small limit: a refusal comes that much
                 * earlier */
                uint64_t room = FILL_HEADROOM;
                if (TT_DAEMON && th_local_pools(w->host))
                    room += st.max_bytes / 8 + (uint64_t)(NCLI + 1) * 4 * (256u << 10);
                CHECK(w, st.bytes_held + room > st.max_bytes &&
                             st.bytes_held <= st.max_bytes + SLACK,
                      "a new persistent put refused with -ENOMEM while %llu of %llu bytes are "
                      "held (%llu free frames, %llu ephemeral pages)",
                      (unsigned long long)st.bytes_held, (unsigned long long)st.max_bytes,
                      (unsigned long long)st.frames_free,
                      (unsigned long long)st.ephemeral_pages);
                /* puts are refused until data is flushed */
                int i2 = (i + 1) % NIDX;
                if (p->h[o][i2].st == H_ABSENT) {
                    rc = put_at(w, c, s, o, i2, TT_RANDOM, ++tag);
                    /* lent memory may come between the two: units another
                     * client gave back wake this one's library (WAKE) */
                    CHECK(w, rc == -ENOMEM || (rc == 0 && TT_DAEMON && th_local_pools(w->host)),
                          "the next new put after -ENOMEM: rc %d", rc);
                }
            }
        }
        if (!refused)
            s++;
    }
    e->arg = (uint64_t)nput;
    e->rc = refused ? -ENOMEM : 0;
    w->n.fill_nomem += refused;
    for (int k = 0; k < nput; k++) {
        struct pm *p = c->slot[put[k].s].pm;
        struct logent *f = logop(w, OP_FLUSH, c->idx, put[k].s, put[k].o, put[k].i, 0, 0,
                                 p->h[put[k].o][put[k].i].st);
        rc = tmem_flush_page(c->c, put[k].s, oid_of(put[k].o), index_of(put[k].i));
        f->rc = rc;
        CHECK(w, rc == 0, "flush_page of a filled page: rc %d", rc);
        hset(w, p, &p->h[put[k].o][put[k].i], H_ABSENT, 0, 0, 0);
    }
    if (refused && nput > 0) {  /* room again */
        rc = put_at(w, c, put[0].s, put[0].o, put[0].i, TT_RANDOM, ++tag);
        CHECK(w, rc == 0, "a new put after flushing %d pages (the limit was reached): rc %d",
              nput, rc);
        rc = tmem_flush_page(c->c, put[0].s, oid_of(put[0].o), index_of(put[0].i));
        CHECK(w, rc == 0, "flush_page: rc %d", rc);
        struct pm *p = c->slot[put[0].s].pm;
        hset(w, p, &p->h[put[0].o][put[0].i], H_ABSENT, 0, 0, 0);
    }
    for (int k = 0; k < nmade; k++)
        op_destroy(w, c, made[k]);
    digest_done(w);
    w->quiet = false;
}

/* Cross-client sharing for certain.  The random mix makes a cross-client hit
 * only when two clients happen to be in the same shared pool at once (their
 * pools come and go, and uuids 1 and 2 are not authorised for every client)
 * and one of them gets a page the other put before eviction took it: with
 * seed 1796687655523832951, phase 1 of test_model_window had one such overlap
 * (370 operations), whose two gets of the other client's pages missed (put
 * 900 and 2000 operations before, among 4491 evictions), and the coverage
 * check failed.  So at fixed points two open clients join the shared pool of
 * uuid 0 (authorised for every client in every phase) if they are not in it
 * yet, one (thawed) puts a page and the other gets it at once, checked like
 * any get (an ephemeral miss is allowed: then another try).  Pools joined
 * here are left again, so the random mix keeps its pools.  Nothing is drawn
 * from rng; the number of tries depends on evictions, so, as in
 * op_fill_limit, the operations are left out of the digests. */
#define SHARE_TRIES 8

static int share_join(struct world *w, struct cm *c, int u)
{
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
        if (c->slot[s].used && c->slot[s].uuid == u)
            return s;
    int expect = lowest_free(c);
    struct logent *e = logop(w, OP_NEWPOOL, c->idx, expect < 0 ? 99 : expect, 0, 0, 0,
                             TMEM_POOL_SHARED, 0);
    e->arg = (uint64_t)(u + 2);
    int rc = tmem_new_pool(c->c, uuid_of(u), TMEM_POOL_SHARED);
    e->rc = rc;
    CHECK(w, rc == (expect < 0 ? -ENOMEM : expect) || (expect >= 0 && rc == -ENOMEM),
          "new_pool client %d (shared uuid #%d, probing): rc %d, expected the lowest free "
          "slot %d (or -ENOMEM)",
          c->idx, u, rc, expect);
    if (rc < 0) {
        w->n.pool_nomem++;
        return -1;
    }
    w->n.pools_made++;
    int is = tmem_pool_is_shared(c->c, (uint32_t)rc);
    CHECK(w, is == 1, "new_pool client %d shared uuid #%d (authorised): tmem_pool_is_shared %d",
          c->idx, u, is);
    struct cslot *sl = &c->slot[rc];
    sl->used = true;
    sl->uuid = u;
    sl->pm = &w->sh[u].pm;
    w->sh[u].sharers++;
    return rc;
}

static void op_share(struct world *w)
{
    digest_done(w);
    w->quiet = true;
    struct cm *pair[2] = { NULL, NULL };
    int np = 0;
    for (int k = 0; k < NCLI && np < 2; k++)
        if (w->cl[k].open)
            pair[np++] = &w->cl[k];
    for (int k = 0; k < NCLI && np < 2; k++) {
        if (w->cl[k].open)
            continue;
        op_open(w, &w->cl[k]);
        if (w->cl[k].open)
            pair[np++] = &w->cl[k];
    }
    if (np < 2)
        goto out;
    /* the putter must not be frozen (a new put would be refused) */
    if (pair[0]->frozen && !pair[1]->frozen) {
        struct cm *t = pair[0];
        pair[0] = pair[1];
        pair[1] = t;
    }
    struct cm *a = pair[0], *b = pair[1];
    if (a->frozen) {
        int rc = th_freeze(w->host, a->id, 0);
        CHECK(w, rc == 0, "thaw client %u: rc %d", a->id, rc);
        a->frozen = false;
    }
    const int u = 0;
    CHECK(w, authorised(w, a, u) && authorised(w, b, u), "model: uuid #%d not authorised", u);
    bool a_in = false, b_in = false;
    for (int s = 0; s < (int)TMEM_MAX_POOLS; s++) {
        a_in |= a->slot[s].used && a->slot[s].uuid == u;
        b_in |= b->slot[s].used && b->slot[s].uuid == u;
    }
    int sa = share_join(w, a, u);
    int sb = sa < 0 ? -1 : share_join(w, b, u);
    w->n.share_probes++;
    for (int t = 0; sb >= 0 && t < SHARE_TRIES; t++) {
        int o = NOBJ - 1 - t % 2, i = NIDX - 1 - t;
        uint64_t tag = (1ull << 47) + w->op * SHARE_TRIES + (uint64_t)t;
        if (put_at(w, a, sa, o, i, TT_TEXT, tag) != 0)
            continue;
        uint64_t before = w->n.cross_hits;
        get_at(w, b, sb, o, i);
        if (w->n.cross_hits > before) {
            w->n.share_hits++;
            break;
        }
    }
    /* leave the pools joined here (the last sharer's leaving ends the pool) */
    if (sb >= 0 && !b_in)
        op_destroy(w, b, sb);
    if (sa >= 0 && !a_in)
        op_destroy(w, a, sa);
out:
    digest_done(w);
    w->quiet = false;
}

/* The host borrows frames (they leave the engine's accounting) and gives them
 * back; the engine must not touch them meanwhile. */
static uint64_t lent_frames(const struct world *w)
{
    uint64_t n = 0;
    for (int k = 0; k < w->nlent; k++)
        n += (uint64_t)1 << w->lent[k].order;
    return n;
}

static void check_lent(struct world *w)
{
    for (int k = 0; k < w->nlent; k++) {
        const uint64_t *q = (const uint64_t *)w->lent[k].p;
        size_t words = ((size_t)PG << w->lent[k].order) / 8;
        for (size_t j = 0; j < words; j++)
            CHECK(w, q[j] == w->lent[k].fill + j,
                  "lent block %p (order %u) was changed by the engine at word %zu",
                  (void *)w->lent[k].p, w->lent[k].order, j);
    }
}

static void op_lend(struct world *w)
{
#if TT_DAEMON
    /* lending frames is in-process only (the daemon's memory is not ours) */
    (void)w;
    return;
#endif
    if (w->nlent < MAXLENT && (w->nlent == 0 || tt_below(&w->lrng, 2))) {
        unsigned order = (unsigned)tt_below(&w->lrng, 4);
        struct logent *e = logop(w, OP_LEND, 0, 0, 0, 0, 0, order, 0);
        uint8_t *p = order == 0 && tt_below(&w->lrng, 2) ? tmem_relinquish_page(w->t)
                                             : tmem_relinquish_pageblock(w->t, order);
        e->arg = (uint64_t)(uintptr_t)p;
        if (!p) {
            e->rc = -ENOMEM;
            w->n.lend_fails++;
            return;
        }
        w->n.lends++;
        size_t bytes = (size_t)PG << order;
        CHECK(w, ((uintptr_t)p & (bytes - 1)) == 0, "lent block %p of order %u is not aligned",
              (void *)p, order);
        for (size_t j = 0; j < bytes; j++)
            CHECK(w, p[j] == 0, "lent block %p of order %u is not scrubbed (byte %zu)",
                  (void *)p, order, j);
        uint64_t fill = tt_next(&w->lrng);
        for (size_t j = 0; j < bytes / 8; j++)
            ((uint64_t *)p)[j] = fill + j;
        w->lent[w->nlent].p = p;
        w->lent[w->nlent].order = order;
        w->lent[w->nlent].fill = fill;
        w->nlent++;
    } else if (w->nlent > 0) {
        check_lent(w);
        int k = (int)tt_below(&w->lrng, (uint64_t)w->nlent);
        struct logent *e = logop(w, OP_RETURN, 0, 0, 0, 0, 0, w->lent[k].order, 0);
        e->arg = (uint64_t)(uintptr_t)w->lent[k].p;
        int rc = tmem_return_pages(w->t, w->lent[k].p, w->lent[k].order + 1);
        CHECK(w, rc == -EINVAL, "return_pages with the wrong order: rc %d", rc);
        uint8_t *q = w->lent[k].p + PG;   /* not a lent block, unless the next one is */
        bool lent = false;
        for (int j = 0; j < w->nlent; j++)
            lent |= w->lent[j].p == q;
        if (!lent) {
            rc = tmem_return_pages(w->t, q, 0);
            CHECK(w, rc == -EINVAL, "return_pages of a block not lent: rc %d", rc);
        }
        rc = tmem_return_pages(w->t, w->lent[k].p, w->lent[k].order);
        e->rc = rc;
        CHECK(w, rc == 0, "return_pages: rc %d", rc);
        w->lent[k] = w->lent[--w->nlent];
    }
    tmem_stats_t st;
    get_stats(w, &st);
    CHECK(w, st.frames_lent == lent_frames(w), "stats: %llu frames lent, the host has %llu",
          (unsigned long long)st.frames_lent, (unsigned long long)lent_frames(w));
}

/* Calls that must be refused: unknown pool ids, NULL pages, bad flags. */
static void op_bad(struct world *w, struct cm *c)
{
    int s = lowest_free(c);
    uint32_t id = s < 0 || rnd(w, 4) == 0 ? TMEM_MAX_POOLS + (uint32_t)rnd(w, 100) : (uint32_t)s;
    struct logent *e = logop(w, OP_BAD, c->idx, (int)(id & 0xff), 0, 0, 0, 0, 0);
    tt_fill(w->exp, TT_TEXT, 7);
    int rc = tmem_put_page(c->c, id, oid_of(1), 1, w->exp);
    CHECK(w, rc == -ENODEV, "put to no pool %u: rc %d", id, rc);
    rc = tmem_get_page(c->c, id, oid_of(1), 1, w->got);
    CHECK(w, rc == -ENODEV, "get from no pool %u: rc %d", id, rc);
    rc = tmem_flush_page(c->c, id, oid_of(1), 1);
    CHECK(w, rc == -ENODEV, "flush in no pool %u: rc %d", id, rc);
    rc = tmem_flush_object(c->c, id, oid_of(1));
    CHECK(w, rc == -ENODEV, "flush_object in no pool %u: rc %d", id, rc);
    rc = tmem_destroy_pool(c->c, id);
    CHECK(w, rc == -ENODEV, "destroy of no pool %u: rc %d", id, rc);
    rc = tmem_pool_is_shared(c->c, id);
    CHECK(w, rc == -ENODEV, "is_shared of no pool %u: rc %d", id, rc);
    int u = pick_slot(w, c);
    if (u >= 0) {
        rc = tmem_put_page(c->c, (uint32_t)u, oid_of(1), 1, NULL);
        CHECK(w, rc == -EINVAL, "put of a NULL page: rc %d", rc);
        rc = tmem_get_page(c->c, (uint32_t)u, oid_of(1), 1, NULL);
        CHECK(w, rc == -EINVAL, "get into a NULL page: rc %d", rc);
    }
    static const uint32_t bad_flags[] = {
        TMEM_POOL_SHARED | TMEM_POOL_PERSIST,
        TMEM_POOL_SHARED | TMEM_POOL_KEEP_ON_GET,
        0x4u,
        1u << TMEM_POOL_PAGESIZE_SHIFT,
        2u << TMEM_POOL_VERSION_SHIFT,
        0x10000u,
    };
    uint32_t f = bad_flags[rnd(w, sizeof(bad_flags) / sizeof(bad_flags[0]))];
    e->arg = f;
    rc = tmem_new_pool(c->c, uuid_of(0), f);
    e->rc = rc;
    CHECK(w, rc == -EINVAL, "new_pool with bad flags 0x%x: rc %d", f, rc);
}

/* Fills every pool slot of c: the 17th pool must be refused. */
static void op_fill(struct world *w, struct cm *c)
{
    int made[TMEM_MAX_POOLS], nmade = 0;
    logop(w, OP_FILL, c->idx, 0, 0, 0, 0, 0, 0);
    while (lowest_free(c) >= 0) {
        int s = op_new_pool(w, c, 0);   /* private ephemeral */
        if (s < 0)
            break;                      /* no memory: fine */
        made[nmade++] = s;
    }
    if (lowest_free(c) < 0)
        op_new_pool(w, c, 0);           /* checks -ENOMEM: no slot */
    for (int k = 0; k < nmade; k++)
        op_destroy(w, c, made[k]);
}

/* ------------------------------------------------------------------------
 * Checkpoints
 * ---------------------------------------------------------------------- */
static void checkpoint(struct world *w)
{
    logop(w, OP_CHECK, 0, 0, 0, 0, 0, 0, 0);
    w->n.checks++;
#if !TT_DAEMON                  /* the daemon checks its engine when it stops */
    int bad = tmem_check(w->t);
    CHECK(w, bad == 0, "tmem_check() reported %d violations (see stderr)", bad);
#endif
    tmem_stats_t st;
    get_stats(w, &st);
    CHECK(w, st.max_bytes == w->max, "stats max_bytes %llu, set %llu",
          (unsigned long long)st.max_bytes, (unsigned long long)w->max);
    CHECK(w, st.bytes_held <= st.max_bytes + SLACK, "holds %llu bytes over the limit %llu",
          (unsigned long long)st.bytes_held, (unsigned long long)st.max_bytes);
    check_lent(w);
    CHECK(w, st.frames_lent == lent_frames(w), "stats: %llu frames lent, the host has %llu",
          (unsigned long long)st.frames_lent, (unsigned long long)lent_frames(w));
    CHECK(w, st.persistent_pages == w->npers, "stats: %llu persistent pages, the model %llu",
          (unsigned long long)st.persistent_pages, (unsigned long long)w->npers);
    CHECK(w, st.ephemeral_pages <= w->nmaybe,
          "stats: %llu ephemeral pages, but at most %llu can be there",
          (unsigned long long)st.ephemeral_pages, (unsigned long long)w->nmaybe);
    uint64_t open = 0, pools = 0;
    for (int k = 0; k < NCLI; k++) {
        struct cm *c = &w->cl[k];
        if (!c->open)
            continue;
        open++;
        for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
            pools += c->slot[s].used && c->slot[s].uuid < 0;
        tmem_client_info_t ci;
        int rc = th_client_info(w->host, c->id, &ci);
        CHECK(w, rc == 0, "client_info %u: rc %d", c->id, rc);
        CHECK(w, ci.persistent_pages == c->npers && ci.frozen == (int)c->frozen &&
                     ci.cap == c->cap && ci.nr_pools == (uint32_t)nused(c),
              "client %d info: persistent %llu frozen %d cap %llu pools %u; model %llu %d %llu %d",
              k, (unsigned long long)ci.persistent_pages, ci.frozen, (unsigned long long)ci.cap,
              ci.nr_pools, (unsigned long long)c->npers, c->frozen, (unsigned long long)c->cap,
              nused(c));
        /* non-destructive pools can be read back whole */
        for (int s = 0; s < (int)TMEM_MAX_POOLS; s++) {
            struct pm *p = c->slot[s].pm;
            if (!c->slot[s].used || !p->persistent || !p->keep)
                continue;
            for (int o = 0; o < NOBJ; o++) {
                for (int i = 0; i < NIDX; i++) {
                    struct hm *h = &p->h[o][i];
                    rc = tmem_get_page(c->c, (uint32_t)s, oid_of(o), index_of(i), w->got);
                    CHECK(w, rc == (h->st == H_PRESENT ? 0 : -ENOENT),
                          "checkpoint read of client %d keep pool %d obj %d idx %d (model %s): "
                          "rc %d", k, s, o, i, st_name(h->st), rc);
                    if (rc == 0)
                        check_data(w, h, "checkpoint read of a persistent keep pool");
                }
            }
        }
    }
    for (int u = 0; u < NUUID; u++)
        pools += w->sh[u].sharers > 0;
    CHECK(w, st.clients == open, "stats: %llu clients, the model %llu",
          (unsigned long long)st.clients, (unsigned long long)open);
    CHECK(w, st.pools == pools, "stats: %llu pools, the model %llu (a shared pool counts once)",
          (unsigned long long)st.pools, (unsigned long long)pools);
}

/* ------------------------------------------------------------------------
 * One phase
 * ---------------------------------------------------------------------- */
static void step(struct world *w)
{
    struct cm *c = &w->cl[rnd(w, NCLI)];
    if (!c->open) {
        op_open(w, c);
        return;
    }
    uint64_t r = rnd(w, 100000);
    if (r < 82000) {
        int s = pick_slot(w, c);
        if (s < 0) {
            op_new_pool(w, c, -1);
            return;
        }
        if (r < 42000)
            op_put(w, c, s);
        else if (r < 76000)
            op_get(w, c, s);
        else if (r < 81000)
            op_flush(w, c, s);
        else
            op_flush_object(w, c, s);
        return;
    }
    r -= 82000;
    if (r < 300) {              /* pools: keep a handful per client */
        int n = nused(c);
        bool create = n < 3 || (n < 6 && rnd(w, 2)) || rnd(w, 10) == 0;
        int s = pick_slot(w, c);
        if (create || s < 0)
            op_new_pool(w, c, -1);
        else
            op_destroy(w, c, s);
    } else if (r < 330) {
        op_close(w, c);
        if (rnd(w, 4))
            op_open(w, c);
    } else if (r < 430) {
        op_admin(w, c, OP_FREEZE);
    } else if (r < 1330) {
        op_admin(w, c, OP_THAW);
    } else if (r < 1830) {
        op_admin(w, c, OP_CAP);
    } else if (r < 2130) {
        op_admin(w, c, OP_COMPRESS);
    } else if (r < 2330) {
        op_admin(w, c, OP_WEIGHT);
    } else if (r < 2380) {
        op_setmax(w, 0);
    } else if (r < 2390) {
        op_evict_all(w);
    } else if (r < 2490) {
        op_relinquish(w);
    } else if (r < 2590) {
        op_bad(w, c);
    } else if (r < 2595) {
        op_fill(w, c);
    } else if (r < 2695) {
        op_lend(w);
    } else if (r < 2700) {
        op_squeeze(w);
    } else {
        int s = pick_slot(w, c);    /* the rest: more puts */
        if (s >= 0)
            op_put(w, c, s);
    }
}

static void run_phase(int ph)
{
    const struct phase_cfg *cfg = &phases[ph];
    struct world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    g_w = w;
    w->cfg = cfg;
    w->phase = ph;
    w->nops = g_nops / NPHASES + (ph == 0 ? g_nops % NPHASES : 0);
    tt_seed(&w->rng, g_seed + 0x9e3779b97f4a7c15ull * (uint64_t)(ph + 1));
    tt_seed(&w->lrng, ~g_seed + 0x9e3779b97f4a7c15ull * (uint64_t)(ph + 1));
    for (int k = 0; k < NCLI; k++) {
        w->cl[k].idx = k;
        for (int s = 0; s < (int)TMEM_MAX_POOLS; s++)
            w->cl[k].slot[s].uuid = -1;
    }
    for (int u = 0; u < NUUID; u++)
        w->sh[u].pm.shared = true;

    tmem_config_t tc;
    tmem_config_init(&tc);
    tc.max_bytes = cfg->max;
    tc.compress = cfg->codec;
    tc.dedup = cfg->dedup;
    tc.dedup_across_clients = cfg->across;
    tc.shared_auth_required = cfg->auth_required;
    tc.default_cap = cfg->default_cap;
    tc.compress_max = cfg->compress_max;
    w->host = th_open_cfg(&tc);
    w->t = th_engine(w->host);
#if !TT_DAEMON
    /* replayable bucket layout (a testing hook: the daemon has its own key) */
    tmem__set_hash_key(w->t, g_seed ^ 0x6b6579);
#endif
    w->base_max = w->max = cfg->max;

    /* what a closed client's tombstone costs, for the leak check at the end */
    tmem_stats_t st;
    get_stats(w, &st);
    w->meta0 = st.meta_bytes;
    tmem_client_t *probe = th_client(w->host, "probe");
    w->last_id = tmem_client_id(probe);
    th_client_close(w->host, probe);
    get_stats(w, &st);
    w->tomb_bytes = st.meta_bytes - w->meta0;
#if TT_DAEMON
    /* the daemon releases a client that leaves: nothing is left of it */
    CHECK(w, st.meta_bytes == w->meta0 && st.clients == 0,
          "after a client left the daemon: %llu bytes of metadata (%llu before), %llu clients",
          (unsigned long long)st.meta_bytes, (unsigned long long)w->meta0,
          (unsigned long long)st.clients);
    w->ntomb = 0;
#else
    w->ntomb = 1;
#endif

    for (int k = 0; k < NCLI; k++) {
        op_open(w, &w->cl[k]);
        CHECK(w, w->cl[k].open, "client_open failed in an empty engine");
        op_new_pool(w, &w->cl[k], 0);    /* ephemeral */
        op_new_pool(w, &w->cl[k], 30);   /* persistent */
        op_new_pool(w, &w->cl[k], 55);   /* persistent, keep on get */
        op_new_pool(w, &w->cl[k], 60);   /* shared, uuid random */
    }

    for (w->op = 1; w->op <= w->nops; w->op++) {
        step(w);
        if (w->op == w->nops / 2) {
            /* before op_squeeze: in-process it leaves the limit held by free
             * persistent frames, which ephemeral puts cannot take (-ENOMEM) */
            op_share(w);
            op_squeeze(w);
        }
        if (w->op % CHECK_EVERY == 0) {
            op_share(w);
            checkpoint(w);
        }
    }
    checkpoint(w);
    digest_done(w);

    get_stats(w, &st);
    printf("phase %d digests: operations %016llx results %016llx\n", ph,
           (unsigned long long)w->sdigest, (unsigned long long)w->rdigest);
    printf("phase %d %-22s %llu ops: puts %llu ok %llu (-ENOMEM %llu -ENOSPC %llu -EDQUOT %llu "
           "-EFROZEN %llu)\n"
           "   gets %llu hits %llu (ephemeral %llu, across clients %llu: probes hit %llu of %llu, "
           "known-absent misses %llu)"
           " flushes %llu flush_objects %llu (%llu pages)\n"
           "   pools made %llu refused %llu, closes %llu, open refused %llu, set_max %llu "
           "(-ENOMEM %llu), fills to the limit %llu (-ENOMEM %llu), evict-all %llu, "
           "lends %llu (failed %llu), checks %llu\n"
           "   engine: evictions %llu dedup hits %llu compressed %llu same-filled %llu "
           "dup replaced %llu dup flushed %llu alloc failed %llu\n",
           ph, cfg->name, (unsigned long long)w->nops, (unsigned long long)w->n.puts,
           (unsigned long long)w->n.puts_ok, (unsigned long long)w->n.enomem,
           (unsigned long long)w->n.enospc, (unsigned long long)w->n.edquot,
           (unsigned long long)w->n.efrozen, (unsigned long long)w->n.gets,
           (unsigned long long)w->n.hits, (unsigned long long)w->n.eph_hits,
           (unsigned long long)w->n.cross_hits, (unsigned long long)w->n.share_hits,
           (unsigned long long)w->n.share_probes, (unsigned long long)w->n.absent_misses,
           (unsigned long long)w->n.flushes, (unsigned long long)w->n.fobjs,
           (unsigned long long)w->n.fobj_pages, (unsigned long long)w->n.pools_made,
           (unsigned long long)w->n.pool_nomem, (unsigned long long)w->n.closes,
           (unsigned long long)w->n.open_nomem, (unsigned long long)w->n.setmax,
           (unsigned long long)w->n.setmax_nomem, (unsigned long long)w->n.fills,
           (unsigned long long)w->n.fill_nomem, (unsigned long long)w->n.evict_all,
           (unsigned long long)w->n.lends, (unsigned long long)w->n.lend_fails,
           (unsigned long long)w->n.checks, (unsigned long long)st.evictions,
           (unsigned long long)st.dedup_hits, (unsigned long long)st.pages_compressed,
           (unsigned long long)st.pages_same_filled, (unsigned long long)st.dup_puts_replaced,
           (unsigned long long)st.dup_puts_flushed, (unsigned long long)st.alloc_failed);
    fflush(stdout);

    /* The mix did what it is for (only meaningful on long runs). */
    if (w->nops >= COVER_OPS) {
        CHECK(w, w->n.eph_hits > 0 && w->n.cross_hits > 0 && w->n.absent_misses > 0,
              "coverage: ephemeral hits %llu, cross-client hits %llu, known-absent misses %llu",
              (unsigned long long)w->n.eph_hits, (unsigned long long)w->n.cross_hits,
              (unsigned long long)w->n.absent_misses);
        CHECK(w, st.evictions > 0 && w->n.enomem > 0 && (TT_DAEMON || w->n.setmax_nomem > 0) &&
                     w->n.fill_nomem > 0 && w->n.edquot > 0 && w->n.efrozen > 0,
              "coverage: evictions %llu, -ENOMEM %llu (set_max_bytes %llu, filling %llu), "
              "-EDQUOT %llu, -EFROZEN %llu",
              (unsigned long long)st.evictions, (unsigned long long)w->n.enomem,
              (unsigned long long)w->n.setmax_nomem, (unsigned long long)w->n.fill_nomem,
              (unsigned long long)w->n.edquot, (unsigned long long)w->n.efrozen);
        CHECK(w, !cfg->dedup || st.dedup_hits > 0, "coverage: no dedup hits");
    }

    /* Give back some lent frames; tmem_close() frees the others. */
    check_lent(w);
    while (!TT_DAEMON && w->nlent > MAXLENT / 2) {
        w->nlent--;
        int rc = tmem_return_pages(w->t, w->lent[w->nlent].p, w->lent[w->nlent].order);
        CHECK(w, rc == 0, "return_pages at the end: rc %d", rc);
    }

    /* Close everything: nothing may be left but the tombstones. */
    for (int k = 0; k < NCLI; k++)
        if (w->cl[k].open)
            op_close(w, &w->cl[k]);
    get_stats(w, &st);
    CHECK(w, st.ephemeral_pages == 0 && st.persistent_pages == 0 && st.pools == 0 &&
                 st.objects == 0 && st.frames_whole == 0 && st.frames_zalloc == 0 &&
                 st.bodies == 0 && st.clients == 0,
          "after closing every client: ephemeral %llu persistent %llu pools %llu objects %llu "
          "whole frames %llu zalloc frames %llu bodies %llu clients %llu",
          (unsigned long long)st.ephemeral_pages, (unsigned long long)st.persistent_pages,
          (unsigned long long)st.pools, (unsigned long long)st.objects,
          (unsigned long long)st.frames_whole, (unsigned long long)st.frames_zalloc,
          (unsigned long long)st.bodies, (unsigned long long)st.clients);
    if (!cfg->across)   /* the global stores keep their dedup tables */
        /* (through the daemon no tombstone is left: exactly meta0) */
        /* glibc may hand a tombstone up to 31 bytes more than its minimum
         * (it does not split off a remainder smaller than its minimum chunk),
         * and the probe that measured one may itself have got more */
        CHECK(w, st.meta_bytes + w->ntomb * 31 >= w->meta0 + w->ntomb * w->tomb_bytes &&
                     st.meta_bytes <= w->meta0 + w->ntomb * (w->tomb_bytes + 31),
              "after closing every client: %llu bytes of metadata, %llu tombstones explain %llu",
              (unsigned long long)st.meta_bytes, (unsigned long long)w->ntomb,
              (unsigned long long)(w->meta0 + w->ntomb * w->tomb_bytes));
    /* in-process tmem_check() == 0; through the daemon its exit status,
     * which is 1 if its engine failed tmem_check() when it stopped */
    tt_host *host = w->host;
    w->host = NULL;
    w->t = NULL;
    th_close(host);
    g_w = NULL;
    free(w);
}

static int teardown(void **state)
{
    (void)state;
    if (g_w) {                  /* after a failure: free what is left */
        th_discard(g_w->host);
        free(g_w);
        g_w = NULL;
    }
    return 0;
}

static void test_phase0(void **state) { (void)state; run_phase(0); }
static void test_phase1(void **state) { (void)state; run_phase(1); }
static void test_phase2(void **state) { (void)state; run_phase(2); }
static void test_phase3(void **state) { (void)state; run_phase(3); }

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "-n"))
            g_nops = strtoull(argv[i + 1], NULL, 0);
        if (!strcmp(argv[i], "--trace")) {
            g_trace = fopen(argv[i + 1], "w");
            if (!g_trace) {
                perror(argv[i + 1]);
                return 2;
            }
        }
    }
    g_seed = tt_seed_from_args(argc, argv, PROG);
    printf(PROG ": %llu operations in %d phases\n", (unsigned long long)g_nops, NPHASES);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_phase0, teardown),
        cmocka_unit_test_teardown(test_phase1, teardown),
        cmocka_unit_test_teardown(test_phase2, teardown),
        cmocka_unit_test_teardown(test_phase3, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    if (g_trace)
        fclose(g_trace);
    return rc;
}
