//! What an idle WebSocket connection costs ustack, counted byte by byte
//! (issue 6: 100,000 idle connections with <= 4 KiB of ustack memory each).
//!
//! One ustack `Stack` with the real web service (`App::build`, as `ustack
//! serve` runs it) and a scripted peer that plays N Linux clients: SYN
//! (MSS, window scale, SACK), ACK + the upgrade request to `/ws/echo`,
//! ACKs for everything the server sends, and a pong for each keepalive
//! ping. Virtual time, no device, no randomness beyond the stack's seed.
//!
//! **How memory is measured.** This test binary installs a counting global
//! allocator: it adds up the bytes of every live allocation (requested
//! sizes, capacities included, malloc's own per-chunk overhead not). The
//! peer's state is allocated before the first measurement and does not
//! grow, and its packets are freed before each measurement, so the
//! difference is what the stack and the web service hold: TCBs in the
//! slab, the demux and service hash maps, timer heaps, the WebSocket
//! state, any buffers, and the slack of every `Vec`/`HashMap` that doubled
//! (which is why the figure is above the ~1.6 KiB per connection measured
//! as RSS at 100,000 connections). Also checked: `Stack::buffer_memory()`,
//! the stack's own accounting of ring-buffer memory, is zero when idle.
//!
//! Memory is not speed: a bound on bytes is deterministic and exact here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};
use ustack::app::{App, AppConfig};
use ustack::iface::{Config, Stack};
use ustack::tcp::State;
use ustack::time::{Duration, Instant};
use ustack::wire::{
    self, IpProtocol, Ipv4Packet, Ipv4Repr, SeqNumber, TcpFlags, TcpPacket, TcpRepr,
};

/// Live heap bytes of the whole process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: every method forwards to the system allocator unchanged and only
// counts sizes on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        System.alloc_zeroed(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// The issue-6 budget per idle connection.
const BUDGET: isize = 4096;

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
/// Peer i is 10.1.(i / PORTS).0 +..., port FIRST_PORT + i % PORTS.
const PORTS: usize = 40_000;
const FIRST_PORT: u16 = 20_000;
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="; // RFC 6455 1.3
/// RFC 7692 7.2.3.1: "Hello", compressed.
const HELLO_DEFLATED: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

#[derive(Clone, Copy, Default)]
struct Peer {
    /// Next sequence number the peer sends.
    snd_nxt: u32,
    /// Next sequence number expected from the server.
    rcv_nxt: u32,
    synced: bool,
    upgraded: bool,
    deflate_ok: bool,
    pongs_sent: u32,
    data_segments: u32,
    failed: bool,
}

struct World {
    now: Instant,
    stack: Stack,
    app: App,
    peers: Vec<Peer>,
    deflate: bool,
    buf: Vec<u8>,
    pkt: Vec<u8>,
    queue: Vec<Vec<u8>>,
}

fn peer_addr(i: usize) -> (Ipv4Addr, u16) {
    let ip = u32::from(Ipv4Addr::new(10, 1, 0, 1)) + (i / PORTS) as u32;
    (Ipv4Addr::from(ip), FIRST_PORT + (i % PORTS) as u16)
}

fn peer_index(ip: Ipv4Addr, port: u16) -> Option<usize> {
    let base = u32::from(Ipv4Addr::new(10, 1, 0, 1));
    let hi = u32::from(ip).checked_sub(base)? as usize;
    let lo = port.checked_sub(FIRST_PORT)? as usize;
    (lo < PORTS).then_some(hi * PORTS + lo)
}

/// A masked client frame (RFC 6455 5.3); `rsv1` for a compressed message.
fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    f.push(0x80 | payload.len() as u8);
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
    f
}

impl World {
    fn new(n: usize, deflate: bool) -> World {
        let mut stack = Stack::new(Config::new(SERVER), 7);
        let app = App::build(
            &AppConfig {
                echo_port: 0,
                http_port: 80,
                ..Default::default()
            },
            &mut stack,
        )
        .expect("web service starts");
        World {
            now: Instant::ZERO,
            stack,
            app,
            peers: vec![Peer::default(); n],
            deflate,
            buf: vec![0; 70_000],
            pkt: vec![0; 70_000],
            queue: Vec::with_capacity(4 * 4096),
        }
    }

