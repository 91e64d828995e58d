/* SPDX-License-Identifier: MIT */
/*
 * host.c - semantic tests in-process or through tmemd (host.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>

#include "host.h"

#if TT_DAEMON
#include "ctl/ctl_client.h"
#include "td_harness.h"
#endif

struct tt_host {
    tmem_t *t;
#if TT_DAEMON
    td_t td;
    unsigned nclients;          /* open, as the daemon should count them */
    tmem_client_t **opened;     /* handles not closed yet, closed by th_close */
    unsigned nopened, capopened;
#endif
};

#if TT_DAEMON
/* When the daemon misbehaves: its report (a sanitizer's, from its first
 * line) or the end of its log, before td_stop() removes the directory. */
static void daemon_log(const tt_host *h)
{
    char path[300], line[512];
    snprintf(path, sizeof(path), "%s/tmemd.log", h->td.dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "(no tmemd log at %s; TD_VERBOSE=1 sends it to stderr)\n", path);
        return;
    }
    long from = -1, n = 0;
    while (fgets(line, sizeof(line), f)) {
        if (from < 0 && (strstr(line, "Sanitizer") || strstr(line, "runtime error")))
            from = n;
        n++;
    }
    if (from < 0)
        from = n > 40 ? n - 40 : 0;
    rewind(f);
    fprintf(stderr, "---- tmemd log from line %ld of %ld (%s) ----\n", from + 1, n, path);
    for (long k = 0; k < n && k < from + 120 && fgets(line, sizeof(line), f); k++)
        if (k >= from)
            fputs(line, stderr);
    fprintf(stderr, "---- end of the tmemd log excerpt ----\n");
    fclose(f);
}
#endif

tt_host *th_open_cfg(const tmem_config_t *cfg)
{
    tt_host *h = calloc(1, sizeof(*h));
    assert_non_null(h);
#if TT_DAEMON
    tmem_config_t def;
    if (!cfg) {
        tmem_config_init(&def);
        cfg = &def;
    }
    static const char *const codecs[] = { "none", "lz4", "zstd" };
    char opt[9][96];
    snprintf(opt[0], sizeof(opt[0]), "memory.max_memory=%" PRIu64, cfg->max_bytes);
    snprintf(opt[1], sizeof(opt[1]), "memory.compress=%s", codecs[cfg->compress % 3]);
    snprintf(opt[2], sizeof(opt[2]), "memory.dedup=%s", cfg->dedup ? "true" : "false");
    snprintf(opt[3], sizeof(opt[3]), "memory.shared_auth_required=%s",
             cfg->shared_auth_required ? "true" : "false");
    snprintf(opt[4], sizeof(opt[4]), "memory.dedup_across_clients=%s",
             cfg->dedup_across_clients ? "true" : "false");
    snprintf(opt[5], sizeof(opt[5]), "memory.compress_max=%u", cfg->compress_max);
    snprintf(opt[6], sizeof(opt[6]), "memory.zstd_level=%d", cfg->zstd_level);
    snprintf(opt[7], sizeof(opt[7]), "memory.default_weight=%u", cfg->default_weight);
    snprintf(opt[8], sizeof(opt[8]), "memory.default_cap=%" PRIu64, cfg->default_cap);
    /* the engine's rules alone, as in process: no uid's persistent share
     * (the isolation tests check that one) */
    const char *args[] = { "--set", opt[0], "--set", opt[1], "--set", opt[2],
                           "--set", opt[3], "--set", opt[4], "--set", opt[5],
                           "--set", opt[6], "--set", opt[7], "--set", opt[8],
                           "--set", "memory.uid_persistent_max=0", NULL };
    assert_int_equal(td_start(&h->td, args), 0);
#else
    h->t = tmem_open(cfg);
    assert_non_null(h->t);
#endif
    return h;
}

tt_host *th_open(uint64_t max_bytes, int codec, int dedup)
{
    tmem_config_t cfg;
    tt_config(&cfg, max_bytes, codec, dedup);
    return th_open_cfg(&cfg);
}

tmem_t *th_engine(tt_host *h) { return h->t; }

tmem_client_t *th_client_try(tt_host *h, const char *name)
{
#if TT_DAEMON
    tmem_client_t *c = tmem_connect(h->td.sock, name);
    if (!c)
        return NULL;
    h->nclients++;
    if (h->nopened == h->capopened) {
        h->capopened = h->capopened ? 2 * h->capopened : 16;
        h->opened = realloc(h->opened, h->capopened * sizeof(*h->opened));
        assert_non_null(h->opened);
    }
    h->opened[h->nopened++] = c;
    return c;
#else
    return tmem_client_open(h->t, name);
#endif
}

tmem_client_t *th_client(tt_host *h, const char *name)
{
    tmem_client_t *c = th_client_try(h, name);
    if (!c)
        fprintf(stderr, "th_client(%s): %s\n", name, strerror(errno));
    assert_non_null(c);
    return c;
}

void th_client_close(tt_host *h, tmem_client_t *c)
{
    (void)h;
#if TT_DAEMON
    if (tmem_client_is_remote(c)) {
        bool known = false;
        for (unsigned i = 0; i < h->nopened; i++) {
            if (h->opened[i] == c) {
                h->opened[i] = h->opened[--h->nopened];
                known = true;
                break;
            }
        }
        tmem_client_close(c);
        if (known && h->nclients)
            h->nclients--;
        if (td_wait_connections(&h->td, h->nclients) != 0) {
            daemon_log(h);
            fail_msg("tmemd did not come down to %u connections within 10 s of a close "
                     "(did it die? see its log above)", h->nclients);
        }
        return;
    }
#endif
    tmem_client_close(c);
}

