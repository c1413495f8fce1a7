//! Wire formats: Ethernet (+ one 802.1Q tag), IPv4, IPv6 and TCP, parsed into a small
//! [`TcpRepr`] and emitted from one.
//!
//! - [`parse`] classifies a received frame as ours (TCP to a served address and port), not ours
//!   (pass it on), or malformed (a counted drop). It never panics and never allocates; the
//!   returned [`TcpRepr`] borrows its payload from the frame. IP header and TCP checksums are
//!   verified.
//! - [`emit`] writes a frame straight into a caller-provided buffer with correct IPv4 header and
//!   TCP checksums; it writes exactly [`emitted_len`] bytes and nothing else.
//!
//! The layouts nearly every segment to a served port has (at most one 802.1Q tag, then IPv4
//! without options and not fragmented, or IPv6 straight to TCP) are read field by field; every
//! other frame is sliced with `etherparse`, to the same verdict (a property test holds the two
//! to it). The TCP header is read field by field on both paths, and its options are parsed here
//! because a listener must skip unknown options, where etherparse's iterator stops at the first.
//!
//! # Fragments and IPv6 extension headers
//!
//! A handshake segment is a few dozen bytes and never legitimately fragmented (Linux sends it
//! with DF set and IPv6 routers do not fragment). So:
//! - a first fragment (offset 0, more-fragments set) to a served address and port, or one too
//!   short to show its ports, is [`Malformed::Fragment`]: dropped, never answered;
//! - a non-first fragment carries no TCP header and is [`Parsed::NotOurs`]: the kernel gets it
//!   and cannot reassemble it, because the first fragment never reaches it. A fragmented SYN
//!   therefore cannot bypass the listener through the kernel's reassembly.
//! - IPv6 extension headers (hop-by-hop, routing, destination options, authentication) are
//!   walked to the upper-layer header; TCP behind them is handled like any other TCP. The
//!   steering XDP program walks the same chain (see `src/bpf/steer.bpf.c`), so neither path lets a
//!   segment to a served port reach the kernel's listener.

mod checksum;
mod emit;
mod options;
mod parse;
mod tuple;

pub use emit::{BufferTooSmall, emit, emitted_len};
pub use options::{TcpOptions, Timestamps};
pub use parse::{Malformed, Parsed, ip_packet_range, parse, parse_into};
pub use tuple::FourTuple;

use std::net::{IpAddr, SocketAddr};

use crate::seq::SeqNumber;

/// Ethernet addresses and the optional 802.1Q tag of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkAddrs {
    pub src: [u8; 6],
    pub dst: [u8; 6],
    /// The whole 802.1Q tag control information (priority, DEI and VLAN id), if tagged.
    pub vlan: Option<u16>,
}

impl LinkAddrs {
    /// The link addresses of a reply to a frame that carried `self`.
    pub fn reversed(self) -> LinkAddrs {
        LinkAddrs {
            src: self.dst,
            dst: self.src,
            vlan: self.vlan,
        }
    }
}

/// TCP control bits (RFC 9293 §3.1, RFC 3168 for ECE and CWR).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: TcpFlags = TcpFlags(0x01);
    pub const SYN: TcpFlags = TcpFlags(0x02);
    pub const RST: TcpFlags = TcpFlags(0x04);
    pub const PSH: TcpFlags = TcpFlags(0x08);
    pub const ACK: TcpFlags = TcpFlags(0x10);
    pub const URG: TcpFlags = TcpFlags(0x20);
    pub const ECE: TcpFlags = TcpFlags(0x40);
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for TcpFlags {
    type Output = TcpFlags;
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl std::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let set: Vec<&str> = (0..8)
            .filter(|bit| self.0 & (1 << bit) != 0)
            .map(|bit| NAMES[bit])
            .collect();
        write!(f, "TcpFlags({})", set.join("|"))
    }
}

/// A TCP segment in an Ethernet frame: everything synwall reads from or writes to the wire.
///
/// `src` and `dst` are always of the same address family. IPv6 flow information and scope ids
/// are not represented (always zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    pub link: LinkAddrs,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub hop_limit: u8,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    pub flags: TcpFlags,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: &'a [u8],
}

/// The addresses and ports a listener serves. An unspecified address (`0.0.0.0` or `::`)
/// serves every address of its family on that port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoints(Vec<SocketAddr>);

impl Endpoints {
    pub fn new(endpoints: impl IntoIterator<Item = SocketAddr>) -> Endpoints {
        Endpoints(endpoints.into_iter().collect())
    }

    /// Whether TCP to `addr`:`port` is served.
    #[inline]
    pub fn serves(&self, addr: IpAddr, port: u16) -> bool {
        self.0
            .iter()
            .any(|e| e.port() == port && address_matches(e.ip(), addr))
    }

    /// Whether any port of `addr` is served.
    #[inline]
    pub fn serves_address(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|e| address_matches(e.ip(), addr))
    }

    pub fn iter(&self) -> impl Iterator<Item = &SocketAddr> {
        self.0.iter()
    }
}

#[inline]
fn address_matches(served: IpAddr, addr: IpAddr) -> bool {
    served == addr || (served.is_unspecified() && served.is_ipv4() == addr.is_ipv4())
}
