/* SPDX-License-Identifier: MIT */
/*
 * tmemctl.c - the administrator's tool for tmemd: list clients and pools,
 * freeze and thaw, tune (weight, cap, codec), authorise shared pools, take
 * memory back, save and restore a client, and a live view (top).
 *
 * Every command is one or a few requests on the control socket
 * (ctl_client.h).  Errors are one line on stderr and exit status 1; usage
 * errors exit 2.  `tmemctl help COMMAND` and `tmemctl COMMAND --help`
 * print a command's help; docs/man/tmemctl.8 is the manual.
 */
#define _GNU_SOURCE             /* vasprintf */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl_client.h"
#include "tmem/tmem.h"
#include "util/size.h"

#define EXIT_USAGE 2

static const char *sock;        /* --socket, NULL: the default */

/* ------------------------------------------------------------------------
 * Messages
 * ---------------------------------------------------------------------- */
static void errmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tmemctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("tmemctl: ", stderr);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see 'tmemctl %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    va_end(ap);
    return EXIT_USAGE;
}

/* One line for a failed call; subject names the client or file concerned.
 * Returns the exit status. */
static int report(const char *cmd, int rc, const char *subject)
{
    int e = rc < 0 ? -rc : rc;
    const char *path = tmc_socket_path(sock);
    switch (tmc_failed_at()) {
    case TMC_AT_CONNECT:
        if (e == EACCES || e == EPERM)
            errmsg("permission denied: cannot connect to %s (not an administrator of tmemd?)",
                   path);
        else
            errmsg("cannot connect to %s: %s%s", path, strerror(e),
                   e == ENOENT || e == ECONNREFUSED ? " (is tmemd running?)" : "");
        return 1;
    case TMC_AT_TRANSPORT:
        if (e == ETIMEDOUT)
            errmsg("%s: tmemd at %s did not answer within %d s", cmd, path, TMC_TIMEOUT_S);
        else if (e == EPROTO)
            errmsg("%s: malformed reply from tmemd at %s (another version?)", cmd, path);
        else if (e == ECONNRESET || e == EPIPE)
            errmsg("%s: tmemd at %s closed the connection", cmd, path);
        else
            errmsg("%s: talking to tmemd at %s: %s", cmd, path, strerror(e));
        return 1;
    case TMC_AT_LOCAL:
        errmsg("%s: %s%s%s", cmd, subject ? subject : "", subject ? ": " : "", strerror(e));
        return 1;
    case TMC_AT_DAEMON:
    case TMC_AT_NONE:
        break;
    }
    if (e == EPERM || e == EACCES)
        errmsg("permission denied: not an administrator of tmemd");
    else if (e == ENOENT && subject)
        errmsg("%s: no client %s", cmd, subject);
    else if (e == EBUSY && strcmp(cmd, "restore") != 0)
        errmsg("%s: tmemd is busy (too many control connections); try again", cmd);
    else if (e == ESHUTDOWN)
        errmsg("%s: tmemd is shutting down", cmd);
    else if (e == EPROTO && strcmp(cmd, "restore") == 0)
        errmsg("restore: %s: not a tmem save file, or damaged", subject ? subject : "input");
    else if (e == ENOMEM && strcmp(cmd, "restore") == 0)
        errmsg("restore: tmemd has no room for the client's pages");
    else if (e == EINVAL)
        errmsg("%s: tmemd rejected the request as invalid", cmd);
    else if (e == ENOSPC && strcmp(cmd, "shared-auth") == 0)
        errmsg("shared-auth: client %s already has the most authorisations (16)",
               subject ? subject : "");
    else if (e == TMEM_EFROZEN)
        errmsg("%s: %s", cmd, tmem_strerror(rc));
    else
        errmsg("%s: %s", cmd, strerror(e));
    return 1;
}

/* ------------------------------------------------------------------------
 * Parsing and formatting
 * ---------------------------------------------------------------------- */
static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-' || *s == '+')
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* A size in the grammar of util/size.h ("4096", "64K", "1G", "2TiB", "64MB"),
 * or "all" (UINT64_MAX). */
static bool parse_size(const char *s, uint64_t *out)
{
    if (s && strcmp(s, "all") == 0) {
        *out = UINT64_MAX;
        return true;
    }
    return tmu_parse_size(s, out) == 0;
}

/* "12.3 MiB" (compact: "12.3M") into buf. */
static const char *fmt_bytes(uint64_t b, bool compact, char buf[24])
{
    static const char units[] = "KMGTPE";
    if (b < 1024) {
        snprintf(buf, 24, compact ? "%" PRIu64 : "%" PRIu64 " B", b);
        return buf;
    }
    double v = (double)b;
    int u = -1;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, 24, compact ? "%.*f%c" : "%.*f %ciB", v < 10 ? 1 : 0, v, units[u]);
    return buf;
}

static const char *codec_name(int c)
{
    switch (c) {
    case TMEM_COMPRESS_NONE: return "none";
    case TMEM_COMPRESS_LZ4:  return "lz4";
    case TMEM_COMPRESS_ZSTD: return "zstd";
    default:                 return "?";
    }
}

static double hit_pct(uint64_t hits, uint64_t gets)
{
    return gets ? 100.0 * (double)hits / (double)gets : 0;
}

/* Uncompressed size over stored size of a client's compressed pages. */
static double comp_ratio(const tmem_client_info_t *i)
{
    return i->compressed_pages && i->compressed_bytes
               ? (double)i->compressed_pages * TMEM_PAGE_SIZE / (double)i->compressed_bytes
               : 0;
}

static const char *uptime_text(uint64_t ms, char buf[32])
{
    uint64_t s = ms / 1000;
    if (s >= 86400)
        snprintf(buf, 32, "%" PRIu64 "d %02" PRIu64 "h%02" PRIu64 "m", s / 86400,
                 s / 3600 % 24, s / 60 % 60);
    else if (s >= 3600)
        snprintf(buf, 32, "%" PRIu64 "h%02" PRIu64 "m%02" PRIu64 "s", s / 3600, s / 60 % 60,
                 s % 60);
    else
        snprintf(buf, 32, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    return buf;
}

static const char *client_state(const struct tmw_ctl_client *c)
{
    if (c->parked)
        return c->info.frozen ? "parked,frozen" : "parked";
    if (c->throttled)       /* its worker waits: it rang without requests */
        return c->info.frozen ? "frozen,throttled" : "throttled";
    return c->info.frozen ? "frozen" : "-";
}

static int by_id(const void *a, const void *b)
{
    const struct tmw_ctl_client *x = a, *y = b;
    return (x->info.id > y->info.id) - (x->info.id < y->info.id);
}

/* Resolves CLIENT (an id, or a unique name) to an id; prints the error and
 * returns the exit status when it cannot. */
static int resolve_client(const char *cmd, const char *arg, uint32_t *id)
{
    uint64_t v;
    if (parse_u64(arg, &v)) {
        if (v >= TMEM_CLIENT_ALL) {
            errmsg("%s: no client %s", cmd, arg);
            return 1;
        }
        *id = (uint32_t)v;
        return 0;
    }
    struct tmw_ctl_client *cl;
    size_t n;
    int rc = tmc_clients(sock, &cl, &n);
    if (rc < 0)
        return report(cmd, rc, arg);
    size_t found = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(cl[i].info.name, arg, sizeof(cl[i].info.name)) == 0) {
            if (!found++)
                *id = cl[i].info.id;
        }
    free(cl);
    if (found == 1)
        return 0;
    if (found == 0)
        errmsg("%s: no client named '%s'", cmd, arg);
    else
        errmsg("%s: %zu clients are named '%s'; give the id (see 'tmemctl list')", cmd, found,
               arg);
    return 1;
}

/* "client 3 (name)" for messages; name looked up when known. */
static const char *client_label(uint32_t id, char buf[96])
{
    struct tmw_ctl_client *cl;
    size_t n;
    snprintf(buf, 96, "client %u", id);
    if (tmc_clients(sock, &cl, &n) >= 0) {
        for (size_t i = 0; i < n; i++)
            if (cl[i].info.id == id && cl[i].info.name[0])
                snprintf(buf, 96, "client %u (%.63s)", id, cl[i].info.name);
        free(cl);
    }
    return buf;
}

/* ------------------------------------------------------------------------
 * Commands
 * ---------------------------------------------------------------------- */
struct cmd {
    const char *name;
    int (*run)(const struct cmd *c, int argc, char **argv);
    const char *usage;          /* after "tmemctl NAME " */
    const char *summary;
    const char *help;           /* the rest of its --help */
};

static int help_command(const struct cmd *c, FILE *f);

/* Parses a command's options with getopt_long; 'h' is --help everywhere.
 * Returns the option, -1 at the end, or '?' after printing the error. */
