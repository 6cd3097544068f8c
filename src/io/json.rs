//! The small, strict JSON subset a safetensors header uses: one object whose values are objects,
//! strings, non-negative integers or arrays of non-negative integers. Every read is bounds-checked and
//! every malformed input is an error, never a panic; nesting is limited, so no input can exhaust the stack.

use crate::error::{bail, Result};

/// A parsed JSON value of the subset.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    /// A non-negative integer (safetensors needs nothing else).
    Int(u64),
    Array(Vec<Value>),
    /// Members in file order (duplicate keys are rejected by the parser).
    Object(Vec<(String, Value)>),
}

const MAX_DEPTH: usize = 4;

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

/// Parses a whole document; trailing bytes other than whitespace are an error.
pub(crate) fn parse(text: &[u8]) -> Result<Value> {
    let mut p = Parser { s: text, pos: 0 };
    let v = p.value(0)?;
    p.skip_ws();
    if p.pos != p.s.len() {
        bail!(Format, "safetensors header: unexpected bytes after the JSON object at offset {}", p.pos);
    }
    Ok(v)
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Result<u8> {
        self.skip_ws();
        match self.s.get(self.pos) {
            Some(&c) => Ok(c),
            None => bail!(Format, "safetensors header: the JSON ends early"),
        }
    }

    fn expect(&mut self, c: u8) -> Result<()> {
        if self.peek()? != c {
            bail!(Format, "safetensors header: expected '{}' at offset {}", c as char, self.pos);
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            bail!(Format, "safetensors header: JSON nested too deeply");
        }
        match self.peek()? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => Ok(Value::Str(self.string()?)),
            b'0'..=b'9' => self.int(),
            c => bail!(Format, "safetensors header: unexpected '{}' at offset {}", c.escape_ascii(), self.pos),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value> {
        self.expect(b'{')?;
        let mut members: Vec<(String, Value)> = Vec::new();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            if self.peek()? != b'"' {
                bail!(Format, "safetensors header: expected a key at offset {}", self.pos);
            }
            let key = self.string()?;
            if members.iter().any(|(k, _)| *k == key) {
                bail!(Format, "safetensors header: the key {:?} appears twice", key);
            }
            self.expect(b':')?;
            let v = self.value(depth + 1)?;
            members.push((key, v));
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => bail!(Format, "safetensors header: expected ',' or '}}' at offset {}", self.pos),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => bail!(Format, "safetensors header: expected ',' or ']' at offset {}", self.pos),
            }
        }
    }

    fn int(&mut self) -> Result<Value> {
        let start = self.pos;
        let mut v: u64 = 0;
        while let Some(&c @ b'0'..=b'9') = self.s.get(self.pos) {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add((c - b'0') as u64))
                .ok_or_else(|| crate::error::err!(Format, "safetensors header: the integer at offset {} overflows", start))?;
            self.pos += 1;
        }
        if self.pos - start > 1 && self.s[start] == b'0' {
            bail!(Format, "safetensors header: an integer with a leading zero at offset {}", start);
        }
        if let Some(b'.' | b'e' | b'E' | b'-' | b'+') = self.s.get(self.pos) {
            bail!(Format, "safetensors header: only non-negative integers are expected (offset {})", start);
        }
        Ok(Value::Int(v))
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self.s.get(self.pos..self.pos + 4).ok_or_else(|| crate::error::err!(Format, "safetensors header: a \\u escape ends early"))?;
        let text = std::str::from_utf8(h).ok().filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()));
        let v = text
            .and_then(|t| u32::from_str_radix(t, 16).ok())
            .ok_or_else(|| crate::error::err!(Format, "safetensors header: a bad \\u escape at offset {}", self.pos))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String> {
        self.expect(b'"')?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.pos) else { bail!(Format, "safetensors header: a string is not terminated") };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else { bail!(Format, "safetensors header: an escape ends early") };
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.pos..self.pos + 2) != Some(b"\\u") {
                                    bail!(Format, "safetensors header: an unpaired surrogate escape");
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    bail!(Format, "safetensors header: an unpaired surrogate escape");
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code).ok_or_else(|| crate::error::err!(Format, "safetensors header: an invalid \\u escape"))?
                        }
                        _ => bail!(Format, "safetensors header: an unknown escape '\\{}'", e.escape_ascii()),
                    };
                    let mut b = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                }
                0..=0x1f => bail!(Format, "safetensors header: a control character inside a string"),
                _ => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|_| crate::error::err!(Format, "safetensors header: a string is not valid UTF-8"))
    }
}

/// Appends `s` as a JSON string literal.
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_header_subset_and_round_trips_strings() {
        let v = parse(br#" {"a\"b\u00e9\ud83d\ude00": {"shape": [2, 0], "s": "x"}} "#).unwrap();
        let Value::Object(m) = v else { panic!() };
        assert_eq!(m[0].0, "a\"b\u{e9}\u{1F600}");
        let mut s = String::new();
        write_string(&mut s, &m[0].0);
        assert_eq!(parse(s.as_bytes()).unwrap(), Value::Str(m[0].0.clone()));
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"{", b"{\"a\":}", b"{\"a\":1,}", b"[1 2]", b"{\"a\":-1}", b"{\"a\":1.5}", b"\"\\ud800\"",
            b"{\"a\":1}x", b"{\"a\":1,\"a\":2}", b"99999999999999999999999", b"[[[[[[[[1]]]]]]]]", b"\"\\u12\"", b"{\"a\":01}"] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
