//! Handshakes the kernel completes itself (native mode): a driver whose kernel can take the
//! final ACK of a queued handshake straight from the wire records each handshake admitted to
//! the SYN queue ([`Listener::record_admissions`], [`Listener::take_admitted`]), so that the
//! final ACK never reaches the listener, and then reports what the kernel did with it:
//! [`Listener::handle_completed_in_kernel`] or [`Listener::handle_reset_by_kernel`]. A
//! handshake the kernel refused stays queued: its next segment completes it here.

use std::time::{Duration, Instant};

use crate::counters::Counter;
use crate::wire::{FourTuple, Timestamps};

use super::syn_queue::HalfOpen;
use super::{Accepted, HandshakePath, HashedTuple, Listener, WindowScale};

impl Listener {
    /// From now on, keeps each handshake admitted to the SYN queue for
    /// [`Listener::take_admitted`], which must then be called after every batch of frames: at
    /// most as many as the SYN queue holds are kept.
    pub fn record_admissions(&mut self) {
        self.admitted.get_or_insert_with(Vec::new);
    }

    /// The handshakes admitted to the SYN queue since the last call, oldest first, each as the
    /// [`Accepted`] its expected final ACK would make: no data, its timestamps those of the SYN
    /// (`value`) and of our SYN-ACK (`echo`). Empty unless recording.
    pub fn take_admitted(&mut self) -> impl Iterator<Item = Accepted> + '_ {
        self.admitted
            .iter_mut()
            .flat_map(|admitted| admitted.drain(..))
    }

    /// Called by the SYN path for each admission.
    pub(super) fn record_admission(
        &mut self,
        tuple: FourTuple,
        entry: &HalfOpen,
        our_tsval: Option<u32>,
    ) {
        let capacity = self.config.max_syn_backlog;
        let Some(admitted) = self.admitted.as_mut().filter(|a| a.len() < capacity) else {
            return;
        };
        let offer = &entry.offer;
        admitted.push(Accepted {
            tuple,
            link: entry.link,
            path: HandshakePath::Queue,
            client_isn: entry.client_isn,
            server_isn: entry.server_isn,
            mss: offer.client_mss,
            window_scale: offer.window_scale.map(|send| WindowScale {
                send,
                receive: self.config.window_scale,
            }),
            sack_permitted: offer.sack_permitted,
            timestamps: offer
                .peer_tsval
                .zip(our_tsval)
                .map(|(value, echo)| Timestamps { value, echo }),
            ecn: offer.ecn,
            peer_window: 0,
            receive_window: self.config.receive_window,
            early_data: Vec::new(),
            handshake_duration: None,
        });
    }

    /// The kernel built the socket of queued handshake `tuple` whose SYN-ACK carried
    /// `server_isn` (our ISN): the entry leaves the SYN queue. Returns the time from its SYN,
    /// or `None` when no such entry is queued (it expired, or a newer SYN replaced it). A
    /// repeated call does nothing.
    pub fn handle_completed_in_kernel(
        &mut self,
        now: Instant,
        tuple: &FourTuple,
        server_isn: u32,
    ) -> Option<Duration> {
        let entry = self.take_queued(tuple, server_isn)?;
        self.counters.incr(Counter::AcceptedFromQueue);
        self.counters.incr(Counter::CompletedInKernel);
        Some(now.saturating_duration_since(entry.syn_at))
    }

    /// The kernel answered the final ACK of queued handshake `tuple` with a RST (nothing
    /// listens on its port): the entry leaves the SYN queue. Returns whether it was queued. A
    /// repeated call does nothing.
    pub fn handle_reset_by_kernel(&mut self, tuple: &FourTuple, server_isn: u32) -> bool {
        self.take_queued(tuple, server_isn).is_some()
    }

    fn take_queued(&mut self, tuple: &FourTuple, server_isn: u32) -> Option<HalfOpen> {
        let tuple = HashedTuple::new(*tuple);
        if self.queue.get(&tuple)?.server_isn.0 != server_isn {
            return None;
        }
        let entry = self.queue.remove(&tuple);
        self.update_gauges();
        entry
    }
}
