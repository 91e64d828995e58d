/* SPDX-License-Identifier: MIT */
/*
 * engine.c - the engine's lifecycle and the host's side of the API: the
 * limit, freeable pages, eviction and relinquishing on demand (seed 004).
 */
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define TM_DEFAULT_MAX_BYTES (256ull << 20)
/* The reservation of address space: four times the initial limit, at least
 * 1 GiB.  tmem_set_max_bytes beyond it is held to it. */
#define TM_RESERVE_FACTOR 4u
#define TM_RESERVE_MIN (1ull << 30)

void tmem_config_init(tmem_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_bytes = TM_DEFAULT_MAX_BYTES;
    cfg->compress = TMEM_COMPRESS_LZ4;
    cfg->zstd_level = 1;
    cfg->compress_max = 3584;
    cfg->dedup = 1;
    cfg->dedup_across_clients = 0;
    cfg->shared_auth_required = 1;
    cfg->default_weight = 100;
    cfg->default_cap = 0;
}

_Noreturn void tm_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "tmem: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}

tmem_t *tmem_open(const tmem_config_t *cfg)
{
    return tm_open(cfg, NULL);
}

tmem_t *tm_open(const tmem_config_t *cfg, const tmem_arena_t *arena)
{
    tmem_config_t def;
    if (!cfg) {
        tmem_config_init(&def);
        cfg = &def;
    }
    if (arena) {            /* the owner's grants are the limit */
        def = *cfg;
        def.max_bytes = TM_ARENA_NO_LIMIT;
        cfg = &def;
    }
    if (cfg->compress < TMEM_COMPRESS_NONE || cfg->compress > TMEM_COMPRESS_ZSTD ||
        cfg->compress_max == 0 || cfg->compress_max >= TMEM_PAGE_SIZE ||
        cfg->max_bytes < TMEM_PAGE_SIZE || cfg->zstd_level < -7 || cfg->zstd_level > 22 ||
        cfg->default_weight > TMEM_WEIGHT_MAX || cfg->default_cap > TMEM_CAP_MAX) {
        errno = EINVAL;
        return NULL;
    }
    /* aligned: the engine keeps hot counters on cache lines of their own */
    tmem_t *t = aligned_alloc(_Alignof(tmem_t), (sizeof(*t) + _Alignof(tmem_t) - 1) /
                                                    _Alignof(tmem_t) * _Alignof(tmem_t));
    if (!t) {
        errno = ENOMEM;
        return NULL;
    }
    memset(t, 0, sizeof(*t));
    t->cfg = *cfg;
    atomic_init(&t->max_bytes, cfg->max_bytes);
    clock_gettime(CLOCK_MONOTONIC, &t->t0);
    pthread_rwlock_init(&t->clients_lock, NULL);
    t->clients.next = t->clients.prev = &t->clients;
    t->next_id = 1;
    if (getrandom(&t->hash_key, sizeof(t->hash_key), GRND_NONBLOCK) != sizeof(t->hash_key)) {
        struct timespec ts;     /* no entropy yet (early boot): still unpredictable enough */
        clock_gettime(CLOCK_REALTIME, &ts);
        t->hash_key = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)t ^
                      (uint64_t)ts.tv_sec;
    }
    uint64_t reserve = cfg->max_bytes * TM_RESERVE_FACTOR;
    if (reserve < TM_RESERVE_MIN || reserve / TM_RESERVE_FACTOR != cfg->max_bytes)
        reserve = reserve < TM_RESERVE_MIN ? TM_RESERVE_MIN : UINT64_MAX / 2;
    if (reserve > (1ull << 45))
        reserve = 1ull << 45;
    uint64_t eph = reserve, pers = reserve;
    if (arena) {
        t->arena = *arena;
        eph = arena->bytes[TMEM_ARENA_EPHEMERAL];
        pers = arena->bytes[TMEM_ARENA_PERSISTENT];
    }
    tm_slab_init(t);
    int rc = tm_frames_init(t, eph, pers);
    if (rc != 0) {
        tm_slab_fini(t);
        pthread_rwlock_destroy(&t->clients_lock);
        free(t);
        errno = -rc;
        return NULL;
    }
    if (cfg->dedup_across_clients) {
        t->global_eph = tm_store_new(t, false);
        t->global_pers = tm_store_new(t, true);
        if (!t->global_eph || !t->global_pers)
            goto fail;
    }
    return t;
