package bp

// #include <stdlib.h>
// #include "bp.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// closedError is the error for a use of a closed object.
func closedError(what string) error {
	return &Error{Code: StatusInvalidHandle, Message: "the " + what + " is closed"}
}

// Dataset is a data set in memory: rows of float32 features with an int64 class label. Close it
// when done (a finalizer frees it otherwise, as a safety net).
type Dataset struct {
	ptr *C.bp_dataset
}

func newDataset(ptr *C.bp_dataset) *Dataset {
	d := &Dataset{ptr: ptr}
	runtime.SetFinalizer(d, (*Dataset).Close)
	return d
}

// NewDataset copies features (row-major, len(labels) rows × dim) and labels.
func NewDataset(features []float32, labels []int64, dim int) (*Dataset, error) {
	var ptr *C.bp_dataset
	err := callC(func() C.bp_status {
		return C.bp_dataset_new((*C.float)(unsafe.Pointer(first(features))), C.size_t(len(features)),
			(*C.int64_t)(unsafe.Pointer(first(labels))), C.size_t(len(labels)), C.size_t(dim), &ptr)
	})
	if err != nil {
		return nil, err
	}
	return newDataset(ptr), nil
}

// LoadCSV reads a numeric CSV file; labelColumn may be negative (-1 is the last column). A malformed
// file fails with StatusFormat, an unreadable one with StatusIO.
func LoadCSV(path string, labelColumn int, hasHeader bool) (*Dataset, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var ptr *C.bp_dataset
	if err := callC(func() C.bp_status {
		return C.bp_dataset_load_csv(cpath, C.int64_t(labelColumn), C.bool(hasHeader), &ptr)
	}); err != nil {
		return nil, err
	}
	return newDataset(ptr), nil
}

// Close frees the data set; closing again does nothing.
func (d *Dataset) Close() error {
	if d.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(d, nil)
	ptr := d.ptr
	d.ptr = nil
	return callC(func() C.bp_status { return C.bp_dataset_free(ptr) })
}

// call runs a C call on the data set, keeping it alive until the call returns.
func (d *Dataset) call(f func(p *C.bp_dataset) C.bp_status) error {
	if d == nil || d.ptr == nil {
		return closedError("data set")
	}
	err := callC(func() C.bp_status { return f(d.ptr) })
	runtime.KeepAlive(d)
	return err
}

// Size is the number of rows and of features per row.
func (d *Dataset) Size() (rows, dim int, err error) {
	var r, c C.size_t
	err = d.call(func(p *C.bp_dataset) C.bp_status { return C.bp_dataset_size(p, &r, &c) })
	return int(r), int(c), err
}

// Split returns the rows not listed in testRows (train) and the rows listed (test), in order.
func (d *Dataset) Split(testRows []int) (train, test *Dataset, err error) {
	rows := make([]C.size_t, len(testRows))
	for i, r := range testRows {
		if r < 0 {
			return nil, nil, &Error{Code: StatusInvalidArgument, Message: "a negative row number"}
		}
		rows[i] = C.size_t(r)
	}
	var tr, te *C.bp_dataset
	if err := d.call(func(p *C.bp_dataset) C.bp_status {
		return C.bp_dataset_split(p, first(rows), C.size_t(len(rows)), &tr, &te)
	}); err != nil {
		return nil, nil, err
	}
	return newDataset(tr), newDataset(te), nil
}

// ColumnStats is each column's mean and population standard deviation.
func (d *Dataset) ColumnStats() (mean, std []float64, err error) {
	_, dim, err := d.Size()
	if err != nil {
		return nil, nil, err
	}
	mean, std = make([]float64, dim), make([]float64, dim)
	err = d.call(func(p *C.bp_dataset) C.bp_status {
		return C.bp_dataset_column_stats(p, (*C.double)(unsafe.Pointer(first(mean))), (*C.double)(unsafe.Pointer(first(std))), C.size_t(dim))
	})
	if err != nil {
		return nil, nil, err
	}
	return mean, std, nil
}

// Standardize replaces every column by (x − mean) / std in place (use the training set's statistics
// for every split).
func (d *Dataset) Standardize(mean, std []float64) error {
	if len(mean) != len(std) {
		return &Error{Code: StatusInvalidArgument, Message: "mean and std differ in length"}
	}
	return d.call(func(p *C.bp_dataset) C.bp_status {
		return C.bp_dataset_standardize(p, (*C.double)(unsafe.Pointer(first(mean))), (*C.double)(unsafe.Pointer(first(std))), C.size_t(len(mean)))
	})
}

// Batch is features [rows, dim] (float32) and labels [rows] (int64) as tensors.
type Batch struct {
	X, Y Tensor
}

