/* SPDX-License-Identifier: MIT */
/*
 * test_size.c - tmu_parse_size (src/util/size.h), the one size parser of
 * tmemd, tmemctl and the frontends: every unit in both cases with each
 * suffix, the limits (0, UINT64_MAX and the largest value of each unit),
 * overflow by one with each unit (-ERANGE), and what the grammar refuses
 * (-EINVAL): signs, blanks, fractions, other units, empty and NULL.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "util/size.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)

struct good { const char *s; uint64_t v; };

static void check_good(const struct good *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t b = 12345;
        int rc = tmu_parse_size(g[i].s, &b);
        if (rc != 0)
            fail_msg("'%s': %d, should parse", g[i].s, rc);
        if (b != g[i].v)
            fail_msg("'%s': %llu, not %llu", g[i].s, (unsigned long long)b,
                     (unsigned long long)g[i].v);
        /* a check only: no pointer to write to */
        assert_int_equal(tmu_parse_size(g[i].s, NULL), 0);
    }
}

static void check_bad(const char *const *bad, size_t n, int want)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t b = 12345;
        int rc = tmu_parse_size(bad[i], &b);
        if (rc != want)
            fail_msg("'%s': %d, not %d", bad[i], rc, want);
        if (b != 12345)
            fail_msg("'%s': wrote %llu on failure", bad[i], (unsigned long long)b);
        assert_int_equal(tmu_parse_size(bad[i], NULL), want);
    }
}

/* Plain bytes, each unit in both cases, with "B" and "iB" in every case. */
static void units_and_suffixes(void **state)
{
    (void)state;
    static const struct good g[] = {
        { "0", 0 }, { "1", 1 }, { "4096", 4096 }, { "1048576", MiB }, { "007", 7 },
        { "512B", 512 }, { "512b", 512 }, { "0B", 0 },
        { "1K", KiB }, { "1k", KiB }, { "64K", 64 * KiB }, { "64k", 64 * KiB },
        { "1M", MiB }, { "1m", MiB }, { "512M", 512 * MiB }, { "007m", 7 * MiB },
        { "1G", GiB }, { "1g", GiB }, { "4G", 4 * GiB },
        { "1T", TiB }, { "1t", TiB }, { "2T", 2 * TiB },
        { "4KB", 4 * KiB }, { "4kb", 4 * KiB }, { "4Kb", 4 * KiB }, { "4kB", 4 * KiB },
        { "4KiB", 4 * KiB }, { "4kib", 4 * KiB }, { "4KIB", 4 * KiB }, { "4kIb", 4 * KiB },
        { "16MiB", 16 * MiB }, { "16MB", 16 * MiB }, { "4GiB", 4 * GiB }, { "4gib", 4 * GiB },
        { "4GB", 4 * GiB }, { "4gb", 4 * GiB }, { "3TiB", 3 * TiB }, { "3tb", 3 * TiB },
        { "0K", 0 }, { "0T", 0 }, { "0GiB", 0 },
        { "00000000000000000000000000001", 1 },      /* leading zeros are not overflow */
        { "00000000000000000000000000001T", TiB },
    };
    check_good(g, sizeof(g) / sizeof(g[0]));
}

/* The largest value of each unit parses; one more is -ERANGE. */
static void limits(void **state)
{
    (void)state;
    static const struct good g[] = {
        { "18446744073709551615", UINT64_MAX },
        { "18446744073709551615B", UINT64_MAX },
        { "18014398509481983K", UINT64_MAX >> 10 << 10 },
        { "17592186044415M", UINT64_MAX >> 20 << 20 },
        { "17179869183G", UINT64_MAX >> 30 << 30 },
        { "17179869183GiB", UINT64_MAX >> 30 << 30 },
        { "16777215T", UINT64_MAX >> 40 << 40 },
    };
    check_good(g, sizeof(g) / sizeof(g[0]));
    static const char *const over[] = {
        "18446744073709551616", "18446744073709551616B", "18446744073709551620",
        "99999999999999999999999", "184467440737095516150",
        "18014398509481984K", "18014398509481984KiB", "17592186044416M", "17592186044416mb",
        "17179869184G", "17179869184g", "16777216T", "16777216TiB",
        "18446744073709551615K", "18446744073709551616T",
    };
    check_bad(over, sizeof(over) / sizeof(over[0]), -ERANGE);
}

/* Not in the grammar: -EINVAL, even when the digits would also overflow. */
static void refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "-1", "-0", "-4G", "+1", "+4G", " 1M", "1M ", "\t1", "1\n", "4 G", "1 ",
        "1.5G", "1.", ".5", "1,5G", "4X", "1P", "1E", "4Gi", "4Ki", "4iB", "4ib", "4GiBB",
        "4BB", "4GBB", "4BiB", "G", "K", "B", "GiB", "iB", "0x10", "1e3", "4M4", "4KB4", "4K-",
        "25%", "all", "none", "nan", "inf", "99999999999999999999999X", "-18446744073709551616",
        "\xef\xbc\x91",          /* a full-width 1 */
    };
    check_bad(bad, sizeof(bad) / sizeof(bad[0]), -EINVAL);
    uint64_t b = 12345;
    assert_int_equal(tmu_parse_size(NULL, &b), -EINVAL);
    assert_int_equal(tmu_parse_size(NULL, NULL), -EINVAL);
    assert_int_equal(b, 12345);
    /* the whole string, not a prefix: a NUL ends it, what follows is not read */
    char buf[] = "64K\0junk";
    assert_int_equal(tmu_parse_size(buf, &b), 0);
    assert_int_equal(b, 64 * KiB);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(units_and_suffixes),
        cmocka_unit_test(limits),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
