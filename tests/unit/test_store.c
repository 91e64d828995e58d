/* SPDX-License-Identifier: MIT */
/*
 * test_store.c - data placement (store.c) seen through the public API and
 * the statistics: same-filled pages cost no frame; incompressible pages are
 * stored whole ("compress poor"); compressible pages become fragments with
 * LZ4 and with zstd, and are stored whole when compression is off; dedup
 * stores identical pages of one client's pools of one kind once, frees the
 * body with its last reference, keeps clients apart unless
 * dedup_across_clients is set, works within a shared pool, keeps ephemeral
 * and persistent data apart, never merges pages that differ, and goes sparse
 * (samples) after a long run without duplicates, full again at a hit.
 */
#include "tmem_test.h"
#include "core/testing.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#define MIB (1024ull * 1024ull)
#define KEEP TMEM_POOL_KEEP_ON_GET

static const tmem_uuid_t U0 = { 0, 0 };

static tmem_stats_t stats(tmem_t *t)
{
    tmem_stats_t s;
    assert_int_equal(tmem_stats_get(t, &s), 0);
    return s;
}

static tmem_client_t *client(tmem_t *t, const char *name)
{
    tmem_client_t *c = tmem_client_open(t, name);
    assert_non_null(c);
    return c;
}

static uint32_t pool(tmem_client_t *c, uint32_t flags)
{
    int p = tmem_new_pool(c, U0, flags);
    assert_true(p >= 0);
    return (uint32_t)p;
}

static void put(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx, enum tt_kind k,
                uint64_t tag)
{
    uint8_t page[PG];
    tt_fill(page, k, tag);
    assert_int_equal(tmem_put_page(c, p, tt_oid(o, 0, 0), idx, page), 0);
}

static void put_raw(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx, const void *page)
{
    assert_int_equal(tmem_put_page(c, p, tt_oid(o, 0, 0), idx, page), 0);
}

/* The page must be there with exactly these contents. */
static void expect_raw(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx, const void *want)
{
    uint8_t page[PG];
    memset(page, 0x5a, sizeof(page));
    assert_int_equal(tmem_get_page(c, p, tt_oid(o, 0, 0), idx, page), 0);
    assert_memory_equal(page, want, PG);
}

static void expect(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx, enum tt_kind k,
                   uint64_t tag)
{
    uint8_t want[PG];
    tt_fill(want, k, tag);
    expect_raw(c, p, o, idx, want);
}

static void expect_miss(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx)
{
    uint8_t page[PG];
    assert_int_equal(tmem_get_page(c, p, tt_oid(o, 0, 0), idx, page), -ENOENT);
}

static void flush(tmem_client_t *c, uint32_t p, uint64_t o, uint32_t idx)
{
    assert_int_equal(tmem_flush_page(c, p, tt_oid(o, 0, 0), idx), 0);
}

/* ------------------------------------------------------------------------
 * Same-filled pages
 * ---------------------------------------------------------------------- */
static void test_same_filled(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = client(t, "same");
    uint32_t pe = pool(c, KEEP), pp = pool(c, TMEM_POOL_PERSIST | KEEP);
    const uint64_t words[] = { 0, 1, 0x0101010101010101ull, 0xdeadbeefcafef00dull, UINT64_MAX,
                               0x8000000000000000ull };
    const unsigned nw = sizeof(words) / sizeof(words[0]);
    tmem_stats_t s0 = stats(t);
    for (unsigned i = 0; i < nw; i++) {
        put(c, pe, 1, i, i == 0 ? TT_ZERO : TT_WORD, words[i]);
        put(c, pp, 1, i, TT_WORD, words[i]);
    }
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.pages_same_filled, s0.pages_same_filled + 2 * nw);
    assert_int_equal(s1.frames_held, s0.frames_held);
    assert_int_equal(s1.frames_whole, s0.frames_whole);
    assert_int_equal(s1.frames_zalloc, s0.frames_zalloc);
    assert_int_equal(s1.bodies, s0.bodies);
    assert_int_equal(s1.pages_compressed + s1.pages_whole, 0);
    assert_int_equal(s1.zalloc_bytes_used, 0);
    assert_int_equal(s1.ephemeral_pages, nw);
    assert_int_equal(s1.persistent_pages, nw);
    for (unsigned i = 0; i < nw; i++) {
        expect(c, pe, 1, i, TT_WORD, words[i]);
        expect(c, pp, 1, i, TT_WORD, words[i]);
    }

    /* almost same-filled: one word differs (first, middle, last) */
    const unsigned at[] = { 0, 1, 256, PG / 8 - 1 };
    for (unsigned i = 0; i < 4; i++) {
        uint64_t page[PG / 8];
        tt_fill(page, TT_WORD, 0x1234567812345678ull);
        page[at[i]] ^= 1;
        put_raw(c, pe, 2, i, page);
        expect_raw(c, pe, 2, i, page);
    }
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.pages_same_filled, s1.pages_same_filled);
    assert_int_equal(s2.pages_compressed, 4);

    /* flushing them releases nothing (there was nothing) */
    for (unsigned i = 0; i < nw; i++)
        flush(c, pe, 1, i);
    tmem_stats_t s3 = stats(t);
    assert_int_equal(s3.pages_same_filled, s1.pages_same_filled - nw);
    assert_int_equal(s3.frames_zalloc, s2.frames_zalloc);
    expect_miss(c, pe, 1, 0);
    expect(c, pp, 1, 0, TT_ZERO, 0);
    tmem_client_close(c);
    assert_int_equal(stats(t).pages_same_filled, 0);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Incompressible, compressible, compression off
 * ---------------------------------------------------------------------- */
