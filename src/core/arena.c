/* SPDX-License-Identifier: MIT */
/*
 * arena.c - an engine over lent memory (arena.h): opening one, giving units
 * back when the owner asks, and the units the owner took by force.
 *
 * Both giving back and taking by force end in the same walk: every page
 * whose data lies in a chosen unit (a whole frame in it, a fragment whose
 * span has a frame in it, a dedup body in it) is dropped, so that the
 * units' frames all come free.  The walk runs with the client's lock held
 * for writing: no call runs meanwhile (a call waits, as it would behind a
 * pool's creation), so no frame moves between caches, no put links a page
 * behind the walk, and no compaction copies a fragment.  An arena engine
 * has one client, so this is one lock.
 *
 * What protects gets before the walk is the revoke epoch (internal.h,
 * tm_arena_epoch_ok): the owner raises it before it takes memory, and a get
 * from an ephemeral pool misses unless it read the epoch last processed
 * both before and after its copy.  The walk then only has to find the
 * pages; it sets epoch_done last, under the same lock.
 */
#include <sched.h>
#include <time.h>

#include "internal.h"

tmem_t *tmem_open_arena(const tmem_config_t *cfg, const tmem_arena_t *arena)
{
    if (!arena || !arena->ops || !arena->ops->attach || !arena->ops->grow ||
        !arena->ops->shrink) {
        errno = EINVAL;
        return NULL;
    }
    tmem_arena_t a = *arena;
    if (!a.unit_frames)
        a.unit_frames = TMEM_UNIT_FRAMES_MAX;
    if (a.unit_frames != 16 && a.unit_frames != 32 && a.unit_frames != 64) {
        errno = EINVAL;
        return NULL;
    }
    for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++) {
        uint64_t b = a.bytes[k];
        if (b < TMEM_ARENA_ALIGN || b % TMEM_ARENA_ALIGN || b > (1ull << 45)) {
            errno = EINVAL;
            return NULL;
        }
    }
    return tm_open(cfg, &a);
}

int tmem_new_pool_at(tmem_client_t *c, uint32_t slot, tmem_uuid_t uuid, uint32_t flags)
{
    const struct tmem_client_head *h = (const struct tmem_client_head *)(const void *)c;
    if (!h || atomic_load(&h->magic) != TMEM_HANDLE_MAGIC)
        return -EINVAL;
    if (h->ops != &tm_engine_ops)
        return -EOPNOTSUPP;
    if (slot >= TMEM_MAX_POOLS)
        return -EINVAL;
    return tm_pool_create(c, (int)slot, uuid, flags);
}

/* ------------------------------------------------------------------------
 * Holding every call off
 * ---------------------------------------------------------------------- */
/* The arena's client, write-locked and pinned, or NULL if it has none. */
static struct tmem_client *hold_client(tmem_t *t)
{
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client *c = t->arena_client;
    if (c)
        atomic_fetch_add(&c->pins, 1);      /* valid memory until unpinned */
    pthread_rwlock_unlock(&t->clients_lock);
    if (c)
        tm_brlock_write(&c->lock);
    return c;
}

static void release_client(struct tmem_client *c)
{
    if (c) {
        tm_brlock_write_unlock(&c->lock);
        atomic_fetch_sub(&c->pins, 1);
    }
}

/* ------------------------------------------------------------------------
 * The walk
 * ---------------------------------------------------------------------- */
struct marks {
    const struct tm_frames *fr;
    uint8_t *bits;              /* one bit per unit of fr */
    size_t nunits;
};

static bool frame_marked(const struct marks *m, const void *f)
{
    const uint8_t *p = f;
    if (!p || p < m->fr->base ||
        p >= m->fr->base + m->nunits * m->fr->unit * (size_t)TMEM_PAGE_SIZE)
        return false;
    uint64_t u = tm_unit_of(m->fr, p);
    return (m->bits[u / 8] >> (u % 8)) & 1;
}

static bool loc_marked(const struct marks *m, const struct tm_loc *loc)
{
    switch (loc->kind) {
    case TM_LOC_WHOLE:
        return frame_marked(m, loc->u.frame);
    case TM_LOC_FRAG: {
        const struct tm_zspan *s = loc->u.span;      /* the whole span goes */
        for (unsigned i = 0; i < s->cls->nframes; i++)
            if (frame_marked(m, s->frames[i]))
                return true;
        return false;
    }
    case TM_LOC_BODY:
        return loc_marked(m, &loc->u.body->loc);
    default:
        return false;
    }
}

/* Drops every page of c's pools of m's kind whose data is in a marked
 * unit; c write-locked.  Returns how many. */
