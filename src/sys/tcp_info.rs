//! What the kernel says about a TCP socket (`TCP_INFO`): the options it negotiated and the
//! segment sizes it uses. Lets operators and tests check that a handed-off socket behaves like
//! one the kernel's own listener made. (`ss -ti` shows the same, though the iproute2 6.1 that
//! Debian 12 ships omits the `ts` and `sack` flags on recent kernels.)

use std::io;
use std::mem;
use std::net::TcpStream;
use std::os::fd::AsRawFd;

const TCPI_OPT_TIMESTAMPS: u8 = 1;
const TCPI_OPT_SACK: u8 = 2;
const TCPI_OPT_WSCALE: u8 = 4;

/// The start of `struct tcp_info` (linux/tcp.h), as far as we read it.
#[repr(C)]
#[derive(Default)]
struct RawTcpInfo {
    state: u8,
    ca_state: u8,
    retransmits: u8,
    probes: u8,
    backoff: u8,
    options: u8,
    /// `snd_wscale:4, rcv_wscale:4`
    wscales: u8,
    flags: u8,
    rto: u32,
    ato: u32,
    snd_mss: u32,
    rcv_mss: u32,
}

/// Negotiated options and segment sizes of a TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    pub timestamps: bool,
    pub sack: bool,
    /// (send, receive) shifts, when window scaling is on.
    pub window_scale: Option<(u8, u8)>,
    /// The largest segment the socket sends.
    pub send_mss: u32,
}

pub fn tcp_info(stream: &TcpStream) -> io::Result<TcpInfo> {
    let raw = raw_tcp_info(stream)?;
    Ok(TcpInfo {
        timestamps: raw.options & TCPI_OPT_TIMESTAMPS != 0,
        sack: raw.options & TCPI_OPT_SACK != 0,
        window_scale: (raw.options & TCPI_OPT_WSCALE != 0)
            .then_some((raw.wscales & 0xf, raw.wscales >> 4)),
        send_mss: raw.snd_mss,
    })
}

/// The kernel's estimate of the peer's segment size (`tcpi_rcv_mss`): the largest payload
/// received in one segment so far, once data has come in.
pub fn receive_mss(stream: &TcpStream) -> io::Result<u32> {
    Ok(raw_tcp_info(stream)?.rcv_mss)
}

fn raw_tcp_info(stream: &TcpStream) -> io::Result<RawTcpInfo> {
    let mut raw = RawTcpInfo::default();
    let mut len = mem::size_of::<RawTcpInfo>() as libc::socklen_t;
    // SAFETY: `raw` is a live, writable buffer of `len` bytes; the kernel writes at most `len`.
    let ret = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut raw as *mut RawTcpInfo).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(raw)
}
