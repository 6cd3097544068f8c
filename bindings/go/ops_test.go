package bp

import (
	"math"
	"testing"
)

// Every op method, one row each: the op on small float64 tensors and the values worked out by hand.
func TestOpsComputeTheirValues(t *testing.T) {
	ln2 := math.Log(2)
	ez := math.Exp(1) + math.Exp(2) + math.Exp(3)
	cases := []struct {
		name string
		op   func(g *Graph, x, m Tensor) (Tensor, error) // x = [-1 0.5 2], m = [[1 2 3] [4 5 6]]
		want []float64
		tol  float64
	}{
		{"Neg", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Neg() }, []float64{1, -0.5, -2}, 0},
		{"Exp", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Exp() }, []float64{math.Exp(-1), math.Exp(0.5), math.Exp(2)}, 1e-12},
		{"Log", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Log() }, []float64{0, ln2, math.Log(3), math.Log(4), math.Log(5), math.Log(6)}, 1e-12},
		{"Sqrt", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Sqrt() }, []float64{1, math.Sqrt2, math.Sqrt(3), 2, math.Sqrt(5), math.Sqrt(6)}, 1e-12},
		{"Abs", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Abs() }, []float64{1, 0.5, 2}, 0},
		{"Relu", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Relu() }, []float64{0, 0.5, 2}, 0},
		{"Sigmoid", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Sigmoid() }, []float64{1 / (1 + math.E), 1 / (1 + math.Exp(-0.5)), 1 / (1 + math.Exp(-2))}, 1e-12},
		{"Tanh", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Tanh() }, []float64{math.Tanh(-1), math.Tanh(0.5), math.Tanh(2)}, 1e-12},
		{"Gelu", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Gelu() }, gelu([]float64{-1, 0.5, 2}), 1e-7},
		{"LeakyRelu", func(g *Graph, x, m Tensor) (Tensor, error) { return x.LeakyRelu(0.1) }, []float64{-0.1, 0.5, 2}, 1e-15},
		{"Pow", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Pow(2) }, []float64{1, 0.25, 4}, 0},
		{"AddScalar", func(g *Graph, x, m Tensor) (Tensor, error) { return x.AddScalar(1) }, []float64{0, 1.5, 3}, 0},
		{"MulScalar", func(g *Graph, x, m Tensor) (Tensor, error) { return x.MulScalar(3) }, []float64{-3, 1.5, 6}, 0},
		{"Add broadcasts", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Add(x) }, []float64{0, 2.5, 5, 3, 5.5, 8}, 0},
		{"Sub", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Sub(x) }, []float64{2, 1.5, 1, 5, 4.5, 4}, 0},
		{"Mul", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Mul(x) }, []float64{-1, 1, 6, -4, 2.5, 12}, 0},
		{"Div", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Div(x) }, []float64{-1, 4, 1.5, -4, 10, 3}, 0},
		{"Sum all", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Sum() }, []float64{21}, 0},
		{"Sum dim", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Sum(1) }, []float64{6, 15}, 0},
		{"SumKeepDim", func(g *Graph, x, m Tensor) (Tensor, error) { return m.SumKeepDim(0) }, []float64{5, 7, 9}, 0},
		{"Mean", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Mean() }, []float64{3.5}, 0},
		{"MeanKeepDim", func(g *Graph, x, m Tensor) (Tensor, error) { return m.MeanKeepDim(-1) }, []float64{2, 5}, 0},
		{"Max", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Max() }, []float64{6}, 0},
		{"MaxKeepDim", func(g *Graph, x, m Tensor) (Tensor, error) { return m.MaxKeepDim(0) }, []float64{4, 5, 6}, 0},
		{"Softmax", func(g *Graph, x, m Tensor) (Tensor, error) { return Must(m.Softmax(1)).Slice(0, 0, 1, 1) },
			[]float64{math.Exp(1) / ez, math.Exp(2) / ez, math.Exp(3) / ez}, 1e-12},
		{"LogSoftmax", func(g *Graph, x, m Tensor) (Tensor, error) { return Must(m.LogSoftmax(-1)).Slice(0, 0, 1, 1) },
			[]float64{1 - math.Log(ez), 2 - math.Log(ez), 3 - math.Log(ez)}, 1e-12},
		{"Reshape", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Reshape(3, -1) }, []float64{1, 2, 3, 4, 5, 6}, 0},
		{"Transpose", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Transpose(0, 1) }, []float64{1, 4, 2, 5, 3, 6}, 0},
		{"T", func(g *Graph, x, m Tensor) (Tensor, error) { return m.T() }, []float64{1, 4, 2, 5, 3, 6}, 0},
		{"Permute", func(g *Graph, x, m Tensor) (Tensor, error) { return Must(m.Reshape(1, 2, 3)).Permute(2, 0, 1) }, []float64{1, 4, 2, 5, 3, 6}, 0},
		{"Expand", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Expand(2, 3) }, []float64{-1, 0.5, 2, -1, 0.5, 2}, 0},
		{"SumTo", func(g *Graph, x, m Tensor) (Tensor, error) { return m.SumTo(1, 3) }, []float64{5, 7, 9}, 0},
		{"Concat", func(g *Graph, x, m Tensor) (Tensor, error) { return g.Concat(0, x, x) }, []float64{-1, 0.5, 2, -1, 0.5, 2}, 0},
		{"Slice with step", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Slice(1, 0, 3, 2) }, []float64{1, 3, 4, 6}, 0},
		{"Slice negative start", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Slice(0, -2, 3, 1) }, []float64{0.5, 2}, 0},
		{"SliceScatter", func(g *Graph, x, m Tensor) (Tensor, error) { return x.SliceScatter([]int{7}, 0, 1, 2) }, []float64{0, -1, 0, 0.5, 0, 2, 0}, 0},
		{"IndexSelect", func(g *Graph, x, m Tensor) (Tensor, error) {
			return m.IndexSelect(1, Must(g.FromInt64([]int64{2, 0, 2}, 3)))
		}, []float64{3, 1, 3, 6, 4, 6}, 0},
		{"IndexAdd", func(g *Graph, x, m Tensor) (Tensor, error) {
			return x.IndexAdd(0, Must(g.FromInt64([]int64{2, 0, 2}, 3)), 4)
		}, []float64{0.5, 0, 1, 0}, 0},
		{"Gather", func(g *Graph, x, m Tensor) (Tensor, error) {
			return m.Gather(1, Must(g.FromInt64([]int64{2, 1, 0, 0}, 2, 2)))
		}, []float64{3, 2, 4, 4}, 0},
		{"ScatterAdd", func(g *Graph, x, m Tensor) (Tensor, error) {
			return Must(g.Full(Float64, 1, 2, 2)).ScatterAdd(1, Must(g.FromInt64([]int64{2, 1, 0, 0}, 2, 2)), []int{2, 3})
		}, []float64{0, 1, 1, 2, 0, 0}, 0},
		{"MatMul", func(g *Graph, x, m Tensor) (Tensor, error) { return m.MatMul(Must(m.T())) }, []float64{14, 32, 32, 77}, 0},
		{"MatMulT", func(g *Graph, x, m Tensor) (Tensor, error) { return m.MatMulT(m, false, true) }, []float64{14, 32, 32, 77}, 0},
		{"Linear without bias", func(g *Graph, x, m Tensor) (Tensor, error) { return m.Linear(Must(x.Reshape(1, 3)), Tensor{}) }, []float64{6, 10.5}, 0},
		{"Linear with bias", func(g *Graph, x, m Tensor) (Tensor, error) {
			return m.Linear(Must(x.Reshape(1, 3)), Must(g.FromFloat64([]float64{0.5}, 1)))
		}, []float64{6.5, 11}, 0},
		{"LinearAct relu", func(g *Graph, x, m Tensor) (Tensor, error) {
			return m.LinearAct(Must(x.Reshape(1, 3)), Must(g.FromFloat64([]float64{-7}, 1)), ActivationRelu)
		}, []float64{0, 3.5}, 0},
		{"LinearAct sigmoid without bias", func(g *Graph, x, m Tensor) (Tensor, error) {
			return m.LinearAct(Must(x.Reshape(1, 3)), Tensor{}, ActivationSigmoid)
		}, []float64{1 / (1 + math.Exp(-6)), 1 / (1 + math.Exp(-10.5))}, 1e-15},
		{"MSELoss", func(g *Graph, x, m Tensor) (Tensor, error) {
			return x.MSELoss(Must(g.Zeros(Float64, 3)), ReductionMean)
		}, []float64{5.25 / 3}, 1e-15},
		{"MSELoss none", func(g *Graph, x, m Tensor) (Tensor, error) {
			return x.MSELoss(Must(g.Zeros(Float64, 3)), ReductionNone)
		}, []float64{1, 0.25, 4}, 0},
		{"CrossEntropy", func(g *Graph, x, m Tensor) (Tensor, error) {
			return Must(g.Zeros(Float64, 2, 2)).CrossEntropy(Must(g.FromInt64([]int64{0, 1}, 2)))
		}, []float64{ln2}, 1e-12},
		{"CrossEntropyWith sum, ignoring class 1", func(g *Graph, x, m Tensor) (Tensor, error) {
			return Must(g.Zeros(Float64, 2, 2)).CrossEntropyWith(Must(g.FromInt64([]int64{0, 1}, 2)),
				CrossEntropyOptions{Reduction: ReductionSum, IgnoreIndex: 1})
		}, []float64{ln2}, 1e-12},
		{"CrossEntropyWith defaults", func(g *Graph, x, m Tensor) (Tensor, error) {
			return Must(g.Zeros(Float64, 2, 2)).CrossEntropyWith(Must(g.FromInt64([]int64{0, 1}, 2)), DefaultCrossEntropyOptions())
		}, []float64{ln2}, 1e-12},
		{"BinaryCrossEntropyWithLogits", func(g *Graph, x, m Tensor) (Tensor, error) {
			return Must(g.Zeros(Float64, 2)).BinaryCrossEntropyWithLogits(Must(g.Full(Float64, 0.5, 2)), ReductionSum)
		}, []float64{2 * ln2}, 1e-12},
		{"Dropout off", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Dropout(0.5, false) }, []float64{-1, 0.5, 2}, 0},
		{"Detach", func(g *Graph, x, m Tensor) (Tensor, error) { return x.Detach() }, []float64{-1, 0.5, 2}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			x := must[Tensor](t)(g.FromFloat64([]float64{-1, 0.5, 2}, 3))
			m := must[Tensor](t)(g.FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3))
			near(t, c.name, values(t, must[Tensor](t)(c.op(g, x, m))), c.want, c.tol)
		})
	}
}

func gelu(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * 0.5 * (1 + math.Erf(x/math.Sqrt2))
	}
	return out
}

func TestDropoutZeroesOrScalesWhenTraining(t *testing.T) {
	g := newGraph(t)
	ok(t, g.ManualSeed(3))
	ones := must[Tensor](t)(g.Full(Float64, 1, 1000))
	zeros := 0
	for _, v := range values(t, must[Tensor](t)(ones.Dropout(0.5, true))) {
		if v != 0 && v != 2 {
			t.Fatalf("dropout value %v", v)
		}
		if v == 0 {
			zeros++
		}
	}
	if zeros < 350 || zeros > 650 {
		t.Fatalf("%d of 1000 dropped at p = 0.5", zeros)
	}
}
