//! In-memory benchmark: two ustack stacks vs two smoltcp 0.14 stacks joined
//! by a memory link, in one thread. `cargo bench --bench stacks`
//! (`-- --quick` for a short run). Prints Markdown tables; asserts nothing
//! about speed.
//!
//! 1. **Unimpaired**: a 100 MB bulk transfer over a link with no delay, no
//!    loss and no rate limit, on the real clock: Gbit/s of protocol
//!    processing (both ends on one core), and wall-clock ns per data
//!    segment.
//! 2. **Loss grid**: 0%, 1% and 5% random loss (each direction, seeded), 20 ms
//!    RTT (10 ms each way), a 100 Mbit/s bottleneck with a 1-BDP tail-drop
//!    queue, on a *virtual* clock: goodput of a 10 MB transfer (bytes
//!    delivered / virtual time), median and spread over 10 seeds, plus what
//!    the link dropped and what ustack's loss recovery did (retransmissions,
//!    RTOs, recovery episodes, undone episodes, tail loss probes).
//!
//! Both stacks get 1 MiB socket buffers, MTU 1500 (MSS 1460), checksums
//! computed in software. smoltcp runs with its Reno controller (ustack runs
//! its default, CUBIC, or `--cc newreno`); smoltcp has no SACK. The impaired
//! link is ustack's `phy::sim::Link`, the same for both stacks.
//!
//! Options (after `--`): `--quick`, `--no-grid`, `--grid-only`,
//! `--only ustack|smoltcp`, `--seeds N`, `--size BYTES`, `--loss 0,1,5`
//! (percent), `--cc cubic|newreno`. `BENCH_DEBUG=1` prints every run.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as WallInstant;

/// Microseconds, the clock both stacks are driven with.
type Micros = u64;

// ------------------------------------------------------------------ link

#[derive(Clone, Copy, Debug)]
struct LinkCfg {
    delay_us: Micros,
    loss: f64,
    /// Bottleneck rate in bit/s; 0 = infinite.
    rate_bps: u64,
    /// Queue limit in bytes at the bottleneck (tail drop).
    queue_bytes: usize,
}

impl LinkCfg {
    const PERFECT: LinkCfg = LinkCfg {
        delay_us: 0,
        loss: 0.0,
        rate_bps: 0,
        queue_bytes: 0,
    };
}

/// One direction of the link. The perfect link is a plain FIFO (no copy, no
/// clock); the impaired one is ustack's own simulated link
/// (`ustack::phy::sim::Link`: seeded loss, then a drop-tail bottleneck queue,
/// then propagation delay), used for both stacks.
enum Link {
    Perfect { q: VecDeque<Vec<u8>>, sent: u64 },
    Sim(Box<ustack::phy::sim::Link>),
}

impl Link {
    fn new(cfg: LinkCfg, seed: u64) -> Link {
        if cfg.delay_us == 0 && cfg.loss == 0.0 && cfg.rate_bps == 0 {
            return Link::Perfect {
                q: VecDeque::new(),
                sent: 0,
            };
        }
        let c = ustack::phy::sim::LinkConfig {
            latency: std::time::Duration::from_micros(cfg.delay_us),
            bandwidth_bps: (cfg.rate_bps > 0).then_some(cfg.rate_bps),
            queue_bytes: cfg.queue_bytes,
            loss: cfg.loss,
            ..Default::default()
        };
        Link::Sim(Box::new(ustack::phy::sim::Link::new(
            c,
            ustack::rand::Rng::new(seed),
        )))
    }
    fn send(&mut self, now: Micros, p: Vec<u8>) {
        match self {
            Link::Perfect { q, sent } => {
                *sent += 1;
                q.push_back(p);
            }
            Link::Sim(l) => l.send(ustack::time::Instant::from_micros(now), &p),
        }
    }
    fn next_at(&self) -> Option<Micros> {
        match self {
            Link::Perfect { q, .. } => (!q.is_empty()).then_some(0),
            Link::Sim(l) => l.poll_at().map(|t| t.total_micros()),
        }
    }
    fn recv(&mut self, now: Micros) -> Option<Vec<u8>> {
        match self {
            Link::Perfect { q, .. } => q.pop_front(),
            Link::Sim(l) => l.recv(ustack::time::Instant::from_micros(now)),
        }
    }
    fn sent(&self) -> u64 {
        match self {
            Link::Perfect { sent, .. } => *sent,
            Link::Sim(l) => l.stats.sent,
        }
    }
    fn dropped(&self) -> u64 {
        match self {
            Link::Perfect { .. } => 0,
            Link::Sim(l) => l.stats.lost + l.stats.queue_drops,
        }
    }
    fn queue_drops(&self) -> u64 {
        match self {
            Link::Perfect { .. } => 0,
            Link::Sim(l) => l.stats.queue_drops,
        }
    }
}

