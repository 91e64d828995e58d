/* SPDX-License-Identifier: MIT */
/*
 * pool.c - pools: creation, destruction, shared pools, and the lower-level
 * operations on buckets, objects and page descriptors that page.c and
 * evict.c share.
 *
 * A pool is split into TM_POOL_BUCKETS lock stripes by oid hash; a bucket's
 * mutex guards its object table and everything inside those objects.  So
 * puts and gets of different objects rarely share a lock, and never when
 * they are in different pools.
 *
 * Shared pools live in t->shared[] (at most TMEM_MAX_SHARED_POOLS), found by
 * uuid.  Joining needs authorisation (tmem_admin_shared_auth) unless the
 * engine was opened with shared_auth_required = 0; an unauthorised request
 * quietly yields a private pool, as in Xen, and tmem_pool_is_shared() tells.
 * The pool's ephemeral pages are accounted to one sharer, its owner; when
 * the owner leaves, ownership (and the count) moves to another sharer.  The
 * last sharer to leave destroys the pool.  Shared persistent pools are
 * refused (-EINVAL): there is no owner to hold persistent data when the
 * sharer who put it leaves.
 */
#include "internal.h"

uint32_t tm_now_tick(tmem_t *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)(ts.tv_sec - t->t0.tv_sec) * 1000000000 + (ts.tv_nsec - t->t0.tv_nsec);
    return (uint32_t)((uint64_t)ns >> TM_TICK_SHIFT);
}

struct tm_bucket *tm_pool_bucket(struct tm_pool *p, uint64_t oid_hash)
{
    return &p->buckets[oid_hash & (TM_POOL_BUCKETS - 1)];
}

struct tm_pool *tm_pool_new(tmem_t *t, struct tmem_client *owner, uint32_t flags,
                            tmem_uuid_t uuid, bool shared, struct tm_store *store)
{
    /* aligned: another pool's hot lines never share a line with its own */
    struct tm_pool *p = tm_meta_calloc_aligned(t, sizeof(*p), 64);
    if (!p)
        return NULL;
    p->t = t;
    p->flags = flags;
    p->persistent = (flags & TMEM_POOL_PERSIST) != 0;
    p->shared = shared;
    p->keep_on_get = (flags & TMEM_POOL_KEEP_ON_GET) != 0;
    p->uuid = shared ? uuid : (tmem_uuid_t){ 0, 0 };
    p->shared_slot = -1;
    p->store = store;
    p->owner = owner;
    pthread_mutex_init(&p->lru_lock, NULL);
    tm_lru_set(&p->lru.next, &p->lru);
    tm_lru_set(&p->lru.prev, &p->lru);
    for (unsigned i = 0; i < TM_POOL_BUCKETS; i++)
        pthread_mutex_init(&p->buckets[i].lock, NULL);
    return p;
}

void tm_lru_add_locked(struct tm_pool *p, struct tm_pgd *pgd)
{
    pthread_mutex_lock(&p->lru_lock);
    tm_lru_set(&pgd->prev, p->lru.prev);
    tm_lru_set(&pgd->next, &p->lru);
    tm_lru_set(&p->lru.prev->next, pgd);
    tm_lru_set(&p->lru.prev, pgd);
    p->lru_count++;
    tm_client_eph_add(p->owner, 1);
    pthread_mutex_unlock(&p->lru_lock);
}

struct tm_pgd *tm_pgd_find_locked(struct tm_bucket *b, uint64_t h, const tmem_oid_t *oid,
                                  uint32_t index, struct tm_obj **objp, uint32_t *frame)
{
    struct tm_obj *o = tm_table_find(&b->objs, TM_TABLE_OBJS, h, oid);
    if (objp)
        *objp = o;
    uint32_t hint = 0;
    struct tm_pgd *pgd = o ? tm_table_find_page(&o->pages, index, &hint) : NULL;
    if (frame)
        *frame = hint;
    return pgd;
}

void tm_lru_touch_locked(tmem_t *t, struct tm_pool *p, struct tm_pgd *pgd)
{
    pthread_mutex_lock(&p->lru_lock);
    tm_lru_set(&pgd->prev->next, pgd->next);
    tm_lru_set(&pgd->next->prev, pgd->prev);
    tm_lru_set(&pgd->prev, p->lru.prev);
    tm_lru_set(&pgd->next, &p->lru);
    tm_lru_set(&p->lru.prev->next, pgd);
    tm_lru_set(&p->lru.prev, pgd);
    pgd->age = tm_now_tick(t);
    pthread_mutex_unlock(&p->lru_lock);
}

