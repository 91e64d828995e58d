/* SPDX-License-Identifier: MIT */
/*
 * main.c - tmem-cachefs: options, checks, start-up, the housekeeping
 * thread, signals and the unmount.
 *
 * Start-up: options; the backing directory and the mountpoint are checked
 * (clear errors, exit 1); in the background a child is forked first, so
 * that the connection to tmemd belongs to the process that serves (a tmem
 * connection does not survive fork) and the parent exits only once the
 * mount is up, with the child's status.  Then the uuid, the local cache,
 * cleancache (tier.c: prints the client id and uuid), the FUSE mount, the
 * housekeeping thread (connects, joins the shared pool, SIGUSR1 prints the
 * statistics, SIGUSR2 retries the shared pool now) and the FUSE loop.
 * The loop ends at unmount (fusermount3 -u) or SIGINT/SIGTERM/SIGHUP; the
 * statistics are printed and cleancache is closed (its fs invalidated).
 *
 * Exit status: 0 after a clean unmount, 1 on a runtime error, 2 on a usage
 * error.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cachefs.h"

#define DEFAULT_CACHE_PAGES 1024ul      /* 4 MiB */
#define DEFAULT_REJOIN_MS 5000ul
#define DEFAULT_RECONNECT_MS 1000ul
#define DEFAULT_OPEN_WAIT_MS 50ul

static void usage(FILE *f)
{
    fprintf(f,
"usage: " CFS_PROG " [OPTION]... BACKING_DIR MOUNTPOINT\n"
"       " CFS_PROG " --print-uuid BACKING_DIR\n"
"Mount BACKING_DIR at MOUNTPOINT through a bounded local page cache whose\n"
"evicted clean pages go to tmem's cleancache (tmemd) and come back from it.\n"
"\n"
"  -c, --cache-pages N      local cache size in 4 KiB pages (default %lu)\n"
"  -D, --delay-us N         sleep N us per page read from or written to the\n"
"                           backing store (a slow disk or network; default 0)\n"
"      --socket PATH        tmemd's socket (default $TMEM_SOCKET, else the\n"
"                           library's default)\n"
"  -n, --name NAME          client label (default cachefs:<backing dir name>)\n"
"      --no-tmem            local cache only (for comparison)\n"
"      --shared             share cleancache with every mount of BACKING_DIR\n"
"                           (tmemd grants it once an administrator runs\n"
"                           tmemctl shared-auth CLIENT UUID allow; both printed)\n"
"      --rejoin-ms N        ask for the shared pool again every N ms while it\n"
"                           is private (default %lu; 0: only on SIGUSR2)\n"
"      --reconnect-ms N     reconnect to a lost tmemd at most every N ms\n"
"                           (default %lu)\n"
"      --ts-res-ms N        the backing store's timestamp granularity (default:\n"
"                           the kernel's coarse clock tick)\n"
"      --open-wait-ms N     longest wait in a read-only open for a file changed\n"
"                           within the last tick (default %lu)\n"
"      --print-uuid DIR     print DIR's shared-pool uuid (creating it) and exit\n"
"  -f, --foreground         stay in the foreground\n"
"  -d, --debug              FUSE debug output (implies -f)\n"
"  -s, --single-thread      serve one request at a time\n"
"  -o OPT[,OPT]...          FUSE mount options (allow_other, ro, ...)\n"
"  -h, --help               this help\n"
"  -V, --version            the version\n"
"\n"
"Statistics: cat MOUNTPOINT" CFS_STATS_NAME ", or SIGUSR1 (to stderr); printed at\n"
"unmount.  Unmount: fusermount3 -u MOUNTPOINT.  Exit status: 0 clean unmount,\n"
"1 error, 2 usage.  docs/cachefs.md has the details.\n",
            DEFAULT_CACHE_PAGES, DEFAULT_REJOIN_MS, DEFAULT_RECONNECT_MS, DEFAULT_OPEN_WAIT_MS);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, CFS_PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry '" CFS_PROG " --help'.\n");
    return 2;
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    if (!s || *s == '\0' || *s == '-')
        return false;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return false;
    *out = v;
    return true;
}

