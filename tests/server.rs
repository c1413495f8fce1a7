//! The privileged tier: synwall on a veth in a network namespace, real Linux clients in
//! another. Skipped without root outside CI; in CI they must run.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::lab::*;
use common::require_privileges;
use rand::{Rng, SeedableRng};
use synwall::counters::Counter;
use synwall::lab::Topology;
use synwall::listener::SyncookiesMode;

fn lab() -> Option<Topology> {
    require_privileges().then(|| Topology::create("swt").expect("creating the lab"))
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// `count` sequential round trips from the client namespace to `addr`, payload sizes up to 64 KiB.
fn sequential_echoes(topology: &Topology, addr: SocketAddr, count: u64) {
    topology
        .spawn_in(&topology.client_ns, move || {
            for i in 0..count {
                let data = payload(i, (i as usize * 7919) % 65536 + 1);
                let echoed =
                    echo_roundtrip(addr, &data).unwrap_or_else(|e| panic!("connection {i}: {e}"));
                assert_eq!(echoed, sha256(&data), "connection {i}: bytes changed");
            }
        })
        .join()
        .expect("client thread panicked")
        .expect("entering the client namespace");
}

/// `count` concurrent round trips.
fn concurrent_echoes(topology: &Topology, addr: SocketAddr, count: u64) {
    topology
        .spawn_in(&topology.client_ns, move || {
            let threads: Vec<_> = (0..count)
                .map(|i| {
                    std::thread::spawn(move || {
                        let data = payload(1000 + i, 1000 + (i as usize * 131) % 20000);
                        let echoed = echo_roundtrip(addr, &data)
                            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
                        assert_eq!(echoed, sha256(&data), "connection {i}: bytes changed");
                    })
                })
                .collect();
            for thread in threads {
                thread.join().expect("a client failed");
            }
        })
        .join()
        .expect("client thread panicked")
        .expect("entering the client namespace");
}

#[test]
fn test_cookies_always_echo_intact() {
    let Some(topology) = lab() else { return };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.syncookies = SyncookiesMode::Always;
    });
    sequential_echoes(&topology, served_v4(), 1000);
    concurrent_echoes(&topology, served_v4(), 200);
    sequential_echoes(&topology, served_v6(), 50);
    let stats = server.stats();
    assert_eq!(stats.listener.get(Counter::AcceptedFromCookie), 1250);
    assert_eq!(stats.listener.get(Counter::AcceptedFromQueue), 0);
    assert_eq!(stats.handoffs_completed, 1250);
    assert_eq!(stats.handoffs_failed, 0);
}

#[test]
fn test_queue_never_echo_intact() {
    let Some(topology) = lab() else { return };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.syncookies = SyncookiesMode::Never;
    });
    sequential_echoes(&topology, served_v4(), 1000);
    concurrent_echoes(&topology, served_v4(), 200);
    let stats = server.stats();
    assert_eq!(stats.listener.get(Counter::AcceptedFromQueue), 1200);
    assert_eq!(stats.listener.get(Counter::CookiesSent), 0);
}

#[test]
fn test_when_full_crosses_from_queue_to_cookies() {
    let Some(topology) = lab() else { return };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.syncookies = SyncookiesMode::WhenFull;
        config.listener.max_syn_backlog = 2;
        // Keep entries queued a little longer, so that concurrent clients find it full.
        config.listener.handoff_delay = Duration::from_millis(2);
    });
    concurrent_echoes(&topology, served_v4(), 200);
    let stats = server.stats();
    let queued = stats.listener.get(Counter::AcceptedFromQueue);
    let cookies = stats.listener.get(Counter::AcceptedFromCookie);
    assert_eq!(queued + cookies, 200);
    assert!(queued > 0, "some handshakes went through the queue");
    assert!(cookies > 0, "the queue filled and cookies took over");
    assert!(stats.listener.get(Counter::SynQueueOverflow) > 0);
}
