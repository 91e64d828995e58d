/* SPDX-License-Identifier: MIT */
/*
 * wire.h - the protocol between tmemd and its clients (private to tmem).
 *
 * Two sockets, both AF_UNIX SOCK_SEQPACKET (message boundaries are kept, so
 * a truncated or oversized message is seen as such, never as a shifted
 * stream):
 *
 *  - the client socket: a client sends one HELLO (with its shared page, and
 *    its arenas when it comes back after its daemon died); the daemon
 *    answers with a HELLO reply carrying, as SCM_RIGHTS, sealed memfds: the
 *    window and (lent memory) the two arenas.  After that the socket
 *    carries only the messages of lent memory (below: GROW, RETURN, ...);
 *    its end (EOF, HUP) is the end of the client, whatever the reason.
 *    Calls on the daemon's pools travel through the window (below); calls
 *    on private pools, with lent memory, never leave the client
 *    (docs/protocol.md, "Lent memory").
 *
 *  - the control socket (administrators only): one request message, then
 *    zero or more DATA messages and one END message carrying the result.
 *    restore sends DATA messages the other way before its END.  Its
 *    messages carry TMW_CTL_VERSION, raised whenever a request or a reply
 *    record changes, so that a tmemctl and a daemon of different records
 *    refuse each other instead of misreading them; the client socket's
 *    carry TMW_VERSION, which such a change leaves alone.
 *
 * The window (one per client, created and sealed by the daemon against
 * shrinking and growing, so that neither side can be made to fault):
 *
 *     0               struct tmw_header
 *     TMW_SLOTS_OFF   TMW_NSLOTS x struct tmw_slot   (64 bytes each)
 *     TMW_PAGES_OFF   TMW_NSLOTS x 4096-byte pages   (slot i uses page i)
 *
 * A call (client side): claim a free slot (the client process keeps its own
 * free mask), write the request fields and the page, store state POSTED
 * (release), set bit i of header.pending, and if header.sleeping is set,
 * FUTEX_WAKE header.pending.  Then wait for state DONE: spin a while, then
 * set slot.waiter and FUTEX_WAIT on slot.state.  Read result (and the page
 * of a get) and store state FREE.
 *
 * Placement hints: the worker publishes the CPU it runs on (worker_cpu) and
 * the client writes the CPU it posts from (client_cpu).  When both are the
 * same CPU, spinning would only keep the other off it: the client sleeps at
 * once and the worker sleeps right after serving, so that the hand-off is
 * a futex wake on one CPU (about 1 us) instead of a time slice.  Hints only:
 * a wrong one costs time, never correctness.
 *
 * The daemon (one worker per client) takes header.pending with an atomic
 * exchange and serves each slot whose state is POSTED: it copies the request
 * fields out once, validates them, runs the call straight between the
 * slot's page and the store, writes result, stores DONE (release) and wakes
 * the slot if waiter is set.  It never trusts state, pending or waiter for
 * anything but "is there work": a client that scribbles on its window can
 * only spoil its own calls.  When idle it sets header.sleeping, checks
 * pending again and FUTEX_WAITs on it (the pending/sleeping pair is ordered
 * by seq_cst on both sides, so a wake-up cannot be lost).
 */
#ifndef TMEM_PROTO_WIRE_H
#define TMEM_PROTO_WIRE_H

#include <stdatomic.h>
#include <stdint.h>

#include "tmem/tmem.h"

#define TMW_MAGIC    0x544d454du        /* "TMEM" */
#define TMW_VERSION  2u                 /* the client socket and the window */
#define TMW_CTL_VERSION 3u              /* the control socket (above): 3 added the workers'
                                           wake-ups, CPU and throttles to the records */
#define TMW_NSLOTS   32u                /* one bit each in header.pending */
#define TMW_SLOTS_OFF 256u
#define TMW_PAGES_OFF 4096u
#define TMW_WINDOW_SIZE (TMW_PAGES_OFF + TMW_NSLOTS * TMEM_PAGE_SIZE)
#define TMW_NAME_MAX 64u
#define TMW_MSG_MAX  65536u             /* the largest message either side sends */

/* Default socket paths; clients also read $TMEM_SOCKET, tmemctl
 * $TMEM_CONTROL_SOCKET. */
#define TMW_DEFAULT_SOCKET  "/run/tmem/tmemd.sock"
#define TMW_DEFAULT_CONTROL "/run/tmem/control.sock"

/* ------------------------------------------------------------------------
 * The window
 * ---------------------------------------------------------------------- */
