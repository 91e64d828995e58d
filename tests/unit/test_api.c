/* SPDX-License-Identifier: MIT */
/*
 * test_api.c - the client API and each of its semantic rules (the comments
 * of include/tmem/tmem.h) with its own test, plus bad input of every kind.  Built
 * twice: test_api runs it on an in-process engine, test_api_daemon through
 * a real tmemd (host.h).
 */
#include <errno.h>

#include "host.h"

static const tmem_uuid_t NOUUID = { 0, 0 };

/* Rule 1: a put copies; the client keeps its own copy. */
static void put_copies(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    assert_int_equal(p, 0);
    uint8_t src[PG], want[PG], got[PG];
    tt_fill(src, TT_TEXT, 1);
    memcpy(want, src, PG);
    assert_int_equal(tmem_put_page(c, 0, tt_oid(1, 2, 3), 7, src), 0);
    memset(src, 0xAB, PG);                  /* the client reuses its page */
    assert_int_equal(tmem_get_page(c, 0, tt_oid(1, 2, 3), 7, got), 0);
    assert_memory_equal(got, want, PG);
    th_close(t);
}

/* Rule 1: any put may be refused (here: no room at all for persistent data). */
static void put_may_be_refused(void **state)
{
    (void)state;
    tt_host *t = th_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    int refused = 0, stored = 0;
    for (uint32_t i = 0; i < 1024; i++) {
        tt_fill(page, TT_RANDOM, i);
        int rc = tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
        assert_true(rc == 0 || rc == -ENOMEM);
        rc ? refused++ : stored++;
    }
    assert_true(refused > 0 && stored > 0);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.refused_nomem, (uint64_t)refused);
    assert_true(s.bytes_held <= s.max_bytes);
    th_close(t);
}

/* Rule 2: persistent pages are never evicted, whatever ephemeral pressure. */
static void persistent_never_evicted(void **state)
{
    (void)state;
    tt_host *t = th_open(4 << 20, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    int pp = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    int ep = tmem_new_pool(c, NOUUID, 0);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 256; i++) {
        tt_fill(page, TT_RANDOM, 1000 + i);
        assert_int_equal(tmem_put_page(c, (uint32_t)pp, tt_oid(9, 0, 0), i, page), 0);
    }
    for (uint32_t i = 0; i < 4096; i++) {       /* 4x the limit of ephemeral data */
        tt_fill(page, TT_RANDOM, i);
        int rc = tmem_put_page(c, (uint32_t)ep, tt_oid(1, 0, 0), i, page);
        assert_true(rc == 0 || rc == -ENOMEM);
    }
    tmem_stats_t s;
    th_stats(t, &s);
    assert_true(s.evictions > 0);
    assert_int_equal(s.persistent_pages, 256);
    for (uint32_t i = 0; i < 256; i++) {
        tt_fill(page, TT_RANDOM, 1000 + i);
        assert_int_equal(tmem_get_page(c, (uint32_t)pp, tt_oid(9, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    th_close(t);
}

/* Rule 2: until flush, destroy or close; afterwards gone. */
static void persistent_until_flush(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_HALF, 5);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
    for (int k = 0; k < 3; k++)                 /* KEEP_ON_GET: gets do not remove */
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
    assert_int_equal(tmem_flush_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), -ENOENT);
    assert_int_equal(tmem_flush_object(c, (uint32_t)p, tt_oid(1, 0, 0)), 3);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 1, got), -ENOENT);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), 0, page), 0);
    assert_int_equal(tmem_destroy_pool(c, (uint32_t)p), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(2, 0, 0), 0, got), -ENODEV);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.persistent_pages, 0);
    assert_int_equal(s.pools, 0);
    th_close(t);
}

/* Rule 3: an ephemeral get may miss, even right after a put (here: another
 * client's puts evicted it; a holds more than its half share, so it loses
 * its oldest pages first).  With lent memory a's library gives memory back
 * when the daemon asks, while b goes on: b puts until a has lost every page
 * (a, idle, has no share), at most 64 more rounds. */
