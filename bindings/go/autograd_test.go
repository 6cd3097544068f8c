package bp

import (
	"errors"
	"testing"
)

// leaf makes a float64 leaf requiring grad.
func leaf(t testing.TB, g *Graph, data ...float64) Tensor {
	t.Helper()
	x := must[Tensor](t)(g.FromFloat64(data, len(data)))
	ok(t, x.SetRequiresGrad(true))
	return x
}

func TestBackwardFillsLeafGradsAndAccumulates(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	if gx := must[Tensor](t)(x.Grad()); !gx.IsNull() {
		t.Fatal("no gradient before backward")
	}
	loss := must[Tensor](t)(must[Tensor](t)(x.Mul(x)).Sum())
	if !must[bool](t)(loss.RequiresGrad()) || must[bool](t)(loss.IsLeaf()) || must[string](t)(loss.GradFn()) != "sum" {
		t.Fatal("loss flags")
	}
	if must[string](t)(x.GradFn()) != "" || !must[bool](t)(x.IsLeaf()) {
		t.Fatal("leaf flags")
	}
	ok(t, loss.BackwardWith(BackwardOptions{RetainGraph: true}))
	near(t, "grad", values(t, must[Tensor](t)(x.Grad())), []float64{2, 4, 6}, 0)
	ok(t, loss.Backward())
	near(t, "accumulated", values(t, must[Tensor](t)(x.Grad())), []float64{4, 8, 12}, 0)
	ok(t, x.ZeroGrad())
	if gx := must[Tensor](t)(x.Grad()); !gx.IsNull() {
		t.Fatal("ZeroGrad must drop the gradient")
	}
}

func TestRetainGraphRule(t *testing.T) {
	cases := []struct {
		name    string
		retain  bool
		wantErr error
	}{
		{"backward twice without retain_graph fails", false, ErrAutograd},
		{"backward twice with retain_graph works", true, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			x := leaf(t, g, 1, 2)
			loss := must[Tensor](t)(must[Tensor](t)(x.Exp()).Sum())
			ok(t, loss.BackwardWith(BackwardOptions{RetainGraph: c.retain}))
			if err := loss.Backward(); !errors.Is(err, c.wantErr) && !(err == nil && c.wantErr == nil) {
				t.Fatalf("second backward: %v, want %v", err, c.wantErr)
			}
		})
	}
}

func TestBackwardFromANonScalarNeedsASeed(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	y := must[Tensor](t)(x.MulScalar(3))
	if err := y.BackwardWith(BackwardOptions{RetainGraph: true}); !errors.Is(err, ErrAutograd) {
		t.Fatalf("unseeded: %v", err)
	}
	ok(t, y.BackwardWith(BackwardOptions{Gradient: must[Tensor](t)(g.FromFloat64([]float64{1, 0, 2}, 3))}))
	near(t, "grad", values(t, must[Tensor](t)(x.Grad())), []float64{3, 0, 6}, 0)
}

func TestCreateGraphGivesDifferentiableGradients(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	loss := must[Tensor](t)(must[Tensor](t)(x.Pow(3)).Sum())
	ok(t, loss.BackwardWith(BackwardOptions{CreateGraph: true}))
	g1 := must[Tensor](t)(x.Grad())
	near(t, "3x^2", values(t, g1), []float64{3, 12, 27}, 1e-12)
	if !must[bool](t)(g1.RequiresGrad()) {
		t.Fatal("with create_graph the gradient requires grad")
	}
	second := must[[]Tensor](t)(g.Grad([]Tensor{must[Tensor](t)(g1.Sum())}, []Tensor{x}, GradOptions{}))
	near(t, "6x", values(t, second[0]), []float64{6, 12, 18}, 1e-12)
}

func TestFunctionalGradLeavesDotGradAlone(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	y := must[Tensor](t)(must[Tensor](t)(x.Pow(3)).Sum())
	d1 := must[[]Tensor](t)(g.Grad([]Tensor{y}, []Tensor{x}, GradOptions{CreateGraph: true}))
	near(t, "dy/dx", values(t, d1[0]), []float64{3, 12, 27}, 1e-12)
	if gx := must[Tensor](t)(x.Grad()); !gx.IsNull() {
		t.Fatal("the functional gradient must not touch .grad")
	}
	d2 := must[[]Tensor](t)(g.Grad([]Tensor{must[Tensor](t)(d1[0].Sum())}, []Tensor{x}, GradOptions{}))
	near(t, "d2y/dx2", values(t, d2[0]), []float64{6, 12, 18}, 1e-12)
	z := must[Tensor](t)(x.MulScalar(2))
	seeded := must[[]Tensor](t)(g.Grad([]Tensor{z, must[Tensor](t)(x.Sum())}, []Tensor{x},
		GradOptions{GradOutputs: []Tensor{must[Tensor](t)(g.FromFloat64([]float64{1, 10, 100}, 3)), {}}}))
	near(t, "seeded", values(t, seeded[0]), []float64{3, 21, 201}, 0)
}

