//! The server side of one lab run: the built-in [`service`] alone (the kernel's own listener),
//! behind synwall (the library [`Server`]), or behind the kernel's XDP SYN proxy
//! ([`XdpSynProxyPeer`]), in the server namespace, on the server CPU, serving the server's
//! address of the run's family ([`Family`](crate::lab::topology::Family)) on [`PORT`].
//!
//! The service always accepts from a kernel listening socket of its own. With synwall in
//! native handoff it listens on the served port, and synwall hands it every connection; in
//! repair mode it listens on [`UPSTREAM_PORT`] (or, with `--upstream unix`, on a Unix stream
//! socket in the temporary directory, named after the run's server namespace and removed when
//! the service stops) and synwall's [`Proxy`] joins each connection to it, announcing the
//! client with a PROXY protocol v2 header, which the service reads.
//!
//! One thread enters the server namespace, pins itself to the server CPU (so every thread it
//! starts, synwall's handoff workers and the proxy's, inherits that CPU), starts the
//! listener and serves until [`ServerSide`] is dropped; the receive work is placed on the same
//! CPU ([`placement`]). Every target gets the same service, the same backlog (4096) and the
//! same SYN-queue size (4096), and cookies when the SYN queue is full (tcp_syncookies=1 for
//! the kernel, with tcp_no_metrics_save=1 and tcp_metrics flushed, so no peer is "known").
//! The XDP SYN proxy's listener gets the kernel's settings, then the proxy's own
//! (tcp_syncookies=2, see [`XdpSynProxyPeer`]). These settings are the same over IPv6: the
//! kernel's `net.ipv4.tcp_*` settings govern TCP over both families, and the flush empties
//! both families' metrics.
//!
//! A [`Sample`] also takes the server CPU's times (/proc/stat), from which the report makes the
//! server CPU's busy time per SYN-ACK.
//!
//! Dropping a [`ServerSide`] stops the service, joins its thread and then drops the server,
//! which detaches synwall's XDP program, or the XDP SYN proxy's programs; it must go before the
//! [`Topology`].

use std::collections::BTreeMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::cli::{KernelRx, LabConfig, LabHandoff, LabUpstream, LabXdpMode, Target};
use crate::lab::error::LabError;
use crate::lab::placement::{self, CpuTimes};
use crate::lab::procnet::{Frames, KERNEL_COUNTERS, ProcNet, kernel_mib};
use crate::lab::service::{self, ServiceConfig, ServiceCounters, ServiceListener};
use crate::lab::topology::{Family, Topology};
use crate::lab::xdp_synproxy::{PassProgram, XdpSynProxyPeer};
use synwall::counters::{Counter, Gauge};
use synwall::handoff::HandoffMode;
use synwall::proxy::{Proxy, ProxyConfig, ProxyProtocol, Upstream};
use synwall::server::{Server, ServerConfig, syns_answered_by};
use synwall::shutdown::Shutdown;
use synwall::sys::{XdpMode, affinity};

/// The served port.
pub const PORT: u16 = 80;
/// Where the service listens behind synwall's proxy (repair mode).
pub const UPSTREAM_PORT: u16 = 8080;
/// Accept backlog of both targets (synwall's default, the kernel's somaxconn).
const BACKLOG: usize = 4096;
/// Connections synwall's proxy joins at once (repair mode): its default.
const PROXIED: usize = 4096;
/// How long the server side may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long synwall's counters are left to settle before they are read: many times the
/// shard's longest wait before it counts a handshake the kernel completed
/// (`synwall::shard::RETIRE_EVERY`), for a VM that stalls.
const COUNTERS_SETTLE: Duration = Duration::from_millis(100);

/// The server side's figures at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// Frames through the server's veth.
    pub frames: Frames,
    /// The server CPU's times since boot.
    pub server_cpu: CpuTimes,
    /// SYN-ACKs with cookies sent so far.
    pub cookies_sent: u64,
    /// Connections in the SYN queue now.
    pub syn_queue: u64,
    /// Connections the service accepted so far, and how many of them came from spoofed
    /// sources.
    pub accepted: u64,
    pub forged: u64,
    /// Connections the service closed unanswered (too many at once).
    pub turned_away: u64,
}

