//! Connections between the end of their handshake and the moment the kernel owns them.
//!
//! A completed handshake is first *staged*: the client's first request usually arrives a few
//! microseconds after its final ACK, before any kernel socket could exist, and would be lost
//! (costing the client a ~200 ms tail-loss probe). While staged, in-order payload is folded into
//! the connection's early data, which the handoff writes into the kernel socket's receive queue.
//! A connection is *released* to the accept queue when a segment ends a write (PSH or FIN), when
//! its early data would pass the cap, or when the staging delay runs out. Once released it is
//! *handing off* until the worker reports back or the handoff timeout passes; its segments are
//! then dropped (the peer retransmits to the kernel socket) and never taken for new cookie ACKs.
//! Once the kernel owns it, it stays *handed* for [`HANDED_LINGER`]: segments the XDP program
//! steered to us before the kernel socket existed may still wait in the receive ring, and must
//! not be taken for bad cookie ACKs (and reset). A new SYN on a handed 4-tuple starts afresh.
//!
//! Memory: at most `capacity` connections, each an [`Accepted`] with at most the early-data cap,
//! allocated when staged. Handed markers make room for new connections when the table is full.

use std::time::{Duration, Instant};

use super::{Accepted, FourTuple};
use crate::table::TimerTable;

/// How long a connection the kernel owns is remembered: far longer than the receive ring
/// takes to drain.
pub(crate) const HANDED_LINGER: Duration = Duration::from_millis(100);

const STAGED: usize = 0;
const HANDING_OFF: usize = 1;
const HANDED: usize = 2;

pub(crate) enum Pending {
    Staged(Accepted),
    HandingOff,
    Handed,
}

pub(crate) struct Handoffs {
    table: TimerTable<FourTuple, Pending>,
    handoff_timeout: Duration,
    handed: usize,
}

impl Handoffs {
    pub fn new(capacity: usize, handoff_timeout: Duration) -> Handoffs {
        Handoffs {
            table: TimerTable::new(capacity, 3),
            handoff_timeout,
            handed: 0,
        }
    }

    /// Connections staged or being handed off (handed ones are not counted).
    pub fn len(&self) -> usize {
        self.table.len() - self.handed
    }

    pub fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut Pending> {
        self.table.get_mut(tuple)
    }

    /// Stages `accepted` until `deadline`. Hands it back when full.
    #[expect(
        clippy::result_large_err,
        reason = "the connection comes back by value so the overflow path needs no allocation"
    )]
    pub fn stage(&mut self, accepted: Accepted, deadline: Instant) -> Result<(), Accepted> {
        self.make_room();
        let tuple = accepted.tuple;
        self.table
            .insert(tuple, Pending::Staged(accepted), STAGED, deadline)
            .map_err(|pending| match pending {
                Pending::Staged(accepted) => accepted,
                Pending::HandingOff | Pending::Handed => unreachable!("inserted as staged"),
            })
    }

    /// Records that `tuple` is being handed off from `now`. False when full.
    pub fn start(&mut self, tuple: FourTuple, now: Instant) -> bool {
        self.make_room();
        self.table
            .insert(
                tuple,
                Pending::HandingOff,
                HANDING_OFF,
                now + self.handoff_timeout,
            )
            .is_ok()
    }

    /// Moves a staged connection to handing off; returns it for the accept queue.
    pub fn release(&mut self, tuple: &FourTuple, now: Instant) -> Option<Accepted> {
        let pending = self.table.get_mut(tuple)?;
        let Pending::Staged(accepted) = std::mem::replace(pending, Pending::HandingOff) else {
            return None;
        };
        self.table
            .reschedule(tuple, HANDING_OFF, now + self.handoff_timeout);
        Some(accepted)
    }

    /// The next staged connection whose delay ran out by `now`, released.
    pub fn next_released(&mut self, now: Instant) -> Option<Accepted> {
        let (tuple, _, _) = self.table.due(now, STAGED..STAGED + 1)?;
        self.release(&tuple, now)
    }

    /// The kernel owns `tuple` from `now`: remembered as handed for [`HANDED_LINGER`].
    pub fn finish(&mut self, tuple: &FourTuple, now: Instant) {
        let Some(pending) = self.table.get_mut(tuple) else {
            return;
        };
        if !matches!(pending, Pending::Handed) {
            *pending = Pending::Handed;
            self.handed += 1;
        }
        self.table.reschedule(tuple, HANDED, now + HANDED_LINGER);
    }

    /// Forgets handed connections whose linger ended by `now`; removes and returns the next
    /// handoff that timed out by `now` without a report.
    pub fn next_expired(&mut self, now: Instant) -> Option<FourTuple> {
        while let Some((tuple, _, _)) = self.table.due(now, HANDED..HANDED + 1) {
            self.remove(&tuple);
        }
        let (tuple, _, _) = self.table.due(now, HANDING_OFF..HANDING_OFF + 1)?;
        self.table.remove(&tuple);
        Some(tuple)
    }

    pub fn remove(&mut self, tuple: &FourTuple) {
        if let Some(Pending::Handed) = self.table.remove(tuple) {
            self.handed -= 1;
        }
    }

    /// When full, forgets the oldest handed connection: they only guard against stale frames.
    fn make_room(&mut self) {
        if self.table.is_full()
            && let Some(oldest) = self.table.first(HANDED)
        {
            self.remove(&oldest);
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }
}
