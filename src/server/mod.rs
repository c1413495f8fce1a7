//! The server: synwall on a NIC, for applications and for `synwall listen`.
//!
//! [`Server::bind`] decides how connections are handed to the kernel ([`HandoffMode`]: native
//! where the kernel offers it, else repair) and says why, attaches the steering program, starts
//! one fast-path thread per rx queue (each with its own AF_XDP socket and listener shard, all
//! sharing the cookie secret) and the handoff workers, and returns once every queue is served
//! or with the first error.
//!
//! Native handoff: the protected service accepts every connection from its own listening
//! socket, as if synwall were not there; [`Server::accept`] has nothing to give. Repair: the
//! established connections come out of [`Server::accept`] / [`Server::incoming`]; with
//! `answer-syns = kernel-first` (the default) synwall listens on the served addresses itself,
//! and without a flood the kernel completes the handshakes there ([`crate::own_listener`]).
//!
//! Threads: one per rx queue (optionally pinned to a CPU), which also does native handoffs;
//! in repair mode `workers` handoff workers, and with kernel-first one that accepts from
//! synwall's own listening sockets, started by the first `accept` (a proxy takes the sockets
//! instead, [`Server::take_own_listeners`]); and one that logs when a SYN flood (the SYN queue
//! overflowing, [`crate::flood`]) starts and ends. Memory:
//! per queue one UMEM ([`crate::sys::XdpDeviceConfig`]) and one SYN queue; the accept queue and the ready
//! channel hold at most `backlog` connections each. Dropping the server stops every thread and
//! detaches its programs (the kernel also detaches them if the process dies): the service's
//! own listener then takes its connections again (fail-open).

mod config;
mod fast_path;

pub use config::{ServerBuilder, ServerConfig};
use fast_path::{FastPath, monitor_flood};

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::accept_queue::{AcceptQueue, AcceptReceiver};
use crate::cookie::keys::{KeyError, Secret};
use crate::counters::{CounterSnapshot, Counters};
use crate::device::Wake;
use crate::handoff::{self, Connection, Handoff, HandoffCounters, HandoffFailure, HandoffMode};
use crate::histogram::HistogramSnapshot;
use crate::kernel_completion::KernelCompletionCounters;
use crate::listener::{ConfigError, ListenerUpdate};
use crate::own_listener::{OwnListenerCounters, OwnListenerSockets, OwnListeners};
use crate::preflight::{self, Checked, PreflightError};
use crate::shutdown::{Never, Shutdown};
use crate::sys::native::{NativeHandoff, NativeUnavailable};
use crate::sys::{SteerCounters, SteeringProgram, SynAnswerer, XdpError, XdpMode, XskStatistics};

impl From<ServerError> for io::Error {
    /// The error as [`Server::accept`] gives it: its kind says what happened, its source is
    /// the [`ServerError`].
    fn from(error: ServerError) -> io::Error {
        let kind = match &error {
            ServerError::NativeHandoff => io::ErrorKind::Unsupported,
            ServerError::Closed => io::ErrorKind::NotConnected,
            ServerError::FastPath { source, .. } | ServerError::Thread(source) => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid listener setting: {0}")]
    Config(#[from] ConfigError),
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error("fast path of rx queue {queue}: {source}")]
    FastPath { queue: u32, source: io::Error },
    #[error("starting a thread: {0}")]
    Thread(io::Error),
    #[error(
        "opening a raw socket to hand early segments to the kernel: {source}; grant CAP_NET_RAW"
    )]
    RawSocket { source: io::Error },
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error("native handoff is unavailable: {0}")]
    Native(#[from] NativeUnavailable),
    #[error(
        "connections are handed to the service's own listening socket (native handoff): accept \
         them there; Server::accept serves repair mode only"
    )]
    NativeHandoff,
    #[error("the server was shut down")]
    Closed,
    #[error("waiting for connections on synwall's own listening sockets: {0}")]
    Acceptor(io::Error),
}

