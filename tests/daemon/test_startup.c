/* SPDX-License-Identifier: MIT */
/*
 * test_startup.c - what tmemd refuses or survives at start-up, with real
 * daemons (td_harness) and tmemd processes run directly: a second daemon
 * on the same socket paths stops at their locks, also while the first
 * one's listen backlogs are full, and the first keeps serving after the
 * second is gone; a daemon removes only the socket file it bound; a fixed
 * max_memory above MemTotal stops the start (with the figures), and the
 * figure used is logged; --config naming a device or a FIFO stops the
 * start at once; without --config the default file is read if it exists
 * and the embedded default used if not, and a FIFO as the state file neither blocks the start nor
 * is written over at stop; a forged state file's client name with control
 * characters reaches neither the log nor the client list raw, and its
 * weight or cap out of range is refused.
 *
 * Every daemon started with td_start must stop with exit status 0 (its
 * engine passed tmem_check()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem_test.h"

#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

static const tmem_uuid_t NOUUID = { 0, 0 };
static const tmem_oid_t OID = { { 1, 2, 3 } };

/* The running test's daemon, and a tmemd it ran directly: global, so that
 * a failed test's are stopped too (by cleanup). */
static td_t D;
static pid_t other = -1;
static char tmpdir[] = "/tmp/tmem-startup.XXXXXX";     /* the group's files */

static int cleanup(void **state)
{
    (void)state;
    if (other > 0) {
        kill(other, SIGKILL);
        waitpid(other, NULL, 0);
        other = -1;
    }
    td_window_mode = 0;
    unsetenv("TMEMD_CONFIG");
    if (D.pid > 0)
        kill(D.pid, SIGCONT);   /* a test may have stopped it */
    if (D.dir[0]) {
        td_stop(&D);
        memset(&D, 0, sizeof(D));
    }
    return 0;
}

/* A file's text, terminated ("" if there is none), in a buffer of its own
 * that the next call overwrites. */
static char *read_text(const char *path)
{
    static char text[1 << 20];
    text[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        text[n] = '\0';
        fclose(f);
    }
    return text;
}

/* Runs tmemd with args (NULL-terminated) directly, its stderr to log.
 * Its pid (also in other). */
static pid_t run_tmemd(const char *const *args, const char *log)
{
    const char *bin = getenv("TMEMD_BIN");
    if (!bin)
        bin = TMEMD_BIN;
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);       /* it dies with the test */
        if (!freopen("/dev/null", "w", stdout) || !freopen(log, "w", stderr))
            _exit(126);
        if (!getenv("TMEMD_CONFIG"))
            setenv("TMEMD_CONFIG", "", 1);      /* not the host's file */
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    other = pid;
    return pid;
}

/* Waits up to ms for the tmemd of run_tmemd to exit: its exit status, or
 * -1 if it still runs (it is killed) or died of a signal. */
static int wait_exit(pid_t pid, unsigned ms)
{
    uint64_t until = td_now_ms() + ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (td_now_ms() > until) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            other = -1;
            return -1;
        }
        td_sleep_ms(10);
    }
    other = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect_in(const char *text, const char *what, const char *where)
{
    if (!strstr(text, what))
        fail_msg("expected \"%s\" in %s:\n%s", what, where, text);
}

/* The daemon's log (DIR/tmemd.log) has what (not checked with TD_VERBOSE,
 * where the log goes to stderr). */
static void expect_log(const char *what)
{
    if (getenv("TD_VERBOSE"))
        return;
    char path[300];
    snprintf(path, sizeof(path), "%s/tmemd.log", D.dir);
    expect_in(read_text(path), what, "the daemon's log");
}

/* A put and a get through the daemon at ((const char **)arg)[0] as client
 * [1], in a tenant's process: 0, or what failed. */
static int put_get_main(void *arg)
{
    const char *const *a = arg;
    tmem_client_t *c = tmem_connect(a[0], a[1]);
    if (!c)
        return 2;
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t in[PG], out[PG];
    tt_fill(in, TT_RANDOM, 43);
    if (p < 0 || tmem_put_page(c, (uint32_t)p, OID, 0, in) != 0 ||
        tmem_get_page(c, (uint32_t)p, OID, 0, out) != 0 || memcmp(in, out, PG) != 0)
        return 3;
    tmem_client_close(c);
    return 0;
}

/* Two tenants where the test may switch uids (root), else two processes
 * of this uid. */
static uid_t tenant(uid_t uid)
{
    return td_can_switch_uid() ? uid : TD_UID_SELF;
}