static int next_opt(int argc, char **argv, const char *shorts, const struct option *longs)
{
    int o = getopt_long(argc, argv, shorts, longs, NULL);
    if (o == '?' || o == ':') {
        const char *arg = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (strncmp(arg, "--", 2) == 0 || !optopt)
            fprintf(stderr, "tmemctl: %s: option %s is unknown or needs a value\n", argv[0],
                    arg);
        else
            fprintf(stderr, "tmemctl: %s: option -%c is unknown or needs a value\n", argv[0],
                    optopt);
        return '?';
    }
    return o;
}

/* The usual end of option parsing: --help, a bad option, the positional
 * count.  Returns -1 to go on, else the exit status. */
static int opts_done(const struct cmd *c, int o, bool help, int npos, int min, int max)
{
    if (o == '?') {
        fprintf(stderr, "usage: tmemctl %s %s\n", c->name, c->usage);
        return EXIT_USAGE;
    }
    if (help)
        return help_command(c, stdout);
    if (npos < min)
        return usage_error(c->name, "missing argument");
    if (npos > max)
        return usage_error(c->name, "too many arguments");
    return -1;
}

#define HELP_OPT { "help", no_argument, NULL, 'h' }

/* The options of a command that has none but --help, then min..max
 * arguments: like opts_done, -1 to go on. */
static int only_help_opt(const struct cmd *c, int argc, char **argv, int min, int max)
{
    static const struct option longs[] = { HELP_OPT, { 0 } };
    bool help = false;
    int o;
    while ((o = next_opt(argc, argv, "h", longs)) != -1 && o != '?')
        help |= o == 'h';
    return opts_done(c, o, help, argc - optind, min, max);
}

/* ---- list ---- */
static json_t *client_json(const struct tmw_ctl_client *c)
{
    const tmem_client_info_t *i = &c->info;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_integer(i->id));
    json_object_set_new(o, "name", json_stringn(i->name, strnlen(i->name, sizeof(i->name))));
    json_object_set_new(o, "pid", json_integer(c->pid));
    json_object_set_new(o, "uid", json_integer(c->uid));
    json_object_set_new(o, "gid", json_integer(c->gid));
    json_object_set_new(o, "parked", json_boolean(c->parked));
    json_object_set_new(o, "frozen", json_boolean(i->frozen));
    json_object_set_new(o, "weight", json_integer(i->weight));
    json_object_set_new(o, "cap_pages", json_integer((json_int_t)i->cap));
    json_object_set_new(o, "compress", json_string(codec_name(i->compress)));
    json_object_set_new(o, "pools", json_integer(i->nr_pools));
#define NUM(k, v) json_object_set_new(o, k, json_integer((json_int_t)(v)))
    NUM("ephemeral_pages", i->ephemeral_pages);
    NUM("persistent_pages", i->persistent_pages);
    NUM("puts", i->puts);
    NUM("puts_ok", i->puts_ok);
    NUM("gets", i->gets);
    NUM("gets_hit", i->gets_hit);
    NUM("flushes", i->flushes);
    NUM("evicted_pages", i->evicted);
    NUM("refused_nomem", i->refused_nomem);
    NUM("refused_quota", i->refused_quota);
    NUM("refused_frozen", i->refused_frozen);
    NUM("compressed_pages", i->compressed_pages);
    NUM("compressed_bytes", i->compressed_bytes);
    NUM("compress_poor", i->compress_poor);
    NUM("requests", c->requests);
    NUM("bad_requests", c->bad_requests);
    /* lent memory: the daemon enforces lent_bytes; the rest of a lending
     * client's figures are what its library reports */
    json_object_set_new(o, "lent", json_boolean(c->lent));
    NUM("lent_bytes_ephemeral", c->lent_bytes[0]);
    NUM("lent_bytes_persistent", c->lent_bytes[1]);
    NUM("reported_meta_bytes", c->meta_bytes);
    NUM("reported_oldest_ephemeral_ms", c->oldest_eph_ms);
    NUM("revoked_units", c->revoked_units);
    /* its worker: wake-ups, those that found nothing posted, CPU, throttles */
    NUM("wakeups", c->wakeups);
    NUM("empty_wakeups", c->empty_wakeups);
    NUM("worker_cpu_ns", c->worker_cpu_ns);
    NUM("throttles", c->throttles);
    json_object_set_new(o, "throttled", json_boolean(c->throttled));
    /* who pays: its cgroup (read when it connected) and the memory held for it */
    json_object_set_new(o, "cgroup",
                        json_stringn(c->cgroup, strnlen(c->cgroup, sizeof(c->cgroup))));
    NUM("held_bytes", c->held_bytes);
#undef NUM
    json_object_set_new(o, "hit_pct", json_real(hit_pct(i->gets_hit, i->gets)));
    json_object_set_new(o, "compression_ratio", json_real(comp_ratio(i)));
    return o;
}

/* The version of tmemctl's JSON documents: every --json output is one
 * object whose first member is "schema"; it goes up when a member is
 * renamed or removed or changes meaning (adding one does not). */
#define TMEMCTL_JSON_SCHEMA 1

static int print_json(json_t *j);

/* Prints {"schema": N, member: payload}, or payload's own members after
 * "schema" when member is NULL (payload an object). */
static int print_json_doc(const char *member, json_t *payload)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "schema", json_integer(TMEMCTL_JSON_SCHEMA));
    if (member) {
        json_object_set_new(doc, member, payload);
    } else {
        json_object_update(doc, payload);
        json_decref(payload);
    }
    return print_json(doc);
}

