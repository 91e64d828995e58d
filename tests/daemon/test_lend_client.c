/* SPDX-License-Identifier: MIT */
/*
 * test_lend_client.c - the client library's side of lent memory
 * (src/client/lend.c, connect.c, remote.c) at the moments that are hard to
 * reach with a real daemon.
 *
 * Most cases run the real client library (tmem_connect) against a FAKE
 * daemon in a thread of this process: it speaks the socket protocol of
 * src/proto/wire.h exactly as tmemd does (HELLO reply with a window and two
 * sealed arenas, GROW populates the unit with fallocate and writes its
 * first byte, RETURN and revocations punch, REVOKED carries the epoch raised
 * before the punch), serves the window's slots, and lets a case choose the
 * timing of its answers, which a real daemon under load may also take.
 * One case uses a real tmemd (td_harness).
 *
 * The invariant the daemon relies on (docs/protocol.md, "Arenas and
 * units"): a unit the daemon thinks free is a hole in the file; a unit the
 * client holds is one the daemon lent.  fake_check_free_units() checks it.
 *
 * The comment above each case says the rule it checks.  Random contents
 * print their seed (--seed N replays); --only NAME runs one case.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "proto/futex.h"
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

static uint64_t seed;
static const tmem_uuid_t NOUUID = { 0, 0 };

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------------------
 * The fake daemon
 * ---------------------------------------------------------------------- */
#define FK_MAXU   2048u
#define FK_UNIT   (64u * 1024u)             /* 16 frames: the smallest unit */
#define FK_WINS   8
enum { FK_FREE = 0, FK_LENT = 1, FK_REVOKED = 2 };

struct fake;
/* A case's hook for a message: true if it handled it (else the default). */
typedef bool (*fk_msg_fn)(struct fake *f, int conn, const uint8_t *buf, size_t len);
/* A case's hook, called every pass of the serving loop (at least every
 * 20 ms) with the connection served (-1 none). */
typedef void (*fk_idle_fn)(struct fake *f, int conn);

struct fake {
    char dir[64], path[128];
    int lsock;
    uint64_t bytes[2];
    uint32_t nunits[2];
    int arena[2];
    struct tmw_share *share;            /* the client's shared page, mapped */
    pthread_mutex_t lock;               /* st[], returned_lent[] */
    uint8_t st[2][FK_MAXU];
    uint8_t granted[2][FK_MAXU];        /* GROW_REPLY 0 sent since it was last free */
    _Atomic unsigned grows[2], returns_of_granted, bad, cleaned, hellos;
    /* the window of the last HELLO reply, and its server */
    _Atomic(uint8_t *) win;
    uint8_t *wins[FK_WINS];
    unsigned nwins;
    _Atomic int win_serve;              /* 0: posted slots are left alone */
    _Atomic int posted_seen;            /* a slot of the current window was posted */
    _Atomic unsigned served;
    _Atomic uint32_t reply_flags;       /* TMW_REPLY_* of a new client's HELLO reply */
    /* control */
    _Atomic int quit, drop_conn, phase;
    fk_msg_fn on_msg;
    fk_idle_fn on_idle;
    void *arg;
    pthread_t th, wth;
    bool running;
};

static int fk_send(int conn, const void *m, size_t len)
{
    ssize_t n = send(conn, m, len, MSG_NOSIGNAL);
    return n == (ssize_t)len ? 0 : -1;
}

static void fk_msg_init(struct tmw_msg *m, uint16_t type, uint32_t len, int32_t result)
{
    *m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, type, len, result };
}

static void fk_grow_reply(int conn, uint32_t kind, uint32_t unit, int32_t result)
{
    struct tmw_grow g;
    memset(&g, 0, sizeof(g));
    fk_msg_init(&g.m, TMW_MSG_GROW_REPLY, sizeof(g), result);
    g.kind = kind;
    g.unit = unit;
    fk_send(conn, &g, sizeof(g));
}

static void fk_punch(struct fake *f, uint32_t kind, uint32_t u)
{
    fallocate(f->arena[kind], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)u * FK_UNIT, FK_UNIT);
}

/* As tmemd's populate: fallocate, and the first byte written. */
static void fk_grant(struct fake *f, int conn, uint32_t kind, uint32_t u)
{
    static const uint8_t zero = 0;
    pthread_mutex_lock(&f->lock);
    if (fallocate(f->arena[kind], 0, (off_t)u * FK_UNIT, FK_UNIT) != 0 ||
        pwrite(f->arena[kind], &zero, 1, (off_t)u * FK_UNIT) != 1) {
        pthread_mutex_unlock(&f->lock);
        fk_grow_reply(conn, kind, u, -ENOMEM);
        return;
    }
    f->st[kind][u] = FK_LENT;
    f->granted[kind][u] = 1;
    pthread_mutex_unlock(&f->lock);
    atomic_fetch_add(&f->grows[kind], 1);
    fk_grow_reply(conn, kind, u, 0);
}

/* The daemon's answer to a message (docs/protocol.md, "Messages after the
 * HELLO"). */
