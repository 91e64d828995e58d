/* SPDX-License-Identifier: MIT */
/*
 * daemon.h - tmemd's parts and what they share (private to the daemon).
 *
 *   main.c      arguments, start-up, signals, shutdown
 *   config.c    the configuration: embedded default, file (INI), sizes; changing
 *               it while running (SIGHUP, tmemctl config)
 *   log.c       logs that say what happened and why
 *   server.c    the client socket: connections, handshake, windows, parked
 *               (restored, unclaimed) clients
 *   worker.c    one worker per client serving its window's requests
 *   lend.c      lent memory: clients' arenas, grants, taking memory back
 *   tenants.c   what one uid may hold: its persistent share
 *   control.c   the control socket (administrators only)
 *   state.c     the state file: persistent pages across a clean restart
 *   governor.c  the memory governor (MemAvailable, PSI)
 *   metrics.c   Prometheus text on a localhost HTTP endpoint
 *
 * Threads: main (signals; sums up suppressed log lines), the listener (server.c: accepts on
 * both sockets), one worker per connected client, one thread per control
 * connection, the governor, and libmicrohttpd's thread.  The engine is
 * thread-safe; the daemon's own shared state is the connection list
 * (d->conns_lock) and atomic counters.
 */
#ifndef TMEM_DAEMON_H
#define TMEM_DAEMON_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/wire.h"
#include "tmem/tmem.h"

#define TMD_PATH_MAX 108                /* sun_path */

#define TMD_SHARED_RULES 16
#define TMD_UID_SHARES   32

struct tmd_config {
    char     socket_path[TMD_PATH_MAX];
    char     control_path[TMD_PATH_MAX];
    unsigned socket_mode, control_mode; /* file modes of the two sockets */
    char     admin_group[64];           /* members may use the control socket ("" none) */
    uint32_t max_clients;               /* connections beyond are refused */
    uint32_t max_clients_per_uid;       /* the same per uid (0: none) */
    unsigned spin_us;                   /* a worker spins this long idle before sleeping */
    int      log_level;                 /* LOG_ERR .. LOG_DEBUG (syslog.h) */
    char     state_file[256];           /* persistent pages kept across a clean stop ("" off) */
    uint32_t park_timeout;              /* seconds a parked client waits for its owner (0 ever) */
    /* the engine */
    uint64_t max_memory;                /* ceiling in bytes (resolved from max_memory_pct) */
    double   max_memory_pct;            /* > 0: the ceiling is this share of MemTotal */
    uint64_t memtotal;                  /* MemTotal read by tmd_config_resolve (0 unknown) */
    tmem_config_t engine;               /* max_bytes is set by the governor */
    uint64_t uid_pers_max;              /* persistent bytes one uid may hold (0: no bound;
                                           resolved from uid_pers_max_pct) */
    double   uid_pers_max_pct;          /* > 0: that share of max_memory */
    int      lend;                      /* lend memory to clients (lend.c) */
    unsigned shrink_deadline_ms;        /* a SHRINK's deadline */
    /* the governor */
    int      governor;                  /* 0 off: the limit stays at max_memory */
    unsigned governor_interval_ms;
    uint64_t reserve;                   /* host memory left alone (bytes) */
    double   reserve_pct;               /* > 0: the reserve is this share of MemTotal */
    double   psi_threshold;             /* "some avg10" above this (percent) gives back */
    double   shrink_step_pct;           /* under pressure, give back this share of the limit */
    char     meminfo_path[256];         /* /proc/meminfo (tests point it elsewhere) */
    char     psi_path[256];             /* /proc/pressure/memory */
    /* metrics */
    int      metrics_port;              /* 0 off; -1 any free port (tests) */
    char     metrics_address[46];       /* an IPv4 or IPv6 literal (INET6_ADDRSTRLEN) */
    int      metrics_per_client;        /* per-client series (by name and uid) too */
    /* standing shared-pool authorisations, applied to every client at its
     * HELLO (a tmemctl shared-auth lasts only as long as its client) */
    struct tmd_shared_rule {
        tmem_uuid_t uuid;
        int64_t uid;                    /* -1: any uid */
    } shared_allow[TMD_SHARED_RULES];
    uint32_t nshared_allow;
    /* persistent shares of named uids, over uid_pers_max */
    struct tmd_uid_share {
        uint32_t uid;
        uint64_t bytes;                 /* resolved from pct */
        double pct;                     /* > 0: that share of max_memory */
    } uid_share[TMD_UID_SHARES];
    uint32_t nuid_share;
};

