//! Frame parsing: Ethernet → (802.1Q) → IPv4/IPv6 → TCP, classified as ours, not ours, or
//! malformed. See the module doc of [`crate::wire`] for fragments and extension headers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;

use etherparse::{
    EtherType, Ethernet2Slice, IpNumber, Ipv4Slice, Ipv6ExtensionSlice, Ipv6Slice, SingleVlanSlice,
};

use super::checksum::Sum;
use super::options::TcpOptions;
use super::{Endpoints, LinkAddrs, TcpFlags, TcpRepr};
use crate::seq::SeqNumber;

const ETHERNET_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;
const ETHER_TYPE_IPV4: u16 = EtherType::IPV4.0;
const ETHER_TYPE_IPV6: u16 = EtherType::IPV6.0;
const ETHER_TYPE_VLAN: u16 = EtherType::VLAN_TAGGED_FRAME.0;
/// Version 4, a header of 5 words: no options.
const IPV4_PLAIN_VERSION_AND_IHL: u8 = 0x45;
/// More-fragments and the fragment offset.
const IPV4_FRAGMENT_BITS: u16 = 0x3fff;

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
    let mut parsed = Parsed::NotOurs;
    parse_into(frame, served, &mut parsed);
    parsed
}

/// [`parse`], written into `parsed`. A batch parses its frames into place: a returned `Parsed`
/// (128 bytes) was built on the stack and copied there, and the copy stalled on the bytes just
/// written (store forwarding), about 8 ns of a batched SYN's 160.
#[inline]
pub fn parse_into<'a>(frame: &'a [u8], served: &Endpoints, parsed: &mut Parsed<'a>) {
    if !parse_plain(frame, served, parsed) {
        *parsed = parse_sliced(frame, served);
    }
}

/// The whole parse, every layer sliced by etherparse.
fn parse_sliced<'a>(frame: &'a [u8], served: &Endpoints) -> Parsed<'a> {
    let Some((link, ether_type, network)) = link_layer(frame) else {
        return Parsed::Malformed(Malformed::Ethernet);
    };
    match ether_type {
        EtherType::IPV4 => parse_ipv4(link, network, served),
        EtherType::IPV6 => parse_ipv6(link, network, served),
        _ => Parsed::NotOurs,
    }
}

/// Parses what nearly every frame to a served port is into `parsed`: at most one 802.1Q tag,
/// an IPv4 header without options and not fragmented, or an IPv6 header followed by TCP, to a
/// served address; read field by field, where slicing each layer cost a SYN a tenth of its
/// handling. False, `parsed` untouched, for anything else, valid or not, which
/// [`parse_sliced`] then classifies; where this parses, its verdict is `parse_sliced`'s (a
/// property test holds them to it). The segment is parsed right where its addresses are read:
/// handed on through temporaries first, the addresses were written in pieces and read back
/// whole, a store-forwarding stall on every frame.
#[inline(always)]
fn parse_plain<'a>(frame: &'a [u8], served: &Endpoints, parsed: &mut Parsed<'a>) -> bool {
    // Addresses are read as whole integers: built byte by byte, they were stored byte by byte
    // and read back whole, another stall.
    let be16 = |bytes: &[u8], at: usize| u16::from_be_bytes([bytes[at], bytes[at + 1]]);
    let be32 = |bytes: &[u8], at: usize| {
        u32::from_be_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
    };
    let be128 = |bytes: &[u8], at: usize| {
        u128::from_be_bytes(bytes[at..at + 16].try_into().expect("sixteen bytes"))
    };
    let Some(header) = frame.first_chunk::<ETHERNET_LEN>() else {
        return false;
    };
    let mut link = LinkAddrs {
        dst: header[0..6].try_into().expect("six bytes"),
        src: header[6..12].try_into().expect("six bytes"),
        vlan: None,
    };
    let (ether_type, packet) = match be16(header, 12) {
        ETHER_TYPE_VLAN => {
            let Some(tag) = frame[ETHERNET_LEN..].first_chunk::<VLAN_TAG_LEN>() else {
                return false;
            };
            link.vlan = Some(be16(tag, 0));
            (be16(tag, 2), &frame[ETHERNET_LEN + VLAN_TAG_LEN..])
        }
        ether_type => (ether_type, &frame[ETHERNET_LEN..]),
    };
    match ether_type {
        ETHER_TYPE_IPV4 => {
            let Some(header) = packet.first_chunk::<IPV4_LEN>() else {
                return false;
            };
            let total_len = usize::from(be16(header, 2));
            let fragmented = be16(header, 6) & IPV4_FRAGMENT_BITS != 0;
            let dst = IpAddr::V4(Ipv4Addr::from_bits(be32(header, 16)));
            if header[0] != IPV4_PLAIN_VERSION_AND_IHL
                || header[9] != IpNumber::TCP.0
                || fragmented
                || !(IPV4_LEN..=packet.len()).contains(&total_len)
                || !served.serves_address(dst)
                || !Sum::default().add_bytes(header).verifies()
            {
                return false;
            }
            let src = IpAddr::V4(Ipv4Addr::from_bits(be32(header, 12)));
            let segment = &packet[IPV4_LEN..total_len];
            *parsed = parse_tcp(link, src, dst, header[8], segment, served);
        }
        ETHER_TYPE_IPV6 => {
            let Some(header) = packet.first_chunk::<IPV6_LEN>() else {
                return false;
            };
            let payload_len = usize::from(be16(header, 4));
            let dst = IpAddr::V6(Ipv6Addr::from_bits(be128(header, 24)));
            if header[0] >> 4 != 6
                || header[6] != IpNumber::TCP.0
                || payload_len == 0
                || IPV6_LEN + payload_len > packet.len()
                || !served.serves_address(dst)
            {
                return false;
            }
            let src = IpAddr::V6(Ipv6Addr::from_bits(be128(header, 8)));
            let segment = &packet[IPV6_LEN..IPV6_LEN + payload_len];
            *parsed = parse_tcp(link, src, dst, header[7], segment, served);
        }
        _ => return false,
    }
    true
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

