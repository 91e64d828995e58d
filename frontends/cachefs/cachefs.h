/* SPDX-License-Identifier: MIT */
/*
 * cachefs.h - tmem-cachefs's private interfaces, one section per file.
 *
 * tmem-cachefs is a FUSE filesystem in front of a slow backing directory.
 * File data is read through three tiers:
 *
 *     local page cache (pagecache.c)  ->  cleancache (tier.c)  ->  backing (backing.c)
 *       bounded, clock eviction           tmemd, victim cache        the directory,
 *       clean pages it evicts are         of clean pages; may        slowed down by
 *       put to cleancache                 miss at any time           --delay-us
 *
 * A file is a cfs_inode (inode.c): the backing file's identity (dev, ino)
 * and the version of it this mount validated at open, (ctime in ns, size).
 * The cleancache key is (ino, ctime_ns, size): a version never changes its
 * contents, so a page under a key is never stale for whoever opened that
 * version (the close-to-open rule, docs/cachefs.md).
 *
 * LOCKING (order: inode->wlock, then tier->lock or cache->lock; cache->lock
 * and tier->lock are never held together):
 *   cache->lock   a mutex over the inode table, the page cache and every
 *                 inode field marked [cache]; held only for memory work:
 *                 never across backing I/O, a sleep or a cleancache call.
 *   inode->wlock  serialises this mount's changes to one file (write,
 *                 truncate) with the update of its cached pages; held
 *                 across the backing I/O.
 *   tier->lock    a rwlock over the cleancache fs id: read by every
 *                 cleancache call, written when a shared pool is joined.
 * Readers never take wlock: a reader notes the inode's gen before it reads
 * the backing store or cleancache (outside the lock) and inserts the page
 * only if gen has not moved since (every change bumps gen under the lock).
 */
#ifndef TMEM_CACHEFS_H
#define TMEM_CACHEFS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "tmem/cleancache.h"

#define CFS_PROG "tmem-cachefs"
#define CFS_PAGE ((size_t)TMEM_PAGE_SIZE)
#define CFS_STATS_NAME "/.cachefs-stats"    /* the virtual statistics file */
#define CFS_UUID_FILE ".tmem-uuid"          /* in the backing directory */

/* ---- main.c: options ------------------------------------------------------ */
struct cfs_options {
    const char *backing;        /* BACKING_DIR as given */
    char *mountpoint;           /* absolute */
    unsigned long cache_pages;  /* local cache size in pages (>= 1) */
    unsigned long delay_us;     /* per backing page read or written */
    const char *socket;         /* NULL: $TMEM_SOCKET, else the default */
    char *name;                 /* client label */
    bool no_tmem;               /* local cache only */
    bool shared;                /* join the backing directory's shared pool */
    unsigned long rejoin_ms;    /* retry a shared pool this often (0: never) */
    unsigned long reconnect_ms; /* the layer's reconnect interval */
    unsigned long ts_res_ns;    /* the backing store's timestamp granularity */
    unsigned long open_wait_ms; /* longest wait in open for a settled version */
    bool foreground, debug, single_thread;
    char *fuse_opts;            /* -o options, comma-joined (may be NULL) */
};

/* ---- stats.c: counters ----------------------------------------------------
 * Exact counts (relaxed atomics: each is exact, a snapshot of several is
 * not atomic).  Pages unless named bytes. */