/* Fills cfg with the embedded default configuration. */
int  tmd_config_default(struct tmd_config *cfg);
/* Reads an INI file over cfg (a regular file of at most 1 MiB); on error
 * writes one line to err and returns -1. */
int  tmd_config_load(struct tmd_config *cfg, const char *path, char *err, size_t errlen);
/* Sets key (e.g. "max_memory") in section from text; section "" or NULL
 * finds the key by name (key names are unique). */
int  tmd_config_set(struct tmd_config *cfg, const char *section, const char *key,
                    const char *value, char *err, size_t errlen);
/* Resolves percentages against MemTotal read from cfg->meminfo_path (kept
 * in cfg->memtotal), checks the whole (a fixed max_memory above MemTotal is
 * an error; when MemTotal cannot be read and nothing needs it, that check
 * is skipped), and sets engine.max_bytes = max_memory. */
int  tmd_config_resolve(struct tmd_config *cfg, char *err, size_t errlen);
/* Opens path for reading (flags: more O_* flags, e.g. O_NOFOLLOW) without
 * blocking (O_NONBLOCK: a FIFO or a device does not hold the open) and
 * keeps it only if it is a regular file.  The descriptor; -1 when it cannot
 * be opened (errno set); -2 when it is not a regular file.  why says what
 * is wrong ("not a regular file (a FIFO)", or strerror). */
int  tmd_open_regular(const char *path, int flags, char *why, size_t whylen);
/* "a FIFO", "a directory", ... for a st_mode. */
const char *tmd_file_kind(unsigned mode);
/* bytes as "1000 TiB", "23.5 GiB", "512 MiB": in the largest binary unit it
 * fills, with one decimal unless whole. */
void tmd_format_size(char *out, size_t len, uint64_t bytes);
/* A size in the grammar of util/size.h ("512M", "4GiB", "1048576"; pct set
 * to 0), or a percentage with an optional fraction ("25%", "12.5%": pct set,
 * bytes 0; refused when pct is NULL).  0 or -1. */
int  tmd_parse_size(const char *s, uint64_t *bytes, double *pct);
extern const char tmd_default_config[];  /* the embedded default, as INI text */
/* The keys one by one: how many; key i's "section.key" into out (NULL past
 * the end); the index of "section.key" or "key" (-1: no such key); whether
 * it may change while the daemon runs (config.c). */
size_t tmd_config_nkeys(void);
const char *tmd_config_key(size_t i, char *out, size_t len);
int  tmd_config_find(const char *name);
bool tmd_config_key_live(size_t i);
/* Key i's value in cfg as the file would say it ("64M", "50%", "lz4",
 * "UUID:UID, ..."), *bytes (may be NULL) what a size or a percentage
 * resolved to (0 for other keys).  1 for a size, 0 for another key, -1 if
 * out is too short. */
int  tmd_config_format(const struct tmd_config *cfg, size_t i, char *out, size_t len,
                       uint64_t *bytes);

/* ---- logs (log.c) ---- */
void tmd_log_init(int level);
void tmd_log_set_level(int level);      /* daemon.log_level changed while running */
void tmd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line about an event that a client or a local user can repeat at will
 * (a malformed HELLO, a refused connection, a protocol violation, a
 * control refusal, a connection come and gone): written while its key
 * (cause, uid) has a token, TMD_LOG_BURST lines at once and then
 * TMD_LOG_PER_S a second; the lines beyond are counted, and the next line
 * written for the key ends with "[N similar messages suppressed]" (or
 * tmd_log_flush_suppressed says so).  One uid's flood thus costs a few
 * lines a second and never hides another uid's lines.  cause: a short
 * literal naming the kind of event ("bad-hello"); uid: the peer's, or
 * TMD_NO_UID.  Thread-safe. */
