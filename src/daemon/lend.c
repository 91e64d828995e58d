/* SPDX-License-Identifier: MIT */
/*
 * lend.c - lent memory, the daemon's side (docs/protocol.md, "Lent
 * memory"): each client's two arenas and their units, the grants, giving
 * memory back on request and by force, and adopting the arenas of a client
 * that comes back after a daemon died.
 *
 * The daemon never maps an arena: it populates a unit with fallocate (so
 * that the pages are charged to the daemon's memory cgroup, not the
 * tenant's) and punches it with fallocate(PUNCH_HOLE).  What it lends is
 * what it counts: units it populated, per client and kind, never what the
 * client says.  The client's shared page (mapped here) carries one word the
 * daemon writes (revoke_epoch, raised before units are taken by force) and
 * the client's report, read field by field and clamped.
 *
 * The budget: the limit (the governor's, at most max_memory) covers the
 * units lent and what the daemon's own engine holds (shared pools).  A
 * GROW is granted while it fits; else the victim policy (tmd_lend_victim,
 * a pure function: the unit tests call it) picks a client to SHRINK and
 * the requester hears -ENOMEM now and WAKE later.  A SHRINK not answered by
 * its deadline takes ephemeral units by force.  The engine's limit follows:
 * limit - lent.
 *
 * Locking: lend_lock (this file's) guards every field of every struct
 * tmd_lent and the totals; messages are sent under it, non-blocking (a
 * client that does not read its socket loses messages: the deadlines still
 * hold).  Taken by the listener (messages, ticks), control threads
 * (figures, settings, flush) and the governor; never while conns_lock is
 * held.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/lend.h"

#define UNIT_MIN   (16u * TMEM_PAGE_SIZE)      /* a unit: 64, 128 or 256 KiB */
#define UNIT_MAX   (64u * TMEM_PAGE_SIZE)
#define ARENA_ALIGN (2ull << 20)        /* arenas are whole engine chunks */
#define ACTIVE_MS 100u                  /* a client that asked this recently is active */
#define SHRINK_AT_ONCE 2u               /* units asked of a victim at a time */

enum { U_FREE = 0, U_LENT = 1, U_REVOKED = 2 };

struct tmd_lent {
    struct tmd_lent *next, *prev;       /* the lender's list, from tmd_lend_started
                                           on; NULL before */
    int sock;                           /* the connection (the listener owns it) */
    uint32_t client_id;
    uid_t uid;
    char name[TMW_NAME_MAX];
    uint64_t unit;                      /* bytes per unit (its arenas') */
    int fd[2];                          /* the arenas */
    uint64_t nunits[2];
    uint8_t *state[2];                  /* U_* per unit */
    uint64_t lent[2];                   /* units U_LENT */
    uint64_t revoked_pending;           /* units U_REVOKED (awaiting CLEANED) */
    int share_fd;
    struct tmw_share *share;            /* mapped; hostile */
    uint32_t weight;
    uint64_t cap_pages;                 /* persistent pages, 0 none */
    bool frozen;
    uint64_t last_ask_ms;               /* its last GROW: activity */
    bool wants_room;                    /* refused for lack of room: WAKE it */
    bool said_share;                    /* logged that its uid's share is full */
    /* a SHRINK outstanding (kind ephemeral) */
    uint64_t shrink_want, shrink_base, shrink_deadline_ms;
    /* units an adoption could not keep, revoked once the reply is out */
    uint32_t *late_revoke;
    size_t nlate;
    struct tmd_lent_stats st;
};

struct tmd_lender {
    pthread_mutex_t lock;
    struct tmd_lent head;               /* sentinel */
    uint64_t lent_bytes[2];             /* totals */
    uint64_t unit;                      /* bytes per unit of new arenas */
    uint64_t limit;                     /* bytes: lent + engine */
    uint64_t report_seq;                /* the last REPORT asked */
    struct tmd_lend_totals tot;
    /* every arena this daemon made or adopted, ended or not: one handed
     * back again is refused (a client ended by the daemon, or one adopting
     * the arenas of a live connection, must not be counted twice) */
    struct arena_id { dev_t dev; ino_t ino; } *held;
    size_t nheld, held_cap;
    /* the counters (not the gauges) clients reported last before they
     * left, so that the daemon's totals stay cumulative (rep[] order) */
    uint64_t retired[TMW_REP_COUNT];
};

/* The report's fields that count events since the client's start (the
 * others say what it holds now). */
#define RETIRED_FIELDS(X)                                                      \
    X(puts) X(puts_ok) X(gets) X(gets_hit) X(flushes) X(flush_objects)         \
    X(flushed_pages) X(dup_puts_replaced) X(dup_puts_flushed) X(compress_poor)  \
    X(dedup_hits) X(dedup_skipped) X(evictions) X(evict_attempts)              \
    X(evict_skipped_busy) X(refused_nomem) X(refused_quota) X(refused_frozen)  \
    X(alloc_failed) X(bad_pool) X(bad_args) X(bad_closed)

static struct tmd_lender *L(struct tmd *d) { return d->lender; }

bool tmd_lending(const struct tmd *d)
{
    return d->lender && d->cfg.lend && !d->cfg.engine.dedup_across_clients;
}

static void msg_init(struct tmw_msg *m, uint16_t type, uint32_t len, int32_t result)
{
    *m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, type, len, result };
}

static void send_to(struct tmd_lent *l, const void *m, size_t len)
{
    if (send(l->sock, m, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len)
        l->st.msgs_dropped++;
}

int tmd_lend_init(struct tmd *d)
{
    struct tmd_lender *ld = calloc(1, sizeof(*ld));
    if (!ld)
        return -ENOMEM;
    pthread_mutex_init(&ld->lock, NULL);
    ld->head.next = ld->head.prev = &ld->head;
    ld->limit = d->cfg.max_memory;
    /* units: small enough that a small daemon shares out many, large
     * enough that a big one is not asked per page */
    ld->unit = d->cfg.max_memory >= (256ull << 20) ? UNIT_MAX
             : d->cfg.max_memory >= (64ull << 20) ? UNIT_MAX / 2 : UNIT_MIN;
    d->lender = ld;
    return 0;
}

void tmd_lend_fini(struct tmd *d)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return;
    free(ld->held);
    pthread_mutex_destroy(&ld->lock);
    free(ld);
    d->lender = NULL;
}

/* ------------------------------------------------------------------------
 * The budget
 * ---------------------------------------------------------------------- */
static uint64_t lent_bytes_locked(struct tmd_lender *ld)
{
    return ld->lent_bytes[0] + ld->lent_bytes[1];
}

/* What the engine keeps at least beside what is lent: TMD_LEND_ENGINE_MIN,
 * or a sixteenth of a small limit. */
static uint64_t engine_floor(const struct tmd_lender *ld)
{
    return ld->limit / 16 < TMD_LEND_ENGINE_MIN ? ld->limit / 16 : TMD_LEND_ENGINE_MIN;
}

