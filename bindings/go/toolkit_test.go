package bp

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// smallData is 12 rows of 3 features with labels 0/1 (as tests/c/test_toolkit.c).
func smallData(t testing.TB) *Dataset {
	t.Helper()
	x := make([]float32, 36)
	y := make([]int64, 12)
	for i := range x {
		x[i] = float32((i*7)%11)/5 - 1
	}
	for i := range y {
		if x[3*i]+x[3*i+1] > 0 {
			y[i] = 1
		}
	}
	d := must[*Dataset](t)(NewDataset(x, y, 3))
	t.Cleanup(func() { ok(t, d.Close()) })
	return d
}

// smallModel is 3 -> 4 tanh -> 2 with parameters in g.
func smallModel(t testing.TB, g *Graph) *Model {
	t.Helper()
	m := must[*Model](t)(NewModel())
	t.Cleanup(func() { ok(t, m.Close()) })
	ok(t, m.AddLinear(g, "", 3, 4, true))
	ok(t, m.AddLayer("", LayerTanh, 0))
	ok(t, m.AddLinear(g, "", 4, 2, true))
	return m
}

// flatParams concatenates every parameter's values.
func flatParams(t testing.TB, m *Model) []float32 {
	t.Helper()
	var all []float32
	for _, p := range must[[]Tensor](t)(m.Parameters()) {
		all = append(all, must[[]float32](t)(p.Float32s())...)
	}
	return all
}

// trainSteps runs steps of cross-entropy training over the loader's batches, new epochs as needed.
func trainSteps(t testing.TB, g *Graph, m *Model, opt *Optimizer, l *Loader, d *Dataset, steps int) {
	t.Helper()
	for steps > 0 {
		b, more, err := l.Next(g, d)
		ok(t, err)
		if !more {
			ok(t, l.StartEpoch())
			continue
		}
		ok(t, opt.ZeroGrad())
		loss := must[Tensor](t)(must[Tensor](t)(m.Forward(b.X)).CrossEntropy(b.Y))
		ok(t, loss.Backward())
		ok(t, opt.Step())
		ok(t, g.Reset())
		steps--
	}
}

func TestModelNamesParametersAndInitialisesAsPyTorch(t *testing.T) {
	g := newGraph(t)
	ok(t, g.ManualSeed(0))
	m := must[*Model](t)(NewModel())
	defer m.Close()
	ok(t, m.AddLinear(g, "", 64, 128, true))
	ok(t, m.AddLayer("", LayerReLU, 0))
	ok(t, m.AddLinear(g, "head", 128, 10, true))
	names := must[[]string](t)(m.ParameterNames())
	if !reflect.DeepEqual(names, []string{"0.weight", "0.bias", "head.weight", "head.bias"}) {
		t.Fatalf("names %v", names)
	}
	params := must[[]Tensor](t)(m.Parameters())
	if s := must[[]int](t)(params[0].Shape()); !reflect.DeepEqual(s, []int{128, 64}) {
		t.Fatalf("shape %v", s)
	}
	// torch.manual_seed(0); nn.Linear(64, 128): weight[0, :2] and bias[0], as printed by PyTorch.
	w := must[[]float32](t)(params[0].Float32s())
	b := must[[]float32](t)(params[1].Float32s())
	if w[0] != -0.0009358525276184082 || w[1] != 0.06705544888973236 || b[0] != -0.004167690873146057 {
		t.Fatalf("init %v %v %v", w[0], w[1], b[0])
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"duplicate name", func() error { return m.AddLinear(g, "head", 10, 2, true) }},
		{"dotted name", func() error { return m.AddLinear(g, "a.b", 10, 2, true) }},
		{"dropout probability 1.5", func() error { return m.AddLayer("", LayerDropout, 1.5) }},
		{"unknown layer", func() error { return m.AddLayer("", Layer(99), 0) }},
	} {
		if err := c.call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if n := len(must[[]Tensor](t)(m.Parameters())); n != 4 {
		t.Fatalf("a refused layer added parameters: %d", n)
	}
}

