//! The listener: the server side of the TCP three-way handshake as a sans-IO state machine.
//!
//! It takes frames and time in and writes replies into buffers the caller owns; it never reads
//! a clock, opens a socket, spawns a thread or touches a channel. The driver feeds it:
//!
//! - [`Listener::handle_frame`] for every received frame → a [`Verdict`];
//! - [`Listener::handle_timeout`] when [`Listener::poll_timeout`] is reached, then
//!   [`Listener::poll_transmit`] until it returns `None` (SYN-ACK retransmissions);
//! - [`Listener::handle_accept_overflow`] when an [`Accepted`] connection did not fit the
//!   accept queue, [`Listener::handle_handoff_complete`] once the kernel owns it, and
//!   [`Listener::handle_handoff_failed`] when no kernel socket could be made;
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

mod accepted;
mod clock;
mod config;
mod handoffs;
mod syn_queue;

pub use accepted::{Accepted, HandshakePath, WindowScale};
pub use config::{ConfigError, ListenerConfig, SyncookiesMode};

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cookie::keys::{KeyRing, Secret};
use crate::cookie::{CookieInput, CookieJar, SynOptions};
use crate::counters::{Counter, Counters, Gauge};
use crate::rate_limit::TokenBucket;
use crate::seq::SeqNumber;
use crate::wire::{
    self, FourTuple, LinkAddrs, Malformed, Parsed, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};
use clock::Clock;
use handoffs::{Handoffs, Stage};
use syn_queue::{HalfOpen, Offer, SynQueue};