static void ephemeral_may_miss(void **state)
{
    (void)state;
    tt_host *t = th_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *a = th_client(t, "a"), *b = th_client(t, "b");
    int pa = tmem_new_pool(a, NOUUID, 0), pb = tmem_new_pool(b, NOUUID, 0);
    uint8_t page[PG], got[PG];
    const uint32_t NA = 200;
    for (uint32_t i = 0; i < NA; i++) {
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), i, page), 0);
    }
    tmem_client_info_t ia;
    uint32_t next = 0;
    for (int round = 0; round < 64; round++) {
        for (uint32_t k = 0; k < 1024; k++, next++) {
            tt_fill(page, TT_RANDOM, 100000 + next);
            tmem_put_page(b, (uint32_t)pb, tt_oid(1, 0, 0), next % 1024, page);
        }
        th_client_info(t, tmem_client_id(a), &ia);
        if (!th_local_pools(t) || ia.evicted >= NA)
            break;
    }
    assert_int_equal(tmem_get_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0, got), -ENOENT);
    th_client_info(t, tmem_client_id(a), &ia);
    assert_true(ia.evicted > 0);
    th_close(t);
}

/* Rule 4: private gets are exclusive, shared gets are not. */
static void private_get_destructive(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_TEXT, 3);
    for (uint32_t flags = 0; flags <= TMEM_POOL_PERSIST; flags++) {
        int p = tmem_new_pool(c, NOUUID, flags);
        assert_true(p >= 0);
        assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), 0);
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
        assert_memory_equal(got, page, PG);
        assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), -ENOENT);
    }
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.ephemeral_pages + s.persistent_pages, 0);
    th_close(t);
}

static void shared_get_keeps(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = th_client(t, "a"), *b = th_client(t, "b");
    tmem_uuid_t u = { 0x1111, 0x2222 };
    assert_int_equal(th_shared_auth(t, tmem_client_id(a), u, 1), 0);
    assert_int_equal(th_shared_auth(t, tmem_client_id(b), u, 1), 0);
    int pa = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    assert_int_equal(tmem_new_pool(b, NOUUID, 0), 0);  /* b's slot 0 is private */
    int pb = tmem_new_pool(b, u, TMEM_POOL_SHARED);
    assert_int_equal(pb, 1);                            /* its own slot id */
    assert_int_equal(tmem_new_pool(b, u, TMEM_POOL_SHARED), pb); /* joining again: the same id */
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)pa), 1);
    assert_int_equal(tmem_pool_is_shared(b, (uint32_t)pb), 1);
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_TEXT, 9);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(4, 5, 6), 1, page), 0);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(tmem_get_page(b, (uint32_t)pb, tt_oid(4, 5, 6), 1, got), 0);
        assert_memory_equal(got, page, PG);
    }
    assert_int_equal(tmem_get_page(a, (uint32_t)pa, tt_oid(4, 5, 6), 1, got), 0);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.pools, 2);               /* the shared pool counts once */
    th_close(t);
}

/* Rule 5: put-put-get never returns the first data. */
static void put_put_get(void **state)
{
    (void)state;
    int kinds[] = { TT_RANDOM, TT_TEXT, TT_ZERO, TT_WORD, TT_HALF };
    for (int codec = TMEM_COMPRESS_NONE; codec <= TMEM_COMPRESS_ZSTD; codec++) {
        tt_host *t = th_open(0, codec, 1);
        tmem_client_t *c = th_client(t, "a");
        int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
        uint8_t a[PG], b[PG], got[PG];
        for (int i = 0; i < 5; i++) {
            for (int j = 0; j < 5; j++) {
                tt_fill(a, kinds[i], 10 + i);
                tt_fill(b, kinds[j], 20 + j);
                assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, a), 0);
                assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, b), 0);
                assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), 0);
                assert_memory_equal(got, b, PG);
            }
        }
        tmem_stats_t s;
        th_stats(t, &s);
        assert_int_equal(s.dup_puts_replaced, 25);
        th_close(t);
    }
}

/* Rule 5: a duplicate put that cannot be stored fails *and* removes the old
 * copy (-ENOSPC). */
static void dup_put_fail_flushes(void **state)
{
    (void)state;
    tt_host *t = th_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG], got[PG];
    uint32_t n = 0;
    for (;; n++) {                      /* fill memory with persistent pages */
        tt_fill(page, TT_RANDOM, n);
        if (tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), n, page) != 0)
            break;
    }
    assert_true(n > 10);
    tt_fill(page, TT_RANDOM, 999999);   /* new data for handle 0: no room for it */
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), -ENOSPC);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), -ENOENT);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.dup_puts_flushed, 1);
    assert_int_equal(s.persistent_pages, n - 1);
    th_close(t);
}

