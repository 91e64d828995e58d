/* SPDX-License-Identifier: MIT */
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
 * Three bits per slot:
 *   map    tmem holds the slot's newest page.  Set only after tmem kept it;
 *          cleared as soon as tmem's copy stops being the newest.  The
 *          caller relies on it.
 *   wt     the swap file has that page too (the store answered 1, in
 *          writethrough mode).  If tmem loses the page, the load says
 *          -ENOENT (read the swap file) instead of -EIO.  It is the mode at
 *          the time of the store that counts, not the mode now.
 *   stale  tmem may hold an old copy behind a clear map bit (a flush that
 *          could not be sent, or a refused put-back).  It is flushed when
 *          the slot is invalidated, and by the rebuild after a reconnection
 *          to a daemon that kept the pool.  It is never read.
 *
 * Reconnection (owned connections): a daemon restarted with its state file
 * hands the reconnecting client its old client, pools at their ids; rebuild()
 * keeps the pool if it is there, else creates a new one (and then every set
 * map bit names a page that is gone: written-through ones are cleared, the
 * others stay set so that their load reports -EIO).  If the new client broke
 * before rebuild could tell, the pool is "unknown" and calls answer
 * -ENOTCONN, which repairs again.
 *
 * Locking: the link's rwlock (link.h).  Calls read the pool id and the area
 * table under its read lock; rebuild, and publishing or detaching an area's
 * bitmaps (init, invalidate_area), hold its write lock.  Calls on one area
 * must not overlap init or invalidate_area of that area (swapon, swapoff),
 * nor calls on the same slot (the caller's page lock).  Bits and counters
 * are atomics.
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

enum { B_MAP, B_WT, B_STALE, B_KINDS };

struct fs_area {
    _Atomic uint64_t *bits[B_KINDS];    /* NULL while off (all three, one allocation) */
    uint64_t slots;
};

struct tmem_frontswap {
    tl_link_t link;
    int pool;                   /* link lock; -1 none (tmem refused one) */
    bool pool_unknown;          /* link lock; rebuild could not tell: repair again */
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
    return fs && type < TMEM_FRONTSWAP_MAX_TYPES && fs->area[type].bits[B_MAP] &&
           offset < fs->area[type].slots;
}

/* Sets (on) or clears bit kind of the slot; returns its old value.  The map
 * bit keeps curr_pages in step. */
static bool set_bit(tmem_frontswap_t *fs, int kind, unsigned type, uint64_t offset, bool on)
{
    _Atomic uint64_t *w = &fs->area[type].bits[kind][offset / 64];
    uint64_t m = 1ull << (offset % 64);
    uint64_t old = on ? atomic_fetch_or(w, m) : atomic_fetch_and(w, ~m);
    bool was = (old & m) != 0;
    if (kind == B_MAP) {
        if (on && !was)
            fs->curr_pages++;
        else if (!on && was)
            fs->curr_pages--;
    }
    return was;
}

static bool test_bit(const tmem_frontswap_t *fs, int kind, unsigned type, uint64_t offset)
{
    return (atomic_load(&fs->area[type].bits[kind][offset / 64]) >> (offset % 64)) & 1;
}

static int new_pool(tmem_client_t *c, unsigned flags)
{
    tmem_uuid_t none = { 0, 0 };
    uint32_t f = TMEM_POOL_PERSIST | (flags & TMEM_FRONTSWAP_KEEP_ON_LOAD ? TMEM_POOL_KEEP_ON_GET : 0);
    return tmem_new_pool(c, none, f);
}

/* The pool is new and empty: written-through pages are on the swap file
 * (their bits are cleared); the others are lost (their bits stay set, so
 * that their loads say -EIO); no stale copy remains.  Write lock held. */
static void pool_lost(tmem_frontswap_t *fs)
{
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES; t++) {
        struct fs_area *a = &fs->area[t];
        if (!a->bits[B_MAP])
            continue;
        for (uint64_t w = 0; w < (a->slots + 63) / 64; w++) {
            uint64_t safe = atomic_load(&a->bits[B_WT][w]);
            uint64_t old = atomic_fetch_and(&a->bits[B_MAP][w], ~safe);
            fs->curr_pages -= (uint64_t)__builtin_popcountll(old & safe);
            atomic_store(&a->bits[B_STALE][w], 0);
        }
    }
}

