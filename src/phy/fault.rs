//! Fault injection: a device wrapper that loses, duplicates, reorders,
//! delays, corrupts and rate-limits packets, like Linux `tc netem`.
//!
//! `ustack serve --impair "loss=2%,delay=20ms,jitter=5ms"` wraps the TUN
//! device in a [`FaultInjector`] so a lab can watch TCP recover from a bad
//! network. Every decision is drawn from a seeded [`Rng`] (one per
//! direction, `Rng::derive(seed, "fault-in" / "fault-out")`), so a run with
//! the same `--seed` and the same packet sequence makes the same decisions.
//!
//! ## The spec
//! Comma-separated `key=value` parts, each optionally prefixed `in:` (packets
//! from the network to the stack) or `out:` (stack to network); no prefix
//! means both directions:
//!
//! | key | value | effect on each packet |
//! |---|---|---|
//! | `loss` | `2%` | dropped with this probability |
//! | `dup` | `1%` | delivered twice |
//! | `corrupt` | `0.1%` | one random byte XORed with a random non-zero value |
//! | `reorder` | `3%` | held back an extra `max(delay, 10ms)` so later packets overtake it |
//! | `delay` | `20ms` | held for this long (`us`, `ms`, `s`) |
//! | `jitter` | `5ms` | plus a uniform random `-jitter..=+jitter` (never before `now`) |
//! | `rate` | `50mbit` | serialised at this rate (`bit`, `kbit`, `mbit`, `gbit`; a FIFO link) |
//!
//! Held packets wait in a bounded queue ([`MAX_QUEUE`] packets per
//! direction); packets beyond it are dropped and counted (`queue_drops`), as
//! a router's tail-drop queue would.
//!
//! ## Time
//! Like every device, the injector takes `now` as an argument. Incoming
//! packets are released by `recv(now)`, outgoing ones by `send(now)` *and*
//! by `recv(now)`; [`Device::poll_at`] tells the runtime when the next held
//! packet is due, and the runtime calls `recv` on every wake-up.

use super::{Device, DeviceCaps, RxMeta};
use crate::rand::Rng;
use crate::time::{Duration, Instant};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::io;

/// Packets held per direction before tail drop.
pub const MAX_QUEUE: usize = 10_000;

/// Emptied packet buffers kept per direction for the next held packet, and
/// the bytes they may hold in all: under impairment every packet is held,
/// and allocating each (up to 64 KiB with offloads) would scatter the heap
/// (the soak's RSS, docs/reliability.md). Buffers come in power-of-two
/// sizes from 2 KiB to 64 KiB, so a held packet occupies at most twice its
/// length. [`FaultInjector::trim_memory`] releases them.
pub const MAX_SPARE_BUFFERS: usize = 64;
pub const MAX_SPARE_BYTES: usize = 4 << 20;

/// Buffer size classes: 2 KiB << class, for class in 0..SIZE_CLASSES.
const SIZE_CLASSES: usize = 6;
const MIN_CLASS_BYTES: usize = 2048;

/// The size class whose buffers hold `len` bytes (None: too big for any).
fn size_class(len: usize) -> Option<usize> {
    let c = len
        .max(MIN_CLASS_BYTES)
        .next_power_of_two()
        .trailing_zeros()
        - MIN_CLASS_BYTES.trailing_zeros();
    (c < SIZE_CLASSES as u32).then_some(c as usize)
}

/// The extra hold of a reordered packet when no larger delay is set.
pub const REORDER_HOLD: Duration = Duration::from_millis(10);

/// What is done to the packets of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Impairment {
    /// Probabilities in `0.0..=1.0`.
    pub loss: f64,
    pub dup: f64,
    pub reorder: f64,
    pub corrupt: f64,
    pub delay: Duration,
    pub jitter: Duration,
    /// Link rate in bits per second.
    pub rate_bps: Option<u64>,
}

impl Impairment {
    /// True if this impairment changes nothing.
    pub fn is_none(&self) -> bool {
        *self == Impairment::default()
    }
}

/// A parsed `--impair` spec: one [`Impairment`] per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ImpairSpec {
    /// Network → stack.
    pub inbound: Impairment,
    /// Stack → network.
    pub outbound: Impairment,
}

