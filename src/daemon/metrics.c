/* SPDX-License-Identifier: MIT */
/*
 * metrics.c - Prometheus text exposition (format 0.0.4) on
 * http://ADDRESS:PORT/metrics (metrics.address, 127.0.0.1 by default),
 * served by libmicrohttpd's own thread.
 *
 * Every scrape takes a fresh snapshot (tmd_stats_snapshot,
 * tmd_clients_snapshot) and renders it: engine totals (tmem_*), the
 * daemon's counters and the governor (tmemd_*), and, only when the
 * administrator chose so (metrics.per_client), per-client series
 * (tmem_client_*{name="...",uid="..."}, clients of one name and uid summed:
 * no pid or client id, which would make a series of every process that
 * ever connected): the endpoint answers every local user, and those series would
 * show each tenant to the others (and, on an address that is not loopback,
 * to anyone who can reach it: the daemon warns).  docs/configuration.md lists every
 * metric.  Only GET and HEAD of /metrics are served: other paths are
 * 404, other methods 405.  Port 0 in the configuration: no endpoint; -1: any
 * free port (tests read it back with tmd_metrics_port).  A port that is
 * taken (or an address the host does not have) is a warning, not a fault:
 * the daemon serves its clients without the endpoint.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/daemon.h"

struct tmd_metrics {
    struct MHD_Daemon *mhd;
    uint16_t port;
};

/* ------------------------------------------------------------------------
 * A growing text buffer
 * ---------------------------------------------------------------------- */
struct text {
    char *p;
    size_t len, cap;
    bool oom;
};