func TestModelLayersAndModes(t *testing.T) {
	g := newGraph(t)
	m := must[*Model](t)(NewModel())
	defer m.Close()
	ok(t, m.AddEmbedding(g, "emb", 10, 4))
	ok(t, m.AddLayerNorm(g, "norm", []int{4}, 1e-5, true))
	for _, l := range []struct {
		kind  Layer
		param float64
	}{{LayerLeakyReLU, 0.1}, {LayerGELU, 0}, {LayerSigmoid, 0}, {LayerDropout, 0.5}, {LayerFlatten, 0}} {
		ok(t, m.AddLayer("", l.kind, l.param))
	}
	ok(t, m.AddLinear(g, "", 12, 2, true))
	idx := must[Tensor](t)(g.FromInt64([]int64{1, 2, 3, 4, 5, 6}, 2, 3))
	if !must[bool](t)(m.Training()) {
		t.Fatal("a new model trains")
	}
	out := must[Tensor](t)(m.Forward(idx))
	if s := must[[]int](t)(out.Shape()); !reflect.DeepEqual(s, []int{2, 2}) {
		t.Fatalf("shape %v", s)
	}
	ok(t, m.SetTraining(false))
	a := must[[]float32](t)(must[Tensor](t)(m.Forward(idx)).Float32s())
	p := must[Tensor](t)(m.Predict(idx))
	if !reflect.DeepEqual(a, must[[]float32](t)(p.Float32s())) || must[bool](t)(p.RequiresGrad()) {
		t.Fatal("eval forward and predict must agree; predict records nothing")
	}
	ok(t, m.SetTraining(true))
	ok(t, must[Tensor](t)(must[Tensor](t)(m.Forward(idx)).Sum()).Backward())
	ok(t, m.ZeroGrad())
	for _, p := range must[[]Tensor](t)(m.Parameters()) {
		if gr := must[Tensor](t)(p.Grad()); !gr.IsNull() {
			t.Fatal("ZeroGrad left a gradient")
		}
	}
}

func TestDatasetSplitsStandardizesAndMakesTensors(t *testing.T) {
	d := smallData(t)
	rows, dim, err := d.Size()
	ok(t, err)
	if rows != 12 || dim != 3 {
		t.Fatalf("size %d×%d", rows, dim)
	}
	train, test, err := d.Split([]int{0, 5})
	ok(t, err)
	defer train.Close()
	defer test.Close()
	mean, std, err := train.ColumnStats()
	ok(t, err)
	ok(t, train.Standardize(mean, std))
	mean2, std2, err := train.ColumnStats()
	ok(t, err)
	for c := range mean2 {
		if math.Abs(mean2[c]) > 1e-6 || math.Abs(std2[c]-1) > 1e-5 {
			t.Fatalf("column %d: mean %v std %v after standardising", c, mean2[c], std2[c])
		}
	}
	g := newGraph(t)
	all := must[Batch](t)(test.ToTensors(g))
	if s := must[[]int](t)(all.X.Shape()); !reflect.DeepEqual(s, []int{2, 3}) {
		t.Fatalf("shape %v", s)
	}
	cases := []struct {
		name string
		want *Error
		call func() error
	}{
		{"row listed twice", ErrInvalidArgument, func() error { _, _, err := d.Split([]int{1, 1}); return err }},
		{"negative row", ErrInvalidArgument, func() error { _, _, err := d.Split([]int{-1}); return err }},
		{"stats of the wrong width", ErrInvalidArgument, func() error { return train.Standardize([]float64{0, 0}, []float64{1, 1}) }},
		{"mean and std of different lengths", ErrInvalidArgument, func() error { return train.Standardize([]float64{0, 0}, []float64{1}) }},
		{"features not rows × dim", ErrInvalidArgument, func() error { _, err := NewDataset(make([]float32, 5), make([]int64, 2), 3); return err }},
	}
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestCSVFilesLoadAndBadOnesAreFormatOrIOErrors(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good.csv"), filepath.Join(dir, "bad.csv")
	ok(t, os.WriteFile(good, []byte("a,b,label\n1,2,0\n3,4,1\n"), 0o600))
	ok(t, os.WriteFile(bad, []byte("1,2,0\n3,x,1\n"), 0o600))
	d := must[*Dataset](t)(LoadCSV(good, -1, true))
	defer d.Close()
	if rows, dim, _ := d.Size(); rows != 2 || dim != 2 {
		t.Fatalf("size %d×%d", rows, dim)
	}
	_, err := LoadCSV(bad, -1, false)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "bad.csv") {
		t.Fatalf("malformed file: %v", err)
	}
	if _, err := LoadCSV(filepath.Join(dir, "none.csv"), -1, false); !errors.Is(err, ErrIO) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestLoaderVisitsEveryRowOncePerEpoch(t *testing.T) {
	d := smallData(t)
	g := newGraph(t)
	l := must[*Loader](t)(NewLoader(12, 5, true, 7))
	defer l.Close()
	if n := must[int](t)(l.BatchesPerEpoch()); n != 3 {
		t.Fatalf("%d batches", n)
	}
	ok(t, l.StartEpoch())
	rows, batches := 0, 0
	for {
		b, more, err := l.Next(g, d)
		ok(t, err)
		if !more {
			break
		}
		rows += must[int](t)(b.Y.NumEl())
		batches++
	}
	if rows != 12 || batches != 3 {
		t.Fatalf("%d rows in %d batches", rows, batches)
	}
	ok(t, l.SetDropLast(true))
	if n := must[int](t)(l.BatchesPerEpoch()); n != 2 {
		t.Fatalf("%d batches with drop_last", n)
	}
	wrong := must[*Loader](t)(NewLoader(9, 3, false, 0))
	defer wrong.Close()
	ok(t, wrong.StartEpoch())
	if _, _, err := wrong.Next(g, d); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("loader for 9 rows over 12: %v", err)
	}
	if _, err := NewLoader(9, 0, true, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("batch size 0: %v", err)
	}
}

