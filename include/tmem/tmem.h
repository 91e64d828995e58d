/* SPDX-License-Identifier: MIT */
/*
 * tmem.h - the public API of tmem, transcendent memory for Linux hosts.
 *
 * A tmem engine ("tmem_t") owns a bounded pool of host memory and lends it to
 * clients through a synchronous page-copy interface.  Clients never address
 * that memory: they copy 4 KiB pages in (put) and out (get) under a handle
 * (pool id, 192-bit object id, 32-bit index).  Because of that the engine is
 * free to compress, deduplicate, evict (ephemeral pages only) and hand memory
 * back to the host.
 *
 * Pools are ephemeral (a victim cache: any get may miss, even right after a
 * put) or persistent (a successful put is kept until the client flushes it,
 * destroys the pool or closes), and private or shared.  Any put may be
 * refused: the client always has a fallback (its disk).
 *
 * Result convention of every int-returning call: >= 0 means done (0, a pool
 * id, or a count); a negative value says why not, as a negated errno or a
 * negated TMEM_E* code.  A get that misses (-ENOENT) and a refused put
 * (-ENOMEM, -EDQUOT, -TMEM_EFROZEN) are normal outcomes, not errors.
 * tmem_strerror() names every code.
 *
 * Thread safety: every call is thread-safe; one client handle may be used by
 * many threads at once.  The only exceptions are the lifetime calls, which
 * must not race with other calls on the same object: tmem_close() (no call on
 * the engine or its clients may be in flight) and tmem_check() (see below).
 */
#ifndef TMEM_TMEM_H
#define TMEM_TMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TMEM_API __attribute__((visibility("default")))
#else
#define TMEM_API
#endif

#define TMEM_VERSION_MAJOR 0
#define TMEM_VERSION_MINOR 1
#define TMEM_VERSION_PATCH 0
#define TMEM_SPEC_VERSION  1u   /* the pool-flags spec version (Xen's) */

#define TMEM_PAGE_SHIFT 12u
#define TMEM_PAGE_SIZE  4096u
#define TMEM_MAX_POOLS  16u     /* pool ids per client are 0..15 */
#define TMEM_MAX_SHARED_POOLS 16u /* shared pools in one engine */

typedef struct tmem tmem_t;               /* one engine (the host's store) */
typedef struct tmem_client tmem_client_t; /* one client ("domain") */
typedef struct tmem_oid  { uint64_t oid[3]; } tmem_oid_t;
typedef struct tmem_uuid { uint64_t lo, hi; } tmem_uuid_t;

/* ------------------------------------------------------------------------
 * Result codes (negated on return).  Standard errno values are used where
 * one fits; the two tmem-specific codes keep Xen's numbers.
 *
 *   -ENOENT        a get that misses (normal outcome)
 *   -ENOMEM        no room: the put was refused (normal outcome)
 *   -EDQUOT        the put would exceed the client's persistent cap
 *   -ENOSPC        a duplicate put failed and the old copy is gone
 *   -ENODEV        no such pool id, or the client handle is closed
 *   -EINVAL        bad arguments: NULL page, reserved flag bits, bad sizes
 *   -EBUSY         the request conflicts with the object's state
 *                  (restoring into a client that already has pools)
 *   -ENOTCONN      a connected client lost its daemon (it died or was
 *                  restarted): treat like a refused put or a miss; every
 *                  later call on the handle returns it too
 *   -EPROTO        a save stream is malformed or from a newer version
 *   -TMEM_EFROZEN  the client is frozen: new puts are refused
 * ---------------------------------------------------------------------- */
#define TMEM_EFROZEN 1000
#define TMEM_EEMPTY  1001   /* reserved for ABI compatibility; never returned */

TMEM_API const char *tmem_strerror(int code);   /* accepts code or -code */

/* ------------------------------------------------------------------------
 * Engine configuration
 * ---------------------------------------------------------------------- */
