//! The proxy behind `synwall listen`: every accepted connection is joined to a new connection
//! to the upstream service, bytes copied both ways until each side closes its half.
//!
//! ```text
//!  next() ─► accept loop (the caller of Proxy::serve / Proxy::run)
//!               │ takes a slot (max_connections), snapshots the configuration
//!               ▼ round robin: bounded channel + mio::Waker
//!            event loop 0 … event loop threads-1  (mio, edge-triggered epoll)
//!               each owns a slab of joined connections: client ⇄ 2 × 16 KiB ⇄ upstream
//! ```
//!
//! Threads: the caller's thread accepts; `threads` event-loop threads (fixed when [`Proxy::serve`]
//! starts) do every system call of the joined connections, none blocking. No thread per
//! connection.
//!
//! Memory per connection is bounded: one [`BUFFER_LEN`] buffer per direction, 2 × 16 KiB = 32 KiB,
//! plus 152 bytes of state (measured; a test keeps it under 200), so 128 MiB at 4096
//! connections; the kernel's socket buffers of the two sockets come on top (bounded by the
//! kernel, `tcp_rmem`/`tcp_wmem`). The slab of a loop grows to the most connections it held at
//! once and keeps that many slots (without their buffers).
//!
//! Why read/write through buffers rather than `splice()` through pipes (measured on loopback,
//! one loop thread): per short connection read/write costs about 10 % less CPU (no pipes to
//! make and close); on bulk transfers splice with 64 KiB pipes costs a third of the CPU of
//! 16 KiB buffers, but with pipes as small as the buffers it gains no more than 64 KiB buffers
//! do, and it takes four more descriptors per connection and pipe pages that an unprivileged
//! process gets only up to `fs.pipe-user-pages-soft` (16384 pages: 512 connections' worth).
//!
//! Per connection: the upstream connect is non-blocking and gives up after `connect_timeout`
//! (checked every 100 ms, so up to 100 ms late); an upstream that refuses or does not answer
//! gets the client a RST (counted in `upstream_failures`), never a connection that silently
//! goes nowhere. With a PROXY protocol header configured, the header is the first thing the
//! upstream receives. A read returning end-of-file is passed on as a half-close
//! (`shutdown(Write)` of the other side once the buffered bytes are written); the connection
//! ends when both directions have. A reset or any other error on one side resets the other
//! (SO_LINGER 0). There is no idle timeout.
//!
//! Bounded: at most `max_connections` joined at once, over all loops (connecting ones
//! included); when the limit is reached the proxy stops taking connections, the accept queue
//! fills and the listener applies its overflow policy. The configuration can change while
//! running ([`Proxy::reconfigure`]): upstream, timeout, PROXY protocol and limit apply to
//! connections accepted from then on; connections already joined keep going; the number of
//! threads stays as it was when serving started. When serving stops, every connection still
//! open is reset.
//!
//! Panics: an event-loop thread panics only if `epoll_wait` fails with something else than
//! EINTR, which it cannot on a valid epoll descriptor.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use socket2::SockRef;

use crate::handoff::Connection;
use crate::server::{Server, ServerError};

/// How long the accept loop waits for a slot or a connection before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// How often an event loop looks for upstream connects past their deadline.
const TICK: Duration = Duration::from_millis(100);
/// Bytes buffered per direction of a connection.
pub const BUFFER_LEN: usize = 16 * 1024;
/// Connections waiting in the channel to one event loop; the accept loop waits when it is full.
const HANDOVER_CAPACITY: usize = 256;
/// Events taken from epoll per wait.
const EVENTS_PER_WAIT: usize = 1024;
/// Reads per direction per turn of a connection: at most 16 × 16 KiB move before the loop
/// serves the others, and comes back to this one without waiting for an event.
const READS_PER_TURN: usize = 16;
/// The event loops' own token; connection `i` has tokens `2i` (client) and `2i + 1` (upstream).
const WAKER: Token = Token(usize::MAX);

/// Whether, and how, the upstream is told the client's address (the HAProxy PROXY protocol).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyProtocol {
    /// No header: the upstream sees the client's bytes only.
    #[default]
    Off,
    /// The text header, `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`).
    V1,
    /// The binary header: signature, PROXY command, TCP over IPv4 or IPv6, addresses, ports.
    V2,
}

/// The signature that starts a version 2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const V2_PROXY: u8 = 0x21;
/// Address family and transport: TCP over IPv4, TCP over IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;
/// The length of what follows the length field: two addresses and two ports.
const V2_TCP4_LEN: u16 = 2 * 4 + 2 * 2;
const V2_TCP6_LEN: u16 = 2 * 16 + 2 * 2;

impl ProxyProtocol {
    /// The longest header [`ProxyProtocol::emit`] writes: version 1 over IPv6 with the longest
    /// addresses and ports (a version 2 header takes at most 52 bytes).
    pub const MAX_HEADER_LEN: usize = 104;

    /// Writes the header announcing a connection from `source` to `destination` at the start
    /// of `out` and returns its length; 0 when off. Both addresses are sent in one family: an
    /// IPv4 address paired with an IPv6 one goes as IPv4-mapped IPv6 (`::ffff:a.b.c.d`).
    ///
    /// Panics if `out` is shorter than the header ([`ProxyProtocol::MAX_HEADER_LEN`] is
    /// always enough).
    pub fn emit(self, source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
        match self {
            ProxyProtocol::Off => 0,
            ProxyProtocol::V1 => emit_v1(source, destination, out),
            ProxyProtocol::V2 => emit_v2(source, destination, out),
        }
    }
}

