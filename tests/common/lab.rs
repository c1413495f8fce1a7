//! Privileged helpers: synwall serving inside a lab's server namespace, clients in its client
//! namespace. Included by the test crates that use them (`#[path = "common/lab.rs"] mod lab;`).
//! Network safety: only the lab's namespaces, 198.18.0.0/15 and 2001:2::/48; everything is
//! deleted when the [`Topology`] drops.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;
use synwall::device::FrameIo;

use crossbeam_channel::{Receiver, Sender};
use loadgen::lab::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, Topology};
use sha2::{Digest, Sha256};
use synwall::handoff::HandoffMode;
use synwall::server::{Server, ServerConfig, ServerStats};
use synwall::sys::tcp_info::{TcpInfo, tcp_info};
use synwall::wire::TcpOptions;

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
    /// Binds synwall on the lab's server interface (198.18.0.1, port 80), configured by
    /// `configure`, and echoes every connection. Panics when synwall fails to start.
    pub fn start(
        topology: &Topology,
        echo: Echo,
        configure: impl FnOnce(&mut ServerConfig),
    ) -> EchoServer {
        let mut config = ServerConfig::new(&topology.server_if, &[served_v4()]);
        config.handoff = HandoffMode::Repair;
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

/// `setpriv` arguments: run as nobody with exactly `caps` (names from
/// [`crate::common::CAPABILITIES`]; none at all when empty).
pub fn as_nobody_with(caps: &[&str]) -> Vec<String> {
    let caps = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|cap| format!("+{}", cap.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".to_owned(),
        "--reuid=65534".to_owned(),
        "--regid=65534".to_owned(),
        "--clear-groups".to_owned(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set={caps}"),
    ]
}

/// Runs `f` on a thread in namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(
    topology: &Topology,
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    topology
        .spawn_in(ns, f)
        .join()
        .expect("the thread in the namespace panicked")
        .expect("entering the namespace")
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// The `synwall` binary as a child process in namespace `ns`, its log (stderr) collected;
/// killed on drop.
pub struct SynwallProcess {
    child: Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Reads stderr into `log` until the process closes it.
    reader: Option<JoinHandle<()>>,
}

impl SynwallProcess {
    pub fn spawn(ns: &str, args: &[&str]) -> SynwallProcess {
        SynwallProcess::spawn_with(ns, &[], args)
    }

    /// Runs it under `prefix` (for example `setpriv ...`) inside the namespace.
    pub fn spawn_with(ns: &str, prefix: &[&str], args: &[&str]) -> SynwallProcess {
        let mut child = synwall_command(ns, prefix, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start synwall");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let reader = thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        SynwallProcess {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a line of its log contains `text`; panics with the log if it exits first or
    /// 30 s pass.
    pub fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
        {
            let exited = self.child.try_wait().expect("waiting for synwall");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no {text:?} from synwall ({exited:?}): {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until it serves.
    pub fn wait_serving(&mut self) {
        self.wait_for_log("serving");
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Stops it with SIGTERM, as systemd does, and returns its log.
    pub fn stop(&mut self) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "synwall did not stop on SIGTERM: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        // The reader thread takes the last lines, up to the end of the closed pipe.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader");
        }
        self.log()
    }

    /// Kills it with SIGKILL: nothing of it gets to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SynwallProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// --- synwall listen, the binary, and what stands around it -----------------------------

pub const UPSTREAM_PORT: u16 = 8080;

pub fn upstream() -> String {
    format!("{SERVER_V4}:{UPSTREAM_PORT}")
}

/// The arguments of `synwall listen` on `interface`, proxying 198.18.0.1:80 to `upstream` in
/// repair mode (unless `extra` names another `--handoff`), followed by `extra`.
pub fn listen_args<'a>(interface: &'a str, upstream: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "listen",
        "--interface",
        interface,
        "--listen",
        "198.18.0.1:80",
        "--upstream",
        upstream,
    ];
    if !extra.contains(&"--handoff") {
        args.extend(["--handoff", "repair"]);
    }
    args.extend_from_slice(extra);
    args
}

/// `synwall listen` on the lab's server interface (see [`listen_args`]), serving.
pub fn listen(topology: &Topology, upstream: &str, extra: &[&str]) -> SynwallProcess {
    listen_behind(topology, &[], upstream, extra)
}

/// Like [`listen`], run through the command `prefix` (`setpriv ...`).
pub fn listen_behind(
    topology: &Topology,
    prefix: &[&str],
    upstream: &str,
    extra: &[&str],
) -> SynwallProcess {
    let args = listen_args(&topology.server_if, upstream, extra);
    let mut synwall = SynwallProcess::spawn_with(&topology.server_ns, prefix, &args);
    synwall.wait_serving();
    synwall
}

/// Runs `synwall` to completion in namespace `ns` (for start-up errors).
pub fn synwall_output(ns: &str, prefix: &[&str], args: &[&str]) -> Output {
    synwall_command(ns, prefix, args)
        .output()
        .expect("running synwall")
}

/// `synwall args` in namespace `ns`, under `prefix` (for example `setpriv ...`).
fn synwall_command(ns: &str, prefix: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns])
        .args(prefix)
        .arg(env!("CARGO_BIN_EXE_synwall"))
        .args(args);
    command
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

/// A TCP client of the test's own making in the lab's client namespace, over AF_PACKET: its
/// SYN carries exactly the options the test chooses, from a source address in the spoofed
/// ranges (routed through the client namespace, whose kernel owns no such address and so
/// never answers the server's segments itself).
pub struct CraftedClient {
    socket: synwall::sys::PacketSocket,
    link: synwall::wire::LinkAddrs,
}

impl CraftedClient {
    /// The link addresses of frames from the client to the server.
    pub fn link(topology: &Topology) -> synwall::wire::LinkAddrs {
        synwall::wire::LinkAddrs {
            src: topology
                .mac(&topology.client_ns, &topology.client_if)
                .unwrap(),
            dst: topology
                .mac(&topology.server_ns, &topology.server_if)
                .unwrap(),
            vlan: None,
        }
    }

    /// Opens a packet socket on the client interface `ifname`, sending with `link` (see
    /// [`CraftedClient::link`]); run it on a thread in the client namespace.
    pub fn open(ifname: &str, link: synwall::wire::LinkAddrs) -> CraftedClient {
        let config = synwall::sys::PacketSocketConfig {
            receive: true,
            ..Default::default()
        };
        CraftedClient {
            socket: synwall::sys::PacketSocket::open(ifname, config).unwrap(),
            link,
        }
    }

    /// Sends `client`'s SYN to `server`, waits for the SYN-ACK and answers it with the final
    /// ACK carrying `payload`. Returns the SYN-ACK.
    pub fn handshake(
        &mut self,
        client: &crate::common::Client,
        server: SocketAddr,
        payload: &[u8],
    ) -> synwall::wire::TcpRepr<'static> {
        let client = crate::common::Client {
            link: self.link,
            server,
            ..*client
        };
        self.send(&client.syn());
        let syn_ack = self.receive(&client);
        // A real stack's receive window: 64 KiB, scaled when both sides scale.
        let window = if syn_ack.options.window_scale.is_some() {
            502
        } else {
            64240
        };
        self.send(&synwall::wire::TcpRepr {
            window,
            ..client.ack(&syn_ack, payload)
        });
        syn_ack
    }

    /// Sends `client`'s SYN to `server`, with the 802.1Q tag of `client.link` if it has one;
    /// returns the answer to it within `wait`, if any.
    pub fn syn(
        &mut self,
        client: &crate::common::Client,
        server: SocketAddr,
        wait: Duration,
    ) -> Option<synwall::wire::TcpRepr<'static>> {
        let client = crate::common::Client {
            link: synwall::wire::LinkAddrs {
                vlan: client.link.vlan,
                ..self.link
            },
            server,
            ..*client
        };
        self.send(&client.syn());
        self.answer(&client, wait)
    }

    fn send(&mut self, repr: &synwall::wire::TcpRepr<'_>) {
        let mut frame = vec![0; synwall::wire::emitted_len(repr)];
        synwall::wire::emit(repr, &mut frame).unwrap();
        self.send_frame(&frame);
    }

    /// Sends a frame the test made itself.
    pub fn send_frame(&mut self, frame: &[u8]) {
        let sent = self
            .socket
            .transmit(1, |tx| {
                tx[..frame.len()].copy_from_slice(frame);
                Some(frame.len())
            })
            .unwrap();
        assert_eq!(sent, 1, "the frame was sent");
        self.socket.flush().unwrap();
    }

    /// `client`'s SYN to `server` as a frame, from this client's link addresses.
    pub fn syn_frame(&self, client: &crate::common::Client, server: SocketAddr) -> Vec<u8> {
        let client = crate::common::Client {
            link: self.link,
            server,
            ..*client
        };
        crate::common::frame(&client.syn())
    }

    /// The next segment from the server to `client`, within 5 s.
    fn receive(&mut self, client: &crate::common::Client) -> synwall::wire::TcpRepr<'static> {
        self.answer(client, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no answer to {client:?}"))
    }

    /// The next segment from the server to `client` within `wait`, if any.
    pub fn answer(
        &mut self,
        client: &crate::common::Client,
        wait: Duration,
    ) -> Option<synwall::wire::TcpRepr<'static>> {
        let deadline = Instant::now() + wait;
        let to_client = synwall::wire::Endpoints::new([client.addr]);
        let mut reply = None;
        while reply.is_none() && Instant::now() < deadline {
            self.socket.wait(Duration::from_millis(50)).unwrap();
            self.socket
                .receive(64, |rx, _| {
                    if let synwall::wire::Parsed::Ours(repr) = synwall::wire::parse(rx, &to_client)
                        && repr.src == client.server
                        && reply.is_none()
                    {
                        reply = Some(crate::common::detach(repr));
                    }
                    None
                })
                .unwrap();
        }
        reply
    }
}

