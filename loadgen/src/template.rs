//! Frame templates: an Ethernet/IP/TCP frame, IPv4 or IPv6, built once with
//! [`synwall::wire::emit`] (checksums correct), then copied and patched per packet: source
//! address, source port, sequence and acknowledgment numbers, and the timestamps option. The
//! TCP checksum, and IPv4's header checksum, are updated incrementally (RFC 1624), never
//! recomputed over the frame; IPv6 has no header checksum.
//!
//! Invariants:
//! - A template is an untagged frame with no IPv4 options or IPv6 extension headers, so every
//!   patched field sits at a fixed offset of its family's layout; the timestamps option, if
//!   any, at an even offset of the TCP header.
//! - [`Template::write`] writes exactly the template's length, allocates nothing and leaves
//!   every checksum valid for whatever it patched. It panics on a patch whose source is of the
//!   other family (a bug of the caller: a run has one family).
//!
//! # Incremental checksums
//!
//! RFC 1624 eqn. 3 updates a checksum `HC` when a 16-bit word changes from `m` to `m'`:
//! `HC' = ~(~HC + ~m + m')` in one's-complement arithmetic. Applied at build time to every
//! patched word with `m' = 0`, it yields a *base*: the one's-complement sum of everything
//! else. Per packet, the checksum is then `~(base + Σ patched words)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use synwall::seq::SeqNumber;
use synwall::wire::{self, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

const ETHERNET: usize = 14;
const IPV4_CHECKSUM: usize = ETHERNET + 10;
const IPV4_SRC: usize = ETHERNET + 12;
const IPV4_TCP: usize = ETHERNET + 20;
const IPV6_SRC: usize = ETHERNET + 8;
const IPV6_TCP: usize = ETHERNET + 40;
/// Offsets inside the TCP header.
const TCP_SRC_PORT: usize = 0;
const TCP_SEQ: usize = 4;
const TCP_ACK: usize = 8;
const TCP_DATA_OFFSET: usize = 12;
const TCP_CHECKSUM: usize = 16;
const TCP_OPTIONS: usize = 20;
/// The longest TCP options block (the data offset field counts 4-byte words up to 15).
const MAX_OPTIONS: usize = 40;

/// What a template is made of; everything but the patched fields.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// IPv4 or IPv6: the template's family.
    pub dst: SocketAddr,
    /// The IPv4 TTL or IPv6 hop limit.
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
    /// Of the template's family.
    pub src: IpAddr,
    pub src_port: u16,
    pub seq: SeqNumber,
    pub ack: SeqNumber,
    /// Ignored by templates without the timestamps option.
    pub timestamps: Timestamps,
}

