/* SPDX-License-Identifier: MIT */
/*
 * page.c - the data path: put, get, flush page, flush object.
 *
 * The put path is ordered so that no lock is held while memory is found:
 *
 *   1. (frozen client, or over the persistent cap) check under the bucket
 *      lock that this is a duplicate put; a new put is refused before any
 *      work is done;
 *   2. allocate the descriptor (may evict);
 *   3. store the data: same-filled / dedup / compress / whole (store.c),
 *      evicting ephemeral pages if there is no room;
 *   4. lock the bucket, find or create the object, then either replace the
 *      old data of a duplicate (put-put-get: the old data is freed, never
 *      returned again) or insert the new descriptor; check the persistent cap
 *      and the frozen state again here, where they are decided; enter a page
 *      stored alone in the dedup index;
 *   5. unlock, free what was replaced or not used.
 *
 * If 2 or 3 fail on a duplicate put, the old copy is removed and -ENOSPC
 * returned (the rule of put-put-get: fail *and* flush).
 *
 * A get copies the data out under the bucket lock, then (private pools)
 * unlinks the descriptor; if the copy failed nothing is removed, so the
 * Xen defect of a descriptor freed on a failed copy cannot happen here.
 * Over an arena whose owner may take memory by force, a get from an
 * ephemeral pool reads the revoke epoch before and after its copy
 * (arena.h): if a revocation is pending or came meanwhile, the get misses
 * and drops the page (its data may be gone; a later get must miss too).
 */
#include "internal.h"

static int pool_enter(tmem_client_t *c, uint32_t pool_id, struct tm_pool **pp)
{
    int rc = tm_client_enter(c);
    if (rc)
        return rc;
    struct tm_pool *p = pool_id < TMEM_MAX_POOLS ? c->pools[pool_id] : NULL;
    if (!p) {
        tm_client_leave(c);
        tm_inc(c->t->st.bad_pool);
        return -ENODEV;
    }
    *pp = p;
    return 0;
}

/* A put that could not store its data: remove a duplicate's old copy
 * (-ENOSPC) or report why_absent.  No lock held on entry. */
static int put_failed(tmem_client_t *c, struct tm_pool *p, struct tm_bucket *b, uint64_t h,
                      const tmem_oid_t *oid, uint32_t index, int why_absent)
{
    tmem_t *t = c->t;
    struct tm_obj *freed_obj = NULL;
    struct tm_pgd *old = NULL;
    pthread_mutex_lock(&b->lock);
    old = tm_pgd_find_locked(b, h, oid, index, NULL, NULL);
    if (old)
        tm_pgd_unlink_locked(p, b, old, &freed_obj);
    pthread_mutex_unlock(&b->lock);
    if (old) {
        tm_pgd_release(t, p, old);
        if (freed_obj)
            tm_obj_release(t, p, freed_obj);
        TM_COUNT(c, p, dup_flushed, dup_flushed);
        return -ENOSPC;
    }
    tm_inc(p->st.refused);
    if (why_absent == -ENOMEM)
        tm_inc(c->st.refused_nomem);
    return why_absent;
}

/* A new object of hash h, with its first page table inline (types.h). */
static struct tm_obj *obj_alloc(tmem_t *t, uint64_t h, bool may_evict)
{
    struct tm_obj *o = tm_slab_alloc(t, TM_SLAB_OBJECT, may_evict);
    if (o) {
        memset(o, 0, offsetof(struct tm_obj, pages));
        tm_table_init_inline(&o->pages, TM_OBJ_FIRST_SLOTS, h);
    }
    return o;
}

