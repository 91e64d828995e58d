/* SPDX-License-Identifier: MIT */
/*
 * test_daemon.c - tmemd against real client processes and hostile ones:
 * many threads of one client, a client killed mid-request, the daemon
 * killed under a client, garbage and truncated socket messages, hostile
 * window contents (random fields, doorbells without requests, pages
 * changed while they are put), pool ids of other clients, the memory
 * governor under a simulated pressure signal, and a metrics port another
 * process holds (the daemon serves without the endpoint).  Its daemons do not lend
 * memory: every call crosses the window (test_lend covers lent memory).
 *
 * Every daemon must stop with exit status 0, which says its engine passed
 * tmem_check() after all clients were dropped.  Random parts print their
 * seed; TMEM_SEED=N replays them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

static const tmem_uuid_t NOUUID = { 0, 0 };
static uint64_t seed;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static struct tmw_ctl_stats stats(const td_t *d)
{
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(d->ctl, &s), 0);
    return s;
}

/* ------------------------------------------------------------------------
 * A raw client: the handshake by hand, the window in the test's hands.
 * ---------------------------------------------------------------------- */
struct raw {
    int sock;
    uint8_t *win;
    uint32_t id;
};

static int raw_socket(const td_t *d)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    assert_true(strlen(d->sock) < sizeof(sa.sun_path));
    memcpy(sa.sun_path, d->sock, strlen(d->sock) + 1);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { 10, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return s;
}

static void raw_open(const td_t *d, struct raw *r, const char *name)
{
    r->sock = raw_socket(d);
    struct tmw_hello h;
    memset(&h, 0, sizeof(h));
    h.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO, sizeof(h), 0 };
    snprintf(h.name, sizeof(h.name), "%s", name);
    assert_int_equal(send(r->sock, &h, sizeof(h), 0), sizeof(h));
    struct tmw_hello_reply rep;
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &rep, sizeof(rep) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                         .msg_controllen = sizeof(cbuf) };
    assert_int_equal(recvmsg(r->sock, &mh, 0), sizeof(rep));
    assert_int_equal(rep.m.result, 0);
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
    /* sealed: the client cannot shrink the window under the daemon */
    assert_int_not_equal(ftruncate(fd, 4096), 0);
    r->win = mmap(NULL, TMW_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(r->win != MAP_FAILED);
    close(fd);
    r->id = rep.client_id;
}

static void raw_close(struct raw *r)
{
    munmap(r->win, TMW_WINDOW_SIZE);
    close(r->sock);
}

/* One honest call through slot i; returns the result. */
static int raw_call(struct raw *r, unsigned i, uint32_t op, uint32_t pool, tmem_oid_t oid,
                    uint32_t index, uint32_t arg, void *page)
{
    struct tmw_header *h = (struct tmw_header *)r->win;
    struct tmw_slot *s = (struct tmw_slot *)(r->win + TMW_SLOTS_OFF) + i;
    uint8_t *pg = r->win + TMW_PAGES_OFF + (size_t)i * PG;
    s->op = op;
    s->pool_id = pool;
    s->index = index;
    s->arg = arg;
    memcpy(s->oid, oid.oid, sizeof(s->oid));
    if (op == TMW_OP_PUT && page)
        memcpy(pg, page, PG);
    atomic_store(&s->state, TMW_POSTED);
    atomic_fetch_or(&h->pending, 1u << i);
    syscall(SYS_futex, &h->pending, 1 /* FUTEX_WAKE */, 1, NULL, NULL, 0);
    for (int n = 0; atomic_load(&s->state) != TMW_DONE; n++) {
        assert_true(n < 2000000);
        if (n > 1000)
            usleep(10);
    }
    int rc = s->result;
    if (op == TMW_OP_GET && rc == 0 && page)
        memcpy(page, pg, PG);
    atomic_store(&s->state, TMW_FREE);
    return rc;
}

/* ------------------------------------------------------------------------
 * Many threads of one client
 * ---------------------------------------------------------------------- */
struct thr_arg {
    tmem_client_t *c;
    int pool;
    unsigned id;
    int bad;
};

