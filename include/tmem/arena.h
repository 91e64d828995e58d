/* SPDX-License-Identifier: MIT */
/*
 * arena.h - an engine over memory someone else owns and lends.
 *
 * tmem_open() backs an engine's frames with anonymous memory of its own
 * process, frame by frame, and gives them back to the OS with
 * MADV_DONTNEED.  tmem_open_arena() opens an engine whose frames come from
 * a memory source instead: the owner of the memory (tmemd, for the client
 * library of a connected process) lends it in units (16, 32 or 64
 * frames: 64, 128 or 256 KiB, the owner's choice), decides how many units
 * the engine may hold, and takes them back.
 *
 * Two kinds of memory, each in its own address range: ephemeral units hold
 * only the data of ephemeral pools, persistent units only that of
 * persistent pools.  So an owner may take ephemeral units back by force (a
 * victim cache loses pages, which is allowed) and never needs to touch a
 * persistent one.
 *
 * How it goes:
 *  - at open, the engine reserves address space for each kind
 *    (arena.bytes[kind], PROT_NONE) and calls attach(), which maps the
 *    owner's memory over it (MAP_FIXED);
 *  - when the engine needs frames and has none free, it picks a unit it
 *    does not hold and calls grow() (no engine lock held; it may wait for
 *    the owner); 0 means the unit's memory is resident and the engine's,
 *    anything else that the engine must do without (it evicts its own
 *    ephemeral pages, or refuses the put);
 *  - tmem_arena_shrink() gives units back (the owner asked for them):
 *    wholly free units first, then, for ephemeral memory, the least used
 *    units after evicting the pages in them; each goes to shrink();
 *  - tmem_arena_revoked() tells the engine that the owner took units back
 *    by force: their data is gone.  Before it takes a unit, the owner
 *    increments *revoke_epoch (shared memory); every get from an ephemeral
 *    pool reads it before and after its copy and misses, dropping the page,
 *    unless both reads equal the epoch the engine last processed: a get
 *    never returns data from memory taken away during or before its copy.
 *    Processing drops every page whose data was in those units and calls
 *    cleaned() for each, once nothing refers to it.
 *
 * An arena engine serves one client (tmem_client_open() once; a second is
 * refused with EBUSY), has no limit of its own (the owner's grants are the
 * limit: cfg->max_bytes is ignored) and lends no frames to its host
 * (tmem_relinquish_page*() return NULL).  Its metadata lives in the
 * process's own heap.
 */
#ifndef TMEM_ARENA_H
#define TMEM_ARENA_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tmem/tmem.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TMEM_UNIT_FRAMES_MIN 16u
#define TMEM_UNIT_FRAMES_MAX 64u
#define TMEM_ARENA_ALIGN     (2u << 20)     /* the arenas' sizes are multiples of this */

enum tmem_arena_kind { TMEM_ARENA_EPHEMERAL = 0, TMEM_ARENA_PERSISTENT = 1, TMEM_ARENA_KINDS };

typedef struct tmem_arena_ops {
    /* Maps the owner's memory of kind over [base, base + len) (MAP_FIXED
     * over the engine's reservation).  0 or -errno (tmem_open_arena fails). */
    int  (*attach)(void *arg, int kind, void *base, size_t len);
    /* Unit `unit` of kind (bytes [unit * U, +U) of its range, U the unit's
     * size in bytes) is wanted: 0 once it is resident and the engine's;
     * -ENOMEM (or any -errno) if the owner will not lend it now. */
    int  (*grow)(void *arg, int kind, size_t unit);
    /* The engine gives `unit` back: nothing in it is used any more. */
    void (*shrink)(void *arg, int kind, size_t unit);
    /* A unit taken by force is no longer referred to (may be NULL). */
    void (*cleaned)(void *arg, int kind, size_t unit);
    /* tmem_close: the ranges are about to be unmapped (may be NULL). */
    void (*detach)(void *arg, int kind, void *base, size_t len);
} tmem_arena_ops_t;

typedef struct tmem_arena {
    const tmem_arena_ops_t *ops;
    void *arg;
    uint64_t bytes[TMEM_ARENA_KINDS];   /* address range of each kind: the most the
                                           owner may ever lend (multiples of
                                           TMEM_ARENA_ALIGN) */
    unsigned unit_frames;               /* frames per unit: 16, 32 or 64 (0: 64) */
    const _Atomic uint64_t *revoke_epoch;   /* NULL: the owner never takes units by force */
} tmem_arena_t;

/* An engine over arena (copied).  NULL with errno: EINVAL (bad sizes or
 * unit, no grow), ENOMEM, or attach()'s error. */
TMEM_API tmem_t *tmem_open_arena(const tmem_config_t *cfg, const tmem_arena_t *arena);

/* Gives back up to n units of kind, each through ops->shrink (written to
 * units_out[] if not NULL): wholly free units first, then, for ephemeral
 * memory, the least used units, whose pages are evicted.  Persistent pages
 * are never evicted: a persistent unit goes only when it is free.  Calls on
 * the engine's client wait meanwhile.  Returns how many units went. */
TMEM_API size_t tmem_arena_shrink(tmem_t *t, int kind, size_t n, uint64_t *units_out);

/* The owner took these ephemeral units by force, incrementing
 * *revoke_epoch to `epoch` (or beyond) before the first of them: drops
 * every page with data in them, calls ops->cleaned for each once nothing
 * refers to it, and lets gets hit again once the epoch seen matches.
 * Calls on the client wait meanwhile.  Units the engine does not hold are
 * ignored.  0, or -EINVAL (not an arena engine). */
TMEM_API int tmem_arena_revoked(tmem_t *t, const uint64_t *units, size_t n, uint64_t epoch);

/* 1 if the engine holds unit `unit` of kind now, else 0. */
TMEM_API int tmem_arena_held(tmem_t *t, int kind, uint64_t unit);

/* What the engine holds of its arena, for its owner. */
typedef struct tmem_arena_info {
    uint64_t units[TMEM_ARENA_KINDS];       /* held now */
    uint64_t free_units[TMEM_ARENA_KINDS];  /* held and wholly free */
    uint64_t oldest_ephemeral_ms;           /* age of the oldest ephemeral page
                                               (0: none) */
    uint64_t grown, shrunk, revoked;        /* units, since open */
    uint64_t dropped_pages;                 /* pages lost to units taken by force,
                                               and to gets that met a revocation */
    uint64_t epoch_done;                    /* the revoke epoch last processed */
    unsigned unit_frames;                   /* frames per unit */
} tmem_arena_info_t;

TMEM_API int tmem_arena_get_info(tmem_t *t, tmem_arena_info_t *out);

/* Creates (or joins) a pool at pool id `slot` (0..15) instead of the
 * lowest free one: >= 0 the pool id, -EBUSY if slot is taken, else as
 * tmem_new_pool.  For a transport that keeps pool ids of its own. */
TMEM_API int tmem_new_pool_at(tmem_client_t *c, uint32_t slot, tmem_uuid_t uuid,
                              uint32_t flags);

#ifdef __cplusplus
}
#endif
#endif /* TMEM_ARENA_H */
