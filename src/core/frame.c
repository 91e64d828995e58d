/* SPDX-License-Identifier: MIT */
/*
 * frame.c - the frame allocator: whole 4 KiB frames over one reserved mapping.
 *
 * At open the engine reserves address space (PROT_NONE, so it costs nothing)
 * for the most frames it may ever hold, in chunks of 512 frames (2 MiB), in
 * two sets: frames for ephemeral data and frames for persistent data
 * (types.h).  A chunk becomes readable and writable when it is first used;
 * its frames are backed by the kernel on first touch.  Freed frames go to the freeing CPU's
 * cache and the free lists (the seeds' tmem_page_list), not back to the OS:
 * the next put will want one.
 * They leave only when the host asks (tmem_relinquish_pages) or the limit
 * shrinks, with MADV_DONTNEED, which really drops resident memory.
 *
 * Why our own allocator and not malloc: the engine must know exactly how
 * much memory it holds, give whole frames back on demand, find contiguous
 * free frames for tmem_relinquish_pageblock, and never fault in and free per
 * page (1.4 us each way on these machines).
 *
 * Stripes.  Every put and get of a whole page takes and returns a frame.
 * With one lock and one set of counters for all, two threads spent a third
 * of their time moving those cache lines between cores (bench/ figure 4).
 * So chunks are divided among TM_STRIPES stripes, each with its own lock,
 * free list and counters; a thread takes frames from its CPU's stripe, then
 * steals from the others, and only then backs new frames.
 *
 * Caches.  A freed frame goes to a small cache of the freeing CPU's stripe,
 * and a frame is taken from that cache first.  Without it a frame went back
 * to its own chunk's stripe: when one thread's frames had come from another
 * CPU's chunks (frames stay where they were first backed; threads move and
 * come and go), every put and get of both threads met on that one lock, and
 * two threads sharing an engine scaled 1.3-1.5x where two engines scaled
 * 1.9x.  A full cache gives its older half back to the chunks; a thread
 * whose CPU has no free frame steals a batch, from another stripe's free
 * frames or its cache, so that it next finds frames at home.  Giving frames
 * back to the OS or lending them first empties every cache.
 *
 * The frames held (nheld) are reserved with one atomic add before a frame is
 * backed, so the limit stays exact, and that counter changes only when
 * memory grows or shrinks.
 *
 * Over an arena (arena.h) the memory is the owner's: a set's range is
 * mapped by the source at open, and frames are backed a unit (16, 32 or 64
 * frames: the arena's unit_frames) at a time by asking the source (grow, with
 * no lock held: the unit is marked `growing` meanwhile), and given back a
 * wholly free unit at a time (shrink).  There is no limit of the engine's
 * own and no huge chunks; units taken back by force are handled by
 * tmem_arena_revoked (arena.c) with every call on the client held off.
 *
 * Lock order: one stripe lock at a time, except tm_frames_check, which takes
 * them in index order; lent_lock after a stripe lock.
 */
#define _GNU_SOURCE             /* sched_getcpu */
#include <sched.h>
#include <sys/mman.h>
#include <time.h>

#include "internal.h"

static inline size_t popc(uint64_t x) { return (size_t)__builtin_popcountll(x); }

/* Chunks are backed whole, as huge pages, only under a limit of at least
 * TM_HUGE_MIN_CHUNKS chunks (128 MiB) and once the engine holds
 * TM_HUGE_AFTER_CHUNKS (64 MiB): a chunk's worth of free frames per stripe,
 * held before they are needed, is then a small part of what is held (a
 * small store keeps its exact, frame-by-frame accounting: bench/ figure 3). */
#define TM_HUGE_MIN_CHUNKS   64u
#define TM_HUGE_AFTER_CHUNKS 32u

static void free_list_add(struct tm_stripe *sp, struct tm_chunk *ch)
{
    if (ch->on_free_list)
        return;
    ch->on_free_list = true;
    ch->prev_free = NULL;
    ch->next_free = sp->with_free;
    if (sp->with_free)
        sp->with_free->prev_free = ch;
    sp->with_free = ch;
}

static void free_list_del(struct tm_stripe *sp, struct tm_chunk *ch)
{
    if (!ch->on_free_list)
        return;
    if (ch->prev_free)
        ch->prev_free->next_free = ch->next_free;
    else
        sp->with_free = ch->next_free;
    if (ch->next_free)
        ch->next_free->prev_free = ch->prev_free;
    ch->on_free_list = false;
    ch->next_free = ch->prev_free = NULL;
}

static inline struct tm_stripe *stripe_of(struct tm_frames *fr, size_t chunk)
{
    return &fr->stripes[chunk % TM_STRIPES];
}

/* The calling thread's home stripe, assigned round robin at its first use. */
unsigned tm_home_stripe(void)
{
    static _Atomic unsigned next;
    static _Thread_local unsigned home = UINT32_MAX;
    if (home == UINT32_MAX)
        home = atomic_fetch_add_explicit(&next, 1, TM_RELAXED) % TM_STRIPES;
    return home;
}

/* The stripe of the CPU the caller runs on: where it takes frames and page
 * descriptors.  A thread's home stripe stays with the thread, and threads
 * come and go (a daemon's workers, a program's thread pool): a new thread
 * found its home empty, the frames its predecessors freed sitting in other
 * stripes, and two new threads stole from the same ones, on one lock
 * (bench/ figure 4).  CPUs stay: two threads running at once run on two
 * CPUs, and a thread finds the frames its CPU's last thread freed.
 * sched_getcpu reads the rseq area: about 3 ns here. */
unsigned tm_cpu_stripe(void)
{
    int cpu = sched_getcpu();
    return cpu >= 0 ? (unsigned)cpu % TM_STRIPES : tm_home_stripe();
}

static void set_init(tmem_t *t, struct tm_frames *fr, unsigned kind, size_t nchunks)
{
    memset(fr, 0, sizeof(*fr));
    fr->t = t;
    fr->kind = kind;
    fr->units = t->arena.ops != NULL;
    fr->unit = fr->units ? t->arena.unit_frames : 1;
    fr->nchunks = nchunks;
    for (unsigned i = 0; i < TM_STRIPES; i++) {
        pthread_mutex_init(&fr->stripes[i].lock, NULL);
        fr->stripes[i].grow_hint = i;
    }
    pthread_mutex_init(&fr->lent_lock, NULL);
}

static size_t chunks_for(uint64_t bytes)
{
    size_t n = (size_t)((bytes + TM_CHUNK_BYTES - 1) / TM_CHUNK_BYTES);
    return n ? n : 1;
}

