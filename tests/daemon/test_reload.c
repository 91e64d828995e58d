/* SPDX-License-Identifier: MIT */
/*
 * test_reload.c - changing a running tmemd's configuration, and who pays
 * for its memory.
 *
 * Live changes (issue 14): tmemctl config set memory.max_memory lowers the
 * limit of a running daemon (the memory it holds comes down within it,
 * persistent puts beyond it are refused) and raises it (more goes in);
 * SIGHUP after the file was rewritten does the same, says in the log each
 * key that cannot change while it runs and keeps it; a file with an error
 * leaves the configuration in force; a daemon on its embedded default
 * reads the default file once there is one, under its command line;
 * unknown keys, keys that cannot change live and bad values are refused;
 * a user who is not an administrator cannot set (root only: it runs a
 * child as another uid).
 *
 * Accounting: each client's cgroup as /proc/PID/cgroup says it (the
 * memory controller's line, else "0::"), its held bytes, list --by cgroup
 * summing them, and the per-client metrics; two clients in two cgroups
 * when this process may create a memory cgroup (root), else skipped.
 *
 * Every daemon must stop with exit status 0 (its engine passed
 * tmem_check()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

#ifndef TMEMCTL_BIN
#define TMEMCTL_BIN "tmemctl"
#endif
#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

#define MiB (1ull << 20)
static const tmem_uuid_t NOUUID = { 0, 0 };

static td_t D0;
static char conf_dir[64];       /* a default file's directory (sighup_default_file) */

static int stop_daemons(void **state)
{
    (void)state;
    if (D0.pid > 0)
        td_stop(&D0);
    unsetenv("TMEMD_CONFIG");
    if (conf_dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", conf_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", conf_dir);
        conf_dir[0] = 0;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Files, logs, tmemctl
 * ---------------------------------------------------------------------- */
/* Writes text to path through a rename, as an administrator's editor would. */
static void write_file(const char *path, const char *text)
{
    char tmp[300];
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, path), 0);
}

static char *read_log(const td_t *d)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/tmemd.log", d->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    size_t cap = 1 << 16, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    size_t n;
    while ((n = fread(s + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (cap - len < 4096) {
            cap *= 2;
            s = realloc(s, cap);
            assert_non_null(s);
        }
    }
    s[len] = 0;
    fclose(f);
    return s;
}

/* Waits (up to 10 s) until the daemon's log has a line with both a and b
 * (b may be NULL). */
static bool wait_log(const td_t *d, const char *a, const char *b)
{
    for (int i = 0; i < 1000; i++) {
        char *log = read_log(d);
        bool found = false;
        for (char *line = strtok(log, "\n"); line && !found; line = strtok(NULL, "\n"))
            found = strstr(line, a) && (!b || strstr(line, b));
        free(log);
        if (found)
            return true;
        td_sleep_ms(10);
    }
    return false;
}

static void expect_log(const td_t *d, const char *a, const char *b)
{
    if (!wait_log(d, a, b)) {
        char *log = read_log(d);
        fail_msg("no line with \"%s\"%s%s%s in the daemon's log:\n%s", a, b ? " and \"" : "",
                 b ? b : "", b ? "\"" : "", log);
    }
}

/* Starts tmemd on d with --config DIR/tmemd.conf holding conf, the
 * sockets in DIR, then extra (NULL-terminated, may be NULL). */
static void start_on_file(td_t *d, const char *conf, const char *const *extra)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/tmemd-reload.XXXXXX");
    assert_non_null(mkdtemp(d->dir));
    snprintf(d->sock, sizeof(d->sock), "%s/c.sock", d->dir);
    snprintf(d->ctl, sizeof(d->ctl), "%s/ctl.sock", d->dir);
    char path[300], log[300];
    snprintf(path, sizeof(path), "%s/tmemd.conf", d->dir);
    snprintf(log, sizeof(log), "%s/tmemd.log", d->dir);
    write_file(path, conf);
    const char *argv[32];
    int n = 0;
    argv[n++] = TMEMD_BIN;
    argv[n++] = "--config";
    argv[n++] = path;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--control-socket";
    argv[n++] = d->ctl;
    for (int i = 0; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(d->sock, &st) == 0 && stat(d->ctl, &st) == 0)
            return;
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            d->pid = 0;
            char *text = read_log(d);
            fail_msg("tmemd exited at its start:\n%s", text);
        }
        td_sleep_ms(10);
    }
    fail_msg("tmemd not ready after 10 s");
}

