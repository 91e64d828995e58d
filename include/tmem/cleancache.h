/* SPDX-License-Identifier: MIT */
/*
 * cleancache.h - a victim cache for clean file pages, over tmem.
 *
 * The layer a filesystem (or anything that caches file pages) calls, shaped
 * like Linux's cleancache: a mounted filesystem gets a pool (init_fs, or
 * init_shared_fs for a filesystem several tenants mount), clean pages that
 * leave the local cache are put, a read asks cleancache before the backing
 * store, and writes, truncates and unmounts invalidate.  A file is named by a
 * key of up to 24 bytes (an inode number, or a file handle), which becomes
 * the 192-bit object id; the page index is the index.
 *
 * Ephemeral pools only: any get may miss, so a put never needs to succeed and
 * the caller must never rely on one.  Correctness rests on one rule the caller
 * keeps: invalidate a page (or its inode) before the backing copy changes, and
 * never put a page that is not identical to the backing copy.
 *
 * Two ways to open it:
 *   tmem_cleancache_open(c)          over a client the caller owns (in-process
 *                                    or connected); the caller closes c after
 *                                    tmem_cleancache_close().
 *   tmem_cleancache_connect(path, n) over its own connection to tmemd.  When
 *                                    the daemon goes away every get misses and
 *                                    every put is dropped (the backing store
 *                                    serves); the layer reconnects at most
 *                                    once per reconnect interval and recreates
 *                                    its filesystems' pools (Linux's "lazy
 *                                    init": the caller's fs ids do not change).
 *                                    Invalidates of a shared fs made while
 *                                    away are replayed on reconnection.
 *
 * Thread safety: every call may be made from many threads at once, except
 * close.  Ordering between a put and an invalidate of the same page is the
 * caller's (as in Linux, where the page lock orders them).
 */
#ifndef TMEM_CLEANCACHE_H
#define TMEM_CLEANCACHE_H

#include <stdint.h>
#include "tmem.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TMEM_CLEANCACHE_MAX_FS 32       /* filesystems per cleancache (Linux: 32) */
#define TMEM_CLEANCACHE_KEY_MAX 6       /* 32-bit words in a file key (24 bytes) */

/* A file's key: an inode number, or up to 24 bytes of file handle.
 * Unused words must be zero. */
typedef struct tmem_cleancache_filekey {
    uint32_t fh[TMEM_CLEANCACHE_KEY_MAX];
} tmem_cleancache_filekey_t;

/* The key of inode number ino. */
static inline tmem_cleancache_filekey_t tmem_cleancache_key_ino(uint64_t ino)
{
    tmem_cleancache_filekey_t k = {{ (uint32_t)ino, (uint32_t)(ino >> 32), 0, 0, 0, 0 }};
    return k;
}

typedef struct tmem_cleancache tmem_cleancache_t;

typedef struct tmem_cleancache_stats {
    uint64_t succ_gets;     /* gets that found the page */
    uint64_t failed_gets;   /* gets that missed (including while disconnected) */
    uint64_t puts;          /* puts asked for */
    uint64_t invalidates;   /* invalidate_page/inode/fs calls */
    /* extensions */
    uint64_t puts_refused;  /* puts tmem refused or that could not be sent */
    uint64_t reconnects;    /* successful reconnections to tmemd */
    uint64_t disconnected;  /* calls answered locally because tmemd was away */
} tmem_cleancache_stats_t;

/* Over client c (not owned).  NULL with errno (EINVAL, ENOMEM). */
TMEM_API tmem_cleancache_t *tmem_cleancache_open(tmem_client_t *c);
/* Over its own connection to tmemd (socket_path NULL: $TMEM_SOCKET, else the
 * default; name: the client's label, which should differ from the names of
 * the process's other connections of the same uid: a restarted tmemd hands
 * saved pages back by uid and name).  NULL with errno as tmem_connect(). */
TMEM_API tmem_cleancache_t *tmem_cleancache_connect(const char *socket_path,
                                                    const char *name);
/* Invalidates every filesystem still initialised, closes its own connection
 * (if any) and frees cc.  No call on cc may be in flight. */
