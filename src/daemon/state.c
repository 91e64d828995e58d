/* SPDX-License-Identifier: MIT */
/*
 * state.c - the state file: clients' persistent pages across a clean
 * restart of the daemon (cfg.state_file, --state-file).
 *
 * At a clean stop (SIGTERM, SIGINT), once tmd_server_quiesce has stopped
 * every worker and closed every connection, each client with at least one
 * persistent page, connected or parked, is written with its identity (uid,
 * gid, name) and its engine save stream (tmem_client_save).  The file is
 * written under PATH.tmp, fsync'ed, renamed into place and its directory
 * fsync'ed: the file at PATH is whole or absent.  At start-up, before the
 * sockets appear, each record is restored into a new engine client and
 * parked (server.c), so that the owner's reconnection (same uid, same name)
 * adopts it; then the file is removed, so that a later crash can never
 * bring stale pages back.
 *
 * Format (little-endian, this host's: the file never travels):
 *
 *   header   "TMEMSTAT" u32 version(1) u32 header_size u64 saved_at(unix s)
 *            u64 check                                      (struct st_header)
 *   record*  u32 "CLNT" u32 uid u32 gid u32 0 char name[64] u64 stream_len
 *            u64 pages u64 stream_check u64 check           (struct st_record)
 *            then stream_len bytes: the client's save stream
 *   trailer  u32 "END." u32 0 u64 records u64 pages u64 stream_bytes u64 chain
 *            u64 check                                      (struct st_trailer)
 *
 * Every check is XXH64: a header's and a record's of its own bytes before
 * the field, stream_check of the stream, the trailer's chain of the header's
 * and every record's check in order (so the whole file is covered), and the
 * trailer's own check.  Nothing may follow the trailer.
 *
 * A damaged file (bad magic or version, a bad check, a field out of range,
 * cut short, bytes after the end) is refused from the first damaged place
 * on: the clients restored from the records before it (each verified whole)
 * are kept, the file is renamed to PATH.bad, and the daemon starts.  A
 * record whose pages do not fit (max_memory) or that the engine refuses is
 * logged and skipped: the file is sound, the others are restored (the
 * engine checks the stream's settings as every other setter does: a weight
 * above TMEM_WEIGHT_MAX or a cap above TMEM_CAP_MAX is refused so).  A
 * record's name is taken as a HELLO's is (tmd_sanitize_name: a control
 * character becomes '_'), so its owner, whose HELLO is sanitised the same
 * way, still adopts it, and the log shows no raw byte of it.  Two
 * clients with the same uid and name are both left out at save time: which
 * owner would adopt which is ambiguous, and a client must never adopt
 * another's pages.
 *
 * The file holds the clients' data (swap pages): it is created 0600, and
 * at start-up one not owned by the daemon's user, or writable by others, is
 * refused (renamed to PATH.bad).  Something at PATH that is not a regular
 * file (a FIFO, a device, a directory) is never read (it is opened without
 * blocking, then looked at), renamed or replaced: the daemon logs it and
 * starts without it, and the save at stop refuses to write over it.  A
 * symbolic link is not followed (not read, logged); the save replaces the
 * link itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "daemon/daemon.h"

#define ST_VERSION   1u
#define ST_RECORD    0x544e4c43u    /* "CLNT" */
#define ST_TRAILER   0x2e444e45u    /* "END." */
#define ST_BUF       (1u << 20)     /* file I/O in 1 MiB pieces */
#define ST_NAME      64
static const char st_magic[8] = { 'T', 'M', 'E', 'M', 'S', 'T', 'A', 'T' };

struct st_header {
    char     magic[8];
    uint32_t version, header_size;
    uint64_t saved_at;
    uint64_t check;             /* XXH64 of the fields above */
};

struct st_record {
    uint32_t tag, uid, gid, reserved;
    char     name[ST_NAME];     /* NUL-terminated, NUL-padded */
    uint64_t stream_len, pages, stream_check;
    uint64_t check;             /* XXH64 of the fields above */
};