struct run {
    int status;
    char out[8192], err[2048];
};

static void slurp(int fd, char *buf, size_t size)
{
    ssize_t n = pread(fd, buf, size - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    close(fd);
}

/* tmemctl --socket d->ctl args...: its exit status, output in r. */
static int run_ctl(const td_t *d, struct run *r, const char *const *args)
{
    char on[] = "/tmp/reload-out.XXXXXX", en[] = "/tmp/reload-err.XXXXXX";
    int of = mkstemp(on), ef = mkstemp(en);
    assert_true(of >= 0 && ef >= 0);
    unlink(on);
    unlink(en);
    const char *argv[24] = { TMEMCTL_BIN, "--socket", d->ctl };
    int n = 3;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(of, STDOUT_FILENO);
        dup2(ef, STDERR_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(of, r->out, sizeof(r->out));
    slurp(ef, r->err, sizeof(r->err));
    return r->status;
}

#define CTL(d, r, ...) run_ctl(d, r, (const char *const[]){ __VA_ARGS__, NULL })

static void expect_in(const char *text, const char *what)
{
    if (!strstr(text, what))
        fail_msg("expected \"%s\" in:\n%s", what, text);
}

/* ------------------------------------------------------------------------
 * The daemon's figures
 * ---------------------------------------------------------------------- */
/* key's value as config get says it (into buf), and its bytes. */
static uint64_t cfg_get(const td_t *d, const char *key, char *buf, size_t len)
{
    struct tmw_ctl_config *v;
    size_t n;
    assert_int_equal(tmc_config_get(d->ctl, key, &v, &n), 0);
    assert_int_equal(n, 1);
    if (buf) {
        size_t l = strnlen(v[0].value, len - 1);
        memcpy(buf, v[0].value, l);
        buf[l] = 0;
    }
    uint64_t b = v[0].bytes;
    free(v);
    return b;
}

static struct tmw_ctl_stats stats(const td_t *d)
{
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(d->ctl, &s), 0);
    return s;
}

/* Waits (up to 10 s) until the daemon holds at most bytes, its lent
 * memory included (lent units come back within shrink_deadline_ms). */
static void wait_held_at_most(const td_t *d, uint64_t bytes)
{
    struct tmw_ctl_stats s;
    for (int i = 0; i < 1000; i++) {
        s = stats(d);
        if (s.engine.bytes_held <= bytes)
            return;
        td_sleep_ms(10);
    }
    fail_msg("the daemon still holds %llu bytes, above %llu",
             (unsigned long long)s.engine.bytes_held, (unsigned long long)bytes);
}

static tmem_client_t *connect_to(const td_t *d, const char *name)
{
    tmem_client_t *c = tmem_connect(d->sock, name);
    if (!c)
        fail_msg("tmem_connect(%s, %s): %s", d->sock, name, strerror(errno));
    return c;
}

/* Puts pages of random data (they do not compress) at obj, index from
 * first on, until a put is refused or n went in: how many went in. */
static unsigned put_until_refused(tmem_client_t *c, int pool, uint64_t obj, unsigned first,
                                  unsigned n)
{
    uint8_t page[PG];
    unsigned ok = 0;
    for (unsigned i = 0; i < n; i++) {
        tt_fill(page, TT_RANDOM, obj * 1000003u + first + i);
        if (tmem_put_page(c, (uint32_t)pool, tt_oid(obj, 0, 0), first + i, page) != 0)
            break;
        ok++;
    }
    return ok;
}

/* ------------------------------------------------------------------------
 * config set memory.max_memory
 * ---------------------------------------------------------------------- */
static void set_max_memory_live(void **state)
{
    (void)state;
    td_t *d = &D0;
    /* no per-uid bound: the limit alone decides what goes in */
    const char *const args[] = { "--set", "memory.uid_persistent_max=0", NULL };
    assert_int_equal(td_start(d, args), 0);
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 64 * MiB);

    /* ephemeral pages fill most of the 64 MiB */
    tmem_client_t *e = connect_to(d, "eph");
    int pe = tmem_new_pool(e, NOUUID, 0);
    assert_true(pe >= 0);
    put_until_refused(e, pe, 1, 0, 10000);      /* 39 MiB */
    struct tmw_ctl_stats s = stats(d);
    assert_true(s.engine.bytes_held > 24 * MiB);
    assert_int_equal(s.gov_limit, 64 * MiB);

    /* lowered with tmemctl: what is held comes down within 16 MiB */
    struct run r;
    if (CTL(d, &r, "config", "set", "memory.max_memory", "16M") != 0)
        fail_msg("config set exited %d: %s", r.status, r.err);
    expect_in(r.out, "memory.max_memory: 64M -> 16M");
    wait_held_at_most(d, 16 * MiB);
    s = stats(d);
    assert_int_equal(s.gov_limit, 16 * MiB);
    assert_int_equal(s.gov_max, 16 * MiB);
    assert_int_equal(CTL(d, &r, "config", "get", "max_memory"), 0);
    expect_in(r.out, "memory.max_memory = 16M");
    /* ephemeral puts go on within it (older pages are evicted) */
    put_until_refused(e, pe, 2, 0, 3000);
    wait_held_at_most(d, 16 * MiB);
    expect_log(d, "configuration (uid", "memory.max_memory: 64M -> 16M");
    tmem_client_close(e);                       /* its lent memory comes back */
    assert_int_equal(td_wait_connections(d, 0), 0);

    /* persistent pages: refused once the 16 MiB are full */
    tmem_client_t *p = connect_to(d, "pers");
    int pp = tmem_new_pool(p, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pp >= 0);
    unsigned n1 = put_until_refused(p, pp, 3, 0, 8192);
    assert_true(n1 > 0);
    assert_true(n1 < 8192);
    assert_true((uint64_t)n1 * PG <= 16 * MiB);
    uint8_t page[PG];
    tt_fill(page, TT_RANDOM, 77);
    assert_int_not_equal(tmem_put_page(p, (uint32_t)pp, tt_oid(3, 0, 0), n1, page), 0);

    /* raised through the library: more goes in, up to the new limit */
    char msg[600];
    assert_int_equal(tmc_config_set(d->ctl, "max_memory", "48M", msg, sizeof(msg)), 0);
    expect_in(msg, "16M -> 48M");
    assert_int_equal(stats(d).gov_limit, 48 * MiB);
    /* the client connected at 16M grows past it (its arenas span what
     * max_memory may be raised to), and a new one takes what is left */
    unsigned n2 = 0;
    for (int idle = 0; idle < 50 && n1 + n2 < 12288;) {
        /* a refusal may only mean that the daemon's WAKE, or the answer to
         * the library's GROW, is on its way: go on until nothing moves */
        unsigned k = put_until_refused(p, pp, 3, n1 + n2, 12288 - n1 - n2);
        n2 += k;
        idle = k ? 0 : idle + 1;
        if (!k)
            td_sleep_ms(10);
    }
    print_message("set_max_memory_live: %u pages at 16M, %u more at 48M\n", n1, n2);
    assert_true((uint64_t)(n1 + n2) * PG > 24 * MiB);
    tmem_client_t *p2 = connect_to(d, "pers2");
    int pp2 = tmem_new_pool(p2, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pp2 >= 0);
    unsigned n3 = put_until_refused(p2, pp2, 4, 0, 12288);
    assert_true((uint64_t)(n2 + n3) * PG > 16 * MiB);
    assert_true((uint64_t)(n1 + n2 + n3) * PG > 24 * MiB);
    assert_true((uint64_t)(n1 + n2 + n3) * PG <= 48 * MiB);
    assert_true(stats(d).engine.bytes_held <= 48 * MiB);
    tmem_client_close(p2);

    /* beyond what the engine reserved at start (1 GiB here): refused */
    assert_int_equal(tmc_config_set(d->ctl, "memory.max_memory", "2G", msg, sizeof(msg)),
                     -EINVAL);
    expect_in(msg, "without a restart");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 48 * MiB);

    tmem_client_close(p);
    assert_int_equal(td_stop(d), 0);
}

