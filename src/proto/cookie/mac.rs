//! HMAC-SHA256 (RFC 2104) of short messages, from pre-keyed states: the per-packet MAC.
//!
//! A pre-keyed HMAC is two SHA-256 states, after compressing `key ⊕ ipad` and `key ⊕ opad`.
//! A cookie message (at most 42 bytes) fits one padded block, so a MAC is exactly two SHA-256
//! compressions on 32-byte state copies. The `hmac` crate computes the same value (a test checks
//! it on random keys and messages) but clones and wipes ~200 bytes of buffered state per use,
//! which costs about 60 ns per SYN, a third of the budget. The states are zeroized on drop.
//!
//! One MAC at a time ([`PrekeyedMac::tag32_of`]) runs `sha2`'s compression (SHA-NI when the CPU
//! has it), whose rounds wait on each other. The MACs of a batch of frames are independent, so
//! [`tags32`] hands them all to a [`Sha256Lanes`] at once: an implementation that interleaves
//! them (SIMD lanes, or the SHA instructions of several messages in flight) finishes a batch in
//! a fraction of the time. This crate has [`OneAtATime`]; the CPU-specific ones live where
//! `unsafe` may (synwall's `sys::sha256`).

use sha2::block_api::compress256;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The longest message one block takes: a block minus padding and length.
const MAX_MESSAGE: usize = 64 - 1 - 8;

/// A SHA-256 message block.
pub type Block = [u8; BLOCK];
/// A SHA-256 chaining state.
pub type State = [u32; 8];

const BLOCK: usize = 64;
const IPAD: u8 = 0x36;
const OPAD: u8 = 0x5c;
/// SHA-256's initial hash value (FIPS 180-4 §5.3.3).
const SHA256_IV: State = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The most keys one [`Sha256Lanes::hmac_first_words`] call takes (the listener uses two: the
/// key slots a cookie's parity bit picks).
pub const MAX_KEYS: usize = 16;

/// HMAC-SHA256 of many one-block messages at once, from pre-keyed states.
pub trait Sha256Lanes: Send + Sync {
    /// For every `i`: the inner state of `keys[key_of[i]]` compresses the padded message block
    /// `blocks[i]`, its outer state compresses the inner digest ([`outer_block`]), and `tags[i]`
    /// is the first word of the result: the first 4 bytes of the MAC, big-endian. `key_of`,
    /// `blocks` and `tags` have one entry per message (the same length); `keys` has at most
    /// [`MAX_KEYS`] entries, and every `key_of` entry is an index into it. The keys are read
    /// where they are, not copied per message.
    fn hmac_first_words(
        &self,
        keys: &[PrekeyedMac],
        key_of: &[u8],
        blocks: &[Block],
        tags: &mut [u32],
    );
}

/// One compression after the other, with the `sha2` crate: what every CPU can run.
#[derive(Debug, Clone, Copy, Default)]
pub struct OneAtATime;

impl Sha256Lanes for OneAtATime {
    fn hmac_first_words(
        &self,
        keys: &[PrekeyedMac],
        key_of: &[u8],
        blocks: &[Block],
        tags: &mut [u32],
    ) {
        for ((&key, block), tag) in key_of.iter().zip(blocks).zip(tags) {
            *tag = keys[usize::from(key)].tag32_of(block);
        }
    }
}

/// HMAC-SHA256 keyed once, for messages that fit one block (at most 55 bytes): the states after
/// compressing `key ⊕ ipad` and `key ⊕ opad`. Zeroized on drop.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct PrekeyedMac {
    inner: State,
    outer: State,
}

impl PrekeyedMac {
    /// Keys with a 32-byte key (zero-padded to a block, as RFC 2104 does with short keys).
    pub fn new(key: &[u8; 32]) -> PrekeyedMac {
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

    /// The state after compressing `key ⊕ ipad`, where the inner hash starts.
    pub fn inner(&self) -> &State {
        &self.inner
    }

    /// The state after compressing `key ⊕ opad`, where the outer hash starts.
    pub fn outer(&self) -> &State {
        &self.outer
    }

    /// The first 4 bytes of HMAC-SHA256(key, `message`), big-endian.
    ///
    /// # Panics
    /// If `message` is longer than [`MAX_MESSAGE`].
    #[cfg(test)]
    pub(crate) fn tag32(&self, message: &[u8]) -> u32 {
        self.tag32_of(&test_block(message))
    }

    /// The first 4 bytes of the MAC of the message in `block` (see [`write_message_block`]).
    pub(crate) fn tag32_of(&self, block: &Block) -> u32 {
        let mut state = self.inner;
        compress256(&mut state, std::slice::from_ref(block));
        let digest = outer_block(&state);
        state = self.outer;
        compress256(&mut state, &[digest]);
        state[0]
    }
}

/// Writes the inner hash's block of a message into a zeroed `block`: `write` puts the message
/// straight in (returning its length), one copy less on the per-packet path; then the padding.
///
/// # Panics
/// If the length returned is above [`MAX_MESSAGE`].
pub(crate) fn write_message_block(block: &mut Block, write: impl FnOnce(&mut Block) -> usize) {
    let len = write(block);
    assert!(len <= MAX_MESSAGE, "message longer than one block");
    finish_block(block, len, BLOCK + len);
}

/// The inner hash's block of `message`.
#[cfg(test)]
fn test_block(message: &[u8]) -> Block {
    let mut block = [0; BLOCK];
    write_message_block(&mut block, |block| {
        block[..message.len()].copy_from_slice(message);
        message.len()
    });
    block
}

/// The outer hash's block: the inner digest `inner`, padded.
pub fn outer_block(inner: &State) -> Block {
    let mut block = [0u8; BLOCK];
    for (chunk, word) in block.chunks_exact_mut(4).zip(inner) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    finish_block(&mut block, 32, BLOCK + 32);
    block
}

/// The tags of many messages at once: `tags[i]` is [`PrekeyedMac::tag32_of`]`(blocks[i])` under
/// `keys[key_of[i]]`, computed by `lanes`. `tags` is the caller's, so that a batch allocates
/// nothing.
pub(crate) fn tags32(
    lanes: &dyn Sha256Lanes,
    keys: &[PrekeyedMac],
    key_of: &[u8],
    blocks: &[Block],
    tags: &mut [u32],
) {
    debug_assert_eq!(key_of.len(), blocks.len(), "one key per message");
    debug_assert_eq!(tags.len(), blocks.len(), "one tag per message");
    lanes.hmac_first_words(keys, key_of, blocks, tags);
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
        fn prop_batch_matches_hmac_crate(
            keys in any::<[[u8; 32]; 2]>(),
            messages in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE)),
                0..=70,
            ),
        ) {
            let macs = [PrekeyedMac::new(&keys[0]), PrekeyedMac::new(&keys[1])];
            let blocks: Vec<Block> =
                messages.iter().map(|(_, message)| test_block(message)).collect();
            let mut tags = vec![0; messages.len()];
            let key_of: Vec<u8> = messages.iter().map(|(second, _)| u8::from(*second)).collect();
            tags32(&OneAtATime, &macs, &key_of, &blocks, &mut tags);
            for ((second, message), tag) in messages.iter().zip(tags) {
                prop_assert_eq!(tag, reference(&keys[usize::from(*second)], message));
            }
        }

        #[test]
        fn prop_matches_hmac_crate(key in any::<[u8; 32]>(), message in proptest::collection::vec(any::<u8>(), 0..=MAX_MESSAGE)) {
            prop_assert_eq!(PrekeyedMac::new(&key).tag32(&message), reference(&key, &message));
        }
    }
}
