/* SPDX-License-Identifier: MIT */
/*
 * tenant.c - a tenant of the experiment: its memory, its backing store, its
 * use of tmem, and its phases (xp.h).
 *
 * Memory.  A tenant's memory is a number of page frames with one exact LRU
 * over all of them, whatever they hold (file pages and anonymous pages
 * alike, as one kernel's memory).  An access to a page that is resident
 * moves it to the head; an access to an absent page faults: the frame at
 * the tail is evicted, then the page is read into it.
 *
 * Backing store.  Each tenant has a data file (its file pages, read-only)
 * and a swap file (one slot per anonymous page).  Every read or write of
 * either costs the I/O delay on top of the real pread/pwrite (which the host's
 * page cache serves): the experiment's model of a disk, one that serves
 * every tenant in parallel.
 *
 * Where pages go, per configuration:
 *   evicted file page   (always clean)  tmem: cleancache put; else dropped
 *   evicted anon page, swap copy valid  dropped (as a kernel's swap cache)
 *   evicted anon page, dirty            tmem: frontswap store, and if tmem
 *                                       refuses, a swap write; else a swap write
 *   fault on a file page                tmem: cleancache get; else file read
 *   fault on an anon page               never touched: zero-fill (no I/O);
 *                                       in frontswap: load (exclusive);
 *                                       else a swap read
 * A page from anywhere is checked in full against the version the tenant
 * last wrote (content.c); a hit checks the tag.
 *
 * Self-shrinking (tmem only): every `tick` accesses a tenant looks at its
 * frontswap pages and, if they did not grow for `inertia` ticks, moves
 * cur/hysteresis of them out of tmem into its swap file (Xen's
 * frontswap_selfshrink, drivers/xen/xen-selfballoon.c).  Without it the
 * persistent pages of a tenant that was hot would hold tmem forever.
 *
 * Threads and locking.  In the static and tmem configurations a process runs
 * one tenant and its memory is its own.  In the upper bound one process runs
 * N tenants in N threads over one memory: mem->lock guards the LRU, the
 * frames' owners, every page's state, frame and version, and the frames'
 * data of resident pages.  I/O happens without the lock: a page being
 * written out is PG_OUT (its owner waits on mem->cv), a page being read in
 * is PG_IN and its frame is off the LRU, so no one else touches either.
 * Only a page's owner ever reads a page in or changes its version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "bench_util.h"
#include "ctl/ctl_client.h"
#include "xp.h"

enum { PG_ABSENT, PG_RESIDENT, PG_IN, PG_OUT };

struct xp_pg {
    uint32_t frame;             /* PG_RESIDENT, PG_IN: its frame */
    uint32_t version;           /* anon: 0 never touched, then one per write; file: 0 */
    uint32_t slot;              /* file page number, or swap slot */
    uint8_t kind;               /* XP_FILE, XP_ANON */
    uint8_t state;              /* PG_* */
    uint8_t swap_valid;         /* anon: the swap file holds this version */
};

#define NO_FRAME UINT32_MAX

struct xp_frame {
    uint32_t prev, next;        /* the LRU (sentinel: index nframes); free: unlinked */
    int32_t tenant;             /* owner of the page held (index into mem->tenants) */
    uint32_t page;
};

struct xp_tenant;

struct xp_mem {
    pthread_mutex_t lock;
    pthread_cond_t cv;          /* a page left PG_OUT */
    uint32_t nframes;
    uint8_t *data;              /* nframes pages */
    struct xp_frame *fr;        /* nframes + 1 */
    uint32_t *free_list, nfree;
    struct xp_tenant **tenants; /* by local index */
};

