#!/bin/sh
# Installs a built tree into a temporary prefix and builds consumer.c against it with pkg-config and
# with find_package(bp); runs each program. Usage: run.sh BUILD_DIR SOURCE_DIR CMAKE CC PKG_CONFIG
set -eu
build=$1 src=$2 cmake=$3 cc=$4 pkgconfig=${5:-pkg-config}
if ! command -v "$pkgconfig" >/dev/null 2>&1; then
    echo "run.sh: pkg-config is not installed (scripts/test.sh installs it)" >&2
    exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/bp-install-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

"$cmake" --install "$build" --prefix "$prefix" >/dev/null
test -f "$prefix/include/bp.h"
pcdir=$(dirname "$(find "$prefix" -name bp.pc | head -n 1)")
libdir=$(dirname "$pcdir")
test -L "$libdir/libbp.so"
test -f "$libdir/libbp.a"
echo "installed into $prefix (libdir $libdir)"

# 1. pkg-config, shared (run through the soname) and static.
flags=$(PKG_CONFIG_PATH=$pcdir "$pkgconfig" --cflags --libs bp)
static_flags=$(PKG_CONFIG_PATH=$pcdir "$pkgconfig" --static --cflags --libs bp)
"$cc" -std=c99 -Wall -Wextra -Werror -pedantic "$src/tests/install/consumer.c" $flags -o "$work/pc_shared"
LD_LIBRARY_PATH=$libdir "$work/pc_shared"
"$cc" -std=c99 -Wall -Wextra -Werror -pedantic "$src/tests/install/consumer.c" \
    -I"$prefix/include" "$libdir/libbp.a" $(echo "$static_flags" | sed 's/-lbp//') -o "$work/pc_static"
"$work/pc_static"

# 2. find_package(bp) from a separate CMake project.
"$cmake" -S "$src/tests/install" -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" >/dev/null
"$cmake" --build "$work/consumer" >/dev/null
"$work/consumer/consumer_shared"
"$work/consumer/consumer_static"
echo "install test passed"
