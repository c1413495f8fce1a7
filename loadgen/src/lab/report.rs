//! The records the flood generator (`loadgen --json`) writes and `synwall-lab` reads: one
//! schema, in one place, for both sides (serde, both directions).
//!
//! Plain data: no I/O, no clock. loadgen builds and prints them (its `report` module writes
//! text or JSON lines); the lab parses each line with `serde_json::from_str::<Record>`.
//!
//! # JSON lines
//!
//! One object per line on stdout; notes and errors go to stderr. Each second a progress
//! object, and one more for the last partial second if it sent packets; then exactly one
//! summary object, last. Counts are integers; `*_s` fields are seconds as floats; latencies
//! are microseconds.
//!
//! ```text
//! {"type":"progress",
//!  "elapsed_s": f64,          seconds since the flood started
//!  "interval_s": f64,         length of this interval (about 1)
//!  "sent": {"syn":u64,"ack":u64,"near_miss":u64,"rst":u64,"fin":u64},   in this interval
//!  "pps": u64,                packets per second in this interval
//!  "sent_total": u64,         since the start
//!  "replies": null | {"syn_ack":u64,"rst":u64,"harvest_dropped":u64},  in this interval;
//!                             only when near-miss is in the mix (the sniffer runs)
//!  "legit": null | LEGIT}     attempts that ended in this interval; null without --legit-rate
//!
//! {"type":"summary",
//!  "tx": "afxdp" | "packet" | "mixed",
//!  "stop_reason": "packets" | "duration" | "interrupted",
//!  "elapsed_s": f64, "target": "198.18.0.1:80", "src_cidr": "198.18.128.0/17",
//!  "mix": "syn=80,ack=15,rst=5", "rate_pps": u64 | null (max), "threads": usize,
//!  "sent": {...as above...}, "sent_total": u64, "pps": u64 (average),
//!  "replies": null | {...as above, whole run...},
//!  "legit": null | LEGIT}     whole run
//!
//! LEGIT = {"attempts": u64, "ok": u64, "failed": u64,
//!          "failures": {"timeout","refused","reset","unreachable","reply_timeout",
//!                       "bad_reply","overloaded","other": u64},
//!          "connect_us": null | {"p50":u64,"p90":u64,"p99":u64,"max":u64}}
//! ```
//! `connect_us` covers every connect() that completed (null when none did). `sent` counts
//! frames handed to the transmit device; a device or veth that is overrun may still drop some
//! (AF_PACKET frames refused with ENOBUFS are kept and sent again; AF_XDP copy mode cannot
//! tell), so compare with the receiver's count when measuring.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Packets per kind of flood packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub syn: u64,
    pub ack: u64,
    pub near_miss: u64,
    pub rst: u64,
    pub fin: u64,
}

impl KindCounts {
    pub fn total(&self) -> u64 {
        self.values().iter().sum()
    }

    /// The counts in field order: syn, ack, near-miss, rst, fin.
    pub fn values(&self) -> [u64; 5] {
        [self.syn, self.ack, self.near_miss, self.rst, self.fin]
    }
}

impl From<[u64; 5]> for KindCounts {
    /// From counts in field order (see [`KindCounts::values`]).
    fn from([syn, ack, near_miss, rst, fin]: [u64; 5]) -> Self {
        KindCounts {
            syn,
            ack,
            near_miss,
            rst,
            fin,
        }
    }
}

/// Replies from the target to spoofed sources, seen by the sniffer (near-miss runs only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replies {
    pub syn_ack: u64,
    pub rst: u64,
    /// SYN-ACKs not kept because the harvest queue was full.
    pub harvest_dropped: u64,
}

/// Legit-client failures by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCounts {
    /// connect() did not complete in time.
    pub timeout: u64,
    /// The target answered the SYN with a RST.
    pub refused: u64,
    /// The connection was reset after it was established.
    pub reset: u64,
    /// No route, or ICMP unreachable.
    pub unreachable: u64,
    /// Connected, but no (complete) reply in time.
    pub reply_timeout: u64,
    /// The reply ended without the expected text.
    pub bad_reply: u64,
    /// Not started: every client thread was busy.
    pub overloaded: u64,
    /// Anything else.
    pub other: u64,
}

impl FailureCounts {
    pub fn total(&self) -> u64 {
        self.timeout
            + self.refused
            + self.reset
            + self.unreachable
            + self.reply_timeout
            + self.bad_reply
            + self.overloaded
            + self.other
    }
}

