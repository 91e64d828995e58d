/* SPDX-License-Identifier: MIT */
/*
 * lend.c - lent memory, the client's side (docs/protocol.md, "Lent
 * memory"): the handle's engine runs over the two arenas tmemd passed at
 * the HELLO, as its memory source (tmem/arena.h); the service thread reads
 * every message from the daemon; the job thread runs what holds the
 * client's calls off (giving units back, units taken by force) and the
 * save and restore streams.
 *
 * The source's grow() is the GROW round trip: the calling thread sends it
 * and waits for the service thread to hand it the reply (one in flight at a
 * time: grow_lock; a reply is matched to its request through grow_want,
 * under reply_lock, so that a reply is taken or its request given up once:
 * a late reply to a request given up (the connection ended, or 5 s passed)
 * is never taken for another's, and a unit granted that way is given
 * back).  After a refusal the source says
 * no at once for GROW_QUIET_NS, or until a WAKE.
 *
 * Every TMC_PERIOD_MS the service thread writes the report into the shared
 * page (a seqlock) and gives back free units beyond TMC_FREE_SLACK per kind.
 *
 * When the socket ends, the window is broken (calls on the daemon's pools
 * return -ENOTCONN) and, unless the daemon ended the client (its shared
 * page says TMW_EPOCH_ENDED: every call fails), the service thread connects again every
 * TMC_PERIOD_MS, handing the arenas back (tmc_hello with adopt): the
 * private pools never stop working meanwhile.  Before that it checks its
 * arenas for revocations it was never told of (a unit it holds with a hole
 * in it was punched), and after it gives back any unit the new daemon
 * found populated that the engine does not hold.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/conn.h"
#include "proto/futex.h"

#define TMC_PERIOD_MS   100
#define TMC_FREE_SLACK  2u                  /* free units a kind keeps */
#define GROW_QUIET_NS   50000000ull         /* 50 ms */
#define GROW_WAIT_NS    5000000000ull       /* a GROW_REPLY later than 5 s: given up */

enum tmc_job_type { JOB_SHRINK, JOB_REVOKED, JOB_SAVE, JOB_RESTORE, JOB_LIST, JOB_REPORT,
                    JOB_PERIODIC };

struct tmc_job {
    struct tmc_job *next;
    int type;
    uint32_t kind, n;
    uint64_t epoch;
    uint32_t unit[];
};

/* a parked client's stream, queued by the service thread for the restore */
struct tmc_data {
    struct tmc_data *next;
    size_t len, pos;
    uint8_t bytes[];
};

static void msg_init(struct tmw_msg *m, uint16_t type, uint32_t len, int32_t result)
{
    *m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, type, len, result };
}

/* ------------------------------------------------------------------------
 * The shared page
 * ---------------------------------------------------------------------- */
int tmc_share_open(struct tmc *h)
{
    int fd = memfd_create("tmem-share", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, TMW_SHARE_SIZE) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    void *p = mmap(NULL, TMW_SHARE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        int e = -errno;
        close(fd);
        return e;
    }
    madvise(p, TMW_SHARE_SIZE, MADV_DONTFORK);
    h->share_fd = fd;
    h->share = p;
    return 0;
}

/* ------------------------------------------------------------------------
 * The memory source
 * ---------------------------------------------------------------------- */
static int src_attach(void *arg, int kind, void *base, size_t len)
{
    struct tmc *h = arg;
    if (len != h->arena_bytes[kind])
        return -EINVAL;
    void *p = mmap(base, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                   h->arena_fd[kind], 0);
    if (p == MAP_FAILED)
        return -errno;
    madvise(p, len, MADV_DONTFORK);         /* a child of fork must not share it */
    return 0;
}

static uint64_t want_key(int kind, size_t unit)
{
    return ((uint64_t)kind << 32 | (uint64_t)unit) + 1;
}

