/* SPDX-License-Identifier: MIT */
/*
 * lend_bench.c - calls at the caller's speed (tmem-lend-bench): tmem through
 * tmemd against the same calls on an in-process engine, the way tenants
 * call.  Every figure is a ratio of two things measured in the same run,
 * in alternating rounds, so that the higher is the better (a ceiling on a
 * cost becomes a floor on in-process / through-the-daemon):
 *
 *   S1  one put and one get of the same page, 1-3 ms apart from the next
 *       pair (a tenant computing between calls), p50 of the pair: in-process
 *       / through tmem_connect.                 floor 0.667 (at most 1.5x)
 *   S2  the same with two busy loops running on the machine.  floor 0.667
 *   S3  the get's p99 in S2's rounds against 100 us: 100 us / p99. floor 1
 *   T1  put+get back to back, one client: ops/s through tmem_connect /
 *       in-process.                                          floor 0.8
 *   T2  four client processes on the two CPUs against one: total ops/s /
 *       one process's.                                        floor 1.8
 *   V1  a shared pool through the daemon, 32-page vectors (tmem_put_pages
 *       and tmem_get_pages), back to back: in-process per-page cost /
 *       through the daemon.                       floor 0.5 (at most 2x)
 *   V2  the same, the vectors 1-3 ms apart.                  floor 0.5
 *
 * Beside them (information): the same sporadic pairs through a tmemd that
 * does not lend memory (memory.lend=false: every call a hand-off to its
 * worker), the design this replaced.
 *
 * Pages are text-like (LZ4 about 2x), the daemon and the in-process engine
 * have the same configuration (the daemon's defaults: LZ4, dedup; --compress
 * changes the codec of both).  The
 * daemon is started here on temporary sockets and stopped at the end.
 * Rounds during which other processes used more than QUIET_CPUS are set
 * aside and rerun (bench_util.h), except in S2/S3, whose load is ours.
 * Every page read back is checked.
 *
 * Output: Markdown on stdout; --tsv FILE writes the rows.  bench/run.sh
 * --only lend runs it; docs/benchmarks.md explains the figures.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmem/tmem.h"

#include "bench_util.h"

#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

#define PAGE        ((size_t)TMEM_PAGE_SIZE)
#define NPAGES      4096u               /* distinct pages (16 MiB) */
#define MAX_ROUNDS  32
#define VEC         32u
_Static_assert(MAX_ROUNDS <= BENCH_MAX_ROUNDS, "bench_util.h: room for the rounds");

static struct {
    int quick, rounds;
    unsigned pairs;                     /* sporadic pairs per variant per round */
    double secs;                        /* throughput seconds per variant per round */
    double settle;
    const char *tmemd, *tsv;
    const char *compress;               /* the daemon's and the engine's codec */
} O;

static uint8_t *g_pages;                /* NPAGES text-like pages */
static const tmem_oid_t g_oid = { { 7, 0, 0 } };

/* ------------------------------------------------------------------------
 * Pages, daemons, hogs
 * ---------------------------------------------------------------------- */
static void make_pages(void)
{
    static const char words[] = "tenants put and get pages of memory they cannot keep; "
                                "the host lends what no single tenant can use well. ";
    g_pages = map_private(NPAGES * PAGE);
    uint64_t rng = 42;
    for (size_t i = 0; i < NPAGES; i++) {
        uint8_t *p = g_pages + i * PAGE;
        for (size_t k = 0; k < PAGE; k += 8) {
            uint64_t r = rng_next(&rng);
            if ((r & 3) == 0) {         /* a quarter random: LZ4 about 2x */
                memcpy(p + k, &r, 8);
            } else {
                size_t at = (size_t)(r >> 8) % (sizeof(words) - 9);
                memcpy(p + k, words + at, 8);
            }
        }
        memcpy(p, &i, sizeof(i));
    }
}

struct daemon {
    pid_t pid;
    char dir[64], sock[96], ctl[96];
};

static struct daemon g_d[2];
static pid_t g_hogs[4];
static int g_nhogs;

static void stop_daemon(struct daemon *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        int st;
        waitpid(d->pid, &st, 0);
        d->pid = 0;
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", d->dir);
    }
}