static unsigned long coarse_tick_ns(void)
{
    struct timespec r;
    if (clock_getres(CLOCK_REALTIME_COARSE, &r) != 0 || (r.tv_sec == 0 && r.tv_nsec == 0))
        return 10000000ul;              /* 10 ms: HZ=100 */
    return (unsigned long)r.tv_sec * 1000000000ul + (unsigned long)r.tv_nsec;
}

/* ---- signals and the housekeeping thread ---------------------------------- */
static volatile sig_atomic_t want_stats, want_rejoin;
static pthread_mutex_t hk_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hk_cond;     /* on CLOCK_MONOTONIC (serve) */
static bool hk_stop;

static void on_usr(int sig)
{
    if (sig == SIGUSR1)
        want_stats = 1;
    else
        want_rejoin = 1;
}

static void *housekeeping(void *arg)
{
    struct cfs_fs *fs = arg;
    pthread_mutex_lock(&hk_lock);
    while (!hk_stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 100000000L;    /* every 100 ms */
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&hk_cond, &hk_lock, &until);
        if (hk_stop)
            break;
        pthread_mutex_unlock(&hk_lock);
        bool rejoin = want_rejoin;
        want_rejoin = 0;
        cfs_tier_tick(&fs->tier, rejoin);
        if (want_stats) {
            want_stats = 0;
            cfs_stats_print(fs, "SIGUSR1");
        }
        pthread_mutex_lock(&hk_lock);
    }
    pthread_mutex_unlock(&hk_lock);
    return NULL;
}

/* ---- checks ------------------------------------------------------------------ */
/* 0, or 1 with a message: the mountpoint is usable. */
static int check_mountpoint(const char *mnt, const char *backing_real)
{
    struct stat st, parent;
    if (stat(mnt, &st) != 0) {
        if (errno == ENOTCONN)
            fprintf(stderr, CFS_PROG ": mountpoint %s: %s (a dead FUSE mount? "
                    "fusermount3 -u %s)\n", mnt, strerror(errno), mnt);
        else
            fprintf(stderr, CFS_PROG ": mountpoint %s: %s\n", mnt, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, CFS_PROG ": mountpoint %s: not a directory\n", mnt);
        return 1;
    }
    char *real = realpath(mnt, NULL);
    if (!real) {
        fprintf(stderr, CFS_PROG ": mountpoint %s: %s\n", mnt, strerror(errno));
        return 1;
    }
    size_t bl = strlen(backing_real);
    bool inside = strncmp(real, backing_real, bl) == 0 &&
                  (real[bl] == '\0' || real[bl] == '/' || bl == 1);
    char up[PATH_MAX + 4];
    snprintf(up, sizeof(up), "%s/..", real);
    bool busy = strcmp(real, "/") == 0 ||
                (stat(up, &parent) == 0 && parent.st_dev != st.st_dev);
    free(real);
    if (inside) {
        fprintf(stderr, CFS_PROG ": mountpoint %s is inside the backing directory %s\n",
                mnt, backing_real);
        return 1;
    }
    if (busy) {
        fprintf(stderr, CFS_PROG ": mountpoint %s is busy: something is mounted there "
                "(unmount it first)\n", mnt);
        return 1;
    }
    return 0;
}

/* 0, or 1 with a message: FUSE can be mounted by this process. */
static int check_fuse(void)
{
    if (access("/dev/fuse", F_OK) != 0) {
        fprintf(stderr, CFS_PROG ": no /dev/fuse: load the fuse module (modprobe fuse), "
                "or give the container the device\n");
        return 1;
    }
    if (access("/dev/fuse", R_OK | W_OK) != 0 && geteuid() != 0 &&
        access("/bin/fusermount3", X_OK) != 0 && access("/usr/bin/fusermount3", X_OK) != 0) {
        fprintf(stderr, CFS_PROG ": /dev/fuse: %s, and no fusermount3: run as root or "
                "install fuse3\n", strerror(EACCES));
        return 1;
    }
    return 0;
}

/* ---- options ------------------------------------------------------------------- */
enum { OPT_SOCKET = 256, OPT_NO_TMEM, OPT_SHARED, OPT_REJOIN, OPT_RECONNECT, OPT_TSRES,
       OPT_OPENWAIT, OPT_PRINT_UUID };