/* client_works in a process of uid (the daemon's directory open to all). */
static void client_works_as(uid_t uid, const char *sock, const char *name)
{
    const char *a[] = { sock, name };
    pid_t p = td_spawn_as(uid, put_get_main, a);
    assert_true(p > 0);
    assert_int_equal(td_wait_child(p), 0);
}

/* A client that puts a page and gets it back through the daemon at sock. */
static void client_works(const char *sock, const char *name)
{
    tmem_client_t *c = tmem_connect(sock, name);
    if (!c)
        fail_msg("tmem_connect(%s, %s): %s", sock, name, strerror(errno));
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_true(p >= 0);
    uint8_t in[PG], out[PG];
    tt_fill(in, TT_RANDOM, 42);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, OID, 0, in), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, OID, 0, out), 0);
    assert_memory_equal(in, out, PG);
    tmem_client_close(c);
}

static ino_t inode_of(const char *path)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    return st.st_ino;
}

/* ------------------------------------------------------------------------
 * One daemon per socket path
 * ---------------------------------------------------------------------- */
/* Connects to path until its listen backlog is full (the daemon is
 * stopped: nothing is accepted); the descriptors go to fds. */
static size_t fill_backlog(const char *path, int *fds, size_t max)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    assert_true(len < sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, len + 1);
    size_t n = 0;
    while (n < max) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            assert_int_equal(errno, EAGAIN);
            close(fd);
            return n;
        }
        fds[n++] = fd;
    }
    fail_msg("%s: the backlog took %zu connections and is not full", path, n);
    return n;
}

/* A tenant that fills the client socket's backlog, says so on ready_fd,
 * holds the connections until a byte comes on stop_fd, then closes them.
 * 0, or 1. */
struct filler {
    const char *path;
    int ready_fd, stop_fd;
};

static int fill_main(void *arg)
{
    const struct filler *f = arg;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    static int fds[4096];
    size_t n = 0;
    while (n < 4096) {
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            close(fd);
            if (errno != EAGAIN)
                return 1;
            break;
        }
        fds[n++] = fd;
    }
    if (n == 4096 || write(f->ready_fd, "r", 1) != 1)
        return 1;
    char b;
    if (read(f->stop_fd, &b, 1) != 1)
        return 1;
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    return 0;
}

/* A second daemon on the same socket paths, started while the first one
 * is stopped with both listen backlogs full (connecting to them says
 * EAGAIN, as if nobody listened; a tenant of one uid filled the client
 * socket's): it refuses to start at once, naming the lock and the first
 * one's pid, and the first one's sockets stay its own and serve a tenant
 * of another uid. */