static void hogs_stop(void)
{
    for (int i = 0; i < g_nhogs; i++) {
        kill(g_hogs[i], SIGKILL);
        waitpid(g_hogs[i], NULL, 0);
    }
    g_nhogs = 0;
}

static void cleanup(void)
{
    hogs_stop();
    for (int i = 0; i < 2; i++)
        stop_daemon(&g_d[i]);
}

static void on_signal(int sig)
{
    (void)sig;
    cleanup();
    _exit(1);
}

static void start_daemon(struct daemon *d, bool lend)
{
    snprintf(d->dir, sizeof(d->dir), "/tmp/tmem-lend-bench.XXXXXX");
    if (!mkdtemp(d->dir))
        die("mkdtemp: %s", strerror(errno));
    snprintf(d->sock, sizeof(d->sock), "%s/c.sock", d->dir);
    snprintf(d->ctl, sizeof(d->ctl), "%s/ctl.sock", d->dir);
    pid_t parent = getpid();
    fflush(NULL);           /* a child must not write the parent's buffered output again */
    d->pid = fork();
    if (d->pid < 0)
        die("fork: %s", strerror(errno));
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        char log[128], codec[64];
        snprintf(log, sizeof(log), "%s/tmemd.log", d->dir);
        snprintf(codec, sizeof(codec), "memory.compress=%s", O.compress);
        if (!freopen(log, "w", stderr) || !freopen("/dev/null", "w", stdout))
            _exit(126);
        execl(O.tmemd, O.tmemd, "--socket", d->sock, "--control-socket", d->ctl,
              "--max-memory", "512M", "--set", "metrics.port=0", "--set",
              "governor.enabled=false", "--set", "memory.shared_auth_required=false", "--set",
              lend ? "memory.lend=true" : "memory.lend=false", "--set", codec, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        struct stat st;
        if (stat(d->sock, &st) == 0 && stat(d->ctl, &st) == 0)
            return;
        sleep_ns(10000000);
    }
    die("tmemd did not start (see %s/tmemd.log)", d->dir);
}

/* n processes spinning, unpinned (the scheduler spreads them). */
static void hogs_start(int n)
{
    pid_t parent = getpid();
    fflush(NULL);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            for (volatile uint64_t x = 0;; x++)
                ;
        }
        g_hogs[g_nhogs++] = p;
    }
}

static tmem_client_t *connect_to(const struct daemon *d, const char *name)
{
    tmem_client_t *c = tmem_connect(d->sock, name);
    if (!c)
        die("tmem_connect %s: %s", d->sock, strerror(errno));
    return c;
}

static int new_pool(tmem_client_t *c, uint32_t flags)
{
    tmem_uuid_t u = { 0x1e4d, 0xbe4c };
    int p = tmem_new_pool(c, u, flags);
    if (p < 0)
        die("tmem_new_pool: %s", tmem_strerror(p));
    return p;
}

/* ------------------------------------------------------------------------
 * Sporadic pairs
 * ---------------------------------------------------------------------- */
struct target {
    const char *name;
    tmem_client_t *c;
    uint32_t pool;
};

/* n pairs, each 1-3 ms after the last: pair and get latencies (ns). */
static void sporadic(struct target *t, unsigned n, uint64_t *rng, uint32_t *pair, uint32_t *get)
{
    uint8_t out[PAGE];
    for (unsigned i = 0; i < n; i++) {
        sleep_ns(1000000 + rng_next(rng) % 2000000);
        uint32_t k = (uint32_t)(rng_next(rng) % NPAGES);
        const uint8_t *src = g_pages + (size_t)k * PAGE;
        uint64_t t0 = now_ns();
        int rc = tmem_put_page(t->c, t->pool, g_oid, k, src);
        uint64_t t1 = now_ns();
        int rg = tmem_get_page(t->c, t->pool, g_oid, k, out);
        uint64_t t2 = now_ns();
        if (rc != 0)
            die("%s: put refused: %s", t->name, tmem_strerror(rc));
        if (rg != 0 || memcmp(out, src, PAGE) != 0)
            die("%s: the page read back differs (%s)", t->name, tmem_strerror(rg));
        pair[i] = (uint32_t)(t2 - t0);
        get[i] = (uint32_t)(t2 - t1);
    }
}

