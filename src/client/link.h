/* SPDX-License-Identifier: MIT */
/*
 * link.h - the client a layer (cleancache, frontswap) runs on, and its
 * reconnection to tmemd.
 *
 * A link either borrows a client the caller owns (in-process or connected;
 * never replaced) or owns a connection to tmemd that it replaces when the
 * daemon goes away: every call that sees -ENOTCONN asks the link to repair
 * itself, and at most one reconnection is tried per interval, so a missing
 * daemon costs the callers one clock read, not one connect() per call.
 * After a reconnection the layer's rebuild callback recreates its pools on
 * the new client (Linux cleancache's lazy init, done again).
 *
 * Locking: `lock` is a writer-preferring rwlock.  Every call on the client
 * holds it for reading (tl_get .. tl_put); replacing the client, rebuilding
 * the layer's pools and the layer's own rare table changes hold it for
 * writing (tl_write_lock).  Nothing else is held while waiting for it.  The
 * connection itself (up to the HELLO timeout) is made outside the lock, by
 * one thread at a time (`connecting`), so a daemon that accepts and never
 * answers does not stall the callers.
 */
#ifndef TMEM_CLIENT_LINK_H
#define TMEM_CLIENT_LINK_H

#include <pthread.h>
#include <stdint.h>

#include "tmem/tmem.h"

/* Recreates the layer's state on a fresh client c; runs with the write
 * lock held.  A layer that cannot tell (c broke meanwhile: -ENOTCONN)
 * marks its state unknown and answers -ENOTCONN, which repairs again. */
typedef void (*tl_rebuild_fn)(void *arg, tmem_client_t *c);

typedef struct tl_link {
    pthread_rwlock_t lock;
    tmem_client_t *c;           /* NULL while disconnected (lock) */
    uint64_t gen;               /* bumped at every reconnection (lock) */
    int owned;                  /* 1: c is ours, reconnects (immutable) */
    char *path, *name;          /* for tmem_connect (immutable; path may be NULL) */
    _Atomic uint64_t next_try_ns; /* no reconnection attempt before this */
    _Atomic int connecting;     /* one thread connects at a time, outside the lock */
    _Atomic unsigned interval_ms;
    _Atomic uint64_t reconnects;
    tl_rebuild_fn rebuild;      /* (immutable after init) */
    void *rebuild_arg;
} tl_link_t;

/* A link over the caller's client c: 0, or -EINVAL / -ENOMEM. */
int  tl_init_borrowed(tl_link_t *l, tmem_client_t *c);
/* A link over a new connection: 0, or -errno from tmem_connect. */
int  tl_init_owned(tl_link_t *l, const char *path, const char *name, unsigned interval_ms);
void tl_set_rebuild(tl_link_t *l, tl_rebuild_fn fn, void *arg);
/* Closes an owned client; frees the link's memory (not a borrowed client). */
void tl_destroy(tl_link_t *l);

/* Takes the read lock; returns the client (NULL while disconnected) and
 * its generation.  Always pair with tl_put, whatever it returned. */
tmem_client_t *tl_get(tl_link_t *l, uint64_t *gen);
void tl_put(tl_link_t *l);
void tl_write_lock(tl_link_t *l);
void tl_write_unlock(tl_link_t *l);

/* A call on generation gen failed with -ENOTCONN (or found no client):
 * reconnects if the link owns its client and the interval has passed
 * (force: ignore the interval).  Must be called without the lock.  Returns
 * 1 if a client of a newer generation is there now, else 0. */
int  tl_repair(tl_link_t *l, uint64_t gen, int force);

uint64_t tl_now_ns(void);

/* Reconnections: the link's own (a new client), and those of a client
 * that comes back by itself (lent memory: conn.h). */
uint64_t tl_reconnects(tl_link_t *l);

#endif
