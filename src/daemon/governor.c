/* SPDX-License-Identifier: MIT */
/*
 * governor.c - the memory governor: lets the engine hold free host memory
 * up to a limit that leaves a reserve, and gives memory back (evicts
 * ephemeral pages, releases frames) when the host needs it.
 *
 * Every interval a thread reads MemAvailable (cfg.meminfo_path) and the PSI
 * memory line "some avg10=" (cfg.psi_path; without it MemAvailable alone
 * decides), asks the pure policy tmd_governor_decide() (governor.h) for the
 * next limit, applies it with tmem_set_max_bytes() and counts and logs the
 * change.  The thread waits on a condition variable, so stopping is prompt.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/governor.h"
#include "daemon/lend.h"

#define PAGE_MASK ((uint64_t)TMEM_PAGE_SIZE - 1)

/* ------------------------------------------------------------------------
 * The policy (pure)
 * ---------------------------------------------------------------------- */
const char *tmd_fmt_bytes(char *buf, size_t len, uint64_t b)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    unsigned u = 0;
    while (u < 6 && b >= (1ull << (10 * (u + 1))))
        u++;
    if (u == 0) {
        snprintf(buf, len, "%" PRIu64 " B", b);
        return buf;
    }
    uint64_t whole = b >> (10 * u), rest = b & ((1ull << (10 * u)) - 1);
    unsigned tenth = (unsigned)((double)rest / (double)(1ull << (10 * u)) * 10.0 + 0.5);
    if (tenth == 10) {
        whole++;
        tenth = 0;
    }
    if (tenth)
        snprintf(buf, len, "%" PRIu64 ".%u %s", whole, tenth, unit[u]);
    else
        snprintf(buf, len, "%" PRIu64 " %s", whole, unit[u]);
    return buf;
}

static uint64_t min64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static uint64_t ceiling_of(const struct tmd_gov_input *in)
{
    uint64_t room = in->held + in->mem_available;
    room = room > in->reserve ? room - in->reserve : 0;
    return min64(in->max_memory, room) & ~PAGE_MASK;
}

static uint64_t floor_of(const struct tmd_gov_input *in)
{
    uint64_t f = (in->pinned + TMD_GOV_FLOOR + PAGE_MASK) & ~PAGE_MASK;
    return min64(in->max_memory, f);
}

static uint64_t pct_of(uint64_t v, double pct)
{
    double x = (double)v * pct / 100.0;
    return x >= (double)v ? v : (uint64_t)x;
}

/* "memory pressure some avg10=23.5% > 10%, MemAvailable 812 MiB below the
 * reserve 1 GiB": why the host is under pressure. */
static void pressure_reason(const struct tmd_gov_input *in, bool psi_hi, bool low, char *why,
                            size_t whylen)
{
    char a[32], r[32];
    int n = 0;
    if (psi_hi)
        n = snprintf(why, whylen, "memory pressure some avg10=%.1f%% > %g%%", in->psi_avg10,
                     in->psi_threshold);
    if (low && n >= 0 && (size_t)n < whylen)
        snprintf(why + n, whylen - (size_t)n, "%sMemAvailable %s below the reserve %s",
                 n ? ", " : "", tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                 tmd_fmt_bytes(r, sizeof(r), in->reserve));
}

uint64_t tmd_governor_decide(const struct tmd_gov_input *in, struct tmd_gov_memo *memo,
                             enum tmd_gov_verdict *verdict, char *why, size_t whylen)
{
    char scratch[8], a[32], b[32], c[32];
    if (!why || !whylen) {
        why = scratch;
        whylen = sizeof(scratch);
    }
    why[0] = '\0';
    enum tmd_gov_verdict v = TMD_GOV_HOLD;
    uint64_t limit = in->limit, next = limit;
    uint64_t ceil = ceiling_of(in), floor = floor_of(in);
    uint64_t band = max64(TMD_GOV_BAND_MIN, in->max_memory / 64);
    bool psi_known = in->psi_avg10 >= 0;
    bool psi_hi = psi_known && in->psi_avg10 > in->psi_threshold;
    bool low = in->mem_available < in->reserve;

