/* SPDX-License-Identifier: MIT */
/*
 * zalloc.c - the compact allocator for compressed fragments.
 *
 * Compressed pages have any size from a few bytes to a page.  Packing them
 * one per frame would waste most of the frame; packing them into frames
 * without crossing frame boundaries wastes the tail of every frame (for a
 * 1400-byte fragment, 1296 bytes of 4096).  zalloc follows zsmalloc:
 *
 *  - size classes every TM_ZCLASS_STEP (32) bytes, so a fragment wastes at
 *    most 31 bytes to rounding;
 *  - a span of 1..8 frames is cut into equal slots that may straddle two
 *    frames.  Each class uses the smallest frame count whose tail waste is
 *    within 2% of the best: the 2080-byte class wastes 49% of one frame, 11%
 *    of four, 4.8% of eight.  Over the classes of 1-3.5 KiB, where most
 *    fragments fall, the average tail waste is 1.7% (5.6% if spans were
 *    limited to 4 frames as in zsmalloc) with 3.9 frames a span on average.
 *    Measured on the binaries of /usr/bin, zalloc's utilisation went from
 *    0.92 to 0.96; 16 frames gained nothing more and cost more in the one
 *    partially filled span each class keeps.  Frames of a span need not be
 *    contiguous: a straddling slot is copied in two parts;
 *  - a span with a free slot sits on its class's partial list; the span
 *    whose last slot is freed gives its frames back at once;
 *  - compaction.  Eviction frees fragments in LRU order, which is random
 *    with respect to spans, so without help free slots pile up in partial
 *    spans that never empty (utilisation fell to 0.82 under churn).  When a
 *    class's partial spans hold 1.5 spans' worth of free slots, the
 *    sparsest span is emptied into the others and its frames are freed.
 *
 * A fragment is named by (span, slot) in its owner's tm_loc (a pgd's, or a
 * dedup body's).  Moving it needs the owner's readers kept out: readers of a
 * pgd's loc hold its bucket lock, readers of a body's loc its dedup shard
 * lock.  Compaction holds the class lock and only *tries* those locks (they
 * come before the class lock in the lock order), and stops at a busy owner
 * or a fragment not owned yet (fragments moved already stay moved).  A
 * fragment is freed through its owner's loc, read again under the class
 * lock, so a move between a page's unlink and its free is harmless.
 *
 * Locking: each class has its own mutex (guards its lists, spans' maps,
 * owners and counts); frames are taken with no class lock held.
 */
#include "internal.h"

static const uint64_t one = 1;

/* Free slots of partial spans that trigger compaction, in spans' worth
 * (x2: 3 means 1.5 spans). */
#define TM_COMPACT_AT_HALF_SPANS 3u

uint32_t tm_zclass_size(uint32_t size)
{
    return (size + TM_ZCLASS_STEP - 1) / TM_ZCLASS_STEP * TM_ZCLASS_STEP;
}

static inline struct tm_zclass *class_for(struct tm_zheap *h, uint32_t size)
{
    return &h->cls[tm_zclass_size(size) / TM_ZCLASS_STEP - 1];
}

static inline struct tm_zheap *heap_of(struct tm_zclass *c)
{
    struct tm_zclass *first = c - (c->size / TM_ZCLASS_STEP - 1);
    return (struct tm_zheap *)((char *)first - offsetof(struct tm_zheap, cls));
}

void tm_zheap_init(struct tm_zheap *h, unsigned kind)
{
    memset(h, 0, sizeof(*h));
    h->kind = kind;
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        struct tm_zclass *c = &h->cls[i];
        pthread_mutex_init(&c->lock, NULL);
        c->size = (uint16_t)((i + 1) * TM_ZCLASS_STEP);
        /* the smallest frame count whose waste is within 2% of the best */
        double waste[TM_ZSPAN_MAX_FRAMES + 1], best = 1.0;
        for (unsigned nf = 1; nf <= TM_ZSPAN_MAX_FRAMES; nf++) {
            unsigned bytes = nf * TMEM_PAGE_SIZE;
            waste[nf] = (double)(bytes % c->size) / bytes;
            if (waste[nf] < best)
                best = waste[nf];
        }
        unsigned nf = 1;
        while (waste[nf] > best + 0.02)
            nf++;
        c->nframes = (uint16_t)nf;
        c->slots = (uint16_t)(nf * TMEM_PAGE_SIZE / c->size);
        c->words = (uint16_t)((c->slots + 63u) / 64u);
    }
}

