/* SPDX-License-Identifier: MIT */
/*
 * slab.c - the allocator of page descriptors and objects.
 *
 * Every stored page has one descriptor (struct tm_pgd, 56 bytes), allocated
 * at its put and freed at its get, flush or eviction: the engine's most
 * frequent allocation; and a page that is its object's only one (a swap
 * slot, a small file) allocates and frees its object (struct tm_obj, 128
 * bytes with its first page slots) as often.  Through malloc a descriptor
 * sat at a 16-byte offset in a 64-byte chunk, so three in four straddled
 * two cache lines and a lookup of a cold page paid two misses for it; a
 * burst of frees (a run of exclusive gets) filled malloc's fast bins, which
 * the next large allocation consolidated at length; and an object aligned
 * to its lines through aligned_alloc cost a split chunk and its
 * coalescing at every free, a tenth of a put+get of one-page objects.
 * Here both live in blocks of TM_SLAB_BYTES, aligned to their size, cut
 * into slots of one kind (64 or 128 bytes, whole cache lines); the first
 * slot of a block is its header.
 *
 * Blocks belong to a kind and a stripe (the allocating CPU's, as for
 * frames): a stripe has a lock, a list of its blocks with free slots, and
 * one wholly free block kept as a spare, so that a put after a get does not
 * free and allocate a block.  A slot is freed into its own block (found by
 * masking the address), under that block's stripe lock; a block that
 * empties while its stripe has a spare, or with the stripe's last slot in
 * use, goes back to malloc (an engine without pages holds no block).
 * Blocks are metadata (alloc.c): charged whole when allocated, so
 * bytes_held counts the free slots too; a slot is still only handed out
 * while there is room under the limit for one more (tm_meta_room), so a put
 * over the limit is refused as before.  The stripe lock is a leaf: nothing
 * is locked or allocated under it.
 *
 * Under AddressSanitizer a free slot is poisoned, so a use after free of a
 * descriptor or an object is still reported.
 */
#include "internal.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define SLOT_POISON(p, k)   ASAN_POISON_MEMORY_REGION((p), TM_SLAB_SIZE(k))
#define SLOT_UNPOISON(p, k) ASAN_UNPOISON_MEMORY_REGION((p), TM_SLAB_SIZE(k))
#else
#define SLOT_POISON(p, k)   ((void)(p), (void)(k))
#define SLOT_UNPOISON(p, k) ((void)(p), (void)(k))
#endif

_Static_assert(sizeof(struct tm_pgd) <= TM_SLAB_SIZE(TM_SLAB_PGD), "a descriptor fits in a slot");
_Static_assert(sizeof(struct tm_obj) <= TM_SLAB_SIZE(TM_SLAB_OBJECT), "an object fits in a slot");
_Static_assert(sizeof(struct tm_slab) <= TM_SLAB_SIZE(TM_SLAB_PGD), "a block header fits in a slot");

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
        SLOT_UNPOISON(p, b->kind);
        b->free = *(void **)p;
    } else {
        p = (uint8_t *)b + TM_SLAB_SIZE(b->kind) * (1u + b->fresh++);
    }
    if (--b->nfree == 0)
        avail_del(ss, b);
    ss->live++;
    return p;
}

void *tm_slab_alloc(tmem_t *t, enum tm_slab_kind k, bool may_evict)
{
    /* each slot is an injection point (tests/fault), as a malloc was */
    if (tm_fault_hit(t)) {
        tm_inc(t->st.alloc_failed);
        return NULL;
    }
    /* a free slot is already charged, but a new page must still be refused
     * over the limit, as when each descriptor was charged on its own */
    if (!tm_meta_room(t, TM_SLAB_SIZE(k), may_evict))
        return NULL;
    unsigned home = tm_cpu_stripe();
    struct tm_slab_stripe *ss = &t->slab[k][home];
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
    b->kind = (uint8_t)k;
    b->nfree = TM_SLAB_SLOTS(k);
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
    unsigned size = TM_SLAB_SIZE(b->kind);
    for (uint8_t *s = (uint8_t *)b + size; s < (uint8_t *)b + TM_SLAB_BYTES; s += size)
        SLOT_UNPOISON(s, b->kind);
    tm_meta_free(t, b);
}