static void second_daemon_is_refused(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    assert_int_equal(td_open_to_all(&D), 0);
    client_works(D.sock, "first");
    ino_t sock_ino = inode_of(D.sock), ctl_ino = inode_of(D.ctl);

    enum { MAXFD = 4096 };
    static int fds[MAXFD];
    assert_int_equal(kill(D.pid, SIGSTOP), 0);
    int ready[2], stop[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(stop), 0);
    struct filler f = { D.sock, ready[1], stop[0] };
    pid_t filler = td_spawn_as(tenant(TD_UID_A), fill_main, &f);
    assert_true(filler > 0);
    char b;
    assert_int_equal(read(ready[0], &b, 1), 1);
    size_t n = fill_backlog(D.ctl, fds, MAXFD);     /* (the control socket: administrators) */

    char log[300];
    snprintf(log, sizeof(log), "%s/second.log", D.dir);
    const char *args[] = { "--socket", D.sock, "--control-socket", D.ctl, "--max-memory", "64M",
                           "--set", "metrics.port=0", "--set", "governor.enabled=false", NULL };
    uint64_t t0 = td_now_ms();
    int rc = wait_exit(run_tmemd(args, log), 2000);
    uint64_t took = td_now_ms() - t0;
    kill(D.pid, SIGCONT);
    for (size_t i = 0; i < n; i++)
        close(fds[i]);
    assert_int_equal(write(stop[1], "s", 1), 1);
    assert_int_equal(td_wait_child(filler), 0);
    close(ready[0]);
    close(ready[1]);
    close(stop[0]);
    close(stop[1]);
    char *text = read_text(log);
    if (rc <= 0)
        fail_msg("the second tmemd %s (%llu ms); its log:\n%s",
                 rc < 0 ? "did not exit within 2 s" : "exited 0",
                 (unsigned long long)took, text);
    char lock[300], pid[40];
    snprintf(lock, sizeof(lock), "%s.lock", D.sock);
    snprintf(pid, sizeof(pid), "(pid %d)", (int)D.pid);
    expect_in(text, lock, "the second tmemd's log");
    expect_in(text, pid, "the second tmemd's log");
    expect_in(text, "not starting", "the second tmemd's log");

    /* the first one's sockets are the files it bound, and serve (once it
     * has seen the ends of the backlog's connections: this uid's
     * connections still in their HELLO are bounded) */
    assert_int_equal(inode_of(D.sock), sock_ino);
    assert_int_equal(inode_of(D.ctl), ctl_ino);
    assert_int_equal(td_wait_connections(&D, 0), 0);
    client_works_as(tenant(TD_UID_B), D.sock, "after");
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* A daemon removes its socket paths at stop only while they are the files
 * it bound: one put in their place meanwhile stays. */
static void stop_leaves_a_replaced_socket(void **state)
{
    (void)state;
    assert_int_equal(td_start(&D, NULL), 0);
    assert_int_equal(unlink(D.sock), 0);
    FILE *f = fopen(D.sock, "w");
    assert_non_null(f);
    fputs("not the daemon's\n", f);
    fclose(f);
    assert_int_equal(kill(D.pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(D.pid, &status, 0), D.pid);
    D.pid = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat st;
    assert_int_equal(lstat(D.sock, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(lstat(D.ctl, &st), -1);        /* its own: removed */
    expect_log("no longer the socket this daemon bound");
}

/* ------------------------------------------------------------------------
 * Refused at start
 * ---------------------------------------------------------------------- */
/* Runs tmemd on sockets in the test directory with the options of td_start
 * but --max-memory, then more (NULL-terminated); it must exit nonzero
 * within 2 s, having logged what, and left no socket.  Its log (read_text). */
static char *refused(const char *const *more, const char *what)
{
    char sock[300], ctl[300], log[300];
    snprintf(sock, sizeof(sock), "%s/c.sock", tmpdir);
    snprintf(ctl, sizeof(ctl), "%s/ctl.sock", tmpdir);
    snprintf(log, sizeof(log), "%s/refused.log", tmpdir);
    const char *args[32] = { "--socket", sock, "--control-socket", ctl, "--set",
                             "metrics.port=0", "--set", "governor.enabled=false" };
    int n = 8;
    for (int i = 0; more[i] && n < 31; i++)
        args[n++] = more[i];
    args[n] = NULL;
    uint64_t t0 = td_now_ms();
    int rc = wait_exit(run_tmemd(args, log), 2000);
    uint64_t took = td_now_ms() - t0;
    char *text = read_text(log);
    if (rc <= 0)
        fail_msg("tmemd %s (%llu ms); its log:\n%s",
                 rc < 0 ? "did not exit within 2 s" : "exited 0", (unsigned long long)took,
                 text);
    expect_in(text, what, "tmemd's log");
    struct stat st;
    assert_int_equal(lstat(sock, &st), -1);
    assert_int_equal(lstat(ctl, &st), -1);
    return text;
}

/* A fixed max_memory above MemTotal stops the start (never clamped). */
static void max_memory_above_memtotal(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "1000T", NULL };
    refused(args, "memory.max_memory: 1000 TiB is more than this host's memory (");
    /* a host of 23.5 GiB (the meminfo file of the configuration) */
    char meminfo[300], set[320];
    snprintf(meminfo, sizeof(meminfo), "%s/meminfo", tmpdir);
    tt_write_file(meminfo, "MemTotal:       24683772 kB\nMemFree:        23736740 kB\n"
                           "MemAvailable:   24158340 kB\n");
    snprintf(set, sizeof(set), "governor.meminfo=%s", meminfo);
    const char *args2[] = { "--max-memory", "24G", "--set", set, NULL };
    refused(args2, "tmemd: memory.max_memory: 24 GiB is more than this host's memory "
                   "(23.5 GiB)\n");
}

/* What a daemon says of max_memory at start. */
static void max_memory_is_logged(void **state)
{
    (void)state;
    const char *args[] = { "--max-memory", "48M", NULL };
    assert_int_equal(td_start(&D, args), 0);
    expect_log("max_memory: 48 MiB (MemTotal ");
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

/* ------------------------------------------------------------------------
 * Files that are not regular files
 * ---------------------------------------------------------------------- */
/* --config naming a device or a FIFO stops the start at once (it used to
 * read /dev/zero for ever, and wait in open() for a FIFO's writer). */
static void config_not_a_regular_file(void **state)
{
    (void)state;
    const char *args[] = { "--config", "/dev/zero", NULL };
    refused(args, "tmemd: /dev/zero: not a regular file (a character device)\n");
    char fifo[300];
    snprintf(fifo, sizeof(fifo), "%s/config.fifo", tmpdir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *args2[] = { "--config", fifo, NULL };
    refused(args2, "config.fifo: not a regular file (a FIFO)");
    unlink(fifo);
}

/* ------------------------------------------------------------------------
 * The default configuration file
 * ---------------------------------------------------------------------- */
/* Without --config, tmemd reads the default file ($TMEMD_CONFIG here, the
 * installed sysconfdir's tmem/tmemd.conf otherwise) if it exists and runs
 * on the embedded default if it does not (the systemd unit passes no
 * --config); a default file with an error stops the start like any; an
 * explicit --config naming no file is an error, and with --config the
 * default file is not read. */
static void default_config_file(void **state)
{
    (void)state;
    char none[300], bad[300], good[300], msg[400];
    snprintf(none, sizeof(none), "%s/none.conf", tmpdir);
    snprintf(bad, sizeof(bad), "%s/bad.conf", tmpdir);
    snprintf(good, sizeof(good), "%s/good.conf", tmpdir);
    tt_write_file(bad, "[memory]\ncompress = gzip\n");
    tt_write_file(good, "[daemon]\nmax_clients = 7\n");

    /* no file there: the embedded default, and said so */
    assert_int_equal(setenv("TMEMD_CONFIG", none, 1), 0);
    assert_int_equal(td_start(&D, NULL), 0);
    snprintf(msg, sizeof(msg), "configuration: the embedded default (no %s)", none);
    expect_log(msg);
    client_works(D.sock, "default-missing");
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));

    /* a file there: read */
    assert_int_equal(setenv("TMEMD_CONFIG", good, 1), 0);
    assert_int_equal(td_start(&D, NULL), 0);
    snprintf(msg, sizeof(msg), "configuration: %s", good);
    expect_log(msg);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));

    /* an error in it stops the start, naming the file and the line */
    assert_int_equal(setenv("TMEMD_CONFIG", bad, 1), 0);
    const char *noargs[] = { NULL };
    refused(noargs, "bad.conf:2: [memory] compress: 'gzip' is not a codec");

    /* with --config, the default file is not read */
    const char *withgood[] = { "--config", good, NULL };
    assert_int_equal(td_start(&D, withgood), 0);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));

    /* an explicit --config naming no file is an error, the default file
     * missing or not */
    assert_int_equal(setenv("TMEMD_CONFIG", none, 1), 0);
    const char *withnone[] = { "--config", none, NULL };
    refused(withnone, "none.conf: No such file or directory");

    /* empty: no default file at all */
    assert_int_equal(setenv("TMEMD_CONFIG", "", 1), 0);
    assert_int_equal(td_start(&D, NULL), 0);
    expect_log("configuration: the embedded default\n");
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
    unsetenv("TMEMD_CONFIG");
}

