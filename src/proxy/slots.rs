//! The connection limit (`max_connections`) as tokens on a channel.

use std::sync::{Mutex, PoisonError};

use crossbeam_channel::{Receiver, Sender};

use crate::shutdown::Shutdown;

/// Connections open at once, at most: one token per free slot in a channel, so that the
/// accept loop waits for a slot and for the shutdown signal together. A lower limit (a reload)
/// takes free tokens back at once and the rest as connections close.
pub(super) struct Slots {
    give: Sender<()>,
    free: Receiver<()>,
    limit: Mutex<Limit>,
}

pub(super) struct Limit {
    limit: usize,
    /// Tokens to withhold from slots released from now on (after a lower limit).
    owed: usize,
}

impl Slots {
    pub(super) fn new(limit: usize) -> Slots {
        let (give, free) = crossbeam_channel::unbounded();
        let slots = Slots {
            give,
            free,
            limit: Mutex::new(Limit { limit: 0, owed: 0 }),
        };
        slots.set_limit(limit);
        slots
    }

    /// Takes a slot, waiting for one as long as it takes; false on `shutdown`.
    pub(super) fn acquire(&self, shutdown: &Shutdown) -> bool {
        crossbeam_channel::select! {
            recv(self.free) -> token => token.is_ok(),
            recv(shutdown.signal()) -> _ => false,
        }
    }

    /// Whether a slot is free now.
    pub(super) fn any_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a slot if one is free.
    pub(super) fn try_acquire(&self) -> bool {
        self.free.try_recv().is_ok()
    }

    pub(super) fn release(&self) {
        let mut limit = self.limit.lock().unwrap_or_else(PoisonError::into_inner);
        if limit.owed > 0 {
            limit.owed -= 1;
        } else {
            let _ = self.give.send(());
        }
    }

    pub(super) fn set_limit(&self, new: usize) {
        let mut limit = self.limit.lock().unwrap_or_else(PoisonError::into_inner);
        if new >= limit.limit {
            let more = new - limit.limit;
            let repaid = more.min(limit.owed);
            limit.owed -= repaid;
            for _ in repaid..more {
                let _ = self.give.send(());
            }
        } else {
            limit.owed += limit.limit - new;
            while limit.owed > 0 && self.free.try_recv().is_ok() {
                limit.owed -= 1;
            }
        }
        limit.limit = new;
    }

    /// Slots taken now.
    #[cfg(test)]
    pub(super) fn taken(&self) -> usize {
        let limit = self.limit.lock().unwrap_or_else(PoisonError::into_inner);
        limit.limit + limit.owed - self.free.len()
    }
}
