//! Packet-level tests of the listener state machine: one test per path, named
//! `test_<state>_<event>`.

mod common;

use std::time::Duration;

use common::*;
use synwall::counters::{Counter, Gauge};
use synwall::listener::{
    DropReason, HandshakePath, ListenerConfig, SyncookiesMode, Verdict, WindowScale,
};
use synwall::seq::SeqNumber;
use synwall::wire::{Malformed, TcpFlags, TcpOptions, Timestamps};

const MS: Duration = Duration::from_millis(1);
const SECOND: Duration = Duration::from_secs(1);

fn harness(syncookies: SyncookiesMode) -> Harness {
    Harness::new(config(syncookies))
}

fn count(harness: &Harness, counter: Counter) -> u64 {
    harness.listener.counters().get(counter)
}

#[track_caller]
fn expect_accepted(verdict: Verdict) -> synwall::listener::Accepted {
    match verdict {
        Verdict::Accepted(accepted) => accepted,
        other => panic!("expected Accepted, got {other:?}"),
    }
}

#[test]
fn test_listen_syn_queued_synack_carries_negotiated_options() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 1000, linux_options(777));
    let reply = h.syn_ack(&client);
    let syn_ack = parse_reply(&reply, client.addr);
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(syn_ack.ack, SeqNumber(1001));
    assert_eq!(syn_ack.src, client.server);
    assert_eq!(syn_ack.link.dst, CLIENT_MAC);
    assert_eq!(syn_ack.link.src, SERVER_MAC);
    assert_eq!(syn_ack.hop_limit, 64);
    assert_eq!(syn_ack.window, 65535);
    assert_eq!(syn_ack.options.mss, Some(1460));
    assert_eq!(syn_ack.options.window_scale, Some(7));
    assert!(syn_ack.options.sack_permitted);
    assert_eq!(syn_ack.options.timestamps.unwrap().echo, 777);
    assert!(syn_ack.payload.is_empty());
    assert_eq!(h.listener.syn_queue_len(), 1);
    assert_eq!(count(&h, Counter::SynReceived), 1);
    assert_eq!(count(&h, Counter::SynAcksSent), 1);
    assert_eq!(count(&h, Counter::CookiesSent), 0);
    assert_eq!(h.listener.counters().gauge(Gauge::SynQueueDepth), 1);
}

#[test]
fn test_listen_syn_with_data_is_not_acknowledged() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 1000, linux_options(1));
    let syn = synwall::wire::TcpRepr {
        payload: b"fast open data",
        ..client.syn()
    };
    let (_, reply) = h.send(&syn);
    let syn_ack = parse_reply(reply.as_deref().unwrap(), client.addr);
    assert_eq!(syn_ack.ack, SeqNumber(1001), "only the SYN is acknowledged");
}

#[test]
fn test_syn_received_ack_completes_from_queue() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", u32::MAX, linux_options(777));
    let reply = h.syn_ack(&client);
    let syn_ack = parse_reply(&reply, client.addr);
    h.advance(30 * MS);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"GET / HTTP/1.1\r\n")).0);
    assert_eq!(accepted.path, HandshakePath::Queue);
    assert_eq!(accepted.tuple.remote, client.addr);
    assert_eq!(accepted.tuple.local, client.server);
    assert_eq!(accepted.client_isn, SeqNumber(u32::MAX));
    assert_eq!(accepted.peer_next_seq(), SeqNumber(0), "wraps around");
    assert_eq!(accepted.server_isn, syn_ack.seq);
    assert_eq!(accepted.mss, 1460);
    assert_eq!(
        accepted.window_scale,
        Some(WindowScale {
            send: 7,
            receive: 7
        })
    );
    assert!(accepted.sack_permitted);
    assert_eq!(
        accepted.timestamps,
        Some(Timestamps {
            value: 778,
            echo: syn_ack.options.timestamps.unwrap().value
        })
    );
    assert_eq!(accepted.peer_window, 502 << 7);
    assert_eq!(accepted.early_data, b"GET / HTTP/1.1\r\n");
    assert_eq!(accepted.handshake_duration, Some(30 * MS));
    assert_eq!(accepted.link.src, CLIENT_MAC);
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::AcceptedFromQueue), 1);
}