static int print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s) {
        errmsg("out of memory");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

static int name_width(const struct tmw_ctl_client *cl, size_t n)
{
    int w = 4;
    for (size_t i = 0; i < n; i++) {
        int l = (int)strnlen(cl[i].info.name, sizeof(cl[i].info.name));
        if (l > w)
            w = l;
    }
    return w > 24 ? 24 : w;
}

static void print_table(const struct tmw_ctl_client *cl, size_t n)
{
    int nw = name_width(cl, n);
    printf("%5s %-*s %7s %6s %5s %9s %9s %10s %10s %5s %5s %6s %8s %9s %9s %-9s %s\n", "ID",
           nw, "NAME", "PID", "UID", "POOLS", "EPH", "PERS", "PUTS", "GETS", "HIT%", "COMP",
           "WEIGHT", "CAP", "LENT", "HELD", "STATE", "CGROUP");
    for (size_t k = 0; k < n; k++) {
        const struct tmw_ctl_client *c = &cl[k];
        const tmem_client_info_t *i = &c->info;
        char pid[16], cap[24], ratio[16], hit[16], lent[24], held[24];
        snprintf(pid, sizeof(pid), c->parked ? "-" : "%d", c->pid);
        if (i->cap)
            snprintf(cap, sizeof(cap), "%" PRIu64, i->cap);
        else
            strcpy(cap, "-");
        double r = comp_ratio(i);
        if (r > 0)
            snprintf(ratio, sizeof(ratio), "%.2f", r);
        else
            strcpy(ratio, "-");
        if (i->gets)
            snprintf(hit, sizeof(hit), "%.1f", hit_pct(i->gets_hit, i->gets));
        else
            strcpy(hit, "-");
        if (c->lent)
            fmt_bytes(c->lent_bytes[0] + c->lent_bytes[1], false, lent);
        else
            strcpy(lent, "-");
        fmt_bytes(c->held_bytes, false, held);
        printf("%5u %-*.*s %7s %6u %5u %9" PRIu64 " %9" PRIu64 " %10" PRIu64 " %10" PRIu64
               " %5s %5s %6u %8s %9s %9s %-9s %.*s\n", i->id, nw, nw, i->name, pid, c->uid,
               i->nr_pools, i->ephemeral_pages, i->persistent_pages, i->puts, i->gets, hit,
               ratio, i->weight, cap, lent, held, client_state(c),
               (int)sizeof(c->cgroup), c->cgroup[0] ? c->cgroup : "-");
    }
}

static int by_cgroup(const void *a, const void *b)
{
    const struct tmw_ctl_client *x = a, *y = b;
    return strncmp(x->cgroup, y->cgroup, sizeof(x->cgroup));
}

/* list --by cgroup: the clients of each cgroup summed (cl sorted by it). */
static int print_by_cgroup(struct tmw_ctl_client *cl, size_t n, bool json)
{
    if (n > 1)
        qsort(cl, n, sizeof(*cl), by_cgroup);
    json_t *a = json ? json_array() : NULL;
    if (!json && n)
        printf("%-40s %7s %9s %9s %9s %9s\n", "CGROUP", "CLIENTS", "EPH", "PERS", "LENT",
               "HELD");
    for (size_t k = 0, e; k < n; k = e) {
        uint64_t clients = 0, eph = 0, pers = 0, lent = 0, held = 0;
        for (e = k; e < n && by_cgroup(&cl[k], &cl[e]) == 0; e++) {
            clients++;
            eph += cl[e].info.ephemeral_pages;
            pers += cl[e].info.persistent_pages;
            lent += cl[e].lent_bytes[0] + cl[e].lent_bytes[1];
            held += cl[e].held_bytes;
        }
        const char *cg = cl[k].cgroup[0] ? cl[k].cgroup : "-";
        if (json) {
            json_t *o = json_object();
            json_object_set_new(o, "cgroup", json_stringn(cl[k].cgroup,
                                                          strnlen(cl[k].cgroup,
                                                                  sizeof(cl[k].cgroup))));
            json_object_set_new(o, "clients", json_integer((json_int_t)clients));
            json_object_set_new(o, "ephemeral_pages", json_integer((json_int_t)eph));
            json_object_set_new(o, "persistent_pages", json_integer((json_int_t)pers));
            json_object_set_new(o, "lent_bytes", json_integer((json_int_t)lent));
            json_object_set_new(o, "held_bytes", json_integer((json_int_t)held));
            json_array_append_new(a, o);
        } else {
            char l[24], h[24];
            printf("%-40.*s %7" PRIu64 " %9" PRIu64 " %9" PRIu64 " %9s %9s\n",
                   (int)sizeof(cl[k].cgroup), cg, clients, eph, pers,
                   fmt_bytes(lent, false, l), fmt_bytes(held, false, h));
        }
    }
    if (json)
        return print_json_doc("cgroups", a);
    if (n == 0)
        puts("no clients");
    return 0;
}

static int cmd_list(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = {
        { "long", no_argument, NULL, 'l' }, { "json", no_argument, NULL, 'j' },
        { "by", required_argument, NULL, 'b' }, HELP_OPT, { 0 }
    };
    bool lng = false, json = false, help = false;
    const char *by = NULL;
    int o;
    while ((o = next_opt(argc, argv, "lh", longs)) != -1 && o != '?')
        switch (o) {
        case 'l': lng = true; break;
        case 'j': json = true; break;
        case 'b': by = optarg; break;
        case 'h': help = true; break;
        }
    int st = opts_done(c, o, help, argc - optind, 0, 1);
    if (st >= 0)
        return st;
    if (by && strcmp(by, "cgroup") != 0)
        return usage_error(c->name, "--by: '%s': only cgroup", by);
    if (by && lng)
        return usage_error(c->name, "--by and -l do not go together");
    const char *who = optind < argc ? argv[optind] : NULL;
    uint32_t id = TMEM_CLIENT_ALL;
    if (who && (st = resolve_client(c->name, who, &id)) != 0)
        return st;
    if (lng && !json) {
        char *text;
        int rc = tmc_list_text(sock, id, 1, &text);
        if (rc < 0)
            return report(c->name, rc, who);
        fputs(text, stdout);
        free(text);
        return 0;
    }
    struct tmw_ctl_client *cl;
    size_t n;
    int rc = tmc_clients(sock, &cl, &n);
    if (rc < 0)
        return report(c->name, rc, who);
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (id == TMEM_CLIENT_ALL || cl[i].info.id == id)
            cl[keep++] = cl[i];
    n = keep;
    if (who && n == 0) {
        free(cl);
        errmsg("%s: no client %s", c->name, who);
        return 1;
    }
    if (by) {
        st = print_by_cgroup(cl, n, json);
        free(cl);
        return st;
    }
    if (n > 1)
        qsort(cl, n, sizeof(*cl), by_id);
    if (json) {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, client_json(&cl[i]));
        free(cl);
        return print_json_doc("clients", a);
    }
    if (n == 0)
        puts("no clients");
    else
        print_table(cl, n);
    free(cl);
    return 0;
}

/* ---- stats ---- */
static json_t *stats_json(const struct tmw_ctl_stats *s)
{
    json_t *o = json_object(), *e = json_object();
    const tmem_stats_t *t = &s->engine;
#define NUM(obj, k, v) json_object_set_new(obj, k, json_integer((json_int_t)(v)))
    NUM(o, "uptime_ms", s->uptime_ms);
    NUM(o, "connections", s->connections);
    NUM(o, "parked", s->parked);
    NUM(o, "accepted", s->accepted);
    NUM(o, "refused_conn", s->refused_conn);
    NUM(o, "bad_msgs", s->bad_msgs);
    NUM(o, "bad_requests", s->bad_requests);
    NUM(o, "requests", s->requests);
    NUM(o, "worker_sleeps", s->worker_sleeps);
    NUM(o, "ctl_refused", s->ctl_refused);
    NUM(o, "gov_limit_bytes", s->gov_limit);
    NUM(o, "gov_max_bytes", s->gov_max);
    NUM(o, "gov_reserve_bytes", s->gov_reserve);
    NUM(o, "gov_mem_available_bytes", s->gov_mem_available);
    json_object_set_new(o, "gov_psi_some_avg10_pct",
                        json_real((double)s->gov_psi_some_avg10_x100 / 100.0));
    NUM(o, "gov_shrinks", s->gov_shrinks);
    NUM(o, "gov_grows", s->gov_grows);
    NUM(o, "gov_pages_evicted", s->gov_pages_evicted);
    NUM(o, "gov_pages_released", s->gov_pages_released);
    NUM(o, "metrics_port", s->metrics_port);
    json_object_set_new(o, "lending", json_boolean(s->lending));
    NUM(o, "lent_bytes_ephemeral", s->lent_bytes[0]);
    NUM(o, "lent_bytes_persistent", s->lent_bytes[1]);
    NUM(o, "lend_grown", s->lend_grown);
    NUM(o, "lend_refused", s->lend_refused);
    NUM(o, "lend_returned", s->lend_returned);
    NUM(o, "lend_revoked", s->lend_revoked);
    NUM(o, "lend_bad", s->lend_bad);
    NUM(o, "lend_shrinks_asked", s->lend_shrinks_asked);
    NUM(o, "lend_adopted_units", s->lend_adopted_units);
    NUM(o, "lend_adopt_refused", s->lend_adopt_refused);
    NUM(o, "worker_wakeups", s->worker_wakeups);
    NUM(o, "worker_empty_wakeups", s->worker_empty_wakeups);
    NUM(o, "worker_cpu_ns", s->worker_cpu_ns);
    NUM(o, "worker_throttles", s->worker_throttles);
    NUM(o, "throttled", s->throttled);
#define E(f) NUM(e, #f, t->f)
    E(ephemeral_pages); E(persistent_pages); E(bytes_held); E(max_bytes); E(frames_held);
    E(frames_free); E(frames_whole); E(frames_zalloc); E(frames_lent); E(meta_bytes);
    E(zalloc_bytes_used); E(pages_whole); E(pages_compressed); E(pages_same_filled);
    E(pages_deduped); E(bodies); E(clients); E(pools); E(objects); E(puts); E(puts_ok);
    E(gets); E(gets_hit); E(flushes); E(flush_objects); E(flushed_pages);
    E(dup_puts_replaced); E(dup_puts_flushed); E(compress_poor); E(dedup_hits);
    E(dedup_skipped);
    E(evictions); E(evict_attempts); E(evict_skipped_busy); E(relinquished_frames);
    E(lent_frames); E(refused_nomem); E(refused_quota); E(refused_frozen); E(alloc_failed);
    E(bad_pool); E(bad_args); E(bad_closed);
#undef E
#undef NUM
    json_object_set_new(o, "engine", e);
    return o;
}

