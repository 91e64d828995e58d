/* SPDX-License-Identifier: MIT */
/*
 * test_zalloc.c - the compact allocator for compressed fragments (zalloc.c):
 * size classes (slot >= request, waste < TM_ZCLASS_STEP), the frames-per-span
 * choice (little waste per span), fragments that straddle two (not
 * necessarily adjacent) frames, random allocation and freeing of many sizes
 * with content verification, all frames returned when everything is freed,
 * and -ENOMEM (with nothing leaked) when the engine's limit allows no frame.
 */
#include "tmem_test.h"

#include "core/internal.h"

#define MIB (1024ull * 1024ull)
/* the most slots a span can have (smallest class, most frames) */
#define MAX_SLOTS (TM_ZSPAN_MAX_FRAMES * TMEM_PAGE_SIZE / TM_ZCLASS_STEP)

static uint64_t g_seed;

static tmem_stats_t stats(tmem_t *t)
{
    tmem_stats_t s;
    assert_int_equal(tmem_stats_get(t, &s), 0);
    return s;
}

static struct tm_zheap *heap_new(void)
{
    struct tm_zheap *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    tm_zheap_init(h, TMEM_ARENA_EPHEMERAL);
    return h;
}

static void heap_free(tmem_t *t, struct tm_zheap *h)
{
    tm_zheap_fini(t, h);
    free(h);
}

/* Deterministic contents for fragment `id` of `len` bytes. */
static void frag_bytes(uint8_t *buf, uint32_t len, uint64_t id)
{
    tt_rng r;
    tt_seed(&r, id * 0x9e3779b97f4a7c15ull + 1);
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = tt_next(&r);
        memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
    }
}

static void check_frag(const struct tm_loc *loc, uint64_t id)
{
    uint8_t want[PG], scratch[PG];
    frag_bytes(want, loc->size, id);
    memset(scratch, 0xee, sizeof(scratch));
    const void *got = tm_zread(loc, scratch);
    assert_non_null(got);
    assert_memory_equal(got, want, loc->size);
}

static bool straddles(const struct tm_loc *loc)
{
    size_t start = (size_t)loc->slot * loc->u.span->cls->size;
    return start / PG != (start + loc->size - 1) / PG;
}

/* ------------------------------------------------------------------------ */
static void test_classes(void **state)
{
    (void)state;
    /* the rounding function */
    for (uint32_t size = 1; size <= PG; size++) {
        uint32_t c = tm_zclass_size(size);
        assert_true(c >= size);
        assert_true(c - size < TM_ZCLASS_STEP);
        assert_int_equal(c % TM_ZCLASS_STEP, 0);
        assert_true(c <= PG);
    }
    /* the class table */
    struct tm_zheap *h = heap_new();
    double worst = 0;
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        const struct tm_zclass *c = &h->cls[i];
        assert_int_equal(c->size, (i + 1) * TM_ZCLASS_STEP);
        assert_true(c->nframes >= 1 && c->nframes <= TM_ZSPAN_MAX_FRAMES);
        uint32_t bytes = c->nframes * PG;
        /* as many slots as fit, and they do fit */
        assert_int_equal(c->slots, bytes / c->size);
        assert_true(c->slots >= 1 && c->slots <= MAX_SLOTS);
        double waste = (double)(bytes - (uint32_t)c->slots * c->size) / bytes;
        assert_true(waste < 0.25);
        if (waste > worst)
            worst = waste;
        /* close to the least waste any allowed frame count achieves */
        double best = 1.0;
        for (unsigned nf = 1; nf <= TM_ZSPAN_MAX_FRAMES; nf++) {
            double w = (double)(nf * PG % c->size) / (nf * PG);
            if (w < best)
                best = w;
        }
        assert_true(waste <= best + 0.05);
    }
    printf("worst waste per span: %.1f%%\n", worst * 100);
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++)
        pthread_mutex_destroy(&h->cls[i].lock);
    free(h);
}

