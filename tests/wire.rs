//! Wire tests: frames built by etherparse's own builder parse as expected; what we emit parses
//! in etherparse with matching checksums; every malformed kind is classified.

mod common;

use std::net::SocketAddr;

use common::{CLIENT_MAC, Client, SERVER_MAC, frame, linux_options};
use etherparse::{PacketBuilder, TcpOptionElement};
use synwall::seq::SeqNumber;
use synwall::wire::{
    self, Endpoints, Malformed, Parsed, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};

fn served() -> Endpoints {
    Endpoints::new([
        "198.18.0.1:80".parse().unwrap(),
        "[2001:2::1]:80".parse().unwrap(),
    ])
}

fn parse(frame: &[u8]) -> Parsed<'_> {
    wire::parse(frame, &served())
}

#[track_caller]
fn ours(frame: &[u8]) -> TcpRepr<'_> {
    match parse(frame) {
        Parsed::Ours(repr) => repr,
        other => panic!("expected ours, got {other:?}"),
    }
}

fn etherparse_syn(vlan: Option<u16>) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC);
    let options = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(100, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(7),
    ];
    let payload = b"syn data";
    let mut out = Vec::new();
    match vlan {
        Some(id) => builder
            .single_vlan(etherparse::VlanId::try_new(id).unwrap())
            .ipv4([198, 18, 3, 4], [198, 18, 0, 1], 61)
            .tcp(40000, 80, 0xfffffff0, 64240)
            .syn()
            .options(&options)
            .unwrap()
            .write(&mut out, payload)
            .unwrap(),
        None => builder
            .ipv6(
                "2001:2::7".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                "2001:2::1".parse::<std::net::Ipv6Addr>().unwrap().octets(),
                61,
            )
            .tcp(40000, 80, 0xfffffff0, 64240)
            .syn()
            .options(&options)
            .unwrap()
            .write(&mut out, payload)
            .unwrap(),
    }
    out
}

#[test]
fn test_parse_etherparse_built_ipv4_vlan_syn() {
    let frame = etherparse_syn(Some(42));
    let repr = ours(&frame);
    assert_eq!(repr.link.vlan, Some(42));
    assert_eq!(repr.link.src, CLIENT_MAC);
    assert_eq!(repr.src, "198.18.3.4:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(repr.dst, "198.18.0.1:80".parse::<SocketAddr>().unwrap());
    assert_eq!(repr.hop_limit, 61);
    assert_eq!(repr.seq, SeqNumber(0xfffffff0));
    assert_eq!(repr.flags, TcpFlags::SYN);
    assert_eq!(repr.window, 64240);
    assert_eq!(repr.options, linux_options(100));
    assert_eq!(repr.payload, b"syn data");
}

#[test]
fn test_parse_etherparse_built_ipv6_syn() {
    let frame = etherparse_syn(None);
    let repr = ours(&frame);
    assert_eq!(repr.src, "[2001:2::7]:40000".parse::<SocketAddr>().unwrap());
    assert_eq!(repr.link.vlan, None);
    assert_eq!(repr.payload, b"syn data");
}

/// Found by fuzzing (tests/fuzz/regressions/wire_parse/ipv6-payload-length-zero): payload
/// length 0 (a jumbogram without its option) made the segment and `ip_packet_range` disagree.
#[test]
fn test_parse_refuses_ipv6_payload_length_zero() {
    let mut frame = etherparse_syn(None);
    frame[18..20].copy_from_slice(&[0, 0]);
    assert_malformed(&frame, Malformed::Ipv6Header);
}

#[test]
fn test_parse_ignores_ethernet_padding() {
    let client = Client::new("198.18.3.4:40000", 1, TcpOptions::default());
    let mut frame = frame(&client.segment(TcpFlags::RST, SeqNumber(1), SeqNumber(0)));
    assert_eq!(frame.len(), 54);
    frame.resize(60, 0);
    assert!(ours(&frame).payload.is_empty());
}

#[test]
fn test_emit_matches_etherparse_and_writes_exactly_its_length() {
    for addr in ["198.18.3.4:40000", "[2001:2::7]:40000"] {
        for vlan in [None, Some(7)] {
            let mut client = Client::new(addr, 77, linux_options(5));
            client.link.vlan = vlan;
            let repr = TcpRepr {
                payload: b"0123456789",
                ..client.syn()
            };
            let len = wire::emitted_len(&repr);
            let mut buf = vec![0xa5; len + 16];
            assert_eq!(wire::emit(&repr, &mut buf), Ok(len));
            assert!(
                buf[len..].iter().all(|&b| b == 0xa5),
                "wrote past the frame"
            );

            let sliced = etherparse::SlicedPacket::from_ethernet(&buf[..len]).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
                panic!("etherparse sees no TCP");
            };
            let expected = match sliced.net.unwrap() {
                etherparse::NetSlice::Ipv4(ip) => {
                    let header = ip.header().to_header();
                    assert_eq!(header.header_checksum, header.calc_header_checksum());
                    assert!(header.dont_fragment);
                    tcp.to_header()
                        .calc_checksum_ipv4(&header, tcp.payload())
                        .unwrap()
                }
                etherparse::NetSlice::Ipv6(ip) => tcp
                    .to_header()
                    .calc_checksum_ipv6(&ip.header().to_header(), tcp.payload())
                    .unwrap(),
                etherparse::NetSlice::Arp(_) => unreachable!(),
            };
            assert_eq!(tcp.checksum(), expected, "{addr} {vlan:?}");
            assert_eq!(tcp.payload(), b"0123456789");
        }
    }
}