int tm_frames_init(tmem_t *t, uint64_t eph_bytes, uint64_t pers_bytes)
{
    struct tm_frames *e = &t->frames[TMEM_ARENA_EPHEMERAL], *p = &t->frames[TMEM_ARENA_PERSISTENT];
    set_init(t, e, TMEM_ARENA_EPHEMERAL, chunks_for(eph_bytes));
    set_init(t, p, TMEM_ARENA_PERSISTENT, chunks_for(pers_bytes));
    /* One reservation for both sets (frame hints number the frames of
     * both from its start).  One chunk more, and the chunk-aligned part
     * kept, so that a block of 2^order frames (order <= 9) is aligned to
     * its size whatever alignment mmap gave. */
    size_t len = (e->nchunks + p->nchunks) * TM_CHUNK_BYTES;
    uint8_t *raw = mmap(NULL, len + TM_CHUNK_BYTES, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return -ENOMEM;
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + TM_CHUNK_BYTES - 1) &
                                ~(uintptr_t)(TM_CHUNK_BYTES - 1));
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    munmap(base + len, (size_t)(raw + TM_CHUNK_BYTES - base));
    /* The chunk tables are engine infrastructure, not counted metadata:
     * 8 bytes per 2 MiB of reservation. */
    e->chunks = calloc(e->nchunks, sizeof(*e->chunks));
    p->chunks = calloc(p->nchunks, sizeof(*p->chunks));
    if (!e->chunks || !p->chunks) {
        free(e->chunks);
        free(p->chunks);
        e->chunks = p->chunks = NULL;
        munmap(base, len);
        return -ENOMEM;
    }
    e->base = base;         /* set last: tm_frames_fini keys on them */
    p->base = base + e->nchunks * TM_CHUNK_BYTES;
    if (t->arena.ops) {
        for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++) {
            struct tm_frames *fr = &t->frames[k];
            int rc = t->arena.ops->attach(t->arena.arg, (int)k, fr->base,
                                          fr->nchunks * TM_CHUNK_BYTES);
            if (rc) {
                for (unsigned j = 0; j < k && t->arena.ops->detach; j++)
                    t->arena.ops->detach(t->arena.arg, (int)j, t->frames[j].base,
                                         t->frames[j].nchunks * TM_CHUNK_BYTES);
                t->arena.ops = NULL;    /* no detach from fini */
                tm_frames_fini(t);
                return rc < 0 ? rc : -EINVAL;
            }
        }
    }
    return 0;
}

void tm_frames_fini(tmem_t *t)
{
    struct tm_frames *e = &t->frames[TMEM_ARENA_EPHEMERAL], *p = &t->frames[TMEM_ARENA_PERSISTENT];
    if (!e->base)
        return;
    if (t->arena.ops && t->arena.ops->detach)
        for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++)
            t->arena.ops->detach(t->arena.arg, (int)k, t->frames[k].base,
                                 t->frames[k].nchunks * TM_CHUNK_BYTES);
    munmap(e->base, (e->nchunks + p->nchunks) * TM_CHUNK_BYTES);
    for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++) {
        struct tm_frames *fr = &t->frames[k];
        for (size_t i = 0; i < fr->nchunks; i++)
            free(fr->chunks[i]);
        free(fr->chunks);
        free(fr->lent);
        for (unsigned i = 0; i < TM_STRIPES; i++)
            pthread_mutex_destroy(&fr->stripes[i].lock);
        pthread_mutex_destroy(&fr->lent_lock);
        fr->base = NULL;
    }
}

static inline uint8_t *frame_addr(struct tm_frames *fr, size_t chunk, size_t bit)
{
    return fr->base + (chunk * TM_CHUNK_FRAMES + bit) * TMEM_PAGE_SIZE;
}

static inline atomic_u64 *use_counter(struct tm_stripe *sp, enum tm_frame_use use)
{
    return use == TM_FRAME_WHOLE ? &sp->nwhole : &sp->nzalloc;
}

/* Frames a thread steals from another stripe at once (one kept, the rest
 * to its CPU's cache). */
#define TM_FRAME_BATCH (TM_FRAME_CACHE / 2)

/* Takes a free frame of stripe sp; its lock held. */
static uint8_t *take_free_locked(struct tm_frames *fr, struct tm_stripe *sp)
{
    struct tm_chunk *ch = sp->with_free;
    if (!ch)
        return NULL;
    for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
        if (ch->free_map[w]) {
            unsigned b = (unsigned)__builtin_ctzll(ch->free_map[w]);
            ch->free_map[w] &= ~(1ull << b);
            if (--ch->nfree == 0)
                free_list_del(sp, ch);
            tm_sub(sp->nfree, 1);
            return frame_addr(fr, ch->index, w * 64 + b);
        }
    }
    tm_assert(!"chunk on free list without a free frame");
    return NULL;
}

/* Makes chunk i of the reservation usable (read-write, its record made,
 * nothing backed yet); its stripe's lock held.  NULL (counted) on failure. */
