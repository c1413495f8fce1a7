//! Per-worker packet crafting: which kind goes next, with which spoofed fields, written from a
//! [`Template`] straight into the device's transmit buffer.
//!
//! Every packet is of the target's family, IPv4 or IPv6: the templates are built for it, and
//! spoofed sources are drawn from a range of the same family (random host bits).
//!
//! - SYN: a random source in the spoofed range, a random port in 1024–65535, a random ISN and
//!   TSval; the client stack (Linux, Windows, macOS) rotates per packet.
//! - ACK, FIN+ACK: random source, port, sequence and acknowledgment numbers; RST: the same
//!   with acknowledgment number 0, as a RST without ACK carries.
//! - Near-miss ACK: answers a harvested SYN-ACK ([`SynAck`]) with `ack = cookie + 1` made wrong
//!   in one of three ways, rotated: one bit flipped on the right tuple; the valid value replayed
//!   from another port of the same address; replayed from another address on the same port.
//!   The TSecr echoes the target's TSval, so only the acknowledgment number is wrong. Without a
//!   harvested SYN-ACK waiting, a near-miss slot sends a SYN instead (the probe whose answer
//!   becomes a later near-miss), counted as a SYN.
//!
//! Nothing here allocates after construction; randomness comes from one small, fast PRNG per
//! worker (not cryptographic: it only has to look random to the target).

use std::net::{IpAddr, SocketAddr};

use crossbeam_channel::Receiver;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore};
use synwall::seq::SeqNumber;
use synwall::wire::{TcpFlags, Timestamps};

use crate::fingerprint::{self, SynFingerprint, ethernet_mss};
use crate::guard::Cidr;
use crate::harvest::SynAck;
use crate::mix::{Kind, KindPicker, Mix};
use crate::template::{Patch, Segment, Template};

/// Source ports are drawn from here: the ports real clients use.
const FIRST_PORT: u16 = 1024;
const PORT_COUNT: u32 = 65536 - FIRST_PORT as u32;
/// The window of a Linux segment after the handshake (scale 7).
const ESTABLISHED_WINDOW: u16 = 502;

/// The link and target every template of a run shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// IPv4 or IPv6: the family of every template.
    pub target: SocketAddr,
}

/// One template per packet shape a run sends.
#[derive(Debug, Clone)]
pub struct Templates {
    syn: [Template; fingerprint::ALL.len()],
    ack: Template,
    ack_with_timestamps: Template,
    rst: Template,
    fin: Template,
}

impl Templates {
    /// The templates of `path`'s family; SYNs announce the MSS of a client on Ethernet.
    pub fn new(path: &Path) -> Templates {
        let segment = |flags: TcpFlags, ttl, window, options: &[u8], timestamps_value_at| {
            Template::new(&Segment {
                src_mac: path.src_mac,
                dst_mac: path.dst_mac,
                dst: path.target,
                ttl,
                flags,
                window,
                options,
                timestamps_value_at,
            })
        };
        let mss = ethernet_mss(path.target.ip());
        let syn = |stack: SynFingerprint| {
            segment(
                TcpFlags::SYN,
                stack.ttl,
                stack.window_for(mss),
                &stack.options(mss),
                stack.timestamps_value_at,
            )
        };
        Templates {
            syn: fingerprint::ALL.map(syn),
            ack: segment(TcpFlags::ACK, 64, ESTABLISHED_WINDOW, &[], None),
            ack_with_timestamps: segment(
                TcpFlags::ACK,
                64,
                ESTABLISHED_WINDOW,
                &fingerprint::NOP_NOP_TIMESTAMPS,
                Some(fingerprint::NOP_NOP_TIMESTAMPS_VALUE_AT),
            ),
            rst: segment(TcpFlags::RST, 64, 0, &[], None),
            fin: segment(
                TcpFlags::FIN | TcpFlags::ACK,
                64,
                ESTABLISHED_WINDOW,
                &[],
                None,
            ),
        }
    }
}

/// How the next near-miss ACK is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NearMiss {
    FlippedBit,
    OtherPort,
    OtherAddress,
}

