/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ctl.c - fuzzes tmd_ctl_check_request() (src/daemon/control.c), the
 * check of a request received on the control socket.
 *
 * The input is the message as received.  It is checked twice: with n its
 * length (the bytes in a buffer of exactly that many bytes, so that ASan
 * sees a read past them), and as an oversized message (n larger than
 * TMW_MSG_MAX, the buffer holding TMW_MSG_MAX bytes: the input, then
 * zeros), which must be refused for its framing.
 *
 * Checked: the result is 0, -EPROTO or -EINVAL, with a reason on failure;
 * -EPROTO exactly when the framing is wrong (wire.h: size, magic, version,
 * length field, type, the size of struct tmw_ctl); and a request accepted
 * has a known op, no reserved field set, no field the op does not use
 * (wire.h's table of control requests) set, a weight and a cap in the
 * engine's ranges (TMEM_WEIGHT_MAX, TMEM_CAP_MAX), a name that is NUL-terminated,
 * non-empty and zero after its end when restore takes one (all zero
 * otherwise), and comes out byte for byte as it was sent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#define FUZZ_NAME "fuzz_ctl"
#include "fuzz.h"

static bool frame_ok(const uint8_t *buf, size_t n)
{
    struct tmw_msg m;
    if (n > TMW_MSG_MAX || n < sizeof(m))
        return false;
    memcpy(&m, buf, sizeof(m));
    return m.magic == TMW_MAGIC && m.version == TMW_CTL_VERSION && m.len == n &&
           m.type == TMW_MSG_CTL && n == sizeof(struct tmw_ctl);
}

static bool all_zero(const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* What an accepted request must look like (wire.h). */
static void check_accepted(const struct tmw_ctl *r)
{
    CHECK(r->op > 0 && r->op < TMW_CTL_OP_MAX_, "op %u", r->op);
    CHECK(r->m.result == 0 && r->reserved_ == 0, "reserved fields");
    bool client = false, arg = false, mask = false, arg64 = false, uuid = false;
    bool uid = false, name = false;
    switch (r->op) {
    case TMW_CTL_CLIENTS:
    case TMW_CTL_FREEZE:
    case TMW_CTL_THAW:
        client = true;
        break;
    case TMW_CTL_LIST:
        client = arg = true;
        CHECK(r->arg <= 1, "list arg %u", r->arg);
        break;
    case TMW_CTL_SET:
        client = mask = true;
        CHECK(r->client_id != TMEM_CLIENT_ALL, "set for every client");
        CHECK(r->set_mask && !(r->set_mask & ~(TMW_SET_WEIGHT | TMW_SET_CAP | TMW_SET_COMPRESS)),
              "set mask %#x", r->set_mask);
        CHECK((r->set_mask & TMW_SET_WEIGHT) || r->weight == 0, "weight without its bit");
        CHECK((r->set_mask & TMW_SET_CAP) || r->cap == 0, "cap without its bit");
        CHECK((r->set_mask & TMW_SET_COMPRESS) || r->compress == 0, "compress without its bit");
        CHECK(r->weight <= TMEM_WEIGHT_MAX && r->cap <= TMEM_CAP_MAX, "weight %u cap %llu",
              r->weight, (unsigned long long)r->cap);
        CHECK(!(r->set_mask & TMW_SET_COMPRESS) ||
              (r->compress >= TMEM_COMPRESS_NONE && r->compress <= TMEM_COMPRESS_ZSTD),
              "codec %d", r->compress);
        break;
    case TMW_CTL_SHARED_AUTH:
        client = arg = uuid = true;
        CHECK(r->client_id != TMEM_CLIENT_ALL && r->arg <= 1, "shared-auth client %u arg %u",
              r->client_id, r->arg);
        break;
    case TMW_CTL_FLUSH:
        arg64 = true;
        break;
    case TMW_CTL_SAVE:
    case TMW_CTL_END_CLIENT:
        client = true;
        CHECK(r->client_id != TMEM_CLIENT_ALL, "op %u of every client", r->op);
        break;
    case TMW_CTL_SET_UID:
        uid = arg = arg64 = true;
        CHECK(r->uid != UINT32_MAX, "set-uid of uid -1");
        CHECK(!(r->arg & ~TMW_SET_UID_DEFAULT) && !(r->arg && r->arg64), "set-uid arg %#x",
              r->arg);
        break;
    case TMW_CTL_RESTORE:
        arg = true;
        CHECK(!(r->arg & ~(TMW_RESTORE_NAME | TMW_RESTORE_UID)), "restore arg %#x", r->arg);
        name = (r->arg & TMW_RESTORE_NAME) != 0;
        uid = (r->arg & TMW_RESTORE_UID) != 0;
        CHECK(!uid || r->uid != UINT32_MAX, "restore for uid -1");
        break;
    default:
        break;
    }
    CHECK(client || r->client_id == 0, "op %u with client_id %u", r->op, r->client_id);
    CHECK(arg || r->arg == 0, "op %u with arg %u", r->op, r->arg);
    CHECK(mask || r->set_mask == 0, "op %u with set_mask", r->op);
    CHECK(arg64 || r->arg64 == 0, "op %u with arg64", r->op);
    CHECK(mask || (r->weight == 0 && r->cap == 0 && r->compress == 0), "op %u with set fields",
          r->op);
    CHECK(uuid || (r->uuid_lo == 0 && r->uuid_hi == 0), "op %u with a uuid", r->op);
    CHECK(uid || r->uid == 0, "op %u with a uid", r->op);
    if (name) {
        size_t len = strnlen(r->name, TMW_NAME_MAX);
        CHECK(len > 0 && len < TMW_NAME_MAX, "restore name of %zu bytes", len);
        CHECK(all_zero(r->name + len, TMW_NAME_MAX - len), "bytes after the name");
    } else {
        CHECK(all_zero(r->name, TMW_NAME_MAX), "op %u with a name", r->op);
    }
}

static void one(const uint8_t *buf, size_t n)
{
    struct tmw_ctl r;
    memset(&r, 0xa5, sizeof(r));
    const char *why = NULL;
    int rc = tmd_ctl_check_request(buf, n, &r, &why);
    static int trace = -1;
    if (trace < 0) {
        const char *e = getenv("TMEM_FUZZ_TRACE");
        trace = e && *e && *e != '0';
    }
    if (trace)
        fprintf(stderr, "  n %zu: %d%s%s\n", n, rc, why ? " " : "", why ? why : "");
    CHECK(rc == 0 || rc == -EPROTO || rc == -EINVAL, "n %zu: result %d", n, rc);
    bool framed = frame_ok(buf, n);
    CHECK((rc == -EPROTO) == !framed, "n %zu: result %d, framing %s", n, rc,
          framed ? "sound" : "wrong");
    if (rc != 0) {
        CHECK(why != NULL && strlen(why) > 0 && strlen(why) < 200, "no reason for %d", rc);
        return;
    }
    CHECK(memcmp(&r, buf, sizeof(r)) == 0, "the accepted request differs from the message");
    check_accepted(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > TMW_MSG_MAX)
        return 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        abort();
    memcpy(buf, data, size);
    one(buf, size);
    free(buf);

    /* oversized: recv said more than TMW_MSG_MAX, the buffer holds TMW_MSG_MAX */
    uint8_t *big = calloc(1, TMW_MSG_MAX);
    if (!big)
        abort();
    memcpy(big, data, size);
    one(big, TMW_MSG_MAX + 1 + size);
    free(big);
    return 0;
}
