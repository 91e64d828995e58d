/* SPDX-License-Identifier: MIT */
/*
 * daemon_bench.c - the daemon benchmarks (tmem-daemon-bench).
 *
 * A client process calls tmem_put_page / tmem_get_page on a real tmemd
 * (started here on temporary sockets, as the tests do), and every figure
 * is a RATIO against something measured in the same run, in alternating
 * rounds (the machines are small and shared; absolute rates drift):
 *
 *   D1  tmem round trips (a put or a get: one request, one reply) against
 *       the raw shared-memory ping-pong between two processes: the client
 *       copies a 4 KiB page into a shared region and flags a request, the
 *       server copies it out into a private store and copies a page back,
 *       flags done, the client copies the page out.  Two kinds, both
 *       sides spinning, or both sides sleeping on a futex every time, each
 *       run with two placements (spinning: unpinned and on two CPUs; futex:
 *       on one CPU and on two CPUs); the ratio is taken against the
 *       fastest of the four in each round.
 *       Per round trip: a raw round trip moves a page each way, a tmem call
 *       moves one page (plus the engine's work).               floor 0.5
 *   D2  tmem operations per second against memcached's, one client, one
 *       request at a time, 4 KiB values on loopback (SET then GET, tmem:
 *       put then get), memcached as started here (unpinned). Beside it:
 *       memcached pinned to the client's CPU (D2s) and to the other CPU
 *       (D2x), at its best placement of each round (D2best), the raw
 *       ping-pong's own ratio there (D2lim), tmem with LZ4 (D2z); Redis
 *       as D2r, D2rs, D2rx, D2rbest.                           floor 20
 *   D3  clients scaling from 1 to 4 processes on one tmemd (information;
 *       the raw ping-pong with as many pairs of processes alongside).
 *
 * plus latency percentiles of every operation, busy (back to back) and
 * idle-start (after --idle-ms of sleep, so that the daemon's worker is
 * asleep: its spin_us is 50 us by default).  tmem runs twice: compression
 * off (memory.compress=none: the floors) and the default LZ4 on text-like
 * pages (information).  memcached and redis-server are started here too on
 * free loopback ports with their own temporary directories, and stopped
 * at the end; bench/run.sh installs them.  Every transport's data is
 * checked once per run (each page got back equals the page put).
 *
 * Rounds during which other processes used more than QUIET_CPUS are set
 * aside and rerun, as in tmem-bench: "others" is the machine's busy time
 * (/proc/stat) minus this benchmark's own process tree (itself, its reaped
 * children, and the servers it started, from /proc/PID/stat).
 *
 * Output: Markdown on stdout (the table of ratios against floors, then the
 * rates, latencies and scaling); --tsv FILE writes the rows tab-separated.
 * docs/benchmarks.md, section "Daemon (issue 3)", explains the figures.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libmemcached/memcached.h>
#include <lz4.h>

#include "ctl/ctl_client.h"
#include "tmem/tmem.h"

#include "bench_util.h"

#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

#define PAGE        ((size_t)TMEM_PAGE_SIZE)
#define NSRC        1024u       /* source / destination pages (4 MiB each) */
#define MAX_ROUNDS  32
_Static_assert(MAX_ROUNDS <= BENCH_MAX_ROUNDS, "bench_util.h: room for the rounds");
#define MAX_CLIENTS 4

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */
static void cleanup(void);

/* In a forked child: die with the parent (a spinning raw server or a
 * server left behind by a killed benchmark would burn a CPU for ever). */
static void die_with_parent(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(1);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void futex_wait(_Atomic uint32_t *w, uint32_t expected)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, expected, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

/* Memory shared with forked children (MAP_SHARED before the fork), touched. */
static void *map_shared(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap shared %zu: %s", len, strerror(errno));
    memset(p, 0, len);
    return p;
}

static const char *fmt_rate(double per_s, char *buf, size_t size)
{
    if (per_s >= 1e6)
        snprintf(buf, size, "%.2f M/s", per_s / 1e6);
    else
        snprintf(buf, size, "%.1f k/s", per_s / 1e3);
    return buf;
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */
enum { PART_RATE = 1, PART_LATENCY = 2, PART_SCALING = 4, PART_ALL = 7 };

struct opts {
    int quick;
    int rounds;
    double secs;            /* per transport per round */
    unsigned only;
    int peers;              /* start memcached and redis */
    unsigned idle_ms;
    unsigned idle_samples;
    unsigned lat_ops;
    double settle;
    const char *tsv;
    const char *tmemd;
    const char *memcached;
    const char *redis;
    unsigned max_clients;
    const char *transports; /* NULL: all */
    int hog;                /* >= 0: a busy loop pinned to this CPU throughout */
};
static struct opts O;

/* ------------------------------------------------------------------------
 * Results: the table of ratios, and free-form detail sections
 * ---------------------------------------------------------------------- */
/* A row whose ratio is the median of the rounds' ratios[n]. */
static void add_rounds_result(const char *id, const char *what, const char *tmem,
                              const char *limit, const double *ratios, int n, double floor,
                              double load)
{
    add_result(id, what, tmem, limit, median(ratios, n), floor, ratios, n);
    result_load(load);
}

/* Details are Markdown written to a memory stream and printed after the
 * table; the TSV gets them as "detail" lines. */
static char *g_det;
static size_t g_detlen;
static FILE *g_detf;

static void det(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void det(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g_detf, fmt, ap);
    va_end(ap);
}

static void print_results(void)
{
    print_table("tmem");
    fflush(g_detf);
    if (g_detlen)
        fwrite(g_det, 1, g_detlen, stdout);
    print_passes();
    if (O.tsv) {
        FILE *f = tsv_open(O.tsv, "tmem");
        /* the detail tables, line by line */
        const char *p = g_det, *end = g_det + g_detlen;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
            if (len)
                fprintf(f, "detail\t%.*s\n", (int)len, p);
            p += len + 1;
        }
        fclose(f);
    }
}

/* ------------------------------------------------------------------------
 * Servers started here (tmemd, memcached, redis): temp dirs, free ports,
 * stopped at exit, whatever the exit.
 * ---------------------------------------------------------------------- */
struct server {
    const char *name;
    pid_t pid;
    char dir[64];
    char sock[96], ctl[96];     /* tmemd */
    int port;                   /* memcached, redis */
};

enum { S_TMEM_NONE, S_TMEM_LZ4, S_MEMCACHED, S_REDIS, S_HOG, S_N };
static struct server g_srv[S_N] = {
    { .name = "tmemd (compress=none)" }, { .name = "tmemd (lz4)" },
    { .name = "memcached" }, { .name = "redis-server" }, { .name = "busy loop (--hog)" },
};

/* --hog: a process that only spins, pinned to cpu, as a tenant's busy job
 * would be; stopped with the servers, its CPU time counted as our own (so
 * rounds are not set aside for it). */
static void start_hog(struct server *s, int cpu)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
        if (sched_setaffinity(0, sizeof(set), &set) != 0)
            _exit(1);
        for (volatile unsigned long n = 0;; n++)
            ;
    }
    s->pid = pid;
}

static void server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        int status;
        for (int i = 0; i < 500; i++) {
            if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
                s->pid = 0;
                break;
            }
            sleep_ns(10000000);
        }
        if (s->pid > 0) {
            fprintf(stderr, "tmem-daemon-bench: %s did not stop in 5 s: killed\n", s->name);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->pid = 0;
        }
    }
    if (s->dir[0]) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "tmem-daemon-bench: could not remove %s\n", s->dir);
        s->dir[0] = 0;
    }
}

static void cleanup(void)
{
    if (getpid() != bench_main_pid)
        return;
    for (int i = 0; i < S_N; i++)
        server_stop(&g_srv[i]);
}

