/* SPDX-License-Identifier: MIT */
/*
 * cleancache.c - a victim cache for clean file pages over tmem
 * (include/tmem/cleancache.h).
 *
 * A filesystem is an fs id, the caller's stable handle; behind it is the tmem
 * pool it runs on now, which changes when an owned connection is replaced
 * (the pools are recreated on the new client by rebuild()).  Shared
 * filesystems ask for a shared pool again with their uuid.
 *
 * Invalidates of a shared fs that cannot reach tmemd are not dropped: the
 * other tenants of the pool would go on reading the old page.  They are
 * kept (at most CC_PENDING_MAX) and replayed by the rebuild, on the new
 * shared pool, before any call can use it.  If more were lost, the fs
 * rejoins with a private pool instead, and the other tenants may still
 * read pages this one invalidated while away: callers that share pools
 * should also version their keys (tmem-cachefs keys a file by inode,
 * ctime and size).
 *
 * Locking: the fs table is read under the link's read lock (every call) and
 * changed under its write lock (init_fs, invalidate_fs, rebuild); the
 * pending invalidates under pend_lock (taken inside the write lock by the
 * rebuild, alone by the callers); counters are atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "client/link.h"
#include "tmem/cleancache.h"

#define CC_RECONNECT_MS 1000u
#define CC_PENDING_MAX  256u
#define CC_POOL_NONE    (-1)        /* tmem refused a pool: no cleancache for the fs */
#define CC_POOL_UNKNOWN (-2)        /* the connection broke before the pool was made */

struct cc_fs {
    int used;                   /* the fs id is taken */
    int shared;                 /* init_shared_fs: ask for a shared pool */
    tmem_uuid_t uuid;
    int pool;                   /* the tmem pool on the current client, or CC_POOL_* */
};

struct cc_pending {             /* an invalidate of a shared fs that could not be sent */
    int fs;
    int whole;                  /* 1: the inode, 0: one page */
    tmem_oid_t oid;
    uint32_t index;
};

struct tmem_cleancache {
    tl_link_t link;
    struct cc_fs fs[TMEM_CLEANCACHE_MAX_FS];   /* link lock */
    pthread_mutex_t pend_lock;
    struct cc_pending pend[CC_PENDING_MAX];    /* pend_lock */
    unsigned npend;
    uint32_t pend_overflow;                    /* bit per fs id: some were lost */
    _Atomic uint64_t succ_gets, failed_gets, puts, invalidates;
    _Atomic uint64_t puts_refused, disconnected;
};

static tmem_oid_t key_oid(const tmem_cleancache_filekey_t *k)
{
    tmem_oid_t o;
    for (int i = 0; i < 3; i++)
        o.oid[i] = (uint64_t)k->fh[2 * i] | (uint64_t)k->fh[2 * i + 1] << 32;
    return o;
}

static int new_pool(tmem_client_t *c, const struct cc_fs *f)
{
    tmem_uuid_t none = { 0, 0 };
    if (!c)
        return -ENOTCONN;
    return tmem_new_pool(c, f->shared ? f->uuid : none, f->shared ? TMEM_POOL_SHARED : 0);
}

static int pool_state(int p)
{
    return p >= 0 ? p : p == -ENOTCONN ? CC_POOL_UNKNOWN : CC_POOL_NONE;
}

/* Replays fs's pending invalidates on its new shared pool p of client c.
 * Write lock held.  Returns the pool to use: p, or a private pool if some
 * invalidates were lost (see the top of the file). */
