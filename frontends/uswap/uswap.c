/* SPDX-License-Identifier: MIT */
/*
 * uswap.c - paging a region of process memory through frontswap with
 * userfaultfd (frontends/uswap/uswap.h).
 *
 * One handler thread per region reads the userfaultfd and serves each fault
 * under u->lock: a missing fault brings a page in (after evicting one if the
 * budget is full), a write-protect fault marks a clean page dirty.  All page
 * state is changed by the handler or, for uswap_free/uswap_discard, by a
 * caller holding the same lock; only the handler calls the frontswap layer
 * on the region's slots, so calls on one slot never overlap (the layer's
 * rule).
 *
 * Per-page state (flags[], under lock):
 *   RES    resident (mapped).  Not RES: the content is in tmem if TMEM, in
 *          the swap file if FILE (both in writethrough), else zeros.
 *   DIRTY  resident and newer than every kept copy.  A resident page that
 *          is not DIRTY is write-protected (WP) and its content equals the
 *          copy TMEM/FILE name, or zeros if neither: evicting it is a
 *          MADV_DONTNEED alone.  A write to it is a write-protect fault,
 *          which sets DIRTY and forgets the copies (the frontswap bit stays
 *          set until the next store or invalidate replaces the stale copy).
 *   WP     we hold uffd write-protection on the page.  Always set on a clean
 *          resident page; the clock also sets it on dirty pages it passes.
 *   REF    referenced since the hand last passed.
 *   PICK   chosen as a victim of the batch being evicted (inside evict_batch).
 *   LOST   tmem lost the page's only copy (poisoned: SIGBUS on access).
 * Invariants: resident == number of RES pages <= budget; a RES page sits
 * in exactly one ring slot (slot[p]) and ring[slot[p]] == p.
 *
 * Stream pages (hint[], under lock): a page brought in by a fault that
 * continued a sequential stream (or read ahead of one) is marked ONCE and
 * queued in sq[] (oldest first).  Victims are taken from that queue before
 * the ring (but for the sq_keep newest, which the streams are reading
 * now), and a batch is cut to the stream pages there are when they
 * suffice (else a small batch, rbatch, comes from the ring): a page a
 * scan went past is the least likely to be used again,
 * and what the program touches at random stays resident (the kernel's LRU
 * gets the same from accessed bits, which user space cannot read).  A
 * queue entry whose page is no longer ONCE (evicted or dropped since) is
 * skipped.  A ring page resident for STALE_TURNS budgets of pages brought
 * in goes before the stream pages all the same (hand_page_stale()).  Invariant: once_count == number of pages with ONCE set; every
 * such page is RES and has an entry in sq[].
 *
 * Eviction works on a batch of victims (evict_batch(), up to ebatch pages,
 * sorted by page number so that neighbours form runs): write-protect, one
 * UFFDIO_WRITEPROTECT per run (a writer now blocks in a write-protect
 * fault); copy out the dirty pages, one tmem_frontswap_store_pages per run
 * of neighbours and one pwrite per run of those tmem refused (straight from
 * the pages); one MADV_DONTNEED per run (on anonymous memory this also
 * drops the protection); then one UFFDIO_WAKE per run: a blocked writer
 * retries, takes a missing fault and gets the page back through the
 * handler, with its write applied after.
 *
 * Fill works on a run too (fill_run()): the faulting page and, inside a
 * sequential stream's read-ahead window, the evicted neighbours after it
 * (stopping at the first resident or lost one), loaded with one
 * tmem_frontswap_load_pages per run tmem holds and one pread per run only
 * the file holds, and mapped with one UFFDIO_COPY per run of equal
 * protection.  UFFDIO_COPY never replaces a mapped page (EEXIST).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uswap.h"

/* Debian 12's headers predate some of what the running kernel has. */
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON 0x08
struct uffdio_poison {
    struct uffdio_range range;
    __u64 mode;
    __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define PG        4096u
#define PG_SHIFT  12u
#define NO_SLOT   UINT32_MAX
#define MAX_EXTENTS (1u << 20)     /* free ranges of the region heap */
#define MSG_BATCH 32
#define RA_STREAMS 8               /* sequential fault streams followed */
#define EVICT_MAX TMEM_FRONTSWAP_MAX_BATCH  /* victims per batch */
#define FILL_MAX  64               /* pages per fill run */
#define EVICT_SCRATCH (EVICT_MAX * (sizeof(uint32_t) + 1 + sizeof(void *) + sizeof(int)))

enum {
    F_RES = 0x01, F_WP = 0x02, F_DIRTY = 0x04, F_TMEM = 0x08,
    F_FILE = 0x10, F_REF = 0x20, F_PICK = 0x40, F_LOST = 0x80,
};

struct extent { uint64_t start, len; };   /* pages */
struct ra_stream { uint64_t next; uint32_t win; };  /* expected page, window */
#define H_ONCE 0x01                /* hint[p]: brought in by a sequential stream */
/* hint[p] >> H_WROTE_SHIFT: how many more times a read fault maps p
 * writable and dirty (0-3): set to 3 when the program writes p while it is
 * write-protected (a write-protect fault, or a missing fault that writes),
 * one less each time p is mapped so without that evidence.  A page the
 * program writes whenever it has it then costs one write-protect fault in
 * four residencies instead of one in each; a page that is only read again
 * costs at most three needless stores. */
#define H_WROTE_SHIFT 1
#define H_WROTE_MAX   3u
#define STALE_TURNS 4              /* hand_page_stale() */
#define SQ_KEEP (2 * RA_STREAMS)   /* newest stream pages never taken first: in use
                                      (at most a quarter of the budget) */

struct uswap {
    uint8_t *base;
    size_t size;
    uint64_t npages;
    uint32_t budget;
    int uffd, stopfd, swapfd;
    int pagemap;                /* /proc/self/pagemap, or -1 */
    bool have_poison, writethrough;
    int policy;
    tmem_frontswap_t *fs;
    unsigned fs_type;
    void (*on_lost)(void *, void *);
    void *on_lost_arg;
    pthread_t thread;
    bool thread_started;

    pthread_mutex_t lock;       /* everything below */
    uint8_t *flags;             /* per page */
    uint32_t *slot;             /* per page: its ring slot while RES */
    uint32_t *alloc_len;        /* per page: pages of the allocation starting there */
    uint32_t *ring;             /* budget slots: a page or NO_SLOT */
    uint32_t *free_slots;       /* stack of empty ring slots */
    uint64_t *slot_epoch;       /* per ring slot: fills when its page came in */
    uint64_t fills;             /* pages brought in so far */
    uint32_t nfree, hand;       /* hand: the next ring slot to look at */
    uint64_t resident;
    struct extent *ext;         /* free ranges, sorted, disjoint, not adjacent */
    size_t next;
    uint8_t *bounce, *zero;     /* page buffers of the handler */
    uint8_t *fillbuf;           /* FILL_MAX pages: a fill run's contents */
    uint32_t ebatch;            /* stream victims evicted at once */
    uint32_t rbatch;            /* ring victims evicted at once */
    uint32_t *vict;             /* EVICT_MAX: the batch's victims */
    uint8_t *vflags;            /* EVICT_MAX: their flags after eviction */
    const void **vptr;          /* EVICT_MAX: page pointers of a batch call */
    int *vres;                  /* EVICT_MAX: its results */
    struct ra_stream ra[RA_STREAMS];
    struct ra_stream *ra_cur;   /* the stream the last window() continued, or NULL */
    unsigned ra_victim, ra_max;
    bool seq;                   /* the last window() continued a stream */
    uint8_t *hint;              /* per page: H_ONCE, the H_WROTE count */
    uint32_t *sq;               /* sq_cap: queue of stream pages, oldest at sq_head */
    uint32_t sq_head, sq_len, sq_cap, once_count, sq_keep;