static void incompressible_case(int codec)
{
    tmem_t *t = tt_open(64 * MIB, codec, 1);
    tmem_client_t *c = client(t, "poor");
    uint32_t pe = pool(c, KEEP);
    enum { N = 50 };
    tmem_stats_t s0 = stats(t);
    for (uint32_t i = 0; i < N; i++)
        put(c, pe, 3, i, TT_RANDOM, 1000 + i);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.pages_whole, s0.pages_whole + N);
    assert_int_equal(s1.frames_whole, s0.frames_whole + N);
    assert_int_equal(s1.compress_poor, s0.compress_poor + N);
    assert_int_equal(s1.pages_compressed, s0.pages_compressed);
    assert_int_equal(s1.frames_zalloc, s0.frames_zalloc);
    tmem_client_info_t ci;
    assert_int_equal(tmem_client_info(t, tmem_client_id(c), &ci), 0);
    assert_int_equal(ci.compress_poor, N);
    assert_int_equal(ci.compressed_pages, 0);
    for (uint32_t i = 0; i < N; i++)
        expect(c, pe, 3, i, TT_RANDOM, 1000 + i);
    tmem_client_close(c);
    tt_close(t);
}

static void test_incompressible_lz4(void **state)
{
    (void)state;
    incompressible_case(TMEM_COMPRESS_LZ4);
}

static void test_incompressible_zstd(void **state)
{
    (void)state;
    incompressible_case(TMEM_COMPRESS_ZSTD);
}

static void compressible_case(int codec)
{
    tmem_t *t = tt_open(64 * MIB, codec, 1);
    tmem_client_t *c = client(t, "text");
    uint32_t pe = pool(c, KEEP), pp = pool(c, TMEM_POOL_PERSIST | KEEP);
    enum { N = 60 };
    tmem_stats_t s0 = stats(t);
    for (uint32_t i = 0; i < N; i++) {
        put(c, pe, 4, i, TT_TEXT, 7 * i + 1);
        put(c, pp, 4, i, TT_HALF, 7 * i + 2);
    }
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.pages_compressed, s0.pages_compressed + 2 * N);
    assert_int_equal(s1.pages_whole, s0.pages_whole);
    assert_int_equal(s1.frames_whole, s0.frames_whole);
    assert_int_equal(s1.compress_poor, s0.compress_poor);
    assert_true(s1.frames_zalloc > 0);
    /* fragments are smaller than pages, and the frames hold them */
    assert_true(s1.zalloc_bytes_used < 2 * N * PG * 3 / 4);
    assert_true(s1.zalloc_bytes_used > 0);
    assert_true(s1.frames_zalloc * PG >= s1.zalloc_bytes_used);
    assert_true(s1.frames_zalloc < 2 * N);
    tmem_client_info_t ci;
    assert_int_equal(tmem_client_info(t, tmem_client_id(c), &ci), 0);
    assert_int_equal(ci.compressed_pages, 2 * N);
    assert_int_equal(ci.compressed_bytes, s1.zalloc_bytes_used);
    for (uint32_t i = 0; i < N; i++) {
        expect(c, pe, 4, i, TT_TEXT, 7 * i + 1);
        expect(c, pp, 4, i, TT_HALF, 7 * i + 2);
    }
    /* flushing returns the fragments' memory */
    assert_int_equal(tmem_flush_object(c, pe, tt_oid(4, 0, 0)), N);
    assert_int_equal(tmem_flush_object(c, pp, tt_oid(4, 0, 0)), N);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.pages_compressed, 0);
    assert_int_equal(s2.zalloc_bytes_used, 0);
    assert_int_equal(s2.frames_zalloc, 0);
    tmem_client_close(c);
    tt_close(t);
}

