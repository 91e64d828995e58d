/* SPDX-License-Identifier: MIT */
/*
 * test_state.c - tmemd's state file: clients' persistent pages across a
 * clean restart (docs/protocol.md, "Restart with a state file").
 *
 * With real daemons (td_harness): a client's persistent pages come back
 * byte-exact after a restart, to the same process reconnecting and to
 * another process of the same user with the same name; ephemeral pages do
 * not; another name or another uid does not adopt them; the file is gone
 * once loaded (a crash afterwards brings nothing back); truncated, flipped
 * and untrusted files are refused, renamed to PATH.bad, and the daemon
 * starts with at most the clients verified before the damage; a client too
 * big for max_memory is left out and named in the log; clients sharing a
 * uid and name are not saved; park_timeout releases unclaimed clients; and
 * a restart under two clients hammering puts and gets loses no put that
 * returned 0 and serves no wrong page (a request the daemon carried out is
 * never reported as failed, and one it did not is never carried out).
 *
 * Page contents derive from the seed (printed; replay: test_state --seed N).
 * The uid checks run as root (CI does) and are skipped otherwise.  Every
 * daemon must stop with exit status 0 (its engine passed tmem_check()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem_test.h"

#define NOBODY 65534
static const tmem_uuid_t NOUUID = { 0, 0 };
static uint64_t seed;
static td_t D;                  /* global: a failed test's daemon is stopped too */

static int stop_daemon(void **state)
{
    (void)state;
    if (D.dir[0]) {
        td_stop(&D);            /* also after td_kill: removes the directory */
        memset(&D, 0, sizeof(D));
    }
    return 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * The daemon and its files
 * ---------------------------------------------------------------------- */
static char state_path[300], bad_path[310], state_arg[320];

/* The options of a daemon with (or without) the state file. */
static const char *const *with_state(void)
{
    static const char *args[3];
    args[0] = "--state-file";
    args[1] = state_path;
    args[2] = NULL;
    return args;
}

static const char *const no_state[] = { NULL };

static void start(const char *const *extra)
{
    assert_int_equal(td_start(&D, extra), 0);
    snprintf(state_path, sizeof(state_path), "%s/state", D.dir);
    snprintf(bad_path, sizeof(bad_path), "%s.bad", state_path);
    snprintf(state_arg, sizeof(state_arg), "daemon.state_file=%s", state_path);
}

/* Starts a daemon with the state file in its directory (the path is known
 * only once the directory exists: the first start has none, and a restart
 * at once gives it one). */
static void start_with_state(const char *const *more)
{
    start(more);
    const char *args[16] = { "--state-file", state_path };
    int n = 2;
    for (int i = 0; more && more[i] && n < 15; i++)
        args[n++] = more[i];
    args[n] = NULL;
    assert_int_equal(td_restart(&D, args), 0);
}

static void restart(const char *const *extra)
{
    assert_int_equal(td_restart(&D, extra), 0);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The loaded file is removed once the daemon serves, just after its
 * sockets appear: wait for that. */
static void wait_removed(const char *path)
{
    for (int i = 0; i < 1000 && exists(path); i++)
        sleep_ms(10);
    assert_false(exists(path));
}

static uint32_t parked(void)
{
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    return s.parked;
}

/* The daemon's log so far (malloc'ed; "" with TD_VERBOSE, where it goes to
 * stderr). */
static char *daemon_log(void)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/tmemd.log", D.dir);
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    assert_non_null(text);
    if (f) {
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    return text;
}

static void expect_log(const char *what)
{
    if (getenv("TD_VERBOSE"))
        return;
    char *log = daemon_log();
    if (!strstr(log, what))
        fail_msg("expected \"%s\" in the daemon's log:\n%s", what, log);
    free(log);
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return p;
}

static void write_file(const char *path, const void *p, size_t len, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

/* ------------------------------------------------------------------------
 * Pages that say what they are
 * ---------------------------------------------------------------------- */
static uint64_t tag_of(uint64_t salt, uint32_t index)
{
    return seed * 0x9e3779b97f4a7c15ull + salt * 1000003u + index;
}

/* Mostly incompressible pages, some compressible and some zero. */
static void fill(uint8_t *page, uint64_t salt, uint32_t index)
{
    enum tt_kind kind = index % 7 == 3 ? TT_TEXT : index % 11 == 5 ? TT_ZERO : TT_RANDOM;
    tt_fill(page, kind, tag_of(salt, index));
}

static const tmem_oid_t OID = { { 7, 8, 9 } };

static void put_pages(tmem_client_t *c, int pool, uint64_t salt, uint32_t n)
{
    uint8_t page[PG];
    for (uint32_t i = 0; i < n; i++) {
        fill(page, salt, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pool, OID, i, page), 0);
    }
}

/* How many of the n pages are not back byte-exact (for children too). */
static uint32_t bad_pages(tmem_client_t *c, int pool, uint64_t salt, uint32_t n)
{
    uint8_t page[PG], want[PG];
    uint32_t bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        fill(want, salt, i);
        memset(page, 0xa5, sizeof(page));
        if (tmem_get_page(c, (uint32_t)pool, OID, i, page) != 0 || memcmp(page, want, PG) != 0)
            bad++;
    }
    return bad;
}

static tmem_client_t *connect_as(const char *name)
{
    tmem_client_t *c = tmem_connect(D.sock, name);
    if (!c)
        fail_msg("tmem_connect(%s, %s): %s", D.sock, name, strerror(errno));
    return c;
}

/* A client with a persistent pool of n pages of salt; returns the pool. */
static int client_with_pages(tmem_client_t *c, uint32_t flags, uint64_t salt, uint32_t n)
{
    int pool = tmem_new_pool(c, NOUUID, flags);
    assert_true(pool >= 0);
    put_pages(c, pool, salt, n);
    return pool;
}

/* Runs fn in a child process (as uid if >= 0); its exit status. */
static int in_child(int uid, int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (uid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 ||
                         setuid((uid_t)uid) != 0))
            _exit(125);
        _exit(fn(arg));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 126;
}