    if (psi_hi || low) {
        /* give back shrink_step% of what is held (of the limit, if less) */
        memo->calm = 0;
        uint64_t base = min64(limit, max64(in->held, floor));
        uint64_t target = max64(floor, (base - pct_of(base, in->step_pct)) & ~PAGE_MASK);
        pressure_reason(in, psi_hi, low, why, whylen);
        if (target < limit) {
            next = target;
            v = TMD_GOV_SHRINK;
        } else {
            size_t n = strlen(why);
            snprintf(why + n, whylen - n, ", but only persistent data is left (floor %s)",
                     tmd_fmt_bytes(a, sizeof(a), floor));
            v = TMD_GOV_HOLD_FLOOR;
        }
    } else {
        bool calm = !psi_known || in->psi_avg10 <= in->psi_threshold / 2;
        memo->calm = calm ? memo->calm + (memo->calm < UINT32_MAX) : 0;
        if (limit > ceil + band && max64(ceil, floor) < limit) {
            /* the host's other users took memory: nothing to evict (ceil >=
             * held), but the engine must not grow into the reserve */
            next = max64(ceil, floor);
            v = TMD_GOV_LOWER;
            snprintf(why, whylen, "MemAvailable %s leaves room for %s above the reserve %s",
                     tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                     tmd_fmt_bytes(b, sizeof(b), ceil), tmd_fmt_bytes(c, sizeof(c), in->reserve));
        } else if (memo->calm >= TMD_GOV_CALM_INTERVALS && ceil > limit &&
                   (ceil >= limit + band || ceil == in->max_memory)) {
            uint64_t step = max64(pct_of(in->max_memory, in->step_pct), TMEM_PAGE_SIZE);
            next = min64(ceil, (limit + step) & ~PAGE_MASK);
            if (next <= limit)
                next = ceil;
            v = TMD_GOV_GROW;
            if (psi_known)
                snprintf(why, whylen, "pressure passed (some avg10=%.1f%% <= %g%% for %u "
                         "intervals, MemAvailable %s): growing toward %s", in->psi_avg10,
                         in->psi_threshold / 2, memo->calm,
                         tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                         tmd_fmt_bytes(b, sizeof(b), ceil));
            else
                snprintf(why, whylen, "MemAvailable %s above the reserve %s for %u "
                         "intervals: growing toward %s",
                         tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                         tmd_fmt_bytes(c, sizeof(c), in->reserve), memo->calm,
                         tmd_fmt_bytes(b, sizeof(b), ceil));
        }
    }
    if (verdict)
        *verdict = v;
    return next;
}

uint64_t tmd_governor_first(const struct tmd_gov_input *in, char *why, size_t whylen)
{
    char a[32], b[32], c[32], m[32];
    uint64_t ceil = ceiling_of(in), floor = floor_of(in);
    bool psi_hi = in->psi_avg10 >= 0 && in->psi_avg10 > in->psi_threshold;
    bool low = in->mem_available < in->reserve;
    if (psi_hi || low) {
        pressure_reason(in, psi_hi, low, why, whylen);
        return floor;
    }
    uint64_t first = max64(ceil, floor);
    if (first == in->max_memory)
        snprintf(why, whylen, "the configured max_memory (MemAvailable %s, reserve %s)",
                 tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                 tmd_fmt_bytes(b, sizeof(b), in->reserve));
    else
        snprintf(why, whylen, "MemAvailable %s leaves room for %s above the reserve %s "
                 "(max_memory %s)", tmd_fmt_bytes(a, sizeof(a), in->mem_available),
                 tmd_fmt_bytes(b, sizeof(b), ceil), tmd_fmt_bytes(c, sizeof(c), in->reserve),
                 tmd_fmt_bytes(m, sizeof(m), in->max_memory));
    return first;
}

/* ------------------------------------------------------------------------
 * Reading the host
 * ---------------------------------------------------------------------- */
#define PROC_MAX (1u << 20)     /* what is read of a file for its line */

/* path opened for fgets: a regular file (/proc's are), opened without
 * blocking; NULL if it cannot be. */
static FILE *open_proc(const char *path)
{
    char why[100];
    int fd = tmd_open_regular(path, 0, why, sizeof(why));
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f && fd >= 0)
        close(fd);
    return f;
}

