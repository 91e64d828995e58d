/* SPDX-License-Identifier: MIT */
/*
 * pagecache.c - the bounded local page cache: --cache-pages slots of 4 KiB,
 * found by (inode, page index) through a hash table, evicted by a clock.
 *
 * Every slot is on exactly one of: the free list (inode NULL), or a hash
 * chain and its inode's list (inode set; inode->npages counts them).  A
 * page's reference bit is set by a hit and cleared as the clock hand
 * passes; the hand evicts the first page whose bit is clear, so a page read
 * once goes before a page read again (a scan does not flush the hot pages).
 *
 * An evicted page is clean (writes go through to the backing store at
 * once), so it is handed back to the caller to be put to cleancache under
 * its inode's key, if the inode has one then (cfs_inode_key_locked).
 *
 * Every function here runs under cache->lock (cachefs.h, LOCKING).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cachefs.h"

int cfs_pc_init(struct cfs_pagecache *pc, uint32_t npages)
{
    memset(pc, 0, sizeof(*pc));
    if (npages == 0)
        return -EINVAL;
    uint32_t hsize = 16;
    while (hsize < 2 * (uint64_t)npages && hsize < (1u << 30))
        hsize <<= 1;
    pc->pages = calloc(npages, sizeof(*pc->pages));
    pc->hash = malloc(hsize * sizeof(*pc->hash));
    pc->data = malloc((size_t)npages * CFS_PAGE);
    if (!pc->pages || !pc->hash || !pc->data) {
        cfs_pc_fini(pc);
        return -ENOMEM;
    }
    pc->npages = npages;
    pc->hmask = hsize - 1;
    for (uint32_t i = 0; i < hsize; i++)
        pc->hash[i] = CFS_NIL;
    for (uint32_t i = 0; i < npages; i++)
        pc->pages[i].hnext = i + 1 < npages ? i + 1 : CFS_NIL;
    pc->free = 0;
    return 0;
}

void cfs_pc_fini(struct cfs_pagecache *pc)
{
    free(pc->pages);
    free(pc->hash);
    free(pc->data);
    memset(pc, 0, sizeof(*pc));
}

static uint32_t bucket(const struct cfs_pagecache *pc, const struct cfs_inode *ino,
                       uint32_t index)
{
    uint64_t h = (uint64_t)(uintptr_t)ino * 0x9e3779b97f4a7c15ull ^ index;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return (uint32_t)h & pc->hmask;
}

static uint8_t *page_data(const struct cfs_pagecache *pc, uint32_t slot)
{
    return pc->data + (size_t)slot * CFS_PAGE;
}

static uint32_t find(const struct cfs_pagecache *pc, const struct cfs_inode *ino,
                     uint32_t index)
{
    for (uint32_t s = pc->hash[bucket(pc, ino, index)]; s != CFS_NIL; s = pc->pages[s].hnext)
        if (pc->pages[s].inode == ino && pc->pages[s].index == index)
            return s;
    return CFS_NIL;
}

/* Takes slot s off its hash chain and its inode's list, onto the free list. */
static void remove_page(struct cfs_pagecache *pc, uint32_t s)
{
    struct cfs_page *p = &pc->pages[s];
    struct cfs_inode *ino = p->inode;
    uint32_t *link = &pc->hash[bucket(pc, ino, p->index)];
    while (*link != s)
        link = &pc->pages[*link].hnext;
    *link = p->hnext;
    if (p->iprev != CFS_NIL)
        pc->pages[p->iprev].inext = p->inext;
    else
        ino->pages = p->inext;
    if (p->inext != CFS_NIL)
        pc->pages[p->inext].iprev = p->iprev;
    ino->npages--;
    p->inode = NULL;
    p->ref = 0;
    p->hnext = pc->free;
    pc->free = s;
    pc->used--;
}

bool cfs_pc_read_locked(struct cfs_pagecache *pc, struct cfs_inode *ino, uint32_t index,
                        void *dst, size_t off, size_t len)
{
    uint32_t s = find(pc, ino, index);
    if (s == CFS_NIL)
        return false;
    pc->pages[s].ref = 1;
    memcpy(dst, page_data(pc, s) + off, len);
    return true;
}

void cfs_pc_write_locked(struct cfs_pagecache *pc, struct cfs_inode *ino, uint32_t index,
                         const void *src, size_t off, size_t len)
{
    uint32_t s = find(pc, ino, index);
    if (s != CFS_NIL)
        memcpy(page_data(pc, s) + off, src, len);
}

/* Frees one slot by the clock; its page goes to v. */
static void evict_one(struct cfs_cache *c, struct cfs_victim *v)
{
    struct cfs_pagecache *pc = &c->pc;
    for (;;) {
        uint32_t s = pc->hand;
        pc->hand = s + 1 < pc->npages ? s + 1 : 0;
        struct cfs_page *p = &pc->pages[s];
        if (!p->inode)
            continue;
        if (p->ref) {
            p->ref = 0;
            continue;
        }
        struct cfs_inode *ino = p->inode;
        v->put = cfs_inode_key_locked(c, ino, &v->key);
        v->index = p->index;
        if (v->put)
            memcpy(v->data, page_data(pc, s), CFS_PAGE);
        else
            CFS_INC(c->st, puts_skipped);
        CFS_INC(c->st, local_evictions);
        remove_page(pc, s);
        cfs_inode_maybe_free_locked(c, ino);
        return;
    }
}

void cfs_pc_insert_locked(struct cfs_cache *c, struct cfs_inode *ino, uint32_t index,
                          const void *page, struct cfs_victim *v)
{
    struct cfs_pagecache *pc = &c->pc;
    v->put = false;
    uint32_t s = find(pc, ino, index);
    if (s != CFS_NIL) {
        memcpy(page_data(pc, s), page, CFS_PAGE);
        return;
    }
    if (pc->free == CFS_NIL)
        evict_one(c, v);
    s = pc->free;
    struct cfs_page *p = &pc->pages[s];
    pc->free = p->hnext;
    pc->used++;
    p->inode = ino;
    p->index = index;
    p->ref = 0;
    uint32_t *head = &pc->hash[bucket(pc, ino, index)];
    p->hnext = *head;
    *head = s;
    p->iprev = CFS_NIL;
    p->inext = ino->pages;
    if (ino->pages != CFS_NIL)
        pc->pages[ino->pages].iprev = s;
    ino->pages = s;
    ino->npages++;
    memcpy(page_data(pc, s), page, CFS_PAGE);
}

uint32_t cfs_pc_truncate_locked(struct cfs_pagecache *pc, struct cfs_inode *ino,
                                uint32_t from, size_t tail_off)
{
    uint32_t dropped = 0;
    uint32_t s = ino->pages;
    while (s != CFS_NIL) {
        uint32_t next = pc->pages[s].inext;
        if (pc->pages[s].index >= from) {
            remove_page(pc, s);
            dropped++;
        } else if (tail_off > 0 && pc->pages[s].index == from - 1) {
            memset(page_data(pc, s) + tail_off, 0, CFS_PAGE - tail_off);
        }
        s = next;
    }
    return dropped;
}
