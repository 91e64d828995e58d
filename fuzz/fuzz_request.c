/* SPDX-License-Identifier: MIT */
/*
 * fuzz_request.c - fuzzes tmd_serve_request() (src/daemon/worker.c), the
 * decoder and dispatcher of a client's window slot, with a real engine
 * behind it.  The window is hostile input (src/proto/wire.h): any slot
 * contents, any page, any state.
 *
 * Input (docs/fuzzing.md has the table):
 *
 *   byte 0     setup: bit 0 engine 1 (dedup across clients, zstd) instead
 *              of engine 0 (defaults); bits 1-2 client A's codec (0 keep,
 *              1 none, 2 lz4, 3 zstd); bit 3 cap client A at 16 persistent
 *              pages; bit 4 freeze client A; bit 5 freeze client B; bit 6
 *              a byte N follows: once the clients and pools exist, the Nth
 *              internal allocation fails (bit 7: and every later one too)
 *   records    until the input ends, each:
 *                ctl    bits 0-1 page mode (0 seed, 1 pseudo-random,
 *                       2 raw, 3 keep the page as the last call left it);
 *                       bit 2 keep the slot's state as given (else POSTED);
 *                       bit 3 client B serves it (else client A);
 *                       bit 4 a count byte follows: the request is served
 *                       count+1 times, index + i each time (and a new
 *                       pseudo-random page each time in mode 1);
 *                       bit 5 the host evicts 32 pages after each call;
 *                       bit 6 a noise byte N follows the page: the first
 *                       16 * N bytes of the page become pseudo-random (new
 *                       for each call), so that compressed sizes vary
 *                count  (bit 4 only)
 *                slot   64 bytes: struct tmw_slot as the client wrote it
 *                page   mode 0: a length byte L and L bytes repeated over
 *                       the page (L = 0: a zero page; L = 1 or 8: same
 *                       filled; small L: compressible); mode 1: an 8-byte
 *                       seed; mode 2: 4096 bytes; mode 3: nothing
 *                noise  (bit 6 only)
 *              A field cut short by the end of the input reads as zeros.
 *
 * Each input gets two fresh clients (A and B, both authorised for the
 * shared uuids U1 and U2) with pools A: 0 ephemeral, 1 persistent,
 * 2 shared U1, 3 ephemeral keep-on-get; B: 0 shared U1, 1 persistent; both
 * are released at the end, so that nothing outlives the input.
 *
 * What is checked after each call: a slot not POSTED is left alone (slot,
 * page, counters); a POSTED one is DONE with only state and result written,
 * the result is one tmem.h documents for that operation, the page changed
 * only on a get hit; and a model of the pools catches semantic breakage:
 * unknown pool ids give -ENODEV, known ones never do, new pools take the
 * lowest free id and are shared exactly when authorised, a get hit returns
 * what was put, a flushed (or taken) page never comes back, a persistent
 * page is never lost.  After each input: the engine holds nothing, and
 * tmem_check() is clean (every TMEM_FUZZ_CHECK_EVERY inputs, default
 * 1000; every input in replay mode).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/testing.h"
#include "daemon/daemon.h"
#define FUZZ_NAME "fuzz_request"
#include "fuzz.h"

#define ENGINE_BYTES  (1u << 20)    /* small: eviction and refusals are reachable */
#define MAX_CALLS     1024u         /* per input: bounds the time of one input */
#define EVICT_PAGES   32u
#define CAP_PAGES     16u

enum { PAGE_SEED, PAGE_PRNG, PAGE_RAW, PAGE_KEEP };
#define R_KEEP_STATE 0x04u
#define R_CLIENT_B   0x08u
#define R_REPEAT     0x10u
#define R_EVICT      0x20u
#define R_NOISE      0x40u

#define S_ENGINE1    0x01u
#define S_CAP_A      0x08u
#define S_FREEZE_A   0x10u
#define S_FREEZE_B   0x20u
#define S_FAULT      0x40u
#define S_FAULT_ALL  0x80u
#define HASH_KEY     0x746d656d66757a7aull  /* fixed: replays grow tables alike */

/* The harness's own loops (hashing, model lookups, page filling) give the
 * fuzzer no useful signal and cost most of its time when instrumented. */
#if defined(__clang__)
#define NO_COV __attribute__((no_sanitize("coverage")))
#else
#define NO_COV
#endif