static void add_fuse_opt(struct cfs_options *o, const char *opt)
{
    size_t old = o->fuse_opts ? strlen(o->fuse_opts) : 0;
    char *n = realloc(o->fuse_opts, old + strlen(opt) + 2);
    if (!n) {
        perror(CFS_PROG);
        exit(1);
    }
    if (old)
        n[old++] = ',';
    strcpy(n + old, opt);
    o->fuse_opts = n;
}

/* 0 parsed, 2 usage error, -1 done (help, version, print-uuid: *status). */
static int parse(int argc, char **argv, struct cfs_options *o, int *status)
{
    static const struct option longs[] = {
        { "cache-pages", required_argument, NULL, 'c' },
        { "delay-us", required_argument, NULL, 'D' },
        { "socket", required_argument, NULL, OPT_SOCKET },
        { "name", required_argument, NULL, 'n' },
        { "no-tmem", no_argument, NULL, OPT_NO_TMEM },
        { "shared", no_argument, NULL, OPT_SHARED },
        { "rejoin-ms", required_argument, NULL, OPT_REJOIN },
        { "reconnect-ms", required_argument, NULL, OPT_RECONNECT },
        { "ts-res-ms", required_argument, NULL, OPT_TSRES },
        { "open-wait-ms", required_argument, NULL, OPT_OPENWAIT },
        { "print-uuid", required_argument, NULL, OPT_PRINT_UUID },
        { "foreground", no_argument, NULL, 'f' },
        { "debug", no_argument, NULL, 'd' },
        { "single-thread", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    o->cache_pages = DEFAULT_CACHE_PAGES;
    o->rejoin_ms = DEFAULT_REJOIN_MS;
    o->reconnect_ms = DEFAULT_RECONNECT_MS;
    o->open_wait_ms = DEFAULT_OPEN_WAIT_MS;
    o->ts_res_ns = coarse_tick_ns();
    unsigned long v;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:D:n:fdso:hV", longs, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (!parse_ulong(optarg, 1ul << 28, &v) || v == 0)
                return usage_error("--cache-pages '%s': a number of pages, 1 to 2^28", optarg);
            o->cache_pages = v;
            break;
        case 'D':
            if (!parse_ulong(optarg, 10000000ul, &v))
                return usage_error("--delay-us '%s': microseconds, 0 to 10000000", optarg);
            o->delay_us = v;
            break;
        case OPT_SOCKET: o->socket = optarg; break;
        case 'n':
            free(o->name);
            o->name = strdup(optarg);
            break;
        case OPT_NO_TMEM: o->no_tmem = true; break;
        case OPT_SHARED: o->shared = true; break;
        case OPT_REJOIN:
            if (!parse_ulong(optarg, 86400000ul, &v))
                return usage_error("--rejoin-ms '%s': milliseconds", optarg);
            o->rejoin_ms = v;
            break;
        case OPT_RECONNECT:
            if (!parse_ulong(optarg, 86400000ul, &v) || v == 0)
                return usage_error("--reconnect-ms '%s': milliseconds, at least 1", optarg);
            o->reconnect_ms = v;
            break;
        case OPT_TSRES:
            if (!parse_ulong(optarg, 3600000ul, &v))
                return usage_error("--ts-res-ms '%s': milliseconds", optarg);
            o->ts_res_ns = v * 1000000ul;
            break;
        case OPT_OPENWAIT:
            if (!parse_ulong(optarg, 60000ul, &v))
                return usage_error("--open-wait-ms '%s': milliseconds", optarg);
            o->open_wait_ms = v;
            break;
        case OPT_PRINT_UUID: {
            int dfd = open(optarg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd < 0) {
                fprintf(stderr, CFS_PROG ": %s: %s\n", optarg, strerror(errno));
                *status = 1;
                return -1;
            }
            tmem_uuid_t u;
            char err[256], text[37];
            int r = cfs_dirid_get(dfd, &u, err, sizeof(err));
            close(dfd);
            if (r) {
                fprintf(stderr, CFS_PROG ": %s: %s\n", optarg, err);
                *status = 1;
                return -1;
            }
            tmem_uuid_format(u, text);
            printf("%s\n", text);
            *status = 0;
            return -1;
        }
        case 'f': o->foreground = true; break;
        case 'd': o->debug = o->foreground = true; break;
        case 's': o->single_thread = true; break;
        case 'o': add_fuse_opt(o, optarg); break;
        case 'h':
            usage(stdout);
            *status = 0;
            return -1;
        case 'V':
            printf(CFS_PROG " %d.%d.%d (FUSE %d)\n", TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR,
                   TMEM_VERSION_PATCH, fuse_version());
            *status = 0;
            return -1;
        default:
            fprintf(stderr, "Try '" CFS_PROG " --help'.\n");
            return 2;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, CFS_PROG ": %s\nTry '" CFS_PROG " --help'.\n",
                argc - optind < 2 ? "expected BACKING_DIR and MOUNTPOINT" : "too many arguments");
        return 2;
    }
    o->backing = argv[optind];
    o->mountpoint = realpath(argv[optind + 1], NULL);
    if (!o->mountpoint)
        o->mountpoint = strdup(argv[optind + 1]);   /* check_mountpoint says why */
    return 0;
}

