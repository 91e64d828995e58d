/* SPDX-License-Identifier: MIT */
/*
 * test_evict.c - eviction: the limit holds, LRU order within a pool, shared
 * hits refresh recency, weights share ephemeral memory, an idle client's
 * memory goes to a busy one, and the host's calls (freeable, evict_npages,
 * set_max_bytes) free what they say.
 */
#include <errno.h>
#include <time.h>

#include "tmem_test.h"

static const tmem_uuid_t NOUUID = { 0, 0 };

static void limit_always_holds(void **state)
{
    (void)state;
    tmem_t *t = tt_open(2 << 20, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, 0), q = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    tt_rng r;
    tt_seed(&r, 7);
    for (uint32_t i = 0; i < 6000; i++) {
        tt_fill(page, (enum tt_kind)tt_below(&r, TT_KINDS), tt_next(&r));
        int pool = tt_below(&r, 10) == 0 ? q : p;
        int rc = tmem_put_page(c, (uint32_t)pool, tt_oid(tt_below(&r, 8), 0, 0),
                               (uint32_t)tt_below(&r, 2000), page);
        assert_true(rc == 0 || rc == -ENOMEM || rc == -ENOSPC);
        if (i % 100 == 0) {
            tmem_stats_t s;
            tmem_stats_get(t, &s);
            assert_true(s.bytes_held <= s.max_bytes);
        }
    }
    tt_close(t);
}

/* Whole incompressible pages: evicting the oldest frees one frame, so what
 * is left of one pool is exactly its newest pages. */
static void lru_order_in_pool(void **state)
{
    (void)state;
    tmem_t *t = tt_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_KEEP_ON_GET);
    uint8_t page[PG], got[PG];
    const uint32_t n = 1000;
    for (uint32_t i = 0; i < n; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
    }
    uint32_t first_present = n;
    for (uint32_t i = 0; i < n; i++) {
        int rc = tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, got);
        if (rc == 0 && first_present == n)
            first_present = i;
        if (first_present < n) {
            assert_int_equal(rc, 0);        /* everything newer is present */
            tt_fill(page, TT_RANDOM, i);
            assert_memory_equal(got, page, PG);
        }
    }
    assert_true(first_present > 0 && first_present < n - 100);
    tt_close(t);
}

static void shared_hit_refreshes(void **state)
{
    (void)state;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = 1 << 20;
    cfg.compress = TMEM_COMPRESS_NONE;
    cfg.dedup = 0;
    cfg.shared_auth_required = 0;
    tmem_t *t = tmem_open(&cfg);
    tmem_client_t *c = tmem_client_open(t, "a");
    tmem_uuid_t u = { 3, 3 };
    int p = tmem_new_pool(c, u, TMEM_POOL_SHARED);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 100; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
    }
    for (uint32_t i = 100; i < 600; i++) {
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
    }
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 1, got), -ENOENT);
    tt_close(t);
}

/* Two clients pushing equally hard end up holding memory in proportion to
 * their weights (3:1).  The eviction clock is real time, so a pause of this
 * process (a noisy machine) moves the split for a moment: the ratio is
 * averaged over the second half of the run. */
static void weights_share_memory(void **state)
{
    (void)state;
    tmem_t *t = tt_open(2 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *a = tmem_client_open(t, "heavy"), *b = tmem_client_open(t, "light");
    tmem_admin_set_weight(t, tmem_client_id(a), 300);
    tmem_admin_set_weight(t, tmem_client_id(b), 100);
    int pa = tmem_new_pool(a, NOUUID, 0), pb = tmem_new_pool(b, NOUUID, 0);
    uint8_t page[PG];
    uint64_t sum_a = 0, sum_b = 0;
    for (uint32_t i = 0; i < 16000; i++) {
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page);
        tt_fill(page, TT_RANDOM, 1000000 + i);
        tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), i, page);
        if (i >= 8000 && i % 16 == 0) {
            tmem_client_info_t ia, ib;
            tmem_client_info(t, tmem_client_id(a), &ia);
            tmem_client_info(t, tmem_client_id(b), &ib);
            sum_a += ia.ephemeral_pages;
            sum_b += ib.ephemeral_pages;
        }
    }
    double ratio = (double)sum_a / (double)sum_b;
    print_message("heavy %llu page-samples, light %llu, ratio %.2f\n",
                  (unsigned long long)sum_a, (unsigned long long)sum_b, ratio);
    assert_true(ratio > 2.5 && ratio < 3.5);
    tt_close(t);
}

/* Work-conserving: a client that stopped putting loses its old pages to
 * one that is busy, whatever the weights say about shares (with shares
 * computed over idle clients too, the busy one would stop at half). */
