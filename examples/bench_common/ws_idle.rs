//! A non-blocking client that opens many idle WebSocket connections (the
//! 100,000 idle connections target of issue 6). Shared by the
//! `examples/ws_idle.rs` load tool and the `tests/e2e_idle.rs` test.
//!
//! One thread, one epoll instance, std + libc only. Each connection is a
//! small state machine:
//!
//! ```text
//!   socket(NONBLOCK) ─ bind(source, port 0, IP_BIND_ADDRESS_NO_PORT) ─ connect
//!     ─► Connecting ──(EPOLLOUT, SO_ERROR = 0)──► write the upgrade request
//!     ─► Handshake ──(101 + correct Sec-WebSocket-Accept)──► Open (idle)
//! ```
//!
//! An open connection sends nothing by itself. It answers the server's
//! pings (ustack pings an idle WebSocket every 30 s) with pongs, so the
//! connections stay up as long as the tool runs; [`IdleClient::check`]
//! sends a text message and a ping on a sample of connections and waits
//! for the echo and the pong, proving the connections still work.
//!
//! Source addresses: the kernel picks the ephemeral port at `connect` time
//! (`IP_BIND_ADDRESS_NO_PORT`), so every source address has the whole
//! `net.ipv4.ip_local_port_range` for itself; several addresses give more
//! than 64k connections to one server port.
//!
//! Everything random (the handshake keys, the masks) comes from a seed.
#![allow(dead_code)] // each user takes what it needs
#![allow(unsafe_code)]

use base64::Engine;
use sha1::{Digest, Sha1};
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// What to open.
#[derive(Clone, Debug)]
pub struct Config {
    /// The server (ustack) address and port.
    pub target: SocketAddrV4,
    /// The request path (`/ws/echo`).
    pub path: String,
    /// Local source addresses; connection `i` uses `sources[i % len]`.
    pub sources: Vec<Ipv4Addr>,
    /// Connections to open.
    pub count: usize,
    /// Global number of the first connection (when several processes share
    /// one run): it picks the source address, the handshake key and the
    /// check message.
    pub first_index: usize,
    /// Connections being set up at the same time at most (SYN sent,
    /// handshake not finished): keeps the burst below the server's listen
    /// backlog and the TUN queue.
    pub parallel: usize,
    /// Seed of the handshake keys and masks.
    pub seed: u64,
    /// Offer permessage-deflate like a browser does
    /// (`permessage-deflate; client_max_window_bits`).
    pub deflate: bool,
    /// A connection that is not open after this long counts as failed.
    pub handshake_timeout: Duration,
}

impl Config {
    pub fn new(target: SocketAddrV4, sources: Vec<Ipv4Addr>, count: usize) -> Config {
        Config {
            target,
            path: "/ws/echo".into(),
            sources,
            count,
            first_index: 0,
            parallel: 256,
            seed: 1,
            deflate: false,
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections started (socket + connect).
    pub attempted: usize,
    /// Being set up now.
    pub in_flight: usize,
    /// Open (upgrade completed and checked) and not closed since.
    pub open: usize,
    /// Ever opened.
    pub opened: usize,
    /// Could not be opened (see [`IdleClient::errors`]).
    pub failed: usize,
    /// Open connections the server closed or reset later.
    pub closed_by_peer: usize,
    /// Server pings answered.
    pub pings_answered: u64,
    /// Handshakes in which the server accepted permessage-deflate.
    pub deflate_accepted: usize,
}

/// Result of [`IdleClient::check`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckResult {
    /// Connections in the sample (open ones only).
    pub sampled: usize,
    /// Echoes received with the right payload.
    pub echoed: usize,
    /// Pongs received with the right payload.
    pub ponged: usize,
    /// Echoes with a wrong payload.
    pub wrong: usize,
}

impl CheckResult {
    pub fn ok(&self) -> bool {
        self.sampled > 0
            && self.echoed == self.sampled
            && self.ponged == self.sampled
            && self.wrong == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// Not started yet.
    New,
    Connecting,
    /// Request (partly) written, waiting for the 101.
    Handshake,
    Open,
    Closed,
}

struct Conn {
    fd: RawFd,
    st: St,
    /// Request bytes written so far (Handshake).
    written: u16,
    /// The server accepted permessage-deflate.
    deflate: bool,
    /// ... and resets its window after every message.
    server_nct: bool,
    /// The inflater of the server's messages (with server context takeover
    /// it must live as long as the connection; created on first use).
    inflate: Option<Box<flate2::Decompress>>,
    /// Check replies outstanding: bit 0 echo, bit 1 pong.
    expect: u8,
    /// Milliseconds since the client started, when set-up began.
    started_ms: u32,
    /// Partial input (response head or an incomplete frame); usually empty
    /// (no allocation).
    rx: Vec<u8>,
    /// Output the socket did not take; usually empty.
    tx: Vec<u8>,
}

/// The client. See the module documentation.
pub struct IdleClient {
    cfg: Config,
    epfd: RawFd,
    conns: Vec<Conn>,
    next: usize,
    stats: Stats,
    errors: BTreeMap<String, usize>,
    t0: Instant,
    rng: u64,
    buf: Vec<u8>,
    check: CheckResult,
    last_scan_ms: u32,
}

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_HEAD: usize = 4096;

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// The hard RLIMIT_NOFILE (what an unprivileged raise can reach).
pub fn nofile_hard_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0).then_some(rl.rlim_max)
}

