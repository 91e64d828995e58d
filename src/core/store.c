/* SPDX-License-Identifier: MIT */
/*
 * store.c - where page data goes: placement, compression, deduplication.
 *
 * tm_store_put turns a page into a tm_loc, cheapest form first:
 *
 *   1. same-filled (one 64-bit word repeated)  -> WORD, no memory at all;
 *   2. identical to data already in the store's dedup index (XXH3-64 hash,
 *      then a full compare)                    -> BODY, one more reference;
 *   3. compressed to <= compress_max bytes     -> FRAG in the store's zalloc heap;
 *   4. otherwise                               -> WHOLE frame ("compress poor").
 *
 * With dedup on, a page stored by 3 or 4 keeps its data in its own
 * descriptor and is entered in the dedup index when it is linked
 * (tm_dedup_index).  Only when an identical page arrives does the data move
 * into a body shared by both: most pages are never duplicated, and a body
 * per page cost a malloc, a free and a lock round trip per put and get.
 * Making the body needs the first page's bucket, which comes before the
 * shard lock in the lock order: it is only tried, and if busy the new page
 * is stored on its own.  Memory for 3 and 4 is allocated with eviction: if the heap or the
 * frame allocator has no room, one ephemeral page is evicted and the
 * allocation retried, a bounded number of times.  The caller holds no bucket
 * lock, so eviction can never wait on the caller (docs/internals.md).
 *
 * Dedup index: TM_DEDUP_SHARDS shards chosen by the hash's top bits, each a
 * mutex and an open-addressing table of (hash, holder) entries (types.h).
 *
 * Sparse dedup.  A lookup costs a hash of the page and two or three cache
 * misses in the index (find, then enter at put; remove at get): about 0.4
 * to 0.8 us per put+get on these machines, a quarter of an uncompressed
 * put+get, spent in vain on data that never repeats (encrypted, compressed
 * or random pages).  So a store whose lookups found nothing TM_DD_SPARSE_AFTER
 * times in a row goes sparse: only pages whose first 64 bytes fall in a
 * 1-in-2^TM_DD_SAMPLE_BITS sample are hashed, looked up and indexed; the
 * others are stored as they are.  Identical pages fall in the sample
 * together (the choice depends on their content only), so each pair of
 * duplicates is still caught with probability 1/16, and the first hit
 * switches the store back to full dedup.  The state is kept per thread
 * stripe, beside the store's counters, so that threads of one client share
 * no cache line for it; a stripe learns on its own when to go sparse (a new
 * thread's starts full), and a hit on any stripe makes them all full again.
 */
#include "internal.h"

#define TM_EVICT_TRIES 256

#define TM_FULL_TICKS (5000000u >> TM_TICK_SHIFT)   /* 5 ms: see store_full */

#define TM_DD_SPARSE_AFTER 4096u    /* lookups without a hit before going sparse */
#define TM_DD_SAMPLE_BITS  4u       /* sparse: 1 page in 16 is looked up */

struct tm_store *tm_store_new(tmem_t *t, bool persistent)
{
    struct tm_store *s = tm_meta_calloc_aligned(t, sizeof(*s), _Alignof(struct tm_store));
    if (!s)
        return NULL;
    s->persistent = persistent;
    tm_zheap_init(&s->heap, persistent ? TMEM_ARENA_PERSISTENT : TMEM_ARENA_EPHEMERAL);
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++)
        pthread_mutex_init(&s->shards[i].lock, NULL);
    return s;
}

void tm_store_free(tmem_t *t, struct tm_store *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++) {
        tm_assert(s->shards[i].count == 0);
        tm_meta_free(t, s->shards[i].slots);
        pthread_mutex_destroy(&s->shards[i].lock);
    }
    tm_zheap_fini(t, &s->heap);
    tm_meta_free(t, s);
}

static inline struct tm_dedup_shard *shard_of(struct tm_store *s, uint64_t hash)
{
    return &s->shards[hash >> 58];      /* top 6 bits: TM_DEDUP_SHARDS == 64 */
}

