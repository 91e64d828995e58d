/*
 * fuzz.h - the entry points every fuzz target defines (libFuzzer's), so that
 * the same target builds as a libFuzzer binary (clang) and as a corpus
 * replay driver with replay_main.c (any compiler).  docs/fuzzing.md.
 */
#ifndef TMEM_FUZZ_H
#define TMEM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Set by replay_main.c before LLVMFuzzerInitialize: checks that are too
 * slow for every fuzzing iteration (tmem_check) then run on every input. */
#define TMEM_FUZZ_CHECK_ENV "TMEM_FUZZ_CHECK_EVERY"

#endif /* TMEM_FUZZ_H */
