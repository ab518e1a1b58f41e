//! One WebSocket connection after the handshake: frames in, messages out,
//! control frames, the closing handshake, limits and keepalive (RFC 6455
//! sections 5, 6 and 7).
//!
//! # Calling order (sans-IO)
//!
//! ```text
//!   bytes from TCP ──► handle_input(now, bytes) ──► poll_event() ─► app
//!   app ─► send(msg) / close(code, reason)
//!   poll_output(buf) / output_chunk()+consume_output(n) ──► bytes to TCP
//!   at poll_at(): handle_timeout(now)          on TCP FIN: handle_eof(now)
//!   wants_tcp_close() && output_pending() == 0 ──► close TCP
//! ```
//!
//! # Input processing and memory
//!
//! Input is consumed as it arrives, without an input buffer: up to 14 header
//! bytes are kept until a header is complete, then payload bytes go straight
//! into the message being assembled, are unmasked in place
//! ([`apply_mask`]), inflated if compressed, and UTF-8-checked — so an
//! invalid text byte is reported as soon as it is received (*fail fast*),
//! and a 16 MiB message costs linear time. Memory is bounded by
//! `max_message` (+ the geometric growth slack of one `Vec`), 125 bytes of
//! control payload, and `max_output_buffer` on the output side.
//!
//! # Closing (section 7)
//!
//! * The peer sends Close → we echo its status code and the handshake is
//!   complete: [`WsConnection::wants_tcp_close`] turns true, because the
//!   server closes TCP first (section 7.1.1) so that the TIME-WAIT state
//!   lands on the server.
//! * We call [`WsConnection::close`] → we send Close and wait up to
//!   `close_timeout` for the peer's Close.
//! * A protocol violation *fails the connection* (section 7.1.7): we send a
//!   Close with the code from [`WsError::close_code`] (1002, 1007, 1009...).
//!   If the violation was in a frame header, the byte stream can no longer
//!   be trusted and `wants_tcp_close` is true at once. If the frame
//!   structure is intact (invalid UTF-8, bad close code, message too big),
//!   we keep reading frames — skipping data — until the peer's Close or
//!   `close_timeout`, which gives the peer a clean closing handshake.
//!
//! # Backpressure
//!
//! [`WsConnection::send`] returns [`WsError::OutputBufferFull`] while more
//! than `max_output_buffer` bytes wait to be written; the glue decides
//! whether to drop the message (chat fan-out to a slow reader) or to
//! `close(1008, ..)`. The connection itself fails with 1008 if answering
//! the peer's pings would grow the output past the limit.

use super::deflate::{DeflateCodec, DeflateParams};
use super::frame::{emit_frame, FrameHeader, OpCode, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;
use super::{close_code, Message, WsConfig, WsError};
use crate::time::{min_deadline, Duration, Instant};
use std::collections::VecDeque;

/// What the connection tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete data message.
    Message(Message),
    /// A pong arrived (answer to a keepalive or [`WsConnection::ping`]).
    Pong(Vec<u8>),
    /// The peer broke a rule; a Close with `error.close_code()` was queued.
    Error(WsError),
    /// The connection is finished (emitted once). `code` is the peer's
    /// close code if it sent one, else ours; `clean` is true when both
    /// Close frames were exchanged.
    Closed {
        code: Option<u16>,
        reason: String,
        clean: bool,
    },
}

crate::spare_pool!(WsEvent);

/// The frame whose payload is being received.
#[derive(Debug)]
struct InFrame {
    header: FrameHeader,
    remaining: u64,
    /// Bytes of this frame's payload seen so far (mask key position).
    offset: usize,
    /// Payload is dropped (closing, or after a payload-level error).
    skip: bool,
}

/// A data message being assembled from fragments (section 5.4).
#[derive(Debug)]
struct Assembly {
    text: bool,
    compressed: bool,
    buf: Vec<u8>,
    utf8: Utf8Validator,
}

