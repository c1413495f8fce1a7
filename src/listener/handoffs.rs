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
//!
//! Memory: at most `capacity` connections, each an [`Accepted`] with at most the early-data cap,
//! allocated when staged.

use std::time::{Duration, Instant};

use super::{Accepted, FourTuple};
use crate::table::TimerTable;

const STAGED: usize = 0;
const HANDING_OFF: usize = 1;

pub(crate) enum Pending {
    Staged(Accepted),
    HandingOff,
}

pub(crate) struct Handoffs {
    table: TimerTable<FourTuple, Pending>,
    handoff_timeout: Duration,
}

impl Handoffs {
    pub fn new(capacity: usize, handoff_timeout: Duration) -> Handoffs {
        Handoffs {
            table: TimerTable::new(capacity, 2),
            handoff_timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn contains(&self, tuple: &FourTuple) -> bool {
        self.table.contains(tuple)
    }

    pub fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut Pending> {
        self.table.get_mut(tuple)
    }

    /// Stages `accepted` until `deadline`. Hands it back when full.
    pub fn stage(&mut self, accepted: Accepted, deadline: Instant) -> Result<(), Accepted> {
        let tuple = accepted.tuple;
        self.table
            .insert(tuple, Pending::Staged(accepted), STAGED, deadline)
            .map_err(|pending| match pending {
                Pending::Staged(accepted) => accepted,
                Pending::HandingOff => unreachable!("inserted as staged"),
            })
    }

    /// Records that `tuple` is being handed off from `now`. False when full.
    pub fn start(&mut self, tuple: FourTuple, now: Instant) -> bool {
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

    /// Removes and returns the next handoff that timed out by `now`.
    pub fn next_expired(&mut self, now: Instant) -> Option<FourTuple> {
        let (tuple, _, _) = self.table.due(now, HANDING_OFF..HANDING_OFF + 1)?;
        self.table.remove(&tuple);
        Some(tuple)
    }

    pub fn remove(&mut self, tuple: &FourTuple) {
        self.table.remove(tuple);
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }
}
