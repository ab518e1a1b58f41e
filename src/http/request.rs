//! The request head: request line and header fields (RFC 9112 sections 2-5),
//! parsed with `httparse` under hard limits, and the rules that decide how
//! the message body is framed (RFC 9112 section 6).

use super::response::Status;
use super::HttpLimits;

/// The methods RFC 9110 section 9 defines. Anything else is answered 501.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Method {
    #[default]
    Get,
    Head,
    Post,
    Put,
    Delete,
    Connect,
    Options,
    Trace,
}

impl Method {
    /// Methods are case-sensitive (RFC 9110 9.1): `get` is not `GET`.
    pub fn from_token(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            _ => return None,
        })
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
        }
    }
}

/// The protocol versions this server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Version {
    Http10,
    #[default]
    Http11,
}

/// A parsed request head. Owned, so it can outlive the input buffer (it is
/// what [`super::HttpConnection::take_upgrade`] hands to the WebSocket code).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Request {
    pub method: Method,
    /// The request-target exactly as sent (origin-form `/a/b?q`, or
    /// absolute-form `http://host/a/b?q`, or `*`).
    pub target: String,
    /// The path part of the target, still percent-encoded (`/a/b`).
    pub path: String,
    /// The query without the `?`, if any.
    pub query: Option<String>,
    pub version: Version,
    /// Header fields in order; names as sent (compare case-insensitively).
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// The value of the first field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first field value as trimmed UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name)
            .and_then(|v| core::str::from_utf8(v).ok())
            .map(|s| s.trim_matches([' ', '\t']))
    }

    /// All values of all fields called `name`.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the comma-separated list field `name` (over all its lines)
    /// contains `token`, case-insensitively (e.g. `Connection: close`).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.header_all(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
        })
    }
}

pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// How the request's message body is delimited (RFC 9112 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (no Content-Length, no Transfer-Encoding).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Transfer-Encoding: chunked.
    Chunked,
}

/// Why a request head was refused. Each variant names the broken rule and
/// maps to one status code ([`HeadError::status`]). All of them leave the
/// connection in a state we cannot trust, so the server closes it after the
/// error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request line or header field ({0})")]
    Malformed(&'static str),
    #[error("request line longer than the limit")]
    UriTooLong,
    #[error("header section too large or too many header fields")]
    HeadersTooLarge,
    #[error("HTTP version not supported")]
    VersionNotSupported,
    #[error("request-target contains non-ASCII bytes")]
    NonAsciiTarget,
    #[error("HTTP/1.1 request without exactly one Host field (RFC 9112 3.2)")]
    BadHost,
    #[error("both Content-Length and Transfer-Encoding (RFC 9112 6.3 rule 3)")]
    LengthAndTransferEncoding,
    #[error("invalid or conflicting Content-Length (RFC 9110 8.6)")]
    BadContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)")]
    TransferEncodingInHttp10,
    #[error("Transfer-Encoding whose final coding is not chunked (RFC 9112 6.3 rule 4)")]
    NotChunkedFinal,
    #[error("transfer coding not implemented")]
    UnknownTransferCoding,
}

impl HeadError {
    pub fn status(&self) -> Status {
        match self {
            HeadError::UriTooLong => Status::URI_TOO_LONG,
            HeadError::HeadersTooLarge => Status::HEADER_FIELDS_TOO_LARGE,
            HeadError::VersionNotSupported => Status::HTTP_VERSION_NOT_SUPPORTED,
            HeadError::UnknownTransferCoding => Status::NOT_IMPLEMENTED,
            _ => Status::BAD_REQUEST,
        }
    }
}

/// The result of trying to parse a head from the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadParse {
    /// Not all of the head is here yet (and no limit is exceeded).
    Partial,
    /// A complete head of `len` bytes.
    Complete {
        request: Request,
        framing: Framing,
        len: usize,
    },
    /// The method is not one RFC 9110 defines (501). The head is complete
    /// and framing is known, so the connection can continue after the body.
    UnknownMethod {
        version: Version,
        framing: Framing,
        len: usize,
        keep_alive: bool,
    },
}