func TestEveryOptimizerLowersTheLoss(t *testing.T) {
	cases := []struct {
		name string
		make func(g *Graph, m *Model) (*Optimizer, error)
	}{
		{"SGD with Nesterov momentum", func(g *Graph, m *Model) (*Optimizer, error) {
			return NewSGD(g, m, 0.5, SGDOptions{Momentum: 0.9, WeightDecay: 1e-4, Nesterov: true})
		}},
		{"Adam", func(g *Graph, m *Model) (*Optimizer, error) { return NewAdam(g, m, 0.05, DefaultAdamOptions()) }},
		{"AdamW with AMSGrad", func(g *Graph, m *Model) (*Optimizer, error) {
			o := DefaultAdamWOptions()
			o.AMSGrad = true
			return NewAdamW(g, m, 0.05, o)
		}},
		{"RMSprop", func(g *Graph, m *Model) (*Optimizer, error) { return NewRMSprop(g, m, 0.01, DefaultRMSpropOptions()) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			ok(t, g.ManualSeed(1))
			m := smallModel(t, g)
			opt := must[*Optimizer](t)(c.make(g, m))
			defer opt.Close()
			all := must[Batch](t)(smallData(t).ToTensors(g))
			ok(t, all.X.SetPersistent(true))
			ok(t, all.Y.SetPersistent(true))
			loss := func() float64 {
				return must[float64](t)(must[Tensor](t)(must[Tensor](t)(m.Forward(all.X)).CrossEntropy(all.Y)).Item())
			}
			before := loss()
			for i := 0; i < 30; i++ {
				ok(t, opt.ZeroGrad())
				ok(t, g.Reset())
				ok(t, must[Tensor](t)(must[Tensor](t)(m.Forward(all.X)).CrossEntropy(all.Y)).Backward())
				ok(t, opt.Step())
			}
			ok(t, g.Reset())
			if after := loss(); !(after < before) {
				t.Fatalf("loss %v -> %v", before, after)
			}
		})
	}
}

