/* SPDX-License-Identifier: MIT */
/*
 * lend.h - lent memory, the daemon's side (lend.c; docs/protocol.md, "Lent
 * memory"): what the server, the control socket, the governor, the metrics
 * and the unit tests use of it.  Private to the daemon.
 */
#ifndef TMEM_DAEMON_LEND_H
#define TMEM_DAEMON_LEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/wire.h"

struct tmd;
struct tmd_lent;                        /* one client's lent memory */

/* What the engine keeps at least, beside what is lent (its clients' and
 * shared pools' metadata, and shared pages). */
#define TMD_LEND_ENGINE_MIN (4ull << 20)     /* (at most a sixteenth of the limit) */

/* ---- the victim policy (a pure function) ------------------------------- */
#define TMD_LEND_VIEW_MAX 1024
struct tmd_lend_view {
    uint64_t eph_units;         /* ephemeral units lent to it */
    uint32_t weight;
    uint64_t oldest_ms;         /* the age of its oldest ephemeral page (its report) */
    bool active;                /* it asked for a unit lately */
    bool shrinking;             /* a SHRINK to it is outstanding */
};
/* The client to take ephemeral units from so that v[requester] may have
 * one, among n (at most TMD_LEND_VIEW_MAX) of which budget_units may be
 * lent: -1 for nobody (the requester evicts its own pages).  Shares are
 * budget_units * weight / (sum of the active clients' weights, the
 * requester's included), and an idle client's is 0; only a client above
 * its share is a victim, the one with the oldest pages over its weight; a
 * requester above its own share takes only from older pages than its own.
 * (docs/protocol.md, "Grants".) */
int tmd_lend_victim(const struct tmd_lend_view *v, size_t n, size_t requester,
                    uint64_t budget_units);

/* ---- life ---------------------------------------------------------------- */
int  tmd_lend_init(struct tmd *d);
void tmd_lend_fini(struct tmd *d);
/* Does the daemon lend memory (cfg lend, and not dedup across clients)? */
bool tmd_lending(const struct tmd *d);

struct tmd_lend_hello {
    int sock;                   /* the connection (for messages to the client) */
    uint32_t client_id;
    uid_t uid;
    const char *name;
    int share_fd;               /* the client's shared page (dup'ed if kept) */
    bool adopt;                 /* it hands back its arenas: */
    int arena_fd[2];            /* (dup'ed if kept) */
    uint64_t unit;              /* their unit (bytes) */
};
/* A client's lent memory at its HELLO: new arenas, or (adopt) the ones it
 * hands back, checked and counted.  Fills rep's lend fields and out_fds
 * (the new arenas, to send; -1 when adopting: they stay the daemon's).
 * 0, -EPROTO (a shared page or an arena that is not one of ours), -ENOMEM
 * (no room for its persistent units: it keeps them and tries again). */
int  tmd_lend_open(struct tmd *d, const struct tmd_lend_hello *hi, struct tmw_hello_reply *rep,
                   int out_fds[2], struct tmd_lent **out);
/* After the HELLO reply: the client joins the lender's list (before, no
 * message, policy or figure reaches it: its socket's first message must be
 * the reply), and the ephemeral units an adoption could not keep are taken
 * back (REVOKED). */
void tmd_lend_started(struct tmd *d, struct tmd_lent *l);
/* The client is gone: its units are no longer counted; punch_all (the
 * daemon goes on) empties its arenas, so that a client that keeps its
 * mappings keeps nothing of the daemon's memory. */
void tmd_lend_close(struct tmd *d, struct tmd_lent *l, bool punch_all);

/* A message from the client after the HELLO: 0, or -EPROTO with *why (the
 * connection ends). */
int  tmd_lend_msg(struct tmd *d, struct tmd_lent *l, const void *buf, size_t len,
                  const char **why);
/* SHRINK deadlines (units taken by force when missed); the milliseconds
 * until the next one (at most 1000). */
unsigned tmd_lend_tick(struct tmd *d);

