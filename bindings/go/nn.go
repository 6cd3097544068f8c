package bp

// #include <stdlib.h>
// #include "bp.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Layer is a layer without parameters (BP_LAYER_*).
type Layer int32

// The layers without parameters.
const (
	LayerReLU      Layer = C.BP_LAYER_RELU
	LayerLeakyReLU Layer = C.BP_LAYER_LEAKY_RELU // param: the negative slope
	LayerSigmoid   Layer = C.BP_LAYER_SIGMOID
	LayerTanh      Layer = C.BP_LAYER_TANH
	LayerGELU      Layer = C.BP_LAYER_GELU
	LayerDropout   Layer = C.BP_LAYER_DROPOUT // param: the probability of zeroing an element
	LayerFlatten   Layer = C.BP_LAYER_FLATTEN
)

// Model is a sequence of layers (nn.Sequential). Its parameters are persistent tensors of the Graph
// given to the Add* calls; the Model keeps that Graph reachable. Close it when done.
type Model struct {
	ptr *C.bp_model
	g   *Graph // where the parameters live (the last graph given to an Add* call)
}

// NewModel makes an empty model in training mode.
func NewModel() (*Model, error) {
	var ptr *C.bp_model
	if err := callC(func() C.bp_status { return C.bp_model_new(&ptr) }); err != nil {
		return nil, err
	}
	m := &Model{ptr: ptr}
	runtime.SetFinalizer(m, (*Model).Close)
	return m, nil
}

// Close frees the model (its parameters stay in their graph); closing again does nothing.
func (m *Model) Close() error {
	if m.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(m, nil)
	ptr := m.ptr
	m.ptr = nil
	return callC(func() C.bp_status { return C.bp_model_free(ptr) })
}

// call runs a C call on the model, keeping it alive until the call returns.
func (m *Model) call(f func(p *C.bp_model) C.bp_status) error {
	if m == nil || m.ptr == nil {
		return closedError("model")
	}
	err := callC(func() C.bp_status { return f(m.ptr) })
	runtime.KeepAlive(m)
	return err
}

// callIn runs a C call on the model and the graph g.
func (m *Model) callIn(g *Graph, f func(mp *C.bp_model, gp *C.bp_graph) C.bp_status) error {
	if m == nil || m.ptr == nil {
		return closedError("model")
	}
	err := g.call(func(gp *C.bp_graph) C.bp_status { return f(m.ptr, gp) })
	runtime.KeepAlive(m)
	return err
}

// cName is a C copy of a layer name, or NULL for "" (name the layer by its position); free it.
func cName(name string) *C.char {
	if name == "" {
		return nil
	}
	return C.CString(name)
}

// AddLinear appends nn.Linear(in, out, bias), initialised as PyTorch does from g's generator. name
// names the layer in parameter names ("head" → "head.weight"); "" names it by its position.
func (m *Model) AddLinear(g *Graph, name string, in, out int, bias bool) error {
	cname := cName(name)
	defer C.free(unsafe.Pointer(cname))
	err := m.callIn(g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status {
		return C.bp_model_add_linear(mp, gp, cname, C.size_t(in), C.size_t(out), C.bool(bias))
	})
	if err == nil {
		m.g = g
	}
	return err
}

// AddEmbedding appends nn.Embedding(num, dim).
func (m *Model) AddEmbedding(g *Graph, name string, num, dim int) error {
	cname := cName(name)
	defer C.free(unsafe.Pointer(cname))
	err := m.callIn(g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status {
		return C.bp_model_add_embedding(mp, gp, cname, C.size_t(num), C.size_t(dim))
	})
	if err == nil {
		m.g = g
	}
	return err
}

// AddLayerNorm appends nn.LayerNorm(shape, eps, elementwise_affine).
func (m *Model) AddLayerNorm(g *Graph, name string, shape []int, eps float64, affine bool) error {
	cname := cName(name)
	defer C.free(unsafe.Pointer(cname))
	dims := int64s(shape)
	err := m.callIn(g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status {
		return C.bp_model_add_layer_norm(mp, gp, cname, first(dims), C.size_t(len(dims)), C.double(eps), C.bool(affine))
	})
	if err == nil {
		m.g = g
	}
	return err
}

// AddLayer appends a layer without parameters; param is LayerLeakyReLU's slope or LayerDropout's
// probability (ignored otherwise).
func (m *Model) AddLayer(name string, kind Layer, param float64) error {
	cname := cName(name)
	defer C.free(unsafe.Pointer(cname))
	return m.call(func(p *C.bp_model) C.bp_status {
		return C.bp_model_add_layer(p, cname, C.bp_layer(kind), C.double(param))
	})
}

// SetTraining switches training mode (model.train() / model.eval()).
func (m *Model) SetTraining(training bool) error {
	return m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_set_training(p, C.bool(training)) })
}

// Training reports whether the model is in training mode.
func (m *Model) Training() (bool, error) {
	var t C.bool
	err := m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_is_training(p, &t) })
	return bool(t), err
}

// Forward is the forward pass in the current mode, recorded for autograd, in x's graph.
func (m *Model) Forward(x Tensor) (Tensor, error) {
	var out C.bp_tensor
	if err := m.callIn(x.g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status { return C.bp_model_forward(mp, gp, x.h, &out) }); err != nil {
		return Tensor{}, err
	}
	return Tensor{g: x.g, h: out}, nil
}

// Predict is inference: eval mode, nothing recorded; the result does not require grad.
func (m *Model) Predict(x Tensor) (Tensor, error) {
	var out C.bp_tensor
	if err := m.callIn(x.g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status { return C.bp_model_predict(mp, gp, x.h, &out) }); err != nil {
		return Tensor{}, err
	}
	return Tensor{g: x.g, h: out}, nil
}