static void fk_default(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    const struct tmw_msg *m = (const void *)buf;
    if (len < sizeof(*m)) {
        atomic_fetch_add(&f->bad, 1);
        return;
    }
    switch (m->type) {
    case TMW_MSG_GROW: {
        const struct tmw_grow *g = (const void *)buf;
        bool ok = len == sizeof(*g) && g->kind < 2 && g->unit < f->nunits[g->kind];
        pthread_mutex_lock(&f->lock);
        ok = ok && f->st[g->kind][g->unit] == FK_FREE;
        pthread_mutex_unlock(&f->lock);
        if (ok) {
            fk_grant(f, conn, g->kind, g->unit);
        } else {
            atomic_fetch_add(&f->bad, 1);
            fk_grow_reply(conn, len == sizeof(*g) ? g->kind : 0, len == sizeof(*g) ? g->unit : 0,
                          -EINVAL);
        }
        break;
    }
    case TMW_MSG_RETURN:
    case TMW_MSG_CLEANED: {
        const struct tmw_units *u = (const void *)buf;
        if (len < sizeof(*u) || len != sizeof(*u) + (size_t)u->n * 4 || u->kind >= 2) {
            atomic_fetch_add(&f->bad, 1);
            break;
        }
        pthread_mutex_lock(&f->lock);
        for (uint32_t i = 0; i < u->n; i++) {
            uint32_t x = u->unit[i];
            if (x >= f->nunits[u->kind]) {
                atomic_fetch_add(&f->bad, 1);
                continue;
            }
            uint8_t *s = &f->st[u->kind][x];
            if (m->type == TMW_MSG_RETURN && *s == FK_LENT) {
                fk_punch(f, u->kind, x);
                *s = FK_FREE;
                if (f->granted[u->kind][x])
                    atomic_fetch_add(&f->returns_of_granted, 1);
                f->granted[u->kind][x] = 0;
            } else if (m->type == TMW_MSG_CLEANED && *s == FK_REVOKED) {
                *s = FK_FREE;
                atomic_fetch_add(&f->cleaned, 1);
            } else {
                atomic_fetch_add(&f->bad, 1);
            }
        }
        pthread_mutex_unlock(&f->lock);
        break;
    }
    default:
        break;          /* END, DATA: nothing asked for them here */
    }
}

/* Takes ephemeral units by force as tmemd's revoke_locked does: the epoch
 * raised once, then every unit punched.  Returns the epoch; the REVOKED
 * messages are fk_send_revoked's (a case may hold some back). */
static uint64_t fk_take(struct fake *f, const uint32_t *units, size_t n)
{
    uint64_t e = atomic_load(&f->share->revoke_epoch) + 1;
    atomic_store(&f->share->revoke_epoch, e);
    pthread_mutex_lock(&f->lock);
    for (size_t i = 0; i < n; i++) {
        fk_punch(f, 0, units[i]);
        f->st[0][units[i]] = FK_REVOKED;
        f->granted[0][units[i]] = 0;
    }
    pthread_mutex_unlock(&f->lock);
    return e;
}

/* REVOKED messages of up to TMW_UNITS_MAX units, as tmemd sends them
 * (src/daemon/lend.c send_revoked): only the message that ends the
 * revocation (ends, and the last of these) carries e, the others e - 1. */
static void fk_send_revoked(int conn, uint64_t e, const uint32_t *units, size_t n, bool ends)
{
    uint8_t buf[sizeof(struct tmw_units) + TMW_UNITS_MAX * sizeof(uint32_t)];
    struct tmw_units *m = (struct tmw_units *)(void *)buf;
    for (size_t at = 0; at < n; at += TMW_UNITS_MAX) {
        size_t c = n - at < TMW_UNITS_MAX ? n - at : TMW_UNITS_MAX;
        uint32_t len = (uint32_t)(sizeof(*m) + c * sizeof(uint32_t));
        fk_msg_init(&m->m, TMW_MSG_REVOKED, len, 0);
        m->kind = 0;
        m->n = (uint32_t)c;
        m->epoch = ends && at + c == n ? e : e - 1;
        memcpy(m->unit, units + at, c * sizeof(uint32_t));
        fk_send(conn, m, len);
    }
}

/* Stops listening: the client's reconnections fail from now on. */
static void fk_unlisten(struct fake *f)
{
    if (f->lsock >= 0) {
        close(f->lsock);
        unlink(f->path);
    }
    f->lsock = -1;
}

/* A HELLO: the connection, or -1.  The first shared page is mapped; a
 * client coming back hands back the arenas it has (ours). */
static int fk_accept(struct fake *f, bool *adopt)
{
    if (f->lsock < 0) {
        sleep_ms(20);
        return -1;
    }
    struct pollfd p = { f->lsock, POLLIN, 0 };
    if (poll(&p, 1, 20) <= 0)
        return -1;
    int conn = accept4(f->lsock, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return -1;
    struct tmw_hello h;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { &h, sizeof(h) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = sizeof(cm.buf) };
    struct pollfd q = { conn, POLLIN, 0 };
    ssize_t n = poll(&q, 1, 2000) == 1 ? recvmsg(conn, &mh, MSG_CMSG_CLOEXEC) : -1;
    int fds[4], nfds = 0;
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); n > 0 && ch; ch = CMSG_NXTHDR(&mh, ch)) {
        size_t k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < 4; i++)
            memcpy(&fds[nfds++], CMSG_DATA(ch) + i * sizeof(int), sizeof(int));
    }
    if (n != (ssize_t)sizeof(h) || h.m.type != TMW_MSG_HELLO || nfds < 1) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        close(conn);
        atomic_fetch_add(&f->bad, 1);
        return -1;
    }
    *adopt = (h.flags & TMW_HELLO_ADOPT) != 0;
    if (!f->share) {
        void *s = mmap(NULL, TMW_SHARE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
        f->share = s == MAP_FAILED ? NULL : s;
    }
    for (int i = 0; i < nfds; i++)
        close(fds[i]);              /* the arenas handed back are ours already */
    atomic_fetch_add(&f->hellos, 1);
    return conn;
}

