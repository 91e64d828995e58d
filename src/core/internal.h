/* SPDX-License-Identifier: MIT */
/*
 * internal.h - the engine's internal API, sectioned by the file that owns
 * each function.  Internal non-static symbols carry the tm_ prefix; nothing
 * here is exported from libtmem (built with -fvisibility=hidden).
 */
#ifndef TMEM_CORE_INTERNAL_H
#define TMEM_CORE_INTERNAL_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "types.h"

/* ---- assertions and reports -------------------------------------------
 * tm_assert() guards internal invariants in debug builds (TMEM_DEBUG >= 1);
 * never use it on client input, which is validated and counted instead. */
#ifndef TMEM_DEBUG
#define TMEM_DEBUG 0
#endif
#if TMEM_DEBUG >= 1
#define tm_assert(x) ((x) ? (void)0 : tm_assert_fail(#x, __FILE__, __LINE__))
#else
#define tm_assert(x) ((void)0)
#endif
_Noreturn void tm_assert_fail(const char *expr, const char *file, int line);

#define TM_RELAXED memory_order_relaxed
#define tm_inc(a)      atomic_fetch_add_explicit(&(a), 1, TM_RELAXED)
#define tm_add(a, n)   atomic_fetch_add_explicit(&(a), (n), TM_RELAXED)
#define tm_sub(a, n)   atomic_fetch_sub_explicit(&(a), (n), TM_RELAXED)
#define tm_load(a)     atomic_load_explicit(&(a), TM_RELAXED)
#define tm_store_(a, v) atomic_store_explicit(&(a), (v), TM_RELAXED)

/* ---- engine.c ----------------------------------------------------------- */
/* Opens an engine over arena (NULL: anonymous memory). */
tmem_t *tm_open(const tmem_config_t *cfg, const tmem_arena_t *arena);
/* An arena engine's limit: none of its own (its owner's grants bound it). */
#define TM_ARENA_NO_LIMIT (UINT64_MAX / 4)

/* ---- alloc.c: metadata allocation, accounting, failure injection ------ */
/* Allocates counted metadata.  May make room by releasing free frames and,
 * if may_evict, by evicting ephemeral pages (never under a bucket lock).
 * NULL when over the limit or when injection fails this allocation. */
void *tm_meta_alloc(tmem_t *t, size_t size, bool may_evict);
void *tm_meta_calloc(tmem_t *t, size_t size, bool may_evict);
/* Zeroed metadata aligned to align (a power of two), for structures with
 * cache-line-aligned members; freed with tm_meta_free. */
void *tm_meta_calloc_aligned(tmem_t *t, size_t size, size_t align);
/* The same for a new client's own structure, which pages never crowd out:
 * when nothing can be evicted it may go up to TM_OPEN_RESERVE over the
 * limit (a client's own structure is under 2 KiB; its stores come with its
 * first pools). */
#define TM_OPEN_RESERVE (512u * 1024u)
void *tm_meta_calloc_reserved(tmem_t *t, size_t size, size_t align);
void  tm_meta_free(tmem_t *t, void *p);
/* Is there room under the limit for want more bytes?  Releases free
 * frames, then (may_evict) evicts ephemeral pages to make it; false (and
 * counted in alloc_failed) if it cannot.  For memory charged in advance
 * (descriptor blocks) that must still be refused over the limit. */
bool  tm_meta_room(tmem_t *t, uint64_t want, bool may_evict);
/* Would want more bytes of metadata fit under the limit now?  No side effect. */
bool  tm_meta_fits(tmem_t *t, uint64_t want);
/* Not zeroed; align a power of two; freed with tm_meta_free. */
void *tm_meta_alloc_aligned(tmem_t *t, size_t size, size_t align, bool may_evict);

/* ---- slab.c: page descriptors and objects (64- and 128-byte slots) ---- */
void    *tm_slab_alloc(tmem_t *t, enum tm_slab_kind k, bool may_evict); /* not zeroed */
void     tm_slab_free(tmem_t *t, void *p);
void     tm_slab_init(tmem_t *t);
void     tm_slab_fini(tmem_t *t);
uint64_t tm_slab_live(tmem_t *t, enum tm_slab_kind k);  /* slots in use */
int      tm_slab_check(tmem_t *t);     /* violations found */
/* true if this internal allocation is to fail (failure injection). */
bool  tm_fault_hit(tmem_t *t);
uint64_t tm_bytes_held(tmem_t *t);
int64_t tm_meta_bytes(tmem_t *t);      /* exact: the sum of the stripes */
/* Releases free frames to the OS until bytes_held + want <= limit; returns
 * true if that fits now. */
