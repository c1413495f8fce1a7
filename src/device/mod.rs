//! Frame devices: the narrow, batched I/O boundary between the sans-IO listener and a NIC.
//!
//! A [`FrameIo`] hands received Ethernet frames to a callback together with a buffer for at
//! most one reply, and sends frames produced by another callback. Frames are only borrowed for
//! the duration of a callback, so a frame is always owned in exactly one place: the device.
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
    /// Receives up to `budget` frames. For each, calls `on_frame(rx, tx)`: `rx` is the received
    /// frame, `tx` a buffer for one reply (at least [`MIN_TX_FRAME`] bytes, or empty when no
    /// transmit buffer is free right now). Returning `Some(n)` queues the first `n` bytes of `tx`
    /// for transmission. Returns the number of frames received.
    fn receive<F>(&mut self, budget: usize, on_frame: F) -> io::Result<usize>
    where
        F: FnMut(&[u8], &mut [u8]) -> Option<usize>;

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
