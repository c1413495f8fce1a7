//! Frame templates: an Ethernet/IPv4/TCP frame built once with [`synwall::wire::emit`]
//! (checksums correct), then copied and patched per packet: source address, source port,
//! sequence and acknowledgment numbers, and the timestamps option. Both checksums are updated
//! incrementally (RFC 1624), never recomputed over the frame.
//!
//! Invariants:
//! - A template is an untagged IPv4 frame with no IP options, so every patched field sits at a
//!   fixed offset; the timestamps option, if any, at an even offset of the TCP header.
//! - [`Template::write`] writes exactly the template's length, allocates nothing and leaves
//!   both checksums valid for whatever it patched.
//!
//! # Incremental checksums
//!
//! RFC 1624 eqn. 3 updates a checksum `HC` when a 16-bit word changes from `m` to `m'`:
//! `HC' = ~(~HC + ~m + m')` in one's-complement arithmetic. Applied at build time to every
//! patched word with `m' = 0`, it yields a *base*: the one's-complement sum of everything
//! else. Per packet, the checksum is then `~(base + Σ patched words)`.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use synwall::seq::SeqNumber;
use synwall::wire::{self, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

const IP_CHECKSUM: usize = 14 + 10;
const IP_SRC: usize = 14 + 12;
const TCP: usize = 14 + 20;
const TCP_SRC_PORT: usize = TCP;
const TCP_SEQ: usize = TCP + 4;
const TCP_ACK: usize = TCP + 8;
const TCP_DATA_OFFSET: usize = TCP + 12;
const TCP_CHECKSUM: usize = TCP + 16;
const TCP_OPTIONS: usize = TCP + 20;
/// The longest TCP options block (the data offset field counts 4-byte words up to 15).
const MAX_OPTIONS: usize = 40;

/// What a template is made of; everything but the patched fields.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub dst: SocketAddrV4,
    pub ttl: u8,
    pub flags: TcpFlags,
    pub window: u16,
    /// The TCP options, byte for byte: a multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
    /// Where TSval starts in `options` (TSecr follows it), if the segment carries timestamps.
    pub timestamps_value_at: Option<usize>,
}

/// The fields patched into every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    pub src: Ipv4Addr,
    pub src_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    /// Ignored by templates without the timestamps option.
    pub timestamps: Timestamps,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Box<[u8]>,
    /// Where TSval starts in the frame.
    timestamps_value_at: Option<usize>,
    /// One's-complement sum of the IPv4 header without the source address and the checksum.
    ip_base: u32,
    /// One's-complement sum of pseudo-header and segment without the patched fields and the
    /// checksum.
    tcp_base: u32,
}

impl Template {
    /// Builds the template of `segment`.
    ///
    /// # Panics
    /// If the options are not a multiple of 4 bytes up to 40, or the timestamps offset is odd
    /// or leaves no room for TSval and TSecr: the segments are constants of this crate.
    pub fn new(segment: &Segment<'_>) -> Template {
        let options_len = segment.options.len();
        assert!(
            options_len.is_multiple_of(4) && options_len <= MAX_OPTIONS,
            "TCP options must be a multiple of 4 bytes, at most {MAX_OPTIONS}"
        );
        if let Some(at) = segment.timestamps_value_at {
            assert!(
                at.is_multiple_of(2) && at + 8 <= options_len,
                "TSval must sit at an even offset with TSecr after it"
            );
        }
        // The options go out as payload first, so that emit sizes the IP packet and sums them
        // into the TCP checksum; then the data offset claims them as header.
        let repr = TcpRepr {
            link: LinkAddrs {
                src: segment.src_mac,
                dst: segment.dst_mac,
                vlan: None,
            },
            src: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            dst: SocketAddr::V4(segment.dst),
            hop_limit: segment.ttl,
            seq: SeqNumber(0),
            ack: SeqNumber(0),
            flags: segment.flags,
            window: segment.window,
            options: TcpOptions::default(),
            payload: segment.options,
        };
        let mut frame = vec![0; wire::emitted_len(&repr)].into_boxed_slice();
        wire::emit(&repr, &mut frame).expect("the buffer has the emitted length");
        let header_words = (5 + options_len / 4) as u8;
        let tcp_checksum = replace_word(
            read_word(&frame, TCP_CHECKSUM),
            read_word(&frame, TCP_DATA_OFFSET),
            u16::from_be_bytes([header_words << 4, segment.flags.0]),
        );
        frame[TCP_DATA_OFFSET] = header_words << 4;
        frame[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&tcp_checksum.to_be_bytes());

        let timestamps_value_at = segment.timestamps_value_at.map(|at| TCP_OPTIONS + at);
        let ip_base = base(read_word(&frame, IP_CHECKSUM), &frame, &[(IP_SRC, 4)]);
        let mut patched = vec![(IP_SRC, 4), (TCP_SRC_PORT, 2), (TCP_SEQ, 8)];
        patched.extend(timestamps_value_at.map(|at| (at, 8)));
        let tcp_base = base(read_word(&frame, TCP_CHECKSUM), &frame, &patched);
        Template {
            frame,
            timestamps_value_at,
            ip_base,
            tcp_base,
        }
    }