/* Unlinks pgd from the LRU; lru_lock held. */
static void lru_del_locked(struct tm_pool *p, struct tm_pgd *pgd)
{
    tm_lru_set(&pgd->prev->next, pgd->next);
    tm_lru_set(&pgd->next->prev, pgd->prev);
    tm_lru_set(&pgd->next, NULL);
    tm_lru_set(&pgd->prev, NULL);
    p->lru_count--;
    tm_client_eph_add(p->owner, -1);
}

void tm_pgd_unlink_locked(struct tm_pool *p, struct tm_bucket *b, struct tm_pgd *pgd,
                          struct tm_obj **freed_obj)
{
    struct tm_obj *o = pgd->obj;
    tm_dedup_unindex(p->store, pgd);
    tm_table_remove(&o->pages, TM_TABLE_PAGES, pgd);
    if (p->persistent) {
        tm_pers_uncharge(p->owner, 1);
    } else {
        pthread_mutex_lock(&p->lru_lock);
        lru_del_locked(p, pgd);
        pthread_mutex_unlock(&p->lru_lock);
    }
    tm_sub(p->npages, 1);
    *freed_obj = NULL;
    if (o->pages.count == 0) {
        tm_table_remove(&b->objs, TM_TABLE_OBJS, o);
        tm_sub(p->nobjs, 1);
        *freed_obj = o;
    }
}

void tm_pgd_release(tmem_t *t, struct tm_pool *p, struct tm_pgd *pgd)
{
    tm_loc_free(t, p->store, &pgd->loc);
    tm_slab_free(t, pgd);
}

/* Takes every page of o off the LRU and the counts (bucket lock held);
 * returns how many. */
static uint32_t obj_unlink_pages_locked(struct tm_pool *p, struct tm_obj *o)
{
    uint32_t n = 0;
    if (!p->persistent)
        pthread_mutex_lock(&p->lru_lock);
    for (uint32_t k = 0; k < o->pages.cap; k++) {
        struct tm_pgd *pgd = tm_table_at(&o->pages, k);
        if (!pgd)
            continue;
        tm_dedup_unindex(p->store, pgd);
        if (p->persistent)
            tm_pers_uncharge(p->owner, 1);
        else
            lru_del_locked(p, pgd);
        n++;
    }
    if (!p->persistent)
        pthread_mutex_unlock(&p->lru_lock);
    tm_sub(p->npages, n);
    tm_sub(p->nobjs, 1);
    return n;
}

uint32_t tm_obj_detach_locked(struct tm_pool *p, struct tm_bucket *b, struct tm_obj *o)
{
    uint32_t n = obj_unlink_pages_locked(p, o);
    tm_table_remove(&b->objs, TM_TABLE_OBJS, o);
    return n;
}

void tm_obj_release(tmem_t *t, struct tm_pool *p, struct tm_obj *o)
{
    for (uint32_t k = 0; k < o->pages.cap; k++)
        if (tm_table_at(&o->pages, k))
            tm_pgd_release(t, p, tm_table_at(&o->pages, k));
    tm_table_free(t, &o->pages);
    tm_slab_free(t, o);
}

void tm_pool_free(tmem_t *t, struct tm_pool *p)
{
    for (unsigned i = 0; i < TM_POOL_BUCKETS; i++) {
        struct tm_bucket *b = &p->buckets[i];
        pthread_mutex_lock(&b->lock);
        /* one pass over the table, then drop it whole: removing objects one
         * by one would rescan a growing empty prefix (quadratic) */
        for (uint32_t s = 0; s < b->objs.cap; s++) {
            struct tm_obj *o = tm_table_at(&b->objs, s);
            if (o) {
                obj_unlink_pages_locked(p, o);
                tm_obj_release(t, p, o);
            }
        }
        tm_table_free(t, &b->objs);
        pthread_mutex_unlock(&b->lock);
        pthread_mutex_destroy(&b->lock);
    }
    tm_assert(p->lru_count == 0 && tm_load(p->npages) == 0);
    pthread_mutex_destroy(&p->lru_lock);
    if (p->shared)
        tm_store_free(t, p->store);
    tm_meta_free(t, p->sharers);
    tm_meta_free(t, p);
}

/* ------------------------------------------------------------------------
 * Public pool calls
 * ---------------------------------------------------------------------- */
static bool uuid_eq(tmem_uuid_t a, tmem_uuid_t b) { return a.lo == b.lo && a.hi == b.hi; }

