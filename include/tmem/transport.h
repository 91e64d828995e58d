/* SPDX-License-Identifier: MIT */
/*
 * transport.h - what a client handle is, for whoever makes one.
 *
 * Every tmem_client_t, whoever opened it, starts with a struct
 * tmem_client_head: a magic word that says "this is a client handle" for as
 * long as the handle is valid memory, and the table of operations that
 * carry out its calls.  The public calls of tmem.h (tmem_put_page(), ...)
 * check the magic and hand the call to the table: the engine's own table
 * for tmem_client_open(), the client library's for tmem_connect().  The
 * engine knows nothing of sockets; a transport knows nothing of the
 * engine's insides: each only fills a table.
 *
 * An operation gets arguments the public call has not checked beyond the
 * handle's magic (pool ids, NULL pages, counts): it validates them and
 * returns what tmem.h documents.  A handle's magic stays TMEM_HANDLE_MAGIC
 * until its memory is freed (a closed handle keeps it: its operations then
 * answer -ENODEV).
 */
#ifndef TMEM_TRANSPORT_H
#define TMEM_TRANSPORT_H

#include <stdatomic.h>
#include <stdint.h>

#include "tmem/tmem.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TMEM_HANDLE_MAGIC 0x746d656d68646c65ull    /* "tmemhdle" */

struct tmem_client_ops {
    const char *name;           /* "engine", "tmemd", ... (diagnostics) */
    int  (*new_pool)(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags);
    int  (*destroy_pool)(tmem_client_t *c, uint32_t pool_id);
    int  (*pool_is_shared)(tmem_client_t *c, uint32_t pool_id);
    int  (*put_page)(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                     uint32_t index, const void *page);
    int  (*get_page)(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                     uint32_t index, void *page);
    int  (*flush_page)(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                       uint32_t index);
    int  (*flush_object)(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid);
    /* vector forms (tmem.h): n >= 1, every array non-NULL (checked by the
     * public call); fill results[0..n) and return how many are 0 */
    int  (*put_pages)(tmem_client_t *c, size_t n, const tmem_handle_t *h,
                      const void *const *pages, int *results);
    int  (*get_pages)(tmem_client_t *c, size_t n, const tmem_handle_t *h,
                      void *const *pages, int *results);
    int  (*flush_pages)(tmem_client_t *c, size_t n, const tmem_handle_t *h, int *results);
    void (*close)(tmem_client_t *c);
    void (*release)(tmem_client_t *c);
    uint32_t (*id)(const tmem_client_t *c);
    int  is_remote;             /* tmem_client_is_remote() */
    int64_t (*restore)(tmem_client_t *c, tmem_read_fn read, void *arg);
};

struct tmem_client_head {
    _Atomic uint64_t magic;                 /* TMEM_HANDLE_MAGIC */
    const struct tmem_client_ops *ops;      /* immutable */
};

#ifdef __cplusplus
}
#endif
#endif /* TMEM_TRANSPORT_H */
