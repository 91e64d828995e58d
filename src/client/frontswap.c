/*
 * frontswap.c - a fast front for swap areas over tmem
 * (include/tmem/frontswap.h).
 *
 * One private persistent pool holds every area; slot `offset` of area `type`
 * is object (type << 4) | (offset & 15), index offset >> 4 (Linux's tmem
 * driver spread an area over 16 objects the same way).  Exclusive loads are
 * the engine's private-pool gets; KEEP_ON_LOAD creates the pool with
 * TMEM_POOL_KEEP_ON_GET.
 *
 * The bitmap of an area is the truth the caller relies on: a bit is set only
 * after tmem kept the page, and cleared before (or whenever) tmem's copy
 * stops being the newest.  A stale copy tmem may still hold behind a clear
 * bit (a put that completed in a daemon that died before answering) is never
 * read, and goes when the slot is stored or invalidated again.
 *
 * Reconnection (owned connections): a daemon restarted with its state file
 * hands the reconnecting client its old client, pools at their ids; rebuild()
 * keeps the pool if it is there, else creates a new one (and then every set
 * bit names a lost page, unless writethrough: those bits are cleared).
 *
 * Locking: areas are set up and torn down by init/invalidate_area, which the
 * caller must not run concurrently with other calls on that area (swapon,
 * swapoff); bits are atomics; the pool id is read under the link's read lock
 * and changed under its write lock; counters are atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/link.h"
#include "tmem/frontswap.h"

#define FS_RECONNECT_MS   200u
#define FS_WAIT_MS        30000u
#define FS_OBJS_PER_AREA  16u          /* 1 << FS_SWIZ_BITS */
#define FS_SWIZ_BITS      4u

struct fs_area {
    _Atomic uint64_t *map;      /* one bit per slot; NULL while off */
    uint64_t slots;
};

struct tmem_frontswap {
    tl_link_t link;
    int pool;                   /* link lock; -1 none */
    unsigned flags;             /* TMEM_FRONTSWAP_* (immutable but WRITETHROUGH) */
    _Atomic int writethrough;
    _Atomic unsigned wait_ms;
    struct fs_area area[TMEM_FRONTSWAP_MAX_TYPES];
    _Atomic uint64_t curr_pages;
    _Atomic uint64_t loads, succ_stores, failed_stores, invalidates, failed_loads, lost;
};

static inline tmem_oid_t slot_oid(unsigned type, uint64_t offset)
{
    tmem_oid_t o = { { ((uint64_t)type << FS_SWIZ_BITS) | (offset & (FS_OBJS_PER_AREA - 1)), 0, 0 } };
    return o;
}

static inline uint32_t slot_index(uint64_t offset) { return (uint32_t)(offset >> FS_SWIZ_BITS); }

static bool slot_ok(const tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    return fs && type < TMEM_FRONTSWAP_MAX_TYPES && fs->area[type].map &&
           offset < fs->area[type].slots;
}

/* Sets (on) or clears the slot's bit; returns its old value and keeps
 * curr_pages in step. */
static bool set_bit(tmem_frontswap_t *fs, unsigned type, uint64_t offset, bool on)
{
    _Atomic uint64_t *w = &fs->area[type].map[offset / 64];
    uint64_t m = 1ull << (offset % 64);
    uint64_t old = on ? atomic_fetch_or(w, m) : atomic_fetch_and(w, ~m);
    bool was = (old & m) != 0;
    if (on && !was)
        fs->curr_pages++;
    else if (!on && was)
        fs->curr_pages--;
    return was;
}

static bool test_bit(const tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    return (atomic_load(&fs->area[type].map[offset / 64]) >> (offset % 64)) & 1;
}

static int new_pool(tmem_client_t *c, unsigned flags)
{
    tmem_uuid_t none = { 0, 0 };
    uint32_t f = TMEM_POOL_PERSIST | (flags & TMEM_FRONTSWAP_KEEP_ON_LOAD ? TMEM_POOL_KEEP_ON_GET : 0);
    return tmem_new_pool(c, none, f);
}