// TrainStep is the step built from ops, bit for bit; unsupported layers are StatusUnsupported errors.
func TestTrainStepIsTheStepBuiltFromOps(t *testing.T) {
	d := smallData(t)
	ga, gb := newGraph(t), newGraph(t)
	ok(t, ga.ManualSeed(5))
	ok(t, gb.ManualSeed(5))
	ma, mb := smallModel(t, ga), smallModel(t, gb)
	oa := must[*Optimizer](t)(NewSGD(ga, ma, 0.3, SGDOptions{Momentum: 0.9}))
	defer oa.Close()
	ob := must[*Optimizer](t)(NewSGD(gb, mb, 0.3, SGDOptions{Momentum: 0.9}))
	defer ob.Close()
	a, b := must[Batch](t)(d.ToTensors(ga)), must[Batch](t)(d.ToTensors(gb))
	ok(t, a.X.SetPersistent(true))
	ok(t, a.Y.SetPersistent(true))
	opts := DefaultCrossEntropyOptions()
	for i := 0; i < 5; i++ {
		ok(t, oa.ZeroGrad())
		loss := must[Tensor](t)(must[Tensor](t)(ma.Forward(a.X)).CrossEntropyWith(a.Y, opts))
		la := must[float64](t)(loss.Item())
		ok(t, loss.Backward())
		ok(t, oa.Step())
		ok(t, ga.Reset())
		lb := must[float64](t)(mb.TrainStep(ob, b.X, b.Y, opts))
		if math.Float64bits(la) != math.Float64bits(lb) {
			t.Fatalf("step %d: loss %v from ops, %v from TrainStep", i, la, lb)
		}
	}
	if pa, pb := flatParams(t, ma), flatParams(t, mb); !reflect.DeepEqual(pa, pb) {
		t.Fatalf("parameters differ: %v vs %v", pa, pb)
	}
	// Mean squared error, continuing both.
	values := make([]float32, 24)
	for i := range values {
		values[i] = float32(i%5) / 4
	}
	ta, tb := must[Tensor](t)(ga.FromFloat32(values, 12, 2)), must[Tensor](t)(gb.FromFloat32(values, 12, 2))
	ok(t, ta.SetPersistent(true))
	for i := 0; i < 3; i++ {
		ok(t, oa.ZeroGrad())
		loss := must[Tensor](t)(must[Tensor](t)(ma.Forward(a.X)).MSELoss(ta, ReductionMean))
		la := must[float64](t)(loss.Item())
		ok(t, loss.Backward())
		ok(t, oa.Step())
		ok(t, ga.Reset())
		lb := must[float64](t)(mb.TrainStepMSE(ob, b.X, tb, ReductionMean))
		if math.Float64bits(la) != math.Float64bits(lb) {
			t.Fatalf("mse step %d: loss %v from ops, %v from TrainStepMSE", i, la, lb)
		}
	}
	if pa, pb := flatParams(t, ma), flatParams(t, mb); !reflect.DeepEqual(pa, pb) {
		t.Fatalf("parameters differ after mse: %v vs %v", pa, pb)
	}
	if _, err := mb.TrainStepMSE(ob, b.X, b.Y, ReductionMean); !errors.Is(err, ErrShapeMismatch) {
		t.Fatalf("class targets for mse: %v", err)
	}
	drop := must[*Model](t)(NewModel()) // dropout in training mode draws random masks: not compiled
	defer drop.Close()
	ok(t, drop.AddLinear(gb, "", 3, 2, true))
	ok(t, drop.AddLayer("", LayerDropout, 0.5))
	og := must[*Optimizer](t)(NewSGD(gb, drop, 0.1, SGDOptions{}))
	defer og.Close()
	if _, err := drop.TrainStep(og, b.X, b.Y, opts); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("a dropout layer in training mode: %v", err)
	}
	var closed *Model
	if _, err := closed.TrainStep(ob, b.X, b.Y, opts); err == nil {
		t.Fatal("a nil model trained")
	}
}

