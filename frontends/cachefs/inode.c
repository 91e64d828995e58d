/* SPDX-License-Identifier: MIT */
/*
 * inode.c - the files this mount knows, and the close-to-open rule that
 * decides which cached pages are still the file's.
 *
 * A cfs_inode is one backing file (dev, ino).  It lives while it is open
 * (refs) or has pages in the local cache (npages); the last of the two to
 * go frees it.
 *
 * The version rule (docs/cachefs.md, "Consistency"):
 *   - At every open the backing file is stat'ed; its version is
 *     (ctime in ns, size).  If the version differs from the one the inode's
 *     pages were read under, or the file was changed through this mount
 *     since (dirty), the pages are dropped and the new version is adopted.
 *   - The cleancache key of a version is (ino, ctime_ns, size).  Every
 *     change of a file moves its ctime, so a later version never has the
 *     key of an earlier one, and a page put under a key is that version's
 *     page: nobody who opens a later version can be served it.
 *   - Timestamps are coarse (the kernel stamps ctime from a clock that
 *     ticks every few ms), so two changes within one tick can share a
 *     ctime.  A version is trusted only when the clock read before the stat
 *     is at least one tick (ts_res_ns) past its ctime: any later change
 *     then gets a later ctime.  A read-only open of a file changed in the
 *     last tick waits for the tick to pass (at most open_wait_ms); an
 *     untrusted version gets no key (no cleancache) and its local pages
 *     are dropped at the next open.
 *   - A file changed through this mount (write, truncate) loses its key at
 *     once (its pages in cleancache are invalidated) and is dirty until the
 *     next open validates a new version.
 *
 * Locking: cachefs.h.  The version is checked and adopted under the
 * inode's wlock, so it cannot interleave with this mount's own writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cachefs.h"

#define TAB_INITIAL 1024u

int cfs_cache_init(struct cfs_cache *c, uint32_t npages, struct cfs_tier *tier,
                   struct cfs_backing *b, struct cfs_stats *st, unsigned long ts_res_ns,
                   unsigned long open_wait_ms)
{
    memset(c, 0, sizeof(*c));
    int r = cfs_pc_init(&c->pc, npages);
    if (r)
        return r;
    c->tab = calloc(TAB_INITIAL, sizeof(*c->tab));
    if (!c->tab) {
        cfs_pc_fini(&c->pc);
        return -ENOMEM;
    }
    c->tabmask = TAB_INITIAL - 1;
    if ((r = pthread_mutex_init(&c->lock, NULL)) != 0) {
        free(c->tab);
        cfs_pc_fini(&c->pc);
        return -r;
    }
    c->tier = tier;
    c->backing = b;
    c->st = st;
    c->ts_res_ns = ts_res_ns;
    c->open_wait_ms = open_wait_ms;
    return 0;
}

static void inode_free(struct cfs_inode *ino)
{
    pthread_mutex_destroy(&ino->wlock);
    free(ino);
}

void cfs_cache_fini(struct cfs_cache *c)
{
    for (size_t i = 0; c->tab && i <= c->tabmask; i++) {
        struct cfs_inode *ino = c->tab[i];
        while (ino) {
            struct cfs_inode *next = ino->hnext;
            inode_free(ino);
            ino = next;
        }
    }
    free(c->tab);
    cfs_pc_fini(&c->pc);
    pthread_mutex_destroy(&c->lock);
    memset(c, 0, sizeof(*c));
}

static size_t slot_of(const struct cfs_cache *c, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)ino ^ (uint64_t)dev * 0x9e3779b97f4a7c15ull) * 0xff51afd7ed558ccdull;
    return (size_t)(h ^ h >> 33) & c->tabmask;
}

static struct cfs_inode *lookup_locked(const struct cfs_cache *c, dev_t dev, ino_t ino)
{
    for (struct cfs_inode *i = c->tab[slot_of(c, dev, ino)]; i; i = i->hnext)
        if (i->dev == dev && i->ino == ino)
            return i;
    return NULL;
}

static void grow_locked(struct cfs_cache *c)
{
    size_t nsize = (c->tabmask + 1) * 2;
    struct cfs_inode **ntab = calloc(nsize, sizeof(*ntab));
    if (!ntab)
        return;                         /* longer chains, still correct */
    struct cfs_inode **old = c->tab;
    size_t oldsize = c->tabmask + 1;
    c->tab = ntab;
    c->tabmask = nsize - 1;
    for (size_t i = 0; i < oldsize; i++)
        for (struct cfs_inode *n = old[i], *next; n; n = next) {
            next = n->hnext;
            size_t s = slot_of(c, n->dev, n->ino);
            n->hnext = c->tab[s];
            c->tab[s] = n;
        }
    free(old);
}

