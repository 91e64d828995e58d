/* SPDX-License-Identifier: MIT */
/*
 * stats.c - statistics: tmem_stats_get and the Xen-compatible `tmem-list`
 * text (two-letter keys; docs/internals.md lists the keys we emit).
 *
 * Cumulative counters live per client (and per pool, for the listing);
 * engine totals add up the open clients and the retired counters of closed
 * ones.  Counters are relaxed atomics: exact when the engine is quiescent.
 */
#include <stdarg.h>

#include "internal.h"

struct sbuf { char *buf; size_t size, len; };

static void sb_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sb->len < sb->size ? sb->size - sb->len : 0;
    int n = vsnprintf(room ? sb->buf + sb->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb->len += (size_t)n;
}

#define L(x) ((unsigned long long)(x))

static void store_figures(struct tm_store *s, tmem_stats_t *o)
{
    if (!s)
        return;
    o->zalloc_bytes_used += tm_load(s->heap.bytes_used);
    o->pages_whole += tm_store_count(s, TM_SC_WHOLE);
    o->pages_compressed += tm_load(s->heap.frags);
    o->pages_same_filled += tm_store_count(s, TM_SC_WORDS);
    uint64_t entries, shared;
    tm_store_dedup_counts(s, &entries, &shared);
    o->bodies += entries;
    uint64_t refs = tm_store_count(s, TM_SC_BODY_REFS);
    o->pages_deduped += refs > shared ? refs - shared : 0;
}

int tmem_stats_get(tmem_t *t, tmem_stats_t *o)
{
    if (!t || !o)
        return -EINVAL;
    memset(o, 0, sizeof(*o));
    struct tm_client_stats sum;
    memset(&sum, 0, sizeof(sum));
    tm_stats_fold(&sum, &t->retired);

    size_t n;
    struct tmem_client **v = tm_clients_snapshot(t, &n);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        struct tmem_client *c = v[i];
        tm_brlock_read(&c->lock);
        if (!c->dead) {
            o->clients++;
            o->ephemeral_pages += tm_client_eph_pages(c);
            o->persistent_pages += tm_load(c->pers_pages);
            struct tm_client_stats ct;
            tm_client_totals(c, &ct);
            tm_stats_fold(&sum, &ct);
            store_figures(c->eph_store, o);
            store_figures(c->pers_store, o);
            for (unsigned k = 0; k < TMEM_MAX_POOLS; k++) {
                struct tm_pool *p = c->pools[k];
                bool counts = p != NULL;
                if (p && p->shared) {   /* a shared pool counts once: by its owner */
                    pthread_mutex_lock(&p->lru_lock);
                    counts = p->owner == c;
                    pthread_mutex_unlock(&p->lru_lock);
                }
                if (counts) {
                    o->pools++;
                    o->objects += tm_load(p->nobjs);
                    if (p->shared)
                        store_figures(p->store, o);
                }
            }
        }
        tm_brlock_read_unlock(&c->lock);
    }
    tm_clients_unpin(v, n);
    store_figures(t->global_eph, o);
    store_figures(t->global_pers, o);

    o->bytes_held = tm_bytes_held(t);
    o->max_bytes = tm_load(t->max_bytes);
    o->frames_held = tm_load(t->frames_held);
    tm_frames_count(t, &o->frames_free, &o->frames_whole, &o->frames_zalloc);
    o->frames_lent = tm_load(t->frames[0].nlent) + tm_load(t->frames[1].nlent);
    int64_t meta = tm_meta_bytes(t);
    o->meta_bytes = meta > 0 ? (uint64_t)meta : 0;

    o->puts = tm_load(sum.puts);
    o->puts_ok = tm_load(sum.puts_ok);
    o->gets = tm_load(sum.gets);
    o->gets_hit = tm_load(sum.gets_hit);
    o->flushes = tm_load(sum.flushes);
    o->flush_objects = tm_load(sum.flush_objs);
    o->flushed_pages = tm_load(sum.flushed_pages);
    o->dup_puts_replaced = tm_load(sum.dup_replaced);
    o->dup_puts_flushed = tm_load(sum.dup_flushed);
    o->compress_poor = tm_load(sum.compress_poor);
    o->dedup_hits = tm_load(sum.dedup_hits);
    o->dedup_skipped = tm_load(sum.dedup_skipped);
    o->refused_nomem = tm_load(sum.refused_nomem);
    o->refused_quota = tm_load(sum.refused_quota);
    o->refused_frozen = tm_load(sum.refused_frozen);
    o->evictions = tm_load(t->st.evictions);
    o->evict_attempts = tm_load(t->st.evict_attempts);
    o->evict_skipped_busy = tm_load(t->st.evict_skipped_busy);
    o->relinquished_frames = tm_load(t->st.relinquished);
    o->lent_frames = tm_load(t->st.lent);
    o->alloc_failed = tm_load(t->st.alloc_failed);
    o->bad_pool = tm_load(t->st.bad_pool);
    o->bad_args = tm_load(t->st.bad_args);
    o->bad_closed = tm_load(t->st.bad_closed);
    return 0;
}

/* ------------------------------------------------------------------------
 * tmem-list
 * ---------------------------------------------------------------------- */
static void pool_type(const struct tm_pool *p, char out[3])
{
    out[0] = p->persistent ? 'P' : 'E';
    out[1] = p->shared ? 'S' : 'P';
    out[2] = 0;
}

