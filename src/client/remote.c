/*
 * remote.c - tmem_connect() and the client calls through tmemd.
 *
 * The socket carries one HELLO each way (the reply brings the window, a
 * sealed memfd); every call then goes through a slot of the window
 * (src/proto/wire.h tells the protocol): no system call per page while the
 * daemon's worker is awake, one FUTEX_WAKE when it sleeps.
 *
 * Waiting for a reply: spin for TMR_SPIN_NS (a daemon that is awake answers
 * in a few microseconds; a cross-CPU wake-up costs 15-30 us on these
 * machines, so sleeping at once would double the latency), then sleep on
 * the slot's state in steps of TMR_CHECK_NS, checking between steps that
 * the daemon is still there.  When the worker runs on this very CPU
 * (wire.h, placement hints) the call sleeps at once instead, and so do the
 * calls of a client whose CPU turned out to be shared with other work (a
 * yield that took over TM_YIELD_SLOW_NS, futex.h), for TM_CROWDED_NS.  A lost daemon breaks the handle for good:
 * every call returns -ENOTCONN and the caller falls back to its disk.
 *
 * Slots are claimed from a free mask private to this process, so threads
 * of one client never contend in shared memory; a thread that finds none
 * free sleeps on the mask (a private futex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "tmem/transport.h"
#include "proto/futex.h"
#include "proto/wire.h"

#define TMR_SPIN_NS   60000u            /* 60 us */
#define TMR_PAUSE_NS  1500u             /* spinning turns from pause to yield after this */
#define TMR_CHECK_NS  100000000u        /* 100 ms */
#define TMR_HELLO_TIMEOUT_S 10

struct tmr_client {
    struct tmem_client_head head;       /* TMEM_HANDLE_MAGIC, &tmr_ops (transport.h) */
    int sock;                           /* -1 once closed */
    uint32_t id;                        /* the daemon's client id (immutable) */
    _Atomic int broken;                 /* the daemon is gone: -ENOTCONN from now on */
    _Atomic int closed;
    _Atomic int inflight;               /* calls inside; close waits for them */
    uint8_t *win;                       /* TMW_WINDOW_SIZE bytes, shared with tmemd */
    struct tmw_header *hdr;
    struct tmw_slot *slots;
    uint8_t *pages;
    _Atomic uint32_t free_mask;         /* bit i: slot i is free (this process only) */
    _Atomic uint32_t slot_waiters;      /* threads sleeping on free_mask */
    _Atomic uint64_t crowded_until;     /* calls sleep at once until then (TM_CROWDED_NS) */
    struct tmr_client *next_dead;       /* closed handles (dead_lock) */
};

/* Closed handles stay allocated, like the engine's tombstones, so that a
 * late call gets -ENODEV instead of a use after free; the list keeps them
 * reachable (they are not leaks). */
static pthread_mutex_t dead_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tmr_client *dead_list;

static inline struct tmr_client *R(tmem_client_t *c) { return (struct tmr_client *)(void *)c; }

static const struct tmem_client_ops tmr_ops;

/* ------------------------------------------------------------------------
 * Connecting
 * ---------------------------------------------------------------------- */
static int hello(int sock, const char *name, struct tmw_hello_reply *rep, int *fd)
{
    struct tmw_hello h;
    memset(&h, 0, sizeof(h));
    h.m.magic = TMW_MAGIC;
    h.m.version = TMW_VERSION;
    h.m.type = TMW_MSG_HELLO;
    h.m.len = sizeof(h);
    if (name)       /* need not be terminated */
        memcpy(h.name, name, strnlen(name, sizeof(h.name)));
    /* a daemon that refuses (too many clients) answers and closes at once,
     * maybe before this send: read its answer whatever the send says */
    ssize_t sent = send(sock, &h, sizeof(h), MSG_NOSIGNAL);
    int send_err = sent == (ssize_t)sizeof(h) ? 0 : sent < 0 ? -errno : -EIO;

    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct iovec iov = { rep, sizeof(*rep) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf) };
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return send_err ? send_err : errno == EAGAIN ? -ETIMEDOUT : -errno;
    *fd = -1;
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
        if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
            continue;
        /* keep exactly one descriptor; close any other a peer sent */
        size_t nfd = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t k = 0; k < nfd; k++) {
            int got;
            memcpy(&got, CMSG_DATA(ch) + k * sizeof(int), sizeof(int));
            if (*fd < 0 && nfd == 1)
                *fd = got;
            else
                close(got);
        }
    }
    if (n == 0)
        return send_err ? send_err : -ECONNRESET;
    if ((size_t)n != sizeof(*rep) || (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
        rep->m.magic != TMW_MAGIC || rep->m.version != TMW_VERSION ||
        rep->m.type != TMW_MSG_HELLO_REPLY || rep->m.len != sizeof(*rep))
        return -EPROTO;
    if (rep->m.result < 0)
        return rep->m.result;
    if (*fd < 0 || rep->window_size != TMW_WINDOW_SIZE)
        return -EPROTO;
    return 0;
}

