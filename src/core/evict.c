/* SPDX-License-Identifier: MIT */
/*
 * evict.c - choosing and evicting ephemeral pages.
 *
 * Policy: a weighted LRU.  Every client's ephemeral pages age at a rate of
 * 1 / weight: the victim is the client whose oldest page has the largest
 * age / weight (weight 0: first, always); within it, the pool whose oldest
 * page is oldest (pages carry their put time in 65.5 us ticks; within a
 * pool the LRU list is exact); within that pool, the oldest page whose bucket lock
 * can be taken.
 *
 * This is work-conserving: memory a client does not use (its pages get old)
 * goes to the clients that do, whatever their shares, which is what a
 * victim cache of idle tenants' memory is for.  Between clients that put
 * equally hard, memory ends up in proportion to their weights (tests/unit/
 * test_evict.c); a client that puts faster takes more, as in any LRU, and
 * weights are the administrator's knob against that.  (Earlier versions
 * followed Xen's client_over_quota: a client over weight / sum(weights)
 * evicted its own pages, with idle clients counted in the sum, so a busy
 * client could never take an idle one's memory: docs/experiment.md measured
 * what that cost.)
 *
 * Locking.  The put path holds no bucket lock when it evicts.  Eviction
 * walks up from an LRU list, against the lock order (bucket -> lru), so it
 * holds pool->lru_lock and only *tries* the victim's bucket lock, skipping
 * up to TM_EVICT_SCAN busy pages.  The victim client is pinned with
 * tm_brlock_tryread on its lock, which comes before clients_lock in the
 * order (a client being closed, or creating or destroying a pool, is
 * skipped), so its pools cannot be freed under us.  Once the
 * bucket is held the page is unlinked from the LRU, the lru_lock dropped,
 * the page unlinked from its object, the bucket unlocked, and the data freed
 * with no lock held.
 */
#include "internal.h"

#define TM_EVICT_SCAN 16

/* Tries to evict the oldest evictable page of pool p (owned by cl, which is
 * read-locked).  true on success. */
static bool evict_from_pool(tmem_t *t, struct tmem_client *cl, struct tm_pool *p)
{
    struct tm_pgd *victim = NULL;
    struct tm_bucket *b = NULL;
    int scanned = 0;

    pthread_mutex_lock(&p->lru_lock);
    for (struct tm_pgd *pgd = p->lru.next; pgd != &p->lru && scanned < TM_EVICT_SCAN;
         pgd = pgd->next, scanned++) {
        struct tm_bucket *cand = tm_pool_bucket(p, pgd->obj->hash);
        if (pthread_mutex_trylock(&cand->lock) == 0) {
            victim = pgd;
            b = cand;
            break;
        }
        tm_inc(t->st.evict_skipped_busy);
    }
    if (!victim) {
        pthread_mutex_unlock(&p->lru_lock);
        return false;
    }
    /* Unlink from the LRU here (we hold lru_lock), then from the object. */
    tm_lru_set(&victim->prev->next, victim->next);
    tm_lru_set(&victim->next->prev, victim->prev);
    tm_lru_set(&victim->next, NULL);
    tm_lru_set(&victim->prev, NULL);
    p->lru_count--;
    tm_client_eph_add(p->owner, -1);
    pthread_mutex_unlock(&p->lru_lock);

    struct tm_obj *o = victim->obj, *freed_obj = NULL;
    tm_dedup_unindex(p->store, victim);
    tm_table_remove(&o->pages, TM_TABLE_PAGES, victim);
    tm_sub(p->npages, 1);
    if (o->pages.count == 0) {
        tm_table_remove(&b->objs, TM_TABLE_OBJS, o);
        tm_sub(p->nobjs, 1);
        freed_obj = o;
    }
    pthread_mutex_unlock(&b->lock);

    tm_pgd_release(t, p, victim);
    if (freed_obj)
        tm_obj_release(t, p, freed_obj);
    tm_inc(t->st.evictions);
    tm_inc(cl->st.evicted);
    return true;
}

/* Evicts from client cl (read-locked by the caller): pools owned by cl,
 * oldest head first. */
