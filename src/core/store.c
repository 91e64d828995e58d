/*
 * store.c - where page data goes: placement, compression, deduplication.
 *
 * tm_store_put turns a page into a tm_loc, cheapest form first:
 *
 *   1. same-filled (one 64-bit word repeated)  -> WORD, no memory at all;
 *   2. identical to a body already in the store's dedup table (XXH3-64 hash,
 *      then a full compare)                    -> BODY, one more reference;
 *   3. compressed to <= compress_max bytes     -> FRAG in the store's zalloc heap;
 *   4. otherwise                               -> WHOLE frame ("compress poor").
 *
 * With dedup on, 3 and 4 are wrapped in a new body so later duplicates find
 * them.  Memory for 3 and 4 is allocated with eviction: if the heap or the
 * frame allocator has no room, one ephemeral page is evicted and the
 * allocation retried, a bounded number of times.  The caller holds no bucket
 * lock, so eviction can never wait on the caller (docs/internals.md).
 *
 * Dedup table: TM_DEDUP_SHARDS shards chosen by hash bits, each a mutex and
 * a chained hash table of bodies.  A body's refs and chain links are guarded
 * by its shard lock; its data is immutable while referenced.
 */
#include "internal.h"

#define TM_EVICT_TRIES 256

struct tm_store *tm_store_new(tmem_t *t, bool persistent)
{
    struct tm_store *s = tm_meta_calloc_aligned(t, sizeof(*s), _Alignof(struct tm_store));
    if (!s)
        return NULL;
    s->persistent = persistent;
    tm_zheap_init(&s->heap);
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
        tm_meta_free(t, s->shards[i].heads);
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

/* Does body b hold exactly page?  Shard lock held (b cannot go away). */
static bool body_equals(const struct tm_body *b, const void *page)
{
    if (b->loc.kind == TM_LOC_WHOLE)
        return memcmp(b->loc.u.frame, page, TMEM_PAGE_SIZE) == 0;
    uint8_t *tmp = tm_scratch(0);
    if (raw_read(&b->loc, tmp) != 0)
        return false;
    return memcmp(tmp, page, TMEM_PAGE_SIZE) == 0;
}

/* Finds an identical body and takes a reference, or NULL. */
static struct tm_body *dedup_find(struct tm_store *s, uint64_t hash, const void *page)
{
    struct tm_dedup_shard *sh = shard_of(s, hash);
    struct tm_body *found = NULL;
    pthread_mutex_lock(&sh->lock);
    if (sh->nheads) {
        for (struct tm_body *b = sh->heads[hash & (sh->nheads - 1)]; b; b = b->next) {
            if (b->hash == hash && body_equals(b, page)) {
                b->refs++;
                found = b;
                break;
            }
        }
    }
    pthread_mutex_unlock(&sh->lock);
    return found;
}

/* Links a new body (refs 1).  Grows the chain table when it is too full; if
 * growing fails the body is linked anyway (chains just get longer).
 * Returns -ENOMEM only when there is no table at all and none can be made. */
static int dedup_link(tmem_t *t, struct tm_store *s, struct tm_body *b)
{
    struct tm_dedup_shard *sh = shard_of(s, b->hash);
    pthread_mutex_lock(&sh->lock);
    if (sh->count >= sh->nheads) {
        uint32_t n = sh->nheads ? sh->nheads * 2 : 16;
        struct tm_body **nh = tm_meta_calloc(t, n * sizeof(*nh), false);
        if (nh) {
            for (uint32_t i = 0; i < sh->nheads; i++) {
                while (sh->heads[i]) {
                    struct tm_body *x = sh->heads[i];
                    sh->heads[i] = x->next;
                    x->next = nh[x->hash & (n - 1)];
                    nh[x->hash & (n - 1)] = x;
                }
            }
            tm_meta_free(t, sh->heads);
            sh->heads = nh;
            sh->nheads = n;
        } else if (!sh->nheads) {
            pthread_mutex_unlock(&sh->lock);
            return -ENOMEM;
        }
    }
    struct tm_body **head = &sh->heads[b->hash & (sh->nheads - 1)];
    b->next = *head;
    *head = b;
    sh->count++;
    pthread_mutex_unlock(&sh->lock);
    return 0;
}

static void body_put(tmem_t *t, struct tm_store *s, struct tm_body *b)
{
    struct tm_dedup_shard *sh = shard_of(s, b->hash);
    bool last;
    pthread_mutex_lock(&sh->lock);
    tm_assert(b->refs > 0);
    last = --b->refs == 0;
    if (last) {
        struct tm_body **pp = &sh->heads[b->hash & (sh->nheads - 1)];
        while (*pp != b)
            pp = &(*pp)->next;
        *pp = b->next;
        sh->count--;
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
    }
}

/* Allocates room for len bytes (a fragment) or a whole frame, evicting
 * ephemeral pages while there is none. */
static int place(tmem_t *t, struct tm_store *s, struct tmem_client *cl, uint32_t len,
                 struct tm_loc *loc)
{
    for (int tries = 0;; tries++) {
        if (len < TMEM_PAGE_SIZE) {
            if (tm_zalloc(t, &s->heap, len, loc) == 0)
                return 0;
        } else {
            uint8_t *f = tm_frame_get(t, TM_FRAME_WHOLE);
            if (f) {
                loc->kind = TM_LOC_WHOLE;
                loc->u.frame = f;
                loc->size = (uint16_t)TMEM_PAGE_SIZE;
                tm_store_count_add(s, TM_SC_WHOLE, 1);
                return 0;
            }
        }
        if (tries >= TM_EVICT_TRIES || !tm_evict_one(t, cl))
            return -ENOMEM;
    }
}

int tm_store_put(tmem_t *t, struct tm_store *s, struct tmem_client *cl, const void *page,
                 int codec, struct tm_loc *loc)
{
    uint64_t word, hash = 0;
    memset(loc, 0, sizeof(*loc));
    if (tm_page_same_filled(page, &word)) {
        loc->kind = TM_LOC_WORD;
        loc->u.word = word;
        tm_store_count_add(s, TM_SC_WORDS, 1);
        tm_inc(cl->st.same_filled);
        return 0;
    }
    bool dedup = t->cfg.dedup != 0;
    if (dedup) {
        hash = tm_page_hash(page);
        struct tm_body *b = dedup_find(s, hash, page);
        if (b) {
            loc->kind = TM_LOC_BODY;
            loc->u.body = b;
            tm_store_count_add(s, TM_SC_BODY_REFS, 1);
            tm_inc(cl->st.dedup_hits);
            return 0;
        }
    }

    /* the body first: its allocation does not then wait behind the copy's
     * writes to a cold frame */
    struct tm_body *b = NULL;
    if (dedup && !(b = tm_meta_alloc(t, sizeof(*b), true)))
        return -ENOMEM;

    /* compress into scratch 0, then place */
    uint8_t *cbuf = tm_scratch(0);
    uint32_t clen = 0;
    if (codec != TMEM_COMPRESS_NONE) {
        clen = tm_compress(codec, t->cfg.zstd_level, page, cbuf, t->cfg.compress_max);
        if (clen == 0)
            tm_inc(cl->st.compress_poor);
    }
    struct tm_loc raw = { 0 };
    int rc = place(t, s, cl, clen ? clen : TMEM_PAGE_SIZE, &raw);
    if (rc) {
        tm_meta_free(t, b);
        return rc;
    }
    if (raw.kind == TM_LOC_FRAG) {
        /* eviction inside place() frees data but never reads it: cbuf is intact */
        raw.codec = (uint8_t)codec;
        tm_zwrite(&raw, cbuf);
        tm_inc(cl->st.compressed_pages);
        tm_add(cl->st.compressed_bytes, clen);
    } else {
        tm_copy_to_frame(raw.u.frame, page);
    }

    if (!dedup) {
        *loc = raw;
        return 0;
    }
    b->hash = hash;
    b->refs = 1;
    b->loc = raw;
    if (raw.kind == TM_LOC_FRAG)
        tm_zset_owner(&s->heap, &b->loc, (uintptr_t)&b->loc | TM_OWNER_BODY);
    if (dedup_link(t, s, b) != 0) {
        /* no dedup table could be made: keep the data without a body */
        if (raw.kind == TM_LOC_FRAG)
            tm_zset_owner(&s->heap, &b->loc, 0);
        *loc = b->loc;
        tm_meta_free(t, b);
        return 0;
    }
    loc->kind = TM_LOC_BODY;
    loc->u.body = b;
    tm_store_count_add(s, TM_SC_BODY_REFS, 1);
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

uint64_t tm_store_bodies(struct tm_store *s)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++) {
        pthread_mutex_lock(&s->shards[i].lock);
        n += s->shards[i].count;
        pthread_mutex_unlock(&s->shards[i].lock);
    }
    return n;
}