static struct tm_chunk *chunk_open(struct tm_frames *fr, size_t i)
{
    tmem_t *t = fr->t;
    struct tm_chunk *ch;
    if (tm_fault_hit(t) || !(ch = aligned_alloc(_Alignof(struct tm_chunk), sizeof(*ch)))) {
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    memset(ch, 0, sizeof(*ch));
    /* an arena's source mapped the whole range at open */
    if (!fr->units &&
        mprotect(fr->base + i * TM_CHUNK_BYTES, TM_CHUNK_BYTES, PROT_READ | PROT_WRITE) != 0) {
        free(ch);
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    ch->index = (uint32_t)i;
    fr->chunks[i] = ch;
    return ch;
}

/* Backs a new frame in stripe s's chunks; its lock held; the caller has
 * reserved it in nheld. */
static uint8_t *take_unbacked_locked(struct tm_frames *fr, unsigned s)
{
    struct tm_stripe *sp = &fr->stripes[s];
    for (size_t i = sp->grow_hint; i < fr->nchunks; i += TM_STRIPES) {
        struct tm_chunk *ch = fr->chunks[i] ? fr->chunks[i] : chunk_open(fr, i);
        if (!ch)
            return NULL;
        if (ch->nbacked == TM_CHUNK_FRAMES) {
            sp->grow_hint = i + TM_STRIPES;
            continue;
        }
        for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
            uint64_t unbacked = ~ch->backed_map[w];
            if (unbacked) {
                unsigned b = (unsigned)__builtin_ctzll(unbacked);
                ch->backed_map[w] |= 1ull << b;
                ch->nbacked++;
                sp->grow_hint = i;
                return frame_addr(fr, i, w * 64 + b);
            }
        }
    }
    return NULL;
}

/* Reserves n frames of the limit in nheld: added only if they fit, so no
 * other thread ever sees a reservation that is about to be taken back (a
 * whole chunk's 512 frames, added then removed, made concurrent frame and
 * metadata allocations fail near the limit). */
static bool reserve_frames(struct tm_frames *fr, uint64_t n)
{
    tmem_t *t = fr->t;
    int64_t meta = tm_meta_bytes(t);
    uint64_t m = (uint64_t)(meta > 0 ? meta : 0), max = tm_load(t->max_bytes);
    uint64_t held = atomic_load_explicit(&t->frames_held, TM_RELAXED);
    do {
        if ((held + n) * TMEM_PAGE_SIZE + m > max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&t->frames_held, &held, held + n,
                                                    memory_order_seq_cst, TM_RELAXED));
    tm_add(fr->nheld, n);
    return true;
}

/* Gives back n frames of fr's share of the frames held. */
static void unhold(struct tm_frames *fr, uint64_t n)
{
    tm_sub(fr->nheld, n);
    tm_sub(fr->t->frames_held, n);
}

/* Backs a whole unused chunk of stripe s at once, as a huge page where the
 * kernel has one (MADV_HUGEPAGE), and returns its first frame, the others
 * going to the free list; stripe lock held, all TM_CHUNK_FRAMES reserved by
 * the caller.  NULL if the stripe has no unused chunk. */
static uint8_t *take_huge_chunk_locked(struct tm_frames *fr, unsigned s)
{
    struct tm_stripe *sp = &fr->stripes[s];
    for (size_t i = sp->grow_hint; i < fr->nchunks; i += TM_STRIPES) {
        struct tm_chunk *ch = fr->chunks[i];
        uint8_t *base = fr->base + i * TM_CHUNK_BYTES;
        if (ch && ch->nbacked != 0)
            continue;                       /* in use: only an unused chunk goes whole */
        if (!ch && !(ch = chunk_open(fr, i)))
            return NULL;
        madvise(base, TM_CHUNK_BYTES, MADV_HUGEPAGE);     /* a hint: may be refused */
        ch->huge = true;
        for (unsigned w = 0; w < TM_CHUNK_WORDS; w++)
            ch->backed_map[w] = ch->free_map[w] = ~0ull;
        ch->free_map[0] &= ~1ull;                           /* frame 0: the caller's */
        ch->nbacked = TM_CHUNK_FRAMES;
        ch->nfree = TM_CHUNK_FRAMES - 1;
        free_list_add(sp, ch);
        tm_add(sp->nfree, TM_CHUNK_FRAMES - 1);
        return base;
    }
    return NULL;
}

static struct tm_chunk *chunk_of(struct tm_frames *fr, const void *p, size_t *bit)
{
    const uint8_t *q = p;
    *bit = 0;
    if (q < fr->base || q >= fr->base + fr->nchunks * TM_CHUNK_BYTES)
        return NULL;
    size_t idx = (size_t)(q - fr->base) / TMEM_PAGE_SIZE;
    *bit = idx % TM_CHUNK_FRAMES;
    return fr->chunks[idx / TM_CHUNK_FRAMES];
}

static inline size_t chunk_index(struct tm_frames *fr, const void *p)
{
    return (size_t)((const uint8_t *)p - fr->base) / TM_CHUNK_BYTES;
}

/* Marks frame f free in its chunk, of stripe sp; its lock held. */
static void mark_free_locked(struct tm_frames *fr, struct tm_stripe *sp, uint8_t *f)
{
    size_t bit;
    struct tm_chunk *ch = chunk_of(fr, f, &bit);
    tm_assert(ch && !(ch->free_map[bit / 64] & (1ull << (bit % 64))));
    ch->free_map[bit / 64] |= 1ull << (bit % 64);
    ch->nfree++;
    free_list_add(sp, ch);
    tm_add(sp->nfree, 1);
}

/* Gives n frames in transit back to their chunks, each stripe's under its
 * lock.  No lock held. */
static void give_back(struct tm_frames *fr, uint8_t *const *f, size_t n)
{
    for (unsigned s = 0; s < TM_STRIPES; s++) {
        struct tm_stripe *sp = &fr->stripes[s];
        bool locked = false;
        for (size_t i = 0; i < n; i++) {
            if (stripe_of(fr, chunk_index(fr, f[i])) != sp)
                continue;
            if (!locked) {
                pthread_mutex_lock(&sp->lock);
                locked = true;
            }
            mark_free_locked(fr, sp, f[i]);
            tm_sub(fr->ntransit, 1);
        }
        if (locked)
            pthread_mutex_unlock(&sp->lock);
    }
}

/* Empties every stripe's cache into the chunks' maps, where release and
 * lending look for free frames. */
static void flush_caches(struct tm_frames *fr)
{
    for (unsigned s = 0; s < TM_STRIPES; s++) {
        struct tm_stripe *sp = &fr->stripes[s];
        if (tm_load(sp->ncached) == 0)
            continue;
        uint8_t *out[TM_FRAME_CACHE];
        pthread_mutex_lock(&sp->lock);
        size_t n = (size_t)tm_load(sp->ncached);
        memcpy(out, sp->cache, n * sizeof(*out));
        tm_store_(sp->ncached, 0);
        tm_add(fr->ntransit, n);
        pthread_mutex_unlock(&sp->lock);
        give_back(fr, out, n);
    }
}

/* Steals up to TM_FRAME_BATCH free frames of stripe s (its chunks' first,
 * then its cache) for the CPU of stripe home: returns one, counted as used
 * there, and caches the rest at home (what does not fit goes back). */
static uint8_t *steal(struct tm_frames *fr, unsigned home, unsigned s, enum tm_frame_use use)
{
    struct tm_stripe *sp = &fr->stripes[s], *hp = &fr->stripes[home];
    if (tm_load(sp->nfree) == 0 && tm_load(sp->ncached) == 0)
        return NULL;                        /* a look without the lock */
    uint8_t *got[TM_FRAME_BATCH];
    size_t n = 0;
    pthread_mutex_lock(&sp->lock);
    while (n < TM_FRAME_BATCH && (got[n] = take_free_locked(fr, sp)) != NULL)
        n++;
    size_t c = (size_t)tm_load(sp->ncached);
    while (n < TM_FRAME_BATCH && c > 0)
        got[n++] = sp->cache[--c];
    tm_store_(sp->ncached, c);
    tm_add(fr->ntransit, n);
    pthread_mutex_unlock(&sp->lock);
    if (n == 0)
        return NULL;
    pthread_mutex_lock(&hp->lock);
    size_t h = (size_t)tm_load(hp->ncached);
    size_t keep = n - 1 < TM_FRAME_CACHE - h ? n - 1 : TM_FRAME_CACHE - h;
    memcpy(hp->cache + h, got + 1, keep * sizeof(*got));
    tm_store_(hp->ncached, h + keep);
    tm_add(*use_counter(hp, use), 1);
    tm_sub(fr->ntransit, 1 + keep);
    pthread_mutex_unlock(&hp->lock);
    if (n - 1 > keep)
        give_back(fr, got + 1 + keep, n - 1 - keep);
    return got[0];
}

/* A free frame for the CPU of stripe home, counted as used there: from its
 * cache, its stripe's chunks, or a batch from the others.  NULL if none was
 * found. */
static uint8_t *take_any_free(struct tm_frames *fr, unsigned home, enum tm_frame_use use)
{
    struct tm_stripe *hp = &fr->stripes[home];
    uint8_t *f;
    pthread_mutex_lock(&hp->lock);
    size_t c = (size_t)tm_load(hp->ncached);
    if (c > 0) {
        f = hp->cache[c - 1];
        tm_store_(hp->ncached, c - 1);
    } else {
        f = take_free_locked(fr, hp);
    }
    if (f)
        tm_add(*use_counter(hp, use), 1);
    pthread_mutex_unlock(&hp->lock);
    for (unsigned k = 1; k < TM_STRIPES && !f; k++)
        f = steal(fr, home, (home + k) % TM_STRIPES, use);
    return f;
}

/* Looks for a free frame again, after a sched_yield, for at most this long
 * while some are free: long enough for a thread holding frames in transit
 * to run again after its (virtual) CPU was taken away. */
#define TM_FREE_WAIT_NS 20000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Free frames anywhere: in chunks, caches, or in transit (relaxed reads). */
static uint64_t free_somewhere(struct tm_frames *fr)
{
    uint64_t n = tm_load(fr->ntransit);
    for (unsigned i = 0; i < TM_STRIPES; i++)
        n += tm_load(fr->stripes[i].nfree) + tm_load(fr->stripes[i].ncached);
    return n;
}

/* Arena units: a unit is `unit` frames (16, 32 or 64), upw of them to a
 * word of a chunk's maps; unit q of a chunk is bits [k * unit, +unit) of
 * word q / upw, k = q % upw.  A chunk's units are numbered from
 * ch->index * (TM_CHUNK_FRAMES / unit). */
static inline uint64_t unit_mask(const struct tm_frames *fr, unsigned k)
{
    return fr->unit == 64 ? ~0ull : ((1ull << fr->unit) - 1) << (k * fr->unit);
}

static inline unsigned units_per_chunk(const struct tm_frames *fr)
{
    return TM_CHUNK_FRAMES / fr->unit;
}

/* Arena: an unbacked unit of stripe s's chunks for the source to back,
 * marked growing; its lock held.  NULL if the stripe has none. */
static struct tm_chunk *pick_unit_locked(struct tm_frames *fr, unsigned s, unsigned *q)
{
    struct tm_stripe *sp = &fr->stripes[s];
    unsigned upw = 64 / fr->unit;
    for (size_t i = sp->grow_hint; i < fr->nchunks; i += TM_STRIPES) {
        struct tm_chunk *ch = fr->chunks[i] ? fr->chunks[i] : chunk_open(fr, i);
        if (!ch)
            return NULL;
        for (unsigned k = 0; k < units_per_chunk(fr); k++) {
            if ((ch->backed_map[k / upw] & unit_mask(fr, k % upw)) == 0 &&
                !(ch->growing & (1u << k))) {
                ch->growing |= 1u << k;
                sp->grow_hint = i;
                *q = k;
                return ch;
            }
        }
        if (sp->grow_hint == i)
            sp->grow_hint = i + TM_STRIPES;
    }
    return NULL;
}

/* Arena: has the source back a unit, at home if home's chunks have one
 * left, and takes its first frame (counted as used at the unit's stripe);
 * the others go to the free list.  The source is asked with no lock held
 * (it may wait for its owner).  NULL if it refuses or no unit is left. */
static uint8_t *grow_unit(struct tm_frames *fr, unsigned home, enum tm_frame_use use)
{
    tmem_t *t = fr->t;
    unsigned u = fr->unit, upw = 64 / u;
    for (unsigned k = 0; k < TM_STRIPES; k++) {
        unsigned s = (home + k) % TM_STRIPES;
        struct tm_stripe *sp = &fr->stripes[s];
        unsigned q;
        pthread_mutex_lock(&sp->lock);
        struct tm_chunk *ch = pick_unit_locked(fr, s, &q);
        pthread_mutex_unlock(&sp->lock);
        if (!ch)
            continue;
        size_t unit = (size_t)ch->index * units_per_chunk(fr) + q;
        int rc = tm_fault_hit(t) ? -ENOMEM : t->arena.ops->grow(t->arena.arg, (int)fr->kind, unit);
        uint8_t *f = NULL;
        pthread_mutex_lock(&sp->lock);
        ch->growing &= ~(1u << q);
        if (rc == 0) {
            unsigned w = q / upw, first = (q % upw) * u;
            uint64_t mask = unit_mask(fr, q % upw);
            tm_add(t->frames_held, u);
            tm_add(fr->nheld, u);
            ch->backed_map[w] |= mask;
            ch->nbacked += u;
            ch->free_map[w] |= mask & ~(1ull << first);     /* its first: the caller's */
            ch->nfree += u - 1;
            if (u > 1)
                free_list_add(sp, ch);
            tm_add(sp->nfree, u - 1);
            tm_add(*use_counter(sp, use), 1);
            f = frame_addr(fr, ch->index, (size_t)w * 64 + first);
            tm_inc(t->units_grown);
        }
        pthread_mutex_unlock(&sp->lock);
        return f;       /* a refusal is the owner's answer: no other stripe asks */
    }
    return NULL;
}

uint8_t *tm_frame_get(tmem_t *t, unsigned kind, enum tm_frame_use use)
{
    struct tm_frames *fr = &t->frames[kind];
    unsigned home = tm_cpu_stripe();
    uint8_t *f = take_any_free(fr, home, use);
    /* Free frames move: between a cache and their chunk (in transit, for a
     * moment in neither), and from one stripe to another (a steal), so one
     * look over the stripes can miss every one of them.  Look again while
     * some are free, rather than fail at the limit (or back a new frame
     * beside them); a thread moves frames only while it takes a stripe
     * lock, so this is short. */
    for (uint64_t until = 0; !f && free_somewhere(fr) > 0;) {
        uint64_t now = mono_ns();
        if (!until)
            until = now + TM_FREE_WAIT_NS;
        else if (now > until)
            break;
        sched_yield();
        f = take_any_free(fr, home, use);
    }
    if (f)
        return f;
    if (fr->units)
        return grow_unit(fr, home, use);
    /* a whole chunk at home, in one huge page, in a big engine (so that a
     * free chunk's worth held early is a small part of what it holds) */
    if (tm_load(t->max_bytes) >= TM_HUGE_MIN_CHUNKS * TM_CHUNK_BYTES &&
        tm_load(t->frames_held) >= (uint64_t)TM_HUGE_AFTER_CHUNKS * TM_CHUNK_FRAMES &&
        reserve_frames(fr, TM_CHUNK_FRAMES)) {
        struct tm_stripe *sp = &fr->stripes[home];
        pthread_mutex_lock(&sp->lock);
        f = take_huge_chunk_locked(fr, home);
        if (f)
            tm_add(*use_counter(sp, use), 1);
        pthread_mutex_unlock(&sp->lock);
        if (f)
            return f;
        unhold(fr, TM_CHUNK_FRAMES);
    }
    if (!reserve_frames(fr, 1))
        return NULL;
    /* a new frame, at home or, if home's chunks are all backed, elsewhere */
    for (unsigned k = 0; k < TM_STRIPES && !f; k++) {
        unsigned s = (home + k) % TM_STRIPES;
        struct tm_stripe *sp = &fr->stripes[s];
        pthread_mutex_lock(&sp->lock);
        f = take_unbacked_locked(fr, s);
        if (f)
            tm_add(*use_counter(sp, use), 1);
        pthread_mutex_unlock(&sp->lock);
    }
    if (!f)
        unhold(fr, 1);                      /* give the reservation back */
    return f;
}

/* The set frame f belongs to (the persistent set follows the ephemeral
 * one in the reservation). */
static inline struct tm_frames *set_of(tmem_t *t, const void *f)
{
    struct tm_frames *p = &t->frames[TMEM_ARENA_PERSISTENT];
    return (const uint8_t *)f >= p->base ? p : &t->frames[TMEM_ARENA_EPHEMERAL];
}

void tm_frame_put(tmem_t *t, uint8_t *f, enum tm_frame_use use)
{
    struct tm_frames *fr = set_of(t, f);
    struct tm_stripe *sp = &fr->stripes[tm_cpu_stripe()];
    uint8_t *out[TM_FRAME_CACHE / 2];
    size_t nout = 0;
    tm_assert(chunk_index(fr, f) < fr->nchunks);
    pthread_mutex_lock(&sp->lock);
    size_t c = (size_t)tm_load(sp->ncached);
#if TMEM_DEBUG >= 1
    for (size_t i = 0; i < c; i++)          /* freed twice on this CPU */
        tm_assert(sp->cache[i] != f);
#endif
    if (c == TM_FRAME_CACHE) {              /* full: the older half goes back */
        nout = TM_FRAME_CACHE / 2;
        memcpy(out, sp->cache, nout * sizeof(*out));
        memmove(sp->cache, sp->cache + nout, (c - nout) * sizeof(*out));
        c -= nout;
        tm_add(fr->ntransit, nout);
    }
    sp->cache[c] = f;
    tm_store_(sp->ncached, c + 1);
    tm_sub(*use_counter(sp, use), 1);
    pthread_mutex_unlock(&sp->lock);
    if (nout)
        give_back(fr, out, nout);
}

bool tm_frame_valid(tmem_t *t, const void *p)
{
    struct tm_frames *fr = set_of(t, p);
    size_t bit;
    if (((uintptr_t)p & (TMEM_PAGE_SIZE - 1)) != 0 || (const uint8_t *)p < fr->base ||
        (const uint8_t *)p >= fr->base + fr->nchunks * TM_CHUNK_BYTES)
        return false;
    struct tm_stripe *sp = stripe_of(fr, chunk_index(fr, p));
    pthread_mutex_lock(&sp->lock);
    struct tm_chunk *ch = chunk_of(fr, p, &bit);
    bool ok = ch && (ch->backed_map[bit / 64] & (1ull << (bit % 64))) &&
              !(ch->free_map[bit / 64] & (1ull << (bit % 64))) &&
              !(ch->lent_map[bit / 64] & (1ull << (bit % 64)));
    pthread_mutex_unlock(&sp->lock);
    for (unsigned s = 0; s < TM_STRIPES && ok; s++) {      /* not cached (free) */
        struct tm_stripe *cs = &fr->stripes[s];
        pthread_mutex_lock(&cs->lock);
        for (size_t i = 0; i < tm_load(cs->ncached) && ok; i++)
            ok = cs->cache[i] != p;
        pthread_mutex_unlock(&cs->lock);
    }
    return ok;
}

void tm_frames_count(tmem_t *t, uint64_t *nfree, uint64_t *nwhole, uint64_t *nzalloc)
{
    /* A stripe's use counts go below zero where frames taken on one CPU
     * are freed on another (they wrap: summed as signed, they are exact when
     * quiescent); read during traffic, the sum may be off by a few, or below
     * zero, which reads as 0. */
    uint64_t f = 0;
    int64_t w = 0, z = 0;
    for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++) {
        for (unsigned i = 0; i < TM_STRIPES; i++) {
            struct tm_stripe *sp = &t->frames[k].stripes[i];
            f += tm_load(sp->nfree) + tm_load(sp->ncached);
            w += (int64_t)tm_load(sp->nwhole);
            z += (int64_t)tm_load(sp->nzalloc);
        }
        f += tm_load(t->frames[k].ntransit);
    }
    w = w < 0 ? 0 : w;
    z = z < 0 ? 0 : z;
    if (nfree)
        *nfree = f;
    if (nwhole)
        *nwhole = (uint64_t)w;
    if (nzalloc)
        *nzalloc = (uint64_t)z;
}