static int replay_pending(tmem_cleancache_t *cc, tmem_client_t *c, int fs, int p)
{
    pthread_mutex_lock(&cc->pend_lock);
    unsigned keep = 0;
    for (unsigned i = 0; i < cc->npend; i++) {
        struct cc_pending *e = &cc->pend[i];
        if (e->fs != fs) {
            cc->pend[keep++] = *e;
            continue;
        }
        if (e->whole)
            tmem_flush_object(c, (uint32_t)p, e->oid);
        else
            tmem_flush_page(c, (uint32_t)p, e->oid, e->index);
    }
    cc->npend = keep;
    bool lost = cc->pend_overflow & (1u << fs);
    cc->pend_overflow &= ~(1u << fs);
    pthread_mutex_unlock(&cc->pend_lock);
    if (lost) {
        tmem_destroy_pool(c, (uint32_t)p);     /* leaves the shared pool */
        tmem_uuid_t none = { 0, 0 };
        p = pool_state(tmem_new_pool(c, none, 0));
    }
    return p;
}

/* After a reconnection: every filesystem gets a pool on the new client
 * (empty: ephemeral pages do not outlive their daemon); shared ones first
 * replay the invalidates they could not send. */
static void rebuild(void *arg, tmem_client_t *c)
{
    tmem_cleancache_t *cc = arg;
    for (int i = 0; i < TMEM_CLEANCACHE_MAX_FS; i++)
        if (cc->fs[i].used) {
            int p = pool_state(new_pool(c, &cc->fs[i]));
            for (int j = 0; j < i && p >= 0; j++)
                if (cc->fs[j].used && cc->fs[j].pool == p) {
                    /* a second fs of one uuid (it was private before): it
                     * must not share the first one's pool */
                    tmem_uuid_t none = { 0, 0 };
                    p = pool_state(tmem_new_pool(c, none, 0));
                }
            if (p >= 0 && cc->fs[i].shared)
                p = replay_pending(cc, c, i, p);
            cc->fs[i].pool = p;
        }
}

static tmem_cleancache_t *cc_alloc(void)
{
    tmem_cleancache_t *cc = calloc(1, sizeof(*cc));
    if (!cc)
        return NULL;
    for (int i = 0; i < TMEM_CLEANCACHE_MAX_FS; i++)
        cc->fs[i].pool = CC_POOL_NONE;
    pthread_mutex_init(&cc->pend_lock, NULL);
    return cc;
}

/* cc with its link set up (r: tl_init_*'s result), or NULL with errno. */
static tmem_cleancache_t *cc_finish(tmem_cleancache_t *cc, int r)
{
    if (r) {
        pthread_mutex_destroy(&cc->pend_lock);
        free(cc);
        errno = -r;
        return NULL;
    }
    tl_set_rebuild(&cc->link, rebuild, cc);
    return cc;
}

tmem_cleancache_t *tmem_cleancache_open(tmem_client_t *c)
{
    tmem_cleancache_t *cc = cc_alloc();
    return cc ? cc_finish(cc, tl_init_borrowed(&cc->link, c)) : NULL;
}

tmem_cleancache_t *tmem_cleancache_connect(const char *socket_path, const char *name)
{
    tmem_cleancache_t *cc = cc_alloc();
    return cc ? cc_finish(cc, tl_init_owned(&cc->link, socket_path, name, CC_RECONNECT_MS))
              : NULL;
}

void tmem_cleancache_close(tmem_cleancache_t *cc)
{
    if (!cc)
        return;
    for (int i = 0; i < TMEM_CLEANCACHE_MAX_FS; i++)
        if (cc->fs[i].used)
            tmem_cleancache_invalidate_fs(cc, i);
    tl_destroy(&cc->link);
    pthread_mutex_destroy(&cc->pend_lock);
    free(cc);
}

/* fs f is in the shared pool of uuid now (a second fs of this client asking
 * for it would get that very pool).  Link lock held. */
static bool same_shared_pool(const tmem_cleancache_t *cc, const struct cc_fs *f, tmem_uuid_t uuid)
{
    return f->used && f->shared && f->uuid.lo == uuid.lo && f->uuid.hi == uuid.hi &&
           f->pool >= 0 && cc->link.c && tmem_pool_is_shared(cc->link.c, (uint32_t)f->pool) == 1;
}

