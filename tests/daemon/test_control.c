/* SPDX-License-Identifier: MIT */
/*
 * test_control.c - the control plane end to end: every tmemctl command
 * against a real tmemd with real clients, a non-administrator refused
 * (and a member of the admin group let in), malformed control messages
 * answered and counted, and a client moved between two daemons with
 * save and restore (it reconnects to the second and finds every page).
 *
 * The tests of who may (non_admin_refused, admin_group_member_allowed,
 * restore_for_another_user) change to uid 65534 in forked children: they
 * need root and are skipped otherwise (the reason on stderr); the others
 * run as any user.
 * Every daemon must stop with exit status 0 (its engine passed
 * tmem_check()).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "proto/wire.h"
#include "td_harness.h"
#include "tmem_test.h"

#ifndef TMEMCTL_BIN
#define TMEMCTL_BIN "tmemctl"
#endif

#define NOBODY 65534
static const tmem_uuid_t NOUUID = { 0, 0 };

/* The daemons of the running test: global, so that a failed test's are
 * stopped too (by stop_daemons). */
static td_t D0, D1;

/* The tests that change to uid NOBODY in a child (or connect as a user
 * other than NOBODY) need root: skipped otherwise, the others run. */
#define NEED_ROOT()                                                                  \
    do {                                                                             \
        if (!td_can_switch_uid())                                                    \
            TT_SKIP_CASE("not root: this test changes to uid %d in a child", NOBODY); \
    } while (0)

