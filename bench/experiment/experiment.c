/* SPDX-License-Identifier: MIT */
/*
 * experiment.c - tmem-experiment: what tmem saves when tenants' working sets
 * shift (xp.h; docs/experiment.md).
 *
 * The driver: it reads the options, writes the tenants' data files into a
 * temporary directory, then for each repetition runs every configuration
 * (static partitioning, tmem through a real tmemd with compression off, LZ4
 * or zstd, and the upper bound of one memory for all), each in fresh
 * processes and, for tmem, on a fresh tmemd it starts and stops itself.  It
 * prints a Markdown table of the medians (stdout) and writes TSV files: one
 * row per configuration (medians), one per run, one per phase.
 *
 * What it measures per run (over the measured phases, after the warm-up):
 * backing-store reads and writes, tmem gets/hits/puts, the wall time, tmemd's
 * CPU time (/proc/PID/stat, every thread, before and after) and the tenants'
 * CPU time; and what others ran on the host meanwhile (/proc/stat busy time
 * minus ours), because the machines are shared.
 *
 * Exit status: 0 if every run completed, every page read back matched what
 * was written, and every tmemd exited with status 0; else 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "xp.h"

#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

#define MAX_REPS  15
#define MAX_SETS  16            /* --daemon-set options */
#define SEEDS_IO_PER_S 300.0    /* the seeds: ~300 I/O per second saved ... */

static const struct xp_config all_configs[] = {
    { "static", XP_STATIC, NULL, 0, "static partitioning: P + R/N private pages each, no tmem" },
    { "tmem", XP_TMEM, "none", 0, "P private pages each + tmemd holding R pages, compress=none" },
    { "tmem-lz4", XP_TMEM, "lz4", 0, "as tmem, compress=lz4" },
    { "tmem-zstd", XP_TMEM, "zstd", 0, "as tmem, compress=zstd (level 1)" },
    { "tmem-lz4-hotw", XP_TMEM, "lz4", 1000, "as tmem-lz4, and each phase an administrator "
      "gives the hot tenant weight 1000, the others 10 (tmemctl set --weight)" },
    { "upper", XP_UPPER, NULL, 0, "upper bound: one memory of N*P + R pages, one LRU, "
      "N threads" },
};
#define NCONFIGS ((int)(sizeof(all_configs) / sizeof(all_configs[0])))

static struct {
    struct xp_params p;
    bool run[NCONFIGS];
    int reps;
    bool quick;
    const char *tmemd;
    const char *tsv, *runs_tsv, *phases_tsv;
    const char *sets[MAX_SETS];
    int nsets;
    double timeout_s;
    const char *dir_base;
} O;

/* ------------------------------------------------------------------------
 * What runs, for clean-up whatever the exit (the signal handler uses only
 * these precomputed paths and async-signal-safe calls)
 * ---------------------------------------------------------------------- */
#define MAX_PIDS (XP_MAX_TENANTS + 2)
static volatile pid_t g_pids[MAX_PIDS];
static char g_dir[96];    /* short: the sockets' paths must fit sun_path */
static char g_files[2 * XP_MAX_TENANTS + 6][200];
static int g_nfiles;

static void remove_files(void)
{
    for (int i = 0; i < g_nfiles; i++)
        unlink(g_files[i]);
    if (g_dir[0])
        rmdir(g_dir);
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_PIDS; i++) {
        pid_t pid = g_pids[i];
        if (pid > 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            g_pids[i] = 0;
        }
    }
}

static void cleanup(void)
{
    if (getpid() != bench_main_pid)
        return;
    kill_all();
    remove_files();
}

static void on_signal(int sig)
{
    (void)sig;
    if (getpid() == bench_main_pid) {
        kill_all();
        remove_files();
    }
    _exit(130);
}

static void track(pid_t pid)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            return;
        }
    die("too many processes");
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < MAX_PIDS; i++)
        if (g_pids[i] == pid)
            g_pids[i] = 0;
}

