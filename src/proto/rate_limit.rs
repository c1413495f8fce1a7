//! A token bucket: at most `rate` events per second, in bursts of at most one second's worth.
//! Time comes from the caller, so it works under virtual time.

use std::time::Instant;

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket for `rate` events per second; a rate of 0 allows nothing.
    pub fn new(rate: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            last: now,
        }
    }

    /// Takes one token if available. Refills only when time has moved on: a flood's frames
    /// arrive in batches that share one `now`, and each refill costs an `Instant` subtraction.
    pub fn take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let elapsed = (now - self.last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_burst_then_refill() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, start);
        assert_eq!((0..20).filter(|_| bucket.take(start)).count(), 10);
        let later = start + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| bucket.take(later)).count(), 5);
        let much_later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| bucket.take(much_later)).count(), 10);
    }

    #[test]
    fn test_zero_rate_allows_nothing() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(0, now);
        assert!(!bucket.take(now + Duration::from_secs(5)));
    }
}