// ------------------------------------------------------------- endpoints

/// One host running one side of a bulk transfer.
trait Host {
    /// Feed a packet from the link.
    fn input(&mut self, now: Micros, p: &[u8]);
    /// Run timers and the application, then collect output packets.
    fn poll(&mut self, now: Micros, out: &mut Vec<Vec<u8>>);
    /// Next time `poll` must run even without input.
    fn poll_at(&mut self, now: Micros) -> Option<Micros>;
    /// Receiver: bytes delivered to the application so far.
    fn received(&self) -> u64;
    /// Receiver with verification on: first stream offset with a wrong byte.
    fn corrupt_at(&self) -> Option<u64> {
        None
    }
    /// Sender: its stack's loss-recovery counters, where the stack has them.
    fn counters(&self) -> Option<Counters> {
        None
    }
}

/// A sender's loss-recovery counters (ustack's `Stats`).
#[derive(Clone, Copy, Debug, Default)]
struct Counters {
    retransmissions: u64,
    rto_timeouts: u64,
    recoveries: u64,
    spurious: u64,
    tlp_probes: u64,
    /// RFC 9406: slow start ended by a delay increase (CSS entered).
    hystart_exits: u64,
}

const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const PORT: u16 = 5001;
const BUF: usize = 1 << 20;

/// Byte `i` of every transfer is `i % 251`, so the receiver can check that
/// it got the stream intact (a prime period never lines up with segment sizes).
fn pattern() -> Vec<u8> {
    (0..64 * 1024 + 251).map(|i| (i % 251) as u8).collect()
}

/// Check `data` as the bytes at stream offset `at`; returns the first bad offset.
fn check(at: u64, data: &[u8]) -> Option<u64> {
    let p0 = (at % 251) as usize;
    data.iter()
        .enumerate()
        .position(|(j, &b)| b != ((p0 + j) % 251) as u8)
        .map(|j| at + j as u64)
}

// ---- ustack

mod us {
    use super::*;
    use ustack::iface::{Config, Stack};
    use ustack::tcp::{CongestionAlgorithm, ListenerHandle, SocketHandle};
    use ustack::time::Instant;

    pub struct Sender {
        stack: Stack,
        sock: SocketHandle,
        total: u64,
        left: u64,
        data: Vec<u8>,
        closed: bool,
        buf: Vec<u8>,
    }
    pub struct Receiver {
        stack: Stack,
        listener: ListenerHandle,
        sock: Option<SocketHandle>,
        got: u64,
        buf: Vec<u8>,
        verify: bool,
        bad: Option<u64>,
    }

    fn config(addr: Ipv4Addr, cc: CongestionAlgorithm) -> Config {
        let mut c = Config::new(addr);
        c.tcp.recv_buffer = BUF;
        c.tcp.send_buffer = BUF;
        c.tcp.congestion = cc;
        c
    }

    pub fn pair(
        total: u64,
        seed: u64,
        verify: bool,
        cc: CongestionAlgorithm,
    ) -> (Sender, Receiver) {
        let mut rs = Stack::new(config(B_ADDR, cc), seed + 2);
        let listener = rs.listen(PORT, 16).expect("listen");
        let mut ss = Stack::new(config(A_ADDR, cc), seed + 1);
        let sock = ss
            .connect(Instant::ZERO, SocketAddrV4::new(B_ADDR, PORT))
            .expect("connect");
        (
            Sender {
                stack: ss,
                sock,
                total,
                left: total,
                data: pattern(),
                closed: false,
                buf: vec![0; 65536],
            },
            Receiver {
                stack: rs,
                listener,
                sock: None,
                got: 0,
                buf: vec![0; 256 * 1024],
                verify,
                bad: None,
            },
        )
    }

