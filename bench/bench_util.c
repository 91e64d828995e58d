/* SPDX-License-Identifier: MIT */
/*
 * bench_util.c - the helpers tmem-bench and tmem-daemon-bench share
 * (bench_util.h): errors, clocks, statistics, the background load and the
 * rounds, the table of ratios.
 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

const char *bench_prog = "bench";
pid_t bench_main_pid;
double (*bench_own_extra_secs)(void);

/* ------------------------------------------------------------------------
 * Errors, progress, clocks, memory
 * ---------------------------------------------------------------------- */
void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", bench_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (bench_main_pid && getpid() != bench_main_pid)
        _exit(1);
    exit(1);
}

void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "  .. ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

void sleep_ns(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000u), (long)(ns % 1000000000u) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void *map_private(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap %zu bytes: %s", len, strerror(errno));
    memset(p, 0, len);
    return p;
}

/* ------------------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------------- */
int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

double median(const double *v, int n)
{
    double tmp[2 * BENCH_MAX_ROUNDS];
    if (n <= 0)
        return 0.0;
    if (n > 2 * BENCH_MAX_ROUNDS)
        die("median of %d values (at most %d)", n, 2 * BENCH_MAX_ROUNDS);
    memcpy(tmp, v, (size_t)n * sizeof(*v));
    qsort(tmp, (size_t)n, sizeof(*tmp), cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2.0;
}

double vmin(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

double vmax(const double *v, int n)
{
    double m = v[0];
    for (int i = 1; i < n; i++)
        m = v[i] > m ? v[i] : m;
    return m;
}

double pct_us(const uint32_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0.0;
    size_t k = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[k] / 1000.0;
}

/* ------------------------------------------------------------------------
 * The machine
 * ---------------------------------------------------------------------- */
static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, size, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

void print_header(int quick)
{
    char cpu[128];
    cpu_model(cpu, sizeof(cpu));
    struct utsname un;
    uname(&un);
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("## %s %s\n\n", bench_prog, quick ? "(quick)" : "(full)");
    printf("- date: %s\n- machine: %s, %ld CPUs online, Linux %s\n", date, cpu,
           sysconf(_SC_NPROCESSORS_ONLN), un.release);
}

/* ------------------------------------------------------------------------
 * Background load, and rounds
 *
 * The machines are shared: other processes (in other containers, invisible
 * to us) take whole CPUs for seconds at a time, which halves a two-thread
 * figure.  Each round measures the CPU time others used meanwhile
 * (/proc/stat busy time minus our own); a round during which others used
 * more than QUIET_CPUS is set aside, and more rounds are run (at most twice
 * as many in all), after waiting a little for the machine to calm down (at
 * most settle / 3 seconds of waiting per figure).  If too few rounds were
 * quiet, the least loaded of those set aside fill in.  The median is taken
 * over the rounds kept.
 * ---------------------------------------------------------------------- */
double rusage_secs(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

void load_mark(struct load_mark *m)
{
    unsigned long long v[8] = { 0 };
    FILE *f = fopen("/proc/stat", "r");
    if (f) {
        if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) != 8)
            memset(v, 0, sizeof(v));
        fclose(f);
    }
    /* user nice system idle iowait irq softirq steal: busy excludes idle, iowait */
    m->busy_ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    m->own_secs = rusage_secs(RUSAGE_SELF);
    if (bench_own_extra_secs)
        m->own_secs += bench_own_extra_secs();
    m->t = now_ns();
}

double foreign_cpus(const struct load_mark *a, const struct load_mark *b)
{
    double wall = (double)(b->t - a->t) / 1e9;
    if (wall <= 0 || b->busy_ticks < a->busy_ticks)
        return 0.0;
    double busy = (double)(b->busy_ticks - a->busy_ticks) / (double)sysconf(_SC_CLK_TCK);
    double f = (busy - (b->own_secs - a->own_secs)) / wall;
    return f < 0 ? 0.0 : f;
}

bool wait_quiet(double max_secs, double *last)
{
    uint64_t t0 = now_ns();
    double f = 0.0;
    bool quiet = false;
    while (!quiet && (double)(now_ns() - t0) / 1e9 < max_secs) {
        struct load_mark m0, m1;
        load_mark(&m0);
        sleep_ns(500000000u);
        load_mark(&m1);
        f = foreign_cpus(&m0, &m1);
        quiet = f <= QUIET_CPUS;
    }
    if (last)
        *last = f;
    return quiet;
}

bool settle_text(double max_secs, const char *what, char *buf, size_t size)
{
    if (max_secs <= 0)
        return false;
    uint64_t t0 = now_ns();
    double f = 0.0;
    bool quiet = wait_quiet(max_secs, &f);
    snprintf(buf, size, "before %s: %s after %.1f s (others used %.2f CPUs in the last half second)",
             what, quiet ? "quiet" : "still busy", (double)(now_ns() - t0) / 1e9, f);
    return true;
}

void run_rounds(int rounds, double settle, round_fn fn, void *ctx, struct round_set *rs)
{
    double av[2 * BENCH_MAX_ROUNDS][BENCH_MAX_VALS], load[2 * BENCH_MAX_ROUNDS];
    bool keep[2 * BENCH_MAX_ROUNDS] = { false };
    int kept = 0, a;
    uint64_t t_start = now_ns();
    double run_secs = 0.0;              /* time spent in rounds, not waiting */
    if (rounds < 1 || rounds > BENCH_MAX_ROUNDS)
        die("rounds: %d (1..%d)", rounds, BENCH_MAX_ROUNDS);
    memset(rs, 0, sizeof(*rs));
    memset(av, 0, sizeof(av));
    for (a = 0; a < 2 * rounds && kept < rounds; a++) {
        struct load_mark m0, m1;
        load_mark(&m0);
        fn(ctx, a, av[a]);
        load_mark(&m1);
        load[a] = foreign_cpus(&m0, &m1);
        run_secs += (double)(m1.t - m0.t) / 1e9;
        rs->load_max = load[a] > rs->load_max ? load[a] : rs->load_max;
        if (load[a] <= QUIET_CPUS) {
            keep[a] = true;
            kept++;
        } else {
            rs->loaded++;
            /* give the others a moment before the next round (at most a
             * third of settle in all per figure: the full run must stay
             * within a few minutes on a busy machine) */
            double budget = settle / 3.0 - (double)(now_ns() - t_start) / 1e9 + run_secs;
            if (budget > 0)
                wait_quiet(budget < 3.0 ? budget : 3.0, NULL);
        }
    }
    rs->attempts = a;
    while (kept < rounds) {             /* fill in with the least loaded */
        int best = -1;
        for (int i = 0; i < a; i++)
            if (!keep[i] && (best < 0 || load[i] < load[best]))
                best = i;
        keep[best] = true;
        kept++;
    }
    for (int i = 0; i < a; i++) {
        if (!keep[i])
            continue;
        for (int v = 0; v < BENCH_MAX_VALS; v++)
            rs->v[v][rs->n] = av[i][v];
        rs->load_kept += load[i];
        rs->n++;
    }
    rs->load_kept /= rs->n;
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */
#define MAX_RESULTS 48

static struct result g_res[MAX_RESULTS];
static size_t g_nres;

struct result *add_result(const char *id, const char *what, const char *value,
                          const char *limit, double ratio, double floor, const double *ratios,
                          int n)
{
    if (g_nres == MAX_RESULTS)
        die("too many results");
    struct result *r = &g_res[g_nres++];
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->what, sizeof(r->what), "%s", what);
    snprintf(r->value, sizeof(r->value), "%s", value);
    snprintf(r->limit, sizeof(r->limit), "%s", limit);
    r->ratio = ratio;
    r->floor = floor;
    if (ratios && n > 1)
        snprintf(r->spread, sizeof(r->spread), "%.2f..%.2f", vmin(ratios, n), vmax(ratios, n));
    else
        snprintf(r->spread, sizeof(r->spread), "-");
    r->load = -1.0;
    return r;
}

void result_load(double load)
{
    g_res[g_nres - 1].load = load;
}

const char *verdict(const struct result *r, char *buf, size_t size)
{
    char busy[48] = "";
    if (r->load > QUIET_CPUS)
        snprintf(busy, sizeof(busy), " (busy: others used %.1f CPUs)", r->load);
    if (r->floor < 0)
        snprintf(buf, size, "info%s", busy);
    else if (r->ratio >= r->floor)
        snprintf(buf, size, "PASS%s", busy);
    else
        snprintf(buf, size, "SHORT (-%.0f%%)%s", (r->floor - r->ratio) / r->floor * 100.0, busy);
    return buf;
}

void print_table(const char *col)
{
    printf("\n| # | figure | %s | limit | ratio | rounds min..max | floor | verdict |\n", col);
    printf("|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < g_nres; i++) {
        struct result *r = &g_res[i];
        char vb[96], fb[16];
        if (r->floor < 0)
            snprintf(fb, sizeof(fb), "-");
        else
            snprintf(fb, sizeof(fb), "%.2f", r->floor);
        printf("| %s | %s | %s | %s | %.3f | %s | %s | %s |\n", r->id, r->what, r->value,
               r->limit, r->ratio, r->spread, fb, verdict(r, vb, sizeof(vb)));
    }
}

void print_passes(void)
{
    size_t pass = 0, floored = 0;
    for (size_t i = 0; i < g_nres; i++) {
        if (g_res[i].floor >= 0) {
            floored++;
            pass += g_res[i].ratio >= g_res[i].floor;
        }
    }
    printf("\n%zu of %zu floored figures pass.\n", pass, floored);
}

FILE *tsv_open(const char *path, const char *col)
{
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    fprintf(f, "id\tfigure\t%s\tlimit\tratio\tspread\tfloor\tverdict\n", col);
    for (size_t i = 0; i < g_nres; i++) {
        struct result *r = &g_res[i];
        char vb[96];
        fprintf(f, "%s\t%s\t%s\t%s\t%.4f\t%s\t%.2f\t%s\n", r->id, r->what, r->value, r->limit,
                r->ratio, r->spread, r->floor, verdict(r, vb, sizeof(vb)));
    }
    return f;
}