static int src_grow(void *arg, int kind, size_t unit)
{
    struct tmc *h = arg;
    if (!atomic_load(&h->connected) || atomic_load(&h->stopping))
        return -ENOTCONN;
    if (unit > UINT32_MAX)
        return -EINVAL;
    uint64_t now = tm_now_ns();
    if (now < atomic_load(&h->grow_quiet_until) && !atomic_load(&h->woken))
        return -ENOMEM;                     /* refused a moment ago */
    pthread_mutex_lock(&h->grow_lock);
    uint32_t seq = atomic_load(&h->grow_seq);
    uint64_t key = want_key(kind, unit);
    pthread_mutex_lock(&h->reply_lock);
    h->grow_want = key;
    pthread_mutex_unlock(&h->reply_lock);
    atomic_store(&h->woken, 0);
    struct tmw_grow m;
    msg_init(&m.m, TMW_MSG_GROW, sizeof(m), 0);
    m.kind = (uint32_t)kind;
    m.unit = (uint32_t)unit;
    int rc = tmc_send(h, &m, sizeof(m));
    uint64_t until = now + GROW_WAIT_NS;
    while (rc == 0 && atomic_load(&h->grow_seq) == seq) {
        if (!atomic_load(&h->connected) || tm_now_ns() > until)
            break;
        tm_futex_wait(&h->grow_seq, seq, 100000000u);
    }
    /* the reply was taken (grow_want cleared, grow_result set), or it never
     * will be: the request is given up here, and a late reply is not ours
     * (the service thread gives its unit back) */
    pthread_mutex_lock(&h->reply_lock);
    if (h->grow_want == key) {
        h->grow_want = 0;
        if (rc == 0)
            rc = atomic_load(&h->connected) ? -ETIMEDOUT : -ENOTCONN;
    } else if (rc == 0) {
        rc = h->grow_result;
    }
    pthread_mutex_unlock(&h->reply_lock);
    pthread_mutex_unlock(&h->grow_lock);
    if (rc == -ENOMEM || rc == -EDQUOT)
        atomic_store(&h->grow_quiet_until, now + GROW_QUIET_NS);
    return rc;
}

static void send_units(struct tmc *h, uint16_t type, uint32_t kind, const uint32_t *u, size_t n)
{
    size_t max = TMW_UNITS_MAX;
    uint8_t buf[sizeof(struct tmw_units) + TMW_UNITS_MAX * sizeof(uint32_t)];
    struct tmw_units *m = (struct tmw_units *)(void *)buf;
    for (size_t at = 0; at < n; at += max) {
        size_t k = n - at < max ? n - at : max;
        uint32_t len = (uint32_t)(sizeof(*m) + k * sizeof(uint32_t));
        msg_init(&m->m, type, len, 0);
        m->kind = kind;
        m->n = (uint32_t)k;
        m->epoch = 0;
        memcpy(m->unit, u + at, k * sizeof(uint32_t));
        tmc_send(h, m, len);
    }
}

static void pending_add(uint32_t **v, size_t *n, size_t *cap, uint32_t u)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        uint32_t *nv = realloc(*v, nc * sizeof(*nv));
        if (!nv)
            return;     /* the unit stays populated: the next daemon counts it */
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = u;
}

static void src_shrink(void *arg, int kind, size_t unit)
{
    struct tmc *h = arg;
    uint32_t u = (uint32_t)unit;
    if (atomic_load(&h->connected)) {
        send_units(h, TMW_MSG_RETURN, (uint32_t)kind, &u, 1);
        return;
    }
    pthread_mutex_lock(&h->jobs_lock);      /* told to the next daemon */
    pending_add(&h->pending_ret[kind], &h->npending_ret[kind], &h->cap_pending_ret[kind], u);
    pthread_mutex_unlock(&h->jobs_lock);
}

static void src_cleaned(void *arg, int kind, size_t unit)
{
    struct tmc *h = arg;        /* the job thread runs the revocation: its list */
    (void)kind;
    pending_add(&h->cleaned, &h->ncleaned, &h->cap_cleaned, (uint32_t)unit);
}

static const tmem_arena_ops_t src_ops = {
    .attach = src_attach, .grow = src_grow, .shrink = src_shrink, .cleaned = src_cleaned,
};

int tmc_lend_open(struct tmc *h, const struct tmw_hello_reply *rep, const int fds[3])
{
    h->arena_fd[0] = fds[1];
    h->arena_fd[1] = fds[2];
    /* arenas that could shrink under our mappings would fault our calls:
     * each at least the size said, sealed against shrinking */
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        struct stat st;
        int seals = fcntl(fds[1 + k], F_GET_SEALS);
        if (fstat(fds[1 + k], &st) != 0 || st.st_size < 0 ||
            (uint64_t)st.st_size < rep->arena_bytes[k] || seals < 0 || !(seals & F_SEAL_SHRINK))
            return -EPROTO;
    }
    h->arena_bytes[0] = rep->arena_bytes[0];
    h->arena_bytes[1] = rep->arena_bytes[1];
    h->unit_bytes = rep->unit_bytes;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.compress = rep->compress;
    cfg.zstd_level = rep->zstd_level;
    cfg.compress_max = rep->compress_max;
    cfg.dedup = rep->dedup != 0;
    cfg.default_cap = rep->cap;
    tmem_arena_t a = { &src_ops, h, { rep->arena_bytes[0], rep->arena_bytes[1] },
                       (unsigned)(rep->unit_bytes / TMEM_PAGE_SIZE), &h->share->revoke_epoch };
    h->engine = tmem_open_arena(&cfg, &a);
    if (!h->engine)
        return errno ? -errno : -EPROTO;
    h->local = tmem_client_open(h->engine, h->name);
    if (!h->local)
        return -ENOMEM;
    if (rep->frozen)
        tmem_admin_freeze(h->engine, tmem_client_id(h->local));
    return 0;
}

