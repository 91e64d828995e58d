/* SPDX-License-Identifier: MIT */
/*
 * test_tenants.c - one tenant cannot shut the others out: real tmemd
 * processes and real client processes of two unprivileged uids (TD_UID_A
 * attacks, TD_UID_B is its neighbour).
 *
 *   - uid A holds hundreds of connections that never say HELLO, reopening
 *     those the daemon drops: uid B still connects within 2 s and keeps
 *     its persistent pages;
 *   - uid A fills persistent pools from several clients: it stops at its
 *     uid's share, and uid B (and root) still connect within 2 s and store
 *     and read back persistent pages, with lent memory and without;
 *   - an administrator lowers uid A's share (tmemctl set-uid) and ends one
 *     of its clients (tmemctl end): its pages are freed;
 *   - with no share at all, uid A fills the daemon: others still connect.
 *
 * Needs root (to become the two uids): skipped (exit 77) otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

static const tmem_uuid_t NOUUID = { 0, 0 };

/* Has the parent written to the pipe (the child's signal to stop)? */
static bool told_to_stop(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    return poll(&p, 1, 0) > 0;
}

/* ------------------------------------------------------------------------
 * The neighbour (uid B): connects within 2 s, stores and reads back
 * persistent pages.  Exit 0, or a code saying what failed.
 * ---------------------------------------------------------------------- */
struct neighbour {
    const char *sock;
    uint32_t pages;
};

static int neighbour_main(void *arg)
{
    const struct neighbour *nb = arg;
    uint64_t t0 = td_now_ms();
    tmem_client_t *c = NULL;
    while (!c && td_now_ms() - t0 < 2000) {
        c = tmem_connect(nb->sock, "neighbour");
        if (!c)
            td_sleep_ms(20);       /* a refusal is an answer: the user tries again */
    }
    if (!c) {
        fprintf(stderr, "neighbour: no connection in 2 s: %s\n", strerror(errno));
        return 10;
    }
    if (nb->pages == 0) {       /* only the connection */
        fprintf(stderr, "neighbour: connected in %llu ms\n",
                (unsigned long long)(td_now_ms() - t0));
        tmem_client_close(c);
        return 0;
    }
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    if (p < 0) {
        fprintf(stderr, "neighbour: no persistent pool: %s\n", tmem_strerror(p));
        return 11;
    }
    uint8_t page[TMEM_PAGE_SIZE], got[TMEM_PAGE_SIZE];
    for (uint32_t i = 0; i < nb->pages; i++) {
        tt_fill(page, TT_RANDOM, 5000 + i);
        int rc = tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), i, page);
        if (rc != 0) {
            fprintf(stderr, "neighbour: persistent put %u of %u refused: %s\n", i, nb->pages,
                    tmem_strerror(rc));
            return 12;
        }
    }
    for (uint32_t i = 0; i < nb->pages; i++) {
        tt_fill(page, TT_RANDOM, 5000 + i);
        int rc = tmem_get_page(c, (uint32_t)p, tt_oid(2, 0, 0), i, got);
        if (rc != 0 || memcmp(page, got, sizeof(page)) != 0) {
            fprintf(stderr, "neighbour: page %u: %s\n", i, rc ? tmem_strerror(rc) : "wrong data");
            return 13;
        }
    }
    uint64_t ms = td_now_ms() - t0;
    fprintf(stderr, "neighbour: connected, %u persistent pages stored and read back in %llu ms\n",
            nb->pages, (unsigned long long)ms);
    tmem_client_close(c);
    return 0;
}

static void run_neighbour(const char *sock, uint32_t pages)
{
    struct neighbour nb = { sock, pages };
    pid_t pid = td_spawn_as(TD_UID_B, neighbour_main, &nb);
    assert_true(pid > 0);
    assert_int_equal(td_wait_child(pid), 0);
}

static td_t start_shared_daemon(const char *const *extra)
{
    td_t d;
    assert_int_equal(td_start(&d, extra), 0);
    assert_int_equal(td_open_to_all(&d), 0);
    return d;
}

/* ------------------------------------------------------------------------
 * 1. Connections that never say HELLO
 * ---------------------------------------------------------------------- */
#define SILENT_MAX 500

struct silent {
    const char *sock;
    int stop_fd, ready_fd;
};