/// The addresses of a header, in one family.
enum Addresses {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Addresses {
    /// IPv4 when both are, IPv6 otherwise (IPv4 addresses mapped).
    fn of(source: SocketAddr, destination: SocketAddr) -> Addresses {
        match (source.ip(), destination.ip()) {
            (IpAddr::V4(source), IpAddr::V4(destination)) => Addresses::V4(source, destination),
            (source, destination) => Addresses::V6(to_ipv6(source), to_ipv6(destination)),
        }
    }
}

fn to_ipv6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// `PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n` (spec section 2.1).
fn emit_v1(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
    let mut rest = &mut out[..];
    let written = match Addresses::of(source, destination) {
        Addresses::V4(s, d) => write!(rest, "PROXY TCP4 {s} {d} "),
        Addresses::V6(s, d) => write!(rest, "PROXY TCP6 {s} {d} "),
    }
    .and_then(|()| write!(rest, "{} {}\r\n", source.port(), destination.port()));
    written.expect("the output holds MAX_HEADER_LEN bytes");
    let unused = rest.len();
    out.len() - unused
}

/// Signature, 0x21, 0x11 or 0x21, length of the rest (big endian), source and destination
/// addresses, source and destination ports (spec section 2.2).
fn emit_v2(source: SocketAddr, destination: SocketAddr, out: &mut [u8]) -> usize {
    let mut len = 0;
    let mut put = |field: &[u8]| {
        out[len..len + field.len()].copy_from_slice(field);
        len += field.len();
    };
    put(&V2_SIGNATURE);
    match Addresses::of(source, destination) {
        Addresses::V4(s, d) => {
            put(&[V2_PROXY, V2_TCP4]);
            put(&V2_TCP4_LEN.to_be_bytes());
            put(&s.octets());
            put(&d.octets());
        }
        Addresses::V6(s, d) => {
            put(&[V2_PROXY, V2_TCP6]);
            put(&V2_TCP6_LEN.to_be_bytes());
            put(&s.octets());
            put(&d.octets());
        }
    }
    put(&source.port().to_be_bytes());
    put(&destination.port().to_be_bytes());
    len
}

/// What the proxy joins clients to, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    pub upstream: SocketAddr,
    pub connect_timeout: Duration,
    /// Connections joined at once, over all event loops (connecting ones included).
    pub max_connections: usize,
    /// Event-loop threads; read when serving starts (a reconfiguration does not change it);
    /// 0 counts as 1.
    pub threads: usize,
    /// The header sent to the upstream before the client's bytes.
    pub proxy_protocol: ProxyProtocol,
}

/// What the proxy counts (read from any thread).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Connections joined to the upstream.
    pub proxied: AtomicU64,
    /// Clients reset because the upstream could not be reached.
    pub upstream_failures: AtomicU64,
    /// Connections being proxied now (connecting to the upstream included).
    pub active: AtomicUsize,
    /// Bytes from clients to the upstream, and back (PROXY protocol headers included).
    pub bytes_to_upstream: AtomicU64,
    pub bytes_to_clients: AtomicU64,
}

