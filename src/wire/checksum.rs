//! The Internet checksum (RFC 1071) over IP headers and TCP with its pseudo-header, on top of
//! etherparse's 64-bit one's-complement accumulator.

use std::net::IpAddr;

use etherparse::checksum::u64_16bit_word;

const IP_PROTOCOL_TCP: u8 = 6;

/// The one's-complement sum of the TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1).
pub(crate) fn pseudo_header_sum(src: IpAddr, dst: IpAddr, tcp_len: usize) -> u64 {
    let sum = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            u64_16bit_word::add_8bytes(0, concat4(src.octets(), dst.octets()))
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            u64_16bit_word::add_slice(u64_16bit_word::add_slice(0, &src.octets()), &dst.octets())
        }
        _ => unreachable!("a TCP segment's addresses share one family"),
    };
    // Both layouts sum to the same value: the protocol and the 32-bit length.
    u64_16bit_word::add_8bytes(
        sum,
        [
            0,
            0,
            0,
            IP_PROTOCOL_TCP,
            0,
            0,
            (tcp_len >> 8) as u8,
            tcp_len as u8,
        ],
    )
}

/// The one's-complement sum of `bytes` added to `sum`.
pub(crate) fn add(sum: u64, bytes: &[u8]) -> u64 {
    u64_16bit_word::add_slice(sum, bytes)
}

/// The checksum field bytes for data whose one's-complement sum is `sum`. The accumulator adds
/// words in native byte order, so its result goes back to bytes in native order too.
pub(crate) fn finish(sum: u64) -> [u8; 2] {
    u64_16bit_word::ones_complement(sum).to_ne_bytes()
}

/// Whether data including its checksum field sums to all ones, i.e. verifies.
pub(crate) fn verifies(sum: u64) -> bool {
    u64_16bit_word::ones_complement(sum) == 0
}

fn concat4(a: [u8; 4], b: [u8; 4]) -> [u8; 8] {
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}