static void idle_memory_goes_to_the_busy(void **state)
{
    (void)state;
    tmem_t *t = tt_open(2 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *idle = tmem_client_open(t, "idle"), *busy = tmem_client_open(t, "busy");
    int pi = tmem_new_pool(idle, NOUUID, 0), pb = tmem_new_pool(busy, NOUUID, 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 1000; i++) {          /* more than the engine holds */
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(idle, (uint32_t)pi, tt_oid(1, 0, 0), i, page);
    }
    struct timespec ts = { 0, 20 * 1000000L };     /* the idle pages are older */
    nanosleep(&ts, NULL);
    for (uint32_t i = 0; i < 1000; i++) {
        tt_fill(page, TT_RANDOM, 1000000 + i);
        tmem_put_page(busy, (uint32_t)pb, tt_oid(1, 0, 0), i, page);
    }
    tmem_client_info_t ii, ib;
    tmem_client_info(t, tmem_client_id(idle), &ii);
    tmem_client_info(t, tmem_client_id(busy), &ib);
    print_message("idle %llu pages, busy %llu pages\n", (unsigned long long)ii.ephemeral_pages,
                  (unsigned long long)ib.ephemeral_pages);
    assert_int_equal(ii.ephemeral_pages, 0);
    assert_true(ib.ephemeral_pages > 300);
    /* and the busy client's newest pages are there */
    uint8_t got[PG];
    tt_fill(page, TT_RANDOM, 1000000 + 999);
    assert_int_equal(tmem_get_page(busy, (uint32_t)pb, tt_oid(1, 0, 0), 999, got), 0);
    assert_memory_equal(got, page, PG);
    tt_close(t);
}

/* A client with weight 0 has no share: it loses its pages first. */
static void weight_zero_goes_first(void **state)
{
    (void)state;
    tmem_t *t = tt_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *a = tmem_client_open(t, "a"), *z = tmem_client_open(t, "z");
    tmem_admin_set_weight(t, tmem_client_id(z), 0);
    int pa = tmem_new_pool(a, NOUUID, 0), pz = tmem_new_pool(z, NOUUID, 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 100; i++) {
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(z, (uint32_t)pz, tt_oid(1, 0, 0), i, page);
    }
    for (uint32_t i = 0; i < 400; i++) {
        tt_fill(page, TT_RANDOM, 5000 + i);
        tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page);
    }
    tmem_client_info_t iz;
    tmem_client_info(t, tmem_client_id(z), &iz);
    assert_int_equal(iz.ephemeral_pages, 0);
    assert_int_equal(iz.evicted, 100);
    tt_close(t);
}

static void host_calls(void **state)
{
    (void)state;
    tmem_t *t = tt_open(8 << 20, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, 0), q = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 1500; i++) {
        tt_fill(page, i % 3 ? TT_RANDOM : TT_TEXT, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
    }
    for (uint32_t i = 0; i < 200; i++) {
        tt_fill(page, TT_RANDOM, 77777 + i);
        assert_int_equal(tmem_put_page(c, (uint32_t)q, tt_oid(1, 0, 0), i, page), 0);
    }
    tmem_stats_t s0, s1;
    tmem_stats_get(t, &s0);
    size_t freeable = tmem_freeable_pages(t);
    /* freeable = free frames + every frame of ephemeral data */
    assert_int_equal(freeable, s0.frames_free + (s0.frames_held - s0.frames_free) -
                                   200 /* persistent whole frames */);
    size_t got = tmem_evict_npages(t, 100);
    tmem_stats_get(t, &s1);
    assert_true(got >= 100);
    assert_int_equal(s1.frames_free - s0.frames_free, got);
    /* evicting everything frees everything that was freeable */
    tmem_evict_npages(t, (size_t)1 << 30);
    tmem_stats_get(t, &s1);
    assert_int_equal(s1.ephemeral_pages, 0);
    assert_int_equal(s1.frames_free, freeable);
    assert_int_equal(s1.persistent_pages, 200);
    /* shrinking the limit releases frames at once; growing lets puts in */
    assert_int_equal(tmem_set_max_bytes(t, 2 << 20), 0);
    tmem_stats_get(t, &s1);
    assert_true(s1.bytes_held <= 2 << 20);
    assert_int_equal(s1.max_bytes, 2 << 20);
    assert_int_equal(tmem_set_max_bytes(t, 4096 * 10), -ENOMEM);   /* persistent data stays */
    tmem_stats_get(t, &s1);
    assert_int_equal(s1.persistent_pages, 200);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), 0, page), -ENOMEM);
    assert_int_equal(tmem_set_max_bytes(t, 16 << 20), 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), 0, page), 0);
    assert_int_equal(tmem_set_max_bytes(t, 1), -EINVAL);
    tt_close(t);
}

/* Destructive private gets and flushes free memory at once: with the whole
 * limit used, getting every page back leaves the frames free. */
static void gets_free_memory(void **state)
{
    (void)state;
    tmem_t *t = tt_open(1 << 20, TMEM_COMPRESS_LZ4, 0);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG], got[PG];
    uint32_t n = 0;
    for (; n < 10000; n++) {
        tt_fill(page, TT_TEXT, n);
        if (tmem_put_page(c, (uint32_t)p, tt_oid(n % 7, 0, 0), n, page) != 0)
            break;
    }
    assert_true(n > 200);                       /* compression packs several a frame */
    for (uint32_t i = 0; i < n; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(i % 7, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tmem_stats_t s;
    tmem_stats_get(t, &s);
    assert_int_equal(s.frames_held, s.frames_free);
    assert_int_equal(s.objects, 0);
    tt_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limit_always_holds),
        cmocka_unit_test(lru_order_in_pool),
        cmocka_unit_test(shared_hit_refreshes),
        cmocka_unit_test(weights_share_memory),
        cmocka_unit_test(weight_zero_goes_first),
        cmocka_unit_test(idle_memory_goes_to_the_busy),
        cmocka_unit_test(host_calls),
        cmocka_unit_test(gets_free_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
