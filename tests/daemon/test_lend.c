/* SPDX-License-Identifier: MIT */
/*
 * test_lend.c - lent memory (docs/protocol.md, "Lent memory: private pools
 * run in the client") against real tmemd processes, real clients
 * (tmem_connect) and raw clients that speak the socket protocol by hand
 * (their own shared page, GROW, RETURN, CLEANED, and whatever garbage a
 * hostile tenant may send):
 *
 *  - grants_follow_demand: a client that fills a small daemon holds units
 *    (never more than the limit, counted by the daemon); once it is idle a
 *    second client that puts steadily gets units, because the daemon asks
 *    the first one (SHRINK) and its library gives them back; every hit of
 *    either client is exactly the page put;
 *  - client_ignores_shrink: a raw client that holds almost everything and
 *    never answers SHRINK loses ephemeral units by force: SHRINK, then
 *    REVOKED after shrink_deadline_ms, its shared page's revoke_epoch at
 *    least the REVOKED's epoch, the revoked units holes in its arena; the
 *    real client that needed the memory gets it and reads its pages back;
 *  - garbage_messages: units not its own, kinds out of range, units never
 *    lent or never revoked are refused or ignored, counted (lend_bad), and
 *    keep the connection; malformed framing (unit counts, lengths, types,
 *    magic, a truncated header, oversized) ends it (EOF, bad_msgs); an
 *    honest client keeps every persistent page meanwhile;
 *  - return_with_negative_kind: a RETURN whose kind reads as a negative int
 *    is one more unit not its own (counted), not a crash of the daemon;
 *  - empty_message_after_hello: an empty message is malformed too: counted,
 *    and the connection ends;
 *  - connect_under_stats: clients connect while the control socket asks
 *    every one for reports: each one's first message is its HELLO reply
 *    (tmem_connect never fails for it);
 *  - departing_clients_under_stats: clients leave while they are asked for
 *    reports: nothing is sent on a socket the daemon closed (under TSan);
 *  - garbage_shared_page: random bytes over the client's part of the shared
 *    page while reports are asked for, the victim policy reads it and the
 *    control socket shows it, and over the arenas the daemon never reads:
 *    the daemon stays up, every reported figure is clamped, its own counts
 *    are unchanged;
 *  - old_mappings_see_no_other_data: a client keeps its mapping of units it
 *    gave back; after other clients are served and write, it reads only
 *    zeros there (or what it writes itself), and its writes there change
 *    none of the daemon's lent figures;
 *  - punched_pages_charge_the_client: with the daemon and a raw client in
 *    memory cgroups of their own, granted units are charged to the daemon,
 *    given back they are uncharged, and a client that writes to them again
 *    through its old mapping is charged itself (skipped without a writable
 *    memory cgroup);
 *  - daemon_killed_under_load: threads put, get and flush against models
 *    while the daemon is killed (and, later, restarted cleanly): the library
 *    comes back by itself, the daemon adopts its units, and no persistent
 *    page is ever lost or wrong, no ephemeral hit ever wrong;
 *  - adoption_refused_over_limit: a client whose persistent units do not fit
 *    a smaller daemon is refused (-ENOMEM, counted) and goes on with every
 *    page; a daemon with room adopts it and every page is still there;
 *  - adoption_counts_untouched_units: units granted and not written yet are
 *    adopted (counted) like the others when their client comes back;
 *  - fork_child_gets_enotconn: a child of fork gets -ENOTCONN from every
 *    call on its parent's handle, connects on its own, and the parent's
 *    pages are untouched.
 *
 * Every daemon must stop with exit status 0 (its engine's self-check
 * passed); a failed test's daemons, children and cgroups are cleaned up by
 * the teardown.  Random parts print their seed; TMEM_SEED=N (or --seed N)
 * replays them; --only NAME runs the tests whose name matches.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
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
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

/* ThreadSanitizer cannot start threads in a child forked from a threaded
 * process: there, fork_child_gets_enotconn's child connects in a fresh
 * program (this one, exec'ed with --connect-child). */
#if defined(__SANITIZE_THREAD__)
#define LT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LT_TSAN 1
#endif
#endif

static const tmem_uuid_t NOUUID = { 0, 0 };
static uint64_t seed;
static td_t D;                          /* the running test's daemon */

#define MIB (1ull << 20)
#define PAGE_MAGIC 0x444e454c54534554ull    /* "TESTLEND" */
#define HUGE_FIGURE (1ull << 48)            /* the daemon's clamp of a report */

/* daemon_killed_under_load's threads (stopped by the teardown on a failure) */
struct worker;
static struct worker *g_workers;
static unsigned g_nworkers;
static _Atomic int g_stop;
static void stop_workers(void);
static void close_client(tmem_client_t *c);
struct hammer;
static struct hammer *g_hammer;         /* the *_under_stats threads, while they run */
static void hammer_stop(struct hammer *h);

/* real clients of the running test, closed by the teardown if it fails
 * (so that a failure does not also show as leaks) */
static tmem_client_t *clients[64];

/* children to kill and cgroups to remove if a test fails half way */
static pid_t kids[4];
static size_t nkids;
static char cg_base[512], cg_dir[2][600];
static int cg_mode;                     /* 1 cgroup v1, 2 cgroup v2 */

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

/* The daemon ended by itself (a crash, or a sanitizer's report): says so,
 * with the end of its log, and reaps it. */
