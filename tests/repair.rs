//! Repair mode in the lab: sockets built with TCP_REPAIR negotiate what the kernel's own
//! listener would, for every client layout, extreme MSS values included; with kernel-first,
//! the kernel completes the handshakes on synwall's own listening socket until a flood fills
//! its SYN queue. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::privileged_lab;
use lab::*;
use loadgen::lab::{CLIENT_V4, SERVER_V4, SERVER_V6};
use synwall::counters::Counter;
use synwall::handoff::{CompletedBy, HandoffMode};
use synwall::listener::SyncookiesMode;
use synwall::sys::SynAnswerer;
use synwall::sys::tcp_info::{receive_mss, tcp_info};
use synwall::wire::TcpOptions;

const LAB: &str = "swr";
/// The room the timestamps option takes in a segment.
const TIMESTAMP_ROOM: u32 = 12;

#[test]
fn test_repaired_sockets_negotiate_what_the_kernel_would() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    full_checksums_from_the_server(&topology);
    let kernel_listeners = [
        service(&topology, (SERVER_V4, KERNEL_PORT).into()),
        service(&topology, (SERVER_V6, KERNEL_PORT).into()),
    ];
    // Through the SYN queue: what a client asked for is kept whole, as by the kernel's own.
    let wall = Wall::start(&topology, HandoffMode::Repair, |config| {
        config.listener.syncookies = SyncookiesMode::Never;
    });
    let accept = || wall.accept().expect("synwall built the socket").stream;
    let mut layouts: Vec<(String, TcpOptions)> = syn_layouts()
        .into_iter()
        .map(|(name, options)| (name.to_owned(), options))
        .collect();
    // Client MSS values TCP_MAXSEG refuses (it takes 88..=32767): the kernel clamps them.
    for mss in [1, 47, 87, 32768, 65535] {
        let linux = common::linux_options(1);
        layouts.push((
            format!("MSS {mss}"),
            TcpOptions {
                mss: Some(mss),
                ..linux
            },
        ));
        let windows = common::windows_options();
        layouts.push((
            format!("MSS {mss}, no timestamps"),
            TcpOptions {
                mss: Some(mss),
                ..windows
            },
        ));
    }
    let mut attempt = 0;
    for (index, family) in [4u8, 6].into_iter().enumerate() {
        for (layout, options) in &layouts {
            attempt += 1;
            let negotiated = negotiate(
                &topology,
                &accept,
                &kernel_listeners[index],
                family,
                attempt,
                *options,
            );
            let Negotiated {
                synwall,
                mut kernel,
            } = negotiated;
            if !kernel.timestamps {
                // See the next test: TCP_INFO only, not the segments.
                kernel.send_mss -= TIMESTAMP_ROOM;
            }
            if family == 6 && options.mss.is_some_and(|mss| mss < 88) {
                // No IPv6 peer has an MSS below 1220 (the minimum MTU is 1280), and IPv6 has no
                // way to make the kernel size a repaired socket's segments again: such a bogus
                // client gets the 88 bytes TCP_MAXSEG takes at least, less the timestamps.
                assert!(synwall.send_mss <= 88, "IPv6, {layout}: {synwall:?}");
                kernel.send_mss = synwall.send_mss;
            }
            assert_eq!(
                synwall, kernel,
                "IPv{family}, {layout}: synwall's repaired socket against the kernel's"
            );
        }
    }
    assert_eq!(wall.stats().handoffs_failed, 0);
}

