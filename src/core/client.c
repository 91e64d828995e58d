/* SPDX-License-Identifier: MIT */
/*
 * client.c - clients: open, close, the handle check every call makes, and
 * the administrator's controls (freeze, thaw, weight, cap, compression,
 * shared-pool authorisation).
 *
 * A handle stays valid memory until tmem_close(): tmem_client_close() frees
 * the client's pools and stores and turns the handle into a tombstone, so a
 * late call on a closed handle gets -ENODEV (and is counted) instead of a
 * use after free.  Client ids count up and are never reused.
 */
#include "internal.h"

int tm_client_enter(struct tmem_client *c)
{
    if (!c)
        return -EINVAL;
    uint64_t m = atomic_load(&c->magic);
    if (m != TM_CLIENT_MAGIC) {
        if (m == TM_CLIENT_DEAD)
            tm_inc(c->t->st.bad_closed);
        return m == TM_CLIENT_DEAD ? -ENODEV : -EINVAL;
    }
    tm_brlock_read(&c->lock);
    if (c->dead) {
        tm_brlock_read_unlock(&c->lock);
        tm_inc(c->t->st.bad_closed);
        return -ENODEV;
    }
    return 0;
}

void tm_client_leave(struct tmem_client *c) { tm_brlock_read_unlock(&c->lock); }

struct tmem_client *tm_client_find_locked(tmem_t *t, uint32_t id)
{
    for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next)
        if (c->id == id)
            return c;
    return NULL;
}

bool tm_client_authorised_locked(struct tmem_client *c, tmem_uuid_t uuid)
{
    for (uint32_t i = 0; i < c->nauth; i++)
        if (c->auth[i].lo == uuid.lo && c->auth[i].hi == uuid.hi)
            return true;
    return false;
}

tmem_client_t *tmem_client_open(tmem_t *t, const char *name)
{
    if (!t) {
        errno = EINVAL;
        return NULL;
    }
    /* aligned: its hot lines are its own, not shared with a neighbour in the heap */
    struct tmem_client *c = tm_meta_calloc_reserved(t, sizeof(*c), 64);
    if (!c) {
        errno = ENOMEM;
        return NULL;
    }
    c->t = t;
    tm_brlock_init(&c->lock);      /* writers are not starved by calls */
    /* The name appears in tmem-list lines: keep it to printable characters
     * that are not the list's separators (',' ':' '='), so that a client
     * cannot forge lines or keys. */
    snprintf(c->name, sizeof(c->name), "%s", name ? name : "");
    for (char *q = c->name; *q; q++)
        if ((unsigned char)*q < 0x21 || (unsigned char)*q > 0x7e || *q == ',' || *q == ':' ||
            *q == '=')
            *q = '_';
    atomic_init(&c->weight, t->cfg.default_weight);
    atomic_init(&c->cap, t->cfg.default_cap);
    atomic_init(&c->compress, t->cfg.compress);
    pthread_rwlock_wrlock(&t->clients_lock);
    if (t->arena.ops) {         /* an arena engine serves one client */
        if (t->arena_client) {
            pthread_rwlock_unlock(&t->clients_lock);
            tm_store_free(t, c->eph_store);
            tm_store_free(t, c->pers_store);
            tm_brlock_destroy(&c->lock);
            tm_meta_free(t, c);
            errno = EBUSY;
            return NULL;
        }
        t->arena_client = c;
    }
    c->id = t->next_id++;
    c->prev = t->clients.prev;
    c->next = &t->clients;
    t->clients.prev->next = c;
    t->clients.prev = c;
    t->nclients++;
    pthread_rwlock_unlock(&t->clients_lock);
    c->head.ops = &tm_engine_ops;
    atomic_store(&c->head.magic, TMEM_HANDLE_MAGIC);
    atomic_store(&c->magic, TM_CLIENT_MAGIC);
    return c;
}

void tm_stats_fold(struct tm_client_stats *into, const struct tm_client_stats *from)
{
    const atomic_u64 *src = (const atomic_u64 *)from;
    atomic_u64 *dst = (atomic_u64 *)into;
    for (size_t i = 0; i < sizeof(*from) / sizeof(atomic_u64); i++)
        tm_add(dst[i], tm_load(src[i]));
}

/* Drops a client's reference to g (clients_lock held): the last one frees
 * it. */