/* Clears every bit of every area (the pages are on the swap file). */
static void clear_all(tmem_frontswap_t *fs)
{
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES; t++) {
        struct fs_area *a = &fs->area[t];
        if (!a->map)
            continue;
        for (uint64_t w = 0; w < (a->slots + 63) / 64; w++) {
            uint64_t old = atomic_exchange(&a->map[w], 0);
            fs->curr_pages -= (uint64_t)__builtin_popcountll(old);
        }
    }
}

static void rebuild(void *arg, tmem_client_t *c)
{
    tmem_frontswap_t *fs = arg;
    /* an adopted client (restored from the daemon's state file) still has
     * the pool, with its pages */
    if (fs->pool >= 0 && tmem_pool_is_shared(c, (uint32_t)fs->pool) == 0)
        return;
    int p = new_pool(c, fs->flags);
    fs->pool = p >= 0 ? p : -1;
    if (fs->writethrough)
        clear_all(fs);          /* nothing lost: the swap file has every page */
}

static tmem_frontswap_t *fs_alloc(unsigned flags)
{
    tmem_frontswap_t *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return NULL;
    fs->pool = -1;
    fs->flags = flags;
    fs->writethrough = (flags & TMEM_FRONTSWAP_WRITETHROUGH) != 0;
    fs->wait_ms = FS_WAIT_MS;
    return fs;
}

static tmem_frontswap_t *fs_finish(tmem_frontswap_t *fs)
{
    tl_set_rebuild(&fs->link, rebuild, fs);
    int p = new_pool(fs->link.c, fs->flags);
    if (p < 0) {
        tl_destroy(&fs->link);
        free(fs);
        errno = -p;
        return NULL;
    }
    fs->pool = p;
    return fs;
}

tmem_frontswap_t *tmem_frontswap_open(tmem_client_t *c, unsigned flags)
{
    if (flags & ~(TMEM_FRONTSWAP_KEEP_ON_LOAD | TMEM_FRONTSWAP_WRITETHROUGH)) {
        errno = EINVAL;
        return NULL;
    }
    tmem_frontswap_t *fs = fs_alloc(flags);
    if (!fs)
        return NULL;
    int r = tl_init_borrowed(&fs->link, c);
    if (r) {
        free(fs);
        errno = -r;
        return NULL;
    }
    return fs_finish(fs);
}

tmem_frontswap_t *tmem_frontswap_connect(const char *socket_path, const char *name,
                                         unsigned flags)
{
    if (flags & ~(TMEM_FRONTSWAP_KEEP_ON_LOAD | TMEM_FRONTSWAP_WRITETHROUGH)) {
        errno = EINVAL;
        return NULL;
    }
    tmem_frontswap_t *fs = fs_alloc(flags);
    if (!fs)
        return NULL;
    int r = tl_init_owned(&fs->link, socket_path, name, FS_RECONNECT_MS);
    if (r) {
        free(fs);
        errno = -r;
        return NULL;
    }
    return fs_finish(fs);
}

void tmem_frontswap_close(tmem_frontswap_t *fs)
{
    if (!fs)
        return;
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES; t++)
        if (fs->area[t].map)
            tmem_frontswap_invalidate_area(fs, t);
    if (fs->link.c && fs->pool >= 0)
        tmem_destroy_pool(fs->link.c, (uint32_t)fs->pool);
    tl_destroy(&fs->link);
    free(fs);
}

int tmem_frontswap_init(tmem_frontswap_t *fs, unsigned type, uint64_t slots)
{
    if (!fs || type >= TMEM_FRONTSWAP_MAX_TYPES || slots == 0 || slots > TMEM_FRONTSWAP_MAX_SLOTS)
        return -EINVAL;
    if (fs->area[type].map)
        return -EBUSY;
    _Atomic uint64_t *m = calloc((size_t)((slots + 63) / 64), sizeof(*m));
    if (!m)
        return -ENOMEM;
    fs->area[type].slots = slots;
    fs->area[type].map = m;
    return 0;
}