    fn drain(stack: &mut Stack, now: Instant, buf: &mut [u8], out: &mut Vec<Vec<u8>>) {
        while let Some(n) = stack.poll_transmit(now, buf) {
            out.push(buf[..n].to_vec());
        }
    }

    impl Host for Sender {
        fn input(&mut self, now: Micros, p: &[u8]) {
            self.stack.handle_packet(Instant::from_micros(now), p);
        }
        fn poll(&mut self, now: Micros, out: &mut Vec<Vec<u8>>) {
            let now = Instant::from_micros(now);
            self.stack.handle_timeout(now);
            while self.stack.poll_event().is_some() {}
            while self.left > 0 {
                let n = (64 * 1024u64).min(self.left) as usize;
                let p0 = ((self.total - self.left) % 251) as usize;
                match self.stack.send(self.sock, &self.data[p0..p0 + n]) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => self.left -= k as u64,
                }
            }
            if self.left == 0 && !self.closed {
                let _ = self.stack.shutdown(self.sock);
                self.closed = true;
            }
            drain(&mut self.stack, now, &mut self.buf, out);
        }
        fn poll_at(&mut self, _now: Micros) -> Option<Micros> {
            self.stack.poll_at().map(|t| t.total_micros())
        }
        fn received(&self) -> u64 {
            0
        }
        fn counters(&self) -> Option<Counters> {
            let s = self.stack.stats();
            Some(Counters {
                retransmissions: s.tcp_retransmissions,
                rto_timeouts: s.tcp_rto_timeouts,
                recoveries: s.tcp_sack_recoveries,
                spurious: s.tcp_spurious_recoveries + s.tcp_spurious_rtos,
                tlp_probes: s.tcp_tlp_probes,
                hystart_exits: s.tcp_hystart_css_entered,
            })
        }
    }

    impl Host for Receiver {
        fn input(&mut self, now: Micros, p: &[u8]) {
            self.stack.handle_packet(Instant::from_micros(now), p);
        }
        fn poll(&mut self, now: Micros, out: &mut Vec<Vec<u8>>) {
            let now = Instant::from_micros(now);
            self.stack.handle_timeout(now);
            while self.stack.poll_event().is_some() {}
            if self.sock.is_none() {
                self.sock = self.stack.accept(self.listener);
            }
            if let Some(s) = self.sock {
                while let Ok(n) = self.stack.recv(s, &mut self.buf) {
                    if n == 0 {
                        break;
                    }
                    if self.verify && self.bad.is_none() {
                        self.bad = check(self.got, &self.buf[..n]);
                    }
                    self.got += n as u64;
                }
            }
            drain(&mut self.stack, now, &mut self.buf, out);
        }
        fn poll_at(&mut self, _now: Micros) -> Option<Micros> {
            self.stack.poll_at().map(|t| t.total_micros())
        }
        fn received(&self) -> u64 {
            self.got
        }
        fn corrupt_at(&self) -> Option<u64> {
            self.bad
        }
    }
}

// ---- smoltcp

