//! Packet-level tests of the listener's SYN cookies: the stateless SYN-ACK and the options a
//! cookie carries, the crossing from the SYN queue to cookies, the cookie gate, forged and
//! expired cookies, and the RSTs (rate-limited) that answer ACKs no cookie or queue entry
//! accounts for. Named `test_<state>_<event>`.

mod common;
#[path = "common/listener.rs"]
mod listener_support;

use common::*;
use listener_support::*;
use synwall::counters::Counter;
use synwall::listener::{
    DropReason, HandshakePath, ListenerConfig, SyncookiesMode, Verdict, WindowScale,
};
use synwall::seq::SeqNumber;
use synwall::wire::{TcpFlags, TcpOptions, Timestamps};

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
