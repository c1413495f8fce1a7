//! Frame devices: the narrow, batched I/O boundary between the sans-IO listener and a NIC.
//!
//! A [`FrameIo`] hands received Ethernet frames to a callback a batch at a time, with a
//! [`TxLender`] that lends a buffer for at most one reply per frame, and sends frames produced
//! by another callback. Frames are only borrowed for the duration of a callback, so a frame is
//! always owned in exactly one place: the device.
//!
//! Implementations:
//! - [`memory::MemoryDevice`]: an in-memory device for tests, simulations and benchmarks.
//! - the AF_XDP device (see `crate::sys`), the production fast path.
//!
//! A [`LocalDelivery`] takes IP packets to the local kernel stack: segments of connections the
//! kernel owns that reached user space first ([`crate::sys::inject::RawInjector`], or
//! [`memory::MemoryDelivery`] in tests).

pub mod memory;

use std::io;
use std::time::Duration;

/// The smallest transmit buffer a device hands out. It fits every frame synwall emits
/// (Ethernet + one VLAN tag + IPv6 + TCP with 40 bytes of options is 118 bytes) and leaves
/// room for the payload of a loadgen data segment.
pub const MIN_TX_FRAME: usize = 2048;

/// A batched frame device.
///
/// Every method is bounded: at most `budget` frames per call, never blocking except in
/// [`FrameIo::wait`].
pub trait FrameIo {
    /// Receives up to `budget` frames, in batches of at most [`MAX_RX_BATCH`]. For each batch,
    /// calls `on_batch(frames, tx)`; the callback may lend one reply buffer per frame from `tx`.
    /// Returns the number of frames received.
    fn receive_batches<F>(&mut self, budget: usize, on_batch: F) -> io::Result<usize>
    where
        F: FnMut(&[&[u8]], &mut dyn TxLender);

    /// Receives up to `budget` frames one at a time. For each, calls `on_frame(rx, tx)`: `rx` is
    /// the received frame, `tx` a buffer for one reply, lent as [`TxLender::lend`] does.
    /// Returns the number of frames received.
    fn receive<F>(&mut self, budget: usize, mut on_frame: F) -> io::Result<usize>
    where
        F: FnMut(&[u8], &mut [u8]) -> Option<usize>,
    {
        self.receive_batches(budget, |frames, tx| {
            for frame in frames {
                tx.lend(&mut |buffer| on_frame(frame, buffer));
            }
        })
    }

    /// Sends up to `budget` frames, each written by `fill(tx)` into a free transmit buffer;
    /// stops early when `fill` returns `None` or no buffer is free. Returns the number queued.
    fn transmit<F>(&mut self, budget: usize, fill: F) -> io::Result<usize>
    where
        F: FnMut(&mut [u8]) -> Option<usize>;

    /// Pushes queued frames to the wire and reclaims the buffers of frames already sent.
    fn flush(&mut self) -> io::Result<()>;

    /// Blocks until a frame may be ready to receive, or `timeout` passes. Returns whether
    /// frames may be ready.
    fn wait(&mut self, timeout: Duration) -> io::Result<bool>;
}

/// The most frames a device hands over in one batch ([`FrameIo::receive_batches`]).
pub const MAX_RX_BATCH: usize = 64;

/// Lends transmit buffers to the frames of a received batch.
pub trait TxLender {
    /// Calls `fill(tx)` with a free transmit buffer of at least [`MIN_TX_FRAME`] bytes, if one
    /// is free right now; returning `Some(n)` queues the first `n` bytes of `tx` for
    /// transmission. Returns whether it queued, or `None` (and `fill` is not called) when no
    /// buffer is free.
    fn lend_free(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> Option<bool>;

    /// [`TxLender::lend_free`], or `fill` with an empty buffer when none is free (its reply
    /// cannot be sent): every frame of a batch is handled, buffer or not.
    fn lend(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) {
        if self.lend_free(fill).is_none() {
            let _ = fill(&mut []);
        }
    }
}

/// Ends a device's [`FrameIo::wait`] early, from any thread: work arrived that the waiting
/// thread must do (the AF_XDP device's is an eventfd it polls beside its socket).
pub trait Wake: Send + Sync {
    fn wake(&self);
}

/// Delivers IP packets to the local kernel stack.
pub trait LocalDelivery {
    /// Hands `packet` (an IPv4 or IPv6 packet, checksums intact) to the local stack.
    fn deliver(&mut self, packet: &[u8]) -> io::Result<()>;
}
