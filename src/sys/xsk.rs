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
//!   hands it to the tx ring and forgets the frame in the same step. The tx and completion rings are at least as large as the transmit half, so
//!   they never overflow.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::error::XdpError;
use super::interface_index;
use super::wakeup::{Wakeup, poll_readable};
use crate::device::{FrameIo, MIN_TX_FRAME, Wake};

/// The headroom the kernel reserves in front of every frame's packet data.
const XDP_HEADROOM: u32 = libxdp_sys::XDP_PACKET_HEADROOM;
/// The most frames taken off a ring in one go.
const BATCH: usize = 64;
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

/// A transmit frame owned by user space (see the module docs). Not `Copy`, not `Clone`.
#[derive(Debug)]
struct TxFrame(FrameDesc);

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

impl FrameIo for XdpDevice {
    fn receive<F>(&mut self, budget: usize, mut on_frame: F) -> io::Result<usize>
    where
        F: FnMut(&[u8], &mut [u8]) -> Option<usize>,
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
            for index in 0..got {
                // SAFETY: the kernel does not write a frame between handing it over on the rx
                // ring and getting it back on the fill ring; no mutable slice of it exists.
                let rx = unsafe { self.umem.data(&self.rx_batch[index]) }.contents();
                let lent = self.tx_frames.lend(&self.umem, |tx| on_frame(rx, tx));
                if lent.is_none() {
                    // No transmit frame free: the callback gets an empty buffer, and whatever
                    // it answers cannot be sent.
                    let _ = on_frame(rx, &mut []);
                }
            }
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

/// The transmit half of the UMEM, by place (see the module docs).
#[derive(Debug)]
struct TxFrames {
    /// Free, owned by user space.
    free: Vec<TxFrame>,
    /// Written, owned by user space, waiting for room on the tx ring.
    staged: Vec<TxFrame>,
    /// On the tx ring or the completion ring, owned by the kernel.
    in_kernel: usize,
    /// Scratch: descriptors being handed to the tx ring.
    descs: Vec<FrameDesc>,
    /// Scratch: descriptors taken off the completion ring, moved into `free` at once.
    completed: Vec<FrameDesc>,
}

impl TxFrames {
    fn new(frames: Vec<FrameDesc>) -> Self {
        Self {
            descs: Vec::with_capacity(frames.len()),
            staged: Vec::with_capacity(frames.len()),
            free: frames.into_iter().map(TxFrame).collect(),
            in_kernel: 0,
            completed: vec![FrameDesc::default(); BATCH],
        }
    }

    /// Lends a free frame's whole data area to `write`; stages the frame when `write` returns a
    /// length in `1..=capacity`, frees it again otherwise. Returns whether it staged, or None
    /// when no frame is free.
    fn lend(
        &mut self,
        umem: &Umem,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<bool> {
        let mut frame = self.free.pop()?;
        // SAFETY: the frame was in `free`, so neither the kernel nor any other slice refers to
        // it, and it belongs to `umem`. The slice is gone before the frame moves on.
        let mut data = unsafe { umem.data_mut(&mut frame.0) };
        let capacity = {
            let mut cursor = data.cursor();
            let capacity = cursor.buf_len();
            cursor.set_pos(capacity);
            capacity
        };
        let staged = match write(data.contents_mut()) {
            Some(len) if (1..=capacity).contains(&len) => {
                data.cursor().set_pos(len);
                true
            }
            _ => false,
        };
        if staged {
            self.staged.push(frame);
        } else {
            self.free.push(frame);
        }
        Some(staged)
    }

    /// Hands the staged frames to the tx ring, all or none. The ring has room for every
    /// transmit frame, so all, unless the kernel has not yet consumed slots it was given.
    fn push(&mut self, tx: &mut TxQueue) {
        if self.staged.is_empty() {
            return;
        }
        self.descs.clear();
        self.descs.extend(self.staged.iter().map(|frame| frame.0));
        // SAFETY: the staged frames are user space's and belong to this UMEM; once produced
        // they leave `staged` and are counted in `in_kernel` until the completion ring
        // returns them.
        let produced = unsafe { tx.produce(&self.descs) };
        if produced == self.staged.len() {
            self.in_kernel += produced;
            self.staged.clear();
        }
    }

    /// Moves completed frames back to `free`.
    fn reclaim(&mut self, comp: &mut CompQueue) {
        loop {
            // SAFETY: the completion ring returns frames of this UMEM that the kernel has
            // finished with; each goes into `free` exactly once.
            let done = unsafe { comp.consume(&mut self.completed) };
            self.in_kernel -= done;
            self.free
                .extend(self.completed[..done].iter().map(|desc| TxFrame(*desc)));
            if done < self.completed.len() {
                break;
            }
        }
    }
}

/// What `bind` made: a UMEM, its frames, and a socket bound to the queue.
struct Bound {
    umem: Umem,
    frames: Vec<FrameDesc>,
    fill: FillQueue,
    comp: CompQueue,
    rx: RxQueue,
    tx: TxQueue,
    zero_copy: bool,
}

/// How long [`bind_when_free`] waits for a busy queue.
const BUSY_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// [`bind`], waiting while the queue is busy: the kernel releases a closed AF_XDP socket's
/// buffer pool, and with it the queue, from a work queue, so a restarted synwall (or a test
/// binding again) can find its previous socket still there for a few milliseconds.
fn bind_when_free(
    ifname: &str,
    queue_id: u32,
    cfg: &XdpDeviceConfig,
    zero_copy: bool,
) -> Result<Bound, XdpError> {
    let deadline = Instant::now() + BUSY_QUEUE_WAIT;
    loop {
        match bind(ifname, queue_id, cfg, zero_copy) {
            Err(XdpError::QueueBusy { .. }) if Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(10));
            }
            result => return result,
        }
    }
}

