/* SPDX-License-Identifier: MIT */
/*
 * check.c - tmem_check(): walks every structure and counts violations of
 * the invariants written in types.h.  Each violation is reported on stderr
 * and counted; 0 means consistent.  It must run with no other call in
 * flight (it takes the locks one at a time, so a concurrent call could
 * change what it is adding up).
 */
#include <stdarg.h>

#include "internal.h"

#define L(x) ((unsigned long long)(x))

void tm_report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tmem_check: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* What the descriptors of the pools using one store refer to. */
struct refs { uint64_t bodies, indexed, frags, wholes; };

/* Whole frames and zalloc frames of every store, to match the frame counts. */
struct frames_sum { uint64_t whole, zalloc; };

static void add_store(struct frames_sum *f, struct tm_store *s)
{
    if (!s)
        return;
    f->whole += tm_store_count(s, TM_SC_WHOLE);
    f->zalloc += tm_zheap_frames(&s->heap);
}

static int check_loc(const struct tm_loc *l, struct refs *r)
{
    switch (l->kind) {
    case TM_LOC_WORD:
        return 0;
    case TM_LOC_BODY:
        r->bodies++;
        return 0;
    case TM_LOC_FRAG:
        r->frags++;
        if (l->size == 0 || l->size > TMEM_PAGE_SIZE || l->slot >= l->u.span->cls->slots) {
            tm_report("pgd: fragment of %u bytes at slot %u", l->size, l->slot);
            return 1;
        }
        return 0;
    case TM_LOC_WHOLE:
        r->wholes++;
        return 0;
    default:
        tm_report("pgd: unknown location kind %u", l->kind);
        return 1;
    }
}

static int check_pool(tmem_t *t, struct tm_pool *p, struct refs *r, uint64_t *eph, uint64_t *pers)
{
    int bad = 0;
    uint64_t pages = 0, objs = 0, lru = 0;
    for (unsigned i = 0; i < TM_POOL_BUCKETS; i++) {
        struct tm_bucket *b = &p->buckets[i];
        pthread_mutex_lock(&b->lock);
        uint32_t nobj = 0;
        for (uint32_t s = 0; s < b->objs.cap; s++) {
            struct tm_obj *o = tm_table_at(&b->objs, s);
            if (!o)
                continue;
            nobj++;
            if (o->pool != p || tm_pool_bucket(p, o->hash) != b ||
                o->hash != tm_oid_hash(t, &o->oid) ||
                tm_table_find(&b->objs, TM_TABLE_OBJS, o->hash, &o->oid) != o) {
                tm_report("obj: wrong pool, bucket or hash, or not findable");
                bad++;
            }
            if (o->pages.count == 0) {
                tm_report("obj: empty object left in its pool");
                bad++;
            }
            uint32_t npg = 0;
            for (uint32_t k = 0; k < o->pages.cap; k++) {
                struct tm_pgd *pgd = tm_table_at(&o->pages, k);
                if (!pgd)
                    continue;
                npg++;
                if (pgd->obj != o ||
                    tm_table_find(&o->pages, TM_TABLE_PAGES, pgd->index, NULL) != pgd) {
                    tm_report("pgd: index %u has a wrong object or is not findable", pgd->index);
                    bad++;
                }
                if (!p->persistent && (!pgd->next || !pgd->prev)) {
                    tm_report("pgd: ephemeral page %u not on its pool's LRU", pgd->index);
                    bad++;
                }
                bad += check_loc(&pgd->loc, r);
                /* a frame hint names the data's frame (a body keeps the
                 * frame of the page it was made from) */
                uint32_t hint = o->pages.slots[k].frame;
                const struct tm_loc *dl =
                    pgd->loc.kind == TM_LOC_BODY ? &pgd->loc.u.body->loc : &pgd->loc;
                if (hint && hint != tm_frame_hint(t, dl)) {
                    tm_report("pgd: index %u has a stale frame hint", pgd->index);
                    bad++;
                }
                if (pgd->hash) {        /* in the dedup index: direct data only */
                    r->indexed++;
                    if (pgd->loc.kind != TM_LOC_WHOLE && pgd->loc.kind != TM_LOC_FRAG) {
                        tm_report("pgd: index %u is in the dedup index without direct data",
                                  pgd->index);
                        bad++;
                    }
                }
            }
            if (npg != o->pages.count) {
                tm_report("obj: table counts %u pages, holds %u", o->pages.count, npg);
                bad++;
            }
            pages += npg;
        }
        if (nobj != b->objs.count) {
            tm_report("bucket: table counts %u objects, holds %u", b->objs.count, nobj);
            bad++;
        }
        objs += nobj;
        pthread_mutex_unlock(&b->lock);
    }
    pthread_mutex_lock(&p->lru_lock);
    for (struct tm_pgd *g = p->lru.next; g != &p->lru && lru <= pages; g = g->next) {
        if (g->next->prev != g) {
            tm_report("lru: broken links");
            bad++;
            break;
        }
        lru++;
    }
    if (p->persistent ? lru != 0 : (lru != pages || lru != p->lru_count)) {
        tm_report("lru: %llu on the list, %llu counted, pool holds %llu pages", L(lru),
                  L(p->lru_count), L(pages));
        bad++;
    }
    pthread_mutex_unlock(&p->lru_lock);
    if (pages != tm_load(p->npages) || objs != tm_load(p->nobjs)) {
        tm_report("pool: counts %llu pages %llu objects, holds %llu %llu",
                  L(tm_load(p->npages)), L(tm_load(p->nobjs)), L(pages), L(objs));
        bad++;
    }
    if (p->persistent)
        *pers += pages;
    else
        *eph += pages;
    return bad;
}