struct spor_ctx {
    struct target *t;
    int nt;
    uint64_t rng;
    uint32_t *pair[3], *get[3];         /* all rounds' samples, per target */
    size_t nsamples[3];
};

static double p50_us(uint32_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u32);
    return pct_us(v, n, 50);
}

/* One round: n pairs of each target, in alternating order; vals: their p50s. */
static void spor_round(void *arg, int attempt, double *vals)
{
    struct spor_ctx *c = arg;
    uint32_t *pr = malloc(O.pairs * sizeof(uint32_t)), *gr = malloc(O.pairs * sizeof(uint32_t));
    if (!pr || !gr)
        die("out of memory");
    for (int k = 0; k < c->nt; k++) {
        int i = (attempt + k) % c->nt;
        sporadic(&c->t[i], O.pairs, &c->rng, pr, gr);
        memcpy(c->pair[i] + c->nsamples[i], pr, O.pairs * sizeof(uint32_t));
        memcpy(c->get[i] + c->nsamples[i], gr, O.pairs * sizeof(uint32_t));
        c->nsamples[i] += O.pairs;
        vals[i] = p50_us(pr, O.pairs);
    }
    free(pr);
    free(gr);
}

static void fig_sporadic(struct target *t, int nt, bool loaded)
{
    struct spor_ctx c = { .t = t, .nt = nt, .rng = loaded ? 7 : 3 };
    size_t cap = (size_t)O.pairs * 2 * (size_t)O.rounds + O.pairs;
    for (int i = 0; i < nt; i++) {
        c.pair[i] = malloc(cap * sizeof(uint32_t));
        c.get[i] = malloc(cap * sizeof(uint32_t));
        if (!c.pair[i] || !c.get[i])
            die("out of memory");
    }
    struct round_set rs;
    if (loaded) {
        hogs_start(2);
        memset(&rs, 0, sizeof(rs));
        double vals[BENCH_MAX_VALS];
        for (int r = 0; r < O.rounds; r++, rs.n++)
            spor_round(&c, r, vals);
        hogs_stop();
    } else {
        run_rounds(O.rounds, O.settle, spor_round, &c, &rs);
    }
    /* the figures from every sample of the kept rounds (loaded: all) */
    double p50[3], p99g[3];
    for (int i = 0; i < nt; i++) {
        size_t n = c.nsamples[i];
        qsort(c.pair[i], n, sizeof(uint32_t), cmp_u32);
        qsort(c.get[i], n, sizeof(uint32_t), cmp_u32);
        p50[i] = pct_us(c.pair[i], n, 50);
        p99g[i] = pct_us(c.get[i], n, 99);
        char a[160];
        snprintf(a, sizeof(a), "%s, %s: put+get p50 %.2f us, p90 %.2f us, p99 %.2f us; get "
                 "p50 %.2f us, p99 %.2f us (%zu pairs)", loaded ? "two busy loops" : "quiet",
                 t[i].name, p50[i], pct_us(c.pair[i], n, 90), pct_us(c.pair[i], n, 99),
                 pct_us(c.get[i], n, 50), p99g[i], n);
        progress("%s", a);
        printf("- %s\n", a);
    }
    char v[40], l[40];
    snprintf(v, sizeof(v), "%.2f us", p50[1]);
    snprintf(l, sizeof(l), "%.2f us", p50[0]);
    add_result(loaded ? "S2" : "S1",
               loaded ? "sporadic put+get (1-3 ms apart), two busy loops: p50 in-process / "
                        "through tmemd"
                      : "sporadic put+get (1-3 ms apart), quiet: p50 in-process / through tmemd",
               v, l, p50[0] / p50[1], 1.0 / 1.5, NULL, 0);
    if (!loaded)
        result_load(rs.load_kept);
    if (loaded) {
        snprintf(v, sizeof(v), "%.1f us", p99g[1]);
        add_result("S3", "sporadic, two busy loops: 100 us / p99 of a get through tmemd", v,
                   "100 us", 100.0 / p99g[1], 1.0, NULL, 0);
    }
    if (nt > 2) {
        snprintf(v, sizeof(v), "%.2f us", p50[2]);
        add_result(loaded ? "S2w" : "S1w",
                   "as above, through a tmemd that does not lend memory (information)", v, l,
                   p50[0] / p50[2], -1, NULL, 0);
    }
    for (int i = 0; i < nt; i++) {
        free(c.pair[i]);
        free(c.get[i]);
    }
}

