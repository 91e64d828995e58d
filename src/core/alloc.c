/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - counted metadata allocation and allocation-failure injection.
 *
 * Every structure the engine allocates besides frames (descriptor blocks,
 * objects, tables, pools, clients, bodies) goes through tm_meta_alloc, which charges
 * malloc_usable_size() + 8 bytes (the allocator's header) to the metadata
 * count, so that bytes_held = frames_held * 4096 + metadata stays under
 * max_bytes.  The count is kept per frame stripe, so that threads do not
 * write one cache line on every allocation (struct tm_meta_stripe).
 * Large allocations are reserved before malloc, so concurrent ones cannot
 * together overshoot the limit; small ones (descriptors, bodies, objects)
 * are checked, then charged, so threads racing may overshoot by one small
 * allocation each.  The check reads an approximate total when that proves
 * the fit with room to spare, and sums the stripes near the limit.  When an
 * allocation would not fit, free frames are released to the OS first, then
 * (if the caller allows) ephemeral pages are evicted.
 *
 * Failure injection: with fail_at = N, the Nth counted internal allocation
 * (metadata or a new frame) fails; with fail_persistent, every one after it
 * fails too (SQLite's transient and persistent OOM modes).
 */
#include <malloc.h>

#include "internal.h"

#define TM_META_OVERHEAD 8u
#define TM_MAKE_ROOM_TRIES 64

bool tm_fault_hit(tmem_t *t)
{
    uint64_t at = tm_load(t->fail_at);
    if (at == 0)
        return false;
    uint64_t n = tm_inc(t->alloc_count) + 1;
    if (n == at || (n > at && tm_load(t->fail_persistent)))
        return true;
    return false;
}

int64_t tm_meta_bytes(tmem_t *t)
{
    int64_t n = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++)
        n += atomic_load_explicit(&t->meta[i].bytes, TM_RELAXED);
    return n;
}

uint64_t tm_bytes_held(tmem_t *t)
{
    int64_t meta = tm_meta_bytes(t);
    return tm_load(t->frames_held) * TMEM_PAGE_SIZE + (uint64_t)(meta > 0 ? meta : 0);
}

/* Adds d to the metadata count, on the calling thread's stripe; publishes
 * the stripe's drift to meta_approx now and then. */
static void meta_charge(tmem_t *t, int64_t d)
{
    struct tm_meta_stripe *ms = &t->meta[tm_home_stripe()];
    int64_t now = atomic_fetch_add_explicit(&ms->bytes, d, TM_RELAXED) + d;
    int64_t pub = atomic_load_explicit(&ms->published, TM_RELAXED);
    if ((now - pub >= TM_META_DRIFT || pub - now >= TM_META_DRIFT) &&
        atomic_compare_exchange_strong(&ms->published, &pub, now))
        atomic_fetch_add_explicit(&t->meta_approx, now - pub, TM_RELAXED);
}

/* Would want more bytes of metadata fit under the limit?  The approximate
 * total answers when it proves the fit with room to spare (the exact total
 * is at most TM_STRIPES * TM_META_DRIFT above it); near the limit the
 * stripes are summed exactly. */
bool tm_meta_fits(tmem_t *t, uint64_t want)
{
    uint64_t frames = tm_load(t->frames_held) * TMEM_PAGE_SIZE, max = tm_load(t->max_bytes);
    int64_t approx = atomic_load_explicit(&t->meta_approx, TM_RELAXED);
    uint64_t slack = (uint64_t)TM_STRIPES * TM_META_DRIFT;
    if (frames + (uint64_t)(approx > 0 ? approx : 0) + slack + want <= max)
        return true;
    return tm_bytes_held(t) + want <= max;
}

bool tm_fit_by_releasing(tmem_t *t, uint64_t want)
{
    for (;;) {
        uint64_t held = tm_bytes_held(t), max = tm_load(t->max_bytes);
        if (held + want <= max)
            return true;
        uint64_t over = held + want - max;
        size_t n = (size_t)((over + TMEM_PAGE_SIZE - 1) / TMEM_PAGE_SIZE);
        if (n < 16)
            n = 16;     /* release in batches: madvise is 1.4 us a frame */
        if (tm_frames_release(t, n) == 0)
            return tm_bytes_held(t) + want <= tm_load(t->max_bytes);
    }
}

/* Reserves n bytes of metadata against the limit, exactly: charged first,
 * then checked, so threads reserving at once cannot overshoot together. */
static bool meta_reserve(tmem_t *t, int64_t n)
{
    meta_charge(t, n);
    if (tm_bytes_held(t) <= tm_load(t->max_bytes))
        return true;
    meta_charge(t, -n);
    return false;
}

/* Allocations up to this size are checked (tm_meta_fits), then charged after
 * malloc; larger ones (table growth) are reserved first (meta_reserve). */
#define TM_META_SMALL 1024u

static void *meta_alloc(tmem_t *t, size_t size, bool may_evict, size_t align);

/* Makes room for want more bytes, by releasing free frames, then (if
 * allowed) evicting; reserve: charge them now (large allocations), else
 * only check.  Counts a failure. */
static bool make_room(tmem_t *t, int64_t want, bool may_evict, bool reserve)
{
    int tries = 0;
    while (reserve ? !meta_reserve(t, want) : !tm_meta_fits(t, (uint64_t)want)) {
        if (tm_frames_release(t, 16) > 0)   /* free frames go first */
            continue;
        if (!may_evict || ++tries > TM_MAKE_ROOM_TRIES || !tm_evict_one(t, NULL)) {
            tm_inc(t->st.alloc_failed);
            return false;
        }
    }
    return true;
}

bool tm_meta_room(tmem_t *t, uint64_t want, bool may_evict)
{
    return make_room(t, (int64_t)want, may_evict, false);
}

static bool make_room_reserved(tmem_t *t, int64_t want, bool may_evict)
{
    return make_room(t, want, may_evict, true);
}

void *tm_meta_alloc(tmem_t *t, size_t size, bool may_evict)
{
    return meta_alloc(t, size, may_evict, 0);
}

void *tm_meta_alloc_aligned(tmem_t *t, size_t size, size_t align, bool may_evict)
{
    return meta_alloc(t, size, may_evict, align);
}

void *tm_meta_calloc_aligned(tmem_t *t, size_t size, size_t align)
{
    void *p = meta_alloc(t, size, true, align);
    if (p)
        memset(p, 0, size);
    return p;
}

void *tm_meta_calloc_reserved(tmem_t *t, size_t size, size_t align)
{
    void *p = tm_meta_calloc_aligned(t, size, align);
    if (p || tm_load(t->fail_at))       /* an injected failure stays one */
        return p;
    uint64_t want = size + TM_META_OVERHEAD + 16;
    if (tm_bytes_held(t) + want > tm_load(t->max_bytes) + TM_OPEN_RESERVE)
        return NULL;
    p = aligned_alloc(align, (size + align - 1) / align * align);
    if (!p)
        return NULL;
    meta_charge(t, (int64_t)(malloc_usable_size(p) + TM_META_OVERHEAD));
    memset(p, 0, size);
    return p;
}

/* align 0: malloc's own alignment; else aligned_alloc (for structures with
 * cache-line-aligned members). */
static void *meta_alloc(tmem_t *t, size_t size, bool may_evict, size_t align)
{
    if (tm_fault_hit(t)) {
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    int64_t want = (int64_t)(size + TM_META_OVERHEAD + 16);    /* >= what malloc charges */
    bool small = size <= TM_META_SMALL;
    if (small ? !tm_meta_room(t, (uint64_t)want, may_evict) : !make_room_reserved(t, want, may_evict))
        return NULL;
    void *p = align ? aligned_alloc(align, (size + align - 1) / align * align) : malloc(size);
    if (!p) {
        if (!small)
            meta_charge(t, -want);
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    int64_t real = (int64_t)(malloc_usable_size(p) + TM_META_OVERHEAD);
    meta_charge(t, small ? real : real - want);
    return p;
}

void *tm_meta_calloc(tmem_t *t, size_t size, bool may_evict)
{
    void *p = tm_meta_alloc(t, size, may_evict);
    if (p)
        memset(p, 0, size);
    return p;
}

void tm_meta_free(tmem_t *t, void *p)
{
    if (!p)
        return;
    meta_charge(t, -(int64_t)(malloc_usable_size(p) + TM_META_OVERHEAD));
    free(p);
}

/* ---- testing.h ---------------------------------------------------------- */
#include "testing.h"

void tmem__fault_inject(tmem_t *t, uint64_t nth, int persistent)
{
    tm_store_(t->alloc_count, 0);
    atomic_store(&t->fail_persistent, persistent != 0);
    tm_store_(t->fail_at, nth);
}

uint64_t tmem__alloc_count(tmem_t *t) { return tm_load(t->alloc_count); }

void tmem__set_hash_key(tmem_t *t, uint64_t key) { t->hash_key = key; }
