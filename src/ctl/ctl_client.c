/* SPDX-License-Identifier: MIT */
/*
 * ctl_client.c - the client side of tmemd's control protocol: one request
 * per connection, DATA replies gathered or streamed to a file, the END
 * result returned; restore streams a save file to the daemon.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"

#define HDR sizeof(struct tmw_msg)
#define PAYLOAD_MAX (TMW_MSG_MAX - HDR)
#define GATHER_MAX (256u << 20)     /* the most a gathered reply may hold */
#define TMC_BUSY_TRIES 40           /* -EBUSY: tries 25 ms apart */

static _Thread_local enum tmc_where where_;

enum tmc_where tmc_failed_at(void) { return where_; }

/* Records where a negative result came from; passes rc through. */
static int fail(enum tmc_where w, int rc)
{
    where_ = rc < 0 ? w : TMC_AT_NONE;
    return rc;
}

const char *tmc_socket_path(const char *path)
{
    if (path && *path)
        return path;
    const char *env = getenv("TMEM_CONTROL_SOCKET");
    return env && *env ? env : TMW_DEFAULT_CONTROL;
}

void tmc_buf_free(tmc_buf *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = 0;
}

static int buf_append(tmc_buf *b, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (b->len + n > GATHER_MAX)
        return -EFBIG;
    uint8_t *q = realloc(b->p, b->len + n);
    if (!q)
        return -ENOMEM;
    memcpy(q + b->len, p, n);
    b->p = q;
    b->len += n;
    return 0;
}

/* ------------------------------------------------------------------------
 * The connection
 * ---------------------------------------------------------------------- */
static int ctl_connect(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = { .tv_sec = TMC_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

static int send_msg(int fd, const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n == (ssize_t)len)
            return 0;
        if (n >= 0)
            return -EPROTO;         /* a seqpacket send is whole or nothing */
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
}

static int send_end(int fd, int32_t result)
{
    struct tmw_msg m = { .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_END,
                         .len = HDR, .result = result };
    return send_msg(fd, &m, sizeof(m));
}

/* Receives one message into buf (TMW_MSG_MAX bytes) and checks its header:
 * a DATA or an END from the daemon.  Returns its length or -errno. */
static long recv_msg(int fd, uint8_t *buf)
{
    int flags = MSG_TRUNC | MSG_CMSG_CLOEXEC;
    ssize_t n;
    for (int reset_seen = 0;;) {
        n = recv(fd, buf, TMW_MSG_MAX, flags);
        if (n >= 0)
            break;
        if (errno == EINTR)
            continue;
        /* A peer that closed with our messages unread leaves ECONNRESET
         * pending ahead of what it sent last (its END): look once more. */
        if (errno == ECONNRESET && !reset_seen) {
            reset_seen = 1;
            flags |= MSG_DONTWAIT;
            continue;
        }
        if (reset_seen && errno == EAGAIN)
            return -ECONNRESET;
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
    if (n == 0)
        return -ECONNRESET;         /* the daemon went away before its END */
    if ((size_t)n > TMW_MSG_MAX || (size_t)n < HDR)
        return -EPROTO;
    struct tmw_msg m;
    memcpy(&m, buf, HDR);
    if (m.magic != TMW_MAGIC || m.version != TMW_CTL_VERSION || m.len != (uint32_t)n)
        return -EPROTO;
    if (m.type == TMW_MSG_END && (size_t)n == HDR)
        return n;
    if (m.type == TMW_MSG_DATA && m.result == 0)
        return n;
    return -EPROTO;
}

/* What to do with a call's data either way. */
struct xfer {
    int (*data)(void *arg, const uint8_t *p, size_t n);  /* 0, or -errno (local) */
    void *arg;
    int src_fd;                 /* >= 0: stream this fd as DATA, then END */
};

/* Reads from fd until buf is full or the end; returns bytes read or -errno. */
static long read_full(int fd, uint8_t *buf, size_t size)
{
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n == 0)
            break;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return (long)got;
}

/* restore: streams x->src_fd as DATA messages and an END.  Stops early when
 * the daemon already answered (an error) or the connection broke; in both
 * cases the caller then reads the reply.  Returns 0, or a local read error
 * (an END with that error was sent: the daemon drops what it got). */
static int stream_out(int fd, struct xfer *x, uint8_t *buf)
{
    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 0) > 0)
            return 0;               /* the daemon spoke first: its END */
        long n = read_full(x->src_fd, buf + HDR, PAYLOAD_MAX);
        if (n < 0) {
            send_end(fd, (int32_t)n);
            return (int)n;
        }
        if (n == 0) {
            send_end(fd, 0);        /* a broken send shows in the reply */
            return 0;
        }
        struct tmw_msg m = { .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_DATA,
                             .len = (uint32_t)(HDR + (size_t)n) };
        memcpy(buf, &m, HDR);
        if (send_msg(fd, buf, HDR + (size_t)n) != 0)
            return 0;
    }
}