enum { TMEM_COMPRESS_NONE, TMEM_COMPRESS_LZ4, TMEM_COMPRESS_ZSTD };

typedef struct tmem_config {
    uint64_t max_bytes;     /* the most memory the engine may hold: data, metadata
                               and free frames (default 256 MiB; see tmem_stats_t) */
    int      compress;      /* default codec for new clients (default LZ4) */
    int      zstd_level;    /* zstd level when compress == ZSTD (default 1) */
    uint32_t compress_max;  /* a page whose compressed size exceeds this many bytes
                               is stored whole ("compress poor"; default 3584) */
    int      dedup;         /* store identical pages once within a client's pools of
                               one kind and within a shared pool (default 1) */
    int      dedup_across_clients; /* extend dedup across clients: opt-in, since it
                               opens a timing side channel between tenants (default 0) */
    int      shared_auth_required; /* shared pools need tmem_admin_shared_auth (default 1) */
    uint32_t default_weight;/* weight of new clients in eviction, at most
                               TMEM_WEIGHT_MAX (default 100) */
    uint64_t default_cap;   /* persistent-page cap of new clients, 0 = none, at most
                               TMEM_CAP_MAX (default 0) */
} tmem_config_t;

TMEM_API void tmem_config_init(tmem_config_t *cfg);   /* fills every field with its default */

/* ------------------------------------------------------------------------
 * The client API (one API, two transports)
 * ---------------------------------------------------------------------- */
#define TMEM_POOL_PERSIST   0x1u   /* else ephemeral */
#define TMEM_POOL_SHARED    0x2u   /* else private */
/* Extension (not in Xen): gets on a private pool keep the page instead of
 * removing it, as Xen did for private persistent pools. */
#define TMEM_POOL_KEEP_ON_GET 0x8u
#define TMEM_POOL_PAGESIZE_SHIFT 4u      /* bits 4-7: log2(page size) - 12; only 0 */
#define TMEM_POOL_PAGESIZE_MASK  0xfu
#define TMEM_POOL_VERSION_SHIFT  24u     /* bits 24-31: spec version, 0 or 1 */
#define TMEM_POOL_VERSION_MASK   0xffu
#define TMEM_POOL_RESERVED_BITS  0x00ffff04u  /* must be zero, else -EINVAL */

/* Opens an engine; cfg NULL means defaults.  NULL with errno on failure
 * (EINVAL for a bad configuration, ENOMEM). */
TMEM_API tmem_t *tmem_open(const tmem_config_t *cfg);
/* Closes every client still open and frees everything, including frames
 * lent with tmem_relinquish_page*() that were not returned. */
TMEM_API void    tmem_close(tmem_t *t);

/* A new in-process client; name is copied (truncated to 63 bytes; bytes
 * outside printable ASCII, and ',' ':' '=', become '_', so that names cannot
 * forge tmem-list lines); NULL is allowed.  NULL with errno on failure. */
TMEM_API tmem_client_t *tmem_client_open(tmem_t *t, const char *name);
/* A client of tmemd at socket_path (NULL: $TMEM_SOCKET, else
 * /run/tmem/tmemd.sock).  Every call below works on it with the same
 * results as in-process; pages travel through shared memory, not the
 * socket.  NULL with errno on failure: ENOENT/ECONNREFUSED (no daemon),
 * EACCES, EAGAIN (the daemon has too many clients, or connections of this
 * uid under way: it is tried again for up to a second first), EPROTO (not
 * a tmemd of this version).  The client's identity is its uid/gid/pid, taken by the
 * daemon from the socket; name is a label (and, with the uid, what a
 * restored client is found by: docs/protocol.md). */
TMEM_API tmem_client_t *tmem_connect(const char *socket_path, const char *name);
/* Like a guest's death: all its private pools go, it leaves its shared pools.
 * The handle becomes a tombstone: later calls return -ENODEV (counted); its
 * few bytes are freed by tmem_close() (in-process) or at exit (connected).
 * Closing twice is harmless.  For a connected client, closing the
 * connection is what frees its pools in the daemon. */
