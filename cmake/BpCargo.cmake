# Builds the Rust library with cargo and stages it in ${BP_STAGE_DIR}/lib, then defines the imported
# targets bp::bp_static (libbp.a) and bp::bp_shared (libbp.so with soname libbp.so.MAJOR).
#
# Cargo is always invoked (the target is never considered up to date): cargo itself decides what is
# stale, which is fast when nothing changed.

find_program(CARGO cargo HINTS "$ENV{HOME}/.cargo/bin" REQUIRED)
find_package(Threads REQUIRED)

set(BP_CARGO_TARGET_DIR "${CMAKE_CURRENT_SOURCE_DIR}/target" CACHE PATH "cargo's --target-dir")
set(BP_CARGO_PROFILE release CACHE STRING "cargo profile the C libraries are built with")
if(BP_CARGO_PROFILE STREQUAL "dev")
  set(_bp_profile_dir debug)
else()
  set(_bp_profile_dir ${BP_CARGO_PROFILE})
endif()

set(BP_STAGE_DIR "${CMAKE_BINARY_DIR}/bp-stage")
set(BP_STATIC_LIB "${BP_STAGE_DIR}/lib/libbp.a")
set(BP_SONAME "libbp.so.${PROJECT_VERSION_MAJOR}")
set(BP_SHARED_REAL "libbp.so.${PROJECT_VERSION}")
set(BP_SHARED_LIB "${BP_STAGE_DIR}/lib/${BP_SHARED_REAL}")
set(BP_INCLUDE_DIR "${CMAKE_CURRENT_SOURCE_DIR}/include")
set(_bp_out "${BP_CARGO_TARGET_DIR}/${_bp_profile_dir}")

add_custom_target(bp_cargo ALL
  COMMAND "${CARGO}" build --profile ${BP_CARGO_PROFILE} --lib
          --manifest-path "${CMAKE_CURRENT_SOURCE_DIR}/Cargo.toml" --target-dir "${BP_CARGO_TARGET_DIR}"
  COMMAND "${CMAKE_COMMAND}" -E make_directory "${BP_STAGE_DIR}/lib"
  COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${_bp_out}/libbp.a" "${BP_STATIC_LIB}"
  COMMAND "${CMAKE_COMMAND}" -E copy_if_different "${_bp_out}/libbp.so" "${BP_SHARED_LIB}"
  COMMAND "${CMAKE_COMMAND}" -E create_symlink "${BP_SHARED_REAL}" "${BP_STAGE_DIR}/lib/${BP_SONAME}"
  COMMAND "${CMAKE_COMMAND}" -E create_symlink "${BP_SONAME}" "${BP_STAGE_DIR}/lib/libbp.so"
  BYPRODUCTS "${BP_STATIC_LIB}" "${BP_SHARED_LIB}"
  WORKING_DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}"
  USES_TERMINAL
  COMMENT "cargo build --profile ${BP_CARGO_PROFILE} (libbp.a, libbp.so)")

# What a static Rust library needs from the system (`cargo rustc -- --print native-static-libs`).
set(BP_STATIC_DEPS Threads::Threads ${CMAKE_DL_LIBS} m rt util)

add_library(bp::bp_static STATIC IMPORTED GLOBAL)
set_target_properties(bp::bp_static PROPERTIES
  IMPORTED_LOCATION "${BP_STATIC_LIB}"
  INTERFACE_INCLUDE_DIRECTORIES "${BP_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${BP_STATIC_DEPS}")

add_library(bp::bp_shared SHARED IMPORTED GLOBAL)
set_target_properties(bp::bp_shared PROPERTIES
  IMPORTED_LOCATION "${BP_SHARED_LIB}"
  IMPORTED_SONAME "${BP_SONAME}"
  INTERFACE_INCLUDE_DIRECTORIES "${BP_INCLUDE_DIR}")

# Programs linking either target must wait for cargo: use bp_link(<target> static|shared).
function(bp_link target kind)
  if(kind STREQUAL "shared")
    target_link_libraries(${target} PRIVATE bp::bp_shared)
    set_target_properties(${target} PROPERTIES BUILD_RPATH "${BP_STAGE_DIR}/lib")
  else()
    target_link_libraries(${target} PRIVATE bp::bp_static)
  endif()
  add_dependencies(${target} bp_cargo)
endfunction()
