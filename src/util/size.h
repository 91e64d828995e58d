/* SPDX-License-Identifier: MIT */
/*
 * size.h - the one parser of human sizes ("512M", "4GiB", "1048576") that
 * tmemd's configuration, tmemctl and the frontends share.
 *
 * The grammar, the same everywhere:
 *
 *     SIZE = DIGITS [UNIT] [SUFFIX]
 *     DIGITS = one or more of 0-9 (decimal; leading zeros allowed)
 *     UNIT   = K | M | G | T, any case: binary multiples (1K = 1024,
 *              1T = 2^40)
 *     SUFFIX = B, any case; or, after a UNIT only, iB, any case
 *
 * So "0", "4096", "64k", "512M", "4GiB", "4gb", "512B" and "16MiB" parse;
 * nothing else is accepted: no sign ("-1", "+1"), no fraction ("1.5G"), no
 * blank anywhere (" 1M", "1M ", "4 G"), no hexadecimal or exponent, no
 * other unit ("4X", "4Gi", "4iB"), and no value beyond UINT64_MAX once
 * scaled.  Percentages ("25%") and words ("all", "none") are not sizes:
 * the callers that allow them look for them first.
 *
 * The code is pure (no locale, no errno, no allocation, no lock), so that
 * the LD_PRELOAD shim of tmem-uswap may call it while it starts.
 */
#ifndef TMEM_UTIL_SIZE_H
#define TMEM_UTIL_SIZE_H

#include <stdint.h>

/* Parses the whole of s as a SIZE (above) into *bytes.  Returns 0; -EINVAL
 * when s is NULL, empty or not in the grammar; -ERANGE when it is in the
 * grammar but its value does not fit in uint64_t (the digits alone, or once
 * scaled by its unit).  *bytes is written only on success; bytes may be
 * NULL (a check only). */
int tmu_parse_size(const char *s, uint64_t *bytes);

#endif