/* Rule 6: get-get: once a get misses, it keeps missing until a new put. */
static void get_get(void **state)
{
    (void)state;
    tt_host *t = th_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, 0);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 64; i++) {
        tt_fill(page, TT_RANDOM, i);
        tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page);
    }
    for (uint32_t i = 0; i < 1024; i++) {       /* evict most of them */
        tt_fill(page, TT_RANDOM, 5000 + i);
        tmem_put_page(c, (uint32_t)p, tt_oid(2, 0, 0), i, page);
    }
    int missed = 0;
    for (uint32_t i = 0; i < 64; i++) {
        if (tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, got) == -ENOENT) {
            missed++;
            for (int k = 0; k < 3; k++)
                assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, got), -ENOENT);
            tt_fill(page, TT_TEXT, i);
            assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, page), 0);
            assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), i, got), 0);
            assert_memory_equal(got, page, PG);
        }
    }
    assert_true(missed > 0);
    th_close(t);
}

/* Rule 7: flushes of absent handles are not errors; flushes work on frozen
 * clients (and frozen clients refuse only new puts). */
static void flush_absent_and_frozen(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG], got[PG];
    assert_int_equal(tmem_flush_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0), 0);
    assert_int_equal(tmem_flush_object(c, (uint32_t)p, tt_oid(1, 0, 0)), 0);
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, page), 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 1, page), 0);
    assert_int_equal(th_freeze(t, tmem_client_id(c), 1), 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 2, page), -TMEM_EFROZEN);
    tt_fill(page, TT_TEXT, 2);                  /* a duplicate put is allowed */
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 1, page), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 1, got), 0);
    assert_memory_equal(got, page, PG);
    assert_int_equal(tmem_flush_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0), 0);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, got), -ENOENT);
    assert_int_equal(th_freeze(t, tmem_client_id(c), 0), 0);
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 2, page), 0);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.refused_frozen, 1);
    th_close(t);
}

/* Rule 9: a client's death frees its private pools and leaves its shared
 * pools, which live on for the others. */
static void death_frees_private_keeps_shared(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = th_client(t, "a"), *b = th_client(t, "b");
    tmem_uuid_t u = { 7, 8 };
    th_shared_auth(t, tmem_client_id(a), u, 1);
    th_shared_auth(t, tmem_client_id(b), u, 1);
    int ap = tmem_new_pool(a, NOUUID, TMEM_POOL_PERSIST);
    int as = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    int bs = tmem_new_pool(b, u, TMEM_POOL_SHARED);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 32; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_put_page(a, (uint32_t)ap, tt_oid(1, 0, 0), i, page), 0);
        assert_int_equal(tmem_put_page(a, (uint32_t)as, tt_oid(2, 0, 0), i, page), 0);
    }
    tmem_stats_t s0, s1;
    th_stats(t, &s0);
    th_client_close(t, a);
    th_stats(t, &s1);
    assert_int_equal(s1.persistent_pages, 0);
    assert_int_equal(s1.ephemeral_pages, 32);   /* now accounted to b */
    assert_true(s1.bytes_held < s0.bytes_held);
    tmem_client_info_t bi;
    assert_int_equal(th_client_info(t, tmem_client_id(b), &bi), 0);
    assert_int_equal(bi.ephemeral_pages, 32);
    for (uint32_t i = 0; i < 32; i++) {
        tt_fill(page, TT_TEXT, i);
        assert_int_equal(tmem_get_page(b, (uint32_t)bs, tt_oid(2, 0, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    /* the closed handle is a tombstone: calls fail, counted */
    assert_int_equal(tmem_put_page(a, 0, tt_oid(1, 0, 0), 0, page), -ENODEV);
    assert_int_equal(tmem_new_pool(a, NOUUID, 0), -ENODEV);
    tmem_client_close(a);                       /* twice is harmless */
    th_stats(t, &s1);
    if (!TT_DAEMON)     /* a connected handle answers -ENODEV itself */
        assert_int_equal(s1.bad_closed, 2);
    assert_int_equal(th_client_info(t, tmem_client_id(a), &bi), -ENOENT);
    th_client_close(t, b);                      /* the last sharer: the pool goes */
    th_stats(t, &s1);
    assert_int_equal(s1.ephemeral_pages + s1.pools, 0);
    th_close(t);
}

/* Rule 10: shared pools only with authorisation; else a private pool. */
static void shared_needs_auth(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *a = th_client(t, "a"), *b = th_client(t, "b");
    tmem_uuid_t u = { 42, 43 };
    th_shared_auth(t, tmem_client_id(a), u, 1);
    int pa = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    int pb = tmem_new_pool(b, u, TMEM_POOL_SHARED);     /* b is not authorised */
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)pa), 1);
    assert_int_equal(tmem_pool_is_shared(b, (uint32_t)pb), 0);
    uint8_t page[PG], got[PG];
    tt_fill(page, TT_TEXT, 1);
    assert_int_equal(tmem_put_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0, page), 0);
    assert_int_equal(tmem_get_page(b, (uint32_t)pb, tt_oid(1, 0, 0), 0, got), -ENOENT);
    /* an all-ones uuid is never shared */
    tmem_uuid_t ones = { UINT64_MAX, UINT64_MAX };
    th_shared_auth(t, tmem_client_id(a), ones, 1);
    int pc = tmem_new_pool(a, ones, TMEM_POOL_SHARED);
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)pc), 0);
    /* revoking does not evict a member, but blocks a new join */
    th_shared_auth(t, tmem_client_id(a), u, 0);
    int pd = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)pd), 0);
    assert_int_equal(tmem_get_page(a, (uint32_t)pa, tt_oid(1, 0, 0), 0, got), 0);
    th_close(t);
}

