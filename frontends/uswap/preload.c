/* SPDX-License-Identifier: MIT */
/*
 * preload.c - libtmem-uswap-preload.so: pages an unmodified program's big
 * anonymous memory through one uswap region (LD_PRELOAD; docs/uswap.md).
 *
 * At load time one region is opened from the environment the launcher
 * (tmem-uswap) sets.  From then on:
 *   - malloc, calloc, realloc, reallocarray, memalign, aligned_alloc,
 *     posix_memalign, valloc, pvalloc of at least the threshold come from the region (page
 *     aligned, zeroed), smaller ones from glibc (__libc_*).  glibc's own
 *     big allocations are its internal mmap calls, which no preload sees:
 *     that is why malloc itself is replaced, not only mmap;
 *   - mmap(NULL, len >= threshold, READ|WRITE, PRIVATE|ANONYMOUS) comes from
 *     the region too; munmap, mremap and madvise(DONTNEED/FREE/REMOVE) on it
 *     are served by the region (mremap may move, as MREMAP_MAYMOVE allows;
 *     MREMAP_FIXED is refused); mprotect to anything but READ|WRITE is
 *     refused with EACCES and a message (the region must stay writable for
 *     the pager to work);
 *   - free/munmap of region memory returns its pages and drops their copies.
 * Anything the region cannot hold (full, or before it is open) falls back
 * to glibc.  Allocations made by uswap's own handler thread, and by the shim
 * while it works, always go to glibc.
 *
 * Fork: the region is not inherited (MADV_DONTFORK); in a child the shim
 * stops routing, and frees of region pointers are ignored there.  A child
 * that touches the region dies of SIGSEGV after one line saying why (its
 * SIGSEGV handler is set at fork, the program's own kept behind).  Children
 * that exec get the shim again (LD_PRELOAD is inherited) with their own
 * region; a kept swap file is named PATH.<pid> for that reason.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>

#include "uswap.h"
#include "util/size.h"

/* The interposed functions; preload.map lists the same names, the only
 * symbols the shim exports (its copy of libtmem stays its own). */
#define EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void  __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