static const tmem_uuid_t U1 = { 0x1111111111111111ull, 0x2222222222222222ull };
static const tmem_uuid_t U2 = { 0x3333333333333333ull, 0x4444444444444444ull };
static const tmem_uuid_t U0 = { 0, 0 };

static tmem_t *engines[2];
static struct tmd_worker_stats wst;
static uint64_t inputs, check_every = 1000;
static int trace;                   /* TMEM_FUZZ_TRACE=1: each call on stderr */
static uint8_t *page;               /* malloc'ed: ASan sees a read or write past it */
static struct tmw_slot *slot;

/* ---- the state of one input ---------------------------------------------- */
#define NCL 2
static tmem_t *t;
static tmem_client_t *cl[NCL];
static bool frozen[NCL], capped[NCL];

/* the model's pools: a pool lives in slots of one (private) or more
 * (shared) clients; its index is its identity within the input */
#define MAXPOOLS 512
enum { SLOT_EMPTY = -1, SLOT_UNKNOWN = -2 };    /* unknown: the model ran out of room */
struct mpool { bool shared, pers, keep; tmem_uuid_t uuid; unsigned members; };
static struct mpool mp[MAXPOOLS];
static unsigned nmp;
static int slots[NCL][TMEM_MAX_POOLS];

/* the model's pages: (pool, oid, index) -> present with this hash, or known
 * absent; a handle not in the table is unknown and not checked */
#define NENT 4096u
struct mkey { uint32_t pool, index; tmem_oid_t oid; };
struct ent { uint32_t used; bool present; uint64_t hash; struct mkey k; };  /* used: 0, 1 live, 2 gone */
static struct ent ents[NENT];
static unsigned nent_used;

static bool uuid_eq(tmem_uuid_t a, tmem_uuid_t b) { return a.lo == b.lo && a.hi == b.hi; }
static bool authorised(tmem_uuid_t u) { return uuid_eq(u, U1) || uuid_eq(u, U2); }

NO_COV static struct ent *ent_find(struct mkey *k, bool insert)
{
    uint64_t h = XXH3_64bits(k, sizeof(*k));
    struct ent *tomb = NULL;
    for (unsigned i = 0; i < NENT; i++) {
        struct ent *e = &ents[(h + i) & (NENT - 1)];
        if (e->used == 0) {
            if (!insert || nent_used >= NENT * 3 / 4)
                return NULL;
            if (!tomb) {
                nent_used++;
                tomb = e;
            }
            tomb->used = 1;
            tomb->k = *k;
            return tomb;
        }
        if (e->used == 2) {
            if (!tomb)
                tomb = e;
        } else if (memcmp(&e->k, k, sizeof(*k)) == 0) {
            return e;
        }
    }
    return NULL;
}

static struct mkey key(unsigned pool, tmem_oid_t oid, uint32_t index)
{
    struct mkey k;
    memset(&k, 0, sizeof(k));
    k.pool = pool;
    k.index = index;
    k.oid = oid;
    return k;
}

static void ent_set(unsigned pool, tmem_oid_t oid, uint32_t index, bool present, uint64_t hash)
{
    struct mkey k = key(pool, oid, index);
    struct ent *e = ent_find(&k, true);
    if (e) {
        e->present = present;
        e->hash = hash;
    }
}

static void ent_forget(unsigned pool, tmem_oid_t oid, uint32_t index)
{
    struct mkey k = key(pool, oid, index);
    struct ent *e = ent_find(&k, false);
    if (e)
        e->used = 2;
}

/* Marks every known page of (pool, oid) absent; returns how many were present. */
NO_COV static unsigned ents_flush_object(unsigned pool, tmem_oid_t oid)
{
    unsigned n = 0;
    for (unsigned i = 0; i < NENT; i++) {
        struct ent *e = &ents[i];
        if (e->used == 1 && e->k.pool == pool && !memcmp(&e->k.oid, &oid, sizeof(oid))) {
            n += e->present;
            e->present = false;
        }
    }
    return n;
}

