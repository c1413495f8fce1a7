//! synwall as a library in the lab's server namespace: [`EchoServer`], the library's server
//! with an echo application behind it (and [`echo_roundtrip`], its client), and [`Wall`],
//! the library's server alone, asked for its statistics and connections by the test.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use loadgen::lab::Topology;
use synwall::handoff::HandoffMode;
use synwall::server::{Server, ServerConfig, ServerStats};
use synwall::sys::SynAnswerer;

use super::{served_v4, served_v6, sha256};

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
    /// Binds synwall on the lab's server interface (198.18.0.1, port 80), configured by
    /// `configure`, and echoes every connection. Panics when synwall fails to start.
    pub fn start(
        topology: &Topology,
        echo: Echo,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> EchoServer {
        let mut config = ServerConfig::new(&topology.server_if, &[served_v4()]);
        config.handoff = HandoffMode::Repair;
        // synwall's own handshakes and handoffs are what these tests look at; the kernel's
        // listener answering without a flood has its own (tests/repair.rs).
        config.answer_syns = SynAnswerer::Synwall;
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
    Ok(sha256(&echoed))
}

/// What a test asks of the synwall a [`Wall`] runs.
enum WallRequest {
    Stats(Sender<ServerStats>),
    /// The next connection (repair mode) within the wait.
    Accept(Duration, Sender<Option<synwall::handoff::Connection>>),
}

/// synwall (the library's [`Server`]) in the lab's server namespace, held by a thread there
/// until dropped; a service of the test's own listens beside it (native mode) or takes its
/// connections with [`Wall::accept`] (repair mode).
pub struct Wall {
    stop: Arc<AtomicBool>,
    requests: Sender<WallRequest>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Wall {
    /// Binds synwall on the lab's server interface, serving 198.18.0.1 and 2001:2::1 on port
    /// 80 in `mode`, configured further by `configure`. Panics when synwall fails to start.
    pub fn start(
        topology: &Topology,
        mode: HandoffMode,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> Wall {
        let mut config = ServerConfig::new(&topology.server_if, &[served_v4(), served_v6()]);
        config.handoff = mode;
        if mode == HandoffMode::Repair {
            // As for EchoServer.
            config.answer_syns = SynAnswerer::Synwall;
        }
        configure(&mut config);
        let stop = Arc::new(AtomicBool::new(false));
        let (requests, requests_rx) = crossbeam_channel::unbounded::<WallRequest>();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let stopping = Arc::clone(&stop);
        let thread = topology.spawn_in(&topology.server_ns, move || {
            let server = match Server::bind(config) {
                Ok(server) => server,
                Err(error) => {
                    let _ = started_tx.send(Err(error.to_string()));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            while !stopping.load(Ordering::Relaxed) {
                match requests_rx.recv_timeout(Duration::from_millis(10)) {
                    Ok(WallRequest::Stats(reply)) => {
                        let _ = reply.send(server.stats());
                    }
                    Ok(WallRequest::Accept(wait, reply)) => {
                        let _ = reply.send(server.accept_timeout(wait).ok().flatten());
                    }
                    Err(_) => {}
                }
            }
        });
        let started: Result<(), String> = started_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("synwall did not start in time");
        started.expect("synwall failed to start");
        Wall {
            stop,
            requests,
            thread: Some(thread),
        }
    }

    pub fn stats(&self) -> ServerStats {
        let (reply, answer) = crossbeam_channel::bounded(1);
        self.requests
            .send(WallRequest::Stats(reply))
            .expect("server thread gone");
        answer
            .recv_timeout(Duration::from_secs(5))
            .expect("no stats")
    }

    /// The next connection synwall built (repair mode), waiting up to 10 s.
    pub fn accept(&self) -> Option<synwall::handoff::Connection> {
        let (reply, answer) = crossbeam_channel::bounded(1);
        let wait = Duration::from_secs(10);
        self.requests
            .send(WallRequest::Accept(wait, reply))
            .expect("server thread gone");
        answer.recv_timeout(wait * 2).expect("no answer")
    }
}

impl Drop for Wall {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