enum { ST_OFF, ST_INIT, ST_ON, ST_CHILD };
static _Atomic int state = ST_OFF;
static uswap_t *U;
static tmem_frontswap_t *FS;
static size_t threshold = 1u << 20;
static int stats_fd = -1;
static char stats_path[4096];
static size_t (*real_usable)(void *);
static _Thread_local int busy;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        (void)!write(2, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static size_t env_size(const char *name, size_t dflt)
{
    const char *v = getenv(name);
    uint64_t n;
    if (!v || !*v)
        return dflt;
    if (tmu_parse_size(v, &n) != 0 || n > SIZE_MAX) {
        say("tmem-uswap: %s=%s is not a size\n", name, v);
        _exit(127);
    }
    return n;
}

static int env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

static inline int routing(void)
{
    return atomic_load_explicit(&state, memory_order_acquire) == ST_ON && !busy &&
           !uswap_in_handler();
}

static void *region_alloc(size_t n, size_t align)
{
    busy++;
    void *p = uswap_alloc(U, n, align);
    busy--;
    return p;
}

static inline int in_region(const void *p)
{
    return U && uswap_contains(U, p);
}

static void print_stats(void)
{
    if (!U || stats_fd < 0)
        return;
    uswap_stats_t s;
    uswap_stats(U, &s);
    char buf[1024];
    int n = snprintf(buf, sizeof buf,
        "tmem-uswap-stats: pid=%d faults=%llu tmem_loads=%llu tmem_stores_ok=%llu "
        "tmem_stores_refused=%llu swap_reads=%llu swap_writes=%llu evictions=%llu "
        "clean_evictions=%llu zero_evictions=%llu zero_fills=%llu wp_faults=%llu "
        "lost=%llu readaheads=%llu evict_batches=%llu fill_runs=%llu stream_evictions=%llu "
        "dirty_guesses=%llu budget_pages=%llu "
        "tmem=%d\n", (int)getpid(),
        (unsigned long long)s.faults, (unsigned long long)s.tmem_loads,
        (unsigned long long)s.tmem_stores_ok, (unsigned long long)s.tmem_stores_refused,
        (unsigned long long)s.swap_reads, (unsigned long long)s.swap_writes,
        (unsigned long long)s.evictions, (unsigned long long)s.clean_evictions,
        (unsigned long long)s.zero_evictions, (unsigned long long)s.zero_fills,
        (unsigned long long)s.wp_faults, (unsigned long long)s.lost,
        (unsigned long long)s.readaheads, (unsigned long long)s.evict_batches,
        (unsigned long long)s.fill_runs, (unsigned long long)s.stream_evictions,
        (unsigned long long)s.dirty_guesses,
        (unsigned long long)s.budget, FS != NULL);
    if (n > 0)
        (void)!write(stats_fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* ---- a child after fork: the region is not there ---- */

static uintptr_t child_lo, child_hi;    /* where the parent's region was */
static struct sigaction child_prev_segv;

/* An access to the parent's region in a child is a SIGSEGV (the region is
 * MADV_DONTFORK): say why, then die of it as the program would.  Any other
 * SIGSEGV goes to the handler the program had. */
static void child_segv(int sig, siginfo_t *si, void *ctx)
{
    uintptr_t a = (uintptr_t)si->si_addr;
    struct sigaction prev = child_prev_segv;
    if (a >= child_lo && a < child_hi) {
        static const char msg[] =
            "tmem-uswap: a child forked from a program under tmem-uswap touched memory "
            "the parent pages through tmem, which a child does not inherit: such a "
            "program must exec after fork, or run without tmem-uswap\n";
        (void)!write(2, msg, sizeof msg - 1);
        prev.sa_handler = SIG_DFL;      /* the access faults again and kills */
        prev.sa_flags = 0;
    }
    if (prev.sa_handler == SIG_DFL || prev.sa_handler == SIG_IGN) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        sigemptyset(&dfl.sa_mask);
        sigaction(SIGSEGV, &dfl, NULL);
        return;
    }
    if (prev.sa_flags & SA_SIGINFO)
        prev.sa_sigaction(sig, si, ctx);
    else
        prev.sa_handler(sig);
}

static void child_after_fork(void)
{
    if (atomic_load(&state) == ST_ON) {
        atomic_store(&state, ST_CHILD);
        child_lo = (uintptr_t)uswap_base(U);
        child_hi = child_lo + uswap_size(U);
        struct sigaction sa = { .sa_sigaction = child_segv, .sa_flags = SA_SIGINFO };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGSEGV, &sa, &child_prev_segv);
    }
    stats_fd = -1;
}

__attribute__((constructor)) static void shim_init(void)
{
    int expect = ST_OFF;
    if (!atomic_compare_exchange_strong(&state, &expect, ST_INIT))
        return;
    busy++;
    real_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    uswap_config_t cfg;
    uswap_config_init(&cfg);
    cfg.size = env_size("TMEM_USWAP_REGION", (size_t)16 << 30);
    cfg.budget_pages = env_size("TMEM_USWAP_BUDGET", (size_t)256 << 20) / 4096;
    threshold = env_size("TMEM_USWAP_THRESHOLD", threshold);
    cfg.readahead = (int)env_size("TMEM_USWAP_READAHEAD", (size_t)cfg.readahead);
    if (threshold < 4096)
        threshold = 4096;
    cfg.writethrough = env_flag("TMEM_USWAP_WRITETHROUGH");
    cfg.keep_swap_file = env_flag("TMEM_USWAP_KEEP_SWAP_FILE");
    cfg.swap_direct = env_flag("TMEM_USWAP_SWAP_DIRECT");
    const char *pol = getenv("TMEM_USWAP_POLICY");
    if (pol && strcmp(pol, "clock") == 0)
        cfg.policy = USWAP_CLOCK;
    static char swap_path[4096];
    const char *sp = getenv("TMEM_USWAP_SWAP_FILE");
    if (sp && *sp) {
        /* one file per process: children that exec open their own */
        snprintf(swap_path, sizeof swap_path, "%s.%d", sp, (int)getpid());
        cfg.swap_path = swap_path;
    }
    const char *st = getenv("TMEM_USWAP_STATS");
    if (st && *st) {
        if (strcmp(st, "-") == 0 || strcmp(st, "1") == 0) {
            /* a copy: programs close stderr at exit (GNU's close_stdout)
             * before the destructors run */
            stats_fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
        } else {
            snprintf(stats_path, sizeof stats_path, "%s", st);
            stats_fd = open(stats_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
            if (stats_fd < 0)
                say("tmem-uswap: stats file %s: %s\n", stats_path, strerror(errno));
        }
    }
    if (!env_flag("TMEM_USWAP_NO_TMEM")) {
        const char *sock = getenv("TMEM_USWAP_SOCKET");
        char name[64];
        char comm[32] = "program";
        FILE *f = fopen("/proc/self/comm", "r");
        if (f) {
            if (fgets(comm, sizeof comm, f))
                comm[strcspn(comm, "\n")] = '\0';
            fclose(f);
        }
        snprintf(name, sizeof name, "uswap-%s-%d", comm, (int)getpid());
        unsigned flags = TMEM_FRONTSWAP_KEEP_ON_LOAD;
        if (env_flag("TMEM_USWAP_EXCLUSIVE"))
            flags = 0;
        if (cfg.writethrough)
            flags |= TMEM_FRONTSWAP_WRITETHROUGH;
        FS = tmem_frontswap_connect(sock && *sock ? sock : NULL, name, flags);
        if (!FS) {
            say("tmem-uswap: cannot reach tmemd at %s: %s (use --no-tmem for the "
                "swap file alone)\n", sock && *sock ? sock : "the default socket",
                strerror(errno));
            _exit(127);
        }
        cfg.fs = FS;
    }
    U = uswap_open(&cfg);
    if (!U) {
        say("tmem-uswap: %s\n", uswap_last_error());
        _exit(127);
    }
    pthread_atfork(NULL, NULL, child_after_fork);
    busy--;
    atomic_store_explicit(&state, ST_ON, memory_order_release);
}

__attribute__((destructor)) static void shim_fini(void)
{
    /* Only the counters: memory in the region may still be used by later
     * destructors and by other threads, so the region stays open until the
     * process is gone (its tmem pages go with its connection). */
    if (atomic_load(&state) == ST_ON)
        print_stats();
}

/* ---- the malloc family ---------------------------------------------------------- */

EXPORT void *malloc(size_t n)
{
    if (n >= threshold && routing()) {
        void *p = region_alloc(n, 0);
        if (p)
            return p;
    }
    return __libc_malloc(n);
}

EXPORT void free(void *p)
{
    if (!p)
        return;
    if (in_region(p)) {
        if (atomic_load(&state) == ST_ON) {
            busy++;
            if (uswap_free(U, p, 0) < 0)
                say("tmem-uswap: free(%p): not an allocation of the region\n", p);
            busy--;
        }
        return;                 /* a child's copy: the region is not there */
    }
    __libc_free(p);
}

EXPORT void *calloc(size_t a, size_t b)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    if (n >= threshold && routing()) {
        void *p = region_alloc(n, 0);   /* region pages are zero */
        if (p)
            return p;
    }
    return __libc_calloc(a, b);
}

static size_t usable(void *p)
{
    if (in_region(p))
        return uswap_alloc_size(U, p);
    return real_usable ? real_usable(p) : 0;
}

EXPORT size_t malloc_usable_size(void *p)
{
    return p ? usable(p) : 0;
}

EXPORT void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (in_region(p)) {
        if (atomic_load(&state) != ST_ON) {
            errno = ENOMEM;     /* a child's copy of a region pointer */
            return NULL;
        }
        if (n == 0) {
            free(p);
            return NULL;
        }
        size_t old = uswap_alloc_size(U, p);
        if (n <= old)
            return p;
        void *q = malloc(n);
        if (!q)
            return NULL;
        memcpy(q, p, old);
        free(p);
        return q;
    }
    if (n >= threshold && routing()) {
        size_t old = usable(p);
        if (old && old < n) {
            void *q = region_alloc(n, 0);
            if (q) {
                memcpy(q, p, old);
                __libc_free(p);
                return q;
            }
        }
    }
    return __libc_realloc(p, n);
}

