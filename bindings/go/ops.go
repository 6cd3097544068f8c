package bp

// #include "bp.h"
import "C"

// unary makes an op of one tensor.
func (t Tensor) unary(f func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return f(p, t.h, out) })
}

// binary makes an op of two tensors.
func (t Tensor) binary(u Tensor, f func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return f(p, t.h, u.h, out) })
}

// Neg is -t.
func (t Tensor) Neg() (Tensor, error) { return t.unary(cNeg) }

// Exp is e^t.
func (t Tensor) Exp() (Tensor, error) { return t.unary(cExp) }

// Log is ln t.
func (t Tensor) Log() (Tensor, error) { return t.unary(cLog) }

// Sqrt is √t.
func (t Tensor) Sqrt() (Tensor, error) { return t.unary(cSqrt) }

// Abs is |t|.
func (t Tensor) Abs() (Tensor, error) { return t.unary(cAbs) }

// Relu is max(t, 0).
func (t Tensor) Relu() (Tensor, error) { return t.unary(cRelu) }

// Sigmoid is 1 / (1 + e^-t).
func (t Tensor) Sigmoid() (Tensor, error) { return t.unary(cSigmoid) }

// Tanh is tanh t.
func (t Tensor) Tanh() (Tensor, error) { return t.unary(cTanh) }

// Gelu is the exact (erf) GELU.
func (t Tensor) Gelu() (Tensor, error) { return t.unary(cGelu) }

// LeakyRelu is t for t > 0 and slope·t otherwise.
func (t Tensor) LeakyRelu(slope float64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_leaky_relu(p, t.h, C.double(slope), out)
	})
}

// Pow is t^exponent.
func (t Tensor) Pow(exponent float64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return C.bp_pow(p, t.h, C.double(exponent), out) })
}

// AddScalar is t + c.
func (t Tensor) AddScalar(c float64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return C.bp_add_scalar(p, t.h, C.double(c), out) })
}

// MulScalar is t · c.
func (t Tensor) MulScalar(c float64) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return C.bp_mul_scalar(p, t.h, C.double(c), out) })
}

// Add is t + u, broadcasting.
func (t Tensor) Add(u Tensor) (Tensor, error) { return t.binary(u, cAdd) }

// Sub is t - u, broadcasting.
func (t Tensor) Sub(u Tensor) (Tensor, error) { return t.binary(u, cSub) }

// Mul is t · u elementwise, broadcasting.
func (t Tensor) Mul(u Tensor) (Tensor, error) { return t.binary(u, cMul) }

// Div is t / u elementwise, broadcasting.
func (t Tensor) Div(u Tensor) (Tensor, error) { return t.binary(u, cDiv) }

// MatMul is the matrix product t·u, batched over leading dimensions.
func (t Tensor) MatMul(u Tensor) (Tensor, error) { return t.binary(u, cMatmul) }

// MatMulT is op(t)·op(u), op transposing the last two dimensions when asked (no copy is made).
func (t Tensor) MatMulT(u Tensor, transposeT, transposeU bool) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_matmul_t(p, t.h, u.h, C.bool(transposeT), C.bool(transposeU), out)
	})
}

// reduce makes a reduction over dims (all of them when none are given).
func (t Tensor) reduce(dims []int, keepdim bool,
	f func(p *C.bp_graph, x C.bp_tensor, dims *C.int64_t, n C.size_t, keepdim C.bool, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	d := int64s(dims)
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return f(p, t.h, first(d), C.size_t(len(d)), C.bool(keepdim), out)
	})
}

// Sum is the sum over dims (negative ones count from the end; all dimensions when none are given).
func (t Tensor) Sum(dims ...int) (Tensor, error) { return t.reduce(dims, false, cSum) }

// SumKeepDim is Sum keeping the reduced dimensions as size 1.
func (t Tensor) SumKeepDim(dims ...int) (Tensor, error) { return t.reduce(dims, true, cSum) }

// Mean is the mean over dims (all dimensions when none are given).
func (t Tensor) Mean(dims ...int) (Tensor, error) { return t.reduce(dims, false, cMean) }

// MeanKeepDim is Mean keeping the reduced dimensions as size 1.
func (t Tensor) MeanKeepDim(dims ...int) (Tensor, error) { return t.reduce(dims, true, cMean) }

// Max is the maximum over dims (all dimensions when none are given); ties share the gradient.
func (t Tensor) Max(dims ...int) (Tensor, error) { return t.reduce(dims, false, cMax) }