/// The proxy of one server.
pub struct Proxy {
    config: RwLock<ProxyConfig>,
    slots: Slots,
    counters: Arc<ProxyCounters>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Proxy {
        Proxy {
            slots: Slots::new(config.max_connections),
            config: RwLock::new(config),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<ProxyCounters> {
        Arc::clone(&self.counters)
    }

    /// Applies to connections accepted from now on (all but `threads`).
    pub fn reconfigure(&self, config: ProxyConfig) {
        self.slots.set_limit(config.max_connections);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = config;
    }

    /// Proxies every connection `server` accepts until `stop` is set or the server fails.
    pub fn run(&self, server: &Server, stop: &AtomicBool) -> io::Result<()> {
        self.serve(|timeout| server.accept_timeout(timeout), stop)
    }

    /// Proxies every connection `next` gives until `stop` is set or `next` fails; `next(t)`
    /// waits up to `t` for a connection. Returns once the event loops have ended (every
    /// connection still open is reset then).
    pub fn serve(
        &self,
        mut next: impl FnMut(Duration) -> io::Result<Option<Connection>>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let finished = AtomicBool::new(false);
        let mut loops = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..self.config().threads.max(1) {
            let (event_loop, handle) = EventLoop::new(&self.slots, &self.counters, &finished)
                .map_err(|error| io::Error::from(ServerError::Thread(error)))?;
            loops.push(event_loop);
            handles.push(handle);
        }
        thread::scope(|scope| {
            let served = loops
                .into_iter()
                .try_for_each(|event_loop| {
                    thread::Builder::new()
                        .name("synwall-proxy".to_owned())
                        .spawn_scoped(scope, move || event_loop.run())
                        .map(drop)
                        .map_err(|error| io::Error::from(ServerError::Thread(error)))
                })
                .and_then(|()| self.accept_loop(&mut next, stop, &handles));
            finished.store(true, Ordering::Relaxed);
            for handle in &handles {
                handle.wake();
            }
            served
        })
    }

    /// Hands connections to the loops in turn while a slot is free. Returns when `stop` is set,
    /// `next` fails, or a loop is gone (it panicked: the scope passes the panic on).
    fn accept_loop(
        &self,
        next: &mut impl FnMut(Duration) -> io::Result<Option<Connection>>,
        stop: &AtomicBool,
        loops: &[LoopHandle],
    ) -> io::Result<()> {
        let mut turn = 0;
        while !stop.load(Ordering::Relaxed) {
            if !self.slots.acquire(POLL) {
                continue;
            }
            let connection = match next(POLL) {
                Ok(Some(connection)) => connection,
                Ok(None) => {
                    self.slots.release();
                    continue;
                }
                Err(error) => {
                    self.slots.release();
                    return Err(error);
                }
            };
            let handover = Handover {
                connection,
                config: self.config(),
            };
            if !loops[turn].hand(handover, stop) {
                self.slots.release();
                return Ok(());
            }
            turn = (turn + 1) % loops.len();
        }
        Ok(())
    }

    fn config(&self) -> ProxyConfig {
        *self.config.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection on its way to an event loop, with the configuration in force when it came.
struct Handover {
    connection: Connection,
    config: ProxyConfig,
}

/// The accept loop's end of one event loop.
struct LoopHandle {
    handovers: Sender<Handover>,
    waker: Waker,
}

impl LoopHandle {
    /// Gives `handover` to the loop, waiting while its channel is full. False when it was not
    /// taken (`stop` was set meanwhile, or the loop is gone): the client is reset.
    fn hand(&self, mut handover: Handover, stop: &AtomicBool) -> bool {
        loop {
            match self.handovers.send_timeout(handover, POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Relaxed) => {
                    handover = back;
                }
                Err(SendTimeoutError::Timeout(back) | SendTimeoutError::Disconnected(back)) => {
                    reset(&back.connection.stream);
                    return false;
                }
            }
        }
        self.wake();
        true
    }

    /// Wakes the loop. A failed wake (the eventfd counter full, which cannot happen at one
    /// write per connection) only delays the loop until its next tick.
    fn wake(&self) {
        if let Err(error) = self.waker.wake() {
            tracing::debug!(%error, "cannot wake a proxy event loop");
        }
    }
}

/// Bytes moved since the counters were last updated: added once per loop iteration, so the
/// loops do not share a cache line per write.
#[derive(Default)]
struct Tally {
    to_upstream: u64,
    to_clients: u64,
}

/// One event-loop thread: its epoll instance and the connections it owns.
struct EventLoop<'a> {
    poll: Poll,
    handovers: Receiver<Handover>,
    /// Slot `i` holds the connection of tokens `2i` and `2i + 1`.
    joined: Vec<Option<Joined>>,
    /// Empty slots of `joined`.
    free: Vec<usize>,
    /// Connections whose turn ended on the budget, to drive again without an event.
    busy: Vec<usize>,
    tally: Tally,
    slots: &'a Slots,
    counters: &'a ProxyCounters,
    /// Set when serving ends.
    finished: &'a AtomicBool,
}

impl<'a> EventLoop<'a> {
    fn new(
        slots: &'a Slots,
        counters: &'a ProxyCounters,
        finished: &'a AtomicBool,
    ) -> io::Result<(EventLoop<'a>, LoopHandle)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (sender, receiver) = crossbeam_channel::bounded(HANDOVER_CAPACITY);
        let event_loop = EventLoop {
            poll,
            handovers: receiver,
            joined: Vec::new(),
            free: Vec::new(),
            busy: Vec::new(),
            tally: Tally::default(),
            slots,
            counters,
            finished,
        };
        let handle = LoopHandle {
            handovers: sender,
            waker,
        };
        Ok((event_loop, handle))
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        let mut next_tick = Instant::now() + TICK;
        while !self.finished.load(Ordering::Relaxed) {
            let timeout = if self.busy.is_empty() && self.handovers.is_empty() {
                next_tick.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => panic!("epoll_wait on the proxy's epoll instance failed: {error}"),
            }
            let busy = std::mem::take(&mut self.busy);
            for event in events.iter().filter(|event| event.token() != WAKER) {
                self.handle_event(event);
            }
            for index in busy {
                if let Some(joined) = self.joined[index].as_mut() {
                    joined.busy = false;
                    self.drive(index);
                }
            }
            // After the events: a slot freed above is reused only once its events are handled.
            for _ in 0..HANDOVER_CAPACITY {
                let Ok(handover) = self.handovers.try_recv() else {
                    break;
                };
                self.admit(handover);
            }
            let now = Instant::now();
            if now >= next_tick {
                self.expire_connects(now);
                next_tick = now + TICK;
            }
            self.flush_tally();
        }
        self.reset_all();
    }

    /// Opens the upstream connection of a handed-over client.
    fn admit(&mut self, handover: Handover) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.joined.push(None);
            self.joined.len() - 1
        });
        match Joined::open(handover, self.poll.registry(), index) {
            Ok(joined) => {
                self.joined[index] = Some(joined);
                self.counters.active.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                self.free.push(index);
                self.count_failure(&failure);
                self.slots.release();
            }
        }
    }

    fn handle_event(&mut self, event: &Event) {
        let (index, which) = Which::of(event.token());
        let Some(joined) = self.joined.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let was_connecting = joined.is_connecting();
        if let Err(failure) = joined.handle_event(which, event) {
            return self.close(index, Err(failure));
        }
        if was_connecting && !joined.is_connecting() {
            self.counters.proxied.fetch_add(1, Ordering::Relaxed);
        }
        self.drive(index);
    }

    /// Moves what can move on connection `index`, and closes it when it is done or broken.
    fn drive(&mut self, index: usize) {
        let Some(joined) = self.joined[index].as_mut() else {
            return;
        };
        match joined.drive(&mut self.tally) {
            Ok(Turn::Waiting) => {}
            Ok(Turn::Busy) => {
                if !joined.busy {
                    joined.busy = true;
                    self.busy.push(index);
                }
            }
            Ok(Turn::Done) => self.close(index, Ok(())),
            Err(failure) => self.close(index, Err(failure)),
        }
    }

    /// Gives up on connects past their deadline.
    fn expire_connects(&mut self, now: Instant) {
        for index in 0..self.joined.len() {
            let expired = self.joined[index]
                .as_ref()
                .and_then(|joined| joined.connect_deadline)
                .is_some_and(|deadline| deadline <= now);
            if expired {
                let timed_out =
                    io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out");
                self.close(index, Err(Failure::Upstream(timed_out)));
            }
        }
    }

    /// Ends connection `index`: closed when `outcome` is Ok (both halves were closed already),
    /// both sides reset otherwise.
    fn close(&mut self, index: usize, outcome: Result<(), Failure>) {
        let Some(joined) = self.joined[index].take() else {
            return;
        };
        self.free.push(index);
        if let Err(failure) = outcome {
            self.count_failure(&failure);
            joined.reset();
        }
        self.counters.active.fetch_sub(1, Ordering::Relaxed);
        self.slots.release();
    }

    fn count_failure(&self, failure: &Failure) {
        match failure {
            Failure::Upstream(error) => {
                self.counters
                    .upstream_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "upstream unreachable; resetting the client");
            }
            Failure::Broken(error) => {
                tracing::debug!(%error, "proxied connection broken; resetting both sides");
            }
        }
    }

    fn flush_tally(&mut self) {
        let Tally {
            to_upstream,
            to_clients,
        } = std::mem::take(&mut self.tally);
        if to_upstream > 0 {
            self.counters
                .bytes_to_upstream
                .fetch_add(to_upstream, Ordering::Relaxed);
        }
        if to_clients > 0 {
            self.counters
                .bytes_to_clients
                .fetch_add(to_clients, Ordering::Relaxed);
        }
    }

    /// Serving ends: every connection, and every client still in the channel, is reset.
    fn reset_all(mut self) {
        for index in 0..self.joined.len() {
            if let Some(joined) = self.joined[index].take() {
                joined.reset();
                self.counters.active.fetch_sub(1, Ordering::Relaxed);
                self.slots.release();
            }
        }
        for handover in self.handovers.try_iter() {
            reset(&handover.connection.stream);
            self.slots.release();
        }
        self.flush_tally();
    }
}