struct xp_tenant {
    const struct xp_params *p;
    struct xp_shared *sh;
    struct xp_mem *mem;
    enum xp_kind kind;
    int id;                     /* the tenant's number */
    int local;                  /* its index in mem->tenants */
    bool threaded;              /* one of several threads of one process */
    struct xp_pg *pages;        /* p->hot_ws */
    uint32_t nfile, nanon;
    uint32_t *anon_page;        /* swap slot -> page index */
    int data_fd, swap_fd;
    tmem_client_t *client;
    tmem_cleancache_t *cc;
    int cc_fs;
    tmem_frontswap_t *fs;
    struct xp_counters *c;      /* this phase's counters */
    uint8_t *scratch, *outbuf;  /* a page each */
    uint64_t wake_adj_ns;       /* io_finish: the mean wake-up latency */
    uint64_t fs_cur;            /* self-shrink: frontswap pages at the last tick */
    int inertia_left;
    double *cdf_hot, *cdf_cold; /* zipf tables (NULL: uniform) */
    uint32_t *perm_hot, *perm_cold;
    pthread_t thread;
};

/* ------------------------------------------------------------------------
 * Failing: the first failure's message goes to the driver; the process
 * exits (its tenants are useless once one has failed).
 * ---------------------------------------------------------------------- */
static void xp_fail(struct xp_shared *sh, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 2, 3)));
static void xp_fail(struct xp_shared *sh, const char *fmt, ...)
{
    int expect = 0;
    if (atomic_compare_exchange_strong(&sh->failed, &expect, 1)) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(sh->err, sizeof(sh->err), fmt, ap);
        va_end(ap);
    }
    _exit(1);
}

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */
double xp_proc_cpu(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    const char *p = strrchr(buf, ')');     /* the name may hold spaces */
    unsigned long ut, st;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
                     &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double xp_host_busy(void)
{
    unsigned long long v[8] = { 0 };
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8)
        return 0;
    /* user nice system idle iowait irq softirq steal: idle and iowait are not busy */
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

void xp_data_path(const struct xp_params *p, int tenant, char *buf, size_t size)
{
    snprintf(buf, size, "%s/tenant%d.data", p->dir, tenant);
}

void xp_page_counts(const struct xp_params *p, int tenant, uint32_t *files, uint32_t *anons)
{
    uint32_t f = 0;
    for (uint32_t i = 0; i < p->hot_ws; i++)
        f += xp_is_file(p->seed, tenant, i, p->file_share);
    *files = f;
    *anons = p->hot_ws - f;
}

int xp_make_data_file(const struct xp_params *p, int tenant)
{
    char path[256];
    xp_data_path(p, tenant, path, sizeof(path));
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    uint8_t *page = malloc(XP_PAGE);
    if (!page)
        die("out of memory");
    uint32_t slot = 0;
    int r = 0;
    for (uint32_t i = 0; i < p->hot_ws && r == 0; i++) {
        if (!xp_is_file(p->seed, tenant, i, p->file_share))
            continue;
        xp_fill(page, p->seed, tenant, XP_FILE, i, 0);
        if (pwrite(fd, page, XP_PAGE, (off_t)slot * XP_PAGE) != (ssize_t)XP_PAGE)
            r = errno ? -errno : -EIO;
        slot++;
    }
    free(page);
    if (close(fd) != 0 && r == 0)
        r = -errno;
    return r;
}

static double own_cpu(const struct xp_tenant *t)
{
    return rusage_secs(t->threaded ? RUSAGE_THREAD : RUSAGE_SELF);
}

/* ------------------------------------------------------------------------
 * The backing store: real I/O plus the delay
 * ---------------------------------------------------------------------- */
/* The I/O started at t0 ends io_delay_us later.  A sleep overshoots by the
 * wake-up latency (tens of microseconds on these VMs), so the sleep is cut
 * by a running mean of the overshoot: the mean I/O time stays near the
 * delay asked for (the table reports what it was).  Sleeping, not spinning:
 * a disk wait costs no CPU. */
static void io_finish(struct xp_tenant *t, uint64_t t0)
{
    uint64_t delay = (uint64_t)t->p->io_delay_us * 1000u;
    uint64_t adj = t->wake_adj_ns < delay ? t->wake_adj_ns : delay;
    uint64_t until = t0 + delay - adj;
    struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };
    if (delay)
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
    uint64_t now = now_ns();
    if (delay && now > until)       /* mean of the wake-up latency, weight 1/16 */
        t->wake_adj_ns = (t->wake_adj_ns * 15 + (now - until)) / 16;
    t->c->io_wait_ns += now - t0;
}

