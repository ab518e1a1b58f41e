//! Time as the protocol core sees it: an [`Instant`] passed in by the caller.
//!
//! The core never reads a clock. The runtime converts the OS monotonic clock
//! into an `Instant`; tests use a virtual clock that they advance by hand.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};
pub use core::time::Duration;

/// A point in time, in microseconds since an arbitrary origin (the start of
/// the runtime or of a simulation).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    micros: u64,
}

impl Instant {
    /// The origin.
    pub const ZERO: Instant = Instant { micros: 0 };

    pub const fn from_micros(micros: u64) -> Self {
        Instant { micros }
    }
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            micros: millis * 1000,
        }
    }
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            micros: secs * 1_000_000,
        }
    }
    pub const fn total_micros(&self) -> u64 {
        self.micros
    }
    pub const fn total_millis(&self) -> u64 {
        self.micros / 1000
    }
    /// Time elapsed since `earlier`, or zero if `earlier` is in the future.
    pub fn saturating_duration_since(&self, earlier: Instant) -> Duration {
        Duration::from_micros(self.micros.saturating_sub(earlier.micros))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant {
            micros: self
                .micros
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        Instant {
            micros: self
                .micros
                .saturating_sub(d.as_micros().min(u64::MAX as u128) as u64),
        }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, other: Instant) -> Duration {
        self.saturating_duration_since(other)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.micros / 1_000_000,
            self.micros % 1_000_000
        )
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The earlier of two optional deadlines.
pub fn min_deadline(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn arithmetic() {
        let t = Instant::from_millis(1500);
        assert_eq!(t + Duration::from_millis(500), Instant::from_secs(2));
        assert_eq!(Instant::from_secs(2) - t, Duration::from_millis(500));
        assert_eq!(t - Instant::from_secs(2), Duration::ZERO);
        assert_eq!(format!("{t}"), "1.500000s");
        assert_eq!(min_deadline(Some(t), None), Some(t));
        assert_eq!(
            min_deadline(Some(t), Some(Instant::ZERO)),
            Some(Instant::ZERO)
        );
    }
}
