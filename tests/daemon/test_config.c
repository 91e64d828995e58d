/* SPDX-License-Identifier: MIT */
/*
 * test_config.c - tmemd's configuration: sizes and percentages (good and
 * bad), the embedded default, files (keys, comments, indentation, errors
 * with file:line and key, nothing applied on error), single keys from the
 * command line, resolution against a fake MemTotal (a fixed max_memory
 * above it refused), sizes as the messages write them, files that are not
 * regular (a FIFO, a device) or too big refused at once, and dist/tmemd.conf
 * equal to the embedded default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/daemon.h"

#ifndef TMEM_SOURCE_DIR
#define TMEM_SOURCE_DIR "."
#endif

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static char tmpdir[] = "/tmp/tmem-config.XXXXXX";

static const char *write_tmp(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* ------------------------------------------------------------------------
 * Sizes
 * ---------------------------------------------------------------------- */
static void sizes_good(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t v; } good[] = {
        { "0", 0 }, { "1048576", 1048576 }, { "512M", 512 * MiB }, { "4G", 4 * GiB },
        { "64k", 64 << 10 }, { "64K", 64 << 10 }, { "1T", 1ull << 40 }, { "4GiB", 4 * GiB },
        { "4gib", 4 * GiB }, { "4GB", 4 * GiB }, { "4gb", 4 * GiB }, { "512B", 512 },
        { "512b", 512 }, { "16MiB", 16 * MiB }, { "007m", 7 * MiB },
        { "18446744073709551615", UINT64_MAX }, { "17179869183G", 17179869183ull << 30 },
        { "16777215T", 16777215ull << 40 },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t b = 1;
        double pct = 1;
        if (tmd_parse_size(good[i].s, &b, &pct) != 0)
            fail_msg("'%s' should parse", good[i].s);
        if (b != good[i].v || pct != 0)
            fail_msg("'%s': %llu bytes, pct %g", good[i].s, (unsigned long long)b, pct);
    }
    static const struct { const char *s; double pct; } pcts[] = {
        { "25%", 25 }, { "0%", 0 }, { "100%", 100 }, { "12.5%", 12.5 }, { "0.5%", 0.5 },
    };
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        uint64_t b = 1;
        double pct = -1;
        assert_int_equal(tmd_parse_size(pcts[i].s, &b, &pct), 0);
        assert_true(pct == pcts[i].pct);
        assert_int_equal(b, 0);
    }
}

static void sizes_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "", "-1", "-4G", "+4G", " 4G", "4G ", "4 G", "4X", "4iB", "4Gi", "4GiBB", "4BB",
        "G", "GiB", "4.5G", "4.", ".5%", "101%", "100.5%", "%", "5%%", "25 %", "abc",
        "0x10", "1e3", "4M4", "18446744073709551616", "99999999999999999999999",
        "17179869184G", "16777216T", "4K-", "nan", "inf", "1,5G",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b = 12345;
        double pct = 6789;
        if (tmd_parse_size(bad[i], &b, &pct) == 0)
            fail_msg("'%s' should be refused", bad[i]);
    }
    uint64_t b;
    assert_int_equal(tmd_parse_size(NULL, &b, NULL), -1);
    /* no pct pointer: percentages are refused, sizes still parse */
    assert_int_equal(tmd_parse_size("25%", &b, NULL), -1);
    assert_int_equal(tmd_parse_size("2M", &b, NULL), 0);
    assert_int_equal(b, 2 * MiB);
}

/* ------------------------------------------------------------------------
 * The embedded default
 * ---------------------------------------------------------------------- */
