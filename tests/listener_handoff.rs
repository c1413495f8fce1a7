//! Packet-level tests of what follows a completed handshake: segments held until the kernel
//! owns the connection and then re-injected, the handoff's bounds and timer, accept-queue
//! overflow (requeued or reset), repeated reports from the driver, and the final ACK rebuilt
//! for the local stack. Named `test_<state>_<event>`.

mod common;
#[path = "common/listener.rs"]
mod listener_support;

use std::time::Duration;

use common::*;
use listener_support::*;
use synwall::counters::{Counter, Gauge};
use synwall::listener::{DropReason, HandshakePath, ListenerConfig, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::wire::TcpFlags;

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
fn test_late_pure_ack_of_the_handshake_is_dropped_not_reinjected() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let ack = client.ack(&syn_ack, b"hello");
    let accepted = expect_accepted(h.send(&ack).0);
    let (_, held) = h.handoff_complete(&accepted);
    assert!(held.is_empty());
    let after_hello = client.isn + 6;
    // The answer to a repaired socket's window probe, coming out of the ring after the
    // connection's later segments went to the kernel directly: an old duplicate there.
    let probe_answer = client.segment(TcpFlags::ACK, after_hello, syn_ack.seq + 1);
    assert_eq!(h.send(&probe_answer).0, Verdict::Consumed);
    assert_eq!(count(&h, Counter::LateHandshakeAcks), 1);
    // What the kernel socket would learn from is still re-injected: an ACK of our data, a FIN.
    let ack_of_data = client.segment(TcpFlags::ACK, after_hello, syn_ack.seq + 101);
    let fin = client.segment(TcpFlags::ACK | TcpFlags::FIN, after_hello, syn_ack.seq + 1);
    for late in [ack_of_data, fin] {
        assert!(matches!(h.send(&late).0, Verdict::Reinject(_)), "{late:?}");
    }
    assert_eq!(count(&h, Counter::Reinjected), 2);
    assert_eq!(count(&h, Counter::LateHandshakeAcks), 1);
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
fn test_final_ack_is_rebuilt_for_the_local_stack() {
    let mut h = harness(SyncookiesMode::WhenFull);
    for address in ["198.18.5.5:40000", "[2001:2::5]:40000"] {
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
fn test_admitted_handshake_is_recorded_as_its_final_ack_makes_it() {
    let mut h = harness(SyncookiesMode::WhenFull);
    let first = Client::new("198.18.5.5:40000", 10, linux_options(1));
    h.syn_ack_repr(&first);
    assert_eq!(h.listener.take_admitted().count(), 0, "not recording yet");
    h.listener.record_admissions();
    let client = Client::new("198.18.5.5:40001", 20, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let recorded: Vec<_> = h.listener.take_admitted().collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(h.listener.take_admitted().count(), 0, "taken once");
    let mut accepted = expect_accepted(h.send(&client.ack(&syn_ack, b"")).0);
    let expected = recorded[0].clone();
    let timestamps = expected.timestamps.expect("timestamps negotiated");
    assert_eq!(
        Some(timestamps.echo),
        syn_ack.options.timestamps.map(|ts| ts.value),
        "our SYN-ACK's TSval"
    );
    // What only the ACK itself tells: its window, its TSval, the link and the duration.
    accepted.timestamps = expected.timestamps;
    accepted.peer_window = expected.peer_window;
    accepted.link = expected.link;
    accepted.handshake_duration = None;
    assert_eq!(accepted, expected);
}

#[test]
fn test_queued_completed_in_kernel_leaves_the_queue_once() {
    let mut h = harness(SyncookiesMode::WhenFull);
    h.listener.record_admissions();
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    let syn_ack = h.syn_ack_repr(&client);
    let admitted = h.listener.take_admitted().next().unwrap();
    let (tuple, isn) = (admitted.tuple, admitted.server_isn.0);
    let now = h.now;
    assert_eq!(
        h.listener
            .handle_completed_in_kernel(now, &tuple, isn.wrapping_add(1)),
        None,
        "another handshake's ISN"
    );
    assert_eq!(
        h.listener.handle_completed_in_kernel(now, &tuple, isn),
        Some(Duration::ZERO)
    );
    assert_eq!(
        h.listener.handle_completed_in_kernel(now, &tuple, isn),
        None
    );
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::CompletedInKernel), 1);
    assert_eq!(count(&h, Counter::AcceptedFromQueue), 1);
    assert!(
        h.listener.poll_timeout().is_none(),
        "no retransmission left"
    );
    assert_eq!(syn_ack.seq, admitted.server_isn);
}

#[test]
fn test_queued_reset_by_kernel_leaves_the_queue_uncounted_as_accepted() {
    let mut h = harness(SyncookiesMode::WhenFull);
    h.listener.record_admissions();
    let client = Client::new("198.18.5.5:40000", 10, linux_options(1));
    h.syn_ack_repr(&client);
    let admitted = h.listener.take_admitted().next().unwrap();
    let (tuple, isn) = (admitted.tuple, admitted.server_isn.0);
    assert!(h.listener.handle_reset_by_kernel(&tuple, isn));
    assert!(!h.listener.handle_reset_by_kernel(&tuple, isn), "once");
    assert_eq!(h.listener.syn_queue_len(), 0);
    assert_eq!(count(&h, Counter::AcceptedFromQueue), 0);
}
