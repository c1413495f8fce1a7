//! The lab's built-in service: what synwall (or the kernel's listener) fronts. Every request
//! head gets a small HTTP/1.1 reply carrying [`REPLY_MARK`], so a client knows it got all the
//! way in. An HTTP/1.1 connection stays open for the next request (keep-alive; requests already
//! in the buffer are answered in turn); after an HTTP/1.0 request, or one with
//! `Connection: close`, the service closes first, as nginx does (TIME-WAIT stays with it).
//!
//! One thread: [`run`] is a `mio` event loop over the kernel listening socket it is given and
//! the connections it accepts, until the stop flag is raised (looked at every [`STOP_WAIT`] at
//! least). With [`ServiceConfig::proxy_protocol`], every connection must start with a PROXY
//! protocol header (HAProxy's v1 text or v2 binary form) naming the real client, as when the
//! service sits behind a proxy that connects from a local address; a connection whose header
//! is missing or malformed is counted and closed.
//!
//! Counted ([`ServiceCounters`], read by the lab's sampler from another thread): connections
//! accepted, and of those the forged ones: whose client (from the PROXY header, else the peer
//! address) is in [`ServiceConfig::spoofed`]. In the lab, a connection from a spoofed source
//! can only be a forged handshake that got through.
//!
//! Bounded: at most [`ServiceConfig::max_connections`] are open, each with a fixed
//! [`MAX_REQUEST`]-byte buffer (2.1 KiB a connection with its bookkeeping: 134 MiB at the
//! default 65,536, plus the deadline queue, see [`Slots`], and the kernel's socket buffers);
//! one more is closed at once and counted as turned away. A connection without a complete
//! request for [`ServiceConfig::idle_timeout`] is closed, so forged connections that never
//! send do not pile up. A request head (or PROXY header) longer than [`MAX_REQUEST`] closes
//! the connection unanswered. Connections live in reused slots: nothing is allocated per
//! event. Never panics.
//!
//! [`Slots`] and the HTTP head helpers are shared with the `peacetime` clients.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::lab::topology::{SPOOFED_SOURCES, SPOOFED_SOURCES_V6};

/// Text every reply carries.
pub const REPLY_MARK: &str = "synwall-lab";
/// The reply after which the connection stays open (HTTP/1.1 keep-alive).
const REPLY_KEEP_ALIVE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nsynwall-lab\n";
/// The reply after which the service closes (HTTP/1.0, or `Connection: close`).
const REPLY_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: close\r\n\r\nsynwall-lab\n";
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