static void print_stats(const struct tmw_ctl_stats *s)
{
    const tmem_stats_t *t = &s->engine;
    char a[24], b[24], c2[24], u[32];
    printf("%-14s %s\n", "uptime", uptime_text(s->uptime_ms, u));
    printf("%-14s %" PRIu64 " connected, %" PRIu64 " parked (restored, waiting for their "
           "owner)\n", "clients", s->connections, s->parked);
    printf("%-14s %" PRIu64 " accepted, %" PRIu64 " refused; %" PRIu64 " control "
           "connections refused\n", "connections", s->accepted, s->refused_conn, s->ctl_refused);
    printf("%-14s %s held of a %s limit (%s metadata, %s in free frames)\n", "memory",
           fmt_bytes(t->bytes_held, false, a), fmt_bytes(t->max_bytes, false, b),
           fmt_bytes(t->meta_bytes, false, c2),
           fmt_bytes(t->frames_free * TMEM_PAGE_SIZE, false, u));
    printf("%-14s %" PRIu64 " ephemeral, %" PRIu64 " persistent in %" PRIu64 " pools, %"
           PRIu64 " objects\n", "pages", t->ephemeral_pages, t->persistent_pages, t->pools,
           t->objects);
    printf("%-14s %" PRIu64 " whole, %" PRIu64 " compressed (%s of fragments), %" PRIu64
           " same-filled, %" PRIu64 " deduplicated\n", "stored as", t->pages_whole,
           t->pages_compressed, fmt_bytes(t->zalloc_bytes_used, false, a), t->pages_same_filled,
           t->pages_deduped);
    printf("%-14s %" PRIu64 " (%" PRIu64 " stored; refused: %" PRIu64 " no room, %" PRIu64
           " over cap, %" PRIu64 " frozen)\n", "puts", t->puts, t->puts_ok, t->refused_nomem,
           t->refused_quota, t->refused_frozen);
    printf("%-14s %" PRIu64 " (%" PRIu64 " hits, %.1f%%)\n", "gets", t->gets, t->gets_hit,
           hit_pct(t->gets_hit, t->gets));
    printf("%-14s %" PRIu64 " pages, %" PRIu64 " objects\n", "flushes", t->flushes,
           t->flush_objects);
    printf("%-14s %" PRIu64 " pages evicted, %" PRIu64 " frames given back to the host\n",
           "eviction", t->evictions, t->relinquished_frames);
    printf("%-14s %" PRIu64 " served, %" PRIu64 " malformed requests, %" PRIu64
           " malformed socket messages\n", "requests", s->requests, s->bad_requests,
           s->bad_msgs);
    printf("%-14s %" PRIu64 " wake-ups (%" PRIu64 " found nothing posted), %.3f s of CPU; %"
           PRIu64 " throttles for empty wake-ups, %" PRIu64 " clients throttled now\n",
           "workers", s->worker_wakeups, s->worker_empty_wakeups,
           (double)s->worker_cpu_ns / 1e9, s->worker_throttles, s->throttled);
    printf("%-14s limit %s of at most %s, reserve %s, MemAvailable %s, PSI some avg10 %.2f\n",
           "governor", fmt_bytes(s->gov_limit, false, a), fmt_bytes(s->gov_max, false, b),
           fmt_bytes(s->gov_reserve, false, c2),
           s->gov_mem_available ? fmt_bytes(s->gov_mem_available, false, u) : "not read",
           (double)s->gov_psi_some_avg10_x100 / 100.0);
    printf("%-14s %" PRIu64 " shrinks, %" PRIu64 " grows, %" PRIu64 " pages evicted, %" PRIu64
           " frames released\n", "", s->gov_shrinks, s->gov_grows, s->gov_pages_evicted,
           s->gov_pages_released);
    if (s->lending) {
        printf("%-14s %s ephemeral + %s persistent lent to the clients' libraries (the "
               "daemon's count; their pages above are what they report)\n", "lent",
               fmt_bytes(s->lent_bytes[0], false, a), fmt_bytes(s->lent_bytes[1], false, b));
        printf("%-14s %" PRIu64 " units granted, %" PRIu64 " asks refused, %" PRIu64
               " given back, %" PRIu64 " taken by force, %" PRIu64 " shrink requests, %" PRIu64
               " adopted (%" PRIu64 " adoptions refused), %" PRIu64 " bad unit messages\n", "",
               s->lend_grown, s->lend_refused, s->lend_returned, s->lend_revoked,
               s->lend_shrinks_asked, s->lend_adopted_units, s->lend_adopt_refused, s->lend_bad);
    } else {
        printf("%-14s off (every pool runs in the daemon)\n", "lent");
    }
    if (s->metrics_port)
        printf("%-14s port %u, /metrics (on metrics.address)\n", "metrics", s->metrics_port);
    else
        printf("%-14s off\n", "metrics");
}

/* The options of a command that takes --json and --help alone: *json,
 * and opts_done's answer for min..max operands. */
static int json_opts(const struct cmd *c, int argc, char **argv, bool *json, int min, int max)
{
    static const struct option longs[] = { { "json", no_argument, NULL, 'j' }, HELP_OPT, { 0 } };
    bool help = false;
    int o;
    *json = false;
    while ((o = next_opt(argc, argv, "h", longs)) != -1 && o != '?')
        switch (o) {
        case 'j': *json = true; break;
        case 'h': help = true; break;
        }
    return opts_done(c, o, help, argc - optind, min, max);
}

static int cmd_stats(const struct cmd *c, int argc, char **argv)
{
    bool json;
    int st = json_opts(c, argc, argv, &json, 0, 0);
    if (st >= 0)
        return st;
    struct tmw_ctl_stats s;
    int rc = tmc_stats(sock, &s);
    if (rc < 0)
        return report(c->name, rc, NULL);
    if (json)
        return print_json_doc(NULL, stats_json(&s));
    print_stats(&s);
    return 0;
}

/* ---- freeze, thaw ---- */
static int cmd_freeze(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = { { "all", no_argument, NULL, 'a' }, HELP_OPT, { 0 } };
    bool all = false, help = false;
    int o;
    while ((o = next_opt(argc, argv, "ah", longs)) != -1 && o != '?')
        switch (o) {
        case 'a': all = true; break;
        case 'h': help = true; break;
        }
    int npos = argc - optind;
    int st = opts_done(c, o, help, npos, 0, 1);
    if (st >= 0)
        return st;
    if (all == (npos == 1))
        return usage_error(c->name, all ? "give a client or --all, not both"
                                        : "which client? give CLIENT or --all");
    bool freeze = strcmp(c->name, "freeze") == 0;
    uint32_t id = TMEM_CLIENT_ALL;
    const char *who = all ? NULL : argv[optind];
    if (who && (st = resolve_client(c->name, who, &id)) != 0)
        return st;
    int rc = tmc_freeze(sock, id, freeze);
    if (rc < 0)
        return report(c->name, rc, who);
    char label[96];
    printf("%s %s\n", freeze ? "froze" : "thawed", all ? "every client" : client_label(id, label));
    return 0;
}

/* ---- end, set-uid ---- */
static int cmd_end(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = { HELP_OPT, { 0 } };
    bool help = false;
    int o;
    while ((o = next_opt(argc, argv, "h", longs)) != -1 && o != '?')
        if (o == 'h')
            help = true;
    int st = opts_done(c, o, help, argc - optind, 1, 1);
    if (st >= 0)
        return st;
    uint32_t id;
    const char *who = argv[optind];
    if ((st = resolve_client(c->name, who, &id)) != 0)
        return st;
    char label[96];
    client_label(id, label);        /* before it is gone */
    int rc = tmc_end_client(sock, id);
    if (rc < 0)
        return report(c->name, rc, who);
    printf("ended %s\n", label);
    return 0;
}

static int cmd_set_uid(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = {
        { "persistent-max", required_argument, NULL, 'p' }, HELP_OPT, { 0 } };
    bool help = false;
    const char *max = NULL;
    int o;
    while ((o = next_opt(argc, argv, "p:h", longs)) != -1 && o != '?')
        switch (o) {
        case 'p': max = optarg; break;
        case 'h': help = true; break;
        }
    int st = opts_done(c, o, help, argc - optind, 1, 1);
    if (st >= 0)
        return st;
    if (!max)
        return usage_error(c->name, "nothing to set: give --persistent-max");
    uint64_t v, bytes = 0;
    uint32_t uid;
    const char *who = argv[optind];
    if (parse_u64(who, &v) && v < UINT32_MAX) {
        uid = (uint32_t)v;
    } else {
        struct passwd *pw = getpwnam(who);
        if (!pw)
            return usage_error(c->name, "no user '%s'", who);
        uid = pw->pw_uid;
    }
    bool reset = strcmp(max, "default") == 0;
    if (!reset && strcmp(max, "none") != 0 && (!parse_size(max, &bytes) || bytes == UINT64_MAX))
        return usage_error(c->name, "--persistent-max: '%s' is not a size, none or default",
                           max);
    int rc = tmc_set_uid(sock, uid, bytes, reset);
    if (rc < 0)
        return report(c->name, rc, who);
    if (reset)
        printf("set uid %u: persistent share back to the default\n", (unsigned)uid);
    else if (bytes)
        printf("set uid %u: persistent share %" PRIu64 " MiB\n", (unsigned)uid, bytes >> 20);
    else
        printf("set uid %u: no bound on its persistent share\n", (unsigned)uid);
    return 0;
}

