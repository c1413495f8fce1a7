//! The privileged tier: synwall on a veth in a network namespace, real Linux clients in
//! another. Skipped without root outside CI; in CI they must run.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::privileged_lab;
use lab::*;
use loadgen::lab::Topology;
use rand::{Rng, SeedableRng};
use synwall::counters::Counter;
use synwall::listener::SyncookiesMode;

/// Namespace names of this file's labs start with this.
const LAB: &str = "swt";

fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

/// `count` sequential round trips from the client namespace to `addr`, payload sizes up to 64 KiB.
fn sequential_echoes(topology: &Topology, addr: SocketAddr, count: u64) {
    in_ns(topology, &topology.client_ns, move || {
        for i in 0..count {
            let data = payload(i, (i as usize * 7919) % 65536 + 1);
            let echoed =
                echo_roundtrip(addr, &data).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(echoed, sha256(&data), "connection {i}: bytes changed");
        }
    });
}

/// `count` concurrent round trips.
fn concurrent_echoes(topology: &Topology, addr: SocketAddr, count: u64) {
    in_ns(topology, &topology.client_ns, move || {
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
    });
}

#[test]
fn test_cookies_always_echo_intact() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.syncookies = SyncookiesMode::Always;
    });
    sequential_echoes(&topology, served_v4(), 1000);
    concurrent_echoes(&topology, served_v4(), 200);
    let stats = server.stats();
    assert_eq!(stats.listener.get(Counter::AcceptedFromCookie), 1200);
    assert_eq!(stats.listener.get(Counter::AcceptedFromQueue), 0);
    assert_eq!(stats.handoffs_completed, 1200);
    assert_eq!(stats.handoffs_failed, 0);
}

#[test]
fn test_queue_never_echo_intact() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
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
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.syncookies = SyncookiesMode::WhenFull;
        config.listener.max_syn_backlog = 2;
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

/// Runs `f` in the client namespace and returns its result.
fn in_client<T: Send + 'static>(topology: &Topology, f: impl FnOnce() -> T + Send + 'static) -> T {
    in_ns(topology, &topology.client_ns, f)
}

/// Drops the first SYN-ACK from port 80 that reaches the client namespace.
fn drop_first_synack(topology: &Topology) {
    let rules = "table inet synwall_test {
        chain input {
            type filter hook input priority 0;
            tcp sport 80 tcp flags & (syn | ack) == (syn | ack) limit rate 1/hour burst 1 packets counter drop
        }
    }";
    let file = std::env::temp_dir().join(format!("synwall-nft-{}.nft", topology.client_ns));
    std::fs::write(&file, rules).unwrap();
    topology
        .run_in(&topology.client_ns, &["nft", "-f", file.to_str().unwrap()])
        .expect("nft");
    let _ = std::fs::remove_file(file);
}

#[test]
fn test_lost_synack_is_answered_again() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    for mode in [SyncookiesMode::Never, SyncookiesMode::Always] {
        let _server = EchoServer::start(&topology, Echo::UntilEof, |config| {
            config.listener.syncookies = mode;
        });
        drop_first_synack(&topology);
        let started = std::time::Instant::now();
        let echoed = in_client(&topology, || echo_roundtrip(served_v4(), b"after a loss"));
        assert_eq!(
            echoed.expect("connects despite the loss"),
            sha256(b"after a loss")
        );
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "{mode:?}: the first SYN-ACK was lost"
        );
        let rules = topology
            .run_in(
                &topology.client_ns,
                &["nft", "list", "table", "inet", "synwall_test"],
            )
            .unwrap();
        assert!(
            rules.contains("packets 1 "),
            "exactly one SYN-ACK dropped: {rules}"
        );
        topology
            .run_in(
                &topology.client_ns,
                &["nft", "delete", "table", "inet", "synwall_test"],
            )
            .unwrap();
    }
}

