//! Native handoff in the lab: the service listens on the served port itself and accepts every
//! connection from its own socket, with the client's address, the options the kernel itself
//! would have negotiated and the data of the final ACK. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, linux_options, privileged_lab};
use lab::*;
use loadgen::lab::{CLIENT_V4, SERVER_V4, SERVER_V6};
use synwall::counters::{Counter, Gauge};
use synwall::handoff::{HandoffFailure, HandoffMode};
use synwall::listener::{Accepted, HandshakePath, SyncookiesMode};
use synwall::seq::SeqNumber;
use synwall::server::Server;
use synwall::sys::native::{EntryBuffers, NativeHandoff};
use synwall::sys::{SteeringProgram, SynAnswerer, TcxVerdict, XdpAction, XdpMode};
use synwall::wire::{FourTuple, TcpFlags};

const LAB: &str = "swn";

#[test]
fn test_native_handoff_gives_the_service_its_clients_with_their_addresses() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    // Bound once for both rounds: a port closed and bound again at once can still be held by
    // a copy of its descriptor in a process another test is spawning, until that one's exec.
    let listeners = [
        service(&topology, served_v4()),
        service(&topology, served_v6()),
    ];
    for mode in [SyncookiesMode::Never, SyncookiesMode::Always] {
        let wall = Wall::start(&topology, HandoffMode::Native, |config| {
            config.listener.syncookies = mode;
            config.answer_syns = SynAnswerer::Synwall;
        });
        for (family, listener) in [4, 6].into_iter().zip(&listeners) {
            let (served, client_address) = addresses(family);
            // The request leaves right after connect(), as HTTP and TLS clients send theirs.
            let client = topology.spawn_in(&topology.client_ns, move || {
                let mut stream = TcpStream::connect_timeout(&served, Duration::from_secs(3))?;
                stream.write_all(b"hello")?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut reply = [0u8; 5];
                stream.read_exact(&mut reply).map(|()| reply)
            });
            let (mut accepted, peer) = listener.accept().expect("the service got the connection");
            assert_eq!(
                peer.ip(),
                client_address,
                "{mode:?}: the client's own address"
            );
            let mut request = [0u8; 5];
            accepted.read_exact(&mut request).unwrap();
            assert_eq!(&request, b"hello");
            accepted.write_all(b"world").unwrap();
            assert_eq!(&client.join().unwrap().unwrap().unwrap(), b"world");
        }
        // A handshake the kernel completed itself is counted once the shard reads its report.
        common::wait_until("both handoffs counted", Duration::from_secs(2), || {
            wall.stats().handoffs_completed == 2
        });
        let stats = wall.stats();
        assert_eq!(stats.handoff, HandoffMode::Native);
        assert_eq!(stats.handoffs_failed, 0, "{mode:?}: {stats:?}");
        // Through the SYN queue the kernel completes the handshake in its receive path; a
        // cookie handshake completes in synwall.
        let in_kernel = stats.listener.get(Counter::CompletedInKernel);
        let expected = if mode == SyncookiesMode::Never { 2 } else { 0 };
        assert_eq!(in_kernel, expected, "{mode:?}: {stats:?}");
        assert_eq!(
            stats.steering.kernel_completes > 0,
            mode == SyncookiesMode::Never
        );
        if mode == SyncookiesMode::Never {
            // Neither the final ACK nor the request right behind it came to synwall.
            assert_eq!(stats.listener.get(Counter::HeldSegments), 0, "{stats:?}");
            assert_eq!(stats.listener.get(Counter::Reinjected), 0, "{stats:?}");
            assert_eq!(stats.listener.gauge(Gauge::SynQueueDepth), 0, "{stats:?}");
        }
    }
}

