//! A tiny sans-IO HTTP/1.1 server connection shared by the benchmark's
//! comparison servers (`examples/smoltcp_server.rs`, `examples/kernel_server.rs`).
//!
//! It serves exactly the benchmark workloads, with the same bytes on the
//! wire as ustack's HTTP server, so the three systems do the same work:
//!
//! | route | answer |
//! |---|---|
//! | `GET /bytes/N` | N deterministic bytes (the ustack `/bytes/N` generator: SplitMix64 words seeded with N) |
//! | `POST /sha256` | lowercase hex SHA-256 of the body + `\n` (Content-Length or chunked body) |
//! | `POST /discard` | the body's length in decimal + `\n` (the body is dropped) |
//! | anything else | `404` with an empty body |
//!
//! Keep-alive is the HTTP/1.1 default; HTTP/1.0 (ab) or `Connection: close`
//! closes after the response. `Expect: 100-continue` is answered with
//! `100 Continue`. This is benchmark plumbing, not a general server: it is
//! strict where strictness costs nothing and refuses (400, close) anything
//! it does not understand.

use sha2::{Digest, Sha256};

/// Request heads larger than this are refused (400).
const MAX_HEAD: usize = 16 * 1024;

/// The `/bytes/N` generator: ustack's own, so all three servers send the
/// same bytes and pay the same generation cost.
pub use ustack::http::bytes_body;

enum Body {
    None,
    Bytes { n: u64, off: u64 },
}

enum Input {
    /// Reading a request head.
    Head,
    /// Hashing a Content-Length body.
    Sized { left: u64, hash: Sink },
    /// Hashing a chunked body.
    Chunked { dec: Chunked, hash: Sink },
    /// A response is being written; no more input until it is done.
    Busy,
    /// Fatal error or close: ignore everything.
    Done,
}

/// Where an upload goes: hashed (`/sha256`) or counted and dropped (`/discard`).
enum Sink {
    Sha256(Box<Sha256>),
    Discard(u64),
}

impl Sink {
    fn update(&mut self, d: &[u8]) {
        match self {
            Sink::Sha256(h) => h.update(d),
            Sink::Discard(n) => *n += d.len() as u64,
        }
    }
}

/// A minimal RFC 9112 7.1 chunked decoder (no extensions kept, trailers skipped).
#[derive(Default)]
struct Chunked {
    state: ChState,
    size: u64,
    line: usize,
}

#[derive(Default, Clone, Copy, PartialEq)]
enum ChState {
    #[default]
    Size,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLine,
    TrailerLf,
    Finished,
}

impl Chunked {
    /// Feed bytes; data bytes go to `sink`. Returns bytes consumed, or Err.
    fn feed(&mut self, buf: &[u8], sink: &mut impl FnMut(&[u8])) -> Result<usize, ()> {
        let mut i = 0;
        while i < buf.len() && self.state != ChState::Finished {
            let b = buf[i];
            match self.state {
                ChState::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).ok_or(())? as u64;
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(d))
                            .ok_or(())?;
                        self.line += 1;
                        if self.line > 16 {
                            return Err(());
                        }
                    }
                    b';' | b' ' | b'\t' => self.state = ChState::Ext,
                    b'\r' => self.state = ChState::SizeLf,
                    _ => return Err(()),
                },
                ChState::Ext => {
                    if b == b'\r' {
                        self.state = ChState::SizeLf;
                    }
                }
                ChState::SizeLf => {
                    if b != b'\n' || self.line == 0 {
                        return Err(());
                    }
                    self.line = 0;
                    self.state = if self.size == 0 {
                        ChState::Trailer
                    } else {
                        ChState::Data
                    };
                }
                ChState::Data => {
                    let take = (self.size.min((buf.len() - i) as u64)) as usize;
                    sink(&buf[i..i + take]);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = ChState::DataCr;
                    }
                    continue;
                }
                ChState::DataCr => {
                    if b != b'\r' {
                        return Err(());
                    }
                    self.state = ChState::DataLf;
                }
                ChState::DataLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.state = ChState::Size;
                }
                ChState::Trailer => {
                    self.state = if b == b'\r' {
                        ChState::TrailerLf
                    } else {
                        ChState::TrailerLine
                    };
                }
                ChState::TrailerLine => {
                    if b == b'\n' {
                        self.state = ChState::Trailer;
                    }
                }
                ChState::TrailerLf => {
                    if b != b'\n' {
                        return Err(());
                    }
                    self.state = ChState::Finished;
                }
                ChState::Finished => {}
            }
            i += 1;
        }
        Ok(i)
    }
}