int tm_put_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oidp, uint32_t index,
                const void *page)
{
    const tmem_oid_t oid = *oidp;
    struct tm_pool *p;
    int rc = pool_enter(c, pool_id, &p);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    if (!page) {
        tm_inc(t->st.bad_args);
        rc = -EINVAL;
        goto out;
    }
    TM_COUNT(c, p, puts, puts);
    uint64_t h = tm_oid_hash(t, &oid);
    struct tm_bucket *b = tm_pool_bucket(p, h);

    /* A new put that the client's state refuses (frozen, or over its
     * persistent cap) is refused before any work is done; a duplicate goes
     * on.  Both are decided again under the bucket lock below. */
    uint64_t cap = tm_load(c->cap);
    int early = tm_client_frozen(c) ? -TMEM_EFROZEN
              : (p->persistent && tm_pers_full(p->owner, cap)) ? -EDQUOT : 0;
    if (early) {
        pthread_mutex_lock(&b->lock);
        bool dup = tm_pgd_find_locked(b, h, &oid, index, NULL, NULL) != NULL;
        pthread_mutex_unlock(&b->lock);
        if (!dup) {
            tm_inc(*(early == -EDQUOT ? &c->st.refused_quota : &c->st.refused_frozen));
            tm_inc(p->st.refused);
            rc = early;
            goto out;
        }
    }

    /* the descriptor before the data: its allocation then does not wait
     * behind the copy's writes to a cold frame */
    struct tm_pgd *pgd = tm_slab_alloc(t, TM_SLAB_PGD, true);
    if (!pgd) {
        rc = put_failed(c, p, b, h, &oid, index, -ENOMEM);
        goto out;
    }
    struct tm_loc loc;
    uint64_t ihash;             /* enter the page in the dedup index under this */
    bool dd_skipped;
    pgd->hash = 0;
    rc = tm_store_put(t, p->store, c, page, atomic_load(&c->compress), &loc, &ihash, &dd_skipped);
    if (dd_skipped)
        TM_COUNT(c, p, dedup_skipped, dedup_skipped);
    if (rc) {
        tm_slab_free(t, pgd);
        rc = put_failed(c, p, b, h, &oid, index, rc);
        goto out;
    }
    struct tm_obj *nobj = NULL;
    struct tm_loc oldloc = { .kind = TM_LOC_NONE };
    /* table growth found under the lock is allocated outside it (where
     * eviction may run), then the lookups are redone */
    struct tm_slot *spare = NULL;
    uint32_t spare_cap = 0;

    pthread_mutex_lock(&b->lock);
    for (;;) {
        struct tm_obj *o;
        struct tm_pgd *old = tm_pgd_find_locked(b, h, &oid, index, &o, NULL);
        if (old) {                                      /* duplicate put: replace */
            tm_dedup_unindex(p->store, old);            /* its old data leaves */
            oldloc = old->loc;
            old->loc = loc;
            tm_table_renew_hint(t, &o->pages, old);
            if (oldloc.kind == TM_LOC_FRAG)             /* freed below, by value */
                tm_zset_owner(&p->store->heap, &oldloc, 0);
            if (loc.kind == TM_LOC_FRAG)
                tm_zset_owner(&p->store->heap, &old->loc, (uintptr_t)&old->loc);
            tm_dedup_index(t, p->store, old, ihash);
            if (!p->persistent)
                tm_lru_touch_locked(t, p, old);         /* a new put is the newest page */
            TM_COUNT(c, p, dup_replaced, dup_replaced);
            rc = 0;
            break;
        }
        if (tm_client_frozen(c)) {                      /* frozen since step 1 */
            tm_inc(c->st.refused_frozen);
            rc = -TMEM_EFROZEN;
            break;
        }
        if (!o && !nobj) {
            /* a new object: allocated here when it fits under the limit as
             * things are (malloc under a bucket lock is allowed); else
             * unlocked, since making room may evict, then look again */
            if (tm_meta_fits(t, sizeof(*nobj)) && (nobj = obj_alloc(t, h, false)) != NULL)
                continue;
            pthread_mutex_unlock(&b->lock);
            nobj = obj_alloc(t, h, true);
            pthread_mutex_lock(&b->lock);
            if (!nobj) {
                tm_inc(c->st.refused_nomem);
                rc = -ENOMEM;
                break;
            }
            continue;
        }
        /* growth of the bucket's object table (new object) or of the
         * object's page table: take the spare, or go and get one */
        struct tm_table *grow = o ? &o->pages : &b->objs;
        uint32_t need = tm_table_grow_cap(grow);
        if (need && spare_cap != need) {
            pthread_mutex_unlock(&b->lock);
            tm_meta_free(t, spare);
            spare = tm_meta_alloc(t, need * sizeof(*spare), true);
            spare_cap = spare ? need : 0;
            pthread_mutex_lock(&b->lock);
            if (!spare) {
                tm_inc(c->st.refused_nomem);
                rc = -ENOMEM;
                break;
            }
            continue;
        }
        if (need) {
            tm_table_grow_into(t, grow, o ? TM_TABLE_PAGES : TM_TABLE_OBJS, spare, spare_cap);
            spare = NULL;
            spare_cap = 0;
            continue;       /* a new object may now need its page table grown */
        }
        if (p->persistent) {
            if ((rc = tm_pers_charge(p->owner, tm_load(c->cap))) != 0) {
                tm_inc(c->st.refused_quota);
                break;
            }
        }
        bool new_obj = false;
        if (!o) {
            o = nobj;
            nobj = NULL;
            o->oid = oid;
            o->hash = h;
            o->pool = p;
            if (tm_table_insert(t, &b->objs, TM_TABLE_OBJS, o) != 0) {
                nobj = o;
                rc = -ENOMEM;
            } else {
                new_obj = true;
                tm_add(p->nobjs, 1);
            }
        }
        if (rc == 0) {
            pgd->obj = o;
            pgd->index = index;
            pgd->loc = loc;
            pgd->age = tm_now_tick(t);
            rc = tm_table_insert(t, &o->pages, TM_TABLE_PAGES, pgd);
            if (rc != 0 && new_obj) {
                tm_table_remove(&b->objs, TM_TABLE_OBJS, o);
                tm_sub(p->nobjs, 1);
                nobj = o;
            }
        }
        if (rc != 0) {
            if (p->persistent)
                tm_pers_uncharge(p->owner, 1);
            tm_inc(c->st.refused_nomem);
            break;
        }
        if (loc.kind == TM_LOC_FRAG)                   /* compaction may move it now */
            tm_zset_owner(&p->store->heap, &pgd->loc, (uintptr_t)&pgd->loc);
        tm_dedup_index(t, p->store, pgd, ihash);       /* duplicates may find it now */
        uint64_t np = tm_add(p->npages, 1) + 1, no = tm_load(p->nobjs);
        if (np > tm_load(p->max_pages))
            tm_store_(p->max_pages, np);
        if (no > tm_load(p->max_objs))
            tm_store_(p->max_objs, no);
        if (!p->persistent)
            tm_lru_add_locked(p, pgd);
        pgd = NULL;                                     /* now linked */
        break;
    }
    pthread_mutex_unlock(&b->lock);

    if (rc == 0) {
        TM_COUNT(c, p, puts_ok, puts_ok);
    } else {
        tm_inc(p->st.refused);
        tm_loc_free(t, p->store, &loc);
    }
    if (oldloc.kind != TM_LOC_NONE)
        tm_loc_free(t, p->store, &oldloc);
    if (pgd)
        tm_slab_free(t, pgd);
    tm_meta_free(t, spare);
    tm_slab_free(t, nobj);
out:
    tm_client_leave(c);
    return rc;
}

