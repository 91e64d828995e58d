/* SPDX-License-Identifier: MIT */
/*
 * ctl_client.h - the client side of tmemd's control protocol (private to
 * tmem: tmemctl and the tests use it).
 *
 * Each call opens a fresh SOCK_SEQPACKET connection to the control socket,
 * sends one struct tmw_ctl request (restore then streams DATA messages and
 * an END), reads the DATA replies and the END that carries the result, and
 * closes.  Sends and receives time out (TMC_TIMEOUT_S), so no call hangs
 * forever on a stuck daemon.
 *
 * Results: >= 0 done; -errno otherwise.  A negative result may come from
 * the daemon (-EPERM: not an administrator, -ENOENT: no such client,
 * -EBUSY: too many control connections, ...) or from this side (connect
 * failed, the connection broke, -EPROTO: a malformed reply, or reading or
 * writing a save file failed); tmc_failed_at() says which.  A daemon at its
 * limit of control connections (-EBUSY) is asked again for about a second
 * (but by restore, which may have read part of its file already).
 *
 * path NULL means $TMEM_CONTROL_SOCKET, else TMW_DEFAULT_CONTROL.
 */
#ifndef TMEM_CTL_CLIENT_H
#define TMEM_CTL_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"
#include "tmem/tmem.h"

#define TMC_TIMEOUT_S 60

/* Where the last failing call of this thread failed. */
enum tmc_where {
    TMC_AT_NONE = 0,    /* the last call succeeded */
    TMC_AT_CONNECT,     /* socket() or connect(): is tmemd running, may we connect? */
    TMC_AT_TRANSPORT,   /* the connection: sending, receiving, a malformed reply */
    TMC_AT_DAEMON,      /* the daemon answered with this error */
    TMC_AT_LOCAL,       /* reading or writing the caller's file descriptor */
};
enum tmc_where tmc_failed_at(void);

/* The socket path a call with this path argument uses. */
const char *tmc_socket_path(const char *path);

typedef struct tmc_buf { uint8_t *p; size_t len; } tmc_buf;
void tmc_buf_free(tmc_buf *b);

/* One request (its header is filled in here: magic, version, type, len);
 * DATA payloads are appended to out (NULL: dropped).  Returns the END
 * result. */
int tmc_call(const char *path, const struct tmw_ctl *req, tmc_buf *out);

int tmc_stats(const char *path, struct tmw_ctl_stats *out);
/* Every client, connected or parked; *out is malloc'ed (free it). */
int tmc_clients(const char *path, struct tmw_ctl_client **out, size_t *n);
/* The tmem-list text of one client or TMEM_CLIENT_ALL; *text is malloc'ed
 * and terminated. */
int tmc_list_text(const char *path, uint32_t client_id, int long_form, char **text);
/* freeze 1: freeze, 0: thaw; client_id may be TMEM_CLIENT_ALL. */
int tmc_freeze(const char *path, uint32_t client_id, int freeze);
/* mask: TMW_SET_WEIGHT | TMW_SET_CAP | TMW_SET_COMPRESS, what to change. */
int tmc_set(const char *path, uint32_t client_id, uint32_t mask, uint32_t weight,
            uint64_t cap, int compress);
int tmc_shared_auth(const char *path, uint32_t client_id, tmem_uuid_t uuid, int allow);
/* Ends a client: its connection closed, its pools freed. */
int tmc_end_client(const char *path, uint32_t client_id);
/* The persistent bytes uid's clients may hold together (0: no bound), or
 * (reset) back to the daemon's memory.uid_persistent_max. */
int tmc_set_uid(const char *path, uint32_t uid, uint64_t bytes, int reset);
/* Evicts ephemeral pages worth bytes and gives the memory back to the host;
 * *freed_bytes (may be NULL) says how much was given back. */
int tmc_flush(const char *path, uint64_t bytes, uint64_t *freed_bytes);
int tmc_freeable(const char *path, uint64_t *pages);
/* Writes the client's save file (struct tmw_save_header, then the engine's
 * save stream) to fd; returns the persistent pages saved. */
int64_t tmc_save(const char *path, uint32_t client_id, int fd);
/* Sends a save file read from fd; the daemon restores it into a new client
 * that the next connection from uid with that name adopts.  name NULL keeps
 * the saved name, uid < 0 the saved uid.  Returns the pages restored. */
int64_t tmc_restore(const char *path, int fd, const char *name, int64_t uid);

#endif /* TMEM_CTL_CLIENT_H */