static int exchange_once(const char *path, const struct tmw_ctl *req_in, struct xfer *x,
                         bool *delivered)
{
    int fd = ctl_connect(path);
    if (fd < 0)
        return fail(TMC_AT_CONNECT, fd);
    uint8_t *buf = malloc(TMW_MSG_MAX);
    if (!buf) {
        close(fd);
        return fail(TMC_AT_LOCAL, -ENOMEM);
    }
    struct tmw_ctl req = *req_in;
    req.m = (struct tmw_msg){ .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_CTL,
                              .len = sizeof(req) };
    int rc = send_msg(fd, &req, sizeof(req));
    enum tmc_where w = TMC_AT_TRANSPORT;
    int local = 0;
    if (rc == 0 && x && x->src_fd >= 0)
        local = stream_out(fd, x, buf);
    /* Even a failed send is followed by a read: a daemon that refused us
     * (not an administrator, busy) answered and closed before we sent. */
    int sent_rc = rc;
    for (;;) {
        long n = recv_msg(fd, buf);
        if (n < 0) {
            rc = sent_rc ? sent_rc : (int)n;
            break;
        }
        struct tmw_msg m;
        memcpy(&m, buf, HDR);
        if (m.type == TMW_MSG_END) {
            rc = m.result;
            w = TMC_AT_DAEMON;
            break;
        }
        if (x && x->data) {
            *delivered = true;
            int e = x->data(x->arg, buf + HDR, (size_t)n - HDR);
            if (e < 0) {
                rc = e;
                w = TMC_AT_LOCAL;
                break;              /* closing aborts the daemon's side */
            }
        }
    }
    if (local < 0) {                /* the file could not be read: that is the news */
        rc = local;
        w = TMC_AT_LOCAL;
    }
    free(buf);
    close(fd);
    return fail(w, rc);
}

/* A daemon at its limit of control connections refuses before it reads
 * anything: such a call is tried again for about a second (not a restore,
 * whose file may be partly read already). */
