/* SPDX-License-Identifier: MIT */
/*
 * test_save.c - save and restore of a client: a round trip between two
 * engines carries settings, pool ids and persistent pages (not ephemeral
 * ones); a hostile stream (truncated anywhere, any byte changed, a weight
 * or cap out of range behind a right checksum) is refused and leaves the
 * client with no pools; the documented errors.
 */
#include <errno.h>
#include <xxhash.h>

#include "tmem_test.h"

static const tmem_uuid_t NOUUID = { 0, 0 };

/* A client "src" in t with: pool 0 persistent (n pages), pool 1 ephemeral
 * (pages too, not saved), pool 3 persistent empty; weight 42, cap 1000,
 * zstd. */
static tmem_client_t *make_source(tmem_t *t, uint32_t n)
{
    tmem_client_t *c = tmem_client_open(t, "src");
    assert_int_equal(tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST), 0);
    assert_int_equal(tmem_new_pool(c, NOUUID, 0), 1);
    assert_int_equal(tmem_new_pool(c, NOUUID, 0), 2);
    assert_int_equal(tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST), 3);
    assert_int_equal(tmem_destroy_pool(c, 2), 0);       /* a hole in the pool ids */
    tmem_admin_set_weight(t, tmem_client_id(c), 42);
    tmem_admin_set_cap(t, tmem_client_id(c), 1000);
    tmem_admin_set_compress(t, tmem_client_id(c), TMEM_COMPRESS_ZSTD);
    uint8_t page[PG];
    for (uint32_t i = 0; i < n; i++) {
        tt_fill(page, (enum tt_kind)(i % TT_KINDS), i);
        assert_int_equal(tmem_put_page(c, 0, tt_oid(i % 5, i, 0), i, page), 0);
        assert_int_equal(tmem_put_page(c, 1, tt_oid(1, 0, 0), i, page), 0);
    }
    return c;
}

static void round_trip(void **state)
{
    (void)state;
    tmem_t *t1 = tt_open(0, TMEM_COMPRESS_LZ4, 1), *t2 = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t1, 200);
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t1, tmem_client_id(src), tt_buf_write, &m), 200);
    tmem_client_info_t si;
    tmem_client_info(t1, tmem_client_id(src), &si);
    assert_int_equal(si.frozen, 0);                 /* thawed again after the save */

    tmem_client_t *dst = tmem_client_open(t2, "dst");
    m.limit = m.len;
    assert_int_equal(tmem_client_restore(dst, tt_buf_read, &m), 200);
    assert_int_equal(m.pos, m.len);
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 200; i++) {
        tt_fill(page, (enum tt_kind)(i % TT_KINDS), i);
        assert_int_equal(tmem_get_page(dst, 0, tt_oid(i % 5, i, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
        assert_int_equal(tmem_get_page(dst, 1, tt_oid(1, 0, 0), i, got), -ENOENT);
    }
    assert_int_equal(tmem_pool_is_shared(dst, 1), 0);          /* pools at their ids */
    assert_int_equal(tmem_pool_is_shared(dst, 3), 0);
    assert_int_equal(tmem_pool_is_shared(dst, 2), -ENODEV);
    tmem_client_info_t di;
    tmem_client_info(t2, tmem_client_id(dst), &di);
    assert_int_equal(di.weight, 42);
    assert_int_equal(di.cap, 1000);
    assert_int_equal(di.compress, TMEM_COMPRESS_ZSTD);
    assert_int_equal(di.nr_pools, 3);
    tt_buf_free(&m);
    tt_close(t1);
    tt_close(t2);
}

static void frozen_state_carried(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 3);
    tmem_admin_freeze(t, tmem_client_id(src));
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &m), 3);
    tmem_client_info_t si;
    tmem_client_info(t, tmem_client_id(src), &si);
    assert_int_equal(si.frozen, 1);                 /* it was frozen before: still is */
    tmem_client_t *dst = tmem_client_open(t, "dst");
    m.limit = m.len;
    assert_int_equal(tmem_client_restore(dst, tt_buf_read, &m), 3);
    tmem_client_info(t, tmem_client_id(dst), &si);
    assert_int_equal(si.frozen, 1);
    tt_buf_free(&m);
    tt_close(t);
}

/* Restores stream s into a fresh client of t; returns the result and checks
 * that a failure left no pools. */
static int64_t restore_expect(tmem_t *t, tt_buf *s)
{
    tmem_client_t *c = tmem_client_open(t, "dst");
    s->pos = 0;
    int64_t rc = tmem_client_restore(c, tt_buf_read, s);
    if (rc < 0) {
        tmem_client_info_t ci;
        tmem_client_info(t, tmem_client_id(c), &ci);
        assert_int_equal(ci.nr_pools, 0);
        assert_int_equal(ci.persistent_pages, 0);
    }
    tmem_client_close(c);
    return rc;
}

