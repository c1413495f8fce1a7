//! The bounds of every flood, shared with loadgen (one set of values): loadgen refuses a run
//! outside them, and `synwall-lab` checks its settings against the same values before it
//! builds anything. Also the count syntax both command lines take.

use std::time::Duration;

/// No run lasts longer.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// No run sends more packets.
pub const MAX_PACKETS: u64 = 1_000_000_000;
/// The most legit connections started per second.
pub const MAX_LEGIT_RATE: u32 = 10_000;
/// The longest a legit client waits (for `connect()`, and again for the reply).
pub const MAX_LEGIT_TIMEOUT: Duration = Duration::from_secs(60);

/// A count with an optional k (10^3) or M (10^6) suffix: "50000", "50k", "1M". `None` when
/// the text is not one, or the count does not fit 64 bits.
pub fn parse_count(text: &str) -> Option<u64> {
    let (digits, scale) = match text.strip_suffix('k') {
        Some(digits) => (digits, 1_000),
        None => match text.strip_suffix('M') {
            Some(digits) => (digits, 1_000_000),
            None => (text, 1),
        },
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::parse_count;

    #[test]
    fn test_parse_count() {
        assert_eq!(parse_count("700"), Some(700));
        assert_eq!(parse_count("50k"), Some(50_000));
        assert_eq!(parse_count("2M"), Some(2_000_000));
        assert_eq!(parse_count("0"), Some(0));
        for bad in ["", "k", "fast", "-5", "1G", "18446744073709552M"] {
            assert_eq!(parse_count(bad), None, "{bad}");
        }
    }
}