static void test_compressible_lz4(void **state)
{
    (void)state;
    compressible_case(TMEM_COMPRESS_LZ4);
}

static void test_compressible_zstd(void **state)
{
    (void)state;
    compressible_case(TMEM_COMPRESS_ZSTD);
}

static void test_compression_off(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_NONE, 1);
    tmem_client_t *c = client(t, "off");
    uint32_t pe = pool(c, KEEP);
    enum { N = 40 };
    for (uint32_t i = 0; i < N; i++)
        put(c, pe, 5, i, TT_TEXT, 3 * i);
    tmem_stats_t s = stats(t);
    assert_int_equal(s.pages_whole, N);
    assert_int_equal(s.frames_whole, N);
    assert_int_equal(s.pages_compressed, 0);
    assert_int_equal(s.frames_zalloc, 0);
    assert_int_equal(s.compress_poor, 0);   /* not tried, so not poor */
    for (uint32_t i = 0; i < N; i++)
        expect(c, pe, 5, i, TT_TEXT, 3 * i);
    tmem_client_close(c);
    tt_close(t);
}

/* A client's codec can change: old pages keep theirs and read back. */
static void test_codec_switch(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = client(t, "switch");
    uint32_t id = tmem_client_id(c), pe = pool(c, KEEP);
    const int codecs[] = { TMEM_COMPRESS_LZ4, TMEM_COMPRESS_ZSTD, TMEM_COMPRESS_NONE,
                           TMEM_COMPRESS_LZ4 };
    for (unsigned k = 0; k < 4; k++) {
        assert_int_equal(tmem_admin_set_compress(t, id, codecs[k]), 0);
        for (uint32_t i = 0; i < 10; i++)
            put(c, pe, 6, k * 10 + i, i % 2 ? TT_TEXT : TT_HALF, 100 * k + i);
    }
    tmem_stats_t s = stats(t);
    assert_int_equal(s.pages_compressed, 30);
    assert_int_equal(s.pages_whole, 10);
    for (unsigned k = 0; k < 4; k++)
        for (uint32_t i = 0; i < 10; i++)
            expect(c, pe, 6, k * 10 + i, i % 2 ? TT_TEXT : TT_HALF, 100 * k + i);
    tmem_client_close(c);
    tt_close(t);
}

