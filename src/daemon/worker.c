/* SPDX-License-Identifier: MIT */
/*
 * worker.c - one thread per connected client, serving its window.
 *
 * The loop: take the posted-slot mask with one atomic exchange, serve each
 * posted slot, and while requests keep coming spin on the mask; after
 * cfg.spin_us without work, announce sleep (header.sleeping) and FUTEX_WAIT
 * on the mask.  A wake-up of a sleeping process costs 15-30 us on these
 * machines against well under a microsecond for a spinning hand-off, so a
 * busy client never pays it and an idle one costs no CPU.  A client that
 * runs on the worker's own CPU (wire.h, placement hints) is served and the
 * worker sleeps at once: a futex hand-off on one CPU costs about a
 * microsecond, spinning there a time slice.  So does a worker whose CPU is
 * shared with other work (futex.h, tm_yield_was_slow), for TM_CROWDED_NS:
 * with a busy process pinned to its CPU, a spinning worker
 * served 0.3-12 k requests/s, each waiting for that process's time slice.
 *
 * Wake-ups (docs/protocol.md, "Empty wake-ups"): the worker spins only
 * after a look that found work, as a caller with more to come would.  A
 * wake-up that finds no posted slot (an empty wake-up: a doorbell rung
 * without a request) sends it back to sleep at once.  Each client's
 * wake-ups, empty wake-ups and the worker thread's CPU time are counted
 * (tmd_worker_stats); a client whose empty wake-ups within WAKE_PERIOD_NS
 * outnumber the requests it had served by more than EMPTY_ALLOWANCE is
 * throttled: after each empty wake-up its worker waits (THROTTLE_MIN_NS,
 * doubling to THROTTLE_MAX_NS) before it sleeps on the doorbell again, so
 * its doorbells cost the daemon at most a wake-up per wait.  An honest
 * client rings only after posting: each of its empty wake-ups is a ring
 * whose request the worker had already taken, so they never outnumber its
 * requests by more than the slots it can have in flight (TMW_NSLOTS), and
 * it is never throttled.  A throttle ends after THROTTLE_QUIET_NS without
 * an empty wake-up.
 *
 * The window is hostile input (wire.h): a slot's fields are copied out
 * once, with volatile loads, before anything is decided on them; the page
 * pointer is computed here from the slot number, never taken from the
 * client; the engine validates pool ids, flags and handles as it does for
 * any caller.  What the client can still do is change a page while it is
 * being put or got: that spoils only its own data (docs/protocol.md,
 * "Hostile clients").  A client that only rings the doorbell (bits without
 * posted slots, or a bare FUTEX_WAKE) is counted and throttled; one that
 * zeroes the mask or the sleeping flag only delays its own calls: the
 * sleep has a timeout so that stopping never depends on the client's
 * memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "daemon/daemon.h"
#include "proto/futex.h"

#define SLEEP_TIMEOUT_NS  1000000000u   /* 1 s: the longest a stop can wait */
#define PAUSE_NS          1500u         /* idle spinning turns from pause to yield after this */
#define WAKE_PERIOD_NS    100000000u    /* 100 ms: empty wake-ups are weighed per period */
#define EMPTY_ALLOWANCE   (2u * TMW_NSLOTS) /* empty wake-ups beyond its requests, per period,
                                           before a client is throttled (an honest one
                                           causes at most TMW_NSLOTS) */
#define THROTTLE_MIN_NS   1000000u      /* 1 ms: a throttled worker's first wait */
#define THROTTLE_MAX_NS   64000000u     /* 64 ms: its longest */
#define THROTTLE_QUIET_NS 1000000000u   /* 1 s without an empty wake-up ends a throttle (far
                                           over THROTTLE_MAX_NS: a client that keeps ringing
                                           stays throttled, one that pauses to start over
                                           gets a burst a second) */
#define CPU_SAMPLE_NS     1000000u      /* the thread's CPU time is read at most once a ms */
#define WHO_MAX           160u