/// Serves the connections of `listener` until `stop` is raised or accepting fails.
pub fn run(
    listener: std::net::TcpListener,
    config: &ServiceConfig,
    counters: &ServiceCounters,
    stop: &AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut service = Service {
        listener: TcpListener::from_std(listener),
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
struct Service<'a> {
    listener: TcpListener,
    poll: Poll,
    connections: Slots<Connection>,
    config: &'a ServiceConfig,
    counters: &'a ServiceCounters,
}

impl Service<'_> {
    /// Accepts every connection waiting in the listening socket's queue.
    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            let (stream, peer) = match self.listener.accept() {
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
                self.count_client(peer.ip());
            }
            let connection = Connection::new(stream, peer.ip(), self.config.proxy_protocol);
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

    fn count_client(&self, client: IpAddr) {
        if self
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
struct Connection {
    stream: TcpStream,
    peer: IpAddr,
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
    /// Its PROXY header named `client`; serve it again for what follows.
    Client(IpAddr),
    /// Answered and done, closed by the peer, failed, or refused (counted where it applies).
    Closed,
}

impl Connection {
    fn new(stream: TcpStream, peer: IpAddr, proxy_protocol: bool) -> Connection {
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
                        return Served::Client(client.unwrap_or(self.peer));
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

/// The first 12 bytes of a v2 PROXY header.
const PROXY_V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// How a v1 PROXY header starts.
const PROXY_V1_START: &[u8] = b"PROXY ";
/// The longest v1 header, CRLF included.
const PROXY_V1_MAX: usize = 107;

/// A PROXY protocol header at the start of a connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProxyHeader {
    /// Not all there yet.
    Incomplete,
    Malformed,
    /// `length` bytes long, naming `client`; `None` when the header says to use the
    /// connection's own peer (v1 `UNKNOWN`, v2 `LOCAL` or an unspecified or Unix family).
    Parsed {
        length: usize,
        client: Option<IpAddr>,
    },
}

fn parse_proxy_header(bytes: &[u8]) -> ProxyHeader {
    if bytes.starts_with(PROXY_V2_SIGNATURE) {
        parse_proxy_v2(bytes)
    } else if bytes.starts_with(PROXY_V1_START) {
        parse_proxy_v1(bytes)
    } else if PROXY_V2_SIGNATURE.starts_with(bytes) || PROXY_V1_START.starts_with(bytes) {
        ProxyHeader::Incomplete
    } else {
        ProxyHeader::Malformed
    }
}

/// `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`, or
/// `PROXY UNKNOWN<anything>\r\n`.
fn parse_proxy_v1(bytes: &[u8]) -> ProxyHeader {
    let Some(end) = bytes.windows(2).position(|window| window == b"\r\n") else {
        return if bytes.len() < PROXY_V1_MAX {
            ProxyHeader::Incomplete
        } else {
            ProxyHeader::Malformed
        };
    };
    let length = end + 2;
    let Ok(line) = std::str::from_utf8(&bytes[..end]) else {
        return ProxyHeader::Malformed;
    };
    let mut fields = line.split(' ').skip(1);
    let family = fields.next().unwrap_or_default();
    let client = match family {
        _ if length > PROXY_V1_MAX => return ProxyHeader::Malformed,
        "UNKNOWN" => None,
        "TCP4" | "TCP6" => match parse_proxy_v1_client(family, fields) {
            Some(client) => Some(client),
            None => return ProxyHeader::Malformed,
        },
        _ => return ProxyHeader::Malformed,
    };
    ProxyHeader::Parsed { length, client }
}

/// The source of `<source> <destination> <source port> <destination port>` in a `TCP4` or
/// `TCP6` line, if the line is well-formed.
fn parse_proxy_v1_client<'a>(
    family: &str,
    mut fields: impl Iterator<Item = &'a str>,
) -> Option<IpAddr> {
    let address = |field: &str| match family {
        "TCP4" => field.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
        _ => field.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
    };
    let source = address(fields.next()?)?;
    address(fields.next()?)?;
    for _port in 0..2 {
        fields.next()?.parse::<u16>().ok()?;
    }
    fields.next().is_none().then_some(source)
}

/// The signature, version and command, family and protocol, the length of what follows (big
/// endian), then the addresses (and TLVs, ignored).
fn parse_proxy_v2(bytes: &[u8]) -> ProxyHeader {
    let Some(&[version_command, family_protocol, length_high, length_low]) = bytes.get(12..16)
    else {
        return ProxyHeader::Incomplete;
    };
    let length = 16 + usize::from(u16::from_be_bytes([length_high, length_low]));
    if version_command >> 4 != 2 || family_protocol & 0x0f > 2 || length > MAX_REQUEST {
        return ProxyHeader::Malformed;
    }
    let Some(addresses) = bytes.get(16..length) else {
        return ProxyHeader::Incomplete;
    };
    let client = match (version_command & 0x0f, family_protocol >> 4) {
        // LOCAL: the proxy's own connection (a health check); the addresses are ignored.
        (0, _) | (1, 0 | 3) => None,
        (1, 1) => match addresses.get(..4).map(<[u8; 4]>::try_from) {
            Some(Ok(source)) if addresses.len() >= 12 => Some(IpAddr::from(source)),
            _ => return ProxyHeader::Malformed,
        },
        (1, 2) => match addresses.get(..16).map(<[u8; 16]>::try_from) {
            Some(Ok(source)) if addresses.len() >= 36 => Some(IpAddr::from(source)),
            _ => return ProxyHeader::Malformed,
        },
        _ => return ProxyHeader::Malformed,
    };
    ProxyHeader::Parsed { length, client }
}

/// Queued deadlines beyond twice the occupied slots before the queue is compacted.
const SPARE_DEADLINES: usize = 1024;

/// The sockets of an event loop, each in a slot whose index is its `mio` token, each with a
/// deadline; the service's connections and the peacetime clients.
///
/// Slots are reused, so nothing is allocated once the most ever open are open again (at most
/// `limit`). Deadlines wait in a queue in the order they were set, which is their time order
/// because every deadline is "now + one fixed timeout" of its loop (one set out of order is
/// met late, never early). Setting a new deadline leaves the old one queued, skipped when it
/// comes up; the queue is compacted when it holds more than twice as many deadlines as
/// occupied slots, plus [`SPARE_DEADLINES`], so it holds at most `2 × limit + 1024` of
/// 32 bytes each.
pub(super) struct Slots<T> {
    slots: Vec<Slot<T>>,
    vacant: Vec<usize>,
    occupied: usize,
    limit: usize,
    deadlines: VecDeque<Deadline>,
}

struct Slot<T> {
    /// Tells the slot's successive occupants apart.
    generation: u32,
    deadline: Instant,
    value: Option<T>,
}

#[derive(Debug, Clone, Copy)]
struct Deadline {
    index: usize,
    generation: u32,
    at: Instant,
}

impl<T> Slots<T> {
    /// Room for `limit` occupants at once.
    pub(super) fn new(limit: usize) -> Slots<T> {
        Slots {
            slots: Vec::new(),
            vacant: Vec::new(),
            occupied: 0,
            limit,
            deadlines: VecDeque::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.occupied
    }

    pub(super) fn is_full(&self) -> bool {
        self.occupied >= self.limit
    }

    /// Puts `value` in a slot until `deadline`: its token and where it is now, or `value`
    /// back when `limit` slots are occupied.
    pub(super) fn insert(&mut self, value: T, deadline: Instant) -> Result<(Token, &mut T), T> {
        if self.is_full() {
            return Err(value);
        }
        let index = match self.vacant.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    deadline,
                    value: None,
                });
                self.slots.len() - 1
            }
        };
        self.occupied += 1;
        self.slots[index].value = Some(value);
        self.set_deadline(Token(index), deadline);
        let value = self.slots[index].value.as_mut().expect("just put there");
        Ok((Token(index), value))
    }

    pub(super) fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        self.slots.get_mut(token.0)?.value.as_mut()
    }

    /// Takes the occupant of `token`'s slot out; the slot is free again.
    pub(super) fn remove(&mut self, token: Token) -> Option<T> {
        let slot = self.slots.get_mut(token.0)?;
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.vacant.push(token.0);
        self.occupied -= 1;
        Some(value)
    }

    /// Replaces the deadline of `token`'s occupant.
    pub(super) fn set_deadline(&mut self, token: Token, at: Instant) {
        let Some(slot) = self.slots.get_mut(token.0) else {
            return;
        };
        if slot.value.is_none() {
            return;
        }
        slot.deadline = at;
        let deadline = Deadline {
            index: token.0,
            generation: slot.generation,
            at,
        };
        if self.deadlines.len() >= 2 * self.occupied + SPARE_DEADLINES {
            self.deadlines
                .retain(|deadline| Self::is_current(&self.slots, deadline));
        }
        self.deadlines.push_back(deadline);
    }

    /// The earliest deadline of an occupant, if any.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(deadline) = self.deadlines.front() {
            if Self::is_current(&self.slots, deadline) {
                return Some(deadline.at);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Takes out an occupant whose deadline is `now` or earlier, if any.
    pub(super) fn pop_expired(&mut self, now: Instant) -> Option<T> {
        while self.next_deadline()? <= now {
            let deadline = self.deadlines.pop_front()?;
            if let Some(value) = self.remove(Token(deadline.index)) {
                return Some(value);
            }
        }
        None
    }

    /// Whether `deadline` is the one set last for the slot's current occupant.
    fn is_current(slots: &[Slot<T>], deadline: &Deadline) -> bool {
        slots.get(deadline.index).is_some_and(|slot| {
            slot.value.is_some()
                && slot.generation == deadline.generation
                && slot.deadline == deadline.at
        })
    }
}