static int exchange(const char *path, const struct tmw_ctl *req, struct xfer *x)
{
    path = tmc_socket_path(path);
    for (int tries = 1;; tries++) {
        bool delivered = false;
        int rc = exchange_once(path, req, x, &delivered);
        if (rc != -EBUSY || tmc_failed_at() != TMC_AT_DAEMON || delivered ||
            (x && x->src_fd >= 0) || tries == TMC_BUSY_TRIES)
            return rc;
        struct timespec ts = { 0, 25 * 1000000L };
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------------
 * The calls
 * ---------------------------------------------------------------------- */
static int gather(void *arg, const uint8_t *p, size_t n)
{
    return buf_append(arg, p, n);
}

int tmc_call(const char *path, const struct tmw_ctl *req, tmc_buf *out)
{
    struct xfer x = { .data = out ? gather : NULL, .arg = out, .src_fd = -1 };
    return exchange(path, req, &x);
}

/* A call whose reply is exactly size bytes of DATA, copied to out. */
static int call_fixed(const char *path, const struct tmw_ctl *req, void *out, size_t size)
{
    tmc_buf b = { 0 };
    int rc = tmc_call(path, req, &b);
    if (rc >= 0) {
        if (b.len == size)
            memcpy(out, b.p, size);
        else
            rc = fail(TMC_AT_TRANSPORT, -EPROTO);
    }
    tmc_buf_free(&b);
    return rc;
}

int tmc_stats(const char *path, struct tmw_ctl_stats *out)
{
    struct tmw_ctl req = { .op = TMW_CTL_STATS };
    return call_fixed(path, &req, out, sizeof(*out));
}

int tmc_clients(const char *path, struct tmw_ctl_client **out, size_t *n)
{
    struct tmw_ctl req = { .op = TMW_CTL_CLIENTS, .client_id = TMEM_CLIENT_ALL };
    tmc_buf b = { 0 };
    *out = NULL;
    *n = 0;
    int rc = tmc_call(path, &req, &b);
    if (rc < 0)
        return rc;
    if (b.len % sizeof(struct tmw_ctl_client) != 0) {
        tmc_buf_free(&b);
        return fail(TMC_AT_TRANSPORT, -EPROTO);
    }
    *out = (struct tmw_ctl_client *)b.p;
    *n = b.len / sizeof(struct tmw_ctl_client);
    return rc;
}

int tmc_list_text(const char *path, uint32_t client_id, int long_form, char **text)
{
    struct tmw_ctl req = { .op = TMW_CTL_LIST, .client_id = client_id, .arg = long_form != 0 };
    tmc_buf b = { 0 };
    *text = NULL;
    int rc = tmc_call(path, &req, &b);
    if (rc < 0) {
        tmc_buf_free(&b);
        return rc;
    }
    char *t = realloc(b.p, b.len + 1);
    if (!t) {
        tmc_buf_free(&b);
        return fail(TMC_AT_LOCAL, -ENOMEM);
    }
    t[b.len] = 0;
    *text = t;
    return rc;
}

int tmc_freeze(const char *path, uint32_t client_id, int freeze)
{
    struct tmw_ctl req = { .op = freeze ? TMW_CTL_FREEZE : TMW_CTL_THAW, .client_id = client_id };
    return tmc_call(path, &req, NULL);
}

int tmc_set(const char *path, uint32_t client_id, uint32_t mask, uint32_t weight, uint64_t cap,
            int compress)
{
    struct tmw_ctl req = { .op = TMW_CTL_SET, .client_id = client_id, .set_mask = mask };
    if (mask & TMW_SET_WEIGHT)
        req.weight = weight;
    if (mask & TMW_SET_CAP)
        req.cap = cap;
    if (mask & TMW_SET_COMPRESS)
        req.compress = compress;
    return tmc_call(path, &req, NULL);
}

int tmc_end_client(const char *path, uint32_t client_id)
{
    struct tmw_ctl req = { .op = TMW_CTL_END_CLIENT, .client_id = client_id };
    return tmc_call(path, &req, NULL);
}

int tmc_set_uid(const char *path, uint32_t uid, uint64_t bytes, int reset)
{
    struct tmw_ctl req = { .op = TMW_CTL_SET_UID, .uid = uid };
    if (reset)
        req.arg = TMW_SET_UID_DEFAULT;
    else
        req.arg64 = bytes;
    return tmc_call(path, &req, NULL);
}

int tmc_shared_auth(const char *path, uint32_t client_id, tmem_uuid_t uuid, int allow)
{
    struct tmw_ctl req = { .op = TMW_CTL_SHARED_AUTH, .client_id = client_id,
                           .arg = allow != 0, .uuid_lo = uuid.lo, .uuid_hi = uuid.hi };
    return tmc_call(path, &req, NULL);
}

int tmc_flush(const char *path, uint64_t bytes, uint64_t *freed_bytes)
{
    struct tmw_ctl req = { .op = TMW_CTL_FLUSH, .arg64 = bytes };
    uint64_t v = 0;
    int rc = call_fixed(path, &req, &v, sizeof(v));
    if (rc >= 0 && freed_bytes)
        *freed_bytes = v;
    return rc;
}

int tmc_freeable(const char *path, uint64_t *pages)
{
    struct tmw_ctl req = { .op = TMW_CTL_FREEABLE };
    uint64_t v = 0;
    int rc = call_fixed(path, &req, &v, sizeof(v));
    if (rc >= 0)
        *pages = v;
    return rc;
}

static int write_fd(void *arg, const uint8_t *p, size_t n)
{
    int fd = *(int *)arg;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int64_t tmc_save(const char *path, uint32_t client_id, int fd)
{
    struct tmw_ctl req = { .op = TMW_CTL_SAVE, .client_id = client_id };
    struct xfer x = { .data = write_fd, .arg = &fd, .src_fd = -1 };
    return exchange(path, &req, &x);
}

int64_t tmc_restore(const char *path, int fd, const char *name, int64_t uid)
{
    struct tmw_ctl req = { .op = TMW_CTL_RESTORE };
    if (fd < 0)
        return fail(TMC_AT_LOCAL, -EBADF);
    if (name) {
        size_t len = strlen(name);
        if (len == 0 || len >= TMW_NAME_MAX)
            return fail(TMC_AT_LOCAL, len ? -ENAMETOOLONG : -EINVAL);
        memcpy(req.name, name, len);
        req.arg |= TMW_RESTORE_NAME;
    }
    if (uid >= 0) {
        if (uid >= (int64_t)UINT32_MAX)
            return fail(TMC_AT_LOCAL, -EINVAL);
        req.uid = (uint32_t)uid;
        req.arg |= TMW_RESTORE_UID;
    }
    struct xfer x = { .src_fd = fd };
    return exchange(path, &req, &x);
}