static uint64_t drop_marked(tmem_t *t, struct tmem_client *c, const struct marks *m)
{
    uint64_t dropped = 0;
    size_t cap = 0;
    void **v = NULL;            /* the pages to drop, then the objects emptied */
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++) {
        struct tm_pool *p = c->pools[i];
        if (!p || p->store->heap.kind != m->fr->kind)
            continue;
        for (unsigned bi = 0; bi < TM_POOL_BUCKETS; bi++) {
            struct tm_bucket *b = &p->buckets[bi];
            size_t n = 0;
            pthread_mutex_lock(&b->lock);
            for (uint32_t s = 0; s < b->objs.cap; s++) {
                struct tm_obj *o = tm_table_at(&b->objs, s);
                for (uint32_t k = 0; o && k < o->pages.cap; k++) {
                    struct tm_pgd *pgd = tm_table_at(&o->pages, k);
                    if (!pgd || !loc_marked(m, &pgd->loc))
                        continue;
                    if (n == cap) {
                        size_t nc = cap ? cap * 2 : 256;
                        void **nv = realloc(v, nc * sizeof(*nv));
                        if (!nv)
                            break;  /* what is left stays: its units are not freed */
                        v = nv;
                        cap = nc;
                    }
                    v[n++] = pgd;
                }
            }
            size_t nfreed = 0;      /* v[0..nfreed): objects emptied (nfreed <= k) */
            for (size_t k = 0; k < n; k++) {
                struct tm_obj *fo;
                struct tm_pgd *pgd = v[k];
                tm_pgd_unlink_locked(p, b, pgd, &fo);
                /* the data after the bucket: the order of put's frees
                 * (bucket -> shard -> class -> stripe) */
                tm_pgd_release(t, p, pgd);
                if (fo)
                    v[nfreed++] = fo;
            }
            pthread_mutex_unlock(&b->lock);
            for (size_t k = 0; k < nfreed; k++)
                tm_obj_release(t, p, v[k]);
            dropped += n;
        }
    }
    free(v);
    if (dropped) {
        tm_add(c->st.evicted, dropped);
        tm_add(t->arena_dropped, dropped);
    }
    return dropped;
}

static bool marks_init(struct marks *m, const struct tm_frames *fr)
{
    m->fr = fr;
    m->nunits = tm_units_count(fr);
    m->bits = calloc((m->nunits + 7) / 8, 1);
    return m->bits != NULL;
}

/* Bits are set and cleared atomically: a release reads them (withheld)
 * under the stripe lock of its own unit, which need not be the lock of the
 * other units sharing the byte. */
static void mark(struct marks *m, uint64_t u)
{
    __atomic_fetch_or(&m->bits[u / 8], (uint8_t)(1u << (u % 8)), __ATOMIC_RELAXED);
}

