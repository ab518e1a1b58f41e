//! The web service: HTTP/1.1 on one port, with WebSocket endpoints reached
//! by the upgrade (`/ws/echo`, `/ws/chat/<room>`, `/ws/stats`).
//!
//! This is glue only. The protocols are sans-IO codecs in [`crate::http`]
//! and [`crate::ws`]; this module moves bytes between them and TCP sockets,
//! through the public socket API of [`Stack`] and nothing else:
//!
//! ```text
//!   stack.recv ──► HttpConnection::handle_input ──► (route, body sink)
//!   stack.send ◄── HttpConnection::poll_output   ◄── (headers, streamed body)
//!        │ upgrade: take_upgrade() ──► ws::handshake ──► 101 ──► WsConnection
//!   stack.recv ──► WsConnection::handle_input ──► WsEvent::Message ──► endpoint
//!   stack.send ◄── WsConnection::output_chunk  ◄── send(Message) (echo, broker, stats push)
//! ```
//!
//! Backpressure: bytes a codec does not take yet stay in `pending` and the
//! socket is not read further, so the TCP receive window closes on a client
//! that sends faster than we answer; output is written only as far as the
//! socket's send buffer has room, so a client that does not read fills its
//! window and ours, never our memory (the WebSocket codec bounds its own
//! output queue, and a chat member that cannot keep up is closed with 1008).
//!
//! Closing: a connection that must end is half-closed (FIN) and then read
//! and discarded until the peer closes too or a linger timeout passes
//! ("lingering close"), so a final response is never destroyed by a RST
//! caused by unread request bytes.

use super::handles::HandleMap;
use super::ladder::LadderFeed;
use super::stats::{stats_json, DeviceStats};
use super::Service;
use crate::hash::FastMap;
use crate::http::{self, HttpConnection, ServerConfig, Site, Version};
use crate::iface::Stack;
use crate::tcp::{ListenerHandle, SocketHandle, TcpError};
use crate::time::{min_deadline, Duration, Instant};
use crate::timer::TimerQueue;
use crate::ws::{self, Broker, Message, WsConfig, WsConnection, WsEvent};
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

/// The chat sub-protocol (RFC 6455 1.9).
pub const CHAT_PROTOCOL: &str = "chat.v1";

/// Settings of the web service.
#[derive(Clone, Debug)]
pub struct WebConfig {
    pub port: u16,
    pub www: Option<PathBuf>,
    pub http: http::HttpLimits,
    pub ws: WsConfig,
    /// Concurrent connections served; more are refused with RST.
    /// `App::build` sets it to the stack's `max_connections`.
    pub max_connections: usize,
    /// Listen backlog.
    pub backlog: usize,
    /// How long a closing connection is drained before it is dropped.
    pub linger: Duration,
    /// Interval of the `/ws/stats` push.
    pub stats_interval: Duration,
    /// A WebSocket connection whose output makes no progress for this long
    /// (a client that stopped reading) is aborted and its memory freed.
    pub ws_send_timeout: Duration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            port: 80,
            www: None,
            http: http::HttpLimits::default(),
            ws: WsConfig::default(),
            max_connections: 20_000,
            backlog: 4096,
            linger: Duration::from_secs(5),
            stats_interval: Duration::from_secs(1),
            ws_send_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    Echo,
    Chat(String),
    Stats,
}

/// Which WebSocket endpoint a path names, if any.
fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        "/ws/echo" => Some(Endpoint::Echo),
        "/ws/stats" => Some(Endpoint::Stats),
        _ => {
            let room = path.strip_prefix("/ws/chat/")?;
            ws::broker::valid_room_name(room).then(|| Endpoint::Chat(room.to_string()))
        }
    }
}

struct WsConn {
    ws: WsConnection,
    endpoint: Endpoint,
    id: ws::broker::ConnId,
}

enum Proto {
    Http(Box<HttpConnection>),
    Ws(Box<WsConn>),
    /// Our side is done (FIN sent): drain input until EOF or the deadline.
    Lingering {
        until: Instant,
    },
}

