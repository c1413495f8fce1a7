//! Handoff workers: completed handshakes in, established kernel sockets out.
//!
//! A worker pops a [`Handshake`](crate::accept_queue::Handshake) from the accept queue, builds its kernel socket with
//! TCP_REPAIR ([`crate::sys::repair`]) while the steering program keeps the connection's
//! segments away from the half-built socket, reports back to the shard that accepted it, and passes
//! the [`Connection`] on to the application through a bounded channel. A failed handoff is
//! counted and reported, and the shard resets the peer: nothing is left half-open. When the
//! application stops taking connections, the workers block, the accept queue fills, and the
//! shards apply the overflow policy: memory stays bounded.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};

use crate::accept_queue::{AcceptReceiver, Pop};
use crate::histogram::DurationHistogram;
use crate::listener::{Accepted, HandshakePath, WindowScale};
use crate::sys::{SteeringProgram, repair};

/// How long a worker waits for work or for room before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// An established connection, owned by the kernel, ready for the application.
#[derive(Debug)]
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// How the handshake completed.
    pub path: HandshakePath,
    pub options: NegotiatedOptions,
    /// From the SYN to the final ACK; known for connections from the SYN queue.
    pub handshake_duration: Option<Duration>,
    /// When the kernel socket was ready.
    pub established_at: Instant,
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

/// Outcomes of the handoffs, summed over workers (read from any thread).
#[derive(Debug, Default)]
pub struct HandoffCounters {
    /// Kernel sockets built.
    pub completed: AtomicU64,
    /// Handoffs that failed; each peer was reset.
    pub failed: AtomicU64,
    /// From SYN to final ACK, for handshakes completed from the SYN queue (a cookie handshake
    /// keeps no SYN time).
    pub handshake_duration: DurationHistogram,
}

/// Runs one worker until `stop` is set or the accept queue closes. `steering` keeps each
/// connection's segments away from its kernel socket until the socket is ready.
pub fn run_worker(
    queue: AcceptReceiver,
    ready: Sender<Connection>,
    counters: Arc<HandoffCounters>,
    steering: Arc<SteeringProgram>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let handshake = match queue.pop(POLL) {
            Pop::Handshake(handshake) => handshake,
            Pop::Timeout => continue,
            Pop::Closed => return,
        };
        let accepted = &handshake.accepted;
        let shield = steering.shield(&accepted.tuple);
        if let Err(error) = &shield {
            tracing::warn!(%error, "cannot shield a handoff; its first segments may be retransmitted");
        }
        let established = repair::establish(accepted);
        drop(shield);
        let stream = match established {
            Ok(stream) => stream,
            Err(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "handoff failed; the peer is reset");
                handshake.report_failed();
                continue;
            }
        };
        counters.completed.fetch_add(1, Ordering::Relaxed);
        if let Some(duration) = accepted.handshake_duration {
            counters.handshake_duration.observe(duration);
        }
        let mut connection = Connection {
            stream,
            peer: accepted.tuple.remote,
            local: accepted.tuple.local,
            path: accepted.path,
            options: NegotiatedOptions::of(accepted),
            handshake_duration: accepted.handshake_duration,
            established_at: Instant::now(),
        };
        handshake.report_handed_off();
        // Wait for the application, but keep an eye on the stop flag.
        loop {
            match ready.send_timeout(connection, POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Relaxed) => {
                    connection = back;
                }
                Err(SendTimeoutError::Timeout(_) | SendTimeoutError::Disconnected(_)) => return,
            }
        }
    }
}
