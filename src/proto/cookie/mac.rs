//! HMAC-SHA256 (RFC 2104) of short messages, from pre-keyed states: the per-packet MAC.
//!
//! A pre-keyed HMAC is two SHA-256 states, after compressing `key ⊕ ipad` and `key ⊕ opad`.
//! A cookie message (at most 42 bytes) fits one padded block, so a MAC is exactly two calls of
//! `sha2::block_api::compress256` (SHA-NI when the CPU has it) on 32-byte state copies. The
//! `hmac` crate computes the same value (a test checks it on random keys and messages) but clones
//! and wipes ~200 bytes of buffered state per use, which costs about 60 ns per SYN, a third of the
//! budget. The states are zeroized on drop.

use sha2::block_api::compress256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The longest message [`PrekeyedMac::tag`] takes: one block minus padding and length.
const MAX_MESSAGE: usize = 64 - 1 - 8;

const BLOCK: usize = 64;
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;
/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// HMAC-SHA256 keyed once, for messages of at most [`MAX_MESSAGE`] bytes.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct PrekeyedMac {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl PrekeyedMac {
    /// Keys with a 32-byte key (zero-padded to a block, as RFC 2104 does with short keys).
    pub(crate) fn new(key: &[u8; 32]) -> PrekeyedMac {
        let mut pad = [[0u8; BLOCK]];
        let mut keyed = |fill: u8| {
            pad[0] = [fill; BLOCK];
            for (byte, key_byte) in pad[0].iter_mut().zip(key) {
                *byte ^= key_byte;
            }
            let mut state = SHA256_IV;
            compress256(&mut state, &pad);
            state
        };
        let mac = PrekeyedMac {
            inner: keyed(IPAD),
            outer: keyed(OPAD),
        };
        pad.zeroize();
        mac
    }

    /// The first 4 bytes of HMAC-SHA256(key, `message`), big-endian.
    ///
    /// # Panics
    /// If `message` is longer than [`MAX_MESSAGE`].
    #[cfg(test)]
    pub(crate) fn tag32(&self, message: &[u8]) -> u32 {
        self.tag32_with(|block| {
            block[..message.len()].copy_from_slice(message);
            message.len()
        })
    }

    /// Like [`PrekeyedMac::tag32`], for a message that `write` puts straight into the zeroed
    /// block it is given (returning its length), saving a copy on the per-packet path.
    ///
    /// # Panics
    /// If the length returned is above [`MAX_MESSAGE`].
    pub(crate) fn tag32_with(&self, write: impl FnOnce(&mut [u8; BLOCK]) -> usize) -> u32 {
        let mut block = [[0u8; BLOCK]];
        let len = write(&mut block[0]);
        assert!(len <= MAX_MESSAGE, "message longer than one block");
        finish_block(&mut block[0], len, BLOCK + len);
        let mut inner = self.inner;
        compress256(&mut inner, &block);

        let mut block = [[0u8; BLOCK]];
        for (chunk, word) in block[0].chunks_exact_mut(4).zip(inner) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        finish_block(&mut block[0], 32, BLOCK + 32);
        let mut outer = self.outer;
        compress256(&mut outer, &block);
        outer[0]
    }
}

/// SHA-256 padding after `len` bytes of data in the last block: 0x80, zeros, and the total
/// message length in bits.
fn finish_block(block: &mut [u8; BLOCK], len: usize, total_len: usize) {
    block[len] = 0x80;
    block[BLOCK - 8..].copy_from_slice(&((total_len as u64) * 8).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use proptest::prelude::*;
    use sha2::Sha256;

    fn reference(key: &[u8; 32], message: &[u8]) -> u32 {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        let tag = mac.finalize().into_bytes();
        u32::from_be_bytes([tag[0], tag[1], tag[2], tag[3]])
    }

    #[test]
    fn test_rfc4231_case_2_prefix() {
        // RFC 4231 test case 2 ("Jefe"), key zero-padded to 32 bytes (HMAC pads it anyway).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = PrekeyedMac::new(&key).tag32(b"what do ya want for nothing?");
        assert_eq!(tag, 0x5bdcc146);
    }

    proptest! {
        #[test]
        fn prop_matches_hmac_crate(key in any::<[u8; 32]>(), message in proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE)) {
            prop_assert_eq!(PrekeyedMac::new(&key).tag32(&message), reference(&key, &message));
        }
    }
}
