/* SPDX-License-Identifier: MIT */
/*
 * test_exposure.c - what one tenant of tmemd can learn about the others, and
 * how loud it can make the daemon, with a real tmemd and real client
 * processes of two uids (TD_UID_A, TD_UID_B; it needs root to become them,
 * and is skipped otherwise):
 *
 *   - the metrics endpoint, fetched by uid B while a client of each uid
 *     holds pages: by default it names no client (no uid, name, gid or pid
 *     labels, no per-client series; uid A's uid, name and pid appear nowhere
 *     in it) and counts both in its totals; with metrics.per_client=true an
 *     administrator gets series per client name and uid (never a pid, gid
 *     or client id);
 *   - a flood of at least 20,000 malformed HELLOs from uid A (about 2 s on
 *     an idle machine): the daemon's log grows by at most 200 lines and says
 *     how many it suppressed, and meanwhile a client of uid B connects, puts
 *     and gets a page within 2 s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "td_harness.h"
#include "tmem_test.h"

#define NAME_A "tenant-a-7f3e"
#define NAME_B "tenant-b-91c4"
#define NPAGES 16
#define FLOOD  20000u

static const tmem_uuid_t NOUUID = { 0, 0 };
static const tmem_oid_t OID = { { 13, 0, 0 } };

/* One byte from fd within ms: 1, or 0 (end, error or time out). */
static int read_byte(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char b;
    return poll(&p, 1, ms) == 1 && read(fd, &b, 1) == 1;
}

/* Everything from fd until its end (malloc'ed, NUL-terminated). */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - used < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        if (n == 0)
            break;
        used += (size_t)n;
    }
    buf[used] = '\0';
    if (len)
        *len = used;
    return buf;
}

/* Does the number word (digits) occur in text as a whole number? */
static bool has_number(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || !isdigit((unsigned char)p[-1])) && !isdigit((unsigned char)p[n]))
            return true;
    return false;
}

/* ------------------------------------------------------------------------
 * Tenants: real processes of other uids
 * ---------------------------------------------------------------------- */
struct tenant {
    const char *sock, *name;
    int ready_w;        /* one byte once connected, its pages put */
    int go_r, go_w;     /* its end (every writer closed): check the pages, leave */
};

static void page_of(uint8_t *page, const char *name, uint32_t i)
{
    tt_fill(page, TT_RANDOM, (uint64_t)name[7] * 1000 + i);
}

/* Exit codes: 0 good; 10-14 the step that failed. */
static int tenant_main(void *arg)
{
    struct tenant *t = arg;
    close(t->go_w);
    tmem_client_t *c = tmem_connect(t->sock, t->name);
    if (!c)
        return 10;
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    if (pool < 0)
        return 11;
    static uint8_t page[PG], back[PG];
    for (uint32_t i = 0; i < NPAGES; i++) {
        page_of(page, t->name, i);
        if (tmem_put_page(c, (uint32_t)pool, OID, i, page) != 0)
            return 12;
    }
    if (write(t->ready_w, "r", 1) != 1)
        return 13;
    char b;
    while (read(t->go_r, &b, 1) > 0)
        ;
    for (uint32_t i = 0; i < NPAGES; i++) {
        page_of(page, t->name, i);
        if (tmem_get_page(c, (uint32_t)pool, OID, i, back) != 0 || memcmp(page, back, PG))
            return 14;
    }
    tmem_client_close(c);
    return 0;
}

/* GET /metrics as a process of another uid; the response goes to out_w. */
struct scrape {
    uint16_t port;
    int out_w, go_w;
};

static int scrape_main(void *arg)
{
    struct scrape *s = arg;
    close(s->go_w);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(s->port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        return 20;
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1)
        return 21;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        if (write(s->out_w, buf, (size_t)n) != n)
            return 22;
    close(fd);
    return n == 0 ? 0 : 23;
}

/* A loopback port nobody listens on now. */
static uint16_t free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(s >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(sa);
    assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &len), 0);
    close(s);
    return ntohs(sa.sin_port);
}

/* ------------------------------------------------------------------------
 * The metrics endpoint
 * ---------------------------------------------------------------------- */