static void *thr_main(void *p)
{
    struct thr_arg *a = p;
    uint8_t page[PG], got[PG];
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 200; i++) {
            tt_fill(page, TT_TEXT, a->id * 100000 + round * 1000 + i);
            if (tmem_put_page(a->c, (uint32_t)a->pool, tt_oid(a->id, 0, 0), i, page) != 0)
                a->bad++;
        }
        for (uint32_t i = 0; i < 200; i++) {
            tt_fill(page, TT_TEXT, a->id * 100000 + round * 1000 + i);
            if (tmem_get_page(a->c, (uint32_t)a->pool, tt_oid(a->id, 0, 0), i, got) != 0 ||
                memcmp(got, page, PG) != 0)
                a->bad++;
        }
    }
    return NULL;
}

static void many_threads_one_client(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    tmem_client_t *c = tmem_connect(d.sock, "threads");
    assert_non_null(c);
    assert_true(tmem_client_is_remote(c));
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_int_equal(pool, 0);
    enum { N = 40 };   /* more threads than slots: some wait for a free slot */
    pthread_t th[N];
    struct thr_arg a[N];
    for (unsigned i = 0; i < N; i++) {
        a[i] = (struct thr_arg){ c, pool, i + 1, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, thr_main, &a[i]), 0);
    }
    for (unsigned i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].bad, 0);
    }
    struct tmw_ctl_stats s = stats(&d);
    assert_int_equal(s.engine.persistent_pages, N * 200);
    assert_true(s.requests >= N * 1200);
    tmem_client_close(c);
    assert_int_equal(tmem_put_page(c, 0, tt_oid(1, 0, 0), 0, (uint8_t[PG]){ 0 }), -ENODEV);
    assert_int_equal(td_wait_connections(&d, 0), 0);
    assert_int_equal(stats(&d).engine.persistent_pages, 0);
    assert_int_equal(td_stop(&d), 0);
}

/* ------------------------------------------------------------------------
 * A client killed mid-request; the daemon killed under a client
 * ---------------------------------------------------------------------- */
static void client_killed_mid_request(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    tmem_client_t *other = tmem_connect(d.sock, "survivor");
    assert_non_null(other);
    int op = tmem_new_pool(other, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 64; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(other, (uint32_t)op, tt_oid(9, 9, 9), i, page), 0);
    }
    for (int round = 0; round < 3; round++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            tmem_client_t *c = tmem_connect(d.sock, "victim");
            if (!c)
                _exit(3);
            int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
            int e = tmem_new_pool(c, NOUUID, 0);
            uint8_t pg[PG];
            for (uint32_t i = 0;; i++) {       /* until killed */
                tt_fill(pg, TT_TEXT, i);
                tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i % 5000, pg);
                tmem_put_page(c, (uint32_t)e, tt_oid(2, 0, 0), i % 5000, pg);
            }
        }
        /* wait until it is busy putting, then kill it mid-stream */
        for (int n = 0; stats(&d).engine.persistent_pages < 64 + 500; n++) {
            assert_true(n < 1000);
            sleep_ms(5);
        }
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        assert_int_equal(td_wait_connections(&d, 1), 0);
        struct tmw_ctl_stats s = stats(&d);
        assert_int_equal(s.engine.persistent_pages, 64);    /* only the survivor's */
        assert_int_equal(s.engine.ephemeral_pages, 0);
        assert_int_equal(s.engine.clients, 1);
    }
    for (uint32_t i = 0; i < 64; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_get_page(other, (uint32_t)op, tt_oid(9, 9, 9), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tmem_client_close(other);
    assert_int_equal(td_stop(&d), 0);
}

static void daemon_killed_under_client(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    tmem_client_t *c = tmem_connect(d.sock, "orphan");
    assert_non_null(c);
    int p = tmem_new_pool(c, NOUUID, 0);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), 0);
    kill(d.pid, SIGKILL);
    waitpid(d.pid, NULL, 0);
    d.pid = 0;
    /* the next calls notice within the client's check interval */
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), -ENOTCONN);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), -ENOTCONN);
    tmem_client_close(c);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d.dir);
    assert_int_equal(system(cmd), 0);
}

/* Waits until every thread of pid is stopped (SIGSTOP acts asynchronously:
 * a thread woken at the wrong moment could still serve one request). */
static bool wait_stopped(pid_t pid)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/task", (int)pid);
    for (int n = 0; n < 500; n++) {
        DIR *dp = opendir(dir);
        if (!dp)
            return false;
        bool all = true;
        struct dirent *e;
        while ((e = readdir(dp))) {
            if (e->d_name[0] == '.')
                continue;
            char path[400], buf[256];
            snprintf(path, sizeof(path), "%s/%s/stat", dir, e->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            size_t len = fread(buf, 1, sizeof(buf) - 1, f);
            fclose(f);
            buf[len] = '\0';
            const char *paren = strrchr(buf, ')');   /* "pid (comm) S ..." */
            if (!paren || (paren[2] != 'T' && paren[2] != 't'))
                all = false;
        }
        closedir(dp);
        if (all)
            return true;
        sleep_ms(2);
    }
    return false;
}