    /* counters: written by the handler only, read by anyone */
    _Atomic uint64_t faults, wp_faults, zero_fills, tmem_loads, tmem_ok, tmem_refused,
                     swap_reads, swap_writes, evictions, clean_evictions, zero_evictions, lost,
                     readaheads, evict_batches, fill_runs, stream_evictions,
                     dirty_guesses;
};

/* The kernel's, never an interposed one: the LD_PRELOAD shim (preload.c)
 * replaces mmap, munmap and madvise for the program, and this file is
 * linked into it. */
static void *sys_mmap(size_t len)
{
    return (void *)syscall(SYS_mmap, NULL, len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, (off_t)0);
}
static int sys_munmap(void *a, size_t len)
{
    return (int)syscall(SYS_munmap, a, len);
}
static int sys_madvise(void *a, size_t len, int advice)
{
    return (int)syscall(SYS_madvise, a, len, advice);
}
#define munmap  sys_munmap
#define madvise sys_madvise

static _Thread_local char last_err[256];
static _Thread_local int in_handler;

static void set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_err, sizeof last_err, fmt, ap);
    va_end(ap);
}

const char *uswap_last_error(void) { return last_err; }
int uswap_in_handler(void) { return in_handler; }

/* A message on stderr with one write(2): the handler must not take stdio's
 * lock, which a program thread may hold while it faults on the region. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static inline void bump(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Something that cannot happen without losing the program's data. */
static void die(const char *what, int err) __attribute__((noreturn));
static void die(const char *what, int err)
{
    say("uswap: FATAL: %s: %s\n", what, strerror(err));
    abort();
}

void uswap_config_init(uswap_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->policy = USWAP_FIFO;
    cfg->readahead = 0;
}

/* ---- userfaultfd ----------------------------------------------------------- */

static int uffd_new(void)
{
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0)
        return fd;
    int err = errno;
    /* /dev/userfaultfd is the other door (kernel >= 6.1), for its owner */
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
        close(dev);
        if (fd >= 0)
            return fd;
    }
    errno = err;
    return -1;
}