static inline uint64_t *span_map(const struct tm_zspan *s)
{
    return (uint64_t *)(uintptr_t)&s->frames[s->cls->nframes];
}

static inline uintptr_t *span_owners(const struct tm_zspan *s)
{
    return (uintptr_t *)(span_map(s) + s->cls->words);
}

static inline size_t span_bytes(const struct tm_zclass *c)
{
    return sizeof(struct tm_zspan) + c->nframes * sizeof(uint8_t *) +
           c->words * sizeof(uint64_t) + c->slots * sizeof(uintptr_t);
}

static void span_release(tmem_t *t, struct tm_zspan *s, unsigned nframes)
{
    for (unsigned i = 0; i < nframes; i++)
        if (s->frames[i])
            tm_frame_put(t, s->frames[i], TM_FRAME_ZALLOC);
    tm_meta_free(t, s);
}

static void list_del(struct tm_zspan **head, struct tm_zspan *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

static void list_add(struct tm_zspan **head, struct tm_zspan *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
}

void tm_zheap_fini(tmem_t *t, struct tm_zheap *h)
{
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        struct tm_zclass *c = &h->cls[i];
        struct tm_zspan *lists[2] = { c->partial, c->full };
        for (int l = 0; l < 2; l++) {
            while (lists[l]) {
                struct tm_zspan *s = lists[l];
                lists[l] = s->next;
                span_release(t, s, c->nframes);
            }
        }
        pthread_mutex_destroy(&c->lock);
    }
}

/* Takes a slot of partial span s; class lock held. */
static int take_slot_locked(struct tm_zclass *c, struct tm_zspan *s)
{
    uint64_t *map = span_map(s);
    for (unsigned w = 0; w < c->words; w++) {
        uint64_t freebits = ~map[w];
        if (w == c->words - 1u && c->slots % 64u)
            freebits &= (one << (c->slots % 64u)) - 1;
        if (freebits) {
            unsigned b = (unsigned)__builtin_ctzll(freebits);
            map[w] |= one << b;
            c->free_slots--;
            if (++s->used == c->slots) {
                list_del(&c->partial, s);
                list_add(&c->full, s);
                s->partial = false;
            }
            return (int)(w * 64 + b);
        }
    }
    tm_assert(!"partial span without a free slot");
    return -1;
}

/* Frees slot of span s; class lock held.  true if s is now empty and
 * unlinked (the caller releases it after unlocking). */
static bool put_slot_locked(struct tm_zclass *c, struct tm_zspan *s, unsigned slot)
{
    uint64_t *map = span_map(s);
    tm_assert(map[slot / 64] & (one << (slot % 64)));
    map[slot / 64] &= ~(one << (slot % 64));
    span_owners(s)[slot] = 0;
    c->free_slots++;
    if (!s->partial) {
        list_del(&c->full, s);
        list_add(&c->partial, s);
        s->partial = true;
    }
    if (--s->used == 0) {
        list_del(&c->partial, s);
        c->free_slots -= c->slots;
        c->nspans--;
        return true;
    }
    return false;
}