static int connect_raw(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Holds up to SILENT_MAX silent connections, reopening each the daemon
 * ends, until told to stop.  Exit 0; prints how many it opened. */
static int silent_main(void *arg)
{
    const struct silent *s = arg;
    static int fds[SILENT_MAX];
    for (int i = 0; i < SILENT_MAX; i++)
        fds[i] = connect_raw(s->sock);
    if (write(s->ready_fd, "r", 1) != 1)
        return 20;
    unsigned long opened = SILENT_MAX;
    while (!told_to_stop(s->stop_fd)) {
        for (int i = 0; i < SILENT_MAX; i++) {
            struct pollfd p = { fds[i], POLLIN | POLLRDHUP, 0 };
            if (fds[i] >= 0 && poll(&p, 1, 0) == 0)
                continue;       /* still open and silent */
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = connect_raw(s->sock);
            opened++;
        }
        td_sleep_ms(5);
    }
    fprintf(stderr, "attacker: %lu silent connections opened\n", opened);
    return 0;
}

static void silent_connections(bool window)
{
    const char *lend[] = { "--set", window ? "memory.lend=false" : "memory.lend=true", NULL };
    td_t d = start_shared_daemon(lend);
    int stop[2], ready[2];
    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(ready), 0);
    struct silent s = { d.sock, stop[0], ready[1] };
    pid_t a = td_spawn_as(TD_UID_A, silent_main, &s);
    assert_true(a > 0);
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    td_sleep_ms(300);              /* the attack in full */
    run_neighbour(d.sock, 256);
    td_sleep_ms(1200);             /* past the HELLO timeout: the attacker reopens */
    run_neighbour(d.sock, 256);
    assert_int_equal(write(stop[1], "s", 1), 1);
    assert_int_equal(td_wait_child(a), 0);
    close(stop[1]);
    struct tmw_ctl_stats st;
    assert_int_equal(tmc_stats(d.ctl, &st), 0);
    assert_true(st.refused_conn > 0);   /* the attacker's surplus was refused */
    close(stop[0]);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(td_stop(&d), 0);
}

/* The bound on one uid's connections still in their HELLO does not refuse
 * an honest burst: 32 processes of uid B connect at once, with their
 * HELLOs, and every one is served. */
struct burst {
    const char *sock;
};

static int burst_main(void *arg)
{
    const struct burst *b = arg;
    pid_t kids[32];
    for (int i = 0; i < 32; i++) {
        if ((kids[i] = fork()) == 0) {
            tmem_client_t *c = tmem_connect(b->sock, "burst");
            if (!c)
                _exit(1);
            td_sleep_ms(300);          /* all of them connected at once */
            tmem_client_close(c);
            _exit(0);
        }
    }
    int refused = 0;
    for (int i = 0; i < 32; i++) {
        int st;
        refused += kids[i] < 0 || waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) ||
                   WEXITSTATUS(st) != 0;
    }
    fprintf(stderr, "burst: %d of 32 connections refused\n", refused);
    return refused ? 40 : 0;
}

static void burst_of_one_uid(void **state)
{
    (void)state;
    td_t d = start_shared_daemon(NULL);
    struct burst b = { d.sock };
    pid_t p = td_spawn_as(TD_UID_B, burst_main, &b);
    assert_true(p > 0);
    assert_int_equal(td_wait_child(p), 0);
    assert_int_equal(td_stop(&d), 0);
}

/* state: "lend" or "window" */
static void silent_connections_case(void **state)
{
    silent_connections(strcmp(*state, "window") == 0);
}

/* ------------------------------------------------------------------------
 * 2. Persistent memory
 * ---------------------------------------------------------------------- */
#define FLOOD_CLIENTS 6

struct flood {
    const char *sock;
    int stop_fd, ready_fd;
};

/* Opens FLOOD_CLIENTS clients with a persistent pool each and puts
 * incompressible pages round robin until 64 puts in a row are refused,
 * says so, then keeps putting until told to stop (the pages stay). */