/* Before a chunk backed whole gives frames back: advise it MADV_NOHUGEPAGE,
 * so that neither a fault on an empty range (whose page table the kernel
 * may have reclaimed) nor khugepaged's collapse can make 2 MiB resident
 * where the engine counts fewer frames. */
static void no_more_huge(struct tm_frames *fr, struct tm_chunk *ch)
{
    if (!ch->huge)
        return;
    madvise(frame_addr(fr, ch->index, 0), TM_CHUNK_BYTES, MADV_NOHUGEPAGE);
    ch->huge = false;
}

/* Releases free frames of stripe sp to the OS (free -> unbacked), up to n;
 * consecutive frames of a chunk go with one madvise.  Lock held. */
static size_t release_locked(struct tm_frames *fr, struct tm_stripe *sp, size_t n)
{
    size_t done = 0;
    /* Wholly free chunks first, each with one call: the kernel frees a huge
     * page at once only when all of it goes (a part only splits it, and its
     * memory waits for memory pressure).  take_huge_chunk_locked advises the
     * chunk MADV_HUGEPAGE again if it backs it whole again. */
    for (struct tm_chunk *ch = sp->with_free, *next; ch && n - done >= TM_CHUNK_FRAMES; ch = next) {
        next = ch->next_free;
        if (ch->nfree != TM_CHUNK_FRAMES)
            continue;
        uint8_t *base = frame_addr(fr, ch->index, 0);
        no_more_huge(fr, ch);
        madvise(base, TM_CHUNK_BYTES, MADV_DONTNEED);
        memset(ch->free_map, 0, sizeof(ch->free_map));
        memset(ch->backed_map, 0, sizeof(ch->backed_map));
        ch->nfree = ch->nbacked = 0;
        free_list_del(sp, ch);
        if (ch->index < sp->grow_hint)
            sp->grow_hint = ch->index;
        done += TM_CHUNK_FRAMES;
    }
    while (done < n && sp->with_free) {
        struct tm_chunk *ch = sp->with_free;
        for (unsigned w = 0; w < TM_CHUNK_WORDS && done < n; w++) {
            while (ch->free_map[w] && done < n) {
                unsigned b = (unsigned)__builtin_ctzll(ch->free_map[w]);
                unsigned e = b;     /* extend the run of free frames */
                while (e + 1 < 64 && (ch->free_map[w] & (1ull << (e + 1))) &&
                       done + (e + 1 - b) < n)
                    e++;
                unsigned len = e - b + 1;
                uint64_t mask = (len == 64) ? ~0ull : (((1ull << len) - 1) << b);
                no_more_huge(fr, ch);
                madvise(frame_addr(fr, ch->index, w * 64 + b), (size_t)len * TMEM_PAGE_SIZE,
                        MADV_DONTNEED);
                ch->free_map[w] &= ~mask;
                ch->backed_map[w] &= ~mask;
                ch->nfree -= len;
                ch->nbacked -= len;
                done += len;
            }
        }
        if (ch->nfree == 0)
            free_list_del(sp, ch);
        if (ch->index < sp->grow_hint)
            sp->grow_hint = ch->index;
    }
    tm_sub(sp->nfree, done);
    return done;
}