/* ------------------------------------------------------------------------
 * SIGHUP
 * ---------------------------------------------------------------------- */
static const char base_conf[] =
    "[daemon]\n"
    "log_level = info\n"
    "[memory]\n"
    "max_memory = %s\n"
    "uid_persistent_max = 0\n"
    "[governor]\n"
    "enabled = false\n"
    "[metrics]\n"
    "port = 0\n"
    "%s";

static void conf_text(char *out, size_t len, const char *max, const char *more)
{
    snprintf(out, len, base_conf, max, more);
}

static void sighup_reload_file(void **state)
{
    (void)state;
    td_t *d = &D0;
    char text[1024], path[300], v[64];
    conf_text(text, sizeof(text), "32M", "");
    start_on_file(d, text, NULL);
    snprintf(path, sizeof(path), "%.200s/tmemd.conf", d->dir);
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 32 * MiB);
    assert_int_equal(stats(d).gov_limit, 32 * MiB);

    tmem_client_t *e = connect_to(d, "eph");
    int pe = tmem_new_pool(e, NOUUID, 0);
    assert_true(pe >= 0);
    put_until_refused(e, pe, 1, 0, 7000);      /* 27 MiB */
    assert_true(stats(d).engine.bytes_held > 16 * MiB);

    /* the file says 12M, and a key that needs a restart */
    conf_text(text, sizeof(text), "12M", "[daemon]\nspin_us = 7\n");
    write_file(path, text);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "SIGHUP: reloaded", "1 key changed, 1 kept until a restart");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 12 * MiB);
    expect_log(d, "SIGHUP: daemon.spin_us cannot change while tmemd runs", "kept at 50");
    cfg_get(d, "daemon.spin_us", v, sizeof(v));
    assert_string_equal(v, "50");
    wait_held_at_most(d, 12 * MiB);
    assert_int_equal(stats(d).gov_limit, 12 * MiB);
    tmem_client_close(e);
    assert_int_equal(td_wait_connections(d, 0), 0);

    /* raised by the file: persistent pages go in beyond the old limit */
    conf_text(text, sizeof(text), "40M", "");
    write_file(path, text);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "memory.max_memory: 12M -> 40M", NULL);
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 40 * MiB);
    tmem_client_t *p = connect_to(d, "pers");
    int pp = tmem_new_pool(p, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pp >= 0);
    unsigned n = put_until_refused(p, pp, 2, 0, 10240);
    assert_true((uint64_t)n * PG > 12 * MiB);
    assert_true((uint64_t)n * PG <= 40 * MiB);

    tmem_client_close(p);
    assert_int_equal(td_stop(d), 0);
}