static void file_read(struct xp_tenant *t, uint32_t slot, uint8_t *buf)
{
    uint64_t t0 = now_ns();
    if (pread(t->data_fd, buf, XP_PAGE, (off_t)slot * XP_PAGE) != (ssize_t)XP_PAGE)
        xp_fail(t->sh, "tenant %d: reading its data file: %s", t->id, strerror(errno));
    io_finish(t, t0);
    t->c->file_reads++;
}

/* o: the tenant whose swap file it is (in the upper bound, maybe another) */
static void swap_write(struct xp_tenant *t, struct xp_tenant *o, uint32_t slot,
                       const uint8_t *buf)
{
    uint64_t t0 = now_ns();
    if (pwrite(o->swap_fd, buf, XP_PAGE, (off_t)slot * XP_PAGE) != (ssize_t)XP_PAGE)
        xp_fail(t->sh, "tenant %d: writing a swap file: %s", t->id, strerror(errno));
    io_finish(t, t0);
    t->c->swap_writes++;
}

static void swap_read(struct xp_tenant *t, uint32_t slot, uint8_t *buf)
{
    uint64_t t0 = now_ns();
    if (pread(t->swap_fd, buf, XP_PAGE, (off_t)slot * XP_PAGE) != (ssize_t)XP_PAGE)
        xp_fail(t->sh, "tenant %d: reading its swap file: %s", t->id, strerror(errno));
    io_finish(t, t0);
    t->c->swap_reads++;
}

/* A call into tmem: timed and counted (started at t0). */
static void tmem_done(struct xp_tenant *t, uint64_t t0)
{
    t->c->tmem_ns += now_ns() - t0;
    t->c->tmem_calls++;
}

/* ------------------------------------------------------------------------
 * The LRU (mem->lock held)
 * ---------------------------------------------------------------------- */
static void lru_unlink(struct xp_mem *m, uint32_t f)
{
    struct xp_frame *fr = m->fr;
    fr[fr[f].prev].next = fr[f].next;
    fr[fr[f].next].prev = fr[f].prev;
    fr[f].prev = fr[f].next = NO_FRAME;
}

static void lru_push(struct xp_mem *m, uint32_t f)
{
    struct xp_frame *fr = m->fr;
    uint32_t s = m->nframes;
    fr[f].next = fr[s].next;
    fr[f].prev = s;
    fr[fr[s].next].prev = f;
    fr[s].next = f;
}

static uint8_t *frame_data(struct xp_mem *m, uint32_t f)
{
    return m->data + (size_t)f * XP_PAGE;
}

/* ------------------------------------------------------------------------
 * Eviction and faults
 * ---------------------------------------------------------------------- */
enum evict_action { EV_NONE, EV_DROP, EV_PUT_CLEAN, EV_SWAP_OUT };

struct eviction {
    enum evict_action act;
    struct xp_tenant *owner;
    uint32_t page;
};

/* Takes a frame for a fault (mem->lock held): a free one, else the LRU
 * tail's, whose page is detached and whose fate is returned in *ev (its
 * data copied to t->outbuf when it must go somewhere). */
static uint32_t take_frame(struct xp_tenant *t, struct eviction *ev)
{
    struct xp_mem *m = t->mem;
    ev->act = EV_NONE;
    if (m->nfree)
        return m->free_list[--m->nfree];
    uint32_t f = m->fr[m->nframes].prev;
    if (f == m->nframes)
        xp_fail(t->sh, "tenant %d: a memory with no frames", t->id);
    lru_unlink(m, f);
    struct xp_tenant *o = m->tenants[m->fr[f].tenant];
    struct xp_pg *v = &o->pages[m->fr[f].page];
    ev->owner = o;
    ev->page = m->fr[f].page;
    v->frame = NO_FRAME;
    if (v->kind == XP_FILE) {
        ev->act = o->cc ? EV_PUT_CLEAN : EV_DROP;
        v->state = PG_ABSENT;           /* the file still has it */
    } else if (v->swap_valid) {
        ev->act = EV_DROP;
        v->state = PG_ABSENT;
    } else {
        ev->act = EV_SWAP_OUT;
        v->state = PG_OUT;              /* until it is stored somewhere */
    }
    if (ev->act == EV_PUT_CLEAN || ev->act == EV_SWAP_OUT)
        memcpy(t->outbuf, frame_data(m, f), XP_PAGE);
    return f;
}