void th_stats(tt_host *h, tmem_stats_t *out)
{
#if TT_DAEMON
    struct tmw_ctl_stats s;
    int rc = tmc_stats(h->td.ctl, &s);
    if (rc != 0) {
        daemon_log(h);
        fail_msg("tmc_stats: %d (%s)", rc, strerror(-rc));
    }
    *out = s.engine;
#else
    assert_int_equal(tmem_stats_get(h->t, out), 0);
#endif
}

int th_local_pools(tt_host *h)
{
#if TT_DAEMON
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(h->td.ctl, &s), 0);
    return s.lending != 0;
#else
    (void)h;
    return 1;
#endif
}

int th_client_info(tt_host *h, uint32_t id, tmem_client_info_t *out)
{
#if TT_DAEMON
    struct tmw_ctl_client *a = NULL;
    size_t n = 0;
    assert_int_equal(tmc_clients(h->td.ctl, &a, &n), 0);
    int rc = -ENOENT;
    for (size_t i = 0; i < n; i++) {
        if (a[i].info.id == id) {
            *out = a[i].info;
            rc = 0;
        }
    }
    free(a);
    return rc;
#else
    return tmem_client_info(h->t, id, out);
#endif
}

int th_freeze(tt_host *h, uint32_t id, int freeze)
{
#if TT_DAEMON
    return tmc_freeze(h->td.ctl, id, freeze);
#else
    return freeze ? tmem_admin_freeze(h->t, id) : tmem_admin_thaw(h->t, id);
#endif
}

int th_shared_auth(tt_host *h, uint32_t id, tmem_uuid_t uuid, int allow)
{
#if TT_DAEMON
    return tmc_shared_auth(h->td.ctl, id, uuid, allow);
#else
    return tmem_admin_shared_auth(h->t, id, uuid, allow);
#endif
}

int th_set_weight(tt_host *h, uint32_t id, uint32_t weight)
{
#if TT_DAEMON
    return tmc_set(h->td.ctl, id, TMW_SET_WEIGHT, weight, 0, 0);
#else
    return tmem_admin_set_weight(h->t, id, weight);
#endif
}

int th_set_cap(tt_host *h, uint32_t id, uint64_t cap)
{
#if TT_DAEMON
    return tmc_set(h->td.ctl, id, TMW_SET_CAP, 0, cap, 0);
#else
    return tmem_admin_set_cap(h->t, id, cap);
#endif
}

int th_set_compress(tt_host *h, uint32_t id, int codec)
{
#if TT_DAEMON
    if (id != TMEM_CLIENT_ALL)
        return tmc_set(h->td.ctl, id, TMW_SET_COMPRESS, 0, 0, codec);
    /* TMW_CTL_SET refuses TMEM_CLIENT_ALL: every client in turn (a codec
     * out of range is refused for the first) */
    struct tmw_ctl_client *a = NULL;
    size_t n = 0;
    int rc = tmc_clients(h->td.ctl, &a, &n);
    if (rc < 0)
        return rc;
    rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = tmc_set(h->td.ctl, a[i].info.id, TMW_SET_COMPRESS, 0, 0, codec);
    free(a);
    return rc;
#else
    return tmem_admin_set_compress(h->t, id, codec);
#endif
}

int th_flush(tt_host *h, uint64_t bytes, uint64_t *freed_bytes)
{
#if TT_DAEMON
    return tmc_flush(h->td.ctl, bytes, freed_bytes);
#else
    /* what tmemd's control operation does (src/daemon/control.c op_flush) */
    uint64_t want = bytes / PG + (bytes % PG != 0);
    if (want > SIZE_MAX)
        want = SIZE_MAX;
    uint64_t given = tmem_relinquish_pages(h->t, (size_t)want);
    while (given < want) {
        tmem_evict_npages(h->t, (size_t)(want - given));
        size_t g = tmem_relinquish_pages(h->t, (size_t)(want - given));
        given += g;
        if (g == 0)
            break;
    }
    if (freed_bytes)
        *freed_bytes = given * PG;
    return 0;
#endif
}

uint64_t th_freeable(tt_host *h)
{
#if TT_DAEMON
    uint64_t pages = 0;
    assert_int_equal(tmc_freeable(h->td.ctl, &pages), 0);
    return pages;
#else
    return tmem_freeable_pages(h->t);
#endif
}

void th_close(tt_host *h)
{
#if TT_DAEMON
    for (unsigned i = 0; i < h->nopened; i++)
        tmem_client_close(h->opened[i]);
    free(h->opened);
    h->opened = NULL;
    h->nopened = 0;
    assert_int_equal(td_stop(&h->td), 0);
#else
    tt_close(h->t);
#endif
    free(h);
}

void th_discard(tt_host *h)
{
    if (!h)
        return;
#if TT_DAEMON
    for (unsigned i = 0; i < h->nopened; i++)
        tmem_client_close(h->opened[i]);
    free(h->opened);
    if (h->td.pid > 0)
        td_stop(&h->td);        /* its status is not checked here */
#else
    if (h->t)
        tmem_close(h->t);
#endif
    free(h);
}
