//! A reader for the flat JSON objects of a trace file, one per line.
//!
//! A trace line is an object whose values are all scalars: strings,
//! integers, booleans or `null` (the writer in [`super`] never nests). This
//! parser accepts exactly that and nothing more, with hard limits, so a
//! damaged or hostile file costs bounded memory and gives a typed error.

use std::fmt::Write;

/// Longest line accepted (bytes).
pub const MAX_LINE: usize = 4096;
/// Most keys in one object.
pub const MAX_KEYS: usize = 64;

/// A scalar value of a trace line.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    /// Integers only: the writer emits no fractions. Negative numbers are
    /// used for "infinite" (`ssthresh: -1`).
    Int(i64),
    Bool(bool),
    Null,
}

/// Why a line is not a flat JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("more than {MAX_KEYS} keys")]
    TooManyKeys,
    #[error("expected '{0}' at byte {1}")]
    Expected(char, usize),
    #[error("bad string escape at byte {0}")]
    BadEscape(usize),
    #[error("bad or unsupported value at byte {0} (only strings, integers, booleans, null)")]
    BadValue(usize),
    #[error("unexpected end of line")]
    Eof,
    #[error("trailing bytes after the object at byte {0}")]
    Trailing(usize),
}

/// One parsed object: its keys in order of appearance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object(pub Vec<(String, Value)>);

impl Object {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(JsonError::Expected(c as char, self.i)),
            None => Err(JsonError::Eof),
        }
    }
    fn string(&mut self) -> Result<String, JsonError> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let c = self.peek().ok_or(JsonError::Eof)?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek().ok_or(JsonError::Eof)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or(JsonError::Eof)?;
                            let s = std::str::from_utf8(hex)
                                .map_err(|_| JsonError::BadEscape(self.i))?;
                            let n = u32::from_str_radix(s, 16)
                                .map_err(|_| JsonError::BadEscape(self.i))?;
                            // Surrogates are not produced by the writer: replace them.
                            let ch = char::from_u32(n).unwrap_or('\u{fffd}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                            self.i += 4;
                        }
                        _ => return Err(JsonError::BadEscape(self.i - 1)),
                    }
                }
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
    fn value(&mut self) -> Result<Value, JsonError> {
        self.ws();
        let start = self.i;
        match self.peek().ok_or(JsonError::Eof)? {
            b'"' => Ok(Value::Str(self.string()?)),
            b't' if self.b[self.i..].starts_with(b"true") => {
                self.i += 4;
                Ok(Value::Bool(true))
            }
            b'f' if self.b[self.i..].starts_with(b"false") => {
                self.i += 5;
                Ok(Value::Bool(false))
            }
            b'n' if self.b[self.i..].starts_with(b"null") => {
                self.i += 4;
                Ok(Value::Null)
            }
            b'-' | b'0'..=b'9' => {
                self.i += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i])
                    .map_err(|_| JsonError::BadValue(start))?;
                s.parse::<i64>()
                    .map(Value::Int)
                    .map_err(|_| JsonError::BadValue(start))
            }
            _ => Err(JsonError::BadValue(start)),
        }
    }
}

/// Parse one line holding one flat object.
pub fn parse_line(line: &str) -> Result<Object, JsonError> {
    if line.len() > MAX_LINE {
        return Err(JsonError::TooLong);
    }
    let mut c = Cursor {
        b: line.as_bytes(),
        i: 0,
    };
    let mut obj = Object::default();
    c.eat(b'{')?;
    c.ws();
    if c.peek() == Some(b'}') {
        c.i += 1;
    } else {
        loop {
            if obj.0.len() >= MAX_KEYS {
                return Err(JsonError::TooManyKeys);
            }
            let k = c.string()?;
            c.eat(b':')?;
            let v = c.value()?;
            obj.0.push((k, v));
            c.ws();
            match c.peek() {
                Some(b',') => c.i += 1,
                Some(b'}') => {
                    c.i += 1;
                    break;
                }
                Some(_) => return Err(JsonError::Expected('}', c.i)),
                None => return Err(JsonError::Eof),
            }
        }
    }
    c.ws();
    if c.i != c.b.len() {
        return Err(JsonError::Trailing(c.i));
    }
    Ok(obj)
}

/// Append `s` as a JSON string literal (with quotes).
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_objects() {
        let o = parse_line(r#"{"a":1,"b":"x\"y\u0041","c":true,"d":null,"e":-1, "f" : false }"#)
            .unwrap();
        assert_eq!(o.int("a"), Some(1));
        assert_eq!(o.str("b"), Some("x\"yA"));
        assert_eq!(o.bool("c"), Some(true));
        assert_eq!(o.get("d"), Some(&Value::Null));
        assert_eq!(o.int("e"), Some(-1));
        assert_eq!(o.bool("f"), Some(false));
        assert_eq!(parse_line("{}").unwrap(), Object::default());
    }

    #[test]
    fn rejects_what_the_writer_never_writes() {
        assert_eq!(parse_line(r#"{"a":[1]}"#), Err(JsonError::BadValue(5)));
        assert_eq!(parse_line(r#"{"a":{"b":1}}"#), Err(JsonError::BadValue(5)));
        assert_eq!(parse_line(r#"{"a":1.5}"#), Err(JsonError::Expected('}', 6)));
        assert_eq!(parse_line(r#"{"a":1} x"#), Err(JsonError::Trailing(8)));
        assert_eq!(parse_line(r#"{"a":"\q"}"#), Err(JsonError::BadEscape(7)));
        assert_eq!(
            parse_line(&format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_LINE))),
            Err(JsonError::TooLong)
        );
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("\"k{i}\":1")).collect();
        assert_eq!(
            parse_line(&format!("{{{}}}", many.join(","))),
            Err(JsonError::TooManyKeys)
        );
    }

    #[test]
    fn every_prefix_is_an_error_not_a_panic() {
        let line = r#"{"t_us":12,"ev":"seg","s":"a\\b\u00e9","ok":true,"n":null}"#;
        assert!(parse_line(line).is_ok());
        for i in 0..line.len() {
            if line.is_char_boundary(i) {
                assert!(parse_line(&line[..i]).is_err(), "prefix {i} accepted");
            }
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        let mut s = String::from("{\"k\":");
        write_str(&mut s, "q\"\\\n\u{1}é");
        s.push('}');
        assert_eq!(parse_line(&s).unwrap().str("k"), Some("q\"\\\n\u{1}é"));
    }
}