/* The HELLO reply: a fresh window (and, to a new client, the arenas). */
static int fk_reply(struct fake *f, int conn, bool adopt)
{
    int wfd = memfd_create("fake-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (wfd < 0 || ftruncate(wfd, TMW_WINDOW_SIZE) != 0)
        return -1;
    fcntl(wfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    uint8_t *w = mmap(NULL, TMW_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, wfd, 0);
    if (w == MAP_FAILED || f->nwins == FK_WINS) {
        close(wfd);
        return -1;
    }
    struct tmw_header *hd = (void *)w;
    hd->magic = TMW_MAGIC;
    hd->version = TMW_VERSION;
    hd->nslots = TMW_NSLOTS;
    hd->window_size = TMW_WINDOW_SIZE;
    hd->slots_off = TMW_SLOTS_OFF;
    hd->pages_off = TMW_PAGES_OFF;
    hd->client_id = atomic_load(&f->hellos);
    atomic_store(&hd->worker_cpu, UINT32_MAX);
    f->wins[f->nwins++] = w;
    atomic_store(&f->posted_seen, 0);
    atomic_store(&f->win, w);

    tmem_config_t cfg;
    tmem_config_init(&cfg);
    struct tmw_hello_reply rep;
    memset(&rep, 0, sizeof(rep));
    fk_msg_init(&rep.m, TMW_MSG_HELLO_REPLY, sizeof(rep), 0);
    rep.client_id = atomic_load(&f->hellos);
    rep.window_size = TMW_WINDOW_SIZE;
    rep.mode = TMW_MODE_LEND;
    rep.unit_bytes = FK_UNIT;
    rep.arena_bytes[0] = f->bytes[0];
    rep.arena_bytes[1] = f->bytes[1];
    rep.compress = TMEM_COMPRESS_NONE;
    rep.zstd_level = cfg.zstd_level;
    rep.compress_max = cfg.compress_max;
    rep.dedup = 0;
    rep.flags = adopt ? 0 : atomic_load(&f->reply_flags);
    int fds[3] = { wfd, f->arena[0], f->arena[1] };
    int nfds = adopt ? 1 : 3;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { &rep, sizeof(rep) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int)) };
    struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(ch), fds, (size_t)nfds * sizeof(int));
    ssize_t n = sendmsg(conn, &mh, MSG_NOSIGNAL);
    close(wfd);
    return n == (ssize_t)sizeof(rep) ? 0 : -1;
}

/* The window's worker: answers every posted slot (a pool id 0 for a new or
 * joined pool, a miss for a get, 0 otherwise) while win_serve is set. */
