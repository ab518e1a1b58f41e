//! A simulated network: impaired links and a virtual-time driver.
//!
//! A [`Link`] carries packets in **one direction**. It models, in order:
//!
//! 1. **loss** (each packet dropped with probability `loss`);
//! 2. a **bottleneck**: with `bandwidth_bps` set, a packet occupies the
//!    link for `len * 8 / bandwidth` (serialization delay) and waits behind
//!    the packets before it in a FIFO of at most `queue_bytes` bytes; a packet
//!    that does not fit is dropped (drop-tail), as in a router buffer;
//! 3. **propagation delay** (`latency`);
//! 4. **reordering**: with probability `reorder` a packet is held back an
//!    extra random `0..reorder_delay`, so later packets overtake it;
//! 5. **duplication** (a second copy follows with probability `duplicate`);
//! 6. **corruption** (one random byte flipped with probability `corrupt`;
//!    the checksums must catch it).
//!
//! All randomness comes from a seeded [`Rng`], so a failing run is repeated
//! exactly from its seed. Nothing here reads a clock: the [`World`] keeps a
//! virtual clock and jumps straight to the next event (a delivery or a
//! stack timer), so a minute of simulated TCP takes milliseconds.
//!
//! [`World`] joins two [`Endpoint`]s (two ustack [`Stack`]s, or a Stack and
//! another implementation such as smoltcp in the interop tests) with a
//! [`Link`] each way.

use crate::iface::Stack;
use crate::rand::Rng;
use crate::time::{Duration, Instant};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Impairments of one direction of a link.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub latency: Duration,
    /// Bottleneck rate in bits per second; `None`: infinitely fast.
    pub bandwidth_bps: Option<u64>,
    /// Bottleneck queue size in bytes (drop-tail); only with a bandwidth.
    pub queue_bytes: usize,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is delivered twice.
    pub duplicate: f64,
    /// Probability that a packet is held back by an extra random delay.
    pub reorder: f64,
    /// Upper bound of that extra delay.
    pub reorder_delay: Duration,
    /// Probability that one byte of a packet is flipped.
    pub corrupt: f64,
}

impl Default for LinkConfig {
    /// A perfect link: no delay, no loss, infinite bandwidth.
    fn default() -> Self {
        LinkConfig {
            latency: Duration::ZERO,
            bandwidth_bps: None,
            queue_bytes: 256 * 1024,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            corrupt: 0.0,
        }
    }
}

impl LinkConfig {
    /// A perfect link with the given one-way delay.
    pub fn with_latency(latency: Duration) -> Self {
        LinkConfig {
            latency,
            ..Default::default()
        }
    }
}

/// What a link did to the packets given to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub queue_drops: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub down_drops: u64,
}

/// One direction of a simulated link.
#[derive(Debug)]
pub struct Link {
    pub config: LinkConfig,
    rng: Rng,
    /// Packets in flight: (delivery time, arrival order) -> bytes.
    in_flight: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    order: u64,
    /// When the bottleneck finishes serializing everything queued so far.
    busy_until: Instant,
    /// A dead link drops everything (for "the peer vanished" tests).
    down: bool,
    pub stats: LinkStats,
}

impl Link {
    pub fn new(config: LinkConfig, rng: Rng) -> Self {
        Link {
            config,
            rng,
            in_flight: BinaryHeap::new(),
            order: 0,
            busy_until: Instant::ZERO,
            down: false,
            stats: LinkStats::default(),
        }
    }

    /// Cut (`true`) or restore the link. Packets already in flight still arrive.
    pub fn set_down(&mut self, down: bool) {
        self.down = down;
    }

    pub fn is_down(&self) -> bool {
        self.down
    }

    /// Serialization time of `len` bytes at the bottleneck rate.
    fn tx_time(&self, len: usize) -> Duration {
        match self.config.bandwidth_bps {
            Some(bps) if bps > 0 => {
                Duration::from_nanos((len as u64 * 8).saturating_mul(1_000_000_000) / bps)
            }
            _ => Duration::ZERO,
        }
    }

    /// Bytes waiting in the bottleneck queue at `now`.
    pub fn queued_bytes(&self, now: Instant) -> usize {
        match self.config.bandwidth_bps {
            Some(bps) if bps > 0 => {
                let backlog = self.busy_until.saturating_duration_since(now);
                (backlog.as_nanos() * bps as u128 / 8 / 1_000_000_000) as usize
            }
            _ => 0,
        }
    }

