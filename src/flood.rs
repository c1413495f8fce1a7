//! When a SYN flood starts and ends, for the log: [`FloodWatch`] turns the listener's running
//! counts into one start line and one end line per flood, never a line per packet.
//!
//! A flood is what overflows the SYN queue: SYNs that find it full, answered with a cookie
//! (`syncookies = when-full`) or dropped (`never`). The mode alone says nothing: with `always`
//! every SYN gets a cookie and the queue is never used, so no line tells a flood from a busy
//! hour there (the SYN-ACK and cookie-ACK rates in the metrics do).
//!
//! Sans-IO: the caller samples the counters and the clock.

use std::time::{Duration, Instant};

/// How long the SYN queue must go without overflowing for a flood to count as over.
pub const FLOOD_OVER_AFTER: Duration = Duration::from_secs(10);

/// The counts a [`FloodWatch`] follows, summed over the rx queues.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynQueueCounts {
    /// SYNs that found the SYN queue full (`Counter::SynQueueOverflow`).
    pub overflowed: u64,
    /// Of those, the ones dropped because cookies are off (`Counter::SynQueueFullDrops`).
    pub dropped: u64,
}

/// What a sample showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodEvent {
    /// The SYN queue started overflowing: SYNs per second that found it full since the last
    /// sample, and how many of them were dropped.
    Started {
        overflowed_per_second: u64,
        dropped_per_second: u64,
    },
    /// It has not overflowed for [`FLOOD_OVER_AFTER`]: the whole flood's figures.
    Over {
        overflowed: u64,
        dropped: u64,
        lasted: Duration,
    },
}

/// A flood in progress.
#[derive(Debug, Clone, Copy)]
struct Flood {
    since: Instant,
    /// The counts when it started.
    first: SynQueueCounts,
    /// The last sample that saw an overflow.
    last_overflow: Instant,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FloodWatch {
    last: SynQueueCounts,
    last_at: Instant,
    flood: Option<Flood>,
}

impl FloodWatch {
    /// Starts from the counts as they are at `now`.
    pub fn new(now: Instant, counts: SynQueueCounts) -> FloodWatch {
        FloodWatch {
            last: counts,
            last_at: now,
            flood: None,
        }
    }

    /// Whether a flood is in progress.
    pub fn in_flood(&self) -> bool {
        self.flood.is_some()
    }

    /// Takes a sample; tells when a flood starts or ends.
    pub fn sample(&mut self, now: Instant, counts: SynQueueCounts) -> Option<FloodEvent> {
        let previous = self.last;
        let elapsed = now.saturating_duration_since(self.last_at);
        (self.last, self.last_at) = (counts, now);
        let overflowed = counts.overflowed.saturating_sub(previous.overflowed);
        match &mut self.flood {
            None if overflowed > 0 => {
                self.flood = Some(Flood {
                    since: now,
                    first: previous,
                    last_overflow: now,
                });
                let per_second = |count: u64| {
                    let seconds = elapsed.as_secs_f64().max(1e-3);
                    (count as f64 / seconds).round() as u64
                };
                Some(FloodEvent::Started {
                    overflowed_per_second: per_second(overflowed),
                    dropped_per_second: per_second(counts.dropped.saturating_sub(previous.dropped)),
                })
            }
            Some(flood) if overflowed > 0 => {
                flood.last_overflow = now;
                None
            }
            Some(flood)
                if now.saturating_duration_since(flood.last_overflow) >= FLOOD_OVER_AFTER =>
            {
                let event = FloodEvent::Over {
                    overflowed: counts.overflowed.saturating_sub(flood.first.overflowed),
                    dropped: counts.dropped.saturating_sub(flood.first.dropped),
                    lasted: flood.last_overflow.saturating_duration_since(flood.since),
                };
                self.flood = None;
                Some(event)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn counts(overflowed: u64, dropped: u64) -> SynQueueCounts {
        SynQueueCounts {
            overflowed,
            dropped,
        }
    }

    #[test]
    fn test_a_flood_starts_once_and_ends_after_a_quiet_spell() {
        let start = Instant::now();
        let mut watch = FloodWatch::new(start, counts(5, 0));
        assert_eq!(watch.sample(start + SECOND, counts(5, 0)), None);
        assert_eq!(
            watch.sample(start + 2 * SECOND, counts(1005, 0)),
            Some(FloodEvent::Started {
                overflowed_per_second: 1000,
                dropped_per_second: 0
            })
        );
        assert!(watch.in_flood());
        for second in 3..=6 {
            let total = 1005 + 1000 * (second - 2);
            assert_eq!(
                watch.sample(start + second as u32 * SECOND, counts(total, 0)),
                None
            );
        }
        // The last overflow was at 6 s: over at 16 s, not before.
        assert_eq!(watch.sample(start + 15 * SECOND, counts(5005, 0)), None);
        assert_eq!(
            watch.sample(start + 16 * SECOND, counts(5005, 0)),
            Some(FloodEvent::Over {
                overflowed: 5000,
                dropped: 0,
                lasted: 4 * SECOND
            })
        );
        assert!(!watch.in_flood());
        assert_eq!(watch.sample(start + 17 * SECOND, counts(5005, 0)), None);
    }

    #[test]
    fn test_drops_with_cookies_off_are_a_flood() {
        let start = Instant::now();
        let mut watch = FloodWatch::new(start, counts(0, 0));
        assert_eq!(
            watch.sample(start + 2 * SECOND, counts(600, 600)),
            Some(FloodEvent::Started {
                overflowed_per_second: 300,
                dropped_per_second: 300
            })
        );
    }

    #[test]
    fn test_no_overflow_is_no_flood() {
        // What `syncookies = always` looks like however many cookies it sends: the SYN queue
        // never overflows.
        let start = Instant::now();
        let mut watch = FloodWatch::new(start, counts(0, 0));
        for second in 1..100 {
            assert_eq!(watch.sample(start + second * SECOND, counts(0, 0)), None);
        }
        assert!(!watch.in_flood());
    }
}