void tmc_lend_close(struct tmc *h)
{
    if (h->engine)
        tmem_close(h->engine);          /* the local client, then the arenas unmapped */
    h->engine = NULL;
    h->local = NULL;
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        if (h->arena_fd[k] >= 0)
            close(h->arena_fd[k]);
        h->arena_fd[k] = -1;
        free(h->pending_ret[k]);
        h->pending_ret[k] = NULL;
    }
    free(h->cleaned);
    h->cleaned = NULL;
    if (h->share)
        munmap(h->share, TMW_SHARE_SIZE);
    h->share = NULL;
    if (h->share_fd >= 0)
        close(h->share_fd);
    h->share_fd = -1;
}

/* ------------------------------------------------------------------------
 * The report, and free units given back
 * ---------------------------------------------------------------------- */
static void report(struct tmc *h)
{
    tmem_client_info_t ci;
    tmem_arena_info_t ai;
    tmem_stats_t st;
    if (tmem_client_info(h->engine, tmem_client_id(h->local), &ci) != 0 ||
        tmem_arena_get_info(h->engine, &ai) != 0 || tmem_stats_get(h->engine, &st) != 0)
        return;
    struct tmw_share *s = h->share;
    pthread_mutex_lock(&h->report_lock);        /* the service and job threads */
    uint32_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
    atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);     /* odd: writing */
    atomic_thread_fence(memory_order_release);
    s->oldest_eph_ms = ai.oldest_ephemeral_ms;
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        s->units[k] = ai.units[k];
        s->free_units[k] = ai.free_units[k];
    }
    s->dropped = ai.dropped_pages;
    s->client_evicted = ci.evicted;
    s->compressed_pages = ci.compressed_pages;
    s->compressed_bytes = ci.compressed_bytes;
#define REP_SET(f) s->rep[TMW_REP_##f] = st.f;
    TMW_REPORT_FIELDS(REP_SET)
#undef REP_SET
    atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
    pthread_mutex_unlock(&h->report_lock);
}

static void give_back_free(struct tmc *h)
{
    tmem_arena_info_t ai;
    if (tmem_arena_get_info(h->engine, &ai) != 0)
        return;
    /* tmem_relinquish_pages gives whole free units back through
     * src_shrink, ephemeral first, without holding the calls off */
    uint64_t extra = 0;
    for (int k = 0; k < TMEM_ARENA_KINDS; k++)
        if (ai.free_units[k] > TMC_FREE_SLACK)
            extra += ai.free_units[k] - TMC_FREE_SLACK;
    if (extra)
        tmem_relinquish_pages(h->engine, (size_t)(extra * (h->unit_bytes / TMEM_PAGE_SIZE)));
}

/* ------------------------------------------------------------------------
 * Jobs (the job thread)
 * ---------------------------------------------------------------------- */
static void job_push(struct tmc *h, struct tmc_job *j)
{
    j->next = NULL;
    pthread_mutex_lock(&h->jobs_lock);
    if (h->job_tail)
        h->job_tail->next = j;
    else
        h->job_head = j;
    h->job_tail = j;
    pthread_cond_signal(&h->jobs_cond);
    pthread_mutex_unlock(&h->jobs_lock);
}

static int save_write(void *arg, const void *p, size_t len)
{
    struct tmc *h = arg;
    uint8_t *buf = malloc(TMW_MSG_MAX);
    if (!buf)
        return -ENOMEM;
    const size_t room = TMW_MSG_MAX - sizeof(struct tmw_msg);
    int rc = 0;
    for (size_t at = 0; at < len && rc == 0; at += room) {
        size_t k = len - at < room ? len - at : room;
        msg_init((struct tmw_msg *)(void *)buf, TMW_MSG_DATA,
                 (uint32_t)(sizeof(struct tmw_msg) + k), 0);
        memcpy(buf + sizeof(struct tmw_msg), (const uint8_t *)p + at, k);
        rc = tmc_send(h, buf, sizeof(struct tmw_msg) + k);
    }
    free(buf);
    return rc;
}

/* The restore's reader: the bytes the service thread queued. */
static int restore_read(void *arg, void *out, size_t len)
{
    struct tmc *h = arg;
    uint8_t *o = out;
    pthread_mutex_lock(&h->restore_lock);
    while (len > 0) {
        while (!h->data_head && h->restore_state == 1 && !atomic_load(&h->stopping))
            pthread_cond_wait(&h->restore_cond, &h->restore_lock);
        struct tmc_data *d = h->data_head;
        if (!d) {
            pthread_mutex_unlock(&h->restore_lock);
            return -EIO;        /* the stream ended short */
        }
        size_t k = d->len - d->pos < len ? d->len - d->pos : len;
        memcpy(o, d->bytes + d->pos, k);
        d->pos += k;
        o += k;
        len -= k;
        if (d->pos == d->len) {
            h->data_head = d->next;
            if (!h->data_head)
                h->data_tail = NULL;
            free(d);
        }
    }
    pthread_mutex_unlock(&h->restore_lock);
    return 0;
}