func TestOptimizerLearningRateAndBadHyperparameters(t *testing.T) {
	g := newGraph(t)
	m := smallModel(t, g)
	opt := must[*Optimizer](t)(NewSGD(g, m, 0.1, SGDOptions{}))
	defer opt.Close()
	ok(t, opt.SetLR(0.25))
	if lr := must[float64](t)(opt.LR()); lr != 0.25 {
		t.Fatalf("lr %v", lr)
	}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"negative lr", func() error { return opt.SetLR(-0.5) }},
		{"negative lr at construction", func() error { _, err := NewSGD(g, m, -1, SGDOptions{}); return err }},
		{"Nesterov with dampening", func() error {
			_, err := NewSGD(g, m, 0.1, SGDOptions{Dampening: 0.5, Nesterov: true})
			return err
		}},
		{"step size 0", func() error { _, err := NewStepLR(opt, 0, 0.5); return err }},
	} {
		if err := c.call(); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestSchedulesSetTheLearningRateAsPyTorch(t *testing.T) {
	cases := []struct {
		name  string
		make  func(o *Optimizer) (*Schedule, error)
		steps int
		want  float64
	}{
		{"StepLR", func(o *Optimizer) (*Schedule, error) { return NewStepLR(o, 2, 0.5) }, 4, 0.1 * 0.5 * 0.5},
		{"ExponentialLR", func(o *Optimizer) (*Schedule, error) { return NewExponentialLR(o, 0.5) }, 1, 0.05},
		{"CosineAnnealingLR half way", func(o *Optimizer) (*Schedule, error) { return NewCosineAnnealingLR(o, 2, 0) }, 1, 0.05},
		{"CosineAnnealingLR at the end", func(o *Optimizer) (*Schedule, error) { return NewCosineAnnealingLR(o, 2, 0) }, 2, 0},
		{"LinearLR warm-up starts at once", func(o *Optimizer) (*Schedule, error) { return NewLinearLR(o, 0.25, 1, 4) }, 0, 0.025},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			opt := must[*Optimizer](t)(NewSGD(g, smallModel(t, g), 0.1, SGDOptions{}))
			defer opt.Close()
			s := must[*Schedule](t)(c.make(opt))
			defer s.Close()
			for i := 0; i < c.steps; i++ {
				ok(t, s.Step())
			}
			if lr := must[float64](t)(opt.LR()); math.Abs(lr-c.want) > 1e-12 {
				t.Fatalf("lr %v, want %v", lr, c.want)
			}
		})
	}
}

func TestToolkitLossesAccuracyInitAndClipping(t *testing.T) {
	g := newGraph(t)
	a := must[Tensor](t)(g.FromFloat32([]float32{0.5, 2, -1, 0}, 4))
	zero := must[Tensor](t)(g.Zeros(Float32, 4))
	item := func(x Tensor, err error) float64 { return must[float64](t)(must[Tensor](t)(x, err).Item()) }
	if v := item(a.L1Loss(zero, ReductionMean)); math.Abs(v-3.5/4) > 1e-7 {
		t.Fatalf("l1 %v", v)
	}
	if v := item(a.SmoothL1Loss(zero, ReductionSum, 1)); math.Abs(v-2.125) > 1e-6 {
		t.Fatalf("smooth l1 %v", v)
	}
	if _, err := a.SmoothL1Loss(zero, Reduction(7), 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad reduction: %v", err)
	}
	logits := must[Tensor](t)(g.FromFloat32([]float32{1, 2, 3, 1, 3, 1}, 2, 3))
	logp := must[Tensor](t)(logits.LogSoftmax(1))
	z := math.Exp(1) + math.Exp(2) + math.Exp(3)
	if v := item(logp.NLLLoss(must[Tensor](t)(g.FromInt64([]int64{2, -100}, 2)), ReductionMean, -100)); math.Abs(v-(math.Log(z)-3)) > 1e-6 {
		t.Fatalf("nll %v", v)
	}
	if acc := must[float64](t)(logits.Accuracy(must[Tensor](t)(g.FromInt64([]int64{2, 0}, 2)))); acc != 0.5 {
		t.Fatalf("accuracy %v", acc)
	}

	w := must[Tensor](t)(g.Zeros(Float32, 50, 40))
	bounded := func(what string, bound float64) {
		for _, v := range must[[]float32](t)(w.Float32s()) {
			if math.Abs(float64(v)) > bound {
				t.Fatalf("%s: %v beyond %v", what, v, bound)
			}
		}
	}
	ok(t, w.InitUniform(-0.1, 0.1))
	bounded("uniform", 0.1)
	ok(t, w.InitNormal(5, 0.01))
	if m := item(w.Mean()); math.Abs(m-5) > 0.01 {
		t.Fatalf("normal mean %v", m)
	}
	ok(t, w.InitXavier(1, false))
	bounded("xavier", math.Sqrt(6.0/90))
	ok(t, w.InitXavier(1, true))
	ok(t, w.InitKaiming(NonlinearityReLU, 0, false, false))
	bounded("kaiming", math.Sqrt2*math.Sqrt(3.0/40)+1e-6)
	for _, n := range []Nonlinearity{NonlinearityLinear, NonlinearitySigmoid, NonlinearityTanh, NonlinearityLeakyReLU} {
		ok(t, w.InitKaiming(n, 0.2, true, true))
	}
	if err := w.InitKaiming(Nonlinearity(42), 0, false, false); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown non-linearity: %v", err)
	}

	m := smallModel(t, g)
	x := must[Tensor](t)(g.FromFloat32([]float32{1, 2, 3, -1, -2, -3}, 2, 3))
	y := must[Tensor](t)(g.FromInt64([]int64{0, 1}, 2))
	ok(t, must[Tensor](t)(must[Tensor](t)(m.Forward(x)).CrossEntropy(y)).Backward())
	params := must[[]Tensor](t)(m.Parameters())
	largest := 0.0
	for _, p := range params {
		for _, v := range must[[]float32](t)(must[Tensor](t)(p.Grad()).Float32s()) {
			largest = math.Max(largest, math.Abs(float64(v)))
		}
	}
	if n := must[float64](t)(g.ClipGradNorm(params, 1e9, math.Inf(1))); math.Abs(n-largest) > 1e-9 {
		t.Fatalf("max norm %v, largest |grad| %v", n, largest)
	}
	if n := must[float64](t)(g.ClipGradNorm(params, 1e-3, 2)); n <= 1e-3 {
		t.Fatalf("norm before clipping %v", n)
	}
	if n := must[float64](t)(g.ClipGradNorm(params, 1e9, 2)); math.Abs(n-1e-3) > 1e-8 {
		t.Fatalf("norm after clipping %v", n)
	}
	ok(t, g.ClipGradValue(params, 1e-5))
	for _, v := range must[[]float32](t)(must[Tensor](t)(params[0].Grad()).Float32s()) {
		if math.Abs(float64(v)) > 1e-5 {
			t.Fatalf("clipped value %v", v)
		}
	}
	if _, err := g.ClipGradNorm(nil, 1, 2); err != nil {
		t.Fatalf("clipping nothing: %v", err)
	}
}