static void *fk_win_main(void *arg)
{
    struct fake *f = arg;
    while (!atomic_load(&f->quit)) {
        uint8_t *w = atomic_load(&f->win);
        if (w) {
            struct tmw_slot *slots = (struct tmw_slot *)(void *)(w + TMW_SLOTS_OFF);
            for (unsigned i = 0; i < TMW_NSLOTS; i++) {
                struct tmw_slot *s = &slots[i];
                if (atomic_load(&s->state) != TMW_POSTED)
                    continue;
                atomic_store(&f->posted_seen, 1);
                if (!atomic_load(&f->win_serve))
                    continue;
                s->result = s->op == TMW_OP_GET ? -ENOENT : 0;
                atomic_store(&s->state, TMW_DONE);
                if (atomic_load(&s->waiter))
                    tm_futex_wake(&s->state, INT32_MAX);
                atomic_fetch_add(&f->served, 1);
            }
        }
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The daemon's thread: connections one after the other (a client that
 * comes back is served again), every message answered. */
static void *fk_main(void *arg)
{
    struct fake *f = arg;
    uint8_t *buf = malloc(TMW_MSG_MAX);
    while (buf && !atomic_load(&f->quit)) {
        bool adopt = false;
        if (f->on_idle)
            f->on_idle(f, -1);
        int conn = fk_accept(f, &adopt);
        if (conn < 0)
            continue;
        if (fk_reply(f, conn, adopt) != 0) {
            close(conn);
            continue;
        }
        atomic_store(&f->drop_conn, 0);
        while (!atomic_load(&f->quit) && !atomic_load(&f->drop_conn)) {
            if (f->on_idle)
                f->on_idle(f, conn);
            if (atomic_load(&f->drop_conn))
                break;
            struct pollfd p = { conn, POLLIN, 0 };
            if (poll(&p, 1, 20) <= 0)
                continue;
            ssize_t n = recv(conn, buf, TMW_MSG_MAX, MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (n <= 0)
                break;                      /* the client's end */
            if (!f->on_msg || !f->on_msg(f, conn, buf, (size_t)n))
                fk_default(f, conn, buf, (size_t)n);
        }
        close(conn);
    }
    free(buf);
    return NULL;
}

static void fake_start(struct fake *f, uint64_t eph_bytes, uint64_t pers_bytes, fk_msg_fn on_msg,
                       fk_idle_fn on_idle, void *arg)
{
    memset(f, 0, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    snprintf(f->dir, sizeof(f->dir), "/tmp/tmem-fake-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
    f->bytes[0] = eph_bytes;
    f->bytes[1] = pers_bytes;
    for (int k = 0; k < 2; k++) {
        f->nunits[k] = (uint32_t)(f->bytes[k] / FK_UNIT);
        assert_true(f->nunits[k] <= FK_MAXU);
        f->arena[k] = memfd_create("fake-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(f->arena[k] >= 0);
        assert_int_equal(ftruncate(f->arena[k], (off_t)f->bytes[k]), 0);
        assert_int_equal(fcntl(f->arena[k], F_ADD_SEALS,
                               F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
    }
    f->lsock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
    assert_int_equal(bind(f->lsock, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->lsock, 8), 0);
    f->on_msg = on_msg;
    f->on_idle = on_idle;
    f->arg = arg;
    atomic_store(&f->win_serve, 1);
    assert_int_equal(pthread_create(&f->th, NULL, fk_main, f), 0);
    assert_int_equal(pthread_create(&f->wth, NULL, fk_win_main, f), 0);
    f->running = true;
}

static void fake_stop(struct fake *f)
{
    if (!f->running)
        return;
    atomic_store(&f->quit, 1);
    pthread_join(f->th, NULL);
    pthread_join(f->wth, NULL);
    f->running = false;
    fk_unlisten(f);
    for (unsigned i = 0; i < f->nwins; i++)
        munmap(f->wins[i], TMW_WINDOW_SIZE);
    if (f->share)
        munmap(f->share, TMW_SHARE_SIZE);
    for (int k = 0; k < 2; k++)
        close(f->arena[k]);
    rmdir(f->dir);
    pthread_mutex_destroy(&f->lock);
}

/* Units the daemon thinks free that have pages in the file: each one is a
 * unit the client uses without the daemon's knowledge (or a unit the
 * daemon would lend again with someone's data in it).  Their number. */
static unsigned fake_check_free_units(struct fake *f)
{
    unsigned bad = 0;
    pthread_mutex_lock(&f->lock);
    for (int k = 0; k < 2; k++) {
        for (uint32_t u = 0; u < f->nunits[k]; u++) {
            if (f->st[k][u] != FK_FREE)
                continue;
            off_t at = (off_t)u * FK_UNIT, d = lseek(f->arena[k], at, SEEK_DATA);
            if (d >= 0 && d < at + (off_t)FK_UNIT) {
                if (bad++ < 4)
                    fprintf(stderr, "unit %u of arena %d is free for the daemon but has pages "
                            "(the client uses it)\n", u, k);
            }
        }
    }
    pthread_mutex_unlock(&f->lock);
    return bad;
}

static bool wait_phase(struct fake *f, int phase, unsigned ms)
{
    for (uint64_t t0 = now_ms(); now_ms() - t0 < ms;) {
        if (atomic_load(&f->phase) >= phase)
            return true;
        sleep_ms(2);
    }
    return atomic_load(&f->phase) >= phase;
}

static void mkpage(uint8_t *p, uint64_t a, uint64_t b)
{
    tt_fill(p, TT_RANDOM, (seed ^ (a * 0x9E3779B97F4A7C15ull)) + b * 0xC2B2AE3D27D4EB4Full + 1);
}

static bool page_is_zero(const uint8_t *p)
{
    for (size_t i = 0; i < PG; i++)
        if (p[i])
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * 1. A GROW in flight when the daemon goes: a unit never lent is used.
 *
 * The rule (src/client/lend.c src_grow): a GROW whose reply never came is
 * given up, never taken for granted: when the connection ends the waiting
 * put finds its request still pending (reply_lock) and fails; the engine
 * never writes into a unit the daemon did not lend.
 * ---------------------------------------------------------------------- */
static bool a_on_msg(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    const struct tmw_grow *g = (const void *)buf;
    if (len != sizeof(*g) || g->m.type != TMW_MSG_GROW || g->kind != 1)
        return false;
    if (atomic_load(&f->grows[1]) == 0)
        return false;                       /* the first: granted */
    /* the second: the daemon dies before it answers (and stays away) */
    fk_unlisten(f);
    atomic_store(&f->drop_conn, 1);
    atomic_store(&f->phase, 1);
    return true;
}

static void grow_in_flight_when_daemon_dies(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, 2u << 20, 2u << 20, a_on_msg, NULL, NULL);
    tmem_client_t *c = tmem_connect(f.path, "stale-grow");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pp >= 0);
    const uint32_t per_unit = FK_UNIT / PG, N = 3 * per_unit;
    uint8_t page[PG], got[PG];
    uint32_t ok = 0;
    for (uint32_t i = 0; i < N; i++) {
        mkpage(page, 1, i);
        int rc = tmem_put_page(c, (uint32_t)pp, tt_oid(1, 0, 0), i, page);
        ok += rc == 0;
    }
    assert_true(wait_phase(&f, 1, 5000));
    printf("persistent puts accepted: %u (the daemon lent %u unit(s) of %u frames)\n", ok,
           atomic_load(&f.grows[1]), per_unit);
    for (uint32_t i = 0; i < ok; i++) {
        mkpage(page, 1, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(1, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    unsigned stray = fake_check_free_units(&f);
    tmem_client_close(c);
    fake_stop(&f);
    /* one unit lent: exactly its frames hold pages, nothing outside it */
    assert_int_equal(atomic_load(&f.grows[1]), 1);
    assert_int_equal(stray, 0);
    assert_int_equal(ok, per_unit);
}

/* ------------------------------------------------------------------------
 * 2. A revocation while a GROW waits: the service thread blocks.
 *
 * The rule (src/client/lend.c): the service thread, the only reader of the
 * socket, never waits for the engine client's lock: a put holding it may be
 * waiting for the GROW_REPLY only that thread delivers, while a REVOKED or
 * SHRINK job waits to write-lock it.  The periodic report and the free
 * units given back are jobs; a reconnection creates pools only while no
 * GROW can be in flight.  Here the put gets its reply within the second.
 * ---------------------------------------------------------------------- */
static bool b_on_msg(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    const struct tmw_grow *g = (const void *)buf;
    if (len != sizeof(*g) || g->m.type != TMW_MSG_GROW || g->kind != 1)
        return false;
    /* memory is short: the ephemeral unit is taken by force (epoch, punch,
     * REVOKED) before this GROW is answered, a little later */
    uint32_t u0 = 0;
    uint64_t e = fk_take(f, &u0, 1);
    fk_send_revoked(conn, e, &u0, 1, true);
    sleep_ms(400);
    fk_grant(f, conn, g->kind, g->unit);
    atomic_store(&f->phase, 1);
    return true;
}

static void revocation_while_grow_waits(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, 2u << 20, 2u << 20, b_on_msg, NULL, NULL);
    tmem_client_t *c = tmem_connect(f.path, "grow-vs-revoke");
    assert_non_null(c);
    int pe = tmem_new_pool(c, NOUUID, 0);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pe >= 0 && pp >= 0);
    uint8_t page[PG], got[PG];
    mkpage(page, 2, 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(2, 0, 0), 0, page), 0);
    assert_int_equal(atomic_load(&f.grows[0]), 1);
    mkpage(page, 3, 0);
    uint64_t t0 = now_ms();
    int rc = tmem_put_page(c, (uint32_t)pp, tt_oid(3, 0, 0), 0, page);
    uint64_t took = now_ms() - t0;
    printf("persistent put: %d after %llu ms (the daemon answered its GROW after 400 ms)\n", rc,
           (unsigned long long)took);
    assert_true(wait_phase(&f, 1, 10000));
    sleep_ms(300);                          /* a late RETURN would be here by now */
    unsigned returned = atomic_load(&f.returns_of_granted);
    int rc2 = rc == 0 ? tmem_get_page(c, (uint32_t)pp, tt_oid(3, 0, 0), 0, got) : -1;
    tmem_client_close(c);
    fake_stop(&f);
    assert_int_equal(rc, 0);                /* the daemon granted the unit */
    assert_int_equal(returned, 0);          /* and the client kept it */
    assert_int_equal(rc2, 0);
    assert_memory_equal(got, page, PG);
}

/* ------------------------------------------------------------------------
 * 3. More than TMW_UNITS_MAX units taken at once: gets read zeros.
 *
 * The rule (docs/protocol.md, "Taken by force"): a revocation of more than
 * TMW_UNITS_MAX units goes in several REVOKED messages, and only the last
 * carries the raised epoch (the others one less), so that a library that
 * has processed an earlier message still sees its epoch behind the live
 * one and keeps missing on the units still to come, which are punched
 * already.  The fake daemon sends what tmemd sends (send_revoked) and holds
 * the second message back until the client has answered the first.
 * ---------------------------------------------------------------------- */
struct c_state {
    uint32_t *units;
    size_t n;
    uint64_t epoch;
};

static void c_on_idle(struct fake *f, int conn)
{
    struct c_state *cs = f->arg;
    if (conn < 0)
        return;
    int ph = atomic_load(&f->phase);
    if (ph == 1) {                          /* the test asks: take them all */
        pthread_mutex_lock(&f->lock);
        cs->n = 0;
        for (uint32_t u = 0; u < f->nunits[0]; u++)
            if (f->st[0][u] == FK_LENT)
                cs->units[cs->n++] = u;
        pthread_mutex_unlock(&f->lock);
        cs->epoch = fk_take(f, cs->units, cs->n);
        fk_send_revoked(conn, cs->epoch, cs->units, TMW_UNITS_MAX, false);
        atomic_store(&f->phase, 2);
    } else if (ph == 2 && atomic_load(&f->cleaned) >= TMW_UNITS_MAX) {
        atomic_store(&f->phase, 3);         /* the first message is processed */
    } else if (ph == 4) {
        fk_send_revoked(conn, cs->epoch, cs->units + TMW_UNITS_MAX, cs->n - TMW_UNITS_MAX,
                        true);
        atomic_store(&f->phase, 5);
    }
}

static void revocation_in_two_messages(void **state)
{
    (void)state;
    struct fake f;
    struct c_state cs = { calloc(FK_MAXU, sizeof(uint32_t)), 0, 0 };
    assert_non_null(cs.units);
    const uint32_t per_unit = FK_UNIT / PG, NU = TMW_UNITS_MAX + 64;
    fake_start(&f, (uint64_t)(NU + 32) * FK_UNIT / (2u << 20) * (2u << 20) + (2u << 20), 2u << 20,
               NULL, c_on_idle, &cs);
    tmem_client_t *c = tmem_connect(f.path, "two-messages");
    assert_non_null(c);
    int pe = tmem_new_pool(c, NOUUID, TMEM_POOL_KEEP_ON_GET);
    assert_true(pe >= 0);
    const uint32_t N = NU * per_unit;
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < N; i++) {
        mkpage(page, 4, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(4, 0, 0), i, page), 0);
    }
    atomic_store(&f.phase, 1);
    assert_true(wait_phase(&f, 3, 10000));
    assert_true(cs.n > TMW_UNITS_MAX);
    uint32_t zeros = 0, wrong = 0, hits = 0;
    for (uint32_t i = 0; i < N; i++) {
        memset(got, 0xa5, PG);
        int rc = tmem_get_page(c, (uint32_t)pe, tt_oid(4, 0, 0), i, got);
        if (rc != 0)
            continue;
        hits++;
        mkpage(page, 4, i);
        if (page_is_zero(got))
            zeros++;
        else if (memcmp(got, page, PG) != 0)
            wrong++;
    }
    printf("%zu units taken (epoch %llu) in two REVOKED messages; between them: %u hits, "
           "%u of them zeros, %u other wrong pages\n", cs.n, (unsigned long long)cs.epoch, hits,
           zeros, wrong);
    atomic_store(&f.phase, 4);
    assert_true(wait_phase(&f, 5, 10000));
    for (uint64_t t0 = now_ms(); atomic_load(&f.cleaned) < cs.n && now_ms() - t0 < 10000;)
        sleep_ms(5);
    tmem_client_close(c);
    fake_stop(&f);
    free(cs.units);
    assert_int_equal(zeros, 0);
    assert_int_equal(wrong, 0);
}

/* ------------------------------------------------------------------------
 * 4. The new daemon dies while the client joins its shared pools again.
 *
 * The rule (src/client/lend.c come_back): the service thread joins the
 * shared pools through the new window while nothing reads the socket, so
 * those calls watch it for a hang-up themselves (TMR_WATCH_HANGUP); a
 * daemon dying then makes the reconnection fail and be tried again, and
 * the client can still be closed.
 * ---------------------------------------------------------------------- */
static void d_on_idle(struct fake *f, int conn)
{
    if (conn >= 0 && atomic_load(&f->hellos) == 2 && atomic_load(&f->posted_seen) &&
        atomic_load(&f->phase) == 0) {
        /* the JOIN was posted in the new window: the daemon dies now */
        fk_unlisten(f);
        atomic_store(&f->drop_conn, 1);
        atomic_store(&f->phase, 1);
    }
}

static void *close_thread(void *arg)
{
    tmem_client_close((tmem_client_t *)arg);
    return NULL;
}

static void daemon_dies_during_rejoin(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, 2u << 20, 2u << 20, NULL, d_on_idle, NULL);
    tmem_client_t *c = tmem_connect(f.path, "rejoin");
    assert_non_null(c);
    const tmem_uuid_t shared = { 0x1234, 0x5678 };
    int ps = tmem_new_pool(c, shared, TMEM_POOL_SHARED);
    assert_true(ps >= 0);
    assert_int_equal(tmem_pool_is_shared(c, (uint32_t)ps), 1);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pp >= 0);
    uint8_t page[PG];
    mkpage(page, 5, 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(5, 0, 0), 0, page), 0);
    /* the daemon goes; the next one answers the HELLO and dies before it
     * serves the JOIN */
    atomic_store(&f.win_serve, 0);
    atomic_store(&f.drop_conn, 1);
    assert_true(wait_phase(&f, 1, 10000));
    sleep_ms(300);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, close_thread, c), 0);
    bool closed = false;
    for (uint64_t t0 = now_ms(); now_ms() - t0 < 8000 && !closed;) {
        sleep_ms(20);
        closed = pthread_tryjoin_np(th, NULL) == 0;
    }
    if (!closed) {
        fprintf(stderr, "tmem_client_close still blocked after 8 s (the service thread waits "
                "for a JOIN the dead daemon will never serve)\n");
        pthread_detach(th);             /* the client's threads stay blocked */
    }
    fake_stop(&f);
    assert_true(closed);
}

