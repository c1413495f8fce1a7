//! How many receive queues an interface has, from its driver (`ETHTOOL_GCHANNELS`), in the
//! calling thread's network namespace. Sysfs is not used: a thread that entered a namespace
//! with `setns` still sees the host's `/sys`.
//!
//! Owns nothing past the call.

use std::io;
use std::os::fd::AsRawFd;

use super::{XdpError, interface_request};

const ETHTOOL_GCHANNELS: u32 = 0x3c;
const SIOCETHTOOL: libc::c_ulong = 0x8946;

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

/// The receive queues of `ifname`: its rx-only plus its combined channels. A driver that does
/// not report channels has one.
pub fn rx_queue_count(ifname: &str) -> Result<u32, XdpError> {
    channels(ifname).map_err(|source| XdpError::from_os("reading the rx queues", ifname, source))
}

fn channels(ifname: &str) -> io::Result<u32> {
    let (socket, mut request) = interface_request(ifname)?;
    let mut channels = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..EthtoolChannels::default()
    };
    request.ifr_ifru.ifru_data = (&mut channels as *mut EthtoolChannels).cast();
    // SAFETY: `request` names the interface and points at a live ethtool_channels, which the
    // kernel fills; both outlive the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), SIOCETHTOOL, &mut request) } < 0 {
        let error = io::Error::last_os_error();
        return match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) => Ok(1),
            _ => Err(error),
        };
    }
    Ok((channels.rx_count + channels.combined_count).max(1))
}
