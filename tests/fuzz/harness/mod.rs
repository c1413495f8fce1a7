//! The fuzz harness of synwall's protocol core (`synwall_proto`): one function per fuzz target,
//! each taking the fuzzer's bytes and panicking when an invariant breaks.
//!
//! This one file is the library of the cargo-fuzz crate (`tests/fuzz`, whose targets only call
//! it) and a module of the replay test `tests/fuzz_corpus.rs`, which runs every file of
//! `corpus/<target>/` and `regressions/<target>/` through it: a crash found by fuzzing, copied
//! into `regressions/<target>/`, fails `cargo test` until it is fixed. It uses nothing but `std`
//! and `synwall_proto`.
//!
//! # `wire_parse`
//!
//! The input is an Ethernet frame. [`wire_parse`] parses it as it is and again with its IPv4
//! header and TCP checksums repaired (without that, nearly every mutation would stop at the
//! checksum check before the TCP header and options are read). Asserted for each:
//! - [`wire::ip_packet_range`] lies inside the frame, after an Ethernet header and at most one
//!   VLAN tag; a frame shorter than an Ethernet header is `Malformed(Ethernet)`;
//! - a segment [`wire::parse`] takes as ours is to a served endpoint, from a non-zero port of the
//!   same address family; its window scale is at most 14; its payload lies in the frame and ends
//!   exactly where the IP packet of `ip_packet_range` ends (the listener holds and re-injects
//!   that range as the segment's packet);
//! - emitting the parsed segment and parsing the result gives the same segment back.
//!
//! # `listener_frames`
//!
//! The input is a script for one [`Listener`] serving `198.18.0.1:80` and `[2001:2::1]:80`
//! with an 8-entry SYN queue, 2 SYN-ACK retransmissions, 4 pending handoffs, 1500 held bytes and
//! a 2 s handoff timeout. Its first byte sets the rest of the configuration: bits 0-1 the
//! syncookies mode (0 never, 2 always, else when full), bit 2 `abort_on_overflow`, bits 3, 4
//! and 5 turn timestamps off, SACK off and ECN on, bit 6 the invalid-ACK RSTs off (else 4 per
//! second), bit 7 a zero receive window. Then up to 256 steps (`MAX_STEPS`), each an opcode byte
//! (modulo 10) and its operands (integers big-endian; the script ends where the bytes do):
//!
//! | op | step | operands |
//! | --- | --- | --- |
//! | 0 | advance the clock by 10 ms × n, run the due timers | n: u8 |
//! | 1 | advance the clock by n s, run the due timers | n: u8 |
//! | 2 | a SYN | client, isn: u32, window: u16, shape |
//! | 3 | the ACK of a SYN-ACK sent, corrupted or not | see `Session::answer` |
//! | 4 | a segment with any flags | client, flags: u8, seq: u32, ack: u32, window: u16, shape |
//! | 5 | a raw frame | len: u8, then len bytes |
//! | 6 | a raw frame, checksums repaired | len: u8, then len bytes |
//! | 7 | a report on an accepted connection | which: u8, kind: u8 |
//! | 8 | a segment of an accepted connection | which: u8, flags: u8, offset: u8, len: u8 |
//! | 9 | a settings reload ([`Listener::apply`]) | bits: u8 |
//!
//! A client byte picks the source among 4 IPv4 and 4 IPv6 hosts (bits 0-1 and 4) and 4 ports
//! (bits 2-3); bit 5 sends to the unserved port 81. A shape byte and what follows it give the
//! TCP options, a VLAN tag, a payload and, on a SYN, ECE and CWR (see `Session::shape`). `which`
//! counts back from the latest accepted connection. A report's `kind`, modulo 4: accept-queue
//! overflow, handoff complete, handoff complete with an ACK of the early data, handoff failed.
//! A reload's `bits`: 0-1 the syncookies mode as above, 2 `abort_on_overflow`, 3 the invalid-ACK
//! RSTs off, 7 a new secret. Frames built from fields carry valid checksums, so they reach the
//! handshake logic. The clock advances as a driver's would: keys rotated with the wall-clock
//! time, then `handle_timeout` and `poll_transmit` until no timer is due. Each script runs twice:
//! its frames handed to the listener one at a time ([`Listener::handle_frame`]), then in batches
//! ([`Listener::handle_batch`], as the shard does): the frames of consecutive steps in one batch
//! of up to `MAX_BATCH`, handed over before a step that moves the clock, reports or reloads, and
//! at the end. Asserted in both runs, after every step:
//! - the SYN queue holds at most 8 entries, its memory never changes, and a non-empty queue has
//!   a timer; the held bytes and pending handoffs stay within their bounds;
//! - every `Accepted` acknowledges a SYN-ACK the listener sent for its 4-tuple (tracked by parsing
//!   every frame it transmits), is never produced for a connection still being handed off, and
//!   its window scales and handshake duration (known only from the SYN queue) are consistent;
//! - every frame the listener writes parses back (valid checksums) as a SYN-ACK, RST or ACK
//!   from a served endpoint; the timers are no longer due after two driver rounds;
//! - the counters agree with what was seen: SYN-ACKs, RSTs and ACKs transmitted, SYNs received,
//!   handshakes accepted and overflowed, segments re-injected, frames passed; the SYN-queue gauge
//!   equals its length; no reply was lost for want of a transmit buffer.

mod listener_frames;
mod session;
mod wire_parse;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

pub use listener_frames::listener_frames;
pub use wire_parse::wire_parse;

pub(crate) const SERVER_V4: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80));
pub(crate) const SERVER_V6: SocketAddr = SocketAddr::V6(SocketAddrV6::new(
    Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 1),
    80,
    0,
    0,
));
pub(crate) const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub(crate) const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub(crate) const ETHERNET_LEN: usize = 14;
pub(crate) const VLAN_TAG_LEN: usize = 4;
pub(crate) const ETHER_TYPE_VLAN: u16 = 0x8100;
pub(crate) const ETHER_TYPE_IPV4: u16 = 0x0800;
pub(crate) const ETHER_TYPE_IPV6: u16 = 0x86dd;
pub(crate) const PROTOCOL_TCP: u8 = 6;
