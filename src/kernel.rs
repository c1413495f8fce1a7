//! What the kernel of the calling thread's network namespace is set up to do, read from
//! /proc: the window scale its listeners offer, and whether a socket listens on an address.
//!
//! Reads only; `/proc/thread-self` and `/proc/sys/net` show the namespace of the calling thread,
//! which may differ from the process's (a thread that entered a lab namespace).

use std::io;
use std::net::{IpAddr, SocketAddr};

/// `st` of a listening socket in /proc/net/tcp (TCP_LISTEN).
const LISTEN: &str = "0A";

/// The window-scale shift the kernel offers: enough for its largest receive buffer
/// (`tcp_select_initial_window`: log2 of max(tcp_rmem\[2\], rmem_max), minus 15, at most 14).
pub fn window_scale() -> Option<u8> {
    let read_last = |path: &str| -> Option<u64> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .last()?
            .parse()
            .ok()
    };
    let space =
        read_last("/proc/sys/net/ipv4/tcp_rmem")?.max(read_last("/proc/sys/net/core/rmem_max")?);
    Some((space.max(1).ilog2().saturating_sub(15)).min(14) as u8)
}

/// Whether a TCP socket listens where connections to `address` would go: on its port, at its
/// address or at the wildcard address of its family (for the wildcard `address`, at any
/// address of the family).
pub fn listening_on(address: SocketAddr) -> io::Result<bool> {
    let table = match address.ip() {
        IpAddr::V4(_) => "/proc/thread-self/net/tcp",
        IpAddr::V6(_) => "/proc/thread-self/net/tcp6",
    };
    let text = match std::fs::read_to_string(table) {
        Ok(text) => text,
        // No IPv6 in this kernel or namespace: nothing listens there.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    Ok(text.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace();
        let (Some(local), Some(state)) = (fields.nth(1), fields.nth(1)) else {
            return false;
        };
        state == LISTEN && local_matches(local, address)
    }))
}

/// Whether a `local_address` field of /proc/net/tcp{,6} (`ADDR:PORT` in hex, the address in
/// the kernel's byte order) takes connections to `address`.
fn local_matches(local: &str, address: SocketAddr) -> bool {
    let Some((hex_address, hex_port)) = local.split_once(':') else {
        return false;
    };
    if u16::from_str_radix(hex_port, 16).ok() != Some(address.port()) {
        return false;
    }
    let Some(listening) = parse_address(hex_address) else {
        return false;
    };
    listening.is_unspecified() || address.ip().is_unspecified() || listening == address.ip()
}

/// An address of /proc/net/tcp (8 hex digits) or tcp6 (32): 32-bit words in host byte order.
fn parse_address(hex: &str) -> Option<IpAddr> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut octets = Vec::with_capacity(16);
    for word in words {
        octets.extend_from_slice(&word.to_ne_bytes());
    }
    match octets.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(octets).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(octets).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_proc_net_addresses_are_read() {
        // 198.18.0.1 in the kernel's byte order on a little-endian machine.
        let v4 = u32::from_ne_bytes([198, 18, 0, 1]);
        let local = format!("{v4:08X}:0050");
        assert!(local_matches(&local, "198.18.0.1:80".parse().unwrap()));
        assert!(local_matches(&local, "0.0.0.0:80".parse().unwrap()));
        assert!(!local_matches(&local, "198.18.0.1:81".parse().unwrap()));
        assert!(!local_matches(&local, "198.18.0.2:80".parse().unwrap()));
        assert!(local_matches(
            "00000000:0050",
            "198.18.0.9:80".parse().unwrap()
        ));
        let words: String = [0x2001_0002u32.to_be(), 0, 0, 1u32.to_be()]
            .iter()
            .map(|word| format!("{:08X}", u32::from_ne_bytes(word.to_ne_bytes())))
            .collect();
        assert_eq!(
            parse_address(&words),
            Some("2001:2::1".parse().unwrap()),
            "{words}"
        );
    }

    #[test]
    fn test_a_listener_is_seen() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        assert!(listening_on(address).unwrap());
        drop(listener);
        assert!(!listening_on(address).unwrap());
    }
}