/* ------------------------------------------------------------------------
 * 5. A put during the reconnection: no unit given back that the engine
 * then keeps.
 *
 * The reconnection (src/client/lend.c come_back) gives back every unit
 * with pages that the engine does not hold (return_surplus).  A GROW
 * granted while it runs would be such a unit for a moment: it was given
 * back, then the late reply made the engine keep it, a unit the daemon
 * counted free.  So nothing may be granted before the surplus is given
 * back: the connection counts as up only after it, and a put meanwhile is
 * refused at once (the engine's grow fails while disconnected).  Here the
 * new daemon holds the client in its JOIN of a shared pool while a put
 * needs a new unit; then serves it; the next put that needs one gets it.
 * ---------------------------------------------------------------------- */
static bool g_on_msg(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    const struct tmw_grow *g = (const void *)buf;
    if (atomic_load(&f->hellos) != 2 || len != sizeof(*g) || g->m.type != TMW_MSG_GROW)
        return false;
    fk_default(f, conn, buf, len);          /* granted at once */
    atomic_store(&f->phase, 2);
    return true;
}

static void g_on_idle(struct fake *f, int conn)
{
    if (conn >= 0 && atomic_load(&f->hellos) == 2 && atomic_load(&f->posted_seen) &&
        atomic_load(&f->phase) == 0)
        atomic_store(&f->phase, 1);         /* the client is back, joining */
}

