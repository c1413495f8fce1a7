//! A shard: one listener, one frame device and one end of the accept queue, joined by the
//! fast-path loop body [`Shard::poll`]. One shard runs per NIC receive queue, on its own thread;
//! shards share nothing but the accept queue and the key secret.

use std::io;
use std::time::{Duration, Instant};

use crate::accept_queue::{AcceptSender, HandoffReport};
use crate::device::FrameIo;
use crate::listener::{Listener, Verdict};

/// See the module documentation.
pub struct Shard<D> {
    listener: Listener,
    device: D,
    accept: AcceptSender,
    budget: usize,
}

impl<D: FrameIo> Shard<D> {
    /// A shard handling at most `budget` frames per direction in each [`Shard::poll`].
    pub fn new(listener: Listener, device: D, accept: AcceptSender, budget: usize) -> Shard<D> {
        Shard {
            listener,
            device,
            accept,
            budget,
        }
    }

    /// One bounded round: handoff reports (resetting peers whose handoff failed), key rotation, a batch of received frames, due
    /// timers and their retransmissions, then a flush. Returns the frames received.
    /// `unix_time` is the wall-clock time (for key epochs).
    pub fn poll(&mut self, now: Instant, unix_time: Duration) -> io::Result<usize> {
        let Shard {
            listener,
            device,
            accept,
            budget,
        } = self;
        // Handoff reports first: a done one may acknowledge early data, a failed one resets
        // its peer.
        device.transmit(*budget, |tx| {
            loop {
                let verdict = match accept.next_report()? {
                    HandoffReport::Done(accepted) => {
                        listener.handle_handoff_complete(now, &accepted, tx)
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
        listener.rotate_keys(unix_time);
        let received = device.receive(*budget, |rx, tx| {
            let verdict = match listener.handle_frame(now, rx, tx) {
                Verdict::Accepted(accepted) => match accept.try_push(accepted) {
                    Ok(()) => return None,
                    Err(accepted) => listener.handle_accept_overflow(now, accepted, tx),
                },
                verdict => verdict,
            };
            match verdict {
                Verdict::Transmit(len) => Some(len),
                _ => None,
            }
        })?;
        if listener
            .poll_timeout()
            .is_some_and(|deadline| deadline <= now)
        {
            listener.handle_timeout(now);
            device.transmit(*budget, |tx| listener.poll_transmit(tx))?;
            // Staged connections whose delay ran out; one that does not fit may need a RST.
            device.transmit(*budget, |tx| {
                loop {
                    let accepted = listener.poll_accepted()?;
                    if let Err(accepted) = accept.try_push(accepted)
                        && let Verdict::Transmit(len) =
                            listener.handle_accept_overflow(now, accepted, tx)
                    {
                        return Some(len);
                    }
                }
            })?;
        }
        device.flush()?;
        Ok(received)
    }

    /// Sleeps until frames may be ready, a timer is due, or `max` passes.
    pub fn wait(&mut self, now: Instant, max: Duration) -> io::Result<()> {
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
}
