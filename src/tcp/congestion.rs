//! Congestion control behind a trait, so controllers drop in: RFC 5681
//! Reno arithmetic ([`NewReno`]) and RFC 9438 CUBIC ([`Cubic`], the default),
//! both with RFC 9406 HyStart++ ([`HyStart`]) in their initial slow start.
//!
//! The split of work:
//!
//! * the **socket** owns loss *detection* and the recovery episode: the
//!   RFC 6675 SACK scoreboard and `pipe`, RACK-TLP (RFC 8985), RFC 6937
//!   proportional rate reduction during SACK recovery (it sets cwnd through
//!   [`CongestionControl::set_cwnd`]), and, when the peer does not do SACK,
//!   RFC 6582 NewReno recovery (the `recover` point, partial ACKs, window
//!   inflation);
//! * the **controller** owns the window arithmetic: how much cwnd grows per
//!   ACK (slow start with HyStart++, congestion avoidance) and how far it
//!   falls on a congestion event or a timeout.
//!
//! All sizes are bytes. Times come in as arguments (sans-IO).

use super::socket::seq_ge;
use crate::time::{Duration, Instant};

/// What one acceptable ACK that acknowledged new data tells the controller.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub now: Instant,
    /// Bytes newly acknowledged cumulatively (RFC 5681 byte counting; the
    /// `N` of RFC 9406).
    pub acked: u32,
    pub mss: u32,
    /// FlightSize before this ACK.
    pub in_flight: u32,
    /// Smoothed RTT (zero when unknown).
    pub srtt: Duration,
    /// The RTT this ACK measured (RFC 9406 `currRTT`): from the most
    /// recently sent segment it newly acknowledged that was never
    /// retransmitted, or from its timestamp echo. `None`: no sample.
    pub rtt: Option<Duration>,
    /// SND.UNA after the ACK and SND.NXT (RFC 9406 counts rounds in
    /// sequence numbers: a round ends when its `windowEnd` is acknowledged).
    pub snd_una: u32,
    pub snd_nxt: u32,
}

/// Where the controller is, for stats and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// cwnd < ssthresh, standard (or HyStart++) slow start.
    SlowStart,
    /// RFC 9406 Conservative Slow Start: after a delay increase, growth at
    /// a quarter of slow start's for up to `CSS_ROUNDS` rounds.
    ConservativeSlowStart,
    /// cwnd >= ssthresh.
    CongestionAvoidance,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::SlowStart => "slow_start",
            Phase::ConservativeSlowStart => "css",
            Phase::CongestionAvoidance => "congestion_avoidance",
        }
    }
}

/// The window arithmetic of a congestion controller. All sizes in bytes.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// Congestion window.
    fn cwnd(&self) -> u32;
    /// Slow-start threshold.
    fn ssthresh(&self) -> u32;
    /// Overwrite cwnd. Used by the socket's recovery: RFC 6937 PRR during
    /// SACK recovery, RFC 6582 inflation/deflation without SACK; the same
    /// for every controller.
    fn set_cwnd(&mut self, cwnd: u32);
    /// New data was cumulatively acknowledged outside loss recovery.
    fn on_ack(&mut self, ack: &Ack);
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
    /// The last congestion event or timeout was spurious (D-SACK showed
    /// every retransmission unneeded, or a timestamp echo showed the
    /// original arrived): restore the state from before it (RFC 3708 /
    /// RFC 4015 / Linux "undo"). Returns whether there was anything to undo.
    fn undo(&mut self) -> bool {
        false
    }
    /// Slow start, HyStart++'s CSS, or congestion avoidance.
    fn phase(&self) -> Phase {
        if self.cwnd() < self.ssthresh() {
            Phase::SlowStart
        } else {
            Phase::CongestionAvoidance
        }
    }
    /// Name for stats and logs.
    fn name(&self) -> &'static str;
    /// Start over as new for this MSS (the MSS is known once the
    /// handshake has negotiated it; the allocation is kept).
    fn restart(&mut self, mss: u32);
}

/// Initial window per RFC 6928: min(10*MSS, max(2*MSS, 14600)).
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14600))
}

