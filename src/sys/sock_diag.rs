//! Ending the TIME-WAIT socket of one 4-tuple through the kernel's socket-diagnostics netlink
//! interface (`SOCK_DESTROY`, CONFIG_INET_DIAG_DESTROY; needs CAP_NET_ADMIN), as `ss -K` does.
//!
//! A client that reconnects over a 4-tuple the server's kernel still holds in TIME-WAIT gets a
//! new connection from the kernel's own listener, which ends the TIME-WAIT socket when the new
//! SYN arrives. synwall answers that SYN itself, so for a native handoff it ends the socket
//! instead, just before the kernel builds the new one ([`super::native`]).
//!
//! Two requests, so that nothing but that TIME-WAIT socket can be hit: an exact lookup of the
//! tuple (which the kernel may answer with the tuple's listener once the TIME-WAIT socket is
//! gone), checked to be in TIME-WAIT, then `SOCK_DESTROY` with the socket's cookie, which the
//! kernel refuses for any other socket. Owns a netlink socket for the length of one call.

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

use crate::wire::FourTuple;

// From linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
const NLMSG_ERROR: u16 = 2;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLMSG_HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`: family, protocol, extensions, pad, states, then the socket id.
const REQUEST_LEN: usize = 56;
/// Where `struct inet_diag_sockid` starts in a request and in `struct inet_diag_msg`.
const ID_AT_REQUEST: usize = 8;
const ID_AT_MESSAGE: usize = 4;
/// `idiag_cookie` inside the socket id.
const COOKIE_AT: usize = 40;
/// `INET_DIAG_NOCOOKIE`: any socket.
const NO_COOKIE: [u8; 8] = [0xff; 8];
const TCP_TIME_WAIT: u8 = 6;

/// Ends the TIME-WAIT socket of `tuple` (local = the served address). `Ok(false)` when the
/// tuple has no TIME-WAIT socket (any more).
pub fn destroy_time_wait(tuple: &FourTuple) -> io::Result<bool> {
    let socket = Socket::new(
        Domain::from(libc::AF_NETLINK),
        Type::DGRAM,
        Some(Protocol::from(libc::NETLINK_SOCK_DIAG)),
    )?;
    let Some(reply) = exchange(
        &socket,
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST,
        &request(tuple, NO_COOKIE),
    )?
    else {
        return Ok(false);
    };
    // struct inet_diag_msg: family, state, timer, retrans, then the id.
    let cookie_at = ID_AT_MESSAGE + COOKIE_AT;
    if reply.len() < cookie_at + 8 || reply[1] != TCP_TIME_WAIT {
        return Ok(false);
    }
    let cookie: [u8; 8] = reply[cookie_at..cookie_at + 8].try_into().expect("8 bytes");
    let destroyed = exchange(
        &socket,
        SOCK_DESTROY,
        NLM_F_REQUEST | NLM_F_ACK,
        &request(tuple, cookie),
    )?;
    Ok(destroyed.is_some())
}

/// `struct inet_diag_req_v2` for the TCP socket of `tuple` in TIME-WAIT with `cookie`.
fn request(tuple: &FourTuple, cookie: [u8; 8]) -> [u8; REQUEST_LEN] {
    let mut request = [0u8; REQUEST_LEN];
    request[0] = match tuple.local {
        SocketAddr::V4(_) => libc::AF_INET as u8,
        SocketAddr::V6(_) => libc::AF_INET6 as u8,
    };
    request[1] = libc::IPPROTO_TCP as u8;
    request[4..8].copy_from_slice(&(1u32 << TCP_TIME_WAIT).to_ne_bytes());
    let id = &mut request[ID_AT_REQUEST..];
    // The socket's own view: source = the served address, destination = the client.
    id[0..2].copy_from_slice(&tuple.local.port().to_be_bytes());
    id[2..4].copy_from_slice(&tuple.remote.port().to_be_bytes());
    for (at, address) in [(4, tuple.local.ip()), (20, tuple.remote.ip())] {
        match address {
            IpAddr::V4(address) => id[at..at + 4].copy_from_slice(&address.octets()),
            IpAddr::V6(address) => id[at..at + 16].copy_from_slice(&address.octets()),
        }
    }
    id[COOKIE_AT..COOKIE_AT + 8].copy_from_slice(&cookie);
    request
}

/// Sends one request and returns the payload of the kernel's answer: `None` when it answered
/// "no such socket", an empty payload for a plain acknowledgment.
fn exchange(
    socket: &Socket,
    kind: u16,
    flags: u16,
    payload: &[u8; REQUEST_LEN],
) -> io::Result<Option<Vec<u8>>> {
    let mut message = Vec::with_capacity(NLMSG_HEADER_LEN + REQUEST_LEN);
    let length = (NLMSG_HEADER_LEN + REQUEST_LEN) as u32;
    message.extend_from_slice(&length.to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&[0; 8]); // sequence number and port id
    message.extend_from_slice(payload);
    socket.send(&message)?;
    let mut reply = [0u8; 1024];
    let read = (&*socket).read(&mut reply)?;
    let reply = &reply[..read];
    if reply.len() < NLMSG_HEADER_LEN + 4 {
        return Err(io::Error::other("a short sock_diag reply"));
    }
    let body = &reply[NLMSG_HEADER_LEN..];
    if u16::from_ne_bytes([reply[4], reply[5]]) == NLMSG_ERROR {
        return match -i32::from_ne_bytes(body[0..4].try_into().expect("4 bytes")) {
            0 => Ok(Some(Vec::new())),
            libc::ENOENT => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    Ok(Some(body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_request_names_the_socket_from_its_own_side() {
        let tuple = FourTuple {
            local: "198.18.0.1:80".parse().unwrap(),
            remote: "198.18.0.2:45678".parse().unwrap(),
        };
        let request = request(&tuple, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(request[0], libc::AF_INET as u8);
        assert_eq!(request[1], 6);
        assert_eq!(
            u32::from_ne_bytes(request[4..8].try_into().unwrap()),
            1 << 6
        );
        assert_eq!(&request[8..12], &[0, 80, 0xb2, 0x6e]);
        assert_eq!(&request[12..16], &[198, 18, 0, 1]);
        assert_eq!(&request[28..32], &[198, 18, 0, 2]);
        assert_eq!(&request[48..56], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }
}
