//! TCP options of a handshake: MSS (RFC 9293), window scale and timestamps (RFC 7323),
//! SACK-permitted (RFC 2018).
//!
//! Parsing skips unknown options and rejects malformed lengths: a length below 2, running past
//! the header, or different from the fixed length of a known option. Emission uses the layout
//! Linux sends, 4-byte aligned: MSS, then SACK-permitted and timestamps, then window scale.

/// The largest shift RFC 7323 §2.3 allows; larger values are treated as 14.
pub const MAX_WINDOW_SCALE: u8 = 14;

use super::checksum::Sum;

/// The timestamps option (RFC 7323 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamps {
    /// TSval: the sender's clock.
    pub value: u32,
    /// TSecr: the latest TSval received from the peer.
    pub echo: u32,
}

/// The options synwall reads and writes. Unknown options are not represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    pub timestamps: Option<Timestamps>,
}

const END: u8 = 0;
const NOP: u8 = 1;
const MSS: u8 = 2;
const WINDOW_SCALE: u8 = 3;
const SACK_PERMITTED: u8 = 4;
const TIMESTAMPS: u8 = 8;

/// The longest options block [`TcpOptions::emit`] writes.
pub(crate) const MAX_EMITTED_LEN: usize = 20;

/// A malformed option length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadOptionLength;

/// The fixed bytes of the two layouts [`TcpOptions::parse_common`] reads, as big-endian words:
/// NOP, NOP, timestamps (every Linux segment after the SYN); and Linux's SYN: MSS (its kind and
/// length), SACK-permitted with the timestamps' kind and length, then NOP and window scale (its
/// kind and length).
const NOP_NOP_TIMESTAMPS: u32 = u32::from_be_bytes([NOP, NOP, TIMESTAMPS, 10]);
const MSS_HEAD: u32 = u32::from_be_bytes([MSS, 4, 0, 0]);
const SACK_PERMITTED_TIMESTAMPS_HEAD: u32 = u32::from_be_bytes([SACK_PERMITTED, 2, TIMESTAMPS, 10]);
const NOP_WINDOW_SCALE_HEAD: u32 = u32::from_be_bytes([NOP, WINDOW_SCALE, 3, 0]);
/// The bytes of a word that hold kinds and lengths: the first two.
const HEAD_MASK: u32 = 0xffff_0000;
/// The first three.
const HEAD3_MASK: u32 = 0xffff_ff00;

impl TcpOptions {
    /// Parses the options area of a TCP header (the bytes after the fixed 20). Inlined: its
    /// result, built field by field, was stalling the read that copied it into the segment.
    ///
    /// The two layouts nearly every segment of a handshake has are read word by word
    /// ([`TcpOptions::parse_common`]); any other goes through the option loop, which gives the
    /// same result for those two (a property test holds them to it).
    #[inline(always)]
    pub(crate) fn parse(area: &[u8]) -> Result<TcpOptions, BadOptionLength> {
        match TcpOptions::parse_common(area) {
            Some(options) => Ok(options),
            None => TcpOptions::parse_any(area),
        }
    }

    /// Linux's SYN options (MSS, SACK-permitted, timestamps, NOP, window scale: 20 bytes) and
    /// the NOP, NOP, timestamps of every later segment (12 bytes), checked by their fixed bytes
    /// a word at a time; `None` for any other area. The option loop took a SYN five rounds of a
    /// branch on each option's kind.
    #[inline(always)]
    fn parse_common(area: &[u8]) -> Option<TcpOptions> {
        let be32 = |at: usize| u32::from_be_bytes(area[at..at + 4].try_into().expect("four bytes"));
        let timestamps = |at: usize| Timestamps {
            value: be32(at),
            echo: be32(at + 4),
        };
        match area.len() {
            12 if be32(0) == NOP_NOP_TIMESTAMPS => Some(TcpOptions {
                timestamps: Some(timestamps(4)),
                ..TcpOptions::default()
            }),
            20 if be32(0) & HEAD_MASK == MSS_HEAD
                && be32(4) == SACK_PERMITTED_TIMESTAMPS_HEAD
                && be32(16) & HEAD3_MASK == NOP_WINDOW_SCALE_HEAD =>
            {
                Some(TcpOptions {
                    mss: Some(u16::from_be_bytes([area[2], area[3]])),
                    window_scale: Some(area[19].min(MAX_WINDOW_SCALE)),
                    sack_permitted: true,
                    timestamps: Some(timestamps(8)),
                })
            }
            _ => None,
        }
    }