/* compress_max: a page compressing to more than it is stored whole. */
static void test_compress_max(void **state)
{
    (void)state;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = 64 * MIB;
    cfg.compress_max = 1024;        /* TT_HALF (~2 KiB compressed) is "poor" */
    tmem_t *t = tmem_open(&cfg);
    assert_non_null(t);
    tmem_client_t *c = client(t, "max");
    uint32_t pe = pool(c, KEEP);
    for (uint32_t i = 0; i < 10; i++) {
        put(c, pe, 7, i, TT_HALF, i);
        put(c, pe, 8, i, TT_TEXT, i);
    }
    tmem_stats_t s = stats(t);
    assert_int_equal(s.compress_poor, 10);
    assert_int_equal(s.pages_whole, 10);
    assert_int_equal(s.pages_compressed, 10);
    for (uint32_t i = 0; i < 10; i++) {
        expect(c, pe, 7, i, TT_HALF, i);
        expect(c, pe, 8, i, TT_TEXT, i);
    }
    tmem_client_close(c);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Dedup within one client
 * ---------------------------------------------------------------------- */
static void dedup_within_client_case(enum tt_kind kind)
{
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = client(t, "dedup");
    uint32_t a = pool(c, KEEP), b = pool(c, KEEP), g = pool(c, 0);
    tmem_stats_t s0 = stats(t);

    put(c, a, 1, 0, kind, 42);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.bodies, s0.bodies + 1);
    assert_int_equal(s1.pages_deduped, 0);
    /* the same data under three more handles, in three pools of one kind */
    put(c, a, 1, 1, kind, 42);
    put(c, b, 2, 5, kind, 42);
    put(c, g, 3, 9, kind, 42);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.bodies, s1.bodies);
    /* pages_deduped counts the copies beyond the first */
    assert_int_equal(s2.pages_deduped, 3);
    assert_int_equal(s2.dedup_hits, s1.dedup_hits + 3);
    assert_int_equal(s2.frames_whole, s1.frames_whole);
    assert_int_equal(s2.frames_zalloc, s1.frames_zalloc);
    assert_int_equal(s2.zalloc_bytes_used, s1.zalloc_bytes_used);
    assert_int_equal(s2.ephemeral_pages, 4);

    /* a get that removes (pool g), then a flush: the others stay readable */
    expect(c, g, 3, 9, kind, 42);
    expect_miss(c, g, 3, 9);
    flush(c, a, 1, 0);
    expect_miss(c, a, 1, 0);
    expect(c, a, 1, 1, kind, 42);
    expect(c, b, 2, 5, kind, 42);
    tmem_stats_t s3 = stats(t);
    assert_int_equal(s3.pages_deduped, 1);
    assert_int_equal(s3.bodies, s1.bodies);
    assert_int_equal(s3.frames_whole, s1.frames_whole);

    /* a duplicate put of the same data keeps one body */
    put(c, b, 2, 5, kind, 42);
    tmem_stats_t s4 = stats(t);
    assert_int_equal(s4.bodies, s1.bodies);
    assert_int_equal(s4.pages_deduped, 1);
    assert_int_equal(s4.dup_puts_replaced, s3.dup_puts_replaced + 1);

    /* the last reference goes: so does the memory */
    flush(c, a, 1, 1);
    expect(c, b, 2, 5, kind, 42);
    flush(c, b, 2, 5);
    tmem_stats_t s5 = stats(t);
    assert_int_equal(s5.bodies, s0.bodies);
    assert_int_equal(s5.pages_deduped, 0);
    assert_int_equal(s5.frames_whole, s0.frames_whole);
    assert_int_equal(s5.frames_zalloc, s0.frames_zalloc);
    assert_int_equal(s5.zalloc_bytes_used, s0.zalloc_bytes_used);
    assert_true(s5.frames_free > s0.frames_free);
    assert_int_equal(s5.ephemeral_pages, 0);
    /* and the data can be stored again */
    put(c, b, 2, 6, kind, 42);
    expect(c, b, 2, 6, kind, 42);
    tmem_client_close(c);
    tt_close(t);
}

static void test_dedup_whole(void **state)
{
    (void)state;
    dedup_within_client_case(TT_RANDOM);
}

static void test_dedup_compressed(void **state)
{
    (void)state;
    dedup_within_client_case(TT_TEXT);
}

/* A random page with tag >= *tag that is (or is not) in the sparse sample;
 * *tag moves past it. */
static uint64_t random_tag(uint64_t *tag, bool sampled)
{
    uint8_t page[PG];
    for (;; (*tag)++) {
        tt_fill(page, TT_RANDOM, *tag);
        if ((tmem__dedup_sampled(page) != 0) == sampled)
            return (*tag)++;
    }
}

/* Sparse dedup: after N lookups in a row without a hit a store looks up
 * only the pages of its sample (content-chosen, so both copies of a
 * duplicate agree); a hit makes it look up every page again. */
static void test_dedup_sparse(void **state)
{
    (void)state;
    const uint32_t n = tmem__dedup_sparse_after();
    tmem_t *t = tt_open((uint64_t)(n + 64) * PG * 2, TMEM_COMPRESS_NONE, 1);
    tmem_client_t *c = client(t, "sparse");
    uint32_t a = pool(c, KEEP);
    uint64_t tag = 1000;
    /* n - 1 misses: still full; the nth (an unsampled page) is looked up */
    for (uint32_t i = 0; i < n; i++)
        put(c, a, 1, i, TT_RANDOM, random_tag(&tag, false));
    tmem_stats_t s0 = stats(t);
    assert_int_equal(s0.dedup_skipped, 0);
    assert_int_equal(s0.dedup_hits, 0);
    assert_int_equal(s0.bodies, n);

    /* sparse: an unsampled duplicate pair is stored twice, not looked up */
    uint64_t u = random_tag(&tag, false);
    put(c, a, 2, 0, TT_RANDOM, u);
    put(c, a, 2, 1, TT_RANDOM, u);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.dedup_skipped, 2);
    assert_int_equal(s1.dedup_hits, 0);
    assert_int_equal(s1.pages_deduped, 0);
    assert_int_equal(s1.bodies, n);             /* not indexed either */
    assert_int_equal(s1.frames_whole, s0.frames_whole + 2);
    expect(c, a, 2, 0, TT_RANDOM, u);
    expect(c, a, 2, 1, TT_RANDOM, u);

    /* a sampled pair is found, and the hit ends sparse mode */
    uint64_t v = random_tag(&tag, true);
    put(c, a, 3, 0, TT_RANDOM, v);
    put(c, a, 3, 1, TT_RANDOM, v);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.dedup_skipped, s1.dedup_skipped);
    assert_int_equal(s2.dedup_hits, 1);
    assert_int_equal(s2.pages_deduped, 1);
    assert_int_equal(s2.frames_whole, s1.frames_whole + 1);

    /* full again: an unsampled pair is looked up and found */
    uint64_t w = random_tag(&tag, false);
    put(c, a, 4, 0, TT_RANDOM, w);
    put(c, a, 4, 1, TT_RANDOM, w);
    tmem_stats_t s3 = stats(t);
    assert_int_equal(s3.dedup_skipped, s2.dedup_skipped);
    assert_int_equal(s3.dedup_hits, 2);
    assert_int_equal(s3.pages_deduped, 2);
    assert_int_equal(s3.frames_whole, s2.frames_whole + 1);
    expect(c, a, 3, 1, TT_RANDOM, v);
    expect(c, a, 4, 0, TT_RANDOM, w);
    tmem_client_close(c);
    tt_close(t);
}