/* Every request size 1..4096 gets a slot of its class, and reads back. */
static void test_every_size(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    struct tm_zheap *h = heap_new();
    struct tm_loc *locs = calloc(PG + 1, sizeof(*locs));
    assert_non_null(locs);
    uint64_t bytes = 0;
    for (uint32_t size = 1; size <= PG; size++) {
        struct tm_loc *l = &locs[size];
        assert_int_equal(tm_zalloc(t, h, size, l), 0);
        assert_int_equal(l->kind, TM_LOC_FRAG);
        assert_int_equal(l->size, size);
        assert_non_null(l->u.span);
        const struct tm_zclass *c = l->u.span->cls;
        assert_true(c->size >= size);
        assert_true(c->size - size < TM_ZCLASS_STEP);
        assert_true(l->slot < c->slots);
        uint8_t buf[PG];
        frag_bytes(buf, size, size);
        tm_zwrite(l, buf);
        bytes += size;
    }
    assert_int_equal(tm_load(h->bytes_used), bytes);
    assert_int_equal(tm_load(h->frags), PG);
    uint64_t frags = 0;
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, PG);
    tmem_stats_t s = stats(t);
    assert_int_equal(s.frames_zalloc, tm_zheap_frames(h));
    /* space use: the frames hold the data with at most ~25% + rounding waste */
    assert_true((double)bytes / ((double)s.frames_zalloc * PG) > 0.7);
    for (uint32_t size = 1; size <= PG; size++)
        check_frag(&locs[size], size);
    for (uint32_t size = PG; size >= 1; size--)
        tm_zfree(t, h, &locs[size]);
    assert_int_equal(tm_load(h->bytes_used), 0);
    assert_int_equal(tm_zheap_frames(h), 0);
    assert_int_equal(stats(t).frames_zalloc, 0);
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, 0);
    heap_free(t, h);
    free(locs);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Straddling fragments, in spans whose frames are not adjacent
 * ---------------------------------------------------------------------- */
