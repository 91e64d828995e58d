/* SPDX-License-Identifier: MIT */
/*
 * conn.h - a connection to tmemd, as the client library's parts share it
 * (private to src/client).
 *
 *   connect.c  tmem_connect(), the HELLO, the handle (its operations table,
 *              its pool ids), closing, coming back after the daemon died
 *   remote.c   calls through the window: one slot, or a batch of slots
 *   lend.c     lent memory: the engine over the arenas (its memory source),
 *              the service thread that reads the socket, the job thread
 *              (shrink, revocations, save, restore), the report.  A
 *              connection without lent memory has no thread: its window
 *              watches the socket for the daemon's end
 *
 * A handle in TMW_MODE_LEND runs an engine of its own (tmem_open_arena)
 * with one client, `local`, whose pool ids are the handle's: a private
 * pool is created in `local` at the id the handle chose, so that saving
 * and restoring keep the ids.  A shared pool lives in the daemon, behind
 * the window; pools[] says where each id is.  In TMW_MODE_WINDOW every
 * pool lives in the daemon with the daemon's ids.
 *
 * Locking:
 *   pools_lock (rw)  pools[]; calls read the slot they use without it
 *                    (atomically), new/destroy pool and reconnection write;
 *   conn_lock (rw)   sock, win, id: calls on the window hold it for reading
 *                    for their duration, the service thread replaces them
 *                    (a reconnection) holding it for writing;
 *   grow_lock        one GROW in flight (the caller that needs memory waits
 *                    for the service thread to hand it the reply);
 *   jobs_lock        the job queue.
 * Order: pools_lock -> conn_lock -> grow_lock; jobs_lock is a leaf.
 */
#ifndef TMEM_CLIENT_CONN_H
#define TMEM_CLIENT_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto/wire.h"
#include "tmem/arena.h"
#include "tmem/tmem.h"
#include "tmem/transport.h"

/* ---- remote.c: the window ---------------------------------------------- */
struct tmr_window;
/* Maps the window fd (checking its header); NULL with errno. */
struct tmr_window *tmr_window_open(int fd);
void tmr_window_close(struct tmr_window *w);
/* The daemon is gone: every call on w returns -ENOTCONN from now on, and
 * calls waiting return it (once their slot is looked at one last time). */
void tmr_window_break(struct tmr_window *w);
/* Waits on w look at sock for the daemon's end themselves (sock -1: they
 * do not): with no lent memory no thread reads the connection, and
 * anything readable is the end (TMR_WATCH_ANY); while the service thread
 * joins shared pools again it does not read it either, and only a hang-up
 * is the end (TMR_WATCH_HANGUP: messages may be waiting). */
#define TMR_WATCH_ANY    0
#define TMR_WATCH_HANGUP 1
void tmr_window_watch(struct tmr_window *w, int sock, int watch);
bool tmr_window_broken(const struct tmr_window *w);
int  tmr_call(struct tmr_window *w, uint32_t op, uint32_t pool_id, const tmem_oid_t *oid,
              uint32_t index, uint32_t arg, const void *in, void *out);
/* n requests posted at once (one wake-up), served in order of the arrays;
 * pool ids are the daemon's (pool[i]).  op: PUT (in[i]), GET (out[i]) or
 * FLUSH_PAGE.  Fills results; returns how many are 0. */
int  tmr_call_batch(struct tmr_window *w, uint32_t op, size_t n, const uint32_t *pool,
                    const tmem_handle_t *h, const void *const *in, void *const *out,
                    int *results);

/* ---- the handle --------------------------------------------------------- */
#define TMC_STRIPES 8u
enum { TMC_NONE = 0, TMC_LOCAL = 1, TMC_REMOTE = 2 };

struct tmc_pool {
    _Atomic uint32_t where;     /* TMC_* */
    _Atomic uint32_t remote_id; /* the daemon's pool id (TMC_REMOTE) */
    uint32_t flags;             /* as asked (to join again after a reconnection) */
    tmem_uuid_t uuid;
};

struct tmc_job;
struct tmc_data;

struct tmc {
    struct tmem_client_head head;       /* TMEM_HANDLE_MAGIC, &tmc_ops */
    char *path;                         /* the socket (immutable) */
    char name[TMW_NAME_MAX];            /* (immutable) */
    unsigned fork_gen;                  /* tmc_fork_gen at open (immutable) */
    int mode;                           /* enum tmw_mode (immutable) */
    _Atomic int closed;
    /* calls inside, per thread stripe (my_stripe, connect.c); close waits
     * for their sum to be 0 */
    struct { _Alignas(64) _Atomic long n; } inflight[TMC_STRIPES];

