/* SPDX-License-Identifier: MIT */
/*
 * test_table.c - the pointer hash tables of table.c (open addressing, linear
 * probing, backward-shift deletion): randomized insert/remove/find against a
 * simple model for both kinds (page descriptors keyed by index, objects keyed
 * by oid hash + oid), colliding hashes, deletions whose probe runs wrap
 * around the end of the slot array, growth, counts, a failed growth
 * (injected allocation failure) leaving the table intact, and the frame
 * hints of page slots.
 */
#include "tmem_test.h"

#include "core/internal.h"
#include "core/testing.h"

static uint64_t g_seed;

/* The slot a hash starts probing from, as table.c computes it (bits 32 and
 * up of the hash).  Used only to build and recognise wrapped probe runs. */
static uint32_t home_of(const struct tm_table *tb, uint64_t h)
{
    return (uint32_t)(h >> 32) & (tb->cap - 1);
}

static uint64_t meta_bytes(tmem_t *t)
{
    tmem_stats_t st;
    assert_int_equal(tmem_stats_get(t, &st), 0);
    return st.meta_bytes;
}

static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;
    return x < y ? -1 : x > y;
}

/* Structural checks that hold for any table: power-of-two capacity, load at
 * most 3/4, count equals the occupied slots, no entry stored twice, and every
 * stored entry is found by its own key. */
static void check_table(const struct tm_table *tb, enum tm_table_kind k)
{
    if (tb->cap == 0) {
        assert_int_equal(tb->count, 0);
        return;
    }
    assert_non_null(tb->slots);
    assert_int_equal(tb->cap & (tb->cap - 1), 0);
    assert_true((uint64_t)tb->count * 4 <= (uint64_t)tb->cap * 3);
    uint32_t used = 0;
    for (uint32_t i = 0; i < tb->cap; i++) {
        void *e = tm_table_at(tb, i);
        if (!e)
            continue;
        used++;
        /* the slot's copy of the key agrees with the entry (pages: the
         * hash half is checked by findability, its mix being private) */
        if (k == TM_TABLE_PAGES) {
            const struct tm_pgd *p = e;
            assert_int_equal(tb->slots[i].key, p->index);
            assert_ptr_equal(tm_table_find(tb, k, p->index, NULL), e);
        } else {
            const struct tm_obj *o = e;
            assert_int_equal(tb->slots[i].key, (uint32_t)o->hash);
            assert_int_equal(tb->slots[i].hi, (uint32_t)(o->hash >> 32));
            assert_ptr_equal(tm_table_find(tb, k, o->hash, &o->oid), e);
        }
    }
    assert_int_equal(used, tb->count);
    /* no entry is stored twice */
    void **v = malloc(tb->cap * sizeof(void *));
    assert_non_null(v);
    uint32_t n = 0;
    for (uint32_t i = 0; i < tb->cap; i++)
        if (tm_table_at(tb, i))
            v[n++] = tm_table_at(tb, i);
    qsort(v, n, sizeof(void *), cmp_ptr);
    for (uint32_t i = 1; i < n; i++)
        if (v[i] == v[i - 1])
            fail_msg("entry %p stored twice", v[i]);
    free(v);
}

static bool key_in(const uint32_t *keys, size_t n, uint32_t k)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i] == k)
            return true;
    return false;
}

/* ------------------------------------------------------------------------
 * TM_TABLE_PAGES: random operations over dense and sparse indexes
 * ---------------------------------------------------------------------- */
#define NDENSE  1500u
#define NSPARSE 1500u
#define NPAGEKEYS (NDENSE + NSPARSE)

