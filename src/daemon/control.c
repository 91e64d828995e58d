/* SPDX-License-Identifier: MIT */
/*
 * control.c - the control socket: administrators (root, the daemon's own
 * user, members of cfg.admin_group) freeze, thaw, tune, list, flush, save
 * and restore clients.
 *
 * The listener (server.c) hands each accepted connection over with its
 * SO_PEERCRED.  Authorisation and the connection cap are decided there and
 * then, without blocking (the group's gid was looked up at start-up): a
 * refused peer gets an END carrying -EPERM or -EBUSY and the connection is
 * closed, so that nobody but an administrator can hold a thread.  Each
 * accepted connection gets a thread that serves one request (wire.h):
 * read and check it, run it against the engine, reply DATA messages and an
 * END, close.  Every request is hostile input, even an administrator's: a
 * message of the wrong size, magic, version or type is answered -EPROTO, a
 * bad field -EINVAL, and both are counted in n.bad_msgs.
 *
 * Threads and the list: conns_ holds every connection thread not yet
 * joined (ctl->lock).  A thread closes its own fd under the lock and marks
 * itself done; the next accept (or stop) joins it.  Stop shuts every open
 * fd down (a blocked send or receive returns at once) and joins them all.
 */
#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/governor.h"
#include "daemon/lend.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define CTL_MAX_CONNS 8         /* control connections served at once */
#define CTL_TIMEOUT_S 60        /* a peer that stalls longer is dropped */
#define CTL_DRAIN_MS  2000      /* after an error, how long to read what a sender still sends */
#define HDR sizeof(struct tmw_msg)
#define PAYLOAD_MAX (TMW_MSG_MAX - HDR)

struct ctl_conn {
    struct tmd *d;
    int fd;                     /* -1 once closed (ctl->lock) */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    bool done;                  /* the thread has finished (ctl->lock) */
    pthread_t thread;
    struct ctl_conn *next;
    uint8_t *buf;               /* TMW_MSG_MAX: one message in or out */
};

struct tmd_control {
    pthread_mutex_t lock;
    struct ctl_conn *conns;     /* threads not yet joined */
    unsigned live;              /* of which not done */
    bool stopping;
    bool have_group;
    gid_t admin_gid;
};

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */
static int send_msg(int fd, const void *buf, size_t len, int flags)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | flags);
        if (n == (ssize_t)len)
            return 0;
        if (n >= 0)
            return -EPROTO;
        if (errno != EINTR)
            return errno == EAGAIN ? -ETIMEDOUT : -errno;
    }
}

static int send_end(int fd, int32_t result, int flags)
{
    struct tmw_msg m = { .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_END,
                         .len = HDR, .result = result };
    return send_msg(fd, &m, sizeof(m), flags);
}

/* Sends len bytes as DATA messages of at most TMW_MSG_MAX bytes. */
static int send_data(struct ctl_conn *k, const void *p, size_t len)
{
    const uint8_t *q = p;
    do {
        size_t n = len < PAYLOAD_MAX ? len : PAYLOAD_MAX;
        struct tmw_msg m = { .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_DATA,
                             .len = (uint32_t)(HDR + n) };
        memcpy(k->buf, &m, HDR);
        memcpy(k->buf + HDR, q, n);
        int rc = send_msg(k->fd, k->buf, HDR + n, 0);
        if (rc < 0)
            return rc;
        q += n;
        len -= n;
    } while (len);
    return 0;
}

/* The framing of a received message of n bytes (n may exceed TMW_MSG_MAX:
 * what recv reported with MSG_TRUNC): NULL if sound, else why not. */
static const char *check_frame(const uint8_t *buf, size_t n)
{
    if (n > TMW_MSG_MAX)
        return "message longer than TMW_MSG_MAX";
    if (n < HDR)
        return "message shorter than its header";
    struct tmw_msg m;
    memcpy(&m, buf, HDR);
    if (m.magic != TMW_MAGIC)
        return "bad magic";
    if (m.version != TMW_CTL_VERSION)
        return "unsupported version";
    if (m.len != (uint32_t)n)
        return "length field does not match the message";
    return NULL;
}

/* Receives one message into k->buf.  Returns its length (what recv said:
 * larger than TMW_MSG_MAX for an oversized one), 0 at the end of the
 * connection, or -errno. */
static long recv_raw(struct ctl_conn *k)
{
    ssize_t n;
    do
        n = recv(k->fd, k->buf, TMW_MSG_MAX, MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    return (long)n;
}

/* recv_raw, then the framing: -EPROTO with *why for a malformed one. */
static long recv_msg(struct ctl_conn *k, const char **why)
{
    long n = recv_raw(k);
    if (n > 0 && (*why = check_frame(k->buf, (size_t)n)) != NULL)
        return -EPROTO;
    return n;
}

/* After answering an error: reads (and drops) what the peer still sends,
 * until it closes, sends its END, or CTL_DRAIN_MS pass.  A peer's unread
 * data at close would otherwise reset the connection before it reads our
 * END. */
static void drain(int fd, uint8_t *buf)
{
    uint64_t until = tmd_now_ms() + CTL_DRAIN_MS;
    for (;;) {
        uint64_t now = tmd_now_ms();
        if (now >= until)
            return;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)(until - now));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        ssize_t n = recv(fd, buf, TMW_MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
        if (n <= 0 && !(n < 0 && (errno == EINTR || errno == EAGAIN)))
            return;
        struct tmw_msg m;
        if (n >= (ssize_t)HDR && (size_t)n <= TMW_MSG_MAX) {
            memcpy(&m, buf, HDR);
            if (m.magic == TMW_MAGIC && m.type == TMW_MSG_END)
                return;
        }
    }
}

/* ------------------------------------------------------------------------
 * Who may
 * ---------------------------------------------------------------------- */
static bool in_admin_group(struct tmd_control *ctl, int fd, gid_t gid)
{
    if (!ctl->have_group)
        return false;
    if (gid == ctl->admin_gid)
        return true;
    gid_t small[64], *g = small;
    socklen_t len = sizeof(small);
    bool found = false;
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
    if (rc != 0 && errno == ERANGE && len > sizeof(small) && (g = malloc(len)) != NULL)
        rc = getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len);
    if (rc == 0)
        for (size_t i = 0; i < len / sizeof(gid_t); i++)
            found |= g[i] == ctl->admin_gid;
    else
        tmd_log(LOG_WARNING, "control: cannot read the peer's groups (SO_PEERGROUPS): %s",
                strerror(errno));
    if (g != small)
        free(g);
    return found;
}

