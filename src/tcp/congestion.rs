//! Congestion control (RFC 5681) behind a trait, so other controllers
//! (CUBIC, ...) drop in. The socket owns loss *detection* and the recovery
//! episode (RFC 6582 NewReno: the `recover` point, partial ACKs); the
//! controller owns the window arithmetic.

use crate::time::Instant;

/// The window arithmetic of a congestion controller. All sizes in bytes.
pub trait CongestionControl: core::fmt::Debug + Send {
    /// Congestion window.
    fn cwnd(&self) -> u32;
    /// Slow-start threshold.
    fn ssthresh(&self) -> u32;
    /// New data was cumulatively acknowledged outside recovery.
    fn on_ack(&mut self, now: Instant, acked: u32, mss: u32, in_flight: u32);
    /// Loss detected by duplicate ACKs / SACK: enter fast recovery
    /// (RFC 5681 3.2 step 2-3). `in_flight` is FlightSize before the retransmit.
    fn on_fast_retransmit(&mut self, now: Instant, in_flight: u32, mss: u32);
    /// An additional duplicate ACK during fast recovery (inflate, 3.2 step 4).
    fn on_recovery_dup_ack(&mut self, mss: u32);
    /// A partial ACK during recovery (RFC 6582 3.2 step 5): deflate by the
    /// amount acked, add back one MSS.
    fn on_partial_ack(&mut self, acked: u32, mss: u32);
    /// Recovery ended with a full ACK (RFC 6582 3.2 step 6).
    fn on_recovery_exit(&mut self, in_flight: u32, mss: u32);
    /// Retransmission timeout (RFC 5681 3.1 eq. 4, cwnd = 1 MSS).
    fn on_rto(&mut self, in_flight: u32, mss: u32);
    /// Name for stats and logs.
    fn name(&self) -> &'static str;
}

/// RFC 5681 Reno window arithmetic, used with RFC 6582 NewReno recovery.
#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: u32,
    ssthresh: u32,
    /// Bytes acked in congestion avoidance since cwnd last grew (RFC 5681 3.1, byte counting).
    bytes_acked: u32,
}

impl NewReno {
    /// Initial window per RFC 6928 (IW10 capped at 14600 bytes... we use
    /// min(10*MSS, max(2*MSS, 14600))).
    pub fn new(mss: u32) -> Self {
        let iw = (10 * mss).min((2 * mss).max(14600));
        NewReno { cwnd: iw, ssthresh: u32::MAX, bytes_acked: 0 }
    }
}

impl CongestionControl for NewReno {
    fn cwnd(&self) -> u32 {
        self.cwnd
    }
    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }
    fn on_ack(&mut self, _now: Instant, acked: u32, mss: u32, _in_flight: u32) {
        if self.cwnd < self.ssthresh {
            // Slow start with byte counting (RFC 3465). The per-ACK limit L
            // is not applied: receivers behind GRO/LRO (the Linux kernel on
            // a TUN device) acknowledge many segments at once, and limiting
            // each stretch ACK to 2*SMSS would stall slow start. Growth is
            // still bounded by what was actually acknowledged.
            let _ = mss;
            self.cwnd = self.cwnd.saturating_add(acked).min(self.ssthresh.max(self.cwnd));
        } else {
            // Congestion avoidance: one MSS per cwnd of acked data.
            self.bytes_acked = self.bytes_acked.saturating_add(acked);
            if self.bytes_acked >= self.cwnd {
                self.bytes_acked -= self.cwnd;
                self.cwnd = self.cwnd.saturating_add(mss);
            }
        }
    }
    fn on_fast_retransmit(&mut self, _now: Instant, in_flight: u32, mss: u32) {
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh + 3 * mss;
        self.bytes_acked = 0;
    }
    fn on_recovery_dup_ack(&mut self, mss: u32) {
        self.cwnd = self.cwnd.saturating_add(mss);
    }
    fn on_partial_ack(&mut self, acked: u32, mss: u32) {
        self.cwnd = self.cwnd.saturating_sub(acked).saturating_add(mss).max(mss);
    }
    fn on_recovery_exit(&mut self, in_flight: u32, mss: u32) {
        // RFC 6582 3.2 step 6, option 1 bounded as in option 2.
        self.cwnd = self.ssthresh.min(in_flight.max(mss) + mss);
        self.bytes_acked = 0;
    }
    fn on_rto(&mut self, in_flight: u32, mss: u32) {
        self.ssthresh = (in_flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.bytes_acked = 0;
    }
    fn name(&self) -> &'static str {
        "newreno"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const MSS: u32 = 1000;

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(MSS);
        assert_eq!(cc.cwnd(), 10 * MSS);
        cc.on_ack(Instant::ZERO, MSS, MSS, 0);
        assert_eq!(cc.cwnd(), 11 * MSS);
        cc.on_rto(20 * MSS, MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.cwnd(), MSS);
        for _ in 0..9 {
            cc.on_ack(Instant::ZERO, MSS, MSS, 0);
        }
        assert_eq!(cc.cwnd(), 10 * MSS, "slow start up to ssthresh");
        // Avoidance: +1 MSS per cwnd acked.
        for _ in 0..10 {
            cc.on_ack(Instant::ZERO, MSS, MSS, 0);
        }
        assert_eq!(cc.cwnd(), 11 * MSS);
    }

    #[test]
    fn fast_recovery_arithmetic() {
        let mut cc = NewReno::new(MSS);
        cc.on_fast_retransmit(Instant::ZERO, 20 * MSS, MSS);
        assert_eq!(cc.ssthresh(), 10 * MSS);
        assert_eq!(cc.cwnd(), 13 * MSS);
        cc.on_recovery_dup_ack(MSS);
        assert_eq!(cc.cwnd(), 14 * MSS);
        cc.on_partial_ack(4 * MSS, MSS);
        assert_eq!(cc.cwnd(), 11 * MSS);
        cc.on_recovery_exit(8 * MSS, MSS);
        assert_eq!(cc.cwnd(), 9 * MSS);
    }
}