/// See the module documentation.
pub struct ServerSide {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<io::Result<()>>>>,
    service: Arc<ServiceCounters>,
    procnet: ProcNet,
    /// The server CPU.
    cpu: usize,
    /// synwall, shared with the serving thread (None for the other targets).
    synwall: Option<Arc<Server>>,
    /// The XDP SYN proxy (None for the other targets).
    peer: Option<XdpSynProxyPeer>,
    /// The pass program on the server veth (`--kernel-rx xdp-pass`, the kernel target).
    pass: Option<PassProgram>,
    /// Where the server side runs, for the report.
    pub placement: String,
}

impl ServerSide {
    /// Starts `target` on `topology` with the CPU placement of `config`.
    pub fn start(
        topology: &Topology,
        config: &LabConfig,
        target: Target,
    ) -> Result<ServerSide, LabError> {
        let cpu = config.server_cpu;
        let receive = Receive::place(topology, config, target)?;
        if target != Target::Synwall {
            prepare_kernel(topology).map_err(LabError::Kernel)?;
        }
        let served = SocketAddr::new(config.family.server(), PORT);
        let peer = match target {
            Target::XdpSynproxy => Some(XdpSynProxyPeer::start(topology, served)?),
            Target::Synwall | Target::Kernel => None,
        };
        let pass = match receive {
            Receive::PassNapi => Some(PassProgram::attach(
                topology,
                &topology.server_ns,
                &topology.server_if,
                served,
            )?),
            _ => None,
        };
        // After the peer's rules, which bring nftables synproxy's counters.
        let procnet = ProcNet::open(topology)?;
        let stop = Arc::new(AtomicBool::new(false));
        let service = Arc::new(ServiceCounters::default());
        let (started_tx, started) = crossbeam_channel::bounded(1);
        let thread = {
            let (stop, service) = (Arc::clone(&stop), Arc::clone(&service));
            let (interface, config) = (topology.server_if.clone(), config.clone());
            let unix_upstream = std::env::temp_dir().join(format!("{}.sock", topology.server_ns));
            topology.spawn_in(&topology.server_ns, move || {
                affinity::pin_current_thread(cpu)?;
                let opened = Listening::open(target, &interface, &config, unix_upstream);
                let listening = match opened {
                    Ok(listening) => listening,
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                        return Ok(());
                    }
                };
                let _ = started_tx.send(Ok(listening.synwall.clone()));
                serve(listening, &stop, &service)
            })
        };
        let mut side = ServerSide {
            stop,
            thread: Some(thread),
            service,
            procnet,
            cpu,
            synwall: None,
            peer,
            pass,
            placement: String::new(),
        };
        side.synwall = match started.recv_timeout(START_TIMEOUT) {
            Ok(started) => started?,
            Err(_) => return Err(side.failure()),
        };
        let receive = receive.finish(topology, config)?;
        side.placement = side.describe_placement(target, config, &receive);
        Ok(side)
    }

    /// Where each part of `target`'s server side runs, for the report; `receive`: where its
    /// receive work runs.
    fn describe_placement(&self, target: Target, config: &LabConfig, receive: &str) -> String {
        let cpu = self.cpu;
        let listener = self.listener_name(target, config);
        let shard = if target == Target::Synwall {
            " and synwall shard"
        } else {
            ""
        };
        let queues = match config.queues {
            1 => String::new(),
            queues => format!(
                "; {queues} queues on the veth, each one's receive work{shard} on CPU {cpu}: a \
                 correctness run, two cores cannot show scaling"
            ),
        };
        format!("{listener} and the service on CPU {cpu}; {receive}{queues}")
    }

    /// What answers `target`'s handshakes.
    fn listener_name(&self, target: Target, config: &LabConfig) -> String {
        match (target, config.handoff) {
            (Target::Synwall, LabHandoff::Native) => format!(
                "synwall's fast path ({} XDP, native handoff, SYNs answered by {})",
                self.xdp_mode_name().unwrap_or("no"),
                syns_answered_by(HandoffMode::Native, config.answer_syns.answerer())
            ),
            (Target::Synwall, LabHandoff::Repair) => format!(
                "synwall's fast path ({} XDP, SYNs answered by {}), handoff workers (repair) \
                 and proxy (to a {} upstream)",
                self.xdp_mode_name().unwrap_or("no"),
                syns_answered_by(HandoffMode::Repair, config.answer_syns.answerer()),
                config.upstream.name()
            ),
            (Target::Kernel, _) if self.pass.is_some() => {
                "the kernel's listener (tcp_syncookies=1), a do-nothing XDP program on its veth"
                    .to_owned()
            }
            (Target::Kernel, _) => "the kernel's listener (tcp_syncookies=1)".to_owned(),
            (Target::XdpSynproxy, _) => {
                let caveat = match config.family {
                    Family::V4 => "",
                    // See the xdp_synproxy module.
                    Family::V6 => {
                        " (over IPv6 nftables synproxy drops segments whose checksum was not \
                         offloaded: no forged ACK of the flood reaches its check)"
                    }
                };
                format!(
                    "the XDP SYN proxy (native XDP: the kernel's cookies by XDP_TX), nftables \
                     synproxy{caveat} and the kernel's listener (tcp_syncookies=2)"
                )
            }
        }
    }

    /// The XDP mode of the target's program: synwall's as it got it, the XDP SYN proxy's
    /// (always native); None for the kernel.
    fn xdp_mode(&self) -> Option<XdpMode> {
        match (&self.synwall, &self.peer) {
            (Some(server), _) => Some(server.xdp_mode()),
            (None, Some(_)) => Some(XdpMode::Native),
            (None, None) => None,
        }
    }

    /// [`Self::xdp_mode`] by name.
    pub fn xdp_mode_name(&self) -> Option<&'static str> {
        self.xdp_mode().map(|mode| match mode {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        })
    }

    /// The server CPU's times now.
    pub fn cpu_times(&self) -> Result<CpuTimes, LabError> {
        CpuTimes::of(self.cpu).map_err(|source| LabError::Probe {
            what: "CPU times (/proc/stat)",
            source,
        })
    }

    /// The figures now.
    pub fn sample(&mut self) -> Result<Sample, LabError> {
        let at = Instant::now();
        let frames = self.procnet.frames()?;
        let server_cpu = self.cpu_times()?;
        let (cookies_sent, syn_queue) = match (&self.synwall, &self.peer) {
            (Some(server), _) => {
                let stats = server.stats().listener;
                (
                    stats.get(Counter::CookiesSent),
                    stats.gauge(Gauge::SynQueueDepth),
                )
            }
            // Every SYN-ACK of the XDP SYN proxy carries a cookie; its listener's SYN queue
            // holds the connections nftables synproxy is opening.
            (None, Some(peer)) => (peer.counters()?.syn_answered, self.procnet.syn_recv(PORT)?),
            (None, None) => (
                self.procnet.tcp_ext([Counter::CookiesSent])?[0],
                self.procnet.syn_recv(PORT)?,
            ),
        };
        Ok(Sample {
            at,
            frames,
            server_cpu,
            cookies_sent,
            syn_queue,
            accepted: self.service.accepted.load(Ordering::Relaxed),
            forged: self.service.forged.load(Ordering::Relaxed),
            turned_away: self.service.turned_away.load(Ordering::Relaxed),
        })
    }

    /// An error if the serving thread has ended (it serves until dropped).
    pub fn check(&mut self) -> Result<(), LabError> {
        match &self.thread {
            Some(thread) if thread.is_finished() => Err(self.failure()),
            _ => Ok(()),
        }
    }

    /// The server side's own counters, by name: synwall's listener counters (non-zero ones),
    /// handoffs, SYNs the service's own listener took over a TIME-WAIT tuple or answered before
    /// a takeover, takeovers and AF_XDP ring drops; or the kernel's TcpExt counters of a
    /// listener, and for the XDP SYN proxy also its program's outcomes and nftables synproxy's
    /// counters.
    pub fn counters(&mut self) -> Result<BTreeMap<String, u64>, LabError> {
        let Some(server) = &self.synwall else {
            let values = self.procnet.tcp_ext(KERNEL_COUNTERS)?;
            let mut counters: BTreeMap<String, u64> = KERNEL_COUNTERS
                .map(|counter| kernel_mib(counter).to_owned())
                .into_iter()
                .zip(values)
                .collect();
            if let Some(peer) = &self.peer {
                let outcomes = peer.counters()?.named();
                counters.extend(outcomes.map(|(name, value)| (name.to_owned(), value)));
                counters.extend(self.procnet.synproxy()?);
            }
            return Ok(counters);
        };
        // A handshake the kernel completed itself is counted when its shard reads the report,
        // at most `RETIRE_EVERY` after the shard went idle: let the last ones be counted.
        thread::sleep(COUNTERS_SETTLE);
        let stats = server.stats();
        let mut counters: BTreeMap<String, u64> = stats
            .listener
            .non_zero()
            .into_iter()
            .map(|(counter, value)| (format!("{counter:?}"), value))
            .collect();
        for (name, value) in [
            (
                "AcceptedFromCookie",
                stats.listener.get(Counter::AcceptedFromCookie),
            ),
            (
                "AcceptedFromQueue",
                stats.listener.get(Counter::AcceptedFromQueue),
            ),
            ("HandoffsCompleted", stats.handoffs_completed),
            ("HandoffsFailed", stats.handoffs_failed),
            ("KernelReopens", stats.steering.kernel_reopens),
            ("KernelAnswers", stats.steering.kernel_answers),
            ("KernelCookies", stats.steering.kernel_cookies),
            ("OwnListenerAccepted", stats.own_listener_accepted),
            ("Takeovers", stats.steering.takeovers),
            ("XskRxDropped", stats.xsk.rx_dropped),
            ("XskRxRingFull", stats.xsk.rx_ring_full),
        ] {
            counters.insert(name.to_owned(), value);
        }
        if stats.queues.len() > 1 {
            for queue in &stats.queues {
                let listener = &queue.listener;
                for (name, value) in [
                    ("SynReceived", listener.get(Counter::SynReceived)),
                    (
                        "SynAcksAndCookiesSent",
                        listener.get(Counter::SynAcksSent) + listener.get(Counter::CookiesSent),
                    ),
                    (
                        "Accepted",
                        listener.get(Counter::AcceptedFromCookie)
                            + listener.get(Counter::AcceptedFromQueue),
                    ),
                    ("XskRxDropped", queue.xsk.rx_dropped),
                ] {
                    counters.insert(format!("Queue{}{name}", queue.queue), value);
                }
            }
        }
        Ok(counters)
    }

    /// Why the serving thread ended (joins it).
    fn failure(&mut self) -> LabError {
        self.stop.store(true, Ordering::Relaxed);
        let ended = match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Ok(Ok(())))) | None => "it stopped".to_owned(),
            Some(Ok(Ok(Err(error)) | Err(error))) => error.to_string(),
            Some(Err(_)) => "it panicked".to_owned(),
        };
        LabError::ServerSide(ended)
    }
}