func TestFunctionalGradErrors(t *testing.T) {
	cases := []struct {
		name string
		want *Error
		call func(t *testing.T, g *Graph, x Tensor) error
	}{
		{"input the outputs do not depend on", ErrAutograd, func(t *testing.T, g *Graph, x Tensor) error {
			_, err := g.Grad([]Tensor{must[Tensor](t)(x.Sum())}, []Tensor{leaf(t, g, 1)}, GradOptions{})
			return err
		}},
		{"no outputs", ErrInvalidArgument, func(t *testing.T, g *Graph, x Tensor) error {
			_, err := g.Grad(nil, []Tensor{x}, GradOptions{})
			return err
		}},
		{"no seed for a non-scalar output", ErrAutograd, func(t *testing.T, g *Graph, x Tensor) error {
			_, err := g.Grad([]Tensor{must[Tensor](t)(x.MulScalar(2))}, []Tensor{x}, GradOptions{})
			return err
		}},
		{"twice without retain_graph", ErrAutograd, func(t *testing.T, g *Graph, x Tensor) error {
			y := must[Tensor](t)(must[Tensor](t)(x.Exp()).Sum())
			if _, err := g.Grad([]Tensor{y}, []Tensor{x}, GradOptions{}); err != nil {
				return err
			}
			_, err := g.Grad([]Tensor{y}, []Tensor{x}, GradOptions{})
			return err
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			if err := c.call(t, g, leaf(t, g, 1, 2)); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want.Code)
			}
		})
	}
}

func TestNoGradRecordsNothingAndRestoresTheMode(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	ok(t, must[Tensor](t)(must[Tensor](t)(x.Mul(x)).Sum()).Backward())
	nodes := must[int](t)(g.NodeCount())
	err := g.NoGrad(func() error {
		if on := must[bool](t)(g.GradEnabled()); on {
			t.Error("recording inside NoGrad")
		}
		step := must[Tensor](t)(must[Tensor](t)(x.Grad()).MulScalar(0.5))
		if must[bool](t)(step.RequiresGrad()) {
			t.Error("a result under NoGrad requires grad")
		}
		return x.Assign(must[Tensor](t)(x.Sub(step)))
	})
	ok(t, err)
	if !must[bool](t)(g.GradEnabled()) {
		t.Fatal("NoGrad must restore recording")
	}
	if must[int](t)(g.NodeCount()) != nodes {
		t.Fatal("NoGrad recorded ops")
	}
	near(t, "updated", values(t, x), []float64{0, 0, 0}, 0)

	// f's error comes back, and the mode is restored after a panic too.
	sentinel := errors.New("stop")
	if err := g.NoGrad(func() error { return sentinel }); err != sentinel {
		t.Fatalf("NoGrad returned %v", err)
	}
	func() {
		defer func() { _ = recover() }()
		_ = g.NoGrad(func() error { panic("inside") })
	}()
	if !must[bool](t)(g.GradEnabled()) {
		t.Fatal("NoGrad must restore recording after a panic")
	}
	prev := must[bool](t)(g.SetGradEnabled(false))
	if !prev || must[bool](t)(g.SetGradEnabled(true)) {
		t.Fatal("SetGradEnabled must return the previous mode")
	}
}

func TestRetainGradKeepsANonLeafGradient(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2, 3)
	h := must[Tensor](t)(x.MulScalar(2))
	k := must[Tensor](t)(x.MulScalar(3))
	ok(t, h.RetainGrad())
	ok(t, must[Tensor](t)(must[Tensor](t)(h.Mul(k)).Sum()).Backward())
	near(t, "h.grad", values(t, must[Tensor](t)(h.Grad())), []float64{3, 6, 9}, 0)
	if _, err := k.Grad(); !errors.Is(err, ErrAutograd) {
		t.Fatalf("non-leaf without retain_grad: %v", err)
	}
	if err := must[Tensor](t)(g.Full(Float64, 1, 1)).RetainGrad(); !errors.Is(err, ErrAutograd) {
		t.Fatalf("retain_grad without requires_grad: %v", err)
	}
}

func TestModifyingASavedTensorMakesBackwardFail(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2)
	loss := must[Tensor](t)(must[Tensor](t)(x.Mul(x)).Sum())
	ok(t, g.NoGrad(func() error { return x.Assign(must[Tensor](t)(x.AddScalar(1))) }))
	if err := loss.Backward(); !errors.Is(err, ErrAutograd) {
		t.Fatalf("backward through a modified tensor: %v", err)
	}
}

func TestDetachCutsTheHistory(t *testing.T) {
	g := newGraph(t)
	x := leaf(t, g, 1, 2)
	d := must[Tensor](t)(must[Tensor](t)(x.MulScalar(2)).Detach())
	if must[bool](t)(d.RequiresGrad()) || !must[bool](t)(d.IsLeaf()) {
		t.Fatal("a detached tensor is a leaf without grad")
	}
	ok(t, x.SetRequiresGrad(false))
	if must[bool](t)(must[Tensor](t)(x.MulScalar(2)).RequiresGrad()) {
		t.Fatal("requires_grad off must flow to results")
	}
}
