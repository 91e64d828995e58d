/* SPDX-License-Identifier: MIT */
/*
 * host.h - where a semantic test runs: an in-process engine, or a real
 * tmemd reached through tmem_connect() (the same test source is built both
 * ways: TT_DAEMON=1 for the daemon).  Engine-side calls (statistics,
 * administration, the self-check) go to the engine directly or through
 * the control socket.
 */
#ifndef TMEM_TEST_HOST_H
#define TMEM_TEST_HOST_H

#include "tmem_test.h"

#ifndef TT_DAEMON
#define TT_DAEMON 0
#endif

typedef struct tt_host tt_host;

/* An engine (or daemon) configured like cfg (NULL: defaults).  Through the
 * daemon every field of cfg is passed as a memory.* setting. */
tt_host *th_open_cfg(const tmem_config_t *cfg);
/* Shorthand as tt_open: max_bytes (0 default), codec, dedup. */
tt_host *th_open(uint64_t max_bytes, int codec, int dedup);
/* In-process: the engine; NULL through the daemon. */
tmem_t  *th_engine(tt_host *h);
tmem_client_t *th_client(tt_host *h, const char *name);
/* As th_client, but NULL with errno when the engine (or the daemon) refuses
 * the client (ENOMEM: no memory for it). */
tmem_client_t *th_client_try(tt_host *h, const char *name);
/* Closes c and, through the daemon, waits until the daemon has dropped it. */
void     th_client_close(tt_host *h, tmem_client_t *c);
void     th_stats(tt_host *h, tmem_stats_t *out);
/* 1 if private pools run in the client (in-process, or a daemon that
 * lends memory), 0 if every call goes through the daemon's window. */
int      th_local_pools(tt_host *h);
int      th_client_info(tt_host *h, uint32_t id, tmem_client_info_t *out);
/* Administration: 0, -ENOENT (no such client), -EINVAL.  freeze/thaw and
 * set_compress accept TMEM_CLIENT_ALL (the control protocol sets one client
 * at a time, so through the daemon set_compress walks the client list). */
int      th_freeze(tt_host *h, uint32_t id, int freeze);
int      th_shared_auth(tt_host *h, uint32_t id, tmem_uuid_t uuid, int allow);
int      th_set_weight(tt_host *h, uint32_t id, uint32_t weight);
int      th_set_cap(tt_host *h, uint32_t id, uint64_t cap);
int      th_set_compress(tt_host *h, uint32_t id, int codec);
/* The host takes memory back (tmemctl flush): free frames are given back to
 * the OS first, ephemeral pages are evicted only for what they lack.
 * *freed_bytes (may be NULL): what was given back.  0 or -errno. */
int      th_flush(tt_host *h, uint64_t bytes, uint64_t *freed_bytes);
/* tmem_freeable_pages(). */
uint64_t th_freeable(tt_host *h);
/* The self-check passes (in-process tmem_check == 0; the daemon's exit
 * status, which reports its own check), then everything is closed. */
void     th_close(tt_host *h);
/* After a failed test: closes everything, checks nothing. */
void     th_discard(tt_host *h);

#endif