TMEM_API void tmem_client_close(tmem_client_t *c);
/* Closes (if open) and frees an in-process client handle now instead of
 * keeping a tombstone: no call on c may be in flight or follow.  For a
 * server that opens and drops many clients (tmemd). */
TMEM_API void tmem_client_release(tmem_client_t *c);
TMEM_API uint32_t tmem_client_id(const tmem_client_t *c);   /* for admin calls; never reused */
/* 1 if c is a connection to tmemd, 0 if in-process. */
TMEM_API int tmem_client_is_remote(const tmem_client_t *c);

/* The canonical text form of a pool uuid, "8-4-4-4-12" hex digits: the
 * 16 bytes in text order, lo = bytes 0-7 and hi = bytes 8-15 loaded little
 * endian (as Linux built them from a superblock's raw uuid).  Parse returns
 * 0 or -EINVAL; format writes 36 characters and a NUL. */
TMEM_API int  tmem_uuid_parse(const char *text, tmem_uuid_t *out);
TMEM_API void tmem_uuid_format(tmem_uuid_t uuid, char out[37]);

/* >= 0: the pool id (the lowest free slot).  A shared request that is not
 * authorised, or whose uuid is all ones, silently yields a private pool (as
 * in Xen); tmem_pool_is_shared() tells which.  -EINVAL for bad flags or for
 * SHARED|PERSIST, -ENOMEM when no slot (or no shared slot) is free. */
TMEM_API int tmem_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags);
/* 0 on success; -ENODEV if there is no such pool. */
TMEM_API int tmem_destroy_pool(tmem_client_t *c, uint32_t pool_id);
TMEM_API int tmem_pool_is_shared(tmem_client_t *c, uint32_t pool_id); /* 1, 0, or -ENODEV */

/* Copies one page in.  0 stored; -ENOMEM, -EDQUOT, -TMEM_EFROZEN refused;
 * -ENOSPC a duplicate put failed and the old copy was removed; -ENODEV,
 * -EINVAL bad arguments. */
TMEM_API int tmem_put_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid,
                           uint32_t index, const void *page);
/* Copies one page out.  0 hit (on a private pool the page is then removed,
 * unless the pool has TMEM_POOL_KEEP_ON_GET); -ENOENT miss. */
TMEM_API int tmem_get_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid,
                           uint32_t index, void *page);
/* 0 whether or not the page was there.  Works on frozen clients. */
TMEM_API int tmem_flush_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid,
                             uint32_t index);
/* >= 0: how many pages were flushed. */
TMEM_API int tmem_flush_object(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid);

/* ------------------------------------------------------------------------
 * Vector calls: n pages at once, as a kernel batches them (a swap cluster,
 * a read-ahead window, a run of evicted pages).  pages[i] goes with
 * handles[i], and results[i] receives exactly what the single call on that
 * page would have returned; the pages are handled in order, as if by n
 * single calls (a handle may repeat: put-put-get holds within a vector).
 * Through tmemd, the pages of pools the daemon serves cross to it in one
 * request per up to 32 pages, with one wake-up for the batch.
 * Returns how many results are 0 (0..n), or -EINVAL when c or an array is
 * NULL or n exceeds INT32_MAX (results untouched).  n may be 0.
 * ---------------------------------------------------------------------- */
typedef struct tmem_handle {
    uint32_t   pool_id;
    uint32_t   index;
    tmem_oid_t oid;
} tmem_handle_t;

TMEM_API int tmem_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles,
                            const void *const *pages, int *results);
TMEM_API int tmem_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles,
                            void *const *pages, int *results);
TMEM_API int tmem_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles,
                              int *results);

