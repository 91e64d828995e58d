/*
 * remote.h - the client side of the tmemd transport (private to libtmem).
 *
 * A handle from tmem_connect() is a struct tmr_client, whose first field,
 * like struct tmem_client's, is a 64-bit magic: every public client call
 * looks at it first and hands a connected handle to the functions below.
 */
#ifndef TMEM_CLIENT_REMOTE_H
#define TMEM_CLIENT_REMOTE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "tmem/tmem.h"

#define TMR_MAGIC 0x746d656d72656d74ull     /* "tmemremt" */

static inline bool tm_client_is_remote(const tmem_client_t *c)
{
    return atomic_load_explicit((const _Atomic uint64_t *)(const void *)c,
                                memory_order_relaxed) == TMR_MAGIC;
}

int      tmr_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags);
int      tmr_destroy_pool(tmem_client_t *c, uint32_t pool_id);
int      tmr_pool_is_shared(tmem_client_t *c, uint32_t pool_id);
int      tmr_put(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                 const void *page);
int      tmr_get(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid, uint32_t index,
                 void *page);
int      tmr_flush_page(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid,
                        uint32_t index);
int      tmr_flush_object(tmem_client_t *c, uint32_t pool_id, const tmem_oid_t *oid);
void     tmr_close(tmem_client_t *c);
uint32_t tmr_client_id(const tmem_client_t *c);

#endif /* TMEM_CLIENT_REMOTE_H */
