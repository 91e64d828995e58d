/* SPDX-License-Identifier: MIT */
/*
 * types.h - the engine's data structures, their invariants and their locks.
 *
 * Map of the types (top down; every level has a back pointer to its parent so
 * that eviction can work bottom up from an LRU list):
 *
 *   struct tmem          one engine: limit, frames, clients, shared pools
 *    +- tm_frames x2     the frame allocator: 4 KiB frames over one reserved mapping
 *    |                   (one set for ephemeral data, one for persistent data)
 *    +- tmem_client      one client: up to 16 pool slots, settings, counters
 *    |   +- tm_store x2  where its data goes: a zalloc heap + a dedup table
 *    |                   (one for ephemeral pools, one for persistent ones)
 *    +- tm_pool          one pool: 64 lock stripes ("buckets") of objects, an LRU
 *        +- tm_bucket    a mutex and a hash table of objects
 *            +- tm_obj   one object (192-bit oid): a hash table index -> pgd
 *                +- tm_pgd  one page descriptor: where the data is (tm_loc)
 *                    +- tm_loc  a same-filled word, a whole frame, a zalloc
 *                               fragment, or a dedup body holding one of those
 *
 * LOCK ORDER (a thread holding a lock may only take locks further right):
 *
 *   client->lock (brlock) -> t->clients_lock (rw) -> bucket->lock
 *       -> pool->lru_lock -> dedup shard lock -> zclass->lock
 *       -> a frame stripe lock (one at a time) -> frames.lent_lock
 *
 * The slab stripe lock (slab.c) is a leaf: taken under any of these, and
 * nothing is locked or allocated while it is held.
 *
 * Three paths go against the order, and so only *try* the lock they lack:
 *  - eviction (evict.c), which starts from an LRU list and must reach the
 *    bucket that owns the victim: it holds pool->lru_lock and only tries
 *    bucket->lock, skipping the page if that fails.  It holds
 *    t->clients_lock for reading and only tries each client's lock
 *    (tm_brlock_tryread) for the same reason;
 *  - compaction (zalloc.c), which holds zclass->lock and tries the bucket or
 *    dedup shard lock of a fragment's owner (tm_owner_trylock);
 *  - making a dedup body (store.c, share_pgd), which holds the shard lock
 *    and tries the bucket of the page that held the data alone.
 * No put holds a bucket lock while it allocates memory that may evict (see
 * page.c), so a put never waits for itself.  Full discussion:
 * docs/internals.md, "Locking".
 */
#ifndef TMEM_CORE_TYPES_H
#define TMEM_CORE_TYPES_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tmem/arena.h"
#include "tmem/tmem.h"
#include "tmem/transport.h"
#include "brlock.h"

typedef _Atomic uint64_t atomic_u64;
typedef _Atomic int64_t  atomic_i64;
typedef _Atomic uint32_t atomic_u32;

/* ------------------------------------------------------------------------
 * Frames (frame.c)
 *
 * Two frame sets, each over its own part of one PROT_NONE reservation: one
 * for the data of ephemeral pools, one for that of persistent pools (an
 * owner lending memory may take the first back by force: arena.h).  A set
 * is `nchunks` chunks of 512 frames (2 MiB).  A chunk is made readable and
 * writable when first used.  Each frame is in exactly one state, recorded
 * in the chunk's bitmaps:
 *
 *   unbacked  not resident (never touched, or released with MADV_DONTNEED)
 *   free      resident, on no one's behalf          (free_map)
 *   used      resident, holding data (whole page or zalloc span)
 *   lent      handed to the host by tmem_relinquish_page*() (lent_map)
 *
 * backed_map = free | used | lent.  Over an arena (arena.h) frames are
 * backed a unit at a time (16, 32 or 64 frames: a part of a map word) by
 * the memory source, and given back a unit at a time: a unit's bits of
 * backed_map are all ones or all zeros.  Chunks are divided among TM_STRIPES
 * stripes (chunk i belongs to stripe i % TM_STRIPES), each with its own lock
 * and counters, so that threads (each on its CPU's stripe) rarely meet.  A
 * free frame may also sit in a stripe's cache (or in transit between a
 * cache and its chunk): free, though its chunk's maps say used.
 * Invariants (checked by tmem_check):
 *   stripe nfree == popcount(free_map) over its chunks
 *   nheld == sum(nfree + ncached + nwhole + nzalloc) + ntransit
 *         == popcount(backed & ~lent)
 *   a cached frame is backed, not free and not lent, and cached once
 *   nlent == popcount(lent_map)
 * ---------------------------------------------------------------------- */