#[cfg(test)]
pub(super) mod testing {
    //! The service on loopback, for this module's tests and the peacetime clients'.
    use std::net::{Ipv4Addr, SocketAddr};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use super::{ServiceConfig, ServiceCounters, run};

    /// Raises the stop flag when dropped, also when a test panics (the scope can end).
    struct StopOnDrop<'a>(&'a AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Runs the service on 127.0.0.1 with `config` while `test` runs with its address and
    /// counters; fails if the service failed.
    pub(in crate::lab) fn serving(
        config: &ServiceConfig,
        test: impl FnOnce(SocketAddr, &ServiceCounters),
    ) {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let counters = ServiceCounters::default();
        let stop = AtomicBool::new(false);
        thread::scope(|scope| {
            let service = scope.spawn(|| run(listener, config, &counters, &stop));
            {
                let _stop = StopOnDrop(&stop);
                test(address, &counters);
            }
            service.join().unwrap().unwrap();
        });
    }

    /// Waits until `condition` holds, failing after 10 s.
    #[track_caller]
    pub(in crate::lab) fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{serving, wait_until};
    use super::*;
    use std::net::{SocketAddr, TcpStream};
    use std::thread;

    /// Waits until `counter` reads `expected` (it may be counted just after a close is seen).
    #[track_caller]
    fn expect_count(counter: &AtomicU64, expected: u64) {
        wait_until(&format!("a count of {expected}"), || {
            counter.load(Ordering::Relaxed) == expected
        });
    }