#[test]
fn test_native_server_accept_says_to_accept_from_the_service() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _listener = service(&topology, served_v4());
    let interface = topology.server_if.clone();
    let (first, second) = in_ns(&topology, &topology.server_ns, move || {
        let server = Server::builder(&interface, &[served_v4()])
            .handoff(HandoffMode::Native)
            .bind()
            .expect("synwall started");
        let mut incoming = server.incoming();
        let first = incoming.next().map(|next| next.map(|_| ()));
        (first, incoming.next().is_none())
    });
    let error = first.expect("incoming gives the error").unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
    assert!(error.to_string().contains("accept them there"), "{error}");
    assert!(second, "the error ends incoming()");
}

#[test]
fn test_native_sockets_negotiate_what_the_kernel_would() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    full_checksums_from_the_server(&topology);
    let kernel_listeners = [
        service(&topology, (SERVER_V4, KERNEL_PORT).into()),
        service(&topology, (SERVER_V6, KERNEL_PORT).into()),
    ];
    let services = [
        service(&topology, served_v4()),
        service(&topology, served_v6()),
    ];
    let mut attempt = 0;
    // Through synwall's SYN queue against the kernel's; through cookies against its cookies.
    for (mode, kernel_cookies) in [(SyncookiesMode::Never, "1"), (SyncookiesMode::Always, "2")] {
        topology
            .run_in(
                &topology.server_ns,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.tcp_syncookies={kernel_cookies}"),
                ],
            )
            .unwrap();
        let wall = Wall::start(&topology, HandoffMode::Native, |config| {
            config.listener.syncookies = mode;
            config.answer_syns = SynAnswerer::Synwall;
        });
        for (index, family) in [4u8, 6].into_iter().enumerate() {
            for (layout, options) in syn_layouts() {
                attempt += 1;
                let accept = || services[index].accept().unwrap().0;
                let negotiated = negotiate(
                    &topology,
                    &accept,
                    &kernel_listeners[index],
                    family,
                    attempt,
                    options,
                );
                assert_eq!(
                    negotiated.synwall, negotiated.kernel,
                    "{mode:?}, IPv{family}, {layout} SYN: synwall's socket against the kernel's"
                );
            }
        }
        assert_eq!(wall.stats().handoffs_failed, 0);
    }
}

#[test]
fn test_native_port_without_listener_resets_the_client_and_counts() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let wall = Wall::start(&topology, HandoffMode::Native, |_| {});
    for served in [served_v4(), served_v6()] {
        let outcome = in_ns(&topology, &topology.client_ns, move || {
            let mut stream = TcpStream::connect_timeout(&served, Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).map(|_| reply)
        });
        assert_eq!(
            outcome.unwrap_err().kind(),
            ErrorKind::ConnectionReset,
            "{served}: the client is reset"
        );
    }
    let no_listener = HandoffFailure::ALL
        .iter()
        .position(|failure| *failure == HandoffFailure::NoListener)
        .unwrap();
    common::wait_until("both failures counted", Duration::from_secs(2), || {
        wall.stats().handoff_failures[no_listener] == 2
    });
    let stats = wall.stats();
    assert_eq!(stats.listener.gauge(Gauge::SynQueueDepth), 0, "{stats:?}");
    assert_eq!(stats.handoffs_completed, 0);
}

#[test]
fn test_native_reconnect_over_a_time_wait_tuple() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let listener = service(&topology, served_v4());
    let wall = Wall::start(&topology, HandoffMode::Native, |config| {
        config.answer_syns = SynAnswerer::Synwall;
    });
    let exchange = || {
        topology.spawn_in(&topology.client_ns, || {
            lab::ping_from((CLIENT_V4, 45678).into(), served_v4())
        })
    };
    for round in 0..2 {
        let client = exchange();
        let (accepted, _) = listener.accept().expect("the service got the connection");
        lab::answer_ping(accepted);
        assert_eq!(
            client.join().unwrap().unwrap().unwrap(),
            b"ping",
            "round {round}"
        );
        lab::wait_time_wait(&topology, 45678);
    }
    // The second SYN found the TIME-WAIT socket: the kernel gave the tuple to the service's
    // listener itself (RFC 6191), as it would without synwall.
    let stats = wall.stats();
    assert_eq!(stats.listener.get(Counter::SynReceived), 1, "{stats:?}");
    assert_eq!(stats.steering.kernel_reopens, 1, "{stats:?}");
}

