/* SPDX-License-Identifier: MIT */
/*
 * size.c - the parser of human sizes shared by tmemd, tmemctl and the
 * frontends (the grammar is in size.h).
 */
#include "util/size.h"

#include <errno.h>
#include <stddef.h>

static int lower(char c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int tmu_parse_size(const char *s, uint64_t *bytes)
{
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;         /* NULL, empty, a sign, a blank or garbage */
    const char *p = s;
    uint64_t v = 0;
    int range = 0;              /* the digits overflow: -ERANGE, if the rest is good */
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            range = 1;
        else
            v = v * 10 + digit;
    }
    unsigned shift = 0;
    switch (lower(*p)) {
    case 'k': shift = 10; break;
    case 'm': shift = 20; break;
    case 'g': shift = 30; break;
    case 't': shift = 40; break;
    default: break;
    }
    if (shift)
        p++;
    if (shift && lower(p[0]) == 'i' && lower(p[1]) == 'b')
        p += 2;
    else if (lower(*p) == 'b')
        p++;
    if (*p != '\0')
        return -EINVAL;
    if (range || (shift && v > (UINT64_MAX >> shift)))
        return -ERANGE;
    if (bytes)
        *bytes = v << shift;
    return 0;
}
