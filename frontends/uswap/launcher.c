/* SPDX-License-Identifier: MIT */
/*
 * launcher.c - tmem-uswap: runs an unmodified program with its big anonymous
 * memory paged through tmem (frontswap) and a swap file, by preloading
 * libtmem-uswap-preload.so (preload.c; docs/uswap.md).
 *
 * It checks that userfaultfd works here (root), sets the shim's environment
 * (TMEM_USWAP_*), prepends the shim to LD_PRELOAD and execs the program.
 * The shim is found relative to this program (find_shim), so an installed
 * tree works under any prefix.
 * Usage errors exit 2; a failed check exits 1 with one line saying why.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uswap.h"
#include "util/size.h"

/* The installed shim's directory: relative to the launcher's own (set by
 * frontends/uswap/CMakeLists.txt from the install's bindir and libdir), or
 * absolute. */
#ifndef USWAP_SHIM_DIR
#define USWAP_SHIM_DIR "../lib/tmem"
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
"  --print-preload      print the path of the shim PROGRAM would get\n"
"                       (libtmem-uswap-preload.so) and exit: 0 if it is\n"
"                       there, 1 with the places looked at if not\n"
"  -h, --help           this text\n"
"  -V, --version        the version\n"
"SIZE takes K, M, G or T (powers of 1024), then B or iB if wanted: 256M, 4GiB.\n"
"Limits: fork children do not inherit the region; mprotect of region memory\n"
"to anything but read+write, and mremap with MREMAP_FIXED, are refused;\n"
"programs that are statically linked, or bring their own allocator, are not\n"
"paged (see docs/uswap.md).\n";

static int bad_usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "tmem-uswap: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(tmem-uswap --help for usage)\n");
    return 2;
}

/* out = dir[/rel]/SHIM_NAME, made canonical if it is there: 0 then, else
 * -1 with out's path added to the list tried. */
static int try_shim(char *out, size_t len, const char *dir, const char *rel,
                    char *tried, size_t tlen)
{
    char path[PATH_MAX];
    int n = rel ? snprintf(path, sizeof path, "%s/%s/%s", dir, rel, SHIM_NAME)
                : snprintf(path, sizeof path, "%s/%s", dir, SHIM_NAME);
    if (n > 0 && (size_t)n < sizeof path && access(path, R_OK) == 0) {
        char real[PATH_MAX];
        snprintf(out, len, "%s", realpath(path, real) ? real : path);
        return 0;
    }
    size_t used = strlen(tried);
    snprintf(tried + used, tlen - used, "%s%s", used ? ", " : "", path);
    return -1;
}

/* The shim: $TMEM_USWAP_PRELOAD if set; else where it is installed, found
 * from this program's own directory (/proc/self/exe, so that the installed
 * tree may lie under any prefix; USWAP_SHIM_DIR if that is absolute); else
 * beside this program (the build tree).  0 with out its path; -1 with
 * tried naming the places looked at. */
static int find_shim(char *out, size_t len, char *tried, size_t tlen)
{
    tried[0] = '\0';
    const char *env = getenv("TMEM_USWAP_PRELOAD");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        snprintf(tried, tlen, "%s ($TMEM_USWAP_PRELOAD)", env);
        return access(out, R_OK) == 0 ? 0 : -1;
    }
    char self[PATH_MAX];
    const char *dir = NULL;
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        dir = dirname(self);
    }
    if (USWAP_SHIM_DIR[0] == '/') {
        if (try_shim(out, len, USWAP_SHIM_DIR, NULL, tried, tlen) == 0)
            return 0;
    } else if (dir && try_shim(out, len, dir, USWAP_SHIM_DIR, tried, tlen) == 0) {
        return 0;
    }
    if (dir)
        return try_shim(out, len, dir, NULL, tried, tlen);
    size_t used = strlen(tried);
    snprintf(tried + used, tlen - used, "%s(/proc/self/exe: %s)", used ? ", " : "",
             n < 0 ? strerror(errno) : "empty");
    return -1;
}

int main(int argc, char **argv)
{
    enum { O_BUDGET = 256, O_REGION, O_THRESHOLD, O_SWAP, O_DIRECT_, O_SOCKET, O_NOTMEM,
           O_WT, O_EXCL, O_POLICY, O_STATS, O_STATSFILE, O_RA, O_PRINT };
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
        { "print-preload", no_argument, NULL, O_PRINT },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t v;
    int c;
    char shim[PATH_MAX], tried[2 * PATH_MAX + 64];
    /* '+': options stop at the program's name */
    while ((c = getopt_long(argc, argv, "+hV", opts, NULL)) != -1) {
        switch (c) {
        case O_BUDGET:
        case O_REGION:
        case O_THRESHOLD:
            if (tmu_parse_size(optarg, &v) != 0 || v == 0)
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
        case O_PRINT:
            if (find_shim(shim, sizeof shim, tried, sizeof tried) < 0) {
                fprintf(stderr, "tmem-uswap: cannot find %s (looked at %s)\n", SHIM_NAME,
                        tried);
                return 1;
            }
            puts(shim);
            return 0;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("tmem-uswap %d.%d.%d\n", TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR,
                   TMEM_VERSION_PATCH);
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
    if (find_shim(shim, sizeof shim, tried, sizeof tried) < 0) {
        fprintf(stderr, "tmem-uswap: cannot find %s (looked at %s; set TMEM_USWAP_PRELOAD)\n",
                SHIM_NAME, tried);
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