/// The TCP header of `segment`, whose addresses are served: read field by field (it is the
/// same on every path, and slicing it costs more than reading it). Inlined, so that its
/// segment is built where the caller keeps it.
#[inline(always)]
fn parse_tcp<'a>(
    link: LinkAddrs,
    src: IpAddr,
    dst: IpAddr,
    hop_limit: u8,
    segment: &'a [u8],
    served: &Endpoints,
) -> Parsed<'a> {
    let Some(header) = segment.first_chunk::<TCP_LEN>() else {
        return Parsed::Malformed(Malformed::TcpHeader);
    };
    let be16 = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let header_len = usize::from(header[12] >> 4) * 4;
    if header_len < TCP_LEN || header_len > segment.len() {
        return Parsed::Malformed(Malformed::TcpHeader);
    }
    let (src_port, dst_port) = (be16(0), be16(2));
    if !served.serves(dst, dst_port) {
        return Parsed::NotOurs;
    }
    if src_port == 0 {
        return Parsed::Malformed(Malformed::TcpHeader);
    }
    if !Sum::pseudo_header(src, dst, segment.len())
        .add_bytes(segment)
        .verifies()
    {
        return Parsed::Malformed(Malformed::TcpChecksum);
    }
    let Ok(options) = TcpOptions::parse(&segment[TCP_LEN..header_len]) else {
        return Parsed::Malformed(Malformed::TcpOptions);
    };
    Parsed::Ours(TcpRepr {
        link,
        src: SocketAddr::new(src, src_port),
        dst: SocketAddr::new(dst, dst_port),
        hop_limit,
        seq: SeqNumber(be32(4)),
        ack: SeqNumber(be32(8)),
        flags: TcpFlags(header[13]),
        window: be16(14),
        options,
        payload: &segment[header_len..],
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{TcpOptions, Timestamps, emit};

    fn served() -> Endpoints {
        Endpoints::new([
            "198.18.0.1:80".parse().unwrap(),
            "[2001:2::1]:80".parse().unwrap(),
        ])
    }

    /// A SYN to a served endpoint, as a frame: IPv4 or IPv6, tagged or not, with payload.
    fn frame(ipv6: bool, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
        let (src, dst) = if ipv6 {
            ("[2001:2::8]:40000", "[2001:2::1]:80")
        } else {
            ("198.18.0.8:40000", "198.18.0.1:80")
        };
        let repr = TcpRepr {
            link: LinkAddrs {
                src: [2, 0, 0, 0, 0, 1],
                dst: [2, 0, 0, 0, 0, 2],
                vlan,
            },
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            hop_limit: 64,
            seq: SeqNumber(7),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { value: 1, echo: 0 }),
            },
            payload,
        };
        let mut frame = vec![0; 200];
        let len = emit(&repr, &mut frame).unwrap();
        frame.truncate(len);
        frame
    }

    proptest! {
        /// Where the field-by-field reading of the IP layer answers, the parse is the sliced
        /// one's; it answers for every well-formed plain frame; mutations anywhere (addresses, lengths, versions,
        /// fragment bits, checksums, options) and truncation or padding change neither.
        #[test]
        fn test_plain_segment_agrees_with_the_sliced_parse(
            ipv6 in any::<bool>(),
            vlan in proptest::option::of(any::<u16>()),
            payload in proptest::collection::vec(any::<u8>(), 0..20),
            mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            new_len in proptest::option::of(any::<usize>()),
        ) {
            let mut frame = frame(ipv6, vlan, &payload);
            let served = served();
            let mut whole = Parsed::NotOurs;
            prop_assert!(parse_plain(&frame, &served, &mut whole));
            prop_assert!(matches!(whole, Parsed::Ours(_)));
            for (at, value) in mutations {
                let at = at % frame.len();
                frame[at] = value;
            }
            if let Some(new_len) = new_len {
                frame.resize(new_len % (frame.len() + 8), 0);
            }
            let mut plain = Parsed::NotOurs;
            if parse_plain(&frame, &served, &mut plain) {
                prop_assert_eq!(plain, parse_sliced(&frame, &served));
            }
        }
    }
}
