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
 *    whose last slot is freed gives its frames back at once.  So evicting
 *    fragments frees whole frames, which tmem_evict_npages counts on.
 *
 * A fragment is named by (span, slot) in its tm_loc.  Reading a fragment
 * needs no lock: while the fragment is allocated its span and slot stay put.
 * Locking: each class has its own mutex (guards its lists, spans' maps and
 * counts); frames are taken and returned with no class lock held.
 */
#include "internal.h"

static const uint64_t one = 1;

uint32_t tm_zclass_size(uint32_t size)
{
    return (size + TM_ZCLASS_STEP - 1) / TM_ZCLASS_STEP * TM_ZCLASS_STEP;
}

static inline struct tm_zclass *class_for(struct tm_zheap *h, uint32_t size)
{
    return &h->cls[tm_zclass_size(size) / TM_ZCLASS_STEP - 1];
}

void tm_zheap_init(struct tm_zheap *h)
{
    memset(h, 0, sizeof(*h));
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

static inline size_t span_bytes(const struct tm_zclass *c)
{
    return sizeof(struct tm_zspan) + c->nframes * sizeof(uint8_t *) + c->words * sizeof(uint64_t);
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

/* Takes a slot of a partial span; class lock held. */
static int take_slot_locked(struct tm_zclass *c, struct tm_zspan *s)
{
    uint64_t *map = span_map(s);
    for (unsigned w = 0; w < c->words; w++) {
        uint64_t freebits = ~map[w];
        if (w == (c->slots - 1u) / 64u && c->slots % 64u)
            freebits &= (one << (c->slots % 64u)) - 1;
        if (freebits) {
            unsigned b = (unsigned)__builtin_ctzll(freebits);
            map[w] |= one << b;
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

int tm_zalloc(tmem_t *t, struct tm_zheap *h, uint32_t size, struct tm_loc *loc)
{
    tm_assert(size > 0 && size <= TMEM_PAGE_SIZE);
    struct tm_zclass *c = class_for(h, size);
    struct tm_zspan *s;
    int slot;

    pthread_mutex_lock(&c->lock);
    if (c->partial) {
        s = c->partial;
        slot = take_slot_locked(c, s);
        pthread_mutex_unlock(&c->lock);
        goto done;
    }
    pthread_mutex_unlock(&c->lock);

    /* No room: build a new span with no lock held (frames may be scarce). */
    s = tm_meta_calloc(t, span_bytes(c), false);
    if (!s)
        return -ENOMEM;
    s->cls = c;
    for (unsigned i = 0; i < c->nframes; i++) {
        s->frames[i] = tm_frame_get(t, TM_FRAME_ZALLOC);
        if (!s->frames[i]) {
            span_release(t, s, c->nframes);
            /* a racing thread may have made a partial span meanwhile */
            pthread_mutex_lock(&c->lock);
            if (c->partial) {
                s = c->partial;
                slot = take_slot_locked(c, s);
                pthread_mutex_unlock(&c->lock);
                goto done;
            }
            pthread_mutex_unlock(&c->lock);
            return -ENOMEM;
        }
    }
    pthread_mutex_lock(&c->lock);
    s->partial = true;
    list_add(&c->partial, s);
    c->nspans++;
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

void tm_zfree(tmem_t *t, const struct tm_loc *loc)
{
    struct tm_zspan *s = loc->u.span;
    struct tm_zclass *c = s->cls;
    struct tm_zheap *h = (struct tm_zheap *)((char *)(c - (c->size / TM_ZCLASS_STEP - 1)) -
                                             offsetof(struct tm_zheap, cls));
    bool empty = false;
    uint64_t *map = span_map(s);
    pthread_mutex_lock(&c->lock);
    tm_assert(map[loc->slot / 64] & (one << (loc->slot % 64)));
    map[loc->slot / 64] &= ~(one << (loc->slot % 64));
    if (!s->partial) {
        list_del(&c->full, s);
        list_add(&c->partial, s);
        s->partial = true;
    }
    if (--s->used == 0) {
        list_del(&c->partial, s);
        c->nspans--;
        empty = true;
    }
    pthread_mutex_unlock(&c->lock);
    tm_sub(h->bytes_used, loc->size);
    tm_sub(h->frags, 1);
    if (empty)
        span_release(t, s, c->nframes);
}

/* The fragment's byte range within the span: frame index and offset. */
static inline void frag_pos(const struct tm_loc *loc, unsigned *fi, unsigned *off)
{
    size_t start = (size_t)loc->slot * loc->u.span->cls->size;
    *fi = (unsigned)(start / TMEM_PAGE_SIZE);
    *off = (unsigned)(start % TMEM_PAGE_SIZE);
}

void tm_zwrite(const struct tm_loc *loc, const void *src)
{
    unsigned fi, off;
    frag_pos(loc, &fi, &off);
    size_t first = TMEM_PAGE_SIZE - off;
    if (first >= loc->size) {
        memcpy(loc->u.span->frames[fi] + off, src, loc->size);
    } else {
        memcpy(loc->u.span->frames[fi] + off, src, first);
        memcpy(loc->u.span->frames[fi + 1], (const uint8_t *)src + first, loc->size - first);
    }
}

const void *tm_zread(const struct tm_loc *loc, void *scratch)
{
    unsigned fi, off;
    frag_pos(loc, &fi, &off);
    size_t first = TMEM_PAGE_SIZE - off;
    if (first >= loc->size)
        return loc->u.span->frames[fi] + off;
    memcpy(scratch, loc->u.span->frames[fi] + off, first);
    memcpy((uint8_t *)scratch + first, loc->u.span->frames[fi + 1], loc->size - first);
    return scratch;
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
        uint64_t spans = 0;
        pthread_mutex_lock(&c->lock);
        for (int l = 0; l < 2; l++) {
            for (struct tm_zspan *s = l ? c->full : c->partial; s; s = s->next) {
                unsigned used = 0;
                const uint64_t *map = span_map(s);
                for (unsigned w = 0; w < c->words; w++)
                    used += (unsigned)__builtin_popcountll(map[w]);
                if (c->slots % 64u && (map[c->words - 1] >> (c->slots % 64u))) {
                    tm_report("zalloc: class %u span has slots beyond its last", c->size);
                    bad++;
                }
                if (used != s->used || used == 0 || used > c->slots ||
                    (l == 0) != s->partial || (l == 1) != (used == c->slots) || s->cls != c) {
                    tm_report("zalloc: class %u span used %u, map %u, slots %u, on %s list",
                              c->size, s->used, used, c->slots, l ? "full" : "partial");
                    bad++;
                }
                spans++;
                frags += used;
            }
        }
        if (spans != c->nspans) {
            tm_report("zalloc: class %u counts %llu spans, lists hold %llu", c->size,
                      (unsigned long long)c->nspans, (unsigned long long)spans);
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