// setup is a training run's objects: model, Adam with a StepLR schedule, and a loader.
type setup struct {
	g   *Graph
	m   *Model
	opt *Optimizer
	s   *Schedule
	l   *Loader
}

func newSetup(t *testing.T, seed, loaderSeed uint64) setup {
	g := newGraph(t)
	ok(t, g.ManualSeed(seed))
	m := smallModel(t, g)
	opt := must[*Optimizer](t)(NewAdam(g, m, 0.01, DefaultAdamOptions()))
	s := must[*Schedule](t)(NewStepLR(opt, 3, 0.5))
	l := must[*Loader](t)(NewLoader(12, 5, true, loaderSeed))
	t.Cleanup(func() {
		ok(t, l.Close())
		ok(t, s.Close())
		ok(t, opt.Close())
	})
	return setup{g, m, opt, s, l}
}

func TestCheckpointResumeIsBitIdenticalToNeverStopping(t *testing.T) {
	d := smallData(t)
	path := filepath.Join(t.TempDir(), "ckpt.safetensors")
	ref := newSetup(t, 3, 9)
	ok(t, ref.l.StartEpoch())
	trainSteps(t, ref.g, ref.m, ref.opt, ref.l, d, 4)
	ok(t, ref.s.Step())
	trainSteps(t, ref.g, ref.m, ref.opt, ref.l, d, 6)

	first := newSetup(t, 3, 9)
	ok(t, first.l.StartEpoch())
	trainSteps(t, first.g, first.m, first.opt, first.l, d, 4)
	ok(t, first.s.Step())
	ok(t, SaveCheckpoint(path, first.g, first.m, TrainingParts{Optimizer: first.opt, Schedule: first.s, Loader: first.l}))

	resumed := newSetup(t, 99, 0)
	ok(t, LoadCheckpoint(path, resumed.g, resumed.m, TrainingParts{Optimizer: resumed.opt, Schedule: resumed.s, Loader: resumed.l}))
	trainSteps(t, resumed.g, resumed.m, resumed.opt, resumed.l, d, 6)
	if !reflect.DeepEqual(flatParams(t, resumed.m), flatParams(t, ref.m)) {
		t.Fatal("the resumed run differs from the uninterrupted one")
	}
}

