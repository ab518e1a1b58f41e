//! Loss recovery and congestion control on the simulated link: RFC 6675
//! SACK recovery, RFC 6582 NewReno fallback, RFC 8985 RACK-TLP, RFC 2883
//! D-SACK, RFC 9438 CUBIC. Behaviour is asserted through the stack's
//! counters (and virtual time where the claim is about time), never wall
//! time.
//!
//! A sender-side wrapper ([`Dropper`]) drops chosen *first transmissions*
//! of data segments, so a test says exactly which segments are lost.

mod common_sim;
use common_sim::*;
use std::collections::HashSet;
use std::net::SocketAddrV4;
use ustack::iface::{Config, Stack, Stats};
use ustack::phy::sim::{Endpoint, LinkConfig, World};
use ustack::tcp::CongestionAlgorithm;
use ustack::time::{Duration, Instant};

/// A stack whose outgoing data segments can be dropped by index of first
/// transmission (0 = the first data segment sent).
struct Dropper {
    st: Stack,
    drop: HashSet<usize>,
    /// Drop every first transmission from this index on (a dead tail).
    drop_from: usize,
    seen: HashSet<u32>,
    data_segments: usize,
    dropped: usize,
}

fn tcp_seq_and_len(p: &[u8]) -> Option<(u32, usize, bool)> {
    let ihl = (p.first()? & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]) as usize;
    let t = p.get(ihl..)?;
    let seq = u32::from_be_bytes([*t.get(4)?, *t.get(5)?, *t.get(6)?, *t.get(7)?]);
    let doff = (t.get(12)? >> 4) as usize * 4;
    let fin = t.get(13)? & 1 != 0;
    Some((seq, total.saturating_sub(ihl + doff), fin))
}