enum tmw_state { TMW_FREE = 0, TMW_POSTED = 1, TMW_DONE = 2 };

enum tmw_op {
    TMW_OP_PUT = 1,
    TMW_OP_GET,
    TMW_OP_FLUSH_PAGE,
    TMW_OP_FLUSH_OBJECT,
    TMW_OP_NEW_POOL,            /* oid[0] = uuid.lo, oid[1] = uuid.hi, arg = flags */
    TMW_OP_DESTROY_POOL,
    TMW_OP_POOL_IS_SHARED,
    TMW_OP_JOIN_SHARED,         /* as NEW_POOL, but -EACCES unless the pool is shared */
    TMW_OP_MAX_
};

struct tmw_header {
    uint32_t magic, version;            /* written by the daemon, for the client */
    uint32_t nslots, window_size;
    uint32_t slots_off, pages_off;
    uint32_t client_id, reserved_;
    _Alignas(64) _Atomic uint32_t pending;   /* bit i: slot i was posted */
    _Alignas(64) _Atomic uint32_t sleeping;  /* the daemon's worker sleeps on pending */
    _Atomic uint32_t worker_cpu;             /* the CPU the worker last ran on (a hint) */
};

struct tmw_slot {
    _Atomic uint32_t state;     /* enum tmw_state */
    _Atomic uint32_t waiter;    /* the client sleeps on state */
    uint32_t op;                /* enum tmw_op */
    uint32_t pool_id;
    uint32_t index;
    uint32_t arg;               /* new_pool: the flags */
    uint64_t oid[3];
    int32_t  result;            /* written by the daemon before DONE */
    uint32_t client_cpu;        /* the CPU the client posted from (a hint) */
    uint32_t pad_[2];
};

_Static_assert(sizeof(struct tmw_slot) == 64, "one cache line per slot");
_Static_assert(sizeof(struct tmw_header) <= TMW_SLOTS_OFF, "header fits before the slots");
_Static_assert(TMW_SLOTS_OFF + TMW_NSLOTS * sizeof(struct tmw_slot) <= TMW_PAGES_OFF,
               "slots fit before the pages");

/* ------------------------------------------------------------------------
 * Socket messages.  Every message starts with struct tmw_msg; len is the
 * size of the whole message and must equal what was received.
 * ---------------------------------------------------------------------- */
enum tmw_msg_type {
    TMW_MSG_HELLO = 1,          /* client -> daemon: struct tmw_hello + fds */
    TMW_MSG_HELLO_REPLY,        /* daemon -> client: struct tmw_hello_reply + fds */
    TMW_MSG_CTL,                /* admin -> daemon: struct tmw_ctl */
    TMW_MSG_DATA,               /* either way: header + payload bytes */
    TMW_MSG_END,                /* either way: header; result says how it went */
    /* lent memory, on the client socket after the HELLO (docs/protocol.md) */
    TMW_MSG_GROW = 16,          /* client: struct tmw_grow */
    TMW_MSG_GROW_REPLY,         /* daemon: struct tmw_grow, result */
    TMW_MSG_RETURN,             /* client: struct tmw_units (given back) */
    TMW_MSG_CLEANED,            /* client: struct tmw_units (revoked, no longer used) */
    TMW_MSG_WAKE,               /* daemon: struct tmw_msg (room again) */
    TMW_MSG_SHRINK,             /* daemon: struct tmw_shrink */
    TMW_MSG_REVOKED,            /* daemon: struct tmw_units (taken by force) */
    TMW_MSG_SET,                /* daemon: struct tmw_set */
    TMW_MSG_SAVE,               /* daemon: struct tmw_msg; the client answers DATA..., END */
    TMW_MSG_REPORT,             /* daemon: struct tmw_msg; the client writes its report and
                                   report_ack = report_req */
    TMW_MSG_LIST,               /* daemon: struct tmw_msg, result = long form; the client
                                   answers DATA (its tmem-list lines), END */
};

struct tmw_msg {
    uint32_t magic;             /* TMW_MAGIC */
    uint16_t version;           /* TMW_VERSION */
    uint16_t type;              /* enum tmw_msg_type */
    uint32_t len;               /* bytes of the whole message, this header included */
    int32_t  result;            /* replies and END: >= 0 or -errno */
};

#define TMW_HELLO_ADOPT 0x1u    /* a client coming back: fds are the shared page and its
                                   ephemeral and persistent arenas */