/* ---- the model of pools -------------------------------------------------- */
static bool flags_valid(uint32_t f)
{
    if (f & TMEM_POOL_RESERVED_BITS)
        return false;
    if ((f >> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK)
        return false;
    if (((f >> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK) > TMEM_SPEC_VERSION)
        return false;
    if ((f & TMEM_POOL_SHARED) && (f & (TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET)))
        return false;
    return true;
}

/* new_pool(uuid, flags) by client ci returned rc: check it and follow it. */
static void model_new_pool(int ci, tmem_uuid_t u, uint32_t flags, int rc)
{
    tmem_client_t *c = cl[ci];
    if (!flags_valid(flags)) {
        CHECK(rc == -EINVAL, "new_pool(flags %#x) = %d, want -EINVAL", flags, rc);
        return;
    }
    CHECK(rc == -ENOMEM || (rc >= 0 && rc < (int)TMEM_MAX_POOLS),
          "new_pool(flags %#x) = %d", flags, rc);
    bool want_shared = (flags & TMEM_POOL_SHARED) && authorised(u);
    int already = -1;           /* the client's slot of that shared pool */
    for (unsigned i = 0; want_shared && i < TMEM_MAX_POOLS; i++)
        if (slots[ci][i] >= 0 && mp[slots[ci][i]].shared && uuid_eq(mp[slots[ci][i]].uuid, u))
            already = (int)i;
    if (rc < 0) {
        CHECK(already < 0, "new_pool of a shared pool the client is in = %d, want %d", rc,
              already);
        return;
    }
    int is = tmem_pool_is_shared(c, (uint32_t)rc);
    CHECK(is == (want_shared ? 1 : 0),
          "pool_is_shared(new pool %d, flags %#x, uuid %llx:%llx) = %d", rc, flags,
          (unsigned long long)u.lo, (unsigned long long)u.hi, is);
    if (already >= 0) {
        CHECK(rc == already, "joining a shared pool again gave slot %d, not its slot %d", rc,
              already);
        return;
    }
    CHECK(slots[ci][rc] == SLOT_EMPTY || slots[ci][rc] == SLOT_UNKNOWN,
          "new_pool gave slot %d, which holds model pool %d", rc, slots[ci][rc]);
    for (int i = 0; i < rc; i++)
        CHECK(slots[ci][i] != SLOT_EMPTY, "new_pool gave slot %d while %d is free", rc, i);
    int found = -1;
    for (unsigned i = 0; want_shared && i < nmp; i++)
        if (mp[i].shared && mp[i].members && uuid_eq(mp[i].uuid, u))
            found = (int)i;
    if (found >= 0) {
        mp[found].members++;
        slots[ci][rc] = found;
        return;
    }
    if (nmp == MAXPOOLS) {
        slots[ci][rc] = SLOT_UNKNOWN;
        return;
    }
    mp[nmp] = (struct mpool){ .shared = want_shared, .pers = (flags & TMEM_POOL_PERSIST) != 0,
                              .keep = (flags & TMEM_POOL_KEEP_ON_GET) != 0, .uuid = u,
                              .members = 1 };
    slots[ci][rc] = (int)nmp++;
}

static bool in_set(int rc, const int *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (rc == set[i])
            return true;
    return false;
}
#define IN_SET(rc, ...) \
    in_set((rc), (const int[]){ __VA_ARGS__ }, sizeof((int[]){ __VA_ARGS__ }) / sizeof(int))

/* ---- one call -------------------------------------------------------------- */
static const char *op_name(uint32_t op)
{
    static const char *names[] = { "?", "put", "get", "flush_page", "flush_object",
                                   "new_pool", "destroy_pool", "pool_is_shared" };
    return op < TMW_OP_MAX_ ? names[op] : "bad op";
}

static void serve(int ci, const struct tmw_slot *req, bool keep_state)
{
    memcpy(slot, req, sizeof(*slot));
    if (!keep_state)
        atomic_store_explicit(&slot->state, TMW_POSTED, memory_order_relaxed);
    uint8_t before[sizeof(struct tmw_slot)];
    memcpy(before, slot, sizeof(before));
    uint64_t ph = XXH3_64bits(page, TMEM_PAGE_SIZE);
    uint64_t req0 = wst.requests, bad0 = wst.bad_requests;
    bool posted = atomic_load_explicit(&slot->state, memory_order_relaxed) == TMW_POSTED;

    int served = tmd_serve_request(cl[ci], slot, page, &wst);

    if (!posted) {
        CHECK(served == 0, "a slot in state %u was served", (unsigned)req->state);
        CHECK(!memcmp(before, slot, sizeof(before)), "a slot not posted was written");
        CHECK(XXH3_64bits(page, TMEM_PAGE_SIZE) == ph, "the page of a slot not posted changed");
        CHECK(wst.requests == req0 && wst.bad_requests == bad0, "counters moved");
        return;
    }
    CHECK(served == 1, "a posted slot was not served (%d)", served);
    CHECK(atomic_load(&slot->state) == TMW_DONE, "served slot in state %u",
          atomic_load(&slot->state));
    size_t roff = offsetof(struct tmw_slot, result);
    CHECK(!memcmp(before + 4, (uint8_t *)slot + 4, roff - 4) &&
          !memcmp(before + roff + 4, (uint8_t *)slot + roff + 4, sizeof(before) - roff - 4),
          "the daemon wrote a slot field other than state and result");
    CHECK(wst.requests == req0 + 1, "requests counter");

    uint32_t op = req->op, pid = req->pool_id, index = req->index;
    tmem_oid_t oid = { { req->oid[0], req->oid[1], req->oid[2] } };
    int rc = slot->result;
    uint64_t nh = XXH3_64bits(page, TMEM_PAGE_SIZE);
    if (trace)
        fprintf(stderr, "  %c %s pool %u oid %llx:%llx:%llx index %u arg %#x page %016llx = %d\n",
                'A' + ci, op_name(op), pid, (unsigned long long)oid.oid[0],
                (unsigned long long)oid.oid[1], (unsigned long long)oid.oid[2], index, req->arg,
                (unsigned long long)nh, rc);
    bool bad_op = op == 0 || op >= TMW_OP_MAX_;
    CHECK(wst.bad_requests == bad0 + bad_op, "bad_requests counter");
    CHECK(nh == ph || (op == TMW_OP_GET && rc == 0), "%s (result %d) changed the page",
          op_name(op), rc);

    int mi = pid < TMEM_MAX_POOLS ? slots[ci][pid] : SLOT_EMPTY;
    bool pool_op = !bad_op && op != TMW_OP_NEW_POOL;
    if (pool_op && mi == SLOT_EMPTY)
        CHECK(rc == -ENODEV, "%s on pool id %u, which the client does not have, = %d",
              op_name(op), pid, rc);
    if (pool_op && mi != SLOT_EMPTY)
        CHECK(rc != -ENODEV, "%s on pool %u, which the client has, = -ENODEV", op_name(op), pid);
    struct mpool *p = mi >= 0 ? &mp[mi] : NULL;

    switch (op) {
    case TMW_OP_PUT: {
        CHECK(IN_SET(rc, 0, -ENOMEM, -EDQUOT, -ENOSPC, -TMEM_EFROZEN, -ENODEV),
              "put = %d", rc);
        if (!p)
            break;
        CHECK(rc != -EDQUOT || (p->pers && capped[ci]), "put = -EDQUOT without a cap");
        CHECK(rc != -TMEM_EFROZEN || frozen[ci], "put = -TMEM_EFROZEN, client not frozen");
        struct mkey k = key((unsigned)mi, oid, index);
        struct ent *e = ent_find(&k, false);
        CHECK(rc != -ENOSPC || !e || e->present, "put = -ENOSPC, no copy to replace");
        if (rc == 0)
            ent_set((unsigned)mi, oid, index, true, ph);
        else if (rc == -ENOSPC)
            ent_set((unsigned)mi, oid, index, false, 0);
        else if (e && e->present)
            ent_forget((unsigned)mi, oid, index);
        break;
    }
    case TMW_OP_GET: {
        CHECK(IN_SET(rc, 0, -ENOENT, -ENODEV), "get = %d", rc);
        if (!p)
            break;
        struct mkey k = key((unsigned)mi, oid, index);
        struct ent *e = ent_find(&k, false);
        if (rc == 0) {
            CHECK(!e || e->present, "get hit a page that was flushed or taken");
            CHECK(!e || e->hash == nh, "get returned other data than was put");
            if (!p->shared && !p->keep)
                ent_set((unsigned)mi, oid, index, false, 0);
        } else if (rc == -ENOENT) {
            CHECK(!e || !e->present || !p->pers, "get missed a persistent page");
            ent_set((unsigned)mi, oid, index, false, 0);
        }
        break;
    }
    case TMW_OP_FLUSH_PAGE:
        CHECK(IN_SET(rc, 0, -ENODEV), "flush_page = %d", rc);
        if (p)
            ent_set((unsigned)mi, oid, index, false, 0);
        break;
    case TMW_OP_FLUSH_OBJECT:
        CHECK(rc >= 0 || rc == -ENODEV, "flush_object = %d", rc);
        if (p) {
            unsigned known = ents_flush_object((unsigned)mi, oid);
            CHECK(!p->pers || rc >= (int)known, "flush_object = %d, %u persistent pages known",
                  rc, known);
        }
        break;
    case TMW_OP_NEW_POOL: {
        tmem_uuid_t u = { req->oid[0], req->oid[1] };
        model_new_pool(ci, u, req->arg, rc);
        break;
    }
    case TMW_OP_DESTROY_POOL:
        CHECK(IN_SET(rc, 0, -ENODEV), "destroy_pool = %d", rc);
        if (rc == 0) {
            if (p)
                p->members--;
            slots[ci][pid] = SLOT_EMPTY;
        }
        break;
    case TMW_OP_POOL_IS_SHARED:
        CHECK(IN_SET(rc, 0, 1, -ENODEV), "pool_is_shared = %d", rc);
        CHECK(!p || rc == (int)p->shared, "pool_is_shared = %d, model says %d", rc,
              (int)p->shared);
        break;
    default:
        CHECK(rc == -EINVAL, "op %u = %d, want -EINVAL", op, rc);
        break;
    }
}

/* ---- input ------------------------------------------------------------------ */
struct in { const uint8_t *p; size_t n; };

static void take(struct in *in, void *out, size_t len)
{
    size_t k = len < in->n ? len : in->n;
    memcpy(out, in->p, k);
    memset((uint8_t *)out + k, 0, len - k);
    in->p += k;
    in->n -= k;
}

static uint8_t take8(struct in *in)
{
    uint8_t b;
    take(in, &b, 1);
    return b;
}

NO_COV static void fill_prng(uint64_t seed, size_t len)
{
    uint64_t x = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);      /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        memcpy(page + i, &z, 8);
    }
}

