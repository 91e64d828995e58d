/*
 * futex.h - wait and wake on a 32-bit word in shared memory (both sides of
 * the window).  Not the private futex flavour: the word is shared between
 * processes.
 */
#ifndef TMEM_PROTO_FUTEX_H
#define TMEM_PROTO_FUTEX_H

#include <errno.h>
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

#endif /* TMEM_PROTO_FUTEX_H */
