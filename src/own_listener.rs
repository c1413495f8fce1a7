//! Repair mode without a flood: synwall's own listening sockets on the served addresses
//! (`answer-syns = kernel-first`).
//!
//! While such a socket's SYN queue has room, the steering program passes new connections' SYNs
//! to the kernel, whose listener answers them and completes the handshakes as it would without
//! synwall. One thread accepts the connections and gives them to the application (or the
//! proxy) through the same bounded channel as the handoff workers: no AF_XDP frame, no
//! TCP_REPAIR, no segment held for a handoff. Once a flood fills a SYN queue, synwall answers
//! every SYN its CPU receives (a takeover, as in native mode), and those connections come from
//! the handoff workers again.
//!
//! When the application stops taking connections, the thread blocks on the full channel, the
//! sockets' accept queues fill (`backlog` each) and the kernel drops further final ACKs, as it
//! does for any listener: memory stays bounded.
//!
//! The thread starts with the application's first `accept`. synwall's proxy takes the sockets
//! instead ([`OwnListeners::into_sockets`], through `Server::take_own_listeners`) and accepts
//! in its own event loops: a connection then reaches the proxy without passing through two
//! other threads (this one and the proxy's accept loop), two wake-ups fewer each.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Socket, Type};

use crate::handoff::{self, CompletedBy, Connection, NegotiatedOptions};
use crate::listener::WindowScale;
use crate::log_gate::{LOG_EVERY, LogGate};
use crate::shutdown::Shutdown;
use crate::sys::tcp_info::{TcpInfo, tcp_info};

/// How long the thread waits after an error that the next `accept` would repeat (out of file
/// descriptors or memory), rather than spin on a socket that stays readable.
pub const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// The timestamp option's bytes, which the kernel keeps out of its send MSS.
const TIMESTAMP_OPTION_LEN: u32 = 12;
const WAKER: Token = Token(usize::MAX);

/// What the accepting thread counts (read from any thread).
#[derive(Debug, Default)]
pub struct OwnListenerCounters {
    /// Connections accepted and given to the application.
    pub accepted: AtomicU64,
    /// `accept` calls that failed (the error is logged, at most every 10 s).
    pub errors: AtomicU64,
    logged: Mutex<LogGate>,
}

impl OwnListenerCounters {
    /// A connection accepted from synwall's own listening sockets was given to the application
    /// (or the proxy).
    pub fn count_delivered(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, error: &io::Error) {
        let errors = self.errors.fetch_add(1, Ordering::Relaxed) + 1;
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        if logged.pass(Instant::now()) {
            tracing::warn!(
                %error,
                errors,
                "accepting from synwall's own listening socket failed (logged at most every {} s)",
                LOG_EVERY.as_secs()
            );
        }
    }
}

/// synwall's listening sockets, one per served address; see the module documentation.
#[derive(Debug)]
pub struct OwnListeners {
    poll: Poll,
    listeners: Vec<TcpListener>,
}

/// synwall's listening sockets taken to be accepted from in another event loop (the proxy's),
/// non-blocking; what is accepted is counted in the server's counters.
#[derive(Debug)]
pub struct OwnListenerSockets {
    pub listeners: Vec<TcpListener>,
    counters: Arc<OwnListenerCounters>,
}

/// What one `accept` on a listening socket came to.
pub enum Accepted {
    Connection(Connection),
    /// Nothing waits (WouldBlock).
    Empty,
    /// A client reset its connection while it waited, or a signal came (counted when an
    /// error): accept again.
    Again,
    /// Out of descriptors or memory (counted and logged): the socket stays readable, so wait
    /// a little before the next accept rather than spin.
    Failed,
}

impl OwnListenerSockets {
    /// Accepts one connection from listener `index`.
    pub fn accept(&self, index: usize) -> Accepted {
        accept_one(&self.listeners[index], &self.counters)
    }

    pub fn counters(&self) -> &OwnListenerCounters {
        &self.counters
    }
}

/// Why synwall could not listen on the served addresses itself.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("listening on {address} (answer-syns = kernel-first in repair mode): {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("creating the epoll instance of synwall's own listening sockets: {0}")]
    Poll(io::Error),
}

