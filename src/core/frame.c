/*
 * frame.c - the frame allocator: whole 4 KiB frames over one reserved mapping.
 *
 * At open the engine reserves address space (PROT_NONE, so it costs nothing)
 * for the most frames it may ever hold, in chunks of 512 frames (2 MiB).  A
 * chunk becomes readable and writable when it is first used; its frames are
 * backed by the kernel on first touch.  Freed frames go to a free list (the
 * seeds' tmem_page_list), not back to the OS: the next put will want one.
 * They leave only when the host asks (tmem_relinquish_pages) or the limit
 * shrinks, with MADV_DONTNEED, which really drops resident memory.
 *
 * Why our own allocator and not malloc: the engine must know exactly how
 * much memory it holds, give whole frames back on demand, find contiguous
 * free frames for tmem_relinquish_pageblock, and never fault in and free per
 * page (1.4 us each way on these machines).
 *
 * All state is guarded by frames.lock; the counters are also atomics so
 * that readers (bytes_held, stats) need no lock.  States and invariants:
 * see struct tm_chunk in types.h.
 */
#include <sys/mman.h>

#include "internal.h"

static inline size_t popc(uint64_t x) { return (size_t)__builtin_popcountll(x); }

static void free_list_add(struct tm_frames *fr, struct tm_chunk *ch)
{
    if (ch->on_free_list)
        return;
    ch->on_free_list = true;
    ch->prev_free = NULL;
    ch->next_free = fr->with_free;
    if (fr->with_free)
        fr->with_free->prev_free = ch;
    fr->with_free = ch;
}

static void free_list_del(struct tm_frames *fr, struct tm_chunk *ch)
{
    if (!ch->on_free_list)
        return;
    if (ch->prev_free)
        ch->prev_free->next_free = ch->next_free;
    else
        fr->with_free = ch->next_free;
    if (ch->next_free)
        ch->next_free->prev_free = ch->prev_free;
    ch->on_free_list = false;
    ch->next_free = ch->prev_free = NULL;
}

int tm_frames_init(tmem_t *t, uint64_t reserve_bytes)
{
    struct tm_frames *fr = &t->frames;
    memset(fr, 0, sizeof(*fr));
    pthread_mutex_init(&fr->lock, NULL);
    fr->nchunks = (size_t)((reserve_bytes + TM_CHUNK_BYTES - 1) / TM_CHUNK_BYTES);
    if (fr->nchunks == 0)
        fr->nchunks = 1;
    /* Reserve one chunk more and keep the chunk-aligned part, so that a
     * block of 2^order frames (order <= 9) is aligned to its size whatever
     * alignment mmap gave. */
    size_t len = fr->nchunks * TM_CHUNK_BYTES;
    uint8_t *raw = mmap(NULL, len + TM_CHUNK_BYTES, PROT_NONE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED)
        return -ENOMEM;
    uint8_t *base = (uint8_t *)(((uintptr_t)raw + TM_CHUNK_BYTES - 1) & ~(uintptr_t)(TM_CHUNK_BYTES - 1));
    if (base > raw)
        munmap(raw, (size_t)(base - raw));
    if (raw + TM_CHUNK_BYTES > base)
        munmap(base + len, (size_t)(raw + TM_CHUNK_BYTES - base));
    /* The chunk table is engine infrastructure, not counted metadata:
     * 8 bytes per 2 MiB of reservation. */
    fr->chunks = calloc(fr->nchunks, sizeof(*fr->chunks));
    if (!fr->chunks) {
        munmap(base, len);
        return -ENOMEM;
    }
    fr->base = base;        /* set last: tm_frames_fini keys on it */
    return 0;
}

void tm_frames_fini(tmem_t *t)
{
    struct tm_frames *fr = &t->frames;
    if (!fr->base)
        return;
    for (size_t i = 0; i < fr->nchunks; i++)
        free(fr->chunks[i]);
    free(fr->chunks);
    free(fr->lent);
    munmap(fr->base, fr->nchunks * TM_CHUNK_BYTES);
    pthread_mutex_destroy(&fr->lock);
    fr->base = NULL;
}