    /// Whether the template carries the timestamps option.
    #[cfg(test)]
    fn has_timestamps(&self) -> bool {
        self.timestamps_value_at.is_some()
    }

    /// Writes the template with `patch` applied at the start of `out`; returns its length, or
    /// None when `out` is too short. The per-packet hot path: a copy, a few stores and two
    /// incremental checksums.
    #[inline]
    pub fn write(&self, patch: &Patch, out: &mut [u8]) -> Option<usize> {
        let frame = out.get_mut(..self.frame.len())?;
        frame.copy_from_slice(&self.frame);

        let src = patch.src.octets();
        frame[IP_SRC..IP_SRC + 4].copy_from_slice(&src);
        let src_sum = u32_words(u32::from_be_bytes(src));
        let ip_checksum = !fold(self.ip_base + src_sum);
        frame[IP_CHECKSUM..IP_CHECKSUM + 2].copy_from_slice(&ip_checksum.to_be_bytes());

        frame[TCP_SRC_PORT..TCP_SRC_PORT + 2].copy_from_slice(&patch.src_port.to_be_bytes());
        frame[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&patch.seq.0.to_be_bytes());
        frame[TCP_ACK..TCP_ACK + 4].copy_from_slice(&patch.ack.0.to_be_bytes());
        let mut tcp_sum = self.tcp_base
            + src_sum
            + u32::from(patch.src_port)
            + u32_words(patch.seq.0)
            + u32_words(patch.ack.0);
        if let Some(at) = self.timestamps_value_at {
            let Timestamps { value, echo } = patch.timestamps;
            frame[at..at + 4].copy_from_slice(&value.to_be_bytes());
            frame[at + 4..at + 8].copy_from_slice(&echo.to_be_bytes());
            tcp_sum += u32_words(value) + u32_words(echo);
        }
        let tcp_checksum = !fold(tcp_sum);
        frame[TCP_CHECKSUM..TCP_CHECKSUM + 2].copy_from_slice(&tcp_checksum.to_be_bytes());
        Some(frame.len())
    }
}