/// Creates a UMEM and binds a socket with it, in zero-copy or copy mode. A failed bind leaves
/// the UMEM's socket half set up, so a retry in another mode starts again from a new UMEM.
fn bind(
    ifname: &str,
    queue_id: u32,
    cfg: &XdpDeviceConfig,
    zero_copy: bool,
) -> Result<Bound, XdpError> {
    let size = |n: u32| QueueSize::new(n).map_err(|e| XdpError::Config(e.to_string()));
    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(cfg.frame_size).map_err(|e| XdpError::Config(e.to_string()))?)
        .fill_queue_size(size(cfg.fill_ring_size)?)
        .comp_queue_size(size(cfg.comp_ring_size)?)
        .frame_headroom(0)
        .build()
        .map_err(|e| XdpError::Config(e.to_string()))?;
    let frame_count = NonZeroU32::new(cfg.frame_count)
        .ok_or_else(|| XdpError::Config("frame_count is 0".to_owned()))?;
    let (umem, frames) = Umem::new(umem_config, frame_count, false)
        .map_err(|e| XdpError::from_umem("creating the UMEM", ifname, source_of(&e)))?;

    let mut bind_flags = if zero_copy {
        BindFlags::XDP_ZEROCOPY
    } else {
        BindFlags::XDP_COPY
    };
    if cfg.need_wakeup {
        bind_flags |= BindFlags::XDP_USE_NEED_WAKEUP;
    }
    let socket_config = SocketConfig::builder()
        .rx_queue_size(size(cfg.rx_ring_size)?)
        .tx_queue_size(size(cfg.tx_ring_size)?)
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(bind_flags)
        .build();
    let interface = CString::new(ifname)
        .map(Interface::new)
        .map_err(|_| XdpError::Config(format!("interface name {ifname:?} contains NUL")))?;
    // SAFETY: the UMEM is fresh and not shared, so the shared-UMEM double-free hazard of
    // Socket::new does not arise; XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD is set anyway.
    let (tx, rx, rings) = unsafe { Socket::new(socket_config, &umem, &interface, queue_id) }
        .map_err(|e| match source_of(&e) {
            busy if busy.raw_os_error() == Some(libc::EBUSY) => XdpError::QueueBusy {
                ifname: ifname.to_owned(),
                queue_id,
            },
            source => XdpError::from_umem("binding the AF_XDP socket", ifname, source),
        })?;
    let (fill, comp) = rings.ok_or_else(|| {
        XdpError::Config("a fresh UMEM came without fill and completion rings".to_owned())
    })?;
    Ok(Bound {
        umem,
        frames,
        fill,
        comp,
        rx,
        tx,
        zero_copy,
    })
}

/// The OS error underneath an xsk-rs error, or the error's own text.
fn source_of(error: &(dyn std::error::Error + 'static)) -> io::Error {
    match error.source().and_then(|s| s.downcast_ref::<io::Error>()) {
        Some(os) => match os.raw_os_error() {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::other(os.to_string()),
        },
        None => io::Error::other(error.to_string()),
    }
}