static int init_fs(tmem_cleancache_t *cc, int shared, tmem_uuid_t uuid)
{
    tl_write_lock(&cc->link);
    int id = -ENOSPC;
    for (int i = 0; i < TMEM_CLEANCACHE_MAX_FS; i++) {
        const struct cc_fs *f = &cc->fs[i];
        if (shared && same_shared_pool(cc, f, uuid)) {
            id = -EBUSY;        /* tmem would hand back the same pool: one fs per pool */
            break;
        }
        if (!f->used && id == -ENOSPC)
            id = i;
    }
    if (id >= 0) {
        struct cc_fs *f = &cc->fs[id];
        f->shared = shared;
        f->uuid = uuid;
        int p = new_pool(cc->link.c, f);
        if (p >= 0 || p == -ENOTCONN) {
            /* while disconnected the fs exists without a pool; its calls
             * answer -ENOTCONN, and the reconnection gives it one */
            f->used = 1;
            f->pool = pool_state(p);
        } else {
            id = p;                     /* tmem refused the pool */
        }
    }
    tl_write_unlock(&cc->link);
    return id;
}

int tmem_cleancache_init_fs(tmem_cleancache_t *cc)
{
    tmem_uuid_t none = { 0, 0 };
    return cc ? init_fs(cc, 0, none) : -EINVAL;
}

int tmem_cleancache_init_shared_fs(tmem_cleancache_t *cc, tmem_uuid_t uuid)
{
    return cc ? init_fs(cc, 1, uuid) : -EINVAL;
}

static bool fs_ok(const tmem_cleancache_t *cc, int fs)
{
    return cc && fs >= 0 && fs < (int)TMEM_CLEANCACHE_MAX_FS;
}

int tmem_cleancache_fs_is_shared(tmem_cleancache_t *cc, int fs)
{
    if (!fs_ok(cc, fs))
        return -ENODEV;
    uint64_t gen;
    tmem_client_t *c = tl_get(&cc->link, &gen);
    const struct cc_fs *f = &cc->fs[fs];
    int r = -ENODEV;
    if (f->used)
        r = c && f->pool >= 0 && tmem_pool_is_shared(c, (uint32_t)f->pool) == 1;
    tl_put(&cc->link);
    return r;
}

/* Runs op on fs's pool under the read lock; -ENODEV for an unknown fs,
 * -ENOTCONN without a client, -ENOMEM for an fs tmem refused a pool (it
 * runs without cleancache, as in Linux).  A lost daemon asks for repair. */
enum cc_op { CC_GET, CC_PUT, CC_FLUSH_PAGE, CC_FLUSH_OBJ };

static int cc_call(tmem_cleancache_t *cc, int fs, enum cc_op op,
                   const tmem_cleancache_filekey_t *key, uint32_t index, void *page)
{
    if (!fs_ok(cc, fs) || !key)
        return -EINVAL;
    uint64_t gen;
    tmem_client_t *c = tl_get(&cc->link, &gen);
    const struct cc_fs *f = &cc->fs[fs];
    int r;
    if (!f->used) {
        r = -ENODEV;
    } else if (!c || f->pool == CC_POOL_UNKNOWN) {
        r = -ENOTCONN;
    } else if (f->pool < 0) {
        r = -ENOMEM;                    /* tmem refused this fs a pool: no cleancache */
    } else {
        tmem_oid_t oid = key_oid(key);
        uint32_t pool = (uint32_t)f->pool;
        switch (op) {
        case CC_GET:        r = tmem_get_page(c, pool, oid, index, page); break;
        case CC_PUT:        r = tmem_put_page(c, pool, oid, index, page); break;
        case CC_FLUSH_PAGE: r = tmem_flush_page(c, pool, oid, index); break;
        default:            r = tmem_flush_object(c, pool, oid); break;
        }
    }
    tl_put(&cc->link);
    if (r == -ENOTCONN) {
        cc->disconnected++;
        tl_repair(&cc->link, gen, 0);
    }
    return r;
}

