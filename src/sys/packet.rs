//! [`PacketSocket`]: an AF_PACKET raw socket bound to one interface, batched with
//! `sendmmsg`/`recvmmsg`, implementing [`FrameIo`]. The fallback where AF_XDP is not available,
//! and a way to watch what arrives on an interface without attaching any XDP program.
//!
//! Owns the socket and two fixed pools of [`SLOT_LEN`]-byte slots, allocated once at open:
//! - transmit slots: `tx_lens.len()` frames are staged in slots `0..tx_lens.len()`, in order;
//!   [`FrameIo::flush`] hands them to the kernel and keeps, in order, whatever the kernel did
//!   not take (a full queue), so a staged frame is sent at most once and never lost silently.
//! - receive slots (only with [`PacketSocketConfig::receive`]): filled by one `recvmmsg` and
//!   lent to the callback within the same [`FrameIo::receive`] call.
//!
//! Nothing is allocated after open. Frames longer than a slot (jumbo frames) are skipped on
//! receive. A transmit-only socket is bound with protocol 0, so the kernel delivers nothing to
//! it; a receiving socket takes every protocol (`ETH_P_ALL`) but not its host's own outgoing
//! frames (`PACKET_IGNORE_OUTGOING`). With [`PacketSocketConfig::qdisc_bypass`] frames go
//! straight to the driver (`PACKET_QDISC_BYPASS`): no queueing discipline, and no copy to other
//! packet sockets.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use super::{XdpError, interface_index, interface_request, set_option};
use crate::device::{FrameIo, MAX_RX_BATCH, MIN_TX_FRAME, TxLender};

/// Bytes per slot of either pool: every frame a [`FrameIo`] user may write, and an Ethernet
/// frame of a 1500-byte MTU with room to spare.
const SLOT_LEN: usize = MIN_TX_FRAME;
/// The most messages passed to one `sendmmsg`/`recvmmsg` call (the header arrays live on the
/// stack).
const MMSG_CHUNK: usize = 64;
// A `recvmmsg` fills at most one receive batch.
const _: () = assert!(MMSG_CHUNK <= MAX_RX_BATCH);

// From linux/if_packet.h.
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Why opening or using a [`PacketSocket`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The kernel refused for lack of privileges.
    #[error("{action} on {ifname}: {source}; run as root or grant CAP_NET_RAW")]
    PermissionDenied {
        /// What was being done.
        action: &'static str,
        /// The interface concerned.
        ifname: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The interface is not an Ethernet interface.
    #[error("{ifname} is not an Ethernet interface (hardware type {hardware_type})")]
    NotEthernet {
        /// The interface concerned.
        ifname: String,
        /// Its ARPHRD_* hardware type.
        hardware_type: u16,
    },
    /// A parameter is out of range.
    #[error("invalid packet socket configuration: {0}")]
    Config(String),
    /// Any other failure of a system call, a missing interface included, classified as the XDP
    /// layer classifies errnos ([`XdpError::NoSuchInterface`], [`XdpError::Os`]).
    #[error(transparent)]
    Os(#[from] XdpError),
}

impl PacketError {
    /// [`XdpError::from_os`], with the capability an AF_PACKET socket needs named instead.
    fn from_os(action: &'static str, ifname: &str, source: io::Error) -> Self {
        match XdpError::from_os(action, ifname, source) {
            XdpError::PermissionDenied {
                action,
                ifname,
                source,
            } => Self::PermissionDenied {
                action,
                ifname,
                source,
            },
            other => Self::Os(other),
        }
    }
}

/// What a [`PacketSocket`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketSocketConfig {
    /// Frames per pool, and so the most frames per system call: 1 to 4096.
    pub batch: usize,
    /// Receive every frame arriving on the interface (else transmit only).
    pub receive: bool,
    /// Bypass the queueing discipline on transmit.
    pub qdisc_bypass: bool,
}

impl Default for PacketSocketConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            receive: false,
            qdisc_bypass: true,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    batch: usize,
    /// `batch` transmit slots; the first `tx_lens.len()` are staged.
    tx_slots: Box<[u8]>,
    tx_lens: Vec<usize>,
    /// `batch` receive slots, or none for a transmit-only socket.
    rx_slots: Box<[u8]>,
    /// Scratch: the length of each frame of the last `recvmmsg`, `None` when truncated.
    rx_lens: Vec<Option<usize>>,
}