tmem_client_t *tmem_connect(const char *socket_path, const char *name)
{
    if (!socket_path)
        socket_path = getenv("TMEM_SOCKET");
    if (!socket_path || !*socket_path)
        socket_path = TMW_DEFAULT_SOCKET;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(socket_path) >= sizeof(sa.sun_path)) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    strcpy(sa.sun_path, socket_path);

    int err, fd = -1;
    struct tmr_client *r = NULL;
    int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (sock < 0)
        return NULL;
    struct timeval tv = { TMR_HELLO_TIMEOUT_S, 0 };
    setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        err = errno;
        goto fail;
    }
    struct tmw_hello_reply rep;
    int rc = hello(sock, name, &rep, &fd);
    if (rc) {
        err = -rc;
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)TMW_WINDOW_SIZE) {
        err = EPROTO;
        goto fail;
    }
    void *win = mmap(NULL, TMW_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (win == MAP_FAILED) {
        err = errno;
        goto fail;
    }
    close(fd);
    fd = -1;
    r = calloc(1, sizeof(*r));
    if (!r) {
        munmap(win, TMW_WINDOW_SIZE);
        err = ENOMEM;
        goto fail;
    }
    r->win = win;
    r->hdr = win;
    if (r->hdr->magic != TMW_MAGIC || r->hdr->version != TMW_VERSION ||
        r->hdr->nslots != TMW_NSLOTS || r->hdr->slots_off != TMW_SLOTS_OFF ||
        r->hdr->pages_off != TMW_PAGES_OFF) {
        munmap(win, TMW_WINDOW_SIZE);
        free(r);
        r = NULL;
        err = EPROTO;
        goto fail;
    }
    r->slots = (struct tmw_slot *)(r->win + TMW_SLOTS_OFF);
    r->pages = r->win + TMW_PAGES_OFF;
    r->sock = sock;
    r->id = rep.client_id;
    atomic_store(&r->free_mask, TMW_NSLOTS == 32 ? UINT32_MAX : (1u << TMW_NSLOTS) - 1);
    r->head.ops = &tmr_ops;
    atomic_store(&r->head.magic, TMEM_HANDLE_MAGIC);
    return (tmem_client_t *)(void *)r;

fail:
    if (fd >= 0)
        close(fd);
    close(sock);
    errno = err;
    return NULL;
}

/* ------------------------------------------------------------------------
 * Calls
 * ---------------------------------------------------------------------- */
static bool daemon_gone(struct tmr_client *r)
{
    struct pollfd p = { r->sock, POLLIN | POLLRDHUP, 0 };
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
        return true;
    /* the daemon sends nothing after the HELLO reply: anything readable is
     * its end (0) or a protocol error, and either breaks the connection */
    char b;
    return recv(r->sock, &b, 1, MSG_DONTWAIT | MSG_PEEK) >= 0;
}

static int claim_slot(struct tmr_client *r)
{
    for (;;) {
        uint32_t m = atomic_load_explicit(&r->free_mask, memory_order_acquire);
        if (m) {
            int i = __builtin_ctz(m);
            if (atomic_compare_exchange_weak(&r->free_mask, &m, m & ~(1u << i)))
                return i;
            continue;
        }
        if (atomic_load(&r->broken))
            return -ENOTCONN;
        atomic_fetch_add(&r->slot_waiters, 1);
        /* private futex would do; the shared flavour is correct as well */
        tm_futex_wait(&r->free_mask, 0, TMR_CHECK_NS);
        atomic_fetch_sub(&r->slot_waiters, 1);
    }
}