impl OwnListeners {
    /// Listens on every address of `served` with an accept queue of `backlog`.
    pub fn bind(served: &[SocketAddr], backlog: usize) -> Result<OwnListeners, ListenError> {
        let poll = Poll::new().map_err(ListenError::Poll)?;
        let mut listeners = Vec::with_capacity(served.len());
        for (index, &address) in served.iter().enumerate() {
            let fail = |source| ListenError::Bind { address, source };
            let listener = listen(address, backlog).map_err(fail)?;
            poll.registry()
                .register(
                    &mut SourceFd(&listener.as_raw_fd()),
                    Token(index),
                    Interest::READABLE,
                )
                .map_err(fail)?;
            listeners.push(listener);
        }
        Ok(OwnListeners { poll, listeners })
    }

    /// The sockets alone, for an event loop that accepts from them itself (counted in
    /// `counters`).
    pub fn into_sockets(self, counters: Arc<OwnListenerCounters>) -> OwnListenerSockets {
        OwnListenerSockets {
            listeners: self.listeners,
            counters,
        }
    }

    /// Accepts until `shutdown`, giving each connection to the application through `ready`.
    pub fn run(
        mut self,
        ready: &Sender<Connection>,
        counters: &OwnListenerCounters,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        // Held until this returns: the trigger drops its copy right after the wake, and a
        // waker closed before the wait returns takes its event with it.
        let waker = Arc::new(Waker::new(self.poll.registry(), WAKER)?);
        shutdown.also_wake({
            let waker = Arc::clone(&waker);
            move || {
                let _ = waker.wake();
            }
        });
        let mut events = Events::with_capacity(self.listeners.len().min(64));
        while !shutdown.is_triggered() {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for event in &events {
                if let Some(listener) = self.listeners.get(event.token().0)
                    && !accept_all(listener, ready, counters, shutdown)
                {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// A listening socket on `address`, non-blocking; an IPv6 one takes IPv6 only, so that a
/// served IPv4 wildcard can listen beside it.
fn listen(address: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Accepts what `listener` has (edge-triggered: until it would block; the accepted sockets
/// block, as the workers' do). Returns false once `shutdown` ends a wait for the application.
fn accept_all(
    listener: &TcpListener,
    ready: &Sender<Connection>,
    counters: &OwnListenerCounters,
    shutdown: &Shutdown,
) -> bool {
    loop {
        match accept_one(listener, counters) {
            Accepted::Connection(connection) => {
                if !handoff::deliver(connection, ready, shutdown) {
                    return false;
                }
                counters.count_delivered();
            }
            Accepted::Empty => return true,
            Accepted::Again => {}
            // Edge-triggered: look again after the pause, without a new event.
            Accepted::Failed => {
                if shutdown.wait_timeout(ERROR_PAUSE) {
                    return false;
                }
            }
        }
    }
}

/// One `accept` on `listener`, its errors counted.
fn accept_one(listener: &TcpListener, counters: &OwnListenerCounters) -> Accepted {
    let (stream, peer) = match listener.accept() {
        Ok(accepted) => accepted,
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Accepted::Empty,
        Err(error) if error.kind() == io::ErrorKind::Interrupted => return Accepted::Again,
        // The client reset the connection while it waited in the accept queue.
        Err(error) if error.kind() == io::ErrorKind::ConnectionAborted => {
            counters.fail(&error);
            return Accepted::Again;
        }
        Err(error) => {
            counters.fail(&error);
            return Accepted::Failed;
        }
    };
    match connection(stream, peer) {
        Some(connection) => Accepted::Connection(connection),
        None => {
            counters.fail(&io::Error::other("reading the accepted socket's state"));
            Accepted::Again
        }
    }
}

/// The [`Connection`] of an accepted socket, with the options the kernel negotiated; `None`
/// when the kernel cannot tell them (the socket is gone).
fn connection(stream: TcpStream, peer: SocketAddr) -> Option<Connection> {
    let local = stream.local_addr().ok()?;
    let info = tcp_info(&stream).ok()?;
    Some(Connection {
        stream,
        peer,
        local,
        completed_by: CompletedBy::KernelListener,
        options: negotiated(&info),
        handshake_duration: None,
        established_at: Instant::now(),
    })
}

/// The options of a socket the kernel's listener made, in the terms of a handoff's.
fn negotiated(info: &TcpInfo) -> NegotiatedOptions {
    let option_room = if info.timestamps {
        TIMESTAMP_OPTION_LEN
    } else {
        0
    };
    NegotiatedOptions {
        mss: u16::try_from(info.send_mss + option_room).unwrap_or(u16::MAX),
        window_scale: info
            .window_scale
            .map(|(send, receive)| WindowScale { send, receive }),
        sack_permitted: info.sack,
        timestamps: info.timestamps,
    }
}
