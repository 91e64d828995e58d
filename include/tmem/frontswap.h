/* SPDX-License-Identifier: MIT */
/*
 * frontswap.h - a fast front for swap areas, over tmem.
 *
 * The layer a pager calls, shaped like Linux's frontswap: before a page is
 * written to slot `offset` of swap area `type`, store() offers it to tmem; if
 * tmem keeps it, the write is saved.  Before a slot is read, load() asks tmem.
 * A bitmap with one bit per slot says which slots live in tmem, so a load of
 * a slot tmem never had costs no call.  Every slot must have a real place in
 * the caller's swap file behind it, because any store may be refused.
 *
 * The pages go to one private persistent tmem pool; swap area `type` is
 * spread over 16 objects (object (type << 4) | (offset & 15), index
 * offset >> 4), as Linux's tmem driver did, so that no single object grows
 * huge.
 *
 * Loads are exclusive (destructive) by default: a successful load hands the
 * page back, frees tmem's copy and clears the slot's bit, because the caller
 * now holds the only copy.  With TMEM_FRONTSWAP_KEEP_ON_LOAD tmem keeps it
 * and the bit stays set until invalidate_page (the caller's page is then
 * clean with respect to tmem).
 *
 * Writethrough mode: a store that tmem kept still returns 1, "write it to
 * the swap file too"; loads are still served from tmem, and tmem may then
 * lose pages (a daemon crash) without losing data.  What counts is the mode
 * when the page was stored: a page stored with 0 is not on the swap file,
 * whatever the mode is now.
 *
 * A lost daemon: stores are refused (the caller writes the swap file).  A load
 * of a slot whose bit is set reconnects (for up to the reconnect wait,
 * default 30 s: a restart saves and loads about 6 s per GiB) and retries,
 * because a tmemd restarted with its state file gives a reconnecting client
 * its pages back (docs/protocol.md).  The name must be unique for its uid:
 * that is how the daemon finds the pages again.  If the page
 * is gone and the mode is not writethrough, load returns -EIO: the data is
 * lost, and the caller must treat that as fatal.  Writethrough never loses.
 *
 * Thread safety: calls may come from many threads, but calls on the same
 * slot must not overlap (the caller's page lock, as in Linux).
 */
#ifndef TMEM_FRONTSWAP_H
#define TMEM_FRONTSWAP_H

#include <stdint.h>
#include "tmem.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TMEM_FRONTSWAP_MAX_TYPES 32          /* swap areas (Linux: MAX_SWAPFILES) */
#define TMEM_FRONTSWAP_MAX_SLOTS (1ull << 36) /* slots per area: index is 32 bits */

/* flags of tmem_frontswap_open/connect */
#define TMEM_FRONTSWAP_KEEP_ON_LOAD 0x1u     /* non-exclusive loads */
#define TMEM_FRONTSWAP_WRITETHROUGH 0x2u     /* start in writethrough mode */

typedef struct tmem_frontswap tmem_frontswap_t;

typedef struct tmem_frontswap_stats {
    uint64_t loads;         /* loads that returned a page from tmem */
    uint64_t succ_stores;   /* stores tmem kept */
    uint64_t failed_stores; /* stores refused (the caller wrote the swap file) */
    uint64_t invalidates;   /* invalidate_page calls that found the bit set, and areas */
    /* extensions */
    uint64_t failed_loads;  /* loads of a set bit that tmem could not serve */
    uint64_t lost;          /* of those, pages lost (-EIO; never in writethrough) */
    uint64_t reconnects;    /* successful reconnections to tmemd */
    uint64_t curr_pages;    /* slots whose bit is set now, over all areas */
} tmem_frontswap_stats_t;

/* Over client c (not owned).  NULL with errno (EINVAL, ENOMEM, or the
 * pool's refusal as a positive errno). */
TMEM_API tmem_frontswap_t *tmem_frontswap_open(tmem_client_t *c, unsigned flags);
/* Over its own connection to tmemd; NULL with errno as tmem_connect(), or
 * the pool's refusal as a positive errno. */
TMEM_API tmem_frontswap_t *tmem_frontswap_connect(const char *socket_path,
                                                  const char *name, unsigned flags);
/* Invalidates every area, closes its own connection (if any), frees fs.
 * No call on fs may be in flight. */
TMEM_API void tmem_frontswap_close(tmem_frontswap_t *fs);

/* swapon: area type (< TMEM_FRONTSWAP_MAX_TYPES) with slots slots (<=
 * TMEM_FRONTSWAP_MAX_SLOTS); allocates its bitmap (slots / 8 bytes).
 * 0, -EINVAL, -EBUSY (already on), -ENOMEM. */
