//! The SYN queue: half-open connections with their SYN-ACK retransmission timers.
//!
//! An entry waits in timer list `k` for its `k+1`-th retransmission, `2^k` seconds after the
//! previous SYN-ACK (1, 2, 4, 8, 16 s for the default 5 retries); list `retries` holds entries
//! waiting to expire, 2^retries seconds after the last retransmission (63 s after the first
//! SYN-ACK by default). Capacity and memory are fixed at creation (see [`crate::table`]).

use std::time::{Duration, Instant};

use crate::cookie::SynOptions;
use crate::seq::SeqNumber;
use crate::table::{KeyHasher, TimerTable};
use crate::wire::FourTuple;
use crate::wire::LinkAddrs;

use super::HashedTuple;

/// The first retransmission timeout (RFC 6298 §2.1).
const INITIAL_RTO: Duration = Duration::from_secs(1);

/// What a SYN asked for and we agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Offer {
    /// The client's MSS (its option, or the default of its address family).
    pub client_mss: u16,
    /// The client's window-scale shift, when both sides scale.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// The client's TSval, when both sides use timestamps.
    pub peer_tsval: Option<u32>,
    pub ecn: bool,
}

impl Offer {
    /// The options a cookie carries for this offer: `None` without timestamps.
    pub fn cookie_options(&self) -> Option<SynOptions> {
        self.peer_tsval.map(|_| self.syn_options())
    }

    /// The option bits our TSval carries.
    pub fn syn_options(&self) -> SynOptions {
        SynOptions {
            window_scale: self.window_scale,
            sack_permitted: self.sack_permitted,
            ecn: self.ecn,
        }
    }

    /// What a stateless SYN-ACK can promise: without timestamps, no option survives to the ACK.
    pub fn stateless(self) -> Offer {
        if self.peer_tsval.is_some() {
            self
        } else {
            Offer {
                window_scale: None,
                sack_permitted: false,
                ecn: false,
                ..self
            }
        }
    }
}

/// A half-open connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HalfOpen {
    /// The link addresses of the SYN.
    pub link: LinkAddrs,
    pub client_isn: SeqNumber,
    pub server_isn: SeqNumber,
    pub offer: Offer,
    pub syn_at: Instant,
}

pub(crate) struct SynQueue {
    table: TimerTable<FourTuple, HalfOpen>,
    retries: usize,
}

impl SynQueue {
    pub fn new(capacity: usize, retries: u8, hasher: KeyHasher) -> SynQueue {
        let retries = usize::from(retries);
        SynQueue {
            table: TimerTable::new(capacity, retries + 1, hasher),
            retries,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_full(&self) -> bool {
        self.table.is_full()
    }

    pub fn allocated_bytes(&self) -> usize {
        self.table.allocated_bytes()
    }

    pub fn get(&self, tuple: &HashedTuple) -> Option<&HalfOpen> {
        self.table.get(tuple)
    }

    pub fn remove(&mut self, tuple: &HashedTuple) -> Option<HalfOpen> {
        self.table.remove(tuple)
    }

    /// Admits a connection whose SYN-ACK goes out at `now`. Hands it back when full.
    pub fn admit(
        &mut self,
        tuple: &HashedTuple,
        entry: HalfOpen,
        now: Instant,
    ) -> Result<(), HalfOpen> {
        self.table.insert(tuple, entry, 0, now + INITIAL_RTO)
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.table.next_deadline()
    }

    /// The next connection due for a SYN-ACK retransmission at `now`; its timer moves on.
    pub fn next_retransmit(&mut self, now: Instant) -> Option<(FourTuple, &HalfOpen)> {
        let (tuple, _, list) = self.table.due(now, 0..self.retries)?;
        let deadline = self.table.deadline(&tuple)? + INITIAL_RTO * (2u32 << list);
        self.table.reschedule(&tuple, list + 1, deadline);
        Some((*tuple.key(), self.table.get(&tuple)?))
    }

    /// Removes and returns the next connection whose last SYN-ACK went unanswered.
    pub fn next_expired(&mut self, now: Instant) -> Option<HalfOpen> {
        let (tuple, _, _) = self.table.due(now, self.retries..self.retries + 1)?;
        self.table.remove(&tuple)
    }
}
