//! Counters for every outcome, readable without locks from any thread.
//!
//! Each listener shard owns one [`Counters`] and is its only writer, so an increment is a plain
//! relaxed load and store (no locked instruction on the hot path); readers on other threads
//! load relaxed values and sum shards with [`CounterSnapshot::merge`]. This module names what
//! is counted and nothing else: how a counter is exported (its Prometheus series) and which
//! kernel MIB counter it matches belong to the layer that presents them (synwall's
//! `metrics::names`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::wire::Malformed;

macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident;)+) => {
        /// Everything a listener counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[doc = $doc])+ $name,)+
        }

        impl Counter {
            /// Every counter, in declaration order.
            pub const ALL: &'static [Counter] = &[$(Counter::$name,)+];

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
    SynReceived;
    /// SYN-ACKs sent for connections admitted to the SYN queue (first transmissions).
    SynAcksSent;
    /// SYN-ACKs retransmitted by the SYN-queue timers.
    SynAckRetransmits;
    /// Retransmitted SYNs of queued connections, answered with the same SYN-ACK again.
    DuplicateSyns;
    /// SYN-ACKs sent with a cookie and no state.
    CookiesSent;
    /// ACKs carrying a valid cookie.
    CookieAcksValid;
    /// ACKs whose cookie did not validate.
    CookieAcksInvalid;
    /// ACKs not checked as cookies because no cookie was sent recently.
    CookieAcksGated;
    /// SYNs that found the SYN queue full (answered with a cookie or dropped, by policy).
    SynQueueOverflow;
    /// SYNs dropped because the SYN queue was full and cookies are off.
    SynQueueFullDrops;
    /// SYN-queue entries dropped after their last SYN-ACK retransmission.
    SynQueueExpired;
    /// SYN-queue entries removed by a RST from the peer.
    ResetsReceived;
    /// Handshakes completed from the SYN queue.
    AcceptedFromQueue;
    /// Handshakes completed by a cookie.
    AcceptedFromCookie;
    /// Handshakes from the SYN queue whose final ACK the kernel took in and completed itself
    /// (native mode), never seen here; also counted as `AcceptedFromQueue`.
    CompletedInKernel;
    /// Completed handshakes that found the accept queue full.
    AcceptQueueOverflow;
    /// Segments of connections being handed off, held for their kernel sockets.
    HeldSegments;
    /// Segments handed to the local kernel stack once their connection's kernel socket existed.
    Reinjected;
    /// Pure ACKs of the handshake (no data, acknowledging nothing we sent after it) of
    /// connections the kernel already owns, reaching us late: dropped, as the kernel socket
    /// would take them for old duplicates (see `listener::handoffs`).
    LateHandshakeAcks;
    /// Segments that could not be handed to the local kernel stack (the peer retransmits them).
    ReinjectFailures;
    /// ACKs sent for early data on behalf of a new kernel socket.
    EarlyDataAcks;
    /// Handoff markers that expired without the handoff being reported done.
    HandoffsExpired;
    /// Segments of connections being handed off beyond `max_held_bytes` (dropped; the peer
    /// retransmits them).
    HeldOverflow;
    /// ACKs matching a queued connection with the wrong acknowledgment number.
    AckMismatch;
    /// ACKs with no queued connection while cookies are off.
    UnknownAcks;
    /// Segments of a queued connection outside its receive window.
    OutOfWindow;
    /// RSTs matching nothing.
    StrayResets;
    /// Impossible flag combinations (SYN+FIN, SYN+RST, SYN+ACK, none of SYN/ACK/RST).
    BadFlags;
    /// Segments from a source address that cannot send TCP (multicast, broadcast, loopback, ours).
    MartianSources;
    /// Replies not sent because no transmit buffer was free.
    NoTxBuffer;
    /// RSTs sent (to invalid ACKs, on accept-queue overflow when configured, and to peers whose
    /// handoff failed).
    RstsSent;
    /// RSTs not sent because of the RST rate limit.
    RstsRateLimited;
    /// Frames that reached the listener but were not for a served port.
    FramesPassed;
    /// Frames shorter than their Ethernet header or VLAN tag.
    MalformedEthernet;
    /// Unparsable IPv4 headers.
    MalformedIpv4Header;
    /// IPv4 header checksum failures.
    MalformedIpv4Checksum;
    /// Unparsable IPv6 headers or extension header chains.
    MalformedIpv6Header;
    /// Fragments carrying a segment to a served port.
    MalformedFragment;
    /// Unparsable TCP headers and zero source ports.
    MalformedTcpHeader;
    /// TCP options with malformed lengths.
    MalformedTcpOptions;
    /// TCP checksum failures.
    MalformedTcpChecksum;
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
    pub fn incr(&self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Adds `n`. Only the owning shard's thread may call this (single writer).
    pub fn add(&self, counter: Counter, n: usize) {
        let cell = &self.counters[counter as usize];
        cell.store(cell.load(Relaxed) + n as u64, Relaxed);
    }

    /// Sets a gauge. Only the owning shard's thread may call this (single writer).
    pub fn set(&self, gauge: Gauge, value: usize) {
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
