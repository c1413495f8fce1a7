//! Property tests: cookie round trips and bit flips, parse(emit(x)) == x, arbitrary input
//! never panicking the parser or the listener, and final ACKs changed where it matters (with
//! valid checksums, so they reach the handshake checks) never accepted.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{START_UNIX, config, keys};
use proptest::prelude::*;
use synwall::cookie::{CookieInput, CookieJar, MssTable, SynOptions};
use synwall::listener::{Listener, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::wire::{
    self, Endpoints, LinkAddrs, Parsed, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};

fn jar() -> CookieJar {
    CookieJar::new(keys(START_UNIX), MssTable::IPV4, MssTable::IPV6)
}

fn socket_pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        1..=u16::MAX,
        1..=u16::MAX,
    )
        .prop_map(|(a, b, pa, pb)| {
            (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), pa),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), pb),
            )
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        1..=u16::MAX,
        1..=u16::MAX,
    )
        .prop_map(|(a, b, pa, pb)| {
            (
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), pa),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), pb),
            )
        });
    prop_oneof![v4, v6]
}

fn syn_options() -> impl Strategy<Value = Option<SynOptions>> {
    proptest::option::of(
        (proptest::option::of(0u8..=14), any::<bool>(), any::<bool>()).prop_map(
            |(window_scale, sack_permitted, ecn)| SynOptions {
                window_scale,
                sack_permitted,
                ecn,
            },
        ),
    )
}

fn cookie_input() -> impl Strategy<Value = CookieInput> {
    (socket_pair(), any::<u32>(), syn_options()).prop_map(|((local, remote), isn, options)| {
        CookieInput {
            local,
            remote,
            client_isn: SeqNumber(isn),
            options,
        }
    })
}

/// `addr` with bit `bit` (modulo its width) flipped.
fn flip_ip(addr: SocketAddr, bit: usize) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from(ip.to_bits() ^ (1 << (bit % 32)))),
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from(ip.to_bits() ^ (1 << (bit % 128)))),
    };
    SocketAddr::new(ip, addr.port())
}

fn flip_port(addr: SocketAddr, bit: usize) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port() ^ (1 << (bit % 16)))
}