static void defaults(void **state)
{
    (void)state;
    struct tmd_config c;
    memset(&c, 0x5a, sizeof(c));
    assert_int_equal(tmd_config_default(&c), 0);
    assert_string_equal(c.socket_path, TMW_DEFAULT_SOCKET);
    assert_string_equal(c.control_path, TMW_DEFAULT_CONTROL);
    assert_int_equal(c.socket_mode, 0666);
    assert_int_equal(c.control_mode, 0660);
    assert_string_equal(c.admin_group, "");
    assert_int_equal(c.max_clients, 256);
    assert_int_equal(c.max_clients_per_uid, 64);
    assert_int_equal(c.spin_us, 50);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_int_equal(c.max_memory, 0);
    assert_true(c.max_memory_pct == 50.0);
    tmem_config_t e;
    tmem_config_init(&e);
    assert_int_equal(c.engine.compress, TMEM_COMPRESS_LZ4);
    assert_int_equal(c.engine.zstd_level, e.zstd_level);
    assert_int_equal(c.engine.compress_max, e.compress_max);
    assert_int_equal(c.engine.dedup, 1);
    assert_int_equal(c.engine.dedup_across_clients, 0);
    assert_int_equal(c.engine.shared_auth_required, 1);
    assert_int_equal(c.engine.default_weight, e.default_weight);
    assert_int_equal(c.engine.default_cap, 0);
    assert_int_equal(c.governor, 1);
    assert_int_equal(c.governor_interval_ms, 1000);
    assert_int_equal(c.reserve, 0);
    assert_true(c.reserve_pct == 10.0);
    assert_true(c.psi_threshold == 10.0);
    assert_true(c.shrink_step_pct == 10.0);
    assert_string_equal(c.meminfo_path, "/proc/meminfo");
    assert_string_equal(c.psi_path, "/proc/pressure/memory");
    assert_string_equal(c.metrics_address, "127.0.0.1");    /* this host only */
    assert_int_equal(c.metrics_port, 9464);
    assert_int_equal(c.metrics_per_client, 0);  /* no tenant shown to the others */
}

/* Every field a key sets (engine.max_bytes is set by tmd_config_resolve). */
static void assert_same_config(const struct tmd_config *a, const struct tmd_config *b)
{
    assert_string_equal(a->socket_path, b->socket_path);
    assert_string_equal(a->control_path, b->control_path);
    assert_memory_equal(a->socket_path, b->socket_path, sizeof(a->socket_path));
    assert_memory_equal(a->control_path, b->control_path, sizeof(a->control_path));
    assert_int_equal(a->socket_mode, b->socket_mode);
    assert_int_equal(a->control_mode, b->control_mode);
    assert_memory_equal(a->admin_group, b->admin_group, sizeof(a->admin_group));
    assert_int_equal(a->max_clients, b->max_clients);
    assert_int_equal(a->max_clients_per_uid, b->max_clients_per_uid);
    assert_int_equal(a->spin_us, b->spin_us);
    assert_int_equal(a->log_level, b->log_level);
    assert_memory_equal(a->state_file, b->state_file, sizeof(a->state_file));
    assert_int_equal(a->park_timeout, b->park_timeout);
    assert_int_equal(a->max_memory, b->max_memory);
    assert_true(a->max_memory_pct == b->max_memory_pct);
    assert_int_equal(a->engine.compress, b->engine.compress);
    assert_int_equal(a->engine.zstd_level, b->engine.zstd_level);
    assert_int_equal(a->engine.compress_max, b->engine.compress_max);
    assert_int_equal(a->engine.dedup, b->engine.dedup);
    assert_int_equal(a->engine.dedup_across_clients, b->engine.dedup_across_clients);
    assert_int_equal(a->engine.shared_auth_required, b->engine.shared_auth_required);
    assert_int_equal(a->nshared_allow, b->nshared_allow);
    assert_memory_equal(a->shared_allow, b->shared_allow,
                        a->nshared_allow * sizeof(a->shared_allow[0]));
    assert_int_equal(a->engine.default_weight, b->engine.default_weight);
    assert_int_equal(a->engine.default_cap, b->engine.default_cap);
    assert_int_equal(a->uid_pers_max, b->uid_pers_max);
    assert_true(a->uid_pers_max_pct == b->uid_pers_max_pct);
    assert_int_equal(a->nuid_share, b->nuid_share);
    assert_int_equal(a->governor, b->governor);
    assert_int_equal(a->governor_interval_ms, b->governor_interval_ms);
    assert_int_equal(a->reserve, b->reserve);
    assert_true(a->reserve_pct == b->reserve_pct);
    assert_true(a->psi_threshold == b->psi_threshold);
    assert_true(a->shrink_step_pct == b->shrink_step_pct);
    assert_memory_equal(a->meminfo_path, b->meminfo_path, sizeof(a->meminfo_path));
    assert_memory_equal(a->psi_path, b->psi_path, sizeof(a->psi_path));
    assert_memory_equal(a->metrics_address, b->metrics_address, sizeof(a->metrics_address));
    assert_int_equal(a->metrics_port, b->metrics_port);
    assert_int_equal(a->metrics_per_client, b->metrics_per_client);
}