/// TCP_INFO's MSS of a repaired socket whose peer sent no timestamps is 12 bytes (the option's
/// room) below what the kernel's listener gives: TCP_REPAIR leaves the socket the header length
/// `connect` gives it while the namespace has timestamps on, and no API changes it. The segments
/// themselves carry the full MSS: the kernel sizes each one by the options it really carries.
#[test]
fn test_repaired_socket_without_timestamps_sends_full_segments() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    // A Linux client without timestamps offers what Windows offers: MSS, SACK, window scale.
    topology
        .run_in(
            &topology.client_ns,
            &["sysctl", "-qw", "net.ipv4.tcp_timestamps=0"],
        )
        .unwrap();
    let wall = Wall::start(&topology, HandoffMode::Repair, |_| {});
    const LENGTH: usize = 300_000;
    let client = topology.spawn_in(&topology.client_ns, || -> std::io::Result<u32> {
        let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received)?;
        assert_eq!(received.len(), LENGTH);
        receive_mss(&stream)
    });
    let mut connection = wall.accept().expect("synwall built the socket");
    assert!(!tcp_info(&connection.stream).unwrap().timestamps);
    connection.stream.write_all(&[7; LENGTH]).unwrap();
    drop(connection);
    assert_eq!(
        client.join().unwrap().unwrap().unwrap(),
        1460,
        "the largest segment the client received"
    );
}

/// `answer-syns = kernel-first`, the default: without a flood the kernel answers each SYN and
/// completes the handshake on synwall's own listening socket, also over a TIME-WAIT tuple, and
/// `Server::accept` gives the connection with the client's own address, no frame of it through
/// AF_XDP; a flood that fills that socket's SYN queue makes the SYNs synwall's, which answers
/// the next client itself and builds its socket with TCP_REPAIR. Dropping the server ends the
/// accepting thread too.
#[test]
fn test_kernel_first_the_kernel_answers_on_synwalls_socket_until_a_flood() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let wall = Wall::start(&topology, HandoffMode::Repair, |config| {
        config.answer_syns = SynAnswerer::KernelFirst;
        // The flood below fills a queue of this size.
        config.backlog = 128;
    });
    let exchange = |port| {
        let client = topology.spawn_in(&topology.client_ns, move || {
            lab::ping_from((CLIENT_V4, port).into(), served_v4())
        });
        let connection = wall.accept().expect("synwall gave the connection");
        assert_eq!(
            connection.peer,
            (CLIENT_V4, port).into(),
            "the client's own"
        );
        assert_eq!(connection.local, served_v4());
        let completed_by = connection.completed_by;
        lab::answer_ping(connection.stream);
        assert_eq!(client.join().unwrap().unwrap().unwrap(), b"ping");
        completed_by
    };

    assert_eq!(exchange(46101), CompletedBy::KernelListener);
    // The server closed first: reconnecting over the tuple meets its TIME-WAIT socket, which
    // gives way to synwall's listener, as to the service's in native mode.
    lab::wait_time_wait(&topology, 46101);
    assert_eq!(exchange(46101), CompletedBy::KernelListener);
    let stats = wall.stats();
    assert_eq!(stats.answer_syns, SynAnswerer::KernelFirst, "{stats:?}");
    assert_eq!(stats.own_listener_accepted, 2, "{stats:?}");
    assert_eq!(stats.steering.kernel_answers, 1, "{stats:?}");
    assert_eq!(stats.steering.kernel_reopens, 1, "{stats:?}");
    assert_eq!(stats.listener.get(Counter::SynReceived), 0, "{stats:?}");
    assert_eq!(stats.handoffs_completed, 0, "{stats:?}");

    // The flood's spoofed SYNs fill the socket's SYN queue before synwall takes them over.
    syn_flood(&topology, 2_000);
    assert!(matches!(exchange(46102), CompletedBy::Synwall(_)));
    let stats = wall.stats();
    assert!(stats.steering.takeovers >= 1, "{stats:?}");
    assert!(
        stats.steering.kernel_answers <= 1 + FLOOD_SYNS_THE_LISTENER_ANSWERS,
        "{stats:?}"
    );
    assert_eq!(stats.handoffs_completed, 1, "{stats:?}");
    assert_eq!(stats.handoffs_failed, 0, "{stats:?}");
    assert_eq!(stats.own_listener_accepted, 2, "{stats:?}");
    assert_eq!(stats.own_listener_errors, 0, "{stats:?}");
}