static bool daemon_died(void)
{
    int st = 0;
    if (D.pid <= 0 || waitpid(D.pid, &st, WNOHANG) != D.pid)
        return false;
    fprintf(stderr, "tmemd ended by itself: %s %d; the end of its log:\n",
            WIFSIGNALED(st) ? "signal" : "exit status",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s/tmemd.log >&2", D.dir);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
    D.pid = 0;
    td_stop(&D);                /* removes its directory */
    return true;
}

/* Waits until the daemon reports n connected clients (up to 10 s, as
 * td_wait_connections), or finds it dead (then says why). */
static int wait_conns(unsigned n)
{
    for (uint64_t t0 = now_ms(); now_ms() - t0 < 10000;) {
        struct tmw_ctl_stats s;
        if (tmc_stats(D.ctl, &s) == 0 && s.connections == n)
            return 0;
        if (daemon_died())
            return -1;
        sleep_ms(10);
    }
    return -1;
}

static struct tmw_ctl_stats stats(void)
{
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    return s;
}

/* The record of a connected client, by id (name NULL) or by name. */
static bool find_client(uint32_t id, const char *name, struct tmw_ctl_client *out)
{
    struct tmw_ctl_client *v = NULL;
    size_t n = 0;
    if (tmc_clients(D.ctl, &v, &n) != 0)
        return false;
    bool found = false;
    for (size_t i = 0; i < n && !found; i++) {
        if (v[i].parked)
            continue;
        if (name ? strcmp(v[i].info.name, name) == 0 : v[i].info.id == id) {
            *out = v[i];
            found = true;
        }
    }
    free(v);
    return found;
}

/* A page that says what it is: the tt_fill body of kind, and a header
 * (magic, a, b, c) so that a wrong page can be told. */
static void mkpage(uint8_t *p, enum tt_kind kind, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t tag = (a + 1) * 0x9E3779B97F4A7C15ull ^ (b + 1) * 0xC2B2AE3D27D4EB4Full ^
                   (c + 1) * 0x165667B19E3779F9ull;
    tt_fill(p, kind, tag);
    const uint64_t hdr[4] = { PAGE_MAGIC, a, b, c };
    memcpy(p, hdr, sizeof(hdr));
}

static void say_page(const char *what, const uint8_t *p)
{
    uint64_t h[4];
    memcpy(h, p, sizeof(h));
    fprintf(stderr, "%s: header %016llx %llu %llu %llu\n", what, (unsigned long long)h[0],
            (unsigned long long)h[1], (unsigned long long)h[2], (unsigned long long)h[3]);
}

static bool page_is_zero(const uint8_t *p)
{
    for (size_t i = 0; i < PG; i++)
        if (p[i])
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * A raw client: its own shared page, the HELLO by hand, the arenas in the
 * test's hands.  No cmocka asserts in here: punched_pages_charge_the_client
 * runs one in a child.
 * ---------------------------------------------------------------------- */
struct lraw {
    int sock;
    int share_fd;
    struct tmw_share *share;
    int arena[2];
    uint64_t arena_bytes[2];
    uint64_t unit;                      /* bytes per unit */
    uint64_t nunits[2];
    uint32_t id;
    uint8_t *map[2];                    /* the arenas, once mapped */
    bool eof;
    /* what the daemon sent besides GROW replies */
    unsigned msgs, shrinks, wakes, reports, revokeds, others;
    unsigned first_shrink, first_revoked;   /* ordinals (1 = first message), 0 none */
    uint64_t shrink_units, max_epoch;
    uint32_t *revoked;
    size_t nrevoked, caprevoked;
};

static void lraw_init(struct lraw *r)
{
    memset(r, 0, sizeof(*r));
    r->sock = r->share_fd = r->arena[0] = r->arena[1] = -1;
}

/* Connects and says HELLO: with the shared page alone (a new client), or
 * (adopt) also with the arenas it holds, as a client whose daemon died.
 * 0, the daemon's refusal, or a negative code (with a line on stderr). */
static int lraw_hello(struct lraw *r, const char *name, bool adopt)
{
    r->eof = false;
    r->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(D.sock) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, D.sock, strlen(D.sock) + 1);
    if (r->sock < 0 || connect(r->sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        perror("lraw_hello: connect");
        return -errno;
    }
    struct timeval tv = { 10, 0 };
    setsockopt(r->sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(r->sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    struct tmw_hello h;
    memset(&h, 0, sizeof(h));
    h.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO, sizeof(h), 0 };
    snprintf(h.name, sizeof(h.name), "%s", name);
    h.flags = adopt ? TMW_HELLO_ADOPT : 0;
    h.unit_bytes = adopt ? (uint32_t)r->unit : 0;
    const int give[3] = { r->share_fd, r->arena[0], r->arena[1] };
    const int ngive = adopt ? 3 : 1;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(4 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { &h, sizeof(h) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = CMSG_SPACE((size_t)ngive * sizeof(int)) };
    struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN((size_t)ngive * sizeof(int));
    memcpy(CMSG_DATA(ch), give, (size_t)ngive * sizeof(int));
    if (sendmsg(r->sock, &mh, MSG_NOSIGNAL) != (ssize_t)sizeof(h)) {
        perror("lraw_hello: HELLO");
        return -EIO;
    }

    struct tmw_hello_reply rep;
    memset(&rep, 0, sizeof(rep));
    memset(&cm, 0, sizeof(cm));
    iov = (struct iovec){ &rep, sizeof(rep) };
    mh = (struct msghdr){ .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                          .msg_controllen = sizeof(cm.buf) };
    ssize_t n = recvmsg(r->sock, &mh, MSG_CMSG_CLOEXEC);
    int fds[4] = { -1, -1, -1, -1 }, nfds = 0;
    for (ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
        if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k && nfds < 4; i++)
            memcpy(&fds[nfds++], CMSG_DATA(ch) + i * sizeof(int), sizeof(int));
    }
    if (n == (ssize_t)sizeof(rep) && rep.m.result < 0 && nfds == 0)
        return rep.m.result;            /* a refusal */
    if (n != (ssize_t)sizeof(rep) || rep.m.result != 0 || rep.mode != TMW_MODE_LEND ||
        nfds != (adopt ? 1 : 3) || (adopt && rep.unit_bytes != r->unit)) {
        fprintf(stderr, "lraw_hello: HELLO reply of %zd bytes, type %u, result %d, mode %u, "
                "%d fds\n", n, rep.m.type, rep.m.result, rep.mode, nfds);
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return rep.m.result < 0 ? rep.m.result : -EPROTO;
    }
    close(fds[0]);                      /* the window: not used here */
    r->id = rep.client_id;
    if (adopt)
        return 0;                       /* it keeps its arenas */
    r->arena[0] = fds[1];
    r->arena[1] = fds[2];
    r->unit = rep.unit_bytes;
    for (int k = 0; k < 2; k++) {
        r->arena_bytes[k] = rep.arena_bytes[k];
        r->nunits[k] = r->unit ? rep.arena_bytes[k] / r->unit : 0;
        struct stat st;
        /* the daemon's arenas: sealed for good, of the size it says, empty */
        if (fcntl(r->arena[k], F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) ||
            fstat(r->arena[k], &st) != 0 || (uint64_t)st.st_size != r->arena_bytes[k] ||
            st.st_blocks != 0 || ftruncate(r->arena[k], 4096) == 0) {
            fprintf(stderr, "lraw_hello: arena %d is not sealed as it should be\n", k);
            return -EPROTO;
        }
    }
    if (!r->unit || r->nunits[0] == 0 || r->nunits[1] == 0)
        return -EPROTO;
    return 0;
}

/* A new raw client: 0, or a negative code (with a line on stderr). */
static int lraw_open(struct lraw *r, const char *name)
{
    lraw_init(r);
    r->share_fd = memfd_create("test-lend-share", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (r->share_fd < 0 || ftruncate(r->share_fd, TMW_SHARE_SIZE) != 0 ||
        fcntl(r->share_fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        perror("lraw_open: shared page");
        return -errno;
    }
    r->share = mmap(NULL, TMW_SHARE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, r->share_fd, 0);
    if (r->share == MAP_FAILED) {
        r->share = NULL;
        return -errno;
    }
    /* every tmc_stats asks each client for a report and waits up to 100 ms
     * for report_ack to reach report_req: this client says "done" at once */
    atomic_store(&r->share->report_ack, UINT64_MAX);
    return lraw_hello(r, name, false);
}

static void lraw_close(struct lraw *r)
{
    for (int k = 0; k < 2; k++) {
        if (r->map[k])
            munmap(r->map[k], r->arena_bytes[k]);
        if (r->arena[k] >= 0)
            close(r->arena[k]);
        r->map[k] = NULL;
        r->arena[k] = -1;
    }
    if (r->share)
        munmap(r->share, TMW_SHARE_SIZE);
    r->share = NULL;
    if (r->share_fd >= 0)
        close(r->share_fd);
    if (r->sock >= 0)
        close(r->sock);
    r->sock = r->share_fd = -1;
    free(r->revoked);
    r->revoked = NULL;
}

static uint8_t *lraw_map(struct lraw *r, int kind)
{
    if (!r->map[kind]) {
        void *p = mmap(NULL, r->arena_bytes[kind], PROT_READ | PROT_WRITE, MAP_SHARED,
                       r->arena[kind], 0);
        r->map[kind] = p == MAP_FAILED ? NULL : p;
    }
    return r->map[kind];
}

static int lraw_send(struct lraw *r, const void *m, size_t len)
{
    ssize_t n = send(r->sock, m, len, MSG_NOSIGNAL);
    return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

/* A message from the daemon other than a GROW reply: noted. */
static void lraw_note(struct lraw *r, const uint8_t *buf, size_t len)
{
    const struct tmw_msg *m = (const void *)buf;
    r->msgs++;
    if (len < sizeof(*m)) {
        r->others++;
        return;
    }
    switch (m->type) {
    case TMW_MSG_SHRINK: {
        struct tmw_shrink s;
        memset(&s, 0, sizeof(s));
        memcpy(&s, buf, len < sizeof(s) ? len : sizeof(s));
        r->shrinks++;
        r->shrink_units += s.n;
        if (!r->first_shrink)
            r->first_shrink = r->msgs;
        break;
    }
    case TMW_MSG_WAKE:
        r->wakes++;
        break;
    case TMW_MSG_REPORT:
        r->reports++;
        break;
    case TMW_MSG_REVOKED: {
        const struct tmw_units *u = (const void *)buf;
        if (len < sizeof(*u) || len != sizeof(*u) + (size_t)u->n * sizeof(uint32_t)) {
            r->others++;
            break;
        }
        r->revokeds++;
        if (!r->first_revoked)
            r->first_revoked = r->msgs;
        if (u->epoch > r->max_epoch)
            r->max_epoch = u->epoch;
        for (uint32_t i = 0; i < u->n; i++) {
            if (r->nrevoked == r->caprevoked) {
                size_t nc = r->caprevoked ? 2 * r->caprevoked : 256;
                uint32_t *nv = realloc(r->revoked, nc * sizeof(*nv));
                if (!nv)
                    return;
                r->revoked = nv;
                r->caprevoked = nc;
            }
            r->revoked[r->nrevoked++] = u->unit[i];
        }
        break;
    }
    default:
        r->others++;
    }
}

/* One message, waiting up to timeout_ms: its length, 0 at the end (eof
 * set), -ETIMEDOUT, or -errno. */
static ssize_t lraw_recv(struct lraw *r, uint8_t *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = { r->sock, POLLIN, 0 };
    int n = poll(&p, 1, timeout_ms);
    if (n == 0)
        return -ETIMEDOUT;
    if (n < 0)
        return -errno;
    ssize_t len = recv(r->sock, buf, cap, MSG_DONTWAIT | MSG_TRUNC);
    if (len == 0)
        r->eof = true;
    if (len < 0)
        return errno == EAGAIN ? -ETIMEDOUT : -errno;
    return len > (ssize_t)cap ? (ssize_t)cap : len;
}

/* Reads and notes what the daemon sends for ms. */
static void lraw_pump(struct lraw *r, unsigned ms)
{
    static _Thread_local uint8_t buf[TMW_MSG_MAX];
    uint64_t end = now_ms() + ms;
    while (!r->eof) {
        uint64_t t = now_ms();
        if (t >= end)
            break;
        ssize_t n = lraw_recv(r, buf, sizeof(buf), (int)(end - t));
        if (n > 0)
            lraw_note(r, buf, (size_t)n);
        else if (n != -ETIMEDOUT && n != -EINTR)
            break;
    }
}

#define LRAW_DEAD INT_MIN               /* no answer: the connection ended */

/* GROW kind/unit and its reply's result (other messages noted meanwhile),
 * or LRAW_DEAD. */
static int lraw_grow(struct lraw *r, uint32_t kind, uint32_t unit)
{
    static _Thread_local uint8_t buf[TMW_MSG_MAX];
    struct tmw_grow g;
    memset(&g, 0, sizeof(g));
    g.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_GROW, sizeof(g), 0 };
    g.kind = kind;
    g.unit = unit;
    if (lraw_send(r, &g, sizeof(g)) != 0)
        return LRAW_DEAD;
    uint64_t end = now_ms() + 10000;
    while (now_ms() < end) {
        ssize_t n = lraw_recv(r, buf, sizeof(buf), 1000);
        if (n == -ETIMEDOUT || n == -EINTR)
            continue;
        if (n <= 0)
            return LRAW_DEAD;
        const struct tmw_grow *rep = (const void *)buf;
        if ((size_t)n == sizeof(*rep) && rep->m.type == TMW_MSG_GROW_REPLY &&
            rep->kind == kind && rep->unit == unit)
            return rep->m.result;
        lraw_note(r, buf, (size_t)n);
    }
    return LRAW_DEAD;
}

/* RETURN or CLEANED of n units (a well-formed message). */
static int lraw_units(struct lraw *r, uint16_t type, uint32_t kind, const uint32_t *u, uint32_t n)
{
    size_t len = sizeof(struct tmw_units) + (size_t)n * sizeof(uint32_t);
    struct tmw_units *m = calloc(1, len);
    if (!m)
        return -ENOMEM;
    m->m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, type, (uint32_t)len, 0 };
    m->kind = kind;
    m->n = n;
    memcpy(m->unit, u, (size_t)n * sizeof(uint32_t));
    int rc = lraw_send(r, m, len);
    free(m);
    return rc;
}

/* Waits up to ms for the daemon to end the connection. */
static bool lraw_wait_eof(struct lraw *r, unsigned ms)
{
    lraw_pump(r, ms);
    return r->eof;
}

/* A range of fd is a hole (no page) / wholly data.  SEEK_DATA sees the
 * pages that were written: a page the daemon populated with fallocate and
 * nobody wrote yet reads as a hole (tmpfs), so the tests touch their units
 * before they look; file_bytes (the blocks allocated) counts both. */
static bool range_hole(int fd, uint64_t off, uint64_t len)
{
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    return (d < 0 && errno == ENXIO) || (d >= 0 && (uint64_t)d >= off + len);
}

static bool range_full(int fd, uint64_t off, uint64_t len)
{
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
    return d == (off_t)off && h >= 0 && (uint64_t)h >= off + len;
}

static uint64_t file_bytes(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512u : UINT64_MAX;
}

/* The client uses units [from, to) of kind: a word written in each page
 * (the daemon's pages: no new memory).  0, or -ENOMEM (no mapping). */
static int lraw_touch(struct lraw *r, int kind, uint64_t from, uint64_t to)
{
    uint8_t *m = lraw_map(r, kind);
    if (!m)
        return -ENOMEM;
    for (uint64_t off = from * r->unit; off < to * r->unit; off += PG)
        *(volatile uint64_t *)(void *)(m + off) = off | 1;
    return 0;
}

/* ------------------------------------------------------------------------
 * Teardown: whatever a failed test left behind
 * ---------------------------------------------------------------------- */
static int cg_write(const char *dir, const char *file, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int e = n == (ssize_t)strlen(text) ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return e;
}

static int cg_move(const char *dir, pid_t pid)
{
    char t[32];
    snprintf(t, sizeof(t), "%d\n", (int)pid);
    return cg_write(dir, "cgroup.procs", t);
}

/* Every process of dir back to the base cgroup, then dir removed. */
static void cg_remove(const char *dir)
{
    if (!dir[0])
        return;
    for (int tries = 0; tries < 100; tries++) {
        char path[700], line[64];
        snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
        FILE *f = fopen(path, "re");
        if (f) {
            while (fgets(line, sizeof(line), f))
                cg_move(cg_base, (pid_t)atoi(line));
            fclose(f);
        }
        if (rmdir(dir) == 0 || errno == ENOENT)
            return;
        sleep_ms(20);
    }
    fprintf(stderr, "test_lend: could not remove cgroup %s: %s\n", dir, strerror(errno));
}

static int teardown(void **state)
{
    (void)state;
    stop_workers();
    hammer_stop(g_hammer);
    for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
        if (clients[i])
            close_client(clients[i]);
    for (size_t i = 0; i < nkids; i++) {
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
        }
        kids[i] = 0;
    }
    nkids = 0;
    for (int i = 0; i < 2; i++) {
        cg_remove(cg_dir[i]);
        cg_dir[i][0] = '\0';
    }
    if (D.pid > 0)
        td_stop(&D);
    D.pid = 0;
    return 0;
}

static tmem_client_t *connect_client(const char *name)
{
    tmem_client_t *c = tmem_connect(D.sock, name);
    for (size_t i = 0; c && i < sizeof(clients) / sizeof(clients[0]); i++)
        if (!clients[i]) {
            clients[i] = c;
            break;
        }
    return c;
}

static void close_client(tmem_client_t *c)
{
    for (size_t i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
        if (clients[i] == c)
            clients[i] = NULL;
    tmem_client_close(c);
}

static pid_t add_kid(pid_t pid)
{
    if (pid > 0 && nkids < sizeof(kids) / sizeof(kids[0]))
        kids[nkids++] = pid;
    return pid;
}

static void reap_kid(pid_t pid, int *status)
{
    waitpid(pid, status, 0);
    for (size_t i = 0; i < nkids; i++)
        if (kids[i] == pid)
            kids[i] = 0;
}

/* ------------------------------------------------------------------------
 * 1. Grants follow demand
 * ---------------------------------------------------------------------- */
static void grants_follow_demand(void **state)
{
    (void)state;
    /* an honest library gives back in time even on a loaded machine */
    const char *args[] = { "--max-memory", "8M", "--set", "memory.shrink_deadline_ms=5000",
                           NULL };
    assert_int_equal(td_start(&D, args), 0);
    struct tmw_ctl_stats s = stats();
    assert_int_equal(s.lending, 1);
    const uint64_t limit = s.gov_limit;
    assert_int_equal(limit, 8 * MIB);

    tmem_client_t *a = connect_client("lend-a");
    assert_non_null(a);
    int pa = tmem_new_pool(a, NOUUID, 0);
    assert_true(pa >= 0);
    uint8_t page[PG], got[PG];

    /* A fills: puts until the daemon has refused it for a while (its
     * engine then evicts its own oldest pages) */
    uint32_t na = 0, refused_at = 0;
    for (; na < 8000; na++) {
        mkpage(page, TT_RANDOM, 1, 0, na);
        int rc = tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), na, page);
        assert_true(rc == 0 || rc == -ENOMEM);
        if (na % 256 == 255) {
            s = stats();
            assert_true(s.lent_bytes[0] + s.lent_bytes[1] <= s.gov_limit);
            if (s.lend_refused > 0 && !refused_at)
                refused_at = na;
            if (refused_at && na >= refused_at + 1024)
                break;
        }
    }
    assert_true(refused_at > 0);
    struct tmw_ctl_client ra, rb;
    assert_true(find_client(tmem_client_id(a), NULL, &ra));
    assert_int_equal(ra.lent, 1);
    assert_true(ra.lent_bytes[0] > 0);
    assert_true(ra.lent_bytes[0] >= limit / 2);     /* alone, it had most of the memory */
    assert_true(ra.lent_bytes[0] + ra.lent_bytes[1] <= limit);
    assert_true(ra.info.evicted > 0);               /* its own pages gave way */
    const uint64_t a_full = ra.lent_bytes[0];
    printf("grants_follow_demand: A holds %llu KiB after %u puts\n",
           (unsigned long long)(a_full >> 10), na);

    /* A goes idle (no GROW for over a second: no share of its own), B puts
     * steadily: the daemon asks A for units back and B gets them */
    sleep_ms(1300);
    tmem_client_t *b = connect_client("lend-b");
    assert_non_null(b);
    int pb = tmem_new_pool(b, NOUUID, 0);
    assert_true(pb >= 0);
    uint32_t nb = 0;
    uint64_t t0 = now_ms();
    for (bool done = false; !done;) {
        assert_true(now_ms() - t0 < 15000);
        for (int k = 0; k < 64; k++, nb++) {
            mkpage(page, TT_RANDOM, 2, 0, nb);
            int rc = tmem_put_page(b, (uint32_t)pb, tt_oid(2, 0, 0), nb, page);
            assert_true(rc == 0 || rc == -ENOMEM);
            if (rc == -ENOMEM)
                sleep_ms(1);
        }
        s = stats();
        assert_true(s.lent_bytes[0] + s.lent_bytes[1] <= s.gov_limit);
        assert_true(find_client(tmem_client_id(a), NULL, &ra));
        assert_true(find_client(tmem_client_id(b), NULL, &rb));
        assert_true(ra.lent_bytes[0] + rb.lent_bytes[0] <= limit);
        done = rb.lent_bytes[0] >= limit / 4 && ra.lent_bytes[0] + limit / 4 <= a_full;
    }
    printf("grants_follow_demand: after %u puts of B: A %llu KiB, B %llu KiB, %llu shrinks "
           "asked, %llu units returned, %llu revoked\n", nb,
           (unsigned long long)(ra.lent_bytes[0] >> 10),
           (unsigned long long)(rb.lent_bytes[0] >> 10),
           (unsigned long long)s.lend_shrinks_asked, (unsigned long long)s.lend_returned,
           (unsigned long long)s.lend_revoked);
    assert_int_equal(rb.lent, 1);
    assert_true(s.lend_shrinks_asked > 0);          /* A was asked (SHRINK) */
    assert_true(s.lend_returned > 0);               /* and its library gave units back */
    assert_int_equal(s.lend_revoked, 0);            /* in time: nothing taken by force */
    assert_true(ra.lent_bytes[0] < a_full);

    /* B's most recent pages: some hit, and every hit is exactly its page */
    unsigned hits = 0;
    for (uint32_t i = nb > 256 ? nb - 256 : 0; i < nb; i++) {
        int rc = tmem_get_page(b, (uint32_t)pb, tt_oid(2, 0, 0), i, got);
        assert_true(rc == 0 || rc == -ENOENT);
        if (rc == 0) {
            mkpage(page, TT_RANDOM, 2, 0, i);
            if (memcmp(page, got, PG) != 0)
                say_page("B got", got);
            assert_memory_equal(page, got, PG);
            hits++;
        }
    }
    assert_true(hits > 0);
    /* A's pages: what is left is exactly what was put */
    unsigned ahits = 0;
    for (uint32_t i = 0; i <= na; i++) {
        int rc = tmem_get_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, got);
        assert_true(rc == 0 || rc == -ENOENT);
        if (rc == 0) {
            mkpage(page, TT_RANDOM, 1, 0, i);
            assert_memory_equal(page, got, PG);
            ahits++;
        }
    }
    printf("grants_follow_demand: B hit %u of its last 256, A %u of its %u\n", hits, ahits, na);
    close_client(a);
    close_client(b);
    assert_int_equal(wait_conns(0), 0);
    s = stats();
    assert_int_equal(s.lent_bytes[0] + s.lent_bytes[1], 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 2. A client that ignores SHRINK loses units by force
 * ---------------------------------------------------------------------- */
static bool in_list(const uint32_t *v, size_t n, uint32_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

/* Puts page until it is stored (refusals while the daemon frees memory),
 * at most until deadline_ms. */
static int put_patiently(tmem_client_t *c, uint32_t pool, tmem_oid_t oid, uint32_t index,
                         const uint8_t *page, uint64_t deadline_ms)
{
    for (;;) {
        int rc = tmem_put_page(c, pool, oid, index, page);
        if (rc != -ENOMEM || now_ms() > deadline_ms)
            return rc;
        sleep_ms(5);
    }
}

static void client_ignores_shrink(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "8M", "--set", "memory.shrink_deadline_ms=100",
                           NULL };
    assert_int_equal(td_start(&D, args), 0);
    struct lraw r;
    assert_int_equal(lraw_open(&r, "deaf"), 0);
    /* it takes every ephemeral unit it can get */
    uint32_t granted = 0;
    int rc = 0;
    for (; granted < r.nunits[0]; granted++) {
        rc = lraw_grow(&r, 0, granted);
        assert_int_not_equal(rc, LRAW_DEAD);
        if (rc != 0)
            break;
    }
    assert_int_equal(rc, -ENOMEM);
    assert_true(granted > 8);
    assert_int_equal(file_bytes(r.arena[0]), granted * r.unit);    /* populated */
    assert_int_equal(lraw_touch(&r, 0, 0, granted), 0);
    for (uint32_t u = 0; u < granted; u++)
        assert_true(range_full(r.arena[0], u * r.unit, r.unit));
    assert_true(range_hole(r.arena[0], granted * r.unit, r.unit));
    struct tmw_ctl_stats s = stats();
    assert_int_equal(s.lent_bytes[0], granted * r.unit);
    assert_true(s.lent_bytes[0] <= s.gov_limit);
    printf("client_ignores_shrink: the raw client holds %u units of %llu KiB\n", granted,
           (unsigned long long)(r.unit >> 10));

    /* a real client needs memory: persistent pages first, then ephemeral */
    tmem_client_t *c = connect_client("needy");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pp >= 0 && pe >= 0);
    enum { NP = 128, NE = 64 };
    uint8_t page[PG], got[PG];
    uint64_t deadline = now_ms() + 15000;
    for (uint32_t i = 0; i < NP; i++) {
        mkpage(page, TT_RANDOM, 3, 1, i);
        assert_int_equal(put_patiently(c, (uint32_t)pp, tt_oid(3, 1, 0), i, page, deadline), 0);
    }
    for (uint32_t i = 0; i < NE; i++) {
        mkpage(page, TT_RANDOM, 3, 0, i);
        assert_int_equal(put_patiently(c, (uint32_t)pe, tt_oid(3, 0, 0), i, page, deadline), 0);
    }
    /* the raw client's side: SHRINK first, then REVOKED; it gives nothing
     * back, so once every deadline has passed, every unit asked was taken */
    struct tmw_ctl_stats s1;
    uint64_t t0 = now_ms();
    do {
        lraw_pump(&r, 100);
        assert_false(r.eof);
        s1 = stats();
        assert_true(now_ms() - t0 < 10000);
    } while (r.nrevoked != r.shrink_units || s1.lend_revoked != r.nrevoked);
    printf("client_ignores_shrink: %u SHRINK (%llu units), %u REVOKED (%zu units, epoch %llu), "
           "%u WAKE, %u other messages\n", r.shrinks, (unsigned long long)r.shrink_units,
           r.revokeds, r.nrevoked, (unsigned long long)r.max_epoch, r.wakes, r.others);
    assert_true(r.shrinks > 0);
    assert_true(r.revokeds > 0);
    assert_true(r.first_shrink > 0 && r.first_shrink < r.first_revoked);
    assert_int_equal(r.others, 0);
    assert_true(r.max_epoch > 0);
    assert_true(atomic_load(&r.share->revoke_epoch) >= r.max_epoch);
    /* revoked: holes in its arena; the others keep the daemon's pages */
    for (size_t i = 0; i < r.nrevoked; i++) {
        assert_true(r.revoked[i] < granted);
        assert_false(in_list(r.revoked, i, r.revoked[i]));     /* each once */
        assert_true(range_hole(r.arena[0], r.revoked[i] * r.unit, r.unit));
    }
    for (uint32_t u = 0; u < granted; u++)
        if (!in_list(r.revoked, r.nrevoked, u))
            assert_true(range_full(r.arena[0], u * r.unit, r.unit));
    assert_int_equal(file_bytes(r.arena[0]), (granted - r.nrevoked) * r.unit);
    s = stats();
    assert_true(s.lend_revoked > 0);
    assert_int_equal(s.lend_revoked, r.nrevoked);
    assert_true(s.lend_shrinks_asked >= r.shrinks);
    assert_true(s.lent_bytes[0] + s.lent_bytes[1] <= s.gov_limit);
    struct tmw_ctl_client rec;
    assert_true(find_client(r.id, NULL, &rec));
    assert_int_equal(rec.revoked_units, r.nrevoked);
    assert_int_equal(rec.lent_bytes[0], (granted - r.nrevoked) * r.unit);

    /* the real client got the memory: every page exactly */
    for (uint32_t i = 0; i < NP; i++) {
        mkpage(page, TT_RANDOM, 3, 1, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(3, 1, 0), i, got), 0);
        assert_memory_equal(page, got, PG);
    }
    unsigned hits = 0;
    for (uint32_t i = 0; i < NE; i++) {
        rc = tmem_get_page(c, (uint32_t)pe, tt_oid(3, 0, 0), i, got);
        assert_true(rc == 0 || rc == -ENOENT);
        if (rc == 0) {
            mkpage(page, TT_RANDOM, 3, 0, i);
            assert_memory_equal(page, got, PG);
            hits++;
        }
    }
    assert_true(hits > 0);

    /* a revoked unit is not free until the client says CLEANED */
    uint32_t ru = r.revoked[0];
    assert_int_equal(lraw_grow(&r, 0, ru), -EINVAL);
    assert_int_equal(lraw_units(&r, TMW_MSG_CLEANED, 0, r.revoked, (uint32_t)r.nrevoked), 0);
    rc = lraw_grow(&r, 0, ru);
    assert_true(rc == 0 || rc == -ENOMEM);

    close_client(c);
    lraw_close(&r);
    assert_int_equal(wait_conns(0), 0);
    s = stats();
    assert_int_equal(s.lent_bytes[0] + s.lent_bytes[1], 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 3. Garbage messages
 * ---------------------------------------------------------------------- */
enum { HONEST_PAGES = 300 };

static void honest_fill(tmem_client_t *c, int pool)
{
    uint8_t page[PG];
    for (uint32_t i = 0; i < HONEST_PAGES; i++) {
        mkpage(page, i % 2 ? TT_RANDOM : TT_TEXT, 7, 7, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pool, tt_oid(7, 7, 7), i, page), 0);
    }
}

static void honest_check(tmem_client_t *c, int pool)
{
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < HONEST_PAGES; i++) {
        mkpage(page, i % 2 ? TT_RANDOM : TT_TEXT, 7, 7, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pool, tt_oid(7, 7, 7), i, got), 0);
        assert_memory_equal(page, got, PG);
    }
}