/* The page: len bytes of pat over and over (zeros for len 0). */
static void fill_pattern(const uint8_t *pat, size_t len)
{
    if (len == 0) {
        memset(page, 0, TMEM_PAGE_SIZE);
        return;
    }
    size_t have = len < TMEM_PAGE_SIZE ? len : TMEM_PAGE_SIZE;
    memcpy(page, pat, have);
    while (have < TMEM_PAGE_SIZE) {
        size_t k = have < TMEM_PAGE_SIZE - have ? have : TMEM_PAGE_SIZE - have;
        memcpy(page + have, page, k);
        have += k;
    }
}

static void open_clients(uint8_t setup)
{
    t = engines[setup & S_ENGINE1];
    memset(slots, 0xff, sizeof(slots));     /* SLOT_EMPTY */
    nmp = 0;
    if (nent_used) {
        memset(ents, 0, sizeof(ents));
        nent_used = 0;
    }
    static const char *names[NCL] = { "fuzz-a", "fuzz-b" };
    for (int i = 0; i < NCL; i++) {
        cl[i] = tmem_client_open(t, names[i]);
        CHECK(cl[i] != NULL, "tmem_client_open");
        uint32_t id = tmem_client_id(cl[i]);
        CHECK(tmem_admin_shared_auth(t, id, U1, 1) == 0, "shared_auth");
        CHECK(tmem_admin_shared_auth(t, id, U2, 1) == 0, "shared_auth");
        frozen[i] = (setup & (i ? S_FREEZE_B : S_FREEZE_A)) != 0;
        capped[i] = i == 0 && (setup & S_CAP_A);
    }
    unsigned codec = (setup >> 1) & 3;
    if (codec)
        CHECK(tmem_admin_set_compress(t, tmem_client_id(cl[0]), (int)codec - 1) == 0, "codec");
    if (capped[0])
        CHECK(tmem_admin_set_cap(t, tmem_client_id(cl[0]), CAP_PAGES) == 0, "cap");
    static const struct { int ci; const tmem_uuid_t *u; uint32_t flags; } pools[] = {
        { 0, &U0, 0 }, { 0, &U0, TMEM_POOL_PERSIST }, { 0, &U1, TMEM_POOL_SHARED },
        { 0, &U0, TMEM_POOL_KEEP_ON_GET }, { 1, &U1, TMEM_POOL_SHARED },
        { 1, &U0, TMEM_POOL_PERSIST },
    };
    for (size_t i = 0; i < sizeof(pools) / sizeof(pools[0]); i++) {
        int rc = tmem_new_pool(cl[pools[i].ci], *pools[i].u, pools[i].flags);
        CHECK(rc >= 0, "initial pool %zu: %d", i, rc);
        model_new_pool(pools[i].ci, *pools[i].u, pools[i].flags, rc);
    }
    /* frozen after the pools exist: new puts are refused, the rest works */
    for (int i = 0; i < NCL; i++)
        if (frozen[i])
            CHECK(tmem_admin_freeze(t, tmem_client_id(cl[i])) == 0, "freeze");
}