static inline uint8_t *frame_addr(struct tm_frames *fr, size_t chunk, size_t bit)
{
    return fr->base + (chunk * TM_CHUNK_FRAMES + bit) * TMEM_PAGE_SIZE;
}

/* Takes a free frame; lock held. */
static uint8_t *take_free_locked(struct tm_frames *fr)
{
    struct tm_chunk *ch = fr->with_free;
    if (!ch)
        return NULL;
    for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
        if (ch->free_map[w]) {
            unsigned b = (unsigned)__builtin_ctzll(ch->free_map[w]);
            ch->free_map[w] &= ~(1ull << b);
            if (--ch->nfree == 0)
                free_list_del(fr, ch);
            tm_sub(fr->nfree, 1);
            return frame_addr(fr, ch->index, w * 64 + b);
        }
    }
    tm_assert(!"chunk on free list without a free frame");
    return NULL;
}

/* Backs a new frame; lock held; the caller checked the limit. */
static uint8_t *take_unbacked_locked(tmem_t *t)
{
    struct tm_frames *fr = &t->frames;
    for (size_t i = fr->grow_hint; i < fr->nchunks; i++) {
        struct tm_chunk *ch = fr->chunks[i];
        if (!ch) {
            if (tm_fault_hit(t) || !(ch = calloc(1, sizeof(*ch)))) {
                tm_inc(t->st.alloc_failed);
                return NULL;
            }
            if (mprotect(fr->base + i * TM_CHUNK_BYTES, TM_CHUNK_BYTES,
                         PROT_READ | PROT_WRITE) != 0) {
                free(ch);
                tm_inc(t->st.alloc_failed);
                return NULL;
            }
            ch->index = (uint32_t)i;
            fr->chunks[i] = ch;
        }
        if (ch->nbacked == TM_CHUNK_FRAMES) {
            fr->grow_hint = i + 1;
            continue;
        }
        for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
            uint64_t unbacked = ~ch->backed_map[w];
            if (unbacked) {
                unsigned b = (unsigned)__builtin_ctzll(unbacked);
                ch->backed_map[w] |= 1ull << b;
                ch->nbacked++;
                fr->grow_hint = i;
                return frame_addr(fr, i, w * 64 + b);
            }
        }
    }
    return NULL;
}

uint8_t *tm_frame_get(tmem_t *t, enum tm_frame_use use)
{
    struct tm_frames *fr = &t->frames;
    pthread_mutex_lock(&fr->lock);
    uint8_t *f = take_free_locked(fr);
    if (!f && tm_bytes_held(t) + TMEM_PAGE_SIZE <= tm_load(t->max_bytes)) {
        f = take_unbacked_locked(t);
        if (f)
            tm_add(fr->nheld, 1);
    }
    if (f)
        tm_add(*(use == TM_FRAME_WHOLE ? &fr->nwhole : &fr->nzalloc), 1);
    pthread_mutex_unlock(&fr->lock);
    return f;
}

static struct tm_chunk *chunk_of(struct tm_frames *fr, const void *p, size_t *bit)
{
    const uint8_t *q = p;
    *bit = 0;
    if (q < fr->base || q >= fr->base + fr->nchunks * TM_CHUNK_BYTES)
        return NULL;
    size_t idx = (size_t)(q - fr->base) / TMEM_PAGE_SIZE;
    *bit = idx % TM_CHUNK_FRAMES;
    return fr->chunks[idx / TM_CHUNK_FRAMES];
}

void tm_frame_put(tmem_t *t, uint8_t *f, enum tm_frame_use use)
{
    struct tm_frames *fr = &t->frames;
    size_t bit;
    pthread_mutex_lock(&fr->lock);
    struct tm_chunk *ch = chunk_of(fr, f, &bit);
    tm_assert(ch && !(ch->free_map[bit / 64] & (1ull << (bit % 64))));
    ch->free_map[bit / 64] |= 1ull << (bit % 64);
    ch->nfree++;
    free_list_add(fr, ch);
    tm_add(fr->nfree, 1);
    tm_sub(*(use == TM_FRAME_WHOLE ? &fr->nwhole : &fr->nzalloc), 1);
    pthread_mutex_unlock(&fr->lock);
}