static void unmark(struct marks *m, uint64_t u)
{
    __atomic_fetch_and(&m->bits[u / 8], (uint8_t)~(1u << (u % 8)), __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------------
 * Giving back
 * ---------------------------------------------------------------------- */
struct unit_use { uint64_t unit; int used; };

static int by_use(const void *a, const void *b)
{
    const struct unit_use *x = a, *y = b;
    return x->used != y->used ? (x->used < y->used ? -1 : 1)
                              : (x->unit < y->unit ? -1 : x->unit > y->unit);
}

size_t tmem_arena_shrink(tmem_t *t, int kind, size_t n, uint64_t *units_out)
{
    if (!t || !t->arena.ops || kind < 0 || kind >= (int)TMEM_ARENA_KINDS || n == 0)
        return 0;
    struct tm_frames *fr = &t->frames[kind];
    struct tmem_client *c = hold_client(t);
    size_t done = tm_units_release(fr, n, units_out);       /* free ones first */
    if (done < n && kind == TMEM_ARENA_EPHEMERAL && c && !c->dead) {
        /* the least used units: their pages go, then the units */
        struct marks m;
        size_t held = 0;
        struct unit_use *u = NULL;
        if (marks_init(&m, fr) && (u = malloc(m.nunits * sizeof(*u))) != NULL) {
            for (uint64_t k = 0; k < m.nunits; k++) {
                int used = tm_unit_used(fr, k);
                if (used >= 0)
                    u[held++] = (struct unit_use){ k, used };
            }
            qsort(u, held, sizeof(*u), by_use);
            for (size_t k = 0; k < held && k < n - done; k++)
                mark(&m, u[k].unit);
            drop_marked(t, c, &m);
            done += tm_units_release(fr, n - done, units_out ? units_out + done : NULL);
        }
        free(u);
        free(m.bits);
    }
    release_client(c);
    return done;
}

/* ------------------------------------------------------------------------
 * Taken by force
 * ---------------------------------------------------------------------- */
int tmem_arena_revoked(tmem_t *t, const uint64_t *units, size_t n, uint64_t epoch)
{
    if (!t || !t->arena.ops || (n && !units))
        return -EINVAL;
    struct tm_frames *fr = &t->frames[TMEM_ARENA_EPHEMERAL];
    struct tmem_client *c = hold_client(t);
    struct marks m;
    if (!marks_init(&m, fr)) {
        release_client(c);
        return -ENOMEM;     /* epoch_done stays: gets go on missing, nothing wrong is read */
    }
    /* from its mark until it is dropped, a unit is not given back by a
     * release running meanwhile (tmem_relinquish_pages, an allocation making
     * room): the owner took it.  The mark comes first, then the look under
     * the stripe lock: a release before that look leaves it not held (and
     * cleaned below), one after it sees the mark. */
    atomic_store_explicit(&fr->withheld, m.bits, memory_order_release);
    size_t held = 0;
    for (size_t i = 0; i < n; i++) {
        if (units[i] >= m.nunits)
            continue;
        mark(&m, units[i]);
        if (tm_unit_used(fr, units[i]) >= 0)
            held++;
        else
            unmark(&m, units[i]);
    }
    if (held) {
        tm_frames_flush(fr);
        if (c && !c->dead)
            drop_marked(t, c, &m);
        tm_frames_flush(fr);        /* the dropped pages' frames, back in the maps */
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t u = units[i];
        bool was_held = u < m.nunits && ((m.bits[u / 8] >> (u % 8)) & 1);
        /* a frame of it may be on its way from a cache to the maps, in
         * another thread's flush: then the unit looks used for a moment */
        bool dropped = !was_held;
        for (int tries = 0; !dropped && tries < 1000; tries++) {
            dropped = tm_unit_drop(fr, u);
            if (!dropped) {
                tm_frames_flush(fr);
                for (int k = 0; k < 1000 && tm_load(fr->ntransit) != 0; k++)
                    sched_yield();
            }
        }
        if (!dropped) {
            tm_report("arena: unit %llu still used after its pages were dropped",
                      (unsigned long long)u);
            continue;       /* never handed out again: it stays held */
        }
        if (was_held)
            tm_inc(t->units_revoked);
        if (u < m.nunits && t->arena.ops->cleaned)
            t->arena.ops->cleaned(t->arena.arg, TMEM_ARENA_EPHEMERAL, (size_t)u);
        if (was_held)
            unmark(&m, u);          /* a repeat is not held */
    }
    atomic_store_explicit(&fr->withheld, NULL, memory_order_release);
    tm_frames_quiesce(fr);          /* no release still reads the bits */
    if ((int64_t)(epoch - t->epoch_done) > 0)
        t->epoch_done = epoch;      /* gets may hit again */
    free(m.bits);
    release_client(c);
    return 0;
}

/* ------------------------------------------------------------------------
 * Figures
 * ---------------------------------------------------------------------- */
int tmem_arena_held(tmem_t *t, int kind, uint64_t unit)
{
    if (!t || !t->arena.ops || kind < 0 || kind >= (int)TMEM_ARENA_KINDS)
        return 0;
    struct tm_frames *fr = &t->frames[kind];
    if (unit >= tm_units_count(fr))
        return 0;
    return tm_unit_used(fr, unit) >= 0;     /* under its stripe's lock */
}
int tmem_arena_get_info(tmem_t *t, tmem_arena_info_t *out)
{
    if (!t || !out || !t->arena.ops)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    for (unsigned k = 0; k < TMEM_ARENA_KINDS; k++)
        out->units[k] = tm_units_held(&t->frames[k], &out->free_units[k]);
    out->unit_frames = t->frames[0].unit;
    out->grown = tm_load(t->units_grown);
    out->shrunk = tm_load(t->units_shrunk);
    out->revoked = tm_load(t->units_revoked);
    out->dropped_pages = tm_load(t->arena_dropped);
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client *c = t->arena_client;
    if (c)
        atomic_fetch_add(&c->pins, 1);
    pthread_rwlock_unlock(&t->clients_lock);
    if (c) {
        uint32_t now = tm_now_tick(t), oldest = 0;
        bool any = false;
        tm_brlock_read(&c->lock);
        out->epoch_done = t->epoch_done;
        for (unsigned i = 0; i < TMEM_MAX_POOLS && !c->dead; i++) {
            struct tm_pool *p = c->pools[i];
            if (!p || p->persistent)
                continue;
            pthread_mutex_lock(&p->lru_lock);
            if (p->lru.next != &p->lru) {
                uint32_t age = now - p->lru.next->age;
                if (!any || age > oldest)
                    oldest = age;
                any = true;
            }
            pthread_mutex_unlock(&p->lru_lock);
        }
        tm_brlock_read_unlock(&c->lock);
        atomic_fetch_sub(&c->pins, 1);
        if (any)    /* ticks of 2^TM_TICK_SHIFT ns; at least 1 ms: 0 means none */
            out->oldest_ephemeral_ms = ((uint64_t)oldest << TM_TICK_SHIFT) / 1000000u + 1;
    } else {
        out->epoch_done = t->epoch_done;
    }
    return 0;
}
