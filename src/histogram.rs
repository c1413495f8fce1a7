//! A histogram of durations with fixed buckets, for any number of writer threads (relaxed
//! atomic adds), read as Prometheus buckets.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds: 100 µs to 60 s.
pub const BOUNDS: [f64; 17] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 60.0,
];

#[derive(Debug, Default)]
pub struct DurationHistogram {
    /// Observations per bucket, plus one above the last bound.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A histogram's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations at most each bound, cumulative, as Prometheus wants them.
    pub cumulative: [u64; BOUNDS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl DurationHistogram {
    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(BOUNDS.len());
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(
            duration.as_nanos().min(u128::from(u64::MAX)) as u64,
            Relaxed,
        );
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut snapshot = HistogramSnapshot::default();
        let mut running = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            running += bucket.load(Relaxed);
            if let Some(cumulative) = snapshot.cumulative.get_mut(i) {
                *cumulative = running;
            }
        }
        snapshot.count = running;
        snapshot.sum_seconds = Duration::from_nanos(self.sum_nanos.load(Relaxed)).as_secs_f64();
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_observations_land_in_cumulative_buckets() {
        let histogram = DurationHistogram::default();
        histogram.observe(Duration::from_micros(80));
        histogram.observe(Duration::from_micros(100));
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_secs(100));
        let snapshot = histogram.snapshot();
        assert_eq!(
            snapshot.cumulative[0], 2,
            "at most 100 µs, the bound included"
        );
        assert_eq!(snapshot.cumulative[5], 3, "at most 5 ms");
        assert_eq!(snapshot.cumulative[BOUNDS.len() - 1], 3, "at most 60 s");
        assert_eq!(snapshot.count, 4, "+Inf");
        assert!((snapshot.sum_seconds - 100.00318).abs() < 1e-9);
    }
}