static void on_signal(int sig)
{
    (void)sig;
    if (getpid() == bench_main_pid) {
        /* async-signal-safe calls only: kill, wait, unlink the files we
         * know of, remove the directories */
        static const char *const files[] = { "log", "c.sock", "ctl.sock", "c.sock.lock",
                                             "ctl.sock.lock" };
        for (int i = 0; i < S_N; i++) {
            if (g_srv[i].pid > 0) {
                kill(g_srv[i].pid, SIGKILL);
                waitpid(g_srv[i].pid, NULL, 0);
            }
            if (!g_srv[i].dir[0])
                continue;
            for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
                char path[128];
                size_t n = strlen(g_srv[i].dir), m = strlen(files[f]);
                if (n + 1 + m + 1 > sizeof(path))
                    continue;
                memcpy(path, g_srv[i].dir, n);
                path[n] = '/';
                memcpy(path + n + 1, files[f], m + 1);
                unlink(path);
            }
            rmdir(g_srv[i].dir);
        }
    }
    _exit(130);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        die("finding a free port: %s", strerror(errno));
    close(fd);
    return ntohs(sa.sin_port);
}

/* fork + exec argv with stdout/stderr to dir/log; the child gets its own
 * process group so that a ^C on the terminal reaches us first. */
static pid_t spawn(const char *const *argv, const char *dir)
{
    char log[128];
    snprintf(log, sizeof(log), "%s/log", dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        die("fork: %s", strerror(errno));
    if (pid == 0) {
        die_with_parent(parent);
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void show_log(const struct server *s)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "tail -n 20 '%s/log' >&2", s->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
}

static bool tcp_ready(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

static void mkdir_tmp(struct server *s, const char *tag)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/tmem-dbench-%s.XXXXXX", tag);
    if (!mkdtemp(s->dir))
        die("mkdtemp: %s", strerror(errno));
}

/* Waits until ready() or the server exits; false if it did not come up. */
static bool wait_up(struct server *s, bool (*ready)(const struct server *))
{
    for (int i = 0; i < 1000; i++) {
        if (ready(s))
            return true;
        int status;
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            fprintf(stderr, "tmem-daemon-bench: %s exited at start (status %d):\n", s->name,
                    status);
            s->pid = 0;
            show_log(s);
            return false;
        }
        sleep_ns(10000000);
    }
    fprintf(stderr, "tmem-daemon-bench: %s not ready after 10 s\n", s->name);
    show_log(s);
    return false;
}

static bool tmemd_ready(const struct server *s)
{
    struct stat st;
    return stat(s->sock, &st) == 0 && stat(s->ctl, &st) == 0;
}

static bool port_ready(const struct server *s)
{
    return tcp_ready(s->port);
}

static void start_tmemd(struct server *s, const char *compress)
{
    mkdir_tmp(s, compress);
    snprintf(s->sock, sizeof(s->sock), "%s/c.sock", s->dir);
    snprintf(s->ctl, sizeof(s->ctl), "%s/ctl.sock", s->dir);
    char set_compress[64];
    snprintf(set_compress, sizeof(set_compress), "memory.compress=%s", compress);
    const char *argv[] = { O.tmemd, "--socket", s->sock, "--control-socket", s->ctl,
                           "--max-memory", "256M", "--set", "metrics.port=0",
                           "--set", "governor.enabled=false", "--set", set_compress, NULL };
    s->pid = spawn(argv, s->dir);
    if (!wait_up(s, tmemd_ready))
        die("could not start %s (%s)", s->name, O.tmemd);
}

/* A TCP peer's temporary directory and free loopback port (also as text). */
static void tcp_prepare(struct server *s, const char *tag, char *port, size_t size)
{
    mkdir_tmp(s, tag);
    s->port = free_port();
    snprintf(port, size, "%d", s->port);
}

static bool start_memcached(struct server *s)
{
    char port[16];
    tcp_prepare(s, "memcached", port, sizeof(port));
    /* the defaults otherwise (4 threads); -U 0: no UDP; as root it wants -u */
    const char *argv[] = { O.memcached, "-l", "127.0.0.1", "-p", port, "-U", "0",
                           "-m", "256", "-u", "root", NULL };
    if (geteuid() != 0)
        argv[9] = NULL;
    s->pid = spawn(argv, s->dir);
    return wait_up(s, port_ready);
}

static bool start_redis(struct server *s)
{
    char port[16];
    tcp_prepare(s, "redis", port, sizeof(port));
    const char *argv[] = { O.redis, "--bind", "127.0.0.1", "--port", port, "--save", "",
                           "--appendonly", "no", "--dir", s->dir, "--daemonize", "no",
                           "--logfile", "", NULL };
    s->pid = spawn(argv, s->dir);
    return wait_up(s, port_ready);
}

/* ------------------------------------------------------------------------
 * Background load: the machine's busy time minus our own process tree's
 * ---------------------------------------------------------------------- */
static double proc_cpu_secs(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0.0;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0.0;
    unsigned long long ut = 0, st = 0;
    /* after ") ": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return 0.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Our own CPU time beyond this process's: the reaped children's, and the
 * servers'. */
static double own_extra_secs(void)
{
    double own = rusage_secs(RUSAGE_CHILDREN);
    for (int i = 0; i < S_N; i++)
        if (g_srv[i].pid > 0)
            own += proc_cpu_secs(g_srv[i].pid);
    return own;
}

static void settle(const char *what)
{
    char text[200];
    if (settle_text(O.settle, what, text, sizeof(text)))
        progress("%s", text);
}

static void det_load(const char *what, const struct round_set *rs)
{
    det("- background load, %s: %d rounds run, %d over %.2f CPUs set aside; kept rounds' mean "
        "%.2f CPUs, worst round %.2f\n",
        what, rs->attempts, rs->loaded, QUIET_CPUS, rs->load_kept, rs->load_max);
}

/* ------------------------------------------------------------------------
 * The pages: random (incompressible) for every transport; text-like pages
 * (LZ4 about 2x) for the tmem-with-LZ4 line.
 * ---------------------------------------------------------------------- */
static uint8_t *g_src;          /* NSRC random pages */
static uint8_t *g_txt;          /* NSRC text-like pages */

static void fill_text(uint8_t *p, uint64_t *rng, unsigned stamp)
{
    static const char *const words[] = {
        "the", "of", "and", "memory", "page", "to", "in", "is", "a", "that", "for", "it",
        "as", "with", "was", "on", "be", "at", "by", "this", "had", "not", "are", "but",
        "from", "or", "have", "an", "they", "which", "one", "you", "were", "her", "all",
        "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will",
        "more", "no", "if", "out", "so", "said", "what", "up", "its", "about", "into",
        "than", "them", "can", "only", "other", "new", "some", "could", "time", "these",
        "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our",
        "over", "man", "me", "even", "most", "made", "after", "also", "did", "many",
        "before", "must", "through", "back", "years", "where", "much", "your", "way",
        "well", "down", "should", "because", "each", "just", "those", "people", "how",
        "too", "little", "state", "good", "very", "make", "world", "still", "own", "see",
        "men", "work", "long", "get", "here", "between", "both", "life", "being", "under",
    };
    size_t nw = sizeof(words) / sizeof(words[0]);
    int n = snprintf((char *)p, PAGE, "%u:%llx ", stamp, (unsigned long long)rng_next(rng));
    size_t off = (size_t)n, col = off;
    while (off < PAGE) {
        uint64_t r = rng_next(rng);
        const char *w = words[r % nw];
        size_t len = strlen(w);
        for (size_t i = 0; i < len && off < PAGE; i++)
            p[off++] = (uint8_t)w[i];
        col += len + 1;
        if (off < PAGE)
            p[off++] = (col > 72) ? '\n' : ((r >> 32) % 11 == 0 ? ',' : ' ');
        if (col > 72)
            col = 0;
    }
}

static void make_pages(void)
{
    uint64_t rng = 42;
    g_src = map_private(NSRC * PAGE);
    g_txt = map_private(NSRC * PAGE);
    uint64_t *w = (uint64_t *)g_src;
    for (size_t i = 0; i < NSRC * PAGE / 8; i++)
        w[i] = rng_next(&rng);
    for (unsigned i = 0; i < NSRC; i++)
        fill_text(g_txt + (size_t)i * PAGE, &rng, i);
}

/* ------------------------------------------------------------------------
 * Transports.  One "op" is one request and its reply:
 *   raw: a round trip with a page each way;
 *   tmem: a put or a get (a page one way);
 *   memcached / redis: a SET or a GET of a 4 KiB value.
 * A "step" is what the rate loop repeats: raw one op, the others a pair
 * (put then get of the same page / SET then GET of the same key).
 *
 * Placement.  Where the scheduler puts the two processes decides the cost
 * of a hand-off: a process sleeping on an idle vCPU takes tens of
 * microseconds to wake, one that shares the waker's CPU a few.  tmem runs
 * unpinned (its client and worker spin, so they end up on two CPUs); the
 * raw ping-pong runs pinned to its best placements (spinning: two CPUs;
 * futex: one CPU and two CPUs), and the peers run unpinned, pinned to the
 * client's CPU, and pinned to the other CPU.  The client's CPU alternates
 * between rounds.
 * ---------------------------------------------------------------------- */
enum kind { K_SPIN, K_FUTEX, K_TMEM_NONE, K_TMEM_LZ4, K_MC, K_RD };
enum place { PL_FREE, PL_SAME, PL_CROSS };

struct trdef {
    int kind, place;
    const char *name;
    const char *tag;        /* for --transports */
};
static const struct trdef TR[] = {
    { K_SPIN, PL_FREE, "raw ping-pong, spinning, unpinned", "spin" },
    { K_SPIN, PL_CROSS, "raw ping-pong, spinning, 2 CPUs", "spin2" },
    { K_FUTEX, PL_SAME, "raw ping-pong, futex, 1 CPU", "futex1" },
    { K_FUTEX, PL_CROSS, "raw ping-pong, futex, 2 CPUs", "futex2" },
    { K_TMEM_NONE, PL_FREE, "tmem, compress=none", "tmem" },
    { K_TMEM_LZ4, PL_FREE, "tmem, lz4 (text pages)", "lz4" },
    { K_TMEM_NONE, PL_SAME, "tmem, compress=none, tmemd on the client's CPU", "tmem1" },
    { K_TMEM_NONE, PL_CROSS, "tmem, compress=none, tmemd on the other CPU", "tmem2" },
    { K_MC, PL_FREE, "memcached, unpinned", "mc" },
    { K_MC, PL_SAME, "memcached, client's CPU", "mc1" },
    { K_MC, PL_CROSS, "memcached, other CPU", "mc2" },
    { K_RD, PL_FREE, "redis, unpinned", "redis" },
    { K_RD, PL_SAME, "redis, client's CPU", "redis1" },
    { K_RD, PL_CROSS, "redis, other CPU", "redis2" },
};
#define T_N ((int)(sizeof(TR) / sizeof(TR[0])))
_Static_assert(T_N <= BENCH_MAX_VALS, "one value per transport per round");
enum { T_SPIN_FREE, T_SPIN, T_FUTEX1, T_FUTEX2, T_TMEM_NONE, T_TMEM_LZ4, T_TMEM_SAME,
       T_TMEM_CROSS, T_MC_FREE, T_MC_SAME, T_MC_CROSS, T_RD_FREE, T_RD_SAME, T_RD_CROSS };
static bool g_have[T_N];
static int g_cpu[2] = { -1, -1 };        /* two CPUs we may run on; -1: one CPU only */

static bool is_raw(int t) { return TR[t].kind == K_SPIN || TR[t].kind == K_FUTEX; }
static bool is_tmem(int t) { return TR[t].kind == K_TMEM_NONE || TR[t].kind == K_TMEM_LZ4; }

/* --- placement -------------------------------------------------------------- */
static cpu_set_t g_all_cpus;

static void pin_tid(pid_t tid, int cpu)
{
    cpu_set_t set;
    if (cpu < 0) {
        set = g_all_cpus;
    } else {
        CPU_ZERO(&set);
        CPU_SET(cpu, &set);
    }
    sched_setaffinity(tid, sizeof(set), &set);
}

/* Every thread of a process (its threads do not change while we run). */
static void pin_process(pid_t pid, int cpu)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            pin_tid((pid_t)atoi(e->d_name), cpu);
    closedir(d);
}

static void init_cpus(void)
{
    sched_getaffinity(0, sizeof(g_all_cpus), &g_all_cpus);
    int n = 0;
    for (int c = 0; c < CPU_SETSIZE && n < 2; c++)
        if (CPU_ISSET(c, &g_all_cpus))
            g_cpu[n++] = c;
    if (n < 2)
        g_cpu[0] = g_cpu[1] = -1;
}

/* The client's CPU and the server's for transport t in round `attempt`
 * (-1: unpinned). */
static void placement(int t, int attempt, int *client, int *server)
{
    *client = *server = -1;
    if (TR[t].place == PL_FREE || g_cpu[0] < 0)
        return;
    *client = g_cpu[attempt % 2];
    *server = TR[t].place == PL_SAME ? *client : g_cpu[(attempt + 1) % 2];
}

/* --- the raw ping-pong ---------------------------------------------------- */
struct raw_shm {
    _Alignas(64) _Atomic uint32_t req;      /* sequence number posted by the client */
    uint32_t index;                         /* which page of the server's store */
    _Alignas(64) _Atomic uint32_t done;     /* sequence number served */
    _Alignas(64) _Atomic uint32_t stop;
    _Alignas(4096) uint8_t in[4096];        /* client -> server */
    uint8_t out[4096];                      /* server -> client */
};

struct raw {
    int futex;
    struct raw_shm *s;
    uint32_t seq;
    pid_t server;
};

static void raw_server(struct raw_shm *s, int use_futex)
{
    uint8_t *store = map_private(NSRC * PAGE);
    uint32_t last = 0;
    for (;;) {
        uint32_t r;
        if (use_futex) {
            while ((r = atomic_load_explicit(&s->req, memory_order_acquire)) == last)
                futex_wait(&s->req, last);
        } else {
            while ((r = atomic_load_explicit(&s->req, memory_order_acquire)) == last)
                cpu_relax();
        }
        if (atomic_load_explicit(&s->stop, memory_order_relaxed))
            _exit(0);
        uint8_t *slot = store + (size_t)(s->index % NSRC) * PAGE;
        memcpy(slot, s->in, PAGE);
        memcpy(s->out, slot, PAGE);
        last = r;
        atomic_store_explicit(&s->done, r, memory_order_release);
        if (use_futex)
            futex_wake(&s->done, 1);
    }
}

static void raw_start(struct raw *r, int use_futex, int cpu)
{
    r->futex = use_futex;
    r->seq = 0;
    if (!r->s)
        r->s = map_shared(sizeof(struct raw_shm));
    memset(r->s, 0, sizeof(*r->s));
    fflush(NULL);
    pid_t parent = getpid();
    r->server = fork();
    if (r->server < 0)
        die("fork: %s", strerror(errno));
    if (r->server == 0) {
        die_with_parent(parent);
        if (cpu >= 0)
            pin_tid(0, cpu);
        raw_server(r->s, use_futex);
    }
}

static inline void raw_op(struct raw *r, const uint8_t *src, uint8_t *dst, uint32_t index)
{
    struct raw_shm *s = r->s;
    memcpy(s->in, src, PAGE);
    s->index = index;
    uint32_t q = ++r->seq;
    atomic_store_explicit(&s->req, q, memory_order_release);
    if (r->futex) {
        futex_wake(&s->req, 1);
        while (atomic_load_explicit(&s->done, memory_order_acquire) != q)
            futex_wait(&s->done, q - 1);
    } else {
        while (atomic_load_explicit(&s->done, memory_order_acquire) != q)
            cpu_relax();
    }
    memcpy(dst, s->out, PAGE);
}

static void raw_stop(struct raw *r)
{
    if (r->server <= 0)
        return;
    atomic_store(&r->s->stop, 1);
    atomic_store(&r->s->req, ++r->seq);
    futex_wake(&r->s->req, 1);
    waitpid(r->server, NULL, 0);
    r->server = 0;
}

/* --- tmem ------------------------------------------------------------------ */
struct tconn {
    tmem_client_t *c;
    int pool;
    const struct server *srv;
};

static void tmem_open_conn(struct tconn *t, const struct server *srv)
{
    t->srv = srv;
    t->c = tmem_connect(srv->sock, "daemon-bench");
    if (!t->c)
        die("tmem_connect %s: %s", srv->sock, strerror(errno));
    t->pool = tmem_new_pool(t->c, (tmem_uuid_t){ 0, 0 }, 0);       /* private, ephemeral */
    if (t->pool < 0)
        die("tmem_new_pool: %s", strerror(-t->pool));
}

static void tmem_close_conn(struct tconn *t)
{
    if (t->c)
        tmem_client_close(t->c);
    t->c = NULL;
}

static const tmem_oid_t g_oid = { { 1, 0, 0 } };

static inline void tmem_put(struct tconn *t, const uint8_t *src, uint32_t index)
{
    int rc = tmem_put_page(t->c, (uint32_t)t->pool, g_oid, index, src);
    if (rc != 0)
        die("tmem put: %s", strerror(-rc));
}

static inline void tmem_get(struct tconn *t, uint8_t *dst, uint32_t index)
{
    int rc = tmem_get_page(t->c, (uint32_t)t->pool, g_oid, index, dst);
    if (rc != 0)
        die("tmem get: %s (%d)", strerror(-rc), rc);
}

/* --- memcached and redis ---------------------------------------------------- */
static memcached_st *g_mc;
static redisContext *g_rd;

static void key_of(char *k, uint32_t i)
{
    snprintf(k, 16, "k%05u", i);
}

static void mc_open(void)
{
    g_mc = memcached_create(NULL);
    if (!g_mc)
        die("memcached_create failed");
    if (memcached_server_add(g_mc, "127.0.0.1", (in_port_t)g_srv[S_MEMCACHED].port) !=
        MEMCACHED_SUCCESS)
        die("memcached_server_add failed");
    memcached_behavior_set(g_mc, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
}

static inline void mc_set(uint32_t i, const uint8_t *src)
{
    char k[16];
    key_of(k, i);
    memcached_return_t rc = memcached_set(g_mc, k, strlen(k), (const char *)src, PAGE, 0, 0);
    if (rc != MEMCACHED_SUCCESS)
        die("memcached set: %s", memcached_strerror(g_mc, rc));
}

static inline void mc_get(uint32_t i, uint8_t *dst)
{
    char k[16];
    key_of(k, i);
    size_t len = 0;
    uint32_t flags;
    memcached_return_t rc;
    char *v = memcached_get(g_mc, k, strlen(k), &len, &flags, &rc);
    if (!v || len != PAGE)
        die("memcached get: %s", memcached_strerror(g_mc, rc));
    memcpy(dst, v, PAGE);
    free(v);
}

static void rd_open(void)
{
    g_rd = redisConnect("127.0.0.1", g_srv[S_REDIS].port);
    if (!g_rd || g_rd->err)
        die("redisConnect: %s", g_rd ? g_rd->errstr : "out of memory");
}

static inline void rd_set(uint32_t i, const uint8_t *src)
{
    char k[16];
    key_of(k, i);
    redisReply *r = redisCommand(g_rd, "SET %b %b", k, strlen(k), src, PAGE);
    if (!r || r->type != REDIS_REPLY_STATUS)
        die("redis SET: %s", r ? "bad reply" : g_rd->errstr);
    freeReplyObject(r);
}

static inline void rd_get(uint32_t i, uint8_t *dst)
{
    char k[16];
    key_of(k, i);
    redisReply *r = redisCommand(g_rd, "GET %b", k, strlen(k));
    if (!r || r->type != REDIS_REPLY_STRING || r->len != PAGE)
        die("redis GET: %s", r ? "bad reply" : g_rd->errstr);
    memcpy(dst, r->str, PAGE);
    freeReplyObject(r);
}

/* --- one transport behind one interface ------------------------------------- */
static struct raw g_raw;
static struct tconn g_tmem[2];          /* compress none, lz4 */
static uint8_t *g_dst;                  /* NSRC destination pages */

static void tr_begin(int t, int attempt)
{
    int client, server;
    placement(t, attempt, &client, &server);
    pin_tid(0, client);
    switch (TR[t].kind) {
    case K_SPIN:
    case K_FUTEX: raw_start(&g_raw, TR[t].kind == K_FUTEX, server); break;
    case K_TMEM_NONE: pin_process(g_srv[S_TMEM_NONE].pid, server); break;
    case K_MC: pin_process(g_srv[S_MEMCACHED].pid, server); break;
    case K_RD: pin_process(g_srv[S_REDIS].pid, server); break;
    default: break;
    }
}

static void tr_end(int t)
{
    if (is_raw(t))
        raw_stop(&g_raw);
    pin_tid(0, -1);
    if (TR[t].kind == K_TMEM_NONE)
        pin_process(g_srv[S_TMEM_NONE].pid, -1);
    if (TR[t].kind == K_MC)
        pin_process(g_srv[S_MEMCACHED].pid, -1);
    if (TR[t].kind == K_RD)
        pin_process(g_srv[S_REDIS].pid, -1);
}

static inline const uint8_t *src_page(int t, uint32_t i)
{
    return (TR[t].kind == K_TMEM_LZ4 ? g_txt : g_src) + (size_t)(i % NSRC) * PAGE;
}

/* The first half of a step (raw: the whole round trip): put / SET. */
static inline void tr_first(int t, uint32_t i)
{
    uint8_t *dst = g_dst + (size_t)(i % NSRC) * PAGE;
    switch (TR[t].kind) {
    case K_SPIN:
    case K_FUTEX: raw_op(&g_raw, src_page(t, i), dst, i % NSRC); break;
    case K_TMEM_NONE: tmem_put(&g_tmem[0], src_page(t, i), i % NSRC); break;
    case K_TMEM_LZ4: tmem_put(&g_tmem[1], src_page(t, i), i % NSRC); break;
    case K_MC: mc_set(i % NSRC, src_page(t, i)); break;
    case K_RD: rd_set(i % NSRC, src_page(t, i)); break;
    }
}

/* The second half: get / GET (raw: nothing). */
static inline void tr_second(int t, uint32_t i)
{
    uint8_t *dst = g_dst + (size_t)(i % NSRC) * PAGE;
    switch (TR[t].kind) {
    case K_TMEM_NONE: tmem_get(&g_tmem[0], dst, i % NSRC); break;
    case K_TMEM_LZ4: tmem_get(&g_tmem[1], dst, i % NSRC); break;
    case K_MC: mc_get(i % NSRC, dst); break;
    case K_RD: rd_get(i % NSRC, dst); break;
    default: break;
    }
}

static inline unsigned tr_ops_per_step(int t)
{
    return is_raw(t) ? 1 : 2;
}

/* Ops per second over secs seconds (the clock is read every 16 steps). */
static double tr_rate(int t, double secs)
{
    static uint32_t i;          /* carries on across calls: fresh keys and pages */
    uint64_t steps = 0, t0 = now_ns(), limit = (uint64_t)(secs * 1e9), el;
    for (;;) {
        for (int k = 0; k < 16; k++, i++) {
            tr_first(t, i);
            tr_second(t, i);
        }
        steps += 16;
        el = now_ns() - t0;
        if (el >= limit)
            break;
    }
    return (double)(steps * tr_ops_per_step(t)) / ((double)el / 1e9);
}

/* Checks every page through the transport once (each page got back equals
 * the page put) and warms it up. */
static void tr_check(int t)
{
    tr_begin(t, 0);
    for (uint32_t i = 0; i < NSRC; i++) {
        tr_first(t, i);
        tr_second(t, i);
        if (memcmp(g_dst + (size_t)i * PAGE, src_page(t, i), PAGE) != 0)
            die("%s: page %u read back differs", TR[t].name, i);
        memset(g_dst + (size_t)i * PAGE, 0, PAGE);
    }
    tr_end(t);
}

/* ------------------------------------------------------------------------
 * D1, D2: rates in rounds (every transport once per round, order rotated)
 * ---------------------------------------------------------------------- */
static void rate_round(void *ctx, int attempt, double *vals)
{
    (void)ctx;
    for (int k = 0; k < T_N; k++) {
        int t = (k + attempt * 3) % T_N;
        if (!g_have[t])
            continue;
        tr_begin(t, attempt);
        vals[t] = tr_rate(t, O.secs);
        tr_end(t);
    }
}

static struct round_set g_rates;

/* Per-round max over transports a..b (those measured). */
static void best_of(const struct round_set *rs, const int *ts, int nts, double *out)
{
    for (int k = 0; k < rs->n; k++) {
        out[k] = 0;
        for (int j = 0; j < nts; j++)
            if (g_have[ts[j]] && rs->v[ts[j]][k] > out[k])
                out[k] = rs->v[ts[j]][k];
    }
}

static void fig_rates(void)
{
    settle("the rates");
    progress("rates: %d rounds of %.2f s per transport", O.rounds, O.secs);
    struct round_set *rs = &g_rates;
    run_rounds(O.rounds, O.settle, rate_round, NULL, rs);
    int n = rs->n;
    double med[T_N] = { 0 };
    for (int t = 0; t < T_N; t++)
        med[t] = g_have[t] ? median(rs->v[t], n) : 0.0;
    const double *tm = rs->v[T_TMEM_NONE], *tz = rs->v[T_TMEM_LZ4];
    char a[40], b[40], what[240];
    double ratio[MAX_ROUNDS], ratio2[MAX_ROUNDS];

    /* D1: against the faster raw ping-pong of each round */
    static const int raws[] = { T_SPIN_FREE, T_SPIN, T_FUTEX1, T_FUTEX2 };
    double best[MAX_ROUNDS];
    bool any_raw = g_have[T_SPIN_FREE] || g_have[T_SPIN] || g_have[T_FUTEX1] || g_have[T_FUTEX2];
    best_of(rs, raws, 4, best);
    double rawbest[MAX_ROUNDS];
    memcpy(rawbest, best, sizeof(rawbest));
    if (any_raw && g_have[T_TMEM_NONE]) {
        int wins[4] = { 0 };
        for (int k = 0; k < n; k++) {
            for (int j = 0; j < 4; j++)
                if (g_have[raws[j]] && rs->v[raws[j]][k] == best[k])
                    wins[j]++;
            ratio[k] = tm[k] / best[k];
            ratio2[k] = tm[k] / 2 / best[k];
        }
        snprintf(what, sizeof(what),
                 "round trips/s: tmem put or get (compress=none) / the faster raw ping-pong "
                 "(fastest per round: spinning unpinned %d, spinning on 2 CPUs %d, futex on 1 CPU "
                 "%d, futex on 2 CPUs %d, of %d rounds)",
                 wins[0], wins[1], wins[2], wins[3], n);
        add_rounds_result("D1", what, fmt_rate(med[T_TMEM_NONE], a, sizeof(a)),
                   fmt_rate(median(best, n), b, sizeof(b)), ratio, n, 0.5, rs->load_kept);
        add_rounds_result("D1p", "the same per put+get pair (two tmem round trips against one raw)",
                   fmt_rate(med[T_TMEM_NONE] / 2, a, sizeof(a)),
                   fmt_rate(median(best, n), b, sizeof(b)), ratio2, n, -1, rs->load_kept);
    }
    if (any_raw && g_have[T_TMEM_LZ4]) {
        for (int k = 0; k < n; k++)
            ratio[k] = tz[k] / best[k];
        add_rounds_result("D1z", "round trips/s: tmem with LZ4 (text pages) / the faster raw ping-pong",
                   fmt_rate(med[T_TMEM_LZ4], a, sizeof(a)),
                   fmt_rate(median(best, n), b, sizeof(b)), ratio, n, -1, rs->load_kept);
    }

    /* D2: against memcached as the benchmark starts it (unpinned: the issue's
     * figure); beside it each pinned placement and the best of each round */
    for (int peer = 0; peer < 2 && g_have[T_TMEM_NONE]; peer++) {
        int t0 = peer ? T_RD_FREE : T_MC_FREE;
        const char *pn = peer ? "redis" : "memcached";
        const char *base = peer ? "D2r" : "D2";
        int ts[3] = { t0, t0 + 1, t0 + 2 };
        if (!g_have[ts[0]] && !g_have[ts[1]] && !g_have[ts[2]])
            continue;
        static const char *const pl[3] = { "unpinned", "on the client's CPU", "on the other CPU" };
        for (int j = 0; j < 3; j++) {
            if (!g_have[ts[j]])
                continue;
            char id[16];
            snprintf(id, sizeof(id), "%s%s", base, j == 0 ? "" : j == 1 ? "s" : "x");
            for (int k = 0; k < n; k++)
                ratio[k] = tm[k] / rs->v[ts[j]][k];
            if (j == 0)
                snprintf(what, sizeof(what),
                         "ops/s, one client: tmem put/get (compress=none) / %s SET/GET as the "
                         "benchmark starts it (unpinned)", pn);
            else
                snprintf(what, sizeof(what), "the same against %s pinned %s", pn, pl[j]);
            add_rounds_result(id, what, fmt_rate(med[T_TMEM_NONE], a, sizeof(a)),
                       fmt_rate(med[ts[j]], b, sizeof(b)), ratio, n,
                       !peer && j == 0 ? 20.0 : -1, rs->load_kept);
        }
        best_of(rs, ts, 3, best);
        int w[3] = { 0 };
        for (int k = 0; k < n; k++) {
            for (int j = 0; j < 3; j++)
                if (g_have[ts[j]] && rs->v[ts[j]][k] == best[k])
                    w[j]++;
            ratio[k] = tm[k] / best[k];
        }
        snprintf(what, sizeof(what),
                 "the same against %s at its best placement of each round (unpinned %d, "
                 "client's CPU %d, other CPU %d, of %d rounds)",
                 pn, w[0], w[1], w[2], n);
        char id[16];
        snprintf(id, sizeof(id), "%sbest", base);
        add_rounds_result(id, what, fmt_rate(med[T_TMEM_NONE], a, sizeof(a)),
                   fmt_rate(median(best, n), b, sizeof(b)), ratio, n, -1, rs->load_kept);
        if (!peer && any_raw) {
            /* what the limit itself reaches: the ceiling of any design that
             * hands a request to another process */
            for (int k = 0; k < n; k++)
                ratio[k] = rawbest[k] / best[k];
            add_rounds_result("D2lim", "the faster raw ping-pong (round trips/s) / memcached at its best "
                       "placement: the ceiling of a cross-process design",
                       fmt_rate(median(rawbest, n), a, sizeof(a)),
                       fmt_rate(median(best, n), b, sizeof(b)), ratio, n, -1, rs->load_kept);
        }
        if (!peer && g_have[T_TMEM_LZ4]) {
            for (int k = 0; k < n; k++)
                ratio[k] = tz[k] / best[k];
            add_rounds_result("D2z", "tmem with LZ4 (text pages) / memcached at its best placement",
                       fmt_rate(med[T_TMEM_LZ4], a, sizeof(a)),
                       fmt_rate(median(best, n), b, sizeof(b)), ratio, n, -1, rs->load_kept);
        }
    }

    det("\n### Rates (one client, one request at a time; median of %d rounds of %.2f s each)\n\n",
        n, O.secs);
    det("| transport | op | ops/s (median) | rounds min..max | us per op |\n|---|---|---|---|---|\n");
    for (int t = 0; t < T_N; t++) {
        if (!g_have[t])
            continue;
        const char *op = is_raw(t) ? "round trip, a page each way"
                         : is_tmem(t) ? "put or get (put then get)"
                                      : "SET or GET (SET then GET)";
        char c[40], d[40];
        det("| %s | %s | %s | %s..%s | %.2f |\n", TR[t].name, op, fmt_rate(med[t], a, sizeof(a)),
            fmt_rate(vmin(rs->v[t], n), c, sizeof(c)), fmt_rate(vmax(rs->v[t], n), d, sizeof(d)),
            1e6 / med[t]);
    }
    det("\n");
    det_load("rates", rs);
}

/* ------------------------------------------------------------------------
 * Latency: busy (back to back) and idle-start (after --idle-ms asleep)
 * ---------------------------------------------------------------------- */
struct lat {
    uint32_t *v;
    size_t n;
};

static void lat_add(struct lat *l, uint64_t ns)
{
    l->v[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

static void lat_sort(struct lat *l)
{
    qsort(l->v, l->n, sizeof(*l->v), cmp_u32);
}

/* [t][0] first op (raw round trip, put, SET), [t][1] second (get, GET) */
static struct lat g_busy[T_N][2], g_idle[T_N][2];

static uint64_t tmem_sleeps(int t)
{
    struct tmw_ctl_stats st;
    const struct server *s = &g_srv[TR[t].kind == K_TMEM_NONE ? S_TMEM_NONE : S_TMEM_LZ4];
    if (tmc_stats(s->ctl, &st) != 0)
        return 0;
    return st.worker_sleeps;
}

static void fig_latency(void)
{
    settle("the latencies");
    progress("latency: %u busy ops and %u idle-start samples (%u ms asleep) per transport",
             O.lat_ops, O.idle_samples, O.idle_ms);
    uint64_t sleeps[T_N] = { 0 };
    uint32_t i = 7u * NSRC;
    for (int t = 0; t < T_N; t++) {
        if (!g_have[t])
            continue;
        for (int h = 0; h < 2; h++) {
            g_busy[t][h].v = calloc(O.lat_ops, sizeof(uint32_t));
            g_idle[t][h].v = calloc(O.idle_samples, sizeof(uint32_t));
            if (!g_busy[t][h].v || !g_idle[t][h].v)
                die("out of memory");
        }
        bool raw = is_raw(t);
        tr_begin(t, 0);
        /* busy: back to back */
        for (unsigned k = 0; k < O.lat_ops; k += raw ? 1 : 2, i++) {
            uint64_t a = now_ns();
            tr_first(t, i);
            uint64_t b = now_ns();
            tr_second(t, i);
            uint64_t c = now_ns();
            lat_add(&g_busy[t][0], b - a);
            if (!raw)
                lat_add(&g_busy[t][1], c - b);
        }
        /* idle-start: the server has been idle for idle_ms before the timed
         * op; for pairs, even samples time the first op, odd ones the
         * second (its first op done before the sleep) */
        uint64_t s0 = is_tmem(t) ? tmem_sleeps(t) : 0;
        for (unsigned k = 0; k < O.idle_samples; k++, i++) {
            if (raw || k % 2 == 0) {
                sleep_ns((uint64_t)O.idle_ms * 1000000u);
                uint64_t a = now_ns();
                tr_first(t, i);
                uint64_t b = now_ns();
                lat_add(&g_idle[t][0], b - a);
                tr_second(t, i);
            } else {
                tr_first(t, i);
                sleep_ns((uint64_t)O.idle_ms * 1000000u);
                uint64_t a = now_ns();
                tr_second(t, i);
                uint64_t b = now_ns();
                lat_add(&g_idle[t][1], b - a);
            }
        }
        if (is_tmem(t))
            sleeps[t] = tmem_sleeps(t) - s0;
        tr_end(t);
        for (int h = 0; h < 2; h++) {
            lat_sort(&g_busy[t][h]);
            lat_sort(&g_idle[t][h]);
        }
    }

    det("\n### Latency per operation (us; busy: %u ops back to back; idle-start: %u samples, "
        "each after %u ms asleep)\n\n",
        O.lat_ops, O.idle_samples, O.idle_ms);
    det("| transport | op | busy p50 | busy p99 | busy p99.9 | idle-start p50 | idle-start p99 |\n");
    det("|---|---|---|---|---|---|---|\n");
    for (int t = 0; t < T_N; t++) {
        if (!g_have[t])
            continue;
        for (int h = 0; h < 2; h++) {
            struct lat *b = &g_busy[t][h], *id = &g_idle[t][h];
            if (b->n == 0)
                continue;
            const char *op = is_raw(t) ? "round trip" : is_tmem(t) ? (h ? "get" : "put")
                                                                   : (h ? "GET" : "SET");
            det("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", TR[t].name, op,
                pct_us(b->v, b->n, 50), pct_us(b->v, b->n, 99), pct_us(b->v, b->n, 99.9),
                pct_us(id->v, id->n, 50), pct_us(id->v, id->n, 99));
        }
    }
    det("\n- tmem's worker went to sleep %llu times during the %u idle-start samples with "
        "compress=none (%llu with lz4): the idle-start samples found it asleep\n",
        (unsigned long long)sleeps[T_TMEM_NONE], O.idle_samples,
        (unsigned long long)sleeps[T_TMEM_LZ4]);
}

/* ------------------------------------------------------------------------
 * D3: N client processes at once (tmem on one tmemd; raw: N pairs)
 * ---------------------------------------------------------------------- */
enum { SK_TMEM, SK_SPIN, SK_FUTEX, SK_N };
_Static_assert(SK_N * MAX_CLIENTS <= BENCH_MAX_VALS, "scaling: one value per kind and count");

struct scal_shm {
    _Alignas(64) _Atomic uint32_t ready;
    _Alignas(64) _Atomic uint32_t go;
    _Alignas(64) _Atomic uint32_t stop;
    _Alignas(64) struct { uint64_t ops, ns; int err; } c[MAX_CLIENTS];
};
static struct scal_shm *g_sc;

static void scal_child(int kind, int id)
{
    struct tconn t = { 0 };
    struct raw r = { 0 };
    uint8_t *dst = map_private(NSRC * PAGE);
    if (kind == SK_TMEM)
        tmem_open_conn(&t, &g_srv[S_TMEM_NONE]);
    else
        raw_start(&r, kind == SK_FUTEX, -1);
    uint32_t i = (uint32_t)id * 7919u;
    for (int w = 0; w < 256; w++, i++) {     /* warm up */
        uint32_t x = i % NSRC;
        if (kind == SK_TMEM) {
            tmem_put(&t, g_src + (size_t)x * PAGE, x);
            tmem_get(&t, dst + (size_t)x * PAGE, x);
        } else {
            raw_op(&r, g_src + (size_t)x * PAGE, dst + (size_t)x * PAGE, x);
        }
    }
    atomic_fetch_add(&g_sc->ready, 1);
    futex_wake(&g_sc->ready, 1);
    while (atomic_load(&g_sc->go) == 0)
        futex_wait(&g_sc->go, 0);
    uint64_t ops = 0, t0 = now_ns();
    while (!atomic_load_explicit(&g_sc->stop, memory_order_relaxed)) {
        for (int k = 0; k < 8; k++, i++) {
            uint32_t x = i % NSRC;
            if (kind == SK_TMEM) {
                tmem_put(&t, g_src + (size_t)x * PAGE, x);
                tmem_get(&t, dst + (size_t)x * PAGE, x);
                ops += 2;
            } else {
                raw_op(&r, g_src + (size_t)x * PAGE, dst + (size_t)x * PAGE, x);
                ops += 1;
            }
        }
    }
    g_sc->c[id].ns = now_ns() - t0;
    g_sc->c[id].ops = ops;
    if (kind == SK_TMEM)
        tmem_close_conn(&t);
    else
        raw_stop(&r);
    _exit(0);
}

/* Aggregate ops/s of n clients of a kind over O.secs. */
static double scal_run(int kind, int n)
{
    memset(g_sc, 0, sizeof(*g_sc));
    pid_t pids[MAX_CLIENTS];
    fflush(NULL);
    for (int c = 0; c < n; c++) {
        pids[c] = fork();
        if (pids[c] < 0)
            die("fork: %s", strerror(errno));
        if (pids[c] == 0) {
            die_with_parent(bench_main_pid);
            scal_child(kind, c);
        }
    }
    uint32_t rd;
    uint64_t t0 = now_ns();
    while ((rd = atomic_load(&g_sc->ready)) < (uint32_t)n) {
        sleep_ns(1000000);
        if (now_ns() - t0 > 20000000000ull)
            die("scaling: clients not ready after 20 s");
    }
    atomic_store(&g_sc->go, 1);
    futex_wake(&g_sc->go, INT32_MAX);
    sleep_ns((uint64_t)(O.secs * 1e9));
    atomic_store(&g_sc->stop, 1);
    double total = 0.0;
    for (int c = 0; c < n; c++) {
        int status;
        waitpid(pids[c], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            die("scaling: client %d failed (status %d)", c, status);
        if (g_sc->c[c].ns)
            total += (double)g_sc->c[c].ops / ((double)g_sc->c[c].ns / 1e9);
    }
    return total;
}

static void scal_round(void *ctx, int attempt, double *vals)
{
    (void)ctx;
    unsigned nc = O.max_clients;
    for (unsigned k = 0; k < nc * SK_N; k++) {
        unsigned j = (k + (unsigned)attempt * 5u) % (nc * SK_N);
        int kind = (int)(j % SK_N), n = (int)(j / SK_N) + 1;
        vals[kind * MAX_CLIENTS + n - 1] = scal_run(kind, n);
    }
}

static void fig_scaling(void)
{
    settle("the scaling");
    progress("scaling: 1 to %u clients, %d rounds of %.2f s per count and kind", O.max_clients,
             O.rounds, O.secs);
    g_sc = map_shared(sizeof(*g_sc));
    struct round_set rs;
    run_rounds(O.rounds, O.settle, scal_round, NULL, &rs);
    int n = rs.n;
    char a[40], b[40];
    det("\n### Scaling: N client processes at once, total ops/s (median of %d rounds of %.2f s)\n\n",
        n, O.secs);
    det("| clients | tmem ops/s | tmem / 1 client | raw spinning round trips/s | raw futex round trips/s |\n");
    det("|---|---|---|---|---|\n");
    double *one = rs.v[SK_TMEM * MAX_CLIENTS];
    for (unsigned c = 1; c <= O.max_clients; c++) {
        double *v = rs.v[SK_TMEM * MAX_CLIENTS + c - 1];
        double ratio[MAX_ROUNDS];
        for (int k = 0; k < n; k++)
            ratio[k] = v[k] / one[k];
        char c2[40];
        det("| %u | %s | %.2f | %s | %s |\n", c, fmt_rate(median(v, n), a, sizeof(a)),
            median(ratio, n), fmt_rate(median(rs.v[SK_SPIN * MAX_CLIENTS + c - 1], n), b, sizeof(b)),
            fmt_rate(median(rs.v[SK_FUTEX * MAX_CLIENTS + c - 1], n), c2, sizeof(c2)));
        if (c > 1) {
            char id[16], what[160];
            snprintf(id, sizeof(id), "D3.%u", c);
            snprintf(what, sizeof(what), "%u client processes / 1, total tmem ops/s (compress=none)",
                     c);
            add_rounds_result(id, what, fmt_rate(median(v, n), a, sizeof(a)),
                       fmt_rate(median(one, n), b, sizeof(b)), ratio, n, -1, rs.load_kept);
        }
    }
    det("\n");
    det_load("scaling", &rs);
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmem-daemon-bench [options]\n"
            "  --quick            short run (3 rounds, 0.15 s per measurement, fewer samples)\n"
            "  --rounds N         rounds per figure (default 7; quick 3)\n"
            "  --secs S           seconds per transport per round (default 0.5; quick 0.15)\n"
            "  --only LIST        rate,latency,scaling (default all)\n"
            "  --no-peers         do not start memcached and redis\n"
            "  --transports LIST  measure only these (a diagnostic): spin,spin2,futex1,futex2,\n"
            "                     tmem,lz4,tmem1,tmem2,mc,mc1,mc2,redis,redis1,redis2\n"
            "  --idle-ms N        sleep before an idle-start sample (default 5)\n"
            "  --idle-samples N   idle-start samples per transport (default 400; quick 100)\n"
            "  --lat-ops N        busy latency samples per transport (default 20000; quick 4000)\n"
            "  --clients N        scaling up to N client processes (1..%d, default 4)\n"
            "  --settle SECS      wait at most this long for a quiet machine per figure (15; quick 3)\n"
            "  --tmemd PATH       the daemon (default %s or $TMEMD_BIN)\n"
            "  --memcached PATH, --redis PATH   the peers (default from $PATH)\n"
            "  --tsv FILE         also write the rows tab-separated\n"
            "  --hog CPU          keep a busy loop pinned to CPU running throughout (a loaded\n"
            "                     host; its time is counted as ours, so no round is set aside)\n",
            MAX_CLIENTS, TMEMD_BIN);
}

static unsigned parse_only(const char *s)
{
    unsigned m = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "rate") == 0 || strcmp(tok, "rates") == 0)
            m |= PART_RATE;
        else if (strcmp(tok, "latency") == 0)
            m |= PART_LATENCY;
        else if (strcmp(tok, "scaling") == 0)
            m |= PART_SCALING;
        else if (strcmp(tok, "all") == 0 || strcmp(tok, "daemon") == 0)
            m |= PART_ALL;
        else
            die("--only: unknown part '%s' (rate, latency, scaling)", tok);
    }
    return m;
}

static bool on_path(const char *prog)
{
    if (strchr(prog, '/'))
        return access(prog, X_OK) == 0;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        char p[4200];
        snprintf(p, sizeof(p), "%s/%s", d, prog);
        if (access(p, X_OK) == 0)
            return true;
    }
    return false;
}

