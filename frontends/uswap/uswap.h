/* SPDX-License-Identifier: MIT */
/*
 * uswap.h - a memory region larger than its resident budget, paged through
 * frontswap (tmem) with a swap-file fallback, in user space (userfaultfd).
 *
 * uswap_open() maps an anonymous region of cfg.size bytes and registers it
 * with userfaultfd (missing and write-protect faults).  A handler thread
 * serves every fault; at most cfg.budget_pages pages of the region are
 * resident at once.  When a fault needs room, a batch of cold pages is
 * evicted, a run of neighbours at a time: write-protected (the program
 * cannot change them while they are copied), stored through
 * tmem_frontswap_store_pages() or, when tmem refuses (or in writethrough
 * mode, as well), written to their slots of the swap file, then dropped
 * (MADV_DONTNEED).  A missing fault brings the page back from tmem, from the
 * swap file, or as zeros if it was never written.  Every page reads back
 * what was last written to it, whatever tmem accepted or refused; a page
 * that only tmem held and tmem lost (a load returning -EIO) is fatal and
 * reported loudly (uswap_config.on_lost).
 *
 * Replacement.  User space cannot read accessed bits, so the only
 * references uswap sees are faults.  Pages brought in by a sequential
 * stream go first (a scan passes them once); then FIFO, the pages in the
 * order they came in, or a clock on request (USWAP_CLOCK: a referenced bit
 * set when a page faults in and when the program writes it while it is
 * write-protected; the hand clears the bit and write-protects dirty pages
 * it passes, so that a page the program keeps writing gets a second chance
 * from its write-protect fault).  Measured on the examples and GNU sort
 * (docs/uswap.md), the clock's extra write-protect faults cost more than
 * the missing faults it saves, hence FIFO.  Pages brought back are mapped
 * write-protected and clean: if a valid copy still exists (tmem kept it,
 * or the swap file has it) and the program does not write the page,
 * evicting it costs no copy at all; a page the program wrote the last time
 * it had it comes back writable instead (no write-protect fault).
 *
 * Needs root here: userfaultfd for unprivileged users is off
 * (/proc/sys/vm/unprivileged_userfaultfd = 0); uswap_open() fails with
 * EPERM and says so (uswap_last_error()).
 *
 * Thread safety: the region may be used by any number of threads; every
 * call here is thread-safe except uswap_close() (nothing may use the region
 * or call in on it meanwhile).  Fork: the region is MADV_DONTFORK: a child
 * does not inherit it (an access there is a SIGSEGV, never silent zeros).
 */
#ifndef TMEM_USWAP_H
#define TMEM_USWAP_H

#include <stddef.h>
#include <stdint.h>

#include <tmem/frontswap.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uswap uswap_t;

enum { USWAP_FIFO = 0, USWAP_CLOCK = 1 };


typedef struct uswap_config {
    size_t size;              /* region bytes, rounded up to pages (> 0) */
    size_t budget_pages;      /* most resident pages at once (>= 1) */
    /* The swap file: one 4 KiB slot per page of the region, at offset
     * page * 4096, sized to the region with ftruncate (sparse).  NULL: a
     * fresh file in $TMPDIR (else /var/tmp).  It is created (truncated if
     * it exists) and unlinked at once unless keep_swap_file. */
    const char *swap_path;
    int keep_swap_file;
    int swap_direct;          /* O_DIRECT on the swap file (no page cache) */
    /* tmem: a frontswap handle (tmem_frontswap_connect/open), not owned;
     * NULL: the swap file alone.  uswap turns on area fs_type for the
     * region's slots and turns it off at close; regions sharing a handle
     * need distinct types.  With TMEM_FRONTSWAP_KEEP_ON_LOAD, a page that
     * comes back from tmem stays clean there and is dropped for free. */
    tmem_frontswap_t *fs;
    unsigned fs_type;
    int writethrough;         /* every evicted page also goes to the swap file */
    int policy;               /* USWAP_FIFO (default) or USWAP_CLOCK */
    /* Read-ahead: a fault that continues a sequential stream brings up to
     * this many following pages in (those with a kept copy), the window
     * doubling from 1, at most budget / 8, stopping as soon as another
     * fault waits.  0: off (the default: it gained little, docs/uswap.md). */
    int readahead;
    /* A page only tmem held is gone (-EIO).  Called on the handler thread;
     * if it returns, the faulting access gets SIGBUS (UFFDIO_POISON) where
     * the kernel can, else the process aborts.  NULL: a message on stderr
     * and abort(). */
    void (*on_lost)(void *arg, void *addr);
    void *on_lost_arg;
} uswap_config_t;

