/* SPDX-License-Identifier: MIT */
/*
 * test_cachefs.c - tmem-cachefs end to end: real FUSE mounts of a backing
 * directory, real tmemd processes (td_harness), tmemctl for the shared
 * pool's authorisation.
 *
 *   model    random writes, truncates, appends, renames, unlinks and reads
 *            through one mount with a 16-page local cache, and writes
 *            straight into the backing directory (another tenant's), also
 *            twice within one timestamp tick; every byte read
 *            is compared with an in-memory model and with the backing
 *            directory; cleancache must have served reads.
 *   shared   two mounts of one directory in one authorised shared pool:
 *            pages A evicted serve B's reads; a change through either is
 *            never read stale through the other after it reopens the file.
 *   kill     one of two mounts is SIGKILLed while it serves reads: the
 *            daemon frees its client, the other mount reads on correctly,
 *            the daemon's self-check passes.
 *   restart  tmemd crashes (SIGKILL) and comes back, then restarts cleanly,
 *            on the same socket path (td_restart) while a thread reads
 *            through the mount: every read is right, and cleancache serves
 *            again after each reconnection.
 *   cli      usage and errors: exit codes 0/1/2 and their messages,
 *            --print-uuid (stable; a copy of the directory gets its own).
 *   busy     a busy mountpoint refused.
 *
 * Usage: test_cachefs [--test NAME] [--seed N] [-n OPS]
 * $TMEM_CACHEFS_BIN runs another build of tmem-cachefs (e.g. under TSan).
 * Every test but cli mounts: it needs /dev/fuse (readable and writable),
 * fusermount3, and root or a set-uid fusermount3.  Without them it is
 * skipped with the reason on stderr; a run of one such test (--test NAME)
 * exits 77 before anything runs, as does a run where every test skipped
 * (ctest: SKIP_RETURN_CODE 77, reported as skipped).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem_test.h"

#ifndef CACHEFS_BIN
#define CACHEFS_BIN "tmem-cachefs"
#endif

/* The binary under test: $TMEM_CACHEFS_BIN (another build of it, e.g. with
 * ThreadSanitizer), else the build's. */
static const char *cachefs_bin(void)
{
    const char *b = getenv("TMEM_CACHEFS_BIN");
    return b && *b ? b : CACHEFS_BIN;
}
#ifndef TMEMCTL_BIN
#define TMEMCTL_BIN "tmemctl"
#endif

static uint64_t g_seed;
static long g_ops = 1500;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* ---- a scratch directory: backing dir and mountpoints ---------------------- */
struct scratch {
    char dir[128];
    char back[160];
};

static void scratch_make(struct scratch *s)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/cachefs-test.XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->back, sizeof(s->back), "%s/back", s->dir);
    assert_int_equal(mkdir(s->back, 0755), 0);
}

static void scratch_remove(struct scratch *s)
{
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s->dir);
}

/* ---- mounts ------------------------------------------------------------------ */
struct mount {
    pid_t pid;
    char mnt[200];
    char log[220];
};

static void fusermount_u(const char *mnt, bool lazy)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "fusermount3 -u %s %s >/dev/null 2>&1", lazy ? "-z" : "", mnt);
    if (system(cmd) != 0) {
        /* not mounted (any more) */
    }
}

static void show_log(const struct mount *m)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "tail -n 40 %s >&2", m->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log %s)\n", m->log);
}

/* Starts tmem-cachefs -f [args] BACKING MNT (MNT = dir/name) and waits until
 * the mount answers. */
static void mount_start(struct mount *m, const struct scratch *s, const char *name,
                        const char *const *args)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->mnt, sizeof(m->mnt), "%s/%s", s->dir, name);
    snprintf(m->log, sizeof(m->log), "%s/%s.log", s->dir, name);
    assert_int_equal(mkdir(m->mnt, 0755), 0);
    const char *argv[40];
    int n = 0;
    argv[n++] = cachefs_bin();
    argv[n++] = "-f";
    for (int i = 0; args && args[i] && n < 36; i++)
        argv[n++] = args[i];
    argv[n++] = s->back;
    argv[n++] = m->mnt;
    argv[n] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);   /* unmounts if the test dies */
        if (!freopen("/dev/null", "w", stdout) || !freopen(m->log, "w", stderr))
            _exit(126);
        execv(cachefs_bin(), (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", cachefs_bin(), strerror(errno));
        _exit(127);
    }
    m->pid = pid;
    char stats[260];
    snprintf(stats, sizeof(stats), "%s/.cachefs-stats", m->mnt);
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(stats, &st) == 0)
            return;
        int ws;
        if (waitpid(pid, &ws, WNOHANG) == pid) {
            m->pid = 0;
            show_log(m);
            fail_msg("tmem-cachefs exited before mounting (status %d)", ws);
        }
        sleep_ms(10);
    }
    show_log(m);
    fail_msg("%s not mounted after 10 s", m->mnt);
}