/* ---- config ---- */
static int cmd_config(const struct cmd *c, int argc, char **argv)
{
    bool json;
    int st = json_opts(c, argc, argv, &json, 1, 3);
    if (st >= 0)
        return st;
    const char *what = argv[optind];
    int npos = argc - optind - 1;
    char **pos = argv + optind + 1;
    if (!strcmp(what, "get")) {
        if (npos > 1)
            return usage_error(c->name, "get: one key at a time");
        struct tmw_ctl_config *v;
        size_t n;
        int rc = tmc_config_get(sock, npos ? pos[0] : NULL, &v, &n);
        if (rc < 0) {
            if (rc == -ENOENT && tmc_failed_at() == TMC_AT_DAEMON) {
                errmsg("config get: no key %s", pos[0]);
                return 1;
            }
            return report("config get", rc, NULL);
        }
        if (json) {
            json_t *obj = json_object();
            for (size_t i = 0; i < n; i++) {
                json_t *k = json_object();
                json_object_set_new(k, "value", json_string(v[i].value));
                json_object_set_new(k, "live", json_boolean(v[i].flags & TMW_CONFIG_LIVE));
                if (v[i].flags & TMW_CONFIG_BYTES)
                    json_object_set_new(k, "bytes", json_integer((json_int_t)v[i].bytes));
                json_object_set_new(obj, v[i].key, k);
            }
            free(v);
            return print_json_doc("keys", obj);
        }
        for (size_t i = 0; i < n; i++) {
            char b[24] = "";
            if ((v[i].flags & TMW_CONFIG_BYTES) && strchr(v[i].value, '%'))
                fmt_bytes(v[i].bytes, false, b);
            printf("%s = %s%s%s%s%s\n", v[i].key, v[i].value, b[0] ? " (" : "", b,
                   b[0] ? ")" : "", v[i].flags & TMW_CONFIG_LIVE ? "" : "  # restart to change");
        }
        free(v);
        return 0;
    }
    if (!strcmp(what, "set")) {
        if (npos != 2)
            return usage_error(c->name, "set: KEY VALUE");
        if (json)
            return usage_error(c->name, "set: --json is for get");
        char msg[600];
        int rc = tmc_config_set(sock, pos[0], pos[1], msg, sizeof(msg));
        if (rc < 0) {
            if (tmc_failed_at() == TMC_AT_DAEMON && msg[0] &&
                (rc == -ENOENT || rc == -EOPNOTSUPP || rc == -EINVAL)) {
                errmsg("config set: %s", msg);
                return 1;
            }
            if (rc == -E2BIG && tmc_failed_at() == TMC_AT_LOCAL)
                return usage_error(c->name, "set: the value is longer than %u bytes",
                                   TMW_CONFIG_VALUE_MAX - 1);
            return report("config set", rc, NULL);
        }
        printf("%s\n", msg[0] ? msg : "done");
        return 0;
    }
    return usage_error(c->name, "'%s': get or set", what);
}

/* ---- flush, freeable ---- */
static int cmd_flush(const struct cmd *c, int argc, char **argv)
{
    int st = only_help_opt(c, argc, argv, 1, 1);
    if (st >= 0)
        return st;
    uint64_t bytes, freed = 0;
    if (!parse_size(argv[optind], &bytes))
        return usage_error(c->name, "'%s' is not a size (like 64M, 1G, 4096 or all)",
                           argv[optind]);
    int rc = tmc_flush(sock, bytes, &freed);
    if (rc < 0)
        return report(c->name, rc, NULL);
    char b[24];
    printf("gave back %s (%" PRIu64 " pages) to the host\n", fmt_bytes(freed, false, b),
           freed / TMEM_PAGE_SIZE);
    return 0;
}

static int cmd_freeable(const struct cmd *c, int argc, char **argv)
{
    int st = only_help_opt(c, argc, argv, 0, 0);
    if (st >= 0)
        return st;
    uint64_t pages;
    int rc = tmc_freeable(sock, &pages);
    if (rc < 0)
        return report(c->name, rc, NULL);
    char b[24];
    printf("%" PRIu64 " pages (%s) could be given back to the host\n", pages,
           fmt_bytes(pages * TMEM_PAGE_SIZE, false, b));
    return 0;
}

/* ---- set ---- */
static int cmd_set(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = {
        { "weight", required_argument, NULL, 'w' }, { "cap", required_argument, NULL, 'c' },
        { "compress", required_argument, NULL, 'p' }, HELP_OPT, { 0 }
    };
    bool help = false;
    uint32_t mask = 0, weight = 0;
    uint64_t cap = 0, v;
    int codec = 0;
    int o;
    while ((o = next_opt(argc, argv, "w:c:p:h", longs)) != -1 && o != '?') {
        switch (o) {
        case 'h':
            help = true;
            break;
        case 'w':
            if (!parse_u64(optarg, &v) || v == 0 || v > TMEM_WEIGHT_MAX)
                return usage_error(c->name, "--weight: '%s' is not a weight (1 to %u)", optarg,
                                   TMEM_WEIGHT_MAX);
            weight = (uint32_t)v;
            mask |= TMW_SET_WEIGHT;
            break;
        case 'c':
            if (strcmp(optarg, "none") == 0)
                v = 0;
            else if (!parse_u64(optarg, &v) || v > TMEM_CAP_MAX)
                return usage_error(c->name, "--cap: '%s' is not a number of pages up to %llu "
                                   "(or none)", optarg, (unsigned long long)TMEM_CAP_MAX);
            cap = v;
            mask |= TMW_SET_CAP;
            break;
        case 'p':
            if (strcmp(optarg, "none") == 0)
                codec = TMEM_COMPRESS_NONE;
            else if (strcmp(optarg, "lz4") == 0)
                codec = TMEM_COMPRESS_LZ4;
            else if (strcmp(optarg, "zstd") == 0)
                codec = TMEM_COMPRESS_ZSTD;
            else
                return usage_error(c->name, "--compress: '%s' is not none, lz4 or zstd", optarg);
            mask |= TMW_SET_COMPRESS;
            break;
        }
    }
    int st = opts_done(c, o, help, argc - optind, 1, 1);
    if (st >= 0)
        return st;
    if (!mask)
        return usage_error(c->name, "nothing to set: give --weight, --cap or --compress");
    const char *who = argv[optind];
    uint32_t id;
    if ((st = resolve_client(c->name, who, &id)) != 0)
        return st;
    int rc = tmc_set(sock, id, mask, weight, cap, codec);
    if (rc < 0)
        return report(c->name, rc, who);
    char label[96];
    printf("set %s:", client_label(id, label));
    if (mask & TMW_SET_WEIGHT)
        printf(" weight %u", weight);
    if (mask & TMW_SET_CAP) {
        if (cap)
            printf(" cap %" PRIu64 " pages", cap);
        else
            printf(" cap none");
    }
    if (mask & TMW_SET_COMPRESS)
        printf(" compress %s", codec_name(codec));
    putchar('\n');
    return 0;
}

/* ---- shared-auth ---- */
static int cmd_shared_auth(const struct cmd *c, int argc, char **argv)
{
    int st = only_help_opt(c, argc, argv, 3, 3);
    if (st >= 0)
        return st;
    const char *who = argv[optind], *utext = argv[optind + 1], *what = argv[optind + 2];
    tmem_uuid_t u;
    if (tmem_uuid_parse(utext, &u) != 0)
        return usage_error(c->name, "'%s' is not a uuid "
                           "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", utext);
    int allow;
    if (strcmp(what, "allow") == 0)
        allow = 1;
    else if (strcmp(what, "deny") == 0)
        allow = 0;
    else
        return usage_error(c->name, "'%s': say allow or deny", what);
    uint32_t id;
    if ((st = resolve_client(c->name, who, &id)) != 0)
        return st;
    int rc = tmc_shared_auth(sock, id, u, allow);
    if (rc < 0)
        return report(c->name, rc, who);
    char label[96], text[37];
    tmem_uuid_format(u, text);
    printf("%s %s shared pools %s\n", allow ? "allowed" : "denied", client_label(id, label),
           text);
    return 0;
}

/* ---- save, restore ---- */
static int cmd_save(const struct cmd *c, int argc, char **argv)
{
    int st = only_help_opt(c, argc, argv, 2, 2);
    if (st >= 0)
        return st;
    const char *who = argv[optind], *file = argv[optind + 1];
    bool to_stdout = strcmp(file, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO))
        return usage_error(c->name, "will not write a save file to a terminal");
    uint32_t id;
    if ((st = resolve_client(c->name, who, &id)) != 0)
        return st;
    char label[96];
    client_label(id, label);
    int fd = to_stdout ? STDOUT_FILENO
                       : open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        errmsg("save: %s: %s", file, strerror(errno));
        return 1;
    }
    int64_t pages = tmc_save(sock, id, fd);
    int e = 0;
    if (pages >= 0 && !to_stdout && (fsync(fd) != 0 || (e = close(fd)) != 0))
        e = errno;
    else if (!to_stdout && pages < 0)
        close(fd);
    if (pages < 0 || e) {
        if (!to_stdout)
            unlink(file);
        if (pages < 0)
            return report(c->name, (int)pages, tmc_failed_at() == TMC_AT_LOCAL ? file : who);
        errmsg("save: %s: %s", file, strerror(e));
        return 1;
    }
    struct stat sb;
    char b[24] = "?";
    if (!to_stdout && stat(file, &sb) == 0)
        fmt_bytes((uint64_t)sb.st_size, false, b);
    fprintf(to_stdout ? stderr : stdout, "saved %s: %" PRId64 " persistent pages to %s (%s)\n",
            label, pages, to_stdout ? "standard output" : file, b);
    return 0;
}