bool  tm_fit_by_releasing(tmem_t *t, uint64_t want);

/* ---- frame.c ---------------------------------------------------------- */
/* Reserves address space for both sets (t->arena set first: an arena's
 * source attaches its memory). */
int    tm_frames_init(tmem_t *t, uint64_t eph_bytes, uint64_t pers_bytes);
void   tm_frames_fini(tmem_t *t);
enum tm_frame_use { TM_FRAME_WHOLE, TM_FRAME_ZALLOC };
/* A frame of set kind (TMEM_ARENA_EPHEMERAL or _PERSISTENT) from the free
 * list, or a newly backed one if the limit (or the arena's owner) allows;
 * NULL if neither (the caller may evict and retry). */
uint8_t *tm_frame_get(tmem_t *t, unsigned kind, enum tm_frame_use use);
void   tm_frame_put(tmem_t *t, uint8_t *f, enum tm_frame_use use);
size_t tm_frames_release(tmem_t *t, size_t n);        /* free -> OS */
void  *tm_frames_lend(tmem_t *t, unsigned order);      /* free -> lent */
int    tm_frames_unlend(tmem_t *t, void *p, unsigned order);
bool   tm_frame_valid(tmem_t *t, const void *p);       /* a used frame of ours? (tests) */
/* A page table's hint for data at loc: the number + 1 of its frame if loc
 * is a whole frame, else 0.  (When dedup turns that page into a body, the
 * body keeps the frame, so the hint stays true.) */
static inline uint32_t tm_frame_hint(const tmem_t *t, const struct tm_loc *loc)
{
    if (loc->kind != TM_LOC_WHOLE)
        return 0;
    /* numbered from the start of the reservation (both sets) */
    return (uint32_t)((size_t)(loc->u.frame - t->frames[0].base) / TMEM_PAGE_SIZE) + 1;
}
/* Starts loading the first lines of the frame a hint names (at worst some
 * other frame of the reservation: never read, never faults). */
static inline void tm_frame_prefetch(const tmem_t *t, uint32_t hint)
{
    size_t n = (size_t)hint - 1;
    if (hint && n < (t->frames[0].nchunks + t->frames[1].nchunks) * TM_CHUNK_FRAMES)
        for (unsigned i = 0; i < TM_HINT_LINES; i++)
            __builtin_prefetch(t->frames[0].base + n * TMEM_PAGE_SIZE + i * 64, 0, 3);
}
int    tm_frames_check(tmem_t *t);
/* Arena units (frame.c), for arena.c, which runs them with the engine's
 * client write-locked.  A unit's number is its frame offset in its set / 64. */
void   tm_frames_flush(struct tm_frames *fr);      /* caches -> maps */
/* Returns once every stripe lock of fr was free a moment: whoever read a
 * field under one before the call is done with what it read. */
void   tm_frames_quiesce(struct tm_frames *fr);
/* Gives up to max wholly free units back to the source (ops->shrink);
 * their numbers to out (may be NULL).  How many went. */
size_t tm_units_release(struct tm_frames *fr, size_t max, uint64_t *out);
int    tm_unit_used(struct tm_frames *fr, uint64_t unit);   /* frames used, -1 unbacked (takes its stripe lock) */
/* Takes a wholly free unit off the maps without telling the source (it
 * took it).  false if it is not held or not wholly free. */
bool   tm_unit_drop(struct tm_frames *fr, uint64_t unit);
uint64_t tm_units_held(struct tm_frames *fr, uint64_t *free_units);
int    tm_units_check(struct tm_frames *fr);
uint64_t tm_units_count(const struct tm_frames *fr);      /* units of its range */
/* The unit of frame f of set fr. */
static inline uint64_t tm_unit_of(const struct tm_frames *fr, const void *f)
{
    return (uint64_t)((const uint8_t *)f - fr->base) / TMEM_PAGE_SIZE / fr->unit;
}
unsigned tm_home_stripe(void);     /* the calling thread's stripe (counters, brlock) */
unsigned tm_cpu_stripe(void);      /* the caller's CPU's stripe (frames, descriptors) */
/* Frames free, holding whole pages, holding zalloc spans (sums of stripes). */
void   tm_frames_count(tmem_t *t, uint64_t *nfree, uint64_t *nwhole, uint64_t *nzalloc);