/* The inode of (dev, ino) with one more reference, created if needed. */
static struct cfs_inode *get_locked(struct cfs_cache *c, dev_t dev, ino_t ino)
{
    struct cfs_inode *i = lookup_locked(c, dev, ino);
    if (!i) {
        i = calloc(1, sizeof(*i));
        if (!i)
            return NULL;
        if (pthread_mutex_init(&i->wlock, NULL) != 0) {
            free(i);
            return NULL;
        }
        i->dev = dev;
        i->ino = ino;
        i->pages = CFS_NIL;
        if (c->count >= c->tabmask + 1)
            grow_locked(c);
        size_t s = slot_of(c, dev, ino);
        i->hnext = c->tab[s];
        c->tab[s] = i;
        c->count++;
    }
    i->refs++;
    return i;
}

void cfs_inode_maybe_free_locked(struct cfs_cache *c, struct cfs_inode *ino)
{
    if (ino->refs || ino->npages)
        return;
    struct cfs_inode **link = &c->tab[slot_of(c, ino->dev, ino->ino)];
    while (*link != ino)
        link = &(*link)->hnext;
    *link = ino->hnext;
    c->count--;
    inode_free(ino);
}

static int64_t ts_ns(struct timespec ts)
{
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts_ns(ts);
}

static void key_of(const struct cfs_inode *ino, tmem_cleancache_filekey_t *key)
{
    uint64_t w[3] = { (uint64_t)ino->ino, (uint64_t)ino->ctime_ns, (uint64_t)ino->vsize };
    for (int i = 0; i < 3; i++) {
        key->fh[2 * i] = (uint32_t)w[i];
        key->fh[2 * i + 1] = (uint32_t)(w[i] >> 32);
    }
}

bool cfs_inode_key_locked(const struct cfs_cache *c, const struct cfs_inode *ino,
                          tmem_cleancache_filekey_t *key)
{
    (void)c;
    if (!ino->has_version || !ino->trusted || ino->dirty)
        return false;
    key_of(ino, key);
    return true;
}

bool cfs_inode_change_locked(struct cfs_cache *c, struct cfs_inode *ino,
                             tmem_cleancache_filekey_t *old_key)
{
    bool had = cfs_inode_key_locked(c, ino, old_key);
    ino->gen++;
    ino->dirty = true;
    return had;
}

/* Stats fd; *racy says whether the version was too young to trust. */
static int stat_version(struct cfs_cache *c, int fd, struct stat *s, bool *racy)
{
    int64_t before = realtime_ns();
    if (fstat(fd, s) != 0)
        return -errno;
    *racy = before - ts_ns(s->st_ctim) < (int64_t)c->ts_res_ns;
    return 0;
}

