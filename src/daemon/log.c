/* SPDX-License-Identifier: MIT */
/*
 * log.c - tmemd's logs: one line per event on stderr, saying what happened
 * and why.  Under systemd (JOURNAL_STREAM set) each line starts with the
 * syslog priority ("<6>") so that the journal keeps levels; otherwise with
 * a UTC timestamp and the level's name.
 *
 * Lines about events that clients and local users can repeat at will go
 * through tmd_log_limited: a token bucket per (cause, uid) keeps a flood
 * to a few lines a second and says how many lines it suppressed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "daemon/daemon.h"

static int log_level = LOG_INFO;
static int log_journal;

void tmd_log_init(int level)
{
    log_level = level;
    log_journal = getenv("JOURNAL_STREAM") != NULL;
}

/* Writes one line: the message, then suffix. */
static void write_line(int level, const char *msg, const char *suffix)
{
    static const char *const names[] = { "emerg", "alert", "crit", "error",
                                         "warning", "notice", "info", "debug" };
    if (log_journal) {
        fprintf(stderr, "<%d>%s%s\n", level, msg, suffix);
    } else {
        struct timespec ts;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ tmemd %s: %s%s\n",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                tm.tm_sec, ts.tv_nsec / 1000000, names[level & 7], msg, suffix);
    }
}

void tmd_log(int level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    write_line(level, line, "");
}

/* ------------------------------------------------------------------------
 * The limiter
 * ---------------------------------------------------------------------- */
#define FULL ((uint64_t)TMD_LOG_BURST * 1000u)
#define COST 1000u

/* Brings k's bucket up to now_ms: TMD_LOG_PER_S lines a second is
 * TMD_LOG_PER_S thousandths of a line a millisecond. */
static void refill(struct tmd_log_key *k, uint64_t now_ms)
{
    if (now_ms > k->at_ms) {
        uint64_t gain = (now_ms - k->at_ms) * TMD_LOG_PER_S;
        k->tokens = gain >= FULL - k->tokens ? FULL : k->tokens + gain;
        k->at_ms = now_ms;
    }
}

/* The entry of (cause, uid) (lim->lock held): its own, else a free one or
 * one with nothing left to say taken over, else "other". */
static struct tmd_log_key *find(struct tmd_log_limiter *lim, const char *cause, uid_t uid,
                                uint64_t now_ms)
{
    struct tmd_log_key *spare = NULL;
    for (size_t i = 0; i < TMD_LOG_KEYS; i++) {
        struct tmd_log_key *k = &lim->keys[i];
        if (!k->cause) {
            if (!spare)
                spare = k;
            continue;
        }
        if (k->uid == uid && (k->cause == cause || strcmp(k->cause, cause) == 0))
            return k;
        if (!spare && !k->suppressed) {
            refill(k, now_ms);
            if (k->tokens == FULL)
                spare = k;
        }
    }
    if (spare) {
        *spare = (struct tmd_log_key){ .cause = cause, .uid = uid, .tokens = FULL,
                                       .at_ms = now_ms };
        return spare;
    }
    if (!lim->other.cause)
        lim->other = (struct tmd_log_key){ .cause = "other", .uid = TMD_NO_UID,
                                           .tokens = FULL, .at_ms = now_ms };
    return &lim->other;
}

bool tmd_log_limiter_take(struct tmd_log_limiter *lim, const char *cause, uid_t uid,
                          int level, uint64_t now_ms, uint64_t *suppressed)
{
    pthread_mutex_lock(&lim->lock);
    struct tmd_log_key *k = find(lim, cause, uid, now_ms);
    refill(k, now_ms);
    k->level = level;
    bool take = k->tokens >= COST;
    if (take) {
        k->tokens -= COST;
        *suppressed = 0;
        if (k != &lim->other) {         /* other's lines are not similar: the flush sums */
            *suppressed = k->suppressed;
            k->suppressed = 0;
        }
    } else {
        k->suppressed++;
    }
    pthread_mutex_unlock(&lim->lock);
    return take;
}

size_t tmd_log_limiter_flush(struct tmd_log_limiter *lim, uint64_t now_ms, bool all,
                             void (*fn)(const struct tmd_log_key *key, uint64_t n, void *arg),
                             void *arg)
{
    size_t calls = 0;
    pthread_mutex_lock(&lim->lock);
    for (size_t i = 0; i <= TMD_LOG_KEYS; i++) {
        struct tmd_log_key *k = i < TMD_LOG_KEYS ? &lim->keys[i] : &lim->other;
        if (!k->cause || !k->suppressed)
            continue;
        refill(k, now_ms);
        if (!all && k->tokens < COST)
            continue;
        k->tokens = k->tokens >= COST ? k->tokens - COST : 0;
        uint64_t n = k->suppressed;
        k->suppressed = 0;
        struct tmd_log_key said = *k;
        if (k == &lim->other)
            said.cause = NULL;
        fn(&said, n, arg);
        calls++;
    }
    pthread_mutex_unlock(&lim->lock);
    return calls;
}

/* ------------------------------------------------------------------------
 * Limited lines
 * ---------------------------------------------------------------------- */
static struct tmd_log_limiter limiter = TMD_LOG_LIMITER_INIT;

void tmd_log_limited(int level, const char *cause, uid_t uid, const char *fmt, ...)
{
    if (level > log_level)
        return;
    uint64_t n = 0;
    if (!tmd_log_limiter_take(&limiter, cause, uid, level, tmd_now_ms(), &n))
        return;
    char line[1024], suffix[64] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n)
        snprintf(suffix, sizeof(suffix), " [%llu similar messages suppressed]",
                 (unsigned long long)n);
    write_line(level, line, suffix);
}

static void say_suppressed(const struct tmd_log_key *k, uint64_t n, void *arg)
{
    (void)arg;
    char line[160];
    if (!k->cause)
        snprintf(line, sizeof(line), "%llu messages of various causes and uids suppressed "
                 "(too many at once to follow each)", (unsigned long long)n);
    else if (k->uid == TMD_NO_UID)
        snprintf(line, sizeof(line), "%llu similar messages suppressed (%s)",
                 (unsigned long long)n, k->cause);
    else
        snprintf(line, sizeof(line), "%llu similar messages suppressed (%s, uid %u)",
                 (unsigned long long)n, k->cause, (unsigned)k->uid);
    write_line(k->level, line, "");
}

void tmd_log_flush_suppressed(bool all)
{
    tmd_log_limiter_flush(&limiter, tmd_now_ms(), all, say_suppressed, NULL);
}