struct Conn {
    proto: Proto,
    /// Received bytes the codec has not taken yet.
    pending: Vec<u8>,
    /// Bytes to write before the codec's own output (a 101 or an error answer).
    prefix: Vec<u8>,
    /// Close (lingering) once `prefix` is written.
    close_after_prefix: bool,
    eof: bool,
    scheduled: Option<Instant>,
    /// Last time output moved (or there was none waiting).
    out_progress: Instant,
}

/// Finished HTTP connections kept for reuse.
const HTTP_POOL: usize = 64;

/// A fresh HTTP connection, recycled from an earlier one if possible.
///
/// The pool holds the very boxes the connection table held (`vec_box`):
/// recycling moves a pointer, not the connection, and allocates nothing.
#[allow(clippy::vec_box)]
fn new_http(
    pool: &mut Vec<Box<HttpConnection>>,
    config: &std::sync::Arc<ServerConfig>,
    now: Instant,
) -> Box<HttpConnection> {
    match pool.pop() {
        Some(mut hc) => {
            hc.reuse(now);
            hc
        }
        None => Box::new(HttpConnection::new(now, config.clone())),
    }
}

#[allow(clippy::vec_box)] // see `new_http`
fn recycle_http(pool: &mut Vec<Box<HttpConnection>>, hc: Box<HttpConnection>) {
    if pool.len() < HTTP_POOL {
        pool.push(hc);
    }
}

/// What the HTTP code may ask of the glue.
struct Ctx<'a> {
    stack: &'a Stack,
    device: &'a DeviceStats,
    now: Instant,
}

impl http::Context for Ctx<'_> {
    fn stats_json(&mut self) -> String {
        stats_json(self.stack, self.device, self.now.total_millis())
    }
    fn ladder(&mut self, query: Option<&str>) -> Option<(u16, &'static str, String)> {
        Some(super::ladder::http_response(self.stack, self.now, query))
    }
    fn websocket_route(&self, path: &str) -> bool {
        endpoint_of(path).is_some()
    }
}

/// The HTTP + WebSocket service.
pub struct Web {
    cfg: WebConfig,
    http: Arc<ServerConfig>,
    conns: HandleMap<Conn>,
    ids: FastMap<ws::broker::ConnId, SocketHandle>,
    next_id: ws::broker::ConnId,
    broker: Broker,
    stats_subscribers: Vec<SocketHandle>,
    next_stats_push: Option<Instant>,
    /// The connection each stats subscriber selected (live ladder).
    ladder: LadderFeed,
    /// Connection deadlines, lazily deleted (see `crate::timer`).
    timers: TimerQueue<SocketHandle>,
    device: Rc<RefCell<DeviceStats>>,
    /// Finished HTTP connections kept for reuse (at most [`HTTP_POOL`]):
    /// their buffers are already allocated.
    #[allow(clippy::vec_box)] // see `new_http`
    http_pool: Vec<Box<HttpConnection>>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    shutting_down: bool,
}

impl Web {
    pub fn new(cfg: WebConfig, device: Rc<RefCell<DeviceStats>>) -> Web {
        let site = match &cfg.www {
            Some(dir) => Site::Dir(dir.clone()),
            None => Site::Embedded,
        };
        let http = Arc::new(ServerConfig {
            limits: cfg.http.clone(),
            site,
        });
        Web {
            cfg,
            http,
            conns: HandleMap::new(),
            ids: FastMap::default(),
            next_id: 1,
            broker: Broker::new(),
            stats_subscribers: Vec::new(),
            next_stats_push: None,
            ladder: LadderFeed::default(),
            timers: TimerQueue::new(),
            device,
            http_pool: Vec::new(),
            rbuf: vec![0; 64 * 1024],
            wbuf: vec![0; 64 * 1024],
            shutting_down: false,
        }
    }

    /// Read, feed the codec, act on WebSocket events, write: until nothing moves.
    fn drive(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        for _ in 0..64 {
            if !self.conns.contains_key(&h) {
                return;
            }
            let (mut moved, drained) = self.read_and_feed(now, stack, h);
            if !self.conns.contains_key(&h) {
                return;
            }
            let upgraded = self.handle_upgrade(now, stack, h);
            moved |= upgraded;
            moved |= self.handle_ws_events(now, stack, h);
            moved |= self.flush(now, stack, h);
            if self.check_close(now, stack, h) || !moved {
                break;
            }
            // Another round only if input may still wait: TCP's receive
            // buffer was not drained (the codec refused some of it, to take
            // it once its output has moved), or a new codec took over.
            if drained && !upgraded {
                break;
            }
        }
        self.schedule(h);
    }

