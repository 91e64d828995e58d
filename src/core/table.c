/*
 * table.c - hash tables of pointers: index -> page descriptor within an
 * object, and oid -> object within a bucket.
 *
 * Open addressing with linear probing and backward-shift deletion, at most
 * 3/4 full; the slots hold only pointers (8 bytes) and the key is read from
 * the entry itself (pgd->index, or obj->hash and obj->oid), which keeps the
 * per-page cost near 11 bytes.  Object hashes are keyed per engine
 * (tm_oid_hash); page indexes are mixed with the table's seed.  The owning
 * bucket lock guards every table.
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

static inline uint64_t entry_hash(const struct tm_table *tb, enum tm_table_kind k, const void *e)
{
    if (k == TM_TABLE_PAGES)
        return mix_index(tb, ((const struct tm_pgd *)e)->index);
    return ((const struct tm_obj *)e)->hash;
}

static inline uint32_t home(const struct tm_table *tb, uint64_t h)
{
    return (uint32_t)(h >> 32) & (tb->cap - 1);
}

static inline bool entry_matches(enum tm_table_kind k, const void *e, uint64_t key,
                                 const tmem_oid_t *oid)
{
    if (k == TM_TABLE_PAGES)
        return ((const struct tm_pgd *)e)->index == (uint32_t)key;
    const struct tm_obj *o = e;
    return o->hash == key && o->oid.oid[0] == oid->oid[0] && o->oid.oid[1] == oid->oid[1] &&
           o->oid.oid[2] == oid->oid[2];
}

/* key: the page index (PAGES) or the oid hash (OBJS, with oid). */
void *tm_table_find(const struct tm_table *tb, enum tm_table_kind k, uint64_t key,
                    const tmem_oid_t *oid)
{
    if (tb->count == 0)
        return NULL;
    uint64_t h = k == TM_TABLE_PAGES ? mix_index(tb, key) : key;
    for (uint32_t i = home(tb, h);; i = (i + 1) & (tb->cap - 1)) {
        void *e = tb->slots[i];
        if (!e)
            return NULL;
        if (entry_matches(k, e, key, oid))
            return e;
    }
}

static void place_entry(struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t i = home(tb, entry_hash(tb, k, e));
    while (tb->slots[i])
        i = (i + 1) & (tb->cap - 1);
    tb->slots[i] = e;
}

uint32_t tm_table_grow_cap(const struct tm_table *tb)
{
    if ((uint64_t)(tb->count + 1) * 4 <= (uint64_t)tb->cap * 3)
        return 0;
    return tb->cap ? tb->cap * 2 : 4;
}

void tm_table_grow_into(tmem_t *t, struct tm_table *tb, enum tm_table_kind k, void **slots,
                        uint32_t cap)
{
    struct tm_table old = *tb;
    memset(slots, 0, cap * sizeof(void *));
    tb->slots = slots;
    tb->cap = cap;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i])
            place_entry(tb, k, old.slots[i]);
    tm_meta_free(t, old.slots);
}

int tm_table_insert(tmem_t *t, struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t ncap = tm_table_grow_cap(tb);
    if (ncap) {
        void **ns = tm_meta_alloc(t, ncap * sizeof(void *), false);
        if (!ns)
            return -ENOMEM;
        tm_table_grow_into(t, tb, k, ns, ncap);
    }
    place_entry(tb, k, e);
    tb->count++;
    return 0;
}

void tm_table_remove(struct tm_table *tb, enum tm_table_kind k, void *e)
{
    uint32_t mask = tb->cap - 1, i = home(tb, entry_hash(tb, k, e));
    while (tb->slots[i] != e) {
        tm_assert(tb->slots[i] != NULL);
        i = (i + 1) & mask;
    }
    /* backward shift: pull later entries of the probe run into the hole */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & mask; tb->slots[j]; j = (j + 1) & mask) {
        uint32_t hj = home(tb, entry_hash(tb, k, tb->slots[j]));
        /* move j into the hole unless its home lies cyclically in (hole, j] */
        bool stays = (hole <= j) ? (hole < hj && hj <= j) : (hole < hj || hj <= j);
        if (!stays) {
            tb->slots[hole] = tb->slots[j];
            hole = j;
        }
    }
    tb->slots[hole] = NULL;
    tb->count--;
}

void tm_table_free(tmem_t *t, struct tm_table *tb)
{
    tm_meta_free(t, tb->slots);
    tb->slots = NULL;
    tb->cap = tb->count = 0;
}