_Static_assert(TM_DEDUP_SHARDS == 64, "shard_of takes the top 6 bits of the hash");

/* Copies out the data of a WHOLE or FRAG loc (no body). */
static int raw_read(const struct tm_loc *loc, void *page)
{
    if (loc->kind == TM_LOC_WHOLE) {
        memcpy(page, loc->u.frame, TMEM_PAGE_SIZE);
        return 0;
    }
    tm_assert(loc->kind == TM_LOC_FRAG);
    const void *src = tm_zread(loc, tm_scratch(1));
    return tm_decompress(loc->codec, src, loc->size, page);
}

int tm_loc_read(struct tm_store *s, const struct tm_loc *loc, void *page)
{
    switch (loc->kind) {
    case TM_LOC_WORD:
        tm_fill_word(page, loc->u.word);
        return 0;
    case TM_LOC_BODY: {
        /* a body's fragment may be moved by compaction unless its shard is
         * held; a whole frame never moves */
        struct tm_body *b = loc->u.body;
        if (b->loc.kind == TM_LOC_WHOLE)
            return raw_read(&b->loc, page);
        struct tm_dedup_shard *sh = shard_of(s, b->hash);
        pthread_mutex_lock(&sh->lock);
        int rc = raw_read(&b->loc, page);
        pthread_mutex_unlock(&sh->lock);
        return rc;
    }
    case TM_LOC_WHOLE:
    case TM_LOC_FRAG:
        return raw_read(loc, page);
    default:
        return -EIO;
    }
}

pthread_mutex_t *tm_owner_trylock(struct tm_zheap *h, uintptr_t owner)
{
    struct tm_loc *loc = (struct tm_loc *)(owner & ~TM_OWNER_BODY);
    pthread_mutex_t *lk;
    if (owner & TM_OWNER_BODY) {
        struct tm_body *b = (struct tm_body *)((char *)loc - offsetof(struct tm_body, loc));
        struct tm_store *s = (struct tm_store *)((char *)h - offsetof(struct tm_store, heap));
        lk = &shard_of(s, b->hash)->lock;
    } else {
        /* the pgd lives until its fragment is freed, which needs the class
         * lock our caller holds; its object and pool outlive it */
        struct tm_pgd *pgd = (struct tm_pgd *)((char *)loc - offsetof(struct tm_pgd, loc));
        lk = &tm_pool_bucket(pgd->obj->pool, pgd->obj->hash)->lock;
    }
    return pthread_mutex_trylock(lk) == 0 ? lk : NULL;
}

static void raw_free(tmem_t *t, struct tm_store *s, const struct tm_loc *loc)
{
    if (loc->kind == TM_LOC_WHOLE) {
        tm_frame_put(t, loc->u.frame, TM_FRAME_WHOLE);
        tm_store_count_add(s, TM_SC_WHOLE, -1);
    } else if (loc->kind == TM_LOC_FRAG) {
        tm_zfree(t, &s->heap, loc);
    }
}

/* Does the direct data at raw (WHOLE or FRAG) equal page?  The caller
 * keeps raw from moving (the holder's bucket or shard lock). */
static bool data_equals(const struct tm_loc *raw, const void *page)
{
    if (raw->kind == TM_LOC_WHOLE)
        return memcmp(raw->u.frame, page, TMEM_PAGE_SIZE) == 0;
    uint8_t *tmp = tm_scratch(0);
    if (raw_read(raw, tmp) != 0)
        return false;
    return memcmp(tmp, page, TMEM_PAGE_SIZE) == 0;
}

static inline uint32_t dd_home(const struct tm_dedup_shard *sh, uint64_t hash)
{
    return (uint32_t)hash & (sh->cap - 1);  /* low bits; the shard took the top ones */
}

