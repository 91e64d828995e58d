/* SPDX-License-Identifier: MIT */
/*
 * tmem_test.c - the shared test helpers (see tmem_test.h).
 */
#include "tmem_test.h"

#include <errno.h>
#include <fnmatch.h>
#include <time.h>
#include <unistd.h>

void tt_seed(tt_rng *r, uint64_t seed)
{
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 2; i++) {
        z += 0x9e3779b97f4a7c15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        r->s[i] = x ^ (x >> 31);
    }
}

uint64_t tt_next(tt_rng *r)
{
    uint64_t s0 = r->s[0], s1 = r->s[1], res = s0 + s1;
    s1 ^= s0;
    r->s[0] = ((s0 << 24) | (s0 >> 40)) ^ s1 ^ (s1 << 16);
    r->s[1] = (s1 << 37) | (s1 >> 27);
    return res;
}

void tt_fill(void *page, enum tt_kind kind, uint64_t tag)
{
    uint64_t *w = page;
    tt_rng r;
    switch (kind) {
    case TT_RANDOM:
        tt_seed(&r, tag);
        for (unsigned i = 0; i < PG / 8; i++)
            w[i] = tt_next(&r);
        break;
    case TT_TEXT: {
        static const char words[] = "transcendent memory lends idle pages to tenants who put "
                                    "and get them by handle; ephemeral pools may miss. ";
        char *c = page;
        for (unsigned i = 0; i < PG; i++)
            c[i] = words[(i + tag) % (sizeof(words) - 1)];
        memcpy(c, &tag, sizeof(tag));
        snprintf(c + 64, 32, "tag=%llu;", (unsigned long long)tag);
        break;
    }
    case TT_ZERO:
        memset(page, 0, PG);
        break;
    case TT_WORD:
        for (unsigned i = 0; i < PG / 8; i++)
            w[i] = tag;
        break;
    case TT_HALF:
    default:
        tt_seed(&r, tag);
        for (unsigned i = 0; i < PG / 16; i++)
            w[i] = tt_next(&r);
        memset((char *)page + PG / 2, 0, PG / 2);
        break;
    }
}

void tt_config(tmem_config_t *cfg, uint64_t max_bytes, int codec, int dedup)
{
    tmem_config_init(cfg);
    if (max_bytes)
        cfg->max_bytes = max_bytes;
    cfg->compress = codec;
    cfg->dedup = dedup;
}

tmem_t *tt_open(uint64_t max_bytes, int codec, int dedup)
{
    tmem_config_t cfg;
    tt_config(&cfg, max_bytes, codec, dedup);
    tmem_t *t = tmem_open(&cfg);
    assert_non_null(t);
    return t;
}

void tt_close(tmem_t *t)
{
    assert_int_equal(tmem_check(t), 0);
    tmem_close(t);
}

uint64_t tt_seed_from_args(int argc, char **argv, const char *test)
{
    uint64_t seed = 0;
    int have = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "-s") || !strcmp(argv[i], "--seed")) {
            seed = strtoull(argv[i + 1], NULL, 0);
            have = 1;
        }
    }
    if (!have && getenv("TMEM_SEED")) {
        seed = strtoull(getenv("TMEM_SEED"), NULL, 0);
        have = 1;
    }
    if (!have) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec;
    }
    printf("%s: seed = %llu (replay with: %s --seed %llu)\n", test, (unsigned long long)seed,
           test, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}

int tt_buf_write(void *arg, const void *p, size_t len)
{
    tt_buf *b = arg;
    if (b->fail_at && b->len + len > b->fail_at)
        return -EIO;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np)
            return -ENOMEM;
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
    return 0;
}

int tt_buf_read(void *arg, void *p, size_t len)
{
    tt_buf *b = arg;
    size_t end = b->len < b->limit ? b->len : b->limit;
    if (b->pos + len > end)
        return -EIO;
    memcpy(p, b->p + b->pos, len);
    b->pos += len;
    return 0;
}

void tt_buf_free(tt_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = b->pos = 0;
}

void tt_write_file(const char *path, const char *text)
{
    char tmp[320];
    assert_true(strlen(path) < 300);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

/* ---- failures in threads the test starts ------------------------------- */
#define TT_FAILS_TOLD 5     /* failures written to stderr as they happen */

void tt_fail_at(tt_fails *f, const char *file, int line, const char *fmt, ...)
{
    char msg[sizeof(f->first)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    unsigned long n = atomic_fetch_add(&f->count, 1);
    if (n == 0) {           /* only this thread writes the first failure */
        snprintf(f->first, sizeof(f->first), "%s", msg);
        f->file = file;
        f->line = line;
    }
    if (n < TT_FAILS_TOLD)
        fprintf(stderr, "%s:%d: failed (recorded): %s\n", file, line, msg);
}

void tt_fails_assert(tt_fails *f)
{
    unsigned long n = atomic_load(&f->count);
    if (n == 0)
        return;
    print_error("%s:%d: %s (%lu recorded failure%s; this one first)\n", f->file, f->line,
                f->first, n, n == 1 ? "" : "s");
    _fail(f->file, f->line);
}

/* ---- tests that cannot run here ---------------------------------------- */
static size_t tt_skipped;

void tt_skip_all(const char *test, const char *missing)
{
    fflush(stdout);
    fprintf(stderr, "%s: skipped: %s\n", test, missing);
    exit(TT_SKIP);
}

void tt_skip_note(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fputs("skipped: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    tt_skipped++;
}

int tt_run_tests(const struct CMUnitTest *tests, size_t n, const char *only)
{
    struct CMUnitTest *run = calloc(n ? n : 1, sizeof(*run));
    assert_non_null(run);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!only || fnmatch(only, tests[i].name, 0) == 0)
            run[k++] = tests[i];
    if (k == 0) {
        fprintf(stderr, "no test matches %s\n", only ? only : "(none)");
        free(run);
        return 1;
    }
    tt_skipped = 0;
    int failed = _cmocka_run_group_tests("tests", run, k, NULL, NULL);
    free(run);
    if (failed)
        return 1;
    return tt_skipped >= k ? TT_SKIP : 0;
}

int tt_have_tool(const char *name)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t l = strcspn(path, ":");
        char f[512];
        if (l > 0 && l + strlen(name) + 2 <= sizeof(f)) {
            snprintf(f, sizeof(f), "%.*s/%s", (int)l, path, name);
            if (access(f, X_OK) == 0)
                return 1;
        }
        path += l;
        if (*path == ':')
            path++;
    }
    return 0;
}