/// A snapshot of everything the server counts.
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// The listener counters and gauges, summed over rx queues.
    pub listener: CounterSnapshot,
    /// AF_XDP ring statistics, summed over rx queues (updated every second).
    pub xsk: XskStatistics,
    /// The figures of each rx queue served, in the order the queues were given.
    pub queues: Vec<QueueStats>,
    /// How connections are handed over: [`HandoffMode::Native`] or [`HandoffMode::Repair`].
    pub handoff: HandoffMode,
    /// Who answers new connections' SYNs.
    pub answer_syns: SynAnswerer,
    /// Repair mode, kernel-first: connections accepted from synwall's own listening sockets
    /// (completed by the kernel's listener, without a flood), and `accept` calls that failed.
    pub own_listener_accepted: u64,
    pub own_listener_errors: u64,
    pub handoffs_completed: u64,
    /// Failed handoffs, in all and by [`HandoffFailure::ALL`] order.
    pub handoffs_failed: u64,
    pub handoff_failures: [u64; HandoffFailure::ALL.len()],
    /// Handshakes the kernel could not complete itself (native mode), by kind; none of them
    /// lost a client. `lost_reports`: completions whose report found the ring buffer full
    /// (their handshake stays in the SYN queue until it expires).
    pub kernel_completion: KernelCompletionStats,
    /// The steering program's verdicts, over every rx queue and CPU.
    pub steering: SteerCounters,
    /// Handshakes waiting for a handoff worker (repair mode; native handoffs skip the queue).
    pub accept_queue_depth: usize,
    /// Handshakes that may wait for a handoff worker, at most: the backlog.
    pub accept_queue_capacity: usize,
    /// Established connections waiting for the application.
    pub ready_depth: usize,
    /// From SYN to final ACK of handshakes completed from the SYN queue.
    pub handshake_duration: HistogramSnapshot,
}

/// See [`ServerStats::kernel_completion`] and [`KernelCompletionCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCompletionStats {
    pub refused: u64,
    pub occupied: u64,
    pub unrecorded: u64,
    pub lost_reports: u64,
}

/// The figures of one rx queue: its listener shard and its AF_XDP socket.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// The rx queue's number on the interface.
    pub queue: u32,
    /// The shard's listener counters and gauges.
    pub listener: CounterSnapshot,
    /// The AF_XDP socket's ring statistics (updated every second).
    pub xsk: XskStatistics,
    /// SYN-queue entries at most (`max_syn_backlog`).
    pub syn_queue_capacity: usize,
    /// Whether the AF_XDP socket got zero-copy mode (else copy mode).
    pub zero_copy: bool,
}

/// One fast-path thread's published figures, and the way to its listener.
struct ShardHandle {
    queue: u32,
    syn_queue_capacity: usize,
    zero_copy: bool,
    counters: Arc<Counters>,
    /// The AF_XDP socket's ring statistics, published once per [`STATISTICS_INTERVAL`].
    xsk: Arc<Mutex<XskStatistics>>,
    updates: Sender<ListenerUpdate>,
    /// Ends the fast-path thread's wait, so that it takes an update at once.
    waker: Arc<dyn Wake>,
}

impl ShardHandle {
    /// The queue's figures now.
    fn stats(&self) -> QueueStats {
        QueueStats {
            queue: self.queue,
            listener: self.counters.snapshot(),
            xsk: *self.xsk.lock().unwrap_or_else(PoisonError::into_inner),
            syn_queue_capacity: self.syn_queue_capacity,
            zero_copy: self.zero_copy,
        }
    }
}

/// See the module documentation.
pub struct Server {
    shutdown: Shutdown,
    failure: Arc<Mutex<Option<ServerError>>>,
    threads: Vec<JoinHandle<()>>,
    ready: Receiver<Connection>,
    accept_queue: AcceptReceiver,
    /// The backlog: handshakes that may wait in the accept queue, at most.
    accept_queue_capacity: usize,
    shards: Vec<ShardHandle>,
    handoff_counters: Arc<HandoffCounters>,
    kernel_counters: Arc<KernelCompletionCounters>,
    /// Why the handoff mode is what it is, for the start-up line and operators.
    handoff_reason: String,
    /// Who answers new connections' SYNs: the setting, except in repair mode where synwall
    /// could not listen on the served addresses itself (then synwall).
    answer_syns: SynAnswerer,
    own_listener_counters: Arc<OwnListenerCounters>,
    acceptor: Mutex<Acceptor>,
    // Dropped last, after the threads are joined: the programs detach when they go.
    program: Arc<SteeringProgram>,
    handoff: Handoff,
}