static void shared_without_auth_config(void **state)
{
    (void)state;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.shared_auth_required = 0;
    tt_host *t = th_open_cfg(&cfg);
    tmem_client_t *a = th_client(t, "a");
    tmem_uuid_t u = { 1, 2 };
    int p = tmem_new_pool(a, u, TMEM_POOL_SHARED);
    assert_int_equal(tmem_pool_is_shared(a, (uint32_t)p), 1);
    th_close(t);
}

/* Pool flags: the Xen layout, reserved bits rejected, the lowest free id,
 * 16 pools per client. */
static void pool_flags_and_ids(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    uint32_t bad[] = { 0x4, 0x100, 0x800000, 1u << 4, 2u << 24, TMEM_POOL_SHARED | TMEM_POOL_PERSIST,
                       TMEM_POOL_SHARED | TMEM_POOL_KEEP_ON_GET, 0x10000 };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(tmem_new_pool(c, NOUUID, bad[i]), -EINVAL);
    assert_int_equal(tmem_new_pool(c, NOUUID, 1u << 24), 0);    /* spec version 1 */
    assert_int_equal(tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST), 1);
    for (int i = 2; i < 16; i++)
        assert_int_equal(tmem_new_pool(c, NOUUID, 0), i);
    assert_int_equal(tmem_new_pool(c, NOUUID, 0), -ENOMEM);     /* no slot */
    assert_int_equal(tmem_destroy_pool(c, 5), 0);
    assert_int_equal(tmem_destroy_pool(c, 5), -ENODEV);
    assert_int_equal(tmem_new_pool(c, NOUUID, 0), 5);           /* the lowest free slot */
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.bad_args, sizeof(bad) / sizeof(bad[0]));
    th_close(t);
}

/* Bad input never crashes: it gives a negative result and a counted reason. */
static void bad_input(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    uint8_t page[PG] = { 0 };
    int p = tmem_new_pool(c, NOUUID, 0);
    uint32_t ids[] = { 1, 15, 16, 17, 1000, UINT32_MAX, (uint32_t)-1 };
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        assert_int_equal(tmem_put_page(c, ids[i], tt_oid(1, 0, 0), 0, page), -ENODEV);
        assert_int_equal(tmem_get_page(c, ids[i], tt_oid(1, 0, 0), 0, page), -ENODEV);
        assert_int_equal(tmem_flush_page(c, ids[i], tt_oid(1, 0, 0), 0), -ENODEV);
        assert_int_equal(tmem_flush_object(c, ids[i], tt_oid(1, 0, 0)), -ENODEV);
        assert_int_equal(tmem_destroy_pool(c, ids[i]), -ENODEV);
    }
    assert_int_equal(tmem_put_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, NULL), -EINVAL);
    assert_int_equal(tmem_get_page(c, (uint32_t)p, tt_oid(1, 0, 0), 0, NULL), -EINVAL);
    assert_int_equal(tmem_put_page(NULL, 0, tt_oid(1, 0, 0), 0, page), -EINVAL);
    assert_int_equal(tmem_get_page(NULL, 0, tt_oid(1, 0, 0), 0, page), -EINVAL);
    assert_int_equal(tmem_new_pool(NULL, NOUUID, 0), -EINVAL);
    tmem_client_close(NULL);
    assert_null(tmem_client_open(NULL, "x"));
    assert_int_equal(tmem_stats_get(NULL, NULL), -EINVAL);
    assert_int_equal(th_freeze(t, 9999, 1), -ENOENT);
    if (!TT_DAEMON)
        assert_int_equal(tmem_admin_set_compress(th_engine(t), tmem_client_id(c), 7), -EINVAL);
    errno = 0;
    assert_null(tmem_connect("/nonexistent/tmemd.sock", "x"));
    assert_int_equal(errno, ENOENT);
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.bad_pool, 5 * sizeof(ids) / sizeof(ids[0]));
    /* NULL pages: counted by the engine that runs the private pools, not sent
     * to a daemon that runs them */
    assert_int_equal(s.bad_args, th_local_pools(t) ? 2 : 0);
    th_close(t);
}