impl NearMiss {
    fn next(self) -> NearMiss {
        match self {
            NearMiss::FlippedBit => NearMiss::OtherPort,
            NearMiss::OtherPort => NearMiss::OtherAddress,
            NearMiss::OtherAddress => NearMiss::FlippedBit,
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Crafter {
    templates: Templates,
    picker: KindPicker,
    sources: Cidr,
    rng: SmallRng,
    harvested: Option<Receiver<SynAck>>,
    next_stack: usize,
    next_near_miss: NearMiss,
}

impl Crafter {
    /// A crafter drawing kinds from `mix` and sources from `sources` (of the templates'
    /// family); near-miss ACKs answer SYN-ACKs from `harvested`.
    pub fn new(
        templates: Templates,
        mix: &Mix,
        sources: Cidr,
        rng: SmallRng,
        harvested: Option<Receiver<SynAck>>,
    ) -> Crafter {
        Crafter {
            templates,
            picker: mix.picker(),
            sources,
            rng,
            harvested,
            next_stack: 0,
            next_near_miss: NearMiss::FlippedBit,
        }
    }

    /// Writes the next packet at the start of `out`; returns its kind and length, or None when
    /// `out` is too short.
    #[inline]
    pub fn write_next(&mut self, out: &mut [u8]) -> Option<(Kind, usize)> {
        let kind = self.picker.pick(self.rng.next_u32());
        let (kind, len) = match kind {
            Kind::Syn => (Kind::Syn, self.syn(out)?),
            Kind::NearMiss => match self.harvested.as_ref().and_then(|q| q.try_recv().ok()) {
                Some(syn_ack) => (Kind::NearMiss, self.near_miss(&syn_ack, out)?),
                None => (Kind::Syn, self.syn(out)?),
            },
            Kind::Ack => (kind, self.random_segment(|t| &t.ack, out)?),
            Kind::Rst => {
                // A RST without ACK carries acknowledgment number 0 (RFC 9293 §3.10.7.1).
                let patch = self.random_patch(SeqNumber(0));
                (kind, self.templates.rst.write(&patch, out)?)
            }
            Kind::Fin => (kind, self.random_segment(|t| &t.fin, out)?),
        };
        Some((kind, len))
    }

    /// A segment of `template` with random tuple and numbers.
    fn random_segment(
        &mut self,
        template: impl FnOnce(&Templates) -> &Template,
        out: &mut [u8],
    ) -> Option<usize> {
        let ack = SeqNumber(self.rng.next_u32());
        let patch = self.random_patch(ack);
        template(&self.templates).write(&patch, out)
    }

    fn syn(&mut self, out: &mut [u8]) -> Option<usize> {
        let patch = Patch {
            timestamps: Timestamps {
                value: self.rng.next_u32(),
                echo: 0,
            },
            ..self.random_patch(SeqNumber(0))
        };
        let template = &self.templates.syn[self.next_stack];
        self.next_stack = (self.next_stack + 1) % self.templates.syn.len();
        template.write(&patch, out)
    }

    fn near_miss(&mut self, syn_ack: &SynAck, out: &mut [u8]) -> Option<usize> {
        let valid_ack = syn_ack.cookie + 1;
        let mut patch = Patch {
            src: syn_ack.client.ip(),
            src_port: syn_ack.client.port(),
            seq: syn_ack.client_next,
            ack: valid_ack,
            timestamps: Timestamps {
                value: self.rng.next_u32(),
                echo: syn_ack.server_timestamp.unwrap_or(0),
            },
        };
        let mut variant = self.next_near_miss;
        self.next_near_miss = variant.next();
        if variant == NearMiss::OtherAddress && self.sources.host_mask() == 0 {
            // A one-address range has no other address to replay from.
            variant = NearMiss::OtherPort;
        }
        match variant {
            NearMiss::FlippedBit => {
                patch.ack = SeqNumber(valid_ack.0 ^ (1 << self.rng.random_range(0..32)));
            }
            NearMiss::OtherPort => {
                let offset = u32::from(patch.src_port.saturating_sub(FIRST_PORT)) % PORT_COUNT;
                let shift = 1 + self.rng.random_range(0..PORT_COUNT - 1);
                patch.src_port = FIRST_PORT + ((offset + shift) % PORT_COUNT) as u16;
            }
            NearMiss::OtherAddress => {
                // The host bits are the low bits: adding a shift below 2^bits wraps around
                // inside the range, and never lands on the same host.
                let shift = self.rng.random_range(1..=self.sources.host_mask());
                let host = self.sources.host(patch.src);
                patch.src = self.sources.address(host.wrapping_add(shift));
            }
        }
        let template = if syn_ack.server_timestamp.is_some() {
            &self.templates.ack_with_timestamps
        } else {
            &self.templates.ack
        };
        template.write(&patch, out)
    }

    /// A random source, port and sequence number, with acknowledgment number `ack`.
    fn random_patch(&mut self, ack: SeqNumber) -> Patch {
        Patch {
            src: self.random_source(),
            src_port: FIRST_PORT + self.rng.random_range(0..PORT_COUNT) as u16,
            seq: SeqNumber(self.rng.next_u32()),
            ack,
            timestamps: Timestamps::default(),
        }
    }

    fn random_source(&mut self) -> IpAddr {
        self.sources.address(self.rng.random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use synwall::wire::{self, Endpoints, Parsed, TcpRepr};

    /// The target of each family, with the lab's spoofed sources of that family.
    const LAB: [(&str, &str); 2] = [
        ("198.18.0.1:80", crate::lab::SPOOFED_SOURCES),
        ("[2001:2::1]:80", crate::lab::SPOOFED_SOURCES_V6),
    ];

    fn crafter(
        target: SocketAddr,
        mix: &str,
        sources: &str,
        harvested: Option<Receiver<SynAck>>,
    ) -> Crafter {
        let path = Path {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            target,
        };
        Crafter::new(
            Templates::new(&path),
            &mix.parse().unwrap(),
            sources.parse().unwrap(),
            SmallRng::seed_from_u64(7),
            harvested,
        )
    }

    /// The frame parsed and verified (every checksum) by synwall's parser.
    #[track_caller]
    fn parse(frame: &[u8], target: SocketAddr) -> TcpRepr<'_> {
        match wire::parse(frame, &Endpoints::new([target])) {
            Parsed::Ours(repr) => repr,
            other => panic!("not a valid segment: {other:?}"),
        }
    }

    fn next(crafter: &mut Crafter, buf: &mut [u8]) -> (Kind, usize) {
        crafter.write_next(buf).unwrap()
    }

    #[test]
    fn test_every_kind_parses_from_the_spoofed_range() {
        for (target, sources) in LAB {
            let target: SocketAddr = target.parse().unwrap();
            let mut crafter = crafter(target, "syn=1,ack=1,rst=1,fin=1", sources, None);
            let sources: Cidr = sources.parse().unwrap();
            let mut buf = [0u8; 2048];
            let mut seen = [0; 5];
            for _ in 0..2000 {
                let (kind, len) = next(&mut crafter, &mut buf);
                seen[kind.index()] += 1;
                let repr = parse(&buf[..len], target);
                assert!(sources.contains(repr.src.ip()), "{}", repr.src);
                assert!(repr.src.port() >= FIRST_PORT);
                let expected = match kind {
                    Kind::Syn => TcpFlags::SYN,
                    Kind::Ack => TcpFlags::ACK,
                    Kind::Rst => {
                        assert_eq!(repr.ack, SeqNumber(0));
                        TcpFlags::RST
                    }
                    Kind::Fin => TcpFlags::FIN | TcpFlags::ACK,
                    Kind::NearMiss => unreachable!("not in the mix"),
                };
                assert_eq!(repr.flags, expected);
            }
            assert!(
                seen.iter().enumerate().all(|(i, n)| i == 2 || *n > 400),
                "{seen:?}"
            );
        }
    }

    #[test]
    fn test_ipv6_sources_spread_over_the_whole_prefix() {
        let (target, sources) = LAB[1];
        let target: SocketAddr = target.parse().unwrap();
        let mut crafter = crafter(target, "syn=1", sources, None);
        let sources: Cidr = sources.parse().unwrap();
        let mut buf = [0u8; 2048];
        // Each of the 79 host bits is set in some source and clear in another.
        let (mut ones, mut zeros) = (0u128, 0u128);
        for _ in 0..200 {
            let (_, len) = next(&mut crafter, &mut buf);
            let host = sources.host(parse(&buf[..len], target).src.ip());
            ones |= host;
            zeros |= !host & sources.host_mask();
        }
        assert_eq!((ones, zeros), (sources.host_mask(), sources.host_mask()));
    }

    #[test]
    fn test_syns_rotate_through_the_stacks() {
        for ((target, sources), window) in LAB.into_iter().zip([64240, 64800]) {
            let target: SocketAddr = target.parse().unwrap();
            let mut crafter = crafter(target, "syn=1", sources, None);
            let mut buf = [0u8; 2048];
            let windows: Vec<u16> = (0..6)
                .map(|_| {
                    let (_, len) = next(&mut crafter, &mut buf);
                    parse(&buf[..len], target).window
                })
                .collect();
            assert_eq!(windows, [window, window, 65535, window, window, 65535]);
        }
    }

    #[test]
    fn test_near_miss_without_syn_ack_sends_a_probe_syn() {
        for (target, sources) in LAB {
            let target: SocketAddr = target.parse().unwrap();
            let (_sender, receiver) = crossbeam_channel::bounded(1);
            let mut crafter = crafter(target, "near-miss=1", sources, Some(receiver));
            let mut buf = [0u8; 2048];
            let (kind, len) = next(&mut crafter, &mut buf);
            assert_eq!(kind, Kind::Syn);
            assert_eq!(parse(&buf[..len], target).flags, TcpFlags::SYN);
        }
    }

    #[test]
    fn test_near_miss_variants_are_each_one_step_from_valid() {
        let clients = ["198.18.140.3:50000", "[2001:2:0:8140::3]:50000"];
        for ((target, sources), client) in LAB.into_iter().zip(clients) {
            let target: SocketAddr = target.parse().unwrap();
            let client: SocketAddr = client.parse().unwrap();
            let (sender, receiver) = crossbeam_channel::bounded(8);
            let mut crafter = crafter(target, "near-miss=1", sources, Some(receiver));
            let syn_ack = SynAck {
                client,
                cookie: SeqNumber(u32::MAX),
                client_next: SeqNumber(1001),
                server_timestamp: Some(4242),
            };
            let mut buf = [0u8; 2048];
            let mut variants = Vec::new();
            for _ in 0..3 {
                sender.send(syn_ack).unwrap();
                let (kind, len) = next(&mut crafter, &mut buf);
                assert_eq!(kind, Kind::NearMiss);
                let repr = parse(&buf[..len], target);
                assert_eq!(repr.flags, TcpFlags::ACK);
                assert_eq!(repr.seq, SeqNumber(1001));
                assert_eq!(repr.options.timestamps.unwrap().echo, 4242);
                let valid = SeqNumber(0); // cookie + 1 wraps
                variants.push((
                    repr.src.ip() == client.ip(),
                    repr.src.port() == client.port(),
                    (repr.ack.0 ^ valid.0).count_ones(),
                ));
            }
            assert_eq!(
                variants,
                [(true, true, 1), (true, false, 0), (false, true, 0)],
                "{target}"
            );
        }
    }

    #[test]
    fn test_near_miss_in_a_single_address_range_replays_from_another_port() {
        for (target, client, sources) in [
            ("198.18.0.1:80", "198.18.140.3:1024", "198.18.140.3/32"),
            (
                "[2001:2::1]:80",
                "[2001:2:0:8140::3]:1024",
                "2001:2:0:8140::3/128",
            ),
        ] {
            let target: SocketAddr = target.parse().unwrap();
            let client: SocketAddr = client.parse().unwrap();
            let (sender, receiver) = crossbeam_channel::bounded(8);
            let mut crafter = crafter(target, "near-miss=1", sources, Some(receiver));
            let mut buf = [0u8; 2048];
            for _ in 0..3 {
                sender
                    .send(SynAck {
                        client,
                        cookie: SeqNumber(7),
                        client_next: SeqNumber(1),
                        server_timestamp: None,
                    })
                    .unwrap();
                let (_, len) = next(&mut crafter, &mut buf);
                let repr = parse(&buf[..len], target);
                assert!(repr.options.timestamps.is_none());
                assert_eq!(repr.src.ip(), client.ip());
                assert!(repr.src.port() != client.port() || repr.ack != SeqNumber(8));
            }
        }
    }
}
