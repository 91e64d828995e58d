/* SPDX-License-Identifier: MIT */
/*
 * launcher.c - tmem-uswap: runs an unmodified program with its big anonymous
 * memory paged through tmem (frontswap) and a swap file, by preloading
 * libtmem-uswap-preload.so (preload.c; docs/uswap.md).
 *
 * It checks that userfaultfd works here (root), sets the shim's environment
 * (TMEM_USWAP_*), prepends the shim to LD_PRELOAD and execs the program.
 * Usage errors exit 2; a failed check exits 1 with one line saying why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uswap.h"

#ifndef USWAP_INSTALLED_SHIM
#define USWAP_INSTALLED_SHIM "/usr/local/lib/libtmem-uswap-preload.so"
#endif
#define SHIM_NAME "libtmem-uswap-preload.so"

static const char usage[] =
"usage: tmem-uswap [options] -- PROGRAM [ARGS...]\n"
"Runs PROGRAM with its big anonymous allocations (malloc/calloc/realloc and\n"
"anonymous private mmap of at least --threshold bytes) in a region paged\n"
"through tmem (tmemd, frontswap) with a swap file behind it: at most --budget\n"
"of that memory is resident.  Needs root (userfaultfd).\n"
"\n"
"  --budget SIZE        resident budget of the region (default 256M)\n"
"  --region SIZE        address space reserved for the region (default 16G);\n"
"                       allocations beyond it fall back to ordinary memory\n"
"  --threshold SIZE     smallest allocation routed to the region (default 1M)\n"
"  --swap-file PATH     the swap file is PATH.<pid>, kept after exit\n"
"                       (default: an unlinked file in $TMPDIR or /var/tmp)\n"
"  --swap-direct        O_DIRECT on the swap file (bypass the page cache)\n"
"  --socket PATH        tmemd's client socket (default $TMEM_SOCKET, else\n"
"                       /run/tmem/tmemd.sock)\n"
"  --no-tmem            the swap file alone (no tmemd)\n"
"  --writethrough       every evicted page also goes to the swap file\n"
"  --exclusive          loads take the page out of tmem (default: tmem keeps\n"
"                       it, so a clean page is dropped again for free)\n"
"  --policy fifo|clock  replacement (default fifo; docs/uswap.md)\n"
"  --readahead PAGES    most pages read ahead of a sequential fault\n"
"                       (default 0: off)\n"
"  --stats              print the counters at exit (stderr)\n"
"  --stats-file PATH    append the counters at exit to PATH\n"
"  -h, --help           this text\n"
"SIZE takes K, M, G suffixes (powers of 1024).\n"
"Limits: fork children do not inherit the region; mprotect of region memory\n"
"to anything but read+write, and mremap with MREMAP_FIXED, are refused;\n"
"programs that are statically linked, or bring their own allocator, are not\n"
"paged (see docs/uswap.md).\n";

static int parse_size(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || (shift && v > (~0ull >> shift)))
        return -1;
    *out = v << shift;
    return 0;
}

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "tmem-uswap: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(tmem-uswap --help for usage)\n");
    return 2;
}

/* The shim: $TMEM_USWAP_PRELOAD, else beside this program (the build tree),
 * else where it is installed. */
