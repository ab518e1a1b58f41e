//! Congestion control behind a trait, so controllers drop in: RFC 5681
//! Reno arithmetic ([`NewReno`]) and RFC 9438 CUBIC ([`Cubic`], the default).
//!
//! The split of work:
//!
//! * the **socket** owns loss *detection* and the recovery episode: the
//!   RFC 6675 SACK scoreboard and `pipe`, RACK-TLP (RFC 8985), and, when the
//!   peer does not do SACK, RFC 6582 NewReno recovery (the `recover` point,
//!   partial ACKs, window inflation through [`CongestionControl::set_cwnd`]);
//! * the **controller** owns the window arithmetic: how much cwnd grows per
//!   ACK and how far it falls on a congestion event or a timeout.
//!
//! All sizes are bytes. Times come in as arguments (sans-IO).

use crate::time::{Duration, Instant};

/// The window arithmetic of a congestion controller. All sizes in bytes.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// Congestion window.
    fn cwnd(&self) -> u32;
    /// Slow-start threshold.
    fn ssthresh(&self) -> u32;
    /// Overwrite cwnd. Used by the socket's RFC 6582 recovery (inflation by
    /// one MSS per duplicate ACK, deflation on a partial ACK), which is the
    /// same for every controller.
    fn set_cwnd(&mut self, cwnd: u32);
    /// New data was cumulatively acknowledged outside loss recovery.
    /// `in_flight` is the data outstanding before this ACK; `srtt` the
    /// smoothed RTT (zero when unknown).
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, in_flight: u32, srtt: Duration);
    /// A congestion event (loss found by duplicate ACKs, SACK or RACK):
    /// set ssthresh and cwnd = ssthresh (RFC 5681 3.2 step 2, RFC 6675 5
    /// step 4.2, RFC 9438 4.6). `in_flight` is FlightSize.
    fn on_congestion_event(&mut self, now: Instant, in_flight: u32, mss: u32);
    /// Retransmission timeout (RFC 5681 3.1 eq. 4: cwnd = 1 MSS).
    fn on_rto(&mut self, now: Instant, in_flight: u32, mss: u32);
    /// Recovery ended: RFC 6582 3.2 step 6, option 1 bounded as in option 2
    /// (cwnd = min(ssthresh, FlightSize + MSS)), so no burst follows.
    fn on_recovery_exit(&mut self, in_flight: u32, mss: u32) {
        let c = self.ssthresh().min(in_flight.max(mss) + mss);
        self.set_cwnd(c);
    }
    /// The last congestion event was spurious (RFC 2883 D-SACK showed every
    /// retransmission of the episode was unneeded): restore the window
    /// from before it (RFC 3708 / Linux "undo").
    fn undo(&mut self) {}
    /// Name for stats and logs.
    fn name(&self) -> &'static str;
}

/// Initial window per RFC 6928: min(10*MSS, max(2*MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14600))
}

/// RFC 5681 Reno window arithmetic, used with RFC 6582 NewReno or RFC 6675
/// SACK recovery.
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acked in congestion avoidance since cwnd last grew (RFC 5681 3.1, byte counting).
    bytes_acked: u32,
    /// (cwnd, ssthresh) before the last congestion event, for `undo`.
    prior: Option<(u32, u32)>,
}

