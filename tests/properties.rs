//! Property tests: cookie round trips and bit flips, parse(emit(x)) == x, and arbitrary input
//! never panicking the parser or the listener.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{START_UNIX, config, keys};
use proptest::prelude::*;
use synwall::cookie::{CookieInput, CookieJar, MssTable, SynOptions};
use synwall::listener::{Listener, SyncookiesMode};
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
        let jar = jar();
        let cookie = jar.encode(&input, mss);
        prop_assert_eq!(jar.check(&input, cookie), Some(jar.encoded_mss(input.local, mss)));
    }

    #[test]
    fn prop_cookie_rejects_any_single_bit_flip(input in cookie_input(), mss in any::<u16>(), bit in 0usize..128) {
        let jar = jar();
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