/* Arena: takes up to max wholly free units of stripe sp off its maps
 * (free -> unbacked), writing their numbers to out; lock held. */
static size_t release_units_locked(struct tm_frames *fr, struct tm_stripe *sp, size_t max,
                                   uint64_t *out)
{
    size_t done = 0;
    unsigned u = fr->unit, upw = 64 / u;
    const uint8_t *withheld = atomic_load_explicit(&fr->withheld, memory_order_acquire);
    for (struct tm_chunk *ch = sp->with_free, *next; ch && done < max; ch = next) {
        next = ch->next_free;
        for (unsigned q = 0; q < units_per_chunk(fr) && done < max; q++) {
            uint64_t mask = unit_mask(fr, q % upw);
            if ((ch->free_map[q / upw] & mask) != mask)
                continue;
            uint64_t n = (uint64_t)ch->index * units_per_chunk(fr) + q;
            if (withheld && ((__atomic_load_n(&withheld[n / 8], __ATOMIC_RELAXED) >> (n % 8)) & 1))
                continue;               /* being revoked: its owner took it */
            ch->free_map[q / upw] &= ~mask;
            ch->backed_map[q / upw] &= ~mask;
            ch->nfree -= u;
            ch->nbacked -= u;
            tm_sub(sp->nfree, u);
            out[done++] = n;
        }
        if (ch->nfree == 0)
            free_list_del(sp, ch);
        if (ch->index < sp->grow_hint)
            sp->grow_hint = ch->index;
    }
    return done;
}