/* MemAvailable (and MemTotal) in bytes.  0, or -1 if the file or the
 * MemAvailable line (in its first PROC_MAX bytes) is missing. */
static int read_meminfo(const char *path, uint64_t *avail)
{
    FILE *f = open_proc(path);
    if (!f)
        return -1;
    char line[256];
    unsigned long long kb;
    int rc = -1;
    for (size_t n = 0; n < PROC_MAX && fgets(line, sizeof(line), f); n += strlen(line))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            *avail = kb > UINT64_MAX / 1024 ? UINT64_MAX : (uint64_t)kb * 1024;
            rc = 0;
            break;
        }
    fclose(f);
    return rc;
}

/* PSI "some avg10" in percent; -1 if the file or the line is missing. */
static double read_psi(const char *path)
{
    FILE *f = open_proc(path);
    if (!f)
        return -1;
    char line[256];
    double v = -1, x;
    for (size_t n = 0; n < PROC_MAX && fgets(line, sizeof(line), f); n += strlen(line))
        if (sscanf(line, "some avg10=%lf", &x) == 1) {
            if (x >= 0 && x <= 100)
                v = x;
            break;
        }
    fclose(f);
    return v;
}

/* ------------------------------------------------------------------------
 * The thread
 * ---------------------------------------------------------------------- */
struct tmd_governor {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* CLOCK_MONOTONIC */
    bool stop, running;
    struct tmd_gov_memo memo;
    bool have_psi;              /* the last read found the PSI line */
    bool meminfo_bad;           /* the last read of meminfo failed (logged once) */
    bool floor_logged;          /* "only persistent data is left" logged this episode */
};

/* What the daemon holds: its engine's memory and the memory it lends
 * (lend.c); ephemeral units lent are freeable, persistent ones pinned. */
static void gather(struct tmd *d, struct tmd_gov_input *in, const tmem_stats_t *s)
{
    const struct tmd_config *cfg = &d->cfg;
    struct tmd_lend_totals lt;
    tmd_lend_totals(d, &lt);
    uint64_t freeable = (uint64_t)tmem_freeable_pages(d->engine) * TMEM_PAGE_SIZE + lt.lent_bytes[0];
    uint64_t limit = atomic_load(&d->gov.limit);
    in->limit = limit ? limit : s->max_bytes;
    in->held = s->bytes_held + lt.lent_bytes[0] + lt.lent_bytes[1];
    in->pinned = in->held > freeable ? in->held - freeable : 0;
    in->max_memory = cfg->max_memory;
    in->reserve = cfg->reserve;
    in->psi_threshold = cfg->psi_threshold;
    in->step_pct = cfg->shrink_step_pct;
}

/* Sets the limit to `to` (limit_lock held) and logs it under who, with
 * what it evicted and released (*evicted, *released). */
void tmd_set_limit_logged(struct tmd *d, uint64_t from, uint64_t to, const char *who,
                          const char *why, uint64_t *evicted, uint64_t *released)
{
    tmem_stats_t before, after;
    tmem_stats_get(d->engine, &before);
    int rc = tmd_lend_set_limit(d, to);
    tmem_stats_get(d->engine, &after);
    *evicted = after.evictions - before.evictions;
    *released = after.relinquished_frames - before.relinquished_frames;
    atomic_store(&d->gov.limit, to);
    char a[32], b[32], extra[96] = "";
    if (*evicted || *released)
        snprintf(extra, sizeof(extra), " (evicted %" PRIu64 " pages, released %" PRIu64
                 " frames)", *evicted, *released);
    tmd_log(LOG_INFO, "%s: limit %s -> %s: %s%s", who, tmd_fmt_bytes(a, sizeof(a), from),
            tmd_fmt_bytes(b, sizeof(b), to), why, extra);
    if (rc == -ENOMEM)
        tmd_log(LOG_WARNING, "%s: persistent data alone exceeds the limit %s: puts are "
                "refused until clients flush", who, tmd_fmt_bytes(b, sizeof(b), to));
    else if (rc < 0)
        tmd_log(LOG_ERR, "%s: setting the limit to %s failed: %s", who,
                tmd_fmt_bytes(b, sizeof(b), to), tmem_strerror(rc));
}

