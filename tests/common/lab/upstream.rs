//! What stands around synwall in the lab: upstream services in the server namespace
//! ([`HttpServer`], [`EchoUpstream`]) on the [`UPSTREAM_PORT`], a client ([`curl`]) and a SYN
//! flood ([`syn_flood`]) from the client namespace.

use std::io;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use loadgen::lab::{SERVER_V4, Topology};
use synwall::device::FrameIo;

use super::served_v4;

pub const UPSTREAM_PORT: u16 = 8080;

pub fn upstream() -> String {
    format!("{SERVER_V4}:{UPSTREAM_PORT}")
}

/// A static HTTP server (python3) in the server namespace; killed on drop.
pub struct HttpServer {
    child: Child,
    /// The directory it serves, removed on drop.
    _root: tempfile::TempDir,
}

impl HttpServer {
    /// Serves `body` as /index.html on the upstream port.
    pub fn start(topology: &Topology, body: &[u8]) -> HttpServer {
        HttpServer::start_on(topology, UPSTREAM_PORT, body)
    }

    /// Serves `body` as /index.html on `port` of 198.18.0.1.
    pub fn start_on(topology: &Topology, port: u16, body: &[u8]) -> HttpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topology.server_ns,
                "python3",
                "-m",
                "http.server",
            ])
            .args(["--bind", &SERVER_V4.to_string(), &port.to_string()])
            .arg("--directory")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let port_open = || {
            topology
                .run_in(
                    &topology.server_ns,
                    &["ss", "-tln", &format!("( sport = :{port} )")],
                )
                .is_ok_and(|out| out.contains(&format!(":{port}")))
        };
        while !port_open() {
            assert!(Instant::now() < deadline, "the HTTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { child, _root: dir }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Sends `count` SYNs to port 80 from spoofed sources in 198.18.128.0/17, from the client
/// namespace over AF_PACKET; bounded in packets and to 30 s.
pub fn syn_flood(topology: &Topology, count: usize) {
    let client_mac = topology
        .mac(&topology.client_ns, &topology.client_if)
        .unwrap();
    let server_mac = topology
        .mac(&topology.server_ns, &topology.server_if)
        .unwrap();
    let ifname = topology.client_if.clone();
    topology
        .spawn_in(&topology.client_ns, move || {
            let mut socket = synwall::sys::PacketSocket::open(&ifname, Default::default()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut sent = 0;
            let mut next = 0u32;
            while sent < count && Instant::now() < deadline {
                sent += socket
                    .transmit(count - sent, |tx| {
                        next += 1;
                        let source = format!(
                            "198.18.{}.{}:{}",
                            128 + (next >> 8) % 128,
                            next % 256,
                            1024 + next % 60000
                        );
                        let mut client = crate::common::Client::new(
                            &source,
                            next.wrapping_mul(2_654_435_761),
                            crate::common::linux_options(next),
                        );
                        client.link = synwall::wire::LinkAddrs {
                            src: client_mac,
                            dst: server_mac,
                            vlan: None,
                        };
                        client.server = served_v4();
                        synwall::wire::emit(&client.syn(), tx).ok()
                    })
                    .unwrap();
                socket.flush().unwrap();
            }
        })
        .join()
        .unwrap()
        .unwrap();
}
