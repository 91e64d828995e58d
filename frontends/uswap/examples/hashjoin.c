/* SPDX-License-Identifier: MIT */
/*
 * hashjoin.c - uswap-hashjoin: an equi-join of two generated relations, R
 * (build side, unique keys) and S (probe side), through an open-addressing
 * hash table of R.  Half of S's tuples match a tuple of R, half match none;
 * which ones, and the sum of the matched payloads, are known from how S is
 * generated, so the join's answer is checked without a second join.  The
 * probes hit the table at random: the worst case for a pager.
 *
 * usage: uswap-hashjoin [-m MIB] [-p PROBES] [-s SEED]
 *   MIB: the build side and its table together (default 256);
 *   PROBES: tuples of S (default: as many as R).
 * Prints one line (matches, sum, "ok"); exits 1 if the answer is wrong.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct tup { uint64_t key, val; };

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

/* R's i-th key: never 0 (the empty slot), top bit clear (misses set it) */
static uint64_t rkey(uint64_t seed, uint64_t i)
{
    return (mix(seed ^ (i * 0x9e3779b97f4a7c15ull)) >> 1) | 1;
}

int main(int argc, char **argv)
{
    uint64_t mib = 256, seed = 1, probes = 0;
    int c;
    while ((c = getopt(argc, argv, "m:p:s:h")) != -1) {
        switch (c) {
        case 'm': mib = strtoull(optarg, NULL, 10); break;
        case 'p': probes = strtoull(optarg, NULL, 10); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        default:
            fprintf(stderr, "usage: uswap-hashjoin [-m MIB] [-p PROBES] [-s SEED]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    /* R: n tuples (16 B) + table of 2n slots (32 B per tuple): 48 B a tuple */
    size_t slots = 2;
    while ((slots * 2) * 24 <= (size_t)(mib << 20))
        slots <<= 1;
    size_t n = slots / 2;
    if (probes == 0)
        probes = n;
    struct tup *r = malloc(n * sizeof *r);
    struct tup *t = calloc(slots, sizeof *t);
    if (!r || !t || n == 0) {
        fprintf(stderr, "uswap-hashjoin: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        r[i] = (struct tup){ rkey(seed, i), mix(i) };
    /* build (a duplicate key would make the answer ambiguous: count them) */
    size_t dups = 0;
    for (size_t i = 0; i < n; i++) {
        size_t h = mix(r[i].key) & (slots - 1);
        while (t[h].key && t[h].key != r[i].key)
            h = (h + 1) & (slots - 1);
        if (t[h].key)
            dups++;
        t[h] = r[i];
    }
    /* probe with S, generated on the fly; expected answer alongside */
    uint64_t x = seed | 1, want_m = 0, want_s = 0, got_m = 0, got_s = 0;
    for (uint64_t j = 0; j < probes; j++) {
        x = mix(x + j);
        uint64_t key;
        if (x & 1) {
            uint64_t i = (x >> 1) % n;
            key = rkey(seed, i);
            want_m++;
            want_s += mix(i);
        } else {
            key = (x >> 1) | (1ull << 63);      /* R has no such key */
        }
        size_t h = mix(key) & (slots - 1);
        while (t[h].key) {
            if (t[h].key == key) {
                got_m++;
                got_s += t[h].val;
                break;
            }
            h = (h + 1) & (slots - 1);
        }
    }
    int ok = dups == 0 && got_m == want_m && got_s == want_s;
    printf("uswap-hashjoin: R %zu, S %llu, matches %llu, sum %016llx, %s\n", n,
           (unsigned long long)probes, (unsigned long long)got_m, (unsigned long long)got_s,
           ok ? "ok" : (dups ? "WRONG (duplicate keys in R: another seed)" : "WRONG"));
    free(r);
    free(t);
    return ok ? 0 : 1;
}