// --- Crafted handshakes against synwall and against the kernel's own listener ------------

/// A port the kernel's own listener serves, for comparison.
pub const KERNEL_PORT: u16 = 81;

/// A listening socket at `address` in the server namespace whose accept gives up after 10 s.
pub fn service(topology: &Topology, address: SocketAddr) -> TcpListener {
    in_ns(topology, &topology.server_ns, move || {
        let listener = TcpListener::bind(address).unwrap();
        socket2::SockRef::from(&listener)
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        listener
    })
}

/// The served address and the client's own address of `family` (4 or 6).
pub fn addresses(family: u8) -> (SocketAddr, IpAddr) {
    match family {
        4 => (served_v4(), CLIENT_V4.into()),
        _ => (served_v6(), CLIENT_V6.into()),
    }
}

/// Makes the server's kernel send complete TCP checksums, which the crafted client checks.
pub fn full_checksums_from_the_server(topology: &Topology) {
    topology
        .run_in(
            &topology.server_ns,
            &["ethtool", "-K", &topology.server_if, "tx", "off"],
        )
        .unwrap();
}

/// A crafted client of `family` with source port `port`, from the spoofed ranges.
pub fn crafted(family: u8, port: u16, isn: u32, options: TcpOptions) -> crate::common::Client {
    let address = match family {
        4 => format!("198.18.200.1:{port}"),
        _ => format!("[2001:2:0:8000::1]:{port}"),
    };
    crate::common::Client::new(&address, isn, options)
}

