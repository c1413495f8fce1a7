//! Several rx queues in the lab (a veth with two channels): a shard per served queue, every
//! queue's connections completed and handed off, and the frames of a queue synwall does not
//! serve dropped rather than left to the kernel's listener. Privileged tier.
//!
//! Two cores cannot show scaling: these are correctness runs.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use common::privileged_lab;
use lab::*;
use loadgen::lab::Topology;
use synwall::handoff::HandoffMode;

const LAB: &str = "swq";
const CONNECTIONS: u64 = 64;

/// A lab whose veth has two rx and two tx queues on both ends: the client's flows are hashed
/// over its two tx queues, and each lands on the server's rx queue of the same index.
fn two_queue_lab() -> Option<Topology> {
    let topology = privileged_lab(LAB)?;
    topology.set_queues(2).expect("a veth with two channels");
    Some(topology)
}

/// `count` connections from the client, each sending a byte and reading the echo, each from
/// its own source port; returns how many completed.
fn connect_many(topology: &Topology, count: u64) -> u64 {
    in_ns(topology, &topology.client_ns, move || {
        (0..count)
            .filter(|i| {
                echo_roundtrip(served_v4(), &[*i as u8])
                    .is_ok_and(|hash| hash == sha256(&[*i as u8]))
            })
            .count() as u64
    })
}

#[test]
fn test_every_served_queue_completes_and_hands_off() {
    let Some(topology) = two_queue_lab() else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::UntilEof, |_| {});
    assert_eq!(connect_many(&topology, CONNECTIONS), CONNECTIONS);
    let stats = server.stats();
    assert_eq!(stats.handoffs_completed, CONNECTIONS);
    assert_eq!(stats.steering.dropped_no_xsk, 0, "both queues are served");
}

#[test]
fn test_a_queue_synwall_does_not_serve_is_dropped_not_passed() {
    let Some(topology) = two_queue_lab() else {
        return;
    };
    // The service listens on the served port: a frame leaked to the kernel would get in.
    let listener = service(&topology, served_v4());
    socket2::SockRef::from(&listener)
        .set_nonblocking(true)
        .unwrap();
    let wall = Wall::start(&topology, HandoffMode::Repair, |config| {
        config.queues = vec![0];
    });
    // Connections whose flows land on queue 1 never complete: their SYNs are dropped.
    let completed = in_ns(&topology, &topology.client_ns, || {
        (0..CONNECTIONS)
            .filter(|_| {
                std::net::TcpStream::connect_timeout(&served_v4(), Duration::from_millis(300))
                    .is_ok()
            })
            .count() as u64
    });
    let stats = wall.stats();
    assert!(completed > 0, "queue 0 is served");
    assert!(
        completed < CONNECTIONS,
        "some flows landed on queue 1: {completed}"
    );
    assert!(stats.steering.dropped_no_xsk > 0, "{:?}", stats.steering);
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing reached the kernel's listener"
    );
}