static void garbage_messages(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("honest");
    assert_non_null(c);
    int hp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(hp >= 0);
    honest_fill(c, hp);

    struct lraw r;
    assert_int_equal(lraw_open(&r, "garbage"), 0);
    const uint32_t nu = (uint32_t)r.nunits[0];
    struct tmw_ctl_stats s0 = stats();

    /* refused, counted, the connection kept */
    assert_int_equal(lraw_grow(&r, 0, nu), -EINVAL);                /* out of range */
    assert_int_equal(lraw_grow(&r, 0, UINT32_MAX), -EINVAL);
    assert_int_equal(lraw_grow(&r, 2, 0), -EINVAL);                 /* kind 2 */
    assert_int_equal(lraw_grow(&r, UINT32_MAX, 0), -EINVAL);        /* kind -1 as an int */
    assert_int_equal(lraw_grow(&r, 0, 0), 0);
    assert_int_equal(lraw_grow(&r, 0, 0), -EINVAL);                 /* lent already */
    assert_int_equal(lraw_grow(&r, 1, 0), 0);
    assert_int_equal(lraw_grow(&r, 1, 0), -EINVAL);
    unsigned bad = 6;
    /* ignored, counted */
    const uint32_t never[] = { 3, 4, 5 }, out_of_range[] = { nu, UINT32_MAX }, zero[] = { 0 };
    const uint32_t seven[] = { 7 }, cleaned[] = { 0, 9, nu };
    assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, 0, never, 3), 0);          /* never lent */
    assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, 0, out_of_range, 2), 0);
    assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, 2, zero, 1), 0);           /* kind 2 */
    assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, 1, seven, 1), 0);
    assert_int_equal(lraw_units(&r, TMW_MSG_CLEANED, 0, cleaned, 3), 0);       /* never revoked */
    bad += 3 + 2 + 1 + 1 + 3;
    /* the daemon served them in order: this reply comes after */
    assert_int_equal(lraw_grow(&r, 0, 1), 0);
    assert_false(r.eof);
    struct tmw_ctl_stats s1 = stats();
    assert_int_equal(s1.lend_bad - s0.lend_bad, bad);
    assert_int_equal(s1.bad_msgs, s0.bad_msgs);
    assert_int_equal(s1.connections, 2);
    struct tmw_ctl_client rec;
    assert_true(find_client(r.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[0], 2 * r.unit);   /* units 0 and 1: nothing given back */
    assert_int_equal(rec.lent_bytes[1], r.unit);
    assert_int_equal(file_bytes(r.arena[0]), 2 * r.unit);
    assert_int_equal(file_bytes(r.arena[1]), r.unit);
    assert_int_equal(lraw_touch(&r, 0, 0, 2), 0);
    assert_true(range_full(r.arena[0], 0, 2 * r.unit));
    /* a real RETURN still works */
    assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, 0, zero, 1), 0);
    assert_int_equal(lraw_grow(&r, 0, 2), 0);
    assert_true(range_hole(r.arena[0], 0, r.unit));
    assert_true(find_client(r.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[0], 2 * r.unit);   /* units 1 and 2 */

    /* malformed framing: each ends its connection */
    static uint8_t big[70000];
    memset(big, 0x5a, sizeof(big));
    static struct {
        const char *what;
        uint8_t buf[sizeof(struct tmw_units) + (TMW_UNITS_MAX + 1) * sizeof(uint32_t)];
        size_t len;
        bool counted;                   /* in bad_msgs */
    } cs[12];
    memset(cs, 0, sizeof(cs));
    size_t nc = 0;
    struct tmw_units u;
    struct tmw_grow g;
    memset(&u, 0, sizeof(u));
    memset(&g, 0, sizeof(g));
#define CASE(w, p, l, cnt)                                                                 \
    do {                                                                                   \
        cs[nc].what = (w);                                                                 \
        memcpy(cs[nc].buf, (p), (l));                                                      \
        cs[nc].len = (l);                                                                  \
        cs[nc].counted = (cnt);                                                            \
        nc++;                                                                              \
    } while (0)
    u.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_RETURN, sizeof(u), 0 };
    u.n = 0;
    CASE("RETURN of n = 0", &u, sizeof(u), true);
    {
        uint8_t tmp[sizeof(cs[0].buf)];
        memset(tmp, 0, sizeof(tmp));
        struct tmw_units *m = (struct tmw_units *)(void *)tmp;
        size_t len = sizeof(*m) + (TMW_UNITS_MAX + 1) * sizeof(uint32_t);
        m->m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_RETURN, (uint32_t)len, 0 };
        m->n = TMW_UNITS_MAX + 1;
        CASE("RETURN of n > TMW_UNITS_MAX", tmp, len, true);
        len = sizeof(*m) + 3 * sizeof(uint32_t);
        m->m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_RETURN, (uint32_t)len, 0 };
        m->n = 2;
        CASE("RETURN of n = 2 with 3 units", tmp, len, true);
        len = sizeof(*m) + 2 * sizeof(uint32_t);
        m->m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_CLEANED, (uint32_t)len, 0 };
        m->n = 3;
        CASE("CLEANED of n = 3 with 2 units", tmp, len, true);
    }
    struct tmw_msg hdr = { TMW_MAGIC, TMW_VERSION, 99, sizeof(hdr), 0 };
    CASE("unknown type", &hdr, sizeof(hdr), true);
    hdr.type = TMW_MSG_WAKE;
    CASE("WAKE (the daemon's message)", &hdr, sizeof(hdr), true);
    hdr.type = TMW_MSG_HELLO;
    CASE("a second HELLO", &hdr, sizeof(hdr), true);
    g.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_GROW, sizeof(g), 0 };
    CASE("truncated header", &g, 8, true);
    g.m.magic = 0x12345678;
    CASE("bad magic", &g, sizeof(g), true);
    g.m.magic = TMW_MAGIC;
    g.m.version = TMW_VERSION + 7;
    CASE("bad version", &g, sizeof(g), true);
    g.m.version = TMW_VERSION;
    g.m.len = sizeof(g) + 8;
    CASE("len larger than the message", &g, sizeof(g), true);
    g.m.len = sizeof(g) - 4;
    CASE("GROW of the wrong size", &g, sizeof(g) - 4, true);