/// Raise RLIMIT_NOFILE to at least `want` (soft and, if needed, hard).
/// Returns the new soft limit, or a message saying why it could not.
pub fn raise_nofile(want: u64) -> Result<u64, String> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(format!("getrlimit(RLIMIT_NOFILE): {}", errno()));
    }
    if rl.rlim_cur >= want {
        return Ok(rl.rlim_cur);
    }
    let new = libc::rlimit {
        rlim_cur: want,
        rlim_max: rl.rlim_max.max(want),
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        let e = errno();
        let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open").unwrap_or_default();
        return Err(format!(
            "cannot raise RLIMIT_NOFILE to {want} (soft {}, hard {}; fs.nr_open {}): {e}; \
             raising the hard limit needs CAP_SYS_RESOURCE (root outside a container, \
             or `ulimit -Hn` by whoever may)",
            rl.rlim_cur,
            rl.rlim_max,
            nr_open.trim()
        ));
    }
    Ok(want)
}

impl IdleClient {
    pub fn new(cfg: Config) -> io::Result<IdleClient> {
        if cfg.sources.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no source address",
            ));
        }
        // SAFETY: epoll_create1 has no memory preconditions.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if epfd < 0 {
            return Err(errno());
        }
        let conns = (0..cfg.count)
            .map(|_| Conn {
                fd: -1,
                st: St::New,
                written: 0,
                deflate: false,
                server_nct: false,
                inflate: None,
                expect: 0,
                started_ms: 0,
                rx: Vec::new(),
                tx: Vec::new(),
            })
            .collect();
        Ok(IdleClient {
            rng: cfg.seed ^ 0x5753_4944_4c45,
            cfg,
            epfd,
            conns,
            next: 0,
            stats: Stats::default(),
            errors: BTreeMap::new(),
            t0: Instant::now(),
            buf: vec![0; 64 * 1024],
            check: CheckResult::default(),
            last_scan_ms: 0,
        })
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Why connections failed or closed: message -> count.
    pub fn errors(&self) -> &BTreeMap<String, usize> {
        &self.errors
    }

    /// All connections have been attempted and none is being set up.
    pub fn opening_done(&self) -> bool {
        self.next >= self.cfg.count && self.stats.in_flight == 0
    }

    fn now_ms(&self) -> u32 {
        self.t0.elapsed().as_millis().min(u32::MAX as u128) as u32
    }

    /// The `Sec-WebSocket-Key` of connection `i` (16 bytes from the seed).
    fn key(&self, i: usize) -> String {
        let g = (self.cfg.first_index + i) as u64;
        let mut x = self.cfg.seed ^ g.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&splitmix64(&mut x).to_le_bytes());
        k[8..].copy_from_slice(&splitmix64(&mut x).to_le_bytes());
        base64::engine::general_purpose::STANDARD.encode(k)
    }

    fn request(&self, i: usize) -> Vec<u8> {
        let mut r = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.cfg.path,
            self.cfg.target,
            self.key(i)
        );
        if self.cfg.deflate {
            r.push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        match c.st {
            St::Connecting | St::Handshake => {
                self.stats.in_flight -= 1;
                self.stats.failed += 1;
            }
            St::Open => {
                self.stats.open -= 1;
                self.stats.closed_by_peer += 1;
            }
            St::New | St::Closed => {}
        }
        if c.fd >= 0 {
            // SAFETY: closing a socket this client opened and still owns.
            unsafe { libc::close(c.fd) };
        }
        c.fd = -1;
        c.st = St::Closed;
        c.rx = Vec::new();
        c.tx = Vec::new();
        c.inflate = None;
        *self.errors.entry(why).or_insert(0) += 1;
    }

    /// Start connection `i`.
    fn start(&mut self, i: usize) {
        let src = self.cfg.sources[(self.cfg.first_index + i) % self.cfg.sources.len()];
        self.conns[i].started_ms = self.now_ms();
        self.stats.attempted += 1;
        self.stats.in_flight += 1;
        self.conns[i].st = St::Connecting;
        // SAFETY: plain socket creation.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            let e = errno();
            self.fail(i, format!("socket: {e}"));
            return;
        }
        self.conns[i].fd = fd;
        let one: libc::c_int = 1;
        // SAFETY: setsockopt with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let local = sockaddr(SocketAddrV4::new(src, 0));
        // SAFETY: bind with a valid sockaddr_in and its size.
        if unsafe {
            libc::bind(
                fd,
                &local as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        } != 0
        {
            let e = errno();
            self.fail(i, format!("bind {src}: {e}"));
            return;
        }
        let remote = sockaddr(self.cfg.target);
        // SAFETY: connect with a valid sockaddr_in and its size.
        let rc = unsafe {
            libc::connect(
                fd,
                &remote as *const libc::sockaddr_in as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = errno();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                self.fail(i, format!("connect from {src}: {e}"));
                return;
            }
        }
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP) as u32,
            u64: i as u64,
        };
        // SAFETY: registering an fd we own with a valid event struct.
        if unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            let e = errno();
            self.fail(i, format!("epoll_ctl: {e}"));
        }
    }

    fn set_interest(&mut self, i: usize, out: bool) {
        let mut events = libc::EPOLLIN | libc::EPOLLRDHUP;
        if out {
            events |= libc::EPOLLOUT;
        }
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: i as u64,
        };
        // SAFETY: modifying the registration of an fd we own.
        unsafe { libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_MOD, self.conns[i].fd, &mut ev) };
    }

    /// One round: start connections up to `parallel`, wait up to `timeout`
    /// for socket events and handle them, and fail handshakes that took
    /// too long.
    pub fn poll(&mut self, timeout: Duration) -> io::Result<()> {
        while self.next < self.cfg.count && self.stats.in_flight < self.cfg.parallel {
            let i = self.next;
            self.next += 1;
            self.start(i);
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 1024];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: epoll_wait writes at most `events.len()` entries.
        let n =
            unsafe { libc::epoll_wait(self.epfd, events.as_mut_ptr(), events.len() as i32, ms) };
        if n < 0 {
            let e = errno();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(());
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let i = ev.u64 as usize;
            let flags = ev.events;
            if i < self.conns.len() && self.conns[i].fd >= 0 {
                self.on_event(i, flags);
            }
        }
        // Handshake timeouts: a scan of the table about once a second while
        // connections are being set up.
        let now = self.now_ms();
        if self.stats.in_flight > 0 && now.saturating_sub(self.last_scan_ms) >= 1000 {
            self.last_scan_ms = now;
            let limit = self.cfg.handshake_timeout.as_millis() as u32;
            for i in 0..self.next {
                let c = &self.conns[i];
                if matches!(c.st, St::Connecting | St::Handshake)
                    && now.saturating_sub(c.started_ms) > limit
                {
                    let st = c.st;
                    self.fail(i, format!("timeout in {st:?}"));
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, i: usize, flags: u32) {
        let fd = self.conns[i].fd;
        if self.conns[i].st == St::Connecting {
            if flags & (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32 == 0 {
                return;
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes a c_int into `err`.
            unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    &mut err as *mut libc::c_int as *mut libc::c_void,
                    &mut len,
                )
            };
            if err != 0 {
                let e = io::Error::from_raw_os_error(err);
                self.fail(i, format!("connect: {e}"));
                return;
            }
            self.conns[i].st = St::Handshake;
            self.write_request(i);
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 {
            if self.conns[i].st == St::Handshake {
                self.write_request(i);
            } else {
                self.flush_tx(i);
            }
        }
        if flags & (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0
        {
            self.read(i);
        }
    }

    fn write_request(&mut self, i: usize) {
        let req = self.request(i);
        let c = &mut self.conns[i];
        let from = c.written as usize;
        if from >= req.len() {
            return;
        }
        // SAFETY: writing from a live buffer of the given length.
        let n = unsafe {
            libc::write(
                c.fd,
                req[from..].as_ptr() as *const libc::c_void,
                req.len() - from,
            )
        };
        if n < 0 {
            let e = errno();
            if e.kind() != io::ErrorKind::WouldBlock {
                self.fail(i, format!("write request: {e}"));
            } else {
                self.set_interest(i, true);
            }
            return;
        }
        c.written += n as u16;
        let done = c.written as usize >= req.len();
        self.set_interest(i, !done);
    }

    fn flush_tx(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.tx.is_empty() {
            self.set_interest(i, false);
            return;
        }
        // SAFETY: writing from a live buffer of the given length.
        let n = unsafe { libc::write(c.fd, c.tx.as_ptr() as *const libc::c_void, c.tx.len()) };
        if n < 0 {
            let e = errno();
            if e.kind() != io::ErrorKind::WouldBlock {
                self.fail(i, format!("write: {e}"));
            }
            return;
        }
        c.tx.drain(..n as usize);
        if c.tx.is_empty() {
            c.tx = Vec::new();
            self.set_interest(i, false);
        }
    }

    /// Queue a masked frame (client frames are masked, RFC 6455 5.3).
    fn send_frame(&mut self, i: usize, opcode: u8, payload: &[u8]) {
        debug_assert!(payload.len() <= 125);
        let mask = (splitmix64(&mut self.rng) as u32).to_be_bytes();
        let c = &mut self.conns[i];
        let was_empty = c.tx.is_empty();
        c.tx.push(0x80 | opcode);
        c.tx.push(0x80 | payload.len() as u8);
        c.tx.extend_from_slice(&mask);
        c.tx.extend(payload.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
        if was_empty {
            self.flush_tx(i);
            if !self.conns[i].tx.is_empty() {
                self.set_interest(i, true);
            }
        }
    }

    fn read(&mut self, i: usize) {
        loop {
            let fd = self.conns[i].fd;
            if fd < 0 {
                return;
            }
            // SAFETY: reading into our own buffer of the given length.
            let n = unsafe {
                libc::read(
                    fd,
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                )
            };
            if n < 0 {
                let e = errno();
                if e.kind() != io::ErrorKind::WouldBlock {
                    self.fail(i, format!("read: {e}"));
                }
                return;
            }
            if n == 0 {
                let why = match self.conns[i].st {
                    St::Open => "closed by the server (FIN)".to_string(),
                    st => format!("EOF in {st:?}"),
                };
                self.fail(i, why);
                return;
            }
            let mut data = std::mem::take(&mut self.conns[i].rx);
            data.extend_from_slice(&self.buf[..n as usize]);
            let used = match self.conns[i].st {
                St::Handshake => self.on_head(i, &data),
                St::Open => self.on_frames(i, &data),
                _ => data.len(),
            };
            if self.conns[i].fd >= 0 && used < data.len() {
                data.drain(..used);
                self.conns[i].rx = data;
            }
        }
    }

    /// Parse the response head; returns bytes used.
    fn on_head(&mut self, i: usize, data: &[u8]) -> usize {
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            if data.len() > MAX_HEAD {
                self.fail(i, "response head too long".into());
            }
            return 0;
        };
        let head = String::from_utf8_lossy(&data[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 101") {
            let s: String = status.chars().take(40).collect();
            self.fail(i, format!("not upgraded: {s}"));
            return data.len();
        }
        let mut accept = None;
        let mut deflate = false;
        let mut server_nct = false;
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "sec-websocket-accept" {
                    accept = Some(v.trim().to_string());
                } else if k == "sec-websocket-extensions" && v.contains("permessage-deflate") {
                    deflate = true;
                    server_nct = v.contains("server_no_context_takeover");
                }
            }
        }
        let mut h = Sha1::new();
        h.update(self.key(i).as_bytes());
        h.update(GUID.as_bytes());
        let want = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        if accept.as_deref() != Some(want.as_str()) {
            self.fail(i, "wrong Sec-WebSocket-Accept".into());
            return data.len();
        }
        if deflate && !self.cfg.deflate {
            self.fail(i, "server chose an extension that was not offered".into());
            return data.len();
        }
        let c = &mut self.conns[i];
        c.st = St::Open;
        c.deflate = deflate;
        c.server_nct = server_nct;
        self.stats.in_flight -= 1;
        self.stats.open += 1;
        self.stats.opened += 1;
        if deflate {
            self.stats.deflate_accepted += 1;
        }
        let used = end + 4;
        used + self.on_frames(i, &data[used..])
    }

    /// Handle complete server frames; returns bytes used.
    fn on_frames(&mut self, i: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while self.conns[i].fd >= 0 {
            let d = &data[pos..];
            if d.len() < 2 {
                break;
            }
            let (b0, b1) = (d[0], d[1]);
            if b1 & 0x80 != 0 {
                self.fail(i, "masked frame from the server".into());
                return data.len();
            }
            let (len, hl) = match b1 & 0x7f {
                126 if d.len() >= 4 => (u16::from_be_bytes([d[2], d[3]]) as usize, 4),
                127 if d.len() >= 10 => {
                    let l = u64::from_be_bytes(d[2..10].try_into().expect("8 bytes"));
                    (l.min(1 << 24) as usize, 10)
                }
                126 | 127 => break,
                l => (l as usize, 2),
            };
            if len > 1 << 20 {
                self.fail(i, "frame too large for an idle client".into());
                return data.len();
            }
            if d.len() < hl + len {
                break;
            }
            let payload = d[hl..hl + len].to_vec();
            pos += hl + len;
            let opcode = b0 & 0x0f;
            let rsv1 = b0 & 0x40 != 0;
            match opcode {
                0x9 => {
                    self.send_frame(i, 0xA, &payload);
                    self.stats.pings_answered += 1;
                }
                0xA if self.conns[i].expect & 2 != 0
                    && payload == check_payload(self.cfg.first_index + i) =>
                {
                    self.conns[i].expect &= !2;
                    self.check.ponged += 1;
                }
                0x1 | 0x2 => {
                    let msg = if rsv1 {
                        let c = &mut self.conns[i];
                        let d = c
                            .inflate
                            .get_or_insert_with(|| Box::new(flate2::Decompress::new(false)));
                        let m = inflate_message(d, &payload);
                        if c.server_nct {
                            c.inflate = None;
                        }
                        m
                    } else {
                        Some(payload)
                    };
                    if self.conns[i].expect & 1 != 0 {
                        self.conns[i].expect &= !1;
                        if msg.as_deref()
                            == Some(check_payload(self.cfg.first_index + i).as_slice())
                        {
                            self.check.echoed += 1;
                        } else {
                            self.check.wrong += 1;
                        }
                    }
                }
                0x8 => {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]]).to_string()
                    } else {
                        "none".into()
                    };
                    self.send_frame(i, 0x8, &payload[..payload.len().min(2)]);
                    self.fail(i, format!("close frame from the server (code {code})"));
                    return data.len();
                }
                _ => {}
            }
        }
        pos
    }

    /// Run [`poll`](Self::poll) until every connection has been attempted
    /// and none is being set up; `progress` is called about once a second.
    pub fn open_all(&mut self, mut progress: impl FnMut(&Stats, Duration)) -> io::Result<()> {
        let mut last = Instant::now();
        while !self.opening_done() {
            self.poll(Duration::from_millis(50))?;
            if last.elapsed() >= Duration::from_secs(1) {
                last = Instant::now();
                progress(&self.stats, self.t0.elapsed());
            }
        }
        progress(&self.stats, self.t0.elapsed());
        Ok(())
    }

    /// Keep the connections (answer pings) for `d`.
    pub fn hold(&mut self, d: Duration) -> io::Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.poll((end - Instant::now()).min(Duration::from_millis(200)))?;
        }
        Ok(())
    }

    /// Send a text message and a ping on `sample` open connections spread
    /// evenly over all of them, and wait up to `timeout` for the echoes
    /// (`/ws/echo`) and pongs.
    pub fn check(&mut self, sample: usize, timeout: Duration) -> io::Result<CheckResult> {
        self.check = CheckResult::default();
        let open: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].st == St::Open)
            .collect();
        let k = sample.min(open.len());
        for j in 0..k {
            let i = open[j * open.len() / k];
            self.conns[i].expect = 3;
            self.check.sampled += 1;
            let p = check_payload(self.cfg.first_index + i);
            self.send_frame(i, 0x1, &p);
            if self.conns[i].fd >= 0 {
                self.send_frame(i, 0x9, &p);
            }
        }
        let end = Instant::now() + timeout;
        while Instant::now() < end
            && (self.check.echoed + self.check.wrong < self.check.sampled
                || self.check.ponged < self.check.sampled)
        {
            self.poll(Duration::from_millis(50))?;
        }
        for c in &mut self.conns {
            c.expect = 0;
        }
        Ok(self.check.clone())
    }

    /// Close every open connection: a Close frame (1000), then the socket;
    /// `parallel` connections every 10 ms, so the teardown is not one burst
    /// of 100,000 FINs into the TUN queue.
    pub fn close_all(&mut self) {
        let mut n = 0;
        for i in 0..self.conns.len() {
            if self.conns[i].st == St::Open {
                self.send_frame(i, 0x8, &1000u16.to_be_bytes());
            }
            let c = &mut self.conns[i];
            if c.fd >= 0 {
                // SAFETY: closing a socket this client opened and still owns.
                unsafe { libc::close(c.fd) };
                c.fd = -1;
                if c.st == St::Open {
                    self.stats.open -= 1;
                }
                c.st = St::Closed;
                c.inflate = None;
                n += 1;
                if n % self.cfg.parallel.max(1) == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                    let _ = self.poll(Duration::ZERO);
                }
            }
        }
    }
}

impl Drop for IdleClient {
    fn drop(&mut self) {
        for c in &mut self.conns {
            if c.fd >= 0 {
                // SAFETY: closing sockets this client owns.
                unsafe { libc::close(c.fd) };
                c.fd = -1;
            }
        }
        // SAFETY: closing the epoll fd this client owns.
        unsafe { libc::close(self.epfd) };
    }
}

/// The text message (and ping payload) of connection `i`'s check.
fn check_payload(i: usize) -> Vec<u8> {
    format!("ws_idle check {i}").into_bytes()
}

/// Inflate one permessage-deflate message (RFC 7692 7.2.2: append
/// `00 00 ff ff`) with the connection's inflater.
fn inflate_message(d: &mut flate2::Decompress, payload: &[u8]) -> Option<Vec<u8>> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(4096);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .ok()?;
    Some(out)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// VmRSS of a process in bytes (from `/proc/PID/status`).
pub fn vm_rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
