//go:build !bp_external

package bp

// Links the static library that `cargo build --release` (or the CMake build) leaves in the
// repository's target/ directory. Build with `-tags bp_external` to link another copy instead, named
// by CGO_LDFLAGS (for an installed library: CGO_LDFLAGS="$(pkg-config --libs --static bp)").

// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libbp.a -lpthread -ldl -lm -lrt -lutil
import "C"