static void group_put_locked(tmem_t *t, struct tm_group *g)
{
    if (!g || --g->refs > 0)
        return;
    for (struct tm_group **pp = &t->groups; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    tm_meta_free(t, g);
}

void tm_client_close(tmem_client_t *c)
{
    if (!c || atomic_load(&c->magic) != TM_CLIENT_MAGIC)
        return;
    tmem_t *t = c->t;
    tm_brlock_write(&c->lock);
    if (c->dead) {
        tm_brlock_write_unlock(&c->lock);
        return;
    }
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++) {
        if (c->pools[i]) {
            struct tm_pool *p = c->pools[i];
            c->pools[i] = NULL;
            tm_pool_leave(t, c, p);
        }
    }
    c->dead = true;
    atomic_store(&c->magic, TM_CLIENT_DEAD);
    pthread_rwlock_wrlock(&t->clients_lock);
    if (t->arena_client == c)
        t->arena_client = NULL;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->next = t->tombstones;
    c->prev = NULL;
    t->tombstones = c;
    t->nclients--;
    group_put_locked(t, c->group);
    c->group = NULL;
    tm_stats_fold(&t->retired, &c->st);
    pthread_rwlock_unlock(&t->clients_lock);
    tm_store_free(t, c->eph_store);
    tm_store_free(t, c->pers_store);
    c->eph_store = c->pers_store = NULL;
    tm_brlock_write_unlock(&c->lock);
}

void tm_client_release(tmem_client_t *c)
{
    if (!c)
        return;
    uint64_t m = atomic_load(&c->magic);
    if (m != TM_CLIENT_MAGIC && m != TM_CLIENT_DEAD)
        return;
    tmem_t *t = c->t;
    tm_client_close(c);
    /* a save that found c before the close holds save_freezes (save.c), a
     * statistics or check walk holds pins (tm_clients_snapshot) */
    while (atomic_load(&c->save_freezes) > 0 || atomic_load(&c->pins) > 0)
        sched_yield();
    pthread_rwlock_wrlock(&t->clients_lock);
    struct tmem_client **pp = &t->tombstones;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    pthread_rwlock_unlock(&t->clients_lock);
    atomic_store(&c->magic, 0);
    atomic_store(&c->head.magic, 0);
    tm_brlock_destroy(&c->lock);
    tm_meta_free(t, c);
}

uint32_t tm_client_id(const tmem_client_t *c) { return c->id; }

const struct tmem_client_ops tm_engine_ops = {
    .name = "engine",
    .new_pool = tm_new_pool,
    .destroy_pool = tm_destroy_pool,
    .pool_is_shared = tm_pool_is_shared,
    .put_page = tm_put_page,
    .get_page = tm_get_page,
    .flush_page = tm_flush_page,
    .flush_object = tm_flush_object,
    .put_pages = tm_put_pages,
    .get_pages = tm_get_pages,
    .flush_pages = tm_flush_pages,
    .close = tm_client_close,
    .release = tm_client_release,
    .id = tm_client_id,
    .is_remote = 0,
    .restore = tm_client_restore,
};

/* ------------------------------------------------------------------------
 * Administration
 * ---------------------------------------------------------------------- */
typedef int (*client_fn)(struct tmem_client *c, uint64_t arg, tmem_uuid_t uuid);

/* Applies fn to one client (or all, if id is TMEM_CLIENT_ALL and all_ok). */
static int admin_apply(tmem_t *t, uint32_t id, bool all_ok, client_fn fn, uint64_t arg,
                       tmem_uuid_t uuid)
{
    if (!t)
        return -EINVAL;
    int rc = 0;
    pthread_rwlock_wrlock(&t->clients_lock);
    if (id == TMEM_CLIENT_ALL) {
        if (!all_ok)
            rc = -EINVAL;
        for (struct tmem_client *c = t->clients.next; all_ok && c != &t->clients; c = c->next)
            if ((rc = fn(c, arg, uuid)) != 0)
                break;
    } else {
        struct tmem_client *c = tm_client_find_locked(t, id);
        rc = c ? fn(c, arg, uuid) : -ENOENT;
    }
    pthread_rwlock_unlock(&t->clients_lock);
    return rc;
}

static int do_freeze(struct tmem_client *c, uint64_t on, tmem_uuid_t u)
{
    (void)u;
    atomic_store(&c->frozen, (int)on);
    return 0;
}

static int do_weight(struct tmem_client *c, uint64_t w, tmem_uuid_t u)
{
    (void)u;
    atomic_store(&c->weight, (uint32_t)w);
    return 0;
}

static int do_cap(struct tmem_client *c, uint64_t cap, tmem_uuid_t u)
{
    (void)u;
    atomic_store(&c->cap, cap);
    return 0;
}

static int do_compress(struct tmem_client *c, uint64_t codec, tmem_uuid_t u)
{
    (void)u;
    atomic_store(&c->compress, (int)codec);
    return 0;
}