/* Unmounts and returns the exit status (0: clean). */
static int mount_stop(struct mount *m)
{
    if (m->pid <= 0)
        return -1;
    fusermount_u(m->mnt, false);
    int ws = 0, rc = -1;
    for (int i = 0; i < 3000; i++) {
        if (waitpid(m->pid, &ws, WNOHANG) == m->pid) {
            rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
            break;
        }
        if (i == 500)
            fusermount_u(m->mnt, true);     /* busy: detach it */
        sleep_ms(10);
    }
    if (rc == -1 && !WIFSIGNALED(ws)) {
        kill(m->pid, SIGKILL);
        waitpid(m->pid, NULL, 0);
        fusermount_u(m->mnt, true);
    }
    if (rc != 0)
        show_log(m);
    m->pid = 0;
    return rc;
}

/* The mount's statistic key (the virtual file /.cachefs-stats). */
static uint64_t stat_of(const struct mount *m, const char *key)
{
    char path[260], buf[8192];
    snprintf(path, sizeof(path), "%s/.cachefs-stats", m->mnt);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_msg("%s: %s", path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    size_t kl = strlen(key);
    for (char *line = buf; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, key, kl) == 0 && line[kl] == ' ')
            return strtoull(line + kl + 1, NULL, 10);
    fail_msg("no statistic '%s' in %s", key, path);
    return 0;
}

/* The text value of a statistic (uuid). */
static void stat_text(const struct mount *m, const char *key, char *out, size_t len)
{
    char path[260], buf[8192];
    snprintf(path, sizeof(path), "%s/.cachefs-stats", m->mnt);
    FILE *f = fopen(path, "re");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char pat[64];
    snprintf(pat, sizeof(pat), "\n%s ", key);
    char *p = strstr(buf, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t l = strcspn(p, "\n");
    assert_true(l < len);
    memcpy(out, p, l);
    out[l] = '\0';
}

/* The mount's "tmem" state (on, off, waiting). */
static const char *stat_of_text_tmem(const struct mount *m)
{
    static char v[32];
    stat_text(m, "tmem", v, sizeof(v));
    return v;
}

/* NULL if this process can mount and unmount a FUSE filesystem as the
 * tests do, else what is missing.  libfuse opens /dev/fuse itself (it falls
 * back on fusermount3 only when mount(2) is refused, not when the device
 * is), mount_stop unmounts with fusermount3, and a user other than root
 * mounts through a set-uid fusermount3. */
static const char *fuse_missing(void)
{
    static char why[200];
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, sizeof(why), "cannot open /dev/fuse: %s%s", strerror(errno),
                 errno == ENOENT ? " (no FUSE here: modprobe fuse)" : "");
        return why;
    }
    close(fd);
    if (!tt_have_tool("fusermount3"))
        return "no fusermount3 in $PATH (the tests unmount with it)";
    if (geteuid() != 0) {
        struct stat st;
        if ((stat("/usr/bin/fusermount3", &st) != 0 && stat("/bin/fusermount3", &st) != 0) ||
            !(st.st_mode & S_ISUID) || st.st_uid != 0)
            return "not root, and no set-uid root fusermount3 to mount with";
    }
    return NULL;
}

#define NEED_FUSE() do { \
        const char *why_ = fuse_missing(); \
        if (why_) \
            TT_SKIP_CASE("%s", why_); \
    } while (0)

/* ---- file helpers ---------------------------------------------------------------
 * Every descriptor is O_CLOEXEC: a daemon or mount forked while a reader
 * holds a file of a mount open would keep it, and the mount busy. */
static void path_in(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* Reads all of path; returns the length (buffer malloc'ed in *out), or -errno. */
static ssize_t slurp(const char *path, uint8_t **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    for (;;) {
        if (len == cap)
            b = realloc(b, cap *= 2);
        ssize_t r = read(fd, b + len, cap - len);
        if (r < 0) {
            int e = errno;
            close(fd);
            free(b);
            return -e;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    *out = b;
    return (ssize_t)len;
}

static void spit(const char *path, const uint8_t *p, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, p, len), (ssize_t)len);
    close(fd);
}

static void fill_random(tt_rng *r, uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = tt_next(r);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
}

/* The first differing offset of a and b (len bytes), or -1. */
static long diff_at(const uint8_t *a, const uint8_t *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (a[i] != b[i])
            return (long)i;
    return -1;
}

/* path's contents must be exactly want[0..len). */
static void expect_file(const char *path, const uint8_t *want, size_t len, const char *what)
{
    uint8_t *got = NULL;
    ssize_t n = slurp(path, &got);
    if (n < 0)
        fail_msg("%s: reading %s: %s", what, path, strerror((int)-n));
    if ((size_t)n != len) {
        free(got);
        fail_msg("%s: %s has %zd bytes, expected %zu", what, path, n, len);
    }
    long d = diff_at(got, want, len);
    free(got);
    if (d >= 0)
        fail_msg("%s: %s differs at byte %ld (page %ld)", what, path, d, d / 4096);
}

/* ---- tmemctl ------------------------------------------------------------------- */
static void shared_auth(const td_t *d, uint32_t client, const char *uuid)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "%s --socket %s shared-auth %u %s allow >/dev/null",
             TMEMCTL_BIN, d->ctl, client, uuid);
    assert_int_equal(system(cmd), 0);
}