static void add_file(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add_file(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_files[g_nfiles++], sizeof(g_files[0]), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------
 * tmemd
 * ---------------------------------------------------------------------- */
struct daemon {
    pid_t pid;
    char sock[160], ctl[160], log[180];
};

static void show_log(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char line[512];
    fprintf(stderr, "--- %s (end) ---\n", log);
    long lines = 0;
    while (fgets(line, sizeof(line), f))
        lines++;
    rewind(f);
    for (long n = 0; fgets(line, sizeof(line), f); n++)
        if (n >= lines - 20)
            fputs(line, stderr);
    fclose(f);
}

static void daemon_start(struct daemon *d, const char *compress)
{
    snprintf(d->sock, sizeof(d->sock), "%s/c.sock", g_dir);
    snprintf(d->ctl, sizeof(d->ctl), "%s/ctl.sock", g_dir);
    snprintf(d->log, sizeof(d->log), "%s/tmemd.log", g_dir);
    unlink(d->sock);
    unlink(d->ctl);
    char maxmem[32], comp[48];
    snprintf(maxmem, sizeof(maxmem), "%" PRIu64, (uint64_t)O.p.slack_pages * XP_PAGE);
    snprintf(comp, sizeof(comp), "memory.compress=%s", compress);
    const char *argv[18 + 2 * MAX_SETS];
    int n = 0;
    argv[n++] = O.tmemd;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--control-socket";
    argv[n++] = d->ctl;
    argv[n++] = "--max-memory";
    argv[n++] = maxmem;
    argv[n++] = "--set";
    argv[n++] = "metrics.port=0";
    argv[n++] = "--set";
    argv[n++] = "governor.enabled=false";
    argv[n++] = "--set";
    argv[n++] = comp;
    /* the tenants stand for different users but run as one uid here: no
     * uid's persistent share couples them */
    argv[n++] = "--set";
    argv[n++] = "memory.uid_persistent_max=0";
    for (int i = 0; i < O.nsets; i++) {
        argv[n++] = "--set";
        argv[n++] = O.sets[i];
    }
    argv[n] = NULL;
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        setpgid(0, 0);          /* a ^C reaches the driver, which stops it */
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    track(pid);
    for (int i = 0; i < 1000; i++) {            /* up to 10 s */
        struct stat st;
        if (stat(d->sock, &st) == 0 && stat(d->ctl, &st) == 0)
            return;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            untrack(pid);
            show_log(d->log);
            die("tmemd (%s) exited at start (status %d)", O.tmemd, status);
        }
        sleep_ns(10000000);
    }
    show_log(d->log);
    die("tmemd (%s) not ready after 10 s", O.tmemd);
}

/* SIGTERM, then its exit status (0 is a clean exit); -1 if it had to be killed. */
static int daemon_stop(struct daemon *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int status = 0, result = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
            result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        sleep_ns(10000000);
    }
    if (result < 0) {
        fprintf(stderr, "tmem-experiment: tmemd did not stop in 10 s: killed\n");
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    untrack(d->pid);
    if (result != 0)
        show_log(d->log);
    d->pid = 0;
    return result;
}

/* ------------------------------------------------------------------------
 * One run: one configuration, fresh processes (and tmemd)
 * ---------------------------------------------------------------------- */
struct run {
    double runtime_s, io_wait_s;
    uint64_t file_reads, swap_reads, swap_writes, shrink_writes, first_touch;
    uint64_t cc_gets, cc_hits, cc_puts, cc_puts_ok, fs_stores, fs_stores_ok, fs_loads;
    uint64_t accesses, hits, verify_failed;
    uint64_t tmem_calls;
    double tmem_s;              /* time the tenants spent in tmem calls */
    double daemon_cpu_s, tenant_cpu_s, others_cpus;
    int daemon_status;          /* tmemd's exit status; -1 without tmemd */
    int have_dstats;
    uint64_t d_eph, d_pers, d_held, d_compressed, d_whole, d_zalloc, d_evictions, d_refused;
    int d_lending;
    uint64_t d_grown, d_refused_units, d_returned, d_revoked, d_shrinks, d_lent[2];
    int nphases;
    double phase_s[XP_MAX_PHASES];
    uint64_t phase_reads[XP_MAX_PHASES], phase_writes[XP_MAX_PHASES];
    uint64_t phase_tmem_hits[XP_MAX_PHASES];
};

static uint64_t reads_of(const struct run *r) { return r->file_reads + r->swap_reads; }
static uint64_t ios_of(const struct run *r) { return reads_of(r) + r->swap_writes; }

/* tmem's density at the end of a run: the bytes of the pages it stored (as
 * whole or compressed pages) over the bytes their data took; 0 if none. */
static double density_of(const struct run *r)
{
    uint64_t pages = r->d_compressed + r->d_whole;
    uint64_t bytes = r->d_zalloc + r->d_whole * XP_PAGE;
    return pages && bytes ? (double)pages * XP_PAGE / (double)bytes : 0.0;
}

static void collect(const struct xp_shared *sh, struct run *r)
{
    const struct xp_params *p = &O.p;
    int total = p->warmup_phases + p->phases;
    uint64_t t_end = sh->phase_end_ns[total - 1];
    r->runtime_s = (double)(t_end - sh->t_start_ns) / 1e9;
    r->nphases = total;
    for (int ph = 0; ph < total; ph++) {
        uint64_t t0 = ph ? sh->phase_end_ns[ph - 1] : sh->t_begin_ns;
        r->phase_s[ph] = (double)(sh->phase_end_ns[ph] - t0) / 1e9;
        for (int t = 0; t < p->tenants; t++) {
            const struct xp_counters *c = &sh->c[t][ph];
            r->phase_reads[ph] += c->file_reads + c->swap_reads;
            r->phase_writes[ph] += c->swap_writes;
            r->phase_tmem_hits[ph] += c->cc_hits + c->fs_loads;
            r->verify_failed += c->verify_failed;       /* every phase */
            if (ph < p->warmup_phases)
                continue;
            r->file_reads += c->file_reads;
            r->swap_reads += c->swap_reads;
            r->swap_writes += c->swap_writes;
            r->shrink_writes += c->shrink_writes;
            r->first_touch += c->first_touch;
            r->cc_gets += c->cc_gets;
            r->cc_hits += c->cc_hits;
            r->cc_puts += c->cc_puts;
            r->cc_puts_ok += c->cc_puts_ok;
            r->fs_stores += c->fs_stores;
            r->fs_stores_ok += c->fs_stores_ok;
            r->fs_loads += c->fs_loads;
            r->accesses += c->accesses;
            r->hits += c->hits;
            r->io_wait_s += (double)c->io_wait_ns / 1e9;
            r->tmem_calls += c->tmem_calls;
            r->tmem_s += (double)c->tmem_ns / 1e9;
        }
    }
    for (int t = 0; t < p->tenants; t++)
        r->tenant_cpu_s += sh->tenant_cpu[t];
    if (sh->daemon_pid > 0)
        r->daemon_cpu_s = sh->daemon_cpu1 - sh->daemon_cpu0;
    double busy = sh->busy1 - sh->busy0;
    double others = busy - r->tenant_cpu_s - r->daemon_cpu_s;
    r->others_cpus = r->runtime_s > 0 && others > 0 ? others / r->runtime_s : 0;
    r->have_dstats = sh->have_daemon_stats;
    r->d_eph = sh->d_eph_pages;
    r->d_pers = sh->d_pers_pages;
    r->d_held = sh->d_bytes_held;
    r->d_compressed = sh->d_pages_compressed;
    r->d_whole = sh->d_pages_whole;
    r->d_zalloc = sh->d_zalloc_bytes;
    r->d_evictions = sh->d_evictions;
    r->d_refused = sh->d_refused_nomem;
    r->d_lending = sh->d_lending;
    r->d_grown = sh->d_grown;
    r->d_refused_units = sh->d_refused_units;
    r->d_returned = sh->d_returned;
    r->d_revoked = sh->d_revoked;
    r->d_shrinks = sh->d_shrinks;
    r->d_lent[0] = sh->d_lent[0];
    r->d_lent[1] = sh->d_lent[1];
}

static void run_one(const struct xp_config *cfg, int rep, struct run *r)
{
    const struct xp_params *p = &O.p;
    memset(r, 0, sizeof(*r));
    r->daemon_status = -1;
    struct xp_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
                                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        die("mmap: %s", strerror(errno));
    memset(sh, 0, sizeof(*sh));
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    if (pthread_barrier_init(&sh->barrier, &ba, (unsigned)p->tenants) != 0)
        die("pthread_barrier_init failed");
    pthread_barrierattr_destroy(&ba);

    struct daemon d = { 0 };
    if (cfg->kind == XP_TMEM) {
        daemon_start(&d, cfg->compress);
        sh->daemon_pid = d.pid;
        sh->hot_weight = cfg->hot_weight;
        snprintf(sh->sock, sizeof(sh->sock), "%s", d.sock);
        snprintf(sh->ctl, sizeof(sh->ctl), "%s", d.ctl);
    }

    /* the tenants: N processes, or one process of N threads (upper) */
    pid_t kids[XP_MAX_TENANTS];
    int nkids = cfg->kind == XP_UPPER ? 1 : p->tenants;
    uint32_t mem = cfg->kind == XP_STATIC ? p->private_pages + p->slack_pages / (uint32_t)p->tenants
                   : cfg->kind == XP_TMEM ? p->private_pages
                   : (uint32_t)p->tenants * p->private_pages + p->slack_pages;
    pid_t parent = getpid();
    fflush(NULL);
    for (int k = 0; k < nkids; k++) {
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            int rc = cfg->kind == XP_UPPER ? xp_run_tenants(p, cfg->kind, 0, p->tenants, mem, sh)
                                           : xp_run_tenants(p, cfg->kind, k, 1, mem, sh);
            _exit(rc == 0 ? 0 : 1);
        }
        kids[k] = pid;
        track(pid);
    }

    /* wait for them, showing the phases; a failure stops everything */
    int left = nkids, shown = -1, total = p->warmup_phases + p->phases;
    uint64_t t0 = now_ns();
    const char *why = NULL;
    while (left > 0 && !why) {
        for (int k = 0; k < nkids; k++) {
            int status;
            if (kids[k] <= 0 || waitpid(kids[k], &status, WNOHANG) != kids[k])
                continue;
            untrack(kids[k]);
            kids[k] = 0;
            left--;
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                why = "a tenant failed";
        }
        if (d.pid > 0) {
            int status;
            if (waitpid(d.pid, &status, WNOHANG) == d.pid) {
                untrack(d.pid);
                d.pid = 0;
                r->daemon_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                show_log(d.log);
                why = "tmemd exited during the run";
            }
        }
        int ph = atomic_load(&sh->phase);
        if (ph != shown && ph < total) {
            fprintf(stderr, "  .. %s, rep %d/%d: phase %d/%d (%s, hot: tenant %d)\n", cfg->name,
                    rep + 1, O.reps, ph + 1, total, ph < p->warmup_phases ? "warm-up" : "measured",
                    ph % p->tenants);
            shown = ph;
        }
        if (O.timeout_s > 0 && (double)(now_ns() - t0) / 1e9 > O.timeout_s)
            why = "timed out (--timeout)";
        if (left > 0 && !why)
            sleep_ns(20000000);
    }
    if (why) {
        for (int k = 0; k < nkids; k++)
            if (kids[k] > 0) {
                kill(kids[k], SIGKILL);
                waitpid(kids[k], NULL, 0);
                untrack(kids[k]);
            }
        daemon_stop(&d);
        die("%s, rep %d: %s%s%s", cfg->name, rep + 1, why, sh->err[0] ? ": " : "", sh->err);
    }
    if (cfg->kind == XP_TMEM)
        r->daemon_status = daemon_stop(&d);
    collect(sh, r);
    pthread_barrier_destroy(&sh->barrier);
    munmap(sh, sizeof(*sh));
}

