/* SPDX-License-Identifier: MIT */
/*
 * save.c - save and restore of one client (live migration).
 *
 * The stream carries the client's settings, its pool definitions at their
 * pool ids, and the data of its persistent pages, uncompressed (the target
 * may use another codec).  Ephemeral pages are never saved.  All integers
 * are little-endian.  Layout:
 *
 *   header  "TMEMSAVE" u32 version(1) u32 flags(bit0 frozen) i32 codec
 *           u32 weight u64 cap u32 name_len char name[name_len <= 63]
 *   pool    u32 'POOL' u32 pool_id u32 pool_flags u64 uuid_lo u64 uuid_hi
 *   page    u32 'PAGE' u64 oid[3] u32 index u8 data[4096]      (persistent pools)
 *           ... then u32 'PEND' closes the pool
 *   end     u32 'END!' u64 npools u64 npages u64 XXH64 of every byte before it
 *
 * Save freezes the client (new puts refused, so the page set can only
 * shrink) with a count of its own, so that saves may overlap and an
 * administrator's freeze or thaw meanwhile is kept; it walks each persistent pool bucket by bucket: it collects the
 * handles under the bucket lock, then reads each page again under the lock
 * with a non-destructive lookup; a page flushed meanwhile is skipped.
 * (Xen's cursor skipped the first page; there is no cursor here.)
 *
 * Restore treats the stream as hostile: every field is checked (the weight
 * and the cap against the ranges every other setter uses, TMEM_WEIGHT_MAX
 * and TMEM_CAP_MAX), the checksum is verified at the end, and on any error
 * the client is left with no pools (all or nothing).
 */
#include <xxhash.h>

#include "internal.h"

#define TAG_POOL 0x4c4f4f50u   /* "POOL" */
#define TAG_PAGE 0x45474150u   /* "PAGE" */
#define TAG_PEND 0x444e4550u   /* "PEND" */
#define TAG_END  0x21444e45u   /* "END!" */
#define SAVE_VERSION 1u
static const char save_magic[8] = { 'T', 'M', 'E', 'M', 'S', 'A', 'V', 'E' };

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the stream is written little-endian");

struct wr {
    tmem_write_fn fn;
    void *arg;
    XXH64_state_t *h;
    int err;
};

static void wr(struct wr *w, const void *p, size_t n)
{
    if (w->err)
        return;
    XXH64_update(w->h, p, n);
    w->err = w->fn(w->arg, p, n);
    if (w->err > 0)
        w->err = -EIO;
}
static void wr32(struct wr *w, uint32_t v) { wr(w, &v, 4); }
static void wr64(struct wr *w, uint64_t v) { wr(w, &v, 8); }

struct handle { tmem_oid_t oid; uint32_t index; };

/* Saves the persistent pages of p; c read-locked. */
static uint64_t save_pool_pages(tmem_t *t, struct tm_pool *p, struct wr *w)
{
    uint64_t saved = 0;
    uint8_t *page = malloc(TMEM_PAGE_SIZE);
    if (!page) {
        w->err = -ENOMEM;
        return 0;
    }
    for (unsigned i = 0; i < TM_POOL_BUCKETS && !w->err; i++) {
        struct tm_bucket *b = &p->buckets[i];
        struct handle *hs = NULL;
        size_t nh = 0;
        /* size the handle list by this bucket's pages (counted, then
         * collected again: the count may only shrink while frozen) */
        size_t want = 0;
        pthread_mutex_lock(&b->lock);
        for (uint32_t s = 0; s < b->objs.cap; s++)
            if (tm_table_at(&b->objs, s))
                want += ((struct tm_obj *)tm_table_at(&b->objs, s))->pages.count;
        pthread_mutex_unlock(&b->lock);
        hs = want ? malloc(want * sizeof(*hs)) : NULL;
        pthread_mutex_lock(&b->lock);
        for (uint32_t s = 0; hs && s < b->objs.cap; s++) {
            struct tm_obj *o = tm_table_at(&b->objs, s);
            for (uint32_t k = 0; o && k < o->pages.cap; k++) {
                struct tm_pgd *pgd = tm_table_at(&o->pages, k);
                if (pgd && nh < want)
                    hs[nh++] = (struct handle){ o->oid, pgd->index };
            }
        }
        pthread_mutex_unlock(&b->lock);
        if (want && !hs) {
            w->err = -ENOMEM;
            break;
        }
        for (size_t k = 0; k < nh && !w->err; k++) {
            pthread_mutex_lock(&b->lock);
            uint64_t h = tm_oid_hash(t, &hs[k].oid);
            struct tm_pgd *pgd = tm_pgd_find_locked(b, h, &hs[k].oid, hs[k].index, NULL, NULL);
            int rc = pgd ? tm_loc_read(p->store, &pgd->loc, page) : -ENOENT;
            pthread_mutex_unlock(&b->lock);
            if (rc == -ENOENT)
                continue;           /* flushed since the handles were collected */
            if (rc) {
                w->err = rc;
                break;
            }
            wr32(w, TAG_PAGE);
            wr(w, hs[k].oid.oid, sizeof(hs[k].oid.oid));
            wr32(w, hs[k].index);
            wr(w, page, TMEM_PAGE_SIZE);
            saved++;
        }
        free(hs);
    }
    free(page);
    return saved;
}