static void dd_place(struct tm_dedup_shard *sh, struct tm_dedup_entry e)
{
    uint32_t i = dd_home(sh, e.hash);
    while (sh->slots[i].ref)
        i = (i + 1) & (sh->cap - 1);
    sh->slots[i] = e;
}

/* Enters (hash, ref); shard lock held.  false if the table could not grow
 * (no eviction here: the caller may hold a bucket lock). */
static bool dd_insert_locked(tmem_t *t, struct tm_dedup_shard *sh, uint64_t hash, uintptr_t ref)
{
    if ((uint64_t)(sh->count + 1) * 4 > (uint64_t)sh->cap * 3) {
        uint32_t ncap = sh->cap ? sh->cap * 2 : 16;
        struct tm_dedup_entry *ns = tm_meta_calloc(t, ncap * sizeof(*ns), false);
        if (!ns)
            return false;
        struct tm_dedup_shard old = *sh;
        /* atomic stores: tm_dedup_prefetch reads both without the lock */
        __atomic_store_n(&sh->slots, ns, __ATOMIC_RELAXED);
        __atomic_store_n(&sh->cap, ncap, __ATOMIC_RELAXED);
        for (uint32_t i = 0; i < old.cap; i++)
            if (old.slots[i].ref)
                dd_place(sh, old.slots[i]);
        tm_meta_free(t, old.slots);
    }
    dd_place(sh, (struct tm_dedup_entry){ hash, ref });
    sh->count++;
    return true;
}

/* Removes the entry of ref, entered under hash; shard lock held. */
static void dd_remove_locked(struct tm_dedup_shard *sh, uint64_t hash, uintptr_t ref)
{
    uint32_t mask = sh->cap - 1, i = dd_home(sh, hash);
    while (sh->slots[i].ref != ref) {
        tm_assert(sh->slots[i].ref != 0);
        i = (i + 1) & mask;
    }
    uint32_t hole = i;      /* backward shift, as in table.c */
    for (uint32_t j = (i + 1) & mask; sh->slots[j].ref; j = (j + 1) & mask) {
        uint32_t hj = dd_home(sh, sh->slots[j].hash);
        bool stays = (hole <= j) ? (hole < hj && hj <= j) : (hole < hj || hj <= j);
        if (!stays) {
            sh->slots[hole] = sh->slots[j];
            hole = j;
        }
    }
    sh->slots[hole] = (struct tm_dedup_entry){ 0, 0 };
    sh->count--;
}

/* The page held alone by pgd (entry e) equals page: move its data into a
 * body shared with the caller's new page.  Shard lock held; pgd's bucket is
 * only tried.  Returns the body (2 references) or NULL. */
static struct tm_body *share_pgd(tmem_t *t, struct tm_store *s, struct tm_dedup_shard *sh,
                                 struct tm_dedup_entry *e, const void *page)
{
    struct tm_pgd *pgd = (struct tm_pgd *)e->ref;
    /* pgd is linked while indexed: its object and pool are alive */
    struct tm_bucket *b = tm_pool_bucket(pgd->obj->pool, pgd->obj->hash);
    if (pthread_mutex_trylock(&b->lock) != 0)
        return NULL;
    struct tm_body *body = NULL;
    if (data_equals(&pgd->loc, page) && (body = tm_meta_alloc(t, sizeof(*body), false))) {
        body->hash = e->hash;
        body->refs = 2;
        body->loc = pgd->loc;
        if (body->loc.kind == TM_LOC_FRAG)
            tm_zset_owner(&s->heap, &body->loc, (uintptr_t)&body->loc | TM_OWNER_BODY);
        pgd->loc = (struct tm_loc){ .kind = TM_LOC_BODY, .u.body = body };
        pgd->hash = 0;
        e->ref = (uintptr_t)body | TM_DEDUP_BODY;
        sh->bodies++;
        tm_store_count_add(s, TM_SC_BODY_REFS, 1);  /* pgd's; the caller adds its own */
    }
    pthread_mutex_unlock(&b->lock);
    return body;
}