int cfs_inode_open(struct cfs_cache *c, int fd, bool may_wait, struct cfs_inode **out)
{
    struct stat s;
    bool racy = true;
    int r = stat_version(c, fd, &s, &racy);
    if (r)
        return r;
    /* a file changed within the last tick: wait for the tick to pass, so
     * that the version we adopt is the last one of its ctime */
    int64_t waited = 0, budget = (int64_t)c->open_wait_ms * 1000000LL;
    bool counted = false;
    while (racy && may_wait) {
        int64_t left = ts_ns(s.st_ctim) + (int64_t)c->ts_res_ns - realtime_ns() + 100000;
        if (left <= 0)
            left = 100000;
        if (waited + left > budget)
            break;
        if (!counted) {
            CFS_INC(c->st, open_waits);
            counted = true;
        }
        struct timespec ts = { (time_t)(left / 1000000000LL), (long)(left % 1000000000LL) };
        nanosleep(&ts, NULL);
        waited += left;
        if ((r = stat_version(c, fd, &s, &racy)))
            return r;
    }

    pthread_mutex_lock(&c->lock);
    struct cfs_inode *ino = get_locked(c, s.st_dev, s.st_ino);
    pthread_mutex_unlock(&c->lock);
    if (!ino)
        return -ENOMEM;

    /* the version is taken again under wlock: no write of this mount is
     * between the stat and the adoption */
    pthread_mutex_lock(&ino->wlock);
    if ((r = stat_version(c, fd, &s, &racy))) {
        pthread_mutex_unlock(&ino->wlock);
        cfs_inode_release(c, ino);
        return r;
    }
    bool trusted = !racy && s.st_dev == c->backing->dev && S_ISREG(s.st_mode);
    int64_t ct = ts_ns(s.st_ctim);
    tmem_cleancache_filekey_t old_key;
    bool invalidate = false;
    pthread_mutex_lock(&c->lock);
    bool same = ino->has_version && ino->trusted && !ino->dirty && trusted &&
                ino->ctime_ns == ct && ino->vsize == (int64_t)s.st_size;
    if (!same) {
        if (ino->has_version)
            CFS_INC(c->st, version_changes);
        invalidate = cfs_inode_key_locked(c, ino, &old_key);
        CFS_ADD(c->st, local_dropped, cfs_pc_truncate_locked(&c->pc, ino, 0, 0));
        ino->gen++;
        ino->has_version = true;
        ino->trusted = trusted;
        ino->dirty = false;
        ino->ctime_ns = ct;
        ino->vsize = ino->size = (int64_t)s.st_size;
    }
    pthread_mutex_unlock(&c->lock);
    if (invalidate)
        cfs_tier_invalidate_inode(c->tier, &old_key);
    pthread_mutex_unlock(&ino->wlock);
    CFS_INC(c->st, opens);
    if (!trusted)
        CFS_INC(c->st, untrusted_opens);
    *out = ino;
    return 0;
}

struct cfs_inode *cfs_inode_find(struct cfs_cache *c, dev_t dev, ino_t ino)
{
    pthread_mutex_lock(&c->lock);
    struct cfs_inode *i = lookup_locked(c, dev, ino);
    if (i)
        i->refs++;
    pthread_mutex_unlock(&c->lock);
    return i;
}

void cfs_inode_release(struct cfs_cache *c, struct cfs_inode *ino)
{
    if (!ino)
        return;
    pthread_mutex_lock(&c->lock);
    ino->refs--;
    cfs_inode_maybe_free_locked(c, ino);
    pthread_mutex_unlock(&c->lock);
}

void cfs_inode_gone(struct cfs_cache *c, struct cfs_inode *ino)
{
    tmem_cleancache_filekey_t old_key;
    pthread_mutex_lock(&ino->wlock);
    pthread_mutex_lock(&c->lock);
    bool invalidate = cfs_inode_change_locked(c, ino, &old_key);
    CFS_ADD(c->st, local_dropped, cfs_pc_truncate_locked(&c->pc, ino, 0, 0));
    pthread_mutex_unlock(&c->lock);
    if (invalidate)
        cfs_tier_invalidate_inode(c->tier, &old_key);
    pthread_mutex_unlock(&ino->wlock);
}