/* ------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------- */
struct summary {
    const struct xp_config *cfg;
    int n;
    struct run runs[MAX_REPS];
    /* medians over the runs */
    double runtime, runtime_min, runtime_max;
    double file_reads, swap_reads, swap_writes, shrink_writes, ios;
    double tmem_gets, tmem_hits, tmem_puts, tmem_kept;
    double daemon_cpu, tenant_cpu, others;
    double avoided, avoided_per_s, daemon_pct, us_per_avoided, total_us_per_avoided;
    double reads_avoided_per_s, writes_avoided_per_s;
    double speedup, io_wait_per_io_us;
    double tmem_call_us;        /* mean time of a tmem call, as the tenant sees it */
    double breakeven_us;        /* tenants' time in tmem per I/O avoided */
    uint64_t verify_failed;
    int daemon_bad;             /* runs whose tmemd did not exit with 0 */
    double ratio;               /* logical / stored bytes of tmem's pages at the end */
};

static double med(const double *v, int n) { return median(v, n); }

#define MED(field_expr)                                                                     \
    ({                                                                                      \
        double v_[MAX_REPS];                                                                \
        for (int i_ = 0; i_ < s->n; i_++) {                                                 \
            const struct run *r = &s->runs[i_];                                             \
            v_[i_] = (double)(field_expr);                                                  \
        }                                                                                   \
        med(v_, s->n);                                                                      \
    })

static void summarise(struct summary *s, const struct summary *base)
{
    s->runtime = MED(r->runtime_s);
    s->runtime_min = s->runtime_max = s->runs[0].runtime_s;
    for (int i = 0; i < s->n; i++) {
        s->runtime_min = fmin(s->runtime_min, s->runs[i].runtime_s);
        s->runtime_max = fmax(s->runtime_max, s->runs[i].runtime_s);
        s->verify_failed += s->runs[i].verify_failed;
        s->daemon_bad += s->cfg->kind == XP_TMEM && s->runs[i].daemon_status != 0;
    }
    s->file_reads = MED(r->file_reads);
    s->swap_reads = MED(r->swap_reads);
    s->swap_writes = MED(r->swap_writes);
    s->shrink_writes = MED(r->shrink_writes);
    s->ios = MED(ios_of(r));
    s->tmem_gets = MED(r->cc_gets + r->fs_loads);
    s->tmem_hits = MED(r->cc_hits + r->fs_loads);
    s->tmem_puts = MED(r->cc_puts + r->fs_stores);
    s->tmem_kept = MED(r->cc_puts_ok + r->fs_stores_ok);
    s->daemon_cpu = MED(r->daemon_cpu_s);
    s->tenant_cpu = MED(r->tenant_cpu_s);
    s->others = MED(r->others_cpus);
    s->io_wait_per_io_us = MED(ios_of(r) ? r->io_wait_s * 1e6 / (double)ios_of(r) : 0);
    s->tmem_call_us = MED(r->tmem_calls ? r->tmem_s * 1e6 / (double)r->tmem_calls : 0);
    s->ratio = MED(density_of(r));
    if (!base)
        return;
    double b_ios = base->ios, b_rt = base->runtime, b_cpu = base->tenant_cpu;
    s->avoided = MED(b_ios - (double)ios_of(r));
    s->avoided_per_s = MED((b_ios - (double)ios_of(r)) / r->runtime_s);
    double b_reads = base->file_reads + base->swap_reads, b_writes = base->swap_writes;
    s->reads_avoided_per_s = MED((b_reads - (double)reads_of(r)) / r->runtime_s);
    s->writes_avoided_per_s = MED((b_writes - (double)r->swap_writes) / r->runtime_s);
    s->speedup = MED(b_rt / r->runtime_s);
    if (s->cfg->kind == XP_TMEM) {
        s->breakeven_us = MED(b_ios - (double)ios_of(r) > 0
                                  ? r->tmem_s * 1e6 / (b_ios - (double)ios_of(r))
                                  : NAN);
        s->daemon_pct = MED(100.0 * r->daemon_cpu_s / r->runtime_s);
        s->us_per_avoided = MED(b_ios - (double)ios_of(r) > 0
                                    ? r->daemon_cpu_s * 1e6 / (b_ios - (double)ios_of(r))
                                    : NAN);
        s->total_us_per_avoided =
            MED(b_ios - (double)ios_of(r) > 0
                    ? (r->daemon_cpu_s + r->tenant_cpu_s - b_cpu) * 1e6 / (b_ios - (double)ios_of(r))
                    : NAN);
    }
}

