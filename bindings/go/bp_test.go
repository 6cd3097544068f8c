package bp

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// newGraph makes a graph closed when the test ends.
func newGraph(t testing.TB) *Graph {
	t.Helper()
	g, err := NewGraph()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Error(err)
		}
	})
	return g
}

// must fails the test on an error.
func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// ok fails the test on an error.
func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// near fails unless |got[i] - want[i]| <= tol for every i.
func near[E float32 | float64](t testing.TB, what string, got []E, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if math.Abs(float64(got[i])-want[i]) > tol {
			t.Fatalf("%s: element %d is %v, want %v (all: %v)", what, i, got[i], want[i], got)
		}
	}
}

// values reads a float64 tensor.
func values(t testing.TB, x Tensor) []float64 {
	t.Helper()
	return must[[]float64](t)(x.Float64s())
}

func TestCloseIsSafeTwiceAndStalesTensors(t *testing.T) {
	g, err := NewGraph()
	ok(t, err)
	x := must[Tensor](t)(g.Full(Float32, 1, 2))
	ok(t, g.Close())
	ok(t, g.Close())
	_, err = x.Item()
	if !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("a tensor of a closed graph: got %v, want StatusInvalidHandle", err)
	}
	if _, err := g.Zeros(Float32, 1); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("a closed graph: got %v, want StatusInvalidHandle", err)
	}
}

func TestFinalizerFreesAGraphThatWasNeverClosed(t *testing.T) {
	before := liveGraphs.Load()
	func() {
		for i := 0; i < 8; i++ {
			g, err := NewGraph()
			ok(t, err)
			_, err = g.Rand(Float32, 0, 1, 64, 64)
			ok(t, err)
		}
	}()
	// Finalizers run on their own goroutine after a collection; no timing assumption, just retries.
	for i := 0; i < 100 && liveGraphs.Load() > before; i++ {
		runtime.GC()
		runtime.Gosched()
	}
	if n := liveGraphs.Load(); n > before {
		t.Fatalf("%d unclosed graphs are still alive after 100 collections", n-before)
	}
}

func TestATensorKeepsItsGraphAlive(t *testing.T) {
	var x Tensor
	func() {
		g, err := NewGraph()
		ok(t, err)
		x = must[Tensor](t)(g.Full(Float64, 4, 3))
	}()
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	near(t, "x", values(t, x), []float64{4, 4, 4}, 0)
	ok(t, x.Graph().Close())
}

func TestErrorsCarryTheirCodeAndMatchByCode(t *testing.T) {
	g := newGraph(t)
	a := must[Tensor](t)(g.Zeros(Float32, 2, 3))
	b := must[Tensor](t)(g.Zeros(Float32, 4, 5))
	_, err := a.MatMul(b)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *Error", err, err)
	}
	if e.Code != StatusShapeMismatch || e.Message == "" {
		t.Fatalf("got code %v message %q", e.Code, e.Message)
	}
	if !strings.HasPrefix(err.Error(), "BP_ERR_SHAPE_MISMATCH: ") {
		t.Fatalf("Error() = %q", err.Error())
	}
	if !errors.Is(err, ErrShapeMismatch) || errors.Is(err, ErrDType) {
		t.Fatal("errors.Is must compare codes")
	}
	if !errors.Is(err, &Error{Code: StatusShapeMismatch, Message: "any other text"}) {
		t.Fatal("errors.Is must ignore the message")
	}
}

func TestStatusNumbersAndNamesArePinned(t *testing.T) {
	names := []string{"BP_OK", "BP_ERR_INVALID_ARGUMENT", "BP_ERR_SHAPE_MISMATCH", "BP_ERR_INVALID_HANDLE",
		"BP_ERR_OUT_OF_MEMORY", "BP_ERR_AUTOGRAD", "BP_ERR_DTYPE", "BP_ERR_IO", "BP_ERR_FORMAT", "BP_ERR_ANOMALY",
		"BP_ERR_INTERNAL", "BP_ERR_UNSUPPORTED", "BP_ERR_COLLECTIVE"}
	codes := []Status{StatusOK, StatusInvalidArgument, StatusShapeMismatch, StatusInvalidHandle, StatusOutOfMemory,
		StatusAutograd, StatusDType, StatusIO, StatusFormat, StatusAnomaly, StatusInternal, StatusUnsupported,
		StatusCollective}
	sentinels := []*Error{nil, ErrInvalidArgument, ErrShapeMismatch, ErrInvalidHandle, ErrOutOfMemory, ErrAutograd,
		ErrDType, ErrIO, ErrFormat, ErrAnomaly, ErrInternal, ErrUnsupported, ErrCollective}
	for i, c := range codes {
		if int(c) != i || c.String() != names[i] {
			t.Errorf("status %d: %d %q, want %d %q", i, int(c), c.String(), i, names[i])
		}
		if i > 0 && sentinels[i].Code != c {
			t.Errorf("sentinel %d has code %v", i, sentinels[i].Code)
		}
	}
	if Status(99).String() != "BP_ERR_UNKNOWN" {
		t.Error(Status(99).String())
	}
	if (&Error{Code: StatusIO}).Error() != "BP_ERR_IO" {
		t.Error((&Error{Code: StatusIO}).Error())
	}
}