/* A run of gets or puts (op) in one batch: results[i] for index + i.  As
 * cc_call, for each page. */
static int cc_call_batch(tmem_cleancache_t *cc, int fs, enum cc_op op,
                         const tmem_cleancache_filekey_t *key, uint32_t index, size_t n,
                         void *const *pages, int *results)
{
    if (!results || n > TMEM_CLEANCACHE_MAX_BATCH)
        return -EINVAL;
    int bad = !fs_ok(cc, fs) || !key || (n && !pages) ? -EINVAL : 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad = pages[i] ? 0 : -EINVAL;
    if (bad) {
        for (size_t i = 0; i < n; i++)
            results[i] = bad;
        return bad;
    }
    uint64_t gen;
    tmem_client_t *c = tl_get(&cc->link, &gen);
    const struct cc_fs *f = &cc->fs[fs];
    int none = !f->used ? -ENODEV : !c || f->pool == CC_POOL_UNKNOWN ? -ENOTCONN
             : f->pool < 0 ? -ENOMEM : 0;
    int ok = 0;
    if (none) {
        for (size_t i = 0; i < n; i++)
            results[i] = none;
    } else {
        tmem_handle_t h[TMEM_CLEANCACHE_MAX_BATCH];
        tmem_oid_t oid = key_oid(key);
        for (size_t i = 0; i < n; i++)
            h[i] = (tmem_handle_t){ (uint32_t)f->pool, index + (uint32_t)i, oid };
        ok = op == CC_GET ? tmem_get_pages(c, n, h, pages, results)
                          : tmem_put_pages(c, n, h, (const void *const *)pages, results);
    }
    tl_put(&cc->link);
    bool lost = none == -ENOTCONN;
    for (size_t i = 0; i < n && !lost; i++)
        lost = results[i] == -ENOTCONN;
    if (lost) {
        cc->disconnected++;
        tl_repair(&cc->link, gen, 0);
    }
    return ok;
}

int tmem_cleancache_get_pages(tmem_cleancache_t *cc, int fs, const tmem_cleancache_filekey_t *key,
                              uint32_t index, size_t n, void *const *pages, int *results)
{
    int r = cc_call_batch(cc, fs, CC_GET, key, index, n, pages, results);
    if (cc && r >= 0) {
        cc->succ_gets += (uint64_t)r;
        cc->failed_gets += n - (uint64_t)r;
    }
    return r;
}

int tmem_cleancache_put_pages(tmem_cleancache_t *cc, int fs, const tmem_cleancache_filekey_t *key,
                              uint32_t index, size_t n, const void *const *pages, int *results)
{
    int r = cc_call_batch(cc, fs, CC_PUT, key, index, n, (void *const *)pages, results);
    if (cc && r >= 0) {
        cc->puts += n;
        cc->puts_refused += n - (uint64_t)r;
    }
    return r;
}

int tmem_cleancache_get_page(tmem_cleancache_t *cc, int fs, const tmem_cleancache_filekey_t *key,
                             uint32_t index, void *page)
{
    if (!page)
        return -EINVAL;
    int r = cc_call(cc, fs, CC_GET, key, index, page);
    if (cc) {
        if (r == 0)
            cc->succ_gets++;
        else
            cc->failed_gets++;
    }
    return r;
}

int tmem_cleancache_put_page(tmem_cleancache_t *cc, int fs, const tmem_cleancache_filekey_t *key,
                             uint32_t index, const void *page)
{
    if (!page)
        return -EINVAL;
    int r = cc_call(cc, fs, CC_PUT, key, index, (void *)page);
    if (cc) {
        cc->puts++;
        if (r != 0)
            cc->puts_refused++;
    }
    return r;
}

/* An invalidate that found no daemon: a shared fs must not lose it (see the
 * top of the file).  Tries to reconnect at once; else keeps it for the
 * rebuild. */
