//! Pacing in batches: at most `rate` packets per second, released a batch at a time once a
//! whole batch is due.
//!
//! The schedule is absolute (packet *n* is due `n / rate` seconds after the start), so sleeping
//! late never makes the long-run rate drift. A sender that falls behind by more than
//! [`Pacer::max_backlog`] packets (a stall of about 10 ms) does not get to burst the backlog:
//! the excess is forgiven and the rate dips instead. Time comes from the caller, so the pacer
//! works under virtual time; it never sleeps itself.

use std::time::{Duration, Instant};

/// A packet rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// As fast as the device takes them.
    Max,
    /// Packets per second; positive.
    PerSecond(u64),
}

/// Worker `index`'s share of `total` split among `workers`: the remainder goes to the first
/// workers, so the shares add up to the whole.
pub fn share(total: u64, index: usize, workers: usize) -> u64 {
    let workers = workers as u64;
    total / workers + u64::from((index as u64) < total % workers)
}

impl Rate {
    /// The share of this rate for worker `index` of `workers`: the remainder goes to the first
    /// workers, so the shares add up to the whole.
    pub fn share(self, index: usize, workers: usize) -> Rate {
        match self {
            Rate::Max => Rate::Max,
            Rate::PerSecond(total) => Rate::PerSecond(share(total, index, workers)),
        }
    }

    /// A batch size that releases about a thousand batches per second: `rate / 1000`, at least
    /// 1 and at most `max_batch`.
    pub fn batch(self, max_batch: usize) -> usize {
        match self {
            Rate::Max => max_batch,
            Rate::PerSecond(rate) => (rate / 1000).clamp(1, max_batch as u64) as usize,
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: Rate,
    origin: Instant,
    sent: u64,
    /// Packets the schedule allowed that will never be sent (stalls beyond the backlog).
    forgiven: u64,
}

impl Pacer {
    /// A pacer whose schedule starts at `origin`.
    pub fn new(rate: Rate, origin: Instant) -> Pacer {
        Pacer {
            rate,
            origin,
            sent: 0,
            forgiven: 0,
        }
    }

    /// The most packets a sender may be behind schedule: 10 ms worth, at least one.
    pub fn max_backlog(&self) -> u64 {
        match self.rate {
            Rate::Max => u64::MAX,
            Rate::PerSecond(rate) => (rate / 100).max(1),
        }
    }

    /// How many packets may go at `now`: `want` once `want` are due, otherwise 0.
    pub fn grant(&mut self, now: Instant, want: u64) -> u64 {
        let Rate::PerSecond(rate) = self.rate else {
            return want;
        };
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let scheduled = (elapsed * u128::from(rate) / 1_000_000_000) as u64 - self.forgiven;
        let behind = scheduled.saturating_sub(self.sent);
        let max_backlog = self.max_backlog();
        if behind > max_backlog {
            self.forgiven += behind - max_backlog;
        }
        if behind.min(max_backlog) >= want {
            want
        } else {
            0
        }
    }

    /// Records packets actually sent (no more than granted).
    pub fn record(&mut self, sent: u64) {
        self.sent += sent;
    }

    /// When `want` more packets will be due; None at [`Rate::Max`].
    pub fn due_at(&self, want: u64) -> Option<Instant> {
        let Rate::PerSecond(rate) = self.rate else {
            return None;
        };
        let packets = u128::from(self.sent + self.forgiven + want);
        let nanos = (packets * 1_000_000_000).div_ceil(u128::from(rate));
        Some(self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn test_batches_are_released_on_schedule() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Rate::PerSecond(50_000), start);
        assert_eq!(pacer.grant(start, 50), 0);
        assert_eq!(pacer.due_at(50), Some(start + MS));
        assert_eq!(pacer.grant(start + MS - Duration::from_nanos(1), 50), 0);
        assert_eq!(pacer.grant(start + MS, 50), 50);
        pacer.record(50);
        assert_eq!(pacer.grant(start + MS, 50), 0);
        assert_eq!(pacer.due_at(50), Some(start + 2 * MS));
    }

    #[test]
    fn test_long_run_rate_is_exact_under_late_wakeups() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Rate::PerSecond(50_000), start);
        let mut now = start;
        let mut sent = 0;
        while now < start + Duration::from_secs(3) {
            let granted = pacer.grant(now, 50);
            pacer.record(granted);
            sent += granted;
            // Wake 70 µs late every time, as a sleeping thread does.
            now = pacer.due_at(50).unwrap() + Duration::from_micros(70);
        }
        assert!((149_900..=150_000).contains(&sent), "{sent}");
    }

    #[test]
    fn test_a_stall_is_forgiven_beyond_the_backlog() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Rate::PerSecond(100_000), start);
        let after_stall = start + Duration::from_secs(1);
        // 100k packets are due, but only 10 ms worth (1000) may be caught up.
        assert_eq!(pacer.grant(after_stall, 1001), 0);
        assert_eq!(pacer.grant(after_stall, 1000), 1000);
        pacer.record(1000);
        assert_eq!(pacer.grant(after_stall, 1), 0);
        assert_eq!(
            pacer.due_at(100),
            Some(after_stall + Duration::from_millis(1))
        );
    }

    #[test]
    fn test_max_rate_always_grants() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Rate::Max, start);
        assert_eq!(pacer.grant(start, 64), 64);
        assert_eq!(pacer.due_at(64), None);
    }

    #[test]
    fn test_shares_add_up() {
        let rate = Rate::PerSecond(1003);
        let shares: Vec<Rate> = (0..4).map(|i| rate.share(i, 4)).collect();
        assert_eq!(shares, [251, 251, 251, 250].map(Rate::PerSecond).to_vec());
        assert_eq!(Rate::Max.share(3, 4), Rate::Max);
    }

    #[test]
    fn test_batch_sizes() {
        assert_eq!(Rate::PerSecond(100).batch(64), 1);
        assert_eq!(Rate::PerSecond(50_000).batch(64), 50);
        assert_eq!(Rate::PerSecond(10_000_000).batch(64), 64);
        assert_eq!(Rate::Max.batch(64), 64);
    }
}