/* The engine's limit follows what is lent (lend_lock held). */
static void engine_follow_locked(struct tmd *d)
{
    struct tmd_lender *ld = L(d);
    uint64_t lent = lent_bytes_locked(ld), floor = engine_floor(ld);
    uint64_t max = ld->limit > lent + floor ? ld->limit - lent : floor;
    tmem_set_max_bytes(d->engine, max);
}

/* Bytes that fit under the limit now, beside the lent ones and what the
 * engine holds (at least engine_floor for it). */
static uint64_t room_locked(struct tmd *d)
{
    struct tmd_lender *ld = L(d);
    tmem_stats_t s;
    tmem_stats_get(d->engine, &s);
    uint64_t floor = engine_floor(ld);
    uint64_t engine = s.bytes_held > floor ? s.bytes_held : floor;
    uint64_t used = lent_bytes_locked(ld) + engine;
    return used < ld->limit ? ld->limit - used : 0;
}

static bool fits_locked(struct tmd *d, uint64_t bytes)
{
    return room_locked(d) >= bytes;
}

/* Bytes of persistent units lent to uid's clients (those on the list). */
static uint64_t uid_pers_locked(struct tmd_lender *ld, uid_t uid)
{
    uint64_t n = 0;
    for (struct tmd_lent *o = ld->head.next; o != &ld->head; o = o->next)
        n += o->uid == uid ? o->lent[1] * o->unit : 0;
    return n;
}

uint64_t tmd_lend_uid_persistent(struct tmd *d, uid_t uid)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return 0;
    pthread_mutex_lock(&ld->lock);
    uint64_t n = uid_pers_locked(ld, uid);
    pthread_mutex_unlock(&ld->lock);
    return n;
}

/* The uid's share in the engine follows what is lent to it (tenants.c). */
static void uid_follow_locked(struct tmd *d, uid_t uid)
{
    tmd_uid_follow(d, uid, uid_pers_locked(L(d), uid));
}

/* Would one more persistent unit pass the uid's share (its lent units and
 * its pages in the daemon's engine)? */
static bool over_uid_share_locked(struct tmd *d, struct tmd_lent *l)
{
    uint64_t max = tmd_uid_pers_max(d, l->uid);
    if (!max)
        return false;
    uint64_t held = uid_pers_locked(L(d), l->uid) +
                    tmem_group_pages(d->engine, tmd_uid_group(l->uid)) * TMEM_PAGE_SIZE;
    return held + l->unit > max;
}

static void publish_lent(struct tmd_lent *l)
{
    atomic_store_explicit(&l->share->lent[0], l->lent[0], memory_order_relaxed);
    atomic_store_explicit(&l->share->lent[1], l->lent[1], memory_order_relaxed);
}

static void punch(struct tmd_lent *l, int kind, uint64_t u)
{
    fallocate(l->fd[kind], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(u * l->unit),
              (off_t)l->unit);
}

/* Populates unit u, then writes its first byte (a zero, as it reads):
 * tmpfs counts a page that fallocate made and nobody wrote as a hole, and a
 * daemon adopting the arena finds lent units by SEEK_DATA (find_lent). */
static int populate(struct tmd_lent *l, int kind, uint64_t u)
{
    static const uint8_t zero;
    if (fallocate(l->fd[kind], 0, (off_t)(u * l->unit), (off_t)l->unit) != 0 ||
        pwrite(l->fd[kind], &zero, 1, (off_t)(u * l->unit)) != 1) {
        int e = errno ? errno : EIO;
        punch(l, kind, u);
        return -e;
    }
    return 0;
}


static void set_state(struct tmd *d, struct tmd_lent *l, int kind, uint64_t u, uint8_t to)
{
    struct tmd_lender *ld = L(d);
    uint8_t from = l->state[kind][u];
    if (from == U_LENT) {
        l->lent[kind]--;
        ld->lent_bytes[kind] -= l->unit;
    } else if (from == U_REVOKED) {
        l->revoked_pending--;
    }
    if (to == U_LENT) {
        l->lent[kind]++;
        ld->lent_bytes[kind] += l->unit;
    } else if (to == U_REVOKED) {
        l->revoked_pending++;
    }
    l->state[kind][u] = to;
}

/* ------------------------------------------------------------------------
 * The victim policy
 * ---------------------------------------------------------------------- */
/* A client's weighted age: age / weight (weight 0: before anyone). */
static double weighted_age(const struct tmd_lend_view *v)
{
    if (v->weight == 0)
        return 1e300;
    return (double)v->oldest_ms / (double)v->weight;
}

int tmd_lend_victim(const struct tmd_lend_view *v, size_t n, size_t requester,
                    uint64_t budget_units)
{
    uint64_t wsum = 0;
    for (size_t i = 0; i < n; i++)
        if (v[i].active || i == requester)
            wsum += v[i].weight;
    uint64_t share[TMD_LEND_VIEW_MAX];
    for (size_t i = 0; i < n && i < TMD_LEND_VIEW_MAX; i++)
        share[i] = (v[i].active || i == requester) && wsum
                       ? (uint64_t)((double)budget_units * v[i].weight / (double)wsum) : 0;
    bool req_within = requester < n && v[requester].eph_units + 1 <= share[requester];
    double req_age = requester < n ? weighted_age(&v[requester]) : 0;
    int best = -1;
    double best_age = -1;
    for (size_t i = 0; i < n && i < TMD_LEND_VIEW_MAX; i++) {
        if (i == requester || v[i].shrinking || v[i].eph_units <= share[i])
            continue;
        double a = weighted_age(&v[i]);
        if (!req_within && !(a > req_age))
            continue;       /* over its share itself: only from older pages than its own */
        if (a > best_age) {
            best_age = a;
            best = (int)i;
        }
    }
    return best;
}

/* What the client says of its oldest ephemeral page, clamped; a client
 * holding free ephemeral units counts as oldest (they hold nothing). */
static void view_of(const struct tmd_lent *l, uint64_t now, struct tmd_lend_view *v)
{
    const struct tmw_share *s = l->share;
    uint64_t age = *(const volatile uint64_t *)&s->oldest_eph_ms;
    uint64_t free_eph = *(const volatile uint64_t *)&s->free_units[0];
    if (age > 365ull * 86400 * 1000)
        age = 365ull * 86400 * 1000;
    if (free_eph > 0 && free_eph <= l->lent[0])
        age = 365ull * 86400 * 1000;
    v->eph_units = l->lent[0];
    v->weight = l->weight;
    v->oldest_ms = age;
    v->active = now - l->last_ask_ms < ACTIVE_MS;
    v->shrinking = l->shrink_want > 0;
}

/* Asks l for n more ephemeral units back (at most what it holds and was
 * not asked for yet), by a deadline from now.  How many were asked. */