/* dist/tmemd.conf sets every key (loaded over garbage, nothing is left of
 * it) to the embedded default's value. */
static void dist_conf_is_the_default(void **state)
{
    (void)state;
    struct tmd_config def, dist;
    char err[300] = "";
    assert_int_equal(tmd_config_default(&def), 0);
    memset(&dist, 0x5a, sizeof(dist));
    int rc = tmd_config_load(&dist, TMEM_SOURCE_DIR "/dist/tmemd.conf", err, sizeof(err));
    if (rc != 0)
        fail_msg("dist/tmemd.conf: %s", err);
    assert_same_config(&def, &dist);
}

/* ------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------- */
static void file_keys(void **state)
{
    (void)state;
    struct tmd_config c;
    char err[300] = "";
    assert_int_equal(tmd_config_default(&c), 0);
    const char *path = write_tmp("good.conf",
        "; a comment\n"
        "# another\n"
        "\n"
        "[daemon]\n"
        "  socket = /tmp/x.sock   ; indented, with an inline comment\n"
        "\tcontrol_socket=/tmp/y.sock\n"
        "socket_mode = 0600\n"
        "admin_group = tmem\n"
        "log_level = DEBUG\n"
        "max_clients = 4\n"
        "[memory]\n"
        "max_memory = 2GiB\n"
        "compress = zstd\n"
        "zstd_level = -3\n"
        "dedup = off\n"
        "dedup_across_clients = YES\n"
        "default_cap = 1000\n"
        "[governor]\n"
        "enabled = 0\n"
        "reserve = 512M\n"
        "psi_threshold = 2.5\n"
        "shrink_step = 25\n"
        "interval_ms = 50\n"
        "meminfo = /tmp/meminfo\n"
        "psi = /tmp/psi\n"
        "[metrics]\n"
        "port = -1\n"
        "[memory]\n"
        "default_weight = 7\n"
        "default_weight = 8\n"       /* the last one wins */
        "spin_us = 0");              /* no final newline; [memory] has no spin_us */
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "good.conf:31: [memory] spin_us: unknown key"));
    /* nothing was applied */
    struct tmd_config def;
    tmd_config_default(&def);
    assert_same_config(&c, &def);

    path = write_tmp("good.conf",
        "[daemon]\n"
        "  socket = /tmp/x.sock   ; indented, with an inline comment\n"
        "\tcontrol_socket=/tmp/y.sock\n"
        "socket_mode = 0600\n"
        "admin_group = tmem\n"
        "log_level = DEBUG\n"
        "max_clients = 4\n"
        "[memory]\n"
        "max_memory = 2GiB\n"
        "compress = zstd\n"
        "zstd_level = -3\n"
        "dedup = off\n"
        "dedup_across_clients = YES\n"
        "default_cap = 1000\n"
        "default_weight = 7\n"
        "default_weight = 8\n"
        "[governor]\n"
        "enabled = 0\n"
        "reserve = 512M\n"
        "psi_threshold = 2.5\n"
        "shrink_step = 25\n"
        "interval_ms = 50\n"
        "meminfo = /tmp/meminfo\n"
        "psi = /tmp/psi\n"
        "[metrics]\n"
        "per_client = yes\n"
        "address = ::\n"
        "port = -1");
    if (tmd_config_load(&c, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_string_equal(c.socket_path, "/tmp/x.sock");
    assert_string_equal(c.control_path, "/tmp/y.sock");
    assert_int_equal(c.socket_mode, 0600);
    assert_int_equal(c.control_mode, 0660);          /* untouched */
    assert_string_equal(c.admin_group, "tmem");
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.max_clients, 4);
    assert_int_equal(c.max_memory, 2 * GiB);
    assert_true(c.max_memory_pct == 0);
    assert_int_equal(c.engine.compress, TMEM_COMPRESS_ZSTD);
    assert_int_equal(c.engine.zstd_level, -3);
    assert_int_equal(c.engine.dedup, 0);
    assert_int_equal(c.engine.dedup_across_clients, 1);
    assert_int_equal(c.engine.default_cap, 1000);
    assert_int_equal(c.engine.default_weight, 8);
    assert_int_equal(c.governor, 0);
    assert_int_equal(c.reserve, 512 * MiB);
    assert_true(c.reserve_pct == 0);
    assert_true(c.psi_threshold == 2.5);
    assert_true(c.shrink_step_pct == 25);
    assert_int_equal(c.governor_interval_ms, 50);
    assert_string_equal(c.meminfo_path, "/tmp/meminfo");
    assert_string_equal(c.psi_path, "/tmp/psi");
    assert_string_equal(c.metrics_address, "::");
    assert_int_equal(c.metrics_port, -1);
    assert_int_equal(c.metrics_per_client, 1);
    /* a file over a file: only what it names changes */
    path = write_tmp("more.conf", "[memory]\nmax_memory = 25%\n");
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), 0);
    assert_int_equal(c.max_memory, 0);
    assert_true(c.max_memory_pct == 25);
    assert_string_equal(c.socket_path, "/tmp/x.sock");
}

