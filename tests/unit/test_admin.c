/* SPDX-License-Identifier: MIT */
/*
 * test_admin.c - the administrator's controls and the statistics: freeze and
 * thaw (one client and all), weight, persistent cap (and their ranges,
 * also as defaults), compression on and off, client listing and info, and
 * the tmem-list text.
 */
#include <errno.h>

#include "tmem_test.h"

static const tmem_uuid_t NOUUID = { 0, 0 };

static void freeze_all_and_thaw(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = tmem_client_open(t, "a"), *b = tmem_client_open(t, "b");
    int pa = tmem_new_pool(a, NOUUID, 0), pb = tmem_new_pool(b, NOUUID, 0);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_admin_freeze(t, TMEM_CLIENT_ALL), 0);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0, page), -TMEM_EFROZEN);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 0, page), -TMEM_EFROZEN);
    tmem_client_info_t ia;
    tmem_client_info(t, tmem_client_id(a), &ia);
    assert_int_equal(ia.frozen, 1);
    assert_int_equal(ia.refused_frozen, 1);
    assert_int_equal(tmem_admin_thaw(t, tmem_client_id(a)), 0);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0, page), 0);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 0, page), -TMEM_EFROZEN);
    assert_int_equal(tmem_admin_thaw(t, TMEM_CLIENT_ALL), 0);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 0, page), 0);
    /* the memory-reservation protocol of Xen: freeze, query, flush, thaw */
    assert_int_equal(tmem_admin_freeze(t, TMEM_CLIENT_ALL), 0);
    size_t freeable = tmem_freeable_pages(t);
    assert_true(freeable > 0);
    tmem_evict_npages(t, freeable);
    assert_int_equal(tmem_relinquish_pages(t, freeable), freeable);
    tmem_stats_t s;
    tmem_stats_get(t, &s);
    assert_int_equal(s.ephemeral_pages, 0);
    assert_int_equal(s.frames_held, 0);
    tmem_admin_thaw(t, TMEM_CLIENT_ALL);
    tt_close(t);
}

static void cap_refuses_persistent(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST), e = tmem_new_pool(c, NOUUID, 0);
    assert_int_equal(tmem_admin_set_cap(t, tmem_client_id(c), 10), 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 10; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
    }
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 10, page), -EDQUOT);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 3, page), 0);  /* dup */
    assert_int_equal(tmem_put_page(c, (uint32_t)e, tt_oid(1, 0, 0), 10, page), 0); /* ephemeral */
    assert_int_equal(tmem_flush_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0), 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 10, page), 0);
    tmem_client_info_t ci;
    tmem_client_info(t, tmem_client_id(c), &ci);
    assert_int_equal(ci.refused_quota, 1);
    assert_int_equal(ci.persistent_pages, 10);
    assert_int_equal(ci.cap, 10);
    assert_int_equal(tmem_admin_set_cap(t, tmem_client_id(c), 0), 0);     /* no cap */
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 11, page), 0);
    tt_close(t);
}

/* Two clients of one quota group share its cap; a third outside it does
 * not until it joins, bringing its pages; closing gives pages back. */
