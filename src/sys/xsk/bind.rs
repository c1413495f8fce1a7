//! Binding an AF_XDP socket to one rx queue: a fresh UMEM per attempt, in zero-copy or copy
//! mode, waiting a little while the queue is still held by a socket that was just closed.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::thread;
use std::time::{Duration, Instant};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::XdpDeviceConfig;
use crate::sys::error::XdpError;

/// What `bind` made: a UMEM, its frames, and a socket bound to the queue.
pub(super) struct Bound {
    pub(super) umem: Umem,
    pub(super) frames: Vec<FrameDesc>,
    pub(super) fill: FillQueue,
    pub(super) comp: CompQueue,
    pub(super) rx: RxQueue,
    pub(super) tx: TxQueue,
    pub(super) zero_copy: bool,
}

/// How long [`bind_when_free`] waits for a busy queue.
const BUSY_QUEUE_WAIT: Duration = Duration::from_secs(2);

/// [`bind`], waiting while the queue is busy: the kernel releases a closed AF_XDP socket's
/// buffer pool, and with it the queue, from a work queue, so a restarted synwall (or a test
/// binding again) can find its previous socket still there for a few milliseconds.
pub(super) fn bind_when_free(
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