static int cmd_restore(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = {
        { "name", required_argument, NULL, 'N' }, { "uid", required_argument, NULL, 'u' },
        HELP_OPT, { 0 }
    };
    bool help = false;
    const char *name = NULL;
    int64_t uid = -1;
    uint64_t v;
    int o;
    while ((o = next_opt(argc, argv, "h", longs)) != -1 && o != '?') {
        switch (o) {
        case 'h':
            help = true;
            break;
        case 'N':
            if (!*optarg || strlen(optarg) >= TMW_NAME_MAX)
                return usage_error(c->name, "--name: give 1 to %u bytes", TMW_NAME_MAX - 1);
            name = optarg;
            break;
        case 'u':
            if (parse_u64(optarg, &v) && v < UINT32_MAX) {
                uid = (int64_t)v;
            } else {
                struct passwd *pw = getpwnam(optarg);
                if (!pw)
                    return usage_error(c->name, "--uid: no user '%s'", optarg);
                uid = pw->pw_uid;
            }
            break;
        }
    }
    int st = opts_done(c, o, help, argc - optind, 1, 1);
    if (st >= 0)
        return st;
    const char *file = argv[optind];
    bool from_stdin = strcmp(file, "-") == 0;
    int fd = from_stdin ? STDIN_FILENO : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        errmsg("restore: %s: %s", file, strerror(errno));
        return 1;
    }
    /* A regular file's header says whose it is (and whether it is one). */
    struct tmw_save_header h;
    bool have_header = pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h);
    struct stat sb;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (!have_header || h.magic != TMW_SAVE_MAGIC)) {
        errmsg("restore: %s: not a tmem save file", file);
        close(fd);
        return 1;
    }
    int64_t pages = tmc_restore(sock, fd, name, uid);
    if (!from_stdin)
        close(fd);
    if (pages < 0)
        return report(c->name, (int)pages, from_stdin ? "standard input" : file);
    char who[TMW_NAME_MAX + 1] = "?";
    if (name)
        snprintf(who, sizeof(who), "%s", name);
    else if (have_header)
        snprintf(who, sizeof(who), "%.*s", (int)TMW_NAME_MAX - 1, h.name);
    if (uid < 0 && have_header)
        uid = h.uid;
    if (uid >= 0)
        printf("restored %" PRId64 " persistent pages for '%s' (uid %" PRId64 "); the client "
               "finds them when it connects\n", pages, who, uid);
    else
        printf("restored %" PRId64 " persistent pages; the client finds them when it "
               "connects\n", pages);
    return 0;
}

/* ---- top ---- */
static volatile sig_atomic_t top_quit, top_resized;

static void top_signal(int sig)
{
    if (sig == SIGWINCH)
        top_resized = 1;
    else
        top_quit = 1;
}

struct frame {
    char **lines;
    size_t n, cap;
};

static void frame_add(struct frame *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void frame_add(struct frame *f, const char *fmt, ...)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 32;
        char **l = realloc(f->lines, cap * sizeof(*l));
        if (!l)
            return;
        f->lines = l;
        f->cap = cap;
    }
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&f->lines[f->n], fmt, ap) >= 0)
        f->n++;
    va_end(ap);
}

static void frame_clear(struct frame *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->lines[i]);
    f->n = 0;
}

/* The previous sample, for rates. */
struct sample {
    uint64_t ms;
    struct tmw_ctl_stats s;
    struct tmw_ctl_client *cl;
    size_t n;
};

static const struct tmw_ctl_client *find_prev(const struct sample *p, uint32_t id)
{
    for (size_t i = 0; p && i < p->n; i++)
        if (p->cl[i].info.id == id)
            return &p->cl[i];
    return NULL;
}

static int by_memory(const void *a, const void *b)
{
    const struct tmw_ctl_client *x = a, *y = b;
    uint64_t mx = x->info.ephemeral_pages + x->info.persistent_pages;
    uint64_t my = y->info.ephemeral_pages + y->info.persistent_pages;
    if (mx != my)
        return mx < my ? 1 : -1;
    return by_id(a, b);
}

static void rate_text(char buf[16], uint64_t now, uint64_t then, double secs, bool have)
{
    if (!have || secs <= 0 || now < then)
        strcpy(buf, "-");
    else
        snprintf(buf, 16, "%.1f", (double)(now - then) / secs);
}

static void top_render(struct frame *f, const struct sample *cur, const struct sample *prev)
{
    const struct tmw_ctl_stats *s = &cur->s;
    const tmem_stats_t *t = &s->engine;
    double secs = prev ? (double)(cur->ms - prev->ms) / 1000.0 : 0;
    char a[24], b[24], c[24], d[24], u[32], r1[16], r2[16], r3[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    frame_add(f, "tmemd at %s - %02d:%02d:%02d up %s, %" PRIu64 " clients (%" PRIu64
              " parked), %" PRIu64 " pools", tmc_socket_path(sock), tm.tm_hour, tm.tm_min,
              tm.tm_sec, uptime_text(s->uptime_ms, u), s->connections + s->parked, s->parked,
              t->pools);
    char e[24], avail[48] = "";
    if (s->gov_mem_available)
        snprintf(avail, sizeof(avail), ", %s MemAvailable",
                 fmt_bytes(s->gov_mem_available, true, e));
    frame_add(f, "Memory: %s held of %s limit (max %s), %s metadata, %s free%s",
              fmt_bytes(t->bytes_held, true, a), fmt_bytes(t->max_bytes, true, b),
              fmt_bytes(s->gov_max, true, c), fmt_bytes(t->meta_bytes, true, d),
              fmt_bytes(t->frames_free * TMEM_PAGE_SIZE, true, u), avail);
    uint64_t stored = t->pages_whole + t->pages_compressed;
    frame_add(f, "Pages: %" PRIu64 " ephemeral, %" PRIu64 " persistent; %" PRIu64
              " compressed (%.0f%%), %" PRIu64 " same-filled, %" PRIu64 " deduped",
              t->ephemeral_pages, t->persistent_pages, t->pages_compressed,
              stored ? 100.0 * (double)t->pages_compressed / (double)stored : 0.0,
              t->pages_same_filled, t->pages_deduped);
    bool hp = prev != NULL;
    const tmem_stats_t *pt = hp ? &prev->s.engine : NULL;
    rate_text(r1, t->puts, hp ? pt->puts : 0, secs, hp);
    rate_text(r2, t->gets, hp ? pt->gets : 0, secs, hp);
    rate_text(r3, t->evictions, hp ? pt->evictions : 0, secs, hp);
    uint64_t dg = hp && t->gets >= pt->gets ? t->gets - pt->gets : 0;
    uint64_t dh = hp && t->gets_hit >= pt->gets_hit ? t->gets_hit - pt->gets_hit : 0;
    frame_add(f, "Ops/s: %s puts, %s gets (%.1f%% hits now, %.1f%% overall), %s evictions; "
              "refused %" PRIu64, r1, r2, hit_pct(dh, dg), hit_pct(t->gets_hit, t->gets), r3,
              t->refused_nomem + t->refused_quota + t->refused_frozen);
    frame_add(f, "Governor: limit %s, reserve %s, PSI some avg10 %.2f, %" PRIu64 " shrinks, %"
              PRIu64 " grows", fmt_bytes(s->gov_limit, true, a), fmt_bytes(s->gov_reserve, true, b),
              (double)s->gov_psi_some_avg10_x100 / 100.0, s->gov_shrinks, s->gov_grows);
    if (s->lending)
        frame_add(f, "Lent: %s ephemeral + %s persistent (the daemon's count; clients' pages "
                  "are their reports), %" PRIu64 " taken by force",
                  fmt_bytes(s->lent_bytes[0], true, a), fmt_bytes(s->lent_bytes[1], true, b),
                  s->lend_revoked);
    frame_add(f, "%s", "");
    int nw = name_width(cur->cl, cur->n);
    frame_add(f, "%5s %-*s %7s %5s %8s %8s %7s %7s %5s %5s %5s %s", "ID", nw, "NAME", "PID",
              "POOLS", "EPH", "PERS", "PUT/s", "GET/s", "HIT%", "COMP", "CPU%", "STATE");
    for (size_t k = 0; k < cur->n; k++) {
        const struct tmw_ctl_client *cl = &cur->cl[k];
        const tmem_client_info_t *i = &cl->info;
        const struct tmw_ctl_client *p = find_prev(prev, i->id);
        char pid[16], ratio[16], hit[16];
        snprintf(pid, sizeof(pid), cl->parked ? "-" : "%d", cl->pid);
        rate_text(r1, i->puts, p ? p->info.puts : 0, secs, p != NULL);
        rate_text(r2, i->gets, p ? p->info.gets : 0, secs, p != NULL);
        /* its worker's CPU, in percent of one CPU */
        rate_text(r3, cl->worker_cpu_ns / 10000000u, p ? p->worker_cpu_ns / 10000000u : 0,
                  secs, p != NULL);
        double r = comp_ratio(i);
        if (r > 0)
            snprintf(ratio, sizeof(ratio), "%.2f", r);
        else
            strcpy(ratio, "-");
        if (i->gets)
            snprintf(hit, sizeof(hit), "%.1f", hit_pct(i->gets_hit, i->gets));
        else
            strcpy(hit, "-");
        frame_add(f, "%5u %-*.*s %7s %5u %8" PRIu64 " %8" PRIu64 " %7s %7s %5s %5s %5s %s",
                  i->id, nw, nw, i->name, pid, i->nr_pools, i->ephemeral_pages,
                  i->persistent_pages, r1, r2, hit, ratio, r3, client_state(cl));
    }
    if (cur->n == 0)
        frame_add(f, "%s", "  (no clients)");
}

/* Draws a frame: in place on a terminal, else plainly with a blank line
 * between frames. */
static void top_draw(const struct frame *f, bool tty, bool first)
{
    if (!tty) {
        if (!first)
            putchar('\n');
        for (size_t i = 0; i < f->n; i++)
            puts(f->lines[i]);
        fflush(stdout);
        return;
    }
    struct winsize ws = { 0 };
    int cols = 80, rows = 24;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
        cols = ws.ws_col;
        rows = ws.ws_row;
    }
    fputs(first ? "\033[H\033[2J" : "\033[H", stdout);
    size_t max = rows > 1 ? (size_t)rows - 1 : 1;
    for (size_t i = 0; i < f->n && i < max; i++) {
        bool header = i == 6;           /* the table's header line */
        if (header)
            fputs("\033[7m", stdout);
        int len = (int)strlen(f->lines[i]);
        printf("%.*s", len < cols ? len : cols, f->lines[i]);
        if (header) {
            for (int k = len; k < cols; k++)
                putchar(' ');
            fputs("\033[0m", stdout);
        }
        fputs("\033[K\n", stdout);
    }
    fputs("\033[J", stdout);
    fflush(stdout);
}

