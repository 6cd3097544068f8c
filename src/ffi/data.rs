//! Data sets (`bp_dataset`: float32 feature rows with int64 labels, from memory or a CSV file) and
//! the seeded, shuffling mini-batch iterator (`bp_loader`).

use super::boundary::{boundary, error, slice_in, slice_out, Out};
use super::graph::{bp_graph, with_graph};
use super::object::{free_object, impl_object, new_object, str_in, with_object, Shell};
use super::bp_status;
use crate::data::{DataLoader, Dataset};
use crate::error::ErrorKind;
use crate::graph::Tensor;
use crate::io::{load_csv, CsvOptions};
use std::ffi::c_char;
use std::path::Path;

/// A data set held in memory: `len` rows of `dim` float32 features, each with an int64 class label.
/// Opaque: made by `bp_dataset_new`, `bp_dataset_load_csv` or `bp_dataset_split`, released by
/// `bp_dataset_free`.
pub struct bp_dataset(Shell<Dataset>);
impl_object!(bp_dataset, Dataset, 0x6270_5f64_6174_6173);

/// A mini-batch iterator over a data set's rows: each epoch's order is PyTorch's
/// `torch.randperm(n, generator=torch.Generator().manual_seed(seed))` sequence. Opaque: made by
/// `bp_loader_new`, released by `bp_loader_free`.
pub struct bp_loader(Shell<DataLoader>);
impl_object!(bp_loader, DataLoader, 0x6270_5f6c_6f61_6465);

/// Makes a data set from copies of `features[0..features_len]` (row-major, `rows` × `dim`) and
/// `labels[0..rows]`.
///
/// Ownership: the caller owns `*dataset_out` and releases it with `bp_dataset_free`; the buffers are
/// only read during the call.
#[no_mangle]
pub extern "C" fn bp_dataset_new(features: *const f32, features_len: usize, labels: *const i64, rows: usize, dim: usize, dataset_out: *mut *mut bp_dataset) -> bp_status {
    boundary(|| {
        let out = Out::new(dataset_out, "dataset_out")?;
        let (f, l) = (slice_in(features, features_len, "features")?, slice_in(labels, rows, "labels")?);
        let d = Dataset::new(f.to_vec(), l.to_vec(), dim)?;
        out.write(new_object::<bp_dataset>(d));
        Ok(())
    })
}

/// Reads a numeric CSV file (comma-separated, UTF-8): every column is a float32 feature except the
/// label column `label_column` (negative counts from the end: -1 is the last), which must hold
/// non-negative integers; `has_header` skips the first line. A ragged row, a field that is not a
/// finite number or a label that is not a non-negative integer fails with `BP_ERR_FORMAT`, the message
/// naming the file, line and column; a file that cannot be read fails with `BP_ERR_IO`.
///
/// Ownership: as `bp_dataset_new`; `path` is only read during the call.
#[no_mangle]
pub extern "C" fn bp_dataset_load_csv(path: *const c_char, label_column: i64, has_header: bool, dataset_out: *mut *mut bp_dataset) -> bp_status {
    boundary(|| {
        let out = Out::new(dataset_out, "dataset_out")?;
        let p = str_in(path, "path")?;
        let d = load_csv(Path::new(p), CsvOptions { label_column, has_header, delimiter: b',' })?;
        out.write(new_object::<bp_dataset>(d));
        Ok(())
    })
}

/// Frees a data set. NULL does nothing; freeing twice returns `BP_ERR_INVALID_HANDLE`.
///
/// Ownership: afterwards the pointer must not be used (a use is detected).
#[no_mangle]
pub extern "C" fn bp_dataset_free(dataset: *mut bp_dataset) -> bp_status {
    boundary(|| free_object(dataset))
}

/// Writes the number of rows to `*rows_out` and of features per row to `*dim_out` (either may be NULL).
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_dataset_size(dataset: *mut bp_dataset, rows_out: *mut usize, dim_out: *mut usize) -> bp_status {
    boundary(|| {
        let (r, d) = (Out::optional(rows_out, "rows_out")?, Out::optional(dim_out, "dim_out")?);
        let (rows, dim) = with_object(dataset, |ds| Ok((ds.len(), ds.dim())))?;
        if let Some(o) = r {
            o.write(rows);
        }
        if let Some(o) = d {
            o.write(dim);
        }
        Ok(())
    })
}

/// Splits a data set into two new ones: the rows not listed in `test_rows[0..n]` (train) and the rows
/// listed (test), each in the original order. A row listed twice or out of range is an error.
///
/// Ownership: the caller owns `*train_out` and `*test_out` (release each with `bp_dataset_free`); the
/// original is unchanged.
#[no_mangle]
pub extern "C" fn bp_dataset_split(dataset: *mut bp_dataset, test_rows: *const usize, n: usize, train_out: *mut *mut bp_dataset, test_out: *mut *mut bp_dataset) -> bp_status {
    boundary(|| {
        let (tr, te) = (Out::new(train_out, "train_out")?, Out::new(test_out, "test_out")?);
        let rows = slice_in(test_rows, n, "test_rows")?;
        let (a, b) = with_object(dataset, |ds| ds.split(rows))?;
        tr.write(new_object::<bp_dataset>(a));
        te.write(new_object::<bp_dataset>(b));
        Ok(())
    })
}