/* A file with an error changes nothing: the configuration in force stays. */
static void sighup_bad_file_keeps_config(void **state)
{
    (void)state;
    td_t *d = &D0;
    char text[1024], path[300], v[64];
    conf_text(text, sizeof(text), "32M", "");
    start_on_file(d, text, NULL);
    snprintf(path, sizeof(path), "%.200s/tmemd.conf", d->dir);

    /* a good key first, then a bad line: nothing of it is applied */
    conf_text(text, sizeof(text), "16M", "[daemon]\nmax_clients = 9\n[memory]\ncompress = gzip\n");
    write_file(path, text);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "tmemd.conf:13: [memory] compress: 'gzip' is not a codec",
               "the file is rejected; the configuration in force stays");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 32 * MiB);
    cfg_get(d, "daemon.max_clients", v, sizeof(v));
    assert_string_equal(v, "256");
    cfg_get(d, "memory.compress", v, sizeof(v));
    assert_string_equal(v, "lz4");
    assert_int_equal(stats(d).gov_limit, 32 * MiB);

    /* an error found only when the whole is checked */
    conf_text(text, sizeof(text), "16M", "[memory]\nuid_persistent_max = 20M\n");
    write_file(path, text);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "memory.uid_persistent_max: more than max_memory", "is rejected");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 32 * MiB);

    /* the file gone: an error too (it was named with --config) */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "No such file or directory", "is rejected");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 32 * MiB);

    /* a good file again is taken */
    conf_text(text, sizeof(text), "16M", "");
    write_file(path, text);
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "SIGHUP: reloaded", "1 key changed");
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 16 * MiB);
    assert_int_equal(td_stop(d), 0);
}

/* Started on the embedded default: SIGHUP reads the default file once it
 * exists ($TMEMD_CONFIG here), the command line over it; with no default
 * file at all ($TMEMD_CONFIG empty), it says there is nothing to read. */
static void sighup_default_file(void **state)
{
    (void)state;
    td_t *d = &D0;
    snprintf(conf_dir, sizeof(conf_dir), "/tmp/tmemd-reload-conf.XXXXXX");
    assert_non_null(mkdtemp(conf_dir));
    char path[128], v[64];
    snprintf(path, sizeof(path), "%s/tmemd.conf", conf_dir);
    setenv("TMEMD_CONFIG", path, 1);
    assert_int_equal(td_start(d, NULL), 0);     /* --max-memory 64M on its command line */
    unsetenv("TMEMD_CONFIG");
    expect_log(d, "configuration: the embedded default (no", path);

    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "SIGHUP: no", "the embedded default: 0 keys changed");

    write_file(path, "[daemon]\nmax_clients = 7\n[memory]\nmax_memory = 16M\n");
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "SIGHUP: reloaded", path);
    cfg_get(d, "daemon.max_clients", v, sizeof(v));
    assert_string_equal(v, "7");
    /* --max-memory 64M stays over the file, as at a start */
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 64 * MiB);
    assert_int_equal(td_stop(d), 0);

    /* no default file at all */
    assert_int_equal(td_start(d, NULL), 0);     /* the harness: $TMEMD_CONFIG empty */
    assert_int_equal(kill(d->pid, SIGHUP), 0);
    expect_log(d, "SIGHUP: no configuration file to read", "nothing changes");
    assert_int_equal(td_stop(d), 0);
}