/* The same with a signal every 20 ms in the client: a wait interrupted
 * over and over must still notice the daemon's death. */
static void on_alarm(int sig) { (void)sig; }

static void daemon_killed_under_signals(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    tmem_client_t *c = tmem_connect(d.sock, "signalled");
    assert_non_null(c);
    int p = tmem_new_pool(c, NOUUID, 0);
    struct sigaction sa = { .sa_handler = on_alarm };   /* no SA_RESTART */
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 20000 }, { 0, 20000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    kill(d.pid, SIGSTOP);       /* a call now waits; then the daemon dies */
    assert_true(wait_stopped(d.pid));
    pid_t killer = fork();
    if (killer == 0) {
        usleep(300000);
        kill(d.pid, SIGKILL);
        _exit(0);
    }
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    waitpid(killer, NULL, 0);
    waitpid(d.pid, NULL, 0);
    d.pid = 0;
    assert_int_equal(rc, -ENOTCONN);
    assert_true(t1.tv_sec - t0.tv_sec < 5);
    tmem_client_close(c);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d.dir);
    assert_int_equal(system(cmd), 0);
}

/* One uid cannot take every connection: max_clients_per_uid. */
static void connections_per_uid(void **state)
{
    (void)state;
    td_t d;
    const char *args[] = { "--set", "daemon.max_clients_per_uid=2", NULL };
    assert_int_equal(td_start(&d, args), 0);
    tmem_client_t *a = tmem_connect(d.sock, "a"), *b = tmem_connect(d.sock, "b");
    assert_non_null(a);
    assert_non_null(b);
    errno = 0;
    assert_null(tmem_connect(d.sock, "c"));
    assert_int_equal(errno, EAGAIN);
    assert_true(stats(&d).refused_conn >= 1);      /* tmem_connect tries again for 1 s */
    tmem_client_close(a);
    assert_int_equal(td_wait_connections(&d, 1), 0);
    tmem_client_t *c = tmem_connect(d.sock, "c");     /* room again */
    assert_non_null(c);
    tmem_client_close(b);
    tmem_client_close(c);
    assert_int_equal(td_stop(&d), 0);
}

/* ------------------------------------------------------------------------
 * Garbage on the socket
 * ---------------------------------------------------------------------- */
static void garbage_messages(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    struct tmw_hello good;
    memset(&good, 0, sizeof(good));
    good.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO, sizeof(good), 0 };
    static uint8_t big[200000];
    memset(big, 0x5a, sizeof(big));
    struct { const void *p; size_t len; } cases[8];
    struct tmw_hello badmagic = good, badlen = good, badtype = good, badver = good;
    badmagic.m.magic = 0x12345678;
    badlen.m.len = 7;
    badtype.m.type = TMW_MSG_CTL;
    badver.m.version = 99;
    cases[0].p = &badmagic, cases[0].len = sizeof(good);
    cases[1].p = &badlen, cases[1].len = sizeof(good);
    cases[2].p = &badtype, cases[2].len = sizeof(good);
    cases[3].p = &badver, cases[3].len = sizeof(good);
    cases[4].p = &good, cases[4].len = sizeof(good.m);          /* truncated */
    cases[5].p = big, cases[5].len = 60000;                     /* oversized */
    cases[6].p = big, cases[6].len = 1;
    cases[7].p = "", cases[7].len = 0;                          /* empty message */
    for (size_t i = 0; i < 8; i++) {
        int s = raw_socket(&d);
        assert_int_equal(send(s, cases[i].p, cases[i].len, 0), (ssize_t)cases[i].len);
        struct tmw_hello_reply rep;
        char cbuf[CMSG_SPACE(sizeof(int))];
        struct iovec iov = { &rep, sizeof(rep) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
                             .msg_controllen = sizeof(cbuf) };
        ssize_t n = recvmsg(s, &mh, 0);
        /* a refusal with a reason, no window; then the end */
        if (n > 0) {
            assert_int_equal(n, sizeof(rep));
            assert_true(rep.m.result < 0);
            assert_int_equal(mh.msg_controllen, 0);
        }
        close(s);
    }
    /* a message after the HELLO ends that client */
    struct raw r;
    raw_open(&d, &r, "chatty");
    assert_int_equal(send(r.sock, "junk", 4, 0), 4);
    assert_int_equal(td_wait_connections(&d, 0), 0);
    raw_close(&r);
    struct tmw_ctl_stats s = stats(&d);
    assert_true(s.bad_msgs >= 8);
    /* the daemon still serves */
    tmem_client_t *c = tmem_connect(d.sock, "after");
    assert_non_null(c);
    assert_int_equal(tmem_new_pool(c, NOUUID, 0), 0);
    tmem_client_close(c);
    assert_int_equal(td_stop(&d), 0);
}