static int validate_flags(uint32_t flags)
{
    if (flags & TMEM_POOL_RESERVED_BITS)
        return -EINVAL;
    if (((flags >> TMEM_POOL_PAGESIZE_SHIFT) & TMEM_POOL_PAGESIZE_MASK) != 0)
        return -EINVAL;
    uint32_t ver = (flags >> TMEM_POOL_VERSION_SHIFT) & TMEM_POOL_VERSION_MASK;
    if (ver > TMEM_SPEC_VERSION)
        return -EINVAL;
    if ((flags & TMEM_POOL_SHARED) && (flags & TMEM_POOL_PERSIST))
        return -EINVAL;
    if ((flags & TMEM_POOL_SHARED) && (flags & TMEM_POOL_KEEP_ON_GET))
        return -EINVAL;     /* shared gets never remove the page anyway */
    return 0;
}

static int free_slot(struct tmem_client *c)
{
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++)
        if (!c->pools[i])
            return (int)i;
    return -1;
}

/* Adds c to the sharers of p; clients_lock held for writing.  No eviction
 * may run from here (we hold clients_lock), so this only releases frames. */
static int sharer_add_locked(tmem_t *t, struct tm_pool *p, struct tmem_client *c)
{
    if (p->nsharers == p->sharers_cap) {
        uint32_t cap = p->sharers_cap ? p->sharers_cap * 2 : 4;
        struct tmem_client **ns = tm_meta_alloc(t, cap * sizeof(*ns), false);
        if (!ns)
            return -ENOMEM;
        if (p->nsharers)
            memcpy(ns, p->sharers, p->nsharers * sizeof(*ns));
        tm_meta_free(t, p->sharers);
        p->sharers = ns;
        p->sharers_cap = cap;
    }
    p->sharers[p->nsharers++] = c;
    return 0;
}

/* Creates or joins the shared pool of uuid for c (write-locked).  Returns the
 * pool, or NULL with *err set. */
static struct tm_pool *shared_join(tmem_t *t, struct tmem_client *c, uint32_t flags,
                                   tmem_uuid_t uuid, int *err)
{
    /* Allocate a candidate before taking clients_lock: allocation may evict,
     * and eviction takes clients_lock for reading. */
    struct tm_store *store = tm_store_new(t, false);
    struct tm_pool *cand = NULL;
    if (store) {
        cand = tm_pool_new(t, c, flags, uuid, true, store);
        if (!cand)
            tm_store_free(t, store);
    }
    struct tm_pool *p = NULL;
    *err = -ENOMEM;
    pthread_rwlock_wrlock(&t->clients_lock);
    for (unsigned i = 0; i < TMEM_MAX_SHARED_POOLS && !p; i++)
        if (t->shared[i] && uuid_eq(t->shared[i]->uuid, uuid))
            p = t->shared[i];
    if (p) {
        if (sharer_add_locked(t, p, c) != 0)
            p = NULL;
    } else if (cand) {
        for (unsigned i = 0; i < TMEM_MAX_SHARED_POOLS; i++) {
            if (!t->shared[i]) {
                if (sharer_add_locked(t, cand, c) == 0) {
                    cand->shared_slot = (int)i;
                    t->shared[i] = cand;
                    p = cand;
                    cand = NULL;
                }
                break;
            }
        }
    }
    pthread_rwlock_unlock(&t->clients_lock);
    if (cand)
        tm_pool_free(t, cand);      /* unused: frees its store too */
    return p;
}

/* c's store of private pools of a kind, made with its first such pool (c
 * write-locked; published under clients_lock too, which tmem_freeable_pages
 * reads it under).  NULL when there is no memory for it. */
static struct tm_store *client_store(tmem_t *t, struct tmem_client *c, bool pers)
{
    struct tm_store **sp = pers ? &c->pers_store : &c->eph_store;
    if (!*sp) {
        struct tm_store *s = tm_store_new(t, pers);
        pthread_rwlock_wrlock(&t->clients_lock);
        *sp = s;
        pthread_rwlock_unlock(&t->clients_lock);
    }
    return *sp;
}