/* Each thread stripe of a store goes sparse on its own; a hit found by
 * another thread (whose stripe is still full) makes them all full again. */
struct sparse_job {
    tmem_client_t *c;
    uint32_t pool;
    uint64_t obj, tag;
    uint32_t n;
    bool dup;           /* else n distinct pages */
};

static void *sparse_worker(void *arg)
{
    struct sparse_job *j = arg;
    uint8_t page[PG];
    for (uint32_t i = 0; i < j->n; i++) {
        tt_fill(page, TT_RANDOM, j->dup ? j->tag : j->tag + i);
        if (tmem_put_page(j->c, j->pool, (tmem_oid_t){ { j->obj, 0, 0 } }, i, page) != 0)
            return (void *)1;
    }
    return NULL;
}

static void run_on_thread(struct sparse_job *j)
{
    pthread_t th;
    void *rc;
    assert_int_equal(pthread_create(&th, NULL, sparse_worker, j), 0);
    assert_int_equal(pthread_join(th, &rc), 0);
    assert_null(rc);
}

static void test_dedup_sparse_stripes(void **state)
{
    (void)state;
    const uint32_t n = tmem__dedup_sparse_after();
    tmem_t *t = tt_open((uint64_t)(n + 64) * PG * 2, TMEM_COMPRESS_NONE, 1);
    tmem_client_t *c = client(t, "stripes");
    uint32_t a = pool(c, KEEP);
    /* this thread's stripe goes sparse */
    uint64_t tag = 1u << 20;
    for (uint32_t i = 0; i < n; i++)
        put(c, a, 1, i, TT_RANDOM, random_tag(&tag, false));
    uint64_t u = random_tag(&tag, false);
    put(c, a, 2, 0, TT_RANDOM, u);
    assert_int_equal(stats(t).dedup_skipped, 1);
    /* another thread (another stripe, still full) finds a duplicate */
    struct sparse_job j = { c, a, 3, 7u << 20, 2, true };
    run_on_thread(&j);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.dedup_hits, 1);
    assert_int_equal(s1.dedup_skipped, 1);
    /* and this thread's stripe looks up every page again */
    uint64_t w = random_tag(&tag, false);
    put(c, a, 4, 0, TT_RANDOM, w);
    put(c, a, 4, 1, TT_RANDOM, w);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.dedup_skipped, 1);
    assert_int_equal(s2.dedup_hits, 2);
    tmem_client_close(c);
    tt_close(t);
}

/* With dedup off identical pages are stored twice. */
static void test_dedup_off(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 0);
    tmem_client_t *c = client(t, "nodedup");
    uint32_t a = pool(c, KEEP);
    put(c, a, 1, 0, TT_RANDOM, 9);
    put(c, a, 1, 1, TT_RANDOM, 9);
    put(c, a, 2, 0, TT_TEXT, 9);
    put(c, a, 2, 1, TT_TEXT, 9);
    tmem_stats_t s = stats(t);
    assert_int_equal(s.frames_whole, 2);
    assert_int_equal(s.pages_whole, 2);
    assert_int_equal(s.pages_compressed, 2);
    assert_int_equal(s.pages_deduped, 0);
    assert_int_equal(s.dedup_hits, 0);
    expect(c, a, 1, 0, TT_RANDOM, 9);
    expect(c, a, 1, 1, TT_RANDOM, 9);
    expect(c, a, 2, 1, TT_TEXT, 9);
    tmem_client_close(c);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Dedup across clients: off by default, on when configured
 * ---------------------------------------------------------------------- */