static void truncated_anywhere(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 3);
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &m), 3);
    for (size_t cut = 0; cut < m.len; cut++) {
        m.limit = cut;
        assert_true(restore_expect(t, &m) < 0);
    }
    m.limit = m.len;
    assert_int_equal(restore_expect(t, &m), 3);
    tt_buf_free(&m);
    tt_close(t);
}

static void any_byte_changed(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 2);
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &m), 2);
    m.limit = m.len;
    tt_rng r;
    tt_seed(&r, 11);
    for (size_t i = 0; i < m.len; i += 1 + (size_t)tt_below(&r, 7)) {
        uint8_t old = m.p[i];
        m.p[i] ^= (uint8_t)(1u << tt_below(&r, 8));
        int64_t rc = restore_expect(t, &m);
        assert_true(rc < 0);
        assert_true(rc == -EPROTO || rc == -EIO || rc == -EINVAL || rc == -ENOMEM ||
                    rc == -EBUSY);
        m.p[i] = old;
    }
    tt_buf_free(&m);
    tt_close(t);
}

/* The stream's weight (at byte 20) and cap (at byte 24) set to w and cap,
 * its checksum (the last 8 bytes, XXH64 of all before) made right again. */
static void forge_settings(tt_buf *m, uint32_t w, uint64_t cap)
{
    memcpy(m->p + 20, &w, sizeof(w));
    memcpy(m->p + 24, &cap, sizeof(cap));
    uint64_t sum = XXH64(m->p, m->len - 8, 0);
    memcpy(m->p + m->len - 8, &sum, sizeof(sum));
}

/* A stream whose checksum is right but whose weight or cap is out of the
 * engine's range is refused as malformed; the limits themselves restore. */
static void settings_out_of_range(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 3);
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &m), 3);
    m.limit = m.len;
    uint32_t w;
    uint64_t cap;
    memcpy(&w, m.p + 20, sizeof(w));
    memcpy(&cap, m.p + 24, sizeof(cap));
    assert_int_equal(w, 42);                /* where make_source's settings are */
    assert_int_equal(cap, 1000);
    forge_settings(&m, TMEM_WEIGHT_MAX, TMEM_CAP_MAX);
    tmem_client_t *c = tmem_client_open(t, "edge");
    m.pos = 0;
    assert_int_equal(tmem_client_restore(c, tt_buf_read, &m), 3);
    tmem_client_info_t ci;
    assert_int_equal(tmem_client_info(t, tmem_client_id(c), &ci), 0);
    assert_int_equal(ci.weight, TMEM_WEIGHT_MAX);
    assert_int_equal(ci.cap, TMEM_CAP_MAX);
    tmem_client_close(c);
    forge_settings(&m, 0xFFFFFFFFu, 1000);
    assert_int_equal(restore_expect(t, &m), -EPROTO);
    forge_settings(&m, TMEM_WEIGHT_MAX + 1, 1000);
    assert_int_equal(restore_expect(t, &m), -EPROTO);
    forge_settings(&m, 42, TMEM_CAP_MAX + 1);
    assert_int_equal(restore_expect(t, &m), -EPROTO);
    forge_settings(&m, 42, UINT64_MAX);
    assert_int_equal(restore_expect(t, &m), -EPROTO);
    forge_settings(&m, 42, 1000);           /* as saved: restores */
    assert_int_equal(restore_expect(t, &m), 3);
    tt_buf_free(&m);
    tt_close(t);
}

static void errors(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 4);
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, 9999, tt_buf_write, &m), -ENOENT);
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), NULL, &m), -EINVAL);
    tt_buf failing = { .limit = SIZE_MAX, .fail_at = 100 };
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &failing), -EIO);
    tt_buf_free(&failing);
    tmem_client_info_t si;
    tmem_client_info(t, tmem_client_id(src), &si);
    assert_int_equal(si.frozen, 0);
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &m), 4);
    m.limit = m.len;
    assert_int_equal(tmem_client_restore(src, tt_buf_read, &m), -EBUSY);   /* has pools */
    assert_int_equal(tmem_client_restore(NULL, tt_buf_read, &m), -EINVAL);
    tmem_client_t *dst = tmem_client_open(t, "dst");
    assert_int_equal(tmem_client_restore(dst, NULL, &m), -EINVAL);
    tmem_client_close(dst);
    assert_int_equal(tmem_client_restore(dst, tt_buf_read, &m), -ENODEV);  /* closed */
    /* a client with no pools saves an empty stream that restores to nothing */
    tmem_client_t *empty = tmem_client_open(t, "empty");
    tt_buf e = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t, tmem_client_id(empty), tt_buf_write, &e), 0);
    e.limit = e.len;
    assert_int_equal(restore_expect(t, &e), 0);
    tt_buf_free(&e);
    tt_buf_free(&m);
    tt_close(t);
}