impl Drop for ServerSide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The last reference: the server stops its threads and detaches its program.
        self.synwall = None;
        // The XDP SYN proxy's programs, and the pass program, detached.
        self.peer = None;
        self.pass = None;
    }
}

/// Kernel settings of the server namespace for the kernel's listener, of both families.
fn prepare_kernel(topology: &Topology) -> io::Result<()> {
    let ns = &topology.server_ns;
    for setting in [
        "net.ipv4.tcp_syncookies=1",
        "net.ipv4.tcp_no_metrics_save=1",
    ] {
        topology.run_in(ns, &["sysctl", "-q", "-w", setting])?;
    }
    topology.run_in(ns, &["ip", "tcp_metrics", "flush", "all"])?;
    Ok(())
}

/// How the server veth's receive work gets to the server CPU (see [`placement`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receive {
    /// synwall's DRV program, threaded NAPI.
    XdpNapi,
    /// GRO's NAPI instance, threaded, for the kernel.
    GroNapi,
    Rps,
    /// The XDP SYN proxy's DRV program, threaded NAPI; and on the client veth, the pass
    /// program's NAPI instance, threaded, on the client CPU.
    ProxyNapi,
    /// A pass program's NAPI instance, threaded, for the kernel (`--kernel-rx xdp-pass`).
    PassNapi,
}

