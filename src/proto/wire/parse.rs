//! Frame parsing: Ethernet → (802.1Q) → IPv4/IPv6 → TCP, classified as ours, not ours, or
//! malformed. See the module doc of [`crate::wire`] for fragments and extension headers.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, SingleVlanSlice,
    TcpHeaderSlice,
};

use super::checksum::Sum;
use super::options::TcpOptions;
use super::{Endpoints, LinkAddrs, TcpFlags, TcpRepr};
use crate::seq::SeqNumber;

/// What a received frame is to the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A TCP segment to a served address and port, checksums verified.
    Ours(TcpRepr<'a>),
    /// Anything else: another protocol, address or port. Left to the kernel.
    NotOurs,
    /// A frame that cannot be a valid segment for us; dropped and counted.
    Malformed(Malformed),
}

/// Why a frame was malformed. Each kind is a counted drop reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Shorter than an Ethernet header or its 802.1Q tag.
    Ethernet,
    /// An IPv4 header that cannot be sliced (version, IHL, total length).
    Ipv4Header,
    /// An IPv4 header whose checksum does not verify.
    Ipv4Checksum,
    /// An IPv6 header or extension header chain that cannot be sliced.
    Ipv6Header,
    /// A fragment that would carry a segment to a served port.
    Fragment,
    /// A TCP header that cannot be sliced (data offset, length), or a zero source port.
    TcpHeader,
    /// A TCP option with a malformed length.
    TcpOptions,
    /// A TCP checksum that does not verify.
    TcpChecksum,
}

/// Parses `frame` (an Ethernet frame without FCS). Only TCP to an address and port in `served`
/// is [`Parsed::Ours`].
#[inline]
pub fn parse<'a>(frame: &'a [u8], served: &Endpoints) -> Parsed<'a> {
    let Some((link, ether_type, network)) = link_layer(frame) else {
        return Parsed::Malformed(Malformed::Ethernet);
    };
    match ether_type {
        EtherType::IPV4 => parse_ipv4(link, network, served),
        EtherType::IPV6 => parse_ipv6(link, network, served),
        _ => Parsed::NotOurs,
    }
}

/// The Ethernet header and one optional 802.1Q tag of `frame`: the addresses, the ether type
/// of what follows, and what follows. `None` when they are cut short.
#[inline]
fn link_layer(frame: &[u8]) -> Option<(LinkAddrs, EtherType, &[u8])> {
    let ethernet = Ethernet2Slice::from_slice_without_fcs(frame).ok()?;
    let mut link = LinkAddrs {
        src: ethernet.source(),
        dst: ethernet.destination(),
        vlan: None,
    };
    let (ether_type, network) = match ethernet.ether_type() {
        EtherType::VLAN_TAGGED_FRAME => {
            let vlan = SingleVlanSlice::from_slice(ethernet.payload_slice()).ok()?;
            let tag = vlan.header_slice();
            link.vlan = Some(u16::from_be_bytes([tag[0], tag[1]]));
            (vlan.ether_type(), vlan.payload_slice())
        }
        ether_type => (ether_type, ethernet.payload_slice()),
    };
    Some((link, ether_type, network))
}

/// Where the IP packet of `frame` lies: after the Ethernet header and any VLAN tag, up to the
/// length its IP header gives (short Ethernet frames are padded). `None` without a whole IPv4 or
/// IPv6 packet.
pub fn ip_packet_range(frame: &[u8]) -> Option<Range<usize>> {
    let (_, ether_type, packet) = link_layer(frame)?;
    let start = frame.len() - packet.len();
    let be16 = |at: usize| {
        Some(usize::from(u16::from_be_bytes([
            *packet.get(at)?,
            *packet.get(at + 1)?,
        ])))
    };
    let len = match ether_type {
        EtherType::IPV4 => be16(2)?,
        EtherType::IPV6 => 40 + be16(4)?,
        _ => return None,
    };
    (start + len <= frame.len()).then_some(start..start + len)
}