#define TM_CHUNK_FRAMES 512u
#define TM_CHUNK_WORDS  (TM_CHUNK_FRAMES / 64u)
#define TM_CHUNK_BYTES  ((size_t)TM_CHUNK_FRAMES * TMEM_PAGE_SIZE)
/* lines of a hinted frame a get prefetches: 2 to 8 measured alike, 1 a little
 * slower, 16 and 64 slower (they queue ahead of the descriptor's miss) */
#define TM_HINT_LINES   4u
#define TM_STRIPES      8u
/* brlock.h (included above, before this constant) sizes its reader stripes
 * by the same number: a thread's home stripe indexes both. */
_Static_assert(sizeof(((struct tm_brlock *)0)->readers) /
                   sizeof(((struct tm_brlock *)0)->readers[0]) == TM_STRIPES,
               "brlock reader stripes must match TM_STRIPES");

struct tm_chunk {                   /* cache-line aligned: chunks of two stripes never
                                       share a line (their maps change on every frame) */
    _Alignas(64) uint64_t free_map[TM_CHUNK_WORDS];
    uint64_t backed_map[TM_CHUNK_WORDS];
    uint64_t lent_map[TM_CHUNK_WORDS];
    uint32_t nfree;                 /* popcount(free_map) */
    uint32_t nbacked;               /* popcount(backed_map) */
    uint32_t index;                 /* position in the reservation */
    bool     on_free_list;          /* linked in its stripe's with_free */
    bool     huge;                  /* backed whole and advised MADV_HUGEPAGE; cleared
                                       (advised MADV_NOHUGEPAGE) at its first release */
    uint32_t growing;               /* arena: units (bits) the source is backing now */
    struct tm_chunk *next_free, *prev_free;
};
_Static_assert(TM_CHUNK_FRAMES / TMEM_UNIT_FRAMES_MIN <= 32, "a chunk's units fit `growing`");

struct tm_lent { uint8_t *p; unsigned order; };

/* Free frames a stripe keeps for its CPU at most; when full, the older half
 * goes back to the chunks' stripes. */
#define TM_FRAME_CACHE 64u

struct tm_stripe {
    _Alignas(64) pthread_mutex_t lock;  /* guards this stripe's chunks and below */
    struct tm_chunk *with_free;     /* its chunks with nfree > 0 */
    size_t grow_hint;               /* lowest chunk of it that may have unbacked frames */
    /* written under lock, read with relaxed atomics.  nwhole and nzalloc
     * count frames taken (less those given) under this stripe's lock, on
     * its CPU mostly: only their sums over the stripes mean something. */
    atomic_u64 nfree, nwhole, nzalloc;
    /* Free frames of any stripe's chunks, kept here for this CPU: a thread
     * takes and gives frames under its own CPU's lock, wherever the frames
     * came from.  In their chunks' maps they look used.  cache[0..ncached)
     * under lock, ncached also read relaxed. */
    atomic_u64 ncached;
    uint8_t *cache[TM_FRAME_CACHE];
};

struct tm_frames {
    tmem_t   *t;                    /* (immutable) */
    unsigned  kind;                 /* TMEM_ARENA_EPHEMERAL or _PERSISTENT (immutable) */
    bool      units;                /* backed a unit at a time by t->arena (immutable) */
    unsigned  unit;                 /* frames per unit: 16, 32 or 64 (immutable) */
    uint8_t  *base;                 /* its part of the reservation (immutable after open) */
    size_t    nchunks;              /* chunks in the reservation (immutable) */
    struct tm_chunk **chunks;       /* [nchunks], NULL until first used; chunks[i]
                                       is set under its stripe's lock */
    struct tm_stripe stripes[TM_STRIPES];
    /* units a revocation is taking (arena.c, tmem_arena_revoked): a bit per
     * unit, or NULL; set and cleared by that walk (the client's write lock
     * serialises them), read under a stripe lock by release_units_locked,
     * which leaves those units alone (the owner took them: they are not to
     * be given back) */
    _Atomic(const uint8_t *) withheld;
    pthread_mutex_t lent_lock;      /* guards lent[] (after a stripe lock) */
    struct tm_lent *lent;           /* blocks out on loan */
    size_t    nlent_blocks, lent_cap;
    atomic_u64 nlent;
    /* free frames between two places, outside any lock (a cache and their
     * chunks' maps, or a stripe and another CPU's cache): raised under the
     * lock they leave, lowered under the lock they reach, so that the sums
     * hold under all locks */
    atomic_u64 ntransit;
    /* frames of this set held (free or used); changed with t->frames_held,
     * which the limit checks read */
    _Alignas(64) atomic_u64 nheld;
};

