//! The SYN path: what a listener agrees to for a SYN, whether it queues the connection or
//! answers statelessly with a cookie (per [`SyncookiesMode`]), and the SYN-ACK it sends, first
//! or retransmitted. Every SYN-ACK's ISN is a cookie, queued or not.

use std::time::Instant;

use crate::cookie::CookieInput;
use crate::counters::Counter;
use crate::seq::SeqNumber;
use crate::wire::{FourTuple, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

use super::syn_queue::{HalfOpen, Offer};
use super::{DropReason, HashedTuple, Listener, SyncookiesMode, Verdict};

/// The largest window-scale shift (RFC 7323 §2.3).
const MAX_WINDOW_SCALE: u8 = 14;
/// MSS assumed when a SYN carries none (RFC 9293 §3.7.1, RFC 8200 §5).
const DEFAULT_MSS_V4: u16 = 536;
const DEFAULT_MSS_V6: u16 = 1220;

impl Listener {
    pub(super) fn on_syn(
        &mut self,
        now: Instant,
        syn: &TcpRepr<'_>,
        tuple: &HashedTuple,
        tx: &mut [u8],
    ) -> Verdict {
        self.counters.incr(Counter::SynReceived);
        if let Some(entry) = self.queue.get(tuple) {
            if entry.client_isn == syn.seq {
                let repr = self.syn_ack(
                    *tuple.key(),
                    syn.link,
                    entry.server_isn,
                    entry.client_isn,
                    &entry.offer,
                );
                return self.transmit(&repr, tx, Counter::DuplicateSyns);
            }
            // A new connection attempt from the same 4-tuple: the old entry goes, and the gauge
            // with it, whichever path the new SYN takes.
            self.queue.remove(tuple);
            self.update_gauges();
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
        let isn = SeqNumber(
            self.cookies
                .encode(&cookie_of_syn(syn, *tuple.key(), &offer), offer.client_mss),
        );
        let repr = self.syn_ack(*tuple.key(), syn.link, isn, syn.seq, &offer);
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
        self.record_admission(
            *tuple.key(),
            &entry,
            repr.options.timestamps.map(|ts| ts.value),
        );
        self.update_gauges();
        // Without a buffer now, the retransmission timer sends it later.
        self.transmit(&repr, tx, Counter::SynAcksSent)
    }

    /// What we agree to for `syn`.
    pub(super) fn offer(&self, syn: &TcpRepr<'_>) -> Offer {
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

    pub(super) fn syn_ack(
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
}

/// What the cookie of a SYN-ACK answering `syn` with `offer` is made of. Whether the offer is
/// stateless changes nothing here: it drops only options a cookie without timestamps does not
/// carry.
pub(super) fn cookie_of_syn(syn: &TcpRepr<'_>, tuple: FourTuple, offer: &Offer) -> CookieInput {
    CookieInput {
        local: tuple.local,
        remote: tuple.remote,
        client_isn: syn.seq,
        options: offer.cookie_options(),
    }
}
