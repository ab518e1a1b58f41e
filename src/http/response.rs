//! Writing responses: status codes, the response head, and the body sources
//! that [`super::HttpConnection::poll_output`] streams from.

use std::io::Read;

/// A response status code with its reason phrase (RFC 9110 section 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u16);

impl Status {
    pub const CONTINUE: Status = Status(100);
    pub const SWITCHING_PROTOCOLS: Status = Status(101);
    pub const OK: Status = Status(200);
    pub const NO_CONTENT: Status = Status(204);
    pub const PARTIAL_CONTENT: Status = Status(206);
    pub const MOVED_PERMANENTLY: Status = Status(301);
    pub const NOT_MODIFIED: Status = Status(304);
    pub const BAD_REQUEST: Status = Status(400);
    pub const FORBIDDEN: Status = Status(403);
    pub const NOT_FOUND: Status = Status(404);
    pub const METHOD_NOT_ALLOWED: Status = Status(405);
    pub const REQUEST_TIMEOUT: Status = Status(408);
    pub const PRECONDITION_FAILED: Status = Status(412);
    pub const CONTENT_TOO_LARGE: Status = Status(413);
    pub const URI_TOO_LONG: Status = Status(414);
    pub const RANGE_NOT_SATISFIABLE: Status = Status(416);
    pub const EXPECTATION_FAILED: Status = Status(417);
    pub const UPGRADE_REQUIRED: Status = Status(426);
    pub const HEADER_FIELDS_TOO_LARGE: Status = Status(431);
    pub const INTERNAL_SERVER_ERROR: Status = Status(500);
    pub const NOT_IMPLEMENTED: Status = Status(501);
    pub const HTTP_VERSION_NOT_SUPPORTED: Status = Status(505);

    pub fn code(&self) -> u16 {
        self.0
    }