/// What the kernel socket of one crafted handshake negotiated: through synwall to the service
/// on port 80, and straight to the kernel's own listener on [`KERNEL_PORT`].
pub struct Negotiated {
    pub synwall: TcpInfo,
    pub kernel: TcpInfo,
}

/// Runs the handshake of a client with `options` against both listeners of `family` and reads
/// each accepted socket's TCP_INFO, after checking that the final ACK's data arrived.
pub fn negotiate(
    topology: &Topology,
    accept_synwall: &dyn Fn() -> TcpStream,
    kernel: &TcpListener,
    family: u8,
    attempt: u16,
    options: TcpOptions,
) -> Negotiated {
    let (served, _) = addresses(family);
    let kernel_address = SocketAddr::new(served.ip(), KERNEL_PORT);
    let isn = 0xfff0_0000 + u32::from(attempt) * 1000;
    let (to_synwall, to_kernel) = (
        crafted(family, 40000 + attempt, isn, options),
        crafted(family, 50000 + attempt, isn, options),
    );
    let (ifname, link) = (topology.client_if.clone(), CraftedClient::link(topology));
    in_ns(topology, &topology.client_ns, move || {
        let mut client = CraftedClient::open(&ifname, link);
        client.handshake(&to_synwall, served, b"early");
        client.handshake(&to_kernel, kernel_address, b"early");
    });
    let mut infos = Vec::new();
    for mut stream in [accept_synwall(), kernel.accept().unwrap().0] {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut early = [0u8; 5];
        stream.read_exact(&mut early).expect("the final ACK's data");
        assert_eq!(&early, b"early");
        infos.push(tcp_info(&stream).unwrap());
    }
    Negotiated {
        synwall: infos[0],
        kernel: infos[1],
    }
}

/// The SYN layouts of real stacks, and none at all.
pub fn syn_layouts() -> [(&'static str, TcpOptions); 4] {
    [
        ("linux", crate::common::linux_options(1)),
        ("windows", crate::common::windows_options()),
        ("macos", crate::common::macos_options(1)),
        ("no options", TcpOptions::default()),
    ]
}

/// Polls `ready` every 20 ms until it returns true; fails, naming `what`, after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the server namespace's kernel holds a connection from client port `port` in
/// TIME-WAIT (any family): after the server closed first, the client's FIN may still be on
/// its way. Fails after 5 s.
pub fn wait_time_wait(topology: &Topology, port: u16) {
    let filter = format!("( dport = :{port} )");
    let what = format!("a server-side TIME-WAIT socket for client port {port}");
    wait_until(&what, Duration::from_secs(5), || {
        topology
            .run_in(
                &topology.server_ns,
                &["ss", "-tan", "state", "time-wait", &filter],
            )
            .unwrap()
            .contains(&format!(":{port}"))
    });
}