static void print_results(struct summary *sums, int nsum)
{
    const struct xp_params *p = &O.p;
    printf("\n| config | run time s (min-max) | backing reads (file + swap) | backing writes "
           "(of which shrink) | I/O avoided vs static | avoided I/O per s | tmem hits / gets "
           "| tmem puts kept / asked | tmemd CPU s | tmemd CPU, %% of one CPU "
           "| tmemd CPU us per avoided I/O | tenants' CPU s |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < nsum; i++) {
        const struct summary *s = &sums[i];
        bool tm = s->cfg->kind == XP_TMEM, st = s->cfg->kind == XP_STATIC;
        char avoided[48] = "-", per_s[32] = "-", hits[48] = "-", puts[48] = "-";
        char dcpu[32] = "-", dpct[32] = "-", dus[32] = "-";
        if (!st) {
            snprintf(avoided, sizeof(avoided), "%.0f (%.0f%%)", s->avoided,
                     sums[0].ios > 0 ? 100.0 * s->avoided / sums[0].ios : 0.0);
            snprintf(per_s, sizeof(per_s), "%.0f", s->avoided_per_s);
        }
        if (tm) {
            snprintf(hits, sizeof(hits), "%.0f / %.0f", s->tmem_hits, s->tmem_gets);
            snprintf(puts, sizeof(puts), "%.0f / %.0f", s->tmem_kept, s->tmem_puts);
            snprintf(dcpu, sizeof(dcpu), "%.2f", s->daemon_cpu);
            snprintf(dpct, sizeof(dpct), "%.1f", s->daemon_pct);
            snprintf(dus, sizeof(dus), "%.1f", s->us_per_avoided);
        }
        printf("| %s | %.2f (%.2f-%.2f) | %.0f (%.0f + %.0f) | %.0f (%.0f) | %s | %s | %s | %s "
               "| %s | %s | %s | %.2f |\n",
               s->cfg->name, s->runtime, s->runtime_min, s->runtime_max,
               s->file_reads + s->swap_reads, s->file_reads, s->swap_reads, s->swap_writes,
               s->shrink_writes, avoided, per_s, hits, puts, dcpu, dpct, dus, s->tenant_cpu);
    }
    printf("\nMedians of %d run%s per configuration; counts over the %d measured phases (after "
           "%d warm-up phases), all tenants.\n", sums[0].n, sums[0].n > 1 ? "s" : "", p->phases,
           p->warmup_phases);

    /* the comparison with the seeds */
    printf("\nAgainst the seeds (~%.0f I/O per second saved for 0.1-0.2%% of one CPU, i.e. "
           "about 3-7 us of CPU per I/O saved):\n\n", SEEDS_IO_PER_S);
    for (int i = 0; i < nsum; i++) {
        const struct summary *s = &sums[i];
        if (s->cfg->kind != XP_TMEM)
            continue;
        if (!(s->avoided > 0)) {
            printf("- %s: avoided no I/O (%.0f more than static): no cost per I/O saved.\n",
                   s->cfg->name, -s->avoided);
            continue;
        }
        printf("- %s: %.0f I/O per second avoided for %.1f%% of one CPU in tmemd: %.1f us of "
               "tmemd CPU per I/O avoided (%.1f us with the tenants' extra CPU); at the seeds' "
               "rate of %.0f I/O per second that would be %.2f%% of one CPU (%.2f%% with the "
               "tenants' side).\n",
               s->cfg->name, s->avoided_per_s, s->daemon_pct, s->us_per_avoided,
               s->total_us_per_avoided, SEEDS_IO_PER_S,
               SEEDS_IO_PER_S * s->us_per_avoided / 1e4,
               SEEDS_IO_PER_S * s->total_us_per_avoided / 1e4);
    }
    printf("\nOther figures (medians):\n\n");
    for (int i = 0; i < nsum; i++) {
        const struct summary *s = &sums[i];
        printf("- %s: ", s->cfg->name);
        if (s->cfg->kind != XP_STATIC)
            printf("%.2fx as fast as static; reads avoided %.0f/s, writes avoided %.0f/s; ",
                   s->speedup, s->reads_avoided_per_s, s->writes_avoided_per_s);
        printf("mean backing I/O %.0f us (delay %u us); others used %.2f CPUs meanwhile",
               s->io_wait_per_io_us, p->io_delay_us, s->others);
        if (s->cfg->kind == XP_TMEM) {
            printf("; a tmem call took %.1f us on average", s->tmem_call_us);
            if (s->breakeven_us > 0)
                printf("; the tenants spent %.0f us in tmem calls per I/O avoided (tmem "
                       "shortens the run only when a backing I/O costs more than that)",
                       s->breakeven_us);
        }
        if (s->cfg->kind == XP_TMEM && s->runs[0].have_dstats)
            printf("; at the end tmemd held %.1f MiB for %" PRIu64 " ephemeral + %" PRIu64
                   " persistent pages (stored %.2fx denser than whole pages), %" PRIu64
                   " evictions, %" PRIu64 " puts refused for room",
                   (double)s->runs[0].d_held / 1048576.0, s->runs[0].d_eph, s->runs[0].d_pers,
                   s->ratio, s->runs[0].d_evictions, s->runs[0].d_refused);
        if (s->cfg->kind == XP_TMEM && s->runs[0].have_dstats && s->runs[0].d_lending)
            printf("; memory lent to the tenants' libraries: %.2f MiB ephemeral + %.2f MiB "
                   "persistent at the end; %" PRIu64 " units granted, %" PRIu64 " asks refused, %"
                   PRIu64 " given back, %" PRIu64 " taken by force, %" PRIu64 " shrink requests",
                   (double)s->runs[0].d_lent[0] / 1048576.0,
                   (double)s->runs[0].d_lent[1] / 1048576.0, s->runs[0].d_grown,
                   s->runs[0].d_refused_units, s->runs[0].d_returned, s->runs[0].d_revoked,
                   s->runs[0].d_shrinks);
        if (s->verify_failed)
            printf("; **%" PRIu64 " pages read back wrong**", s->verify_failed);
        if (s->daemon_bad)
            printf("; **tmemd exited badly in %d run(s)**", s->daemon_bad);
        printf(".\n");
    }
}

