//! A shard: one listener, one frame device, a way to the local kernel stack and a way to hand
//! completed handshakes to the kernel (one end of the accept queue, or an [`InlineHandoff`]
//! done at once), and in native mode a [`KernelCompletion`] through which the kernel completes
//! the handshakes of the SYN queue itself, joined by the fast-path loop body [`Shard::poll`]. One shard runs per NIC
//! receive queue, on its own thread; shards share nothing but the accept queue and the key
//! secret.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accept_queue::{AcceptSender, HandoffReport};
use crate::counters::{Counter, Counters};
use crate::device::{FrameIo, LocalDelivery};
use crate::handoff::InlineHandoff;
use crate::kernel_completion::KernelCompletion;
use crate::listener::{Listener, Verdict};

/// The longest a handshake the kernel completed waits to leave the SYN queue (and be counted)
/// when the shard has nothing else to do: the kernel's reports do not wake it, so that a busy
/// peacetime costs no wake-up per connection.
pub const RETIRE_EVERY: Duration = Duration::from_millis(5);

/// See the module documentation.
pub struct Shard<D, L> {
    listener: Listener,
    device: D,
    local: Local<L>,
    accept: AcceptSender,
    /// When set, completed handshakes go to the kernel through it at once, not to `accept`.
    inline: Option<Box<dyn InlineHandoff>>,
    /// When set, the kernel completes the handshakes of the SYN queue itself.
    kernel: Option<Box<dyn KernelCompletion>>,
    budget: usize,
}

/// The local kernel stack, and the count of what could not be delivered to it.
struct Local<L> {
    delivery: L,
    counters: Arc<Counters>,
}

impl<L: LocalDelivery> Local<L> {
    fn deliver(&mut self, packet: &[u8]) {
        if let Err(error) = self.delivery.deliver(packet) {
            self.counters.incr(Counter::ReinjectFailures);
            tracing::debug!(%error, "a held segment could not reach the kernel");
        }
    }

    /// Delivers `packets` in their order.
    fn deliver_all(&mut self, packets: &[Vec<u8>]) {
        for packet in packets {
            self.deliver(packet);
        }
    }
}

impl<D: FrameIo, L: LocalDelivery> Shard<D, L> {
    /// A shard handling at most `budget` frames per direction in each [`Shard::poll`].
    pub fn new(
        listener: Listener,
        device: D,
        delivery: L,
        accept: AcceptSender,
        budget: usize,
    ) -> Shard<D, L> {
        let local = Local {
            delivery,
            counters: listener.counters(),
        };
        Shard {
            listener,
            device,
            local,
            accept,
            inline: None,
            kernel: None,
            budget,
        }
    }

    /// Hands completed handshakes to the kernel through `inline`, at once, instead of through
    /// the accept queue.
    pub fn with_inline_handoff(mut self, inline: Box<dyn InlineHandoff>) -> Shard<D, L> {
        self.inline = Some(inline);
        self
    }

    /// Lets the kernel complete the handshakes of the SYN queue itself, through `kernel`.
    pub fn with_kernel_completion(mut self, kernel: Box<dyn KernelCompletion>) -> Shard<D, L> {
        self.listener.record_admissions();
        self.kernel = Some(kernel);
        self
    }

    /// One bounded round: key rotation, the handshakes the kernel completed (with
    /// [`Shard::with_kernel_completion`]), a batch of received frames (recording for the kernel
    /// the handshakes admitted meanwhile, before their SYN-ACKs leave), handoff reports
    /// (delivering held segments to new kernel sockets, acknowledging early data, resetting
    /// peers whose handoff failed), due timers and their retransmissions, then a flush. The
    /// frames come first: a segment already waiting in the ring when its connection's report
    /// is read is held and delivered with the others, in order, before the shield drops.
    /// Returns the frames received. `unix_time` is the wall-clock time (for key epochs).
    pub fn poll(&mut self, now: Instant, unix_time: Duration) -> io::Result<usize> {
        let Shard {
            listener,
            device,
            local,
            accept,
            inline,
            kernel,
            budget,
        } = self;
        listener.rotate_keys(unix_time);
        if let Some(kernel) = kernel.as_mut() {
            kernel.retire(now, listener);
        }
        let received = device.receive_batches(*budget, |frames, lender| {
            listener.handle_batch(now, frames, |batch| {
                for (index, rx) in frames.iter().enumerate() {
                    lender.lend(&mut |tx| {
                        // Handed off inline, the connection is borrowed where the listener
                        // wrote it: moved out of the verdict, its bytes would be read back
                        // whole right after their narrow stores (a store-forwarding stall).
                        let verdict = match (batch.handle(index, tx), inline.as_mut()) {
                            (Verdict::Accepted(ref accepted), Some(inline)) => {
                                if !inline.hand_off(accepted) {
                                    batch.handle_handoff_failed(accepted, tx)
                                } else {
                                    // The kernel acknowledges the early data itself.
                                    let done = batch.handle_handoff_complete(accepted, false, tx);
                                    local.deliver_all(&done.reinject);
                                    done.ack
                                }
                            }
                            (Verdict::Accepted(accepted), None) => {
                                match accept.try_push(accepted) {
                                    Ok(()) => return None,
                                    Err(accepted) => batch.handle_accept_overflow(accepted, tx),
                                }
                            }
                            (verdict, _) => verdict,
                        };
                        match verdict {
                            Verdict::Transmit(len) => Some(len),
                            Verdict::Reinject(range) => {
                                local.deliver(&rx[range]);
                                None
                            }
                            _ => None,
                        }
                    });
                }
            })
        })?;
        if let Some(kernel) = kernel.as_mut() {
            kernel.expect(now, listener);
        }
        device.transmit(*budget, |tx| {
            loop {
                let verdict = match accept.next_report()? {
                    HandoffReport::Done {
                        accepted,
                        ack_early_data,
                        shield,
                    } => {
                        let done =
                            listener.handle_handoff_complete(now, &accepted, ack_early_data, tx);
                        local.deliver_all(&done.reinject);
                        // Only now may later segments reach the kernel socket directly: they
                        // would otherwise overtake the held ones.
                        drop(shield);
                        done.ack
                    }
                    HandoffReport::Failed(accepted) => {
                        listener.handle_handoff_failed(&accepted, tx)
                    }
                };
                if let Verdict::Transmit(len) = verdict {
                    return Some(len);
                }
            }
        })?;
        if listener
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            listener.handle_timeout(now);
            device.transmit(*budget, |tx| listener.poll_transmit(tx))?;
        }
        device.flush()?;
        Ok(received)
    }

    /// Sleeps until frames may be ready, a timer is due, or `max` passes; at most
    /// [`RETIRE_EVERY`] while the kernel may be completing handshakes of the SYN queue.
    pub fn wait(&mut self, now: Instant, max: Duration) -> io::Result<()> {
        let max = if self.kernel.is_some() && self.listener.syn_queue_len() > 0 {
            max.min(RETIRE_EVERY)
        } else {
            max
        };
        let until_timer = self
            .listener
            .poll_timeout()
            .map_or(max, |deadline| deadline.saturating_duration_since(now));
        self.device.wait(until_timer.min(max)).map(|_| ())
    }

    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    pub fn listener_mut(&mut self) -> &mut Listener {
        &mut self.listener
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// What the shard delivered to the local kernel stack (for in-memory deliveries).
    pub fn delivery_mut(&mut self) -> &mut L {
        &mut self.local.delivery
    }
}
