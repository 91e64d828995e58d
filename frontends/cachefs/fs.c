/* SPDX-License-Identifier: MIT */
/*
 * fs.c - the FUSE operations: metadata passes through to the backing
 * directory (every path is resolved relative to its descriptor), file data
 * goes through the data path (data.c).
 *
 * Every file is opened with direct_io, so the kernel keeps no page cache
 * of its own and every read reaches us; attribute and entry timeouts are
 * zero, so another tenant's changes to the backing directory show at once.
 * The root has one virtual file, /.cachefs-stats (read-only, a snapshot of
 * the statistics taken at open), and hides the backing directory's uuid
 * file.  Removing or replacing a file through the mount (unlink,
 * rename over it) drops its cached pages and its cleancache key; any other
 * change of a file (chmod, link, rename) moves its ctime, which the next
 * open notices (inode.c).
 *
 * Running as root, new files, directories and links are given to the
 * calling user; permissions are checked by the kernel (default_permissions,
 * added by main.c).
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cachefs.h"

/* One open file: a backing descriptor and the file's inode, or the
 * statistics snapshot (fd -1). */
struct cfs_handle {
    int fd;
    struct cfs_inode *inode;
    bool append;
    char *text;
    size_t len;
};

struct cfs_dir {
    DIR *d;
    bool root;
};

#define STATS_INO ((ino_t)-2)

static struct cfs_fs *FS(void)
{
    return fuse_get_context()->private_data;
}

static struct cfs_handle *H(const struct fuse_file_info *fi)
{
    return fi ? (struct cfs_handle *)(uintptr_t)fi->fh : NULL;
}

static bool is_stats(const char *path)
{
    return path && strcmp(path, CFS_STATS_NAME) == 0;
}

/* A root name the mount hides (the uuid file). */
static bool is_hidden(const char *path)
{
    if (!path || path[0] != '/' || strchr(path + 1, '/'))
        return false;
    return cfs_dirid_hidden(path + 1);
}

/* Names the mount owns: nothing may be created, removed or renamed there. */
static int reserved(const char *path)
{
    if (is_stats(path))
        return -EPERM;
    if (is_hidden(path))
        return -EPERM;
    return 0;
}

static int neg_errno(int r)
{
    return r == 0 ? 0 : -errno;
}

/* Running as root, a new node is given to the caller (a descriptor, or a
 * path when fd < 0): best effort, as a setgid directory would. */
static bool foreign_caller(uid_t *uid, gid_t *gid)
{
    if (geteuid() != 0)
        return false;
    const struct fuse_context *cx = fuse_get_context();
    *uid = cx->uid;
    *gid = cx->gid;
    return cx->uid != 0 || cx->gid != 0;
}