    /// A blocking client of the service with a safety timeout on every read.
    #[track_caller]
    fn client(address: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Everything until the service closes; a reset counts as a close.
    #[track_caller]
    fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
        let mut received = Vec::new();
        if let Err(error) = stream.read_to_end(&mut received) {
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
        }
        received
    }

    /// Sends `bytes`, then reads until the service closes.
    #[track_caller]
    fn exchange(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
        let mut stream = client(address);
        stream.write_all(bytes).unwrap();
        read_to_close(&mut stream)
    }

    fn proxy_v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = PROXY_V2_SIGNATURE.to_vec();
        header.extend([0x20 | command, family]);
        header.extend((addresses.len() as u16).to_be_bytes());
        header.extend(addresses);
        header
    }

    fn proxy_v2_tcp4(source: Ipv4Addr) -> Vec<u8> {
        let mut addresses = source.octets().to_vec();
        addresses.extend(Ipv4Addr::new(198, 18, 0, 1).octets());
        addresses.extend(40_000u16.to_be_bytes());
        addresses.extend(80u16.to_be_bytes());
        proxy_v2(1, 0x11, &addresses)
    }

    const GET_10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
    const GET_11: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";

    #[test]
    fn test_replies_carry_the_mark_and_frame_their_body() {
        for reply in [REPLY_KEEP_ALIVE, REPLY_CLOSE] {
            let head = head_length(reply).unwrap();
            let length: Vec<&[u8]> = header_values(&reply[..head], "content-length").collect();
            let length: usize = std::str::from_utf8(length[0]).unwrap().parse().unwrap();
            assert_eq!(head + length, reply.len());
            assert!(String::from_utf8_lossy(&reply[head..]).contains(REPLY_MARK));
        }
    }

    #[test]
    fn test_keeps_alive_only_http11_without_close() {
        assert!(keeps_alive(GET_11));
        assert!(!keeps_alive(GET_10));
        assert!(!keeps_alive(
            b"GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n"
        ));
        assert!(keeps_alive(
            b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
        ));
        assert!(!keeps_alive(b"nonsense\r\n\r\n"));
    }

    #[test]
    fn test_ip_prefix() {
        let v4 = IpPrefix::parse("198.18.128.0/17").unwrap();
        let inside = |a, b| v4.contains(Ipv4Addr::new(198, 18, a, b).into());
        assert!(inside(128, 0) && inside(255, 255));
        assert!(!inside(127, 255) && !inside(0, 2));
        let mapped = Ipv4Addr::new(198, 18, 200, 1).to_ipv6_mapped();
        assert!(v4.contains(mapped.into()));
        assert!(!v4.contains(Ipv6Addr::LOCALHOST.into()));
        let v6 = IpPrefix::parse("2001:2:0:8000::/49").unwrap();
        let inside = |text: &str| v6.contains(text.parse().unwrap());
        assert!(inside("2001:2:0:8000::1") && inside("2001:2:0:ffff:ffff::"));
        assert!(!inside("2001:2::2") && !inside("2001:3:0:8000::"));
        assert!(!v6.contains(Ipv4Addr::new(198, 18, 200, 1).into()));
        let everything = IpPrefix::parse("0.0.0.0/0").unwrap();
        assert!(everything.contains(Ipv4Addr::BROADCAST.into()));
        assert!(
            IpPrefix::parse("::/0")
                .unwrap()
                .contains(Ipv6Addr::LOCALHOST.into())
        );
        assert_eq!(IpPrefix::parse("10.0.0.0/33"), None);
        assert_eq!(IpPrefix::parse("::/129"), None);
        assert_eq!(IpPrefix::parse("10.0.0.0"), None);
        let default = ServiceConfig::default().spoofed;
        assert!(default.iter().any(|prefix| prefix.contains(mapped.into())));
    }

    #[test]
    fn test_proxy_headers_parse() {
        let v1 = b"PROXY TCP4 198.18.200.7 198.18.0.1 40000 80\r\nGET";
        let parsed = |length, client: IpAddr| ProxyHeader::Parsed {
            length,
            client: Some(client),
        };
        let source: IpAddr = Ipv4Addr::new(198, 18, 200, 7).into();
        assert_eq!(parse_proxy_header(v1), parsed(v1.len() - 3, source));
        let v1_tcp6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 40000 80\r\n";
        let source_v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            parse_proxy_header(v1_tcp6),
            parsed(v1_tcp6.len(), source_v6.into())
        );
        let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(
            parse_proxy_header(unknown),
            ProxyHeader::Parsed {
                length: unknown.len(),
                client: None
            }
        );
        let v2 = proxy_v2_tcp4(Ipv4Addr::new(198, 18, 200, 7));
        assert_eq!(parse_proxy_header(&v2), parsed(v2.len(), source));
        let mut v6_addresses = [0u8; 36];
        v6_addresses[..16].copy_from_slice(&source_v6.octets());
        let v2_tcp6 = proxy_v2(1, 0x21, &v6_addresses);
        assert_eq!(parse_proxy_header(&v2_tcp6), parsed(52, source_v6.into()));
        let local = proxy_v2(0, 0x00, &[]);
        assert_eq!(
            parse_proxy_header(&local),
            ProxyHeader::Parsed {
                length: 16,
                client: None
            }
        );
        // Every strict prefix of a header is incomplete.
        for header in [&v1[..v1.len() - 3], v1_tcp6, &v2, &v2_tcp6] {
            for end in 0..header.len() {
                assert_eq!(parse_proxy_header(&header[..end]), ProxyHeader::Incomplete);
            }
        }
    }

    #[test]
    fn test_proxy_headers_malformed() {
        let malformed = |bytes: &[u8]| parse_proxy_header(bytes) == ProxyHeader::Malformed;
        assert!(malformed(GET_10));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 40000\r\n"));
        assert!(malformed(b"PROXY TCP4 2001:db8::1 198.18.0.1 1 2\r\n"));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 1 70000\r\n"));
        assert!(malformed(b"PROXY TCP4 198.18.0.2 198.18.0.1 1 2 3\r\n"));
        assert!(malformed(b"PROXY UDP4 198.18.0.2 198.18.0.1 1 2\r\n"));
        assert!(malformed(
            &[b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100]].concat()
        ));
        let mut version_1 = proxy_v2_tcp4(Ipv4Addr::LOCALHOST);
        version_1[12] = 0x11;
        assert!(malformed(&version_1));
        assert!(malformed(&proxy_v2(1, 0x11, &[198, 18, 0, 2])));
        assert!(malformed(&proxy_v2(2, 0x11, &[0; 12])));
        assert!(malformed(&proxy_v2(1, 0x13, &[0; 12])));
        assert!(malformed(&proxy_v2(1, 0x41, &[0; 12])));
        let mut too_long = proxy_v2(1, 0x11, &[0; 12]);
        too_long[14..16].copy_from_slice(&(MAX_REQUEST as u16).to_be_bytes());
        assert!(malformed(&too_long));
    }

    #[test]
    fn test_slots_deadlines_in_order_and_stale_ones_skipped() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut slots = Slots::new(2);
        let (first, _) = slots.insert("first", at(10)).unwrap();
        let (second, _) = slots.insert("second", at(20)).unwrap();
        assert_eq!(slots.insert("third", at(30)).err(), Some("third"));
        slots.set_deadline(first, at(30));
        assert_eq!(slots.next_deadline(), Some(at(20)));
        assert_eq!(slots.pop_expired(at(19)), None);
        assert_eq!(slots.pop_expired(at(20)), Some("second"));
        assert_eq!(slots.pop_expired(at(29)), None);
        // The second's slot is reused; its old deadline does not apply to the newcomer.
        let (reused, _) = slots.insert("reused", at(40)).unwrap();
        assert_eq!(reused, second);
        assert_eq!(slots.remove(first), Some("first"));
        assert_eq!(slots.remove(first), None);
        assert_eq!(slots.pop_expired(at(39)), None);
        assert_eq!(slots.pop_expired(at(40)), Some("reused"));
        assert_eq!((slots.len(), slots.next_deadline()), (0, None));
        assert!(slots.deadlines.is_empty());
    }

    #[test]
    fn test_slots_deadline_queue_stays_bounded() {
        let start = Instant::now();
        let mut slots = Slots::new(4);
        let (token, _) = slots.insert((), start).unwrap();
        for ms in 1..10_000 {
            slots.set_deadline(token, start + Duration::from_millis(ms));
            assert!(slots.deadlines.len() <= 2 * slots.limit + SPARE_DEADLINES);
        }
        assert_eq!(
            slots.next_deadline(),
            Some(start + Duration::from_millis(9_999))
        );
    }

    #[test]
    fn test_http10_answered_and_closed() {
        let config = ServiceConfig::default();
        serving(&config, |address, counters| {
            assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
            expect_count(&counters.requests, 1);
            expect_count(&counters.accepted, 1);
            expect_count(&counters.forged, 0);
        });
    }

    #[test]
    fn test_peers_in_the_spoofed_range_are_forged() {
        let config = ServiceConfig {
            spoofed: vec![IpPrefix::parse("127.0.0.0/8").unwrap()],
            ..ServiceConfig::default()
        };
        serving(&config, |address, counters| {
            assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
            expect_count(&counters.forged, 1);
        });
    }

    #[test]
    fn test_http11_keep_alive_answers_several_requests() {
        let config = ServiceConfig::default();
        serving(&config, |address, counters| {
            let mut stream = client(address);
            let mut reply = [0u8; REPLY_KEEP_ALIVE.len()];
            for _ in 0..3 {
                stream.write_all(GET_11).unwrap();
                stream.read_exact(&mut reply).unwrap();
                assert_eq!(reply, REPLY_KEEP_ALIVE);
            }
            // Two requests in one segment are answered in turn, the second one closing.
            let close = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
            stream.write_all(&[GET_11, close].concat()).unwrap();
            let replies = read_to_close(&mut stream);
            assert_eq!(replies, [REPLY_KEEP_ALIVE, REPLY_CLOSE].concat());
            expect_count(&counters.accepted, 1);
            expect_count(&counters.requests, 5);
        });
    }

    #[test]
    fn test_connection_close_honoured() {
        let config = ServiceConfig::default();
        serving(&config, |address, counters| {
            let request = b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
            assert_eq!(exchange(address, request), REPLY_CLOSE);
            expect_count(&counters.requests, 1);
        });
    }

    #[test]
    fn test_proxy_headers_give_the_client_address() {
        let config = ServiceConfig {
            proxy_protocol: true,
            ..ServiceConfig::default()
        };
        let spoofed = Ipv4Addr::new(198, 18, 200, 7);
        let legit = Ipv4Addr::new(198, 18, 0, 2);
        let headers = [
            format!("PROXY TCP4 {spoofed} 198.18.0.1 40000 80\r\n").into_bytes(),
            format!("PROXY TCP4 {legit} 198.18.0.1 40000 80\r\n").into_bytes(),
            proxy_v2_tcp4(spoofed),
            proxy_v2_tcp4(legit),
            // The peer, 127.0.0.1, is the client.
            b"PROXY UNKNOWN\r\n".to_vec(),
            proxy_v2(0, 0, &[]),
        ];
        serving(&config, |address, counters| {
            for header in &headers {
                assert_eq!(exchange(address, &[header, GET_10].concat()), REPLY_CLOSE);
            }
            // The header and the request in separate segments.
            let mut stream = client(address);
            stream.write_all(&proxy_v2_tcp4(spoofed)).unwrap();
            expect_count(&counters.forged, 3);
            stream.write_all(GET_10).unwrap();
            assert_eq!(read_to_close(&mut stream), REPLY_CLOSE);
            expect_count(&counters.accepted, 7);
            expect_count(&counters.requests, 7);
            expect_count(&counters.bad_proxy_header, 0);
        });
    }

    #[test]
    fn test_missing_proxy_header_counted_and_closed() {
        let config = ServiceConfig {
            proxy_protocol: true,
            ..ServiceConfig::default()
        };
        serving(&config, |address, counters| {
            assert_eq!(exchange(address, GET_10), b"");
            expect_count(&counters.bad_proxy_header, 1);
            expect_count(&counters.requests, 0);
        });
    }

    #[test]
    fn test_idle_connections_closed_after_the_timeout() {
        let idle_timeout = Duration::from_millis(200);
        let config = ServiceConfig {
            idle_timeout,
            ..ServiceConfig::default()
        };
        serving(&config, |address, counters| {
            let started = Instant::now();
            let mut silent = client(address);
            let mut partial = client(address);
            partial.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            assert_eq!(read_to_close(&mut silent), b"");
            assert_eq!(read_to_close(&mut partial), b"");
            assert!(started.elapsed() >= idle_timeout);
            expect_count(&counters.idle_closed, 2);
            // A keep-alive connection gets the timeout again after each request: it outlives
            // the first while it sends requests.
            let mut kept = client(address);
            let opened = Instant::now();
            let mut reply = [0u8; REPLY_KEEP_ALIVE.len()];
            let last_request = loop {
                let sent = Instant::now();
                kept.write_all(GET_11).unwrap();
                kept.read_exact(&mut reply).unwrap();
                if opened.elapsed() > idle_timeout * 3 / 2 {
                    break sent;
                }
                thread::sleep(idle_timeout / 10);
            };
            assert_eq!(read_to_close(&mut kept), b"");
            assert!(last_request.elapsed() >= idle_timeout);
            expect_count(&counters.idle_closed, 3);
        });
    }

    #[test]
    fn test_connection_limit_turns_away_the_next_connection() {
        let config = ServiceConfig {
            max_connections: 2,
            ..ServiceConfig::default()
        };
        serving(&config, |address, counters| {
            let mut open = [client(address), client(address)];
            expect_count(&counters.accepted, 2);
            let mut turned_away = client(address);
            assert_eq!(read_to_close(&mut turned_away), b"");
            expect_count(&counters.turned_away, 1);
            for stream in &mut open {
                stream.write_all(GET_10).unwrap();
                assert_eq!(read_to_close(stream), REPLY_CLOSE);
            }
            // Their slots are free again.
            assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
            expect_count(&counters.accepted, 4);
            expect_count(&counters.turned_away, 1);
        });
    }
}
