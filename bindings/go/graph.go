package bp

// #include "bp.h"
import "C"

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// liveGraphs counts graphs made and not yet freed (by Close or the finalizer), for the tests.
var liveGraphs atomic.Int64

// Graph owns a C graph: the arena of tensors and the record of the ops that made them. Make it with
// NewGraph and Close it when done. A Graph is not safe for concurrent use by several goroutines.
type Graph struct {
	ptr *C.bp_graph // nil once closed
}

// NewGraph makes an empty graph: no memory limit, gradient recording on, generator seeded with 0.
func NewGraph() (*Graph, error) {
	var ptr *C.bp_graph
	if err := callC(func() C.bp_status { return C.bp_graph_new(&ptr) }); err != nil {
		return nil, err
	}
	g := &Graph{ptr: ptr}
	liveGraphs.Add(1)
	// A safety net only: native memory is invisible to the collector, so programs should Close.
	runtime.SetFinalizer(g, (*Graph).free)
	return g, nil
}

// Close frees the graph and every tensor in it; its tensors become stale. Closing again does nothing
// and returns nil.
func (g *Graph) Close() error {
	if g.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(g, nil)
	return g.free()
}

func (g *Graph) free() error {
	ptr := g.ptr
	if ptr == nil {
		return nil
	}
	g.ptr = nil
	liveGraphs.Add(-1)
	return callC(func() C.bp_status { return C.bp_graph_free(ptr) })
}

// call runs a C call on the graph's pointer, keeping the Graph alive until the call has returned.
func (g *Graph) call(f func(p *C.bp_graph) C.bp_status) error {
	if g == nil {
		return &Error{Code: StatusInvalidArgument, Message: "no graph (the null Tensor, or a Model without parameters)"}
	}
	if g.ptr == nil {
		return &Error{Code: StatusInvalidHandle, Message: "the graph is closed"}
	}
	err := callC(func() C.bp_status { return f(g.ptr) })
	runtime.KeepAlive(g)
	return err
}

// Reset drops every tensor that is not persistent, and every recorded op; persistent tensors and
// their gradients stay. Call it between training steps.
func (g *Graph) Reset() error {
	return g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_reset(p) })
}

// ManualSeed reseeds the graph's generator, as torch.manual_seed.
func (g *Graph) ManualSeed(seed uint64) error {
	return g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_manual_seed(p, C.uint64_t(seed)) })
}

// GeneratorStateWords is the length of a saved generator state.
const GeneratorStateWords = int(C.BP_GENERATOR_STATE_WORDS)

// GeneratorState copies the whole state of the graph's random generator (for checkpoints that
// resume bit for bit).
func (g *Graph) GeneratorState() ([]uint32, error) {
	words := make([]uint32, GeneratorStateWords)
	err := g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_graph_get_generator_state(p, (*C.uint32_t)(unsafe.Pointer(first(words))), C.size_t(len(words)))
	})
	if err != nil {
		return nil, err
	}
	return words, nil
}

// SetGeneratorState restores a state saved by GeneratorState; malformed words fail with
// StatusFormat and leave the generator unchanged.
func (g *Graph) SetGeneratorState(words []uint32) error {
	return g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_graph_set_generator_state(p, (*C.uint32_t)(unsafe.Pointer(first(words))), C.size_t(len(words)))
	})
}

// NoLimit is the memory limit that means "unlimited".
const NoLimit = ^uint64(0)

// SetMemoryLimit caps the bytes of tensor data (NoLimit: none); past it allocations fail with
// StatusOutOfMemory and the graph stays usable.
func (g *Graph) SetMemoryLimit(bytes uint64) error {
	limit := C.size_t(bytes)
	if bytes == NoLimit {
		limit = ^C.size_t(0)
	}
	return g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_set_memory_limit(p, limit) })
}

// MemoryLimit is the memory limit in bytes (NoLimit when unlimited).
func (g *Graph) MemoryLimit() (uint64, error) {
	var bytes C.size_t
	err := g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_memory_limit(p, &bytes) })
	if bytes == ^C.size_t(0) {
		return NoLimit, err
	}
	return uint64(bytes), err
}

// MemoryUsed is the bytes held by live tensors and the bytes pooled for reuse.
func (g *Graph) MemoryUsed() (live, pooled uint64, err error) {
	var l, p C.size_t
	err = g.call(func(gp *C.bp_graph) C.bp_status { return C.bp_graph_memory_used(gp, &l, &p) })
	return uint64(l), uint64(p), err
}

// TensorCount is the number of live tensors.
func (g *Graph) TensorCount() (int, error) {
	var n C.size_t
	err := g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_tensor_count(p, &n) })
	return int(n), err
}

// NodeCount is the number of recorded ops.
func (g *Graph) NodeCount() (int, error) {
	var n C.size_t
	err := g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_node_count(p, &n) })
	return int(n), err
}

// GradEnabled reports whether ops record for autograd.
func (g *Graph) GradEnabled() (bool, error) {
	var on C.bool
	err := g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_is_grad_enabled(p, &on) })
	return bool(on), err
}

// SetGradEnabled turns recording on or off and returns the previous setting. Prefer NoGrad.
func (g *Graph) SetGradEnabled(enabled bool) (previous bool, err error) {
	var prev C.bool
	err = g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_set_grad_enabled(p, C.bool(enabled), &prev) })
	return bool(prev), err
}

// NoGrad runs f with gradient recording off (torch.no_grad()) and restores the previous setting
// afterwards, also when f panics. It returns f's error.
func (g *Graph) NoGrad(f func() error) error {
	previous, err := g.SetGradEnabled(false)
	if err != nil {
		return err
	}
	defer g.SetGradEnabled(previous)
	return f()
}