mod sm {
    use super::*;
    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant;
    use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, Ipv4Address};

    /// A device whose queues the harness fills and empties.
    #[derive(Default)]
    pub struct QDev {
        rx: VecDeque<Vec<u8>>,
        tx: Vec<Vec<u8>>,
    }
    pub struct Rx(Vec<u8>);
    pub struct Tx<'a>(&'a mut Vec<Vec<u8>>);
    impl phy::RxToken for Rx {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(&self.0)
        }
    }
    impl phy::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut b = vec![0; len];
            let r = f(&mut b);
            self.0.push(b);
            r
        }
    }
    impl Device for QDev {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;
        fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
            let p = self.rx.pop_front()?;
            Some((Rx(p), Tx(&mut self.tx)))
        }
        fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
            Some(Tx(&mut self.tx))
        }
        fn capabilities(&self) -> DeviceCapabilities {
            let mut c = DeviceCapabilities::default();
            c.medium = Medium::Ip;
            c.max_transmission_unit = 1500;
            c
        }
    }

    pub struct Host {
        dev: QDev,
        iface: Interface,
        sockets: SocketSet<'static>,
        sock: SocketHandle,
        sender: bool,
        total: u64,
        left: u64,
        closed: bool,
        got: u64,
        pattern: Vec<u8>,
        verify: bool,
        bad: Option<u64>,
    }

    fn host(addr: Ipv4Addr, seed: u64) -> (QDev, Interface, SocketSet<'static>, SocketHandle) {
        let mut dev = QDev::default();
        let mut cfg = Config::new(HardwareAddress::Ip);
        cfg.random_seed = seed;
        let mut iface = Interface::new(cfg, &mut dev, Instant::ZERO);
        let a: Ipv4Address = addr;
        iface.update_ip_addrs(|v| {
            let _ = v.push(IpCidr::new(IpAddress::Ipv4(a), 24));
        });
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; BUF]),
            tcp::SocketBuffer::new(vec![0; BUF]),
        );
        s.set_congestion_control(tcp::CongestionControl::Reno);
        let mut sockets = SocketSet::new(vec![]);
        let h = sockets.add(s);
        (dev, iface, sockets, h)
    }

    pub fn pair(total: u64, seed: u64, verify: bool) -> (Host, Host) {
        let (rdev, riface, mut rsockets, rh) = host(B_ADDR, seed + 2);
        rsockets
            .get_mut::<tcp::Socket>(rh)
            .listen(PORT)
            .expect("listen");
        let (sdev, mut siface, mut ssockets, sh) = host(A_ADDR, seed + 1);
        let cx = siface.context();
        ssockets
            .get_mut::<tcp::Socket>(sh)
            .connect(cx, (IpAddress::Ipv4(B_ADDR), PORT), 49152)
            .expect("connect");
        (
            Host {
                dev: sdev,
                iface: siface,
                sockets: ssockets,
                sock: sh,
                sender: true,
                total,
                left: total,
                closed: false,
                got: 0,
                pattern: pattern(),
                verify,
                bad: None,
            },
            Host {
                dev: rdev,
                iface: riface,
                sockets: rsockets,
                sock: rh,
                sender: false,
                total,
                left: 0,
                closed: false,
                got: 0,
                pattern: Vec::new(),
                verify,
                bad: None,
            },
        )
    }

    impl super::Host for Host {
        fn input(&mut self, _now: Micros, p: &[u8]) {
            self.dev.rx.push_back(p.to_vec());
        }
        fn poll(&mut self, now: Micros, out: &mut Vec<Vec<u8>>) {
            let ts = Instant::from_micros(now as i64);
            self.iface.poll(ts, &mut self.dev, &mut self.sockets);
            let s = self.sockets.get_mut::<tcp::Socket>(self.sock);
            if self.sender {
                while self.left > 0 && s.can_send() {
                    let left = self.left;
                    let p0 = ((self.total - self.left) % 251) as usize;
                    let pat = &self.pattern;
                    let n = s
                        .send(|b| {
                            let n = (b.len() as u64).min(left).min(64 * 1024) as usize;
                            b[..n].copy_from_slice(&pat[p0..p0 + n]);
                            (n, n)
                        })
                        .unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    self.left -= n as u64;
                }
                if self.left == 0 && !self.closed {
                    s.close();
                    self.closed = true;
                }
            } else {
                while s.can_recv() {
                    let (got, verify, bad) = (self.got, self.verify, &mut self.bad);
                    let n = s
                        .recv(|b| {
                            if verify && bad.is_none() {
                                *bad = check(got, b);
                            }
                            (b.len(), b.len())
                        })
                        .unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    self.got += n as u64;
                }
            }
            self.iface.poll(ts, &mut self.dev, &mut self.sockets);
            out.append(&mut self.dev.tx);
        }
        fn poll_at(&mut self, now: Micros) -> Option<Micros> {
            let ts = Instant::from_micros(now as i64);
            self.iface
                .poll_at(ts, &self.sockets)
                .map(|t| t.total_micros().max(0) as u64)
        }
        fn received(&self) -> u64 {
            self.got
        }
        fn corrupt_at(&self) -> Option<u64> {
            self.bad
        }
    }
}

// ------------------------------------------------------------------ runs

struct Outcome {
    /// Bytes the receiver's application got.
    bytes: u64,
    /// Clock time the transfer took (virtual or real, µs).
    clock_us: u64,
    /// Wall time (ns).
    wall_ns: u128,
    /// Packets sender -> receiver (data segments, including retransmissions).
    segments: u64,
    /// The receiver got more bytes than were sent, or wrong bytes.
    corrupt: Option<u64>,
    /// Packets the link dropped, sender -> receiver (random loss + queue)
    /// and of those the bottleneck queue's drops.
    dropped: u64,
    queue_drops: u64,
    /// The sender's loss-recovery counters (ustack only).
    counters: Option<Counters>,
}

