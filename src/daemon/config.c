/* SPDX-License-Identifier: MIT */
/*
 * config.c - tmemd's configuration: the embedded default, INI files
 * (libinih), single keys from the command line, sizes and percentages, and
 * the checks that need the host (MemTotal).  Files read (the configuration,
 * meminfo) are opened without blocking and must be regular files: a FIFO
 * or a device given by mistake stops the start with a clear error instead
 * of blocking it or reading for ever.
 *
 * The last part changes the configuration while the daemon runs (SIGHUP,
 * tmemctl config set): it needs the rest of the daemon.
 *
 * One code path: the embedded default is INI text parsed by the same handler
 * as a file, so every key has exactly one parser and one set of limits.  A
 * file is read into a copy of the configuration and committed only when
 * every line was good.  Errors are one line naming the place (file:line, or
 * section.key for the command line), the key and what is wrong.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <ini.h>
#include <math.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/governor.h"
#include "daemon/lend.h"
#include "util/size.h"

#define MiB (1ull << 20)
#define TMD_CONFIG_MAX   (1 * MiB)     /* the largest configuration file */
#define TMD_PROC_MAX     (1 * MiB)     /* what is read of meminfo for MemTotal */
#define TMD_MIN_LIMIT    (1 * MiB)     /* the smallest max_memory (the engine tests run at 1 MiB) */
#define TMD_RESERVE_FLOOR (256 * MiB)  /* a percentage reserve is at least this */

/* The embedded default.  dist/tmemd.conf is the same configuration with a
 * comment on every key (tests/daemon/test_config.c checks they agree). */
const char tmd_default_config[] =
    "[daemon]\n"
    "socket = " TMW_DEFAULT_SOCKET "\n"
    "control_socket = " TMW_DEFAULT_CONTROL "\n"
    "socket_mode = 0666\n"
    "control_socket_mode = 0660\n"
    "admin_group =\n"
    "max_clients = 256\n"
    "max_clients_per_uid = 64\n"
    "spin_us = 50\n"
    "log_level = info\n"
    "state_file =\n"
    "park_timeout = 0\n"
    "\n"
    "[memory]\n"
    "max_memory = 50%\n"
    "compress = lz4\n"
    "zstd_level = 1\n"
    "compress_max = 3584\n"
    "dedup = true\n"
    "dedup_across_clients = false\n"
    "lend = true\n"
    "shrink_deadline_ms = 200\n"
    "shared_auth_required = true\n"
    "shared_allow =\n"
    "default_weight = 100\n"
    "default_cap = 0\n"
    "uid_persistent_max = 50%\n"
    "uid_persistent =\n"
    "\n"
    "[governor]\n"
    "enabled = true\n"
    "interval_ms = 1000\n"
    "reserve = 10%\n"
    "psi_threshold = 10.0\n"
    "shrink_step = 10\n"
    "meminfo = /proc/meminfo\n"
    "psi = /proc/pressure/memory\n"
    "\n"
    "[metrics]\n"
    "address = 127.0.0.1\n"
    "port = 9464\n"
    "per_client = false\n";

/* ------------------------------------------------------------------------
 * Files
 * ---------------------------------------------------------------------- */
const char *tmd_file_kind(unsigned mode)
{
    switch (mode & S_IFMT) {
    case S_IFREG:  return "a regular file";
    case S_IFDIR:  return "a directory";
    case S_IFCHR:  return "a character device";
    case S_IFBLK:  return "a block device";
    case S_IFIFO:  return "a FIFO";
    case S_IFSOCK: return "a socket";
    case S_IFLNK:  return "a symbolic link";
    default:       return "an unknown kind of file";
    }
}

int tmd_open_regular(const char *path, int flags, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | flags);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        snprintf(why, whylen, "%s", strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file (%s)", tmd_file_kind(st.st_mode));
        close(fd);
        return -2;
    }
    return fd;
}

/* ------------------------------------------------------------------------
 * Sizes
 * ---------------------------------------------------------------------- */
int tmd_parse_size(const char *s, uint64_t *bytes, double *pct)
{
    if (!s || !*s || !isdigit((unsigned char)*s))
        return -1;              /* empty, negative, leading blanks or garbage */
    const char *p = s;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.' || *p == '%') {
        /* a percentage: digits, an optional fraction, '%' */
        if (*p == '.') {
            p++;
            if (!isdigit((unsigned char)*p))
                return -1;
            while (isdigit((unsigned char)*p))
                p++;
        }
        if (p[0] != '%' || p[1] != '\0' || !pct || p - s > 32)
            return -1;
        char num[40];
        memcpy(num, s, (size_t)(p - s));
        num[p - s] = '\0';
        double v = strtod(num, NULL);
        if (!isfinite(v) || v > 100.0)
            return -1;
        *pct = v;
        if (bytes)
            *bytes = 0;
        return 0;
    }
    /* a size: the grammar every program shares (src/util/size.h) */
    if (tmu_parse_size(s, bytes) != 0)
        return -1;
    if (pct)
        *pct = 0;
    return 0;
}

/* ------------------------------------------------------------------------
 * The keys
 * ---------------------------------------------------------------------- */
enum ktype {
    K_PATH,     /* a socket path: non-empty, fits sun_path */
    K_FILE,     /* a file path: non-empty */
    K_STR,      /* any text that fits (may be empty) */
    K_MODE,     /* octal file mode */
    K_UINT,     /* unsigned integer in [min, max] */
    K_INT,      /* signed integer in [min, max] */
    K_BOOL,
    K_LOGLEVEL,
    K_CODEC,
    K_DOUBLE,   /* decimal number in [min, max] */
    K_SIZE,     /* size or percentage: the bytes field at off, the pct field at off2 */
    K_SHARED,   /* shared-pool rules: "UUID:UID" or "UUID:*", separated by blanks or commas */
    K_UIDSHARE, /* persistent shares of uids: "UID:SIZE", separated by blanks or commas */
    K_ADDR,     /* an IPv4 or IPv6 address literal (no name, no brackets, no zone) */
};

struct key {
    const char *section, *name;
    enum ktype type;
    size_t off, size;       /* where in struct tmd_config, and the field's size */
    double min, max;
    size_t off2;
};

#define F(m) offsetof(struct tmd_config, m), sizeof(((struct tmd_config *)0)->m)