impl Impairment {
    /// The parts of this impairment in `--impair` syntax, each with `prefix`.
    fn parts(&self, prefix: &str, out: &mut Vec<String>) {
        let pct = |p: f64| {
            let v = p * 100.0;
            let s = format!("{v:.4}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            format!("{s}%")
        };
        for (name, p) in [
            ("loss", self.loss),
            ("dup", self.dup),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ] {
            if p > 0.0 {
                out.push(format!("{prefix}{name}={}", pct(p)));
            }
        }
        for (name, d) in [("delay", self.delay), ("jitter", self.jitter)] {
            if !d.is_zero() {
                out.push(format!("{prefix}{name}={}ms", d.as_secs_f64() * 1000.0));
            }
        }
        if let Some(r) = self.rate_bps {
            out.push(format!("{prefix}rate={}kbit", r / 1000));
        }
    }
}

/// The spec in `--impair` syntax: parts that apply to both directions
/// unprefixed, the others with `in:` / `out:`.
impl fmt::Display for ImpairSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut parts = Vec::new();
        if self.inbound == self.outbound {
            self.inbound.parts("", &mut parts);
        } else {
            self.inbound.parts("in:", &mut parts);
            self.outbound.parts("out:", &mut parts);
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}

/// A broken `--impair` spec; the message names the bad part.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImpairError {
    #[error(
        "invalid --impair part {part:?}: expected key=value (keys: loss, dup, reorder, corrupt, delay, jitter, rate)"
    )]
    MissingValue { part: String },
    #[error(
        "invalid --impair part {part:?}: unknown key {key:?} (keys: loss, dup, reorder, corrupt, delay, jitter, rate)"
    )]
    UnknownKey { part: String, key: String },
    #[error("invalid --impair part {part:?}: expected a percentage like 2%")]
    BadPercentage { part: String },
    #[error("invalid --impair part {part:?}: expected a duration like 20ms (units us, ms, s)")]
    BadDuration { part: String },
    #[error(
        "invalid --impair part {part:?}: expected a rate like 50mbit (units bit, kbit, mbit, gbit)"
    )]
    BadRate { part: String },
    #[error("invalid --impair part {part:?}: empty part (two commas in a row?)")]
    Empty { part: String },
}

fn parse_percent(v: &str) -> Option<f64> {
    let num = v.strip_suffix('%')?;
    let p: f64 = num.trim().parse().ok()?;
    if p.is_finite() && (0.0..=100.0).contains(&p) {
        Some(p / 100.0)
    } else {
        None
    }
}

fn parse_duration(v: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e6)
    } else {
        return None;
    };
    let x: f64 = num.trim().parse().ok()?;
    let micros = x * scale;
    // At most an hour: anything longer is a typo, and it keeps the arithmetic far from overflow.
    if micros.is_finite() && (0.0..=3.6e9).contains(&micros) {
        Some(Duration::from_micros(micros.round() as u64))
    } else {
        None
    }
}