    /// Hand a packet to the link at `now`.
    pub fn send(&mut self, now: Instant, packet: &[u8]) {
        self.stats.sent += 1;
        if self.down {
            self.stats.down_drops += 1;
            return;
        }
        if self.rng.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        // The bottleneck: FIFO behind what is already queued (drop-tail).
        let start = self.busy_until.max(now);
        if self.config.bandwidth_bps.is_some()
            && self.queued_bytes(now) + packet.len() > self.config.queue_bytes
        {
            self.stats.queue_drops += 1;
            return;
        }
        let done = start + self.tx_time(packet.len());
        self.busy_until = done;
        let mut at = done + self.config.latency;
        if self.rng.chance(self.config.reorder) {
            self.stats.reordered += 1;
            let extra = self
                .rng
                .below(self.config.reorder_delay.as_micros().max(1) as u64);
            at += Duration::from_micros(extra);
        }
        let mut bytes = packet.to_vec();
        if !bytes.is_empty() && self.rng.chance(self.config.corrupt) {
            self.stats.corrupted += 1;
            let i = self.rng.below(bytes.len() as u64) as usize;
            let flip = 1 + self.rng.below(255) as u8;
            bytes[i] ^= flip;
        }
        if self.rng.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            let dup_at = at + Duration::from_micros(self.rng.below(1000));
            self.push(dup_at, bytes.clone());
        }
        self.push(at, bytes);
    }

    fn push(&mut self, at: Instant, bytes: Vec<u8>) {
        self.order += 1;
        self.in_flight.push(Reverse((at, self.order, bytes)));
    }

    /// The next packet due at or before `now`.
    pub fn recv(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.in_flight.peek() {
            Some(Reverse((at, _, _))) if *at <= now => {
                let Reverse((_, _, bytes)) = self.in_flight.pop()?;
                self.stats.delivered += 1;
                Some(bytes)
            }
            _ => None,
        }
    }

    /// When the next packet arrives.
    pub fn poll_at(&self) -> Option<Instant> {
        self.in_flight.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// Something that sends and receives IPv4 packets with the sans-IO calling
/// convention of [`Stack`].
pub trait Endpoint {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize>;
    fn poll_at(&self) -> Option<Instant>;
}

impl Endpoint for Stack {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        Stack::handle_packet(self, now, packet)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Stack::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        Stack::poll_transmit(self, now, buf)
    }
    fn poll_at(&self) -> Option<Instant> {
        Stack::poll_at(self)
    }
}

/// Two endpoints, a link each way, and a virtual clock.
///
/// `ab` carries packets from `a` to `b`, `ba` the other way. The driver
/// loop ([`World::run_until`]) settles everything due at the current
/// instant (deliveries, timers, the application callback, transmissions),
/// then jumps to the earliest next event.
pub struct World<A: Endpoint, B: Endpoint> {
    pub a: A,
    pub b: B,
    pub ab: Link,
    pub ba: Link,
    pub now: Instant,
    /// The application asks to be called again at this time even if no
    /// packet or timer is due (e.g. "resume reading after 5 s").
    pub app_wake: Option<Instant>,
    buf: Vec<u8>,
    /// Settle rounds run so far (a runaway guard for tests).
    pub rounds: u64,
    /// Print every packet sent and delivered (tcpdump-style) to stderr.
    pub trace: bool,
}

impl<A: Endpoint, B: Endpoint> World<A, B> {
    pub fn new(a: A, b: B, ab: LinkConfig, ba: LinkConfig, seed: u64) -> Self {
        World {
            a,
            b,
            ab: Link::new(ab, Rng::derive(seed, "sim-link-ab")),
            ba: Link::new(ba, Rng::derive(seed, "sim-link-ba")),
            now: Instant::ZERO,
            app_wake: None,
            buf: vec![0; 65536],
            rounds: 0,
            trace: std::env::var_os("USTACK_SIM_TRACE").is_some(),
        }
    }