static void invalidate_away(tmem_cleancache_t *cc, int fs, enum cc_op op,
                            const tmem_cleancache_filekey_t *key, uint32_t index)
{
    uint64_t gen;
    tl_get(&cc->link, &gen);
    bool shared = cc->fs[fs].used && cc->fs[fs].shared;
    tl_put(&cc->link);
    if (!shared)
        return;                         /* a private pool starts empty again */
    if (tl_repair(&cc->link, gen, 1) && cc_call(cc, fs, op, key, index, NULL) == 0)
        return;
    pthread_mutex_lock(&cc->pend_lock);
    if (cc->npend < CC_PENDING_MAX)
        cc->pend[cc->npend++] = (struct cc_pending){ fs, op == CC_FLUSH_OBJ, key_oid(key), index };
    else
        cc->pend_overflow |= 1u << fs;
    pthread_mutex_unlock(&cc->pend_lock);
    /* a rebuild that ran meanwhile did not see it: send it now */
    uint64_t now_gen;
    tl_get(&cc->link, &now_gen);
    tl_put(&cc->link);
    if (now_gen != gen)
        cc_call(cc, fs, op, key, index, NULL);
}

void tmem_cleancache_invalidate_page(tmem_cleancache_t *cc, int fs,
                                     const tmem_cleancache_filekey_t *key, uint32_t index)
{
    int r = cc_call(cc, fs, CC_FLUSH_PAGE, key, index, NULL);
    if (r == -EINVAL)
        return;
    cc->invalidates++;
    if (r == -ENOTCONN)
        invalidate_away(cc, fs, CC_FLUSH_PAGE, key, index);
}

void tmem_cleancache_invalidate_inode(tmem_cleancache_t *cc, int fs,
                                      const tmem_cleancache_filekey_t *key)
{
    int r = cc_call(cc, fs, CC_FLUSH_OBJ, key, 0, NULL);
    if (r == -EINVAL)
        return;
    cc->invalidates++;
    if (r == -ENOTCONN)
        invalidate_away(cc, fs, CC_FLUSH_OBJ, key, 0);
}

void tmem_cleancache_invalidate_fs(tmem_cleancache_t *cc, int fs)
{
    if (!fs_ok(cc, fs))
        return;
    tl_write_lock(&cc->link);
    struct cc_fs *f = &cc->fs[fs];
    if (f->used) {
        if (cc->link.c && f->pool >= 0)
            tmem_destroy_pool(cc->link.c, (uint32_t)f->pool);
        memset(f, 0, sizeof(*f));
        f->pool = CC_POOL_NONE;
        cc->invalidates++;
        pthread_mutex_lock(&cc->pend_lock);
        unsigned keep = 0;
        for (unsigned i = 0; i < cc->npend; i++)
            if (cc->pend[i].fs != fs)
                cc->pend[keep++] = cc->pend[i];
        cc->npend = keep;
        cc->pend_overflow &= ~(1u << fs);
        pthread_mutex_unlock(&cc->pend_lock);
    }
    tl_write_unlock(&cc->link);
}

void tmem_cleancache_stats(tmem_cleancache_t *cc, tmem_cleancache_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!cc)
        return;
    out->succ_gets = cc->succ_gets;
    out->failed_gets = cc->failed_gets;
    out->puts = cc->puts;
    out->invalidates = cc->invalidates;
    out->puts_refused = cc->puts_refused;
    out->reconnects = tl_reconnects(&cc->link);
    out->disconnected = cc->disconnected;
}

tmem_client_t *tmem_cleancache_client(tmem_cleancache_t *cc)
{
    if (!cc)
        return NULL;
    uint64_t gen;
    tmem_client_t *c = tl_get(&cc->link, &gen);
    tl_put(&cc->link);
    return c;
}

void tmem_cleancache_set_reconnect_ms(tmem_cleancache_t *cc, unsigned ms)
{
    if (cc)
        cc->link.interval_ms = ms;
}
