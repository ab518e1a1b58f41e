//! A sans-IO HTTP/1.1 server (RFC 9110 semantics, RFC 9112 message syntax).
//!
//! This module never touches a socket or a clock. One [`HttpConnection`]
//! serves one TCP connection: the glue code (`crate::app`) feeds it the bytes
//! TCP received and pulls the bytes to send, passing the time in on every
//! call. That makes every rule below testable with byte strings.
//!
//! ## Calling order (what the glue does)
//!
//! ```text
//! conn = HttpConnection::new(now, config)
//! loop {
//!     n = conn.handle_input(now, &received, ctx)   // keep received[n..] for later
//!     if let Some(up) = conn.take_upgrade() { hand socket + up to crate::ws; stop }
//!     while tcp has send space:
//!         k = conn.poll_output(now, &mut space, ctx); send k bytes; if k == 0 break
//!     if let Some(up) = conn.take_upgrade() { ... }  // a pipelined upgrade
//!     if peer sent FIN: conn.handle_eof(now)
//!     if conn.wants_close() { close the socket (after TCP sent everything) }
//!     at conn.poll_at(): conn.handle_timeout(now)
//! }
//! ```
//!
//! ## How a request flows through the module
//!
//! 1. **Head.** Bytes are appended to a bounded input buffer. Once the blank
//!    line that ends the head is there, [`request::parse_head`] runs
//!    `httparse` over it under [`HttpLimits`] (414, 431, 505, 400) and decides
//!    the body framing (RFC 9112 6.3: Content-Length, chunked, or none; both
//!    at once is refused as a smuggling attempt).
//! 2. **Route.** The head picks a route: a WebSocket upgrade (handed out by
//!    [`HttpConnection::take_upgrade`]), `POST /sha256` (the body is hashed
//!    as it streams in), or a GET route (any body is read and discarded,
//!    up to [`HttpLimits::max_body`]).
//! 3. **Body.** Body bytes go straight from the caller's slice into the
//!    sink (SHA-256 or the bin), never into a buffer: a 10 GB upload costs
//!    no memory. `Expect: 100-continue` makes us queue `100 Continue` first.
//! 4. **Response.** The response head is built in memory; the body is a
//!    [`response::Body`] *source* (an embedded slice, a file, the `/bytes`
//!    generator) that [`HttpConnection::poll_output`] copies from as space
//!    in TCP's send buffer allows. Nothing big is ever held in memory.
//! 5. **Next.** When the last byte is out, the connection either closes
//!    (`Connection: close`, HTTP/1.0, errors) or parses the next request
//!    from the buffer (pipelining: requests are answered strictly in order,
//!    one at a time; while a response is being written, at most
//!    [`HttpLimits::input_buffer`] bytes of later requests are buffered and
//!    `handle_input` returns less than it was given, which pushes back on
//!    the peer through TCP's receive window).
//!
//! ## Routes
//!
//! | route | methods | answer |
//! |---|---|---|
//! | `/`, any file | GET, HEAD | static file from [`Site`]: ETag, Last-Modified, 304, Range/206/416 |
//! | `/bytes/N` | GET, HEAD | N pseudo-random bytes ([`bytes_body`]), Range supported |
//! | `/discard` | POST | the body's length in decimal + LF; the body (any size) is dropped |
//! | `/sha256` | POST | lowercase hex SHA-256 of the body + `\n` |
//! | `/api/stats` | GET, HEAD | [`Context::stats_json`], `no-store` |
//! | `/api/ladder` | GET, HEAD | [`Context::ladder`]: a live connection's ladder diagram, `no-store` |
//! | `/ws/...` | GET + `Upgrade: websocket` | [`HttpConnection::take_upgrade`]; without Upgrade: 426 |
//!
//! Every route also answers OPTIONS (204 with `Allow`); a known method a
//! route does not take gets 405 with `Allow`; a method RFC 9110 does not
//! define gets 501.

pub mod bytes;
pub mod chunked;
pub mod date;
pub mod request;
pub mod response;
pub mod site;

#[cfg(test)]
mod tests;

use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::time::{Duration, Instant};

pub use bytes::bytes_body;
pub use chunked::{ChunkedDecoder, ChunkedError};
pub use request::{Framing, HeadError, Method, Request, Version};
pub use response::{write_simple_response, Body, Status};
pub use site::{Lookup, PathError, Site};

use request::{keep_alive, HeadInto};
use site::{Selection, Source};