#[test]
fn test_listen_syn_cookie_mode_always_keeps_no_state() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 5, linux_options(9));
    let reply = h.syn_ack(&client);
    let syn_ack = parse_reply(&reply, client.addr);
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::CookiesSent), 1);
    assert_eq!(syn_ack.options.window_scale, Some(7));
    assert!(syn_ack.options.sack_permitted);

    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    assert_eq!(accepted.path, HandshakePath::Cookie);
    assert_eq!(accepted.server_isn, syn_ack.seq);
    assert_eq!(accepted.mss, 1460);
    assert_eq!(
        accepted.window_scale,
        Some(WindowScale {
            send: 7,
            receive: 7
        })
    );
    assert!(accepted.sack_permitted);
    assert!(accepted.early_data.is_empty());
    assert_eq!(accepted.handshake_duration, None);
    assert_eq!(count(&h, Counter::CookieAcksValid), 1);
    assert_eq!(count(&h, Counter::AcceptedFromCookie), 1);
}

#[test]
fn test_listen_syn_cookie_rounds_mss_down_to_table() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new(
        "198.18.5.5:40000",
        5,
        TcpOptions {
            mss: Some(1400),
            ..macos_options(3)
        },
    );
    let syn_ack = h.syn_ack(&client);
    let syn_ack = parse_reply(&syn_ack, client.addr);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    assert_eq!(accepted.mss, 1300);
    assert_eq!(accepted.window_scale.unwrap().send, 6);
}

#[test]
fn test_listen_syn_cookie_without_timestamps_promises_only_mss() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 5, windows_options());
    let syn_ack = h.syn_ack(&client);
    let syn_ack = parse_reply(&syn_ack, client.addr);
    assert_eq!(
        syn_ack.options,
        TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        }
    );
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"x")).0);
    assert_eq!(accepted.window_scale, None);
    assert!(!accepted.sack_permitted);
    assert_eq!(accepted.timestamps, None);
    assert_eq!(accepted.peer_window, 502, "unscaled");
}

#[test]
fn test_listen_syn_without_mss_uses_family_default() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 5, TcpOptions::default());
    let syn_ack = h.syn_ack(&client);
    let syn_ack = parse_reply(&syn_ack, client.addr);
    assert_eq!(syn_ack.options.window_scale, None);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    assert_eq!(accepted.mss, 536);
}

#[test]
fn test_listen_syn_ecn_agreed_only_when_enabled() {
    let client = Client::new("198.18.5.5:40000", 5, linux_options(1));
    let ecn_syn = synwall::wire::TcpRepr {
        flags: TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR,
        ..client.syn()
    };
    let mut off = harness(SyncookiesMode::Always);
    let (_, reply) = off.send(&ecn_syn);
    assert!(
        !parse_reply(reply.as_deref().unwrap(), client.addr)
            .flags
            .contains(TcpFlags::ECE)
    );

    let mut on = Harness::new(ListenerConfig {
        ecn: true,
        ..config(SyncookiesMode::Always)
    });
    let (_, reply) = on.send(&ecn_syn);
    let syn_ack = parse_reply(reply.as_deref().unwrap(), client.addr);
    assert_eq!(syn_ack.flags, TcpFlags::SYN | TcpFlags::ACK | TcpFlags::ECE);
    let accepted = expect_accepted(on.send(&client.ack(&syn_ack, b"")).0);
    assert!(
        accepted.ecn,
        "the ECN bit travels in the cookie's timestamp"
    );
}

#[test]
fn test_listen_syn_when_full_crosses_to_cookies() {
    let mut h = Harness::new(ListenerConfig {
        max_syn_backlog: 2,
        ..config(SyncookiesMode::WhenFull)
    });
    let clients: Vec<Client> = (0..4)
        .map(|i| Client::new(&format!("198.18.5.{i}:40000"), 100 + i, linux_options(i)))
        .collect();
    let syn_acks: Vec<Vec<u8>> = clients.iter().map(|c| h.syn_ack(c)).collect();
    assert_eq!(h.listener.syn_queue_len(), 2);
    assert_eq!(count(&h, Counter::SynAcksSent), 2);
    assert_eq!(count(&h, Counter::CookiesSent), 2);
    assert_eq!(count(&h, Counter::SynQueueOverflow), 2);
    let paths: Vec<HandshakePath> = clients
        .iter()
        .zip(&syn_acks)
        .map(|(client, reply)| {
            let syn_ack = parse_reply(reply, client.addr);
            expect_accepted(h.send(&client.ack(&syn_ack, b"")).0).path
        })
        .collect();
    use HandshakePath::*;
    assert_eq!(paths, [Queue, Queue, Cookie, Cookie]);
}