static int stop_daemons(void **state)
{
    (void)state;
    if (D0.pid > 0)
        td_stop(&D0);
    if (D1.pid > 0)
        td_stop(&D1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Running tmemctl
 * ---------------------------------------------------------------------- */
struct run {
    int status;                 /* exit status, -1 killed */
    char *out, *err;            /* what it printed (terminated) */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

static char *slurp(int fd)
{
    off_t size = lseek(fd, 0, SEEK_END);
    char *s = malloc(size > 0 ? (size_t)size + 1 : 1);
    assert_non_null(s);
    ssize_t n = size > 0 ? pread(fd, s, (size_t)size, 0) : 0;
    s[n > 0 ? n : 0] = 0;
    close(fd);
    return s;
}

/* Runs tmemctl --socket d->ctl args... (as uid when uid >= 0). */
static int run_ctl_as(const td_t *d, long uid, struct run *r, const char *const *args)
{
    char on[] = "/tmp/tmemctl-out.XXXXXX", en[] = "/tmp/tmemctl-err.XXXXXX";
    int of = mkstemp(on), ef = mkstemp(en);
    assert_true(of >= 0 && ef >= 0);
    unlink(on);
    unlink(en);
    const char *argv[40];
    int n = 0;
    argv[n++] = TMEMCTL_BIN;
    if (d) {
        argv[n++] = "--socket";
        argv[n++] = d->ctl;
    }
    for (int i = 0; args[i] && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(of, STDOUT_FILENO);
        dup2(ef, STDERR_FILENO);
        int nul = open("/dev/null", O_RDONLY);
        dup2(nul, STDIN_FILENO);
        if (uid >= 0 && (setgroups(0, NULL) != 0 || setgid((gid_t)uid) != 0 ||
                         setuid((uid_t)uid) != 0))
            _exit(125);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    r->out = slurp(of);
    r->err = slurp(ef);
    return r->status;
}

#define CTL(d, r, ...) run_ctl_as(d, -1, r, (const char *const[]){ __VA_ARGS__, NULL })

/* The command must succeed; its output goes to r. */
#define CTL_OK(d, r, ...)                                                          \
    do {                                                                           \
        if (CTL(d, r, __VA_ARGS__) != 0)                                           \
            fail_msg("tmemctl " #__VA_ARGS__ " exited %d: %s", (r)->status, (r)->err); \
    } while (0)

static void expect_in(const char *text, const char *what)
{
    if (!strstr(text, what))
        fail_msg("expected \"%s\" in:\n%s", what, text);
}

/* ------------------------------------------------------------------------
 * Helpers
 * ---------------------------------------------------------------------- */
static struct tmw_ctl_stats stats(const td_t *d)
{
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(d->ctl, &s), 0);
    return s;
}

/* The daemon's record of the client named name (exactly one). */
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

static tmem_client_t *connect_to(const td_t *d, const char *name)
{
    tmem_client_t *c = tmem_connect(d->sock, name);
    if (!c)
        fail_msg("tmem_connect(%s, %s): %s", d->sock, name, strerror(errno));
    return c;
}

static void put_pages(tmem_client_t *c, int pool, uint64_t obj, unsigned n, enum tt_kind k,
                      uint64_t tag0)
{
    uint8_t page[PG];
    for (unsigned i = 0; i < n; i++) {
        tt_fill(page, k, tag0 + i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pool, tt_oid(obj, 0, 0), i, page), 0);
    }
}

static json_t *parse_json(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    if (!j)
        fail_msg("not JSON (%s at line %d): %s", e.text, e.line, text);
    return j;
}

/* The daemon's directory lets other users reach its sockets. */
static void open_dir(const td_t *d)
{
    assert_int_equal(chmod(d->dir, 0755), 0);
}

static int count_lines_with(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
        n++;
    return n;
}

/* ------------------------------------------------------------------------
 * Every command
 * ---------------------------------------------------------------------- */
static void commands_end_to_end(void **state)
{
    (void)state;
    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    struct run r;

    /* Before any client. */
    CTL_OK(d, &r, "list");
    expect_in(r.out, "no clients");
    run_free(&r);

    tmem_client_t *a = connect_to(d, "alpha"), *b = connect_to(d, "beta");
    int pa = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int pb = tmem_new_pool(b, NOUUID, 0);
    assert_true(pa >= 0 && pb >= 0);
    put_pages(a, pa, 1, 40, TT_TEXT, 100);
    put_pages(b, pb, 2, 600, TT_RANDOM, 5000);
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(b, (uint32_t)pb, tt_oid(2, 0, 0), 0, page), 0);
    assert_int_equal(tmem_get_page(b, (uint32_t)pb, tt_oid(9, 0, 0), 0, page), -ENOENT);
    uint32_t ida = client_named(d, "alpha").info.id;

    /* list: the table */
    CTL_OK(d, &r, "list");
    expect_in(r.out, "NAME");
    expect_in(r.out, "LENT");
    expect_in(r.out, "alpha");
    expect_in(r.out, "beta");
    run_free(&r);
    CTL_OK(d, &r, "list", "alpha");
    expect_in(r.out, "alpha");
    assert_null(strstr(r.out, "beta"));
    run_free(&r);

    /* list --json: every figure */
    CTL_OK(d, &r, "list", "--json");
    json_t *doc = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(doc, "schema")), 1);
    json_t *j = json_object_get(doc, "clients");
    assert_true(json_is_array(j));
    assert_int_equal(json_array_size(j), 2);
    size_t i;
    json_t *o;
    int seen = 0;
    json_array_foreach(j, i, o) {
        const char *name = json_string_value(json_object_get(o, "name"));
        assert_non_null(name);
        if (strcmp(name, "alpha") == 0) {
            assert_int_equal(json_integer_value(json_object_get(o, "persistent_pages")), 40);
            /* its 40 persistent pages sit in memory the daemon lent it */
            assert_true(json_is_true(json_object_get(o, "lent")));
            assert_true(json_integer_value(json_object_get(o, "lent_bytes_persistent")) > 0);
            assert_int_equal(json_integer_value(json_object_get(o, "revoked_units")), 0);
            assert_int_equal(json_integer_value(json_object_get(o, "pid")), getpid());
            assert_int_equal(json_integer_value(json_object_get(o, "uid")), getuid());
            seen |= 1;
        } else if (strcmp(name, "beta") == 0) {
            assert_int_equal(json_integer_value(json_object_get(o, "gets")), 2);
            assert_int_equal(json_integer_value(json_object_get(o, "gets_hit")), 1);
            assert_true(json_is_real(json_object_get(o, "hit_pct")));
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    json_decref(doc);
    run_free(&r);

    /* list -l: the tmem-list text with the long keys */
    CTL_OK(d, &r, "list", "-l");
    assert_true(strncmp(r.out, "G=", 2) == 0);
    expect_in(r.out, "\nC=");
    expect_in(r.out, "\nP=");
    expect_in(r.out, ",Ec:");
    run_free(&r);
    char ci[32];
    snprintf(ci, sizeof(ci), "C=CI:%u", ida);
    char idtext[16];
    snprintf(idtext, sizeof(idtext), "%u", ida);
    CTL_OK(d, &r, "list", "--long", idtext);
    expect_in(r.out, ci);
    assert_null(strstr(r.out, "G="));
    run_free(&r);

    /* stats, stats --json */
    CTL_OK(d, &r, "stats");
    expect_in(r.out, "2 connected");
    expect_in(r.out, "lent to the clients' libraries");
    run_free(&r);
    CTL_OK(d, &r, "stats", "--json");
    j = parse_json(r.out);
    assert_int_equal(json_integer_value(json_object_get(j, "schema")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "connections")), 2);
    assert_true(json_integer_value(json_object_get(j, "gov_limit_bytes")) > 0);
    assert_true(json_is_true(json_object_get(j, "lending")));
    assert_true(json_integer_value(json_object_get(j, "lent_bytes_persistent")) > 0);
    assert_true(json_integer_value(json_object_get(j, "lend_grown")) >= 2);
    json_t *e = json_object_get(j, "engine");
    assert_int_equal(json_integer_value(json_object_get(e, "persistent_pages")), 40);
    json_decref(j);
    run_free(&r);

    /* freeze / thaw one client by name, then all */
    CTL_OK(d, &r, "freeze", "alpha");
    expect_in(r.out, "froze client");
    run_free(&r);
    assert_true(client_named(d, "alpha").info.frozen);
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(7, 0, 0), 0, page), -TMEM_EFROZEN);
    CTL_OK(d, &r, "thaw", idtext);
    run_free(&r);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(7, 0, 0), 0, page), 0);
    CTL_OK(d, &r, "freeze", "--all");
    expect_in(r.out, "every client");
    run_free(&r);
    assert_true(client_named(d, "beta").info.frozen);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(7, 0, 0), 0, page), -TMEM_EFROZEN);
    CTL(d, &r, "list");
    expect_in(r.out, "frozen");
    run_free(&r);
    CTL_OK(d, &r, "thaw", "-a");
    run_free(&r);
    assert_false(client_named(d, "beta").info.frozen);

    /* errors: one line, exit 1; usage errors exit 2 */
    assert_int_equal(CTL(d, &r, "freeze", "9999"), 1);
    expect_in(r.err, "tmemctl: freeze: no client 9999");
    assert_int_equal(count_lines_with(r.err, "\n"), 1);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "thaw", "nosuchname"), 1);
    expect_in(r.err, "no client named 'nosuchname'");
    run_free(&r);
    assert_int_equal(CTL(d, &r, "freeze"), 2);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "freeze", "alpha", "--all"), 2);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "frobnicate"), 2);
    expect_in(r.err, "no command 'frobnicate'");
    run_free(&r);
    assert_int_equal(CTL(d, &r, "list", "--bogus"), 2);
    expect_in(r.err, "--bogus");
    run_free(&r);

    /* set */
    CTL_OK(d, &r, "set", "alpha", "--weight", "50", "--cap", "100", "--compress", "zstd");
    expect_in(r.out, "weight 50");
    run_free(&r);
    struct tmw_ctl_client ca = client_named(d, "alpha");
    assert_int_equal(ca.info.weight, 50);
    assert_int_equal(ca.info.cap, 100);
    assert_int_equal(ca.info.compress, TMEM_COMPRESS_ZSTD);
    CTL_OK(d, &r, "set", "alpha", "--cap", "none", "--compress", "none");
    run_free(&r);
    ca = client_named(d, "alpha");
    assert_int_equal(ca.info.cap, 0);
    assert_int_equal(ca.info.compress, TMEM_COMPRESS_NONE);
    assert_int_equal(ca.info.weight, 50);
    assert_int_equal(CTL(d, &r, "set", "alpha"), 2);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "set", "alpha", "--compress", "gzip"), 2);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "set", "alpha", "--weight", "x"), 2);
    run_free(&r);

    /* shared-auth: a shared pool of the uuid is private until allowed */
    const char *utext = "4f9a1b2c-3d4e-5f60-7182-93a4b5c6d7e8";
    tmem_uuid_t u;
    assert_int_equal(tmem_uuid_parse(utext, &u), 0);
    int s0 = tmem_new_pool(b, u, TMEM_POOL_SHARED);
    assert_true(s0 >= 0);
    assert_int_equal(tmem_pool_is_shared(b, (uint32_t)s0), 0);
    CTL_OK(d, &r, "shared-auth", "beta", utext, "allow");
    expect_in(r.out, "allowed");
    expect_in(r.out, utext);
    run_free(&r);
    int s1 = tmem_new_pool(b, u, TMEM_POOL_SHARED);
    assert_true(s1 >= 0);
    assert_int_equal(tmem_pool_is_shared(b, (uint32_t)s1), 1);
    CTL_OK(d, &r, "shared-auth", "beta", utext, "deny");
    run_free(&r);
    assert_int_equal(CTL(d, &r, "shared-auth", "beta", "not-a-uuid", "allow"), 2);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "shared-auth", "beta", utext, "maybe"), 2);
    run_free(&r);

    /* freeable, flush: beta's ephemeral pages can be given back */
    CTL_OK(d, &r, "freeable");
    expect_in(r.out, "pages");
    run_free(&r);
    uint64_t freeable = 0;
    assert_int_equal(tmc_freeable(d->ctl, &freeable), 0);
    assert_true(freeable >= 256);
    uint64_t eph0 = client_named(d, "beta").info.ephemeral_pages;
    CTL_OK(d, &r, "flush", "1M");
    expect_in(r.out, "gave back");
    run_free(&r);
    assert_true(client_named(d, "beta").info.ephemeral_pages < eph0);
    uint64_t freed = 0;
    assert_int_equal(tmc_flush(d->ctl, 64 * PG, &freed), 0);
    assert_true(freed > 0 && freed <= 64 * PG);
    assert_int_equal(CTL(d, &r, "flush", "lots"), 2);
    run_free(&r);
    assert_int_equal(client_named(d, "alpha").info.persistent_pages, 41);  /* never evicted */

    /* top: plain frames when not a terminal, -n stops it */
    CTL_OK(d, &r, "top", "-n", "3", "-d", "0.1");
    assert_int_equal(count_lines_with(r.out, "alpha"), 3);
    expect_in(r.out, "PUT/s");
    assert_int_equal(count_lines_with(r.out, "Lent: "), 3);
    run_free(&r);
    assert_int_equal(CTL(d, &r, "top", "-d", "0"), 2);
    run_free(&r);

    /* ambiguous names need the id */
    tmem_client_t *x1 = connect_to(d, "twin"), *x2 = connect_to(d, "twin");
    assert_int_equal(CTL(d, &r, "freeze", "twin"), 1);
    expect_in(r.err, "2 clients are named 'twin'");
    run_free(&r);
    tmem_client_close(x1);
    tmem_client_close(x2);

    /* help, version */
    CTL_OK(d, &r, "--help");
    expect_in(r.out, "shared-auth");
    run_free(&r);
    CTL_OK(d, &r, "help", "restore");
    expect_in(r.out, "usage: tmemctl [--socket PATH] restore FILE");
    run_free(&r);
    CTL_OK(d, &r, "save", "--help");
    expect_in(r.out, "usage: tmemctl [--socket PATH] save CLIENT FILE");
    run_free(&r);
    CTL_OK(d, &r, "--version");
    expect_in(r.out, "tmemctl (tmem)");
    run_free(&r);

    tmem_client_close(a);
    tmem_client_close(b);
    assert_int_equal(td_stop(d), 0);

    /* no daemon: one clear line */
    assert_int_equal(CTL(d, &r, "stats"), 1);
    expect_in(r.err, "cannot connect to");
    expect_in(r.err, "is tmemd running?");
    assert_int_equal(count_lines_with(r.err, "\n"), 1);
    run_free(&r);
}

