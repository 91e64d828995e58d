/* SPDX-License-Identifier: MIT */
/*
 * remote.c - calls through the window: the daemon's pools (shared pools;
 * every pool when the daemon does not lend memory).
 *
 * The window (src/proto/wire.h tells the protocol) is a sealed memfd the
 * daemon shares with the client: a call claims a slot, writes its request
 * and page there, rings the doorbell and waits for the daemon's worker to
 * mark the slot DONE; no system call per page while the worker is awake,
 * one FUTEX_WAKE when it sleeps.  A batch posts up to 32 slots at once and
 * rings once, and waits for the last slot first, so a vector call pays
 * one wake-up each way.
 *
 * Waiting for a reply: spin for TMR_SPIN_NS (a daemon that is awake answers
 * in a few microseconds; a cross-CPU wake-up costs 15-30 us on these
 * machines, so sleeping at once would double the latency), then sleep on
 * the slot's state in steps of TMR_CHECK_NS, checking between steps that
 * the daemon is still there: with lent memory the connection's service
 * thread reads the socket and breaks the window when it ends
 * (tmr_window_break); without, no thread runs, and a wait looks at the
 * socket itself (the daemon sends nothing after the HELLO: anything
 * readable is its end).  When the worker runs on this very
 * CPU (wire.h, placement hints) the call sleeps at once instead, and so do
 * the calls of a client whose CPU turned out to be shared with other work
 * (a yield that took over TM_YIELD_SLOW_NS, futex.h), for TM_CROWDED_NS.
 *
 * Slots are claimed from a free mask private to this process, so threads
 * of one client never contend in shared memory; a thread that finds none
 * free sleeps on the mask (a private futex).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client/conn.h"
#include "proto/futex.h"

#define TMR_SPIN_NS   60000u            /* 60 us */
#define TMR_PAUSE_NS  1500u             /* spinning turns from pause to yield after this */
#define TMR_CHECK_NS  100000000u        /* 100 ms */

struct tmr_window {
    uint8_t *win;                       /* TMW_WINDOW_SIZE bytes, shared with tmemd */
    struct tmw_header *hdr;
    struct tmw_slot *slots;
    uint8_t *pages;
    _Atomic uint32_t free_mask;         /* bit i: slot i is free (this process only) */
    _Atomic uint32_t slot_waiters;      /* threads sleeping on free_mask */
    _Atomic uint64_t crowded_until;     /* calls sleep at once until then (TM_CROWDED_NS) */
    _Atomic int broken;                 /* the daemon is gone */
    int sock;                           /* >= 0: look at this socket for the daemon's end */
    int watch;                          /* TMR_WATCH_*: what on it is the end */
};

struct tmr_window *tmr_window_open(int fd)
{
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    if (fstat(fd, &st) != 0 || st.st_size < (off_t)TMW_WINDOW_SIZE || seals < 0 ||
        !(seals & F_SEAL_SHRINK)) {
        errno = EPROTO;         /* one that could shrink under us would fault our calls */
        return NULL;
    }
    void *m = mmap(NULL, TMW_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return NULL;
    madvise(m, TMW_WINDOW_SIZE, MADV_DONTFORK);     /* a child does not share it */
    struct tmr_window *w = calloc(1, sizeof(*w));
    struct tmw_header *h = m;
    if (!w || h->magic != TMW_MAGIC || h->version != TMW_VERSION || h->nslots != TMW_NSLOTS ||
        h->slots_off != TMW_SLOTS_OFF || h->pages_off != TMW_PAGES_OFF) {
        int e = w ? EPROTO : ENOMEM;
        munmap(m, TMW_WINDOW_SIZE);
        free(w);
        errno = e;
        return NULL;
    }
    w->win = m;
    w->hdr = h;
    w->slots = (struct tmw_slot *)(w->win + TMW_SLOTS_OFF);
    w->pages = w->win + TMW_PAGES_OFF;
    atomic_store(&w->free_mask, TMW_NSLOTS == 32 ? UINT32_MAX : (1u << TMW_NSLOTS) - 1);
    w->sock = -1;
    return w;
}

void tmr_window_watch(struct tmr_window *w, int sock, int watch)
{
    w->watch = watch;
    w->sock = sock;
}

/* The daemon is gone: its socket ended, or (TMR_WATCH_ANY) said something:
 * it sends nothing after the HELLO reply to a client without lent memory. */
static bool socket_ended(int sock, int watch)
{
    struct pollfd p = { sock, POLLIN | POLLRDHUP, 0 };
    if (poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL))
        return true;
    if (watch == TMR_WATCH_HANGUP)
        return false;
    char b;
    return recv(sock, &b, 1, MSG_DONTWAIT | MSG_PEEK) >= 0;
}