/* ---- background ----------------------------------------------------------------- */
static int ready_fd = -1;

/* Forks; the parent waits for the child's word (one byte: its status) and
 * exits with it.  Returns in the child. */
static void go_background(void)
{
    int p[2];
    if (pipe(p) != 0) {
        perror(CFS_PROG ": pipe");
        exit(1);
    }
    pid_t pid = fork();
    if (pid < 0) {
        perror(CFS_PROG ": fork");
        exit(1);
    }
    if (pid > 0) {
        close(p[1]);
        unsigned char st = 1;
        if (read(p[0], &st, 1) != 1) {
            int ws;
            waitpid(pid, &ws, 0);
            st = WIFEXITED(ws) && WEXITSTATUS(ws) ? (unsigned char)WEXITSTATUS(ws) : 1;
        }
        _exit(st);
    }
    close(p[0]);
    ready_fd = p[1];
    setsid();
}

/* The child is serving (status 0) or gave up: the parent may exit. */
static void tell_parent(unsigned char status)
{
    if (ready_fd < 0)
        return;
    if (write(ready_fd, &status, 1) != 1)
        perror(CFS_PROG ": telling the parent");
    close(ready_fd);
    ready_fd = -1;
    if (status == 0) {
        int nul = open("/dev/null", O_RDWR);
        if (nul >= 0) {
            dup2(nul, 0);
            dup2(nul, 1);
            dup2(nul, 2);
            if (nul > 2)
                close(nul);
        }
        if (chdir("/") != 0)
            (void)0;
    }
}

