//! Counters for every outcome, readable without locks from any thread.
//!
//! Each listener shard owns one [`Counters`] and is its only writer, so an increment is a plain
//! relaxed load and store (no locked instruction on the hot path); readers on other threads
//! load relaxed values and sum shards with [`CounterSnapshot::merge`]. Names follow the
//! kernel's MIB counters where one exists (`SyncookiesSent`, `ListenOverflows`, ...) and
//! Prometheus conventions for export: counters end in `_total`, kinds of one thing are one
//! family with a label (`synwall_synacks_sent_total{kind="cookie"}`), and every series is
//! listed in `deploy/METRICS.md`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::wire::Malformed;

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident => $metric:literal, $mib:expr;)+) => {
        /// Everything a listener counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Counter {
            /// Every counter, in declaration order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)+];

            /// The Prometheus series: metric name, with labels where one family has several
            /// series. The exposition adds the rx queue's label ([`crate::metrics`]).
            pub fn series(self) -> &'static str {
                match self {
                    $(Counter::$name => $metric,)+
                }
            }

            /// The matching kernel SNMP/netstat counter, if any.
            pub fn kernel_mib(self) -> Option<&'static str> {
                match self {
                    $(Counter::$name => $mib,)+
                }
            }

            /// One line of help text.
            pub fn help(self) -> &'static str {
                match self {
                    $(Counter::$name => concat!($($doc),+).trim_ascii(),)+
                }
            }
        }
    };
}

counters! {
    /// SYNs received for a served port.
    SynReceived => "synwall_syn_received_total", None;
    /// SYN-ACKs sent for connections admitted to the SYN queue (first transmissions).
    SynAcksSent => "synwall_synacks_sent_total{kind=\"queued\"}", None;
    /// SYN-ACKs retransmitted by the SYN-queue timers.
    SynAckRetransmits => "synwall_synacks_sent_total{kind=\"retransmit\"}", Some("TCPSynRetrans");
    /// Retransmitted SYNs of queued connections, answered with the same SYN-ACK again.
    DuplicateSyns => "synwall_synacks_sent_total{kind=\"duplicate_syn\"}", None;
    /// SYN-ACKs sent with a cookie and no state.
    CookiesSent => "synwall_synacks_sent_total{kind=\"cookie\"}", Some("SyncookiesSent");
    /// ACKs carrying a valid cookie.
    CookieAcksValid => "synwall_cookie_acks_total{result=\"valid\"}", Some("SyncookiesRecv");
    /// ACKs whose cookie did not validate.
    CookieAcksInvalid => "synwall_cookie_acks_total{result=\"invalid\"}", Some("SyncookiesFailed");
    /// ACKs not checked as cookies because no cookie was sent recently.
    CookieAcksGated => "synwall_cookie_acks_total{result=\"gated\"}", None;
    /// SYNs that found the SYN queue full (answered with a cookie or dropped, by policy).
    SynQueueOverflow => "synwall_syn_queue_overflow_total", Some("TCPReqQFullDoCookies");
    /// SYNs dropped because the SYN queue was full and cookies are off.
    SynQueueFullDrops => "synwall_syn_queue_full_drops_total", Some("ListenDrops");
    /// SYN-queue entries dropped after their last SYN-ACK retransmission.
    SynQueueExpired => "synwall_syn_queue_expired_total", None;
    /// SYN-queue entries removed by a RST from the peer.
    ResetsReceived => "synwall_syn_queue_resets_total", None;
    /// Handshakes completed from the SYN queue.
    AcceptedFromQueue => "synwall_accepted_total{path=\"queue\"}", None;
    /// Handshakes completed by a cookie.
    AcceptedFromCookie => "synwall_accepted_total{path=\"cookie\"}", None;
    /// Completed handshakes that found the accept queue full.
    AcceptQueueOverflow => "synwall_accept_queue_overflow_total", Some("ListenOverflows");
    /// Segments of connections being handed off, held for their kernel sockets.
    HeldSegments => "synwall_held_segments_total", None;
    /// Segments handed to the local kernel stack once their connection's kernel socket existed.
    Reinjected => "synwall_reinjected_segments_total", None;
    /// Segments that could not be handed to the local kernel stack (the peer retransmits them).
    ReinjectFailures => "synwall_reinject_failures_total", None;
    /// ACKs sent for early data on behalf of a new kernel socket.
    EarlyDataAcks => "synwall_early_data_acks_total", None;
    /// Handoff markers that expired without the handoff being reported done.
    HandoffsExpired => "synwall_handoffs_expired_total", None;
    /// Segments of connections being handed off beyond `max_held_bytes` (dropped; the peer
    /// retransmits them).
    HeldOverflow => "synwall_rejected_total{reason=\"held_overflow\"}", None;
    /// ACKs matching a queued connection with the wrong acknowledgment number.
    AckMismatch => "synwall_rejected_total{reason=\"ack_mismatch\"}", None;
    /// ACKs with no queued connection while cookies are off.
    UnknownAcks => "synwall_rejected_total{reason=\"unknown_ack\"}", None;
    /// Segments of a queued connection outside its receive window.
    OutOfWindow => "synwall_rejected_total{reason=\"out_of_window\"}", None;
    /// RSTs matching nothing.
    StrayResets => "synwall_rejected_total{reason=\"stray_rst\"}", None;
    /// Impossible flag combinations (SYN+FIN, SYN+RST, SYN+ACK, none of SYN/ACK/RST).
    BadFlags => "synwall_rejected_total{reason=\"bad_flags\"}", None;
    /// Segments from a source address that cannot send TCP (multicast, broadcast, loopback, ours).
    MartianSources => "synwall_rejected_total{reason=\"martian_source\"}", None;
    /// Replies not sent because no transmit buffer was free.
    NoTxBuffer => "synwall_rejected_total{reason=\"no_tx_buffer\"}", None;
    /// RSTs sent (to invalid ACKs, on accept-queue overflow when configured, and to peers whose
    /// handoff failed).
    RstsSent => "synwall_rsts_sent_total", Some("OutRsts");
    /// RSTs not sent because of the RST rate limit.
    RstsRateLimited => "synwall_rsts_rate_limited_total", None;
    /// Frames that reached the listener but were not for a served port.
    FramesPassed => "synwall_frames_passed_total", None;
    /// Frames shorter than their Ethernet header or VLAN tag.
    MalformedEthernet => "synwall_malformed_total{layer=\"ethernet\"}", None;
    /// Unparsable IPv4 headers.
    MalformedIpv4Header => "synwall_malformed_total{layer=\"ipv4_header\"}", Some("InHdrErrors");
    /// IPv4 header checksum failures.
    MalformedIpv4Checksum => "synwall_malformed_total{layer=\"ipv4_checksum\"}", Some("InCsumErrors");
    /// Unparsable IPv6 headers or extension header chains.
    MalformedIpv6Header => "synwall_malformed_total{layer=\"ipv6_header\"}", None;
    /// Fragments carrying a segment to a served port.
    MalformedFragment => "synwall_malformed_total{layer=\"fragment\"}", None;
    /// Unparsable TCP headers and zero source ports.
    MalformedTcpHeader => "synwall_malformed_total{layer=\"tcp_header\"}", Some("InErrs");
    /// TCP options with malformed lengths.
    MalformedTcpOptions => "synwall_malformed_total{layer=\"tcp_options\"}", None;
    /// TCP checksum failures.
    MalformedTcpChecksum => "synwall_malformed_total{layer=\"tcp_checksum\"}", Some("InCsumErrors");
}