    /// Returns (any input consumed, TCP's receive buffer drained: nothing
    /// left unread and nothing pending).
    fn read_and_feed(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) -> (bool, bool) {
        let mut moved = false;
        loop {
            let device = self.device.borrow();
            let Some(conn) = self.conns.get_mut(&h) else {
                return (moved, true);
            };
            // Feed what is waiting first.
            if !conn.pending.is_empty() {
                let pending = std::mem::take(&mut conn.pending);
                let used = feed(conn, now, &pending, stack, &device);
                moved |= used > 0;
                conn.pending = pending[used..].to_vec();
                if !conn.pending.is_empty() {
                    return (moved, false); // the codec is full: leave the rest in TCP
                }
            }
            if !accepts_input(conn) {
                return (moved, false);
            }
            drop(device);
            match stack.recv(h, &mut self.rbuf) {
                Ok(0) => {
                    let conn = self.conns.get_mut(&h).expect("present");
                    if !conn.eof {
                        conn.eof = true;
                        match &mut conn.proto {
                            Proto::Http(hc) => hc.handle_eof(now),
                            Proto::Ws(w) => w.ws.handle_eof(now),
                            Proto::Lingering { .. } => {}
                        }
                        moved = true;
                    }
                    return (moved, true);
                }
                Ok(n) => {
                    let device = self.device.borrow();
                    let conn = self.conns.get_mut(&h).expect("present");
                    let used = feed(conn, now, &self.rbuf[..n], stack, &device);
                    if used < n {
                        conn.pending.extend_from_slice(&self.rbuf[used..n]);
                    }
                    moved = true;
                }
                Err(TcpError::WouldBlock) => return (moved, true),
                Err(e) => {
                    log::debug!("web {h:?}: connection ended: {e}");
                    drop(self.device.borrow());
                    self.remove(now, stack, h, false);
                    return (true, true);
                }
            }
        }
    }