/* Sets the limit and counts the change and its cost. */
static void apply(struct tmd *d, uint64_t from, uint64_t to, const char *why)
{
    uint64_t evicted, released;
    tmd_set_limit_logged(d, from, to, "governor", why, &evicted, &released);
    atomic_fetch_add(&d->gov.pages_evicted, evicted);
    atomic_fetch_add(&d->gov.pages_released, released);
    if (to < from)
        atomic_fetch_add(&d->gov.shrinks, 1);
    else if (to > from)
        atomic_fetch_add(&d->gov.grows, 1);
}

/* One interval: read, decide, apply (limit_lock held: the limit and the
 * governor's keys are not changed meanwhile, config.c). */
static void govern_locked(struct tmd *d, struct tmd_governor *g)
{
    const struct tmd_config *cfg = &d->cfg;
    struct tmd_gov_input in;
    tmem_stats_t s;
    if (read_meminfo(cfg->meminfo_path, &in.mem_available) != 0) {
        if (!g->meminfo_bad)
            tmd_log(LOG_ERR, "governor: cannot read MemAvailable from %s: holding the limit "
                    "until it can", cfg->meminfo_path);
        g->meminfo_bad = true;
        return;
    }
    if (g->meminfo_bad)
        tmd_log(LOG_INFO, "governor: %s readable again", cfg->meminfo_path);
    g->meminfo_bad = false;
    in.psi_avg10 = read_psi(cfg->psi_path);
    if ((in.psi_avg10 >= 0) != g->have_psi) {
        g->have_psi = in.psi_avg10 >= 0;
        tmd_log(LOG_INFO, g->have_psi ? "governor: memory pressure readable at %s"
                                      : "governor: no memory pressure at %s: MemAvailable "
                                        "alone decides", cfg->psi_path);
    }
    tmem_stats_get(d->engine, &s);
    gather(d, &in, &s);
    atomic_store(&d->gov.mem_available, in.mem_available);
    atomic_store(&d->gov.psi_x100,
                 in.psi_avg10 >= 0 ? (uint64_t)(in.psi_avg10 * 100.0 + 0.5) : 0);

    enum tmd_gov_verdict v;
    char why[256];
    uint64_t next = tmd_governor_decide(&in, &g->memo, &v, why, sizeof(why));
    if (v == TMD_GOV_HOLD_FLOOR) {
        if (!g->floor_logged)
            tmd_log(LOG_WARNING, "governor: %s", why);
        g->floor_logged = true;
    } else if (v != TMD_GOV_SHRINK) {
        g->floor_logged = false;
    }
    if (next != in.limit)
        apply(d, in.limit, next, why);
    else
        tmd_log(LOG_DEBUG, "governor: limit %" PRIu64 " held %" PRIu64 " pinned %" PRIu64
                " MemAvailable %" PRIu64 " psi %.2f: no change", in.limit, in.held, in.pinned,
                in.mem_available, in.psi_avg10);
}

static void govern(struct tmd *d, struct tmd_governor *g)
{
    pthread_mutex_lock(&d->limit_lock);
    govern_locked(d, g);
    pthread_mutex_unlock(&d->limit_lock);
}