static void across_clients_case(int across)
{
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = 64 * MIB;
    cfg.dedup_across_clients = across;
    tmem_t *t = tmem_open(&cfg);
    assert_non_null(t);
    tmem_client_t *c1 = client(t, "one"), *c2 = client(t, "two");
    uint32_t p1 = pool(c1, KEEP), p2 = pool(c2, KEEP);
    uint32_t q1 = pool(c1, TMEM_POOL_PERSIST | KEEP), q2 = pool(c2, TMEM_POOL_PERSIST | KEEP);
    put(c1, p1, 1, 0, TT_RANDOM, 77);
    put(c2, p2, 1, 0, TT_RANDOM, 77);
    put(c1, q1, 1, 0, TT_TEXT, 78);
    put(c2, q2, 1, 0, TT_TEXT, 78);
    tmem_stats_t s = stats(t);
    if (across) {
        assert_int_equal(s.bodies, 2);
        assert_int_equal(s.pages_deduped, 2);
        assert_int_equal(s.dedup_hits, 2);
        assert_int_equal(s.frames_whole, 1);
        assert_int_equal(s.pages_compressed, 1);
    } else {
        assert_int_equal(s.bodies, 4);
        assert_int_equal(s.pages_deduped, 0);
        assert_int_equal(s.dedup_hits, 0);
        assert_int_equal(s.frames_whole, 2);
        assert_int_equal(s.pages_compressed, 2);
    }
    /* one client leaves: the other's pages are intact */
    tmem_client_close(c1);
    expect(c2, p2, 1, 0, TT_RANDOM, 77);
    expect(c2, q2, 1, 0, TT_TEXT, 78);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.bodies, 2);
    assert_int_equal(s2.pages_deduped, 0);
    assert_int_equal(s2.frames_whole, 1);
    assert_int_equal(tmem_check(t), 0);
    tmem_client_close(c2);
    tmem_stats_t s3 = stats(t);
    assert_int_equal(s3.frames_whole + s3.frames_zalloc, 0);
    tt_close(t);
}

static void test_clients_not_deduped(void **state)
{
    (void)state;
    across_clients_case(0);
}

static void test_dedup_across_clients(void **state)
{
    (void)state;
    across_clients_case(1);
}

/* ------------------------------------------------------------------------
 * A shared pool dedups within itself
 * ---------------------------------------------------------------------- */
static void test_shared_pool(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c1 = client(t, "s1"), *c2 = client(t, "s2");
    tmem_uuid_t u = { 0x1234, 0x5678 };
    assert_int_equal(tmem_admin_shared_auth(t, tmem_client_id(c1), u, 1), 0);
    assert_int_equal(tmem_admin_shared_auth(t, tmem_client_id(c2), u, 1), 0);
    int r1 = tmem_new_pool(c1, u, TMEM_POOL_SHARED), r2 = tmem_new_pool(c2, u, TMEM_POOL_SHARED);
    assert_true(r1 >= 0 && r2 >= 0);
    uint32_t s1p = (uint32_t)r1, s2p = (uint32_t)r2;
    assert_int_equal(tmem_pool_is_shared(c1, s1p), 1);
    assert_int_equal(tmem_pool_is_shared(c2, s2p), 1);

    tmem_stats_t s0 = stats(t);
    put(c1, s1p, 1, 0, TT_RANDOM, 500);
    put(c2, s2p, 2, 0, TT_RANDOM, 500);     /* same data, other handle, other sharer */
    put(c1, s1p, 3, 3, TT_RANDOM, 500);
    put(c2, s2p, 4, 0, TT_HALF, 501);
    put(c1, s1p, 4, 1, TT_HALF, 501);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.bodies, s0.bodies + 2);
    assert_int_equal(s1.pages_deduped, 3);
    assert_int_equal(s1.frames_whole, s0.frames_whole + 1);
    assert_int_equal(s1.pages_compressed, s0.pages_compressed + 1);
    /* every sharer sees every page; shared gets do not remove */
    expect(c2, s2p, 1, 0, TT_RANDOM, 500);
    expect(c1, s1p, 2, 0, TT_RANDOM, 500);
    expect(c2, s2p, 3, 3, TT_RANDOM, 500);
    expect(c1, s1p, 4, 0, TT_HALF, 501);
    expect(c2, s2p, 4, 1, TT_HALF, 501);
    flush(c2, s2p, 1, 0);
    expect(c1, s1p, 2, 0, TT_RANDOM, 500);
    assert_int_equal(stats(t).pages_deduped, 2);
    /* the owner leaves; the pool and its data stay with the other sharer */
    tmem_client_close(c1);
    expect(c2, s2p, 2, 0, TT_RANDOM, 500);
    expect(c2, s2p, 4, 1, TT_HALF, 501);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.bodies, 2);
    assert_int_equal(s2.pages_deduped, 2);
    tmem_client_close(c2);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Ephemeral and persistent data of one client are kept apart
 * ---------------------------------------------------------------------- */