static const struct key keys[] = {
    { "daemon", "socket",               K_PATH,     F(socket_path), 0, 0, 0 },
    { "daemon", "control_socket",       K_PATH,     F(control_path), 0, 0, 0 },
    { "daemon", "socket_mode",          K_MODE,     F(socket_mode), 0, 07777, 0 },
    { "daemon", "control_socket_mode",  K_MODE,     F(control_mode), 0, 07777, 0 },
    { "daemon", "admin_group",          K_STR,      F(admin_group), 0, 0, 0 },
    { "daemon", "max_clients",          K_UINT,     F(max_clients), 1, 65536, 0 },
    { "daemon", "max_clients_per_uid",  K_UINT,     F(max_clients_per_uid), 0, 65536, 0 },
    { "daemon", "spin_us",              K_UINT,     F(spin_us), 0, 1000000, 0 },
    { "daemon", "log_level",            K_LOGLEVEL, F(log_level), 0, 0, 0 },
    { "daemon", "state_file",           K_STR,      F(state_file), 0, 0, 0 },
    { "daemon", "park_timeout",         K_UINT,     F(park_timeout), 0, 31536000, 0 },
    { "memory", "max_memory",           K_SIZE,     F(max_memory), 0, 0,
      offsetof(struct tmd_config, max_memory_pct) },
    { "memory", "compress",             K_CODEC,    F(engine.compress), 0, 0, 0 },
    { "memory", "zstd_level",           K_INT,      F(engine.zstd_level), -7, 22, 0 },
    { "memory", "compress_max",         K_UINT,     F(engine.compress_max), 1,
      TMEM_PAGE_SIZE - 1, 0 },
    { "memory", "dedup",                K_BOOL,     F(engine.dedup), 0, 0, 0 },
    { "memory", "dedup_across_clients", K_BOOL,     F(engine.dedup_across_clients), 0, 0, 0 },
    { "memory", "lend",                 K_BOOL,     F(lend), 0, 0, 0 },
    { "memory", "shrink_deadline_ms",   K_UINT,     F(shrink_deadline_ms), 1, 60000, 0 },
    { "memory", "shared_auth_required", K_BOOL,     F(engine.shared_auth_required), 0, 0, 0 },
    { "memory", "shared_allow",         K_SHARED,   F(shared_allow), 0, 0, 0 },
    { "memory", "uid_persistent",       K_UIDSHARE, F(uid_share), 0, 0, 0 },
    { "memory", "default_weight",       K_UINT,     F(engine.default_weight), 0,
      TMEM_WEIGHT_MAX, 0 },
    { "memory", "default_cap",          K_UINT,     F(engine.default_cap), 0,
      (double)TMEM_CAP_MAX, 0 },
    { "memory", "uid_persistent_max",   K_SIZE,     F(uid_pers_max), 0, 0,
      offsetof(struct tmd_config, uid_pers_max_pct) },
    { "governor", "enabled",            K_BOOL,     F(governor), 0, 0, 0 },
    { "governor", "interval_ms",        K_UINT,     F(governor_interval_ms), 10, 3600000, 0 },
    { "governor", "reserve",            K_SIZE,     F(reserve), 0, 0,
      offsetof(struct tmd_config, reserve_pct) },
    { "governor", "psi_threshold",      K_DOUBLE,   F(psi_threshold), 0, 100, 0 },
    { "governor", "shrink_step",        K_DOUBLE,   F(shrink_step_pct), 0.1, 90, 0 },
    { "governor", "meminfo",            K_FILE,     F(meminfo_path), 0, 0, 0 },
    { "governor", "psi",                K_FILE,     F(psi_path), 0, 0, 0 },
    { "metrics", "address",             K_ADDR,     F(metrics_address), 0, 0, 0 },
    { "metrics", "port",                K_INT,      F(metrics_port), -1, 65535, 0 },
    { "metrics", "per_client",          K_BOOL,     F(metrics_per_client), 0, 0, 0 },
};

#undef F

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const struct key *find_key(const char *section, const char *name, const char **why)
{
    const struct key *found = NULL;
    bool section_known = false;
    for (size_t i = 0; i < NKEYS; i++) {
        bool any_section = !section || !*section;
        if (!any_section && strcmp(keys[i].section, section) != 0)
            continue;
        section_known = true;
        if (strcmp(keys[i].name, name) != 0)
            continue;
        if (found) {            /* only with no section; no two keys share a name now */
            *why = "ambiguous key (name its section)";
            return NULL;
        }
        found = &keys[i];
    }
    if (!found)
        *why = section_known ? "unknown key" : "unknown section";
    return found;
}