/* ------------------------------------------------------------------------
 * Who may
 * ---------------------------------------------------------------------- */
/* In a child as uid/gid NOBODY with groups: tmc_stats's result. */
static int stats_as(const td_t *d, gid_t gid, const gid_t *groups, size_t ngroups)
{
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int rc = -1000;
        if (setgroups(ngroups, groups) == 0 && setgid(gid) == 0 && setuid(NOBODY) == 0) {
            struct tmw_ctl_stats s;
            rc = tmc_stats(d->ctl, &s);
        }
        if (write(pfd[1], &rc, sizeof(rc)) != sizeof(rc))
            _exit(1);
        _exit(0);
    }
    close(pfd[1]);
    int rc = -2000;
    assert_int_equal(read(pfd[0], &rc, sizeof(rc)), sizeof(rc));
    close(pfd[0]);
    waitpid(pid, NULL, 0);
    return rc;
}

/* --socket may come after the command too; without a path it is a usage
 * error; after "--" it is the command's, not tmemctl's. */
static void socket_after_command(void **state)
{
    (void)state;
    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    struct run r;
    CTL_OK(NULL, &r, "stats", "--socket", d->ctl);
    expect_in(r.out, "clients");
    run_free(&r);
    char eq[300];
    snprintf(eq, sizeof(eq), "--socket=%s", d->ctl);
    CTL_OK(NULL, &r, "list", eq);
    run_free(&r);
    /* the one after the command wins, as a later option does */
    CTL_OK(NULL, &r, "--socket", "/nonexistent/control.sock", "stats", "--socket", d->ctl);
    run_free(&r);
    assert_int_equal(CTL(NULL, &r, "stats", "--socket"), 2);
    expect_in(r.err, "--socket");
    run_free(&r);
    assert_int_equal(CTL(NULL, &r, "stats", "--socket", "/nonexistent/control.sock"), 1);
    run_free(&r);
}