/* ------------------------------------------------------------------------
 * Where a page's data lives (tm_loc) and dedup bodies (store.c)
 * ---------------------------------------------------------------------- */
enum tm_loc_kind {
    TM_LOC_NONE = 0,
    TM_LOC_WORD,        /* same-filled: u.word repeated 512 times; no frame */
    TM_LOC_WHOLE,       /* u.frame: a whole frame, uncompressed */
    TM_LOC_FRAG,        /* u.span + slot: a zalloc fragment of `size` bytes */
    TM_LOC_BODY,        /* u.body: a dedup body shared by refs descriptors */
};

struct tm_zspan;
struct tm_body;

/* A FRAG loc's (span, slot) may be changed by compaction, under the span's
 * class lock and the lock its readers hold (the bucket for a pgd's loc, the
 * dedup shard for a body's); its size, codec and class never change. */
struct tm_loc {
    union {
        uint64_t word;
        uint8_t *frame;
        struct tm_zspan *span;
        struct tm_body  *body;
    } u;
    uint16_t slot;      /* FRAG: slot in the span */
    uint16_t size;      /* FRAG: compressed length; WHOLE: 4096 */
    uint8_t  kind;      /* enum tm_loc_kind */
    uint8_t  codec;     /* FRAG: TMEM_COMPRESS_* used to compress it */
};

/* A body is the data of identical pages stored once, made when a second
 * page with the same data arrives (a page alone keeps its data in its own
 * descriptor).  refs is guarded by the dedup shard lock; loc and hash are
 * immutable while refs > 0 (but for compaction moving a fragment, under the
 * shard lock).  loc.kind is WHOLE or FRAG. */
struct tm_body {
    uint64_t hash;      /* XXH3-64 of the uncompressed page (never 0) */
    uint32_t refs;      /* descriptors pointing here (>= 2 when made) */
    struct tm_loc loc;
};

/* A dedup index maps a data hash to its holder: a descriptor that holds the
 * data alone (ref = the pgd, whose pgd->hash is then the same), or a body
 * (ref = body | TM_DEDUP_BODY).  Open addressing, linear probing, the hash
 * inline so that a miss costs one cache line.  Guarded by the shard lock.
 * Invariant: a descriptor is in the index iff it is linked in its object
 * and its data is direct (WHOLE or FRAG) with pgd->hash != 0; both changes
 * are made under its bucket lock (and the shard lock). */
#define TM_DEDUP_BODY ((uintptr_t)1)
struct tm_dedup_entry {
    uint64_t hash;
    uintptr_t ref;      /* 0: empty slot */
};

#define TM_DEDUP_SHARDS 64u
struct tm_dedup_shard {
    pthread_mutex_t lock;
    struct tm_dedup_entry *slots;   /* cap entries, cap 0 or a power of two */
    uint32_t cap, count;            /* count <= 3/4 cap */
    uint32_t bodies;                /* entries that are bodies */
};

/* ------------------------------------------------------------------------
 * zalloc: the compact allocator for compressed fragments (zalloc.c)
 *
 * Size classes every TM_ZCLASS_STEP bytes.  A span is 1..TM_ZSPAN_MAX_FRAMES
 * frames (not necessarily contiguous) cut into equal slots; a slot may
 * straddle two frames (copies are split).  Each class uses the smallest frame
 * count whose tail waste is within 2% of the best possible.  Spans with a
 * free slot are on the class's partial list; when a span's last slot is
 * freed its frames return to the frame allocator at once, so eviction
 * returns real memory.
 * A span is allocated with its frame pointers, slot map and owners inline,
 * sized for its class: [header][frames[nframes]][map[words]][owner[slots]].
 * owner[i] names the tm_loc that refers to slot i (tagged: TM_OWNER_BODY for
 * a dedup body's loc, else a pgd's), or 0 while the fragment is not yet (or
 * no longer) linked: only owned fragments are moved by compaction.
 * Invariants: span->used == popcount(map) <= cls->slots;
 *             cls->nspans counts its spans; heap->bytes_used = sum(size);
 *             cls->free_slots = sum over partial spans of (slots - used).
 * ---------------------------------------------------------------------- */