static void run_restore(struct tmc *h)
{
    int64_t rc = tmem_client_restore(h->local, restore_read, h);
    /* The daemon's END follows its last DATA, and ours answers it.  The
     * restore returns once it has read the stream's own end (in that last
     * DATA), or earlier on an error: the daemon's END, and after an error
     * more DATA, may still be on their way.  They are the stream's: from
     * here the service thread drops the DATA, and we answer once it has
     * taken the END (or the connection has ended).  Otherwise that END
     * would reach a client no longer restoring, which ends the connection
     * as one with a daemon that speaks nonsense. */
    pthread_mutex_lock(&h->restore_lock);
    h->restore_read_all = true;
    while (h->data_head) {         /* what a failed restore did not read */
        struct tmc_data *d = h->data_head;
        h->data_head = d->next;
        free(d);
    }
    h->data_tail = NULL;
    while (h->restore_state == 1 && !atomic_load(&h->stopping))
        pthread_cond_wait(&h->restore_cond, &h->restore_lock);   /* disconnect() ends it too */
    pthread_mutex_unlock(&h->restore_lock);
    /* its pools, at their ids */
    pthread_rwlock_wrlock(&h->pools_lock);
    for (uint32_t i = 0; i < TMEM_MAX_POOLS; i++)
        if (tmem_pool_is_shared(h->local, i) >= 0)
            atomic_store(&h->pools[i].where, TMC_LOCAL);
    pthread_rwlock_unlock(&h->pools_lock);
    struct tmw_msg end;
    msg_init(&end, TMW_MSG_END, sizeof(end), rc < 0 ? (int32_t)rc : (int32_t)(rc > INT32_MAX ? INT32_MAX : rc));
    tmc_send(h, &end, sizeof(end));
    pthread_mutex_lock(&h->restore_lock);
    h->restore_state = 3;
    h->restore_result = rc < 0 ? (int)rc : 0;
    pthread_cond_broadcast(&h->restore_cond);
    pthread_mutex_unlock(&h->restore_lock);
}

/* The tmem-list lines of the private pools (C= and P=), under the
 * daemon's id for this client: DATA, then END. */
static void run_list(struct tmc *h, int long_form)
{
    uint32_t local = tmem_client_id(h->local), id = atomic_load(&h->id);
    size_t size = tmem_list(h->engine, local, long_form, NULL, 0) + 1;
    char *text = malloc(size), *out = malloc(size + 4096);
    int rc = -ENOMEM;
    if (text && out) {
        tmem_list(h->engine, local, long_form, text, size);
        char from[32], to[32];
        snprintf(from, sizeof(from), "CI:%u,", local);
        snprintf(to, sizeof(to), "CI:%u,", id);
        size_t o = 0;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            if (strncmp(line, "C=", 2) != 0 && strncmp(line, "P=", 2) != 0)
                continue;
            if (strncmp(line + 2, from, strlen(from)) != 0)
                continue;
            o += (size_t)snprintf(out + o, size + 4096 - o, "%.2s%s%s\n", line, to,
                                  line + 2 + strlen(from));
            if (o >= size + 4096)
                o = size + 4095;
        }
        rc = save_write(h, out, o);
    }
    free(text);
    free(out);
    struct tmw_msg end;
    msg_init(&end, TMW_MSG_END, sizeof(end), rc);
    tmc_send(h, &end, sizeof(end));
}

/* Drops the units taken by force (tmem_arena_revoked) and tells the
 * daemon which are clean now (CLEANED, when tell).  Under units_lock: the
 * job thread and a reconnection (revoked_unseen) share the list of cleaned
 * units, and a walk giving units back must not run meanwhile. */
static void drop_revoked(struct tmc *h, const uint64_t *units, size_t n, uint64_t epoch, bool tell)
{
    pthread_mutex_lock(&h->units_lock);
    h->ncleaned = 0;
    tmem_arena_revoked(h->engine, units, n, epoch);
    if (tell && h->ncleaned)
        send_units(h, TMW_MSG_CLEANED, TMEM_ARENA_EPHEMERAL, h->cleaned, h->ncleaned);
    pthread_mutex_unlock(&h->units_lock);
}