struct tmd_worker {
    struct tmd *d;
    tmem_client_t *c;
    struct tmw_header *hdr;
    struct tmw_slot *slots;
    uint8_t *pages;
    struct tmd_worker_stats *st;        /* the connection's; read by control threads */
    uint64_t spin_ns;
    _Atomic uint32_t stop;              /* set once; a throttled worker waits on it */
    pthread_t thread;
    char who[WHO_MAX];                  /* "client N (pid P uid U "name")", for the log */
    /* the worker thread's own (the figures others read are in *st) */
    uint64_t period_start;              /* the current period of WAKE_PERIOD_NS */
    uint64_t period_reqs;               /* st->requests when it began */
    uint32_t period_empty;              /* empty wake-ups in it */
    uint64_t delay_ns;                  /* throttled: the wait after an empty wake-up; 0 not */
    uint64_t quiet_since;               /* throttled: since when no empty wake-up came (the
                                           end of its last delay) */
    uint64_t throttled_empty;           /* empty wake-ups in the current throttle */
    bool logged;                        /* its first throttle was logged */
    uint64_t cpu_at;                    /* when its CPU time was last read */
};

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))

int tmd_serve_request(tmem_client_t *c, struct tmw_slot *s, uint8_t *page,
                      struct tmd_worker_stats *st)
{
    if (atomic_load_explicit(&s->state, memory_order_acquire) != TMW_POSTED)
        return 0;
    uint32_t op = READ_ONCE(s->op);
    uint32_t pool_id = READ_ONCE(s->pool_id);
    uint32_t index = READ_ONCE(s->index);
    uint32_t arg = READ_ONCE(s->arg);
    tmem_oid_t oid = { { READ_ONCE(s->oid[0]), READ_ONCE(s->oid[1]), READ_ONCE(s->oid[2]) } };
    int rc;
    switch (op) {
    case TMW_OP_PUT:
        rc = tmem_put_page(c, pool_id, oid, index, page);
        break;
    case TMW_OP_GET:
        rc = tmem_get_page(c, pool_id, oid, index, page);
        break;
    case TMW_OP_FLUSH_PAGE:
        rc = tmem_flush_page(c, pool_id, oid, index);
        break;
    case TMW_OP_FLUSH_OBJECT:
        rc = tmem_flush_object(c, pool_id, oid);
        break;
    case TMW_OP_NEW_POOL: {
        tmem_uuid_t u = { oid.oid[0], oid.oid[1] };
        rc = tmem_new_pool(c, u, arg);
        break;
    }
    case TMW_OP_DESTROY_POOL:
        rc = tmem_destroy_pool(c, pool_id);
        break;
    case TMW_OP_POOL_IS_SHARED:
        rc = tmem_pool_is_shared(c, pool_id);
        break;
    case TMW_OP_JOIN_SHARED: {     /* lent memory: a pool here only if it is shared */
        tmem_uuid_t u = { oid.oid[0], oid.oid[1] };
        rc = (arg & TMEM_POOL_SHARED) ? tmem_new_pool(c, u, arg) : -EINVAL;
        if (rc >= 0 && tmem_pool_is_shared(c, (uint32_t)rc) != 1) {
            tmem_destroy_pool(c, (uint32_t)rc);
            rc = -EACCES;       /* not authorised: the client makes it private, itself */
        }
        break;
    }
    default:
        rc = -EINVAL;
        atomic_fetch_add_explicit(&st->bad_requests, 1, memory_order_relaxed);
        break;
    }
    *(volatile int32_t *)&s->result = rc;
    atomic_store(&s->state, TMW_DONE);          /* seq_cst: then the waiter load */
    if (atomic_load(&s->waiter))
        tm_futex_wake(&s->state, 1);
    atomic_fetch_add_explicit(&st->requests, 1, memory_order_relaxed);
    return 1;
}

/* Reads the thread's CPU time into st->cpu_ns, at most once per
 * CPU_SAMPLE_NS of now (force: whatever the time). */