    fn handle_upgrade(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) -> bool {
        let Some(conn) = self.conns.get_mut(&h) else {
            return false;
        };
        let Proto::Http(hc) = &mut conn.proto else {
            return false;
        };
        let Some(up) = hc.take_upgrade() else {
            return false;
        };
        // Anything the HTTP side still has to say goes out first.
        {
            let device = self.device.borrow();
            let mut ctx = Ctx {
                stack,
                device: &device,
                now,
            };
            loop {
                let n = hc.poll_output(now, &mut self.wbuf, &mut ctx);
                if n == 0 {
                    break;
                }
                conn.prefix.extend_from_slice(&self.wbuf[..n]);
            }
        }
        let req = &up.request;
        let headers: Vec<(&str, &[u8])> = req
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        let hreq = ws::HandshakeRequest {
            method: req.method.as_str(),
            path: &req.path,
            version_minor: if req.version == Version::Http10 { 0 } else { 1 },
            headers: &headers,
        };
        let endpoint = endpoint_of(&req.path);
        let protocols: &[&str] = match endpoint {
            Some(Endpoint::Chat(_)) => &[CHAT_PROTOCOL],
            _ => &[],
        };
        let outcome = match &endpoint {
            None => ws::HandshakeOutcome::Reject {
                response: ws::handshake::error_response(
                    404,
                    "no such WebSocket endpoint\n",
                    true,
                    &[],
                ),
                close: true,
                error: ws::HandshakeError::MethodNotGet,
            },
            Some(_) => ws::handshake(&hreq, protocols, &self.cfg.ws),
        };
        match outcome {
            ws::HandshakeOutcome::Accept {
                response,
                protocol,
                deflate,
            } => {
                let endpoint = endpoint.expect("accepted endpoint");
                log::debug!(
                    "web {h:?}: WebSocket {:?} (protocol {protocol:?}, deflate {deflate:?})",
                    endpoint
                );
                conn.prefix.extend_from_slice(&response);
                let id = self.next_id;
                self.next_id += 1;
                let mut wsc = WsConnection::new(now, &self.cfg.ws, deflate);
                if !up.leftover.is_empty() {
                    wsc.handle_input(now, &up.leftover);
                }
                conn.proto = Proto::Ws(Box::new(WsConn {
                    ws: wsc,
                    endpoint: endpoint.clone(),
                    id,
                }));
                self.ids.insert(id, h);
                match endpoint {
                    Endpoint::Chat(room) => {
                        let notices = self.broker.join(&room, id);
                        self.deliver(now, stack, notices);
                    }
                    Endpoint::Stats => {
                        self.stats_subscribers.push(h);
                        self.ladder.subscribe(stack, h);
                        // The first push goes out at once.
                        self.push_stats_to(now, stack, h);
                        if self.next_stats_push.is_none() {
                            self.next_stats_push = Some(now + self.cfg.stats_interval);
                        }
                    }
                    Endpoint::Echo => {}
                }
            }
            ws::HandshakeOutcome::Reject {
                response,
                close,
                error,
            } => {
                log::debug!("web {h:?}: WebSocket handshake refused: {error}");
                conn.prefix.extend_from_slice(&response);
                if close {
                    conn.close_after_prefix = true;
                    let fresh = new_http(&mut self.http_pool, &self.http, now);
                    if let Proto::Http(old) = std::mem::replace(&mut conn.proto, Proto::Http(fresh))
                    {
                        recycle_http(&mut self.http_pool, old);
                    }
                } else {
                    // The client may try again on the same connection (426).
                    let mut fresh = new_http(&mut self.http_pool, &self.http, now);
                    if !up.leftover.is_empty() {
                        let device = self.device.borrow();
                        let mut ctx = Ctx {
                            stack,
                            device: &device,
                            now,
                        };
                        let used = fresh.handle_input(now, &up.leftover, &mut ctx);
                        conn.pending.extend_from_slice(&up.leftover[used..]);
                    }
                    if let Proto::Http(old) = std::mem::replace(&mut conn.proto, Proto::Http(fresh))
                    {
                        recycle_http(&mut self.http_pool, old);
                    }
                }
            }
        }
        true
    }

    fn handle_ws_events(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) -> bool {
        let mut moved = false;
        let mut deliveries = Vec::new();
        let mut closed = false;
        let mut push_stats = false;
        {
            let Some(conn) = self.conns.get_mut(&h) else {
                return false;
            };
            let Proto::Ws(w) = &mut conn.proto else {
                return false;
            };
            while let Some(ev) = w.ws.poll_event() {
                moved = true;
                match ev {
                    WsEvent::Message(msg) => match &w.endpoint {
                        Endpoint::Echo => {
                            if let Err(e) = w.ws.send(msg) {
                                log::debug!("web {h:?}: echo refused: {e}");
                                w.ws.close(
                                    now,
                                    ws::close_code::POLICY_VIOLATION,
                                    "output buffer full",
                                );
                            }
                        }
                        Endpoint::Chat(room) => {
                            deliveries.extend(self.broker.publish(room, w.id, &msg))
                        }
                        Endpoint::Stats => {
                            if let Message::Text(t) = &msg {
                                push_stats |= self.ladder.message(stack, h, t);
                            }
                        }
                    },
                    WsEvent::Pong(_) => {}
                    WsEvent::Error(e) => log::debug!("web {h:?}: WebSocket protocol error: {e}"),
                    WsEvent::Closed { code, clean, .. } => {
                        log::debug!("web {h:?}: WebSocket closed (code {code:?}, clean {clean})");
                        closed = true;
                    }
                }
            }
        }
        if closed {
            self.leave_room(now, stack, h);
        } else if push_stats {
            self.push_stats_to(now, stack, h);
        }
        self.deliver(now, stack, deliveries);
        moved
    }

    /// Send broker messages to their recipients and write them out.
    fn deliver(
        &mut self,
        now: Instant,
        stack: &mut Stack,
        deliveries: Vec<(ws::broker::ConnId, Message)>,
    ) {
        let mut touched = Vec::new();
        for (to, msg) in deliveries {
            let Some(&th) = self.ids.get(&to) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(&th) else {
                continue;
            };
            if let Proto::Ws(w) = &mut conn.proto {
                if w.ws.send(msg).is_err() {
                    // A member that cannot keep up is cut off (RFC 6455 7.4.1: 1008).
                    w.ws.close(now, ws::close_code::POLICY_VIOLATION, "too slow");
                }
                touched.push(th);
            }
        }
        touched.sort();
        touched.dedup();
        for th in touched {
            self.flush(now, stack, th);
            self.check_close(now, stack, th);
            self.schedule(th);
        }
    }

