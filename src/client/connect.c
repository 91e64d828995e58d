/* SPDX-License-Identifier: MIT */
/*
 * connect.c - tmem_connect(): the HELLO, and the handle it returns.
 *
 * The handle's operations table (tmem/transport.h) sends each call where
 * its pool lives (conn.h): a private pool of a lending daemon is in the
 * handle's own engine, on the daemon's memory, and the call never leaves
 * the caller's thread; a shared pool (or every pool, when the daemon does
 * not lend) is the daemon's, reached through the window (remote.c).
 *
 * Calls, close and fork.  A call counts itself in one of TMC_STRIPES
 * counters (the thread's, so threads of one client do not share a line),
 * then checks `closed`; close sets `closed` and waits for the counters to
 * drain (both seq_cst: either the call sees the flag or close sees the
 * call), then tears down: a closed handle answers -ENODEV and stays
 * allocated (a tombstone, like the engine's).  A child of fork() has none
 * of the parent's mappings (they are MADV_DONTFORK), none of its handles'
 * descriptors (closed in the child at once, so that the daemon sees the
 * connection end with the parent) and no service thread: its handles
 * answer -ENOTCONN; a child connects on its own.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client/conn.h"

#define TMC_HELLO_TIMEOUT_S 10

static _Atomic unsigned fork_gen;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* Open handles, so that a child of fork can close its copies of their
 * descriptors: a child that kept the socket would keep the connection (and
 * the memory lent to it) after the parent has gone. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tmc *live_head;

static void live_add(struct tmc *h)
{
    pthread_mutex_lock(&live_lock);
    h->live_prev = NULL;
    h->live_next = live_head;
    if (live_head)
        live_head->live_prev = h;
    live_head = h;
    pthread_mutex_unlock(&live_lock);
}

static void live_del(struct tmc *h)
{
    pthread_mutex_lock(&live_lock);
    if (h->live_prev)
        h->live_prev->live_next = h->live_next;
    else if (live_head == h)
        live_head = h->live_next;
    if (h->live_next)
        h->live_next->live_prev = h->live_prev;
    h->live_prev = h->live_next = NULL;
    pthread_mutex_unlock(&live_lock);
}

static void on_fork_prepare(void) { pthread_mutex_lock(&live_lock); }
static void on_fork_parent(void) { pthread_mutex_unlock(&live_lock); }

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_gen, 1);
    for (struct tmc *h = live_head; h; h = h->live_next) {
        int fd[4] = { h->sock, h->share_fd, h->arena_fd[0], h->arena_fd[1] };
        for (int i = 0; i < 4; i++)
            if (fd[i] >= 0)
                close(fd[i]);
        h->sock = h->share_fd = h->arena_fd[0] = h->arena_fd[1] = -1;
    }
    pthread_mutex_unlock(&live_lock);
}

static void install_atfork(void)
{
    pthread_atfork(on_fork_prepare, on_fork_parent, on_fork_child);
}

/* Closed handles stay allocated so that a late call gets -ENODEV instead
 * of a use after free; the list keeps them reachable (they are not leaks). */
static pthread_mutex_t dead_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tmc *dead_list;

static unsigned my_stripe(void)
{
    static _Atomic unsigned next;
    static _Thread_local unsigned s = UINT32_MAX;
    if (s == UINT32_MAX)
        s = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed) % TMC_STRIPES;
    return s;
}

static const struct tmem_client_ops tmc_ops;

/* Enters a call: 0 (leave() afterwards), or -ENODEV / -ENOTCONN. */
/* Did the daemon end this client (TMW_EPOCH_ENDED)?  Its lent memory is
 * gone: a local call fails, and a local get that ran while the daemon took
 * it back (the mark comes first) fails too. */
static inline bool ended(const struct tmc *h)
{
    return h->share && __builtin_expect(atomic_load(&h->share->revoke_epoch) == TMW_EPOCH_ENDED, 0);
}