fn read_word(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// The sum of the two 16-bit halves of `value`.
fn u32_words(value: u32) -> u32 {
    (value >> 16) + (value & 0xffff)
}

/// Folds a sum of 16-bit words (below 2^32) into 16 bits with end-around carry.
fn fold(sum: u32) -> u16 {
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 eqn. 3: the checksum after one word changes from `old` to `new`.
fn replace_word(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u32::from(!checksum) + u32::from(!old) + u32::from(new))
}

/// The one's-complement sum a checksum covers, minus the words of the `(offset, len)` fields:
/// RFC 1624 eqn. 3 with every patched word replaced by zero.
fn base(checksum: u16, frame: &[u8], fields: &[(usize, usize)]) -> u32 {
    let mut sum = u32::from(!checksum);
    for &(at, len) in fields {
        for word in (at..at + len).step_by(2) {
            sum += u32::from(!read_word(frame, word));
        }
    }
    u32::from(fold(sum))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint;
    use proptest::prelude::*;
    use synwall::wire::{Endpoints, Parsed};

    const TARGET: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);

    fn syn(fingerprint: &fingerprint::SynFingerprint) -> Template {
        Template::new(&Segment {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst: TARGET,
            ttl: fingerprint.ttl,
            flags: TcpFlags::SYN,
            window: fingerprint.window,
            options: fingerprint.options,
            timestamps_value_at: fingerprint.timestamps_value_at,
        })
    }

    fn ack_with_timestamps() -> Template {
        Template::new(&Segment {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst: TARGET,
            ttl: 64,
            flags: TcpFlags::ACK,
            window: 502,
            options: &fingerprint::NOP_NOP_TIMESTAMPS,
            timestamps_value_at: Some(fingerprint::NOP_NOP_TIMESTAMPS_VALUE_AT),
        })
    }

    fn write(template: &Template, patch: &Patch) -> Vec<u8> {
        let mut out = vec![0xa5; 2048];
        let len = template.write(patch, &mut out).unwrap();
        out.truncate(len);
        out
    }

    #[track_caller]
    fn parse(frame: &[u8]) -> TcpRepr<'_> {
        match wire::parse(frame, &Endpoints::new([SocketAddr::V4(TARGET)])) {
            Parsed::Ours(repr) => repr,
            other => panic!("not a valid segment: {other:?}"),
        }
    }

    #[test]
    fn test_linux_layout_is_what_synwall_emits() {
        let repr = TcpRepr {
            link: LinkAddrs::default(),
            src: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 18, 128, 1), 1000)),
            dst: SocketAddr::V4(TARGET),
            hop_limit: 64,
            seq: SeqNumber(0),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { value: 0, echo: 0 }),
            },
            payload: &[],
        };
        let mut frame = vec![0; wire::emitted_len(&repr)];
        wire::emit(&repr, &mut frame).unwrap();
        assert_eq!(&frame[TCP_OPTIONS..], fingerprint::LINUX.options);
    }

    #[test]
    fn test_template_is_the_emitted_frame_with_options_in_the_header() {
        let template = syn(&fingerprint::MACOS);
        let patch = Patch {
            src: Ipv4Addr::new(198, 18, 200, 7),
            src_port: 40000,
            seq: SeqNumber(0xfffffff0),
            ack: SeqNumber(0),
            timestamps: Timestamps {
                value: 123,
                echo: 0,
            },
        };
        let frame = write(&template, &patch);
        assert_eq!(frame.len(), 14 + 20 + 20 + 24);
        let repr = parse(&frame);
        assert_eq!(repr.src, "198.18.200.7:40000".parse().unwrap());
        assert_eq!(repr.seq, SeqNumber(0xfffffff0));
        assert_eq!(repr.flags, TcpFlags::SYN);
        assert_eq!(repr.window, 65535);
        assert_eq!(repr.hop_limit, 64);
        assert!(repr.payload.is_empty());
        assert_eq!(
            repr.options,
            TcpOptions {
                mss: Some(1460),
                window_scale: Some(6),
                sack_permitted: true,
                timestamps: Some(Timestamps {
                    value: 123,
                    echo: 0
                }),
            }
        );
    }

    #[test]
    fn test_write_refuses_a_short_buffer() {
        let template = syn(&fingerprint::WINDOWS);
        let patch = Patch {
            src: Ipv4Addr::new(198, 18, 128, 1),
            src_port: 1,
            seq: SeqNumber(1),
            ack: SeqNumber(0),
            timestamps: Timestamps::default(),
        };
        let len = write(&template, &patch).len();
        let mut out = vec![0; len - 1];
        assert_eq!(template.write(&patch, &mut out), None);
    }

    #[test]
    fn test_checksum_helpers_match_rfc_1624_example() {
        // RFC 1624 §4: HC = 0xDD2F, m = 0x5555 → m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(replace_word(0xdd2f, 0x5555, 0x3285), 0x0000);
        assert_eq!(fold(0xffff + 0xffff), 0xffff);
    }

    proptest! {
        #[test]
        fn prop_patched_frames_verify(
            which in 0usize..4,
            host in any::<u32>(),
            src_port in 1u16..,
            seq in any::<u32>(),
            ack in any::<u32>(),
            value in any::<u32>(),
            echo in any::<u32>(),
        ) {
            let template = match which {
                3 => ack_with_timestamps(),
                stack => syn(&fingerprint::ALL[stack]),
            };
            let src = "198.18.128.0/17".parse::<crate::guard::Ipv4Cidr>().unwrap().address(host);
            let patch = Patch {
                src,
                src_port,
                seq: SeqNumber(seq),
                ack: SeqNumber(ack),
                timestamps: Timestamps { value, echo },
            };
            let frame = write(&template, &patch);
            let repr = parse(&frame);
            prop_assert_eq!(repr.src, SocketAddr::V4(SocketAddrV4::new(src, src_port)));
            prop_assert_eq!(repr.seq, SeqNumber(seq));
            prop_assert_eq!(repr.ack, SeqNumber(ack));
            let expected_timestamps = template.has_timestamps().then_some(Timestamps { value, echo });
            prop_assert_eq!(repr.options.timestamps, expected_timestamps);
        }

        #[test]
        fn prop_any_bit_flip_after_patching_fails_verification(
            host in any::<u32>(),
            src_port in 1u16..,
            seq in any::<u32>(),
            bit in (14 * 8usize)..((14 + 40) * 8),
        ) {
            let template = syn(&fingerprint::LINUX);
            let patch = Patch {
                src: Ipv4Addr::from(0xc612_8000 | (host & 0x7fff)),
                src_port,
                seq: SeqNumber(seq),
                ack: SeqNumber(0),
                timestamps: Timestamps::default(),
            };
            let mut frame = write(&template, &patch);
            frame[bit / 8] ^= 1 << (bit % 8);
            let served = Endpoints::new([SocketAddr::V4(TARGET)]);
            prop_assert!(!matches!(wire::parse(&frame, &served), Parsed::Ours(_)));
        }
    }
}