/* ---- zalloc.c --------------------------------------------------------- */
void   tm_zheap_init(struct tm_zheap *h, unsigned kind);
void   tm_zheap_fini(tmem_t *t, struct tm_zheap *h);
/* Allocates a fragment of size bytes (1..4096): fills loc (FRAG), 0 or
 * -ENOMEM when no frame could be had (the caller may evict and retry). */
int    tm_zalloc(tmem_t *t, struct tm_zheap *h, uint32_t size, struct tm_loc *loc);
/* Frees the fragment loc names, in heap h.  loc may be its owner (a pgd's or
 * body's loc, which compaction may move: its place is read only under the
 * class lock, and the class comes from the immutable size) or a disowned
 * copy.  May compact the class (see zalloc.c). */
void   tm_zfree(tmem_t *t, struct tm_zheap *h, const struct tm_loc *loc);
/* Makes owner (a pgd's or body's loc, tagged TM_OWNER_BODY for a body) the
 * owner of its fragment in h, or (owner 0) disowns the fragment loc names. */
void   tm_zset_owner(struct tm_zheap *h, const struct tm_loc *loc, uintptr_t owner);
/* Compaction's side of the owners' locks (store.c): trylocks what readers
 * of owner's loc hold; returns the locked mutex or NULL if busy. */
pthread_mutex_t *tm_owner_trylock(struct tm_zheap *h, uintptr_t owner);
void   tm_zwrite(const struct tm_loc *loc, const void *src);
/* Returns a pointer to the fragment's bytes: in place if it does not
 * straddle frames, else copied into scratch (TMEM_PAGE_SIZE bytes). */
const void *tm_zread(const struct tm_loc *loc, void *scratch);
uint32_t tm_zclass_size(uint32_t size);                /* slot size for size */
uint64_t tm_zheap_frames(struct tm_zheap *h);
int    tm_zheap_check(struct tm_zheap *h, uint64_t *frags_out);

/* ---- codec.c ---------------------------------------------------------- */
/* 1 and *word set if the page is one 64-bit word repeated. */
bool   tm_page_same_filled(const void *page, uint64_t *word);
void   tm_fill_word(void *page, uint64_t word);
/* Copies a page into a frame (frames are page aligned) with stores that do
 * not read the frame's lines in first. */
void   tm_copy_to_frame(void *frame, const void *page);
/* Compresses page into dst (capacity cap): the length, or 0 if it does not
 * fit in cap or the codec failed. */
uint32_t tm_compress(int codec, int level, const void *page, void *dst, uint32_t cap);
/* Decompresses into page; 0 or -EIO if the data is not a whole page. */
int    tm_decompress(int codec, const void *src, uint32_t len, void *page);
uint64_t tm_page_hash(const void *page);
uint64_t tm_page_hash_avx2(const void *page);   /* hash_avx2.c: only if the CPU has AVX2 */
/* The keyed hash of an oid (XXH3-64 seeded with the engine's random key). */
uint64_t tm_oid_hash(const tmem_t *t, const tmem_oid_t *oid);
/* Per-thread scratch buffers of TMEM_PAGE_SIZE bytes (2 of them). */
uint8_t *tm_scratch(int which);

/* ---- store.c: data placement (locs) and dedup bodies ------------------ */
struct tm_store *tm_store_new(tmem_t *t, bool persistent);
void   tm_store_free(tmem_t *t, struct tm_store *s);
/* Stores page into s: fills loc.  codec chooses compression.  May evict
 * (the caller holds no bucket lock).  0, or -ENOMEM.  Counts compression,
 * dedup and same-filled outcomes on client cl.  *index_hash is the hash to
 * enter the page under in the dedup index once it is linked (0: none);
 * *dd_skipped is set when sparse dedup did not look the page up (for the
 * caller to count on its pool). */
int    tm_store_put(tmem_t *t, struct tm_store *s, struct tmem_client *cl,
                    const void *page, int codec, struct tm_loc *loc, uint64_t *index_hash,
                    bool *dd_skipped);
/* Enters linked descriptor pgd (direct data) in the dedup index under hash
 * (0: nothing to do), or takes it out; bucket lock held. */
