/* SPDX-License-Identifier: MIT */
/*
 * link.c - the client a layer runs on, and its reconnection (link.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/conn.h"
#include "client/link.h"

uint64_t tl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int init_lock(tl_link_t *l)
{
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    /* a reconnection must not wait behind an endless stream of calls */
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int r = pthread_rwlock_init(&l->lock, &a);
    pthread_rwlockattr_destroy(&a);
    return -r;
}

int tl_init_borrowed(tl_link_t *l, tmem_client_t *c)
{
    memset(l, 0, sizeof(*l));
    if (!c)
        return -EINVAL;
    l->c = c;
    return init_lock(l);
}

int tl_init_owned(tl_link_t *l, const char *path, const char *name, unsigned interval_ms)
{
    memset(l, 0, sizeof(*l));
    l->owned = 1;
    l->interval_ms = interval_ms;
    l->path = path ? strdup(path) : NULL;
    l->name = strdup(name ? name : "");
    if ((path && !l->path) || !l->name) {
        free(l->path);
        free(l->name);
        return -ENOMEM;
    }
    l->c = tmem_connect(path, name);
    if (!l->c) {
        int e = errno ? errno : ECONNREFUSED;
        free(l->path);
        free(l->name);
        return -e;
    }
    int r = init_lock(l);
    if (r) {
        tmem_client_close(l->c);
        free(l->path);
        free(l->name);
    }
    return r;
}

void tl_set_rebuild(tl_link_t *l, tl_rebuild_fn fn, void *arg)
{
    l->rebuild = fn;
    l->rebuild_arg = arg;
}

void tl_destroy(tl_link_t *l)
{
    if (l->owned && l->c)
        tmem_client_close(l->c);
    l->c = NULL;
    pthread_rwlock_destroy(&l->lock);
    free(l->path);
    free(l->name);
}

tmem_client_t *tl_get(tl_link_t *l, uint64_t *gen)
{
    pthread_rwlock_rdlock(&l->lock);
    *gen = l->gen;
    return l->c;
}

void tl_put(tl_link_t *l) { pthread_rwlock_unlock(&l->lock); }
void tl_write_lock(tl_link_t *l) { pthread_rwlock_wrlock(&l->lock); }
void tl_write_unlock(tl_link_t *l) { pthread_rwlock_unlock(&l->lock); }

int tl_repair(tl_link_t *l, uint64_t gen, int force)
{
    if (!l->owned)
        return 0;
    uint64_t now = tl_now_ns();
    if (!force && now < l->next_try_ns)
        return 0;                       /* the common case while the daemon is away */
    int idle = 0;
    if (!atomic_compare_exchange_strong(&l->connecting, &idle, 1))
        return 0;                       /* another thread is at it */
    pthread_rwlock_rdlock(&l->lock);
    uint64_t cur = l->gen;
    int have = l->c != NULL;
    pthread_rwlock_unlock(&l->lock);
    if (cur != gen) {                   /* reconnected since the caller's call */
        l->connecting = 0;
        return have;
    }
    l->next_try_ns = now + (uint64_t)l->interval_ms * 1000000u;
    tmem_client_t *nc = tmem_connect(l->path, l->name);   /* outside the lock */
    pthread_rwlock_wrlock(&l->lock);
    tmem_client_t *old = l->c;          /* broken: every call on it says -ENOTCONN */
    l->c = nc;
    l->gen++;                           /* callers of the old generation retry */
    if (nc) {
        l->reconnects++;
        if (l->rebuild)
            l->rebuild(l->rebuild_arg, nc);
    }
    pthread_rwlock_unlock(&l->lock);
    if (old)                            /* no call is on it: they hold the lock */
        tmem_client_close(old);
    l->connecting = 0;
    return nc != NULL;
}

uint64_t tl_reconnects(tl_link_t *l)
{
    uint64_t n = atomic_load(&l->reconnects);
    pthread_rwlock_rdlock(&l->lock);
    tmem_client_t *c = l->c;
    if (c && tmem_client_is_remote(c))
        n += atomic_load(&TMC(c)->reconnects);
    pthread_rwlock_unlock(&l->lock);
    return n;
}