static void free_slot(struct tmr_client *r, int i)
{
    atomic_fetch_or(&r->free_mask, 1u << i);    /* seq_cst: then the waiters load */
    if (atomic_load(&r->slot_waiters))
        tm_futex_wake(&r->free_mask, 1);
}

/* Waits for slot s to be DONE.  0, or -ENOTCONN when the daemon is gone. */
static int wait_done(struct tmr_client *r, struct tmw_slot *s, bool spin)
{
    uint64_t start = tm_now_ns(), now = start;
    if (start < atomic_load_explicit(&r->crowded_until, memory_order_relaxed))
        spin = false;
    for (unsigned n = 1; spin; n++) {
        if (atomic_load_explicit(&s->state, memory_order_acquire) == TMW_DONE)
            return 0;
        /* pause for the first microseconds, then yield: when more threads
         * spin than there are CPUs (several clients and their workers on
         * two vCPUs), a pure spin keeps the worker we wait for off the CPU
         * for a whole time slice */
        if (now - start < TMR_PAUSE_NS) {
            tm_cpu_relax();
        } else {
            if (tm_yield_was_slow(&now)) {          /* a CPU shared with other work */
                atomic_store_explicit(&r->crowded_until, now + TM_CROWDED_NS,
                                      memory_order_relaxed);
                break;
            }
        }
        if ((n & 7) == 0 && (now = tm_now_ns()) - start > TMR_SPIN_NS)
            break;
    }
    atomic_store(&s->waiter, 1);    /* seq_cst: the daemon's DONE then waiter load */
    uint64_t checked = tm_now_ns();
    while (atomic_load(&s->state) != TMW_DONE) {
        tm_futex_wait(&s->state, TMW_POSTED, TMR_CHECK_NS);
        /* by the clock, not the wait's result: signals (EINTR) may keep
         * the wait from ever timing out */
        uint64_t t = tm_now_ns();
        if (t - checked >= TMR_CHECK_NS) {
            checked = t;
            /* the daemon stops the worker (which completes and publishes
             * the request it took) before it closes the connection: after
             * seeing it gone, one last look at the slot, so that a request
             * carried out (an exclusive get) is never reported failed */
            if (atomic_load(&s->state) != TMW_DONE && daemon_gone(r))
                return atomic_load(&s->state) == TMW_DONE ? 0 : -ENOTCONN;
        }
    }
    return 0;
}

static int call(tmem_client_t *c, uint32_t op, uint32_t pool_id, const tmem_oid_t *oid,
                uint32_t index, uint32_t arg, const void *in, void *out)
{
    struct tmr_client *r = R(c);
    atomic_fetch_add(&r->inflight, 1);
    int rc;
    if (atomic_load(&r->closed)) {
        rc = -ENODEV;
        goto out;
    }
    if (atomic_load_explicit(&r->broken, memory_order_relaxed)) {
        rc = -ENOTCONN;
        goto out;
    }
    int i = claim_slot(r);
    if (i < 0) {
        rc = i;
        goto out;
    }
    struct tmw_slot *s = &r->slots[i];
    uint8_t *page = r->pages + (size_t)i * TMEM_PAGE_SIZE;
    s->op = op;
    s->pool_id = pool_id;
    s->index = index;
    s->arg = arg;
    if (oid)
        memcpy(s->oid, oid->oid, sizeof(s->oid));
    if (in)
        memcpy(page, in, TMEM_PAGE_SIZE);
    unsigned cpu = (unsigned)sched_getcpu();
    s->client_cpu = cpu;
    atomic_store_explicit(&s->waiter, 0, memory_order_relaxed);
    atomic_store_explicit(&s->state, TMW_POSTED, memory_order_release);
    atomic_fetch_or(&r->hdr->pending, 1u << i);         /* seq_cst: then sleeping */
    if (atomic_load(&r->hdr->sleeping))
        tm_futex_wake(&r->hdr->pending, 1);
    /* on the worker's CPU, spinning would keep it off: sleep at once */
    rc = wait_done(r, s, atomic_load_explicit(&r->hdr->worker_cpu, memory_order_relaxed) != cpu);
    if (rc) {
        /* the slot stays taken: the connection is over */
        atomic_store(&r->broken, 1);
        goto out;
    }
    rc = s->result;
    if (out && rc == 0)
        memcpy(out, page, TMEM_PAGE_SIZE);
    atomic_store_explicit(&s->state, TMW_FREE, memory_order_relaxed);
    free_slot(r, i);
out:
    atomic_fetch_sub(&r->inflight, 1);
    return rc;
}

