/* SPDX-License-Identifier: MIT */
/*
 * governor.h - the memory governor's policy as a pure function (private to
 * the daemon; the unit tests call it).  governor.c feeds it what it reads
 * from the engine, /proc/meminfo and /proc/pressure/memory every interval
 * and applies the limit it returns.
 *
 * Policy (docs/configuration.md, "How the governor decides"):
 *
 *   ceiling  C = min(max_memory, held + MemAvailable - reserve)
 *   floor    F = min(max_memory, pinned + 16 MiB)    pinned: what eviction cannot
 *                                                     free (persistent data, metadata)
 *   band     B = max(4 MiB, max_memory / 64)
 *
 *   pressure (PSI some avg10 > psi_threshold, or MemAvailable < reserve):
 *       limit = max(F, base - base * shrink_step%), base = min(limit, max(held, F))
 *       i.e. give back shrink_step% of what is held each interval
 *   no pressure, limit > C + B:
 *       limit = max(C, F)            (nothing to evict: C >= held here)
 *   calm (PSI <= psi_threshold / 2 or unknown, MemAvailable >= reserve) for
 *   TMD_GOV_CALM_INTERVALS intervals in a row, and C > limit by B (or C is
 *   max_memory):
 *       limit = min(C, limit + max_memory * shrink_step%)
 *   otherwise the limit stays.
 *
 * The half threshold, the run of calm intervals and the band are the
 * hysteresis: a limit that was cut does not grow back at the next quiet
 * reading, and MemAvailable wobbling by a few pages moves nothing.
 */
#ifndef TMEM_DAEMON_GOVERNOR_H
#define TMEM_DAEMON_GOVERNOR_H

#include <stddef.h>
#include <stdint.h>

#define TMD_GOV_FLOOR          (16ull << 20)   /* above pinned data; also the least limit */
#define TMD_GOV_BAND_MIN       (4ull << 20)
#define TMD_GOV_CALM_INTERVALS 3u

struct tmd_gov_input {
    uint64_t limit;             /* the engine's limit now (bytes) */
    uint64_t held;              /* bytes the engine holds (tmem_stats_t.bytes_held) */
    uint64_t pinned;            /* bytes eviction cannot free: held - freeable frames */
    uint64_t mem_available;     /* MemAvailable (bytes) */
    double   psi_avg10;         /* PSI memory "some avg10" (percent); < 0: unknown */
    uint64_t max_memory;        /* the configured ceiling (bytes) */
    uint64_t reserve;           /* host memory to leave alone (bytes) */
    double   psi_threshold;     /* percent */
    double   step_pct;          /* shrink_step: percent given back per interval */
};

/* What the governor remembers between intervals. */
struct tmd_gov_memo {
    unsigned calm;              /* calm intervals in a row */
};

enum tmd_gov_verdict {
    TMD_GOV_HOLD,               /* no change */
    TMD_GOV_HOLD_FLOOR,         /* under pressure but at the floor: no change */
    TMD_GOV_SHRINK,             /* pressure: memory is given back */
    TMD_GOV_LOWER,              /* the ceiling fell (no pressure): nothing to evict */
    TMD_GOV_GROW,
};

/* The limit for the next interval.  *verdict (may be NULL) says which rule
 * applied; why (may be NULL) receives the reason, for the log, when the
 * verdict is not TMD_GOV_HOLD. */
uint64_t tmd_governor_decide(const struct tmd_gov_input *in, struct tmd_gov_memo *memo,
                             enum tmd_gov_verdict *verdict, char *why, size_t whylen);

/* The first limit, before anything is held: the ceiling (at least the
 * floor), or the floor under pressure. */
uint64_t tmd_governor_first(const struct tmd_gov_input *in, char *why, size_t whylen);

/* "512 MiB", "1.5 GiB", "12 KiB", "100 B" into buf (at least 16 bytes). */
const char *tmd_fmt_bytes(char *buf, size_t len, uint64_t bytes);
/* Sets d's limit from `from` to `to` (limit_lock held) and logs it as who
 * ("governor", "configuration") with what it evicted and released. */
void tmd_set_limit_logged(struct tmd *d, uint64_t from, uint64_t to, const char *who,
                          const char *why, uint64_t *evicted, uint64_t *released);

#endif /* TMEM_DAEMON_GOVERNOR_H */
