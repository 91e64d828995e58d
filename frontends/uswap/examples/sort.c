/* SPDX-License-Identifier: MIT */
/*
 * sort.c - uswap-sort: sorts a generated array of 16-byte records with a
 * bottom-up merge sort (a second buffer as large as the data), then checks
 * the result: keys in order, and the multiset of records unchanged (an
 * order-independent checksum).  A plain program: it knows nothing of tmem;
 * tmem-uswap pages its memory (frontends/uswap/run-demo.sh).
 *
 * usage: uswap-sort [-m MIB] [-s SEED]   (MIB: data size, default 256)
 * Prints one line: records, checksum, a digest of the sorted keys, "ok";
 * exits 1 if the check fails.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct rec { uint64_t key, val; };

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

int main(int argc, char **argv)
{
    uint64_t mib = 256, seed = 1;
    int c;
    while ((c = getopt(argc, argv, "m:s:h")) != -1) {
        switch (c) {
        case 'm': mib = strtoull(optarg, NULL, 10); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: uswap-sort [-m MIB] [-s SEED]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    size_t n = (size_t)(mib << 20) / sizeof(struct rec);
    if (n == 0) {
        fprintf(stderr, "uswap-sort: -m must be > 0\n");
        return 2;
    }
    struct rec *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) {
        fprintf(stderr, "uswap-sort: out of memory\n");
        return 1;
    }
    uint64_t sum_in = 0;
    for (size_t i = 0; i < n; i++) {
        a[i].key = mix(seed * 0x9e3779b97f4a7c15ull + i);
        a[i].val = i;
        sum_in += mix(a[i].key ^ mix(a[i].val));
    }
    /* bottom-up merge sort: runs of w double each pass, a <-> b */
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                b[k++] = a[j].key < a[i].key ? a[j++] : a[i++];
            while (i < mid)
                b[k++] = a[i++];
            while (j < hi)
                b[k++] = a[j++];
        }
        struct rec *t = a; a = b; b = t;
    }
    uint64_t sum_out = 0, digest = 0;
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        if (i && a[i - 1].key > a[i].key)
            ok = 0;
        sum_out += mix(a[i].key ^ mix(a[i].val));
        digest = mix(digest ^ a[i].key);
    }
    ok = ok && sum_in == sum_out;
    printf("uswap-sort: %zu records, checksum %016llx, digest %016llx, %s\n", n,
           (unsigned long long)sum_out, (unsigned long long)digest, ok ? "ok" : "WRONG");
    free(a);
    free(b);
    return ok ? 0 : 1;
}