/* ------------------------------------------------------------------------
 * Restart keeps persistent pages, for their owner only
 * ---------------------------------------------------------------------- */
struct probe {
    const char *name;
    int pool;
    uint64_t salt;
    uint32_t n;
    int expect;                 /* 0: every page back; else the get's result */
};

/* In a child: connects as p->name and checks p->pool. */
static int probe_child(void *arg)
{
    struct probe *p = arg;
    tmem_client_t *c = tmem_connect(D.sock, p->name);
    if (!c)
        return 10;
    int rc;
    if (p->expect == 0) {
        rc = bad_pages(c, p->pool, p->salt, p->n) == 0 ? 0 : 11;
    } else {
        uint8_t page[PG];
        rc = tmem_get_page(c, (uint32_t)p->pool, OID, 0, page) == p->expect ? 0 : 12;
    }
    tmem_client_close(c);
    return rc;
}

static void restart_keeps_persistent_pages(void **state)
{
    (void)state;
    enum { NP = 300, NK = 200, NE = 50 };
    start_with_state(NULL);
    tmem_client_t *a = connect_as("keeper");
    int P = client_with_pages(a, TMEM_POOL_PERSIST, 1, NP);
    int E = client_with_pages(a, 0, 2, NE);
    int K = client_with_pages(a, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET, 3, NK);
    tmem_client_t *other = connect_as("other");   /* ephemeral only: not saved */
    client_with_pages(other, 0, 4, 10);

    restart(with_state());
    wait_removed(state_path);
    assert_false(exists(bad_path));
    expect_log("saved 1 clients");
    expect_log("restored 1 clients");
    assert_int_equal(parked(), 1);
    /* the old connections are over */
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(a, (uint32_t)P, OID, 0, page), -ENOTCONN);
    tmem_client_close(a);
    tmem_client_close(other);

    /* another name of the same user, and another user with the same name,
     * get clients of their own: no pools */
    tmem_client_t *b = connect_as("keeper2");
    assert_int_equal(tmem_get_page(b, (uint32_t)P, OID, 0, page), -ENODEV);
    tmem_client_close(b);
    if (geteuid() == 0) {
        assert_int_equal(chmod(D.dir, 0755), 0);
        struct probe p = { "keeper", P, 1, NP, -ENODEV };
        assert_int_equal(in_child(NOBODY, probe_child, &p), 0);
    } else {
        printf("restart_keeps_persistent_pages: not root: the other-uid check is skipped\n");
    }
    td_wait_connections(&D, 0);
    assert_int_equal(parked(), 1);

    /* the owner reconnects: pools at their ids, persistent pages back,
     * ephemeral ones gone (their pool is there, empty) */
    a = connect_as("keeper");
    assert_int_equal(parked(), 0);
    assert_int_equal(bad_pages(a, P, 1, NP), 0);
    assert_int_equal(bad_pages(a, K, 3, NK), 0);
    for (uint32_t i = 0; i < NE; i++)
        assert_int_equal(tmem_get_page(a, (uint32_t)E, OID, i, page), -ENOENT);
    /* the exclusive gets took P's pages; K keeps its own */
    assert_int_equal(tmem_get_page(a, (uint32_t)P, OID, 0, page), -ENOENT);

    /* a second restart: the adopted client is saved again, and another
     * process of the same user adopts it */
    restart(with_state());
    wait_removed(state_path);
    tmem_client_close(a);
    struct probe p = { "keeper", K, 3, NK, 0 };
    assert_int_equal(in_child(-1, probe_child, &p), 0);
    /* it left: its pages went with it */
    td_wait_connections(&D, 0);
    assert_int_equal(parked(), 0);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* A client restored from the state file and adopted by its owner is still
 * in its uid's persistent share: it holds its share already, so a new
 * persistent page is refused (-EDQUOT), as before the restart. */