/// An HTTP service on 198.18.0.1:80, listening itself as it would without synwall, and
/// `synwall listen` serving that address on the lab's server interface with `extra` flags, once
/// it serves.
fn listen_in_front_of_http(
    topology: &loadgen::lab::Topology,
    extra: &[&str],
) -> (HttpServer, SynwallProcess) {
    let http = HttpServer::start_on(topology, PORT);
    let served = [
        "--interface",
        &topology.server_if,
        "--listen",
        "198.18.0.1:80",
    ];
    let args: Vec<&str> = ["listen"]
        .iter()
        .chain(&served)
        .chain(extra)
        .copied()
        .collect();
    let mut synwall = SynwallProcess::spawn(&topology.server_ns, &args);
    synwall.wait_serving();
    (http, synwall)
}

#[test]
fn test_synwall_listen_native_and_the_service_survives_its_sigkill() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let (_http, mut synwall) = listen_in_front_of_http(
        &topology,
        &["--handoff", "native", "--answer-syns", "synwall"],
    );
    assert!(
        synwall
            .log()
            .contains("; handoff native, SYNs answered by synwall ("),
        "{}",
        synwall.log()
    );
    for _ in 0..5 {
        assert_eq!(curl(&topology).expect("curl through synwall"), http_reply());
    }
    let handed = || {
        in_ns(&topology, &topology.server_ns, || {
            synwall::metrics::Scrape::fetch(synwall::metrics::DEFAULT_ENDPOINT.parse().unwrap())
                .unwrap()
                .get("synwall_handoffs_total")
        })
    };
    common::wait_until(
        "every connection went through synwall",
        Duration::from_secs(2),
        || handed() == 5.0,
    );
    let server_if = topology.server_if.clone();
    let completion_attached = move || {
        let (ifindex, _) = synwall::sys::attached::interfaces()
            .unwrap()
            .into_iter()
            .find(|(_, name)| *name == server_if)
            .unwrap();
        synwall::sys::attached::tcx_ingress_programs(ifindex)
            .unwrap()
            .iter()
            .any(|program| program.is_named(synwall::sys::native::FINISH_PROGRAM_NAME))
    };
    let attached = completion_attached.clone();
    assert!(
        in_ns(&topology, &topology.server_ns, attached),
        "the completion program is on the interface"
    );
    synwall.kill(); // SIGKILL: nothing of synwall gets to clean up
    common::wait_until(
        "the completion program went with the process",
        Duration::from_secs(2),
        || {
            let attached = completion_attached.clone();
            !in_ns(&topology, &topology.server_ns, attached)
        },
    );
    let links = topology
        .run_in(
            &topology.server_ns,
            &["ip", "-o", "link", "show", &topology.server_if],
        )
        .unwrap();
    assert!(
        !links.contains(" xdp"),
        "the XDP program went with the process: {links}"
    );
    assert_eq!(
        curl(&topology).expect("fail-open: the service answers by itself"),
        http_reply()
    );
}