/* ---- memory -------------------------------------------------------------- */
/* The limit for what is lent and what the engine holds (the governor's);
 * asks clients for ephemeral units back when what is lent does not fit.
 * tmem_set_max_bytes's result for the engine's part. */
int  tmd_lend_set_limit(struct tmd *d, uint64_t limit);
/* Asks clients for about bytes of ephemeral units back (tmemctl flush):
 * how many bytes were asked for (they come back, or are taken, within
 * shrink_deadline_ms). */
uint64_t tmd_lend_take_back(struct tmd *d, uint64_t bytes);

/* ---- streams with a client (its connection borrowed, or at its HELLO) ---- */
/* Sends a request (SAVE, LIST with req_arg) and passes every DATA payload
 * of the answer to sink until the client's END: its result, or -errno
 * (-ETIMEDOUT after 10 s of silence, -EPROTO for a protocol violation: the
 * connection is then shut down).  The lent-memory messages that come
 * meanwhile are served. */
int64_t tmd_lend_stream_in(struct tmd *d, struct tmd_lent *l, int fd, uint16_t req_type,
                           int32_t req_arg, int (*sink)(void *arg, const void *p, size_t len),
                           void *arg);
/* Streams the daemon's engine client parked_id (a parked, restored client)
 * to the client, which restores it into its private pools: the number of
 * pages it restored, or a negative code (then the parked client is kept). */
int64_t tmd_lend_restore(struct tmd *d, struct tmd_lent *l, int fd, uint32_t parked_id);
/* The most a client's save stream may be: what its lent memory holds,
 * uncompressed twice over, and metadata. */
uint64_t tmd_lend_stream_bound(struct tmd *d, struct tmd_lent *l);

/* The bytes of persistent units lent to uid's clients. */
uint64_t tmd_lend_uid_persistent(struct tmd *d, uid_t uid);

/* ---- figures and settings -------------------------------------------------- */
struct tmd_lent_stats {         /* per client, and summed in the totals */
    uint64_t grown, refused, returned, revoked, bad;
    uint64_t shrinks_asked, shrinks_missed, msgs_dropped;
};
struct tmd_lend_totals {
    uint64_t lent_bytes[2];     /* [persistent] */
    uint64_t limit;
    uint64_t grown, refused, returned, revoked, bad, shrinks_asked;
    uint64_t adopted_units, adopt_refused, closed_units;
};
void tmd_lend_totals(struct tmd *d, struct tmd_lend_totals *out);
/* Adds to e the counters (puts, gets, evictions...) that clients with lent
 * memory reported last before they left. */
void tmd_lend_retired(struct tmd *d, tmem_stats_t *e);

/* A client's figures: what the daemon enforces (lent_bytes) and what the
 * client reports (the rest, clamped). */
struct tmd_lend_client {
    uint64_t lent_bytes[2];
    uint32_t weight;
    uint64_t oldest_eph_ms, dropped, evicted, compressed_pages, compressed_bytes;
    uint64_t rep[TMW_REP_COUNT];        /* its engine's figures (wire.h) */
    struct tmd_lent_stats st;
};
void tmd_lend_report(struct tmd *d, struct tmd_lent *l, struct tmd_lend_client *out);
/* Asks every client for a fresh report and waits for their answers, at
 * most wait_ms (a client that does not answer keeps its last one). */
void tmd_lend_refresh(struct tmd *d, unsigned wait_ms);

#define TMD_LEND_SET_WEIGHT   0x1u
#define TMD_LEND_SET_FREEZE   0x2u
#define TMD_LEND_SET_CAP      0x4u
#define TMD_LEND_SET_COMPRESS 0x8u
struct tmd_lend_setting {
    uint32_t mask;
    uint32_t weight;
    bool frozen;
    uint64_t cap;
    int compress;
};
/* An administrator's settings: kept for the grants (weight, cap, freeze)
 * and sent to the client for its private pools (SET). */
void tmd_lend_set(struct tmd *d, struct tmd_lent *l, const struct tmd_lend_setting *st);

#endif /* TMEM_DAEMON_LEND_H */
