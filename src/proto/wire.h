/*
 * wire.h - the protocol between tmemd and its clients (private to tmem).
 *
 * Two sockets, both AF_UNIX SOCK_SEQPACKET (message boundaries are kept, so
 * a truncated or oversized message is seen as such, never as a shifted
 * stream):
 *
 *  - the client socket: a client sends one HELLO; the daemon answers with a
 *    HELLO reply carrying, as SCM_RIGHTS, a sealed memfd: the window.  After
 *    that the socket carries nothing; its end (EOF, HUP) is the end of the
 *    client, whatever the reason.  Every call then travels through the
 *    window (below), never through the socket.
 *
 *  - the control socket (administrators only): one request message, then
 *    zero or more DATA messages and one END message carrying the result.
 *    restore sends DATA messages the other way before its END.
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
#define TMW_VERSION  1u
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
    TMW_MSG_HELLO = 1,          /* client -> daemon: struct tmw_hello */
    TMW_MSG_HELLO_REPLY,        /* daemon -> client: struct tmw_hello_reply + the window fd */
    TMW_MSG_CTL,                /* admin -> daemon: struct tmw_ctl */
    TMW_MSG_DATA,               /* either way: header + payload bytes */
    TMW_MSG_END,                /* either way: header; result says how it went */
};

struct tmw_msg {
    uint32_t magic;             /* TMW_MAGIC */
    uint16_t version;           /* TMW_VERSION */
    uint16_t type;              /* enum tmw_msg_type */
    uint32_t len;               /* bytes of the whole message, this header included */
    int32_t  result;            /* replies and END: >= 0 or -errno */
};

struct tmw_hello {
    struct tmw_msg m;
    char name[TMW_NAME_MAX];    /* need not be terminated; sanitised by the engine */
};

struct tmw_hello_reply {
    struct tmw_msg m;           /* result < 0: refused (no fd attached) */
    uint32_t client_id;
    uint32_t window_size;
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
    TMW_CTL_SET,                /* set_mask: TMW_SET_*; weight, cap, compress */
    TMW_CTL_SHARED_AUTH,        /* client_id, uuid, arg = allow */
    TMW_CTL_FLUSH,              /* arg64 = bytes to evict and give back; END result = 0,
                                   reply DATA uint64 bytes freed */
    TMW_CTL_FREEABLE,           /* reply DATA uint64 freeable pages */
    TMW_CTL_SAVE,               /* client_id; reply DATA: the save file, then END */
    TMW_CTL_RESTORE,            /* request DATA: the save file, then END; END reply
                                   result = pages restored; name/uid override */
    TMW_CTL_OP_MAX_
};

#define TMW_SET_WEIGHT   0x1u
#define TMW_SET_CAP      0x2u
#define TMW_SET_COMPRESS 0x4u

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
    uint32_t pad_;
};

/* TMW_CTL_CLIENTS reply: one record per client (connected or parked) */
struct tmw_ctl_client {
    tmem_client_info_t info;
    int32_t  pid;               /* 0 for a parked (restored, unclaimed) client */
    uint32_t uid, gid;
    uint32_t parked;
    uint64_t requests, bad_requests;
};

/* The save file written by TMW_CTL_SAVE: this header, then the engine's
 * save stream (docs/protocol.md). */
#define TMW_SAVE_MAGIC 0x31445653444d4d54ull   /* "TMMDSVD1" */
struct tmw_save_header {
    uint64_t magic;
    uint32_t uid, gid;
    char     name[TMW_NAME_MAX];
};

#endif /* TMEM_PROTO_WIRE_H */
