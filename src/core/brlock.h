/* SPDX-License-Identifier: MIT */
/*
 * brlock.h - a reader-striped ("big reader") lock for a client's pool slots.
 *
 * Every call on a client read-locks it for its duration, and new/destroy
 * pool and close write-lock it, rarely.  With a pthread rwlock the readers
 * of one client all write its lock word, so two threads of one client move
 * that cache line back and forth on every call (bench/ figure 4b).  Here a
 * reader counts itself on its home stripe's line only (tm_home_stripe());
 * a writer raises a flag and waits for every stripe to drain.  The reader's
 * increment and the writer's flag are each a sequentially consistent write
 * followed by a read of the other side, so at least one of them sees the
 * other: a reader that sees the flag backs out and waits on the writer's
 * mutex.  New readers wait while a writer waits (writers are not starved).
 *
 * Not recursive: a thread holding the read lock must not take it again in
 * a blocking way (a waiting writer would wait for it forever); eviction
 * only tries it.  A reader unlocks on the thread that locked.
 */
#ifndef TMEM_CORE_BRLOCK_H
#define TMEM_CORE_BRLOCK_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

struct tm_brlock {
    pthread_mutex_t wlock;          /* held by the writer; readers wait on it */
    _Atomic int writer;             /* a writer holds or wants the lock */
    /* one counter per thread stripe, 64 bytes apart: never on one cache
     * line (padded; the client is allocated cache-line aligned anyway) */
    struct { _Atomic long n; char pad[64 - sizeof(long)]; } readers[8];   /* TM_STRIPES */
};

unsigned tm_home_stripe(void);      /* frame.c */

static inline void tm_brlock_init(struct tm_brlock *l)
{
    pthread_mutex_init(&l->wlock, NULL);
    atomic_init(&l->writer, 0);
    for (unsigned i = 0; i < 8; i++)
        atomic_init(&l->readers[i].n, 0);
}

static inline void tm_brlock_destroy(struct tm_brlock *l) { pthread_mutex_destroy(&l->wlock); }

static inline bool tm_brlock_tryread(struct tm_brlock *l)
{
    _Atomic long *n = &l->readers[tm_home_stripe()].n;
    atomic_fetch_add(n, 1);
    if (!atomic_load(&l->writer))
        return true;
    atomic_fetch_sub(n, 1);
    return false;
}

static inline void tm_brlock_read(struct tm_brlock *l)
{
    while (!tm_brlock_tryread(l)) {
        pthread_mutex_lock(&l->wlock);      /* wait for the writer to finish */
        pthread_mutex_unlock(&l->wlock);
    }
}

static inline void tm_brlock_read_unlock(struct tm_brlock *l)
{
    atomic_fetch_sub_explicit(&l->readers[tm_home_stripe()].n, 1, memory_order_release);
}

static inline void tm_brlock_write(struct tm_brlock *l)
{
    pthread_mutex_lock(&l->wlock);
    atomic_store(&l->writer, 1);
    for (unsigned i = 0; i < 8; i++)
        while (atomic_load(&l->readers[i].n) != 0)
            sched_yield();
}

static inline void tm_brlock_write_unlock(struct tm_brlock *l)
{
    atomic_store(&l->writer, 0);
    pthread_mutex_unlock(&l->wlock);
}

#endif /* TMEM_CORE_BRLOCK_H */
