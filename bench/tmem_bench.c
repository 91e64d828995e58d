/* SPDX-License-Identifier: MIT */
/*
 * tmem_bench.c - the engine benchmarks.
 *
 * Every figure is a RATIO of the engine against its limit, measured side by
 * side in the same run (the machines are small and shared, so absolute
 * numbers drift; ratios measured in alternating rounds do not drift much):
 *
 *   1  put+get of random (incompressible) pages, compression off, against
 *      memcpy into and out of a page pool (random slots, same working set);
 *      dedup on and off (1a, 1b: objects of 256 pages), and every page its
 *      own object (1c); all in random order.                 floor 0.6
 *   2  put+get of compressible pages with LZ4 against raw
 *      LZ4_compress_default + LZ4_decompress_safe of the same pages. floor 0.8
 *   3  density: logical bytes / bytes_held on a mixed corpus of this
 *      machine's files (+ zero and half-zero pages), against the codec's own
 *      ratio per page (LZ4, zstd -1).                          floor 0.9
 *   4  two threads against one thread, each on its own pool (own clients,
 *      or one client with two pools), compression off and LZ4. floor 1.7
 *
 * plus latency percentiles of put and get, a churn scenario (working set 4x
 * the limit, ephemeral) and, as a diagnostic, figure 4 with one engine per
 * thread (what the engine's shared state costs).  Throughput figures are
 * medians over --rounds rounds; in each round the engine and its baseline
 * run back to back, in alternating order, and the figure is the median of
 * the per-round ratios.  Rounds during which other processes used a CPU
 * are set aside and rerun (see run_rounds); a figure measured under load
 * anyway says so in its verdict.  Every figure checks the data read back.
 *
 * Output: a Markdown table on stdout (figure, engine, limit, ratio, floor,
 * PASS/SHORT) and details; --tsv FILE also writes the rows tab-separated.
 * bench/run.sh builds and runs this; docs/benchmarks.md explains it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lz4.h>
#include <zstd.h>

#include "tmem/tmem.h"

#include "bench_util.h"

#define PAGE       ((size_t)TMEM_PAGE_SIZE)
#define OBJ_PAGES  256u         /* pages per object (a 1 MiB "file") */
#define MAX_ROUNDS 64
_Static_assert(MAX_ROUNDS <= BENCH_MAX_ROUNDS, "bench_util.h: room for the rounds");
#define MIB        (1024u * 1024u)
/* a compressed slot of the baselines: room for the worst case of either
 * codec, rounded up to a cache line */
#define CBOUND     (LZ4_COMPRESSBOUND(4096) > ZSTD_COMPRESSBOUND(4096) ? LZ4_COMPRESSBOUND(4096) \
                                                                       : ZSTD_COMPRESSBOUND(4096))
#define CSLOT      (((size_t)CBOUND + 63) / 64 * 64)

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */
enum {
    F_COPY = 1, F_LZ4 = 2, F_DENSITY = 4, F_THREADS = 8, F_LATENCY = 16, F_CHURN = 32,
    F_ALL = 63
};

struct opts {
    int quick;
    int rounds;
    size_t ws_mib;          /* figure 1 working set; figure 4 uses half per thread */
    size_t corpus_mib;      /* the mixed corpus (figures 3 and churn) */
    size_t lz4_mib;         /* at most this much of it in figures 2 and 4-LZ4 */
    unsigned only;          /* F_* mask */
    const char *tsv;
    uint64_t seed;
    double settle;          /* seconds to wait at most for a quiet machine per figure */
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ---------------------------------------------------------------------- */
/* Anonymous memory, touched (so no first-touch fault lands in a timed pass). */
static uint8_t *map_pages(size_t npages)
{
    return map_private(npages ? npages * PAGE : PAGE);
}

static void unmap_pages(void *p, size_t npages)
{
    if (p)
        munmap(p, npages ? npages * PAGE : PAGE);
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        die("out of memory");
    return p;
}

static uint32_t *permutation(size_t n, uint64_t *rng)
{
    uint32_t *v = xcalloc(n, sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = (uint32_t)i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        uint32_t x = v[i - 1];
        v[i - 1] = v[j];
        v[j] = x;
    }
    return v;
}

static void fill_random(uint8_t *p, size_t len, uint64_t *rng)
{
    uint64_t *w = (uint64_t *)p;
    for (size_t i = 0; i < len / 8; i++)
        w[i] = rng_next(rng);
}

/* ------------------------------------------------------------------------
 * Results: the table (ratios with floors, bench_util.c) and the details (notes)
 * ---------------------------------------------------------------------- */
#define MAX_NOTES   160

struct note {
    char section[80];
    char text[200];
};

static struct note g_notes[MAX_NOTES];
static size_t g_nnotes;

static void add_note(const char *section, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_note(const char *section, const char *fmt, ...)
{
    if (g_nnotes == MAX_NOTES)
        return;
    struct note *n = &g_notes[g_nnotes++];
    snprintf(n->section, sizeof(n->section), "%s", section);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n->text, sizeof(n->text), fmt, ap);
    va_end(ap);
}

static void print_results(const struct opts *o)
{
    print_table("engine");
    /* details, grouped by section in the order sections first appeared */
    for (size_t i = 0; i < g_nnotes; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(g_notes[j].section, g_notes[i].section) == 0;
        if (seen)
            continue;
        printf("\n### %s\n\n", g_notes[i].section);
        for (size_t j = i; j < g_nnotes; j++)
            if (strcmp(g_notes[j].section, g_notes[i].section) == 0)
                printf("- %s\n", g_notes[j].text);
    }
    print_passes();
    if (o->tsv) {
        FILE *f = tsv_open(o->tsv, "engine");
        for (size_t i = 0; i < g_nnotes; i++)
            fprintf(f, "note\t%s\t%s\n", g_notes[i].section, g_notes[i].text);
        fclose(f);
    }
}

/* ------------------------------------------------------------------------
 * The corpus: pages of this machine's files, plus zero and half-zero pages
 * ---------------------------------------------------------------------- */
enum { K_BIN, K_TEXT, K_ZERO, K_HALF, K_KINDS };
static const char *const kind_name[K_KINDS] = { "binary", "text", "zero", "half-zero" };

struct corpus {
    uint8_t *pages;
    uint8_t *kind;
    size_t n;
    size_t nkind[K_KINDS];
    size_t files[2];        /* files sampled for binaries, text */
};

struct strvec {
    char **v;
    size_t n, cap;
};

static struct strvec g_walk;        /* nftw has no user argument */
static int g_walk_text;

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int walk_cb(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)ftw;
    if (type != FTW_F || !S_ISREG(st->st_mode) || st->st_size <= 0)
        return 0;
    if (g_walk_text) {
        /* "text": skip the compressed and image files found among docs */
        static const char *const skip[] = { ".gz", ".xz", ".bz2", ".zst", ".zip", ".png",
                                            ".jpg", ".gif", ".pdf", ".ico", ".svgz" };
        for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
            if (ends_with(path, skip[i]))
                return 0;
    }
    if (g_walk.n == g_walk.cap) {
        g_walk.cap = g_walk.cap ? g_walk.cap * 2 : 1024;
        g_walk.v = realloc(g_walk.v, g_walk.cap * sizeof(char *));
        if (!g_walk.v)
            die("out of memory");
    }
    g_walk.v[g_walk.n] = strdup(path);
    if (!g_walk.v[g_walk.n])
        die("out of memory");
    g_walk.n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists regular files under dirs (sorted, then shuffled with rng). */
static struct strvec list_files(const char *const *dirs, size_t ndirs, int text, uint64_t *rng)
{
    memset(&g_walk, 0, sizeof(g_walk));
    g_walk_text = text;
    for (size_t i = 0; i < ndirs; i++)
        nftw(dirs[i], walk_cb, 32, FTW_PHYS);
    struct strvec v = g_walk;
    memset(&g_walk, 0, sizeof(g_walk));
    if (v.n)
        qsort(v.v, v.n, sizeof(char *), cmp_str);
    for (size_t i = v.n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        char *x = v.v[i - 1];
        v.v[i - 1] = v.v[j];
        v.v[j] = x;
    }
    return v;
}

static void strvec_free(struct strvec *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->v[i]);
    free(v->v);
    memset(v, 0, sizeof(*v));
}