    fn send(&mut self, i: usize, flags: u8, payload: &[u8], syn_options: bool) {
        let (ip, port) = peer_addr(i);
        let p = &mut self.peers[i];
        let tcp = TcpRepr {
            src_port: port,
            dst_port: 80,
            flags: TcpFlags(flags),
            seq_number: SeqNumber(p.snd_nxt),
            ack_number: SeqNumber(p.rcv_nxt),
            window_len: if syn_options { 65_535 } else { 512 }, // x 128 after the SYN
            urgent_at: 0,
            max_seg_size: syn_options.then_some(1460),
            window_scale: syn_options.then_some(7),
            sack_permitted: syn_options,
            sack_ranges: [None; 3],
            timestamp: None,
            payload,
        };
        let ipr = Ipv4Repr {
            src_addr: ip,
            dst_addr: SERVER,
            protocol: IpProtocol::Tcp,
            payload_len: 0,
            ttl: 64,
            ident: 1,
            dont_frag: true,
        };
        let mut b = vec![0u8; 20 + tcp.buffer_len()];
        let len = wire::emit_ipv4_tcp(&mut b, &ipr, &tcp);
        b.truncate(len);
        let seq_len = payload.len() as u32 + u32::from(flags & 0x02 != 0);
        p.snd_nxt = p.snd_nxt.wrapping_add(seq_len);
        self.queue.push(b);
    }

    fn connect(&mut self, i: usize) {
        self.peers[i].snd_nxt = 1_000_000 + i as u32 * 7;
        self.send(i, 0x02, &[], true); // SYN
    }

