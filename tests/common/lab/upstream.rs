//! What stands around synwall in the lab: upstream services in the server namespace
//! ([`HttpServer`], [`EchoUpstream`]) on the [`UPSTREAM_PORT`], a client ([`curl`]) and a SYN
//! flood ([`syn_flood`]) from the client namespace.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use loadgen::lab::service::{self, REPLY_MARK};
use loadgen::lab::{SERVER_V4, Topology};

use super::served_v4;

pub const UPSTREAM_PORT: u16 = 8080;

pub fn upstream() -> String {
    format!("{SERVER_V4}:{UPSTREAM_PORT}")
}

/// The lab's HTTP service (loadgen's) in the server namespace; stopped on drop. Every reply
/// carries [`REPLY_MARK`].
pub struct HttpServer(service::Running);

impl HttpServer {
    /// On the upstream port.
    pub fn start(topology: &Topology) -> HttpServer {
        HttpServer::start_on(topology, UPSTREAM_PORT)
    }

    /// On `port` of 198.18.0.1: listening when this returns.
    pub fn start_on(topology: &Topology, port: u16) -> HttpServer {
        let listener = topology
            .spawn_in(&topology.server_ns, move || {
                std::net::TcpListener::bind((SERVER_V4, port))
            })
            .join()
            .expect("the binding thread")
            .expect("entering the server namespace")
            .expect("binding the HTTP service");
        HttpServer(service::Running::start(
            listener,
            service::ServiceConfig::default(),
        ))
    }

    /// On a Unix socket at `path` (no namespace: the path is the same in every one), reading a
    /// PROXY header first on each connection.
    pub fn start_unix(path: &std::path::Path) -> HttpServer {
        let listener = std::os::unix::net::UnixListener::bind(path).expect("binding the service");
        let config = service::ServiceConfig {
            proxy_protocol: true,
            ..service::ServiceConfig::default()
        };
        HttpServer(service::Running::start(listener, config))
    }

    /// What it has counted so far.
    pub fn counters(&self) -> &service::ServiceCounters {
        self.0.counters()
    }
}

/// What [`curl`] gets from an [`HttpServer`].
pub fn http_reply() -> String {
    format!("{REPLY_MARK}\n")
}

pub fn curl(topology: &Topology) -> std::io::Result<String> {
    topology.run_in(
        &topology.client_ns,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://198.18.0.1/index.html",
        ],
    )
}

/// An echo service on the upstream port in the server namespace, until dropped.
pub struct EchoUpstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EchoUpstream {
    /// An echo service on the upstream port.
    pub fn start(topology: &Topology) -> EchoUpstream {
        EchoUpstream::start_on(topology, UPSTREAM_PORT)
    }

    /// An echo service on `port` of 198.18.0.1.
    pub fn start_on(topology: &Topology, port: u16) -> EchoUpstream {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let (bound_tx, bound_rx) = crossbeam_channel::bounded(1);
        let thread = topology.spawn_in(&topology.server_ns, move || {
            let listener = std::net::TcpListener::bind((SERVER_V4, port)).unwrap();
            listener.set_nonblocking(true).unwrap();
            bound_tx.send(()).unwrap();
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        thread::spawn(move || {
                            let mut reader = stream.try_clone().unwrap();
                            let _ = io::copy(&mut reader, &mut stream);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        bound_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the echo upstream started");
        EchoUpstream {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The most SYNs a listening socket with the default backlog answers itself, in a
/// [`syn_flood`] and besides the client's own SYN, before synwall takes the SYNs over: its
/// SYN queue (128 entries; the kernel answers the 129th with a cookie, which is what the XDP
/// program sees as "full"), and one receive batch more. The SYNs of a batch (the veth's NAPI
/// budget, 64) all pass the XDP program before the kernel queues the first, so the program
/// finds the queue full only in the batch after it filled (see `kernel_answers` in
/// steer.bpf.c). A CI run measured 134.
pub const FLOOD_SYNS_THE_LISTENER_ANSWERS: u64 = 129 + 64;

/// Sends `count` SYNs to port 80 from loadgen's spoofed sources (198.18.128.0/17), from the
/// client namespace over AF_PACKET: loadgen itself, run in this process; bounded in packets
/// and to 30 s.
pub fn syn_flood(topology: &Topology, count: usize) {
    use clap::Parser;
    let (count_arg, target) = (count.to_string(), served_v4().to_string());
    let args = [
        "loadgen",
        "--netns",
        &topology.client_ns,
        "--interface",
        &topology.client_if,
        "--target",
        &target,
        "--rate",
        "max",
        "--packets",
        &count_arg,
        "--duration",
        "30s",
        "--tx",
        "packet",
    ];
    let config = loadgen::Args::try_parse_from(args)
        .expect("loadgen's arguments")
        .into_config()
        .expect("a flood loadgen accepts");
    // loadgen enters the client namespace itself, on this fresh thread.
    let summary = thread::spawn(move || {
        let stop = Arc::new(AtomicBool::new(false));
        loadgen::run(&config, &stop, io::sink(), io::sink())
    })
    .join()
    .expect("the flood's thread")
    .expect("the flood");
    assert_eq!(summary.sent.syn, count as u64, "{summary:?}");
}