/* Carries out an eviction (without mem->lock). */
static void evict(struct xp_tenant *t, const struct eviction *ev)
{
    struct xp_tenant *o = ev->owner;
    struct xp_mem *m = t->mem;
    if (ev->act == EV_PUT_CLEAN) {
        tmem_cleancache_filekey_t key = tmem_cleancache_key_ino(1);
        t->c->cc_puts++;
        uint64_t t0 = now_ns();
        int r = tmem_cleancache_put_page(o->cc, o->cc_fs, &key, o->pages[ev->page].slot,
                                         t->outbuf);
        tmem_done(t, t0);
        if (r == 0)
            t->c->cc_puts_ok++;
    } else if (ev->act == EV_SWAP_OUT) {
        uint32_t slot = o->pages[ev->page].slot;
        bool in_tmem = false;
        if (o->fs) {
            t->c->fs_stores++;
            uint64_t t0 = now_ns();
            int r = tmem_frontswap_store(o->fs, 0, slot, t->outbuf);
            tmem_done(t, t0);
            if (r == 0) {
                t->c->fs_stores_ok++;
                in_tmem = true;
            }
        }
        if (!in_tmem)
            swap_write(t, o, slot, t->outbuf);
        pthread_mutex_lock(&m->lock);
        o->pages[ev->page].swap_valid = !in_tmem;
        o->pages[ev->page].state = PG_ABSENT;
        pthread_cond_broadcast(&m->cv);
        pthread_mutex_unlock(&m->lock);
    }
}

/* Reads page i of t into frame buffer dst (without mem->lock; the page is
 * PG_IN, so its fields are t's alone). */
static void read_in(struct xp_tenant *t, uint32_t i, uint8_t *dst)
{
    struct xp_pg *pg = &t->pages[i];
    const struct xp_params *p = t->p;
    if (pg->kind == XP_FILE) {
        if (t->cc) {
            tmem_cleancache_filekey_t key = tmem_cleancache_key_ino(1);
            t->c->cc_gets++;
            uint64_t t0 = now_ns();
            int r = tmem_cleancache_get_page(t->cc, t->cc_fs, &key, pg->slot, dst);
            tmem_done(t, t0);
            if (r == 0) {
                t->c->cc_hits++;
                if (xp_check(dst, p->seed, t->id, XP_FILE, i, 0, t->scratch))
                    return;
                t->c->verify_failed++;      /* counted; the file serves instead */
            }
        }
        file_read(t, pg->slot, dst);
        if (!xp_check(dst, p->seed, t->id, XP_FILE, i, 0, t->scratch))
            t->c->verify_failed++;
        return;
    }
    if (pg->version == 0) {             /* first touch: a zero-filled page, no I/O */
        pg->version = 1;
        xp_fill(dst, p->seed, t->id, XP_ANON, i, pg->version);
        pg->swap_valid = 0;
        t->c->first_touch++;
        return;
    }
    if (t->fs && tmem_frontswap_test(t->fs, 0, pg->slot)) {
        uint64_t t0 = now_ns();
        int r = tmem_frontswap_load(t->fs, 0, pg->slot, dst);
        tmem_done(t, t0);
        if (r == 0) {
            t->c->fs_loads++;
            pg->swap_valid = 0;         /* the swap file may hold an older version */
            if (!xp_check(dst, p->seed, t->id, XP_ANON, i, pg->version, t->scratch)) {
                t->c->verify_failed++;
                xp_fill(dst, p->seed, t->id, XP_ANON, i, pg->version);
            }
            return;
        }
        if (r != -ENOENT)
            xp_fail(t->sh, "tenant %d: frontswap lost page %" PRIu32 " (%s)", t->id, i,
                    tmem_strerror(r));
    }
    if (!pg->swap_valid)
        xp_fail(t->sh, "tenant %d: anonymous page %" PRIu32 " (version %" PRIu32
                ") is neither in tmem nor in the swap file", t->id, i, pg->version);
    swap_read(t, pg->slot, dst);
    if (!xp_check(dst, p->seed, t->id, XP_ANON, i, pg->version, t->scratch)) {
        t->c->verify_failed++;
        xp_fill(dst, p->seed, t->id, XP_ANON, i, pg->version);
    }
}