/// The largest window-scale shift (RFC 7323 §2.3).
const MAX_WINDOW_SCALE: u8 = 14;
/// MSS assumed when a SYN carries none (RFC 9293 §3.7.1, RFC 8200 §5).
const DEFAULT_MSS_V4: u16 = 536;
const DEFAULT_MSS_V6: u16 = 1220;

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
        Ok(Listener {
            cookies: CookieJar::new(keys, config.cookie_mss_v4, config.cookie_mss_v6),
            queue: SynQueue::new(config.max_syn_backlog, config.synack_retries),
            handoffs: Handoffs::new(
                config.max_pending_handoffs,
                config.handoff_timeout,
                config.max_held_bytes,
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
            config,
        })
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

    /// Handles one received frame, writing any reply into `tx`.
    pub fn handle_frame(&mut self, now: Instant, rx: &[u8], tx: &mut [u8]) -> Verdict {
        self.clock.advance(now);
        let segment = match wire::parse(rx, &self.config.served) {
            Parsed::Ours(segment) => segment,
            Parsed::NotOurs => {
                self.counters.incr(Counter::FramesPassed);
                return Verdict::Pass;
            }
            Parsed::Malformed(kind) => return self.drop(DropReason::Malformed(kind)),
        };
        if is_martian(segment.src.ip(), segment.dst.ip()) {
            return self.drop(DropReason::MartianSource);
        }
        let tuple = FourTuple {
            local: segment.dst,
            remote: segment.src,
        };
        if let Some(verdict) = self.on_pending_handoff(rx, &segment, tuple) {
            return verdict;
        }
        let flags = segment.flags;
        if flags.contains(TcpFlags::RST) {
            if flags.contains(TcpFlags::SYN) {
                return self.drop(DropReason::BadFlags);
            }
            return self.on_rst(&segment, tuple);
        }
        if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) || flags.contains(TcpFlags::FIN) {
                return self.drop(DropReason::BadFlags);
            }
            return self.on_syn(now, &segment, tuple, tx);
        }
        if flags.contains(TcpFlags::ACK) {
            return self.on_ack(now, &segment, tuple, tx);
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

    /// Writes the next due SYN-ACK retransmission into `tx`; `None` when nothing is due (or
    /// `tx` is empty).
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
        let len = wire::emit(&repr, tx).ok()?;
        self.counters.incr(Counter::SynAckRetransmits);
        Some(len)
    }

    /// An [`Accepted`] connection did not fit the accept queue. With `abort_on_overflow` the
    /// peer gets a RST (written into `tx`); otherwise its ACK is forgotten, and a connection from
    /// the SYN queue goes back into it so its SYN-ACK is retransmitted and the peer ACKs again.
    pub fn handle_accept_overflow(
        &mut self,
        now: Instant,
        accepted: Accepted,
        tx: &mut [u8],
    ) -> Verdict {
        self.counters.incr(Counter::AcceptQueueOverflow);
        if self.config.abort_on_overflow {
            return self.reset_accepted(&accepted, tx);
        }
        self.handoffs.remove(&accepted.tuple);
        if accepted.path == HandshakePath::Queue {
            let entry = HalfOpen {
                link: accepted.link,
                client_isn: accepted.client_isn,
                server_isn: accepted.server_isn,
                offer: Offer {
                    client_mss: accepted.mss,
                    window_scale: accepted.window_scale.map(|scale| scale.send),
                    sack_permitted: accepted.sack_permitted,
                    peer_tsval: accepted.timestamps.map(|ts| ts.value),
                    ecn: accepted.ecn,
                },
                syn_at: now - accepted.handshake_duration.unwrap_or_default(),
            };
            // A full SYN queue loses it; the peer's next segment may still carry the cookie.
            let _ = self.queue.admit(accepted.tuple, entry, now);
        }
        self.update_gauges();
        Verdict::Consumed
    }

    /// The kernel now owns `accepted`'s connection: its segments no longer reach us. Returns
    /// the segments held meanwhile, for the local kernel stack, and, with `ack_early_data` when
    /// early data went into the kernel socket, an ACK for the peer written into `tx` (the
    /// kernel's own window probe on leaving repair mode does not tell it), so it does not
    /// retransmit what the application has already read. A repeated call for the same
    /// connection returns nothing more and sends nothing.
    pub fn handle_handoff_complete(
        &mut self,
        now: Instant,
        accepted: &Accepted,
        ack_early_data: bool,
        tx: &mut [u8],
    ) -> HandoffComplete {
        let Some(reinject) = self.handoffs.finish(&accepted.tuple, now) else {
            return HandoffComplete {
                ack: Verdict::Consumed,
                reinject: Vec::new(),
            };
        };
        self.counters.add(Counter::Reinjected, reinject.len());
        self.update_gauges();
        let ack = if ack_early_data && !accepted.early_data.is_empty() {
            self.early_data_ack(accepted, tx)
        } else {
            Verdict::Consumed
        };
        HandoffComplete { ack, reinject }
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "early data is one segment's payload, below 2^16 bytes"
    )]
    fn early_data_ack(&self, accepted: &Accepted, tx: &mut [u8]) -> Verdict {
        let early = accepted.early_data.len() as u32;
        let shift = accepted.window_scale.map_or(0, |scale| scale.receive);
        let window = u32::from(accepted.receive_window).saturating_sub(early) >> shift;
        let ack = TcpRepr {
            link: accepted.link.reversed(),
            src: accepted.tuple.local,
            dst: accepted.tuple.remote,
            hop_limit: self.config.hop_limit,
            seq: accepted.our_next_seq(),
            ack: accepted.peer_next_seq() + early,
            flags: TcpFlags::ACK,
            window: u16::try_from(window).unwrap_or(u16::MAX),
            options: TcpOptions {
                // Our clock as the SYN-ACK left it: the kernel's clock continues from there.
                timestamps: accepted.timestamps.map(|ts| Timestamps {
                    value: ts.echo,
                    echo: ts.value,
                }),
                ..TcpOptions::default()
            },
            payload: &[],
        };
        self.transmit(&ack, tx, Counter::EarlyDataAcks)
    }

    /// No kernel socket could be built for `accepted`: its peer is reset (a RST written into
    /// `tx`, counted) instead of being left half-open.
    pub fn handle_handoff_failed(&mut self, accepted: &Accepted, tx: &mut [u8]) -> Verdict {
        self.reset_accepted(accepted, tx)
    }

    /// Forgets `accepted`'s handoff and resets its peer.
    fn reset_accepted(&mut self, accepted: &Accepted, tx: &mut [u8]) -> Verdict {
        self.handoffs.remove(&accepted.tuple);
        self.update_gauges();
        let reset = reset(
            accepted.tuple,
            accepted.link,
            accepted.our_next_seq(),
            self.config.hop_limit,
        );
        self.transmit(&reset, tx, Counter::RstsSent)
    }

    fn on_syn(
        &mut self,
        now: Instant,
        syn: &TcpRepr<'_>,
        tuple: FourTuple,
        tx: &mut [u8],
    ) -> Verdict {
        self.counters.incr(Counter::SynReceived);
        if let Some(entry) = self.queue.get(&tuple) {
            if entry.client_isn == syn.seq {
                let repr = self.syn_ack(
                    tuple,
                    syn.link,
                    entry.server_isn,
                    entry.client_isn,
                    &entry.offer,
                );
                return self.transmit(&repr, tx, Counter::DuplicateSyns);
            }
            // A new connection attempt from the same 4-tuple.
            self.queue.remove(&tuple);
        }
        let offer = self.offer(syn);
        let queue_full = self.queue.is_full();
        if queue_full && self.config.syncookies != SyncookiesMode::Always {
            self.counters.incr(Counter::SynQueueOverflow);
        }
        let stateless = match self.config.syncookies {
            SyncookiesMode::Always => true,
            SyncookiesMode::WhenFull => queue_full,
            SyncookiesMode::Never if queue_full => return self.drop(DropReason::SynQueueFull),
            SyncookiesMode::Never => false,
        };
        let offer = if stateless { offer.stateless() } else { offer };
        let input = CookieInput {
            local: tuple.local,
            remote: tuple.remote,
            client_isn: syn.seq,
            options: offer.cookie_options(),
        };
        let isn = SeqNumber(self.cookies.encode(&input, offer.client_mss));
        let repr = self.syn_ack(tuple, syn.link, isn, syn.seq, &offer);
        if stateless {
            self.open_cookie_gate(now);
            return self.transmit(&repr, tx, Counter::CookiesSent);
        }
        let entry = HalfOpen {
            link: syn.link,
            client_isn: syn.seq,
            server_isn: isn,
            offer,
            syn_at: now,
        };
        self.queue
            .admit(tuple, entry, now)
            .expect("the queue had room");
        self.update_gauges();
        // Without a buffer now, the retransmission timer sends it later.
        self.transmit(&repr, tx, Counter::SynAcksSent)
    }

    fn on_ack(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: FourTuple,
        tx: &mut [u8],
    ) -> Verdict {
        if let Some(entry) = self.queue.get(&tuple) {
            if ack.ack != entry.server_isn + 1 {
                return self.reject_ack(now, ack, tuple, DropReason::AckMismatch, tx);
            }
            let window = u32::from(self.config.receive_window);
            if !ack.seq.is_in_window(entry.client_isn + 1, window.max(1)) {
                return self.drop(DropReason::OutOfWindow);
            }
            let entry = *entry;
            self.queue.remove(&tuple);
            self.counters.incr(Counter::AcceptedFromQueue);
            let completion = Completion {
                path: HandshakePath::Queue,
                client_isn: entry.client_isn,
                mss: entry.offer.client_mss,
                options: entry.offer.syn_options(),
                syn_at: Some(entry.syn_at),
            };
            return self.accept(now, ack, tuple, completion, tx);
        }
        if self.config.syncookies == SyncookiesMode::Never {
            return self.reject_ack(now, ack, tuple, DropReason::UnknownAck, tx);
        }
        if !self.cookie_gate_open(now) {
            return self.reject_ack(now, ack, tuple, DropReason::CookieGateClosed, tx);
        }
        let options = ack
            .options
            .timestamps
            .map(|ts| SynOptions::from_timestamp(ts.echo));
        let input = CookieInput {
            local: tuple.local,
            remote: tuple.remote,
            client_isn: ack.seq - 1,
            options,
        };
        let Some(mss) = self.cookies.check(&input, (ack.ack - 1).0) else {
            return self.reject_ack(now, ack, tuple, DropReason::CookieInvalid, tx);
        };
        self.counters.incr(Counter::CookieAcksValid);
        self.counters.incr(Counter::AcceptedFromCookie);
        let completion = Completion {
            path: HandshakePath::Cookie,
            client_isn: input.client_isn,
            mss,
            options: options.unwrap_or_default(),
            syn_at: None,
        };
        self.accept(now, ack, tuple, completion, tx)
    }

    fn on_rst(&mut self, rst: &TcpRepr<'_>, tuple: FourTuple) -> Verdict {
        if let Some(entry) = self.queue.get(&tuple) {
            let window = u32::from(self.config.receive_window).max(1);
            if !rst.seq.is_in_window(entry.client_isn + 1, window) {
                return self.drop(DropReason::OutOfWindow);
            }
            self.queue.remove(&tuple);
            self.counters.incr(Counter::ResetsReceived);
            self.update_gauges();
            return Verdict::Consumed;
        }
        self.drop(DropReason::StrayRst)
    }

    /// A segment of a connection whose handshake completed: held for its kernel socket while
    /// it is being made, handed to the kernel at once after. `None` when the connection is not
    /// pending, or a SYN starts a new connection over a handed 4-tuple.
    fn on_pending_handoff(
        &mut self,
        rx: &[u8],
        segment: &TcpRepr<'_>,
        tuple: FourTuple,
    ) -> Option<Verdict> {
        let stage = self.handoffs.stage(&tuple)?;
        let is_syn =
            segment.flags.contains(TcpFlags::SYN) && !segment.flags.contains(TcpFlags::ACK);
        if stage == Stage::Handed && is_syn {
            // A new connection attempt over a 4-tuple the kernel owned.
            self.handoffs.remove(&tuple);
            return None;
        }
        let Some(range) = wire::ip_packet_range(rx) else {
            return Some(self.drop(DropReason::Malformed(Malformed::Ethernet)));
        };
        match stage {
            Stage::Handed => {
                self.counters.incr(Counter::Reinjected);
                Some(Verdict::Reinject(range))
            }
            Stage::HandingOff if self.handoffs.hold(&tuple, &rx[range]) => {
                self.counters.incr(Counter::HeldSegments);
                self.update_gauges();
                Some(Verdict::Consumed)
            }
            Stage::HandingOff => Some(self.drop(DropReason::HeldOverflow)),
        }
    }

    fn accept(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: FourTuple,
        completion: Completion,
        tx: &mut [u8],
    ) -> Verdict {
        let window_scale = completion.options.window_scale.map(|send| WindowScale {
            send,
            receive: self.config.window_scale,
        });
        let send_shift = window_scale.map_or(0, |scale| scale.send);
        let early_data = if ack.seq == completion.client_isn + 1 {
            ack.payload.to_vec()
        } else {
            Vec::new()
        };
        let accepted = Accepted {
            tuple,
            link: ack.link,
            path: completion.path,
            client_isn: completion.client_isn,
            server_isn: ack.ack - 1,
            mss: completion.mss,
            window_scale,
            sack_permitted: completion.options.sack_permitted,
            timestamps: ack.options.timestamps,
            ecn: completion.options.ecn,
            peer_window: u32::from(ack.window) << send_shift,
            receive_window: self.config.receive_window,
            early_data,
            handshake_duration: completion
                .syn_at
                .map(|syn_at| now.saturating_duration_since(syn_at)),
        };
        if !self.handoffs.start(tuple, now) {
            return self.handle_accept_overflow(now, accepted, tx);
        }
        self.update_gauges();
        Verdict::Accepted(accepted)
    }

    /// What we agree to for `syn`.
    fn offer(&self, syn: &TcpRepr<'_>) -> Offer {
        let default_mss = if syn.src.is_ipv4() {
            DEFAULT_MSS_V4
        } else {
            DEFAULT_MSS_V6
        };
        let ecn_setup = syn.flags.contains(TcpFlags::ECE) && syn.flags.contains(TcpFlags::CWR);
        Offer {
            client_mss: syn.options.mss.unwrap_or(default_mss),
            // A larger shift is taken as the largest, as the kernel does (RFC 7323 §2.3).
            window_scale: syn
                .options
                .window_scale
                .map(|shift| shift.min(MAX_WINDOW_SCALE)),
            sack_permitted: syn.options.sack_permitted && self.config.sack,
            peer_tsval: syn
                .options
                .timestamps
                .filter(|_| self.config.timestamps)
                .map(|ts| ts.value),
            ecn: ecn_setup && self.config.ecn,
        }
    }

    fn syn_ack(
        &self,
        tuple: FourTuple,
        syn_link: LinkAddrs,
        isn: SeqNumber,
        client_isn: SeqNumber,
        offer: &Offer,
    ) -> TcpRepr<'static> {
        let our_mss = if tuple.local.is_ipv4() {
            self.config.mss_v4
        } else {
            self.config.mss_v6
        };
        let flags = if offer.ecn {
            TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE
        } else {
            TcpFlags::SYN | TcpFlags::ACK
        };
        let timestamps = offer.peer_tsval.map(|echo| Timestamps {
            value: offer.syn_options().timestamp(self.clock.timestamp()),
            echo,
        });
        TcpRepr {
            link: syn_link.reversed(),
            src: tuple.local,
            dst: tuple.remote,
            hop_limit: self.config.hop_limit,
            seq: isn,
            ack: client_isn + 1,
            flags,
            window: self.config.receive_window,
            options: TcpOptions {
                mss: Some(our_mss),
                window_scale: offer.window_scale.map(|_| self.config.window_scale),
                sack_permitted: offer.sack_permitted,
                timestamps,
            },
            payload: &[],
        }
    }

    /// Answers an unacceptable ACK with a RST, within the rate limit; drops it otherwise.
    fn reject_ack(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: FourTuple,
        reason: DropReason,
        tx: &mut [u8],
    ) -> Verdict {
        if !self.rst_limit.take(now) {
            if self.config.invalid_ack_rsts_per_sec > 0 {
                self.counters.incr(Counter::RstsRateLimited);
            }
            return self.drop(reason);
        }
        self.counters.incr(reason.counter());
        let reset = reset(tuple, ack.link, ack.ack, self.config.hop_limit);
        self.transmit(&reset, tx, Counter::RstsSent)
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

/// What [`Listener::handle_handoff_complete`] leaves to the driver.
#[derive(Debug, PartialEq, Eq)]
pub struct HandoffComplete {
    /// An ACK for the early data, written into the transmit buffer ([`Verdict::Transmit`]), or
    /// [`Verdict::Consumed`].
    pub ack: Verdict,
    /// IP packets held while the kernel socket was being made, in arrival order: deliver them to
    /// the local kernel stack.
    pub reinject: Vec<Vec<u8>>,
}

/// How a handshake completed, from the SYN queue or a cookie.
struct Completion {
    path: HandshakePath,
    client_isn: SeqNumber,
    mss: u16,
    options: SynOptions,
    syn_at: Option<Instant>,
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