#[test]
fn test_listen_syn_queue_full_without_cookies_drops() {
    let mut h = Harness::new(ListenerConfig {
        max_syn_backlog: 1,
        ..config(SyncookiesMode::Never)
    });
    h.syn_ack(&Client::new("198.18.5.1:40000", 1, linux_options(1)));
    let (verdict, reply) = h.send(&Client::new("198.18.5.2:40000", 1, linux_options(1)).syn());
    assert_eq!(verdict, Verdict::Drop(DropReason::SynQueueFull));
    assert!(reply.is_none());
    assert_eq!(count(&h, Counter::SynQueueFullDrops), 1);
    assert_eq!(count(&h, Counter::SynQueueOverflow), 1);
}

#[test]
fn test_listen_ack_without_cookies_is_reset() {
    let mut h = harness(SyncookiesMode::Never);
    let client = Client::new("198.18.5.5:40000", 1, TcpOptions::default());
    let ack = client.segment(TcpFlags::ACK, SeqNumber(2), SeqNumber(12345));
    let (verdict, reply) = h.send(&ack);
    assert!(matches!(verdict, Verdict::Transmit(_)));
    let rst = parse_reply(reply.as_deref().unwrap(), client.addr);
    assert_eq!(rst.flags, TcpFlags::RST);
    assert_eq!(rst.seq, SeqNumber(12345), "<SEQ=SEG.ACK><CTL=RST>");
    assert_eq!(count(&h, Counter::UnknownAcks), 1);
    assert_eq!(count(&h, Counter::RstsSent), 1);
}

#[test]
fn test_listen_cookie_ack_gated_until_cookies_sent() {
    let mut h = harness(SyncookiesMode::WhenFull);
    // A valid cookie: made by a listener with the same key that did send cookies.
    let mut issuer = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 7, linux_options(3));
    let syn_ack = issuer.syn_ack(&client);
    let ack = client.ack(&parse_reply(&syn_ack, client.addr), b"");
    let (verdict, _) = h.send(&ack);
    assert!(
        matches!(verdict, Verdict::Transmit(_)),
        "gated ACKs get a RST"
    );
    assert_eq!(count(&h, Counter::CookieAcksGated), 1);
    assert_eq!(count(&h, Counter::CookieAcksValid), 0);

    // Once this listener sends a cookie itself, the gate opens for two key periods.
    let mut small = Harness::new(ListenerConfig {
        max_syn_backlog: 1,
        ..config(SyncookiesMode::WhenFull)
    });
    let queued = Client::new("198.18.9.1:1", 1, linux_options(1));
    let queued_syn_ack = small.syn_ack_repr(&queued);
    assert!(!small.listener.cookie_gate_open(small.now));
    small.syn_ack(&Client::new("198.18.9.2:1", 1, linux_options(1)));
    assert!(small.listener.cookie_gate_open(small.now));
    expect_accepted(small.send(&ack).0);
    expect_accepted(small.send(&queued.ack(&queued_syn_ack, b"")).0);
    small.advance(2 * KEY_PERIOD - MS);
    assert!(small.listener.cookie_gate_open(small.now));
    small.advance(MS);
    assert!(!small.listener.cookie_gate_open(small.now));
}

#[test]
fn test_listen_forged_cookie_ack_rejected() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 7, linux_options(3));
    let syn_ack = h.syn_ack_repr(&client);
    let good = client.ack(&syn_ack, b"");
    let forged = [
        synwall::wire::TcpRepr {
            ack: good.ack + 1,
            ..good
        },
        synwall::wire::TcpRepr {
            seq: good.seq + 1,
            ..good
        },
        synwall::wire::TcpRepr {
            options: TcpOptions {
                timestamps: good.options.timestamps.map(|ts| Timestamps {
                    echo: ts.echo ^ 0x10,
                    ..ts
                }),
                ..good.options
            },
            ..good
        },
        synwall::wire::TcpRepr {
            options: TcpOptions::default(),
            ..good
        },
    ];
    for ack in &forged {
        let (verdict, reply) = h.send(ack);
        assert!(matches!(verdict, Verdict::Transmit(_)), "{ack:?}");
        assert_eq!(
            parse_reply(reply.as_deref().unwrap(), client.addr).flags,
            TcpFlags::RST
        );
    }
    assert_eq!(count(&h, Counter::CookieAcksInvalid), 4);
    expect_accepted(h.send(&good).0);
}

