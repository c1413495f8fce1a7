//! The lab's built-in service: what synwall (or the kernel's listener) fronts. Every request
//! head gets a small HTTP/1.1 reply carrying [`REPLY_MARK`], so a client knows it got all the
//! way in. An HTTP/1.1 connection stays open for the next request (keep-alive; requests already
//! in the buffer are answered in turn); after an HTTP/1.0 request, or one with
//! `Connection: close`, the service closes first, as nginx does (TIME-WAIT stays with it).
//!
//! One thread: [`run`] is a `mio` event loop over the kernel listening socket it is given (TCP,
//! or a Unix stream socket behind synwall's proxy) and the connections it accepts, until the
//! stop flag is raised (looked at every [`STOP_WAIT`] at least). With
//! [`ServiceConfig::proxy_protocol`], every connection must start with a PROXY protocol header
//! (HAProxy's v1 text or v2 binary form) naming the real client, as when the service sits
//! behind a proxy that connects from a local address; a connection whose header is missing or
//! malformed is counted and closed.
//!
//! Counted ([`ServiceCounters`], read by the lab's sampler from another thread): connections
//! accepted, and of those the forged ones: whose client (from the PROXY header, else the peer
//! address) is in [`ServiceConfig::spoofed`]. In the lab, a connection from a spoofed source
//! can only be a forged handshake that got through.
//!
//! Bounded: at most [`ServiceConfig::max_connections`] are open, each with a fixed
//! [`MAX_REQUEST`]-byte buffer (2.1 KiB a connection with its bookkeeping: 134 MiB at the
//! default 65,536, plus the deadline queue, see `Slots`, and the kernel's socket buffers);
//! one more is closed at once and counted as turned away. A connection without a complete
//! request for [`ServiceConfig::idle_timeout`] is closed, so forged connections that never
//! send do not pile up. A request head (or PROXY header) longer than [`MAX_REQUEST`] closes
//! the connection unanswered. Connections live in reused slots: nothing is allocated per
//! event. Never panics.
//!
//! `Slots` and the HTTP head helpers are shared with the `peacetime` clients; the PROXY
//! protocol header is parsed in `proxy_protocol`.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};

use crate::lab::proxy_protocol::{ProxyHeader, parse_proxy_header};
use crate::lab::slots::Slots;
use crate::lab::topology::{SPOOFED_SOURCES, SPOOFED_SOURCES_V6};

/// Text every reply carries.
pub const REPLY_MARK: &str = "synwall lab";
/// The reply after which the connection stays open (HTTP/1.1 keep-alive).
const REPLY_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nsynwall lab\n";
/// The reply after which the service closes (HTTP/1.0, or `Connection: close`).
const REPLY_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nsynwall lab\n";
/// The longest the event loop waits before it looks at the stop flag again.
pub const STOP_WAIT: Duration = Duration::from_millis(50);
/// The longest request head, and the longest PROXY header: the size of a connection's buffer.
pub const MAX_REQUEST: usize = 2048;
/// Readiness events taken per wait.
const EVENTS: usize = 1024;
/// The listening socket's token; connections are under their slot's index.
const LISTENER: Token = Token(usize::MAX);

/// An IPv4 or IPv6 prefix, such as the lab's spoofed sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPrefix {
    network: IpAddr,
    length: u8,
}

impl IpPrefix {
    /// Parses `address/length`.
    pub fn parse(text: &str) -> Option<IpPrefix> {
        let (network, length) = text.split_once('/')?;
        let network: IpAddr = network.parse().ok()?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let length = length.parse().ok().filter(|length| *length <= bits)?;
        Some(IpPrefix { network, length })
    }

    /// Whether `address` is in the prefix (an IPv4-mapped IPv6 address as its IPv4 address).
    pub fn contains(&self, address: IpAddr) -> bool {
        let length = u32::from(self.length);
        match (self.network, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX.checked_shl(32 - length).unwrap_or(0);
                u32::from(address) & mask == u32::from(network) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX.checked_shl(128 - length).unwrap_or(0);
                u128::from(address) & mask == u128::from(network) & mask
            }
            _ => false,
        }
    }
}

