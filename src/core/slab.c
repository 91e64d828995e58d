/*
 * slab.c - the page-descriptor allocator.
 *
 * Every stored page has one descriptor (struct tm_pgd, 56 bytes), allocated
 * at its put and freed at its get, flush or eviction: the engine's most
 * frequent allocation.  Through malloc a descriptor sat at a 16-byte
 * offset in a 64-byte chunk, so three in four straddled two cache lines and
 * a lookup of a cold page paid two misses for it; and a burst of frees
 * (a run of exclusive gets) filled malloc's fast bins, which the next large
 * allocation consolidated at length.  Here descriptors live in blocks of
 * TM_SLAB_BYTES, aligned to their size, cut into 64-byte slots, one cache
 * line each; the first line of a block is its header.  Measured with
 * bench/ figure 1a (put+get of random pages): 0.60 -> 0.65 of memcpy.
 *
 * Blocks belong to a stripe (the allocating CPU's, as for frames): a stripe has a lock, a list of its blocks with free slots, and
 * one wholly free block kept as a spare, so that a put after a get does not
 * free and allocate a block.  A slot is freed into its own block (found by
 * masking the address), under that block's stripe lock; a block that
 * empties while its stripe has a spare, or with the stripe's last
 * descriptor, goes back to malloc (an engine without pages holds no
 * block).  Blocks are
 * metadata (alloc.c): charged whole when allocated, so bytes_held counts
 * the free slots too; a descriptor is still only handed out while there is
 * room under the limit for one more (tm_meta_room), so a put over the limit
 * is refused as before.  The stripe lock is a leaf: nothing is locked or
 * allocated under it.
 *
 * Under AddressSanitizer a free slot is poisoned, so a use after free of a
 * descriptor is still reported.
 */
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLOT_POISON(p)   ASAN_POISON_MEMORY_REGION((p), TM_SLAB_OBJ)
#define SLOT_UNPOISON(p) ASAN_UNPOISON_MEMORY_REGION((p), TM_SLAB_OBJ)
#else
#define SLOT_POISON(p)   ((void)(p))
#define SLOT_UNPOISON(p) ((void)(p))
#endif

_Static_assert(sizeof(struct tm_pgd) <= TM_SLAB_OBJ, "a descriptor fits in a slot");
_Static_assert(sizeof(struct tm_slab) <= TM_SLAB_OBJ, "a block header fits in a slot");

static inline struct tm_slab *block_of(const void *p)
{
    return (struct tm_slab *)((uintptr_t)p & ~(uintptr_t)(TM_SLAB_BYTES - 1));
}

static void avail_add(struct tm_slab_stripe *ss, struct tm_slab *b)
{
    b->listed = true;
    b->prev = NULL;
    b->next = ss->avail;
    if (ss->avail)
        ss->avail->prev = b;
    ss->avail = b;
}

static void avail_del(struct tm_slab_stripe *ss, struct tm_slab *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        ss->avail = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
    b->listed = false;
}

/* Takes a slot of b (b->nfree > 0); stripe lock held. */
static void *take(struct tm_slab_stripe *ss, struct tm_slab *b)
{
    void *p;
    if (b->free) {
        p = b->free;
        SLOT_UNPOISON(p);
        b->free = *(void **)p;
    } else {
        p = (uint8_t *)b + TM_SLAB_OBJ * (1u + b->fresh++);
    }
    if (--b->nfree == 0)
        avail_del(ss, b);
    ss->live++;
    return p;
}