size_t tm_units_release(struct tm_frames *fr, size_t max, uint64_t *out)
{
    tmem_t *t = fr->t;
    size_t done = 0;
    flush_caches(fr);
    for (unsigned s = 0; s < TM_STRIPES && done < max; s++) {
        struct tm_stripe *sp = &fr->stripes[s];
        uint64_t got[64];
        for (;;) {
            size_t want = max - done < 64 ? max - done : 64;
            if (want == 0 || tm_load(sp->nfree) < fr->unit)
                break;
            pthread_mutex_lock(&sp->lock);
            size_t n = release_units_locked(fr, sp, want, got);
            pthread_mutex_unlock(&sp->lock);
            if (n == 0)
                break;
            unhold(fr, n * fr->unit);
            tm_add(t->units_shrunk, n);
            for (size_t i = 0; i < n; i++) {
                t->arena.ops->shrink(t->arena.arg, (int)fr->kind, (size_t)got[i]);
                if (out)
                    out[done + i] = got[i];
            }
            done += n;
        }
    }
    return done;
}

size_t tm_frames_release(tmem_t *t, size_t n)
{
    size_t done = 0;
    unsigned home = tm_home_stripe();
    for (unsigned kind = 0; kind < TMEM_ARENA_KINDS && done < n; kind++) {
        struct tm_frames *fr = &t->frames[kind];
        if (fr->units) {        /* whole free units only, back to their owner */
            done += tm_units_release(fr, (n - done + fr->unit - 1) / fr->unit, NULL) * fr->unit;
            continue;
        }
        flush_caches(fr);
        for (unsigned k = 0; k < TM_STRIPES && done < n; k++) {
            struct tm_stripe *sp = &fr->stripes[(home + k) % TM_STRIPES];
            if (tm_load(sp->nfree) == 0)
                continue;
            pthread_mutex_lock(&sp->lock);
            size_t got = release_locked(fr, sp, n - done);
            pthread_mutex_unlock(&sp->lock);
            unhold(fr, got);
            done += got;
        }
    }
    tm_add(t->st.relinquished, done);
    return done;
}