proptest! {
    #[test]
    fn prop_cookie_round_trip(input in cookie_input(), mss in any::<u16>()) {
        let mut jar = jar();
        let cookie = jar.encode(&input, mss);
        prop_assert_eq!(jar.check(&input, cookie), Some(jar.encoded_mss(input.local, mss)));
    }

    #[test]
    fn prop_cookie_rejects_any_single_bit_flip(input in cookie_input(), mss in any::<u16>(), bit in 0usize..128) {
        let mut jar = jar();
        let cookie = jar.encode(&input, mss);
        let mut variants = vec![
            (CookieInput { local: flip_ip(input.local, bit), ..input }, cookie),
            (CookieInput { remote: flip_ip(input.remote, bit), ..input }, cookie),
            (CookieInput { local: flip_port(input.local, bit), ..input }, cookie),
            (CookieInput { remote: flip_port(input.remote, bit), ..input }, cookie),
            (CookieInput { client_isn: SeqNumber(input.client_isn.0 ^ (1 << (bit % 32))), ..input }, cookie),
            (input, cookie ^ (1 << (bit % 32))),
        ];
        // Every option bit, and the presence of timestamps itself.
        let flipped_options = match input.options {
            Some(options) => {
                let bits = options.to_bits() ^ (1 << (bit % 6));
                vec![Some(SynOptions::from_timestamp(bits)), None]
            }
            None => vec![Some(SynOptions::default())],
        };
        for options in flipped_options {
            variants.push((CookieInput { options, ..input }, cookie));
        }
        for (changed, cookie) in variants {
            prop_assert_eq!(jar.check(&changed, cookie), None, "{:?}", changed);
        }
    }

    #[test]
    fn prop_parse_inverts_emit(repr in tcp_repr(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
        let repr = TcpRepr { payload: &payload, ..repr };
        let mut buf = vec![0xa5; wire::emitted_len(&repr)];
        wire::emit(&repr, &mut buf).unwrap();
        prop_assert_eq!(wire::parse(&buf, &Endpoints::new([repr.dst])), Parsed::Ours(repr));
    }

    #[test]
    fn prop_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = wire::parse(&bytes, &Endpoints::new(["0.0.0.0:80".parse().unwrap()]));
    }

    #[test]
    fn prop_listener_survives_mutated_frames(
        repr in tcp_repr(),
        mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        mode in prop_oneof![Just(SyncookiesMode::Never), Just(SyncookiesMode::WhenFull), Just(SyncookiesMode::Always)],
    ) {
        let mut frame = vec![0; wire::emitted_len(&repr)];
        wire::emit(&repr, &mut frame).unwrap();
        for (at, value) in mutations {
            let at = at % frame.len();
            frame[at] = value;
        }
        let served = Endpoints::new([repr.dst]);
        let now = Instant::now();
        let mut listener = Listener::new(
            synwall::listener::ListenerConfig { served, ..config(mode) },
            keys(START_UNIX),
            now,
        ).unwrap();
        let mut tx = vec![0; 2048];
        let _ = listener.handle_frame(now, &frame, &mut tx);
        let _ = listener.handle_frame(now, &frame[..frame.len() / 2], &mut tx);
        listener.handle_timeout(now + Duration::from_secs(100));
        while listener.poll_transmit(&mut tx).is_some() {}
    }

    /// A final ACK changed where it must not be (its acknowledgment number, the client's
    /// address or port, or, for a cookie, its sequence number), emitted with valid checksums so
    /// that it reaches the handshake checks: never `Accepted`, the SYN queue stays within its
    /// bound, and the client's own ACK still completes the handshake afterwards.
    #[test]
    fn prop_mutated_final_ack_is_never_accepted(
        client in handshake_client(),
        mutation in ack_mutation(),
        mode in prop_oneof![Just(SyncookiesMode::Never), Just(SyncookiesMode::Always)],
    ) {
        const BACKLOG: usize = 2;
        let mut harness = common::Harness::new(synwall::listener::ListenerConfig {
            max_syn_backlog: BACKLOG,
            ..config(mode)
        });
        let syn_ack = harness.syn_ack_repr(&client);
        let genuine = client.ack(&syn_ack, &[]);
        let forged = match mutation {
            AckMutation::Ack(bits) => TcpRepr { ack: genuine.ack + bits, ..genuine },
            AckMutation::SourcePort(bits) => TcpRepr { src: flip_port_bits(genuine.src, bits), ..genuine },
            AckMutation::SourceAddress(bit) => TcpRepr { src: flip_ip(genuine.src, bit), ..genuine },
            AckMutation::Sequence(bits) => {
                // A queued handshake takes any sequence number in its window, as the kernel's
                // does: only a cookie covers it.
                prop_assume!(mode == SyncookiesMode::Always);
                TcpRepr { seq: genuine.seq + bits, ..genuine }
            }
        };
        let (verdict, _) = harness.send(&forged);
        prop_assert!(!matches!(verdict, Verdict::Accepted(_)), "{:?} accepted: {:?}", mutation, verdict);
        prop_assert!(harness.listener.syn_queue_len() <= BACKLOG);
        let (verdict, _) = harness.send(&genuine);
        prop_assert!(matches!(verdict, Verdict::Accepted(_)), "the genuine ACK after {:?}: {:?}", mutation, verdict);
        prop_assert!(harness.listener.syn_queue_len() <= BACKLOG);
    }
}

/// How [`prop_mutated_final_ack_is_never_accepted`] changes a final ACK; each amount is
/// non-zero.
#[derive(Debug, Clone, Copy)]
enum AckMutation {
    /// Added to the acknowledgment number.
    Ack(u32),
    /// XORed into the source port.
    SourcePort(u16),
    /// This bit of the source address flipped.
    SourceAddress(usize),
    /// Added to the sequence number.
    Sequence(u32),
}

fn ack_mutation() -> impl Strategy<Value = AckMutation> {
    prop_oneof![
        (1..=u32::MAX).prop_map(AckMutation::Ack),
        (1..=u16::MAX).prop_map(AckMutation::SourcePort),
        (0usize..128).prop_map(AckMutation::SourceAddress),
        (1..=u32::MAX).prop_map(AckMutation::Sequence),
    ]
}

/// A client of the served address over IPv4 or IPv6 with the option layout of a real stack.
fn handshake_client() -> impl Strategy<Value = common::Client> {
    (
        any::<bool>(),
        any::<u16>(),
        any::<u32>(),
        0usize..3,
        any::<u32>(),
    )
        .prop_map(|(v6, port, isn, stack, tsval)| {
            let port = port.max(1);
            let addr = if v6 {
                format!("[2001:2::2]:{port}")
            } else {
                format!("198.18.0.2:{port}")
            };
            let options = match stack {
                0 => common::linux_options(tsval),
                1 => common::windows_options(),
                _ => common::macos_options(tsval),
            };
            common::Client::new(&addr, isn, options)
        })
}

