/* SPDX-License-Identifier: MIT */
/*
 * uuid.c - the canonical text form of a pool uuid (tmem.h).
 *
 * Xen's tools and Linux guests disagreed on the byte order of a pool
 * uuid; tmem has one rule: the text lists the 16 bytes in order, and lo/hi
 * are bytes 0-7 and 8-15 loaded little endian, as Linux built them from a
 * superblock's raw uuid.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>

#include "tmem/tmem.h"

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower((unsigned char)ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

int tmem_uuid_parse(const char *text, tmem_uuid_t *out)
{
    if (!text || !out)
        return -EINVAL;
    uint8_t b[16];
    unsigned nb = 0;
    for (unsigned pos = 0; pos < 36; pos++) {
        if (pos == 8 || pos == 13 || pos == 18 || pos == 23) {
            if (text[pos] != '-')
                return -EINVAL;
            continue;
        }
        int hi = hexval(text[pos]);
        int lo = hi < 0 ? -1 : hexval(text[pos + 1]);
        if (lo < 0)
            return -EINVAL;
        b[nb++] = (uint8_t)(hi << 4 | lo);
        pos++;
    }
    if (text[36] != '\0')
        return -EINVAL;
    uint64_t lo = 0, hi = 0;
    for (int i = 7; i >= 0; i--) {
        lo = lo << 8 | b[i];
        hi = hi << 8 | b[i + 8];
    }
    out->lo = lo;
    out->hi = hi;
    return 0;
}

void tmem_uuid_format(tmem_uuid_t u, char out[37])
{
    uint8_t b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(u.lo >> (8 * i));
        b[i + 8] = (uint8_t)(u.hi >> (8 * i));
    }
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}