int main(int argc, char **argv)
{
    bench_prog = "tmem-daemon-bench";
    bench_main_pid = getpid();
    bench_own_extra_secs = own_extra_secs;
    O = (struct opts){ .only = PART_ALL, .peers = 1, .idle_ms = 5, .settle = -1, .secs = -1,
                       .hog = -1,
                       .max_clients = MAX_CLIENTS, .memcached = "memcached",
                       .redis = "redis-server" };
    O.tmemd = getenv("TMEMD_BIN") ? getenv("TMEMD_BIN") : TMEMD_BIN;
    static const struct option longopts[] = {
        { "quick", no_argument, NULL, 'q' },          { "rounds", required_argument, NULL, 'r' },
        { "secs", required_argument, NULL, 'S' },      { "only", required_argument, NULL, 'o' },
        { "no-peers", no_argument, NULL, 'P' },        { "idle-ms", required_argument, NULL, 'i' },
        { "idle-samples", required_argument, NULL, 'I' },
        { "lat-ops", required_argument, NULL, 'L' },   { "clients", required_argument, NULL, 'c' },
        { "settle", required_argument, NULL, 's' },    { "tmemd", required_argument, NULL, 'T' },
        { "memcached", required_argument, NULL, 'M' }, { "redis", required_argument, NULL, 'R' },
        { "tsv", required_argument, NULL, 't' },       { "transports", required_argument, NULL, 'X' },
        { "hog", required_argument, NULL, 'H' },       { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "qr:S:o:Pi:I:L:c:s:T:M:R:t:X:H:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'q': O.quick = 1; break;
        case 'r': O.rounds = atoi(optarg); break;
        case 'S': O.secs = atof(optarg); break;
        case 'o': O.only = parse_only(optarg); break;
        case 'P': O.peers = 0; break;
        case 'X': O.transports = optarg; break;
        case 'H': O.hog = atoi(optarg); break;
        case 'i': O.idle_ms = (unsigned)atoi(optarg); break;
        case 'I': O.idle_samples = (unsigned)atoi(optarg); break;
        case 'L': O.lat_ops = (unsigned)atoi(optarg); break;
        case 'c': O.max_clients = (unsigned)atoi(optarg); break;
        case 's': O.settle = atof(optarg); break;
        case 'T': O.tmemd = optarg; break;
        case 'M': O.memcached = optarg; break;
        case 'R': O.redis = optarg; break;
        case 't': O.tsv = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (O.rounds == 0)
        O.rounds = O.quick ? 3 : 7;
    if (O.secs < 0)
        O.secs = O.quick ? 0.15 : 0.5;
    if (O.settle < 0)
        O.settle = O.quick ? 3 : 15;
    if (O.idle_samples == 0)
        O.idle_samples = O.quick ? 100 : 400;
    if (O.lat_ops == 0)
        O.lat_ops = O.quick ? 4000 : 20000;
    if (O.rounds < 1 || O.rounds > MAX_ROUNDS || O.secs <= 0 || O.max_clients < 1 ||
        O.max_clients > MAX_CLIENTS)
        die("bad options (rounds 1..%d, secs > 0, clients 1..%d)", MAX_ROUNDS, MAX_CLIENTS);

    atexit(cleanup);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    signal(SIGPIPE, SIG_IGN);
    g_detf = open_memstream(&g_det, &g_detlen);
    if (!g_detf)
        die("open_memstream: %s", strerror(errno));

    print_header(O.quick);

    make_pages();
    g_dst = map_private(NSRC * PAGE);

    start_tmemd(&g_srv[S_TMEM_NONE], "none");
    start_tmemd(&g_srv[S_TMEM_LZ4], "lz4");
    init_cpus();
    if (O.hog >= 0) {
        if (O.hog >= sysconf(_SC_NPROCESSORS_ONLN))
            die("--hog: no CPU %d", O.hog);
        start_hog(&g_srv[S_HOG], O.hog);
        printf("- load: a busy loop pinned to CPU %d throughout (--hog)\n", O.hog);
    }
    for (int t = 0; t < T_N; t++)
        g_have[t] = is_raw(t) || is_tmem(t);
    char mcver[64] = "not run", rdver[64] = "not run";
    if (O.peers) {
        if (!on_path(O.memcached))
            fprintf(stderr, "tmem-daemon-bench: %s not found: memcached not measured\n",
                    O.memcached);
        else if (start_memcached(&g_srv[S_MEMCACHED]))
            g_have[T_MC_FREE] = g_have[T_MC_SAME] = g_have[T_MC_CROSS] = true;
        if (!on_path(O.redis))
            fprintf(stderr, "tmem-daemon-bench: %s not found: redis not measured\n", O.redis);
        else if (start_redis(&g_srv[S_REDIS]))
            g_have[T_RD_FREE] = g_have[T_RD_SAME] = g_have[T_RD_CROSS] = true;
    }
    if (O.transports) {
        bool want[T_N] = { false };
        char buf[256];
        snprintf(buf, sizeof(buf), "%s", O.transports);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
             tok = strtok_r(NULL, ",", &save)) {
            int t = 0;
            while (t < T_N && strcmp(TR[t].tag, tok) != 0)
                t++;
            if (t == T_N)
                die("--transports: unknown transport '%s'", tok);
            want[t] = true;
        }
        for (int t = 0; t < T_N; t++)
            g_have[t] = g_have[t] && want[t];
    }
    tmem_open_conn(&g_tmem[0], &g_srv[S_TMEM_NONE]);
    tmem_open_conn(&g_tmem[1], &g_srv[S_TMEM_LZ4]);
    if (g_have[T_MC_FREE] || g_have[T_MC_SAME] || g_have[T_MC_CROSS]) {
        mc_open();
        memcached_version(g_mc);
        const memcached_instance_st *in = memcached_server_instance_by_position(g_mc, 0);
        if (in)
            snprintf(mcver, sizeof(mcver), "%u.%u.%u", memcached_server_major_version(in),
                     memcached_server_minor_version(in), memcached_server_micro_version(in));
    }
    if (g_have[T_RD_FREE] || g_have[T_RD_SAME] || g_have[T_RD_CROSS]) {
        rd_open();
        redisReply *r = redisCommand(g_rd, "INFO server");
        if (r && r->type == REDIS_REPLY_STRING) {
            const char *p = strstr(r->str, "redis_version:");
            if (p)
                snprintf(rdver, sizeof(rdver), "%.*s", (int)strcspn(p + 14, "\r\n"), p + 14);
        }
        if (r)
            freeReplyObject(r);
    }
    printf("- tmem %d.%d.%d (two tmemd: memory.compress=none, and lz4; dedup on, spin_us 50, "
           "--max-memory 256M, governor off); memcached %s (4 threads, TCP 127.0.0.1, client "
           "libmemcached %s, TCP_NODELAY); redis %s (TCP 127.0.0.1, --save '' --appendonly no, "
           "client hiredis %d.%d.%d)\n",
           TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR, TMEM_VERSION_PATCH, mcver,
           LIBMEMCACHED_VERSION_STRING, rdver, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    printf("- rounds %d of %.2f s per transport (median of per-round ratios; order rotated "
           "each round; rounds in which other processes used > %.2f CPUs are set aside), "
           "%u source pages of 4 KiB (random; the LZ4 line: text-like pages)\n",
           O.rounds, O.secs, QUIET_CPUS, NSRC);
    {
        /* how compressible the text pages are, for the record */
        static char out[LZ4_COMPRESSBOUND(4096)];
        double sum = 0;
        for (unsigned i = 0; i < NSRC; i++)
            sum += LZ4_compress_default((const char *)g_txt + (size_t)i * PAGE, out, (int)PAGE,
                                        (int)sizeof(out));
        printf("- text-like pages: LZ4 ratio %.2f (4096 / mean compressed size per page)\n",
               4096.0 * NSRC / sum);
    }
    fflush(stdout);

    progress("checking the data through every transport");
    for (int t = 0; t < T_N; t++)
        if (g_have[t])
            tr_check(t);

    if (O.only & PART_RATE)
        fig_rates();
    if (O.only & PART_LATENCY)
        fig_latency();
    if (O.only & PART_SCALING)
        fig_scaling();

    tmem_close_conn(&g_tmem[0]);
    tmem_close_conn(&g_tmem[1]);
    if (g_mc)
        memcached_free(g_mc);
    if (g_rd)
        redisFree(g_rd);
    print_results();
    return 0;
}