int tm_get_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oidp, uint32_t index,
                void *page)
{
    const tmem_oid_t oid = *oidp;
    struct tm_pool *p;
    int rc = pool_enter(c, pool_id, &p);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    if (!page) {
        tm_inc(t->st.bad_args);
        tm_client_leave(c);
        return -EINVAL;
    }
    TM_COUNT(c, p, gets, gets);
    uint64_t h = tm_oid_hash(t, &oid);
    struct tm_bucket *b = tm_pool_bucket(p, h);
    struct tm_obj *freed_obj = NULL;
    struct tm_pgd *taken = NULL;

    /* memory its owner may take by force: the revoke epoch around the copy */
    bool guard = !p->persistent && t->arena.revoke_epoch != NULL;
    uint64_t e0 = 0;

    pthread_mutex_lock(&b->lock);
    uint32_t frame;
    struct tm_pgd *pgd = tm_pgd_find_locked(b, h, &oid, index, NULL, &frame);
    tm_frame_prefetch(t, frame);        /* before pgd's own miss, not after it */
    if (pgd && !p->persistent && !p->shared && !p->keep_on_get) {
        /* the unlink after the copy touches the LRU neighbours: start their
         * misses now, so that they overlap the copy (the links may change
         * under lru_lock meanwhile: a stale guess costs a useless prefetch) */
        __builtin_prefetch(__atomic_load_n(&pgd->prev, __ATOMIC_RELAXED), 1);
        __builtin_prefetch(__atomic_load_n(&pgd->next, __ATOMIC_RELAXED), 1);
        if (pgd->hash)                                  /* its dedup index entry */
            tm_dedup_prefetch(p->store, pgd->hash);
    }
    bool unlink = false;
    if (!pgd) {
        rc = -ENOENT;
    } else if (guard && !tm_arena_epoch_ok(t, &e0)) {
        rc = -ENOENT;                           /* a revocation is pending: drop it */
        unlink = true;
    } else {
        rc = tm_loc_read(p->store, &pgd->loc, page);
        if (guard && !tm_arena_epoch_same(t, e0)) {
            rc = -ENOENT;                       /* one came during the copy: drop it */
            unlink = true;
        } else if (rc == 0 && p->shared) {      /* a hit refreshes recency */
            tm_lru_touch_locked(t, p, pgd);
        } else if (rc == 0 && !p->keep_on_get) {/* private: exclusive get */
            unlink = true;
        }
    }
    if (unlink) {
        if (rc)
            tm_inc(t->arena_dropped);
        tm_pgd_unlink_locked(p, b, pgd, &freed_obj);
        taken = pgd;
    }
    pthread_mutex_unlock(&b->lock);

    if (taken)
        tm_pgd_release(t, p, taken);
    if (freed_obj)
        tm_obj_release(t, p, freed_obj);
    if (rc == 0) {
        TM_COUNT(c, p, gets_hit, gets_hit);
    }
    tm_client_leave(c);
    return rc;
}