static void non_admin_refused(void **state)
{
    (void)state;
    NEED_ROOT();
    td_t *d = &D0;
    static const char *const args[] = { "--set", "daemon.control_socket_mode=0666", NULL };
    assert_int_equal(td_start(d, args), 0);
    open_dir(d);
    assert_int_equal(stats(d).ctl_refused, 0);

    int rc = stats_as(d, NOBODY, NULL, 0);
    assert_true(rc == -EPERM || rc == -EACCES);
    assert_int_equal(stats(d).ctl_refused, 1);

    /* tmemctl says so in one line */
    struct run r;
    assert_int_equal(run_ctl_as(d, NOBODY, &r, (const char *const[]){ "freeze", "--all", NULL }),
                     1);
    expect_in(r.err, "tmemctl: permission denied: not an administrator of tmemd");
    assert_int_equal(count_lines_with(r.err, "\n"), 1);
    assert_int_equal(stats(d).ctl_refused, 2);
    run_free(&r);

    /* many refusals in a row: each answered, the daemon unharmed */
    for (int i = 0; i < 20; i++) {
        rc = stats_as(d, NOBODY, NULL, 0);
        assert_true(rc == -EPERM || rc == -EACCES);
    }
    struct tmw_ctl_stats s = stats(d);
    assert_true(s.ctl_refused >= 21);
    assert_int_equal(td_stop(d), 0);
}