static int do_auth(struct tmem_client *c, uint64_t allow, tmem_uuid_t uuid)
{
    for (uint32_t i = 0; i < c->nauth; i++) {
        if (c->auth[i].lo == uuid.lo && c->auth[i].hi == uuid.hi) {
            if (!allow)
                c->auth[i] = c->auth[--c->nauth];
            return 0;
        }
    }
    if (!allow)
        return 0;
    if (c->nauth == TM_MAX_AUTH)
        return -ENOSPC;
    c->auth[c->nauth++] = uuid;
    return 0;
}

static const tmem_uuid_t no_uuid;

int tmem_admin_freeze(tmem_t *t, uint32_t id) { return admin_apply(t, id, true, do_freeze, 1, no_uuid); }
int tmem_admin_thaw(tmem_t *t, uint32_t id) { return admin_apply(t, id, true, do_freeze, 0, no_uuid); }

int tmem_admin_set_weight(tmem_t *t, uint32_t id, uint32_t weight)
{
    if (weight > TMEM_WEIGHT_MAX)
        return -EINVAL;
    return admin_apply(t, id, true, do_weight, weight, no_uuid);
}

int tmem_admin_set_cap(tmem_t *t, uint32_t id, uint64_t pages)
{
    if (pages > TMEM_CAP_MAX)
        return -EINVAL;
    return admin_apply(t, id, true, do_cap, pages, no_uuid);
}

/* The group id (clients_lock held); if missing, *spare (allocated before
 * the lock: an allocation may evict, which takes clients_lock) becomes it
 * and *spare is NULL. */
static struct tm_group *group_find_locked(tmem_t *t, uint32_t id, struct tm_group **spare)
{
    for (struct tm_group *g = t->groups; g; g = g->next)
        if (g->id == id)
            return g;
    struct tm_group *g = spare ? *spare : NULL;
    if (g) {
        *spare = NULL;
        g->id = id;
        g->next = t->groups;
        t->groups = g;
    }
    return g;
}

int tmem_admin_set_group(tmem_t *t, uint32_t id, uint32_t group)
{
    if (!t || id == TMEM_CLIENT_ALL)
        return -EINVAL;
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client *c = tm_client_find_locked(t, id);
    if (c)
        atomic_fetch_add(&c->pins, 1);      /* the client stays while we lock it */
    pthread_rwlock_unlock(&t->clients_lock);
    if (!c)
        return -ENOENT;
    /* a group's few bytes are never refused for lack of page memory: a
     * client joins its group as it opens */
    struct tm_group *spare = group ? tm_meta_calloc_reserved(t, sizeof(*spare), 8) : NULL;
    /* the client's write lock: no call of it runs, so its persistent
     * count holds still while it moves (persistent pools are private: the
     * count changes only under its own lock) */
    tm_brlock_write(&c->lock);
    pthread_rwlock_wrlock(&t->clients_lock);
    int rc = c->dead ? -ENOENT : 0;
    struct tm_group *g = NULL;
    if (rc == 0 && group && !(g = group_find_locked(t, group, &spare)))
        rc = -ENOMEM;
    if (rc == 0 && g != c->group) {
        uint64_t n = tm_load(c->pers_pages);
        if (g) {
            g->refs++;
            tm_add(g->pages, n);
        }
        if (c->group)
            tm_sub(c->group->pages, n);
        group_put_locked(t, c->group);
        c->group = g;
    }
    pthread_rwlock_unlock(&t->clients_lock);
    tm_brlock_write_unlock(&c->lock);
    atomic_fetch_sub(&c->pins, 1);
    tm_meta_free(t, spare);         /* the group was there already */
    return rc;
}

int tmem_admin_set_group_cap(tmem_t *t, uint32_t group, uint64_t pages)
{
    if (!t || !group)
        return -EINVAL;
    pthread_rwlock_wrlock(&t->clients_lock);
    struct tm_group *g = group_find_locked(t, group, NULL);
    if (g)
        atomic_store(&g->cap, pages);
    pthread_rwlock_unlock(&t->clients_lock);
    return g ? 0 : -ENOENT;
}

uint64_t tmem_group_pages(tmem_t *t, uint32_t group)
{
    if (!t)
        return 0;
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tm_group *g = group_find_locked(t, group, NULL);
    uint64_t n = g ? tm_load(g->pages) : 0;
    pthread_rwlock_unlock(&t->clients_lock);
    return n;
}

int tmem_admin_set_compress(tmem_t *t, uint32_t id, int codec)
{
    if (codec < TMEM_COMPRESS_NONE || codec > TMEM_COMPRESS_ZSTD)
        return -EINVAL;
    return admin_apply(t, id, true, do_compress, (uint64_t)codec, no_uuid);
}