static void run_job(struct tmc *h, struct tmc_job *j)
{
    switch (j->type) {
    case JOB_SHRINK: {
        /* all it holds of a kind: every page of it goes (pages that need
         * no memory too, as when the engine is asked to evict everything) */
        tmem_arena_info_t ai;
        pthread_mutex_lock(&h->units_lock);
        if (j->kind == TMEM_ARENA_EPHEMERAL && tmem_arena_get_info(h->engine, &ai) == 0 &&
            j->n >= ai.units[TMEM_ARENA_EPHEMERAL])
            tmem_evict_npages(h->engine, SIZE_MAX);
        tmem_arena_shrink(h->engine, (int)j->kind, j->n, NULL);     /* RETURNs as it goes */
        pthread_mutex_unlock(&h->units_lock);
        break;
    }
    case JOB_REVOKED: {
        uint64_t *u = malloc((j->n ? j->n : 1) * sizeof(*u));
        if (!u)
            break;          /* gets go on missing; nothing wrong is read */
        for (uint32_t i = 0; i < j->n; i++)
            u[i] = j->unit[i];
        drop_revoked(h, u, j->n, j->epoch, true);
        free(u);
        break;
    }
    case JOB_SAVE: {
        int64_t rc = tmem_client_save(h->engine, tmem_client_id(h->local), save_write, h);
        struct tmw_msg end;
        msg_init(&end, TMW_MSG_END, sizeof(end),
                 rc < 0 ? (int32_t)rc : (int32_t)(rc > INT32_MAX ? INT32_MAX : rc));
        tmc_send(h, &end, sizeof(end));
        break;
    }
    case JOB_RESTORE:
        run_restore(h);
        break;
    case JOB_LIST:
        run_list(h, (int)j->kind);
        break;
    case JOB_REPORT:
        report(h);
        atomic_store(&h->share->report_ack, atomic_load(&h->share->report_req));
        break;
    case JOB_PERIODIC:
        report(h);
        if (atomic_load(&h->connected)) {
            pthread_mutex_lock(&h->units_lock);
            give_back_free(h);
            pthread_mutex_unlock(&h->units_lock);
        }
        atomic_store(&h->periodic_queued, 0);
        break;
    }
}

static void *jobs_main(void *arg)
{
    struct tmc *h = arg;
    for (;;) {
        pthread_mutex_lock(&h->jobs_lock);
        while (!h->job_head && !atomic_load(&h->stopping))
            pthread_cond_wait(&h->jobs_cond, &h->jobs_lock);
        struct tmc_job *j = h->job_head;
        if (j) {
            h->job_head = j->next;
            if (!h->job_head)
                h->job_tail = NULL;
        }
        pthread_mutex_unlock(&h->jobs_lock);
        if (!j)
            return NULL;            /* stopping, nothing left */
        if (!atomic_load(&h->stopping))
            run_job(h, j);
        free(j);
    }
}