static bool evict_from_client(tmem_t *t, struct tmem_client *cl)
{
    bool tried[TMEM_MAX_POOLS] = { false };
    for (unsigned round = 0; round < TMEM_MAX_POOLS; round++) {
        struct tm_pool *best = NULL;
        unsigned best_i = 0;
        int32_t best_age = 0;
        uint32_t now = tm_now_tick(t);
        for (unsigned i = 0; i < TMEM_MAX_POOLS; i++) {
            struct tm_pool *p = cl->pools[i];
            if (!p || p->persistent || tried[i])
                continue;
            pthread_mutex_lock(&p->lru_lock);
            bool mine = p->owner == cl && p->lru_count > 0;
            int32_t age = mine ? (int32_t)(now - p->lru.next->age) : 0;
            pthread_mutex_unlock(&p->lru_lock);
            if (mine && (!best || age > best_age)) {
                best = p;
                best_i = i;
                best_age = age;
            }
        }
        if (!best)
            return false;
        if (evict_from_pool(t, cl, best))
            return true;
        tried[best_i] = true;
    }
    return false;
}

static bool try_client(tmem_t *t, struct tmem_client *cl)
{
    if (!tm_brlock_tryread(&cl->lock))
        return false;
    bool ok = !cl->dead && evict_from_client(t, cl);
    tm_brlock_read_unlock(&cl->lock);
    return ok;
}

/* The age (ticks, + 1) of client cl's oldest ephemeral page; 0 if it has
 * none, or if it is busy (being closed, or creating or destroying a pool). */
static uint64_t oldest_age(struct tmem_client *cl, uint32_t now)
{
    if (!tm_brlock_tryread(&cl->lock))
        return 0;
    uint64_t best = 0;
    for (unsigned i = 0; !cl->dead && i < TMEM_MAX_POOLS; i++) {
        struct tm_pool *p = cl->pools[i];
        if (!p || p->persistent)
            continue;
        pthread_mutex_lock(&p->lru_lock);
        if (p->owner == cl && p->lru_count > 0) {
            uint64_t age = (uint64_t)(uint32_t)(now - p->lru.next->age) + 1;
            if (age > best)
                best = age;
        }
        pthread_mutex_unlock(&p->lru_lock);
    }
    tm_brlock_read_unlock(&cl->lock);
    return best;
}

/* a's pages should go before b's: a larger age / weight (weight 0 first),
 * ties to the larger pages / weight */
static bool goes_first(uint64_t age_a, uint64_t w_a, uint64_t pages_a,
                       uint64_t age_b, uint64_t w_b, uint64_t pages_b)
{
    if ((w_a == 0) != (w_b == 0))
        return w_a == 0;
    unsigned __int128 x = (unsigned __int128)age_a * w_b, y = (unsigned __int128)age_b * w_a;
    if (x != y)
        return x > y;
    return (unsigned __int128)pages_a * w_b > (unsigned __int128)pages_b * w_a;
}

bool tm_evict_one(tmem_t *t, struct tmem_client *requester)
{
    (void)requester;            /* the victim is chosen by age and weight alone */
    tm_inc(t->st.evict_attempts);
    pthread_rwlock_rdlock(&t->clients_lock);
    uint32_t now = tm_now_tick(t);
    bool done = false;
    struct tmem_client *skip[4] = { NULL };
    /* a few passes skip clients that were busy */
    for (int pass = 0; pass < 4 && !done; pass++) {
        struct tmem_client *best = NULL;
        uint64_t best_age = 0, best_w = 0, best_pages = 0;
        for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next) {
            /* the sum of the client's stripes is not a snapshot and may read
             * 0 while it holds pages: oldest_age, under the locks, decides */
            uint64_t pages = tm_client_eph_pages(c);
            bool skipped = false;
            for (int k = 0; k < pass; k++)
                skipped |= skip[k] == c;
            if (skipped)
                continue;
            uint64_t age = oldest_age(c, now), w = tm_load(c->weight);
            if (age == 0)
                continue;               /* busy, or only shared pages it does not own */
            if (!best || goes_first(age, w, pages, best_age, best_w, best_pages)) {
                best = c;
                best_age = age;
                best_w = w;
                best_pages = pages;
            }
        }
        if (!best)
            break;
        done = try_client(t, best);
        skip[pass] = best;
    }
    pthread_rwlock_unlock(&t->clients_lock);
    return done;
}
