//! The PROXY protocol header (HAProxy's, v1 text and v2 binary) that tells the upstream each
//! client's address before the client's bytes.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Whether, and how, the upstream is told the client's address (the HAProxy PROXY protocol).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// No header: the upstream sees the client's bytes only.
    #[default]
    Off,
    /// The text header, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`).
    V1,
    /// The binary header: signature, PROXY command, TCP over IPv4 or IPv6, addresses, ports.
    V2,
}

/// The signature that starts a version 2 header.
pub(super) const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
pub(super) const V2_PROXY: u8 = 0x21;
/// Address family and transport: TCP over IPv4, TCP over IPv6.
pub(super) const V2_TCP4: u8 = 0x11;
pub(super) const V2_TCP6: u8 = 0x21;
/// The length of what follows the length field: two addresses and two ports.
pub(super) const V2_TCP4_LEN: u16 = 2 * 4 + 2 * 2;
pub(super) const V2_TCP6_LEN: u16 = 2 * 16 + 2 * 2;

impl ProxyProtocol {
    /// The longest header [`ProxyProtocol::emit`] writes: version 1 over IPv6 with the longest
    /// addresses and ports (a version 2 header takes at most 52 bytes).
    pub const MAX_HEADER_LEN: usize = 104;

    /// Writes the header announcing a connection from `source` to `destination` at the start
    /// of `out` and returns its length; 0 when off. Both addresses are sent in one family: an
    /// IPv4 address paired with an IPv6 one goes as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    ///
    /// Panics if `out` is shorter than the header ([`ProxyProtocol::MAX_HEADER_LEN`] is
    /// always enough).
    pub fn emit(self, source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
        match self {
            ProxyProtocol::Off => 0,
            ProxyProtocol::V1 => emit_v1(source, destination, out),
            ProxyProtocol::V2 => emit_v2(source, destination, out),
        }
    }
}

/// The addresses of a header, in one family.
pub(super) enum Addresses {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Addresses {
    /// IPv4 when both are, IPv6 otherwise (IPv4 addresses mapped).
    fn of(source: SocketAddr, destination: SocketAddr) -> Addresses {
        match (source.ip(), destination.ip()) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => Addresses::V4(source, destination),
            (source, destination) => Addresses::V6(to_ipv6(source), to_ipv6(destination)),
        }
    }
}

pub(super) fn to_ipv6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// `PROXY TCP4 198.18.0.1 198.18.0.11 56324 443\r\n` (the form of the spec's example, section 2.1).
pub(super) fn emit_v1(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
    let mut rest = &mut out[..];
    let written = match Addresses::of(source, destination) {
        Addresses::V4(s, d) => write!(rest, "PROXY TCP4 {s} {d} "),
        Addresses::V6(s, d) => write!(rest, "PROXY TCP6 {s} {d} "),
    }
    .and_then(|()| write!(rest, "{} {}\r\n", source.port(), destination.port()));
    written.expect("the output holds MAX_HEADER_LEN bytes");
    let unused = rest.len();
    out.len() - unused
}

/// Signature, 0x21, 0x11 or 0x21, length of the rest (big endian), source and destination
/// addresses, source and destination ports (spec section 2.2).
pub(super) fn emit_v2(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
    let mut len = 0;
    let mut put = |field: &[u8]| {
        out[len..len + field.len()].copy_from_slice(field);
        len += field.len();
    };
    put(&V2_SIGNATURE);
    match Addresses::of(source, destination) {
        Addresses::V4(s, d) => {
            put(&[V2_PROXY, V2_TCP4]);
            put(&V2_TCP4_LEN.to_be_bytes());
            put(&s.octets());
            put(&d.octets());
        }
        Addresses::V6(s, d) => {
            put(&[V2_PROXY, V2_TCP6]);
            put(&V2_TCP6_LEN.to_be_bytes());
            put(&s.octets());
            put(&d.octets());
        }
    }
    put(&source.port().to_be_bytes());
    put(&destination.port().to_be_bytes());
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_emit_off_writes_nothing() {
        let mut out = [0xa5; 8];
        let (source, destination) = (
            "198.18.0.1:1".parse().unwrap(),
            "198.18.0.2:2".parse().unwrap(),
        );
        assert_eq!(ProxyProtocol::Off.emit(source, destination, &mut out), 0);
        assert_eq!(out, [0xa5; 8]);
    }

    /// Emits into a buffer pre-filled with 0xa5 and checks the bytes after the header stay so.
    #[track_caller]
    fn emitted(protocol: ProxyProtocol, source: &str, destination: &str) -> Vec<u8> {
        let mut out = [0xa5; ProxyProtocol::MAX_HEADER_LEN + 8];
        let len = protocol.emit(
            source.parse().unwrap(),
            destination.parse().unwrap(),
            &mut out,
        );
        assert!(out[len..].iter().all(|&byte| byte == 0xa5));
        out[..len].to_vec()
    }

    #[test]
    fn test_emit_v1_tcp4_in_the_form_of_the_spec_example() {
        assert_eq!(
            emitted(ProxyProtocol::V1, "198.18.0.1:56324", "198.18.0.11:443"),
            b"PROXY TCP4 198.18.0.1 198.18.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn test_emit_v1_longest_headers() {
        assert_eq!(
            emitted(
                ProxyProtocol::V1,
                "255.255.255.255:65535",
                "255.255.255.255:65535"
            ),
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let longest = emitted(
            ProxyProtocol::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        );
        let expected = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest, expected.as_bytes());
        assert_eq!(longest.len(), ProxyProtocol::MAX_HEADER_LEN);
    }

    #[test]
    fn test_emit_v1_mixed_families_go_as_ipv6() {
        assert_eq!(
            emitted(ProxyProtocol::V1, "198.18.0.1:1234", "[2001:2::2]:443"),
            b"PROXY TCP6 ::ffff:198.18.0.1 2001:2::2 1234 443\r\n"
        );
    }

    #[test]
    fn test_emit_v2_tcp4() {
        let expected = [
            &b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"[..],
            &[0x21, 0x11, 0x00, 0x0c],
            &[198, 18, 0, 1, 198, 18, 0, 11],
            &[0xdc, 0x04, 0x01, 0xbb],
        ]
        .concat();
        assert_eq!(
            emitted(ProxyProtocol::V2, "198.18.0.1:56324", "198.18.0.11:443"),
            expected
        );
    }

    #[test]
    fn test_emit_v2_tcp6() {
        let expected = [
            &b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"[..],
            &[0x21, 0x21, 0x00, 0x24],
            &[
                0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            ],
            &[
                0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            ],
            &[0xdc, 0x04, 0x01, 0xbb],
        ]
        .concat();
        assert_eq!(
            emitted(ProxyProtocol::V2, "[2001:2::1]:56324", "[2001:2::2]:443"),
            expected
        );
        let mixed = emitted(ProxyProtocol::V2, "198.18.0.1:1", "[2001:2::2]:2");
        assert_eq!(mixed[13], 0x21);
        assert_eq!(
            mixed[16..32],
            Ipv4Addr::new(198, 18, 0, 1).to_ipv6_mapped().octets()
        );
    }
}