static int top_sample(struct sample *s)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    s->ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    int rc = tmc_stats(sock, &s->s);
    if (rc < 0)
        return rc;
    rc = tmc_clients(sock, &s->cl, &s->n);
    if (rc < 0)
        return rc;
    if (s->n > 1)
        qsort(s->cl, s->n, sizeof(*s->cl), by_memory);
    return 0;
}

static int cmd_top(const struct cmd *c, int argc, char **argv)
{
    static const struct option longs[] = {
        { "delay", required_argument, NULL, 'd' }, { "iterations", required_argument, NULL, 'n' },
        HELP_OPT, { 0 }
    };
    bool help = false;
    double delay = 2.0;
    uint64_t iters = 0;
    int o;
    while ((o = next_opt(argc, argv, "d:n:h", longs)) != -1 && o != '?') {
        char *end;
        switch (o) {
        case 'h':
            help = true;
            break;
        case 'd':
            errno = 0;
            delay = strtod(optarg, &end);
            if (errno || *end || end == optarg || !(delay >= 0.1 && delay <= 3600))
                return usage_error(c->name, "-d: '%s' is not a delay in seconds (0.1 to 3600)",
                                   optarg);
            break;
        case 'n':
            if (!parse_u64(optarg, &iters) || iters == 0)
                return usage_error(c->name, "-n: '%s' is not a positive count", optarg);
            break;
        }
    }
    int st = opts_done(c, o, help, argc - optind, 0, 0);
    if (st >= 0)
        return st;

    bool tty = isatty(STDOUT_FILENO);
    bool keys = tty && isatty(STDIN_FILENO);
    struct termios saved, raw;
    if (keys && tcgetattr(STDIN_FILENO, &saved) == 0) {
        raw = saved;
        raw.c_lflag &= (tcflag_t) ~(ICANON | ECHO);
        raw.c_cc[VMIN] = 0;
        raw.c_cc[VTIME] = 0;
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    } else {
        keys = false;
    }
    struct sigaction sa = { .sa_handler = top_signal };    /* no SA_RESTART: poll wakes */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGWINCH, &sa, NULL);
    if (tty)
        fputs("\033[?25l", stdout);    /* hide the cursor */

    struct sample prev = { 0 }, cur = { 0 };
    bool have_prev = false;
    struct frame f = { 0 };
    int rc = 0;
    for (uint64_t k = 0; !top_quit && (!iters || k < iters); k++) {
        rc = top_sample(&cur);
        if (rc < 0)
            break;
        frame_clear(&f);
        top_render(&f, &cur, have_prev ? &prev : NULL);
        top_draw(&f, tty, k == 0);
        free(prev.cl);
        prev = cur;
        cur = (struct sample){ 0 };
        have_prev = true;
        if (iters && k + 1 == iters)
            break;
        /* Wait for the next refresh, a key or a signal. */
        uint64_t until = prev.ms + (uint64_t)(delay * 1000);
        while (!top_quit) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
            if (now >= until || top_resized)
                break;
            struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
            int r = poll(&p, keys ? 1 : 0, (int)(until - now));
            if (r > 0) {
                char ch;
                if (read(STDIN_FILENO, &ch, 1) == 1 && (ch == 'q' || ch == 'Q'))
                    top_quit = 1;
                else if (ch == ' ')
                    break;              /* refresh now */
            }
        }
        if (top_resized) {
            top_resized = 0;
            if (tty)
                fputs("\033[2J", stdout);
        }
    }
    if (tty)
        fputs("\033[?25h", stdout);
    if (keys)
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    fflush(stdout);
    frame_clear(&f);
    free(f.lines);
    free(prev.cl);
    free(cur.cl);
    if (rc < 0)
        return report(c->name, rc, NULL);
    return 0;
}

/* ---- help ---- */
static int cmd_help(const struct cmd *c, int argc, char **argv);