static void add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(struct text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->oom = true;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = true;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* A label value, escaped as the format asks: backslash, double quote and
 * line feed. */
static void add_escaped(struct text *t, const char *s, size_t max)
{
    for (size_t i = 0; i < max && s[i]; i++) {
        char c = s[i];
        if (c == '\\')
            add(t, "\\\\");
        else if (c == '"')
            add(t, "\\\"");
        else if (c == '\n')
            add(t, "\\n");
        else
            add(t, "%c", c);
    }
}

/* ------------------------------------------------------------------------
 * The metrics, as tables over the snapshot structures.  Rows of one family
 * are consecutive; the first row of a family carries HELP and TYPE.
 * ---------------------------------------------------------------------- */
enum width { U64, U32, S32, NS };      /* NS: a uint64_t of nanoseconds, shown in seconds */

struct row {
    const char *name;
    char type;                  /* 'c' counter, 'g' gauge */
    const char *help;           /* NULL: same family as the row before */
    size_t off;
    enum width w;
    const char *label;          /* extra label, e.g. kind="ephemeral"; NULL none */
    char agg;                   /* per client: clients of one name and uid are summed,
                                   or 'm': the largest */
};

#define S(m) offsetof(struct tmw_ctl_stats, m)
#define E(m) offsetof(struct tmw_ctl_stats, engine.m)

static const struct row stats_rows[] = {
    /* the engine: what it holds */
    { "tmem_pages", 'g', "Pages held, by pool kind.", E(ephemeral_pages), U64,
      "kind=\"ephemeral\"" },
    { "tmem_pages", 'g', NULL, E(persistent_pages), U64, "kind=\"persistent\"" },
    { "tmem_held_bytes", 'g', "Memory the engine holds: its frames (in use and free) and "
      "metadata.", E(bytes_held), U64, NULL },
    { "tmem_limit_bytes", 'g', "The engine's current limit (set by the governor).",
      E(max_bytes), U64, NULL },
    { "tmem_frames_held", 'g', "Resident 4 KiB frames, in use and free.", E(frames_held), U64,
      NULL },
    { "tmem_frames_free", 'g', "Resident frames on the free list.", E(frames_free), U64, NULL },
    { "tmem_frames_whole", 'g', "Frames holding one uncompressed page.", E(frames_whole), U64,
      NULL },
    { "tmem_frames_compressed", 'g', "Frames holding compressed fragments.", E(frames_zalloc),
      U64, NULL },
    { "tmem_frames_lent", 'g', "Frames handed out by the relinquish API.", E(frames_lent), U64,
      NULL },
    { "tmem_metadata_bytes", 'g', "Metadata: descriptors, objects, maps, pools, clients.",
      E(meta_bytes), U64, NULL },
    { "tmem_compressed_data_bytes", 'g', "Bytes of compressed fragments, as allocated.",
      E(zalloc_bytes_used), U64, NULL },
    { "tmem_stored_pages", 'g', "Pages held, by how they are stored.", E(pages_whole), U64,
      "form=\"whole\"" },
    { "tmem_stored_pages", 'g', NULL, E(pages_compressed), U64, "form=\"compressed\"" },
    { "tmem_stored_pages", 'g', NULL, E(pages_same_filled), U64, "form=\"same_filled\"" },
    { "tmem_deduped_pages", 'g', "Pages stored as a reference to an identical page's data.",
      E(pages_deduped), U64, NULL },
    { "tmem_dedup_bodies", 'g', "Distinct data in the dedup index.", E(bodies), U64, NULL },
    { "tmem_clients", 'g', "Engine clients open (connected and parked).", E(clients), U64,
      NULL },
    { "tmem_pools", 'g', "Pools (a shared pool counts once).", E(pools), U64, NULL },
    { "tmem_objects", 'g', "Objects.", E(objects), U64, NULL },
    /* the engine: outcomes */
    { "tmem_puts_total", 'c', "Puts.", E(puts), U64, NULL },
    { "tmem_puts_stored_total", 'c', "Puts that stored their page.", E(puts_ok), U64, NULL },
    { "tmem_puts_refused_total", 'c', "Puts refused, by reason.", E(refused_nomem), U64,
      "reason=\"nomem\"" },
    { "tmem_puts_refused_total", 'c', NULL, E(refused_quota), U64, "reason=\"quota\"" },
    { "tmem_puts_refused_total", 'c', NULL, E(refused_frozen), U64, "reason=\"frozen\"" },
    { "tmem_alloc_failed_total", 'c', "Internal allocations that failed (refused puts).",
      E(alloc_failed), U64, NULL },
    { "tmem_gets_total", 'c', "Gets.", E(gets), U64, NULL },
    { "tmem_gets_hit_total", 'c', "Gets that found their page.", E(gets_hit), U64, NULL },
    { "tmem_flushes_total", 'c', "Page flushes.", E(flushes), U64, NULL },
    { "tmem_flush_objects_total", 'c', "Object flushes.", E(flush_objects), U64, NULL },
    { "tmem_flushed_pages_total", 'c', "Pages removed by flushes.", E(flushed_pages), U64,
      NULL },
    { "tmem_duplicate_puts_total", 'c', "Puts over a page already held, by outcome.",
      E(dup_puts_replaced), U64, "outcome=\"replaced\"" },
    { "tmem_duplicate_puts_total", 'c', NULL, E(dup_puts_flushed), U64, "outcome=\"flushed\"" },
    { "tmem_compress_poor_total", 'c', "Pages that did not compress below compress_max.",
      E(compress_poor), U64, NULL },
    { "tmem_dedup_hits_total", 'c', "Puts that found an identical page.", E(dedup_hits), U64,
      NULL },
    { "tmem_dedup_skipped_total", 'c',
      "Puts not looked up for duplicates (sparse dedup: their store had found none).",
      E(dedup_skipped), U64, NULL },
    { "tmem_evictions_total", 'c', "Ephemeral pages evicted.", E(evictions), U64, NULL },
    { "tmem_evict_attempts_total", 'c', "Eviction attempts.", E(evict_attempts), U64, NULL },
    { "tmem_evict_skipped_busy_total", 'c', "Eviction candidates skipped because busy.",
      E(evict_skipped_busy), U64, NULL },
    { "tmem_relinquished_frames_total", 'c', "Frames given back to the OS.",
      E(relinquished_frames), U64, NULL },
    { "tmem_lent_frames_total", 'c', "Frames handed out by the relinquish API.",
      E(lent_frames), U64, NULL },
    { "tmem_bad_calls_total", 'c', "Calls rejected, by reason.", E(bad_pool), U64,
      "reason=\"pool\"" },
    { "tmem_bad_calls_total", 'c', NULL, E(bad_args), U64, "reason=\"args\"" },
    { "tmem_bad_calls_total", 'c', NULL, E(bad_closed), U64, "reason=\"closed\"" },
    /* the daemon */
    { "tmemd_connections", 'g', "Clients connected now.", S(connections), U64, NULL },
    { "tmemd_parked_clients", 'g', "Restored clients waiting for their owner.", S(parked),
      U64, NULL },
    { "tmemd_connections_accepted_total", 'c', "Client connections accepted.", S(accepted),
      U64, NULL },
    { "tmemd_connections_refused_total", 'c', "Client connections refused.", S(refused_conn),
      U64, NULL },
    { "tmemd_bad_messages_total", 'c', "Malformed socket messages.", S(bad_msgs), U64, NULL },
    { "tmemd_requests_total", 'c', "Window requests served.", S(requests), U64, NULL },
    { "tmemd_bad_requests_total", 'c', "Malformed window requests.", S(bad_requests), U64,
      NULL },
    { "tmemd_worker_sleeps_total", 'c', "Times a worker went to sleep.", S(worker_sleeps), U64,
      NULL },
    { "tmemd_worker_wakeups_total", 'c', "Times a worker was woken by a doorbell, by "
      "outcome.", S(worker_wakeups), U64, "outcome=\"any\"" },
    { "tmemd_worker_wakeups_total", 'c', NULL, S(worker_empty_wakeups), U64,
      "outcome=\"empty\"" },
    { "tmemd_worker_cpu_seconds_total", 'c', "CPU time of the workers.", S(worker_cpu_ns),
      NS, NULL },
    { "tmemd_worker_throttles_total", 'c', "Times a client's worker was throttled for empty "
      "wake-ups.", S(worker_throttles), U64, NULL },
    { "tmemd_throttled_clients", 'g', "Clients throttled now.", S(throttled), U64, NULL },
    { "tmemd_control_refused_total", 'c', "Control connections refused (not an "
      "administrator).", S(ctl_refused), U64, NULL },
    /* lent memory (the daemon's count) */
    { "tmemd_lending", 'g', "1 if private pools run in the clients, on lent memory.",
      S(lending), U32, NULL },
    { "tmemd_lent_bytes", 'g', "Memory lent to clients now, by kind.", S(lent_bytes[0]), U64,
      "kind=\"ephemeral\"" },
    { "tmemd_lent_bytes", 'g', NULL, S(lent_bytes[1]), U64, "kind=\"persistent\"" },
    { "tmemd_lend_units_total", 'c', "Lent units, by event.", S(lend_grown), U64,
      "event=\"granted\"" },
    { "tmemd_lend_units_total", 'c', NULL, S(lend_returned), U64, "event=\"given_back\"" },
    { "tmemd_lend_units_total", 'c', NULL, S(lend_revoked), U64, "event=\"taken_by_force\"" },
    { "tmemd_lend_units_total", 'c', NULL, S(lend_adopted_units), U64, "event=\"adopted\"" },
    { "tmemd_lend_refused_total", 'c', "Asks for a unit refused.", S(lend_refused), U64, NULL },
    { "tmemd_lend_shrinks_total", 'c', "Requests to a client to give units back.",
      S(lend_shrinks_asked), U64, NULL },
    { "tmemd_lend_adoptions_refused_total", 'c', "Clients coming back with more persistent "
      "memory than fits, refused.", S(lend_adopt_refused), U64, NULL },
    { "tmemd_lend_bad_total", 'c', "Unit messages naming units not the client's, ignored.",
      S(lend_bad), U64, NULL },
    /* the governor */
    { "tmemd_governor_limit_bytes", 'g', "The limit the governor set.", S(gov_limit), U64,
      NULL },
    { "tmemd_governor_max_bytes", 'g', "The configured ceiling (max_memory).", S(gov_max), U64,
      NULL },
    { "tmemd_governor_reserve_bytes", 'g', "Host memory the governor leaves alone.",
      S(gov_reserve), U64, NULL },
    { "tmemd_governor_mem_available_bytes", 'g', "MemAvailable at the last reading.",
      S(gov_mem_available), U64, NULL },
    { "tmemd_governor_shrinks_total", 'c', "Times the governor lowered the limit.",
      S(gov_shrinks), U64, NULL },
    { "tmemd_governor_grows_total", 'c', "Times the governor raised the limit.", S(gov_grows),
      U64, NULL },
    { "tmemd_governor_pages_evicted_total", 'c', "Ephemeral pages evicted while the governor "
      "lowered the limit.", S(gov_pages_evicted), U64, NULL },
    { "tmemd_governor_pages_released_total", 'c', "Frames given back to the OS while the "
      "governor lowered the limit.", S(gov_pages_released), U64, NULL },
};

#undef S
#undef E
#define C(m) offsetof(struct tmw_ctl_client, m)
#define I(m) offsetof(struct tmw_ctl_client, info.m)

static const struct row client_rows[] = {
    { "tmem_client_pages", 'g', "Pages a client holds, by pool kind.", I(ephemeral_pages),
      U64, "kind=\"ephemeral\"" },
    { "tmem_client_pages", 'g', NULL, I(persistent_pages), U64, "kind=\"persistent\"" },
    { "tmem_client_pools", 'g', "Pools a client has.", I(nr_pools), U32, NULL },
    { "tmem_client_weight", 'g', "A client's weight in eviction (the largest of the name's).",
      I(weight), U32, NULL, 'm' },
    { "tmem_client_cap_pages", 'g', "A client's persistent-page cap (0 none; the largest of "
      "the name's).", I(cap), U64, NULL, 'm' },
    { "tmem_client_frozen", 'g', "Clients of the name whose puts are refused (frozen).",
      I(frozen), S32, NULL },
    { "tmem_client_parked", 'g', "Clients of the name restored and waiting for their owner.",
      C(parked), U32, NULL },
    { "tmem_client_puts_total", 'c', "A client's puts.", I(puts), U64, NULL },
    { "tmem_client_puts_stored_total", 'c', "A client's puts that stored their page.",
      I(puts_ok), U64, NULL },
    { "tmem_client_puts_refused_total", 'c', "A client's refused puts, by reason.",
      I(refused_nomem), U64, "reason=\"nomem\"" },
    { "tmem_client_puts_refused_total", 'c', NULL, I(refused_quota), U64, "reason=\"quota\"" },
    { "tmem_client_puts_refused_total", 'c', NULL, I(refused_frozen), U64,
      "reason=\"frozen\"" },
    { "tmem_client_gets_total", 'c', "A client's gets.", I(gets), U64, NULL },
    { "tmem_client_gets_hit_total", 'c', "A client's gets that found their page.",
      I(gets_hit), U64, NULL },
    { "tmem_client_flushes_total", 'c', "A client's page flushes.", I(flushes), U64, NULL },
    { "tmem_client_evicted_pages_total", 'c', "A client's ephemeral pages evicted.",
      I(evicted), U64, NULL },
    { "tmem_client_compressed_pages_total", 'c', "A client's pages stored compressed.",
      I(compressed_pages), U64, NULL },
    { "tmem_client_compressed_bytes_total", 'c', "Compressed bytes of those pages.",
      I(compressed_bytes), U64, NULL },
    { "tmem_client_compress_poor_total", 'c', "A client's pages that did not compress below "
      "compress_max.", I(compress_poor), U64, NULL },
    { "tmem_client_requests_total", 'c', "Window requests served for a client.", C(requests),
      U64, NULL },
    { "tmem_client_bad_requests_total", 'c', "A client's malformed window requests.",
      C(bad_requests), U64, NULL },
    { "tmem_client_wakeups_total", 'c', "Times a client's worker was woken by its doorbell, "
      "by outcome.", C(wakeups), U64, "outcome=\"any\"" },
    { "tmem_client_wakeups_total", 'c', NULL, C(empty_wakeups), U64, "outcome=\"empty\"" },
    { "tmem_client_worker_cpu_seconds_total", 'c', "CPU time of a client's worker.",
      C(worker_cpu_ns), NS, NULL },
    { "tmem_client_throttles_total", 'c', "Times a client's worker was throttled for empty "
      "wake-ups.", C(throttles), U64, NULL },
    { "tmem_client_throttled", 'g', "Clients of the name whose worker is throttled now.",
      C(throttled), U32, NULL },
    { "tmem_client_lent_bytes", 'g', "Memory lent to a client (the daemon's count), by kind; "
      "its other figures are what its library reports.", C(lent_bytes[0]), U64,
      "kind=\"ephemeral\"" },
    { "tmem_client_lent_bytes", 'g', NULL, C(lent_bytes[1]), U64, "kind=\"persistent\"" },
    { "tmem_client_revoked_units_total", 'c', "A client's ephemeral units taken by force.",
      C(revoked_units), U64, NULL },
};

#undef C
#undef I

static void add_family(struct text *t, const struct row *r)
{
    add(t, "# HELP %s %s\n# TYPE %s %s\n", r->name, r->help, r->name,
        r->type == 'c' ? "counter" : "gauge");
}

/* A field of base as a number (an S32 sign-extended). */
static uint64_t get_value(const void *base, const struct row *r)
{
    const char *p = (const char *)base + r->off;
    if (r->w == U64 || r->w == NS) {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    if (r->w == U32) {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v;
    }
    int32_t v;
    memcpy(&v, p, sizeof(v));
    return (uint64_t)(int64_t)v;
}

static void add_number(struct text *t, const struct row *r, uint64_t v)
{
    if (r->w == NS)
        add(t, " %" PRIu64 ".%09" PRIu64 "\n", v / 1000000000u, v % 1000000000u);
    else if (r->w == S32)
        add(t, " %" PRId64 "\n", (int64_t)v);
    else
        add(t, " %" PRIu64 "\n", v);
}

static void add_value(struct text *t, const void *base, const struct row *r)
{
    add_number(t, r, get_value(base, r));
}

/* Per-client series are labelled by name and uid only: a pid or a client
 * id would make a series of every process that ever connected.  Clients
 * of one name and uid are one series (summed; weight and cap the largest). */
static int by_uid_name(const void *a, const void *b)
{
    const struct tmw_ctl_client *x = a, *y = b;
    if (x->uid != y->uid)
        return x->uid < y->uid ? -1 : 1;
    return strncmp(x->info.name, y->info.name, sizeof(x->info.name));
}

static void add_client_labels(struct text *t, const struct tmw_ctl_client *c)
{
    add(t, "name=\"");
    add_escaped(t, c->info.name, sizeof(c->info.name));
    add(t, "\",uid=\"%" PRIu32 "\"", c->uid);
}

static void render(struct tmd *d, struct text *t)
{
    struct tmw_ctl_stats s;
    tmd_stats_snapshot(d, &s, false);
    struct tmw_ctl_client *cl = NULL;
    size_t ncl = 0;
    if (tmd_clients_snapshot(d, &cl, &ncl, false) != 0) {
        cl = NULL;
        ncl = 0;
    }

    for (size_t i = 0; i < sizeof(stats_rows) / sizeof(stats_rows[0]); i++) {
        const struct row *r = &stats_rows[i];
        if (r->help)
            add_family(t, r);
        add(t, "%s", r->name);
        if (r->label)
            add(t, "{%s}", r->label);
        add_value(t, &s, r);
    }
    add(t, "# HELP tmemd_governor_psi_some_avg10 PSI memory \"some avg10\" at the last reading "
        "(percent; 0 when the host has no PSI).\n# TYPE tmemd_governor_psi_some_avg10 gauge\n"
        "tmemd_governor_psi_some_avg10 %" PRIu64 ".%02" PRIu64 "\n",
        s.gov_psi_some_avg10_x100 / 100, s.gov_psi_some_avg10_x100 % 100);
    add(t, "# HELP tmemd_governor_enabled 1 if the governor moves the limit.\n"
        "# TYPE tmemd_governor_enabled gauge\ntmemd_governor_enabled %d\n",
        d->cfg.governor ? 1 : 0);
    add(t, "# HELP tmemd_uptime_seconds Seconds since the daemon started.\n"
        "# TYPE tmemd_uptime_seconds gauge\ntmemd_uptime_seconds %" PRIu64 ".%03" PRIu64 "\n",
        s.uptime_ms / 1000, s.uptime_ms % 1000);
    add(t, "# HELP tmem_build_info The tmem version this daemon was built from (the value "
        "is 1).\n# TYPE tmem_build_info gauge\ntmem_build_info{version=\"%d.%d.%d\"} 1\n",
        TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR, TMEM_VERSION_PATCH);
    uint64_t frozen = 0;
    for (size_t k = 0; k < ncl; k++)
        frozen += cl[k].info.frozen != 0;
    add(t, "# HELP tmemd_frozen_clients Clients whose puts are refused (frozen).\n"
        "# TYPE tmemd_frozen_clients gauge\ntmemd_frozen_clients %" PRIu64 "\n", frozen);
    if (!d->cfg.metrics_per_client) {
        free(cl);
        return;
    }

    /* per client name and uid: how many clients, then the figures */
    qsort(cl, ncl, sizeof(cl[0]), by_uid_name);
    add(t, "# HELP tmem_client_instances Clients (connected or parked) of a name and uid.\n"
        "# TYPE tmem_client_instances gauge\n");
    for (size_t k = 0, e; k < ncl; k = e) {
        for (e = k + 1; e < ncl && by_uid_name(&cl[k], &cl[e]) == 0; e++)
            ;
        add(t, "tmem_client_instances{");
        add_client_labels(t, &cl[k]);
        add(t, "} %zu\n", e - k);
    }
    for (size_t i = 0; i < sizeof(client_rows) / sizeof(client_rows[0]); i++) {
        const struct row *r = &client_rows[i];
        if (r->help)
            add_family(t, r);
        for (size_t k = 0, e; k < ncl; k = e) {
            uint64_t v = get_value(&cl[k], r);
            for (e = k + 1; e < ncl && by_uid_name(&cl[k], &cl[e]) == 0; e++) {
                uint64_t x = get_value(&cl[e], r);
                if (r->agg == 'm')
                    v = r->w == S32 ? ((int64_t)x > (int64_t)v ? x : v) : (x > v ? x : v);
                else
                    v += x;
            }
            add(t, "%s{", r->name);
            add_client_labels(t, &cl[k]);
            if (r->label)
                add(t, ",%s", r->label);
            add(t, "}");
            add_number(t, r, v);
        }
    }
    free(cl);
}

/* ------------------------------------------------------------------------
 * HTTP
 * ---------------------------------------------------------------------- */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status,
                                  const char *text)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                                             MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    struct tmd *d = cls;
    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)req_cls;
    bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0;
    if (!get && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (strcmp(url, "/metrics") != 0)
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");

    struct text t = { .cap = 16384 };
    t.p = malloc(t.cap);
    if (!t.p)
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    render(d, &t);
    if (t.oom) {
        free(t.p);
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(t.len, t.p,
                                                                                 free);
    if (!r) {
        free(t.p);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return rc;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    /* a connection over the limit, a malformed request: any local user can
     * cause these at will */
    tmd_log_limited(LOG_WARNING, "metrics", TMD_NO_UID, "metrics: %s", line);
}

/* The address literal of metrics.address as a sockaddr (the port in it);
 * *len its size, -1 if it is not one (tmd_config_set checked it). */
static int metrics_sockaddr(const char *addr, uint16_t port, struct sockaddr_storage *ss,
                            socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(port);
        *len = sizeof(*in);
        return 0;
    }
    if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *len = sizeof(*in6);
        return 0;
    }
    return -1;
}