impl Receive {
    /// Chooses how the receive work of `target` reaches the server CPU and sets up what can
    /// be set up before the listener starts; the client's receive work goes to the client
    /// CPU.
    fn place(topology: &Topology, config: &LabConfig, target: Target) -> Result<Receive, LabError> {
        let place = |source| LabError::Placement {
            cpu: config.server_cpu,
            source,
        };
        let (ns, dev) = (&topology.server_ns, &topology.server_if);
        placement::rps(
            topology,
            &topology.client_ns,
            &topology.client_if,
            config.client_cpu,
        )
        .map_err(place)?;
        let receive = match (target, config.kernel_rx, config.xdp_mode) {
            (Target::Synwall, _, LabXdpMode::Native) => Receive::XdpNapi,
            (Target::Kernel, KernelRx::Napi, _) => Receive::GroNapi,
            (Target::Kernel, KernelRx::XdpPass, _) => Receive::PassNapi,
            (Target::Synwall, _, LabXdpMode::Generic) | (Target::Kernel, KernelRx::Rps, _) => {
                Receive::Rps
            }
            (Target::XdpSynproxy, _, _) => Receive::ProxyNapi,
        };
        match receive {
            Receive::Rps => placement::rps(topology, ns, dev, config.server_cpu).map_err(place)?,
            Receive::GroNapi => placement::gro(topology, ns, dev).map_err(place)?,
            Receive::XdpNapi | Receive::ProxyNapi | Receive::PassNapi => {}
        }
        Ok(receive)
    }

