/* SPDX-License-Identifier: MIT */
/*
 * backing.c - the slow backing store: a directory reached through a
 * descriptor, read and written a page at a time with an artificial delay.
 *
 * The delay stands for a disk or a network: --delay-us N is paid once per
 * page read from the backing store, and once per page a write touches (a
 * 10-byte write costs one delay, a 64 KiB aligned write sixteen).  Metadata
 * calls (stat, open, rename, ...) pay nothing.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cachefs.h"

int cfs_backing_init(struct cfs_backing *b, const char *path, unsigned long delay_us,
                     struct cfs_stats *st)
{
    memset(b, 0, sizeof(*b));
    b->dirfd = -1;
    b->path = realpath(path, NULL);
    if (!b->path)
        return -errno;
    b->dirfd = open(b->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dirfd < 0) {
        int e = errno;
        free(b->path);
        b->path = NULL;
        return -e;
    }
    struct stat s;
    if (fstat(b->dirfd, &s) != 0) {
        int e = errno;
        cfs_backing_fini(b);
        return -e;
    }
    b->dev = s.st_dev;
    b->delay_us = delay_us;
    b->st = st;
    return 0;
}

void cfs_backing_fini(struct cfs_backing *b)
{
    if (b->dirfd >= 0)
        close(b->dirfd);
    b->dirfd = -1;
    free(b->path);
    b->path = NULL;
}

const char *cfs_rel(const char *path)
{
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

static void delay(const struct cfs_backing *b, size_t pages)
{
    if (!b->delay_us || !pages)
        return;
    unsigned long long us = (unsigned long long)b->delay_us * pages;
    struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

ssize_t cfs_backing_read_page(struct cfs_backing *b, int fd, uint32_t index, void *page)
{
    delay(b, 1);
    size_t got = 0;
    off_t off = (off_t)index * (off_t)CFS_PAGE;
    while (got < CFS_PAGE) {
        ssize_t r = pread(fd, (char *)page + got, CFS_PAGE - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    memset((char *)page + got, 0, CFS_PAGE - got);
    CFS_INC(b->st, backing_reads);
    CFS_ADD(b->st, backing_read_bytes, got);
    return (ssize_t)got;
}

ssize_t cfs_backing_write(struct cfs_backing *b, int fd, const void *buf, size_t size,
                          off_t off)
{
    if (size == 0)
        return 0;
    size_t pages = (size_t)((off + (off_t)size - 1) / (off_t)CFS_PAGE - off / (off_t)CFS_PAGE) + 1;
    delay(b, pages);
    size_t done = 0;
    while (done < size) {
        ssize_t r = pwrite(fd, (const char *)buf + done, size - done, off + (off_t)done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (done)
                break;
            return -errno;
        }
        done += (size_t)r;
    }
    CFS_ADD(b->st, backing_writes, pages);
    CFS_ADD(b->st, backing_write_bytes, done);
    return (ssize_t)done;
}