/* A write to a resident anonymous page (its frame is t's: mem->lock held,
 * or the page is PG_IN). */
static void write_page(struct xp_tenant *t, uint32_t i, uint8_t *data)
{
    struct xp_pg *pg = &t->pages[i];
    pg->version++;
    pg->swap_valid = 0;
    xp_fill(data, t->p->seed, t->id, XP_ANON, i, pg->version);
}

static void access_page(struct xp_tenant *t, uint32_t i, bool write)
{
    struct xp_mem *m = t->mem;
    struct xp_pg *pg = &t->pages[i];
    write = write && pg->kind == XP_ANON;
    t->c->accesses++;
    pthread_mutex_lock(&m->lock);
    while (pg->state == PG_OUT)
        pthread_cond_wait(&m->cv, &m->lock);
    if (pg->state == PG_RESIDENT) {
        uint32_t f = pg->frame;
        lru_unlink(m, f);
        lru_push(m, f);
        uint8_t *d = frame_data(m, f);
        if (!xp_check_tag(d, t->id, pg->kind, i, pg->version))
            t->c->verify_failed++;
        if (write)
            write_page(t, i, d);
        pthread_mutex_unlock(&m->lock);
        t->c->hits++;
        return;
    }
    if (pg->state != PG_ABSENT)
        xp_fail(t->sh, "tenant %d: page %" PRIu32 " in state %d on access", t->id, i,
                pg->state);
    struct eviction ev;
    uint32_t f = take_frame(t, &ev);
    pg->state = PG_IN;
    pg->frame = f;
    m->fr[f].tenant = t->local;
    m->fr[f].page = i;
    pthread_mutex_unlock(&m->lock);

    evict(t, &ev);
    uint8_t *d = frame_data(m, f);
    read_in(t, i, d);
    if (write)
        write_page(t, i, d);

    pthread_mutex_lock(&m->lock);
    pg->state = PG_RESIDENT;
    lru_push(m, f);
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------------
 * Self-shrinking of frontswap (tmem only)
 * ---------------------------------------------------------------------- */
static int shrink_take(void *arg, unsigned type, uint64_t offset, const void *page)
{
    struct xp_tenant *t = arg;
    (void)type;
    if (offset >= t->nanon)
        xp_fail(t->sh, "tenant %d: frontswap shrink handed slot %" PRIu64, t->id, offset);
    uint32_t i = t->anon_page[offset];
    struct xp_pg *pg = &t->pages[i];
    if (pg->state != PG_ABSENT)
        xp_fail(t->sh, "tenant %d: frontswap held resident page %" PRIu32, t->id, i);
    if (!xp_check(page, t->p->seed, t->id, XP_ANON, i, pg->version, t->scratch))
        t->c->verify_failed++;
    swap_write(t, t, (uint32_t)offset, page);
    t->c->shrink_writes++;
    pg->swap_valid = 1;
    return 0;
}

/* Xen's rule: growing (or empty) resets the inertia; after `inertia` ticks
 * without growth, shrink to cur - cur/hysteresis (0 at or below hysteresis
 * pages), and wait `inertia` ticks again. */
static void selfshrink_tick(struct xp_tenant *t)
{
    const struct xp_params *p = t->p;
    uint64_t last = t->fs_cur;
    uint64_t cur = tmem_frontswap_curr_pages(t->fs);
    t->fs_cur = cur;
    if (cur == 0 || cur > last) {
        t->inertia_left = p->inertia;
        return;
    }
    if (t->inertia_left && --t->inertia_left)
        return;
    uint64_t target = cur <= (uint64_t)p->hysteresis ? 0 : cur - cur / (uint64_t)p->hysteresis;
    int64_t r = tmem_frontswap_shrink(t->fs, target, shrink_take, t);
    if (r < 0)
        xp_fail(t->sh, "tenant %d: frontswap shrink: %s", t->id, tmem_strerror((int)r));
    t->fs_cur = tmem_frontswap_curr_pages(t->fs);
    t->inertia_left = p->inertia;
}

/* ------------------------------------------------------------------------
 * Set-up and tear-down
 * ---------------------------------------------------------------------- */
static void *xmalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        die("out of memory");
    return p;
}