static void *governor_main(void *arg)
{
    struct tmd *d = arg;
    struct tmd_governor *g = d->governor;
    pthread_mutex_lock(&g->lock);
    while (!g->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        uint64_t ns = (uint64_t)until.tv_nsec +
                      (uint64_t)TMD_CFG(d, governor_interval_ms) * 1000000u;
        until.tv_sec += (time_t)(ns / 1000000000u);
        until.tv_nsec = (long)(ns % 1000000000u);
        int rc = 0;
        while (!g->stop && rc != ETIMEDOUT)
            rc = pthread_cond_timedwait(&g->cond, &g->lock, &until);
        if (g->stop || atomic_load(&d->stopping))
            break;
        pthread_mutex_unlock(&g->lock);
        govern(d, g);
        pthread_mutex_lock(&g->lock);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

int tmd_governor_start(struct tmd *d)
{
    const struct tmd_config *cfg = &d->cfg;
    char a[32], b[32], why[256];
    struct tmd_governor *g = calloc(1, sizeof(*g));
    if (!g) {
        tmd_log(LOG_ERR, "governor: out of memory");
        return -1;
    }
    if (!cfg->governor) {
        int rc = tmd_lend_set_limit(d, cfg->max_memory);
        tmem_stats_t s;
        tmem_stats_get(d->engine, &s);
        s.max_bytes = cfg->max_memory;
        atomic_store(&d->gov.limit, s.max_bytes);
        free(g);
        if (rc < 0 && rc != -ENOMEM) {
            tmd_log(LOG_ERR, "governor: setting the limit to %s failed: %s",
                    tmd_fmt_bytes(a, sizeof(a), cfg->max_memory), tmem_strerror(rc));
            return -1;
        }
        tmd_log(LOG_INFO, "governor: off; the limit stays at %s",
                tmd_fmt_bytes(a, sizeof(a), s.max_bytes));
        return 0;
    }

    struct tmd_gov_input in;
    tmem_stats_t s;
    if (read_meminfo(cfg->meminfo_path, &in.mem_available) != 0) {
        tmd_log(LOG_ERR, "governor: cannot read MemAvailable from %s", cfg->meminfo_path);
        free(g);
        return -1;
    }
    in.psi_avg10 = read_psi(cfg->psi_path);
    g->have_psi = in.psi_avg10 >= 0;
    if (g->have_psi)
        tmd_log(LOG_INFO, "governor: every %u ms, reserve %s, ceiling %s, gives back %g%% "
                "per interval when some avg10 > %g%% (%s) or MemAvailable < reserve",
                cfg->governor_interval_ms, tmd_fmt_bytes(a, sizeof(a), cfg->reserve),
                tmd_fmt_bytes(b, sizeof(b), cfg->max_memory), cfg->shrink_step_pct,
                cfg->psi_threshold, cfg->psi_path);
    else
        tmd_log(LOG_INFO, "governor: every %u ms, reserve %s, ceiling %s, gives back %g%% "
                "per interval when MemAvailable < reserve; no memory pressure at %s "
                "(MemAvailable alone decides)", cfg->governor_interval_ms,
                tmd_fmt_bytes(a, sizeof(a), cfg->reserve),
                tmd_fmt_bytes(b, sizeof(b), cfg->max_memory), cfg->shrink_step_pct,
                cfg->psi_path);
    tmem_stats_get(d->engine, &s);
    gather(d, &in, &s);
    atomic_store(&d->gov.mem_available, in.mem_available);
    atomic_store(&d->gov.psi_x100,
                 in.psi_avg10 >= 0 ? (uint64_t)(in.psi_avg10 * 100.0 + 0.5) : 0);
    uint64_t first = tmd_governor_first(&in, why, sizeof(why));
    int rc = tmd_lend_set_limit(d, first);
    tmem_stats_get(d->engine, &s);
    s.max_bytes = first;
    atomic_store(&d->gov.limit, s.max_bytes);
    if (rc < 0 && rc != -ENOMEM) {
        tmd_log(LOG_ERR, "governor: setting the limit to %s failed: %s",
                tmd_fmt_bytes(a, sizeof(a), first), tmem_strerror(rc));
        free(g);
        return -1;
    }
    tmd_log(LOG_INFO, "governor: limit %s: %s", tmd_fmt_bytes(a, sizeof(a), s.max_bytes), why);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&g->lock, NULL);
    d->governor = g;
    if ((rc = pthread_create(&g->thread, NULL, governor_main, d)) != 0) {
        tmd_log(LOG_ERR, "governor: cannot start its thread: %s", strerror(rc));
        d->governor = NULL;
        pthread_cond_destroy(&g->cond);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return -1;
    }
    g->running = true;
    return 0;
}

void tmd_governor_stop(struct tmd *d)
{
    struct tmd_governor *g = d->governor;
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stop = true;
    pthread_cond_signal(&g->cond);
    pthread_mutex_unlock(&g->lock);
    if (g->running)
        pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
    d->governor = NULL;
    free(g);
}