static void list_pool_long(struct sbuf *sb, const struct tm_pool *p)
{
    const struct tm_pool_stats *s = &p->st;
    sb_printf(sb, ",Pc:%llu,Pm:%llu,Oc:%llu,Om:%llu,ps:%llu,pt:%llu,pd:%llu,pr:%llu,px:%llu,"
              "gs:%llu,gt:%llu,fs:%llu,ft:%llu,os:%llu,ot:%llu",
              L(tm_load(p->npages)), L(tm_load(p->max_pages)), L(tm_load(p->nobjs)),
              L(tm_load(p->max_objs)), L(tm_load(s->puts_ok)), L(tm_load(s->puts)),
              L(tm_load(s->dup_flushed)), L(tm_load(s->dup_replaced)), L(tm_load(s->refused)),
              L(tm_load(s->gets_hit)), L(tm_load(s->gets)), L(tm_load(s->flushes_found)),
              L(tm_load(s->flushes)), L(tm_load(s->flush_objs_found)), L(tm_load(s->flush_objs)));
}

static void list_client(struct sbuf *sb, struct tmem_client *c, int long_form)
{
    uint64_t ge = 0, pp = 0, gp = 0;
    tm_brlock_read(&c->lock);
    if (c->dead) {
        tm_brlock_read_unlock(&c->lock);
        return;
    }
    for (unsigned k = 0; k < TMEM_MAX_POOLS; k++) {
        struct tm_pool *p = c->pools[k];
        if (!p)
            continue;
        if (p->persistent) {
            pp += tm_load(p->st.puts_ok);
            gp += tm_load(p->st.gets_hit);
        } else {
            ge += tm_load(p->st.gets_hit);
        }
    }
    sb_printf(sb, "C=CI:%u,ww:%u,ca:%llu,co:%d,fr:%d,Tc:0,Ge:%llu,Pp:%llu,Gp:%llu", c->id,
              tm_load(c->weight), L(tm_load(c->cap)), atomic_load(&c->compress) != 0,
              atomic_load(&c->frozen), L(ge), L(pp), L(gp));
    if (long_form)
        sb_printf(sb, ",Ec:%llu,Pc:%llu,cp:%llu,cb:%llu,cn:%llu,ev:%llu,rq:%llu,rf:%llu,nm:%s",
                  L(tm_client_eph_pages(c)), L(tm_load(c->pers_pages)),
                  L(tm_load(c->st.compressed_pages)), L(tm_load(c->st.compressed_bytes)),
                  L(tm_load(c->st.compress_poor)), L(tm_load(c->st.evicted)),
                  L(tm_load(c->st.refused_quota)), L(tm_load(c->st.refused_frozen)), c->name);
    sb_printf(sb, "\n");
    for (unsigned k = 0; k < TMEM_MAX_POOLS; k++) {
        struct tm_pool *p = c->pools[k];
        if (!p)
            continue;
        char pt[3];
        pool_type(p, pt);
        sb_printf(sb, "P=CI:%u,PI:%u,PT:%s,U0:%llx,U1:%llx", c->id, k, pt, L(p->uuid.lo),
                  L(p->uuid.hi));
        if (long_form)
            list_pool_long(sb, p);
        sb_printf(sb, "\n");
    }
    tm_brlock_read_unlock(&c->lock);
}

size_t tmem_list(tmem_t *t, uint32_t client_id, int long_form, char *buf, size_t size)
{
    struct sbuf sb = { buf, size, 0 };
    if (size)
        buf[0] = 0;
    if (!t)
        return 0;
    size_t n;
    struct tmem_client **v = tm_clients_snapshot(t, &n);
    if (!v)
        return 0;
    if (client_id == TMEM_CLIENT_ALL) {
        tmem_stats_t s;
        tmem_stats_get(t, &s);
        sb_printf(&sb, "G=Tt:%llu,Te:%llu,Cf:0,Af:%llu,Pf:%llu,Ta:%llu,Lm:0,Et:%llu,Ea:%llu,"
                  "Rt:%llu,Ra:%llu,Rx:0,Fp:0",
                  L(s.puts + s.gets + s.flushes + s.flush_objects),
                  L(s.bad_pool + s.bad_args + s.bad_closed), L(s.alloc_failed), L(s.refused_nomem),
                  L(s.frames_free), L(s.evictions), L(s.evict_attempts), L(s.relinquished_frames),
                  L(s.lent_frames));
        if (long_form)
            sb_printf(&sb, ",Ec:%llu,Pc:%llu,Oc:%llu,Fc:%llu,Sc:%llu,Ep:%llu,Gd:%llu,Gz:%llu,"
                      "Hb:%llu,Mb:%llu,Mx:%llu",
                      L(s.ephemeral_pages), L(s.persistent_pages), L(s.objects), L(s.frames_held),
                      L(s.bodies), L(s.puts_ok), L(s.dedup_hits), L(s.zalloc_bytes_used),
                      L(s.bytes_held), L(s.meta_bytes), L(s.max_bytes));
        sb_printf(&sb, "\n");
        pthread_rwlock_rdlock(&t->clients_lock);
        for (unsigned i = 0; i < TMEM_MAX_SHARED_POOLS; i++) {
            struct tm_pool *p = t->shared[i];
            if (!p)
                continue;
            char pt[3];
            pool_type(p, pt);
            sb_printf(&sb, "S=SI:%u,PT:%s,U0:%llx,U1:%llx", i, pt, L(p->uuid.lo), L(p->uuid.hi));
            for (uint32_t k = 0; k < p->nsharers; k++)
                sb_printf(&sb, ",SC:%u", p->sharers[k]->id);
            if (long_form)
                list_pool_long(&sb, p);
            sb_printf(&sb, "\n");
        }
        pthread_rwlock_unlock(&t->clients_lock);
    }
    for (size_t i = 0; i < n; i++)
        if (client_id == TMEM_CLIENT_ALL || v[i]->id == client_id)
            list_client(&sb, v[i], long_form);
    tm_clients_unpin(v, n);
    sb_printf(&sb, "T=\n");
    return sb.len;
}