bool tm_frame_valid(tmem_t *t, const void *p)
{
    struct tm_frames *fr = &t->frames;
    size_t bit;
    if (((uintptr_t)p & (TMEM_PAGE_SIZE - 1)) != 0)
        return false;
    pthread_mutex_lock(&fr->lock);
    struct tm_chunk *ch = chunk_of(fr, p, &bit);
    bool ok = ch && (ch->backed_map[bit / 64] & (1ull << (bit % 64))) &&
              !(ch->free_map[bit / 64] & (1ull << (bit % 64))) &&
              !(ch->lent_map[bit / 64] & (1ull << (bit % 64)));
    pthread_mutex_unlock(&fr->lock);
    return ok;
}

/* Releases free frames to the OS: free -> unbacked.  Consecutive frames of a
 * chunk are released with one madvise. */
size_t tm_frames_release(tmem_t *t, size_t n)
{
    struct tm_frames *fr = &t->frames;
    size_t done = 0;
    pthread_mutex_lock(&fr->lock);
    while (done < n && fr->with_free) {
        struct tm_chunk *ch = fr->with_free;
        for (unsigned w = 0; w < TM_CHUNK_WORDS && done < n; w++) {
            while (ch->free_map[w] && done < n) {
                unsigned b = (unsigned)__builtin_ctzll(ch->free_map[w]);
                unsigned e = b;     /* extend the run of free frames */
                while (e + 1 < 64 && (ch->free_map[w] & (1ull << (e + 1))) && done + (e + 1 - b) < n)
                    e++;
                unsigned len = e - b + 1;
                uint64_t mask = (len == 64) ? ~0ull : (((1ull << len) - 1) << b);
                madvise(frame_addr(fr, ch->index, w * 64 + b), (size_t)len * TMEM_PAGE_SIZE,
                        MADV_DONTNEED);
                ch->free_map[w] &= ~mask;
                ch->backed_map[w] &= ~mask;
                ch->nfree -= len;
                ch->nbacked -= len;
                done += len;
            }
        }
        if (ch->nfree == 0)
            free_list_del(fr, ch);
        if (ch->index < fr->grow_hint)
            fr->grow_hint = ch->index;
    }
    tm_sub(fr->nfree, done);
    tm_sub(fr->nheld, done);
    pthread_mutex_unlock(&fr->lock);
    tm_add(t->st.relinquished, done);
    return done;
}

/* Finds 2^order aligned free frames in one chunk and lends them out. */
void *tm_frames_lend(tmem_t *t, unsigned order)
{
    struct tm_frames *fr = &t->frames;
    size_t n = (size_t)1 << order;
    void *res = NULL;
    pthread_mutex_lock(&fr->lock);
    if (fr->nlent_blocks == fr->lent_cap) {
        size_t cap = fr->lent_cap ? fr->lent_cap * 2 : 16;
        struct tm_lent *nl = realloc(fr->lent, cap * sizeof(*nl));
        if (!nl)
            goto out;
        fr->lent = nl;
        fr->lent_cap = cap;
    }
    for (struct tm_chunk *ch = fr->with_free; ch && !res; ch = ch->next_free) {
        if (ch->nfree < n)
            continue;
        for (size_t start = 0; start < TM_CHUNK_FRAMES; start += n) {
            bool all = true;
            for (size_t k = start; k < start + n && all; k++)
                all = (ch->free_map[k / 64] >> (k % 64)) & 1;
            if (!all)
                continue;
            for (size_t k = start; k < start + n; k++) {
                ch->free_map[k / 64] &= ~(1ull << (k % 64));
                ch->lent_map[k / 64] |= 1ull << (k % 64);
            }
            ch->nfree -= (uint32_t)n;
            if (ch->nfree == 0)
                free_list_del(fr, ch);
            res = frame_addr(fr, ch->index, start);
            break;
        }
    }
    if (res) {
        fr->lent[fr->nlent_blocks++] = (struct tm_lent){ res, order };
        tm_sub(fr->nfree, n);
        tm_sub(fr->nheld, n);
        tm_add(fr->nlent, n);
    }
out:
    pthread_mutex_unlock(&fr->lock);
    if (res) {
        memset(res, 0, n * TMEM_PAGE_SIZE);     /* scrub: the data was a tenant's */
        tm_add(t->st.lent, n);
    }
    return res;
}

