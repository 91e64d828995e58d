/* SPDX-License-Identifier: MIT */
/*
 * fuzz_hello.c - fuzzes tmd_check_hello() (src/daemon/server.c), the check
 * of the one message a client sends on the client socket.
 *
 * The input is the message as received: its bytes are what recv() stored
 * (at most sizeof(struct tmw_hello), in a buffer of exactly that many
 * bytes, so that ASan sees a read past them) and its length is n, which
 * with MSG_TRUNC may exceed the buffer (an oversized message).  Also tried:
 * the same bytes with a negative n.
 *
 * Checked: the result is the one the protocol (wire.h) says, 0 only for a
 * well-formed HELLO of this version; on success the name is NUL-terminated
 * within TMW_NAME_MAX, printable ASCII but ',' ':' '=', and exactly the
 * sent name with every other byte turned into '_'.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#define FUZZ_NAME "fuzz_hello"
#include "fuzz.h"

static int expected(const uint8_t *msg, ssize_t n)
{
    struct tmw_hello h;
    if (n != (ssize_t)sizeof(h))
        return -EPROTO;
    memcpy(&h, msg, sizeof(h));
    if (h.m.magic != TMW_MAGIC || h.m.type != TMW_MSG_HELLO || h.m.len != sizeof(h))
        return -EPROTO;
    return h.m.version == TMW_VERSION ? 0 : -EPROTONOSUPPORT;
}

static void one(const uint8_t *buf, ssize_t n)
{
    char name[TMW_NAME_MAX + 1];            /* one canary byte past the name */
    memset(name, 0x7f, sizeof(name));
    int rc = tmd_check_hello(buf, n, name);
    int want = expected(buf, n);
    CHECK(rc == want, "n %zd: result %d, want %d", n, rc, want);
    CHECK((unsigned char)name[TMW_NAME_MAX] == 0x7f, "wrote past the name");
    if (rc != 0)
        return;
    const struct tmw_hello *h = (const void *)buf;
    size_t len = strnlen(name, TMW_NAME_MAX);
    CHECK(len < TMW_NAME_MAX, "name not NUL-terminated");
    size_t sent = strnlen(h->name, TMW_NAME_MAX - 1);
    CHECK(len == sent, "name of %zu bytes from a sent name of %zu", len, sent);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i], s = (unsigned char)h->name[i];
        CHECK(c > 0x20 && c <= 0x7e && c != ',' && c != ':' && c != '=',
              "name byte %zu is %#x", i, c);
        bool keep = s > 0x20 && s <= 0x7e && s != ',' && s != ':' && s != '=';
        CHECK(c == (keep ? s : '_'), "name byte %zu: %#x from %#x", i, c, s);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t have = size < sizeof(struct tmw_hello) ? size : sizeof(struct tmw_hello);
    uint8_t *buf = malloc(have ? have : 1);
    if (!buf)
        abort();
    memcpy(buf, data, have);
    one(buf, (ssize_t)size);
    one(buf, -1 - (ssize_t)size);
    free(buf);
    return 0;
}
