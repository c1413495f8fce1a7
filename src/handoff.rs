//! Handoffs: completed handshakes in, connections the kernel owns out, one of two ways
//! ([`Handoff`], DESIGN.md §4):
//! - **native**: the protected service's own listening socket gets each connection, built by
//!   the kernel with the client's address and the negotiated options ([`NativeHandoff`]). A
//!   handshake of the SYN queue is mostly completed by the kernel itself, its final ACK never
//!   reaching synwall ([`crate::kernel_completion`]); for the others (cookies, and those whose
//!   ACK came to user space) it takes a few system calls, so the shard that completed the
//!   handshake does it at once, on
//!   its own thread ([`NativeInline`], an [`InlineHandoff`]): no accept queue, no thread hop,
//!   and the kernel socket exists before the shard looks at the next frame. Nothing of the
//!   connection passes through synwall afterwards, and [`crate::server::Server::accept`] has
//!   nothing to give.
//! - **repair**: a worker pops the [`crate::accept_queue::Handshake`] from the
//!   accept queue, builds the socket with TCP_REPAIR ([`crate::sys::repair`]) while the
//!   steering program keeps the connection's segments away from it, reports back to the shard
//!   (which then gives the kernel the segments it held meanwhile), and passes the
//!   [`Connection`] to the application through a bounded channel. When the application stops
//!   taking connections, the workers block, the accept queue fills, and the shards apply the
//!   overflow policy: memory stays bounded.
//!
//! A failed handoff is counted by its reason ([`HandoffFailure`]) and the shard resets the
//! peer: nothing is left half-open.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::accept_queue::{AcceptReceiver, Handshake};
use crate::histogram::DurationHistogram;
use crate::listener::{Accepted, HandshakePath, WindowScale};
use crate::log_gate::{LOG_EVERY, LogGate};
use crate::shutdown::Shutdown;
use crate::sys::inject::RawInjector;
use crate::sys::native::{NativeHandoff, NativeRefusal};
use crate::sys::{SteeringProgram, repair};

/// How completed handshakes become kernel sockets (the `handoff` setting).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HandoffMode {
    /// Native where the kernel offers it (Linux 6.9+), repair otherwise.
    #[default]
    Auto,
    /// Into the service's own listening socket on the served port.
    Native,
    /// Sockets built with TCP_REPAIR, given to the application or proxied to the upstream.
    Repair,
}

impl HandoffMode {
    /// The mode's name, as the setting spells it.
    pub fn name(self) -> &'static str {
        match self {
            HandoffMode::Auto => "auto",
            HandoffMode::Native => "native",
            HandoffMode::Repair => "repair",
        }
    }
}

/// The way a running server's workers hand connections over.
#[derive(Debug)]
pub enum Handoff {
    Native(Arc<NativeHandoff>),
    Repair,
}

impl Handoff {
    /// [`HandoffMode::Native`] or [`HandoffMode::Repair`].
    pub fn mode(&self) -> HandoffMode {
        match self {
            Handoff::Native(_) => HandoffMode::Native,
            Handoff::Repair => HandoffMode::Repair,
        }
    }
}

/// An established connection, owned by the kernel, ready for the application (repair mode).
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Who completed the handshake.
    pub completed_by: CompletedBy,
    pub options: NegotiatedOptions,
    /// From the SYN to the final ACK; known for connections from the SYN queue.
    pub handshake_duration: Option<Duration>,
    /// When the kernel socket was ready.
    pub established_at: Instant,
}

/// Who completed a connection's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletedBy {
    /// synwall, from its SYN queue or from a cookie; the socket was built with TCP_REPAIR.
    Synwall(HandshakePath),
    /// The kernel's listener on synwall's own listening socket, without a flood
    /// (`answer-syns = kernel-first`, [`crate::own_listener`]).
    KernelListener,
}

/// What the handshake agreed on, as the kernel socket now has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NegotiatedOptions {
    /// The largest segment the peer accepts.
    pub mss: u16,
    pub window_scale: Option<WindowScale>,
    pub sack_permitted: bool,
    pub timestamps: bool,
}

