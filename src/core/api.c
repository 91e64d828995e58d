/* SPDX-License-Identifier: MIT */
/*
 * api.c - the client calls of the public API: each goes to the operations
 * table of the handle it is given (tmem/transport.h), the engine's own
 * (tm_engine_ops, client.c) or a transport's.  A call on the engine's table
 * is made directly, so that an in-process call costs no indirect jump.
 */
#include "internal.h"

/* The handle's operations, or NULL if c is not a client handle.  Read
 * through the head's own type: a transport's handle is not an engine
 * client (and has another alignment). */
static inline const struct tmem_client_ops *ops_of(const tmem_client_t *c)
{
    const struct tmem_client_head *h = (const struct tmem_client_head *)(const void *)c;
    if (!h || atomic_load_explicit(&h->magic, TM_RELAXED) != TMEM_HANDLE_MAGIC)
        return NULL;
    return h->ops;
}

int tmem_new_pool(tmem_client_t *c, tmem_uuid_t uuid, uint32_t flags)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops)
        return -EINVAL;
    return ops == &tm_engine_ops ? tm_new_pool(c, uuid, flags) : ops->new_pool(c, uuid, flags);
}

int tmem_destroy_pool(tmem_client_t *c, uint32_t pool_id)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops)
        return -EINVAL;
    return ops->destroy_pool(c, pool_id);
}

int tmem_pool_is_shared(tmem_client_t *c, uint32_t pool_id)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops)
        return -EINVAL;
    return ops->pool_is_shared(c, pool_id);
}

int tmem_put_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid, uint32_t index,
                  const void *page)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (__builtin_expect(ops == &tm_engine_ops, 1))
        return tm_put_page(c, pool_id, &oid, index, page);
    return ops ? ops->put_page(c, pool_id, &oid, index, page) : -EINVAL;
}

int tmem_get_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid, uint32_t index, void *page)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (__builtin_expect(ops == &tm_engine_ops, 1))
        return tm_get_page(c, pool_id, &oid, index, page);
    return ops ? ops->get_page(c, pool_id, &oid, index, page) : -EINVAL;
}

int tmem_flush_page(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid, uint32_t index)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (__builtin_expect(ops == &tm_engine_ops, 1))
        return tm_flush_page(c, pool_id, &oid, index);
    return ops ? ops->flush_page(c, pool_id, &oid, index) : -EINVAL;
}

int tmem_flush_object(tmem_client_t *c, uint32_t pool_id, tmem_oid_t oid)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops)
        return -EINVAL;
    return ops->flush_object(c, pool_id, &oid);
}

int tmem_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles,
                   const void *const *pages, int *results)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops || !handles || !pages || !results || n > INT32_MAX)
        return -EINVAL;
    return n ? ops->put_pages(c, n, handles, pages, results) : 0;
}

int tmem_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles,
                   void *const *pages, int *results)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops || !handles || !pages || !results || n > INT32_MAX)
        return -EINVAL;
    return n ? ops->get_pages(c, n, handles, pages, results) : 0;
}

int tmem_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *handles, int *results)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops || !handles || !results || n > INT32_MAX)
        return -EINVAL;
    return n ? ops->flush_pages(c, n, handles, results) : 0;
}

void tmem_client_close(tmem_client_t *c)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (ops)
        ops->close(c);
}

void tmem_client_release(tmem_client_t *c)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (ops)
        ops->release(c);
}

uint32_t tmem_client_id(const tmem_client_t *c)
{
    const struct tmem_client_ops *ops = ops_of(c);
    return ops ? ops->id(c) : UINT32_MAX;
}

int tmem_client_is_remote(const tmem_client_t *c)
{
    const struct tmem_client_ops *ops = ops_of(c);
    return ops ? ops->is_remote : 0;
}

int64_t tmem_client_restore(tmem_client_t *c, tmem_read_fn read, void *arg)
{
    const struct tmem_client_ops *ops = ops_of(c);
    if (!ops)
        return -EINVAL;
    return ops->restore(c, read, arg);
}

/* ---- the engine's vector calls: the single calls in order -------------- */
int tm_put_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, const void *const *pages,
                 int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tm_put_page(c, h[i].pool_id, &h[i].oid, h[i].index, pages[i])) == 0;
    return ok;
}

int tm_get_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, void *const *pages,
                 int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tm_get_page(c, h[i].pool_id, &h[i].oid, h[i].index, pages[i])) == 0;
    return ok;
}

int tm_flush_pages(tmem_client_t *c, size_t n, const tmem_handle_t *h, int *results)
{
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += (results[i] = tm_flush_page(c, h[i].pool_id, &h[i].oid, h[i].index)) == 0;
    return ok;
}