static void sample_cpu(struct tmd_worker *w, uint64_t now, bool force)
{
    if (!force && now - w->cpu_at < CPU_SAMPLE_NS)
        return;
    w->cpu_at = now;
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0)
        atomic_store_explicit(&w->st->cpu_ns,
                              (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                              memory_order_relaxed);
}

static void end_throttle(struct tmd_worker *w)
{
    tmd_log(w->logged ? LOG_DEBUG : LOG_INFO, "%s: no longer throttled (%" PRIu64
            " empty wake-ups while it was)", w->who, w->throttled_empty);
    w->logged = true;       /* its first throttle, and the end of it, are logged */
    w->delay_ns = 0;
    atomic_store_explicit(&w->st->throttled, 0, memory_order_relaxed);
}

/* Counts a return from sleep at now (woken: by a doorbell, not the
 * timeout) whose look served `served` requests, and applies the rule
 * (above).  Returns how long to wait before sleeping again: 0, or the
 * throttled client's delay after an empty wake-up. */
static uint64_t count_wakeup(struct tmd_worker *w, bool woken, unsigned served, uint64_t now)
{
    struct tmd_worker_stats *st = w->st;
    if (w->delay_ns && now - w->quiet_since >= THROTTLE_QUIET_NS)
        end_throttle(w);
    if (!woken)
        return 0;
    atomic_fetch_add_explicit(&st->wakeups, 1, memory_order_relaxed);
    uint64_t reqs = atomic_load_explicit(&st->requests, memory_order_relaxed);
    if (now - w->period_start >= WAKE_PERIOD_NS) {
        w->period_start = now;
        w->period_reqs = reqs - served;         /* what this wake-up served counts in it */
        w->period_empty = 0;
    }
    if (served)
        return 0;
    atomic_fetch_add_explicit(&st->empty_wakeups, 1, memory_order_relaxed);
    w->period_empty++;
    if (w->delay_ns) {
        w->throttled_empty++;
        w->delay_ns = w->delay_ns * 2 < THROTTLE_MAX_NS ? w->delay_ns * 2 : THROTTLE_MAX_NS;
        return w->delay_ns;
    }
    if (w->period_empty <= reqs - w->period_reqs + EMPTY_ALLOWANCE)
        return 0;
    tmd_log(w->logged ? LOG_DEBUG : LOG_WARNING, "%s: %" PRIu32 " wake-ups without a posted "
            "slot in %" PRIu64 " ms, for %" PRIu64 " requests: throttled (its worker waits "
            "%u to %u ms before it looks at its doorbell again)", w->who, w->period_empty,
            (now - w->period_start) / 1000000u, reqs - w->period_reqs,
            THROTTLE_MIN_NS / 1000000u, THROTTLE_MAX_NS / 1000000u);
    w->delay_ns = THROTTLE_MIN_NS;
    w->throttled_empty = 1;
    atomic_fetch_add_explicit(&st->throttles, 1, memory_order_relaxed);
    atomic_store_explicit(&st->throttled, 1, memory_order_relaxed);
    return w->delay_ns;
}

/* What woke the worker last (the first look after a sleep is weighed). */
enum { AWAKE, WOKEN, TIMED_OUT };

