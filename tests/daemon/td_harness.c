/* SPDX-License-Identifier: MIT */
/*
 * td_harness.c - start and stop real tmemd processes (td_harness.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"

#ifndef TMEMD_BIN
#define TMEMD_BIN "tmemd"
#endif

void td_sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

uint64_t td_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Starts the daemon on d's paths and waits until it is ready. */
int td_window_mode;

static int spawn(td_t *d, const char *const *extra)
{
    /* a killed daemon's sockets would look like a ready one's */
    unlink(d->sock);
    unlink(d->ctl);
    const char *bin = getenv("TMEMD_BIN");
    if (!bin)
        bin = TMEMD_BIN;
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--socket";
    argv[n++] = d->sock;
    argv[n++] = "--control-socket";
    argv[n++] = d->ctl;
    argv[n++] = "--max-memory";
    argv[n++] = "64M";
    argv[n++] = "--set";
    argv[n++] = "metrics.port=0";
    argv[n++] = "--set";
    argv[n++] = "governor.enabled=false";
    if (td_window_mode || (getenv("TD_WINDOW") && strcmp(getenv("TD_WINDOW"), "0") != 0)) {
        argv[n++] = "--set";
        argv[n++] = "memory.lend=false";
    }
    for (int i = 0; extra && extra[i] && n < 62; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    fflush(NULL);               /* the child must not write our buffers again */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* the daemon dies with its test (a failed assertion skips td_stop)
         * and never holds the test's stdout, which ctest waits on */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (!freopen("/dev/null", "w", stdout))
            _exit(126);
        if (!getenv("TD_VERBOSE")) {
            char log[300];
            snprintf(log, sizeof(log), "%s/tmemd.log", d->dir);
            if (!freopen(log, "a", stderr))     /* a restart adds to it */
                _exit(126);
        }
        /* the embedded default, not the host's configuration file, under
         * the command line (unless the test names a file) */
        if (!getenv("TMEMD_CONFIG"))
            setenv("TMEMD_CONFIG", "", 1);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "td_start: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    d->pid = pid;
    for (int i = 0; i < 1000; i++) {
        struct stat st;
        if (stat(d->sock, &st) == 0 && stat(d->ctl, &st) == 0)
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "td_start: tmemd exited early (status %d); log in %s/tmemd.log:\n",
                    status, d->dir);
            char cmd[300];
            snprintf(cmd, sizeof(cmd), "cat %s/tmemd.log >&2", d->dir);
            if (system(cmd) != 0)
                fprintf(stderr, "(no log)\n");
            d->pid = 0;
            return -1;
        }
        td_sleep_ms(10);
    }
    fprintf(stderr, "td_start: tmemd not ready after 10 s\n");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    d->pid = 0;
    return -1;
}

int td_start(td_t *d, const char *const *extra)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/tmemd-test.XXXXXX");
    if (!mkdtemp(d->dir)) {
        perror("td_start: mkdtemp");
        return -1;
    }
    snprintf(d->sock, sizeof(d->sock), "%s/c.sock", d->dir);
    snprintf(d->ctl, sizeof(d->ctl), "%s/ctl.sock", d->dir);
    return spawn(d, extra);
}

int td_stop_all(td_t *const *ds, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++)
        if (ds[i]->pid > 0) {
            if (td_stop(ds[i]) != 0)
                rc = -1;
            ds[i]->pid = 0;
        }
    return rc;
}

int td_wait_connections(const td_t *d, unsigned n)
{
    for (int i = 0; i < 1000; i++) {
        struct tmw_ctl_stats s;
        if (tmc_stats(d->ctl, &s) == 0 && s.connections == n)
            return 0;
        td_sleep_ms(10);
    }
    return -1;
}

/* SIGTERM, then waits: the exit status, or -1 (killed after 30 s, or
 * died of a signal); the log's tail on stderr unless 0. */
static int terminate(td_t *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGTERM);
    int status = 0, rc = -1;
    for (int i = 0; i < 3000; i++) {
        pid_t r = waitpid(d->pid, &status, WNOHANG);
        if (r == d->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            break;
        }
        td_sleep_ms(10);
    }
    if (rc == -1 && !WIFSIGNALED(status)) {
        fprintf(stderr, "td_stop: tmemd did not stop in 30 s: killed\n");
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    if (rc != 0) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "tail -n 30 %s/tmemd.log >&2", d->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "(no log)\n");
    }
    d->pid = 0;
    return rc;
}

int td_restart(td_t *d, const char *const *extra)
{
    int rc = d->pid > 0 ? terminate(d) : 0;     /* none after td_kill */
    if (rc != 0) {
        fprintf(stderr, "td_restart: tmemd exited with %d\n", rc);
        return -1;
    }
    return spawn(d, extra);
}

int td_kill(td_t *d)
{
    if (d->pid <= 0)
        return -1;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, NULL, 0);
    d->pid = 0;
    return 0;
}

int td_stop(td_t *d)
{
    int rc = terminate(d);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "td_stop: could not remove %s\n", d->dir);
    return rc;
}

int td_can_switch_uid(void)
{
    return geteuid() == 0;
}

int td_open_to_all(const td_t *d)
{
    if (chmod(d->dir, 0755) != 0) {
        perror("td_open_to_all: chmod");
        return -1;
    }
    return 0;
}

pid_t td_spawn_as(uid_t uid, int (*fn)(void *arg), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("td_spawn_as: fork");
        return -1;
    }
    if (pid == 0) {
        pid_t parent = getppid();
        if (uid != TD_UID_SELF &&
            (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
             setresuid(uid, uid, uid) != 0)) {
            perror("td_spawn_as: becoming the tenant");
            _exit(126);
        }
        /* after the change of credentials, which clears it; and the
         * parent may have gone before it was set */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(125);
        int rc = fn(arg);
        fflush(NULL);
        _exit(rc);
    }
    return pid;
}

int td_wait_child(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    fprintf(stderr, "td_wait_child: pid %d died of signal %d\n", (int)pid,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return -1;
}