#define TM_ZCLASS_STEP      32u
#define TM_ZSPAN_MAX_FRAMES 8u
#define TM_ZCLASS_COUNT     (TMEM_PAGE_SIZE / TM_ZCLASS_STEP)   /* 32..4096 */
/* an upper bound on slots per span (a class's own count is cls->slots) */
#define TM_ZSPAN_MAX_SLOTS  (TM_ZSPAN_MAX_FRAMES * TMEM_PAGE_SIZE / TM_ZCLASS_STEP)

struct tm_zclass;

struct tm_zspan {
    struct tm_zspan *next, *prev;   /* class partial or full list (cls->lock) */
    struct tm_zclass *cls;          /* immutable */
    uint16_t used;                  /* slots in use (cls->lock) */
    bool     partial;               /* on cls->partial, else on cls->full */
    uint8_t *frames[];              /* [cls->nframes], immutable while the span
                                       lives; then uint64_t map[cls->words] and
                                       uintptr_t owner[cls->slots] (cls->lock) */
};
#define TM_OWNER_BODY ((uintptr_t)1)

struct tm_zclass {
    pthread_mutex_t lock;
    uint16_t size;                  /* slot size (immutable) */
    uint16_t nframes;               /* frames per span (immutable) */
    uint16_t slots;                 /* slots per span (immutable) */
    uint16_t words;                 /* 64-bit words of the slot map (immutable) */
    struct tm_zspan *partial, *full;/* (lock) */
    uint64_t nspans;                /* (lock) */
    uint64_t free_slots;            /* free slots of partial spans (lock) */
    uint64_t moved, compactions;    /* fragments moved, spans emptied (lock) */
};

struct tm_zheap {
    unsigned kind;                  /* the frame set its spans take from (immutable) */
    struct tm_zclass cls[TM_ZCLASS_COUNT];
    atomic_u64 bytes_used;          /* sum of fragment sizes in use */
    atomic_u64 frags;               /* fragments in use */
};

/* A store: where one kind of data of one owner goes.  Each client has an
 * ephemeral and a persistent store; each shared pool has its own; with
 * dedup_across_clients all private pools use the engine's two stores.
 * Keeping ephemeral and persistent data apart makes "freeable" exact: every
 * frame of an ephemeral store is freed by evicting all ephemeral pages. */
/* Counters of a store, one set per frame stripe (the thread's home stripe
 * takes the update), so that threads of one client do not share a cache
 * line per call.  A stripe's value may go negative (a frame freed by
 * another thread); the sum over stripes is the count. */
struct tm_store_count {
    _Alignas(64) atomic_i64 whole_frames;   /* WHOLE locs (direct or in bodies) */
    atomic_i64 words;               /* WORD locs (same-filled pages) */
    atomic_i64 body_refs;           /* BODY locs: references to bodies */
    /* sparse dedup (store.c), per stripe: lookups in a row that found
     * nothing, and whether this stripe's puts now only sample the index.
     * Plain loads and stores (no RMW): a lost update only shifts a guess. */
    atomic_u32 dd_misses;
    atomic_u32 dd_sparse;
};
enum tm_store_counter { TM_SC_WHOLE, TM_SC_WORDS, TM_SC_BODY_REFS };

struct tm_store {
    bool persistent;
    /* a persistent store over an arena that found no room (store.c,
     * store_full): when (a tick, 0 none; a free clears it), and the frames
     * held then; racy hints, never a correctness matter */
    atomic_u32 full_tick;
    atomic_u64 full_held;
    struct tm_zheap heap;
    struct tm_dedup_shard shards[TM_DEDUP_SHARDS];
    struct tm_store_count count[TM_STRIPES];
};

/* ------------------------------------------------------------------------
 * Hash tables of pointers (table.c): open addressing, linear probing,
 * backward-shift deletion, load <= 3/4.  Guarded by the owning bucket lock.
 * A slot keeps its entry's key beside the pointer, and the hash's high half
 * (objects) or a frame hint (pages, whose home is recomputed from the
 * index), so that probing, deleting and growing never dereference an entry
 * that is not the one sought (each such dereference is a cache miss on a
 * cold descriptor).
 * ---------------------------------------------------------------------- */
