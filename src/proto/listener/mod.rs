//! The listener: the server side of the TCP three-way handshake as a sans-IO state machine.
//!
//! It takes frames and time in and writes replies into buffers the caller owns; it never reads
//! a clock, opens a socket, spawns a thread or touches a channel. The driver feeds it:
//!
//! - [`Listener::handle_frame`] for every received frame → a [`Verdict`]; or, cheaper per
//!   frame, [`Listener::handle_batch`] for a batch of them, deciding each with [`Batch::handle`];
//! - [`Listener::handle_timeout`] when [`Listener::poll_timeout`] is reached, then
//!   [`Listener::poll_transmit`] until it returns `None` (SYN-ACK retransmissions);
//! - [`Listener::handle_accept_overflow`] when an [`Accepted`] connection did not fit the
//!   accept queue, [`Listener::handle_handoff_complete`] once the kernel owns it, and
//!   [`Listener::handle_handoff_failed`] when no kernel socket could be made;
//! - with [`Listener::record_admissions`] (the kernel completes queued handshakes itself),
//!   [`Listener::take_admitted`] after every batch of frames, and
//!   [`Listener::handle_completed_in_kernel`] or [`Listener::handle_reset_by_kernel`] for what
//!   the kernel did with each;
//! - [`Verdict::Reinject`]: the IP packet goes to the local kernel stack (a segment of a
//!   connection the kernel already owns);
//! - [`Listener::rotate_keys`] with the wall-clock time, at least once per second.
//!
//! `now` must never go backwards between calls.
//!
//! # Decisions
//!
//! - SYN: admitted to the bounded SYN queue or answered statelessly with a cookie, per
//!   [`SyncookiesMode`]. Every SYN-ACK's ISN is a cookie, so a connection whose queue entry is
//!   gone (expired, or the ACK reached another replica sharing the key) still completes. A
//!   queued client that sent no timestamps then completes without the window scaling and SACK
//!   its SYN-ACK offered: there was nowhere to keep them.
//! - A retransmitted SYN of a queued connection gets the same SYN-ACK again; a SYN from the
//!   same 4-tuple with another ISN replaces the entry. Data on a SYN is not acknowledged.
//! - ACK: matches a queued entry (exact acknowledgment number, sequence number in window) or
//!   carries a valid cookie (cookie = ack − 1, client ISN = seq − 1, as the kernel) while cookies
//!   were sent within the last two key periods (the kernel's `tcp_synq_no_recent_overflow`).
//!   Other ACKs are answered with `<SEQ=SEG.ACK><CTL=RST>` (RFC 9293 §3.10.7.1), at most
//!   `invalid_ack_rsts_per_sec` per second (a flood of forged ACKs must not become a flood of
//!   RSTs), and counted; over the limit they are dropped.
//! - RST: removes a queued entry when its sequence number is in window; never answered.
//! - SYN+FIN, SYN+RST, SYN+ACK and segments without SYN, ACK or RST are counted drops.
//! - Payload on the final ACK becomes early data for the kernel socket. Later segments that
//!   reach us before the kernel socket exists (the request that follows the ACK within
//!   microseconds, a FIN) are held and then re-injected into the local kernel stack
//!   ([`Verdict::Reinject`], [`HandoffComplete`]); for a short linger after, stale frames from
//!   the receive ring are re-injected at once. None is ever taken for a new cookie ACK.
//!
//! Here: the listener's state, the driver's entry points and the timers. Batches are in
//! `batch`, the SYN path in `syn`, the ACK and RST paths in `ack`, what follows an accepted
//! handshake in `kernel_handoff`, and the handshakes the kernel completes itself in
//! `kernel_completion`.

mod accepted;
mod ack;
mod batch;
mod clock;
mod config;
mod handoffs;
mod kernel_completion;
mod kernel_handoff;
mod syn;
mod syn_queue;

pub use accepted::{Accepted, HandshakePath, WindowScale};
pub use batch::{Batch, MAX_BATCH};
pub use config::{ConfigError, ListenerConfig, SyncookiesMode};
pub use kernel_handoff::HandoffComplete;

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cookie::keys::{KeyRing, Secret};
use crate::cookie::{CookieJar, Sha256Lanes};
use crate::counters::{Counter, Counters, Gauge};
use crate::rate_limit::TokenBucket;
use crate::seq::SeqNumber;
use crate::table::{HashedOnce, KeyHasher};
use crate::wire::{self, FourTuple, LinkAddrs, Malformed, Parsed, TcpFlags, TcpOptions, TcpRepr};
use clock::Clock;
use handoffs::Handoffs;
use syn_queue::SynQueue;