#define PAGES_PER_FILE 16u      /* at most 64 KiB of each file: spread over many */

/* Reads up to want pages from the files (a run of up to PAGES_PER_FILE pages
 * at a random page offset of each), ELF files only if elf.  The last page
 * of a file is zero-padded, as in a page cache.  Returns pages read. */
static size_t read_files(const struct strvec *files, int elf, uint8_t *dst, size_t want,
                         uint64_t *rng, size_t *nfiles)
{
    size_t got = 0;
    *nfiles = 0;
    for (size_t f = 0; f < files->n && got < want; f++) {
        int fd = open(files->v[f], O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat st;
        unsigned char magic[4];
        if (fstat(fd, &st) != 0 || st.st_size <= 0 ||
            (elf && (pread(fd, magic, 4, 0) != 4 || memcmp(magic, "\x7f" "ELF", 4) != 0))) {
            close(fd);
            continue;
        }
        size_t npg = (size_t)((st.st_size + (off_t)PAGE - 1) / (off_t)PAGE);
        size_t take = npg < PAGES_PER_FILE ? npg : PAGES_PER_FILE;
        if (take > want - got)
            take = want - got;
        size_t start = npg > take ? (size_t)(rng_next(rng) % (npg - take + 1)) : 0;
        uint8_t *d = dst + got * PAGE;
        memset(d, 0, take * PAGE);
        ssize_t r = pread(fd, d, take * PAGE, (off_t)(start * PAGE));
        close(fd);
        if (r <= 0)
            continue;
        size_t pages = ((size_t)r + PAGE - 1) / PAGE;
        got += pages;
        (*nfiles)++;
    }
    return got;
}

static bool page_same_filled(const uint8_t *p)
{
    const uint64_t *w = (const uint64_t *)p;
    for (size_t i = 1; i < PAGE / 8; i++)
        if (w[i] != w[0])
            return false;
    return true;
}

/* Builds the mixed corpus: 40% pages of ELF binaries (/usr/bin, /usr/lib),
 * 40% text (/usr/include, /usr/share/doc minus compressed files), 10% zero
 * pages, 10% file pages whose second half is zeroed; shuffled. */
static void corpus_build(struct corpus *c, size_t npages, uint64_t seed)
{
    uint64_t rng = seed ^ 0xc0ffee;
    memset(c, 0, sizeof(*c));
    c->pages = map_pages(npages);
    c->kind = xcalloc(npages, 1);
    size_t nzero = npages / 10, nhalf = npages / 10;
    size_t nfile = npages - nzero;
    size_t want_bin = nfile / 2, want_text = nfile - want_bin;

    static const char *const bin_dirs[] = { "/usr/bin", "/usr/lib" };
    static const char *const text_dirs[] = { "/usr/include", "/usr/share/doc" };
    struct strvec bins = list_files(bin_dirs, 2, 0, &rng);
    struct strvec texts = list_files(text_dirs, 2, 1, &rng);
    size_t nb = read_files(&bins, 1, c->pages, want_bin, &rng, &c->files[0]);
    size_t nt = read_files(&texts, 0, c->pages + nb * PAGE, want_text, &rng, &c->files[1]);
    strvec_free(&bins);
    strvec_free(&texts);
    if (nb + nt < nfile / 2)
        die("could not read enough pages of files (%zu binary, %zu text)", nb, nt);
    for (size_t i = 0; i < nb; i++)
        c->kind[i] = K_BIN;
    for (size_t i = nb; i < nb + nt; i++)
        c->kind[i] = K_TEXT;
    nfile = nb + nt;
    /* half-zero: file pages (either kind) with the second half zeroed */
    for (size_t k = 0; k < nhalf && k < nfile; k++) {
        size_t i;
        do
            i = (size_t)(rng_next(&rng) % nfile);
        while (c->kind[i] == K_HALF);
        memset(c->pages + i * PAGE + PAGE / 2, 0, PAGE / 2);
        c->kind[i] = K_HALF;
    }
    /* zero pages: already zero (map_pages) */
    c->n = nfile + nzero;
    for (size_t i = nfile; i < c->n; i++)
        c->kind[i] = K_ZERO;
    /* shuffle pages and kinds together */
    uint8_t tmp[PAGE];
    for (size_t i = c->n; i > 1; i--) {
        size_t j = (size_t)(rng_next(&rng) % i);
        memcpy(tmp, c->pages + (i - 1) * PAGE, PAGE);
        memcpy(c->pages + (i - 1) * PAGE, c->pages + j * PAGE, PAGE);
        memcpy(c->pages + j * PAGE, tmp, PAGE);
        uint8_t k = c->kind[i - 1];
        c->kind[i - 1] = c->kind[j];
        c->kind[j] = k;
    }
    for (size_t i = 0; i < c->n; i++)
        c->nkind[c->kind[i]]++;
}

/* The compressible working set of figures 2 and 4: the corpus pages that are
 * not same-filled, each stamped in its first 16 bytes with (tag, number), so
 * that no two pages are identical (no dedup hit makes the engine's job
 * cheaper than the codec's); at most max pages.  Returns the page count. */
static size_t corpus_stamped(const struct corpus *c, uint64_t tag, size_t max, uint8_t **out)
{
    size_t n = 0;
    for (size_t i = 0; i < c->n && n < max; i++)
        n += !page_same_filled(c->pages + i * PAGE);
    uint8_t *p = map_pages(n);
    size_t k = 0;
    for (size_t i = 0; i < c->n && k < n; i++) {
        const uint8_t *s = c->pages + i * PAGE;
        if (page_same_filled(s))
            continue;
        memcpy(p + k * PAGE, s, PAGE);
        uint64_t stamp[2] = { 0x5354414d50000000ull | tag, k };
        memcpy(p + k * PAGE, stamp, sizeof(stamp));
        k++;
    }
    *out = p;
    return n;
}

/* ------------------------------------------------------------------------
 * Workloads and passes (one pass = put all n pages, then get them all)
 * ---------------------------------------------------------------------- */
struct work {
    const uint8_t *src;     /* n pages put */
    uint8_t *out;           /* n pages got */
    size_t n;
    uint32_t *put_order, *get_order;    /* two permutations of 0..n-1 */
    uint64_t tag;           /* oid[1]: keeps the handles of threads apart */
    uint32_t obj_pages;     /* pages per object: OBJ_PAGES, or 1 (figure 1c) */
};

static void work_init(struct work *w, const uint8_t *src, size_t n, uint64_t tag, uint64_t *rng)
{
    w->src = src;
    w->n = n;
    w->tag = tag;
    w->obj_pages = OBJ_PAGES;
    w->out = map_pages(n);
    w->put_order = permutation(n, rng);
    w->get_order = permutation(n, rng);
}

static void work_free(struct work *w)
{
    unmap_pages(w->out, w->n);
    free(w->put_order);
    free(w->get_order);
}

static void work_verify(struct work *w, const char *what)
{
    if (memcmp(w->out, w->src, w->n * PAGE) != 0)
        die("%s: the pages read back differ from the pages put", what);
    memset(w->out, 0, w->n * PAGE);
}

static inline tmem_oid_t page_oid(const struct work *w, uint32_t i)
{
    tmem_oid_t o = { { i / w->obj_pages, w->tag, 0 } };
    return o;
}

static void engine_pass(tmem_client_t *c, uint32_t pool, const struct work *w)
{
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        int rc = tmem_put_page(c, pool, page_oid(w, i), i % w->obj_pages, w->src + (size_t)i * PAGE);
        if (rc != 0)
            die("put of page %u refused: %s", i, tmem_strerror(rc));
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        int rc = tmem_get_page(c, pool, page_oid(w, i), i % w->obj_pages, w->out + (size_t)i * PAGE);
        if (rc != 0)
            die("get of page %u: %s", i, tmem_strerror(rc));
    }
}