struct cfs_stats {
    _Atomic uint64_t local_hits;        /* page reads served by the local cache */
    _Atomic uint64_t local_misses;      /* page reads it could not serve */
    _Atomic uint64_t local_evictions;   /* pages the clock evicted */
    _Atomic uint64_t local_dropped;     /* pages dropped by changes and versions */
    _Atomic uint64_t puts_skipped;      /* evicted pages of a file without a key */
    _Atomic uint64_t tier_hits;         /* local misses cleancache served */
    _Atomic uint64_t tier_batches;      /* read-ahead windows asked of cleancache */
    _Atomic uint64_t backing_reads;     /* pages read from the backing store */
    _Atomic uint64_t backing_writes;    /* pages written (touched) in it */
    _Atomic uint64_t backing_read_bytes, backing_write_bytes;
    _Atomic uint64_t read_bytes;        /* bytes read through the mount */
    _Atomic uint64_t write_bytes;       /* bytes written through the mount */
    _Atomic uint64_t opens;             /* files opened (or created) */
    _Atomic uint64_t version_changes;   /* opens that found the file changed */
    _Atomic uint64_t open_waits;        /* opens that waited for the clock */
    _Atomic uint64_t untrusted_opens;   /* opens left without a key (racy version) */
    _Atomic uint64_t tier_joins;        /* shared pools joined */
};
#define CFS_INC(st, f) atomic_fetch_add_explicit(&(st)->f, 1, memory_order_relaxed)
#define CFS_ADD(st, f, n) atomic_fetch_add_explicit(&(st)->f, (n), memory_order_relaxed)

struct cfs_fs;
/* The statistics as "key value" lines; returns the length (< size). */
size_t cfs_stats_format(struct cfs_fs *fs, char *buf, size_t size);
void cfs_stats_print(struct cfs_fs *fs, const char *why);

/* ---- backing.c: the slow backing store ------------------------------------ */
struct cfs_backing {
    int dirfd;                  /* the backing directory (O_PATH-less, readable) */
    char *path;                 /* its absolute path */
    dev_t dev;                  /* its device: keys are trusted on it only */
    unsigned long delay_us;
    struct cfs_stats *st;
};
int  cfs_backing_init(struct cfs_backing *b, const char *path, unsigned long delay_us,
                      struct cfs_stats *st);
void cfs_backing_fini(struct cfs_backing *b);
/* "/a/b" -> "a/b", "/" -> "." (paths relative to dirfd). */
const char *cfs_rel(const char *path);
/* Reads page index of fd; zero-fills after the bytes read.  Bytes read
 * (0..CFS_PAGE) or -errno.  Sleeps delay_us. */
ssize_t cfs_backing_read_page(struct cfs_backing *b, int fd, uint32_t index, void *page);
/* Writes all of buf at off (short only on error).  Bytes written or
 * -errno.  Sleeps delay_us per page touched. */
ssize_t cfs_backing_write(struct cfs_backing *b, int fd, const void *buf, size_t size,
                          off_t off);

/* ---- dirid.c: the backing directory's uuid -------------------------------- */
/* The uuid of the directory dirfd (its CFS_UUID_FILE, created if missing or
 * written for another directory; derived from the directory's identity if
 * the directory is read-only).  0, or -errno with a message in err. */
int  cfs_dirid_get(int dirfd, tmem_uuid_t *out, char *err, size_t errlen);
/* Names in the backing root that the mount hides (the uuid file, its
 * temporary files). */
bool cfs_dirid_hidden(const char *name);

/* ---- tier.c: cleancache ---------------------------------------------------- */
struct cfs_tier {
    pthread_rwlock_t lock;
    tmem_cleancache_t *cc;      /* NULL: none (yet); set once (lock) */
    int fs;                     /* cleancache fs id, < 0 none (lock) */
    /* below: the housekeeping thread's (cfs_tier_tick) and immutable */
    bool enabled, shared;
    tmem_uuid_t uuid;
    char uuid_text[37];
    const char *socket;
    const char *name;
    unsigned long rejoin_ms, reconnect_ms;
    uint64_t next_connect_ns, next_rejoin_ns, next_check_ns;
    uint32_t announced_id;      /* the client id last printed */
    int announced_shared;       /* -1 not yet */
    bool said_away;             /* the first failed connect was reported */
    _Atomic int is_shared;      /* for the statistics */
    _Atomic uint32_t client_id; /* 0 while disconnected */
    struct cfs_stats *st;
};
/* Connects (or, if tmemd is away, leaves it to cfs_tier_tick) and prints
 * the client id and uuid.  Never fails: without tmem every get misses. */