TMEM_API int tmem_frontswap_init(tmem_frontswap_t *fs, unsigned type, uint64_t slots);

/* 0: tmem kept the page, the caller need not write it.  1: kept, but in
 * writethrough mode: write it to the swap file too.  Negative: not kept
 * (-ENOMEM, -EDQUOT, -TMEM_EFROZEN, -ENOTCONN, ...): write it to the swap
 * file.  A store over a slot tmem holds replaces that copy; if it fails, the
 * old copy is gone as well (the bit is cleared). */
TMEM_API int tmem_frontswap_store(tmem_frontswap_t *fs, unsigned type, uint64_t offset,
                                  const void *page);
/* 0: the page was copied from tmem (exclusive mode: tmem's copy is freed and
 * the bit cleared).  -ENOENT: tmem does not hold the slot (read the swap
 * file).  -EIO: tmem held it but lost it and the mode is not writethrough:
 * the data is gone.  -EINVAL: bad type or offset. */
TMEM_API int tmem_frontswap_load(tmem_frontswap_t *fs, unsigned type, uint64_t offset,
                                 void *page);
/* A swap cluster: n stores (or loads) of the consecutive slots offset ..
 * offset + n - 1, page i for slot offset + i, results[i] as the single
 * call's.  One batch (through tmemd's window a single wake-up) where a
 * single call per page would cost one each.  The number of pages stored
 * (or loaded); -EINVAL, with nothing done, for a bad type, a range outside
 * the area, or n > TMEM_FRONTSWAP_MAX_BATCH. */
#define TMEM_FRONTSWAP_MAX_BATCH 256
TMEM_API int tmem_frontswap_store_pages(tmem_frontswap_t *fs, unsigned type, uint64_t offset,
                                        size_t n, const void *const *pages, int *results);
TMEM_API int tmem_frontswap_load_pages(tmem_frontswap_t *fs, unsigned type, uint64_t offset,
                                       size_t n, void *const *pages, int *results);
/* The swap slot is free: tmem's copy goes, the bit is cleared. */
TMEM_API void tmem_frontswap_invalidate_page(tmem_frontswap_t *fs, unsigned type,
                                             uint64_t offset);
/* swapoff: every page of the area goes, its bitmap is freed. */
TMEM_API void tmem_frontswap_invalidate_area(tmem_frontswap_t *fs, unsigned type);

/* 1 if tmem holds the slot (its bit), 0 if not or out of range. */
TMEM_API int tmem_frontswap_test(tmem_frontswap_t *fs, unsigned type, uint64_t offset);
/* The area's bitmap, one bit per slot (bit offset % 64 of word offset / 64),
 * read-only; *slots receives its size.  NULL if the area is off. */
TMEM_API const uint64_t *tmem_frontswap_map(tmem_frontswap_t *fs, unsigned type,
                                            uint64_t *slots);
/* Pages tmem holds, over all areas (the bits set). */
TMEM_API uint64_t tmem_frontswap_curr_pages(tmem_frontswap_t *fs);

TMEM_API void tmem_frontswap_writethrough(tmem_frontswap_t *fs, int on);

/* shrink: brings pages back out of tmem until at most target_pages remain.
 * Each page is loaded and handed to take(arg, type, offset, page); take
 * returns 0 when it has the page safe (written to the swap file, or back in
 * memory), and the slot then leaves tmem.  A nonzero return stops the shrink
 * (that page stays in tmem, put back if the load took it).  Returns the
 * pages brought back, or the first error (negative) if none were; -EIO
 * always if a page had to be put back and tmem refused it (it is lost: its
 * load says -EIO, unless it was written through).  Must not run
 * concurrently with other calls on the slots it visits. */
typedef int (*tmem_frontswap_take_fn)(void *arg, unsigned type, uint64_t offset,
                                      const void *page);
TMEM_API int64_t tmem_frontswap_shrink(tmem_frontswap_t *fs, uint64_t target_pages,
                                       tmem_frontswap_take_fn take, void *arg);

TMEM_API void tmem_frontswap_stats(tmem_frontswap_t *fs, tmem_frontswap_stats_t *out);
/* The client the layer runs on now (changes when it reconnects); NULL while
 * disconnected. */
TMEM_API tmem_client_t *tmem_frontswap_client(tmem_frontswap_t *fs);
/* A load of a set bit waits up to ms for tmemd to come back (default 30000). */
TMEM_API void tmem_frontswap_set_reconnect_wait_ms(tmem_frontswap_t *fs, unsigned ms);

#ifdef __cplusplus
}
#endif
#endif /* TMEM_FRONTSWAP_H */