static void mem_init(struct xp_mem *m, uint32_t nframes, int ntenants)
{
    memset(m, 0, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->nframes = nframes;
    m->data = mmap(NULL, (size_t)nframes * XP_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->data == MAP_FAILED)
        die("mmap of %" PRIu32 " frames: %s", nframes, strerror(errno));
    memset(m->data, 0, (size_t)nframes * XP_PAGE);    /* no first-touch faults later */
    m->fr = xmalloc(((size_t)nframes + 1) * sizeof(*m->fr));
    m->fr[nframes].prev = m->fr[nframes].next = nframes;
    m->free_list = xmalloc((size_t)nframes * sizeof(*m->free_list));
    for (uint32_t f = 0; f < nframes; f++)
        m->free_list[f] = nframes - 1 - f;  /* frame 0 first */
    m->nfree = nframes;
    m->tenants = xmalloc((size_t)ntenants * sizeof(*m->tenants));
}

static void mem_destroy(struct xp_mem *m)
{
    munmap(m->data, (size_t)m->nframes * XP_PAGE);
    free(m->fr);
    free(m->free_list);
    free(m->tenants);
    pthread_mutex_destroy(&m->lock);
    pthread_cond_destroy(&m->cv);
}

static void tenant_init(struct xp_tenant *t, const struct xp_params *p, struct xp_shared *sh,
                        struct xp_mem *m, enum xp_kind kind, int id, int local, bool threaded)
{
    memset(t, 0, sizeof(*t));
    t->p = p;
    t->sh = sh;
    t->mem = m;
    t->kind = kind;
    t->id = id;
    t->local = local;
    t->threaded = threaded;
    t->cc_fs = -1;
    t->pages = xmalloc((size_t)p->hot_ws * sizeof(*t->pages));
    t->anon_page = xmalloc((size_t)p->hot_ws * sizeof(*t->anon_page));
    for (uint32_t i = 0; i < p->hot_ws; i++) {
        struct xp_pg *pg = &t->pages[i];
        pg->frame = NO_FRAME;
        pg->state = PG_ABSENT;
        if (xp_is_file(p->seed, id, i, p->file_share)) {
            pg->kind = XP_FILE;
            pg->slot = t->nfile++;
        } else {
            pg->kind = XP_ANON;
            pg->slot = t->nanon;
            t->anon_page[t->nanon++] = i;
        }
    }
    t->scratch = xmalloc(XP_PAGE);
    t->outbuf = xmalloc(XP_PAGE);
    char path[256];
    xp_data_path(p, id, path, sizeof(path));
    t->data_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->data_fd < 0)
        xp_fail(sh, "tenant %d: %s: %s", id, path, strerror(errno));
    snprintf(path, sizeof(path), "%s/tenant%d.swap", p->dir, id);
    t->swap_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (t->swap_fd < 0 || ftruncate(t->swap_fd, (off_t)t->nanon * XP_PAGE) != 0)
        xp_fail(sh, "tenant %d: %s: %s", id, path, strerror(errno));
    if (p->zipf_s > 0) {
        t->cdf_hot = xp_zipf_cdf(p->hot_ws, p->zipf_s);
        t->cdf_cold = xp_zipf_cdf(p->cold_ws, p->zipf_s);
        t->perm_hot = xp_perm(p->hot_ws, p->seed ^ (0x5eedull + (uint64_t)id));
        t->perm_cold = xp_perm(p->cold_ws, p->seed ^ (0xc01dull + (uint64_t)id));
    }
    if (kind == XP_TMEM) {
        char name[32];
        snprintf(name, sizeof(name), "tenant%d", id);
        t->client = tmem_connect(sh->sock, name);
        if (!t->client)
            xp_fail(sh, "tenant %d: tmem_connect %s: %s", id, sh->sock, strerror(errno));
        t->cc = tmem_cleancache_open(t->client);
        if (!t->cc)
            xp_fail(sh, "tenant %d: tmem_cleancache_open: %s", id, strerror(errno));
        t->cc_fs = tmem_cleancache_init_fs(t->cc);
        if (t->cc_fs < 0)
            xp_fail(sh, "tenant %d: cleancache init_fs: %s", id, tmem_strerror(t->cc_fs));
        t->fs = tmem_frontswap_open(t->client, 0);
        if (!t->fs)
            xp_fail(sh, "tenant %d: tmem_frontswap_open: %s", id, strerror(errno));
        int r = tmem_frontswap_init(t->fs, 0, t->nanon ? t->nanon : 1);
        if (r < 0)
            xp_fail(sh, "tenant %d: frontswap init: %s", id, tmem_strerror(r));
        t->inertia_left = p->inertia;
        sh->client_id[id] = tmem_client_id(t->client);
    }
}