/// Writes each column's mean and population standard deviation (computed in double precision) to
/// `mean[0..dim]` and `std[0..dim]`; `dim` must equal the data set's.
///
/// Ownership: the caller owns both buffers.
#[no_mangle]
pub extern "C" fn bp_dataset_column_stats(dataset: *mut bp_dataset, mean: *mut f64, std: *mut f64, dim: usize) -> bp_status {
    boundary(|| {
        let (m, s) = with_object(dataset, |ds| {
            if ds.dim() != dim {
                return Err(error(ErrorKind::InvalidArgument, format!("dim is {}, the data set has {} features", dim, ds.dim())));
            }
            Ok(ds.column_stats())
        })?;
        let (mo, so) = (slice_out(mean, dim, "mean")?, slice_out(std, dim, "std")?);
        mo.copy_from_slice(&m);
        so.copy_from_slice(&s);
        Ok(())
    })
}

/// Standardises every column in place as (x − mean) / std; a column whose std is 0 is only centred.
/// Use the training set's statistics for every split.
///
/// Ownership: the buffers are only read during the call.
#[no_mangle]
pub extern "C" fn bp_dataset_standardize(dataset: *mut bp_dataset, mean: *const f64, std: *const f64, dim: usize) -> bp_status {
    boundary(|| {
        let (m, s) = (slice_in(mean, dim, "mean")?, slice_in(std, dim, "std")?);
        with_object(dataset, |ds| ds.standardize(m, s))
    })
}

/// The whole data set as graph tensors: features `[rows, dim]` float32 to `*x_out`, labels `[rows]`
/// int64 to `*y_out`.
///
/// Ownership: the graph owns both tensors (step-scoped unless made persistent).
#[no_mangle]
pub extern "C" fn bp_dataset_to_tensors(dataset: *mut bp_dataset, graph: *mut bp_graph, x_out: *mut Tensor, y_out: *mut Tensor) -> bp_status {
    boundary(|| {
        let (xo, yo) = (Out::new(x_out, "x_out")?, Out::new(y_out, "y_out")?);
        let (x, y) = with_graph(graph, |g| with_object(dataset, |ds| ds.to_tensors(g)))?;
        xo.write(x);
        yo.write(y);
        Ok(())
    })
}

/// Makes a loader over `rows` rows in batches of `batch_size`, reshuffling every epoch when `shuffle`
/// (with a generator seeded by `seed`); the last partial batch is kept (see `bp_loader_set_drop_last`).
///
/// Ownership: the caller owns `*loader_out` and releases it with `bp_loader_free`.
#[no_mangle]
pub extern "C" fn bp_loader_new(rows: usize, batch_size: usize, shuffle: bool, seed: u64, loader_out: *mut *mut bp_loader) -> bp_status {
    boundary(|| {
        let out = Out::new(loader_out, "loader_out")?;
        out.write(new_object::<bp_loader>(DataLoader::new(rows, batch_size, shuffle, seed)?));
        Ok(())
    })
}

/// Frees a loader. NULL does nothing; freeing twice returns `BP_ERR_INVALID_HANDLE`.
///
/// Ownership: afterwards the pointer must not be used (a use is detected).
#[no_mangle]
pub extern "C" fn bp_loader_free(loader: *mut bp_loader) -> bp_status {
    boundary(|| free_object(loader))
}

/// Drops (or keeps) the last batch of each epoch when it is smaller than the batch size.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_loader_set_drop_last(loader: *mut bp_loader, drop_last: bool) -> bp_status {
    boundary(|| with_object(loader, |l| {
        l.set_drop_last(drop_last);
        Ok(())
    }))
}

/// Starts an epoch: draws a new order (when shuffling) and rewinds.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_loader_start_epoch(loader: *mut bp_loader) -> bp_status {
    boundary(|| with_object(loader, |l| {
        l.start_epoch();
        Ok(())
    }))
}

/// The next batch of the current epoch: writes `true` to `*has_batch_out` and the batch's features
/// `[B, dim]` (float32) and labels `[B]` (int64) to `*x_out` and `*y_out`; at the end of the epoch
/// writes `false` and leaves `*x_out` and `*y_out` untouched. The data set must have as many rows as
/// the loader was made for.
///
/// Ownership: the graph owns the batch tensors (step-scoped: `bp_graph_reset` drops them).
#[no_mangle]
pub extern "C" fn bp_loader_next_batch(loader: *mut bp_loader, graph: *mut bp_graph, dataset: *mut bp_dataset, x_out: *mut Tensor, y_out: *mut Tensor, has_batch_out: *mut bool) -> bp_status {
    boundary(|| {
        let (xo, yo, ho) = (Out::new(x_out, "x_out")?, Out::new(y_out, "y_out")?, Out::new(has_batch_out, "has_batch_out")?);
        let batch = with_graph(graph, |g| with_object(loader, |l| with_object(dataset, |ds| l.next_batch(g, ds))))?;
        match batch {
            Some((x, y)) => {
                xo.write(x);
                yo.write(y);
                ho.write(true);
            }
            None => ho.write(false),
        }
        Ok(())
    })
}

/// Writes the number of batches per epoch to `*batches_out`.
///
/// Ownership: nothing to own.
#[no_mangle]
pub extern "C" fn bp_loader_batches_per_epoch(loader: *mut bp_loader, batches_out: *mut usize) -> bp_status {
    boundary(|| {
        let out = Out::new(batches_out, "batches_out")?;
        out.write(with_object(loader, |l| Ok(l.batches_per_epoch()))?);
        Ok(())
    })
}
