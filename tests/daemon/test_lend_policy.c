/* SPDX-License-Identifier: MIT */
/*
 * test_lend_policy.c - the daemon's choice of whom to take lent memory
 * from (tmd_lend_victim, src/daemon/lend.h: a pure function), on made-up
 * clients:
 *
 *   idle clients have no share: what they hold goes to a busy one, oldest
 *     pages first;
 *   a requester within its weighted share takes from anyone above theirs,
 *     whatever the ages;
 *   a requester above its share takes only from older pages than its own
 *     (weighted), else it evicts its own;
 *   a client's claim that its pages are new protects at most its share;
 *   weight 0 is taken from first; clients being shrunk are left alone;
 *   memory shared out by weight when two clients keep asking.
 */
#include <stdbool.h>

#include "daemon/lend.h"
#include "tmem_test.h"

static struct tmd_lend_view view(uint64_t units, uint32_t weight, uint64_t age_ms, bool active)
{
    return (struct tmd_lend_view){ units, weight, age_ms, active, false };
}

static void idle_memory_goes_to_the_busy(void **state)
{
    (void)state;
    /* 100 units; A busy holds 60, B and C idle hold 20 each (B's oldest) */
    struct tmd_lend_view v[3] = { view(60, 100, 5, true), view(20, 100, 9000, false),
                                  view(20, 100, 4000, false) };
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), 1);
    v[1].eph_units = 0;                     /* B gave it all */
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), 2);
    v[2].eph_units = 0;
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), -1);   /* nobody else: its own */
}

static void within_share_takes_whatever_the_age(void **state)
{
    (void)state;
    /* both active, equal weights: shares 50/50; B holds 80 of 100 with
     * newer pages than A's, A holds 20: A (within its share) takes from B */
    struct tmd_lend_view v[2] = { view(20, 100, 9000, true), view(80, 100, 1, true) };
    assert_int_equal(tmd_lend_victim(v, 2, 0, 100), 1);
    /* B, above its share, asks: it may not take from A (within its share) */
    assert_int_equal(tmd_lend_victim(v, 2, 1, 100), -1);
}

static void above_share_takes_only_older_pages(void **state)
{
    (void)state;
    /* three active clients, shares 33 each; A (60) and B (37) are above
     * theirs, C (3) within */
    struct tmd_lend_view v[3] = { view(60, 100, 500, true), view(37, 100, 800, true),
                                  view(3, 100, 10, true) };
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), 1);    /* B's pages are older */
    v[1].oldest_ms = 100;
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), -1);   /* now A's own are older */
    assert_int_equal(tmd_lend_victim(v, 3, 1, 100), 0);    /* B takes A's */
}

static void liars_keep_at_most_their_share(void **state)
{
    (void)state;
    /* B claims its pages are always brand new: while A (within its share)
     * asks, B still gives until it is down to its share */
    struct tmd_lend_view v[2] = { view(10, 100, 50, true), view(90, 100, 0, true) };
    int taken = 0;
    while (tmd_lend_victim(v, 2, 0, 100) == 1 && taken < 100) {
        v[1].eph_units--;
        v[0].eph_units++;
        taken++;
    }
    assert_int_equal(v[1].eph_units, 50);
    assert_int_equal(v[0].eph_units, 50);
}

static void weight_zero_first_and_shrinking_skipped(void **state)
{
    (void)state;
    struct tmd_lend_view v[3] = { view(10, 100, 5, true), view(30, 0, 1, false),
                                  view(60, 100, 99999, false) };
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), 1);    /* weight 0: before any age */
    v[1].shrinking = true;
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), 2);
    v[2].shrinking = true;
    assert_int_equal(tmd_lend_victim(v, 3, 0, 100), -1);
}

/* Two clients asking in turn, weights 300 and 100, a unit at a time from
 * whoever the policy names (or from itself): they settle at 3:1. */
static void shares_follow_weights(void **state)
{
    (void)state;
    struct tmd_lend_view v[2] = { view(50, 300, 100, true), view(50, 100, 100, true) };
    for (int step = 0; step < 1000; step++) {
        size_t req = (size_t)(step % 2);
        int vi = tmd_lend_victim(v, 2, req, 100);
        if (vi >= 0) {
            v[vi].eph_units--;
            v[req].eph_units++;
        }
        /* equal ages: the client that just got a unit has the newest pages */
        v[req].oldest_ms = 100;
        v[1 - req].oldest_ms = 101;
    }
    assert_true(v[0].eph_units >= 74 && v[0].eph_units <= 76);
    assert_true(v[1].eph_units >= 24 && v[1].eph_units <= 26);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(idle_memory_goes_to_the_busy),
        cmocka_unit_test(within_share_takes_whatever_the_age),
        cmocka_unit_test(above_share_takes_only_older_pages),
        cmocka_unit_test(liars_keep_at_most_their_share),
        cmocka_unit_test(weight_zero_first_and_shrinking_skipped),
        cmocka_unit_test(shares_follow_weights),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
