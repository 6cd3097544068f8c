//! The safetensors file format, read and written here without dependencies: an 8-byte little-endian
//! header length N, N bytes of JSON (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]},
//! "__metadata__": {"key": "value"}}`), then the tensor bytes. Reading validates the whole file
//! (header bounds, dtypes, shapes against byte counts, offsets that tile the data exactly, as the
//! reference implementation demands) before anything is returned. Writing is atomic: a temporary file in
//! the same directory, fsync, rename, then fsync of the directory.

use super::json::{self, Value};
use crate::error::{bail, err, Result};
use std::io::Write;
use std::path::Path;

/// The largest header accepted, as the reference implementation (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// An element type of the safetensors format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StDtype {
    /// bool, one byte.
    Bool,
    /// uint8
    U8,
    /// int8
    I8,
    /// int16
    I16,
    /// uint16
    U16,
    /// float16
    F16,
    /// bfloat16
    BF16,
    /// int32
    I32,
    /// uint32
    U32,
    /// float32
    F32,
    /// float64
    F64,
    /// int64
    I64,
    /// uint64
    U64,
}

const DTYPES: [(StDtype, &str, usize); 13] = [
    (StDtype::Bool, "BOOL", 1),
    (StDtype::U8, "U8", 1),
    (StDtype::I8, "I8", 1),
    (StDtype::I16, "I16", 2),
    (StDtype::U16, "U16", 2),
    (StDtype::F16, "F16", 2),
    (StDtype::BF16, "BF16", 2),
    (StDtype::I32, "I32", 4),
    (StDtype::U32, "U32", 4),
    (StDtype::F32, "F32", 4),
    (StDtype::F64, "F64", 8),
    (StDtype::I64, "I64", 8),
    (StDtype::U64, "U64", 8),
];

impl StDtype {
    /// The name used in the header (`"F32"`).
    pub fn name(self) -> &'static str {
        DTYPES.iter().find(|d| d.0 == self).map(|d| d.1).unwrap_or("?")
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        DTYPES.iter().find(|d| d.0 == self).map(|d| d.2).unwrap_or(1)
    }
    fn parse(s: &str) -> Option<StDtype> {
        DTYPES.iter().find(|d| d.1 == s).map(|d| d.0)
    }
}

/// One tensor of a safetensors file: its type, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct StTensor {
    /// The element type.
    pub dtype: StDtype,
    /// The dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    /// The elements, little-endian, row-major; exactly `numel · dtype.size()` bytes.
    pub data: Vec<u8>,
}

macro_rules! typed {
    ($from:ident, $to:ident, $t:ty, $dt:ident) => {
        /// A tensor holding a copy of `values` with the given shape (the caller keeps the lengths consistent).
        pub fn $from(shape: &[usize], values: &[$t]) -> StTensor {
            let mut data = Vec::with_capacity(values.len() * std::mem::size_of::<$t>());
            for v in values {
                data.extend_from_slice(&v.to_le_bytes());
            }
            StTensor { dtype: StDtype::$dt, shape: shape.to_vec(), data }
        }
        /// The elements, when the tensor has this element type.
        pub fn $to(&self) -> Result<Vec<$t>> {
            if self.dtype != StDtype::$dt {
                bail!(Format, "expected a {} tensor, found {}", StDtype::$dt.name(), self.dtype.name());
            }
            const S: usize = std::mem::size_of::<$t>();
            Ok(self.data.chunks_exact(S).map(|c| <$t>::from_le_bytes(c.try_into().expect("chunks of S bytes"))).collect())
        }
    };
}

impl StTensor {
    typed!(from_f32, to_f32, f32, F32);
    typed!(from_f64, to_f64, f64, F64);
    typed!(from_i64, to_i64, i64, I64);
    typed!(from_u32, to_u32, u32, U32);

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The contents of a safetensors file: named tensors in order, and string metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SafeTensors {
    /// The tensors, in the order their data is laid out.
    pub tensors: Vec<(String, StTensor)>,
    /// The `__metadata__` entries.
    pub metadata: Vec<(String, String)>,
}

impl SafeTensors {
    /// An empty set.
    pub fn new() -> SafeTensors {
        SafeTensors::default()
    }