static uint64_t ask_shrink_locked(struct tmd *d, struct tmd_lent *l, uint64_t n)
{
    uint64_t given = l->shrink_want && l->shrink_base > l->lent[0] ? l->shrink_base - l->lent[0] : 0;
    uint64_t owed = l->shrink_want > given ? l->shrink_want - given : 0;
    if (owed >= l->lent[0])
        return 0;
    if (n > l->lent[0] - owed)
        n = l->lent[0] - owed;
    if (n == 0)
        return 0;
    l->shrink_want = owed + n;          /* counted from now */
    l->shrink_base = l->lent[0];
    l->shrink_deadline_ms = tmd_now_ms() + TMD_CFG(d, shrink_deadline_ms);
    struct tmw_shrink m;
    msg_init(&m.m, TMW_MSG_SHRINK, sizeof(m), 0);
    m.kind = 0;
    m.n = (uint32_t)n;
    m.deadline_ms = TMD_CFG(d, shrink_deadline_ms);
    m.reserved_ = 0;
    send_to(l, &m, sizeof(m));
    l->st.shrinks_asked++;
    L(d)->tot.shrinks_asked++;
    return n;
}

/* Room for requester: asks the policy's victim to give units back.
 * true if someone was asked. */
static bool reclaim_for_locked(struct tmd *d, struct tmd_lent *req)
{
    struct tmd_lender *ld = L(d);
    struct tmd_lend_view v[TMD_LEND_VIEW_MAX];
    struct tmd_lent *who[TMD_LEND_VIEW_MAX];
    size_t n = 0, ri = SIZE_MAX;
    uint64_t now = tmd_now_ms();
    for (struct tmd_lent *l = ld->head.next; l != &ld->head && n < TMD_LEND_VIEW_MAX; l = l->next) {
        if (l == req)
            ri = n;
        view_of(l, now, &v[n]);
        who[n++] = l;
    }
    uint64_t budget = ld->limit / ld->unit;
    int vi = tmd_lend_victim(v, n, ri, budget);
    if (vi < 0)
        return false;
    ask_shrink_locked(d, who[vi], SHRINK_AT_ONCE);
    return true;
}

/* Wakes every client refused for lack of room, if there is room now. */
static void wake_waiters_locked(struct tmd *d)
{
    struct tmd_lender *ld = L(d);
    if (!fits_locked(d, UNIT_MIN))
        return;
    for (struct tmd_lent *l = ld->head.next; l != &ld->head; l = l->next) {
        if (!l->wants_room)
            continue;
        l->wants_room = false;
        struct tmw_msg m;
        msg_init(&m, TMW_MSG_WAKE, sizeof(m), 0);
        send_to(l, &m, sizeof(m));
    }
}

/* Takes n ephemeral units of l by force: epoch, punch, REVOKED. */
/* Tells l that its ephemeral units u[0..k) were taken (the epoch already
 * raised to e), in as many REVOKED messages as it takes.  Only the last
 * carries e: a library that has processed an earlier one must still see
 * its epoch behind the live one, so that its gets keep missing on the units
 * of the messages still to come (they are punched already). */
static void send_revoked(struct tmd_lent *l, const uint32_t *u, size_t k, uint64_t e)
{
    uint8_t buf[sizeof(struct tmw_units) + TMW_UNITS_MAX * sizeof(uint32_t)];
    struct tmw_units *m = (struct tmw_units *)(void *)buf;
    for (size_t at = 0; at < k; at += TMW_UNITS_MAX) {
        size_t c = k - at < TMW_UNITS_MAX ? k - at : TMW_UNITS_MAX;
        uint32_t len = (uint32_t)(sizeof(*m) + c * sizeof(uint32_t));
        msg_init(&m->m, TMW_MSG_REVOKED, len, 0);
        m->kind = 0;
        m->n = (uint32_t)c;
        m->epoch = at + c == k ? e : e - 1;
        memcpy(m->unit, u + at, c * sizeof(uint32_t));
        send_to(l, m, len);
    }
}

static uint64_t revoke_locked(struct tmd *d, struct tmd_lent *l, uint64_t n, const char *why)
{
    uint32_t *u = malloc((size_t)(n ? n : 1) * sizeof(*u));
    if (!u)
        return 0;
    size_t k = 0;
    for (uint64_t i = l->nunits[0]; i-- > 0 && k < n;)
        if (l->state[0][i] == U_LENT)
            u[k++] = (uint32_t)i;
    if (k == 0) {
        free(u);
        return 0;
    }
    /* the epoch first: a get that copies from a punched unit sees it */
    uint64_t e = atomic_load(&l->share->revoke_epoch) + 1;
    atomic_store(&l->share->revoke_epoch, e);
    for (size_t i = 0; i < k; i++) {
        punch(l, 0, u[i]);
        set_state(d, l, 0, u[i], U_REVOKED);
    }
    publish_lent(l);
    send_revoked(l, u, k, e);
    free(u);
    l->st.revoked += k;
    L(d)->tot.revoked += k;
    tmd_log_limited(LOG_NOTICE, "lend-revoke", l->uid,
                    "client %u (uid %u \"%s\"): %zu ephemeral units (%zu KiB) taken by force: "
                    "%s", l->client_id, (unsigned)l->uid, l->name, k,
                    k * (size_t)(l->unit >> 10), why);
    engine_follow_locked(d);
    return k;
}

/* ------------------------------------------------------------------------
 * Opening, adopting, closing
 * ---------------------------------------------------------------------- */
static int make_arena(uint64_t bytes)
{
    int fd = memfd_create("tmem-arena", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)bytes) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* Is arena fd one this daemon has held (lend_lock)? */
static bool arena_held_locked(struct tmd_lender *ld, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return true;
    for (size_t i = 0; i < ld->nheld; i++)
        if (ld->held[i].ino == st.st_ino && ld->held[i].dev == st.st_dev)
            return true;
    return false;
}

/* Forgets arena fd (lend_lock): a client that keeps it may hand it back. */
static void arena_forget_locked(struct tmd_lender *ld, int fd)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return;
    for (size_t i = 0; i < ld->nheld; i++)
        if (ld->held[i].ino == st.st_ino && ld->held[i].dev == st.st_dev)
            ld->held[i--] = ld->held[--ld->nheld];
}