/* Each bad file gives one line naming file:line, the key and the fault,
 * and leaves the configuration as it was. */
static void file_errors(void **state)
{
    (void)state;
    static const struct { const char *text, *want; } cases[] = {
        { "[daemon]\nsocket = /a\nbogus = 1\n", "bad.conf:3: [daemon] bogus: unknown key" },
        { "[daemon]\n\n[nope]\nx = 1\n", "bad.conf:4: [nope] x: unknown section" },
        { "socket = /a\n", "bad.conf:1: [] socket: a key outside a section" },
        { "[memory]\nmax_memory = 4X\n", "bad.conf:2: [memory] max_memory: '4X' is not a size" },
        { "[memory]\nmax_memory = -1G\n", "bad.conf:2: [memory] max_memory:" },
        { "[memory]\ncompress = gzip\n", "bad.conf:2: [memory] compress: 'gzip' is not a codec" },
        { "[memory]\ndedup = maybe\n", "bad.conf:2: [memory] dedup: 'maybe' is not a boolean" },
        { "[memory]\nzstd_level = 23\n", "bad.conf:2: [memory] zstd_level: '23' is not an "
          "integer from -7 to 22" },
        { "[memory]\ncompress_max = 4096\n", "bad.conf:2: [memory] compress_max:" },
        { "[memory]\ndefault_weight = 1.5\n", "bad.conf:2: [memory] default_weight:" },
        { "[daemon]\nsocket_mode = 0999\n", "bad.conf:2: [daemon] socket_mode: '0999' is not "
          "an octal file mode" },
        { "[daemon]\nmax_clients = 0\n", "bad.conf:2: [daemon] max_clients:" },
        { "[daemon]\nlog_level = loud\n", "bad.conf:2: [daemon] log_level: 'loud' is not a "
          "log level" },
        { "[daemon]\nsocket =\n", "bad.conf:2: [daemon] socket: a path is needed" },
        { "[daemon]\nsocket = /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
          "bad.conf:2: [daemon] socket: too long (at most 107 bytes)" },
        { "[governor]\npsi_threshold = -1\n", "bad.conf:2: [governor] psi_threshold:" },
        { "[governor]\npsi_threshold = 1e3\n", "bad.conf:2: [governor] psi_threshold:" },
        { "[governor]\nshrink_step = 0\n", "bad.conf:2: [governor] shrink_step:" },
        { "[governor]\ninterval_ms = 5\n", "bad.conf:2: [governor] interval_ms:" },
        { "[metrics]\nport = 65536\n", "bad.conf:2: [metrics] port:" },
        { "[metrics]\nport = -2\n", "bad.conf:2: [metrics] port:" },
        { "[metrics]\naddress = localhost\n", "bad.conf:2: [metrics] address: 'localhost' "
          "is not an IPv4 or IPv6 address" },
        { "[metrics]\naddress =\n", "bad.conf:2: [metrics] address: '' is not" },
        { "[daemon]\nthis line has no equals sign\n", "bad.conf:2: syntax error" },
        { "[daemon\nsocket = /a\n", "bad.conf:1: syntax error" },
        /* the first error is the one reported, syntax or key */
        { "[daemon]\nbogus = 1\nno equals\n", "bad.conf:2: [daemon] bogus: unknown key" },
        { "[daemon]\nno equals\nbogus = 1\n", "bad.conf:2: syntax error" },
        /* an indented line is a line, not a continuation of the one before */
        { "[daemon]\nsocket = /a\n    junk\n", "bad.conf:3: syntax error" },
    };
    struct tmd_config def;
    assert_int_equal(tmd_config_default(&def), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct tmd_config c = def;
        char err[300] = "";
        const char *path = write_tmp("bad.conf", cases[i].text);
        assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: got \"%s\", want \"%s\"", i, err, cases[i].want);
        assert_null(strchr(err, '\n'));
        assert_same_config(&c, &def);
    }
    /* a line longer than the parser takes */
    char text[2200];
    int n = snprintf(text, sizeof(text), "[daemon]\n\nadmin_group = ");
    memset(text + n, 'g', 1500);
    strcpy(text + n + 1500, "\n");
    struct tmd_config c = def;
    char err[300];
    const char *path = write_tmp("bad.conf", text);
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad.conf:3: line too long"));
    /* the boundary: 198 characters pass (leading blanks not counted), 199 do not */
    n = snprintf(text, sizeof(text), "[daemon]\n    #");
    memset(text + n, 'c', 197);
    strcpy(text + n + 197, "\n");
    c = def;
    path = write_tmp("bad.conf", text);
    if (tmd_config_load(&c, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    strcpy(text + n + 197, "c\n");
    path = write_tmp("bad.conf", text);
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "bad.conf:2: line too long (at most 198 characters)"));
    /* no such file */
    assert_int_equal(tmd_config_load(&c, "/nonexistent/tmemd.conf", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/nonexistent/tmemd.conf: No such file or directory"));
}

/* ------------------------------------------------------------------------
 * Single keys (the command line)
 * ---------------------------------------------------------------------- */
static void set_keys(void **state)
{
    (void)state;
    struct tmd_config c;
    char err[300];
    assert_int_equal(tmd_config_default(&c), 0);
    assert_int_equal(tmd_config_set(&c, "daemon", "socket", "/tmp/s", err, sizeof(err)), 0);
    assert_string_equal(c.socket_path, "/tmp/s");
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "4G", err, sizeof(err)), 0);
    assert_int_equal(c.max_memory, 4 * GiB);
    assert_true(c.max_memory_pct == 0);
    assert_int_equal(tmd_config_set(&c, NULL, "interval_ms", "20", err, sizeof(err)), 0);
    assert_int_equal(c.governor_interval_ms, 20);
    assert_int_equal(tmd_config_set(&c, "governor", "meminfo", "/tmp/m", err, sizeof(err)), 0);
    assert_string_equal(c.meminfo_path, "/tmp/m");
    assert_int_equal(tmd_config_set(&c, "governor", "psi", "/tmp/p", err, sizeof(err)), 0);
    assert_string_equal(c.psi_path, "/tmp/p");

    assert_int_equal(tmd_config_set(&c, "memory", "max_memory", "lots", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "memory.max_memory: 'lots' is not a size"));
    assert_int_equal(c.max_memory, 4 * GiB);
    assert_int_equal(tmd_config_set(&c, "memory", "socket", "/x", err, sizeof(err)), -1);
    assert_string_equal(err, "memory.socket: unknown key");
    assert_int_equal(tmd_config_set(&c, "", "nothing", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "nothing: unknown key");
    assert_int_equal(tmd_config_set(&c, "nowhere", "port", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "nowhere.port: unknown section");
    assert_int_equal(tmd_config_set(&c, "", "port", "-3", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "metrics.port: '-3' is not an integer from -1 to 65535"));
    assert_int_equal(tmd_config_set(&c, "metrics", "per_client", "true", err, sizeof(err)), 0);
    assert_int_equal(c.metrics_per_client, 1);
    assert_int_equal(tmd_config_set(&c, "", "per_client", "off", err, sizeof(err)), 0);
    assert_int_equal(c.metrics_per_client, 0);
    assert_int_equal(tmd_config_set(&c, "", "per_client", "some", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "metrics.per_client: 'some' is not a boolean"));
    /* the metrics address: IPv4 and IPv6 literals, nothing else */
    static const char *const good_addr[] = { "0.0.0.0", "::", "::1", "192.168.1.20",
                                             "fe80::1", "::ffff:127.0.0.1", "127.0.0.1" };
    for (size_t i = 0; i < sizeof(good_addr) / sizeof(good_addr[0]); i++) {
        if (tmd_config_set(&c, "metrics", "address", good_addr[i], err, sizeof(err)) != 0)
            fail_msg("%s: %s", good_addr[i], err);
        assert_string_equal(c.metrics_address, good_addr[i]);
    }
    static const char *const bad_addr[] = { "", "localhost", "[::1]", "127.0.0.1:9464",
                                            "256.0.0.1", "1.2.3", "::1%lo", " 127.0.0.1",
                                            "fe80::1::2",
                                            "0000:0000:0000:0000:0000:ffff:255.255.255.255x" };
    for (size_t i = 0; i < sizeof(bad_addr) / sizeof(bad_addr[0]); i++) {
        assert_int_equal(tmd_config_set(&c, "", "address", bad_addr[i], err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, "metrics.address: '"));
        assert_non_null(strstr(err, "is not an IPv4 or IPv6 address"));
        assert_string_equal(c.metrics_address, "127.0.0.1");    /* unchanged */
    }

    /* persistent shares: every uid's, and those of named uids */
    assert_true(c.uid_pers_max_pct == 50);
    assert_int_equal(tmd_config_set(&c, "memory", "uid_persistent_max", "1G", err,
                                    sizeof(err)), 0);
    assert_int_equal(c.uid_pers_max, 1ull << 30);
    assert_int_equal(c.nuid_share, 0);
    assert_int_equal(tmd_config_set(&c, "memory", "uid_persistent", "1000:2G, 1001:10%", err,
                                    sizeof(err)), 0);
    assert_int_equal(c.nuid_share, 2);
    assert_int_equal(c.uid_share[0].uid, 1000);
    assert_int_equal(c.uid_share[0].bytes, 2ull << 30);
    assert_true(c.uid_share[1].pct == 10);
    const char *bad_share[] = { "1000", "x:1G", "1000:lots", "-1:1G", "1000:150%" };
    for (size_t i = 0; i < sizeof(bad_share) / sizeof(bad_share[0]); i++) {
        assert_int_equal(tmd_config_set(&c, "memory", "uid_persistent", bad_share[i], err,
                                        sizeof(err)), -1);
        assert_non_null(strstr(err, "memory.uid_persistent: '"));
        assert_int_equal(c.nuid_share, 2);                      /* unchanged */
    }
    assert_int_equal(tmd_config_set(&c, "memory", "uid_persistent", "", err, sizeof(err)), 0);
    assert_int_equal(c.nuid_share, 0);

    /* standing shared-pool authorisations */
    assert_int_equal(c.nshared_allow, 0);
    assert_int_equal(tmd_config_set(&c, "memory", "shared_allow",
                                    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:1000, "
                                    "00000000-0000-0000-0000-000000000001:*",
                                    err, sizeof(err)), 0);
    assert_int_equal(c.nshared_allow, 2);
    assert_int_equal(c.shared_allow[0].uid, 1000);
    assert_int_equal(c.shared_allow[1].uid, -1);
    tmem_uuid_t u;
    assert_int_equal(tmem_uuid_parse("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", &u), 0);
    assert_memory_equal(&c.shared_allow[0].uuid, &u, sizeof(u));
    const char *bad[] = { "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",      /* no uid */
                          "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f:1",     /* short uuid */
                          "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:-1",
                          "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:1x" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(tmd_config_set(&c, "memory", "shared_allow", bad[i], err, sizeof(err)), -1);
        assert_non_null(strstr(err, "memory.shared_allow: '"));
        assert_int_equal(c.nshared_allow, 2);                   /* unchanged */
    }
    /* another line adds to the list; an empty one clears it */
    assert_int_equal(tmd_config_set(&c, "memory", "shared_allow",
                                    "00000000-0000-0000-0000-000000000002:7", err, sizeof(err)), 0);
    assert_int_equal(c.nshared_allow, 3);
    assert_int_equal(c.shared_allow[2].uid, 7);
    assert_int_equal(c.shared_allow[0].uid, 1000);
    assert_int_equal(tmd_config_set(&c, "memory", "shared_allow", "", err, sizeof(err)), 0);
    assert_int_equal(c.nshared_allow, 0);
    char many[2000] = "";
    for (int i = 0; i < TMD_SHARED_RULES + 1; i++)
        strcat(many, "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:* ");
    assert_int_equal(tmd_config_set(&c, "memory", "shared_allow", many, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "more than 16 rules"));
    assert_int_equal(c.nshared_allow, 0);
    /* 16 rules over several lines of a file */
    const char *path = write_tmp("rules.conf",
        "[memory]\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:1 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:2\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:3 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:4\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:5 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:6\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:7 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:8\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:9 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:10\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:11 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:12\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:13 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:14\n"
        "shared_allow = 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:15 0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:16\n");
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), 0);
    assert_int_equal(c.nshared_allow, 16);
    assert_int_equal(c.shared_allow[15].uid, 16);
}