static void test_pages_random(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tt_rng r;
    tt_seed(&r, g_seed);

    uint64_t meta0 = meta_bytes(t);
    uint32_t *keys = calloc(NPAGEKEYS, sizeof(*keys));
    struct tm_pgd *e = calloc(NPAGEKEYS, sizeof(*e));
    bool *in = calloc(NPAGEKEYS, sizeof(*in));
    assert_true(keys && e && in);
    /* dense: 0..NDENSE-1 (file offsets); sparse: distinct random 32-bit
     * indexes above them, including the extremes */
    for (uint32_t i = 0; i < NDENSE; i++)
        keys[i] = i;
    keys[NDENSE] = UINT32_MAX;
    keys[NDENSE + 1] = UINT32_MAX - 1;
    keys[NDENSE + 2] = 1u << 31;
    for (uint32_t i = NDENSE + 3; i < NPAGEKEYS; i++) {
        uint32_t k;
        do
            k = (uint32_t)tt_next(&r);
        while (k < NDENSE || key_in(keys + NDENSE, i - NDENSE, k));
        keys[i] = k;
    }
    for (uint32_t i = 0; i < NPAGEKEYS; i++)
        e[i].index = keys[i];

    struct tm_table tb = { 0 };
    uint32_t count = 0, max_cap = 0;
    uint64_t inserts = 0, removes = 0;
    const unsigned nops = 120000;
    for (unsigned op = 0; op < nops; op++) {
        /* phases: mostly inserting, then mostly removing, then mixed */
        unsigned pins = op < nops / 3 ? 75 : op < 2 * nops / 3 ? 25 : 50;
        /* half the operations on dense keys, half on sparse */
        uint32_t i = tt_below(&r, 2) ? (uint32_t)tt_below(&r, NDENSE)
                                     : NDENSE + (uint32_t)tt_below(&r, NSPARSE);
        void *found = tm_table_find(&tb, TM_TABLE_PAGES, keys[i], NULL);
        assert_ptr_equal(found, in[i] ? &e[i] : NULL);
        bool want_in = tt_below(&r, 100) < pins;
        if (!in[i] && want_in) {
            assert_int_equal(tm_table_insert(t, &tb, TM_TABLE_PAGES, &e[i]), 0);
            in[i] = true;
            count++;
            inserts++;
        } else if (in[i] && !want_in) {
            tm_table_remove(&tb, TM_TABLE_PAGES, &e[i]);
            in[i] = false;
            count--;
            removes++;
        }
        assert_int_equal(tb.count, count);
        if (tb.cap > max_cap)
            max_cap = tb.cap;
        if (op % 4000 == 3999) {
            check_table(&tb, TM_TABLE_PAGES);
            for (uint32_t j = 0; j < NPAGEKEYS; j++)
                assert_ptr_equal(tm_table_find(&tb, TM_TABLE_PAGES, keys[j], NULL),
                                 in[j] ? &e[j] : NULL);
        }
    }
    /* indexes that were never inserted are never found */
    for (unsigned n = 0; n < 1000; n++) {
        uint32_t k = (uint32_t)tt_next(&r);
        if (!key_in(keys, NPAGEKEYS, k))
            assert_null(tm_table_find(&tb, TM_TABLE_PAGES, k, NULL));
    }
    assert_true(inserts > NPAGEKEYS / 2 && removes > NPAGEKEYS / 2);
    assert_true(max_cap >= 2048);   /* it grew well past its first sizes */

    /* remove everything in random order, checking as we go */
    uint32_t *order = calloc(NPAGEKEYS, sizeof(*order));
    assert_non_null(order);
    for (uint32_t j = 0; j < NPAGEKEYS; j++)
        order[j] = j;
    for (uint32_t j = NPAGEKEYS - 1; j > 0; j--) {
        uint32_t x = (uint32_t)tt_below(&r, j + 1), tmp = order[j];
        order[j] = order[x];
        order[x] = tmp;
    }
    for (uint32_t j = 0; j < NPAGEKEYS; j++) {
        uint32_t i = order[j];
        if (!in[i])
            continue;
        tm_table_remove(&tb, TM_TABLE_PAGES, &e[i]);
        in[i] = false;
        count--;
        assert_int_equal(tb.count, count);
        assert_null(tm_table_find(&tb, TM_TABLE_PAGES, keys[i], NULL));
        if (j % 500 == 0)
            check_table(&tb, TM_TABLE_PAGES);
    }
    assert_int_equal(tb.count, 0);
    check_table(&tb, TM_TABLE_PAGES);
    for (uint32_t j = 0; j < NPAGEKEYS; j++)
        assert_null(tm_table_find(&tb, TM_TABLE_PAGES, keys[j], NULL));

    assert_true(meta_bytes(t) > meta0);     /* the slot array is counted metadata */
    tm_table_free(t, &tb);
    assert_null(tb.slots);
    assert_int_equal(tb.cap, 0);
    assert_int_equal(meta_bytes(t), meta0);
    free(order);
    free(in);
    free(e);
    free(keys);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * TM_TABLE_OBJS: random operations with colliding hashes
 * ---------------------------------------------------------------------- */
#define NOBJS   2400u
#define NGROUP  4u      /* objects per forced-collision group */

static void test_objs_random(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tt_rng r;
    tt_seed(&r, g_seed ^ 0x5151);
    uint64_t meta0 = meta_bytes(t);

    struct tm_obj *o = calloc(NOBJS, sizeof(*o));
    bool *in = calloc(NOBJS, sizeof(*in));
    assert_true(o && in);
    /* first half: real oid hashes (sparse oids, and dense oids differing in
     * one word); second half: groups of NGROUP distinct oids sharing a hash */
    for (uint32_t i = 0; i < NOBJS; i++) {
        if (i < NOBJS / 4)
            o[i].oid = tt_oid(tt_next(&r), tt_next(&r), tt_next(&r));
        else if (i < NOBJS / 2)
            o[i].oid = tt_oid(7, 0, i);
        else
            o[i].oid = tt_oid(i, ~(uint64_t)i, tt_next(&r));
        o[i].hash = tm_oid_hash(t, &o[i].oid);
    }
    for (uint32_t i = NOBJS / 2; i < NOBJS; i += NGROUP)
        for (uint32_t g = 1; g < NGROUP; g++)
            o[i + g].hash = o[i].hash;
    /* oids are distinct */
    for (uint32_t i = NOBJS / 2; i < NOBJS; i++)
        assert_memory_not_equal(&o[i].oid, &o[i ^ 1].oid, sizeof(tmem_oid_t));

    struct tm_table tb = { 0 };
    uint32_t count = 0;
    uint64_t collided_hits = 0, collided_misses = 0;
    const unsigned nops = 100000;
    for (unsigned op = 0; op < nops; op++) {
        unsigned pins = op < nops / 3 ? 75 : op < 2 * nops / 3 ? 30 : 50;
        uint32_t i = (uint32_t)tt_below(&r, NOBJS);
        void *found = tm_table_find(&tb, TM_TABLE_OBJS, o[i].hash, &o[i].oid);
        assert_ptr_equal(found, in[i] ? &o[i] : NULL);
        if (i >= NOBJS / 2) {
            /* a sibling with the same hash is present or not independently */
            uint32_t base = i - (i - NOBJS / 2) % NGROUP;
            bool sib = false;
            for (uint32_t g = 0; g < NGROUP; g++)
                sib |= base + g != i && in[base + g];
            if (sib && in[i])
                collided_hits++;
            else if (sib)
                collided_misses++;
        }
        bool want_in = tt_below(&r, 100) < pins;
        if (!in[i] && want_in) {
            assert_int_equal(tm_table_insert(t, &tb, TM_TABLE_OBJS, &o[i]), 0);
            in[i] = true;
            count++;
        } else if (in[i] && !want_in) {
            tm_table_remove(&tb, TM_TABLE_OBJS, &o[i]);
            in[i] = false;
            count--;
        }
        assert_int_equal(tb.count, count);
        if (op % 4000 == 3999) {
            check_table(&tb, TM_TABLE_OBJS);
            for (uint32_t j = 0; j < NOBJS; j++)
                assert_ptr_equal(tm_table_find(&tb, TM_TABLE_OBJS, o[j].hash, &o[j].oid),
                                 in[j] ? &o[j] : NULL);
        }
    }
    /* both cases of a colliding lookup were exercised */
    assert_true(collided_hits > 100 && collided_misses > 100);

    /* an oid absent from the table is not found under a present hash, and a
     * present oid is not found under another hash */
    for (uint32_t j = 0; j < NOBJS; j++) {
        if (!in[j])
            continue;
        tmem_oid_t other = o[j].oid;
        other.oid[2] ^= 0x8000;
        assert_null(tm_table_find(&tb, TM_TABLE_OBJS, o[j].hash, &other));
        assert_null(tm_table_find(&tb, TM_TABLE_OBJS, o[j].hash ^ 1, &o[j].oid));
    }

    for (uint32_t j = 0; j < NOBJS; j++) {
        if (in[j]) {
            tm_table_remove(&tb, TM_TABLE_OBJS, &o[j]);
            in[j] = false;
            count--;
            assert_int_equal(tb.count, count);
            /* its collision siblings are still there */
            if (j >= NOBJS / 2) {
                uint32_t base = j - (j - NOBJS / 2) % NGROUP;
                for (uint32_t g = 0; g < NGROUP; g++)
                    assert_ptr_equal(tm_table_find(&tb, TM_TABLE_OBJS, o[base + g].hash,
                                                   &o[base + g].oid),
                                     in[base + g] ? &o[base + g] : NULL);
            }
        }
    }
    assert_int_equal(tb.count, 0);
    check_table(&tb, TM_TABLE_OBJS);
    tm_table_free(t, &tb);
    assert_int_equal(meta_bytes(t), meta0);
    free(in);
    free(o);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Backward-shift deletion where probe runs wrap from the last slot to slot 0
 * ---------------------------------------------------------------------- */
static void test_wraparound_delete(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    tt_rng r;
    tt_seed(&r, g_seed ^ 0xa5a5);
    enum { N = 6, CAP = 8, TRIALS = 3000 };
    struct tm_obj o[N];
    uint64_t wrapped_states = 0, shifted_across = 0;

    for (int trial = 0; trial < TRIALS; trial++) {
        struct tm_table tb = { 0 };
        memset(o, 0, sizeof(o));
        /* homes crowd the end of an 8-slot table, so runs wrap to slot 0;
         * some entries share a whole hash (collisions), some only a home */
        for (int i = 0; i < N; i++) {
            uint64_t home = (CAP - 3 + tt_below(&r, 5)) % CAP;   /* 5,6,7,0,1 */
            o[i].oid = tt_oid((uint64_t)trial, (uint64_t)i, 42);
            if (i > 0 && tt_below(&r, 4) == 0)
                o[i].hash = o[tt_below(&r, (uint64_t)i)].hash;
            else
                o[i].hash = home << 32 | (tt_next(&r) & 0xffffffffu);
        }
        int ord[N];
        for (int i = 0; i < N; i++)
            ord[i] = i;
        for (int i = N - 1; i > 0; i--) {
            int x = (int)tt_below(&r, (uint64_t)i + 1), tmp = ord[i];
            ord[i] = ord[x];
            ord[x] = tmp;
        }
        for (int i = 0; i < N; i++)
            assert_int_equal(tm_table_insert(t, &tb, TM_TABLE_OBJS, &o[ord[i]]), 0);
        assert_int_equal(tb.cap, CAP);
        assert_int_equal(tb.count, N);
        check_table(&tb, TM_TABLE_OBJS);

        bool in[N];
        for (int i = 0; i < N; i++)
            in[i] = true;
        for (int i = N - 1; i > 0; i--) {
            int x = (int)tt_below(&r, (uint64_t)i + 1), tmp = ord[i];
            ord[i] = ord[x];
            ord[x] = tmp;
        }
        for (int n = 0; n < N; n++) {
            /* note whether some entry sits before its home (its run wrapped) */
            bool wrapped = false;
            for (uint32_t s = 0; s < CAP; s++) {
                const struct tm_obj *x = tm_table_at(&tb, s);
                if (x && s < home_of(&tb, x->hash))
                    wrapped = true;
            }
            wrapped_states += wrapped;
            struct tm_obj *victim = &o[ord[n]];
            void *before[CAP];
            uint32_t victim_slot = CAP;
            for (uint32_t s = 0; s < CAP; s++) {
                before[s] = tm_table_at(&tb, s);
                if (tm_table_at(&tb, s) == victim)
                    victim_slot = s;
            }
            assert_true(victim_slot < CAP);
            tm_table_remove(&tb, TM_TABLE_OBJS, victim);
            in[ord[n]] = false;
            assert_int_equal(tb.count, (uint32_t)(N - n - 1));
            assert_null(tm_table_find(&tb, TM_TABLE_OBJS, victim->hash, &victim->oid));
            /* did the shift pull an entry from the start of the array back
             * across the wrap into the hole at the end? */
            for (uint32_t s = 0; s < victim_slot; s++)
                if (before[s] && tm_table_at(&tb, victim_slot) == before[s])
                    shifted_across++;
            for (int i = 0; i < N; i++)
                assert_ptr_equal(tm_table_find(&tb, TM_TABLE_OBJS, o[i].hash, &o[i].oid),
                                 in[i] ? &o[i] : NULL);
            check_table(&tb, TM_TABLE_OBJS);
        }
        for (uint32_t s = 0; s < CAP; s++)
            assert_null(tm_table_at(&tb, s));
        tm_table_free(t, &tb);
    }
    /* the trials really produced wrapped runs and shifts into the end slots */
    assert_true(wrapped_states > TRIALS);
    assert_true(shifted_across > TRIALS / 10);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * Growth: many inserts, capacity doubles only when needed
 * ---------------------------------------------------------------------- */
static void test_growth(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    enum { N = 40000 };
    struct tm_pgd *e = calloc(N, sizeof(*e));
    assert_non_null(e);
    uint64_t meta0 = meta_bytes(t);
    struct tm_table tb = { 0 };
    assert_null(tm_table_find(&tb, TM_TABLE_PAGES, 0, NULL));
    uint32_t grows = 0, cap = 0;
    for (uint32_t i = 0; i < N; i++) {
        e[i].index = i * 3;     /* dense-ish, with gaps */
        assert_int_equal(tm_table_insert(t, &tb, TM_TABLE_PAGES, &e[i]), 0);
        assert_int_equal(tb.count, i + 1);
        if (tb.cap != cap) {
            assert_true(cap == 0 ? tb.cap >= 1 : tb.cap == cap * 2);
            /* it grew because the old capacity would have exceeded 3/4 */
            assert_true(cap == 0 || (uint64_t)(i + 1) * 4 > (uint64_t)cap * 3);
            cap = tb.cap;
            grows++;
        }
        assert_true((uint64_t)tb.count * 4 <= (uint64_t)tb.cap * 3);
    }
    assert_true(grows >= 14);
    /* the table is no bigger than needed: half the capacity would be > 3/4 */
    assert_true((uint64_t)N * 4 > (uint64_t)(tb.cap / 2) * 3);
    check_table(&tb, TM_TABLE_PAGES);
    for (uint32_t i = 0; i < N; i++) {
        assert_ptr_equal(tm_table_find(&tb, TM_TABLE_PAGES, i * 3, NULL), &e[i]);
        assert_null(tm_table_find(&tb, TM_TABLE_PAGES, i * 3 + 1, NULL));
    }
    /* the slot array is charged to meta_bytes */
    assert_true(meta_bytes(t) >= meta0 + (uint64_t)tb.cap * sizeof(struct tm_slot));
    /* removing every other entry keeps the rest reachable */
    for (uint32_t i = 0; i < N; i += 2)
        tm_table_remove(&tb, TM_TABLE_PAGES, &e[i]);
    assert_int_equal(tb.count, N / 2);
    for (uint32_t i = 0; i < N; i++)
        assert_ptr_equal(tm_table_find(&tb, TM_TABLE_PAGES, i * 3, NULL), i % 2 ? &e[i] : NULL);
    check_table(&tb, TM_TABLE_PAGES);
    tm_table_free(t, &tb);
    assert_int_equal(meta_bytes(t), meta0);
    free(e);
    tt_close(t);
}

/* ------------------------------------------------------------------------
 * A failed growth leaves the table as it was
 * ---------------------------------------------------------------------- */
static void fault_case(tmem_t *t, enum tm_table_kind k, uint32_t n)
{
    struct tm_pgd *pg = calloc(n + 1, sizeof(*pg));
    struct tm_obj *ob = calloc(n + 1, sizeof(*ob));
    assert_true(pg && ob);
    for (uint32_t i = 0; i <= n; i++) {
        pg[i].index = i * 7 + 1;
        ob[i].oid = tt_oid(i, 1, 2);
        ob[i].hash = i % 2 ? ob[i - 1].hash : tm_oid_hash(t, &ob[i].oid);   /* pairs collide */
    }
#define ENTRY(i) (k == TM_TABLE_PAGES ? (void *)&pg[i] : (void *)&ob[i])
#define FIND(i)                                                                          \
    (k == TM_TABLE_PAGES ? tm_table_find(&tb, k, pg[i].index, NULL)                       \
                         : tm_table_find(&tb, k, ob[i].hash, &ob[i].oid))
    struct tm_table tb = { 0 };
    tmem_stats_t st0, st1;

    /* an empty table: the first insert must allocate */
    assert_int_equal(tmem_stats_get(t, &st0), 0);
    tmem__fault_inject(t, 1, 0);
    assert_int_equal(tm_table_insert(t, &tb, k, ENTRY(0)), -ENOMEM);
    tmem__fault_inject(t, 0, 0);
    assert_null(tb.slots);
    assert_int_equal(tb.cap, 0);
    assert_int_equal(tb.count, 0);
    assert_null(FIND(0));
    assert_int_equal(tmem_stats_get(t, &st1), 0);
    assert_int_equal(st1.alloc_failed, st0.alloc_failed + 1);
    assert_int_equal(st1.meta_bytes, st0.meta_bytes);

    /* fill to n entries: the next insert needs a bigger array */
    for (uint32_t i = 0; i < n; i++)
        assert_int_equal(tm_table_insert(t, &tb, k, ENTRY(i)), 0);
    assert_true((uint64_t)(n + 1) * 4 > (uint64_t)tb.cap * 3);
    struct tm_slot *slots = tb.slots;
    uint32_t cap = tb.cap;
    struct tm_slot *copy = malloc(cap * sizeof(*copy));
    assert_non_null(copy);
    memcpy(copy, slots, cap * sizeof(*copy));

    for (int attempt = 0; attempt < 3; attempt++) {
        tmem__fault_inject(t, 1, attempt == 2);
        assert_int_equal(tm_table_insert(t, &tb, k, ENTRY(n)), -ENOMEM);
        tmem__fault_inject(t, 0, 0);
        assert_ptr_equal(tb.slots, slots);
        assert_int_equal(tb.cap, cap);
        assert_int_equal(tb.count, n);
        assert_memory_equal(tb.slots, copy, cap * sizeof(*copy));
        assert_null(FIND(n));
        for (uint32_t i = 0; i < n; i++)
            assert_ptr_equal(FIND(i), ENTRY(i));
        check_table(&tb, k);
    }
    /* a removal and re-insert below the threshold needs no allocation: it
     * succeeds even while every allocation fails */
    tm_table_remove(&tb, k, ENTRY(0));
    tmem__fault_inject(t, 1, 1);
    assert_int_equal(tm_table_insert(t, &tb, k, ENTRY(0)), 0);
    tmem__fault_inject(t, 0, 0);
    assert_ptr_equal(tb.slots, slots);
    check_table(&tb, k);

    /* with allocation working again the same insert grows the table */
    assert_int_equal(tm_table_insert(t, &tb, k, ENTRY(n)), 0);
    assert_int_equal(tb.cap, cap * 2);
    assert_int_equal(tb.count, n + 1);
    for (uint32_t i = 0; i <= n; i++)
        assert_ptr_equal(FIND(i), ENTRY(i));
    check_table(&tb, k);
    tm_table_free(t, &tb);
#undef ENTRY
#undef FIND
    free(copy);
    free(pg);
    free(ob);
}

static void test_insert_fault(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_LZ4, 1);
    uint64_t meta0 = meta_bytes(t);
    /* thresholds: 3 entries fill 4 slots, 6 fill 8, 96 fill 128, 768 fill 1024 */
    const uint32_t ns[] = { 3, 6, 96, 768 };
    for (unsigned i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
        fault_case(t, TM_TABLE_PAGES, ns[i]);
        fault_case(t, TM_TABLE_OBJS, ns[i]);
    }
    assert_int_equal(meta_bytes(t), meta0);
    tt_close(t);
}

/* The frame hint of each page slot: set at insertion from a whole-frame
 * location (0 for any other kind), carried through growth and through the
 * backward shifts of deletions, renewed when the location changes, and
 * naming exactly the page's frame. */
static void expect_hint(tmem_t *t, const struct tm_table *tb, const struct tm_pgd *pgd)
{
    uint32_t hint = 12345;
    assert_ptr_equal(tm_table_find_page(tb, pgd->index, &hint), pgd);
    if (pgd->loc.kind == TM_LOC_WHOLE) {
        assert_int_not_equal(hint, 0);
        assert_ptr_equal(t->frames[0].base + (size_t)(hint - 1) * TMEM_PAGE_SIZE, pgd->loc.u.frame);
    } else {
        assert_int_equal(hint, 0);
    }
}

static void test_frame_hints(void **state)
{
    (void)state;
    tmem_t *t = tt_open(0, TMEM_COMPRESS_NONE, 1);
    tt_rng r;
    tt_seed(&r, g_seed ^ 0x41);
    enum { N = 3000 };
    struct tm_pgd *e = calloc(N, sizeof(*e));
    bool *in = calloc(N, sizeof(*in));
    assert_true(e && in);
    struct tm_table tb = { .seed = tt_next(&r) };
    for (uint32_t i = 0; i < N; i++) {
        e[i].index = i * 5 + (uint32_t)tt_below(&r, 5);
        if (i % 3 == 0) {
            e[i].loc.kind = TM_LOC_WHOLE;
            e[i].loc.u.frame = tm_frame_get(t, TMEM_ARENA_EPHEMERAL, TM_FRAME_WHOLE);
            assert_non_null(e[i].loc.u.frame);
        } else {
            e[i].loc.kind = i % 3 == 1 ? TM_LOC_WORD : TM_LOC_FRAG;
        }
        assert_int_equal(tm_table_insert(t, &tb, TM_TABLE_PAGES, &e[i]), 0);
        in[i] = true;
    }
    for (uint32_t i = 0; i < N; i++)        /* after 10 growths */
        expect_hint(t, &tb, &e[i]);
    for (uint32_t i = 0; i < N; i++)        /* half leave: backward shifts */
        if (tt_below(&r, 2)) {
            tm_table_remove(&tb, TM_TABLE_PAGES, &e[i]);
            in[i] = false;
        }
    for (uint32_t i = 0; i < N; i++) {
        if (!in[i]) {
            uint32_t hint = 7;
            assert_null(tm_table_find_page(&tb, e[i].index, &hint));
            assert_int_equal(hint, 0);
            continue;
        }
        expect_hint(t, &tb, &e[i]);
        /* a new location: another frame, or data that needs none */
        uint8_t *old = e[i].loc.kind == TM_LOC_WHOLE ? e[i].loc.u.frame : NULL;
        if (tt_below(&r, 2)) {
            e[i].loc.kind = TM_LOC_WHOLE;
            e[i].loc.u.frame = tm_frame_get(t, TMEM_ARENA_EPHEMERAL, TM_FRAME_WHOLE);
            assert_non_null(e[i].loc.u.frame);
        } else {
            e[i].loc = (struct tm_loc){ .kind = TM_LOC_WORD };
        }
        if (old)
            tm_frame_put(t, old, TM_FRAME_WHOLE);
        tm_table_renew_hint(t, &tb, &e[i]);
        expect_hint(t, &tb, &e[i]);
    }
    for (uint32_t i = 0; i < N; i++)
        if (e[i].loc.kind == TM_LOC_WHOLE)
            tm_frame_put(t, e[i].loc.u.frame, TM_FRAME_WHOLE);
    tm_table_free(t, &tb);
    free(e);
    free(in);
    assert_int_equal(tmem_check(t), 0);
    tt_close(t);
}

int main(int argc, char **argv)
{
    g_seed = tt_seed_from_args(argc, argv, "test_table");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_random),
        cmocka_unit_test(test_objs_random),
        cmocka_unit_test(test_wraparound_delete),
        cmocka_unit_test(test_growth),
        cmocka_unit_test(test_insert_fault),
        cmocka_unit_test(test_frame_hints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
