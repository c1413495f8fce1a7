//! The `wire_parse` target (see the crate documentation for its input and invariants).

use std::net::{Ipv4Addr, SocketAddr};

use synwall_proto::wire::{self, Endpoints, Malformed, Parsed};

use super::*;

//---------------------------------------------------------------------------

/// The `wire_parse` target: see the module documentation.
pub fn wire_parse(data: &[u8]) {
    // One address of each family, and every IPv4 address on port 443.
    let served = Endpoints::new([
        SERVER_V4,
        SERVER_V6,
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 443)),
    ]);
    check_frame(data, &served);
    let mut repaired = data.to_vec();
    let _ = repair_checksums(&mut repaired);
    if repaired != data {
        check_frame(&repaired, &served);
    }
}

pub(super) fn check_frame(frame: &[u8], served: &Endpoints) {
    let packet = wire::ip_packet_range(frame);
    if let Some(range) = &packet {
        assert!(
            [ETHERNET_LEN, ETHERNET_LEN + VLAN_TAG_LEN].contains(&range.start)
                && range.start <= range.end
                && range.end <= frame.len(),
            "ip_packet_range {range:?} of a {}-byte frame",
            frame.len()
        );
    }
    let parsed = wire::parse(frame, served);
    if frame.len() < ETHERNET_LEN {
        assert_eq!(parsed, Parsed::Malformed(Malformed::Ethernet));
    }
    let Parsed::Ours(repr) = parsed else {
        return;
    };
    assert_eq!(repr.src.is_ipv4(), repr.dst.is_ipv4(), "{repr:?}");
    assert!(served.serves(repr.dst.ip(), repr.dst.port()), "{repr:?}");
    assert_ne!(repr.src.port(), 0, "{repr:?}");
    assert!(repr.options.window_scale.is_none_or(|shift| shift <= 14));
    // Where the payload lies in the frame: it is borrowed from it.
    let start = (repr.payload.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    let end = start + repr.payload.len();
    assert!(
        end <= frame.len(),
        "payload {start}..{end} outside the frame"
    );
    let packet = packet.unwrap_or_else(|| panic!("no IP packet range for {repr:?}"));
    assert!(
        packet.start < start && end == packet.end,
        "the segment's payload ({start}..{end}) does not end the IP packet ({packet:?}) of {repr:?}"
    );
    let mut emitted = vec![0; wire::emitted_len(&repr)];
    assert_eq!(wire::emit(&repr, &mut emitted), Ok(emitted.len()));
    assert_eq!(wire::parse(&emitted, served), Parsed::Ours(repr));
}

/// Rewrites the checksums of `frame` so that they verify: the IPv4 header's, and the TCP
/// segment's where TCP follows the IPv4 header (fragmented or not) or the IPv6 header directly.
/// The segment runs to the end of the IP packet its header gives, cut at the end of the frame;
/// an IPv6 payload length of 0 takes the rest of the frame, as the parser does. Stops (`None`)
/// where the frame does, or at anything else.
pub(super) fn repair_checksums(frame: &mut [u8]) -> Option<()> {
    let mut ip = ETHERNET_LEN;
    let mut ether_type = be16(frame, ip - 2)?;
    if ether_type == ETHER_TYPE_VLAN {
        ip += VLAN_TAG_LEN;
        ether_type = be16(frame, ip - 2)?;
    }
    let (tcp, end, pseudo_header) = match ether_type {
        ETHER_TYPE_IPV4 => {
            let header_len = usize::from(*frame.get(ip)? & 0x0f) * 4;
            let header = frame.get_mut(ip..ip + header_len.max(20))?;
            header[10..12].fill(0);
            let checksum = !fold(sum(header));
            header[10..12].copy_from_slice(&checksum.to_be_bytes());
            if header[9] != PROTOCOL_TCP {
                return Some(());
            }
            let addresses = sum(&header[12..20]);
            let end = (ip + usize::from(be16(frame, ip + 2)?)).min(frame.len());
            (ip + header_len, end, addresses)
        }
        ETHER_TYPE_IPV6 => {
            let header = frame.get(ip..ip + 40)?;
            if header[6] != PROTOCOL_TCP {
                return None;
            }
            let end = match be16(frame, ip + 4)? {
                0 => frame.len(),
                len => (ip + 40 + usize::from(len)).min(frame.len()),
            };
            (ip + 40, end, sum(&header[8..40]))
        }
        _ => return None,
    };
    let segment = frame.get_mut(tcp..end)?;
    segment.get_mut(16..18)?.fill(0);
    let total = pseudo_header + u64::from(PROTOCOL_TCP) + segment.len() as u64 + sum(segment);
    segment[16..18].copy_from_slice(&(!fold(total)).to_be_bytes());
    Some(())
}

/// The sum of `bytes` as big-endian 16-bit words, an odd last byte padded with zero.
pub(super) fn sum(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|word| u64::from(u16::from_be_bytes([word[0], *word.get(1).unwrap_or(&0)])))
        .sum()
}

/// A sum folded to 16 bits in one's complement.
pub(super) fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

pub(super) fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(*bytes.get(at..)?.first_chunk()?))
}

// --- listener_frames -------------------------------------------------------------------------