/* One call on the pool under the read lock. */
enum fs_op { FS_PUT, FS_GET, FS_FLUSH };

static int fs_call(tmem_frontswap_t *fs, enum fs_op op, unsigned type, uint64_t offset,
                   void *page, uint64_t *gen)
{
    tmem_client_t *c = tl_get(&fs->link, gen);
    int r;
    if (!c) {
        r = -ENOTCONN;
    } else if (fs->pool < 0) {
        r = -ENOMEM;            /* the new daemon refused a pool: refuse, do not reconnect */
    } else {
        tmem_oid_t oid = slot_oid(type, offset);
        uint32_t idx = slot_index(offset), pool = (uint32_t)fs->pool;
        switch (op) {
        case FS_PUT: r = tmem_put_page(c, pool, oid, idx, page); break;
        case FS_GET: r = tmem_get_page(c, pool, oid, idx, page); break;
        default:     r = tmem_flush_page(c, pool, oid, idx); break;
        }
    }
    tl_put(&fs->link);
    return r;
}

int tmem_frontswap_store(tmem_frontswap_t *fs, unsigned type, uint64_t offset, const void *page)
{
    if (!slot_ok(fs, type, offset) || !page)
        return -EINVAL;
    uint64_t gen;
    int r = fs_call(fs, FS_PUT, type, offset, (void *)page, &gen);
    if (r == 0) {
        set_bit(fs, type, offset, true);
        fs->succ_stores++;
        return fs->writethrough ? 1 : 0;
    }
    /* refused: if tmem had the slot, its copy is stale or already gone */
    if (set_bit(fs, type, offset, false) && r != -ENOTCONN)
        fs_call(fs, FS_FLUSH, type, offset, NULL, &gen);
    fs->failed_stores++;
    if (r == -ENOTCONN)
        tl_repair(&fs->link, gen, 0);
    return r;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int tmem_frontswap_load(tmem_frontswap_t *fs, unsigned type, uint64_t offset, void *page)
{
    if (!slot_ok(fs, type, offset) || !page)
        return -EINVAL;
    if (!test_bit(fs, type, offset))
        return -ENOENT;
    uint64_t deadline = tl_now_ns() + (uint64_t)fs->wait_ms * 1000000u;
    for (;;) {
        uint64_t gen;
        int r = fs_call(fs, FS_GET, type, offset, page, &gen);
        if (r == 0) {
            if (!(fs->flags & TMEM_FRONTSWAP_KEEP_ON_LOAD))
                set_bit(fs, type, offset, false);
            fs->loads++;
            return 0;
        }
        if (r == -ENOTCONN && !fs->writethrough && tl_now_ns() < deadline) {
            /* a restarting daemon gives the page back: wait for it */
            if (!tl_repair(&fs->link, gen, 1))
                sleep_ms(FS_RECONNECT_MS / 4);
            continue;
        }
        if (r == -ENOTCONN)
            tl_repair(&fs->link, gen, 0);
        fs->failed_loads++;
        set_bit(fs, type, offset, false);
        if (fs->writethrough)
            return -ENOENT;     /* the swap file has it */
        fs->lost++;
        return -EIO;
    }
}

void tmem_frontswap_invalidate_page(tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    if (!slot_ok(fs, type, offset))
        return;
    if (set_bit(fs, type, offset, false)) {
        uint64_t gen;
        fs_call(fs, FS_FLUSH, type, offset, NULL, &gen);  /* if it fails, the copy is stale */
        fs->invalidates++;
    }
}

void tmem_frontswap_invalidate_area(tmem_frontswap_t *fs, unsigned type)
{
    if (!fs || type >= TMEM_FRONTSWAP_MAX_TYPES || !fs->area[type].map)
        return;
    uint64_t gen;
    tmem_client_t *c = tl_get(&fs->link, &gen);
    if (c && fs->pool >= 0)
        for (uint64_t o = 0; o < FS_OBJS_PER_AREA; o++)
            tmem_flush_object(c, (uint32_t)fs->pool, slot_oid(type, o));
    tl_put(&fs->link);
    struct fs_area *a = &fs->area[type];
    for (uint64_t w = 0; w < (a->slots + 63) / 64; w++)
        fs->curr_pages -= (uint64_t)__builtin_popcountll(atomic_load(&a->map[w]));
    free((void *)a->map);
    a->map = NULL;
    a->slots = 0;
    fs->invalidates++;
}

int tmem_frontswap_test(tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    return slot_ok(fs, type, offset) && test_bit(fs, type, offset);
}

const uint64_t *tmem_frontswap_map(tmem_frontswap_t *fs, unsigned type, uint64_t *slots)
{
    if (!fs || type >= TMEM_FRONTSWAP_MAX_TYPES || !fs->area[type].map) {
        if (slots)
            *slots = 0;
        return NULL;
    }
    if (slots)
        *slots = fs->area[type].slots;
    return (const uint64_t *)fs->area[type].map;
}

uint64_t tmem_frontswap_curr_pages(tmem_frontswap_t *fs)
{
    return fs ? fs->curr_pages : 0;
}

void tmem_frontswap_writethrough(tmem_frontswap_t *fs, int on)
{
    if (fs)
        fs->writethrough = on != 0;
}

int64_t tmem_frontswap_shrink(tmem_frontswap_t *fs, uint64_t target_pages,
                              tmem_frontswap_take_fn take, void *arg)
{
    if (!fs || !take)
        return -EINVAL;
    static _Thread_local unsigned char page[TMEM_PAGE_SIZE] __attribute__((aligned(64)));
    int64_t done = 0;
    int err = 0;
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES && fs->curr_pages > target_pages; t++) {
        struct fs_area *a = &fs->area[t];
        for (uint64_t w = 0; a->map && w < (a->slots + 63) / 64; w++) {
            uint64_t bits = atomic_load(&a->map[w]);
            while (bits && fs->curr_pages > target_pages) {
                uint64_t off = w * 64 + (uint64_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                int r = tmem_frontswap_load(fs, t, off, page);
                if (r == -ENOENT)
                    continue;               /* went meanwhile */
                if (r < 0) {
                    err = r;
                    goto out;
                }
                int tr = take(arg, t, off, page);
                if (tr != 0) {
                    /* the caller could not take it: put it back */
                    if (tmem_frontswap_store(fs, t, off, page) < 0) {
                        fs->lost++;
                        err = -EIO;
                    } else {
                        err = tr < 0 ? tr : -ECANCELED;
                    }
                    goto out;
                }
                if (fs->flags & TMEM_FRONTSWAP_KEEP_ON_LOAD)
                    tmem_frontswap_invalidate_page(fs, t, off);
                done++;
            }
        }
    }
out:
    return done > 0 || err == 0 ? done : err;
}

void tmem_frontswap_stats(tmem_frontswap_t *fs, tmem_frontswap_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!fs)
        return;
    out->loads = fs->loads;
    out->succ_stores = fs->succ_stores;
    out->failed_stores = fs->failed_stores;
    out->invalidates = fs->invalidates;
    out->failed_loads = fs->failed_loads;
    out->lost = fs->lost;
    out->reconnects = fs->link.reconnects;
    out->curr_pages = fs->curr_pages;
}

tmem_client_t *tmem_frontswap_client(tmem_frontswap_t *fs)
{
    if (!fs)
        return NULL;
    uint64_t gen;
    tmem_client_t *c = tl_get(&fs->link, &gen);
    tl_put(&fs->link);
    return c;
}

void tmem_frontswap_set_reconnect_wait_ms(tmem_frontswap_t *fs, unsigned ms)
{
    if (fs)
        fs->wait_ms = ms;
}
