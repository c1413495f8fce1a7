//! Connections between the end of their handshake and the moment the kernel owns them.
//!
//! A completed handshake goes to the accept queue at once and is *handing off* until the worker
//! reports back (or the handoff timeout passes). Segments of it that reach us meanwhile (the
//! request that follows the final ACK within microseconds, a FIN, a RST) are *held*: copied,
//! and once the kernel socket exists, re-injected into the local kernel stack, which processes
//! them as if they had just arrived. Once the kernel owns the connection it stays *handed* for
//! [`HANDED_LINGER`]: segments the XDP program steered to us before the socket existed may still
//! wait in the receive ring; they are re-injected at once, never taken for bad cookie ACKs.
//! The connection's later segments may have reached the socket directly meanwhile, so a late
//! one that tells the socket nothing (a pure ACK of the handshake) is dropped instead: the
//! socket would take it for an old duplicate and answer it, and a TIME-WAIT socket whose peer
//! has closed would be reset by the peer's reply.
//!
//! Memory: at most `capacity` connections and `max_held_bytes` of held segments in all; beyond
//! that, segments are dropped and counted (the peer retransmits them to the kernel socket).
//! Handed markers make room for new connections when the table is full.

use std::time::{Duration, Instant};

use crate::seq::SeqNumber;
use crate::table::{KeyHasher, TimerTable};
use crate::wire::FourTuple;

use super::HashedTuple;

/// How long a connection the kernel owns is remembered: far longer than the receive ring
/// takes to drain.
pub(crate) const HANDED_LINGER: Duration = Duration::from_millis(100);

const HANDING_OFF: usize = 0;
const HANDED: usize = 1;

enum Pending {
    /// Being handed off, with the IP packets held for the kernel socket.
    HandingOff(Vec<Vec<u8>>),
    Handed(Handed),
}

/// A connection the kernel owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Handed {
    /// The first sequence number we sent after the handshake: a peer's ACK of it
    /// acknowledges the handshake only.
    pub our_next_seq: SeqNumber,
}

/// Where a pending connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    HandingOff,
    Handed(Handed),
}

pub(crate) struct Handoffs {
    table: TimerTable<FourTuple, Pending>,
    handoff_timeout: Duration,
    handed: usize,
    held_bytes: usize,
    max_held_bytes: usize,
}

impl Handoffs {
    pub fn new(
        capacity: usize,
        handoff_timeout: Duration,
        max_held_bytes: usize,
        hasher: KeyHasher,
    ) -> Handoffs {
        Handoffs {
            table: TimerTable::new(capacity, 2, hasher),
            handoff_timeout,
            handed: 0,
            held_bytes: 0,
            max_held_bytes,
        }
    }

    /// Connections being handed off (handed ones are not counted).
    pub fn len(&self) -> usize {
        self.table.len() - self.handed
    }

    /// Bytes of segments held for kernel sockets not yet made.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    pub fn stage(&self, tuple: &HashedTuple) -> Option<Stage> {
        Some(match self.table.get(tuple)? {
            Pending::HandingOff(_) => Stage::HandingOff,
            Pending::Handed(handed) => Stage::Handed(*handed),
        })
    }

    /// Records that `tuple` is being handed off from `now`. False when full.
    pub fn start(&mut self, tuple: &HashedTuple, now: Instant) -> bool {
        self.make_room();
        self.table
            .insert(
                tuple,
                Pending::HandingOff(Vec::new()),
                HANDING_OFF,
                now + self.handoff_timeout,
            )
            .is_ok()
    }

    /// Keeps a copy of `packet` for `tuple`'s kernel socket. False when `tuple` is not being
    /// handed off or the held bytes would pass their bound.
    pub fn hold(&mut self, tuple: &HashedTuple, packet: &[u8]) -> bool {
        if self.held_bytes + packet.len() > self.max_held_bytes {
            return false;
        }
        let Some(Pending::HandingOff(held)) = self.table.get_mut(tuple) else {
            return false;
        };
        held.push(packet.to_vec());
        self.held_bytes += packet.len();
        true
    }

    /// The kernel owns `tuple` from `now`: remembered as `handed` for [`HANDED_LINGER`].
    /// Returns the packets held for it, in arrival order; `None` when `tuple` was not being
    /// handed off (unknown, expired, or finished already).
    pub fn finish(
        &mut self,
        tuple: &HashedTuple,
        handed: Handed,
        now: Instant,
    ) -> Option<Vec<Vec<u8>>> {
        let pending = self.table.get_mut(tuple)?;
        let Pending::HandingOff(held) = pending else {
            return None;
        };
        let held = std::mem::take(held);
        *pending = Pending::Handed(handed);
        self.handed += 1;
        self.release(&held);
        self.table.reschedule(tuple, HANDED, now + HANDED_LINGER);
        Some(held)
    }

    /// Forgets handed connections whose linger ended by `now`; removes and returns the next
    /// handoff that timed out by `now` without a report.
    pub fn next_expired(&mut self, now: Instant) -> Option<FourTuple> {
        while let Some((tuple, _, _)) = self.table.due(now, HANDED..HANDED + 1) {
            self.remove(&tuple);
        }
        let (tuple, _, _) = self.table.due(now, HANDING_OFF..HANDING_OFF + 1)?;
        self.remove(&tuple);
        Some(*tuple.key())
    }

    /// Takes `held`'s bytes off the held total.
    fn release(&mut self, held: &[Vec<u8>]) {
        self.held_bytes -= held.iter().map(Vec::len).sum::<usize>();
    }

    /// Forgets `tuple` and whatever was held for it.
    pub fn remove(&mut self, tuple: &HashedTuple) {
        match self.table.remove(tuple) {
            Some(Pending::Handed(_)) => self.handed -= 1,
            Some(Pending::HandingOff(held)) => self.release(&held),
            None => {}
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// When full, forgets the oldest handed connection: they only guard against stale frames.
    fn make_room(&mut self) {
        if self.table.is_full()
            && let Some(oldest) = self.table.first(HANDED)
        {
            self.remove(&oldest);
        }
    }
}