/* Takes a slot of a partial span of c, if there is one (takes the lock). */
static bool take_partial(struct tm_zclass *c, struct tm_zspan **sp, int *slot)
{
    pthread_mutex_lock(&c->lock);
    bool ok = c->partial != NULL;
    if (ok) {
        *sp = c->partial;
        *slot = take_slot_locked(c, *sp);
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

int tm_zalloc(tmem_t *t, struct tm_zheap *h, uint32_t size, struct tm_loc *loc)
{
    tm_assert(size > 0 && size <= TMEM_PAGE_SIZE);
    struct tm_zclass *c = class_for(h, size);
    struct tm_zspan *s;
    int slot;

    if (take_partial(c, &s, &slot))
        goto done;

    /* No room: build a new span with no lock held (frames may be scarce). */
    s = tm_meta_calloc(t, span_bytes(c), false);
    if (!s)
        return -ENOMEM;
    s->cls = c;
    for (unsigned i = 0; i < c->nframes; i++) {
        s->frames[i] = tm_frame_get(t, h->kind, TM_FRAME_ZALLOC);
        if (!s->frames[i]) {
            span_release(t, s, c->nframes);
            /* a racing thread may have made a partial span meanwhile */
            if (take_partial(c, &s, &slot))
                goto done;
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&c->lock);
    s->partial = true;
    list_add(&c->partial, s);
    c->nspans++;
    c->free_slots += c->slots;
    slot = take_slot_locked(c, s);
    pthread_mutex_unlock(&c->lock);
done:
    loc->kind = TM_LOC_FRAG;
    loc->u.span = s;
    loc->slot = (uint16_t)slot;
    loc->size = (uint16_t)size;
    tm_add(h->bytes_used, size);
    tm_add(h->frags, 1);
    return 0;
}

void tm_zset_owner(struct tm_zheap *h, const struct tm_loc *loc, uintptr_t owner)
{
    /* the class from the size, which never changes; the place only under
     * the class lock, since compaction may move an owned fragment */
    struct tm_zclass *c = class_for(h, loc->size);
    pthread_mutex_lock(&c->lock);
    span_owners(loc->u.span)[loc->slot] = owner;
    pthread_mutex_unlock(&c->lock);
}

/* The byte range of slot in span s: frame index and offset. */
static inline void slot_pos(const struct tm_zspan *s, unsigned slot, unsigned *fi, unsigned *off)
{
    size_t start = (size_t)slot * s->cls->size;
    *fi = (unsigned)(start / TMEM_PAGE_SIZE);
    *off = (unsigned)(start % TMEM_PAGE_SIZE);
}

static void slot_write(const struct tm_zspan *s, unsigned slot, const void *src, size_t len)
{
    unsigned fi, off;
    slot_pos(s, slot, &fi, &off);
    size_t first = TMEM_PAGE_SIZE - off;
    if (first >= len) {
        memcpy(s->frames[fi] + off, src, len);
    } else {
        memcpy(s->frames[fi] + off, src, first);
        memcpy(s->frames[fi + 1], (const uint8_t *)src + first, len - first);
    }
}

static const void *slot_read(const struct tm_zspan *s, unsigned slot, size_t len, void *scratch)
{
    unsigned fi, off;
    slot_pos(s, slot, &fi, &off);
    size_t first = TMEM_PAGE_SIZE - off;
    if (first >= len)
        return s->frames[fi] + off;
    memcpy(scratch, s->frames[fi] + off, first);
    memcpy((uint8_t *)scratch + first, s->frames[fi + 1], len - first);
    return scratch;
}

void tm_zwrite(const struct tm_loc *loc, const void *src)
{
    slot_write(loc->u.span, loc->slot, src, loc->size);
}

const void *tm_zread(const struct tm_loc *loc, void *scratch)
{
    return slot_read(loc->u.span, loc->slot, loc->size, scratch);
}

/* Empties the sparsest of the first partial spans of c into the others, if
 * every owner of its fragments can be locked.  Class lock held; returns the
 * emptied span (unlinked, for the caller to release unlocked) or NULL.
 * Over an arena whose owner may take memory by force, a move is made only
 * while no revocation is pending (tm_arena_epoch_ok), and undone if one
 * comes during its copy: a fragment copied out of memory taken away would
 * otherwise carry garbage to memory the revocation does not touch. */
static struct tm_zspan *compact_locked(tmem_t *t, struct tm_zclass *c)
{
    uint64_t e0 = 0;
    if (!tm_arena_epoch_ok(t, &e0))
        return NULL;
    struct tm_zspan *victim = NULL;
    int scanned = 0;
    for (struct tm_zspan *s = c->partial; s && scanned < 32; s = s->next, scanned++)
        if (!victim || s->used < victim->used)
            victim = s;
    if (!victim || c->free_slots - (uint64_t)(c->slots - victim->used) < victim->used)
        return NULL;    /* the others cannot take its fragments */
    struct tm_zheap *h = heap_of(c);
    uint64_t *map = span_map(victim);
    uintptr_t *owners = span_owners(victim);
    uint8_t scratch[TMEM_PAGE_SIZE];
    for (unsigned i = 0; i < c->slots && victim->used > 0; i++) {
        if (!(map[i / 64] & (one << (i % 64))))
            continue;
        uintptr_t owner = owners[i];
        if (!owner)
            return NULL;                    /* not linked yet, or disowned */
        pthread_mutex_t *lk = tm_owner_trylock(h, owner);
        if (!lk)
            return NULL;                    /* a reader or writer is there */
        struct tm_loc *loc = (struct tm_loc *)(owner & ~TM_OWNER_BODY);
        tm_assert(loc->kind == TM_LOC_FRAG && loc->u.span == victim && loc->slot == i);
        /* a slot in another partial span (there are enough, checked above) */
        struct tm_zspan *dst = c->partial == victim ? victim->next : c->partial;
        tm_assert(dst && dst != victim);
        int j = take_slot_locked(c, dst);
        const void *src = slot_read(victim, i, loc->size, scratch);
        slot_write(dst, (unsigned)j, src, loc->size);
        if (!tm_arena_epoch_same(t, e0)) {
            put_slot_locked(c, dst, (unsigned)j);       /* dst keeps its others */
            pthread_mutex_unlock(lk);
            return NULL;
        }
        span_owners(dst)[j] = owner;
        loc->u.span = dst;
        loc->slot = (uint16_t)j;
        pthread_mutex_unlock(lk);
        c->moved++;
        if (put_slot_locked(c, victim, i)) {
            c->compactions++;
            return victim;
        }
    }
    return NULL;
}

void tm_zfree(tmem_t *t, struct tm_zheap *h, const struct tm_loc *loc)
{
    uint16_t size = loc->size;                  /* immutable */
    struct tm_zclass *c = class_for(h, size);
    struct tm_zspan *empty[2] = { NULL, NULL };

    pthread_mutex_lock(&c->lock);
    struct tm_zspan *s = loc->u.span;           /* read under the lock: it may move */
    if (put_slot_locked(c, s, loc->slot))
        empty[0] = s;
    else if (c->free_slots * 2 >= (uint64_t)c->slots * TM_COMPACT_AT_HALF_SPANS)
        empty[1] = compact_locked(t, c);
    pthread_mutex_unlock(&c->lock);
    tm_sub(h->bytes_used, size);
    tm_sub(h->frags, 1);
    for (int i = 0; i < 2; i++)
        if (empty[i])
            span_release(t, empty[i], c->nframes);
}

uint64_t tm_zheap_frames(struct tm_zheap *h)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        struct tm_zclass *c = &h->cls[i];
        pthread_mutex_lock(&c->lock);
        n += c->nspans * c->nframes;
        pthread_mutex_unlock(&c->lock);
    }
    return n;
}

int tm_zheap_check(struct tm_zheap *h, uint64_t *frags_out)
{
    int bad = 0;
    uint64_t frags = 0;
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        struct tm_zclass *c = &h->cls[i];
        uint64_t spans = 0, free_slots = 0;
        pthread_mutex_lock(&c->lock);
        for (int l = 0; l < 2; l++) {
            for (struct tm_zspan *s = l ? c->full : c->partial; s; s = s->next) {
                unsigned used = 0;
                const uint64_t *map = span_map(s);
                const uintptr_t *owners = span_owners(s);
                for (unsigned w = 0; w < c->words; w++)
                    used += (unsigned)__builtin_popcountll(map[w]);
                if (c->slots % 64u && (map[c->words - 1] >> (c->slots % 64u))) {
                    tm_report("zalloc: class %u span has slots beyond its last", c->size);
                    bad++;
                }
                for (unsigned k = 0; k < c->slots; k++) {
                    bool inuse = map[k / 64] & (one << (k % 64));
                    const struct tm_loc *o = (const void *)(owners[k] & ~TM_OWNER_BODY);
                    if (!inuse && owners[k]) {
                        tm_report("zalloc: class %u free slot %u has an owner", c->size, k);
                        bad++;
                    } else if (o && (o->kind != TM_LOC_FRAG || o->u.span != s || o->slot != k)) {
                        tm_report("zalloc: class %u slot %u: its owner names another place",
                                  c->size, k);
                        bad++;
                    }
                }
                if (used != s->used || used == 0 || used > c->slots ||
                    (l == 0) != s->partial || (l == 1) != (used == c->slots) || s->cls != c) {
                    tm_report("zalloc: class %u span used %u, map %u, slots %u, on %s list",
                              c->size, s->used, used, c->slots, l ? "full" : "partial");
                    bad++;
                }
                if (l == 0)
                    free_slots += c->slots - used;
                spans++;
                frags += used;
            }
        }
        if (spans != c->nspans || free_slots != c->free_slots) {
            tm_report("zalloc: class %u counts %llu spans %llu free slots, lists hold %llu %llu",
                      c->size, (unsigned long long)c->nspans, (unsigned long long)c->free_slots,
                      (unsigned long long)spans, (unsigned long long)free_slots);
            bad++;
        }
        pthread_mutex_unlock(&c->lock);
    }
    if (frags != tm_load(h->frags)) {
        tm_report("zalloc: %llu fragments counted, %llu in spans",
                  (unsigned long long)tm_load(h->frags), (unsigned long long)frags);
        bad++;
    }
    *frags_out = frags;
    return bad;
}