/* Waits until the mount's pool is shared (it asks every --rejoin-ms). */
static void wait_shared(const struct mount *m)
{
    for (int i = 0; i < 1000; i++) {
        if (stat_of(m, "shared") == 1)
            return;
        sleep_ms(10);
    }
    show_log(m);
    fail_msg("%s: the pool is not shared 10 s after shared-auth", m->mnt);
}

/* =========================================================================
 * 1. model: one mount under cache pressure against an in-memory model
 * ========================================================================= */
#define NSLOTS 6
#define MAXSIZE (48 * 4096)

struct mfile {
    bool exists;
    size_t size;
    uint8_t *data;          /* MAXSIZE + slack */
};

static void model_set_size(struct mfile *f, size_t size)
{
    if (size > f->size)
        memset(f->data + f->size, 0, size - f->size);
    f->size = size;
}

/* Reads [off, off+len) of slot i through the mount; compares with the model
 * and with the backing file. */
static void check_range(const char *mnt, const char *back, int i, const struct mfile *f,
                        size_t off, size_t len, const char *what)
{
    char name[16], mp[300], bp[300];
    snprintf(name, sizeof(name), "f%d", i);
    path_in(mp, sizeof(mp), mnt, name);
    path_in(bp, sizeof(bp), back, name);
    uint8_t *got = malloc(len + 1), *bk = malloc(len + 1);
    int fd = open(mp, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fail_msg("%s: open %s: %s", what, mp, strerror(errno));
    ssize_t n = pread(fd, got, len, (off_t)off);
    close(fd);
    int bfd = open(bp, O_RDONLY | O_CLOEXEC);
    assert_true(bfd >= 0);
    ssize_t bn = pread(bfd, bk, len, (off_t)off);
    close(bfd);
    size_t want = off >= f->size ? 0 : (f->size - off < len ? f->size - off : len);
    if (n != (ssize_t)want || bn != (ssize_t)want)
        fail_msg("%s: f%d [%zu,+%zu): mount read %zd, backing %zd, model %zu bytes", what, i,
                 off, len, n, bn, want);
    long d = diff_at(got, f->data + off, want);
    if (d >= 0)
        fail_msg("%s: f%d: the mount differs from the model at byte %zu (page %zu)", what, i,
                 off + (size_t)d, (off + (size_t)d) / 4096);
    d = diff_at(bk, f->data + off, want);
    if (d >= 0)
        fail_msg("%s: f%d: the backing file differs from the model at byte %zu", what, i,
                 off + (size_t)d);
    free(got);
    free(bk);
}

static void test_model(void **state)
{
    (void)state;
    NEED_FUSE();
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    struct scratch s;
    scratch_make(&s);
    struct mount m;
    const char *args[] = { "--socket", d.sock, "--cache-pages", "16", "--name", "cachefs:model",
                           NULL };
    mount_start(&m, &s, "mnt", args);
    tt_rng r;
    tt_seed(&r, g_seed);
    struct mfile files[NSLOTS];
    uint8_t *buf = malloc(MAXSIZE + 4 * 4096);
    char mp[300], mp2[300], name[16], name2[16];

    for (int i = 0; i < NSLOTS; i++) {
        files[i].data = calloc(1, MAXSIZE + 4 * 4096);
        files[i].size = (size_t)tt_below(&r, MAXSIZE);
        files[i].exists = true;
        fill_random(&r, files[i].data, files[i].size);
        snprintf(name, sizeof(name), "f%d", i);
        path_in(mp, sizeof(mp), m.mnt, name);
        spit(mp, files[i].data, files[i].size);
    }

    long counts[9] = { 0 };
    for (long op = 0; op < g_ops; op++) {
        int i = (int)tt_below(&r, NSLOTS);
        struct mfile *f = &files[i];
        snprintf(name, sizeof(name), "f%d", i);
        path_in(mp, sizeof(mp), m.mnt, name);
        unsigned kind = (unsigned)tt_below(&r, 100);
        char what[64];
        snprintf(what, sizeof(what), "op %ld (seed %llu)", op, (unsigned long long)g_seed);
        if (!f->exists) {
            /* create it again */
            f->size = (size_t)tt_below(&r, MAXSIZE);
            fill_random(&r, f->data, f->size);
            spit(mp, f->data, f->size);
            f->exists = true;
            counts[7]++;
            continue;
        }
        if (kind < 33) {                            /* read all */
            check_range(m.mnt, s.back, i, f, 0, MAXSIZE + 4096, what);
            counts[0]++;
        } else if (kind < 47) {                     /* read a range */
            size_t off = (size_t)tt_below(&r, f->size + 8192);
            size_t len = 1 + (size_t)tt_below(&r, 5 * 4096);
            check_range(m.mnt, s.back, i, f, off, len, what);
            counts[1]++;
        } else if (kind < 63) {                     /* write, read back in the session */
            size_t off = (size_t)tt_below(&r, f->size + 4096);
            size_t len = 1 + (size_t)tt_below(&r, 3 * 4096);
            if (off + len > MAXSIZE)
                len = off < MAXSIZE ? MAXSIZE - off : 0;
            if (!len)
                continue;
            fill_random(&r, buf, len);
            int fd = open(mp, O_RDWR | O_CLOEXEC);
            assert_true(fd >= 0);
            assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
            if (off > f->size)
                model_set_size(f, off);
            memcpy(f->data + off, buf, len);
            if (off + len > f->size)
                f->size = off + len;
            /* the same descriptor sees its write at once */
            size_t roff = off >= 100 ? off - 100 : 0;
            size_t rlen = len + 200;
            ssize_t n = pread(fd, buf, rlen, (off_t)roff);
            size_t want = f->size - roff < rlen ? f->size - roff : rlen;
            assert_int_equal(n, (ssize_t)want);
            if (diff_at(buf, f->data + roff, want) >= 0)
                fail_msg("%s: f%d: read after write differs", what, i);
            close(fd);
            counts[2]++;
        } else if (kind < 70) {                     /* append */
            size_t len = 1 + (size_t)tt_below(&r, 2 * 4096);
            if (f->size + len > MAXSIZE)
                continue;
            fill_random(&r, buf, len);
            int fd = open(mp, O_WRONLY | O_APPEND | O_CLOEXEC);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, buf, len), (ssize_t)len);
            close(fd);
            memcpy(f->data + f->size, buf, len);
            f->size += len;
            counts[3]++;
        } else if (kind < 79) {                     /* truncate (path or descriptor) */
            size_t size = (size_t)tt_below(&r, MAXSIZE);
            if (tt_below(&r, 2)) {
                assert_int_equal(truncate(mp, (off_t)size), 0);
            } else {
                int fd = open(mp, O_RDWR | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(ftruncate(fd, (off_t)size), 0);
                close(fd);
            }
            model_set_size(f, size);
            counts[4]++;
        } else if (kind < 87) {
            /* another tenant: the backing file changes behind the mount's
             * back (same size, so only the ctime tells); the next open
             * through the mount must see it */
            char bp[300];
            path_in(bp, sizeof(bp), s.back, name);
            size_t off = (size_t)tt_below(&r, f->size + 1);
            size_t len = (size_t)tt_below(&r, 2 * 4096);
            if (off + len > f->size)
                len = f->size - off;
            fill_random(&r, buf, len);
            int fd = open(bp, O_WRONLY | O_CLOEXEC);
            assert_true(fd >= 0);
            assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
            close(fd);
            memcpy(f->data + off, buf, len);
            counts[8]++;
        } else if (kind < 95) {                     /* rename over another slot or not */
            int j = (int)tt_below(&r, NSLOTS);
            if (j == i)
                continue;
            snprintf(name2, sizeof(name2), "f%d", j);
            path_in(mp2, sizeof(mp2), m.mnt, name2);
            assert_int_equal(rename(mp, mp2), 0);
            struct mfile t = files[j];
            files[j] = *f;
            *f = t;
            f->exists = false;
            counts[5]++;
        } else {                                    /* unlink */
            assert_int_equal(unlink(mp), 0);
            f->exists = false;
            counts[6]++;
        }
    }
    /* everything once more, and the listing */
    for (int i = 0; i < NSLOTS; i++) {
        snprintf(name, sizeof(name), "f%d", i);
        path_in(mp, sizeof(mp), m.mnt, name);
        if (files[i].exists)
            expect_file(mp, files[i].data, files[i].size, "final");
        else
            assert_int_equal(access(mp, F_OK), -1);
    }
    /* coarse timestamps on purpose: another tenant changes a file twice
     * within one clock tick (same size, so the two versions can share a
     * ctime), and the mount reads it between the two changes and after */
    {
        char bp[300];
        path_in(bp, sizeof(bp), s.back, "tick");
        path_in(mp, sizeof(mp), m.mnt, "tick");
        size_t tsize = 6 * 4096;
        fill_random(&r, buf, tsize);
        spit(bp, buf, tsize);
        for (int round = 0; round < 150; round++) {
            for (int k = 0; k < 2; k++) {
                size_t off = (size_t)tt_below(&r, tsize - 64);
                fill_random(&r, buf + off, 64);
                int fd = open(bp, O_WRONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(pwrite(fd, buf + off, 64, (off_t)off), 64);
                close(fd);
                char what[64];
                snprintf(what, sizeof(what), "same-tick round %d.%d", round, k);
                expect_file(mp, buf, tsize, what);
            }
        }
    }
    uint64_t hits = stat_of(&m, "cc_succ_gets"), puts = stat_of(&m, "cc_puts");
    printf("model: %ld ops (reads %ld, ranges %ld, writes %ld, appends %ld, truncates %ld, "
           "renames %ld, unlinks %ld, creates %ld, foreign writes %ld); cleancache puts %llu, "
           "hits %llu, local hits %llu, backing reads %llu\n", g_ops, counts[0], counts[1],
           counts[2], counts[3], counts[4], counts[5], counts[6], counts[7], counts[8],
           (unsigned long long)puts,
           (unsigned long long)hits, (unsigned long long)stat_of(&m, "local_hits"),
           (unsigned long long)stat_of(&m, "backing_reads"));
    assert_true(puts > 0);
    assert_true(hits > 0);          /* the cleancache path was exercised */
    assert_int_equal(mount_stop(&m), 0);
    assert_int_equal(td_stop(&d), 0);
    for (int i = 0; i < NSLOTS; i++)
        free(files[i].data);
    free(buf);
    scratch_remove(&s);
}

/* =========================================================================
 * 2. shared: two tenants of one directory in one shared pool
 * ========================================================================= */
static void start_shared_pair(td_t *d, struct scratch *s, struct mount *a, struct mount *b)
{
    const char *aa[] = { "--socket", d->sock, "--cache-pages", "16", "--shared",
                         "--rejoin-ms", "100", "--name", "cachefs:A", NULL };
    const char *ba[] = { "--socket", d->sock, "--cache-pages", "16", "--shared",
                         "--rejoin-ms", "100", "--name", "cachefs:B", NULL };
    mount_start(a, s, "A", aa);
    mount_start(b, s, "B", ba);
    char ua[64], ub[64], up[64];
    stat_text(a, "uuid", ua, sizeof(ua));
    stat_text(b, "uuid", ub, sizeof(ub));
    assert_string_equal(ua, ub);            /* one directory, one uuid */
    /* --print-uuid agrees */
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "%s --print-uuid %s", cachefs_bin(), s->back);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(up, sizeof(up), p));
    assert_int_equal(pclose(p), 0);
    up[strcspn(up, "\n")] = '\0';
    assert_string_equal(ua, up);
    /* private until an administrator says so */
    assert_int_equal(stat_of(a, "shared"), 0);
    shared_auth(d, (uint32_t)stat_of(a, "client_id"), ua);
    shared_auth(d, (uint32_t)stat_of(b, "client_id"), ua);
    wait_shared(a);
    wait_shared(b);
}

