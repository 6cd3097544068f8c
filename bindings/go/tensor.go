package bp

// #include "bp.h"
import "C"

import (
	"unsafe"
)

// Tensor is a handle to a tensor owned by a Graph: a small value, copy it freely; it owns nothing
// and keeps its Graph reachable. The zero Tensor is the null handle (what Grad returns before any
// backward reached the tensor).
type Tensor struct {
	g *Graph
	h C.bp_tensor
}

// Graph is the graph that owns the tensor (nil for the null handle).
func (t Tensor) Graph() *Graph { return t.g }

// IsNull reports whether t is the null handle.
func (t Tensor) IsNull() bool { return bool(C.bp_tensor_is_null(t.h)) }

// call runs a C call on the tensor's graph.
func (t Tensor) call(f func(p *C.bp_graph) C.bp_status) error { return t.g.call(f) }

// op runs a C call that makes one tensor of t's graph.
func (t Tensor) op(f func(p *C.bp_graph, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	return t.g.newTensor(f) // a nil graph (the null handle) is reported by Graph.call
}

// Shape is the tensor's dimensions.
func (t Tensor) Shape() ([]int, error) {
	var dims [8]C.int64_t
	var n C.size_t
	if err := t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_shape(p, t.h, &dims[0], C.size_t(len(dims)), &n)
	}); err != nil {
		return nil, err
	}
	shape := make([]int, n)
	for i := range shape {
		shape[i] = int(dims[i])
	}
	return shape, nil
}

// NDim is the number of dimensions.
func (t Tensor) NDim() (int, error) {
	var n C.size_t
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_ndim(p, t.h, &n) })
	return int(n), err
}

// NumEl is the number of elements.
func (t Tensor) NumEl() (int, error) {
	var n C.size_t
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_numel(p, t.h, &n) })
	return int(n), err
}

// DType is the element type.
func (t Tensor) DType() (DType, error) {
	var d C.bp_dtype
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_dtype(p, t.h, &d) })
	return DType(d), err
}

// Item is the value of a one-element tensor, as float64.
func (t Tensor) Item() (float64, error) {
	var v C.double
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_item(p, t.h, &v) })
	return float64(v), err
}

// Version is the tensor's version counter, bumped by every in-place write.
func (t Tensor) Version() (uint32, error) {
	var v C.uint32_t
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_version(p, t.h, &v) })
	return uint32(v), err
}

// RequiresGrad reports whether the tensor takes part in differentiation.
func (t Tensor) RequiresGrad() (bool, error) {
	var b C.bool
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_requires_grad(p, t.h, &b) })
	return bool(b), err
}

// SetRequiresGrad sets requires_grad on a floating-point leaf.
func (t Tensor) SetRequiresGrad(requiresGrad bool) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_set_requires_grad(p, t.h, C.bool(requiresGrad)) })
}

// IsLeaf reports whether the tensor is a leaf (not made by a recorded op).
func (t Tensor) IsLeaf() (bool, error) {
	var b C.bool
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_is_leaf(p, t.h, &b) })
	return bool(b), err
}

// GradFn is the name of the op that made the tensor ("matmul"), or "" for a leaf.
func (t Tensor) GradFn() (string, error) {
	var name *C.char
	if err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_grad_fn(p, t.h, &name) }); err != nil {
		return "", err
	}
	if name == nil {
		return "", nil
	}
	return C.GoString(name), nil // a static string
}

// RetainGrad asks a non-leaf to keep its gradient during backward.
func (t Tensor) RetainGrad() error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_retain_grad(p, t.h) })
}

// IsPersistent reports whether the tensor survives Graph.Reset.
func (t Tensor) IsPersistent() (bool, error) {
	var b C.bool
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_is_persistent(p, t.h, &b) })
	return bool(b), err
}

// SetPersistent makes a leaf survive Graph.Reset (parameters, data) or step-scoped again.
func (t Tensor) SetPersistent(persistent bool) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_set_persistent(p, t.h, C.bool(persistent)) })
}

// BackwardOptions are the options of Tensor.BackwardWith.
type BackwardOptions struct {
	// Gradient seeds a root with more than one element (same shape as the root); the zero Tensor
	// seeds a one-element root with 1.
	Gradient Tensor
	// RetainGraph keeps the saved values, so that a second backward through the same ops works.
	RetainGraph bool
	// CreateGraph makes the accumulated gradients differentiable; it retains the graph.
	CreateGraph bool
}

