/* SPDX-License-Identifier: MIT */
/*
 * xp.h - the multi-tenant experiment (tmem-experiment): what its parts
 * share.  docs/experiment.md describes the experiment and its figures.
 *
 * N tenants, each with a fixed private memory (one LRU over its file pages
 * and its anonymous pages, like a kernel's memory), a data file of its own
 * and a swap file of its own.  The run is a sequence of phases separated by
 * a barrier; in phase k tenant k mod N is hot (a working set larger than its
 * private memory), the others are cold (a working set that fits).  Every
 * tenant makes the same accesses in every configuration (the streams come
 * from fixed seeds), so the configurations differ only in where evicted
 * pages go and where missing pages come from:
 *
 *   static    each tenant has P + R/N private pages, no tmem;
 *   tmem      each tenant has P private pages; evicted clean file pages go
 *             to cleancache, evicted dirty anonymous pages to frontswap, on
 *             a real tmemd holding at most R pages' worth of memory;
 *   upper     one process with all N*P + R pages as one memory (one LRU)
 *             running the N workloads in N threads: the upper bound.
 *
 * Parts:
 *   content.c     page contents (a tag and text-like data per page version),
 *                 their check, the access streams;
 *   tenant.c      a tenant's memory: the LRU, faults and evictions, the
 *                 backing store with its delay, the tmem layers and the
 *                 frontswap self-shrinker, the phase loop;
 *   experiment.c  options, data files, tmemd, the runs, the results.
 */
#ifndef TMEM_XP_H
#define TMEM_XP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tmem/cleancache.h"
#include "tmem/frontswap.h"

#define XP_PAGE        4096u
#define XP_MAX_TENANTS 16
#define XP_MAX_PHASES  256

/* ------------------------------------------------------------------------
 * Parameters (set by main, read-only afterwards; children get a copy)
 * ---------------------------------------------------------------------- */
struct xp_params {
    int tenants;                /* N */
    uint32_t private_pages;     /* P: a tenant's own memory under tmem */
    uint32_t slack_pages;       /* R: split N ways (static) or tmemd's memory */
    uint32_t hot_ws;            /* pages a hot tenant touches (its whole data set) */
    uint32_t cold_ws;           /* pages a cold tenant touches */
    uint32_t cold_drift;        /* pages the cold window moves each phase */
    double file_share;          /* share of a tenant's pages that are file pages */
    double write_ratio;         /* share of anonymous accesses that write */
    double zipf_s;              /* 0: uniform over the working set, else zipf(s) */
    int warmup_phases;          /* phases run first and not measured */
    int phases;                 /* phases measured */
    uint64_t accesses;          /* per tenant per phase */
    uint32_t io_delay_us;       /* the delay of one backing-store read or write */
    uint64_t seed;
    /* frontswap self-shrinking (Xen's selfballoon.c: frontswap_selfshrink) */
    bool shrink;
    uint64_t tick;              /* accesses per tick */
    int inertia;                /* idle ticks before shrinking (Xen: 3) */
    int hysteresis;             /* shrink by cur/hysteresis per tick (Xen: 20) */
    char dir[128];              /* the temporary directory (files, sockets) */
};

enum xp_kind { XP_STATIC, XP_TMEM, XP_UPPER };

struct xp_config {
    const char *name;           /* short name: static, tmem, tmem-lz4, ... */
    enum xp_kind kind;
    const char *compress;       /* tmemd memory.compress (XP_TMEM) */
    uint32_t hot_weight;        /* XP_TMEM: if not 0, the hot tenant's weight each phase */
    const char *what;           /* a line for the table */
};

/* ------------------------------------------------------------------------
 * Counters: one set per tenant per phase, written only by the process or
 * thread that runs that tenant (in the upper bound, the thread that does an
 * eviction counts its I/O, whoever owns the page).
 * ---------------------------------------------------------------------- */
struct xp_counters {
    uint64_t accesses, hits;    /* accesses; of those, resident in memory */
    uint64_t first_touch;       /* anonymous pages touched for the first time (no I/O) */
    uint64_t file_reads;        /* backing store: data-file page reads */
    uint64_t swap_reads;        /* backing store: swap-file page reads */
    uint64_t swap_writes;       /* backing store: swap-file page writes (incl. shrink) */
    uint64_t shrink_writes;     /* of those, pages the self-shrinker took out of tmem */
    uint64_t cc_gets, cc_hits;  /* cleancache gets; of those, found */
    uint64_t cc_puts, cc_puts_ok;
    uint64_t fs_stores, fs_stores_ok;
    uint64_t fs_loads;          /* frontswap loads that found the page (faults) */
    uint64_t io_wait_ns;        /* time spent in backing-store I/O, delay included */
    uint64_t tmem_calls;        /* cleancache/frontswap calls that reach tmemd */
    uint64_t tmem_ns;           /* time spent in them */
    uint64_t verify_failed;     /* pages that came back with wrong contents */
};

/* Memory shared by the driver and its tenants (MAP_SHARED before fork).
 * Each field has one writer: the tenants' counters their own tenant; the
 * marks (t_*, cpu, busy, daemon) the tenant that the barrier elects. */
