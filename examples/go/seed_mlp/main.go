// Command seed_mlp is the seed document's example in Go: a 20 -> 13 (ReLU) -> 8 (sigmoid) -> 3 network
// trained with cross-entropy on random data, exactly as the PyTorch original:
//
//	torch.manual_seed(212)
//	X = torch.rand((500, 20)) * 100
//	y = torch.randint(0, 3, (500,))
//	model = Sequential(Linear(20, 13, bias=False), ReLU(), Linear(13, 8, bias=False), Sigmoid(), Linear(8, 3))
//	loss = CrossEntropyLoss()(model(X), y); loss.backward(); print(model[0].weight.grad)
//
// followed by 100 plain SGD steps (lr 0.01) that print the loss every 10 steps. Exits with 1 when the
// loss did not fall. Run: cargo build --release && cd examples/go && go run ./seed_mlp
package main

import (
	"fmt"
	"math"
	"os"

	bp "github.com/backprop/bp/bindings/go"
)

// kaimingBound is PyTorch's default Linear weight init, kaiming_uniform_(a = √5): U(-bound, bound).
func kaimingBound(fanIn int) float64 {
	gain := math.Sqrt(2.0 / (1.0 + 5.0))
	return math.Sqrt(3.0) * gain / math.Sqrt(float64(fanIn))
}

// parameter is uniform on [-bound, bound), kept across Graph.Reset, and requires grad.
func parameter(g *bp.Graph, bound float64, shape ...int) (bp.Tensor, error) {
	p, err := g.Rand(bp.Float32, -bound, bound, shape...)
	if err == nil {
		err = p.SetPersistent(true)
	}
	if err == nil {
		err = p.SetRequiresGrad(true)
	}
	return p, err
}

type mlp struct{ w1, w2, w3, b3 bp.Tensor }

func (m *mlp) forward(x bp.Tensor) (bp.Tensor, error) {
	h, err := x.Linear(m.w1, bp.Tensor{})
	if err == nil {
		h, err = h.Relu()
	}
	if err == nil {
		h, err = h.Linear(m.w2, bp.Tensor{})
	}
	if err == nil {
		h, err = h.Sigmoid()
	}
	if err == nil {
		h, err = h.Linear(m.w3, m.b3)
	}
	return h, err
}

func (m *mlp) parameters() []bp.Tensor { return []bp.Tensor{m.w1, m.w2, m.w3, m.b3} }

// loss is the forward pass and the cross-entropy against y.
func (m *mlp) loss(x, y bp.Tensor) (bp.Tensor, error) {
	logits, err := m.forward(x)
	if err != nil {
		return bp.Tensor{}, err
	}
	return logits.CrossEntropy(y)
}

func run() error {
	fmt.Printf("backprop %s\n", bp.VersionString())
	g, err := bp.NewGraph()
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.ManualSeed(212); err != nil {
		return err
	}
	x := bp.Must(bp.Must(g.Rand(bp.Float32, 0, 1, 500, 20)).MulScalar(100))
	y := bp.Must(g.Randint(0, 3, 500))
	for _, t := range []bp.Tensor{x, y} {
		if err := t.SetPersistent(true); err != nil {
			return err
		}
	}
	var m mlp
	for _, p := range []struct {
		dst   *bp.Tensor
		bound float64
		shape []int
	}{
		{&m.w1, kaimingBound(20), []int{13, 20}},
		{&m.w2, kaimingBound(13), []int{8, 13}},
		{&m.w3, kaimingBound(8), []int{3, 8}},
		{&m.b3, 1 / math.Sqrt(8), []int{3}},
	} {
		if *p.dst, err = parameter(g, p.bound, p.shape...); err != nil {
			return err
		}
	}

	// The seed example: one forward and backward, then the first layer's weight gradient.
	loss, err := m.loss(x, y)
	if err != nil {
		return err
	}
	first, err := loss.Item()
	if err != nil {
		return err
	}
	if err := loss.Backward(); err != nil {
		return err
	}
	gradW1, err := bp.Must(m.w1.Grad()).Float32s()
	if err != nil {
		return err
	}
	fmt.Printf("loss %.7f\nW1.grad [13, 20]:\n", first)
	for r := 0; r < 13; r++ {
		for c := 0; c < 20; c++ {
			fmt.Printf("  %11.4e", gradW1[r*20+c])
		}
		fmt.Println()
	}

	// 100 SGD steps: p <- p - lr * p.grad under no-grad, written back in place.
	const lr = 0.01
	value := first
	for step := 0; step < 100; step++ {
		for _, p := range m.parameters() {
			if err := p.ZeroGrad(); err != nil {
				return err
			}
		}
		if err := g.Reset(); err != nil { // drops the last step's intermediates; parameters and data stay
			return err
		}
		if loss, err = m.loss(x, y); err != nil {
			return err
		}
		if value, err = loss.Item(); err != nil {
			return err
		}
		if step%10 == 0 {
			fmt.Printf("step %3d  loss %.7f\n", step, value)
		}
		if err := loss.Backward(); err != nil {
			return err
		}
		err = g.NoGrad(func() error {
			for _, p := range m.parameters() {
				grad, err := p.Grad()
				if err != nil {
					return err
				}
				update, err := grad.MulScalar(lr)
				if err == nil {
					update, err = p.Sub(update)
				}
				if err == nil {
					err = p.Assign(update)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := g.Reset(); err != nil {
		return err
	}
	if loss, err = m.loss(x, y); err != nil {
		return err
	}
	if value, err = loss.Item(); err != nil {
		return err
	}
	fmt.Printf("after 100 steps  loss %.7f\n", value)
	if !(value < first) {
		return fmt.Errorf("the loss did not fall: %.7f -> %.7f", first, value)
	}
	fmt.Printf("the loss fell: %.7f -> %.7f\n", first, value)
	return g.Close()
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