static void test_shared(void **state)
{
    (void)state;
    NEED_FUSE();
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    struct scratch s;
    scratch_make(&s);
    tt_rng r;
    tt_seed(&r, g_seed);
    enum { PAGES = 64 };
    size_t size = PAGES * 4096;
    uint8_t *model = malloc(size + 8 * 4096), *buf = malloc(8 * 4096);
    fill_random(&r, model, size);
    char bp[300];
    path_in(bp, sizeof(bp), s.back, "data");
    spit(bp, model, size);
    sleep_ms(50);       /* past the timestamp tick: the version is trusted at once */

    struct mount a, b;
    start_shared_pair(&d, &s, &a, &b);
    char pa[300], pb[300];
    path_in(pa, sizeof(pa), a.mnt, "data");
    path_in(pb, sizeof(pb), b.mnt, "data");
    /* the uuid file is there but hidden */
    char up[300];
    path_in(up, sizeof(up), s.back, ".tmem-uuid");
    assert_int_equal(access(up, F_OK), 0);
    path_in(up, sizeof(up), a.mnt, ".tmem-uuid");
    assert_int_equal(access(up, F_OK), -1);

    /* A reads the file: 48 of its 64 pages leave A's 16-page cache for the pool */
    expect_file(pa, model, size, "A's first read");
    uint64_t a_puts = stat_of(&a, "cc_puts");
    assert_true(a_puts >= PAGES - 16);
    /* B reads it: what A evicted comes from the pool, not the backing store */
    uint64_t b_reads0 = stat_of(&b, "backing_reads");
    expect_file(pb, model, size, "B's first read");
    uint64_t b_hits = stat_of(&b, "cc_succ_gets");
    uint64_t b_reads = stat_of(&b, "backing_reads") - b_reads0;
    printf("shared: A put %llu pages; B read %d pages: %llu from the pool, %llu from the "
           "backing store\n", (unsigned long long)a_puts, PAGES, (unsigned long long)b_hits,
           (unsigned long long)b_reads);
    assert_true(b_hits > 0);
    assert_true(b_reads < PAGES);
    /* B's reads of many pages asked the pool for them a window at a time
     * (one batch through the daemon's window), not a page at a time */
    uint64_t b_batches = stat_of(&b, "tier_batches");
    printf("shared: B asked the pool in %llu read-ahead windows\n",
           (unsigned long long)b_batches);
    assert_true(b_batches > 0);
    assert_true(b_batches * 2 <= b_hits + b_reads);

    /* changes through one tenant are never read stale through the other once
     * it reopens the file: both have the old version cached locally and in
     * the pool */
    for (int round = 0; round < 24; round++) {
        bool via_a = round % 2 == 0;
        const char *wp = via_a ? pa : pb, *rp = via_a ? pb : pa;
        int fd = open(wp, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        unsigned how = (unsigned)tt_below(&r, 4);
        if (how < 3) {                          /* overwrite a range (maybe grow) */
            size_t off = (size_t)tt_below(&r, size);
            size_t len = 1 + (size_t)tt_below(&r, 6 * 4096);
            if (off + len > PAGES * 4096 + 4 * 4096)
                len = PAGES * 4096 + 4 * 4096 - off;
            fill_random(&r, buf, len);
            assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
            if (off > size)
                memset(model + size, 0, off - size);
            memcpy(model + off, buf, len);
            if (off + len > size)
                size = off + len;
        } else {                                /* truncate, same size or shorter */
            size_t nsize = size - (size_t)tt_below(&r, 3 * 4096);
            assert_int_equal(ftruncate(fd, (off_t)nsize), 0);
            size = nsize;
        }
        close(fd);
        char what[64];
        snprintf(what, sizeof(what), "round %d, read through %s", round, via_a ? "B" : "A");
        expect_file(rp, model, size, what);
        snprintf(what, sizeof(what), "round %d, read through %s", round, via_a ? "A" : "B");
        expect_file(wp, model, size, what);
        /* and the backing store agrees */
        expect_file(bp, model, size, "backing");
    }
    assert_int_equal(mount_stop(&a), 0);
    assert_int_equal(mount_stop(&b), 0);
    assert_int_equal(td_stop(&d), 0);
    free(model);
    free(buf);
    scratch_remove(&s);
}

/* =========================================================================
 * 3. kill: a tenant SIGKILLed while it serves
 * ========================================================================= */
static void test_kill(void **state)
{
    (void)state;
    NEED_FUSE();
    td_t d;
    assert_int_equal(td_start(&d, NULL), 0);
    struct scratch s;
    scratch_make(&s);
    tt_rng r;
    tt_seed(&r, g_seed);
    enum { NF = 3, PAGES = 40 };
    size_t size = PAGES * 4096;
    uint8_t *data[NF];
    char name[16], bp[300];
    for (int i = 0; i < NF; i++) {
        data[i] = malloc(size);
        fill_random(&r, data[i], size);
        snprintf(name, sizeof(name), "k%d", i);
        path_in(bp, sizeof(bp), s.back, name);
        spit(bp, data[i], size);
    }
    sleep_ms(50);
    struct mount a, b;
    start_shared_pair(&d, &s, &a, &b);
    assert_int_equal(td_wait_connections(&d, 2), 0);
    uint32_t a_id = (uint32_t)stat_of(&a, "client_id");

    /* a reader hammers A until A dies under it */
    pid_t reader = fork();
    assert_true(reader >= 0);
    if (reader == 0) {
        for (long n = 0;; n++) {
            char p[300];
            snprintf(name, sizeof(name), "k%ld", n % NF);
            path_in(p, sizeof(p), a.mnt, name);
            uint8_t *got;
            ssize_t len = slurp(p, &got);
            if (len < 0)
                _exit(0);               /* the mount is gone: expected */
            bool ok = (size_t)len == size && memcmp(got, data[n % NF], size) == 0;
            free(got);
            if (!ok)
                _exit(3);               /* wrong data before the kill: a failure */
        }
    }
    /* let A put pages into the shared pool, then kill it mid-run */
    for (int i = 0; i < 1000 && stat_of(&a, "cc_puts") < 2 * PAGES; i++)
        sleep_ms(10);
    assert_int_equal(kill(a.pid, SIGKILL), 0);
    int ws;
    assert_int_equal(waitpid(a.pid, &ws, 0), a.pid);
    assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
    a.pid = 0;
    assert_int_equal(waitpid(reader, &ws, 0), reader);
    assert_true(WIFEXITED(ws));
    assert_int_equal(WEXITSTATUS(ws), 0);
    fusermount_u(a.mnt, true);

    /* the daemon frees the dead client */
    assert_int_equal(td_wait_connections(&d, 1), 0);
    struct tmw_ctl_client *cl;
    size_t n;
    assert_int_equal(tmc_clients(d.ctl, &cl, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(cl[i].info.id, a_id);
    free(cl);

    /* B reads on, right, and the shared pool still serves it (A's pages
     * stayed: the pool outlives a member) */
    uint64_t hits0 = stat_of(&b, "cc_succ_gets");
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < NF; i++) {
            char p[300];
            snprintf(name, sizeof(name), "k%d", i);
            path_in(p, sizeof(p), b.mnt, name);
            expect_file(p, data[i], size, "B after A's death");
        }
    uint64_t hits = stat_of(&b, "cc_succ_gets") - hits0;
    printf("kill: after A's death B had %llu cleancache hits\n", (unsigned long long)hits);
    assert_true(hits > 0);
    assert_int_equal(mount_stop(&b), 0);
    assert_int_equal(td_stop(&d), 0);       /* 0: the daemon's self-check passed */
    for (int i = 0; i < NF; i++)
        free(data[i]);
    scratch_remove(&s);
}

/* =========================================================================
 * 4. restart: tmemd goes away and comes back under load
 * ========================================================================= */
struct loader {
    const char *mnt;
    uint8_t **data;
    int nf;
    size_t size;
    atomic_bool stop;
    atomic_long reads, errors;
    char err[400];
};

static void *load(void *arg)
{
    struct loader *l = arg;
    for (long n = 0; !atomic_load(&l->stop); n++) {
        char p[300], name[16];
        snprintf(name, sizeof(name), "r%ld", n % l->nf);
        path_in(p, sizeof(p), l->mnt, name);
        uint8_t *got;
        ssize_t len = slurp(p, &got);
        bool ok = len == (ssize_t)l->size && memcmp(got, l->data[n % l->nf], l->size) == 0;
        if (len >= 0)
            free(got);
        if (!ok && atomic_fetch_add(&l->errors, 1) == 0)
            snprintf(l->err, sizeof(l->err), "%s: %zd bytes%s", p, len,
                     len == (ssize_t)l->size ? ", wrong data" : "");
        atomic_fetch_add(&l->reads, 1);
    }
    return NULL;
}

/* Waits (at most 10 s) until the statistic key passes above. */
static uint64_t wait_above(const struct mount *m, const char *key, uint64_t above)
{
    for (int i = 0; i < 1000 && stat_of(m, key) <= above; i++)
        sleep_ms(10);
    return stat_of(m, key);
}

static void test_restart(void **state)
{
    (void)state;
    NEED_FUSE();
    struct scratch s;
    scratch_make(&s);
    td_t d;
    /* a daemon that runs the mount's pools: its crash takes them (with
     * lent memory the mount's private pool would stay with it) */
    td_window_mode = 1;
    assert_int_equal(td_start(&d, NULL), 0);

    tt_rng r;
    tt_seed(&r, g_seed);
    enum { NF = 2, PAGES = 40 };
    size_t size = PAGES * 4096;
    static uint8_t *data[NF];
    for (int i = 0; i < NF; i++) {
        char name[16], bp[300];
        data[i] = malloc(size);
        fill_random(&r, data[i], size);
        snprintf(name, sizeof(name), "r%d", i);
        path_in(bp, sizeof(bp), s.back, name);
        spit(bp, data[i], size);
    }
    sleep_ms(50);
    static struct mount m;
    const char *args[] = { "--socket", d.sock, "--cache-pages", "16", "--reconnect-ms", "100",
                           "--name", "cachefs:restart", NULL };
    mount_start(&m, &s, "mnt", args);

    /* static: a failed assertion leaves the thread running on it */
    static struct loader l;
    l.mnt = m.mnt;
    l.data = data;
    l.nf = NF;
    l.size = size;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, load, &l), 0);
    uint64_t hits_before = wait_above(&m, "cc_succ_gets", 0);
    assert_true(hits_before > 0);

    /* 1. the daemon crashes: reads go on from the backing store */
    assert_int_equal(td_kill(&d), 0);
    long reads0 = atomic_load(&l.reads);
    for (int i = 0; i < 1000 && atomic_load(&l.reads) < reads0 + 4; i++)
        sleep_ms(10);
    for (int i = 0; i < 1000 && stat_of(&m, "connected") != 0; i++)
        sleep_ms(10);
    assert_int_equal(stat_of(&m, "connected"), 0);
    long reads_away = atomic_load(&l.reads) - reads0;
    uint64_t hits_away = stat_of(&m, "cc_succ_gets");

    /* it comes back on the same socket: the mount reconnects and uses it */
    assert_int_equal(td_restart(&d, NULL), 0);
    assert_true(wait_above(&m, "cc_reconnects", 0) >= 1);
    uint64_t hits_back = wait_above(&m, "cc_succ_gets", hits_away);
    assert_true(hits_back > hits_away);

    /* 2. a clean restart under load (td_restart: the old daemon's exit
     * status, its self-check, must be 0) */
    uint64_t rec = stat_of(&m, "cc_reconnects");
    assert_int_equal(td_restart(&d, NULL), 0);
    assert_true(wait_above(&m, "cc_reconnects", rec) > rec);
    uint64_t hits_after = wait_above(&m, "cc_succ_gets", stat_of(&m, "cc_succ_gets"));

    atomic_store(&l.stop, true);
    pthread_join(th, NULL);
    printf("restart: %ld whole-file reads (%ld while the daemon was away), %ld wrong; "
           "cleancache hits %llu before the crash, %llu while away, %llu after the restart, "
           "%llu after the clean restart\n", atomic_load(&l.reads), reads_away,
           atomic_load(&l.errors), (unsigned long long)hits_before,
           (unsigned long long)hits_away, (unsigned long long)hits_back,
           (unsigned long long)hits_after);
    if (atomic_load(&l.errors))
        fail_msg("a read through the mount was wrong: %s", l.err);
    assert_true(hits_after > hits_back);    /* cleancache serves again */
    assert_int_equal(mount_stop(&m), 0);
    assert_int_equal(td_stop(&d), 0);
    for (int i = 0; i < NF; i++)
        free(data[i]);
    scratch_remove(&s);
    td_window_mode = 0;
}

