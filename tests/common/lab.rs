//! Privileged helpers: synwall serving inside a lab's server namespace, clients in its client
//! namespace. Included by the test crates that use them (`#[path = "common/lab.rs"] mod lab;`).
//! Network safety: only the lab's namespaces and 198.18.0.0/15 (and the ULA that exists only
//! inside them); everything is deleted when the [`Topology`] drops.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use sha2::{Digest, Sha256};
use synwall::lab::{SERVER_V4, SERVER_V6, Topology};
use synwall::server::{Server, ServerConfig, ServerStats};

pub const PORT: u16 = 80;

pub fn served_v4() -> SocketAddr {
    (SERVER_V4, PORT).into()
}

pub fn served_v6() -> SocketAddr {
    (SERVER_V6, PORT).into()
}

/// What the echo application does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Echo everything until the client closes its half, then close.
    UntilEof,
    /// Echo one read's worth, then close first (the server side goes to TIME-WAIT).
    OnceThenClose,
}

/// synwall serving an echo application inside the lab's server namespace.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    accepting: Arc<AtomicBool>,
    stats_requests: Sender<Sender<ServerStats>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl EchoServer {
    /// Binds synwall on the lab's server interface (IPv4 and IPv6, port 80), configured by
    /// `configure`, and echoes every connection. Panics when synwall fails to start.
    pub fn start(
        topology: &Topology,
        echo: Echo,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> EchoServer {
        let mut config = ServerConfig::new(&topology.server_if, &[served_v4(), served_v6()]);
        config.workers = 2;
        configure(&mut config);
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = Arc::new(AtomicBool::new(true));
        let (stats_requests, stats_rx) = crossbeam_channel::unbounded();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let (stop2, accepting2) = (Arc::clone(&stop), Arc::clone(&accepting));
        let thread = topology.spawn_in(&topology.server_ns, move || {
            serve(config, echo, &stop2, &accepting2, &stats_rx, &started_tx);
        });
        let started: Result<(), String> = started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("synwall did not start in time");
        started.expect("synwall failed to start");
        EchoServer {
            stop,
            accepting,
            stats_requests,
            thread: Some(thread),
        }
    }

    /// Stops or resumes taking connections from synwall (to fill its queues).
    pub fn set_accepting(&self, accepting: bool) {
        self.accepting.store(accepting, Ordering::Relaxed);
    }

    pub fn stats(&self) -> ServerStats {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.stats_requests.send(reply).expect("server thread gone");
        answer
            .recv_timeout(Duration::from_secs(5))
            .expect("no stats")
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    config: ServerConfig,
    echo: Echo,
    stop: &AtomicBool,
    accepting: &AtomicBool,
    stats_requests: &Receiver<Sender<ServerStats>>,
    started: &Sender<Result<(), String>>,
) {
    let server = match Server::bind(config) {
        Ok(server) => server,
        Err(error) => {
            let _ = started.send(Err(error.to_string()));
            return;
        }
    };
    let _ = started.send(Ok(()));
    while !stop.load(Ordering::Relaxed) {
        for reply in stats_requests.try_iter() {
            let _ = reply.send(server.stats());
        }
        if !accepting.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Ok(Some(connection)) = server.accept_timeout(Duration::from_millis(10)) else {
            continue;
        };
        thread::spawn(move || {
            let mut stream = connection.stream;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buffer[..n]).is_err() || echo == Echo::OnceThenClose {
                            break;
                        }
                    }
                }
            }
        });
    }
}

/// Connects to `addr` (3 s, one SYN retransmission), sends `payload`, closes its half and reads
/// the echo to the end. Returns the SHA-256 of what came back.
pub fn echo_roundtrip(addr: SocketAddr, payload: &[u8]) -> io::Result<[u8; 32]> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut writer = stream.try_clone()?;
    let payload = payload.to_vec();
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(&payload)?;
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut echoed = Vec::new();
    stream.read_to_end(&mut echoed)?;
    sender.join().expect("sender panicked")?;
    Ok(Sha256::digest(&echoed).into())
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The `synwall` binary as a child process in namespace `ns`; killed on drop.
pub struct SynwallProcess(pub Child);

impl SynwallProcess {
    pub fn spawn(ns: &str, args: &[&str]) -> SynwallProcess {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_synwall")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start synwall");
        SynwallProcess(child)
    }

    /// Waits until synwall logs that it serves (or fails).
    pub fn wait_serving(&mut self) {
        let stderr = self.0.stderr.take().expect("stderr is piped");
        let (lines_tx, lines_rx) = crossbeam_channel::unbounded();
        thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines_tx.send(line);
            }
        });
        let mut seen = Vec::new();
        while let Ok(line) = lines_rx.recv_timeout(Duration::from_secs(30)) {
            if line.contains("serving") {
                return;
            }
            seen.push(line);
        }
        panic!("synwall did not start: {}", seen.join("\n"));
    }
}

impl Drop for SynwallProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