/* A FIFO as the state file: the daemon starts at once without it (the
 * state file never fails the start), says why, serves (a tenant of another
 * uid, and one of this uid with a persistent page), and at stop does
 * not write over it. */
static void state_file_fifo(void **state)
{
    (void)state;
    char fifo[300], set[320];
    snprintf(fifo, sizeof(fifo), "%s/state.fifo", tmpdir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    snprintf(set, sizeof(set), "daemon.state_file=%s", fifo);
    const char *args[] = { "--set", set, NULL };
    td_window_mode = 1;         /* the daemon holds the persistent pages, to save */
    uint64_t t0 = td_now_ms();
    int rc = td_start(&D, args);
    td_window_mode = 0;
    assert_int_equal(rc, 0);
    uint64_t took = td_now_ms() - t0;
    if (took > 2000)
        fail_msg("tmemd took %llu ms to start", (unsigned long long)took);
    expect_log("not a regular file (a FIFO): not read, left in place; starting without it");
    assert_int_equal(td_open_to_all(&D), 0);
    client_works_as(tenant(TD_UID_A), D.sock, "keeper");   /* a tenant with persistent pages */
    tmem_client_t *c = tmem_connect(D.sock, "keeper");
    assert_non_null(c);
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_true(p >= 0);
    uint8_t page[PG];
    tt_fill(page, TT_RANDOM, 7);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, OID, 0, page), 0);
    tmem_client_close(c);

    /* the stop: nothing written over the FIFO */
    assert_int_equal(kill(D.pid, SIGTERM), 0);
    int status;
    assert_int_equal(waitpid(D.pid, &status, 0), D.pid);
    D.pid = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat st;
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    expect_log("not a regular file (a FIFO): not replaced");
    unlink(fifo);
}

