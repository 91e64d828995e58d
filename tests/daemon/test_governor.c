/* SPDX-License-Identifier: MIT */
/*
 * test_governor.c - the memory governor's policy (tmd_governor_decide, a
 * pure function): pressure gives back stepwise, relief grows back with
 * hysteresis, never below persistent data, MemAvailable below the reserve
 * gives back, a host without PSI, a falling ceiling, no flapping.  Then the
 * governor's thread on a real engine with meminfo and PSI in temporary
 * files: a simulated pressure signal makes it relinquish, relief makes it
 * grow; stopping is prompt; off, it leaves the limit at max_memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/daemon.h"
#include "daemon/governor.h"
#include "tmem_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

/* A host with 8 GiB available, a 4 GiB ceiling, a 1 GiB reserve, a 10%
 * threshold and steps of 10%; the engine holds 2 GiB under a 4 GiB limit. */
static struct tmd_gov_input host(void)
{
    struct tmd_gov_input in = {
        .limit = 4 * GiB, .held = 2 * GiB, .pinned = 0, .mem_available = 8 * GiB,
        .psi_avg10 = 0.0, .max_memory = 4 * GiB, .reserve = 1 * GiB,
        .psi_threshold = 10.0, .step_pct = 10.0,
    };
    return in;
}

/* One interval: decide, then play the engine (it holds at most the limit). */
static enum tmd_gov_verdict step(struct tmd_gov_input *in, struct tmd_gov_memo *m, char *why,
                                 size_t whylen)
{
    enum tmd_gov_verdict v;
    in->limit = tmd_governor_decide(in, m, &v, why, whylen);
    if (in->held > in->limit)
        in->held = in->limit;
    return v;
}

static void pressure_shrinks_stepwise(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.psi_avg10 = 23.5;
    /* the first step gives back 10% of what is held (the limit was above it) */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    assert_int_equal(in.limit, (2 * GiB - 2 * GiB / 10) & ~4095ull);
    assert_string_equal(why, "memory pressure some avg10=23.5% > 10%");
    /* then 10% of the limit per interval while pressure lasts */
    for (int i = 0; i < 10; i++) {
        uint64_t before = in.limit;
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
        uint64_t given = before - in.limit;
        assert_true(given >= before / 10 - 4096 && given <= before / 10 + 4096);
    }
    assert_true(in.limit < GiB);
    assert_int_equal(m.calm, 0);
    /* the message the daemon logs */
    char a[32], b[32];
    assert_string_equal(tmd_fmt_bytes(a, sizeof(a), 512 * MiB), "512 MiB");
    assert_string_equal(tmd_fmt_bytes(b, sizeof(b), 460 * MiB + 800 * 1024), "460.8 MiB");
    assert_string_equal(tmd_fmt_bytes(a, sizeof(a), 3 * GiB / 2), "1.5 GiB");
    assert_string_equal(tmd_fmt_bytes(a, sizeof(a), 100), "100 B");
    assert_string_equal(tmd_fmt_bytes(a, sizeof(a), 4 * GiB - 1), "4 GiB");
}