#if !TT_DAEMON
static void config_validation(void **state)
{
    (void)state;
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    assert_int_equal(cfg.compress, TMEM_COMPRESS_LZ4);
    assert_true(cfg.max_bytes > 0);
    tmem_config_t badc = cfg;
    badc.compress = 9;
    assert_null(tmem_open(&badc));
    assert_int_equal(errno, EINVAL);
    badc = cfg;
    badc.compress_max = TMEM_PAGE_SIZE;
    assert_null(tmem_open(&badc));
    badc = cfg;
    badc.max_bytes = 10;
    assert_null(tmem_open(&badc));
    tmem_t *t = tmem_open(NULL);
    assert_non_null(t);
    tt_close(t);
}

static void strerror_names_every_code(void **state)
{
    (void)state;
    int codes[] = { 0, -ENOENT, -ENOMEM, -EDQUOT, -ENOSPC, -ENODEV, -EINVAL, -EBUSY, -ENOSYS,
                    -EPROTO, -TMEM_EFROZEN, -ENOTCONN, -EOPNOTSUPP };
    const char *unknown = tmem_strerror(-12345);
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = tmem_strerror(codes[i]);
        assert_non_null(s);
        assert_string_not_equal(s, unknown);
        assert_string_equal(s, tmem_strerror(-codes[i]));   /* code or -code */
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, tmem_strerror(codes[j]));
    }
}

#endif

/* Vector calls do what the single calls would, in order, one result per
 * page: random vectors of puts, gets and flushes over a persistent pool
 * (exclusive gets), a keep-on-get one and a shared one, with handles that
 * repeat within a vector, against a model of what each handle holds. */
static void fill_version(uint8_t *page, int pool, unsigned key, unsigned version)
{
    tt_fill(page, (pool + key + version) % 3 == 0 ? TT_RANDOM : TT_TEXT,
            ((uint64_t)pool << 40) | ((uint64_t)key << 20) | version);
}

