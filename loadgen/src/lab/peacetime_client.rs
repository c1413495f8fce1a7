//! What the peacetime clients share: waiting for readiness events, finding the expected text in
//! a reply read in pieces ([`Needle`]), and latency histograms ([`Latencies`]). Why an attempt
//! or a connection failed is told by the legit clients' own `crate::legit::Failure`.

use std::io;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Poll};

use crate::lab::report::Percentiles;

/// The longest latency a histogram records, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Readiness events taken per wait.
pub(super) const EVENTS: usize = 1024;
/// Bytes read from a socket at once.
pub(super) const READ_CHUNK: usize = 4096;

/// Waits for events until `wake` at the latest.
pub(super) fn poll_events(poll: &mut Poll, events: &mut Events, wake: Instant) -> io::Result<()> {
    let wait = wake.saturating_duration_since(Instant::now());
    match poll.poll(events, Some(wait)) {
        Err(error) if error.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        result => result,
    }
}

/// Finds a fixed text in a stream read in pieces (Knuth–Morris–Pratt), with one `usize` of
/// state per stream: how many bytes of the text the stream's end matches.
pub(super) struct Needle {
    text: Vec<u8>,
    /// For a match of `i + 1` bytes that fails at the next byte: the longest shorter match
    /// still standing.
    fallback: Vec<usize>,
}

impl Needle {
    pub(super) fn new(text: &[u8]) -> Needle {
        let mut fallback = vec![0; text.len()];
        let mut matched = 0;
        for i in 1..text.len() {
            while matched > 0 && text[i] != text[matched] {
                matched = fallback[matched - 1];
            }
            if text[i] == text[matched] {
                matched += 1;
            }
            fallback[i] = matched;
        }
        Needle {
            text: text.to_vec(),
            fallback,
        }
    }

    /// Moves `matched` over `bytes`; once the whole text was seen, it stays found.
    pub(super) fn advance(&self, matched: &mut usize, bytes: &[u8]) {
        for &byte in bytes {
            if self.is_found(*matched) {
                return;
            }
            while *matched > 0 && byte != self.text[*matched] {
                *matched = self.fallback[*matched - 1];
            }
            if byte == self.text[*matched] {
                *matched += 1;
            }
        }
    }

    pub(super) fn is_found(&self, matched: usize) -> bool {
        matched == self.text.len()
    }
}

/// A latency histogram (1 µs to 60 s, three significant digits).
pub(super) struct Latencies(Histogram<u64>);

impl Latencies {
    pub(super) fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant, valid histogram bounds");
        Latencies(histogram)
    }

    pub(super) fn record(&mut self, latency: Duration) {
        self.0
            .saturating_record(micros(latency).clamp(1, MAX_LATENCY_US));
    }

    /// None when nothing was recorded.
    pub(super) fn percentiles(&self) -> Option<Percentiles> {
        let histogram = &self.0;
        (!histogram.is_empty()).then(|| Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        })
    }
}

pub(super) fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::service::REPLY_MARK;

    #[test]
    fn test_needle_across_pieces() {
        let needle = Needle::new(b"aab");
        let mut matched = 0;
        needle.advance(&mut matched, b"xaa");
        needle.advance(&mut matched, b"a");
        assert!(!needle.is_found(matched));
        needle.advance(&mut matched, b"bzzz");
        assert!(needle.is_found(matched));
        let mark = Needle::new(REPLY_MARK.as_bytes());
        let reply = b"HTTP/1.1 200 OK\r\n\r\nsynwall lab\n";
        for split in 0..reply.len() {
            let mut matched = 0;
            mark.advance(&mut matched, &reply[..split]);
            mark.advance(&mut matched, &reply[split..]);
            assert!(mark.is_found(matched), "split at {split}");
        }
        let mut matched = 0;
        mark.advance(&mut matched, b"synwall la synwall-lab");
        assert!(!mark.is_found(matched));
        assert!(Needle::new(b"").is_found(0));
    }
}
