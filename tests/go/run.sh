#!/bin/sh
# Runs one step of the Go binding's checks for ctest (tests/go/CMakeLists.txt registers each step):
#
#   run.sh <step> <source dir> <build dir> <libbp.a>
#
#   vet        go vet over the binding and the examples
#   test       go test ./... in bindings/go
#   cgocheck2  the same with GOEXPERIMENT=cgocheck2 (every pointer passed to C is checked)
#   gcstress   the same with -tags bp_gcstress (a garbage collection before every C call)
#   race       the same with the race detector
#   example:<name>  builds examples/go/<name> and runs it with the remaining arguments
#
# The binding links the libbp.a that CMake staged (-tags bp_external with CGO_LDFLAGS), never fetches a
# module (GOPROXY=off, GOFLAGS=-mod=mod) or a toolchain (GOTOOLCHAIN=local), and keeps its build cache in
# the build directory when HOME is not writable.
set -eu
step=$1 src=$2 build=$3 lib=$4
shift 4

export CGO_ENABLED=1 GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local
export CGO_LDFLAGS="$lib -lpthread -ldl -lm -lrt -lutil"
if [ -z "${GOCACHE:-}" ] && { [ -z "${HOME:-}" ] || [ ! -w "${HOME}" ]; }; then
    export GOCACHE="$build/go-cache" GOMODCACHE="$build/go-modcache" GOPATH="$build/go-path"
fi
tags=bp_external
gotest() {
    cd "$src/bindings/go"
    go test -count=1 -tags "$tags" "$@" ./...
}

case "$step" in
vet)
    (cd "$src/bindings/go" && go vet -tags "$tags" ./... && go vet -tags "$tags,bp_gcstress" ./...)
    (cd "$src/examples/go" && go vet -tags "$tags" ./...)
    unformatted=$(cd "$src" && gofmt -l bindings/go examples/go)
    if [ -n "$unformatted" ]; then
        echo "not gofmt-formatted: $unformatted" >&2
        exit 1
    fi
    ;;
test) gotest ;;
cgocheck2) GOEXPERIMENT=cgocheck2 gotest ;;
gcstress) tags="$tags,bp_gcstress" gotest ;;
race) gotest -race ;;
example:*)
    name=${step#example:}
    mkdir -p "$build/go-bin"
    (cd "$src/examples/go" && go build -tags "$tags" -o "$build/go-bin/$name" "./$name")
    "$build/go-bin/$name" "$@"
    ;;
*)
    echo "run.sh: unknown step $step" >&2
    exit 2
    ;;
esac