#define TMD_NO_UID ((uid_t)-1)
void tmd_log_limited(int level, const char *cause, uid_t uid, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* One line for each key with suppressed lines not yet said: with all,
 * every such key; else those with a token now (taking it), so that a flood
 * that stopped is summed up.  The main thread calls it every second, and
 * with all once stopped. */
void tmd_log_flush_suppressed(bool all);

/* The limiter of tmd_log_limited, on a clock given by the caller (its unit
 * test drives the clock).  A token bucket per (cause, uid) key: full at
 * TMD_LOG_BURST lines, refilled at TMD_LOG_PER_S lines a second.  Up to
 * TMD_LOG_KEYS keys at once; a key's entry is taken over by a new key once
 * its bucket is full again and nothing of it is left to say, and while every
 * entry is busy, new keys share one more ("other"). */
#define TMD_LOG_BURST 10
#define TMD_LOG_PER_S 5
#define TMD_LOG_KEYS  128
struct tmd_log_key {
    const char *cause;                  /* NULL: unused */
    uid_t uid;
    int level;                          /* of its last line */
    uint64_t tokens;                    /* thousandths of a line */
    uint64_t at_ms;                     /* when tokens was brought up to date */
    uint64_t suppressed;                /* lines not written since its last one said */
};
struct tmd_log_limiter {
    pthread_mutex_t lock;
    struct tmd_log_key keys[TMD_LOG_KEYS];
    struct tmd_log_key other;           /* the keys that found no entry */
};
#define TMD_LOG_LIMITER_INIT { .lock = PTHREAD_MUTEX_INITIALIZER }
/* Takes a token of (cause, uid) at now_ms: true (write the line), with
 * *suppressed the key's lines suppressed since its last one said (then
 * zero; always 0 on "other", whose count only the flush says); or false,
 * the line counted as suppressed. */
bool tmd_log_limiter_take(struct tmd_log_limiter *lim, const char *cause, uid_t uid,
                          int level, uint64_t now_ms, uint64_t *suppressed);
/* For each key with suppressed lines (all: every one; else those with a
 * token at now_ms, which is taken): fn(key, n, arg), n its count, which
 * then starts again; the key's cause is NULL for "other".  fn runs with the
 * limiter's lock held.  The number of calls. */
size_t tmd_log_limiter_flush(struct tmd_log_limiter *lim, uint64_t now_ms, bool all,
                             void (*fn)(const struct tmd_log_key *key, uint64_t n, void *arg),
                             void *arg);

/* ---- the daemon ---- */
/* Daemon-wide counters; the workers' figures of connections that ended
 * (server.c folds each in at the end; live ones are added when read). */
struct tmd_counters {
    atomic_uint_fast64_t accepted, refused_conn, bad_msgs, bad_requests, requests;
    atomic_uint_fast64_t worker_sleeps, ctl_refused;
    atomic_uint_fast64_t worker_wakeups, worker_empty_wakeups, worker_cpu_ns, worker_throttles;
};

struct tmd_gov_state {
    atomic_uint_fast64_t limit, mem_available, psi_x100;
    atomic_uint_fast64_t shrinks, grows, pages_evicted, pages_released;
};

struct tmd_conn;    /* server.c */

/* A setting of the command line (--set, --max-memory, --socket, -v, ...):
 * it stays over the file at every reload, as at the start. */
struct tmd_override {
    const char *section, *key, *value;
};

struct tmd {
    /* The configuration.  Its live keys (tmd_config_key_live) change while
     * the daemon runs (config.c): a change holds reconf_lock (one change
     * at a time), limit_lock for max_memory and the governor's keys, and
     * cfg_lock while it writes; any other thread reads a live key with
     * cfg_lock (TMD_CFG), or with limit_lock (the governor).  The other
     * keys never change once the daemon started.  Order: reconf_lock,
     * limit_lock, the lender's lock, cfg_lock (innermost: nothing is
     * taken under it). */
    struct tmd_config cfg;
    pthread_mutex_t cfg_lock, reconf_lock, limit_lock;
    uint64_t max_memory_room;           /* the most max_memory may be raised to: what the
                                           engine reserved at start (main.c) */
    const char *config_path;            /* the file a reload reads (NULL: none) */
    bool config_named;                  /* given with --config: it must exist */
    const struct tmd_override *overrides;   /* the command line's settings */
    size_t noverrides;
    tmem_t *engine;
    uint64_t start_ms;
    _Atomic int stopping;
    int listen_fd, control_fd;
    int lock_fd[2];                     /* the sockets' locks (tmd_server_lock), held to the end */
    struct tmd_counters n;
    struct tmd_gov_state gov;
    /* connections and parked clients (conns_lock) */
    pthread_mutex_t conns_lock;
    struct tmd_conn *conns;
    uint32_t nconns, nparked;
    /* parts' private state */
    struct tmd_control *control;
    struct tmd_governor *governor;
    struct tmd_metrics *metrics;
    struct tmd_lender *lender;
    struct tmd_tenants *tenants;
    pthread_t listener;
    bool quiesced;                      /* tmd_server_quiesce has run (main thread) */
    bool state_loaded;                  /* the state file was loaded, not yet removed */
};

uint64_t tmd_now_ms(void);

/* A live key of d->cfg read from any thread but a writer's (see struct tmd). */
#define TMD_CFG(d, field)                                                      \
    __extension__({                                                            \
        pthread_mutex_lock(&(d)->cfg_lock);                                    \
        __typeof__((d)->cfg.field) tmd_cfg_v_ = (d)->cfg.field;                \
        pthread_mutex_unlock(&(d)->cfg_lock);                                  \
        tmd_cfg_v_;                                                            \
    })

/* ---- config.c: the configuration while the daemon runs ---- */
/* SIGHUP (the main thread): reads the file again (the one given with
 * --config, else the default file if there is one now), puts the command
 * line over it, resolves and checks the whole, and applies the keys that
 * changed: a live one at once (logged), any other kept at its old value
 * (one line each).  Any error rejects the file as a whole (logged with
 * FILE:LINE); the configuration in force stays. */
void tmd_reload(struct tmd *d);
/* tmemctl config set: key ("section.key" or "key") to value, in the file's
 * grammar.  0; -ENOENT no such key; -EOPNOTSUPP a key that cannot change
 * while the daemon runs; -EINVAL a bad value (why says so).  who: for the
 * log ("uid 0 (pid 42)"). */
int  tmd_config_set_live(struct tmd *d, const char *key, const char *value, const char *who,
                         char *why, size_t whylen);
/* Every connected uid's engine group follows its persistent share again
 * (after the shares changed). */
void tmd_uid_refresh_all(struct tmd *d);

/* ---- server.c ---- */
/* A client's name as the daemon keeps and logs it, wherever it comes from
 * (a HELLO, the state file, a restored save file): at most max bytes of in
 * (and TMW_NAME_MAX - 1), cut at a NUL, with the engine's rule
 * (client.c): printable ASCII but space and , : = become '_' (no control
 * character reaches a log line or a tmem-list line). */
void tmd_sanitize_name(char out[TMW_NAME_MAX], const char *in, size_t max);
/* The cgroup said by the text of a /proc/PID/cgroup file (len bytes): the
 * v1 memory controller's line, else the v2 "0::" line; printable ASCII
 * but blank, '"' and '\\' (those become '_'), a path longer than
 * TMW_CGROUP_MAX - 1 bytes cut to its end after "...".  "" when neither
 * line is there.  Apart for the tests. */
void tmd_cgroup_of(const char *text, size_t len, char out[TMW_CGROUP_MAX]);
/* Takes the lock of each socket path, PATH.lock beside it (an exclusive
 * flock; the file holds the pid), before the daemon touches either path;
 * they stay held until the process exits.  0, or -errno with the reason
 * logged (-EWOULDBLOCK: another daemon holds one, its pid named). */
int  tmd_server_lock(struct tmd *d);
/* Binds both sockets, starts the listener; d->conns_lock is initialised. */
int  tmd_server_start(struct tmd *d);
/* Checks a received HELLO of n bytes (n as recv reported it with MSG_TRUNC)
 * and copies out its sanitised name.  0, -EPROTO, or -EPROTONOSUPPORT. */
int  tmd_check_hello(const void *msg, ssize_t n, char name[TMW_NAME_MAX]);
/* Stops the listener and the control socket, then every worker (each
 * completes the request it took and publishes its result) and only then
 * closes each connection: from here on clients get -ENOTCONN.  The engine
 * clients, connected and parked, stay for tmd_state_save.  Main thread. */
void tmd_server_quiesce(struct tmd *d);
/* Quiesces (if not done) and releases every client. */
void tmd_server_stop(struct tmd *d);
/* The daemon-wide figures (engine stats included, and what clients with
 * lent memory report) for control and metrics.  fresh: ask those clients
 * for a new report first (waits up to 100 ms). */
void tmd_stats_snapshot(struct tmd *d, struct tmw_ctl_stats *out, bool fresh);
/* Every client, connected or parked; *out is malloc'ed.  0 or -ENOMEM. */
int  tmd_clients_snapshot(struct tmd *d, struct tmw_ctl_client **out, size_t *n, bool fresh);
/* Runs fn on the lent memory of client client_id (TMEM_CLIENT_ALL: of
 * every client that has some), with the connection list held (so that no
 * connection ends meanwhile).  0, or -ENOENT if there is none. */
struct tmd_lent;
/* Lends the connection of client client_id (one with lent memory) to the
 * calling control thread for a stream (save, list): it leaves the
 * listener's epoll until tmd_conn_return, and the caller reads and writes
 * its socket (fd), serving the lent-memory messages meanwhile.  NULL if no
 * such client, or it is lent already.  The connection cannot end while
 * borrowed (the server stops control threads before it closes
 * connections). */
struct tmd_conn *tmd_conn_borrow(struct tmd *d, uint32_t client_id, int *fd,
                                 struct tmd_lent **lent);
void tmd_conn_return(struct tmd *d, struct tmd_conn *k);
int  tmd_lent_apply(struct tmd *d, uint32_t client_id,
                    void (*fn)(struct tmd *d, struct tmd_lent *l, void *arg), void *arg);
/* Ends client client_id (an administrator's order): a connected one's
 * socket is shut down, and the listener ends it as any client that leaves
 * (its pools freed, its lent memory taken back); a parked one is released.
 * 0 or -ENOENT. */
int  tmd_end_client(struct tmd *d, uint32_t client_id);
/* The identity of an engine client (connected or parked).  0 or -ENOENT. */
int  tmd_client_identity(struct tmd *d, uint32_t client_id, uint32_t *uid, uint32_t *gid,
                         char name[TMW_NAME_MAX]);
/* Hands a restored engine client over to the server: the next connection
 * from uid with this name adopts it.  Takes ownership of c, also when it
 * fails (-ENOMEM: c is released). */
int  tmd_park_client(struct tmd *d, tmem_client_t *c, uint32_t uid, uint32_t gid,
                     const char *name);

/* ---- tenants.c: each uid's persistent share ---- */
int  tmd_tenants_init(struct tmd *d);
void tmd_tenants_fini(struct tmd *d);
/* The daemon engine's quota group of uid's clients. */
uint32_t tmd_uid_group(uid_t uid);
/* The persistent bytes uid may hold (an administrator's setting for it,
 * else its cfg.uid_share, else cfg.uid_pers_max): 0 for no bound. */
uint64_t tmd_uid_pers_max(struct tmd *d, uid_t uid);
/* An administrator's bound for uid (bytes, 0 none), or (reset) back to the
 * configured one.  0 or -ENOMEM. */
int  tmd_uid_set_pers_max(struct tmd *d, uid_t uid, uint64_t bytes, bool reset);
/* The engine group's cap follows lent_bytes of persistent units lent to
 * uid's clients. */
void tmd_uid_follow(struct tmd *d, uid_t uid, uint64_t lent_bytes);
/* Puts engine client c (no pools yet) in uid's group.  0 or -errno. */
int  tmd_uid_join(struct tmd *d, tmem_client_t *c, uid_t uid);

/* ---- state.c: the state file (cfg.state_file) ---- */
/* At start-up, before the sockets appear: restores each client of the file
 * into a new engine client and parks it.  A damaged file keeps the clients
 * restored before the damage, is renamed to PATH.bad, and the daemon starts
 * anyway; something at PATH that is not a regular file is logged and left
 * alone.  Never blocks, never fails the start. */
void tmd_state_load(struct tmd *d);
/* Once the daemon serves (its sockets are up): removes the file loaded, so
 * that a later crash cannot bring its pages back.  A start that fails
 * before this leaves the file for the next start. */
void tmd_state_loaded(struct tmd *d);
/* After tmd_server_quiesce: writes every client with persistent pages to
 * the state file (temporary file, fsync, rename), unless a FIFO, a device
 * or a directory is at its path (-EEXIST).  0 or -errno (logged). */
int  tmd_state_save(struct tmd *d);

/* ---- worker.c (one per connected client) ---- */
struct tmd_worker;
/* A client's figures: written by its worker only (relaxed atomics), read
 * by control and metrics threads (tmd_clients_snapshot). */
struct tmd_worker_stats {
    atomic_uint_fast64_t requests, bad_requests, sleeps;
    atomic_uint_fast64_t wakeups;       /* returns from sleep by a doorbell (not the timeout) */
    atomic_uint_fast64_t empty_wakeups; /* of which found no posted slot */
    atomic_uint_fast64_t cpu_ns;        /* the worker thread's CPU time (read at most once a
                                           ms while it runs, exactly when it ends) */
    atomic_uint_fast64_t throttles;     /* times it was throttled for empty wake-ups */
    atomic_uint throttled;              /* 1 while it is */
};
/* who: the client as the log names it ("client N (pid P uid U \"name\")"). */
int  tmd_worker_start(struct tmd *d, struct tmd_worker **out, tmem_client_t *c, void *window,
                      struct tmd_worker_stats *st, const char *who);
void tmd_worker_stop(struct tmd_worker *w);   /* joins; the window stays mapped */
/* Serves slot s (with its page) for engine client c if it is posted: the
 * request decoder and dispatcher, apart for the fuzzer.  1 served, 0 not. */
int  tmd_serve_request(tmem_client_t *c, struct tmw_slot *s, uint8_t *page,
                       struct tmd_worker_stats *st);

/* ---- control.c: the control socket ---- */
int  tmd_control_init(struct tmd *d);
/* Serves one accepted control connection (takes fd); cred is SO_PEERCRED. */
void tmd_control_accept(struct tmd *d, int fd, pid_t pid, uid_t uid, gid_t gid);
void tmd_control_stop(struct tmd *d);         /* ends every control connection, waits */
/* Checks a received control request of n bytes (as recv reported it with
 * MSG_TRUNC): framing and every field.  0 with *out filled, or -EPROTO /
 * -EINVAL with *why saying what is wrong.  Apart for the fuzzer. */
int  tmd_ctl_check_request(const uint8_t *buf, size_t n, struct tmw_ctl *out, const char **why);

/* ---- governor.c ---- */
int  tmd_governor_start(struct tmd *d);       /* sets the first limit, starts the thread */
void tmd_governor_stop(struct tmd *d);

/* ---- metrics.c ---- */
/* cfg.metrics_port 0: nothing.  A port it cannot bind (taken): a warning,
 * no endpoint (tmd_metrics_port 0), and 0; -1 only out of memory. */
int  tmd_metrics_start(struct tmd *d);
void tmd_metrics_stop(struct tmd *d);
uint32_t tmd_metrics_port(struct tmd *d);     /* the bound port, 0 when off */
/* http://ADDRESS:PORT/metrics, an IPv6 address in brackets */
void tmd_metrics_url(const char *addr, unsigned port, char *buf, size_t len);

#endif /* TMEM_DAEMON_H */