#[test]
fn test_emit_refuses_small_buffer() {
    let repr = Client::new("198.18.3.4:40000", 77, linux_options(5)).syn();
    let mut buf = [0u8; 40];
    let error = wire::emit(&repr, &mut buf).unwrap_err();
    assert_eq!(error.available, 40);
    assert_eq!(error.needed, wire::emitted_len(&repr));
}

#[test]
fn test_parse_not_ours() {
    let client = Client::new("198.18.3.4:40000", 1, linux_options(1));
    let other_port = frame(&TcpRepr {
        dst: "198.18.0.1:22".parse().unwrap(),
        ..client.syn()
    });
    let other_address = frame(&TcpRepr {
        dst: "198.18.0.9:80".parse().unwrap(),
        ..client.syn()
    });
    let mut udp = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, SERVER_MAC)
        .ipv4([198, 18, 3, 4], [198, 18, 0, 1], 64)
        .udp(53, 80)
        .write(&mut udp, b"dns")
        .unwrap();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let mut double_tagged = frame(&client.syn());
    double_tagged[12..14].copy_from_slice(&[0x88, 0xa8]);
    for frame in [other_port, other_address, udp, arp, double_tagged] {
        assert_eq!(parse(&frame), Parsed::NotOurs);
    }
}

#[test]
fn test_parse_wildcard_endpoint_serves_any_address_of_its_family() {
    let client = Client::new("198.18.3.4:40000", 1, linux_options(1));
    let frame = frame(&TcpRepr {
        dst: "198.18.0.9:80".parse().unwrap(),
        ..client.syn()
    });
    let any_v4 = Endpoints::new(["0.0.0.0:80".parse().unwrap()]);
    let any_v6 = Endpoints::new(["[::]:80".parse().unwrap()]);
    assert!(matches!(wire::parse(&frame, &any_v4), Parsed::Ours(_)));
    assert_eq!(wire::parse(&frame, &any_v6), Parsed::NotOurs);
}

/// Offsets in an untagged IPv4 frame.
const IP: usize = 14;
const TCP: usize = 34;

fn fix_ipv4_checksum(frame: &mut [u8]) {
    frame[IP + 10..IP + 12].copy_from_slice(&[0, 0]);
    let header = etherparse::Ipv4HeaderSlice::from_slice(&frame[IP..])
        .unwrap()
        .to_header();
    frame[IP + 10..IP + 12].copy_from_slice(&header.calc_header_checksum().to_be_bytes());
}

fn ipv4_syn() -> Vec<u8> {
    frame(&Client::new("198.18.3.4:40000", 1, linux_options(1)).syn())
}

