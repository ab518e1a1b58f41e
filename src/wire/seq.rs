//! TCP sequence numbers: 32-bit counters that wrap around.
//!
//! RFC 9293 section 3.4: "the sequence number space ranges from 0 to
//! 2^32 - 1. Since the space is finite, all arithmetic dealing with sequence
//! numbers must be performed modulo 2^32." Comparison is therefore done on the
//! *signed* 32-bit difference (serial number arithmetic, RFC 1982): `a < b`
//! when `b` is less than 2^31 ahead of `a`, even across the wrap.
//!
//! Two numbers exactly 2^31 apart have no defined order (RFC 1982 section
//! 3.2): `partial_cmp` returns `None` and both `a < b` and `b < a` are false.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence (or acknowledgment) number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// `self + n` modulo 2^32.
    pub fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }

    /// `self - n` modulo 2^32.
    pub fn wrapping_sub(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(n))
    }

    /// Signed distance `self - other`: positive when `self` is after `other`.
    pub fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// How far `self` is after `earlier`, modulo 2^32 (never negative: if
    /// `self` is before `earlier` the result is a large number).
    pub fn distance(self, earlier: SeqNumber) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The later of the two (by sequence arithmetic); `self` if unordered.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if other > self {
            other
        } else {
            self
        }
    }

    /// The earlier of the two (by sequence arithmetic); `self` if unordered.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if other < self {
            other
        } else {
            self
        }
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        match self.diff(*other) {
            0 => Some(Ordering::Equal),
            i32::MIN => None,
            d if d < 0 => Some(Ordering::Less),
            _ => Some(Ordering::Greater),
        }
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    /// Advance by `n` bytes (modulo 2^32). `n` must be below 2^31: a larger
    /// step would not be "after" in sequence arithmetic.
    fn add(self, n: usize) -> SeqNumber {
        debug_assert!(n <= i32::MAX as usize, "sequence step too large: {n}");
        SeqNumber(self.0.wrapping_add(n as u32))
    }
}

impl Sub<usize> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, n: usize) -> SeqNumber {
        debug_assert!(n <= i32::MAX as usize, "sequence step too large: {n}");
        SeqNumber(self.0.wrapping_sub(n as u32))
    }
}

impl AddAssign<usize> for SeqNumber {
    fn add_assign(&mut self, n: usize) {
        *self = *self + n;
    }
}

impl SubAssign<usize> for SeqNumber {
    fn sub_assign(&mut self, n: usize) {
        *self = *self - n;
    }
}

impl Sub<SeqNumber> for SeqNumber {
    type Output = usize;
    /// The wrapping distance `self - other` as a byte count (see
    /// [`SeqNumber::distance`]). Never panics; use [`SeqNumber::diff`] when
    /// `self` may be before `other`.
    fn sub(self, other: SeqNumber) -> usize {
        self.distance(other) as usize
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::nonminimal_bool)] // the operators themselves are under test
    fn ordering_across_the_wrap() {
        let a = SeqNumber(u32::MAX - 5);
        let b = a + 10; // wraps to 4
        assert_eq!(b, SeqNumber(4));
        assert!(a < b);
        assert!(b > a);
        assert!(a <= b && b >= a);
        assert_eq!(b.diff(a), 10);
        assert_eq!(a.diff(b), -10);
        assert_eq!(b - a, 10usize);
        assert_eq!(b.distance(a), 10);
        assert_eq!(a.distance(b), u32::MAX - 9);
        assert_eq!(a.max(b), b);
        assert_eq!(b.max(a), b);
        assert_eq!(a.min(b), a);
        assert_eq!(b - 10usize, a);
        assert_eq!(SeqNumber(0) - 1usize, SeqNumber(u32::MAX));
    }

    #[test]
    fn ordering_at_exact_wrap_point() {
        let last = SeqNumber(u32::MAX);
        let first = SeqNumber(0);
        assert!(last < first);
        assert_eq!(first.diff(last), 1);
        assert_eq!(last.wrapping_add(1), first);
        assert_eq!(first.wrapping_sub(1), last);
        let mut s = last;
        s += 1;
        assert_eq!(s, first);
        s -= 2;
        assert_eq!(s, SeqNumber(u32::MAX - 1));
    }

    #[test]
    #[allow(clippy::nonminimal_bool, clippy::neg_cmp_op_on_partial_ord)] // operators under test
    fn half_space_apart_is_unordered() {
        let a = SeqNumber(0);
        let b = SeqNumber(1 << 31);
        assert_eq!(a.partial_cmp(&b), None);
        assert!(!(a < b) && !(b < a) && !(a > b));
        assert_eq!(a.max(b), a);
        // One less than half the space is still "after".
        assert!(SeqNumber((1 << 31) - 1) > a);
        assert!(SeqNumber((1 << 31) + 1) < a);
    }

    #[test]
    fn display() {
        assert_eq!(format!("{}", SeqNumber(123)), "123");
        assert_eq!(format!("{:?}", SeqNumber(u32::MAX)), "4294967295");
    }
}