/// `addr` with `bits` XORed into its port; a port that would become 0 gets its top bit
/// flipped instead.
fn flip_port_bits(addr: SocketAddr, bits: u16) -> SocketAddr {
    let port = match addr.port() ^ bits {
        0 => addr.port() ^ 0x8000,
        port => port,
    };
    SocketAddr::new(addr.ip(), port)
}

/// What a driver may tell a listener about an accepted connection.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Overflow,
    Complete,
    Failed,
    /// Time passes by this many seconds.
    Wait(u8),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::Overflow),
        Just(Outcome::Complete),
        Just(Outcome::Failed),
        (1u8..=20).prop_map(Outcome::Wait),
    ]
}

proptest! {
    /// Any sequence of handoff outcomes, each possibly repeated, for a few accepted
    /// connections, leaves the listener consistent: bounded queues, and every timer and
    /// retransmission runs out.
    #[test]
    fn prop_handoff_outcomes_are_safe_to_repeat(
        outcomes in proptest::collection::vec((0usize..3, outcome()), 1..40),
        abort in any::<bool>(),
        mode in prop_oneof![Just(SyncookiesMode::Never), Just(SyncookiesMode::WhenFull)],
    ) {
        let mut harness = common::Harness::new(synwall::listener::ListenerConfig {
            abort_on_overflow: abort,
            max_syn_backlog: 2,
            ..config(mode)
        });
        let accepted: Vec<_> = (0..3u16)
            .map(|i| {
                let client = common::Client::new(
                    &format!("198.18.5.{}:{}", i + 1, 40000 + i),
                    1000 * u32::from(i),
                    common::linux_options(1),
                );
                let syn_ack = harness.syn_ack_repr(&client);
                match harness.send(&client.ack(&syn_ack, b"early")).0 {
                    synwall::listener::Verdict::Accepted(accepted) => accepted,
                    other => panic!("not accepted: {other:?}"),
                }
            })
            .collect();
        let mut tx = vec![0; 2048];
        for (which, outcome) in outcomes {
            let now = harness.now;
            let connection = &accepted[which];
            match outcome {
                Outcome::Overflow => {
                    harness.listener.handle_accept_overflow(now, connection.clone(), &mut tx);
                }
                Outcome::Complete => {
                    harness.handoff_complete(connection);
                }
                Outcome::Failed => {
                    harness.listener.handle_handoff_failed(connection, &mut tx);
                }
                Outcome::Wait(seconds) => {
                    harness.advance(Duration::from_secs(u64::from(seconds)));
                }
            }
            prop_assert!(harness.listener.syn_queue_len() <= 2);
        }
        // Every retransmission and expiry runs out within the SYN queue's lifetime.
        for _ in 0..70 {
            let sent = harness.advance(Duration::from_secs(1));
            prop_assert!(sent.len() <= 2, "one retransmission per entry at most: {}", sent.len());
        }
        prop_assert_eq!(harness.listener.syn_queue_len(), 0);
        prop_assert!(harness.listener.poll_timeout().is_none(), "no timer left");
    }
}

fn tcp_repr() -> impl Strategy<Value = TcpRepr<'static>> {
    let link = (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        proptest::option::of(any::<u16>()),
    )
        .prop_map(|(src, dst, vlan)| LinkAddrs { src, dst, vlan });
    let options = (
        proptest::option::of(any::<u16>()),
        proptest::option::of(0u8..=14),
        any::<bool>(),
        proptest::option::of((any::<u32>(), any::<u32>())),
    )
        .prop_map(
            |(mss, window_scale, sack_permitted, timestamps)| TcpOptions {
                mss,
                window_scale,
                sack_permitted,
                timestamps: timestamps.map(|(value, echo)| Timestamps { value, echo }),
            },
        );
    (
        link,
        socket_pair(),
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u8>(),
        any::<u16>(),
        options,
    )
        .prop_map(
            |(link, (src, dst), hop_limit, seq, ack, flags, window, options)| TcpRepr {
                link,
                src,
                dst,
                hop_limit,
                seq: SeqNumber(seq),
                ack: SeqNumber(ack),
                flags: TcpFlags(flags),
                window,
                options,
                payload: &[],
            },
        )
}
