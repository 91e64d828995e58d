/* SPDX-License-Identifier: MIT */
/*
 * tier.c - the second tier: cleancache over tmemd.
 *
 * One cleancache (tmem_cleancache_connect: its own connection, which it
 * replaces when tmemd goes away and comes back) and one filesystem in it.
 * Without --shared the filesystem is private (init_fs).  With --shared it
 * is the backing directory's shared pool (init_shared_fs(uuid)), which tmem
 * grants only to a client an administrator authorised for the uuid; until
 * then the pool it gets is private.  Authorisation names a client id, which
 * exists only once we are connected, so the pool cannot be shared at the
 * first try: the housekeeping thread asks again every --rejoin-ms (and at
 * once on SIGUSR2) while the pool is private, and swaps the fs id when a
 * shared pool is granted.  The client id changes at every reconnection (a
 * restarted tmemd forgets its authorisations), so it is printed each time.
 *
 * Locking: t->lock (rwlock) guards cc and fs; every cleancache call holds
 * it for reading, the swap of fs ids for writing.  The fields below it in
 * struct cfs_tier belong to the housekeeping thread.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cachefs.h"

uint64_t cfs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Prints who we are to tmemd when it changes, so that an administrator can
 * authorise the shared pool. */
static void announce(struct cfs_tier *t, bool force)
{
    tmem_client_t *c = t->cc ? tmem_cleancache_client(t->cc) : NULL;
    uint32_t id = c ? tmem_client_id(c) : 0;
    atomic_store(&t->client_id, id);
    if (id && id != t->announced_id) {
        t->announced_id = id;
        force = true;
        fprintf(stderr, CFS_PROG ": tmemd client %u (%s)%s\n", id, t->name,
                t->shared ? "" : "; private pool");
        t->announced_shared = -1;       /* a new client: say it again */
    }
    if (!t->shared)
        return;                         /* private: nothing more to say */
    /* is the pool shared now?  (a round trip: at most every 500 ms) */
    uint64_t now = cfs_now_ns();
    if (!force && now < t->next_check_ns)
        return;
    t->next_check_ns = now + 500000000ull;
    int sh = -1;
    pthread_rwlock_rdlock(&t->lock);
    if (id && t->fs >= 0)
        sh = tmem_cleancache_fs_is_shared(t->cc, t->fs) == 1;
    pthread_rwlock_unlock(&t->lock);
    atomic_store(&t->is_shared, sh == 1);
    if (sh < 0)
        return;                         /* disconnected: nothing to say */
    if (sh != t->announced_shared) {
        t->announced_shared = sh;
        if (sh)
            fprintf(stderr, CFS_PROG ": joined the shared pool of uuid %s\n", t->uuid_text);
        else
            fprintf(stderr, CFS_PROG ": not authorised for the shared pool of uuid %s yet "
                    "(a private pool until then); to share: tmemctl shared-auth %u %s allow\n",
                    t->uuid_text, id, t->uuid_text);
    }
}

static int new_fs(struct cfs_tier *t)
{
    return t->shared ? tmem_cleancache_init_shared_fs(t->cc, t->uuid)
                     : tmem_cleancache_init_fs(t->cc);
}

static void try_connect(struct cfs_tier *t)
{
    tmem_cleancache_t *cc = tmem_cleancache_connect(t->socket, t->name);
    if (!cc) {
        int e = errno;
        if (!t->said_away) {
            t->said_away = true;
            const char *path = t->socket ? t->socket : getenv("TMEM_SOCKET");
            fprintf(stderr, CFS_PROG ": tmemd at %s: %s; the local cache serves alone "
                    "until it answers\n", path && *path ? path : "the default socket",
                    strerror(e));
        }
        return;
    }
    tmem_cleancache_set_reconnect_ms(cc, (unsigned)t->reconnect_ms);
    pthread_rwlock_wrlock(&t->lock);
    t->cc = cc;
    t->fs = new_fs(t);
    int fs = t->fs;
    pthread_rwlock_unlock(&t->lock);
    if (fs < 0)
        fprintf(stderr, CFS_PROG ": cleancache refused a pool (%s); local cache only\n",
                tmem_strerror(fs));
}

void cfs_tier_start(struct cfs_tier *t, const struct cfs_options *o, tmem_uuid_t uuid,
                    struct cfs_stats *st)
{
    memset(t, 0, sizeof(*t));
    pthread_rwlock_init(&t->lock, NULL);
    t->fs = -1;
    t->enabled = !o->no_tmem;
    t->shared = o->shared;
    t->uuid = uuid;
    tmem_uuid_format(uuid, t->uuid_text);
    t->socket = o->socket;
    t->name = o->name;
    t->rejoin_ms = o->rejoin_ms;
    t->reconnect_ms = o->reconnect_ms;
    t->announced_shared = -1;
    t->st = st;
    if (!t->enabled)
        return;
    try_connect(t);
    t->next_connect_ns = cfs_now_ns() + (uint64_t)t->reconnect_ms * 1000000ull;
    t->next_rejoin_ns = cfs_now_ns() + (uint64_t)t->rejoin_ms * 1000000ull;
    announce(t, true);
}