/* Finds 2^order aligned free frames in one chunk of fr and lends them out. */
static void *lend_from(struct tm_frames *fr, unsigned order)
{
    tmem_t *t = fr->t;
    size_t n = (size_t)1 << order;
    void *res = NULL;
    pthread_mutex_lock(&fr->lent_lock);     /* room in the record first */
    if (fr->nlent_blocks == fr->lent_cap) {
        size_t cap = fr->lent_cap ? fr->lent_cap * 2 : 16;
        struct tm_lent *nl = realloc(fr->lent, cap * sizeof(*nl));
        if (nl) {
            fr->lent = nl;
            fr->lent_cap = cap;
        }
    }
    bool room = fr->nlent_blocks < fr->lent_cap;
    pthread_mutex_unlock(&fr->lent_lock);
    if (!room)
        return NULL;
    flush_caches(fr);
    for (unsigned s = 0; s < TM_STRIPES && !res; s++) {
        struct tm_stripe *sp = &fr->stripes[s];
        pthread_mutex_lock(&sp->lock);
        for (struct tm_chunk *ch = sp->with_free; ch && !res; ch = ch->next_free) {
            if (ch->nfree < n)
                continue;
            for (size_t start = 0; start < TM_CHUNK_FRAMES; start += n) {
                bool all = true;
                for (size_t k = start; k < start + n && all; k++)
                    all = (ch->free_map[k / 64] >> (k % 64)) & 1;
                if (!all)
                    continue;
                for (size_t k = start; k < start + n; k++) {
                    ch->free_map[k / 64] &= ~(1ull << (k % 64));
                    ch->lent_map[k / 64] |= 1ull << (k % 64);
                }
                ch->nfree -= (uint32_t)n;
                if (ch->nfree == 0)
                    free_list_del(sp, ch);
                res = frame_addr(fr, ch->index, start);
                break;
            }
        }
        if (res) {
            tm_sub(sp->nfree, n);
            pthread_mutex_lock(&fr->lent_lock);
            fr->lent[fr->nlent_blocks++] = (struct tm_lent){ res, order };
            pthread_mutex_unlock(&fr->lent_lock);
        }
        pthread_mutex_unlock(&sp->lock);
    }
    if (res) {
        unhold(fr, n);
        tm_add(fr->nlent, n);
        memset(res, 0, n * TMEM_PAGE_SIZE);     /* scrub: the data was a tenant's */
        tm_add(t->st.lent, n);
    }
    return res;
}

void *tm_frames_lend(tmem_t *t, unsigned order)
{
    if (t->arena.ops)
        return NULL;            /* an arena's memory is its owner's to lend */
    void *p = lend_from(&t->frames[TMEM_ARENA_EPHEMERAL], order);
    return p ? p : lend_from(&t->frames[TMEM_ARENA_PERSISTENT], order);
}

int tm_frames_unlend(tmem_t *t, void *p, unsigned order)
{
    struct tm_frames *fr = set_of(t, p);
    size_t n = (size_t)1 << order, i, bit;
    pthread_mutex_lock(&fr->lent_lock);
    for (i = 0; i < fr->nlent_blocks; i++)
        if (fr->lent[i].p == p && fr->lent[i].order == order)
            break;
    if (i == fr->nlent_blocks) {
        pthread_mutex_unlock(&fr->lent_lock);
        return -EINVAL;
    }
    fr->lent[i] = fr->lent[--fr->nlent_blocks];
    pthread_mutex_unlock(&fr->lent_lock);
    struct tm_stripe *sp = stripe_of(fr, chunk_index(fr, p));
    pthread_mutex_lock(&sp->lock);
    struct tm_chunk *ch = chunk_of(fr, p, &bit);
    for (size_t k = bit; k < bit + n; k++) {
        ch->lent_map[k / 64] &= ~(1ull << (k % 64));
        ch->free_map[k / 64] |= 1ull << (k % 64);
    }
    ch->nfree += (uint32_t)n;
    free_list_add(sp, ch);
    tm_add(sp->nfree, n);
    pthread_mutex_unlock(&sp->lock);
    tm_sub(fr->nlent, n);
    tm_add(fr->nheld, n);
    tm_add(t->frames_held, n);
    tm_fit_by_releasing(t, 0);      /* back under the limit if need be */
    return 0;
}

static int cmp_frame(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(uint8_t *const *)a, y = (uintptr_t)*(uint8_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Stripe s's cache: each frame backed, neither free nor lent in its chunk;
 * appends them to all (for the duplicate check).  All stripe locks held. */
static int check_cache(struct tm_frames *fr, struct tm_stripe *sp, unsigned s, uint8_t **all,
                       size_t *nall)
{
    int bad = 0;
    size_t n = (size_t)tm_load(sp->ncached);
    if (n > TM_FRAME_CACHE) {
        tm_report("frames: stripe %u caches %zu frames (at most %u)", s, n, TM_FRAME_CACHE);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        size_t bit;
        struct tm_chunk *ch = chunk_of(fr, sp->cache[i], &bit);
        uint64_t m = 1ull << (bit % 64);
        if (!ch || ((uintptr_t)sp->cache[i] & (TMEM_PAGE_SIZE - 1)) ||
            !(ch->backed_map[bit / 64] & m) || (ch->free_map[bit / 64] & m) ||
            (ch->lent_map[bit / 64] & m)) {
            tm_report("frames: stripe %u caches %p, not a backed frame in use", s,
                      (void *)sp->cache[i]);
            bad++;
        }
        all[(*nall)++] = sp->cache[i];
    }
    return bad;
}

static int check_set(struct tm_frames *fr)
{
    int bad = 0;
    uint64_t nbacked = 0, nlent = 0, held = 0;
    uint8_t *cached[TM_STRIPES * TM_FRAME_CACHE];
    size_t ncached = 0;
    for (unsigned s = 0; s < TM_STRIPES; s++)
        pthread_mutex_lock(&fr->stripes[s].lock);
    for (unsigned s = 0; s < TM_STRIPES; s++) {
        struct tm_stripe *sp = &fr->stripes[s];
        uint64_t nfree = 0, onlist = 0;
        for (struct tm_chunk *ch = sp->with_free; ch; ch = ch->next_free) {
            onlist++;
            if (ch->index % TM_STRIPES != s) {
                tm_report("frames: chunk %u on the free list of stripe %u", ch->index, s);
                bad++;
            }
        }
        for (size_t i = s; i < fr->nchunks; i += TM_STRIPES) {
            struct tm_chunk *ch = fr->chunks[i];
            if (!ch)
                continue;
            size_t f = 0, b = 0, l = 0;
            for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
                f += popc(ch->free_map[w]);
                b += popc(ch->backed_map[w]);
                l += popc(ch->lent_map[w]);
                if ((ch->free_map[w] | ch->lent_map[w]) & ~ch->backed_map[w]) {
                    tm_report("frames: chunk %zu has free or lent frames that are not backed", i);
                    bad++;
                }
                if (ch->free_map[w] & ch->lent_map[w]) {
                    tm_report("frames: chunk %zu has frames both free and lent", i);
                    bad++;
                }
            }
            if (f != ch->nfree || b != ch->nbacked) {
                tm_report("frames: chunk %zu counts free %u backed %u, maps say %zu %zu", i,
                          ch->nfree, ch->nbacked, f, b);
                bad++;
            }
            if ((ch->nfree > 0) != ch->on_free_list) {
                tm_report("frames: chunk %zu free-list membership wrong", i);
                bad++;
            }
            onlist -= ch->on_free_list;
            nfree += f;
            nbacked += b;
            nlent += l;
        }
        if (onlist != 0 || nfree != tm_load(sp->nfree)) {
            tm_report("frames: stripe %u counts %llu free frames, maps say %llu%s", s,
                      (unsigned long long)tm_load(sp->nfree), (unsigned long long)nfree,
                      onlist ? "; its free list holds foreign chunks" : "");
            bad++;
        }
        held += tm_load(sp->nfree) + tm_load(sp->ncached) + tm_load(sp->nwhole) +
                tm_load(sp->nzalloc);
        bad += check_cache(fr, sp, s, cached, &ncached);
    }
    held += tm_load(fr->ntransit);
    qsort(cached, ncached, sizeof(*cached), cmp_frame);
    for (size_t i = 1; i < ncached; i++)
        if (cached[i] == cached[i - 1]) {
            tm_report("frames: frame %p cached twice", (void *)cached[i]);
            bad++;
        }
    if (nlent != tm_load(fr->nlent) || nbacked - nlent != tm_load(fr->nheld) ||
        held != tm_load(fr->nheld)) {
        tm_report("frames (set %u): held %llu (stripes say %llu), lent %llu; maps: backed %llu "
                  "lent %llu", fr->kind, (unsigned long long)tm_load(fr->nheld),
                  (unsigned long long)held, (unsigned long long)tm_load(fr->nlent),
                  (unsigned long long)nbacked, (unsigned long long)nlent);
        bad++;
    }
    for (unsigned s = TM_STRIPES; s-- > 0;)
        pthread_mutex_unlock(&fr->stripes[s].lock);
    return bad;
}

int tm_frames_check(tmem_t *t)
{
    int bad = 0;
    for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++) {
        bad += check_set(&t->frames[k]);
        if (t->frames[k].units)
            bad += tm_units_check(&t->frames[k]);
    }
    uint64_t sum = tm_load(t->frames[0].nheld) + tm_load(t->frames[1].nheld);
    if (sum != tm_load(t->frames_held)) {
        tm_report("frames: the engine holds %llu, its two sets %llu",
                  (unsigned long long)tm_load(t->frames_held), (unsigned long long)sum);
        bad++;
    }
    return bad;
}

