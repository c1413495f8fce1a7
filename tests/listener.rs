//! Packet-level tests of the listener state machine on its SYN-queue path: the SYN-ACK and
//! the options it agrees to, completion from the queue, retransmissions and expiry, ACKs and
//! RSTs of queued connections, and the queue's bounds. One test per path, named
//! `test_<state>_<event>`; the cookie path, the handoff to the kernel and the frames the
//! listener refuses have their own test files (`listener_*.rs`).

mod common;
#[path = "common/listener.rs"]
mod listener_support;

use std::time::Duration;

use common::*;
use listener_support::*;
use synwall::counters::{Counter, Gauge};
use synwall::listener::{
    DropReason, HandshakePath, ListenerConfig, SyncookiesMode, Verdict, WindowScale,
};
use synwall::seq::SeqNumber;
use synwall::wire::{TcpFlags, TcpOptions, Timestamps};

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
fn test_listen_ipv6_with_vlan_completes_both_paths() {
    for mode in [SyncookiesMode::WhenFull, SyncookiesMode::Always] {
        let mut h = harness(mode);
        let mut client = Client::new("[2001:2::77]:50000", 0xffff_fff0, linux_options(5));
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
fn test_syn_queue_memory_within_documented_bound() {
    for capacity in [1, 64, 4096] {
        let h = Harness::new(ListenerConfig {
            max_syn_backlog: capacity,
            ..config(SyncookiesMode::WhenFull)
        });
        let bytes = h.listener.syn_queue_bytes();
        assert!(
            bytes <= 200 * capacity + 1024,
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
