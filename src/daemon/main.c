/* SPDX-License-Identifier: MIT */
/*
 * main.c - tmemd: arguments, start-up, signals and shutdown.
 *
 * Start-up: configuration (embedded default, then --config FILE or else the
 * default file if it exists, then the command line; a fixed max_memory
 * above MemTotal stops it), the sockets'
 * locks (another daemon on the same paths stops this one here), the
 * engine, the state file's clients (restored and parked before any
 * connection can come), the governor (the first limit), the
 * metrics endpoint, the sockets (their paths appear only once they listen:
 * ready), then READY=1 to systemd.  SIGTERM or SIGINT stop it: the
 * listener and every worker stop and the connections close, the clients
 * with persistent pages are written to the state file (if configured),
 * every client is dropped, the engine checks itself (tmem_check) and
 * closes; the exit status is 1 if the check found anything wrong.  SIGHUP
 * reads the configuration again (tmd_reload, config.c): it is taken by
 * sigtimedwait in this thread like the others, so that the reload runs
 * here and no handler does any work.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "daemon/daemon.h"
#include "daemon/governor.h"
#include "daemon/lend.h"

/* The configuration file read when no --config is given, if it exists:
 * $sysconfdir/tmem/tmemd.conf of the configured install (CMakeLists.txt).
 * $TMEMD_CONFIG names another one; empty, none (the tests' daemons). */
#ifndef TMEMD_DEFAULT_CONFIG
#define TMEMD_DEFAULT_CONFIG "/etc/tmem/tmemd.conf"
#endif

static void usage(FILE *f)
{
    fprintf(f,
"usage: tmemd [OPTION]...\n"
"Serve transcendent memory to the processes of this host.\n"
"\n"
"  -s, --socket PATH          client socket (default " TMW_DEFAULT_SOCKET ")\n"
"  -c, --control-socket PATH  control socket for tmemctl (default " TMW_DEFAULT_CONTROL ")\n"
"  -f, --config FILE          configuration file (INI); without it,\n"
"                             " TMEMD_DEFAULT_CONFIG " if it exists\n"
"                             ($TMEMD_CONFIG: another; empty: none), else\n"
"                             the embedded default\n"
"  -m, --max-memory SIZE      most memory to hold: 512M, 4G, 25%% (of MemTotal);\n"
"                             a size above MemTotal is an error\n"
"  -o, --set SECTION.KEY=VAL  set one configuration key (repeatable)\n"
"      --state-file PATH      keep clients' persistent pages in PATH across a\n"
"                             clean restart (daemon.state_file; default: off)\n"
"  -v, --verbose              log at debug level\n"
"      --print-config         print the embedded default configuration and exit\n"
"  -h, --help                 this help\n"
"  -V, --version              the version\n"
"\n"
"It runs in the foreground and logs to stderr.  Stop it with SIGTERM; SIGHUP\n"
"reads the configuration file again (the keys that can change while it runs:\n"
"tmemd.conf(5); tmemctl config set changes one).\n"
"More: man tmemd, man tmemd.conf (every configuration key), man tmemctl.\n");
}

/* The command line's settings, kept for every reload (tmd_reload puts
 * them over the file again). */
static struct tmd_override *overrides;
static size_t noverrides;

static int keep_override(const char *section, const char *key, const char *value)
{
    struct tmd_override *v = realloc(overrides, (noverrides + 1) * sizeof(*v));
    char *sec = strdup(section), *k = strdup(key), *val = strdup(value);
    if (!v || !sec || !k || !val) {
        free(sec);
        free(k);
        free(val);
        if (v)
            overrides = v;
        fprintf(stderr, "tmemd: out of memory\n");
        return -1;
    }
    overrides = v;
    overrides[noverrides++] = (struct tmd_override){ sec, k, val };
    return 0;
}