/* ------------------------------------------------------------------------
 * A forged state file
 * ---------------------------------------------------------------------- */
/* The state file's layout (src/daemon/state.c) and the engine's save
 * stream (src/core/save.c), written here from scratch with the right
 * checksums: what a forger can do. */
struct st_header {
    char     magic[8];
    uint32_t version, header_size;
    uint64_t saved_at, check;
};
struct st_record {
    uint32_t tag, uid, gid, reserved;
    char     name[64];
    uint64_t stream_len, pages, stream_check, check;
};
struct st_trailer {
    uint32_t tag, reserved;
    uint64_t records, pages, stream_bytes, chain, check;
};
_Static_assert(sizeof(struct st_header) == 32, "state.c's header");
_Static_assert(sizeof(struct st_record) == 112, "state.c's record");
_Static_assert(sizeof(struct st_trailer) == 48, "state.c's trailer");

struct out {
    uint8_t p[1 << 14];
    size_t len;
};

static void out_put(struct out *o, const void *p, size_t n)
{
    assert_true(o->len + n <= sizeof(o->p));
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

static void out_u32(struct out *o, uint32_t v) { out_put(o, &v, 4); }
static void out_u64(struct out *o, uint64_t v) { out_put(o, &v, 8); }

/* An engine save stream with no pools: its settings, the end, the checksum. */
static void forge_stream(struct out *o, uint32_t weight, uint64_t cap, const char *name)
{
    o->len = 0;
    out_put(o, "TMEMSAVE", 8);
    out_u32(o, 1);                      /* version */
    out_u32(o, 0);                      /* flags: not frozen */
    out_u32(o, TMEM_COMPRESS_LZ4);
    out_u32(o, weight);
    out_u64(o, cap);
    out_u32(o, (uint32_t)strlen(name));
    out_put(o, name, strlen(name));
    out_u32(o, 0x21444e45u);            /* "END!" */
    out_u64(o, 0);                      /* pools */
    out_u64(o, 0);                      /* pages */
    out_u64(o, XXH64(o->p, o->len, 0));
}

struct forged_client {
    const char *name;
    uint32_t weight;
    uint64_t cap;
};

/* Writes a sound state file at path holding clients (of this uid). */
static void forge_state_file(const char *path, const struct forged_client *cl, size_t n)
{
    static struct out file, stream;
    file.len = 0;
    XXH64_state_t *chain = XXH64_createState();
    assert_non_null(chain);
    XXH64_reset(chain, 0);
    struct st_header hd;
    memset(&hd, 0, sizeof(hd));
    memcpy(hd.magic, "TMEMSTAT", 8);
    hd.version = 1;
    hd.header_size = sizeof(hd);
    hd.saved_at = (uint64_t)time(NULL);
    hd.check = XXH64(&hd, offsetof(struct st_header, check), 0);
    XXH64_update(chain, &hd.check, 8);
    out_put(&file, &hd, sizeof(hd));
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        forge_stream(&stream, cl[i].weight, cl[i].cap, cl[i].name);
        struct st_record r;
        memset(&r, 0, sizeof(r));
        r.tag = 0x544e4c43u;            /* "CLNT" */
        r.uid = (uint32_t)getuid();
        r.gid = (uint32_t)getgid();
        assert_true(strlen(cl[i].name) < sizeof(r.name));
        memcpy(r.name, cl[i].name, strlen(cl[i].name));
        r.stream_len = stream.len;
        r.stream_check = XXH64(stream.p, stream.len, 0);
        r.check = XXH64(&r, offsetof(struct st_record, check), 0);
        XXH64_update(chain, &r.check, 8);
        out_put(&file, &r, sizeof(r));
        out_put(&file, stream.p, stream.len);
        bytes += stream.len;
    }
    struct st_trailer t;
    memset(&t, 0, sizeof(t));
    t.tag = 0x2e444e45u;                /* "END." */
    t.records = n;
    t.stream_bytes = bytes;
    t.chain = XXH64_digest(chain);
    t.check = XXH64(&t, offsetof(struct st_trailer, check), 0);
    out_put(&file, &t, sizeof(t));
    XXH64_freeState(chain);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, file.p, file.len), (ssize_t)file.len);
    close(fd);
}