/* The baselines' store: n slots of `stride` bytes in random order. */
struct slots {
    uint8_t *mem;
    size_t n, stride;
    uint32_t *slot;         /* page i lives in slot[i] */
    int *len;               /* compressed length of page i */
    ZSTD_CCtx *zc;          /* zstd baseline: contexts reused, as the engine does */
    ZSTD_DCtx *zd;
};

static void slots_init(struct slots *s, size_t n, size_t stride, uint64_t *rng)
{
    memset(s, 0, sizeof(*s));
    s->n = n;
    s->stride = stride;
    s->mem = map_pages((n * stride + PAGE - 1) / PAGE);
    s->slot = permutation(n, rng);
    s->len = xcalloc(n, sizeof(int));
}

static void slots_free(struct slots *s)
{
    unmap_pages(s->mem, (s->n * s->stride + PAGE - 1) / PAGE);
    free(s->slot);
    free(s->len);
    ZSTD_freeCCtx(s->zc);
    ZSTD_freeDCtx(s->zd);
}

static void memcpy_pass(struct slots *s, const struct work *w)
{
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        memcpy(s->mem + (size_t)s->slot[i] * s->stride, w->src + (size_t)i * PAGE, PAGE);
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        memcpy(w->out + (size_t)i * PAGE, s->mem + (size_t)s->slot[i] * s->stride, PAGE);
    }
    __asm__ volatile("" ::: "memory");
}

static void lz4_pass(struct slots *s, const struct work *w)
{
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        int n = LZ4_compress_default((const char *)w->src + (size_t)i * PAGE,
                                     (char *)s->mem + (size_t)s->slot[i] * s->stride, (int)PAGE,
                                     (int)s->stride);
        if (n <= 0)
            die("LZ4_compress_default failed");
        s->len[i] = n;
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        int n = LZ4_decompress_safe((const char *)s->mem + (size_t)s->slot[i] * s->stride,
                                    (char *)w->out + (size_t)i * PAGE, s->len[i], (int)PAGE);
        if (n != (int)PAGE)
            die("LZ4_decompress_safe failed");
    }
}

static void zstd_pass(struct slots *s, const struct work *w)
{
    if (!s->zc) {
        s->zc = ZSTD_createCCtx();
        s->zd = ZSTD_createDCtx();
        if (!s->zc || !s->zd)
            die("zstd contexts");
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        size_t n = ZSTD_compressCCtx(s->zc, s->mem + (size_t)s->slot[i] * s->stride, s->stride,
                                     w->src + (size_t)i * PAGE, PAGE, 1);
        if (ZSTD_isError(n))
            die("ZSTD_compressCCtx: %s", ZSTD_getErrorName(n));
        s->len[i] = (int)n;
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        size_t n = ZSTD_decompressDCtx(s->zd, w->out + (size_t)i * PAGE, PAGE,
                                       s->mem + (size_t)s->slot[i] * s->stride,
                                       (size_t)s->len[i]);
        if (ZSTD_isError(n) || n != PAGE)
            die("ZSTD_decompressDCtx failed");
    }
}

/* A job: one pass of the engine or of a baseline, on one thread. */
enum job_kind { J_ENGINE, J_MEMCPY, J_LZ4, J_ZSTD };

struct job {
    enum job_kind kind;
    tmem_client_t *c;
    uint32_t pool;
    struct work *w;
    struct slots *s;
    pthread_barrier_t *bar;
    uint64_t t0, t1;
    uint64_t faults;        /* minor page faults taken by timed passes (total) */
};

static uint64_t minor_faults(int who)
{
    struct rusage ru;
    getrusage(who, &ru);
    return (uint64_t)ru.ru_minflt;
}

static void job_run(struct job *j)
{
    switch (j->kind) {
    case J_ENGINE: engine_pass(j->c, j->pool, j->w); break;
    case J_MEMCPY: memcpy_pass(j->s, j->w); break;
    case J_LZ4:    lz4_pass(j->s, j->w); break;
    case J_ZSTD:   zstd_pass(j->s, j->w); break;
    }
}

/* Runs a job on the calling thread; seconds. */
static double job_time(struct job *j)
{
    uint64_t f0 = minor_faults(RUSAGE_SELF), t0 = now_ns();
    job_run(j);
    double secs = (double)(now_ns() - t0) / 1e9;
    j->faults += minor_faults(RUSAGE_SELF) - f0;
    return secs;
}

static void *job_thread(void *arg)
{
    struct job *j = arg;
    pthread_barrier_wait(j->bar);
    uint64_t f0 = minor_faults(RUSAGE_THREAD);
    j->t0 = now_ns();
    job_run(j);
    j->t1 = now_ns();
    j->faults += minor_faults(RUSAGE_THREAD) - f0;
    return NULL;
}

/* Runs nj jobs on nj new threads, started together; wall seconds from the
 * first start to the last end. */