impl Endpoint for Dropper {
    fn handle_packet(&mut self, now: Instant, packet: &[u8]) {
        self.st.handle_packet(now, packet)
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.st.handle_timeout(now)
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<usize> {
        loop {
            let n = self.st.poll_transmit(now, buf)?;
            if let Some((seq, len, fin)) = tcp_seq_and_len(&buf[..n]) {
                if (len > 0 || fin) && self.seen.insert(seq) {
                    let i = self.data_segments;
                    self.data_segments += 1;
                    if self.drop.contains(&i) || i >= self.drop_from {
                        self.dropped += 1;
                        continue;
                    }
                }
            }
            return Some(n);
        }
    }
    fn poll_at(&self) -> Option<Instant> {
        self.st.poll_at()
    }
}

fn rtt20() -> LinkConfig {
    LinkConfig::with_latency(Duration::from_millis(10))
}

fn cfg(addr: std::net::Ipv4Addr, sack: bool) -> Config {
    let mut c = config(addr);
    c.tcp.sack = sack;
    c.tcp.mss = 1000;
    c
}

/// Outcome of a one-way transfer a -> b.
struct Run {
    stats: Stats,
    /// When the receiving application had every byte.
    done_at: Instant,
    dropped: usize,
}

/// Send `n` bytes from a (with `drop` applied to its data segments) to b.
fn transfer(
    ca: Config,
    cb: Config,
    ab: LinkConfig,
    ba: LinkConfig,
    n: usize,
    drop: &[usize],
) -> Run {
    transfer_with(ca, cb, ab, ba, n, drop, |_| {})
}

fn transfer_with(
    ca: Config,
    cb: Config,
    ab: LinkConfig,
    ba: LinkConfig,
    n: usize,
    drop: &[usize],
    mut each: impl FnMut(&mut World<Dropper, Stack>),
) -> Run {
    let a = Dropper {
        st: Stack::new(ca, 11),
        drop: drop
            .iter()
            .copied()
            .filter(|&i| i < usize::MAX / 2)
            .collect(),
        drop_from: drop
            .iter()
            .copied()
            .find(|&i| i >= usize::MAX / 2)
            .map_or(usize::MAX, |i| i - usize::MAX / 2),
        seen: HashSet::new(),
        data_segments: 0,
        dropped: 0,
    };
    let mut w = World::new(a, Stack::new(cb, 12), ab, ba, 7);
    let l = w.b.listen(PORT, 8).unwrap();
    let mut client = Side::new(payload(1, n));
    client.handle = Some(
        w.a.st
            .connect(w.now, SocketAddrV4::new(B_ADDR, PORT))
            .unwrap(),
    );
    let mut server = Side::new(Vec::new());
    let mut done_at = None;
    let ok = w.run_until(Instant::from_secs(600), |w| {
        if server.handle.is_none() {
            server.handle = w.b.accept(l);
        }
        while w.a.st.poll_event().is_some() {}
        while w.b.poll_event().is_some() {}
        client.pump(&mut w.a.st);
        server.pump(&mut w.b);
        if done_at.is_none() && server.received.len() == n {
            done_at = Some(w.now);
        }
        each(w);
        client.closed && server.closed && w.a.st.connection_count() == 0
    });
    assert!(ok, "transfer did not finish");
    assert!(server.received == client.to_send, "bytes differ");
    Run {
        stats: w.a.st.stats().clone(),
        done_at: done_at.unwrap(),
        dropped: w.a.dropped,
    }
}

#[test]
fn single_loss_repaired_by_one_sack_retransmission() {
    let r = transfer(
        cfg(A_ADDR, true),
        cfg(B_ADDR, true),
        rtt20(),
        rtt20(),
        200_000,
        &[40],
    );
    assert_eq!(r.dropped, 1);
    assert_eq!(r.stats.tcp_rto_timeouts, 0);
    assert_eq!(r.stats.tcp_sack_recoveries, 1);
    assert_eq!(r.stats.tcp_retransmissions, 1, "only the hole is resent");
    assert_eq!(r.stats.tcp_tlp_probes, 0);
}

#[test]
fn several_losses_in_one_window_sack_vs_newreno() {
    let drops = [40, 42, 44, 46, 48];
    let sack = transfer(
        cfg(A_ADDR, true),
        cfg(B_ADDR, true),
        rtt20(),
        rtt20(),
        300_000,
        &drops,
    );
    let reno = transfer(
        cfg(A_ADDR, false),
        cfg(B_ADDR, false),
        rtt20(),
        rtt20(),
        300_000,
        &drops,
    );
    assert_eq!(sack.stats.tcp_rto_timeouts, 0);
    assert_eq!(
        sack.stats.tcp_sack_recoveries, 1,
        "one episode for the whole window"
    );
    // Exactly the five holes are resent, never a segment the receiver
    // holds. (The five out-of-order segments arrive in one burst, before
    // the receiver sends anything; it owes one ACK per out-of-order
    // segment, RFC 5681 4.2, and with only three SACK blocks per ACK a
    // single ACK for the burst would leave the lowest two blocks unreported
    // and the sender would resend them: 7.)
    assert_eq!(sack.stats.tcp_retransmissions, 5);
    // NewReno repairs one hole per RTT (partial ACKs); here that is slow
    // enough for the RTO to fire as well.
    assert_eq!(reno.stats.tcp_sack_recoveries, 0);
    assert!(reno.stats.tcp_retransmissions >= 5);
    // Four extra round trips of NewReno recovery are visible in the finish time.
    assert!(
        reno.done_at > sack.done_at + Duration::from_millis(40),
        "sack {:?} newreno {:?}",
        sack.done_at,
        reno.done_at
    );
}

#[test]
fn tail_loss_recovered_by_tlp_without_rto() {
    // 20 segments; the last three first transmissions are lost, and the FIN
    // (however it is sent).
    let r = transfer(
        cfg(A_ADDR, true),
        cfg(B_ADDR, true),
        rtt20(),
        rtt20(),
        20_000,
        &[usize::MAX / 2 + 17],
    );
    assert!(r.dropped >= 3);
    assert_eq!(
        r.stats.tcp_rto_timeouts, 0,
        "TLP, not the RTO, found the tail loss"
    );
    assert_eq!(r.stats.tcp_tlp_probes, 1);
    // Without TLP the first RTO (>= 200 ms) would fire; the probe goes out at
    // 2*SRTT = 40 ms and recovery takes about one more RTT.
    assert!(
        r.done_at < Instant::from_millis(200),
        "done at {:?}",
        r.done_at
    );
}

#[test]
fn reordering_does_not_cause_repeated_spurious_retransmissions() {
    let reorder = LinkConfig {
        latency: Duration::from_millis(10),
        reorder: 0.05,
        reorder_delay: Duration::from_millis(3),
        ..Default::default()
    };
    let r = transfer(
        cfg(A_ADDR, true),
        cfg(B_ADDR, true),
        reorder,
        rtt20(),
        2_000_000,
        &[],
    );
    assert_eq!(r.stats.tcp_rto_timeouts, 0);
    // Before the first reordering is seen, RACK (reordering window 0 with
    // DupThresh segments SACKed) and IsLost take the first reordered
    // segments of that flight for lost: one recovery episode; after it
    // RACK's window (min_RTT/4 = 5 ms > 3 ms) absorbs all reordering.
    assert_eq!(r.stats.tcp_sack_recoveries, 1);
    assert!(r.stats.tcp_retransmissions >= 1);
    // Every spurious retransmission comes back as a D-SACK, and the
    // episode's window reduction is undone.
    assert_eq!(r.stats.tcp_dsacks_received, r.stats.tcp_retransmissions);
    assert_eq!(r.stats.tcp_spurious_recoveries, 1);
}

#[test]
fn dsack_counted_for_duplicated_segments() {
    let dup = LinkConfig {
        latency: Duration::from_millis(10),
        duplicate: 0.05,
        ..Default::default()
    };
    let r = transfer(
        cfg(A_ADDR, true),
        cfg(B_ADDR, true),
        dup,
        rtt20(),
        300_000,
        &[],
    );
    assert!(r.stats.tcp_dsacks_received > 0);
    assert_eq!(r.stats.tcp_retransmissions, 0, "a D-SACK is no loss signal");
    assert_eq!(r.stats.tcp_sack_recoveries, 0);
}

#[test]
fn cubic_window_follows_rfc9438_curve_on_long_rtt() {
    // 100 ms RTT, no bandwidth limit; one early loss ends slow start, then
    // cwnd follows W_cubic(t) = C (t - K)^3 + W_max.
    let mut ca = cfg(A_ADDR, true);
    ca.tcp.send_buffer = 64 << 20;
    ca.tcp.congestion = CongestionAlgorithm::Cubic;
    let mut cb = cfg(B_ADDR, true);
    cb.tcp.recv_buffer = 64 << 20;
    cb.tcp.recv_buffer_initial = 64 << 20;
    let link = LinkConfig::with_latency(Duration::from_millis(50));
    let mut samples: Vec<(Instant, u32, u32)> = Vec::new();
    let mut recovery_end = None;
    let mut before_loss = 0;
    let r = transfer_with(ca, cb, link.clone(), link, 40_000_000, &[300], |w| {
        if let Some(c) = w.a.st.connections().first() {
            if c.ssthresh == u32::MAX {
                before_loss = c.cwnd;
            }
            if c.ssthresh != u32::MAX && c.cc_phase != "recovery" && recovery_end.is_none() {
                recovery_end = Some((w.now, c.cwnd, c.ssthresh));
            }
            if samples
                .last()
                .is_none_or(|(t, _, _)| w.now >= *t + Duration::from_millis(100))
            {
                samples.push((w.now, c.cwnd, c.ssthresh));
            }
        }
    });
    assert_eq!(r.stats.tcp_sack_recoveries, 1);
    assert_eq!(r.stats.tcp_rto_timeouts, 0);
    let seg = |c: u32| c as f64 / 1000.0;
    // The reduction: W_max = cwnd before the loss, ssthresh = 0.7 W_max
    // (RFC 9438 4.6). During recovery RFC 6937 PRR sends in proportion to
    // what is delivered, so the epoch starts at whatever cwnd recovery
    // ended with (at most ssthresh): cwnd_epoch, and K = cbrt((W_max -
    // cwnd_epoch) / C) (4.2).
    let (t0, c0, ss) = recovery_end.expect("recovery ended");
    let w_max = seg(before_loss);
    assert!(
        (seg(ss) / w_max - 0.7).abs() < 0.01,
        "ssthresh {} W_max {w_max}",
        seg(ss)
    );
    assert!(c0 <= ss, "cwnd {} ssthresh {}", seg(c0), seg(ss));
    let k = ((w_max - seg(c0)) / 0.4).cbrt();
    let at = |t: f64| {
        let when = t0 + Duration::from_secs_f64(t);
        samples
            .iter()
            .find(|(s, _, _)| *s >= when)
            .map(|(_, c, _)| seg(*c))
            .unwrap()
    };
    // Plateau at W_max around t = K; concave before, convex after.
    let near_k = at(k);
    assert!(
        (near_k / w_max - 1.0).abs() < 0.1,
        "cwnd {near_k} at K={k:.2}s vs W_max {w_max}"
    );
    let early = at(1.0) - at(0.2);
    let plateau = at(k + 0.4) - at(k - 0.4);
    let late = at(k + 3.0) - at(k + 2.2);
    assert!(
        early > plateau && late > plateau,
        "early {early} plateau {plateau} late {late}"
    );
}