/// One HTTP connection: feed it received bytes with [`HttpConn::input`],
/// pull response bytes with [`HttpConn::output`].
pub struct HttpConn {
    head: Vec<u8>,
    input: Input,
    out: Vec<u8>,
    out_pos: usize,
    body: Body,
    /// Close once the current response is written.
    close_after: bool,
    keep_alive_req: bool,
}

impl Default for HttpConn {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpConn {
    pub fn new() -> Self {
        HttpConn {
            head: Vec::with_capacity(512),
            input: Input::Head,
            out: Vec::with_capacity(256),
            out_pos: 0,
            body: Body::None,
            close_after: false,
            keep_alive_req: true,
        }
    }

    /// True once the last response is fully written and the connection
    /// should be closed (Connection: close, HTTP/1.0, or an error).
    pub fn should_close(&self) -> bool {
        self.close_after && !self.has_output()
    }

    /// Bytes are waiting to be written.
    pub fn has_output(&self) -> bool {
        self.out_pos < self.out.len() || matches!(self.body, Body::Bytes { .. })
    }

    /// Whether `input` would consume anything now.
    pub fn wants_input(&self) -> bool {
        !matches!(self.input, Input::Busy | Input::Done)
    }

    /// Consume received bytes; returns how many were used (less than
    /// `data.len()` while a response is being written: pipelined requests
    /// wait in the transport's buffer).
    pub fn input(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match &mut self.input {
                Input::Busy | Input::Done => break,
                Input::Head => {
                    // Append, look for the end of the head.
                    let before = self.head.len();
                    let take = rest.len().min(MAX_HEAD + 4 - before);
                    self.head.extend_from_slice(&rest[..take]);
                    let search_from = before.saturating_sub(3);
                    match find_crlfcrlf(&self.head[search_from..]) {
                        Some(p) => {
                            let end = search_from + p + 4;
                            used += end - before;
                            self.head.truncate(end);
                            self.on_head();
                            self.head.clear();
                        }
                        None => {
                            used += take;
                            if self.head.len() > MAX_HEAD {
                                self.fail(400);
                                return data.len();
                            }
                        }
                    }
                }
                Input::Sized { left, hash } => {
                    let take = (*left).min(rest.len() as u64) as usize;
                    hash.update(&rest[..take]);
                    *left -= take as u64;
                    used += take;
                    if *left == 0 {
                        self.finish_upload();
                    }
                }
                Input::Chunked { dec, hash } => match dec.feed(rest, &mut |d| hash.update(d)) {
                    Ok(n) => {
                        used += n;
                        if dec.state == ChState::Finished {
                            self.finish_upload();
                        }
                    }
                    Err(()) => {
                        self.fail(400);
                        return data.len();
                    }
                },
            }
        }
        used
    }

    /// Write response bytes into `buf`; returns how many.
    pub fn output(&mut self, buf: &mut [u8]) -> usize {
        let mut n = 0;
        if self.out_pos < self.out.len() {
            let take = (self.out.len() - self.out_pos).min(buf.len());
            buf[..take].copy_from_slice(&self.out[self.out_pos..self.out_pos + take]);
            self.out_pos += take;
            n += take;
            if self.out_pos == self.out.len() {
                self.out.clear();
                self.out_pos = 0;
            }
        }
        if let Body::Bytes { n: total, off } = &mut self.body {
            let take = ((*total - *off).min((buf.len() - n) as u64)) as usize;
            bytes_body(*total, *off, &mut buf[n..n + take]);
            *off += take as u64;
            n += take;
            if *off == *total {
                self.body = Body::None;
            }
        }
        if !self.has_output() && matches!(self.input, Input::Busy) {
            self.input = if self.close_after {
                Input::Done
            } else {
                Input::Head
            };
        }
        n
    }