/// How the service serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Every connection starts with a PROXY protocol header (v1 or v2) naming the client.
    pub proxy_protocol: bool,
    /// How long a connection may stay open without a complete request: from its accept, then
    /// from its last request.
    pub idle_timeout: Duration,
    /// Connections open at once, at most (2.1 KiB each); one more is closed at once.
    pub max_connections: usize,
    /// Clients counted as forged: those in any of these prefixes.
    pub spoofed: Vec<IpPrefix>,
}

impl Default for ServiceConfig {
    /// No PROXY header, 2 s idle timeout, 65,536 connections, the lab's spoofed sources.
    fn default() -> ServiceConfig {
        let spoofed = [SPOOFED_SOURCES, SPOOFED_SOURCES_V6]
            .map(|prefix| IpPrefix::parse(prefix).expect("the lab's spoofed sources parse"));
        ServiceConfig {
            proxy_protocol: false,
            idle_timeout: Duration::from_secs(2),
            max_connections: 65_536,
            spoofed: spoofed.to_vec(),
        }
    }
}

/// What the service counted; shared with the lab's sampler.
#[derive(Debug, Default)]
pub struct ServiceCounters {
    /// Connections accepted, turned-away ones included.
    pub accepted: AtomicU64,
    /// Of those, connections whose client is in [`ServiceConfig::spoofed`] (with the PROXY
    /// protocol, known once the header is read: turned-away connections are not looked at).
    pub forged: AtomicU64,
    /// Requests answered in full (the whole reply written).
    pub requests: AtomicU64,
    /// Connections closed at once because [`ServiceConfig::max_connections`] were open.
    pub turned_away: AtomicU64,
    /// Connections closed after [`ServiceConfig::idle_timeout`] without a complete request.
    pub idle_closed: AtomicU64,
    /// Connections closed because their PROXY header was missing or malformed.
    pub bad_proxy_header: AtomicU64,
}

/// A listening socket the service can serve.
#[derive(Debug)]
pub enum ServiceListener {
    Tcp(std::net::TcpListener),
    /// Behind synwall's proxy with a Unix-socket upstream; the clients are known from their
    /// PROXY headers only.
    Unix(std::os::unix::net::UnixListener),
}

impl From<std::net::TcpListener> for ServiceListener {
    fn from(listener: std::net::TcpListener) -> ServiceListener {
        ServiceListener::Tcp(listener)
    }
}

impl From<std::os::unix::net::UnixListener> for ServiceListener {
    fn from(listener: std::os::unix::net::UnixListener) -> ServiceListener {
        ServiceListener::Unix(listener)
    }
}

/// Serves the connections of `listener` until `stop` is raised or accepting fails.
pub fn run(
    listener: ServiceListener,
    config: &ServiceConfig,
    counters: &ServiceCounters,
    stop: &AtomicBool,
) -> io::Result<()> {
    match listener {
        ServiceListener::Tcp(listener) => {
            listener.set_nonblocking(true)?;
            serve(TcpListener::from_std(listener), config, counters, stop)
        }
        ServiceListener::Unix(listener) => {
            listener.set_nonblocking(true)?;
            serve(UnixListener::from_std(listener), config, counters, stop)
        }
    }
}

/// What the service needs of a listening socket.
trait Accept: Source {
    type Stream: Read + Write + Source;

    /// The next connection, and its client's address where the socket has one.
    fn accept_next(&self) -> io::Result<(Self::Stream, Option<IpAddr>)>;
}

impl Accept for TcpListener {
    type Stream = mio::net::TcpStream;

    fn accept_next(&self) -> io::Result<(Self::Stream, Option<IpAddr>)> {
        let (stream, peer) = self.accept()?;
        Ok((stream, Some(peer.ip())))
    }
}

impl Accept for UnixListener {
    type Stream = mio::net::UnixStream;

    fn accept_next(&self) -> io::Result<(Self::Stream, Option<IpAddr>)> {
        let (stream, _) = self.accept()?;
        Ok((stream, None))
    }
}

