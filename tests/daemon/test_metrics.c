/* SPDX-License-Identifier: MIT */
/*
 * test_metrics.c - the Prometheus endpoint of an in-process daemon (server,
 * governor off, metrics on an ephemeral port): GET /metrics is well-formed
 * text exposition 0.0.4 (HELP and TYPE once per family before its samples,
 * counters named _total, label values escaped), carries the engine, daemon,
 * governor and (metrics.per_client on) per-client series of connected and
 * parked clients, labelled by name and uid only (two of one name and uid
 * summed in one series); HEAD
 * has no body; other paths are 404 and other methods 405; port 0 is off; a
 * taken port is no endpoint and no failure;
 * metrics.address binds 127.0.0.1, ::1 and :: (both skipped without an
 * IPv6 loopback).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/daemon.h"

static char dir[] = "/tmp/tmem-metrics.XXXXXX";

/* One HTTP/1.0 exchange with addr (an IPv4 or IPv6 literal); returns the
 * whole response (malloc'ed). */
static char *http_at(const char *addr, uint32_t port, const char *request)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    struct sockaddr_in6 sa6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
    bool v6 = inet_pton(AF_INET, addr, &sa.sin_addr) != 1;
    if (v6)
        assert_int_equal(inet_pton(AF_INET6, addr, &sa6.sin6_addr), 1);
    int s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    if (v6)
        assert_int_equal(connect(s, (struct sockaddr *)&sa6, sizeof(sa6)), 0);
    else
        assert_int_equal(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    size_t len = strlen(request);
    assert_int_equal(write(s, request, len), (ssize_t)len);
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - used < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(s, buf + used, cap - used - 1);
        assert_true(n >= 0);
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    close(s);
    return buf;
}

static char *http(uint32_t port, const char *request)
{
    return http_at("127.0.0.1", port, request);
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

/* Parses {k="v",...}: names [a-zA-Z_][a-zA-Z0-9_]*, values with only \\ \" \n
 * escapes.  Returns the text after '}', or NULL. */
static const char *parse_labels(const char *p)
{
    if (*p != '{')
        return p;
    p++;
    while (*p != '}') {
        if (!isalpha((unsigned char)*p) && *p != '_')
            return NULL;
        while (isalnum((unsigned char)*p) || *p == '_')
            p++;
        if (*p++ != '=' || *p++ != '"')
            return NULL;
        while (*p != '"') {
            if (*p == '\0' || *p == '\n')
                return NULL;
            if (*p == '\\') {
                p++;
                if (*p != '\\' && *p != '"' && *p != 'n')
                    return NULL;
            }
            p++;
        }
        p++;
        if (*p == ',')
            p++;
        else if (*p != '}')
            return NULL;
    }
    return p + 1;
}

/* Checks the exposition rules this endpoint promises; returns the number of
 * samples. */
static int check_exposition(const char *text)
{
    char family[128] = "", type[16] = "";
    char seen[300][128];
    int nseen = 0, samples = 0;
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);               /* every line ends with \n */
        char l[1024];
        size_t n = (size_t)(end - line);
        assert_true(n < sizeof(l));
        memcpy(l, line, n);
        l[n] = '\0';
        line = end + 1;
        if (strncmp(l, "# HELP ", 7) == 0) {
            assert_int_equal(sscanf(l + 7, "%127s", family), 1);
            for (int i = 0; i < nseen; i++)
                if (strcmp(seen[i], family) == 0)
                    fail_msg("family %s appears twice", family);
            assert_true(nseen < 300);
            strcpy(seen[nseen++], family);
            type[0] = '\0';
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char name[128];
            assert_int_equal(sscanf(l + 7, "%127s %15s", name, type), 2);
            assert_string_equal(name, family);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
            size_t fl = strlen(family);
            if (strcmp(type, "counter") == 0)
                assert_true(fl > 6 && strcmp(family + fl - 6, "_total") == 0);
            continue;
        }
        assert_true(l[0] != '#' && l[0] != '\0');
        size_t fl = strlen(family);
        if (strncmp(l, family, fl) != 0 || (l[fl] != '{' && l[fl] != ' '))
            fail_msg("sample outside its family %s: %s", family, l);
        assert_true(type[0] != '\0');
        const char *p = parse_labels(l + fl);
        if (!p || *p != ' ')
            fail_msg("bad labels: %s", l);
        char *vend;
        strtod(p + 1, &vend);
        if (vend == p + 1 || *vend != '\0')
            fail_msg("bad value: %s", l);
        samples++;
    }
    return samples;
}