static void group_cap_is_shared(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = tmem_client_open(t, "a"), *b = tmem_client_open(t, "b"),
                  *o = tmem_client_open(t, "other");
    assert_int_equal(tmem_admin_set_group_cap(t, 7, 12), -ENOENT);   /* no client yet */
    assert_int_equal(tmem_admin_set_group(t, tmem_client_id(a), 7), 0);
    assert_int_equal(tmem_admin_set_group(t, tmem_client_id(b), 7), 0);
    assert_int_equal(tmem_admin_set_group_cap(t, 7, 12), 0);
    assert_int_equal(tmem_admin_set_group(t, 999999, 7), -ENOENT);
    assert_int_equal(tmem_admin_set_group_cap(t, 0, 1), -EINVAL);
    int pa = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int pb = tmem_new_pool(b, NOUUID, TMEM_POOL_PERSIST);
    int po = tmem_new_pool(o, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    uint32_t i;
    for (i = 0; i < 8; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page), 0);
    }
    for (i = 0; i < 4; i++) {
        tt_fill(page, TT_TEXT, 100 + i);
        assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), i, page), 0);
    }
    assert_int_equal(tmem_group_pages(t, 7), 12);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 4, page), -EDQUOT);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 8, page), -EDQUOT);
    for (i = 0; i < 20; i++) {      /* outside the group: no cap */
        tt_fill(page, TT_TEXT, 200 + i);
        assert_int_equal(tmem_put_page(o, (uint32_t)po, tt_oid(1, 0, 0), i, page), 0);
    }
    assert_int_equal(tmem_check(t), 0);
    /* the third joins with its 20 pages: over the cap they stay, new puts
     * are refused; it leaves with them */
    assert_int_equal(tmem_admin_set_group(t, tmem_client_id(o), 7), 0);
    assert_int_equal(tmem_group_pages(t, 7), 32);
    assert_int_equal(tmem_put_page(o, (uint32_t)po, tt_oid(1, 0, 0), 20, page), -EDQUOT);
    assert_int_equal(tmem_check(t), 0);
    assert_int_equal(tmem_admin_set_group(t, tmem_client_id(o), 0), 0);
    assert_int_equal(tmem_group_pages(t, 7), 12);
    assert_int_equal(tmem_put_page(o, (uint32_t)po, tt_oid(1, 0, 0), 20, page), 0);
    assert_int_equal(tmem_flush_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0), 0);
    assert_int_equal(tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 4, page), 0);
    tmem_client_close(a);           /* its 7 pages leave the group */
    assert_int_equal(tmem_group_pages(t, 7), 5);
    assert_int_equal(tmem_check(t), 0);
    tmem_client_close(b);           /* its last client: the group is gone */
    assert_int_equal(tmem_admin_set_group_cap(t, 7, 1), -ENOENT);
    assert_int_equal(tmem_group_pages(t, 7), 0);
    tt_close(t);
}

/* A client joins a group the engine has to make while it is full of
 * ephemeral pages: the group's structure needs room, which eviction makes;
 * eviction takes clients_lock for reading, so it must not run under
 * tmem_admin_set_group's write lock (glibc's rdlock then fails with
 * EDEADLK and eviction's unlock releases the caller's write lock). */
static void group_made_when_full(void **state)
{
    (void)state;
    tmem_t *t = tt_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *a = tmem_client_open(t, "a");
    int pa = tmem_new_pool(a, NOUUID, 0);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 1000; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page), 0);
    }
    for (uint32_t g = 1; g <= 64; g++) {
        tmem_client_t *b = tmem_client_open(t, "b");
        assert_non_null(b);
        int rc = tmem_admin_set_group(t, tmem_client_id(b), g);
        assert_true(rc == 0 || rc == -ENOMEM);
        /* clients_lock is free again: another thread can take it */
        tmem_client_close(b);
    }
    tt_close(t);

    /* full of persistent pages: nothing to evict, and a client that can
     * open (TM_OPEN_RESERVE) can join a new group too */
    t = tt_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    a = tmem_client_open(t, "a");
    pa = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < 1000; i++) {
        tt_fill(page, TT_RANDOM, i);
        rc = tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page);
    }
    assert_int_equal(rc, -ENOMEM);
    tmem_client_t *b = tmem_client_open(t, "b");
    assert_non_null(b);
    assert_int_equal(tmem_admin_set_group(t, tmem_client_id(b), 9), 0);
    tmem_client_close(b);
    tmem_client_close(a);
    tt_close(t);
}