/* ------------------------------------------------------------------------
 * Refusals
 * ---------------------------------------------------------------------- */
static void config_set_refusals(void **state)
{
    (void)state;
    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    char msg[600], v[64];
    struct run r;

    /* a key that cannot change while tmemd runs */
    assert_int_equal(CTL(d, &r, "config", "set", "daemon.socket", "/tmp/x.sock"), 1);
    expect_in(r.err, "daemon.socket cannot change while tmemd runs");
    assert_int_equal(tmc_config_set(d->ctl, "metrics.port", "9", msg, sizeof(msg)),
                     -EOPNOTSUPP);
    assert_int_equal(tmc_failed_at(), TMC_AT_DAEMON);
    expect_in(msg, "metrics.port cannot change");
    /* unknown keys */
    assert_int_equal(CTL(d, &r, "config", "set", "memory.nonsense", "1"), 1);
    expect_in(r.err, "memory.nonsense: no such key");
    assert_int_equal(tmc_config_set(d->ctl, "nonsense", "1", msg, sizeof(msg)), -ENOENT);
    assert_int_equal(CTL(d, &r, "config", "get", "nonsense"), 1);
    expect_in(r.err, "no key nonsense");
    /* bad values, in the file's grammar */
    assert_int_equal(tmc_config_set(d->ctl, "max_memory", "4X", msg, sizeof(msg)), -EINVAL);
    expect_in(msg, "'4X' is not a size");
    assert_int_equal(tmc_config_set(d->ctl, "memory.max_memory", "100000T", msg, sizeof(msg)),
                     -EINVAL);
    assert_int_equal(tmc_config_set(d->ctl, "daemon.log_level", "loud", msg, sizeof(msg)),
                     -EINVAL);
    assert_int_equal(tmc_config_set(d->ctl, "governor.shrink_step", "95", msg, sizeof(msg)),
                     -EINVAL);
    assert_int_equal(tmc_config_set(d->ctl, "memory.shared_allow", "not-a-uuid:1", msg,
                                    sizeof(msg)), -EINVAL);
    assert_int_equal(tmc_config_set(d->ctl, "memory.default_weight", "3\x01", msg,
                                    sizeof(msg)), -EINVAL);
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 64 * MiB);
    cfg_get(d, "daemon.log_level", v, sizeof(v));
    assert_string_equal(v, "info");
    assert_int_equal(CTL(d, &r, "config", "frob"), 2);

    /* good ones of each kind, read back */
    assert_int_equal(tmc_config_set(d->ctl, "log_level", "debug", msg, sizeof(msg)), 0);
    cfg_get(d, "daemon.log_level", v, sizeof(v));
    assert_string_equal(v, "debug");
    assert_int_equal(tmc_config_set(d->ctl, "memory.shared_allow",
                                    "00112233-4455-6677-8899-aabbccddeeff:*, "
                                    "00112233-4455-6677-8899-aabbccddee00:1000", msg,
                                    sizeof(msg)), 0);
    cfg_get(d, "memory.shared_allow", msg, sizeof(msg));
    assert_string_equal(msg, "00112233-4455-6677-8899-aabbccddeeff:*, "
                             "00112233-4455-6677-8899-aabbccddee00:1000");
    /* a list is replaced whole */
    assert_int_equal(tmc_config_set(d->ctl, "memory.uid_persistent", "1000:8M", msg,
                                    sizeof(msg)), 0);
    assert_int_equal(tmc_config_set(d->ctl, "memory.uid_persistent", "1001:25%", msg,
                                    sizeof(msg)), 0);
    cfg_get(d, "memory.uid_persistent", v, sizeof(v));
    assert_string_equal(v, "1001:25%");
    assert_int_equal(tmc_config_set(d->ctl, "governor.psi_threshold", "12.5", msg,
                                    sizeof(msg)), 0);
    cfg_get(d, "governor.psi_threshold", v, sizeof(v));
    assert_string_equal(v, "12.5");
    assert_int_equal(tmc_config_set(d->ctl, "memory.uid_persistent_max", "25%", msg,
                                    sizeof(msg)), 0);
    assert_int_equal(cfg_get(d, "memory.uid_persistent_max", v, sizeof(v)), 16 * MiB);
    assert_string_equal(v, "25%");

    /* get: every key, the live ones unmarked; --json */
    assert_int_equal(CTL(d, &r, "config", "get"), 0);
    expect_in(r.out, "memory.max_memory = 64M\n");
    expect_in(r.out, "daemon.socket = ");
    expect_in(r.out, "# restart to change");
    expect_in(r.out, "memory.uid_persistent_max = 25% (16 MiB)\n");
    assert_int_equal(CTL(d, &r, "config", "get", "--json", "memory.max_memory"), 0);
    expect_in(r.out, "\"schema\": 1,\n  \"keys\": {\n    \"memory.max_memory\"");
    expect_in(r.out, "\"live\": true");
    expect_in(r.out, "\"bytes\": 67108864");
    assert_int_equal(td_stop(d), 0);
}