/* ------------------------------------------------------------------------
 * Units of an arena (arena.c runs these with every call on the engine's
 * client held off: nothing else moves frames meanwhile)
 * ---------------------------------------------------------------------- */
void tm_frames_flush(struct tm_frames *fr) { flush_caches(fr); }

void tm_frames_quiesce(struct tm_frames *fr)
{
    for (unsigned s = 0; s < TM_STRIPES; s++) {
        pthread_mutex_lock(&fr->stripes[s].lock);
        pthread_mutex_unlock(&fr->stripes[s].lock);
    }
}

/* The chunk of unit n, or NULL if never opened; its word and mask. */
static struct tm_chunk *unit_chunk(struct tm_frames *fr, uint64_t n, unsigned *w,
                                   uint64_t *mask)
{
    unsigned upc = units_per_chunk(fr), q = (unsigned)(n % upc), upw = 64 / fr->unit;
    *w = q / upw;
    *mask = unit_mask(fr, q % upw);
    return n / upc < fr->nchunks ? fr->chunks[n / upc] : NULL;
}

int tm_unit_used(struct tm_frames *fr, uint64_t n)
{
    unsigned w;
    uint64_t m;
    struct tm_chunk *ch = unit_chunk(fr, n, &w, &m);
    if (!ch)
        return -1;
    struct tm_stripe *sp = stripe_of(fr, ch->index);
    pthread_mutex_lock(&sp->lock);
    int used = (ch->backed_map[w] & m) == 0 ? -1 : (int)popc(ch->backed_map[w] & ~ch->free_map[w] & m);
    pthread_mutex_unlock(&sp->lock);
    return used;
}

bool tm_unit_drop(struct tm_frames *fr, uint64_t n)
{
    unsigned w;
    uint64_t m;
    struct tm_chunk *ch = unit_chunk(fr, n, &w, &m);
    if (!ch)
        return false;
    struct tm_stripe *sp = stripe_of(fr, ch->index);
    pthread_mutex_lock(&sp->lock);
    /* checked under the lock: a unit released meanwhile is not dropped twice */
    if ((ch->backed_map[w] & m) != m || (ch->free_map[w] & m) != m) {
        pthread_mutex_unlock(&sp->lock);
        return false;
    }
    ch->free_map[w] &= ~m;
    ch->backed_map[w] &= ~m;
    ch->nfree -= fr->unit;
    ch->nbacked -= fr->unit;
    tm_sub(sp->nfree, fr->unit);
    if (ch->nfree == 0)
        free_list_del(sp, ch);
    if (ch->index < sp->grow_hint)
        sp->grow_hint = ch->index;
    pthread_mutex_unlock(&sp->lock);
    unhold(fr, fr->unit);
    return true;
}

uint64_t tm_units_held(struct tm_frames *fr, uint64_t *free_units)
{
    uint64_t n = 0, f = 0;
    unsigned upw = 64 / fr->unit;
    for (size_t i = 0; i < fr->nchunks; i++) {
        struct tm_stripe *sp = stripe_of(fr, i);
        pthread_mutex_lock(&sp->lock);
        struct tm_chunk *ch = fr->chunks[i];
        for (unsigned q = 0; ch && q < units_per_chunk(fr); q++) {
            uint64_t m = unit_mask(fr, q % upw);
            bool backed = (ch->backed_map[q / upw] & m) != 0;
            n += backed;
            f += backed && (ch->free_map[q / upw] & m) == m;
        }
        pthread_mutex_unlock(&sp->lock);
    }
    if (free_units)
        *free_units = f;
    return n;
}

uint64_t tm_units_count(const struct tm_frames *fr)
{
    return (uint64_t)fr->nchunks * units_per_chunk(fr);
}

/* An arena's set: every unit whole (backed or not), none half grown,
 * nothing lent. */
int tm_units_check(struct tm_frames *fr)
{
    int bad = 0;
    unsigned upw = 64 / fr->unit;
    for (size_t i = 0; i < fr->nchunks; i++) {
        struct tm_chunk *ch = fr->chunks[i];
        for (unsigned q = 0; ch && q < units_per_chunk(fr); q++) {
            uint64_t m = unit_mask(fr, q % upw), b = ch->backed_map[q / upw] & m;
            if (b != 0 && b != m) {
                tm_report("arena: unit %zu of set %u is partly backed",
                          i * units_per_chunk(fr) + q, fr->kind);
                bad++;
            }
        }
        if (ch && (ch->growing || ch->huge)) {
            tm_report("arena: chunk %zu of set %u is %s", i, fr->kind,
                      ch->growing ? "still growing" : "huge");
            bad++;
        }
    }
    if (tm_load(fr->nlent)) {
        tm_report("arena: set %u lends frames", fr->kind);
        bad++;
    }
    return bad;
}
