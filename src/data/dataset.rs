//! A table of float32 feature rows with one int64 class label each.

use crate::error::{bail, Result};
use crate::graph::{Graph, Tensor};

/// Feature rows (row-major, `dim` values each) with a class label per row.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: Vec<f32>,
    labels: Vec<i64>,
    dim: usize,
}

impl Dataset {
    /// A data set from row-major features (`labels.len()` rows of `dim` values).
    pub fn new(features: Vec<f32>, labels: Vec<i64>, dim: usize) -> Result<Dataset> {
        if labels.len().checked_mul(dim) != Some(features.len()) {
            bail!(InvalidArgument, "{} feature values do not make {} rows of {}", features.len(), labels.len(), dim);
        }
        Ok(Dataset { features, labels, dim })
    }

    /// The number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// All features, row-major.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// All labels.
    pub fn labels(&self) -> &[i64] {
        &self.labels
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// The number of classes: the largest label + 1 (0 when empty).
    pub fn num_classes(&self) -> usize {
        self.labels.iter().map(|&l| l.max(0) as usize + 1).max().unwrap_or(0)
    }

    /// The rows listed in `rows` (in that order).
    pub fn subset(&self, rows: &[usize]) -> Result<Dataset> {
        let mut f = Vec::with_capacity(rows.len() * self.dim);
        let mut l = Vec::with_capacity(rows.len());
        for &r in rows {
            if r >= self.len() {
                bail!(InvalidArgument, "row {} is out of range for a data set of {} rows", r, self.len());
            }
            f.extend_from_slice(self.row(r));
            l.push(self.labels[r]);
        }
        Dataset::new(f, l, self.dim)
    }

    /// Splits into (the rows not listed, the rows listed), each in the original order: a fixed
    /// train/test split given by the test rows.
    pub fn split(&self, test_rows: &[usize]) -> Result<(Dataset, Dataset)> {
        let mut is_test = vec![false; self.len()];
        for &r in test_rows {
            match is_test.get_mut(r) {
                Some(t) if !*t => *t = true,
                Some(_) => bail!(InvalidArgument, "row {} is listed twice", r),
                None => bail!(InvalidArgument, "row {} is out of range for a data set of {} rows", r, self.len()),
            }
        }
        let train: Vec<usize> = (0..self.len()).filter(|&i| !is_test[i]).collect();
        let test: Vec<usize> = (0..self.len()).filter(|&i| is_test[i]).collect();
        Ok((self.subset(&train)?, self.subset(&test)?))
    }

    /// Per-column mean and (population) standard deviation, computed in f64.
    pub fn column_stats(&self) -> (Vec<f64>, Vec<f64>) {
        let (n, d) = (self.len(), self.dim);
        let mut mean = vec![0.0f64; d];
        for i in 0..n {
            for (m, &x) in mean.iter_mut().zip(self.row(i)) {
                *m += x as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut var = vec![0.0f64; d];
        for i in 0..n {
            for ((v, &x), &m) in var.iter_mut().zip(self.row(i)).zip(&mean) {
                *v += (x as f64 - m) * (x as f64 - m);
            }
        }
        let std = var.into_iter().map(|v| (v / n.max(1) as f64).sqrt()).collect();
        (mean, std)
    }

    /// Standardises every column as (x − mean) / std (in f64, rounded to f32); a column whose std is 0
    /// is only centred. Use the training set's statistics for every split.
    pub fn standardize(&mut self, mean: &[f64], std: &[f64]) -> Result<()> {
        if mean.len() != self.dim || std.len() != self.dim {
            bail!(InvalidArgument, "standardize needs {} means and stds, got {} and {}", self.dim, mean.len(), std.len());
        }
        let d = self.dim.max(1);
        for (i, x) in self.features.iter_mut().enumerate() {
            let c = i % d;
            let s = if std[c] == 0.0 { 1.0 } else { std[c] };
            *x = ((*x as f64 - mean[c]) / s) as f32;
        }
        Ok(())
    }

    /// The whole set as graph tensors: features `[N, dim]` float32 and labels `[N]` int64.
    pub fn to_tensors(&self, g: &mut Graph) -> Result<(Tensor, Tensor)> {
        let x = g.from_slice(&self.features, &[self.len(), self.dim])?;
        let y = g.from_i64(&self.labels, &[self.len()])?;
        Ok((x, y))
    }
}