static bool is_admin(struct tmd_control *ctl, int fd, uid_t uid, gid_t gid)
{
    return uid == 0 || uid == geteuid() || in_admin_group(ctl, fd, gid);
}

/* Looks cfg.admin_group up once ("" none; a name or a number). */
static void resolve_group(struct tmd *d, struct tmd_control *ctl)
{
    const char *name = d->cfg.admin_group;
    if (!name[0])
        return;
    char *end;
    errno = 0;
    unsigned long v = strtoul(name, &end, 10);
    if (!*end && !errno && v < UINT32_MAX) {
        ctl->admin_gid = (gid_t)v;
        ctl->have_group = true;
        return;
    }
    long sz = sysconf(_SC_GETGR_R_SIZE_MAX);
    size_t size = sz > 0 ? (size_t)sz : 4096;
    for (;;) {
        char *buf = malloc(size);
        struct group gr, *res = NULL;
        int rc = buf ? getgrnam_r(name, &gr, buf, size, &res) : ENOMEM;
        if (rc == 0 && res) {
            ctl->admin_gid = res->gr_gid;
            ctl->have_group = true;
        }
        free(buf);
        if (rc == ERANGE && size < (1u << 20)) {
            size *= 2;
            continue;
        }
        if (!ctl->have_group)
            tmd_log(LOG_WARNING, "control: admin_group %s: %s; only root and uid %u "
                    "may use the control socket", name, rc ? strerror(rc) : "no such group",
                    (unsigned)geteuid());
        return;
    }
}

/* ------------------------------------------------------------------------
 * Checking a request
 * ---------------------------------------------------------------------- */
enum {
    F_CLIENT = 1 << 0, F_ARG = 1 << 1, F_MASK = 1 << 2, F_ARG64 = 1 << 3, F_WEIGHT = 1 << 4,
    F_COMPRESS = 1 << 5, F_CAP = 1 << 6, F_UUID = 1 << 7, F_UID = 1 << 8, F_NAME = 1 << 9,
};

static const char *const op_names[TMW_CTL_OP_MAX_] = {
    [TMW_CTL_STATS] = "stats", [TMW_CTL_CLIENTS] = "clients", [TMW_CTL_LIST] = "list",
    [TMW_CTL_FREEZE] = "freeze", [TMW_CTL_THAW] = "thaw", [TMW_CTL_SET] = "set",
    [TMW_CTL_SHARED_AUTH] = "shared-auth", [TMW_CTL_FLUSH] = "flush",
    [TMW_CTL_FREEABLE] = "freeable", [TMW_CTL_SAVE] = "save", [TMW_CTL_RESTORE] = "restore",
    [TMW_CTL_END_CLIENT] = "end-client", [TMW_CTL_SET_UID] = "set-uid",
    [TMW_CTL_CONFIG_GET] = "config-get", [TMW_CTL_CONFIG_SET] = "config-set",
};

static bool name_ok(const char *name)
{
    size_t len = strnlen(name, TMW_NAME_MAX);
    return len > 0 && len < TMW_NAME_MAX;
}

/* The whole check of a received request of n bytes (as recv reported it;
 * buf holds min(n, TMW_MSG_MAX) of them): 0 with *r filled, or -EPROTO (its
 * framing) / -EINVAL (its fields) with *why. */
int tmd_ctl_check_request(const uint8_t *buf, size_t n, struct tmw_ctl *r, const char **why)
{
    if ((*why = check_frame(buf, n)) != NULL)
        return -EPROTO;
    struct tmw_msg m;
    memcpy(&m, buf, HDR);
    if (m.type != TMW_MSG_CTL) {
        *why = "not a control request";
        return -EPROTO;
    }
    if (n != sizeof(*r)) {
        *why = "control request of the wrong size";
        return -EPROTO;
    }
    memcpy(r, buf, sizeof(*r));
    if (r->m.result != 0 || r->reserved_ != 0) {
        *why = "reserved field set";
        return -EINVAL;
    }
    if (r->op == 0 || r->op >= TMW_CTL_OP_MAX_) {
        *why = "unknown operation";
        return -EINVAL;
    }
    unsigned allowed = 0;
    *why = "bad argument";
    switch ((enum tmw_ctl_op)r->op) {
    case TMW_CTL_STATS:
    case TMW_CTL_FREEABLE:
        break;
    case TMW_CTL_CLIENTS:
    case TMW_CTL_FREEZE:
    case TMW_CTL_THAW:
        allowed = F_CLIENT;
        break;
    case TMW_CTL_LIST:
        allowed = F_CLIENT | F_ARG;
        if (r->arg > 1)
            return -EINVAL;
        break;
    case TMW_CTL_SET:
        allowed = F_CLIENT | F_MASK;
        if (r->client_id == TMEM_CLIENT_ALL || r->set_mask == 0 ||
            (r->set_mask & ~(TMW_SET_WEIGHT | TMW_SET_CAP | TMW_SET_COMPRESS)))
            return -EINVAL;
        allowed |= (r->set_mask & TMW_SET_WEIGHT ? F_WEIGHT : 0) |
                   (r->set_mask & TMW_SET_CAP ? F_CAP : 0) |
                   (r->set_mask & TMW_SET_COMPRESS ? F_COMPRESS : 0);
        if ((r->set_mask & TMW_SET_COMPRESS) &&
            (r->compress < TMEM_COMPRESS_NONE || r->compress > TMEM_COMPRESS_ZSTD))
            return -EINVAL;
        if (r->weight > TMEM_WEIGHT_MAX || r->cap > TMEM_CAP_MAX)
            return -EINVAL;     /* the engine's ranges, as everywhere */
        break;
    case TMW_CTL_SHARED_AUTH:
        allowed = F_CLIENT | F_ARG | F_UUID;
        if (r->client_id == TMEM_CLIENT_ALL || r->arg > 1)
            return -EINVAL;
        break;
    case TMW_CTL_FLUSH:
        allowed = F_ARG64;
        break;
    case TMW_CTL_SAVE:
    case TMW_CTL_END_CLIENT:
        allowed = F_CLIENT;
        if (r->client_id == TMEM_CLIENT_ALL)
            return -EINVAL;
        break;
    case TMW_CTL_SET_UID:
        allowed = F_UID | F_ARG | F_ARG64;
        if (r->uid == UINT32_MAX || r->arg & ~TMW_SET_UID_DEFAULT ||
            (r->arg && r->arg64))
            return -EINVAL;
        break;
    case TMW_CTL_RESTORE:
        allowed = F_ARG;
        if (r->arg & ~(TMW_RESTORE_NAME | TMW_RESTORE_UID))
            return -EINVAL;
        if (r->arg & TMW_RESTORE_NAME) {
            allowed |= F_NAME;
            if (!name_ok(r->name))
                return -EINVAL;
        }
        if (r->arg & TMW_RESTORE_UID) {
            allowed |= F_UID;
            if (r->uid == UINT32_MAX)
                return -EINVAL;
        }
        break;
    case TMW_CTL_CONFIG_GET:   /* a key, or none: every key */
        allowed = F_NAME;
        if (strnlen(r->name, TMW_NAME_MAX) == TMW_NAME_MAX)
            return -EINVAL;
        break;
    case TMW_CTL_CONFIG_SET:
        allowed = F_NAME;
        if (!name_ok(r->name))
            return -EINVAL;
        break;
    case TMW_CTL_OP_MAX_:
        return -EINVAL;
    }
    /* What the operation does not use must be zero. */
    static const char zero_name[TMW_NAME_MAX];
    *why = "a field this operation does not use is set";
    if ((!(allowed & F_CLIENT) && r->client_id) || (!(allowed & F_ARG) && r->arg) ||
        (!(allowed & F_MASK) && r->set_mask) || (!(allowed & F_ARG64) && r->arg64) ||
        (!(allowed & F_WEIGHT) && r->weight) || (!(allowed & F_COMPRESS) && r->compress) ||
        (!(allowed & F_CAP) && r->cap) || (!(allowed & F_UUID) && (r->uuid_lo || r->uuid_hi)) ||
        (!(allowed & F_UID) && r->uid))
        return -EINVAL;
    if (allowed & F_NAME) {     /* the bytes after the terminator too */
        size_t len = strnlen(r->name, TMW_NAME_MAX);
        if (memcmp(r->name + len, zero_name, TMW_NAME_MAX - len) != 0)
            return -EINVAL;
    } else if (memcmp(r->name, zero_name, TMW_NAME_MAX) != 0) {
        return -EINVAL;
    }
    *why = NULL;
    return 0;
}