// MaxKeepDim is Max keeping the reduced dimensions as size 1.
func (t Tensor) MaxKeepDim(dims ...int) (Tensor, error) { return t.reduce(dims, true, cMax) }

// Softmax is the softmax over dim.
func (t Tensor) Softmax(dim int) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return C.bp_softmax(p, t.h, C.int64_t(dim), out) })
}

// LogSoftmax is the log-softmax over dim, computed stably.
func (t Tensor) LogSoftmax(dim int) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_log_softmax(p, t.h, C.int64_t(dim), out)
	})
}

// shaped makes an op that takes a list of dimensions.
func (t Tensor) shaped(shape []int, f func(p *C.bp_graph, x C.bp_tensor, dims *C.int64_t, n C.size_t, out *C.bp_tensor) C.bp_status) (Tensor, error) {
	d := int64s(shape)
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status { return f(p, t.h, first(d), C.size_t(len(d)), out) })
}

// Reshape is the same elements in a new shape (one dimension may be -1).
func (t Tensor) Reshape(shape ...int) (Tensor, error) { return t.shaped(shape, cReshape) }

// Permute reorders dimensions: output dimension i is input dimension perm[i].
func (t Tensor) Permute(perm ...int) (Tensor, error) { return t.shaped(perm, cPermute) }

// Expand broadcasts to shape (torch.broadcast_to).
func (t Tensor) Expand(shape ...int) (Tensor, error) { return t.shaped(shape, cExpand) }

// SumTo sums down to a shape t could have been broadcast from (the adjoint of Expand).
func (t Tensor) SumTo(shape ...int) (Tensor, error) { return t.shaped(shape, cSumTo) }

// Transpose swaps two dimensions.
func (t Tensor) Transpose(dim0, dim1 int) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_transpose(p, t.h, C.int64_t(dim0), C.int64_t(dim1), out)
	})
}

// T is the transpose of the last two dimensions.
func (t Tensor) T() (Tensor, error) { return t.Transpose(-2, -1) }

// Slice is t[..., start:end:step] along dim, with Python's rules for the bounds.
func (t Tensor) Slice(dim, start, end, step int) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_slice(p, t.h, C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), out)
	})
}

// SliceScatter is zeros of shape with t written at start, start+step, … along dim (the adjoint of Slice).
func (t Tensor) SliceScatter(shape []int, dim, start, step int) (Tensor, error) {
	d := int64s(shape)
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_slice_scatter(p, t.h, first(d), C.size_t(len(d)), C.int64_t(dim), C.int64_t(start), C.int64_t(step), out)
	})
}

// IndexSelect picks the slices index[k] along dim (index: 1-D int64).
func (t Tensor) IndexSelect(dim int, index Tensor) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_index_select(p, t.h, C.int64_t(dim), index.h, out)
	})
}

// IndexAdd is zeros with size entries along dim, then out[index[k]] += t[k] (the adjoint of IndexSelect).
func (t Tensor) IndexAdd(dim int, index Tensor, size int) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_index_add(p, t.h, C.int64_t(dim), index.h, C.int64_t(size), out)
	})
}

// Gather is torch.gather along dim.
func (t Tensor) Gather(dim int, index Tensor) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_gather(p, t.h, C.int64_t(dim), index.h, out)
	})
}

// ScatterAdd is zeros of shape, then out[..index..] += t along dim (the adjoint of Gather).
func (t Tensor) ScatterAdd(dim int, index Tensor, shape []int) (Tensor, error) {
	d := int64s(shape)
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_scatter_add(p, t.h, C.int64_t(dim), index.h, first(d), C.size_t(len(d)), out)
	})
}

// Linear is t·weightᵀ + bias (weight [out, in], PyTorch's layout); the zero Tensor as bias means none.
func (t Tensor) Linear(weight, bias Tensor) (Tensor, error) {
	b := bias.h
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		var pb *C.bp_tensor
		if !bias.IsNull() {
			pb = &b
		}
		return C.bp_linear(p, t.h, weight.h, pb, out)
	})
}

// LinearAct is act(t·Wᵀ + bias) as one op (bias may be the zero Tensor for none): the values and
// gradients of Linear followed by Relu, Sigmoid or Tanh, without the pre-activation tensor.
func (t Tensor) LinearAct(weight, bias Tensor, act Activation) (Tensor, error) {
	b := bias.h
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		var pb *C.bp_tensor
		if !bias.IsNull() {
			pb = &b
		}
		return C.bp_linear_act(p, t.h, weight.h, pb, C.bp_activation(act), out)
	})
}