    /* the connection (conn_lock) */
    pthread_rwlock_t conn_lock;
    int sock;                           /* -1 while disconnected */
    struct tmr_window *win;             /* NULL while disconnected */
    _Atomic uint32_t id;                /* the daemon's client id */
    _Atomic int connected;              /* 0: the daemon is gone (lend mode: coming back) */
    _Atomic uint64_t reconnects;
    pthread_mutex_t send_lock;          /* one sendmsg at a time */

    /* pools (pools_lock) */
    pthread_rwlock_t pools_lock;
    struct tmc_pool pools[TMEM_MAX_POOLS];

    /* lent memory (TMW_MODE_LEND) */
    tmem_t *engine;                     /* (immutable after open) */
    tmem_client_t *local;               /* (immutable after open) */
    int arena_fd[TMEM_ARENA_KINDS];
    uint64_t arena_bytes[TMEM_ARENA_KINDS];
    uint64_t unit_bytes;                /* the arenas' unit (immutable after open) */
    int share_fd;
    struct tmw_share *share;            /* the shared page (mapped) */
    pthread_mutex_t units_lock;         /* one walk taking units away at a time: a
                                           revocation (and its cleaned list), a
                                           shrink, free units given back (lend.c) */
    _Atomic int periodic_queued;        /* a JOB_PERIODIC is queued or running */
    pthread_mutex_t grow_lock;          /* one GROW in flight (held while it waits) */
    _Atomic uint32_t grow_seq;          /* bumped per GROW_REPLY taken, and when the
                                           connection ends: the waiter looks then */
    pthread_mutex_t reply_lock;         /* guards grow_want and grow_result: the reply
                                           is taken, or the request given up, once */
    uint64_t grow_want;                 /* the (kind, unit) + 1 awaited, 0 none */
    int grow_result;                    /* the reply's, once grow_want went to 0 */
    _Atomic uint64_t grow_quiet_until;  /* no GROW before then, unless woken */
    _Atomic int woken;                  /* a WAKE came since the last refusal */
    /* units given back while disconnected, told at the reconnection (jobs_lock) */
    uint32_t *pending_ret[TMEM_ARENA_KINDS];
    size_t npending_ret[TMEM_ARENA_KINDS], cap_pending_ret[TMEM_ARENA_KINDS];
    uint32_t *cleaned;                  /* units cleaned by the revocation running (units_lock) */
    size_t ncleaned, cap_cleaned;

    /* threads */
    pthread_t service, jobs;
    bool have_service, have_jobs;
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    struct tmc_job *job_head, *job_tail;
    _Atomic int stopping;
    /* a restore at the HELLO: tmem_connect waits for its END */
    pthread_mutex_t restore_lock;
    pthread_cond_t restore_cond;
    int restore_state;                  /* 0 none, 1 the stream arrives, 2 it is whole
                                           (the daemon's END), 3 restored (restore_lock) */
    int restore_result;
    bool restore_read_all;              /* the restore reads no more: DATA until the
                                           daemon's END is dropped (restore_lock) */
    struct tmc_data *data_head, *data_tail;     /* the stream (restore_lock) */
    pthread_mutex_t report_lock;        /* one writer of the report at a time */

    struct tmc *next_dead;              /* closed handles (tombstones) */
    struct tmc *live_prev, *live_next;  /* open handles (connect.c live_lock) */
};

static inline struct tmc *TMC(const tmem_client_t *c)
{
    return (struct tmc *)(uintptr_t)(const void *)c;
}

/* ---- connect.c ---------------------------------------------------------- */
/* Connects and says HELLO (adopt: hand back this handle's arenas).  On
 * success the reply and its fds (window, and without adopt the arenas:
 * -1 when absent).  0 or -errno. */
int  tmc_hello(struct tmc *h, bool adopt, struct tmw_hello_reply *rep, int *sock,
               int fds[3]);
/* Sends one message on the connection (send_lock).  0 or -errno. */
int  tmc_send(struct tmc *h, const void *msg, size_t len);

/* ---- lend.c ------------------------------------------------------------- */
/* Opens the engine over the arenas (fds from the HELLO reply, taken). */
int  tmc_lend_open(struct tmc *h, const struct tmw_hello_reply *rep, const int fds[3]);
void tmc_lend_close(struct tmc *h);
/* Creates the shared page (h->share_fd, h->share).  0 or -errno. */
int  tmc_share_open(struct tmc *h);
/* Starts the service thread (and, lend mode, the job thread). */
int  tmc_threads_start(struct tmc *h);
void tmc_threads_stop(struct tmc *h);
/* Waits until a restore announced by the HELLO has ended; its result. */
int  tmc_wait_restore(struct tmc *h);

#endif /* TMEM_CLIENT_CONN_H */
