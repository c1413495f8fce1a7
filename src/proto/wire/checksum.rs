//! The Internet checksum (RFC 1071) over IP headers and TCP with its pseudo-header.
//!
//! [`Sum`] accumulates 16-bit words as big-endian values. Headers being emitted are summed
//! from their field values rather than re-read from the frame just written: reading back
//! bytes written moments ago by narrow stores stalls on store-to-load forwarding, which cost a
//! quarter of `emit`. Byte slices (received headers and segments, payloads) are summed four
//! bytes at a time into the 64-bit accumulator, which cannot overflow below 2^32 words: no carry
//! to fold per word, and a loop the compiler vectorises.

use std::net::IpAddr;

use etherparse::IpNumber;

/// A one's-complement sum of 16-bit big-endian words.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sum(u64);

impl Sum {
    pub(crate) fn add_u16(self, word: u16) -> Sum {
        Sum(self.0 + u64::from(word))
    }

    /// Adds two 16-bit words at once: 2^16 is 1 modulo 2^16 − 1, so the folded sum is the same.
    pub(crate) fn add_u32(self, value: u32) -> Sum {
        Sum(self.0 + u64::from(value))
    }

    /// Adds bytes as big-endian words (an odd last byte is padded with zero).
    pub(crate) fn add_bytes(self, bytes: &[u8]) -> Sum {
        let mut words = bytes.chunks_exact(4);
        let sum = (&mut words).fold(self, |sum, word| {
            sum.add_u32(u32::from_be_bytes([word[0], word[1], word[2], word[3]]))
        });
        // The last one to three bytes, padded with zeros to a word.
        let rest = words.remainder();
        let mut last = [0; 4];
        last[..rest.len()].copy_from_slice(rest);
        sum.add_u32(u32::from_be_bytes(last))
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

    /// The sum folded to 16 bits, without a loop: each step keeps the value modulo 2^16 − 1 and
    /// never turns a non-zero sum into zero; four steps bring any 64-bit sum below 2^16.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the last step leaves at most 16 bits"
    )]
    fn fold(self) -> u16 {
        let sum = (self.0 & 0xffff_ffff) + (self.0 >> 32);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = (sum & 0xffff) + (sum >> 16);
        sum as u16
    }

    /// The checksum field for data summing to `self` (with the field zero), as bytes.
    pub(crate) fn finish(self) -> [u8; 2] {
        (!self.fold()).to_be_bytes()
    }

    /// Whether data including its checksum field verifies (sums to all ones): whether the sum
    /// folds to 0xffff, which is whether it is a non-zero multiple of 2^16 − 1 (folding keeps
    /// the value modulo 2^16 − 1 and turns no non-zero sum into zero). The remainder is a
    /// multiplication, shorter than the fold's chain of dependent steps, on every frame
    /// received.
    pub(crate) fn verifies(self) -> bool {
        self.0 != 0 && self.0.is_multiple_of(0xffff)
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

    proptest::proptest! {
        #[test]
        fn test_add_bytes_sums_words_with_end_around_carry(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            start in proptest::prelude::any::<u16>(),
        ) {
            // RFC 1071 word by word, the carry folded back after every addition.
            let reference = bytes.chunks(2).fold(u32::from(start), |sum, pair| {
                let word = u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]));
                let sum = sum + word;
                (sum & 0xffff) + (sum >> 16)
            });
            let sum = Sum::default().add_u16(start).add_bytes(&bytes).fold();
            proptest::prop_assert_eq!(u32::from(sum), reference);
        }
    }

    #[test]
    fn test_fold_keeps_the_residue_and_non_zero_sums_non_zero() {
        for raw in [
            0,
            1,
            0xffff,
            0x1_0000,
            0x1_fffe,
            0xffff_ffff,
            u64::MAX,
            u64::MAX - 1,
        ] {
            let folded = u64::from(Sum(raw).fold());
            assert_eq!(folded % 0xffff, raw % 0xffff, "{raw:#x}");
            assert_eq!(folded == 0, raw == 0, "{raw:#x}");
        }
    }

    proptest::proptest! {
        #[test]
        fn test_verifies_is_folding_to_all_ones(
            raw in proptest::prop_oneof![
                proptest::prelude::any::<u64>(),
                // Multiples of 2^16 − 1 (which verify, but for zero) and small sums.
                proptest::strategy::Strategy::prop_map(0..u64::MAX / 0xffff, |k| k * 0xffff),
                0..0x2_0000u64,
            ],
        ) {
            proptest::prop_assert_eq!(Sum(raw).verifies(), Sum(raw).fold() == 0xffff);
        }
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