/* ------------------------------------------------------------------------
 * The operations.  Each returns the END result; DATA went out already.
 * ---------------------------------------------------------------------- */
static const char *client_name(struct tmd *d, uint32_t id, char name[TMW_NAME_MAX])
{
    uint32_t uid, gid;
    if (tmd_client_identity(d, id, &uid, &gid, name) != 0)
        name[0] = 0;
    name[TMW_NAME_MAX - 1] = 0;
    return name;
}

static int op_stats(struct ctl_conn *k)
{
    struct tmw_ctl_stats s;
    memset(&s, 0, sizeof(s));
    tmd_stats_snapshot(k->d, &s, true);
    return send_data(k, &s, sizeof(s));
}

static int op_clients(struct ctl_conn *k, const struct tmw_ctl *r)
{
    struct tmw_ctl_client *v = NULL;
    size_t n = 0;
    int rc = tmd_clients_snapshot(k->d, &v, &n, true);
    if (rc < 0)
        return rc;
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (r->client_id == TMEM_CLIENT_ALL || v[i].info.id == r->client_id)
            v[keep++] = v[i];
    if (r->client_id != TMEM_CLIENT_ALL && keep == 0)
        rc = -ENOENT;
    else if (keep)
        rc = send_data(k, v, keep * sizeof(*v));
    free(v);
    return rc;
}

/* The tmem-list lines a client with lent memory sends of its private
 * pools: kept only if each is a C= or P= line of that client, printable. */
struct lines_in {
    char *text;
    size_t len, cap;
};

static int lines_write(void *arg, const void *p, size_t len)
{
    struct lines_in *in = arg;
    if (in->len + len > 1u << 20)
        return -EFBIG;
    if (in->len + len + 1 > in->cap) {
        size_t nc = (in->len + len + 1) * 2;
        char *nt = realloc(in->text, nc);
        if (!nt)
            return -ENOMEM;
        in->text = nt;
        in->cap = nc;
    }
    memcpy(in->text + in->len, p, len);
    in->len += len;
    in->text[in->len] = 0;
    return 0;
}

static char *client_lines(struct tmd *d, uint32_t id, int long_form)
{
    int fd;
    struct tmd_lent *lent;
    struct tmd_conn *lk = tmd_conn_borrow(d, id, &fd, &lent);
    if (!lk)
        return NULL;
    struct lines_in in = { 0 };
    int64_t rc = tmd_lend_stream_in(d, lent, fd, TMW_MSG_LIST, long_form, lines_write, &in);
    tmd_conn_return(d, lk);
    if (rc < 0 || !in.text) {
        free(in.text);
        return NULL;
    }
    /* keep its own lines only */
    char c_pre[32], p_pre[32];
    snprintf(c_pre, sizeof(c_pre), "C=CI:%u,", id);
    snprintf(p_pre, sizeof(p_pre), "P=CI:%u,", id);
    size_t o = 0;
    for (char *line = strtok(in.text, "\n"); line; line = strtok(NULL, "\n")) {
        bool ok = !strncmp(line, c_pre, strlen(c_pre)) || !strncmp(line, p_pre, strlen(p_pre));
        for (char *q = line; ok && *q; q++)
            ok = *q >= 0x20 && *q < 0x7f;
        if (ok) {
            size_t n = strlen(line);
            memmove(in.text + o, line, n);
            in.text[o + n] = '\n';
            o += n + 1;
        }
    }
    in.text[o] = 0;
    return in.text;
}

/* The engine's text, with each client that has lent memory described by
 * its own lines (its private pools) before those of its shared pools. */
static char *merge_lines(struct tmd *d, const char *text, int long_form)
{
    size_t cap = strlen(text) + 1, o = 0;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line + 1) : strlen(line);
        char *theirs = NULL;
        unsigned id;
        if (sscanf(line, "C=CI:%u,", &id) == 1)
            theirs = client_lines(d, id, long_form);
        const char *add = theirs ? theirs : line;
        size_t an = theirs ? strlen(theirs) : n;
        if (o + an + 1 > cap) {
            cap = (o + an + 1) * 2;
            char *no = realloc(out, cap);
            if (!no) {
                free(theirs);
                free(out);
                return NULL;
            }
            out = no;
        }
        memcpy(out + o, add, an);
        o += an;
        free(theirs);
        line += n;
    }
    out[o] = 0;
    return out;
}