int tmem_check(tmem_t *t)
{
    if (!t)
        return 1;
    int bad = 0;
    size_t n;
    struct tmem_client **v = tm_clients_snapshot(t, &n);
    if (!v)
        return 1;
    struct refs global_eph = { 0 }, global_pers = { 0 };
    struct frames_sum fs = { 0, 0 };
    uint64_t eph_total = 0, pgds = 0, objs = 0;
    for (size_t i = 0; i < n; i++) {
        struct tmem_client *c = v[i];
        struct refs re = { 0 }, rp = { 0 };
        uint64_t eph = 0, pers = 0;
        tm_brlock_read(&c->lock);
        if (atomic_load(&c->magic) != TM_CLIENT_MAGIC || c->dead) {
            tm_report("client %u: on the open list but closed", c->id);
            bad++;
        }
        for (unsigned k = 0; k < TMEM_MAX_POOLS; k++) {
            struct tm_pool *p = c->pools[k];
            if (!p)
                continue;
            if (p->shared) {
                pthread_mutex_lock(&p->lru_lock);
                bool owner = p->owner == c;
                pthread_mutex_unlock(&p->lru_lock);
                if (!owner)
                    continue;   /* counted once, by its owner */
                struct refs rs = { 0 };
                uint64_t e = 0, q = 0;
                bad += check_pool(t, p, &rs, &e, &q);
                objs += tm_load(p->nobjs);
                eph += e;
                pgds += q;
                bad += tm_store_check(p->store, rs.bodies, rs.indexed, rs.frags, rs.wholes);
                add_store(&fs, p->store);
                continue;
            }
            struct refs *r = p->persistent ? (t->global_pers ? &global_pers : &rp)
                                           : (t->global_eph ? &global_eph : &re);
            bad += check_pool(t, p, r, &eph, &pers);
            objs += tm_load(p->nobjs);
        }
        if (eph != tm_client_eph_pages(c) || pers != tm_load(c->pers_pages)) {
            tm_report("client %u: counts %llu ephemeral %llu persistent pages, pools hold "
                      "%llu %llu", c->id, L(tm_client_eph_pages(c)), L(tm_load(c->pers_pages)),
                      L(eph), L(pers));
            bad++;
        }
        add_store(&fs, c->eph_store);
        add_store(&fs, c->pers_store);
        eph_total += eph;
        pgds += eph + pers;
        if (c->eph_store)
            bad += tm_store_check(c->eph_store, re.bodies, re.indexed, re.frags, re.wholes);
        if (c->pers_store)
            bad += tm_store_check(c->pers_store, rp.bodies, rp.indexed, rp.frags, rp.wholes);
        tm_brlock_read_unlock(&c->lock);
    }
    tm_clients_unpin(v, n);
    if (t->global_eph)
        bad += tm_store_check(t->global_eph, global_eph.bodies, global_eph.indexed, global_eph.frags,
                              global_eph.wholes);
    if (t->global_pers)
        bad += tm_store_check(t->global_pers, global_pers.bodies, global_pers.indexed, global_pers.frags,
                              global_pers.wholes);

    /* shared registry: every sharer lists the pool in a slot */
    pthread_rwlock_rdlock(&t->clients_lock);
    for (unsigned i = 0; i < TMEM_MAX_SHARED_POOLS; i++) {
        struct tm_pool *p = t->shared[i];
        if (!p)
            continue;
        if (p->shared_slot != (int)i || p->nsharers == 0) {
            tm_report("shared pool %u: slot %d, %u sharers", i, p->shared_slot, p->nsharers);
            bad++;
        }
        bool owner_in = false;
        for (uint32_t k = 0; k < p->nsharers; k++)
            owner_in |= p->sharers[k] == p->owner;
        if (!owner_in) {
            tm_report("shared pool %u: its owner is not a sharer", i);
            bad++;
        }
    }
    /* quota groups: each counts its open clients' persistent pages */
    for (struct tm_group *g = t->groups; g; g = g->next) {
        uint64_t sum = 0;
        for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next)
            sum += c->group == g ? tm_load(c->pers_pages) : 0;
        if (sum != tm_load(g->pages)) {
            tm_report("quota group %u: counts %llu persistent pages, its clients %llu", g->id,
                      L(tm_load(g->pages)), L(sum));
            bad++;
        }
    }
    pthread_rwlock_unlock(&t->clients_lock);

    add_store(&fs, t->global_eph);
    add_store(&fs, t->global_pers);
    bad += tm_frames_check(t);
    bad += tm_slab_check(t);
    if (tm_slab_live(t, TM_SLAB_PGD) != pgds || tm_slab_live(t, TM_SLAB_OBJECT) != objs) {
        tm_report("slab: %llu descriptors and %llu objects in use, pools hold %llu pages in "
                  "%llu objects", L(tm_slab_live(t, TM_SLAB_PGD)),
                  L(tm_slab_live(t, TM_SLAB_OBJECT)), L(pgds), L(objs));
        bad++;
    }
    uint64_t nfree, nwhole, nzalloc;
    tm_frames_count(t, &nfree, &nwhole, &nzalloc);
    if (fs.whole != nwhole || fs.zalloc != nzalloc) {
        tm_report("frames: %llu whole and %llu zalloc frames in use, stores hold %llu and %llu",
                  L(nwhole), L(nzalloc), L(fs.whole), L(fs.zalloc));
        bad++;
    }
    int64_t meta = tm_meta_bytes(t);
    if (meta < 0) {
        tm_report("meta_bytes is negative: %lld", (long long)meta);
        bad++;
    }
    /* Over the limit is a violation only while something could still be
     * given back: a limit lowered below the persistent data is a state the
     * host chose (tmem_set_max_bytes said -ENOMEM), not a corruption.
     * Slack: concurrent metadata allocations may each overshoot by one,
     * and clients opened when nothing could be evicted by TM_OPEN_RESERVE. */
    uint64_t held = tm_bytes_held(t), max = tm_load(t->max_bytes);
    if (held > max + 64 * 1024 + TM_OPEN_RESERVE && (nfree > 0 || eph_total > 0)) {
        tm_report("holds %llu bytes, over the limit %llu, with %llu free frames and %llu "
                  "ephemeral pages", L(held), L(max), L(nfree), L(eph_total));
        bad++;
    }
    return bad;
}