/* The pool survived (an adopted client): flushes the stale copies behind
 * clear map bits.  Write lock held; stops at a broken connection. */
static void flush_stale(tmem_frontswap_t *fs, tmem_client_t *c)
{
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES; t++) {
        struct fs_area *a = &fs->area[t];
        for (uint64_t w = 0; a->bits[B_MAP] && w < (a->slots + 63) / 64; w++) {
            uint64_t st = atomic_load(&a->bits[B_STALE][w]) & ~atomic_load(&a->bits[B_MAP][w]);
            while (st) {
                uint64_t off = w * 64 + (uint64_t)__builtin_ctzll(st);
                st &= st - 1;
                if (tmem_flush_page(c, (uint32_t)fs->pool, slot_oid(t, off), slot_index(off)) < 0)
                    return;
                set_bit(fs, B_STALE, t, off, false);
            }
        }
    }
}

static void rebuild(void *arg, tmem_client_t *c)
{
    tmem_frontswap_t *fs = arg;
    if (fs->pool >= 0) {
        /* an adopted client (restored from the daemon's state file) still
         * has the pool, with its pages */
        int r = tmem_pool_is_shared(c, (uint32_t)fs->pool);
        if (r == -ENOTCONN) {
            fs->pool_unknown = true;
            return;
        }
        if (r == 0) {
            fs->pool_unknown = false;
            flush_stale(fs, c);
            return;
        }
    }
    int p = new_pool(c, fs->flags);
    if (p == -ENOTCONN) {
        fs->pool_unknown = true;
        return;
    }
    fs->pool_unknown = false;
    fs->pool = p >= 0 ? p : -1;
    pool_lost(fs);
}

static tmem_frontswap_t *fs_alloc(unsigned flags)
{
    if (flags & ~(TMEM_FRONTSWAP_KEEP_ON_LOAD | TMEM_FRONTSWAP_WRITETHROUGH)) {
        errno = EINVAL;
        return NULL;
    }
    tmem_frontswap_t *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return NULL;
    fs->pool = -1;
    fs->flags = flags;
    fs->writethrough = (flags & TMEM_FRONTSWAP_WRITETHROUGH) != 0;
    fs->wait_ms = FS_WAIT_MS;
    return fs;
}

/* fs with its link set up (r: tl_init_*'s result) and its pool made, or
 * NULL with errno. */
static tmem_frontswap_t *fs_finish(tmem_frontswap_t *fs, int r)
{
    if (r) {
        free(fs);
        errno = -r;
        return NULL;
    }
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
    tmem_frontswap_t *fs = fs_alloc(flags);
    return fs ? fs_finish(fs, tl_init_borrowed(&fs->link, c)) : NULL;
}

tmem_frontswap_t *tmem_frontswap_connect(const char *socket_path, const char *name,
                                         unsigned flags)
{
    tmem_frontswap_t *fs = fs_alloc(flags);
    return fs ? fs_finish(fs, tl_init_owned(&fs->link, socket_path, name, FS_RECONNECT_MS))
              : NULL;
}

void tmem_frontswap_close(tmem_frontswap_t *fs)
{
    if (!fs)
        return;
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES; t++)
        if (fs->area[t].bits[B_MAP])
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
    size_t words = (size_t)((slots + 63) / 64);
    _Atomic uint64_t *m = calloc(words * B_KINDS, sizeof(*m));
    if (!m)
        return -ENOMEM;
    int r = 0;
    tl_write_lock(&fs->link);           /* rebuild walks the areas */
    struct fs_area *a = &fs->area[type];
    if (a->bits[B_MAP]) {
        r = -EBUSY;
    } else {
        for (int k = 0; k < B_KINDS; k++)
            a->bits[k] = m + (size_t)k * words;
        a->slots = slots;
        m = NULL;
    }
    tl_write_unlock(&fs->link);
    free((void *)m);
    return r;
}

/* One call on the pool under the read lock. */
enum fs_op { FS_PUT, FS_GET, FS_FLUSH };