static void close_clients(bool full_check)
{
    if (full_check)
        CHECK(tmem_check(t) == 0, "tmem_check with the input's clients open");
    for (int i = 0; i < NCL; i++)
        tmem_client_release(cl[i]);
    tmem_stats_t s;
    CHECK(tmem_stats_get(t, &s) == 0, "stats");
    CHECK(s.clients == 0 && s.pools == 0 && s.objects == 0 && s.ephemeral_pages == 0 &&
          s.persistent_pages == 0 && s.bodies == 0 && s.zalloc_bytes_used == 0 &&
          s.frames_held == s.frames_free,
          "the engine still holds something after its clients were released: clients %llu "
          "pools %llu objects %llu pages %llu+%llu bodies %llu zalloc %llu frames used %llu",
          (unsigned long long)s.clients, (unsigned long long)s.pools,
          (unsigned long long)s.objects, (unsigned long long)s.ephemeral_pages,
          (unsigned long long)s.persistent_pages, (unsigned long long)s.bodies,
          (unsigned long long)s.zalloc_bytes_used,
          (unsigned long long)(s.frames_held - s.frames_free));
    if (full_check)
        CHECK(tmem_check(t) == 0, "tmem_check after the input's clients were released");
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv(TMEM_FUZZ_CHECK_ENV);
    if (e && atoi(e) > 0)
        check_every = (uint64_t)atoi(e);
    e = getenv("TMEM_FUZZ_TRACE");
    trace = e && *e && *e != '0';
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = ENGINE_BYTES;
    engines[0] = tmem_open(&cfg);
    cfg.dedup_across_clients = 1;
    cfg.compress = TMEM_COMPRESS_ZSTD;
    engines[1] = tmem_open(&cfg);
    for (int i = 0; i < 2; i++)
        if (engines[i])
            tmem__set_hash_key(engines[i], HASH_KEY);
    page = malloc(TMEM_PAGE_SIZE);
    slot = aligned_alloc(64, sizeof(*slot));
    if (!engines[0] || !engines[1] || !page || !slot) {
        perror("fuzz_request: setup");
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!page)
        LLVMFuzzerInitialize(NULL, NULL);
    struct in in = { data, size };
    inputs++;
    bool full_check = inputs == 1 || inputs % check_every == 0;
    uint8_t setup = take8(&in);
    open_clients(setup);
    if (setup & S_FAULT) {
        uint8_t nth = take8(&in);
        tmem__fault_inject(t, nth ? nth : 1, (setup & S_FAULT_ALL) != 0);
    }
    memset(page, 0, TMEM_PAGE_SIZE);
    unsigned calls = 0;
    while (in.n > 0 && calls < MAX_CALLS) {
        uint8_t ctl = take8(&in);
        unsigned count = ctl & R_REPEAT ? take8(&in) + 1u : 1u;
        struct tmw_slot req;
        take(&in, &req, sizeof(req));
        unsigned mode = ctl & 3u;
        uint64_t seed = 0;
        if (mode == PAGE_SEED) {
            uint8_t pat[255];
            unsigned len = take8(&in);
            take(&in, pat, len);
            fill_pattern(pat, len);
        } else if (mode == PAGE_PRNG) {
            take(&in, &seed, sizeof(seed));
            fill_prng(seed, TMEM_PAGE_SIZE);
        } else if (mode == PAGE_RAW) {
            take(&in, page, TMEM_PAGE_SIZE);
        }
        unsigned noise = ctl & R_NOISE ? take8(&in) * 16u : 0;
        int ci = (ctl & R_CLIENT_B) ? 1 : 0;
        for (unsigned i = 0; i < count && calls < MAX_CALLS; i++, calls++) {
            struct tmw_slot r;
            memcpy(&r, &req, sizeof(r));
            r.index = req.index + i;
            if (mode == PAGE_PRNG && i)
                fill_prng(seed + i, TMEM_PAGE_SIZE);
            if (noise)
                fill_prng(0x6e6f697365ull ^ ((uint64_t)noise << 32) ^ r.index, noise);
            serve(ci, &r, (ctl & R_KEEP_STATE) != 0);
            if (ctl & R_EVICT)
                tmem_evict_npages(t, EVICT_PAGES);
        }
    }
    tmem__fault_inject(t, 0, 0);
    close_clients(full_check);
    return 0;
}