struct tm_slot {
    void    *e;                     /* the entry, or NULL: empty */
    union {
        uint32_t hi;                /* objects: the hash >> 32; home = hi & (cap - 1) */
        uint32_t frame;             /* pages: a hint, the number + 1 of the whole frame
                                       that holds the page's data, or 0 (the home comes
                                       from the key).  Only ever prefetched: a stale
                                       hint costs a useless prefetch, never a read */
    };
    uint32_t key;                   /* page index (pages), or the hash's low half (objects) */
};

struct tm_table {
    struct tm_slot *slots;          /* allocated, or inline: right after this
                                       struct (an object's first page table,
                                       tm_obj.first), never freed alone */
    uint32_t cap;                   /* 0 or a power of two */
    uint32_t count;
    uint64_t seed;                  /* page tables: the object's keyed hash */
};

/* ------------------------------------------------------------------------
 * Pools, buckets, objects, page descriptors (pool.c, page.c)
 * ---------------------------------------------------------------------- */
struct tm_pool;

struct tm_pgd {
    struct tm_pgd *prev, *next;     /* pool LRU, ephemeral only (pool->lru_lock) */
    struct tm_obj *obj;             /* immutable while linked */
    struct tm_loc loc;              /* (bucket lock) */
    uint32_t index;                 /* immutable */
    uint32_t age;                   /* tm_now_tick at put / last shared hit (lru_lock) */
    uint64_t hash;                  /* its data's hash while in the dedup index as
                                       the data's only holder, else 0 (bucket lock
                                       and shard lock to change) */
};

/* Invariant: a pgd is in its object's table iff (for ephemeral pools) it is
 * on its pool's LRU list; both are changed under the bucket lock (the LRU
 * also under lru_lock).  So eviction, holding lru_lock and the trylocked
 * bucket lock, knows its victim is still in the table. */
/* An object and its first page table are one allocation of two cache
 * lines: a new object costs one allocation, not two, and a lookup of an
 * object of up to three pages finds its page slot on the line next to the
 * object's.  A fourth page moves the table out (table.c). */
#define TM_OBJ_FIRST_SLOTS 4u
struct tm_obj {
    tmem_oid_t oid;                 /* immutable */
    uint64_t hash;                  /* of oid, immutable */
    struct tm_pool *pool;           /* immutable */
    struct tm_table pages;          /* index -> pgd (bucket lock) */
    struct tm_slot first[TM_OBJ_FIRST_SLOTS];   /* pages.slots at first (bucket lock) */
};
_Static_assert(offsetof(struct tm_obj, first) ==
               offsetof(struct tm_obj, pages) + sizeof(struct tm_table),
               "an inline table's slots follow the table (table.c tells them so)");

#define TM_POOL_BUCKETS 64u
struct tm_bucket {
    pthread_mutex_t lock;
    struct tm_table objs;           /* oid -> obj (lock) */
};

/* A private pool's outcomes are counted here only (client totals add them
 * up: tm_client_totals); a shared pool's are counted here and on the
 * client, whose share of them the pool cannot tell. */
struct tm_pool_stats {
    atomic_u64 puts, puts_ok, dup_replaced, dup_flushed, refused;
    atomic_u64 gets, gets_hit, flushes, flushes_found, flush_objs, flush_objs_found;
    atomic_u64 flushed_pages, dedup_skipped;
};

struct tm_pool {
    tmem_t *t;
    uint32_t flags;                 /* as requested (immutable) */
    bool persistent, shared, keep_on_get;   /* immutable */
    tmem_uuid_t uuid;               /* shared pools (immutable) */
    int shared_slot;                /* index in t->shared, or -1 */
    struct tm_store *store;         /* immutable */
    struct tmem_client *owner;      /* accounting owner (lru_lock + clients_lock to change) */
    struct tmem_client **sharers;   /* shared pools: clients in it (t->clients_lock) */
    uint32_t nsharers, sharers_cap; /* (t->clients_lock) */

    pthread_mutex_t lru_lock;
    struct tm_pgd lru;              /* sentinel: lru.next oldest, lru.prev newest */
    uint64_t lru_count;             /* pages on the LRU (lru_lock); the owner's ephemeral count
                                       includes exactly this many for this pool */
    atomic_u64 npages;              /* pages in the pool (changed under bucket lock) */
    atomic_u64 nobjs;
    atomic_u64 max_pages, max_objs; /* high-water marks (approximate: racy max) */
    struct tm_pool_stats st;