impl Server {
    /// A [`ServerBuilder`] serving `served` on `interface`.
    pub fn builder(interface: &str, served: &[SocketAddr]) -> ServerBuilder {
        ServerBuilder::new(interface, served)
    }

    /// Starts serving; see the module documentation.
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        config.listener.validate()?;
        if config.backlog == 0 || config.workers == 0 || config.budget == 0 {
            return Err(ServerError::Setting(
                "backlog, workers and budget must each be at least 1".to_owned(),
            ));
        }
        // Everything that can be checked is, before anything is attached.
        let Checked { queues, .. } = preflight::check(&config)?;
        let secret = match &config.secret {
            Some(secret) => secret.clone(),
            None => Secret::random()?,
        };
        let served: Vec<SocketAddr> = config.listener.served.iter().copied().collect();
        let program = Arc::new(SteeringProgram::attach(
            &config.interface,
            config.xdp_mode,
            &served,
        )?);
        let (handoff, handoff_reason) =
            resolve_handoff(config.handoff, config.answer_syns, &served, &program)?;
        for warning in preflight::listener_warnings(handoff.mode(), &served) {
            tracing::warn!("{warning}");
        }
        let own_listeners = match handoff {
            Handoff::Repair if config.answer_syns == SynAnswerer::KernelFirst => {
                own_listeners(&served, config.backlog, &program)?
            }
            _ => None,
        };