    /// Finishes the placement once the listener runs (the target's programs are attached) and
    /// describes it, for both ends. Under a flood, synwall's fast path consumes what its NAPI
    /// thread produces, so the fast path goes first (the NAPI thread at nice 19); in peacetime
    /// every thread of the server side has the same share (nice 0), for every target, and so
    /// has the XDP SYN proxy's NAPI thread, which does all of its work.
    fn finish(self, topology: &Topology, config: &LabConfig) -> Result<String, LabError> {
        let (cpu, client_cpu) = (config.server_cpu, config.client_cpu);
        let (server, placed) = if self == Receive::Rps {
            (format!("receive work by RPS on CPU {cpu}"), Vec::new())
        } else {
            let nice = if self == Receive::XdpNapi && !config.peacetime {
                19
            } else {
                0
            };
            let napi = placement::threaded_napi(topology, cpu, nice)
                .map_err(|source| LabError::Placement { cpu, source })?;
            let text = format!("threaded NAPI (kernel threads {napi:?}, nice {nice}) on CPU {cpu}");
            (text, napi)
        };
        let client = if self == Receive::ProxyNapi {
            let (ns, dev) = (&topology.client_ns, &topology.client_if);
            let napi = placement::threaded_napi_of(topology, ns, dev, client_cpu, 0, &placed)
                .map_err(|source| LabError::Placement {
                    cpu: client_cpu,
                    source,
                })?;
            format!("its veth's threaded NAPI, kernel threads {napi:?}, nice 0")
        } else {
            "RPS".to_owned()
        };
        Ok(format!(
            "{server}; the generator and the client's receive work ({client}) on CPU {client_cpu}"
        ))
    }
}

/// The serving thread's side: the service's own listening socket and, for the synwall target,
/// synwall in front of it (and its proxy in repair mode).
struct Listening {
    socket: ServiceListener,
    /// The Unix socket's path with `--upstream unix`, removed when serving ends.
    unix_path: Option<PathBuf>,
    synwall: Option<Arc<Server>>,
    proxy: Option<Proxy>,
}