static void grow_during_reconnection(void **state)
{
    (void)state;
    struct fake f;
    fake_start(&f, 2u << 20, 2u << 20, g_on_msg, g_on_idle, NULL);
    tmem_client_t *c = tmem_connect(f.path, "surplus");
    assert_non_null(c);
    const tmem_uuid_t shared = { 0x4321, 0x8765 };
    int ps = tmem_new_pool(c, shared, TMEM_POOL_SHARED);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(ps >= 0 && pp >= 0);
    const uint32_t per_unit = FK_UNIT / PG;
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < per_unit; i++) {          /* one unit, full */
        mkpage(page, 6, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(6, 0, 0), i, page), 0);
    }
    assert_int_equal(atomic_load(&f.grows[1]), 1);
    /* the daemon restarts (its JOINs held for now) */
    atomic_store(&f.win_serve, 0);
    atomic_store(&f.drop_conn, 1);
    assert_true(wait_phase(&f, 1, 10000));
    mkpage(page, 6, per_unit);
    int rc = tmem_put_page(c, (uint32_t)pp, tt_oid(6, 0, 0), per_unit, page);
    atomic_store(&f.win_serve, 1);          /* the JOIN is served: the client is back */
    /* a new unit, once back (puts until one is stored, at most 10 s) */
    uint32_t idx = per_unit + 1;
    int rc2 = -1;
    for (uint64_t t0 = now_ms(); rc2 != 0 && now_ms() - t0 < 10000;) {
        mkpage(page, 6, idx);
        rc2 = tmem_put_page(c, (uint32_t)pp, tt_oid(6, 0, 0), idx, page);
        if (rc2 != 0)
            sleep_ms(20);
    }
    assert_true(wait_phase(&f, 2, 10000));
    sleep_ms(300);                          /* what the client sends after is in */
    unsigned returned = atomic_load(&f.returns_of_granted);
    unsigned stray = fake_check_free_units(&f);
    int rc3 = rc2 == 0 ? tmem_get_page(c, (uint32_t)pp, tt_oid(6, 0, 0), idx, got) : -1;
    printf("put during the reconnection: %d; after: %d; units granted then given back: %u; "
           "free units with pages: %u\n", rc, rc2, returned, stray);
    tmem_client_close(c);
    fake_stop(&f);
    assert_true(rc == -ENOMEM || rc == 0);  /* refused at once, or stored in the unit held */
    assert_int_equal(rc2, 0);
    assert_int_equal(rc3, 0);
    assert_memory_equal(got, page, PG);
    assert_int_equal(returned, 0);
    assert_int_equal(stray, 0);
}