static int tmr_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags)
{
    tmem_oid_t u = { { uuid.lo, uuid.hi, 0 } };
    return call(c, TMW_OP_NEW_POOL, 0, &u, 0, flags, NULL, NULL);
}

static int tmr_destroy_pool(tmem_client_t *c, uint32_t pool_id)
{
    return call(c, TMW_OP_DESTROY_POOL, pool_id, NULL, 0, 0, NULL, NULL);
}

static int tmr_pool_is_shared(tmem_client_t *c, uint32_t pool_id)
{
    return call(c, TMW_OP_POOL_IS_SHARED, pool_id, NULL, 0, 0, NULL, NULL);
}

static int tmr_put(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   const void *page)
{
    if (!page)
        return -EINVAL;
    return call(c, TMW_OP_PUT, pool_id, oid, index, 0, page, NULL);
}

static int tmr_get(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                   void *page)
{
    if (!page)
        return -EINVAL;
    return call(c, TMW_OP_GET, pool_id, oid, index, 0, NULL, page);
}

static int tmr_flush_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                          uint32_t index)
{
    return call(c, TMW_OP_FLUSH_PAGE, pool_id, oid, index, 0, NULL, NULL);
}

static int tmr_flush_object(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid)
{
    return call(c, TMW_OP_FLUSH_OBJECT, pool_id, oid, 0, 0, NULL, NULL);
}

static int tmr_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h,
                         const void *const *pages, int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tmr_put(c, h[i].pool_id, &h[i].oid, h[i].index, pages[i])) == 0;
    return ok;
}

static int tmr_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, void *const *pages,
                         int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tmr_get(c, h[i].pool_id, &h[i].oid, h[i].index, pages[i])) == 0;
    return ok;
}

static int tmr_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tmr_flush_page(c, h[i].pool_id, &h[i].oid, h[i].index)) == 0;
    return ok;
}

static uint32_t tmr_client_id(const tmem_client_t *c)
{
    return ((const struct tmr_client *)(const void *)c)->id;
}

static int64_t tmr_restore(tmem_client_t *c, tmem_read_fn read, void *arg)
{
    (void)c;
    (void)read;
    (void)arg;
    return -EOPNOTSUPP;         /* tmemctl restore does that, in the daemon */
}

static void tmr_close(tmem_client_t *c)
{
    struct tmr_client *r = R(c);
    int was = 0;
    if (!atomic_compare_exchange_strong(&r->closed, &was, 1))
        return;
    /* calls that got in before the flag finish first (a broken connection
     * ends them within TMR_CHECK_NS) */
    while (atomic_load(&r->inflight) > 0) {
        if (atomic_load(&r->slot_waiters))
            tm_futex_wake(&r->free_mask, INT32_MAX);
        sched_yield();
    }
    close(r->sock);         /* the daemon frees the client's pools */
    r->sock = -1;
    munmap(r->win, TMW_WINDOW_SIZE);
    r->win = NULL;
    r->hdr = NULL;
    r->slots = NULL;
    r->pages = NULL;
    pthread_mutex_lock(&dead_lock);
    r->next_dead = dead_list;
    dead_list = r;
    pthread_mutex_unlock(&dead_lock);
}

static const struct tmem_client_ops tmr_ops = {
    .name = "tmemd",
    .new_pool = tmr_new_pool,
    .destroy_pool = tmr_destroy_pool,
    .pool_is_shared = tmr_pool_is_shared,
    .put_page = tmr_put,
    .get_page = tmr_get,
    .flush_page = tmr_flush_page,
    .flush_object = tmr_flush_object,
    .put_pages = tmr_put_pages,
    .get_pages = tmr_get_pages,
    .flush_pages = tmr_flush_pages,
    .close = tmr_close,
    .release = tmr_close,
    .id = tmr_client_id,
    .is_remote = 1,
    .restore = tmr_restore,
};