/// RFC 9406 4.3: lower bound of the delay increase that ends slow start.
pub const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
/// RFC 9406 4.3: upper bound of that threshold.
pub const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
/// RFC 9406 4.3: the threshold is lastRoundMinRTT / MIN_RTT_DIVISOR, clamped.
pub const MIN_RTT_DIVISOR: u32 = 8;
/// RFC 9406 4.3: RTT samples a round needs before its minimum counts.
pub const N_RTT_SAMPLE: u32 = 8;
/// RFC 9406 4.3: CSS grows cwnd at 1/CSS_GROWTH_DIVISOR of slow start's rate.
pub const CSS_GROWTH_DIVISOR: u32 = 4;
/// RFC 9406 4.3: rounds of CSS before congestion avoidance.
pub const CSS_ROUNDS: u32 = 5;

/// The HyStart++ phase (RFC 9406 4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HyStartPhase {
    /// Standard slow start, watching the round's minimum RTT.
    SlowStart,
    /// Conservative Slow Start, in its `n`th round (the partial round in
    /// which CSS began is round 1).
    Css(u32),
    /// Not in use: after the first congestion event or timeout (RFC 9406
    /// 4.2: only the initial slow start), or after CSS ended.
    Off,
}

/// What HyStart++ makes of one ACK in slow start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowStartStep {
    /// Grow cwnd by this many bytes.
    Grow(u32),
    /// CSS is over (RFC 9406 4.2): ssthresh = cwnd, congestion avoidance.
    EnterAvoidance,
}

/// RFC 9406 HyStart++: slow start that ends *before* the first loss, when
/// the minimum RTT of a round has grown by `RttThresh` over the previous
/// round's (the bottleneck queue is filling), followed by Conservative Slow
/// Start, which grows at a quarter of the rate for `CSS_ROUNDS` rounds and
/// goes back to slow start if the RTT falls again (the increase was jitter).
///
/// ustack does not pace, for which the RFC suggests `L = 8` (at most 8 SMSS
/// of cwnd growth per ACK). ustack uses `L = infinity`, as Linux's slow start
/// does: its main peer, Linux behind a TUN device with GRO, acknowledges up
/// to 44 segments with one ACK, and L = 8 would slow slow start to about
/// x1.2 per round trip there. Growth is still bounded by what was acked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HyStart {
    phase: HyStartPhase,
    /// The round ends when SND.UNA reaches this (`windowEnd`).
    window_end: Option<u32>,
    last_round_min_rtt: Option<Duration>,
    current_round_min_rtt: Option<Duration>,
    rtt_sample_count: u32,
    css_baseline_min_rtt: Option<Duration>,
}

impl Default for HyStart {
    fn default() -> Self {
        HyStart {
            phase: HyStartPhase::SlowStart,
            window_end: None,
            last_round_min_rtt: None,
            current_round_min_rtt: None,
            rtt_sample_count: 0,
            css_baseline_min_rtt: None,
        }
    }
}

impl HyStart {
    pub fn phase(&self) -> HyStartPhase {
        self.phase
    }
    /// HyStart++ is used only in the initial slow start (RFC 9406 4.2).
    pub fn turn_off(&mut self) {
        self.phase = HyStartPhase::Off;
    }