static void test_kinds_apart(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = client(t, "kinds");
    uint32_t pe = pool(c, KEEP), pp = pool(c, TMEM_POOL_PERSIST | KEEP);
    put(c, pe, 1, 0, TT_RANDOM, 1);
    put(c, pp, 1, 0, TT_RANDOM, 1);
    put(c, pe, 2, 0, TT_TEXT, 2);
    put(c, pp, 2, 0, TT_TEXT, 2);
    tmem_stats_t s = stats(t);
    assert_int_equal(s.bodies, 4);
    assert_int_equal(s.pages_deduped, 0);
    assert_int_equal(s.dedup_hits, 0);
    assert_int_equal(s.frames_whole, 2);
    assert_int_equal(s.pages_compressed, 2);
    /* evicting all ephemeral data leaves the persistent copies */
    assert_true(tmem_evict_npages(t, 1000) >= 1);
    assert_int_equal(stats(t).ephemeral_pages, 0);
    expect_miss(c, pe, 1, 0);
    expect(c, pp, 1, 0, TT_RANDOM, 1);
    expect(c, pp, 2, 0, TT_TEXT, 2);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.bodies, 2);
    assert_int_equal(s2.frames_whole, 1);
    tmem_client_close(c);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Pages that differ in one byte are never merged
 * ---------------------------------------------------------------------- */