#[track_caller]
fn assert_malformed(frame: &[u8], kind: Malformed) {
    assert_eq!(parse(frame), Parsed::Malformed(kind));
}

#[test]
fn test_parse_malformed_link_and_ipv4() {
    let good = ipv4_syn();
    assert_malformed(&good[..13], Malformed::Ethernet);
    let mut vlan_cut = good[..14].to_vec();
    vlan_cut[12..14].copy_from_slice(&[0x81, 0x00]);
    vlan_cut.extend_from_slice(&[0, 1]);
    assert_malformed(&vlan_cut, Malformed::Ethernet);

    assert_malformed(&good[..IP + 19], Malformed::Ipv4Header);
    let mut bad_ihl = good.clone();
    bad_ihl[IP] = 0x44;
    assert_malformed(&bad_ihl, Malformed::Ipv4Header);
    let mut long_total = good.clone();
    long_total[IP + 2..IP + 4].copy_from_slice(&2000u16.to_be_bytes());
    assert_malformed(&long_total, Malformed::Ipv4Header);
    let mut bad_checksum = good.clone();
    bad_checksum[IP + 8] ^= 0x40; // TTL changed, checksum not
    assert_malformed(&bad_checksum, Malformed::Ipv4Checksum);
}

#[test]
fn test_parse_malformed_tcp() {
    let good = ipv4_syn();
    let mut short_offset = good.clone();
    short_offset[TCP + 12] = 4 << 4;
    assert_malformed(&short_offset, Malformed::TcpHeader);
    let mut truncated = good[..TCP + 10].to_vec();
    let total = (truncated.len() - IP) as u16;
    truncated[IP + 2..IP + 4].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_checksum(&mut truncated);
    assert_malformed(&truncated, Malformed::TcpHeader);

    let zero_port = frame(&TcpRepr {
        src: "198.18.3.4:0".parse().unwrap(),
        ..Client::new("198.18.3.4:40000", 1, linux_options(1)).syn()
    });
    assert_malformed(&zero_port, Malformed::TcpHeader);

    let mut bad_option = good.clone();
    bad_option[TCP + 21] = 9; // MSS option claims 9 bytes
    assert_malformed(&bad_option, Malformed::TcpChecksum);
    // With a correct checksum it is the option length that is wrong.
    let repaired = with_tcp_checksum(bad_option);
    assert_malformed(&repaired, Malformed::TcpOptions);

    let mut bad_checksum = good;
    bad_checksum[TCP + 4] ^= 1;
    assert_malformed(&bad_checksum, Malformed::TcpChecksum);
}

/// Recomputes the TCP checksum of an untagged IPv4 frame with etherparse.
fn with_tcp_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let ip = etherparse::Ipv4HeaderSlice::from_slice(&frame[IP..])
        .unwrap()
        .to_header();
    let sum = etherparse::checksum::Sum16BitWords::new()
        .add_4bytes(ip.source)
        .add_4bytes(ip.destination)
        .add_2bytes([0, 6])
        .add_2bytes(((frame.len() - TCP) as u16).to_be_bytes());
    frame[TCP + 16..TCP + 18].copy_from_slice(&[0, 0]);
    let sum = sum.add_slice(&frame[TCP..]).ones_complement().to_be();
    frame[TCP + 16..TCP + 18].copy_from_slice(&sum.to_be_bytes());
    frame
}

#[test]
fn test_parse_ipv4_fragments_cannot_bypass() {
    let mut first = ipv4_syn();
    first[IP + 6] = 0x20; // more fragments, offset 0
    fix_ipv4_checksum(&mut first);
    assert_malformed(&first, Malformed::Fragment);

    let mut later = ipv4_syn();
    later[IP + 6..IP + 8].copy_from_slice(&[0x00, 0x10]); // offset 128 bytes, last
    fix_ipv4_checksum(&mut later);
    assert_eq!(parse(&later), Parsed::NotOurs);

    let mut other_port = frame(&TcpRepr {
        dst: "198.18.0.1:22".parse().unwrap(),
        ..Client::new("198.18.3.4:40000", 1, linux_options(1)).syn()
    });
    other_port[IP + 6] = 0x20;
    fix_ipv4_checksum(&mut other_port);
    assert_eq!(parse(&other_port), Parsed::NotOurs);

    let mut too_short = ipv4_syn()[..TCP + 2].to_vec();
    too_short[IP + 2..IP + 4].copy_from_slice(&22u16.to_be_bytes());
    too_short[IP + 6] = 0x20;
    fix_ipv4_checksum(&mut too_short);
    assert_malformed(&too_short, Malformed::Fragment);
}