fn parse_rate(v: &str) -> Option<u64> {
    let lower = v.to_ascii_lowercase();
    let units: [(&str, f64); 4] = [("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)];
    for (u, scale) in units {
        if let Some(n) = lower.strip_suffix(u) {
            let x: f64 = n.trim().parse().ok()?;
            let bps = x * scale;
            return if bps.is_finite() && (1.0..=1e12).contains(&bps) {
                Some(bps.round() as u64)
            } else {
                None
            };
        }
    }
    None
}

impl std::str::FromStr for ImpairSpec {
    type Err = ImpairError;

    /// Parse `loss=2%,out:delay=20ms,...`. An empty string or `none` means no impairment.
    fn from_str(s: &str) -> Result<ImpairSpec, ImpairError> {
        let mut spec = ImpairSpec::default();
        let s = s.trim();
        if s.is_empty() || s == "none" {
            return Ok(spec);
        }
        for raw in s.split(',') {
            let part = raw.trim();
            let p = || part.to_string();
            if part.is_empty() {
                return Err(ImpairError::Empty { part: p() });
            }
            let (dirs, kv): (&[bool], &str) = if let Some(rest) = part.strip_prefix("in:") {
                (&[true], rest)
            } else if let Some(rest) = part.strip_prefix("out:") {
                (&[false], rest)
            } else {
                (&[true, false], part)
            };
            let (key, value) = kv
                .split_once('=')
                .ok_or_else(|| ImpairError::MissingValue { part: p() })?;
            let (key, value) = (key.trim(), value.trim());
            for &inbound in dirs {
                let imp = if inbound {
                    &mut spec.inbound
                } else {
                    &mut spec.outbound
                };
                match key {
                    "loss" | "dup" | "reorder" | "corrupt" => {
                        let v = parse_percent(value)
                            .ok_or_else(|| ImpairError::BadPercentage { part: p() })?;
                        match key {
                            "loss" => imp.loss = v,
                            "dup" => imp.dup = v,
                            "reorder" => imp.reorder = v,
                            _ => imp.corrupt = v,
                        }
                    }
                    "delay" | "jitter" => {
                        let v = parse_duration(value)
                            .ok_or_else(|| ImpairError::BadDuration { part: p() })?;
                        if key == "delay" {
                            imp.delay = v
                        } else {
                            imp.jitter = v
                        }
                    }
                    "rate" => {
                        imp.rate_bps = Some(
                            parse_rate(value).ok_or_else(|| ImpairError::BadRate { part: p() })?,
                        )
                    }
                    _ => {
                        return Err(ImpairError::UnknownKey {
                            part: p(),
                            key: key.to_string(),
                        })
                    }
                }
            }
        }
        Ok(spec)
    }
}

/// What the injector did in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Packets offered to the injector.
    pub packets: u64,
    /// Dropped by `loss`.
    pub lost: u64,
    /// Extra copies made by `dup`.
    pub duplicated: u64,
    pub corrupted: u64,
    pub reordered: u64,
    /// Packets that were held (delay, jitter, reorder, rate) rather than passed at once.
    pub delayed: u64,
    /// Dropped because the hold queue was full.
    pub queue_drops: u64,
    /// Packets passed on to the other side.
    pub delivered: u64,
}

/// Counters of both directions (for `/api/stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub inbound: DirStats,
    pub outbound: DirStats,
}

/// One direction's impairment state: the held packets and the RNG.
#[derive(Debug)]
struct Lane {
    imp: Impairment,
    rng: Rng,
    /// Min-heap on (release time, arrival number): FIFO among equal times.
    queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    /// Emptied buffers of delivered packets, for the next ones, by size class.
    spare: [Vec<Vec<u8>>; SIZE_CLASSES],
    spare_bytes: usize,
    /// When the rate-limited link finishes sending what it has.
    link_free_at: Instant,
    stats: DirStats,
}

impl Lane {
    fn new(imp: Impairment, rng: Rng) -> Lane {
        Lane {
            imp,
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            spare: Default::default(),
            spare_bytes: 0,
            link_free_at: Instant::ZERO,
            stats: DirStats::default(),
        }
    }

    /// Apply the impairment to one packet. Returns it back when it may pass
    /// at once without queueing (the fast path); otherwise it is queued (or dropped).
    /// `offer` would pass the next packet through unchanged, now.
    fn passes_untouched(&self) -> bool {
        self.imp.is_none() && self.queue.is_empty()
    }