/* ------------------------------------------------------------------------
 * Statistics.  Totals are exact when the engine is quiescent and otherwise
 * a consistent-enough snapshot (each counter is read atomically).
 * ---------------------------------------------------------------------- */
typedef struct tmem_stats {
    /* what is held now */
    uint64_t ephemeral_pages;   /* pages now held in ephemeral pools */
    uint64_t persistent_pages;  /* pages now held in persistent pools */
    uint64_t bytes_held;        /* memory the engine holds now, including its free frames:
                                   frames_held * 4096 + meta_bytes */
    uint64_t max_bytes;         /* the current limit */
    uint64_t frames_held;       /* resident frames: in use + free */
    uint64_t frames_free;       /* resident frames on the free list */
    uint64_t frames_whole;      /* frames holding one uncompressed page */
    uint64_t frames_zalloc;     /* frames holding compressed fragments */
    uint64_t frames_lent;       /* frames handed out by tmem_relinquish_page*() */
    uint64_t meta_bytes;        /* metadata: descriptors, objects, maps, pools, clients */
    uint64_t zalloc_bytes_used; /* bytes of compressed fragments, as allocated */
    uint64_t pages_whole;       /* pages stored as a whole frame (incl. compress poor) */
    uint64_t pages_compressed;  /* pages stored as a compressed fragment */
    uint64_t pages_same_filled; /* pages stored as one repeated word (no frame) */
    uint64_t pages_deduped;     /* pages stored as a reference to an identical page's
                                   data: all references minus distinct bodies */
    uint64_t bodies;            /* distinct data in the dedup index: a page alone, or the
                                   body identical pages share (0 with dedup off) */
    uint64_t clients;           /* clients open */
    uint64_t pools;             /* pools (a shared pool counts once) */
    uint64_t objects;           /* objects */
    /* outcomes since tmem_open (cumulative) */
    uint64_t puts, puts_ok, gets, gets_hit, flushes, flush_objects, flushed_pages;
    uint64_t dup_puts_replaced, dup_puts_flushed;
    uint64_t compress_poor;     /* pages that did not compress below compress_max */
    uint64_t dedup_hits;        /* puts that found an identical body */
    uint64_t dedup_skipped;     /* puts not looked up: their store's lookups had found
                                   nothing for a long while, and it samples 1 in 16
                                   (sparse dedup, docs/internals.md) */
    uint64_t evictions, evict_attempts, evict_skipped_busy;
    uint64_t relinquished_frames; /* frames given back to the OS */
    uint64_t lent_frames;       /* frames handed out by relinquish_page(block) */
    /* refusals, one per reason */
    uint64_t refused_nomem;     /* -ENOMEM: no room even after eviction */
    uint64_t refused_quota;     /* -EDQUOT: persistent cap */
    uint64_t refused_frozen;    /* -TMEM_EFROZEN */
    uint64_t alloc_failed;      /* an internal allocation failed (counted in refusals too) */
    /* bad calls, one per reason */
    uint64_t bad_pool;          /* -ENODEV: unknown pool id */
    uint64_t bad_args;          /* -EINVAL: NULL page, reserved flags, ... */
    uint64_t bad_closed;        /* -ENODEV: call on a closed client */
} tmem_stats_t;

TMEM_API int tmem_stats_get(tmem_t *t, tmem_stats_t *out);

/* Per-client figures (by tmem_client_id()). */
typedef struct tmem_client_info {
    uint32_t id;
    char     name[64];
    uint32_t weight;
    uint64_t cap;               /* persistent-page cap, 0 = none */
    int      compress;          /* TMEM_COMPRESS_* */
    int      frozen;
    uint32_t nr_pools;
    uint64_t ephemeral_pages;   /* in ephemeral pools this client owns */
    uint64_t persistent_pages;
    uint64_t puts, puts_ok, gets, gets_hit, flushes;
    uint64_t evicted;           /* its ephemeral pages evicted */
    uint64_t refused_nomem, refused_quota, refused_frozen;
    uint64_t compressed_pages, compressed_bytes, compress_poor;
} tmem_client_info_t;