/* fds (SCM_RIGHTS): the shared page; with TMW_HELLO_ADOPT also the
 * ephemeral and the persistent arena, in that order. */
struct tmw_hello {
    struct tmw_msg m;
    char name[TMW_NAME_MAX];    /* need not be terminated; sanitised by the engine */
    uint32_t flags;             /* TMW_HELLO_* */
    uint32_t unit_bytes;        /* TMW_HELLO_ADOPT: the unit its arenas were lent in */
};

enum tmw_mode {
    TMW_MODE_WINDOW = 1,        /* every call through the window */
    TMW_MODE_LEND = 2,          /* private pools in the client, on lent memory */
};

#define TMW_REPLY_RESTORE 0x1u  /* a parked client's stream follows (DATA..., END) */

/* fds: the window; in TMW_MODE_LEND without TMW_HELLO_ADOPT also the
 * ephemeral and the persistent arena. */
struct tmw_hello_reply {
    struct tmw_msg m;           /* result < 0: refused (no fd attached) */
    uint32_t client_id;
    uint32_t window_size;
    uint32_t mode;              /* enum tmw_mode */
    uint32_t unit_bytes;        /* bytes per unit of the arenas */
    uint64_t arena_bytes[2];    /* sizes of the two arenas (lend mode; multiples of 2 MiB) */
    uint32_t flags;             /* TMW_REPLY_* */
    /* the settings of the client's private pools (lend mode) */
    int32_t  compress, zstd_level;
    uint32_t compress_max, dedup;
    uint32_t frozen, reserved_;
    uint64_t cap;               /* persistent pages, 0 none */
};

/* ------------------------------------------------------------------------
 * Lent memory: the shared page and the unit messages.  A unit is 64, 128
 * or 256 KiB (16, 32 or 64 frames: TMEM_UNIT_FRAMES_* in tmem/arena.h),
 * the daemon's choice for new arenas, said in the HELLO reply.
 * ---------------------------------------------------------------------- */
#define TMW_UNITS_MAX  1024u                    /* units in one message */
#define TMW_SHARE_SIZE 4096u

/* The figures of a client's engine it reports, each a field of
 * tmem_stats_t: the wire has them by their position in this list (rep[]),
 * so that a field added to tmem_stats_t changes nothing here unless it is
 * added at the end of the list (and the protocol version raised). */
#define TMW_REPORT_FIELDS(X)                                                   \
    X(ephemeral_pages) X(persistent_pages) X(pages_whole) X(pages_compressed)  \
    X(pages_same_filled) X(pages_deduped) X(bodies) X(pools) X(objects)        \
    X(puts) X(puts_ok) X(gets) X(gets_hit) X(flushes) X(flush_objects)         \
    X(flushed_pages) X(dup_puts_replaced) X(dup_puts_flushed) X(compress_poor)  \
    X(dedup_hits) X(dedup_skipped) X(evictions) X(evict_attempts)              \
    X(evict_skipped_busy) X(refused_nomem) X(refused_quota) X(refused_frozen)  \
    X(alloc_failed) X(bad_pool) X(bad_args) X(bad_closed) X(meta_bytes)        \
    X(zalloc_bytes_used) X(frames_whole) X(frames_zalloc) X(frames_free)
enum tmw_report_field {
#define TMW_REP_ENUM(f) TMW_REP_##f,
    TMW_REPORT_FIELDS(TMW_REP_ENUM)
#undef TMW_REP_ENUM
    TMW_REP_COUNT
};

/* The client's shared page: a memfd the client creates, sealed against
 * shrinking and growing.  The first line is the daemon's, the rest (the
 * report, under a seqlock: seq is odd while the client writes) the
 * client's: hostile input to the daemon, every figure clamped. */
/* revoke_epoch of a client the daemon ended while it goes on (its
 * connection closed by an administrator or for a protocol violation): all
 * its memory is taken back; its library fails every call from then on
 * (-ENOTCONN) and never hands those arenas back. */
#define TMW_EPOCH_ENDED UINT64_MAX

