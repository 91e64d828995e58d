/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - what the two benchmark programs (tmem-bench, tmem_bench.c;
 * tmem-daemon-bench, daemon_bench.c) share: errors and progress lines,
 * clocks and the random generator, medians and percentiles, the background
 * load of the machine and the rounds that set loaded ones aside, and the
 * table of ratios against floors with its verdicts.  docs/benchmarks.md.
 */
#ifndef TMEM_BENCH_UTIL_H
#define TMEM_BENCH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#define QUIET_CPUS       0.35   /* rounds in which others used more are set aside */
#define BENCH_MAX_ROUNDS 64     /* room for a program's rounds (its MAX_ROUNDS) */
#define BENCH_MAX_VALS   16     /* values a round may measure */

/* ------------------------------------------------------------------------
 * Errors, progress, clocks, random numbers, memory
 * ---------------------------------------------------------------------- */
extern const char *bench_prog;  /* the program's name: die()'s prefix and the title */
extern pid_t bench_main_pid;    /* if set, die() in any other process calls _exit(1) */

void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* "  .. " and the line, on stderr */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void sleep_ns(uint64_t ns);

/* splitmix64: a small, good, seedable generator */
static inline uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Private anonymous memory, touched (so no first-touch fault lands in a
 * timed pass); dies on failure. */
void *map_private(size_t len);

/* ------------------------------------------------------------------------
 * Statistics
 * ---------------------------------------------------------------------- */
int cmp_double(const void *a, const void *b);
int cmp_u32(const void *a, const void *b);
double median(const double *v, int n);         /* n <= 2 * BENCH_MAX_ROUNDS */
double vmin(const double *v, int n);
double vmax(const double *v, int n);
/* Percentile p (0..100) of sorted ns samples, in microseconds. */
double pct_us(const uint32_t *sorted, size_t n, double p);

/* ------------------------------------------------------------------------
 * The machine: "## <prog> (quick|full)", then the date and machine lines
 * ---------------------------------------------------------------------- */
void print_header(int quick);

/* ------------------------------------------------------------------------
 * Background load: the CPU time other processes used (/proc/stat busy
 * time minus our own), and rounds during which it was over QUIET_CPUS set
 * aside and rerun.
 * ---------------------------------------------------------------------- */
/* Our own CPU seconds beyond this process's (RUSAGE_SELF): children,
 * servers we started; NULL: none. */
extern double (*bench_own_extra_secs)(void);

/* User + system seconds of getrusage(who). */
double rusage_secs(int who);

struct load_mark {
    uint64_t busy_ticks;
    double own_secs;
    uint64_t t;
};

void load_mark(struct load_mark *m);
/* CPUs' worth of time used by others between a and b (0 if unknown). */
double foreign_cpus(const struct load_mark *a, const struct load_mark *b);
/* Sleeps in half seconds until one is quiet or max_secs passed; true if
 * quiet.  *last (if not NULL): the load of the last half second. */
bool wait_quiet(double max_secs, double *last);
/* With max_secs > 0: waits for a quiet machine (wait_quiet) and writes
 * "before <what>: quiet after ..." to buf; false (and no wait) otherwise. */
bool settle_text(double max_secs, const char *what, char *buf, size_t size);

/* One round: fills vals[0..BENCH_MAX_VALS); attempt is its sequence number. */
typedef void (*round_fn)(void *ctx, int attempt, double *vals);

struct round_set {
    int n;                                  /* rounds kept (== rounds) */
    double v[BENCH_MAX_VALS][BENCH_MAX_ROUNDS]; /* the kept rounds' values */
    int attempts, loaded;                   /* rounds run; of those, over QUIET_CPUS */
    double load_kept, load_max;             /* mean foreign load of the kept rounds; max of all */
};

/* Runs rounds until `rounds` quiet ones (at most twice as many in all),
 * waiting a little after a loaded one (at most settle / 3 seconds of waiting
 * in all); if too few were quiet, the least loaded fill in. */
void run_rounds(int rounds, double settle, round_fn fn, void *ctx, struct round_set *rs);

/* ------------------------------------------------------------------------
 * Results: the table of ratios against floors
 * ---------------------------------------------------------------------- */
struct result {
    char id[16];
    char what[240];
    char value[40];     /* what was measured (the "engine" or "tmem" column) */
    char limit[40];
    double ratio;
    double floor;       /* < 0: information only */
    char spread[40];    /* min..max of the per-round ratios */
    double load;        /* CPUs others used during the kept rounds (< 0: not measured) */
};

/* Adds a row (load not measured); spread from ratios[n] if n > 1. */
struct result *add_result(const char *id, const char *what, const char *value,
                          const char *limit, double ratio, double floor, const double *ratios,
                          int n);
/* Marks the last result as measured under this load. */
void result_load(double load);
const char *verdict(const struct result *r, char *buf, size_t size);
/* The Markdown table; col: the name of the value column. */
void print_table(const char *col);
/* "N of M floored figures pass." */
void print_passes(void);
/* Opens path and writes the header and the rows tab-separated; the caller
 * adds its own lines and closes it. */
FILE *tsv_open(const char *path, const char *col);

#endif /* TMEM_BENCH_UTIL_H */
