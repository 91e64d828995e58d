/* SPDX-License-Identifier: MIT */
/*
 * tmem_demo.c - a short demonstration of the engine: three clients share
 * one engine under a memory limit.
 *
 *   "files"  an ephemeral pool (cleancache): pages of real files of this
 *            machine, put when "evicted from its page cache", got back later;
 *   "swap"   a persistent pool (frontswap): process-like pages, all kept;
 *   "batch"  an ephemeral pool with a low weight, pushing for memory.
 *
 * It prints what was stored, refused, evicted, compressed and deduplicated,
 * then plays the host: asks for memory back and shows resident memory drop,
 * and moves the "swap" client to a second engine with save/restore.
 *
 * Usage: tmem-demo [--max-memory MiB] [--files DIR]
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmem/tmem.h"

#define PAGE TMEM_PAGE_SIZE

static long rss_kib(void)
{
    long size = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &size, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Up to max pages read from regular files under dir (one level deep). */
static size_t load_file_pages(const char *dir, uint8_t *buf, size_t max)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char path[4096];
    while (n < max && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            continue;
        ssize_t r;
        while (n < max && (r = read(fd, buf + n * PAGE, PAGE)) > 0) {
            if (r < (ssize_t)PAGE)
                memset(buf + n * PAGE + r, 0, PAGE - (size_t)r);
            n++;
        }
        close(fd);
    }
    closedir(d);
    return n;
}

struct mem { uint8_t *buf; size_t len, cap, pos; };

static int mem_write(void *arg, const void *p, size_t len)
{
    struct mem *m = arg;
    if (m->len + len > m->cap) {
        size_t cap = (m->cap + len) * 2;
        uint8_t *nb = realloc(m->buf, cap);
        if (!nb)
            return -ENOMEM;
        m->buf = nb;
        m->cap = cap;
    }
    memcpy(m->buf + m->len, p, len);
    m->len += len;
    return 0;
}

static int mem_read(void *arg, void *p, size_t len)
{
    struct mem *m = arg;
    if (m->pos + len > m->len)
        return -EIO;
    memcpy(p, m->buf + m->pos, len);
    m->pos += len;
    return 0;
}

static void print_stats(tmem_t *t, const char *when)
{
    tmem_stats_t s;
    tmem_stats_get(t, &s);
    uint64_t logical = (s.ephemeral_pages + s.persistent_pages) * PAGE;
    printf("\n-- %s --\n", when);
    printf("  held %6.2f MiB of %.2f MiB limit (%llu frames, %llu free; metadata %.2f MiB)\n",
           s.bytes_held / 1048576.0, s.max_bytes / 1048576.0, (unsigned long long)s.frames_held,
           (unsigned long long)s.frames_free, s.meta_bytes / 1048576.0);
    printf("  pages: %llu ephemeral, %llu persistent = %.2f MiB logical, density %.2fx\n",
           (unsigned long long)s.ephemeral_pages, (unsigned long long)s.persistent_pages,
           logical / 1048576.0, s.bytes_held ? (double)logical / s.bytes_held : 0.0);
    printf("  data: %llu whole, %llu compressed (%llu compress-poor puts), %llu same-filled, "
           "%llu deduplicated\n",
           (unsigned long long)s.pages_whole, (unsigned long long)s.pages_compressed,
           (unsigned long long)s.compress_poor, (unsigned long long)s.pages_same_filled,
           (unsigned long long)s.pages_deduped);
    printf("  puts %llu (stored %llu; refused: %llu no room, %llu cap, %llu frozen), "
           "gets %llu (hits %llu), evicted %llu\n",
           (unsigned long long)s.puts, (unsigned long long)s.puts_ok,
           (unsigned long long)s.refused_nomem, (unsigned long long)s.refused_quota,
           (unsigned long long)s.refused_frozen, (unsigned long long)s.gets,
           (unsigned long long)s.gets_hit, (unsigned long long)s.evictions);
}