impl PacketSocket {
    /// Opens a raw AF_PACKET socket bound to `ifname` in the calling thread's network namespace.
    pub fn open(ifname: &str, cfg: PacketSocketConfig) -> Result<Self, PacketError> {
        if !(1..=4096).contains(&cfg.batch) {
            return Err(PacketError::Config(format!(
                "batch {} must be between 1 and 4096",
                cfg.batch
            )));
        }
        let ifindex = interface_index(ifname)?;
        // Protocol 0 binds without receiving anything.
        let protocol = if cfg.receive {
            (libc::ETH_P_ALL as u16).to_be()
        } else {
            0
        };
        let fd: OwnedFd = Socket::new(
            Domain::from(libc::AF_PACKET),
            Type::from(libc::SOCK_RAW),
            Some(Protocol::from(libc::c_int::from(protocol))),
        )
        .map_err(|e| PacketError::from_os("opening an AF_PACKET socket", ifname, e))?
        .into();
        let on: libc::c_int = 1;
        if cfg.qdisc_bypass {
            set_option(fd.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, &on)
                .map_err(|e| PacketError::from_os("setting PACKET_QDISC_BYPASS", ifname, e))?;
        }
        if cfg.receive {
            set_option(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_IGNORE_OUTGOING,
                &on,
            )
            .map_err(|e| PacketError::from_os("setting PACKET_IGNORE_OUTGOING", ifname, e))?;
        }
        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut address: libc::sockaddr_ll = unsafe { mem::zeroed() };
        address.sll_family = libc::AF_PACKET as u16;
        address.sll_protocol = protocol;
        address.sll_ifindex = ifindex as i32;
        // SAFETY: `address` is a live sockaddr_ll and the length passed is its size.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const address).cast(),
                mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if bound != 0 {
            let source = io::Error::last_os_error();
            return Err(PacketError::from_os(
                "binding the AF_PACKET socket",
                ifname,
                source,
            ));
        }
        let rx_pool_len = if cfg.receive { cfg.batch * SLOT_LEN } else { 0 };
        Ok(Self {
            fd,
            batch: cfg.batch,
            tx_slots: vec![0; cfg.batch * SLOT_LEN].into_boxed_slice(),
            tx_lens: Vec::with_capacity(cfg.batch),
            rx_slots: vec![0; rx_pool_len].into_boxed_slice(),
            rx_lens: Vec::with_capacity(cfg.batch),
        })
    }