/* A daemon with metrics on a free port (and per_client as asked), a client
 * of uid A and one of uid B holding pages; uid B fetches /metrics.  The
 * response (malloc'ed) and the tenants' pids. */
static char *metrics_as_b(bool per_client, pid_t *pid_a, pid_t *pid_b)
{
    td_t D;
    uint16_t port = 0;
    int started = -1;
    for (int attempt = 0; attempt < 3 && started != 0; attempt++) {
        port = free_port();
        char set_port[40];
        snprintf(set_port, sizeof(set_port), "metrics.port=%u", port);
        const char *args[5] = { "--set", set_port };
        if (per_client) {               /* else the default: off */
            args[2] = "--set";
            args[3] = "metrics.per_client=true";
        }
        started = td_start(&D, args);
        /* a taken port is no failure to start, only no endpoint: try again */
        struct tmw_ctl_stats st;
        if (started == 0 && (tmc_stats(D.ctl, &st) != 0 || st.metrics_port != port)) {
            assert_int_equal(td_stop(&D), 0);
            started = -1;
        }
    }
    assert_int_equal(started, 0);
    assert_int_equal(td_open_to_all(&D), 0);

    int go[2];
    assert_int_equal(pipe(go), 0);
    struct tenant t[2] = {
        { .sock = D.sock, .name = NAME_A, .go_r = go[0], .go_w = go[1] },
        { .sock = D.sock, .name = NAME_B, .go_r = go[0], .go_w = go[1] },
    };
    int ready[2][2];
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pipe(ready[i]), 0);
        t[i].ready_w = ready[i][1];
        pid[i] = td_spawn_as(i ? TD_UID_B : TD_UID_A, tenant_main, &t[i]);
        assert_true(pid[i] > 0);
        close(ready[i][1]);
    }
    for (int i = 0; i < 2; i++) {
        if (!read_byte(ready[i][0], 30000))
            fail_msg("tenant %s did not connect (exit %d)", t[i].name, td_wait_child(pid[i]));
        close(ready[i][0]);
    }
    assert_int_equal(td_wait_connections(&D, 2), 0);

    int out[2];
    assert_int_equal(pipe(out), 0);
    struct scrape s = { .port = port, .out_w = out[1], .go_w = go[1] };
    pid_t sp = td_spawn_as(TD_UID_B, scrape_main, &s);
    assert_true(sp > 0);
    close(out[1]);
    char *body = read_all(out[0], NULL);
    close(out[0]);
    assert_int_equal(td_wait_child(sp), 0);

    /* the tenants check their pages and leave */
    close(go[1]);
    close(go[0]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(td_wait_child(pid[i]), 0);
    assert_int_equal(td_stop(&D), 0);
    *pid_a = pid[0];
    *pid_b = pid[1];
    return body;
}

static void metrics_show_no_tenant(void **state)
{
    (void)state;
    pid_t pa, pb;
    char *r = metrics_as_b(false, &pa, &pb);
    if (strncmp(r, "HTTP/1.0 200", 12) != 0 && strncmp(r, "HTTP/1.1 200", 12) != 0)
        fail_msg("not a 200: %.200s", r);
    char pid_a[16], pid_b[16], uid_a[16], uid_b[16];
    snprintf(pid_a, sizeof(pid_a), "%d", (int)pa);
    snprintf(pid_b, sizeof(pid_b), "%d", (int)pb);
    snprintf(uid_a, sizeof(uid_a), "%u", TD_UID_A);
    snprintf(uid_b, sizeof(uid_b), "%u", TD_UID_B);
    /* nothing of uid A's client: its uid (also its gid), its name, its pid */
    if (has_number(r, uid_a))
        fail_msg("uid A (%s) in the metrics:\n%s", uid_a, r);
    if (strstr(r, NAME_A))
        fail_msg("uid A's client name in the metrics:\n%s", r);
    if (has_number(r, pid_a))
        fail_msg("uid A's client pid (%s) in the metrics:\n%s", pid_a, r);
    /* nor of any client: no identity labels, no per-client series */
    assert_false(has_number(r, uid_b));
    assert_null(strstr(r, NAME_B));
    assert_false(has_number(r, pid_b));
    assert_null(strstr(r, "uid=\""));
    assert_null(strstr(r, "gid=\""));
    assert_null(strstr(r, "pid=\""));
    assert_null(strstr(r, "name=\""));
    assert_null(strstr(r, "client=\""));
    assert_null(strstr(r, "tmem_client_"));
    /* the totals count both */
    assert_non_null(strstr(r, "\ntmemd_connections 2\n"));
    assert_non_null(strstr(r, "\ntmemd_frozen_clients 0\n"));
    free(r);
}