#[test]
fn test_only_the_served_port_is_steered() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    // A kernel listener on the served port (a canary: it must get nothing) and one on another
    // port (it must keep working), both in the server namespace.
    let (canary, other) = in_ns(&topology, &topology.server_ns, || {
        let canary = TcpListener::bind(served_v4()).unwrap();
        let other = TcpListener::bind((loadgen::lab::SERVER_V4, 81)).unwrap();
        canary.set_nonblocking(true).unwrap();
        (canary, other)
    });
    let server = EchoServer::start(&topology, Echo::UntilEof, |_| {});
    topology
        .run_in(&topology.client_ns, &["ip", "neigh", "flush", "all"])
        .unwrap();
    topology
        .run_in(
            &topology.client_ns,
            &[
                "ping",
                "-c",
                "2",
                "-W",
                "2",
                &loadgen::lab::SERVER_V4.to_string(),
            ],
        )
        .expect("ping (and ARP) work while attached");
    let served = in_client(&topology, || {
        let other = TcpStream::connect_timeout(
            &(loadgen::lab::SERVER_V4, 81).into(),
            Duration::from_secs(3),
        );
        let served = echo_roundtrip(served_v4(), b"to synwall");
        (other.is_ok(), served)
    });
    assert!(served.0, "the kernel listener on port 81 is reachable");
    assert_eq!(served.1.unwrap(), sha256(b"to synwall"));
    other.accept().expect("port 81 got its connection");
    assert_eq!(
        canary.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "the kernel listener on the served port got nothing"
    );
    assert!(server.stats().steering.redirected > 0);
}

#[test]
fn test_accept_queue_overflow_resets_when_asked() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.listener.abort_on_overflow = true;
        config.backlog = 1;
        config.workers = 1;
    });
    server.set_accepting(false);
    let outcomes = in_client(&topology, || {
        let clients: Vec<_> = (0..8)
            .map(|i| {
                std::thread::spawn(move || {
                    echo_roundtrip(served_v4(), &[i; 100]).map_err(|e| e.kind())
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    let resets = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Err(std::io::ErrorKind::ConnectionReset)))
        .count();
    assert!(resets > 0, "clients saw resets: {outcomes:?}");
    let stats = server.stats();
    assert!(stats.listener.get(Counter::AcceptQueueOverflow) > 0);
    assert!(stats.listener.get(Counter::RstsSent) > 0);
}

#[test]
fn test_accept_queue_overflow_drops_and_clients_get_in_later() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::UntilEof, |config| {
        config.backlog = 1;
        config.workers = 1;
    });
    server.set_accepting(false);
    let clients = topology.spawn_in(&topology.client_ns, || {
        let clients: Vec<_> = (0..8u8)
            .map(|i| {
                std::thread::spawn(move || {
                    echo_roundtrip(served_v4(), &[i; 100]).map(|hash| (i, hash))
                })
            })
            .collect();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    // The application sleeps until the accept queue has overflowed.
    wait_until(
        "the accept queue overflows while the application sleeps",
        Duration::from_secs(10),
        || server.stats().listener.get(Counter::AcceptQueueOverflow) > 0,
    );
    server.set_accepting(true);
    let outcomes = clients.join().unwrap().unwrap();
    for outcome in outcomes {
        let (i, hash) = outcome.expect("no client is reset; each gets in once there is room");
        assert_eq!(hash, sha256(&[i; 100]));
    }
    assert_eq!(server.stats().listener.get(Counter::RstsSent), 0);
}

#[test]
fn test_reconnect_over_a_time_wait_tuple() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let server = EchoServer::start(&topology, Echo::OnceThenClose, |config| {
        config.listener.syncookies = SyncookiesMode::Always;
    });
    let exchange = |local_port: u16| {
        move || lab::ping_from((loadgen::lab::CLIENT_V4, local_port).into(), served_v4())
    };
    assert_eq!(in_client(&topology, exchange(45678)).unwrap(), b"ping");
    // The server closed first: the kernel holds the 4-tuple in TIME-WAIT.
    lab::wait_time_wait(&topology, 45678);
    assert_eq!(
        in_client(&topology, exchange(45678)).expect("gets in again"),
        b"ping"
    );
    assert_eq!(server.stats().handoffs_failed, 0);
}

#[test]
fn test_a_waker_ends_the_fast_path_wait_at_once() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let interface = topology.server_if.clone();
    let elapsed = in_ns(&topology, &topology.server_ns, move || {
        use synwall::device::FrameIo;
        let mut device = synwall::sys::XdpDevice::open(&interface, 0, Default::default()).unwrap();
        let waker = device.waker();
        let woken = std::thread::spawn(move || waker.wake());
        let started = std::time::Instant::now();
        // Nothing arrives on the socket: only the waker ends this wait before its timeout,
        // whether it fires before the wait starts or during it.
        let frames = device.wait(Duration::from_secs(60)).unwrap();
        woken.join().unwrap();
        assert!(!frames, "no frame arrived");
        started.elapsed()
    });
    assert!(elapsed < Duration::from_secs(30), "woken after {elapsed:?}");
}