/* ------------------------------------------------------------------------
 * Resolution against MemTotal
 * ---------------------------------------------------------------------- */
static void resolve_with(struct tmd_config *c, uint64_t memtotal_kb)
{
    char text[200];
    snprintf(text, sizeof(text), "MemTotal:       %llu kB\nMemFree:     1000 kB\n"
             "MemAvailable:   1000 kB\n", (unsigned long long)memtotal_kb);
    const char *path = write_tmp("meminfo", text);
    assert_int_equal(tmd_config_default(c), 0);
    assert_int_equal(tmd_config_set(c, "", "meminfo", path, text, sizeof(text)), 0);
}

static void resolve(void **state)
{
    (void)state;
    struct tmd_config c;
    char err[300];
    /* 8 GiB: half of it, and a reserve of 10% (above the 256 MiB floor) */
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(c.max_memory, 4 * GiB);
    assert_int_equal(c.engine.max_bytes, 4 * GiB);
    assert_int_equal(c.reserve, (uint64_t)(8.0 * GiB * 0.10));
    /* 1 GiB: 10% is 102 MiB, below the floor of 256 MiB */
    resolve_with(&c, GiB / 1024);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(c.max_memory, 512 * MiB);
    assert_int_equal(c.reserve, 256 * MiB);
    /* 256 MiB: the floor is at most half of MemTotal */
    resolve_with(&c, 256 * MiB / 1024);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(c.max_memory, 128 * MiB);
    assert_int_equal(c.reserve, 128 * MiB);
    /* a fixed reserve is taken as given */
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "reserve", "100M", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "1G", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(c.reserve, 100 * MiB);
    assert_int_equal(c.max_memory, GiB);
    /* percentages of odd totals are whole pages */
    resolve_with(&c, 1000001);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "33.3%", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(c.max_memory % TMEM_PAGE_SIZE, 0);

    /* sanity checks */
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "reserve", "8G", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "governor.reserve:"));
    assert_non_null(strstr(err, "not below MemTotal"));
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "512K", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "memory.max_memory:"));
    assert_non_null(strstr(err, "1 MiB"));
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "0.01%", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "memory.max_memory:"));
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "control_socket", TMW_DEFAULT_SOCKET, err,
                                    sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "daemon.control_socket:"));
    /* a fixed max_memory above MemTotal is refused, one at MemTotal taken */
    resolve_with(&c, 24683772);         /* 23.5 GiB */
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "1000T", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "memory.max_memory: 1000 TiB is more than this host's memory "
                             "(23.5 GiB)");
    resolve_with(&c, 24683772);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "25276182529", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "memory.max_memory: 25276182529 bytes is more than this host's "
                             "memory (25276182528 bytes)");     /* the same in GiB */
    resolve_with(&c, 24683772);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "25276182528", err, sizeof(err)), 0);
    if (tmd_config_resolve(&c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.max_memory, 24683772ull * 1024);
    assert_int_equal(c.memtotal, 24683772ull * 1024);
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "8G", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "9G", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_string_equal(err, "memory.max_memory: 9 GiB is more than this host's memory (8 GiB)");
    /* no MemTotal to resolve against */
    resolve_with(&c, 8 * GiB / 1024);
    assert_int_equal(tmd_config_set(&c, "", "meminfo", "/nonexistent", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "governor.meminfo: no MemTotal in /nonexistent"));
    /* ... which is fine with fixed sizes and the governor off */
    assert_int_equal(tmd_config_set(&c, "", "enabled", "false", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&c, "", "max_memory", "64M", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&c, "", "reserve", "0", err, sizeof(err)), 0);
    if (tmd_config_resolve(&c, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.engine.max_bytes, 64 * MiB);
    assert_int_equal(c.memtotal, 0);    /* unknown: a fixed size is not checked */
}

/* A configuration file (and meminfo) must be a regular file of at most
 * 1 MiB: a FIFO or a device is refused at once, never read. */
static void files_not_regular(void **state)
{
    (void)state;
    struct tmd_config c;
    char err[300], path[300];
    assert_int_equal(tmd_config_default(&c), 0);
    assert_int_equal(tmd_config_load(&c, "/dev/zero", err, sizeof(err)), -1);
    assert_string_equal(err, "/dev/zero: not a regular file (a character device)");
    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/fifo: not a regular file (a FIFO)"));
    assert_int_equal(tmd_config_load(&c, tmpdir, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ": not a regular file (a directory)"));
    assert_int_equal(tmd_config_load(&c, "/nonexistent.conf", err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent.conf: No such file or directory");
    /* meminfo too: no MemTotal in a FIFO or a device */
    assert_int_equal(tmd_config_set(&c, "", "meminfo", path, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "governor.meminfo: no MemTotal in "));
    assert_int_equal(tmd_config_set(&c, "", "meminfo", "/dev/zero", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_resolve(&c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "governor.meminfo: no MemTotal in /dev/zero"));
    unlink(path);

    /* a file of 1 MiB is read (a key, then comments); one byte more is refused */
    snprintf(path, sizeof(path), "%s/big.conf", tmpdir);
    size_t len = 1 << 20;
    char *text = malloc(len);
    assert_non_null(text);
    const char *head = "[memory]\nmax_memory = 7M\n";
    size_t h = strlen(head);
    memcpy(text, head, h);
    for (size_t i = h; i < len; i++)
        text[i] = (i - h) % 100 == 99 || i == len - 1 ? '\n' : (i - h) % 100 == 0 ? '#' : 'x';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    free(text);
    if (tmd_config_load(&c, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(c.max_memory, 7 * MiB);
    f = fopen(path, "a");
    assert_non_null(f);
    fputs("\n", f);
    fclose(f);
    assert_int_equal(tmd_config_load(&c, path, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "/big.conf: larger than a configuration file may be (1 MiB)"));
    unlink(path);
}

static void format_size(void **state)
{
    (void)state;
    static const struct { uint64_t bytes; const char *text; } cases[] = {
        { 0, "0 bytes" }, { 1023, "1023 bytes" }, { 1024, "1 KiB" }, { 1536, "1.5 KiB" },
        { 512 * MiB, "512 MiB" }, { 24683772ull * 1024, "23.5 GiB" },
        { 1000ull << 40, "1000 TiB" }, { UINT64_MAX, "16.0 EiB" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[32];
        tmd_format_size(out, sizeof(out), cases[i].bytes);
        assert_string_equal(out, cases[i].text);
    }
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    static const char *const names[] = { "good.conf", "more.conf", "bad.conf", "meminfo",
                                         "rules.conf", "fifo", "big.conf" };
    char path[300];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sizes_good),
        cmocka_unit_test(sizes_bad),
        cmocka_unit_test(defaults),
        cmocka_unit_test(dist_conf_is_the_default),
        cmocka_unit_test(file_keys),
        cmocka_unit_test(file_errors),
        cmocka_unit_test(set_keys),
        cmocka_unit_test(resolve),
        cmocka_unit_test(format_size),
        cmocka_unit_test(files_not_regular),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
