/* SPDX-License-Identifier: MIT */
/*
 * testing.h - hooks for the project's own tests; not installed, not part of
 * the API.  The tests link the static library, which exports these.
 */
#ifndef TMEM_CORE_TESTING_H
#define TMEM_CORE_TESTING_H

#include <stdint.h>

#include "tmem/tmem.h"

/* Allocation-failure injection.  nth = 0: off.  nth = N: the Nth internal
 * allocation from now (metadata, or backing a new frame chunk) fails; with
 * persistent != 0 every later one fails too.  nth = UINT64_MAX counts
 * allocations without failing any (see tmem__alloc_count). */
void     tmem__fault_inject(tmem_t *t, uint64_t nth, int persistent);
/* Counted allocations since the last tmem__fault_inject. */
uint64_t tmem__alloc_count(tmem_t *t);

/* Replaces the engine's random hash key (tests that must be replayable or
 * must repeat allocation counts exactly: the key decides how objects spread
 * over buckets, hence when tables grow).  Call before any client opens. */
void     tmem__set_hash_key(tmem_t *t, uint64_t key);

/* Sparse dedup (store.c): is page in the sample a sparse store still looks
 * up, and after how many lookups in a row without a hit does a store go
 * sparse. */
int      tmem__dedup_sampled(const void *page);
uint32_t tmem__dedup_sparse_after(void);

#endif /* TMEM_CORE_TESTING_H */
