//! TCP sequence numbers: 32-bit counters compared modulo 2^32 (RFC 9293 §3.4).
//!
//! Every comparison and offset of a sequence number goes through [`SeqNumber`], so wraparound is
//! handled in exactly one place.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Sub};

/// A TCP sequence number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// Whether `self` lies in the window `[start, start + len)`, modulo 2^32.
    pub fn is_in_window(self, start: SeqNumber, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNumber({})", self.0)
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl Sub for SeqNumber {
    /// The signed distance from `rhs` to `self`; meaningful while it is below 2^31.
    type Output = i32;
    #[allow(
        clippy::cast_possible_wrap,
        reason = "the signed distance modulo 2^32 is the point (RFC 1982)"
    )]
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ordering_across_wraparound() {
        let before = SeqNumber(u32::MAX - 1);
        let after = before + 3;
        assert_eq!(after, SeqNumber(1));
        assert!(before < after);
        assert_eq!(after - before, 3);
        assert_eq!(before - after, -3);
        assert_eq!(after - 3, before);
    }

    #[test]
    fn test_window_across_wraparound() {
        let start = SeqNumber(u32::MAX - 9);
        assert!(start.is_in_window(start, 1));
        assert!((start + 19).is_in_window(start, 20));
        assert!(!(start + 20).is_in_window(start, 20));
        assert!(!(start - 1).is_in_window(start, 20));
        assert!(!start.is_in_window(start, 0));
    }
}
