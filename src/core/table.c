/* SPDX-License-Identifier: MIT */
/*
 * table.c - hash tables of pointers: index -> page descriptor within an
 * object, and oid -> object within a bucket.
 *
 * Open addressing with linear probing and backward-shift deletion, at most
 * 3/4 full.  A slot (16 bytes) holds the entry's pointer, its key (the page
 * index, or the low half of the object's hash) and a second word: in an
 * object table the high half of the hash, in a page table a hint of the
 * frame that holds the page (a page's home is recomputed from its index).
 * A probe compares slots only and dereferences nothing but the entry it
 * returns; deletion and growth find homes from the slots.  Each avoided
 * dereference is a cache miss on a cold descriptor: on a get of a random
 * page this took the lookup from two or three misses to one.  The frame
 * hint lets a get start loading the page's data while the descriptor's miss
 * is still out, instead of after it.  The cost is about 21 bytes of table
 * per page at the mean load, against 11 for pointers alone.  Object hashes
 * are keyed per engine (tm_oid_hash); page indexes are mixed with the
 * table's seed.  The owning bucket lock guards every table.
 */
#include "internal.h"

/* Page indexes are chosen by clients, often dense (file offsets, swap
 * slots), sometimes hostile: they are mixed with the table's seed (the owning
 * object's keyed hash) by a 64-bit finalizer, so no client can aim many
 * indexes at one probe run without knowing the engine's key. */
static inline uint64_t mix_index(const struct tm_table *tb, uint64_t i)
{
    uint64_t x = i ^ tb->seed;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* The slot that holds entry e; a page's frame hint is given. */
static inline struct tm_slot slot_of(enum tm_table_kind k, void *e, uint32_t frame)
{
    if (k == TM_TABLE_PAGES)
        return (struct tm_slot){ .e = e, .frame = frame, .key = ((const struct tm_pgd *)e)->index };
    uint64_t h = ((const struct tm_obj *)e)->hash;
    return (struct tm_slot){ .e = e, .hi = (uint32_t)(h >> 32), .key = (uint32_t)h };
}

/* The home of a slot's entry: from the hash's high half (objects), or from
 * the page index mixed again (pages, whose second word is the frame hint). */
static inline uint32_t slot_home(const struct tm_table *tb, enum tm_table_kind k,
                                 const struct tm_slot *sl)
{
    uint32_t hi = k == TM_TABLE_PAGES ? (uint32_t)(mix_index(tb, sl->key) >> 32) : sl->hi;
    return hi & (tb->cap - 1);
}

/* The slot of (key, oid), or NULL.  key: the page index (PAGES) or the oid
 * hash (OBJS, with oid). */
static struct tm_slot *find_slot(const struct tm_table *tb, enum tm_table_kind k, uint64_t key,
                                 const tmem_oid_t *oid)
{
    if (tb->count == 0)
        return NULL;
    uint64_t h = k == TM_TABLE_PAGES ? mix_index(tb, key) : key;
    uint32_t hi = (uint32_t)(h >> 32), lo = (uint32_t)(k == TM_TABLE_PAGES ? key : h);
    for (uint32_t i = hi & (tb->cap - 1);; i = (i + 1) & (tb->cap - 1)) {
        struct tm_slot *sl = &tb->slots[i];
        if (!sl->e)
            return NULL;
        if (sl->key != lo)
            continue;
        if (k == TM_TABLE_PAGES)
            return sl;              /* the key is the index itself */
        if (sl->hi != hi)
            continue;
        const struct tm_obj *o = sl->e;
        /* its inline page slots, on the next line: their miss overlaps the
         * miss on the oid's (a small object's page is found there) */
        __builtin_prefetch(o->first);
        if (o->oid.oid[0] == oid->oid[0] && o->oid.oid[1] == oid->oid[1] &&
            o->oid.oid[2] == oid->oid[2])
            return sl;
    }
}

void *tm_table_find(const struct tm_table *tb, enum tm_table_kind k, uint64_t key,
                    const tmem_oid_t *oid)
{
    const struct tm_slot *sl = find_slot(tb, k, key, oid);
    return sl ? sl->e : NULL;
}

void *tm_table_find_page(const struct tm_table *tb, uint32_t index, uint32_t *frame)
{
    const struct tm_slot *sl = find_slot(tb, TM_TABLE_PAGES, index, NULL);
    *frame = sl ? sl->frame : 0;
    return sl ? sl->e : NULL;
}

void tm_table_renew_hint(const tmem_t *t, struct tm_table *tb, const struct tm_pgd *pgd)
{
    struct tm_slot *sl = find_slot(tb, TM_TABLE_PAGES, pgd->index, NULL);
    tm_assert(sl && sl->e == pgd);
    sl->frame = tm_frame_hint(t, &pgd->loc);
}

static void place_slot(struct tm_table *tb, enum tm_table_kind k, struct tm_slot sl)
{
    uint32_t i = slot_home(tb, k, &sl);
    while (tb->slots[i].e)
        i = (i + 1) & (tb->cap - 1);
    tb->slots[i] = sl;
}

uint32_t tm_table_grow_cap(const struct tm_table *tb)
{
    if ((uint64_t)(tb->count + 1) * 4 <= (uint64_t)tb->cap * 3)
        return 0;
    return tb->cap ? tb->cap * 2 : 4;
}

/* Slots kept inline, right after the table (an object's first ones,
 * types.h), belong to the enclosing allocation. */
static inline bool slots_inline(const struct tm_table *tb)
{
    return tb->slots == (const struct tm_slot *)(tb + 1);
}

void tm_table_init_inline(struct tm_table *tb, uint32_t cap, uint64_t seed)
{
    tb->slots = (struct tm_slot *)(tb + 1);
    memset(tb->slots, 0, cap * sizeof(*tb->slots));
    tb->cap = cap;
    tb->count = 0;
    tb->seed = seed;
}

void tm_table_grow_into(tmem_t *t, struct tm_table *tb, enum tm_table_kind k,
                        struct tm_slot *slots, uint32_t cap)
{
    struct tm_table old = *tb;
    bool was_inline = slots_inline(tb);
    memset(slots, 0, cap * sizeof(*slots));
    tb->slots = slots;
    tb->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i].e)
            place_slot(tb, k, old.slots[i]);
    if (!was_inline)
        tm_meta_free(t, old.slots);
}

