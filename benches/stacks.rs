//! In-memory benchmark: two ustack stacks vs two smoltcp 0.14 stacks joined
//! by a memory link, in one thread. `cargo bench --bench stacks`
//! (`-- --quick` for a short run). Prints Markdown tables; asserts nothing
//! about speed.
//!
//! 1. **Unimpaired**: a 100 MB bulk transfer over a link with no delay, no
//!    loss and no rate limit, on the real clock: Gbit/s of protocol
//!    processing (both ends on one core), and wall-clock ns per data
//!    segment.
//! 2. **Loss grid**: 1% and 5% random loss (each direction, seeded), 20 ms
//!    RTT (10 ms each way), a 100 Mbit/s bottleneck with a 1-BDP tail-drop
//!    queue, on a *virtual* clock: goodput of a 10 MB transfer (bytes
//!    delivered / virtual time), median of several seeds.
//!
//! Both stacks get 1 MiB socket buffers, MTU 1500 (MSS 1460), checksums
//! computed in software. smoltcp runs with its Reno controller (ustack runs
//! NewReno); smoltcp has no SACK. The impaired link is ustack's
//! `phy::sim::Link`, the same for both stacks.

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
    use ustack::tcp::{ListenerHandle, SocketHandle};
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

    fn config(addr: Ipv4Addr) -> Config {
        let mut c = Config::new(addr);
        c.tcp.recv_buffer = BUF;
        c.tcp.send_buffer = BUF;
        c
    }

    pub fn pair(total: u64, seed: u64, verify: bool) -> (Sender, Receiver) {
        let mut rs = Stack::new(config(B_ADDR), seed + 2);
        let listener = rs.listen(PORT, 16).expect("listen");
        let mut ss = Stack::new(config(A_ADDR), seed + 1);
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
            "  run: {} of {total} B in {} us clock, s->r {} pkts ({} dropped), r->s {} pkts ({} dropped)",
            r.received(),
            now,
            l_sr.sent(),
            l_sr.dropped(),
            l_rs.sent(),
            l_rs.dropped()
        );
    }
    Outcome {
        bytes: r.received(),
        clock_us: now,
        wall_ns: wall.elapsed().as_nanos(),
        segments: l_sr.sent(),
        corrupt: r.corrupt_at().or((r.received() > total).then_some(total)),
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

fn main() {
    quiet_allocator();
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only ustack|smoltcp` (e.g. under perf) and `--no-grid` (perfect link only).
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let grid = !args.iter().any(|a| a == "--no-grid");
    // `cargo bench` passes `--bench`; ignore other arguments.
    let (bulk, reps, lossy, seeds) = if quick {
        (20_000_000u64, 3, 2_000_000u64, 3)
    } else {
        (100_000_000u64, 5, 10_000_000u64, 5)
    };

    println!(
        "## In-memory: two stacks, one thread, perfect link ({} MB, median of {reps})\n",
        bulk / 1_000_000
    );
    println!("| stack | Gbit/s | ns per data segment | segments | clock ms |");
    println!("|---|---|---|---|---|");
    let mut gbps = [0.0f64; 2];
    for (i, name) in ["ustack", "smoltcp"].iter().enumerate() {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let mut g = Vec::new();
        let mut nsseg = Vec::new();
        let mut last = None;
        for rep in 0..reps {
            let o = if i == 0 {
                let (s, r) = us::pair(bulk, rep, false);
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
    if !grid {
        return;
    }

    println!(
        "## Loss grid: 20 ms RTT, 100 Mbit/s bottleneck (1-BDP queue), random loss both directions ({} MB, median of {seeds} seeds, virtual time)\n",
        lossy / 1_000_000
    );
    println!("| loss | ustack Mbit/s | smoltcp Mbit/s | ustack/smoltcp |");
    println!("|---|---|---|---|");
    for loss in [0.0, 0.01, 0.05] {
        let cfg = LinkCfg {
            delay_us: 10_000,
            loss,
            rate_bps: 100_000_000,
            queue_bytes: 250_000,
        };
        let mut res = [Vec::new(), Vec::new()];
        let mut corrupt = [0; 2];
        let mut unfinished = [0; 2];
        for seed in 0..seeds {
            let limit = 600_000_000;
            let ou = {
                let (s, r) = us::pair(lossy, seed + 100, true);
                run(s, r, lossy, cfg, cfg, seed + 1000, true, limit)
            };
            let os = {
                let (s, r) = sm::pair(lossy, seed + 100, true);
                run(s, r, lossy, cfg, cfg, seed + 1000, true, limit)
            };
            for (k, o) in [ou, os].into_iter().enumerate() {
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
            }
        }
        let (u, s) = (median(res[0].clone()), median(res[1].clone()));
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
        println!(
            "| {:.0}% | {:.2}{} | {:.2}{} | {:.2}x |",
            loss * 100.0,
            u,
            note(0),
            s,
            note(1),
            u / s
        );
    }
}
