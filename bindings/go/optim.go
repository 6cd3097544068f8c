package bp

// #include <stdlib.h>
// #include "bp.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Optimizer updates a model's parameters (SGD, Adam, AdamW, RMSprop). It keeps its Graph reachable.
// Close it when done.
type Optimizer struct {
	ptr *C.bp_optimizer
	g   *Graph
}

// SGDOptions are torch.optim.SGD's options besides the learning rate; the zero value is PyTorch's
// default.
type SGDOptions struct {
	Momentum, Dampening, WeightDecay float64
	Nesterov                         bool
}

// AdamOptions are torch.optim.Adam's and AdamW's options besides the learning rate; start from
// DefaultAdamOptions (or DefaultAdamWOptions).
type AdamOptions struct {
	Beta1, Beta2, Eps, WeightDecay float64
	AMSGrad                        bool
}

// DefaultAdamOptions are Adam's defaults: betas 0.9 and 0.999, eps 1e-8, no weight decay.
func DefaultAdamOptions() AdamOptions { return AdamOptions{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

// DefaultAdamWOptions are AdamW's defaults: Adam's with weight decay 1e-2.
func DefaultAdamWOptions() AdamOptions {
	o := DefaultAdamOptions()
	o.WeightDecay = 1e-2
	return o
}

// RMSpropOptions are torch.optim.RMSprop's options besides the learning rate; start from
// DefaultRMSpropOptions.
type RMSpropOptions struct {
	Alpha, Eps, WeightDecay, Momentum float64
	Centered                          bool
}

// DefaultRMSpropOptions are RMSprop's defaults: alpha 0.99, eps 1e-8, no weight decay or momentum.
func DefaultRMSpropOptions() RMSpropOptions { return RMSpropOptions{Alpha: 0.99, Eps: 1e-8} }

// newOptimizer runs a C constructor with the graph and model pointers.
func newOptimizer(g *Graph, m *Model, f func(gp *C.bp_graph, mp *C.bp_model, out **C.bp_optimizer) C.bp_status) (*Optimizer, error) {
	var ptr *C.bp_optimizer
	if err := m.callIn(g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status { return f(gp, mp, &ptr) }); err != nil {
		return nil, err
	}
	o := &Optimizer{ptr: ptr, g: g}
	runtime.SetFinalizer(o, (*Optimizer).Close)
	return o, nil
}

// NewSGD makes torch.optim.SGD over the model's parameters.
func NewSGD(g *Graph, m *Model, lr float64, o SGDOptions) (*Optimizer, error) {
	return newOptimizer(g, m, func(gp *C.bp_graph, mp *C.bp_model, out **C.bp_optimizer) C.bp_status {
		return C.bp_optimizer_new_sgd(gp, mp, C.double(lr), C.double(o.Momentum), C.double(o.Dampening), C.double(o.WeightDecay), C.bool(o.Nesterov), out)
	})
}

// NewAdam makes torch.optim.Adam over the model's parameters.
func NewAdam(g *Graph, m *Model, lr float64, o AdamOptions) (*Optimizer, error) {
	return newOptimizer(g, m, func(gp *C.bp_graph, mp *C.bp_model, out **C.bp_optimizer) C.bp_status {
		return C.bp_optimizer_new_adam(gp, mp, C.double(lr), C.double(o.Beta1), C.double(o.Beta2), C.double(o.Eps), C.double(o.WeightDecay), C.bool(o.AMSGrad), out)
	})
}

// NewAdamW makes torch.optim.AdamW (decoupled weight decay) over the model's parameters.
func NewAdamW(g *Graph, m *Model, lr float64, o AdamOptions) (*Optimizer, error) {
	return newOptimizer(g, m, func(gp *C.bp_graph, mp *C.bp_model, out **C.bp_optimizer) C.bp_status {
		return C.bp_optimizer_new_adamw(gp, mp, C.double(lr), C.double(o.Beta1), C.double(o.Beta2), C.double(o.Eps), C.double(o.WeightDecay), C.bool(o.AMSGrad), out)
	})
}

// NewRMSprop makes torch.optim.RMSprop over the model's parameters.
func NewRMSprop(g *Graph, m *Model, lr float64, o RMSpropOptions) (*Optimizer, error) {
	return newOptimizer(g, m, func(gp *C.bp_graph, mp *C.bp_model, out **C.bp_optimizer) C.bp_status {
		return C.bp_optimizer_new_rmsprop(gp, mp, C.double(lr), C.double(o.Alpha), C.double(o.Eps), C.double(o.WeightDecay), C.double(o.Momentum), C.bool(o.Centered), out)
	})
}

// Close frees the optimizer; closing again does nothing.
func (o *Optimizer) Close() error {
	if o.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(o, nil)
	ptr := o.ptr
	o.ptr = nil
	return callC(func() C.bp_status { return C.bp_optimizer_free(ptr) })
}

func (o *Optimizer) call(f func(p *C.bp_optimizer) C.bp_status) error {
	if o == nil || o.ptr == nil {
		return closedError("optimizer")
	}
	err := callC(func() C.bp_status { return f(o.ptr) })
	runtime.KeepAlive(o)
	return err
}

func (o *Optimizer) callIn(f func(p *C.bp_optimizer, gp *C.bp_graph) C.bp_status) error {
	if o == nil || o.ptr == nil {
		return closedError("optimizer")
	}
	err := o.g.call(func(gp *C.bp_graph) C.bp_status { return f(o.ptr, gp) })
	runtime.KeepAlive(o)
	return err
}

// Step updates every parameter that has a gradient.
func (o *Optimizer) Step() error {
	return o.callIn(func(p *C.bp_optimizer, gp *C.bp_graph) C.bp_status { return C.bp_optimizer_step(p, gp) })
}

// ZeroGrad drops every parameter's gradient.
func (o *Optimizer) ZeroGrad() error {
	return o.callIn(func(p *C.bp_optimizer, gp *C.bp_graph) C.bp_status { return C.bp_optimizer_zero_grad(p, gp) })
}

// LR is the current learning rate.
func (o *Optimizer) LR() (float64, error) {
	var lr C.double
	err := o.call(func(p *C.bp_optimizer) C.bp_status { return C.bp_optimizer_lr(p, &lr) })
	return float64(lr), err
}

// SetLR sets the learning rate.
func (o *Optimizer) SetLR(lr float64) error {
	return o.call(func(p *C.bp_optimizer) C.bp_status { return C.bp_optimizer_set_lr(p, C.double(lr)) })
}

// Schedule is a learning-rate schedule attached to an optimizer (kept reachable by it). Close it
// when done.
type Schedule struct {
	ptr *C.bp_schedule
	opt *Optimizer
}

func newSchedule(o *Optimizer, f func(op *C.bp_optimizer, out **C.bp_schedule) C.bp_status) (*Schedule, error) {
	var ptr *C.bp_schedule
	if err := o.call(func(op *C.bp_optimizer) C.bp_status { return f(op, &ptr) }); err != nil {
		return nil, err
	}
	s := &Schedule{ptr: ptr, opt: o}
	runtime.SetFinalizer(s, (*Schedule).Close)
	return s, nil
}

// NewStepLR attaches StepLR: the rate is multiplied by gamma every stepSize steps.
func NewStepLR(o *Optimizer, stepSize uint64, gamma float64) (*Schedule, error) {
	return newSchedule(o, func(op *C.bp_optimizer, out **C.bp_schedule) C.bp_status {
		return C.bp_schedule_new_step(op, C.uint64_t(stepSize), C.double(gamma), out)
	})
}

// NewExponentialLR attaches ExponentialLR: the rate is multiplied by gamma every step.
func NewExponentialLR(o *Optimizer, gamma float64) (*Schedule, error) {
	return newSchedule(o, func(op *C.bp_optimizer, out **C.bp_schedule) C.bp_status {
		return C.bp_schedule_new_exponential(op, C.double(gamma), out)
	})
}

// NewCosineAnnealingLR attaches CosineAnnealingLR(tMax, etaMin).
func NewCosineAnnealingLR(o *Optimizer, tMax uint64, etaMin float64) (*Schedule, error) {
	return newSchedule(o, func(op *C.bp_optimizer, out **C.bp_schedule) C.bp_status {
		return C.bp_schedule_new_cosine(op, C.uint64_t(tMax), C.double(etaMin), out)
	})
}

// NewLinearLR attaches LinearLR(start, end, totalIters), the usual warm-up.
func NewLinearLR(o *Optimizer, startFactor, endFactor float64, totalIters uint64) (*Schedule, error) {
	return newSchedule(o, func(op *C.bp_optimizer, out **C.bp_schedule) C.bp_status {
		return C.bp_schedule_new_linear(op, C.double(startFactor), C.double(endFactor), C.uint64_t(totalIters), out)
	})
}

// Step advances the schedule and sets the optimizer's learning rate.
func (s *Schedule) Step() error {
	if s == nil || s.ptr == nil {
		return closedError("schedule")
	}
	err := s.opt.call(func(op *C.bp_optimizer) C.bp_status { return C.bp_schedule_step(s.ptr, op) })
	runtime.KeepAlive(s)
	return err
}

// Close frees the schedule (the optimizer keeps its current rate); closing again does nothing.
func (s *Schedule) Close() error {
	if s.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(s, nil)
	ptr := s.ptr
	s.ptr = nil
	return callC(func() C.bp_status { return C.bp_schedule_free(ptr) })
}

// TrainingParts are what a checkpoint saves besides the model and the generator; nil ones are left
// out.
type TrainingParts struct {
	Optimizer *Optimizer
	Schedule  *Schedule
	Loader    *Loader
}

// pointers are the parts' C pointers (NULL for absent ones); a closed part is an error.
func (p TrainingParts) pointers() (*C.bp_optimizer, *C.bp_schedule, *C.bp_loader, error) {
	var op *C.bp_optimizer
	var sp *C.bp_schedule
	var lp *C.bp_loader
	if p.Optimizer != nil {
		if op = p.Optimizer.ptr; op == nil {
			return nil, nil, nil, closedError("optimizer")
		}
	}
	if p.Schedule != nil {
		if sp = p.Schedule.ptr; sp == nil {
			return nil, nil, nil, closedError("schedule")
		}
	}
	if p.Loader != nil {
		if lp = p.Loader.ptr; lp == nil {
			return nil, nil, nil, closedError("loader")
		}
	}
	return op, sp, lp, nil
}

// checkpointCall runs a checkpoint function with the path, graph, model and parts.
func checkpointCall(path string, g *Graph, m *Model, parts TrainingParts,
	f func(path *C.char, gp *C.bp_graph, mp *C.bp_model, op *C.bp_optimizer, sp *C.bp_schedule, lp *C.bp_loader) C.bp_status) error {
	op, sp, lp, err := parts.pointers()
	if err != nil {
		return err
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	err = m.callIn(g, func(mp *C.bp_model, gp *C.bp_graph) C.bp_status { return f(cpath, gp, mp, op, sp, lp) })
	runtime.KeepAlive(parts.Optimizer)
	runtime.KeepAlive(parts.Schedule)
	runtime.KeepAlive(parts.Loader)
	return err
}

// SaveCheckpoint saves the model, the generator and the given parts to path atomically; resuming
// from it gives bit-identical results. An unwritable path fails with StatusIO.
func SaveCheckpoint(path string, g *Graph, m *Model, parts TrainingParts) error {
	return checkpointCall(path, g, m, parts, func(p *C.char, gp *C.bp_graph, mp *C.bp_model, op *C.bp_optimizer, sp *C.bp_schedule, lp *C.bp_loader) C.bp_status {
		return C.bp_checkpoint_save(p, gp, mp, op, sp, lp)
	})
}

// LoadCheckpoint restores a checkpoint into the model, the generator and the given parts. A
// corrupt or mismatched file fails with StatusFormat and changes nothing.
func LoadCheckpoint(path string, g *Graph, m *Model, parts TrainingParts) error {
	return checkpointCall(path, g, m, parts, func(p *C.char, gp *C.bp_graph, mp *C.bp_model, op *C.bp_optimizer, sp *C.bp_schedule, lp *C.bp_loader) C.bp_status {
		return C.bp_checkpoint_load(p, gp, mp, op, sp, lp)
	})
}

// SaveWeights saves the parameters only, by state_dict name (what PyTorch's load_state_dict takes).
func SaveWeights(path string, g *Graph, m *Model) error {
	return checkpointCall(path, g, m, TrainingParts{}, func(p *C.char, gp *C.bp_graph, mp *C.bp_model, _ *C.bp_optimizer, _ *C.bp_schedule, _ *C.bp_loader) C.bp_status {
		return C.bp_weights_save(p, gp, mp)
	})
}

// LoadWeights loads parameters by state_dict name (strict); on any error nothing changes.
func LoadWeights(path string, g *Graph, m *Model) error {
	return checkpointCall(path, g, m, TrainingParts{}, func(p *C.char, gp *C.bp_graph, mp *C.bp_model, _ *C.bp_optimizer, _ *C.bp_schedule, _ *C.bp_loader) C.bp_status {
		return C.bp_weights_load(p, gp, mp)
	})
}

// TrainStep is one whole training step of m with cross-entropy, compiled: the optimizer's ZeroGrad,
// Forward, the loss, Backward and the optimizer's Step in one call, without recording a graph; it
// returns the loss. The result is bit-identical to the same step built from those calls. It takes
// float32 models of Linear, activation (ReLU, leaky ReLU, sigmoid, tanh, GELU) and flatten layers (an error with
// StatusUnsupported for others), an input x of shape [N, in] and int64 targets [N], all in the
// optimizer's graph.
func (m *Model) TrainStep(o *Optimizer, x, target Tensor, opts CrossEntropyOptions) (float64, error) {
	if m == nil || m.ptr == nil {
		return 0, closedError("model")
	}
	var loss C.double
	err := o.callIn(func(p *C.bp_optimizer, gp *C.bp_graph) C.bp_status {
		return C.bp_model_train_step_cross_entropy(m.ptr, gp, p, x.h, target.h, C.bp_reduction(opts.Reduction),
			C.double(opts.LabelSmoothing), C.int64_t(opts.IgnoreIndex), &loss)
	})
	runtime.KeepAlive(m)
	return float64(loss), err
}

// TrainStepMSE is TrainStep with the mean squared error against float32 targets of the model
// output's shape [N, out], reduced by reduction (ReductionMean or ReductionSum).
func (m *Model) TrainStepMSE(o *Optimizer, x, target Tensor, reduction Reduction) (float64, error) {
	if m == nil || m.ptr == nil {
		return 0, closedError("model")
	}
	var loss C.double
	err := o.callIn(func(p *C.bp_optimizer, gp *C.bp_graph) C.bp_status {
		return C.bp_model_train_step_mse(m.ptr, gp, p, x.h, target.h, C.bp_reduction(reduction), &loss)
	})
	runtime.KeepAlive(m)
	return float64(loss), err
}
