/*
 * host.c - semantic tests in-process or through tmemd (host.h).
 */
#include <errno.h>
#include <inttypes.h>

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
    tmem_client_t *opened[64];  /* every handle, closed by th_close */
    unsigned nopened;
#endif
};

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
    char opt[8][96];
    snprintf(opt[0], sizeof(opt[0]), "memory.max_memory=%" PRIu64, cfg->max_bytes);
    snprintf(opt[1], sizeof(opt[1]), "memory.compress=%s", codecs[cfg->compress % 3]);
    snprintf(opt[2], sizeof(opt[2]), "memory.dedup=%s", cfg->dedup ? "true" : "false");
    snprintf(opt[3], sizeof(opt[3]), "memory.shared_auth_required=%s",
             cfg->shared_auth_required ? "true" : "false");
    snprintf(opt[4], sizeof(opt[4]), "memory.dedup_across_clients=%s",
             cfg->dedup_across_clients ? "true" : "false");
    const char *args[] = { "--set", opt[0], "--set", opt[1], "--set", opt[2],
                           "--set", opt[3], "--set", opt[4], NULL };
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
    tmem_config_init(&cfg);
    if (max_bytes)
        cfg.max_bytes = max_bytes;
    cfg.compress = codec;
    cfg.dedup = dedup;
    return th_open_cfg(&cfg);
}

tmem_t *th_engine(tt_host *h) { return h->t; }

tmem_client_t *th_client(tt_host *h, const char *name)
{
#if TT_DAEMON
    tmem_client_t *c = tmem_connect(h->td.sock, name);
    if (!c)
        fprintf(stderr, "tmem_connect: %s\n", strerror(errno));
    assert_non_null(c);
    h->nclients++;
    assert_true(h->nopened < 64);
    h->opened[h->nopened++] = c;
    return c;
#else
    tmem_client_t *c = tmem_client_open(h->t, name);
    assert_non_null(c);
    return c;
#endif
}

void th_client_close(tt_host *h, tmem_client_t *c)
{
    (void)h;
#if TT_DAEMON
    if (tmem_client_is_remote(c)) {
        tmem_client_close(c);
        if (h->nclients)
            h->nclients--;
        assert_int_equal(td_wait_connections(&h->td, h->nclients), 0);
        return;
    }
#endif
    tmem_client_close(c);
}

void th_stats(tt_host *h, tmem_stats_t *out)
{
#if TT_DAEMON
    struct tmw_ctl_stats s;
    assert_int_equal(tmc_stats(h->td.ctl, &s), 0);
    *out = s.engine;
#else
    assert_int_equal(tmem_stats_get(h->t, out), 0);
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

void th_close(tt_host *h)
{
#if TT_DAEMON
    for (unsigned i = 0; i < h->nopened; i++)
        tmem_client_close(h->opened[i]);    /* a second close is harmless */
    assert_int_equal(td_stop(&h->td), 0);
#else
    tt_close(h->t);
#endif
    free(h);
}