/* 0, or -ENOENT if there is no open client with that id. */
TMEM_API int tmem_client_info(tmem_t *t, uint32_t client_id, tmem_client_info_t *out);
/* Fills up to max ids of open clients, returns how many clients are open. */
TMEM_API size_t tmem_client_ids(tmem_t *t, uint32_t *ids, size_t max);

/* The Xen `tmem-list` text: G= line, then S= lines per shared pool, C= and P=
 * lines per client (client_id TMEM_CLIENT_ALL) or one client; long adds the
 * long keys.  Returns the length the full text needs (like snprintf). */
#define TMEM_CLIENT_ALL UINT32_MAX
TMEM_API size_t tmem_list(tmem_t *t, uint32_t client_id, int long_form,
                          char *buf, size_t size);

/* Self-check: walks every structure and counts invariant violations (each is
 * also reported on stderr).  0 means consistent.  Must run with no other call
 * in flight on this engine (it is a debugging and testing aid). */
TMEM_API int tmem_check(tmem_t *t);

/* ------------------------------------------------------------------------
 * The host's side (seed 004): memory in, memory out.
 * ---------------------------------------------------------------------- */
/* Changes the limit at run time; shrinking evicts ephemeral data and gives
 * free frames back to the OS until bytes_held fits.  Returns 0, or -ENOMEM
 * if persistent data alone exceeds the new limit (the limit is set anyway
 * and puts are refused until data is flushed). */
TMEM_API int    tmem_set_max_bytes(tmem_t *t, uint64_t max_bytes);
/* Free frames + frames that eviction of all ephemeral data could free. */
TMEM_API size_t tmem_freeable_pages(tmem_t *t);
/* Evicts ephemeral data until npages frames were freed (onto the free list);
 * returns how many were freed. */
TMEM_API size_t tmem_evict_npages(tmem_t *t, size_t npages);
/* Gives up to npages free frames back to the OS (their memory is released:
 * resident memory drops); returns how many. */
TMEM_API size_t tmem_relinquish_pages(tmem_t *t, size_t npages);
/* One scrubbed (zeroed) frame, now the caller's, taken from the free list or
 * freed by eviction; NULL if none can be freed.  The frame stays inside the
 * engine's mapping: give it back with tmem_return_pages(t, p, 0), and do not
 * use it after tmem_close(), which unmaps it.  Lent frames are not counted
 * in bytes_held. */
TMEM_API void  *tmem_relinquish_page(tmem_t *t);
/* 2^order contiguous scrubbed frames (aligned to their size), or NULL.  May
 * evict much ephemeral data and still fail (fragmentation).  order <= 9. */
TMEM_API void  *tmem_relinquish_pageblock(tmem_t *t, unsigned order);
/* Returns frames obtained from tmem_relinquish_page*(); p and order must be
 * exactly what was obtained.  0, or -EINVAL if p is not such a block. */
TMEM_API int    tmem_return_pages(tmem_t *t, void *p, unsigned order);

/* ------------------------------------------------------------------------
 * Administration (the control plane; tmemd exposes it to administrators
 * only).  client_id TMEM_CLIENT_ALL is accepted by freeze and thaw.
 * Each returns 0 or -ENOENT (no such client) / -EINVAL.
 * ---------------------------------------------------------------------- */
/* The range of a client's weight and persistent cap wherever they are set:
 * here, in tmem_config_t's defaults, in a restored save stream (a value
 * outside is -EPROTO there), and in tmemd's configuration and control
 * plane. */