static void write_tsv(struct summary *sums, int nsum)
{
    if (O.tsv) {
        FILE *f = fopen(O.tsv, "w");
        if (!f)
            die("%s: %s", O.tsv, strerror(errno));
        static const char *const cols[] = {
            "runtime_s", "runtime_min", "runtime_max", "file_reads", "swap_reads",
            "swap_writes", "shrink_writes", "io_total", "io_avoided", "avoided_per_s",
            "reads_avoided_per_s", "writes_avoided_per_s",
            "tmem_gets", "tmem_hits", "tmem_puts", "tmem_kept", "daemon_cpu_s",
            "daemon_cpu_pct", "us_per_avoided", "total_us_per_avoided", "tenant_cpu_s",
            "others_cpus", "speedup", "density", "tmem_call_us", "breakeven_us",
            "verify_failed", "daemon_bad", "runs",
        };
        fprintf(f, "config");
        for (size_t k = 0; k < sizeof(cols) / sizeof(cols[0]); k++)
            fprintf(f, "\t%s", cols[k]);
        fprintf(f, "\n");
        for (int i = 0; i < nsum; i++) {
            const struct summary *s = &sums[i];
            const double v[] = {
                s->runtime, s->runtime_min, s->runtime_max, s->file_reads, s->swap_reads,
                s->swap_writes, s->shrink_writes, s->ios, s->avoided, s->avoided_per_s,
                s->reads_avoided_per_s, s->writes_avoided_per_s,
                s->tmem_gets, s->tmem_hits, s->tmem_puts, s->tmem_kept, s->daemon_cpu,
                s->daemon_pct, s->us_per_avoided, s->total_us_per_avoided, s->tenant_cpu,
                s->others, s->speedup, s->ratio, s->tmem_call_us, s->breakeven_us,
                (double)s->verify_failed, s->daemon_bad, s->n,
            };
            _Static_assert(sizeof(v) / sizeof(v[0]) == sizeof(cols) / sizeof(cols[0]),
                           "a value per column");
            fprintf(f, "%s", s->cfg->name);
            for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++)
                if (isnan(v[k]))
                    fprintf(f, "\t-");
                else
                    fprintf(f, "\t%.6g", v[k]);
            fprintf(f, "\n");
        }
        fclose(f);
    }
    if (O.runs_tsv) {
        FILE *f = fopen(O.runs_tsv, "w");
        if (!f)
            die("%s: %s", O.runs_tsv, strerror(errno));
        fprintf(f, "config\trep\truntime_s\tfile_reads\tswap_reads\tswap_writes\tshrink_writes\t"
                   "first_touch\taccesses\thits\tcc_gets\tcc_hits\tcc_puts\tcc_puts_ok\t"
                   "fs_stores\tfs_stores_ok\tfs_loads\tio_wait_s\ttmem_calls\ttmem_s\tdaemon_cpu_s\t"
                   "tenant_cpu_s\t"
                   "others_cpus\tdaemon_status\tverify_failed\td_eph_pages\td_pers_pages\t"
                   "d_bytes_held\td_evictions\td_refused_nomem\n");
        for (int i = 0; i < nsum; i++)
            for (int k = 0; k < sums[i].n; k++) {
                const struct run *r = &sums[i].runs[k];
                fprintf(f, "%s\t%d\t%.3f\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                           "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                           "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64
                           "\t%.3f\t%" PRIu64 "\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%" PRIu64
                           "\t%" PRIu64 "\t%" PRIu64
                           "\t%" PRIu64 "\t%" PRIu64 "\t%" PRIu64 "\n",
                        sums[i].cfg->name, k + 1, r->runtime_s, r->file_reads, r->swap_reads,
                        r->swap_writes, r->shrink_writes, r->first_touch, r->accesses, r->hits,
                        r->cc_gets, r->cc_hits, r->cc_puts, r->cc_puts_ok, r->fs_stores,
                        r->fs_stores_ok, r->fs_loads, r->io_wait_s, r->tmem_calls, r->tmem_s,
                        r->daemon_cpu_s,
                        r->tenant_cpu_s, r->others_cpus, r->daemon_status, r->verify_failed,
                        r->d_eph, r->d_pers, r->d_held, r->d_evictions, r->d_refused);
            }
        fclose(f);
    }
    if (O.phases_tsv) {
        FILE *f = fopen(O.phases_tsv, "w");
        if (!f)
            die("%s: %s", O.phases_tsv, strerror(errno));
        /* one row per phase; per configuration, the run of median run time:
         * its backing I/O, then its seconds, then its tmem hits */
        const struct run *pick[NCONFIGS];
        for (int i = 0; i < nsum; i++) {
            const struct summary *s = &sums[i];
            double best = INFINITY;
            for (int k = 0; k < s->n; k++)
                if (fabs(s->runs[k].runtime_s - s->runtime) < best) {
                    best = fabs(s->runs[k].runtime_s - s->runtime);
                    pick[i] = &s->runs[k];
                }
        }
        static const char *const what[] = { "", "_seconds", "_tmem_hits" };
        fprintf(f, "phase\thot\tmeasured");
        for (int w = 0; w < 3; w++)
            for (int i = 0; i < nsum; i++)
                fprintf(f, "\t%s%s", sums[i].cfg->name, what[w]);
        fprintf(f, "\n");
        for (int ph = 0; ph < O.p.warmup_phases + O.p.phases; ph++) {
            fprintf(f, "%d\t%d\t%d", ph + 1, ph % O.p.tenants, ph >= O.p.warmup_phases);
            for (int i = 0; i < nsum; i++)
                fprintf(f, "\t%" PRIu64, pick[i]->phase_reads[ph] + pick[i]->phase_writes[ph]);
            for (int i = 0; i < nsum; i++)
                fprintf(f, "\t%.3f", pick[i]->phase_s[ph]);
            for (int i = 0; i < nsum; i++)
                fprintf(f, "\t%" PRIu64, pick[i]->phase_tmem_hits[ph]);
            fprintf(f, "\n");
        }
        fclose(f);
    }
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */
static void usage(FILE *f)
{
    fprintf(f,
        "usage: tmem-experiment [OPTION]...\n"
        "What tmem saves when tenants' working sets shift: N tenants, each with a fixed\n"
        "private memory, run through phases in which one tenant at a time is hot, under\n"
        "static partitioning, under tmem (cleancache and frontswap through a real tmemd,\n"
        "uncompressed, LZ4, zstd; and LZ4 with weights that follow the hot tenant), and\n"
        "with one memory for all (the upper bound).\n"
        "Prints a Markdown table of the medians; docs/experiment.md explains it.\n"
        "\n"
        "Sizes (pages of 4 KiB):\n"
        "  --tenants N          tenants (default 4; at most %d)\n"
        "  --private P          a tenant's own memory under tmem (default 2048)\n"
        "  --slack R            the rest of the host's memory: R/N more per tenant (static),\n"
        "                       tmemd's max memory (tmem), or shared (upper) (default 4096)\n"
        "  --hot-ws W           pages a hot tenant touches: its whole data set (default P + R)\n"
        "  --cold-ws W          pages a cold tenant touches (default P / 2)\n"
        "  --cold-drift D       pages the cold window moves each phase (default 0)\n"
        "Workload:\n"
        "  --accesses A         accesses per tenant per phase (default 3 * hot-ws)\n"
        "  --phases K           phases measured (default 2 * N)\n"
        "  --warmup K           phases run first, not measured (default N)\n"
        "  --file-share F       share of a tenant's pages that are file pages (default 0.5)\n"
        "  --write-ratio W      share of anonymous-page accesses that write (default 0.3)\n"
        "  --zipf S             zipf(S) over the working set instead of uniform (default 0)\n"
        "  --io-delay-us U      delay of one backing-store read or write (default 100)\n"
        "  --seed S             the workload's seed (default 1; printed)\n"
        "Frontswap self-shrinking (Xen's rule):\n"
        "  --no-shrink          never move frontswap pages out of tmem\n"
        "  --tick A             accesses per tick (default accesses / 10)\n"
        "  --inertia K          idle ticks before a shrink (default 3)\n"
        "  --hysteresis H       shrink by 1/H of the pages each time (default 20)\n"
        "Runs:\n"
        "  --configs LIST       of static,tmem,tmem-lz4,tmem-zstd,tmem-lz4-hotw,upper\n"
        "                       (default all; static, the baseline, is always run)\n"
        "  --reps N             runs of each configuration (default 3; medians)\n"
        "  --quick              small sizes, 1 run (a smoke run of seconds)\n"
        "  --daemon-set K=V     one more tmemd --set (repeatable), e.g. daemon.spin_us=0\n"
        "  --tmemd PATH         the daemon (default %s, or $TMEMD_BIN)\n"
        "  --dir DIR            where the temporary directory goes (default $TMPDIR or /tmp)\n"
        "  --timeout S          give up on a run after S seconds (default 900)\n"
        "Output:\n"
        "  --tsv FILE           medians, one row per configuration\n"
        "  --runs-tsv FILE      every run\n"
        "  --phases-tsv FILE    every phase of each configuration's median run\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status 1 if a run failed, a page read back did not match what was written,\n"
        "or a tmemd did not exit with status 0.\n",
        XP_MAX_TENANTS, TMEMD_BIN);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        die("--%s: '%s' is not a whole number from %" PRIu64 " to %" PRIu64, opt, s, lo, hi);
    return v;
}