    /// Offer one packet (given in parts). `true`: it passes at once,
    /// unchanged (the caller hands it on); otherwise it is held or dropped.
    fn offer(&mut self, now: Instant, parts: &[&[u8]]) -> bool {
        self.stats.packets += 1;
        if self.imp.is_none() && self.queue.is_empty() {
            self.stats.delivered += 1;
            return true;
        }
        let imp = self.imp;
        if self.rng.chance(imp.loss) {
            self.stats.lost += 1;
            return false;
        }
        let copies = if self.rng.chance(imp.dup) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut data = self.take_buffer(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                data.extend_from_slice(p);
            }
            if !data.is_empty() && self.rng.chance(imp.corrupt) {
                let i = self.rng.below(data.len() as u64) as usize;
                let x = 1 + self.rng.below(255) as u8;
                data[i] ^= x;
                self.stats.corrupted += 1;
            }
            let mut release = now + imp.delay;
            if !imp.jitter.is_zero() {
                let j = imp.jitter.as_micros() as u64;
                let r = self.rng.below(2 * j + 1);
                release = if r >= j {
                    release + Duration::from_micros(r - j)
                } else {
                    release - Duration::from_micros(j - r)
                };
                release = release.max(now);
            }
            if self.rng.chance(imp.reorder) {
                self.stats.reordered += 1;
                release += imp.delay.max(REORDER_HOLD);
            }
            if let Some(bps) = imp.rate_bps {
                // A FIFO link: transmission starts when both the packet is
                // ready and the link is free, and takes len*8/rate.
                let start = release.max(self.link_free_at);
                let tx = Duration::from_micros((data.len() as u64 * 8 * 1_000_000).div_ceil(bps));
                release = start + tx;
            }
            if self.queue.len() >= MAX_QUEUE {
                self.stats.queue_drops += 1;
                self.recycle(data);
                continue;
            }
            if imp.rate_bps.is_some() {
                self.link_free_at = release;
            }
            if release > now {
                self.stats.delayed += 1;
            }
            self.seq += 1;
            self.queue.push(Reverse((release, self.seq, data)));
        }
        false
    }

    /// An empty buffer for a packet of `len` bytes: a spare of its size
    /// class, or a new one.
    fn take_buffer(&mut self, len: usize) -> Vec<u8> {
        let Some(c) = size_class(len) else {
            return Vec::with_capacity(len);
        };
        match self.spare[c].pop() {
            Some(v) => {
                self.spare_bytes -= v.capacity();
                v
            }
            None => Vec::with_capacity(MIN_CLASS_BYTES << c),
        }
    }

    /// Keep a delivered packet's buffer for the next held packet.
    fn recycle(&mut self, mut data: Vec<u8>) {
        let cap = data.capacity();
        let Some(c) = size_class(cap).filter(|&c| MIN_CLASS_BYTES << c == cap) else {
            return;
        };
        if self.spare[c].len() < MAX_SPARE_BUFFERS && self.spare_bytes + cap <= MAX_SPARE_BYTES {
            data.clear();
            self.spare_bytes += cap;
            self.spare[c].push(data);
        }
    }

    /// Release the spare buffers, and the queue's storage if it is empty.
    /// Returns the bytes released.
    fn trim(&mut self) -> usize {
        let lists: usize = self.spare.iter().map(|l| l.capacity()).sum();
        let mut bytes = self.spare_bytes + lists * std::mem::size_of::<Vec<u8>>();
        self.spare = Default::default();
        self.spare_bytes = 0;
        if self.queue.is_empty() {
            bytes +=
                self.queue.capacity() * std::mem::size_of::<Reverse<(Instant, u64, Vec<u8>)>>();
            self.queue = BinaryHeap::new();
        }
        bytes
    }

    /// The next held packet that is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now => {}
            _ => return None,
        }
        let Reverse((_, _, data)) = self.queue.pop()?;
        self.stats.delivered += 1;
        Some(data)
    }

    fn next_release(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }
}

/// A device wrapper that impairs traffic in both directions.
pub struct FaultInjector<D: Device> {
    inner: D,
    inbound: Lane,
    outbound: Lane,
}

impl<D: Device> FaultInjector<D> {
    pub fn new(inner: D, spec: ImpairSpec, seed: u64) -> Self {
        FaultInjector {
            inner,
            inbound: Lane::new(spec.inbound, Rng::derive(seed, "fault-in")),
            outbound: Lane::new(spec.outbound, Rng::derive(seed, "fault-out")),
        }
    }

    pub fn stats(&self) -> FaultStats {
        FaultStats {
            inbound: self.inbound.stats,
            outbound: self.outbound.stats,
        }
    }

    pub fn inner(&self) -> &D {
        &self.inner
    }
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Give back memory kept for reuse (the runtime's idle trim): spare
    /// packet buffers, and empty queues' storage. Returns the bytes released.
    pub fn trim_memory(&mut self) -> usize {
        self.inbound.trim() + self.outbound.trim()
    }

    /// Send every outgoing packet that is due.
    fn release_outbound(&mut self, now: Instant) -> io::Result<()> {
        while let Some(p) = self.outbound.pop_due(now) {
            let sent = self.inner.send(now, &p);
            self.outbound.recycle(p);
            sent?;
        }
        Ok(())
    }
}

impl<D: Device> Device for FaultInjector<D> {
    fn caps(&self) -> DeviceCaps {
        self.inner.caps()
    }