    /// Deliver what is due, run timers and flush output at the current
    /// instant, until nothing moves. Returns whether anything moved.
    pub fn settle(&mut self) -> bool {
        let now = self.now;
        let mut moved_any = false;
        loop {
            let mut moved = false;
            while let Some(p) = self.ab.recv(now) {
                if self.trace {
                    eprintln!("{now:?} a>b deliver {}", crate::wire::PrettyPacket(&p));
                }
                self.b.handle_packet(now, &p);
                moved = true;
            }
            while let Some(p) = self.ba.recv(now) {
                if self.trace {
                    eprintln!("{now:?} b>a deliver {}", crate::wire::PrettyPacket(&p));
                }
                self.a.handle_packet(now, &p);
                moved = true;
            }
            self.a.handle_timeout(now);
            self.b.handle_timeout(now);
            while let Some(n) = self.a.poll_transmit(now, &mut self.buf) {
                if self.trace {
                    eprintln!(
                        "{now:?} a send    {}",
                        crate::wire::PrettyPacket(&self.buf[..n])
                    );
                }
                self.ab.send(now, &self.buf[..n]);
                moved = true;
            }
            while let Some(n) = self.b.poll_transmit(now, &mut self.buf) {
                if self.trace {
                    eprintln!(
                        "{now:?} b send    {}",
                        crate::wire::PrettyPacket(&self.buf[..n])
                    );
                }
                self.ba.send(now, &self.buf[..n]);
                moved = true;
            }
            if !moved {
                return moved_any;
            }
            moved_any = true;
        }
    }

    /// The earliest future event: a delivery, a stack timer or an app wake-up.
    pub fn next_event(&self) -> Option<Instant> {
        use crate::time::min_deadline;
        let t = min_deadline(self.a.poll_at(), self.b.poll_at());
        let t = min_deadline(t, self.ab.poll_at());
        let t = min_deadline(t, self.ba.poll_at());
        min_deadline(t, self.app_wake.filter(|w| *w > self.now))
    }

    /// Run until `app` returns true (returns true) or virtual time passes
    /// `deadline` / nothing is left to happen (returns false). `app` is
    /// called after every settled instant; whatever it queues is sent at
    /// the same instant.
    pub fn run_until<F: FnMut(&mut Self) -> bool>(
        &mut self,
        deadline: Instant,
        mut app: F,
    ) -> bool {
        loop {
            self.rounds += 1;
            self.settle();
            if app(self) {
                return true;
            }
            // The app may have queued output.
            if self.settle() && app(self) {
                return true;
            }
            let Some(next) = self.next_event() else {
                // Nothing left to happen: one last look (a timer may have
                // changed a socket without moving a packet).
                return app(self);
            };
            // Never stand still: a deadline at or before now is served at
            // the next microsecond.
            let next = next.max(self.now + Duration::from_micros(1));
            if next > deadline {
                self.now = deadline;
                self.settle();
                return app(self);
            }
            self.now = next;
        }
    }

    /// Let time pass (with no application activity) until `t`.
    pub fn run_to(&mut self, t: Instant) {
        self.run_until(t, |_| false);
        if self.now < t {
            self.now = t;
            self.settle();
        }
    }

    /// Let `d` of virtual time pass.
    pub fn advance(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_to(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bottleneck_serializes_and_drops_tail() {
        let cfg = LinkConfig {
            latency: Duration::from_millis(10),
            bandwidth_bps: Some(8_000_000), // 1 byte per microsecond
            queue_bytes: 3000,
            ..Default::default()
        };
        let mut l = Link::new(cfg, Rng::new(1));
        let t0 = Instant::ZERO;
        for _ in 0..4 {
            l.send(t0, &[0u8; 1000]);
        }
        // 1000 us each; the queue holds 3000 bytes: the 4th is dropped.
        assert_eq!(l.stats.queue_drops, 1);
        assert_eq!(l.poll_at(), Some(Instant::from_micros(11_000)));
        assert!(l.recv(Instant::from_micros(10_999)).is_none());
        assert!(l.recv(Instant::from_micros(11_000)).is_some());
        assert!(l.recv(Instant::from_micros(12_000)).is_some());
        assert!(l.recv(Instant::from_micros(12_999)).is_none());
        assert!(l.recv(Instant::from_micros(13_000)).is_some());
        assert_eq!(l.in_flight(), 0);
    }

    #[test]
    fn impairments_are_seeded() {
        let cfg = LinkConfig {
            loss: 0.3,
            duplicate: 0.1,
            corrupt: 0.1,
            reorder: 0.2,
            ..Default::default()
        };
        let run = |seed| {
            let mut l = Link::new(cfg.clone(), Rng::new(seed));
            for i in 0..1000u32 {
                l.send(Instant::ZERO, &i.to_be_bytes());
            }
            let mut out = Vec::new();
            while let Some(p) = l.recv(Instant::from_secs(1)) {
                out.push(p);
            }
            (out, l.stats.clone())
        };
        let (a, sa) = run(5);
        let (b, sb) = run(5);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert!((200..400).contains(&sa.lost), "{sa:?}");
        assert!(
            sa.duplicated > 30 && sa.corrupted > 30 && sa.reordered > 80,
            "{sa:?}"
        );
        assert_eq!(sa.delivered, sa.sent - sa.lost + sa.duplicated);
    }
}
