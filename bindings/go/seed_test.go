package bp

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// The seed network (20 -> 13 ReLU -> 8 sigmoid -> 3, cross-entropy) as in tests/data/seed.
type seedModel struct {
	g              *Graph
	x, y           Tensor
	w1, w2, w3, b3 Tensor
	params         []Tensor
}

// kaimingBound is PyTorch's default Linear weight bound, kaiming_uniform_(a = √5): 1/√fan_in.
func kaimingBound(fanIn int) float64 {
	gain := math.Sqrt(2.0 / (1.0 + 5.0))
	return math.Sqrt(3.0) * gain / math.Sqrt(float64(fanIn))
}

// newSeedModel draws data and parameters exactly as torch.manual_seed(212) followed by the PyTorch
// script of tests/data/seed.
func newSeedModel(g *Graph) (*seedModel, error) {
	m := &seedModel{g: g}
	var err error
	param := func(bound float64, shape ...int) Tensor {
		if err != nil {
			return Tensor{}
		}
		var p Tensor
		if p, err = g.Rand(Float32, -bound, bound, shape...); err != nil {
			return Tensor{}
		}
		if err = p.SetPersistent(true); err == nil {
			err = p.SetRequiresGrad(true)
		}
		return p
	}
	if err = g.ManualSeed(212); err != nil {
		return nil, err
	}
	x01, err := g.Rand(Float32, 0, 1, 500, 20)
	if err != nil {
		return nil, err
	}
	if m.x, err = x01.MulScalar(100); err != nil {
		return nil, err
	}
	if m.y, err = g.Randint(0, 3, 500); err != nil {
		return nil, err
	}
	for _, t := range []Tensor{m.x, m.y} {
		if err = t.SetPersistent(true); err != nil {
			return nil, err
		}
	}
	m.w1 = param(kaimingBound(20), 13, 20)
	m.w2 = param(kaimingBound(13), 8, 13)
	m.w3 = param(kaimingBound(8), 3, 8)
	m.b3 = param(1/math.Sqrt(8), 3)
	m.params = []Tensor{m.w1, m.w2, m.w3, m.b3}
	return m, err
}

// logits is the forward pass (Must: the shapes are fixed, an error here is a bug).
func (m *seedModel) logits() Tensor {
	h1 := Must(Must(m.x.Linear(m.w1, Tensor{})).Relu())
	h2 := Must(Must(h1.Linear(m.w2, Tensor{})).Sigmoid())
	return Must(h2.Linear(m.w3, m.b3))
}

// sgdStep runs one step of plain SGD and returns the loss before the update.
func (m *seedModel) sgdStep(lr float64) (float64, error) {
	for _, p := range m.params {
		if err := p.ZeroGrad(); err != nil {
			return 0, err
		}
	}
	if err := m.g.Reset(); err != nil {
		return 0, err
	}
	loss, err := m.logits().CrossEntropy(m.y)
	if err != nil {
		return 0, err
	}
	value, err := loss.Item()
	if err != nil {
		return 0, err
	}
	if err := loss.Backward(); err != nil {
		return 0, err
	}
	return value, m.g.NoGrad(func() error {
		for _, p := range m.params {
			grad, err := p.Grad()
			if err != nil {
				return err
			}
			step, err := grad.MulScalar(lr)
			if err != nil {
				return err
			}
			updated, err := p.Sub(step)
			if err != nil {
				return err
			}
			if err := p.Assign(updated); err != nil {
				return err
			}
		}
		return nil
	})
}

const seedDir = "../../tests/data/seed"

type seedManifest struct {
	Case struct {
		Scalars struct {
			Loss             float64   `json:"loss"`
			SGDStepLosses    []float64 `json:"sgd_step_losses"`
			LossAfter10Steps float64   `json:"loss_after_10_steps"`
			SGD              struct {
				LR float64 `json:"lr"`
			} `json:"sgd"`
		} `json:"scalars"`
	} `json:"case"`
}

func readManifest(t testing.TB) seedManifest {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(seedDir, "manifest.json"))
	ok(t, err)
	var m seedManifest
	ok(t, json.Unmarshal(raw, &m))
	return m
}

// readF32 reads a raw little-endian float32 reference file.
func readF32(t testing.TB, name string) []float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(seedDir, name))
	ok(t, err)
	out := make([]float64, len(raw)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	return out
}

// closeTo fails unless |got - want| <= atol + rtol·|want| elementwise.
func closeTo(t testing.TB, what string, got []float32, want []float64, rtol, atol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > atol+rtol*math.Abs(want[i]) {
			t.Fatalf("%s: element %d is %v, PyTorch has %v", what, i, got[i], want[i])
		}
	}
}