/// answer-syns = kernel-first, the default: without a flood the service's own listener answers
/// the SYNs, as without synwall; a flood that fills its SYN queue makes them synwall's, which
/// answers the next client itself and hands it to the same listener.
#[test]
fn test_kernel_first_the_service_answers_until_a_flood_fills_its_syn_queue() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let listener = service(&topology, served_v4());
    let wall = Wall::start(&topology, HandoffMode::Native, |_| {});
    let exchange = |port| {
        let client = topology.spawn_in(&topology.client_ns, move || {
            lab::ping_from((CLIENT_V4, port).into(), served_v4())
        });
        let (accepted, peer) = listener.accept().expect("the service got the connection");
        assert_eq!(peer, (CLIENT_V4, port).into(), "the client's own address");
        lab::answer_ping(accepted);
        assert_eq!(client.join().unwrap().unwrap().unwrap(), b"ping");
    };

    exchange(46001);
    let stats = wall.stats();
    assert_eq!(stats.steering.kernel_answers, 1, "{stats:?}");
    assert_eq!(stats.steering.takeovers, 0, "{stats:?}");
    assert_eq!(stats.listener.get(Counter::SynReceived), 0, "{stats:?}");

    // The flood's spoofed SYNs fill the listener's SYN queue (backlog 128) before synwall
    // takes them over; the client's SYN then finds the queue full, on whichever CPU.
    syn_flood(&topology, 2_000);
    exchange(46002);
    common::wait_until("the handoff counted", Duration::from_secs(2), || {
        wall.stats().handoffs_completed == 1
    });
    let stats = wall.stats();
    assert!(stats.steering.takeovers >= 1, "{stats:?}");
    assert!(
        stats.steering.kernel_answers <= 1 + FLOOD_SYNS_THE_LISTENER_ANSWERS,
        "{stats:?}"
    );
    assert!(
        stats.listener.get(Counter::SynReceived) > 1_000,
        "{stats:?}"
    );
    assert_eq!(stats.handoffs_failed, 0, "{stats:?}");
}

/// `synwall listen` with its defaults in front of an HTTP service: without a flood the
/// service's listener answers, with one synwall takes the SYNs over, says so once in its log,
/// and serves the next client; the metrics count both.
#[test]
fn test_synwall_listen_takes_the_syns_over_when_a_flood_fills_the_services_queue() {
    if !common::require_tool("curl") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let (_http, mut synwall) = listen_in_front_of_http(&topology, &[]);
    let scrape = || {
        in_ns(&topology, &topology.server_ns, || {
            synwall::metrics::Scrape::fetch(synwall::metrics::DEFAULT_ENDPOINT.parse().unwrap())
                .unwrap()
        })
    };
    assert_eq!(curl(&topology).expect("curl, no flood"), http_reply());
    let quiet = scrape();
    let answered = |scrape: &synwall::metrics::Scrape| {
        scrape.sum("synwall_xdp_frames_total", &[("verdict", "kernel_answers")])
    };
    assert_eq!(answered(&quiet), 1.0, "{quiet:?}");
    assert_eq!(quiet.get("synwall_syn_takeovers_total"), 0.0, "{quiet:?}");

    syn_flood(&topology, 2_000);
    synwall.wait_for_log("SYN flood: the listening socket's SYN queue is full; synwall answers");
    assert_eq!(curl(&topology).expect("curl after the flood"), http_reply());
    common::wait_until("the handoff counted", Duration::from_secs(2), || {
        scrape().get("synwall_handoffs_total") >= 1.0
    });
    let flooded = scrape();
    assert!(
        flooded.get("synwall_syn_takeovers_total") >= 1.0,
        "{flooded:?}"
    );
    assert!(
        answered(&flooded) <= 1.0 + FLOOD_SYNS_THE_LISTENER_ANSWERS as f64,
        "{flooded:?}"
    );
    let log = synwall.stop();
    assert_eq!(
        log.matches("SYN flood: the listening socket's SYN queue")
            .count(),
        1,
        "{log}"
    );
}