/* ------------------------------------------------------------------------
 * Back to back
 * ---------------------------------------------------------------------- */
/* put+get pairs for secs seconds: pairs per second. */
static double loop_rate(tmem_client_t *c, uint32_t pool, double secs, uint64_t seed)
{
    uint8_t out[PAGE];
    uint64_t rng = seed, n = 0, t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), t = t0;
    while (t < end) {
        for (int k = 0; k < 64; k++, n++) {
            uint32_t i = (uint32_t)(rng_next(&rng) % NPAGES);
            const uint8_t *src = g_pages + (size_t)i * PAGE;
            if (tmem_put_page(c, pool, g_oid, i, src) != 0 ||
                tmem_get_page(c, pool, g_oid, i, out) != 0 || memcmp(out, src, 64) != 0)
                die("back to back: a put was refused or a page differs");
        }
        t = now_ns();
    }
    return (double)n / ((double)(t - t0) / 1e9);
}

struct rate_ctx {
    struct target *t;
    const struct daemon *d;
};

static void rate_round(void *arg, int attempt, double *vals)
{
    struct rate_ctx *c = arg;
    for (int k = 0; k < 2; k++) {
        int i = (attempt + k) % 2;
        vals[i] = loop_rate(c->t[i].c, c->t[i].pool, O.secs, (uint64_t)attempt * 31 + (uint64_t)i);
    }
}

