//! The kernel handoff: an ordinary established kernel socket built from a handshake completed
//! in user space, with TCP_REPAIR (needs CAP_NET_ADMIN).
//!
//! The order matters and was checked on the target kernel:
//! 1. `socket`, `TCP_REPAIR` on (repair mode also lets many sockets bind one local port);
//! 2. `bind` the local address, `TCP_MAXSEG` to the peer's MSS (`connect` sizes the socket's
//!    segments from it; the MSS in `TCP_REPAIR_OPTIONS` alone would leave them at the 536-byte
//!    default), clamped to the 88..=32767 that `TCP_MAXSEG` takes, and `TCP_TIMESTAMP`, so
//!    that our timestamp clock continues where the SYN-ACK left it and the peer's PAWS check
//!    passes (repair mode keeps it through `connect`);
//! 3. the sequence numbers of both queues (`TCP_REPAIR_QUEUE` + `TCP_QUEUE_SEQ`): only while
//!    the socket is still closed;
//! 4. `connect`: in repair mode no SYN is sent, the socket is ESTABLISHED and hashed;
//! 5. the options (`TCP_REPAIR_OPTIONS`, with the peer's own MSS, whatever its value) and the
//!    windows (`TCP_REPAIR_WINDOW`); over IPv4, when the kernel's listener would size segments
//!    otherwise than `connect` did (an MSS below 88, or a peer window under two segments), an
//!    empty `IP_OPTIONS` makes the kernel size them again from the restored values, as its own
//!    listener does (`tcp_sync_mss`; IPv6 has no such option, and no IPv6 peer can have an MSS
//!    below 1220);
//! 6. early data from the final ACK written into the receive queue;
//! 7. repair off: the kernel sends a window probe.
//!
//! From `connect` on, the socket is hashed and would take segments from the network while
//! half restored: the caller keeps them away from it until this returns (the XDP program's
//! `handing_off` map, [`crate::sys::HandoffShield`]).
//!
//! Owns nothing past the call: the socket comes back as a [`TcpStream`].

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use socket2::{Domain, Socket, Type};

use super::set_option;
use crate::listener::Accepted;

// From linux/tcp.h.
const TCP_REPAIR: libc::c_int = 19;
const TCP_REPAIR_QUEUE: libc::c_int = 20;
const TCP_QUEUE_SEQ: libc::c_int = 21;
const TCP_REPAIR_OPTIONS: libc::c_int = 22;
const TCP_TIMESTAMP: libc::c_int = 24;
const TCP_REPAIR_WINDOW: libc::c_int = 29;
const TCP_REPAIR_ON: libc::c_int = 1;
const TCP_REPAIR_OFF: libc::c_int = 0;
const TCP_NO_QUEUE: libc::c_int = 0;
const TCP_RECV_QUEUE: libc::c_int = 1;
const TCP_SEND_QUEUE: libc::c_int = 2;
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;
/// What `TCP_MAXSEG` accepts: TCP_MIN_MSS and MAX_TCP_WINDOW of the kernel.
const MIN_MAXSEG: libc::c_int = 88;
const MAX_MAXSEG: libc::c_int = 32767;

/// `struct tcp_repair_opt`.
#[repr(C)]
struct RepairOption {
    code: u32,
    value: u32,
}

/// `struct tcp_repair_window`.
#[repr(C)]
struct RepairWindow {
    snd_wl1: u32,
    snd_wnd: u32,
    max_window: u32,
    rcv_wnd: u32,
    rcv_wup: u32,
}