static void metrics_endpoint(void **state)
{
    (void)state;
    static struct tmd d;
    char err[300], path[300];
    assert_int_equal(tmd_config_default(&d.cfg), 0);
    snprintf(path, sizeof(path), "%s/tmemd.sock", dir);
    assert_int_equal(tmd_config_set(&d.cfg, "", "socket", path, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/control.sock", dir);
    assert_int_equal(tmd_config_set(&d.cfg, "", "control_socket", path, err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "enabled", "false", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "max_memory", "32M", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "port", "-1", err, sizeof(err)), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "per_client", "true", err, sizeof(err)), 0);
    if (tmd_config_resolve(&d.cfg, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    pthread_mutex_init(&d.conns_lock, NULL);
    d.start_ms = tmd_now_ms();
    d.engine = tmem_open(&d.cfg.engine);
    assert_non_null(d.engine);
    assert_int_equal(tmd_control_init(&d), 0);
    assert_int_equal(tmd_server_start(&d), 0);
    assert_int_equal(tmd_governor_start(&d), 0);
    assert_string_equal(d.cfg.metrics_address, "127.0.0.1");     /* the default */
    assert_int_equal(tmd_metrics_start(&d), 0);
    uint32_t port = tmd_metrics_port(&d);
    assert_true(port > 0);

    /* a connected client that has put a page, and a parked one whose name
     * needs escaping */
    tmem_client_t *c = tmem_connect(d.cfg.socket_path, "web-cache");
    assert_non_null(c);
    int pool = tmem_new_pool(c, (tmem_uuid_t){ 0, 0 }, 0);
    assert_true(pool >= 0);
    static uint8_t page[TMEM_PAGE_SIZE];
    memset(page, 0x42, sizeof(page));
    assert_int_equal(tmem_put_page(c, (uint32_t)pool, (tmem_oid_t){ { 7, 0, 0 } }, 0, page), 0);
    /* a second client of the same name and uid: one series with the first */
    tmem_client_t *c2 = tmem_connect(d.cfg.socket_path, "web-cache");
    assert_non_null(c2);
    int pool2 = tmem_new_pool(c2, (tmem_uuid_t){ 0, 0 }, 0);
    assert_true(pool2 >= 0);
    memset(page, 0x43, sizeof(page));
    assert_int_equal(tmem_put_page(c2, (uint32_t)pool2, (tmem_oid_t){ { 8, 0, 0 } }, 0, page),
                     0);
    tmem_client_t *p = tmem_client_open(d.engine, "we\"ird\\name");
    assert_non_null(p);
    assert_int_equal(tmd_park_client(&d, p, 1000, 1000, "we\"ird\\name"), 0);

    char *r = http(port, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    assert_true(strncmp(r, "HTTP/1.0 200", 12) == 0 || strncmp(r, "HTTP/1.1 200", 12) == 0);
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    const char *body = body_of(r);
    int samples = check_exposition(body);
    assert_true(samples > 80);
    static const char *const want[] = {
        "# TYPE tmem_puts_total counter\n",
        "# TYPE tmem_held_bytes gauge\n",
        "tmem_pages{kind=\"ephemeral\"} 2\n",
        "tmem_puts_refused_total{reason=\"nomem\"} 0\n",
        "tmem_limit_bytes 33554432\n",
        "tmemd_governor_limit_bytes 33554432\n",
        "tmemd_governor_max_bytes 33554432\n",
        "tmemd_governor_enabled 0\n",
        "tmemd_connections 2\n",
        "tmemd_parked_clients 1\n",
        "tmemd_governor_psi_some_avg10 0.00\n",
        "tmemd_frozen_clients 0\n",
        "# TYPE tmem_build_info gauge\n",
        "# TYPE tmemd_uptime_seconds gauge\n",
        "tmemd_lending 0\n",                 /* these daemon parts lend nothing */
        "tmemd_lent_bytes{kind=\"persistent\"} 0\n",
        "tmemd_lend_units_total{event=\"granted\"} 0\n",
        "# TYPE tmem_client_lent_bytes gauge\n",
        "# TYPE tmem_client_instances gauge\n",
        "\ntmem_client_instances{name=\"we\\\"ird\\\\name\",uid=\"1000\"} 1\n",
        "\ntmem_client_parked{name=\"we\\\"ird\\\\name\",uid=\"1000\"} 1\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(body, want[i]))
            fail_msg("missing: %s", want[i]);
    /* the two web-cache clients: one series, summed */
    static const char *const web[] = {
        "tmem_client_instances{name=\"web-cache\",uid=\"%u\"} 2\n",
        "tmem_client_pages{name=\"web-cache\",uid=\"%u\",kind=\"ephemeral\"} 2\n",
        "tmem_client_puts_total{name=\"web-cache\",uid=\"%u\"} 2\n",
        "tmem_client_pools{name=\"web-cache\",uid=\"%u\"} 2\n",
        "tmem_client_parked{name=\"web-cache\",uid=\"%u\"} 0\n",
        "tmem_client_weight{name=\"web-cache\",uid=\"%u\"} 100\n",     /* not summed */
    };
    for (size_t i = 0; i < sizeof(web) / sizeof(web[0]); i++) {
        char line[200];
        line[0] = '\n';
        snprintf(line + 1, sizeof(line) - 1, web[i], (unsigned)getuid());
        if (!strstr(body, line))
            fail_msg("missing: %s", line + 1);
    }
    /* bounded labels: no pid, no client id, no gid */
    assert_null(strstr(body, "pid=\""));
    assert_null(strstr(body, "client=\""));
    assert_null(strstr(body, "gid=\""));
    char build[80];
    snprintf(build, sizeof(build), "\ntmem_build_info{version=\"%d.%d.%d\"} 1\n",
             TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR, TMEM_VERSION_PATCH);
    if (!strstr(body, build))
        fail_msg("missing: %s", build + 1);
    free(r);

    /* HEAD: the headers, no body */
    r = http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(r, " 200 "));
    assert_string_equal(body_of(r), "");
    free(r);
    /* other paths, other methods */
    r = http(port, "GET / HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(r, " 404 "));
    free(r);
    r = http(port, "GET /metrics/x HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(r, " 404 "));
    free(r);
    r = http(port, "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc");
    assert_non_null(strstr(r, " 405 "));
    assert_non_null(strstr(r, "Allow: GET, HEAD\r\n"));
    free(r);
    r = http(port, "DELETE /metrics HTTP/1.0\r\n\r\n");
    assert_non_null(strstr(r, " 405 "));
    free(r);

    tmem_client_close(c);
    tmem_client_close(c2);
    tmd_metrics_stop(&d);
    assert_int_equal(tmd_metrics_port(&d), 0);
    tmd_metrics_stop(&d);               /* twice is harmless */
    atomic_store(&d.stopping, 1);
    tmd_governor_stop(&d);
    tmd_server_stop(&d);
    assert_int_equal(tmem_check(d.engine), 0);
    tmem_close(d.engine);
}

static void metrics_off(void **state)
{
    (void)state;
    static struct tmd d;
    assert_int_equal(tmd_config_default(&d.cfg), 0);
    d.cfg.metrics_port = 0;
    assert_int_equal(tmd_metrics_start(&d), 0);
    assert_null(d.metrics);
    assert_int_equal(tmd_metrics_port(&d), 0);
    tmd_metrics_stop(&d);
}

/* Whether this host has an IPv6 loopback to bind. */
static bool have_ipv6_loopback(void)
{
    int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return false;
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    bool ok = bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(s);
    return ok;
}

/* The endpoint alone (no engine: only paths that render nothing are asked)
 * on metrics.address; each of want answers, and the port is a free one. */
static void serve_on(const char *address, const char *const *want, size_t nwant)
{
    static struct tmd d;
    memset(&d, 0, sizeof(d));
    char err[300];
    assert_int_equal(tmd_config_default(&d.cfg), 0);
    assert_int_equal(tmd_config_set(&d.cfg, "", "port", "-1", err, sizeof(err)), 0);
    if (tmd_config_set(&d.cfg, "", "address", address, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    assert_int_equal(tmd_metrics_start(&d), 0);
    uint32_t port = tmd_metrics_port(&d);
    assert_true(port > 0);
    for (size_t i = 0; i < nwant; i++) {
        char *r = http_at(want[i], port, "GET / HTTP/1.0\r\n\r\n");
        if (!strstr(r, " 404 "))
            fail_msg("%s via %s: %s", address, want[i], r);
        free(r);
    }
    tmd_metrics_stop(&d);
    assert_int_equal(tmd_metrics_port(&d), 0);
}

/* A port another socket holds: a warning, no endpoint, and no failure (the
 * daemon goes on serving its clients). */
static void metrics_port_taken(void **state)
{
    (void)state;
    int hold = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(hold >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(hold, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(hold, 1), 0);
    assert_int_equal(getsockname(hold, (struct sockaddr *)&sa, &len), 0);
    static struct tmd d;
    memset(&d, 0, sizeof(d));
    assert_int_equal(tmd_config_default(&d.cfg), 0);
    d.cfg.metrics_port = ntohs(sa.sin_port);
    assert_int_equal(tmd_metrics_start(&d), 0);
    assert_null(d.metrics);
    assert_int_equal(tmd_metrics_port(&d), 0);
    tmd_metrics_stop(&d);
    close(hold);
}

static void metrics_address_ipv4(void **state)
{
    (void)state;
    static const char *const want[] = { "127.0.0.1" };
    serve_on("127.0.0.1", want, 1);
}

static void metrics_address_ipv6(void **state)
{
    (void)state;
    if (!have_ipv6_loopback()) {
        print_message("no IPv6 loopback here: skipped\n");
        skip();
    }
    static const char *const want[] = { "::1" };
    serve_on("::1", want, 1);
    /* "::": every address, IPv4 too (dual stack) */
    static const char *const both[] = { "::1", "127.0.0.1" };
    serve_on("::", both, 2);
}

static int setup(void **state)
{
    (void)state;
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_endpoint),
        cmocka_unit_test(metrics_off),
        cmocka_unit_test(metrics_port_taken),
        cmocka_unit_test(metrics_address_ipv4),
        cmocka_unit_test(metrics_address_ipv6),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