impl Listening {
    /// Starts `target` on the server's address of the run's family in the calling thread's
    /// namespace; with `--upstream unix`, the service listens on `unix_upstream`.
    fn open(
        target: Target,
        interface: &str,
        config: &LabConfig,
        unix_upstream: PathBuf,
    ) -> Result<Listening, LabError> {
        let served = SocketAddr::new(config.family.server(), PORT);
        let behind_proxy = target == Target::Synwall && config.handoff == LabHandoff::Repair;
        let (socket, upstream, unix_path) = service_listener(
            served,
            behind_proxy.then_some(config.upstream),
            unix_upstream,
        )
        .map_err(LabError::Kernel)?;
        if target != Target::Synwall {
            return Ok(Listening {
                socket,
                unix_path,
                synwall: None,
                proxy: None,
            });
        }
        let mut server = ServerConfig::new(interface, &[served]);
        server.backlog = BACKLOG;
        server.cpus = vec![config.server_cpu];
        server.handoff = config.handoff.mode();
        server.answer_syns = config.answer_syns.answerer();
        server.xdp_mode = match config.xdp_mode {
            LabXdpMode::Native => XdpMode::Native,
            LabXdpMode::Generic => XdpMode::Generic,
        };
        let synwall = match Server::bind(server) {
            Ok(synwall) => Arc::new(synwall),
            Err(error) => {
                remove_socket(unix_path.as_ref());
                return Err(error.into());
            }
        };
        let proxy = upstream.map(|upstream| {
            Proxy::new(ProxyConfig {
                upstream,
                connect_timeout: Duration::from_secs(3),
                max_connections: PROXIED,
                threads: 1,
                proxy_protocol: ProxyProtocol::V2,
            })
        });
        Ok(Listening {
            socket,
            unix_path,
            synwall: Some(synwall),
            proxy,
        })
    }
}

/// The service's listening socket: on `served`, or where `proxied` says behind the proxy (then
/// with the proxy's upstream, and the Unix socket's path when there is one).
fn service_listener(
    served: SocketAddr,
    proxied: Option<LabUpstream>,
    unix_upstream: PathBuf,
) -> io::Result<(ServiceListener, Option<Upstream>, Option<PathBuf>)> {
    Ok(match proxied {
        None => (listen(served)?.into(), None, None),
        Some(LabUpstream::Tcp) => {
            let address = SocketAddr::new(served.ip(), UPSTREAM_PORT);
            (listen(address)?.into(), Some(Upstream::Tcp(address)), None)
        }
        Some(LabUpstream::Unix) => {
            // The backlog of the TCP ones (std's bind would take 128).
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&SockAddr::unix(&unix_upstream)?)?;
            socket.listen(BACKLOG as i32)?;
            let listener = UnixListener::from(OwnedFd::from(socket));
            let upstream = Upstream::unix(&unix_upstream);
            (listener.into(), Some(upstream), Some(unix_upstream))
        }
    })
}

/// Removes the service's Unix socket, if it has one.
fn remove_socket(path: Option<&PathBuf>) {
    if let Some(path) = path
        && let Err(error) = std::fs::remove_file(path)
    {
        tracing::warn!(%error, path = %path.display(), "removing the service's Unix socket");
    }
}

/// Serves `listening` until `stop` is raised: the service, and synwall's proxy beside it in
/// repair mode, which stops with the service.
fn serve(listening: Listening, stop: &AtomicBool, service: &ServiceCounters) -> io::Result<()> {
    let config = ServiceConfig {
        proxy_protocol: listening.proxy.is_some(),
        ..ServiceConfig::default()
    };
    let proxy_stop = Shutdown::default();
    let served = std::thread::scope(|scope| {
        if let (Some(proxy), Some(synwall)) = (&listening.proxy, &listening.synwall) {
            let proxy_stop = &proxy_stop;
            scope.spawn(move || proxy.run(synwall, proxy_stop));
        }
        let served = service::run(listening.socket, &config, service, stop);
        // The proxy goes with the service.
        stop.store(true, Ordering::Relaxed);
        proxy_stop.trigger();
        served
    });
    remove_socket(listening.unix_path.as_ref());
    served
}

/// A kernel listening socket on `address`.
fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&SockAddr::from(address))?;
    socket.listen(BACKLOG as i32)?;
    Ok(socket.into())
}
