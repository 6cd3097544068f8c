//go:build !bp_gcstress

package bp

// gcStress is on only in builds with the bp_gcstress tag (see gcstress_on.go).
const gcStress = false