/// The largest message buffer kept for reuse per connection (small: an
/// idle connection keeps it, and idle connections must stay cheap).
const SPARE_MAX: usize = 512;

/// A server-side WebSocket connection. See the module documentation for
/// the calling order.
#[derive(Debug)]
pub struct WsConnection {
    max_frame: usize,
    max_message: usize,
    max_output_buffer: usize,
    keepalive: Option<Duration>,
    close_timeout: Duration,

    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<InFrame>,
    message: Option<Assembly>,
    control: Vec<u8>,
    scratch: Vec<u8>,
    /// A message buffer given back by `send` (or `recycle`), reused for the
    /// next incoming message: an echo allocates nothing per message.
    spare: Vec<u8>,
    /// permessage-deflate, if negotiated (24 bytes; the zlib state itself
    /// is allocated only while needed, see [`DeflateCodec`]).
    codec: Option<DeflateCodec>,

    events: VecDeque<WsEvent>,
    out: Vec<u8>,
    out_pos: usize,

    /// A Close frame has been decided (maybe still deferred, see below).
    close_sent: bool,
    /// A Close caused by *input* waits here until the application has
    /// taken the events before it, so that messages received before the
    /// offending frame can still be answered ahead of the Close.
    deferred_close: Option<Vec<u8>>,
    /// The Close frame is in the output buffer.
    close_written: bool,
    close_received: bool,
    /// Input is ignored from now on (stream out of sync or closed).
    input_done: bool,
    tcp_close: bool,
    closed_emitted: bool,
    /// The code we sent / the peer sent, for the Closed event.
    our_close: Option<(u16, String)>,
    peer_close: Option<(Option<u16>, String)>,

    last_rx: Instant,
    ping_deadline: Option<Instant>,
    close_deadline: Option<Instant>,
}

impl WsConnection {
    /// A connection right after a successful handshake.
    pub fn new(now: Instant, config: &WsConfig, deflate: Option<DeflateParams>) -> Self {
        WsConnection {
            max_frame: config.max_frame,
            max_message: config.max_message,
            max_output_buffer: config.max_output_buffer,
            keepalive: config.keepalive_ping,
            close_timeout: config.close_timeout,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: None,
            control: Vec::new(),
            scratch: Vec::new(),
            spare: Vec::new(),
            codec: deflate.map(DeflateCodec::new),
            events: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            close_sent: false,
            deferred_close: None,
            close_written: false,
            close_received: false,
            input_done: false,
            tcp_close: false,
            closed_emitted: false,
            our_close: None,
            peer_close: None,
            last_rx: now,
            ping_deadline: None,
            close_deadline: None,
        }
    }