/// Length of the first line (without its LF), skipping the empty lines that
/// RFC 9112 2.2 says a server SHOULD ignore before the request line.
fn first_line(buf: &[u8]) -> (usize, Option<usize>) {
    let skip = empty_lines(buf);
    let line = buf[skip..].iter().position(|&b| b == b'\n');
    (skip, line)
}

/// Bytes of complete empty lines (CRLF or LF) at the start of `buf`.
pub fn empty_lines(buf: &[u8]) -> usize {
    let mut i = 0;
    loop {
        match &buf[i..] {
            [b'\r', b'\n', ..] => i += 2,
            [b'\n', ..] => i += 1,
            _ => return i,
        }
    }
}

/// Whether the request line's last word looks like an HTTP version, so an
/// httparse version error is "unsupported version" (505) and not garbage (400).
fn looks_like_other_version(buf: &[u8]) -> bool {
    let (skip, end) = first_line(buf);
    let line = &buf[skip..skip + end.unwrap_or(buf.len() - skip)];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let [_, _, v] = words.as_slice() else {
        return false;
    };
    match v.strip_prefix(b"HTTP/") {
        Some([d]) => d.is_ascii_digit(),
        Some([d1, b'.', d2]) => d1.is_ascii_digit() && d2.is_ascii_digit(),
        _ => false,
    }
}

/// Where the head ends (index just past the blank line), if it is in `buf`.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let (skip, _) = first_line(buf);
    let start = from.max(skip).saturating_sub(3).max(skip);
    for i in memchr::memchr_iter(b'\n', &buf[start..]).map(|i| i + start) {
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    None
}

/// Try to parse a request head from the start of `buf`, enforcing `limits`.
pub fn parse_head(buf: &[u8], limits: &HttpLimits) -> Result<HeadParse, HeadError> {
    parse_head_from(buf, 0, limits)
}

/// [`parse_head`] for a buffer that grows: `scan_from` is the length of the
/// buffer at the previous (partial) attempt, so the search for the blank
/// line that ends the head only looks at new bytes.
pub fn parse_head_from(
    buf: &[u8],
    scan_from: usize,
    limits: &HttpLimits,
) -> Result<HeadParse, HeadError> {
    let mut request = Request::default();
    Ok(
        match parse_head_into(buf, scan_from, limits, &mut request)? {
            HeadInto::Partial => HeadParse::Partial,
            HeadInto::Complete { framing, len } => HeadParse::Complete {
                request,
                framing,
                len,
            },
            HeadInto::UnknownMethod {
                version,
                framing,
                len,
                keep_alive,
            } => HeadParse::UnknownMethod {
                version,
                framing,
                len,
                keep_alive,
            },
        },
    )
}

/// What [`parse_head_into`] found; `Complete` means the request was written
/// into the caller's [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadInto {
    Partial,
    Complete {
        framing: Framing,
        len: usize,
    },
    UnknownMethod {
        version: Version,
        framing: Framing,
        len: usize,
        keep_alive: bool,
    },
}

/// Header slots on the stack for httparse (more only if the limit is higher).
const STACK_HEADERS: usize = 128;