static const struct cmd cmds[] = {
    { "list", cmd_list, "[-l|--long] [--json] [--by cgroup] [CLIENT]",
      "list clients (a table), or the tmem-list text with -l",
      "Prints one line per client, connected or parked (restored and waiting for its\n"
      "owner): id, name, pid, uid, pools, ephemeral and persistent pages, puts, gets,\n"
      "hit rate, compression ratio (uncompressed over stored size of its compressed\n"
      "pages), weight, persistent-page cap, memory lent, memory held, state and\n"
      "cgroup.  With lent memory a client's private pools run in its own process:\n"
      "LENT is the daemon's count (it enforces it), the client's pages and calls are\n"
      "what its library reports.  HELD is what tmem holds for it: LENT, and 4 KiB for\n"
      "each page the daemon holds for it.  CGROUP is the client's cgroup when it\n"
      "connected (/proc/PID/cgroup: the memory controller's, else the unified one).\n\n"
      "  -l, --long    the daemon's tmem-list text with the long keys (G=, S=, C=, P=\n"
      "                lines, as Xen's xl tmem-list -l); C= lines add hb (held\n"
      "                bytes) and cg (cgroup)\n"
      "  --json        every figure of each client as a JSON array\n"
      "  --by cgroup   one line per cgroup: its clients, pages, lent and held memory\n"
      "                summed (with --json, an array of them)\n"
      "  CLIENT        only this client\n" },
    { "stats", cmd_stats, "[--json]", "the daemon-wide figures",
      "Prints the daemon's and the engine's figures: memory held and the limit, pages\n"
      "by kind, outcomes of puts and gets, eviction, requests, refusals and the\n"
      "governor's state.\n\n"
      "  --json       every figure as a JSON object\n" },
    { "freeze", cmd_freeze, "CLIENT | -a|--all", "refuse new puts of a client (or all)",
      "A frozen client keeps its pages and may get and flush them, but its new puts\n"
      "are refused.  Freezing all clients is the first step of taking memory back:\n"
      "freeze --all, freeable, flush SIZE, then thaw --all.\n\n"
      "  -a, --all    every client\n" },
    { "thaw", cmd_freeze, "CLIENT | -a|--all", "accept new puts of a frozen client again",
      "Undoes freeze.\n\n"
      "  -a, --all    every client\n" },
    { "flush", cmd_flush, "SIZE", "evict ephemeral pages and give memory back to the host",
      "Gives SIZE of memory back to the host: free frames first, then frames freed by\n"
      "evicting ephemeral pages (persistent pages are never evicted).  SIZE is bytes\n"
      "or a number with K, M, G or T (binary multiples: 64M, 1G), or all.  Prints how\n"
      "much was given back, which may be less.\n" },
    { "freeable", cmd_freeable, "", "how much memory flush could give back",
      "Prints the pages (free frames and frames that evicting every ephemeral page\n"
      "would free) that flush could give back now.\n" },
    { "set", cmd_set, "CLIENT [--weight N] [--cap PAGES] [--compress none|lz4|zstd]",
      "tune a client",
      "  -w, --weight N        the client's weight in eviction, 1 to 1000000 (default\n"
      "                        100); a client with twice the weight keeps twice the\n"
      "                        ephemeral pages\n"
      "  -c, --cap PAGES       the most persistent pages it may hold, at most 2^40 (0 or\n"
      "                        none: no cap);\n"
      "                        pages above a lowered cap stay, new puts are refused\n"
      "  -p, --compress CODEC  the codec for pages it puts from now on\n" },
    { "set-uid", cmd_set_uid, "UID --persistent-max SIZE|none|default",
      "bound what one user's clients hold in persistent pages",
      "The persistent memory (pages lent to its clients for persistent pools, and\n"
      "its clients' persistent pages in the daemon) that all clients of UID (a uid\n"
      "or a user name) may hold together; puts beyond are refused.  The default\n"
      "is the configured one (memory.uid_persistent for that uid, else\n"
      "memory.uid_persistent_max: half of max_memory).  The setting lasts until\n"
      "the daemon stops.\n\n"
      "  -p, --persistent-max SIZE   bytes, or K, M, G, T (binary multiples); none\n"
      "                              for no bound, default for the configured one\n" },
    { "config", cmd_config, "get [--json] [KEY] | set KEY VALUE",
      "show the daemon's configuration, or change a key while it runs",
      "get prints every key (or KEY) with its value now, as the configuration file\n"
      "would say it (a percentage also in bytes); a key that cannot change while\n"
      "tmemd runs is marked '# restart to change'.  set changes one of the keys that\n"
      "can: the memory limit (memory.max_memory), the governor's keys, log_level,\n"
      "max_clients, the defaults of new clients, shared_allow and the persistent\n"
      "shares (docs/configuration.md lists them).  VALUE is in the file's grammar\n"
      "(512M, 25%, true, ...); a list (shared_allow, uid_persistent) is replaced\n"
      "whole.  The change lasts until the next reload (SIGHUP) or restart.\n\n"
      "  --json       get: an object of keys, each with its value, live and bytes\n"
      "  KEY          section.key (memory.max_memory) or the key alone (max_memory)\n" },
    { "end", cmd_end, "CLIENT", "end a client",
      "Closes the client's connection and frees its pools (its persistent pages are\n"
      "lost; its process sees the daemon gone, and may connect again).  A parked\n"
      "client (restored, not yet adopted) is released.  Logged as an administrator's\n"
      "action.\n" },
    { "shared-auth", cmd_shared_auth, "CLIENT UUID allow|deny",
      "allow or deny a client to join shared pools of a uuid",
      "UUID is in the canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (the 16 bytes\n"
      "in order, as a filesystem's uuid is printed).  Denying does not remove a client\n"
      "already in the pool.\n" },
    { "save", cmd_save, "CLIENT FILE", "save a client's pools and persistent pages to FILE",
      "Writes the client's settings, pool definitions and persistent pages (never its\n"
      "ephemeral pages) to FILE (mode 0600; - for standard output).  New puts of the\n"
      "client are refused while the save runs.  The client keeps running; restore FILE\n"
      "into another tmemd moves it.\n" },
    { "restore", cmd_restore, "FILE [--name NAME] [--uid UID]",
      "restore a saved client into this daemon",
      "Sends FILE (- for standard input) to tmemd, which recreates the client's pools\n"
      "and persistent pages in a new client and keeps it for its owner: the next\n"
      "connection from that uid with that name adopts it and finds its pages.\n\n"
      "  --name NAME   restore under this name instead of the saved one\n"
      "  --uid UID     for this user (a uid or a user name) instead of the saved one\n" },
    { "top", cmd_top, "[-d SECONDS] [-n ITERATIONS]", "a live view of clients and memory",
      "Shows the daemon's memory, pages, rates of puts, gets and evictions, and the\n"
      "clients sorted by memory, refreshed in place.  q or Ctrl-C quits, space\n"
      "refreshes now.  When standard output is not a terminal, prints plain frames.\n\n"
      "  -d, --delay SECONDS       between refreshes (default 2)\n"
      "  -n, --iterations N        stop after N refreshes\n" },
    { "help", cmd_help, "[COMMAND]", "this help, or a command's", "" },
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static const struct cmd *find_cmd(const char *name)
{
    for (size_t i = 0; i < NCMDS; i++)
        if (strcmp(cmds[i].name, name) == 0)
            return &cmds[i];
    return NULL;
}

static int help_command(const struct cmd *c, FILE *f)
{
    fprintf(f, "usage: tmemctl [--socket PATH] %s %s\n\n%c%s.\n", c->name, c->usage,
            toupper((unsigned char)c->summary[0]), c->summary + 1);
    if (c->help[0])
        fprintf(f, "\n%s", c->help);
    fprintf(f, "\nCLIENT is a client id or a unique client name (see tmemctl list).\n");
    return 0;
}

static void help_all(FILE *f)
{
    fprintf(f,
            "usage: tmemctl [--socket PATH] COMMAND [ARGS]\n\n"
            "The control tool of tmemd, the transcendent memory daemon (administrators:\n"
            "root, tmemd's user, or members of its admin_group).\n\n"
            "Options:\n"
            "  --socket PATH   the control socket (default $TMEM_CONTROL_SOCKET, else %s);\n"
            "                  before or after the command\n"
            "  --help          this help\n"
            "  --version       the version\n\n"
            "Commands:\n", TMW_DEFAULT_CONTROL);
    for (size_t i = 0; i < NCMDS; i++)
        fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].summary);
    fprintf(f, "\n'tmemctl help COMMAND' or 'tmemctl COMMAND --help' describes a command; "
               "man tmemctl has it all.\n");
}

static int cmd_help(const struct cmd *c, int argc, char **argv)
{
    (void)c;
    if (argc > 2)
        return usage_error("help", "one command at a time");
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        help_all(stdout);
        return 0;
    }
    const struct cmd *k = find_cmd(argv[1]);
    if (!k) {
        errmsg("help: no command '%s' (see 'tmemctl --help')", argv[1]);
        return EXIT_USAGE;
    }
    return help_command(k, stdout);
}

/* The global --socket PATH (or --socket=PATH) may also come after the
 * command, as in 'tmemctl stats --socket /run/t/control.sock': taken out of
 * argv[1..] (up to a "--") before the command parses its own options.
 * Returns the new argc, -1 if --socket has no path. */
static int take_global_socket(int argc, char **argv)
{
    int out = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[out++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--socket") == 0) {
            if (i + 1 >= argc || !*argv[i + 1])
                return -1;
            sock = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--socket=", 9) == 0) {
            if (!argv[i][9])
                return -1;
            sock = argv[i] + 9;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    static const struct option longs[] = {
        { "socket", required_argument, NULL, 's' }, { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' }, { 0 }
    };
    opterr = 0;
    int o;
    while ((o = getopt_long(argc, argv, "+s:hV", longs, NULL)) != -1) {
        switch (o) {
        case 's':
            if (!*optarg)
                return usage_error(NULL, "--socket: empty path");
            sock = optarg;
            break;
        case 'h':
            help_all(stdout);
            return 0;
        case 'V':
            printf("tmemctl (tmem) %d.%d.%d\n", TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR,
                   TMEM_VERSION_PATCH);
            return 0;
        default:
            fprintf(stderr, "tmemctl: option %s is unknown or needs a value\n",
                    optind > 0 && optind <= argc ? argv[optind - 1] : "?");
            fprintf(stderr, "usage: tmemctl [--socket PATH] COMMAND [ARGS] (see tmemctl --help)\n");
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        help_all(stderr);
        return EXIT_USAGE;
    }
    const struct cmd *c = find_cmd(argv[optind]);
    if (!c) {
        errmsg("no command '%s' (see 'tmemctl --help')", argv[optind]);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    argc = take_global_socket(argc, argv);
    if (argc < 0)
        return usage_error(NULL, "--socket: needs a path");
    optind = 0;                         /* getopt starts over for the command */
    return c->run(c, argc, argv);
}