/* Strict integers: optional '-' (signed keys only), digits, nothing else. */
static int parse_int(const char *s, bool allow_neg, int base, long long *out)
{
    bool neg = false;
    if (*s == '-' && allow_neg) {
        neg = true;
        s++;
    }
    if (!*s)
        return -1;
    unsigned long long v = 0;
    for (; *s; s++) {
        int d = *s - '0';
        if (d < 0 || d >= base)
            return -1;
        if (v > (unsigned long long)(INT64_MAX - d) / (unsigned)base)
            return -1;
        v = v * (unsigned)base + (unsigned)d;
    }
    *out = neg ? -(long long)v : (long long)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    /* digits with an optional fraction: no signs, exponents, hex, inf or nan */
    const char *p = s;
    if (!isdigit((unsigned char)*p))
        return -1;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return -1;
    *out = strtod(s, NULL);
    return isfinite(*out) ? 0 : -1;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static void put_text(struct tmd_config *cfg, const struct key *k, const char *v)
{
    char *dst = (char *)cfg + k->off;
    memset(dst, 0, k->size);
    memcpy(dst, v, strlen(v));
}

/* [memory] shared_allow: "UUID:UID" or "UUID:*" rules, separated by blanks
 * or commas.  Each line adds its rules to those before (a line holds only a
 * few: inih reads 200 characters); an empty value clears the list. */
/* "UID:SIZE" items (SIZE a size, a percentage of max_memory, or 0 for no
 * bound); a line adds to the items before, an empty one clears them. */
static int parse_uid_shares(struct tmd_config *cfg, const char *v, char *why, size_t whylen)
{
    struct tmd_uid_share sh[TMD_UID_SHARES];
    uint32_t n = 0;
    if (v[strspn(v, " \t,")] != 0) {
        n = cfg->nuid_share;
        memcpy(sh, cfg->uid_share, n * sizeof(sh[0]));
    }
    while (*v) {
        size_t len = strcspn(v, " \t,");
        if (len == 0) {
            v++;
            continue;
        }
        char item[64];
        if (len >= sizeof(item) || n == TMD_UID_SHARES) {
            snprintf(why, whylen, len >= sizeof(item) ? "an item is too long"
                                                      : "more than %d uids", TMD_UID_SHARES);
            return -1;
        }
        memcpy(item, v, len);
        item[len] = 0;
        v += len;
        char *colon = strchr(item, ':');
        long long uid;
        if (!colon || (*colon = 0, parse_int(item, false, 10, &uid) != 0) ||
            uid > UINT32_MAX - 1ll) {
            snprintf(why, whylen, "'%s': expected UID:SIZE (a uid, a size or a percentage)",
                     item);
            return -1;
        }
        if (tmd_parse_size(colon + 1, &sh[n].bytes, &sh[n].pct) != 0 || sh[n].pct > 100) {
            snprintf(why, whylen, "'%s' is not a size or a percentage of max_memory",
                     colon + 1);
            return -1;
        }
        sh[n++].uid = (uint32_t)uid;
    }
    memcpy(cfg->uid_share, sh, n * sizeof(sh[0]));
    cfg->nuid_share = n;
    return 0;
}

static int parse_shared(struct tmd_config *cfg, const char *v, char *why, size_t whylen)
{
    struct tmd_shared_rule rules[TMD_SHARED_RULES];
    uint32_t n = 0;
    if (v[strspn(v, " \t,")] != 0 && cfg->nshared_allow <= TMD_SHARED_RULES) {
        n = cfg->nshared_allow;         /* not empty: add to the rules before */
        memcpy(rules, cfg->shared_allow, n * sizeof(rules[0]));
    }
    while (*v) {
        size_t len = strcspn(v, " \t,");
        if (len == 0) {
            v++;
            continue;
        }
        char item[128];
        if (len >= sizeof(item) || n == TMD_SHARED_RULES) {
            snprintf(why, whylen, len >= sizeof(item) ? "a rule is too long"
                                                      : "more than %d rules", TMD_SHARED_RULES);
            return -1;
        }
        memcpy(item, v, len);
        item[len] = 0;
        v += len;
        char *colon = strchr(item, ':');
        if (!colon) {
            snprintf(why, whylen, "'%s': expected UUID:UID or UUID:*", item);
            return -1;
        }
        *colon = 0;
        long long uid = -1;
        if (tmem_uuid_parse(item, &rules[n].uuid) != 0) {
            snprintf(why, whylen, "'%s' is not a uuid (8-4-4-4-12 hex digits)", item);
            return -1;
        }
        if (strcmp(colon + 1, "*") != 0 &&
            (parse_int(colon + 1, false, 10, &uid) != 0 || uid > UINT32_MAX - 1ll)) {
            snprintf(why, whylen, "'%s' is not a uid or *", colon + 1);
            return -1;
        }
        rules[n++].uid = uid;
    }
    memcpy(cfg->shared_allow, rules, n * sizeof(rules[0]));
    cfg->nshared_allow = n;
    return 0;
}

/* Applies value to key k; on error writes the reason to why. */
static int apply(struct tmd_config *cfg, const struct key *k, const char *v, char *why,
                 size_t whylen)
{
    void *field = (char *)cfg + k->off;
    long long n;
    switch (k->type) {
    case K_PATH:
    case K_FILE:
    case K_STR:
        if (k->type != K_STR && !*v) {
            snprintf(why, whylen, "a path is needed");
            return -1;
        }
        if (strlen(v) >= k->size) {
            snprintf(why, whylen, "too long (at most %zu bytes)", k->size - 1);
            return -1;
        }
        put_text(cfg, k, v);
        return 0;
    case K_MODE:
        if (parse_int(v, false, 8, &n) != 0 || n > (long long)k->max) {
            snprintf(why, whylen, "'%s' is not an octal file mode (e.g. 0660)", v);
            return -1;
        }
        *(unsigned *)field = (unsigned)n;
        return 0;
    case K_UINT:
    case K_INT:
        if (parse_int(v, k->type == K_INT, 10, &n) != 0 || (double)n < k->min ||
            (double)n > k->max) {
            snprintf(why, whylen, "'%s' is not an integer from %.0f to %.0f", v, k->min,
                     k->max);
            return -1;
        }
        if (k->type == K_INT)
            *(int *)field = (int)n;
        else if (k->size == sizeof(uint64_t))
            *(uint64_t *)field = (uint64_t)n;
        else
            *(uint32_t *)field = (uint32_t)n;
        return 0;
    case K_BOOL: {
        int b;
        if (parse_bool(v, &b) != 0) {
            snprintf(why, whylen, "'%s' is not a boolean (true/false, yes/no, on/off, 1/0)",
                     v);
            return -1;
        }
        *(int *)field = b;
        return 0;
    }
    case K_LOGLEVEL: {
        static const struct { const char *name; int level; } lv[] = {
            { "error", LOG_ERR }, { "warning", LOG_WARNING },
            { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };
        for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++)
            if (strcasecmp(v, lv[i].name) == 0) {
                *(int *)field = lv[i].level;
                return 0;
            }
        snprintf(why, whylen, "'%s' is not a log level (error, warning, info, debug)", v);
        return -1;
    }
    case K_CODEC: {
        static const char *const codec[] = { "none", "lz4", "zstd" };
        _Static_assert(TMEM_COMPRESS_NONE == 0 && TMEM_COMPRESS_LZ4 == 1 &&
                       TMEM_COMPRESS_ZSTD == 2, "codec names follow TMEM_COMPRESS_*");
        for (int i = 0; i < 3; i++)
            if (strcasecmp(v, codec[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        snprintf(why, whylen, "'%s' is not a codec (none, lz4, zstd)", v);
        return -1;
    }
    case K_DOUBLE: {
        double x;
        if (parse_double(v, &x) != 0 || x < k->min || x > k->max) {
            snprintf(why, whylen, "'%s' is not a number from %g to %g", v, k->min, k->max);
            return -1;
        }
        *(double *)field = x;
        return 0;
    }
    case K_SIZE: {
        uint64_t bytes;
        double pct;
        if (tmd_parse_size(v, &bytes, &pct) != 0) {
            snprintf(why, whylen, "'%s' is not a size (e.g. 512M, 4G, 1048576) or a "
                     "percentage (e.g. 25%%)", v);
            return -1;
        }
        *(uint64_t *)field = bytes;
        *(double *)((char *)cfg + k->off2) = pct;
        return 0;
    }
    case K_SHARED:
        return parse_shared(cfg, v, why, whylen);
    case K_UIDSHARE:
        return parse_uid_shares(cfg, v, why, whylen);
    case K_ADDR: {
        struct in6_addr a;
        if (strlen(v) >= k->size || (inet_pton(AF_INET, v, &a) != 1 &&
                                     inet_pton(AF_INET6, v, &a) != 1)) {
            snprintf(why, whylen, "'%s' is not an IPv4 or IPv6 address (e.g. 127.0.0.1, "
                     "0.0.0.0, ::1, ::)", v);
            return -1;
        }
        put_text(cfg, k, v);
        return 0;
    }
    }
    snprintf(why, whylen, "internal error: key type");
    return -1;
}

int tmd_config_set(struct tmd_config *cfg, const char *section, const char *key,
                   const char *value, char *err, size_t errlen)
{
    const char *what = NULL;
    char why[200];
    const struct key *k = find_key(section, key, &what);
    const char *sec = section && *section ? section : k ? k->section : "";
    if (!k) {
        snprintf(err, errlen, "%s%s%s: %s", sec, *sec ? "." : "", key, what);
        return -1;
    }
    if (!value || apply(cfg, k, value, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "%s.%s: %s", k->section, k->name, value ? why : "no value");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The keys by name, and their values as text (tmemctl config, reloads)
 * ---------------------------------------------------------------------- */
/* The keys that can change while the daemon runs (docs/configuration.md,
 * "Changing the configuration while tmemd runs"); tmd_reload and tmd_config_set_live (below) apply them.
 * Every other key needs a restart. */
static const char *const live_keys[] = {
    "daemon.max_clients", "daemon.max_clients_per_uid", "daemon.log_level",
    "daemon.park_timeout",
    "memory.max_memory", "memory.compress", "memory.shrink_deadline_ms", "memory.shared_allow",
    "memory.uid_persistent", "memory.default_weight", "memory.default_cap",
    "memory.uid_persistent_max",
    "governor.enabled", "governor.interval_ms", "governor.reserve", "governor.psi_threshold",
    "governor.shrink_step", "governor.meminfo", "governor.psi",
};

size_t tmd_config_nkeys(void)
{
    return NKEYS;
}

const char *tmd_config_key(size_t i, char *out, size_t len)
{
    if (i >= NKEYS)
        return NULL;
    snprintf(out, len, "%s.%s", keys[i].section, keys[i].name);
    return out;
}

int tmd_config_find(const char *name)
{
    const char *dot = strchr(name, '.');
    for (size_t i = 0; i < NKEYS; i++) {
        size_t sl = strlen(keys[i].section);
        if (dot ? (size_t)(dot - name) == sl && !strncmp(name, keys[i].section, sl) &&
                      !strcmp(dot + 1, keys[i].name)
                : !strcmp(name, keys[i].name))
            return (int)i;
    }
    return -1;
}

bool tmd_config_key_live(size_t i)
{
    char name[80];
    if (!tmd_config_key(i, name, sizeof(name)))
        return false;
    for (size_t j = 0; j < sizeof(live_keys) / sizeof(live_keys[0]); j++)
        if (!strcmp(live_keys[j], name))
            return true;
    return false;
}

/* A size in the file's grammar: the largest unit that divides it. */
static void format_size_text(char *out, size_t len, uint64_t v)
{
    static const char units[] = "KMGT";
    int u = -1;
    while (u < 3 && v && (v & ((1ull << (10 * (u + 2))) - 1)) == 0)
        u++;
    if (u < 0)
        snprintf(out, len, "%llu", (unsigned long long)v);
    else
        snprintf(out, len, "%llu%c", (unsigned long long)(v >> (10 * (u + 1))), units[u]);
}

int tmd_config_format(const struct tmd_config *cfg, size_t i, char *out, size_t len,
                      uint64_t *bytes)
{
    if (i >= NKEYS || !len)
        return -1;
    const struct key *k = &keys[i];
    const void *field = (const char *)cfg + k->off;
    out[0] = 0;
    if (bytes)
        *bytes = 0;
    switch (k->type) {
    case K_PATH:
    case K_FILE:
    case K_STR:
    case K_ADDR:
        snprintf(out, len, "%.*s", (int)strnlen(field, k->size), (const char *)field);
        return 0;
    case K_MODE:
        snprintf(out, len, "%04o", *(const unsigned *)field);
        return 0;
    case K_UINT:
        if (k->size == sizeof(uint64_t))
            snprintf(out, len, "%llu", (unsigned long long)*(const uint64_t *)field);
        else
            snprintf(out, len, "%u", (unsigned)*(const uint32_t *)field);
        return 0;
    case K_INT:
        snprintf(out, len, "%d", *(const int *)field);
        return 0;
    case K_BOOL:
        snprintf(out, len, "%s", *(const int *)field ? "true" : "false");
        return 0;
    case K_LOGLEVEL: {
        int lv = *(const int *)field;
        snprintf(out, len, "%s", lv <= LOG_ERR ? "error" : lv <= LOG_WARNING ? "warning"
                                 : lv <= LOG_INFO ? "info" : "debug");
        return 0;
    }
    case K_CODEC: {
        static const char *const codec[] = { "none", "lz4", "zstd" };
        int c = *(const int *)field;
        snprintf(out, len, "%s", c >= 0 && c <= 2 ? codec[c] : "?");
        return 0;
    }
    case K_DOUBLE:
        snprintf(out, len, "%.10g", *(const double *)field);
        return 0;
    case K_SIZE: {
        double pct = *(const double *)((const char *)cfg + k->off2);
        if (bytes)
            *bytes = *(const uint64_t *)field;
        if (pct > 0)
            snprintf(out, len, "%.10g%%", pct);
        else
            format_size_text(out, len, *(const uint64_t *)field);
        return 1;
    }
    case K_SHARED: {
        size_t o = 0;
        for (uint32_t r = 0; r < cfg->nshared_allow && r < TMD_SHARED_RULES && o < len; r++) {
            char u[37];
            tmem_uuid_format(cfg->shared_allow[r].uuid, u);
            int n = cfg->shared_allow[r].uid < 0
                        ? snprintf(out + o, len - o, "%s%s:*", r ? ", " : "", u)
                        : snprintf(out + o, len - o, "%s%s:%lld", r ? ", " : "", u,
                                   (long long)cfg->shared_allow[r].uid);
            o += n > 0 ? (size_t)n : 0;
        }
        return o < len ? 0 : -1;
    }
    case K_UIDSHARE: {
        size_t o = 0;
        for (uint32_t r = 0; r < cfg->nuid_share && r < TMD_UID_SHARES && o < len; r++) {
            const struct tmd_uid_share *sh = &cfg->uid_share[r];
            char v[40];
            if (sh->pct > 0)
                snprintf(v, sizeof(v), "%.10g%%", sh->pct);
            else
                format_size_text(v, sizeof(v), sh->bytes);
            int n = snprintf(out + o, len - o, "%s%u:%s", r ? ", " : "", (unsigned)sh->uid, v);
            o += n > 0 ? (size_t)n : 0;
        }
        return o < len ? 0 : -1;
    }
    }
    return -1;
}

/* ------------------------------------------------------------------------
 * INI text: the default and files share this reader and handler
 * ---------------------------------------------------------------------- */
struct parse {
    struct tmd_config *cfg;
    const char *where;          /* file name, or "embedded default" */
    /* the source: a FILE, else a string */
    FILE *f;
    const char *s;
    uint64_t bytes;             /* read from f so far */
    bool too_big;               /* f had more than TMD_CONFIG_MAX bytes: read no more */
    int lineno;                 /* the line last handed to inih */
    int err_line;               /* the first error found by us (0: none) */
    char err[256];
};

/* Hands inih one line at a time, with the leading blanks stripped: an
 * indented line is then an ordinary line, never inih's "continuation of the
 * previous value", and our line count stays exact.  A line longer than
 * inih's buffer is an error (we do not hand it over cut in two). */
static char *reader(char *buf, int num, void *arg)
{
    struct parse *p = arg;
    char line[1024];
    size_t len = 0;
    bool eof = true, too_long = false;
    int c;
    for (;;) {
        if (p->f) {
            c = p->too_big ? EOF : getc(p->f);
            if (c != EOF && ++p->bytes > TMD_CONFIG_MAX) {
                p->too_big = true;      /* it grew while read, or said no size */
                c = EOF;
            }
        } else {
            c = *p->s ? (unsigned char)*p->s++ : EOF;
        }
        if (c == EOF)
            break;
        eof = false;
        if (len < sizeof(line) - 1)
            line[len++] = (char)c;
        else
            too_long = true;
        if (c == '\n')
            break;
    }
    if (eof)
        return NULL;
    line[len] = '\0';
    p->lineno++;
    char *start = line;
    while (*start == ' ' || *start == '\t')
        start++;
    size_t n = strlen(start);
    if (n && start[n - 1] != '\n' && n + 1 < sizeof(line)) {
        start[n++] = '\n';      /* the last line of a text without a final newline */
        start[n] = '\0';
    }
    if (too_long || num < 3 || n + 1 > (size_t)num) {
        if (!p->err_line) {
            p->err_line = p->lineno;
            snprintf(p->err, sizeof(p->err), "%s:%d: line too long (at most %d characters)",
                     p->where, p->lineno, num - 2);
        }
        start = "\n";
        n = 1;
    }
    memcpy(buf, start, n + 1);
    return buf;
}

static int handler(void *arg, const char *section, const char *name, const char *value)
{
    struct parse *p = arg;
    if (p->err_line)
        return 1;               /* one error is reported: the first */
    char why[200];
    const struct key *k = NULL;
    const char *what = "a key outside a section";
    if (*section)
        k = find_key(section, name, &what);
    if (!k) {
        p->err_line = p->lineno;
        snprintf(p->err, sizeof(p->err), "%s:%d: [%s] %s: %s", p->where, p->lineno, section,
                 name, what);
        return 0;
    }
    if (apply(p->cfg, k, value, why, sizeof(why)) != 0) {
        p->err_line = p->lineno;
        snprintf(p->err, sizeof(p->err), "%s:%d: [%s] %s: %s", p->where, p->lineno, section,
                 name, why);
        return 0;
    }
    return 1;
}

/* Parses the text of p's source into a copy of cfg, committed on success. */
static int parse_ini(struct tmd_config *cfg, struct parse *p, char *err, size_t errlen)
{
    struct tmd_config tmp = *cfg;
    p->cfg = &tmp;
    int rc = ini_parse_stream(reader, p, handler, p);
    if (rc != 0 && (p->err_line == 0 || (rc > 0 && rc < p->err_line))) {
        /* inih's own complaint: a line that is neither a section, a key = value
         * nor a comment (its count agrees with ours up to our first error) */
        if (rc > 0)
            snprintf(err, errlen, "%s:%d: syntax error (expected [section] or key = value)",
                     p->where, rc);
        else
            snprintf(err, errlen, "%s: cannot parse (%s)", p->where,
                     rc == -2 ? "out of memory" : "read error");
        return -1;
    }
    if (p->err_line) {
        snprintf(err, errlen, "%s", p->err);
        return -1;
    }
    *cfg = tmp;
    return 0;
}

int tmd_config_default(struct tmd_config *cfg)
{
    char err[300];
    memset(cfg, 0, sizeof(*cfg));
    tmem_config_init(&cfg->engine);
    struct parse p = { .where = "embedded default", .s = tmd_default_config };
    if (parse_ini(cfg, &p, err, sizeof(err)) != 0) {
        fprintf(stderr, "tmemd: %s\n", err);       /* a bug: the tests catch it */
        return -1;
    }
    return 0;
}

int tmd_config_load(struct tmd_config *cfg, const char *path, char *err, size_t errlen)
{
    /* a FIFO or a device would block or never end: regular files only,
     * opened without blocking, and of a bounded size */
    char why[100];
    int fd = tmd_open_regular(path, 0, why, sizeof(why));
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > (off_t)TMD_CONFIG_MAX) {
        snprintf(err, errlen, "%s: larger than a configuration file may be (1 MiB)", path);
        close(fd);
        return -1;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    struct parse p = { .where = path, .f = f };
    int rc = parse_ini(cfg, &p, err, errlen);
    if (p.too_big) {
        snprintf(err, errlen, "%s: larger than a configuration file may be (1 MiB)", path);
        rc = -1;
    } else if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------
 * Resolution against the host
 * ---------------------------------------------------------------------- */
/* MemTotal in bytes from a meminfo file (a regular one: /proc's are), 0 if
 * not found in its first TMD_PROC_MAX bytes. */
static uint64_t read_memtotal(const char *path)
{
    char why[100];
    int fd = tmd_open_regular(path, 0, why, sizeof(why));
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    char line[256];
    unsigned long long kb = 0;
    for (size_t n = 0; n < TMD_PROC_MAX && fgets(line, sizeof(line), f); n += strlen(line))
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return kb > UINT64_MAX / 1024 ? 0 : (uint64_t)kb * 1024;
}

void tmd_format_size(char *out, size_t len, uint64_t bytes)
{
    static const char *const units[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    unsigned u = 0;
    while (u < 6 && bytes >> (10 * (u + 1)))
        u++;
    if (u == 0 || (bytes & ((1ull << (10 * u)) - 1)) == 0)
        snprintf(out, len, "%llu %s", (unsigned long long)(bytes >> (10 * u)), units[u]);
    else
        snprintf(out, len, "%.1f %s", (double)bytes / (double)(1ull << (10 * u)), units[u]);
}

int tmd_config_resolve(struct tmd_config *cfg, char *err, size_t errlen)
{
    /* MemTotal is needed for percentages and the governor, and checks a
     * fixed max_memory when it can be read */
    uint64_t total = read_memtotal(cfg->meminfo_path);
    bool need_total = cfg->max_memory_pct > 0 || cfg->reserve_pct > 0 || cfg->governor;
    if (need_total && !total) {
        snprintf(err, errlen, "governor.meminfo: no MemTotal in %s%s", cfg->meminfo_path,
                 cfg->governor ? "" : " (needed for percentages)");
        return -1;
    }
    cfg->memtotal = total;
    if (cfg->max_memory_pct == 0 && total && cfg->max_memory > total) {
        char want[32], have[32];
        tmd_format_size(want, sizeof(want), cfg->max_memory);
        tmd_format_size(have, sizeof(have), total);
        if (strcmp(want, have) == 0) {          /* too close for one decimal */
            snprintf(want, sizeof(want), "%llu bytes", (unsigned long long)cfg->max_memory);
            snprintf(have, sizeof(have), "%llu bytes", (unsigned long long)total);
        }
        snprintf(err, errlen, "memory.max_memory: %s is more than this host's memory (%s)",
                 want, have);
        return -1;
    }
    if (cfg->max_memory_pct > 0)
        cfg->max_memory = (uint64_t)((double)total * cfg->max_memory_pct / 100.0) &
                          ~(uint64_t)(TMEM_PAGE_SIZE - 1);
    if (cfg->reserve_pct > 0) {
        uint64_t floor = total / 2 < TMD_RESERVE_FLOOR ? total / 2 : TMD_RESERVE_FLOOR;
        cfg->reserve = (uint64_t)((double)total * cfg->reserve_pct / 100.0);
        if (cfg->reserve < floor)
            cfg->reserve = floor;
    }
    if (cfg->max_memory < TMD_MIN_LIMIT) {
        snprintf(err, errlen, "memory.max_memory: %llu bytes is below the minimum of 1 MiB",
                 (unsigned long long)cfg->max_memory);
        return -1;
    }
    if (cfg->governor && cfg->reserve >= total) {
        snprintf(err, errlen, "governor.reserve: %llu bytes is not below MemTotal (%llu bytes)",
                 (unsigned long long)cfg->reserve, (unsigned long long)total);
        return -1;
    }
    if (cfg->governor && total - cfg->reserve < TMD_MIN_LIMIT) {
        snprintf(err, errlen, "governor.reserve: leaves less than 1 MiB of MemTotal "
                 "(%llu bytes) for tmem", (unsigned long long)total);
        return -1;
    }
    if (strcmp(cfg->socket_path, cfg->control_path) == 0) {
        snprintf(err, errlen, "daemon.control_socket: the same path as daemon.socket (%s)",
                 cfg->socket_path);
        return -1;
    }
    if (cfg->state_file[0] && cfg->state_file[0] != '/') {
        snprintf(err, errlen, "daemon.state_file: '%s' is not an absolute path",
                 cfg->state_file);
        return -1;
    }
    if (cfg->state_file[0] && (strcmp(cfg->state_file, cfg->socket_path) == 0 ||
                               strcmp(cfg->state_file, cfg->control_path) == 0)) {
        snprintf(err, errlen, "daemon.state_file: the same path as a socket (%s)",
                 cfg->state_file);
        return -1;
    }
    if (cfg->engine.compress_max == 0 || cfg->engine.compress_max >= TMEM_PAGE_SIZE) {
        snprintf(err, errlen, "memory.compress_max: must be from 1 to %u",
                 TMEM_PAGE_SIZE - 1);
        return -1;
    }
    /* a uid's persistent share: a percentage is of max_memory */
    if (cfg->uid_pers_max_pct > 0)
        cfg->uid_pers_max = (uint64_t)((double)cfg->max_memory * cfg->uid_pers_max_pct / 100.0);
    if (cfg->uid_pers_max_pct > 100 || cfg->uid_pers_max > cfg->max_memory) {
        snprintf(err, errlen, "memory.uid_persistent_max: more than max_memory");
        return -1;
    }
    for (uint32_t i = 0; i < cfg->nuid_share; i++) {
        struct tmd_uid_share *s = &cfg->uid_share[i];
        if (s->pct > 0)
            s->bytes = (uint64_t)((double)cfg->max_memory * s->pct / 100.0);
        if (s->bytes > cfg->max_memory) {
            snprintf(err, errlen, "memory.uid_persistent: uid %u's share is more than "
                     "max_memory", (unsigned)s->uid);
            return -1;
        }
    }
    /* The engine is opened with the ceiling: its address space is sized
     * from it, and the governor moves the limit below it. */
    cfg->engine.max_bytes = cfg->max_memory;
    return 0;
}

/* ------------------------------------------------------------------------
 * Changing the configuration while the daemon runs: SIGHUP reads the file
 * again (tmd_reload), tmemctl config set changes one key
 * (tmd_config_set_live).
 *
 * Both build a whole new configuration first (a reload: the embedded
 * default, the file, the command line over it; a set: the configuration in
 * force with one key changed), resolve and check it as at the start, and
 * only then apply what changed.  A key that can change live
 * (tmd_config_key_live) is applied at once; any other keeps its old value,
 * which a reload says in one line per key and a set refuses.  Applying:
 *
 *   - max_memory: the limit comes down at once when it is above the new
 *     ceiling (the engine evicts ephemeral pages and gives frames back, and
 *     clients are asked for lent units, as when the governor lowers it);
 *     with the governor off the limit is the new max_memory, with it on the
 *     governor grows toward a raised one as it grows after pressure.  It may
 *     not go above what the engine reserved at start (max_memory_room);
 *   - the governor's keys: read at its next interval; turning it off puts
 *     the limit at max_memory, turning it on starts its thread;
 *   - log_level at once; max_clients, park_timeout, shrink_deadline_ms at
 *     their next use; compress, default_weight, default_cap and
 *     shared_allow for the clients that connect from then on;
 *   - the persistent shares (uid_persistent_max, uid_persistent): each
 *     connected uid's engine group follows its new share (pages above a
 *     lowered one stay; new puts are refused), and lent memory is checked
 *     against it at each grant.
 *
 * Locking: struct tmd (daemon.h).  The main thread (SIGHUP) and control
 * threads (config set) both come here; reconf_lock makes them one at a
 * time.
 */
#define VALUE_MAX 1100

/* key i differs between a and b (as the file would say it) */
static bool differs(const struct tmd_config *a, const struct tmd_config *b, size_t i)
{
    char va[VALUE_MAX], vb[VALUE_MAX];
    uint64_t ba, bb;
    tmd_config_format(a, i, va, sizeof(va), &ba);
    tmd_config_format(b, i, vb, sizeof(vb), &bb);
    return strcmp(va, vb) != 0 || ba != bb;
}

/* key i's value for the log: "(empty)", "64M", "50% (32 MiB)" */
static const char *describe(const struct tmd_config *cfg, size_t i, char *out, size_t len)
{
    uint64_t bytes;
    int kind = tmd_config_format(cfg, i, out, len, &bytes);
    size_t n = strlen(out);
    if (!n)
        snprintf(out, len, "(empty)");
    else if (kind == 1 && strchr(out, '%') && n + 2 < len) {
        out[n++] = ' ';
        out[n++] = '(';
        tmd_format_size(out + n, len - n, bytes);
        n = strlen(out);
        if (n + 1 < len)
            snprintf(out + n, len - n, ")");
    }
    return out;
}

static bool key_is(size_t i, const char *name)
{
    char k[80];
    return tmd_config_key(i, k, sizeof(k)) && !strcmp(k, name);
}

/* What a reload or a set may not do even to a live key. */
static int check_next(struct tmd *d, const struct tmd_config *next, char *why, size_t whylen)
{
    if (next->max_memory > d->max_memory_room) {
        char a[32], b[32];
        tmd_format_size(a, sizeof(a), next->max_memory);
        tmd_format_size(b, sizeof(b), d->max_memory_room);
        snprintf(why, whylen, "memory.max_memory: %s is more than this daemon can reach "
                 "without a restart (its engine reserved %s at start)", a, b);
        return -1;
    }
    return 0;
}

/* Sets the limit (limit_lock held), logs what it cost. */
static void set_limit(struct tmd *d, uint64_t to, const char *why)
{
    uint64_t evicted, released;
    tmd_set_limit_logged(d, atomic_load(&d->gov.limit), to, "configuration", why, &evicted,
                         &released);
}

/* Applies the live keys of next that differ from the configuration in
 * force (reconf_lock held); the others are left alone.  source: "SIGHUP"
 * or "uid 0 (pid 42)", for the log.  How many keys changed. */
static unsigned apply_live(struct tmd *d, const struct tmd_config *next, const char *source)
{
    struct tmd_config old = d->cfg;     /* only writers change it: reconf_lock */
    bool changed[128] = { false };
    unsigned n = 0;
    size_t nkeys = tmd_config_nkeys();
    for (size_t i = 0; i < nkeys && i < 128; i++)
        if (tmd_config_key_live(i) && differs(&old, next, i)) {
            changed[i] = true;
            n++;
        }
    if (!n)
        return 0;
    bool gov_off = old.governor && !next->governor, gov_on = !old.governor && next->governor;
    if (gov_off)
        tmd_governor_stop(d);   /* not under limit_lock: its thread may wait for it */

    pthread_mutex_lock(&d->limit_lock);
    pthread_mutex_lock(&d->cfg_lock);
    struct tmd_config *c = &d->cfg;
    c->max_clients = next->max_clients;
    c->max_clients_per_uid = next->max_clients_per_uid;
    c->log_level = next->log_level;
    c->park_timeout = next->park_timeout;
    c->max_memory = next->max_memory;
    c->max_memory_pct = next->max_memory_pct;
    c->memtotal = next->memtotal;
    c->engine.compress = next->engine.compress;
    c->engine.default_weight = next->engine.default_weight;
    c->engine.default_cap = next->engine.default_cap;
    c->shrink_deadline_ms = next->shrink_deadline_ms;
    memcpy(c->shared_allow, next->shared_allow, sizeof(c->shared_allow));
    c->nshared_allow = next->nshared_allow;
    c->uid_pers_max = next->uid_pers_max;
    c->uid_pers_max_pct = next->uid_pers_max_pct;
    memcpy(c->uid_share, next->uid_share, sizeof(c->uid_share));
    c->nuid_share = next->nuid_share;
    c->governor = next->governor;
    c->governor_interval_ms = next->governor_interval_ms;
    c->reserve = next->reserve;
    c->reserve_pct = next->reserve_pct;
    c->psi_threshold = next->psi_threshold;
    c->shrink_step_pct = next->shrink_step_pct;
    memcpy(c->meminfo_path, next->meminfo_path, sizeof(c->meminfo_path));
    memcpy(c->psi_path, next->psi_path, sizeof(c->psi_path));
    pthread_mutex_unlock(&d->cfg_lock);

    for (size_t i = 0; i < nkeys && i < 128; i++) {
        if (!changed[i])
            continue;
        char name[80], was[VALUE_MAX], now[VALUE_MAX];
        tmd_config_key(i, name, sizeof(name));
        tmd_log(LOG_INFO, "configuration (%s): %s: %s -> %s", source, name,
                describe(&old, i, was, sizeof(was)), describe(next, i, now, sizeof(now)));
    }
    tmd_log_set_level(next->log_level);

    /* the limit: at most the new ceiling at once; the ceiling itself when
     * no governor moves it */
    uint64_t limit = atomic_load(&d->gov.limit);
    if (!next->governor && !gov_off && limit != next->max_memory)
        set_limit(d, next->max_memory, "memory.max_memory changed (no governor)");
    else if (next->governor && !gov_on && limit > next->max_memory)
        set_limit(d, next->max_memory, "memory.max_memory lowered below it");
    if (gov_off)
        set_limit(d, next->max_memory, "the governor was turned off: the limit is max_memory");
    pthread_mutex_unlock(&d->limit_lock);

    if (gov_on && tmd_governor_start(d) != 0) {
        /* it said why; the configuration says what runs */
        pthread_mutex_lock(&d->limit_lock);
        pthread_mutex_lock(&d->cfg_lock);
        d->cfg.governor = 0;
        pthread_mutex_unlock(&d->cfg_lock);
        set_limit(d, next->max_memory, "the governor could not start: the limit is max_memory");
        pthread_mutex_unlock(&d->limit_lock);
    }
    bool shares = false;
    for (size_t i = 0; i < nkeys && i < 128; i++)
        shares |= changed[i] && (key_is(i, "memory.uid_persistent_max") ||
                                 key_is(i, "memory.uid_persistent") ||
                                 key_is(i, "memory.max_memory"));
    if (shares)
        tmd_uid_refresh_all(d);
    return n;
}

/* The command line's settings over cfg (as at the start). */
static int put_overrides(struct tmd *d, struct tmd_config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < d->noverrides; i++) {
        const struct tmd_override *o = &d->overrides[i];
        char why[256];
        if (tmd_config_set(cfg, o->section, o->key, o->value, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "the command line: %s", why);
            return -1;
        }
    }
    return 0;
}

void tmd_reload(struct tmd *d)
{
    const char *path = d->config_path;
    if (!path) {
        tmd_log(LOG_INFO, "SIGHUP: no configuration file to read ($TMEMD_CONFIG is empty): "
                "nothing changes");
        return;
    }
    struct tmd_config *next = malloc(sizeof(*next));
    if (!next) {
        tmd_log(LOG_ERR, "SIGHUP: out of memory: the configuration in force stays");
        return;
    }
    char err[512];
    int rc = tmd_config_default(next);
    bool read = false;
    struct stat st;
    if (rc == 0 && (d->config_named || stat(path, &st) == 0 || errno != ENOENT)) {
        rc = tmd_config_load(next, path, err, sizeof(err));
        read = true;
    } else if (rc != 0) {
        snprintf(err, sizeof(err), "the embedded default does not parse");
    }
    if (rc == 0)
        rc = put_overrides(d, next, err, sizeof(err));
    if (rc == 0)
        rc = tmd_config_resolve(next, err, sizeof(err));
    if (rc == 0)
        rc = check_next(d, next, err, sizeof(err));
    if (rc != 0) {
        tmd_log(LOG_ERR, "SIGHUP: %s: the file is rejected; the configuration in force stays",
                err);
        free(next);
        return;
    }
    pthread_mutex_lock(&d->reconf_lock);
    /* what cannot change while the daemon runs keeps its old value */
    unsigned kept = 0;
    for (size_t i = 0; i < tmd_config_nkeys(); i++) {
        if (tmd_config_key_live(i) || !differs(&d->cfg, next, i))
            continue;
        char name[80], was[VALUE_MAX], now[VALUE_MAX];
        tmd_config_key(i, name, sizeof(name));
        tmd_log(LOG_WARNING, "SIGHUP: %s cannot change while tmemd runs: kept at %s (%s "
                "takes effect at the next start)", name, describe(&d->cfg, i, was, sizeof(was)),
                describe(next, i, now, sizeof(now)));
        kept++;
    }
    unsigned n = apply_live(d, next, "SIGHUP");
    pthread_mutex_unlock(&d->reconf_lock);
    if (read)
        tmd_log(LOG_INFO, "SIGHUP: reloaded %s: %u key%s changed, %u kept until a restart",
                path, n, n == 1 ? "" : "s", kept);
    else
        tmd_log(LOG_INFO, "SIGHUP: no %s: the embedded default: %u key%s changed, %u kept "
                "until a restart", path, n, n == 1 ? "" : "s", kept);
    free(next);
}

int tmd_config_set_live(struct tmd *d, const char *key, const char *value, const char *who,
                        char *why, size_t whylen)
{
    int i = tmd_config_find(key);
    if (i < 0) {
        snprintf(why, whylen, "%s: no such key", key);
        return -ENOENT;
    }
    char name[80];
    tmd_config_key((size_t)i, name, sizeof(name));
    if (!tmd_config_key_live((size_t)i)) {
        snprintf(why, whylen, "%s cannot change while tmemd runs (set it in the file and "
                 "restart)", name);
        return -EOPNOTSUPP;
    }
    struct tmd_config *next = malloc(sizeof(*next));
    if (!next) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    pthread_mutex_lock(&d->reconf_lock);
    *next = d->cfg;
    char err[512];
    const char *dot = strchr(name, '.');
    char section[16];
    snprintf(section, sizeof(section), "%.*s", (int)(dot - name), name);
    /* a list (shared_allow, uid_persistent) is replaced, not added to as
     * by a line of the file */
    int rc = 0;
    if (!strcmp(name, "memory.shared_allow") || !strcmp(name, "memory.uid_persistent"))
        rc = tmd_config_set(next, section, dot + 1, "", err, sizeof(err));
    if (rc == 0)
        rc = tmd_config_set(next, section, dot + 1, value, err, sizeof(err));
    if (rc == 0)
        rc = tmd_config_resolve(next, err, sizeof(err));
    if (rc == 0)
        rc = check_next(d, next, err, sizeof(err));
    if (rc != 0) {
        snprintf(why, whylen, "%s", err);
        pthread_mutex_unlock(&d->reconf_lock);
        free(next);
        return -EINVAL;
    }
    char was[VALUE_MAX], now[VALUE_MAX];
    describe(&d->cfg, (size_t)i, was, sizeof(was));
    describe(next, (size_t)i, now, sizeof(now));
    apply_live(d, next, who);
    pthread_mutex_unlock(&d->reconf_lock);
    snprintf(why, whylen, "%s: %s -> %s", name, was, now);
    free(next);
    return 0;
}