/// The completion program on the served interface looks a segment up only within a second of
/// the steering program letting a handshake's final ACK through for the kernel: without a
/// flood synwall queues no handshake, and every segment of every connection skips the lookup.
#[test]
fn test_completion_program_looks_only_after_the_steering_program_passed_an_ack() {
    with_native_programs(|steering, native| {
        let mut buffers = EntryBuffers::default();
        let reports = || {
            let mut reports = Vec::new();
            native.take_reports(0, |report| reports.push(report.tuple));
            reports
        };

        // A handshake of the SYN queue, recorded for the kernel.
        let (first, ack) = handshake(40_001);
        native
            .expect(0, std::iter::once(first.clone()), &mut buffers)
            .unwrap();
        assert_eq!(native.finish_dry_run(&ack).unwrap(), TcxVerdict::Next);
        assert!(
            reports().is_empty(),
            "the gate is shut before any ACK passed"
        );
        // The steering program lets the ACK through for the kernel, and opens the gate: the
        // completion program now takes the handshake (whatever the kfunc makes of a test run)
        // and reports it. Should the machine stall for a second between the two runs, the gate
        // has shut again: the pair is run again.
        let mut seen = Vec::new();
        for _ in 0..3 {
            assert_eq!(steering.dry_run(&ack).unwrap(), XdpAction::Pass);
            native.finish_dry_run(&ack).unwrap();
            seen = reports();
            if !seen.is_empty() {
                break;
            }
        }
        assert_eq!(seen, [first.tuple]);
        assert!(steering.counters().unwrap().kernel_completes >= 1);

        // A second later the gate is shut again (COMPLETIONS_GATE_NS, kernel_handshake.h).
        std::thread::sleep(Duration::from_millis(1_100));
        let (second, ack) = handshake(40_002);
        native
            .expect(0, std::iter::once(second), &mut buffers)
            .unwrap();
        assert_eq!(native.finish_dry_run(&ack).unwrap(), TcxVerdict::Next);
        assert!(reports().is_empty(), "the gate shut again");
    });
}

/// The handoff program on `lo` takes only the packets of synwall's raw sockets, which carry
/// its priority: the host's other loopback traffic passes it without a lookup, even a packet
/// that matches a handoff in progress.
#[test]
fn test_handoff_program_takes_only_synwalls_packets() {
    with_native_programs(|_, native| {
        let (accepted, ack) = handshake(40_003);
        native.record_handoff(&accepted).unwrap();
        assert_eq!(
            native.handoff_dry_run(&ack, false).unwrap(),
            TcxVerdict::Next,
            "another process's packet"
        );
        // synwall's own: looked up and handed over (or refused, in a test run), not passed on.
        assert_ne!(
            native.handoff_dry_run(&ack, true).unwrap(),
            TcxVerdict::Next,
            "synwall's packet"
        );
    });
}

/// Runs `f` in the server namespace of a fresh lab, with the steering program (generic XDP)
/// and the native handoff's programs attached and a service listening on the served address.
fn with_native_programs(f: impl FnOnce(&SteeringProgram, &NativeHandoff) + Send + 'static) {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let interface = topology.server_if.clone();
    in_ns(&topology, &topology.server_ns, move || {
        let steering = SteeringProgram::attach(&interface, XdpMode::Generic, &[served_v4()])
            .expect("attaching the steering program");
        let native = NativeHandoff::attach(&steering, SynAnswerer::Synwall)
            .expect("attaching the native handoff");
        let _service = std::net::TcpListener::bind(served_v4()).unwrap();
        f(&steering, &native);
    });
}

/// A handshake to the served address from the client's port `port`, and its final ACK.
fn handshake(port: u16) -> (Accepted, Vec<u8>) {
    let client = Client {
        server: served_v4(),
        ..Client::new(&format!("{CLIENT_V4}:{port}"), 1, linux_options(1))
    };
    let accepted = Accepted {
        tuple: FourTuple {
            local: served_v4(),
            remote: client.addr,
        },
        link: client.link,
        path: HandshakePath::Queue,
        client_isn: client.isn,
        server_isn: SeqNumber(12_344),
        mss: 1460,
        window_scale: None,
        sack_permitted: false,
        timestamps: None,
        ecn: false,
        peer_window: 502,
        receive_window: 65_535,
        early_data: Vec::new(),
        handshake_duration: None,
    };
    let ack = common::frame(&client.segment(
        TcpFlags::ACK,
        accepted.peer_next_seq(),
        accepted.our_next_seq(),
    ));
    (accepted, ack)
}