    /// The negotiated permessage-deflate parameters, if any.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.codec.as_ref().map(|c| c.params())
    }

    /// Consume bytes received from TCP. Never fails: violations turn into
    /// [`WsEvent::Error`] plus a queued Close frame.
    pub fn handle_input(&mut self, now: Instant, mut data: &[u8]) {
        if self.input_done || data.is_empty() {
            return;
        }
        self.last_rx = now;
        self.ping_deadline = None;
        while !data.is_empty() && !self.input_done {
            if self.frame.is_none() {
                let take = (MAX_HEADER_LEN - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
                match FrameHeader::parse(&self.header[..self.header_len + take]) {
                    Ok(None) => {
                        self.header_len += take;
                        data = &data[take..];
                    }
                    Ok(Some((h, n))) => {
                        data = &data[n - self.header_len..];
                        self.header_len = 0;
                        if let Err(e) = self.begin_frame(now, h) {
                            // The header itself broke a rule: stop reading.
                            self.fail(now, e, false);
                        }
                    }
                    Err(e) => self.fail(now, e, false),
                }
            } else {
                let n = match &self.frame {
                    Some(f) => (f.remaining.min(data.len() as u64)) as usize,
                    None => 0,
                };
                let (chunk, rest) = data.split_at(n);
                data = rest;
                if let Err(e) = self.payload(chunk) {
                    self.fail(now, e, true);
                }
                if matches!(&self.frame, Some(f) if f.remaining == 0) {
                    self.end_frame(now);
                }
            }
        }
    }

    /// Section 5.2-5.5 rules that need connection state.
    fn begin_frame(&mut self, now: Instant, h: FrameHeader) -> Result<(), WsError> {
        // Section 5.1: a server MUST close on an unmasked client frame.
        if h.mask.is_none() {
            return Err(WsError::UnmaskedFrame);
        }
        if h.rsv2 || h.rsv3 {
            return Err(WsError::ReservedBits);
        }
        // RSV1 means "compressed" (RFC 7692 section 6): only on the first
        // frame of a data message, only if deflate was negotiated.
        if h.rsv1 && !(self.codec.is_some() && matches!(h.opcode, OpCode::Text | OpCode::Binary)) {
            return Err(WsError::ReservedBits);
        }
        if h.payload_len > self.max_frame as u64 {
            return Err(WsError::FrameTooLarge {
                len: h.payload_len,
                max: self.max_frame,
            });
        }
        // While closing, data frames are skipped; control frames are still
        // read so that the peer's Close can complete the handshake.
        let skip = self.close_sent && !h.opcode.is_control();
        match h.opcode {
            OpCode::Continuation => {
                if self.message.is_none() && !skip {
                    return Err(WsError::UnexpectedContinuation);
                }
            }
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(WsError::ExpectedContinuation);
                }
                if !skip {
                    self.message = Some(Assembly {
                        text: h.opcode == OpCode::Text,
                        compressed: h.rsv1,
                        buf: std::mem::take(&mut self.spare),
                        utf8: Utf8Validator::new(),
                    });
                }
            }
            _ => self.control.clear(),
        }
        if !h.opcode.is_control() && !skip {
            if let Some(m) = &self.message {
                if !m.compressed && m.buf.len() as u64 + h.payload_len > self.max_message as u64 {
                    return Err(WsError::MessageTooLarge {
                        max: self.max_message,
                    });
                }
            }
        }
        self.frame = Some(InFrame {
            header: h,
            remaining: h.payload_len,
            offset: 0,
            skip,
        });
        if h.payload_len == 0 {
            self.end_frame(now);
        }
        Ok(())
    }

    /// A piece of the current frame's payload.
    fn payload(&mut self, chunk: &[u8]) -> Result<(), WsError> {
        let Some(f) = self.frame.as_mut() else {
            return Ok(());
        };
        let key = f.header.mask.unwrap_or([0; 4]);
        let offset = f.offset;
        f.offset += chunk.len();
        f.remaining -= chunk.len() as u64;
        if f.skip {
            return Ok(());
        }
        if f.header.opcode.is_control() {
            let start = self.control.len();
            self.control.extend_from_slice(chunk);
            apply_mask(&mut self.control[start..], key, offset);
            return Ok(());
        }
        let Some(m) = self.message.as_mut() else {
            return Ok(());
        };
        let start = m.buf.len();
        if m.compressed {
            self.scratch.clear();
            self.scratch.extend_from_slice(chunk);
            apply_mask(&mut self.scratch, key, offset);
            if let Some(c) = self.codec.as_mut() {
                c.decompress_chunk(&self.scratch, &mut m.buf, self.max_message)?;
            }
            if self.scratch.capacity() > 1 << 20 {
                self.scratch = Vec::new();
            }
        } else {
            m.buf.extend_from_slice(chunk);
            apply_mask(&mut m.buf[start..], key, offset);
        }
        if m.text {
            m.utf8
                .feed(&m.buf[start..])
                .map_err(|e| WsError::InvalidUtf8 {
                    position: e.position,
                })?;
        }
        Ok(())
    }

    fn end_frame(&mut self, now: Instant) {
        let Some(f) = self.frame.take() else { return };
        let h = f.header;
        if f.skip {
            return;
        }
        let result = match h.opcode {
            OpCode::Ping => {
                if !self.close_sent {
                    if self.output_pending() > self.max_output_buffer {
                        Err(WsError::OutputBufferFull {
                            pending: self.output_pending(),
                            max: self.max_output_buffer,
                        })
                    } else {
                        // Section 5.5.2: Pong with the same application data.
                        let payload = std::mem::take(&mut self.control);
                        emit_frame(self.out_buf(), OpCode::Pong, false, &payload);
                        Ok(())
                    }
                } else {
                    Ok(())
                }
            }
            OpCode::Pong => {
                // Section 5.5.3: an unsolicited pong is fine; report it.
                self.events
                    .push_back(WsEvent::Pong(std::mem::take(&mut self.control)));
                Ok(())
            }
            OpCode::Close => {
                if let Err(e) = self.received_close(now) {
                    // The peer already sent its (broken) Close: there is
                    // nothing left to wait for.
                    self.fail(now, e, false);
                }
                Ok(())
            }
            _ if h.fin => self.finish_message(),
            _ => Ok(()),
        };
        if let Err(e) = result {
            self.fail(now, e, true);
        }
    }

    fn finish_message(&mut self) -> Result<(), WsError> {
        let Some(mut m) = self.message.take() else {
            return Ok(());
        };
        self.scratch = Vec::new();
        if m.compressed {
            let start = m.buf.len();
            if let Some(c) = self.codec.as_mut() {
                c.finish_message(&mut m.buf, self.max_message)?;
            }
            if m.text {
                m.utf8
                    .feed(&m.buf[start..])
                    .map_err(|e| WsError::InvalidUtf8 {
                        position: e.position,
                    })?;
            }
        }
        let msg = if m.text {
            if !m.utf8.is_complete() {
                return Err(WsError::InvalidUtf8 {
                    position: m.buf.len(),
                });
            }
            match String::from_utf8(m.buf) {
                Ok(s) => Message::Text(s),
                Err(e) => {
                    return Err(WsError::InvalidUtf8 {
                        position: e.utf8_error().valid_up_to(),
                    })
                }
            }
        } else {
            Message::Binary(m.buf)
        };
        self.push_event(WsEvent::Message(msg));
        Ok(())
    }

    /// Section 5.5.1 and 7.4: validate the Close payload, echo it.
    fn received_close(&mut self, _now: Instant) -> Result<(), WsError> {
        let p = std::mem::take(&mut self.control);
        let (code, reason) = match p.len() {
            0 => (None, String::new()),
            1 => return Err(WsError::CloseFrameTooShort),
            _ => {
                let code = u16::from_be_bytes([p[0], p[1]]);
                if !close_code::is_valid_on_wire(code) {
                    return Err(WsError::InvalidCloseCode(code));
                }
                let reason =
                    String::from_utf8(p[2..].to_vec()).map_err(|_| WsError::InvalidCloseReason)?;
                (Some(code), reason)
            }
        };
        self.close_received = true;
        self.input_done = true;
        self.peer_close = Some((code, reason));
        if !self.close_sent {
            // Echo the status code (section 5.5.1); an empty Close gets an
            // empty Close.
            let payload = code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default();
            self.deferred_close = Some(payload);
            self.close_sent = true;
        }
        self.tcp_close = true;
        self.emit_closed(true);
        Ok(())
    }

    /// Fail the connection (section 7.1.7). `in_sync`: the frame structure
    /// is intact, so we can still find the peer's Close.
    fn fail(&mut self, now: Instant, e: WsError, in_sync: bool) {
        log::debug!("websocket: failing connection: {e}");
        let code = e.close_code();
        let reason = e.to_string();
        self.push_event(WsEvent::Error(e));
        self.message = None;
        if let Some(f) = self.frame.as_mut() {
            if !f.header.opcode.is_control() {
                f.skip = true;
            }
        }
        let already_closing = self.close_sent;
        self.send_close(now, code, &reason, true);
        if !in_sync || already_closing {
            self.input_done = true;
            self.frame = None;
            self.tcp_close = true;
            self.emit_closed(false);
        }
    }

    /// Decide on a Close frame: written now, or (`defer`) when the
    /// application has taken the events queued before it.
    fn send_close(&mut self, now: Instant, code: u16, reason: &str, defer: bool) {
        if self.close_sent {
            return;
        }
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let reason = &reason[..end];
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        if defer {
            self.deferred_close = Some(payload);
        } else {
            emit_frame(self.out_buf(), OpCode::Close, false, &payload);
            self.close_written = true;
        }
        self.close_sent = true;
        self.our_close = Some((code, reason.to_string()));
        self.close_deadline = Some(now + self.close_timeout);
    }

    fn emit_closed(&mut self, clean: bool) {
        if self.closed_emitted {
            return;
        }
        self.closed_emitted = true;
        let (code, reason) = match (&self.peer_close, &self.our_close) {
            (Some((c, r)), _) => (*c, r.clone()),
            (None, Some((c, r))) => (Some(*c), r.clone()),
            (None, None) => (Some(close_code::ABNORMAL), String::new()),
        };
        self.push_event(WsEvent::Closed {
            code,
            reason,
            clean,
        });
    }

    /// The next event, if any.
    #[must_use]
    ///
    /// A Close frame provoked by the peer (an echo, or a protocol error) is
    /// written to the output when the application takes the corresponding
    /// [`WsEvent::Error`] / [`WsEvent::Closed`] (or finds the queue empty):
    /// replies to messages received before it thus go out first. So drain
    /// `poll_event` before writing output.
    pub fn poll_event(&mut self) -> Option<WsEvent> {
        let ev = self.events.pop_front();
        if self.events.is_empty() && self.events.capacity() > 0 {
            // Idle connections hold no queue memory (the per-thread spares
            // keep it for the next message: crate::spare).
            crate::spare::give_deque(std::mem::take(&mut self.events));
        }
        if matches!(
            ev,
            None | Some(WsEvent::Error(_)) | Some(WsEvent::Closed { .. })
        ) {
            self.flush_deferred_close();
        }
        ev
    }

    fn flush_deferred_close(&mut self) {
        if let Some(payload) = self.deferred_close.take() {
            emit_frame(self.out_buf(), OpCode::Close, false, &payload);
            self.close_written = true;
        }
    }

    /// Queue a message as one unmasked frame (compressed if deflate was
    /// negotiated).
    pub fn send(&mut self, msg: Message) -> Result<(), WsError> {
        if self.close_written || (self.close_sent && self.deferred_close.is_none()) {
            return Err(WsError::Closing);
        }
        if self.output_pending() > self.max_output_buffer {
            return Err(WsError::OutputBufferFull {
                pending: self.output_pending(),
                max: self.max_output_buffer,
            });
        }
        let (opcode, data): (OpCode, &[u8]) = match &msg {
            Message::Text(s) => (OpCode::Text, s.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        match self.codec.as_mut() {
            Some(c) => {
                let z = c.compress_message(data);
                emit_frame(self.out_buf(), opcode, true, &z);
            }
            None => emit_frame(self.out_buf(), opcode, false, data),
        }
        self.recycle(msg);
        Ok(())
    }

    /// Give a received message's buffer back for reuse (kept only if small,
    /// so an idle connection does not hold a big buffer).
    pub fn recycle(&mut self, msg: Message) {
        let mut buf = match msg {
            Message::Text(s) => s.into_bytes(),
            Message::Binary(b) => b,
        };
        if buf.capacity() <= SPARE_MAX && buf.capacity() > self.spare.capacity() {
            buf.clear();
            self.spare = buf;
        }
    }

    /// Send a ping (e.g. to measure round-trip time); the answer arrives as
    /// [`WsEvent::Pong`]. At most 125 bytes of `payload` are used.
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), WsError> {
        if self.close_sent {
            return Err(WsError::Closing);
        }
        emit_frame(
            self.out_buf(),
            OpCode::Ping,
            false,
            &payload[..payload.len().min(125)],
        );
        Ok(())
    }

    /// Start the closing handshake. A code that may not be sent (1005,
    /// 1006, 1015, out of range) is replaced by 1000; the reason is cut to
    /// 123 bytes. `now` starts the close timeout.
    pub fn close(&mut self, now: Instant, code: u16, reason: &str) {
        let code = if close_code::is_valid_on_wire(code) {
            code
        } else {
            close_code::NORMAL
        };
        // A Close already decided (deferred) goes out first.
        self.flush_deferred_close();
        self.send_close(now, code, reason, false);
    }

    /// Copy output bytes into `buf`; returns how many.
    pub fn poll_output(&mut self, buf: &mut [u8]) -> usize {
        let chunk = self.output_chunk();
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume_output(n);
        n
    }

    /// The pending output without copying; call [`Self::consume_output`]
    /// with the number of bytes TCP accepted.
    pub fn output_chunk(&self) -> &[u8] {
        &self.out[self.out_pos..]
    }

    /// The output buffer, taken from the per-thread spares if this
    /// connection released its own.
    fn out_buf(&mut self) -> &mut Vec<u8> {
        if self.out.capacity() == 0 {
            self.out = crate::spare::take_vec();
        }
        &mut self.out
    }

    fn push_event(&mut self, ev: WsEvent) {
        if self.events.capacity() == 0 {
            self.events = crate::spare::take_deque();
        }
        self.events.push_back(ev);
    }

    /// Mark `n` bytes of [`Self::output_chunk`] as written.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = (self.out_pos + n).min(self.out.len());
        if self.out_pos == self.out.len() {
            // Everything written: give the memory back (an idle connection
            // holds no output buffer; the next message takes a spare).
            crate::spare::give_vec(std::mem::take(&mut self.out));
            self.out_pos = 0;
        } else if self.out_pos > 1 << 20 && self.out_pos * 2 > self.out.len() {
            // Amortised compaction: moves at most as much as was consumed.
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Bytes waiting to be written to TCP.
    pub fn output_pending(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// The peer closed its side of TCP (FIN) or the connection was reset.
    pub fn handle_eof(&mut self, _now: Instant) {
        self.input_done = true;
        self.tcp_close = true;
        if !self.close_received {
            // 1006: closed without a Close frame (section 7.1.5).
            if self.peer_close.is_none() {
                self.peer_close = Some((Some(close_code::ABNORMAL), String::new()));
            }
            self.emit_closed(false);
        }
    }

    /// Run timers: keepalive ping, keepalive expiry, close timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(d) = self.close_deadline {
            if self.close_sent && !self.close_received && now >= d {
                self.input_done = true;
                self.tcp_close = true;
                self.push_event(WsEvent::Error(WsError::CloseTimeout));
                self.emit_closed(false);
                self.close_deadline = None;
                return;
            }
        }
        if self.close_sent {
            return;
        }
        let Some(k) = self.keepalive else { return };
        if let Some(d) = self.ping_deadline {
            if now >= d {
                self.fail(now, WsError::KeepaliveTimeout, true);
                self.flush_deferred_close();
            }
        } else if now >= self.last_rx + k {
            emit_frame(self.out_buf(), OpCode::Ping, false, b"keepalive");
            self.ping_deadline = Some(now + k);
        }
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        if self.tcp_close {
            return None;
        }
        if self.close_sent {
            return self.close_deadline;
        }
        let keep = self
            .keepalive
            .map(|k| self.ping_deadline.unwrap_or(self.last_rx + k));
        min_deadline(keep, self.close_deadline)
    }

    /// True once the server should close TCP: after the closing handshake
    /// (section 7.1.1: the server closes first), after a fatal framing
    /// error, a close timeout, or EOF. Write the remaining output first.
    pub fn wants_tcp_close(&self) -> bool {
        self.tcp_close && self.deferred_close.is_none()
    }

    /// True once we sent a Close frame (no more messages can be sent).
    pub fn is_closing(&self) -> bool {
        self.close_sent
    }
}

#[cfg(test)]
mod tests;