// One row per error path the engine ABI has: the call and the code it must return.
func TestEveryErrorPathReturnsItsCode(t *testing.T) {
	cases := []struct {
		name string
		want *Error
		call func(g *Graph) error
	}{
		{"wrong buffer length", ErrInvalidArgument, func(g *Graph) error {
			_, err := g.FromFloat32([]float32{1, 2}, 3)
			return err
		}},
		{"wrong buffer length on write", ErrInvalidArgument, func(g *Graph) error {
			return Must(g.Zeros(Float32, 3)).WriteFloat32([]float32{1})
		}},
		{"bad dtype number", ErrInvalidArgument, func(g *Graph) error {
			_, err := g.Zeros(DType(42), 2)
			return err
		}},
		{"null tensor", ErrInvalidArgument, func(g *Graph) error {
			_, err := Tensor{}.Relu()
			return err
		}},
		{"no broadcast", ErrShapeMismatch, func(g *Graph) error {
			_, err := Must(g.Zeros(Float32, 3)).Add(Must(g.Zeros(Float32, 4)))
			return err
		}},
		{"stale handle after reset", ErrInvalidHandle, func(g *Graph) error {
			x := Must(g.Zeros(Float32, 3))
			if err := g.Reset(); err != nil {
				return err
			}
			_, err := x.NumEl()
			return err
		}},
		{"tensor of another graph", ErrInvalidHandle, func(g *Graph) error {
			other := Must(NewGraph())
			defer other.Close()
			_, err := Must(g.Zeros(Float32, 3)).Add(Must(other.Zeros(Float32, 3)))
			return err
		}},
		{"freed tensor", ErrInvalidHandle, func(g *Graph) error {
			x := Must(g.Zeros(Float32, 3))
			if err := x.Free(); err != nil {
				return err
			}
			return x.Free()
		}},
		{"memory limit", ErrOutOfMemory, func(g *Graph) error {
			if err := g.SetMemoryLimit(256); err != nil {
				return err
			}
			_, err := g.Zeros(Float32, 1000)
			return err
		}},
		{"backward twice", ErrAutograd, func(g *Graph) error {
			x := Must(g.Full(Float64, 2, 1))
			if err := x.SetRequiresGrad(true); err != nil {
				return err
			}
			loss := Must(Must(x.Mul(x)).Sum())
			if err := loss.Backward(); err != nil {
				return err
			}
			return loss.Backward()
		}},
		{"requires_grad on a non-leaf", ErrAutograd, func(g *Graph) error {
			x := Must(g.Full(Float64, 2, 1))
			if err := x.SetRequiresGrad(true); err != nil {
				return err
			}
			return Must(x.Exp()).SetRequiresGrad(false)
		}},
		{"float read of int64", ErrDType, func(g *Graph) error {
			_, err := Must(g.Zeros(Int64, 2)).Float32s()
			return err
		}},
		{"requires_grad on int64", ErrDType, func(g *Graph) error {
			return Must(g.Zeros(Int64, 2)).SetRequiresGrad(true)
		}},
		{"NaN under anomaly detection", ErrAnomaly, func(g *Graph) error {
			if err := g.SetAnomalyDetection(true); err != nil {
				return err
			}
			_, err := Must(g.Full(Float32, -1, 1)).Log()
			return err
		}},
		{"malformed generator state", ErrFormat, func(g *Graph) error {
			return g.SetGeneratorState([]uint32{1, 2, 3})
		}},
		{"panic inside the library", ErrInternal, func(*Graph) error { return DebugTriggerPanic() }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newGraph(t)
			err := c.call(g)
			var e *Error
			if !errors.As(err, &e) || e.Code != c.want.Code {
				t.Fatalf("got %v, want %v", err, c.want.Code)
			}
			if !errors.Is(err, c.want) || e.Message == "" {
				t.Fatalf("errors.Is(%v, %v) failed or the message is empty", err, c.want.Code)
			}
			// The graph stays usable after any error.
			if _, err := g.SetGradEnabled(true); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// The library's message is per OS thread; the binding pins the goroutine while it reads it, so each
// error carries the message of its own failure even with many goroutines failing at once. (The
// messages are compared with the same failure's message taken alone, not with a text.)
func TestErrorMessagesDoNotCrossGoroutines(t *testing.T) {
	failures := []func(g *Graph) error{
		func(g *Graph) error { _, err := Must(g.Zeros(Int64, 2)).Float32s(); return err },
		func(g *Graph) error { _, err := Must(g.Zeros(Float32, 2)).Reshape(3); return err },
	}
	reference := make([]string, len(failures))
	for i, f := range failures {
		g := newGraph(t)
		reference[i] = f(g).Error()
	}
	if reference[0] == reference[1] {
		t.Fatal("the two failures must differ")
	}
	var wg sync.WaitGroup
	problems := make(chan string, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			g, err := NewGraph()
			if err != nil {
				problems <- err.Error()
				return
			}
			defer g.Close()
			for i := 0; i < 300; i++ {
				if err := failures[w%2](g); err == nil || err.Error() != reference[w%2] {
					problems <- fmt.Sprintf("goroutine %d got %v, want %s", w, err, reference[w%2])
					return
				}
				if err := g.Reset(); err != nil {
					problems <- err.Error()
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(problems)
	for p := range problems {
		t.Error(p)
	}
}

func TestGraphQueriesAndSettings(t *testing.T) {
	g := newGraph(t)
	limit := must[uint64](t)(g.MemoryLimit())
	if limit != NoLimit {
		t.Fatalf("default limit %d", limit)
	}
	x := must[Tensor](t)(g.Full(Float32, 2, 4))
	ok(t, x.SetRequiresGrad(true))
	_ = must[Tensor](t)(x.Exp())
	if n := must[int](t)(g.TensorCount()); n != 2 {
		t.Fatalf("tensor count %d", n)
	}
	if n := must[int](t)(g.NodeCount()); n != 1 {
		t.Fatalf("node count %d", n)
	}
	live, _, err := g.MemoryUsed()
	ok(t, err)
	if live < 2*4*4 {
		t.Fatalf("live bytes %d", live)
	}
	ok(t, g.SetMemoryLimit(1<<20))
	if l := must[uint64](t)(g.MemoryLimit()); l != 1<<20 {
		t.Fatalf("limit %d", l)
	}
	ok(t, g.SetMemoryLimit(NoLimit))
	if l := must[uint64](t)(g.MemoryLimit()); l != NoLimit {
		t.Fatalf("limit %d", l)
	}
	ok(t, g.Reset())
	_, pooled, err := g.MemoryUsed()
	ok(t, err)
	if pooled == 0 {
		t.Fatal("reset should pool the freed buffers")
	}
	if Version() != HeaderVersion || VersionString() == "" {
		t.Fatalf("library %d %q, header %d", Version(), VersionString(), HeaderVersion)
	}
	if Float32.String() != "float32" || Float64.String() != "float64" || Int64.String() != "int64" || DType(9).String() != "DType(9)" {
		t.Fatal("DType names")
	}
}

func TestFactoriesAndSlicesCopyBothWays(t *testing.T) {
	g := newGraph(t)
	src := []float32{1, 2, 3, 4, 5, 6}
	x := must[Tensor](t)(g.FromFloat32(src, 2, 3))
	src[0] = 100 // the tensor holds a copy
	got := must[[]float32](t)(x.Float32s())
	near(t, "x", got, []float64{1, 2, 3, 4, 5, 6}, 0)
	got[1] = 100 // and so does the slice read back
	near(t, "x again", must[[]float32](t)(x.Float32s()), []float64{1, 2, 3, 4, 5, 6}, 0)
	if s := must[[]int](t)(x.Shape()); len(s) != 2 || s[0] != 2 || s[1] != 3 {
		t.Fatalf("shape %v", s)
	}
	if n := must[int](t)(x.NDim()); n != 2 {
		t.Fatalf("ndim %d", n)
	}
	if d := must[DType](t)(x.DType()); d != Float32 {
		t.Fatalf("dtype %v", d)
	}
	v0 := must[uint32](t)(x.Version())
	ok(t, x.WriteFloat32([]float32{6, 5, 4, 3, 2, 1}))
	if must[uint32](t)(x.Version()) <= v0 {
		t.Fatal("a write must bump the version")
	}
	near(t, "written", must[[]float32](t)(x.Float32s()), []float64{6, 5, 4, 3, 2, 1}, 0)

	d := must[Tensor](t)(g.FromFloat64([]float64{0.5}, 1))
	ok(t, d.WriteFloat64([]float64{0.25}))
	if v := must[float64](t)(d.Item()); v != 0.25 {
		t.Fatalf("item %v", v)
	}
	i := must[Tensor](t)(g.FromInt64([]int64{3, -1}, 2))
	ok(t, i.WriteInt64([]int64{7, 8}))
	if v := must[[]int64](t)(i.Int64s()); v[0] != 7 || v[1] != 8 {
		t.Fatalf("int64s %v", v)
	}
	scalar := must[Tensor](t)(g.Full(Float64, 2.5))
	if v := must[float64](t)(scalar.Item()); v != 2.5 {
		t.Fatalf("scalar %v", v)
	}
	near(t, "zeros", values(t, must[Tensor](t)(g.Zeros(Float64, 2))), []float64{0, 0}, 0)
	near(t, "arange", values(t, must[Tensor](t)(g.Arange(Float64, 0, 2, 0.5))), []float64{0, 0.5, 1, 1.5}, 0)
	ok(t, g.ManualSeed(5))
	r1 := must[[]float32](t)(must[Tensor](t)(g.Rand(Float32, -1, 1, 10)).Float32s())
	n1 := values(t, must[Tensor](t)(g.Randn(Float64, 0, 1, 10)))
	k1 := must[[]int64](t)(must[Tensor](t)(g.Randint(0, 5, 10)).Int64s())
	ok(t, g.ManualSeed(5))
	r2 := must[[]float32](t)(must[Tensor](t)(g.Rand(Float32, -1, 1, 10)).Float32s())
	n2 := values(t, must[Tensor](t)(g.Randn(Float64, 0, 1, 10)))
	k2 := must[[]int64](t)(must[Tensor](t)(g.Randint(0, 5, 10)).Int64s())
	for j := range r1 {
		if r1[j] != r2[j] || n1[j] != n2[j] || k1[j] != k2[j] || r1[j] < -1 || r1[j] >= 1 || k1[j] < 0 || k1[j] >= 5 {
			t.Fatalf("manual seed does not replay at %d", j)
		}
	}
	y := must[Tensor](t)(g.Zeros(Float32, 2, 3))
	ok(t, y.Assign(x))
	near(t, "assigned", must[[]float32](t)(y.Float32s()), []float64{6, 5, 4, 3, 2, 1}, 0)
}

func TestARestoredGeneratorStateReplaysTheDraws(t *testing.T) {
	g := newGraph(t)
	ok(t, g.ManualSeed(11))
	state := must[[]uint32](t)(g.GeneratorState())
	if len(state) != GeneratorStateWords {
		t.Fatalf("%d words", len(state))
	}
	first := values(t, must[Tensor](t)(g.Randn(Float64, 0, 1, 100)))
	ok(t, g.ManualSeed(99))
	ok(t, g.SetGeneratorState(state))
	again := values(t, must[Tensor](t)(g.Randn(Float64, 0, 1, 100)))
	near(t, "replayed", again, first, 0)
	bad := append([]uint32(nil), state...)
	bad[2] = 100000 // a position past the end of the state
	if err := g.SetGeneratorState(bad); !errors.Is(err, ErrFormat) {
		t.Fatalf("malformed state: %v", err)
	}
}

func TestPersistentTensorsSurviveReset(t *testing.T) {
	g := newGraph(t)
	keep := must[Tensor](t)(g.Full(Float32, 1, 2))
	ok(t, keep.SetPersistent(true))
	drop := must[Tensor](t)(keep.MulScalar(2))
	if !must[bool](t)(keep.IsPersistent()) || must[bool](t)(drop.IsPersistent()) {
		t.Fatal("persistence flags")
	}
	ok(t, g.Reset())
	if _, err := drop.Item(); !errors.Is(err, ErrInvalidHandle) {
		t.Fatalf("dropped tensor: %v", err)
	}
	near(t, "kept", must[[]float32](t)(keep.Float32s()), []float64{1, 1}, 0)
}

func TestDotDescribesTheHistory(t *testing.T) {
	g := newGraph(t)
	x := must[Tensor](t)(g.Full(Float32, 1, 2))
	ok(t, x.SetRequiresGrad(true))
	dot := must[string](t)(must[Tensor](t)(must[Tensor](t)(x.Relu()).Sum()).Dot())
	if !strings.HasPrefix(dot, "digraph") || !strings.Contains(dot, "relu") || strings.ContainsRune(dot, 0) {
		t.Fatalf("dot: %q", dot)
	}
}

func TestMustPanicsWithTheError(t *testing.T) {
	defer func() {
		r := recover()
		if err, isErr := r.(error); !isErr || !errors.Is(err, ErrShapeMismatch) {
			t.Fatalf("recovered %v", r)
		}
	}()
	g := newGraph(t)
	Must(Must(g.Zeros(Float32, 2)).Reshape(3))
}