impl NegotiatedOptions {
    fn of(accepted: &Accepted) -> NegotiatedOptions {
        NegotiatedOptions {
            mss: accepted.mss,
            window_scale: accepted.window_scale,
            sack_permitted: accepted.sack_permitted,
            timestamps: accepted.timestamps.is_some(),
        }
    }
}

/// Why a handoff failed; each has its own counter, and the peer was reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffFailure {
    /// Repair: a TCP_REPAIR step failed.
    Repair,
    /// Native: nothing listens on the served port.
    NoListener,
    /// Native: another socket holds the 4-tuple (or a TIME-WAIT socket could not be ended).
    Occupied,
    /// Native: the kernel refused the handshake's values with EINVAL (an MSS below 536 for
    /// IPv4 or 1220 for IPv6, or the listener is not an ordinary TCP socket).
    RefusedInvalid,
    /// Native: the kernel had no memory for the connection (ENOMEM).
    RefusedNoMemory,
    /// Native: the kernel refused with another errno.
    RefusedOther,
    /// A system call failed, or the final ACK never reached the handoff program.
    System,
}

impl HandoffFailure {
    pub const ALL: [HandoffFailure; 7] = [
        HandoffFailure::Repair,
        HandoffFailure::NoListener,
        HandoffFailure::Occupied,
        HandoffFailure::RefusedInvalid,
        HandoffFailure::RefusedNoMemory,
        HandoffFailure::RefusedOther,
        HandoffFailure::System,
    ];

    /// The Prometheus series of `synwall_handoff_failures_total`.
    pub fn series(self) -> &'static str {
        match self {
            HandoffFailure::Repair => "synwall_handoff_failures_total{reason=\"repair\"}",
            HandoffFailure::NoListener => "synwall_handoff_failures_total{reason=\"no_listener\"}",
            HandoffFailure::Occupied => "synwall_handoff_failures_total{reason=\"occupied\"}",
            HandoffFailure::RefusedInvalid => {
                "synwall_handoff_failures_total{reason=\"refused\",errno=\"EINVAL\"}"
            }
            HandoffFailure::RefusedNoMemory => {
                "synwall_handoff_failures_total{reason=\"refused\",errno=\"ENOMEM\"}"
            }
            HandoffFailure::RefusedOther => {
                "synwall_handoff_failures_total{reason=\"refused\",errno=\"other\"}"
            }
            HandoffFailure::System => "synwall_handoff_failures_total{reason=\"system\"}",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn of(refusal: &NativeRefusal) -> HandoffFailure {
        match refusal {
            NativeRefusal::NoListener(_) => HandoffFailure::NoListener,
            NativeRefusal::Occupied | NativeRefusal::TimeWait(_) => HandoffFailure::Occupied,
            NativeRefusal::Refused(libc::EINVAL) => HandoffFailure::RefusedInvalid,
            NativeRefusal::Refused(libc::ENOMEM) => HandoffFailure::RefusedNoMemory,
            NativeRefusal::Refused(_) => HandoffFailure::RefusedOther,
            NativeRefusal::NotSeen | NativeRefusal::Os { .. } => HandoffFailure::System,
        }
    }
}

/// Outcomes of the handoffs, summed over workers (read from any thread).
#[derive(Debug, Default)]
pub struct HandoffCounters {
    /// Connections the kernel took.
    pub completed: AtomicU64,
    /// By [`HandoffFailure::ALL`] order.
    failures: [AtomicU64; HandoffFailure::ALL.len()],
    /// From SYN to final ACK, for handshakes completed from the SYN queue (a cookie handshake
    /// keeps no SYN time).
    pub handshake_duration: DurationHistogram,
    /// One log gate per kind of failure.
    logged: Mutex<[LogGate; HandoffFailure::ALL.len()]>,
}

impl HandoffCounters {
    /// Failed handoffs of one kind.
    pub fn failures(&self, failure: HandoffFailure) -> u64 {
        self.failures[failure.index()].load(Ordering::Relaxed)
    }

    /// Failed handoffs of every kind.
    pub fn failed(&self) -> u64 {
        self.failures
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Counts a completed handoff.
    fn complete(&self, accepted: &Accepted) {
        self.complete_after(accepted.handshake_duration);
    }

    /// Counts a completed handoff whose handshake took `duration` from its SYN, when known.
    pub(crate) fn complete_after(&self, duration: Option<Duration>) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(duration) = duration {
            self.handshake_duration.observe(duration);
        }
    }