/// Which socket of a connection a token stands for.
#[derive(Clone, Copy)]
enum Which {
    Client,
    Upstream,
}

impl Which {
    /// The token of this socket of connection `index`.
    fn token(self, index: usize) -> Token {
        match self {
            Which::Client => Token(2 * index),
            Which::Upstream => Token(2 * index + 1),
        }
    }

    /// The connection, and its socket, of a token other than [`WAKER`].
    fn of(token: Token) -> (usize, Which) {
        let which = if token.0.is_multiple_of(2) {
            Which::Client
        } else {
            Which::Upstream
        };
        (token.0 / 2, which)
    }
}

/// Why a connection ends before both sides closed their halves; both sides are reset.
#[derive(Debug)]
enum Failure {
    /// The upstream could not be reached (counted in `upstream_failures`).
    Upstream(io::Error),
    /// A side was reset, or a system call failed.
    Broken(io::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Broken(error)
    }
}

/// What a turn of a connection left.
enum Turn {
    /// Every operation would block: wait for an event.
    Waiting,
    /// The budget ran out while bytes could still move.
    Busy,
    /// Both directions are closed.
    Done,
}

/// One socket of a connection, and what the last events said about it. mio is edge-triggered:
/// a readiness stays set until an operation returns WouldBlock, and the next event sets it
/// again. Both sockets are registered once for both interests, so no re-registration is needed
/// when the buffers fill and drain.
struct Side {
    stream: TcpStream,
    readable: bool,
    writable: bool,
}

impl Side {
    fn new(stream: TcpStream) -> Side {
        Side {
            stream,
            readable: false,
            writable: false,
        }
    }

    /// Sets the readiness `event` reports; a pending socket error (a reset) ends the
    /// connection at once, even when no operation is waiting for this side.
    fn handle_event(&mut self, event: &Event) -> Result<(), Failure> {
        if event.is_error()
            && let Some(error) = self.stream.take_error()?
        {
            return Err(Failure::Broken(error));
        }
        self.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        self.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
        Ok(())
    }
}

/// Bytes on their way from one side to the other.
struct Direction {
    buffer: Buffer,
    /// The sending side closed its half (a read returned 0).
    eof: bool,
    /// The receiving side's sending half is closed (after `eof`, once the buffer drained).
    shut: bool,
}

impl Direction {
    fn new() -> Direction {
        Direction {
            buffer: Buffer::new(),
            eof: false,
            shut: false,
        }
    }

    /// Moves bytes from `from` to `to` until every operation would block or the budget runs
    /// out; adds the bytes written to `moved`. `to_open` says whether `to` is connected (a
    /// half-close waits for it). Returns whether the budget ran out.
    fn pump(
        &mut self,
        from: &mut Side,
        to: &mut Side,
        to_open: bool,
        moved: &mut u64,
    ) -> io::Result<bool> {
        for _ in 0..READS_PER_TURN {
            while to.writable && !self.buffer.is_empty() {
                match (&to.stream).write(self.buffer.pending()) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(written) => {
                        self.buffer.consume(written);
                        *moved += written as u64;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => to.writable = false,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) => return Err(error),
                }
            }
            if self.eof && self.buffer.is_empty() && !self.shut && to_open {
                to.stream.shutdown(Shutdown::Write)?;
                self.shut = true;
            }
            if !from.readable || self.eof || self.buffer.is_full() {
                return Ok(false);
            }
            match (&from.stream).read(self.buffer.room()) {
                Ok(0) => self.eof = true,
                Ok(read) => self.buffer.fill(read),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => from.readable = false,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(true)
    }
}

/// A client joined to its upstream connection.
struct Joined {
    client: Side,
    upstream: Side,
    to_upstream: Direction,
    to_client: Direction,
    /// While the upstream connect is under way: when to give up.
    connect_deadline: Option<Instant>,
    /// Queued in the loop's `busy` list.
    busy: bool,
}

impl Joined {
    /// Starts the upstream connect, queues the PROXY protocol header, registers both sockets
    /// under the tokens of slot `index`. On failure the client is reset.
    fn open(handover: Handover, registry: &Registry, index: usize) -> Result<Joined, Failure> {
        let Handover { connection, config } = handover;
        let client = connection.stream;
        let upstream = client
            .set_nonblocking(true)
            .map_err(Failure::Broken)
            .and_then(|()| connect(config.upstream).map_err(Failure::Upstream));
        let upstream = match upstream {
            Ok(upstream) => upstream,
            Err(failure) => {
                reset(&client);
                return Err(failure);
            }
        };
        let mut joined = Joined {
            client: Side::new(TcpStream::from_std(client)),
            upstream: Side::new(upstream),
            to_upstream: Direction::new(),
            to_client: Direction::new(),
            connect_deadline: Some(Instant::now() + config.connect_timeout),
            busy: false,
        };
        let header = config.proxy_protocol.emit(
            connection.peer,
            connection.local,
            joined.to_upstream.buffer.room(),
        );
        joined.to_upstream.buffer.fill(header);
        let both = Interest::READABLE | Interest::WRITABLE;
        let registered = registry
            .register(&mut joined.client.stream, Which::Client.token(index), both)
            .and_then(|()| {
                registry.register(
                    &mut joined.upstream.stream,
                    Which::Upstream.token(index),
                    both,
                )
            });
        if let Err(error) = registered {
            joined.reset();
            return Err(Failure::Broken(error));
        }
        Ok(joined)
    }

    fn is_connecting(&self) -> bool {
        self.connect_deadline.is_some()
    }