/* ------------------------------------------------------------------------
 * Hostile windows
 * ---------------------------------------------------------------------- */
struct honest_arg {
    const td_t *d;
    _Atomic int stop;
    int bad;
    unsigned rounds;
};

/* An honest client working next to the hostile one; it must see exactly
 * its own data. */
static void *honest_main(void *p)
{
    struct honest_arg *a = p;
    tmem_client_t *c = tmem_connect(a->d->sock, "honest");
    if (!c) {
        a->bad++;
        return NULL;
    }
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    uint8_t page[PG], got[PG];
    while (!atomic_load(&a->stop)) {
        for (uint32_t i = 0; i < 64; i++) {
            tt_fill(page, TT_TEXT, a->rounds * 64 + i);
            if (tmem_put_page(c, (uint32_t)pool, tt_oid(5, 0, 0), i, page) != 0)
                a->bad++;
        }
        for (uint32_t i = 0; i < 64; i++) {
            tt_fill(page, TT_TEXT, a->rounds * 64 + i);
            if (tmem_get_page(c, (uint32_t)pool, tt_oid(5, 0, 0), i, got) != 0 ||
                memcmp(page, got, PG) != 0)
                a->bad++;
        }
        a->rounds++;
    }
    tmem_client_close(c);
    return NULL;
}

/* Flips random bytes of the window's pages until killed: a process of its
 * own (sharing the window's mapping), as a hostile client would be, and so
 * that ThreadSanitizer does not take the deliberate race for a bug of the
 * test. */
static pid_t start_flipper(uint8_t *pages)
{
    pid_t pid = fork();
    if (pid == 0) {
        volatile uint8_t *p = pages;
        uint64_t x = 88172645463325252ull;
        for (;;) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            p[x % (TMW_NSLOTS * PG)] = (uint8_t)(x >> 32);
        }
    }
    return pid;
}