    fn leave_room(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        let Some(conn) = self.conns.get(&h) else {
            return;
        };
        let Proto::Ws(w) = &conn.proto else { return };
        let id = w.id;
        if let Endpoint::Chat(room) = &w.endpoint {
            let room = room.clone();
            let notices = self.broker.leave(&room, id);
            self.deliver(now, stack, notices);
        }
        self.stats_subscribers.retain(|s| *s != h);
        self.ladder.unsubscribe(stack, h);
    }

    /// Write as much output as the socket takes. True if anything was written.
    fn flush(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) -> bool {
        let device = self.device.borrow();
        let Some(conn) = self.conns.get_mut(&h) else {
            return false;
        };
        let mut wrote = false;
        while !conn.prefix.is_empty() {
            match stack.send(h, &conn.prefix) {
                Ok(n) => {
                    conn.prefix.drain(..n);
                    if conn.prefix.is_empty() {
                        conn.prefix = Vec::new(); // (the 101 is written: free it)
                    }
                    wrote = true;
                }
                Err(_) => return wrote,
            }
        }
        match &mut conn.proto {
            // The response is generated straight into TCP's send buffer.
            Proto::Http(hc) => loop {
                // At most 64 KiB per call (the ring grows as it fills, and a
                // small answer gets a small buffer).
                let cap = stack
                    .send_capacity(h)
                    .min(hc.output_ready().min(64 * 1024) as usize);
                let n = if cap == 0 {
                    0
                } else {
                    stack
                        .send_with(h, cap, |buf| hc.fill_output(now, buf))
                        .unwrap_or(0)
                };
                wrote |= n > 0;
                let more = {
                    let mut ctx = Ctx {
                        stack,
                        device: &device,
                        now,
                    };
                    hc.finish_output(now, &mut ctx)
                };
                if n == 0 && !more {
                    break;
                }
            },
            Proto::Ws(w) => loop {
                let chunk = w.ws.output_chunk();
                if chunk.is_empty() {
                    conn.out_progress = now; // nothing waiting
                    break;
                }
                match stack.send(h, chunk) {
                    Ok(n) => {
                        w.ws.consume_output(n);
                        wrote = true;
                        conn.out_progress = now;
                    }
                    Err(_) => break,
                }
            },
            Proto::Lingering { .. } => {}
        }
        wrote
    }

    /// Close what must close. True if the connection left the table or
    /// started lingering.
    fn check_close(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) -> bool {
        let Some(conn) = self.conns.get_mut(&h) else {
            return true;
        };
        let r = stack.readiness(h);
        if r.closed {
            self.remove(now, stack, h, false);
            return true;
        }
        if !conn.prefix.is_empty() {
            return false;
        }
        let done = conn.close_after_prefix
            || match &conn.proto {
                Proto::Http(hc) => {
                    hc.wants_close()
                        || (conn.eof
                            && conn.pending.is_empty()
                            && !hc.is_upgraded()
                            && hc.wants_close())
                }
                Proto::Ws(w) => w.ws.wants_tcp_close() && w.ws.output_pending() == 0,
                Proto::Lingering { until } => {
                    if conn.eof || now >= *until {
                        self.remove(now, stack, h, false);
                        return true;
                    }
                    false
                }
            };
        if done {
            self.start_linger(now, stack, h);
            return true;
        }
        false
    }

    fn start_linger(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        self.leave_room(now, stack, h);
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        if let Proto::Ws(w) = &conn.proto {
            self.ids.remove(&w.id);
        }
        let _ = stack.shutdown(h);
        conn.pending.clear();
        let old = std::mem::replace(
            &mut conn.proto,
            Proto::Lingering {
                until: now + self.cfg.linger,
            },
        );
        if let Proto::Http(hc) = old {
            recycle_http(&mut self.http_pool, hc);
        }
        if conn.eof {
            self.remove(now, stack, h, false);
        }
    }

