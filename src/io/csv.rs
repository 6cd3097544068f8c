//! Numeric CSV files: each row holds feature values and one integer class label.

use crate::data::Dataset;
use crate::error::{bail, err, Result};
use std::path::Path;

/// How to read a CSV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// The label's column; negative counts from the end (-1, the default, is the last column).
    pub label_column: i64,
    /// Skip the first line.
    pub has_header: bool,
    /// The field separator (b',' by default).
    pub delimiter: u8,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { label_column: -1, has_header: false, delimiter: b',' }
    }
}

/// Reads a CSV file into a data set. Every row must have the same number of fields, every feature
/// must be a finite number and every label a non-negative integer; the first row that is not says
/// so, with its line and column.
pub fn load_csv(path: &Path, opt: CsvOptions) -> Result<Dataset> {
    let text = std::fs::read(path).map_err(|e| err!(Io, "cannot read {}: {}", path.display(), e))?;
    let text = std::str::from_utf8(&text).map_err(|e| err!(Format, "{}: not UTF-8 text ({})", path.display(), e))?;
    parse_csv(text, opt, &path.display().to_string())
}

/// Parses CSV text (`source` names it in error messages).
pub fn parse_csv(text: &str, opt: CsvOptions, source: &str) -> Result<Dataset> {
    let delim = opt.delimiter as char;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut width: Option<usize> = None;
    let mut label_at = 0usize;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if i == 0 && opt.has_header {
            continue;
        }
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(delim).collect();
        match width {
            None => {
                let n = fields.len();
                if n < 2 {
                    bail!(Format, "{} line {}: a row needs at least one feature and a label, found {} field", source, lineno, n);
                }
                let l = if opt.label_column < 0 { n as i64 + opt.label_column } else { opt.label_column };
                if l < 0 || l >= n as i64 {
                    bail!(Format, "{} line {}: label column {} does not exist in a row of {} fields", source, lineno, opt.label_column, n);
                }
                label_at = l as usize;
                width = Some(n);
            }
            Some(w) if w != fields.len() => {
                bail!(Format, "{} line {}: {} fields, expected {} like the first row", source, lineno, fields.len(), w);
            }
            Some(_) => {}
        }
        for (c, f) in fields.iter().enumerate() {
            let f = f.trim();
            if c == label_at {
                let v: i64 = f.parse().map_err(|_| {
                    err!(Format, "{} line {}, column {}: the label {:?} is not an integer", source, lineno, c + 1, f)
                })?;
                if v < 0 {
                    bail!(Format, "{} line {}, column {}: the label {} is negative", source, lineno, c + 1, v);
                }
                labels.push(v);
            } else {
                let v: f32 = f
                    .parse()
                    .ok()
                    .filter(|v: &f32| v.is_finite())
                    .ok_or_else(|| err!(Format, "{} line {}, column {}: {:?} is not a finite number", source, lineno, c + 1, f))?;
                features.push(v);
            }
        }
    }
    let Some(w) = width else { bail!(Format, "{}: no data rows", source) };
    Dataset::new(features, labels, w - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_features_and_the_label_column() {
        let d = parse_csv("1,2,0\n3.5,-4,2\n", CsvOptions::default(), "t").unwrap();
        assert_eq!((d.len(), d.dim()), (2, 2));
        assert_eq!(d.features(), &[1.0, 2.0, 3.5, -4.0]);
        assert_eq!(d.labels(), &[0, 2]);
        let d = parse_csv("y,a\n1,5\n", CsvOptions { label_column: 0, has_header: true, ..Default::default() }, "t").unwrap();
        assert_eq!((d.features(), d.labels()), (&[5.0f32][..], &[1i64][..]));
    }

    #[test]
    fn malformed_rows_are_reported_with_line_and_column() {
        let e = parse_csv("1,2,0\n1,2\n", CsvOptions::default(), "f.csv").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Format);
        assert!(e.message().contains("f.csv line 2: 2 fields, expected 3"), "{}", e);
        let e = parse_csv("1,x,0\n", CsvOptions::default(), "f.csv").unwrap_err();
        assert!(e.message().contains("line 1, column 2"), "{}", e);
        let e = parse_csv("1,2,0.5\n", CsvOptions::default(), "f.csv").unwrap_err();
        assert!(e.message().contains("not an integer"), "{}", e);
        let e = parse_csv("1,nan,0\n", CsvOptions::default(), "f.csv").unwrap_err();
        assert!(e.message().contains("not a finite number"), "{}", e);
        assert!(parse_csv("\n\n", CsvOptions::default(), "f.csv").is_err());
    }
}