static void admin_group_member_allowed(void **state)
{
    (void)state;
    NEED_ROOT();
    struct group *g = getgrnam("users");
    if (!g)
        TT_SKIP_CASE("no group 'users' here");
    gid_t users = g->gr_gid;
    td_t *d = &D0;
    static const char *const args[] = { "--set", "daemon.control_socket_mode=0666", "--set",
                                        "daemon.admin_group=users", NULL };
    assert_int_equal(td_start(d, args), 0);
    open_dir(d);
    assert_int_equal(stats_as(d, NOBODY, &users, 1), 0);     /* a supplementary group */
    assert_int_equal(stats_as(d, users, NULL, 0), 0);        /* the primary group */
    int rc = stats_as(d, NOBODY, NULL, 0);                   /* neither */
    assert_true(rc == -EPERM || rc == -EACCES);
    assert_int_equal(stats(d).ctl_refused, 1);
    assert_int_equal(td_stop(d), 0);
}

/* ------------------------------------------------------------------------
 * Malformed control messages
 * ---------------------------------------------------------------------- */
static int raw_connect(const td_t *d)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    memcpy(sa.sun_path, d->ctl, strlen(d->ctl) + 1);
    assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    struct timeval tv = { 10, 0 };
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return s;
}

/* Sends len bytes of msg as one message; returns the END result. */
static int raw_exchange(const td_t *d, const void *msg, size_t len)
{
    int s = raw_connect(d);
    assert_int_equal(send(s, msg, len, MSG_NOSIGNAL), (ssize_t)len);
    struct tmw_msg m;
    ssize_t n;
    int result = 1;
    while ((n = recv(s, &m, sizeof(m), MSG_TRUNC)) > 0) {
        assert_true((size_t)n >= sizeof(m));
        assert_int_equal(m.magic, TMW_MAGIC);
        if (m.type == TMW_MSG_END) {
            assert_int_equal(n, sizeof(m));
            result = m.result;
            break;
        }
    }
    close(s);
    return result;
}

static struct tmw_ctl good_req(uint32_t op)
{
    struct tmw_ctl q;
    memset(&q, 0, sizeof(q));
    q.m = (struct tmw_msg){ TMW_MAGIC, TMW_CTL_VERSION, TMW_MSG_CTL, sizeof(q), 0 };
    q.op = op;
    return q;
}

/* The request must be answered with want and counted as one bad message. */
static void expect_bad(const td_t *d, const void *msg, size_t len, int want, const char *what)
{
    uint64_t before = stats(d).bad_msgs;
    int rc = raw_exchange(d, msg, len);
    if (rc != want)
        fail_msg("%s: answered %d, expected %d", what, rc, want);
    uint64_t after = stats(d).bad_msgs;
    if (after != before + 1)
        fail_msg("%s: bad_msgs went from %llu to %llu", what, (unsigned long long)before,
                 (unsigned long long)after);
}