/* Who may: a user who is not an administrator can neither set nor get. */
static int not_admin_child(void *arg)
{
    const td_t *d = arg;
    char msg[200];
    int rc = tmc_config_set(d->ctl, "memory.max_memory", "8M", msg, sizeof(msg));
    if (rc != -EPERM) {
        fprintf(stderr, "config set as a non-administrator: %d\n", rc);
        return 1;
    }
    struct tmw_ctl_config *v;
    size_t n;
    rc = tmc_config_get(d->ctl, NULL, &v, &n);
    if (rc != -EPERM) {
        fprintf(stderr, "config get as a non-administrator: %d\n", rc);
        return 1;
    }
    return 0;
}

static void not_admin_cannot_set(void **state)
{
    (void)state;
    if (!td_can_switch_uid())
        TT_SKIP_CASE("not root: this test runs a child as uid %u", TD_UID_A);
    td_t *d = &D0;
    /* the socket open to all, so that the daemon's own check is what refuses */
    const char *const args[] = { "--set", "daemon.control_socket_mode=0666", NULL };
    assert_int_equal(td_start(d, args), 0);
    assert_int_equal(td_open_to_all(d), 0);
    uint64_t refused = stats(d).ctl_refused;
    pid_t pid = td_spawn_as(TD_UID_A, not_admin_child, d);
    assert_true(pid > 0);
    assert_int_equal(td_wait_child(pid), 0);
    assert_int_equal(stats(d).ctl_refused, refused + 2);
    assert_int_equal(cfg_get(d, "memory.max_memory", NULL, 0), 64 * MiB);
    assert_int_equal(td_stop(d), 0);
}

/* ------------------------------------------------------------------------
 * Who pays: cgroups
 * ---------------------------------------------------------------------- */
/* What the daemon should read of /proc/PID/cgroup: the memory controller's
 * line, else the "0::" one.  "" if neither. */