int tm_flush_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oidp, uint32_t index)
{
    const tmem_oid_t oid = *oidp;
    struct tm_pool *p;
    int rc = pool_enter(c, pool_id, &p);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    TM_COUNT(c, p, flushes, flushes);
    uint64_t h = tm_oid_hash(t, &oid);
    struct tm_bucket *b = tm_pool_bucket(p, h);
    struct tm_obj *freed_obj = NULL;

    pthread_mutex_lock(&b->lock);
    struct tm_pgd *pgd = tm_pgd_find_locked(b, h, &oid, index, NULL, NULL);
    if (pgd)
        tm_pgd_unlink_locked(p, b, pgd, &freed_obj);
    pthread_mutex_unlock(&b->lock);

    if (pgd) {
        tm_pgd_release(t, p, pgd);
        tm_inc(p->st.flushes_found);
        TM_COUNT(c, p, flushed_pages, flushed_pages);
    }
    if (freed_obj)
        tm_obj_release(t, p, freed_obj);
    tm_client_leave(c);
    return 0;
}

int tm_flush_object(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oidp)
{
    const tmem_oid_t oid = *oidp;
    struct tm_pool *p;
    int rc = pool_enter(c, pool_id, &p);
    if (rc)
        return rc;
    tmem_t *t = c->t;
    TM_COUNT(c, p, flush_objs, flush_objs);
    uint64_t h = tm_oid_hash(t, &oid);
    struct tm_bucket *b = tm_pool_bucket(p, h);
    uint32_t n = 0;

    pthread_mutex_lock(&b->lock);
    struct tm_obj *o = tm_table_find(&b->objs, TM_TABLE_OBJS, h, &oid);
    if (o)
        n = tm_obj_detach_locked(p, b, o);
    pthread_mutex_unlock(&b->lock);

    if (o) {
        tm_obj_release(t, p, o);
        tm_inc(p->st.flush_objs_found);
        tm_add(p->st.flushed_pages, n);
        if (p->shared)
            tm_add(c->st.flushed_pages, n);
    }
    tm_client_leave(c);
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}