int64_t tmem_client_save(tmem_t *t, uint32_t client_id, tmem_write_fn write, void *arg)
{
    if (!t || !write)
        return -EINVAL;
    struct wr w = { write, arg, XXH64_createState(), 0 };
    if (!w.h)
        return -ENOMEM;
    XXH64_reset(w.h, 0);
    /* save_freezes, raised under clients_lock, also pins c: closed, it
     * stays a tombstone, and tmem_client_release() waits for it to drop */
    pthread_rwlock_rdlock(&t->clients_lock);
    struct tmem_client *c = tm_client_find_locked(t, client_id);
    if (c)
        atomic_fetch_add(&c->save_freezes, 1);
    pthread_rwlock_unlock(&t->clients_lock);
    if (!c) {
        XXH64_freeState(w.h);
        return -ENOENT;
    }
    tm_brlock_read(&c->lock);
    if (c->dead) {
        tm_brlock_read_unlock(&c->lock);
        atomic_fetch_sub(&c->save_freezes, 1);
        XXH64_freeState(w.h);
        return -ENOENT;
    }
    wr(&w, save_magic, sizeof(save_magic));
    wr32(&w, SAVE_VERSION);
    wr32(&w, atomic_load(&c->frozen) ? 1u : 0u);
    wr32(&w, (uint32_t)atomic_load(&c->compress));
    wr32(&w, tm_load(c->weight));
    wr64(&w, tm_load(c->cap));
    uint32_t nlen = (uint32_t)strnlen(c->name, sizeof(c->name) - 1);
    wr32(&w, nlen);
    wr(&w, c->name, nlen);
    uint64_t npools = 0, npages = 0;
    for (unsigned i = 0; i < TMEM_MAX_POOLS && !w.err; i++) {
        struct tm_pool *p = c->pools[i];
        if (!p)
            continue;
        wr32(&w, TAG_POOL);
        wr32(&w, i);
        wr32(&w, p->flags);
        wr64(&w, p->uuid.lo);
        wr64(&w, p->uuid.hi);
        if (p->persistent)
            npages += save_pool_pages(t, p, &w);
        wr32(&w, TAG_PEND);
        npools++;
    }
    tm_brlock_read_unlock(&c->lock);
    atomic_fetch_sub(&c->save_freezes, 1);
    wr32(&w, TAG_END);
    wr64(&w, npools);
    wr64(&w, npages);
    uint64_t sum = XXH64_digest(w.h);
    if (!w.err)
        w.err = write(arg, &sum, 8);
    XXH64_freeState(w.h);
    return w.err ? (int64_t)(w.err > 0 ? -EIO : w.err) : (int64_t)npages;
}

/* ------------------------------------------------------------------------
 * Restore
 * ---------------------------------------------------------------------- */
struct rd {
    tmem_read_fn fn;
    void *arg;
    XXH64_state_t *h;
    int err;
};

static int rd(struct rd *r, void *p, size_t n)
{
    if (r->err)
        return r->err;
    int rc = r->fn(r->arg, p, n);
    if (rc) {
        r->err = rc > 0 ? -EIO : rc;
        return r->err;
    }
    XXH64_update(r->h, p, n);
    return 0;
}

static int rd32(struct rd *r, uint32_t *v) { return rd(r, v, 4); }
static int rd64(struct rd *r, uint64_t *v) { return rd(r, v, 8); }

