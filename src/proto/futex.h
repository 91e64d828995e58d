/* SPDX-License-Identifier: MIT */
/*
 * futex.h - wait and wake on a 32-bit word in shared memory (both sides of
 * the window).  Not the private futex flavour: the word is shared between
 * processes.
 */
#ifndef TMEM_PROTO_FUTEX_H
#define TMEM_PROTO_FUTEX_H

#include <errno.h>
#include <sched.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sleeps while *w == expected, at most timeout_ns (0: no limit).  0 when
 * woken (or the value differed), -ETIMEDOUT, or -EINTR. */
static inline int tm_futex_wait(_Atomic uint32_t *w, uint32_t expected, uint64_t timeout_ns)
{
    struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
    long r = syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, expected,
                     timeout_ns ? &ts : NULL, NULL, 0);
    if (r == 0 || errno == EAGAIN)
        return 0;
    return -errno;
}

static inline void tm_futex_wake(_Atomic uint32_t *w, int n)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE, n, NULL, NULL, 0);
}

static inline void tm_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t tm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A yield that took over TM_YIELD_SLOW_NS gave the CPU to another task for
 * its time slice: the CPU is shared with other work.  Both sides of the
 * window then stop spinning for TM_CROWDED_NS (the worker sleeps after each
 * request, the client waits on the futex at once): a woken thread gets its
 * CPU back at once, a yielding one waits out the other task's slice at every
 * request.  0.5 ms is far above what the kernel's own short jobs take; 5 ms
 * (not 50) because our own threads, several clients and their workers on
 * two vCPUs, trip it too (docs/protocol.md). */
#define TM_YIELD_SLOW_NS 500000u
#define TM_CROWDED_NS    5000000u

/* Yields the CPU; *now is the time after.  True if the yield gave the CPU
 * away for over TM_YIELD_SLOW_NS. */
static inline int tm_yield_was_slow(uint64_t *now)
{
    uint64_t t0 = tm_now_ns();
    sched_yield();
    *now = tm_now_ns();
    return *now - t0 > TM_YIELD_SLOW_NS;
}

#endif /* TMEM_PROTO_FUTEX_H */