    pub fn reason(&self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            204 => "No Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            304 => "Not Modified",
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            426 => "Upgrade Required",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// RFC 9110 6.4.1: 1xx, 204 and 304 responses never have content.
    pub fn has_no_content(&self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }
}

/// Append a status line `HTTP/1.1 <code> <reason>` and CRLF. We always
/// answer with our highest version, HTTP/1.1, also to 1.0 clients
/// (RFC 9110 6.2); we only use features a 1.0 client understands
/// (Content-Length framing, never chunked responses).
pub fn write_status_line(out: &mut Vec<u8>, status: Status) {
    out.extend_from_slice(b"HTTP/1.1 ");
    write_u64(out, status.0 as u64);
    out.push(b' ');
    out.extend_from_slice(status.reason().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Append `n` in decimal (no allocation, no formatting machinery).
pub fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Append a header field whose value is a decimal number.
pub fn write_header_u64(out: &mut Vec<u8>, name: &str, value: u64) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    write_u64(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Append one header field line. Names and values come from this module,
/// never unchecked from the peer, so no CR/LF can sneak in; as a second
/// line of defence such bytes are replaced by spaces.
pub fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    if has_cr_or_lf(value.as_bytes()) {
        out.extend(
            value
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.extend_from_slice(value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// Whether `b` holds a CR or an LF. Eight bytes at a time ("SWAR": a
/// zero byte of `x ^ CR` marks a CR, found with the classic has-zero-byte
/// bit trick), because header values are short and a byte loop or a SIMD
/// search costs more per value than the value is long.
fn has_cr_or_lf(b: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(LO) & !x & HI != 0;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        if has_zero(x ^ (LO * b'\r' as u64)) || has_zero(x ^ (LO * b'\n' as u64)) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&c| c == b'\r' || c == b'\n')
}

/// A complete response in one buffer: status line, `Server: ustack`, the
/// given headers, `Content-Length` (unless the status forbids content) and
/// the body. For small answers such as errors; big bodies are streamed by
/// [`super::HttpConnection`] instead.
pub fn write_simple_response(status: Status, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + body.len());
    write_status_line(&mut out, status);
    write_header(&mut out, "Server", "ustack");
    for (n, v) in headers {
        write_header(&mut out, n, v);
    }
    if !status.has_no_content() {
        write_header(&mut out, "Content-Length", &body.len().to_string());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Where the bytes of a response body come from. Each variant produces its
/// bytes on demand into the caller's buffer; none holds a big body in memory
/// except `Owned`, which is used only for small generated answers.
#[derive(Debug, Default)]
pub enum Body {
    #[default]
    Empty,
    /// A slice of an embedded file, from `pos` to the end of the slice.
    Static { data: &'static [u8], pos: usize },
    /// A small body built in memory (errors, JSON, digests).
    Owned { data: Vec<u8>, pos: usize },
    /// `/bytes/n`: the generated stream from `offset` to `end` (exclusive).
    Generated { n: u64, offset: u64, end: u64 },
    /// A file, already positioned at the start of the range, `remaining`
    /// bytes still to send.
    File { file: std::fs::File, remaining: u64 },
}

/// Reading a body failed (only files can fail). The response is then cut
/// short and the connection must be closed, since the peer was promised
/// `Content-Length` bytes.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("file read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("file shrank while being sent")]
    Truncated,
}

impl Body {
    pub fn remaining(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Static { data, pos } => (data.len() - pos) as u64,
            Body::Owned { data, pos } => (data.len() - pos) as u64,
            Body::Generated { offset, end, .. } => end - offset,
            Body::File { remaining, .. } => *remaining,
        }
    }

    /// Copy up to `buf.len()` bytes of body into `buf`; returns how many.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, BodyError> {
        let n = (self.remaining().min(buf.len() as u64)) as usize;
        if n == 0 {
            return Ok(0);
        }
        match self {
            Body::Empty => Ok(0),
            Body::Static { data, pos } => {
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                Ok(n)
            }
            Body::Owned { data, pos } => {
                buf[..n].copy_from_slice(&data[*pos..*pos + n]);
                *pos += n;
                Ok(n)
            }
            Body::Generated {
                n: total, offset, ..
            } => {
                super::bytes::bytes_body(*total, *offset, &mut buf[..n]);
                *offset += n as u64;
                Ok(n)
            }
            Body::File { file, remaining } => {
                let got = file.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(BodyError::Truncated);
                }
                *remaining -= got as u64;
                Ok(got)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cr_and_lf_are_found_anywhere() {
        use super::has_cr_or_lf;
        assert!(!has_cr_or_lf(b""));
        assert!(!has_cr_or_lf(b"text/plain; charset=utf-8 and more than 16"));
        // Bytes next to CR and LF (0x0c, 0x0e, 0x09, 0x0b, 0x8d, 0x8a) are not.
        assert!(!has_cr_or_lf(&[
            0x0c, 0x0e, 0x09, 0x0b, 0x8d, 0x8a, 0x1d, 0x1a, 0xff, 0
        ]));
        for len in 1..40 {
            for pos in 0..len {
                for bad in [b'\r', b'\n'] {
                    let mut v = vec![b'a'; len];
                    v[pos] = bad;
                    assert!(has_cr_or_lf(&v), "len {len} pos {pos}");
                }
            }
        }
    }

    use super::*;

    #[test]
    fn decimal_numbers_and_status_lines() {
        for n in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        let mut out = Vec::new();
        write_status_line(&mut out, Status::NOT_FOUND);
        write_header_u64(&mut out, "Content-Length", 1234);
        write_header(&mut out, "X", "a\r\nb");
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 1234\r\nX: a  b\r\n"
        );
    }

    #[test]
    fn simple_response_bytes() {
        let r = write_simple_response(
            Status::NOT_FOUND,
            &[("Content-Type", "text/plain")],
            b"nope\n",
        );
        assert_eq!(
            r,
            b"HTTP/1.1 404 Not Found\r\nServer: ustack\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nnope\n"
        );
        let r = write_simple_response(Status::NOT_MODIFIED, &[("ETag", "\"x\"")], b"");
        assert_eq!(
            r,
            b"HTTP/1.1 304 Not Modified\r\nServer: ustack\r\nETag: \"x\"\r\n\r\n"
        );
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        let mut out = Vec::new();
        write_header(&mut out, "Location", "/a\r\nSet-Cookie: x");
        assert_eq!(out, b"Location: /a  Set-Cookie: x\r\n");
    }

    #[test]
    fn bodies_stream_in_pieces() {
        let mut b = Body::Static {
            data: b"hello world",
            pos: 0,
        };
        let mut buf = [0u8; 4];
        let mut got = Vec::new();
        loop {
            let n = b.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello world");
        let mut g = Body::Generated {
            n: 100,
            offset: 10,
            end: 20,
        };
        let mut buf = [0u8; 64];
        assert_eq!(g.read(&mut buf).unwrap(), 10);
        let mut expect = [0u8; 10];
        super::super::bytes::bytes_body(100, 10, &mut expect);
        assert_eq!(&buf[..10], &expect);
        assert_eq!(g.remaining(), 0);
    }
}