typedef struct uswap_stats {
    uint64_t faults;          /* missing faults served (pages brought in) */
    uint64_t wp_faults;       /* write-protect faults served */
    uint64_t zero_fills;      /* missing faults served with zeros */
    uint64_t tmem_loads;      /* pages brought back from tmem (hits) */
    uint64_t tmem_stores_ok;  /* evicted pages tmem kept */
    uint64_t tmem_stores_refused; /* evicted pages tmem refused */
    uint64_t swap_reads;      /* pages read from the swap file */
    uint64_t swap_writes;     /* pages written to the swap file */
    uint64_t evictions;       /* pages dropped from memory */
    uint64_t clean_evictions; /* of those, with a valid copy already kept (no I/O) */
    uint64_t zero_evictions;  /* of those, found all zeros (nothing stored) */
    uint64_t lost;            /* pages tmem lost (-EIO): each one is fatal */
    uint64_t readaheads;      /* pages brought in ahead of a fault (not in faults) */
    uint64_t evict_batches;   /* eviction batches (evictions / this: pages per batch) */
    uint64_t fill_runs;       /* runs brought in (faults + readaheads over this: pages per run) */
    uint64_t stream_evictions; /* of evictions, pages a sequential stream had brought in
                                  (taken first) */
    uint64_t dirty_guesses;   /* read faults mapped writable and dirty: the page is one the
                                 program writes (no write-protect fault to come) */
    uint64_t resident;        /* pages resident now */
    uint64_t budget;          /* the resident budget */
} uswap_stats_t;

void uswap_config_init(uswap_config_t *cfg);

/* 0 if userfaultfd with write-protect of anonymous memory works for this
 * process, else -errno with a message in msg (e.g. "needs root"). */
int uswap_probe(char *msg, size_t msglen);

/* NULL with errno on failure; uswap_last_error() says why in one line. */
uswap_t *uswap_open(const uswap_config_t *cfg);
/* Stops the handler, unmaps the region, turns the frontswap area off (its
 * pages leave tmem), closes the swap file. */
void uswap_close(uswap_t *u);
const char *uswap_last_error(void);   /* this thread's last failure */

void  *uswap_base(const uswap_t *u);
size_t uswap_size(const uswap_t *u);
int    uswap_contains(const uswap_t *u, const void *p);

/* The region as a heap: page-aligned ranges (first fit).  align is a power
 * of two (0 = a page).  NULL with ENOMEM when no range fits.  uswap_free
 * returns [p, p + len) (pages; len 0 = the whole allocation made at p) and
 * discards its contents; 0 or -EINVAL. */
void  *uswap_alloc(uswap_t *u, size_t len, size_t align);
int    uswap_free(uswap_t *u, void *p, size_t len);
size_t uswap_alloc_size(uswap_t *u, const void *p);   /* bytes; 0 if not an allocation start */
/* Drops [p, p + len) (whole pages inside): it reads back as zeros, as after
 * madvise(MADV_DONTNEED) on anonymous memory.  0 or -EINVAL. */
int    uswap_discard(uswap_t *u, void *p, size_t len);

void uswap_stats(uswap_t *u, uswap_stats_t *out);
/* 1 on uswap's handler threads (which must not allocate from a region). */
int uswap_in_handler(void);

#ifdef __cplusplus
}
#endif
#endif /* TMEM_USWAP_H */