    /// One ACK that acknowledged `a.acked` new bytes while cwnd < ssthresh.
    pub fn on_ack(&mut self, a: &Ack) -> SlowStartStep {
        let divisor = match self.phase {
            HyStartPhase::Off => return SlowStartStep::Grow(a.acked),
            HyStartPhase::SlowStart => 1,
            HyStartPhase::Css(_) => CSS_GROWTH_DIVISOR,
        };
        if self.window_end.is_none() {
            // The first round ends with what is in flight now.
            self.window_end = Some(a.snd_nxt);
        }
        // Keep track of the round's minimum RTT.
        if let Some(rtt) = a.rtt {
            self.current_round_min_rtt =
                Some(self.current_round_min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.rtt_sample_count += 1;
        }
        if self.rtt_sample_count >= N_RTT_SAMPLE {
            match (self.phase, self.current_round_min_rtt) {
                (HyStartPhase::SlowStart, Some(cur)) => {
                    if let Some(last) = self.last_round_min_rtt {
                        let thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
                        if cur >= last + thresh {
                            // Delay increase: the queue is building.
                            self.css_baseline_min_rtt = Some(cur);
                            self.phase = HyStartPhase::Css(1);
                        }
                    }
                }
                (HyStartPhase::Css(_), Some(cur))
                    if self.css_baseline_min_rtt.is_some_and(|b| cur < b) =>
                {
                    // The RTT fell below the baseline: the exit was
                    // spurious, resume slow start.
                    self.css_baseline_min_rtt = None;
                    self.phase = HyStartPhase::SlowStart;
                }
                _ => {}
            }
        }
        // Round accounting: the round ends when windowEnd is acknowledged.
        if self.window_end.is_some_and(|w| seq_ge(a.snd_una, w)) {
            self.window_end = Some(a.snd_nxt);
            self.last_round_min_rtt = self.current_round_min_rtt;
            self.current_round_min_rtt = None;
            self.rtt_sample_count = 0;
            if let HyStartPhase::Css(n) = self.phase {
                if n >= CSS_ROUNDS {
                    self.phase = HyStartPhase::Off;
                    return SlowStartStep::EnterAvoidance;
                }
                self.phase = HyStartPhase::Css(n + 1);
            }
        }
        SlowStartStep::Grow(a.acked / divisor)
    }
}

/// RFC 5681 Reno window arithmetic, used with RFC 6582 NewReno or RFC 6675
/// SACK recovery, and RFC 9406 HyStart++ in the initial slow start.
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acked in congestion avoidance since cwnd last grew (RFC 5681 3.1, byte counting).
    bytes_acked: u32,
    hystart: HyStart,
    /// State before the last congestion event or timeout, for `undo`.
    prior: Option<(u32, u32, HyStart)>,
}

impl NewReno {
    pub fn new(mss: u32) -> Self {
        NewReno {
            cwnd: initial_window(mss),
            ssthresh: u32::MAX,
            bytes_acked: 0,
            hystart: HyStart::default(),
            prior: None,
        }
    }
    pub fn hystart(&self) -> &HyStart {
        &self.hystart
    }
}