void   tm_dedup_index(tmem_t *t, struct tm_store *s, struct tm_pgd *pgd, uint64_t hash);
void   tm_dedup_unindex(struct tm_store *s, struct tm_pgd *pgd);
/* Starts loading the index slot where hash would be found (no lock): lets
 * a caller overlap that cache miss with other work (a page copy). */
void   tm_dedup_prefetch(struct tm_store *s, uint64_t hash);
/* Copies the data at loc out to page; 0 or -EIO (corrupt: internal bug). */
int    tm_loc_read(struct tm_store *s, const struct tm_loc *loc, void *page);
/* Frees what loc refers to in store s (drops a body reference). */
void   tm_loc_free(tmem_t *t, struct tm_store *s, const struct tm_loc *loc);
/* Checks s against what the descriptors using it refer to (quiescent). */
int    tm_store_check(struct tm_store *s, uint64_t body_refs_expected, uint64_t indexed_expected,
                      uint64_t frags_expected, uint64_t wholes_expected);
/* Entries of s's dedup index (distinct data: a page alone, or a body), and
 * how many of them are bodies shared by several pages. */
void   tm_store_dedup_counts(struct tm_store *s, uint64_t *entries, uint64_t *bodies);
/* Adds delta to a store counter (on the calling thread's stripe); reads one. */
void   tm_store_count_add(struct tm_store *s, enum tm_store_counter which, int64_t delta);
uint64_t tm_store_count(struct tm_store *s, enum tm_store_counter which);

/* ---- table.c ---------------------------------------------------------- */
enum tm_table_kind { TM_TABLE_PAGES, TM_TABLE_OBJS };
void  *tm_table_find(const struct tm_table *tb, enum tm_table_kind k, uint64_t key,
                     const tmem_oid_t *oid);
/* A page table's entry for index, or NULL; its frame hint through *frame
 * (0 if absent). */
void  *tm_table_find_page(const struct tm_table *tb, uint32_t index, uint32_t *frame);
/* Renews the frame hint of pgd's slot after pgd->loc changed. */
void   tm_table_renew_hint(const tmem_t *t, struct tm_table *tb, const struct tm_pgd *pgd);
/* The capacity an insert would grow tb to, or 0 if it would not grow. */
uint32_t tm_table_grow_cap(const struct tm_table *tb);
/* Moves tb into slots (cap entries from tm_meta_alloc; cap from
 * tm_table_grow_cap), freeing the old slots.  Lets a caller allocate the
 * new slots where it may evict, outside the bucket lock. */
void   tm_table_grow_into(tmem_t *t, struct tm_table *tb, enum tm_table_kind k,
                          struct tm_slot *slots, uint32_t cap);
/* Inserts e (key not present), growing if need be without eviction.
 * 0, or -ENOMEM (growth failed). */
int    tm_table_insert(tmem_t *t, struct tm_table *tb, enum tm_table_kind k, void *e);
void   tm_table_remove(struct tm_table *tb, enum tm_table_kind k, void *e);
void   tm_table_free(tmem_t *t, struct tm_table *tb);
/* An empty table over the cap slots that follow tb in its allocation. */
void   tm_table_init_inline(struct tm_table *tb, uint32_t cap, uint64_t seed);
/* The entry in slot i (i < tb->cap), or NULL: for walks over a table. */
static inline void *tm_table_at(const struct tm_table *tb, uint32_t i)
{
    return tb->slots[i].e;
}

/* ---- pool.c ----------------------------------------------------------- */
struct tm_pool *tm_pool_new(tmem_t *t, struct tmem_client *owner, uint32_t flags,
                            tmem_uuid_t uuid, bool shared, struct tm_store *store);
/* Frees every page and object, then the pool.  The caller made the pool
 * unreachable (no slot points to it) under the owning client's write lock. */
void   tm_pool_free(tmem_t *t, struct tm_pool *p);
/* Creates (or joins) a pool for c at slot (-1: the lowest free one).
 * Returns the pool id or a negative code (-EBUSY: slot taken). */
int    tm_pool_create(struct tmem_client *c, int slot, tmem_uuid_t uuid, uint32_t flags);
/* Drops client c's use of p (c write-locked): frees a private pool, leaves
 * a shared one (freeing it if c was the last sharer). */
void   tm_pool_leave(tmem_t *t, struct tmem_client *c, struct tm_pool *p);
struct tm_bucket *tm_pool_bucket(struct tm_pool *p, uint64_t oid_hash);
/* Unlinks pgd from its object and (ephemeral) the LRU; frees the object if
 * it became empty (returned through *freed_obj for the caller to free after
 * unlocking, or NULL).  Caller holds the bucket lock. */