static void test_straddle(void **state)
{
    (void)state;
    tmem_t *t = tt_open(64 * MIB, TMEM_COMPRESS_LZ4, 1);
    tt_rng r;
    tt_seed(&r, g_seed);

    /* Scatter the free list: hold every other frame as a guard (filled with
     * a pattern that must survive), free the rest.  Spans then get frames
     * that are not adjacent, and a copy running past a frame's end hits a
     * guard. */
    enum { NF = 2048 };
    uint8_t **fr = calloc(NF, sizeof(*fr));
    assert_non_null(fr);
    for (int i = 0; i < NF; i++) {
        fr[i] = tm_frame_get(t, TMEM_ARENA_EPHEMERAL, TM_FRAME_WHOLE);
        assert_non_null(fr[i]);
        memset(fr[i], 0xc3, PG);
    }
    for (int i = 0; i < NF; i += 2)
        tm_frame_put(t, fr[i], TM_FRAME_WHOLE);
    assert_int_equal(stats(t).frames_free, NF / 2);

    struct tm_zheap *h = heap_new();
    uint64_t nstraddle = 0, nscattered = 0, id = 0;
    struct tm_loc *locs = calloc(MAX_SLOTS, sizeof(*locs));
    uint64_t *ids = calloc(MAX_SLOTS, sizeof(*ids));
    assert_true(locs && ids);
    for (unsigned ci = 0; ci < TM_ZCLASS_COUNT; ci++) {
        const struct tm_zclass *c = &h->cls[ci];
        if (c->nframes == 1 && PG % c->size == 0)
            continue;       /* no slot can straddle */
        /* fill one whole span of the class with fragments of sizes near
         * the slot size, including exactly the slot size */
        for (unsigned k = 0; k < c->slots; k++) {
            uint32_t size = c->size - (uint32_t)tt_below(&r, TM_ZCLASS_STEP);
            if (k % 3 == 0)
                size = c->size;
            assert_int_equal(tm_zalloc(t, h, size, &locs[k]), 0);
            assert_ptr_equal(locs[k].u.span, locs[0].u.span);
            ids[k] = ++id;
            uint8_t buf[PG];
            frag_bytes(buf, size, ids[k]);
            tm_zwrite(&locs[k], buf);
        }
        const struct tm_zspan *sp = locs[0].u.span;
        for (unsigned f = 1; f < c->nframes; f++)
            if (sp->frames[f] != sp->frames[f - 1] + PG)
                nscattered++;
        /* every fragment reads back, straddling ones through the scratch */
        for (unsigned k = 0; k < c->slots; k++) {
            uint8_t scratch[PG];
            const void *p = tm_zread(&locs[k], scratch);
            if (straddles(&locs[k])) {
                nstraddle++;
                assert_ptr_equal(p, scratch);
            } else {
                assert_ptr_not_equal(p, scratch);
            }
            check_frag(&locs[k], ids[k]);
        }
        for (unsigned k = 0; k < c->slots; k++)
            tm_zfree(t, h, &locs[k]);
        assert_int_equal(tm_zheap_frames(h), 0);
    }
    printf("%llu straddling fragments, %llu non-adjacent frame pairs\n",
           (unsigned long long)nstraddle, (unsigned long long)nscattered);
    assert_true(nstraddle > 100);
    assert_true(nscattered > 50);
    /* the guards were never written */
    for (int i = 1; i < NF; i += 2)
        for (unsigned b = 0; b < PG; b++)
            if (fr[i][b] != 0xc3)
                fail_msg("guard frame %d byte %u overwritten", i, b);
    for (int i = 1; i < NF; i += 2)
        tm_frame_put(t, fr[i], TM_FRAME_WHOLE);
    heap_free(t, h);
    free(ids);
    free(locs);
    free(fr);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Random allocation and freeing with content verification
 * ---------------------------------------------------------------------- */
struct live { struct tm_loc loc; uint64_t id; };

static uint32_t random_size(tt_rng *r)
{
    switch (tt_below(r, 4)) {
    case 0:  return 1 + (uint32_t)tt_below(r, 64);            /* tiny */
    case 1:  return 200 + (uint32_t)tt_below(r, 1400);        /* typical LZ4 */
    case 2:  return 1 + (uint32_t)tt_below(r, PG);            /* anything */
    default: return 3000 + (uint32_t)tt_below(r, PG - 3000 + 1); /* poor */
    }
}

static void test_random(void **state)
{
    (void)state;
    tmem_t *t = tt_open(128 * MIB, TMEM_COMPRESS_LZ4, 1);
    tt_rng r;
    tt_seed(&r, g_seed ^ 0x2a2a);
    struct tm_zheap *h = heap_new();
    enum { MAXLIVE = 4000, NOPS = 40000 };
    struct live *lv = calloc(MAXLIVE, sizeof(*lv));
    assert_non_null(lv);
    uint32_t n = 0;
    uint64_t id = 0, bytes = 0, peak_frames = 0;
    tmem_stats_t s0 = stats(t);

    for (int op = 0; op < NOPS; op++) {
        /* grow, shrink, grow again */
        unsigned palloc = op < NOPS / 3 ? 70 : op < 2 * NOPS / 3 ? 35 : 60;
        if (n < MAXLIVE && (n == 0 || tt_below(&r, 100) < palloc)) {
            struct live *x = &lv[n];
            uint32_t size = random_size(&r);
            assert_int_equal(tm_zalloc(t, h, size, &x->loc), 0);
            assert_int_equal(x->loc.size, size);
            x->id = ++id;
            uint8_t buf[PG];
            frag_bytes(buf, size, x->id);
            tm_zwrite(&x->loc, buf);
            bytes += size;
            n++;
        } else {
            uint32_t i = (uint32_t)tt_below(&r, n);
            check_frag(&lv[i].loc, lv[i].id);
            bytes -= lv[i].loc.size;
            tm_zfree(t, h, &lv[i].loc);
            lv[i] = lv[--n];
        }
        if (op % 2000 == 1999) {
            uint64_t frags = 0;
            assert_int_equal(tm_zheap_check(h, &frags), 0);
            assert_int_equal(frags, n);
            assert_int_equal(tm_load(h->bytes_used), bytes);
            tmem_stats_t s = stats(t);
            assert_int_equal(s.frames_zalloc, tm_zheap_frames(h));
            assert_true(s.frames_zalloc * PG >= bytes);
            if (s.frames_zalloc > peak_frames)
                peak_frames = s.frames_zalloc;
            for (uint32_t i = 0; i < n; i++)
                check_frag(&lv[i].loc, lv[i].id);
        }
    }
    assert_true(peak_frames > 100);
    /* free everything: all frames go back to the frame allocator */
    while (n > 0) {
        uint32_t i = (uint32_t)tt_below(&r, n);
        check_frag(&lv[i].loc, lv[i].id);
        tm_zfree(t, h, &lv[i].loc);
        lv[i] = lv[--n];
    }
    uint64_t frags = 1;
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, 0);
    assert_int_equal(tm_load(h->bytes_used), 0);
    assert_int_equal(tm_load(h->frags), 0);
    assert_int_equal(tm_zheap_frames(h), 0);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.frames_zalloc, 0);
    assert_int_equal(s1.frames_free, s1.frames_held);
    assert_int_equal(s1.meta_bytes, s0.meta_bytes);     /* span descriptors freed */
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        assert_null(h->cls[i].partial);
        assert_null(h->cls[i].full);
        assert_int_equal(h->cls[i].nspans, 0);
    }
    heap_free(t, h);
    free(lv);
    tt_close(t);
}

