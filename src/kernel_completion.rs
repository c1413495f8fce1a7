//! Handshakes of the SYN queue that the kernel completes itself (native mode), for one shard.
//!
//! When a shard admits a handshake to its SYN queue, it records it for the kernel
//! ([`NativeHandoff::expect`]): the steering program then lets its final ACK through to the
//! kernel's receive path, where the completion program builds the socket in the service's own
//! accept queue, with the data that ACK and the segments right behind it carry. The shard
//! never sees those segments; it learns the outcome from the completion program's reports and
//! retires the handshake from its SYN queue. What the kernel refused completes in user space
//! instead, through the shard's [`crate::handoff::NativeInline`] handoff.
//!
//! Counted: a completed handshake as a completed handoff (and `CompletedInKernel`), a port
//! with no listener as the handoff failure `no_listener` (the kernel resets the client, as it
//! would without synwall), and the rest in [`KernelCompletionCounters`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::handoff::{HandoffCounters, HandoffFailure};
use crate::listener::Listener;
use crate::log_gate::{LOG_EVERY, LogGate};
use crate::sys::native::{EntryBuffers, NativeHandoff, NativeRefusal};

/// What the shard's fast-path loop calls, once per round (see the module documentation).
pub trait KernelCompletion: Send {
    /// Records for the kernel the handshakes `listener` admitted since the last call.
    fn expect(&mut self, now: Instant, listener: &mut Listener);
    /// Retires from `listener`'s SYN queue the handshakes the kernel completed or reset.
    fn retire(&mut self, now: Instant, listener: &mut Listener);
}

/// Outcomes of in-kernel completion that are not a completed or failed handoff, summed over
/// shards (read from any thread).
#[derive(Debug, Default)]
pub struct KernelCompletionCounters {
    /// Final ACKs whose values the kernel refused: completed in user space instead.
    pub refused: AtomicU64,
    /// Final ACKs that met another socket of their tuple (a race): that socket's business.
    pub occupied: AtomicU64,
    /// Admitted handshakes that could not be recorded (the map update failed): their final
    /// ACK comes to user space.
    pub unrecorded: AtomicU64,
}

/// [`KernelCompletion`] through a [`NativeHandoff`], for the shard of one rx queue.
pub struct NativeCompletion {
    native: Arc<NativeHandoff>,
    queue: u32,
    handoffs: Arc<HandoffCounters>,
    counters: Arc<KernelCompletionCounters>,
    buffers: EntryBuffers,
    /// For the lines about records the kernel could not be given.
    logged: LogGate,
}

impl NativeCompletion {
    pub fn new(
        native: Arc<NativeHandoff>,
        queue: u32,
        handoffs: Arc<HandoffCounters>,
        counters: Arc<KernelCompletionCounters>,
    ) -> NativeCompletion {
        NativeCompletion {
            native,
            queue,
            handoffs,
            counters,
            buffers: EntryBuffers::default(),
            logged: LogGate::default(),
        }
    }
}

impl KernelCompletion for NativeCompletion {
    fn expect(&mut self, now: Instant, listener: &mut Listener) {
        let admitted = listener.take_admitted();
        if let Err(error) = self.native.expect(self.queue, admitted, &mut self.buffers) {
            self.counters
                .unrecorded
                .fetch_add(error.count as u64, Ordering::Relaxed);
            if self.logged.pass(now) {
                tracing::warn!(
                    %error,
                    "they complete in user space (logged at most every {} s)",
                    LOG_EVERY.as_secs()
                );
            }
        }
    }

    fn retire(&mut self, now: Instant, listener: &mut Listener) {
        let NativeCompletion {
            native,
            queue,
            handoffs,
            counters,
            ..
        } = self;
        native.take_reports(*queue, |report| match report.outcome {
            Ok(()) => {
                let duration =
                    listener.handle_completed_in_kernel(now, &report.tuple, report.server_isn);
                handoffs.complete_after(duration);
            }
            Err(refusal @ NativeRefusal::NoListener(_)) => {
                listener.handle_reset_by_kernel(&report.tuple, report.server_isn);
                handoffs.fail(HandoffFailure::NoListener, &refusal);
            }
            Err(NativeRefusal::Refused(_)) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                counters.occupied.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}