static inline int enter(struct tmc *h, unsigned *s)
{
    if (__builtin_expect(atomic_load_explicit(&fork_gen, memory_order_relaxed) != h->fork_gen, 0))
        return -ENOTCONN;                   /* a child of fork */
    if (ended(h))
        return -ENOTCONN;
    *s = my_stripe();
    atomic_fetch_add(&h->inflight[*s].n, 1);    /* seq_cst: then closed */
    if (__builtin_expect(atomic_load(&h->closed), 0)) {
        atomic_fetch_sub(&h->inflight[*s].n, 1);
        return -ENODEV;
    }
    return 0;
}

static inline void leave(struct tmc *h, unsigned s)
{
    atomic_fetch_sub_explicit(&h->inflight[s].n, 1, memory_order_release);
}

/* ------------------------------------------------------------------------
 * The HELLO
 * ---------------------------------------------------------------------- */
int tmc_send(struct tmc *h, const void *msg, size_t len)
{
    pthread_mutex_lock(&h->send_lock);
    ssize_t n = h->sock >= 0 ? send(h->sock, msg, len, MSG_NOSIGNAL) : -1;
    int e = errno;
    pthread_mutex_unlock(&h->send_lock);
    if (n == (ssize_t)len)
        return 0;
    return n < 0 ? (h->sock < 0 ? -ENOTCONN : -e) : -EIO;
}

static int send_hello(int sock, const char *name, uint32_t flags, uint32_t unit,
                      const int *fds, int nfds)
{
    struct tmw_hello m;
    memset(&m, 0, sizeof(m));
    m.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO, sizeof(m), 0 };
    memcpy(m.name, name, strnlen(name, sizeof(m.name)));
    m.flags = flags;
    m.unit_bytes = unit;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { &m, sizeof(m) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int)) };
    struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(ch), fds, (size_t)nfds * sizeof(int));
    /* a daemon that refuses (too many clients) answers and closes at once,
     * maybe before this send: the caller reads its answer whatever the
     * send says */
    ssize_t sent = sendmsg(sock, &mh, MSG_NOSIGNAL);
    return sent == (ssize_t)sizeof(m) ? 0 : sent < 0 ? -errno : -EIO;
}

/* Receives the HELLO reply and up to 3 descriptors (the rest closed). */
static int recv_reply(int sock, struct tmw_hello_reply *rep, int fds[3], int *nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } cm;
    struct iovec iov = { rep, sizeof(*rep) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    *nfds = 0;
    if (n < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
        if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(ch) + i * sizeof(int), sizeof(int));
            if (*nfds < 3)
                fds[(*nfds)++] = fd;
            else
                close(fd);
        }
    }
    if (n == 0)
        return -ECONNRESET;
    if ((size_t)n != sizeof(*rep) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        rep->m.magic != TMW_MAGIC || rep->m.version != TMW_VERSION ||
        rep->m.type != TMW_MSG_HELLO_REPLY || rep->m.len != sizeof(*rep))
        return -EPROTO;
    return 0;
}