/// The step of the handoff that failed, with the kernel's answer.
#[derive(Debug, thiserror::Error)]
#[error("handing {peer} to the kernel: {step}: {source}")]
pub struct HandoffError {
    pub peer: SocketAddr,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

/// Builds the established kernel socket of `accepted`.
pub fn establish(accepted: &Accepted) -> Result<TcpStream, HandoffError> {
    let peer = accepted.tuple.remote;
    let fail = |step| move |source| HandoffError { peer, step, source };
    let socket = Repairing::new(accepted.tuple.local).map_err(fail("creating the socket"))?;
    socket
        .bind(accepted.tuple.local)
        .map_err(fail("binding the local address"))?;
    socket
        .set_int(
            libc::TCP_MAXSEG,
            libc::c_int::from(accepted.mss).clamp(MIN_MAXSEG, MAX_MAXSEG),
        )
        .map_err(fail("setting the MSS"))?;
    if let Some(timestamps) = accepted.timestamps {
        socket
            .set_int(TCP_TIMESTAMP, timestamps.echo as libc::c_int)
            .map_err(fail("restoring the timestamp clock"))?;
    }
    socket
        .set_queue_seq(TCP_RECV_QUEUE, accepted.peer_next_seq().0)
        .map_err(fail("setting the receive sequence"))?;
    socket
        .set_queue_seq(TCP_SEND_QUEUE, accepted.our_next_seq().0)
        .map_err(fail("setting the send sequence"))?;
    socket
        .connect(peer)
        .map_err(fail("connecting in repair mode"))?;
    socket
        .set_options(accepted)
        .map_err(fail("restoring the TCP options"))?;
    socket
        .set_window(accepted)
        .map_err(fail("restoring the windows"))?;
    let connect_sizing_differs = libc::c_int::from(accepted.mss) < MIN_MAXSEG
        || accepted.peer_window < 2 * u32::from(accepted.mss);
    if accepted.tuple.local.is_ipv4() && connect_sizing_differs {
        socket
            .resize_segments()
            .map_err(fail("sizing the segments again"))?;
    }
    if !accepted.early_data.is_empty() {
        socket
            .fill_receive_queue(&accepted.early_data)
            .map_err(fail("queueing the early data"))?;
    }
    socket.finish().map_err(fail("leaving repair mode"))
}

/// Checks, before any client waits on it, that this process can build kernel sockets for
/// `local`: TCP_REPAIR needs CAP_NET_ADMIN, and binding a port below
/// `net.ipv4.ip_unprivileged_port_start` (1024 by default) needs CAP_NET_BIND_SERVICE.
pub fn check_handoff_possible(local: SocketAddr) -> io::Result<()> {
    Repairing::new(local)?.bind(local)
}

/// A TCP socket in repair mode.
struct Repairing(Socket);

impl Repairing {
    fn new(local: SocketAddr) -> io::Result<Repairing> {
        let socket = Repairing(Socket::new(Domain::for_address(local), Type::STREAM, None)?);
        socket.set_int(TCP_REPAIR, TCP_REPAIR_ON)?;
        Ok(socket)
    }

    /// Sets a TCP-level option.
    fn set<T: ?Sized>(&self, option: libc::c_int, value: &T) -> io::Result<()> {
        set_option(self.0.as_raw_fd(), libc::IPPROTO_TCP, option, value)
    }

    fn set_int(&self, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        self.set(option, &value)
    }

    fn bind(&self, local: SocketAddr) -> io::Result<()> {
        self.0.bind(&local.into())
    }

    fn set_queue_seq(&self, queue: libc::c_int, seq: u32) -> io::Result<()> {
        self.set_int(TCP_REPAIR_QUEUE, queue)?;
        self.set(TCP_QUEUE_SEQ, &seq)
    }

    /// In repair mode, `connect` only records the peer: nothing is sent.
    fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        self.0.connect(&peer.into())
    }

    fn set_options(&self, accepted: &Accepted) -> io::Result<()> {
        let mut options = vec![RepairOption {
            code: TCPOPT_MAXSEG,
            value: u32::from(accepted.mss),
        }];
        if let Some(scale) = accepted.window_scale {
            options.push(RepairOption {
                code: TCPOPT_WINDOW,
                value: u32::from(scale.send) | u32::from(scale.receive) << 16,
            });
        }
        if accepted.sack_permitted {
            options.push(RepairOption {
                code: TCPOPT_SACK_PERM,
                value: 0,
            });
        }
        if accepted.timestamps.is_some() {
            options.push(RepairOption {
                code: TCPOPT_TIMESTAMP,
                value: 0,
            });
        }
        self.set(TCP_REPAIR_OPTIONS, options.as_slice())
    }

    fn set_window(&self, accepted: &Accepted) -> io::Result<()> {
        let window = RepairWindow {
            snd_wl1: accepted.peer_next_seq().0,
            snd_wnd: accepted.peer_window,
            max_window: accepted.peer_window,
            rcv_wnd: u32::from(accepted.receive_window),
            rcv_wup: accepted.peer_next_seq().0,
        };
        self.set(TCP_REPAIR_WINDOW, &window)
    }

    /// In repair mode with the receive queue selected, `send` appends to the receive queue.
    fn fill_receive_queue(&self, data: &[u8]) -> io::Result<()> {
        self.set_int(TCP_REPAIR_QUEUE, TCP_RECV_QUEUE)?;
        let mut rest = data;
        while !rest.is_empty() {
            let sent = self.0.send(rest)?;
            rest = &rest[sent..];
        }
        Ok(())
    }

    /// Makes the kernel size the socket's segments again from its MSS, window and path MTU:
    /// setting IPv4 options (none) does that.
    fn resize_segments(&self) -> io::Result<()> {
        set_option(
            self.0.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_OPTIONS,
            &[0u8; 0],
        )
    }

    fn finish(self) -> io::Result<TcpStream> {
        self.set_int(TCP_REPAIR_QUEUE, TCP_NO_QUEUE)?;
        self.set_int(TCP_REPAIR, TCP_REPAIR_OFF)?;
        Ok(self.0.into())
    }
}