// SetAnomalyDetection turns anomaly detection on or off: with it on, an op producing a NaN or an
// infinity fails with StatusAnomaly.
func (g *Graph) SetAnomalyDetection(enabled bool) error {
	return g.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_set_anomaly_detection(p, C.bool(enabled)) })
}

// GradOptions are the options of Graph.Grad.
type GradOptions struct {
	// GradOutputs has one seed per output (the zero Tensor meaning "seed with 1"), or is empty when
	// every output has one element.
	GradOutputs []Tensor
	// RetainGraph keeps the saved values so that the graph can be differentiated again.
	RetainGraph bool
	// CreateGraph makes the gradients differentiable (for higher derivatives); it retains the graph.
	CreateGraph bool
}

// Grad is torch.autograd.grad: the gradients of Σ outputs·GradOutputs with respect to each input,
// without touching any Tensor.Grad. An input the outputs do not depend on is an error.
func (g *Graph) Grad(outputs, inputs []Tensor, opts GradOptions) ([]Tensor, error) {
	outs, ins, seeds := handles(outputs), handles(inputs), handles(opts.GradOutputs)
	grads := make([]C.bp_tensor, len(inputs))
	err := g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_grad_of(p, first(outs), C.size_t(len(outs)), first(ins), C.size_t(len(ins)),
			first(seeds), C.size_t(len(seeds)), C.bool(opts.RetainGraph), C.bool(opts.CreateGraph),
			first(grads), C.size_t(len(grads)))
	})
	if err != nil {
		return nil, err
	}
	result := make([]Tensor, len(grads))
	for i, h := range grads {
		result[i] = Tensor{g: g, h: h}
	}
	return result, nil
}

// Concat joins tensors of this graph along dim.
func (g *Graph) Concat(dim int, xs ...Tensor) (Tensor, error) {
	hs := handles(xs)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_concat(p, first(hs), C.size_t(len(hs)), C.int64_t(dim), out)
	})
}

// newTensor runs a C call that makes one tensor of this graph.
func (g *Graph) newTensor(f func(p *C.bp_graph, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	var out C.bp_tensor
	if err := g.call(func(p *C.bp_graph) C.bp_status { return f(p, &out) }); err != nil {
		return Tensor{}, err
	}
	return Tensor{g: g, h: out}, nil
}

// Zeros makes a tensor of zeros.
func (g *Graph) Zeros(dtype DType, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_new(p, C.bp_dtype(dtype), first(dims), C.size_t(len(dims)), out)
	})
}

// Full makes a tensor with every element equal to value.
func (g *Graph) Full(dtype DType, value float64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_full(p, C.bp_dtype(dtype), first(dims), C.size_t(len(dims)), C.double(value), out)
	})
}

// FromFloat32 makes a float32 tensor holding a copy of data (row-major; len(data) must fit the shape).
func (g *Graph) FromFloat32(data []float32, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_from_f32(p, (*C.float)(unsafe.Pointer(first(data))), C.size_t(len(data)), first(dims), C.size_t(len(dims)), out)
	})
}

// FromFloat64 makes a float64 tensor holding a copy of data.
func (g *Graph) FromFloat64(data []float64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_from_f64(p, (*C.double)(unsafe.Pointer(first(data))), C.size_t(len(data)), first(dims), C.size_t(len(dims)), out)
	})
}

// FromInt64 makes an int64 tensor (class indices, gather indices) holding a copy of data.
func (g *Graph) FromInt64(data []int64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_from_i64(p, (*C.int64_t)(unsafe.Pointer(first(data))), C.size_t(len(data)), first(dims), C.size_t(len(dims)), out)
	})
}

// Arange makes start, start+step, … below end (torch.arange).
func (g *Graph) Arange(dtype DType, start, end, step float64) (Tensor, error) {
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_arange(p, C.double(start), C.double(end), C.double(step), C.bp_dtype(dtype), out)
	})
}

// Rand makes a tensor uniform on [low, high), exactly as torch's generator after the same ManualSeed.
func (g *Graph) Rand(dtype DType, low, high float64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_rand(p, C.bp_dtype(dtype), first(dims), C.size_t(len(dims)), C.double(low), C.double(high), out)
	})
}

// Randn makes normal samples, torch.randn(shape)·std + mean.
func (g *Graph) Randn(dtype DType, mean, std float64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_randn(p, C.bp_dtype(dtype), first(dims), C.size_t(len(dims)), C.double(mean), C.double(std), out)
	})
}

// Randint makes int64 values uniform on the integers [low, high) (torch.randint).
func (g *Graph) Randint(low, high int64, shape ...int) (Tensor, error) {
	dims := int64s(shape)
	return g.newTensor(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_tensor_randint(p, C.int64_t(low), C.int64_t(high), first(dims), C.size_t(len(dims)), out)
	})
}

// first is the address of a slice's first element, or nil for an empty slice (the C API accepts
// NULL with length 0). The memory stays Go's: C reads or writes it only during the call.
func first[E any](s []E) *E {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// int64s converts a Go shape to C dimensions.
func int64s(shape []int) []C.int64_t {
	dims := make([]C.int64_t, len(shape))
	for i, d := range shape {
		dims[i] = C.int64_t(d)
	}
	return dims
}

// handles are the C handles of tensors.
func handles(ts []Tensor) []C.bp_tensor {
	hs := make([]C.bp_tensor, len(ts))
	for i, t := range ts {
		hs[i] = t.h
	}
	return hs
}