static void malformed_messages(void **state)
{
    (void)state;
    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    tmem_client_t *c = connect_to(d, "bystander");
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    put_pages(c, pool, 1, 10, TT_TEXT, 1);

    struct tmw_ctl q = good_req(TMW_CTL_STATS);
    assert_int_equal(raw_exchange(d, &q, sizeof(q)), 0);   /* the control: a good one */

    q.m.magic = 0x12345678;
    expect_bad(d, &q, sizeof(q), -EPROTO, "bad magic");
    q = good_req(TMW_CTL_STATS);
    q.m.version = 99;
    expect_bad(d, &q, sizeof(q), -EPROTO, "bad version");
    q = good_req(TMW_CTL_STATS);
    q.m.len = sizeof(q) - 8;
    expect_bad(d, &q, sizeof(q), -EPROTO, "len field too short");
    q = good_req(TMW_CTL_STATS);
    q.m.len = sizeof(q) + 8;
    expect_bad(d, &q, sizeof(q), -EPROTO, "len field too long");
    q = good_req(TMW_CTL_STATS);
    q.m.len = 10;
    expect_bad(d, &q, 10, -EPROTO, "truncated below the header");
    q = good_req(TMW_CTL_STATS);
    q.m.len = sizeof(struct tmw_msg) + 8;
    expect_bad(d, &q, sizeof(struct tmw_msg) + 8, -EPROTO, "truncated request");
    q = good_req(TMW_CTL_STATS);
    q.m.type = TMW_MSG_DATA;
    expect_bad(d, &q, sizeof(q), -EPROTO, "not a request");
    q = good_req(TMW_CTL_STATS);
    q.m.type = TMW_MSG_HELLO;
    expect_bad(d, &q, sizeof(q), -EPROTO, "a hello on the control socket");

    size_t big = TMW_MSG_MAX + 4096;
    uint8_t *huge = calloc(1, big);
    assert_non_null(huge);
    q = good_req(TMW_CTL_STATS);
    q.m.len = (uint32_t)big;
    memcpy(huge, &q, sizeof(q));
    expect_bad(d, huge, big, -EPROTO, "oversized");
    q.m.len = TMW_MSG_MAX;
    memcpy(huge, &q, sizeof(q));
    expect_bad(d, huge, TMW_MSG_MAX, -EPROTO, "a request padded to TMW_MSG_MAX");
    free(huge);

    q = good_req(999);
    expect_bad(d, &q, sizeof(q), -EINVAL, "unknown op");
    q = good_req(0);
    expect_bad(d, &q, sizeof(q), -EINVAL, "op 0");
    q = good_req(TMW_CTL_OP_MAX_);
    expect_bad(d, &q, sizeof(q), -EINVAL, "op max");
    q = good_req(TMW_CTL_STATS);
    q.client_id = 5;
    expect_bad(d, &q, sizeof(q), -EINVAL, "a field stats does not use");
    q = good_req(TMW_CTL_STATS);
    q.reserved_ = 1;
    expect_bad(d, &q, sizeof(q), -EINVAL, "reserved field");
    q = good_req(TMW_CTL_STATS);
    q.m.result = -1;
    expect_bad(d, &q, sizeof(q), -EINVAL, "a result in a request");
    q = good_req(TMW_CTL_SET);
    q.client_id = 1;
    expect_bad(d, &q, sizeof(q), -EINVAL, "set with nothing to set");
    q.set_mask = TMW_SET_COMPRESS;
    q.compress = 7;
    expect_bad(d, &q, sizeof(q), -EINVAL, "set an unknown codec");
    q.set_mask = 0x80;
    q.compress = 0;
    expect_bad(d, &q, sizeof(q), -EINVAL, "set an unknown mask bit");
    q = good_req(TMW_CTL_SET);
    q.client_id = 1;
    q.set_mask = TMW_SET_WEIGHT;
    q.weight = 10;
    q.cap = 5;
    expect_bad(d, &q, sizeof(q), -EINVAL, "set a cap outside the mask");
    q = good_req(TMW_CTL_LIST);
    q.client_id = TMEM_CLIENT_ALL;
    q.arg = 2;
    expect_bad(d, &q, sizeof(q), -EINVAL, "list with arg 2");
    q = good_req(TMW_CTL_SAVE);
    q.client_id = TMEM_CLIENT_ALL;
    expect_bad(d, &q, sizeof(q), -EINVAL, "save all");
    q = good_req(TMW_CTL_RESTORE);
    q.arg = TMW_RESTORE_NAME;
    memset(q.name, 'x', sizeof(q.name));
    expect_bad(d, &q, sizeof(q), -EINVAL, "restore name not terminated");
    q = good_req(TMW_CTL_RESTORE);
    q.arg = 0x100;
    expect_bad(d, &q, sizeof(q), -EINVAL, "restore unknown flag");
    q = good_req(TMW_CTL_RESTORE);
    strcpy(q.name, "sneaky");
    expect_bad(d, &q, sizeof(q), -EINVAL, "restore name without its flag");

    /* a connection that says nothing, one that sends an empty message */
    int s = raw_connect(d);
    close(s);
    s = raw_connect(d);
    assert_int_equal(send(s, "", 0, MSG_NOSIGNAL), 0);
    close(s);

    /* a restore stream that is garbage, one that is cut short, one that
     * is a save file followed by more */
    char path[] = "/tmp/tmem-save.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    uint8_t junk[10000];
    tt_fill(junk, TT_RANDOM, 7);
    tt_fill(junk + PG, TT_RANDOM, 8);
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(tmc_restore(d->ctl, fd, NULL, -1), -EPROTO);
    assert_int_equal(tmc_failed_at(), TMC_AT_DAEMON);

    uint32_t id = client_named(d, "bystander").info.id;
    assert_int_equal(ftruncate(fd, 0), 0);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(tmc_save(d->ctl, id, fd), 10);
    off_t size = lseek(fd, 0, SEEK_END);
    assert_int_equal(ftruncate(fd, size - 100), 0);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(tmc_restore(d->ctl, fd, "cut", -1), -EPROTO);
    assert_int_equal(ftruncate(fd, size), 0);
    lseek(fd, size, SEEK_SET);
    assert_int_equal(write(fd, junk, 10), 10);
    lseek(fd, 0, SEEK_SET);
    assert_int_equal(tmc_restore(d->ctl, fd, "tail", -1), -EPROTO);
    close(fd);

    struct tmw_ctl_stats st = stats(d);
    assert_int_equal(st.parked, 0);             /* nothing half-restored is kept */
    assert_int_equal(st.connections, 1);
    assert_int_equal(client_named(d, "bystander").info.persistent_pages, 10);
    tmem_client_close(c);
    assert_int_equal(td_stop(d), 0);
}

/* ------------------------------------------------------------------------
 * Save and restore between two daemons
 * ---------------------------------------------------------------------- */
#define NPERS 300
#define NPERS2 50

static void check_pages(tmem_client_t *c, int pool, uint64_t obj, unsigned n, enum tt_kind k,
                        uint64_t tag0)
{
    uint8_t want[PG], got[PG];
    for (unsigned i = 0; i < n; i++) {
        tt_fill(want, k, tag0 + i);
        memset(got, 0xa5, sizeof(got));
        int rc = tmem_get_page(c, (uint32_t)pool, tt_oid(obj, 0, 0), i, got);
        if (rc != 0)
            fail_msg("page %u of pool %d: get returned %d", i, pool, rc);
        if (memcmp(want, got, PG) != 0)
            fail_msg("page %u of pool %d differs", i, pool);
    }
}

/* Fills a client for migration: two persistent pools and an ephemeral one
 * (whose pages are never saved). */
