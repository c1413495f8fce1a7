//! Frame emission: a [`TcpRepr`] written straight into a transmit buffer, checksums included.
//!
//! IPv4 frames carry DF and IP id 0 (RFC 6864 §4.1 allows any id on atomic datagrams), no IP
//! options and no ECN codepoint; IPv6 frames carry traffic class and flow label 0 and no
//! extension headers. No allocation, no copies beyond the bytes written; checksums are summed
//! from the field values, never read back from the frame.

use std::net::SocketAddr;

use etherparse::IpNumber;

use super::checksum::Sum;
use super::options::MAX_EMITTED_LEN;
use super::{LinkAddrs, TcpRepr};

const ETHERNET_LEN: usize = 14;
const VLAN_TAG_LEN: usize = 4;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const TCP_LEN: usize = 20;

const ETHER_TYPE_IPV4: u16 = 0x0800;
const ETHER_TYPE_IPV6: u16 = 0x86dd;
const ETHER_TYPE_VLAN: u16 = 0x8100;
const IPV4_DONT_FRAGMENT: u16 = 0x4000;
/// Version 4, header length 5 words, DSCP and ECN 0.
const IPV4_VERSION_AND_IHL: u16 = 0x4500;

/// The transmit buffer was too small for the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("transmit buffer of {available} bytes is too small for a {needed}-byte frame")]
pub struct BufferTooSmall {
    pub needed: usize,
    pub available: usize,
}

/// The length of the frame [`emit`] writes for `repr`.
pub fn emitted_len(repr: &TcpRepr<'_>) -> usize {
    link_len(&repr.link) + ip_len(&repr.src) + tcp_len(repr)
}

/// Writes `repr` as an Ethernet frame at the start of `buf`; returns the frame length.
///
/// # Panics
/// If `repr.src` and `repr.dst` are of different address families.
pub fn emit(repr: &TcpRepr<'_>, buf: &mut [u8]) -> Result<usize, BufferTooSmall> {
    let len = emitted_len(repr);
    let Some(frame) = buf.get_mut(..len) else {
        return Err(BufferTooSmall {
            needed: len,
            available: buf.len(),
        });
    };
    let ip_start = emit_link(&repr.link, repr.src, frame);
    let tcp_start = ip_start + ip_len(&repr.src);
    emit_ip(repr, &mut frame[ip_start..tcp_start], len - tcp_start);
    emit_tcp(repr, &mut frame[tcp_start..]);
    Ok(len)
}

fn link_len(link: &LinkAddrs) -> usize {
    ETHERNET_LEN + if link.vlan.is_some() { VLAN_TAG_LEN } else { 0 }
}

fn ip_len(src: &SocketAddr) -> usize {
    if src.is_ipv4() { IPV4_LEN } else { IPV6_LEN }
}

fn tcp_len(repr: &TcpRepr<'_>) -> usize {
    TCP_LEN + repr.options.emitted_len() + repr.payload.len()
}

/// Writes the Ethernet header and VLAN tag; returns where the IP header starts.
fn emit_link(link: &LinkAddrs, src: SocketAddr, frame: &mut [u8]) -> usize {
    let ether_type = if src.is_ipv4() {
        ETHER_TYPE_IPV4
    } else {
        ETHER_TYPE_IPV6
    };
    frame[0..6].copy_from_slice(&link.dst);
    frame[6..12].copy_from_slice(&link.src);
    match link.vlan {
        Some(tci) => {
            frame[12..14].copy_from_slice(&ETHER_TYPE_VLAN.to_be_bytes());
            frame[14..16].copy_from_slice(&tci.to_be_bytes());
            frame[16..18].copy_from_slice(&ether_type.to_be_bytes());
            ETHERNET_LEN + VLAN_TAG_LEN
        }
        None => {
            frame[12..14].copy_from_slice(&ether_type.to_be_bytes());
            ETHERNET_LEN
        }
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "emit() checked the frame against its buffer: an IP packet here is below 2^16 bytes"
)]
fn emit_ip(repr: &TcpRepr<'_>, header: &mut [u8], tcp_len: usize) {
    match (repr.src, repr.dst) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            let total_len = (IPV4_LEN + tcp_len) as u16;
            let ttl_and_protocol = u16::from(repr.hop_limit) << 8 | u16::from(IpNumber::TCP.0);
            let checksum = Sum::default()
                .add_u16(IPV4_VERSION_AND_IHL)
                .add_u16(total_len)
                .add_u16(IPV4_DONT_FRAGMENT)
                .add_u16(ttl_and_protocol)
                .add_u32(src.ip().to_bits())
                .add_u32(dst.ip().to_bits())
                .finish();
            header[0..2].copy_from_slice(&IPV4_VERSION_AND_IHL.to_be_bytes());
            header[2..4].copy_from_slice(&total_len.to_be_bytes());
            header[4..6].copy_from_slice(&[0, 0]);
            header[6..8].copy_from_slice(&IPV4_DONT_FRAGMENT.to_be_bytes());
            header[8..10].copy_from_slice(&ttl_and_protocol.to_be_bytes());
            header[10..12].copy_from_slice(&checksum);
            header[12..16].copy_from_slice(&src.ip().octets());
            header[16..20].copy_from_slice(&dst.ip().octets());
        }
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            header[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
            header[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes());
            header[6] = IpNumber::TCP.0;
            header[7] = repr.hop_limit;
            header[8..24].copy_from_slice(&src.ip().octets());
            header[24..40].copy_from_slice(&dst.ip().octets());
        }
        _ => panic!("a TCP segment's addresses must share one family"),
    }
}

#[allow(
    clippy::cast_possible_truncation,
    reason = "a TCP header is at most 60 bytes"
)]
fn emit_tcp(repr: &TcpRepr<'_>, segment: &mut [u8]) {
    let options_len = repr.options.emitted_len();
    debug_assert!(options_len <= MAX_EMITTED_LEN);
    let header_len = TCP_LEN + options_len;
    let offset_and_flags = ((header_len / 4) as u16) << 12 | u16::from(repr.flags.0);
    let sum = Sum::pseudo_header(repr.src.ip(), repr.dst.ip(), segment.len())
        .add_u16(repr.src.port())
        .add_u16(repr.dst.port())
        .add_u32(repr.seq.0)
        .add_u32(repr.ack.0)
        .add_u16(offset_and_flags)
        .add_u16(repr.window);
    let checksum = repr.options.add_to(sum).add_bytes(repr.payload).finish();
    segment[0..2].copy_from_slice(&repr.src.port().to_be_bytes());
    segment[2..4].copy_from_slice(&repr.dst.port().to_be_bytes());
    segment[4..8].copy_from_slice(&repr.seq.0.to_be_bytes());
    segment[8..12].copy_from_slice(&repr.ack.0.to_be_bytes());
    segment[12..14].copy_from_slice(&offset_and_flags.to_be_bytes());
    segment[14..16].copy_from_slice(&repr.window.to_be_bytes());
    segment[16..18].copy_from_slice(&checksum);
    segment[18..20].copy_from_slice(&[0, 0]);
    repr.options.emit(&mut segment[TCP_LEN..header_len]);
    // Replies mostly carry no payload: no memcpy call for nothing.
    if !repr.payload.is_empty() {
        segment[header_len..].copy_from_slice(repr.payload);
    }
}
