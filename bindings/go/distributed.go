package bp

// #include <stdint.h>
// #include <stdlib.h>
// #include "bp.h"
// extern int32_t bpGoAllReduce(void *user, float *buf, size_t len);
// extern int32_t bpGoBroadcast(void *user, float *buf, size_t len);
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"runtime/cgo"
	"unsafe"
)

// Collective is the transport of data-parallel training (docs/DISTRIBUTED.md): MPI, NCCL, Gloo or
// your own. Every rank calls the methods in the same order with buffers of the same length.
// AllReduceSum replaces buf with the elementwise sum over the ranks, Broadcast with rank 0's buf; both
// work in place and must return an error, not block forever, when a peer does not take part. buf
// is library memory lent for the call only: do not keep it.
type Collective interface {
	Rank() int
	WorldSize() int
	AllReduceSum(buf []float32) error
	Broadcast(buf []float32) error
}

// CommStats is the time and bytes a DataParallel spent in collectives.
type CommStats struct {
	AllReduces       uint64  // all-reduce calls made
	AllReduceSeconds float64 // seconds inside AllReduceSum, waiting for slower ranks included
	AllReduceBytes   uint64  // bytes handed to AllReduceSum in total
	BroadcastSeconds float64 // seconds inside Broadcast
}

// DataParallel is data-parallel training of one model on one rank: it flattens the parameters into
// one buffer (their gradients into another), broadcasts rank 0's values at construction, and after
// each backward makes one AllReduceSum of the gradients and divides by the world size. Close it when
// done (a finalizer frees it otherwise, as a safety net). The graph must stay open while it is used.
type DataParallel struct {
	ptr  *C.bp_data_parallel
	g    *Graph
	user unsafe.Pointer // C memory holding the cgo.Handle of the Collective
}

// collectiveCall runs a Go collective method for C: an error or a panic becomes a non-zero status
// (a panic must not unwind through the library).
func collectiveCall(user unsafe.Pointer, buf *C.float, n C.size_t, f func(Collective, []float32) error) (code C.int32_t) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "bp: a Collective panicked: %v\n", r)
			code = 2
		}
	}()
	c := cgo.Handle(*(*C.uintptr_t)(user)).Value().(Collective)
	var s []float32
	if n > 0 {
		s = unsafe.Slice((*float32)(unsafe.Pointer(buf)), int(n))
	}
	if err := f(c, s); err != nil {
		return 1
	}
	return 0
}

//export bpGoAllReduce
func bpGoAllReduce(user unsafe.Pointer, buf *C.float, n C.size_t) C.int32_t {
	return collectiveCall(user, buf, n, Collective.AllReduceSum)
}

//export bpGoBroadcast
func bpGoBroadcast(user unsafe.Pointer, buf *C.float, n C.size_t) C.int32_t {
	return collectiveCall(user, buf, n, Collective.Broadcast)
}

// NewDataParallel starts data-parallel training of the model whose parameters are params (persistent
// float32 leaves that require grad: a Model's Parameters(), the same on every rank in the same order)
// over c, and broadcasts the parameters from rank 0. A failed collective returns ErrCollective.
func NewDataParallel(g *Graph, params []Tensor, c Collective) (*DataParallel, error) {
	if c == nil {
		return nil, &Error{Code: StatusInvalidArgument, Message: "no Collective"}
	}
	hs := make([]C.bp_tensor, len(params))
	for i, t := range params {
		hs[i] = t.h
	}
	user := C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	h := cgo.NewHandle(c)
	*(*C.uintptr_t)(user) = C.uintptr_t(h)
	coll := C.bp_collective{
		user:       user,
		rank:       C.int32_t(c.Rank()),
		world_size: C.int32_t(c.WorldSize()),
		all_reduce: C.bp_collective_fn(C.bpGoAllReduce),
		broadcast:  C.bp_collective_fn(C.bpGoBroadcast),
	}
	var ptr *C.bp_data_parallel
	err := g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_data_parallel_new(p, first(hs), C.size_t(len(hs)), &coll, &ptr)
	})
	if err != nil {
		h.Delete()
		C.free(user)
		return nil, err
	}
	d := &DataParallel{ptr: ptr, g: g, user: user}
	runtime.SetFinalizer(d, (*DataParallel).Close)
	return d, nil
}

// Close frees the training state (the parameters stay flat and keep working); closing again does
// nothing.
func (d *DataParallel) Close() error {
	if d.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(d, nil)
	err := callC(func() C.bp_status { return C.bp_data_parallel_free(d.ptr) })
	cgo.Handle(*(*C.uintptr_t)(d.user)).Delete()
	C.free(d.user)
	d.ptr, d.user = nil, nil
	return err
}

func (d *DataParallel) call(f func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status) error {
	if d == nil || d.ptr == nil {
		return closedError("DataParallel")
	}
	err := d.g.call(func(g *C.bp_graph) C.bp_status { return f(g, d.ptr) })
	runtime.KeepAlive(d)
	return err
}

// Backward runs backward from loss, then the all-reduce and averaging of the gradients.
func (d *DataParallel) Backward(loss Tensor) error {
	return d.call(func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status {
		return C.bp_data_parallel_backward(g, p, loss.h)
	})
}

// AverageGradients is the all-reduce and averaging alone (after a backward of your own).
func (d *DataParallel) AverageGradients() error {
	return d.call(func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status {
		return C.bp_data_parallel_average_gradients(g, p)
	})
}

// SyncParameters broadcasts the parameters from rank 0 again.
func (d *DataParallel) SyncParameters() error {
	return d.call(func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status {
		return C.bp_data_parallel_sync_parameters(g, p)
	})
}

// Parameters is the flat parameter buffer itself (library memory, not a copy): valid until the next
// call on the graph. Writing it is an in-place write to every parameter; do it after backward.
func (d *DataParallel) Parameters() ([]float32, error) {
	var data *C.float
	var n C.size_t
	err := d.call(func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status {
		return C.bp_data_parallel_parameters(g, p, &data, &n)
	})
	if err != nil || n == 0 {
		return nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(data)), int(n)), nil
}

// Gradients is the flat gradient buffer, laid out as Parameters (the same validity rule).
func (d *DataParallel) Gradients() ([]float32, error) {
	var data *C.float
	var n C.size_t
	err := d.call(func(g *C.bp_graph, p *C.bp_data_parallel) C.bp_status {
		return C.bp_data_parallel_gradients(g, p, &data, &n)
	})
	if err != nil || n == 0 {
		return nil, err
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(data)), int(n)), nil
}

// Stats is the time and bytes spent in collectives so far.
func (d *DataParallel) Stats() (CommStats, error) {
	var s C.bp_comm_stats
	if d == nil || d.ptr == nil {
		return CommStats{}, closedError("DataParallel")
	}
	err := callC(func() C.bp_status { return C.bp_data_parallel_stats(d.ptr, &s) })
	runtime.KeepAlive(d)
	return CommStats{uint64(s.all_reduces), float64(s.all_reduce_seconds), uint64(s.all_reduce_bytes), float64(s.broadcast_seconds)}, err
}