static void *worker_main(void *arg)
{
    struct tmd_worker *w = arg;
    struct tmw_header *h = w->hdr;
    uint64_t idle_since = tm_now_ns(), now = idle_since;
    uint64_t crowded_until = 0;             /* sleep after each request until then */
    unsigned spins = 0;
    int back = AWAKE;
    unsigned mycpu = (unsigned)sched_getcpu();
    w->period_start = now;
    atomic_store_explicit(&h->worker_cpu, mycpu, memory_order_relaxed);
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        uint32_t m = atomic_exchange(&h->pending, 0);
        unsigned served = 0;
        bool same_cpu = false;
        if (m) {
            unsigned cpu = (unsigned)sched_getcpu();
            if (cpu != mycpu) {
                mycpu = cpu;
                atomic_store_explicit(&h->worker_cpu, mycpu, memory_order_relaxed);
            }
            while (m) {
                unsigned i = (unsigned)__builtin_ctz(m);
                m &= m - 1;
                same_cpu |= READ_ONCE(w->slots[i].client_cpu) == mycpu;
                served += (unsigned)tmd_serve_request(w->c, &w->slots[i],
                                                      w->pages + (size_t)i * TMEM_PAGE_SIZE, w->st);
            }
            if (!served)        /* bits that named no posted slot */
                atomic_fetch_add_explicit(&w->st->bad_requests, 1, memory_order_relaxed);
        }
        if (back != AWAKE) {
            /* the first look after a sleep: an empty one sends the worker
             * back to sleep without spinning (a throttled client's after
             * its delay) */
            uint64_t delay = count_wakeup(w, back == WOKEN, served, now);
            back = AWAKE;
            if (!served) {
                if (delay) {
                    sample_cpu(w, now, false);
                    tm_futex_wait(&w->stop, 0, delay);      /* a stop ends it */
                    w->quiet_since = now = tm_now_ns();
                }
                goto sleep;
            }
        }
        if (served) {
            spins = 0;
            idle_since = now = tm_now_ns();
            sample_cpu(w, now, false);
            if (same_cpu)
                goto sleep;     /* its client shares our CPU: spinning would keep it off */
            if (now < crowded_until)
                goto sleep;     /* our CPU is shared with other work */
            continue;
        }
        if ((++spins & 7) != 0 || (now = tm_now_ns()) - idle_since < w->spin_ns) {
            /* as the client does (remote.c): pause, then yield, so that an
             * oversubscribed CPU goes to whoever has work */
            if (now - idle_since < PAUSE_NS) {
                tm_cpu_relax();
            } else {
                if (tm_yield_was_slow(&now)) {      /* a CPU shared with other work */
                    crowded_until = now + TM_CROWDED_NS;
                    goto sleep;                 /* counted with the sleeps */
                }
            }
            continue;
        }
    sleep:
        sample_cpu(w, now, false);
        back = WOKEN;           /* a doorbell rung before we slept is a wake-up too */
        atomic_store(&h->sleeping, 1);          /* seq_cst: then the pending load */
        if (atomic_load(&h->pending) == 0 && !atomic_load(&w->stop)) {
            atomic_fetch_add_explicit(&w->st->sleeps, 1, memory_order_relaxed);
            if (tm_futex_wait(&h->pending, 0, SLEEP_TIMEOUT_NS) == -ETIMEDOUT)
                back = TIMED_OUT;
        }
        atomic_store(&h->sleeping, 0);
        idle_since = now = tm_now_ns();
    }
    sample_cpu(w, now, true);       /* its last figure, for the daemon's totals */
    return NULL;
}

int tmd_worker_start(struct tmd *d, struct tmd_worker **out, tmem_client_t *c, void *window,
                     struct tmd_worker_stats *st, const char *who)
{
    struct tmd_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->d = d;
    w->c = c;
    w->hdr = window;
    w->slots = (struct tmw_slot *)((uint8_t *)window + TMW_SLOTS_OFF);
    w->pages = (uint8_t *)window + TMW_PAGES_OFF;
    w->st = st;
    w->spin_ns = (uint64_t)d->cfg.spin_us * 1000u;
    snprintf(w->who, sizeof(w->who), "%s", who);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc) {
        free(w);
        return -rc;
    }
    *out = w;
    return 0;
}

void tmd_worker_stop(struct tmd_worker *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, 1);
    tm_futex_wake(&w->stop, 1);                 /* a throttled worker's wait */
    /* a poke that makes a sleeping worker's futex word differ; if the
     * client clears it first, the sleep's timeout ends the wait */
    atomic_fetch_or(&w->hdr->pending, 1u << (TMW_NSLOTS - 1));
    tm_futex_wake(&w->hdr->pending, 1);
    pthread_join(w->thread, NULL);
    free(w);
}