int tmc_hello(struct tmc *h, bool adopt, struct tmw_hello_reply *rep, int *sockp, int fds[3])
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(h->path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, h->path);
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return -errno;
    struct timeval tv = { TMC_HELLO_TIMEOUT_S, 0 };
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int rc, nfds = 0;
    fds[0] = fds[1] = fds[2] = -1;
    if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        rc = -errno;
        goto fail;
    }
    int give[3] = { h->share_fd, h->arena_fd[0], h->arena_fd[1] };
    int send_err = send_hello(sock, h->name, adopt ? TMW_HELLO_ADOPT : 0,
                              adopt ? (uint32_t)h->unit_bytes : 0, give, adopt ? 3 : 1);
    rc = recv_reply(sock, rep, fds, &nfds);
    if (rc) {
        rc = send_err ? send_err : rc;
        goto fail;
    }
    rc = rep->m.result;
    bool lend = rep->mode == TMW_MODE_LEND;
    uint64_t ub = rep->unit_bytes;
    bool unit_ok = ub == TMEM_UNIT_FRAMES_MIN * TMEM_PAGE_SIZE ||
                   ub == 2 * TMEM_UNIT_FRAMES_MIN * TMEM_PAGE_SIZE ||
                   ub == TMEM_UNIT_FRAMES_MAX * TMEM_PAGE_SIZE;
    bool sizes_ok = rep->arena_bytes[0] % TMEM_ARENA_ALIGN == 0 && rep->arena_bytes[0] &&
                    rep->arena_bytes[1] % TMEM_ARENA_ALIGN == 0 && rep->arena_bytes[1];
    if (rc >= 0 && (nfds < 1 || rep->window_size != TMW_WINDOW_SIZE ||
                    (rep->mode != TMW_MODE_WINDOW && !lend) ||
                    (lend && (!unit_ok || !sizes_ok)) ||
                    (lend && adopt && ub != h->unit_bytes) ||
                    (lend && !adopt && nfds != 3)))
        rc = -EPROTO;
    if (rc < 0)
        goto fail;
    *sockp = sock;
    /* the calls from now on block only where they mean to */
    struct timeval none = { 0, 0 };
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    return 0;
fail:
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    fds[0] = fds[1] = fds[2] = -1;
    close(sock);
    return rc;
}

/* ------------------------------------------------------------------------
 * tmem_connect
 * ---------------------------------------------------------------------- */
static void handle_free(struct tmc *h)
{
    pthread_rwlock_destroy(&h->conn_lock);
    pthread_rwlock_destroy(&h->pools_lock);
    pthread_mutex_destroy(&h->send_lock);
    pthread_mutex_destroy(&h->grow_lock);
    pthread_mutex_destroy(&h->reply_lock);
    pthread_mutex_destroy(&h->units_lock);
    pthread_mutex_destroy(&h->jobs_lock);
    pthread_cond_destroy(&h->jobs_cond);
    pthread_mutex_destroy(&h->restore_lock);
    pthread_cond_destroy(&h->restore_cond);
    pthread_mutex_destroy(&h->report_lock);
    free(h->path);
    free(h);
}