void *tm_slab_alloc(tmem_t *t, bool may_evict)
{
    /* each descriptor is an injection point (tests/fault), as a malloc was */
    if (tm_fault_hit(t)) {
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    /* a free slot is already charged, but a new page must still be refused
     * over the limit, as when each descriptor was charged on its own */
    if (!tm_meta_room(t, TM_SLAB_OBJ, may_evict))
        return NULL;
    unsigned home = tm_cpu_stripe();
    struct tm_slab_stripe *ss = &t->slab[home];
    pthread_mutex_lock(&ss->lock);
    struct tm_slab *b = ss->avail;
    if (!b && ss->spare) {
        b = ss->spare;
        ss->spare = NULL;
        avail_add(ss, b);
    }
    if (b) {
        void *p = take(ss, b);
        pthread_mutex_unlock(&ss->lock);
        return p;
    }
    pthread_mutex_unlock(&ss->lock);

    /* a new block: allocated unlocked (it may evict, which frees slots) */
    b = tm_meta_alloc_aligned(t, TM_SLAB_BYTES, TM_SLAB_BYTES, may_evict);
    if (!b)
        return NULL;
    memset(b, 0, sizeof(*b));
    b->stripe = (uint16_t)home;
    b->nfree = TM_SLAB_SLOTS;
    pthread_mutex_lock(&ss->lock);
    ss->blocks++;
    avail_add(ss, b);
    void *p = take(ss, b);
    pthread_mutex_unlock(&ss->lock);
    return p;
}

static void block_free(tmem_t *t, struct tm_slab *b)
{
    if (!b)
        return;
    for (uint8_t *s = (uint8_t *)b + TM_SLAB_OBJ; s < (uint8_t *)b + TM_SLAB_BYTES; s += TM_SLAB_OBJ)
        SLOT_UNPOISON(s);
    tm_meta_free(t, b);
}

void tm_slab_free(tmem_t *t, void *p)
{
    if (!p)
        return;
    struct tm_slab *b = block_of(p), *gone = NULL, *spare = NULL;
    struct tm_slab_stripe *ss = &t->slab[b->stripe];
    pthread_mutex_lock(&ss->lock);
    tm_assert(b->nfree < TM_SLAB_SLOTS && ss->live > 0);
    *(void **)p = b->free;
    b->free = p;
    SLOT_POISON(p);
    ss->live--;
    if (++b->nfree == TM_SLAB_SLOTS) {
        if (b->listed)
            avail_del(ss, b);
        if (ss->live == 0) {            /* the stripe's last descriptor: keep nothing */
            spare = ss->spare;
            ss->spare = NULL;
            ss->blocks -= 1u + (spare != NULL);
            gone = b;
        } else if (!ss->spare) {
            ss->spare = b;
        } else {
            ss->blocks--;
            gone = b;
        }
    } else if (!b->listed) {
        avail_add(ss, b);
    }
    pthread_mutex_unlock(&ss->lock);
    block_free(t, gone);
    block_free(t, spare);
}

void tm_slab_init(tmem_t *t)
{
    for (unsigned i = 0; i < TM_STRIPES; i++)
        pthread_mutex_init(&t->slab[i].lock, NULL);
}

/* At tmem_close every descriptor is gone: only spares are left. */
void tm_slab_fini(tmem_t *t)
{
    for (unsigned i = 0; i < TM_STRIPES; i++) {
        struct tm_slab_stripe *ss = &t->slab[i];
        tm_assert(ss->live == 0 && ss->avail == NULL);
        block_free(t, ss->spare);
        ss->spare = NULL;
        pthread_mutex_destroy(&ss->lock);
    }
}

uint64_t tm_slab_live(tmem_t *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++) {
        pthread_mutex_lock(&t->slab[i].lock);
        n += t->slab[i].live;
        pthread_mutex_unlock(&t->slab[i].lock);
    }
    return n;
}

int tm_slab_check(tmem_t *t)
{
    int bad = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++) {
        struct tm_slab_stripe *ss = &t->slab[i];
        pthread_mutex_lock(&ss->lock);
        uint64_t listed = 0;
        for (struct tm_slab *b = ss->avail; b; b = b->next, listed++) {
            uint32_t nfree = TM_SLAB_SLOTS - b->fresh;
            for (void *f = b->free; f && nfree <= TM_SLAB_SLOTS; nfree++) {
                if (block_of(f) != b) {
                    nfree = UINT32_MAX;     /* a slot of another block */
                    break;
                }
                SLOT_UNPOISON(f);
                void *next = *(void **)f;
                SLOT_POISON(f);
                f = next;
            }
            if (b->stripe != i || !b->listed || b->nfree == 0 || b->nfree >= TM_SLAB_SLOTS ||
                nfree != b->nfree || (b->next && b->next->prev != b)) {
                tm_report("slab: stripe %u block %p: stripe %u, %u free (%u found), listed %d",
                          i, (void *)b, b->stripe, b->nfree, nfree, b->listed);
                bad++;
                break;
            }
        }
        if (ss->spare && (ss->spare->nfree != TM_SLAB_SLOTS || ss->spare->listed)) {
            tm_report("slab: stripe %u spare block not wholly free", i);
            bad++;
        }
        if (listed + (ss->spare != NULL) > ss->blocks) {
            tm_report("slab: stripe %u lists %llu blocks, holds %llu", i,
                      (unsigned long long)listed, (unsigned long long)ss->blocks);
            bad++;
        }
        pthread_mutex_unlock(&ss->lock);
    }
    return bad;
}