/* The long form's C= lines with each client's figures added before nm
 * (the name, last): hb the bytes held for it, cg its cgroup, then its
 * worker's: wu wake-ups, we empty wake-ups, wc its worker's CPU in ms, wt
 * throttles, th throttled now.  NULL without memory. */
static char *add_worker_keys(struct tmd *d, const char *text)
{
    struct tmw_ctl_client *v = NULL;
    size_t n = 0;
    if (tmd_clients_snapshot(d, &v, &n, false) < 0)
        return NULL;
    size_t lines = 1;
    for (const char *q = text; *q; q++)
        lines += *q == '\n';
    enum { KEYS_MAX = 6 * 21 + 16 + TMW_CGROUP_MAX + 4 };  /* six numbers and the cgroup */
    size_t cap = strlen(text) + lines * KEYS_MAX + 1, o = 0;
    char *out = malloc(cap);
    if (!out) {
        free(v);
        return NULL;
    }
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line + 1) : strlen(line);
        const struct tmw_ctl_client *c = NULL;
        unsigned id;
        if (sscanf(line, "C=CI:%u,", &id) == 1)
            for (size_t i = 0; i < n && !c; i++)
                if (v[i].info.id == id)
                    c = &v[i];
        const char *nm = c ? strstr(line, ",nm:") : NULL;
        if (!nm || nm > line + len)
            nm = NULL;
        size_t head = nm ? (size_t)(nm - line) : len;
        memcpy(out + o, line, head);
        o += head;
        if (nm) {
            /* its cgroup as a value of the line: no , : = in it */
            char cg[TMW_CGROUP_MAX];
            size_t cl = strnlen(c->cgroup, sizeof(c->cgroup) - 1);
            for (size_t i = 0; i < cl; i++)
                cg[i] = strchr(",:=", c->cgroup[i]) ? '_' : c->cgroup[i];
            cg[cl] = 0;
            /* (the worker's keys stay last before nm, as they were) */
            o += (size_t)snprintf(out + o, KEYS_MAX, ",hb:%" PRIu64 ",cg:%s,wu:%" PRIu64
                                  ",we:%" PRIu64 ",wc:%" PRIu64 ",wt:%" PRIu64 ",th:%u",
                                  c->held_bytes, cg[0] ? cg : "-", c->wakeups,
                                  c->empty_wakeups, c->worker_cpu_ns / 1000000u, c->throttles,
                                  c->throttled);
        }
        memcpy(out + o, line + head, len - head);
        o += len - head;
        line += len;
    }
    out[o] = 0;
    free(v);
    return out;
}

static int op_list(struct ctl_conn *k, const struct tmw_ctl *r)
{
    tmem_t *t = k->d->engine;
    tmem_client_info_t info;
    if (r->client_id != TMEM_CLIENT_ALL && tmem_client_info(t, r->client_id, &info) != 0)
        return -ENOENT;
    size_t size = tmem_list(t, r->client_id, (int)r->arg, NULL, 0) + 1024;
    for (int tries = 0;; tries++) {
        char *text = malloc(size);
        if (!text)
            return -ENOMEM;
        size_t need = tmem_list(t, r->client_id, (int)r->arg, text, size);
        if (need < size || tries == 4) {
            text[need < size ? need : size - 1] = 0;
            char *merged = tmd_lending(k->d) ? merge_lines(k->d, text, (int)r->arg) : NULL;
            const char *out = merged ? merged : text;
            char *keyed = r->arg ? add_worker_keys(k->d, out) : NULL;
            if (keyed)
                out = keyed;
            int rc = send_data(k, out, strlen(out));
            free(keyed);
            free(merged);
            free(text);
            return rc;
        }
        free(text);
        size = need + need / 4 + 1024;  /* clients came meanwhile */
    }
}

/* A setting for clients with lent memory: their private pools are theirs
 * (a SET message), their grants the daemon's. */
static void lend_setting(struct tmd *d, struct tmd_lent *l, void *arg)
{
    tmd_lend_set(d, l, arg);
}

static int op_freeze(struct ctl_conn *k, const struct tmw_ctl *r)
{
    bool freeze = r->op == TMW_CTL_FREEZE;
    tmem_t *t = k->d->engine;
    int rc = freeze ? tmem_admin_freeze(t, r->client_id) : tmem_admin_thaw(t, r->client_id);
    if (rc == 0) {
        struct tmd_lend_setting st = { .mask = TMD_LEND_SET_FREEZE, .frozen = freeze };
        tmd_lent_apply(k->d, r->client_id, lend_setting, &st);
    }
    if (rc == 0) {
        char name[TMW_NAME_MAX];
        if (r->client_id == TMEM_CLIENT_ALL)
            tmd_log(LOG_INFO, "control: uid %u (pid %d) %s every client", (unsigned)k->uid,
                    (int)k->pid, freeze ? "froze" : "thawed");
        else
            tmd_log(LOG_INFO, "control: uid %u (pid %d) %s client %u (%s)", (unsigned)k->uid,
                    (int)k->pid, freeze ? "froze" : "thawed", r->client_id,
                    client_name(k->d, r->client_id, name));
    }
    return rc;
}

static const char *codec_name(int c)
{
    return c == TMEM_COMPRESS_NONE ? "none" : c == TMEM_COMPRESS_LZ4 ? "lz4" : "zstd";
}

