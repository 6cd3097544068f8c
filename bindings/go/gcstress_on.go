//go:build bp_gcstress

package bp

// gcStress makes every call into the C library run a full garbage collection first, so that an object
// the binding forgot to keep alive across a C call is finalized (and its graph freed) in the middle of
// its use, and the tests see it. Enable it with `go test -tags bp_gcstress`; it is slow.
const gcStress = true