static void own_at(int dirfd, const char *rel)
{
    uid_t uid;
    gid_t gid;
    if (foreign_caller(&uid, &gid) && fchownat(dirfd, rel, uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return;
}

static void own_fd(int fd)
{
    uid_t uid;
    gid_t gid;
    if (foreign_caller(&uid, &gid) && fchown(fd, uid, gid) != 0)
        return;
}

static void stats_attr(struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_ino = STATS_INO;
    st->st_blksize = (blksize_t)CFS_PAGE;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    st->st_atim = st->st_mtim = st->st_ctim = now;
}

static void *cfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    cfg->use_ino = 1;
    cfg->readdir_ino = 1;
    cfg->hard_remove = 1;       /* no .fuse_hidden files: handles keep descriptors */
    cfg->nullpath_ok = 1;
    cfg->direct_io = 1;
    cfg->kernel_cache = 0;
    cfg->auto_cache = 0;
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    return FS();
}

static int cfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct cfs_handle *h = H(fi);
    if (h) {
        if (h->fd < 0) {
            stats_attr(st);
            return 0;
        }
        return neg_errno(fstat(h->fd, st));
    }
    if (is_stats(path)) {
        stats_attr(st);
        return 0;
    }
    if (!path || is_hidden(path))
        return -ENOENT;
    return neg_errno(fstatat(FS()->backing.dirfd, cfs_rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int cfs_readlink(const char *path, char *buf, size_t size)
{
    if (size == 0)
        return -EINVAL;
    if (is_hidden(path))
        return -ENOENT;
    ssize_t n = readlinkat(FS()->backing.dirfd, cfs_rel(path), buf, size - 1);
    if (n < 0)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static int cfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
    int r = reserved(path);
    if (r)
        return r;
    int dfd = FS()->backing.dirfd;
    const char *rel = cfs_rel(path);
    if (mknodat(dfd, rel, mode, rdev) != 0)
        return -errno;
    own_at(dfd, rel);
    return 0;
}

static int cfs_mkdir(const char *path, mode_t mode)
{
    int r = reserved(path);
    if (r)
        return r;
    int dfd = FS()->backing.dirfd;
    const char *rel = cfs_rel(path);
    if (mkdirat(dfd, rel, mode) != 0)
        return -errno;
    own_at(dfd, rel);
    return 0;
}

/* The inode of the regular file at rel, if this mount knows it. */
static struct cfs_inode *known(struct cfs_fs *fs, const char *rel, ino_t *ino_out)
{
    struct stat st;
    if (fstatat(fs->backing.dirfd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return NULL;
    if (ino_out)
        *ino_out = st.st_ino;
    return cfs_inode_find(&fs->cache, st.st_dev, st.st_ino);
}

static int cfs_unlink(const char *path)
{
    if (is_hidden(path))
        return -ENOENT;
    if (is_stats(path))
        return -EPERM;
    struct cfs_fs *fs = FS();
    const char *rel = cfs_rel(path);
    struct cfs_inode *ino = known(fs, rel, NULL);
    int r = neg_errno(unlinkat(fs->backing.dirfd, rel, 0));
    if (ino) {
        if (r == 0)
            cfs_inode_gone(&fs->cache, ino);
        cfs_inode_release(&fs->cache, ino);
    }
    return r;
}

static int cfs_rmdir(const char *path)
{
    if (is_hidden(path))
        return -ENOENT;
    return neg_errno(unlinkat(FS()->backing.dirfd, cfs_rel(path), AT_REMOVEDIR));
}

static int cfs_symlink(const char *target, const char *path)
{
    int r = reserved(path);
    if (r)
        return r;
    int dfd = FS()->backing.dirfd;
    const char *rel = cfs_rel(path);
    if (symlinkat(target, dfd, rel) != 0)
        return -errno;
    own_at(dfd, rel);
    return 0;
}

static int cfs_rename(const char *from, const char *to, unsigned int flags)
{
    if (is_hidden(from))
        return -ENOENT;
    int r = reserved(from);
    if (r || (r = reserved(to)))
        return r;
    struct cfs_fs *fs = FS();
    const char *rfrom = cfs_rel(from), *rto = cfs_rel(to);
    /* a file renamed over is gone, unless it is the same file */
    struct cfs_inode *target = NULL;
    if (!(flags & RENAME_EXCHANGE)) {
        struct stat sf;
        ino_t tino = 0;
        target = known(fs, rto, &tino);
        if (target && fstatat(fs->backing.dirfd, rfrom, &sf, AT_SYMLINK_NOFOLLOW) == 0 &&
            sf.st_ino == tino && sf.st_dev == target->dev) {
            cfs_inode_release(&fs->cache, target);
            target = NULL;
        }
    }
    r = neg_errno(renameat2(fs->backing.dirfd, rfrom, fs->backing.dirfd, rto, flags));
    if (target) {
        if (r == 0)
            cfs_inode_gone(&fs->cache, target);
        cfs_inode_release(&fs->cache, target);
    }
    return r;
}

static int cfs_link(const char *from, const char *to)
{
    if (is_hidden(from))
        return -ENOENT;
    int r = reserved(from);
    if (r || (r = reserved(to)))
        return r;
    int dfd = FS()->backing.dirfd;
    return neg_errno(linkat(dfd, cfs_rel(from), dfd, cfs_rel(to), 0));
}

static int cfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    struct cfs_handle *h = H(fi);
    if (h && h->fd >= 0)
        return neg_errno(fchmod(h->fd, mode));
    if (h || is_stats(path))
        return -EPERM;
    if (!path || is_hidden(path))
        return -ENOENT;
    return neg_errno(fchmodat(FS()->backing.dirfd, cfs_rel(path), mode, 0));
}

static int cfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
    struct cfs_handle *h = H(fi);
    if (h && h->fd >= 0)
        return neg_errno(fchown(h->fd, uid, gid));
    if (h || is_stats(path))
        return -EPERM;
    if (!path || is_hidden(path))
        return -ENOENT;
    return neg_errno(fchownat(FS()->backing.dirfd, cfs_rel(path), uid, gid,
                              AT_SYMLINK_NOFOLLOW));
}

static int cfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    struct cfs_fs *fs = FS();
    struct cfs_handle *h = H(fi);
    if (size < 0)
        return -EINVAL;
    if (h && h->fd >= 0)
        return cfs_data_truncate(&fs->cache, h->inode, h->fd, NULL, size);
    if (h || is_stats(path))
        return -EPERM;
    if (!path || is_hidden(path))
        return -ENOENT;
    const char *rel = cfs_rel(path);
    struct cfs_inode *ino = known(fs, rel, NULL);
    int r = cfs_data_truncate(&fs->cache, ino, -1, rel, size);
    cfs_inode_release(&fs->cache, ino);
    return r;
}

static int cfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    struct cfs_handle *h = H(fi);
    if (h && h->fd >= 0)
        return neg_errno(futimens(h->fd, tv));
    if (h || is_stats(path))
        return -EPERM;
    if (!path || is_hidden(path))
        return -ENOENT;
    return neg_errno(utimensat(FS()->backing.dirfd, cfs_rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

/* The handle of an opened backing descriptor fd (closed on failure). */
static int attach(struct cfs_fs *fs, int fd, struct fuse_file_info *fi)
{
    int acc = fi->flags & O_ACCMODE;
    bool may_wait = acc == O_RDONLY && !(fi->flags & O_TRUNC);
    struct cfs_handle *h = calloc(1, sizeof(*h));
    if (!h) {
        close(fd);
        return -ENOMEM;
    }
    int r = cfs_inode_open(&fs->cache, fd, may_wait, &h->inode);
    if (r) {
        close(fd);
        free(h);
        return r;
    }
    h->fd = fd;
    h->append = (fi->flags & O_APPEND) != 0;
    fi->fh = (uint64_t)(uintptr_t)h;
    fi->direct_io = 1;
    fi->keep_cache = 0;
    return 0;
}

/* Flags for the backing open: no O_APPEND (writes name their offset: we
 * must know where the bytes land), no O_DIRECT (we read whole pages into
 * our own buffers). */
static int backing_flags(int flags)
{
    return (flags & ~(O_APPEND | O_DIRECT | O_NOCTTY)) | O_CLOEXEC;
}

static int cfs_open(const char *path, struct fuse_file_info *fi)
{
    struct cfs_fs *fs = FS();
    if (is_stats(path)) {
        if ((fi->flags & O_ACCMODE) != O_RDONLY)
            return -EACCES;
        struct cfs_handle *h = calloc(1, sizeof(*h));
        char *text = malloc(8192);
        if (!h || !text) {
            free(h);
            free(text);
            return -ENOMEM;
        }
        h->fd = -1;
        h->text = text;
        h->len = cfs_stats_format(fs, text, 8192);
        fi->fh = (uint64_t)(uintptr_t)h;
        fi->direct_io = 1;
        return 0;
    }
    if (is_hidden(path))
        return -ENOENT;
    int fd = openat(fs->backing.dirfd, cfs_rel(path), backing_flags(fi->flags) & ~O_CREAT);
    if (fd < 0)
        return -errno;
    return attach(fs, fd, fi);
}

static int cfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    int r = reserved(path);
    if (r)
        return r;
    struct cfs_fs *fs = FS();
    int fd = openat(fs->backing.dirfd, cfs_rel(path), backing_flags(fi->flags) | O_CREAT, mode);
    if (fd < 0)
        return -errno;
    own_fd(fd);
    return attach(fs, fd, fi);
}

static int cfs_read(const char *path, char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_handle *h = H(fi);
    if (off < 0)
        return -EINVAL;
    if (h->fd < 0) {
        if ((size_t)off >= h->len)
            return 0;
        size_t n = h->len - (size_t)off < size ? h->len - (size_t)off : size;
        memcpy(buf, h->text + off, n);
        return (int)n;
    }
    if (size > INT32_MAX)
        size = INT32_MAX;
    return (int)cfs_data_read(&FS()->cache, h->inode, h->fd, buf, size, off);
}

static int cfs_write(const char *path, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_handle *h = H(fi);
    if (h->fd < 0)
        return -EBADF;
    if (off < 0)
        return -EINVAL;
    if (size > INT32_MAX)
        size = INT32_MAX;
    return (int)cfs_data_write(&FS()->cache, h->inode, h->fd, buf, size, off, h->append);
}

static int cfs_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    return neg_errno(fstatvfs(FS()->backing.dirfd, st));
}

static int cfs_flush(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    (void)fi;
    return 0;                           /* writes went through already */
}

static int cfs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_handle *h = H(fi);
    if (h->fd >= 0)
        close(h->fd);
    cfs_inode_release(&FS()->cache, h->inode);
    free(h->text);
    free(h);
    return 0;
}

static int cfs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_handle *h = H(fi);
    if (h->fd < 0)
        return 0;
    return neg_errno(datasync ? fdatasync(h->fd) : fsync(h->fd));
}