static int op_set(struct ctl_conn *k, const struct tmw_ctl *r)
{
    tmem_t *t = k->d->engine;
    tmem_client_info_t info;
    if (tmem_client_info(t, r->client_id, &info) != 0)
        return -ENOENT;
    int rc = 0;
    char what[160] = "";
    size_t off = 0;
    if (rc == 0 && (r->set_mask & TMW_SET_WEIGHT) &&
        (rc = tmem_admin_set_weight(t, r->client_id, r->weight)) == 0)
        off += (size_t)snprintf(what + off, sizeof(what) - off, " weight %u", r->weight);
    if (rc == 0 && (r->set_mask & TMW_SET_CAP) &&
        (rc = tmem_admin_set_cap(t, r->client_id, r->cap)) == 0)
        off += (size_t)snprintf(what + off, sizeof(what) - off, " cap %" PRIu64, r->cap);
    if (rc == 0 && (r->set_mask & TMW_SET_COMPRESS) &&
        (rc = tmem_admin_set_compress(t, r->client_id, r->compress)) == 0)
        snprintf(what + off, sizeof(what) - off, " compress %s", codec_name(r->compress));
    if (rc == 0) {
        struct tmd_lend_setting st = {
            .mask = ((r->set_mask & TMW_SET_WEIGHT) ? TMD_LEND_SET_WEIGHT : 0) |
                    ((r->set_mask & TMW_SET_CAP) ? TMD_LEND_SET_CAP : 0) |
                    ((r->set_mask & TMW_SET_COMPRESS) ? TMD_LEND_SET_COMPRESS : 0),
            .weight = r->weight, .cap = r->cap, .compress = r->compress };
        tmd_lent_apply(k->d, r->client_id, lend_setting, &st);
    }
    if (what[0]) {
        char name[TMW_NAME_MAX];
        tmd_log(LOG_INFO, "control: uid %u (pid %d) set client %u (%s):%s%s", (unsigned)k->uid,
                (int)k->pid, r->client_id, client_name(k->d, r->client_id, name), what,
                rc ? " (then failed)" : "");
    }
    return rc;
}

static int op_end_client(struct ctl_conn *k, const struct tmw_ctl *r)
{
    char name[TMW_NAME_MAX];
    client_name(k->d, r->client_id, name);
    int rc = tmd_end_client(k->d, r->client_id);
    if (rc == 0)
        tmd_log(LOG_NOTICE, "control: uid %u (pid %d) ended client %u (%s): its connection "
                "closed, its pools freed", (unsigned)k->uid, (int)k->pid, r->client_id, name);
    return rc;
}

static int op_set_uid(struct ctl_conn *k, const struct tmw_ctl *r)
{
    bool reset = r->arg & TMW_SET_UID_DEFAULT;
    if (r->arg64 > TMD_CFG(k->d, max_memory))
        return -EINVAL;
    int rc = tmd_uid_set_pers_max(k->d, r->uid, r->arg64, reset);
    if (rc == 0) {
        uint64_t now = tmd_uid_pers_max(k->d, r->uid);
        char b[32];
        tmd_log(LOG_INFO, "control: uid %u (pid %d) set uid %u's persistent share to %s%s",
                (unsigned)k->uid, (int)k->pid, (unsigned)r->uid,
                now ? tmd_fmt_bytes(b, sizeof(b), now) : "no bound",
                reset ? " (the default)" : "");
    }
    return rc;
}

/* config get: every key (r->name empty) or one, with its value now. */
static int op_config_get(struct ctl_conn *k, const struct tmw_ctl *r)
{
    struct tmd *d = k->d;
    int only = -1;
    if (r->name[0] && (only = tmd_config_find(r->name)) < 0)
        return -ENOENT;
    struct tmd_config *cfg = malloc(sizeof(*cfg));
    size_t nkeys = tmd_config_nkeys();
    struct tmw_ctl_config *v = calloc(nkeys, sizeof(*v));
    if (!cfg || !v) {
        free(cfg);
        free(v);
        return -ENOMEM;
    }
    pthread_mutex_lock(&d->cfg_lock);   /* the live keys as they are now */
    *cfg = d->cfg;
    pthread_mutex_unlock(&d->cfg_lock);
    size_t n = 0;
    for (size_t i = 0; i < nkeys; i++) {
        if (only >= 0 && i != (size_t)only)
            continue;
        struct tmw_ctl_config *c = &v[n++];
        tmd_config_key(i, c->key, sizeof(c->key));
        int f = tmd_config_format(cfg, i, c->value, sizeof(c->value), &c->bytes);
        c->value[sizeof(c->value) - 1] = 0;
        c->flags = (tmd_config_key_live(i) ? TMW_CONFIG_LIVE : 0) |
                   (f == 1 ? TMW_CONFIG_BYTES : 0);
    }
    int rc = send_data(k, v, n * sizeof(*v));
    free(v);
    free(cfg);
    return rc;
}

/* config set: the value comes as one DATA message, then the sender's END. */
static int op_config_set(struct ctl_conn *k, const struct tmw_ctl *r)
{
    struct tmd *d = k->d;
    char value[TMW_CONFIG_VALUE_MAX];
    const char *why = "a value as one DATA message, then END, was expected";
    int rc = 0;
    long n = recv_msg(k, &why);     /* a framed message is at least a header */
    struct tmw_msg m = { 0 };
    if (n >= (long)HDR)
        memcpy(&m, k->buf, HDR);
    if (n == 0)
        return -ECONNRESET;
    if (n < 0 && n != -EPROTO)
        return (int)n;
    if (n < (long)HDR || m.type != TMW_MSG_DATA || m.result != 0)
        rc = -EPROTO;
    else if ((size_t)n - HDR >= TMW_CONFIG_VALUE_MAX) {
        rc = -EINVAL;
        why = "a value longer than TMW_CONFIG_VALUE_MAX - 1 bytes";
    }
    if (rc == 0) {
        size_t len = (size_t)n - HDR;
        memcpy(value, k->buf + HDR, len);
        value[len] = 0;
        for (size_t i = 0; i < len && rc == 0; i++)
            if ((unsigned char)value[i] < 0x20 || (unsigned char)value[i] > 0x7e) {
                rc = -EINVAL;
                why = "a value with a byte that is not printable ASCII";
            }
    }
    if (rc == 0) {
        n = recv_msg(k, &why);
        if (n >= (long)HDR)
            memcpy(&m, k->buf, HDR);
        if (n != (long)HDR || m.type != TMW_MSG_END || m.result != 0) {
            rc = n < 0 && n != -EPROTO ? (int)n : -EPROTO;
            why = "the value was not followed by END";
        }
    }
    if (rc == -EPROTO || rc == -EINVAL) {
        atomic_fetch_add(&d->n.bad_msgs, 1);
        tmd_log_limited(LOG_NOTICE, "control-malformed", k->uid,
                        "control: malformed config set from uid %u (pid %d): %s",
                        (unsigned)k->uid, (int)k->pid, why);
        return rc;
    }
    if (rc < 0)
        return rc;
    char who[64], text[600];
    snprintf(who, sizeof(who), "uid %u (pid %d)", (unsigned)k->uid, (int)k->pid);
    char key[TMW_NAME_MAX];
    snprintf(key, sizeof(key), "%s", r->name);
    rc = tmd_config_set_live(d, key, value, who, text, sizeof(text));
    if (rc < 0)
        tmd_log(LOG_NOTICE, "control: %s: config set refused: %s", who, text);
    int s = send_data(k, text, strlen(text));
    return rc < 0 ? rc : s;
}