    fn on_head(&mut self) {
        let Some(h) = parse_head(&self.head) else {
            return self.fail(400);
        };
        let (keep_alive, content_length, chunked, expect_continue) =
            (h.keep_alive, h.content_length, h.chunked, h.expect_continue);
        let (method, path) = (h.method.as_str(), h.path.as_str());
        self.keep_alive_req = keep_alive;
        if method == "POST" && (path == "/sha256" || path == "/discard") {
            if expect_continue {
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            let hash = if path == "/sha256" {
                Sink::Sha256(Box::new(Sha256::new()))
            } else {
                Sink::Discard(0)
            };
            if chunked {
                self.input = Input::Chunked {
                    dec: Chunked::default(),
                    hash,
                };
            } else {
                let left = content_length;
                self.input = Input::Sized { left, hash };
                if left == 0 {
                    self.finish_upload();
                }
            }
            return;
        }
        if chunked || content_length > 0 {
            // Bodies on other routes are not needed by the benchmark.
            return self.fail(400);
        }
        if method == "GET" || method == "HEAD" {
            if let Some(n) = path
                .strip_prefix("/bytes/")
                .and_then(|s| s.parse::<u64>().ok())
            {
                let etag = format!("\"bytes-{n}\"");
                let lm = ustack::http::date::format_http_date(
                    ustack::http::site::EMBEDDED_LAST_MODIFIED,
                );
                let extra = [
                    ("ETag", etag.as_str()),
                    ("Last-Modified", lm.as_str()),
                    ("Accept-Ranges", "bytes"),
                ];
                self.respond_with(200, "application/octet-stream", n, &[], &extra);
                if method == "GET" {
                    self.body = if n > 0 {
                        Body::Bytes { n, off: 0 }
                    } else {
                        Body::None
                    };
                }
                return;
            }
        }
        self.respond(404, "text/plain", 0, &[]);
    }

    fn finish_upload(&mut self) {
        let input = std::mem::replace(&mut self.input, Input::Busy);
        let hash = match input {
            Input::Sized { hash, .. } | Input::Chunked { hash, .. } => hash,
            _ => return,
        };
        let mut body = Vec::with_capacity(65);
        match hash {
            Sink::Sha256(h) => {
                for b in h.finalize().iter() {
                    body.extend_from_slice(format!("{b:02x}").as_bytes());
                }
            }
            Sink::Discard(n) => body.extend_from_slice(n.to_string().as_bytes()),
        }
        body.push(b'\n');
        self.respond_with(
            200,
            "text/plain; charset=utf-8",
            body.len() as u64,
            &body,
            &[("Cache-Control", "no-store")],
        );
    }

    fn respond(&mut self, status: u16, ctype: &str, len: u64, body: &[u8]) {
        self.respond_with(status, ctype, len, body, &[]);
    }

    /// The response head has the same fields as ustack's for the same
    /// request (only `Server` differs), so a client such as wrk parses the
    /// same amount for every server and the benchmark compares the stacks,
    /// not the length of their answers (checked by a test below).
    fn respond_with(
        &mut self,
        status: u16,
        ctype: &str,
        len: u64,
        body: &[u8],
        extra: &[(&str, &str)],
    ) {
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            _ => "Not Found",
        };
        if !self.keep_alive_req || status == 400 {
            self.close_after = true;
        }
        let mut head =
            format!("HTTP/1.1 {status} {reason}\r\nServer: bench\r\nContent-Type: {ctype}\r\n");
        for (k, v) in extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {len}\r\n"));
        if self.close_after {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        self.out.extend_from_slice(head.as_bytes());
        self.out.extend_from_slice(body);
        self.input = Input::Busy;
    }

    fn fail(&mut self, status: u16) {
        self.keep_alive_req = false;
        self.respond(status, "text/plain", 0, &[]);
        self.input = Input::Busy;
    }
}

struct Head {
    method: String,
    path: String,
    keep_alive: bool,
    content_length: u64,
    chunked: bool,
    expect_continue: bool,
}

fn parse_head(raw: &[u8]) -> Option<Head> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(raw), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let mut h = Head {
        method: req.method?.to_string(),
        path: req.path?.to_string(),
        keep_alive: req.version? >= 1,
        content_length: 0,
        chunked: false,
        expect_continue: false,
    };
    for f in req.headers.iter() {
        let v = f.value;
        if f.name.eq_ignore_ascii_case("connection") {
            if contains_token(v, b"close") {
                h.keep_alive = false;
            } else if contains_token(v, b"keep-alive") {
                h.keep_alive = true;
            }
        } else if f.name.eq_ignore_ascii_case("content-length") {
            h.content_length = std::str::from_utf8(v).ok()?.trim().parse().ok()?;
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            h.chunked = contains_token(v, b"chunked");
        } else if f.name.eq_ignore_ascii_case("expect") {
            h.expect_continue = contains_token(v, b"100-continue");
        }
    }
    Some(h)
}