fn serve<L: Accept>(
    listener: L,
    config: &ServiceConfig,
    counters: &ServiceCounters,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut service = Service {
        listener,
        poll: Poll::new()?,
        connections: Slots::new(config.max_connections),
        config,
        counters,
    };
    service
        .poll
        .registry()
        .register(&mut service.listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(EVENTS);
    while !stop.load(Ordering::Relaxed) {
        let wait = service
            .connections
            .next_deadline()
            .map_or(STOP_WAIT, |deadline| {
                deadline
                    .saturating_duration_since(Instant::now())
                    .min(STOP_WAIT)
            });
        if let Err(error) = service.poll.poll(&mut events, Some(wait)) {
            if error.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        for event in &events {
            match event.token() {
                LISTENER => service.accept_all()?,
                token => service.serve(token),
            }
        }
        service.close_idle(Instant::now());
    }
    Ok(())
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The event loop's state.
struct Service<'a, L: Accept> {
    listener: L,
    poll: Poll,
    connections: Slots<Connection<L::Stream>>,
    config: &'a ServiceConfig,
    counters: &'a ServiceCounters,
}

impl<L: Accept> Service<'_, L> {
    /// Accepts every connection waiting in the listening socket's queue.
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            let (stream, peer) = match self.listener.accept_next() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // The client left before it was accepted, or a signal came.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(error) => return Err(error),
            };
            count(&self.counters.accepted);
            if !self.config.proxy_protocol {
                self.count_client(peer);
            }
            let connection = Connection::new(stream, peer, self.config.proxy_protocol);
            let deadline = Instant::now() + self.config.idle_timeout;
            let (token, connection) = match self.connections.insert(connection, deadline) {
                Ok(inserted) => inserted,
                Err(turned_away) => {
                    count(&self.counters.turned_away);
                    drop(turned_away);
                    continue;
                }
            };
            let registered = self.poll.registry().register(
                &mut connection.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(error) = registered {
                self.connections.remove(token);
                return Err(error);
            }
        }
    }

    fn count_client(&self, client: Option<IpAddr>) {
        if let Some(client) = client
            && self
                .config
                .spoofed
                .iter()
                .any(|prefix| prefix.contains(client))
        {
            count(&self.counters.forged);
        }
    }

    /// Serves the connection under `token` as far as its socket allows.
    fn serve(&mut self, token: Token) {
        // Closed earlier in this round of events.
        let Some(connection) = self.connections.get_mut(token) else {
            return;
        };
        match connection.serve(self.counters) {
            Served::Open { requested: false } => {}
            Served::Open { requested: true } => {
                let deadline = Instant::now() + self.config.idle_timeout;
                self.connections.set_deadline(token, deadline);
            }
            Served::Client(client) => {
                self.count_client(client);
                self.serve(token);
            }
            Served::Closed => {
                self.connections.remove(token);
            }
        }
    }

    fn close_idle(&mut self, now: Instant) {
        while let Some(idle) = self.connections.pop_expired(now) {
            count(&self.counters.idle_closed);
            drop(idle);
        }
    }
}

/// One accepted connection.
struct Connection<S> {
    stream: S,
    /// `None` on a Unix socket.
    peer: Option<IpAddr>,
    /// The PROXY header has yet to come (with [`ServiceConfig::proxy_protocol`]).
    awaits_proxy_header: bool,
    /// Bytes received and not yet handled.
    received: [u8; MAX_REQUEST],
    length: usize,
    /// The rest of the reply being written (empty when none).
    unsent: &'static [u8],
    /// Close once `unsent` is written.
    closing: bool,
}

/// What serving a connection came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// Waiting for its socket; `requested` if a complete request came (the idle clock
    /// restarts).
    Open { requested: bool },
    /// Its PROXY header named `client` (`None`: a LOCAL header on a Unix socket); serve it
    /// again for what follows.
    Client(Option<IpAddr>),
    /// Answered and done, closed by the peer, failed, or refused (counted where it applies).
    Closed,
}