void cfs_tier_start(struct cfs_tier *t, const struct cfs_options *o, tmem_uuid_t uuid,
                    struct cfs_stats *st);
/* Housekeeping, from one thread: connect if not yet, join the shared pool
 * when authorised (now if force), print a changed client id. */
void cfs_tier_tick(struct cfs_tier *t, bool force_rejoin);
/* Invalidates the fs and closes; no call may be in flight. */
void cfs_tier_stop(struct cfs_tier *t);
/* Pages index .. index + n - 1 of one file in one batch (a read-ahead
 * window, n <= CFS_READAHEAD): res[i] 0 when pages + i * CFS_PAGE holds
 * page index + i, else negative. */
#define CFS_READAHEAD 32u
void cfs_tier_get_run(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                      unsigned n, uint8_t *pages, int *res);
int  cfs_tier_get(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                  void *page);
void cfs_tier_put(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                  const void *page);
void cfs_tier_invalidate_inode(struct cfs_tier *t, const tmem_cleancache_filekey_t *key);
/* The layer's counters; false if there is no cleancache (yet). */
bool cfs_tier_stats(struct cfs_tier *t, tmem_cleancache_stats_t *out);
uint64_t cfs_now_ns(void);          /* CLOCK_MONOTONIC */

/* ---- inode.c: files and their versions ------------------------------------ */
struct cfs_inode {
    dev_t dev;                  /* identity (immutable) */
    ino_t ino;
    pthread_mutex_t wlock;      /* see LOCKING */
    /* [cache]: guarded by cache->lock */
    struct cfs_inode *hnext;    /* hash chain */
    unsigned refs;              /* open handles and temporary references */
    uint32_t npages;            /* pages in the local cache */
    uint32_t pages;             /* first page slot of its list (CFS_NIL: none) */
    uint64_t gen;               /* bumped by every change of pages or size */
    bool has_version;           /* a version was validated */
    bool trusted;               /* the version's key is unique (see inode.c) */
    bool dirty;                 /* changed through this mount since */
    int64_t ctime_ns;           /* the version validated at open */
    int64_t vsize;
    int64_t size;               /* the size as this mount knows it */
};
#define CFS_NIL UINT32_MAX

struct cfs_pagecache;
struct cfs_cache;
/* Validates the version of fd's file at open (the close-to-open rule) and
 * returns its inode with a reference.  may_wait: the open may sleep until
 * a just-changed file's version can be trusted.  0 or -errno. */
int  cfs_inode_open(struct cfs_cache *c, int fd, bool may_wait, struct cfs_inode **out);
/* The inode of (dev, ino) with a reference, or NULL if none is known. */
struct cfs_inode *cfs_inode_find(struct cfs_cache *c, dev_t dev, ino_t ino);
void cfs_inode_release(struct cfs_cache *c, struct cfs_inode *ino);
/* The file was removed or replaced through this mount: drop its pages and
 * its key. */
void cfs_inode_gone(struct cfs_cache *c, struct cfs_inode *ino);
/* Caller holds cache->lock.  The key pages of ino may be put under, if
 * any: a trusted, unchanged version. */
bool cfs_inode_key_locked(const struct cfs_cache *c, const struct cfs_inode *ino,
                          tmem_cleancache_filekey_t *key);
/* Caller holds cache->lock: this mount changes ino (write, truncate):
 * gen++, dirty; returns true with the key to invalidate if it had one. */
bool cfs_inode_change_locked(struct cfs_cache *c, struct cfs_inode *ino,
                             tmem_cleancache_filekey_t *old_key);
/* Caller holds cache->lock: frees ino if nothing refers to it. */
void cfs_inode_maybe_free_locked(struct cfs_cache *c, struct cfs_inode *ino);

