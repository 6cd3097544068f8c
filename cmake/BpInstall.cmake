# `cmake --install <build> --prefix <P>` puts:
#   <P>/include/bp.h
#   <P>/<libdir>/libbp.a, libbp.so.X.Y.Z, libbp.so.X -> libbp.so.X.Y.Z, libbp.so -> libbp.so.X
#   <P>/<libdir>/pkgconfig/bp.pc                       (pkg-config --cflags --libs bp)
#   <P>/<libdir>/cmake/bp/bpConfig.cmake (+ version)   (find_package(bp) -> bp::bp, bp::bp_static, bp::bp_shared)
# Both the .pc and the CMake package locate the prefix relative to themselves, so an installed tree
# can be moved.

include(CMakePackageConfigHelpers)

set(BP_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/bp")

install(FILES "${BP_INCLUDE_DIR}/bp.h" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/bindings/cpp/include/bp.hpp" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${BP_STATIC_LIB}" "${BP_SHARED_LIB}"
              "${BP_STAGE_DIR}/lib/${BP_SONAME}" "${BP_STAGE_DIR}/lib/libbp.so"
        DESTINATION "${CMAKE_INSTALL_LIBDIR}")

# pkg-config: the prefix relative to <libdir>/pkgconfig.
file(RELATIVE_PATH BP_PC_TO_PREFIX "/p/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/p")
string(REGEX REPLACE "/$" "" BP_PC_TO_PREFIX "${BP_PC_TO_PREFIX}")
set(BP_PC_PRIVATE_LIBS "-lpthread -ldl -lm -lrt -lutil")
configure_file("${CMAKE_CURRENT_SOURCE_DIR}/cmake/bp.pc.in" "${CMAKE_BINARY_DIR}/bp.pc" @ONLY)
install(FILES "${CMAKE_BINARY_DIR}/bp.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")

# CMake package: the prefix relative to <libdir>/cmake/bp.
file(RELATIVE_PATH BP_CMAKE_TO_PREFIX "/p/${BP_INSTALL_CMAKEDIR}" "/p")
configure_file("${CMAKE_CURRENT_SOURCE_DIR}/cmake/bpConfig.cmake.in" "${CMAKE_BINARY_DIR}/bpConfig.cmake" @ONLY)
write_basic_package_version_file("${CMAKE_BINARY_DIR}/bpConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES "${CMAKE_BINARY_DIR}/bpConfig.cmake" "${CMAKE_BINARY_DIR}/bpConfigVersion.cmake"
        DESTINATION "${BP_INSTALL_CMAKEDIR}")