/* =========================================================================
 * 5. cli: usage, errors and exit codes
 * ========================================================================= */
/* Runs tmem-cachefs with args (a shell fragment); its exit status, and its
 * stderr (and stdout) in out. */
static int run_cli(const char *args, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", cachefs_bin(), args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, len - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define EXPECT_CLI(args, status, text) do { \
        char out_[8192]; \
        int st_ = run_cli(args, out_, sizeof(out_)); \
        if (st_ != (status) || !strstr(out_, text)) \
            fail_msg("tmem-cachefs %s: status %d (expected %d), output:\n%s\n(expected '%s')", \
                     args, st_, status, out_, text); \
    } while (0)

static void test_cli(void **state)
{
    (void)state;
    struct scratch s;
    scratch_make(&s);
    char args[600];
    EXPECT_CLI("--help", 0, "usage: tmem-cachefs");
    EXPECT_CLI("--version", 0, "tmem-cachefs");
    EXPECT_CLI("", 2, "expected BACKING_DIR and MOUNTPOINT");
    EXPECT_CLI("a b c", 2, "too many arguments");
    EXPECT_CLI("--bogus a b", 2, "--help");
    EXPECT_CLI("--cache-pages 0 a b", 2, "--cache-pages '0'");
    EXPECT_CLI("--delay-us x a b", 2, "--delay-us 'x'");
    snprintf(args, sizeof(args), "%s/missing %s", s.dir, s.dir);
    EXPECT_CLI(args, 1, "backing directory");
    snprintf(args, sizeof(args), "%s %s/missing", s.back, s.dir);
    EXPECT_CLI(args, 1, "No such file or directory");
    snprintf(args, sizeof(args), "%s %s", s.back, s.back);
    EXPECT_CLI(args, 1, "inside the backing directory");
    /* --print-uuid: created once, the same every time, hidden file */
    char a[1024], b[1024];
    snprintf(args, sizeof(args), "--print-uuid %s", s.back);
    assert_int_equal(run_cli(args, a, sizeof(a)), 0);
    assert_int_equal(run_cli(args, b, sizeof(b)), 0);
    assert_string_equal(a, b);
    tmem_uuid_t u;
    a[strcspn(a, "\n")] = '\0';
    assert_int_equal(tmem_uuid_parse(a, &u), 0);
    /* a copy of the directory gets a uuid of its own */
    char cmd[600], copy[300];
    snprintf(copy, sizeof(copy), "%s/copy", s.dir);
    snprintf(cmd, sizeof(cmd), "cp -a %s %s", s.back, copy);
    assert_int_equal(system(cmd), 0);
    snprintf(args, sizeof(args), "--print-uuid %s", copy);
    assert_int_equal(run_cli(args, b, sizeof(b)), 0);
    assert_non_null(strstr(b, "written for another directory"));
    char *last = strrchr(b, '\n');
    assert_non_null(last);
    *last = '\0';                       /* the uuid is the last line */
    last = strrchr(b, '\n');
    assert_non_null(last);
    assert_int_equal(tmem_uuid_parse(last + 1, &u), 0);
    assert_string_not_equal(a, last + 1);
    scratch_remove(&s);
}

/* A busy mountpoint is refused (it mounts once, without tmem). */
static void test_busy(void **state)
{
    (void)state;
    NEED_FUSE();
    struct scratch s;
    scratch_make(&s);
    char args[600];
    struct mount m;
    const char *margs[] = { "--no-tmem", NULL };
    mount_start(&m, &s, "mnt", margs);
    assert_string_equal(stat_of_text_tmem(&m), "off");
    snprintf(args, sizeof(args), "--no-tmem %s %s", s.back, m.mnt);
    EXPECT_CLI(args, 1, "busy");
    assert_int_equal(mount_stop(&m), 0);
    scratch_remove(&s);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--test"))
            only = argv[i + 1];
        else if (!strcmp(argv[i], "-n"))
            g_ops = strtol(argv[i + 1], NULL, 0);
    }
    /* every test but cli mounts: without FUSE, one of them alone is
     * skipped before anything runs (all of them: each is, cli runs) */
    if (only && strcmp(only, "test_cli") != 0 && fuse_missing())
        tt_skip_all("test_cachefs", fuse_missing());
    g_seed = tt_seed_from_args(argc, argv, "test_cachefs");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_shared),
        cmocka_unit_test(test_kill),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_busy),
    };
    return tt_run_tests(tests, sizeof(tests) / sizeof(tests[0]), only);
}
