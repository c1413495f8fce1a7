//! Batches of received frames: parsed first, the cookie MACs of their SYNs (and of their ACKs
//! while cookie ACKs are taken) computed together, then each frame decided as
//! [`Listener::handle_frame`] decides it.
//!
//! A MAC computed one message at a time leaves the SHA-256 units waiting on each round of one
//! message; a batch's MACs are independent, so the listener's [`Sha256Lanes`] (SIMD lanes on
//! most x86-64 CPUs, see synwall's `sys::sha256`) computes them side by side.
//!
//! [`Sha256Lanes`]: crate::cookie::Sha256Lanes

use std::time::Instant;

use crate::cookie::MAX_PREPARED;
use crate::wire::{self, FourTuple, Parsed, TcpFlags, TcpRepr};

use super::ack::cookie_of_ack;
use super::syn::cookie_of_syn;
use super::{Accepted, HandoffComplete, Listener, SyncookiesMode, Verdict};

/// The frames of a batch parsed and prepared together (one cookie MAC each at most, as many as
/// the cookie jar prepares); a larger batch's other frames are handled one at a time.
pub const MAX_BATCH: usize = MAX_PREPARED;

/// A batch of received frames being handled ([`Listener::handle_batch`]).
pub struct Batch<'a> {
    listener: &'a mut Listener,
    now: Instant,
    frames: &'a [&'a [u8]],
    /// Each frame parsed (past the batch's frames, unused).
    parsed: [Parsed<'a>; MAX_BATCH],
    /// The prepared cookie MAC of each frame, if any.
    macs: [Option<usize>; MAX_BATCH],
}

impl Listener {
    /// Handles `frames`, received at `now`, as a batch: parses them and computes the cookie
    /// MACs their SYNs, and their ACKs while cookie ACKs are taken, will need, all at once; then
    /// `body` decides each frame with [`Batch::handle`]. The verdicts and replies are those of
    /// [`Listener::handle_frame`] on the same frames in the same order; only the cost differs.
    pub fn handle_batch<'a, R>(
        &'a mut self,
        now: Instant,
        frames: &'a [&'a [u8]],
        body: impl FnOnce(&mut Batch<'a>) -> R,
    ) -> R {
        self.clock.advance(now);
        self.cookies.clear_prepared();
        let cookie_acks =
            self.config.syncookies != SyncookiesMode::Never && self.cookie_gate_open(now);
        let mut batch = Batch {
            listener: self,
            now,
            frames,
            parsed: [Parsed::NotOurs; MAX_BATCH],
            macs: [None; MAX_BATCH],
        };
        let slots = batch.parsed.iter_mut().zip(&mut batch.macs);
        for (frame, (parsed, mac)) in frames.iter().zip(slots) {
            wire::parse_into(frame, &batch.listener.config.served, parsed);
            if let Parsed::Ours(segment) = parsed {
                *mac = batch.listener.prepare_mac(segment, cookie_acks);
            }
        }
        batch.listener.cookies.compute_prepared();
        body(&mut batch)
    }

    /// Asks for the cookie MAC deciding `segment` will need: a SYN's cookie, or an ACK's check
    /// when `cookie_acks`.
    fn prepare_mac(&mut self, segment: &TcpRepr<'_>, cookie_acks: bool) -> Option<usize> {
        let tuple = FourTuple {
            local: segment.dst,
            remote: segment.src,
        };
        let flags = segment.flags;
        if flags.contains(TcpFlags::RST) {
            return None;
        }
        if flags.contains(TcpFlags::SYN) {
            if flags.contains(TcpFlags::ACK) || flags.contains(TcpFlags::FIN) {
                return None;
            }
            let offer = self.offer(segment);
            let input = cookie_of_syn(segment, tuple, &offer);
            return self.cookies.prepare_encode(&input, offer.client_mss);
        }
        if !flags.contains(TcpFlags::ACK) || !cookie_acks {
            return None;
        }
        let input = cookie_of_ack(segment, tuple);
        self.cookies.prepare_check(&input, (segment.ack - 1).0)
    }
}

impl Batch<'_> {
    /// Handles frame `index` of the batch, writing any reply into `tx`: what
    /// [`Listener::handle_frame`] does.
    ///
    /// # Panics
    /// If `index` is not below the number of frames.
    pub fn handle(&mut self, index: usize, tx: &mut [u8]) -> Verdict {
        let rx = self.frames[index];
        // `handle_batch` advanced the clock to the batch's time.
        let listener = &mut *self.listener;
        let unprepared;
        let parsed = match self.parsed.get(index) {
            Some(parsed) => parsed,
            _ => {
                unprepared = wire::parse(rx, &listener.config.served);
                &unprepared
            }
        };
        listener
            .cookies
            .select_prepared(self.macs.get(index).copied().flatten());
        let verdict = listener.decide(self.now, rx, parsed, tx);
        listener.cookies.select_prepared(None);
        verdict
    }

    /// [`Listener::handle_accept_overflow`] at the batch's time.
    pub fn handle_accept_overflow(&mut self, accepted: Accepted, tx: &mut [u8]) -> Verdict {
        self.listener.handle_accept_overflow(self.now, accepted, tx)
    }

    /// [`Listener::handle_handoff_complete`] at the batch's time.
    pub fn handle_handoff_complete(
        &mut self,
        accepted: &Accepted,
        ack_early_data: bool,
        tx: &mut [u8],
    ) -> HandoffComplete {
        self.listener
            .handle_handoff_complete(self.now, accepted, ack_early_data, tx)
    }

    /// [`Listener::handle_handoff_failed`].
    pub fn handle_handoff_failed(&mut self, accepted: &Accepted, tx: &mut [u8]) -> Verdict {
        self.listener.handle_handoff_failed(accepted, tx)
    }
}