static void relief_grows_back_with_hysteresis(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.psi_avg10 = 40;
    for (int i = 0; i < 8; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    uint64_t low = in.limit;
    /* below the threshold but above half of it: hold, however long */
    in.psi_avg10 = 8;
    for (int i = 0; i < 20; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
    assert_int_equal(in.limit, low);
    /* calm: still held for TMD_GOV_CALM_INTERVALS - 1 intervals */
    in.psi_avg10 = 2;
    for (unsigned i = 1; i < TMD_GOV_CALM_INTERVALS; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
    assert_int_equal(in.limit, low);
    /* then it grows by 10% of max_memory per interval */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_GROW);
    assert_int_equal(in.limit, low + (4 * GiB / 10 & ~4095ull));
    assert_non_null(strstr(why, "pressure passed (some avg10=2.0% <= 5% for 3 intervals"));
    /* a spike resets the calm run: shrink, then hold again */
    in.psi_avg10 = 30;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    in.psi_avg10 = 1;
    for (unsigned i = 1; i < TMD_GOV_CALM_INTERVALS; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
    /* back up to the ceiling, stepwise, then hold there */
    int grows = 0;
    while (step(&in, &m, why, sizeof(why)) == TMD_GOV_GROW)
        grows++;
    assert_true(grows >= 5 && grows <= 11);
    assert_int_equal(in.limit, 4 * GiB);
    for (int i = 0; i < 5; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
}

static void never_below_persistent_data(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.pinned = 1 * GiB;            /* persistent data: eviction cannot free it */
    in.held = 1 * GiB + 300 * MiB;
    in.psi_avg10 = 80;
    enum tmd_gov_verdict v;
    int steps = 0;
    while ((v = step(&in, &m, why, sizeof(why))) == TMD_GOV_SHRINK) {
        assert_true(in.limit >= in.pinned + TMD_GOV_FLOOR);
        steps++;
    }
    assert_true(steps >= 2);
    assert_int_equal(v, TMD_GOV_HOLD_FLOOR);
    assert_int_equal(in.limit, in.pinned + TMD_GOV_FLOOR);
    assert_non_null(strstr(why, "only persistent data is left (floor 1 GiB"));
    /* and stays there */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD_FLOOR);
    assert_int_equal(in.limit, in.pinned + TMD_GOV_FLOOR);
    /* an engine holding almost nothing still keeps the small floor */
    in = host();
    in.held = 1 * MiB;
    in.psi_avg10 = 80;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    assert_int_equal(in.limit, TMD_GOV_FLOOR);
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD_FLOOR);
    /* a ceiling below the floor: max_memory is the floor */
    in = host();
    in.max_memory = in.limit = 8 * MiB;
    in.held = 8 * MiB;
    in.psi_avg10 = 80;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD_FLOOR);
    assert_int_equal(in.limit, 8 * MiB);
}

static void mem_available_below_reserve_gives_back(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 5 };
    char why[256];
    in.mem_available = 512 * MiB;   /* below the 1 GiB reserve; PSI quiet */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    assert_int_equal(in.limit, (2 * GiB - 2 * GiB / 10) & ~4095ull);
    assert_string_equal(why, "MemAvailable 512 MiB below the reserve 1 GiB");
    assert_int_equal(m.calm, 0);
    /* both signals at once name both */
    in.psi_avg10 = 12.25;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    assert_string_equal(why, "memory pressure some avg10=12.2% > 10%, MemAvailable 512 MiB "
                             "below the reserve 1 GiB");
    /* without PSI too */
    in.psi_avg10 = -1;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
    assert_string_equal(why, "MemAvailable 512 MiB below the reserve 1 GiB");
}

static void missing_psi(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.psi_avg10 = -1;              /* no /proc/pressure/memory */
    in.limit = 1 * GiB;
    in.held = 1 * GiB;
    /* MemAvailable alone: plenty, so after the calm run it grows */
    for (unsigned i = 1; i < TMD_GOV_CALM_INTERVALS; i++)
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_GROW);
    assert_non_null(strstr(why, "MemAvailable 8 GiB above the reserve 1 GiB for 3 intervals"));
    /* and a low MemAvailable still gives back */
    in.mem_available = 100 * MiB;
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_SHRINK);
}

static void ceiling_falls_without_pressure(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.held = 100 * MiB;
    in.mem_available = 2 * GiB;     /* others took memory: room for 1.1 GiB only */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_LOWER);
    assert_int_equal(in.limit, (100 * MiB + 1 * GiB) & ~4095ull);
    assert_string_equal(why, "MemAvailable 2 GiB leaves room for 1.1 GiB above the reserve 1 GiB");
    assert_true(in.limit >= in.held);   /* nothing to evict */
}

static void no_flapping(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    struct tmd_gov_memo m = { 0 };
    char why[256];
    in.held = 1 * GiB;
    in.mem_available = 3 * GiB;     /* ceiling 3 GiB */
    assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_LOWER);
    uint64_t settled = in.limit;
    /* MemAvailable wobbles by a few MiB either way: nothing moves */
    for (int i = 0; i < 50; i++) {
        in.mem_available = 3 * GiB + (uint64_t)((i * 7919) % 41) * MiB - 20 * MiB;
        in.psi_avg10 = (i % 5) * 1.0;
        assert_int_equal(step(&in, &m, why, sizeof(why)), TMD_GOV_HOLD);
    }
    assert_int_equal(in.limit, settled);
}