/* ------------------------------------------------------------------------
 * 6. A daemon that says its arenas are bigger than they are.
 *
 * The rule (src/client/lend.c tmc_lend_open, remote.c tmr_window_open): the
 * client maps a daemon's memfd only if it is at least the size said and
 * sealed against shrinking; otherwise the HELLO fails (EPROTO), instead of
 * a SIGBUS in the caller's thread at its first put.  Run in a child.
 * ---------------------------------------------------------------------- */
/* A daemon that says yes to every GROW without populating anything. */
static bool hostile_grant(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    (void)f;
    const struct tmw_grow *g = (const void *)buf;
    if (len != sizeof(*g) || g->m.type != TMW_MSG_GROW)
        return false;
    fk_grow_reply(conn, g->kind, g->unit, 0);
    return true;
}

static int short_arena_child(void)
{
    struct fake f;
    fake_start(&f, 4u << 20, 2u << 20, hostile_grant, NULL, NULL);
    /* the persistent arena is 2 MiB; say it is 4: lie about arena 1 */
    f.bytes[1] = 4u << 20;
    f.nunits[1] = (uint32_t)(f.bytes[1] / FK_UNIT);
    tmem_client_t *c = tmem_connect(f.path, "short-arena");
    unlink(f.path);                         /* nothing left behind if this dies */
    rmdir(f.dir);
    if (c) {                                /* accepted: the puts must not fault */
        int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
        uint8_t page[PG];
        for (uint32_t i = 0; i < (4u << 20) / PG; i++) {
            mkpage(page, 7, i);
            if (tmem_put_page(c, (uint32_t)pp, tt_oid(7, 0, 0), i, page) != 0)
                break;
        }
        tmem_client_close(c);
    }
    fake_stop(&f);                          /* its threads joined (ThreadSanitizer) */
    return 0;
}