/* Two heaps in one engine do not share spans. */
static void test_two_heaps(void **state)
{
    (void)state;
    tmem_t *t = tt_open(16 * MIB, TMEM_COMPRESS_LZ4, 1);
    struct tm_zheap *a = heap_new(), *b = heap_new();
    struct tm_loc la[20], lb[20];
    for (int i = 0; i < 20; i++) {
        assert_int_equal(tm_zalloc(t, a, 500, &la[i]), 0);
        assert_int_equal(tm_zalloc(t, b, 500, &lb[i]), 0);
        uint8_t buf[PG];
        frag_bytes(buf, 500, 100 + (uint64_t)i);
        tm_zwrite(&la[i], buf);
        frag_bytes(buf, 500, 200 + (uint64_t)i);
        tm_zwrite(&lb[i], buf);
    }
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < 20; j++)
            assert_ptr_not_equal(la[i].u.span, lb[j].u.span);
    assert_int_equal(stats(t).frames_zalloc, tm_zheap_frames(a) + tm_zheap_frames(b));
    for (int i = 0; i < 20; i++) {
        check_frag(&la[i], 100 + (uint64_t)i);
        check_frag(&lb[i], 200 + (uint64_t)i);
        tm_zfree(t, a, &la[i]);
    }
    assert_int_equal(tm_zheap_frames(a), 0);
    assert_true(tm_zheap_frames(b) > 0);
    for (int i = 0; i < 20; i++)
        tm_zfree(t, b, &lb[i]);
    assert_int_equal(stats(t).frames_zalloc, 0);
    heap_free(t, a);
    heap_free(t, b);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * -ENOMEM when the limit allows no frame
 * ---------------------------------------------------------------------- */
