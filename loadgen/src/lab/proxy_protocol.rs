//! The PROXY protocol header (HAProxy's v1 text and v2 binary forms) that the built-in
//! service reads at the start of a connection when it sits behind a proxy: the real client's
//! address, or none when the header says to use the connection's own peer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::lab::service::MAX_REQUEST;

/// The first 12 bytes of a v2 PROXY header.
pub(super) const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a v1 PROXY header starts.
const PROXY_V1_START: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included.
const PROXY_V1_MAX: usize = 107;

/// A PROXY protocol header at the start of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ProxyHeader {
    /// Not all there yet.
    Incomplete,
    Malformed,
    /// `length` bytes long, naming `client`; `None` when the header says to use the
    /// connection's own peer (v1 `UNKNOWN`, v2 `LOCAL` or an unspecified or Unix family).
    Parsed {
        length: usize,
        client: Option<IpAddr>,
    },
}

pub(super) fn parse_proxy_header(bytes: &[u8]) -> ProxyHeader {
    if bytes.starts_with(PROXY_V2_SIGNATURE) {
        parse_proxy_v2(bytes)
    } else if bytes.starts_with(PROXY_V1_START) {
        parse_proxy_v1(bytes)
    } else if PROXY_V2_SIGNATURE.starts_with(bytes) || PROXY_V1_START.starts_with(bytes) {
        ProxyHeader::Incomplete
    } else {
        ProxyHeader::Malformed
    }
}

/// `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`, or
/// `PROXY UNKNOWN<anything>\r\n`.
fn parse_proxy_v1(bytes: &[u8]) -> ProxyHeader {
    let Some(end) = bytes.windows(2).position(|window| window == b"\r\n") else {
        return if bytes.len() < PROXY_V1_MAX {
            ProxyHeader::Incomplete
        } else {
            ProxyHeader::Malformed
        };
    };
    let length = end + 2;
    let Ok(line) = std::str::from_utf8(&bytes[..end]) else {
        return ProxyHeader::Malformed;
    };
    let mut fields = line.split(' ').skip(1);
    let family = fields.next().unwrap_or_default();
    let client = match family {
        _ if length > PROXY_V1_MAX => return ProxyHeader::Malformed,
        "UNKNOWN" => None,
        "TCP4" | "TCP6" => match parse_proxy_v1_client(family, fields) {
            Some(client) => Some(client),
            None => return ProxyHeader::Malformed,
        },
        _ => return ProxyHeader::Malformed,
    };
    ProxyHeader::Parsed { length, client }
}

/// The source of `<source> <destination> <source port> <destination port>` in a `TCP4` or
/// `TCP6` line, if the line is well-formed.
fn parse_proxy_v1_client<'a>(
    family: &str,
    mut fields: impl Iterator<Item = &'a str>,
) -> Option<IpAddr> {
    let address = |field: &str| match family {
        "TCP4" => field.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        _ => field.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
    };
    let source = address(fields.next()?)?;
    address(fields.next()?)?;
    for _port in 0..2 {
        fields.next()?.parse::<u16>().ok()?;
    }
    fields.next().is_none().then_some(source)
}