static int find_shim(char *out, size_t len)
{
    const char *env = getenv("TMEM_USWAP_PRELOAD");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, R_OK) == 0 ? 0 : -1;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        if ((size_t)snprintf(out, len, "%s/%s", dirname(self), SHIM_NAME) < len &&
            access(out, R_OK) == 0)
            return 0;
    }
    snprintf(out, len, "%s", USWAP_INSTALLED_SHIM);
    return access(out, R_OK) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    enum { O_BUDGET = 256, O_REGION, O_THRESHOLD, O_SWAP, O_DIRECT_, O_SOCKET, O_NOTMEM,
           O_WT, O_EXCL, O_POLICY, O_STATS, O_STATSFILE, O_RA };
    static const struct option opts[] = {
        { "budget", required_argument, NULL, O_BUDGET },
        { "region", required_argument, NULL, O_REGION },
        { "threshold", required_argument, NULL, O_THRESHOLD },
        { "swap-file", required_argument, NULL, O_SWAP },
        { "swap-direct", no_argument, NULL, O_DIRECT_ },
        { "socket", required_argument, NULL, O_SOCKET },
        { "no-tmem", no_argument, NULL, O_NOTMEM },
        { "writethrough", no_argument, NULL, O_WT },
        { "exclusive", no_argument, NULL, O_EXCL },
        { "policy", required_argument, NULL, O_POLICY },
        { "readahead", required_argument, NULL, O_RA },
        { "stats", no_argument, NULL, O_STATS },
        { "stats-file", required_argument, NULL, O_STATSFILE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned long long v;
    int c;
    /* '+': options stop at the program's name */
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case O_BUDGET:
        case O_REGION:
        case O_THRESHOLD:
            if (parse_size(optarg, &v) < 0 || v == 0)
                return bad_usage("not a size: '%s'", optarg);
            if (c == O_BUDGET && v < 4096)
                return bad_usage("--budget %s: less than one page", optarg);
            setenv(c == O_BUDGET ? "TMEM_USWAP_BUDGET" : c == O_REGION ? "TMEM_USWAP_REGION"
                   : "TMEM_USWAP_THRESHOLD", optarg, 1);
            break;
        case O_SWAP:
            setenv("TMEM_USWAP_SWAP_FILE", optarg, 1);
            setenv("TMEM_USWAP_KEEP_SWAP_FILE", "1", 1);
            break;
        case O_DIRECT_: setenv("TMEM_USWAP_SWAP_DIRECT", "1", 1); break;
        case O_SOCKET:  setenv("TMEM_USWAP_SOCKET", optarg, 1); break;
        case O_NOTMEM:  setenv("TMEM_USWAP_NO_TMEM", "1", 1); break;
        case O_WT:      setenv("TMEM_USWAP_WRITETHROUGH", "1", 1); break;
        case O_EXCL:    setenv("TMEM_USWAP_EXCLUSIVE", "1", 1); break;
        case O_POLICY:
            if (strcmp(optarg, "clock") && strcmp(optarg, "fifo"))
                return bad_usage("--policy %s: fifo or clock", optarg);
            setenv("TMEM_USWAP_POLICY", optarg, 1);
            break;
        case O_RA: {
            char *end;
            errno = 0;
            unsigned long n = strtoul(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-' || n > 1u << 20)
                return bad_usage("--readahead %s: a number of pages", optarg);
            setenv("TMEM_USWAP_READAHEAD", optarg, 1);
            break;
        }
        case O_STATS:     setenv("TMEM_USWAP_STATS", "-", 1); break;
        case O_STATSFILE: setenv("TMEM_USWAP_STATS", optarg, 1); break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs("(tmem-uswap --help for usage)\n", stderr);
            return 2;
        }
    }
    if (optind >= argc)
        return bad_usage("%s", "no program given (tmem-uswap [options] -- PROGRAM ARGS...)");

    char msg[256];
    if (uswap_probe(msg, sizeof msg) < 0) {
        fprintf(stderr, "tmem-uswap: %s\n", msg);
        return 1;
    }
    char shim[PATH_MAX];
    if (find_shim(shim, sizeof shim) < 0) {
        fprintf(stderr, "tmem-uswap: cannot find %s (set TMEM_USWAP_PRELOAD)\n", SHIM_NAME);
        return 1;
    }
    const char *old = getenv("LD_PRELOAD");
    size_t len = strlen(shim) + (old ? strlen(old) + 2 : 1);
    char *pre = malloc(len);
    if (!pre) {
        fprintf(stderr, "tmem-uswap: out of memory\n");
        return 1;
    }
    snprintf(pre, len, "%s%s%s", shim, old && *old ? ":" : "", old ? old : "");
    setenv("LD_PRELOAD", pre, 1);
    free(pre);
    execvp(argv[optind], &argv[optind]);
    fprintf(stderr, "tmem-uswap: cannot run %s: %s\n", argv[optind], strerror(errno));
    return 127;
}
