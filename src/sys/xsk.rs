//! [`XdpDevice`]: one AF_XDP socket (xsk-rs) bound to one rx queue, with its own UMEM,
//! implementing [`FrameIo`].
//!
//! Owns the UMEM and its four rings. The libxdp default program is never loaded
//! (`XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`): frames arrive only through
//! [`SteeringProgram::register`](super::SteeringProgram::register).
//!
//! Frame ownership. The UMEM is split once, at open: the first half of the frames are receive
//! frames, the second half transmit frames, and a frame never changes side. Every frame is in
//! exactly one place, and moves only by value:
//! - a receive frame is in the kernel (fill ring, then rx ring) except during one
//!   [`FrameIo::receive`] call, which takes a batch off the rx ring, lends each frame to the
//!   callback, and puts the whole batch back on the fill ring before returning. The fill ring is
//!   at least as large as the receive half, so putting back always succeeds.
//! - a transmit frame is a `TxFrame` in `TxFrames::free`, in `TxFrames::staged` (written, not
//!   yet on the tx ring), or in the kernel (tx ring, then completion ring), counted by
//!   `TxFrames::in_kernel`; it comes back into `free` only from the completion ring. `TxFrame` is
//!   neither `Copy` nor `Clone`; its descriptor is copied out only in `TxFrames::push`, which
//!   hands it to the tx ring and forgets the frame in the same step. The tx and completion
//!   rings are at least as large as the transmit half, so they never overflow.
//!
//! The transmit half is kept in `tx_frames` (its accounting is checked against a model kernel in
//! `tx_frames/model.rs`); binding the socket, with its UMEM, is `bind`'s.

mod bind;
mod tx_frames;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::error::XdpError;
use super::interface_index;
use super::wakeup::{Wakeup, poll_readable};
use crate::device::{FrameIo, MAX_RX_BATCH, MIN_TX_FRAME, TxLender, Wake};
use bind::{Bound, bind_when_free};
use tx_frames::TxFrames;

/// The headroom the kernel reserves in front of every frame's packet data.
const XDP_HEADROOM: u32 = libxdp_sys::XDP_PACKET_HEADROOM;
/// The most frames taken off a ring in one go: a batch for the listener.
const BATCH: usize = MAX_RX_BATCH;
/// Copy-mode transmit handles at most this many descriptors per `sendto()`.
const COPY_MODE_TX_BATCH: usize = 32;

/// Whether to ask the driver for zero-copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Zero-copy when the driver offers it, copy mode otherwise.
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// Sizes and modes of an [`XdpDevice`]. Ring sizes are powers of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XdpDeviceConfig {
    /// UMEM frames in all; half receive, half transmit. Even, at least 2.
    pub frame_count: u32,
    /// Bytes per frame: a power of two, at most the page size, and large enough that the data
    /// part (after the kernel's 256-byte headroom) holds [`MIN_TX_FRAME`] bytes: so 4096.
    pub frame_size: u32,
    /// Fill ring entries; at least `frame_count / 2`.
    pub fill_ring_size: u32,
    /// Completion ring entries; at least `frame_count / 2`.
    pub comp_ring_size: u32,
    /// Rx ring entries.
    pub rx_ring_size: u32,
    /// Tx ring entries; at least `frame_count / 2`.
    pub tx_ring_size: u32,
    /// Zero-copy or copy mode.
    pub zero_copy: ZeroCopy,
    /// Bind with XDP_USE_NEED_WAKEUP: the kernel is woken only when it asks to be.
    pub need_wakeup: bool,
}

impl Default for XdpDeviceConfig {
    fn default() -> Self {
        Self {
            frame_count: 4096,
            frame_size: 4096,
            fill_ring_size: 2048,
            comp_ring_size: 2048,
            rx_ring_size: 2048,
            tx_ring_size: 2048,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
        }
    }
}

impl XdpDeviceConfig {
    fn validate(&self) -> Result<(), XdpError> {
        let fail = |msg: String| Err(XdpError::Config(msg));
        if self.frame_count < 2 || !self.frame_count.is_multiple_of(2) {
            return fail(format!(
                "frame_count {} must be even and at least 2",
                self.frame_count
            ));
        }
        if !self.frame_size.is_power_of_two()
            || (self.frame_size.saturating_sub(XDP_HEADROOM) as usize) < MIN_TX_FRAME
        {
            return fail(format!(
                "frame_size {} must be a power of two leaving {MIN_TX_FRAME} bytes after the \
                 {XDP_HEADROOM}-byte XDP headroom (use 4096)",
                self.frame_size
            ));
        }
        let half = self.frame_count / 2;
        for (name, size) in [
            ("fill_ring_size", self.fill_ring_size),
            ("comp_ring_size", self.comp_ring_size),
            ("rx_ring_size", self.rx_ring_size),
            ("tx_ring_size", self.tx_ring_size),
        ] {
            if !size.is_power_of_two() {
                return fail(format!("{name} {size} must be a power of two"));
            }
            if name != "rx_ring_size" && size < half {
                return fail(format!(
                    "{name} {size} must be at least frame_count / 2 = {half}, so that every \
                     frame of its half fits in it"
                ));
            }
        }
        Ok(())
    }
}

