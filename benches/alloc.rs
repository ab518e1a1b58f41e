//! Allocation counting on the server's data path: `cargo bench --bench alloc`.
//!
//! A ustack server (the real `Stack` + `App`: HTTP, WebSocket echo) and a
//! ustack client stack are joined by an in-memory link that reuses its
//! packet buffers, in one thread, on a virtual clock. A counting global
//! allocator counts every allocation made **while server code runs**
//! (`handle_packet`, `handle_timeout`, `App::poll`, `poll_transmit`), after a
//! warm-up, per operation:
//!
//! | workload | operation |
//! |---|---|
//! | keep-alive | one `GET /bytes/100` on one of 32 keep-alive connections |
//! | download | 1 MB of a `GET /bytes/200000000` on one connection |
//! | upload | 1 MB of a `POST /sha256` of 200 MB on one connection |
//! | ws-echo | one 64-byte WebSocket message echoed (32 connections) |
//! | new-conn | one `GET /bytes/100` with `Connection: close` (handshake to close) |
//!
//! It also reports the server's user-space time per operation (wall clock
//! around the server calls only; the kernel is not involved here): a
//! measurement, never a threshold. `-- --quick` runs fewer operations.
//! Under `valgrind --tool=callgrind` (`-- --quick`) the instruction counts
//! are repeatable, which makes this the harness for profiling the
//! per-request path without the noise of a shared machine.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration as WallDuration, Instant as WallInstant};

use ustack::app::{App, AppConfig};
use ustack::iface::{Config, Stack};
use ustack::tcp::{Event, SocketHandle};
use ustack::time::{Duration, Instant};

// ------------------------------------------------------------ the counter

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(|c| c.get()).unwrap_or(false)
}

