//! HMAC-SHA256 of many one-block messages at once, with the instructions the CPU has: the
//! [`Sha256Lanes`] the listener computes a batch's cookie MACs with.
//!
//! - AVX-512: sixteen messages in the sixteen 32-bit lanes of a vector, each step of a round
//!   done for all of them by one instruction (a rotation, or any three-input logic function).
//!   Each lane's key states are picked from a table of the call's keys by one permutation per
//!   word (no per-message copy or gather of a key). The inner digest stays in the vectors as
//!   the outer block's first words, and only the first word of each MAC is stored. On the
//!   Intel Xeon this was written on, about 20 ns per compression (a MAC about 44 ns, `perf` of
//!   the forged-ACK benchmark) against 50–56 for one at a time with the SHA extensions.
//! - SHA extensions without AVX-512: two messages in flight, the rounds of one filling the
//!   latency of the other's (38 ns per compression there).
//! - Otherwise `sha2`, one compression at a time ([`OneAtATime`]).
//!
//! [`fastest`] chooses at run time. Every form is checked bit for bit against [`OneAtATime`]
//! by the tests at the end, and that one against the `hmac` crate in `synwall-proto`.

use synwall_proto::cookie::{OneAtATime, Sha256Lanes};

/// The fastest form this CPU runs, and its name for the logs.
pub fn fastest() -> (Box<dyn Sha256Lanes>, &'static str) {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(lanes) = x86::Avx512::detect() {
            return (Box::new(lanes), "AVX-512, 16 messages at once");
        }
        if let Some(lanes) = x86::ShaNi::detect() {
            return (Box::new(lanes), "SHA extensions, 2 messages at once");
        }
    }
    (Box::new(OneAtATime), "one message at a time")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use synwall_proto::cookie::{
        Block, MAX_KEYS, OneAtATime, PrekeyedMac, Sha256Lanes, State, outer_block,
    };
    use zeroize::{Zeroize, ZeroizeOnDrop};

    /// SHA-256's round constants (FIPS 180-4 §4.2.2).
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    /// The outer block after the inner digest's eight words: the padding's 1 bit, zeroes, and
    /// the message length in bits (a key block and a digest, 96 bytes).
    const OUTER_PADDING: [u32; 8] = [0x8000_0000, 0, 0, 0, 0, 0, 0, 96 * 8];

    /// Messages per AVX-512 call. Fewer than [`AVX512_MIN_FILL`] left over go to the SHA
    /// extensions (or `sha2`), which finish them sooner than a call with idle lanes.
    const LANES: usize = 16;
    const AVX512_MIN_FILL: usize = 12;

    /// The AVX-512 form. Made only by [`Avx512::detect`], on a CPU with AVX-512 F and BW.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct Avx512 {
        rest: Option<ShaNi>,
    }

    impl Avx512 {
        pub(super) fn detect() -> Option<Avx512> {
            (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")).then(
                || Avx512 {
                    rest: ShaNi::detect(),
                },
            )
        }
    }

    impl Avx512 {
        /// Fewer messages than [`AVX512_MIN_FILL`]: the SHA extensions (or `sha2`) finish them
        /// sooner than a call with idle lanes.
        fn few(&self, keys: &[PrekeyedMac], key_of: &[u8], blocks: &[Block], tags: &mut [u32]) {
            match self.rest {
                Some(sha_ni) => sha_ni.hmac_first_words(keys, key_of, blocks, tags),
                None => OneAtATime.hmac_first_words(keys, key_of, blocks, tags),
            }
        }
    }

    impl Sha256Lanes for Avx512 {
        fn hmac_first_words(
            &self,
            keys: &[PrekeyedMac],
            key_of: &[u8],
            blocks: &[Block],
            tags: &mut [u32],
        ) {
            let count = blocks.len();
            if count < AVX512_MIN_FILL {
                return self.few(keys, key_of, blocks, tags);
            }
            let table = KeyTable::new(keys);
            for at in (0..count).step_by(LANES) {
                let end = (at + LANES).min(count);
                let n = end - at;
                let (key_of, blocks, tags) =
                    (&key_of[at..end], &blocks[at..end], &mut tags[at..end]);
                if n < AVX512_MIN_FILL {
                    self.few(keys, key_of, blocks, tags);
                    continue;
                }
                match (
                    <&[u8; LANES]>::try_from(key_of),
                    <&[Block; LANES]>::try_from(blocks),
                    <&mut [u32; LANES]>::try_from(&mut *tags),
                ) {
                    (Ok(key_of), Ok(blocks), Ok(tags)) => {
                        // SAFETY: an `Avx512` exists only where `detect` found AVX-512 F and BW.
                        unsafe { hmac16(&table, key_of, blocks, tags) };
                    }
                    _ => {
                        // The last, partial vector: its idle lanes compute key 0's MAC of zeroes.
                        let mut lane_key_of = [0u8; LANES];
                        let mut lane_blocks = [[0u8; 64]; LANES];
                        let mut lane_tags = [0u32; LANES];
                        lane_key_of[..n].copy_from_slice(key_of);
                        lane_blocks[..n].copy_from_slice(blocks);
                        // SAFETY: as above.
                        unsafe { hmac16(&table, &lane_key_of, &lane_blocks, &mut lane_tags) };
                        tags.copy_from_slice(&lane_tags[..n]);
                    }
                }
            }
        }
    }

    /// Word `i` of key `k`'s inner and outer states in `inner[i][k]` and `outer[i][k]`: a vector
    /// per word, from which a permutation picks each lane's key. Zeroized on drop.
    #[derive(Zeroize, ZeroizeOnDrop)]
    struct KeyTable {
        inner: [[u32; MAX_KEYS]; 8],
        outer: [[u32; MAX_KEYS]; 8],
    }

    impl KeyTable {
        /// # Panics
        /// If there are more than [`MAX_KEYS`] keys.
        fn new(keys: &[PrekeyedMac]) -> KeyTable {
            assert!(keys.len() <= MAX_KEYS, "at most {MAX_KEYS} keys per call");
            let mut table = KeyTable {
                inner: [[0; MAX_KEYS]; 8],
                outer: [[0; MAX_KEYS]; 8],
            };
            for (k, key) in keys.iter().enumerate() {
                for i in 0..8 {
                    table.inner[i][k] = key.inner()[i];
                    table.outer[i][k] = key.outer()[i];
                }
            }
            table
        }
    }

    /// Sixteen MACs: lane `l` of every vector holds message `l`'s words, under key `key_of[l]`
    /// of `table`.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn hmac16(
        table: &KeyTable,
        key_of: &[u8; LANES],
        blocks: &[Block; LANES],
        tags: &mut [u32; LANES],
    ) {
        let lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        let big_endian = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
        // Byte offsets of word `i` of each lane's block.
        let block_word = |i: usize| _mm512_add_epi32(_mm512_slli_epi32::<6>(lane), word(i));
        // SAFETY: `key_of` is 16 bytes, one unaligned 16-byte load.
        let key_index = _mm512_cvtepu8_epi32(unsafe { _mm_loadu_si128(key_of.as_ptr().cast()) });
        // Each lane's word of its key: `key_of` entries are below MAX_KEYS = 16, the lanes of
        // a table row (the permutation reads only an index's low 4 bits anyway).
        let pick = |row: &[u32; MAX_KEYS]| {
            // SAFETY: a row is 16 × 4 bytes, one unaligned 64-byte load.
            let row = unsafe { _mm512_loadu_si512(row.as_ptr().cast()) };
            _mm512_permutexvar_epi32(key_index, row)
        };

        let mut w = [_mm512_setzero_si512(); 16];
        for (i, w) in w.iter_mut().enumerate() {
            // SAFETY: every offset is below 16 × 64, inside `blocks`; gathers need no
            // alignment.
            let words =
                unsafe { _mm512_i32gather_epi32::<1>(block_word(i), blocks.as_ptr().cast()) };
            *w = _mm512_shuffle_epi8(words, big_endian);
        }
        let inner_start: [__m512i; 8] = std::array::from_fn(|i| pick(&table.inner[i]));
        let inner_end = rounds(inner_start, w);
        // The outer block: the inner digest, then the padding.
        let w: [__m512i; 16] = std::array::from_fn(|i| match i {
            0..8 => _mm512_add_epi32(inner_end[i], inner_start[i]),
            _ => _mm512_set1_epi32(OUTER_PADDING[i - 8] as i32),
        });
        let outer_start: [__m512i; 8] = std::array::from_fn(|i| pick(&table.outer[i]));
        let outer_end = rounds(outer_start, w);
        let first = _mm512_add_epi32(outer_end[0], outer_start[0]);
        // SAFETY: `tags` is 16 × 4 bytes, one unaligned 64-byte store.
        unsafe { _mm512_storeu_si512(tags.as_mut_ptr().cast(), first) };
    }

    /// `_mm512_set1_epi32(4 * i)`: the byte offset of word `i`.
    #[target_feature(enable = "avx512f")]
    fn word(i: usize) -> __m512i {
        _mm512_set1_epi32(4 * i as i32)
    }

    /// The 64 rounds of a compression of the message words `w` from `start`, in every lane;
    /// returns the working variables a..h (the caller adds `start` where it needs the words).
    ///
    /// Written out round by round (the macros below): every index is a constant, so the sixteen
    /// schedule words and the eight working variables stay in registers, and each round renames
    /// the variables instead of moving them. As a loop over the rounds, the compiler kept the
    /// schedule's ring in memory and moved all eight variables every round.
    #[target_feature(enable = "avx512f")]
    fn rounds(start: [__m512i; 8], mut w: [__m512i; 16]) -> [__m512i; 8] {
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = start;
        // Round `i` with the working variables named as they stand in it: only `d` and `h`
        // change, then the next round names them `e` and `a`.
        macro_rules! round {
            (
                $i:expr,
                $a:ident,
                $b:ident,
                $c:ident,
                $d:ident,
                $e:ident,
                $f:ident,
                $g:ident,
                $h:ident
            ) => {
                let i: usize = $i;
                if i >= 16 {
                    // W[i] = σ1(W[i−2]) + W[i−7] + σ0(W[i−15]) + W[i−16], in a ring of 16.
                    let w15 = w[(i + 1) % 16];
                    let w2 = w[(i + 14) % 16];
                    // 0x96: x ^ y ^ z.
                    let s0 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<7>(w15),
                        _mm512_ror_epi32::<18>(w15),
                        _mm512_srli_epi32::<3>(w15),
                    );
                    let s1 = _mm512_ternarylogic_epi32::<0x96>(
                        _mm512_ror_epi32::<17>(w2),
                        _mm512_ror_epi32::<19>(w2),
                        _mm512_srli_epi32::<10>(w2),
                    );
                    w[i % 16] = _mm512_add_epi32(
                        _mm512_add_epi32(w[i % 16], s0),
                        _mm512_add_epi32(w[(i + 9) % 16], s1),
                    );
                }
                let big_sigma1 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<6>($e),
                    _mm512_ror_epi32::<11>($e),
                    _mm512_ror_epi32::<25>($e),
                );
                // 0xCA: e ? f : g (Ch).
                let choice = _mm512_ternarylogic_epi32::<0xCA>($e, $f, $g);
                let k_w = _mm512_add_epi32(w[i % 16], _mm512_set1_epi32(K[i] as i32));
                let t1 = _mm512_add_epi32(
                    _mm512_add_epi32($h, big_sigma1),
                    _mm512_add_epi32(choice, k_w),
                );
                let big_sigma0 = _mm512_ternarylogic_epi32::<0x96>(
                    _mm512_ror_epi32::<2>($a),
                    _mm512_ror_epi32::<13>($a),
                    _mm512_ror_epi32::<22>($a),
                );
                // 0xE8: the majority of a, b, c (Maj).
                let majority = _mm512_ternarylogic_epi32::<0xE8>($a, $b, $c);
                let t2 = _mm512_add_epi32(big_sigma0, majority);
                $d = _mm512_add_epi32($d, t1);
                $h = _mm512_add_epi32(t1, t2);
            };
        }
        // Eight rounds from `i`: the names come back to where they started.
        macro_rules! eight_rounds {
            ($i:expr) => {
                round!($i, a, b, c, d, e, f, g, h);
                round!($i + 1, h, a, b, c, d, e, f, g);
                round!($i + 2, g, h, a, b, c, d, e, f);
                round!($i + 3, f, g, h, a, b, c, d, e);
                round!($i + 4, e, f, g, h, a, b, c, d);
                round!($i + 5, d, e, f, g, h, a, b, c);
                round!($i + 6, c, d, e, f, g, h, a, b);
                round!($i + 7, b, c, d, e, f, g, h, a);
            };
        }
        eight_rounds!(0);
        eight_rounds!(8);
        eight_rounds!(16);
        eight_rounds!(24);
        eight_rounds!(32);
        eight_rounds!(40);
        eight_rounds!(48);
        eight_rounds!(56);
        [a, b, c, d, e, f, g, h]
    }

    /// The SHA-extensions form. Made only by [`ShaNi::detect`], on a CPU with SHA, SSE4.1 and
    /// SSSE3.
    #[derive(Debug, Clone, Copy)]
    pub(super) struct ShaNi(());

    impl ShaNi {
        pub(super) fn detect() -> Option<ShaNi> {
            (is_x86_feature_detected!("sha")
                && is_x86_feature_detected!("sse4.1")
                && is_x86_feature_detected!("ssse3"))
            .then_some(ShaNi(()))
        }
    }

    impl Sha256Lanes for ShaNi {
        fn hmac_first_words(
            &self,
            keys: &[PrekeyedMac],
            key_of: &[u8],
            blocks: &[Block],
            tags: &mut [u32],
        ) {
            let count = blocks.len();
            let pairs = count / 2 * 2;
            for at in (0..pairs).step_by(2) {
                let key = |i: usize| &keys[usize::from(key_of[i])];
                let (first, second) = (key(at), key(at + 1));
                let mut states = [*first.inner(), *second.inner()];
                let blocks = [blocks[at], blocks[at + 1]];
                // SAFETY: a `ShaNi` exists only where `detect` found SHA, SSE4.1 and SSSE3.
                unsafe { compress2(&mut states, &blocks) };
                let digests = [outer_block(&states[0]), outer_block(&states[1])];
                let mut states = [*first.outer(), *second.outer()];
                // SAFETY: as above.
                unsafe { compress2(&mut states, &digests) };
                tags[at] = states[0][0];
                tags[at + 1] = states[1][0];
            }
            OneAtATime.hmac_first_words(
                keys,
                &key_of[pairs..],
                &blocks[pairs..],
                &mut tags[pairs..],
            );
        }
    }

    /// Two compressions interleaved: the same steps of the two blocks in turn.
    #[target_feature(enable = "sha,sse4.1,ssse3")]
    fn compress2(states: &mut [State; 2], blocks: &[Block; 2]) {
        let big_endian = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
        let mut abef = [_mm_setzero_si128(); 2];
        let mut cdgh = [_mm_setzero_si128(); 2];
        let mut w = [[_mm_setzero_si128(); 4]; 2];
        for lane in 0..2 {
            let state: *const __m128i = states[lane].as_ptr().cast();
            // SAFETY: a state is 32 bytes, two unaligned 16-byte loads.
            let (dcba, hgfe) = unsafe { (_mm_loadu_si128(state), _mm_loadu_si128(state.add(1))) };
            // The SHA instructions keep the state as ABEF and CDGH.
            let cdab = _mm_shuffle_epi32::<0xb1>(dcba);
            let efgh = _mm_shuffle_epi32::<0x1b>(hgfe);
            abef[lane] = _mm_alignr_epi8::<8>(cdab, efgh);
            cdgh[lane] = _mm_blend_epi16::<0xf0>(efgh, cdab);
            let block: *const __m128i = blocks[lane].as_ptr().cast();
            for (quarter, w) in w[lane].iter_mut().enumerate() {
                // SAFETY: a block is 64 bytes, four unaligned 16-byte loads.
                *w = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(block.add(quarter)) }, big_endian);
            }
        }
        let (start_abef, start_cdgh) = (abef, cdgh);
        for round4 in 0..16 {
            let i = round4 % 4;
            let k = &K[4 * round4..4 * round4 + 4];
            let k = _mm_set_epi32(k[3] as i32, k[2] as i32, k[1] as i32, k[0] as i32);
            for lane in 0..2 {
                let w = &mut w[lane];
                if round4 >= 4 {
                    // The next four schedule words, from the sixteen before them.
                    let partial = _mm_sha256msg1_epu32(w[i], w[(i + 1) % 4]);
                    let w7 = _mm_alignr_epi8::<4>(w[(i + 3) % 4], w[(i + 2) % 4]);
                    w[i] = _mm_sha256msg2_epu32(_mm_add_epi32(partial, w7), w[(i + 3) % 4]);
                }
                let k_w = _mm_add_epi32(w[i], k);
                cdgh[lane] = _mm_sha256rnds2_epu32(cdgh[lane], abef[lane], k_w);
                abef[lane] =
                    _mm_sha256rnds2_epu32(abef[lane], cdgh[lane], _mm_shuffle_epi32::<0x0e>(k_w));
            }
        }
        for lane in 0..2 {
            let abef = _mm_add_epi32(abef[lane], start_abef[lane]);
            let cdgh = _mm_add_epi32(cdgh[lane], start_cdgh[lane]);
            let feba = _mm_shuffle_epi32::<0x1b>(abef);
            let dchg = _mm_shuffle_epi32::<0xb1>(cdgh);
            let state: *mut __m128i = states[lane].as_mut_ptr().cast();
            // SAFETY: a state is 32 bytes, two unaligned 16-byte stores into it.
            unsafe {
                _mm_storeu_si128(state, _mm_blend_epi16::<0xf0>(feba, dchg));
                _mm_storeu_si128(state.add(1), _mm_alignr_epi8::<8>(dchg, feba));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        /// A batch: keys (1 to [`MAX_KEYS`]), then each message's key and block; the blocks need
        /// not be padded messages.
        fn batch() -> impl Strategy<Value = (Vec<[u8; 32]>, Vec<(u8, Block)>)> {
            (1..=MAX_KEYS).prop_flat_map(|keys| {
                let message = (0..keys as u8, any::<[[u8; 32]; 2]>()).prop_map(|(key, halves)| {
                    let mut block = [0u8; 64];
                    block[..32].copy_from_slice(&halves[0]);
                    block[32..].copy_from_slice(&halves[1]);
                    (key, block)
                });
                (
                    proptest::collection::vec(any::<[u8; 32]>(), keys),
                    proptest::collection::vec(message, 0..=50),
                )
            })
        }

        fn tags(
            lanes: &dyn Sha256Lanes,
            (keys, messages): &(Vec<[u8; 32]>, Vec<(u8, Block)>),
        ) -> Vec<u32> {
            let keys: Vec<PrekeyedMac> = keys.iter().map(PrekeyedMac::new).collect();
            let key_of: Vec<u8> = messages.iter().map(|message| message.0).collect();
            let blocks: Vec<Block> = messages.iter().map(|message| message.1).collect();
            let mut tags = vec![0; messages.len()];
            lanes.hmac_first_words(&keys, &key_of, &blocks, &mut tags);
            tags
        }

        proptest! {
            #[test]
            /// On a CPU with neither AVX-512 nor the SHA extensions, synwall runs
            /// `OneAtATime` only, and there is nothing to compare.
            fn prop_every_form_matches_one_at_a_time(batch in batch()) {
                let expected = tags(&OneAtATime, &batch);
                if let Some(lanes) = Avx512::detect() {
                    prop_assert_eq!(tags(&lanes, &batch), expected.clone());
                    prop_assert_eq!(tags(&Avx512 { rest: None }, &batch), expected.clone());
                }
                if let Some(lanes) = ShaNi::detect() {
                    prop_assert_eq!(tags(&lanes, &batch), expected);
                }
            }
        }
    }
}