        let accept_queue = AcceptQueue::new(config.backlog);
        let (ready_tx, ready) = crossbeam_channel::bounded(config.backlog);
        // From here on, dropping `server` stops and joins whatever was started.
        let mut server = Server {
            shutdown: Shutdown::default(),
            failure: Arc::new(Mutex::new(None)),
            threads: Vec::new(),
            ready,
            accept_queue: accept_queue.receiver(),
            accept_queue_capacity: config.backlog,
            shards: Vec::new(),
            handoff_counters: Arc::new(HandoffCounters::default()),
            kernel_counters: Arc::default(),
            handoff_reason,
            answer_syns: match (&handoff, &own_listeners) {
                (Handoff::Repair, None) => SynAnswerer::Synwall,
                _ => config.answer_syns,
            },
            own_listener_counters: Arc::default(),
            acceptor: Mutex::new(Acceptor::None),
            program,
            handoff,
        };
        let started = server.start_fast_paths(&config, &queues, &secret, &accept_queue)?;
        // Native handoffs are done by the fast-path threads themselves.
        if let Handoff::Repair = server.handoff {
            server.start_workers(config.workers, &accept_queue, &ready_tx)?;
        }
        if let Some(listeners) = own_listeners {
            *server
                .acceptor
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner) = Acceptor::Waiting(listeners, ready_tx);
        }
        for started in started {
            match started.recv() {
                Ok(Ok(handle)) => server.shards.push(handle),
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(server.take_failure()),
            }
        }
        server.start_flood_monitor()?;
        tracing::debug!(
            interface = config.interface,
            queues = ?queues,
            xdp = ?server.program.mode(),
            handoff = server.handoff.mode().name(),
            why = server.handoff_reason,
            "serving"
        );
        Ok(server)
    }

    /// One fast-path thread per rx queue; each tells its channel how its set-up went.
    fn start_fast_paths(
        &mut self,
        config: &ServerConfig,
        queues: &[u32],
        secret: &Secret,
        accept_queue: &AcceptQueue,
    ) -> Result<Vec<Receiver<Result<ShardHandle, ServerError>>>, ServerError> {
        let mut started = Vec::new();
        for (index, &queue) in queues.iter().enumerate() {
            let (started_tx, started_rx) = crossbeam_channel::bounded(1);
            let fast_path = FastPath {
                config: config.clone(),
                queue,
                cpu: (!config.cpus.is_empty()).then(|| config.cpus[index % config.cpus.len()]),
                secret: secret.clone(),
                program: Arc::clone(&self.program),
                accept: accept_queue.sender(config.listener.max_pending_handoffs),
                native: match &self.handoff {
                    Handoff::Native(native) => Some(Arc::clone(native)),
                    Handoff::Repair => None,
                },
                handoff_counters: Arc::clone(&self.handoff_counters),
                kernel_counters: Arc::clone(&self.kernel_counters),
                shutdown: self.shutdown.clone(),
                failure: Arc::clone(&self.failure),
            };
            self.spawn(format!("synwall-rx{queue}"), move || {
                fast_path.run(&started_tx);
            })?;
            started.push(started_rx);
        }
        Ok(started)
    }

    /// The handoff workers of repair mode.
    fn start_workers(
        &mut self,
        workers: usize,
        accept_queue: &AcceptQueue,
        ready: &Sender<Connection>,
    ) -> Result<(), ServerError> {
        for worker in 0..workers {
            let (queue, ready, counters, steering, shutdown) = (
                accept_queue.receiver(),
                ready.clone(),
                Arc::clone(&self.handoff_counters),
                Arc::clone(&self.program),
                self.shutdown.clone(),
            );
            self.spawn(format!("synwall-handoff{worker}"), move || {
                handoff::run_worker(&queue, &ready, &counters, &steering, &shutdown);
            })?;
        }
        Ok(())
    }

    /// Starts the thread that accepts from synwall's own listening sockets (repair mode,
    /// kernel-first), unless it runs already or a proxy took the sockets; an error of its poll
    /// stops the server, as a fast path's does, and so does a thread that cannot start (the
    /// sockets would then go unaccepted).
    fn start_acceptor(&self) -> Result<(), ServerError> {
        let mut acceptor = self.acceptor.lock().unwrap_or_else(PoisonError::into_inner);
        let (listeners, ready) = match std::mem::replace(&mut *acceptor, Acceptor::None) {
            Acceptor::Waiting(listeners, ready) => (listeners, ready),
            other => {
                *acceptor = other;
                return Ok(());
            }
        };
        let (counters, shutdown, failure) = (
            Arc::clone(&self.own_listener_counters),
            self.shutdown.clone(),
            Arc::clone(&self.failure),
        );
        let thread = thread::Builder::new()
            .name("synwall-accept".to_owned())
            .spawn(move || {
                if let Err(source) = listeners.run(&ready, &counters, &shutdown) {
                    stop_failed(&failure, &shutdown, ServerError::Acceptor(source));
                }
            });
        match thread {
            Ok(thread) => {
                *acceptor = Acceptor::Running(thread);
                Ok(())
            }
            Err(error) => {
                stop_failed(&self.failure, &self.shutdown, ServerError::Thread(error));
                Err(self.take_failure())
            }
        }
    }

    /// synwall's own listening sockets (repair mode, kernel-first), for an event loop that
    /// accepts from them itself (synwall's proxy): each connection then skips the thread that
    /// would accept it and the ready channel. `None` when there are none, or once `accept`
    /// has started that thread, or after an earlier call took them. Connections that synwall
    /// completes itself (during a flood) still come from [`Server::accept`].
    pub fn take_own_listeners(&self) -> Option<OwnListenerSockets> {
        let mut acceptor = self.acceptor.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *acceptor, Acceptor::None) {
            // The ready channel's sender goes: it disconnects when the workers end.
            Acceptor::Waiting(listeners, _ready) => {
                Some(listeners.into_sockets(Arc::clone(&self.own_listener_counters)))
            }
            other => {
                *acceptor = other;
                None
            }
        }
    }

    /// The thread that logs when a SYN flood starts and ends, and when synwall takes the SYNs
    /// over from the kernel's listener.
    fn start_flood_monitor(&mut self) -> Result<(), ServerError> {
        let counters: Vec<_> = self
            .shards
            .iter()
            .map(|shard| Arc::clone(&shard.counters))
            .collect();
        let (program, shutdown) = (Arc::clone(&self.program), self.shutdown.clone());
        self.spawn("synwall-monitor".to_owned(), move || {
            monitor_flood(&counters, &program, &shutdown);
        })
    }

    fn spawn(
        &mut self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), ServerError> {
        let thread = thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(ServerError::Thread)?;
        self.threads.push(thread);
        Ok(())
    }

    /// The next established connection (repair mode); blocks until one is there, waking as
    /// soon as one is. Fails once the server has stopped (with why: the error's source is the
    /// [`ServerError`]), and at once in native mode, where the service accepts them itself.
    pub fn accept(&self) -> io::Result<Connection> {
        self.check_accepting()?;
        self.ready.recv().map_err(|_| self.take_failure().into())
    }

    /// The next established connection within `timeout`, if any; fails as [`Server::accept`].
    pub fn accept_timeout(&self, timeout: Duration) -> io::Result<Option<Connection>> {
        self.check_accepting()?;
        match self.ready.recv_timeout(timeout) {
            Ok(connection) => Ok(Some(connection)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.take_failure().into()),
        }
    }

    /// The next established connection, or `None` as soon as `shutdown` is triggered (for a
    /// thread that must also stop when its caller does); fails as [`Server::accept`].
    pub fn accept_until(&self, shutdown: &Shutdown) -> io::Result<Option<Connection>> {
        self.check_accepting()?;
        crossbeam_channel::select! {
            recv(self.ready) -> connection => match connection {
                Ok(connection) => Ok(Some(connection)),
                Err(_) => Err(self.take_failure().into()),
            },
            recv(shutdown.signal()) -> _ => Ok(None),
        }
    }

    /// Ready (disconnected) once the server has stopped, by itself or when dropped: a `recv`
    /// branch of `crossbeam_channel::select!` for a thread that waits on other things too.
    pub fn stopped(&self) -> &Receiver<Never> {
        self.shutdown.signal()
    }

    fn check_accepting(&self) -> Result<(), ServerError> {
        if self.shutdown.is_triggered() {
            return Err(self.take_failure());
        }
        match self.handoff {
            Handoff::Native(_) => Err(ServerError::NativeHandoff),
            Handoff::Repair => self.start_acceptor(),
        }
    }

    /// Established connections as [`Server::accept`] gives them; the first error ends it,
    /// after it has been given.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<Connection>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let next = self.accept();
            failed = next.is_err();
            Some(next)
        })
    }

    fn kernel_completion_stats(&self) -> KernelCompletionStats {
        let counters = &self.kernel_counters;
        KernelCompletionStats {
            refused: counters.refused.load(Ordering::Relaxed),
            occupied: counters.occupied.load(Ordering::Relaxed),
            unrecorded: counters.unrecorded.load(Ordering::Relaxed),
            lost_reports: match &self.handoff {
                Handoff::Native(native) => native.lost_reports().unwrap_or_default(),
                Handoff::Repair => 0,
            },
        }
    }

    /// Everything the server counts, now.
    pub fn stats(&self) -> ServerStats {
        let counters = &self.handoff_counters;
        let mut stats = ServerStats {
            handoff: self.handoff.mode(),
            answer_syns: self.answer_syns,
            handoffs_completed: counters.completed.load(Ordering::Relaxed),
            handoffs_failed: counters.failed(),
            handoff_failures: HandoffFailure::ALL.map(|failure| counters.failures(failure)),
            handshake_duration: counters.handshake_duration.snapshot(),
            own_listener_accepted: self.own_listener_counters.accepted.load(Ordering::Relaxed),
            own_listener_errors: self.own_listener_counters.errors.load(Ordering::Relaxed),
            kernel_completion: self.kernel_completion_stats(),
            steering: self.program.counters().unwrap_or_default(),
            accept_queue_depth: self.accept_queue.depth(),
            accept_queue_capacity: self.accept_queue_capacity,
            ready_depth: self.ready.len(),
            ..ServerStats::default()
        };
        for shard in &self.shards {
            let queue = shard.stats();
            stats.listener.merge(&queue.listener);
            stats.xsk += queue.xsk;
            stats.queues.push(queue);
        }
        stats
    }

    /// Applies `update` to every shard's listener at its next round (SIGHUP), without losing
    /// any connection or handshake in flight.
    pub fn reload(&self, update: &ListenerUpdate) {
        for shard in &self.shards {
            let _ = shard.updates.try_send(update.clone());
            shard.waker.wake();
        }
    }

    /// The XDP mode the steering program got.
    pub fn xdp_mode(&self) -> XdpMode {
        self.program.mode()
    }

    /// How connections are handed to the kernel: [`HandoffMode::Native`] or
    /// [`HandoffMode::Repair`].
    pub fn handoff_mode(&self) -> HandoffMode {
        self.handoff.mode()
    }

    /// Who answers new connections' SYNs (see [`syns_answered_by`]).
    pub fn answer_syns(&self) -> SynAnswerer {
        self.answer_syns
    }

    /// Why the handoff mode is what it is.
    pub fn handoff_reason(&self) -> &str {
        &self.handoff_reason
    }

    /// Whether every thread is still serving.
    pub fn is_running(&self) -> bool {
        !self.shutdown.is_triggered()
    }

    /// Stops every thread and detaches the program.
    pub fn shutdown(self) {}

    /// Why the server stopped by itself, if it did; told once.
    pub fn failure(&self) -> Option<ServerError> {
        self.failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn take_failure(&self) -> ServerError {
        self.failure().unwrap_or(ServerError::Closed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let acceptor = self
            .acceptor
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Acceptor::Running(thread) = std::mem::replace(acceptor, Acceptor::None) {
            let _ = thread.join();
        }
    }
}

/// synwall's own listening sockets (repair mode, kernel-first) until connections are first
/// taken from them: by `accept`, which starts the thread that accepts into the ready channel,
/// or by a proxy ([`Server::take_own_listeners`]).
enum Acceptor {
    /// None to accept from: not kernel-first, or the sockets were taken.
    None,
    /// Nobody has asked for connections yet; the kernel's accept queues hold them meanwhile.
    Waiting(OwnListeners, Sender<Connection>),
    Running(JoinHandle<()>),
}

/// Stops the server because a thread of it failed with `error`: logged, kept as the reason
/// [`Server::failure`] tells (the first, when several fail), and every thread told to stop.
fn stop_failed(failure: &Mutex<Option<ServerError>>, shutdown: &Shutdown, error: ServerError) {
    tracing::error!(%error, "stopping the server");
    failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert(error);
    shutdown.trigger();
}

/// Repair mode, kernel-first: synwall's own listening sockets on the served addresses, the
/// steering program told to let their listener answer while its SYN queue has room. `None`,
/// with a warning that names the cause, when synwall cannot listen there (another socket
/// does): synwall then answers every SYN, as with `answer-syns = synwall`.
fn own_listeners(
    served: &[SocketAddr],
    backlog: usize,
    steering: &SteeringProgram,
) -> Result<Option<OwnListeners>, ServerError> {
    match OwnListeners::bind(served, backlog) {
        Ok(listeners) => {
            steering.own_listener_answers()?;
            Ok(Some(listeners))
        }
        Err(error) => {
            tracing::warn!(%error, "synwall answers every SYN itself (as answer-syns = synwall)");
            Ok(None)
        }
    }
}

/// Who answers new connections' SYNs, for people: what the start-up line and the lab say.
pub fn syns_answered_by(handoff: HandoffMode, answerer: SynAnswerer) -> &'static str {
    match (handoff, answerer) {
        (_, SynAnswerer::Synwall) => "synwall",
        (HandoffMode::Repair, SynAnswerer::KernelFirst) => {
            "the kernel, on synwall's own listening socket, until its SYN queue fills"
        }
        (_, SynAnswerer::KernelFirst) => "the service's listener until its SYN queue fills",
    }
}

/// Decides how connections are handed to the kernel and says why (see [`HandoffMode`]).
fn resolve_handoff(
    mode: HandoffMode,
    answerer: SynAnswerer,
    served: &[SocketAddr],
    steering: &SteeringProgram,
) -> Result<(Handoff, String), ServerError> {
    let repair = |why: String| {
        preflight::check_handoff(HandoffMode::Repair, served)?;
        Ok((Handoff::Repair, why))
    };
    let native =
        |native: NativeHandoff, why: &str| Ok((Handoff::Native(Arc::new(native)), why.to_owned()));
    match mode {
        HandoffMode::Repair => repair("handoff = repair".to_owned()),
        HandoffMode::Native => native(
            NativeHandoff::attach(steering, answerer)?,
            "handoff = native",
        ),
        HandoffMode::Auto => match NativeHandoff::attach(steering, answerer) {
            Ok(handoff) => native(handoff, "handoff = auto, and the kernel can"),
            Err(unavailable) => repair(format!("handoff = auto, but {unavailable}")),
        },
    }
}