static int flood_main(void *arg)
{
    const struct flood *f = arg;
    tmem_client_t *c[FLOOD_CLIENTS];
    int pool[FLOOD_CLIENTS];
    for (int i = 0; i < FLOOD_CLIENTS; i++) {
        char name[32];
        snprintf(name, sizeof(name), "flood%d", i);
        if (!(c[i] = tmem_connect(f->sock, name)) ||
            (pool[i] = tmem_new_pool(c[i], NOUUID, TMEM_POOL_PERSIST)) < 0)
            return 30;
    }
    uint8_t page[TMEM_PAGE_SIZE];
    uint32_t idx = 0, refused_in_row = 0, stored = 0;
    /* (a client an administrator ended stays ended: its puts fail, it is
     * not closed twice) */
    bool said = false;
    while (!told_to_stop(f->stop_fd)) {
        int k = (int)(idx % FLOOD_CLIENTS);
        tt_fill(page, TT_RANDOM, idx);
        int rc = tmem_put_page(c[k], (uint32_t)pool[k], tt_oid(1, 0, 0), idx / FLOOD_CLIENTS,
                               page);
        idx++;
        if (rc == 0) {
            stored++;
            refused_in_row = 0;
        } else if (rc == -ENOTCONN && said) {
            /* the administrator ended this client: its pages are gone, and
             * a get says so rather than return what is left of them */
            uint8_t got[TMEM_PAGE_SIZE];
            int g = tmem_get_page(c[k], (uint32_t)pool[k], tt_oid(1, 0, 0), 0, got);
            if (g != -ENOTCONN) {
                fprintf(stderr, "attacker: a get after its end: %d\n", g);
                return 34;
            }
            continue;
        } else if (rc != -ENOMEM && rc != -EDQUOT) {
            fprintf(stderr, "attacker: put: %s\n", tmem_strerror(rc));
            return 31;
        } else if (++refused_in_row >= 64 && !said) {
            said = true;
            fprintf(stderr, "attacker: %u persistent pages stored, then refused (%s)\n",
                    stored, tmem_strerror(rc));
            if (write(f->ready_fd, "r", 1) != 1)
                return 32;
        }
        if (said)
            td_sleep_ms(1);        /* still asking, as an attacker would */
        if (idx > 400000)
            return 33;          /* never refused: no bound at all */
    }
    for (int i = 0; i < FLOOD_CLIENTS; i++)
        tmem_client_close(c[i]);
    return 0;
}

/* uid A's persistent memory as the daemon counts it: lent persistent
 * units, and its clients' persistent pages in the daemon's engine. */
static uint64_t uid_persistent_bytes(const td_t *d, uint32_t uid)
{
    struct tmw_ctl_client *v;
    size_t n;
    assert_int_equal(tmc_clients(d->ctl, &v, &n), 0);
    uint64_t b = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].uid == uid)
            b += v[i].lent ? v[i].lent_bytes[1] : v[i].info.persistent_pages * TMEM_PAGE_SIZE;
    free(v);
    return b;
}

static uint32_t first_client_of(const td_t *d, uint32_t uid)
{
    struct tmw_ctl_client *v;
    size_t n;
    assert_int_equal(tmc_clients(d->ctl, &v, &n), 0);
    uint32_t id = 0;
    for (size_t i = 0; i < n && !id; i++)
        if (v[i].uid == uid)
            id = v[i].info.id;
    free(v);
    return id;
}

static bool client_present(const td_t *d, uint32_t id)
{
    struct tmw_ctl_client *v;
    size_t n;
    assert_int_equal(tmc_clients(d->ctl, &v, &n), 0);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= v[i].info.id == id;
    free(v);
    return found;
}

/* share_mib: uid A's share named in the configuration (memory.
 * uid_persistent), or 0 for the default (half of the daemon's 64 MiB). */
