/* SPDX-License-Identifier: MIT */
/*
 * data.c - the data path: reads through the local cache, cleancache and
 * the backing store; writes and truncates through to the backing store.
 *
 * Read of one page (index i of inode ino):
 *   1. local cache hit: copy out.
 *   2. miss: note ino->gen and the key (if the version has one), unlock;
 *      ask cleancache under the key (for a read of several pages, one
 *      batch for the pages it still needs, at most CFS_READAHEAD: the
 *      read-ahead window, kept for the next misses of this read), else
 *      read the backing store (bytes past
 *      the size this mount knows are zeroed, so the page is exactly the
 *      version's page); lock; insert the page only if gen has not moved
 *      (no change of this mount raced the read); a page the insertion
 *      evicted is put to cleancache after unlocking.
 * Write (under ino->wlock): the backing file first, then, under the lock,
 * gen++ and the cached pages it touches are patched; the file loses its key
 * and its cleancache pages are invalidated (inode.c: a changed file has no
 * key until the next open).  Truncate likewise, dropping the pages past
 * the new size and zeroing the tail of the last one.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachefs.h"

/* Pages fetched from cleancache ahead of the read loop (a read-ahead
 * window): one batch for the local misses of a read of several pages. */
struct readahead {
    uint32_t first;
    unsigned n;                 /* 0: none */
    uint8_t *pages;             /* CFS_READAHEAD pages, allocated at first use */
    int res[CFS_READAHEAD];
};

/* Page index from cleancache: from the window if it covers index (else a
 * new window of the pages the read still needs, at most CFS_READAHEAD, one
 * batch), copied to page.  0 if found. */
static int tier_get_ahead(struct cfs_cache *c, struct readahead *ra,
                          const tmem_cleancache_filekey_t *key, uint32_t index,
                          uint32_t last, uint8_t *page)
{
    if (!(ra->n && index >= ra->first && index - ra->first < ra->n)) {
        uint64_t want = (uint64_t)last - index + 1;
        unsigned n = want < CFS_READAHEAD ? (unsigned)want : CFS_READAHEAD;
        if (n < 2 || (!ra->pages && !(ra->pages = malloc(CFS_READAHEAD * CFS_PAGE)))) {
            ra->n = 0;
            return cfs_tier_get(c->tier, key, index, page);
        }
        cfs_tier_get_run(c->tier, key, index, n, ra->pages, ra->res);
        CFS_INC(c->st, tier_batches);
        ra->first = index;
        ra->n = n;
    }
    unsigned i = index - ra->first;
    if (ra->res[i] != 0)
        return ra->res[i];
    memcpy(page, ra->pages + (size_t)i * CFS_PAGE, CFS_PAGE);
    ra->res[i] = -ENOENT;       /* taken (private pools: the get was exclusive) */
    return 0;
}

ssize_t cfs_data_read(struct cfs_cache *c, struct cfs_inode *ino, int fd, char *buf,
                      size_t size, off_t off)
{
    uint8_t page[TMEM_PAGE_SIZE];
    struct cfs_victim victim;
    struct readahead ra = { 0, 0, NULL, { 0 } };
    size_t done = 0;
    while (done < size) {
        off_t pos = off + (off_t)done;
        uint32_t index = (uint32_t)(pos / (off_t)CFS_PAGE);
        size_t pofs = (size_t)(pos % (off_t)CFS_PAGE);
        if ((uint64_t)pos / CFS_PAGE > UINT32_MAX)
            break;                      /* past what an index can name */

        pthread_mutex_lock(&c->lock);
        int64_t fsize = ino->size;
        if (pos >= fsize) {
            pthread_mutex_unlock(&c->lock);
            break;
        }
        size_t n = CFS_PAGE - pofs;
        if (n > size - done)
            n = size - done;
        if ((int64_t)n > fsize - pos)
            n = (size_t)(fsize - pos);
        if (cfs_pc_read_locked(&c->pc, ino, index, buf + done, pofs, n)) {
            pthread_mutex_unlock(&c->lock);
            CFS_INC(c->st, local_hits);
            done += n;
            continue;
        }
        uint64_t gen = ino->gen;
        tmem_cleancache_filekey_t key;
        bool keyed = cfs_inode_key_locked(c, ino, &key);
        pthread_mutex_unlock(&c->lock);
        CFS_INC(c->st, local_misses);

        /* the last page this read needs, within the file as known */
        int64_t end = (int64_t)off + (int64_t)size < fsize ? (int64_t)off + (int64_t)size : fsize;
        uint32_t last = (uint64_t)(end - 1) / CFS_PAGE > UINT32_MAX
                            ? UINT32_MAX : (uint32_t)((uint64_t)(end - 1) / CFS_PAGE);
        if (keyed && tier_get_ahead(c, &ra, &key, index, last, page) == 0) {
            CFS_INC(c->st, tier_hits);
        } else {
            ssize_t r = cfs_backing_read_page(c->backing, fd, index, page);
            if (r < 0) {
                free(ra.pages);
                return done ? (ssize_t)done : r;
            }
            int64_t valid = fsize - (int64_t)index * (int64_t)CFS_PAGE;
            if (valid < (int64_t)CFS_PAGE)
                memset(page + valid, 0, CFS_PAGE - (size_t)valid);
        }

        victim.put = false;
        pthread_mutex_lock(&c->lock);
        if (ino->gen == gen)
            cfs_pc_insert_locked(c, ino, index, page, &victim);
        pthread_mutex_unlock(&c->lock);
        if (victim.put)
            cfs_tier_put(c->tier, &victim.key, victim.index, victim.data);
        memcpy(buf + done, page + pofs, n);
        done += n;
    }
    free(ra.pages);
    CFS_ADD(c->st, read_bytes, done);
    return (ssize_t)done;
}