fail:
    tm_store_free(t, t->global_eph);
    tm_store_free(t, t->global_pers);
    tm_slab_fini(t);
    tm_frames_fini(t);
    pthread_rwlock_destroy(&t->clients_lock);
    free(t);
    errno = ENOMEM;
    return NULL;
}

void tmem_close(tmem_t *t)
{
    if (!t)
        return;
    while (t->clients.next != &t->clients)
        tm_client_close(t->clients.next);
    while (t->tombstones) {
        struct tmem_client *c = t->tombstones;
        t->tombstones = c->next;
        tm_brlock_destroy(&c->lock);
        tm_meta_free(t, c);
    }
    tm_store_free(t, t->global_eph);
    tm_store_free(t, t->global_pers);
    tm_slab_fini(t);
    tm_frames_fini(t);
    pthread_rwlock_destroy(&t->clients_lock);
    free(t);
}

/* ------------------------------------------------------------------------
 * The host's side
 * ---------------------------------------------------------------------- */
int tmem_set_max_bytes(tmem_t *t, uint64_t max_bytes)
{
    if (!t || max_bytes < TMEM_PAGE_SIZE)
        return -EINVAL;
    if (t->arena.ops)
        return -EOPNOTSUPP;     /* its owner's grants are its limit */
    /* each set's reservation holds the whole limit */
    uint64_t cap = (uint64_t)t->frames[TMEM_ARENA_EPHEMERAL].nchunks * TM_CHUNK_BYTES;
    if (max_bytes > cap)
        max_bytes = cap;
    atomic_store(&t->max_bytes, max_bytes);
    while (!tm_fit_by_releasing(t, 0))
        if (!tm_evict_one(t, NULL))
            return -ENOMEM;
    return 0;
}

size_t tmem_freeable_pages(tmem_t *t)
{
    if (!t)
        return 0;
    uint64_t n;
    tm_frames_count(t, &n, NULL, NULL);
    pthread_rwlock_rdlock(&t->clients_lock);
    for (struct tmem_client *c = t->clients.next; c != &t->clients; c = c->next) {
        struct tm_store *s = c->eph_store;
        if (s)
            n += tm_store_count(s, TM_SC_WHOLE) + tm_zheap_frames(&s->heap);
    }
    for (unsigned i = 0; i < TMEM_MAX_SHARED_POOLS; i++) {
        if (t->shared[i]) {
            struct tm_store *s = t->shared[i]->store;
            n += tm_store_count(s, TM_SC_WHOLE) + tm_zheap_frames(&s->heap);
        }
    }
    if (t->global_eph)
        n += tm_store_count(t->global_eph, TM_SC_WHOLE) + tm_zheap_frames(&t->global_eph->heap);
    pthread_rwlock_unlock(&t->clients_lock);
    return (size_t)n;
}

size_t tmem_evict_npages(tmem_t *t, size_t npages)
{
    if (!t)
        return 0;
    uint64_t start, now, relinq = tm_load(t->st.relinquished);
    tm_frames_count(t, &start, NULL, NULL);
    /* saturate: npages = SIZE_MAX means "as many as possible" */
    uint64_t target = npages > UINT64_MAX - start ? UINT64_MAX : start + npages;
    /* frames released to the OS meanwhile also count as freed */
    for (;;) {
        tm_frames_count(t, &now, NULL, NULL);
        now += tm_load(t->st.relinquished) - relinq;
        if (now >= target || !tm_evict_one(t, NULL))
            break;
    }
    tm_frames_count(t, &now, NULL, NULL);
    now += tm_load(t->st.relinquished) - relinq;
    return now > start ? (size_t)(now - start) : 0;
}

size_t tmem_relinquish_pages(tmem_t *t, size_t npages)
{
    return t ? tm_frames_release(t, npages) : 0;
}

void *tmem_relinquish_pageblock(tmem_t *t, unsigned order)
{
    if (!t || order > 9)
        return NULL;
    for (;;) {
        void *p = tm_frames_lend(t, order);
        if (p)
            return p;
        /* evict a batch, then look again; stop when nothing is evictable */
        size_t want = (size_t)1 << order;
        if (want < 16)
            want = 16;
        if (tmem_evict_npages(t, want) == 0)
            return NULL;
    }
}

void *tmem_relinquish_page(tmem_t *t) { return tmem_relinquish_pageblock(t, 0); }

int tmem_return_pages(tmem_t *t, void *p, unsigned order)
{
    if (!t || !p || order > 9)
        return -EINVAL;
    return tm_frames_unlend(t, p, order);
}