/// What became of a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A reply of this many bytes was written into the transmit buffer.
    Transmit(usize),
    /// A handshake completed. Push it to the accept queue; if full, call
    /// [`Listener::handle_accept_overflow`].
    Accepted(Accepted),
    /// Handled; nothing to send.
    Consumed,
    /// Not for a served port.
    Pass,
    /// This part of the received frame is an IP packet of a connection the kernel owns now:
    /// deliver it to the local kernel stack.
    Reinject(std::ops::Range<usize>),
    /// Dropped and counted.
    Drop(DropReason),
}

/// Why a frame was dropped (or answered with a RST). Each reason has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    Malformed(Malformed),
    MartianSource,
    BadFlags,
    /// A SYN found the SYN queue full and cookies are off.
    SynQueueFull,
    /// A segment for a connection being handed off to the kernel, beyond what may be held.
    HeldOverflow,
    /// An ACK to check as a cookie while no cookie was sent recently.
    CookieGateClosed,
    CookieInvalid,
    /// An ACK matching no queued connection while cookies are off.
    UnknownAck,
    /// An ACK of a queued connection acknowledging the wrong sequence number.
    AckMismatch,
    OutOfWindow,
    StrayRst,
    /// No transmit buffer was free for the reply.
    NoTxBuffer,
}

impl DropReason {
    pub fn counter(self) -> Counter {
        match self {
            DropReason::Malformed(kind) => Counter::from(kind),
            DropReason::MartianSource => Counter::MartianSources,
            DropReason::BadFlags => Counter::BadFlags,
            DropReason::SynQueueFull => Counter::SynQueueFullDrops,
            DropReason::HeldOverflow => Counter::HeldOverflow,
            DropReason::CookieGateClosed => Counter::CookieAcksGated,
            DropReason::CookieInvalid => Counter::CookieAcksInvalid,
            DropReason::UnknownAck => Counter::UnknownAcks,
            DropReason::AckMismatch => Counter::AckMismatch,
            DropReason::OutOfWindow => Counter::OutOfWindow,
            DropReason::StrayRst => Counter::StrayResets,
            DropReason::NoTxBuffer => Counter::NoTxBuffer,
        }
    }
}

/// A segment's 4-tuple, from our side, hashed at most once for the SYN queue and the handoff
/// records (which share a hasher).
type HashedTuple = HashedOnce<FourTuple>;

/// One listener shard. See the module documentation.
pub struct Listener {
    config: ListenerConfig,
    cookies: CookieJar,
    queue: SynQueue,
    handoffs: Handoffs,
    counters: Arc<Counters>,
    clock: Clock,
    cookie_gate_until: Option<Instant>,
    rst_limit: TokenBucket,
    timers_now: Instant,
    /// Handshakes admitted to the SYN queue and not yet taken, when recording (see
    /// [`Listener::record_admissions`]); never more than the SYN queue holds.
    admitted: Option<Vec<Accepted>>,
}