func TestWeightsRoundTripAndBadFilesChangeNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.safetensors")
	g := newGraph(t)
	ok(t, g.ManualSeed(5))
	a, b := smallModel(t, g), smallModel(t, g)
	ok(t, SaveWeights(path, g, a))
	ok(t, LoadWeights(path, g, b))
	if !reflect.DeepEqual(flatParams(t, a), flatParams(t, b)) {
		t.Fatal("weights did not round-trip")
	}
	ok(t, SaveCheckpoint(path, g, a, TrainingParts{}))
	ok(t, LoadCheckpoint(path, g, b, TrainingParts{}))

	other := must[*Model](t)(NewModel())
	defer other.Close()
	ok(t, other.AddLinear(g, "", 3, 5, true))
	before := flatParams(t, other)
	opt := must[*Optimizer](t)(NewSGD(g, a, 0.1, SGDOptions{}))
	defer opt.Close()
	unwritable := "/nonexistent-dir/w.safetensors"
	cases := []struct {
		name string
		want *Error
		call func() error
	}{
		{"weights of another architecture", ErrFormat, func() error { return LoadWeights(path, g, other) }},
		{"checkpoint of another architecture", ErrFormat, func() error { return LoadCheckpoint(path, g, other, TrainingParts{}) }},
		{"optimizer state missing", ErrFormat, func() error { return LoadCheckpoint(path, g, a, TrainingParts{Optimizer: opt}) }},
		{"unwritable path", ErrIO, func() error { return SaveWeights(unwritable, g, a) }},
		{"missing file", ErrIO, func() error { return LoadCheckpoint(unwritable, g, a, TrainingParts{}) }},
		{"not a safetensors file", ErrFormat, func() error {
			if err := os.WriteFile(path, []byte("not a safetensors file"), 0o600); err != nil {
				return err
			}
			return LoadWeights(path, g, a)
		}},
	}
	for _, c := range cases {
		if err := c.call(); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want.Code)
		}
	}
	if !reflect.DeepEqual(flatParams(t, other), before) {
		t.Fatal("a refused load changed the model")
	}
}

// Every toolkit object: Close twice is fine, and a use after Close is an error, never a crash.
func TestToolkitObjectsCloseTwiceAndRefuseUseAfterClose(t *testing.T) {
	g := newGraph(t)
	d := smallData(t)
	cases := []struct {
		name string
		make func() (close func() error, use func() error)
	}{
		{"Dataset", func() (func() error, func() error) {
			x := must[*Dataset](t)(NewDataset([]float32{1}, []int64{0}, 1))
			return x.Close, func() error { _, _, err := x.Size(); return err }
		}},
		{"Dataset in ToTensors", func() (func() error, func() error) {
			x := must[*Dataset](t)(NewDataset([]float32{1}, []int64{0}, 1))
			return x.Close, func() error { _, err := x.ToTensors(g); return err }
		}},
		{"Loader", func() (func() error, func() error) {
			x := must[*Loader](t)(NewLoader(12, 4, false, 0))
			return x.Close, func() error { _, _, err := x.Next(g, d); return err }
		}},
		{"Model", func() (func() error, func() error) {
			x := must[*Model](t)(NewModel())
			return x.Close, func() error { return x.SetTraining(false) }
		}},
		{"Optimizer", func() (func() error, func() error) {
			x := must[*Optimizer](t)(NewSGD(g, smallModel(t, g), 0.1, SGDOptions{}))
			return x.Close, x.Step
		}},
		{"Schedule", func() (func() error, func() error) {
			o := must[*Optimizer](t)(NewSGD(g, smallModel(t, g), 0.1, SGDOptions{}))
			t.Cleanup(func() { o.Close() })
			x := must[*Schedule](t)(NewExponentialLR(o, 0.5))
			return x.Close, x.Step
		}},
		{"Schedule in a checkpoint", func() (func() error, func() error) {
			m := smallModel(t, g)
			o := must[*Optimizer](t)(NewSGD(g, m, 0.1, SGDOptions{}))
			t.Cleanup(func() { o.Close() })
			x := must[*Schedule](t)(NewExponentialLR(o, 0.5))
			path := filepath.Join(t.TempDir(), "c.safetensors")
			return x.Close, func() error { return SaveCheckpoint(path, g, m, TrainingParts{Schedule: x}) }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			closeIt, use := c.make()
			ok(t, closeIt())
			ok(t, closeIt())
			if err := use(); !errors.Is(err, ErrInvalidHandle) {
				t.Fatalf("use after Close: %v", err)
			}
		})
	}
}