    /// Parses any options area, option by option.
    #[inline(always)]
    fn parse_any(mut area: &[u8]) -> Result<TcpOptions, BadOptionLength> {
        let mut options = TcpOptions::default();
        while let Some(&kind) = area.first() {
            match kind {
                END => break,
                NOP => {
                    area = &area[1..];
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*area.get(1).ok_or(BadOptionLength)?);
            if len < 2 || len > area.len() {
                return Err(BadOptionLength);
            }
            let body = &area[2..len];
            match (kind, body.len()) {
                (MSS, 2) => options.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (WINDOW_SCALE, 1) => options.window_scale = Some(body[0].min(MAX_WINDOW_SCALE)),
                (SACK_PERMITTED, 0) => options.sack_permitted = true,
                (TIMESTAMPS, 8) => {
                    options.timestamps = Some(Timestamps {
                        value: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        echo: u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    })
                }
                (MSS | WINDOW_SCALE | SACK_PERMITTED | TIMESTAMPS, _) => {
                    return Err(BadOptionLength);
                }
                _ => {}
            }
            area = &area[len..];
        }
        Ok(options)
    }

    /// The number of bytes [`TcpOptions::emit`] writes: always a multiple of 4.
    pub(crate) fn emitted_len(&self) -> usize {
        let mss = if self.mss.is_some() { 4 } else { 0 };
        let sack_and_timestamps = match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        let window_scale = if self.window_scale.is_some() { 4 } else { 0 };
        mss + sack_and_timestamps + window_scale
    }

    /// Adds the bytes [`TcpOptions::emit`] writes to a checksum, from the values: the same
    /// layout, word by word.
    pub(crate) fn add_to(&self, mut sum: Sum) -> Sum {
        if let Some(mss) = self.mss {
            sum = sum.add_u16(word(MSS, 4)).add_u16(mss);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack, Some(ts)) => {
                let first = if sack {
                    word(SACK_PERMITTED, 2)
                } else {
                    word(NOP, NOP)
                };
                sum = sum
                    .add_u16(first)
                    .add_u16(word(TIMESTAMPS, 10))
                    .add_u32(ts.value)
                    .add_u32(ts.echo);
            }
            (true, None) => sum = sum.add_u16(word(NOP, NOP)).add_u16(word(SACK_PERMITTED, 2)),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            sum = sum.add_u16(word(NOP, WINDOW_SCALE)).add_u16(word(3, shift));
        }
        sum
    }

    /// Writes the options into `out`, which must be exactly [`TcpOptions::emitted_len`] long.
    pub(crate) fn emit(&self, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.emitted_len());
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [hi, lo] = mss.to_be_bytes();
            put(&[MSS, 4, hi, lo]);
        }
        match (self.sack_permitted, self.timestamps) {
            (sack, Some(ts)) => {
                if sack {
                    put(&[SACK_PERMITTED, 2]);
                } else {
                    put(&[NOP, NOP]);
                }
                put(&[TIMESTAMPS, 10]);
                put(&ts.value.to_be_bytes());
                put(&ts.echo.to_be_bytes());
            }
            (true, None) => put(&[NOP, NOP, SACK_PERMITTED, 2]),
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[NOP, WINDOW_SCALE, 3, shift]);
        }
    }
}