struct xp_shared {
    pthread_barrier_t barrier;  /* process-shared, N parties */
    _Atomic int phase;          /* the phase running (progress) */
    _Atomic int failed;         /* a tenant failed: err says why */
    char err[256];
    pid_t daemon_pid;           /* tmemd (XP_TMEM), else 0 */
    uint32_t hot_weight;        /* if not 0: weights follow the hot tenant (xp_config) */
    uint32_t client_id[XP_MAX_TENANTS];     /* each tenant's tmem client id */
    char sock[160], ctl[160];   /* tmemd's sockets (XP_TMEM) */
    uint64_t t_begin_ns;        /* when the first phase began (every tenant ready) */
    uint64_t phase_end_ns[XP_MAX_PHASES];   /* when each phase's closing barrier opened */
    uint64_t t_start_ns;        /* when the first measured phase began */
    double daemon_cpu0, daemon_cpu1;        /* tmemd user+system seconds at start, end */
    double busy0, busy1;        /* the host's busy CPU seconds (/proc/stat) at start, end */
    double tenant_cpu[XP_MAX_TENANTS];      /* over the measured phases */
    /* tmemd's own figures at the end, before the tenants disconnect */
    int have_daemon_stats;
    uint64_t d_eph_pages, d_pers_pages, d_bytes_held, d_pages_compressed, d_pages_whole;
    uint64_t d_zalloc_bytes, d_evictions, d_refused_nomem, d_requests;
    int d_lending;              /* lent memory: its grants over the whole run */
    uint64_t d_grown, d_refused_units, d_returned, d_revoked, d_shrinks;
    uint64_t d_lent[2];         /* bytes lent at the end: ephemeral, persistent */
    struct xp_counters c[XP_MAX_TENANTS][XP_MAX_PHASES];
};

/* ------------------------------------------------------------------------
 * content.c
 * ---------------------------------------------------------------------- */
enum xp_page_kind { XP_FILE = 0, XP_ANON = 1 };

/* Fills page with version `version` of page `index` of tenant `tenant`: a
 * 32-byte tag, then text-like data (compresses about 2x with LZ4). */
void xp_fill(uint8_t *page, uint64_t seed, int tenant, int kind, uint32_t index,
             uint32_t version);
/* true if page is exactly that version (scratch: a page of room). */
bool xp_check(const uint8_t *page, uint64_t seed, int tenant, int kind, uint32_t index,
              uint32_t version, uint8_t *scratch);
/* true if the tag alone names that version (the cheap check on a hit). */
bool xp_check_tag(const uint8_t *page, int tenant, int kind, uint32_t index,
                  uint32_t version);

/* Which of a tenant's pages are file pages: page i is, if this says so
 * (a fixed hash of tenant and i against file_share). */
bool xp_is_file(uint64_t seed, int tenant, uint32_t index, double file_share);

/* The access stream of one tenant in one phase. */
struct xp_stream {
    uint64_t rng;
    uint32_t base, size;        /* the working set: pages base .. base+size-1 (mod span) */
    uint32_t span;              /* the tenant's pages */
    const double *cdf;          /* zipf: size entries, else NULL */
    const uint32_t *perm;       /* zipf: rank -> offset in the working set */
    uint64_t write_threshold;   /* an access writes if a draw is below this */
};
void xp_stream_init(struct xp_stream *s, const struct xp_params *p, int tenant, int phase,
                    bool hot, const double *cdf_hot, const uint32_t *perm_hot,
                    const double *cdf_cold, const uint32_t *perm_cold);
/* The next access: its page, and whether it writes (anonymous pages only). */
uint32_t xp_stream_next(struct xp_stream *s, bool *write);
/* zipf(s) over n ranks: the cumulative table (malloc'ed), and a permutation
 * of the ranks over the working set (malloc'ed, fixed by seed). */
double *xp_zipf_cdf(uint32_t n, double s);
uint32_t *xp_perm(uint32_t n, uint64_t seed);

/* ------------------------------------------------------------------------
 * tenant.c
 * ---------------------------------------------------------------------- */
/* Runs tenants [first, first + count) of configuration kind with a memory
 * of mem_pages pages (shared by the count tenants, each in a thread, if
 * count > 1), through the phases of p, writing counters and marks into sh.
 * Returns 0, or -1 with sh->err set (and sh->failed). */
int xp_run_tenants(const struct xp_params *p, enum xp_kind kind, int first, int count,
                   uint32_t mem_pages, struct xp_shared *sh);

/* The data file of a tenant (created by main with xp_make_data_file). */
void xp_data_path(const struct xp_params *p, int tenant, char *buf, size_t size);
int  xp_make_data_file(const struct xp_params *p, int tenant);
/* Number of file pages / anonymous pages of a tenant. */
void xp_page_counts(const struct xp_params *p, int tenant, uint32_t *files, uint32_t *anons);

/* user+system CPU seconds of process pid from /proc/pid/stat (-1 if gone). */
double xp_proc_cpu(pid_t pid);
/* the host's busy CPU seconds (all CPUs; /proc/stat). */
double xp_host_busy(void);

#endif /* TMEM_XP_H */