int tmc_wait_restore(struct tmc *h)
{
    pthread_mutex_lock(&h->restore_lock);
    while (h->restore_state == 1 || h->restore_state == 2)      /* until run_restore ends */
        pthread_cond_wait(&h->restore_cond, &h->restore_lock);
    int rc = h->restore_result;
    pthread_mutex_unlock(&h->restore_lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Messages from the daemon (the service thread)
 * ---------------------------------------------------------------------- */
static struct tmc_job *job_new(int type, uint32_t kind, uint32_t n, uint64_t epoch,
                               const uint32_t *units)
{
    struct tmc_job *j = malloc(sizeof(*j) + (units ? n : 0) * sizeof(uint32_t));
    if (!j)
        return NULL;
    j->type = type;
    j->kind = kind;
    j->n = n;
    j->epoch = epoch;
    if (units)
        memcpy(j->unit, units, n * sizeof(uint32_t));
    return j;
}

/* One message of len bytes.  false: a protocol violation (the connection
 * is given up). */
static bool handle_msg(struct tmc *h, const uint8_t *buf, size_t len)
{
    const struct tmw_msg *m = (const void *)buf;
    if (len < sizeof(*m) || m->magic != TMW_MAGIC || m->version != TMW_VERSION || m->len != len)
        return false;
    bool lend = h->mode == TMW_MODE_LEND;
    switch (m->type) {
    case TMW_MSG_GROW_REPLY: {
        if (!lend || len != sizeof(struct tmw_grow))
            return false;
        const struct tmw_grow *g = (const void *)buf;
        uint64_t key = want_key((int)g->kind, g->unit);
        pthread_mutex_lock(&h->reply_lock);
        bool taken = h->grow_want == key;
        if (taken) {
            h->grow_want = 0;
            h->grow_result = m->result;
        }
        pthread_mutex_unlock(&h->reply_lock);
        if (taken) {
            atomic_fetch_add(&h->grow_seq, 1);
            tm_futex_wake(&h->grow_seq, INT32_MAX);
        } else if (m->result == 0 && g->kind < TMEM_ARENA_KINDS) {
            uint32_t u = g->unit;   /* an answer nobody waits for: not ours to keep */
            send_units(h, TMW_MSG_RETURN, g->kind, &u, 1);
        }
        return true;
    }
    case TMW_MSG_WAKE:
        if (!lend || len != sizeof(*m))
            return false;
        atomic_store(&h->woken, 1);
        return true;
    case TMW_MSG_SHRINK: {
        const struct tmw_shrink *s = (const void *)buf;
        if (!lend || len != sizeof(*s) || s->kind >= TMEM_ARENA_KINDS)
            return false;
        struct tmc_job *j = job_new(JOB_SHRINK, s->kind, s->n, 0, NULL);
        if (j)
            job_push(h, j);
        return true;
    }
    case TMW_MSG_REVOKED: {
        const struct tmw_units *u = (const void *)buf;
        if (!lend || len < sizeof(*u) || u->n == 0 || u->n > TMW_UNITS_MAX ||
            len != sizeof(*u) + (size_t)u->n * sizeof(uint32_t))
            return false;
        struct tmc_job *j = job_new(JOB_REVOKED, u->kind, u->n, u->epoch, u->unit);
        if (j)
            job_push(h, j);
        return true;
    }
    case TMW_MSG_SET: {
        const struct tmw_set *s = (const void *)buf;
        if (!lend || len != sizeof(*s))
            return false;
        uint32_t id = tmem_client_id(h->local);
        if (s->mask & TMW_SETC_FREEZE)
            s->frozen ? tmem_admin_freeze(h->engine, id) : tmem_admin_thaw(h->engine, id);
        if (s->mask & TMW_SETC_CAP)
            tmem_admin_set_cap(h->engine, id, s->cap);
        if (s->mask & TMW_SETC_COMPRESS)
            tmem_admin_set_compress(h->engine, id, s->compress);
        if (s->mask & TMW_SETC_WEIGHT)
            tmem_admin_set_weight(h->engine, id, s->weight);
        return true;
    }
    case TMW_MSG_REPORT: {
        /* through the job queue: the report comes after what was asked
         * before it (a shrink) is done */
        if (!lend || len != sizeof(*m))
            return false;
        struct tmc_job *j = job_new(JOB_REPORT, 0, 0, 0, NULL);
        if (j)
            job_push(h, j);
        return true;
    }
    case TMW_MSG_LIST:
    case TMW_MSG_SAVE: {
        if (!lend || len != sizeof(*m))
            return false;
        struct tmc_job *j = m->type == TMW_MSG_SAVE ? job_new(JOB_SAVE, 0, 0, 0, NULL)
                                                    : job_new(JOB_LIST, m->result != 0, 0, 0, NULL);
        if (j)
            job_push(h, j);
        return true;
    }
    case TMW_MSG_DATA:
    case TMW_MSG_END: {
        pthread_mutex_lock(&h->restore_lock);
        bool ok = lend && h->restore_state == 1;
        /* DATA the restore will not read (it has ended) is dropped */
        if (ok && m->type == TMW_MSG_DATA && !h->restore_read_all) {
            size_t k = len - sizeof(*m);
            struct tmc_data *d = malloc(sizeof(*d) + k);
            if (d) {
                d->next = NULL;
                d->len = k;
                d->pos = 0;
                memcpy(d->bytes, buf + sizeof(*m), k);
                if (h->data_tail)
                    h->data_tail->next = d;
                else
                    h->data_head = d;
                h->data_tail = d;
            }
        } else if (ok) {
            h->restore_state = 2;           /* the stream is whole */
        }
        pthread_cond_broadcast(&h->restore_cond);
        pthread_mutex_unlock(&h->restore_lock);
        return ok;
    }
    default:
        return false;
    }
}

/* ------------------------------------------------------------------------
 * Losing the daemon, and coming back
 * ---------------------------------------------------------------------- */
static void disconnect(struct tmc *h)
{
    atomic_store(&h->connected, 0);
    if (h->win)
        tmr_window_break(h->win);           /* waiting calls return -ENOTCONN */
    atomic_fetch_add(&h->grow_seq, 1);      /* a GROW waiting gives up */
    tm_futex_wake(&h->grow_seq, INT32_MAX);
    pthread_rwlock_wrlock(&h->conn_lock);
    tmr_window_close(h->win);
    h->win = NULL;
    pthread_mutex_lock(&h->send_lock);
    if (h->sock >= 0)
        close(h->sock);
    h->sock = -1;
    pthread_mutex_unlock(&h->send_lock);
    pthread_rwlock_unlock(&h->conn_lock);
    pthread_mutex_lock(&h->restore_lock);   /* a restore the daemon will not finish */
    if (h->restore_state == 1)
        h->restore_state = 2;
    pthread_cond_broadcast(&h->restore_cond);
    pthread_mutex_unlock(&h->restore_lock);
}

/* The ephemeral units the daemon punched without our hearing of it (the
 * REVOKED was lost with the connection), dropped before the next HELLO. */
static void revoked_unseen(struct tmc *h)
{
    uint64_t epoch = atomic_load(&h->share->revoke_epoch);
    tmem_arena_info_t ai;
    if (tmem_arena_get_info(h->engine, &ai) != 0 || ai.epoch_done == epoch)
        return;
    size_t nunits = h->arena_bytes[0] / h->unit_bytes, n = 0;
    uint64_t *v = malloc((nunits ? nunits : 1) * sizeof(*v));
    if (!v)
        return;
    /* the daemon writes the first byte of every unit it lends, and only a
     * punch makes it a hole again (pages nobody wrote read as holes too,
     * so a hole further in says nothing) */
    for (size_t u = 0; u < nunits; u++) {
        if (!tmem_arena_held(h->engine, TMEM_ARENA_EPHEMERAL, u))
            continue;
        off_t at = (off_t)(u * h->unit_bytes);
        if (lseek(h->arena_fd[0], at, SEEK_DATA) != at)
            v[n++] = u;
    }
    drop_revoked(h, v, n, epoch, false);      /* nobody to tell: the next daemon sees holes */
    free(v);
}

/* After an adoption: every unit with pages that the engine does not hold
 * goes back (given back while disconnected, or granted and never taken). */
static void return_surplus(struct tmc *h)
{
    for (int k = 0; k < TMEM_ARENA_KINDS; k++) {
        size_t nunits = h->arena_bytes[k] / h->unit_bytes, n = 0;
        uint32_t *v = malloc((nunits ? nunits : 1) * sizeof(*v));
        if (!v)
            continue;
        off_t end = (off_t)h->arena_bytes[k], at = 0;
        while (at < end) {
            off_t data = lseek(h->arena_fd[k], at, SEEK_DATA);
            if (data < 0 || data >= end)
                break;
            off_t hole = lseek(h->arena_fd[k], data, SEEK_HOLE);
            if (hole < 0 || hole > end)
                hole = end;
            for (size_t u = (size_t)data / h->unit_bytes;
                 (off_t)(u * h->unit_bytes) < hole; u++)
                if (!tmem_arena_held(h->engine, k, u) && (n == 0 || v[n - 1] != u))
                    v[n++] = (uint32_t)u;
            at = hole;
        }
        if (n)
            send_units(h, TMW_MSG_RETURN, (uint32_t)k, v, n);
        free(v);
        pthread_mutex_lock(&h->jobs_lock);
        h->npending_ret[k] = 0;
        pthread_mutex_unlock(&h->jobs_lock);
    }
}

/* One attempt to come back.  true once connected again.  Nothing here
 * waits for the client's lock while a call could wait for this thread:
 * connected stays 0 until the end, so no call is waiting for a GROW_REPLY
 * (grow() fails at once while disconnected). */
static bool come_back(struct tmc *h)
{
    revoked_unseen(h);
    struct tmw_hello_reply rep;
    int sock, fds[3];
    if (tmc_hello(h, true, &rep, &sock, fds) != 0)
        return false;
    struct tmr_window *w = rep.mode == TMW_MODE_LEND ? tmr_window_open(fds[0]) : NULL;
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    if (!w) {
        close(sock);
        return false;
    }
    /* the shared pools again, at the same ids, empty; the socket is not read
     * meanwhile (its messages wait for this thread), so the joins watch it
     * for the daemon's end */
    tmr_window_watch(w, sock, TMR_WATCH_HANGUP);
    pthread_rwlock_wrlock(&h->pools_lock);
    for (uint32_t i = 0; i < TMEM_MAX_POOLS; i++) {
        struct tmc_pool *p = &h->pools[i];
        if (atomic_load(&p->where) != TMC_REMOTE)
            continue;
        tmem_oid_t u = { { p->uuid.lo, p->uuid.hi, 0 } };
        int rc = tmr_call(w, TMW_OP_JOIN_SHARED, 0, &u, 0, p->flags, NULL, NULL);
        if (rc == -ENOTCONN) {          /* that daemon is gone too: try again later */
            pthread_rwlock_unlock(&h->pools_lock);
            tmr_window_close(w);
            close(sock);
            return false;
        }
        if (rc >= 0) {
            atomic_store(&p->remote_id, (uint32_t)rc);
        } else {        /* not authorised any more: a private pool, as at its creation */
            atomic_store(&p->where, TMC_NONE);
            if (tmem_new_pool_at(h->local, i, p->uuid, p->flags & ~TMEM_POOL_SHARED) >= 0)
                atomic_store(&p->where, TMC_LOCAL);
        }
    }
    tmr_window_watch(w, -1, TMR_WATCH_HANGUP);     /* from now on, this thread reads it */
    pthread_rwlock_wrlock(&h->conn_lock);
    h->win = w;
    pthread_mutex_lock(&h->send_lock);
    h->sock = sock;
    pthread_mutex_unlock(&h->send_lock);
    atomic_store(&h->id, rep.client_id);
    pthread_rwlock_unlock(&h->conn_lock);
    pthread_rwlock_unlock(&h->pools_lock);
    /* units the engine does not hold go back before any GROW can be in
     * flight (one granted now would look like one of them) */
    return_surplus(h);
    atomic_store(&h->connected, 1);
    atomic_fetch_add(&h->reconnects, 1);
    atomic_store(&h->woken, 1);
    return true;
}

/* ------------------------------------------------------------------------
 * The service thread
 * ---------------------------------------------------------------------- */
/* The report and the free units given back: a job, since both take the
 * client's lock, which the service thread must never wait for (a put
 * holding it may be waiting for the GROW_REPLY only this thread reads). */
static void periodic(struct tmc *h)
{
    if (h->mode != TMW_MODE_LEND || atomic_exchange(&h->periodic_queued, 1))
        return;
    struct tmc_job *j = job_new(JOB_PERIODIC, 0, 0, 0, NULL);
    if (j)
        job_push(h, j);
    else
        atomic_store(&h->periodic_queued, 0);
}

static void *service_main(void *arg)
{
    struct tmc *h = arg;
    uint8_t *buf = malloc(TMW_MSG_MAX);
    uint64_t next = 0;
    while (buf && !atomic_load(&h->stopping)) {
        uint64_t now = tm_now_ns();
        if (now >= next) {
            periodic(h);
            next = now + TMC_PERIOD_MS * 1000000ull;
        }
        if (!atomic_load(&h->connected)) {
            if (h->mode != TMW_MODE_LEND ||
                atomic_load(&h->share->revoke_epoch) == TMW_EPOCH_ENDED)
                break;                      /* the daemon had the pools, or ended the
                                               client: they are gone */
            if (!come_back(h)) {
                struct timespec ts = { 0, TMC_PERIOD_MS * 1000000L };
                nanosleep(&ts, NULL);
            }
            continue;
        }
        struct pollfd p = { h->sock, POLLIN, 0 };
        int n = poll(&p, 1, TMC_PERIOD_MS);
        if (n <= 0 || atomic_load(&h->stopping))
            continue;
        ssize_t len = recv(h->sock, buf, TMW_MSG_MAX, MSG_DONTWAIT | MSG_TRUNC);
        if (len < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (len <= 0 || len > (ssize_t)TMW_MSG_MAX || !handle_msg(h, buf, (size_t)len))
            disconnect(h);                  /* its end, or a daemon that speaks nonsense */
    }
    free(buf);
    return NULL;
}

int tmc_threads_start(struct tmc *h)
{
    if (h->mode != TMW_MODE_LEND) {
        /* nothing to read but the daemon's end: the window's waits watch
         * for it, with no thread of ours in the process */
        tmr_window_watch(h->win, h->sock, TMR_WATCH_ANY);
        return 0;
    }
    int rc = pthread_create(&h->service, NULL, service_main, h);
    if (rc)
        return -rc;
    h->have_service = true;
    if (h->mode == TMW_MODE_LEND) {
        struct tmc_job *r = NULL;
        if (h->restore_state == 1 && !(r = job_new(JOB_RESTORE, 0, 0, 0, NULL))) {
            tmc_threads_stop(h);
            return -ENOMEM;
        }
        rc = pthread_create(&h->jobs, NULL, jobs_main, h);
        if (rc) {
            free(r);
            tmc_threads_stop(h);
            return -rc;
        }
        h->have_jobs = true;
        if (r)
            job_push(h, r);
    }
    return 0;
}

void tmc_threads_stop(struct tmc *h)
{
    atomic_store(&h->stopping, 1);
    pthread_mutex_lock(&h->send_lock);
    if (h->sock >= 0)
        shutdown(h->sock, SHUT_RDWR);       /* the daemon sees the end; poll returns */
    pthread_mutex_unlock(&h->send_lock);
    /* no call is in flight (tmc_close waited for them): the window is the
     * service thread's until it is joined */
    atomic_fetch_add(&h->grow_seq, 1);
    tm_futex_wake(&h->grow_seq, INT32_MAX);
    pthread_mutex_lock(&h->jobs_lock);
    pthread_cond_broadcast(&h->jobs_cond);
    pthread_mutex_unlock(&h->jobs_lock);
    pthread_mutex_lock(&h->restore_lock);
    pthread_cond_broadcast(&h->restore_cond);
    pthread_mutex_unlock(&h->restore_lock);
    if (h->have_service)
        pthread_join(h->service, NULL);
    if (h->have_jobs)
        pthread_join(h->jobs, NULL);
    h->have_service = h->have_jobs = false;
    while (h->job_head) {
        struct tmc_job *j = h->job_head;
        h->job_head = j->next;
        free(j);
    }
    h->job_tail = NULL;
}
