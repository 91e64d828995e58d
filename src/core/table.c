/*
 * table.c - hash tables of pointers: index -> page descriptor within an
 * object, and oid -> object within a bucket.
 *
 * Open addressing with linear probing and backward-shift deletion, at most
 * 3/4 full.  A slot (16 bytes) holds the entry's pointer, the high half of
 * its hash and its key (the page index, or the low half of the object's
 * hash), so a probe compares slots only and dereferences nothing but the
 * entry it returns; deletion and growth read homes from the slots.  Each
 * avoided dereference is a cache miss on a cold descriptor: on a get of a
 * random page this took the lookup from two or three misses to one.  The
 * cost is about 21 bytes of table per page at the mean load, against 11
 * for pointers alone.  Object hashes are keyed per engine (tm_oid_hash);
 * page indexes are mixed with the table's seed.  The owning bucket lock
 * guards every table.
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

/* The slot that holds entry e (pointer, hash and key). */
static inline struct tm_slot slot_of(const struct tm_table *tb, enum tm_table_kind k, void *e)
{
    if (k == TM_TABLE_PAGES) {
        uint32_t index = ((const struct tm_pgd *)e)->index;
        return (struct tm_slot){ e, (uint32_t)(mix_index(tb, index) >> 32), index };
    }
    uint64_t h = ((const struct tm_obj *)e)->hash;
    return (struct tm_slot){ e, (uint32_t)(h >> 32), (uint32_t)h };
}

static inline uint32_t home(const struct tm_table *tb, uint32_t hi)
{
    return hi & (tb->cap - 1);
}

/* key: the page index (PAGES) or the oid hash (OBJS, with oid). */
void *tm_table_find(const struct tm_table *tb, enum tm_table_kind k, uint64_t key,
                    const tmem_oid_t *oid)
{
    if (tb->count == 0)
        return NULL;
    uint64_t h = k == TM_TABLE_PAGES ? mix_index(tb, key) : key;
    uint32_t hi = (uint32_t)(h >> 32), lo = (uint32_t)(k == TM_TABLE_PAGES ? key : h);
    for (uint32_t i = home(tb, hi);; i = (i + 1) & (tb->cap - 1)) {
        const struct tm_slot *sl = &tb->slots[i];
        if (!sl->e)
            return NULL;
        if (sl->key != lo || sl->hi != hi)
            continue;
        if (k == TM_TABLE_PAGES)
            return sl->e;           /* the key is the index itself */
        const struct tm_obj *o = sl->e;
        if (o->oid.oid[0] == oid->oid[0] && o->oid.oid[1] == oid->oid[1] &&
            o->oid.oid[2] == oid->oid[2])
            return sl->e;
    }
}

static void place_slot(struct tm_table *tb, struct tm_slot sl)
{
    uint32_t i = home(tb, sl.hi);
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

void tm_table_grow_into(tmem_t *t, struct tm_table *tb, struct tm_slot *slots, uint32_t cap)
{
    struct tm_table old = *tb;
    memset(slots, 0, cap * sizeof(*slots));
    tb->slots = slots;
    tb->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i].e)
            place_slot(tb, old.slots[i]);
    tm_meta_free(t, old.slots);
}

int tm_table_insert(tmem_t *t, struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t ncap = tm_table_grow_cap(tb);
    if (ncap) {
        struct tm_slot *ns = tm_meta_alloc(t, ncap * sizeof(*ns), false);
        if (!ns)
            return -ENOMEM;
        tm_table_grow_into(t, tb, ns, ncap);
    }
    place_slot(tb, slot_of(tb, k, e));
    tb->count++;
    return 0;
}

void tm_table_remove(struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t mask = tb->cap - 1, i = home(tb, slot_of(tb, k, e).hi);
    while (tb->slots[i].e != e) {
        tm_assert(tb->slots[i].e != NULL);
        i = (i + 1) & mask;
    }
    /* backward shift: pull later entries of the probe run into the hole */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; tb->slots[j].e; j = (j + 1) & mask) {
        uint32_t hj = home(tb, tb->slots[j].hi);
        /* move j into the hole unless its home lies cyclically in (hole, j] */
        bool stays = (hole <= j) ? (hole < hj && hj <= j) : (hole < hj || hj <= j);
        if (!stays) {
            tb->slots[hole] = tb->slots[j];
            hole = j;
        }
    }
    tb->slots[hole] = (struct tm_slot){ NULL, 0, 0 };
    tb->count--;
}

void tm_table_free(tmem_t *t, struct tm_table *tb)
{
    tm_meta_free(t, tb->slots);
    tb->slots = NULL;
    tb->cap = tb->count = 0;
}
