/* SPDX-License-Identifier: MIT */
/*
 * dirid.c - the uuid that names a backing directory's shared pool.
 *
 * Every mount of one backing directory must find the same uuid, and two
 * different directories must never share one (their files' keys could
 * meet).  The uuid is random, kept in CFS_UUID_FILE in the directory
 * (written at the first mount, by link() so that two first mounts agree),
 * together with the identity of the directory it was made for: the
 * filesystem id (statfs f_fsid) and the directory's inode number.  A copy
 * of the directory (cp -a, rsync) carries the file but not the identity, so
 * its first mount replaces the uuid.  A read-only directory gets a uuid
 * derived from the same identity instead (every mount derives the same).
 *
 * The mount hides the file (and its temporary files) from listings and
 * refuses to let it be opened, created or removed through the mount.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "cachefs.h"

bool cfs_dirid_hidden(const char *name)
{
    size_t n = strlen(CFS_UUID_FILE);
    return strncmp(name, CFS_UUID_FILE, n) == 0 && (name[n] == '\0' || name[n] == '.');
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* "fsid:XXXXXXXXXXXXXXXX ino:N" */
static int identity(int dirfd, char *out, size_t len, uint64_t *fsid, uint64_t *ino)
{
    struct stat s;
    struct statfs sf;
    if (fstat(dirfd, &s) != 0 || fstatfs(dirfd, &sf) != 0)
        return -errno;
    int v[2];
    memcpy(v, &sf.f_fsid, sizeof(v));
    *fsid = (uint64_t)(uint32_t)v[0] << 32 | (uint32_t)v[1];
    *ino = (uint64_t)s.st_ino;
    snprintf(out, len, "fsid:%016" PRIx64 " ino:%" PRIu64, *fsid, *ino);
    return 0;
}

/* 0: the file names a uuid for this identity; 1: it exists but is not
 * ours (or garbled); -ENOENT: no file; other -errno. */
static int read_file(int dirfd, const char *ident, tmem_uuid_t *out)
{
    int fd = openat(dirfd, CFS_UUID_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    char buf[1024];
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return -e;
    buf[n] = '\0';
    char *u = strstr(buf, "\nuuid ");
    char *d = strstr(buf, "\ndir ");
    if (!u || !d)
        return 1;
    u += 6;
    d += 5;
    char text[37];
    if (strlen(u) < 36)
        return 1;
    memcpy(text, u, 36);
    text[36] = '\0';
    char *eol = strchr(d, '\n');
    if (eol)
        *eol = '\0';
    if (tmem_uuid_parse(text, out) != 0)
        return 1;
    return strcmp(d, ident) == 0 ? 0 : 1;
}

/* Writes a fresh uuid for ident as CFS_UUID_FILE: by link() if there is no
 * file (a concurrent first mount may win: EEXIST, fine), by rename() over
 * a file made for another directory.  0 or -errno. */
static int write_file(int dirfd, const char *ident, bool replace)
{
    uint8_t b[16];
    if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
        return -EIO;
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);     /* version 4 (random) */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);     /* RFC 4122 variant */
    tmem_uuid_t u = { 0, 0 };
    for (int i = 7; i >= 0; i--) {
        u.lo = u.lo << 8 | b[i];
        u.hi = u.hi << 8 | b[i + 8];
    }
    char text[37], tmp[64];
    tmem_uuid_format(u, text);
    snprintf(tmp, sizeof(tmp), CFS_UUID_FILE ".%ld.tmp", (long)getpid());
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    char body[512];
    int len = snprintf(body, sizeof(body),
                       "# tmem-cachefs: the uuid of this directory's shared cleancache pool\n"
                       "uuid %s\n"
                       "dir %s\n", text, ident);
    int r = 0;
    if (write(fd, body, (size_t)len) != len || fsync(fd) != 0)
        r = errno ? -errno : -EIO;
    close(fd);
    if (r == 0) {
        if (replace)
            r = renameat(dirfd, tmp, dirfd, CFS_UUID_FILE) == 0 ? 0 : -errno;
        else if (linkat(dirfd, tmp, dirfd, CFS_UUID_FILE, 0) != 0 && errno != EEXIST)
            r = -errno;
    }
    unlinkat(dirfd, tmp, 0);
    return r;
}

int cfs_dirid_get(int dirfd, tmem_uuid_t *out, char *err, size_t errlen)
{
    char ident[128];
    uint64_t fsid = 0, ino = 0;
    int r = identity(dirfd, ident, sizeof(ident), &fsid, &ino);
    if (r) {
        snprintf(err, errlen, "cannot stat the backing directory: %s", strerror(-r));
        return r;
    }
    for (int attempt = 0; attempt < 4; attempt++) {
        r = read_file(dirfd, ident, out);
        if (r == 0)
            return 0;
        if (r < 0 && r != -ENOENT) {
            snprintf(err, errlen, "%s: %s", CFS_UUID_FILE, strerror(-r));
            return r;
        }
        if (r == 1)
            fprintf(stderr, CFS_PROG ": %s was written for another directory (a copy?) "
                    "or is damaged: a new uuid\n", CFS_UUID_FILE);
        int w = write_file(dirfd, ident, r == 1);
        if (w == -EROFS || w == -EACCES || w == -EPERM) {
            /* read-only: the same uuid for every mount, from the identity */
            out->lo = mix(fsid ^ 0x746d656d2d636673ull);    /* "tmem-cfs" */
            out->hi = mix(ino ^ mix(fsid));
            return 0;
        }
        if (w < 0) {
            snprintf(err, errlen, "cannot write %s: %s", CFS_UUID_FILE, strerror(-w));
            return w;
        }
    }
    snprintf(err, errlen, "%s keeps changing under us", CFS_UUID_FILE);
    return -EAGAIN;
}