EXPORT void *reallocarray(void *p, size_t a, size_t b)
{
    size_t n;
    if (__builtin_mul_overflow(a, b, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, n);
}

static void *aligned(size_t align, size_t n)
{
    if (n >= threshold && routing()) {
        void *p = region_alloc(n, align);
        if (p)
            return p;
    }
    return __libc_memalign(align, n);
}

EXPORT void *memalign(size_t align, size_t n) { return aligned(align, n); }
EXPORT void *aligned_alloc(size_t align, size_t n) { return aligned(align, n); }
EXPORT void *valloc(size_t n) { return aligned(4096, n); }

EXPORT void *pvalloc(size_t n)
{
    return aligned(4096, (n + 4095) & ~(size_t)4095);
}

EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)))
        return EINVAL;
    void *p = aligned(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

/* ---- the mmap family ----------------------------------------------------------- */

static void *sys_mmap(void *a, size_t len, int prot, int flags, int fd, off_t off)
{
    return (void *)syscall(SYS_mmap, a, len, prot, flags, fd, off);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!addr && len >= threshold && prot == (PROT_READ | PROT_WRITE) &&
        (flags & ~MAP_NORESERVE) == (MAP_PRIVATE | MAP_ANONYMOUS) && routing()) {
        void *p = region_alloc(len, 0);
        if (p)
            return p;
    }
    return sys_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

/* A range in the region must lie wholly inside it. */
static int straddles(const void *a, size_t len)
{
    if (!U)
        return 0;
    uintptr_t x = (uintptr_t)a, y = x + len, lo = (uintptr_t)uswap_base(U),
              hi = lo + uswap_size(U);
    return x < hi && y > lo && (x < lo || y > hi);
}

EXPORT int munmap(void *addr, size_t len)
{
    if (in_region(addr) || straddles(addr, len)) {
        if (atomic_load(&state) != ST_ON)
            return (int)syscall(SYS_munmap, addr, len);   /* nothing there in a child */
        if (straddles(addr, len) || ((uintptr_t)addr & 4095)) {
            errno = EINVAL;
            return -1;
        }
        busy++;
        int r = uswap_free(U, addr, len);
        busy--;
        if (r < 0) {
            errno = EINVAL;
            return -1;
        }
        return 0;
    }
    return (int)syscall(SYS_munmap, addr, len);
}

EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
    void *newaddr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        newaddr = va_arg(ap, void *);
        va_end(ap);
    }
    if (!in_region(old) || atomic_load(&state) != ST_ON)
        return (void *)syscall(SYS_mremap, old, oldlen, newlen, flags, newaddr);
    if ((flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) || ((uintptr_t)old & 4095) ||
        newlen == 0 || straddles(old, oldlen)) {
        say("tmem-uswap: mremap of the paged region with these flags is not supported\n");
        errno = EINVAL;
        return MAP_FAILED;
    }
    size_t o = (oldlen + 4095) & ~(size_t)4095, n = (newlen + 4095) & ~(size_t)4095;
    busy++;
    if (n <= o) {
        if (n < o)
            uswap_free(U, (char *)old + n, o - n);
        busy--;
        return old;
    }
    busy--;
    if (!(flags & MREMAP_MAYMOVE)) {
        errno = ENOMEM;         /* cannot grow in place */
        return MAP_FAILED;
    }
    void *q = region_alloc(n, 0);
    if (!q) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    memcpy(q, old, o);
    busy++;
    uswap_free(U, old, o);
    busy--;
    return q;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
    if (!in_region(addr) && !straddles(addr, len))
        return (int)syscall(SYS_madvise, addr, len, advice);
    if (atomic_load(&state) != ST_ON || straddles(addr, len)) {
        errno = EINVAL;
        return -1;
    }
    switch (advice) {
    case MADV_DONTNEED:
    case MADV_FREE:
    case MADV_REMOVE:
        busy++;
        uswap_discard(U, addr, len);
        busy--;
        return 0;
    default:
        return 0;               /* hints: the pager decides */
    }
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
    if (!in_region(addr) && !straddles(addr, len))
        return (int)syscall(SYS_mprotect, addr, len, prot);
    if (prot == (PROT_READ | PROT_WRITE))
        return 0;
    say("tmem-uswap: mprotect(%p, %zu, %d) on the paged region is refused\n", addr, len, prot);
    errno = EACCES;
    return -1;
}