impl NewReno {
    pub fn new(mss: u32) -> Self {
        NewReno {
            cwnd: initial_window(mss),
            ssthresh: u32::MAX,
            bytes_acked: 0,
            prior: None,
        }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd.max(1);
    }
    fn on_ack(&mut self, _now: Instant, acked: u32, mss: u32, _in_flight: u32, _srtt: Duration) {
        if self.cwnd < self.ssthresh {
            // Slow start with byte counting (RFC 3465). The per-ACK limit L
            // is not applied: receivers behind GRO/LRO (the Linux kernel on
            // a TUN device) acknowledge many segments at once, and limiting
            // each stretch ACK to 2*SMSS would stall slow start. Growth is
            // still bounded by what was actually acknowledged.
            self.cwnd = self
                .cwnd
                .saturating_add(acked)
                .min(self.ssthresh.max(self.cwnd));
        } else {
            // Congestion avoidance: one MSS per cwnd of acked data.
            self.bytes_acked = self.bytes_acked.saturating_add(acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        self.prior = Some((self.cwnd, self.ssthresh));
        // RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }
    fn on_rto(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        self.prior = None;
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.bytes_acked = 0;
    }
    fn undo(&mut self) {
        if let Some((c, s)) = self.prior.take() {
            self.cwnd = self.cwnd.max(c);
            self.ssthresh = s;
        }
    }
    fn name(&self) -> &'static str {
        "newreno"
    }
}

/// RFC 9438 4.5: the multiplicative decrease factor.
pub const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 4.5: the scaling constant C (segments / s^3).
pub const CUBIC_C: f64 = 0.4;

/// RFC 9438 eq. 2: K, the time (seconds) the cubic function takes to climb
/// from `cwnd_epoch` back to `w_max` (both in segments).
pub fn cubic_k(w_max: f64, cwnd_epoch: f64) -> f64 {
    ((w_max - cwnd_epoch).max(0.0) / CUBIC_C).cbrt()
}

/// RFC 9438 eq. 1: W_cubic(t) = C * (t - K)^3 + W_max (segments; t, K in seconds).
pub fn w_cubic(t: f64, k: f64, w_max: f64) -> f64 {
    CUBIC_C * (t - k).powi(3) + w_max
}

/// CUBIC (RFC 9438): after a reduction, cwnd follows a cubic function of
/// the time since the reduction: fast growth far below the last saturation
/// point W_max, a plateau around it (concave region), then a cautious and
/// then faster probe beyond it (convex region). Independent of RTT, so a
/// long-RTT flow regains its window in the same wall time as a short one.
/// Where Reno would grow faster (short RTTs, small windows) the
/// Reno-friendly estimate W_est takes over (4.3).
#[derive(Debug, Clone)]
pub struct Cubic {
    /// cwnd in bytes (fractional: per-ACK increments are often < 1 byte).
    cwnd: f64,
    ssthresh: u32,
    /// Window (segments) just before the last reduction, possibly lowered
    /// by fast convergence (4.7).
    w_max: f64,
    /// cwnd (segments) before the last reduction (4.3 uses it to switch
    /// alpha to 1).
    cwnd_prior: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// K of the current epoch (seconds).
    k: f64,
    /// The Reno-friendly window estimate (segments), 4.3.
    w_est: f64,
    /// State before the last congestion event, for `undo`.
    prior: Option<(f64, u32, f64)>,
}

impl Cubic {
    pub fn new(mss: u32) -> Self {
        Cubic {
            cwnd: initial_window(mss) as f64,
            ssthresh: u32::MAX,
            w_max: 0.0,
            cwnd_prior: 0.0,
            epoch_start: None,
            k: 0.0,
            w_est: 0.0,
            prior: None,
        }
    }

    /// W_max in segments (for tests and stats).
    pub fn w_max(&self) -> f64 {
        self.w_max
    }
    /// K of the current epoch in seconds.
    pub fn k(&self) -> f64 {
        self.k
    }

    /// The reduction common to a congestion event and a timeout (4.6, 4.7).
    fn reduce(&mut self, mss: u32) {
        let seg = self.cwnd / mss as f64;
        self.prior = Some((self.cwnd, self.ssthresh, self.w_max));
        // Fast convergence (4.7): a flow whose window shrank since the last
        // event releases bandwidth to newcomers by remembering less.
        self.w_max = if seg < self.w_max {
            seg * (1.0 + CUBIC_BETA) / 2.0
        } else {
            seg
        };
        self.cwnd_prior = seg;
        self.ssthresh = ((self.cwnd * CUBIC_BETA) as u32).max(2 * mss);
        self.epoch_start = None;
    }
}

impl CongestionControl for Cubic {
    fn cwnd(&self) -> u32 {
        self.cwnd.min(u32::MAX as f64) as u32
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd.max(1) as f64;
    }
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, _in_flight: u32, srtt: Duration) {
        let mss_f = mss as f64;
        if self.cwnd < self.ssthresh as f64 {
            // Slow start (RFC 9438 4.10 defers to RFC 5681; byte counting as NewReno).
            self.cwnd = (self.cwnd + acked as f64).min((self.ssthresh as f64).max(self.cwnd));
            return;
        }
        let seg = self.cwnd / mss_f;
        let start = match self.epoch_start {
            Some(s) => s,
            None => {
                // A new congestion-avoidance epoch (4.2).
                self.epoch_start = Some(now);
                if seg < self.w_max {
                    self.k = cubic_k(self.w_max, seg);
                } else {
                    // Above the old saturation point (e.g. the first epoch
                    // after slow start): the plateau is here and now.
                    self.k = 0.0;
                    self.w_max = seg;
                }
                self.w_est = seg;
                now
            }
        };
        let t = (now - start).as_secs_f64();
        let rtt = srtt.as_secs_f64();
        let acked_seg = acked as f64 / mss_f;
        // Reno-friendly region (4.3): W_est grows like Reno with beta 0.7.
        let alpha = if self.w_est >= self.cwnd_prior {
            1.0
        } else {
            3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA)
        };
        self.w_est += alpha * acked_seg / seg;
        let cubic_now = w_cubic(t, self.k, self.w_max);
        if cubic_now < self.w_est {
            self.cwnd = self.w_est * mss_f;
            return;
        }
        // Concave/convex regions (4.4, 4.5): aim at W_cubic one RTT ahead,
        // clamped to [cwnd, 1.5 cwnd].
        let target = w_cubic(t + rtt, self.k, self.w_max).clamp(seg, 1.5 * seg);
        self.cwnd += (target - seg) / seg * acked_seg * mss_f;
    }
    fn on_congestion_event(&mut self, _now: Instant, _in_flight: u32, mss: u32) {
        self.reduce(mss);
        self.cwnd = self.ssthresh as f64;
    }
    fn on_rto(&mut self, _now: Instant, _in_flight: u32, mss: u32) {
        // 4.8: the same reduction of ssthresh and W_max, then restart from
        // one segment in slow start; the next epoch starts when slow start
        // reaches ssthresh.
        self.reduce(mss);
        self.prior = None;
        self.cwnd = mss as f64;
    }
    fn undo(&mut self) {
        if let Some((c, s, w)) = self.prior.take() {
            self.cwnd = self.cwnd.max(c);
            self.ssthresh = s;
            self.w_max = w;
            self.epoch_start = None;
        }
    }
    fn name(&self) -> &'static str {
        "cubic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MSS: u32 = 1000;
    const Z: Duration = Duration::ZERO;

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(MSS);
        assert_eq!(cc.cwnd(), 10 * MSS);
        cc.on_ack(Instant::ZERO, MSS, MSS, 0, Z);
        assert_eq!(cc.cwnd(), 11 * MSS);
        cc.on_rto(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.cwnd(), MSS);
        for _ in 0..9 {
            cc.on_ack(Instant::ZERO, MSS, MSS, 0, Z);
        }
        assert_eq!(cc.cwnd(), 10 * MSS, "slow start up to ssthresh");
        // Avoidance: +1 MSS per cwnd acked.
        for _ in 0..10 {
            cc.on_ack(Instant::ZERO, MSS, MSS, 0, Z);
        }
        assert_eq!(cc.cwnd(), 11 * MSS);
    }

    #[test]
    fn congestion_event_and_exit() {
        let mut cc = NewReno::new(MSS);
        cc.on_congestion_event(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.cwnd(), 10 * MSS);
        cc.on_recovery_exit(8 * MSS, MSS);
        assert_eq!(cc.cwnd(), 9 * MSS);
        cc.undo();
        assert_eq!(
            cc.cwnd(),
            10 * MSS,
            "undo restores the window before the event"
        );
        assert_eq!(cc.ssthresh(), u32::MAX);
    }

    #[test]
    fn rfc9438_k_and_w_cubic() {
        // K = cbrt(W_max (1 - beta) / C) when cwnd_epoch = beta * W_max.
        let w_max = 100.0;
        let k = cubic_k(w_max, CUBIC_BETA * w_max);
        assert!((k - (w_max * 0.3 / 0.4f64).cbrt()).abs() < 1e-9);
        assert!((k - 4.2172).abs() < 1e-3, "K = cbrt(75) = {k}");
        // At t = 0 the curve starts at cwnd_epoch, at t = K it reaches W_max.
        assert!((w_cubic(0.0, k, w_max) - 70.0).abs() < 1e-9);
        assert!((w_cubic(k, k, w_max) - w_max).abs() < 1e-12);
        // Symmetric around K: concave before, convex after.
        let before = w_max - w_cubic(k - 1.0, k, w_max);
        let after = w_cubic(k + 1.0, k, w_max) - w_max;
        assert!((before - 0.4).abs() < 1e-9 && (after - 0.4).abs() < 1e-9);
    }

    /// Drive a Cubic through congestion avoidance with one ACK per segment,
    /// `rtt` apart per window, and return cwnd (segments) per RTT.
    fn run_rounds(cc: &mut Cubic, start: Instant, rtt: Duration, rounds: usize) -> Vec<f64> {
        let mut now = start;
        let mut out = Vec::new();
        for _ in 0..rounds {
            let segs = (cc.cwnd() / MSS).max(1);
            for _ in 0..segs {
                cc.on_ack(now, MSS, MSS, 0, rtt);
            }
            now += rtt;
            out.push(cc.cwnd as f64 / MSS as f64);
        }
        out
    }

    #[test]
    fn cubic_reduction_and_fast_convergence() {
        let mut cc = Cubic::new(MSS);
        cc.set_cwnd(100 * MSS);
        cc.on_congestion_event(Instant::ZERO, 100 * MSS, MSS);
        assert_eq!(cc.cwnd(), 70 * MSS, "beta = 0.7");
        assert_eq!(cc.ssthresh(), 70 * MSS);
        assert!((cc.w_max() - 100.0).abs() < 1e-9);
        // A second event below W_max: fast convergence lowers W_max to
        // cwnd * (1 + beta) / 2.
        cc.on_congestion_event(Instant::ZERO, 70 * MSS, MSS);
        assert!(
            (cc.w_max() - 70.0 * 1.7 / 2.0).abs() < 1e-9,
            "{}",
            cc.w_max()
        );
        assert_eq!(cc.cwnd(), 49 * MSS);
    }

    #[test]
    fn cubic_follows_the_curve_on_a_long_rtt() {
        // 100 ms RTT: Reno would add 1 segment per RTT; CUBIC's curve is
        // steeper far from W_max, flat near it, steeper again beyond.
        let rtt = Duration::from_millis(100);
        let mut cc = Cubic::new(MSS);
        cc.set_cwnd(200 * MSS);
        cc.on_congestion_event(Instant::ZERO, 200 * MSS, MSS);
        let k = cubic_k(200.0, 140.0);
        let w = run_rounds(&mut cc, Instant::ZERO, rtt, 120);
        // Every round, cwnd is close to W_cubic one RTT ahead (within the
        // per-ACK approximation) and never below the Reno-friendly estimate.
        for (i, &c) in w.iter().enumerate() {
            let t = (i as f64 + 1.0) * 0.1;
            let expect = w_cubic(t, k, 200.0);
            assert!(
                (c - expect).abs() < 6.0,
                "round {i}: cwnd {c} vs W_cubic {expect}"
            );
        }
        assert!((cc.k() - k).abs() < 1e-9);
        // Concave: growth slows approaching W_max at t = K (~5.3 s).
        let early = w[10] - w[0];
        let plateau = w[52] - w[42];
        let late = w[119] - w[109];
        assert!(early > 2.0 * plateau, "concave: {early} vs {plateau}");
        assert!(
            late > 2.0 * plateau,
            "convex beyond W_max: {late} vs {plateau}"
        );
        assert!(w[119] > 200.0, "probes beyond W_max");
    }

    #[test]
    fn cubic_reno_friendly_region_on_short_rtt() {
        // At 1 ms RTT the cubic curve barely moves per RTT; the Reno-friendly
        // window (alpha = 3(1-b)/(1+b) ~ 0.53 segments per RTT) takes over.
        let rtt = Duration::from_millis(1);
        let mut cc = Cubic::new(MSS);
        cc.set_cwnd(20 * MSS);
        cc.on_congestion_event(Instant::ZERO, 20 * MSS, MSS);
        let w = run_rounds(&mut cc, Instant::ZERO, rtt, 100);
        let cubic_only = w_cubic(0.1, cubic_k(20.0, 14.0), 20.0);
        assert!(
            w[99] > cubic_only + 20.0,
            "W_est drives growth: {} vs {cubic_only}",
            w[99]
        );
        // Roughly 0.53 segments per RTT while below cwnd_prior, 1 after.
        assert!((w[9] - 14.0 - 10.0 * 0.529).abs() < 1.0, "{}", w[9]);
    }

    #[test]
    fn cubic_after_rto_slow_starts_to_ssthresh() {
        let mut cc = Cubic::new(MSS);
        cc.set_cwnd(100 * MSS);
        cc.on_rto(Instant::ZERO, 100 * MSS, MSS);
        assert_eq!(cc.cwnd(), MSS);
        assert_eq!(cc.ssthresh(), 70 * MSS);
        for _ in 0..200 {
            cc.on_ack(Instant::ZERO, MSS, MSS, 0, Z);
            if cc.cwnd() >= cc.ssthresh() {
                break;
            }
        }
        assert_eq!(cc.cwnd(), 70 * MSS, "slow start stops at ssthresh");
        // The next epoch starts below W_max = 100: K > 0 (concave).
        cc.on_ack(
            Instant::from_millis(1),
            MSS,
            MSS,
            0,
            Duration::from_millis(10),
        );
        assert!((cc.k() - cubic_k(100.0, 70.0)).abs() < 0.01, "K {}", cc.k());
    }
}
