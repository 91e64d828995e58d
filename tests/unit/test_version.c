/* SPDX-License-Identifier: MIT */
/*
 * test_version.c - tmem_version(): the version of the loaded libtmem (this
 * test links the shared library, so the call must be exported) is the
 * project's version from CMakeLists.txt (TMEM_PROJECT_VERSION, given by
 * tests/CMakeLists.txt) and agrees with the header's TMEM_VERSION_* macros.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <tmem/tmem.h>

#ifndef TMEM_PROJECT_VERSION
#error "TMEM_PROJECT_VERSION must be defined (tests/CMakeLists.txt)"
#endif

static void version_is_the_projects(void **state)
{
    (void)state;
    const char *v = tmem_version();
    assert_non_null(v);
    assert_string_equal(v, TMEM_PROJECT_VERSION);
    /* the same static string every time */
    assert_ptr_equal(tmem_version(), v);
}

static void version_matches_the_macros(void **state)
{
    (void)state;
    unsigned major, minor, patch;
    char rest;
    assert_int_equal(sscanf(tmem_version(), "%u.%u.%u%c", &major, &minor, &patch, &rest), 3);
    assert_int_equal(major, TMEM_VERSION_MAJOR);
    assert_int_equal(minor, TMEM_VERSION_MINOR);
    assert_int_equal(patch, TMEM_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(version_is_the_projects),
        cmocka_unit_test(version_matches_the_macros),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