    /// Takes note of an event on one side: the end of the upstream connect, or a readiness.
    fn handle_event(&mut self, which: Which, event: &Event) -> Result<(), Failure> {
        match which {
            Which::Upstream if self.is_connecting() => self.poll_connect(),
            Which::Upstream => self.upstream.handle_event(event),
            Which::Client => self.client.handle_event(event),
        }
    }

    /// Finds out whether the upstream connect has ended, and how (the steps of
    /// [`mio::net::TcpStream::connect`]).
    fn poll_connect(&mut self) -> Result<(), Failure> {
        let stream = &self.upstream.stream;
        if let Some(error) = stream.take_error().map_err(Failure::Upstream)? {
            return Err(Failure::Upstream(error));
        }
        match stream.peer_addr() {
            Ok(_) => {
                self.connect_deadline = None;
                self.upstream.readable = true;
                self.upstream.writable = true;
                Ok(())
            }
            Err(error)
                if error.kind() == io::ErrorKind::NotConnected
                    || error.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(())
            }
            Err(error) => Err(Failure::Upstream(error)),
        }
    }

    /// Moves what can move both ways.
    fn drive(&mut self, tally: &mut Tally) -> Result<Turn, Failure> {
        let upstream_open = !self.is_connecting();
        let up = self.to_upstream.pump(
            &mut self.client,
            &mut self.upstream,
            upstream_open,
            &mut tally.to_upstream,
        )?;
        let down = self.to_client.pump(
            &mut self.upstream,
            &mut self.client,
            true,
            &mut tally.to_clients,
        )?;
        Ok(if self.to_upstream.shut && self.to_client.shut {
            Turn::Done
        } else if up || down {
            Turn::Busy
        } else {
            Turn::Waiting
        })
    }

    /// Closes both sides with a RST. (Closing a socket removes it from epoll: no deregister.)
    fn reset(self) {
        reset(&self.client.stream);
        reset(&self.upstream.stream);
    }
}