    fn request(&self) -> Vec<u8> {
        let mut r = format!(
            "GET /ws/echo HTTP/1.1\r\nHost: {SERVER}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if self.deflate {
            r.push_str("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    }

    /// React to one packet of the server's (in `self.pkt[..n]`).
    fn on_server_packet(&mut self, n: usize) {
        let bytes = &self.pkt[..n];
        let ip = Ipv4Packet::new_checked(bytes).expect("valid IPv4 from the stack");
        if ip.protocol() != IpProtocol::Tcp {
            return;
        }
        let tcp = TcpPacket::new_checked(ip.payload()).expect("valid TCP from the stack");
        let r = TcpRepr::parse(&tcp, ip.src_addr(), ip.dst_addr(), true).expect("valid TCP");
        let Some(i) = peer_index(ip.dst_addr(), r.dst_port) else {
            return;
        };
        let (flags, seq, len) = (r.flags.0, r.seq_number.0, r.payload.len());
        let text = &r.payload[..len.min(400)];
        let starts_101 = text.starts_with(b"HTTP/1.1 101 ");
        let accept_ok = contains(text, ACCEPT.as_bytes());
        let deflate_ok = contains(
            text,
            b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        );
        let ping = len >= 2 && r.payload[0] == 0x89;
        let ping_payload_len = if ping {
            r.payload[1] as usize & 0x7f
        } else {
            0
        };
        let mut ping_payload = [0u8; 125];
        if ping {
            ping_payload[..ping_payload_len].copy_from_slice(&r.payload[2..2 + ping_payload_len]);
        }
        let p = &mut self.peers[i];
        if flags & 0x04 != 0 || flags & 0x01 != 0 {
            p.failed = true; // RST or FIN: the server gave up on an idle connection
            return;
        }
        if flags & 0x12 == 0x12 {
            // SYN-ACK: complete the handshake and send the upgrade request.
            p.rcv_nxt = seq.wrapping_add(1);
            p.synced = true;
            let req = self.request();
            self.send(i, 0x18, &req, false);
            return;
        }
        if len == 0 {
            return;
        }
        p.rcv_nxt = seq.wrapping_add(len as u32);
        p.data_segments += 1;
        if starts_101 {
            p.upgraded = accept_ok;
            p.deflate_ok = deflate_ok;
        }
        if ping {
            p.pongs_sent += 1;
            let pong = client_frame(0xA, false, &ping_payload[..ping_payload_len]);
            self.send(i, 0x18, &pong, false);
        } else {
            self.send(i, 0x10, &[], false); // ACK
        }
    }

    /// Run the server and the peers until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            self.app.poll(self.now, &mut self.stack);
            let mut moved = false;
            while let Some(n) = self.stack.poll_transmit(self.now, &mut self.buf) {
                moved = true;
                self.pkt[..n].copy_from_slice(&self.buf[..n]);
                self.on_server_packet(n);
            }
            if self.queue.is_empty() && !moved {
                return;
            }
            let q = std::mem::take(&mut self.queue);
            for p in &q {
                self.stack.handle_packet(self.now, p);
            }
            self.queue = q;
            self.queue.clear();
        }
        panic!("no quiescence at {:?}", self.now);
    }

    /// Let virtual time run to `to`, firing the stack's and the app's timers.
    fn advance(&mut self, to: Instant) {
        for _ in 0..1_000_000 {
            let next = [self.stack.poll_at(), self.app.poll_at()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= to => {
                    self.now = self.now.max(t);
                    self.stack.handle_timeout(self.now);
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = to;
        self.stack.handle_timeout(self.now);
        self.pump();
    }

    fn established(&self) -> usize {
        self.stack
            .connection_states()
            .filter(|s| *s == State::Established)
            .count()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Open `n` idle WebSockets, returning heap bytes per connection all open
/// and after a keepalive round.
fn run(n: usize, deflate: bool) -> (isize, isize) {
    let mut w = World::new(n, deflate);
    // Warm-up: everything allocated once per process or per service
    // (the zlib pool, first-use buffers) is allocated before the baseline.
    w.advance(Instant::ZERO + Duration::from_millis(1));
    let base = live();
    // Connect in batches below the listen backlog, 1 ms apart.
    for batch in (0..n).collect::<Vec<_>>().chunks(256) {
        for &i in batch {
            w.connect(i);
        }
        w.pump();
        let t = w.now + Duration::from_millis(1);
        w.advance(t);
    }
    // Deflate: one compressed message each way on every connection, so
    // the zlib state has been used (and must have been given back).
    if deflate {
        let msg = client_frame(0x1, true, &HELLO_DEFLATED);
        for i in 0..n {
            w.send(i, 0x18, &msg, false);
        }
        w.pump();
    }
    let t = w.now + Duration::from_secs(1); // delayed ACKs out, nothing pending
    w.advance(t);
    let open = w.peers.iter().filter(|p| p.synced && p.upgraded).count();
    assert_eq!(
        open, n,
        "every upgrade answered 101 with the right accept key"
    );
    if deflate {
        assert!(
            w.peers.iter().all(|p| p.deflate_ok),
            "deflate negotiated without context takeover"
        );
        assert!(
            w.peers.iter().all(|p| p.data_segments >= 2),
            "echo received"
        );
    }
    assert_eq!(w.established(), n);
    assert_eq!(w.app.connections(), n);
    assert_eq!(
        w.stack.buffer_memory(),
        0,
        "idle connections hold no ring-buffer memory (stack's accounting)"
    );
    let per_open = (live() - base) / n as isize;

    // A keepalive round: the server pings each connection after 30 s of
    // silence, the peers answer; every connection has now sent and
    // received data long after the upgrade.
    let t = w.now + Duration::from_secs(32);
    w.advance(t);
    let t = w.now + Duration::from_secs(1);
    w.advance(t);
    assert!(w.peers.iter().all(|p| p.pongs_sent >= 1), "pinged");
    assert!(w.peers.iter().all(|p| !p.failed), "no connection closed");
    assert_eq!(w.established(), n);
    assert_eq!(w.stack.buffer_memory(), 0);
    let per_idle = (live() - base) / n as isize;
    eprintln!(
        "idle_memory: {n} idle WebSockets{}: {per_open} B/connection heap all open, \
         {per_idle} B after a keepalive round (budget {BUDGET})",
        if deflate { " (permessage-deflate)" } else { "" }
    );
    (per_open, per_idle)
}

#[test]
fn ten_thousand_idle_websockets_within_budget() {
    // Both cases in one test: the allocator counter is process-wide.
    for (n, deflate) in [(10_000, false), (4_000, true)] {
        let (open, idle) = run(n, deflate);
        assert!(open <= BUDGET, "{open} B per connection all open");
        assert!(idle <= BUDGET, "{idle} B per connection after keepalive");
    }
}