    /// Counts a failure, and logs it unless one of its kind was logged within [`LOG_EVERY`].
    pub(crate) fn fail(&self, failure: HandoffFailure, error: &dyn std::fmt::Display) {
        self.failures[failure.index()].fetch_add(1, Ordering::Relaxed);
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged[failure.index()].pass(Instant::now()) {
            tracing::warn!(
                %error,
                failures = self.failures(failure),
                "handoff failed; the client is reset (logged at most every {} s)",
                LOG_EVERY.as_secs()
            );
        }
    }
}

/// A handoff done at once by the shard that completed the handshake.
pub trait InlineHandoff: Send {
    /// Hands `accepted` to the kernel; false when it could not be (counted, and the shard
    /// resets the peer).
    fn hand_off(&mut self, accepted: &Accepted) -> bool;
}

/// Native handoff on a shard's thread: see the module documentation.
pub struct NativeInline {
    pub native: Arc<NativeHandoff>,
    /// Takes final ACKs to the local stack.
    pub injector: RawInjector,
    pub counters: Arc<HandoffCounters>,
    /// Forgets the connection's TIME-WAIT exception once the kernel owns it.
    pub steering: Arc<SteeringProgram>,
}

impl InlineHandoff for NativeInline {
    fn hand_off(&mut self, accepted: &Accepted) -> bool {
        match self.native.hand_off(accepted, &mut self.injector) {
            Ok(()) => {
                self.counters.complete(accepted);
                self.steering.handed_off(&accepted.tuple);
                true
            }
            Err(refusal) => {
                self.counters.fail(HandoffFailure::of(&refusal), &refusal);
                false
            }
        }
    }
}

/// Runs one repair-mode worker until `shutdown` or the accept queue closes, waking at once for
/// either; connections go to the application through `ready`. `steering` keeps each
/// connection's segments away from its socket until it is ready.
pub fn run_worker(
    queue: &AcceptReceiver,
    ready: &Sender<Connection>,
    counters: &HandoffCounters,
    steering: &Arc<SteeringProgram>,
    shutdown: &Shutdown,
) {
    while let Some(handshake) = queue.pop_until(shutdown) {
        let handed = repair_handoff(handshake, counters, steering)
            .is_some_and(|connection| deliver(connection, ready, shutdown));
        if !handed && shutdown.is_triggered() {
            return;
        }
    }
}

/// Builds one connection's socket with TCP_REPAIR; `None` when that failed.
fn repair_handoff(
    handshake: Handshake,
    counters: &HandoffCounters,
    steering: &Arc<SteeringProgram>,
) -> Option<Connection> {
    let accepted = &handshake.accepted;
    let shield = steering.shield(&accepted.tuple);
    if let Err(error) = &shield {
        tracing::warn!(%error, "cannot shield a handoff; its first segments may be retransmitted");
    }
    let shield = shield.ok();
    let stream = match repair::establish(accepted) {
        Ok(stream) => stream,
        Err(error) => {
            counters.fail(HandoffFailure::Repair, &error);
            handshake.report_failed();
            return None;
        }
    };
    counters.complete(accepted);
    let connection = Connection {
        stream,
        peer: accepted.tuple.remote,
        local: accepted.tuple.local,
        completed_by: CompletedBy::Synwall(accepted.path),
        options: NegotiatedOptions::of(accepted),
        handshake_duration: accepted.handshake_duration,
        established_at: Instant::now(),
    };
    // The shard lowers the shield after re-injecting what it held meanwhile.
    handshake.report_handed_off(true, shield);
    Some(connection)
}

/// Waits for the application to take `connection`, or for `shutdown`. Returns whether it was
/// taken.
pub(crate) fn deliver(
    connection: Connection,
    ready: &Sender<Connection>,
    shutdown: &Shutdown,
) -> bool {
    crossbeam_channel::select! {
        send(ready, connection) -> sent => sent.is_ok(),
        recv(shutdown.signal()) -> _ => false,
    }
}