static void compress_switch(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_NONE, 1);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), 0);
    tmem_client_info_t ci;
    tmem_client_info(t, tmem_client_id(c), &ci);
    assert_int_equal(ci.compress, TMEM_COMPRESS_NONE);
    assert_int_equal(ci.compressed_pages, 0);
    for (int codec = TMEM_COMPRESS_LZ4; codec <= TMEM_COMPRESS_ZSTD; codec++) {
        assert_int_equal(tmem_admin_set_compress(t, tmem_client_id(c), codec), 0);
        tt_fill(page, TT_TEXT, 10 + (uint64_t)codec);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), (uint32_t)codec, page), 0);
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), (uint32_t)codec, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tmem_client_info(t, tmem_client_id(c), &ci);
    assert_int_equal(ci.compress, TMEM_COMPRESS_ZSTD);
    assert_int_equal(ci.compressed_pages, 2);
    assert_true(ci.compressed_bytes < 2 * PG / 4);
    tt_fill(page, TT_TEXT, 1);          /* the page put before still reads back */
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
    assert_memory_equal(got, page, PG);
    tt_close(t);
}

static void client_listing(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = tmem_client_open(t, "alpha"), *b = tmem_client_open(t, "beta");
    uint32_t ids[4];
    assert_int_equal(tmem_client_ids(t, ids, 4), 2);
    assert_int_equal(ids[0], tmem_client_id(a));
    assert_int_equal(ids[1], tmem_client_id(b));
    assert_true(tmem_client_id(a) != tmem_client_id(b));
    tmem_client_info_t ci;
    assert_int_equal(tmem_client_info(t, tmem_client_id(b), &ci), 0);
    assert_string_equal(ci.name, "beta");
    assert_int_equal(ci.weight, 100);
    tmem_admin_set_weight(t, tmem_client_id(b), 7);
    tmem_client_info(t, tmem_client_id(b), &ci);
    assert_int_equal(ci.weight, 7);
    /* the ranges: TMEM_WEIGHT_MAX and TMEM_CAP_MAX, no more */
    assert_int_equal(tmem_admin_set_weight(t, tmem_client_id(b), TMEM_WEIGHT_MAX + 1), -EINVAL);
    assert_int_equal(tmem_admin_set_weight(t, tmem_client_id(b), 0xFFFFFFFFu), -EINVAL);
    assert_int_equal(tmem_admin_set_cap(t, tmem_client_id(b), TMEM_CAP_MAX + 1), -EINVAL);
    tmem_client_info(t, tmem_client_id(b), &ci);
    assert_int_equal(ci.weight, 7);
    assert_int_equal(ci.cap, 0);
    assert_int_equal(tmem_admin_set_weight(t, tmem_client_id(b), TMEM_WEIGHT_MAX), 0);
    assert_int_equal(tmem_admin_set_cap(t, tmem_client_id(b), TMEM_CAP_MAX), 0);
    tmem_client_info(t, tmem_client_id(b), &ci);
    assert_int_equal(ci.weight, TMEM_WEIGHT_MAX);
    assert_int_equal(ci.cap, TMEM_CAP_MAX);
    tmem_config_t cfg;
    tt_config(&cfg, 0, TMEM_COMPRESS_LZ4, 1);
    cfg.default_weight = TMEM_WEIGHT_MAX + 1;
    errno = 0;
    assert_null(tmem_open(&cfg));
    assert_int_equal(errno, EINVAL);
    cfg.default_weight = 100;
    cfg.default_cap = TMEM_CAP_MAX + 1;
    assert_null(tmem_open(&cfg));
    uint32_t old = tmem_client_id(a);
    tmem_client_close(a);
    assert_int_equal(tmem_client_ids(t, ids, 4), 1);
    tmem_client_t *c = tmem_client_open(t, "gamma");
    assert_true(tmem_client_id(c) > old);           /* ids are never reused */
    assert_int_equal(tmem_client_info(t, old, &ci), -ENOENT);
    tt_close(t);
}