int tm_frames_unlend(tmem_t *t, void *p, unsigned order)
{
    struct tm_frames *fr = &t->frames;
    size_t n = (size_t)1 << order, i, bit;
    pthread_mutex_lock(&fr->lock);
    for (i = 0; i < fr->nlent_blocks; i++)
        if (fr->lent[i].p == p && fr->lent[i].order == order)
            break;
    if (i == fr->nlent_blocks) {
        pthread_mutex_unlock(&fr->lock);
        return -EINVAL;
    }
    fr->lent[i] = fr->lent[--fr->nlent_blocks];
    struct tm_chunk *ch = chunk_of(fr, p, &bit);
    for (size_t k = bit; k < bit + n; k++) {
        ch->lent_map[k / 64] &= ~(1ull << (k % 64));
        ch->free_map[k / 64] |= 1ull << (k % 64);
    }
    ch->nfree += (uint32_t)n;
    free_list_add(fr, ch);
    tm_sub(fr->nlent, n);
    tm_add(fr->nfree, n);
    tm_add(fr->nheld, n);
    pthread_mutex_unlock(&fr->lock);
    tm_fit_by_releasing(t, 0);      /* back under the limit if need be */
    return 0;
}

int tm_frames_check(tmem_t *t)
{
    struct tm_frames *fr = &t->frames;
    int bad = 0;
    uint64_t nfree = 0, nbacked = 0, nlent = 0, onlist = 0;
    pthread_mutex_lock(&fr->lock);
    for (struct tm_chunk *ch = fr->with_free; ch; ch = ch->next_free)
        onlist++;
    for (size_t i = 0; i < fr->nchunks; i++) {
        struct tm_chunk *ch = fr->chunks[i];
        if (!ch)
            continue;
        size_t f = 0, b = 0, l = 0;
        for (unsigned w = 0; w < TM_CHUNK_WORDS; w++) {
            f += popc(ch->free_map[w]);
            b += popc(ch->backed_map[w]);
            l += popc(ch->lent_map[w]);
            if ((ch->free_map[w] | ch->lent_map[w]) & ~ch->backed_map[w]) {
                tm_report("frames: chunk %zu has free or lent frames that are not backed", i);
                bad++;
            }
            if (ch->free_map[w] & ch->lent_map[w]) {
                tm_report("frames: chunk %zu has frames both free and lent", i);
                bad++;
            }
        }
        if (f != ch->nfree || b != ch->nbacked) {
            tm_report("frames: chunk %zu counts free %u backed %u, maps say %zu %zu",
                      i, ch->nfree, ch->nbacked, f, b);
            bad++;
        }
        if ((ch->nfree > 0) != ch->on_free_list) {
            tm_report("frames: chunk %zu free-list membership wrong", i);
            bad++;
        }
        if (ch->on_free_list)
            onlist--;
        nfree += f;
        nbacked += b;
        nlent += l;
    }
    if (onlist != 0) {
        tm_report("frames: free list holds chunks that are not in the table");
        bad++;
    }
    if (nfree != tm_load(fr->nfree) || nlent != tm_load(fr->nlent) ||
        nbacked - nlent != tm_load(fr->nheld) ||
        tm_load(fr->nheld) != tm_load(fr->nfree) + tm_load(fr->nwhole) + tm_load(fr->nzalloc)) {
        tm_report("frames: counters free %llu held %llu whole %llu zalloc %llu lent %llu; "
                  "maps free %llu backed %llu lent %llu",
                  (unsigned long long)tm_load(fr->nfree), (unsigned long long)tm_load(fr->nheld),
                  (unsigned long long)tm_load(fr->nwhole), (unsigned long long)tm_load(fr->nzalloc),
                  (unsigned long long)tm_load(fr->nlent), (unsigned long long)nfree,
                  (unsigned long long)nbacked, (unsigned long long)nlent);
        bad++;
    }
    pthread_mutex_unlock(&fr->lock);
    return bad;
}