static double jobs_parallel(struct job *jobs, int nj)
{
    pthread_t th[2];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)nj);
    for (int i = 0; i < nj; i++) {
        jobs[i].bar = &bar;
        if (pthread_create(&th[i], NULL, job_thread, &jobs[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < nj; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    uint64_t t0 = jobs[0].t0, t1 = jobs[0].t1;
    for (int i = 1; i < nj; i++) {
        t0 = jobs[i].t0 < t0 ? jobs[i].t0 : t0;
        t1 = jobs[i].t1 > t1 ? jobs[i].t1 : t1;
    }
    return (double)(t1 - t0) / 1e9;
}

/* ------------------------------------------------------------------------
 * Rounds, and the background load during each: rounds during which other
 * processes used more than QUIET_CPUS are set aside and rerun (at most twice
 * --rounds in all, at most --settle / 3 seconds of waiting per figure);
 * bench_util.c (run_rounds) says how.
 * ---------------------------------------------------------------------- */
#define MAX_VALS   4
_Static_assert(MAX_VALS <= BENCH_MAX_VALS, "bench_util.h: room for the values");

static void settle(const struct opts *o, const char *what)
{
    char text[200];
    if (settle_text(o->settle, what, text, sizeof(text)))
        add_note("Background load (CPUs used by other processes during the rounds)", "%s", text);
}

static void note_load(const char *id, const struct round_set *rs)
{
    add_note("Background load (CPUs used by other processes during the rounds)",
             "%s: %d rounds run, %d over %.2f CPUs set aside; kept rounds' mean %.2f, worst round %.2f",
             id, rs->attempts, rs->loaded, QUIET_CPUS, rs->load_kept, rs->load_max);
}

/* Engine and baseline, one pass each, in alternating order. */
struct pair_ctx {
    struct job *eng, *base;
};

static void pair_round(void *ctx, int attempt, double *vals)
{
    struct pair_ctx *p = ctx;
    if (attempt % 2 == 0) {
        vals[0] = job_time(p->eng);
        vals[1] = job_time(p->base);
    } else {
        vals[1] = job_time(p->base);
        vals[0] = job_time(p->eng);
    }
}

static uint32_t g_pool_flags;           /* --persistent: TMEM_POOL_PERSIST */

static tmem_t *engine_open(int codec, int dedup, uint64_t max_bytes)
{
    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.compress = codec;
    cfg.dedup = dedup;
    cfg.max_bytes = max_bytes;
    tmem_t *t = tmem_open(&cfg);
    if (!t)
        die("tmem_open: %s", strerror(errno));
    return t;
}

static tmem_client_t *client_open(tmem_t *t, const char *name)
{
    tmem_client_t *c = tmem_client_open(t, name);
    if (!c)
        die("tmem_client_open: %s", strerror(errno));
    return c;
}

static uint32_t pool_new(tmem_client_t *c)
{
    tmem_uuid_t u = { 0, 0 };
    int p = tmem_new_pool(c, u, g_pool_flags);     /* private, ephemeral by default */
    if (p < 0)
        die("tmem_new_pool: %s", tmem_strerror(p));
    return (uint32_t)p;
}

static const char *codec_name(int codec)
{
    return codec == TMEM_COMPRESS_LZ4 ? "LZ4" : codec == TMEM_COMPRESS_ZSTD ? "zstd-1" : "none";
}

/* ------------------------------------------------------------------------
 * Latency: per-call times of a put pass and a get pass
 * ---------------------------------------------------------------------- */
static void latency_engine(const char *label, tmem_client_t *c, uint32_t pool, struct work *w)
{
    uint32_t *pt = xcalloc(w->n, sizeof(uint32_t)), *gt = xcalloc(w->n, sizeof(uint32_t));
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        uint64_t t0 = now_ns();
        int rc = tmem_put_page(c, pool, page_oid(w, i), i % w->obj_pages, w->src + (size_t)i * PAGE);
        pt[k] = (uint32_t)(now_ns() - t0);
        if (rc != 0)
            die("put refused: %s", tmem_strerror(rc));
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        uint64_t t0 = now_ns();
        int rc = tmem_get_page(c, pool, page_oid(w, i), i % w->obj_pages, w->out + (size_t)i * PAGE);
        gt[k] = (uint32_t)(now_ns() - t0);
        if (rc != 0)
            die("get: %s", tmem_strerror(rc));
    }
    qsort(pt, w->n, sizeof(uint32_t), cmp_u32);
    qsort(gt, w->n, sizeof(uint32_t), cmp_u32);
    add_note("Latency (us per call)",
             "%s: put p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.1f; "
             "get p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.1f",
             label, pct_us(pt, w->n, 50), pct_us(pt, w->n, 90), pct_us(pt, w->n, 99),
             pct_us(pt, w->n, 99.9), pct_us(pt, w->n, 100), pct_us(gt, w->n, 50),
             pct_us(gt, w->n, 90), pct_us(gt, w->n, 99), pct_us(gt, w->n, 99.9),
             pct_us(gt, w->n, 100));
    free(pt);
    free(gt);
}

/* The baseline's per-page latency (put = store one page, get = load one). */
static void latency_base(const char *label, enum job_kind kind, struct slots *s, struct work *w)
{
    uint32_t *pt = xcalloc(w->n, sizeof(uint32_t)), *gt = xcalloc(w->n, sizeof(uint32_t));
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->put_order[k];
        uint8_t *d = s->mem + (size_t)s->slot[i] * s->stride;
        const uint8_t *src = w->src + (size_t)i * PAGE;
        uint64_t t0 = now_ns();
        if (kind == J_MEMCPY)
            memcpy(d, src, PAGE);
        else
            s->len[i] = LZ4_compress_default((const char *)src, (char *)d, (int)PAGE,
                                             (int)s->stride);
        __asm__ volatile("" ::: "memory");
        pt[k] = (uint32_t)(now_ns() - t0);
    }
    for (size_t k = 0; k < w->n; k++) {
        uint32_t i = w->get_order[k];
        const uint8_t *d = s->mem + (size_t)s->slot[i] * s->stride;
        uint8_t *dst = w->out + (size_t)i * PAGE;
        uint64_t t0 = now_ns();
        if (kind == J_MEMCPY)
            memcpy(dst, d, PAGE);
        else if (LZ4_decompress_safe((const char *)d, (char *)dst, s->len[i], (int)PAGE) !=
                 (int)PAGE)
            die("LZ4_decompress_safe failed");
        __asm__ volatile("" ::: "memory");
        gt[k] = (uint32_t)(now_ns() - t0);
    }
    qsort(pt, w->n, sizeof(uint32_t), cmp_u32);
    qsort(gt, w->n, sizeof(uint32_t), cmp_u32);
    add_note("Latency (us per call)", "%s: put p50 %.2f p99 %.2f; get p50 %.2f p99 %.2f", label,
             pct_us(pt, w->n, 50), pct_us(pt, w->n, 99), pct_us(gt, w->n, 50),
             pct_us(gt, w->n, 99));
    free(pt);
    free(gt);
}

/* ------------------------------------------------------------------------
 * Figures 1 and 2 (and the zstd extra): engine against a one-thread baseline
 * ---------------------------------------------------------------------- */
static void fmt_us(char *buf, size_t size, double secs, size_t n)
{
    snprintf(buf, size, "%.3f us/page", secs * 1e6 / (double)n);
}

/* Runs engine (codec, dedup) against baseline kind on work w; adds a result.
 * lat: also measure latency (engine and baseline) afterwards. */
static void engine_vs(const struct opts *o, const char *id, const char *what, int codec,
                      int dedup, enum job_kind base_kind, struct slots *s, struct work *w,
                      double floor, const char *lat_label)
{
    uint64_t max = (uint64_t)w->n * PAGE * 5 / 4 + 64ull * MIB;
    tmem_t *t = engine_open(codec, dedup, max);
    tmem_client_t *c = client_open(t, "bench");
    uint32_t pool = pool_new(c);
    struct job eng = { .kind = J_ENGINE, .c = c, .pool = pool, .w = w };
    struct job base = { .kind = base_kind, .s = s, .w = w };

    /* warm up both (frames backed, allocator warm) and check the data */
    job_time(&eng);
    work_verify(w, "engine");
    job_time(&base);
    work_verify(w, "baseline");
    eng.faults = base.faults = 0;

    struct round_set rs;
    struct pair_ctx pc = { &eng, &base };
    run_rounds(o->rounds, o->settle, pair_round, &pc, &rs);
    double *te = rs.v[0], *tb = rs.v[1], ratio[MAX_ROUNDS];
    note_load(id, &rs);
    if (eng.faults || base.faults)
        add_note("Page faults in timed passes", "%s: engine %.1f, baseline %.1f per 1000 pages",
                 id, (double)eng.faults * 1000.0 / ((double)w->n * rs.attempts),
                 (double)base.faults * 1000.0 / ((double)w->n * rs.attempts));
    for (int r = 0; r < o->rounds; r++)
        ratio[r] = tb[r] / te[r];
    char e[40], l[40];
    fmt_us(e, sizeof(e), median(te, o->rounds), w->n);
    fmt_us(l, sizeof(l), median(tb, o->rounds), w->n);
    add_result(id, what, e, l, median(ratio, o->rounds), floor, ratio, o->rounds);
    result_load(rs.load_kept);
    tmem_stats_t st;
    tmem_stats_get(t, &st);
    if (st.evictions || st.refused_nomem)
        add_note("Warnings", "%s: %llu evictions, %llu refusals (expected none)", id,
                 (unsigned long long)st.evictions, (unsigned long long)st.refused_nomem);
    if (codec != TMEM_COMPRESS_NONE)
        add_note("Throughput details", "%s: %llu of %llu puts compress poor (stored whole)", id,
                 (unsigned long long)(st.compress_poor / (unsigned long long)(rs.attempts + 1)),
                 (unsigned long long)w->n);
    if (lat_label) {
        latency_engine(lat_label, c, pool, w);
        work_verify(w, "engine (latency)");
        char bl[96];
        snprintf(bl, sizeof(bl), "baseline for %s (%s)", lat_label,
                 base_kind == J_MEMCPY ? "memcpy" : "raw LZ4");
        latency_base(bl, base_kind, s, w);
        work_verify(w, "baseline (latency)");
    }
    tmem_close(t);
}

static void fig_copy(const struct opts *o)
{
    settle(o, "figure 1");
    size_t n = o->ws_mib * (MIB / PAGE);
    uint64_t rng = o->seed ^ 1;
    progress("figure 1: %zu random pages (%zu MiB), compression off, vs memcpy", n, o->ws_mib);
    uint8_t *src = map_pages(n);
    fill_random(src, n * PAGE, &rng);
    struct work w;
    work_init(&w, src, n, 0, &rng);
    struct slots s;
    slots_init(&s, n, PAGE, &rng);
    char what[112];
    snprintf(what, sizeof(what), "put+get random pages, no compression, dedup on (default); %zu MiB",
             o->ws_mib);
    engine_vs(o, "1a", what, TMEM_COMPRESS_NONE, 1, J_MEMCPY, &s, &w, 0.6,
              (o->only & F_LATENCY) ? "random pages, no compression, dedup on" : NULL);
    snprintf(what, sizeof(what), "put+get random pages, no compression, dedup off; %zu MiB",
             o->ws_mib);
    engine_vs(o, "1b", what, TMEM_COMPRESS_NONE, 0, J_MEMCPY, &s, &w, 0.6, NULL);
    /* every handle its own object, in random order: the object lookup and
     * the cache misses of a large tree, not only the page copy */
    w.obj_pages = 1;
    snprintf(what, sizeof(what), "put+get random pages, one page per object, random order, "
             "dedup on; %zu MiB", o->ws_mib);
    engine_vs(o, "1c", what, TMEM_COMPRESS_NONE, 1, J_MEMCPY, &s, &w, 0.6, NULL);
    w.obj_pages = OBJ_PAGES;
    slots_free(&s);
    work_free(&w);
    unmap_pages(src, n);
}

static void fig_lz4(const struct opts *o, const struct corpus *cp)
{
    settle(o, "figure 2");
    uint8_t *src;
    size_t n = corpus_stamped(cp, 0, o->lz4_mib * (MIB / PAGE), &src);
    uint64_t rng = o->seed ^ 2;
    progress("figure 2: %zu compressible pages, LZ4, vs raw LZ4", n);
    struct work w;
    work_init(&w, src, n, 0, &rng);
    struct slots s;
    slots_init(&s, n, CSLOT, &rng);
    engine_vs(o, "2a", "put+get corpus pages, LZ4, dedup on (default)", TMEM_COMPRESS_LZ4, 1,
              J_LZ4, &s, &w, 0.8,
              (o->only & F_LATENCY) ? "corpus pages, LZ4, dedup on" : NULL);
    engine_vs(o, "2b", "put+get corpus pages, LZ4, dedup off", TMEM_COMPRESS_LZ4, 0, J_LZ4, &s,
              &w, 0.8, NULL);
    engine_vs(o, "2z", "put+get corpus pages, zstd-1 vs raw ZSTD_compressCCtx(1)",
              TMEM_COMPRESS_ZSTD, 1, J_ZSTD, &s, &w, -1, NULL);
    slots_free(&s);
    work_free(&w);
    unmap_pages(src, n);
}

/* ------------------------------------------------------------------------
 * Figure 3: density
 * ---------------------------------------------------------------------- */
static void density_one(const struct corpus *cp, int codec, const char *id)
{
    /* the codec's own ratio, page by page */
    uint64_t csum = 0;
    size_t poor = 0;
    static char cbuf[8192];
    ZSTD_CCtx *zc = ZSTD_createCCtx();
    for (size_t i = 0; i < cp->n; i++) {
        const uint8_t *p = cp->pages + i * PAGE;
        size_t len;
        if (codec == TMEM_COMPRESS_LZ4) {
            int r = LZ4_compress_default((const char *)p, cbuf, (int)PAGE, (int)sizeof(cbuf));
            if (r <= 0)
                die("LZ4_compress_default");
            len = (size_t)r;
        } else {
            len = ZSTD_compressCCtx(zc, cbuf, sizeof(cbuf), p, PAGE, 1);
            if (ZSTD_isError(len))
                die("ZSTD_compressCCtx");
        }
        csum += len;
        poor += len > 3584;
    }
    ZSTD_freeCCtx(zc);
    double codec_ratio = (double)cp->n * PAGE / (double)csum;

    /* the engine: everything put into one ephemeral pool, nothing evicted */
    uint64_t max = (uint64_t)cp->n * PAGE * 2 + 64ull * MIB;
    tmem_t *t = engine_open(codec, 1, max);
    tmem_client_t *c = client_open(t, "density");
    uint32_t pool = pool_new(c);
    struct work w = { .src = cp->pages, .n = cp->n, .tag = 0 };
    for (uint32_t i = 0; i < cp->n; i++) {
        int rc = tmem_put_page(c, pool, page_oid(&w, i), i % w.obj_pages, cp->pages + (size_t)i * PAGE);
        if (rc != 0)
            die("density: put refused: %s", tmem_strerror(rc));
    }
    tmem_stats_t st;
    tmem_stats_get(t, &st);
    if (st.evictions || st.ephemeral_pages + st.persistent_pages != cp->n)
        die("density: pages were evicted or refused (%llu evictions)",
            (unsigned long long)st.evictions);
    double logical = (double)cp->n * PAGE;
    double density = logical / (double)st.bytes_held;
    double ratio = density / codec_ratio;
    char what[112], e[40], l[40];
    snprintf(what, sizeof(what), "density on the mixed corpus, %s, dedup on (default)",
             codec_name(codec));
    snprintf(e, sizeof(e), "%.3f x", density);
    snprintf(l, sizeof(l), "%.3f x (codec)", codec_ratio);
    add_result(id, what, e, l, ratio, 0.9, NULL, 0);

    double zutil = st.frames_zalloc ? (double)st.zalloc_bytes_used /
                                          ((double)st.frames_zalloc * PAGE) : 0.0;
    add_note("Density details",
             "%s %s: %zu pages, bytes_held %.2f MiB = frames %.2f MiB (%llu whole, %llu zalloc, "
             "%llu free) + metadata %.2f MiB; metadata %.1f B/page",
             id, codec_name(codec), cp->n, st.bytes_held / (double)MIB,
             st.frames_held * (double)PAGE / MIB, (unsigned long long)st.frames_whole,
             (unsigned long long)st.frames_zalloc, (unsigned long long)st.frames_free,
             st.meta_bytes / (double)MIB, (double)st.meta_bytes / (double)cp->n);
    add_note("Density details",
             "%s %s: zalloc utilisation %.1f%% (%.2f MiB of fragments in %.2f MiB of frames); "
             "codec output %.2f MiB, %zu pages > 3584 B",
             id, codec_name(codec), zutil * 100.0, st.zalloc_bytes_used / (double)MIB,
             st.frames_zalloc * (double)PAGE / MIB, csum / (double)MIB, poor);
    add_note("Density details",
             "%s %s: pages same-filled %llu, deduped %llu (not looked up: %llu, sparse dedup), "
             "compressed %llu, whole %llu (compress poor %llu); density of data frames alone "
             "%.3f x",
             id, codec_name(codec), (unsigned long long)st.pages_same_filled,
             (unsigned long long)st.pages_deduped, (unsigned long long)st.dedup_skipped,
             (unsigned long long)st.pages_compressed,
             (unsigned long long)st.pages_whole, (unsigned long long)st.compress_poor,
             logical / ((double)(st.frames_whole + st.frames_zalloc) * PAGE));
    /* read everything back and compare */
    uint8_t page[PAGE];
    for (uint32_t i = 0; i < cp->n; i++) {
        int rc = tmem_get_page(c, pool, page_oid(&w, i), i % w.obj_pages, page);
        if (rc != 0 || memcmp(page, cp->pages + (size_t)i * PAGE, PAGE) != 0)
            die("density: page %u read back wrong (%d)", i, rc);
    }
    tmem_close(t);
}

static void fig_density(const struct corpus *cp)
{
    progress("figure 3: density on %zu corpus pages", cp->n);
    density_one(cp, TMEM_COMPRESS_LZ4, "3a");
    density_one(cp, TMEM_COMPRESS_ZSTD, "3b");
}

/* ------------------------------------------------------------------------
 * Figure 4: two threads against one
 * ---------------------------------------------------------------------- */
static void fmt_rate(char *buf, size_t size, double pages, double secs, const char *suffix)
{
    snprintf(buf, size, "%.0f k pages/s%s", pages / secs / 1e3, suffix);
}

/* 1 thread, then 2 threads, of the engine and of the baseline (order
 * reversed every other round): vals = e1, e2, b1, b2 (wall seconds). */
struct threads_ctx {
    struct job *e, *b;
};

static void threads_round(void *ctx, int attempt, double *vals)
{
    struct threads_ctx *tc = ctx;
    if (attempt % 2 == 0) {
        vals[0] = jobs_parallel(tc->e, 1);
        vals[1] = jobs_parallel(tc->e, 2);
        vals[2] = jobs_parallel(tc->b, 1);
        vals[3] = jobs_parallel(tc->b, 2);
    } else {
        vals[3] = jobs_parallel(tc->b, 2);
        vals[2] = jobs_parallel(tc->b, 1);
        vals[1] = jobs_parallel(tc->e, 2);
        vals[0] = jobs_parallel(tc->e, 1);
    }
}

/* w[2]: the two threads' workloads (distinct data); base_kind the baseline
 * whose own scaling is reported alongside.  Configurations: 0 each thread
 * its own client and pool, 1 one client with two pools (both floored),
 * 2 each thread its own engine (information: what the engine's shared state
 * costs). */
static void threads_codec(const struct opts *o, int codec, struct work w[2],
                          enum job_kind base_kind, struct slots s[2], const char *const ids[3])
{
    static const char *const cfg_name[3] = { "own client and pool each", "one client, two pools",
                                             "own engine each (diagnostic)" };
    size_t n = w[0].n;
    for (int cfg = 0; cfg < 3; cfg++) {
        uint64_t max = (uint64_t)n * PAGE * 5 / 2 + 64ull * MIB;
        tmem_t *t[2];
        tmem_client_t *c[2];
        uint32_t pool[2];
        t[0] = engine_open(codec, 1, max);
        t[1] = cfg == 2 ? engine_open(codec, 1, max) : t[0];
        c[0] = client_open(t[0], "thread0");
        c[1] = cfg == 1 ? c[0] : client_open(t[1], "thread1");
        pool[0] = pool_new(c[0]);
        pool[1] = pool_new(c[1]);
        struct job e[2], b[2];
        for (int i = 0; i < 2; i++) {
            e[i] = (struct job){ .kind = J_ENGINE, .c = c[i], .pool = pool[i], .w = &w[i] };
            b[i] = (struct job){ .kind = base_kind, .s = &s[i], .w = &w[i] };
        }
        /* warm-up and check */
        jobs_parallel(e, 2);
        work_verify(&w[0], "engine thread 0");
        work_verify(&w[1], "engine thread 1");
        jobs_parallel(b, 2);
        work_verify(&w[0], "baseline thread 0");
        work_verify(&w[1], "baseline thread 1");

        struct round_set rs;
        struct threads_ctx tc = { e, b };
        run_rounds(o->rounds, o->settle, threads_round, &tc, &rs);
        double *e1 = rs.v[0], *e2 = rs.v[1], *b1 = rs.v[2], *b2 = rs.v[3];
        double re[MAX_ROUNDS], rb[MAX_ROUNDS], rv[MAX_ROUNDS];
        for (int r = 0; r < o->rounds; r++) {
            re[r] = 2.0 * e1[r] / e2[r];
            rb[r] = 2.0 * b1[r] / b2[r];
            rv[r] = b2[r] / e2[r];
        }
        char what[112], e_s[40], l_s[40];
        snprintf(what, sizeof(what), "2 threads / 1 thread, %s, %s, %zu pages per thread",
                 codec_name(codec), cfg_name[cfg], n);
        fmt_rate(e_s, sizeof(e_s), 2.0 * (double)n, median(e2, o->rounds), " (2 thr)");
        fmt_rate(l_s, sizeof(l_s), (double)n, median(e1, o->rounds), " (1 thr)");
        add_result(ids[cfg], what, e_s, l_s, median(re, o->rounds), cfg == 2 ? -1.0 : 1.7, re,
                   o->rounds);
        result_load(rs.load_kept);
        note_load(ids[cfg], &rs);
        add_note("Scaling details",
                 "%s: the baseline (%s) itself scales %.2fx (1 thr %.0f k pages/s, 2 thr %.0f k "
                 "pages/s); engine/baseline with 2 threads %.2f",
                 ids[cfg], base_kind == J_MEMCPY ? "memcpy" : "raw LZ4",
                 median(rb, o->rounds), (double)n / median(b1, o->rounds) / 1e3,
                 2.0 * (double)n / median(b2, o->rounds) / 1e3, median(rv, o->rounds));
        tmem_close(t[0]);
        if (t[1] != t[0])
            tmem_close(t[1]);
    }
}

static void fig_threads(const struct opts *o, const struct corpus *cp)
{
    settle(o, "figure 4");
    uint64_t rng = o->seed ^ 4;
    /* compression off: random pages, half of figure 1's working set per thread */
    size_t n = o->ws_mib * (MIB / PAGE) / 2;
    progress("figure 4: 2 threads vs 1, compression off, %zu pages per thread", n);
    uint8_t *src[2];
    struct work w[2];
    struct slots s[2];
    for (int i = 0; i < 2; i++) {
        src[i] = map_pages(n);
        fill_random(src[i], n * PAGE, &rng);
        work_init(&w[i], src[i], n, (uint64_t)i, &rng);
        slots_init(&s[i], n, PAGE, &rng);
    }
    static const char *const ids_none[3] = { "4a", "4b", "4a*" };
    threads_codec(o, TMEM_COMPRESS_NONE, w, J_MEMCPY, s, ids_none);
    for (int i = 0; i < 2; i++) {
        slots_free(&s[i]);
        work_free(&w[i]);
        unmap_pages(src[i], n);
    }

    /* LZ4: the compressible corpus, stamped differently for each thread */
    size_t m = 0;
    for (int i = 0; i < 2; i++) {
        m = corpus_stamped(cp, (uint64_t)i + 1, o->lz4_mib * (MIB / PAGE), &src[i]);
        work_init(&w[i], src[i], m, (uint64_t)i, &rng);
        slots_init(&s[i], m, CSLOT, &rng);
    }
    progress("figure 4: 2 threads vs 1, LZ4, %zu pages per thread", m);
    static const char *const ids_lz4[3] = { "4c", "4d", "4c*" };
    threads_codec(o, TMEM_COMPRESS_LZ4, w, J_LZ4, s, ids_lz4);
    for (int i = 0; i < 2; i++) {
        slots_free(&s[i]);
        work_free(&w[i]);
        unmap_pages(src[i], m);
    }
}

/* ------------------------------------------------------------------------
 * Churn: working set 4x the limit, ephemeral, defaults (LZ4, dedup)
 * ---------------------------------------------------------------------- */
static void fig_churn(const struct opts *o, const struct corpus *cp)
{
    settle(o, "churn");
    size_t n = cp->n;
    uint64_t max = (uint64_t)n * PAGE / 4;
    progress("churn: %zu pages (%.1f MiB) through a %.1f MiB limit", n, n * (double)PAGE / MIB,
             max / (double)MIB);
    tmem_t *t = engine_open(TMEM_COMPRESS_LZ4, 1, max);
    tmem_client_t *c = client_open(t, "churn");
    uint32_t saved_flags = g_pool_flags;
    g_pool_flags = 0;                   /* churn is about eviction: always ephemeral */
    uint32_t pool = pool_new(c);
    g_pool_flags = saved_flags;
    struct work w = { .src = cp->pages, .n = n, .tag = 0 };
    uint64_t rng = o->seed ^ 5;
    uint8_t page[PAGE];
    size_t steps = 4 * n, gets_hit = 0, puts = 0, refused = 0, bad = 0;
    uint64_t peak = 0;
    /* first fill: put every page once, in order (the cache warms up) */
    for (uint32_t i = 0; i < n; i++) {
        int rc = tmem_put_page(c, pool, page_oid(&w, i), i % w.obj_pages, cp->pages + (size_t)i * PAGE);
        if (rc != 0 && rc != -ENOMEM)
            die("churn: put: %s", tmem_strerror(rc));
    }
    tmem_stats_t st0, st;
    tmem_stats_get(t, &st0);
    /* then uniform random accesses: get (a hit removes the page: exclusive
     * get), then put it back, as a page cache over cleancache does */
    uint64_t t0 = now_ns();
    for (size_t k = 0; k < steps; k++) {
        uint32_t i = (uint32_t)(rng_next(&rng) % n);
        const uint8_t *src = cp->pages + (size_t)i * PAGE;
        int rc = tmem_get_page(c, pool, page_oid(&w, i), i % w.obj_pages, page);
        if (rc == 0) {
            gets_hit++;
            bad += memcmp(page, src, PAGE) != 0;
        } else if (rc != -ENOENT) {
            die("churn: get: %s", tmem_strerror(rc));
        }
        rc = tmem_put_page(c, pool, page_oid(&w, i), i % w.obj_pages, src);
        puts++;
        if (rc == -ENOMEM)
            refused++;
        else if (rc != 0)
            die("churn: put: %s", tmem_strerror(rc));
        if (k % 1024 == 0) {
            tmem_stats_get(t, &st);
            peak = st.bytes_held > peak ? st.bytes_held : peak;
        }
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    tmem_stats_get(t, &st);
    peak = st.bytes_held > peak ? st.bytes_held : peak;
    if (bad)
        die("churn: %zu pages read back wrong", bad);
    double density = (double)st.ephemeral_pages * PAGE / (double)st.bytes_held;
    add_note("Churn (working set 4x the limit, LZ4, dedup on, ephemeral)",
             "%zu pages (%.1f MiB) through a limit of %.1f MiB; %zu random get+put steps at "
             "%.0f k steps/s",
             n, n * (double)PAGE / MIB, max / (double)MIB, steps, (double)steps / secs / 1e3);
    add_note("Churn (working set 4x the limit, LZ4, dedup on, ephemeral)",
             "put refusal rate %.3f%% (%zu of %zu); get hit rate %.1f%%; evictions per put %.3f",
             100.0 * (double)refused / (double)puts, refused, puts,
             100.0 * (double)gets_hit / (double)steps,
             (double)(st.evictions - st0.evictions) / (double)puts);
    add_note("Churn (working set 4x the limit, LZ4, dedup on, ephemeral)",
             "density under eviction %.3f x (%llu pages held in %.2f MiB: frames %.2f MiB, "
             "%llu free, metadata %.2f MiB); peak bytes_held %.2f MiB = %.1f%% of the limit",
             density, (unsigned long long)st.ephemeral_pages, st.bytes_held / (double)MIB,
             st.frames_held * (double)PAGE / MIB, (unsigned long long)st.frames_free,
             st.meta_bytes / (double)MIB, peak / (double)MIB, 100.0 * (double)peak / (double)max);
    double zutil = st.frames_zalloc ? (double)st.zalloc_bytes_used /
                                          ((double)st.frames_zalloc * PAGE) : 0.0;
    add_note("Churn (working set 4x the limit, LZ4, dedup on, ephemeral)",
             "zalloc utilisation under eviction %.1f%%; evictions skipped (bucket busy) %llu",
             zutil * 100.0, (unsigned long long)st.evict_skipped_busy);
    if (tmem_check(t) != 0)
        die("churn: tmem_check found inconsistencies");
    tmem_close(t);
}

/* ------------------------------------------------------------------------
 * main
 * ---------------------------------------------------------------------- */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: tmem-bench [--quick] [--rounds N] [--ws-mib N] [--corpus-mib N]\n"
            "                  [--lz4-mib N] [--only LIST] [--tsv FILE] [--seed N] [--settle SECS]\n"
            "                  [--persistent]\n"
            "  --quick         small sizes and 5 rounds (well under a minute)\n"
            "  --rounds N      rounds per figure, median reported (default 7; quick 5)\n"
            "  --ws-mib N      figure 1 working set in MiB (default 256; quick 64);\n"
            "                  figure 4 (compression off) uses half of it per thread\n"
            "  --corpus-mib N  mixed corpus size in MiB (density, churn; default 64 in both\n"
            "                  modes: density depends on scale)\n"
            "  --lz4-mib N     use at most N MiB of it for the LZ4 throughput figures\n"
            "                  (2 and 4; default all; quick 16)\n"
            "  --only LIST     comma list of: copy,lz4,density,threads,latency,churn\n"
            "  --tsv FILE      also write the results tab-separated to FILE\n"
            "  --settle SECS   before each figure wait at most SECS for other processes to\n"
            "                  use under %.2f CPUs (default 15; quick 3; 0: do not wait)\n"
            "  --persistent    persistent pools instead of ephemeral ones (a diagnostic:\n"
            "                  no LRU list); the churn scenario stays ephemeral\n",
            QUIET_CPUS);
}