static int op_shared_auth(struct ctl_conn *k, const struct tmw_ctl *r)
{
    tmem_uuid_t u = { r->uuid_lo, r->uuid_hi };
    int rc = tmem_admin_shared_auth(k->d->engine, r->client_id, u, (int)r->arg);
    if (rc == 0) {
        char text[37], name[TMW_NAME_MAX];
        tmem_uuid_format(u, text);
        tmd_log(LOG_INFO, "control: uid %u (pid %d) %s client %u (%s) shared pools %s",
                (unsigned)k->uid, (int)k->pid, r->arg ? "allowed" : "denied", r->client_id,
                client_name(k->d, r->client_id, name), text);
    }
    return rc;
}

static int op_flush(struct ctl_conn *k, const struct tmw_ctl *r)
{
    tmem_t *t = k->d->engine;
    uint64_t want = r->arg64 / TMEM_PAGE_SIZE + (r->arg64 % TMEM_PAGE_SIZE != 0);
    if (want > SIZE_MAX)
        want = SIZE_MAX;
    /* Free frames go first; eviction only makes up what they lack. */
    uint64_t given = tmem_relinquish_pages(t, (size_t)want);
    uint64_t evicted = 0;
    while (given < want) {
        size_t e = tmem_evict_npages(t, (size_t)(want - given));
        size_t g = tmem_relinquish_pages(t, (size_t)(want - given));
        evicted += e;
        given += g;
        if (g == 0)
            break;
    }
    uint64_t bytes = given * TMEM_PAGE_SIZE;
    if (bytes < r->arg64 && tmd_lending(k->d)) {
        /* lent memory: asked back, returned or taken by the deadline */
        struct tmd_lend_totals before, now;
        tmd_lend_totals(k->d, &before);
        uint64_t was = before.lent_bytes[0] + before.lent_bytes[1];
        uint64_t asked = tmd_lend_take_back(k->d, r->arg64 - bytes);
        uint64_t back = 0;
        for (unsigned ms = 0; asked && ms < TMD_CFG(k->d, shrink_deadline_ms) + 500; ms += 5) {
            struct timespec ts = { 0, 5000000 };
            nanosleep(&ts, NULL);
            tmd_lend_totals(k->d, &now);
            uint64_t is = now.lent_bytes[0] + now.lent_bytes[1];
            back = was > is ? was - is : 0;
            if (back >= asked)
                break;
        }
        bytes += back;
        /* the clients' shrinks are done (a report comes after them) */
        tmd_lend_refresh(k->d, TMD_CFG(k->d, shrink_deadline_ms) + 5000);
    }
    char asked_s[32], back_s[32];
    if (r->arg64 == UINT64_MAX)
        snprintf(asked_s, sizeof(asked_s), "all");
    else
        tmd_fmt_bytes(asked_s, sizeof(asked_s), r->arg64);
    tmd_log(LOG_INFO, "control: uid %u (pid %d) flushed: asked %s; eviction freed %" PRIu64
            " frames; gave back %s", (unsigned)k->uid, (int)k->pid, asked_s, evicted,
            tmd_fmt_bytes(back_s, sizeof(back_s), bytes));
    return send_data(k, &bytes, sizeof(bytes));
}

static int op_freeable(struct ctl_conn *k)
{
    /* the engine's, and the ephemeral memory lent (it can be taken back) */
    struct tmd_lend_totals lt;
    tmd_lend_totals(k->d, &lt);
    uint64_t pages = tmem_freeable_pages(k->d->engine) + lt.lent_bytes[0] / TMEM_PAGE_SIZE;
    return send_data(k, &pages, sizeof(pages));
}

/* save: the engine's stream goes out in DATA messages as it is written. */
struct save_out {
    struct ctl_conn *k;
    size_t fill;                /* payload bytes in k->buf after the header */
};

static int save_flush(struct save_out *s)
{
    if (!s->fill)
        return 0;
    struct tmw_msg m = { .magic = TMW_MAGIC, .version = TMW_CTL_VERSION, .type = TMW_MSG_DATA,
                         .len = (uint32_t)(HDR + s->fill) };
    memcpy(s->k->buf, &m, HDR);
    int rc = send_msg(s->k->fd, s->k->buf, HDR + s->fill, 0);
    s->fill = 0;
    return rc;
}