static void destroy_pools(tmem_client_t *c, const bool *mine)
{
    for (uint32_t i = 0; i < TMEM_MAX_POOLS; i++)
        if (mine[i])
            tmem_destroy_pool(c, i);
}

int64_t tm_client_restore(tmem_client_t *c, tmem_read_fn read, void *arg)
{
    int rc = tm_client_enter(c);
    if (rc)
        return rc;
    bool empty = true;
    for (unsigned i = 0; i < TMEM_MAX_POOLS; i++)
        empty &= c->pools[i] == NULL;
    tm_client_leave(c);
    if (!read)
        return -EINVAL;
    if (!empty || atomic_exchange(&c->restoring, 1))
        return -EBUSY;          /* one restore at a time, into no pools */

    struct rd r = { read, arg, XXH64_createState(), 0 };
    uint8_t *page = malloc(TMEM_PAGE_SIZE);
    if (!r.h || !page) {
        XXH64_freeState(r.h);
        free(page);
        atomic_store(&c->restoring, 0);
        return -ENOMEM;
    }
    XXH64_reset(r.h, 0);
    char magic[8], name[64];
    uint32_t version, flags, codec, weight, nlen, tag;
    uint64_t cap, npools = 0, npages = 0;
    int64_t result = -EPROTO;
    bool pool_used[TMEM_MAX_POOLS] = { false };

    if (rd(&r, magic, 8) || memcmp(magic, save_magic, 8) != 0 || rd32(&r, &version) ||
        version != SAVE_VERSION || rd32(&r, &flags) || (flags & ~1u) || rd32(&r, &codec) ||
        codec > TMEM_COMPRESS_ZSTD || rd32(&r, &weight) || weight > TMEM_WEIGHT_MAX ||
        rd64(&r, &cap) || cap > TMEM_CAP_MAX || rd32(&r, &nlen) || nlen > 63 ||
        rd(&r, name, nlen))
        goto fail;
    for (;;) {
        if (rd32(&r, &tag))
            goto fail;
        if (tag == TAG_END)
            break;
        if (tag != TAG_POOL)
            goto fail;
        uint32_t id, pflags;
        tmem_uuid_t uuid;
        if (rd32(&r, &id) || rd32(&r, &pflags) || rd64(&r, &uuid.lo) || rd64(&r, &uuid.hi) ||
            id >= TMEM_MAX_POOLS || pool_used[id])
            goto fail;
        int prc = tm_pool_create(c, (int)id, uuid, pflags);
        if (prc < 0) {
            result = prc == -EINVAL ? -EPROTO : prc;
            goto fail;
        }
        pool_used[id] = true;
        npools++;
        for (;;) {
            if (rd32(&r, &tag))
                goto fail;
            if (tag == TAG_PEND)
                break;
            tmem_oid_t oid;
            uint32_t index;
            if (tag != TAG_PAGE || !(pflags & TMEM_POOL_PERSIST) ||
                rd(&r, oid.oid, sizeof(oid.oid)) || rd32(&r, &index) || rd(&r, page, TMEM_PAGE_SIZE))
                goto fail;
            int put = tmem_put_page(c, id, oid, index, page);
            if (put != 0) {
                result = put == -ENOSPC ? -EPROTO : put;  /* a duplicate in the stream */
                goto fail;
            }
            npages++;
        }
    }
    uint64_t s_npools, s_npages, sum, expect;
    if (rd64(&r, &s_npools) || rd64(&r, &s_npages))
        goto fail;
    expect = XXH64_digest(r.h);
    if (r.fn(r.arg, &sum, 8) != 0 || sum != expect || s_npools != npools || s_npages != npages)
        goto fail;
    /* settings last: a frozen client would have refused the puts.  A freeze
     * in the stream is applied; a freeze issued meanwhile is not undone.
     * The name in the stream is informational: c keeps the name it has. */
    atomic_store(&c->weight, weight);
    atomic_store(&c->cap, cap);
    atomic_store(&c->compress, (int)codec);
    if (flags & 1u)
        atomic_store(&c->frozen, 1);
    XXH64_freeState(r.h);
    free(page);
    atomic_store(&c->restoring, 0);
    return (int64_t)npages;
fail:
    if (r.err && result == -EPROTO)
        result = r.err;
    destroy_pools(c, pool_used);        /* only the pools this restore made */
    XXH64_freeState(r.h);
    free(page);
    atomic_store(&c->restoring, 0);
    return result;
}