#undef CASE
    unsigned counted = 0;
    for (size_t i = 0; i <= nc; i++) {
        struct lraw x;
        assert_int_equal(lraw_open(&x, "framing"), 0);
        if (i == 0) {                   /* a unit of its own: punched when it is dropped */
            assert_int_equal(lraw_grow(&x, 0, 3), 0);
            assert_int_equal(lraw_touch(&x, 0, 3, 4), 0);
            assert_true(range_full(x.arena[0], 3 * x.unit, x.unit));
        }
        const void *p = i < nc ? cs[i].buf : big;
        size_t len = i < nc ? cs[i].len : sizeof(big);
        ssize_t n = send(x.sock, p, len, MSG_NOSIGNAL);
        if (n != (ssize_t)len)
            fprintf(stderr, "case %zu: send: %s\n", i, strerror(errno));
        assert_int_equal(n, (ssize_t)len);
        bool ended = lraw_wait_eof(&x, 10000);
        if (!ended)
            fprintf(stderr, "the connection was kept after: %s\n",
                    i < nc ? cs[i].what : "an oversized message");
        assert_true(ended);
        if (i == 0) {
            /* released (and punched) after the socket's end */
            assert_int_equal(wait_conns(2), 0);
            assert_true(range_hole(x.arena[0], 3 * x.unit, x.unit));
            assert_int_equal(file_bytes(x.arena[0]), 0);
        }
        counted += i < nc ? cs[i].counted : 1;
        lraw_close(&x);
    }
    assert_int_equal(wait_conns(2), 0);
    struct tmw_ctl_stats s2 = stats();
    assert_true(s2.bad_msgs - s1.bad_msgs >= counted);
    assert_int_equal(s2.lend_bad, s1.lend_bad);

    /* the garbage client is still served, the honest one has every page */
    assert_int_equal(lraw_grow(&r, 0, 4), 0);
    honest_check(c, hp);
    lraw_close(&r);
    close_client(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(stats().lent_bytes[1], 0);
    assert_int_equal(td_stop(&D), 0);
}

/* A RETURN's kind is unsigned on the wire; read as an int it may be
 * negative.  That is one more unit not its own: counted, nothing else. */
static void return_with_negative_kind(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("bystander");
    assert_non_null(c);
    int hp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(hp >= 0);
    honest_fill(c, hp);
    struct lraw r;
    assert_int_equal(lraw_open(&r, "negative"), 0);
    assert_int_equal(lraw_grow(&r, 0, 0), 0);
    assert_int_equal(lraw_touch(&r, 0, 0, 1), 0);
    struct tmw_ctl_stats s0 = stats();
    const uint32_t kinds[] = { UINT32_MAX, 0x80000000u };
    const uint32_t zero[] = { 0 };
    for (size_t k = 0; k < 2; k++) {
        assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, kinds[k], zero, 1), 0);
        int rc = lraw_grow(&r, 0, (uint32_t)(1 + k));     /* served after it */
        if (rc == LRAW_DEAD) {
            int st = 0;
            bool died = false;
            for (int t = 0; t < 200 && !died; t++) {
                died = waitpid(D.pid, &st, WNOHANG) == D.pid;
                if (!died)
                    sleep_ms(10);
            }
            fprintf(stderr, "tmemd %s after a RETURN of kind 0x%x (a kind out of range "
                    "must be counted and ignored)\n",
                    !died ? "dropped the connection"
                    : WIFSIGNALED(st) ? "died of a signal" : "exited", kinds[k]);
            if (died) {
                char cmd[300];
                fprintf(stderr, "tmemd status %d; the end of its log:\n", st);
                snprintf(cmd, sizeof(cmd), "tail -n 25 %s/tmemd.log >&2", D.dir);
                if (system(cmd) != 0)
                    fprintf(stderr, "(no log)\n");
                D.pid = 0;
                td_stop(&D);        /* removes its directory */
            }
        }
        assert_int_equal(rc, 0);
    }
    struct tmw_ctl_stats s1 = stats();
    assert_int_equal(s1.lend_bad - s0.lend_bad, 2);
    assert_int_equal(s1.bad_msgs, s0.bad_msgs);
    assert_true(range_full(r.arena[0], 0, r.unit));     /* unit 0 is still its own */
    honest_check(c, hp);
    lraw_close(&r);
    close_client(c);
    assert_int_equal(td_stop(&D), 0);
}

/* An empty message (SOCK_SEQPACKET keeps it as one) after the HELLO is a
 * malformed message like any other: counted, and the connection ends
 * (before the HELLO it does end it). */
static void empty_message_after_hello(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    struct lraw r;
    assert_int_equal(lraw_open(&r, "empty"), 0);
    assert_int_equal(lraw_grow(&r, 0, 0), 0);
    struct tmw_ctl_stats s0 = stats();
    assert_int_equal(send(r.sock, "", 0, MSG_NOSIGNAL), 0);
    bool ended = lraw_wait_eof(&r, 3000);
    struct tmw_ctl_stats s1 = stats();
    if (!ended)
        fprintf(stderr, "an empty message after the HELLO was ignored (bad_msgs %llu -> "
                "%llu): it must end the connection, counted\n",
                (unsigned long long)s0.bad_msgs, (unsigned long long)s1.bad_msgs);
    assert_true(ended);
    assert_int_equal(wait_conns(0), 0);
    assert_true(stats().bad_msgs > s0.bad_msgs);
    lraw_close(&r);
    assert_int_equal(td_stop(&D), 0);
}

