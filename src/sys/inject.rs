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
//! `IPPROTO_TCP` would be handed a copy of every TCP segment the host takes in. Their packets
//! carry the priority (`SO_PRIORITY`) by which the native handoff's program on `lo` tells them
//! from the host's other loopback traffic, which it then leaves alone without a lookup.
//!
//! Owns two raw sockets, closed on drop.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::native::INJECTED_PRIORITY;
use super::set_option;
use crate::device::LocalDelivery;

/// See the module documentation.
#[derive(Debug)]
pub struct RawInjector {
    v4: Socket,
    v6: Socket,
}

impl RawInjector {
    pub fn new() -> io::Result<RawInjector> {
        let v4 = raw_socket(Domain::IPV4, libc::IPPROTO_IP, libc::IP_HDRINCL)?;
        let v6 = raw_socket(Domain::IPV6, libc::IPPROTO_IPV6, libc::IPV6_HDRINCL)?;
        Ok(RawInjector { v4, v6 })
    }
}

impl LocalDelivery for RawInjector {
    fn deliver(&mut self, packet: &[u8]) -> io::Result<()> {
        let (socket, destination) = match packet.first().map(|byte| byte >> 4) {
            Some(4) if packet.len() >= 20 => {
                let octets: [u8; 4] = packet[16..20].try_into().expect("4 bytes");
                (&self.v4, IpAddr::from(Ipv4Addr::from(octets)))
            }
            Some(6) if packet.len() >= 40 => {
                let octets: [u8; 16] = packet[24..40].try_into().expect("16 bytes");
                (&self.v6, IpAddr::from(Ipv6Addr::from(octets)))
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "not an IP packet",
                ));
            }
        };
        socket.send_to(packet, &SocketAddr::new(destination, 0).into())?;
        Ok(())
    }
}

/// A send-only raw socket whose packets carry their own IP header and synwall's priority.
fn raw_socket(domain: Domain, level: libc::c_int, hdrincl: libc::c_int) -> io::Result<Socket> {
    let socket = Socket::new(
        domain,
        Type::from(libc::SOCK_RAW),
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )?;
    let on: libc::c_int = 1;
    set_option(socket.as_raw_fd(), level, hdrincl, &on)?;
    set_option(
        socket.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_PRIORITY,
        &INJECTED_PRIORITY,
    )?;
    Ok(socket)
}
