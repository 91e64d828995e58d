/* SPDX-License-Identifier: MIT */
/*
 * fuzz.h - what every fuzz target shares: libFuzzer's entry points, so that
 * the same target builds as a libFuzzer binary (clang) and as a corpus
 * replay driver with replay_main.c (any compiler), and CHECK, the
 * invariant that aborts with where and why.  docs/fuzzing.md.
 */
#ifndef TMEM_FUZZ_H
#define TMEM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Optional, as in libFuzzer: a target with nothing to set up leaves it out
 * (weak: replay_main.c calls it only where it is defined). */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set by replay_main.c before LLVMFuzzerInitialize: checks that are too
 * slow for every fuzzing iteration (tmem_check) then run on every input. */
#define TMEM_FUZZ_CHECK_ENV "TMEM_FUZZ_CHECK_EVERY"

/* An invariant of the target: when cond is false, prints
 * "<FUZZ_NAME>: invariant broken (file:line): `cond`: " and the printf-style
 * message, and aborts (the fuzzer's crash).  A target defines FUZZ_NAME
 * (its name, a string) before it includes fuzz.h. */
#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "%s: invariant broken (%s:%d): `%s`: ", FUZZ_NAME,     \
                    __FILE__, __LINE__, #cond);                                    \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            abort();                                                               \
        }                                                                          \
    } while (0)

#endif /* TMEM_FUZZ_H */