/// Run a transfer of `total` bytes. `virtual_clock`: time jumps to the next
/// event when idle (the loss grid); otherwise `now` is the real elapsed time
/// (the unimpaired throughput run). Stops at `limit_us` of clock time.
#[allow(clippy::too_many_arguments)]
fn run<S: Host, R: Host>(
    mut s: S,
    mut r: R,
    total: u64,
    ab: LinkCfg,
    ba: LinkCfg,
    seed: u64,
    virtual_clock: bool,
    limit_us: u64,
) -> Outcome {
    let mut l_sr = Link::new(ab, seed.wrapping_mul(3) + 1);
    let mut l_rs = Link::new(ba, seed.wrapping_mul(5) + 2);
    let wall = WallInstant::now();
    let mut now: Micros = 0;
    let mut out = Vec::new();
    loop {
        if !virtual_clock {
            now = wall.elapsed().as_micros() as u64;
        }
        // Settle: move packets that are due until nobody has anything to say.
        loop {
            if !virtual_clock {
                now = wall.elapsed().as_micros() as u64;
            }
            let mut moved = false;
            while let Some(p) = l_rs.recv(now) {
                s.input(now, &p);
                moved = true;
            }
            s.poll(now, &mut out);
            for p in out.drain(..) {
                l_sr.send(now, p);
                moved = true;
            }
            while let Some(p) = l_sr.recv(now) {
                r.input(now, &p);
                moved = true;
            }
            r.poll(now, &mut out);
            for p in out.drain(..) {
                l_rs.send(now, p);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        if r.received() >= total || now >= limit_us {
            break;
        }
        if virtual_clock {
            let next = [
                l_sr.next_at(),
                l_rs.next_at(),
                s.poll_at(now),
                r.poll_at(now),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit_us);
            now = next.max(now + 1).min(limit_us);
        }
    }
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!(
            "  run: {} of {total} B in {} us clock, s->r {} pkts ({} dropped, {} by the queue), r->s {} pkts ({} dropped); sender {:?}",
            r.received(),
            now,
            l_sr.sent(),
            l_sr.dropped(),
            l_sr.queue_drops(),
            l_rs.sent(),
            l_rs.dropped(),
            s.counters()
        );
    }
    Outcome {
        bytes: r.received(),
        clock_us: now,
        wall_ns: wall.elapsed().as_nanos(),
        segments: l_sr.sent(),
        corrupt: r.corrupt_at().or((r.received() > total).then_some(total)),
        dropped: l_sr.dropped(),
        queue_drops: l_sr.queue_drops(),
        counters: s.counters(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Keep glibc from returning heap memory to the kernel after every burst:
/// packets in flight on the memory link (up to a 1 MiB window of 1.5 KB
/// `Vec`s) are allocated and freed in waves, and with the default trim
/// threshold each wave costs page faults that belong to neither stack.
fn quiet_allocator() {
    // SAFETY: mallopt only tunes glibc's allocator; called before any threads.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// `--name VALUE` from the command line.
fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|s| s.as_str())
}

/// `min max` of a sample.
fn spread(v: &[f64]) -> (f64, f64) {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (min, max)
}

fn median_u(v: impl Iterator<Item = u64>) -> f64 {
    median(v.map(|x| x as f64).collect())
}

fn main() {
    quiet_allocator();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only ustack|smoltcp` (e.g. under perf) and `--no-grid` (perfect link only).
    let only = arg(&args, "--only").map(str::to_string);
    let grid = !args.iter().any(|a| a == "--no-grid");
    // `--grid-only`: skip the perfect-link run.
    let bulk_run = !args.iter().any(|a| a == "--grid-only");
    // `cargo bench` passes `--bench`; ignore other arguments.
    let (bulk, reps, mut lossy, mut seeds) = if quick {
        (20_000_000u64, 3, 2_000_000u64, 5)
    } else {
        (100_000_000u64, 5, 10_000_000u64, 10)
    };
    // Loss grid options: `--seeds N`, `--size BYTES`, `--loss 0,1,5` (percent),
    // `--cc cubic|newreno` (ustack's controller; CUBIC is its default).
    if let Some(n) = arg(&args, "--seeds").and_then(|v| v.parse().ok()) {
        seeds = n;
    }
    if let Some(n) = arg(&args, "--size").and_then(|v| v.parse().ok()) {
        lossy = n;
    }
    let losses: Vec<f64> = arg(&args, "--loss")
        .map(|v| {
            v.split(',')
                .filter_map(|x| x.trim().parse::<f64>().ok())
                .map(|p| p / 100.0)
                .collect()
        })
        .unwrap_or_else(|| vec![0.0, 0.01, 0.05]);
    let cc = match arg(&args, "--cc") {
        Some("newreno") | Some("reno") => ustack::tcp::CongestionAlgorithm::NewReno,
        _ => ustack::tcp::CongestionAlgorithm::Cubic,
    };

    if bulk_run {
        perfect_link(only.as_deref(), bulk, reps, cc);
    }
    if grid {
        loss_grid(only.as_deref(), lossy, seeds, &losses, cc);
    }
}

fn perfect_link(only: Option<&str>, bulk: u64, reps: u64, cc: ustack::tcp::CongestionAlgorithm) {
    println!(
        "## In-memory: two stacks, one thread, perfect link ({} MB, median of {reps})\n",
        bulk / 1_000_000
    );
    println!("| stack | Gbit/s | ns per data segment | segments | clock ms |");
    println!("|---|---|---|---|---|");
    let mut gbps = [0.0f64; 2];
    for (i, name) in ["ustack", "smoltcp"].iter().enumerate() {
        if only.is_some_and(|o| o != *name) {
            continue;
        }
        let mut g = Vec::new();
        let mut nsseg = Vec::new();
        let mut last = None;
        for rep in 0..reps {
            let o = if i == 0 {
                let (s, r) = us::pair(bulk, rep, false, cc);
                run(
                    s,
                    r,
                    bulk,
                    LinkCfg::PERFECT,
                    LinkCfg::PERFECT,
                    rep,
                    false,
                    60_000_000,
                )
            } else {
                let (s, r) = sm::pair(bulk, rep, false);
                run(
                    s,
                    r,
                    bulk,
                    LinkCfg::PERFECT,
                    LinkCfg::PERFECT,
                    rep,
                    false,
                    60_000_000,
                )
            };
            if o.bytes < bulk {
                println!("| {name} | incomplete: {} of {bulk} bytes | | | |", o.bytes);
            }
            g.push(o.bytes as f64 * 8.0 / o.wall_ns as f64);
            nsseg.push(o.wall_ns as f64 / o.segments.max(1) as f64);
            last = Some(o);
        }
        let o = last.expect("reps > 0");
        gbps[i] = median(g.clone());
        println!(
            "| {name} | {:.2} | {:.0} | {} | {:.1} |",
            gbps[i],
            median(nsseg),
            o.segments,
            o.clock_us as f64 / 1000.0
        );
    }
    if only.is_none() {
        println!("\nustack/smoltcp: {:.2}x\n", gbps[0] / gbps[1]);
    }
}

/// The loss grid: every (loss, seed) point runs both stacks over the same
/// seeded links; the table gives the median goodput and the spread over
/// the seeds, and for ustack what its loss recovery did.
fn loss_grid(
    only: Option<&str>,
    lossy: u64,
    seeds: u64,
    losses: &[f64],
    cc: ustack::tcp::CongestionAlgorithm,
) {
    let limit: u64 = 600_000_000;
    println!(
        "## Loss grid: 20 ms RTT, 100 Mbit/s bottleneck (1-BDP queue), random loss both directions ({} MB, {seeds} seeds, virtual time; ustack {})\n",
        lossy as f64 / 1e6,
        cc.name()
    );
    println!(
        "| loss | ustack Mbit/s median | ustack min - max | smoltcp Mbit/s median | smoltcp min - max | ustack/smoltcp (medians) | ustack/smoltcp per seed, min - max |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut detail = Vec::new();
    for &loss in losses {
        let cfg = LinkCfg {
            delay_us: 10_000,
            loss,
            rate_bps: 100_000_000,
            queue_bytes: 250_000,
        };
        let mut res = [Vec::new(), Vec::new()];
        let mut outs: [Vec<Outcome>; 2] = [Vec::new(), Vec::new()];
        let mut corrupt = [0; 2];
        let mut unfinished = [0; 2];
        for seed in 0..seeds {
            let mut pair = [None, None];
            if only.is_none_or(|o| o == "ustack") {
                let (s, r) = us::pair(lossy, seed + 100, true, cc);
                pair[0] = Some(run(s, r, lossy, cfg, cfg, seed + 1000, true, limit));
            }
            if only.is_none_or(|o| o == "smoltcp") {
                let (s, r) = sm::pair(lossy, seed + 100, true);
                pair[1] = Some(run(s, r, lossy, cfg, cfg, seed + 1000, true, limit));
            }
            for (k, o) in pair.into_iter().enumerate() {
                let Some(o) = o else { continue };
                if let Some(at) = o.corrupt {
                    corrupt[k] += 1;
                    eprintln!(
                        "  {}: loss {loss}, seed {seed}: stream corrupt at offset {at}",
                        ["ustack", "smoltcp"][k]
                    );
                }
                if o.bytes < lossy {
                    unfinished[k] += 1;
                }
                res[k].push(o.bytes as f64 * 8.0 / o.clock_us.max(1) as f64);
                outs[k].push(o);
            }
        }
        let note = |k: usize| {
            let mut n = String::new();
            if unfinished[k] > 0 {
                n += &format!(" ({}/{seeds} unfinished at 600 s)", unfinished[k]);
            }
            if corrupt[k] > 0 {
                n += &format!(
                    " (**{}/{seeds} runs delivered a corrupt stream**)",
                    corrupt[k]
                );
            }
            n
        };
        let cell = |k: usize| {
            if res[k].is_empty() {
                return ("-".to_string(), "-".to_string());
            }
            let (lo, hi) = spread(&res[k]);
            (
                format!("{:.2}{}", median(res[k].clone()), note(k)),
                format!("{lo:.2} - {hi:.2}"),
            )
        };
        let (um, us_) = cell(0);
        let (sm_, ss) = cell(1);
        let (ratio, ratio_spread) = if res[0].len() == res[1].len() && !res[0].is_empty() {
            let per: Vec<f64> = res[0].iter().zip(&res[1]).map(|(u, s)| u / s).collect();
            let (lo, hi) = spread(&per);
            (
                format!("{:.2}x", median(res[0].clone()) / median(res[1].clone())),
                format!("{lo:.2}x - {hi:.2}x"),
            )
        } else {
            ("-".into(), "-".into())
        };
        println!(
            "| {}% | {um} | {us_} | {sm_} | {ss} | {ratio} | {ratio_spread} |",
            loss * 100.0
        );
        detail.push((loss, std::mem::take(&mut outs)));
    }
    println!(
        "\nPer loss rate, medians over the seeds: packets the link dropped data-way (of those, by the full queue), and what the sender did. Goodput of every seed in seed order.\n"
    );
    println!(
        "| loss | stack | drops (queue) | retransmissions | RTOs | recoveries | undone | TLPs | HyStart++ exits | goodput per seed, Mbit/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (loss, outs) in &detail {
        for (k, name) in ["ustack", "smoltcp"].iter().enumerate() {
            let o = &outs[k];
            if o.is_empty() {
                continue;
            }
            let c = |f: fn(&Counters) -> u64| -> String {
                if o.iter().all(|x| x.counters.is_some()) {
                    format!(
                        "{:.0}",
                        median_u(o.iter().map(|x| f(&x.counters.unwrap_or_default())))
                    )
                } else {
                    "-".into()
                }
            };
            let per: Vec<String> = o
                .iter()
                .map(|x| format!("{:.1}", x.bytes as f64 * 8.0 / x.clock_us.max(1) as f64))
                .collect();
            println!(
                "| {}% | {name} | {:.0} ({:.0}) | {} | {} | {} | {} | {} | {} | {} |",
                loss * 100.0,
                median_u(o.iter().map(|x| x.dropped)),
                median_u(o.iter().map(|x| x.queue_drops)),
                c(|c| c.retransmissions),
                c(|c| c.rto_timeouts),
                c(|c| c.recoveries),
                c(|c| c.spurious),
                c(|c| c.tlp_probes),
                c(|c| c.hystart_exits),
                per.join(" ")
            );
        }
    }
}