int tm_table_insert(tmem_t *t, struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t ncap = tm_table_grow_cap(tb);
    if (ncap) {
        struct tm_slot *ns = tm_meta_alloc(t, ncap * sizeof(*ns), false);
        if (!ns)
            return -ENOMEM;
        tm_table_grow_into(t, tb, k, ns, ncap);
    }
    uint32_t frame = k == TM_TABLE_PAGES ? tm_frame_hint(t, &((struct tm_pgd *)e)->loc) : 0;
    place_slot(tb, k, slot_of(k, e, frame));
    tb->count++;
    return 0;
}

void tm_table_remove(struct tm_table *tb, enum tm_table_kind k, void *e)
{
    struct tm_slot want = slot_of(k, e, 0);
    uint32_t mask = tb->cap - 1, i = slot_home(tb, k, &want);
    while (tb->slots[i].e != e) {
        tm_assert(tb->slots[i].e != NULL);
        i = (i + 1) & mask;
    }
    /* backward shift: pull later entries of the probe run into the hole */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; tb->slots[j].e; j = (j + 1) & mask) {
        uint32_t hj = slot_home(tb, k, &tb->slots[j]);
        /* move j into the hole unless its home lies cyclically in (hole, j] */
        bool stays = (hole <= j) ? (hole < hj && hj <= j) : (hole < hj || hj <= j);
        if (!stays) {
            tb->slots[hole] = tb->slots[j];
            hole = j;
        }
    }
    tb->slots[hole] = (struct tm_slot){ .e = NULL };
    tb->count--;
}

void tm_table_free(tmem_t *t, struct tm_table *tb)
{
    if (!slots_inline(tb))
        tm_meta_free(t, tb->slots);
    tb->slots = NULL;
    tb->cap = tb->count = 0;
}