/* Room in the held set for two more arenas (lend_lock).  -ENOMEM. */
static int arena_room_locked(struct tmd_lender *ld)
{
    if (ld->nheld + 2 > ld->held_cap) {
        size_t cap = ld->held_cap ? ld->held_cap * 2 : 64;
        struct arena_id *v = realloc(ld->held, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        ld->held = v;
        ld->held_cap = cap;
    }
    return 0;
}

/* Records arena fd as held by this daemon (lend_lock), in the room
 * arena_room_locked made.  0 or -errno. */
static int arena_note_locked(struct tmd_lender *ld, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (ld->nheld >= ld->held_cap)
        return -ENOMEM;
    ld->held[ld->nheld++] = (struct arena_id){ st.st_dev, st.st_ino };
    return 0;
}

/* A file a client handed over: a memfd sealed exactly as we seal ours, of
 * a size we can describe.  Its size, or -EPROTO. */
static int64_t check_handed(int fd, int seals, uint64_t min, uint64_t max, uint64_t align)
{
    struct stat st;
    int got = fcntl(fd, F_GET_SEALS);
    if (got < 0 || (got & seals) != seals || (seals == (F_SEAL_SHRINK | F_SEAL_GROW |
                                                        F_SEAL_SEAL) && got != seals))
        return -EPROTO;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size < min || (uint64_t)st.st_size > max ||
        (uint64_t)st.st_size % align)
        return -EPROTO;
    return (int64_t)st.st_size;
}

/* Marks the units of kind with pages (a client's arena handed back) as
 * lent; how many. */
static uint64_t find_lent(struct tmd_lent *l, int kind)
{
    uint64_t n = 0;
    off_t end = (off_t)(l->nunits[kind] * l->unit), at = 0;
    while (at < end) {
        off_t data = lseek(l->fd[kind], at, SEEK_DATA);
        if (data < 0 || data >= end)
            break;
        off_t hole = lseek(l->fd[kind], data, SEEK_HOLE);
        if (hole < 0 || hole > end)
            hole = end;
        for (uint64_t u = (uint64_t)data / l->unit; (off_t)(u * l->unit) < hole; u++) {
            if (l->state[kind][u] != U_LENT) {
                l->state[kind][u] = U_LENT;
                n++;
            }
        }
        at = hole;
    }
    return n;
}

static void lent_free(struct tmd_lent *l)
{
    for (int k = 0; k < 2; k++) {
        if (l->fd[k] >= 0)
            close(l->fd[k]);
        free(l->state[k]);
    }
    if (l->share)
        munmap(l->share, TMW_SHARE_SIZE);
    if (l->share_fd >= 0)
        close(l->share_fd);
    free(l->late_revoke);
    free(l);
}

int tmd_lend_open(struct tmd *d, const struct tmd_lend_hello *hi, struct tmw_hello_reply *rep,
                  int out_fds[2], struct tmd_lent **out)
{
    struct tmd_lender *ld = L(d);
    out_fds[0] = out_fds[1] = -1;
    *out = NULL;
    if (check_handed(hi->share_fd, F_SEAL_SHRINK | F_SEAL_GROW, TMW_SHARE_SIZE, TMW_SHARE_SIZE,
                     1) < 0)
        return -EPROTO;
    struct tmd_lent *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->fd[0] = l->fd[1] = l->share_fd = -1;
    l->sock = hi->sock;
    l->client_id = hi->client_id;
    l->uid = hi->uid;
    snprintf(l->name, sizeof(l->name), "%s", hi->name);
    l->unit = hi->adopt ? hi->unit : ld->unit;
    if (l->unit != UNIT_MIN && l->unit != UNIT_MIN * 2 && l->unit != UNIT_MAX) {
        free(l);
        return -EPROTO;
    }
    l->weight = TMD_CFG(d, engine.default_weight);
    l->cap_pages = TMD_CFG(d, engine.default_cap);
    l->share = mmap(NULL, TMW_SHARE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, hi->share_fd, 0);
    if (l->share == MAP_FAILED) {
        l->share = NULL;
        lent_free(l);
        return -EPROTO;
    }
    l->share_fd = dup(hi->share_fd);
    /* as large as max_memory may become while the daemon runs (the grants
     * are bounded by the limit, not by this): a raise serves the clients
     * connected before it too */
    uint64_t most = TMD_CFG(d, max_memory);
    if (d->max_memory_room > most)
        most = d->max_memory_room;
    uint64_t size = (most + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (hi->adopt) {
            int64_t got = check_handed(hi->arena_fd[k], F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL,
                                       ARENA_ALIGN, 1ull << 45, ARENA_ALIGN);
            if (got < 0 || (l->fd[k] = dup(hi->arena_fd[k])) < 0) {
                rc = -EPROTO;
                break;
            }
            l->nunits[k] = (uint64_t)got / l->unit;
        } else {
            l->fd[k] = make_arena(size);
            if (l->fd[k] < 0) {
                rc = l->fd[k];
                break;
            }
            l->nunits[k] = size / l->unit;
        }
        if (!(l->state[k] = calloc(l->nunits[k], 1)))
            rc = -ENOMEM;
    }
    if (rc) {
        lent_free(l);
        return rc;
    }
    pthread_mutex_lock(&ld->lock);
    if (hi->adopt && (arena_held_locked(ld, l->fd[0]) || arena_held_locked(ld, l->fd[1]))) {
        ld->tot.adopt_refused++;
        pthread_mutex_unlock(&ld->lock);
        tmd_log_limited(LOG_WARNING, "lend-adopt-held", l->uid,
                        "client (uid %u \"%s\") handing back arenas this daemon has already "
                        "lent (to a client it ended, or one still connected): refused",
                        (unsigned)l->uid, l->name);
        lent_free(l);
        return -EPROTO;
    }
    if ((rc = arena_room_locked(ld)) != 0) {
        pthread_mutex_unlock(&ld->lock);
        lent_free(l);
        return rc;
    }
    if (hi->adopt) {
        /* what it holds: persistent all or none (within its uid's share),
         * ephemeral while it fits */
        uint64_t room = room_locked(d) / l->unit;
        uint64_t pers = find_lent(l, 1), eph = find_lent(l, 0);
        uint64_t share = tmd_uid_pers_max(d, l->uid);
        bool over_share = share && uid_pers_locked(ld, l->uid) + pers * l->unit +
                                           tmem_group_pages(d->engine, tmd_uid_group(l->uid)) *
                                               TMEM_PAGE_SIZE > share;
        if (pers > room || over_share) {
            ld->tot.adopt_refused++;
            pthread_mutex_unlock(&ld->lock);
            tmd_log_limited(LOG_WARNING, "lend-adopt", l->uid,
                            "client (uid %u \"%s\") coming back with %" PRIu64 " persistent "
                            "units (%" PRIu64 " MiB): %s; refused (it keeps its pages and tries "
                            "again)", (unsigned)l->uid, l->name, pers, pers * l->unit >> 20,
                            over_share ? "over its uid's persistent share"
                                       : "no room under the limit");
            lent_free(l);
            return -ENOMEM;
        }
        l->lent[1] = pers;
        ld->lent_bytes[1] += pers * l->unit;
        room -= pers;
        size_t nlate = 0;
        if (eph > room && !(l->late_revoke = malloc((size_t)(eph - room) * sizeof(uint32_t))))
            room = eph;         /* no memory to say which: keep them (counted) */
        for (uint64_t u = 0; u < l->nunits[0]; u++) {
            if (l->state[0][u] != U_LENT)
                continue;
            if (l->lent[0] < room) {
                l->lent[0]++;
                ld->lent_bytes[0] += l->unit;
            } else {            /* over the limit: revoked once the reply is out */
                l->state[0][u] = U_REVOKED;
                l->revoked_pending++;
                l->late_revoke[nlate++] = (uint32_t)u;
            }
        }
        l->nlate = nlate;
        ld->tot.adopted_units += l->lent[0] + l->lent[1];
        tmd_log_limited(LOG_INFO, "lend-adopt", l->uid,
                        "client %u (uid %u \"%s\") came back with its memory: %" PRIu64
                        " ephemeral and %" PRIu64 " persistent units adopted%s", l->client_id,
                        (unsigned)l->uid, l->name, l->lent[0], l->lent[1],
                        nlate ? ", ephemeral ones over the limit taken back" : "");
    }
    /* held from now on (an adoption refused above was not: the client
     * keeps its arenas and may hand them back again) */
    for (int k = 0; k < 2; k++)
        (void)arena_note_locked(ld, l->fd[k]);      /* fstat of our own dup: no failure */
    /* on the lender's list only once the HELLO reply is out
     * (tmd_lend_started): nothing may reach the socket before it */
    l->next = l->prev = NULL;
    publish_lent(l);
    engine_follow_locked(d);
    pthread_mutex_unlock(&ld->lock);

    rep->mode = TMW_MODE_LEND;
    rep->unit_bytes = (uint32_t)l->unit;
    rep->arena_bytes[0] = l->nunits[0] * l->unit;
    rep->arena_bytes[1] = l->nunits[1] * l->unit;
    rep->compress = TMD_CFG(d, engine.compress);
    rep->zstd_level = d->cfg.engine.zstd_level;
    rep->compress_max = d->cfg.engine.compress_max;
    rep->dedup = (uint32_t)d->cfg.engine.dedup;
    rep->cap = l->cap_pages;
    if (!hi->adopt) {
        out_fds[0] = l->fd[0];
        out_fds[1] = l->fd[1];
    }
    *out = l;
    return 0;
}