void   tm_pgd_unlink_locked(struct tm_pool *p, struct tm_bucket *b, struct tm_pgd *pgd,
                            struct tm_obj **freed_obj);
void   tm_pgd_release(tmem_t *t, struct tm_pool *p, struct tm_pgd *pgd);
/* Detaches object o and all its pages (bucket lock held): off the bucket
 * table, the LRU and the counts.  Returns how many pages it had.  The caller
 * frees them with tm_obj_release() after unlocking. */
uint32_t tm_obj_detach_locked(struct tm_pool *p, struct tm_bucket *b, struct tm_obj *o);
void   tm_obj_release(tmem_t *t, struct tm_pool *p, struct tm_obj *o);
void   tm_lru_add_locked(struct tm_pool *p, struct tm_pgd *pgd); /* takes lru_lock */
/* Makes pgd the newest page of its pool's LRU (takes lru_lock); bucket
 * lock held. */
void   tm_lru_touch_locked(tmem_t *t, struct tm_pool *p, struct tm_pgd *pgd);
/* The descriptor of (oid with hash h, index) in bucket b, or NULL; the
 * object (or NULL) through objp and the slot's frame hint through frame,
 * each if not NULL.  Bucket lock held. */
struct tm_pgd *tm_pgd_find_locked(struct tm_bucket *b, uint64_t h, const tmem_oid_t *oid,
                                  uint32_t index, struct tm_obj **objp, uint32_t *frame);
/* The clock of ephemeral pages' ages: ticks of 2^TM_TICK_SHIFT ns (65.5 us)
 * since tmem_open.  Fine enough that the weighted LRU compares ages of
 * pages that live a few milliseconds; 32 bits wrap after 78 hours, so an
 * age is taken modulo that (a page idle for more than 39 hours may look
 * young: it is then evicted later than it should be, never wrongly). */
#define TM_TICK_SHIFT 16
uint32_t tm_now_tick(tmem_t *t);

/* ---- evict.c ---------------------------------------------------------- */
/* Evicts one ephemeral page, choosing the victim client by weighted share
 * (requester first if it is over its share).  true if a page was evicted.
 * Caller holds no bucket lock. */
bool   tm_evict_one(tmem_t *t, struct tmem_client *requester);

/* ---- api.c, page.c, pool.c, client.c, save.c: the engine's client
 * operations (tm_engine_ops); api.c checks the handle's magic first ---- */
extern const struct tmem_client_ops tm_engine_ops;
int    tm_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags);
int    tm_destroy_pool(tmem_client_t *c, uint32_t pool_id);
int    tm_pool_is_shared(tmem_client_t *c, uint32_t pool_id);
int    tm_put_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   const void *page);
int    tm_get_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   void *page);
int    tm_flush_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index);
int    tm_flush_object(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid);
int    tm_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, const void *const *pages,
                    int *results);
int    tm_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, void *const *pages,
                    int *results);
int    tm_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, int *results);
void   tm_client_close(tmem_client_t *c);
void   tm_client_release(tmem_client_t *c);
uint32_t tm_client_id(const tmem_client_t *c);
int64_t tm_client_restore(tmem_client_t *c, tmem_read_fn read, void *arg);

/* ---- client.c --------------------------------------------------------- */
/* Looks up an open client by id; caller holds t->clients_lock. */
struct tmem_client *tm_client_find_locked(tmem_t *t, uint32_t id);
/* Validates a handle and read-locks it: 0, or -ENODEV (closed, counted) or
 * -EINVAL (NULL or not a handle). */
int    tm_client_enter(struct tmem_client *c);
void   tm_client_leave(struct tmem_client *c);
/* New puts are refused: frozen by the administrator or by a save. */
static inline bool tm_client_frozen(struct tmem_client *c)
{
    return atomic_load(&c->frozen) || atomic_load(&c->save_freezes);
}
bool   tm_client_authorised_locked(struct tmem_client *c, tmem_uuid_t uuid);
/* The open clients now, as a malloc'd array (free() it).  The pointers stay
 * valid memory until tmem_close (tombstones); check c->dead under c->lock. */
/* The open clients, each pinned (tmem_client_release waits for the pin);
 * give them back with tm_clients_unpin, which frees v. */