/* The control socket asks every client with lent memory for a report
 * (REPORT on its socket) at each stats or clients request; these hammer it
 * from other threads while clients connect and leave. */
struct hammer {
    pthread_t th[2];
    bool running;
    _Atomic int stop;
    _Atomic unsigned calls, failed;
};

static void *stats_hammer(void *arg)
{
    struct hammer *h = arg;
    while (!atomic_load(&h->stop)) {
        struct tmw_ctl_stats s;
        if (tmc_stats(D.ctl, &s) != 0)
            atomic_fetch_add(&h->failed, 1);
        atomic_fetch_add(&h->calls, 1);
    }
    return NULL;
}

static void hammer_start(struct hammer *h)
{
    atomic_store(&h->stop, 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&h->th[i], NULL, stats_hammer, h), 0);
    h->running = true;
    g_hammer = h;
}

static void hammer_stop(struct hammer *h)
{
    if (!h || !h->running)
        return;
    atomic_store(&h->stop, 1);
    for (int i = 0; i < 2; i++)
        pthread_join(h->th[i], NULL);
    h->running = false;
    g_hammer = NULL;
}

/* A client's first message is its HELLO reply, whatever an administrator
 * asks meanwhile: tmem_connect() never fails for it. */
enum { CROWD = 40 };

static void connect_under_stats(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    struct hammer h = { 0 };
    static struct lraw raws[CROWD / 2];
    tmem_client_t *reals[CROWD / 2];
    int rc = 0;
    unsigned done = 0;
    for (int round = 0; round < 6 && rc == 0; round++) {
        hammer_start(&h);
        unsigned nr = 0, nc = 0;
        for (unsigned i = 0; i < CROWD && rc == 0; i++, done++) {
            if (i % 2) {
                reals[nc] = connect_client("crowd-real");
                if (!reals[nc]) {
                    rc = -errno;
                    fprintf(stderr, "client %u: tmem_connect: %s\n", done, strerror(errno));
                } else {
                    nc++;
                }
            } else {
                rc = lraw_open(&raws[nr], "crowd-raw");
                nr++;
                if (rc)
                    fprintf(stderr, "client %u: the HELLO reply was not the first message\n",
                            done);
            }
        }
        hammer_stop(&h);
        for (unsigned i = 0; i < nr; i++)
            lraw_close(&raws[i]);
        for (unsigned i = 0; i < nc; i++)
            close_client(reals[i]);
        assert_int_equal(wait_conns(0), 0);
    }
    printf("connect_under_stats: %u clients connected, %u stats calls\n", done, h.calls);
    if (rc)
        fprintf(stderr, "a message reached a new client before its HELLO reply (its connect "
                "failed): no message may precede the reply (tmd_lend_started)\n");
    assert_int_equal(rc, 0);
    assert_int_equal(h.failed, 0);
    assert_int_equal(td_stop(&D), 0);
}

/* Clients with lent memory leave while the control socket sends them
 * reports: nothing is sent on a socket the daemon has closed (whose number
 * a new connection may have taken).  ThreadSanitizer sees it in tmemd. */
static const char close_race[] =
    "look for a message sent to a client's socket after it was closed (a client's lent "
    "memory must leave the lender's list before its socket closes: server.c close_conn)";

static void departing_clients_under_stats(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    struct hammer h = { 0 };
    static struct lraw raws[CROWD];
    for (int round = 0; round < 3; round++) {
        for (unsigned i = 0; i < CROWD; i++) {
            assert_int_equal(lraw_open(&raws[i], "departing"), 0);
            assert_int_equal(lraw_grow(&raws[i], 0, i % 8), 0);
        }
        hammer_start(&h);
        for (unsigned i = 0; i < CROWD; i++) {
            lraw_close(&raws[i]);
            sleep_ms(2);
        }
        int gone = wait_conns(0);
        bool died = D.pid == 0;         /* wait_conns found it dead */
        hammer_stop(&h);
        if (died)
            fprintf(stderr, "tmemd died while clients left under stats requests (its log "
                    "above); %s\n", close_race);
        assert_false(died);
        assert_int_equal(gone, 0);
    }
    printf("departing_clients_under_stats: %u clients left, %u stats calls\n", 3 * CROWD,
           h.calls);
    assert_int_equal(h.failed, 0);
    int st = td_stop(&D);
    if (st != 0)
        fprintf(stderr, "tmemd did not stop clean (%d); %s\n", st, close_race);
    assert_int_equal(st, 0);
}

/* The daemon's totals stay cumulative: what a client with lent memory
 * reported last (its puts and gets, counted in its own engine) stays in
 * tmemctl stats after it leaves. */
static void counters_outlive_clients(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = tmem_connect(D.sock, "counted");
    assert_non_null(c);
    int p = tmem_new_pool(c, NOUUID, 0);
    assert_true(p >= 0);
    uint8_t page[TMEM_PAGE_SIZE], got[TMEM_PAGE_SIZE];
    for (uint32_t i = 0; i < 100; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
        (void)tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, got);
    }
    sleep_ms(400);                  /* its report is written every 100 ms */
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    assert_true(s.engine.puts >= 100 && s.engine.gets >= 100);
    tmem_client_close(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    printf("counters_outlive_clients: after it left, %llu puts and %llu gets\n",
           (unsigned long long)s.engine.puts, (unsigned long long)s.engine.gets);
    assert_true(s.engine.puts >= 100 && s.engine.gets >= 100);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 4. Garbage in the shared page and the arenas
 * ---------------------------------------------------------------------- */
/* Writes random bytes over the client's part of the shared page until
 * killed: a process of its own, as a hostile client would be. */
static pid_t start_scribbler(struct tmw_share *share, uint64_t s)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        volatile uint8_t *p = (volatile uint8_t *)share;
        uint64_t x = s | 1;
        for (unsigned long i = 0;; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t off = 64 + x % (TMW_SHARE_SIZE - 64);
            /* now and then a whole field of all ones, or of a huge value */
            if ((i & 255) == 0 && off + 8 <= TMW_SHARE_SIZE) {
                uint64_t v = (i & 256) ? UINT64_MAX : x;
                for (int b = 0; b < 8; b++)
                    p[(off & ~7ul) + b] = (uint8_t)(v >> (8 * b));
            } else {
                p[off] = (uint8_t)(x >> 32);
            }
        }
    }
    return add_kid(pid);
}

static void check_clamped(const struct tmw_ctl_client *c)
{
    const tmem_client_info_t *i = &c->info;
    const uint64_t v[] = { i->ephemeral_pages, i->persistent_pages, i->puts, i->puts_ok,
                           i->gets, i->gets_hit, i->flushes, i->evicted, i->refused_nomem,
                           i->refused_quota, i->refused_frozen, i->compressed_pages,
                           i->compressed_bytes, i->compress_poor, c->meta_bytes,
                           c->oldest_eph_ms, c->revoked_units };
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        if (v[k] > HUGE_FIGURE)
            fprintf(stderr, "figure %zu of client %u not clamped: %llu\n", k, i->id,
                    (unsigned long long)v[k]);
        assert_true(v[k] <= HUGE_FIGURE);
    }
    assert_true(i->nr_pools <= TMEM_MAX_POOLS);
}

