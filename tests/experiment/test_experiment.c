/* SPDX-License-Identifier: MIT */
/*
 * test_experiment.c - a smoke test of the multi-tenant experiment
 * (bench/experiment, docs/experiment.md): the driver runs at tiny sizes
 * through every configuration, with real tmemd processes, and its outputs
 * must obey what the experiment relies on.  No timing is asserted: only
 * counts, contents and exit statuses.
 *
 *   invariants   every page read back matched what was written (the driver
 *                checks each page's full contents against the version its
 *                tenant last wrote); every tmemd exited with status 0; every
 *                configuration made the same accesses; every fault was served
 *                by exactly one source (file, swap, cleancache, frontswap, or
 *                a first touch); static partitioning is deterministic (two
 *                runs, the same I/O); the upper bound, and tmem with
 *                compression, do less backing I/O than static; tmem served
 *                pages.  Uncompressed tmem is not held to less I/O than
 *                static: its metadata counts against max_memory and equal
 *                weights cap the hot tenant, so its margin is a few percent
 *                and a benchmark's result, not an invariant
 *                (docs/experiment.md).
 *   bad_options  bad input is refused with a one-line error naming it.
 *   cleanup      a tmemd that cannot start fails the run, and the driver
 *                leaves no process and no temporary file behind.
 *
 * The workload's seed is random, printed, and replayed with --seed N.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmem_test.h"

#ifndef XP_DRIVER
#error "XP_DRIVER: the path of the experiment's driver"
#endif

static uint64_t g_seed;
static char g_dir[64];

/* Runs the driver with argv (NULL-terminated, without the program), its
 * stdout to /dev/null and its stderr to err (if not NULL, up to size
 * bytes); returns its exit status (or 128 + signal). */