/* Checks the store against what the pools say points into it. */
int tm_store_check(struct tm_store *s, uint64_t body_refs_expected, uint64_t frags_expected,
                   uint64_t wholes_expected)
{
    int bad = 0;
    uint64_t refs = 0, frags = 0, wholes = 0, zfrags = 0;
    for (unsigned i = 0; i < TM_DEDUP_SHARDS; i++) {
        struct tm_dedup_shard *sh = &s->shards[i];
        uint32_t count = 0;
        pthread_mutex_lock(&sh->lock);
        for (uint32_t h = 0; h < sh->nheads; h++) {
            for (struct tm_body *b = sh->heads[h]; b; b = b->next) {
                count++;
                refs += b->refs;
                if (b->refs == 0 || (b->hash & (sh->nheads - 1)) != h ||
                    shard_of(s, b->hash) != sh) {
                    tm_report("dedup: body with %u refs in the wrong chain or shard", b->refs);
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
        }
        if (count != sh->count) {
            tm_report("dedup: shard counts %u bodies, chains hold %u", sh->count, count);
            bad++;
        }
        pthread_mutex_unlock(&sh->lock);
    }
    if (refs != body_refs_expected) {
        tm_report("dedup: bodies hold %llu references, descriptors make %llu",
                  (unsigned long long)refs, (unsigned long long)body_refs_expected);
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