#[test]
fn test_listen_invalid_ack_resets_are_rate_limited() {
    let mut h = Harness::new(ListenerConfig {
        invalid_ack_rsts_per_sec: 2,
        ..config(SyncookiesMode::Never)
    });
    let client = Client::new("198.18.5.5:40000", 1, TcpOptions::default());
    let ack = client.segment(TcpFlags::ACK, SeqNumber(2), SeqNumber(3));
    let verdicts: Vec<Verdict> = (0..3).map(|_| h.send(&ack).0).collect();
    assert!(matches!(verdicts[0], Verdict::Transmit(_)));
    assert!(matches!(verdicts[1], Verdict::Transmit(_)));
    assert_eq!(verdicts[2], Verdict::Drop(DropReason::UnknownAck));
    assert_eq!(count(&h, Counter::RstsRateLimited), 1);
    assert_eq!(count(&h, Counter::UnknownAcks), 3);
    h.advance(500 * MS);
    assert!(matches!(h.send(&ack).0, Verdict::Transmit(_)), "refilled");

    let mut silent = Harness::new(ListenerConfig {
        invalid_ack_rsts_per_sec: 0,
        ..config(SyncookiesMode::Never)
    });
    assert_eq!(silent.send(&ack).0, Verdict::Drop(DropReason::UnknownAck));
    assert_eq!(count(&silent, Counter::RstsRateLimited), 0);
}

#[test]
fn test_syn_received_wrong_ack_is_reset_and_entry_kept() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let good = client.ack(&syn_ack, b"");
    let wrong = synwall::wire::TcpRepr {
        ack: good.ack + 1,
        ..good
    };
    let (verdict, reply) = h.send(&wrong);
    assert!(matches!(verdict, Verdict::Transmit(_)));
    let rst = parse_reply(reply.as_deref().unwrap(), client.addr);
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, wrong.ack));
    assert_eq!(count(&h, Counter::AckMismatch), 1);
    assert_eq!(h.listener.syn_queue_len(), 1);
    expect_accepted(h.send(&good).0);
}

#[test]
fn test_syn_received_ack_outside_window_dropped() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let good = client.ack(&syn_ack, b"");
    let far = synwall::wire::TcpRepr {
        seq: good.seq + 65535,
        ..good
    };
    assert_eq!(h.send(&far).0, Verdict::Drop(DropReason::OutOfWindow));
    // The last byte of the window is still in it: accepted, without early data.
    let edge = synwall::wire::TcpRepr {
        seq: good.seq + 65534,
        payload: b"late",
        ..good
    };
    let accepted = expect_accepted(h.send(&edge).0);
    assert!(accepted.early_data.is_empty());
}

#[test]
fn test_syn_received_duplicate_syn_gets_same_synack() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let first = h.syn_ack(&client);
    let second = h.syn_ack(&client);
    assert_eq!(first, second);
    assert_eq!(h.listener.syn_queue_len(), 1);
    assert_eq!(count(&h, Counter::DuplicateSyns), 1);
    assert_eq!(count(&h, Counter::SynAcksSent), 1);

    // Another ISN from the same 4-tuple is a new attempt: it replaces the entry.
    let restarted = Client {
        isn: SeqNumber(999),
        ..client
    };
    let third = h.syn_ack_repr(&restarted);
    assert_eq!(third.ack, SeqNumber(1000));
    assert_eq!(h.listener.syn_queue_len(), 1);
    let old_ack = client.ack(&parse_reply(&first, client.addr), b"");
    assert!(
        matches!(h.send(&old_ack).0, Verdict::Transmit(_)),
        "old handshake is reset"
    );
    expect_accepted(h.send(&restarted.ack(&third, b"")).0);
}