fn find_crlfcrlf(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n")
}

fn contains_token(v: &[u8], tok: &[u8]) -> bool {
    v.split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(tok))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(req: &[u8]) -> (Vec<u8>, bool) {
        let mut c = HttpConn::new();
        let mut used = 0;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 7];
        loop {
            used += c.input(&req[used..]);
            let n = c.output(&mut buf);
            out.extend_from_slice(&buf[..n]);
            if n == 0 && (used == req.len() || !c.wants_input()) {
                break;
            }
        }
        (out, c.should_close())
    }

    #[test]
    fn bytes_generator_matches_reference() {
        // docs/http.md: byte i is byte i % 8 of SplitMix64 output i / 8 from state N.
        let mut got = [0u8; 9];
        bytes_body(100, 0, &mut got);
        let mut z = 100u64.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        assert_eq!(&got[..8], &z.to_le_bytes());
    }

    #[test]
    fn get_bytes_keepalive_then_close() {
        let (out, close) = run(b"GET /bytes/10 HTTP/1.1\r\nHost: x\r\n\r\nGET /bytes/3 HTTP/1.1\r\nConnection: close\r\n\r\n");
        let s = String::from_utf8_lossy(&out);
        assert_eq!(s.matches("HTTP/1.1 200 OK").count(), 2, "{s}");
        assert!(close);
    }

    #[test]
    fn discard_counts_the_body() {
        let (a, _) = run(b"POST /discard HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert!(
            a.ends_with(b"\r\n\r\n3\n"),
            "{}",
            String::from_utf8_lossy(&a)
        );
        let (b, _) = run(b"POST /discard HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n");
        assert!(
            b.ends_with(b"\r\n\r\n3\n"),
            "{}",
            String::from_utf8_lossy(&b)
        );
    }

    #[test]
    fn response_heads_have_the_fields_of_ustack() {
        // The same request to ustack's own HTTP code and to this server:
        // the header fields (names and values, in order) must agree but
        // for `Server`.
        fn fields(raw: &[u8]) -> Vec<String> {
            let text = String::from_utf8_lossy(raw);
            let head = text.split("\r\n\r\n").next().unwrap_or("").to_string();
            head.lines()
                .filter(|l| !l.starts_with("Server:"))
                .map(|l| l.to_string())
                .collect()
        }
        struct NoCtx;
        impl ustack::http::Context for NoCtx {
            fn stats_json(&mut self) -> String {
                String::new()
            }
            fn websocket_route(&self, _: &str) -> bool {
                false
            }
        }
        for req in [
            &b"GET /bytes/100 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &b"GET /bytes/100 HTTP/1.0\r\n\r\n"[..],
            &b"POST /sha256 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"[..],
        ] {
            let (ours, _) = run(req);
            let config = std::sync::Arc::new(ustack::http::ServerConfig::default());
            let t = ustack::time::Instant::ZERO;
            let mut u = ustack::http::HttpConnection::new(t, config);
            u.handle_input(t, req, &mut NoCtx);
            let mut buf = vec![0u8; 4096];
            let n = u.poll_output(t, &mut buf, &mut NoCtx);
            assert_eq!(
                fields(&ours),
                fields(&buf[..n]),
                "{}",
                String::from_utf8_lossy(req)
            );
        }
    }

    #[test]
    fn sha256_sized_and_chunked() {
        let (a, _) = run(b"POST /sha256 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        let (b, _) = run(b"POST /sha256 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n2;x=y\r\nbc\r\n0\r\n\r\n");
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
        assert!(String::from_utf8_lossy(&a).ends_with(want));
        assert!(String::from_utf8_lossy(&b).ends_with(want));
    }

    #[test]
    fn http10_closes() {
        let (_, close) = run(b"GET /bytes/100 HTTP/1.0\r\n\r\n");
        assert!(close);
    }
}