/* k processes, each its own connection, for secs: their total pairs/s. */
static double procs_rate(const struct daemon *d, int k)
{
    double *res = mmap(NULL, sizeof(double) * 8, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    _Atomic int *ready = (_Atomic int *)(res + 6);
    if (res == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    memset(res, 0, sizeof(double) * 8);
    pid_t kids[4];
    fflush(NULL);
    for (int i = 0; i < k; i++) {
        kids[i] = fork();
        if (kids[i] < 0)
            die("fork: %s", strerror(errno));
        if (kids[i] == 0) {
            tmem_client_t *c = connect_to(d, "rate");
            int p = new_pool(c, 0);
            loop_rate(c, (uint32_t)p, 0.05, 99 + (uint64_t)i);     /* warm */
            atomic_fetch_add(ready, 1);
            while (atomic_load(ready) < k)
                sched_yield();
            res[i] = loop_rate(c, (uint32_t)p, O.secs, 7 + (uint64_t)i);
            tmem_client_close(c);
            _exit(0);
        }
    }
    double sum = 0;
    for (int i = 0; i < k; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            die("a client process failed");
        sum += res[i];
    }
    munmap(res, sizeof(double) * 8);
    return sum;
}

static void procs_round(void *arg, int attempt, double *vals)
{
    const struct daemon *d = arg;
    if (attempt % 2) {
        vals[1] = procs_rate(d, 4);
        vals[0] = procs_rate(d, 1);
    } else {
        vals[0] = procs_rate(d, 1);
        vals[1] = procs_rate(d, 4);
    }
}

static void fig_rate(struct target *t)
{
    struct rate_ctx c = { t, &g_d[0] };
    struct round_set rs;
    run_rounds(O.rounds, O.settle, rate_round, &c, &rs);
    double ratio[MAX_ROUNDS];
    for (int r = 0; r < rs.n; r++)
        ratio[r] = rs.v[1][r] / rs.v[0][r];
    char v[40], l[40];
    snprintf(v, sizeof(v), "%.0f k/s", median(rs.v[1], rs.n) / 1e3);
    snprintf(l, sizeof(l), "%.0f k/s", median(rs.v[0], rs.n) / 1e3);
    add_result("T1", "put+get back to back, one client: through tmemd / in-process", v, l,
               median(ratio, rs.n), 0.8, ratio, rs.n);
    result_load(rs.load_kept);

    run_rounds(O.rounds, O.settle, procs_round, (void *)&g_d[0], &rs);
    for (int r = 0; r < rs.n; r++)
        ratio[r] = rs.v[1][r] / rs.v[0][r];
    snprintf(v, sizeof(v), "%.0f k/s", median(rs.v[1], rs.n) / 1e3);
    snprintf(l, sizeof(l), "%.0f k/s", median(rs.v[0], rs.n) / 1e3);
    add_result("T2", "four client processes on two CPUs / one (put+get back to back)", v, l,
               median(ratio, rs.n), 1.8, ratio, rs.n);
    result_load(rs.load_kept);
}

/* ------------------------------------------------------------------------
 * Vectors on a shared pool
 * ---------------------------------------------------------------------- */
/* One 32-page vector put then get; ns per page. */
static double vec_once(tmem_client_t *c, uint32_t pool, uint64_t *rng)
{
    tmem_handle_t h[VEC];
    const void *in[VEC];
    void *out[VEC];
    static uint8_t buf[VEC][PAGE];
    int res[VEC];
    uint32_t base = (uint32_t)(rng_next(rng) % (NPAGES - VEC));
    for (unsigned i = 0; i < VEC; i++) {
        h[i] = (tmem_handle_t){ pool, base + i, g_oid };
        in[i] = g_pages + (size_t)(base + i) * PAGE;
        out[i] = buf[i];
    }
    uint64_t t0 = now_ns();
    int a = tmem_put_pages(c, VEC, h, in, res);
    int b = tmem_get_pages(c, VEC, h, out, res);
    uint64_t t1 = now_ns();
    if (a != (int)VEC || b != (int)VEC || memcmp(buf[VEC - 1], in[VEC - 1], PAGE) != 0)
        die("vector calls: %d of %u puts, %d of %u gets", a, VEC, b, VEC);
    return (double)(t1 - t0) / VEC;
}

struct vec_ctx {
    struct target *t;
    bool sporadic;
};

static void vec_round(void *arg, int attempt, double *vals)
{
    struct vec_ctx *c = arg;
    unsigned n = c->sporadic ? O.pairs / 2 : 2000;
    uint64_t rng = (uint64_t)attempt * 77;
    double *v = malloc(n * sizeof(double));
    if (!v)
        die("out of memory");
    for (int k = 0; k < 2; k++) {
        int i = (attempt + k) % 2;
        for (unsigned j = 0; j < n; j++) {
            if (c->sporadic)
                sleep_ns(1000000 + rng_next(&rng) % 2000000);
            v[j] = vec_once(c->t[i].c, c->t[i].pool, &rng);
        }
        qsort(v, n, sizeof(double), cmp_double);
        vals[i] = v[n / 2];
    }
    free(v);
}

static void fig_vector(struct target *t)
{
    for (int s = 0; s < 2; s++) {
        struct vec_ctx c = { t, s == 1 };
        struct round_set rs;
        run_rounds(O.rounds, O.settle, vec_round, &c, &rs);
        double ratio[MAX_ROUNDS];
        for (int r = 0; r < rs.n; r++)
            ratio[r] = rs.v[0][r] / rs.v[1][r];
        char v[40], l[40];
        snprintf(v, sizeof(v), "%.2f us/page", median(rs.v[1], rs.n) / 1e3);
        snprintf(l, sizeof(l), "%.2f us/page", median(rs.v[0], rs.n) / 1e3);
        add_result(s ? "V2" : "V1",
                   s ? "shared pool, 32-page vectors 1-3 ms apart: in-process / through tmemd "
                       "(per page, p50)"
                     : "shared pool, 32-page vectors back to back: in-process / through tmemd "
                       "(per page, p50)",
                   v, l, median(ratio, rs.n), 0.5, ratio, rs.n);
        result_load(rs.load_kept);
    }
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */
static void usage(FILE *f)
{
    fprintf(f, "usage: tmem-lend-bench [--quick] [--rounds N] [--settle S] [--tsv FILE]\n"
               "                       [--tmemd PATH] [--only sporadic,rate,vector]\n"
               "                       [--compress none|lz4|zstd]\n"
               "tmem through tmemd against an in-process engine, as tenants call\n"
               "(docs/benchmarks.md, \"Lent memory\").  --compress: the codec of both\n"
               "(default lz4, the daemon's default).\n");
}

int main(int argc, char **argv)
{
    bench_prog = "tmem-lend-bench";
    O.rounds = 7;
    O.pairs = 300;
    O.secs = 0.5;
    O.settle = 20;
    O.tmemd = getenv("TMEMD_BIN") ? getenv("TMEMD_BIN") : TMEMD_BIN;
    O.compress = "lz4";
    const char *only = "sporadic,rate,vector";
    static const struct option opts[] = {
        { "quick", no_argument, NULL, 'q' }, { "rounds", required_argument, NULL, 'r' },
        { "settle", required_argument, NULL, 's' }, { "tsv", required_argument, NULL, 't' },
        { "tmemd", required_argument, NULL, 'd' }, { "only", required_argument, NULL, 'o' },
        { "compress", required_argument, NULL, 'c' },
        { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
    int ch;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'q': O.quick = 1; O.rounds = 3; O.pairs = 150; O.secs = 0.25; O.settle = 5; break;
        case 'r': O.rounds = atoi(optarg); break;
        case 's': O.settle = atof(optarg); break;
        case 't': O.tsv = optarg; break;
        case 'd': O.tmemd = optarg; break;
        case 'o': only = optarg; break;
        case 'c': O.compress = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    int codec = !strcmp(O.compress, "lz4") ? TMEM_COMPRESS_LZ4
              : !strcmp(O.compress, "zstd") ? TMEM_COMPRESS_ZSTD
              : !strcmp(O.compress, "none") ? TMEM_COMPRESS_NONE : -1;
    if (codec < 0) {
        fprintf(stderr, "tmem-lend-bench: --compress none, lz4 or zstd\n");
        return 2;
    }
    if (O.rounds < 1 || O.rounds > MAX_ROUNDS / 2) {
        fprintf(stderr, "tmem-lend-bench: --rounds 1..%d\n", MAX_ROUNDS / 2);
        return 2;
    }
    atexit(cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    print_header(O.quick);
    printf("- pages: text-like, compression %s in the daemon and the in-process engine\n",
           O.compress);
    make_pages();
    start_daemon(&g_d[0], true);
    start_daemon(&g_d[1], false);

    /* the in-process engine as the daemon's: its codec, dedup, its limit */
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.compress = codec;
    cfg.max_bytes = 512ull << 20;
    cfg.shared_auth_required = 0;
    tmem_t *t = tmem_open(&cfg);
    if (!t)
        die("tmem_open: %s", strerror(errno));
    tmem_client_t *ci = tmem_client_open(t, "in-process");
    tmem_client_t *cl = connect_to(&g_d[0], "lent");
    tmem_client_t *cw = connect_to(&g_d[1], "window");
    struct target tg[3] = {
        { "in-process", ci, (uint32_t)new_pool(ci, 0) },
        { "through tmemd (lent memory)", cl, (uint32_t)new_pool(cl, 0) },
        { "through tmemd, lend=false", cw, (uint32_t)new_pool(cw, 0) },
    };
    printf("\n### Samples\n\n");
    if (strstr(only, "sporadic")) {
        fig_sporadic(tg, 3, false);
        fig_sporadic(tg, 3, true);
    }
    if (strstr(only, "rate"))
        fig_rate(tg);
    if (strstr(only, "vector")) {
        struct target sv[2] = {
            { "in-process, shared pool", ci, (uint32_t)new_pool(ci, TMEM_POOL_SHARED) },
            { "through tmemd, shared pool", cl, (uint32_t)new_pool(cl, TMEM_POOL_SHARED) },
        };
        if (tmem_pool_is_shared(cl, sv[1].pool) != 1)
            die("the daemon's pool is not shared");
        fig_vector(sv);
    }
    printf("\n");
    print_table("through tmemd");
    print_passes();
    if (O.tsv) {
        FILE *f = tsv_open(O.tsv, "through tmemd");
        if (f)
            fclose(f);
    }
    tmem_client_close(cl);
    tmem_client_close(cw);
    tmem_close(t);
    cleanup();
    return 0;
}