struct st_trailer {
    uint32_t tag, reserved;
    uint64_t records, pages, stream_bytes;
    uint64_t chain;             /* XXH64 of the header's and each record's check */
    uint64_t check;             /* XXH64 of the fields above */
};

_Static_assert(sizeof(struct st_header) == 32, "state file header layout");
_Static_assert(sizeof(struct st_record) == 112, "state file record layout");
_Static_assert(sizeof(struct st_trailer) == 48, "state file trailer layout");
_Static_assert(TMW_NAME_MAX == ST_NAME, "a record holds a whole client name");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the file is written little-endian");

#define CHECK_OF(p) XXH64((p), offsetof(__typeof__(*(p)), check), 0)

/* PATH with a suffix; -ENAMETOOLONG if it does not fit. */
static int path_with(char out[PATH_MAX], const char *path, const char *suffix)
{
    int n = snprintf(out, PATH_MAX, "%s%s", path, suffix);
    return n < 0 || n >= PATH_MAX ? -ENAMETOOLONG : 0;
}

/* fsync of the directory holding path, so that a rename or unlink in it
 * is durable. */
static void sync_dir(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        if (fsync(fd) != 0)
            tmd_log(LOG_WARNING, "state file: fsync of %s: %s", dir, strerror(errno));
        close(fd);
    }
}

/* ------------------------------------------------------------------------
 * Saving
 * ---------------------------------------------------------------------- */
struct wr {
    int fd;
    uint8_t *buf;
    size_t fill;
    uint64_t off;               /* file offset of buf[0] */
    XXH64_state_t *h;           /* hashes a record's stream (NULL outside one) */
    uint64_t n;                 /* bytes of that stream */
    int err;                    /* the first write error (0 none) */
};