    /// Adds a tensor; a name already present, or one reserved by the format, is an error.
    pub fn insert(&mut self, name: &str, t: StTensor) -> Result<()> {
        if name == "__metadata__" {
            bail!(InvalidArgument, "\"__metadata__\" is reserved by the safetensors format");
        }
        if self.get(name).is_some() {
            bail!(InvalidArgument, "the tensor name {:?} is used twice", name);
        }
        if t.numel().checked_mul(t.dtype.size()) != Some(t.data.len()) {
            bail!(InvalidArgument, "tensor {:?}: {} bytes for shape {:?} of {}", name, t.data.len(), t.shape, t.dtype.name());
        }
        self.tensors.push((name.to_string(), t));
        Ok(())
    }

    /// Sets a metadata entry (replacing an earlier value for the key).
    pub fn set_metadata(&mut self, key: &str, value: &str) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = value.to_string(),
            None => self.metadata.push((key.to_string(), value.to_string())),
        }
    }

    /// The tensor called `name`.
    pub fn get(&self, name: &str) -> Option<&StTensor> {
        self.tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// The metadata value for `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The file's bytes. The header is padded with spaces to a multiple of 8 bytes so that the data is
    /// aligned, as the reference writer does.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut h = String::from("{");
        if !self.metadata.is_empty() {
            h.push_str("\"__metadata__\":{");
            for (i, (k, v)) in self.metadata.iter().enumerate() {
                if i > 0 {
                    h.push(',');
                }
                json::write_string(&mut h, k);
                h.push(':');
                json::write_string(&mut h, v);
            }
            h.push('}');
        }
        let mut offset = 0usize;
        for (i, (name, t)) in self.tensors.iter().enumerate() {
            if i > 0 || !self.metadata.is_empty() {
                h.push(',');
            }
            json::write_string(&mut h, name);
            let shape: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
            h.push_str(&format!(
                ":{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                t.dtype.name(),
                shape.join(","),
                offset,
                offset + t.data.len()
            ));
            offset += t.data.len();
        }
        h.push('}');
        while h.len() % 8 != 0 {
            h.push(' ');
        }
        let mut out = Vec::with_capacity(8 + h.len() + offset);
        out.extend_from_slice(&(h.len() as u64).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        for (_, t) in &self.tensors {
            out.extend_from_slice(&t.data);
        }
        out
    }

    /// Parses and validates a whole file held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<SafeTensors> {
        let Some(len) = bytes.get(..8) else {
            bail!(Format, "not a safetensors file: {} bytes, shorter than the 8-byte header length", bytes.len());
        };
        let n = u64::from_le_bytes(len.try_into().expect("8 bytes"));
        if n > MAX_HEADER {
            bail!(Format, "not a safetensors file: a header of {} bytes is larger than the {} allowed", n, MAX_HEADER);
        }
        let n = n as usize;
        let Some(header) = bytes.get(8..8 + n) else {
            bail!(Format, "truncated safetensors file: the header needs {} bytes, only {} follow", n, bytes.len() - 8);
        };
        let data = &bytes[8 + n..];
        let Value::Object(members) = json::parse(header)? else {
            bail!(Format, "safetensors header: the top level is not an object");
        };
        let mut out = SafeTensors::new();
        let mut spans: Vec<(usize, usize, usize)> = Vec::new(); // (begin, end, tensor index)
        for (name, v) in members {
            if name == "__metadata__" {
                let Value::Object(m) = v else { bail!(Format, "safetensors header: __metadata__ is not an object") };
                for (k, v) in m {
                    let Value::Str(s) = v else { bail!(Format, "safetensors header: metadata value {:?} is not a string", k) };
                    out.metadata.push((k, s));
                }
                continue;
            }
            let t = parse_entry(&name, v)?;
            spans.push((t.0, t.1, out.tensors.len()));
            out.tensors.push((name, StTensor { dtype: t.2, shape: t.3, data: Vec::new() }));
        }
        // The offsets must tile the data area exactly: no gap, no overlap, nothing left over.
        spans.sort_unstable();
        let mut at = 0usize;
        for &(b, e, i) in &spans {
            if b != at {
                bail!(Format, "safetensors header: tensor {:?} starts at byte {}, expected {} (gap or overlap)", out.tensors[i].0, b, at);
            }
            at = e;
        }
        if at != data.len() {
            if at > data.len() {
                bail!(Format, "truncated safetensors file: the tensors need {} data bytes, the file holds {}", at, data.len());
            }
            bail!(Format, "safetensors file: {} bytes after the last tensor", data.len() - at);
        }
        for &(b, e, i) in &spans {
            out.tensors[i].1.data = data[b..e].to_vec();
        }
        Ok(out)
    }

    /// Reads and validates a file.
    pub fn read(path: &Path) -> Result<SafeTensors> {
        let bytes = std::fs::read(path).map_err(|e| err!(Io, "cannot read {}: {}", path.display(), e))?;
        SafeTensors::from_bytes(&bytes).map_err(|e| err!(Format, "{}: {}", path.display(), e.message()))
    }

    /// Writes the file atomically: readers see the old file or the new one, never a partial one.
    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
    }
}