static int unpriv_uffd_sysctl(void)
{
    FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
    int v = -1;
    if (f) {
        if (fscanf(f, "%d", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* Opens a userfaultfd with the write-protect feature; *features gets what
 * the kernel offers.  -errno with a message. */
static int uffd_open_api(uint64_t *features, char *msg, size_t msglen)
{
    int fd = uffd_new();
    if (fd < 0) {
        int err = errno;
        if (err == EPERM || err == EACCES)
            snprintf(msg, msglen, "userfaultfd is not allowed: uswap needs root here "
                     "(/proc/sys/vm/unprivileged_userfaultfd = %d, euid %u)",
                     unpriv_uffd_sysctl(), (unsigned)geteuid());
        else if (err == ENOSYS)
            snprintf(msg, msglen, "userfaultfd: the kernel has no userfaultfd (ENOSYS)");
        else
            snprintf(msg, msglen, "userfaultfd: %s", strerror(err));
        return -err;
    }
    /* one UFFDIO_API per descriptor: ask with 0 to learn what there is */
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int err = errno;
        snprintf(msg, msglen, "UFFDIO_API: %s", strerror(err));
        close(fd);
        return -err;
    }
    uint64_t have = api.features;
    close(fd);
    if (!(have & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
        snprintf(msg, msglen, "userfaultfd: this kernel has no write-protect faults "
                 "on anonymous memory (features 0x%llx)", (unsigned long long)have);
        return -ENOTSUP;
    }
    fd = uffd_new();
    if (fd < 0) {
        int err = errno;
        snprintf(msg, msglen, "userfaultfd: %s", strerror(err));
        return -err;
    }
    api.api = UFFD_API;
    api.features = UFFD_FEATURE_PAGEFAULT_FLAG_WP | (have & UFFD_FEATURE_POISON);
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int err = errno;
        snprintf(msg, msglen, "UFFDIO_API (write-protect): %s", strerror(err));
        close(fd);
        return -err;
    }
    *features = api.features;
    return fd;
}

static int uffd_register(int fd, void *base, size_t len, char *msg, size_t msglen)
{
    struct uffdio_register reg = {
        .range = { .start = (uintptr_t)base, .len = len },
        .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
    };
    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        int err = errno;
        snprintf(msg, msglen, "UFFDIO_REGISTER (missing + write-protect): %s", strerror(err));
        return -err;
    }
    uint64_t need = (1ull << _UFFDIO_COPY) | (1ull << _UFFDIO_WAKE) |
                    (1ull << _UFFDIO_WRITEPROTECT);
    if ((reg.ioctls & need) != need) {
        snprintf(msg, msglen, "userfaultfd: the region lacks COPY/WAKE/WRITEPROTECT "
                 "(ioctls 0x%llx)", (unsigned long long)reg.ioctls);
        return -ENOTSUP;
    }
    return 0;
}

int uswap_probe(char *msg, size_t msglen)
{
    char dummy[8];
    if (!msg) {
        msg = dummy;
        msglen = sizeof dummy;
    }
    uint64_t features;
    int fd = uffd_open_api(&features, msg, msglen);
    if (fd < 0)
        return fd;
    void *p = sys_mmap(PG);
    int r = 0;
    if (p == MAP_FAILED) {
        r = -errno;
        snprintf(msg, msglen, "mmap: %s", strerror(errno));
    } else {
        r = uffd_register(fd, p, PG, msg, msglen);
        munmap(p, PG);
    }
    close(fd);
    if (r == 0 && msglen)
        msg[0] = '\0';
    return r;
}

/* Wakes the threads waiting on pages [p, p + n). */
static void uffd_wake_range(uswap_t *u, uint64_t p, uint64_t n)
{
    struct uffdio_range r = { .start = (uintptr_t)(u->base + (p << PG_SHIFT)),
                              .len = n << PG_SHIFT };
    if (ioctl(u->uffd, UFFDIO_WAKE, &r) < 0 && errno != ENOENT && errno != ESRCH)
        die("UFFDIO_WAKE", errno);
}

static void uffd_wake(uswap_t *u, uint64_t p) { uffd_wake_range(u, p, 1); }

/* Write-protects (wp) or releases pages [p, p + n); releasing wakes their
 * waiters. */
static void uffd_protect_range(uswap_t *u, uint64_t p, uint64_t n, bool wp)
{
    struct uffdio_writeprotect w = {
        .range = { .start = (uintptr_t)(u->base + (p << PG_SHIFT)), .len = n << PG_SHIFT },
        .mode = wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
    };
    while (ioctl(u->uffd, UFFDIO_WRITEPROTECT, &w) < 0) {
        if (errno == EAGAIN)
            continue;
        if (errno == ENOENT || errno == ESRCH)   /* the process is exiting */
            return;
        die("UFFDIO_WRITEPROTECT", errno);
    }
}

static void uffd_protect(uswap_t *u, uint64_t p, bool wp) { uffd_protect_range(u, p, 1, wp); }

/* Maps copies of n pages at src at pages [p, p + n), write-protected if wp:
 * one ioctl unless the kernel stops part-way.  A page already mapped there
 * (behind uswap's back: EEXIST) is left as it is and marked in behind[]
 * (indexed from p). */
static void uffd_copy_range(uswap_t *u, uint64_t p, uint64_t n, const uint8_t *src, bool wp,
                            bool *behind)
{
    uint64_t done = 0, len = n << PG_SHIFT;
    while (done < len) {
        struct uffdio_copy c = {
            .dst = (uintptr_t)(u->base + (p << PG_SHIFT) + done), .src = (uintptr_t)(src + done),
            .len = len - done, .mode = wp ? UFFDIO_COPY_MODE_WP : 0,
        };
        if (ioctl(u->uffd, UFFDIO_COPY, &c) == 0)
            return;
        if (errno == EAGAIN) {      /* stopped part-way (the mapping changed): go on */
            if (c.copy > 0)
                done += (uint64_t)c.copy;
            continue;
        }
        if (errno == EEXIST) {      /* nothing copied: the page at done is mapped */
            behind[done >> PG_SHIFT] = true;
            done += PG;
            continue;
        }
        if (errno == ENOENT || errno == ESRCH)   /* the process is exiting */
            return;
        die("UFFDIO_COPY", errno);
    }
}

/* ---- the swap file ----------------------------------------------------------- */

/* Pages [p, p + npg) from buf to their slots: one pwrite (the slots are
 * neighbours too). */
static void swap_write(uswap_t *u, uint64_t p, uint64_t npg, const void *buf)
{
    off_t off = (off_t)(p << PG_SHIFT);
    size_t done = 0, len = (size_t)(npg << PG_SHIFT);
    while (done < len) {
        ssize_t n = pwrite(u->swapfd, (const char *)buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("writing the swap file (the page cannot be kept)", n < 0 ? errno : EIO);
        done += (size_t)n;
    }
    atomic_fetch_add_explicit(&u->swap_writes, npg, memory_order_relaxed);
}

/* Pages [p, p + npg) from their slots into buf: one pread. */
static void swap_read(uswap_t *u, uint64_t p, uint64_t npg, void *buf)
{
    off_t off = (off_t)(p << PG_SHIFT);
    size_t done = 0, len = (size_t)(npg << PG_SHIFT);
    while (done < len) {
        ssize_t n = pread(u->swapfd, (char *)buf + done, len - done, off + (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("reading the swap file", n < 0 ? errno : EIO);
        done += (size_t)n;
    }
    atomic_fetch_add_explicit(&u->swap_reads, npg, memory_order_relaxed);
}

/* ---- the clock ----------------------------------------------------------------- */

static void ring_insert(uswap_t *u, uint64_t p)
{
    uint32_t s = u->free_slots[--u->nfree];
    u->ring[s] = (uint32_t)p;
    u->slot_epoch[s] = u->fills++;
    u->slot[p] = s;
    u->resident++;
}

static void ring_remove(uswap_t *u, uint64_t p)
{
    if (u->hint[p] & H_ONCE) {      /* its queue entry is skipped from now on */
        u->hint[p] &= (uint8_t)~H_ONCE;
        u->once_count--;
    }
    uint32_t s = u->slot[p];
    u->ring[s] = NO_SLOT;
    u->slot[p] = NO_SLOT;
    u->free_slots[u->nfree++] = s;
    u->resident--;
}

/* Marks resident page p a stream page and queues it (the oldest entry
 * makes room if the queue is full: its page becomes an ordinary one). */
static void mark_once(uswap_t *u, uint64_t p)
{
    if (u->hint[p] & H_ONCE)
        return;
    if (u->sq_len == u->sq_cap) {
        uint32_t q = u->sq[u->sq_head];
        u->sq_head = (u->sq_head + 1) % u->sq_cap;
        u->sq_len--;
        if (u->hint[q] & H_ONCE) {
            u->hint[q] &= (uint8_t)~H_ONCE;
            u->once_count--;
        }
    }
    u->sq[(u->sq_head + u->sq_len) % u->sq_cap] = (uint32_t)p;
    u->sq_len++;
    u->hint[p] |= H_ONCE;
    u->once_count++;
}

/* The oldest stream page not picked yet, or NO_SLOT; never one of the
 * sq_keep newest (the pages a stream is reading now).  Its ONCE mark goes
 * (ring_remove would clear it at eviction anyway). */
static uint32_t pick_once(uswap_t *u)
{
    while (u->once_count > u->sq_keep && u->sq_len > 0) {
        uint32_t p = u->sq[u->sq_head];
        u->sq_head = (u->sq_head + 1) % u->sq_cap;
        u->sq_len--;
        if (!(u->hint[p] & H_ONCE))
            continue;               /* evicted or dropped since it was queued */
        u->hint[p] &= (uint8_t)~H_ONCE;
        u->once_count--;
        if (!(u->flags[p] & F_PICK))
            return p;
    }
    return NO_SLOT;
}

/* The next victim, never one picked already: the oldest stream page, else
 * by the ring.  Clock: a referenced page
 * loses its bit and, if dirty, is write-protected so that its next write
 * tells us (its second chance); FIFO: the next page in ring order.  Ends
 * within two turns if a resident page is not picked: nothing sets REF
 * while the lock is held. */
/* Has the next page at the hand been resident for STALE_TURNS budgets'
 * worth of pages brought in?  Then it goes before the stream pages: what
 * the program touched at random once is not protected for ever (a page it
 * keeps reading comes back, at one fault per STALE_TURNS turns). */
static bool hand_page_stale(const uswap_t *u)
{
    for (uint32_t i = 0; i < u->budget; i++) {
        uint32_t s = (u->hand + i) % u->budget, p = u->ring[s];
        if (p == NO_SLOT || (u->flags[p] & F_PICK))
            continue;
        return u->fills - u->slot_epoch[s] > (uint64_t)STALE_TURNS * u->budget;
    }
    return false;
}

static uint64_t pick_victim(uswap_t *u)
{
    uint32_t o = hand_page_stale(u) ? NO_SLOT : pick_once(u);
    if (o != NO_SLOT) {
        bump(&u->stream_evictions);
        return o;
    }
    for (;;) {
        uint32_t s = u->hand;
        u->hand = (u->hand + 1) % u->budget;
        uint32_t p = u->ring[s];
        if (p == NO_SLOT || (u->flags[p] & F_PICK))
            continue;
        uint8_t f = u->flags[p];
        if (u->policy == USWAP_CLOCK && (f & F_REF)) {
            f &= (uint8_t)~F_REF;
            if ((f & F_DIRTY) && !(f & F_WP)) {
                uffd_protect(u, p, true);
                f |= F_WP;
            }
            u->flags[p] = f;
            continue;
        }
        return p;
    }
}

static bool page_is_zero(const uint8_t *pg)
{
    const uint64_t *w = (const uint64_t *)pg;
    for (size_t i = 0; i < PG / 8; i++)
        if (w[i])
            return false;
    return true;
}

static int cmp_page(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* The length of the run of neighbours starting at v[i] (v sorted), at most max. */
static uint32_t run_len(const uint32_t *v, uint32_t i, uint32_t n, uint32_t max)
{
    uint32_t j = i + 1;
    while (j < n && j - i < max && v[j] == v[j - 1] + 1)
        j++;
    return j - i;
}

/* Copies out dirty, non-zero pages [p, p + m), neighbours (victims i.. of
 * the batch): one frontswap batch call, then one pwrite per run of those
 * that must go to the file.  Sets TMEM/FILE in u->vflags[i..]. */
static void store_run(uswap_t *u, uint32_t i, uint64_t p, uint32_t m)
{
    bool to_file[EVICT_MAX];
    for (uint32_t k = 0; k < m; k++)
        to_file[k] = true;
    if (u->fs) {
        for (uint32_t k = 0; k < m; k++)
            u->vptr[k] = u->base + ((p + k) << PG_SHIFT);
        int r = tmem_frontswap_store_pages(u->fs, u->fs_type, p, m, u->vptr, u->vres);
        for (uint32_t k = 0; k < m; k++) {
            int rk = r < 0 ? r : u->vres[k];
            if (rk >= 0) {
                u->vflags[i + k] |= F_TMEM;
                bump(&u->tmem_ok);
                to_file[k] = rk == 1 || u->writethrough;
            } else {
                bump(&u->tmem_refused);
            }
        }
    }
    for (uint32_t k = 0; k < m;) {
        if (!to_file[k]) {
            k++;
            continue;
        }
        uint32_t j = k + 1;
        while (j < m && to_file[j])
            j++;
        swap_write(u, p + k, j - k, u->base + ((p + k) << PG_SHIFT));
        for (uint32_t q = k; q < j; q++)
            u->vflags[i + q] |= F_FILE;
        k = j;
    }
}

/* Evicts up to want resident pages at once (see the top of the file for
 * the order). */
static void evict_batch(uswap_t *u, uint32_t want)
{
    uint32_t *v = u->vict, n = 0;
    if (want > EVICT_MAX)
        want = EVICT_MAX;
    if (want > u->resident)
        want = (uint32_t)u->resident;
    while (n < want) {
        uint64_t p = pick_victim(u);
        u->flags[p] |= F_PICK;
        v[n++] = (uint32_t)p;
    }
    qsort(v, n, sizeof *v, cmp_page);
    bump(&u->evict_batches);

    /* write-protect the runs that hold a dirty page not protected yet */
    for (uint32_t i = 0, m; i < n; i += m) {
        m = run_len(v, i, n, n);
        for (uint32_t k = i; k < i + m; k++)
            if ((u->flags[v[k]] & (F_DIRTY | F_WP)) == F_DIRTY) {
                uffd_protect_range(u, v[i], m, true);
                break;
            }
    }
    /* what each victim keeps: clean ones their copies, zero pages nothing */
    for (uint32_t i = 0; i < n; i++) {
        uint8_t f = u->flags[v[i]];
        u->vflags[i] = f & (uint8_t)(F_TMEM | F_FILE);
        if (!(f & F_DIRTY)) {
            bump(&u->clean_evictions);  /* a copy is kept already (or zeros) */
        } else {
            u->vflags[i] = 0;
            if (page_is_zero(u->base + ((uint64_t)v[i] << PG_SHIFT))) {
                if (u->fs && tmem_frontswap_test(u->fs, u->fs_type, v[i]))
                    tmem_frontswap_invalidate_page(u->fs, u->fs_type, v[i]);
                bump(&u->zero_evictions);
                u->flags[v[i]] &= (uint8_t)~F_DIRTY;    /* nothing to store */
            }
        }
    }
    /* store the dirty ones, a run of neighbours at a time */
    for (uint32_t i = 0; i < n;) {
        if (!(u->flags[v[i]] & F_DIRTY)) {
            i++;
            continue;
        }
        uint32_t j = i + 1;
        while (j < n && v[j] == v[j - 1] + 1 && (u->flags[v[j]] & F_DIRTY))
            j++;
        store_run(u, i, v[i], j - i);
        i = j;
    }
    /* drop them, then let blocked writers retry */
    for (uint32_t i = 0, m; i < n; i += m) {
        m = run_len(v, i, n, n);
        if (madvise(u->base + ((uint64_t)v[i] << PG_SHIFT), (size_t)m << PG_SHIFT,
                    MADV_DONTNEED) < 0)
            die("madvise(MADV_DONTNEED)", errno);
    }
    for (uint32_t i = 0; i < n; i++) {
        u->flags[v[i]] = u->vflags[i];
        ring_remove(u, v[i]);
        bump(&u->evictions);
    }
    for (uint32_t i = 0, m; i < n; i += m) {
        m = run_len(v, i, n, n);
        uffd_wake_range(u, v[i], m);
    }
}

/* Room for n more resident pages (n <= budget): evicts a batch at a time. */
static void make_room(uswap_t *u, uint32_t n)
{
    while (u->resident + n > u->budget) {
        uint64_t need = u->resident + n - u->budget;
        /* Stream pages enough: a batch of those alone.  Else a small one
         * from the ring: what is left there is what the program touches at
         * random, and each page of a batch evicted ahead of need is one
         * more fault when the working set is about the budget. */
        uint32_t old = u->once_count > u->sq_keep ? u->once_count - u->sq_keep : 0;
        uint32_t want = old >= need ? (old < u->ebatch ? old : u->ebatch) : u->rbatch;
        if (want < need)
            want = (uint32_t)need;
        evict_batch(u, want);
    }
}

static void lost_page(uswap_t *u, uint64_t p)
{
    void *addr = u->base + (p << PG_SHIFT);
    bump(&u->lost);
    say("uswap: FATAL: page %p (slot %llu) is lost: only tmem held it and "
            "tmem lost it (-EIO; a daemon died or restarted without its state file, "
            "and writethrough was off)\n", addr, (unsigned long long)p);
    if (!u->on_lost)
        abort();
    u->on_lost(u->on_lost_arg, addr);
    if (!u->have_poison)
        abort();
    struct uffdio_poison ps = { .range = { .start = (uintptr_t)addr, .len = PG } };
    while (ioctl(u->uffd, UFFDIO_POISON, &ps) < 0) {
        if (errno == EAGAIN)
            continue;
        if (errno == EEXIST || errno == ENOENT || errno == ESRCH)
            break;
        die("UFFDIO_POISON", errno);
    }
    u->flags[p] = F_LOST;
}

/* Forgets resident page p without saving it (the program dropped it). */
static void forget_resident(uswap_t *u, uint64_t p)
{
    ring_remove(u, p);
    if (u->fs && tmem_frontswap_test(u->fs, u->fs_type, p))
        tmem_frontswap_invalidate_page(u->fs, u->fs_type, p);
    u->flags[p] = 0;
}

/* Is page p there for the program: present, or in the kernel's swap (a
 * swapped page comes back by an ordinary fault, never a missing one)?
 * /proc/self/pagemap says both (bits 63 and 62); mincore, the fallback,
 * knows only present pages. */
static bool mapped(uswap_t *u, uint64_t p)
{
    uintptr_t a = (uintptr_t)(u->base + (p << PG_SHIFT));
    uint64_t e;
    if (u->pagemap >= 0 &&
        pread(u->pagemap, &e, sizeof e, (off_t)((a >> PG_SHIFT) * sizeof e)) == sizeof e)
        return (e >> 62) != 0;
    unsigned char v = 0;
    if (mincore((void *)a, PG, &v) < 0)
        return true;
    return v & 1;
}

static uint32_t window(uswap_t *u, uint64_t p);
static void fill_run(uswap_t *u, uint64_t p, uint32_t n, bool write);

/* May page q come in with a fault on a page before it: not resident, not
 * lost, and its content kept (tmem, the file) or zeros? */
static bool fetchable(const uswap_t *u, uint64_t q)
{
    return !(u->flags[q] & (F_RES | F_LOST));
}

static void missing_fault(uswap_t *u, uint64_t p, bool write)
{
    uint8_t f = u->flags[p];
    if (f & F_RES) {
        /* Another thread's fault on the same page, read in the same batch and
         * already served: wake it.  Unless the program dropped the page behind
         * our back (madvise), which reads back as zeros. */
        if (mapped(u, p)) {
            uffd_wake(u, p);
            return;
        }
        forget_resident(u, p);
        f = 0;
    }
    if (f & F_LOST) {
        lost_page(u, p);
        return;
    }
    /* the page and, in a sequential stream, its evicted neighbours after it */
    uint32_t w = window(u, p), n = 1;
    while (n <= w && p + n < u->npages && fetchable(u, p + n))
        n++;
    if (u->ra_cur)
        u->ra_cur->next = p + n;    /* the stream goes on after the run */
    bump(&u->faults);           /* before the copy wakes the program */
    fill_run(u, p, n, write);
}

/* Brings pages [p, p + n) in (none resident; p the faulting page, the rest
 * fetched ahead): evicts first if the budget is full, then loads them from
 * tmem (one batch call per run tmem holds), the file (one pread per run
 * only the file holds), or zeros, and maps them (one UFFDIO_COPY per run of
 * equal protection).  p is mapped write-protected and clean when a copy
 * stays valid, the fault was a read and p is not a page the program writes
 * whenever it has it (H_WROTE); pages fetched ahead likewise.  The others
 * are mapped writable and dirty: zeros (a write would fault at once; an
 * unwritten zero page is dropped for a look at it), pages whose only copy
 * was taken (exclusive loads), and the guessed writes.  A page fetched
 * ahead that tmem lost is left alone: its own fault says so.  Pages
 * brought in by a sequential stream are queued as stream pages. */
static void fill_run(uswap_t *u, uint64_t p, uint32_t n, bool write)
{
    make_room(u, n);
    bump(&u->fill_runs);
    uint8_t *buf = u->fillbuf, f[FILL_MAX];
    bool ok[FILL_MAX], got[FILL_MAX], clean[FILL_MAX], wp[FILL_MAX], behind[FILL_MAX];
    for (uint32_t k = 0; k < n; k++) {
        f[k] = u->flags[p + k];
        ok[k] = true;
        got[k] = false;
        clean[k] = true;
        behind[k] = false;
    }
    /* tmem: a batch call per run it holds */
    for (uint32_t k = 0; k < n;) {
        if (!(f[k] & F_TMEM)) {
            k++;
            continue;
        }
        uint32_t j = k + 1;
        while (j < n && (f[j] & F_TMEM))
            j++;
        void *pages[FILL_MAX];
        int res[FILL_MAX];
        for (uint32_t q = k; q < j; q++)
            pages[q - k] = buf + ((size_t)q << PG_SHIFT);
        int r = tmem_frontswap_load_pages(u->fs, u->fs_type, p + k, j - k, pages, res);
        for (uint32_t q = k; q < j; q++) {
            int rq = r < 0 ? r : res[q - k];
            if (rq == 0) {
                bump(&u->tmem_loads);
                got[q] = true;
                if (!tmem_frontswap_test(u->fs, u->fs_type, p + q)) {
                    f[q] &= (uint8_t)~F_TMEM;       /* an exclusive load */
                    clean[q] = (f[q] & F_FILE) != 0;
                }
            } else if (f[q] & F_FILE) {
                f[q] &= (uint8_t)~F_TMEM;           /* the file has it */
            } else if (q == 0) {
                u->flags[p] &= (uint8_t)~F_TMEM;
                lost_page(u, p);                    /* aborts, or poisons p */
                ok[0] = false;
            } else {
                ok[q] = false;
            }
        }
        k = j;
    }
    /* the file: a pread per run only it holds */
    for (uint32_t k = 0; k < n;) {
        if (!ok[k] || got[k] || !(f[k] & F_FILE)) {
            k++;
            continue;
        }
        uint32_t j = k + 1;
        while (j < n && ok[j] && !got[j] && (f[j] & F_FILE))
            j++;
        swap_read(u, p + k, j - k, buf + ((size_t)k << PG_SHIFT));
        for (uint32_t q = k; q < j; q++)
            got[q] = true;
        k = j;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (ok[k] && !got[k]) {
            memset(buf + ((size_t)k << PG_SHIFT), 0, PG);
            bump(&u->zero_fills);
        }
        /* Zeros are mapped writable: a write would fault at once, and
         * evicting them unwritten costs a look for zeros, not a store. */
        wp[k] = clean[k] && (f[k] & (F_TMEM | F_FILE)) && (k > 0 || !write);
    }
    /* a read fault on a page the program writes whenever it has it */
    unsigned wrote = u->hint[p] >> H_WROTE_SHIFT;
    if (ok[0] && write)
        wrote = H_WROTE_MAX;
    else if (ok[0] && wp[0] && wrote > 0) {
        wp[0] = false;
        wrote--;
        bump(&u->dirty_guesses);
    }
    u->hint[p] = (uint8_t)((u->hint[p] & H_ONCE) | (wrote << H_WROTE_SHIFT));
    /* map them: a UFFDIO_COPY per run of equal protection */
    for (uint32_t k = 0; k < n;) {
        if (!ok[k]) {
            k++;
            continue;
        }
        uint32_t j = k + 1;
        while (j < n && ok[j] && wp[j] == wp[k])
            j++;
        uffd_copy_range(u, p + k, j - k, buf + ((size_t)k << PG_SHIFT), wp[k], behind + k);
        k = j;
    }
    for (uint32_t k = 0; k < n; k++) {
        if (!ok[k])
            continue;
        if (behind[k]) {
            /* mapped behind our back: what is there is what the program sees */
            say("uswap: page %p was mapped behind uswap's back; kept as it is\n",
                (void *)(u->base + ((p + k) << PG_SHIFT)));
            wp[k] = false;
            uffd_wake(u, p + k);
        }
        uint8_t g = f[k] & (uint8_t)(F_TMEM | F_FILE);
        if (!wp[k])
            g = F_DIRTY;        /* the kept copies are stale from now on */
        u->flags[p + k] = (uint8_t)(g | F_RES | F_REF | (wp[k] ? F_WP : 0));
        ring_insert(u, p + k);
        if (u->seq || k > 0)
            mark_once(u, p + k);
        if (k > 0)
            bump(&u->readaheads);
    }
}

/* Sequential streams: a fault at the page a stream expects next doubles
 * its window (up to u->ra_max) and returns it: that many following pages
 * may come in with the fault; any other fault starts a stream (the oldest
 * is replaced) and returns 0. */
static uint32_t window(uswap_t *u, uint64_t p)
{
    struct ra_stream *st = NULL;
    u->ra_cur = NULL;
    /* a stream page before it: the stream goes on, however many other
     * faults came between (the table below forgets a stream after
     * RA_STREAMS of them) */
    u->seq = p > 0 && (u->hint[p - 1] & H_ONCE);
    for (unsigned i = 0; i < RA_STREAMS; i++)
        if (u->ra[i].next == p && u->ra[i].next != 0) {
            st = &u->ra[i];
            break;
        }
    if (!st) {
        st = &u->ra[u->ra_victim];
        u->ra_victim = (u->ra_victim + 1) % RA_STREAMS;
        st->next = p + 1;
        st->win = 0;
        return 0;
    }
    u->seq = true;
    if (u->ra_max == 0) {           /* followed for eviction's sake only */
        st->next = p + 1;
        return 0;
    }
    st->win = st->win ? st->win * 2 : 1;
    if (st->win > u->ra_max)
        st->win = u->ra_max;
    u->ra_cur = st;
    return st->win;
}

static void wp_fault(uswap_t *u, uint64_t p)
{
    uint8_t f = u->flags[p];
    if (!(f & F_RES)) {
        uffd_wake(u, p);        /* stale: evicted since; it will take a missing fault */
        return;
    }
    if (!(f & F_WP)) {
        uffd_protect(u, p, false);  /* stale (released already): release and wake */
        return;
    }
    /* Clean becomes dirty: TMEM/FILE no longer hold the content.  A stale
     * tmem copy stays until the next store replaces it (or invalidate). */
    u->flags[p] = (uint8_t)((f & (uint8_t)~(F_WP | F_TMEM | F_FILE)) | F_DIRTY | F_REF);
    u->hint[p] = (uint8_t)((u->hint[p] & H_ONCE) | (H_WROTE_MAX << H_WROTE_SHIFT));
    bump(&u->wp_faults);        /* before the release wakes the program */
    uffd_protect(u, p, false);
}

static void *handler_main(void *arg)
{
    uswap_t *u = arg;
    in_handler = 1;
    struct uffd_msg msg[MSG_BATCH];
    for (;;) {
        struct pollfd pfd[2] = { { u->uffd, POLLIN, 0 }, { u->stopfd, POLLIN, 0 } };
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll on the userfaultfd", errno);
        }
        if (pfd[1].revents)
            break;
        ssize_t n = read(u->uffd, msg, sizeof msg);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            die("reading the userfaultfd", errno);
        }
        pthread_mutex_lock(&u->lock);
        for (size_t i = 0; i < (size_t)n / sizeof msg[0]; i++) {
            if (msg[i].event != UFFD_EVENT_PAGEFAULT)
                continue;
            uintptr_t a = (uintptr_t)msg[i].arg.pagefault.address;
            if (a < (uintptr_t)u->base || a >= (uintptr_t)u->base + u->size)
                continue;
            uint64_t p = (a - (uintptr_t)u->base) >> PG_SHIFT;
            uint64_t fl = msg[i].arg.pagefault.flags;
            if (fl & UFFD_PAGEFAULT_FLAG_WP)
                wp_fault(u, p);
            else
                missing_fault(u, p, (fl & UFFD_PAGEFAULT_FLAG_WRITE) != 0);
        }
        pthread_mutex_unlock(&u->lock);
    }
    return NULL;
}

/* ---- open / close ------------------------------------------------------------- */

static void *map_zeroed(size_t bytes)
{
    void *p = sys_mmap(bytes);
    return p == MAP_FAILED ? NULL : p;
}

static int open_swap(uswap_t *u, const uswap_config_t *cfg)
{
    int oflags = O_RDWR | O_CLOEXEC | (cfg->swap_direct ? O_DIRECT : 0);
    int fd;
    char path[4096];
    if (cfg->swap_path && cfg->swap_path[0]) {
        fd = open(cfg->swap_path, oflags | O_CREAT | O_TRUNC, 0600);
        if (fd < 0) {
            set_err("swap file %s: %s", cfg->swap_path, strerror(errno));
            return -1;
        }
        if (!cfg->keep_swap_file)
            unlink(cfg->swap_path);
    } else {
        const char *dir = getenv("TMPDIR");
        if (!dir || !dir[0])
            dir = "/var/tmp";
        if ((size_t)snprintf(path, sizeof path, "%s/uswap-XXXXXX", dir) >= sizeof path) {
            set_err("swap file: $TMPDIR is too long");
            errno = ENAMETOOLONG;
            return -1;
        }
        fd = mkostemp(path, O_CLOEXEC | (cfg->swap_direct ? O_DIRECT : 0));
        if (fd < 0) {
            set_err("swap file in %s: %s", dir, strerror(errno));
            return -1;
        }
        if (!cfg->keep_swap_file)
            unlink(path);
    }
    if (ftruncate(fd, (off_t)u->size) < 0) {
        int err = errno;
        set_err("swap file: sizing it to %zu bytes: %s", u->size, strerror(err));
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static void free_all(uswap_t *u)
{
    if (u->base)
        munmap(u->base, u->size);
    if (u->flags)
        munmap(u->flags, u->npages);
    if (u->slot)
        munmap(u->slot, u->npages * sizeof(uint32_t));
    if (u->alloc_len)
        munmap(u->alloc_len, u->npages * sizeof(uint32_t));
    if (u->ring)
        munmap(u->ring, (size_t)u->budget * sizeof(uint32_t) * 2);
    if (u->ext)
        munmap(u->ext, MAX_EXTENTS * sizeof(struct extent));
    if (u->bounce)
        munmap(u->bounce, 2 * PG);
    if (u->fillbuf)
        munmap(u->fillbuf, (size_t)FILL_MAX * PG);
    if (u->vict)
        munmap(u->vict, EVICT_SCRATCH);
    if (u->hint)
        munmap(u->hint, u->npages);
    if (u->slot_epoch)
        munmap(u->slot_epoch, (size_t)u->budget * sizeof(uint64_t));
    if (u->sq)
        munmap(u->sq, (size_t)u->sq_cap * sizeof(uint32_t));
    if (u->uffd >= 0)
        close(u->uffd);
    if (u->stopfd >= 0)
        close(u->stopfd);
    if (u->swapfd >= 0)
        close(u->swapfd);
    if (u->pagemap >= 0)
        close(u->pagemap);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

uswap_t *uswap_open(const uswap_config_t *cfg)
{
    if (!cfg || cfg->size == 0 || cfg->budget_pages == 0 ||
        (cfg->policy != USWAP_CLOCK && cfg->policy != USWAP_FIFO)) {
        set_err("uswap_open: size and budget must be > 0, policy clock or fifo");
        errno = EINVAL;
        return NULL;
    }
    uint64_t npages = ((uint64_t)cfg->size + PG - 1) >> PG_SHIFT;
    if (npages >= NO_SLOT || npages > TMEM_FRONTSWAP_MAX_SLOTS) {
        set_err("uswap_open: region of %zu bytes is too large", cfg->size);
        errno = EINVAL;
        return NULL;
    }
    uswap_t *u = calloc(1, sizeof *u);
    if (!u) {
        set_err("uswap_open: out of memory");
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&u->lock, NULL);
    u->uffd = u->stopfd = u->swapfd = -1;
    u->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    u->npages = npages;
    u->size = (size_t)(npages << PG_SHIFT);
    u->budget = (uint32_t)(cfg->budget_pages < npages ? cfg->budget_pages : npages);
    u->policy = cfg->policy;
    u->writethrough = cfg->writethrough != 0;
    u->fs = cfg->fs;
    u->fs_type = cfg->fs_type;
    u->on_lost = cfg->on_lost;
    u->on_lost_arg = cfg->on_lost_arg;
    /* a window must not push out what the program is using */
    u->ra_max = cfg->readahead < 0 ? 0 : (unsigned)cfg->readahead;
    if (u->ra_max > u->budget / 8)
        u->ra_max = u->budget / 8;
    if (u->ra_max > FILL_MAX - 1)
        u->ra_max = FILL_MAX - 1;
    /* a batch of evictions: 1/32 of the budget, at most a frontswap batch */
    u->ebatch = u->budget / 32;
    if (u->ebatch < 1)
        u->ebatch = 1;
    if (u->ebatch > EVICT_MAX)
        u->ebatch = EVICT_MAX;
    u->rbatch = u->ebatch / 32 ? u->ebatch / 32 : 1;
    int err = ENOMEM;

    char msg[256];
    uint64_t features = 0;
    int fd = uffd_open_api(&features, msg, sizeof msg);
    if (fd < 0) {
        set_err("%s", msg);
        err = -fd;
        goto fail;
    }
    u->uffd = fd;
    u->have_poison = (features & UFFD_FEATURE_POISON) != 0;

    u->flags = map_zeroed(npages);
    u->slot = map_zeroed(npages * sizeof(uint32_t));
    u->alloc_len = map_zeroed(npages * sizeof(uint32_t));
    u->ring = map_zeroed((size_t)u->budget * sizeof(uint32_t) * 2);
    u->ext = map_zeroed(MAX_EXTENTS * sizeof(struct extent));
    u->bounce = map_zeroed(2 * PG);
    u->fillbuf = map_zeroed((size_t)FILL_MAX * PG);
    u->vict = map_zeroed(EVICT_SCRATCH);
    u->hint = map_zeroed(npages);
    u->slot_epoch = map_zeroed((size_t)u->budget * sizeof(uint64_t));
    u->sq_cap = 2 * u->budget + FILL_MAX;
    u->sq_keep = u->budget / 4 < SQ_KEEP ? u->budget / 4 : SQ_KEEP;
    u->sq = map_zeroed((size_t)u->sq_cap * sizeof(uint32_t));
    if (!u->flags || !u->slot || !u->alloc_len || !u->ring || !u->ext || !u->bounce ||
        !u->fillbuf || !u->vict || !u->hint || !u->sq || !u->slot_epoch) {
        set_err("uswap_open: out of memory for the page tables");
        goto fail;
    }
    u->zero = u->bounce + PG;
    u->vptr = (const void **)(u->vict + EVICT_MAX);
    u->vres = (int *)(u->vptr + EVICT_MAX);
    u->vflags = (uint8_t *)(u->vres + EVICT_MAX);
    u->free_slots = u->ring + u->budget;
    for (uint32_t s = 0; s < u->budget; s++) {
        u->ring[s] = NO_SLOT;
        u->free_slots[s] = u->budget - 1 - s;
    }
    u->nfree = u->budget;
    u->ext[0] = (struct extent){ 0, npages };
    u->next = 1;

    u->base = sys_mmap(u->size);
    if (u->base == MAP_FAILED) {
        u->base = NULL;
        err = errno;
        set_err("uswap_open: mapping %zu bytes: %s", u->size, strerror(err));
        goto fail;
    }
    /* 4 KiB pages only (the fault unit), and no copy in a child */
    madvise(u->base, u->size, MADV_NOHUGEPAGE);
    if (madvise(u->base, u->size, MADV_DONTFORK) < 0) {
        err = errno;
        set_err("uswap_open: MADV_DONTFORK: %s", strerror(err));
        goto fail;
    }
    int r = uffd_register(u->uffd, u->base, u->size, msg, sizeof msg);
    if (r < 0) {
        set_err("%s", msg);
        err = -r;
        goto fail;
    }
    u->swapfd = open_swap(u, cfg);
    if (u->swapfd < 0) {
        err = errno;
        goto fail;
    }
    if (u->fs) {
        r = tmem_frontswap_init(u->fs, u->fs_type, npages);
        if (r < 0) {
            set_err("uswap_open: frontswap area %u: %s", u->fs_type, strerror(-r));
            err = -r;
            u->fs = NULL;
            goto fail;
        }
        if (u->writethrough)
            tmem_frontswap_writethrough(u->fs, 1);
    }
    u->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->stopfd < 0) {
        err = errno;
        set_err("uswap_open: eventfd: %s", strerror(err));
        goto fail;
    }
    /* the handler takes no signal: a handler touching the region there
     * would wait for itself */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r = pthread_create(&u->thread, NULL, handler_main, u);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0) {
        err = r;
        set_err("uswap_open: starting the handler thread: %s", strerror(r));
        goto fail;
    }
    u->thread_started = true;
    return u;
fail:
    if (u->fs)
        tmem_frontswap_invalidate_area(u->fs, u->fs_type);
    free_all(u);
    errno = err;
    return NULL;
}

void uswap_close(uswap_t *u)
{
    if (!u)
        return;
    if (u->thread_started) {
        uint64_t one = 1;
        if (write(u->stopfd, &one, sizeof one) < 0)
            die("stopping the handler", errno);
        pthread_join(u->thread, NULL);
    }
    struct uffdio_range range = { .start = (uintptr_t)u->base, .len = u->size };
    ioctl(u->uffd, UFFDIO_UNREGISTER, &range);
    if (u->fs)
        tmem_frontswap_invalidate_area(u->fs, u->fs_type);
    free_all(u);
}

void *uswap_base(const uswap_t *u) { return u->base; }
size_t uswap_size(const uswap_t *u) { return u->size; }

int uswap_contains(const uswap_t *u, const void *p)
{
    return u && (uintptr_t)p >= (uintptr_t)u->base &&
           (uintptr_t)p < (uintptr_t)u->base + u->size;
}

void uswap_stats(uswap_t *u, uswap_stats_t *o)
{
#define LD(x) atomic_load_explicit(&u->x, memory_order_relaxed)
    o->faults = LD(faults);
    o->wp_faults = LD(wp_faults);
    o->zero_fills = LD(zero_fills);
    o->tmem_loads = LD(tmem_loads);
    o->tmem_stores_ok = LD(tmem_ok);
    o->tmem_stores_refused = LD(tmem_refused);
    o->swap_reads = LD(swap_reads);
    o->swap_writes = LD(swap_writes);
    o->evictions = LD(evictions);
    o->clean_evictions = LD(clean_evictions);
    o->zero_evictions = LD(zero_evictions);
    o->lost = LD(lost);
    o->readaheads = LD(readaheads);
    o->evict_batches = LD(evict_batches);
    o->fill_runs = LD(fill_runs);
    o->stream_evictions = LD(stream_evictions);
    o->dirty_guesses = LD(dirty_guesses);
#undef LD
    pthread_mutex_lock(&u->lock);
    o->resident = u->resident;
    pthread_mutex_unlock(&u->lock);
    o->budget = u->budget;
}

/* ---- discard and the region heap ------------------------------------------------ */

/* Under lock: pages [first, first + n) read back as zeros. */
static void discard_locked(uswap_t *u, uint64_t first, uint64_t n)
{
    for (uint64_t p = first; p < first + n; p++) {
        uint8_t f = u->flags[p];
        if (f & F_RES)
            ring_remove(u, p);
        if (u->fs && tmem_frontswap_test(u->fs, u->fs_type, p))
            tmem_frontswap_invalidate_page(u->fs, u->fs_type, p);
        if (f)
            u->flags[p] = 0;
    }
    if (madvise(u->base + (first << PG_SHIFT), (size_t)(n << PG_SHIFT), MADV_DONTNEED) < 0)
        die("madvise(MADV_DONTNEED)", errno);
}

/* The whole pages inside [p, p + len): *first, *n. */
static int page_span(const uswap_t *u, const void *p, size_t len, uint64_t *first, uint64_t *n)
{
    uintptr_t a = (uintptr_t)p, b = a + len, lo = (uintptr_t)u->base;
    if (len == 0 || b < a || a < lo || b > lo + u->size)
        return -EINVAL;
    uint64_t f = (a - lo + PG - 1) >> PG_SHIFT, e = (b - lo) >> PG_SHIFT;
    *first = f;
    *n = e > f ? e - f : 0;
    return 0;
}

int uswap_discard(uswap_t *u, void *p, size_t len)
{
    uint64_t first, n;
    if (!u || page_span(u, p, len, &first, &n) < 0)
        return -EINVAL;
    if (n == 0)
        return 0;
    pthread_mutex_lock(&u->lock);
    discard_locked(u, first, n);
    pthread_mutex_unlock(&u->lock);
    return 0;
}

void *uswap_alloc(uswap_t *u, size_t len, size_t align)
{
    if (!u || len == 0 || (align & (align - 1))) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t npg = ((uint64_t)len + PG - 1) >> PG_SHIFT;
    uint64_t apg = align > PG ? align >> PG_SHIFT : 1;
    if (npg >= NO_SLOT) {
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_lock(&u->lock);
    for (size_t i = 0; i < u->next; i++) {
        struct extent e = u->ext[i];
        uint64_t s = (e.start + apg - 1) / apg * apg;
        if (s + npg > e.start + e.len)
            continue;
        uint64_t head = s - e.start, tail = e.start + e.len - (s + npg);
        if (head && tail) {
            if (u->next == MAX_EXTENTS)
                continue;       /* no room to split: try further on */
            memmove(&u->ext[i + 2], &u->ext[i + 1], (u->next - i - 1) * sizeof e);
            u->ext[i] = (struct extent){ e.start, head };
            u->ext[i + 1] = (struct extent){ s + npg, tail };
            u->next++;
        } else if (head) {
            u->ext[i].len = head;
        } else if (tail) {
            u->ext[i] = (struct extent){ s + npg, tail };
        } else {
            memmove(&u->ext[i], &u->ext[i + 1], (u->next - i - 1) * sizeof e);
            u->next--;
        }
        u->alloc_len[s] = (uint32_t)npg;
        pthread_mutex_unlock(&u->lock);
        return u->base + (s << PG_SHIFT);
    }
    pthread_mutex_unlock(&u->lock);
    errno = ENOMEM;
    return NULL;
}

size_t uswap_alloc_size(uswap_t *u, const void *p)
{
    if (!uswap_contains(u, p) || ((uintptr_t)p & (PG - 1)))
        return 0;
    uint64_t s = ((uintptr_t)p - (uintptr_t)u->base) >> PG_SHIFT;
    pthread_mutex_lock(&u->lock);
    size_t n = (size_t)u->alloc_len[s] << PG_SHIFT;
    pthread_mutex_unlock(&u->lock);
    return n;
}

int uswap_free(uswap_t *u, void *p, size_t len)
{
    if (!uswap_contains(u, p) || ((uintptr_t)p & (PG - 1)))
        return -EINVAL;
    uint64_t s = ((uintptr_t)p - (uintptr_t)u->base) >> PG_SHIFT;
    pthread_mutex_lock(&u->lock);
    uint64_t n = len ? ((uint64_t)len + PG - 1) >> PG_SHIFT : u->alloc_len[s];
    if (n == 0 || s + n > u->npages) {
        pthread_mutex_unlock(&u->lock);
        return -EINVAL;
    }
    /* the free list must not overlap the range: find where it goes */
    size_t i = 0;
    while (i < u->next && u->ext[i].start < s)
        i++;
    if ((i > 0 && u->ext[i - 1].start + u->ext[i - 1].len > s) ||
        (i < u->next && u->ext[i].start < s + n)) {
        pthread_mutex_unlock(&u->lock);
        return -EINVAL;         /* part of it is free already */
    }
    discard_locked(u, s, n);
    u->alloc_len[s] = 0;
    bool left = i > 0 && u->ext[i - 1].start + u->ext[i - 1].len == s;
    bool right = i < u->next && u->ext[i].start == s + n;
    if (left && right) {
        u->ext[i - 1].len += n + u->ext[i].len;
        memmove(&u->ext[i], &u->ext[i + 1], (u->next - i - 1) * sizeof u->ext[0]);
        u->next--;
    } else if (left) {
        u->ext[i - 1].len += n;
    } else if (right) {
        u->ext[i].start = s;
        u->ext[i].len += n;
    } else if (u->next < MAX_EXTENTS) {
        memmove(&u->ext[i + 1], &u->ext[i], (u->next - i) * sizeof u->ext[0]);
        u->ext[i] = (struct extent){ s, n };
        u->next++;
    } else {
        say("uswap: the free list is full: %llu pages leak\n",
                (unsigned long long)n);
    }
    pthread_mutex_unlock(&u->lock);
    return 0;
}