fn word(high: u8, low: u8) -> u16 {
    u16::from_be_bytes([high, low])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(bytes: &[u8]) -> Result<TcpOptions, BadOptionLength> {
        TcpOptions::parse(bytes)
    }

    fn emit(options: &TcpOptions) -> Vec<u8> {
        let mut out = vec![0xa5; options.emitted_len()];
        options.emit(&mut out);
        out
    }

    #[test]
    fn test_parse_linux_syn_options() {
        // MSS 1460, SACK-permitted, timestamps, NOP, window scale 7: what Linux sends.
        let bytes = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let options = parse(&bytes).unwrap();
        assert_eq!(
            options,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { value: 7, echo: 0 }),
            }
        );
        assert_eq!(emit(&options), bytes);
    }

    #[test]
    fn test_parse_windows_syn_options() {
        // MSS, NOP, window scale 8, NOP, NOP, SACK-permitted: what Windows sends.
        let bytes = [2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2];
        let options = parse(&bytes).unwrap();
        assert_eq!(options.mss, Some(1460));
        assert_eq!(options.window_scale, Some(8));
        assert!(options.sack_permitted);
        assert_eq!(options.timestamps, None);
    }

    #[test]
    fn test_parse_skips_unknown_options() {
        // MD5 signature (19, 18 bytes), an unknown 2-byte option, then MSS.
        let mut bytes = vec![19, 18];
        bytes.extend_from_slice(&[0xee; 16]);
        bytes.extend_from_slice(&[253, 2, 2, 4, 0x05, 0xb4]);
        assert_eq!(parse(&bytes).unwrap().mss, Some(1460));
    }

    #[test]
    fn test_parse_stops_at_end_of_options() {
        let bytes = [0, 2, 4, 5, 180];
        assert_eq!(parse(&bytes).unwrap(), TcpOptions::default());
    }

    #[test]
    fn test_parse_rejects_malformed_lengths() {
        let cases: &[&[u8]] = &[
            &[2],                     // length byte missing
            &[2, 1, 0, 0],            // length below 2
            &[2, 0],                  // zero length would loop forever
            &[2, 6, 5, 180],          // runs past the end
            &[2, 3, 5],               // MSS with the wrong length
            &[3, 4, 7, 0],            // window scale with the wrong length
            &[4, 3, 0],               // SACK-permitted with the wrong length
            &[8, 6, 0, 0, 0, 0],      // timestamps with the wrong length
            &[253, 9, 0, 0, 0, 0, 0], // unknown option running past the end
        ];
        for case in cases {
            assert_eq!(parse(case), Err(BadOptionLength), "{case:?}");
        }
    }

    /// An area of one of the layouts `parse_common` reads, as `emit` writes them, with random
    /// values; then up to two bytes changed anywhere (kinds and lengths included).
    fn common_layout() -> impl Strategy<Value = Vec<u8>> {
        let timestamps =
            (any::<u32>(), any::<u32>()).prop_map(|(value, echo)| Timestamps { value, echo });
        let options = prop_oneof![
            timestamps.clone().prop_map(|timestamps| TcpOptions {
                timestamps: Some(timestamps),
                ..TcpOptions::default()
            }),
            (any::<u16>(), any::<u8>(), timestamps).prop_map(|(mss, shift, timestamps)| {
                TcpOptions {
                    mss: Some(mss),
                    window_scale: Some(shift),
                    sack_permitted: true,
                    timestamps: Some(timestamps),
                }
            }),
        ];
        let changes = proptest::collection::vec((any::<usize>(), any::<u8>()), 0..3);
        (options, changes).prop_map(|(options, changes)| {
            let mut area = emit(&options);
            let len = area.len();
            for (at, byte) in changes {
                area[at % len] = byte;
            }
            area
        })
    }

    proptest! {
        #[test]
        fn test_common_layouts_parse_as_the_option_loop_does(area in common_layout()) {
            prop_assert_eq!(parse(&area), TcpOptions::parse_any(&area));
        }
    }

    #[test]
    fn test_common_layouts_take_the_word_path() {
        let syn = [
            2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9, 1, 3, 3, 15,
        ];
        let ack = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
        for area in [&syn[..], &ack] {
            let by_loop = TcpOptions::parse_any(area).unwrap();
            assert_eq!(TcpOptions::parse_common(area), Some(by_loop), "{area:?}");
        }
        assert_eq!(parse(&syn).unwrap().window_scale, Some(MAX_WINDOW_SCALE));
        // The Windows layout is read by the loop.
        assert_eq!(
            TcpOptions::parse_common(&[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2]),
            None
        );
    }

    #[test]
    fn test_parse_clamps_window_scale() {
        assert_eq!(parse(&[3, 3, 15]).unwrap().window_scale, Some(14));
    }

    #[test]
    fn test_emit_layouts_are_aligned() {
        for mss in [None, Some(1460)] {
            for window_scale in [None, Some(7)] {
                for sack_permitted in [false, true] {
                    for timestamps in [None, Some(Timestamps { value: 1, echo: 2 })] {
                        let options = TcpOptions {
                            mss,
                            window_scale,
                            sack_permitted,
                            timestamps,
                        };
                        let bytes = emit(&options);
                        assert_eq!(
                            options.add_to(Sum::default()).finish(),
                            Sum::default().add_bytes(&bytes).finish(),
                            "{options:?}"
                        );
                        assert_eq!(bytes.len() % 4, 0);
                        assert!(bytes.len() <= MAX_EMITTED_LEN);
                        assert_eq!(parse(&bytes).unwrap(), options);
                    }
                }
            }
        }
    }
}