/// [`parse_head_from`] into a caller's `Request`, reusing its strings and
/// header vector: a keep-alive connection parses request after request
/// without allocating. On `Partial` or an error `req` is unspecified.
pub fn parse_head_into(
    buf: &[u8],
    scan_from: usize,
    limits: &HttpLimits,
    req: &mut Request,
) -> Result<HeadInto, HeadError> {
    let (skip, line_end) = first_line(buf);
    let max_line = limits.max_uri + 64; // method, spaces, version around the target
    match line_end {
        None if buf.len() - skip > max_line => return Err(HeadError::UriTooLong),
        Some(n) if n > max_line => return Err(HeadError::UriTooLong),
        _ => {}
    }
    // Bytes of header fields in `buf[..head_len]`, checked against the limit.
    let check_header_bytes = |head_len: usize| match line_end {
        Some(n) if head_len.saturating_sub(skip + n + 1) > limits.max_header_bytes => {
            Err(HeadError::HeadersTooLarge)
        }
        _ => Ok(()),
    };
    // The first attempt on a head goes straight to httparse: a head that
    // arrived whole (the common case) needs no separate search for its
    // end. Later attempts (more bytes of a partial head) run httparse only
    // once the blank line is in, so a head arriving byte by byte is not
    // re-parsed for every byte; the limits bound how long we wait.
    if scan_from > 0 {
        let end = find_head_end(buf, scan_from);
        check_header_bytes(end.unwrap_or(buf.len()))?;
        if end.is_none() {
            return Ok(HeadInto::Partial);
        }
    }
    let mut on_stack =
        [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; STACK_HEADERS];
    let mut on_heap;
    let slots: &mut [std::mem::MaybeUninit<httparse::Header>] =
        if limits.max_headers <= STACK_HEADERS {
            &mut on_stack[..limits.max_headers]
        } else {
            on_heap = vec![std::mem::MaybeUninit::uninit(); limits.max_headers];
            &mut on_heap[..]
        };
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Partial) => {
            check_header_bytes(buf.len())?;
            return Ok(HeadInto::Partial);
        }
        Ok(httparse::Status::Complete(len)) => {
            check_header_bytes(len)?;
            len
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(httparse::Error::Version) if looks_like_other_version(buf) => {
            return Err(HeadError::VersionNotSupported)
        }
        Err(httparse::Error::Version) => return Err(HeadError::Malformed("version")),
        Err(httparse::Error::Token) => return Err(HeadError::Malformed("method token")),
        Err(httparse::Error::HeaderName) => return Err(HeadError::Malformed("header name")),
        Err(httparse::Error::HeaderValue) => return Err(HeadError::Malformed("header value")),
        Err(httparse::Error::NewLine) => return Err(HeadError::Malformed("line ending")),
        Err(_) => return Err(HeadError::Malformed("request line")),
    };
    let version = if parsed.version == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    };
    let target = parsed.path.unwrap_or("");
    if !target.is_ascii() {
        return Err(HeadError::NonAsciiTarget);
    }
    if target.len() > limits.max_uri {
        return Err(HeadError::UriTooLong);
    }
    // Header fields into the reused vector (each entry keeps its capacity).
    let n = parsed.headers.len();
    req.headers.truncate(n);
    for (i, h) in parsed.headers.iter().enumerate() {
        if let Some((name, value)) = req.headers.get_mut(i) {
            name.clear();
            name.push_str(h.name);
            value.clear();
            value.extend_from_slice(h.value);
        } else {
            req.headers.push((h.name.to_string(), h.value.to_vec()));
        }
    }
    req.version = version;
    let method_token = parsed.method.unwrap_or("");
    let framing = framing(version, &req.headers)?;
    // RFC 9112 3.2: a server MUST respond 400 to an HTTP/1.1 request that
    // lacks a Host field or has more than one.
    let hosts = req.header_all("host").count();
    if hosts > 1 || (version == Version::Http11 && hosts == 0) {
        return Err(HeadError::BadHost);
    }
    let Some(method) = Method::from_token(method_token) else {
        let keep_alive = keep_alive(req);
        return Ok(HeadInto::UnknownMethod {
            version,
            framing,
            len,
            keep_alive,
        });
    };
    // Split the target into path and query. Absolute-form (RFC 9112 3.2.2)
    // is accepted; the authority is ignored (we serve one site).
    let (path, query) = split_target(target).ok_or(HeadError::Malformed("request-target"))?;
    req.method = method;
    req.target.clear();
    req.target.push_str(target);
    req.path.clear();
    req.path.push_str(path);
    match (query, &mut req.query) {
        (None, q) => *q = None,
        (Some(new), Some(q)) => {
            q.clear();
            q.push_str(new);
        }
        (Some(new), q) => *q = Some(new.to_string()),
    }
    Ok(HeadInto::Complete { framing, len })
}

fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    if target == "*" {
        return Some(("*", None));
    }
    let rest = if target.starts_with('/') {
        target
    } else {
        let scheme = target.get(..8)?;
        let after = if scheme[..7].eq_ignore_ascii_case("http://") {
            &target[7..]
        } else if scheme.eq_ignore_ascii_case("https://") {
            &target[8..]
        } else {
            return None;
        };
        match after.find(['/', '?']) {
            Some(i) if after.as_bytes()[i] == b'/' => &after[i..],
            Some(i) => return Some(("/", Some(&after[i + 1..]))),
            None => "/",
        }
    };
    // (byte scans: targets are short, and a `str` pattern search costs
    // more to set up than this loop costs to run)
    let rest = match rest.bytes().position(|b| b == b'#') {
        Some(i) => &rest[..i],
        None => rest,
    };
    Some(match rest.bytes().position(|b| b == b'?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    })
}

/// RFC 9112 9.3: HTTP/1.1 is persistent unless `Connection: close`;
/// HTTP/1.0 is not, unless `Connection: keep-alive`.
pub fn keep_alive(req: &Request) -> bool {
    match req.version {
        Version::Http11 => !req.has_token("connection", "close"),
        Version::Http10 => {
            req.has_token("connection", "keep-alive") && !req.has_token("connection", "close")
        }
    }
}

/// Decide the body framing (RFC 9112 6.3), refusing every ambiguity a
/// request-smuggling attack could use.
fn framing(version: Version, headers: &[(String, Vec<u8>)]) -> Result<Framing, HeadError> {
    let te: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
        .map(|(_, v)| v.as_slice())
        .collect();
    let cl: Vec<&[u8]> = headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_slice())
        .collect();
    if !te.is_empty() {
        if !cl.is_empty() {
            return Err(HeadError::LengthAndTransferEncoding);
        }
        if version == Version::Http10 {
            return Err(HeadError::TransferEncodingInHttp10);
        }
        let codings: Vec<&[u8]> = te
            .iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .collect();
        let Some((last, before)) = codings.split_last() else {
            return Err(HeadError::NotChunkedFinal);
        };
        if !last.eq_ignore_ascii_case(b"chunked") {
            return Err(HeadError::NotChunkedFinal);
        }
        // chunked applied twice, or any other coding (gzip, ...) we do not
        // decode: 501 (RFC 9112 6.1).
        if !before.is_empty() {
            return Err(HeadError::UnknownTransferCoding);
        }
        return Ok(Framing::Chunked);
    }
    let mut len: Option<u64> = None;
    for v in cl.iter().flat_map(|v| v.split(|&b| b == b',')) {
        let v = trim_ows(v);
        if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::BadContentLength);
        }
        let n: u64 = core::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HeadError::BadContentLength)?;
        match len {
            Some(prev) if prev != n => return Err(HeadError::BadContentLength),
            _ => len = Some(n),
        }
    }
    Ok(match len {
        None | Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HttpLimits {
        HttpLimits::default()
    }

    fn complete(buf: &[u8]) -> (Request, Framing, usize) {
        match parse_head(buf, &limits()) {
            Ok(HeadParse::Complete {
                request,
                framing,
                len,
            }) => (request, framing, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    const VALID: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nUser-Agent: curl/8\r\n\r\n",
        b"HEAD /bytes/10 HTTP/1.0\r\n\r\n",
        b"POST /sha256 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n",
        b"POST /sha256 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
    ];

    #[test]
    fn valid_requests_parse() {
        for v in VALID {
            let (_, _, len) = complete(v);
            assert_eq!(len, v.len());
        }
        let (r, f, _) = complete(VALID[1]);
        assert_eq!(
            (r.method, r.path.as_str(), r.query.as_deref(), r.version),
            (Method::Get, "/index.html", Some("x=1"), Version::Http11)
        );
        assert_eq!(r.header("user-agent"), Some(&b"curl/8"[..]));
        assert_eq!(f, Framing::None);
        let (r, _, _) = complete(VALID[6]);
        assert_eq!((r.path.as_str(), r.query.as_deref()), ("/x", Some("y")));
        assert_eq!(complete(VALID[3]).1, Framing::Length(3));
        assert_eq!(complete(VALID[4]).1, Framing::Chunked);
        assert_eq!(complete(VALID[2]).0.version, Version::Http10);
    }

    #[test]
    fn every_prefix_is_partial() {
        for v in VALID {
            for cut in 0..v.len() {
                assert_eq!(
                    parse_head(&v[..cut], &limits()),
                    Ok(HeadParse::Partial),
                    "{:?}",
                    String::from_utf8_lossy(&v[..cut])
                );
            }
        }
    }

    #[test]
    fn errors() {
        let big_uri = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
        let big_hdr = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        let cases: Vec<(Vec<u8>, HeadError)> = vec![
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n".to_vec(), HeadError::VersionNotSupported),
            (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n".to_vec(), HeadError::VersionNotSupported),
            (b"GET / HTTP/3\r\n\r\n".to_vec(), HeadError::VersionNotSupported),
            (b"GET / FTP/1.1\r\n\r\n".to_vec(), HeadError::Malformed("version")),
            (b"GE T / HTTP/1.1\r\n\r\n".to_vec(), HeadError::Malformed("version")),
            (b"GET / HTTP/1.1\r\nHost a\r\n\r\n".to_vec(), HeadError::Malformed("header name")),
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n".to_vec(), HeadError::Malformed("header name")),
            (b"GET / HTTP/1.1\r\n\r\n".to_vec(), HeadError::BadHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), HeadError::BadHost),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), HeadError::LengthAndTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n".to_vec(), HeadError::BadContentLength),
            (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), HeadError::TransferEncodingInHttp10),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), HeadError::NotChunkedFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n".to_vec(), HeadError::NotChunkedFinal),
            (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), HeadError::UnknownTransferCoding),
            (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), HeadError::NonAsciiTarget),
            (b"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(), HeadError::Malformed("request-target")),
            (big_uri.into_bytes(), HeadError::UriTooLong),
            (big_hdr.into_bytes(), HeadError::HeadersTooLarge),
            (many.into_bytes(), HeadError::HeadersTooLarge),
        ];
        for (input, err) in cases {
            assert_eq!(
                parse_head(&input, &limits()),
                Err(err),
                "{:?}",
                String::from_utf8_lossy(&input[..input.len().min(80)])
            );
        }
    }

    #[test]
    fn limits_apply_before_the_head_is_complete() {
        // A request line that never ends: 414 as soon as it passes the limit.
        let long = format!("GET /{}", "a".repeat(9000));
        assert_eq!(
            parse_head(long.as_bytes(), &limits()),
            Err(HeadError::UriTooLong)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        assert_eq!(
            parse_head(long.as_bytes(), &limits()),
            Err(HeadError::HeadersTooLarge)
        );
    }

    #[test]
    fn same_content_length_twice_is_fine() {
        let (_, f, _) = complete(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        );
        assert_eq!(f, Framing::Length(5));
        let (_, f, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(f, Framing::Length(5));
    }

    #[test]
    fn unknown_method() {
        match parse_head(b"PATCH / HTTP/1.1\r\nHost: a\r\n\r\n", &limits()) {
            Ok(HeadParse::UnknownMethod {
                framing: Framing::None,
                keep_alive: true,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn connection_tokens() {
        let (r, _, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n");
        assert!(!keep_alive(&r));
        let (r, _, _) = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(keep_alive(&r));
        let (r, _, _) = complete(b"GET / HTTP/1.0\r\n\r\n");
        assert!(!keep_alive(&r));
        let (r, _, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(keep_alive(&r));
    }
}