/// `ALLOC_TRACE=N`: print a backtrace of the first N counted allocations
/// (to find them); the printing itself is not counted.
fn trace_alloc(size: usize) {
    static LEFT: AtomicU64 = AtomicU64::new(u64::MAX);
    if LEFT.load(Relaxed) == 0 {
        return;
    }
    COUNTING.with(|c| c.set(false));
    if LEFT.load(Relaxed) == u64::MAX {
        let n = std::env::var("ALLOC_TRACE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        LEFT.store(n, Relaxed);
    }
    if LEFT.load(Relaxed) == 0 {
        COUNTING.with(|c| c.set(true));
        return;
    }
    LEFT.fetch_sub(1, Relaxed);
    eprintln!(
        "--- allocation of {size} bytes:\n{}",
        std::backtrace::Backtrace::force_capture()
    );
    COUNTING.with(|c| c.set(true));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(l.size() as u64, Relaxed);
            trace_alloc(l.size());
        }
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(l.size() as u64, Relaxed);
            trace_alloc(l.size());
        }
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if counting() {
            ALLOCS.fetch_add(1, Relaxed);
            BYTES.fetch_add(new as u64, Relaxed);
            trace_alloc(new);
        }
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` as server code: its allocations are counted, its time summed.
struct Meter {
    on: bool,
    time: WallDuration,
}

impl Meter {
    #[inline(never)]
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t = WallInstant::now();
        COUNTING.with(|c| c.set(self.on));
        let r = f();
        COUNTING.with(|c| c.set(false));
        self.time += t.elapsed();
        r
    }
}

// --------------------------------------------------------------- the link

/// One direction: packets in reused buffers (so the link allocates nothing
/// once warm).
#[derive(Default)]
struct Wire {
    q: VecDeque<(usize, Vec<u8>)>,
    spare: Vec<Vec<u8>>,
}

impl Wire {
    fn push(&mut self, data: &[u8]) {
        let mut b = self.spare.pop().unwrap_or_else(|| vec![0u8; 65536]);
        b[..data.len()].copy_from_slice(data);
        self.q.push_back((data.len(), b));
    }
}

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

struct World {
    now: Instant,
    server: Stack,
    app: App,
    client: Stack,
    c2s: Wire,
    s2c: Wire,
    buf: Vec<u8>,
    meter: Meter,
}

impl World {
    fn new() -> World {
        let mut server = Stack::new(Config::new(SERVER), 1);
        let app = App::build(&AppConfig::default(), &mut server).expect("services start");
        World {
            now: Instant::ZERO,
            server,
            app,
            client: Stack::new(Config::new(CLIENT), 2),
            c2s: Wire::default(),
            s2c: Wire::default(),
            buf: vec![0u8; 65536],
            meter: Meter {
                on: false,
                time: WallDuration::ZERO,
            },
        }
    }

    /// Move packets both ways until both stacks are quiet; then advance the
    /// virtual clock to the next timer (at most `max_jump`). Returns whether
    /// anything moved.
    fn step(&mut self) -> bool {
        let mut moved = false;
        // Server side (metered).
        let World {
            now,
            server,
            app,
            c2s,
            s2c,
            buf,
            meter,
            ..
        } = self;
        let now = *now;
        moved |= meter.run(|| server_turn(now, server, app, c2s, s2c, buf));
        // Client side (not metered).
        while let Some((n, b)) = self.s2c.q.pop_front() {
            self.client.handle_packet(now, &b[..n]);
            self.s2c.spare.push(b);
            moved = true;
        }
        if self.client.poll_at().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        moved
    }

    fn flush_client(&mut self) {
        while let Some(n) = self.client.poll_transmit(self.now, &mut self.buf) {
            self.c2s.push(&self.buf[..n]);
        }
    }

    /// Advance the clock: a microsecond when packets moved, else to the
    /// next deadline of either side (delayed ACKs, timers).
    fn tick(&mut self, moved: bool) {
        if moved || !self.c2s.q.is_empty() || !self.s2c.q.is_empty() {
            self.now += Duration::from_micros(1);
            return;
        }
        let next = [
            self.server.poll_at(),
            self.client.poll_at(),
            self.app.poll_at(),
        ]
        .into_iter()
        .flatten()
        .min();
        self.now = match next {
            Some(t) if t > self.now => t.min(self.now + Duration::from_millis(500)),
            _ => self.now + Duration::from_micros(1),
        };
    }
}

/// One event-loop turn of the server, as `runtime::run` does it (the
/// function callgrind's `--toggle-collect=alloc::server_turn` measures).
#[inline(never)]
fn server_turn(
    now: Instant,
    server: &mut Stack,
    app: &mut App,
    c2s: &mut Wire,
    s2c: &mut Wire,
    buf: &mut [u8],
) -> bool {
    let mut moved = false;
    while let Some((n, b)) = c2s.q.pop_front() {
        server.handle_packet(now, &b[..n]);
        c2s.spare.push(b);
        moved = true;
    }
    if server.poll_at().is_some_and(|t| t <= now) {
        server.handle_timeout(now);
    }
    app.poll(now, server);
    while let Some(n) = server.poll_transmit(now, buf) {
        s2c.push(&buf[..n]);
        moved = true;
    }
    moved
}

// ------------------------------------------------------------- the clients

/// A client connection running a workload.
struct Client {
    h: SocketHandle,
    out: Vec<u8>,
    out_at: usize,
    /// Bytes of response expected (headers parsed) / received so far.
    inbuf: Vec<u8>,
    want: Option<usize>,
    got: usize,
    done_ops: u64,
    ws_open: bool,
    closed: bool,
}

impl Client {
    fn new(h: SocketHandle) -> Client {
        Client {
            h,
            out: Vec::new(),
            out_at: 0,
            inbuf: Vec::with_capacity(4096),
            want: None,
            got: 0,
            done_ops: 0,
            ws_open: false,
            closed: false,
        }
    }
    fn queue(&mut self, data: &[u8]) {
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
        self.out.extend_from_slice(data);
    }
    fn write(&mut self, stack: &mut Stack) {
        while self.out_at < self.out.len() {
            match stack.send(self.h, &self.out[self.out_at..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.out_at += n,
            }
        }
    }
}

/// Length of an HTTP response head and its Content-Length, once complete.
fn parse_head(b: &[u8]) -> Option<(usize, usize)> {
    let end = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&b[..end]).ok()?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    Some((end, len))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    KeepAlive,
    Download,
    Upload,
    WsEcho,
    NewConn,
}

const GET_100: &[u8] = b"GET /bytes/100 HTTP/1.1\r\nHost: bench\r\n\r\n";
const GET_100_CLOSE: &[u8] = b"GET /bytes/100 HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const WS_UPGRADE: &[u8] = b"GET /ws/echo HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const BULK: usize = 200_000_000;
const MB: usize = 1_000_000;

/// A masked 64-byte binary frame.
fn ws_frame() -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut f = vec![0x82, 0x80 | 64];
    f.extend_from_slice(&mask);
    f.extend((0..64u8).map(|i| i ^ mask[i as usize % 4]));
    f
}

/// Run `ops` operations after `warm` warm-up operations; returns
/// (allocations, bytes allocated, server time) for the measured part.
fn run(w: Workload, warm: u64, ops: u64) -> (u64, u64, WallDuration, u64) {
    let mut world = World::new();
    let nconn = match w {
        Workload::KeepAlive | Workload::WsEcho => 32,
        Workload::NewConn => 4,
        Workload::Download | Workload::Upload => 1,
    };
    let remote = SocketAddrV4::new(SERVER, 80);
    let mut clients: Vec<Client> = Vec::new();
    let frame = ws_frame();
    let zeros = vec![0u8; 65536];
    let mut upload_left = 0usize;
    let mut total_ops = 0u64;
    let mut measuring = false;
    let (mut a0, mut b0, mut t0, mut ops0) = (0, 0, WallDuration::ZERO, 0);
    let mut rbuf = vec![0u8; 65536];
    let mut idle_rounds = 0u32;

    let open = |world: &mut World, clients: &mut Vec<Client>, upload_left: &mut usize| {
        let h = world.client.connect(world.now, remote).expect("connect");
        let mut c = Client::new(h);
        match w {
            Workload::KeepAlive => c.queue(GET_100),
            Workload::NewConn => c.queue(GET_100_CLOSE),
            Workload::Download => {
                c.queue(format!("GET /bytes/{BULK} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes())
            }
            Workload::Upload => {
                c.queue(
                    format!(
                        "POST /sha256 HTTP/1.1\r\nHost: bench\r\nContent-Length: {BULK}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                *upload_left = BULK;
            }
            Workload::WsEcho => c.queue(WS_UPGRADE),
        }
        clients.push(c);
    };
    for _ in 0..nconn {
        open(&mut world, &mut clients, &mut upload_left);
    }

    while total_ops < warm + ops {
        if !measuring && total_ops >= warm {
            measuring = true;
            world.meter.on = true;
            a0 = ALLOCS.load(Relaxed);
            b0 = BYTES.load(Relaxed);
            t0 = world.meter.time;
            ops0 = total_ops;
        }
        // Client application work.
        while let Some(ev) = world.client.poll_event() {
            let Event::Socket(h) = ev else { continue };
            let Some(c) = clients.iter_mut().find(|c| c.h == h) else {
                continue;
            };
            loop {
                let n = match world.client.recv(h, &mut rbuf) {
                    Ok(0) | Err(_) => {
                        if world.client.readiness(h).read_closed || world.client.readiness(h).closed
                        {
                            c.closed = true;
                        }
                        break;
                    }
                    Ok(n) => n,
                };
                match w {
                    Workload::Download => {
                        if c.want.is_none() {
                            c.inbuf.extend_from_slice(&rbuf[..n]);
                            if let Some((hl, len)) = parse_head(&c.inbuf) {
                                c.want = Some(len);
                                c.got = c.inbuf.len() - hl;
                            }
                        } else {
                            c.got += n;
                        }
                        let before = c.done_ops;
                        c.done_ops = (c.got / MB) as u64;
                        total_ops += c.done_ops - before;
                    }
                    Workload::Upload | Workload::KeepAlive | Workload::NewConn => {
                        c.inbuf.extend_from_slice(&rbuf[..n]);
                        while let Some((hl, len)) = parse_head(&c.inbuf) {
                            if c.inbuf.len() < hl + len {
                                break;
                            }
                            c.inbuf.drain(..hl + len);
                            if w == Workload::KeepAlive {
                                total_ops += 1;
                                c.queue(GET_100);
                            } else if w == Workload::NewConn {
                                total_ops += 1;
                            } else {
                                // the upload's answer: start another one
                                c.queue(
                                    format!("POST /sha256 HTTP/1.1\r\nHost: bench\r\nContent-Length: {BULK}\r\n\r\n")
                                        .as_bytes(),
                                );
                                upload_left = BULK;
                            }
                        }
                    }
                    Workload::WsEcho => {
                        c.inbuf.extend_from_slice(&rbuf[..n]);
                        if !c.ws_open {
                            if let Some((hl, _)) = parse_head(&c.inbuf) {
                                assert!(c.inbuf.starts_with(b"HTTP/1.1 101"), "no 101");
                                c.inbuf.drain(..hl);
                                c.ws_open = true;
                                c.queue(&frame);
                            }
                        }
                        while c.ws_open && c.inbuf.len() >= 66 {
                            assert_eq!(&c.inbuf[..2], &[0x82, 64], "echo frame");
                            c.inbuf.drain(..66);
                            total_ops += 1;
                            c.queue(&frame);
                        }
                    }
                }
            }
        }
        // New connections replace closed ones.
        if w == Workload::NewConn {
            let before = clients.len();
            clients.retain(|c| {
                if c.closed {
                    world.client.close(c.h);
                }
                !c.closed
            });
            for _ in clients.len()..before {
                open(&mut world, &mut clients, &mut upload_left);
            }
        }
        for c in clients.iter_mut() {
            c.write(&mut world.client);
            if w == Workload::Upload && c.out_at == c.out.len() && upload_left > 0 {
                let cap = world
                    .client
                    .send_capacity(c.h)
                    .min(upload_left)
                    .min(zeros.len());
                if cap > 0 {
                    let sent = world.client.send(c.h, &zeros[..cap]).unwrap_or(0);
                    let before = (BULK - upload_left) / MB;
                    upload_left -= sent;
                    let after = (BULK - upload_left) / MB;
                    total_ops += (after - before) as u64;
                }
            }
        }
        world.flush_client();
        let moved = world.step();
        world.flush_client();
        idle_rounds = if moved { 0 } else { idle_rounds + 1 };
        assert!(
            idle_rounds < 100_000,
            "{w:?}: stalled after {total_ops} operations"
        );
        world.tick(moved);
    }
    (
        ALLOCS.load(Relaxed) - a0,
        BYTES.load(Relaxed) - b0,
        world.meter.time - t0,
        total_ops - ops0,
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only keepalive|download|upload|wsecho|newconn` (e.g. under callgrind).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.to_ascii_lowercase());
    let scale = if quick { 1 } else { 10 };
    println!("## Server allocations on the data path (in-memory, after warm-up)\n");
    println!("| workload | operation | operations | allocations per op | bytes allocated per op | server user-space time per op |");
    println!("|---|---|---|---|---|---|");
    for (w, what, warm, ops) in [
        (
            Workload::KeepAlive,
            "GET /bytes/100, 32 keep-alive connections",
            2_000,
            2_000 * scale,
        ),
        (
            Workload::Download,
            "1 MB of GET /bytes/200000000",
            20,
            15 * scale,
        ),
        (Workload::Upload, "1 MB of POST /sha256", 20, 15 * scale),
        (
            Workload::WsEcho,
            "64-byte message echoed, 32 connections",
            2_000,
            2_000 * scale,
        ),
        (
            Workload::NewConn,
            "GET /bytes/100 + close, new connection each",
            500,
            500 * scale,
        ),
    ] {
        if only
            .as_ref()
            .is_some_and(|o| *o != format!("{w:?}").to_ascii_lowercase())
        {
            continue;
        }
        let (allocs, bytes, time, n) = run(w, warm, ops);
        let n = n.max(1);
        println!(
            "| {w:?} | {what} | {n} | {:.2} | {:.0} | {:.2} µs |",
            allocs as f64 / n as f64,
            bytes as f64 / n as f64,
            time.as_secs_f64() * 1e6 / n as f64
        );
    }
}