static void persistent_flood(bool window, unsigned share_mib)
{
    char named[64];
    snprintf(named, sizeof(named), "memory.uid_persistent=%u:%uM", TD_UID_A, share_mib);
    const char *args[] = { "--set", window ? "memory.lend=false" : "memory.lend=true",
                           share_mib ? "--set" : NULL, named, NULL };
    td_t d = start_shared_daemon(args);
    int stop[2], ready[2];
    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(ready), 0);
    struct flood f = { d.sock, stop[0], ready[1] };
    pid_t a = td_spawn_as(TD_UID_A, flood_main, &f);
    assert_true(a > 0);
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    uint64_t held = uid_persistent_bytes(&d, TD_UID_A);
    uint64_t share = (share_mib ? share_mib : 32ull) << 20;
    fprintf(stderr, "uid A holds %llu KiB of persistent memory (its share %llu KiB)\n",
            (unsigned long long)(held >> 10), (unsigned long long)(share >> 10));
    assert_true(held <= share);
    assert_true(held >= share / 2);          /* it did get its share */

    /* its neighbour and root connect and store, while it goes on asking */
    run_neighbour(d.sock, 1024);            /* 4 MiB of incompressible pages */
    tmem_client_t *root = tmem_connect(d.sock, "root");
    assert_non_null(root);
    int rp = tmem_new_pool(root, NOUUID, TMEM_POOL_PERSIST);
    assert_true(rp >= 0);
    uint8_t page[TMEM_PAGE_SIZE];
    tt_fill(page, TT_RANDOM, 1);
    assert_int_equal(tmem_put_page(root, (uint32_t)rp, tt_oid(3, 0, 0), 0, page), 0);
    tmem_client_close(root);

    /* an administrator lowers its share (its pages above stay; nothing
     * more is granted) and ends one of its clients: that one is gone, its
     * pages freed, and the others cannot take the room again */
    assert_int_equal(tmc_set_uid(d.ctl, TD_UID_A, 4ull << 20, 0), 0);
    uint32_t victim = first_client_of(&d, TD_UID_A);
    assert_true(victim > 0);
    assert_int_equal(tmc_end_client(d.ctl, victim), 0);
    uint64_t t0 = td_now_ms();
    while (td_now_ms() - t0 < 5000 && client_present(&d, victim))
        td_sleep_ms(20);
    assert_false(client_present(&d, victim));
    assert_int_equal(tmc_end_client(d.ctl, victim), -ENOENT);
    uint64_t after = uid_persistent_bytes(&d, TD_UID_A);
    td_sleep_ms(500);                          /* the attacker goes on asking */
    uint64_t later = uid_persistent_bytes(&d, TD_UID_A);
    fprintf(stderr, "after tmemctl set-uid 4M and end: uid A holds %llu KiB, then %llu KiB\n",
            (unsigned long long)(after >> 10), (unsigned long long)(later >> 10));
    assert_true(after < held && later <= after);
    assert_int_equal(tmc_set_uid(d.ctl, TD_UID_A, 0, 1), 0);       /* back to the default */
    assert_int_equal(tmc_set_uid(d.ctl, TD_UID_A, 1ull << 40, 0), -EINVAL);

    assert_int_equal(write(stop[1], "s", 1), 1);
    assert_int_equal(td_wait_child(a), 0);
    close(stop[1]);
    close(stop[0]);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(td_stop(&d), 0);
}

/* state: { window, share_mib } as persistent_flood's */
struct flood_case {
    bool window;
    unsigned share_mib;
};

static void persistent_flood_case(void **state)
{
    const struct flood_case *fc = *state;
    persistent_flood(fc->window, fc->share_mib);
}

/* With no share at all (memory.uid_persistent_max=0), uid A fills the
 * whole daemon with persistent pages: another uid, and root, still connect
 * (a client's own structure is never crowded out by pages). */
static void connect_when_full(void **state)
{
    (void)state;
    const char *args[] = { "--set", "memory.lend=false", "--set", "memory.uid_persistent_max=0",
                           NULL };
    td_t d = start_shared_daemon(args);
    int stop[2], ready[2];
    assert_int_equal(pipe(stop), 0);
    assert_int_equal(pipe(ready), 0);
    struct flood f = { d.sock, stop[0], ready[1] };
    pid_t a = td_spawn_as(TD_UID_A, flood_main, &f);
    assert_true(a > 0);
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    struct tmw_ctl_stats st;
    assert_int_equal(tmc_stats(d.ctl, &st), 0);
    fprintf(stderr, "uid A holds %llu KiB of persistent memory of %llu KiB\n",
            (unsigned long long)(uid_persistent_bytes(&d, TD_UID_A) >> 10),
            (unsigned long long)(st.gov_max >> 10));
    run_neighbour(d.sock, 0);
    tmem_client_t *root = tmem_connect(d.sock, "root");
    assert_non_null(root);
    tmem_client_close(root);
    assert_int_equal(write(stop[1], "s", 1), 1);
    assert_int_equal(td_wait_child(a), 0);
    close(stop[0]);
    close(stop[1]);
    close(ready[0]);
    close(ready[1]);
    assert_int_equal(td_stop(&d), 0);
}

int main(void)
{
    if (!td_can_switch_uid()) {
        fprintf(stderr, "test_tenants: needs root (to run clients of two uids): skipped\n");
        return TD_SKIP;
    }
    signal(SIGPIPE, SIG_IGN);
    /* with lent memory and without; the default share, and a named one */
    static struct flood_case floods[] = { { false, 0 }, { true, 0 }, { false, 12 },
                                          { true, 12 } };
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(burst_of_one_uid),
        { "silent_connections_lend", silent_connections_case, NULL, NULL, "lend" },
        { "silent_connections_window", silent_connections_case, NULL, NULL, "window" },
        { "persistent_flood_lend", persistent_flood_case, NULL, NULL, &floods[0] },
        { "persistent_flood_window", persistent_flood_case, NULL, NULL, &floods[1] },
        { "named_share_lend", persistent_flood_case, NULL, NULL, &floods[2] },
        { "named_share_window", persistent_flood_case, NULL, NULL, &floods[3] },
        cmocka_unit_test(connect_when_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