#[test]
fn test_syn_received_synack_retransmitted_on_schedule() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let first = h.syn_ack_repr(&client);
    // Retransmissions at 1, 3, 7, 15, 31 s; the entry expires at 63 s.
    let mut elapsed = Duration::ZERO;
    for due in [1u64, 3, 7, 15, 31] {
        let due = Duration::from_secs(due);
        assert!(
            h.advance(due - MS - elapsed).is_empty(),
            "one tick before {due:?}"
        );
        let sent = h.advance(MS);
        assert_eq!(sent.len(), 1, "at {due:?}");
        let again = parse_reply(&sent[0], client.addr);
        assert_eq!((again.seq, again.ack), (first.seq, first.ack));
        assert_eq!(again.options.timestamps.unwrap().echo, 1);
        elapsed = due;
    }
    assert_eq!(count(&h, Counter::SynAckRetransmits), 5);
    h.advance(Duration::from_secs(63) - MS - elapsed);
    assert_eq!(h.listener.syn_queue_len(), 1, "one tick before expiry");
    assert!(h.advance(MS).is_empty());
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::SynQueueExpired), 1);
    assert_eq!(h.listener.poll_timeout(), None);
    assert_eq!(h.listener.counters().gauge(Gauge::SynQueueDepth), 0);

    // The client may still ACK late; its cookie is honoured.
    let accepted = expect_accepted(h.send(&client.ack(&first, b"")).0);
    assert_eq!(accepted.path, HandshakePath::Cookie);
    assert_eq!(
        accepted.window_scale.unwrap().send,
        7,
        "options came back from the TS bits"
    );
}

#[test]
fn test_syn_received_retries_configurable() {
    let mut h = Harness::new(ListenerConfig {
        synack_retries: 2,
        ..config(SyncookiesMode::WhenFull)
    });
    h.syn_ack(&Client::new("198.18.5.5:40000", 10, linux_options(1)));
    let sent: usize = (0..6999).map(|_| h.advance(MS).len()).sum();
    assert_eq!(sent, 2);
    assert_eq!(h.listener.syn_queue_len(), 1, "at 7 s minus a tick");
    h.advance(MS);
    assert_eq!(h.listener.syn_queue_len(), 0, "2^3 - 1 = 7 s");
}

#[test]
fn test_syn_received_rst_removes_entry() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    h.syn_ack(&client);
    let outside = client.segment(TcpFlags::RST, client.isn + 70000, SeqNumber(0));
    assert_eq!(h.send(&outside).0, Verdict::Drop(DropReason::OutOfWindow));
    assert_eq!(h.listener.syn_queue_len(), 1);
    let rst = client.segment(TcpFlags::RST, client.isn + 1, SeqNumber(0));
    assert_eq!(h.send(&rst), (Verdict::Consumed, None));
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::ResetsReceived), 1);
    assert_eq!(
        h.send(&rst),
        (Verdict::Drop(DropReason::StrayRst), None),
        "never answered"
    );
}

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
fn test_listen_ipv6_with_vlan_completes_both_paths() {
    for mode in [SyncookiesMode::WhenFull, SyncookiesMode::Always] {
        let mut h = harness(mode);
        let mut client = Client::new("[2001:db8::77]:50000", 0xffff_fff0, linux_options(5));
        client.link.vlan = Some(0x2064);
        let reply = h.syn_ack(&client);
        let syn_ack = parse_reply(&reply, client.addr);
        assert_eq!(syn_ack.link.vlan, Some(0x2064));
        assert_eq!(syn_ack.options.mss, Some(1440));
        assert_eq!(syn_ack.src, server_v6());
        let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"v6")).0);
        assert_eq!(accepted.tuple.remote, client.addr);
        assert_eq!(accepted.link.vlan, Some(0x2064));
        assert_eq!(accepted.early_data, b"v6");
        let expected_mss = if mode == SyncookiesMode::Always {
            1440
        } else {
            1460
        };
        assert_eq!(accepted.mss, expected_mss, "{mode:?}");
    }
}

/// The IP packet inside an Ethernet frame without VLAN tag.
fn ip_packet(frame: &[u8]) -> &[u8] {
    &frame[14..]
}