static void metrics_per_client_on_request(void **state)
{
    (void)state;
    pid_t pa, pb;
    char *r = metrics_as_b(true, &pa, &pb);
    char want[160];
    const char *names[2] = { NAME_A, NAME_B };
    unsigned uids[2] = { TD_UID_A, TD_UID_B };
    for (int i = 0; i < 2; i++) {
        snprintf(want, sizeof(want), "\ntmem_client_instances{name=\"%s\",uid=\"%u\"} 1\n",
                 names[i], uids[i]);
        if (!strstr(r, want))
            fail_msg("missing %s in:\n%s", want + 1, r);
    }
    assert_non_null(strstr(r, "# TYPE tmem_client_puts_total counter\n"));
    /* bounded labels: a client's name and uid, never its pid or client id */
    assert_null(strstr(r, "pid=\""));
    assert_null(strstr(r, "gid=\""));
    assert_null(strstr(r, "client=\""));
    (void)pa;
    (void)pb;
    free(r);
}

/* ------------------------------------------------------------------------
 * A flood of malformed HELLOs
 * ---------------------------------------------------------------------- */
struct flood {
    const char *sock;
    int started_w;      /* one byte after the first 1000 */
    int count_w;        /* how many were sent, at the end */
    int stop_r;         /* its end: stop once FLOOD were sent (at most 15 s in all) */
    int stop_w;         /* the parent's: closed here */
};

static int flood_main(void *arg)
{
    struct flood *f = arg;
    close(f->stop_w);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->sock);
    uint64_t t0 = td_now_ms();
    uint32_t sent = 0;
    bool stop = false;
    while (td_now_ms() - t0 < 15000) {         /* about 2 s on an idle machine */
        if (sent % 256 == 0 && !stop) {
            struct pollfd p = { .fd = f->stop_r, .events = POLLIN };
            stop = poll(&p, 1, 0) == 1;        /* POLLHUP: the parent closed it */
        }
        if (stop && sent >= FLOOD)
            break;
        int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        if (s < 0)
            return 30;
        if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            send(s, "not a HELLO", 11, MSG_NOSIGNAL) == 11)
            sent++;
        close(s);
        if (sent == 1000 && write(f->started_w, "s", 1) != 1)
            return 31;
    }
    if (write(f->count_w, &sent, sizeof(sent)) != sizeof(sent))
        return 32;
    return 0;
}

/* A client of uid B: connects, puts and gets a page; writes the time it
 * took (ms) and its connection attempts to out_w.  A refusal (-EAGAIN: the
 * daemon's bound on handshakes under way, which the flood can fill) is
 * tried again, as a client would, within the 2 s. */
struct quick {
    const char *sock;
    int out_w;
};

static int quick_main(void *arg)
{
    struct quick *q = arg;
    uint64_t t0 = td_now_ms(), r[2] = { 0, 0 };
    tmem_client_t *c = NULL;
    while (!c) {
        r[1]++;
        c = tmem_connect(q->sock, "quick-b");
        if (!c && (errno != EAGAIN || td_now_ms() - t0 > 2000))
            return 40;
        if (!c)
            usleep(10000);
    }
    int pool = tmem_new_pool(c, NOUUID, TMEM_POOL_PERSIST);
    static uint8_t page[PG], back[PG];
    tt_fill(page, TT_RANDOM, 99);
    if (pool < 0 || tmem_put_page(c, (uint32_t)pool, OID, 0, page) != 0)
        return 41;
    if (tmem_get_page(c, (uint32_t)pool, OID, 0, back) != 0 || memcmp(page, back, PG) != 0)
        return 42;
    r[0] = td_now_ms() - t0;
    tmem_client_close(c);
    return write(q->out_w, r, sizeof(r)) == sizeof(r) ? 0 : 43;
}