static void test_enomem(void **state)
{
    (void)state;
    /* 16 frames and 2 KiB of room for metadata */
    const uint64_t max = 16 * PG + 2048;
    tmem_t *t = tt_open(max, TMEM_COMPRESS_LZ4, 1);
    struct tm_zheap *h = heap_new();
    const struct tm_zclass *one = NULL, *multi = NULL;
    for (unsigned i = 0; i < TM_ZCLASS_COUNT; i++) {
        const struct tm_zclass *c = &h->cls[i];
        if (!one && c->nframes == 1 && c->size >= 64)
            one = c;
        if (c->nframes >= 2 && (!multi || c->nframes > multi->nframes))
            multi = c;
    }
    assert_true(one && multi);

    uint8_t *fr[64];
    int nf = 0;
    while ((fr[nf] = tm_frame_get(t, TMEM_ARENA_EPHEMERAL, TM_FRAME_WHOLE)) != NULL) {
        nf++;
        assert_true(nf < 64);
    }
    assert_int_equal(nf, 16);
    tmem_stats_t s0 = stats(t);

    /* no frame at all */
    struct tm_loc loc;
    memset(&loc, 0, sizeof(loc));
    assert_int_equal(tm_zalloc(t, h, one->size - 5, &loc), -ENOMEM);
    assert_int_equal(tm_zalloc(t, h, multi->size, &loc), -ENOMEM);
    assert_int_equal(tm_zalloc(t, h, 1, &loc), -ENOMEM);
    assert_int_equal(tm_zalloc(t, h, PG, &loc), -ENOMEM);
    tmem_stats_t s1 = stats(t);
    assert_int_equal(s1.frames_zalloc, 0);
    assert_int_equal(s1.frames_held, s0.frames_held);
    assert_int_equal(s1.meta_bytes, s0.meta_bytes);     /* no span left behind */
    uint64_t frags = 1;
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, 0);
    assert_int_equal(tm_zheap_frames(h), 0);
    assert_int_equal(tm_load(h->bytes_used), 0);

    /* one frame short of a span of the multi-frame class: it cannot be
     * built, and the frames it took go back (or, if the span's descriptor
     * needed their room, to the OS) */
    unsigned k = multi->nframes - 1u;
    for (unsigned i = 0; i < k; i++)
        tm_frame_put(t, fr[--nf], TM_FRAME_WHOLE);
    assert_int_equal(tm_zalloc(t, h, multi->size - 1, &loc), -ENOMEM);
    tmem_stats_t s2 = stats(t);
    assert_int_equal(s2.frames_zalloc, 0);
    assert_int_equal(s2.frames_whole, (uint64_t)nf);
    assert_int_equal(s2.frames_held, (uint64_t)nf + s2.frames_free);
    assert_true(s2.frames_free <= k);
    assert_int_equal(s2.meta_bytes, s0.meta_bytes);
    assert_int_equal(tm_zheap_frames(h), 0);
    assert_true(s2.frames_free > 0);

    /* a 1-frame class uses what the limit allows (its descriptors count
     * too), fills its spans, then fails */
    uint32_t size = one->size - 5, cap = k * one->slots + 1, n = 0;
    struct tm_loc *got = calloc(cap, sizeof(*got));
    assert_non_null(got);
    int rc;
    while ((rc = tm_zalloc(t, h, size, &got[n])) == 0) {
        uint8_t buf[PG];
        frag_bytes(buf, size, 900 + n);
        tm_zwrite(&got[n], buf);
        n++;
        assert_true(n < cap);
    }
    assert_int_equal(rc, -ENOMEM);
    tmem_stats_t s3 = stats(t);
    assert_true(s3.frames_zalloc >= 1);
    assert_int_equal(n, s3.frames_zalloc * one->slots);   /* every span full */
    assert_int_equal(s3.frames_free, 0);
    assert_int_equal(s3.frames_held, (uint64_t)nf + s3.frames_zalloc);
    assert_true(s3.bytes_held <= max);
    assert_true(s3.bytes_held + PG > max);                  /* no room for another */
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, n);
    for (uint32_t i = 0; i < n; i++)
        check_frag(&got[i], 900 + i);
    for (uint32_t i = 0; i < n; i++)
        tm_zfree(t, h, &got[i]);
    tmem_stats_t s4 = stats(t);
    assert_int_equal(s4.frames_zalloc, 0);
    assert_int_equal(s4.frames_free, s3.frames_zalloc);
    assert_int_equal(s4.meta_bytes, s0.meta_bytes);
    assert_int_equal(tm_zheap_check(h, &frags), 0);
    assert_int_equal(frags, 0);

    while (nf > 0)
        tm_frame_put(t, fr[--nf], TM_FRAME_WHOLE);
    free(got);
    heap_free(t, h);
    tt_close(t);
}

int main(int argc, char **argv)
{
    g_seed = tt_seed_from_args(argc, argv, "test_zalloc");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_every_size),
        cmocka_unit_test(test_straddle),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_two_heaps),
        cmocka_unit_test(test_enomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
