package bp_test

import (
	"errors"
	"fmt"

	bp "github.com/backprop/bp/bindings/go"
)

// The gradient of y = x² at x = 3.
func Example() {
	g, err := bp.NewGraph()
	if err != nil {
		panic(err)
	}
	defer g.Close()
	x := bp.Must(g.FromFloat64([]float64{3}))
	if err := x.SetRequiresGrad(true); err != nil {
		panic(err)
	}
	y := bp.Must(x.Mul(x))
	if err := y.Backward(); err != nil {
		panic(err)
	}
	dx := bp.Must(bp.Must(x.Grad()).Item())
	fmt.Println("dy/dx =", dx)
	// Output: dy/dx = 6
}

// Errors carry the C status code; compare them with errors.Is, never by message.
func ExampleError() {
	g, _ := bp.NewGraph()
	defer g.Close()
	a := bp.Must(g.Zeros(bp.Float32, 2, 3))
	_, err := a.MatMul(a)
	fmt.Println(errors.Is(err, bp.ErrShapeMismatch))
	var e *bp.Error
	if errors.As(err, &e) {
		fmt.Println(e.Code)
	}
	// Output:
	// true
	// BP_ERR_SHAPE_MISMATCH
}

// Updates under NoGrad record nothing, as torch.no_grad().
func ExampleGraph_NoGrad() {
	g, _ := bp.NewGraph()
	defer g.Close()
	w := bp.Must(g.FromFloat32([]float32{1, 2}, 2))
	_ = w.SetRequiresGrad(true)
	loss := bp.Must(bp.Must(w.Mul(w)).Sum())
	_ = loss.Backward()
	err := g.NoGrad(func() error {
		step, err := bp.Must(w.Grad()).MulScalar(0.25)
		if err != nil {
			return err
		}
		updated, err := w.Sub(step)
		if err != nil {
			return err
		}
		return w.Assign(updated)
	})
	fmt.Println(bp.Must(w.Float32s()), err)
	// Output: [0.5 1] <nil>
}
