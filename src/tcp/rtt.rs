//! Retransmission timeout (RFC 6298).
//!
//! SRTT and RTTVAR are kept in microseconds. The first sample sets
//! SRTT = R, RTTVAR = R/2 (2.2); later ones use alpha = 1/8, beta = 1/4
//! (2.3); RTO = SRTT + max(G, 4*RTTVAR), clamped to [min, max] (2.4, 2.5).
//! Karn's algorithm (section 3) is the caller's job: it never feeds a sample
//! taken from a retransmitted segment (timestamps make every ACK usable).
//! Backoff doubles the RTO on each expiry (5.5) until a new sample arrives.

use core::time::Duration;

/// Clock granularity G assumed by the RTO formula.
const GRANULARITY_US: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt_us: Option<u64>,
    rttvar_us: u64,
    rto_us: u64,
    backoff: u32,
    min_us: u64,
    max_us: u64,
    latest_us: u64,
}

impl RttEstimator {
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        RttEstimator {
            srtt_us: None,
            rttvar_us: 0,
            rto_us: initial.as_micros() as u64,
            backoff: 0,
            min_us: min.as_micros() as u64,
            max_us: max.as_micros() as u64,
            latest_us: 0,
        }
    }

    /// Feed one RTT measurement.
    pub fn sample(&mut self, rtt: Duration) {
        let r = (rtt.as_micros() as u64).max(1);
        self.latest_us = r;
        match self.srtt_us {
            None => {
                self.srtt_us = Some(r);
                self.rttvar_us = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar_us = (3 * self.rttvar_us + diff) / 4;
                self.srtt_us = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt_us.unwrap_or(r);
        self.rto_us =
            (srtt + GRANULARITY_US.max(4 * self.rttvar_us)).clamp(self.min_us, self.max_us);
        self.backoff = 0;
    }

    /// The timeout to arm now (with backoff applied).
    pub fn rto(&self) -> Duration {
        let us = self
            .rto_us
            .saturating_mul(1u64 << self.backoff.min(20))
            .min(self.max_us);
        Duration::from_micros(us)
    }

    /// The timer expired: double the RTO (RFC 6298 5.5).
    pub fn back_off(&mut self) {
        if self.rto().as_micros() as u64 >= self.max_us {
            return;
        }
        self.backoff += 1;
    }

    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt_us.map(Duration::from_micros)
    }
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar_us)
    }
    pub fn latest(&self) -> Duration {
        Duration::from_micros(self.latest_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rfc6298_first_and_later_samples() {
        let mut r = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(r.rto(), ms(1000));
        r.sample(ms(100));
        // SRTT=100, RTTVAR=50, RTO=100+200=300
        assert_eq!(r.srtt(), Some(ms(100)));
        assert_eq!(r.rto(), ms(300));
        r.sample(ms(200));
        // RTTVAR = 3/4*50 + 1/4*100 = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(r.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(r.rttvar(), Duration::from_micros(62_500));
        assert_eq!(r.rto(), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn clamp_and_backoff() {
        let mut r = RttEstimator::new(ms(1000), ms(200), ms(5000));
        r.sample(ms(1));
        assert_eq!(r.rto(), ms(200), "clamped to the minimum");
        r.back_off();
        assert_eq!(r.rto(), ms(400));
        r.back_off();
        r.back_off();
        assert_eq!(r.rto(), ms(1600));
        for _ in 0..10 {
            r.back_off();
        }
        assert_eq!(r.rto(), ms(5000), "clamped to the maximum");
        r.sample(ms(10));
        assert_eq!(r.backoff_count(), 0, "a new sample ends the backoff");
    }
}