static int run_driver(const char *const *args, char *err, size_t size)
{
    char errpath[128];
    snprintf(errpath, sizeof(errpath), "%s/stderr", g_dir);
    const char *argv[64];
    int n = 0;
    argv[n++] = XP_DRIVER;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 63);
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY | O_CLOEXEC);
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0 || fd < 0)
            _exit(126);
        dup2(out, 1);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (err) {
        err[0] = 0;
        FILE *f = fopen(errpath, "r");
        if (f) {
            size_t got = fread(err, 1, size - 1, f);
            err[got] = 0;
            fclose(f);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ------------------------------------------------------------------------
 * A TSV file: a header row, then rows; cells by column name
 * ---------------------------------------------------------------------- */
#define MAX_ROWS 32
#define MAX_COLS 48

struct tsv {
    int rows, cols;
    char head[MAX_COLS][40];
    char cell[MAX_ROWS][MAX_COLS][40];
};

static void split(char *line, char out[][40], int *n)
{
    *n = 0;
    line[strcspn(line, "\n")] = 0;
    for (char *save = NULL, *tok = strtok_r(line, "\t", &save); tok && *n < MAX_COLS;
         tok = strtok_r(NULL, "\t", &save))
        snprintf(out[(*n)++], 40, "%s", tok);
}

static void tsv_read(const char *path, struct tsv *t)
{
    memset(t, 0, sizeof(*t));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    assert_non_null(fgets(line, sizeof(line), f));
    split(line, t->head, &t->cols);
    while (t->rows < MAX_ROWS && fgets(line, sizeof(line), f)) {
        int n;
        split(line, t->cell[t->rows], &n);
        assert_int_equal(n, t->cols);
        t->rows++;
    }
    fclose(f);
}

static double num(const struct tsv *t, int row, const char *col)
{
    for (int c = 0; c < t->cols; c++)
        if (!strcmp(t->head[c], col))
            return strtod(t->cell[row][c], NULL);
    fail_msg("no column %s", col);
    return 0;
}

static int row_of(const struct tsv *t, const char *config, int nth)
{
    for (int r = 0; r < t->rows; r++)
        if (!strcmp(t->cell[r][0], config) && nth-- == 0)
            return r;
    fail_msg("no row %s", config);
    return -1;
}

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */
#define TENANTS  3
#define PHASES   3
#define ACCESSES 1500

static void test_invariants(void **state)
{
    (void)state;
    char seed[32], tsv[128], runs[128];
    snprintf(seed, sizeof(seed), "%llu", (unsigned long long)g_seed);
    snprintf(tsv, sizeof(tsv), "%s/summary.tsv", g_dir);
    snprintf(runs, sizeof(runs), "%s/runs.tsv", g_dir);
    const char *args[] = {
        "--tenants", "3", "--private", "96", "--slack", "288", "--accesses", "1500",
        "--warmup", "3", "--phases", "3", "--io-delay-us", "20", "--reps", "2",
        "--configs", "static,tmem,tmem-lz4,tmem-zstd,tmem-lz4-hotw,upper",
        "--seed", seed, "--tsv", tsv, "--runs-tsv", runs, "--dir", g_dir,
        "--timeout", "600", NULL,
    };
    char err[4096];
    int rc = run_driver(args, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s", err);
    assert_int_equal(rc, 0);

    struct tsv s, r;
    tsv_read(tsv, &s);
    tsv_read(runs, &r);
    assert_int_equal(s.rows, 6);
    assert_int_equal(r.rows, 12);
    for (int i = 0; i < s.rows; i++) {
        assert_int_equal((int)num(&s, i, "verify_failed"), 0);
        assert_int_equal((int)num(&s, i, "daemon_bad"), 0);
    }
    for (int i = 0; i < r.rows; i++) {
        /* the same work in every configuration */
        assert_int_equal((uint64_t)num(&r, i, "accesses"), (uint64_t)TENANTS * PHASES * ACCESSES);
        /* every fault served once: file, swap, cleancache, frontswap, or new */
        double faults = num(&r, i, "accesses") - num(&r, i, "hits");
        double served = num(&r, i, "file_reads") + num(&r, i, "swap_reads") +
                        num(&r, i, "cc_hits") + num(&r, i, "fs_loads") + num(&r, i, "first_touch");
        assert_true(faults == served);
        assert_int_equal((int)num(&r, i, "verify_failed"), 0);
        if (!strncmp(r.cell[i][0], "tmem", 4)) {
            assert_int_equal((int)num(&r, i, "daemon_status"), 0);
            assert_true(num(&r, i, "cc_hits") + num(&r, i, "fs_loads") > 0);
            assert_true(num(&r, i, "tmem_calls") > 0);
        } else {
            assert_true(num(&r, i, "tmem_calls") == 0);
        }
    }
    /* static partitioning is deterministic */
    int s0 = row_of(&r, "static", 0), s1 = row_of(&r, "static", 1);
    assert_true(num(&r, s0, "file_reads") == num(&r, s1, "file_reads"));
    assert_true(num(&r, s0, "swap_reads") == num(&r, s1, "swap_reads"));
    assert_true(num(&r, s0, "swap_writes") == num(&r, s1, "swap_writes"));
    /* less backing I/O than static: the upper bound, tmem with compression */
    double st = num(&s, row_of(&s, "static", 0), "io_total");
    assert_true(st > 0);
    assert_true(num(&s, row_of(&s, "upper", 0), "io_total") < st);
    assert_true(num(&s, row_of(&s, "tmem-lz4", 0), "io_total") < st);
    assert_true(num(&s, row_of(&s, "tmem-zstd", 0), "io_total") < st);
    assert_true(num(&s, row_of(&s, "tmem-lz4-hotw", 0), "io_total") < st);
}

static void expect_refused(const char *const *args, const char *what)
{
    char err[4096];
    int rc = run_driver(args, err, sizeof(err));
    assert_true(rc != 0);
    if (!strstr(err, what))
        fail_msg("stderr does not name %s: %s", what, err);
    /* one line */
    char *nl = strchr(err, '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], 0);
}

static void test_bad_options(void **state)
{
    (void)state;
    expect_refused((const char *const[]){ "--tenants", "0", NULL }, "--tenants");
    expect_refused((const char *const[]){ "--tenants", "99", NULL }, "--tenants");
    expect_refused((const char *const[]){ "--configs", "static,bogus", NULL }, "bogus");
    expect_refused((const char *const[]){ "--slack", "100", NULL }, "--slack");
    expect_refused((const char *const[]){ "--file-share", "1.5", NULL }, "--file-share");
    expect_refused((const char *const[]){ "--private", "64", "--cold-ws", "1000",
                                          "--hot-ws", "500", NULL }, "--cold-ws");
    expect_refused((const char *const[]){ "--daemon-set", "novalue", NULL }, "--daemon-set");
    expect_refused((const char *const[]){ "stray", NULL }, "stray");
}

/* Entries of g_dir named tmem-xp.* (the driver's temporary directories). */
static int leftovers(void)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += !strncmp(e->d_name, "tmem-xp.", 8);
    closedir(d);
    return n;
}

static void test_cleanup(void **state)
{
    (void)state;
    const char *args[] = {
        "--tenants", "2", "--private", "32", "--slack", "256", "--accesses", "200",
        "--warmup", "0", "--phases", "2", "--io-delay-us", "0", "--reps", "1",
        "--configs", "static,tmem", "--tmemd", "/nonexistent/tmemd", "--dir", g_dir, NULL,
    };
    char err[4096];
    int rc = run_driver(args, err, sizeof(err));
    assert_true(rc != 0);
    assert_non_null(strstr(err, "tmemd"));
    assert_int_equal(leftovers(), 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/test_experiment.XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    g_seed = tt_seed_from_args(argc, argv, "test_experiment");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_cleanup),
        cmocka_unit_test(test_invariants),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