/* ---- main ----------------------------------------------------------------------- */
static int serve(struct cfs_fs *fs)
{
    struct cfs_options *o = fs->opt;
    char err[256];
    int r = cfs_backing_init(&fs->backing, o->backing, o->delay_us, &fs->st);
    if (r) {
        fprintf(stderr, CFS_PROG ": backing directory %s: %s\n", o->backing, strerror(-r));
        return 1;
    }
    if (check_mountpoint(o->mountpoint, fs->backing.path) || check_fuse()) {
        cfs_backing_fini(&fs->backing);
        return 1;
    }
    if (!o->name) {
        char *copy = strdup(fs->backing.path);
        const char *base = copy ? basename(copy) : "";
        size_t len = strlen(base) + 16;
        o->name = malloc(len);
        if (o->name)
            snprintf(o->name, len, "cachefs:%s", base);
        free(copy);
        if (!o->name) {
            perror(CFS_PROG);
            cfs_backing_fini(&fs->backing);
            return 1;
        }
    }
    tmem_uuid_t uuid = { 0, 0 };
    if (o->shared && !o->no_tmem) {
        if ((r = cfs_dirid_get(fs->backing.dirfd, &uuid, err, sizeof(err))) != 0) {
            fprintf(stderr, CFS_PROG ": backing directory %s: %s\n", fs->backing.path, err);
            cfs_backing_fini(&fs->backing);
            return 1;
        }
    }
    if (!o->foreground)
        go_background();

    int status = 1;
    r = cfs_cache_init(&fs->cache, (uint32_t)o->cache_pages, &fs->tier, &fs->backing, &fs->st,
                       o->ts_res_ns, o->open_wait_ms);
    if (r) {
        fprintf(stderr, CFS_PROG ": local cache of %lu pages: %s\n", o->cache_pages,
                strerror(-r));
        tell_parent(1);
        cfs_backing_fini(&fs->backing);
        return 1;
    }
    cfs_tier_start(&fs->tier, o, uuid, &fs->st);

    /* FUSE: argv[0], our fixed options, the user's -o */
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    char fsname[PATH_MAX + 32];
    snprintf(fsname, sizeof(fsname), "fsname=%s,subtype=tmem-cachefs,default_permissions",
             fs->backing.path);
    fuse_opt_add_arg(&args, CFS_PROG);
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, fsname);
    if (o->fuse_opts) {
        fuse_opt_add_arg(&args, "-o");
        fuse_opt_add_arg(&args, o->fuse_opts);
    }
    if (o->debug)
        fuse_opt_add_arg(&args, "-d");
    struct fuse *f = fuse_new(&args, &cfs_ops, sizeof(cfs_ops), fs);
    if (!f) {
        fprintf(stderr, CFS_PROG ": FUSE refused the options (see above)\n");
        goto out_tier;
    }
    if (fuse_mount(f, o->mountpoint) != 0) {
        fprintf(stderr, CFS_PROG ": cannot mount on %s (see above)\n", o->mountpoint);
        goto out_destroy;
    }
    struct fuse_session *se = fuse_get_session(f);
    if (fuse_set_signal_handlers(se) != 0) {
        fprintf(stderr, CFS_PROG ": cannot install signal handlers\n");
        goto out_unmount;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);

    pthread_t hk;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&hk_cond, &ca);
    pthread_condattr_destroy(&ca);
    hk_stop = false;
    if (pthread_create(&hk, NULL, housekeeping, fs) != 0) {
        fprintf(stderr, CFS_PROG ": cannot start the housekeeping thread\n");
        goto out_signals;
    }
    /* SIGUSR1/2 go to the housekeeping thread only (the FUSE threads,
     * started below, inherit this mask): no EINTR in the data path */
    sigset_t usr;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &usr, NULL);
    fprintf(stderr, CFS_PROG ": %s mounted on %s (%lu cache pages, delay %lu us, %s)\n",
            fs->backing.path, o->mountpoint, o->cache_pages, o->delay_us,
            o->no_tmem ? "no tmem" : o->shared ? "shared cleancache" : "private cleancache");
    fflush(stderr);
    tell_parent(0);

    int lr;
    if (o->single_thread) {
        lr = fuse_loop(f);
    } else {
        struct fuse_loop_config *lc = fuse_loop_cfg_create();
        if (!lc) {
            lr = -ENOMEM;
        } else {
            fuse_loop_cfg_set_clone_fd(lc, 0);
            fuse_loop_cfg_set_idle_threads(lc, 10);
            lr = fuse_loop_mt(f, lc);
            fuse_loop_cfg_destroy(lc);
        }
    }
    status = lr < 0 ? 1 : 0;
    if (lr < 0)
        fprintf(stderr, CFS_PROG ": the FUSE loop failed: %s\n", strerror(-lr));

    pthread_mutex_lock(&hk_lock);
    hk_stop = true;
    pthread_cond_signal(&hk_cond);
    pthread_mutex_unlock(&hk_lock);
    pthread_join(hk, NULL);
    pthread_cond_destroy(&hk_cond);
    cfs_stats_print(fs, "unmount");
out_signals:
    fuse_remove_signal_handlers(se);
out_unmount:
    fuse_unmount(f);
out_destroy:
    fuse_destroy(f);
out_tier:
    tell_parent(1);
    fuse_opt_free_args(&args);
    cfs_tier_stop(&fs->tier);
    cfs_cache_fini(&fs->cache);
    cfs_backing_fini(&fs->backing);
    return status;
}

int main(int argc, char **argv)
{
    static struct cfs_options opt;
    int status = 0;
    int r = parse(argc, argv, &opt, &status);
    if (r == 0) {
        static struct cfs_fs fs;
        fs.opt = &opt;
        status = serve(&fs);
    } else if (r > 0) {
        status = r;
    }
    free(opt.mountpoint);
    free(opt.name);
    free(opt.fuse_opts);
    return status;
}