#define TMEM_WEIGHT_MAX 1000000u        /* weight: 0 .. this */
#define TMEM_CAP_MAX    (1ull << 40)    /* cap: 0 (none) .. this many pages */
TMEM_API int tmem_admin_freeze(tmem_t *t, uint32_t client_id);
TMEM_API int tmem_admin_thaw(tmem_t *t, uint32_t client_id);
/* 0 .. TMEM_WEIGHT_MAX (-EINVAL above). */
TMEM_API int tmem_admin_set_weight(tmem_t *t, uint32_t client_id, uint32_t weight);
/* Persistent-page cap, 0 (none) .. TMEM_CAP_MAX (-EINVAL above).  Pages
 * above a lowered cap stay; new puts are refused with -EDQUOT until the
 * client is below it. */
TMEM_API int tmem_admin_set_cap(tmem_t *t, uint32_t client_id, uint64_t pages);
/* Persistent quota groups: the clients of group g (> 0) hold at most the
 * group's cap of persistent pages together, beside each one's own cap
 * (tmemd makes one group per uid).  A client joins (or, with group 0,
 * leaves) with the persistent pages it holds (above the cap they stay;
 * new puts are refused).  0, -ENOENT or -ENOMEM. */
TMEM_API int tmem_admin_set_group(tmem_t *t, uint32_t client_id, uint32_t group);
/* The cap of group (> 0) in pages, 0 = none.  Pages above a lowered cap
 * stay.  A group lives while it has clients.  0, -EINVAL or -ENOENT. */
TMEM_API int tmem_admin_set_group_cap(tmem_t *t, uint32_t group, uint64_t pages);
/* The persistent pages group's clients hold (0 if there is no such group). */
TMEM_API uint64_t tmem_group_pages(tmem_t *t, uint32_t group);
/* TMEM_COMPRESS_*; applies to pages put from now on. */
TMEM_API int tmem_admin_set_compress(tmem_t *t, uint32_t client_id, int codec);
/* Allows (allow=1) or forbids (0) the client to join shared pools of uuid.
 * Forbidding does not evict a client already in the pool.  -ENOSPC when the
 * client's authorisation list (16 entries) is full. */
TMEM_API int tmem_admin_shared_auth(tmem_t *t, uint32_t client_id, tmem_uuid_t uuid,
                                    int allow);

/* ------------------------------------------------------------------------
 * Save and restore of one client (live migration).  The stream carries the
 * client's settings, its pool definitions (at their pool ids) and the data of
 * its persistent pages; ephemeral pages are never saved.  The format is
 * versioned and checksummed (docs/internals.md, "Save stream").
 * ---------------------------------------------------------------------- */
typedef int (*tmem_write_fn)(void *arg, const void *buf, size_t len);  /* 0 or -errno */
typedef int (*tmem_read_fn)(void *arg, void *buf, size_t len);  /* 0 (all len bytes) or -errno */

/* Writes the stream.  New puts of the client are refused while the save
 * runs (saves may overlap; an administrator's freeze or thaw meanwhile is
 * kept).  write runs with the client's pools held: it must not create or
 * destroy the client's pools or close it.  Returns the number of persistent
 * pages saved, or a negative code (-ENOENT no client, or the writer's). */
TMEM_API int64_t tmem_client_save(tmem_t *t, uint32_t client_id,
                                  tmem_write_fn write, void *arg);
/* Reads a stream into client c (in-process; -EOPNOTSUPP for a connected
 * one: tmemctl restore does that), which must have no pools and no restore
 * running (-EBUSY).  Pools are recreated at their saved ids, settings
 * applied (weight, cap, codec; a saved freeze; a weight or cap out of its
 * range is -EPROTO), pages put.  All or nothing:
 * on any error (-EPROTO malformed, -ENOMEM no room, the reader's error) the
 * pools this restore created are destroyed.  Returns the pages restored. */
TMEM_API int64_t tmem_client_restore(tmem_client_t *c, tmem_read_fn read, void *arg);

#ifdef __cplusplus
}
#endif
#endif /* TMEM_TMEM_H */
