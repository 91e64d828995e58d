/* SPDX-License-Identifier: MIT */
/*
 * errors.c - names for every result code the API returns.
 */
#include <limits.h>

#include "internal.h"

const char *tmem_strerror(int code)
{
    if (code < 0)
        code = code == INT_MIN ? 0x7fffffff : -code;   /* -INT_MIN overflows */
    switch (code) {
    case 0:            return "success";
    case ENOENT:       return "not found (a get that missed)";
    case ENOMEM:       return "no room: put refused";
    case EDQUOT:       return "over a persistent cap (the client's, or its uid's share): put refused";
    case ENOSPC:       return "duplicate put failed; the old copy was removed";
    case ENODEV:       return "no such pool, or the client is closed";
    case EINVAL:       return "invalid argument";
    case EBUSY:        return "busy: the client already has pools";
    case ENOSYS:       return "not available in this build";
    case ENOTCONN:     return "the connection to tmemd is lost";
    case EOPNOTSUPP:   return "not supported on a connected client";
    case EPROTO:       return "malformed or unsupported save stream";
    case EIO:          return "internal data error";
    case TMEM_EFROZEN: return "client frozen: new puts refused";
    case TMEM_EEMPTY:  return "pool empty";
    default:           return "unknown tmem result code";
    }
}