/* Finds data identical to page and returns a body holding it with a
 * reference for the caller, or NULL. */
static struct tm_body *dedup_find(tmem_t *t, struct tm_store *s, uint64_t hash, const void *page)
{
    struct tm_dedup_shard *sh = shard_of(s, hash);
    struct tm_body *found = NULL;
    pthread_mutex_lock(&sh->lock);
    for (uint32_t i = sh->cap ? dd_home(sh, hash) : 0; sh->cap && sh->slots[i].ref && !found;
         i = (i + 1) & (sh->cap - 1)) {
        struct tm_dedup_entry *e = &sh->slots[i];
        if (e->hash != hash)
            continue;
        if (e->ref & TM_DEDUP_BODY) {
            struct tm_body *b = (struct tm_body *)(e->ref & ~TM_DEDUP_BODY);
            if (data_equals(&b->loc, page)) {
                b->refs++;
                found = b;
            }
        } else {
            found = share_pgd(t, s, sh, e, page);
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

void tm_dedup_prefetch(struct tm_store *s, uint64_t hash)
{
    /* slots and cap may change under us (growth): a stale pair costs at
     * most a useless prefetch, which never faults, and neither array is read */
    struct tm_dedup_shard *sh = shard_of(s, hash);
    struct tm_dedup_entry *slots = __atomic_load_n(&sh->slots, __ATOMIC_RELAXED);
    uint32_t cap = __atomic_load_n(&sh->cap, __ATOMIC_RELAXED);
    if (slots && cap)
        __builtin_prefetch(&slots[(uint32_t)hash & (cap - 1)], 1);
}

void tm_dedup_index(tmem_t *t, struct tm_store *s, struct tm_pgd *pgd, uint64_t hash)
{
    if (!hash)
        return;
    struct tm_dedup_shard *sh = shard_of(s, hash);
    pthread_mutex_lock(&sh->lock);
    if (dd_insert_locked(t, sh, hash, (uintptr_t)pgd))
        pgd->hash = hash;       /* else: stored, just not found by later duplicates */
    pthread_mutex_unlock(&sh->lock);
}

void tm_dedup_unindex(struct tm_store *s, struct tm_pgd *pgd)
{
    if (!pgd->hash)
        return;
    struct tm_dedup_shard *sh = shard_of(s, pgd->hash);
    pthread_mutex_lock(&sh->lock);
    dd_remove_locked(sh, pgd->hash, (uintptr_t)pgd);
    pgd->hash = 0;
    pthread_mutex_unlock(&sh->lock);
}

static void body_put(tmem_t *t, struct tm_store *s, struct tm_body *b)
{
    struct tm_dedup_shard *sh = shard_of(s, b->hash);
    bool last;
    pthread_mutex_lock(&sh->lock);
    tm_assert(b->refs > 0);
    last = --b->refs == 0;
    if (last) {
        dd_remove_locked(sh, b->hash, (uintptr_t)b | TM_DEDUP_BODY);
        sh->bodies--;
    }
    pthread_mutex_unlock(&sh->lock);
    if (last) {
        raw_free(t, s, &b->loc);
        tm_meta_free(t, b);
    }
}

void tm_loc_free(tmem_t *t, struct tm_store *s, const struct tm_loc *loc)
{
    if (loc->kind == TM_LOC_BODY) {
        tm_store_count_add(s, TM_SC_BODY_REFS, -1);
        body_put(t, s, loc->u.body);
    } else if (loc->kind == TM_LOC_WORD) {
        tm_store_count_add(s, TM_SC_WORDS, -1);
    } else {
        raw_free(t, s, loc);
        /* room again, if it was full (store_full) */
        if (atomic_load_explicit(&s->full_tick, memory_order_relaxed))
            atomic_store_explicit(&s->full_tick, 0, memory_order_relaxed);
    }
}

/* Allocates room for len bytes (a fragment) or a whole frame, evicting
 * ephemeral pages while there is none. */
/* A full persistent store over an arena.  Its frames come only from the
 * persistent units its memory source grants, and evicting ephemeral pages
 * frees none; a put that finds no room has compressed its page for
 * nothing (LZ4: several microseconds, against a swap write the caller
 * makes anyway).  So for TM_FULL_TICKS after a put found no room, while
 * the store has freed no data (tm_loc_free clears the state) and holds no
 * more frames, a new put is refused before it is compressed. */
static bool store_full(tmem_t *t, struct tm_store *s)
{
    uint32_t at = atomic_load_explicit(&s->full_tick, memory_order_relaxed);
    if (at == 0)
        return false;
    struct tm_frames *fr = &t->frames[TMEM_ARENA_PERSISTENT];
    if (tm_now_tick(t) - at < TM_FULL_TICKS &&
        atomic_load_explicit(&fr->nheld, memory_order_relaxed) ==
            atomic_load_explicit(&s->full_held, memory_order_relaxed))
        return true;
    atomic_store_explicit(&s->full_tick, 0, memory_order_relaxed);
    return false;
}

static void store_found_full(tmem_t *t, struct tm_store *s)
{
    struct tm_frames *fr = &t->frames[TMEM_ARENA_PERSISTENT];
    atomic_store_explicit(&s->full_held, atomic_load_explicit(&fr->nheld, memory_order_relaxed),
                          memory_order_relaxed);
    uint32_t now = tm_now_tick(t);
    atomic_store_explicit(&s->full_tick, now ? now : 1, memory_order_relaxed);
}

static int place(tmem_t *t, struct tm_store *s, struct tmem_client *cl, uint32_t len,
                 struct tm_loc *loc)
{
    for (int tries = 0;; tries++) {
        if (len < TMEM_PAGE_SIZE) {
            if (tm_zalloc(t, &s->heap, len, loc) == 0)
                return 0;
        } else {
            uint8_t *f = tm_frame_get(t, s->persistent, TM_FRAME_WHOLE);
            if (f) {
                loc->kind = TM_LOC_WHOLE;
                loc->u.frame = f;
                loc->size = (uint16_t)TMEM_PAGE_SIZE;
                tm_store_count_add(s, TM_SC_WHOLE, 1);
                return 0;
            }
        }
        /* over an arena, evicting (ephemeral pages) frees no persistent frame */
        if (s->persistent && t->arena.ops) {
            store_found_full(t, s);
            return -ENOMEM;
        }
        if (tries >= TM_EVICT_TRIES || !tm_evict_one(t, cl))
            return -ENOMEM;
    }
}

/* Is page in the sparse sample?  A mix of its first 64 bytes (already in
 * cache: the same-filled check read them), so identical pages agree. */
static inline bool dd_sampled(const void *page)
{
    const uint64_t *w = page;
    uint64_t x = w[0];
    for (int i = 1; i < 8; i++)
        x = (x ^ w[i]) * 0x9e3779b97f4a7c15ull;
    return (x >> (64 - TM_DD_SAMPLE_BITS)) == 0;
}

/* Should this put look page up in the dedup index? */
static inline bool dd_wanted(struct tm_store *s, const void *page)
{
    struct tm_store_count *c = &s->count[tm_home_stripe()];
    return !atomic_load_explicit(&c->dd_sparse, TM_RELAXED) || dd_sampled(page);
}

/* Records a lookup's outcome: TM_DD_SPARSE_AFTER misses in a row make the
 * stripe sparse; a hit on any stripe makes every stripe of the store full
 * again (the store's data does repeat). */
static inline void dd_outcome(struct tm_store *s, bool hit)
{
    struct tm_store_count *c = &s->count[tm_home_stripe()];
    uint32_t misses = atomic_load_explicit(&c->dd_misses, TM_RELAXED);
    if (hit) {
        if (misses)
            atomic_store_explicit(&c->dd_misses, 0, TM_RELAXED);
        for (unsigned i = 0; i < TM_STRIPES; i++) {
            if (atomic_load_explicit(&s->count[i].dd_sparse, TM_RELAXED)) {
                atomic_store_explicit(&s->count[i].dd_misses, 0, TM_RELAXED);
                atomic_store_explicit(&s->count[i].dd_sparse, 0, TM_RELAXED);
            }
        }
    } else if (misses < TM_DD_SPARSE_AFTER) {
        atomic_store_explicit(&c->dd_misses, misses + 1, TM_RELAXED);
        if (misses + 1 == TM_DD_SPARSE_AFTER)
            atomic_store_explicit(&c->dd_sparse, 1, TM_RELAXED);
    }
}

/* ---- testing.h ---------------------------------------------------------- */
#include "testing.h"

int tmem__dedup_sampled(const void *page)
{
    return dd_sampled(page);
}

uint32_t tmem__dedup_sparse_after(void)
{
    return TM_DD_SPARSE_AFTER;
}

int tm_store_put(tmem_t *t, struct tm_store *s, struct tmem_client *cl, const void *page,
                 int codec, struct tm_loc *loc, uint64_t *index_hash, bool *dd_skipped)
{
    uint64_t word, hash = 0;
    memset(loc, 0, sizeof(*loc));
    *index_hash = 0;
    *dd_skipped = false;
    if (tm_page_same_filled(page, &word)) {
        loc->kind = TM_LOC_WORD;
        loc->u.word = word;
        tm_store_count_add(s, TM_SC_WORDS, 1);
        tm_inc(cl->st.same_filled);
        return 0;
    }
    if (t->cfg.dedup && dd_wanted(s, page)) {
        hash = tm_page_hash(page);
        hash += hash == 0;      /* 0 means "not in the index" */
        struct tm_body *b = dedup_find(t, s, hash, page);
        dd_outcome(s, b != NULL);
        if (b) {
            loc->kind = TM_LOC_BODY;
            loc->u.body = b;
            tm_store_count_add(s, TM_SC_BODY_REFS, 1);
            tm_inc(cl->st.dedup_hits);
            return 0;
        }
    } else if (t->cfg.dedup) {
        *dd_skipped = true;
    }

    if (s->persistent && t->arena.ops && store_full(t, s))
        return -ENOMEM;             /* full a moment ago: not worth compressing */
    /* compress into scratch 0, then place */
    uint8_t *cbuf = tm_scratch(0);
    uint32_t clen = 0;
    if (codec != TMEM_COMPRESS_NONE) {
        clen = tm_compress(codec, t->cfg.zstd_level, page, cbuf, t->cfg.compress_max);
        if (clen == 0)
            tm_inc(cl->st.compress_poor);
    }
    int rc = place(t, s, cl, clen ? clen : TMEM_PAGE_SIZE, loc);
    if (rc)
        return rc;
    if (loc->kind == TM_LOC_FRAG) {
        /* eviction inside place() frees data but never reads it: cbuf is intact */
        loc->codec = (uint8_t)codec;
        tm_zwrite(loc, cbuf);
        tm_inc(cl->st.compressed_pages);
        tm_add(cl->st.compressed_bytes, clen);
    } else {
        tm_copy_to_frame(loc->u.frame, page);
    }
    *index_hash = hash;     /* the caller enters it in the index when it links it */
    return 0;
}

static inline atomic_i64 *count_field(struct tm_store_count *c, enum tm_store_counter which)
{
    return which == TM_SC_WHOLE ? &c->whole_frames : which == TM_SC_WORDS ? &c->words
                                                                           : &c->body_refs;
}

void tm_store_count_add(struct tm_store *s, enum tm_store_counter which, int64_t delta)
{
    atomic_fetch_add_explicit(count_field(&s->count[tm_home_stripe()], which), delta, TM_RELAXED);
}

uint64_t tm_store_count(struct tm_store *s, enum tm_store_counter which)
{
    int64_t n = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++)
        n += atomic_load_explicit(count_field(&s->count[i], which), TM_RELAXED);
    return n > 0 ? (uint64_t)n : 0;
}

void tm_store_dedup_counts(struct tm_store *s, uint64_t *entries, uint64_t *bodies)
{
    uint64_t e = 0, b = 0;
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++) {
        pthread_mutex_lock(&s->shards[i].lock);
        e += s->shards[i].count;
        b += s->shards[i].bodies;
        pthread_mutex_unlock(&s->shards[i].lock);
    }
    *entries = e;
    *bodies = b;
}

/* Checks the store against what the pools say points into it. */
int tm_store_check(struct tm_store *s, uint64_t body_refs_expected, uint64_t indexed_expected,
                   uint64_t frags_expected, uint64_t wholes_expected)
{
    int bad = 0;
    uint64_t refs = 0, frags = 0, wholes = 0, zfrags = 0, indexed = 0;
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++) {
        struct tm_dedup_shard *sh = &s->shards[i];
        uint32_t count = 0, bodies = 0;
        pthread_mutex_lock(&sh->lock);
        for (uint32_t k = 0; k < sh->cap; k++) {
            const struct tm_dedup_entry *e = &sh->slots[k];
            if (!e->ref)
                continue;
            count++;
            /* every entry is reachable from its home without an empty slot */
            uint32_t j = dd_home(sh, e->hash);
            while (j != k && sh->slots[j].ref)
                j = (j + 1) & (sh->cap - 1);
            if (j != k || shard_of(s, e->hash) != sh || e->hash == 0) {
                tm_report("dedup: an entry is not reachable from its home, or in the wrong shard");
                bad++;
            }
            if (!(e->ref & TM_DEDUP_BODY)) {
                const struct tm_pgd *pgd = (const struct tm_pgd *)e->ref;
                indexed++;
                if (pgd->hash != e->hash ||
                    (pgd->loc.kind != TM_LOC_WHOLE && pgd->loc.kind != TM_LOC_FRAG)) {
                    tm_report("dedup: an indexed descriptor has another hash or no direct data");
                    bad++;
                }
                continue;
            }
            const struct tm_body *b = (const struct tm_body *)(e->ref & ~TM_DEDUP_BODY);
            bodies++;
            refs += b->refs;
            if (b->refs == 0 || b->hash != e->hash) {
                tm_report("dedup: body with %u refs under another hash", b->refs);
                bad++;
            }
            if (b->loc.kind == TM_LOC_FRAG)
                frags++;
            else if (b->loc.kind == TM_LOC_WHOLE)
                wholes++;
            else {
                tm_report("dedup: body of kind %u", b->loc.kind);
                bad++;
            }
        }
        if (count != sh->count || bodies != sh->bodies ||
            (sh->cap && (uint64_t)sh->count * 4 > (uint64_t)sh->cap * 3)) {
            tm_report("dedup: shard counts %u entries %u bodies, table holds %u %u (cap %u)",
                      sh->count, sh->bodies, count, bodies, sh->cap);
            bad++;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    if (refs != body_refs_expected || indexed != indexed_expected) {
        tm_report("dedup: bodies hold %llu references, descriptors make %llu; %llu descriptors "
                  "indexed, %llu should be",
                  (unsigned long long)refs, (unsigned long long)body_refs_expected,
                  (unsigned long long)indexed, (unsigned long long)indexed_expected);
        bad++;
    }
    bad += tm_zheap_check(&s->heap, &zfrags);
    if (zfrags != frags + frags_expected) {
        tm_report("zalloc: %llu fragments allocated, %llu referenced",
                  (unsigned long long)zfrags, (unsigned long long)(frags + frags_expected));
        bad++;
    }
    if (tm_store_count(s, TM_SC_WHOLE) != wholes + wholes_expected) {
        tm_report("store: %llu whole frames counted, %llu referenced",
                  (unsigned long long)tm_store_count(s, TM_SC_WHOLE),
                  (unsigned long long)(wholes + wholes_expected));
        bad++;
    }
    return bad;
}
