/*
 * evict.c - choosing and evicting ephemeral pages.
 *
 * Policy.  Ephemeral memory is shared by weight: client i's share of the
 * ephemeral pages is weight_i / sum(weights) (clients with no ephemeral
 * pages still count: their share is theirs to grow into).  When a put needs
 * room:
 *
 *   - if the requesting client holds more than its share, it loses its own
 *     oldest page (the documented intent of Xen's client_over_quota, whose
 *     code had the test inverted);
 *   - otherwise the victim is the client furthest over its share, i.e. with
 *     the largest eph_pages / weight (weight 0: no share at all);
 *   - within the victim, the pool whose oldest page is oldest (pages carry a
 *     coarse millisecond age; within a pool the LRU list is exact);
 *   - within that pool, the oldest page whose bucket lock can be taken.
 *
 * Locking.  The put path holds no bucket lock when it evicts.  Eviction
 * walks up from an LRU list, against the lock order (bucket -> lru), so it
 * holds pool->lru_lock and only *tries* the victim's bucket lock, skipping
 * up to TM_EVICT_SCAN busy pages.  The victim client is pinned with
 * tryrdlock on its lock (a client being closed, or creating or destroying a
 * pool, is skipped), so its pools cannot be freed under us.  Once the
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
    victim->prev->next = victim->next;
    victim->next->prev = victim->prev;
    victim->next = victim->prev = NULL;
    p->lru_count--;
    tm_sub(p->owner->eph_pages, 1);
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
        uint32_t now = tm_now_ms(t);
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

bool tm_evict_one(tmem_t *t, struct tmem_client *requester)
{
    tm_inc(t->st.evict_attempts);
    pthread_rwlock_rdlock(&t->clients_lock);
    uint64_t total_pages = 0, total_weight = 0;
    for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next) {
        total_pages += tm_load(c->eph_pages);
        total_weight += tm_load(c->weight);
    }
    if (total_pages == 0) {
        pthread_rwlock_unlock(&t->clients_lock);
        return false;
    }
    /* 1. the requester, if it is over its weighted share */
    if (requester && !requester->dead) {
        uint64_t mine = tm_load(requester->eph_pages), w = tm_load(requester->weight);
        /* over share: mine / total_pages > w / total_weight */
        if (mine > 0 && (unsigned __int128)mine * total_weight >
                            (unsigned __int128)total_pages * w) {
            if (try_client(t, requester)) {
                pthread_rwlock_unlock(&t->clients_lock);
                return true;
            }
        }
    }
    /* 2. the client furthest over its share, then any client in that order
     * of preference (a few passes skip clients that were busy) */
    bool done = false;
    struct tmem_client *skip[4] = { NULL };
    for (int pass = 0; pass < 4 && !done; pass++) {
        struct tmem_client *best = NULL;
        for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next) {
            uint64_t pages = tm_load(c->eph_pages);
            if (pages == 0)
                continue;
            bool skipped = false;
            for (int k = 0; k < pass; k++)
                skipped |= skip[k] == c;
            if (skipped)
                continue;
            if (!best) {
                best = c;
                continue;
            }
            /* pages/weight > best_pages/best_weight, weight 0 as infinite */
            uint64_t w = tm_load(c->weight), bw = tm_load(best->weight);
            uint64_t bp = tm_load(best->eph_pages);
            if ((unsigned __int128)pages * bw > (unsigned __int128)bp * w)
                best = c;
        }
        if (!best)
            break;
        done = try_client(t, best);
        skip[pass] = best;
    }
    pthread_rwlock_unlock(&t->clients_lock);
    return done;
}
