# Test registration shared by every language.
#
#   bp_add_program(<name> SOURCES <files...> [SHARED])
#       A C (C99) or C++ (C++11) executable built with -Wall -Wextra -Werror -pedantic, linked to libbp
#       (static unless SHARED), with tests/c/ on its include path for the test helpers.
#   bp_add_test(NAME <name> COMMAND <cmd...> LABELS <labels...> [MEMCHECK] [WORKING_DIRECTORY <dir>]
#               [ENVIRONMENT <VAR=value...>])
#       Registers a ctest test. With MEMCHECK (and valgrind found) the same command is registered again
#       as memcheck.<name>, run under valgrind memcheck, failing on any error or definite/indirect leak,
#       with the extra label "memcheck".
#
# For bindings that build on their own (Go with cgo): BP_INCLUDE_DIR is the header's directory,
# BP_STAGE_DIR/lib holds libbp.a and libbp.so*, and the target bp_cargo builds them; e.g.
#   bp_add_test(NAME go.bp COMMAND go test ./... LABELS go WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}/go
#               ENVIRONMENT "CGO_CFLAGS=-I${BP_INCLUDE_DIR}" "CGO_LDFLAGS=${BP_STAGE_DIR}/lib/libbp.a -lm -ldl -lpthread")
#
# Labels in use: c, cpp, go, example, install, memcheck, mpi. `ctest -L c` runs the C tests,
# `ctest -LE memcheck` everything but the valgrind pass.

find_program(BP_VALGRIND valgrind)
option(BP_MEMCHECK "Register every MEMCHECK test again under valgrind" ON)
option(BP_REQUIRE_MEMCHECK "Fail to configure when valgrind is missing (scripts/test.sh sets it)" OFF)
if(BP_MEMCHECK AND NOT BP_VALGRIND)
  if(BP_REQUIRE_MEMCHECK)
    message(FATAL_ERROR "valgrind not found, and BP_REQUIRE_MEMCHECK is ON")
  endif()
  message(WARNING "valgrind not found: the memcheck tests are not registered")
endif()

set(BP_C_WARNINGS -Wall -Wextra -Werror -pedantic)

function(bp_add_program name)
  cmake_parse_arguments(P "SHARED" "" "SOURCES" ${ARGN})
  add_executable(${name} ${P_SOURCES})
  target_compile_options(${name} PRIVATE ${BP_C_WARNINGS})
  set_target_properties(${name} PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
                                           CXX_STANDARD 11 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  target_include_directories(${name} PRIVATE "${PROJECT_SOURCE_DIR}/tests/c")
  if(P_SHARED)
    bp_link(${name} shared)
  else()
    bp_link(${name} static)
  endif()
endfunction()

function(bp_add_test)
  cmake_parse_arguments(T "MEMCHECK" "NAME;WORKING_DIRECTORY" "COMMAND;LABELS;ENVIRONMENT" ${ARGN})
  if(NOT T_WORKING_DIRECTORY)
    set(T_WORKING_DIRECTORY "${CMAKE_CURRENT_BINARY_DIR}")
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND} WORKING_DIRECTORY "${T_WORKING_DIRECTORY}")
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}")
  if(T_ENVIRONMENT)
    set_tests_properties(${T_NAME} PROPERTIES ENVIRONMENT "${T_ENVIRONMENT}")
  endif()
  if(T_MEMCHECK AND BP_MEMCHECK AND BP_VALGRIND)
    list(GET T_COMMAND 0 exe)
    list(REMOVE_AT T_COMMAND 0)
    if(TARGET ${exe})
      set(exe "$<TARGET_FILE:${exe}>")
    endif()
    add_test(NAME memcheck.${T_NAME}
      COMMAND "${BP_VALGRIND}" --tool=memcheck --error-exitcode=99 --leak-check=full
              --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
              --track-origins=yes --quiet
              ${exe} ${T_COMMAND}
      WORKING_DIRECTORY "${T_WORKING_DIRECTORY}")
    set_tests_properties(memcheck.${T_NAME} PROPERTIES LABELS "memcheck;${T_LABELS}")
    if(T_ENVIRONMENT)
      set_tests_properties(memcheck.${T_NAME} PROPERTIES ENVIRONMENT "${T_ENVIRONMENT}")
    endif()
  endif()
endfunction()

# Installs the build into a temporary prefix and builds tests/install/consumer.c against the installed
# copy twice: with `pkg-config --cflags --libs bp`, and with find_package(bp) in a separate CMake project.
function(bp_add_install_test)
  find_program(BP_PKG_CONFIG pkg-config)
  add_test(NAME install.pkg_config_and_find_package
    COMMAND sh "${PROJECT_SOURCE_DIR}/tests/install/run.sh" "${CMAKE_BINARY_DIR}" "${PROJECT_SOURCE_DIR}"
            "${CMAKE_COMMAND}" "${CMAKE_C_COMPILER}" "${BP_PKG_CONFIG}")
  set_tests_properties(install.pkg_config_and_find_package PROPERTIES LABELS "install;c")
endfunction()