static void fill_mover(tmem_client_t *c, int *p0, int *e1, int *p2)
{
    *p0 = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    *e1 = tmem_new_pool(c, NOUUID, 0);
    *p2 = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    assert_true(*p0 >= 0 && *e1 >= 0 && *p2 >= 0);
    put_pages(c, *p0, 11, NPERS, TT_TEXT, 1000);
    put_pages(c, *e1, 12, 20, TT_TEXT, 2000);
    put_pages(c, *p2, 13, NPERS2, TT_RANDOM, 3000);
}

static void save_restore_two_daemons(void **state)
{
    (void)state;
    td_t *A = &D0, *B = &D1;
    assert_int_equal(td_start(A, NULL), 0);
    assert_int_equal(td_start(B, NULL), 0);
    tmem_client_t *c = connect_to(A, "mover");
    int p0, e1, p2;
    fill_mover(c, &p0, &e1, &p2);
    struct run r;
    CTL_OK(A, &r, "set", "mover", "--weight", "70", "--compress", "zstd");
    run_free(&r);

    char file[1024];
    snprintf(file, sizeof(file), "%s/mover.save", A->dir);
    CTL_OK(A, &r, "save", "mover", file);
    expect_in(r.out, "350 persistent pages");
    run_free(&r);
    struct stat sb;
    assert_int_equal(stat(file, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_true(sb.st_size > (off_t)(350 * PG));
    /* the client keeps running on A meanwhile */
    assert_int_equal(client_named(A, "mover").info.persistent_pages, NPERS + NPERS2);
    assert_false(client_named(A, "mover").info.frozen);

    /* B: a parked client, shown as such */
    char bfile[1024];
    snprintf(bfile, sizeof(bfile), "%s/mover.save", B->dir);
    char cmd[2100];
    snprintf(cmd, sizeof(cmd), "cp %s %s", file, bfile);
    assert_int_equal(system(cmd), 0);
    CTL_OK(B, &r, "restore", bfile);
    expect_in(r.out, "restored 350 persistent pages for 'mover'");
    run_free(&r);
    assert_int_equal(stats(B).parked, 1);
    CTL_OK(B, &r, "list");
    expect_in(r.out, "parked");
    expect_in(r.out, "mover");
    run_free(&r);
    struct tmw_ctl_client pk = client_named(B, "mover");
    assert_int_equal(pk.parked, 1);
    assert_int_equal(pk.uid, getuid());
    assert_int_equal(pk.info.persistent_pages, NPERS + NPERS2);
    assert_int_equal(pk.info.weight, 70);
    assert_int_equal(pk.info.compress, TMEM_COMPRESS_ZSTD);

    /* the move: the client leaves A and connects to B with the same name */
    tmem_client_close(c);
    assert_int_equal(td_wait_connections(A, 0), 0);
    tmem_client_t *c2 = connect_to(B, "mover");
    struct tmw_ctl_stats sb2 = stats(B);
    assert_int_equal(sb2.parked, 0);
    assert_int_equal(sb2.connections, 1);
    assert_false(client_named(B, "mover").parked);
    check_pages(c2, p0, 11, NPERS, TT_TEXT, 1000);
    check_pages(c2, p2, 13, NPERS2, TT_RANDOM, 3000);
    check_pages(c2, p2, 13, NPERS2, TT_RANDOM, 3000);   /* keep-on-get kept them */
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(c2, (uint32_t)e1, tt_oid(12, 0, 0), 0, page), -ENOENT);
    put_pages(c2, e1, 12, 5, TT_TEXT, 2000);            /* the ephemeral pool is there */
    assert_int_equal(tmem_pool_is_shared(c2, (uint32_t)p0), 0);
    tmem_client_close(c2);

    CTL_OK(A, &r, "list");             /* A is empty now */
    expect_in(r.out, "no clients");
    run_free(&r);

    /* the library calls straight, through a pipe (tmemctl save - / restore -) */
    c = connect_to(A, "piped");
    int q0 = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    put_pages(c, q0, 21, 64, TT_HALF, 50);
    uint32_t id = client_named(A, "piped").info.id;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        _exit(tmc_save(A->ctl, id, pfd[1]) == 64 ? 0 : 1);
    }
    close(pfd[1]);
    assert_int_equal(tmc_restore(B->ctl, pfd[0], NULL, -1), 64);
    close(pfd[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_int_equal(WEXITSTATUS(st), 0);
    tmem_client_close(c);
    c2 = connect_to(B, "piped");
    check_pages(c2, q0, 21, 64, TT_HALF, 50);
    tmem_client_close(c2);

    /* errors: no such client, not a save file */
    assert_int_equal(CTL(A, &r, "save", "ghost", file), 1);
    expect_in(r.err, "no client named 'ghost'");
    run_free(&r);
    assert_int_equal(CTL(A, &r, "save", "4242", file), 1);
    expect_in(r.err, "save: no client 4242");
    run_free(&r);
    assert_int_equal(stat(file, &sb), -1);              /* no partial file left */
    assert_int_equal(CTL(B, &r, "restore", "/etc/hostname"), 1);
    expect_in(r.err, "not a tmem save file");
    run_free(&r);
    assert_int_equal(CTL(B, &r, "restore", "/nonexistent/file"), 1);
    expect_in(r.err, "No such file");
    run_free(&r);

    assert_int_equal(td_stop(A), 0);
    assert_int_equal(td_stop(B), 0);
}

/* A save restored under another name for another user (tmemctl restore
 * --name --uid): only that user finds it.  Needs root: a child becomes
 * uid NOBODY, and the test itself must be another user. */
static void restore_for_another_user(void **state)
{
    (void)state;
    NEED_ROOT();
    td_t *A = &D0, *B = &D1;
    assert_int_equal(td_start(A, NULL), 0);
    assert_int_equal(td_start(B, NULL), 0);
    tmem_client_t *c = connect_to(A, "mover");
    int p0, e1, p2;
    fill_mover(c, &p0, &e1, &p2);
    struct run r;
    char file[1024], bfile[1024], cmd[2100];
    snprintf(file, sizeof(file), "%s/mover.save", A->dir);
    CTL_OK(A, &r, "save", "mover", file);
    expect_in(r.out, "350 persistent pages");
    run_free(&r);
    tmem_client_close(c);
    snprintf(bfile, sizeof(bfile), "%s/mover.save", B->dir);
    snprintf(cmd, sizeof(cmd), "cp %s %s", file, bfile);
    assert_int_equal(system(cmd), 0);
    uint8_t page[PG];

    CTL_OK(B, &r, "restore", bfile, "--name", "moved", "--uid", "65534");
    expect_in(r.out, "for 'moved' (uid 65534)");
    run_free(&r);
    assert_int_equal(client_named(B, "moved").uid, NOBODY);
    tmem_client_t *wrong = connect_to(B, "moved");     /* root: not its owner */
    assert_int_equal(tmem_get_page(wrong, (uint32_t)p0, tt_oid(11, 0, 0), 0, page), -ENODEV);
    tmem_client_close(wrong);
    assert_int_equal(stats(B).parked, 1);
    open_dir(B);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0)
            _exit(2);
        tmem_client_t *n = tmem_connect(B->sock, "moved");
        if (!n)
            _exit(3);
        uint8_t want[PG], got[PG];
        for (unsigned i = 0; i < NPERS; i++) {
            tt_fill(want, TT_TEXT, 1000 + i);
            int rc = tmem_get_page(n, (uint32_t)p0, tt_oid(11, 0, 0), i, got);
            if (rc != 0 || memcmp(want, got, PG) != 0) {
                fprintf(stderr, "the owner's child: page %u of the restored pool: %s\n", i,
                        rc ? tmem_strerror(rc) : "wrong data");
                _exit(4);
            }
        }
        tmem_client_close(n);
        _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(stats(B).parked, 0);

    assert_int_equal(td_stop(A), 0);
    assert_int_equal(td_stop(B), 0);
}

/* ------------------------------------------------------------------------
 * Many control connections at once
 * ---------------------------------------------------------------------- */
static void busy_control(void **state)
{
    (void)state;
    td_t *d = &D0;
    assert_int_equal(td_start(d, NULL), 0);
    /* Hold 8 connections open without a request: the ninth is refused. */
    int held[8];
    for (int i = 0; i < 8; i++)
        held[i] = raw_connect(d);
    /* the daemon accepts asynchronously: retry until the cap shows */
    int rc = 0;
    for (int tries = 0; tries < 200; tries++) {
        struct tmw_ctl_stats s;
        rc = tmc_stats(d->ctl, &s);
        if (rc == -EBUSY)
            break;
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(rc, -EBUSY);
    assert_int_equal(tmc_failed_at(), TMC_AT_DAEMON);
    for (int i = 0; i < 8; i++)
        close(held[i]);
    /* freed slots serve again */
    for (int tries = 0; tries < 200; tries++) {
        struct tmw_ctl_stats s;
        if ((rc = tmc_stats(d->ctl, &s)) == 0)
            break;
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    assert_int_equal(rc, 0);
    /* a stop with connections still open ends them */
    for (int i = 0; i < 4; i++)
        held[i] = raw_connect(d);
    assert_int_equal(td_stop(d), 0);
    for (int i = 0; i < 4; i++)
        close(held[i]);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(commands_end_to_end, stop_daemons),
        cmocka_unit_test_teardown(socket_after_command, stop_daemons),
        cmocka_unit_test_teardown(non_admin_refused, stop_daemons),
        cmocka_unit_test_teardown(admin_group_member_allowed, stop_daemons),
        cmocka_unit_test_teardown(malformed_messages, stop_daemons),
        cmocka_unit_test_teardown(save_restore_two_daemons, stop_daemons),
        cmocka_unit_test_teardown(restore_for_another_user, stop_daemons),
        cmocka_unit_test_teardown(busy_control, stop_daemons),
    };
    return tt_run_tests(tests, sizeof(tests) / sizeof(tests[0]), NULL);
}