/// An IPv6 SYN with `header` (an 8-byte extension header, next header TCP) inserted.
fn ipv6_with_extension(kind: u8, header: [u8; 8]) -> Vec<u8> {
    let mut frame = frame(&Client::new("[2001:2::7]:40000", 1, linux_options(1)).syn());
    let payload_len = u16::from_be_bytes([frame[IP + 4], frame[IP + 5]]) + 8;
    frame[IP + 4..IP + 6].copy_from_slice(&payload_len.to_be_bytes());
    frame[IP + 6] = kind;
    frame.splice(IP + 40..IP + 40, header);
    frame
}

#[test]
fn test_parse_ipv6_extension_headers_walked_to_tcp() {
    let hop_by_hop = ipv6_with_extension(0, [6, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(ours(&hop_by_hop).flags, TcpFlags::SYN);
    let destination_options = ipv6_with_extension(60, [6, 0, 1, 4, 0, 0, 0, 0]);
    assert_eq!(ours(&destination_options).options, linux_options(1));

    let first_fragment = ipv6_with_extension(44, [6, 0, 0, 1, 0, 0, 0, 9]);
    assert_malformed(&first_fragment, Malformed::Fragment);
    let later_fragment = ipv6_with_extension(44, [6, 0, 0, 0x10, 0, 0, 0, 9]);
    assert_eq!(parse(&later_fragment), Parsed::NotOurs);
    // An atomic fragment (offset 0, no more fragments; RFC 6946) is a whole packet.
    let atomic = ipv6_with_extension(44, [6, 0, 0, 0, 0, 0, 0, 9]);
    assert_eq!(ours(&atomic).flags, TcpFlags::SYN);

    let mut broken_chain = ipv6_with_extension(0, [6, 200, 1, 4, 0, 0, 0, 0]);
    broken_chain.truncate(IP + 48);
    assert_malformed(&broken_chain, Malformed::Ipv6Header);
}

#[test]
fn test_parse_timestamps_at_the_limits() {
    let client = Client::new(
        "198.18.3.4:40000",
        1,
        TcpOptions {
            timestamps: Some(Timestamps {
                value: u32::MAX,
                echo: 1,
            }),
            ..TcpOptions::default()
        },
    );
    let frame = frame(&client.syn());
    let repr = ours(&frame);
    assert_eq!(
        repr.options.timestamps,
        Some(Timestamps {
            value: u32::MAX,
            echo: 1
        })
    );
}

#[test]
fn test_ip_packet_range_skips_the_link_layer_and_padding() {
    // IPv4 behind an 802.1Q tag: 14 + 4 bytes of link layer.
    let tagged = etherparse_syn(Some(42));
    assert_eq!(wire::ip_packet_range(&tagged), Some(18..tagged.len()));
    // IPv6: 14 bytes of Ethernet header.
    let v6 = etherparse_syn(None);
    assert_eq!(wire::ip_packet_range(&v6), Some(14..v6.len()));
    // Ethernet padding is not part of the packet.
    let client = Client::new("198.18.3.4:40000", 1, TcpOptions::default());
    let mut padded = frame(&client.segment(TcpFlags::RST, SeqNumber(1), SeqNumber(0)));
    padded.resize(60, 0);
    assert_eq!(wire::ip_packet_range(&padded), Some(14..54));
    // A packet longer than the frame, a cut tag, a non-IP frame.
    assert_eq!(wire::ip_packet_range(&tagged[..tagged.len() - 1]), None);
    assert_eq!(wire::ip_packet_range(&tagged[..16]), None);
    let mut arp = padded.clone();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(wire::ip_packet_range(&arp), None);
}