static void hostile_window(void **state)
{
    (void)state;
    td_t d;
    const char *args[] = { "--set", "memory.compress=zstd", NULL };
    assert_int_equal(td_start(&d, args), 0);
    struct honest_arg ha = { .d = &d };
    pthread_t honest;
    assert_int_equal(pthread_create(&honest, NULL, honest_main, &ha), 0);

    struct raw r;
    raw_open(&d, &r, "hostile");
    tt_rng rng;
    tt_seed(&rng, seed);
    uint8_t page[PG];
    /* the hostile client's own pools: 0 ephemeral, 1 persistent, 2 shared-less */
    assert_int_equal(raw_call(&r, 0, TMW_OP_NEW_POOL, 0, tt_oid(0, 0, 0), 0, 0, NULL), 0);
    assert_int_equal(raw_call(&r, 0, TMW_OP_NEW_POOL, 0, tt_oid(0, 0, 0), 0, TMEM_POOL_PERSIST,
                              NULL), 1);

    /* 1. pages changed while they are put and got (every codec path) */
    pid_t flipper = start_flipper(r.win + TMW_PAGES_OFF);
    assert_true(flipper > 0);
    for (uint32_t i = 0; i < 3000; i++) {
        tt_fill(page, (enum tt_kind)(i % TT_KINDS), i);
        int rc = raw_call(&r, i % TMW_NSLOTS, TMW_OP_PUT, i & 1, tt_oid(1, 0, 0), i % 300, 0,
                          page);
        assert_true(rc == 0 || rc == -ENOMEM);
        rc = raw_call(&r, (i + 7) % TMW_NSLOTS, TMW_OP_GET, i & 1, tt_oid(1, 0, 0),
                      (i * 7) % 300, 0, page);
        assert_true(rc == 0 || rc == -ENOENT || rc == -EIO);
    }
    kill(flipper, SIGKILL);
    waitpid(flipper, NULL, 0);

    /* 2. random request fields: any op, pool id, flags, oid, index */
    for (int i = 0; i < 20000; i++) {
        tmem_oid_t oid = tt_oid(tt_below(&rng, 4), tt_next(&rng), tt_below(&rng, 3));
        uint32_t op = (uint32_t)tt_below(&rng, TMW_OP_MAX_ + 3);
        uint32_t pool = (uint32_t)(tt_below(&rng, 2) ? tt_below(&rng, 20) : tt_next(&rng));
        uint32_t arg = (uint32_t)tt_next(&rng);
        if (op == TMW_OP_DESTROY_POOL || op == TMW_OP_NEW_POOL)
            continue;   /* keep the pools; their garbage forms are below */
        tt_fill(page, TT_RANDOM, (uint64_t)i);
        int rc = raw_call(&r, (unsigned)tt_below(&rng, TMW_NSLOTS), op, pool, oid,
                          (uint32_t)tt_next(&rng), arg, page);
        assert_true(rc <= 0 || op == TMW_OP_FLUSH_OBJECT || op == TMW_OP_POOL_IS_SHARED);
    }
    for (int i = 0; i < 2000; i++) {
        uint32_t flags = (uint32_t)tt_next(&rng);
        int rc = raw_call(&r, 3, TMW_OP_NEW_POOL, 0, tt_oid(tt_next(&rng), tt_next(&rng), 0), 0,
                          flags, NULL);
        if (rc >= 2)
            assert_int_equal(raw_call(&r, 3, TMW_OP_DESTROY_POOL, (uint32_t)rc, tt_oid(0, 0, 0),
                                      0, 0, NULL), 0);
        else
            assert_true(rc < 0);
    }

    /* 3. scribbling over the whole header and slot area, doorbells for
     *    slots that were never posted, a zeroed sleeping flag */
    struct tmw_header *h = (struct tmw_header *)r.win;
    for (int i = 0; i < 20000; i++) {
        size_t off = tt_below(&rng, TMW_PAGES_OFF);
        r.win[off] = (uint8_t)tt_next(&rng);
        if ((i & 15) == 0) {
            atomic_fetch_or(&h->pending, (uint32_t)tt_next(&rng));
            syscall(SYS_futex, &h->pending, 1, 1, NULL, NULL, 0);
        }
    }
    sleep_ms(50);
    atomic_store(&ha.stop, 1);
    pthread_join(honest, NULL);
    assert_int_equal(ha.bad, 0);
    assert_true(ha.rounds > 0);

    struct tmw_ctl_stats s = stats(&d);
    assert_true(s.bad_requests > 0);
    raw_close(&r);
    assert_int_equal(td_wait_connections(&d, 0), 0);
    s = stats(&d);
    assert_int_equal(s.engine.clients, 0);
    assert_int_equal(s.engine.persistent_pages + s.engine.ephemeral_pages, 0);
    assert_int_equal(td_stop(&d), 0);
}