impl Counter {
    /// The Prometheus metric family (the series name without labels).
    pub fn family(self) -> &'static str {
        let series = self.series();
        series.split_once('{').map_or(series, |(family, _)| family)
    }

    /// The series' own labels (`kind="queued"`), without braces; empty for a family of one.
    pub fn labels(self) -> &'static str {
        self.series()
            .split_once('{')
            .map_or("", |(_, labels)| labels.trim_end_matches('}'))
    }

    /// Help text for the whole family: a labelled family's series share it.
    pub fn family_help(self) -> &'static str {
        match self.family() {
            "synwall_synacks_sent_total" => {
                "SYN-ACKs sent, by kind: first of a queued handshake, cookie (no state), \
                 retransmission by the SYN-queue timer, answer to a retransmitted SYN."
            }
            "synwall_cookie_acks_total" => {
                "ACKs matching no queued handshake, by what the cookie check said: valid, \
                 invalid, or gated (not checked: no cookie was sent recently)."
            }
            "synwall_accepted_total" => "Handshakes completed, by path (SYN queue or cookie).",
            "synwall_rejected_total" => {
                "Segments not accepted, by reason: dropped, or answered with a RST when allowed."
            }
            "synwall_malformed_total" => "Frames that could not be parsed, by layer.",
            _ => self.help(),
        }
    }
}

impl From<Malformed> for Counter {
    fn from(kind: Malformed) -> Counter {
        match kind {
            Malformed::Ethernet => Counter::MalformedEthernet,
            Malformed::Ipv4Header => Counter::MalformedIpv4Header,
            Malformed::Ipv4Checksum => Counter::MalformedIpv4Checksum,
            Malformed::Ipv6Header => Counter::MalformedIpv6Header,
            Malformed::Fragment => Counter::MalformedFragment,
            Malformed::TcpHeader => Counter::MalformedTcpHeader,
            Malformed::TcpOptions => Counter::MalformedTcpOptions,
            Malformed::TcpChecksum => Counter::MalformedTcpChecksum,
        }
    }
}