struct tmem_client **tm_clients_snapshot(tmem_t *t, size_t *n);
void tm_clients_unpin(struct tmem_client **v, size_t n);
void   tm_stats_fold(struct tm_client_stats *into, const struct tm_client_stats *from);
/* Adds private pool p's outcomes to client-shaped counters. */
void   tm_pool_stats_fold(struct tm_client_stats *into, const struct tm_pool *p);
/* c's cumulative counters: its own plus its private pools' (c->lock held). */
void   tm_client_totals(struct tmem_client *c, struct tm_client_stats *out);
/* Counts an outcome on pool p, and on client c too if p is shared. */
#define TM_COUNT(c, p, pfield, cfield) do {                                    \
        tm_inc((p)->st.pfield);                                                \
        if ((p)->shared)                                                       \
            tm_inc((c)->st.cfield);                                            \
    } while (0)

/* A descriptor's LRU links are written under the pool's lru_lock, but a get
 * reads them under its bucket lock only, to prefetch the neighbours its
 * unlink will write: so every write is a relaxed atomic store (a plain mov
 * on x86), and that read a relaxed atomic load. */
static inline void tm_lru_set(struct tm_pgd **link, struct tm_pgd *to)
{
    __atomic_store_n(link, to, __ATOMIC_RELAXED);
}

/* Ephemeral pages of client c (types.h): the sum of its stripes. */
static inline uint64_t tm_client_eph_pages(const struct tmem_client *c)
{
    int64_t n = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++)
        n += atomic_load_explicit(&c->eph[i].n, TM_RELAXED);
    return n > 0 ? (uint64_t)n : 0;
}

static inline void tm_client_eph_add(struct tmem_client *c, int64_t d)
{
    atomic_fetch_add_explicit(&c->eph[tm_home_stripe()].n, d, TM_RELAXED);
}

/* Persistent pages of c (a persistent pool's owner) and of its quota
 * group.  Would one more pass cap (the caller's, 0 none) or the group's? */
static inline bool tm_pers_full(const struct tmem_client *c, uint64_t cap)
{
    const struct tm_group *g = c->group;
    uint64_t gcap = g ? tm_load(g->cap) : 0;
    return (cap && tm_load(c->pers_pages) >= cap) || (gcap && tm_load(g->pages) >= gcap);
}
/* Counts one more persistent page: -EDQUOT (nothing counted) when that
 * would pass cap or the group's cap. */
static inline int tm_pers_charge(struct tmem_client *c, uint64_t cap)
{
    struct tm_group *g = c->group;
    if (tm_add(c->pers_pages, 1) >= cap && cap) {
        tm_sub(c->pers_pages, 1);
        return -EDQUOT;
    }
    if (g) {
        uint64_t gcap = tm_load(g->cap);
        if (tm_add(g->pages, 1) >= gcap && gcap) {
            tm_sub(g->pages, 1);
            tm_sub(c->pers_pages, 1);
            return -EDQUOT;
        }
    }
    return 0;
}
static inline void tm_pers_uncharge(struct tmem_client *c, uint64_t n)
{
    tm_sub(c->pers_pages, n);
    if (c->group)
        tm_sub(c->group->pages, n);
}

/* ---- arena.c: the revoke epoch (arena.h) ---------------------------------
 * A reader of ephemeral data that an arena's owner may take by force reads
 * the epoch before (tm_arena_epoch_ok: false if a revocation is pending,
 * not yet processed) and after its copy (tm_arena_epoch_same); both true:
 * nothing it read was taken.  Always true on an engine whose memory cannot
 * be taken.  Under the client's read lock (epoch_done is stable then). */
static inline bool tm_arena_epoch_ok(const tmem_t *t, uint64_t *e0)
{
    if (!t->arena.revoke_epoch)
        return true;
    *e0 = atomic_load_explicit(t->arena.revoke_epoch, memory_order_acquire);
    return *e0 == t->epoch_done;
}
static inline bool tm_arena_epoch_same(const tmem_t *t, uint64_t e0)
{
    if (!t->arena.revoke_epoch)
        return true;
    atomic_thread_fence(memory_order_acquire);     /* the copy's loads come first */
    return atomic_load_explicit(t->arena.revoke_epoch, TM_RELAXED) == e0;
}

/* ---- check.c ---------------------------------------------------------- */
void   tm_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* TMEM_CORE_INTERNAL_H */
