//! Delivery of IP packets to the local kernel stack, through raw sockets (`IP_HDRINCL`,
//! `IPV6_HDRINCL`; needs CAP_NET_RAW).
//!
//! A packet sent on a raw socket to a local address is routed to local delivery and carries its
//! output route through the loopback path, so the stack takes it in as if it had just arrived
//! (no reverse-path filtering applies). CRIU restores the FIN of a half-closed connection the
//! same way. synwall uses it for segments that reached user space before their connection's
//! kernel socket existed.
//!
//! The sockets are of protocol `IPPROTO_RAW`, which receives nothing: a raw socket of
//! `IPPROTO_TCP` would be handed a copy of every TCP segment the host takes in.
//!
//! Owns two raw sockets, closed on drop.

use std::io;
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::device::LocalDelivery;

/// See the module documentation.
#[derive(Debug)]
pub struct RawInjector {
    v4: OwnedFd,
    v6: OwnedFd,
}

impl RawInjector {
    pub fn new() -> io::Result<RawInjector> {
        let v4 = raw_socket(libc::AF_INET, libc::IPPROTO_IP, libc::IP_HDRINCL)?;
        let v6 = raw_socket(libc::AF_INET6, libc::IPPROTO_IPV6, libc::IPV6_HDRINCL)?;
        Ok(RawInjector { v4, v6 })
    }
}

impl LocalDelivery for RawInjector {
    fn deliver(&mut self, packet: &[u8]) -> io::Result<()> {
        let sent = match packet.first().map(|byte| byte >> 4) {
            Some(4) if packet.len() >= 20 => {
                let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
                let address = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: 0,
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(dst.octets()),
                    },
                    sin_zero: [0; 8],
                };
                send_to(&self.v4, packet, &address)
            }
            Some(6) if packet.len() >= 40 => {
                let mut s6_addr = [0u8; 16];
                s6_addr.copy_from_slice(&packet[24..40]);
                let address = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: 0,
                    sin6_flowinfo: 0,
                    sin6_addr: libc::in6_addr { s6_addr },
                    sin6_scope_id: 0,
                };
                send_to(&self.v6, packet, &address)
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an IP packet",
                ));
            }
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A send-only raw socket whose packets carry their own IP header.
fn raw_socket(
    domain: libc::c_int,
    level: libc::c_int,
    hdrincl: libc::c_int,
) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call with constant arguments.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int of the size passed.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            hdrincl,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

fn send_to<A>(socket: &OwnedFd, packet: &[u8], address: &A) -> isize {
    // SAFETY: `packet` is a live buffer of its length; `address` a live sockaddr of its size.
    unsafe {
        libc::sendto(
            socket.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            (address as *const A).cast(),
            mem::size_of::<A>() as libc::socklen_t,
        )
    }
}