void tmd_lend_started(struct tmd *d, struct tmd_lent *l)
{
    struct tmd_lender *ld = L(d);
    pthread_mutex_lock(&ld->lock);
    l->next = &ld->head;
    l->prev = ld->head.prev;
    ld->head.prev->next = l;
    ld->head.prev = l;
    if (l->lent[1])
        uid_follow_locked(d, l->uid);      /* an adoption's persistent units */
    if (l->nlate) {
        /* the REVOKED of an adoption: as revoke_locked, units chosen there */
        uint64_t e = atomic_load(&l->share->revoke_epoch) + 1;
        atomic_store(&l->share->revoke_epoch, e);
        for (size_t i = 0; i < l->nlate; i++)
            punch(l, 0, l->late_revoke[i]);
        send_revoked(l, l->late_revoke, l->nlate, e);
        l->st.revoked += l->nlate;
        ld->tot.revoked += l->nlate;
        free(l->late_revoke);
        l->late_revoke = NULL;
        l->nlate = 0;
    }
    pthread_mutex_unlock(&ld->lock);
}

void tmd_lend_close(struct tmd *d, struct tmd_lent *l, bool punch_all)
{
    if (!l)
        return;
    struct tmd_lender *ld = L(d);
    struct tmd_lend_client last = { 0 };
    if (l->share)
        tmd_lend_report(d, l, &last);
    pthread_mutex_lock(&ld->lock);
#define RETIRE(f) ld->retired[TMW_REP_##f] += last.rep[TMW_REP_##f];
    RETIRED_FIELDS(RETIRE)
#undef RETIRE
    if (l->next) {                      /* started */
        l->prev->next = l->next;
        l->next->prev = l->prev;
    }
    ld->lent_bytes[0] -= l->lent[0] * l->unit;
    ld->lent_bytes[1] -= l->lent[1] * l->unit;
    ld->tot.closed_units += l->lent[0] + l->lent[1];
    engine_follow_locked(d);
    if (l->lent[1])
        uid_follow_locked(d, l->uid);
    wake_waiters_locked(d);
    for (int k = 0; k < 2 && !punch_all; k++)
        arena_forget_locked(ld, l->fd[k]);      /* left with the client: it brings them back */
    pthread_mutex_unlock(&ld->lock);
    /* A client that keeps its mappings after its end must not keep the
     * daemon's memory: punched, what it touches again is its own; its
     * library is told first (TMW_EPOCH_ENDED), so that no call of it
     * returns what the punch leaves.  (A daemon that stops leaves them:
     * its clients bring them back.) */
    if (punch_all && l->share)
        atomic_store(&l->share->revoke_epoch, TMW_EPOCH_ENDED);
    for (int k = 0; k < 2 && punch_all; k++)
        if (l->fd[k] >= 0)
            fallocate(l->fd[k], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                      (off_t)(l->nunits[k] * l->unit));
    lent_free(l);
}

/* ------------------------------------------------------------------------
 * Messages from the client
 * ---------------------------------------------------------------------- */
static int on_grow(struct tmd *d, struct tmd_lent *l, const struct tmw_grow *g)
{
    struct tmd_lender *ld = L(d);
    int kind = (int)g->kind;
    uint64_t u = g->unit;
    l->last_ask_ms = tmd_now_ms();
    if (kind < 0 || kind > 1 || u >= l->nunits[kind] || l->state[kind][u] != U_FREE) {
        l->st.bad++;
        ld->tot.bad++;
        return -EINVAL;
    }
    if (l->frozen)
        return -ENOMEM;
    if (kind == 1 && l->cap_pages &&
        (l->lent[1] + 1) * (l->unit / TMEM_PAGE_SIZE) >
            l->cap_pages + l->unit / TMEM_PAGE_SIZE - 1) {
        l->st.refused++;
        return -EDQUOT;
    }
    if (kind == 1 && over_uid_share_locked(d, l)) {
        l->st.refused++;
        ld->tot.refused++;
        if (!l->said_share) {
            l->said_share = true;
            tmd_log(LOG_NOTICE, "client %u (uid %u \"%s\"): its uid holds its persistent share "
                    "(%" PRIu64 " MiB, memory.uid_persistent_max): persistent puts refused",
                    l->client_id, (unsigned)l->uid, l->name,
                    tmd_uid_pers_max(d, l->uid) >> 20);
        }
        return -EDQUOT;
    }
    if (!fits_locked(d, l->unit)) {
        l->st.refused++;
        ld->tot.refused++;
        l->wants_room = true;
        if (!reclaim_for_locked(d, l)) {
            /* nobody owes memory: the engine's shared pages give way last */
            size_t got = tmem_evict_npages(d->engine, l->unit / TMEM_PAGE_SIZE);
            tmem_relinquish_pages(d->engine, got);
            if (!fits_locked(d, l->unit))
                return -ENOMEM;
        } else {
            return -ENOMEM;
        }
    }
    int rc = populate(l, kind, u);
    if (rc) {
        l->st.refused++;
        ld->tot.refused++;
        return -ENOMEM;
    }
    set_state(d, l, kind, u, U_LENT);
    l->st.grown++;
    ld->tot.grown++;
    publish_lent(l);
    engine_follow_locked(d);
    if (kind == 1)
        uid_follow_locked(d, l->uid);
    return 0;
}

