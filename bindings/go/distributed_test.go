package bp

import (
	"errors"
	"testing"
)

// mirror is a fake world of two ranks in which the other rank holds exactly what this one holds: the
// sum over the ranks is twice the buffer, and rank 0's parameters are all 0.25.
type mirror struct {
	allReduces, broadcasts int
	fail                   bool
}

func (m *mirror) Rank() int      { return 1 }
func (m *mirror) WorldSize() int { return 2 }
func (m *mirror) AllReduceSum(buf []float32) error {
	m.allReduces++
	if m.fail {
		return errors.New("the peer is gone")
	}
	for i := range buf {
		buf[i] *= 2
	}
	return nil
}
func (m *mirror) Broadcast(buf []float32) error {
	m.broadcasts++
	for i := range buf {
		buf[i] = 0.25
	}
	return nil
}

func dpLoss(t *testing.T, g *Graph, m *Model) Tensor {
	x := Must(g.FromFloat32([]float32{0.5, -1, 0.25, 1, 0, -0.5}, 2, 3))
	y := Must(g.FromInt64([]int64{1, 0}, 2))
	return Must(Must(m.Forward(x)).CrossEntropy(y))
}

func TestDataParallelAveragesTheMirroredGradientToThePlainOne(t *testing.T) {
	g, ref := Must(NewGraph()), Must(NewGraph())
	defer g.Close()
	defer ref.Close()
	m, rm := Must(NewModel()), Must(NewModel())
	defer m.Close()
	defer rm.Close()
	ok(t, m.AddLinear(g, "", 3, 2, true))
	ok(t, rm.AddLinear(ref, "", 3, 2, true))
	for _, p := range Must(rm.Parameters()) {
		n := Must(p.NumEl())
		w := make([]float32, n)
		for i := range w {
			w[i] = 0.25
		}
		ok(t, p.WriteFloat32(w))
	}
	c := &mirror{}
	dp, err := NewDataParallel(g, Must(m.Parameters()), c)
	ok(t, err)
	defer dp.Close()
	if c.broadcasts != 1 {
		t.Fatalf("%d broadcasts at startup, want 1", c.broadcasts)
	}
	for _, v := range Must(dp.Parameters()) {
		if v != 0.25 {
			t.Fatalf("parameter %v after the startup broadcast, want 0.25", v)
		}
	}
	ok(t, dp.Backward(dpLoss(t, g, m)))
	ok(t, dpLoss(t, ref, rm).Backward())
	var want []float32
	for _, p := range Must(rm.Parameters()) {
		want = append(want, Must(Must(p.Grad()).Float32s())...)
	}
	got := Must(dp.Gradients())
	if len(got) != len(want) {
		t.Fatalf("%d gradients, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("gradient %d: %v, want %v", i, got[i], want[i])
		}
	}
	ok(t, dp.SyncParameters())
	st := Must(dp.Stats())
	if st.AllReduces != 1 || st.AllReduceBytes != 8*4 || c.broadcasts != 2 {
		t.Errorf("stats %+v, broadcasts %d", st, c.broadcasts)
	}
	c.fail = true
	if err := dp.AverageGradients(); !errors.Is(err, ErrCollective) {
		t.Errorf("a failed all-reduce gave %v, want ErrCollective", err)
	}
	ok(t, dp.Close())
	ok(t, dp.Close())
	if err := dp.AverageGradients(); !errors.Is(err, ErrInvalidHandle) {
		t.Errorf("use after Close gave %v", err)
	}
}

func TestShardedLoadersSplitAnEpochBetweenRanks(t *testing.T) {
	g := Must(NewGraph())
	defer g.Close()
	x := make([]float32, 10)
	for i := range x {
		x[i] = float32(i)
	}
	data := Must(NewDataset(x, make([]int64, 10), 1))
	defer data.Close()
	seen := make([]int, 10)
	for rank := 0; rank < 2; rank++ {
		l := Must(NewLoader(10, 3, true, 4))
		ok(t, l.Shard(rank, 2))
		ok(t, l.StartEpoch())
		if e := Must(l.Epoch()); e != 1 {
			t.Errorf("epoch %d, want 1", e)
		}
		for {
			b, more, err := l.Next(g, data)
			ok(t, err)
			if !more {
				break
			}
			for _, r := range Must(b.X.Float32s()) {
				seen[int(r)]++
			}
			ok(t, g.Reset())
		}
		ok(t, l.Close())
	}
	for i, n := range seen {
		if n != 1 {
			t.Errorf("row %d seen %d times over the ranks, want 1", i, n)
		}
	}
	l := Must(NewLoader(10, 3, true, 4))
	defer l.Close()
	if err := l.Shard(2, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("rank 2 of 2 gave %v", err)
	}
}