static void garbage_shared_page(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "8M", "--set", "memory.shrink_deadline_ms=100",
                           NULL };
    assert_int_equal(td_start(&D, args), 0);
    struct lraw r;
    assert_int_equal(lraw_open(&r, "scribbler"), 0);
    enum { EPH = 24, PERS = 4 };
    for (uint32_t u = 0; u < EPH; u++)
        assert_int_equal(lraw_grow(&r, 0, u), 0);
    for (uint32_t u = 0; u < PERS; u++)
        assert_int_equal(lraw_grow(&r, 1, u), 0);

    /* garbage over its arenas, units it holds and holes alike: the daemon
     * never maps them, so this is the client's business alone */
    tt_rng rng;
    tt_seed(&rng, seed ^ 4);
    for (int k = 0; k < 2; k++) {
        uint8_t *m = lraw_map(&r, k);
        assert_non_null(m);
        uint32_t held = k ? PERS : EPH;
        for (uint64_t off = 0; off < held * r.unit; off += 8) {
            uint64_t x = tt_next(&rng);
            memcpy(m + off, &x, 8);
        }
        for (int i = 0; i < 300; i++)
            m[tt_below(&rng, r.arena_bytes[k])] = (uint8_t)tt_next(&rng);
    }
    /* the scribbler starts before any client thread exists */
    pid_t scr = start_scribbler(r.share, seed);
    assert_true(scr > 0);

    /* a real client asks for memory meanwhile: the victim policy reads the
     * scribbled report (oldest page, free units) */
    tmem_client_t *c = connect_client("neighbour");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pp >= 0 && pe >= 0);
    uint8_t page[PG], got[PG];
    uint64_t deadline = now_ms() + 15000;
    for (uint32_t i = 0; i < 64; i++) {
        mkpage(page, TT_TEXT, 4, 1, i);
        assert_int_equal(put_patiently(c, (uint32_t)pp, tt_oid(4, 1, 0), i, page, deadline), 0);
    }
    for (int round = 0; round < 12; round++) {
        for (uint32_t i = 0; i < 200; i++) {
            mkpage(page, TT_RANDOM, 4, 0, (uint64_t)round * 200 + i);
            int rc = tmem_put_page(c, (uint32_t)pe, tt_oid(4, 0, 0), i, page);
            assert_true(rc == 0 || rc == -ENOMEM || rc == -ENOSPC);
        }
        /* the control socket asks every client for a report (REPORT) and
         * shows what the scribbled page says, clamped */
        struct tmw_ctl_stats s = stats();
        assert_true(s.lent_bytes[0] + s.lent_bytes[1] <= s.gov_limit);
#define CHECK_SUM(f) assert_true(s.engine.f <= 2 * HUGE_FIGURE);
        TMW_REPORT_FIELDS(CHECK_SUM)
#undef CHECK_SUM
        struct tmw_ctl_client *v = NULL;
        size_t n = 0;
        assert_int_equal(tmc_clients(D.ctl, &v, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
            check_clamped(&v[i]);
            assert_int_equal(v[i].lent, 1);
            if (v[i].info.id == r.id) {
                /* what the daemon counts, whatever the page says */
                assert_int_equal(v[i].lent_bytes[1], PERS * r.unit);
                assert_true(v[i].lent_bytes[0] <= EPH * r.unit);
            }
        }
        free(v);
    }
    kill(scr, SIGKILL);
    reap_kid(scr, NULL);
    /* the REPORTs came to the raw client too (it never answered them) */
    lraw_pump(&r, 200);
    assert_false(r.eof);
    assert_true(r.reports > 0);
    /* it still talks to the daemon, and its persistent units are intact */
    assert_int_equal(lraw_grow(&r, 1, PERS), 0);
    assert_int_equal(lraw_touch(&r, 1, PERS, PERS + 1), 0);
    for (uint32_t u = 0; u <= PERS; u++)
        assert_true(range_full(r.arena[1], u * r.unit, r.unit));
    struct tmw_ctl_client rec;
    assert_true(find_client(r.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[1], (PERS + 1) * r.unit);
    for (uint32_t i = 0; i < 64; i++) {
        mkpage(page, TT_TEXT, 4, 1, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(4, 1, 0), i, got), 0);
        assert_memory_equal(page, got, PG);
    }
    close_client(c);
    lraw_close(&r);
    assert_int_equal(wait_conns(0), 0);
    struct tmw_ctl_stats s = stats();
    assert_int_equal(s.lent_bytes[0] + s.lent_bytes[1], 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 5. Old mappings of units given back see no other client's data
 * ---------------------------------------------------------------------- */
static void fill_units(uint8_t *map, uint64_t unit, uint32_t from, uint32_t to, uint64_t who,
                       uint64_t gen)
{
    for (uint64_t off = from * unit; off < to * unit; off += PG)
        mkpage(map + off, TT_RANDOM, who, gen, off / PG);
}

static void old_mappings_see_no_other_data(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    enum { NU = 8 };
    struct lraw a, b;
    assert_int_equal(lraw_open(&a, "keeper"), 0);
    for (uint32_t u = 0; u < NU; u++)
        assert_int_equal(lraw_grow(&a, 0, u), 0);
    uint8_t *am = lraw_map(&a, 0);
    assert_non_null(am);
    fill_units(am, a.unit, 0, NU, 0xA, 1);
    uint32_t units[NU];
    for (uint32_t u = 0; u < NU; u++)
        units[u] = u;
    assert_int_equal(lraw_units(&a, TMW_MSG_RETURN, 0, units, NU), 0);
    assert_int_equal(lraw_grow(&a, 1, 0), 0);           /* after the RETURN was served */
    struct tmw_ctl_client rec;
    assert_true(find_client(a.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[0], 0);
    assert_true(range_hole(a.arena[0], 0, NU * a.unit));
    /* punched: its own old data is gone too */
    for (uint64_t off = 0; off < NU * a.unit; off += PG)
        assert_true(page_is_zero(am + off));

    /* others are served and write: a raw client into the same unit numbers
     * of its own arena, a real one through its library */
    assert_int_equal(lraw_open(&b, "newcomer"), 0);
    for (uint32_t u = 0; u < NU; u++)
        assert_int_equal(lraw_grow(&b, 0, u), 0);
    uint8_t *bm = lraw_map(&b, 0);
    assert_non_null(bm);
    fill_units(bm, b.unit, 0, NU, 0xB, 1);
    tmem_client_t *c = connect_client("writer");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pp >= 0);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 512; i++) {
        mkpage(page, TT_RANDOM, 0xC, 1, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(0xC, 0, 0), i, page), 0);
    }

    /* A's old mapping: zeros, never anyone's page */
    for (uint64_t off = 0; off < NU * a.unit; off += PG) {
        if (!page_is_zero(am + off))
            say_page("A's old mapping holds", am + off);
        assert_true(page_is_zero(am + off));
    }
    /* what A writes there it reads back; the daemon's figures do not move */
    struct tmw_ctl_stats s0 = stats();
    assert_true(find_client(a.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[0], 0);
    fill_units(am, a.unit, 0, NU / 2, 0xA, 2);
    for (uint64_t off = 0; off < NU * a.unit; off += PG) {
        if (off < NU / 2 * a.unit) {
            mkpage(page, TT_RANDOM, 0xA, 2, off / PG);
            assert_memory_equal(am + off, page, PG);
        } else {
            assert_true(page_is_zero(am + off));
        }
    }
    assert_true(range_full(a.arena[0], 0, NU / 2 * a.unit));   /* its own pages now */
    struct tmw_ctl_stats s1 = stats();
    assert_true(find_client(a.id, NULL, &rec));
    assert_int_equal(rec.lent_bytes[0], 0);
    assert_int_equal(rec.lent_bytes[1], a.unit);
    assert_int_equal(s1.lent_bytes[0], s0.lent_bytes[0]);
    assert_true(s1.lent_bytes[1] <= s0.lent_bytes[1]);  /* the real client may give back */
    assert_int_equal(s1.lend_grown, s0.lend_grown);

    /* the others' data is theirs, whole */
    for (uint64_t off = 0; off < NU * b.unit; off += PG) {
        mkpage(page, TT_RANDOM, 0xB, 1, off / PG);
        assert_memory_equal(bm + off, page, PG);
    }
    for (uint32_t i = 0; i < 512; i++) {
        mkpage(page, TT_RANDOM, 0xC, 1, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(0xC, 0, 0), i, got), 0);
        assert_memory_equal(page, got, PG);
    }
    close_client(c);
    lraw_close(&b);
    lraw_close(&a);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 6. Memory cgroups: the daemon is charged for what it lends, the client
 *    for what it touches after giving it back
 * ---------------------------------------------------------------------- */
static const char *cg_usage_file(void)
{
    return cg_mode == 1 ? "memory.usage_in_bytes" : "memory.current";
}

/* The test process's memory cgroup into cg_base: 0, or a reason. */
static const char *cg_find(void)
{
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return "no /proc/self/cgroup";
    char line[1024], v1[400] = "", v2[400] = "";
    bool have1 = false, have2 = false;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = '\0';
        const char *ctrls = c1 + 1, *path = c2 + 1;
        if (!strncmp(line, "0", 1) && c1 == line + 1 && !*ctrls) {
            snprintf(v2, sizeof(v2), "%s", path);
            have2 = true;
        }
        for (char *tok = strtok((char *)ctrls, ","); tok; tok = strtok(NULL, ","))
            if (!strcmp(tok, "memory")) {
                snprintf(v1, sizeof(v1), "%s", path);
                have1 = true;
            }
    }
    fclose(f);
    char probe[1300];
    if (have1) {
        snprintf(cg_base, sizeof(cg_base), "/sys/fs/cgroup/memory%s", strcmp(v1, "/") ? v1 : "");
        snprintf(probe, sizeof(probe), "%s/memory.usage_in_bytes", cg_base);
        if (access(probe, R_OK) == 0) {
            cg_mode = 1;
            return NULL;
        }
    }
    if (have2) {
        snprintf(cg_base, sizeof(cg_base), "/sys/fs/cgroup%s", strcmp(v2, "/") ? v2 : "");
        snprintf(probe, sizeof(probe), "%s/cgroup.subtree_control", cg_base);
        FILE *sc = fopen(probe, "re");
        char ctl[512] = "";
        if (sc) {
            if (!fgets(ctl, sizeof(ctl), sc))
                ctl[0] = '\0';
            fclose(sc);
        }
        if (!strstr(ctl, "memory") && cg_write(cg_base, "cgroup.subtree_control", "+memory"))
            return "cgroup v2 without the memory controller for child cgroups";
        cg_mode = 2;
        return NULL;
    }
    return "no memory cgroup (neither v1 nor v2)";
}

static int64_t cg_usage(const char *dir)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", dir, cg_usage_file());
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    unsigned long long v = 0;
    int ok = fscanf(f, "%llu", &v);
    fclose(f);
    return ok == 1 ? (int64_t)v : -1;
}

/* The raw client in its own cgroup: steps on the parent's word, through
 * pipes (no cmocka in a child).  Replies: one int per step (< 0: failed). */
enum { CG_UNITS = 256 };