/* Asks for the shared pool again; swaps fs ids if it is granted. */
static void rejoin(struct cfs_tier *t)
{
    pthread_rwlock_rdlock(&t->lock);
    int fs = t->fs;
    int sh = fs >= 0 ? tmem_cleancache_fs_is_shared(t->cc, fs) : 0;
    pthread_rwlock_unlock(&t->lock);
    if (sh == 1 || !tmem_cleancache_client(t->cc))
        return;
    int nfs = tmem_cleancache_init_shared_fs(t->cc, t->uuid);
    if (nfs < 0)
        return;
    if (tmem_cleancache_fs_is_shared(t->cc, nfs) != 1 && fs >= 0) {
        tmem_cleancache_invalidate_fs(t->cc, nfs);   /* still private: keep ours */
        return;
    }
    pthread_rwlock_wrlock(&t->lock);
    t->fs = nfs;
    if (fs >= 0)
        tmem_cleancache_invalidate_fs(t->cc, fs);
    pthread_rwlock_unlock(&t->lock);
    if (tmem_cleancache_fs_is_shared(t->cc, nfs) == 1)
        CFS_INC(t->st, tier_joins);
}

void cfs_tier_tick(struct cfs_tier *t, bool force_rejoin)
{
    if (!t->enabled)
        return;
    uint64_t now = cfs_now_ns();
    if (!t->cc) {
        if (now < t->next_connect_ns)
            return;
        t->next_connect_ns = now + (uint64_t)t->reconnect_ms * 1000000ull;
        try_connect(t);
        if (!t->cc)
            return;
    }
    if (t->shared && (force_rejoin || (t->rejoin_ms && now >= t->next_rejoin_ns))) {
        t->next_rejoin_ns = now + (uint64_t)t->rejoin_ms * 1000000ull;
        rejoin(t);
        force_rejoin = true;            /* check the outcome below */
    } else if (!t->shared && t->fs < 0 && now >= t->next_rejoin_ns) {
        /* a private pool was refused: ask again now and then */
        t->next_rejoin_ns = now + 1000000000ull;
        int nfs = tmem_cleancache_init_fs(t->cc);
        if (nfs >= 0) {
            pthread_rwlock_wrlock(&t->lock);
            t->fs = nfs;
            pthread_rwlock_unlock(&t->lock);
        }
    }
    announce(t, force_rejoin);
}

void cfs_tier_stop(struct cfs_tier *t)
{
    if (t->cc)
        tmem_cleancache_close(t->cc);   /* invalidates the fs */
    t->cc = NULL;
    t->fs = -1;
    pthread_rwlock_destroy(&t->lock);
}

int cfs_tier_get(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                 void *page)
{
    int r = -ENOENT;
    pthread_rwlock_rdlock(&t->lock);
    if (t->cc && t->fs >= 0)
        r = tmem_cleancache_get_page(t->cc, t->fs, key, index, page);
    pthread_rwlock_unlock(&t->lock);
    return r;
}

void cfs_tier_get_run(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                      unsigned n, uint8_t *pages, int *res)
{
    void *out[CFS_READAHEAD];
    for (unsigned i = 0; i < n; i++) {
        out[i] = pages + (size_t)i * CFS_PAGE;
        res[i] = -ENOENT;
    }
    pthread_rwlock_rdlock(&t->lock);
    if (t->cc && t->fs >= 0 && n <= CFS_READAHEAD)
        tmem_cleancache_get_pages(t->cc, t->fs, key, index, n, out, res);
    pthread_rwlock_unlock(&t->lock);
}

void cfs_tier_put(struct cfs_tier *t, const tmem_cleancache_filekey_t *key, uint32_t index,
                  const void *page)
{
    pthread_rwlock_rdlock(&t->lock);
    if (t->cc && t->fs >= 0)
        tmem_cleancache_put_page(t->cc, t->fs, key, index, page);
    pthread_rwlock_unlock(&t->lock);
}

void cfs_tier_invalidate_inode(struct cfs_tier *t, const tmem_cleancache_filekey_t *key)
{
    pthread_rwlock_rdlock(&t->lock);
    if (t->cc && t->fs >= 0)
        tmem_cleancache_invalidate_inode(t->cc, t->fs, key);
    pthread_rwlock_unlock(&t->lock);
}

bool cfs_tier_stats(struct cfs_tier *t, tmem_cleancache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_rwlock_rdlock(&t->lock);
    bool have = t->cc != NULL;
    if (have)
        tmem_cleancache_stats(t->cc, out);
    pthread_rwlock_unlock(&t->lock);
    return have;
}