static void restored_client_keeps_its_share(void **state)
{
    (void)state;
    const char *share[] = { "--set", "memory.uid_persistent_max=1M", NULL };
    start_with_state(share);
    tmem_client_t *a = connect_as("tenant");
    int P = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(P >= 0);
    uint8_t page[PG];
    uint32_t n = 0;
    int rc = 0;
    for (; n < 1024; n++) {
        fill(page, 11, n);
        if ((rc = tmem_put_page(a, (uint32_t)P, OID, n, page)) != 0)
            break;
    }
    assert_int_equal(rc, -EDQUOT);
    assert_true(n > 0 && n <= 256);
    const char *args[] = { "--state-file", state_path, "--set", "memory.uid_persistent_max=1M",
                           NULL };
    restart(args);
    wait_removed(state_path);
    tmem_client_close(a);
    a = connect_as("tenant");
    assert_int_equal(parked(), 0);
    assert_int_equal(bad_pages(a, P, 11, n), 0);
    uint32_t more = 0;
    for (; more < 512; more++) {
        fill(page, 12, more);
        if ((rc = tmem_put_page(a, (uint32_t)P, OID, 100000 + more, page)) != 0)
            break;
    }
    printf("restored_client_keeps_its_share: %u pages held, %u more taken after the restart\n",
           n, more);
    assert_int_equal(rc, -EDQUOT);
    assert_true(more <= 1);
    tmem_client_close(a);
    td_wait_connections(&D, 0);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* The file is removed once loaded: a crash afterwards brings nothing back.
 * And a daemon started without the file restores nothing. */
static void crash_after_load_brings_nothing_back(void **state)
{
    (void)state;
    start_with_state(NULL);
    tmem_client_t *a = connect_as("crash");
    client_with_pages(a, TMEM_POOL_PERSIST, 5, 20);
    restart(with_state());
    wait_removed(state_path);
    assert_int_equal(parked(), 1);
    assert_int_equal(td_kill(&D), 0);
    restart(with_state());
    assert_int_equal(parked(), 0);
    expect_log("none (nothing to restore)");
    tmem_client_close(a);
    /* a crash loses persistent pages: the client has no pool */
    a = connect_as("crash");
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(a, 0, OID, 0, page), -ENODEV);
    tmem_client_close(a);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* ------------------------------------------------------------------------
 * Damaged files
 * ---------------------------------------------------------------------- */
/* Two clients' file: "alpha" (pool 0, salt 11, 40 pages) then "beta"
 * (pool 0, salt 12, 30 pages), in some order.  Returns the file (malloc'ed)
 * and leaves a daemon running without the state file. */
static uint8_t *good_file(size_t *len)
{
    start_with_state(NULL);
    tmem_client_t *a = connect_as("alpha"), *b = connect_as("beta");
    client_with_pages(a, TMEM_POOL_PERSIST, 11, 40);
    client_with_pages(b, TMEM_POOL_PERSIST, 12, 30);
    restart(no_state);          /* writes the file; the new one leaves it */
    tmem_client_close(a);
    tmem_client_close(b);
    assert_true(exists(state_path));
    struct stat st;
    assert_int_equal(stat(state_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);      /* it holds the clients' data */
    return read_file(state_path, len);
}

/* Loads content as the state file (the daemon restarts with it); then
 * whoever was restored must be exact.  Returns how many were restored. */
static unsigned load_damaged(const uint8_t *content, size_t len, mode_t mode, bool expect_bad)
{
    unlink(bad_path);
    write_file(state_path, content, len, mode);
    restart(with_state());
    if (expect_bad) {
        assert_true(exists(bad_path));
        assert_false(exists(state_path));
        size_t blen;
        uint8_t *moved = read_file(bad_path, &blen);
        assert_int_equal(blen, len);                /* renamed, untouched */
        assert_memory_equal(moved, content, len);
        free(moved);
        expect_log("renamed to");
    } else {
        wait_removed(state_path);
        assert_false(exists(bad_path));
    }
    unsigned n = parked();
    /* each restored client is byte-exact; the others are fresh */
    static const struct { const char *name; uint64_t salt; uint32_t n; } who[] = {
        { "alpha", 11, 40 }, { "beta", 12, 30 },
    };
    unsigned found = 0;
    for (int i = 0; i < 2; i++) {
        tmem_client_t *c = connect_as(who[i].name);
        uint8_t page[PG];
        int rc = tmem_pool_is_shared(c, 0);
        if (rc == -ENODEV) {
            assert_int_equal(tmem_get_page(c, 0, OID, 0, page), -ENODEV);
        } else {
            assert_int_equal(rc, 0);
            assert_int_equal(bad_pages(c, 0, who[i].salt, who[i].n), 0);
            found++;
        }
        tmem_client_close(c);
    }
    assert_int_equal(found, n);
    td_wait_connections(&D, 0);
    /* back to a daemon without the state file (that one writes none: its
     * clients left) */
    restart(no_state);
    unlink(state_path);
    return n;
}

static void damaged_files_are_refused(void **state)
{
    (void)state;
    size_t len;
    uint8_t *good = good_file(&len);
    tt_rng rng;
    tt_seed(&rng, seed ^ 0xbadf11e);

    /* the good file itself: both back, the file removed */
    assert_int_equal(load_damaged(good, len, 0600, false), 2);

    /* truncated: empty, inside the header, inside the first record, just
     * before the end */
    size_t cuts[] = { 0, 10, 32 + 112 + 100, len - 1, (size_t)tt_below(&rng, len) };
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        printf("  truncated to %zu of %zu bytes\n", cuts[i], len);
        unsigned n = load_damaged(good, cuts[i], 0600, true);
        if (cuts[i] < 32 + 112 + 4096)
            assert_int_equal(n, 0);     /* nothing was whole */
        if (cuts[i] == len - 1)
            assert_int_equal(n, 2);     /* both records verified: kept */
    }
    /* one flipped byte anywhere: refused; never a wrong page */
    uint8_t *bad = malloc(len);
    assert_non_null(bad);
    size_t in_second = len - 48 - 5 * 4096;     /* the second record's stream */
    size_t spots[] = { 3, 20, 32 + 5, 32 + 112 + 50, in_second, len - 10,
                       (size_t)tt_below(&rng, len), (size_t)tt_below(&rng, len),
                       (size_t)tt_below(&rng, len) };
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        memcpy(bad, good, len);
        bad[spots[i]] ^= (uint8_t)(1u << tt_below(&rng, 8));
        printf("  byte %zu of %zu flipped\n", spots[i], len);
        unsigned n = load_damaged(bad, len, 0600, true);
        if (spots[i] < 32 + 112)
            assert_int_equal(n, 0);
        if (spots[i] == in_second)
            assert_int_equal(n, 1);     /* the first record, verified whole, is kept */
        if (spots[i] >= len - 48)
            assert_int_equal(n, 2);     /* the trailer: every record was kept */
    }
    /* bytes after the end */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, good, len);
    longer[len] = 0;
    assert_int_equal(load_damaged(longer, len + 1, 0600, true), 2);
    /* a file others may write is not trusted */
    assert_int_equal(load_damaged(good, len, 0666, true), 0);
    expect_log("writable by others");
    free(longer);
    free(bad);
    free(good);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* ------------------------------------------------------------------------
 * Limits and ambiguity
 * ---------------------------------------------------------------------- */