#[test]
fn test_established_segments_held_until_the_kernel_owns_the_connection() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let ack = client.ack(&syn_ack, b"hello");
    let accepted = expect_accepted(h.send(&ack).0);
    assert_eq!(accepted.early_data, b"hello");
    // Everything that follows before the kernel socket exists is held for it, never taken for
    // a new cookie ACK: a retransmission (it would validate as a cookie), the next request, a
    // FIN, a SYN, a RST.
    let request = client.data(&ack, 5, b"more", TcpFlags::PSH);
    let fin = client.data(&ack, 9, b"", TcpFlags::FIN);
    let rst = client.segment(TcpFlags::RST, client.isn + 10, SeqNumber(0));
    let held = [
        frame(&ack),
        frame(&request),
        frame(&fin),
        frame(&client.syn()),
        frame(&rst),
    ];
    for segment in &held {
        assert_eq!(h.send_frame(segment), (Verdict::Consumed, None));
    }
    assert_eq!(count(&h, Counter::HeldSegments), 5);
    let held_bytes: usize = held.iter().map(|frame| ip_packet(frame).len()).sum();
    assert_eq!(
        h.listener.counters().gauge(Gauge::HeldBytes),
        held_bytes as u64
    );
    assert_eq!(h.listener.counters().gauge(Gauge::HandoffsPending), 1);

    let (ack_of_hello, reinject) = h.handoff_complete(&accepted);
    let ack_of_hello = ack_of_hello.expect("the early data is acknowledged");
    assert_eq!(
        parse_reply(&ack_of_hello, client.addr).ack,
        client.isn + 1 + 5
    );
    let expected: Vec<&[u8]> = held.iter().map(|frame| ip_packet(frame)).collect();
    assert_eq!(
        reinject, expected,
        "held packets go to the kernel in arrival order"
    );
    assert_eq!(count(&h, Counter::Reinjected), 5);
    assert_eq!(h.listener.counters().gauge(Gauge::HandoffsPending), 0);
    assert_eq!(h.listener.counters().gauge(Gauge::HeldBytes), 0);

    // Frames steered to us before the kernel socket existed may still come out of the ring:
    // straight to the kernel, for a while after the handoff.
    let late = frame(&request);
    let Verdict::Reinject(range) = h.send_frame(&late).0 else {
        panic!("expected a re-injection");
    };
    assert_eq!(&late[range], ip_packet(&late));
    h.advance(Duration::from_millis(99));
    assert!(matches!(h.send(&ack).0, Verdict::Reinject(_)));
    h.advance(Duration::from_millis(1));
    assert!(
        matches!(h.send(&ack).0, Verdict::Accepted(_)),
        "forgotten after the linger"
    );
}

#[test]
fn test_established_held_segments_bounded() {
    let mut h = Harness::new(ListenerConfig {
        max_held_bytes: 200,
        ..config(SyncookiesMode::Always)
    });
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let ack = client.ack(&syn_ack, b"");
    expect_accepted(h.send(&ack).0);
    let request = frame(&client.data(&ack, 0, &[7; 100], TcpFlags::PSH));
    assert_eq!(h.send_frame(&request).0, Verdict::Consumed);
    assert_eq!(
        h.send_frame(&request).0,
        Verdict::Drop(DropReason::HeldOverflow)
    );
    assert_eq!(count(&h, Counter::HeldOverflow), 1);
}

#[test]
fn test_established_handed_tuple_takes_a_new_syn() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    assert_eq!(
        h.handoff_complete(&accepted),
        (None, Vec::new()),
        "no early data, nothing held"
    );
    // The client reconnects over the same 4-tuple (TIME-WAIT reuse): a new handshake.
    let again = Client {
        isn: SeqNumber(5_000_000),
        ..client
    };
    let syn_ack = h.syn_ack_repr(&again);
    assert_eq!(syn_ack.ack, SeqNumber(5_000_001));
    expect_accepted(h.send(&again.ack(&syn_ack, b"")).0);
}

#[test]
fn test_established_handoff_marker_expires() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    h.advance(Duration::from_secs(3) - MS);
    assert_eq!(h.listener.counters().gauge(Gauge::HandoffsPending), 1);
    h.advance(MS);
    assert_eq!(h.listener.counters().gauge(Gauge::HandoffsPending), 0);
    assert_eq!(count(&h, Counter::HandoffsExpired), 1);
}

