//! Everything that touches the kernel's XDP and AF_XDP interfaces, and all of the crate's
//! `unsafe` code, each block with its `// SAFETY:` argument.
//!
//! - [`SteeringProgram`] (steer.rs) owns the XDP program and its maps, attached to one interface.
//! - [`XdpDevice`] (xsk.rs) owns one AF_XDP socket and its UMEM on one rx queue; it implements
//!   [`FrameIo`](crate::device::FrameIo).
//! - [`PacketSocket`] (packet.rs) owns one AF_PACKET socket bound to an interface, batched with
//!   `sendmmsg`/`recvmmsg`; also a [`FrameIo`](crate::device::FrameIo) (loadgen's fallback).
//! - [`repair`] builds the kernel socket of a completed handshake (TCP_REPAIR); [`inject`]
//!   hands it the segments that arrived before it existed; [`tcp_info`] reads back what a socket
//!   negotiated; [`channels`] counts an interface's rx queues.
//! - [`netns`] moves a thread into a named network namespace (labs and tests); [`affinity`]
//!   pins a thread to a CPU.
//! - [`XdpError`] (error.rs) names the cause of every failure.
//!
//! Typical use, on the thread (or in the namespace) that owns the interface:
//! ```no_run
//! use synwall::sys::{SteeringProgram, XdpDevice, XdpDeviceConfig, XdpMode};
//! let served = ["198.18.0.1:80".parse().unwrap()];
//! let program = SteeringProgram::attach("eth0", XdpMode::Auto, &served)?;
//! let device = XdpDevice::open("eth0", 0, XdpDeviceConfig::default())?;
//! program.register(&device)?;
//! # Ok::<(), synwall::sys::XdpError>(())
//! ```
//! Signals: the program is attached through a BPF link, so it is detached when the
//! [`SteeringProgram`] is dropped *and* whenever the process dies, however it dies (SIGKILL
//! included): the kernel releases the link with the process's last fd. A binary therefore
//! needs no signal-handler cleanup for the program; catching SIGINT/SIGTERM to stop the loops
//! and drop things in order is still the clean exit.

pub mod affinity;
pub mod channels;
mod error;
pub mod inject;
pub mod netns;
mod packet;
pub mod repair;
mod steer;
pub mod tcp_info;
mod xsk;

use std::ffi::CString;
use std::io;

pub use error::XdpError;
pub use packet::{PacketError, PacketSocket, PacketSocketConfig, interface_mac};
pub use steer::{HandoffShield, SteerCounters, SteeringProgram, XdpAction, XdpMode};
pub use xsk::{XdpDevice, XdpDeviceConfig, XskStatistics, ZeroCopy};

/// The index of `ifname` in the calling thread's network namespace.
fn interface_index(ifname: &str) -> Result<u32, XdpError> {
    let name = CString::new(ifname)
        .map_err(|_| XdpError::Config(format!("interface name {ifname:?} contains NUL")))?;
    // SAFETY: `name` is a valid C string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        let source = io::Error::last_os_error();
        return Err(XdpError::from_os(
            "looking up the interface",
            ifname,
            source,
        ));
    }
    Ok(index)
}