/* ---- pagecache.c: the bounded local cache --------------------------------- */
struct cfs_page {
    struct cfs_inode *inode;    /* NULL: a free slot */
    uint32_t index;
    uint32_t hnext;             /* hash chain; free list when free */
    uint32_t iprev, inext;      /* the inode's list */
    uint8_t ref;                /* the clock's reference bit */
};
struct cfs_pagecache {
    uint32_t npages;
    struct cfs_page *pages;
    uint8_t *data;              /* npages * CFS_PAGE */
    uint32_t *hash;             /* heads, hmask + 1 of them */
    uint32_t hmask;
    uint32_t hand;              /* the clock hand */
    uint32_t free;              /* free list head */
    uint32_t used;
};
/* A page the cache evicted, for the caller to put to cleancache after
 * unlocking (put is false if it has no key). */
struct cfs_victim {
    bool put;
    tmem_cleancache_filekey_t key;
    uint32_t index;
    uint8_t data[TMEM_PAGE_SIZE];
};
int  cfs_pc_init(struct cfs_pagecache *pc, uint32_t npages);
void cfs_pc_fini(struct cfs_pagecache *pc);
/* All below: caller holds cache->lock. */
/* Copies len bytes at off of page (ino, index) to dst; false if absent. */
bool cfs_pc_read_locked(struct cfs_pagecache *pc, struct cfs_inode *ino, uint32_t index,
                        void *dst, size_t off, size_t len);
/* Overwrites len bytes at off of the page if present. */
void cfs_pc_write_locked(struct cfs_pagecache *pc, struct cfs_inode *ino, uint32_t index,
                         const void *src, size_t off, size_t len);
/* Inserts a full page (replacing a present one); may evict into v. */
void cfs_pc_insert_locked(struct cfs_cache *c, struct cfs_inode *ino, uint32_t index,
                          const void *page, struct cfs_victim *v);
/* Drops ino's pages with index >= from; zeroes bytes from tail_off of page
 * from - 1 if tail_off > 0 (truncate).  Returns the pages dropped. */
uint32_t cfs_pc_truncate_locked(struct cfs_pagecache *pc, struct cfs_inode *ino,
                                uint32_t from, size_t tail_off);

struct cfs_cache {
    pthread_mutex_t lock;
    struct cfs_inode **tab;     /* inode hash table [cache] */
    size_t tabmask, count;
    struct cfs_pagecache pc;    /* [cache] */
    struct cfs_tier *tier;
    struct cfs_backing *backing;
    struct cfs_stats *st;
    unsigned long ts_res_ns, open_wait_ms;
};
int  cfs_cache_init(struct cfs_cache *c, uint32_t npages, struct cfs_tier *tier,
                    struct cfs_backing *b, struct cfs_stats *st, unsigned long ts_res_ns,
                    unsigned long open_wait_ms);
void cfs_cache_fini(struct cfs_cache *c);

/* ---- data.c: the data path ------------------------------------------------ */
ssize_t cfs_data_read(struct cfs_cache *c, struct cfs_inode *ino, int fd, char *buf,
                      size_t size, off_t off);
/* append: write at the backing file's end (O_APPEND), whatever off says. */
ssize_t cfs_data_write(struct cfs_cache *c, struct cfs_inode *ino, int fd, const char *buf,
                       size_t size, off_t off, bool append);
/* Truncates fd (>= 0) or the path rel; ino may be NULL (no cached state). */
int     cfs_data_truncate(struct cfs_cache *c, struct cfs_inode *ino, int fd, const char *rel,
                          off_t size);

/* ---- fs.c: the FUSE operations -------------------------------------------- */
struct cfs_fs {
    struct cfs_options *opt;
    struct cfs_stats st;
    struct cfs_backing backing;
    struct cfs_tier tier;
    struct cfs_cache cache;
    tmem_uuid_t uuid;
    bool have_uuid;
};
struct fuse_operations;
extern const struct fuse_operations cfs_ops;

#endif /* TMEM_CACHEFS_H */