/// Hard limits. Every buffer and every wait of a connection is bounded by
/// one of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Longest request-target (414 beyond; the request line may be 64 bytes
    /// longer for the method and version).
    pub max_uri: usize,
    /// Largest header section, request line excluded (431 beyond).
    pub max_header_bytes: usize,
    /// Most header fields (431 beyond).
    pub max_headers: usize,
    /// Largest body accepted on routes that do not use it (it is read and
    /// discarded; 413 beyond). `/sha256` streams and has no limit.
    pub max_body: u64,
    /// Total bytes of chunk extensions and trailer fields in one chunked body.
    pub max_chunk_meta: usize,
    /// From the first byte of a request head to its end (408 and close).
    /// Also how long a new connection may stay silent (closed silently).
    pub header_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed
    /// (silently) after this long.
    pub idle_timeout: Duration,
    /// A request body that makes no progress for this long: 408 and close.
    /// It measures silence, not the whole upload, and is long on purpose:
    /// a live peer on a lossy path may be silent for minutes while its
    /// retransmission timer backs off (Linux doubles it up to 120 s,
    /// `TCP_RTO_MAX`), and giving up on it loses the whole upload. 240 s:
    /// one lost retransmission at Linux's maximal back-off is survived
    /// (with 120 s, a Reno sender under 25 % loss got 408 after 121 s). Slow
    /// heads are the slowloris defence (`header_timeout`); a slow body only
    /// holds its connection's bounded buffers.
    pub body_timeout: Duration,
    /// Output that makes no progress for this long (the peer stopped
    /// reading): the connection is dropped. Twice TCP's `rto_max` (60 s):
    /// on a lossy path one lost retransmission at the maximal back-off
    /// must not end a live download (TCP's own `max_retries` ends a dead
    /// peer's connection).
    pub send_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_uri: 8 * 1024,
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body: 1024 * 1024,
            max_chunk_meta: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(240),
            send_timeout: Duration::from_secs(120),
        }
    }
}

impl HttpLimits {
    /// The input buffer's capacity: the largest head the limits allow, plus
    /// a little. Pipelined requests beyond this wait in TCP.
    pub fn input_buffer(&self) -> usize {
        self.max_uri + 64 + self.max_header_bytes + 16
    }
}

/// Everything a connection needs to know about the server. Shared by all
/// connections (`Arc`).
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    pub limits: HttpLimits,
    pub site: Site,
}

/// What the glue provides to the HTTP code.
pub trait Context {
    /// The JSON document served at `/api/stats`.
    fn stats_json(&mut self) -> String;
    /// The answer to `/api/ladder?QUERY` (the ladder diagram of a live
    /// connection): status, content type, body. The default, `None`, is a 404.
    fn ladder(&mut self, _query: Option<&str>) -> Option<(u16, &'static str, String)> {
        None
    }
    /// Whether `path` (under `/ws/`) is a WebSocket endpoint the
    /// application serves. Unknown ones get 404.
    fn websocket_route(&self, path: &str) -> bool;
    /// The current wall-clock time in seconds since the Unix epoch, if the
    /// runtime wants a `Date` header sent (RFC 9110 6.6.1). The default,
    /// `None`, sends none (a server without a reliable clock MUST NOT).
    fn unix_time(&mut self) -> Option<u64> {
        None
    }
}

/// A WebSocket opening handshake request, handed over by
/// [`HttpConnection::take_upgrade`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// The request head (GET, HTTP/1.1, `Upgrade: websocket`, no body).
    pub request: Request,
    /// Bytes the connection had already taken in after the head. They are
    /// the first WebSocket bytes, to be fed to the WebSocket code before
    /// anything read from the socket later.
    pub leftover: Vec<u8>,
}

/// How a request body is read.
#[derive(Debug)]
enum BodyReader {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// Where request body bytes go.
#[derive(Debug)]
enum Sink {
    Sha256(Box<Sha256>),
    /// `POST /discard`: counted and dropped, any size (a sink for upload
    /// benchmarks that measures TCP, not a hash function).
    Count {
        seen: u64,
    },
    Discard {
        seen: u64,
    },
}

/// What to answer once the request body is in.
#[derive(Debug)]
enum After {
    Respond(Box<Request>),
    /// Respond, then close (the body was not read).
    Close(Box<Request>),
    Error {
        status: Status,
        version: Version,
        keep_alive: bool,
    },
}

#[derive(Debug)]
enum Input {
    /// Waiting for (or parsing) a request head.
    Head,
    /// Reading a request body.
    Body {
        reader: BodyReader,
        sink: Sink,
        after: After,
    },
    /// Handed over to WebSocket; nothing more is read here.
    Upgraded,
    /// No more requests will be read: input is discarded, and the
    /// connection closes once the output is written.
    Closed,
}

/// How the connection is to be left after a response.
#[derive(Clone, Copy, Debug)]
struct Conn {
    version: Version,
    keep_alive: bool,
    head_only: bool,
}

/// The server side of one HTTP/1.1 connection. See the module docs for the
/// calling order.
#[derive(Debug)]
pub struct HttpConnection {
    config: Arc<ServerConfig>,
    /// Received bytes not yet consumed: a partial head, or pipelined requests
    /// waiting for the current response. At most `limits.input_buffer()`.
    inbuf: Vec<u8>,
    /// Length of `inbuf` at the last partial parse (see `parse_head_from`).
    scan_pos: usize,
    input: Input,
    /// Response heads (and the interim 100) not yet written, from `out_pos`.
    out: Vec<u8>,
    out_pos: usize,
    /// The body of the current response, streamed after `out`.
    body: Body,
    /// A final response is queued and not completely written.
    responding: bool,
    /// Drop everything and close now (a body source failed, send timeout).
    abort: bool,
    /// The peer closed its sending side.
    eof: bool,
    upgrade: Option<UpgradeRequest>,
    /// The last request's storage, reused by the next parse (no allocation
    /// per keep-alive request).
    spare: Option<Box<Request>>,
    /// Final responses queued so far.
    requests: u64,
    created: Instant,
    /// When the current request head started arriving.
    head_started: Option<Instant>,
    /// When the last response finished (start of keep-alive idleness).
    idle_since: Instant,
    body_progress: Instant,
    out_progress: Instant,
}

/// Which timer is next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Request head incomplete: 408.
    Header,
    /// Nothing happening: close silently.
    Idle,
    /// Body stalled: 408.
    Body,
    /// Output stalled: drop.
    Send,
}