/// The network header's share of the patching, by family.
#[derive(Debug, Clone, Copy)]
enum Network {
    /// One's-complement sum of the IPv4 header without the source address and the checksum.
    V4 { header_base: u32 },
    /// No header checksum: the source address counts in the TCP checksum only.
    V6,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Template {
    frame: Box<[u8]>,
    network: Network,
    /// Where the TCP header starts in the frame.
    tcp: usize,
    /// Where TSval starts in the frame.
    timestamps_value_at: Option<usize>,
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
        let (unspecified, src, tcp) = match segment.dst {
            SocketAddr::V4(_) => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), (IPV4_SRC, 4), IPV4_TCP),
            SocketAddr::V6(_) => (IpAddr::V6(Ipv6Addr::UNSPECIFIED), (IPV6_SRC, 16), IPV6_TCP),
        };
        // The options go out as payload first, so that emit sizes the IP packet and sums them
        // into the TCP checksum; then the data offset claims them as header.
        let repr = TcpRepr {
            link: LinkAddrs {
                src: segment.src_mac,
                dst: segment.dst_mac,
                vlan: None,
            },
            src: SocketAddr::new(unspecified, 0),
            dst: segment.dst,
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
        let (data_offset, checksum) = (tcp + TCP_DATA_OFFSET, tcp + TCP_CHECKSUM);
        let tcp_checksum = replace_word(
            read_word(&frame, checksum),
            read_word(&frame, data_offset),
            u16::from_be_bytes([header_words << 4, segment.flags.0]),
        );
        frame[data_offset] = header_words << 4;
        frame[checksum..checksum + 2].copy_from_slice(&tcp_checksum.to_be_bytes());

        let network = match segment.dst {
            SocketAddr::V4(_) => Network::V4 {
                header_base: base(read_word(&frame, IPV4_CHECKSUM), &frame, &[src]),
            },
            SocketAddr::V6(_) => Network::V6,
        };
        let timestamps_value_at = segment.timestamps_value_at.map(|at| tcp + TCP_OPTIONS + at);
        let mut patched = vec![src, (tcp + TCP_SRC_PORT, 2), (tcp + TCP_SEQ, 8)];
        patched.extend(timestamps_value_at.map(|at| (at, 8)));
        let tcp_base = base(read_word(&frame, checksum), &frame, &patched);
        Template {
            frame,
            network,
            tcp,
            timestamps_value_at,
            tcp_base,
        }
    }

    /// Whether the template carries the timestamps option.
    #[cfg(test)]
    fn has_timestamps(&self) -> bool {
        self.timestamps_value_at.is_some()
    }

    /// Writes the template with `patch` applied at the start of `out`; returns its length, or
    /// None when `out` is too short. The per-packet hot path: a copy, a few stores and one or
    /// two incremental checksums.
    ///
    /// # Panics
    /// If `patch.src` is not of the template's family.
    #[inline]
    pub fn write(&self, patch: &Patch, out: &mut [u8]) -> Option<usize> {
        let frame = out.get_mut(..self.frame.len())?;
        frame.copy_from_slice(&self.frame);

        let src_sum = match (self.network, patch.src) {
            (Network::V4 { header_base }, IpAddr::V4(src)) => {
                frame[IPV4_SRC..IPV4_SRC + 4].copy_from_slice(&src.octets());
                let src_sum = u32_words(src.to_bits());
                let ip_checksum = !fold(header_base + src_sum);
                frame[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&ip_checksum.to_be_bytes());
                src_sum
            }
            (Network::V6, IpAddr::V6(src)) => {
                let octets = src.octets();
                frame[IPV6_SRC..IPV6_SRC + 16].copy_from_slice(&octets);
                octets
                    .chunks_exact(2)
                    .map(|word| u32::from(u16::from_be_bytes([word[0], word[1]])))
                    .sum()
            }
            _ => panic!("a patch's source must be of the template's address family"),
        };

        let tcp = &mut frame[self.tcp..];
        tcp[TCP_SRC_PORT..TCP_SRC_PORT + 2].copy_from_slice(&patch.src_port.to_be_bytes());
        tcp[TCP_SEQ..TCP_SEQ + 4].copy_from_slice(&patch.seq.0.to_be_bytes());
        tcp[TCP_ACK..TCP_ACK + 4].copy_from_slice(&patch.ack.0.to_be_bytes());
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
        let checksum = self.tcp + TCP_CHECKSUM;
        frame[checksum..checksum + 2].copy_from_slice(&tcp_checksum.to_be_bytes());
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
    use crate::fingerprint::{self, SynFingerprint, ethernet_mss};
    use crate::guard::Cidr;
    use proptest::prelude::*;
    use synwall::wire::{Endpoints, Parsed};

    const TARGET_V4: &str = "198.18.0.1:80";
    const TARGET_V6: &str = "[2001:2::1]:80";

    fn target(ipv6: bool) -> SocketAddr {
        if ipv6 { TARGET_V6 } else { TARGET_V4 }.parse().unwrap()
    }

    /// The lab's spoofed sources of `target`'s family.
    fn sources(target: SocketAddr) -> Cidr {
        match target {
            SocketAddr::V4(_) => crate::lab::SPOOFED_SOURCES,
            SocketAddr::V6(_) => crate::lab::SPOOFED_SOURCES_V6,
        }
        .parse()
        .unwrap()
    }

    fn syn(stack: &SynFingerprint, target: SocketAddr) -> Template {
        let mss = ethernet_mss(target.ip());
        Template::new(&Segment {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst: target,
            ttl: stack.ttl,
            flags: TcpFlags::SYN,
            window: stack.window_for(mss),
            options: &stack.options(mss),
            timestamps_value_at: stack.timestamps_value_at,
        })
    }

    fn ack_with_timestamps(target: SocketAddr) -> Template {
        Template::new(&Segment {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            dst: target,
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

    /// The frame parsed and verified (both checksums) by synwall's parser.
    #[track_caller]
    fn parse(frame: &[u8], target: SocketAddr) -> TcpRepr<'_> {
        match wire::parse(frame, &Endpoints::new([target])) {
            Parsed::Ours(repr) => repr,
            other => panic!("not a valid segment: {other:?}"),
        }
    }

    #[test]
    fn test_linux_layout_is_what_synwall_emits() {
        for ipv6 in [false, true] {
            let target = target(ipv6);
            let mss = ethernet_mss(target.ip());
            let repr = TcpRepr {
                link: LinkAddrs::default(),
                src: SocketAddr::new(sources(target).address(1), 1000),
                dst: target,
                hop_limit: 64,
                seq: SeqNumber(0),
                ack: SeqNumber(0),
                flags: TcpFlags::SYN,
                window: fingerprint::LINUX.window_for(mss),
                options: TcpOptions {
                    mss: Some(mss),
                    window_scale: Some(7),
                    sack_permitted: true,
                    timestamps: Some(Timestamps { value: 0, echo: 0 }),
                },
                payload: &[],
            };
            let mut frame = vec![0; wire::emitted_len(&repr)];
            wire::emit(&repr, &mut frame).unwrap();
            let tcp = if ipv6 { IPV6_TCP } else { IPV4_TCP };
            assert_eq!(frame[tcp + TCP_OPTIONS..], fingerprint::LINUX.options(mss));
        }
    }

    #[test]
    fn test_template_is_the_emitted_frame_with_options_in_the_header() {
        for (ipv6, src, ip_len, mss) in [
            (false, "198.18.200.7", 20, 1460),
            (true, "2001:2:0:8123:4567:89ab:cdef:7", 40, 1440),
        ] {
            let target = target(ipv6);
            let template = syn(&fingerprint::MACOS, target);
            let patch = Patch {
                src: src.parse().unwrap(),
                src_port: 40000,
                seq: SeqNumber(0xfffffff0),
                ack: SeqNumber(0),
                timestamps: Timestamps {
                    value: 123,
                    echo: 0,
                },
            };
            let frame = write(&template, &patch);
            assert_eq!(frame.len(), 14 + ip_len + 20 + 24);
            let repr = parse(&frame, target);
            assert_eq!(repr.src, SocketAddr::new(patch.src, 40000));
            assert_eq!(repr.dst, target);
            assert_eq!(repr.seq, SeqNumber(0xfffffff0));
            assert_eq!(repr.flags, TcpFlags::SYN);
            assert_eq!(repr.window, 65535);
            assert_eq!(repr.hop_limit, 64);
            assert!(repr.payload.is_empty());
            assert_eq!(
                repr.options,
                TcpOptions {
                    mss: Some(mss),
                    window_scale: Some(6),
                    sack_permitted: true,
                    timestamps: Some(Timestamps {
                        value: 123,
                        echo: 0
                    }),
                }
            );
        }
    }

    #[test]
    fn test_ipv6_syns_carry_the_ipv6_mss_and_window() {
        let target = target(true);
        for (stack, window) in [(fingerprint::LINUX, 64800), (fingerprint::WINDOWS, 64800)] {
            let patch = Patch {
                src: sources(target).address(5),
                src_port: 1024,
                seq: SeqNumber(1),
                ack: SeqNumber(0),
                timestamps: Timestamps::default(),
            };
            let frame = write(&syn(&stack, target), &patch);
            let repr = parse(&frame, target);
            assert_eq!((repr.options.mss, repr.window), (Some(1440), window));
            assert_eq!(repr.hop_limit, stack.ttl);
        }
    }

    #[test]
    fn test_write_refuses_a_short_buffer() {
        for ipv6 in [false, true] {
            let target = target(ipv6);
            let template = syn(&fingerprint::WINDOWS, target);
            let patch = Patch {
                src: sources(target).address(1),
                src_port: 1,
                seq: SeqNumber(1),
                ack: SeqNumber(0),
                timestamps: Timestamps::default(),
            };
            let len = write(&template, &patch).len();
            let mut out = vec![0; len - 1];
            assert_eq!(template.write(&patch, &mut out), None);
        }
    }

    #[test]
    #[should_panic(expected = "template's address family")]
    fn test_write_panics_on_a_source_of_the_other_family() {
        let template = syn(&fingerprint::LINUX, target(true));
        let patch = Patch {
            src: "198.18.128.1".parse().unwrap(),
            src_port: 1,
            seq: SeqNumber(1),
            ack: SeqNumber(0),
            timestamps: Timestamps::default(),
        };
        write(&template, &patch);
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
            ipv6 in any::<bool>(),
            which in 0usize..4,
            host in any::<u128>(),
            src_port in 1u16..,
            seq in any::<u32>(),
            ack in any::<u32>(),
            value in any::<u32>(),
            echo in any::<u32>(),
        ) {
            let target = target(ipv6);
            let template = match which {
                3 => ack_with_timestamps(target),
                stack => syn(&fingerprint::ALL[stack], target),
            };
            let src = sources(target).address(host);
            let patch = Patch {
                src,
                src_port,
                seq: SeqNumber(seq),
                ack: SeqNumber(ack),
                timestamps: Timestamps { value, echo },
            };
            let frame = write(&template, &patch);
            let repr = parse(&frame, target);
            prop_assert_eq!(repr.src, SocketAddr::new(src, src_port));
            prop_assert_eq!(repr.seq, SeqNumber(seq));
            prop_assert_eq!(repr.ack, SeqNumber(ack));
            let expected_timestamps = template.has_timestamps().then_some(Timestamps { value, echo });
            prop_assert_eq!(repr.options.timestamps, expected_timestamps);
        }

        #[test]
        fn prop_any_bit_flip_after_patching_fails_verification(
            ipv6 in any::<bool>(),
            host in any::<u128>(),
            src_port in 1u16..,
            seq in any::<u32>(),
            bit in any::<prop::sample::Index>(),
        ) {
            let target = target(ipv6);
            let template = syn(&fingerprint::LINUX, target);
            let patch = Patch {
                src: sources(target).address(host),
                src_port,
                seq: SeqNumber(seq),
                ack: SeqNumber(0),
                timestamps: Timestamps::default(),
            };
            let mut frame = write(&template, &patch);
            // Any bit of the IP and TCP headers and the options; IPv6's first 8 bytes (version,
            // traffic class, flow label, payload length, next header, hop limit) are not
            // covered by any checksum, but the bits from its source address on are.
            let covered = if ipv6 { (IPV6_SRC * 8)..(frame.len() * 8) } else { (ETHERNET * 8)..(frame.len() * 8) };
            let bit = covered.start + bit.index(covered.len());
            frame[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(!matches!(wire::parse(&frame, &Endpoints::new([target])), Parsed::Ours(_)));
        }
    }
}