/// The AF_XDP socket's ring statistics (XDP_STATISTICS).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct XskStatistics {
    /// Frames dropped for other reasons than the two below.
    pub rx_dropped: u64,
    /// Frames dropped because the rx ring was full.
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    /// Invalid transmit descriptors.
    pub tx_invalid: u64,
    /// Times the kernel found the tx ring empty.
    pub tx_ring_empty: u64,
}

impl std::ops::AddAssign for XskStatistics {
    fn add_assign(&mut self, other: XskStatistics) {
        self.rx_dropped += other.rx_dropped;
        self.rx_ring_full += other.rx_ring_full;
        self.rx_fill_ring_empty += other.rx_fill_ring_empty;
        self.tx_invalid += other.tx_invalid;
        self.tx_ring_empty += other.tx_ring_empty;
    }
}

/// An AF_XDP socket on one rx queue, with its UMEM (see the module docs).
#[derive(Debug)]
pub struct XdpDevice {
    umem: Umem,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    /// Scratch for descriptors taken off the rx ring; they are back on the fill ring by the
    /// time `receive` returns.
    rx_batch: Vec<FrameDesc>,
    tx_frames: TxFrames,
    tx_ring_size: u32,
    need_wakeup: bool,
    zero_copy: bool,
    ifname: String,
    ifindex: u32,
    queue_id: u32,
    /// Ends a [`FrameIo::wait`] early when another thread has work for this one.
    wakeup: Arc<Wakeup>,
}

impl XdpDevice {
    /// Opens an AF_XDP socket on `ifname`'s rx queue `queue_id`, in the calling thread's
    /// network namespace. Raises RLIMIT_MEMLOCK first when allowed.
    pub fn open(ifname: &str, queue_id: u32, cfg: XdpDeviceConfig) -> Result<Self, XdpError> {
        cfg.validate()?;
        let ifindex = interface_index(ifname)?;
        // The UMEM is locked memory: without this, and without CAP_IPC_LOCK, its registration
        // fails with XdpError::LockedMemory.
        super::raise_limit(libc::RLIMIT_MEMLOCK);
        let try_zero_copy = match cfg.zero_copy {
            ZeroCopy::Auto | ZeroCopy::On => true,
            ZeroCopy::Off => false,
        };
        let bound = if try_zero_copy {
            match bind_when_free(ifname, queue_id, &cfg, true) {
                Ok(bound) => Ok(bound),
                // A queue still busy after the wait is busy in copy mode too.
                Err(zc_error)
                    if cfg.zero_copy == ZeroCopy::Auto
                        && !matches!(zc_error, XdpError::QueueBusy { .. }) =>
                {
                    // Said only once copy mode works: a queue that fails both ways fails with
                    // copy mode's error alone.
                    bind_when_free(ifname, queue_id, &cfg, false).inspect(|_| {
                        tracing::info!(ifname, queue_id, error = %zc_error, "zero-copy refused, using copy mode");
                    })
                }
                Err(zc_error) => Err(zc_error),
            }
        } else {
            bind_when_free(ifname, queue_id, &cfg, false)
        }?;
        let Bound {
            umem,
            mut frames,
            mut fill,
            comp,
            rx,
            tx,
            zero_copy,
        } = bound;

        let tx_half = frames.split_off(frames.len() / 2);
        // SAFETY: the receive half comes straight from Umem::new for this UMEM and is in no
        // other ring; from here on it is the kernel's (see the module docs).
        let given = unsafe { fill.produce(&frames) };
        if given != frames.len() {
            return Err(XdpError::Config(format!(
                "the fill ring took {given} of {} receive frames",
                frames.len()
            )));
        }
        let mut device = Self {
            umem,
            fill,
            comp,
            rx,
            tx,
            rx_batch: vec![FrameDesc::default(); BATCH],
            tx_frames: TxFrames::new(tx_half),
            tx_ring_size: cfg.tx_ring_size,
            need_wakeup: cfg.need_wakeup,
            zero_copy,
            ifname: ifname.to_owned(),
            ifindex,
            queue_id,
            wakeup: Arc::new(
                Wakeup::new().map_err(|e| XdpError::from_os("creating an eventfd", ifname, e))?,
            ),
        };
        device
            .wake_fill()
            .map_err(|e| XdpError::from_os("waking the kernel for the fill ring", ifname, e))?;
        Ok(device)
    }

    /// Wakes this device's [`FrameIo::wait`] from any thread.
    pub fn waker(&self) -> Arc<dyn Wake> {
        Arc::clone(&self.wakeup) as Arc<dyn Wake>
    }