static void on_units(struct tmd *d, struct tmd_lent *l, uint16_t type, const struct tmw_units *m)
{
    struct tmd_lender *ld = L(d);
    int kind = type == TMW_MSG_CLEANED ? 0 : (int)m->kind;
    bool any = false;
    for (uint32_t i = 0; i < m->n; i++) {
        uint64_t u = m->unit[i];
        if (kind < 0 || kind > 1 || u >= l->nunits[kind]) {
            l->st.bad++;
            ld->tot.bad++;
            continue;
        }
        if (type == TMW_MSG_RETURN && l->state[kind][u] == U_LENT) {
            punch(l, kind, u);
            set_state(d, l, kind, u, U_FREE);
            l->st.returned++;
            ld->tot.returned++;
            any = true;
        } else if (type == TMW_MSG_CLEANED && l->state[kind][u] == U_REVOKED) {
            set_state(d, l, kind, u, U_FREE);
        } else {
            l->st.bad++;            /* not its own, or not in that state: nothing happens */
            ld->tot.bad++;
        }
    }
    if (any) {
        if (l->shrink_want && l->shrink_base - l->lent[0] >= l->shrink_want)
            l->shrink_want = 0;     /* done in time */
        publish_lent(l);
        engine_follow_locked(d);
        if (kind == 1) {
            uid_follow_locked(d, l->uid);
            l->said_share = false;
        }
        wake_waiters_locked(d);
    }
}

int tmd_lend_msg(struct tmd *d, struct tmd_lent *l, const void *buf, size_t len, const char **why)
{
    const struct tmw_msg *m = buf;
    if (len < sizeof(*m) || m->magic != TMW_MAGIC || m->version != TMW_VERSION || m->len != len) {
        *why = "malformed message";
        return -EPROTO;
    }
    struct tmd_lender *ld = L(d);
    switch (m->type) {
    case TMW_MSG_GROW: {
        if (len != sizeof(struct tmw_grow)) {
            *why = "malformed GROW";
            return -EPROTO;
        }
        struct tmw_grow g;
        memcpy(&g, buf, sizeof(g));
        pthread_mutex_lock(&ld->lock);
        int rc = on_grow(d, l, &g);
        g.m.type = TMW_MSG_GROW_REPLY;
        g.m.result = rc;
        send_to(l, &g, sizeof(g));
        pthread_mutex_unlock(&ld->lock);
        return 0;
    }
    case TMW_MSG_RETURN:
    case TMW_MSG_CLEANED: {
        const struct tmw_units *u = buf;
        if (len < sizeof(*u) || u->n == 0 || u->n > TMW_UNITS_MAX ||
            len != sizeof(*u) + (size_t)u->n * sizeof(uint32_t)) {
            *why = "malformed unit list";
            return -EPROTO;
        }
        pthread_mutex_lock(&ld->lock);
        on_units(d, l, m->type, u);
        pthread_mutex_unlock(&ld->lock);
        return 0;
    }
    default:
        *why = "unexpected message";
        return -EPROTO;
    }
}

/* ------------------------------------------------------------------------
 * Deadlines, the limit, taking memory back
 * ---------------------------------------------------------------------- */
unsigned tmd_lend_tick(struct tmd *d)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return 1000;
    uint64_t now = tmd_now_ms(), next = now + 1000;
    pthread_mutex_lock(&ld->lock);
    for (struct tmd_lent *l = ld->head.next; l != &ld->head; l = l->next) {
        if (!l->shrink_want)
            continue;
        uint64_t given = l->shrink_base > l->lent[0] ? l->shrink_base - l->lent[0] : 0;
        if (given >= l->shrink_want) {
            l->shrink_want = 0;
            continue;
        }
        if (now < l->shrink_deadline_ms) {
            if (l->shrink_deadline_ms < next)
                next = l->shrink_deadline_ms;
            continue;
        }
        uint64_t missing = l->shrink_want - given;
        l->shrink_want = 0;
        l->st.shrinks_missed++;
        revoke_locked(d, l, missing, "it did not give them back in time");
        wake_waiters_locked(d);
    }
    pthread_mutex_unlock(&ld->lock);
    return (unsigned)(next - now);
}

/* Asks for ephemeral units back until want bytes are coming (lend_lock
 * held): the victims the policy picks first, then everyone with any. */
static uint64_t reclaim_bytes_locked(struct tmd *d, uint64_t want)
{
    struct tmd_lender *ld = L(d);
    uint64_t asked = 0;
    /* first about a half of what each holds, then the rest, in order */
    for (int round = 0; round < 2 && asked < want; round++) {
        for (struct tmd_lent *l = ld->head.next; l != &ld->head && asked < want; l = l->next) {
            uint64_t n = (want - asked + l->unit - 1) / l->unit;
            if (round == 0 && n > (l->lent[0] + 1) / 2)
                n = (l->lent[0] + 1) / 2;
            asked += ask_shrink_locked(d, l, n) * l->unit;
        }
    }
    return asked;
}

int tmd_lend_set_limit(struct tmd *d, uint64_t limit)
{
    struct tmd_lender *ld = L(d);
    if (!ld)                    /* no lender (the daemon's parts in a unit test) */
        return tmem_set_max_bytes(d->engine, limit);
    pthread_mutex_lock(&ld->lock);
    ld->limit = limit;
    tmem_stats_t s;
    tmem_stats_get(d->engine, &s);
    uint64_t lent = lent_bytes_locked(ld), floor = engine_floor(ld);
    if (lent + floor > limit)
        reclaim_bytes_locked(d, lent + floor - limit);
    uint64_t max = limit > lent + floor ? limit - lent : floor;
    int rc = tmem_set_max_bytes(d->engine, max);
    wake_waiters_locked(d);
    pthread_mutex_unlock(&ld->lock);
    return rc;
}

uint64_t tmd_lend_take_back(struct tmd *d, uint64_t bytes)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return 0;
    pthread_mutex_lock(&ld->lock);
    uint64_t all = ld->lent_bytes[0], asked = reclaim_bytes_locked(d, bytes);
    if (bytes >= all) {
        /* everything: every client evicts every ephemeral page, also pages
         * that hold no memory (pages of one repeated word), as an engine
         * asked to evict everything does; the SHRINKs above may have asked
         * a client for less than it holds (part of it was owed already) */
        for (struct tmd_lent *l = ld->head.next; l != &ld->head; l = l->next) {
            struct tmw_shrink m;
            msg_init(&m.m, TMW_MSG_SHRINK, sizeof(m), 0);
            m.kind = 0;
            m.n = UINT32_MAX;
            m.deadline_ms = TMD_CFG(d, shrink_deadline_ms);
            m.reserved_ = 0;
            send_to(l, &m, sizeof(m));
        }
    }
    pthread_mutex_unlock(&ld->lock);
    return asked;
}

