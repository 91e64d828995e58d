/* SPDX-License-Identifier: MIT */
/*
 * content.c - what the experiment's pages hold, and which pages a tenant
 * touches (xp.h).
 *
 * Every version of every page has contents of its own: a 32-byte tag
 * (magic, tenant, kind, index, version) and then text-like data drawn from
 * a small vocabulary of C tokens, seeded by the tag.  So a page read back
 * from anywhere (the data file, the swap file, cleancache, frontswap) can be
 * checked in full against the version the tenant last wrote; no two pages
 * are identical (dedup finds nothing); and the data compresses about as
 * well as source text or a heap of small records (about 2x with LZ4,
 * measured in docs/experiment.md).
 *
 * The access streams are a fixed function of (seed, tenant, phase), so
 * every configuration makes exactly the same accesses.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "xp.h"

#define XP_MAGIC 0x3145474150505825ull  /* "%XPPAGE1" */

struct xp_tag {
    uint64_t magic;
    uint32_t tenant, kind, index, version;
    uint64_t body_seed;
};

/* 64 tokens: the body is a random sequence of them (6 bits each). */
#define W(s) { s, sizeof(s) - 1 }
static const struct { const char *s; size_t n; } vocab[64] = {
    W("int "), W("return "), W("struct "), W("if ("), W(") {\n"), W("}\n"), W("for ("),
    W("i = 0; "), W("i < n; "), W("i++) "), W("const "), W("char *"), W("void "),
    W("static "), W("uint64_t "), W("size_t "), W("NULL"), W(" == "), W(" != "), W(" = "),
    W("->"), W("p"), W("len"), W("buf"), W("page"), W("pool"), W("index"), W("obj"), W("("),
    W(")"), W(";\n"), W(", "), W("    "), W("\n"), W("else "), W("while ("), W("break;\n"),
    W("memcpy("), W("sizeof("), W("unsigned "), W("bool "), W("true"), W("false"), W("0"),
    W("1"), W("4096"), W("-ENOMEM"), W("-EINVAL"), W("goto out;\n"), W("/* "), W(" */\n"),
    W("the "), W("page "), W("is "), W("not "), W("a "), W("free("), W("malloc("),
    W("lock"), W("unlock"), W("tmem_"), W("count"), W("++"), W("x"),
};
#undef W

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ (b * 0x9e3779b97f4a7c15ull);
    return rng_next(&s);
}

static uint64_t body_seed(uint64_t seed, int tenant, int kind, uint32_t index, uint32_t version)
{
    uint64_t h = mix(seed, (uint64_t)tenant + 1);
    h = mix(h, (uint64_t)kind + 7);
    h = mix(h, index);
    return mix(h, version);
}

void xp_fill(uint8_t *page, uint64_t seed, int tenant, int kind, uint32_t index,
             uint32_t version)
{
    struct xp_tag tag = { XP_MAGIC, (uint32_t)tenant, (uint32_t)kind, index, version,
                          body_seed(seed, tenant, kind, index, version) };
    memcpy(page, &tag, sizeof(tag));
    uint64_t rng = tag.body_seed;
    size_t at = sizeof(tag);
    while (at < XP_PAGE) {
        uint64_t r = rng_next(&rng);
        for (int k = 0; k < 10 && at < XP_PAGE; k++, r >>= 6) {
            unsigned w = (unsigned)(r & 63);
            size_t n = vocab[w].n;
            if (n > XP_PAGE - at)
                n = XP_PAGE - at;
            memcpy(page + at, vocab[w].s, n);
            at += n;
        }
    }
}

bool xp_check_tag(const uint8_t *page, int tenant, int kind, uint32_t index, uint32_t version)
{
    struct xp_tag tag;
    memcpy(&tag, page, sizeof(tag));
    return tag.magic == XP_MAGIC && tag.tenant == (uint32_t)tenant &&
           tag.kind == (uint32_t)kind && tag.index == index && tag.version == version;
}

bool xp_check(const uint8_t *page, uint64_t seed, int tenant, int kind, uint32_t index,
              uint32_t version, uint8_t *scratch)
{
    if (!xp_check_tag(page, tenant, kind, index, version))
        return false;
    xp_fill(scratch, seed, tenant, kind, index, version);
    return memcmp(page, scratch, XP_PAGE) == 0;
}

bool xp_is_file(uint64_t seed, int tenant, uint32_t index, double file_share)
{
    uint64_t h = mix(mix(seed ^ 0x66696c65ull, (uint64_t)tenant), index);
    return (double)(h >> 11) * 0x1p-53 < file_share;
}

/* ------------------------------------------------------------------------
 * Access streams
 * ---------------------------------------------------------------------- */
void xp_stream_init(struct xp_stream *s, const struct xp_params *p, int tenant, int phase,
                    bool hot, const double *cdf_hot, const uint32_t *perm_hot,
                    const double *cdf_cold, const uint32_t *perm_cold)
{
    memset(s, 0, sizeof(*s));
    s->rng = mix(mix(p->seed, 0x1000u + (uint64_t)tenant), (uint64_t)phase);
    s->span = p->hot_ws;
    if (hot) {
        s->base = 0;
        s->size = p->hot_ws;
        s->cdf = cdf_hot;
        s->perm = perm_hot;
    } else {
        s->base = (uint32_t)(((uint64_t)phase * p->cold_drift) % p->hot_ws);
        s->size = p->cold_ws;
        s->cdf = cdf_cold;
        s->perm = perm_cold;
    }
    double w = p->write_ratio < 0 ? 0 : p->write_ratio > 1 ? 1 : p->write_ratio;
    s->write_threshold = w >= 1.0 ? UINT64_MAX : (uint64_t)(w * 0x1p64);
}

uint32_t xp_stream_next(struct xp_stream *s, bool *write)
{
    uint64_t r = rng_next(&s->rng);
    uint32_t off;
    if (s->cdf) {
        double u = (double)(r >> 11) * 0x1p-53;
        uint32_t lo = 0, hi = s->size - 1;          /* first rank with cdf >= u */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (s->cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        off = s->perm[lo];
    } else {
        off = (uint32_t)(((r >> 32) * (uint64_t)s->size) >> 32);
    }
    *write = rng_next(&s->rng) < s->write_threshold;
    return (uint32_t)(((uint64_t)s->base + off) % s->span);
}

double *xp_zipf_cdf(uint32_t n, double s)
{
    double *cdf = malloc((size_t)n * sizeof(*cdf));
    if (!cdf)
        die("out of memory");
    double sum = 0;
    for (uint32_t i = 0; i < n; i++) {
        sum += 1.0 / pow((double)i + 1.0, s);
        cdf[i] = sum;
    }
    for (uint32_t i = 0; i < n; i++)
        cdf[i] /= sum;
    cdf[n - 1] = 1.0;
    return cdf;
}

uint32_t *xp_perm(uint32_t n, uint64_t seed)
{
    uint32_t *perm = malloc((size_t)n * sizeof(*perm));
    if (!perm)
        die("out of memory");
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    uint64_t rng = seed;
    for (uint32_t i = n; i > 1; i--) {
        uint32_t j = (uint32_t)(((rng_next(&rng) >> 32) * (uint64_t)i) >> 32);
        uint32_t t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    return perm;
}