    /// The rx queue this socket is bound to.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    /// Whether the socket got zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The socket's ring statistics.
    pub fn statistics(&self) -> Result<XskStatistics, XdpError> {
        let stats = self
            .rx
            .fd()
            .xdp_statistics()
            .map_err(|e| XdpError::from_os("reading the AF_XDP statistics", &self.ifname, e))?;
        Ok(XskStatistics {
            rx_dropped: stats.rx_dropped(),
            rx_ring_full: stats.rx_ring_full(),
            rx_fill_ring_empty: stats.rx_fill_ring_empty_descs(),
            tx_invalid: stats.tx_invalid_descs(),
            tx_ring_empty: stats.tx_ring_empty_descs(),
        })
    }

    pub(super) fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub(super) fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Free tx ring slots, as the kernel last reported them.
    fn tx_ring_free(&mut self) -> u32 {
        self.tx.nb_free_exact()
    }

    fn wake_fill(&mut self) -> io::Result<()> {
        if self.need_wakeup && self.fill.needs_wakeup() {
            self.fill.wakeup(self.rx.fd_mut(), 0)?;
        }
        Ok(())
    }

    fn wake_tx(&mut self) -> io::Result<()> {
        if !self.need_wakeup || self.tx.needs_wakeup() {
            self.tx.wakeup()?;
        }
        Ok(())
    }
}

impl AsRawFd for XdpDevice {
    /// The AF_XDP socket's fd (what goes into the XSKMAP).
    fn as_raw_fd(&self) -> RawFd {
        self.rx.fd().as_raw_fd()
    }
}

/// Lends the free transmit frames of an [`XdpDevice`].
struct XdpLender<'a> {
    tx_frames: &'a mut TxFrames,
    umem: &'a Umem,
}

impl TxLender for XdpLender<'_> {
    fn lend_free(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> Option<bool> {
        self.tx_frames.lend(self.umem, fill)
    }
}

impl FrameIo for XdpDevice {
    fn receive_batches<F>(&mut self, budget: usize, mut on_batch: F) -> io::Result<usize>
    where
        F: FnMut(&[&[u8]], &mut dyn TxLender),
    {
        if self.tx_frames.free.is_empty() {
            self.tx_frames.reclaim(&mut self.comp);
        }
        let mut received = 0;
        while received < budget {
            let want = (budget - received).min(BATCH);
            // SAFETY: the rx ring hands over frames of this UMEM; they are the callback's to
            // read until the batch goes back on the fill ring below.
            let got = unsafe { self.rx.consume(&mut self.rx_batch[..want]) };
            let mut frames: [&[u8]; BATCH] = [&[]; BATCH];
            for (frame, desc) in frames.iter_mut().zip(&self.rx_batch[..got]) {
                // SAFETY: the kernel does not write a frame between handing it over on the rx
                // ring and getting it back on the fill ring; no mutable slice of it exists.
                *frame = unsafe { self.umem.data(desc) }.contents();
            }
            let mut lender = XdpLender {
                tx_frames: &mut self.tx_frames,
                umem: &self.umem,
            };
            on_batch(&frames[..got], &mut lender);
            // SAFETY: the batch came off the rx ring above and no slice of it is alive; the
            // fill ring has room for every receive frame, so all of it goes back.
            let returned = unsafe { self.fill.produce(&self.rx_batch[..got]) };
            debug_assert_eq!(returned, got, "the fill ring holds every receive frame");
            received += got;
            if got < want {
                break;
            }
        }
        if received > 0 {
            self.wake_fill()?;
            self.tx_frames.push(&mut self.tx);
        }
        Ok(received)
    }

    fn transmit<F>(&mut self, budget: usize, mut fill: F) -> io::Result<usize>
    where
        F: FnMut(&mut [u8]) -> Option<usize>,
    {
        if self.tx_frames.free.is_empty() {
            self.tx_frames.reclaim(&mut self.comp);
        }
        let mut queued = 0;
        while queued < budget {
            match self.tx_frames.lend(&self.umem, &mut fill) {
                Some(true) => queued += 1,
                Some(false) | None => break,
            }
        }
        self.tx_frames.push(&mut self.tx);
        Ok(queued)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tx_frames.push(&mut self.tx);
        // Copy mode sends at most 32 descriptors per kick: kick until the tx ring is drained
        // or a kick makes no progress (zero-copy drivers send asynchronously).
        let max_kicks = self.tx_ring_size as usize / COPY_MODE_TX_BATCH + 2;
        for _ in 0..max_kicks {
            let before = self.tx_ring_free();
            if before == self.tx_ring_size {
                break;
            }
            self.wake_tx()?;
            self.tx_frames.reclaim(&mut self.comp);
            if self.tx_ring_free() == before {
                break;
            }
        }
        self.tx_frames.reclaim(&mut self.comp);
        self.tx_frames.push(&mut self.tx);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.rx.nb_avail(1) > 0 {
            return Ok(true);
        }
        // Round up, so that a sub-millisecond timeout still sleeps.
        let millis = if timeout.is_zero() {
            0
        } else {
            i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX)
        };
        poll_readable(self.rx.fd().as_raw_fd(), &self.wakeup, millis)
    }
}