impl CongestionControl for NewReno {
    fn restart(&mut self, mss: u32) {
        *self = NewReno::new(mss);
    }
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd.max(1);
    }
    fn on_ack(&mut self, a: &Ack) {
        if self.cwnd < self.ssthresh {
            // Slow start with byte counting (RFC 3465), through HyStart++.
            // The per-ACK limit L is not applied (see `HyStart`). Growth is
            // still bounded by what was actually acknowledged.
            match self.hystart.on_ack(a) {
                SlowStartStep::Grow(n) => {
                    self.cwnd = self
                        .cwnd
                        .saturating_add(n)
                        .min(self.ssthresh.max(self.cwnd));
                }
                SlowStartStep::EnterAvoidance => self.ssthresh = self.cwnd,
            }
        } else {
            // Congestion avoidance: one MSS per cwnd of acked data.
            self.bytes_acked = self.bytes_acked.saturating_add(a.acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(a.mss);
            }
        }
    }
    fn on_congestion_event(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        self.prior = Some((self.cwnd, self.ssthresh, self.hystart.clone()));
        self.hystart.turn_off();
        // RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2*SMSS).
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }
    fn on_rto(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        // Remember the state before the first timeout of a series (a
        // backed-off second timeout must not overwrite it with 1 MSS).
        if self.cwnd > mss || self.prior.is_none() {
            self.prior = Some((self.cwnd, self.ssthresh, self.hystart.clone()));
        }
        self.hystart.turn_off();
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.bytes_acked = 0;
    }
    fn undo(&mut self) -> bool {
        match self.prior.take() {
            Some((c, s, h)) => {
                self.cwnd = self.cwnd.max(c);
                self.ssthresh = s;
                self.hystart = h;
                true
            }
            None => false,
        }
    }
    fn phase(&self) -> Phase {
        if self.cwnd >= self.ssthresh {
            Phase::CongestionAvoidance
        } else if matches!(self.hystart.phase(), HyStartPhase::Css(_)) {
            Phase::ConservativeSlowStart
        } else {
            Phase::SlowStart
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
    /// RFC 9406 HyStart++ in the initial slow start.
    hystart: HyStart,
    /// State before the last congestion event or timeout, for `undo`.
    prior: Option<CubicPrior>,
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
            hystart: HyStart::default(),
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
    pub fn hystart(&self) -> &HyStart {
        &self.hystart
    }

    fn save_prior(&mut self) {
        self.prior = Some(CubicPrior {
            cwnd: self.cwnd,
            ssthresh: self.ssthresh,
            w_max: self.w_max,
            cwnd_prior: self.cwnd_prior,
            hystart: self.hystart.clone(),
        });
    }

    /// The reduction common to a congestion event and a timeout (4.6, 4.7).
    fn reduce(&mut self, mss: u32) {
        let seg = self.cwnd / mss as f64;
        self.hystart.turn_off();
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

/// What `Cubic::undo` restores.
#[derive(Debug, Clone)]
struct CubicPrior {
    cwnd: f64,
    ssthresh: u32,
    w_max: f64,
    cwnd_prior: f64,
    hystart: HyStart,
}

impl CongestionControl for Cubic {
    fn restart(&mut self, mss: u32) {
        *self = Cubic::new(mss);
    }
    fn cwnd(&self) -> u32 {
        self.cwnd.min(u32::MAX as f64) as u32
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn set_cwnd(&mut self, cwnd: u32) {
        self.cwnd = cwnd.max(1) as f64;
    }
    fn on_ack(&mut self, a: &Ack) {
        let (now, acked, mss, srtt) = (a.now, a.acked, a.mss, a.srtt);
        let mss_f = mss as f64;
        if self.cwnd < self.ssthresh as f64 {
            // Slow start (RFC 9438 4.10 defers to RFC 5681, and allows
            // HyStart++): byte counting as NewReno.
            match self.hystart.on_ack(a) {
                SlowStartStep::Grow(n) => {
                    self.cwnd = (self.cwnd + n as f64).min((self.ssthresh as f64).max(self.cwnd));
                }
                // HyStart++ ended slow start without a loss: congestion
                // avoidance from here; the first epoch puts W_max at this
                // cwnd (K = 0), as there is no saturation point yet.
                SlowStartStep::EnterAvoidance => self.ssthresh = self.cwnd(),
            }
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
        self.save_prior();
        self.reduce(mss);
        self.cwnd = self.ssthresh as f64;
    }
    fn on_rto(&mut self, _now: Instant, _in_flight: u32, mss: u32) {
        // 4.8: the same reduction of ssthresh and W_max, then restart from
        // one segment in slow start; the next epoch starts when slow start
        // reaches ssthresh. The state before the first timeout of a
        // series is what an undo restores (a backed-off second timeout
        // must not overwrite it with 1 MSS).
        if self.cwnd > mss as f64 || self.prior.is_none() {
            self.save_prior();
        }
        self.reduce(mss);
        self.cwnd = mss as f64;
    }
    fn undo(&mut self) -> bool {
        match self.prior.take() {
            Some(p) => {
                self.cwnd = self.cwnd.max(p.cwnd);
                self.ssthresh = p.ssthresh;
                self.w_max = p.w_max;
                self.cwnd_prior = p.cwnd_prior;
                self.hystart = p.hystart;
                self.epoch_start = None;
                true
            }
            None => false,
        }
    }
    fn phase(&self) -> Phase {
        if self.cwnd >= self.ssthresh as f64 {
            Phase::CongestionAvoidance
        } else if matches!(self.hystart.phase(), HyStartPhase::Css(_)) {
            Phase::ConservativeSlowStart
        } else {
            Phase::SlowStart
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

    /// An ACK of `acked` bytes without an RTT sample (HyStart++ stays put).
    fn ack(now: Instant, acked: u32, srtt: Duration) -> Ack {
        Ack {
            now,
            acked,
            mss: MSS,
            in_flight: 0,
            srtt,
            rtt: None,
            snd_una: 0,
            snd_nxt: 0,
        }
    }

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(MSS);
        assert_eq!(cc.cwnd(), 10 * MSS);
        cc.on_ack(&ack(Instant::ZERO, MSS, Z));
        assert_eq!(cc.cwnd(), 11 * MSS);
        cc.on_rto(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.cwnd(), MSS);
        for _ in 0..9 {
            cc.on_ack(&ack(Instant::ZERO, MSS, Z));
        }
        assert_eq!(cc.cwnd(), 10 * MSS, "slow start up to ssthresh");
        // Avoidance: +1 MSS per cwnd acked.
        for _ in 0..10 {
            cc.on_ack(&ack(Instant::ZERO, MSS, Z));
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
                cc.on_ack(&ack(now, MSS, rtt));
            }
            now += rtt;
            out.push(cc.cwnd / MSS as f64);
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
            cc.on_ack(&ack(Instant::ZERO, MSS, Z));
            if cc.cwnd() >= cc.ssthresh() {
                break;
            }
        }
        assert_eq!(cc.cwnd(), 70 * MSS, "slow start stops at ssthresh");
        // The next epoch starts below W_max = 100: K > 0 (concave).
        cc.on_ack(&ack(
            Instant::from_millis(1),
            MSS,
            Duration::from_millis(10),
        ));
        assert!((cc.k() - cubic_k(100.0, 70.0)).abs() < 0.01, "K {}", cc.k());
    }

    /// Drive `cc` through slow start, one ACK per MSS, each round sending a
    /// full cwnd. `rtt(round, i)` is the RTT the `i`th ACK of a round
    /// reports. Returns (phase, cwnd in segments) at the end of each round.
    fn ss_rounds(
        cc: &mut dyn CongestionControl,
        rounds: usize,
        rtt: impl Fn(usize, usize) -> Option<Duration>,
    ) -> Vec<(Phase, f64)> {
        let mut now = Instant::ZERO;
        let (mut una, mut nxt) = (0u32, cc.cwnd());
        let mut window_end = nxt;
        let (mut round, mut i) = (0, 0);
        let mut out = Vec::new();
        while round < rounds {
            now += Duration::from_micros(100);
            una += MSS;
            let r = rtt(round, i);
            cc.on_ack(&Ack {
                now,
                acked: MSS,
                mss: MSS,
                in_flight: nxt - una + MSS,
                srtt: r.unwrap_or(Z),
                rtt: r,
                snd_una: una,
                snd_nxt: nxt,
            });
            i += 1;
            if una >= window_end {
                out.push((cc.phase(), cc.cwnd() as f64 / MSS as f64));
                round += 1;
                i = 0;
                window_end = nxt;
            }
            nxt = nxt.max(una + cc.cwnd() / MSS * MSS);
        }
        out
    }

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    #[test]
    fn hystart_constant_rtt_keeps_slow_start() {
        for cc in [
            &mut NewReno::new(MSS) as &mut dyn CongestionControl,
            &mut Cubic::new(MSS),
        ] {
            let r = ss_rounds(cc, 8, |_, _| ms(20));
            for w in r.windows(2) {
                assert_eq!(w[1].0, Phase::SlowStart);
                assert!((w[1].1 / w[0].1 - 2.0).abs() < 0.11, "{r:?}");
            }
            assert_eq!(cc.ssthresh(), u32::MAX);
        }
    }

    #[test]
    fn hystart_delay_increase_enters_css_then_avoidance() {
        // Rounds 0-3 at 20 ms; from round 4 on the queue adds 4 ms: that is
        // RttThresh = max(4 ms, min(20 ms / 8, 16 ms)) exactly.
        for cc in [
            &mut NewReno::new(MSS) as &mut dyn CongestionControl,
            &mut Cubic::new(MSS),
        ] {
            let r = ss_rounds(cc, 11, |round, _| ms(if round < 4 { 20 } else { 24 }));
            let phases: Vec<Phase> = r.iter().map(|x| x.0).collect();
            use Phase::*;
            assert_eq!(
                phases,
                [
                    SlowStart,
                    SlowStart,
                    SlowStart,
                    SlowStart,
                    // CSS from the 9th ACK of round 4; that round counts as
                    // the first of CSS_ROUNDS = 5.
                    ConservativeSlowStart,
                    ConservativeSlowStart,
                    ConservativeSlowStart,
                    ConservativeSlowStart,
                    CongestionAvoidance,
                    CongestionAvoidance,
                    CongestionAvoidance,
                ],
                "{} {r:?}",
                cc.name()
            );
            // CSS grows by a quarter of slow start's rate: x1.25 per round.
            for k in 5..8 {
                let g = r[k].1 / r[k - 1].1;
                assert!((g - 1.25).abs() < 0.02, "{} round {k}: x{g}", cc.name());
            }
            // Leaving CSS sets ssthresh = cwnd.
            assert_eq!(cc.ssthresh(), (r[8].1 * MSS as f64) as u32, "{}", cc.name());
        }
    }

    #[test]
    fn hystart_delay_increase_below_threshold_is_ignored() {
        // 3.9 ms more than the last round: below MIN_RTT_THRESH.
        let mut cc = NewReno::new(MSS);
        let r = ss_rounds(&mut cc, 6, |round, _| {
            Some(Duration::from_micros(if round < 3 {
                20_000
            } else {
                23_900
            }))
        });
        assert!(r.iter().all(|x| x.0 == Phase::SlowStart), "{r:?}");
        // On a 200 ms path the threshold is MAX_RTT_THRESH = 16 ms (not 25).
        let mut cc = NewReno::new(MSS);
        let r = ss_rounds(&mut cc, 6, |round, _| ms(if round < 3 { 200 } else { 215 }));
        assert!(r.iter().all(|x| x.0 == Phase::SlowStart), "{r:?}");
        let mut cc = NewReno::new(MSS);
        let r = ss_rounds(&mut cc, 6, |round, _| ms(if round < 3 { 200 } else { 216 }));
        assert_eq!(r[3].0, Phase::ConservativeSlowStart, "{r:?}");
    }

    #[test]
    fn hystart_needs_n_rtt_samples_per_round() {
        // Only 7 ACKs per round carry an RTT sample: never enough.
        let mut cc = Cubic::new(MSS);
        let r = ss_rounds(&mut cc, 7, |round, i| {
            (i < 7).then(|| Duration::from_millis(if round < 3 { 20 } else { 40 }))
        });
        assert!(r.iter().all(|x| x.0 == Phase::SlowStart), "{r:?}");
        // With the 8th sample the same increase ends slow start.
        let mut cc = Cubic::new(MSS);
        let r = ss_rounds(&mut cc, 7, |round, i| {
            (i < 8).then(|| Duration::from_millis(if round < 3 { 20 } else { 40 }))
        });
        assert_eq!(r[3].0, Phase::ConservativeSlowStart, "{r:?}");
    }

    #[test]
    fn hystart_css_falls_back_to_slow_start_when_rtt_drops() {
        // A spike in rounds 4-5 (jitter, not a queue): CSS, then the RTT
        // falls below cssBaselineMinRtt and slow start resumes.
        let mut cc = Cubic::new(MSS);
        let r = ss_rounds(&mut cc, 9, |round, _| {
            ms(match round {
                0..=3 => 20,
                4 | 5 => 30,
                _ => 21,
            })
        });
        assert_eq!(r[4].0, Phase::ConservativeSlowStart);
        assert_eq!(r[5].0, Phase::ConservativeSlowStart);
        for x in &r[6..] {
            assert_eq!(x.0, Phase::SlowStart, "{r:?}");
        }
        assert!(
            (r[8].1 / r[7].1 - 2.0).abs() < 0.01,
            "doubling again: {r:?}"
        );
        assert_eq!(cc.ssthresh(), u32::MAX);
    }

    #[test]
    fn hystart_only_in_the_initial_slow_start() {
        let mut cc = NewReno::new(MSS);
        cc.on_congestion_event(Instant::ZERO, 40 * MSS, MSS);
        assert_eq!(cc.hystart().phase(), HyStartPhase::Off);
        let mut cc = Cubic::new(MSS);
        cc.on_rto(Instant::ZERO, 40 * MSS, MSS);
        assert_eq!(cc.hystart().phase(), HyStartPhase::Off);
        // Slow start after the timeout: no CSS whatever the RTT does.
        let r = ss_rounds(&mut cc, 5, |round, _| ms(20 + 10 * round as u64));
        assert!(r.iter().all(|x| x.0 != Phase::ConservativeSlowStart));
        // An undone timeout gives HyStart++ back with the initial slow start.
        assert!(cc.undo());
        assert_eq!(cc.ssthresh(), u32::MAX);
        assert_eq!(cc.hystart().phase(), HyStartPhase::SlowStart);
    }
}