static void tenant_destroy(struct xp_tenant *t)
{
    if (t->fs)
        tmem_frontswap_close(t->fs);
    if (t->cc)
        tmem_cleancache_close(t->cc);
    if (t->client)
        tmem_client_close(t->client);
    close(t->data_fd);
    close(t->swap_fd);
    free(t->pages);
    free(t->anon_page);
    free(t->scratch);
    free(t->outbuf);
    free(t->cdf_hot);
    free(t->cdf_cold);
    free(t->perm_hot);
    free(t->perm_cold);
}

/* ------------------------------------------------------------------------
 * The phases
 * ---------------------------------------------------------------------- */
/* Waits at the barrier; the one tenant the barrier elects runs mark(). */
static void barrier(struct xp_tenant *t, void (*mark)(struct xp_tenant *, int), int arg)
{
    int r = pthread_barrier_wait(&t->sh->barrier);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD && mark)
        mark(t, arg);
    else if (r != 0 && r != PTHREAD_BARRIER_SERIAL_THREAD)
        xp_fail(t->sh, "tenant %d: barrier: %s", t->id, strerror(r));
}

static void mark_start(struct xp_tenant *t)
{
    struct xp_shared *sh = t->sh;
    sh->t_start_ns = now_ns();
    sh->busy0 = xp_host_busy();
    if (sh->daemon_pid > 0)
        sh->daemon_cpu0 = xp_proc_cpu(sh->daemon_pid);
}

/* The hot_weight configurations: an administrator who gives the tenant
 * about to be hot weight hot_weight and the others 1/100 of it (tmemctl set
 * --weight), so that ephemeral memory follows the hot tenant. */
static void set_weights(struct xp_tenant *t, int ph)
{
    struct xp_shared *sh = t->sh;
    for (int k = 0; k < t->p->tenants; k++) {
        uint32_t w = k == ph % t->p->tenants ? sh->hot_weight : sh->hot_weight / 100;
        int r = tmc_set(sh->ctl, sh->client_id[k], TMW_SET_WEIGHT, w ? w : 1, 0, 0);
        if (r < 0)
            xp_fail(sh, "tenant %d: tmemctl set --weight for tenant %d: %s", t->id, k,
                    strerror(-r));
    }
}

/* Closing barrier of phase ph (-1: every tenant is ready). */
static void mark_phase(struct xp_tenant *t, int ph)
{
    struct xp_shared *sh = t->sh;
    const struct xp_params *p = t->p;
    if (sh->hot_weight && ph + 1 < p->warmup_phases + p->phases)
        set_weights(t, ph + 1);
    uint64_t now = now_ns();
    if (ph < 0)
        sh->t_begin_ns = now;
    else
        sh->phase_end_ns[ph] = now;
    if (ph + 1 == p->warmup_phases)
        mark_start(t);
    atomic_store(&sh->phase, ph + 1);
}