func TestSeedNetworkMatchesPyTorch(t *testing.T) {
	ref := readManifest(t).Case.Scalars
	g := newGraph(t)
	m := must[*seedModel](t)(newSeedModel(g))
	f32 := must[[]float32](t)
	closeTo(t, "X", f32(m.x.Float32s()), readF32(t, "seed_X.f32"), 0, 0)
	closeTo(t, "W1 init", f32(m.w1.Float32s()), readF32(t, "seed_W1_init.f32"), 0, 0)
	closeTo(t, "b3 init", f32(m.b3.Float32s()), readF32(t, "seed_b3_init.f32"), 0, 0)
	z := m.logits()
	closeTo(t, "zhat", f32(z.Float32s()), readF32(t, "seed_zhat.f32"), 1e-5, 1e-4)
	loss := must[Tensor](t)(z.CrossEntropy(m.y))
	if l := must[float64](t)(loss.Item()); math.Abs(l-ref.Loss) > 1e-5 {
		t.Fatalf("loss %v, PyTorch %v", l, ref.Loss)
	}
	ok(t, loss.Backward())
	for i, name := range []string{"W1", "W2", "W3", "b3"} {
		grad := must[Tensor](t)(m.params[i].Grad())
		closeTo(t, "grad "+name, f32(grad.Float32s()), readF32(t, "seed_grad_"+name+".f32"), 1e-4, 1e-6)
	}
}

func TestSeedSGDStepsMatchPyTorch(t *testing.T) {
	ref := readManifest(t).Case.Scalars
	g := newGraph(t)
	m := must[*seedModel](t)(newSeedModel(g))
	for k, want := range ref.SGDStepLosses {
		if l := must[float64](t)(m.sgdStep(ref.SGD.LR)); math.Abs(l-want) > 1e-5 {
			t.Fatalf("step %d: loss %v, PyTorch %v", k, l, want)
		}
	}
	for i, name := range []string{"W1", "W2", "W3", "b3"} {
		closeTo(t, name+" after 10 steps", must[[]float32](t)(m.params[i].Float32s()), readF32(t, "seed_"+name+"_after10.f32"), 1e-5, 1e-6)
	}
	ok(t, g.Reset())
	if l := must[float64](t)(must[Tensor](t)(m.logits().CrossEntropy(m.y)).Item()); math.Abs(l-ref.LossAfter10Steps) > 1e-5 {
		t.Fatalf("loss after 10 steps %v, PyTorch %v", l, ref.LossAfter10Steps)
	}
}

// trainSeed trains a fresh seed model for steps and returns its final parameters.
func trainSeed(steps int) ([][]float32, error) {
	g, err := NewGraph()
	if err != nil {
		return nil, err
	}
	defer g.Close()
	m, err := newSeedModel(g)
	if err != nil {
		return nil, err
	}
	for s := 0; s < steps; s++ {
		if _, err := m.sgdStep(0.01); err != nil {
			return nil, err
		}
	}
	out := make([][]float32, len(m.params))
	for i, p := range m.params {
		if out[i], err = p.Float32s(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Several goroutines each train their own model at once; every one ends bit-identical to a model
// trained alone (graphs share nothing, and each goroutine's errors stay its own).
func TestGoroutinesTrainTheirOwnModels(t *testing.T) {
	const workers, steps = 4, 15
	alone, err := trainSeed(steps)
	ok(t, err)
	results := make([][][]float32, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			results[w], errs[w] = trainSeed(steps)
		}(w)
	}
	wg.Wait()
	for w := 0; w < workers; w++ {
		if errs[w] != nil {
			t.Fatalf("goroutine %d: %v", w, errs[w])
		}
		for i := range alone {
			for j := range alone[i] {
				if results[w][i][j] != alone[i][j] {
					t.Fatalf("goroutine %d: parameter %d element %d is %v, alone %v", w, i, j, results[w][i][j], alone[i][j])
				}
			}
		}
	}
}

// A graph handed from goroutine to goroutine (one at a time) keeps working: the library allows a
// graph to move between threads, and the binding never pins one for longer than a call.
func TestAGraphMovesBetweenGoroutines(t *testing.T) {
	g := newGraph(t)
	m := must[*seedModel](t)(newSeedModel(g))
	losses := make(chan string, 1)
	prev := math.Inf(1)
	for s := 0; s < 5; s++ {
		go func() {
			l, err := m.sgdStep(0.01)
			if err != nil {
				losses <- err.Error()
				return
			}
			losses <- fmt.Sprint(l)
		}()
		var l float64
		msg := <-losses
		if _, err := fmt.Sscan(msg, &l); err != nil {
			t.Fatalf("step %d: %s", s, msg)
		}
		if !(l < prev) {
			t.Fatalf("step %d: loss %v did not fall from %v", s, l, prev)
		}
		prev = l
	}
}
