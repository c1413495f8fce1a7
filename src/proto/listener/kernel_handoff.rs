//! What follows an accepted handshake until the kernel owns the connection: the driver's
//! reports (the accept queue overflowed, the kernel socket was made, or could not be), and
//! segments of the connection that reach the listener meanwhile, held and then re-injected
//! into the local kernel stack.

use std::time::Instant;

use crate::counters::Counter;
use crate::wire::{self, Malformed, TcpFlags, TcpOptions, TcpRepr, Timestamps};

use super::handoffs::{Handed, Stage};
use super::syn_queue::{HalfOpen, Offer};
use super::{Accepted, DropReason, HandshakePath, HashedTuple, Listener, Verdict, reset};

impl Listener {
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
        let tuple = HashedTuple::new(accepted.tuple);
        self.handoffs.remove(&tuple);
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
            let _ = self.queue.admit(&tuple, entry, now);
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
        let handed = Handed {
            our_next_seq: accepted.our_next_seq(),
        };
        let tuple = HashedTuple::new(accepted.tuple);
        let Some(reinject) = self.handoffs.finish(&tuple, handed, now) else {
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
        self.handoffs.remove(&HashedTuple::new(accepted.tuple));
        self.update_gauges();
        let reset = reset(
            accepted.tuple,
            accepted.link,
            accepted.our_next_seq(),
            self.config.hop_limit,
        );
        self.transmit(&reset, tx, Counter::RstsSent)
    }

    /// A segment of a connection whose handshake completed: held for its kernel socket while
    /// it is being made, handed to the kernel at once after (but a late pure ACK of the
    /// handshake is dropped: see the `handoffs` module). `None` when the connection is not
    /// pending, or a SYN starts a new connection over a handed 4-tuple.
    pub(super) fn on_pending_handoff(
        &mut self,
        rx: &[u8],
        segment: &TcpRepr<'_>,
        tuple: &HashedTuple,
    ) -> Option<Verdict> {
        let stage = self.handoffs.stage(tuple)?;
        let is_syn =
            segment.flags.contains(TcpFlags::SYN) && !segment.flags.contains(TcpFlags::ACK);
        if matches!(stage, Stage::Handed(_)) && is_syn {
            // A new connection attempt over a 4-tuple the kernel owned.
            self.handoffs.remove(tuple);
            return None;
        }
        let Some(range) = wire::ip_packet_range(rx) else {
            return Some(self.drop(DropReason::Malformed(Malformed::Ethernet)));
        };
        match stage {
            Stage::Handed(handed) if acknowledges_only_the_handshake(segment, handed) => {
                self.counters.incr(Counter::LateHandshakeAcks);
                Some(Verdict::Consumed)
            }
            Stage::Handed(_) => {
                self.counters.incr(Counter::Reinjected);
                Some(Verdict::Reinject(range))
            }
            Stage::HandingOff if self.handoffs.hold(tuple, &rx[range]) => {
                self.counters.incr(Counter::HeldSegments);
                self.update_gauges();
                Some(Verdict::Consumed)
            }
            Stage::HandingOff => Some(self.drop(DropReason::HeldOverflow)),
        }
    }
}

/// Whether `segment` is a pure ACK (no data, no SYN, FIN or RST) that acknowledges nothing
/// past the handshake of the `handed` connection: its kernel socket learns nothing from it.
fn acknowledges_only_the_handshake(segment: &TcpRepr<'_>, handed: Handed) -> bool {
    segment.flags == TcpFlags::ACK
        && segment.payload.is_empty()
        && segment.ack == handed.our_next_seq
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