    struct tm_bucket buckets[TM_POOL_BUCKETS];
};

/* ------------------------------------------------------------------------
 * Clients (client.c)
 * ---------------------------------------------------------------------- */
#define TM_CLIENT_MAGIC 0x746d656d636c6e74ull   /* "tmemclnt" */
#define TM_CLIENT_DEAD  0x746d656d64656164ull   /* "tmemdead" */
#define TM_MAX_AUTH 16u

struct tm_client_stats {
    atomic_u64 puts, puts_ok, gets, gets_hit, flushes, flush_objs;
    atomic_u64 dup_replaced, dup_flushed, evicted;
    atomic_u64 refused_nomem, refused_quota, refused_frozen;
    atomic_u64 compressed_pages, compressed_bytes, compress_poor, dedup_hits,
               dedup_skipped;     /* dedup_skipped: shared pools only (else on the pool) */
    atomic_u64 same_filled, flushed_pages;
};

/* A persistent-page quota group (client.c): its clients hold at most cap
 * persistent pages together (a daemon makes one per uid).  Made with its
 * first client, freed with its last. */
struct tm_group {
    struct tm_group *next;          /* t->groups (clients_lock) */
    uint32_t id;                    /* immutable, > 0 */
    atomic_u64 cap;                 /* pages; 0: none */
    atomic_u64 pages;               /* its clients' pers_pages, summed */
    uint32_t refs;                  /* its clients (clients_lock) */
};

struct tmem_client {
    struct tmem_client_head head;   /* TMEM_HANDLE_MAGIC, &tm_engine_ops (transport.h) */
    atomic_u64 magic;               /* TM_CLIENT_MAGIC, or TM_CLIENT_DEAD after close */
    tmem_t *t;
    /* lock guards pools[] and `dead`: read by every call for its duration,
     * written by new/destroy pool and close (brlock.h). */
    struct tm_brlock lock;
    bool dead;
    struct tm_pool *pools[TMEM_MAX_POOLS];

    uint32_t id;                    /* immutable */
    char name[64];                  /* immutable */
    /* settings: set by admin calls, read without locks */
    atomic_u32 weight;
    atomic_u64 cap;
    _Atomic int compress;
    _Atomic int frozen;             /* by the administrator */
    _Atomic int save_freezes;       /* saves in progress: frozen while > 0 */
    _Atomic int restoring;          /* a restore owns the client's pools */
    _Atomic int pins;               /* snapshots holding the handle (raised under
                                       t->clients_lock; tmem_client_release waits) */
    /* accounting: pers_pages with fetch_add (the cap check); the ephemeral
     * pages are counted per thread stripe (a stripe may go negative; the sum,
     * tm_client_eph_pages, is the count), changed under the lru_lock of the
     * pool whose owner this client is: two threads of one client putting in
     * two pools wrote one line on every call. */
    atomic_u64 pers_pages;
    /* its quota group, or NULL: set under clients_lock and the client's
     * write lock, its pers_pages moved along, so every page it counts in
     * pers_pages is counted in its group (tm_pers_charge) */
    struct tm_group *group;
    struct { _Alignas(64) atomic_i64 n; } eph[TM_STRIPES];
    /* made with its first private pool of the kind (client_store: write
     * lock and clients_lock), then immutable until close; NULL before */
    struct tm_store *eph_store, *pers_store;
    /* shared-pool authorisation (t->clients_lock) */
    tmem_uuid_t auth[TM_MAX_AUTH];
    uint32_t nauth;
    struct tm_client_stats st;
    /* engine list of open clients, or of tombstones (t->clients_lock) */
    struct tmem_client *next, *prev;
};

/* ------------------------------------------------------------------------
 * The engine (engine.c)
 * ---------------------------------------------------------------------- */
struct tm_engine_stats {
    atomic_u64 evictions, evict_attempts, evict_skipped_busy;
    atomic_u64 relinquished, lent;
    atomic_u64 alloc_failed;
    atomic_u64 bad_pool, bad_args, bad_closed;
};

/* Metadata held, as malloc_usable_size + 8, counted per frame stripe (a
 * thread adds to its home stripe's line only).  published is how much of
 * bytes has been added to t->meta_approx; a stripe publishes when it has
 * drifted by TM_META_DRIFT, so |exact - approx| <= TM_STRIPES * TM_META_DRIFT.
 * A stripe's bytes may go negative (freed by another thread's stripe). */
