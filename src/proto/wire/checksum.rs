//! The Internet checksum (RFC 1071) over IP headers and TCP with its pseudo-header.
//!
//! [`Sum`] accumulates 16-bit words as big-endian values. Headers being emitted are summed
//! from their field values rather than re-read from the frame just written: reading back
//! bytes written moments ago by narrow stores stalls on store-to-load forwarding, which cost a
//! quarter of `emit`. Byte slices (payloads, received segments) go through etherparse's 64-bit
//! accumulator, whose native-order result converts to big-endian order by RFC 1071's byte-order
//! independence.

use std::net::IpAddr;

use etherparse::IpNumber;
use etherparse::checksum::u64_16bit_word;

/// A one's-complement sum of 16-bit big-endian words.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum(u64);

impl Sum {
    pub(crate) fn add_u16(self, word: u16) -> Sum {
        Sum(self.0 + u64::from(word))
    }

    pub(crate) fn add_u32(self, value: u32) -> Sum {
        Sum(self.0 + u64::from(value >> 16) + u64::from(value & 0xffff))
    }

    /// Adds bytes as big-endian words (an odd last byte is padded with zero).
    pub(crate) fn add_bytes(self, bytes: &[u8]) -> Sum {
        if bytes.is_empty() {
            return self;
        }
        let native = !u64_16bit_word::ones_complement(u64_16bit_word::add_slice(0, bytes));
        self.add_u16(u16::from_be(native))
    }

    /// The TCP pseudo-header (RFC 9293 §3.1, RFC 8200 §8.1) of a segment of `tcp_len` bytes.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "splits a 128-bit address into its 32-bit words; a segment is far below 2^32 bytes"
    )]
    pub(crate) fn pseudo_header(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Sum {
        let sum = match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                Sum::default().add_u32(src.to_bits()).add_u32(dst.to_bits())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let (src, dst) = (src.to_bits(), dst.to_bits());
                [
                    src >> 96,
                    src >> 64,
                    src >> 32,
                    src,
                    dst >> 96,
                    dst >> 64,
                    dst >> 32,
                    dst,
                ]
                .into_iter()
                .fold(Sum::default(), |sum, word| sum.add_u32(word as u32))
            }
            _ => unreachable!("a TCP segment's addresses share one family"),
        };
        // Both layouts sum to the same value: the protocol and the (32-bit) length.
        sum.add_u16(u16::from(IpNumber::TCP.0))
            .add_u32(tcp_len as u32)
    }

    #[allow(
        clippy::cast_possible_truncation,
        reason = "the loop folds the sum to 16 bits"
    )]
    fn fold(self) -> u16 {
        let mut sum = self.0;
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// The checksum field for data summing to `self` (with the field zero), as bytes.
    pub(crate) fn finish(self) -> [u8; 2] {
        (!self.fold()).to_be_bytes()
    }

    /// Whether data including its checksum field verifies (sums to all ones).
    pub(crate) fn verifies(self) -> bool {
        self.fold() == 0xffff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::default().add_bytes(&bytes).fold(), 0xddf2);
        let words = [0x0001, 0xf203, 0xf4f5, 0xf6f7];
        let by_value = words.into_iter().fold(Sum::default(), Sum::add_u16);
        assert_eq!(by_value.fold(), 0xddf2);
    }

    #[test]
    fn test_odd_length_pads_with_zero() {
        assert_eq!(Sum::default().add_bytes(&[0x12]).fold(), 0x1200);
    }

    #[test]
    fn test_finished_data_verifies() {
        let data = [0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06];
        let checksum = Sum::default().add_bytes(&data).finish();
        let mut with_checksum = data.to_vec();
        with_checksum.extend_from_slice(&checksum);
        assert!(Sum::default().add_bytes(&with_checksum).verifies());
    }
}
