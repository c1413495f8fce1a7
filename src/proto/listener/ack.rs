//! The ACK and RST paths of a handshake: an ACK completes a queued connection or carries a
//! valid cookie, and becomes an [`Accepted`] connection; any other ACK is answered with a RST
//! within the rate limit. A RST removes a queued connection when its sequence number is in
//! window.

use std::time::Instant;

use crate::cookie::{CookieInput, SynOptions};
use crate::counters::Counter;
use crate::seq::SeqNumber;
use crate::wire::{FourTuple, TcpRepr};

use super::{
    Accepted, DropReason, HandshakePath, HashedTuple, Listener, SyncookiesMode, Verdict,
    WindowScale, reset,
};

impl Listener {
    pub(super) fn on_ack(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: &HashedTuple,
        tx: &mut [u8],
    ) -> Verdict {
        if let Some(entry) = self.queue.get(tuple) {
            if ack.ack != entry.server_isn + 1 {
                return self.reject_ack(now, ack, tuple, DropReason::AckMismatch, tx);
            }
            let window = u32::from(self.config.receive_window);
            if !ack.seq.is_in_window(entry.client_isn + 1, window.max(1)) {
                return self.drop(DropReason::OutOfWindow);
            }
            let entry = *entry;
            self.queue.remove(tuple);
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
        let input = cookie_of_ack(ack, *tuple.key());
        let Some(mss) = self.cookies.check(&input, (ack.ack - 1).0) else {
            return self.reject_ack(now, ack, tuple, DropReason::CookieInvalid, tx);
        };
        self.counters.incr(Counter::CookieAcksValid);
        self.counters.incr(Counter::AcceptedFromCookie);
        let completion = Completion {
            path: HandshakePath::Cookie,
            client_isn: input.client_isn,
            mss,
            options: input.options.unwrap_or_default(),
            syn_at: None,
        };
        self.accept(now, ack, tuple, completion, tx)
    }

    pub(super) fn on_rst(&mut self, rst: &TcpRepr<'_>, tuple: &HashedTuple) -> Verdict {
        if let Some(entry) = self.queue.get(tuple) {
            let window = u32::from(self.config.receive_window).max(1);
            if !rst.seq.is_in_window(entry.client_isn + 1, window) {
                return self.drop(DropReason::OutOfWindow);
            }
            self.queue.remove(tuple);
            self.counters.incr(Counter::ResetsReceived);
            self.update_gauges();
            return Verdict::Consumed;
        }
        self.drop(DropReason::StrayRst)
    }

    fn accept(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: &HashedTuple,
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
            tuple: *tuple.key(),
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

    /// Answers an unacceptable ACK with a RST, within the rate limit; drops it otherwise.
    fn reject_ack(
        &mut self,
        now: Instant,
        ack: &TcpRepr<'_>,
        tuple: &HashedTuple,
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
        let reset = reset(*tuple.key(), ack.link, ack.ack, self.config.hop_limit);
        self.transmit(&reset, tx, Counter::RstsSent)
    }
}

/// What the cookie an ACK carries (its acknowledgment number minus one) was made of, if it is
/// one of ours: the client's ISN is the ACK's sequence number minus one, and the SYN's options
/// come back in the echoed timestamp.
pub(super) fn cookie_of_ack(ack: &TcpRepr<'_>, tuple: FourTuple) -> CookieInput {
    CookieInput {
        local: tuple.local,
        remote: tuple.remote,
        client_isn: ack.seq - 1,
        options: ack
            .options
            .timestamps
            .map(|ts| SynOptions::from_timestamp(ts.echo)),
    }
}

/// How a handshake completed, from the SYN queue or a cookie.
struct Completion {
    path: HandshakePath,
    client_isn: SeqNumber,
    mss: u16,
    options: SynOptions,
    syn_at: Option<Instant>,
}