/// "timeout 1, refused 0, …": every kind, in field order.
impl fmt::Display for FailureCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeout {}, refused {}, reset {}, unreachable {}, reply timeout {}, bad reply {}, \
             overloaded {}, other {}",
            self.timeout,
            self.refused,
            self.reset,
            self.unreachable,
            self.reply_timeout,
            self.bad_reply,
            self.overloaded,
            self.other
        )
    }
}

/// Connect latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Legit client outcomes over an interval or a whole run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegitReport {
    /// Attempts that ended (ok + failed).
    pub attempts: u64,
    pub ok: u64,
    pub failed: u64,
    pub failures: FailureCounts,
    /// Of every connect() that completed; null when none did.
    pub connect_us: Option<Percentiles>,
}

/// The transmit path a generator run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// AF_XDP (copy or zero-copy mode).
    Afxdp,
    /// AF_PACKET, sendmmsg, qdisc bypass.
    Packet,
    /// Some threads on each (`--tx auto` fell back on some queues only).
    Mixed,
}

impl Backend {
    /// The backend of a run whose workers got `backends`.
    pub fn of_run(backends: impl IntoIterator<Item = Backend>) -> Backend {
        let mut backends = backends.into_iter();
        let first = backends.next().unwrap_or(Backend::Packet);
        if backends.all(|backend| backend == first) {
            first
        } else {
            Backend::Mixed
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Afxdp => "afxdp",
            Backend::Packet => "packet",
            Backend::Mixed => "mixed",
        })
    }
}

/// Why a generator run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It sent its share of `--packets`.
    Packets,
    /// `--duration` passed.
    Duration,
    /// The stop flag was raised (a signal, or another worker failed).
    Interrupted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::Packets => "packet count",
            StopReason::Duration => "duration",
            StopReason::Interrupted => "interruption",
        })
    }
}

/// One second of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds since the flood started.
    pub elapsed_s: f64,
    /// Length of this interval in seconds (about 1).
    pub interval_s: f64,
    /// Packets sent in this interval, per kind.
    pub sent: KindCounts,
    /// Packets per second in this interval.
    pub pps: u64,
    /// Packets sent since the start.
    pub sent_total: u64,
    /// Replies seen in this interval; null unless near-miss ACKs are in the mix.
    pub replies: Option<Replies>,
    /// Legit connections that ended in this interval; null without --legit-rate.
    pub legit: Option<LegitReport>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The transmit path ("afxdp", "packet", or "mixed" when `--tx auto` fell back on some
    /// threads only).
    pub tx: Backend,
    /// "packets", "duration" or "interrupted".
    pub stop_reason: StopReason,
    /// Seconds from the start to the last packet.
    pub elapsed_s: f64,
    pub target: String,
    pub src_cidr: String,
    pub mix: String,
    /// The configured rate; null for "max".
    pub rate_pps: Option<u64>,
    pub threads: usize,
    pub sent: KindCounts,
    pub sent_total: u64,
    /// Average packets per second.
    pub pps: u64,
    pub replies: Option<Replies>,
    pub legit: Option<LegitReport>,
}

/// A line of `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Progress(Progress),
    Summary(Summary),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_backend_of_a_run() {
        assert_eq!(Backend::of_run([Backend::Afxdp; 3]), Backend::Afxdp);
        assert_eq!(Backend::of_run([Backend::Packet]), Backend::Packet);
        assert_eq!(
            Backend::of_run([Backend::Afxdp, Backend::Packet]),
            Backend::Mixed
        );
    }

    #[test]
    fn test_summary_parses_from_its_documented_shape() {
        let line = r#"{"type":"summary","tx":"afxdp","stop_reason":"duration","elapsed_s":2.0,
            "target":"198.18.0.1:80","src_cidr":"198.18.128.0/17","mix":"syn=1",
            "rate_pps":null,"threads":1,
            "sent":{"syn":10,"ack":0,"near_miss":0,"rst":0,"fin":0},"sent_total":10,"pps":5,
            "replies":null,
            "legit":{"attempts":2,"ok":1,"failed":1,
                     "failures":{"timeout":1,"refused":0,"reset":0,"unreachable":0,
                                 "reply_timeout":0,"bad_reply":0,"overloaded":0,"other":0},
                     "connect_us":{"p50":100,"p90":100,"p99":100,"max":100}}}"#;
        let Record::Summary(summary) = serde_json::from_str(line).unwrap() else {
            panic!("not a summary");
        };
        assert_eq!(summary.stop_reason, StopReason::Duration);
        assert_eq!(summary.sent.total(), 10);
        let legit = summary.legit.unwrap();
        assert_eq!(legit.failures.total(), legit.failed);
    }
}