static unsigned parse_only(const char *s)
{
    static const struct { const char *name; unsigned bit; } names[] = {
        { "copy", F_COPY }, { "lz4", F_LZ4 }, { "density", F_DENSITY },
        { "threads", F_THREADS }, { "latency", F_LATENCY }, { "churn", F_CHURN },
        { "all", F_ALL },
    };
    unsigned m = 0;
    char *dup = strdup(s), *save = NULL;
    if (!dup)
        die("out of memory");
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        size_t i;
        for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            if (strcmp(tok, names[i].name) == 0)
                break;
        if (i == sizeof(names) / sizeof(names[0]))
            die("--only: unknown figure '%s'", tok);
        m |= names[i].bit;
    }
    free(dup);
    return m;
}

int main(int argc, char **argv)
{
    bench_prog = "tmem-bench";
    struct opts o = { .rounds = 0, .ws_mib = 0, .corpus_mib = 0, .only = F_ALL, .seed = 42,
                      .settle = -1 };
    static const struct option longopts[] = {
        { "quick", no_argument, NULL, 'q' },      { "rounds", required_argument, NULL, 'r' },
        { "ws-mib", required_argument, NULL, 'w' }, { "corpus-mib", required_argument, NULL, 'c' },
        { "lz4-mib", required_argument, NULL, 'l' },
        { "only", required_argument, NULL, 'o' },  { "tsv", required_argument, NULL, 't' },
        { "seed", required_argument, NULL, 's' },  { "help", no_argument, NULL, 'h' },
        { "persistent", no_argument, NULL, 'p' }, { "settle", required_argument, NULL, 'S' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "qr:w:c:l:o:t:s:hpS:", longopts, NULL)) != -1) {
        switch (ch) {
        case 'q': o.quick = 1; break;
        case 'r': o.rounds = atoi(optarg); break;
        case 'w': o.ws_mib = (size_t)strtoull(optarg, NULL, 10); break;
        case 'c': o.corpus_mib = (size_t)strtoull(optarg, NULL, 10); break;
        case 'l': o.lz4_mib = (size_t)strtoull(optarg, NULL, 10); break;
        case 'o': o.only = parse_only(optarg); break;
        case 't': o.tsv = optarg; break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'p': g_pool_flags = TMEM_POOL_PERSIST; break;
        case 'S': o.settle = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o.rounds == 0)
        o.rounds = o.quick ? 5 : 7;
    if (o.ws_mib == 0)
        o.ws_mib = o.quick ? 64 : 256;
    if (o.corpus_mib == 0)
        o.corpus_mib = 64;      /* density depends on scale: the same in both modes */
    if (o.lz4_mib == 0)
        o.lz4_mib = o.quick ? 16 : o.corpus_mib;
    if (o.settle < 0)
        o.settle = o.quick ? 3 : 15;
    if (o.rounds < 1 || o.rounds > MAX_ROUNDS || o.ws_mib < 2 || o.corpus_mib < 1 ||
        o.lz4_mib < 1)
        die("bad sizes (rounds 1..%d, ws-mib >= 2, corpus-mib >= 1, lz4-mib >= 1)", MAX_ROUNDS);

    print_header(o.quick);
    printf("- tmem %d.%d.%d, lz4 %s, zstd %s\n", TMEM_VERSION_MAJOR, TMEM_VERSION_MINOR,
           TMEM_VERSION_PATCH, LZ4_versionString(), ZSTD_versionString());
    printf("- rounds %d (median of per-round ratios; engine and baseline alternate; rounds in "
           "which other processes used > %.2f CPUs are set aside), working set %zu MiB, corpus "
           "%zu MiB (LZ4 figures: at most %zu MiB of it), %s pools, seed %llu\n",
           o.rounds, QUIET_CPUS, o.ws_mib, o.corpus_mib, o.lz4_mib,
           g_pool_flags ? "persistent" : "ephemeral", (unsigned long long)o.seed);
    fflush(stdout);

    struct corpus cp = { 0 };
    if (o.only & (F_LZ4 | F_DENSITY | F_THREADS | F_CHURN)) {
        uint64_t t0 = now_ns();
        corpus_build(&cp, o.corpus_mib * (MIB / PAGE), o.seed);
        printf("- corpus: %zu pages: %zu %s (%zu ELF files of /usr/bin, /usr/lib), %zu %s "
               "(%zu files of /usr/include, /usr/share/doc), %zu %s, %zu %s; built in %.1f s\n",
               cp.n, cp.nkind[K_BIN], kind_name[K_BIN], cp.files[0], cp.nkind[K_TEXT],
               kind_name[K_TEXT], cp.files[1], cp.nkind[K_ZERO], kind_name[K_ZERO],
               cp.nkind[K_HALF], kind_name[K_HALF], (double)(now_ns() - t0) / 1e9);
        fflush(stdout);
    }

    if (o.only & F_COPY)
        fig_copy(&o);
    if (o.only & F_LZ4)
        fig_lz4(&o, &cp);
    if (o.only & F_DENSITY)
        fig_density(&cp);
    if (o.only & F_THREADS)
        fig_threads(&o, &cp);
    if (o.only & F_CHURN)
        fig_churn(&o, &cp);
    print_results(&o);

    if (cp.pages) {
        unmap_pages(cp.pages, o.corpus_mib * (MIB / PAGE));
        free(cp.kind);
    }
    return 0;
}