#[test]
fn test_established_pending_handoffs_full_counts_as_overflow() {
    let mut h = Harness::new(ListenerConfig {
        max_pending_handoffs: 1,
        abort_on_overflow: true,
        ..config(SyncookiesMode::Always)
    });
    for (i, expect_accept) in [(1, true), (2, false)] {
        let client = Client::new(&format!("198.18.5.{i}:40000"), 10, linux_options(1));
        let syn_ack = h.syn_ack_repr(&client);
        let verdict = h.send(&client.ack(&syn_ack, b"")).0;
        assert_eq!(matches!(verdict, Verdict::Accepted(_)), expect_accept);
    }
    assert_eq!(count(&h, Counter::AcceptQueueOverflow), 1);
    assert_eq!(count(&h, Counter::RstsSent), 1);
}

#[test]
fn test_accept_overflow_drop_requeues_and_completes_later() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    let mut tx = vec![0; 2048];
    let now = h.now;
    assert_eq!(
        h.listener.handle_accept_overflow(now, accepted, &mut tx),
        Verdict::Consumed
    );
    assert_eq!(count(&h, Counter::AcceptQueueOverflow), 1);
    assert_eq!(h.listener.syn_queue_len(), 1, "back in the SYN queue");
    assert_eq!(h.listener.counters().gauge(Gauge::HandoffsPending), 0);
    // The SYN-ACK is retransmitted a second later; the client ACKs again and gets in.
    let sent = h.advance(SECOND);
    assert_eq!(sent.len(), 1);
    let again = parse_reply(&sent[0], client.addr);
    assert_eq!(again.seq, syn_ack.seq);
    let accepted = expect_accepted(h.send(&client.ack(&again, b"")).0);
    assert_eq!(accepted.path, HandshakePath::Queue);
}

#[test]
fn test_accept_overflow_reported_twice_changes_nothing_more() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    let mut tx = vec![0; 2048];
    let now = h.now;
    for _ in 0..2 {
        h.listener
            .handle_accept_overflow(now, accepted.clone(), &mut tx);
    }
    assert_eq!(h.listener.syn_queue_len(), 1, "one entry, not two");
    // Every retransmission is sent once, then the entry expires: nothing is orphaned.
    let mut sent = 0;
    for _ in 0..70 {
        sent += h.advance(SECOND).len();
    }
    assert_eq!(sent, 5, "the five retransmissions of one entry");
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert!(h.listener.poll_timeout().is_none(), "no timer left");
}

#[test]
fn test_handoff_complete_reported_twice_changes_nothing_more() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let ack = client.ack(&syn_ack, b"early");
    let accepted = expect_accepted(h.send(&ack).0);
    let late = client.data(&ack, 5, b"late", TcpFlags::PSH);
    assert_eq!(h.send(&late).0, Verdict::Consumed, "held");
    let (early_data_ack, held) = h.handoff_complete(&accepted);
    assert!(early_data_ack.is_some());
    assert_eq!(held.len(), 1);
    let (again, none) = h.handoff_complete(&accepted);
    assert_eq!(
        (again, none.len()),
        (None, 0),
        "a repeated report sends nothing"
    );
    assert_eq!(count(&h, Counter::EarlyDataAcks), 1);
    assert_eq!(count(&h, Counter::Reinjected), 1);
}

#[test]
fn test_listen_window_scale_above_14_is_taken_as_14() {
    let mut h = harness(SyncookiesMode::Never);
    let options = TcpOptions {
        window_scale: Some(15),
        ..linux_options(1)
    };
    let client = Client::new("198.18.5.5:40000", 10, options);
    let syn_ack = h.syn_ack_repr(&client);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    assert_eq!(accepted.window_scale.map(|scale| scale.send), Some(14));
}

#[test]
fn test_final_ack_is_rebuilt_for_the_local_stack() {
    let mut h = harness(SyncookiesMode::WhenFull);
    for address in ["198.18.5.5:40000", "[2001:db8::5]:40000"] {
        let client = Client::new(address, u32::MAX, linux_options(9));
        let syn_ack = h.syn_ack_repr(&client);
        let ack = client.ack(&syn_ack, b"GET / HTTP/1.1\r\n\r\n");
        let accepted = expect_accepted(h.send(&ack).0);
        let mut buffer = [0u8; 2048];
        let packet = accepted.final_ack(&mut buffer).unwrap().to_vec();
        // Parsed back behind an Ethernet header, it is the client's ACK as the listener saw it.
        let mut frame = vec![0u8; 14];
        frame[12..14].copy_from_slice(if client.addr.is_ipv4() {
            &[0x08, 0x00]
        } else {
            &[0x86, 0xdd]
        });
        frame.extend_from_slice(&packet);
        let rebuilt = parse_reply(&frame, client.server);
        assert_eq!(rebuilt.src, ack.src);
        assert_eq!((rebuilt.seq, rebuilt.ack), (ack.seq, ack.ack));
        assert_eq!(rebuilt.window, ack.window);
        assert_eq!(rebuilt.options.timestamps, ack.options.timestamps);
        assert_eq!(rebuilt.payload, ack.payload);
        assert!(rebuilt.flags.contains(TcpFlags::ACK) && !rebuilt.flags.contains(TcpFlags::SYN));
    }
}