static void cg_child(int in, int out)
{
    struct lraw r;
    lraw_init(&r);
    int step = 0, rc = 0;
    uint32_t granted = 0;
    static uint32_t units[CG_UNITS];
    while (read(in, &step, sizeof(step)) == (ssize_t)sizeof(step)) {
        switch (step) {
        case 1:                         /* connect, and take CG_UNITS units */
            rc = lraw_open(&r, "charged");
            for (uint32_t u = 0; rc == 0 && u < CG_UNITS; u++) {
                int g = lraw_grow(&r, 0, u);
                if (g != 0) {
                    rc = g == LRAW_DEAD ? -EPIPE : g;
                    break;
                }
                units[granted++] = u;
            }
            if (rc == 0)
                rc = (int)granted;
            break;
        case 2:                         /* give them back; a refused GROW says it is done */
            rc = lraw_units(&r, TMW_MSG_RETURN, 0, units, granted);
            if (rc == 0)
                rc = lraw_grow(&r, 0, UINT32_MAX) == -EINVAL ? 0 : -EPROTO;
            break;
        case 3: {                       /* write to them again through its mapping */
            uint8_t *m = lraw_map(&r, 0);
            rc = m ? 0 : -ENOMEM;
            for (uint64_t off = 0; m && off < (uint64_t)granted * r.unit; off += PG)
                *(volatile uint64_t *)(void *)(m + off) = off | 1;
            break;
        }
        default:
            lraw_close(&r);
            _exit(0);
        }
        if (write(out, &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
            _exit(2);
    }
    _exit(3);
}

static int cg_step(int to, int from, int step)
{
    int rc = -EPIPE;
    if (write(to, &step, sizeof(step)) != (ssize_t)sizeof(step))
        return -EPIPE;
    struct pollfd p = { from, POLLIN, 0 };
    if (poll(&p, 1, 30000) != 1 || read(from, &rc, sizeof(rc)) != (ssize_t)sizeof(rc))
        return -ETIMEDOUT;
    return rc;
}

static void punched_pages_charge_the_client(void **state)
{
    (void)state;
    const char *why = cg_find();
    if (why)
        TT_SKIP_CASE("punched_pages_charge_the_client: %s", why);
    for (int i = 0; i < 2; i++) {
        snprintf(cg_dir[i], sizeof(cg_dir[i]), "%s/tmem-test-lend-%s-%d", cg_base,
                 i ? "client" : "daemon", (int)getpid());
        if (mkdir(cg_dir[i], 0755) != 0) {
            int e = errno;
            cg_dir[i][0] = '\0';
            teardown(NULL);
            TT_SKIP_CASE("punched_pages_charge_the_client: cannot create a cgroup under %s: %s",
                         cg_base, strerror(e));
        }
    }
    const char *args[] = { "--max-memory", "256M", NULL };
    assert_int_equal(td_start(&D, args), 0);
    int rc = cg_move(cg_dir[0], D.pid);
    if (rc == -EACCES || rc == -EPERM || rc == -EROFS) {
        teardown(NULL);
        TT_SKIP_CASE("punched_pages_charge_the_client: cannot move a process between "
                     "cgroups: %s", strerror(-rc));
    }
    assert_int_equal(rc, 0);
    int to[2], from[2];
    assert_int_equal(pipe2(to, O_CLOEXEC), 0);
    assert_int_equal(pipe2(from, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0) {
        close(to[1]);
        close(from[0]);
        cg_child(to[0], from[1]);
    }
    add_kid(kid);
    assert_true(kid > 0);
    close(to[0]);
    close(from[1]);
    assert_int_equal(cg_move(cg_dir[1], kid), 0);

    const int64_t tol = 8 * MIB;
    int64_t d0 = cg_usage(cg_dir[0]), c0 = cg_usage(cg_dir[1]);
    assert_true(d0 >= 0 && c0 >= 0);
    /* granted: fallocate in the daemon charges the daemon */
    rc = cg_step(to[1], from[0], 1);
    assert_int_equal(rc, CG_UNITS);
    struct tmw_ctl_stats s = stats();
    const int64_t lent = (int64_t)s.lent_bytes[0];
    assert_true(lent >= 64 * (int64_t)MIB);
    int64_t d1 = cg_usage(cg_dir[0]), c1 = cg_usage(cg_dir[1]);
    printf("punched_pages_charge_the_client: %lld MiB lent: daemon %+lld KiB, client %+lld KiB\n",
           (long long)(lent >> 20), (long long)(d1 - d0) / 1024, (long long)(c1 - c0) / 1024);
    assert_true(d1 - d0 >= lent - tol);
    assert_true(d1 - d0 <= lent + 2 * tol);
    assert_true(c1 - c0 < tol);
    /* given back: punched, uncharged */
    assert_int_equal(cg_step(to[1], from[0], 2), 0);
    assert_int_equal(stats().lent_bytes[0], 0);
    int64_t d2 = cg_usage(cg_dir[0]), c2 = cg_usage(cg_dir[1]);
    printf("punched_pages_charge_the_client: given back: daemon %+lld KiB, client %+lld KiB\n",
           (long long)(d2 - d1) / 1024, (long long)(c2 - c1) / 1024);
    assert_true(d1 - d2 >= lent - tol);
    assert_true(d2 - d0 < tol);
    /* the client writes to them through its old mapping: its own charge */
    assert_int_equal(cg_step(to[1], from[0], 3), 0);
    int64_t d3 = cg_usage(cg_dir[0]), c3 = cg_usage(cg_dir[1]);
    printf("punched_pages_charge_the_client: touched again: daemon %+lld KiB, client %+lld KiB\n",
           (long long)(d3 - d2) / 1024, (long long)(c3 - c2) / 1024);
    assert_true(c3 - c2 >= lent - tol);
    assert_true(d3 - d2 < tol);
    assert_int_equal(stats().lent_bytes[0], 0);         /* not the daemon's memory */
    /* the client ends */
    int status = 0;
    assert_int_equal(write(to[1], &(int){ 9 }, sizeof(int)), (ssize_t)sizeof(int));
    reap_kid(kid, &status);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(to[1]);
    close(from[0]);
    assert_int_equal(wait_conns(0), 0);
    for (int i = 0; i < 2; i++) {
        cg_remove(cg_dir[i]);
        struct stat st;
        assert_int_not_equal(stat(cg_dir[i], &st), 0);
        cg_dir[i][0] = '\0';
    }
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 7. The daemon killed (and restarted) under load
 * ---------------------------------------------------------------------- */
enum { NKEYS = 256, NTHREADS = 3 };

struct worker {
    pthread_t th;
    tmem_client_t *c;
    uint32_t pp, pe;
    unsigned id;
    uint64_t seed;
    _Atomic int *stop;
    uint32_t pver[NKEYS];               /* persistent: the version present, 0 none */
    uint32_t ever[NKEYS];               /* ephemeral: the version a hit must show, 0 none */
    uint32_t next;
    unsigned long ops, pputs, phits, ehits, refused;
    char err[320];
};

static enum tt_kind kind_of(uint32_t v)
{
    static const enum tt_kind k[] = { TT_RANDOM, TT_TEXT, TT_HALF };
    return k[v % 3];
}

static bool wfail(struct worker *w, const char *what, uint32_t key, uint32_t ver, int rc)
{
    snprintf(w->err, sizeof(w->err), "thread %u: %s (key %u, version %u, rc %d) after %lu ops",
             w->id, what, key, ver, rc, w->ops);
    return false;
}

/* One operation against the model; false on a wrong outcome. */
static bool worker_op(struct worker *w, tt_rng *rng, uint8_t *page, uint8_t *got)
{
    uint32_t key = (uint32_t)tt_below(rng, NKEYS), op = (uint32_t)tt_below(rng, 100);
    tmem_oid_t po = tt_oid(w->id, 1, 0), eo = tt_oid(w->id, 0, 0);
    int rc;
    if (op < 35) {                      /* persistent put */
        uint32_t v = ++w->next;
        mkpage(page, kind_of(v), w->id, key, v);
        rc = tmem_put_page(w->c, w->pp, po, key, page);
        if (rc == 0) {
            w->pver[key] = v;
            w->pputs++;
        } else if (rc == -ENOSPC) {     /* a duplicate that failed: the old copy went */
            if (!w->pver[key])
                return wfail(w, "-ENOSPC on a put of an absent page", key, v, rc);
            w->pver[key] = 0;
            w->refused++;
        } else if (rc == -ENOMEM) {     /* refused: it was not there */
            if (w->pver[key])
                return wfail(w, "-ENOMEM on a duplicate put (its old copy?)", key, v, rc);
            w->refused++;
        } else {
            return wfail(w, "unexpected put result", key, v, rc);
        }
    } else if (op < 60) {               /* persistent get (exclusive) */
        uint32_t v = w->pver[key];
        rc = tmem_get_page(w->c, w->pp, po, key, got);
        if (rc == 0) {
            if (!v)
                return wfail(w, "a hit on a persistent page never put or taken", key, v, rc);
            mkpage(page, kind_of(v), w->id, key, v);
            if (memcmp(page, got, PG) != 0) {
                say_page("expected", page);
                say_page("got", got);
                return wfail(w, "a WRONG persistent page", key, v, rc);
            }
            w->pver[key] = 0;
            w->phits++;
        } else if (rc == -ENOENT) {
            if (v)
                return wfail(w, "a persistent page LOST", key, v, rc);
        } else {
            return wfail(w, "unexpected get result", key, v, rc);
        }
    } else if (op < 70) {               /* persistent flush */
        rc = tmem_flush_page(w->c, w->pp, po, key);
        if (rc != 0)
            return wfail(w, "unexpected flush result", key, w->pver[key], rc);
        w->pver[key] = 0;
    } else if (op < 88) {               /* ephemeral put */
        uint32_t v = ++w->next;
        mkpage(page, kind_of(v), w->id + 100, key, v);
        rc = tmem_put_page(w->c, w->pe, eo, key, page);
        if (rc == 0)
            w->ever[key] = v;
        else if (rc == -ENOMEM || rc == -ENOSPC)
            w->ever[key] = 0;
        else
            return wfail(w, "unexpected ephemeral put result", key, v, rc);
    } else {                            /* ephemeral get: may miss, never wrong */
        uint32_t v = w->ever[key];
        rc = tmem_get_page(w->c, w->pe, eo, key, got);
        if (rc == 0) {
            if (!v)
                return wfail(w, "an ephemeral hit on a page not there", key, v, rc);
            mkpage(page, kind_of(v), w->id + 100, key, v);
            if (memcmp(page, got, PG) != 0) {
                say_page("expected", page);
                say_page("got", got);
                return wfail(w, "a WRONG ephemeral page", key, v, rc);
            }
            w->ehits++;
        } else if (rc != -ENOENT) {
            return wfail(w, "unexpected ephemeral get result", key, v, rc);
        }
        w->ever[key] = 0;
    }
    w->ops++;
    return true;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    tt_rng rng;
    tt_seed(&rng, w->seed);
    uint8_t *page = malloc(PG), *got = malloc(PG);
    if (!page || !got) {
        snprintf(w->err, sizeof(w->err), "thread %u: no memory", w->id);
    } else {
        while (!atomic_load(w->stop) && worker_op(w, &rng, page, got)) {
            if ((w->ops & 1023) == 0)
                sched_yield();
        }
    }
    free(page);
    free(got);
    return NULL;
}

static void stop_workers(void)
{
    atomic_store(&g_stop, 1);
    for (unsigned i = 0; i < g_nworkers; i++)
        pthread_join(g_workers[i].th, NULL);
    g_nworkers = 0;
    free(g_workers);
    g_workers = NULL;
}

/* Waits until the client named name is connected with its memory adopted. */
static void wait_adopted(const char *name, const char *what)
{
    uint64_t t0 = now_ms();
    struct tmw_ctl_client rec;
    struct tmw_ctl_stats s;
    memset(&rec, 0, sizeof(rec));
    memset(&s, 0, sizeof(s));
    for (;;) {
        bool ok = tmc_stats(D.ctl, &s) == 0 && s.lend_adopted_units > 0 &&
                  find_client(0, name, &rec) && rec.lent == 1 && rec.lent_bytes[1] > 0;
        if (ok)
            break;
        if (now_ms() - t0 > 10000)
            fprintf(stderr, "%s: the client did not come back in 10 s\n", what);
        assert_true(now_ms() - t0 <= 10000);
        sleep_ms(20);
    }
    printf("daemon_killed_under_load: %s: back after %llu ms, %llu units adopted, "
           "%llu KiB persistent lent\n", what, (unsigned long long)(now_ms() - t0),
           (unsigned long long)s.lend_adopted_units, (unsigned long long)(rec.lent_bytes[1] >> 10));
}

static void daemon_killed_under_load(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("loaded");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pp >= 0 && pe >= 0);
    atomic_store(&g_stop, 0);
    struct worker *w = g_workers = calloc(NTHREADS, sizeof(*w));
    assert_non_null(w);
    for (unsigned i = 0; i < NTHREADS; i++) {
        w[i].c = c;
        w[i].pp = (uint32_t)pp;
        w[i].pe = (uint32_t)pe;
        w[i].id = i + 1;
        w[i].seed = seed * 31 + i;
        w[i].stop = &g_stop;
        assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
        g_nworkers++;
    }
    sleep_ms(400);
    for (int round = 0; round < 2; round++) {
        if (round == 0) {
            assert_int_equal(td_kill(&D), 0);           /* a crash */
            sleep_ms(300);
            assert_int_equal(td_restart(&D, NULL), 0);
        } else {
            assert_int_equal(td_restart(&D, NULL), 0);  /* a clean stop and start */
        }
        wait_adopted("loaded", round == 0 ? "after SIGKILL" : "after a clean restart");
        sleep_ms(400);
    }
    atomic_store(&g_stop, 1);
    unsigned long ops = 0, pputs = 0, phits = 0, ehits = 0;
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(w[i].th, NULL);
    g_nworkers = 0;
    for (unsigned i = 0; i < NTHREADS; i++) {
        if (w[i].err[0])
            fprintf(stderr, "%s\n", w[i].err);
        ops += w[i].ops;
        pputs += w[i].pputs;
        phits += w[i].phits;
        ehits += w[i].ehits;
    }
    printf("daemon_killed_under_load: %lu ops, %lu persistent puts, %lu persistent hits, "
           "%lu ephemeral hits\n", ops, pputs, phits, ehits);
    for (unsigned i = 0; i < NTHREADS; i++)
        assert_string_equal(w[i].err, "");
    assert_true(pputs > 0 && phits > 0);
    /* every persistent page the models hold, exactly */
    uint8_t page[PG], got[PG];
    unsigned left = 0;
    for (unsigned i = 0; i < NTHREADS; i++) {
        for (uint32_t k = 0; k < NKEYS; k++) {
            uint32_t v = w[i].pver[k];
            int rc = tmem_get_page(c, (uint32_t)pp, tt_oid(w[i].id, 1, 0), k, got);
            if (!v) {
                assert_int_equal(rc, -ENOENT);
                continue;
            }
            if (rc != 0)
                fprintf(stderr, "thread %u key %u version %u: LOST (%d)\n", w[i].id, k, v, rc);
            assert_int_equal(rc, 0);
            mkpage(page, kind_of(v), w[i].id, k, v);
            assert_memory_equal(page, got, PG);
            left++;
        }
    }
    printf("daemon_killed_under_load: %u persistent pages checked at the end\n", left);
    free(w);
    g_workers = NULL;
    assert_int_equal(stats().connections, 1);
    close_client(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 8. Coming back to a daemon too small for its persistent units
 * ---------------------------------------------------------------------- */
enum { BIG_PAGES = 6144 };              /* 24 MiB */

static void check_big(tmem_client_t *c, int pool)
{
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < BIG_PAGES; i++) {
        int rc = tmem_get_page(c, (uint32_t)pool, tt_oid(8, 0, 0), i, got);
        if (rc != 0)
            fprintf(stderr, "page %u: %d\n", i, rc);
        assert_int_equal(rc, 0);
        mkpage(page, TT_RANDOM, 8, 0, i);
        assert_memory_equal(page, got, PG);
    }
}

static void adoption_refused_over_limit(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("big");
    assert_non_null(c);
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pool >= 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < BIG_PAGES; i++) {
        mkpage(page, TT_RANDOM, 8, 0, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pool, tt_oid(8, 0, 0), i, page), 0);
    }
    struct tmw_ctl_stats s = stats();
    assert_true(s.lent_bytes[1] >= (uint64_t)BIG_PAGES * PG);

    /* a daemon of 16 MiB: its 24 MiB of persistent units do not fit */
    const char *small[] = { "--max-memory", "16M", NULL };
    assert_int_equal(td_restart(&D, small), 0);
    uint64_t t0 = now_ms();
    for (;;) {
        s = stats();
        if (s.lend_adopt_refused >= 2)      /* refused, and it tried again */
            break;
        assert_true(now_ms() - t0 < 10000);
        sleep_ms(20);
    }
    struct tmw_ctl_client rec;
    assert_false(find_client(0, "big", &rec));      /* each try is dropped */
    assert_int_equal(s.lent_bytes[1], 0);
    assert_int_equal(s.lend_adopted_units, 0);
    /* on its own meanwhile: every page is there */
    check_big(c, pool);
    s = stats();
    assert_false(find_client(0, "big", &rec));
    assert_int_equal(s.lend_adopted_units, 0);
    printf("adoption_refused_over_limit: refused %llu times\n",
           (unsigned long long)s.lend_adopt_refused);

    /* a daemon with room takes it back */
    assert_int_equal(td_restart(&D, NULL), 0);
    assert_int_equal(wait_conns(1), 0);
    s = stats();
    assert_true(s.lend_adopted_units >= (uint64_t)BIG_PAGES * PG / (128 * 1024));
    assert_true(s.lent_bytes[1] >= (uint64_t)BIG_PAGES * PG);
    assert_true(find_client(0, "big", &rec));
    assert_int_equal(rec.lent, 1);
    assert_true(rec.lent_bytes[1] >= (uint64_t)BIG_PAGES * PG);
    check_big(c, pool);
    /* and it grows again */
    mkpage(page, TT_RANDOM, 8, 1, 0);
    uint64_t deadline = now_ms() + 10000;
    assert_int_equal(put_patiently(c, (uint32_t)pool, tt_oid(8, 1, 0), 0, page, deadline), 0);
    close_client(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

/* A client refused on coming back (its uid's share was full) is adopted by
 * the same daemon once an administrator raises the share: its arenas were
 * refused, never held, so they are not "already lent" on its next try. */
static void adoption_after_share_raised(void **state)
{
    (void)state;
    enum { N = 2048 };                  /* 8 MiB */
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("shared-out");
    assert_non_null(c);
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(pool >= 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < N; i++) {
        mkpage(page, TT_RANDOM, 9, 0, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pool, tt_oid(9, 0, 0), i, page), 0);
    }
    /* the next daemon gives this uid 4 MiB of persistent memory */
    const char *small[] = { "--set", "memory.uid_persistent_max=4M", NULL };
    assert_int_equal(td_restart(&D, small), 0);
    uint64_t t0 = now_ms();
    struct tmw_ctl_stats s;
    for (;;) {
        s = stats();
        if (s.lend_adopt_refused >= 1)
            break;
        assert_true(now_ms() - t0 < 10000);
        sleep_ms(20);
    }
    assert_int_equal(s.lend_adopted_units, 0);
    /* the administrator lifts the bound: it comes back on its next try */
    assert_int_equal(tmc_set_uid(D.ctl, (uint32_t)getuid(), 0, 0), 0);
    t0 = now_ms();
    struct tmw_ctl_client rec;
    while (!find_client(0, "shared-out", &rec)) {
        if (now_ms() - t0 > 10000) {
            s = stats();
            fprintf(stderr, "not adopted after 10 s: %llu refusals\n",
                    (unsigned long long)s.lend_adopt_refused);
            fail();
        }
        sleep_ms(20);
    }
    s = stats();
    assert_true(s.lend_adopted_units >= (uint64_t)N * PG / (128 * 1024));
    close_client(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

/* A client comes back with units it was granted but has not written yet
 * (the library grows a unit when its engine needs frames, and a frame is
 * written only when a page is stored there): they are populated (the
 * daemon's fallocate), so the new daemon must count them as lent, as it
 * counts the units it finds with data. */
static void adoption_counts_untouched_units(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    struct lraw r;
    assert_int_equal(lraw_open(&r, "untouched"), 0);
    enum { N = 4 };
    for (uint32_t k = 0; k < 2; k++)
        for (uint32_t u = 0; u < N; u++)
            assert_int_equal(lraw_grow(&r, k, u), 0);
    /* it has written to half of them so far */
    assert_int_equal(lraw_touch(&r, 0, N / 2, N), 0);
    assert_int_equal(lraw_touch(&r, 1, N / 2, N), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(file_bytes(r.arena[k]), N * r.unit);
    struct tmw_ctl_stats s = stats();
    assert_int_equal(s.lent_bytes[0], N * r.unit);
    assert_int_equal(s.lent_bytes[1], N * r.unit);

    /* the daemon dies; the client comes back with its arenas */
    assert_int_equal(td_kill(&D), 0);
    close(r.sock);
    r.sock = -1;
    assert_int_equal(td_restart(&D, NULL), 0);
    assert_int_equal(lraw_hello(&r, "untouched", true), 0);
    s = stats();
    printf("adoption_counts_untouched_units: %d units held (%d written), %llu adopted; "
           "arenas hold %llu + %llu KiB\n", 2 * N, N, (unsigned long long)s.lend_adopted_units,
           (unsigned long long)(file_bytes(r.arena[0]) >> 10),
           (unsigned long long)(file_bytes(r.arena[1]) >> 10));
    if (s.lend_adopted_units != 2 * N)
        fprintf(stderr, "the new daemon adopted %llu of the %d units the client holds (a "
                "unit granted and never written must be found too: lend.c populate)\n",
                (unsigned long long)s.lend_adopted_units, 2 * N);
    assert_int_equal(s.lend_adopted_units, 2 * N);
    assert_int_equal(s.lent_bytes[0], N * r.unit);
    assert_int_equal(s.lent_bytes[1], N * r.unit);
    /* they are its own: not free to grow, and punched when given back */
    for (uint32_t k = 0; k < 2; k++)
        for (uint32_t u = 0; u < N; u++)
            assert_int_equal(lraw_grow(&r, k, u), -EINVAL);
    uint32_t units[N];
    for (uint32_t u = 0; u < N; u++)
        units[u] = u;
    s = stats();
    uint64_t bad0 = s.lend_bad;
    for (uint32_t k = 0; k < 2; k++)
        assert_int_equal(lraw_units(&r, TMW_MSG_RETURN, k, units, N), 0);
    assert_int_equal(lraw_grow(&r, 0, UINT32_MAX), -EINVAL);   /* after the RETURNs */
    s = stats();
    assert_int_equal(s.lend_bad, bad0 + 1);
    assert_int_equal(s.lent_bytes[0] + s.lent_bytes[1], 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(file_bytes(r.arena[k]), 0);
    lraw_close(&r);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

/* ------------------------------------------------------------------------
 * 9. A child of fork()
 * ---------------------------------------------------------------------- */
/* A connection of the child's own works: 0, or the number of the first
 * check that failed (20..). */
static int own_connection(const char *sock)
{
    uint8_t page[PG], got[PG];
    tmem_oid_t o = tt_oid(9, 0, 0);
    tmem_client_t *own = tmem_connect(sock, "child");
    if (!own)
        return 20;
    int p = tmem_new_pool(own, NOUUID, TMEM_POOL_PERSIST);
    if (p < 0)
        return 21;
    for (uint32_t i = 0; i < 64; i++) {
        mkpage(page, TT_TEXT, 9, 1, i);
        if (tmem_put_page(own, (uint32_t)p, o, i, page) != 0)
            return 22;
    }
    for (uint32_t i = 0; i < 64; i++) {
        mkpage(page, TT_TEXT, 9, 1, i);
        if (tmem_get_page(own, (uint32_t)p, o, i, got) != 0 || memcmp(page, got, PG) != 0)
            return 23;
    }
    tmem_client_close(own);
    return 0;
}

/* The child's checks; 0, or the number of the first that failed. */
static int fork_child(tmem_client_t *c, int pp, int pe)
{
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_TEXT, 99);
    tmem_oid_t o = tt_oid(9, 0, 0);
    if (tmem_put_page(c, (uint32_t)pp, o, 0, page) != -ENOTCONN)
        return 1;
    if (tmem_get_page(c, (uint32_t)pp, o, 0, got) != -ENOTCONN)
        return 2;
    if (tmem_get_page(c, (uint32_t)pe, o, 0, got) != -ENOTCONN)
        return 3;
    if (tmem_flush_page(c, (uint32_t)pp, o, 0) != -ENOTCONN)
        return 4;
    if (tmem_flush_object(c, (uint32_t)pp, o) != -ENOTCONN)
        return 5;
    if (tmem_new_pool(c, NOUUID, 0) != -ENOTCONN)
        return 6;
    if (tmem_pool_is_shared(c, (uint32_t)pp) != -ENOTCONN)
        return 7;
    if (tmem_destroy_pool(c, (uint32_t)pe) != -ENOTCONN)
        return 8;
    tmem_handle_t hs[2] = { { (uint32_t)pp, 0, o }, { (uint32_t)pe, 1, o } };
    const void *in[2] = { page, page };
    void *out[2] = { got, got };
    int res[2] = { 1, 1 };
    if (tmem_put_pages(c, 2, hs, in, res) != 0 || res[0] != -ENOTCONN || res[1] != -ENOTCONN)
        return 9;
    res[0] = res[1] = 1;
    if (tmem_get_pages(c, 2, hs, out, res) != 0 || res[0] != -ENOTCONN || res[1] != -ENOTCONN)
        return 10;
    res[0] = res[1] = 1;
    if (tmem_flush_pages(c, 2, hs, res) != 0 || res[0] != -ENOTCONN || res[1] != -ENOTCONN)
        return 11;
    tmem_client_close(c);               /* harmless: the parent's connection stays */
    if (tmem_put_page(c, (uint32_t)pp, o, 0, page) >= 0)
        return 12;
#ifdef LT_TSAN
    char sock[sizeof(D.sock)];
    memcpy(sock, D.sock, sizeof(sock));
    char *const argv[] = { "test_lend", "--connect-child", sock, NULL };
    execv("/proc/self/exe", argv);
    return 13;
#else
    return own_connection(D.sock);
#endif
}

static void fork_child_gets_enotconn(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    tmem_client_t *c = connect_client("parent");
    assert_non_null(c);
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    int pe = tmem_new_pool(c, NOUUID, 0);
    assert_true(pp >= 0 && pe >= 0);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 200; i++) {
        mkpage(page, TT_RANDOM, 9, 0, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(9, 0, 0), i, page), 0);
    }
    fflush(NULL);
    pid_t kid = fork();
    if (kid == 0)
        _exit(fork_child(c, pp, pe));
    add_kid(kid);
    assert_true(kid > 0);
    int status = 0;
    reap_kid(kid, &status);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fprintf(stderr, "the child failed: %s %d\n", WIFEXITED(status) ? "check" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* the parent: connected, every page intact */
    assert_int_equal(wait_conns(1), 0);
    for (uint32_t i = 0; i < 200; i++) {
        mkpage(page, TT_RANDOM, 9, 0, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(9, 0, 0), i, got), 0);
        assert_memory_equal(page, got, PG);
    }
    assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(9, 0, 0), 0, got), 0);
    mkpage(page, TT_TEXT, 9, 2, 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)pe, tt_oid(9, 2, 0), 0, page), 0);
    close_client(c);
    assert_int_equal(wait_conns(0), 0);
    assert_int_equal(td_stop(&D), 0);
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--connect-child"))
        return own_connection(argv[2]);
    seed = tt_seed_from_args(argc, argv, "test_lend");
    signal(SIGPIPE, SIG_IGN);
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(grants_follow_demand, teardown),
        cmocka_unit_test_teardown(client_ignores_shrink, teardown),
        cmocka_unit_test_teardown(garbage_messages, teardown),
        cmocka_unit_test_teardown(counters_outlive_clients, teardown),
        cmocka_unit_test_teardown(garbage_shared_page, teardown),
        cmocka_unit_test_teardown(old_mappings_see_no_other_data, teardown),
        cmocka_unit_test_teardown(punched_pages_charge_the_client, teardown),
        cmocka_unit_test_teardown(daemon_killed_under_load, teardown),
        cmocka_unit_test_teardown(adoption_refused_over_limit, teardown),
        cmocka_unit_test_teardown(adoption_after_share_raised, teardown),
        cmocka_unit_test_teardown(adoption_counts_untouched_units, teardown),
        cmocka_unit_test_teardown(fork_child_gets_enotconn, teardown),
        cmocka_unit_test_teardown(connect_under_stats, teardown),
        cmocka_unit_test_teardown(departing_clients_under_stats, teardown),
        cmocka_unit_test_teardown(empty_message_after_hello, teardown),
        cmocka_unit_test_teardown(return_with_negative_kind, teardown),
    };
    return tt_run_tests(tests, sizeof(tests) / sizeof(tests[0]), only);
}