static int write_all(int fd, const void *p, size_t len, uint64_t off)
{
    const uint8_t *q = p;
    while (len) {
        ssize_t n = pwrite(fd, q, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        q += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

static int wr_flush(struct wr *w)
{
    int rc = write_all(w->fd, w->buf, w->fill, w->off);
    w->off += w->fill;
    w->fill = 0;
    if (rc < 0)
        w->err = rc;
    return rc;
}

/* tmem_write_fn, and the writer of the framing. */
static int wr_write(void *arg, const void *p, size_t len)
{
    struct wr *w = arg;
    const uint8_t *q = p;
    if (w->h) {
        XXH64_update(w->h, p, len);
        w->n += len;
    }
    while (len) {
        size_t n = ST_BUF - w->fill;
        if (n > len)
            n = len;
        memcpy(w->buf + w->fill, q, n);
        w->fill += n;
        q += n;
        len -= n;
        if (w->fill == ST_BUF) {
            int rc = wr_flush(w);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Is another client of the list (uid, name) too?  (Such are not saved.) */
static bool ambiguous(const struct tmw_ctl_client *v, const struct st_record *id, size_t n,
                      size_t self, struct tmd *d)
{
    for (size_t j = 0; j < n; j++) {
        uint32_t uid, gid;
        char name[TMW_NAME_MAX];
        if (j == self || tmd_client_identity(d, v[j].info.id, &uid, &gid, name) != 0)
            continue;
        if (uid == id->uid && strcmp(name, id->name) == 0)
            return true;
    }
    return false;
}

/* Writes client v[i]'s record at w's position, its stream hashed with h.
 * 1 written (*out is its record), 0 left out (gone meanwhile, or
 * ambiguous: logged), -errno a write error. */
static int save_client(struct tmd *d, struct wr *w, XXH64_state_t *h,
                       const struct tmw_ctl_client *v, size_t n, size_t i, struct st_record *out)
{
    struct st_record r;
    memset(&r, 0, sizeof(r));
    r.tag = ST_RECORD;
    char name[TMW_NAME_MAX];
    if (tmd_client_identity(d, v[i].info.id, &r.uid, &r.gid, name) != 0)
        return 0;
    name[TMW_NAME_MAX - 1] = '\0';
    memcpy(r.name, name, strlen(name));
    if (ambiguous(v, &r, n, i, d)) {
        tmd_log(LOG_ERR, "state file: client %u (uid %u \"%s\", %" PRIu64 " persistent pages) "
                "not saved: another client has the same uid and name, and which owner "
                "would adopt which is ambiguous", v[i].info.id, (unsigned)r.uid, name,
                v[i].info.persistent_pages);
        return 0;
    }
    int rc = wr_flush(w);
    if (rc < 0)
        return rc;
    uint64_t at = w->off;
    rc = wr_write(w, &r, sizeof(r));            /* a place holder, rewritten below */
    if (rc < 0)
        return rc;
    XXH64_reset(h, 0);
    w->h = h;
    w->n = 0;
    int64_t pages = tmem_client_save(d->engine, v[i].info.id, wr_write, w);
    w->h = NULL;
    if (pages < 0) {
        /* a write error ends the save; the engine's (the client went, no
         * memory) leaves this client out */
        if (w->err)
            return w->err;
        w->fill = 0;
        w->off = at;
        if (ftruncate(w->fd, (off_t)at) != 0)
            return -errno;
        tmd_log(LOG_ERR, "state file: client %u (uid %u \"%s\") not saved: %s", v[i].info.id,
                (unsigned)r.uid, name, strerror((int)-pages));
        return 0;
    }
    r.stream_len = w->n;
    r.pages = (uint64_t)pages;
    r.stream_check = XXH64_digest(h);
    r.check = CHECK_OF(&r);
    if ((rc = wr_flush(w)) < 0 || (rc = write_all(w->fd, &r, sizeof(r), at)) < 0)
        return rc;
    *out = r;
    tmd_log(LOG_DEBUG, "state file: client %u (uid %u \"%s\"): %" PRId64 " persistent pages, "
            "%" PRIu64 " bytes", v[i].info.id, (unsigned)r.uid, name, pages, r.stream_len);
    return 1;
}

int tmd_state_save(struct tmd *d)
{
    const char *path = d->cfg.state_file;
    if (!path[0])
        return 0;
    /* what is at path now is replaced (or removed) only if it is a regular
     * file or a symbolic link (the link itself, never what it points to):
     * a FIFO, a device or a directory is left alone */
    struct stat st;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
        tmd_log(LOG_ERR, "state file %s: not a regular file (%s): not replaced; the persistent "
                "pages of every client are lost", path, tmd_file_kind(st.st_mode));
        return -EEXIST;
    }
    uint64_t t0 = tmd_now_ms();
    char tmp[PATH_MAX];
    int rc = path_with(tmp, path, ".tmp");
    if (rc < 0) {
        tmd_log(LOG_ERR, "state file %s: path too long; persistent pages are lost", path);
        return rc;
    }
    struct tmw_ctl_client *v = NULL;
    size_t n = 0;
    rc = tmd_clients_snapshot(d, &v, &n, false);
    if (rc < 0) {
        tmd_log(LOG_ERR, "state file %s: %s; persistent pages are lost", path, strerror(-rc));
        return rc;
    }
    struct wr w = { .fd = -1, .buf = malloc(ST_BUF) };
    XXH64_state_t *chain = XXH64_createState(), *stream = XXH64_createState();
    uint64_t records = 0, pages = 0, bytes = 0;
    if (!w.buf || !chain || !stream) {
        rc = -ENOMEM;
        goto out;
    }
    XXH64_reset(chain, 0);
    unlink(tmp);                /* a leftover of a save that was cut short */
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (w.fd < 0) {
        rc = -errno;
        goto out;
    }
    struct st_header hd;
    memset(&hd, 0, sizeof(hd));
    memcpy(hd.magic, st_magic, sizeof(hd.magic));
    hd.version = ST_VERSION;
    hd.header_size = sizeof(hd);
    hd.saved_at = (uint64_t)time(NULL);
    hd.check = CHECK_OF(&hd);
    XXH64_update(chain, &hd.check, sizeof(hd.check));
    if ((rc = wr_write(&w, &hd, sizeof(hd))) < 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (v[i].info.persistent_pages == 0)
            continue;
        /* systemd: each client may take a while (a save streams every page) */
        sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%u\nSTATUS=saving client %u to %s", 60000000u,
                   v[i].info.id, path);
        struct st_record r;
        rc = save_client(d, &w, stream, v, n, i, &r);
        if (rc < 0)
            goto out;
        if (rc == 1) {
            XXH64_update(chain, &r.check, sizeof(r.check));
            records++;
            pages += r.pages;
            bytes += r.stream_len;
        }
    }
    if (records == 0) {
        /* nothing to keep: no file, and none left from before, so that the
         * next start restores nothing */
        close(w.fd);
        w.fd = -1;
        unlink(tmp);
        if (unlink(path) == 0)
            sync_dir(path);
        tmd_log(LOG_INFO, "state file %s: no client has persistent pages: nothing saved", path);
        rc = 0;
        goto out;
    }
    struct st_trailer t;
    memset(&t, 0, sizeof(t));
    t.tag = ST_TRAILER;
    t.records = records;
    t.pages = pages;
    t.stream_bytes = bytes;
    t.chain = XXH64_digest(chain);
    t.check = CHECK_OF(&t);
    if ((rc = wr_write(&w, &t, sizeof(t))) < 0 || (rc = wr_flush(&w)) < 0)
        goto out;
    if (fsync(w.fd) != 0 || close(w.fd) != 0) {
        rc = -errno;
        w.fd = -1;
        goto out;
    }
    w.fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto out;
    }
    sync_dir(path);
    tmd_log(LOG_INFO, "state file %s: saved %" PRIu64 " clients, %" PRIu64 " persistent pages, "
            "%" PRIu64 " bytes in %" PRIu64 " ms", path, records, pages, w.off,
            tmd_now_ms() - t0);
    rc = 0;
out:
    if (rc < 0) {
        tmd_log(LOG_ERR, "state file %s: cannot write it (%s): the persistent pages of %" PRIu64
                " clients saved so far and of the rest are lost", path, strerror(-rc), records);
        if (w.fd >= 0)
            close(w.fd);
        unlink(tmp);
    }
    XXH64_freeState(chain);
    XXH64_freeState(stream);
    free(w.buf);
    free(v);
    return rc;
}

/* ------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------- */
struct rd {
    int fd;
    uint8_t *buf;
    size_t pos, len;            /* unread bytes: buf[pos, len) */
    uint64_t off;               /* file offset of the next unread byte */
    bool eof;
};

/* Reads exactly len bytes: 0, -ENODATA (the file ends first), -errno. */
static int rd_read(struct rd *r, void *p, size_t len)
{
    uint8_t *q = p;
    while (len) {
        if (r->pos == r->len) {
            if (r->eof)
                return -ENODATA;
            ssize_t n;
            do
                n = read(r->fd, r->buf, ST_BUF);
            while (n < 0 && errno == EINTR);
            if (n < 0)
                return -errno;
            if (n == 0) {
                r->eof = true;
                return -ENODATA;
            }
            r->pos = 0;
            r->len = (size_t)n;
        }
        size_t n = r->len - r->pos;
        if (n > len)
            n = len;
        memcpy(q, r->buf + r->pos, n);
        r->pos += n;
        r->off += n;
        q += n;
        len -= n;
    }
    return 0;
}

/* One record's stream, as tmem_read_fn: at most left bytes, hashed. */
struct rec_in {
    struct rd *r;
    uint64_t left;
    XXH64_state_t *h;
    int err;                    /* the reader's own failure (0 none) */
};

static int rec_read(void *arg, void *buf, size_t len)
{
    struct rec_in *in = arg;
    if (len > in->left) {
        in->err = -EPROTO;      /* the stream runs past its record */
        return -EPROTO;
    }
    int rc = rd_read(in->r, buf, len);
    if (rc < 0) {
        in->err = rc;
        return rc;
    }
    XXH64_update(in->h, buf, len);
    in->left -= len;
    return 0;
}

/* Reads (and hashes) what the engine left of the record's stream. */
static int rec_drain(struct rec_in *in)
{
    uint8_t tmp[4096];
    while (in->left) {
        size_t n = in->left < sizeof(tmp) ? (size_t)in->left : sizeof(tmp);
        int rc = rec_read(in, tmp, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

struct load {
    struct tmd *d;
    struct rd r;
    XXH64_state_t *chain, *stream;
    uint64_t restored, pages, skipped, skipped_pages;
    const char *why;            /* the damage found, NULL while sound */
    char whybuf[160];
};

static int damaged(struct load *L, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int damaged(struct load *L, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(L->whybuf, sizeof(L->whybuf), fmt, ap);
    va_end(ap);
    L->why = L->whybuf;
    return rc;
}

/* What a failed read in what (then k, unless NO_K) means: cut short, or
 * the error. */
#define NO_K UINT64_MAX
static int read_failed(struct load *L, int rc, const char *what, uint64_t k)
{
    char where[64];
    if (k == NO_K)
        snprintf(where, sizeof(where), "%s", what);
    else
        snprintf(where, sizeof(where), "%s %" PRIu64, what, k);
    if (rc == -ENODATA)
        return damaged(L, -EPROTO, "cut short in %s", where);
    return damaged(L, rc, "read error in %s: %s", where, strerror(-rc));
}

/* Restores record k (its header read and checked) and parks its client.
 * 0 when the file is still sound (the client restored, or skipped and
 * logged), else a damage (L->why). */
static int load_record(struct load *L, const struct st_record *rec, uint64_t k)
{
    struct tmd *d = L->d;
    char name[TMW_NAME_MAX];
    tmd_sanitize_name(name, rec->name, sizeof(rec->name));
    struct rec_in in = { .r = &L->r, .left = rec->stream_len, .h = L->stream };
    XXH64_reset(L->stream, 0);
    errno = 0;
    tmem_client_t *c = tmem_client_open(d->engine, name);
    int64_t got;
    if (!c)
        got = -(errno ? errno : ENOMEM);
    else
        got = tmem_client_restore(c, rec_read, &in);
    if (in.err && in.err != -EPROTO) {
        if (c)
            tmem_client_release(c);
        return read_failed(L, in.err, "record", k);
    }
    if (got >= 0 && in.left != 0) {
        tmem_client_release(c);         /* the stream ended before its record */
        return damaged(L, -EPROTO, "record %" PRIu64 ": %" PRIu64 " bytes after its stream", k,
                       in.left);
    }
    int rc = in.err ? 0 : rec_drain(&in);
    if (rc < 0 || in.err) {
        if (c)
            tmem_client_release(c);
        return in.err == -EPROTO ? damaged(L, -EPROTO, "record %" PRIu64 ": the stream runs "
                                           "past its record", k)
                                 : read_failed(L, rc, "record", k);
    }
    if (XXH64_digest(L->stream) != rec->stream_check) {
        if (c)
            tmem_client_release(c);
        return damaged(L, -EPROTO, "record %" PRIu64 " (uid %u \"%s\"): checksum mismatch", k,
                       (unsigned)rec->uid, name);
    }
    XXH64_update(L->chain, &rec->check, sizeof(rec->check));
    if (got < 0) {
        /* the record is sound: this client only is left out */
        if (c)
            tmem_client_release(c);
        L->skipped++;
        L->skipped_pages += rec->pages;
        if (got == -ENOMEM || got == -EDQUOT)
            tmd_log(LOG_ERR, "state file: client uid %u \"%s\" NOT restored: its %" PRIu64
                    " persistent pages do not fit in max_memory (%" PRIu64 " MiB, %" PRIu64
                    " pages restored before it)", (unsigned)rec->uid, name, rec->pages,
                    d->cfg.max_memory >> 20, L->pages);
        else
            tmd_log(LOG_ERR, "state file: client uid %u \"%s\" NOT restored (%" PRIu64
                    " persistent pages): %s", (unsigned)rec->uid, name, rec->pages,
                    got == -EPROTO ? "the engine refused its save stream (malformed, or a "
                                     "weight or cap out of range)"
                                   : strerror((int)-got));
        return 0;
    }
    uint32_t id = tmem_client_id(c);
    if (tmd_park_client(d, c, rec->uid, rec->gid, name) < 0) {
        L->skipped++;
        L->skipped_pages += rec->pages;
        tmd_log(LOG_ERR, "state file: client uid %u \"%s\" NOT restored: out of memory",
                (unsigned)rec->uid, name);
        return 0;
    }
    L->restored++;
    L->pages += (uint64_t)got;
    tmd_log(LOG_INFO, "state file: restored client %u (uid %u gid %u \"%s\"): %" PRId64
            " persistent pages; waiting for its owner", id, (unsigned)rec->uid,
            (unsigned)rec->gid, name, got);
    return 0;
}

/* Reads the whole file; 0 if sound, else the damage in L->why. */
static int load_file(struct load *L)
{
    struct st_header hd;
    int rc = rd_read(&L->r, &hd, sizeof(hd));
    if (rc < 0)
        return read_failed(L, rc, "the header", NO_K);
    if (memcmp(hd.magic, st_magic, sizeof(st_magic)) != 0)
        return damaged(L, -EPROTO, "not a tmemd state file (bad magic)");
    if (hd.check != CHECK_OF(&hd))
        return damaged(L, -EPROTO, "header checksum mismatch");
    if (hd.version != ST_VERSION || hd.header_size != sizeof(hd))
        return damaged(L, -EPROTO, "version %u (header of %u bytes) is not supported",
                       hd.version, hd.header_size);
    XXH64_update(L->chain, &hd.check, sizeof(hd.check));
    for (uint64_t k = 0;; k++) {
        uint32_t tag;
        if ((rc = rd_read(&L->r, &tag, sizeof(tag))) < 0)
            return read_failed(L, rc, "the item after record", k);
        if (tag == ST_TRAILER) {
            struct st_trailer t = { .tag = tag };
            if ((rc = rd_read(&L->r, (uint8_t *)&t + sizeof(tag), sizeof(t) - sizeof(tag))) < 0)
                return read_failed(L, rc, "the trailer after record", k);
            if (t.check != CHECK_OF(&t) || t.reserved)
                return damaged(L, -EPROTO, "trailer checksum mismatch");
            if (t.records != k || t.chain != XXH64_digest(L->chain))
                return damaged(L, -EPROTO, "the trailer does not match the records "
                               "(%" PRIu64 " announced, %" PRIu64 " read)", t.records, k);
            uint8_t extra;
            rc = rd_read(&L->r, &extra, 1);
            if (rc == 0)
                return damaged(L, -EPROTO, "bytes after the trailer");
            if (rc != -ENODATA)
                return read_failed(L, rc, "the end", k);
            return 0;
        }
        if (tag != ST_RECORD)
            return damaged(L, -EPROTO, "record %" PRIu64 ": bad tag 0x%08x", k, tag);
        struct st_record rec = { .tag = tag };
        if ((rc = rd_read(&L->r, (uint8_t *)&rec + sizeof(tag), sizeof(rec) - sizeof(tag))) < 0)
            return read_failed(L, rc, "record", k);
        if (rec.check != CHECK_OF(&rec))
            return damaged(L, -EPROTO, "record %" PRIu64 ": header checksum mismatch", k);
        size_t len = strnlen(rec.name, sizeof(rec.name));
        static const char zero[ST_NAME];
        if (len == sizeof(rec.name) || memcmp(rec.name + len, zero, sizeof(rec.name) - len) ||
            rec.reserved || rec.uid == UINT32_MAX)
            return damaged(L, -EPROTO, "record %" PRIu64 ": a field is out of range", k);
        if ((rc = load_record(L, &rec, k)) < 0)
            return rc;
    }
}

/* The file at path is ours to trust: a regular file of our user that
 * nobody else may write.  NULL, or why not. */
static const char *untrusted(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return "cannot stat it";
    if (!S_ISREG(st.st_mode))
        return "not a regular file";
    if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH)))
        return "not owned by the daemon's user, or writable by others";
    return NULL;
}

void tmd_state_load(struct tmd *d)
{
    const char *path = d->cfg.state_file;
    if (!path[0])
        return;
    char bad[PATH_MAX], tmp[PATH_MAX];
    if (path_with(bad, path, ".bad") < 0 || path_with(tmp, path, ".tmp") < 0) {
        tmd_log(LOG_ERR, "state file %s: path too long: not used", path);
        return;
    }
    unlink(tmp);                /* a save cut short (the file at path is older or absent) */
    /* the save at stop will write in this directory: say now if it cannot */
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *(slash == dir ? slash + 1 : slash) = '\0';
    if (access(slash ? dir : ".", W_OK | X_OK) != 0)
        tmd_log(LOG_WARNING, "state file %s: its directory is not writable (%s): persistent "
                "pages will be lost at stop", path, strerror(errno));

    uint64_t t0 = tmd_now_ms();
    char why[100];
    int fd = tmd_open_regular(path, O_NOFOLLOW, why, sizeof(why));
    if (fd == -2) {
        /* not ours to read, rename or replace: left as it is */
        tmd_log(LOG_ERR, "state file %s: %s: not read, left in place; starting without it "
                "(the save at stop will not replace it either)", path, why);
        return;
    }
    if (fd < 0) {
        if (errno == ENOENT)
            tmd_log(LOG_INFO, "state file %s: none (nothing to restore)", path);
        else
            tmd_log(LOG_ERR, "state file %s: cannot open it: %s; starting without it", path,
                    why);
        return;
    }
    struct load L = { .d = d, .r = { .fd = fd, .buf = malloc(ST_BUF) } };
    L.chain = XXH64_createState();
    L.stream = XXH64_createState();
    int rc;
    const char *distrust = untrusted(fd);
    if (!L.r.buf || !L.chain || !L.stream) {
        rc = damaged(&L, -ENOMEM, "out of memory");
    } else if (distrust) {
        rc = damaged(&L, -EPERM, "%s", distrust);
    } else {
        XXH64_reset(L.chain, 0);
        rc = load_file(&L);
    }
    close(fd);
    if (rc == 0) {
        d->state_loaded = true;     /* removed once the daemon serves: tmd_state_loaded */
        tmd_log(LOG_INFO, "state file %s: restored %" PRIu64 " clients, %" PRIu64 " persistent "
                "pages (%" PRIu64 " bytes read) in %" PRIu64 " ms%s", path, L.restored, L.pages,
                L.r.off, tmd_now_ms() - t0,
                L.skipped ? "; some clients NOT restored (above)" : "");
    } else if (rc == -ENOMEM && !L.r.buf) {
        tmd_log(LOG_ERR, "state file %s: out of memory; left in place", path);
    } else {
        bool moved = rename(path, bad) == 0;
        if (moved)
            sync_dir(path);
        tmd_log(LOG_ERR, "state file %s: damaged at byte %" PRIu64 ": %s; kept the %" PRIu64
                " clients (%" PRIu64 " persistent pages) restored before it; %s%s", path,
                L.r.off, L.why ? L.why : strerror(-rc), L.restored, L.pages,
                moved ? "renamed to " : "cannot rename it: ", moved ? bad : strerror(errno));
    }
    XXH64_freeState(L.chain);
    XXH64_freeState(L.stream);
    free(L.r.buf);
}

void tmd_state_loaded(struct tmd *d)
{
    if (!d->state_loaded)
        return;
    d->state_loaded = false;
    const char *path = d->cfg.state_file;
    if (unlink(path) != 0 && errno != ENOENT) {
        tmd_log(LOG_ERR, "state file %s: cannot remove it after loading (%s): a crash before "
                "the next clean stop would bring its pages back", path, strerror(errno));
        return;
    }
    sync_dir(path);
    tmd_log(LOG_INFO, "state file %s: removed (its clients live in this daemon now)", path);
}