impl Listener {
    /// A listener with `config`, making cookies with `keys`, starting at `now`.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "any 32 of the hash's random bits make the offset"
    )]
    pub fn new(
        config: ListenerConfig,
        keys: KeyRing,
        now: Instant,
    ) -> Result<Listener, ConfigError> {
        config.validate()?;
        // The longest a cookie stays valid.
        let cookie_lifetime = 2 * keys.period();
        // One hasher for both tables: a segment's tuple, hashed by one, is hashed for the other.
        let tuple_hasher = KeyHasher::default();
        Ok(Listener {
            cookies: CookieJar::new(keys, config.cookie_mss_v4, config.cookie_mss_v6),
            queue: SynQueue::new(
                config.max_syn_backlog,
                config.synack_retries,
                tuple_hasher.clone(),
            ),
            handoffs: Handoffs::new(
                config.max_pending_handoffs,
                config.handoff_timeout,
                config.max_held_bytes,
                tuple_hasher,
            ),
            counters: Arc::default(),
            clock: Clock::new(
                now,
                // A random offset per listener, so timestamps do not reveal its uptime.
                std::collections::hash_map::RandomState::new().hash_one(0u8) as u32,
                cookie_lifetime,
            ),
            cookie_gate_until: None,
            rst_limit: TokenBucket::new(config.invalid_ack_rsts_per_sec, now),
            timers_now: now,
            admitted: None,
            config,
        })
    }

    /// Computes the cookie MACs of a [`Listener::handle_batch`] with `lanes` (by default one at a
    /// time).
    pub fn with_sha256_lanes(mut self, lanes: Box<dyn Sha256Lanes>) -> Listener {
        self.cookies.set_lanes(lanes);
        self
    }

    pub fn config(&self) -> &ListenerConfig {
        &self.config
    }

    /// This shard's counters, to be read from any thread.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Connections in the SYN queue.
    pub fn syn_queue_len(&self) -> usize {
        self.queue.len()
    }

    /// Bytes the SYN queue holds: allocated once, never more.
    pub fn syn_queue_bytes(&self) -> usize {
        self.queue.allocated_bytes()
    }

    /// Whether cookie ACKs are accepted at `now` (cookies were sent recently).
    pub fn cookie_gate_open(&self, now: Instant) -> bool {
        self.cookie_gate_until.is_some_and(|until| now < until)
    }

    /// Moves the cookie keys to the epoch of `unix_time` (wall-clock time since the Unix
    /// epoch). Returns whether the epoch changed.
    pub fn rotate_keys(&mut self, unix_time: Duration) -> bool {
        self.cookies.keys_mut().rotate(unix_time)
    }

    /// Applies the settings a running listener takes without losing any state (SIGHUP): the
    /// secret takes effect at the next key epoch, so cookies already issued stay valid.
    pub fn apply(&mut self, now: Instant, update: &ListenerUpdate) {
        if let Some(secret) = &update.secret {
            self.cookies.keys_mut().replace_master(secret.clone());
        }
        self.config.syncookies = update.syncookies;
        self.config.abort_on_overflow = update.abort_on_overflow;
        if self.config.invalid_ack_rsts_per_sec != update.invalid_ack_rsts_per_sec {
            self.config.invalid_ack_rsts_per_sec = update.invalid_ack_rsts_per_sec;
            self.rst_limit = TokenBucket::new(update.invalid_ack_rsts_per_sec, now);
        }
    }

    /// Opens the cookie gate now, for as long as a cookie stays valid: for a listener whose
    /// secret is shared, the handshakes of other replicas (or of the process before a restart)
    /// may complete here.
    pub fn open_cookie_gate(&mut self, now: Instant) {
        self.clock.advance(now);
        self.cookie_gate_until = Some(self.clock.gate_until());
    }

    /// Handles one received frame, writing any reply into `tx`. ([`Listener::handle_batch`]
    /// handles many at a lower cost per frame.)
    pub fn handle_frame(&mut self, now: Instant, rx: &[u8], tx: &mut [u8]) -> Verdict {
        self.clock.advance(now);
        let parsed = wire::parse(rx, &self.config.served);
        self.decide(now, rx, &parsed, tx)
    }

    /// The verdict on the received frame `rx`, parsed as `parsed`.
    fn decide(&mut self, now: Instant, rx: &[u8], parsed: &Parsed<'_>, tx: &mut [u8]) -> Verdict {
        let segment = match parsed {
            Parsed::Ours(segment) => segment,
            Parsed::NotOurs => {
                self.counters.incr(Counter::FramesPassed);
                return Verdict::Pass;
            }
            Parsed::Malformed(kind) => return self.drop(DropReason::Malformed(*kind)),
        };
        if is_martian(segment.src.ip(), segment.dst.ip()) {
            return self.drop(DropReason::MartianSource);
        }
        let tuple = HashedTuple::new(FourTuple {
            local: segment.dst,
            remote: segment.src,
        });
        if let Some(verdict) = self.on_pending_handoff(rx, segment, &tuple) {
            return verdict;
        }
        let flags = segment.flags;
        if flags.contains(TcpFlags::RST) {
            if flags.contains(TcpFlags::SYN) {
                return self.drop(DropReason::BadFlags);
            }
            return self.on_rst(segment, &tuple);
        }
        if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) || flags.contains(TcpFlags::FIN) {
                return self.drop(DropReason::BadFlags);
            }
            return self.on_syn(now, segment, &tuple, tx);
        }
        if flags.contains(TcpFlags::ACK) {
            return self.on_ack(now, segment, &tuple, tx);
        }
        self.drop(DropReason::BadFlags)
    }

    /// The next time [`Listener::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.queue.next_deadline(), self.handoffs.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers due at `now`: expires SYN-queue entries and handoff markers, and makes
    /// due SYN-ACK retransmissions available to [`Listener::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timers_now = now;
        self.clock.advance(now);
        while self.queue.next_expired(now).is_some() {
            self.counters.incr(Counter::SynQueueExpired);
            // The client may still ACK late: let its cookie through.
            self.open_cookie_gate(now);
        }
        while self.handoffs.next_expired(now).is_some() {
            self.counters.incr(Counter::HandoffsExpired);
        }
        self.update_gauges();
    }

    /// Writes the next due SYN-ACK retransmission into `tx`; `None` when nothing is due, `tx`
    /// is empty, or it is too small (counted as `NoTxBuffer`).
    pub fn poll_transmit(&mut self, tx: &mut [u8]) -> Option<usize> {
        if tx.is_empty() {
            return None;
        }
        let now = self.timers_now;
        let (tuple, entry) = self.queue.next_retransmit(now)?;
        let entry = *entry;
        let repr = self.syn_ack(
            tuple,
            entry.link,
            entry.server_isn,
            entry.client_isn,
            &entry.offer,
        );
        // The entry's timer has moved on: a retransmission that finds no room is counted as
        // lost, and the next one comes at its own time.
        let Ok(len) = wire::emit(&repr, tx) else {
            self.counters.incr(Counter::NoTxBuffer);
            return None;
        };
        self.counters.incr(Counter::SynAckRetransmits);
        Some(len)
    }

    /// Writes `repr` into `tx` and counts it under `sent`; a drop when `tx` is too small.
    fn transmit(&self, repr: &TcpRepr<'_>, tx: &mut [u8], sent: Counter) -> Verdict {
        match wire::emit(repr, tx) {
            Ok(len) => {
                self.counters.incr(sent);
                Verdict::Transmit(len)
            }
            Err(_) => self.drop(DropReason::NoTxBuffer),
        }
    }

    fn drop(&self, reason: DropReason) -> Verdict {
        self.counters.incr(reason.counter());
        Verdict::Drop(reason)
    }

    fn update_gauges(&self) {
        self.counters.set(Gauge::SynQueueDepth, self.queue.len());
        self.counters
            .set(Gauge::HandoffsPending, self.handoffs.len());
        self.counters
            .set(Gauge::HeldBytes, self.handoffs.held_bytes());
    }
}