/* "section.key=value" or "key=value" through tmd_config_set. */
static int set_option(struct tmd_config *cfg, const char *arg)
{
    char buf[512], err[256];
    snprintf(buf, sizeof(buf), "%s", arg);
    char *eq = strchr(buf, '=');
    if (!eq) {
        fprintf(stderr, "tmemd: --set %s: expected SECTION.KEY=VALUE\n", arg);
        return -1;
    }
    *eq = '\0';
    char *key = buf, *section = "";
    char *dot = strchr(buf, '.');
    if (dot) {
        *dot = '\0';
        section = buf;
        key = dot + 1;
    }
    if (tmd_config_set(cfg, section, key, eq + 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "tmemd: --set %s: %s\n", arg, err);
        return -1;
    }
    return keep_override(section, key, eq + 1);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "control-socket", required_argument, NULL, 'c' },
        { "config", required_argument, NULL, 'f' },
        { "max-memory", required_argument, NULL, 'm' },
        { "set", required_argument, NULL, 'o' },
        { "verbose", no_argument, NULL, 'v' },
        { "print-config", no_argument, NULL, 'P' },
        { "state-file", required_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    static struct tmd d;
    char err[256];
    if (tmd_config_default(&d.cfg) != 0) {
        fprintf(stderr, "tmemd: the embedded configuration does not parse\n");
        return 1;
    }
    /* the file first, whatever its place among the options, then the rest
     * of the command line over it */
    bool given = false, info = false;
    for (int i = 1; i < argc; i++) {
        const char *file = NULL;
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-f")) && i + 1 < argc)
            file = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            file = argv[i] + 9;
        if (file && tmd_config_load(&d.cfg, file, err, sizeof(err)) != 0) {
            fprintf(stderr, "tmemd: %s\n", err);
            return 1;
        }
        given |= file != NULL;
        /* the default file has no say in these (a broken one must not
         * keep `tmemd --help` from answering) */
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
            !strcmp(argv[i], "--version") || !strcmp(argv[i], "-V") ||
            !strcmp(argv[i], "--print-config"))
            info = true;
    }
    /* no --config: the default file, if there is one (a missing one is no
     * error, anything else wrong with it is, like with --config) */
    const char *deffile = getenv("TMEMD_CONFIG");
    if (!deffile)
        deffile = TMEMD_DEFAULT_CONFIG;
    const char *loaded = NULL;          /* the default file, if read */
    if (!given && !info && *deffile) {
        struct stat st;
        if (stat(deffile, &st) == 0 || errno != ENOENT) {
            if (tmd_config_load(&d.cfg, deffile, err, sizeof(err)) != 0) {
                fprintf(stderr, "tmemd: %s\n", err);
                return 1;
            }
            loaded = deffile;
        }
    }
    int c;
    static char prog[] = "tmemd";
    argv[0] = prog;             /* getopt's messages: "tmemd: ...", whatever the path */
    while ((c = getopt_long(argc, argv, "s:c:f:m:o:vhV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
        case 'c':
        case 'm': {
            const char *key = c == 's' ? "socket" : c == 'c' ? "control_socket" : "max_memory";
            const char *sec = c == 'm' ? "memory" : "daemon";
            if (tmd_config_set(&d.cfg, sec, key, optarg, err, sizeof(err)) != 0) {
                fprintf(stderr, "tmemd: --%s %s: %s\n", opts[c == 's' ? 0 : c == 'c' ? 1 : 3].name,
                        optarg, err);
                return 2;
            }
            if (keep_override(sec, key, optarg) != 0)
                return 1;
            break;
        }
        case 'S':
            if (tmd_config_set(&d.cfg, "daemon", "state_file", optarg, err, sizeof(err)) != 0) {
                fprintf(stderr, "tmemd: --state-file %s: %s\n", optarg, err);
                return 2;
            }
            if (keep_override("daemon", "state_file", optarg) != 0)
                return 1;
            break;
        case 'f':
            break;      /* loaded above */
        case 'o':
            if (set_option(&d.cfg, optarg) != 0)
                return 2;
            break;
        case 'v':
            d.cfg.log_level = LOG_DEBUG;
            if (keep_override("daemon", "log_level", "debug") != 0)
                return 1;
            break;
        case 'P':
            fputs(tmd_default_config, stdout);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("tmemd %d.%d.%d\n", TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR,
                   TMEM_VERSION_PATCH);
            return 0;
        default:        /* getopt said what is wrong, in one line */
            fputs("Try 'tmemd --help'.\n", stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tmemd: unexpected argument: %s\nTry 'tmemd --help'.\n", argv[optind]);
        return 2;
    }
    if (tmd_config_resolve(&d.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "tmemd: %s\n", err);
        return 1;
    }
    /* what SIGHUP reads again: the file given, else the default file (if
     * it exists then), and the command line over it */
    d.overrides = overrides;
    d.noverrides = noverrides;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "-f")) && i + 1 < argc)
            d.config_path = argv[i + 1];
        else if (!strncmp(argv[i], "--config=", 9))
            d.config_path = argv[i] + 9;
    }
    d.config_named = given;
    if (!given)
        d.config_path = *deffile ? deffile : NULL;
    /* max_memory may be raised while running up to the address space the
     * engine reserves at tmem_open: four times its first limit, at least
     * 1 GiB, at most 32 TiB (src/core/engine.c) */
    uint64_t room = d.cfg.max_memory * 4;
    if (room / 4 != d.cfg.max_memory)
        room = UINT64_MAX;
    if (room < (1ull << 30))
        room = 1ull << 30;
    if (room > (1ull << 45))
        room = 1ull << 45;
    d.max_memory_room = room;
    pthread_mutex_init(&d.cfg_lock, NULL);
    pthread_mutex_init(&d.reconf_lock, NULL);
    pthread_mutex_init(&d.limit_lock, NULL);
    tmd_log_init(d.cfg.log_level);
    if (loaded)
        tmd_log(LOG_INFO, "configuration: %s", loaded);
    else if (!given && *deffile)
        tmd_log(LOG_INFO, "configuration: the embedded default (no %s)", deffile);
    else if (!given)
        tmd_log(LOG_INFO, "configuration: the embedded default");
    /* one daemon per socket path: before anything touches the paths (or
     * the state file, which the daemon serving them owns) */
    if (tmd_server_lock(&d) != 0)
        return 1;
    char total[32] = "unknown";
    if (d.cfg.memtotal)
        tmd_format_size(total, sizeof(total), d.cfg.memtotal);
    if (d.cfg.max_memory_pct > 0)
        tmd_log(LOG_INFO, "max_memory: %llu MiB (%g%% of MemTotal, %s)",
                (unsigned long long)(d.cfg.max_memory >> 20), d.cfg.max_memory_pct, total);
    else
        tmd_log(LOG_INFO, "max_memory: %llu MiB (MemTotal %s)",
                (unsigned long long)(d.cfg.max_memory >> 20), total);

    /* signals are taken by sigwait in this thread only */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    d.start_ms = tmd_now_ms();
    pthread_mutex_init(&d.conns_lock, NULL);    /* before any part that lists clients */
    d.cfg.engine.max_bytes = d.cfg.max_memory;
    d.engine = tmem_open(&d.cfg.engine);
    if (!d.engine) {
        char b[32];
        tmd_log(LOG_ERR, "cannot open the engine (max_memory %s): %s",
                tmd_fmt_bytes(b, sizeof(b), d.cfg.max_memory), strerror(errno));
        return 1;
    }
    /* the state file's clients are parked before any connection can come,
     * with the limit at max_memory (the governor may lower it later), each
     * in its uid's persistent share */
    if (tmd_tenants_init(&d) != 0) {
        tmd_log(LOG_ERR, "out of memory");
        tmem_close(d.engine);
        return 1;
    }
    tmd_state_load(&d);
    if (tmd_lend_init(&d) != 0) {
        tmd_log(LOG_ERR, "out of memory");
        tmem_close(d.engine);
        return 1;
    }
    /* the governor sets the first limit and the metrics bind before the
     * sockets appear: a client that sees them sees a daemon in full */
    if (tmd_governor_start(&d) != 0) {
        tmem_close(d.engine);
        return 1;
    }
    if (tmd_metrics_start(&d) != 0) {
        tmd_governor_stop(&d);
        tmem_close(d.engine);
        return 1;
    }
    int rc = tmd_control_init(&d);
    if (rc == 0)
        rc = tmd_server_start(&d);
    if (rc != 0) {
        tmd_log(LOG_ERR, "start-up failed; stopping");
        tmd_metrics_stop(&d);
        tmd_governor_stop(&d);
        tmem_close(d.engine);
        return 1;
    }
    tmd_state_loaded(&d);       /* serving: the file's pages live here now */
    static const char *const codecs[] = { "none", "lz4", "zstd" };
    char metrics[96] = "off";
    if (tmd_metrics_port(&d))
        tmd_metrics_url(d.cfg.metrics_address, tmd_metrics_port(&d), metrics, sizeof(metrics));
    /* an administrator may change live keys from here on (config.c) */
    pthread_mutex_lock(&d.cfg_lock);
    tmd_log(LOG_INFO, "ready: max_memory %llu MiB, limit now %llu MiB, compression %s, "
            "dedup %s, governor %s, metrics %s, state file %s",
            (unsigned long long)(d.cfg.max_memory >> 20),
            (unsigned long long)(atomic_load(&d.gov.limit) >> 20),
            codecs[d.cfg.engine.compress % 3], d.cfg.engine.dedup ? "on" : "off",
            d.cfg.governor ? "on" : "off", metrics,
            d.cfg.state_file[0] ? d.cfg.state_file : "off");
    pthread_mutex_unlock(&d.cfg_lock);
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s", d.cfg.socket_path);

    /* a second's wait at a time: the logs' suppressed lines are summed up
     * once their flood has stopped */
    for (;;) {
        struct timespec second = { 1, 0 };
        int sig = sigtimedwait(&set, NULL, &second);
        if (sig < 0) {
            tmd_log_flush_suppressed(false);
            continue;
        }
        if (sig == SIGHUP) {
            tmd_reload(&d);     /* here, in the main thread: never in a handler */
            continue;
        }
        tmd_log(LOG_INFO, "%s: stopping", strsignal(sig));
        break;
    }
    sd_notify(0, "STOPPING=1");
    atomic_store(&d.stopping, 1);
    /* no request is left half-done: each worker completes what it took
     * before its connection closes; then the persistent pages are saved */
    tmd_server_quiesce(&d);
    if (d.cfg.state_file[0]) {
        sd_notify(0, "STATUS=saving the state file");
        tmd_state_save(&d);
    }
    tmd_server_stop(&d);        /* control threads read the metrics port: first */
    tmd_metrics_stop(&d);
    tmd_governor_stop(&d);
    tmd_lend_fini(&d);
    tmd_tenants_fini(&d);
    int bad = tmem_check(d.engine);
    if (bad)
        tmd_log(LOG_ERR, "self-check: %d inconsistencies in the engine", bad);
    tmem_close(d.engine);
    tmd_log_flush_suppressed(true);
    tmd_log(LOG_INFO, "stopped");
    return bad ? 1 : 0;
}