static bool is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

/* Why the endpoint could not bind ss: the errno of a bind of a socket
 * like libmicrohttpd's (SO_REUSEADDR), 0 if that one binds. */
static int bind_error(const struct sockaddr_storage *ss, socklen_t len)
{
    int s = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return errno;
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss->ss_family == AF_INET6) {      /* "::" is dual stack, as the endpoint */
        int v6only = !IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr);
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only));
    }
    int rc = bind(s, (const struct sockaddr *)ss, len) == 0 ? 0 : errno;
    close(s);
    return rc;
}

void tmd_metrics_url(const char *addr, unsigned port, char *buf, size_t len)
{
    bool v6 = strchr(addr, ':') != NULL;
    snprintf(buf, len, "http://%s%s%s:%u/metrics", v6 ? "[" : "", addr, v6 ? "]" : "", port);
}

int tmd_metrics_start(struct tmd *d)
{
    int port = d->cfg.metrics_port;
    if (port == 0) {
        tmd_log(LOG_INFO, "metrics: off");
        return 0;
    }
    const char *addr = d->cfg.metrics_address;
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (metrics_sockaddr(addr, port < 0 ? 0 : (uint16_t)port, &ss, &sslen) != 0) {
        tmd_log(LOG_ERR, "metrics: '%s' is not an IPv4 or IPv6 address", addr);
        return -1;
    }
    struct tmd_metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        tmd_log(LOG_ERR, "metrics: out of memory");
        return -1;
    }
    unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ERROR_LOG;
    if (ss.ss_family == AF_INET6) {
        /* "::" takes IPv4 too (dual stack), as other servers do; an IPv6
         * address other than that only itself */
        const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
        flags |= IN6_IS_ADDR_UNSPECIFIED(a) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
    }
    m->mhd = MHD_start_daemon(flags, port < 0 ? 0 : (uint16_t)port, NULL, NULL, on_request, d,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                              MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)16,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10,
                              MHD_OPTION_END);
    if (!m->mhd) {
        /* the clients matter more than the figures: no endpoint, and the
         * daemon serves on (tmemctl stats shows metrics off) */
        int why = bind_error(&ss, sslen);
        if (why == EADDRINUSE)
            tmd_log(LOG_WARNING, "metrics: port %d on %s is taken: no metrics endpoint "
                    "(set metrics.port to a free one, or 0 for none)", port, addr);
        else
            tmd_log(LOG_WARNING, "metrics: cannot serve on %s port %d (%s): no metrics "
                    "endpoint", addr, port < 0 ? 0 : port,
                    why ? strerror(why) : "the HTTP server did not start");
        free(m);
        return 0;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : (uint16_t)port;
    /* published once complete: control threads read it (tmd_stats_snapshot) */
    __atomic_store_n(&d->metrics, m, __ATOMIC_RELEASE);
    char url[96];
    tmd_metrics_url(addr, m->port, url, sizeof(url));
    tmd_log(LOG_INFO, "metrics: %s", url);
    if (!is_loopback(&ss))
        tmd_log(LOG_WARNING, "metrics: %s is not a loopback address: anyone who can reach "
                "it reads the figures%s", addr, d->cfg.metrics_per_client ?
                ", every client's name and uid among them (metrics.per_client is on)" :
                "");
    return 0;
}

void tmd_metrics_stop(struct tmd *d)
{
    struct tmd_metrics *m = __atomic_exchange_n(&d->metrics, NULL, __ATOMIC_ACQ_REL);
    if (!m)
        return;
    MHD_stop_daemon(m->mhd);     /* waits for its thread: a reader of m is long done */
    free(m);
}

uint32_t tmd_metrics_port(struct tmd *d)
{
    struct tmd_metrics *m = __atomic_load_n(&d->metrics, __ATOMIC_ACQUIRE);
    return m ? m->port : 0;
}
