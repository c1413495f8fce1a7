//! The accept queue: completed handshakes waiting for a worker, and the workers' reports that
//! the kernel now owns a connection.
//!
//! Bounded by the backlog (like `listen(2)`'s): at most `backlog` [`Handshake`]s wait, each
//! an [`Accepted`] (about 200 bytes plus its early data, at most one MSS). A push into a full
//! queue fails and hands the connection back, so the shard applies the overflow policy
//! ([`crate::listener::Listener::handle_accept_overflow`]). Every shard pushes into the same
//! queue through its own [`AcceptSender`], which also receives the handoff reports for the
//! connections it accepted, and wakes the shard's thread with each report (see
//! [`AcceptSender::set_waker`]): segments held for a connection go to its kernel socket as soon
//! as it exists, not when the shard's idle wait ends.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};

use crate::device::Wake;
use crate::listener::Accepted;
use crate::shutdown::Shutdown;
use crate::sys::HandoffShield;

/// A completed handshake waiting for a worker.
pub struct Handshake {
    pub accepted: Accepted,
    reports: Reports,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("accepted", &self.accepted)
            .finish_non_exhaustive()
    }
}

/// The way back to the accepting shard.
#[derive(Clone)]
struct Reports {
    sender: Sender<HandoffReport>,
    waker: Option<Arc<dyn Wake>>,
}

/// What became of a handoff, told to the shard that accepted the connection.
#[derive(Debug)]
pub enum HandoffReport {
    /// The kernel owns the connection. With `ack_early_data`, the shard tells the peer about
    /// the early data the kernel socket took (a repaired socket does not; a natively built one
    /// acknowledges it itself). The shard re-injects the segments it held, then drops
    /// `shield`, so the connection's later segments go to the kernel socket directly.
    Done {
        accepted: Accepted,
        ack_early_data: bool,
        shield: Option<HandoffShield>,
    },
    /// No kernel socket could be made: the shard resets the peer.
    Failed(Accepted),
}

impl Handshake {
    /// Tells the accepting shard that the kernel owns the connection now (see
    /// [`HandoffReport::Done`]). A report that does not fit is dropped, and `shield` with it:
    /// the shard's handoff marker then expires on its own.
    pub fn report_handed_off(self, ack_early_data: bool, shield: Option<HandoffShield>) {
        let Handshake { accepted, reports } = self;
        reports.send(HandoffReport::Done {
            accepted,
            ack_early_data,
            shield,
        });
    }

    /// Tells the accepting shard that the handoff failed, so that it resets the peer instead of
    /// leaving it half-open. If the report does not fit, the shard's handoff marker expires
    /// after `handoff_timeout` and the peer's later segments are then handled as new ACKs.
    pub fn report_failed(self) {
        let Handshake { accepted, reports } = self;
        reports.send(HandoffReport::Failed(accepted));
    }
}

impl Reports {
    fn send(&self, report: HandoffReport) {
        if self.sender.try_send(report).is_ok()
            && let Some(waker) = &self.waker
        {
            waker.wake();
        }
    }
}

/// The queue; make one sender per shard and clone the receiver for every worker.
pub struct AcceptQueue {
    sender: Sender<Handshake>,
    receiver: Receiver<Handshake>,
}

impl AcceptQueue {
    /// A queue of at most `backlog` handshakes.
    pub fn new(backlog: usize) -> AcceptQueue {
        let (sender, receiver) = crossbeam_channel::bounded(backlog);
        AcceptQueue { sender, receiver }
    }

    /// A sender for one shard, with room for `max_reports` handoff reports.
    pub fn sender(&self, max_reports: usize) -> AcceptSender {
        let (sender, reports) = crossbeam_channel::bounded(max_reports);
        AcceptSender {
            queue: self.sender.clone(),
            report_sender: Reports {
                sender,
                waker: None,
            },
            reports,
        }
    }

    pub fn receiver(&self) -> AcceptReceiver {
        AcceptReceiver(self.receiver.clone())
    }
}

/// One shard's end of the accept queue.
pub struct AcceptSender {
    queue: Sender<Handshake>,
    report_sender: Reports,
    reports: Receiver<HandoffReport>,
}

impl AcceptSender {
    /// Every report from now on also wakes the shard's thread through `waker`.
    pub fn set_waker(&mut self, waker: Arc<dyn Wake>) {
        self.report_sender.waker = Some(waker);
    }

    /// Queues a handshake; hands it back if the queue is full (or no worker is left).
    #[expect(
        clippy::result_large_err,
        reason = "the connection comes back by value so the overflow path needs no allocation"
    )]
    pub fn try_push(&self, accepted: Accepted) -> Result<(), Accepted> {
        let handshake = Handshake {
            accepted,
            reports: self.report_sender.clone(),
        };
        self.queue.try_send(handshake).map_err(|error| match error {
            TrySendError::Full(handshake) | TrySendError::Disconnected(handshake) => {
                handshake.accepted
            }
        })
    }

    /// The next handoff report for this shard's connections, if any.
    pub fn next_report(&self) -> Option<HandoffReport> {
        self.reports.try_recv().ok()
    }
}

/// What [`AcceptReceiver::pop`] found.
#[derive(Debug)]
pub enum Pop {
    Handshake(Handshake),
    Timeout,
    /// Every shard is gone and the queue is empty.
    Closed,
}

/// A worker's end of the accept queue.
#[derive(Clone)]
pub struct AcceptReceiver(Receiver<Handshake>);

impl AcceptReceiver {
    /// The next handshake, waiting as long as it takes; `None` once the queue has closed or
    /// `shutdown` has been triggered (either wakes the wait at once).
    pub fn pop_until(&self, shutdown: &Shutdown) -> Option<Handshake> {
        crossbeam_channel::select! {
            recv(self.0) -> handshake => handshake.ok(),
            recv(shutdown.signal()) -> _ => None,
        }
    }

    /// The next handshake, waiting up to `timeout` (a zero timeout reads no clock).
    pub fn pop(&self, timeout: Duration) -> Pop {
        if timeout.is_zero() {
            return match self.0.try_recv() {
                Ok(handshake) => Pop::Handshake(handshake),
                Err(TryRecvError::Empty) => Pop::Timeout,
                Err(TryRecvError::Disconnected) => Pop::Closed,
            };
        }
        match self.0.recv_timeout(timeout) {
            Ok(handshake) => Pop::Handshake(handshake),
            Err(RecvTimeoutError::Timeout) => Pop::Timeout,
            Err(RecvTimeoutError::Disconnected) => Pop::Closed,
        }
    }

    pub fn depth(&self) -> usize {
        self.0.len()
    }
}