static void vector_calls_model(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "vectors");
    tmem_uuid_t u = { 0x7ec, 0x70e };
    assert_int_equal(th_shared_auth(t, tmem_client_id(c), u, 1), 0);
    int pools[3] = { tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST),
                     tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET),
                     tmem_new_pool(c, u, TMEM_POOL_SHARED) };
    assert_true(pools[0] >= 0 && pools[1] >= 0 && pools[2] >= 0);
    assert_int_equal(tmem_pool_is_shared(c, (uint32_t)pools[2]), 1);
    enum { KEYS = 12, MAXV = 48, ROUNDS = 400 };
    unsigned version[3][KEYS] = { { 0 } }, next = 1;   /* 0: absent */
    static uint8_t pages[MAXV][PG], want[PG];
    tmem_handle_t h[MAXV];
    const void *in[MAXV];
    void *out[MAXV];
    int res[MAXV], pl[MAXV];
    unsigned key[MAXV], putv[MAXV];
    tt_rng r;
    tt_seed(&r, 4242);
    for (int round = 0; round < ROUNDS; round++) {
        int op = (int)tt_below(&r, 3), n = 1 + (int)tt_below(&r, MAXV);
        for (int i = 0; i < n; i++) {
            pl[i] = (int)tt_below(&r, 3);
            key[i] = (unsigned)tt_below(&r, KEYS);
            h[i] = (tmem_handle_t){ (uint32_t)pools[pl[i]], key[i], tt_oid(9, 0, 0) };
            if (op == 0) {
                putv[i] = next++;
                fill_version(pages[i], pl[i], key[i], putv[i]);
            } else {
                memset(pages[i], 0x5a, PG);
            }
            in[i] = out[i] = pages[i];
        }
        int ok = op == 0 ? tmem_put_pages(c, (size_t)n, h, in, res)
               : op == 1 ? tmem_get_pages(c, (size_t)n, h, out, res)
                         : tmem_flush_pages(c, (size_t)n, h, res);
        int want_ok = 0;
        for (int i = 0; i < n; i++) {       /* the model, in order */
            unsigned *v = &version[pl[i]][key[i]];
            if (op == 0) {
                assert_int_equal(res[i], 0);
                *v = putv[i];
            } else if (op == 1) {
                if (!*v) {
                    assert_int_equal(res[i], -ENOENT);
                    continue;
                }
                assert_int_equal(res[i], 0);
                fill_version(want, pl[i], key[i], *v);
                assert_memory_equal(pages[i], want, PG);
                if (pl[i] == 0)
                    *v = 0;                 /* an exclusive get took it */
            } else {
                assert_int_equal(res[i], 0);
                *v = 0;
            }
            want_ok += res[i] == 0;
        }
        assert_int_equal(ok, want_ok);
    }
    /* bad calls: whole, and per page */
    assert_int_equal(tmem_put_pages(c, 1, NULL, in, res), -EINVAL);
    assert_int_equal(tmem_get_pages(c, 1, h, NULL, res), -EINVAL);
    assert_int_equal(tmem_flush_pages(c, 1, h, NULL), -EINVAL);
    assert_int_equal(tmem_put_pages(NULL, 1, h, in, res), -EINVAL);
    assert_int_equal(tmem_get_pages(c, 0, h, out, res), 0);
    h[0] = (tmem_handle_t){ 15, 0, tt_oid(9, 0, 0) };
    h[1] = (tmem_handle_t){ (uint32_t)pools[0], 1, tt_oid(9, 0, 0) };
    in[1] = NULL;
    assert_int_equal(tmem_put_pages(c, 2, h, in, res), 0);
    assert_int_equal(res[0], -ENODEV);
    assert_int_equal(res[1], -EINVAL);
    th_close(t);
}

/* Handles: the full 192 bits and the 32-bit index are all significant. */
static void handles_are_distinct(void **state)
{
    (void)state;
    tt_host *t = th_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *c = th_client(t, "a");
    int p = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST | TMEM_POOL_KEEP_ON_GET);
    tmem_oid_t oids[] = { tt_oid(0, 0, 0), tt_oid(1, 0, 0), tt_oid(0, 1, 0), tt_oid(0, 0, 1),
                          tt_oid(UINT64_MAX, UINT64_MAX, UINT64_MAX), tt_oid(1ull << 63, 0, 0) };
    uint32_t idx[] = { 0, 1, UINT32_MAX, 1u << 31 };
    uint8_t page[PG], got[PG];
    size_t n = sizeof(oids) / sizeof(oids[0]), m = sizeof(idx) / sizeof(idx[0]);
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m; j++) {
            tt_fill(page, TT_TEXT, i * 100 + j);
            assert_int_equal(tmem_put_page(c, (uint32_t)p, oids[i], idx[j], page), 0);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < m; j++) {
            tt_fill(page, TT_TEXT, i * 100 + j);
            assert_int_equal(tmem_get_page(c, (uint32_t)p, oids[i], idx[j], got), 0);
            assert_memory_equal(got, page, PG);
        }
    }
    tmem_stats_t s;
    th_stats(t, &s);
    assert_int_equal(s.persistent_pages, n * m);
    assert_int_equal(s.objects, n);
    th_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_copies),
        cmocka_unit_test(put_may_be_refused),
        cmocka_unit_test(persistent_never_evicted),
        cmocka_unit_test(persistent_until_flush),
        cmocka_unit_test(ephemeral_may_miss),
        cmocka_unit_test(private_get_destructive),
        cmocka_unit_test(shared_get_keeps),
        cmocka_unit_test(put_put_get),
        cmocka_unit_test(dup_put_fail_flushes),
        cmocka_unit_test(get_get),
        cmocka_unit_test(flush_absent_and_frozen),
        cmocka_unit_test(death_frees_private_keeps_shared),
        cmocka_unit_test(shared_needs_auth),
        cmocka_unit_test(shared_without_auth_config),
        cmocka_unit_test(pool_flags_and_ids),
        cmocka_unit_test(bad_input),
        cmocka_unit_test(handles_are_distinct),
        cmocka_unit_test(vector_calls_model),
#if !TT_DAEMON      /* engine-only: no client call involved */
        cmocka_unit_test(config_validation),
        cmocka_unit_test(strerror_names_every_code),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