static int fs_call(tmem_frontswap_t *fs, enum fs_op op, unsigned type, uint64_t offset,
                   void *page, uint64_t *gen)
{
    tmem_client_t *c = tl_get(&fs->link, gen);
    int r;
    if (!c || fs->pool_unknown) {
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

/* Flushes tmem's copy of a slot whose map bit is clear; if that cannot be
 * done now, the copy is marked stale. */
static void flush_slot(tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    uint64_t gen;
    int r = fs_call(fs, FS_FLUSH, type, offset, NULL, &gen);
    set_bit(fs, B_STALE, type, offset, r < 0);
    if (r == -ENOTCONN)
        tl_repair(&fs->link, gen, 0);
}

int tmem_frontswap_store(tmem_frontswap_t *fs, unsigned type, uint64_t offset, const void *page)
{
    if (!slot_ok(fs, type, offset) || !page)
        return -EINVAL;
    uint64_t gen;
    int r = fs_call(fs, FS_PUT, type, offset, (void *)page, &gen);
    if (r == 0) {
        bool wt = fs->writethrough;
        set_bit(fs, B_WT, type, offset, wt);
        set_bit(fs, B_STALE, type, offset, false);
        set_bit(fs, B_MAP, type, offset, true);
        fs->succ_stores++;
        return wt ? 1 : 0;
    }
    /* refused: if tmem had the slot, its copy is old (or already gone) */
    bool was = set_bit(fs, B_MAP, type, offset, false);
    if (was && r == -ENOTCONN)
        set_bit(fs, B_STALE, type, offset, true);   /* a restarted daemon may keep it */
    else if (was)
        flush_slot(fs, type, offset);
    fs->failed_stores++;
    if (r == -ENOTCONN)
        tl_repair(&fs->link, gen, 0);
    return r;
}

/* n calls of op on the slots offset.. in one batch under the read lock
 * (pages[i] for slot offset + i; only those with want[i], when want). */
static void fs_call_batch(tmem_frontswap_t *fs, enum fs_op op, unsigned type, uint64_t offset,
                          size_t n, void *const *pages, const bool *want, int *results,
                          uint64_t *gen)
{
    tmem_handle_t h[TMEM_FRONTSWAP_MAX_BATCH];
    void *pg[TMEM_FRONTSWAP_MAX_BATCH];
    int res[TMEM_FRONTSWAP_MAX_BATCH];
    size_t at[TMEM_FRONTSWAP_MAX_BATCH], k = 0;
    tmem_client_t *c = tl_get(&fs->link, gen);
    int none = !c || fs->pool_unknown ? -ENOTCONN : fs->pool < 0 ? -ENOMEM : 0;
    for (size_t i = 0; i < n; i++) {
        if (want && !want[i])
            continue;
        results[i] = none;
        if (none)
            continue;
        h[k] = (tmem_handle_t){ (uint32_t)fs->pool, slot_index(offset + i),
                                slot_oid(type, offset + i) };
        pg[k] = pages[i];
        at[k++] = i;
    }
    if (k) {
        if (op == FS_PUT)
            tmem_put_pages(c, k, h, (const void *const *)pg, res);
        else
            tmem_get_pages(c, k, h, pg, res);
        for (size_t j = 0; j < k; j++)
            results[at[j]] = res[j];
    }
    tl_put(&fs->link);
}

int tmem_frontswap_store_pages(tmem_frontswap_t *fs, unsigned type, uint64_t offset,
                               size_t n, const void *const *pages, int *results)
{
    if (!slot_ok(fs, type, offset) || n > TMEM_FRONTSWAP_MAX_BATCH || !results ||
        (n && (!pages || offset + n > fs->area[type].slots)))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!pages[i])
            return -EINVAL;
    uint64_t gen = 0;
    fs_call_batch(fs, FS_PUT, type, offset, n, (void *const *)pages, NULL, results, &gen);
    int stored = 0;
    bool lost_conn = false;
    for (size_t i = 0; i < n; i++) {
        uint64_t o = offset + i;
        int r = results[i];
        if (r == 0) {           /* as tmem_frontswap_store */
            bool wt = fs->writethrough;
            set_bit(fs, B_WT, type, o, wt);
            set_bit(fs, B_STALE, type, o, false);
            set_bit(fs, B_MAP, type, o, true);
            fs->succ_stores++;
            results[i] = wt ? 1 : 0;
            stored++;
            continue;
        }
        bool was = set_bit(fs, B_MAP, type, o, false);
        if (was && r == -ENOTCONN)
            set_bit(fs, B_STALE, type, o, true);
        else if (was)
            flush_slot(fs, type, o);
        fs->failed_stores++;
        lost_conn |= r == -ENOTCONN;
    }
    if (lost_conn)
        tl_repair(&fs->link, gen, 0);
    return stored;
}

static int load_failed(tmem_frontswap_t *fs, unsigned type, uint64_t offset, int r);

int tmem_frontswap_load_pages(tmem_frontswap_t *fs, unsigned type, uint64_t offset, size_t n,
                              void *const *pages, int *results)
{
    if (!slot_ok(fs, type, offset) || n > TMEM_FRONTSWAP_MAX_BATCH || !results ||
        (n && (!pages || offset + n > fs->area[type].slots)))
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!pages[i])
            return -EINVAL;
    bool want[TMEM_FRONTSWAP_MAX_BATCH] = { false };
    for (size_t i = 0; i < n; i++) {
        want[i] = test_bit(fs, B_MAP, type, offset + i);
        if (!want[i])
            results[i] = -ENOENT;
    }
    uint64_t gen = 0;
    fs_call_batch(fs, FS_GET, type, offset, n, pages, want, results, &gen);
    int loaded = 0;
    for (size_t i = 0; i < n; i++) {
        if (!want[i])
            continue;
        uint64_t o = offset + i;
        if (results[i] == -ENOTCONN) {
            /* the single load waits for a restarting daemon (or says what
             * is lost), as a fault on that slot would */
            results[i] = tmem_frontswap_load(fs, type, o, pages[i]);
        } else if (results[i] == 0) {
            if (!(fs->flags & TMEM_FRONTSWAP_KEEP_ON_LOAD))
                set_bit(fs, B_MAP, type, o, false);
            fs->loads++;
        } else {
            results[i] = load_failed(fs, type, o, results[i]);
        }
        loaded += results[i] == 0;
    }
    return loaded;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* The load of a set map bit failed with r: the page is not in tmem. */
static int load_failed(tmem_frontswap_t *fs, unsigned type, uint64_t offset, int r)
{
    fs->failed_loads++;
    set_bit(fs, B_MAP, type, offset, false);
    if (r == -ENOTCONN)
        set_bit(fs, B_STALE, type, offset, true);
    if (test_bit(fs, B_WT, type, offset))
        return -ENOENT;         /* the swap file has it */
    fs->lost++;
    return -EIO;
}

int tmem_frontswap_load(tmem_frontswap_t *fs, unsigned type, uint64_t offset, void *page)
{
    if (!slot_ok(fs, type, offset) || !page)
        return -EINVAL;
    if (!test_bit(fs, B_MAP, type, offset))
        return -ENOENT;
    bool wt = test_bit(fs, B_WT, type, offset);
    uint64_t deadline = tl_now_ns() + (uint64_t)fs->wait_ms * 1000000u;
    for (;;) {
        uint64_t gen;
        int r = fs_call(fs, FS_GET, type, offset, page, &gen);
        if (r == 0) {
            if (!(fs->flags & TMEM_FRONTSWAP_KEEP_ON_LOAD))
                set_bit(fs, B_MAP, type, offset, false);
            fs->loads++;
            return 0;
        }
        if (r == -ENOTCONN && !wt && fs->link.owned && tl_now_ns() < deadline) {
            /* a restarting daemon gives the page back: wait for it */
            if (!tl_repair(&fs->link, gen, 1))
                sleep_ms(FS_RECONNECT_MS / 4);
            continue;
        }
        if (r == -ENOTCONN)
            tl_repair(&fs->link, gen, 0);
        return load_failed(fs, type, offset, r);
    }
}

void tmem_frontswap_invalidate_page(tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    if (!slot_ok(fs, type, offset))
        return;
    bool was = set_bit(fs, B_MAP, type, offset, false);
    if (was || test_bit(fs, B_STALE, type, offset))
        flush_slot(fs, type, offset);
    if (was)
        fs->invalidates++;
}

void tmem_frontswap_invalidate_area(tmem_frontswap_t *fs, unsigned type)
{
    if (!fs || type >= TMEM_FRONTSWAP_MAX_TYPES || !fs->area[type].bits[B_MAP])
        return;
    uint64_t gen;
    tmem_client_t *c = tl_get(&fs->link, &gen);
    if (c && !fs->pool_unknown && fs->pool >= 0)
        for (uint64_t o = 0; o < FS_OBJS_PER_AREA; o++)
            tmem_flush_object(c, (uint32_t)fs->pool, slot_oid(type, o));
    tl_put(&fs->link);
    /* pages a lost connection kept from the flush are never read: a slot's
     * map bit is only set again by a store, which replaces its copy */
    tl_write_lock(&fs->link);           /* rebuild walks the areas */
    struct fs_area *a = &fs->area[type];
    _Atomic uint64_t *m = a->bits[B_MAP];
    for (uint64_t w = 0; w < (a->slots + 63) / 64; w++)
        fs->curr_pages -= (uint64_t)__builtin_popcountll(atomic_load(&m[w]));
    memset(a, 0, sizeof(*a));
    tl_write_unlock(&fs->link);
    free((void *)m);
    fs->invalidates++;
}

int tmem_frontswap_test(tmem_frontswap_t *fs, unsigned type, uint64_t offset)
{
    return slot_ok(fs, type, offset) && test_bit(fs, B_MAP, type, offset);
}

const uint64_t *tmem_frontswap_map(tmem_frontswap_t *fs, unsigned type, uint64_t *slots)
{
    if (!fs || type >= TMEM_FRONTSWAP_MAX_TYPES || !fs->area[type].bits[B_MAP]) {
        if (slots)
            *slots = 0;
        return NULL;
    }
    if (slots)
        *slots = fs->area[type].slots;
    return (const uint64_t *)fs->area[type].bits[B_MAP];
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

/* shrink's take refused a page that an exclusive load took out of tmem:
 * put it back.  If tmem refuses, the page exists nowhere but in our buffer
 * (and in the swap file if it was written through): the map bit is set
 * again without a copy, so that its load reports the loss. */
static int put_back(tmem_frontswap_t *fs, unsigned t, uint64_t off, const void *page)
{
    uint64_t gen;
    int r = fs_call(fs, FS_PUT, t, off, (void *)page, &gen);
    set_bit(fs, B_MAP, t, off, true);
    if (r == 0)
        return 0;
    if (r == -ENOTCONN)
        tl_repair(&fs->link, gen, 0);
    return -EIO;
}

int64_t tmem_frontswap_shrink(tmem_frontswap_t *fs, uint64_t target_pages,
                              tmem_frontswap_take_fn take, void *arg)
{
    if (!fs || !take)
        return -EINVAL;
    static _Thread_local unsigned char page[TMEM_PAGE_SIZE] __attribute__((aligned(64)));
    bool keep = fs->flags & TMEM_FRONTSWAP_KEEP_ON_LOAD;
    int64_t done = 0;
    int err = 0;
    bool lost = false;
    for (unsigned t = 0; t < TMEM_FRONTSWAP_MAX_TYPES && fs->curr_pages > target_pages; t++) {
        struct fs_area *a = &fs->area[t];
        for (uint64_t w = 0; a->bits[B_MAP] && w < (a->slots + 63) / 64; w++) {
            uint64_t bits = atomic_load(&a->bits[B_MAP][w]);
            while (bits && fs->curr_pages > target_pages) {
                uint64_t off = w * 64 + (uint64_t)__builtin_ctzll(bits);
                bits &= bits - 1;
                int r = tmem_frontswap_load(fs, t, off, page);
                if (r == -ENOENT)
                    continue;               /* went meanwhile, or is on the swap file */
                if (r < 0) {
                    err = r;
                    goto out;
                }
                int tr = take(arg, t, off, page);
                if (tr != 0) {
                    /* keep-on-load: tmem still has it; else put it back */
                    err = tr < 0 ? tr : -ECANCELED;
                    if (!keep && put_back(fs, t, off, page) != 0) {
                        fs->lost++;
                        lost = true;
                    }
                    goto out;
                }
                if (keep)
                    tmem_frontswap_invalidate_page(fs, t, off);
                done++;
            }
        }
    }
out:
    if (lost)
        return -EIO;                        /* a page was lost: never hidden by a count */
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
    out->reconnects = tl_reconnects(&fs->link);
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