static void first_limit(void **state)
{
    (void)state;
    struct tmd_gov_input in = host();
    char why[256];
    in.held = 0;
    in.limit = in.max_memory;
    assert_int_equal(tmd_governor_first(&in, why, sizeof(why)), 4 * GiB);
    assert_non_null(strstr(why, "the configured max_memory"));
    in.mem_available = 2 * GiB;
    assert_int_equal(tmd_governor_first(&in, why, sizeof(why)), 1 * GiB);
    assert_non_null(strstr(why, "leaves room for 1 GiB above the reserve 1 GiB"));
    in.psi_avg10 = 50;
    assert_int_equal(tmd_governor_first(&in, why, sizeof(why)), TMD_GOV_FLOOR);
    in.psi_avg10 = 0;
    in.mem_available = 100 * MiB;
    assert_int_equal(tmd_governor_first(&in, why, sizeof(why)), TMD_GOV_FLOOR);
}

/* ------------------------------------------------------------------------
 * The thread, on a real engine
 * ---------------------------------------------------------------------- */
static char dir[] = "/tmp/tmem-gov-unit.XXXXXX";
static char meminfo[300], psi[300];


static void set_host(unsigned avail_mib, const char *avg10)
{
    char text[300];
    snprintf(text, sizeof(text), "MemTotal:  8388608 kB\nMemFree:  %u kB\nMemAvailable:  %u kB\n",
             avail_mib * 1024, avail_mib * 1024);
    tt_write_file(meminfo, text);
    if (avg10) {
        snprintf(text, sizeof(text), "some avg10=%s avg60=0.00 avg300=0.00 total=1\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n", avg10);
        tt_write_file(psi, text);
    } else {
        unlink(psi);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static struct tmd *daemon_with_engine(uint64_t max, int governor, const char *interval_ms)
{
    static struct tmd d;
    char err[300];
    memset(&d, 0, sizeof(d));
    assert_int_equal(tmd_config_default(&d.cfg), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "meminfo", meminfo, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "psi", psi, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "interval_ms", interval_ms, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "reserve", "1G", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "enabled", governor ? "on" : "off", err,
                                    sizeof(err)), 0);
    d.cfg.max_memory_pct = 0;
    d.cfg.max_memory = max;
    d.cfg.engine.compress = TMEM_COMPRESS_NONE;
    if (tmd_config_resolve(&d.cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    d.engine = tmem_open(&d.cfg.engine);
    assert_non_null(d.engine);
    return &d;
}

static void fill(struct tmd *d, tmem_client_t *c, int pool, uint32_t n)
{
    uint8_t page[TMEM_PAGE_SIZE];
    for (uint32_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof(page); k += 8) {
            uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ k * 0xbf58476d1ce4e5b9ull;
            memcpy(page + k, &x, 8);
        }
        tmem_oid_t oid = { { 1, 0, 0 } };
        tmem_put_page(c, (uint32_t)pool, oid, i, page);
    }
    (void)d;
}

static void thread_relinquishes_under_simulated_pressure(void **state)
{
    (void)state;
    set_host(6144, "0.00");
    struct tmd *d = daemon_with_engine(64 * MiB, 1, "20");
    assert_int_equal(tmd_governor_start(d), 0);
    assert_int_equal(atomic_load(&d->gov.limit), 64 * MiB);
    tmem_client_t *c = tmem_client_open(d->engine, "cache");
    int pool = tmem_new_pool(c, (tmem_uuid_t){ 0, 0 }, 0);
    assert_true(pool >= 0);
    fill(d, c, pool, 12000);            /* ~47 MiB of ephemeral pages */
    tmem_stats_t s;
    tmem_stats_get(d->engine, &s);
    uint64_t before = s.ephemeral_pages;
    assert_true(before > 8000);

    /* pressure: PSI far above the threshold, MemAvailable below the reserve */
    set_host(512, "45.00");
    uint64_t t0 = now_ms();
    for (;;) {
        tmem_stats_get(d->engine, &s);
        if (atomic_load(&d->gov.shrinks) > 0 && s.ephemeral_pages < before / 2)
            break;
        assert_true(now_ms() - t0 < 10000);
        sleep_ms(5);
    }
    assert_true(atomic_load(&d->gov.limit) < 64 * MiB);
    assert_true(atomic_load(&d->gov.pages_evicted) > 0);
    assert_true(atomic_load(&d->gov.pages_released) > 0);
    assert_int_equal(atomic_load(&d->gov.psi_x100), 4500);
    assert_int_equal(atomic_load(&d->gov.mem_available), 512 * MiB);
    assert_true(s.bytes_held <= atomic_load(&d->gov.limit) + MiB);

    /* relief, and a host that lost PSI meanwhile: it grows back */
    set_host(6144, NULL);
    uint64_t low = atomic_load(&d->gov.limit);
    t0 = now_ms();
    while (atomic_load(&d->gov.limit) < 64 * MiB) {
        assert_true(now_ms() - t0 < 10000);
        sleep_ms(5);
    }
    assert_true(atomic_load(&d->gov.grows) >= 2);   /* stepwise */
    assert_true(low < 64 * MiB);
    tmem_stats_get(d->engine, &s);
    assert_int_equal(s.max_bytes, 64 * MiB);

    tmd_governor_stop(d);
    assert_null(d->governor);
    tmem_client_close(c);
    assert_int_equal(tmem_check(d->engine), 0);
    tmem_close(d->engine);
}

/* Stopping does not wait for the interval to end. */
static void stop_is_prompt(void **state)
{
    (void)state;
    set_host(6144, "0.00");
    struct tmd *d = daemon_with_engine(32 * MiB, 1, "3600000");
    assert_int_equal(tmd_governor_start(d), 0);
    assert_non_null(d->governor);
    sleep_ms(50);                       /* the thread is in its one-hour wait */
    uint64_t t0 = now_ms();
    tmd_governor_stop(d);
    assert_true(now_ms() - t0 < 1000);
    assert_null(d->governor);
    tmd_governor_stop(d);               /* twice is harmless */
    tmem_close(d->engine);
}

static void governor_off_keeps_max_memory(void **state)
{
    (void)state;
    set_host(100, "90.00");             /* pressure, but the governor is off */
    struct tmd *d = daemon_with_engine(32 * MiB, 0, "20");
    assert_int_equal(tmd_governor_start(d), 0);
    assert_null(d->governor);
    assert_int_equal(atomic_load(&d->gov.limit), 32 * MiB);
    sleep_ms(60);
    assert_int_equal(atomic_load(&d->gov.shrinks), 0);
    tmd_governor_stop(d);
    tmem_close(d->engine);
}

static void missing_meminfo_fails_start(void **state)
{
    (void)state;
    set_host(6144, "0.00");
    struct tmd *d = daemon_with_engine(32 * MiB, 1, "20");
    unlink(meminfo);
    assert_int_equal(tmd_governor_start(d), -1);
    assert_null(d->governor);
    tmem_close(d->engine);
}

static int setup(void **state)
{
    (void)state;
    if (!mkdtemp(dir))
        return -1;
    snprintf(meminfo, sizeof(meminfo), "%s/meminfo", dir);
    snprintf(psi, sizeof(psi), "%s/pressure", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(meminfo);
    unlink(psi);
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pressure_shrinks_stepwise),
        cmocka_unit_test(relief_grows_back_with_hysteresis),
        cmocka_unit_test(never_below_persistent_data),
        cmocka_unit_test(mem_available_below_reserve_gives_back),
        cmocka_unit_test(missing_psi),
        cmocka_unit_test(ceiling_falls_without_pressure),
        cmocka_unit_test(no_flapping),
        cmocka_unit_test(first_limit),
        cmocka_unit_test(thread_relinquishes_under_simulated_pressure),
        cmocka_unit_test(stop_is_prompt),
        cmocka_unit_test(governor_off_keeps_max_memory),
        cmocka_unit_test(missing_meminfo_fails_start),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
