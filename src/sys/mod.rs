//! Everything that touches the kernel's XDP and AF_XDP interfaces, and all of the crate's
//! `unsafe` code, each block with its `// SAFETY:` argument.
//!
//! - [`SteeringProgram`] (steer.rs) owns the XDP program and its maps, attached to one interface.
//! - [`XdpDevice`] (xsk.rs) owns one AF_XDP socket and its UMEM on one rx queue; it implements
//!   [`FrameIo`](crate::device::FrameIo).
//! - [`native`] hands a completed handshake to the protected service's own listening socket
//!   (a TC program on the loopback device and the kfunc `bpf_sk_assign_tcp_reqsk`), ending a
//!   TIME-WAIT socket of the tuple first when needed (sock_diag.rs); [`repair`] builds the
//!   kernel socket itself (TCP_REPAIR); [`inject`] hands either the segments that arrived before
//!   it existed; [`tcp_info`] reads back what a socket negotiated; [`channels`] counts an
//!   interface's rx queues.
//! - bpf.rs loads the embedded BPF objects and checks their map layouts against the Rust side;
//!   [`attached`] reads which programs are attached where (XDP per interface, tcx ingress),
//!   for `synwall status` and the steering program's stale-copy check.
//! - [`affinity`] pins a thread to a CPU and lists the CPUs it may run on; [`addresses`] lists
//!   the host's addresses.
//! - For synwall's own lab and tests only, with the feature `lab` (not the product's API):
//!   `netns` moves a thread into a named network namespace, `PacketSocket` (packet.rs),
//!   `synproxy` (the lab's XDP SYN proxy), and test runs of a loaded XDP program
//!   (test_run.rs).
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

pub mod addresses;
pub mod affinity;
pub mod attached;
mod bpf;
pub mod channels;
mod error;
pub mod inject;
pub mod native;
#[cfg(feature = "lab")]
pub mod netns;
#[cfg(feature = "lab")]
mod packet;
pub mod repair;
mod sock_diag;
mod steer;
#[cfg(feature = "lab")]
pub mod synproxy;
pub mod tcp_info;
#[cfg(feature = "lab")]
mod test_run;
mod wakeup;
mod xsk;

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::RawFd;

pub use error::XdpError;
pub use native::PROGRAM_NAME as HANDOFF_PROGRAM_NAME;
#[cfg(feature = "lab")]
pub use packet::{PacketError, PacketSocket, PacketSocketConfig, interface_mac};
pub use steer::PROGRAM_NAME as STEER_PROGRAM_NAME;
pub use steer::{HandoffShield, SteerCounters, SteeringProgram, XdpAction, XdpMode};
pub use xsk::{XdpDevice, XdpDeviceConfig, XskStatistics, ZeroCopy};

/// Sets socket option `option` at `level` of `fd` to `value`: plain C data (a value, a struct
/// or an array of them) passed by pointer and length.
fn set_option<T: ?Sized>(
    fd: RawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` is live for the call and the length passed is its size.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            option,
            (value as *const T).cast(),
            mem::size_of_val(value) as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A datagram socket for interface ioctls and an interface request naming `ifname`, the rest
/// of the request zeroed.
fn interface_request(ifname: &str) -> io::Result<(socket2::Socket, libc::ifreq)> {
    let invalid = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
    let name = CString::new(ifname)
        .map_err(|_| invalid(format!("interface name {ifname:?} contains NUL")))?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut request: libc::ifreq = unsafe { mem::zeroed() };
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > request.ifr_name.len() {
        return Err(invalid(format!(
            "interface name {ifname:?} is longer than {} bytes",
            request.ifr_name.len() - 1
        )));
    }
    for (to, from) in request.ifr_name.iter_mut().zip(bytes) {
        *to = *from as libc::c_char;
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    Ok((socket, request))
}

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

/// Raises the calling process's limit of `resource` as far as it may: to infinity with
/// CAP_SYS_RESOURCE, else the soft limit to the hard one. A limit that cannot be raised stays;
/// what then runs out says so itself.
pub fn raise_limit(resource: libc::__rlimit_resource_t) {
    let infinite = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the live struct passed by reference.
    if unsafe { libc::setrlimit(resource, &infinite) } == 0 {
        return;
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the live struct passed by reference.
    if unsafe { libc::getrlimit(resource, &mut current) } == 0 {
        current.rlim_cur = current.rlim_max;
        // SAFETY: as above.
        unsafe { libc::setrlimit(resource, &current) };
    }
}