static void client_too_big_is_left_out(void **state)
{
    (void)state;
    enum { BIG = 4096 };        /* 16 MiB, incompressible */
    start_with_state(NULL);
    tmem_client_t *big = connect_as("big"), *small = connect_as("small");
    int pb = tmem_new_pool(big, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pb >= 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < BIG; i++) {
        tt_fill(page, TT_RANDOM, tag_of(21, i));
        assert_int_equal(tmem_put_page(big, (uint32_t)pb, OID, i, page), 0);
    }
    int ps = client_with_pages(small, TMEM_POOL_PERSIST, 22, 16);
    const char *args[] = { "--state-file", state_path, "--max-memory", "4M", NULL };
    restart(args);
    wait_removed(state_path);           /* the file was sound */
    assert_false(exists(bad_path));
    expect_log("client uid");
    expect_log("\"big\" NOT restored");
    expect_log("do not fit in max_memory");
    assert_int_equal(parked(), 1);
    tmem_client_close(big);
    tmem_client_close(small);
    small = connect_as("small");
    assert_int_equal(bad_pages(small, ps, 22, 16), 0);
    big = connect_as("big");
    assert_int_equal(tmem_get_page(big, (uint32_t)pb, OID, 0, page), -ENODEV);
    tmem_client_close(small);
    tmem_client_close(big);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

static void same_uid_and_name_are_not_saved(void **state)
{
    (void)state;
    start_with_state(NULL);
    tmem_client_t *t1 = connect_as("twin"), *t2 = connect_as("twin"), *s = connect_as("solo");
    client_with_pages(t1, TMEM_POOL_PERSIST, 31, 5);
    client_with_pages(t2, TMEM_POOL_PERSIST, 32, 5);
    int ps = client_with_pages(s, TMEM_POOL_PERSIST, 33, 5);
    restart(with_state());
    wait_removed(state_path);
    expect_log("ambiguous");
    assert_int_equal(parked(), 1);
    tmem_client_close(t1);
    tmem_client_close(t2);
    tmem_client_close(s);
    s = connect_as("solo");
    assert_int_equal(bad_pages(s, ps, 33, 5), 0);
    tmem_client_close(s);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

static void park_timeout_releases_unclaimed(void **state)
{
    (void)state;
    const char *more[] = { "--set", "daemon.park_timeout=1", NULL };
    start_with_state(more);
    tmem_client_t *a = connect_as("late");
    client_with_pages(a, TMEM_POOL_PERSIST, 41, 8);
    const char *args[] = { "--state-file", state_path, "--set", "daemon.park_timeout=1", NULL };
    restart(args);
    tmem_client_close(a);
    /* parked at the load; released a second later (the check runs about
     * once a second: wait up to 30 s) */
    uint32_t n = 1;
    for (int i = 0; i < 300 && (n = parked()) != 0; i++)
        sleep_ms(100);
    assert_int_equal(n, 0);
    expect_log("unclaimed for 1 s (park_timeout)");
    a = connect_as("late");
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(a, 0, OID, 0, page), -ENODEV);
    tmem_client_close(a);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

static void bad_state_file_option(void **state)
{
    (void)state;
    td_t d;
    const char *rel[] = { "--state-file", "relative/state", NULL };
    assert_int_equal(td_start(&d, rel), -1);     /* prints why; the directory stays */
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d.dir);
    assert_int_equal(system(cmd), 0);
}

/* ------------------------------------------------------------------------
 * A restart under load
 * ---------------------------------------------------------------------- */
#define HKEYS   384
#define HROUNDS 2               /* restarts */

struct hammer {
    int id;
    pthread_t thread;
    _Atomic uint64_t ops;           /* since the last (re)connection */
    _Atomic int reconnects;
    _Atomic int stop;
    _Atomic int failed;             /* fail is written */
    /* results, read after the join */
    uint64_t puts_ok, gets_ok, notconn, verified;
    char fail[256];
    /* the model: version 0 absent, else the page of (id, key, version) */
    uint32_t version[HKEYS];
    bool unknown[HKEYS];            /* an outcome the model cannot tell */
};

static void hfill(uint8_t *page, int id, uint32_t key, uint32_t version)
{
    tt_fill(page, key % 5 == 0 ? TT_TEXT : TT_RANDOM,
            tag_of(100 + (uint64_t)id, key) ^ ((uint64_t)version << 40));
}

static void hfail(struct hammer *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void hfail(struct hammer *h, const char *fmt, ...)
{
    if (h->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(h->fail, sizeof(h->fail), fmt, ap);
    va_end(ap);
    atomic_store(&h->failed, 1);
}

static tmem_client_t *hconnect(struct hammer *h, char *name)
{
    for (int i = 0; i < 6000; i++) {        /* 60 s */
        tmem_client_t *c = tmem_connect(D.sock, name);
        if (c)
            return c;
        sleep_ms(10);
    }
    hfail(h, "hammer %d: cannot reconnect: %s", h->id, strerror(errno));
    return NULL;
}

/* One get of key k against the model; -ENOTCONN passes through. */
static int hget(struct hammer *h, tmem_client_t *c, uint32_t k)
{
    uint8_t page[PG], want[PG];
    int rc = tmem_get_page(c, 0, OID, k, page);
    if (rc == -ENOTCONN || h->unknown[k]) {
        if (rc == 0)
            h->unknown[k] = false;      /* exclusive: gone now */
        if (rc == 0 || rc == -ENOENT)
            h->version[k] = 0;
        return rc;
    }
    if (h->version[k] == 0) {
        if (rc != -ENOENT)
            hfail(h, "hammer %d key %u: absent, but the get returned %d", h->id, k, rc);
        return rc;
    }
    if (rc != 0) {
        hfail(h, "hammer %d key %u: version %u lost (get %d)", h->id, k, h->version[k], rc);
        return rc;
    }
    hfill(want, h->id, k, h->version[k]);
    if (memcmp(page, want, PG) != 0)
        hfail(h, "hammer %d key %u: wrong data for version %u", h->id, k, h->version[k]);
    h->gets_ok++;
    h->version[k] = 0;                  /* an exclusive get takes it */
    return rc;
}

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    char name[32];
    snprintf(name, sizeof(name), "hammer-%d", h->id);
    tt_rng rng;
    tt_seed(&rng, seed + 77u * (uint64_t)h->id);
    tmem_client_t *c = hconnect(h, name);
    if (!c)
        return NULL;
    if (tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST) != 0) {
        hfail(h, "hammer %d: no pool 0", h->id);
        tmem_client_close(c);
        return NULL;
    }
    uint8_t page[PG];
    uint32_t next_version = 1;
    while (!atomic_load(&h->stop) && !h->fail[0]) {
        uint32_t k = (uint32_t)tt_below(&rng, HKEYS);
        int rc;
        if (tt_below(&rng, 3) != 0) {
            uint32_t v = next_version++;
            hfill(page, h->id, k, v);
            rc = tmem_put_page(c, 0, OID, k, page);
            if (rc == 0) {
                h->version[k] = v;
                h->unknown[k] = false;
                h->puts_ok++;
            } else if (rc != -ENOTCONN) {
                /* a refused duplicate put may have dropped the old copy */
                h->unknown[k] = true;
            }
        } else {
            rc = hget(h, c, k);
        }
        if (rc == -ENOTCONN) {
            /* the daemon restarts: whatever was not carried out is as it
             * was; reconnect and find the pool and the pages */
            h->notconn++;
            tmem_client_close(c);
            c = hconnect(h, name);
            if (!c)
                return NULL;
            if (tmem_pool_is_shared(c, 0) != 0) {
                hfail(h, "hammer %d: pool 0 not adopted after the restart", h->id);
                break;
            }
            atomic_store(&h->ops, 0);
            atomic_fetch_add(&h->reconnects, 1);
            continue;
        }
        atomic_fetch_add(&h->ops, 1);
    }
    /* every key as the model says */
    for (uint32_t k = 0; k < HKEYS && c && !h->fail[0]; k++) {
        if (hget(h, c, k) == -ENOTCONN)
            hfail(h, "hammer %d: the daemon went away during the final check", h->id);
        h->verified++;
    }
    if (c)
        tmem_client_close(c);
    return NULL;
}

static void wait_ops(struct hammer *hs, int n, int reconnects, uint64_t ops)
{
    for (int i = 0; i < 6000; i++) {        /* 60 s */
        bool all = true;
        for (int j = 0; j < n; j++)
            all &= atomic_load(&hs[j].reconnects) >= reconnects &&
                   atomic_load(&hs[j].ops) >= ops;
        bool failed = false;
        for (int j = 0; j < n; j++)
            failed |= atomic_load(&hs[j].failed) != 0;
        if (all || failed)
            return;
        sleep_ms(10);
    }
    fail_msg("the hammers made no progress in 60 s");
}

static void restart_under_load(void **state)
{
    (void)state;
    enum { NH = 2 };
    start_with_state(NULL);
    static struct hammer hs[NH];
    memset(hs, 0, sizeof(hs));
    for (int i = 0; i < NH; i++) {
        hs[i].id = i;
        assert_int_equal(pthread_create(&hs[i].thread, NULL, hammer_main, &hs[i]), 0);
    }
    for (int r = 0; r < HROUNDS; r++) {
        wait_ops(hs, NH, r, 2000);
        restart(with_state());
    }
    wait_ops(hs, NH, HROUNDS, 1000);
    for (int i = 0; i < NH; i++)
        atomic_store(&hs[i].stop, 1);
    for (int i = 0; i < NH; i++)
        pthread_join(hs[i].thread, NULL);
    for (int i = 0; i < NH; i++) {
        printf("  hammer %d: %llu puts ok, %llu gets ok, %llu -ENOTCONN, %llu keys checked\n",
               i, (unsigned long long)hs[i].puts_ok, (unsigned long long)hs[i].gets_ok,
               (unsigned long long)hs[i].notconn, (unsigned long long)hs[i].verified);
        if (hs[i].fail[0])
            fail_msg("%s", hs[i].fail);
        assert_int_equal(atomic_load(&hs[i].reconnects), HROUNDS);
        assert_int_equal(hs[i].verified, HKEYS);
    }
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

int main(int argc, char **argv)
{
    seed = tt_seed_from_args(argc, argv, "test_state");
    signal(SIGPIPE, SIG_IGN);
    /* the state file keeps the pools a daemon runs itself: its clients'
     * when it does not lend memory (a client with lent memory keeps its
     * own across a restart: test_lend) */
    td_window_mode = 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(restart_keeps_persistent_pages, stop_daemon),
        cmocka_unit_test_teardown(restored_client_keeps_its_share, stop_daemon),
        cmocka_unit_test_teardown(crash_after_load_brings_nothing_back, stop_daemon),
        cmocka_unit_test_teardown(damaged_files_are_refused, stop_daemon),
        cmocka_unit_test_teardown(client_too_big_is_left_out, stop_daemon),
        cmocka_unit_test_teardown(same_uid_and_name_are_not_saved, stop_daemon),
        cmocka_unit_test_teardown(park_timeout_releases_unclaimed, stop_daemon),
        cmocka_unit_test(bad_state_file_option),
        cmocka_unit_test_teardown(restart_under_load, stop_daemon),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