tmem_client_t *tmem_connect(const char *socket_path, const char *name)
{
    pthread_once(&atfork_once, install_atfork);
    if (!socket_path)
        socket_path = getenv("TMEM_SOCKET");
    if (!socket_path || !*socket_path)
        socket_path = TMW_DEFAULT_SOCKET;
    struct sockaddr_un sa;
    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    struct tmc *h = aligned_alloc(_Alignof(struct tmc), sizeof(struct tmc));
    if (h)
        memset(h, 0, sizeof(*h));
    if (!h || !(h->path = strdup(socket_path))) {
        free(h);
        errno = ENOMEM;
        return NULL;
    }
    if (name)
        memcpy(h->name, name, strnlen(name, sizeof(h->name) - 1));
    h->fork_gen = atomic_load(&fork_gen);
    h->sock = h->share_fd = -1;
    h->arena_fd[0] = h->arena_fd[1] = -1;
    pthread_rwlock_init(&h->conn_lock, NULL);
    pthread_rwlock_init(&h->pools_lock, NULL);
    pthread_mutex_init(&h->send_lock, NULL);
    pthread_mutex_init(&h->grow_lock, NULL);
    pthread_mutex_init(&h->reply_lock, NULL);
    pthread_mutex_init(&h->units_lock, NULL);
    pthread_mutex_init(&h->jobs_lock, NULL);
    pthread_cond_init(&h->jobs_cond, NULL);
    pthread_mutex_init(&h->restore_lock, NULL);
    pthread_cond_init(&h->restore_cond, NULL);
    pthread_mutex_init(&h->report_lock, NULL);

    struct tmw_hello_reply rep;
    int fds[3] = { -1, -1, -1 }, sock = -1;
    int rc = tmc_share_open(h);
    /* -EAGAIN is a daemon at one of its bounds (clients, or this uid's
     * connections still in their HELLO: a burst of them): tried again,
     * backing off, for up to a second */
    for (unsigned wait_ms = 5, waited = 0; rc == 0;) {
        rc = tmc_hello(h, false, &rep, &sock, fds);
        if (rc != -EAGAIN || waited >= 1000)
            break;
        struct timespec ts = { 0, (long)wait_ms * 1000000L };
        nanosleep(&ts, NULL);
        waited += wait_ms;
        wait_ms = wait_ms < 80 ? wait_ms * 2 : 100;
        rc = 0;
    }
    if (rc) {
        if (h->share)
            tmc_lend_close(h);
        handle_free(h);
        errno = -rc;
        return NULL;
    }
    h->sock = sock;
    atomic_store(&h->id, rep.client_id);
    h->mode = (int)rep.mode;
    h->win = tmr_window_open(fds[0]);
    rc = h->win ? 0 : -errno;
    close(fds[0]);
    if (rc == 0 && h->mode == TMW_MODE_LEND)
        rc = tmc_lend_open(h, &rep, fds);       /* takes fds[1], fds[2] */
    else
        for (int i = 1; i < 3; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    atomic_store(&h->connected, 1);
    if (rc == 0) {
        if (rep.flags & TMW_REPLY_RESTORE)
            h->restore_state = 1;
        rc = tmc_threads_start(h);
    }
    if (rc) {
        tmc_lend_close(h);
        tmr_window_close(h->win);
        close(sock);
        handle_free(h);
        errno = -rc;
        return NULL;
    }
    if (h->restore_state)       /* a parked client's pools come first */
        tmc_wait_restore(h);
    live_add(h);
    h->head.ops = &tmc_ops;
    atomic_store(&h->head.magic, TMEM_HANDLE_MAGIC);
    return (tmem_client_t *)(void *)h;
}

/* ------------------------------------------------------------------------
 * Calls
 * ---------------------------------------------------------------------- */
/* A call through the window, on the connection of now. */
static int window_call(struct tmc *h, uint32_t op, uint32_t pool_id, const tmem_oid_t *oid,
                       uint32_t index, uint32_t arg, const void *in, void *out)
{
    pthread_rwlock_rdlock(&h->conn_lock);
    int rc = h->win ? tmr_call(h->win, op, pool_id, oid, index, arg, in, out) : -ENOTCONN;
    pthread_rwlock_unlock(&h->conn_lock);
    return rc;
}

/* Where pool_id lives: TMC_LOCAL or TMC_REMOTE, and the id to use there.
 * An id that names no pool goes to the local engine, which answers -ENODEV
 * (and counts it, as the daemon would). */
static inline uint32_t where_is(struct tmc *h, uint32_t pool_id, uint32_t *id)
{
    if (h->mode == TMW_MODE_WINDOW) {
        *id = pool_id;
        return TMC_REMOTE;
    }
    uint32_t w = pool_id < TMEM_MAX_POOLS
               ? atomic_load_explicit(&h->pools[pool_id].where, memory_order_acquire) : TMC_NONE;
    if (w != TMC_REMOTE) {
        *id = pool_id;
        return TMC_LOCAL;
    }
    *id = atomic_load_explicit(&h->pools[pool_id].remote_id, memory_order_relaxed);
    return w;
}

static int tmc_put(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   const void *page)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    uint32_t id;
    switch ((int)where_is(h, pool_id, &id)) {
    case TMC_LOCAL:
        rc = tmem_put_page(h->local, id, *oid, index, page);
        break;
    case TMC_REMOTE:
        rc = page ? window_call(h, TMW_OP_PUT, id, oid, index, 0, page, NULL) : -EINVAL;
        break;
    }
    leave(h, s);
    return rc;
}

