//! Log lines about a failure that may repeat many times a second: its counter counts every
//! one, and a [`LogGate`] lets a line through at most once per [`LOG_EVERY`], so that the log
//! says it happens without flooding.

use std::time::{Duration, Instant};

/// The least time between two lines through one gate.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// When a line last went through; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogGate {
    last: Option<Instant>,
}

impl LogGate {
    /// Whether a line may be logged at `now`; if so, the next waits [`LOG_EVERY`].
    pub fn pass(&mut self, now: Instant) -> bool {
        let open = self
            .last
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if open {
            self.last = Some(now);
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_one_line_per_interval() {
        let start = Instant::now();
        let mut gate = LogGate::default();
        assert!(gate.pass(start));
        assert!(!gate.pass(start + LOG_EVERY - Duration::from_millis(1)));
        assert!(gate.pass(start + LOG_EVERY));
        assert!(!gate.pass(start + LOG_EVERY));
    }
}
