/* SPDX-License-Identifier: MIT */
/*
 * stats.c - the mount's statistics as text: one "key value" line each.
 *
 * The same text is the contents of the read-only file /.cachefs-stats at
 * the mount's root (a snapshot taken when it is opened), what SIGUSR1
 * prints to stderr, and what the mount prints when it is unmounted.
 * Counters are pages unless their name says bytes (docs/cachefs.md).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cachefs.h"

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
    if (o->len + 1 >= o->size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->size - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->size - o->len ? (size_t)n : o->size - o->len - 1;
}

#define U(name, v) put(&o, "%s %" PRIu64 "\n", name, (uint64_t)(v))
#define C(field) U(#field, atomic_load_explicit(&st->field, memory_order_relaxed))

size_t cfs_stats_format(struct cfs_fs *fs, char *buf, size_t size)
{
    struct out o = { buf, size, 0 };
    if (size)
        buf[0] = '\0';
    const struct cfs_stats *st = &fs->st;
    tmem_cleancache_stats_t cs;
    bool have_cc = cfs_tier_stats(&fs->tier, &cs);

    pthread_mutex_lock(&fs->cache.lock);
    uint32_t used = fs->cache.pc.used;
    size_t inodes = fs->cache.count;
    pthread_mutex_unlock(&fs->cache.lock);

    put(&o, "backing %s\n", fs->backing.path);
    U("cache_pages", fs->opt->cache_pages);
    U("cache_used", used);
    U("inodes", inodes);
    U("delay_us", fs->opt->delay_us);
    C(local_hits);
    C(local_misses);
    C(local_evictions);
    C(local_dropped);
    C(puts_skipped);
    put(&o, "tmem %s\n", fs->opt->no_tmem ? "off" : have_cc ? "on" : "waiting");
    U("client_id", atomic_load(&fs->tier.client_id));
    U("connected", atomic_load(&fs->tier.client_id) != 0);
    put(&o, "uuid %s\n", fs->opt->shared ? fs->tier.uuid_text : "-");
    U("shared_wanted", fs->opt->shared);
    U("shared", atomic_load(&fs->tier.is_shared));
    C(tier_joins);
    U("cc_succ_gets", cs.succ_gets);
    U("cc_failed_gets", cs.failed_gets);
    U("cc_puts", cs.puts);
    U("cc_invalidates", cs.invalidates);
    U("cc_puts_refused", cs.puts_refused);
    U("cc_reconnects", cs.reconnects);
    U("cc_disconnected", cs.disconnected);
    C(tier_hits);
    C(tier_batches);
    C(backing_reads);
    C(backing_writes);
    C(backing_read_bytes);
    C(backing_write_bytes);
    C(read_bytes);
    C(write_bytes);
    C(opens);
    C(version_changes);
    C(open_waits);
    C(untrusted_opens);
    return o.len;
}

void cfs_stats_print(struct cfs_fs *fs, const char *why)
{
    char buf[4096];
    cfs_stats_format(fs, buf, sizeof(buf));
    fprintf(stderr, CFS_PROG ": statistics (%s):\n", why);
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        fprintf(stderr, "  %s\n", line);
    fflush(stderr);
}