    /// Forget a connection and release its socket (`abort` = RST).
    fn remove(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle, abort: bool) {
        self.leave_room(now, stack, h);
        if let Some(conn) = self.conns.remove(&h) {
            match conn.proto {
                Proto::Ws(w) => {
                    self.ids.remove(&w.id);
                }
                Proto::Http(hc) => recycle_http(&mut self.http_pool, hc),
                Proto::Lingering { .. } => {}
            }
        }
        if abort {
            stack.abort(h);
        } else {
            stack.close(h);
        }
    }

    fn schedule(&mut self, h: SocketHandle) {
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        let t = match &conn.proto {
            Proto::Http(hc) => hc.poll_at(),
            Proto::Ws(w) if w.ws.output_pending() > 0 => min_deadline(
                w.ws.poll_at(),
                Some(conn.out_progress + self.cfg.ws_send_timeout),
            ),
            Proto::Ws(w) => w.ws.poll_at(),
            Proto::Lingering { until } => Some(*until),
        };
        if let Some(t) = t {
            if conn.scheduled.is_none_or(|s| t < s) {
                conn.scheduled = Some(t);
                self.timers.push(t, h);
            }
        }
        let conns = &self.conns;
        self.timers.compact(conns.len(), |t, h| {
            conns.get(h).is_some_and(|c| c.scheduled == Some(t))
        });
    }

    fn push_stats_to(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        let mut json = stats_json(stack, &self.device.borrow(), now.total_millis());
        self.ladder.append(stack, h, &mut json);
        if let Some(Conn {
            proto: Proto::Ws(w),
            ..
        }) = self.conns.get_mut(&h)
        {
            // A subscriber that does not read loses pushes rather than growing memory.
            if w.ws.output_pending() < 256 * 1024 {
                let _ = w.ws.send(Message::Text(json));
            }
        }
        self.flush(now, stack, h);
    }
}

/// Whether the codec takes more input now.
fn accepts_input(conn: &Conn) -> bool {
    match &conn.proto {
        Proto::Http(hc) => !hc.is_upgraded(),
        // Backpressure: stop reading while a lot of output waits.
        Proto::Ws(w) => w.ws.output_pending() < 4 * 1024 * 1024,
        Proto::Lingering { .. } => true,
    }
}

/// Give bytes to the connection's codec; returns how many it took.
fn feed(conn: &mut Conn, now: Instant, data: &[u8], stack: &Stack, device: &DeviceStats) -> usize {
    match &mut conn.proto {
        Proto::Http(hc) => {
            let mut ctx = Ctx { stack, device, now };
            hc.handle_input(now, data, &mut ctx)
        }
        Proto::Ws(w) => {
            w.ws.handle_input(now, data);
            data.len()
        }
        Proto::Lingering { .. } => data.len(), // discarded
    }
}

