/* SPDX-License-Identifier: MIT */
/*
 * tmem_client_demo.c - tenants of a running tmemd, for the main job
 * (scripts/run.sh): each tenant is a process of its own that connects,
 * puts real file pages into an ephemeral pool (a clean-page cache) and a
 * persistent pool (a swap front), reads them back and checks every byte,
 * and prints what happened.  The last tenant is killed mid-stream to show
 * that the daemon frees what a dead client held.
 *
 *   tmem-client-demo [--socket PATH] [--tenants N] [--pages N] [--files DIR]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tmem/tmem.h"

#define PG TMEM_PAGE_SIZE

/* Up to max pages of real data from the regular files under dir. */
static size_t load_pages(const char *dir, uint8_t *buf, size_t max)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    while (n < max && (e = readdir(d))) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        while (n < max) {
            ssize_t r = read(fd, buf + n * PG, PG);
            if (r <= 0)
                break;
            memset(buf + n * PG + r, 0, PG - (size_t)r);
            n++;
        }
        close(fd);
    }
    closedir(d);
    return n;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One tenant; returns its exit status (0 all checks passed). */
static int tenant(const char *sock, int id, const uint8_t *data, size_t npages, bool forever)
{
    char name[32];
    snprintf(name, sizeof(name), "tenant-%d", id);
    tmem_client_t *c = tmem_connect(sock, name);
    if (!c) {
        fprintf(stderr, "%s: cannot connect to %s: %s\n", name, sock ? sock : "(default)",
                strerror(errno));
        return 1;
    }
    tmem_uuid_t none = { 0, 0 };
    int eph = tmem_new_pool(c, none, 0);
    int pers = tmem_new_pool(c, none, TMEM_POOL_PERSIST);
    if (eph < 0 || pers < 0) {
        fprintf(stderr, "%s: new pool: %s\n", name, tmem_strerror(eph < 0 ? eph : pers));
        return 1;
    }
    uint8_t got[PG];
    unsigned long stored = 0, refused = 0, hits = 0, misses = 0, wrong = 0;
    double t0 = now_s();
    do {
        for (size_t i = 0; i < npages; i++) {
            /* each tenant reads the data from its own offset: shifted working sets */
            const uint8_t *p = data + ((i + (size_t)id * 97) % npages) * PG;
            tmem_oid_t oid = { { (uint64_t)id, i / 512, 0 } };
            int rc = tmem_put_page(c, (uint32_t)(i & 1 ? pers : eph), oid, (uint32_t)i, p);
            rc == 0 ? stored++ : refused++;
        }
        for (size_t i = 0; i < npages; i++) {
            const uint8_t *p = data + ((i + (size_t)id * 97) % npages) * PG;
            tmem_oid_t oid = { { (uint64_t)id, i / 512, 0 } };
            int rc = tmem_get_page(c, (uint32_t)(i & 1 ? pers : eph), oid, (uint32_t)i, got);
            if (rc == 0) {
                hits++;
                wrong += memcmp(got, p, PG) != 0;
            } else {
                misses++;
            }
        }
    } while (forever);
    double dt = now_s() - t0;
    printf("  %s (client %u): %lu puts stored, %lu refused; %lu gets hit, %lu missed; "
           "%lu wrong; %.0f calls/s\n",
           name, tmem_client_id(c), stored, refused, hits, misses, wrong,
           (double)(2 * npages) / (dt > 0 ? dt : 1e-9));
    fflush(stdout);     /* the caller leaves with _exit */
    tmem_client_close(c);
    return wrong ? 2 : 0;
}

int main(int argc, char **argv)
{
    const char *sock = NULL, *files = "/usr/lib/x86_64-linux-gnu";
    int tenants = 3;
    size_t npages = 8192;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--socket") && i + 1 < argc)
            sock = argv[++i];
        else if (!strcmp(argv[i], "--tenants") && i + 1 < argc)
            tenants = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pages") && i + 1 < argc)
            npages = strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--files") && i + 1 < argc)
            files = argv[++i];
        else {
            bool help = !strcmp(argv[i], "--help");
            fprintf(help ? stdout : stderr,
                    "usage: %s [--socket PATH] [--tenants N] [--pages N] [--files DIR]\n"
                    "Tenants of a running tmemd put and get real file pages and check them.\n",
                    argv[0]);
            return help ? 0 : 2;
        }
    }
    if (tenants < 1 || tenants > 64 || npages == 0 || npages > (1u << 20)) {
        fprintf(stderr, "tmem-client-demo: --tenants 1..64, --pages 1..1048576\n");
        return 2;
    }
    uint8_t *data = malloc(npages * PG);
    if (!data)
        return 1;
    size_t n = load_pages(files, data, npages);
    if (n == 0) {
        fprintf(stderr, "tmem-client-demo: no readable files in %s\n", files);
        return 1;
    }
    printf("%d tenants, %zu pages (%zu MiB) of files from %s each\n", tenants, n, n * PG >> 20,
           files);
    fflush(stdout);
    pid_t pids[64];
    for (int i = 0; i < tenants; i++) {
        pids[i] = fork();
        if (pids[i] == 0)
            _exit(tenant(sock, i + 1, data, n, false));
    }
    int bad = 0;
    for (int i = 0; i < tenants; i++) {
        int st;
        waitpid(pids[i], &st, 0);
        bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    /* one more tenant, killed mid-stream: the daemon frees what it held */
    pid_t victim = fork();
    if (victim == 0)
        _exit(tenant(sock, tenants + 1, data, n, true));
    usleep(300000);
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    printf("  tenant-%d was killed (SIGKILL) while putting; its pools are freed by the daemon\n",
           tenants + 1);
    free(data);
    if (bad)
        fprintf(stderr, "tmem-client-demo: %d tenants failed\n", bad);
    return bad ? 1 : 0;
}