// ToTensors is the whole data set as step-scoped tensors of g.
func (d *Dataset) ToTensors(g *Graph) (Batch, error) {
	if d == nil || d.ptr == nil {
		return Batch{}, closedError("data set")
	}
	var x, y C.bp_tensor
	err := g.call(func(gp *C.bp_graph) C.bp_status { return C.bp_dataset_to_tensors(d.ptr, gp, &x, &y) })
	runtime.KeepAlive(d)
	if err != nil {
		return Batch{}, err
	}
	return Batch{X: Tensor{g: g, h: x}, Y: Tensor{g: g, h: y}}, nil
}

// Loader iterates over a data set's rows in mini-batches, reshuffled every epoch as torch.randperm.
// Close it when done.
type Loader struct {
	ptr *C.bp_loader
}

// NewLoader makes batches of batchSize over rows rows (the last partial batch is kept unless
// SetDropLast), reshuffling every epoch when shuffle, from a generator seeded with seed.
func NewLoader(rows, batchSize int, shuffle bool, seed uint64) (*Loader, error) {
	if rows < 0 || batchSize < 0 {
		return nil, &Error{Code: StatusInvalidArgument, Message: "a negative size"}
	}
	var ptr *C.bp_loader
	if err := callC(func() C.bp_status {
		return C.bp_loader_new(C.size_t(rows), C.size_t(batchSize), C.bool(shuffle), C.uint64_t(seed), &ptr)
	}); err != nil {
		return nil, err
	}
	l := &Loader{ptr: ptr}
	runtime.SetFinalizer(l, (*Loader).Close)
	return l, nil
}

// Close frees the loader; closing again does nothing.
func (l *Loader) Close() error {
	if l.ptr == nil {
		return nil
	}
	runtime.SetFinalizer(l, nil)
	ptr := l.ptr
	l.ptr = nil
	return callC(func() C.bp_status { return C.bp_loader_free(ptr) })
}

func (l *Loader) call(f func(p *C.bp_loader) C.bp_status) error {
	if l == nil || l.ptr == nil {
		return closedError("loader")
	}
	err := callC(func() C.bp_status { return f(l.ptr) })
	runtime.KeepAlive(l)
	return err
}

// SetDropLast drops (or keeps) the last batch of an epoch when it is short.
func (l *Loader) SetDropLast(dropLast bool) error {
	return l.call(func(p *C.bp_loader) C.bp_status { return C.bp_loader_set_drop_last(p, C.bool(dropLast)) })
}

// StartEpoch starts an epoch: a new order (when shuffling), from the first batch.
func (l *Loader) StartEpoch() error {
	return l.call(func(p *C.bp_loader) C.bp_status { return C.bp_loader_start_epoch(p) })
}

// Next is the epoch's next batch as step-scoped tensors of g; ok is false at the end of the epoch.
func (l *Loader) Next(g *Graph, d *Dataset) (b Batch, ok bool, err error) {
	if l == nil || l.ptr == nil {
		return Batch{}, false, closedError("loader")
	}
	if d == nil || d.ptr == nil {
		return Batch{}, false, closedError("data set")
	}
	var x, y C.bp_tensor
	var more C.bool
	err = g.call(func(gp *C.bp_graph) C.bp_status { return C.bp_loader_next_batch(l.ptr, gp, d.ptr, &x, &y, &more) })
	runtime.KeepAlive(l)
	runtime.KeepAlive(d)
	if err != nil || !bool(more) {
		return Batch{}, false, err
	}
	return Batch{X: Tensor{g: g, h: x}, Y: Tensor{g: g, h: y}}, true, nil
}

// BatchesPerEpoch is the number of batches in an epoch.
func (l *Loader) BatchesPerEpoch() (int, error) {
	var n C.size_t
	err := l.call(func(p *C.bp_loader) C.bp_status { return C.bp_loader_batches_per_epoch(p, &n) })
	return int(n), err
}

// Shard makes the loader hand out only rank's share of every epoch out of worldSize ranks, as
// PyTorch's DistributedSampler (docs/DISTRIBUTED.md). Every rank must use the same rows, batch size
// and seed.
func (l *Loader) Shard(rank, worldSize int) error {
	return l.call(func(p *C.bp_loader) C.bp_status { return C.bp_loader_shard(p, C.int32_t(rank), C.int32_t(worldSize)) })
}

// Epoch is the number of epochs started so far (restored by LoadCheckpoint).
func (l *Loader) Epoch() (uint64, error) {
	var n C.uint64_t
	err := l.call(func(p *C.bp_loader) C.bp_status { return C.bp_loader_epoch(p, &n) })
	return uint64(n), err
}