static int tmc_get(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   void *page)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    uint32_t id;
    switch ((int)where_is(h, pool_id, &id)) {
    case TMC_LOCAL:
        rc = tmem_get_page(h->local, id, *oid, index, page);
        if (ended(h))
            rc = -ENOTCONN;
        break;
    case TMC_REMOTE:
        rc = page ? window_call(h, TMW_OP_GET, id, oid, index, 0, NULL, page) : -EINVAL;
        break;
    }
    leave(h, s);
    return rc;
}

static int tmc_flush_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                          uint32_t index)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    uint32_t id;
    switch ((int)where_is(h, pool_id, &id)) {
    case TMC_LOCAL:
        rc = tmem_flush_page(h->local, id, *oid, index);
        break;
    case TMC_REMOTE:
        rc = window_call(h, TMW_OP_FLUSH_PAGE, id, oid, index, 0, NULL, NULL);
        break;
    }
    leave(h, s);
    return rc;
}

static int tmc_flush_object(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    uint32_t id;
    switch ((int)where_is(h, pool_id, &id)) {
    case TMC_LOCAL:
        rc = tmem_flush_object(h->local, id, *oid);
        break;
    case TMC_REMOTE:
        rc = window_call(h, TMW_OP_FLUSH_OBJECT, id, oid, 0, 0, NULL, NULL);
        break;
    }
    leave(h, s);
    return rc;
}

/* The vector calls: pages of local pools one by one, in the caller's
 * thread; those of the daemon's pools in batches of up to TMW_NSLOTS
 * distinct handles (a handle that repeats starts a new batch, so that the
 * pages of one handle are handled in order). */
struct batch {
    size_t n;
    size_t at[TMW_NSLOTS];              /* index in the caller's arrays */
    uint32_t pool[TMW_NSLOTS];
    tmem_handle_t h[TMW_NSLOTS];
    const void *in[TMW_NSLOTS];
    void *out[TMW_NSLOTS];
};

static int batch_flush(struct tmc *h, struct batch *b, uint32_t op, int *results)
{
    if (!b->n)
        return 0;
    int r[TMW_NSLOTS], ok;
    pthread_rwlock_rdlock(&h->conn_lock);
    if (h->win) {
        ok = tmr_call_batch(h->win, op, b->n, b->pool, b->h, b->in, b->out, r);
    } else {
        ok = 0;
        for (size_t i = 0; i < b->n; i++)
            r[i] = -ENOTCONN;
    }
    pthread_rwlock_unlock(&h->conn_lock);
    for (size_t i = 0; i < b->n; i++)
        results[b->at[i]] = r[i];
    b->n = 0;
    return ok;
}

static bool batch_has(const struct batch *b, uint32_t pool, const tmem_handle_t *x)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->pool[i] == pool && b->h[i].index == x->index &&
            !memcmp(&b->h[i].oid, &x->oid, sizeof(x->oid)))
            return true;
    return false;
}