// MSELoss is the mean squared error against target, reduced by reduction.
func (t Tensor) MSELoss(target Tensor, reduction Reduction) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_mse_loss(p, t.h, target.h, C.bp_reduction(reduction), out)
	})
}

// CrossEntropy is the cross-entropy of logits t [N, C] against int64 classes [N], mean over samples.
func (t Tensor) CrossEntropy(target Tensor) (Tensor, error) {
	return t.binary(target, cCrossEntropy)
}

// CrossEntropyOptions are PyTorch's options of cross_entropy.
type CrossEntropyOptions struct {
	Reduction      Reduction // ReductionMean is PyTorch's default
	LabelSmoothing float64   // in [0, 1]
	IgnoreIndex    int64     // samples with this target count for nothing; PyTorch's default is -100
}

// DefaultCrossEntropyOptions are PyTorch's defaults: mean, no smoothing, ignore_index -100.
func DefaultCrossEntropyOptions() CrossEntropyOptions {
	return CrossEntropyOptions{Reduction: ReductionMean, IgnoreIndex: -100}
}

// CrossEntropyWith is CrossEntropy with PyTorch's options.
func (t Tensor) CrossEntropyWith(target Tensor, opts CrossEntropyOptions) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_cross_entropy_ex(p, t.h, target.h, C.bp_reduction(opts.Reduction), C.double(opts.LabelSmoothing),
			C.int64_t(opts.IgnoreIndex), out)
	})
}

// BinaryCrossEntropyWithLogits is the binary cross-entropy of logits t against probabilities.
func (t Tensor) BinaryCrossEntropyWithLogits(target Tensor, reduction Reduction) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_binary_cross_entropy_with_logits(p, t.h, target.h, C.bp_reduction(reduction), out)
	})
}

// Dropout zeroes each element with probability prob and scales the rest by 1/(1-prob) when training;
// it returns t itself otherwise.
func (t Tensor) Dropout(prob float64, training bool) (Tensor, error) {
	return t.op(func(p *C.bp_graph, out *C.bp_tensor) C.bp_status {
		return C.bp_dropout(p, t.h, C.double(prob), C.bool(training), out)
	})
}

// The C functions as Go values (cgo does not allow taking a C function's address directly).
var (
	cNeg          = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_neg(p, x, out) }
	cExp          = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_exp(p, x, out) }
	cLog          = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_log(p, x, out) }
	cSqrt         = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_sqrt(p, x, out) }
	cAbs          = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_abs(p, x, out) }
	cRelu         = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_relu(p, x, out) }
	cSigmoid      = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_sigmoid(p, x, out) }
	cTanh         = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_tanh(p, x, out) }
	cGelu         = func(p *C.bp_graph, x C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_gelu(p, x, out) }
	cAdd          = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_add(p, a, b, out) }
	cSub          = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_sub(p, a, b, out) }
	cMul          = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_mul(p, a, b, out) }
	cDiv          = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_div(p, a, b, out) }
	cMatmul       = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status { return C.bp_matmul(p, a, b, out) }
	cCrossEntropy = func(p *C.bp_graph, a, b C.bp_tensor, out *C.bp_tensor) C.bp_status {
		return C.bp_cross_entropy(p, a, b, out)
	}
	cSum = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, k C.bool, out *C.bp_tensor) C.bp_status {
		return C.bp_sum(p, x, d, n, k, out)
	}
	cMean = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, k C.bool, out *C.bp_tensor) C.bp_status {
		return C.bp_mean(p, x, d, n, k, out)
	}
	cMax = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, k C.bool, out *C.bp_tensor) C.bp_status {
		return C.bp_max(p, x, d, n, k, out)
	}
	cReshape = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, out *C.bp_tensor) C.bp_status {
		return C.bp_reshape(p, x, d, n, out)
	}
	cPermute = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, out *C.bp_tensor) C.bp_status {
		return C.bp_permute(p, x, d, n, out)
	}
	cExpand = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, out *C.bp_tensor) C.bp_status {
		return C.bp_expand(p, x, d, n, out)
	}
	cSumTo = func(p *C.bp_graph, x C.bp_tensor, d *C.int64_t, n C.size_t, out *C.bp_tensor) C.bp_status {
		return C.bp_sum_to(p, x, d, n, out)
	}
)