/// The settings a running listener can change ([`Listener::apply`]).
#[derive(Debug, Clone)]
pub struct ListenerUpdate {
    /// A new master secret, if any.
    pub secret: Option<Secret>,
    pub syncookies: SyncookiesMode,
    pub abort_on_overflow: bool,
    pub invalid_ack_rsts_per_sec: u32,
}

/// `<SEQ=seq><CTL=RST>` to the peer of `tuple`, replying to a frame that carried `link`.
fn reset(tuple: FourTuple, link: LinkAddrs, seq: SeqNumber, hop_limit: u8) -> TcpRepr<'static> {
    TcpRepr {
        link: link.reversed(),
        src: tuple.local,
        dst: tuple.remote,
        hop_limit,
        seq,
        ack: SeqNumber(0),
        flags: TcpFlags::RST,
        window: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// Source addresses that cannot open a TCP connection.
fn is_martian(src: IpAddr, dst: IpAddr) -> bool {
    src == dst
        || match src {
            IpAddr::V4(addr) => {
                addr.is_unspecified()
                    || addr.is_broadcast()
                    || addr.is_multicast()
                    || addr.is_loopback()
            }
            IpAddr::V6(addr) => {
                addr.is_unspecified()
                    || addr.is_multicast()
                    || addr.is_loopback()
                    || addr.to_ipv4_mapped().is_some()
            }
        }
}