int main(int argc, char **argv)
{
    size_t max_mib = 24;
    const char *files_dir = "/usr/bin";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--max-memory") && i + 1 < argc) {
            max_mib = strtoul(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "--files") && i + 1 < argc) {
            files_dir = argv[++i];
        } else {
            bool help = !strcmp(argv[i], "--help");
            if (!help)
                fprintf(stderr, "tmem-demo: unknown option '%s'\n", argv[i]);
            fprintf(help ? stdout : stderr,
                    "usage: %s [--max-memory MiB] [--files DIR]\n"
                    "  a demonstration of the tmem engine (see README.md): three clients\n"
                    "  share one engine under a memory limit (default 24 MiB); pages of the\n"
                    "  files in DIR (default /usr/bin) go through an ephemeral pool\n",
                    argv[0]);
            return help ? 0 : 2;
        }
    }
    if (max_mib < 1) {
        fprintf(stderr, "tmem-demo: --max-memory must be at least 1 (MiB)\n");
        return 2;
    }

    tmem_config_t cfg;
    tmem_config_init(&cfg);
    cfg.max_bytes = (uint64_t)max_mib << 20;
    tmem_t *t = tmem_open(&cfg);
    if (!t) {
        perror("tmem_open");
        return 1;
    }
    printf("tmem engine: limit %zu MiB, compression lz4, dedup on\n", max_mib);

    size_t nfile = 16384;   /* 64 MiB of real file pages */
    uint8_t *files = malloc(nfile * PAGE);
    if (!files) {
        perror("malloc");
        return 1;
    }
    nfile = load_file_pages(files_dir, files, nfile);
    if (nfile == 0)
        fprintf(stderr, "tmem-demo: no readable files in %s: the file pool stays empty\n",
                files_dir);
    printf("loaded %zu pages (%.1f MiB) of files from %s\n", nfile, nfile * PAGE / 1048576.0,
           files_dir);

    tmem_client_t *fc = tmem_client_open(t, "files");
    tmem_client_t *sc = tmem_client_open(t, "swap");
    tmem_client_t *bc = tmem_client_open(t, "batch");
    tmem_admin_set_weight(t, tmem_client_id(bc), 25);   /* a quarter of the others' */
    tmem_uuid_t none = { 0, 0 };
    int fpool = tmem_new_pool(fc, none, 0);
    int spool = tmem_new_pool(sc, none, TMEM_POOL_PERSIST);
    int bpool = tmem_new_pool(bc, none, 0);
    if (fpool < 0 || spool < 0 || bpool < 0) {
        fprintf(stderr, "tmem-demo: cannot create pools\n");
        return 1;
    }

    /* swap: 2048 process-like pages: a quarter zero, the rest file-like data
     * with a counter, so they compress but differ */
    size_t nswap = 2048, swapped = 0;
    uint8_t page[PAGE];
    for (size_t i = 0; i < nswap; i++) {
        if (i % 4 == 0) {
            memset(page, 0, PAGE);
        } else {
            memcpy(page, files + (i % (nfile ? nfile : 1)) * PAGE, nfile ? PAGE : 0);
            memcpy(page, &i, sizeof(i));
        }
        tmem_oid_t oid = { { i & 15, 0, 0 } };          /* frontswap's swizzling */
        if (tmem_put_page(sc, (uint32_t)spool, oid, (uint32_t)(i >> 4), page) == 0)
            swapped++;
    }
    printf("swap: stored %zu of %zu persistent pages\n", swapped, nswap);

    /* files: every file page goes through tmem as if evicted from a page
     * cache, then is read back once */
    size_t fput = 0, fhit = 0, bput = 0;
    for (size_t i = 0; i < nfile; i++) {
        tmem_oid_t oid = { { i / 256 + 1, 0, 0 } };
        fput += tmem_put_page(fc, (uint32_t)fpool, oid, (uint32_t)(i % 256), files + i * PAGE) == 0;
        /* batch pushes one page for every two */
        if (i % 2 == 0) {
            tmem_oid_t boid = { { 7, i, 0 } };
            bput += tmem_put_page(bc, (uint32_t)bpool, boid, 0, files + ((i * 7) % nfile) * PAGE) == 0;
        }
    }
    print_stats(t, "after the puts");
    for (size_t i = 0; i < nfile; i++) {
        tmem_oid_t oid = { { i / 256 + 1, 0, 0 } };
        if (tmem_get_page(fc, (uint32_t)fpool, oid, (uint32_t)(i % 256), page) == 0) {
            fhit++;
            if (memcmp(page, files + i * PAGE, PAGE) != 0) {
                fprintf(stderr, "tmem-demo: a file page came back wrong\n");
                return 1;
            }
        }
    }
    printf("\nfiles: %zu puts stored, %zu of %zu later gets hit (the rest were evicted)\n", fput,
           fhit, nfile);
    printf("batch: %zu puts stored (weight 25 against 100: it loses its pages first)\n", bput);
    tmem_client_info_t ci;
    tmem_client_info(t, tmem_client_id(bc), &ci);
    printf("batch: %llu of its pages were evicted\n", (unsigned long long)ci.evicted);

    /* every swap page must come back exactly (persistent) */
    size_t swap_ok = 0;
    for (size_t i = 0; i < nswap; i++) {
        tmem_oid_t oid = { { i & 15, 0, 0 } };
        uint8_t want[PAGE];
        if (i % 4 == 0) {
            memset(want, 0, PAGE);
        } else {
            memcpy(want, files + (i % (nfile ? nfile : 1)) * PAGE, nfile ? PAGE : 0);
            memcpy(want, &i, sizeof(i));
        }
        /* the pool is private, so gets are exclusive: put it back after */
        if (tmem_get_page(sc, (uint32_t)spool, oid, (uint32_t)(i >> 4), page) == 0 &&
            memcmp(page, want, PAGE) == 0) {
            swap_ok++;
            tmem_put_page(sc, (uint32_t)spool, oid, (uint32_t)(i >> 4), page);
        }
    }
    printf("swap: %zu of %zu stored pages read back exactly\n", swap_ok, swapped);
    print_stats(t, "after the gets");

    /* the host wants memory back */
    long rss0 = rss_kib();
    size_t freeable = tmem_freeable_pages(t);
    size_t evicted = tmem_evict_npages(t, freeable);
    size_t released = tmem_relinquish_pages(t, (size_t)-1 / 2);
    long rss1 = rss_kib();
    printf("\nhost: %zu frames were freeable; evicting freed %zu, %zu frames went back to the OS;"
           " resident memory %ld -> %ld MiB\n",
           freeable, evicted, released, rss0 / 1024, rss1 / 1024);

    /* live migration of the swap client */
    struct mem m = { 0 };
    int64_t saved = tmem_client_save(t, tmem_client_id(sc), mem_write, &m);
    tmem_t *t2 = tmem_open(&cfg);
    tmem_client_t *sc2 = t2 ? tmem_client_open(t2, "swap") : NULL;
    int64_t restored = sc2 ? tmem_client_restore(sc2, mem_read, &m) : -1;
    printf("migration: saved %lld persistent pages (%.2f MiB stream), restored %lld on a "
           "second engine\n",
           (long long)saved, m.len / 1048576.0, (long long)restored);

    char list[4096];
    tmem_list(t, TMEM_CLIENT_ALL, 0, list, sizeof(list));
    printf("\ntmem-list:\n%s", list);

    int bad = tmem_check(t) + (t2 ? tmem_check(t2) : 1);
    printf("self-check: %d invariant violations\n", bad);
    free(m.buf);
    free(files);
    tmem_close(t2);
    tmem_close(t);
    return (bad == 0 && swap_ok == swapped && restored == saved) ? 0 : 1;
}