static int save_write(void *arg, const void *p, size_t len)
{
    struct save_out *s = arg;
    const uint8_t *q = p;
    while (len) {
        size_t n = PAYLOAD_MAX - s->fill;
        if (n > len)
            n = len;
        memcpy(s->k->buf + HDR + s->fill, q, n);
        s->fill += n;
        q += n;
        len -= n;
        if (s->fill == PAYLOAD_MAX) {
            int rc = save_flush(s);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* A client's save stream, at most `limit` bytes: what its memory can
 * hold, and no more (a client that streams garbage without end stops
 * there). */
struct bounded {
    struct save_out *s;
    uint64_t written, limit;
};

static int bounded_write(void *arg, const void *p, size_t len)
{
    struct bounded *b = arg;
    if (b->written + len > b->limit)
        return -EFBIG;
    b->written += len;
    return save_write(b->s, p, len);
}

static int op_save(struct ctl_conn *k, const struct tmw_ctl *r)
{
    struct tmw_save_header h;
    memset(&h, 0, sizeof(h));
    h.magic = TMW_SAVE_MAGIC;
    int rc = tmd_client_identity(k->d, r->client_id, &h.uid, &h.gid, h.name);
    if (rc < 0)
        return rc;
    struct save_out s = { .k = k };
    rc = save_write(&s, &h, sizeof(h));
    int64_t pages;
    int fd;
    struct tmd_lent *lent;
    struct tmd_conn *lk = rc < 0 ? NULL : tmd_conn_borrow(k->d, r->client_id, &fd, &lent);
    if (lk) {
        /* its private pools are in it: its library writes the stream */
        struct bounded b = { &s, 0, tmd_lend_stream_bound(k->d, lent) };
        pages = tmd_lend_stream_in(k->d, lent, fd, TMW_MSG_SAVE, 0, bounded_write, &b);
        tmd_conn_return(k->d, lk);
    } else {
        pages = rc < 0 ? rc : tmem_client_save(k->d->engine, r->client_id, save_write, &s);
    }
    if (pages >= 0 && (rc = save_flush(&s)) < 0)
        pages = rc;
    h.name[TMW_NAME_MAX - 1] = 0;
    if (pages >= 0)
        tmd_log(LOG_INFO, "control: uid %u (pid %d) saved client %u (%s): %" PRId64
                " persistent pages", (unsigned)k->uid, (int)k->pid, r->client_id, h.name, pages);
    else
        tmd_log(LOG_NOTICE, "control: uid %u (pid %d): save of client %u (%s) failed: %s",
                (unsigned)k->uid, (int)k->pid, r->client_id, h.name, strerror((int)-pages));
    return pages > INT32_MAX ? INT32_MAX : (int)pages;
}

/* restore: the save file comes in DATA messages, then the sender's END. */
struct restore_in {
    struct ctl_conn *k;
    size_t pos, len;            /* unread payload in k->buf: [HDR + pos, HDR + len) */
    bool ended;                 /* the sender's END arrived */
    int32_t end_result;
    bool bad;                   /* a malformed message (counted) */
};

/* Gets the next DATA message's payload; 0, or -errno. */
static int restore_next(struct restore_in *in)
{
    if (in->ended)
        return in->end_result < 0 ? -ECANCELED : -EPROTO;   /* aborted / cut short */
    const char *why = NULL;
    long n = recv_msg(in->k, &why);
    if (n == 0)
        return -ECONNRESET;
    if (n < 0) {
        in->bad = n == -EPROTO;
        return (int)n;
    }
    struct tmw_msg m;
    memcpy(&m, in->k->buf, HDR);
    if (m.type == TMW_MSG_END && (size_t)n == HDR) {
        in->ended = true;
        in->end_result = m.result;
        return in->end_result < 0 ? -ECANCELED : -EPROTO;
    }
    if (m.type != TMW_MSG_DATA || m.result != 0) {
        in->bad = true;
        return -EPROTO;
    }
    in->pos = 0;
    in->len = (size_t)n - HDR;
    return 0;
}

static int restore_read(void *arg, void *buf, size_t len)
{
    struct restore_in *in = arg;
    uint8_t *q = buf;
    while (len) {
        if (in->pos == in->len) {
            int rc = restore_next(in);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t n = in->len - in->pos;
        if (n > len)
            n = len;
        memcpy(q, in->k->buf + HDR + in->pos, n);
        in->pos += n;
        q += n;
        len -= n;
    }
    return 0;
}

/* The primary group of uid, or fallback. */
static gid_t user_gid(uid_t uid, gid_t fallback)
{
    long sz = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = sz > 0 ? (size_t)sz : 4096;
    char *buf = malloc(size);
    struct passwd pw, *res = NULL;
    gid_t g = fallback;
    if (buf && getpwuid_r(uid, &pw, buf, size, &res) == 0 && res)
        g = res->pw_gid;
    free(buf);
    return g;
}

static int op_restore(struct ctl_conn *k, const struct tmw_ctl *r)
{
    struct tmd *d = k->d;
    struct restore_in in = { .k = k };
    struct tmw_save_header h;
    memset(&h, 0, sizeof(h));
    int64_t rc = restore_read(&in, &h, sizeof(h));
    if (rc == 0 && h.magic != TMW_SAVE_MAGIC)
        rc = -EPROTO;
    char name[TMW_NAME_MAX];
    uint32_t uid = h.uid, gid = h.gid;
    if (rc == 0) {
        /* the name is logged and matched against HELLOs: as a HELLO's */
        tmd_sanitize_name(name, (r->arg & TMW_RESTORE_NAME) ? r->name : h.name,
                          TMW_NAME_MAX);
        if (r->arg & TMW_RESTORE_UID) {
            uid = r->uid;
            gid = user_gid(uid, gid);
        }
        if (uid == UINT32_MAX)
            rc = -EPROTO;
    }
    tmem_client_t *c = NULL;
    errno = 0;
    if (rc == 0 && !(c = tmem_client_open(d->engine, name)))
        rc = -(errno ? errno : ENOMEM);
    if (rc == 0)
        rc = tmem_client_restore(c, restore_read, &in);
    if (rc >= 0) {
        /* The stream must end here: the sender's END, nothing after. */
        if (in.pos != in.len)
            rc = -EPROTO;
        else if (!in.ended) {
            int e = restore_next(&in);
            if (e == 0)
                rc = -EPROTO;               /* data after the stream */
            else if (!(in.ended && in.end_result == 0))
                rc = e;
        } else if (in.end_result != 0)
            rc = -ECANCELED;
    }
    if (in.bad)
        atomic_fetch_add(&d->n.bad_msgs, 1);
    if (rc >= 0) {
        /* The client's pages now belong to whoever connects as uid with name. */
        uint32_t id = tmem_client_id(c);
        int p = tmd_park_client(d, c, uid, gid, name);
        c = NULL;
        if (p < 0)
            rc = p;
        else
            tmd_log(LOG_INFO, "control: uid %u (pid %d) restored client %u (%s) for uid %u: %"
                    PRId64 " persistent pages; waiting for its owner", (unsigned)k->uid,
                    (int)k->pid, id, name, (unsigned)uid, rc);
    }
    if (c)
        tmem_client_release(c);
    if (rc < 0)
        tmd_log(LOG_NOTICE, "control: uid %u (pid %d): restore failed: %s", (unsigned)k->uid,
                (int)k->pid, rc == -EPROTO ? "not a valid save file" : strerror((int)-rc));
    return rc > INT32_MAX ? INT32_MAX : (int)rc;
}

/* ------------------------------------------------------------------------
 * One connection
 * ---------------------------------------------------------------------- */
static void serve(struct ctl_conn *k)
{
    struct tmd *d = k->d;
    const char *why = NULL;
    long n = recv_raw(k);
    if (n == 0)
        return;                         /* closed without asking */
    if (n < 0) {
        tmd_log_limited(LOG_DEBUG, "control-no-request", k->uid,
                        "control: uid %u (pid %d): no request: %s", (unsigned)k->uid,
                        (int)k->pid, strerror((int)-n));
        return;
    }
    struct tmw_ctl r;
    int rc = tmd_ctl_check_request(k->buf, (size_t)n, &r, &why);
    if (rc < 0) {
        atomic_fetch_add(&d->n.bad_msgs, 1);
        tmd_log_limited(LOG_NOTICE, "control-malformed", k->uid,
                        "control: malformed request from uid %u (pid %d): %s",
                        (unsigned)k->uid, (int)k->pid, why);
        send_end(k->fd, rc, 0);
        drain(k->fd, k->buf);
        return;
    }
    tmd_log(LOG_DEBUG, "control: uid %u (pid %d): %s", (unsigned)k->uid, (int)k->pid,
            op_names[r.op]);
    switch ((enum tmw_ctl_op)r.op) {
    case TMW_CTL_STATS:       rc = op_stats(k); break;
    case TMW_CTL_CLIENTS:     rc = op_clients(k, &r); break;
    case TMW_CTL_LIST:        rc = op_list(k, &r); break;
    case TMW_CTL_FREEZE:
    case TMW_CTL_THAW:        rc = op_freeze(k, &r); break;
    case TMW_CTL_SET:         rc = op_set(k, &r); break;
    case TMW_CTL_SHARED_AUTH: rc = op_shared_auth(k, &r); break;
    case TMW_CTL_FLUSH:       rc = op_flush(k, &r); break;
    case TMW_CTL_FREEABLE:    rc = op_freeable(k); break;
    case TMW_CTL_SAVE:        rc = op_save(k, &r); break;
    case TMW_CTL_RESTORE:     rc = op_restore(k, &r); break;
    case TMW_CTL_END_CLIENT:  rc = op_end_client(k, &r); break;
    case TMW_CTL_SET_UID:     rc = op_set_uid(k, &r); break;
    case TMW_CTL_CONFIG_GET:  rc = op_config_get(k, &r); break;
    case TMW_CTL_CONFIG_SET:  rc = op_config_set(k, &r); break;
    case TMW_CTL_OP_MAX_:     rc = -EINVAL; break;
    }
    send_end(k->fd, rc, 0);
    if (rc < 0 && (r.op == TMW_CTL_RESTORE || r.op == TMW_CTL_CONFIG_SET))
        drain(k->fd, k->buf);           /* the sender may still be sending */
}

static void *conn_thread(void *arg)
{
    struct ctl_conn *k = arg;
    struct tmd_control *ctl = k->d->control;
    serve(k);
    pthread_mutex_lock(&ctl->lock);
    close(k->fd);
    k->fd = -1;
    k->done = true;
    ctl->live--;
    pthread_mutex_unlock(&ctl->lock);
    return NULL;
}

/* Joins the finished threads (ctl->lock held); all of them if all. */
static struct ctl_conn *take_done(struct tmd_control *ctl, bool all)
{
    struct ctl_conn *out = NULL, **pp = &ctl->conns;
    while (*pp) {
        struct ctl_conn *k = *pp;
        if (k->done || all) {
            *pp = k->next;
            k->next = out;
            out = k;
        } else {
            pp = &k->next;
        }
    }
    return out;
}

static void join_all(struct ctl_conn *list)
{
    while (list) {
        struct ctl_conn *k = list;
        list = k->next;
        pthread_join(k->thread, NULL);
        free(k->buf);
        free(k);
    }
}

/* Answers a refused connection from the listener without blocking. */
static void refuse(int fd, int err)
{
    uint8_t buf[256];
    for (int i = 0; i < 4; i++)         /* its request, if already here */
        if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC) <= 0)
            break;
    send_end(fd, err, MSG_DONTWAIT);
    close(fd);
}

/* ------------------------------------------------------------------------
 * The part's interface
 * ---------------------------------------------------------------------- */
int tmd_control_init(struct tmd *d)
{
    struct tmd_control *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return -ENOMEM;
    pthread_mutex_init(&ctl->lock, NULL);
    resolve_group(d, ctl);
    d->control = ctl;
    return 0;
}

void tmd_control_accept(struct tmd *d, int fd, pid_t pid, uid_t uid, gid_t gid)
{
    struct tmd_control *ctl = d->control;
    if (!ctl) {
        close(fd);
        return;
    }
    if (!is_admin(ctl, fd, uid, gid)) {
        atomic_fetch_add(&d->n.ctl_refused, 1);
        tmd_log_limited(LOG_NOTICE, "control-refused", uid,
                        "control: refused uid %u gid %u (pid %d): not an administrator",
                        (unsigned)uid, (unsigned)gid, (int)pid);
        refuse(fd, -EPERM);
        return;
    }
    struct timeval tv = { .tv_sec = CTL_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    pthread_mutex_lock(&ctl->lock);
    struct ctl_conn *done = take_done(ctl, false);
    int err = ctl->stopping ? -ESHUTDOWN : ctl->live >= CTL_MAX_CONNS ? -EBUSY : 0;
    struct ctl_conn *k = NULL;
    if (!err) {
        k = calloc(1, sizeof(*k));
        if (k)
            k->buf = malloc(TMW_MSG_MAX);
        if (!k || !k->buf)
            err = -ENOMEM;
    }
    if (!err) {
        *k = (struct ctl_conn){ .d = d, .fd = fd, .pid = pid, .uid = uid, .gid = gid,
                                .buf = k->buf };
        if (pthread_create(&k->thread, NULL, conn_thread, k) != 0) {
            err = -EAGAIN;
        } else {
            k->next = ctl->conns;
            ctl->conns = k;
            ctl->live++;
        }
    }
    pthread_mutex_unlock(&ctl->lock);
    join_all(done);
    if (err) {
        if (k) {
            free(k->buf);
            free(k);
        }
        if (err == -EBUSY)
            tmd_log_limited(LOG_WARNING, "control-busy", uid,
                            "control: refused uid %u (pid %d): %d control connections "
                            "already", (unsigned)uid, (int)pid, CTL_MAX_CONNS);
        else if (err != -ESHUTDOWN)
            tmd_log_limited(LOG_ERR, "control-failed", uid,
                            "control: cannot serve uid %u (pid %d): %s", (unsigned)uid,
                            (int)pid, strerror(-err));
        refuse(fd, err);
    }
}

void tmd_control_stop(struct tmd *d)
{
    struct tmd_control *ctl = d->control;
    if (!ctl)
        return;
    pthread_mutex_lock(&ctl->lock);
    ctl->stopping = true;
    for (struct ctl_conn *k = ctl->conns; k; k = k->next)
        if (k->fd >= 0)
            shutdown(k->fd, SHUT_RDWR);
    struct ctl_conn *all = take_done(ctl, true);
    pthread_mutex_unlock(&ctl->lock);
    join_all(all);
    pthread_mutex_destroy(&ctl->lock);
    free(ctl);
    d->control = NULL;
}