void tm_slab_free(tmem_t *t, void *p)
{
    if (!p)
        return;
    struct tm_slab *b = block_of(p), *gone = NULL, *spare = NULL;
    struct tm_slab_stripe *ss = &t->slab[b->kind][b->stripe];
    pthread_mutex_lock(&ss->lock);
    tm_assert(b->nfree < TM_SLAB_SLOTS(b->kind) && ss->live > 0);
    *(void **)p = b->free;
    b->free = p;
    SLOT_POISON(p, b->kind);
    ss->live--;
    if (++b->nfree == TM_SLAB_SLOTS(b->kind)) {
        if (b->listed)
            avail_del(ss, b);
        if (ss->live == 0) {            /* the stripe's last slot in use: keep nothing */
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
    for (unsigned k = 0; k < TM_SLAB_KINDS; k++)
        for (unsigned i = 0; i < TM_STRIPES; i++)
            pthread_mutex_init(&t->slab[k][i].lock, NULL);
}

/* At tmem_close every slot is free: only spares are left. */
void tm_slab_fini(tmem_t *t)
{
    for (unsigned k = 0; k < TM_SLAB_KINDS; k++) {
        for (unsigned i = 0; i < TM_STRIPES; i++) {
            struct tm_slab_stripe *ss = &t->slab[k][i];
            tm_assert(ss->live == 0 && ss->avail == NULL);
            block_free(t, ss->spare);
            ss->spare = NULL;
            pthread_mutex_destroy(&ss->lock);
        }
    }
}

uint64_t tm_slab_live(tmem_t *t, enum tm_slab_kind k)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < TM_STRIPES; i++) {
        pthread_mutex_lock(&t->slab[k][i].lock);
        n += t->slab[k][i].live;
        pthread_mutex_unlock(&t->slab[k][i].lock);
    }
    return n;
}

/* One stripe's lists against its counts; violations found. */
static int stripe_check(struct tm_slab_stripe *ss, unsigned k, unsigned i)
{
    int bad = 0;
    const uint32_t slots = TM_SLAB_SLOTS(k);
    pthread_mutex_lock(&ss->lock);
    uint64_t listed = 0;
    for (struct tm_slab *b = ss->avail; b; b = b->next, listed++) {
        uint32_t nfree = slots - b->fresh;
        for (void *f = b->free; f && nfree <= slots; nfree++) {
            if (block_of(f) != b) {
                nfree = UINT32_MAX;     /* a slot of another block */
                break;
            }
            SLOT_UNPOISON(f, k);
            void *next = *(void **)f;
            SLOT_POISON(f, k);
            f = next;
        }
        if (b->stripe != i || b->kind != k || !b->listed || b->nfree == 0 ||
            b->nfree >= slots || nfree != b->nfree || (b->next && b->next->prev != b)) {
            tm_report("slab: kind %u stripe %u block %p: stripe %u kind %u, %u free (%u found), "
                      "listed %d", k, i, (void *)b, b->stripe, b->kind, b->nfree, nfree, b->listed);
            bad++;
            break;
        }
    }
    if (ss->spare && (ss->spare->nfree != slots || ss->spare->listed)) {
        tm_report("slab: kind %u stripe %u spare block not wholly free", k, i);
        bad++;
    }
    if (listed + (ss->spare != NULL) > ss->blocks) {
        tm_report("slab: kind %u stripe %u lists %llu blocks, holds %llu", k, i,
                  (unsigned long long)listed, (unsigned long long)ss->blocks);
        bad++;
    }
    pthread_mutex_unlock(&ss->lock);
    return bad;
}

int tm_slab_check(tmem_t *t)
{
    int bad = 0;
    for (unsigned k = 0; k < TM_SLAB_KINDS; k++)
        for (unsigned i = 0; i < TM_STRIPES; i++)
            bad += stripe_check(&t->slab[k][i], k, i);
    return bad;
}