/* ------------------------------------------------------------------------
 * Figures and settings
 * ---------------------------------------------------------------------- */
void tmd_lend_retired(struct tmd *d, tmem_stats_t *e)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
#define RETIRED_ADD(f) e->f += ld->retired[TMW_REP_##f];
    RETIRED_FIELDS(RETIRED_ADD)
#undef RETIRED_ADD
    pthread_mutex_unlock(&ld->lock);
}

void tmd_lend_totals(struct tmd *d, struct tmd_lend_totals *out)
{
    struct tmd_lender *ld = L(d);
    memset(out, 0, sizeof(*out));
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
    *out = ld->tot;
    out->lent_bytes[0] = ld->lent_bytes[0];
    out->lent_bytes[1] = ld->lent_bytes[1];
    out->limit = ld->limit;
    pthread_mutex_unlock(&ld->lock);
}

/* A figure of the report: at most what its memory could hold, many times. */
static uint64_t clamp(uint64_t v, uint64_t max)
{
    return v > max ? max : v;
}

void tmd_lend_refresh(struct tmd *d, unsigned wait_ms)
{
    struct tmd_lender *ld = L(d);
    if (!ld)
        return;
    pthread_mutex_lock(&ld->lock);
    uint64_t req = ++ld->report_seq;
    for (struct tmd_lent *l = ld->head.next; l != &ld->head; l = l->next) {
        atomic_store(&l->share->report_req, req);
        struct tmw_msg m;
        msg_init(&m, TMW_MSG_REPORT, sizeof(m), 0);
        send_to(l, &m, sizeof(m));
    }
    pthread_mutex_unlock(&ld->lock);
    /* answers, or the wait's end: a client that does not answer keeps its
     * last report */
    for (unsigned waited = 0; waited < wait_ms; waited++) {
        bool all = true;
        pthread_mutex_lock(&ld->lock);
        for (struct tmd_lent *l = ld->head.next; l != &ld->head && all; l = l->next)
            all = atomic_load(&l->share->report_ack) >= req;
        pthread_mutex_unlock(&ld->lock);
        if (all)
            return;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

void tmd_lend_report(struct tmd *d, struct tmd_lent *l, struct tmd_lend_client *out)
{
    struct tmd_lender *ld = L(d);
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&ld->lock);
    out->lent_bytes[0] = l->lent[0] * l->unit;
    out->lent_bytes[1] = l->lent[1] * l->unit;
    out->st = l->st;
    out->weight = l->weight;
    /* the report: a copy taken between two equal even seq values, else the
     * last try's (it is what the client says, clamped either way) */
    const struct tmw_share *s = l->share;
    const size_t from = offsetof(struct tmw_share, oldest_eph_ms);
    struct tmw_share c;
    for (int tries = 0; tries < 4; tries++) {
        uint32_t a = atomic_load_explicit(&s->seq, memory_order_acquire);
        memcpy((char *)&c + from, (const char *)s + from, sizeof(c) - from);
        atomic_thread_fence(memory_order_acquire);
        uint32_t b = atomic_load_explicit(&s->seq, memory_order_relaxed);
        if (a == b && !(a & 1))
            break;
    }
    pthread_mutex_unlock(&ld->lock);
    uint64_t huge = 1ull << 48;     /* no real count comes near it */
    out->oldest_eph_ms = clamp(c.oldest_eph_ms, huge);
    out->dropped = clamp(c.dropped, huge);
    out->evicted = clamp(c.client_evicted, huge);
    out->compressed_pages = clamp(c.compressed_pages, huge);
    out->compressed_bytes = clamp(c.compressed_bytes, huge);
    for (unsigned i = 0; i < TMW_REP_COUNT; i++)
        out->rep[i] = clamp(c.rep[i], huge);
    out->rep[TMW_REP_pools] = clamp(out->rep[TMW_REP_pools], TMEM_MAX_POOLS);
}

void tmd_lend_set(struct tmd *d, struct tmd_lent *l, const struct tmd_lend_setting *st)
{
    struct tmd_lender *ld = L(d);
    pthread_mutex_lock(&ld->lock);
    struct tmw_set m;
    memset(&m, 0, sizeof(m));
    msg_init(&m.m, TMW_MSG_SET, sizeof(m), 0);
    if (st->mask & TMD_LEND_SET_WEIGHT) {
        l->weight = st->weight;
        m.mask |= TMW_SETC_WEIGHT;
        m.weight = st->weight;
    }
    if (st->mask & TMD_LEND_SET_FREEZE) {
        l->frozen = st->frozen;
        m.mask |= TMW_SETC_FREEZE;
        m.frozen = st->frozen;
    }
    if (st->mask & TMD_LEND_SET_CAP) {
        l->cap_pages = st->cap;
        m.mask |= TMW_SETC_CAP;
        m.cap = st->cap;
    }
    if (st->mask & TMD_LEND_SET_COMPRESS) {
        m.mask |= TMW_SETC_COMPRESS;
        m.compress = st->compress;
    }
    uint64_t req = 0;
    if (m.mask) {
        /* then a REPORT: its answer says the settings are in force */
        send_to(l, &m, sizeof(m));
        req = ++ld->report_seq;
        atomic_store(&l->share->report_req, req);
        struct tmw_msg r;
        msg_init(&r, TMW_MSG_REPORT, sizeof(r), 0);
        send_to(l, &r, sizeof(r));
    }
    pthread_mutex_unlock(&ld->lock);
    for (unsigned ms = 0; req && ms < 100; ms++) {
        if (atomic_load(&l->share->report_ack) >= req)
            break;
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* ------------------------------------------------------------------------
 * Streams with a client (its connection borrowed: tmd_conn_borrow, or the
 * listener's own at a HELLO): its save, its tmem-list lines, a parked
 * client's pools restored into it.  Lent-memory messages that come
 * meanwhile are served as the listener would.
 * ---------------------------------------------------------------------- */
#define STREAM_IDLE_MS 10000u           /* a client silent this long: given up */

struct stream {
    struct tmd *d;
    struct tmd_lent *l;
    int fd;
    uint8_t *buf;                       /* TMW_MSG_MAX: messages in */
    uint8_t *out;                       /* TMW_MSG_MAX: messages out */
    int violation;                      /* the client broke the protocol */
};

/* Reads one message (waiting up to STREAM_IDLE_MS): its length, 0 at the
 * end, -ETIMEDOUT, or -errno. */
static ssize_t stream_recv(struct stream *s)
{
    struct pollfd p = { s->fd, POLLIN, 0 };
    int n = poll(&p, 1, (int)STREAM_IDLE_MS);
    if (n == 0)
        return -ETIMEDOUT;
    if (n < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    ssize_t len = recv(s->fd, s->buf, TMW_MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
    if (len < 0)
        return errno == EAGAIN || errno == EINTR ? -EAGAIN : -errno;
    return len > (ssize_t)TMW_MSG_MAX ? -EPROTO : len;
}

/* A message that is not the stream's: the lent-memory ones are served;
 * anything else breaks the protocol (the connection is shut down, which
 * the listener sees once it has it back). */
static int stream_other(struct stream *s, size_t len)
{
    const char *why = "unexpected message";
    if (tmd_lend_msg(s->d, s->l, s->buf, len, &why) == 0)
        return 0;
    tmd_log_limited(LOG_WARNING, "protocol", s->l->uid,
                    "client %u: protocol violation during a stream (%s)", s->l->client_id, why);
    s->violation = 1;
    shutdown(s->fd, SHUT_RDWR);
    return -EPROTO;
}

static bool stream_header_ok(const struct stream *s, size_t len)
{
    const struct tmw_msg *m = (const void *)s->buf;
    return len >= sizeof(*m) && m->magic == TMW_MAGIC && m->version == TMW_VERSION &&
           m->len == len;
}

int64_t tmd_lend_stream_in(struct tmd *d, struct tmd_lent *l, int fd, uint16_t req_type,
                           int32_t req_arg, int (*sink)(void *arg, const void *p, size_t len),
                           void *arg)
{
    struct stream s = { d, l, fd, malloc(TMW_MSG_MAX), NULL, 0 };
    if (!s.buf)
        return -ENOMEM;
    struct tmw_msg req;
    msg_init(&req, req_type, sizeof(req), req_arg);
    int64_t rc = send(fd, &req, sizeof(req), MSG_NOSIGNAL) == (ssize_t)sizeof(req) ? 0 : -EPIPE;
    int sink_err = 0;
    while (rc == 0) {
        ssize_t len = stream_recv(&s);
        if (len == -EAGAIN)
            continue;
        if (len <= 0) {
            rc = len == 0 ? -ECONNRESET : len;
            break;
        }
        const struct tmw_msg *m = (const void *)s.buf;
        if (stream_header_ok(&s, (size_t)len) && m->type == TMW_MSG_DATA) {
            if (!sink_err)      /* after a failed write, the rest is read and dropped */
                sink_err = sink(arg, s.buf + sizeof(*m), (size_t)len - sizeof(*m));
            continue;
        }
        if (stream_header_ok(&s, (size_t)len) && m->type == TMW_MSG_END && len == sizeof(*m)) {
            rc = sink_err ? sink_err : m->result;
            if (rc == 0)
                rc = 0;
            break;
        }
        if (stream_other(&s, (size_t)len) != 0)
            rc = -EPROTO;
    }
    free(s.buf);
    return rc == 0 ? 0 : rc;
}

/* Waits until fd may take a message, serving what comes in meanwhile. */
static int stream_wait_out(struct stream *s)
{
    for (;;) {
        struct pollfd p = { s->fd, POLLIN | POLLOUT, 0 };
        int n = poll(&p, 1, (int)STREAM_IDLE_MS);
        if (n == 0)
            return -ETIMEDOUT;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p.revents & POLLIN) {
            ssize_t len = recv(s->fd, s->buf, TMW_MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
            if (len == 0)
                return -ECONNRESET;
            if (len > 0 && (len > (ssize_t)TMW_MSG_MAX || stream_other(s, (size_t)len) != 0))
                return -EPROTO;
            continue;
        }
        if (p.revents & (POLLHUP | POLLERR))
            return -ECONNRESET;
        if (p.revents & POLLOUT)
            return 0;
    }
}

static int stream_send(struct stream *s, const void *m, size_t len)
{
    for (;;) {
        int rc = stream_wait_out(s);
        if (rc)
            return rc;
        ssize_t n = send(s->fd, m, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n == (ssize_t)len)
            return 0;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}

static int restore_write(void *arg, const void *p, size_t len)
{
    struct stream *s = arg;
    const size_t room = TMW_MSG_MAX - sizeof(struct tmw_msg);
    for (size_t at = 0; at < len; at += room) {
        size_t k = len - at < room ? len - at : room;
        msg_init((struct tmw_msg *)(void *)s->out, TMW_MSG_DATA,
                 (uint32_t)(sizeof(struct tmw_msg) + k), 0);
        memcpy(s->out + sizeof(struct tmw_msg), (const uint8_t *)p + at, k);
        int rc = stream_send(s, s->out, sizeof(struct tmw_msg) + k);
        if (rc)
            return rc;
    }
    return 0;
}

int64_t tmd_lend_restore(struct tmd *d, struct tmd_lent *l, int fd, uint32_t parked_id)
{
    struct stream s = { d, l, fd, malloc(TMW_MSG_MAX), malloc(TMW_MSG_MAX), 0 };
    int64_t rc = -ENOMEM;
    if (s.buf && s.out) {
        rc = tmem_client_save(d->engine, parked_id, restore_write, &s);
        struct tmw_msg end;
        msg_init(&end, TMW_MSG_END, sizeof(end), rc < 0 ? (int32_t)rc : 0);
        if (!s.violation && stream_send(&s, &end, sizeof(end)) == 0) {
            /* the client's END: what it restored */
            for (;;) {
                ssize_t len = stream_recv(&s);
                if (len == -EAGAIN)
                    continue;
                if (len <= 0) {
                    rc = len == 0 ? -ECONNRESET : len;
                    break;
                }
                const struct tmw_msg *m = (const void *)s.buf;
                if (stream_header_ok(&s, (size_t)len) && m->type == TMW_MSG_END &&
                    len == sizeof(*m)) {
                    rc = rc < 0 ? rc : m->result;
                    break;
                }
                if (stream_other(&s, (size_t)len) != 0) {
                    rc = -EPROTO;
                    break;
                }
            }
        } else if (rc >= 0) {
            rc = -EPIPE;
        }
    }
    free(s.buf);
    free(s.out);
    return rc;
}

uint64_t tmd_lend_stream_bound(struct tmd *d, struct tmd_lent *l)
{
    struct tmd_lend_client r;
    tmd_lend_report(d, l, &r);
    /* its persistent pages (as it says them, or as its units could hold
     * at 16 a frame), each whole with its handle, and some settings */
    uint64_t by_units = r.lent_bytes[1] / TMEM_PAGE_SIZE * 16;
    uint64_t pages = r.rep[TMW_REP_persistent_pages] > by_units ? r.rep[TMW_REP_persistent_pages]
                                                                 : by_units;
    return pages * (TMEM_PAGE_SIZE + 64) + (4u << 20);
}