/* Restoring into an engine without room fails as a whole. */
static void restore_no_room(void **state)
{
    (void)state;
    tmem_t *t1 = tt_open(0, TMEM_COMPRESS_LZ4, 1), *t2 = tt_open(1 << 20, TMEM_COMPRESS_NONE, 0);
    tmem_client_t *src = tmem_client_open(t1, "src");
    tmem_new_pool(src, NOUUID, TMEM_POOL_PERSIST);
    uint8_t page[PG];
    for (uint32_t i = 0; i < 400; i++) {            /* 1.6 MiB of incompressible data */
        tt_fill(page, TT_RANDOM, i);
        assert_int_equal(tmem_put_page(src, 0, tt_oid(1, 0, 0), i, page), 0);
    }
    tt_buf m = TT_BUF_INIT;
    assert_int_equal(tmem_client_save(t1, tmem_client_id(src), tt_buf_write, &m), 400);
    m.limit = m.len;
    assert_int_equal(restore_expect(t2, &m), -ENOMEM);
    tmem_stats_t s;
    tmem_stats_get(t2, &s);
    assert_int_equal(s.persistent_pages, 0);
    tt_buf_free(&m);
    tt_close(t1);
    tt_close(t2);
}


/* A writer that acts in the middle of a save (once). */
struct hook { tt_buf m; tmem_t *t; uint32_t id; int what, done; int64_t inner; };

static int hook_write(void *arg, const void *p, size_t len)
{
    struct hook *h = arg;
    if (!h->done && h->m.len > 64) {
        h->done = 1;
        if (h->what == 0) {
            tmem_admin_freeze(h->t, h->id);             /* an admin freeze mid-save */
        } else {
            tt_buf inner = TT_BUF_INIT;                   /* an overlapping save */
            h->inner = tmem_client_save(h->t, h->id, tt_buf_write, &inner);
            tt_buf_free(&inner);
        }
    }
    return tt_buf_write(&h->m, p, len);
}

static void save_keeps_admin_state(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 3);
    uint8_t page[PG];
    tt_fill(page, TT_TEXT, 77);
    /* an administrator's freeze during the save survives its end */
    struct hook h = { .t = t, .id = tmem_client_id(src), .what = 0 };
    assert_int_equal(tmem_client_save(t, h.id, hook_write, &h), 3);
    assert_int_equal(tmem_put_page(src, 0, tt_oid(50, 0, 0), 0, page), -TMEM_EFROZEN);
    tmem_admin_thaw(t, h.id);
    /* overlapping saves leave a thawed client thawed */
    struct hook h2 = { .t = t, .id = tmem_client_id(src), .what = 1 };
    assert_int_equal(tmem_client_save(t, h2.id, hook_write, &h2), 3);
    assert_int_equal(h2.inner, 3);
    assert_int_equal(tmem_put_page(src, 0, tt_oid(50, 0, 0), 0, page), 0);
    tt_buf_free(&h.m);
    tt_buf_free(&h2.m);
    tt_close(t);
}

/* A reader that starts a second restore into the same client (once). */
struct rhook { tt_buf m; tmem_client_t *c; int done; int64_t inner; };

static int rhook_read(void *arg, void *p, size_t len)
{
    struct rhook *h = arg;
    if (!h->done && h->m.pos > 64) {
        h->done = 1;
        tt_buf copy = h->m;
        copy.pos = 0;
        h->inner = tmem_client_restore(h->c, tt_buf_read, &copy);
    }
    return tt_buf_read(&h->m, p, len);
}

static void one_restore_at_a_time(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tmem_client_t *src = make_source(t, 5);
    struct rhook h = { 0 };
    assert_int_equal(tmem_client_save(t, tmem_client_id(src), tt_buf_write, &h.m), 5);
    h.m.limit = h.m.len;
    h.c = tmem_client_open(t, "dst");
    assert_int_equal(tmem_client_restore(h.c, rhook_read, &h), 5);
    assert_int_equal(h.inner, -EBUSY);          /* the second one is refused... */
    uint8_t page[PG], got[PG];
    for (uint32_t i = 0; i < 5; i++) {          /* ...and takes nothing with it */
        tt_fill(page, (enum tt_kind)(i % TT_KINDS), i);
        assert_int_equal(tmem_get_page(h.c, 0, tt_oid(i % 5, i, 0), i, got), 0);
        assert_memory_equal(got, page, PG);
    }
    tt_buf_free(&h.m);
    tt_close(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(frozen_state_carried),
        cmocka_unit_test(truncated_anywhere),
        cmocka_unit_test(any_byte_changed),
        cmocka_unit_test(errors),
        cmocka_unit_test(settings_out_of_range),
        cmocka_unit_test(restore_no_room),
        cmocka_unit_test(save_keeps_admin_state),
        cmocka_unit_test(one_restore_at_a_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