const COUNT: usize = Counter::ALL.len();

/// Gauges a listener keeps current.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Gauge {
    /// Connections in the SYN queue.
    SynQueueDepth,
    /// Accepted connections whose handoff to the kernel is not yet reported done.
    HandoffsPending,
    /// Bytes of segments held for kernel sockets not yet made.
    HeldBytes,
}

impl Gauge {
    pub const ALL: &'static [Gauge] = &[
        Gauge::SynQueueDepth,
        Gauge::HandoffsPending,
        Gauge::HeldBytes,
    ];

    pub fn series(self) -> &'static str {
        match self {
            Gauge::SynQueueDepth => "synwall_syn_queue_depth",
            Gauge::HandoffsPending => "synwall_handoffs_pending",
            Gauge::HeldBytes => "synwall_held_bytes",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Gauge::SynQueueDepth => "Connections in the SYN queue.",
            Gauge::HandoffsPending => "Accepted connections not yet handed to the kernel.",
            Gauge::HeldBytes => "Bytes of segments held for kernel sockets not yet made.",
        }
    }
}

/// The counters and gauges of one listener shard. See the module documentation.
#[derive(Debug)]
pub struct Counters {
    counters: [AtomicU64; COUNT],
    gauges: [AtomicU64; Gauge::ALL.len()],
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            counters: std::array::from_fn(|_| AtomicU64::new(0)),
            gauges: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Counters {
    /// Adds one. Only the owning shard's thread may call this (single writer).
    pub(crate) fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n`. Only the owning shard's thread may call this (single writer).
    pub(crate) fn add(&self, counter: Counter, n: usize) {
        let cell = &self.counters[counter as usize];
        cell.store(cell.load(Relaxed) + n as u64, Relaxed);
    }

    /// Sets a gauge. Only the owning shard's thread may call this (single writer).
    pub(crate) fn set(&self, gauge: Gauge, value: usize) {
        self.gauges[gauge as usize].store(value as u64, Relaxed);
    }

    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Relaxed)
    }

    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge as usize].load(Relaxed)
    }

    /// A copy of every value, for export or comparison.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            counters: std::array::from_fn(|i| self.counters[i].load(Relaxed)),
            gauges: std::array::from_fn(|i| self.gauges[i].load(Relaxed)),
        }
    }
}

/// Values of [`Counters`] at one moment, possibly summed over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterSnapshot {
    counters: [u64; COUNT],
    gauges: [u64; Gauge::ALL.len()],
}

impl Default for CounterSnapshot {
    fn default() -> CounterSnapshot {
        CounterSnapshot {
            counters: [0; COUNT],
            gauges: [0; Gauge::ALL.len()],
        }
    }
}

impl CounterSnapshot {
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize]
    }

    pub fn gauge(&self, gauge: Gauge) -> u64 {
        self.gauges[gauge as usize]
    }

    /// Adds another shard's values.
    pub fn merge(&mut self, other: &CounterSnapshot) {
        for (sum, value) in self.counters.iter_mut().zip(other.counters) {
            *sum += value;
        }
        for (sum, value) in self.gauges.iter_mut().zip(other.gauges) {
            *sum += value;
        }
    }

    /// Every non-zero counter with its value, for test diagnostics and logs.
    pub fn non_zero(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|&counter| (counter, self.get(counter)))
            .filter(|&(_, value)| value != 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn test_series_are_unique_and_prometheus_shaped() {
        let mut seen = HashSet::new();
        for counter in Counter::ALL {
            assert!(seen.insert(counter.series()), "{counter:?}");
            assert!(counter.family().starts_with("synwall_"));
            assert!(counter.family().ends_with("_total"), "{counter:?}");
            assert!(!counter.help().is_empty());
            let rebuilt = match counter.labels() {
                "" => counter.family().to_owned(),
                labels => format!("{}{{{labels}}}", counter.family()),
            };
            assert_eq!(rebuilt, counter.series());
        }
        for gauge in Gauge::ALL {
            assert!(seen.insert(gauge.series()));
        }
    }

    #[test]
    fn test_snapshots_merge() {
        let a = Counters::default();
        let b = Counters::default();
        a.incr(Counter::SynReceived);
        b.incr(Counter::SynReceived);
        b.set(Gauge::SynQueueDepth, 3);
        let mut sum = a.snapshot();
        sum.merge(&b.snapshot());
        assert_eq!(sum.get(Counter::SynReceived), 2);
        assert_eq!(sum.gauge(Gauge::SynQueueDepth), 3);
        assert_eq!(sum.non_zero(), vec![(Counter::SynReceived, 2)]);
    }
}