/// The methods a resource allows: the `Allow` field (RFC 9110 10.2.1) and
/// the same list to check a request against.
#[derive(Clone, Copy)]
struct Allow {
    field: &'static str,
    methods: &'static [Method],
}

const ALLOW_GET: Allow = Allow {
    field: "GET, HEAD, OPTIONS",
    methods: &[Method::Get, Method::Head, Method::Options],
};
const ALLOW_POST: Allow = Allow {
    field: "POST, OPTIONS",
    methods: &[Method::Post, Method::Options],
};
const ALLOW_WS: Allow = Allow {
    field: "GET, OPTIONS",
    methods: &[Method::Get, Method::Options],
};
const ALLOW_SERVER: &str = "GET, HEAD, POST, OPTIONS";

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ETag of `/bytes/N`: `"bytes-N"`, formatted into `buf`.
fn bytes_etag(n: u64, buf: &mut [u8; 32]) -> &str {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let d = &digits[i..];
    buf[..7].copy_from_slice(b"\"bytes-");
    buf[7..7 + d.len()].copy_from_slice(d);
    buf[7 + d.len()] = b'"';
    std::str::from_utf8(&buf[..8 + d.len()]).unwrap_or("")
}

/// `/bytes/N` with N a decimal u64.
fn parse_bytes_route(path: &str) -> Option<u64> {
    let n = path.strip_prefix("/bytes/")?;
    if n.is_empty() || n.len() > 20 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

fn is_ws_path(path: &str) -> bool {
    path.starts_with("/ws/")
}

impl HttpConnection {
    pub fn new(now: Instant, config: Arc<ServerConfig>) -> Self {
        HttpConnection {
            config,
            spare: None,
            inbuf: Vec::new(),
            scan_pos: 0,
            input: Input::Head,
            out: Vec::new(),
            out_pos: 0,
            body: Body::Empty,
            responding: false,
            abort: false,
            eof: false,
            upgrade: None,
            requests: 0,
            created: now,
            head_started: None,
            idle_since: now,
            body_progress: now,
            out_progress: now,
        }
    }

    /// Make this a fresh connection (as `new(now, same config)`) but keep
    /// the allocations of its buffers, so a server that recycles finished
    /// connections allocates nothing per new connection. Buffers that grew
    /// large are dropped rather than kept.
    pub fn reuse(&mut self, now: Instant) {
        const KEEP: usize = 16 * 1024;
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let mut out = std::mem::take(&mut self.out);
        let spare = self.spare.take();
        *self = HttpConnection::new(now, self.config.clone());
        if inbuf.capacity() <= KEEP {
            inbuf.clear();
            self.inbuf = inbuf;
        }
        if out.capacity() <= KEEP {
            out.clear();
            self.out = out;
        }
        self.spare = spare;
    }

    fn limits(&self) -> &HttpLimits {
        &self.config.limits
    }

    /// Feed bytes received from the peer. Returns how many were consumed;
    /// the caller keeps `data[n..]` and offers it again after output has
    /// drained (this happens only while a response is being written and the
    /// bounded input buffer is full, or after an upgrade). Once the
    /// connection has decided to close, all input is consumed and ignored.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], ctx: &mut dyn Context) -> usize {
        let mut used = 0;
        loop {
            match self.input {
                Input::Closed => return data.len(),
                Input::Upgraded => return used,
                Input::Body { .. } if self.inbuf.is_empty() && used < data.len() => {
                    // Stream the body straight from the caller's slice.
                    used += self.feed_body(now, &data[used..], ctx);
                    continue;
                }
                _ => {}
            }
            let room = self
                .limits()
                .input_buffer()
                .saturating_sub(self.inbuf.len());
            let take = room.min(data.len() - used);
            if take > 0 {
                if matches!(self.input, Input::Head)
                    && !self.responding
                    && self.head_started.is_none()
                {
                    self.head_started = Some(now);
                }
                self.inbuf.extend_from_slice(&data[used..used + take]);
                used += take;
            }
            let progressed = self.advance(now, ctx);
            if !progressed && take == 0 {
                break;
            }
        }
        used
    }

    /// The peer closed its sending side (TCP FIN). Requests already
    /// received are still answered; then the connection closes.
    pub fn handle_eof(&mut self, now: Instant) {
        let _ = now;
        self.eof = true;
        self.check_eof();
    }

    fn check_eof(&mut self) {
        if !self.eof || self.responding {
            return;
        }
        match self.input {
            // Nothing (or only part of a head) will ever complete: close.
            Input::Head => self.input = Input::Closed,
            // The body was cut short: no response is possible.
            Input::Body { .. } => self.input = Input::Closed,
            Input::Upgraded | Input::Closed => {}
        }
    }

    fn next_timer(&self) -> Option<(Instant, Timer)> {
        let l = self.limits();
        if self.abort || matches!(self.input, Input::Upgraded) {
            return None;
        }
        if self.responding || self.out_pos < self.out.len() {
            return Some((self.out_progress + l.send_timeout, Timer::Send));
        }
        match self.input {
            Input::Head => Some(match self.head_started {
                Some(t) => (t + l.header_timeout, Timer::Header),
                None if self.requests == 0 => (self.created + l.header_timeout, Timer::Idle),
                None => (self.idle_since + l.idle_timeout, Timer::Idle),
            }),
            Input::Body { .. } => Some((self.body_progress + l.body_timeout, Timer::Body)),
            Input::Upgraded | Input::Closed => None,
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        self.next_timer().map(|(t, _)| t)
    }

    /// Act on expired timers: 408 for a slow head or body (slowloris),
    /// silent close of an idle keep-alive connection, drop of a connection
    /// whose peer stopped reading.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some((at, timer)) = self.next_timer() else {
            return;
        };
        if now < at {
            return;
        }
        match timer {
            Timer::Send => {
                log::debug!("http: send timeout, dropping connection");
                self.abort = true;
            }
            Timer::Idle => self.input = Input::Closed,
            Timer::Header | Timer::Body => {
                let conn = Conn {
                    version: Version::Http11,
                    keep_alive: false,
                    head_only: false,
                };
                self.queue_error(now, Status::REQUEST_TIMEOUT, conn, &[], None);
            }
        }
    }

    /// Write up to `buf.len()` bytes of output; returns how many. Call it
    /// whenever TCP's send buffer has room, until it returns 0. Finishing a
    /// response may start the next pipelined one (hence `ctx`).
    #[must_use]
    pub fn poll_output(&mut self, now: Instant, buf: &mut [u8], ctx: &mut dyn Context) -> usize {
        let mut n = 0;
        loop {
            n += self.fill_output(now, &mut buf[n..]);
            if !self.finish_output(now, ctx) {
                return n;
            }
        }
    }

    /// Bytes of output ready to be written now (head bytes queued plus the
    /// rest of the current body): how much room [`Self::fill_output`] can use.
    pub fn output_ready(&self) -> u64 {
        if self.abort {
            return 0;
        }
        (self.out.len() - self.out_pos) as u64 + self.body.remaining()
    }

    /// The first half of [`Self::poll_output`], which needs no [`Context`]:
    /// copy queued head bytes and generate body bytes into `buf` (for
    /// example straight into a TCP send buffer). Call
    /// [`Self::finish_output`] after it.
    pub fn fill_output(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let mut n = 0;
        if self.abort {
            return 0;
        }
        if self.out_pos < self.out.len() {
            let k = (self.out.len() - self.out_pos).min(buf.len());
            buf[..k].copy_from_slice(&self.out[self.out_pos..self.out_pos + k]);
            self.out_pos += k;
            n += k;
        }
        if self.out_pos == self.out.len() && !self.out.is_empty() {
            self.out.clear();
            self.out_pos = 0;
        }
        if self.out.is_empty() && self.body.remaining() > 0 && n < buf.len() {
            match self.body.read(&mut buf[n..]) {
                Ok(k) => n += k,
                Err(e) => {
                    log::warn!("http: response body failed: {e}");
                    self.abort = true;
                }
            }
        }
        if n > 0 {
            self.out_progress = now;
        }
        n
    }

    /// The second half of [`Self::poll_output`]: if the current response
    /// has been written completely, finish it (close, or start the next
    /// pipelined request). True if that queued more output.
    pub fn finish_output(&mut self, now: Instant, ctx: &mut dyn Context) -> bool {
        if self.abort || !self.responding || !self.out.is_empty() || self.body.remaining() > 0 {
            return false;
        }
        self.finish_response(now, ctx);
        self.responding
    }

    /// True when the connection must be closed now: all output has been
    /// written (or is being abandoned) and no more requests will be served.
    pub fn wants_close(&self) -> bool {
        self.abort
            || (matches!(self.input, Input::Closed) && !self.responding && self.out.is_empty())
    }

    /// If a WebSocket upgrade request was accepted, take it. From then on
    /// this connection reads nothing more and writes nothing; drop it and
    /// let `crate::ws` own the socket.
    pub fn take_upgrade(&mut self) -> Option<UpgradeRequest> {
        self.upgrade.take()
    }

    /// Whether this connection has been handed over to WebSocket.
    pub fn is_upgraded(&self) -> bool {
        matches!(self.input, Input::Upgraded)
    }

    // ---- input processing ----

    /// Process buffered input as far as possible. True if anything changed.
    fn advance(&mut self, now: Instant, ctx: &mut dyn Context) -> bool {
        match self.input {
            Input::Body { .. } if !self.inbuf.is_empty() => {
                let buf = std::mem::take(&mut self.inbuf);
                let n = self.feed_body(now, &buf, ctx);
                self.inbuf = buf;
                self.inbuf.drain(..n.min(self.inbuf.len()));
                n > 0
            }
            Input::Head if !self.responding => self.parse_next(now, ctx),
            _ => false,
        }
    }

    /// Try to parse a request head from `inbuf` and start serving it.
    fn parse_next(&mut self, now: Instant, ctx: &mut dyn Context) -> bool {
        // RFC 9112 2.2: ignore empty lines before a request line.
        let skip = request::empty_lines(&self.inbuf);
        if skip > 0 {
            self.inbuf.drain(..skip);
            self.scan_pos = 0;
        }
        if self.inbuf.is_empty() {
            return skip > 0;
        }
        let mut req = self.spare.take().unwrap_or_default();
        let parsed = request::parse_head_into(&self.inbuf, self.scan_pos, self.limits(), &mut req);
        match parsed {
            Ok(HeadInto::Partial) => {
                self.spare = Some(req);
                self.scan_pos = self.inbuf.len();
                skip > 0
            }
            Err(e) => {
                log::debug!("http: bad request head: {e}");
                let conn = Conn {
                    version: Version::Http11,
                    keep_alive: false,
                    head_only: false,
                };
                self.queue_error(now, e.status(), conn, &[], None);
                true
            }
            Ok(HeadInto::UnknownMethod {
                version,
                framing,
                len,
                keep_alive,
            }) => {
                self.consume_head(len);
                let after = After::Error {
                    status: Status::NOT_IMPLEMENTED,
                    version,
                    keep_alive,
                };
                self.start_body(now, framing, None, false, after, ctx);
                true
            }
            Ok(HeadInto::Complete { framing, len }) => {
                self.consume_head(len);
                self.start_request(now, req, framing, ctx);
                true
            }
        }
    }

    fn consume_head(&mut self, len: usize) {
        self.inbuf.drain(..len);
        self.scan_pos = 0;
        self.head_started = None;
    }

    /// A complete head is in: decide upgrade, expectations, body handling.
    fn start_request(
        &mut self,
        now: Instant,
        req: Box<Request>,
        framing: Framing,
        ctx: &mut dyn Context,
    ) {
        let conn = Conn {
            version: req.version,
            keep_alive: keep_alive(&req),
            head_only: req.method == Method::Head,
        };
        // RFC 9110 10.1.1: only 100-continue is defined; a 1.0 server
        // ignores Expect (RFC 9110: "MUST ignore" in HTTP/1.0 requests).
        let mut wants_continue = false;
        if req.version == Version::Http11 {
            if let Some(e) = req.header_str("expect") {
                if e.eq_ignore_ascii_case("100-continue") {
                    wants_continue = framing != Framing::None;
                } else {
                    let conn = Conn {
                        keep_alive: false,
                        ..conn
                    };
                    self.queue_error(now, Status::EXPECTATION_FAILED, conn, &[], None);
                    return;
                }
            }
        }
        // WebSocket opening handshake (RFC 6455 4.2.1): hand the head over.
        if is_ws_path(&req.path)
            && req.method == Method::Get
            && req.version == Version::Http11
            && req.has_token("upgrade", "websocket")
            && ctx.websocket_route(&req.path)
        {
            if framing != Framing::None {
                let conn = Conn {
                    keep_alive: false,
                    ..conn
                };
                self.queue_error(now, Status::BAD_REQUEST, conn, &[], None);
                return;
            }
            let leftover = std::mem::take(&mut self.inbuf);
            self.upgrade = Some(UpgradeRequest {
                request: *req,
                leftover,
            });
            self.input = Input::Upgraded;
            return;
        }
        let sink = match (req.method, req.path.as_str()) {
            (Method::Post, "/sha256") => Some(Sink::Sha256(Box::default())),
            (Method::Post, "/discard") => Some(Sink::Count { seen: 0 }),
            _ => None,
        };
        self.start_body(now, framing, sink, wants_continue, After::Respond(req), ctx);
    }

    /// Read the body (if any) into `sink` (None = discard), then answer.
    fn start_body(
        &mut self,
        now: Instant,
        framing: Framing,
        sink: Option<Sink>,
        wants_continue: bool,
        after: After,
        ctx: &mut dyn Context,
    ) {
        let reader = match framing {
            Framing::None => return self.answer(now, after, None, ctx),
            Framing::Length(n) => BodyReader::Length(n),
            Framing::Chunked => {
                BodyReader::Chunked(ChunkedDecoder::new(self.limits().max_chunk_meta))
            }
        };
        let sink = match sink {
            Some(s) => {
                if wants_continue {
                    // RFC 9110 10.1.1: tell the client to go ahead.
                    response::write_status_line(&mut self.out, Status::CONTINUE);
                    self.out.extend_from_slice(b"\r\n");
                    self.out_progress = now;
                }
                s
            }
            None => {
                if wants_continue {
                    // We do not want this body: answer now without reading
                    // it, and close (RFC 9110 10.1.1 / RFC 9112 9.6), since
                    // the client may or may not send it.
                    let after = match after {
                        After::Respond(req) => After::Close(req),
                        other => other,
                    };
                    return self.answer(now, after, None, ctx);
                }
                if let Framing::Length(n) = framing {
                    if n > self.limits().max_body {
                        return self.too_large(now, &after);
                    }
                }
                Sink::Discard { seen: 0 }
            }
        };
        self.body_progress = now;
        self.input = Input::Body {
            reader,
            sink,
            after,
        };
    }

    fn too_large(&mut self, now: Instant, after: &After) {
        let (version, head_only) = match after {
            After::Respond(r) | After::Close(r) => (r.version, r.method == Method::Head),
            After::Error { version, .. } => (*version, false),
        };
        let conn = Conn {
            version,
            keep_alive: false,
            head_only,
        };
        self.queue_error(now, Status::CONTENT_TOO_LARGE, conn, &[], None);
    }

    /// Feed body bytes; returns how many were consumed (all of `data` unless
    /// the body ends inside it). Finishing the body queues the response.
    fn feed_body(&mut self, now: Instant, data: &[u8], ctx: &mut dyn Context) -> usize {
        let max_body = self.limits().max_body;
        let Input::Body { reader, sink, .. } = &mut self.input else {
            return 0;
        };
        let mut put = |s: &[u8]| match sink {
            Sink::Sha256(h) => h.update(s),
            Sink::Discard { seen } | Sink::Count { seen } => *seen += s.len() as u64,
        };
        let (used, done, error) = match reader {
            BodyReader::Length(rem) => {
                let take = (*rem).min(data.len() as u64) as usize;
                put(&data[..take]);
                *rem -= take as u64;
                (take, *rem == 0, None)
            }
            BodyReader::Chunked(dec) => match dec.decode(data, &mut put) {
                Ok(n) => (n, dec.is_done(), None),
                Err(e) => (data.len(), false, Some(e)),
            },
        };
        let over = matches!(sink, Sink::Discard { seen } if *seen > max_body);
        if used > 0 {
            self.body_progress = now;
        }
        if let Some(e) = error {
            log::debug!("http: bad chunked body: {e}");
            let conn = Conn {
                version: Version::Http11,
                keep_alive: false,
                head_only: false,
            };
            self.queue_error(now, Status::BAD_REQUEST, conn, &[], None);
            return data.len();
        }
        if over {
            let Input::Body { after, .. } = std::mem::replace(&mut self.input, Input::Head) else {
                return used;
            };
            self.too_large(now, &after);
            return data.len();
        }
        if done {
            let Input::Body { sink, after, .. } = std::mem::replace(&mut self.input, Input::Head)
            else {
                return used;
            };
            let digest = match sink {
                Sink::Sha256(h) => Some(to_hex(&h.finalize())),
                Sink::Count { seen } => Some(seen.to_string()),
                Sink::Discard { .. } => None,
            };
            self.answer(now, after, digest, ctx);
        }
        used
    }

    // ---- responses ----

    /// The request (and its body) is complete: queue the final response.
    fn answer(
        &mut self,
        now: Instant,
        after: After,
        digest: Option<String>,
        ctx: &mut dyn Context,
    ) {
        self.input = Input::Head;
        match after {
            After::Error {
                status,
                version,
                keep_alive,
            } => {
                let conn = Conn {
                    version,
                    keep_alive,
                    head_only: false,
                };
                self.queue_error(now, status, conn, &[], ctx.unix_time());
            }
            After::Respond(req) => {
                self.route(now, &req, digest, true, ctx);
                self.spare = Some(req);
            }
            After::Close(req) => self.route(now, &req, digest, false, ctx),
        }
    }

    /// The route table.
    fn route(
        &mut self,
        now: Instant,
        req: &Request,
        digest: Option<String>,
        may_keep: bool,
        ctx: &mut dyn Context,
    ) {
        let keep_alive = may_keep && keep_alive(req);
        let conn = Conn {
            version: req.version,
            keep_alive,
            head_only: req.method == Method::Head,
        };
        let date = ctx.unix_time();
        let path = req.path.as_str();
        if path == "*" {
            // RFC 9110 9.3.7: OPTIONS * asks about the server as a whole.
            if req.method == Method::Options {
                self.queue(
                    now,
                    Status::NO_CONTENT,
                    conn,
                    &[("Allow", ALLOW_SERVER)],
                    Body::Empty,
                    date,
                );
            } else {
                self.queue_error(now, Status::BAD_REQUEST, conn, &[], date);
            }
            return;
        }
        let allow = if path == "/sha256" || path == "/discard" {
            ALLOW_POST
        } else if is_ws_path(path) {
            if !ctx.websocket_route(path) {
                self.queue_error(now, Status::NOT_FOUND, conn, &[], date);
                return;
            }
            ALLOW_WS
        } else {
            ALLOW_GET
        };
        if req.method == Method::Options {
            self.queue(
                now,
                Status::NO_CONTENT,
                conn,
                &[("Allow", allow.field)],
                Body::Empty,
                date,
            );
            return;
        }
        if !allow.methods.contains(&req.method) {
            self.queue_error(
                now,
                Status::METHOD_NOT_ALLOWED,
                conn,
                &[("Allow", allow.field)],
                date,
            );
            return;
        }
        if path == "/discard" {
            let body = Body::Owned {
                data: format!("{}\n", digest.as_deref().unwrap_or("0")).into_bytes(),
                pos: 0,
            };
            let h = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Cache-Control", "no-store"),
            ];
            self.queue(now, Status::OK, conn, &h, body, date);
        } else if path == "/sha256" {
            let hex = digest.unwrap_or_else(|| to_hex(&Sha256::digest(b"")));
            let body = Body::Owned {
                data: format!("{hex}\n").into_bytes(),
                pos: 0,
            };
            let h = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Cache-Control", "no-store"),
            ];
            self.queue(now, Status::OK, conn, &h, body, date);
        } else if is_ws_path(path) {
            // RFC 9110 15.5.22: 426 must say which protocol to upgrade to.
            // (RFC 6455 4.2.1 would also allow a plain 400.)
            let h: &[(&str, &str)] = &[("Upgrade", "websocket"), ("Connection", "Upgrade")];
            self.queue_error(now, Status::UPGRADE_REQUIRED, conn, h, date);
        } else if path == "/api/stats" {
            let body = Body::Owned {
                data: ctx.stats_json().into_bytes(),
                pos: 0,
            };
            let h = [
                ("Content-Type", "application/json"),
                ("Cache-Control", "no-store"),
            ];
            self.queue(now, Status::OK, conn, &h, body, date);
        } else if path == "/api/ladder" {
            match ctx.ladder(req.query.as_deref()) {
                Some((code, content_type, text)) => {
                    let body = Body::Owned {
                        data: text.into_bytes(),
                        pos: 0,
                    };
                    let h = [
                        ("Content-Type", content_type),
                        ("Cache-Control", "no-store"),
                    ];
                    self.queue(now, Status(code), conn, &h, body, date);
                }
                None => self.queue_error(now, Status::NOT_FOUND, conn, &[], date),
            }
        } else if let Some(n) = parse_bytes_route(path) {
            let mut etag_buf = [0u8; 32];
            let etag = bytes_etag(n, &mut etag_buf);
            let lm = site::EMBEDDED_LAST_MODIFIED;
            self.serve(
                now,
                req,
                conn,
                etag,
                lm,
                n,
                "application/octet-stream",
                RangeSource::Generated(n),
                date,
            );
        } else {
            match self.config.site.lookup(path) {
                Lookup::Found(r) => {
                    let src = match r.source {
                        Source::Static(d) => RangeSource::Static(d),
                        Source::File(f) => RangeSource::File(f),
                    };
                    self.serve(
                        now,
                        req,
                        conn,
                        &r.etag,
                        r.last_modified,
                        r.len,
                        r.content_type,
                        src,
                        date,
                    );
                }
                Lookup::Redirect(to) => {
                    let loc = match &req.query {
                        Some(q) => format!("{to}?{q}"),
                        None => to,
                    };
                    self.queue_error(
                        now,
                        Status::MOVED_PERMANENTLY,
                        conn,
                        &[("Location", &loc)],
                        date,
                    );
                }
                Lookup::NotFound => self.queue_error(now, Status::NOT_FOUND, conn, &[], date),
                Lookup::BadPath(e) => {
                    log::debug!("http: refused path {path:?}: {e}");
                    self.queue_error(now, e.status(), conn, &[], date);
                }
            }
        }
    }

    /// Serve a representation with validators, honouring conditionals and
    /// Range.
    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        now: Instant,
        req: &Request,
        conn: Conn,
        etag: &str,
        last_modified: u64,
        len: u64,
        content_type: &str,
        src: RangeSource,
        date: Option<u64>,
    ) {
        let lm_date = date::HttpDate::new(last_modified);
        let lm = lm_date.as_str();
        let mut range = String::new();
        let (status, start, end) = match site::select(req, etag, last_modified, len) {
            Selection::Full => (Status::OK, 0, len),
            Selection::Partial { start, end } => {
                range = format!("bytes {start}-{end}/{len}");
                (Status::PARTIAL_CONTENT, start, end + 1)
            }
            Selection::NotModified => {
                let h = [("ETag", etag), ("Last-Modified", lm)];
                self.queue(now, Status::NOT_MODIFIED, conn, &h, Body::Empty, date);
                return;
            }
            Selection::PreconditionFailed => {
                self.queue_error(now, Status::PRECONDITION_FAILED, conn, &[], date);
                return;
            }
            Selection::Unsatisfiable => {
                let cr = format!("bytes */{len}");
                self.queue_error(
                    now,
                    Status::RANGE_NOT_SATISFIABLE,
                    conn,
                    &[("Content-Range", &cr)],
                    date,
                );
                return;
            }
        };
        let body = match src {
            RangeSource::Static(d) => Body::Static {
                data: &d[start as usize..end as usize],
                pos: 0,
            },
            RangeSource::Generated(n) => Body::Generated {
                n,
                offset: start,
                end,
            },
            RangeSource::File(mut f) => {
                if start > 0 && f.seek(SeekFrom::Start(start)).is_err() {
                    self.queue_error(now, Status::INTERNAL_SERVER_ERROR, conn, &[], date);
                    return;
                }
                Body::File {
                    file: f,
                    remaining: end - start,
                }
            }
        };
        let all = [
            ("Content-Type", content_type),
            ("ETag", etag),
            ("Last-Modified", lm),
            ("Accept-Ranges", "bytes"),
            ("Content-Range", range.as_str()),
        ];
        let n = if range.is_empty() { 4 } else { 5 };
        self.queue(now, status, conn, &all[..n], body, date);
    }

    /// An error answer with a short text body.
    fn queue_error(
        &mut self,
        now: Instant,
        status: Status,
        conn: Conn,
        headers: &[(&str, &str)],
        date: Option<u64>,
    ) {
        let text = format!("{} {}\n", status.code(), status.reason());
        let mut h: Vec<(&str, &str)> = vec![("Content-Type", "text/plain; charset=utf-8")];
        h.extend_from_slice(headers);
        self.queue(
            now,
            status,
            conn,
            &h,
            Body::Owned {
                data: text.into_bytes(),
                pos: 0,
            },
            date,
        );
    }

    /// Queue a final response: head into `out`, body as the source.
    fn queue(
        &mut self,
        now: Instant,
        status: Status,
        conn: Conn,
        headers: &[(&str, &str)],
        body: Body,
        date: Option<u64>,
    ) {
        let out = &mut self.out;
        response::write_status_line(out, status);
        response::write_header(out, "Server", "ustack");
        if let Some(d) = date {
            out.extend_from_slice(b"Date: ");
            date::write_http_date(out, d);
            out.extend_from_slice(b"\r\n");
        }
        for (n, v) in headers {
            response::write_header(out, n, v);
        }
        if !status.has_no_content() {
            response::write_header_u64(out, "Content-Length", body.remaining());
        }
        if !conn.keep_alive {
            response::write_header(out, "Connection", "close");
        } else if conn.version == Version::Http10 {
            response::write_header(out, "Connection", "keep-alive");
        }
        out.extend_from_slice(b"\r\n");
        self.body = if conn.head_only || status.has_no_content() {
            Body::Empty
        } else {
            body
        };
        self.responding = true;
        self.requests += 1;
        self.out_progress = now;
        if !conn.keep_alive {
            self.input = Input::Closed;
        }
    }

    /// The last byte of a response is out: close, or go on with the next
    /// pipelined request.
    fn finish_response(&mut self, now: Instant, ctx: &mut dyn Context) {
        self.responding = false;
        self.body = Body::Empty;
        self.idle_since = now;
        if !matches!(self.input, Input::Head) {
            return;
        }
        self.head_started = (!self.inbuf.is_empty()).then_some(now);
        while self.advance(now, ctx) {}
        self.check_eof();
    }
}

/// A representation's bytes, before a range has been chosen.
enum RangeSource {
    Static(&'static [u8]),
    Generated(u64),
    File(std::fs::File),
}