#define TM_META_DRIFT 4096
struct tm_meta_stripe {
    _Alignas(64) atomic_i64 bytes;
    atomic_i64 published;
};

/* ------------------------------------------------------------------------
 * The descriptor allocator (slab.c): blocks of TM_SLAB_BYTES aligned to
 * their size, cut into slots of one kind's size; the first slot is the
 * header.  Page descriptors take 64-byte slots, objects 128-byte ones.
 * ---------------------------------------------------------------------- */
#define TM_SLAB_BYTES (16u * 1024u)
enum tm_slab_kind { TM_SLAB_PGD, TM_SLAB_OBJECT, TM_SLAB_KINDS };
#define TM_SLAB_SIZE(k)  ((k) == TM_SLAB_PGD ? 64u : 128u)
#define TM_SLAB_SLOTS(k) (TM_SLAB_BYTES / TM_SLAB_SIZE(k) - 1u)

struct tm_slab {                    /* a block's header; all fields: its stripe's lock */
    struct tm_slab *prev, *next;    /* on the stripe's avail list */
    void    *free;                  /* freed slots, linked through their first word */
    uint16_t nfree;                 /* free slots, never-used ones included */
    uint16_t fresh;                 /* slots [1 + fresh, ...) were never handed out */
    uint16_t stripe;                /* whose lock guards the block (immutable) */
    uint8_t  kind;                  /* enum tm_slab_kind (immutable) */
    bool     listed;                /* on avail: 0 < nfree < TM_SLAB_SLOTS, or just made */
};

/* Invariants: a block is on avail iff it has a free slot and is not the
 * spare; the spare is wholly free; live = slots handed out, not freed. */
struct tm_slab_stripe {
    _Alignas(64) pthread_mutex_t lock;
    struct tm_slab *avail;          /* blocks with free slots (lock) */
    struct tm_slab *spare;          /* one wholly free block, or NULL (lock) */
    uint64_t blocks;                /* blocks of this stripe, spare included (lock) */
    uint64_t live;                  /* slots in use from its blocks (lock) */
};

struct tmem {
    tmem_config_t cfg;              /* as opened (immutable) */
    atomic_u64 max_bytes;           /* the limit now (read-mostly) */
    /* frames held by both sets: reserved atomically before a frame is
     * backed, so the limit is exact; changes only when memory grows or
     * shrinks, so it is read-mostly for the limit checks */
    _Alignas(64) atomic_u64 frames_held;
    _Alignas(64) atomic_i64 meta_approx;    /* sum of published (read-mostly) */
    struct tm_meta_stripe meta[TM_STRIPES];
    _Alignas(64) struct tm_frames frames[TMEM_ARENA_KINDS];  /* [persistent] */
    /* The memory source (arena.h; ops NULL: anonymous memory, immutable).
     * epoch_done is the revoke epoch whose revocations are processed:
     * written under the client's write lock, read by gets under its read
     * lock.  An arena engine has at most one client (arena_client). */
    tmem_arena_t arena;
    uint64_t epoch_done;
    struct tmem_client *arena_client;   /* (clients_lock) */
    atomic_u64 units_grown, units_shrunk, units_revoked, arena_dropped;
    struct tm_slab_stripe slab[TM_SLAB_KINDS][TM_STRIPES];
    struct timespec t0;             /* for the clock of LRU ages (tm_now_tick) */

    /* clients_lock guards: the client lists, next_id, shared[], each
     * client's auth list, shared pools' sharer counts and ownership moves. */
    pthread_rwlock_t clients_lock;
    struct tmem_client clients;     /* sentinel of the open-client list */
    struct tmem_client *tombstones; /* closed clients, freed by tmem_close */
    struct tm_group *groups;        /* persistent quota groups */
    uint32_t nclients, next_id;
    struct tm_pool *shared[TMEM_MAX_SHARED_POOLS];
    struct tm_store *global_eph, *global_pers;   /* dedup_across_clients */

    /* counters of closed clients, folded in so totals stay cumulative */
    struct tm_client_stats retired;
    struct tm_engine_stats st;
    /* key of the oid hash: random per engine, so that clients cannot choose
     * oids that collide in the object tables (immutable) */
    uint64_t hash_key;

    /* allocation-failure injection (alloc.c); 0 = off */
    atomic_u64 alloc_count, fail_at;
    _Atomic int fail_persistent;
};

#endif /* TMEM_CORE_TYPES_H */