static void test_one_byte_differs(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = client(t, "diff");
    uint32_t pe = pool(c, KEEP);
    const enum tt_kind kinds[] = { TT_RANDOM, TT_TEXT, TT_HALF };
    const unsigned offs[] = { 0, 1, 2047, 2048, 4000, PG - 1 };
    const unsigned noff = sizeof(offs) / sizeof(offs[0]);
    uint32_t idx = 0;
    for (unsigned k = 0; k < 3; k++) {
        tmem_stats_t s0 = stats(t);
        uint8_t base[PG];
        tt_fill(base, kinds[k], 4242);
        put_raw(c, pe, 10 + k, idx++, base);
        for (unsigned i = 0; i < noff; i++) {
            uint8_t page[PG];
            memcpy(page, base, PG);
            page[offs[i]] ^= 0x01;
            put_raw(c, pe, 10 + k, idx++, page);
            page[offs[i]] ^= 0x81;          /* another value at the same place */
            put_raw(c, pe, 10 + k, idx++, page);
        }
        tmem_stats_t s1 = stats(t);
        assert_int_equal(s1.bodies, s0.bodies + 1 + 2 * noff);
        assert_int_equal(s1.pages_deduped, 0);
        assert_int_equal(s1.dedup_hits, s0.dedup_hits);
        /* every variant reads back as itself */
        idx -= 1 + 2 * noff;
        expect_raw(c, pe, 10 + k, idx++, base);
        for (unsigned i = 0; i < noff; i++) {
            uint8_t page[PG];
            memcpy(page, base, PG);
            page[offs[i]] ^= 0x01;
            expect_raw(c, pe, 10 + k, idx++, page);
            page[offs[i]] ^= 0x81;
            expect_raw(c, pe, 10 + k, idx++, page);
        }
        /* the original again: now it is a duplicate */
        put_raw(c, pe, 20 + k, 0, base);
        tmem_stats_t s2 = stats(t);
        assert_int_equal(s2.bodies, s1.bodies);
        assert_int_equal(s2.pages_deduped, 1);
        flush(c, pe, 20 + k, 0);
    }
    tmem_client_close(c);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Churn: flushing most fragments at random leaves sparse spans, which zalloc
 * compacts (moving fragments owned by descriptors or dedup bodies); every
 * page left must read back exactly and the memory must follow the data.
 * ---------------------------------------------------------------------- */
static void churn_case(int dedup)
{
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, dedup);
    tmem_client_t *c = client(t, "churn");
    uint32_t pe = pool(c, KEEP), pp = pool(c, TMEM_POOL_PERSIST | KEEP);
    enum { N = 1500 };
    /* tag[i]: the data at handle i (pages 0..N-1 ephemeral, N..2N-1
     * persistent), or 0 if flushed */
    uint64_t *tag = calloc(2 * N, sizeof(*tag));
    assert_non_null(tag);
#define POOL_OF(i) ((i) < N ? pe : pp)
#define OBJ_OF(i) (1 + ((i) % N) / 100)
#define IDX_OF(i) ((uint32_t)(((i) % N) % 100))
    for (uint32_t i = 0; i < 2 * N; i++) {
        tag[i] = 1 + i;
        put(c, POOL_OF(i), OBJ_OF(i), IDX_OF(i), TT_HALF, tag[i]);
    }
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.pages_compressed, 2 * N);
    tt_rng r;
    tt_seed(&r, 0xc0ffee + (uint64_t)dedup);
    uint32_t left = 2 * N;
    uint64_t next_tag = 10 * N;
    for (uint32_t k = 0; k < 4 * N; k++) {
        uint32_t i = (uint32_t)tt_below(&r, 2 * N);
        if (!tag[i] || tt_below(&r, 4) == 0)
            continue;
        if (tt_below(&r, 8) == 0) {
            /* a duplicate put with new data: the old fragment is freed by
             * value while compaction may be moving fragments around */
            tag[i] = ++next_tag;
            put(c, POOL_OF(i), OBJ_OF(i), IDX_OF(i), TT_HALF, tag[i]);
            continue;
        }
        flush(c, POOL_OF(i), OBJ_OF(i), IDX_OF(i));
        tag[i] = 0;
        left--;
    }
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.pages_compressed, left);
    assert_true(left < N);
    double util = (double)s2.zalloc_bytes_used / ((double)s2.frames_zalloc * PG);
    printf("dedup %d: %u of %u pages left, %llu zalloc frames, utilisation %.2f\n", dedup,
           left, 2 * N, (unsigned long long)s2.frames_zalloc, util);
    assert_true(util > 0.7);
    assert_int_equal(tmem_check(t), 0);
    for (uint32_t i = 0; i < 2 * N; i++) {
        if (tag[i])
            expect(c, POOL_OF(i), OBJ_OF(i), IDX_OF(i), TT_HALF, tag[i]);
        else
            expect_miss(c, POOL_OF(i), OBJ_OF(i), IDX_OF(i));
    }
    /* duplicates of surviving pages still find their (moved) bodies */
    if (dedup) {
        uint64_t hits = stats(t).dedup_hits;
        uint32_t dups = 0;
        for (uint32_t i = 0; i < N && dups < 50; i++) {
            if (tag[i]) {
                put(c, pe, 99, dups++, TT_HALF, tag[i]);
                expect(c, pe, 99, dups - 1, TT_HALF, tag[i]);
            }
        }
        assert_int_equal(stats(t).dedup_hits, hits + dups);
    }
#undef POOL_OF
#undef OBJ_OF
#undef IDX_OF
    tmem_client_close(c);
    free(tag);
    tt_close(t);
}

static void test_churn_compaction(void **state)
{
    (void)state;
    churn_case(0);
}

static void test_churn_compaction_dedup(void **state)
{
    (void)state;
    churn_case(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_filled),
        cmocka_unit_test(test_incompressible_lz4),
        cmocka_unit_test(test_incompressible_zstd),
        cmocka_unit_test(test_compressible_lz4),
        cmocka_unit_test(test_compressible_zstd),
        cmocka_unit_test(test_compression_off),
        cmocka_unit_test(test_codec_switch),
        cmocka_unit_test(test_compress_max),
        cmocka_unit_test(test_dedup_whole),
        cmocka_unit_test(test_dedup_compressed),
        cmocka_unit_test(test_dedup_off),
        cmocka_unit_test(test_clients_not_deduped),
        cmocka_unit_test(test_dedup_across_clients),
        cmocka_unit_test(test_shared_pool),
        cmocka_unit_test(test_kinds_apart),
        cmocka_unit_test(test_one_byte_differs),
        cmocka_unit_test(test_churn_compaction),
        cmocka_unit_test(test_churn_compaction_dedup),
        cmocka_unit_test(test_dedup_sparse),
        cmocka_unit_test(test_dedup_sparse_stripes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