// Backward accumulates the gradient of this one-element tensor into the Grad of every leaf that
// requires grad. A second backward through the same ops fails with StatusAutograd.
func (t Tensor) Backward() error { return t.BackwardWith(BackwardOptions{}) }

// BackwardWith is Backward with a seed gradient, retain_graph or create_graph.
func (t Tensor) BackwardWith(opts BackwardOptions) error {
	seed := opts.Gradient.h
	return t.call(func(p *C.bp_graph) C.bp_status {
		var s *C.bp_tensor
		if !opts.Gradient.IsNull() {
			s = &seed
		}
		return C.bp_backward(p, t.h, s, C.bool(opts.RetainGraph), C.bool(opts.CreateGraph))
	})
}

// Grad is the accumulated gradient (torch's .grad): the zero Tensor before any backward reached it.
// The graph owns it; ZeroGrad, freeing t or Reset (unless t is persistent) make it stale.
func (t Tensor) Grad() (Tensor, error) {
	var h C.bp_tensor
	if err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_grad(p, t.h, &h) }); err != nil {
		return Tensor{}, err
	}
	if bool(C.bp_tensor_is_null(h)) {
		return Tensor{}, nil
	}
	return Tensor{g: t.g, h: h}, nil
}

// ZeroGrad drops the gradient (torch's zero_grad(set_to_none=True)).
func (t Tensor) ZeroGrad() error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_zero_grad(p, t.h) })
}

// Detach makes a new leaf with a copy of the values, cut from the history.
func (t Tensor) Detach() (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return C.bp_detach(p, t.h, out) })
}

// Float32s copies the elements of a float32 tensor into a new slice, row-major.
func (t Tensor) Float32s() ([]float32, error) {
	n, err := t.NumEl()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	err = t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_read_f32(p, t.h, (*C.float)(unsafe.Pointer(first(out))), C.size_t(len(out)))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Float64s copies the elements of a float64 tensor into a new slice.
func (t Tensor) Float64s() ([]float64, error) {
	n, err := t.NumEl()
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	err = t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_read_f64(p, t.h, (*C.double)(unsafe.Pointer(first(out))), C.size_t(len(out)))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Int64s copies the elements of an int64 tensor into a new slice.
func (t Tensor) Int64s() ([]int64, error) {
	n, err := t.NumEl()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	err = t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_read_i64(p, t.h, (*C.int64_t)(unsafe.Pointer(first(out))), C.size_t(len(out)))
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// WriteFloat32 overwrites a float32 tensor's elements in place from data (len must equal NumEl).
func (t Tensor) WriteFloat32(data []float32) error {
	return t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_write_f32(p, t.h, (*C.float)(unsafe.Pointer(first(data))), C.size_t(len(data)))
	})
}

// WriteFloat64 overwrites a float64 tensor's elements in place from data.
func (t Tensor) WriteFloat64(data []float64) error {
	return t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_write_f64(p, t.h, (*C.double)(unsafe.Pointer(first(data))), C.size_t(len(data)))
	})
}

// WriteInt64 overwrites an int64 tensor's elements in place from data.
func (t Tensor) WriteInt64(data []int64) error {
	return t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_tensor_write_i64(p, t.h, (*C.int64_t)(unsafe.Pointer(first(data))), C.size_t(len(data)))
	})
}

// Assign copies src's values into t in place (same shape and type), recording nothing: the update
// step of an optimizer, as torch's `p.copy_(new)` under no_grad.
func (t Tensor) Assign(src Tensor) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_assign(p, t.h, src.h) })
}

// Free frees the tensor now, and its gradient; every copy of the handle becomes stale.
func (t Tensor) Free() error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_tensor_free(p, t.h) })
}

// Dot is the Graphviz DOT source of everything t was computed from.
func (t Tensor) Dot() (string, error) {
	var size C.size_t
	if err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_graph_to_dot(p, t.h, nil, 0, &size) }); err != nil {
		return "", err
	}
	buf := make([]byte, size)
	if err := t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_graph_to_dot(p, t.h, (*C.char)(unsafe.Pointer(first(buf))), C.size_t(len(buf)), &size)
	}); err != nil {
		return "", err
	}
	return string(buf[:size-1]), nil // without the C string's NUL
}