int tmem_admin_shared_auth(tmem_t *t, uint32_t id, tmem_uuid_t uuid, int allow)
{
    return admin_apply(t, id, false, do_auth, allow ? 1 : 0, uuid);
}

/* ------------------------------------------------------------------------
 * Per-client figures
 * ---------------------------------------------------------------------- */
int tmem_client_info(tmem_t *t, uint32_t id, tmem_client_info_t *out)
{
    if (!t || !out)
        return -EINVAL;
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client *c = tm_client_find_locked(t, id);
    if (!c) {
        pthread_rwlock_unlock(&t->clients_lock);
        return -ENOENT;
    }
    memset(out, 0, sizeof(*out));
    out->id = c->id;
    memcpy(out->name, c->name, sizeof(out->name));
    out->weight = tm_load(c->weight);
    out->cap = tm_load(c->cap);
    out->compress = atomic_load(&c->compress);
    out->frozen = atomic_load(&c->frozen);
    out->ephemeral_pages = tm_client_eph_pages(c);
    out->persistent_pages = tm_load(c->pers_pages);
    out->evicted = tm_load(c->st.evicted);
    out->refused_nomem = tm_load(c->st.refused_nomem);
    out->refused_quota = tm_load(c->st.refused_quota);
    out->refused_frozen = tm_load(c->st.refused_frozen);
    out->compressed_pages = tm_load(c->st.compressed_pages);
    out->compressed_bytes = tm_load(c->st.compressed_bytes);
    out->compress_poor = tm_load(c->st.compress_poor);
    /* pool count needs the client's own lock (taken after clients_lock is
     * dropped: the lock order is client -> clients_lock); the pin keeps c
     * valid memory against tmem_client_release meanwhile. */
    atomic_fetch_add(&c->pins, 1);
    pthread_rwlock_unlock(&t->clients_lock);
    tm_brlock_read(&c->lock);
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++)
        out->nr_pools += c->pools[i] != NULL;
    struct tm_client_stats sum;
    tm_client_totals(c, &sum);
    tm_brlock_read_unlock(&c->lock);
    atomic_fetch_sub(&c->pins, 1);
    out->puts = tm_load(sum.puts);
    out->puts_ok = tm_load(sum.puts_ok);
    out->gets = tm_load(sum.gets);
    out->gets_hit = tm_load(sum.gets_hit);
    out->flushes = tm_load(sum.flushes);
    return 0;
}

size_t tmem_client_ids(tmem_t *t, uint32_t *ids, size_t max)
{
    if (!t)
        return 0;
    size_t n = 0;
    pthread_rwlock_rdlock(&t->clients_lock);
    for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next, n++)
        if (ids && n < max)
            ids[n] = c->id;
    pthread_rwlock_unlock(&t->clients_lock);
    return n;
}

void tm_pool_stats_fold(struct tm_client_stats *into, const struct tm_pool *p)
{
    const struct tm_pool_stats *ps = &p->st;
    tm_add(into->puts, tm_load(ps->puts));
    tm_add(into->puts_ok, tm_load(ps->puts_ok));
    tm_add(into->gets, tm_load(ps->gets));
    tm_add(into->gets_hit, tm_load(ps->gets_hit));
    tm_add(into->flushes, tm_load(ps->flushes));
    tm_add(into->flush_objs, tm_load(ps->flush_objs));
    tm_add(into->dup_replaced, tm_load(ps->dup_replaced));
    tm_add(into->dup_flushed, tm_load(ps->dup_flushed));
    tm_add(into->flushed_pages, tm_load(ps->flushed_pages));
    tm_add(into->dedup_skipped, tm_load(ps->dedup_skipped));
}

void tm_client_totals(struct tmem_client *c, struct tm_client_stats *out)
{
    memset(out, 0, sizeof(*out));
    tm_stats_fold(out, &c->st);
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++)
        if (c->pools[i] && !c->pools[i]->shared)
            tm_pool_stats_fold(out, c->pools[i]);
}

struct tmem_client **tm_clients_snapshot(tmem_t *t, size_t *n)
{
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client **v = malloc((t->nclients + 1) * sizeof(*v));
    size_t k = 0;
    if (v) {
        for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next) {
            atomic_fetch_add(&c->pins, 1);
            v[k++] = c;
        }
    }
    pthread_rwlock_unlock(&t->clients_lock);
    *n = k;
    return v;
}

void tm_clients_unpin(struct tmem_client **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        atomic_fetch_sub(&v[i]->pins, 1);
    free(v);
}