#[test]
fn test_accept_overflow_abort_resets_peer() {
    let mut h = Harness::new(ListenerConfig {
        abort_on_overflow: true,
        ..config(SyncookiesMode::WhenFull)
    });
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    let mut tx = vec![0; 2048];
    let now = h.now;
    let Verdict::Transmit(len) = h.listener.handle_accept_overflow(now, accepted, &mut tx) else {
        panic!("expected a RST");
    };
    let rst = parse_reply(&tx[..len], client.addr);
    assert_eq!((rst.flags, rst.seq), (TcpFlags::RST, syn_ack.seq + 1));
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::RstsSent), 1);
}

#[test]
fn test_listen_no_tx_buffer_counted_and_retransmitted_later() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let now = h.now;
    let verdict = h.listener.handle_frame(now, &frame(&client.syn()), &mut []);
    assert_eq!(verdict, Verdict::Drop(DropReason::NoTxBuffer));
    assert_eq!(count(&h, Counter::NoTxBuffer), 1);
    assert_eq!(
        h.listener.syn_queue_len(),
        1,
        "state kept; the timer retries"
    );
    assert_eq!(h.advance(SECOND).len(), 1);
}

#[test]
fn test_cookie_valid_across_one_key_rotation_only() {
    let mut h = harness(SyncookiesMode::Always);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let ack = client.ack(&syn_ack, b"");
    // Keep the gate open with fresh cookies while time passes.
    let keep_gate_open = |h: &mut Harness| {
        h.syn_ack(&Client::new("198.18.9.9:9", 1, linux_options(1)));
    };
    h.advance(2 * KEY_PERIOD - SECOND);
    keep_gate_open(&mut h);
    let (verdict, _) = h.send(&ack);
    assert!(
        matches!(verdict, Verdict::Accepted(_)),
        "one tick before the key expires"
    );
    let Verdict::Accepted(accepted) = verdict else {
        unreachable!()
    };
    h.handoff_complete(&accepted);
    h.advance(SECOND);
    keep_gate_open(&mut h);
    assert!(
        matches!(h.send(&ack).0, Verdict::Transmit(_)),
        "expired: reset"
    );
    assert_eq!(count(&h, Counter::CookieAcksInvalid), 1);
}

#[test]
fn test_syn_queue_memory_within_documented_bound() {
    for capacity in [1, 64, 4096] {
        let h = Harness::new(ListenerConfig {
            max_syn_backlog: capacity,
            ..config(SyncookiesMode::WhenFull)
        });
        let bytes = h.listener.syn_queue_bytes();
        assert!(
            bytes <= 440 * capacity + 1024,
            "{capacity} entries take {bytes} bytes"
        );
    }
}

#[test]
fn test_listen_timers_leave_nothing_behind() {
    let mut h = Harness::new(ListenerConfig {
        max_syn_backlog: 64,
        ..config(SyncookiesMode::WhenFull)
    });
    for i in 0..200u32 {
        let client = Client::new(
            &format!("198.18.{}.{}:{}", 10 + i / 250, i % 250, 1000 + i),
            i,
            linux_options(i),
        );
        h.syn_ack(&client);
    }
    assert_eq!(h.listener.syn_queue_len(), 64);
    let bytes = h.listener.syn_queue_bytes();
    for _ in 0..64 {
        h.advance(SECOND);
    }
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(h.listener.poll_timeout(), None);
    assert_eq!(h.listener.syn_queue_bytes(), bytes);
    assert_eq!(count(&h, Counter::SynQueueExpired), 64);
    assert_eq!(count(&h, Counter::SynAckRetransmits), 64 * 5);
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
