//! The names synwall's figures are presented under: each listener [`Counter`]'s Prometheus
//! series and the kernel SNMP/netstat counter it matches, and each [`Gauge`]'s series. The
//! protocol core only says what it counts; the exposition ([`super::render`]) and the lab's
//! comparison with the kernel (which reads `/proc/net/netstat` under these MIB names) both
//! take the names from here.

use crate::counters::{Counter, Gauge};

/// How a listener counter is named outside the process.
pub trait CounterNames {
    /// The Prometheus series: metric name, with labels where one family has several series.
    /// The exposition adds the rx queue's label.
    fn series(self) -> &'static str;
    /// The matching kernel SNMP/netstat counter, if any.
    fn kernel_mib(self) -> Option<&'static str>;
    /// The Prometheus metric family (the series name without labels).
    fn family(self) -> &'static str;
    /// The series' own labels (`kind="queued"`), without braces; empty for a family of one.
    fn labels(self) -> &'static str;
    /// Help text for the whole family: a labelled family's series share it.
    fn family_help(self) -> &'static str;
}

impl CounterNames for Counter {
    fn series(self) -> &'static str {
        names(self).0
    }

    fn kernel_mib(self) -> Option<&'static str> {
        names(self).1
    }

    fn family(self) -> &'static str {
        let series = self.series();
        series.split_once('{').map_or(series, |(family, _)| family)
    }

    fn labels(self) -> &'static str {
        self.series()
            .split_once('{')
            .map_or("", |(_, labels)| labels.trim_end_matches('}'))
    }

    fn family_help(self) -> &'static str {
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

/// A counter's Prometheus series and kernel MIB name.
fn names(counter: Counter) -> (&'static str, Option<&'static str>) {
    match counter {
        Counter::SynReceived => ("synwall_syn_received_total", None),
        Counter::SynAcksSent => ("synwall_synacks_sent_total{kind=\"queued\"}", None),
        Counter::SynAckRetransmits => (
            "synwall_synacks_sent_total{kind=\"retransmit\"}",
            Some("TCPSynRetrans"),
        ),
        Counter::DuplicateSyns => ("synwall_synacks_sent_total{kind=\"duplicate_syn\"}", None),
        Counter::CookiesSent => (
            "synwall_synacks_sent_total{kind=\"cookie\"}",
            Some("SyncookiesSent"),
        ),
        Counter::CookieAcksValid => (
            "synwall_cookie_acks_total{result=\"valid\"}",
            Some("SyncookiesRecv"),
        ),
        Counter::CookieAcksInvalid => (
            "synwall_cookie_acks_total{result=\"invalid\"}",
            Some("SyncookiesFailed"),
        ),
        Counter::CookieAcksGated => ("synwall_cookie_acks_total{result=\"gated\"}", None),
        Counter::SynQueueOverflow => (
            "synwall_syn_queue_overflow_total",
            Some("TCPReqQFullDoCookies"),
        ),
        Counter::SynQueueFullDrops => ("synwall_syn_queue_full_drops_total", Some("ListenDrops")),
        Counter::SynQueueExpired => ("synwall_syn_queue_expired_total", None),
        Counter::ResetsReceived => ("synwall_syn_queue_resets_total", None),
        Counter::AcceptedFromQueue => ("synwall_accepted_total{path=\"queue\"}", None),
        Counter::AcceptedFromCookie => ("synwall_accepted_total{path=\"cookie\"}", None),
        Counter::CompletedInKernel => ("synwall_completed_in_kernel_total", None),
        Counter::AcceptQueueOverflow => (
            "synwall_accept_queue_overflow_total",
            Some("ListenOverflows"),
        ),
        Counter::HeldSegments => ("synwall_held_segments_total", None),
        Counter::Reinjected => ("synwall_reinjected_segments_total", None),
        Counter::LateHandshakeAcks => ("synwall_late_handshake_acks_total", None),
        Counter::ReinjectFailures => ("synwall_reinject_failures_total", None),
        Counter::EarlyDataAcks => ("synwall_early_data_acks_total", None),
        Counter::HandoffsExpired => ("synwall_handoffs_expired_total", None),
        Counter::HeldOverflow => ("synwall_rejected_total{reason=\"held_overflow\"}", None),
        Counter::AckMismatch => ("synwall_rejected_total{reason=\"ack_mismatch\"}", None),
        Counter::UnknownAcks => ("synwall_rejected_total{reason=\"unknown_ack\"}", None),
        Counter::OutOfWindow => ("synwall_rejected_total{reason=\"out_of_window\"}", None),
        Counter::StrayResets => ("synwall_rejected_total{reason=\"stray_rst\"}", None),
        Counter::BadFlags => ("synwall_rejected_total{reason=\"bad_flags\"}", None),
        Counter::MartianSources => ("synwall_rejected_total{reason=\"martian_source\"}", None),
        Counter::NoTxBuffer => ("synwall_rejected_total{reason=\"no_tx_buffer\"}", None),
        Counter::RstsSent => ("synwall_rsts_sent_total", Some("OutRsts")),
        Counter::RstsRateLimited => ("synwall_rsts_rate_limited_total", None),
        Counter::FramesPassed => ("synwall_frames_passed_total", None),
        Counter::MalformedEthernet => ("synwall_malformed_total{layer=\"ethernet\"}", None),
        Counter::MalformedIpv4Header => (
            "synwall_malformed_total{layer=\"ipv4_header\"}",
            Some("InHdrErrors"),
        ),
        Counter::MalformedIpv4Checksum => (
            "synwall_malformed_total{layer=\"ipv4_checksum\"}",
            Some("InCsumErrors"),
        ),
        Counter::MalformedIpv6Header => ("synwall_malformed_total{layer=\"ipv6_header\"}", None),
        Counter::MalformedFragment => ("synwall_malformed_total{layer=\"fragment\"}", None),
        Counter::MalformedTcpHeader => (
            "synwall_malformed_total{layer=\"tcp_header\"}",
            Some("InErrs"),
        ),
        Counter::MalformedTcpOptions => ("synwall_malformed_total{layer=\"tcp_options\"}", None),
        Counter::MalformedTcpChecksum => (
            "synwall_malformed_total{layer=\"tcp_checksum\"}",
            Some("InCsumErrors"),
        ),
    }
}

/// A gauge's Prometheus series.
pub fn gauge_series(gauge: Gauge) -> &'static str {
    match gauge {
        Gauge::SynQueueDepth => "synwall_syn_queue_depth",
        Gauge::HandoffsPending => "synwall_handoffs_pending",
        Gauge::HeldBytes => "synwall_held_bytes",
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
        for &gauge in Gauge::ALL {
            assert!(seen.insert(gauge_series(gauge)));
        }
    }
}
