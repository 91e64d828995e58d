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
 * The window is hostile input (wire.h): a slot's fields are copied out
 * once, with volatile loads, before anything is decided on them; the page
 * pointer is computed here from the slot number, never taken from the
 * client; the engine validates pool ids, flags and handles as it does for
 * any caller.  What the client can still do is change a page while it is
 * being put or got: that spoils only its own data (docs/protocol.md,
 * "Hostile clients").  A client that only rings the doorbell (bits without
 * posted slots) is counted and slowed down; one that zeroes the mask or
 * the sleeping flag only delays its own calls: the sleep has a timeout so
 * that stopping never depends on the client's memory.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/daemon.h"
#include "proto/futex.h"

#define SLEEP_TIMEOUT_NS  1000000000u   /* 1 s: the longest a stop can wait */
#define SPURIOUS_LIMIT    1024u         /* doorbell rounds without work before a pause */
#define SPURIOUS_PAUSE_NS 1000000u      /* 1 ms */
#define PAUSE_NS          1500u         /* idle spinning turns from pause to yield after this */

struct tmd_worker {
    struct tmd *d;
    tmem_client_t *c;
    struct tmw_header *hdr;
    struct tmw_slot *slots;
    uint8_t *pages;
    struct tmd_worker_stats *st;
    uint64_t spin_ns;
    _Atomic int stop;
    pthread_t thread;
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

static void *worker_main(void *arg)
{
    struct tmd_worker *w = arg;
    struct tmw_header *h = w->hdr;
    uint64_t idle_since = tm_now_ns(), now = idle_since;
    uint64_t crowded_until = 0;             /* sleep after each request until then */
    unsigned spurious = 0, spins = 0;
    unsigned mycpu = (unsigned)sched_getcpu();
    atomic_store_explicit(&h->worker_cpu, mycpu, memory_order_relaxed);
    while (!atomic_load_explicit(&w->stop, memory_order_relaxed)) {
        uint32_t m = atomic_exchange(&h->pending, 0);
        if (m) {
            unsigned served = 0;
            bool same_cpu = false;
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
            if (served) {
                spurious = 0;
                spins = 0;
                idle_since = now = tm_now_ns();
                if (same_cpu)
                    goto sleep;     /* its client shares our CPU: spinning would keep it off */
                if (now < crowded_until)
                    goto sleep;     /* our CPU is shared with other work */
                continue;
            }
            atomic_fetch_add_explicit(&w->st->bad_requests, 1, memory_order_relaxed);
            if (++spurious >= SPURIOUS_LIMIT) {
                struct timespec ts = { 0, SPURIOUS_PAUSE_NS };
                nanosleep(&ts, NULL);
                spurious = 0;
            }
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
        atomic_store(&h->sleeping, 1);          /* seq_cst: then the pending load */
        if (atomic_load(&h->pending) == 0 && !atomic_load(&w->stop)) {
            atomic_fetch_add_explicit(&w->st->sleeps, 1, memory_order_relaxed);
            tm_futex_wait(&h->pending, 0, SLEEP_TIMEOUT_NS);
        }
        atomic_store(&h->sleeping, 0);
        idle_since = tm_now_ns();
    }
    return NULL;
}

int tmd_worker_start(struct tmd *d, struct tmd_worker **out, tmem_client_t *c, void *window,
                     struct tmd_worker_stats *st)
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
    /* a poke that makes a sleeping worker's futex word differ; if the
     * client clears it first, the sleep's timeout ends the wait */
    atomic_fetch_or(&w->hdr->pending, 1u << (TMW_NSLOTS - 1));
    tm_futex_wake(&w->hdr->pending, 1);
    pthread_join(w->thread, NULL);
    free(w);
}