TMEM_API void tmem_cleancache_close(tmem_cleancache_t *cc);

/* A new filesystem: >= 0 its fs id (0..TMEM_CLEANCACHE_MAX_FS-1), or
 * negative: -ENOSPC (no fs id left), or tmem's refusal of the pool (the
 * caller then runs without cleancache: every call on a negative fs id is a
 * counted miss or no-op, as in Linux). */
TMEM_API int  tmem_cleancache_init_fs(tmem_cleancache_t *cc);
/* A filesystem shared by every tenant that mounts the same uuid: its pool is
 * shared once an administrator has authorised this client for uuid
 * (tmemctl shared-auth, or tmemd's standing [memory] shared_allow), else
 * private (tmem's rule).  -EBUSY if an fs of this cleancache is in that
 * shared pool already (a second one would get the same pool); asking again
 * while the first fs is still private is how a caller rejoins once it is
 * authorised (open the new fs, keep it if shared, else invalidate it). */
TMEM_API int  tmem_cleancache_init_shared_fs(tmem_cleancache_t *cc, tmem_uuid_t uuid);
/* 1 if fs is backed by a shared pool now, 0 if private, -ENODEV. */
TMEM_API int  tmem_cleancache_fs_is_shared(tmem_cleancache_t *cc, int fs);

/* 0: the page was found and copied to page.  Negative: not found (-ENOENT),
 * or no usable pool or daemon (the caller reads the backing store). */
TMEM_API int  tmem_cleancache_get_page(tmem_cleancache_t *cc, int fs,
                                       const tmem_cleancache_filekey_t *key,
                                       uint32_t index, void *page);
/* Offers a clean page.  0 if tmem took it, negative if not; the caller may
 * ignore the result (a put "always succeeds" for a filesystem). */
TMEM_API int  tmem_cleancache_put_page(tmem_cleancache_t *cc, int fs,
                                       const tmem_cleancache_filekey_t *key,
                                       uint32_t index, const void *page);
/* A run of n consecutive pages of one file, index .. index + n - 1 (a
 * read-ahead window to get, a run of evicted pages to put): page i for
 * index + i, results[i] as the single call's, in one batch (through tmemd's
 * window a single wake-up).  The number found (or taken); a negative
 * result for every page, and no call, on a bad fs, key, page array or
 * n > TMEM_CLEANCACHE_MAX_BATCH. */
#define TMEM_CLEANCACHE_MAX_BATCH 256
TMEM_API int  tmem_cleancache_get_pages(tmem_cleancache_t *cc, int fs,
                                        const tmem_cleancache_filekey_t *key, uint32_t index,
                                        size_t n, void *const *pages, int *results);
TMEM_API int  tmem_cleancache_put_pages(tmem_cleancache_t *cc, int fs,
                                        const tmem_cleancache_filekey_t *key, uint32_t index,
                                        size_t n, const void *const *pages, int *results);
TMEM_API void tmem_cleancache_invalidate_page(tmem_cleancache_t *cc, int fs,
                                              const tmem_cleancache_filekey_t *key,
                                              uint32_t index);
TMEM_API void tmem_cleancache_invalidate_inode(tmem_cleancache_t *cc, int fs,
                                               const tmem_cleancache_filekey_t *key);
/* The unmount: the fs's pool is destroyed and its fs id freed. */
TMEM_API void tmem_cleancache_invalidate_fs(tmem_cleancache_t *cc, int fs);

TMEM_API void tmem_cleancache_stats(tmem_cleancache_t *cc, tmem_cleancache_stats_t *out);
/* The client the layer runs on now (changes when it reconnects), for
 * tmem_client_id() and administration; NULL while disconnected. */
TMEM_API tmem_client_t *tmem_cleancache_client(tmem_cleancache_t *cc);
/* Reconnect attempts are at most one per interval (default 1000 ms). */
TMEM_API void tmem_cleancache_set_reconnect_ms(tmem_cleancache_t *cc, unsigned ms);

#ifdef __cplusplus
}
#endif
#endif /* TMEM_CLEANCACHE_H */