static int vector(tmem_client_t *c, uint32_t op, size_t n, const tmem_handle_t *hs,
                  const void *const *in, void *const *out, int *results)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            results[i] = rc;
        return 0;
    }
    struct batch *b = malloc(sizeof(*b));
    int ok = 0;
    if (b)
        b->n = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t id, w = where_is(h, hs[i].pool_id, &id);
        const void *pin = op == TMW_OP_PUT ? in[i] : NULL;
        void *pout = op == TMW_OP_GET ? out[i] : NULL;
        if (w == TMC_LOCAL) {
            rc = op == TMW_OP_PUT ? tmem_put_page(h->local, id, hs[i].oid, hs[i].index, pin)
               : op == TMW_OP_GET ? tmem_get_page(h->local, id, hs[i].oid, hs[i].index, pout)
                                  : tmem_flush_page(h->local, id, hs[i].oid, hs[i].index);
            if (op == TMW_OP_GET && ended(h))
                rc = -ENOTCONN;
        } else if (w == TMC_REMOTE && (op == TMW_OP_FLUSH_PAGE || pin || pout)) {
            if (!b) {
                rc = window_call(h, op, id, &hs[i].oid, hs[i].index, 0, pin, pout);
            } else {
                if (b->n == TMW_NSLOTS || batch_has(b, id, &hs[i]))
                    ok += batch_flush(h, b, op, results);
                b->at[b->n] = i;
                b->pool[b->n] = id;
                b->h[b->n] = hs[i];
                b->in[b->n] = pin;
                b->out[b->n] = pout;
                b->n++;
                continue;
            }
        } else {
            rc = -EINVAL;           /* a NULL page for the daemon's pool */
        }
        results[i] = rc;
        ok += rc == 0;
    }
    if (b) {
        ok += batch_flush(h, b, op, results);
        free(b);
    }
    leave(h, s);
    return ok;
}

static int tmc_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h,
                         const void *const *pages, int *results)
{
    return vector(c, TMW_OP_PUT, n, h, pages, NULL, results);
}

static int tmc_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, void *const *pages,
                         int *results)
{
    return vector(c, TMW_OP_GET, n, h, NULL, pages, results);
}

static int tmc_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, int *results)
{
    return vector(c, TMW_OP_FLUSH_PAGE, n, h, NULL, NULL, results);
}

/* ------------------------------------------------------------------------
 * Pools
 * ---------------------------------------------------------------------- */
static int tmc_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    tmem_oid_t u = { { uuid.lo, uuid.hi, 0 } };
    if (h->mode == TMW_MODE_WINDOW) {
        rc = window_call(h, TMW_OP_NEW_POOL, 0, &u, 0, flags, NULL, NULL);
        leave(h, s);
        return rc;
    }
    pthread_rwlock_wrlock(&h->pools_lock);
    int slot = -1;
    for (int i = 0; i < (int)TMEM_MAX_POOLS && slot < 0; i++)
        if (atomic_load(&h->pools[i].where) == TMC_NONE)
            slot = i;
    bool shared = (flags & TMEM_POOL_SHARED) && !(uuid.lo == UINT64_MAX && uuid.hi == UINT64_MAX);
    rc = -EACCES;
    if (shared)         /* the daemon's, if this client may join it (it checks the flags) */
        rc = window_call(h, TMW_OP_JOIN_SHARED, 0, &u, 0, flags, NULL, NULL);
    if (rc >= 0) {
        int joined = rc;
        rc = -ENOMEM;
        for (int i = 0; i < (int)TMEM_MAX_POOLS && rc < 0; i++)    /* joined again */
            if (atomic_load(&h->pools[i].where) == TMC_REMOTE &&
                atomic_load(&h->pools[i].remote_id) == (uint32_t)joined)
                rc = i;
        if (rc < 0 && slot >= 0) {
            struct tmc_pool *p = &h->pools[slot];
            p->flags = flags;
            p->uuid = uuid;
            atomic_store(&p->remote_id, (uint32_t)joined);
            atomic_store_explicit(&p->where, TMC_REMOTE, memory_order_release);
            rc = slot;
        } else if (rc < 0) {
            window_call(h, TMW_OP_DESTROY_POOL, (uint32_t)joined, NULL, 0, 0, NULL, NULL);
        }
    } else if (rc == -EACCES) {
        /* here: a private pool (also a shared one not authorised, as Xen);
         * the engine checks the flags and counts what is wrong */
        rc = slot < 0 ? -ENOMEM
                      : tmem_new_pool_at(h->local, (uint32_t)slot, uuid,
                                         shared ? flags & ~TMEM_POOL_SHARED : flags);
        if (rc >= 0)
            atomic_store_explicit(&h->pools[slot].where, TMC_LOCAL, memory_order_release);
    }
    pthread_rwlock_unlock(&h->pools_lock);
    leave(h, s);
    return rc;
}