int tm_pool_create(struct tmem_client *c, int slot, tmem_uuid_t uuid, uint32_t flags)
{
    int rc = tm_client_enter(c);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    tm_client_leave(c);
    if ((rc = validate_flags(flags)) != 0) {
        tm_inc(t->st.bad_args);
        return rc;
    }
    tm_brlock_write(&c->lock);
    if (c->dead) {
        tm_brlock_write_unlock(&c->lock);
        tm_inc(t->st.bad_closed);
        return -ENODEV;
    }
    bool slot_given = slot >= 0;
    if (slot < 0) {
        slot = free_slot(c);    /* -1 (none free) fails below: a rejoin needs none */
    } else if (slot >= (int)TMEM_MAX_POOLS || c->pools[slot]) {
        tm_brlock_write_unlock(&c->lock);
        return -EBUSY;
    }
    bool want_shared = (flags & TMEM_POOL_SHARED) &&
                       !(uuid.lo == UINT64_MAX && uuid.hi == UINT64_MAX);
    if (want_shared && t->cfg.shared_auth_required) {
        pthread_rwlock_rdlock(&t->clients_lock);
        want_shared = tm_client_authorised_locked(c, uuid);
        pthread_rwlock_unlock(&t->clients_lock);
    }
    if (want_shared) {
        /* joining a shared pool the client is already in returns its slot:
         * one pool never sits in two slots of one client */
        for (unsigned i = 0; i < TMEM_MAX_POOLS; i++) {
            struct tm_pool *q = c->pools[i];
            if (q && q->shared && uuid_eq(q->uuid, uuid)) {
                tm_brlock_write_unlock(&c->lock);
                return slot_given && (unsigned)slot != i ? -EBUSY : (int)i;
            }
        }
    }
    if (slot < 0) {
        tm_brlock_write_unlock(&c->lock);
        return -ENOMEM;
    }
    struct tm_pool *p;
    if (want_shared) {
        p = shared_join(t, c, flags, uuid, &rc);
    } else {
        bool pers = (flags & TMEM_POOL_PERSIST) != 0;
        struct tm_store *s = t->cfg.dedup_across_clients ? (pers ? t->global_pers : t->global_eph)
                                                         : client_store(t, c, pers);
        p = s ? tm_pool_new(t, c, flags & ~TMEM_POOL_SHARED, uuid, false, s) : NULL;
        rc = -ENOMEM;
    }
    if (p) {
        c->pools[slot] = p;
        rc = slot;
    }
    tm_brlock_write_unlock(&c->lock);
    return rc;
}

int tm_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags)
{
    return tm_pool_create(c, -1, uuid, flags);
}

/* Drops c's slot pointing at p; c write-locked.  Frees p unless other
 * clients still share it. */
void tm_pool_leave(tmem_t *t, struct tmem_client *c, struct tm_pool *p)
{
    if (!p->shared) {
        tm_pool_stats_fold(&c->st, p);     /* the client's totals keep them */
        tm_pool_free(t, p);
        return;
    }
    bool last = false;
    pthread_rwlock_wrlock(&t->clients_lock);
    for (uint32_t i = 0; i < p->nsharers; i++) {
        if (p->sharers[i] == c) {
            p->sharers[i] = p->sharers[--p->nsharers];
            break;
        }
    }
    if (p->nsharers == 0) {
        t->shared[p->shared_slot] = NULL;
        last = true;
    } else if (p->owner == c) {
        struct tmem_client *heir = p->sharers[0];
        pthread_mutex_lock(&p->lru_lock);
        tm_client_eph_add(c, -(int64_t)p->lru_count);
        tm_client_eph_add(heir, (int64_t)p->lru_count);
        p->owner = heir;
        pthread_mutex_unlock(&p->lru_lock);
    }
    pthread_rwlock_unlock(&t->clients_lock);
    if (last) {
        /* The pool is unreachable now; its pages are accounted to c. */
        tm_pool_free(t, p);
    }
}

int tm_destroy_pool(tmem_client_t *c, uint32_t pool_id)
{
    int rc = tm_client_enter(c);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    tm_client_leave(c);
    tm_brlock_write(&c->lock);
    if (c->dead) {
        tm_brlock_write_unlock(&c->lock);
        tm_inc(t->st.bad_closed);
        return -ENODEV;
    }
    struct tm_pool *p = pool_id < TMEM_MAX_POOLS ? c->pools[pool_id] : NULL;
    if (!p) {
        tm_brlock_write_unlock(&c->lock);
        tm_inc(t->st.bad_pool);
        return -ENODEV;
    }
    c->pools[pool_id] = NULL;
    tm_pool_leave(t, c, p);
    tm_brlock_write_unlock(&c->lock);
    return 0;
}

int tm_pool_is_shared(tmem_client_t *c, uint32_t pool_id)
{
    int rc = tm_client_enter(c);
    if (rc)
        return rc;
    struct tm_pool *p = pool_id < TMEM_MAX_POOLS ? c->pools[pool_id] : NULL;
    rc = p ? (int)p->shared : -ENODEV;
    tm_client_leave(c);
    return rc;
}
