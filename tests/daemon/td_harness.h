/* SPDX-License-Identifier: MIT */
/*
 * td_harness.h - real tmemd processes for integration tests: start one on
 * temporary sockets, wait until it is ready, stop it and get its exit
 * status (1 if its self-check found the engine inconsistent).
 */
#ifndef TMEM_TD_HARNESS_H
#define TMEM_TD_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct td {
    pid_t pid;
    char dir[200];      /* a fresh temporary directory */
    char sock[256];     /* the client socket */
    char ctl[256];      /* the control socket */
} td_t;

/* Daemons started from now on serve every call through the window
 * (memory.lend=false) if this is set, or $TD_WINDOW is set and not "0";
 * else they lend memory (the default). */
extern int td_window_mode;

/* Starts $TMEMD_BIN (or the build's tmemd) with --socket/--control-socket
 * in a temporary directory, metrics and the governor off, --max-memory 64M,
 * then extra_args (NULL-terminated, may be NULL; later options win).
 * Waits until both sockets exist.  0, or -1 (a message on stderr). */
int td_start(td_t *d, const char *const *extra_args);
/* SIGTERM, waits (SIGKILL after 30 s), removes the directory.  Returns
 * the daemon's exit status (0 clean), or -1 if it had to be killed or
 * died of a signal. */
int td_stop(td_t *d);
/* Stops the daemon (SIGTERM; it must exit 0), unless none runs (after
 * td_kill), and starts it again with extra_args (td_start's defaults
 * first) on the same sockets and directory; the log goes on in
 * DIR/tmemd.log.  0, or -1 (a message on stderr). */
int td_restart(td_t *d, const char *const *extra_args);
/* SIGKILL, as a crash: no clean stop (td_restart starts it again).  0, or
 * -1 if none runs. */
int td_kill(td_t *d);
/* A teardown's stop: td_stop on each of the n daemons still running (pid
 * > 0; pid is then 0).  0 if every one exited 0 (its self-check passed),
 * else -1. */
int td_stop_all(td_t *const *ds, size_t n);
/* Waits until the daemon reports n connected clients (its connection list
 * catches up with closes asynchronously).  0, or -1 after 10 s. */
int td_wait_connections(const td_t *d, unsigned n);

/* Sleeps ms milliseconds; the monotonic clock in milliseconds. */
void     td_sleep_ms(unsigned ms);
uint64_t td_now_ms(void);

/* ---- tenants of other uids (tests of isolation; they need root) ---- */
/* The exit code that ctest counts as skipped (SKIP_RETURN_CODE of every
 * daemon test). */
#define TD_SKIP 77
/* Two uids no account uses, for two unprivileged tenants. */
#define TD_UID_A 61001u
#define TD_UID_B 61002u
/* Can this process start tenants of other uids (it is root)? */
int td_can_switch_uid(void);
/* Lets every uid reach the daemon's client socket: its directory becomes
 * 0755 (the socket's own mode is the daemon's socket_mode, 0666 by
 * default).  0, or -1. */
int td_open_to_all(const td_t *d);
/* A tenant of td_spawn_as that stays this process's uid (where the test
 * cannot switch: not root). */
#define TD_UID_SELF ((uid_t)-1)
/* Forks a child that becomes uid (gid uid, no supplementary groups) and
 * exits with fn(arg): a real process of another user.  Its pid, or -1. */
pid_t td_spawn_as(uid_t uid, int (*fn)(void *arg), void *arg);
/* Waits for a child of td_spawn_as: its exit code, or -1 (a signal; said
 * on stderr). */
int td_wait_child(pid_t pid);

#endif