static void cgroup_of(const char *proc, char *out, size_t len)
{
    FILE *f = fopen(proc, "r");
    out[0] = 0;
    if (!f)
        return;
    char line[512], v2[512] = "";
    bool v1 = false;
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = 0;
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c2 = 0;
        if (!strcmp(line, "0:") || (c1 == line + 1 && line[0] == '0' && c2 == c1 + 1))
            snprintf(v2, sizeof(v2), "%s", c2 + 1);
        char *ctrls = c1 + 1, *save = NULL;
        for (char *t = strtok_r(ctrls, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (!strcmp(t, "memory")) {
                snprintf(out, len, "%s", c2 + 1);
                v1 = true;
            }
    }
    fclose(f);
    if (!v1)
        snprintf(out, len, "%s", v2);
}

static struct tmw_ctl_client client_named(const td_t *d, const char *name)
{
    struct tmw_ctl_client *cl, out;
    size_t n, found = 0;
    assert_int_equal(tmc_clients(d->ctl, &cl, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(cl[i].info.name, name) == 0) {
            out = cl[i];
            found++;
        }
    free(cl);
    assert_int_equal(found, 1);
    return out;
}

/* GET /metrics on 127.0.0.1:port, into buf. */
static void get_metrics(unsigned port, char *buf, size_t len)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s >= 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr = { htonl(INADDR_LOOPBACK) } };
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof(a)), 0);
    const char req[] = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    assert_int_equal(send(s, req, sizeof(req) - 1, 0), (ssize_t)sizeof(req) - 1);
    size_t got = 0;
    ssize_t n;
    while (got < len - 1 && (n = recv(s, buf + got, len - 1 - got, 0)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(s);
}

static void cgroup_of_own_clients(void **state)
{
    (void)state;
    td_t *d = &D0;
    const char *const args[] = { "--set", "metrics.port=-1", "--set", "metrics.per_client=true",
                                 NULL };
    assert_int_equal(td_start(d, args), 0);
    char mine[512];
    cgroup_of("/proc/self/cgroup", mine, sizeof(mine));
    if (!mine[0])
        TT_SKIP_CASE("no memory or unified line in /proc/self/cgroup");

    tmem_client_t *a = connect_to(d, "acct-a"), *b = connect_to(d, "acct-b");
    int pa = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int pb = tmem_new_pool(b, NOUUID, 0);
    assert_true(pa >= 0 && pb >= 0);
    assert_int_equal(put_until_refused(a, pa, 1, 0, 300), 300);
    assert_int_equal(put_until_refused(b, pb, 2, 0, 500), 500);

    struct tmw_ctl_client ca = client_named(d, "acct-a"), cb = client_named(d, "acct-b");
    if (strlen(mine) < TMW_CGROUP_MAX)
        assert_string_equal(ca.cgroup, mine);
    assert_string_equal(ca.cgroup, cb.cgroup);
    /* held: at least its pages' 4 KiB each (lent units hold them, or the
     * daemon's pages count so) */
    assert_true(ca.held_bytes >= 300 * PG);
    assert_true(cb.held_bytes >= 1 * PG);

    struct run r;
    assert_int_equal(CTL(d, &r, "list"), 0);
    expect_in(r.out, "CGROUP");
    expect_in(r.out, "HELD");
    expect_in(r.out, ca.cgroup);
    assert_int_equal(CTL(d, &r, "list", "--json"), 0);
    char want[700];
    snprintf(want, sizeof(want), "\"cgroup\": \"%s\"", ca.cgroup);
    expect_in(r.out, want);
    expect_in(r.out, "\"held_bytes\"");
    assert_int_equal(CTL(d, &r, "list", "-l"), 0);
    expect_in(r.out, ",hb:");
    expect_in(r.out, ",cg:");

    /* --by cgroup: one line, both clients, their held bytes summed */
    struct tmw_ctl_client *cl;
    size_t n;
    assert_int_equal(tmc_clients(d->ctl, &cl, &n), 0);
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += cl[i].held_bytes;
    free(cl);
    assert_int_equal(CTL(d, &r, "list", "--by", "cgroup", "--json"), 0);
    snprintf(want, sizeof(want), "\"cgroup\": \"%s\",\n      \"clients\": 2", ca.cgroup);
    expect_in(r.out, want);
    snprintf(want, sizeof(want), "\"held_bytes\": %llu", (unsigned long long)sum);
    expect_in(r.out, want);
    assert_int_equal(CTL(d, &r, "list", "--by", "cgroup"), 0);
    expect_in(r.out, "CLIENTS");
    expect_in(r.out, ca.cgroup);
    assert_int_equal(CTL(d, &r, "list", "--by", "uid"), 2);

    /* the per-client metrics */
    static char text[1 << 18];
    get_metrics(stats(d).metrics_port, text, sizeof(text));
    snprintf(want, sizeof(want), "tmem_cgroup_clients{cgroup=\"%s\"} 2", ca.cgroup);
    expect_in(text, want);
    snprintf(want, sizeof(want), "tmem_cgroup_held_bytes{cgroup=\"%s\"} ", ca.cgroup);
    expect_in(text, want);
    snprintf(want, sizeof(want), "tmem_client_held_bytes{name=\"acct-a\",uid=\"%u\",cgroup=\"%s\"}",
             (unsigned)getuid(), ca.cgroup);
    expect_in(text, want);

    tmem_client_close(a);
    tmem_client_close(b);
    assert_int_equal(td_stop(d), 0);
}

/* A child in a memory cgroup of its own: two cgroups, each with its client. */
struct cg_child {
    const td_t *d;
    char procs[640];            /* the cgroup's cgroup.procs */
    int go[2], done[2];         /* pipes: the child is connected; the parent has looked */
};

static int cg_child_main(void *arg)
{
    struct cg_child *k = arg;
    FILE *f = fopen(k->procs, "w");
    if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
        return 3;
    tmem_client_t *c = tmem_connect(k->d->sock, "in-cgroup");
    if (!c)
        return 4;
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    for (unsigned i = 0; pool >= 0 && i < 100; i++) {
        tt_fill(page, TT_RANDOM, i);
        if (tmem_put_page(c, (uint32_t)pool, tt_oid(5, 0, 0), i, page) != 0)
            return 5;
    }
    char x = 1;
    if (write(k->go[1], &x, 1) != 1 || read(k->done[0], &x, 1) != 1)
        return 6;
    tmem_client_close(c);
    return pool >= 0 ? 0 : 7;
}

static void cgroup_two_clients(void **state)
{
    (void)state;
    if (geteuid() != 0)
        TT_SKIP_CASE("not root: this test creates a memory cgroup");
    char mine[512];
    cgroup_of("/proc/self/cgroup", mine, sizeof(mine));
    FILE *f = fopen("/proc/self/cgroup", "r");
    bool v1 = false;
    char line[512];
    while (f && fgets(line, sizeof(line), f))
        v1 |= strstr(line, ":memory:") != NULL;
    if (f)
        fclose(f);
    char dir[600];
    snprintf(dir, sizeof(dir), "%s%s/tmem-test-%d", v1 ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup",
             strcmp(mine, "/") ? mine : "", (int)getpid());
    if (mkdir(dir, 0755) != 0)
        TT_SKIP_CASE("cannot create the cgroup %s: %s", dir, strerror(errno));

    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    /* the child first: forked before this process has a client's threads */
    struct cg_child k = { .d = d };
    snprintf(k.procs, sizeof(k.procs), "%s/cgroup.procs", dir);
    assert_int_equal(pipe(k.go), 0);
    assert_int_equal(pipe(k.done), 0);
    pid_t pid = td_spawn_as(TD_UID_SELF, cg_child_main, &k);
    assert_true(pid > 0);
    char x;
    bool up = read(k.go[0], &x, 1) == 1;
    tmem_client_t *a = connect_to(d, "outside");
    int pa = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    assert_true(pa >= 0);
    assert_int_equal(put_until_refused(a, pa, 1, 0, 200), 200);
    struct tmw_ctl_client out, in;
    if (up) {
        out = client_named(d, "outside");
        in = client_named(d, "in-cgroup");
    }
    struct run r;
    if (up)
        CTL(d, &r, "list", "--by", "cgroup", "--json");
    x = 1;
    assert_int_equal(write(k.done[1], &x, 1), 1);
    int st = td_wait_child(pid);
    rmdir(dir);
    assert_true(up);
    assert_int_equal(st, 0);
    char want[700];
    snprintf(want, sizeof(want), "%s/tmem-test-%d", strcmp(mine, "/") ? mine : "",
             (int)getpid());
    if (strlen(want) < TMW_CGROUP_MAX)
        assert_string_equal(in.cgroup, want);
    assert_string_not_equal(in.cgroup, out.cgroup);
    assert_true(in.held_bytes >= 100 * PG);
    assert_true(out.held_bytes >= 200 * PG);
    /* one entry per cgroup, each with its client and its bytes */
    snprintf(want, sizeof(want), "\"cgroup\": \"%s\",\n      \"clients\": 1", in.cgroup);
    expect_in(r.out, want);
    snprintf(want, sizeof(want), "\"cgroup\": \"%s\",\n      \"clients\": 1", out.cgroup);
    expect_in(r.out, want);
    snprintf(want, sizeof(want), "\"held_bytes\": %llu", (unsigned long long)in.held_bytes);
    expect_in(r.out, want);

    tmem_client_close(a);
    assert_int_equal(td_stop(d), 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(set_max_memory_live, stop_daemons),
        cmocka_unit_test_teardown(sighup_reload_file, stop_daemons),
        cmocka_unit_test_teardown(sighup_bad_file_keeps_config, stop_daemons),
        cmocka_unit_test_teardown(sighup_default_file, stop_daemons),
        cmocka_unit_test_teardown(config_set_refusals, stop_daemons),
        cmocka_unit_test_teardown(not_admin_cannot_set, stop_daemons),
        cmocka_unit_test_teardown(cgroup_of_own_clients, stop_daemons),
        cmocka_unit_test_teardown(cgroup_two_clients, stop_daemons),
    };
    return tt_run_tests(tests, sizeof(tests) / sizeof(tests[0]), NULL);
}
