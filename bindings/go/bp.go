// Package bp is the Go binding of backprop, a neural-network training runtime with PyTorch's autograd
// semantics. It is built on the C API (include/bp.h) alone and links the static library through cgo.
//
// A Graph owns every tensor; a Tensor is a small value handle into it. The training toolkit works as
// PyTorch's: a Model (nn.Sequential) whose parameters live in a Graph, an Optimizer, a Loader over a
// Dataset, and Graph.Reset after each step to drop the step's tensors (error checks elided):
//
//	g, err := bp.NewGraph()
//	...
//	defer g.Close()
//	model, err := bp.NewModel()
//	...
//	err = model.AddLinear(g, "", 64, 10, true)
//	opt, err := bp.NewAdam(g, model, 1e-3, bp.DefaultAdamOptions())
//	for {
//		batch, more, err := loader.Next(g, train)
//		... if !more { break }
//		err = opt.ZeroGrad()
//		logits, err := model.Forward(batch.X)
//		loss, err := logits.CrossEntropy(batch.Y)
//		err = loss.Backward()
//		err = opt.Step()
//		err = g.Reset()
//	}
//
// The engine is there too: ops are Tensor methods returning (Tensor, error) (x.MatMul(w), x.Relu(),
// Backward, Grad, Graph.Grad for torch.autograd.grad, Graph.NoGrad); Must turns an error into a panic
// where an error would be a bug.
//
// Lifetimes. Close a Graph when done (Close is safe to call twice); a finalizer frees a Graph that
// was never closed, but only as a safety net: graphs hold native memory the Go collector does not see.
// A Tensor keeps its Graph reachable. A Tensor whose tensor was freed, dropped by Reset, or whose Graph
// was closed is stale: using it returns an error with StatusInvalidHandle. Tensors copy to and from Go
// slices; the library never keeps a pointer to Go memory.
//
// Errors are *Error values carrying the C status code. Compare them by code, with errors.Is against the
// Err* values (errors.Is(err, bp.ErrShapeMismatch)) or errors.As and Error.Code; never by message.
//
// Threads. A Graph must be used by one goroutine at a time (a second goroutine using it at the same
// moment gets StatusInvalidArgument); different graphs may be used from different goroutines at once.
package bp

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #include <stdlib.h>
// #include "bp.h"
import "C"

import (
	"fmt"
	"runtime"
)

// Status is a status code of the C API (bp_status). The numbers are pinned forever.
type Status int32

// The status codes, with the same numbers as BP_OK and BP_ERR_* in bp.h.
const (
	StatusOK              Status = C.BP_OK
	StatusInvalidArgument Status = C.BP_ERR_INVALID_ARGUMENT
	StatusShapeMismatch   Status = C.BP_ERR_SHAPE_MISMATCH
	StatusInvalidHandle   Status = C.BP_ERR_INVALID_HANDLE
	StatusOutOfMemory     Status = C.BP_ERR_OUT_OF_MEMORY
	StatusAutograd        Status = C.BP_ERR_AUTOGRAD
	StatusDType           Status = C.BP_ERR_DTYPE
	StatusIO              Status = C.BP_ERR_IO
	StatusFormat          Status = C.BP_ERR_FORMAT
	StatusAnomaly         Status = C.BP_ERR_ANOMALY
	StatusInternal        Status = C.BP_ERR_INTERNAL
	StatusUnsupported     Status = C.BP_ERR_UNSUPPORTED
	StatusCollective      Status = C.BP_ERR_COLLECTIVE
)

// String is the C name of the status ("BP_ERR_SHAPE_MISMATCH"; "BP_ERR_UNKNOWN" for other numbers).
func (s Status) String() string {
	return C.GoString(C.bp_status_name(C.bp_status(s)))
}

// Error is a failed call: the status code and the library's message.
type Error struct {
	// Code is the C status code; compare it (or use errors.Is with the Err* values), not the message.
	Code Status
	// Message is the library's description, for people.
	Message string
}

// Error formats the error as "BP_ERR_<NAME>: message".
func (e *Error) Error() string {
	if e.Message == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Message
}

// Is reports whether target is an *Error with the same code, so errors.Is(err, bp.ErrAutograd) works
// whatever the message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Values to compare errors with errors.Is; they match any *Error with the same Code.
var (
	ErrInvalidArgument = &Error{Code: StatusInvalidArgument}
	ErrShapeMismatch   = &Error{Code: StatusShapeMismatch}
	ErrInvalidHandle   = &Error{Code: StatusInvalidHandle}
	ErrOutOfMemory     = &Error{Code: StatusOutOfMemory}
	ErrAutograd        = &Error{Code: StatusAutograd}
	ErrDType           = &Error{Code: StatusDType}
	ErrIO              = &Error{Code: StatusIO}
	ErrFormat          = &Error{Code: StatusFormat}
	ErrAnomaly         = &Error{Code: StatusAnomaly}
	ErrInternal        = &Error{Code: StatusInternal}
	ErrUnsupported     = &Error{Code: StatusUnsupported}
	ErrCollective      = &Error{Code: StatusCollective}
)

// Must returns v, or panics with err when it is not nil. It is for code where an error is a bug
// (examples, tests, a forward pass whose shapes are fixed), in the manner of regexp.MustCompile.
func Must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// DType is an element type (BP_DTYPE_*).
type DType int32

// The element types.
const (
	Float32 DType = C.BP_DTYPE_F32 // IEEE float32, the training type
	Float64 DType = C.BP_DTYPE_F64 // IEEE float64, for gradient checks
	Int64   DType = C.BP_DTYPE_I64 // class indices and gather indices
)

// String names the element type.
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int64:
		return "int64"
	}
	return fmt.Sprintf("DType(%d)", int32(d))
}

// Reduction says how a loss reduces its per-element values (BP_REDUCTION_*).
type Reduction int32

// The reductions.
const (
	ReductionNone Reduction = C.BP_REDUCTION_NONE // one value per element or sample
	ReductionMean Reduction = C.BP_REDUCTION_MEAN // the mean
	ReductionSum  Reduction = C.BP_REDUCTION_SUM  // the sum
)

// Activation is the activation LinearAct applies after a linear layer.
type Activation int32

// The activations.
const (
	ActivationRelu    Activation = C.BP_ACTIVATION_RELU    // max(x, 0)
	ActivationSigmoid Activation = C.BP_ACTIVATION_SIGMOID // 1 / (1 + e^-x)
	ActivationTanh    Activation = C.BP_ACTIVATION_TANH    // tanh x
)

// Version is the running library's version, major·10000 + minor·100 + patch.
func Version() uint32 { return uint32(C.bp_version()) }

// VersionString is the running library's version as "major.minor.patch".
func VersionString() string { return C.GoString(C.bp_version_string()) }

// HeaderVersion is the version of bp.h this package was compiled against, as Version.
const HeaderVersion = uint32(C.BP_VERSION_NUMBER)

// DebugTriggerPanic makes the library panic on purpose and returns the error its boundary makes of it
// (always StatusInternal). It exists to test the handling of internal errors.
func DebugTriggerPanic() error {
	return callC(func() C.bp_status { return C.bp_debug_trigger_panic() })
}

// callC runs one C call and turns a failed status into an *Error. The message is thread-local in
// the library, so the goroutine stays on its OS thread from the call until the message is copied.
func callC(f func() C.bp_status) error {
	if gcStress {
		runtime.GC()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if st := f(); st != C.BP_OK {
		return &Error{Code: Status(st), Message: C.GoString(C.bp_last_error_message())}
	}
	return nil
}