/* A forged state file: a client name with control characters (an escape
 * sequence, a newline, a bell) and clients whose weight or cap is out of
 * the range every setter uses.  The name is taken as a HELLO's (control
 * characters become '_': none reaches the log, and its owner still adopts
 * it); the other clients are refused, named in the log, and none has the
 * forged weight. */
static void forged_state_file(void **state)
{
    (void)state;
    static const char evil[] = "evil\x1b[31mred\nFORGED line\x07";
    static const char shown[] = "evil_[31mred_FORGED_line_";
    const struct forged_client cl[] = {
        { evil, 500, 0 },
        { "heavy", 0xFFFFFFFFu, 0 },
        { "huge-cap", 100, TMEM_CAP_MAX + 1 },
    };
    td_window_mode = 1;         /* the daemon keeps parked clients' pools itself */
    assert_int_equal(td_start(&D, NULL), 0);
    char path[300], bad[310];
    snprintf(path, sizeof(path), "%s/state", D.dir);
    snprintf(bad, sizeof(bad), "%s.bad", path);
    forge_state_file(path, cl, 3);
    const char *args[] = { "--state-file", path, NULL };
    int rc = td_restart(&D, args);
    td_window_mode = 0;
    assert_int_equal(rc, 0);

    /* one client restored, as "evil_[31mred_FORGED_line_", weight 500 */
    struct tmw_ctl_client *v = NULL;
    size_t n = 0;
    assert_int_equal(tmc_clients(D.ctl, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].info.name, shown);
    assert_int_equal(v[0].info.weight, 500);
    assert_int_equal(v[0].parked, 1);
    for (size_t i = 0; i < n; i++)
        assert_true(v[i].info.weight <= TMEM_WEIGHT_MAX);
    free(v);
    /* the file was sound: removed once loaded, not renamed aside */
    struct stat st;
    for (int i = 0; i < 1000 && lstat(path, &st) == 0; i++)
        td_sleep_ms(10);
    assert_int_equal(lstat(path, &st), -1);
    assert_int_equal(lstat(bad, &st), -1);

    char line[200];
    snprintf(line, sizeof(line), "\"%s\"): 0 persistent pages; waiting for its owner", shown);
    expect_log(line);
    snprintf(line, sizeof(line), "client uid %u \"heavy\" NOT restored", (unsigned)getuid());
    expect_log(line);
    expect_log("weight or cap out of range");
    snprintf(line, sizeof(line), "client uid %u \"huge-cap\" NOT restored", (unsigned)getuid());
    expect_log(line);
    if (!getenv("TD_VERBOSE")) {
        /* no raw control character; every line is one of the daemon's */
        char log[300];
        snprintf(log, sizeof(log), "%s/tmemd.log", D.dir);
        const char *text = read_text(log);
        size_t len = strlen(text);
        assert_true(len > 0);
        for (size_t i = 0; i < len; i++) {
            unsigned char ch = (unsigned char)text[i];
            if ((ch < 0x20 && ch != '\n') || ch == 0x7f)
                fail_msg("byte %zu of the log is 0x%02x:\n%s", i, ch, text);
            if ((i == 0 || text[i - 1] == '\n') && strncmp(text + i, "20", 2) != 0)
                fail_msg("a log line does not start with a timestamp:\n%s", text + i);
        }
    }

    /* its owner, whose HELLO carries the same raw name, adopts it */
    tmem_client_t *c = tmem_connect(D.sock, evil);
    assert_non_null(c);
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(D.ctl, &s), 0);
    assert_int_equal(s.parked, 0);
    tmem_client_close(c);
    assert_int_equal(td_stop(&D), 0);
    memset(&D, 0, sizeof(D));
}

static int make_tmpdir(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(second_daemon_is_refused, cleanup),
        cmocka_unit_test_teardown(stop_leaves_a_replaced_socket, cleanup),
        cmocka_unit_test_teardown(max_memory_above_memtotal, cleanup),
        cmocka_unit_test_teardown(max_memory_is_logged, cleanup),
        cmocka_unit_test_teardown(config_not_a_regular_file, cleanup),
        cmocka_unit_test_teardown(default_config_file, cleanup),
        cmocka_unit_test_teardown(state_file_fifo, cleanup),
        cmocka_unit_test_teardown(forged_state_file, cleanup),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