/// A non-blocking connect to `upstream`, TCP_NODELAY on.
fn connect(upstream: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(upstream)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Makes the close of `stream` a RST (SO_LINGER 0) instead of a FIN; the caller drops it.
fn reset(stream: &impl AsFd) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

/// A fixed buffer of bytes read from one side and not yet written to the other.
struct Buffer {
    bytes: Box<[u8]>,
    /// `bytes[start..end]` are pending.
    start: usize,
    end: usize,
}

impl Buffer {
    fn new() -> Buffer {
        Buffer {
            bytes: vec![0; BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn is_full(&self) -> bool {
        self.end - self.start == self.bytes.len()
    }

    /// `written` pending bytes are gone.
    fn consume(&mut self, written: usize) {
        self.start += written;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// The free space after the pending bytes, moved to the front first when the space is at
    /// the end only.
    fn room(&mut self) -> &mut [u8] {
        if self.end == self.bytes.len() && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.bytes[self.end..]
    }

    /// `read` bytes were written into [`Buffer::room`].
    fn fill(&mut self, read: usize) {
        self.end += read;
    }
}

/// A counting semaphore for the connection limit, whose limit may change.
struct Slots {
    /// (taken, limit)
    state: Mutex<(usize, usize)>,
    released: Condvar,
}

impl Slots {
    fn new(limit: usize) -> Slots {
        Slots {
            state: Mutex::new((0, limit)),
            released: Condvar::new(),
        }
    }

    /// Takes a slot, waiting up to `timeout`; false when none came free.
    fn acquire(&self, timeout: Duration) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut state, _) = self
            .released
            .wait_timeout_while(state, timeout, |(taken, limit)| *taken >= *limit)
            .unwrap_or_else(PoisonError::into_inner);
        if state.0 >= state.1 {
            return false;
        }
        state.0 += 1;
        true
    }

    fn release(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).0 -= 1;
        self.released.notify_one();
    }

    fn set_limit(&self, limit: usize) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).1 = limit;
        self.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream as StdTcpStream};
    use std::thread::JoinHandle;

    use socket2::{Domain, Socket, Type};

    use super::*;
    use crate::handoff::NegotiatedOptions;
    use crate::listener::HandshakePath;

    /// How long any awaited condition may take before the test fails.
    const DEADLINE: Duration = Duration::from_secs(20);

    fn config(upstream: SocketAddr) -> ProxyConfig {
        ProxyConfig {
            upstream,
            connect_timeout: Duration::from_secs(5),
            max_connections: 1024,
            threads: 1,
            proxy_protocol: ProxyProtocol::Off,
        }
    }

    /// A proxy serving on its own thread, fed with the server ends of loopback pairs.
    struct Harness {
        proxy: Arc<Proxy>,
        feed: Sender<Connection>,
        /// Where the test's clients connect; what it accepts goes to the proxy.
        front: TcpListener,
        stop: Arc<AtomicBool>,
        serving: Option<JoinHandle<io::Result<()>>>,
    }

    impl Harness {
        fn start(config: ProxyConfig) -> Harness {
            let proxy = Arc::new(Proxy::new(config));
            let stop = Arc::new(AtomicBool::new(false));
            let (feed, connections) = crossbeam_channel::unbounded::<Connection>();
            let serving = thread::spawn({
                let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
                move || proxy.serve(|timeout| Ok(connections.recv_timeout(timeout).ok()), &stop)
            });
            Harness {
                proxy,
                feed,
                front: TcpListener::bind("127.0.0.1:0").unwrap(),
                stop,
                serving: Some(serving),
            }
        }

        /// A client whose connection the proxy serves: the test's end of a loopback pair.
        #[track_caller]
        fn connect(&self) -> StdTcpStream {
            let local = self.front.local_addr().unwrap();
            let client = StdTcpStream::connect(local).unwrap();
            let (stream, peer) = self.front.accept().unwrap();
            assert_eq!(peer, client.local_addr().unwrap());
            let connection = Connection {
                stream,
                peer,
                local,
                path: HandshakePath::Queue,
                options: NegotiatedOptions {
                    mss: 1460,
                    window_scale: None,
                    sack_permitted: true,
                    timestamps: true,
                },
                handshake_duration: None,
                established_at: Instant::now(),
            };
            self.feed.send(connection).unwrap();
            client.set_read_timeout(Some(DEADLINE)).unwrap();
            client
        }

        fn counters(&self) -> Arc<ProxyCounters> {
            self.proxy.counters()
        }

        /// Stops serving; checks it ended well and left no connection or slot behind.
        #[track_caller]
        fn finish(mut self) {
            self.stop.store(true, Ordering::Relaxed);
            let served = self.serving.take().unwrap().join().unwrap();
            assert!(served.is_ok(), "{served:?}");
            assert_eq!(self.counters().active.load(Ordering::Relaxed), 0);
            assert_eq!(self.proxy.slots.state.lock().unwrap().0, 0);
        }
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(serving) = self.serving.take() {
                let _ = serving.join();
            }
        }
    }

    /// Polls `condition` until it holds; fails the test after [`DEADLINE`].
    #[track_caller]
    fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// An upstream that takes `connections` connections and runs `serve` on each, on a thread
    /// of its own; joining the handle gives what each returned, in accept order.
    fn upstream<T: Send + 'static>(
        connections: usize,
        serve: impl Fn(StdTcpStream) -> T + Send + Sync + 'static,
    ) -> (SocketAddr, JoinHandle<Vec<T>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let serve = Arc::new(serve);
        let accepting = thread::spawn(move || {
            let served: Vec<_> = (0..connections)
                .map(|_| {
                    let (stream, _) = listener.accept().unwrap();
                    stream.set_read_timeout(Some(DEADLINE)).unwrap();
                    let serve = Arc::clone(&serve);
                    thread::spawn(move || serve(stream))
                })
                .collect();
            served.into_iter().map(|s| s.join().unwrap()).collect()
        });
        (address, accepting)
    }

    /// Echoes until end-of-file, then closes its half.
    fn echo(mut stream: StdTcpStream) {
        io::copy(&mut stream.try_clone().unwrap(), &mut stream).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Reads until end-of-file or an error; returns what came and how it ended.
    fn read_all(stream: &mut StdTcpStream) -> (Vec<u8>, io::Result<()>) {
        let mut received = Vec::new();
        let ended = stream.read_to_end(&mut received).map(drop);
        (received, ended)
    }

    /// An address on which nothing listens (a socket bound there and not listening keeps
    /// the port): connects to it are refused.
    fn refusing_address() -> (Socket, SocketAddr) {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        socket
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        (socket, address)
    }

    #[track_caller]
    fn assert_reset(result: io::Result<()>) {
        let error = result.expect_err("expected a reset, the stream ended cleanly");
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    }

    /// FNV-1a, to compare megabytes without keeping them.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    struct Fnv(u64);

    impl Fnv {
        fn new() -> Fnv {
            Fnv(0xcbf2_9ce4_8422_2325)
        }

        fn update(&mut self, bytes: &[u8]) {
            for &byte in bytes {
                self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }

    /// `len` bytes from a xorshift generator seeded with `seed`.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn test_emit_off_writes_nothing() {
        let mut out = [0xa5; 8];
        let (source, destination) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        assert_eq!(ProxyProtocol::Off.emit(source, destination, &mut out), 0);
        assert_eq!(out, [0xa5; 8]);
    }

    /// Emits into a buffer pre-filled with 0xa5 and checks the bytes after the header stay so.
    #[track_caller]
    fn emitted(protocol: ProxyProtocol, source: &str, destination: &str) -> Vec<u8> {
        let mut out = [0xa5; ProxyProtocol::MAX_HEADER_LEN + 8];
        let len = protocol.emit(
            source.parse().unwrap(),
            destination.parse().unwrap(),
            &mut out,
        );
        assert!(out[len..].iter().all(|&byte| byte == 0xa5));
        out[..len].to_vec()
    }

    #[test]
    fn test_emit_v1_tcp4_spec_example() {
        assert_eq!(
            emitted(ProxyProtocol::V1, "192.168.0.1:56324", "192.168.0.11:443"),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn test_emit_v1_longest_headers() {
        assert_eq!(
            emitted(
                ProxyProtocol::V1,
                "255.255.255.255:65535",
                "255.255.255.255:65535"
            ),
            b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"
        );
        let longest = emitted(
            ProxyProtocol::V1,
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        );
        let expected = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest, expected.as_bytes());
        assert_eq!(longest.len(), ProxyProtocol::MAX_HEADER_LEN);
    }

    #[test]
    fn test_emit_v1_mixed_families_go_as_ipv6() {
        assert_eq!(
            emitted(ProxyProtocol::V1, "192.0.2.1:1234", "[2001:db8::2]:443"),
            b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 1234 443\r\n"
        );
    }

    #[test]
    fn test_emit_v2_tcp4() {
        let expected = [
            &b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"[..],
            &[0x21, 0x11, 0x00, 0x0c],
            &[192, 168, 0, 1, 192, 168, 0, 11],
            &[0xdc, 0x04, 0x01, 0xbb],
        ]
        .concat();
        assert_eq!(
            emitted(ProxyProtocol::V2, "192.168.0.1:56324", "192.168.0.11:443"),
            expected
        );
    }

    #[test]
    fn test_emit_v2_tcp6() {
        let expected = [
            &b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"[..],
            &[0x21, 0x21, 0x00, 0x24],
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            ],
            &[
                0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
            ],
            &[0xdc, 0x04, 0x01, 0xbb],
        ]
        .concat();
        assert_eq!(
            emitted(
                ProxyProtocol::V2,
                "[2001:db8::1]:56324",
                "[2001:db8::2]:443"
            ),
            expected
        );
        let mixed = emitted(ProxyProtocol::V2, "192.0.2.1:1", "[2001:db8::2]:2");
        assert_eq!(mixed[13], 0x21);
        assert_eq!(
            mixed[16..32],
            Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn test_buffer_moves_pending_bytes_to_make_room() {
        let mut buffer = Buffer::new();
        let room = buffer.room();
        assert_eq!(room.len(), BUFFER_LEN);
        room.fill(7);
        buffer.fill(BUFFER_LEN);
        assert!(buffer.is_full());
        buffer.consume(BUFFER_LEN - 3);
        assert_eq!(buffer.pending(), [7, 7, 7]);
        assert_eq!(buffer.room().len(), BUFFER_LEN - 3);
        assert_eq!(buffer.pending(), [7, 7, 7]);
        buffer.consume(3);
        assert!(buffer.is_empty());
        assert_eq!(buffer.room().len(), BUFFER_LEN);
    }

    /// The bound the module doc states.
    #[test]
    fn test_memory_per_connection() {
        let state = std::mem::size_of::<Option<Joined>>();
        assert!(state <= 200, "{state} bytes of state per connection");
        assert_eq!(2 * BUFFER_LEN, 32 * 1024);
    }

    #[test]
    fn test_bytes_intact_both_ways() {
        const LEN: usize = 4 << 20;
        let (upstream, served) = upstream(1, echo);
        let harness = Harness::start(config(upstream));
        let mut client = harness.connect();
        let sent = noise(7, LEN);
        let mut expected = Fnv::new();
        expected.update(&sent);
        let sending = thread::spawn({
            let mut client = client.try_clone().unwrap();
            move || {
                client.write_all(&sent).unwrap();
                client.shutdown(Shutdown::Write).unwrap();
            }
        });
        let mut received = Fnv::new();
        let mut received_len = 0;
        let mut chunk = vec![0; 64 * 1024];
        loop {
            let n = client.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            received.update(&chunk[..n]);
            received_len += n;
        }
        sending.join().unwrap();
        served.join().unwrap();
        assert_eq!((received_len, received), (LEN, expected));
        let counters = harness.counters();
        wait_until("the connection ended", || {
            counters.active.load(Ordering::Relaxed) == 0
        });
        assert_eq!(load(&counters.proxied), 1);
        assert_eq!(load(&counters.bytes_to_upstream), LEN as u64);
        assert_eq!(load(&counters.bytes_to_clients), LEN as u64);
        harness.finish();
    }

    #[test]
    fn test_many_concurrent_connections_one_loop() {
        const CONNECTIONS: usize = 200;
        let (upstream, served) = upstream(CONNECTIONS, echo);
        let harness = Harness::start(config(upstream));
        let mut clients: Vec<_> = (0..CONNECTIONS).map(|_| harness.connect()).collect();
        let message = |i: usize| format!("connection {i} ").repeat(100).into_bytes();
        for (i, client) in clients.iter_mut().enumerate() {
            client.write_all(&message(i)).unwrap();
            client.shutdown(Shutdown::Write).unwrap();
        }
        for (i, client) in clients.iter_mut().enumerate() {
            let (received, ended) = read_all(client);
            ended.unwrap();
            assert_eq!(received, message(i), "connection {i}");
        }
        served.join().unwrap();
        let counters = harness.counters();
        wait_until("every connection ended", || {
            counters.active.load(Ordering::Relaxed) == 0
        });
        assert_eq!(load(&counters.proxied), CONNECTIONS as u64);
        assert_eq!(load(&counters.upstream_failures), 0);
        harness.finish();
    }

    #[test]
    fn test_half_close_client_first_still_gets_the_reply() {
        let (upstream, served) = upstream(1, |mut stream| {
            let (request, ended) = read_all(&mut stream);
            ended.unwrap();
            write!(stream, "got {} bytes", request.len()).unwrap();
        });
        let harness = Harness::start(config(upstream));
        let mut client = harness.connect();
        client.write_all(b"hello").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (reply, ended) = read_all(&mut client);
        ended.unwrap();
        assert_eq!(reply, b"got 5 bytes");
        served.join().unwrap();
        harness.finish();
    }

    #[test]
    fn test_half_close_upstream_first_still_gets_the_request() {
        let (upstream, served) = upstream(1, |mut stream| {
            stream.write_all(b"greeting").unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let (request, ended) = read_all(&mut stream);
            ended.unwrap();
            request
        });
        let harness = Harness::start(config(upstream));
        let mut client = harness.connect();
        let (greeting, ended) = read_all(&mut client);
        ended.unwrap();
        assert_eq!(greeting, b"greeting");
        client.write_all(b"late words").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        assert_eq!(served.join().unwrap(), [b"late words"]);
        let counters = harness.counters();
        wait_until("the connection ended", || {
            counters.active.load(Ordering::Relaxed) == 0
        });
        harness.finish();
    }

    #[test]
    fn test_upstream_refused_resets_the_client() {
        let (_refusing, upstream) = refusing_address();
        let harness = Harness::start(config(upstream));
        let mut client = harness.connect();
        assert_reset(read_all(&mut client).1);
        let counters = harness.counters();
        wait_until("the failure is counted", || {
            load(&counters.upstream_failures) == 1
        });
        assert_eq!(load(&counters.proxied), 0);
        harness.finish();
    }

    /// The accept queue of the listener on `port` (what /proc/net/tcp says of it).
    fn accept_queue(port: u16) -> Option<u64> {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let local = format!("0100007F:{port:04X}");
        table.lines().skip(1).find_map(|line| {
            let fields: Vec<_> = line.split_whitespace().collect();
            let listening = fields[1] == local && fields[3] == "0A";
            let (_, queued) = fields[4].split_once(':')?;
            listening.then(|| u64::from_str_radix(queued, 16).unwrap())
        })
    }

    #[test]
    fn test_upstream_not_answering_times_out_and_resets_the_client() {
        // A listener whose accept queue (backlog 0: one connection) is full drops SYNs.
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        listener.listen(0).unwrap();
        let upstream = listener.local_addr().unwrap().as_socket().unwrap();
        let _filler = StdTcpStream::connect(upstream).unwrap();
        wait_until("the upstream's accept queue is full", || {
            accept_queue(upstream.port()) == Some(1)
        });
        let harness = Harness::start(ProxyConfig {
            connect_timeout: Duration::from_millis(200),
            ..config(upstream)
        });
        let mut client = harness.connect();
        assert_reset(read_all(&mut client).1);
        let counters = harness.counters();
        wait_until("the failure is counted", || {
            load(&counters.upstream_failures) == 1
        });
        assert_eq!(load(&counters.proxied), 0);
        harness.finish();
    }

    #[test]
    fn test_upstream_reset_reaches_the_client() {
        let (upstream, served) = upstream(1, |mut stream| {
            let mut request = [0; 5];
            stream.read_exact(&mut request).unwrap();
            reset(&stream);
        });
        let harness = Harness::start(config(upstream));
        let mut client = harness.connect();
        client.write_all(b"hello").unwrap();
        served.join().unwrap();
        assert_reset(read_all(&mut client).1);
        harness.finish();
    }

    #[test]
    fn test_client_reset_reaches_the_upstream() {
        let (upstream, served) = upstream(1, |mut stream| read_all(&mut stream).1);
        let harness = Harness::start(config(upstream));
        let client = harness.connect();
        let counters = harness.counters();
        wait_until("the upstream is connected", || load(&counters.proxied) == 1);
        reset(&client);
        drop(client);
        let [ended] = served.join().unwrap().try_into().unwrap();
        assert_reset(ended);
        harness.finish();
    }

    /// Checks that an upstream reading the header with `parse` got the client's addresses, then
    /// its bytes.
    fn check_proxy_protocol(
        protocol: ProxyProtocol,
        parse: fn(&mut StdTcpStream) -> (SocketAddr, SocketAddr),
    ) {
        let (upstream, served) = upstream(1, move |mut stream| {
            let (source, destination) = parse(&mut stream);
            let (rest, ended) = read_all(&mut stream);
            ended.unwrap();
            (source, destination, rest)
        });
        let harness = Harness::start(ProxyConfig {
            proxy_protocol: protocol,
            ..config(upstream)
        });
        let mut client = harness.connect();
        client.write_all(b"payload").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let [(source, destination, rest)] = served.join().unwrap().try_into().unwrap();
        assert_eq!(source, client.local_addr().unwrap());
        assert_eq!(destination, harness.front.local_addr().unwrap());
        assert_eq!(rest, b"payload");
        let counters = harness.counters();
        wait_until("the connection ended", || {
            counters.active.load(Ordering::Relaxed) == 0
        });
        let header = protocol.emit(source, destination, &mut [0; ProxyProtocol::MAX_HEADER_LEN]);
        assert_eq!(
            load(&counters.bytes_to_upstream),
            (header + rest.len()) as u64
        );
        harness.finish();
    }

    #[test]
    fn test_proxy_protocol_v1_header_comes_first() {
        check_proxy_protocol(ProxyProtocol::V1, |stream| {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                let mut byte = [0];
                stream.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let line = String::from_utf8(line).unwrap();
            let fields: Vec<&str> = line.trim_end().split(' ').collect();
            let [
                "PROXY",
                "TCP4",
                source,
                destination,
                source_port,
                destination_port,
            ] = fields[..]
            else {
                panic!("not a PROXY TCP4 line: {line:?}");
            };
            (
                format!("{source}:{source_port}").parse().unwrap(),
                format!("{destination}:{destination_port}").parse().unwrap(),
            )
        });
    }

    #[test]
    fn test_proxy_protocol_v2_header_comes_first() {
        check_proxy_protocol(ProxyProtocol::V2, |stream| {
            let mut fixed = [0; 16];
            stream.read_exact(&mut fixed).unwrap();
            assert_eq!(fixed[..12], *b"\r\n\r\n\0\r\nQUIT\n");
            assert_eq!(fixed[12..14], [0x21, 0x11], "PROXY, TCP over IPv4");
            let len = u16::from_be_bytes([fixed[14], fixed[15]]);
            assert_eq!(len, 12);
            let mut rest = [0; 12];
            stream.read_exact(&mut rest).unwrap();
            let address = |ip: &[u8], port: &[u8]| {
                let ip = Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]);
                SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([port[0], port[1]]))
            };
            (
                address(&rest[0..4], &rest[8..10]),
                address(&rest[4..8], &rest[10..12]),
            )
        });
    }

    #[test]
    fn test_connection_limit_holds_the_next_until_one_ends() {
        let (upstream, served) = upstream(2, echo);
        let harness = Harness::start(ProxyConfig {
            max_connections: 1,
            ..config(upstream)
        });
        let counters = harness.counters();
        let mut first = harness.connect();
        first.write_all(b"one").unwrap();
        let mut echoed = [0; 3];
        first.read_exact(&mut echoed).unwrap();
        let mut second = harness.connect();
        second.write_all(b"two").unwrap();
        // Not a wait for a condition: for a while, nothing may happen.
        let watch_until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < watch_until {
            assert_eq!(harness.feed.len(), 1, "the second connection was taken");
            assert_eq!(counters.active.load(Ordering::Relaxed), 1);
            thread::sleep(Duration::from_millis(5));
        }
        first.shutdown(Shutdown::Write).unwrap();
        read_all(&mut first).1.unwrap();
        second.shutdown(Shutdown::Write).unwrap();
        let (received, ended) = read_all(&mut second);
        ended.unwrap();
        assert_eq!(received, b"two");
        served.join().unwrap();
        assert_eq!(load(&counters.proxied), 2);
        harness.finish();
    }

    #[test]
    fn test_reconfigure_applies_to_the_next_connections() {
        let (_refusing, refusing) = refusing_address();
        let (upstream, served) = upstream(1, echo);
        let harness = Harness::start(config(refusing));
        let mut refused = harness.connect();
        assert_reset(read_all(&mut refused).1);
        harness.proxy.reconfigure(config(upstream));
        let mut client = harness.connect();
        client.write_all(b"again").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let (received, ended) = read_all(&mut client);
        ended.unwrap();
        assert_eq!(received, b"again");
        served.join().unwrap();
        let counters = harness.counters();
        assert_eq!(load(&counters.upstream_failures), 1);
        assert_eq!(load(&counters.proxied), 1);
        harness.finish();
    }

    #[test]
    fn test_stop_resets_open_connections() {
        let (upstream, served) = upstream(1, |mut stream| read_all(&mut stream).1);
        let harness = Harness::start(ProxyConfig {
            threads: 2,
            ..config(upstream)
        });
        let mut client = harness.connect();
        let counters = harness.counters();
        wait_until("the upstream is connected", || load(&counters.proxied) == 1);
        harness.finish();
        assert_reset(read_all(&mut client).1);
        let [ended] = served.join().unwrap().try_into().unwrap();
        assert_reset(ended);
    }
}