/* Is the daemon gone?  Once seen, for good. */
static bool gone(struct tmr_window *w)
{
    if (tmr_window_broken(w))
        return true;
    if (w->sock >= 0 && socket_ended(w->sock, w->watch)) {
        atomic_store(&w->broken, 1);
        return true;
    }
    return false;
}

void tmr_window_close(struct tmr_window *w)
{
    if (!w)
        return;
    munmap(w->win, TMW_WINDOW_SIZE);
    free(w);
}

void tmr_window_break(struct tmr_window *w)
{
    atomic_store(&w->broken, 1);
    for (unsigned i = 0; i < TMW_NSLOTS; i++)   /* waiters look again now */
        tm_futex_wake(&w->slots[i].state, INT32_MAX);
    tm_futex_wake(&w->free_mask, INT32_MAX);
}

bool tmr_window_broken(const struct tmr_window *w)
{
    return atomic_load_explicit(&w->broken, memory_order_relaxed) != 0;
}

/* ------------------------------------------------------------------------
 * Slots
 * ---------------------------------------------------------------------- */
/* Claims up to want free slots (at least one, waiting if none is free):
 * their mask, or 0 when the daemon is gone. */
static uint32_t claim_slots(struct tmr_window *w, unsigned want)
{
    for (;;) {
        uint32_t m = atomic_load_explicit(&w->free_mask, memory_order_acquire);
        if (m) {
            uint32_t take = 0, left = m;
            for (unsigned k = 0; k < want && left; k++) {
                take |= left & -left;           /* lowest first: served in this order */
                left &= left - 1;
            }
            if (atomic_compare_exchange_weak(&w->free_mask, &m, m & ~take))
                return take;
            continue;
        }
        if (gone(w))
            return 0;
        atomic_fetch_add(&w->slot_waiters, 1);
        /* private futex would do; the shared flavour is correct as well */
        tm_futex_wait(&w->free_mask, 0, TMR_CHECK_NS);
        atomic_fetch_sub(&w->slot_waiters, 1);
    }
}

static void free_slots(struct tmr_window *w, uint32_t mask)
{
    atomic_fetch_or(&w->free_mask, mask);       /* seq_cst: then the waiters load */
    if (atomic_load(&w->slot_waiters))
        tm_futex_wake(&w->free_mask, INT32_MAX);
}

/* Waits for slot s to be DONE.  0, or -ENOTCONN when the daemon is gone. */
static int wait_done(struct tmr_window *w, struct tmw_slot *s, bool spin)
{
    uint64_t start = tm_now_ns(), now = start;
    if (start < atomic_load_explicit(&w->crowded_until, memory_order_relaxed))
        spin = false;
    for (unsigned n = 1; spin; n++) {
        if (atomic_load_explicit(&s->state, memory_order_acquire) == TMW_DONE)
            return 0;
        /* pause for the first microseconds, then yield: when more threads
         * spin than there are CPUs (several clients and their workers on
         * two vCPUs), a pure spin keeps the worker we wait for off the CPU
         * for a whole time slice */
        if (now - start < TMR_PAUSE_NS) {
            tm_cpu_relax();
        } else {
            if (tm_yield_was_slow(&now)) {          /* a CPU shared with other work */
                atomic_store_explicit(&w->crowded_until, now + TM_CROWDED_NS,
                                      memory_order_relaxed);
                break;
            }
        }
        if ((n & 7) == 0 && (now = tm_now_ns()) - start > TMR_SPIN_NS)
            break;
    }
    atomic_store(&s->waiter, 1);    /* seq_cst: the daemon's DONE then waiter load */
    while (atomic_load(&s->state) != TMW_DONE) {
        /* the daemon stops the worker (which completes and publishes the
         * request it took) before it closes the connection: after seeing
         * it gone, one last look at the slot, so that a request carried out
         * (an exclusive get) is never reported failed */
        if (gone(w))
            return atomic_load(&s->state) == TMW_DONE ? 0 : -ENOTCONN;
        tm_futex_wait(&s->state, TMW_POSTED, TMR_CHECK_NS);
    }
    return 0;
}

