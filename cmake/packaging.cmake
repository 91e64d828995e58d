# SPDX-License-Identifier: MIT
# packaging.cmake - the Debian package (CPack's DEB generator), made from the
# install rules of this build:
#
#     cmake -S . -B build-deb -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
#           -DTMEM_BUILD_TESTS=OFF -DTMEM_BUILD_BENCH=OFF -DTMEM_BUILD_FUZZ=OFF
#     cmake --build build-deb -j2 && (cd build-deb && cpack -G DEB)
#
# One package, tmem: tmemd and tmemctl (/usr/sbin), tmem-cachefs and
# tmem-uswap (/usr/bin) with the shim in $libdir/tmem, libtmem with its
# headers and tmem.pc, the unit, /etc/tmem/tmemd.conf (a conffile), the man
# pages, the copyright and a changelog.  Depends: comes from dpkg-shlibdeps
# (dpkg-dev).  The maintainer scripts only tell systemd to reload its units;
# the package enables and starts nothing.
#
# The paths compiled into the programs (tmemd's default configuration file)
# come from CMAKE_INSTALL_PREFIX, so the package is made for that prefix:
# configure with /usr for a package of the system.

set(CPACK_PACKAGE_NAME "tmem")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_VENDOR "the tmem authors")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "transcendent memory for Linux hosts: daemon, tools, library")
set(CPACK_PACKAGING_INSTALL_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_STRIP_FILES ON)
set(CPACK_PACKAGE_CHECKSUM SHA256)
if(NOT CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  message(STATUS "packaging: the Debian package would install under ${CMAKE_INSTALL_PREFIX}; "
                 "configure with -DCMAKE_INSTALL_PREFIX=/usr for one of the system")
endif()

set(TMEM_DEB_MAINTAINER "tmem authors <tmem@example.org>" CACHE STRING
    "Maintainer: of the Debian package (cpack -G DEB)")
set(TMEM_DEB_RELEASE "1" CACHE STRING "The Debian revision of the package")

set(CPACK_DEBIAN_PACKAGE_NAME "tmem")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)      # tmem_VERSION-REVISION_ARCH.deb
set(CPACK_DEBIAN_PACKAGE_RELEASE "${TMEM_DEB_RELEASE}")
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${TMEM_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# The extended "Description:" (CPack puts the summary first and indents the
# lines).
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION "tmem gathers memory that no single tenant of a host can use well into one
pool owned by a daemon, tmemd, and lends it to clients through a page-copy
API: ephemeral pools (a victim cache for clean pages) and persistent pools
(a fast front for swap), compressed and deduplicated, shared by weight, and
given back to the host under memory pressure.
.
Only programs that use it benefit: programs linked against libtmem, files
read through a tmem-cachefs mount (FUSE), and programs run under tmem-uswap
(userfaultfd paging).  The package enables and starts nothing: run
systemctl enable --now tmemd.
.
This package holds tmemd and its systemd unit, tmemctl, tmem-cachefs,
tmem-uswap, the shared library libtmem with its headers and pkg-config file,
/etc/tmem/tmemd.conf and the manual pages.")
# Depends: from the ELF files' needs (dpkg-shlibdeps; libtmem.so.0, ours, is
# found through the shlibs file made below).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# tmem-cachefs unmounts with fusermount3
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "fuse3")
# shlibs for libtmem.so.0, and the ldconfig trigger that goes with it
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")

# conffiles (the configuration under sysconfdir) and the maintainer scripts
# (dist/debian/), which only reload systemd's units.
set(tmem_deb_dir "${PROJECT_BINARY_DIR}/debian")
file(MAKE_DIRECTORY "${tmem_deb_dir}")
file(WRITE "${tmem_deb_dir}/conffiles" "${CMAKE_INSTALL_FULL_SYSCONFDIR}/tmem/tmemd.conf\n")
# libtmem.so.0 in the loader's directories: ldconfig runs once dpkg is done
# (Debian policy 8.1.1; CPack does not add it)
file(WRITE "${tmem_deb_dir}/triggers" "activate-noawait ldconfig\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA "${tmem_deb_dir}/conffiles" "${tmem_deb_dir}/triggers"
    "${PROJECT_SOURCE_DIR}/dist/debian/postinst" "${PROJECT_SOURCE_DIR}/dist/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Debian's changelog of the package (one entry: this version), gzipped
# without a time stamp.  Its date is the configure day, or
# $SOURCE_DATE_EPOCH's.
string(TIMESTAMP tmem_deb_date "%a, %d %b %Y 00:00:00 +0000" UTC)
file(WRITE "${tmem_deb_dir}/changelog.Debian.new"
"tmem (${PROJECT_VERSION}-${TMEM_DEB_RELEASE}) unstable; urgency=medium

  * tmem ${PROJECT_VERSION}, packaged by CPack (cmake/packaging.cmake).

 -- ${TMEM_DEB_MAINTAINER}  ${tmem_deb_date}
")
# rewritten only when it changes (not at every configure)
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different changelog.Debian.new changelog.Debian
                WORKING_DIRECTORY "${tmem_deb_dir}")
add_custom_command(OUTPUT "${tmem_deb_dir}/changelog.Debian.gz"
  COMMAND ${TMEM_GZIP} -9nkf changelog.Debian
  DEPENDS "${tmem_deb_dir}/changelog.Debian"
  WORKING_DIRECTORY "${tmem_deb_dir}" VERBATIM)
add_custom_target(tmem_deb_changelog ALL DEPENDS "${tmem_deb_dir}/changelog.Debian.gz")
install(FILES "${tmem_deb_dir}/changelog.Debian.gz" DESTINATION ${CMAKE_INSTALL_DOCDIR})

include(CPack)
