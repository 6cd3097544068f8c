// Command digits is the main job in Go: an MLP trained on the UCI optical-digits data set
// (workload D), the same recipe as examples/digits.rs and examples/c/digits.c:
// 64 -> 128 ReLU -> 10, Adam lr 1e-3, batch 32 reshuffled every epoch (last partial batch kept),
// 30 epochs, inputs standardised with the training set's statistics, the 360 rows listed in
// digits_test_rows.txt held out as the test set. Prints one line per epoch, the training time, and
// saves a checkpoint. Exits with 1 when the test accuracy is below 97% (checked for the full 30
// epochs only; a shorter run checks the mechanics).
//
// Usage: digits [DATA_DIR [CHECKPOINT_PATH [EPOCHS]]]
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bp "github.com/backprop/bp/bindings/go"
)

const (
	fullEpochs = 30
	batchSize  = 32
	hidden     = 128
	classes    = 10
)

// loadSplit reads the data set, holds out the listed test rows and standardises both parts with the
// training set's statistics.
func loadSplit(dir string) (train, test *bp.Dataset, err error) {
	text, err := os.ReadFile(filepath.Join(dir, "digits_test_rows.txt"))
	if err != nil {
		return nil, nil, err
	}
	var rows []int
	for _, field := range strings.Fields(string(text)) {
		r, err := strconv.Atoi(field)
		if err != nil {
			return nil, nil, fmt.Errorf("digits_test_rows.txt: %w", err)
		}
		rows = append(rows, r)
	}
	all, err := bp.LoadCSV(filepath.Join(dir, "digits.csv"), -1, false)
	if err != nil {
		return nil, nil, err
	}
	defer all.Close()
	if train, test, err = all.Split(rows); err != nil {
		return nil, nil, err
	}
	mean, std, err := train.ColumnStats()
	if err == nil {
		err = train.Standardize(mean, std)
	}
	if err == nil {
		err = test.Standardize(mean, std)
	}
	return train, test, err
}

// evaluate is the accuracy on a whole data set (inference: nothing recorded; tensors freed at once).
func evaluate(g *bp.Graph, model *bp.Model, data *bp.Dataset) (float64, error) {
	all, err := data.ToTensors(g)
	if err != nil {
		return 0, err
	}
	logits, err := model.Predict(all.X)
	if err != nil {
		return 0, err
	}
	acc, err := logits.Accuracy(all.Y)
	for _, t := range []bp.Tensor{all.X, all.Y, logits} {
		if ferr := t.Free(); err == nil {
			err = ferr
		}
	}
	return acc, err
}

func run(dir, checkpoint string, epochs int) error {
	train, test, err := loadSplit(dir)
	if err != nil {
		return err
	}
	defer train.Close()
	defer test.Close()
	rows, dim, err := train.Size()
	if err != nil {
		return err
	}
	testRows, _, err := test.Size()
	if err != nil {
		return err
	}
	fmt.Printf("digits: %d training rows, %d test rows, %d features\n", rows, testRows, dim)

	g, err := bp.NewGraph()
	if err != nil {
		return err
	}
	defer g.Close()
	if err := g.ManualSeed(0); err != nil {
		return err
	}
	model, err := bp.NewModel()
	if err != nil {
		return err
	}
	defer model.Close()
	if err := model.AddLinear(g, "", dim, hidden, true); err != nil {
		return err
	}
	if err := model.AddLayer("", bp.LayerReLU, 0); err != nil {
		return err
	}
	if err := model.AddLinear(g, "", hidden, classes, true); err != nil {
		return err
	}
	opt, err := bp.NewAdam(g, model, 1e-3, bp.DefaultAdamOptions())
	if err != nil {
		return err
	}
	defer opt.Close()
	loader, err := bp.NewLoader(rows, batchSize, true, 0)
	if err != nil {
		return err
	}
	defer loader.Close()

	var trainTime time.Duration
	testAcc := 0.0
	for epoch := 1; epoch <= epochs; epoch++ {
		if err := model.SetTraining(true); err != nil {
			return err
		}
		start := time.Now()
		lossSum, seen := 0.0, 0
		if err := loader.StartEpoch(); err != nil {
			return err
		}
		for {
			batch, more, err := loader.Next(g, train)
			if err != nil {
				return err
			}
			if !more {
				break
			}
			if err := opt.ZeroGrad(); err != nil {
				return err
			}
			logits, err := model.Forward(batch.X)
			if err != nil {
				return err
			}
			loss, err := logits.CrossEntropy(batch.Y)
			if err != nil {
				return err
			}
			if err := loss.Backward(); err != nil {
				return err
			}
			if err := opt.Step(); err != nil {
				return err
			}
			value, err := loss.Item()
			if err != nil {
				return err
			}
			n, err := batch.Y.NumEl()
			if err != nil {
				return err
			}
			lossSum += value * float64(n)
			seen += n
			if err := g.Reset(); err != nil {
				return err
			}
		}
		dt := time.Since(start)
		trainTime += dt
		if err := model.SetTraining(false); err != nil {
			return err
		}
		trainAcc, err := evaluate(g, model, train)
		if err != nil {
			return err
		}
		if testAcc, err = evaluate(g, model, test); err != nil {
			return err
		}
		fmt.Printf("epoch %2d  loss %.4f  train acc %6.2f%%  test acc %6.2f%%  %8.0f samples/s\n",
			epoch, lossSum/float64(seen), 100*trainAcc, 100*testAcc, float64(seen)/dt.Seconds())
	}
	batches, err := loader.BatchesPerEpoch()
	if err != nil {
		return err
	}
	fmt.Printf("training time %.3f s (%d epochs, %d steps)\n", trainTime.Seconds(), epochs, epochs*batches)
	fmt.Printf("final test accuracy %.2f%%\n", 100*testAcc)
	if err := bp.SaveCheckpoint(checkpoint, g, model, bp.TrainingParts{Optimizer: opt, Loader: loader}); err != nil {
		return err
	}
	fmt.Printf("checkpoint saved to %s\n", checkpoint)
	if epochs == fullEpochs && testAcc < 0.97 {
		return fmt.Errorf("test accuracy %.2f%% is below 97%%", 100*testAcc)
	}
	return nil
}

func main() {
	dir, checkpoint, epochs := "data/digits", "digits_go.safetensors", fullEpochs
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if len(os.Args) > 2 {
		checkpoint = os.Args[2]
	}
	if len(os.Args) > 3 {
		n, err := strconv.Atoi(os.Args[3])
		if err != nil || n < 1 {
			fmt.Fprintln(os.Stderr, "EPOCHS must be a positive number")
			os.Exit(1)
		}
		epochs = n
	}
	if err := run(dir, checkpoint, epochs); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