static char *daemon_log(const td_t *d)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/tmemd.log", d->dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    char *text = read_all(fileno(f), NULL);
    fclose(f);
    return text;
}

static size_t count_lines(const char *text)
{
    size_t n = 0;
    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static void hello_flood_is_quiet(void **state)
{
    (void)state;
    td_t D;
    assert_int_equal(td_start(&D, NULL), 0);
    assert_int_equal(td_open_to_all(&D), 0);
    bool logged = !getenv("TD_VERBOSE");        /* else the log is on stderr */
    char *before = daemon_log(&D);
    size_t lines0 = count_lines(before);
    size_t off0 = strlen(before);
    free(before);
    struct tmw_ctl_stats s0;
    assert_int_equal(tmc_stats(D.ctl, &s0), 0);

    int started[2], count[2], stop[2];
    assert_int_equal(pipe(started), 0);
    assert_int_equal(pipe(count), 0);
    assert_int_equal(pipe(stop), 0);
    struct flood f = { .sock = D.sock, .started_w = started[1], .count_w = count[1],
                       .stop_r = stop[0], .stop_w = stop[1] };
    uint64_t t0 = td_now_ms();
    pid_t fp = td_spawn_as(TD_UID_A, flood_main, &f);
    assert_true(fp > 0);
    close(started[1]);
    close(count[1]);
    close(stop[0]);
    if (!read_byte(started[0], 30000))
        fail_msg("the flood did not start (exit %d)", td_wait_child(fp));

    /* meanwhile, uid B */
    int out[2];
    assert_int_equal(pipe(out), 0);
    struct quick q = { .sock = D.sock, .out_w = out[1] };
    pid_t qp = td_spawn_as(TD_UID_B, quick_main, &q);
    assert_true(qp > 0);
    close(out[1]);
    uint64_t r[2] = { UINT64_MAX, 0 }, took;
    size_t got = 0;
    char *res = read_all(out[0], &got);
    close(out[0]);
    if (got == sizeof(r))
        memcpy(r, res, sizeof(r));
    free(res);
    took = r[0];
    int qrc = td_wait_child(qp);

    close(stop[1]);
    uint32_t sent = 0;
    char *cnt = read_all(count[0], &got);
    if (got == sizeof(sent))
        memcpy(&sent, cnt, sizeof(sent));
    free(cnt);
    close(count[0]);
    close(started[0]);
    assert_int_equal(td_wait_child(fp), 0);
    uint64_t flood_ms = td_now_ms() - t0;
    struct tmw_ctl_stats s1;
    assert_int_equal(tmc_stats(D.ctl, &s1), 0);
    /* what the daemon read: a line each before the rate limit */
    uint64_t bad = s1.bad_msgs - s0.bad_msgs, refused = s1.refused_conn - s0.refused_conn;
    print_message("flood: %u malformed HELLOs sent in %llu ms, %llu read as malformed and %llu "
                  "refused by the daemon; uid B's connect (%llu attempts), put and get took "
                  "%llu ms\n", sent, (unsigned long long)flood_ms, (unsigned long long)bad,
                  (unsigned long long)refused, (unsigned long long)r[1],
                  (unsigned long long)took);

    assert_int_equal(qrc, 0);
    assert_true(took <= 2000);
    assert_true(sent >= FLOOD);
    assert_true(bad + refused >= FLOOD / 2);
    if (logged) {
        char *log = daemon_log(&D);
        size_t grew = count_lines(log) - lines0;
        const char *news = log + off0;
        print_message("the daemon's log grew by %zu lines\n", grew);
        if (grew > 200 || !strstr(news, "similar messages suppressed") ||
            !strstr(news, "malformed HELLO") || !strstr(news, "\"quick-b\") connected"))
            fail_msg("the log grew by %zu lines (at most 200, with a suppressed count, "
                     "and uid B's client):\n%.6000s", grew, news);
        free(log);
    }
    assert_int_equal(td_stop(&D), 0);
}

int main(void)
{
    if (!td_can_switch_uid()) {
        printf("test_exposure: skipped (tenants of other uids need root)\n");
        return TD_SKIP;
    }
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_show_no_tenant),
        cmocka_unit_test(metrics_per_client_on_request),
        cmocka_unit_test(hello_flood_is_quiet),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