static void mark_end(struct xp_tenant *t, int unused)
{
    struct xp_shared *sh = t->sh;
    (void)unused;
    sh->busy1 = xp_host_busy();
    if (sh->daemon_pid <= 0)
        return;
    sh->daemon_cpu1 = xp_proc_cpu(sh->daemon_pid);
    struct tmw_ctl_stats st;
    if (tmc_stats(sh->ctl, &st) == 0) {
        sh->have_daemon_stats = 1;
        sh->d_eph_pages = st.engine.ephemeral_pages;
        sh->d_pers_pages = st.engine.persistent_pages;
        sh->d_bytes_held = st.engine.bytes_held;
        sh->d_pages_compressed = st.engine.pages_compressed;
        sh->d_pages_whole = st.engine.pages_whole;
        sh->d_zalloc_bytes = st.engine.zalloc_bytes_used;
        sh->d_evictions = st.engine.evictions;
        sh->d_refused_nomem = st.engine.refused_nomem;
        sh->d_requests = st.requests;
        sh->d_lending = st.lending;
        sh->d_grown = st.lend_grown;
        sh->d_refused_units = st.lend_refused;
        sh->d_returned = st.lend_returned;
        sh->d_revoked = st.lend_revoked;
        sh->d_shrinks = st.lend_shrinks_asked;
        sh->d_lent[0] = st.lent_bytes[0];
        sh->d_lent[1] = st.lent_bytes[1];
    }
}

static void *tenant_main(void *arg)
{
    struct xp_tenant *t = arg;
    const struct xp_params *p = t->p;
    struct xp_shared *sh = t->sh;
    int total = p->warmup_phases + p->phases;
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);     /* the I/O delay is a precise sleep */
    double cpu0 = own_cpu(t);
    barrier(t, mark_phase, -1);
    for (int ph = 0; ph < total; ph++) {
        if (ph == p->warmup_phases)
            cpu0 = own_cpu(t);
        t->c = &sh->c[t->id][ph];
        struct xp_stream s;
        bool hot = ph % p->tenants == t->id;
        xp_stream_init(&s, p, t->id, ph, hot, t->cdf_hot, t->perm_hot, t->cdf_cold,
                       t->perm_cold);
        for (uint64_t a = 0; a < p->accesses; a++) {
            bool write;
            uint32_t i = xp_stream_next(&s, &write);
            access_page(t, i, write);
            if (t->fs && p->shrink && (a + 1) % p->tick == 0)
                selfshrink_tick(t);
        }
        barrier(t, mark_phase, ph);
    }
    sh->tenant_cpu[t->id] = own_cpu(t) - cpu0;
    barrier(t, mark_end, 0);
    barrier(t, NULL, 0);        /* nobody disconnects before tmemd's figures are read */
    return NULL;
}

int xp_run_tenants(const struct xp_params *p, enum xp_kind kind, int first, int count,
                   uint32_t mem_pages, struct xp_shared *sh)
{
    struct xp_mem mem;
    mem_init(&mem, mem_pages, count);
    struct xp_tenant *ts = xmalloc((size_t)count * sizeof(*ts));
    for (int k = 0; k < count; k++) {
        tenant_init(&ts[k], p, sh, &mem, kind, first + k, k, count > 1);
        mem.tenants[k] = &ts[k];
    }
    if (count == 1) {
        tenant_main(&ts[0]);
    } else {
        for (int k = 0; k < count; k++) {
            int r = pthread_create(&ts[k].thread, NULL, tenant_main, &ts[k]);
            if (r)
                xp_fail(sh, "pthread_create: %s", strerror(r));
        }
        for (int k = 0; k < count; k++)
            pthread_join(ts[k].thread, NULL);
    }
    for (int k = 0; k < count; k++)
        tenant_destroy(&ts[k]);
    free(ts);
    mem_destroy(&mem);
    return atomic_load(&sh->failed) ? -1 : 0;
}