    /// Hands up to [`MMSG_CHUNK`] staged frames, starting at slot `first`, to the kernel;
    /// returns how many it took (0 when its queue is full).
    fn send_chunk(&mut self, first: usize) -> io::Result<usize> {
        let count = (self.tx_lens.len() - first).min(MMSG_CHUNK);
        let tx_lens = &self.tx_lens;
        let mut scratch = MmsgScratch::zeroed();
        scratch.point(&mut self.tx_slots, first, count, |slot| tx_lens[slot]);
        // SAFETY: the first `count` headers each point to one iovec, which points into a
        // transmit slot of `tx_lens[slot]` bytes; slots, iovecs and headers outlive the call,
        // and the kernel only reads the frames. No address is given: the socket is bound.
        let sent = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                scratch.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                // The device queue is full or dropped the frame: keep it staged, retry later.
                Some(libc::EAGAIN | libc::ENOBUFS) => Ok(0),
                _ => Err(error),
            };
        }
        Ok(sent as usize)
    }

    /// Fills the receive slots with one `recvmmsg`; returns the frames received.
    fn receive_batch(&mut self, want: usize) -> io::Result<usize> {
        let count = want.min(self.batch).min(MMSG_CHUNK);
        let mut scratch = MmsgScratch::zeroed();
        scratch.point(&mut self.rx_slots, 0, count, |_| SLOT_LEN);
        // SAFETY: the first `count` headers each point to one iovec, which points to a
        // receive slot of SLOT_LEN bytes that nothing else borrows; all outlive the call.
        let received = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                scratch.headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN) => Ok(0),
                _ => Err(error),
            };
        }
        let received = received as usize;
        self.rx_lens.clear();
        self.rx_lens
            .extend(scratch.headers[..received].iter().map(|header| {
                let len = header.msg_len as usize;
                let truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                (!truncated && len <= SLOT_LEN).then_some(len)
            }));
        Ok(received)
    }

    /// Lends the next free transmit slot to `write` and stages it if `write` returns a length
    /// in `1..=SLOT_LEN`. Returns whether it staged, or None when no slot is free.
    fn lend(
        tx_slots: &mut [u8],
        tx_lens: &mut Vec<usize>,
        batch: usize,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<bool> {
        let slot = tx_lens.len();
        if slot == batch {
            return None;
        }
        let buf = &mut tx_slots[slot * SLOT_LEN..(slot + 1) * SLOT_LEN];
        match write(buf) {
            Some(len) if (1..=SLOT_LEN).contains(&len) => {
                tx_lens.push(len);
                Some(true)
            }
            _ => Some(false),
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Lends the free transmit slots of a [`PacketSocket`].
struct PacketLender<'a> {
    tx_slots: &'a mut [u8],
    tx_lens: &'a mut Vec<usize>,
    batch: usize,
}

impl TxLender for PacketLender<'_> {
    fn lend_free(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> Option<bool> {
        PacketSocket::lend(self.tx_slots, self.tx_lens, self.batch, fill)
    }
}

impl FrameIo for PacketSocket {
    fn receive_batches<F>(&mut self, budget: usize, mut on_batch: F) -> io::Result<usize>
    where
        F: FnMut(&[&[u8]], &mut dyn TxLender),
    {
        if self.rx_slots.is_empty() {
            return Ok(0);
        }
        let mut received = 0;
        while received < budget {
            let want = (budget - received).min(MAX_RX_BATCH);
            let got = self.receive_batch(want)?;
            let mut frames: [&[u8]; MAX_RX_BATCH] = [&[]; MAX_RX_BATCH];
            let mut count = 0;
            for (slot, len) in self.rx_lens.iter().enumerate() {
                // A truncated frame is skipped.
                if let Some(len) = len {
                    frames[count] = &self.rx_slots[slot * SLOT_LEN..slot * SLOT_LEN + len];
                    count += 1;
                }
            }
            let mut lender = PacketLender {
                tx_slots: &mut self.tx_slots,
                tx_lens: &mut self.tx_lens,
                batch: self.batch,
            };
            on_batch(&frames[..count], &mut lender);
            received += got;
            if got < want.min(self.batch).min(MMSG_CHUNK) {
                break;
            }
        }
        Ok(received)
    }

    fn transmit<F>(&mut self, budget: usize, mut fill: F) -> io::Result<usize>
    where
        F: FnMut(&mut [u8]) -> Option<usize>,
    {
        let mut queued = 0;
        while queued < budget {
            match Self::lend(&mut self.tx_slots, &mut self.tx_lens, self.batch, &mut fill) {
                Some(true) => queued += 1,
                Some(false) | None => break,
            }
        }
        Ok(queued)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        while sent < self.tx_lens.len() {
            let taken = self.send_chunk(sent)?;
            if taken == 0 {
                break;
            }
            sent += taken;
        }
        if sent == 0 {
            return Ok(());
        }
        // Keep what the kernel did not take, in order, at the front.
        let left = self.tx_lens.len() - sent;
        for index in 0..left {
            let from = (sent + index) * SLOT_LEN;
            let len = self.tx_lens[sent + index];
            self.tx_slots
                .copy_within(from..from + len, index * SLOT_LEN);
        }
        self.tx_lens.drain(..sent);
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<bool> {
        if self.rx_slots.is_empty() {
            std::thread::sleep(timeout);
            return Ok(false);
        }
        let millis = if timeout.is_zero() {
            0
        } else {
            i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX)
        };
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, as the count says.
        let ready = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if ready < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(error);
        }
        Ok(ready > 0)
    }
}

/// The message headers of one `sendmmsg`/`recvmmsg`, on the caller's stack: after
/// [`MmsgScratch::point`], header `i` points to iovec `i`, which points to slot `first + i` of
/// a pool. The scratch must not move between `point` and the system call.
struct MmsgScratch {
    iovecs: [libc::iovec; MMSG_CHUNK],
    headers: [libc::mmsghdr; MMSG_CHUNK],
}

impl MmsgScratch {
    fn zeroed() -> MmsgScratch {
        // SAFETY: iovec and mmsghdr are plain data; all-zero is a valid value of each.
        unsafe { mem::zeroed() }
    }

    /// Points the first `count` (at most [`MMSG_CHUNK`]) headers at the slots of `slots`
    /// from `first` on, slot `s` being `len(s)` bytes long.
    fn point(
        &mut self,
        slots: &mut [u8],
        first: usize,
        count: usize,
        len: impl Fn(usize) -> usize,
    ) {
        let pairs = self.iovecs.iter_mut().zip(&mut self.headers);
        for (index, (iovec, header)) in pairs.take(count).enumerate() {
            let slot = first + index;
            iovec.iov_base = slots[slot * SLOT_LEN..].as_mut_ptr().cast();
            iovec.iov_len = len(slot);
            header.msg_hdr.msg_iov = iovec;
            header.msg_hdr.msg_iovlen = 1;
        }
    }
}

/// The Ethernet address of `ifname`, in the calling thread's network namespace.
pub fn interface_mac(ifname: &str) -> Result<[u8; 6], PacketError> {
    let (socket, mut request) = interface_request(ifname).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidInput => PacketError::Config(e.to_string()),
        _ => PacketError::from_os("opening a socket to query", ifname, e),
    })?;
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name and writes the address into the
    // live ifreq passed by pointer.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut request) } != 0 {
        let source = io::Error::last_os_error();
        return Err(PacketError::from_os(
            "reading the hardware address",
            ifname,
            source,
        ));
    }
    // SAFETY: a successful SIOCGIFHWADDR wrote the `ifru_hwaddr` member of the union.
    let address = unsafe { request.ifr_ifru.ifru_hwaddr };
    if address.sa_family != libc::ARPHRD_ETHER {
        return Err(PacketError::NotEthernet {
            ifname: ifname.to_owned(),
            hardware_type: address.sa_family,
        });
    }
    let mut mac = [0u8; 6];
    for (to, from) in mac.iter_mut().zip(&address.sa_data) {
        *to = *from as u8;
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_open_rejects_a_zero_batch() {
        let cfg = PacketSocketConfig {
            batch: 0,
            ..PacketSocketConfig::default()
        };
        assert!(matches!(
            PacketSocket::open("lo", cfg),
            Err(PacketError::Config(_))
        ));
    }

    #[test]
    fn test_interface_mac_of_a_missing_interface() {
        assert!(matches!(
            interface_mac("synwall-none0"),
            Err(PacketError::Os(XdpError::NoSuchInterface { .. }))
        ));
    }

    #[test]
    fn test_interface_mac_refuses_loopback() {
        assert!(matches!(
            interface_mac("lo"),
            Err(PacketError::NotEthernet { .. })
        ));
    }
}