static int tmc_destroy_pool(tmem_client_t *c, uint32_t pool_id)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    if (h->mode == TMW_MODE_WINDOW) {
        rc = window_call(h, TMW_OP_DESTROY_POOL, pool_id, NULL, 0, 0, NULL, NULL);
        leave(h, s);
        return rc;
    }
    pthread_rwlock_wrlock(&h->pools_lock);
    uint32_t id, w = where_is(h, pool_id, &id);
    if (w == TMC_LOCAL) {
        rc = tmem_destroy_pool(h->local, id);
    } else {
        rc = window_call(h, TMW_OP_DESTROY_POOL, id, NULL, 0, 0, NULL, NULL);
        if (rc == -ENOTCONN)
            rc = 0;                 /* the daemon that had it is gone, and the pool too */
    }
    if (rc == 0)
        atomic_store(&h->pools[pool_id].where, TMC_NONE);
    pthread_rwlock_unlock(&h->pools_lock);
    leave(h, s);
    return rc;
}

static int tmc_pool_is_shared(tmem_client_t *c, uint32_t pool_id)
{
    struct tmc *h = TMC(c);
    unsigned s;
    int rc = enter(h, &s);
    if (rc)
        return rc;
    uint32_t id, w = where_is(h, pool_id, &id);
    if (h->mode == TMW_MODE_WINDOW)
        rc = window_call(h, TMW_OP_POOL_IS_SHARED, id, NULL, 0, 0, NULL, NULL);
    else
        rc = w == TMC_REMOTE ? 1 : tmem_pool_is_shared(h->local, id);
    leave(h, s);
    return rc;
}

/* ------------------------------------------------------------------------
 * The handle's life
 * ---------------------------------------------------------------------- */
static void tmc_close(tmem_client_t *c)
{
    struct tmc *h = TMC(c);
    int was = 0;
    if (!atomic_compare_exchange_strong(&h->closed, &was, 1))
        return;
    /* calls that got in before the flag finish first (a broken connection
     * ends them within 100 ms) */
    for (;;) {
        long n = 0;
        for (unsigned i = 0; i < TMC_STRIPES; i++)
            n += atomic_load(&h->inflight[i].n);
        if (n <= 0)
            break;
        sched_yield();
    }
    live_del(h);
    if (atomic_load(&fork_gen) == h->fork_gen) {
        tmc_threads_stop(h);            /* shuts the socket down: the daemon frees us */
        tmc_lend_close(h);              /* the engine, the arenas, the shared page */
        tmr_window_close(h->win);
        h->win = NULL;
        if (h->sock >= 0)
            close(h->sock);
        h->sock = -1;
    }
    pthread_mutex_lock(&dead_lock);
    h->next_dead = dead_list;
    dead_list = h;
    pthread_mutex_unlock(&dead_lock);
}

static uint32_t tmc_client_id(const tmem_client_t *c)
{
    return atomic_load(&TMC(c)->id);
}

static int64_t tmc_restore(tmem_client_t *c, tmem_read_fn read, void *arg)
{
    (void)c;
    (void)read;
    (void)arg;
    return -EOPNOTSUPP;         /* tmemctl restore does that, in the daemon */
}

static const struct tmem_client_ops tmc_ops = {
    .name = "tmemd",
    .new_pool = tmc_new_pool,
    .destroy_pool = tmc_destroy_pool,
    .pool_is_shared = tmc_pool_is_shared,
    .put_page = tmc_put,
    .get_page = tmc_get,
    .flush_page = tmc_flush_page,
    .flush_object = tmc_flush_object,
    .put_pages = tmc_put_pages,
    .get_pages = tmc_get_pages,
    .flush_pages = tmc_flush_pages,
    .close = tmc_close,
    .release = tmc_close,
    .id = tmc_client_id,
    .is_remote = 1,
    .restore = tmc_restore,
};