impl<S: Read + Write> Connection<S> {
    fn new(stream: S, peer: Option<IpAddr>, proxy_protocol: bool) -> Connection<S> {
        Connection {
            stream,
            peer,
            awaits_proxy_header: proxy_protocol,
            received: [0; MAX_REQUEST],
            length: 0,
            unsent: &[],
            closing: false,
        }
    }

    /// Writes what is due, reads what came and answers every complete request, until the
    /// socket would block or the connection is done.
    fn serve(&mut self, counters: &ServiceCounters) -> Served {
        let mut requested = false;
        loop {
            while !self.unsent.is_empty() {
                match self.stream.write(self.unsent) {
                    Ok(written) => {
                        self.unsent = &self.unsent[written..];
                        if self.unsent.is_empty() {
                            count(&counters.requests);
                        }
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return Served::Open { requested };
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Served::Closed,
                }
            }
            if self.closing {
                return Served::Closed;
            }
            if self.awaits_proxy_header {
                match parse_proxy_header(&self.received[..self.length]) {
                    ProxyHeader::Incomplete => {}
                    ProxyHeader::Malformed => {
                        count(&counters.bad_proxy_header);
                        return Served::Closed;
                    }
                    ProxyHeader::Parsed { length, client } => {
                        self.awaits_proxy_header = false;
                        self.consume(length);
                        return Served::Client(client.or(self.peer));
                    }
                }
            } else if let Some(length) = head_length(&self.received[..self.length]) {
                let keep_alive = keeps_alive(&self.received[..length]);
                self.unsent = if keep_alive {
                    REPLY_KEEP_ALIVE
                } else {
                    REPLY_CLOSE
                };
                self.closing = !keep_alive;
                self.consume(length);
                requested = true;
                continue;
            }
            if self.length == MAX_REQUEST {
                return Served::Closed;
            }
            match self.stream.read(&mut self.received[self.length..]) {
                Ok(0) => return Served::Closed,
                Ok(read) => self.length += read,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Served::Open { requested };
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Served::Closed,
            }
        }
    }

    /// Drops the first `length` bytes received.
    fn consume(&mut self, length: usize) {
        self.received.copy_within(length..self.length, 0);
        self.length -= length;
    }
}

/// The length of an HTTP message head at the start of `bytes`, blank line included, once it
/// is all there.
pub(super) fn head_length(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The values of the header fields called `name` (any case) in a message head, trimmed.
pub(super) fn header_values<'a>(head: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a [u8]> {
    head.split(|&byte| byte == b'\n')
        .skip(1)
        .filter_map(move |line| {
            let colon = line.iter().position(|&byte| byte == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name.as_bytes())
                .then(|| line[colon + 1..].trim_ascii())
        })
}

/// Whether the connection stays open after the request with this head: HTTP/1.1 without
/// `Connection: close`.
fn keeps_alive(head: &[u8]) -> bool {
    let request_line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    request_line.ends_with(b" HTTP/1.1")
        && !header_values(head, "connection").any(|value| {
            value
                .split(|&byte| byte == b',')
                .any(|option| option.trim_ascii().eq_ignore_ascii_case(b"close"))
        })
}

/// The service on a thread of its own, stopped and joined when dropped: the HTTP service of
/// the tests, on a listening socket they bound (in whichever namespace).
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    counters: Arc<ServiceCounters>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Running {
    /// Serves `listener` with `config` until stopped.
    pub fn start(listener: impl Into<ServiceListener>, config: ServiceConfig) -> Running {
        let listener = listener.into();
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ServiceCounters::default());
        let thread = {
            let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
            std::thread::spawn(move || run(listener, &config, &counters, &stop))
        };
        Running {
            stop,
            counters,
            thread: Some(thread),
        }
    }

    /// What it has counted so far.
    pub fn counters(&self) -> &ServiceCounters {
        &self.counters
    }

    /// Stops it (within [`STOP_WAIT`]); its error, if it failed.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(served)) => served,
            Some(Err(_)) => Err(io::Error::other("the service's thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

#[cfg(test)]
pub(super) mod testing;
#[cfg(test)]
mod tests;