/// The signature, version and command, family and protocol, the length of what follows (big
/// endian), then the addresses (and TLVs, ignored).
fn parse_proxy_v2(bytes: &[u8]) -> ProxyHeader {
    let Some(&[version_command, family_protocol, length_high, length_low]) = bytes.get(12..16)
    else {
        return ProxyHeader::Incomplete;
    };
    let length = 16 + usize::from(u16::from_be_bytes([length_high, length_low]));
    if version_command >> 4 != 2 || family_protocol & 0x0f > 2 || length > MAX_REQUEST {
        return ProxyHeader::Malformed;
    }
    let Some(addresses) = bytes.get(16..length) else {
        return ProxyHeader::Incomplete;
    };
    let client = match (version_command & 0x0f, family_protocol >> 4) {
        // LOCAL: the proxy's own connection (a health check); the addresses are ignored.
        (0, _) | (1, 0 | 3) => None,
        (1, 1) => match addresses.get(..4).map(<[u8; 4]>::try_from) {
            Some(Ok(source)) if addresses.len() >= 12 => Some(IpAddr::from(source)),
            _ => return ProxyHeader::Malformed,
        },
        (1, 2) => match addresses.get(..16).map(<[u8; 16]>::try_from) {
            Some(Ok(source)) if addresses.len() >= 36 => Some(IpAddr::from(source)),
            _ => return ProxyHeader::Malformed,
        },
        _ => return ProxyHeader::Malformed,
    };
    ProxyHeader::Parsed { length, client }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::service::testing::{GET_10, proxy_v2, proxy_v2_tcp4};

    #[test]
    fn test_proxy_headers_parse() {
        let v1 = b"PROXY TCP4 198.18.200.7 198.18.0.1 40000 80\r\nGET";
        let parsed = |length, client: IpAddr| ProxyHeader::Parsed {
            length,
            client: Some(client),
        };
        let source: IpAddr = Ipv4Addr::new(198, 18, 200, 7).into();
        assert_eq!(parse_proxy_header(v1), parsed(v1.len() - 3, source));
        let v1_tcp6 = b"PROXY TCP6 2001:2::1 2001:2::2 40000 80\r\n";
        let source_v6: Ipv6Addr = "2001:2::1".parse().unwrap();
        assert_eq!(
            parse_proxy_header(v1_tcp6),
            parsed(v1_tcp6.len(), source_v6.into())
        );
        let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(
            parse_proxy_header(unknown),
            ProxyHeader::Parsed {
                length: unknown.len(),
                client: None
            }
        );
        let v2 = proxy_v2_tcp4(Ipv4Addr::new(198, 18, 200, 7));
        assert_eq!(parse_proxy_header(&v2), parsed(v2.len(), source));
        let mut v6_addresses = [0u8; 36];
        v6_addresses[..16].copy_from_slice(&source_v6.octets());
        let v2_tcp6 = proxy_v2(1, 0x21, &v6_addresses);
        assert_eq!(parse_proxy_header(&v2_tcp6), parsed(52, source_v6.into()));
        let local = proxy_v2(0, 0x00, &[]);
        assert_eq!(
            parse_proxy_header(&local),
            ProxyHeader::Parsed {
                length: 16,
                client: None
            }
        );
        // Every strict prefix of a header is incomplete.
        for header in [&v1[..v1.len() - 3], v1_tcp6, &v2, &v2_tcp6] {
            for end in 0..header.len() {
                assert_eq!(parse_proxy_header(&header[..end]), ProxyHeader::Incomplete);
            }
        }
    }

    #[test]
    fn test_proxy_headers_malformed() {
        let malformed = |bytes: &[u8]| parse_proxy_header(bytes) == ProxyHeader::Malformed;
        assert!(malformed(GET_10));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 40000\r\n"));
        assert!(malformed(b"PROXY TCP4 2001:2::1 198.18.0.1 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 1 70000\r\n"));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 1 2 3\r\n"));
        assert!(malformed(b"PROXY UDP4 198.18.0.2 198.18.0.1 1 2\r\n"));
        assert!(malformed(
            &[b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat()
        ));
        let mut version_1 = proxy_v2_tcp4(Ipv4Addr::LOCALHOST);
        version_1[12] = 0x11;
        assert!(malformed(&version_1));
        assert!(malformed(&proxy_v2(1, 0x11, &[198, 18, 0, 2])));
        assert!(malformed(&proxy_v2(2, 0x11, &[0; 12])));
        assert!(malformed(&proxy_v2(1, 0x13, &[0; 12])));
        assert!(malformed(&proxy_v2(1, 0x41, &[0; 12])));
        let mut too_long = proxy_v2(1, 0x11, &[0; 12]);
        too_long[14..16].copy_from_slice(&(MAX_REQUEST as u16).to_be_bytes());
        assert!(malformed(&too_long));
    }
}