    fn recv(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.recv_meta(now, buf)?.map(|(n, _)| n))
    }

    fn recv_meta(&mut self, now: Instant, buf: &mut [u8]) -> io::Result<Option<(usize, RxMeta)>> {
        if let Err(e) = self.release_outbound(now) {
            log::warn!("fault injector: sending a held packet failed: {e}");
        }
        loop {
            if let Some(p) = self.inbound.pop_due(now) {
                // Held (and maybe corrupted) here: the stack verifies it.
                let n = p.len().min(buf.len());
                buf[..n].copy_from_slice(&p[..n]);
                self.inbound.recycle(p);
                return Ok(Some((n, RxMeta::default())));
            }
            // Nothing due: pull from the device until a packet passes or it is empty.
            let Some((n, meta)) = self.inner.recv_meta(now, buf)? else {
                return Ok(None);
            };
            // Passed straight through (untouched): what the device knew holds.
            if self.inbound.offer(now, &[&buf[..n]]) {
                return Ok(Some((n, meta)));
            }
        }
    }

    fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
        self.release_outbound(now)?;
        if self.outbound.offer(now, &[packet]) {
            self.inner.send(now, packet)?;
        }
        self.release_outbound(now)
    }

    fn send_parts(&mut self, now: Instant, parts: &[&[u8]]) -> io::Result<()> {
        if self.outbound.passes_untouched() {
            // No impairment and nothing held: hand the parts on as they are.
            self.outbound.stats.packets += 1;
            self.outbound.stats.delivered += 1;
            return self.inner.send_parts(now, parts);
        }
        self.release_outbound(now)?;
        if self.outbound.offer(now, parts) {
            self.inner.send_parts(now, parts)?;
        }
        self.release_outbound(now)
    }

    fn poll_at(&self) -> Option<Instant> {
        crate::time::min_deadline(
            crate::time::min_deadline(self.inbound.next_release(), self.outbound.next_release()),
            self.inner.poll_at(),
        )
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_the_parser() {
        for spec in [
            "loss=2%,delay=20ms",
            "in:loss=5%,out:dup=1%,out:rate=50000kbit",
            "corrupt=0.1%,jitter=5ms,delay=10ms",
        ] {
            let a: ImpairSpec = spec.parse().unwrap();
            let shown = a.to_string();
            let b: ImpairSpec = shown.parse().unwrap_or_else(|e| panic!("{shown}: {e}"));
            assert_eq!(a, b, "{spec} -> {shown}");
        }
        assert_eq!(
            "loss=2%".parse::<ImpairSpec>().unwrap().to_string(),
            "loss=2%"
        );
        assert_eq!(ImpairSpec::default().to_string(), "none");
    }
    use std::collections::VecDeque;

    /// A mock link: `rx` is what the network delivers, `tx` records (time, packet) sent.
    #[derive(Default)]
    struct Mock {
        rx: VecDeque<Vec<u8>>,
        tx: Vec<(Instant, Vec<u8>)>,
    }
    impl Device for Mock {
        fn caps(&self) -> DeviceCaps {
            DeviceCaps::default()
        }
        fn recv(&mut self, _now: Instant, buf: &mut [u8]) -> io::Result<Option<usize>> {
            Ok(self.rx.pop_front().map(|p| {
                buf[..p.len()].copy_from_slice(&p);
                p.len()
            }))
        }
        fn send(&mut self, now: Instant, packet: &[u8]) -> io::Result<()> {
            self.tx.push((now, packet.to_vec()));
            Ok(())
        }
    }

    fn spec(s: &str) -> ImpairSpec {
        s.parse().unwrap()
    }

    #[test]
    fn parse_full_spec() {
        let s = spec("loss=2%,dup=1%,reorder=3%,delay=20ms,jitter=5ms,corrupt=0.1%,rate=50mbit");
        for imp in [s.inbound, s.outbound] {
            assert_eq!(imp.loss, 0.02);
            assert_eq!(imp.dup, 0.01);
            assert_eq!(imp.reorder, 0.03);
            assert_eq!(imp.delay, Duration::from_millis(20));
            assert_eq!(imp.jitter, Duration::from_millis(5));
            assert!((imp.corrupt - 0.001).abs() < 1e-12);
            assert_eq!(imp.rate_bps, Some(50_000_000));
        }
    }

    #[test]
    fn parse_directions() {
        let s = spec("in:loss=10%, out:delay=1.5s ,rate=8kbit");
        assert_eq!(s.inbound.loss, 0.1);
        assert_eq!(s.outbound.loss, 0.0);
        assert_eq!(s.outbound.delay, Duration::from_millis(1500));
        assert_eq!(s.inbound.delay, Duration::ZERO);
        assert_eq!(s.inbound.rate_bps, Some(8000));
        assert_eq!(s.outbound.rate_bps, Some(8000));
        assert_eq!(spec(""), ImpairSpec::default());
        assert_eq!(spec("none"), ImpairSpec::default());
        assert_eq!(
            spec("delay=250us").inbound.delay,
            Duration::from_micros(250)
        );
    }

    #[test]
    fn parse_errors_name_the_part() {
        let e = "loss=abc".parse::<ImpairSpec>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --impair part \"loss=abc\": expected a percentage like 2%"
        );
        assert!(matches!(
            "loss=2".parse::<ImpairSpec>(),
            Err(ImpairError::BadPercentage { .. })
        ));
        assert!(matches!(
            "loss=101%".parse::<ImpairSpec>(),
            Err(ImpairError::BadPercentage { .. })
        ));
        assert!(matches!(
            "loss=-1%".parse::<ImpairSpec>(),
            Err(ImpairError::BadPercentage { .. })
        ));
        assert!(matches!(
            "loss=NaN%".parse::<ImpairSpec>(),
            Err(ImpairError::BadPercentage { .. })
        ));
        assert!(matches!(
            "delay=20".parse::<ImpairSpec>(),
            Err(ImpairError::BadDuration { .. })
        ));
        assert!(matches!(
            "delay=-5ms".parse::<ImpairSpec>(),
            Err(ImpairError::BadDuration { .. })
        ));
        assert!(matches!(
            "delay=2h".parse::<ImpairSpec>(),
            Err(ImpairError::BadDuration { .. })
        ));
        assert!(matches!(
            "rate=fast".parse::<ImpairSpec>(),
            Err(ImpairError::BadRate { .. })
        ));
        assert!(matches!(
            "rate=0mbit".parse::<ImpairSpec>(),
            Err(ImpairError::BadRate { .. })
        ));
        let e = "loss=1%,bogus=3".parse::<ImpairSpec>().unwrap_err();
        assert_eq!(
            e,
            ImpairError::UnknownKey {
                part: "bogus=3".into(),
                key: "bogus".into()
            }
        );
        assert!(matches!(
            "loss".parse::<ImpairSpec>(),
            Err(ImpairError::MissingValue { .. })
        ));
        assert!(matches!(
            "loss=1%,,dup=1%".parse::<ImpairSpec>(),
            Err(ImpairError::Empty { .. })
        ));
        assert!(matches!(
            "sideways:loss=1%".parse::<ImpairSpec>(),
            Err(ImpairError::UnknownKey { .. })
        ));
    }

    #[test]
    fn no_impairment_passes_through_unchanged() {
        let mut f = FaultInjector::new(Mock::default(), ImpairSpec::default(), 1);
        f.inner_mut().rx.push_back(vec![1, 2, 3]);
        let mut buf = [0u8; 100];
        assert_eq!(f.recv(Instant::ZERO, &mut buf).unwrap(), Some(3));
        assert_eq!(&buf[..3], &[1, 2, 3]);
        f.send(Instant::ZERO, &[4, 5]).unwrap();
        assert_eq!(f.inner().tx, vec![(Instant::ZERO, vec![4, 5])]);
        assert_eq!(f.poll_at(), None);
    }

    fn outbound_losses(seed: u64) -> Vec<bool> {
        let mut f = FaultInjector::new(Mock::default(), spec("loss=2%"), seed);
        let mut sent_before = 0;
        let mut lost = Vec::new();
        for i in 0..20_000u32 {
            f.send(Instant::from_micros(i as u64), &i.to_be_bytes())
                .unwrap();
            let now_sent = f.inner().tx.len();
            lost.push(now_sent == sent_before);
            sent_before = now_sent;
        }
        lost
    }

    #[test]
    fn loss_rate_near_spec_and_deterministic() {
        let a = outbound_losses(42);
        let rate = a.iter().filter(|l| **l).count() as f64 / a.len() as f64;
        // 20 000 Bernoulli(0.02) trials: sd ≈ 0.001, so ±0.5 % is 5 sd.
        assert!((0.015..0.025).contains(&rate), "loss rate {rate}");
        assert_eq!(a, outbound_losses(42), "same seed, same decisions");
        assert_ne!(a, outbound_losses(43), "another seed, other decisions");
    }

    #[test]
    fn inbound_loss_counts() {
        let mut f = FaultInjector::new(Mock::default(), spec("in:loss=50%"), 7);
        for i in 0..1000u32 {
            f.inner_mut().rx.push_back(i.to_be_bytes().to_vec());
        }
        let mut buf = [0u8; 100];
        let mut got = 0;
        while f.recv(Instant::ZERO, &mut buf).unwrap().is_some() {
            got += 1;
        }
        let st = f.stats().inbound;
        assert_eq!(st.packets, 1000);
        assert_eq!(st.lost + got, 1000);
        assert_eq!(st.delivered, got);
        assert!((400..600).contains(&got), "{got}");
    }

    #[test]
    fn delay_releases_at_the_right_time() {
        let mut f = FaultInjector::new(Mock::default(), spec("delay=20ms"), 1);
        f.send(Instant::from_millis(100), b"out").unwrap();
        f.inner_mut().rx.push_back(b"in".to_vec());
        let mut buf = [0u8; 100];
        assert_eq!(f.recv(Instant::from_millis(105), &mut buf).unwrap(), None);
        assert!(f.inner().tx.is_empty());
        assert_eq!(f.poll_at(), Some(Instant::from_millis(120)));
        assert_eq!(
            f.recv(Instant::from_micros(119_999), &mut buf).unwrap(),
            None
        );
        // at 120 ms the outbound packet is released by recv()
        assert_eq!(f.recv(Instant::from_millis(120), &mut buf).unwrap(), None);
        assert_eq!(
            f.inner().tx,
            vec![(Instant::from_millis(120), b"out".to_vec())]
        );
        assert_eq!(f.poll_at(), Some(Instant::from_millis(125)));
        assert_eq!(
            f.recv(Instant::from_millis(125), &mut buf).unwrap(),
            Some(2)
        );
        assert_eq!(&buf[..2], b"in");
        assert_eq!(f.poll_at(), None);
        assert_eq!(f.stats().outbound.delayed, 1);
    }

    #[test]
    fn held_packets_reuse_buffers_and_trim_releases_them() {
        // Packets of changing sizes (and in parts) through a delaying lane:
        // each arrives exactly as sent though buffers are reused, and the
        // idle trim gives the spares back.
        let mut f = FaultInjector::new(Mock::default(), spec("delay=1ms"), 4);
        let mut want = Vec::new();
        let mut buf = vec![0u8; 70_000];
        for i in 0..200u32 {
            let len = [60_000, 40, 1500, 7][i as usize % 4];
            let p: Vec<u8> = (0..len).map(|j| (i as usize * 7 + j) as u8).collect();
            let t = Instant::from_millis(u64::from(i));
            if i % 2 == 0 {
                f.send(t, &p).unwrap();
            } else {
                let (a, b) = p.split_at(len / 2);
                f.send_parts(t, &[a, b]).unwrap();
            }
            want.push(p);
            f.recv(t, &mut buf).unwrap();
        }
        f.recv(Instant::from_secs(1), &mut buf).unwrap();
        let got: Vec<Vec<u8>> = f.inner().tx.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(got, want);
        let kept: usize = f.outbound.spare.iter().map(Vec::len).sum();
        assert!(kept >= 2, "delivered buffers are kept ({kept})");
        assert!(f.outbound.spare_bytes <= MAX_SPARE_BYTES);
        assert!(f.trim_memory() >= 65536 + 2048);
        assert!(f.outbound.spare.iter().all(Vec::is_empty));
        assert_eq!(f.outbound.queue.capacity(), 0);
        assert_eq!(f.trim_memory(), 0);
    }

    #[test]
    fn size_classes_hold_a_packet_in_at_most_twice_its_length() {
        assert_eq!(size_class(0), Some(0));
        assert_eq!(size_class(2048), Some(0));
        assert_eq!(size_class(2049), Some(1));
        assert_eq!(size_class(65535), Some(5));
        assert_eq!(size_class(65536), Some(5));
        assert_eq!(size_class(65537), None);
        for len in [1, 1500, 2049, 9000, 40_000, 65_535] {
            let c = size_class(len).unwrap();
            let cap = MIN_CLASS_BYTES << c;
            assert!(
                cap >= len && (cap <= 2 * len || cap == MIN_CLASS_BYTES),
                "{len} -> {cap}"
            );
        }
    }

    #[test]
    fn jitter_stays_in_bounds() {
        let mut g = FaultInjector::new(Mock::default(), spec("out:delay=10ms,out:jitter=5ms"), 3);
        for _ in 0..200 {
            g.send(Instant::ZERO, b"x").unwrap();
        }
        let mut t = Instant::ZERO;
        let mut released = Vec::new();
        while let Some(next) = g.poll_at() {
            assert!(next >= t);
            t = next;
            g.recv(t, &mut [0u8; 10]).unwrap();
            released.push(t);
        }
        assert_eq!(g.inner().tx.len(), 200);
        assert!(released
            .iter()
            .all(|t| (Instant::from_millis(5)..=Instant::from_millis(15)).contains(t)));
        assert!(
            released.first() != released.last(),
            "jitter spreads the release times"
        );
    }

    #[test]
    fn corrupt_flips_exactly_one_byte() {
        let mut f = FaultInjector::new(Mock::default(), spec("out:corrupt=100%"), 9);
        let p = vec![0u8; 64];
        f.send(Instant::ZERO, &p).unwrap();
        let out = &f.inner().tx[0].1;
        assert_eq!(out.len(), 64);
        assert_eq!(out.iter().filter(|b| **b != 0).count(), 1);
        assert_eq!(f.stats().outbound.corrupted, 1);
    }

    #[test]
    fn dup_delivers_twice() {
        let mut f = FaultInjector::new(Mock::default(), spec("out:dup=100%"), 9);
        f.send(Instant::ZERO, b"ab").unwrap();
        assert_eq!(f.inner().tx.len(), 2);
        assert_eq!(f.stats().outbound.duplicated, 1);
    }

    #[test]
    fn reorder_lets_later_packets_overtake() {
        // Reorder packet A for sure, then turn reordering off for packet B.
        let mut f = FaultInjector::new(Mock::default(), spec("out:reorder=100%"), 5);
        f.send(Instant::ZERO, b"A").unwrap();
        f.outbound.imp.reorder = 0.0;
        f.send(Instant::from_millis(1), b"B").unwrap();
        f.recv(Instant::from_millis(50), &mut [0u8; 8]).unwrap();
        let order: Vec<_> = f.inner().tx.iter().map(|(_, p)| p.clone()).collect();
        assert_eq!(order, vec![b"B".to_vec(), b"A".to_vec()]);
        assert_eq!(f.stats().outbound.reordered, 1);
    }

    #[test]
    fn rate_serialises_packets() {
        // 8 kbit/s: a 100-byte packet takes 100 ms on the wire.
        let mut f = FaultInjector::new(Mock::default(), spec("out:rate=8kbit"), 1);
        f.send(Instant::ZERO, &[0u8; 100]).unwrap();
        f.send(Instant::ZERO, &[0u8; 100]).unwrap();
        assert_eq!(f.poll_at(), Some(Instant::from_millis(100)));
        f.recv(Instant::from_millis(100), &mut [0u8; 8]).unwrap();
        assert_eq!(f.poll_at(), Some(Instant::from_millis(200)));
        f.recv(Instant::from_millis(200), &mut [0u8; 8]).unwrap();
        let times: Vec<_> = f.inner().tx.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            vec![Instant::from_millis(100), Instant::from_millis(200)]
        );
    }

    #[test]
    fn queue_is_bounded() {
        let mut f = FaultInjector::new(Mock::default(), spec("out:delay=1s"), 1);
        for _ in 0..MAX_QUEUE + 5 {
            f.send(Instant::ZERO, b"x").unwrap();
        }
        assert_eq!(f.stats().outbound.queue_drops, 5);
        assert_eq!(f.outbound.queue.len(), MAX_QUEUE);
    }
}