/* Extended attributes: through /proc/self/fd/<backing dir>/<path>, which
 * the l*xattr calls resolve without following the last component. */
static void xpath(const char *path, char *out, size_t len)
{
    snprintf(out, len, "/proc/self/fd/%d/%s", FS()->backing.dirfd, cfs_rel(path));
}

static int cfs_setxattr(const char *path, const char *name, const char *value, size_t size,
                        int flags)
{
    if (is_stats(path) || is_hidden(path))
        return -EPERM;
    char p[PATH_MAX + 64];
    xpath(path, p, sizeof(p));
    return neg_errno(lsetxattr(p, name, value, size, flags));
}

static int cfs_getxattr(const char *path, const char *name, char *value, size_t size)
{
    if (is_stats(path))
        return -ENODATA;
    if (is_hidden(path))
        return -ENOENT;
    char p[PATH_MAX + 64];
    xpath(path, p, sizeof(p));
    ssize_t n = lgetxattr(p, name, value, size);
    return n < 0 ? -errno : (int)n;
}

static int cfs_listxattr(const char *path, char *list, size_t size)
{
    if (is_stats(path))
        return 0;
    if (is_hidden(path))
        return -ENOENT;
    char p[PATH_MAX + 64];
    xpath(path, p, sizeof(p));
    ssize_t n = llistxattr(p, list, size);
    return n < 0 ? -errno : (int)n;
}