/* A client cannot reach another client's pools by their ids. */
static void other_clients_pool_ids(void **state)
{
    (void)state;
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    tmem_client_t *a = tmem_connect(d.sock, "a");
    tmem_client_t *b = tmem_connect(d.sock, "b");
    assert_non_null(a);
    assert_non_null(b);
    uint8_t page[PG], got[PG];
    for (int i = 0; i < 4; i++)
        assert_int_equal(tmem_new_pool(a, NOUUID, i & 1 ? TMEM_POOL_PERSIST : 0), i);
    tt_fill(page, TT_TEXT, 77);
    for (uint32_t p = 0; p < 4; p++)
        assert_int_equal(tmem_put_page(a, p, tt_oid(1, 2, 3), 4, page), 0);
    /* b has no pools: every id of a's is unknown to it */
    for (uint32_t p = 0; p < TMEM_MAX_POOLS + 2; p++) {
        assert_int_equal(tmem_get_page(b, p, tt_oid(1, 2, 3), 4, got), -ENODEV);
        assert_int_equal(tmem_flush_object(b, p, tt_oid(1, 2, 3)), -ENODEV);
        assert_int_equal(tmem_destroy_pool(b, p), -ENODEV);
    }
    /* b's own pools with the same ids hold nothing of a's */
    for (int i = 0; i < 4; i++)
        assert_int_equal(tmem_new_pool(b, NOUUID, i & 1 ? TMEM_POOL_PERSIST : 0), i);
    for (uint32_t p = 0; p < 4; p++)
        assert_int_equal(tmem_get_page(b, p, tt_oid(1, 2, 3), 4, got), -ENOENT);
    /* a shared pool of a's uuid without authorisation is private to b */
    tmem_uuid_t u = { 11, 12 };
    assert_int_equal(tmc_shared_auth(d.ctl, tmem_client_id(a), u, 1), 0);
    int as = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)as), 1);
    assert_int_equal(tmem_put_page(a, (uint32_t)as, tt_oid(1, 2, 3), 4, page), 0);
    int bs = tmem_new_pool(b, u, TMEM_POOL_SHARED);
    assert_int_equal(tmem_pool_is_shared(b, (uint32_t)bs), 0);
    assert_int_equal(tmem_get_page(b, (uint32_t)bs, tt_oid(1, 2, 3), 4, got), -ENOENT);
    for (uint32_t p = 0; p < 4; p++) {
        assert_int_equal(tmem_get_page(a, p, tt_oid(1, 2, 3), 4, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tmem_client_close(a);
    tmem_client_close(b);
    assert_int_equal(td_stop(&d), 0);
}

/* ------------------------------------------------------------------------
 * The governor under a simulated pressure signal
 * ---------------------------------------------------------------------- */

static void governor_relinquishes_under_pressure(void **state)
{
    (void)state;
    char dir[] = "/tmp/tmem-gov.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char meminfo[300], psi[300], o1[320], o2[320];
    snprintf(meminfo, sizeof(meminfo), "%s/meminfo", dir);
    snprintf(psi, sizeof(psi), "%s/pressure", dir);
    /* 8 GiB host, 6 GiB available: room for the whole 64 MiB ceiling */
    tt_write_file(meminfo, "MemTotal:        8388608 kB\nMemFree:         6291456 kB\n"
                        "MemAvailable:    6291456 kB\n");
    tt_write_file(psi, "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
    snprintf(o1, sizeof(o1), "governor.meminfo=%s", meminfo);
    snprintf(o2, sizeof(o2), "governor.psi=%s", psi);
    const char *args[] = { "--set", "governor.enabled=true", "--set", "governor.interval_ms=50",
                           "--set", "governor.reserve=1G", "--set", o1, "--set", o2,
                           "--set", "memory.compress=none", NULL };
    td_t d;
    assert_int_equal(td_start(&d, args), 0);
    struct tmw_ctl_stats s = stats(&d);
    assert_int_equal(s.gov_limit, 64u << 20);
    tmem_client_t *c = tmem_connect(d.sock, "cache");
    assert_non_null(c);
    int p = tmem_new_pool(c, NOUUID, 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 12000; i++) {      /* ~47 MiB of ephemeral pages */
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
    }
    uint64_t before = stats(&d).engine.ephemeral_pages;
    assert_true(before > 8000);

    /* pressure: PSI far above the threshold, little memory available */
    tt_write_file(meminfo, "MemTotal:        8388608 kB\nMemFree:          262144 kB\n"
                        "MemAvailable:     524288 kB\n");
    tt_write_file(psi, "some avg10=45.00 avg60=20.00 avg300=5.00 total=123456\n"
                    "full avg10=10.00 avg60=5.00 avg300=1.00 total=23456\n");
    for (int n = 0;; n++) {
        s = stats(&d);
        if (s.gov_shrinks > 0 && s.engine.ephemeral_pages < before / 2)
            break;
        assert_true(n < 400);
        sleep_ms(10);
    }
    assert_true(s.gov_limit < 64u << 20);
    assert_true(s.gov_pages_evicted > 0);
    assert_true(s.engine.bytes_held <= s.gov_limit + (1u << 20));

    /* relief: the limit grows back */
    tt_write_file(meminfo, "MemTotal:        8388608 kB\nMemFree:         6291456 kB\n"
                        "MemAvailable:    6291456 kB\n");
    tt_write_file(psi, "some avg10=0.00 avg60=0.00 avg300=0.00 total=123456\n"
                    "full avg10=0.00 avg60=0.00 avg300=0.00 total=23456\n");
    uint64_t low = s.gov_limit;
    for (int n = 0;; n++) {
        s = stats(&d);
        if (s.gov_grows > 0 && s.gov_limit > low)
            break;
        assert_true(n < 1000);
        sleep_ms(10);
    }
    tmem_client_close(c);
    assert_int_equal(td_stop(&d), 0);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* Started by systemd (NOTIFY_SOCKET set), the daemon says READY=1 once its
 * sockets exist, and STOPPING=1 when it stops. */
static void notifies_systemd(void **state)
{
    (void)state;
    char dir[] = "/tmp/tmem-notify.XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify", dir);
    int ns = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(ns, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { 10, 0 };
    setsockopt(ns, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    td_t d;
    int started = td_start(&d, NULL);
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(started, 0);
    char msg[512];
    ssize_t n = recv(ns, msg, sizeof(msg) - 1, 0);
    assert_true(n > 0);
    msg[n] = '\0';
    assert_non_null(strstr(msg, "READY=1"));
    struct stat st;
    assert_int_equal(stat(d.sock, &st), 0);     /* ready means the sockets exist */
    char ctl[256];
    snprintf(ctl, sizeof(ctl), "%s", d.ctl);
    assert_int_equal(td_stop(&d), 0);
    n = recv(ns, msg, sizeof(msg) - 1, 0);
    assert_true(n > 0);
    msg[n] = '\0';
    assert_non_null(strstr(msg, "STOPPING=1"));
    assert_int_not_equal(stat(ctl, &st), 0);    /* and the sockets are gone */
    close(ns);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------------
 * The metrics port taken: the daemon serves its clients without it
 * ---------------------------------------------------------------------- */
static void metrics_port_taken(void **state)
{
    (void)state;
    int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hold >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(hold, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(hold, 1), 0);
    assert_int_equal(getsockname(hold, (struct sockaddr *)&sa, &len), 0);
    unsigned port = ntohs(sa.sin_port);
    char set_port[40];
    snprintf(set_port, sizeof(set_port), "metrics.port=%u", port);
    const char *args[] = { "--set", set_port, NULL };
    td_t d;
    assert_int_equal(td_start(&d, args), 0);        /* ready: both sockets listen */

    /* it serves a client */
    tmem_client_t *c = tmem_connect(d.sock, "taken");
    assert_non_null(c);
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pool >= 0);
    static uint8_t page[TMEM_PAGE_SIZE], back[TMEM_PAGE_SIZE];
    memset(page, 0x5c, sizeof(page));
    tmem_oid_t oid = { { 1, 2, 3 } };
    assert_int_equal(tmem_put_page(c, (uint32_t)pool, oid, 0, page), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)pool, oid, 0, back), 0);
    assert_memory_equal(page, back, sizeof(page));
    /* without the endpoint (tmemctl stats: metrics off) */
    assert_int_equal(stats(&d).metrics_port, 0);
    tmem_client_close(c);

    /* and says why in its log */
    char path[300], line[512], want[120];
    snprintf(path, sizeof(path), "%s/tmemd.log", d.dir);
    snprintf(want, sizeof(want), "metrics: port %u on 127.0.0.1 is taken: no metrics endpoint",
             port);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    bool said = false, ready_off = false;
    while (fgets(line, sizeof(line), f)) {
        said |= strstr(line, want) != NULL && strstr(line, "warning") != NULL;
        ready_off |= strstr(line, "ready:") != NULL && strstr(line, "metrics off") != NULL;
    }
    fclose(f);
    if (!said || !ready_off)
        fail_msg("the log does not say '%s' (and 'ready: ... metrics off')", want);
    assert_int_equal(td_stop(&d), 0);
    close(hold);
}

int main(int argc, char **argv)
{
    seed = tt_seed_from_args(argc, argv, "test_daemon");
    signal(SIGPIPE, SIG_IGN);
    /* the window and the socket as a daemon that runs its clients' pools
     * serves them (a lending daemon's own protocol: test_lend) */
    td_window_mode = 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(many_threads_one_client),
        cmocka_unit_test(client_killed_mid_request),
        cmocka_unit_test(daemon_killed_under_client),
        cmocka_unit_test(daemon_killed_under_signals),
        cmocka_unit_test(connections_per_uid),
        cmocka_unit_test(garbage_messages),
        cmocka_unit_test(hostile_window),
        cmocka_unit_test(other_clients_pool_ids),
        cmocka_unit_test(governor_relinquishes_under_pressure),
        cmocka_unit_test(notifies_systemd),
        cmocka_unit_test(metrics_port_taken),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
