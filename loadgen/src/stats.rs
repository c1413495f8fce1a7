//! Counters shared between the flood workers, the sniffer and the reporter.
//!
//! Each worker owns one cache-line-aligned slot and publishes its running totals into it once
//! per batch (plain relaxed stores: one writer per slot); the reporter sums the slots. Nothing
//! here is on the per-packet path.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::mix::KIND_COUNT;

/// Packets per kind.
pub type PerKind = [u64; KIND_COUNT];

/// One worker's published totals, alone on its cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct WorkerSlot {
    sent: [AtomicU64; KIND_COUNT],
}

impl WorkerSlot {
    /// Publishes the worker's totals; only the owning worker calls this.
    pub fn publish(&self, totals: &PerKind) {
        for (slot, total) in self.sent.iter().zip(totals) {
            slot.store(*total, Ordering::Relaxed);
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Counters {
    workers: Box<[WorkerSlot]>,
    /// SYN-ACKs from the target to a spoofed source.
    pub syn_acks_seen: AtomicU64,
    /// RSTs from the target to a spoofed source.
    pub rsts_seen: AtomicU64,
    /// SYN-ACKs dropped because the harvest queue was full.
    pub harvest_dropped: AtomicU64,
}

impl Counters {
    /// Counters for `workers` workers.
    pub fn new(workers: usize) -> Counters {
        Counters {
            workers: (0..workers).map(|_| WorkerSlot::default()).collect(),
            syn_acks_seen: AtomicU64::new(0),
            rsts_seen: AtomicU64::new(0),
            harvest_dropped: AtomicU64::new(0),
        }
    }

    /// Worker `index`'s slot.
    pub fn worker(&self, index: usize) -> &WorkerSlot {
        &self.workers[index]
    }

    /// Packets sent per kind, all workers together.
    pub fn sent(&self) -> PerKind {
        let mut sum = [0; KIND_COUNT];
        for worker in &self.workers {
            for (total, slot) in sum.iter_mut().zip(&worker.sent) {
                *total += slot.load(Ordering::Relaxed);
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_sums_workers() {
        let counters = Counters::new(2);
        counters.worker(0).publish(&[1, 2, 3, 4, 5]);
        counters.worker(1).publish(&[10, 0, 0, 0, 1]);
        counters.worker(0).publish(&[2, 2, 3, 4, 5]);
        assert_eq!(counters.sent(), [12, 2, 3, 4, 6]);
    }
}