ssize_t cfs_data_write(struct cfs_cache *c, struct cfs_inode *ino, int fd, const char *buf,
                       size_t size, off_t off, bool append)
{
    pthread_mutex_lock(&ino->wlock);
    if (append) {
        struct stat s;
        if (fstat(fd, &s) != 0) {
            int e = errno;
            pthread_mutex_unlock(&ino->wlock);
            return -e;
        }
        off = s.st_size;
    }
    ssize_t r = cfs_backing_write(c->backing, fd, buf, size, off);
    if (r > 0) {
        tmem_cleancache_filekey_t old_key;
        pthread_mutex_lock(&c->lock);
        bool invalidate = cfs_inode_change_locked(c, ino, &old_key);
        size_t done = 0;
        while (done < (size_t)r) {
            off_t pos = off + (off_t)done;
            size_t pofs = (size_t)(pos % (off_t)CFS_PAGE);
            size_t n = CFS_PAGE - pofs;
            if (n > (size_t)r - done)
                n = (size_t)r - done;
            if ((uint64_t)pos / CFS_PAGE <= UINT32_MAX)
                cfs_pc_write_locked(&c->pc, ino, (uint32_t)(pos / (off_t)CFS_PAGE),
                                    buf + done, pofs, n);
            done += n;
        }
        if (off + r > ino->size)
            ino->size = off + r;
        pthread_mutex_unlock(&c->lock);
        if (invalidate)
            cfs_tier_invalidate_inode(c->tier, &old_key);
        CFS_ADD(c->st, write_bytes, (uint64_t)r);
    }
    pthread_mutex_unlock(&ino->wlock);
    return r;
}

int cfs_data_truncate(struct cfs_cache *c, struct cfs_inode *ino, int fd, const char *rel,
                      off_t size)
{
    if (ino)
        pthread_mutex_lock(&ino->wlock);
    int r;
    if (fd >= 0) {
        r = ftruncate(fd, size) == 0 ? 0 : -errno;
    } else {
        /* no truncateat(): a descriptor for writing, then ftruncate */
        int tfd = openat(c->backing->dirfd, rel, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (tfd < 0) {
            r = -errno;
        } else {
            r = ftruncate(tfd, size) == 0 ? 0 : -errno;
            close(tfd);
        }
    }
    if (r == 0 && ino) {
        tmem_cleancache_filekey_t old_key;
        pthread_mutex_lock(&c->lock);
        bool invalidate = cfs_inode_change_locked(c, ino, &old_key);
        uint64_t from = ((uint64_t)size + CFS_PAGE - 1) / CFS_PAGE;
        if (from > UINT32_MAX)
            from = UINT32_MAX;
        CFS_ADD(c->st, local_dropped,
                cfs_pc_truncate_locked(&c->pc, ino, (uint32_t)from, (size_t)size % CFS_PAGE));
        ino->size = size;
        pthread_mutex_unlock(&c->lock);
        if (invalidate)
            cfs_tier_invalidate_inode(c->tier, &old_key);
    }
    if (ino)
        pthread_mutex_unlock(&ino->wlock);
    return r;
}