// Parameters are the parameter tensors in PyTorch's parameters() order.
func (m *Model) Parameters() ([]Tensor, error) {
	var n C.size_t
	if err := m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_parameters(p, nil, 0, &n) }); err != nil {
		return nil, err
	}
	hs := make([]C.bp_tensor, n)
	if err := m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_parameters(p, first(hs), C.size_t(len(hs)), &n) }); err != nil {
		return nil, err
	}
	params := make([]Tensor, len(hs))
	for i, h := range hs {
		params[i] = Tensor{g: m.g, h: h}
	}
	return params, nil
}

// ParameterNames are the parameters' state_dict names ("0.weight", …), in Parameters order.
func (m *Model) ParameterNames() ([]string, error) {
	var n C.size_t
	if err := m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_parameters(p, nil, 0, &n) }); err != nil {
		return nil, err
	}
	names := make([]string, n)
	for i := range names {
		var size C.size_t
		if err := m.call(func(p *C.bp_model) C.bp_status { return C.bp_model_parameter_name(p, C.size_t(i), nil, 0, &size) }); err != nil {
			return nil, err
		}
		buf := make([]byte, size)
		if err := m.call(func(p *C.bp_model) C.bp_status {
			return C.bp_model_parameter_name(p, C.size_t(i), (*C.char)(unsafe.Pointer(first(buf))), C.size_t(len(buf)), &size)
		}); err != nil {
			return nil, err
		}
		names[i] = string(buf[:size-1])
	}
	return names, nil
}

// ZeroGrad drops every parameter's gradient.
func (m *Model) ZeroGrad() error {
	return m.callIn(m.g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status { return C.bp_model_zero_grad(mp, gp) })
}

// NLLLoss is the negative log-likelihood of log-probabilities t [N, C] against int64 classes [N]
// (F.nll_loss; PyTorch's default ignoreIndex is -100).
func (t Tensor) NLLLoss(target Tensor, reduction Reduction, ignoreIndex int64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_nll_loss(p, t.h, target.h, C.bp_reduction(reduction), C.int64_t(ignoreIndex), out)
	})
}

// L1Loss is the mean absolute error (F.l1_loss).
func (t Tensor) L1Loss(target Tensor, reduction Reduction) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_l1_loss(p, t.h, target.h, C.bp_reduction(reduction), out)
	})
}

// SmoothL1Loss is F.smooth_l1_loss (PyTorch's default beta is 1).
func (t Tensor) SmoothL1Loss(target Tensor, reduction Reduction, beta float64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_smooth_l1_loss(p, t.h, target.h, C.bp_reduction(reduction), C.double(beta), out)
	})
}

// Accuracy is the fraction of rows of logits t [N, C] whose largest entry is at the target class.
func (t Tensor) Accuracy(target Tensor) (float64, error) {
	var acc C.double
	err := t.call(func(p *C.bp_graph) C.bp_status { return C.bp_accuracy(p, t.h, target.h, &acc) })
	return float64(acc), err
}

// Nonlinearity selects an initialisation gain (BP_NONLINEARITY_*).
type Nonlinearity int32

// The non-linearities of nn.init's gains.
const (
	NonlinearityLinear    Nonlinearity = C.BP_NONLINEARITY_LINEAR
	NonlinearitySigmoid   Nonlinearity = C.BP_NONLINEARITY_SIGMOID
	NonlinearityTanh      Nonlinearity = C.BP_NONLINEARITY_TANH
	NonlinearityReLU      Nonlinearity = C.BP_NONLINEARITY_RELU
	NonlinearityLeakyReLU Nonlinearity = C.BP_NONLINEARITY_LEAKY_RELU
)

// InitUniform overwrites t with samples uniform on [low, high) (nn.init.uniform_).
func (t Tensor) InitUniform(low, high float64) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_init_uniform(p, t.h, C.double(low), C.double(high)) })
}

// InitNormal overwrites t with normal samples (nn.init.normal_).
func (t Tensor) InitNormal(mean, std float64) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_init_normal(p, t.h, C.double(mean), C.double(std)) })
}

// InitXavier is nn.init.xavier_uniform_ (xavier_normal_ when normal).
func (t Tensor) InitXavier(gain float64, normal bool) error {
	return t.call(func(p *C.bp_graph) C.bp_status { return C.bp_init_xavier(p, t.h, C.double(gain), C.bool(normal)) })
}

// InitKaiming is nn.init.kaiming_uniform_ (kaiming_normal_ when normal) for the non-linearity
// (slope for leaky ReLU); fanOut selects mode="fan_out".
func (t Tensor) InitKaiming(nonlinearity Nonlinearity, slope float64, fanOut, normal bool) error {
	return t.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_init_kaiming(p, t.h, C.bp_nonlinearity(nonlinearity), C.double(slope), C.bool(fanOut), C.bool(normal))
	})
}

// ClipGradNorm scales the gradients of params so that their joint normType-norm (2, or math.Inf(1)
// for the max) is at most maxNorm (clip_grad_norm_); it returns the norm before clipping.
func (g *Graph) ClipGradNorm(params []Tensor, maxNorm, normType float64) (float64, error) {
	hs := handles(params)
	var total C.double
	err := g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_clip_grad_norm(p, first(hs), C.size_t(len(hs)), C.double(maxNorm), C.double(normType), &total)
	})
	return float64(total), err
}

// ClipGradValue clamps every gradient element of params to [-clip, clip] (clip_grad_value_).
func (g *Graph) ClipGradValue(params []Tensor, clip float64) error {
	hs := handles(params)
	return g.call(func(p *C.bp_graph) C.bp_status {
		return C.bp_clip_grad_value(p, first(hs), C.size_t(len(hs)), C.double(clip))
	})
}
