/* SPDX-License-Identifier: MIT */
/*
 * hash_avx2.c - the page hash (XXH3-64) built for AVX2.  This file alone is
 * compiled with -mavx2; codec.c calls it only when the CPU has AVX2 (checked
 * once), so the library still runs on any x86-64.  Measured by bench/ (1a):
 * the SSE2 build of XXH3 was about a fifth of a put+get of an uncompressed
 * page with dedup on.
 */
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

#include "internal.h"

uint64_t tm_page_hash_avx2(const void *page)
{
    return XXH3_64bits(page, TMEM_PAGE_SIZE);
}