static double parse_double(const char *opt, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        die("--%s: '%s' is not a number from %g to %g", opt, s, lo, hi);
    return v;
}

static void parse_configs(const char *list)
{
    memset(O.run, 0, sizeof(O.run));
    char *dup = strdup(list), *save = NULL;
    if (!dup)
        die("out of memory");
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < NCONFIGS; i++)
            if (strcmp(tok, all_configs[i].name) == 0)
                found = i;
        if (found < 0)
            die("--configs: '%s' is not a configuration (static, tmem, tmem-lz4, tmem-zstd, "
                "tmem-lz4-hotw, upper)", tok);
        O.run[found] = true;
    }
    free(dup);
    O.run[0] = true;            /* static: the baseline of every difference */
}

int main(int argc, char **argv)
{
    bench_prog = "tmem-experiment";
    bench_main_pid = getpid();
    struct xp_params *p = &O.p;
    /* 0 = "not given": the defaults depend on other options */
    uint64_t tenants = 0, priv = 0, slack = 0, hot = 0, cold = 0, accesses = 0, tick = 0;
    int64_t phases = -1, warmup = -1, reps = -1;
    p->file_share = 0.5;
    p->write_ratio = 0.3;
    p->io_delay_us = 100;
    p->seed = 1;
    p->shrink = true;
    p->inertia = 3;
    p->hysteresis = 20;
    O.tmemd = getenv("TMEMD_BIN") ? getenv("TMEMD_BIN") : TMEMD_BIN;
    O.timeout_s = 900;
    parse_configs("static,tmem,tmem-lz4,tmem-zstd,tmem-lz4-hotw,upper");

    enum { OPT_TENANTS = 256, OPT_PRIVATE, OPT_SLACK, OPT_HOT, OPT_COLD, OPT_DRIFT,
           OPT_ACCESSES, OPT_PHASES, OPT_WARMUP, OPT_FILE, OPT_WRITE, OPT_ZIPF, OPT_DELAY,
           OPT_SEED, OPT_NOSHRINK, OPT_TICK, OPT_INERTIA, OPT_HYST, OPT_CONFIGS, OPT_REPS,
           OPT_QUICK, OPT_DSET, OPT_TMEMD, OPT_DIR, OPT_TIMEOUT, OPT_TSV, OPT_RUNS, OPT_PH_TSV };
    static const struct option opts[] = {
        { "tenants", required_argument, NULL, OPT_TENANTS },
        { "private", required_argument, NULL, OPT_PRIVATE },
        { "slack", required_argument, NULL, OPT_SLACK },
        { "hot-ws", required_argument, NULL, OPT_HOT },
        { "cold-ws", required_argument, NULL, OPT_COLD },
        { "cold-drift", required_argument, NULL, OPT_DRIFT },
        { "accesses", required_argument, NULL, OPT_ACCESSES },
        { "phases", required_argument, NULL, OPT_PHASES },
        { "warmup", required_argument, NULL, OPT_WARMUP },
        { "file-share", required_argument, NULL, OPT_FILE },
        { "write-ratio", required_argument, NULL, OPT_WRITE },
        { "zipf", required_argument, NULL, OPT_ZIPF },
        { "io-delay-us", required_argument, NULL, OPT_DELAY },
        { "seed", required_argument, NULL, OPT_SEED },
        { "no-shrink", no_argument, NULL, OPT_NOSHRINK },
        { "tick", required_argument, NULL, OPT_TICK },
        { "inertia", required_argument, NULL, OPT_INERTIA },
        { "hysteresis", required_argument, NULL, OPT_HYST },
        { "configs", required_argument, NULL, OPT_CONFIGS },
        { "reps", required_argument, NULL, OPT_REPS },
        { "quick", no_argument, NULL, OPT_QUICK },
        { "daemon-set", required_argument, NULL, OPT_DSET },
        { "tmemd", required_argument, NULL, OPT_TMEMD },
        { "dir", required_argument, NULL, OPT_DIR },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "tsv", required_argument, NULL, OPT_TSV },
        { "runs-tsv", required_argument, NULL, OPT_RUNS },
        { "phases-tsv", required_argument, NULL, OPT_PH_TSV },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *n = NULL;
        for (const struct option *o = opts; o->name; o++)
            if (o->val == c)
                n = o->name;
        switch (c) {
        case OPT_TENANTS: tenants = parse_u64(n, optarg, 1, XP_MAX_TENANTS); break;
        case OPT_PRIVATE: priv = parse_u64(n, optarg, 1, 1u << 22); break;
        case OPT_SLACK: slack = parse_u64(n, optarg, 256, 1u << 22); break;
        case OPT_HOT: hot = parse_u64(n, optarg, 1, 1u << 23); break;
        case OPT_COLD: cold = parse_u64(n, optarg, 1, 1u << 23); break;
        case OPT_DRIFT: p->cold_drift = (uint32_t)parse_u64(n, optarg, 0, 1u << 23); break;
        case OPT_ACCESSES: accesses = parse_u64(n, optarg, 1, 1ull << 32); break;
        case OPT_PHASES: phases = (int64_t)parse_u64(n, optarg, 1, XP_MAX_PHASES); break;
        case OPT_WARMUP: warmup = (int64_t)parse_u64(n, optarg, 0, XP_MAX_PHASES); break;
        case OPT_FILE: p->file_share = parse_double(n, optarg, 0, 1); break;
        case OPT_WRITE: p->write_ratio = parse_double(n, optarg, 0, 1); break;
        case OPT_ZIPF: p->zipf_s = parse_double(n, optarg, 0, 5); break;
        case OPT_DELAY: p->io_delay_us = (uint32_t)parse_u64(n, optarg, 0, 1000000); break;
        case OPT_SEED: p->seed = parse_u64(n, optarg, 0, UINT64_MAX); break;
        case OPT_NOSHRINK: p->shrink = false; break;
        case OPT_TICK: tick = parse_u64(n, optarg, 1, 1ull << 32); break;
        case OPT_INERTIA: p->inertia = (int)parse_u64(n, optarg, 1, 1000); break;
        case OPT_HYST: p->hysteresis = (int)parse_u64(n, optarg, 1, 1000); break;
        case OPT_CONFIGS: parse_configs(optarg); break;
        case OPT_REPS: reps = (int64_t)parse_u64(n, optarg, 1, MAX_REPS); break;
        case OPT_QUICK: O.quick = true; break;
        case OPT_DSET:
            if (O.nsets == MAX_SETS)
                die("--daemon-set: at most %d", MAX_SETS);
            if (!strchr(optarg, '='))
                die("--daemon-set: '%s' is not KEY=VALUE", optarg);
            O.sets[O.nsets++] = optarg;
            break;
        case OPT_TMEMD: O.tmemd = optarg; break;
        case OPT_DIR: O.dir_base = optarg; break;
        case OPT_TIMEOUT: O.timeout_s = parse_double(n, optarg, 0, 1e6); break;
        case OPT_TSV: O.tsv = optarg; break;
        case OPT_RUNS: O.runs_tsv = optarg; break;
        case OPT_PH_TSV: O.phases_tsv = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);

    /* the defaults that follow from others */
    p->tenants = (int)(tenants ? tenants : 4);
    p->private_pages = (uint32_t)(priv ? priv : O.quick ? 256 : 2048);
    p->slack_pages = (uint32_t)(slack ? slack : O.quick ? 512 : 4096);
    p->hot_ws = (uint32_t)(hot ? hot : p->private_pages + p->slack_pages);
    p->cold_ws = (uint32_t)(cold ? cold : p->private_pages / 2 ? p->private_pages / 2 : 1);
    p->accesses = accesses ? accesses : 3ull * p->hot_ws;
    p->phases = (int)(phases >= 0 ? phases : O.quick ? p->tenants : 2 * p->tenants);
    p->warmup_phases = (int)(warmup >= 0 ? warmup : p->tenants);
    p->tick = tick ? tick : (p->accesses / 10 ? p->accesses / 10 : 1);
    O.reps = (int)(reps >= 0 ? reps : O.quick ? 1 : 3);
    if (p->cold_ws > p->hot_ws)
        die("--cold-ws %" PRIu32 " is larger than --hot-ws %" PRIu32, p->cold_ws, p->hot_ws);
    if (p->warmup_phases + p->phases > XP_MAX_PHASES)
        die("--warmup + --phases: at most %d phases in all", XP_MAX_PHASES);
    if (p->slack_pages < (uint32_t)p->tenants)
        die("--slack %" PRIu32 " is smaller than --tenants", p->slack_pages);
    if ((uint64_t)p->slack_pages * XP_PAGE < 1048576)
        die("--slack %" PRIu32 ": tmemd needs at least 1 MiB (256 pages)", p->slack_pages);

    /* the temporary directory and the data files */
    const char *base = O.dir_base ? O.dir_base : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    if (snprintf(g_dir, sizeof(g_dir), "%s/tmem-xp.XXXXXX", base) >= (int)sizeof(g_dir))
        die("--dir: '%s' is too long (a socket's path must fit in 108 bytes)", base);
    if (!mkdtemp(g_dir)) {
        int e = errno;
        g_dir[0] = 0;
        die("mkdtemp in %s: %s", base, strerror(e));
    }
    snprintf(p->dir, sizeof(p->dir), "%s", g_dir);
    for (int t = 0; t < p->tenants; t++) {
        add_file("%s/tenant%d.data", g_dir, t);
        add_file("%s/tenant%d.swap", g_dir, t);
    }
    add_file("%s/c.sock", g_dir);
    add_file("%s/ctl.sock", g_dir);
    add_file("%s/c.sock.lock", g_dir);      /* tmemd's locks of its socket paths */
    add_file("%s/ctl.sock.lock", g_dir);
    add_file("%s/tmemd.log", g_dir);
    atexit(cleanup);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    for (int t = 0; t < p->tenants; t++) {
        int r = xp_make_data_file(p, t);
        if (r < 0)
            die("writing tenant %d's data file in %s: %s", t, g_dir, strerror(-r));
    }

    /* what is run, in the output */
    uint32_t nfile, nanon;
    xp_page_counts(p, 0, &nfile, &nanon);
    print_header(O.quick);
    double load[3] = { 0 };
    if (getloadavg(load, 3) < 0)
        load[0] = load[1] = load[2] = -1;
    printf("- load average before: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    printf("- tenants N = %d; private memory P = %" PRIu32 " pages (%.1f MiB) each; slack "
           "R = %" PRIu32 " pages (%.1f MiB): host memory H = N*P + R = %" PRIu64 " pages\n",
           p->tenants, p->private_pages, p->private_pages / 256.0, p->slack_pages,
           p->slack_pages / 256.0, (uint64_t)p->tenants * p->private_pages + p->slack_pages);
    printf("- working sets: hot %" PRIu32 " pages (tenant 0: %" PRIu32 " file + %" PRIu32
           " anonymous), cold %" PRIu32 " pages (drifting %" PRIu32 " per phase); %s accesses, "
           "%.0f%% of anonymous ones writes\n", p->hot_ws, nfile, nanon, p->cold_ws,
           p->cold_drift, p->zipf_s > 0 ? "zipf" : "uniform", 100 * p->write_ratio);
    if (p->zipf_s > 0)
        printf("- zipf s = %.2f\n", p->zipf_s);
    printf("- %d warm-up + %d measured phases of %" PRIu64 " accesses per tenant; in phase k "
           "tenant k mod %d is hot\n", p->warmup_phases, p->phases, p->accesses, p->tenants);
    printf("- backing-store delay %u us per page read or write (parallel across tenants)\n",
           p->io_delay_us);
    if (p->shrink)
        printf("- frontswap self-shrink: every %" PRIu64 " accesses, after %d ticks without "
               "growth, by 1/%d\n", p->tick, p->inertia, p->hysteresis);
    else
        printf("- frontswap self-shrink: off\n");
    printf("- tmemd: --max-memory %" PRIu64 " (R pages), governor off, no uid's persistent "
           "share (the tenants stand for different users, run as one uid), defaults otherwise",
           (uint64_t)p->slack_pages * XP_PAGE);
    for (int i = 0; i < O.nsets; i++)
        printf(", %s", O.sets[i]);
    printf("\n- seed %" PRIu64 "; %d run%s per configuration\n", p->seed, O.reps,
           O.reps > 1 ? "s" : "");
    printf("\n| config | what |\n|---|---|\n");
    for (int i = 0; i < NCONFIGS; i++)
        if (O.run[i])
            printf("| %s | %s |\n", all_configs[i].name, all_configs[i].what);
    fflush(stdout);

    /* the runs: every configuration in each repetition, so that a noisy
     * minute falls on all of them alike */
    static struct summary sums[NCONFIGS];
    int nsum = 0;
    for (int i = 0; i < NCONFIGS; i++)
        if (O.run[i])
            sums[nsum++].cfg = &all_configs[i];
    for (int rep = 0; rep < O.reps; rep++)
        for (int i = 0; i < nsum; i++) {
            struct run *r = &sums[i].runs[sums[i].n++];
            run_one(sums[i].cfg, rep, r);
            fprintf(stderr, "  .. %s, rep %d/%d: %.2f s, %" PRIu64 " backing I/O, tmemd CPU "
                    "%.2f s\n", sums[i].cfg->name, rep + 1, O.reps, r->runtime_s, ios_of(r),
                    r->daemon_cpu_s);
        }
    for (int i = 0; i < nsum; i++)
        summarise(&sums[i], i ? &sums[0] : NULL);
    print_results(sums, nsum);
    if (getloadavg(load, 3) < 0)
        load[0] = load[1] = load[2] = -1;
    printf("\n- load average after: %.2f %.2f %.2f\n", load[0], load[1], load[2]);
    write_tsv(sums, nsum);

    int bad = 0;
    for (int i = 0; i < nsum; i++) {
        if (sums[i].verify_failed) {
            fprintf(stderr, "tmem-experiment: %s: %" PRIu64 " pages read back wrong\n",
                    sums[i].cfg->name, sums[i].verify_failed);
            bad = 1;
        }
        if (sums[i].daemon_bad) {
            fprintf(stderr, "tmem-experiment: %s: tmemd did not exit with status 0\n",
                    sums[i].cfg->name);
            bad = 1;
        }
    }
    return bad;
}