struct tmw_share {
    _Alignas(64) _Atomic uint64_t revoke_epoch; /* daemon: raised before units are taken */
    _Atomic uint64_t lent[2];                   /* daemon: units lent now, per kind */
    _Atomic uint64_t report_req;                /* daemon: a fresh report wanted (REPORT) */
    _Alignas(64) _Atomic uint64_t report_ack;   /* client, from here on: report_req served */
    _Atomic uint32_t seq;
    uint32_t reserved_;
    uint64_t oldest_eph_ms;                     /* the age of its oldest ephemeral page */
    uint64_t units[2], free_units[2];           /* units held, and wholly free */
    uint64_t dropped;                           /* pages lost to units taken by force */
    uint64_t client_evicted;                    /* its client's pages evicted or dropped */
    uint64_t compressed_pages, compressed_bytes;
    uint64_t rep[TMW_REP_COUNT];                /* its engine's figures (above) */
};
_Static_assert(sizeof(struct tmw_share) <= TMW_SHARE_SIZE, "the report fits the page");

struct tmw_grow {               /* GROW; GROW_REPLY with m.result */
    struct tmw_msg m;
    uint32_t kind;              /* 0 ephemeral, 1 persistent */
    uint32_t unit;
};

struct tmw_units {              /* RETURN, CLEANED, REVOKED: len = sizeof + 4 n */
    struct tmw_msg m;
    uint32_t kind;
    uint32_t n;                 /* 1 .. TMW_UNITS_MAX */
    uint64_t epoch;             /* REVOKED: the epoch raised before these units went */
    uint32_t unit[];
};

struct tmw_shrink {
    struct tmw_msg m;
    uint32_t kind;
    uint32_t n;                 /* units wanted back */
    uint32_t deadline_ms;       /* then they are taken by force (ephemeral) */
    uint32_t reserved_;
};

#define TMW_SETC_FREEZE   0x1u
#define TMW_SETC_CAP      0x2u
#define TMW_SETC_COMPRESS 0x4u
#define TMW_SETC_WEIGHT   0x8u  /* kept by the client for its save stream (the daemon
                                   applies weights to its grants) */
struct tmw_set {
    struct tmw_msg m;
    uint32_t mask;              /* TMW_SETC_* */
    int32_t  frozen;
    int32_t  compress;
    uint32_t weight;
    uint64_t cap;               /* persistent pages, 0 none */
};

/* ------------------------------------------------------------------------
 * Control requests
 * ---------------------------------------------------------------------- */
enum tmw_ctl_op {
    TMW_CTL_STATS = 1,          /* reply: DATA struct tmw_ctl_stats */
    TMW_CTL_CLIENTS,            /* reply: DATA with struct tmw_ctl_client records */
    TMW_CTL_LIST,               /* reply: DATA text (tmem-list); arg = long form */
    TMW_CTL_FREEZE,             /* client_id (TMEM_CLIENT_ALL for all) */
    TMW_CTL_THAW,
    TMW_CTL_SET,                /* set_mask: TMW_SET_*; weight (<= TMEM_WEIGHT_MAX),
                                   cap (<= TMEM_CAP_MAX), compress */
    TMW_CTL_SHARED_AUTH,        /* client_id, uuid, arg = allow */
    TMW_CTL_FLUSH,              /* arg64 = bytes to evict and give back; END result = 0,
                                   reply DATA uint64 bytes freed */
    TMW_CTL_FREEABLE,           /* reply DATA uint64 freeable pages */
    TMW_CTL_SAVE,               /* client_id; reply DATA: the save file, then END */
    TMW_CTL_RESTORE,            /* request DATA: the save file, then END; END reply
                                   result = pages restored; name/uid override */
    TMW_CTL_END_CLIENT,         /* client_id: its connection closed, its pools freed */
    TMW_CTL_SET_UID,            /* uid; arg64 = the persistent bytes it may hold (0 no
                                   bound), or arg = TMW_SET_UID_DEFAULT */
    TMW_CTL_OP_MAX_
};

#define TMW_SET_WEIGHT   0x1u
#define TMW_SET_CAP      0x2u
#define TMW_SET_COMPRESS 0x4u

#define TMW_SET_UID_DEFAULT 0x1u    /* back to the configured share */

#define TMW_RESTORE_NAME 0x1u       /* restore under ctl.name instead of the saved name */
#define TMW_RESTORE_UID  0x2u       /* restore for ctl.uid instead of the saved uid */

struct tmw_ctl {
    struct tmw_msg m;
    uint32_t op;                /* enum tmw_ctl_op */
    uint32_t client_id;
    uint32_t arg;
    uint32_t set_mask;
    uint64_t arg64;
    uint32_t weight;
    int32_t  compress;
    uint64_t cap;
    uint64_t uuid_lo, uuid_hi;
    uint32_t uid, reserved_;
    char     name[TMW_NAME_MAX];
};

