/* SPDX-License-Identifier: MIT */
/*
 * fork_program.c - a plain program for test_uswap's shim_fork: it writes a
 * big allocation (paged under tmem-uswap), then forks twice.  The first
 * child uses its own small memory only and exits 0; the second reads the
 * big allocation, which a child does not inherit from a paged parent: it
 * must die of SIGSEGV (tmem-uswap says why on stderr).  Without the shim
 * the second child reads the bytes and exits 0.  The parent checks its
 * data after both and prints one line: the children's ends.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *how(int st, char *buf, size_t len)
{
    if (WIFEXITED(st))
        snprintf(buf, len, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, len, "%s", WTERMSIG(st) == SIGSEGV ? "SIGSEGV" : "another signal");
    else
        snprintf(buf, len, "?");
    return buf;
}

int main(void)
{
    size_t len = (size_t)8 << 20;
    uint8_t *big = malloc(len);
    if (!big)
        return 2;
    for (size_t i = 0; i < len; i += 512)
        big[i] = (uint8_t)(i / 4096 + 5);
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        char small[256];
        memset(small, 1, sizeof small);
        _exit(small[10] == 1 ? 0 : 1);
    }
    pid_t b = fork();
    if (b == 0) {
        unsigned sum = 0;
        for (size_t i = 0; i < len; i += 4096)
            sum += big[i];
        _exit(sum == 0 ? 3 : 0);
    }
    int sa, sb;
    if (a < 0 || b < 0 || waitpid(a, &sa, 0) != a || waitpid(b, &sb, 0) != b)
        return 4;
    for (size_t i = 0; i < len; i += 512)
        if (big[i] != (uint8_t)(i / 4096 + 5))
            return 5;
    char x[32], y[32];
    printf("fork-program: child 1 %s, child 2 %s, data ok\n", how(sa, x, sizeof x),
           how(sb, y, sizeof y));
    free(big);
    return 0;
}