/* Fills slot i with a request. */
static void post_fill(struct tmr_window *w, unsigned i, uint32_t op, uint32_t pool_id,
                      const tmem_oid_t *oid, uint32_t index, uint32_t arg, const void *in,
                      unsigned cpu)
{
    struct tmw_slot *s = &w->slots[i];
    s->op = op;
    s->pool_id = pool_id;
    s->index = index;
    s->arg = arg;
    if (oid)
        memcpy(s->oid, oid->oid, sizeof(s->oid));
    if (in)
        memcpy(w->pages + (size_t)i * TMEM_PAGE_SIZE, in, TMEM_PAGE_SIZE);
    s->client_cpu = cpu;
    atomic_store_explicit(&s->waiter, 0, memory_order_relaxed);
    atomic_store_explicit(&s->state, TMW_POSTED, memory_order_release);
}

/* Rings the doorbell for the slots of mask. */
static void ring(struct tmr_window *w, uint32_t mask)
{
    atomic_fetch_or(&w->hdr->pending, mask);            /* seq_cst: then sleeping */
    if (atomic_load(&w->hdr->sleeping))
        tm_futex_wake(&w->hdr->pending, 1);
}

/* Takes slot i's answer (and page, on a hit, into out). */
static int take_result(struct tmr_window *w, unsigned i, void *out)
{
    struct tmw_slot *s = &w->slots[i];
    int rc = s->result;
    if (out && rc == 0)
        memcpy(out, w->pages + (size_t)i * TMEM_PAGE_SIZE, TMEM_PAGE_SIZE);
    atomic_store_explicit(&s->state, TMW_FREE, memory_order_relaxed);
    return rc;
}

int tmr_call(struct tmr_window *w, uint32_t op, uint32_t pool_id, const tmem_oid_t *oid,
             uint32_t index, uint32_t arg, const void *in, void *out)
{
    if (tmr_window_broken(w))
        return -ENOTCONN;
    uint32_t m = claim_slots(w, 1);
    if (!m)
        return -ENOTCONN;
    unsigned i = (unsigned)__builtin_ctz(m);
    unsigned cpu = (unsigned)sched_getcpu();
    post_fill(w, i, op, pool_id, oid, index, arg, in, cpu);
    ring(w, m);
    /* on the worker's CPU, spinning would keep it off: sleep at once */
    int rc = wait_done(w, &w->slots[i],
                       atomic_load_explicit(&w->hdr->worker_cpu, memory_order_relaxed) != cpu);
    if (rc)
        return rc;          /* the slot stays taken: the connection is over */
    rc = take_result(w, i, out);
    free_slots(w, m);
    return rc;
}

int tmr_call_batch(struct tmr_window *w, uint32_t op, size_t n, const uint32_t *pool,
                   const tmem_handle_t *h, const void *const *in, void *const *out,
                   int *results)
{
    int ok = 0;
    size_t done = 0;
    while (done < n) {
        uint32_t m = tmr_window_broken(w) ? 0
                   : claim_slots(w, n - done < TMW_NSLOTS ? (unsigned)(n - done) : TMW_NSLOTS);
        if (!m) {
            for (; done < n; done++)
                results[done] = -ENOTCONN;
            break;
        }
        unsigned cpu = (unsigned)sched_getcpu(), k = 0, idx[TMW_NSLOTS];
        for (uint32_t left = m; left; left &= left - 1, k++) {
            idx[k] = (unsigned)__builtin_ctz(left);
            size_t j = done + k;
            post_fill(w, idx[k], op, pool[j], &h[j].oid, h[j].index, 0,
                      op == TMW_OP_PUT ? in[j] : NULL, cpu);
        }
        ring(w, m);
        bool spin = atomic_load_explicit(&w->hdr->worker_cpu, memory_order_relaxed) != cpu;
        /* the worker serves one ring's slots in ascending order: wait for
         * the last first, so that a sleeping caller is woken once for the
         * batch, not once per slot (a wake-up costs 25-35 us) */
        int last = wait_done(w, &w->slots[idx[k - 1]], spin);
        for (unsigned q = 0; q < k; q++) {
            int rc = last ? last : wait_done(w, &w->slots[idx[q]], spin);
            if (rc) {       /* the daemon is gone: this and the rest were not done */
                for (unsigned r = q; r < k; r++)
                    results[done + r] = atomic_load(&w->slots[idx[r]].state) == TMW_DONE
                                        ? take_result(w, idx[r], op == TMW_OP_GET
                                                                     ? out[done + r] : NULL)
                                        : -ENOTCONN;
                for (unsigned r = q; r < k; r++)
                    ok += results[done + r] == 0;
                for (size_t r = done + k; r < n; r++)
                    results[r] = -ENOTCONN;
                return ok;
            }
            results[done + q] = take_result(w, idx[q], op == TMW_OP_GET ? out[done + q] : NULL);
            ok += results[done + q] == 0;
        }
        free_slots(w, m);
        done += k;
    }
    return ok;
}