static int cfs_removexattr(const char *path, const char *name)
{
    if (is_stats(path) || is_hidden(path))
        return -EPERM;
    char p[PATH_MAX + 64];
    xpath(path, p, sizeof(p));
    return neg_errno(lremovexattr(p, name));
}

static int cfs_opendir(const char *path, struct fuse_file_info *fi)
{
    if (is_hidden(path) || is_stats(path))
        return -ENOTDIR;
    int fd = openat(FS()->backing.dirfd, cfs_rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct cfs_dir *d = calloc(1, sizeof(*d));
    if (!d || !(d->d = fdopendir(fd))) {
        int e = d ? errno : ENOMEM;
        close(fd);
        free(d);
        return -e;
    }
    d->root = strcmp(cfs_rel(path), ".") == 0;
    fi->fh = (uint64_t)(uintptr_t)d;
    return 0;
}

static int cfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off,
                       struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    (void)off;
    (void)flags;
    struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;
    /* every entry in one call (offsets 0): libfuse keeps the listing */
    rewinddir(d->d);
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d->d);
        if (!e)
            return errno ? -errno : 0;
        if (d->root && (cfs_dirid_hidden(e->d_name) || strcmp(e->d_name, CFS_STATS_NAME + 1) == 0))
            continue;
        struct stat st;
        memset(&st, 0, sizeof(st));
        st.st_ino = e->d_ino;
        st.st_mode = (mode_t)DTTOIF(e->d_type);
        if (filler(buf, e->d_name, &st, 0, 0))
            return 0;
    }
}

static int cfs_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;
    closedir(d->d);
    free(d);
    return 0;
}

static int cfs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi)
{
    (void)path;
    struct cfs_dir *d = (struct cfs_dir *)(uintptr_t)fi->fh;
    int fd = dirfd(d->d);
    return neg_errno(datasync ? fdatasync(fd) : fsync(fd));
}

const struct fuse_operations cfs_ops = {
    .init = cfs_init,
    .getattr = cfs_getattr,
    .readlink = cfs_readlink,
    .mknod = cfs_mknod,
    .mkdir = cfs_mkdir,
    .unlink = cfs_unlink,
    .rmdir = cfs_rmdir,
    .symlink = cfs_symlink,
    .rename = cfs_rename,
    .link = cfs_link,
    .chmod = cfs_chmod,
    .chown = cfs_chown,
    .truncate = cfs_truncate,
    .open = cfs_open,
    .read = cfs_read,
    .write = cfs_write,
    .statfs = cfs_statfs,
    .flush = cfs_flush,
    .release = cfs_release,
    .fsync = cfs_fsync,
    .setxattr = cfs_setxattr,
    .getxattr = cfs_getxattr,
    .listxattr = cfs_listxattr,
    .removexattr = cfs_removexattr,
    .opendir = cfs_opendir,
    .readdir = cfs_readdir,
    .releasedir = cfs_releasedir,
    .fsyncdir = cfs_fsyncdir,
    .create = cfs_create,
    .utimens = cfs_utimens,
};
