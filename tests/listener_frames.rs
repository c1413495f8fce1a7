//! Packet-level tests of the frames the listener refuses or lets by before any handshake
//! state (impossible flag combinations, martian sources, malformed frames, frames for
//! addresses it does not serve), and of the configurations it refuses. Named
//! `test_<state>_<event>`.

mod common;
#[path = "common/listener.rs"]
mod listener_support;

use common::*;
use listener_support::*;
use synwall::counters::Counter;
use synwall::listener::{DropReason, ListenerConfig, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::wire::{Malformed, TcpFlags};

#[test]
fn test_listen_impossible_flags_dropped() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let cases = [
        TcpFlags::SYN | TcpFlags::FIN,
        TcpFlags::SYN | TcpFlags::RST,
        TcpFlags::SYN | TcpFlags::ACK,
        TcpFlags::FIN,
        TcpFlags::PSH,
        TcpFlags(0),
    ];
    for flags in cases {
        let segment = client.segment(flags, client.isn, SeqNumber(1));
        assert_eq!(
            h.send(&segment),
            (Verdict::Drop(DropReason::BadFlags), None),
            "{flags:?}"
        );
    }
    assert_eq!(count(&h, Counter::BadFlags), cases.len() as u64);
    assert_eq!(h.listener.syn_queue_len(), 0);
}

#[test]
fn test_listen_martian_sources_dropped() {
    let mut h = harness(SyncookiesMode::Always);
    for source in [
        "224.0.0.1:5",
        "255.255.255.255:5",
        "127.0.0.1:5",
        "0.0.0.0:5",
        "198.18.0.1:5",
    ] {
        let client = Client::new(source, 1, linux_options(1));
        assert_eq!(
            h.send(&client.syn()).0,
            Verdict::Drop(DropReason::MartianSource),
            "{source}"
        );
    }
    for source in ["[ff02::1]:5", "[::1]:5", "[::ffff:198.18.0.9]:5"] {
        let client = Client::new(source, 1, linux_options(1));
        assert_eq!(
            h.send(&client.syn()).0,
            Verdict::Drop(DropReason::MartianSource),
            "{source}"
        );
    }
    assert_eq!(count(&h, Counter::SynReceived), 0);
}

#[test]
fn test_listen_not_ours_passes() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 1, linux_options(1));
    let other_port = synwall::wire::TcpRepr {
        dst: "198.18.0.1:81".parse().unwrap(),
        ..client.syn()
    };
    let other_address = synwall::wire::TcpRepr {
        dst: "198.18.0.2:80".parse().unwrap(),
        ..client.syn()
    };
    assert_eq!(h.send(&other_port), (Verdict::Pass, None));
    assert_eq!(h.send(&other_address), (Verdict::Pass, None));
    assert_eq!(count(&h, Counter::FramesPassed), 2);
}

#[test]
fn test_listen_malformed_frames_counted() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 1, linux_options(1));
    let good = frame(&client.syn());
    let mut bad_tcp_checksum = good.clone();
    *bad_tcp_checksum.last_mut().unwrap() ^= 1;
    let mut bad_ip_checksum = good.clone();
    bad_ip_checksum[14 + 10] ^= 1;
    let cases = [
        (good[..10].to_vec(), Malformed::Ethernet),
        (good[..30].to_vec(), Malformed::Ipv4Header),
        (bad_ip_checksum, Malformed::Ipv4Checksum),
        (bad_tcp_checksum, Malformed::TcpChecksum),
    ];
    for (frame, kind) in cases {
        assert_eq!(
            h.send_frame(&frame),
            (Verdict::Drop(DropReason::Malformed(kind)), None)
        );
        assert_eq!(count(&h, Counter::from(kind)), 1);
    }
}

#[test]
fn test_listen_rejects_invalid_config() {
    use synwall::listener::{ConfigError, Listener};
    let now = std::time::Instant::now();
    let cases = [
        (ListenerConfig::default(), ConfigError::NothingServed),
        (
            ListenerConfig {
                max_syn_backlog: 0,
                ..config(SyncookiesMode::WhenFull)
            },
            ConfigError::NoSynQueue,
        ),
        (
            ListenerConfig {
                synack_retries: 11,
                ..config(SyncookiesMode::WhenFull)
            },
            ConfigError::TooManyRetries(11),
        ),
        (
            ListenerConfig {
                window_scale: 15,
                ..config(SyncookiesMode::WhenFull)
            },
            ConfigError::WindowScale(15),
        ),
        (
            ListenerConfig {
                mss_v6: 40,
                ..config(SyncookiesMode::WhenFull)
            },
            ConfigError::MssTooSmall {
                key: "mss-v6",
                value: 40,
            },
        ),
    ];
    for (config, expected) in cases {
        assert_eq!(
            Listener::new(config, keys(START_UNIX), now).err(),
            Some(expected)
        );
    }
    let stateless = ListenerConfig {
        max_syn_backlog: 0,
        ..config(SyncookiesMode::Always)
    };
    assert!(Listener::new(stateless, keys(START_UNIX), now).is_ok());
}