static void list_text(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = tmem_client_open(t, "alpha");
    tmem_uuid_t u = { 0xabc, 0xdef };
    tmem_admin_shared_auth(t, tmem_client_id(a), u, 1);
    int p = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int s = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    tmem_put_page(a, (uint32_t)p, tt_oid(1, 0, 0), 0, page);
    tmem_put_page(a, (uint32_t)s, tt_oid(1, 0, 0), 0, page);
    char buf[8192];
    size_t n = tmem_list(t, TMEM_CLIENT_ALL, 0, buf, sizeof(buf));
    assert_true(n > 0 && n < sizeof(buf));
    assert_int_equal(strlen(buf), n);
    assert_non_null(strstr(buf, "G=Tt:"));
    assert_non_null(strstr(buf, "S=SI:0,PT:ES,U0:abc,U1:def,SC:1"));
    assert_non_null(strstr(buf, "C=CI:1,ww:100,ca:0,co:1,fr:0"));
    assert_non_null(strstr(buf, "P=CI:1,PI:0,PT:PP"));
    assert_non_null(strstr(buf, "P=CI:1,PI:1,PT:ES"));
    assert_null(strstr(buf, ",Pc:"));                       /* short form */
    size_t nl = tmem_list(t, TMEM_CLIENT_ALL, 1, buf, sizeof(buf));
    assert_true(nl > n);
    assert_non_null(strstr(buf, "P=CI:1,PI:0,PT:PP,U0:0,U1:0,Pc:1,Pm:1,Oc:1,Om:1,ps:1,pt:1"));
    assert_non_null(strstr(buf, ",nm:alpha"));
    /* one client only, and truncation reports the full length */
    size_t one = tmem_list(t, tmem_client_id(a), 0, buf, sizeof(buf));
    assert_null(strstr(buf, "G="));
    char small[16];
    assert_int_equal(tmem_list(t, tmem_client_id(a), 0, small, sizeof(small)), one);
    assert_int_equal(strlen(small), sizeof(small) - 1);
    tt_close(t);
}

static void stats_count_outcomes(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "a");
    int p = tmem_new_pool(c, NOUUID, 0);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 1);
    for (uint32_t i = 0; i < 10; i++)
        tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
    for (uint32_t i = 0; i < 15; i++)
        tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
    tmem_flush_page(c, (uint32_t)p, tt_oid(1, 0, 0), 99);
    tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), 0, page);
    assert_int_equal(tmem_flush_object(c, (uint32_t)p, tt_oid(2, 0, 0)), 1);
    tmem_stats_t s;
    tmem_stats_get(t, &s);
    assert_int_equal(s.puts, 11);
    assert_int_equal(s.puts_ok, 11);
    assert_int_equal(s.gets, 15);
    assert_int_equal(s.gets_hit, 10);
    assert_int_equal(s.flushes, 1);
    assert_int_equal(s.flush_objects, 1);
    assert_int_equal(s.flushed_pages, 1);
    assert_int_equal(s.dedup_hits, 9);          /* the first of ten identical puts makes the body */
    tmem_client_close(c);                       /* cumulative counters survive */
    tmem_stats_get(t, &s);
    assert_int_equal(s.puts, 11);
    assert_int_equal(s.clients, 0);
    tt_close(t);
}


/* A client name cannot forge tmem-list lines or keys. */
static void names_cannot_forge_lines(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = tmem_client_open(t, "x\nC=CI:99,ww:100000\tend");
    tmem_client_info_t ci;
    tmem_client_info(t, tmem_client_id(c), &ci);
    assert_string_equal(ci.name, "x_C_CI_99_ww_100000_end");
    char buf[4096];
    tmem_list(t, TMEM_CLIENT_ALL, 1, buf, sizeof(buf));
    assert_null(strstr(buf, "CI:99"));
    int lines = 0;
    for (char *q = buf; *q; q++)
        lines += *q == '\n';
    assert_int_equal(lines, 3);                 /* G=, C=, T= */
    tt_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(freeze_all_and_thaw),
        cmocka_unit_test(cap_refuses_persistent),
        cmocka_unit_test(group_cap_is_shared),
        cmocka_unit_test(group_made_when_full),
        cmocka_unit_test(compress_switch),
        cmocka_unit_test(client_listing),
        cmocka_unit_test(list_text),
        cmocka_unit_test(stats_count_outcomes),
        cmocka_unit_test(names_cannot_forge_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