/// (begin, end, dtype, shape) of one header entry, checked for consistency.
fn parse_entry(name: &str, v: Value) -> Result<(usize, usize, StDtype, Vec<usize>)> {
    let Value::Object(fields) = v else { bail!(Format, "safetensors header: the entry for {:?} is not an object", name) };
    let (mut dtype, mut shape, mut offsets) = (None, None, None);
    for (k, v) in fields {
        match (k.as_str(), v) {
            ("dtype", Value::Str(s)) => {
                dtype = Some(StDtype::parse(&s).ok_or_else(|| err!(Format, "tensor {:?}: unknown dtype {:?}", name, s))?)
            }
            ("shape", Value::Array(a)) => shape = Some(ints(name, "shape", a)?),
            ("data_offsets", Value::Array(a)) => offsets = Some(ints(name, "data_offsets", a)?),
            (k, _) => bail!(Format, "tensor {:?}: unexpected or mistyped field {:?}", name, k),
        }
    }
    let (Some(dtype), Some(shape), Some(offsets)) = (dtype, shape, offsets) else {
        bail!(Format, "tensor {:?}: the entry needs dtype, shape and data_offsets", name);
    };
    let [b, e] = offsets[..] else { bail!(Format, "tensor {:?}: data_offsets must hold two numbers", name) };
    let bytes = shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| err!(Format, "tensor {:?}: shape {:?} overflows", name, shape))?;
    if e < b || e - b != bytes {
        bail!(Format, "tensor {:?}: data_offsets [{}, {}] do not hold shape {:?} of {} ({} bytes)", name, b, e, shape, dtype.name(), bytes);
    }
    Ok((b, e, dtype, shape))
}

fn ints(name: &str, field: &str, a: Vec<Value>) -> Result<Vec<usize>> {
    a.into_iter()
        .map(|v| match v {
            Value::Int(i) if i <= usize::MAX as u64 => Ok(i as usize),
            _ => bail!(Format, "tensor {:?}: {} must hold non-negative integers", name, field),
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same directory, fsynced and renamed over
/// the target; the directory is fsynced after so that the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| err!(InvalidArgument, "{} names no file", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Persist the rename; some file systems refuse to open a directory, which is not an error here.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err!(Io, "cannot write {}: {}", path.display(), e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_data_is_aligned() {
        let mut s = SafeTensors::new();
        s.insert("a", StTensor::from_f32(&[2, 2], &[1.0, 2.0, 3.0, 4.0])).unwrap();
        s.insert("b", StTensor::from_i64(&[], &[7])).unwrap();
        s.set_metadata("k", "v\"q");
        let bytes = s.to_bytes();
        assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()) % 8, 0);
        assert_eq!(SafeTensors::from_bytes(&bytes).unwrap(), s);
    }

    #[test]
    fn every_truncation_is_a_format_error() {
        let mut s = SafeTensors::new();
        s.insert("w", StTensor::from_f32(&[3], &[1.0, 2.0, 3.0])).unwrap();
        let bytes = s.to_bytes();
        for n in 0..bytes.len() {
            let e = SafeTensors::from_bytes(&bytes[..n]).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Format, "{}", n);
        }
    }

    #[test]
    fn offsets_that_leave_gaps_or_overlap_are_rejected() {
        let head = br#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}"#;
        let mut f = (head.len() as u64).to_le_bytes().to_vec();
        f.extend_from_slice(head);
        f.extend_from_slice(&[0; 8]);
        assert!(SafeTensors::from_bytes(&f).is_err());
    }
}