/* TMW_CTL_STATS reply */
struct tmw_ctl_stats {
    tmem_stats_t engine;
    uint64_t uptime_ms;
    uint64_t connections;           /* clients connected now */
    uint64_t parked;                /* restored clients waiting for their owner */
    uint64_t accepted, refused_conn;/* connections accepted / refused since start */
    uint64_t bad_msgs;              /* malformed socket messages */
    uint64_t bad_requests;          /* malformed window requests (all clients) */
    uint64_t requests;              /* window requests served */
    uint64_t worker_sleeps;         /* times a worker went to sleep */
    uint64_t ctl_refused;           /* control connections refused (not an administrator) */
    /* governor */
    uint64_t gov_limit;             /* the limit the governor set (bytes) */
    uint64_t gov_max;               /* the configured ceiling (bytes) */
    uint64_t gov_reserve;           /* host memory it leaves alone (bytes) */
    uint64_t gov_mem_available;     /* last MemAvailable read (bytes) */
    uint64_t gov_psi_some_avg10_x100;
    uint64_t gov_shrinks, gov_grows;
    uint64_t gov_pages_evicted, gov_pages_released;
    uint32_t metrics_port;          /* 0 when metrics are off */
    uint32_t lending;               /* 1: private pools run in the clients (lent memory) */
    /* lent memory (enforced by the daemon): bytes lent now, and the events
     * since start.  engine.* above adds the clients' reports (their pages
     * and outcomes, as they say them) to the daemon's own engine; its
     * bytes_held is the daemon's engine plus what is lent, max_bytes the
     * limit over both. */
    uint64_t lent_bytes[2];         /* [0] ephemeral, [1] persistent */
    uint64_t lend_grown, lend_refused, lend_returned, lend_revoked, lend_bad;
    uint64_t lend_shrinks_asked, lend_adopted_units, lend_adopt_refused;
    /* the workers (every client's window), clients gone included:
     * wake-ups by a doorbell, those that found no posted slot, the worker
     * threads' CPU time, throttles for empty wake-ups (docs/protocol.md,
     * "Empty wake-ups") */
    uint64_t worker_wakeups, worker_empty_wakeups;
    uint64_t worker_cpu_ns;
    uint64_t worker_throttles;
    uint64_t throttled;             /* clients throttled now */
};

/* TMW_CTL_CLIENTS reply: one record per client (connected or parked).
 * For a client with lent memory, info adds what the client reports of its
 * private pools to what the daemon holds for it (shared pools); lent_bytes
 * is what the daemon lent it (enforced). */
struct tmw_ctl_client {
    tmem_client_info_t info;
    int32_t  pid;               /* 0 for a parked (restored, unclaimed) client */
    uint32_t uid, gid;
    uint32_t parked;
    uint64_t requests, bad_requests;
    uint32_t lent;              /* 1: its private pools run in it, on lent memory */
    uint32_t reserved_;
    uint64_t lent_bytes[2];     /* [0] ephemeral, [1] persistent (enforced) */
    uint64_t meta_bytes;        /* its engine's metadata, in its own heap (reported) */
    uint64_t oldest_eph_ms;     /* the age of its oldest ephemeral page (reported) */
    uint64_t revoked_units;     /* ephemeral units taken from it by force */
    /* its worker (0 for a parked client) */
    uint64_t wakeups;           /* returns from sleep by a doorbell */
    uint64_t empty_wakeups;     /* of which found no posted slot */
    uint64_t worker_cpu_ns;     /* the worker thread's CPU time (to within 1 ms) */
    uint64_t throttles;         /* times it was throttled for empty wake-ups */
    uint32_t throttled;         /* 1: throttled now */
    uint32_t reserved2_;
};

/* The control records as TMW_CTL_VERSION has them (on 64-bit hosts): a
 * change to one (tmem_stats_t and tmem_client_info_t are in them) raises
 * TMW_CTL_VERSION and these sizes. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct tmw_ctl) == 144 && sizeof(struct tmw_ctl_stats) == 624 &&
               sizeof(struct tmw_ctl_client) == 328,
               "a control record changed: raise TMW_CTL_VERSION and the sizes here");
#endif

/* The save file written by TMW_CTL_SAVE: this header, then the engine's
 * save stream (docs/protocol.md). */
#define TMW_SAVE_MAGIC 0x31445653444d4d54ull   /* "TMMDSVD1" */
struct tmw_save_header {
    uint64_t magic;
    uint32_t uid, gid;
    char     name[TMW_NAME_MAX];
};

#endif /* TMEM_PROTO_WIRE_H */