static void short_arena_from_daemon(void **state)
{
    (void)state;
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        signal(SIGBUS, SIG_DFL);            /* not cmocka's: die of it, the parent sees it */
        signal(SIGSEGV, SIG_DFL);
        _exit(short_arena_child());
    }
    assert_true(kid > 0);
    int st = 0;
    assert_int_equal(waitpid(kid, &st, 0), kid);
    if (WIFSIGNALED(st))
        fprintf(stderr, "the client died of signal %d\n", WTERMSIG(st));
    assert_false(WIFSIGNALED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

/* ------------------------------------------------------------------------
 * 7. A child of fork() outlives its parent: the daemon keeps the client.
 *
 * The rule (src/client/connect.c on_fork_child): a child of fork() closes
 * its copies of every handle's descriptors at once, so that the daemon
 * sees the connection end with the parent and takes back what it lent,
 * whatever the child does.  Real tmemd.
 * ---------------------------------------------------------------------- */
static td_t D;

static unsigned connections(void)
{
    struct tmw_ctl_stats s;
    return tmc_stats(D.ctl, &s) == 0 ? (unsigned)s.connections : UINT32_MAX;
}

static int parent_of_child(int wfd)
{
    tmem_client_t *c = tmem_connect(D.sock, "forking-parent");
    if (!c)
        return 1;
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    if (pp < 0)
        return 2;
    uint8_t page[PG];
    for (uint32_t i = 0; i < 256; i++) {
        mkpage(page, 8, i);
        if (tmem_put_page(c, (uint32_t)pp, tt_oid(8, 0, 0), i, page) != 0)
            return 3;
    }
    pid_t g = fork();
    if (g == 0) {
        tmem_client_close(c);               /* the child lets go of its handle */
        sleep(20);                          /* and lives on (killed by the test) */
        _exit(0);
    }
    if (write(wfd, &g, sizeof(g)) != (ssize_t)sizeof(g))
        return 4;
    _exit(0);                               /* the parent exits without a close */
}

static void forked_child_keeps_connection(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    fflush(NULL);
    pid_t p = fork();
    if (p == 0) {
        close(pfd[0]);
        _exit(parent_of_child(pfd[1]));
    }
    assert_true(p > 0);
    close(pfd[1]);
    pid_t g = -1;
    ssize_t n = read(pfd[0], &g, sizeof(g));
    close(pfd[0]);
    int st = 0;
    waitpid(p, &st, 0);
    bool ok_parent = WIFEXITED(st) && WEXITSTATUS(st) == 0 && n == (ssize_t)sizeof(g) && g > 0;
    /* the parent is gone: its connection must end within a few seconds */
    unsigned conns = UINT32_MAX;
    for (uint64_t t0 = now_ms(); now_ms() - t0 < 4000; sleep_ms(20))
        if ((conns = connections()) == 0)
            break;
    if (g > 0)
        kill(g, SIGKILL);                   /* the grandchild (ours, by its pid) */
    unsigned after = UINT32_MAX;
    for (uint64_t t0 = now_ms(); now_ms() - t0 < 4000; sleep_ms(20))
        if ((after = connections()) == 0)
            break;
    printf("connections after the parent's exit: %u; after the child's: %u\n", conns, after);
    assert_int_equal(td_stop(&D), 0);
    assert_true(ok_parent);
    assert_int_equal(after, 0);
    assert_int_equal(conns, 0);
}

/* ------------------------------------------------------------------------
 * 8. A parked client's stream: the daemon's END comes after the restore.
 *
 * The rule (docs/protocol.md, "DATA..., END"; src/client/lend.c
 * run_restore): the daemon streams a parked client's save stream in DATA
 * messages, then sends END; the client restores it, then answers with its
 * own END.  The restore is done once it has read the stream's own end, in
 * the last DATA, which may be before the daemon's END has arrived (tmemd
 * busy, or its thread preempted).  That END is still the stream's: the
 * client must wait for it before it answers, and take it then, not as a
 * stray message that ends the connection (a client that then comes back
 * with its arenas finds them punched by the daemon as its old
 * connection's: its restored pages read as zeros).  The fake daemon holds
 * its END back after the last DATA; the client must stay silent until it
 * comes, stay connected (one HELLO), and have every page.
 * ---------------------------------------------------------------------- */
#define R_PAGES 64u
#define R_HOLD_MS 1000u                 /* the END held back this long at most */

struct r_state {
    uint8_t *stream;                    /* a save stream (tmem_client_save) */
    size_t len, cap;
    uint64_t sent_ms;                   /* when the last DATA went */
    _Atomic int early_ends;             /* the client's END before ours */
};

static int r_write(void *arg, const void *p, size_t len)
{
    struct r_state *rs = arg;
    if (rs->len + len > rs->cap) {
        size_t nc = (rs->len + len) * 2;
        uint8_t *n = realloc(rs->stream, nc);
        if (!n)
            return -ENOMEM;
        rs->stream = n;
        rs->cap = nc;
    }
    memcpy(rs->stream + rs->len, p, len);
    rs->len += len;
    return 0;
}

static void r_on_idle(struct fake *f, int conn)
{
    struct r_state *rs = f->arg;
    if (conn < 0 || atomic_load(&f->hellos) != 1)
        return;
    int ph = atomic_load(&f->phase);
    if (ph == 0) {                      /* the stream, as tmemd sends it (restore_write) */
        uint8_t *buf = malloc(TMW_MSG_MAX);
        const size_t room = TMW_MSG_MAX - sizeof(struct tmw_msg);
        for (size_t at = 0; buf && at < rs->len; at += room) {
            size_t k = rs->len - at < room ? rs->len - at : room;
            fk_msg_init((struct tmw_msg *)(void *)buf, TMW_MSG_DATA,
                        (uint32_t)(sizeof(struct tmw_msg) + k), 0);
            memcpy(buf + sizeof(struct tmw_msg), rs->stream + at, k);
            fk_send(conn, buf, sizeof(struct tmw_msg) + k);
        }
        free(buf);
        rs->sent_ms = now_ms();
        atomic_store(&f->phase, 1);
    } else if (ph == 1 && (atomic_load(&rs->early_ends) || now_ms() - rs->sent_ms >= R_HOLD_MS)) {
        struct tmw_msg end;             /* the daemon's END, late */
        fk_msg_init(&end, TMW_MSG_END, sizeof(end), 0);
        fk_send(conn, &end, sizeof(end));
        atomic_store(&f->phase, 2);
    }
}

static bool r_on_msg(struct fake *f, int conn, const uint8_t *buf, size_t len)
{
    (void)conn;
    struct r_state *rs = f->arg;
    const struct tmw_msg *m = (const void *)buf;
    if (len != sizeof(*m) || m->type != TMW_MSG_END)
        return false;
    if (atomic_load(&f->phase) < 2)
        atomic_fetch_add(&rs->early_ends, 1);
    else
        atomic_store(&f->phase, 3);     /* the client's answer, in its turn */
    return true;
}

static void late_end_of_restore_stream(void **state)
{
    (void)state;
    /* a parked client's save stream: one persistent pool (id 0) */
    struct r_state rs;
    memset(&rs, 0, sizeof(rs));
    tmem_t *t = tmem_open(NULL);
    assert_non_null(t);
    tmem_client_t *pc = tmem_client_open(t, "parked");
    assert_non_null(pc);
    assert_int_equal(tmem_new_pool(pc, NOUUID, TMEM_POOL_PERSIST), 0);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < R_PAGES; i++) {
        mkpage(page, 9, i);
        assert_int_equal(tmem_put_page(pc, 0, tt_oid(9, 0, 0), i, page), 0);
    }
    assert_int_equal(tmem_client_save(t, tmem_client_id(pc), r_write, &rs), R_PAGES);
    tmem_close(t);

    struct fake f;
    fake_start(&f, 2u << 20, 2u << 20, r_on_msg, r_on_idle, &rs);
    atomic_store(&f.reply_flags, TMW_REPLY_RESTORE);
    tmem_client_t *c = tmem_connect(f.path, "parked");
    assert_non_null(c);
    bool answered = wait_phase(&f, 3, 5000);
    sleep_ms(300);                      /* a reconnection would be here by now */
    unsigned hellos = atomic_load(&f.hellos);
    int early = atomic_load(&rs.early_ends);
    uint32_t hits = 0;
    for (uint32_t i = 0; i < R_PAGES; i++) {
        mkpage(page, 9, i);
        if (tmem_get_page(c, 0, tt_oid(9, 0, 0), i, got) == 0 && memcmp(got, page, PG) == 0)
            hits++;
    }
    printf("the client's END before the daemon's: %d; HELLOs: %u; pages restored: %u of %u\n",
           early, hellos, hits, R_PAGES);
    tmem_client_close(c);
    fake_stop(&f);
    free(rs.stream);
    assert_int_equal(early, 0);
    assert_true(answered);
    assert_int_equal(hellos, 1);
    assert_int_equal(hits, R_PAGES);
}

int main(int argc, char **argv)
{
    seed = tt_seed_from_args(argc, argv, "test_lend_client");
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--only"))
            cmocka_set_test_filter(argv[i + 1]);
    /* the cases that fork come first, while this process has one thread
     * (ThreadSanitizer cannot start threads in a child of a threaded one) */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(short_arena_from_daemon),
        cmocka_unit_test(forked_child_keeps_connection),
        cmocka_unit_test(grow_in_flight_when_daemon_dies),
        cmocka_unit_test(revocation_while_grow_waits),
        cmocka_unit_test(revocation_in_two_messages),
        cmocka_unit_test(grow_during_reconnection),
        cmocka_unit_test(daemon_dies_during_rejoin),
        cmocka_unit_test(late_end_of_restore_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