#[inline]
fn parse_ipv4<'a>(link: LinkAddrs, packet: &'a [u8], served: &Endpoints) -> Parsed<'a> {
    let Ok(ip) = Ipv4Slice::from_slice(packet) else {
        return Parsed::Malformed(Malformed::Ipv4Header);
    };
    let header = ip.header();
    let dst = IpAddr::V4(header.destination_addr());
    if ip.payload_ip_number() != IpNumber::TCP || !served.serves_address(dst) {
        return Parsed::NotOurs;
    }
    if !Sum::default().add_bytes(header.slice()).verifies() {
        return Parsed::Malformed(Malformed::Ipv4Checksum);
    }
    let segment = ip.payload().payload;
    if ip.is_payload_fragmented() {
        return classify_fragment(header.fragments_offset().value() == 0, dst, segment, served);
    }
    let src = IpAddr::V4(header.source_addr());
    parse_tcp(link, src, dst, header.ttl(), segment, served)
}

#[inline]
fn parse_ipv6<'a>(link: LinkAddrs, packet: &'a [u8], served: &Endpoints) -> Parsed<'a> {
    let Ok(ip) = Ipv6Slice::from_slice(packet) else {
        return Parsed::Malformed(Malformed::Ipv6Header);
    };
    let header = ip.header();
    // Payload length 0 means a jumbogram (RFC 2675), which etherparse takes the rest of the
    // frame for, while `ip_packet_range` and every reply go by the header's length. A TCP
    // segment on our links is never one: refused, not answered with a header-only packet.
    if header.payload_length() == 0 {
        return Parsed::Malformed(Malformed::Ipv6Header);
    }
    let dst = IpAddr::V6(header.destination_addr());
    if ip.payload().ip_number != IpNumber::TCP || !served.serves_address(dst) {
        return Parsed::NotOurs;
    }
    let segment = ip.payload().payload;
    if ip.is_payload_fragmented() {
        let first = ip.extensions().clone().into_iter().all(|ext| match ext {
            Ipv6ExtensionSlice::Fragment(fragment) => fragment.fragment_offset().value() == 0,
            _ => true,
        });
        return classify_fragment(first, dst, segment, served);
    }
    let src = IpAddr::V6(header.source_addr());
    parse_tcp(link, src, dst, header.hop_limit(), segment, served)
}

/// A fragment of TCP to a served address: only a first fragment shows the ports.
fn classify_fragment<'a>(
    is_first: bool,
    dst: IpAddr,
    segment: &[u8],
    served: &Endpoints,
) -> Parsed<'a> {
    if !is_first {
        return Parsed::NotOurs;
    }
    match segment.get(2..4) {
        Some(port) if !served.serves(dst, u16::from_be_bytes([port[0], port[1]])) => {
            Parsed::NotOurs
        }
        _ => Parsed::Malformed(Malformed::Fragment),
    }
}

#[inline]
fn parse_tcp<'a>(
    link: LinkAddrs,
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    segment: &'a [u8],
    served: &Endpoints,
) -> Parsed<'a> {
    let Ok(tcp) = TcpHeaderSlice::from_slice(segment) else {
        return Parsed::Malformed(Malformed::TcpHeader);
    };
    let dst_port = tcp.destination_port();
    if !served.serves(dst, dst_port) {
        return Parsed::NotOurs;
    }
    if tcp.source_port() == 0 {
        return Parsed::Malformed(Malformed::TcpHeader);
    }
    if !Sum::pseudo_header(src, dst, segment.len())
        .add_bytes(segment)
        .verifies()
    {
        return Parsed::Malformed(Malformed::TcpChecksum);
    }
    let Ok(options) = TcpOptions::parse(tcp.options()) else {
        return Parsed::Malformed(Malformed::TcpOptions);
    };
    let header = tcp.slice();
    Parsed::Ours(TcpRepr {
        link,
        src: SocketAddr::new(src, tcp.source_port()),
        dst: SocketAddr::new(dst, dst_port),
        hop_limit,
        seq: SeqNumber(tcp.sequence_number()),
        ack: SeqNumber(tcp.acknowledgment_number()),
        flags: TcpFlags(header[13]),
        window: tcp.window_size(),
        options,
        payload: &segment[header.len()..],
    })
}