impl Service for Web {
    fn name(&self) -> &'static str {
        "http"
    }

    fn start(&mut self, stack: &mut Stack) -> Result<Vec<ListenerHandle>, TcpError> {
        Ok(vec![stack.listen(self.cfg.port, self.cfg.backlog)?])
    }

    fn on_accept(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        if self.shutting_down || self.conns.len() >= self.cfg.max_connections {
            // Refuse cleanly: the connections already open keep their service.
            stack.abort(h);
            return;
        }
        let proto = Proto::Http(new_http(&mut self.http_pool, &self.http, now));
        self.conns.insert(
            h,
            Conn {
                proto,
                pending: Vec::new(),
                prefix: Vec::new(),
                close_after_prefix: false,
                eof: false,
                scheduled: None,
                out_progress: now,
            },
        );
        self.drive(now, stack, h);
    }

    fn owns(&self, h: SocketHandle) -> bool {
        self.conns.contains_key(&h)
    }

    fn on_socket(&mut self, now: Instant, stack: &mut Stack, h: SocketHandle) {
        self.drive(now, stack, h);
    }

    fn poll(&mut self, now: Instant, stack: &mut Stack) {
        while let Some((t, h)) = self.timers.pop_due(now) {
            let Some(conn) = self.conns.get_mut(&h) else {
                continue;
            };
            if conn.scheduled != Some(t) {
                continue;
            }
            conn.scheduled = None;
            match &mut conn.proto {
                Proto::Http(hc) => hc.handle_timeout(now),
                Proto::Ws(w) => {
                    if w.ws.output_pending() > 0
                        && now >= conn.out_progress + self.cfg.ws_send_timeout
                    {
                        // The client stopped reading: our output cannot move and
                        // no close frame could get through either. Abort (RST)
                        // and give the memory back.
                        log::debug!(
                            "web {h:?}: WebSocket output stalled for {:?}; aborting",
                            self.cfg.ws_send_timeout
                        );
                        self.remove(now, stack, h, true);
                        continue;
                    }
                    w.ws.handle_timeout(now)
                }
                Proto::Lingering { .. } => {}
            }
            self.drive(now, stack, h);
        }
        if let Some(t) = self.next_stats_push {
            if t <= now {
                if self.stats_subscribers.is_empty() {
                    self.next_stats_push = None;
                } else {
                    for h in self.stats_subscribers.clone() {
                        self.push_stats_to(now, stack, h);
                        self.check_close(now, stack, h);
                        self.schedule(h);
                    }
                    self.next_stats_push = Some(now + self.cfg.stats_interval);
                }
            }
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        let t = self.timers.next_deadline();
        min_deadline(t, self.next_stats_push)
    }

    fn shutdown(&mut self, now: Instant, stack: &mut Stack) {
        self.shutting_down = true;
        let handles: Vec<SocketHandle> = self.conns.keys().collect();
        for h in handles {
            if let Some(Conn {
                proto: Proto::Ws(w),
                ..
            }) = self.conns.get_mut(&h)
            {
                w.ws.close(now, ws::close_code::GOING_AWAY, "server shutting down");
                self.drive(now, stack, h);
            } else {
                self.start_linger(now, stack, h);
            }
        }
    }

    fn abort_all(&mut self, stack: &mut Stack) {
        for (h, _) in self.conns.drain() {
            stack.abort(h);
        }
        self.ids.clear();
        self.stats_subscribers.clear();
        self.ladder.clear(stack);
    }

    fn connections(&self) -> usize {
        self.conns.len()
    }

    fn timer_entries(&self) -> usize {
        self.timers.len()
    }

    fn trim_memory(&mut self) -> usize {
        // Recycled HTTP connections are only kept for the next burst.
        let pooled = self.http_pool.len() * std::mem::size_of::<HttpConnection>();
        self.http_pool = Vec::new();
        pooled
            + self.timers.shrink_if_sparse()
            + crate::ws::deflate::trim_pool()
            + crate::spare::trim::<crate::ws::WsEvent>()
            + crate::spare::trim::<u8>()
            + self.conns.shrink()
            + super::shrink_map(&mut self.ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(endpoint_of("/ws/echo"), Some(Endpoint::Echo));
        assert_eq!(endpoint_of("/ws/stats"), Some(Endpoint::Stats));
        assert_eq!(
            endpoint_of("/ws/chat/lobby"),
            Some(Endpoint::Chat("lobby".into()))
        );
        assert_eq!(endpoint_of("/ws/chat/"), None);
        assert_eq!(endpoint_of("/ws/chat/a%2Fb"), None);
        assert_eq!(endpoint_of("/ws/chat/../x"), None);
        assert_eq!(endpoint_of("/ws/other"), None);
    }
}
#[cfg(test)]
mod size_tests {
    /// The web service's state per idle WebSocket, x86_64: a `Conn` in the
    /// `conns` map (96 bytes + the 8-byte key) and the boxed `WsConn`
    /// (488 bytes, of which `WsConnection` is 456). Part of issue 6's
    /// 4096-byte budget per idle connection (see `Tcb`'s size pin and
    /// docs/benchmarks.md); raise these consciously.
    #[test]
    fn per_connection_state_is_pinned() {
        use std::mem::size_of;
        assert!(
            size_of::<super::Conn>() <= 104,
            "{}",
            size_of::<super::Conn>()
        );
        assert!(
            size_of::<super::WsConn>() <= 512,
            "{}",
            size_of::<super::WsConn>()
        );
    }
}
