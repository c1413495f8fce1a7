//! Peacetime clients: what a target serves with no flood. [`connections`] opens new
//! connections at a steady rate (open loop) and times each connect and exchange;
//! [`max_connection_rate`] searches for the highest rate that meets the service-level
//! objective ([`SLO_SUCCESS`] of the attempts succeed, exchange p99 under [`SLO_P99`]);
//! [`keepalive`] keeps a few connections busy with one request after another (closed loop)
//! and counts requests per second.
//!
//! Each run is one thread (the caller's) and one `mio` event loop over plain kernel sockets;
//! the lab runs it in the client namespace. Connections are made with `socket2`: each bound to
//! one of [`ConnectionsConfig::sources`] in turn (port 0), so that 4-tuples are not reused
//! while the server holds them in TIME-WAIT, then connected without blocking.
//!
//! Open loop: attempt `k` is due at `start + k / rate` whatever happened before (no drift);
//! when late, the loop starts at most [`CATCH_UP`] worth of attempts before it looks at its
//! sockets again, and reports how late it got. At most [`ConnectionsConfig::max_in_flight`]
//! attempts are open at once; an attempt due while that many are open is counted as
//! overloaded, not queued. Every attempt ends within two timeouts (connect, then reply).
//!
//! Memory: fixed per run: the slots of the attempts or connections in flight (with their
//! deadlines, see `service::Slots`), one read buffer, and fixed-size latency histograms
//! (hdrhistogram, 1 µs to 60 s, three significant digits). A keep-alive connection buffers one
//! reply, at most [`MAX_REPLY`] bytes. Setup errors are `io::Error`s; what happens to an
//! attempt is counted ([`FailureCounts`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::report::{FailureCounts, Percentiles};
use crate::lab::service::{Slots, head_length, header_values};

/// The share of attempts that must succeed.
pub const SLO_SUCCESS: f64 = 0.999;
/// The exchange p99 must be below this.
pub const SLO_P99: Duration = Duration::from_millis(10);
/// How much of the schedule a late loop starts at once before it looks at its sockets.
pub const CATCH_UP: Duration = Duration::from_millis(2);
/// The longest keep-alive reply, head and body.
pub const MAX_REPLY: usize = 64 * 1024;
/// The longest latency a histogram records, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Readiness events taken per wait.
const EVENTS: usize = 1024;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 4096;

/// What [`connections`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionsConfig {
    pub target: SocketAddr,
    /// Source addresses, used in turn; not empty.
    pub sources: Vec<IpAddr>,
    /// New connections per second; positive.
    pub rate: u32,
    /// How long new connections are started.
    pub duration: Duration,
    /// For connect(), and again for the reply.
    pub timeout: Duration,
    /// Attempts open at once, at most; positive.
    pub max_in_flight: usize,
    /// Sent as soon as the connection is established, e.g. `GET / HTTP/1.0\r\n\r\n`.
    pub request: Vec<u8>,
    /// Text the reply must contain (read until the server closes).
    pub expect: Vec<u8>,
}

/// What an open-loop run came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionsReport {
    /// The rate asked for, per second.
    pub rate: u32,
    /// Attempts due (ok + failed, overloaded included).
    pub attempts: u64,
    pub ok: u64,
    pub failures: FailureCounts,
    /// Of every connect() that completed.
    pub connect_us: Option<Percentiles>,
    /// From connect() to the end of the reply, of every successful attempt.
    pub exchange_us: Option<Percentiles>,
    /// The latest any attempt started after it was due: how well the client kept up.
    pub max_start_lag_us: u64,
    /// From the first attempt to the end of the last.
    pub elapsed_s: f64,
}

impl ConnectionsReport {
    /// Whether at least `success` of the attempts (a share) succeeded, with an exchange p99
    /// below `p99`.
    pub fn meets(&self, success: f64, p99: Duration) -> bool {
        self.attempts > 0
            && self.ok as f64 >= success * self.attempts as f64
            && self
                .exchange_us
                .is_some_and(|exchange| u128::from(exchange.p99) < p99.as_micros())
    }
}

/// Opens connections at `config.rate` per second for `config.duration`, each sending the
/// request and reading the reply to the end; see the module documentation.
pub fn connections(config: &ConnectionsConfig) -> io::Result<ConnectionsReport> {
    if config.rate == 0 || config.sources.is_empty() || config.max_in_flight == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a rate, a source and room for an attempt in flight are needed",
        ));
    }
    let mut run = OpenLoop {
        config,
        poll: Poll::new()?,
        attempts: Slots::new(config.max_in_flight),
        expect: Needle::new(&config.expect),
        chunk: [0; READ_CHUNK],
        ok: 0,
        failures: FailureCounts::default(),
        connect: Latencies::new(),
        exchange: Latencies::new(),
    };
    let schedule = Schedule::new(config.rate, config.duration, Instant::now());
    let mut sources = config.sources.iter().cycle();
    let mut events = Events::with_capacity(EVENTS);
    let (mut started, mut max_lag) = (0, Duration::ZERO);
    while started < schedule.attempts || run.attempts.len() > 0 {
        let now = Instant::now();
        for _ in 0..schedule.burst() {
            let due = schedule.due(started);
            if started == schedule.attempts || due > now {
                break;
            }
            let source = *sources.next().expect("a cycle of a non-empty list");
            max_lag = max_lag.max(now - due);
            run.start(source, now);
            started += 1;
        }
        let next_start = (started < schedule.attempts).then(|| schedule.due(started));
        let wake = match (next_start, run.attempts.next_deadline()) {
            (Some(start), Some(deadline)) => start.min(deadline),
            (wake, None) | (None, wake) => wake.unwrap_or(now),
        };
        poll_events(&mut run.poll, &mut events, wake)?;
        for event in &events {
            run.advance(event.token());
        }
        run.expire(Instant::now());
    }
    let failed = run.failures.total();
    Ok(ConnectionsReport {
        rate: config.rate,
        attempts: run.ok + failed,
        ok: run.ok,
        failures: run.failures,
        connect_us: run.connect.percentiles(),
        exchange_us: run.exchange.percentiles(),
        max_start_lag_us: micros(max_lag),
        elapsed_s: schedule.origin.elapsed().as_secs_f64(),
    })
}

/// Waits for events until `wake` at the latest.
fn poll_events(poll: &mut Poll, events: &mut Events, wake: Instant) -> io::Result<()> {
    let wait = wake.saturating_duration_since(Instant::now());
    match poll.poll(events, Some(wait)) {
        Err(error) if error.kind() == io::ErrorKind::Interrupted => {
            events.clear();
            Ok(())
        }
        result => result,
    }
}

/// When the attempts of an open-loop run are due: attempt `k` at `origin + k / rate`.
struct Schedule {
    origin: Instant,
    rate: u32,
    /// How many in all.
    attempts: u64,
}

impl Schedule {
    const NANOS: u128 = 1_000_000_000;

    fn new(rate: u32, duration: Duration, origin: Instant) -> Schedule {
        let attempts = u128::from(rate) * duration.as_nanos() / Self::NANOS;
        Schedule {
            origin,
            rate,
            attempts: u64::try_from(attempts).unwrap_or(u64::MAX),
        }
    }

    fn due(&self, attempt: u64) -> Instant {
        let nanos = u128::from(attempt) * Self::NANOS / u128::from(self.rate);
        self.origin + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Attempts started at once, at most: [`CATCH_UP`] worth, at least one.
    fn burst(&self) -> u64 {
        let burst = u128::from(self.rate) * CATCH_UP.as_nanos() / Self::NANOS;
        u64::try_from(burst).unwrap_or(u64::MAX).max(1)
    }
}

/// The state of an open-loop run.
struct OpenLoop<'a> {
    config: &'a ConnectionsConfig,
    poll: Poll,
    attempts: Slots<Attempt>,
    expect: Needle,
    chunk: [u8; READ_CHUNK],
    ok: u64,
    failures: FailureCounts,
    connect: Latencies,
    exchange: Latencies,
}

impl OpenLoop<'_> {
    /// Starts an attempt from `source`, or counts why it could not start.
    fn start(&mut self, source: IpAddr, now: Instant) {
        if self.attempts.is_full() {
            Failure::Overloaded.count(&mut self.failures);
            return;
        }
        let stream = match connect_from(source, self.config.target) {
            Ok(stream) => stream,
            Err(error) => {
                Failure::connecting(&error).count(&mut self.failures);
                return;
            }
        };
        let attempt = Attempt {
            stream,
            started: now,
            stage: Stage::Connecting,
            matched: 0,
        };
        let deadline = now + self.config.timeout;
        let Ok((token, attempt)) = self.attempts.insert(attempt, deadline) else {
            unreachable!("room was checked");
        };
        let registry = self.poll.registry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = registry.register(&mut attempt.stream, token, interest) {
            self.attempts.remove(token);
            Failure::connecting(&error).count(&mut self.failures);
        }
    }

    /// Takes the attempt under `token` as far as its socket allows.
    fn advance(&mut self, token: Token) {
        while let Some(attempt) = self.attempts.get_mut(token) {
            let started = attempt.started;
            match attempt.advance(&self.config.request, &self.expect, &mut self.chunk) {
                Progress::Waiting => return,
                Progress::Connected => {
                    let now = Instant::now();
                    self.connect.record(now - started);
                    self.attempts.set_deadline(token, now + self.config.timeout);
                }
                Progress::Finished(result) => {
                    let ended = Instant::now();
                    self.attempts.remove(token);
                    match result {
                        Ok(()) => {
                            self.ok += 1;
                            self.exchange.record(ended - started);
                        }
                        Err(failure) => failure.count(&mut self.failures),
                    }
                    return;
                }
            }
        }
    }

    /// Ends the attempts whose timeout passed.
    fn expire(&mut self, now: Instant) {
        while let Some(attempt) = self.attempts.pop_expired(now) {
            let failure = match attempt.stage {
                Stage::Connecting => Failure::Timeout,
                Stage::Sending { .. } | Stage::Receiving => Failure::ReplyTimeout,
            };
            failure.count(&mut self.failures);
        }
    }
}

/// A non-blocking connect to `target` from `source` (any port), under way.
fn connect_from(source: IpAddr, target: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(error) if error.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(error) => return Err(error),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// One connection of an open-loop run.
struct Attempt {
    stream: TcpStream,
    started: Instant,
    stage: Stage,
    /// Bytes of the expected text matched so far ([`Needle`]).
    matched: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    /// `sent` bytes of the request are out.
    Sending {
        sent: usize,
    },
    /// Reading the reply until the server closes.
    Receiving,
}

/// How far an [`Attempt`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Its socket would block.
    Waiting,
    /// connect() has just completed: the reply timeout starts; advance it again.
    Connected,
    Finished(Result<(), Failure>),
}

impl Attempt {
    fn advance(&mut self, request: &[u8], expect: &Needle, chunk: &mut [u8]) -> Progress {
        loop {
            match &mut self.stage {
                Stage::Connecting => return self.finish_connect(),
                Stage::Sending { sent } if *sent == request.len() => self.stage = Stage::Receiving,
                Stage::Sending { sent } => match self.stream.write(&request[*sent..]) {
                    Ok(written) => *sent += written,
                    Err(error) => {
                        if let Some(progress) = Progress::after(&error) {
                            return progress;
                        }
                    }
                },
                Stage::Receiving => match self.stream.read(chunk) {
                    Ok(0) if expect.is_found(self.matched) => return Progress::Finished(Ok(())),
                    Ok(0) => return Progress::Finished(Err(Failure::BadReply)),
                    Ok(read) => expect.advance(&mut self.matched, &chunk[..read]),
                    Err(error) => {
                        if let Some(progress) = Progress::after(&error) {
                            return progress;
                        }
                    }
                },
            }
        }
    }

    /// Whether the connect completed (writable or failed), as `mio` documents it: a pending
    /// error says it failed; a peer address, that it is established.
    fn finish_connect(&mut self) -> Progress {
        match self.stream.take_error() {
            Ok(Some(error)) | Err(error) => {
                return Progress::Finished(Err(Failure::connecting(&error)));
            }
            Ok(None) => {}
        }
        match self.stream.peer_addr() {
            Ok(_) => {
                self.stage = Stage::Sending { sent: 0 };
                Progress::Connected
            }
            Err(error) if error.kind() == io::ErrorKind::NotConnected => Progress::Waiting,
            Err(error) => Progress::Finished(Err(Failure::connecting(&error))),
        }
    }
}

impl Progress {
    /// What an I/O error on an established connection means: wait, try again (None), or fail.
    fn after(error: &io::Error) -> Option<Progress> {
        match error.kind() {
            io::ErrorKind::WouldBlock => Some(Progress::Waiting),
            io::ErrorKind::Interrupted => None,
            _ => Some(Progress::Finished(Err(Failure::exchanging(error)))),
        }
    }
}

/// How [`max_connection_rate`] searches.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLadder {
    /// The first rate tried, per second.
    pub start: u32,
    /// Each rate is the previous one times this (above 1), until one fails the objective.
    pub factor: f64,
    /// No higher rate is tried.
    pub max_rate: u32,
    /// Steps between the last rate that passed and the first that failed, each halving the
    /// gap.
    pub bisections: u32,
    /// Steps in all, at most.
    pub max_steps: usize,
    /// How long each step starts connections.
    pub step: Duration,
    /// The pause between steps (queues and TIME-WAIT sockets of the last step settle).
    pub settle: Duration,
    /// The objective: at least this share of attempts succeed…
    pub success: f64,
    /// …with an exchange p99 below this.
    pub p99: Duration,
}

impl Default for RateLadder {
    /// From 500/s, × 1.5 up to 200,000/s, 4 bisections, 24 steps at most, 2 s steps 1 s
    /// apart, the objective [`SLO_SUCCESS`] and [`SLO_P99`].
    fn default() -> RateLadder {
        RateLadder {
            start: 500,
            factor: 1.5,
            max_rate: 200_000,
            bisections: 4,
            max_steps: 24,
            step: Duration::from_secs(2),
            settle: Duration::from_secs(1),
            success: SLO_SUCCESS,
            p99: SLO_P99,
        }
    }
}

/// What [`max_connection_rate`] found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RateSearch {
    /// The highest rate that met the objective; none if the first did not.
    pub best: Option<ConnectionsReport>,
    /// Every step, in the order run.
    pub steps: Vec<ConnectionsReport>,
}

/// The highest rate of new connections that meets `ladder`'s objective: rates up the ladder
/// until one fails (or the top), then bisection between the last pass and the first fail.
/// Each step is a [`connections`] run of `ladder.step` with `config` (its rate and duration
/// replaced).
pub fn max_connection_rate(
    config: &ConnectionsConfig,
    ladder: &RateLadder,
) -> io::Result<RateSearch> {
    let mut first = true;
    search(ladder, |rate| {
        if !first {
            thread::sleep(ladder.settle);
        }
        first = false;
        connections(&ConnectionsConfig {
            rate,
            duration: ladder.step,
            ..config.clone()
        })
    })
}

/// [`max_connection_rate`] with `run` measuring each rate.
fn search(
    ladder: &RateLadder,
    mut run: impl FnMut(u32) -> io::Result<ConnectionsReport>,
) -> io::Result<RateSearch> {
    let mut found = RateSearch {
        best: None,
        steps: Vec::new(),
    };
    let mut step = |found: &mut RateSearch, rate| -> io::Result<bool> {
        let report = run(rate)?;
        let passed = report.meets(ladder.success, ladder.p99);
        if passed {
            found.best = Some(report.clone());
        }
        found.steps.push(report);
        Ok(passed)
    };
    let mut rate = ladder.start.clamp(1, ladder.max_rate.max(1));
    let mut failed = None;
    while found.steps.len() < ladder.max_steps {
        if !step(&mut found, rate)? {
            failed = Some(rate);
            break;
        }
        if rate >= ladder.max_rate {
            break;
        }
        let next = (f64::from(rate) * ladder.factor).ceil() as u32;
        rate = next.max(rate + 1).min(ladder.max_rate);
    }
    let (Some(mut passed), Some(mut failed)) = (found.best.as_ref().map(|b| b.rate), failed) else {
        return Ok(found);
    };
    for _ in 0..ladder.bisections {
        if found.steps.len() >= ladder.max_steps || failed - passed <= 1 {
            break;
        }
        let middle = passed + (failed - passed) / 2;
        if step(&mut found, middle)? {
            passed = middle;
        } else {
            failed = middle;
        }
    }
    Ok(found)
}

/// What [`keepalive`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepaliveConfig {
    pub target: SocketAddr,
    /// Persistent connections, each with one request at a time; positive.
    pub connections: usize,
    /// How long requests are sent.
    pub duration: Duration,
    /// For connect(), and for each reply.
    pub timeout: Duration,
    /// An HTTP/1.1 request that keeps the connection open, e.g.
    /// `GET / HTTP/1.1\r\nHost: lab\r\n\r\n`.
    pub request: Vec<u8>,
    /// Text each reply must contain.
    pub expect: Vec<u8>,
}

/// What a closed-loop run came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeepaliveReport {
    /// Connections established.
    pub connections: usize,
    /// Requests answered in full, with the expected text.
    pub requests: u64,
    pub requests_per_s: f64,
    /// From sending a request to the end of its reply.
    pub latency_us: Option<Percentiles>,
    /// Connections that failed: to connect, or later (reset or closed early as `reset`, no
    /// reply in time, a reply without the expected text or without a `Content-Length`).
    pub failures: FailureCounts,
    /// From the first request to the end of the run.
    pub elapsed_s: f64,
}

/// Keeps `config.connections` connections busy for `config.duration`, each sending the next
/// request as soon as the reply to the last one is complete (framed by its `Content-Length`);
/// requests still unanswered at the end are not counted. A connection that fails is counted
/// and not replaced.
pub fn keepalive(config: &KeepaliveConfig) -> io::Result<KeepaliveReport> {
    if config.connections == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "at least one connection is needed",
        ));
    }
    let mut failures = FailureCounts::default();
    let mut streams = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        match std::net::TcpStream::connect_timeout(&config.target, config.timeout) {
            Ok(stream) => {
                stream.set_nonblocking(true)?;
                streams.push(TcpStream::from_std(stream));
            }
            Err(error) => Failure::connecting(&error).count(&mut failures),
        }
    }
    let opened = streams.len();
    let mut poll = Poll::new()?;
    let mut clients = Slots::new(opened);
    let origin = Instant::now();
    for stream in streams {
        let client = KeptConnection {
            stream,
            sent: 0,
            sent_at: origin,
            received: Vec::new(),
        };
        let Ok((token, client)) = clients.insert(client, origin + config.timeout) else {
            unreachable!("a slot for every connection");
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(&mut client.stream, token, interest)?;
    }
    let expect = Needle::new(&config.expect);
    let mut chunk = [0; READ_CHUNK];
    let mut latency = Latencies::new();
    let mut requests = 0;
    let mut events = Events::with_capacity(EVENTS);
    let end = origin + config.duration;
    while clients.len() > 0 && Instant::now() < end {
        let wake = clients
            .next_deadline()
            .map_or(end, |deadline| deadline.min(end));
        poll_events(&mut poll, &mut events, wake)?;
        for event in &events {
            let token = event.token();
            while let Some(client) = clients.get_mut(token) {
                match client.advance(&config.request, &expect, &mut chunk) {
                    Ok(false) => break,
                    Ok(true) => {
                        let now = Instant::now();
                        latency.record(now - client.sent_at);
                        requests += 1;
                        if now >= end {
                            clients.remove(token);
                            break;
                        }
                        client.sent = 0;
                        client.sent_at = now;
                        clients.set_deadline(token, now + config.timeout);
                    }
                    Err(failure) => {
                        failure.count(&mut failures);
                        clients.remove(token);
                    }
                }
            }
        }
        while clients.pop_expired(Instant::now()).is_some() {
            Failure::ReplyTimeout.count(&mut failures);
        }
    }
    let elapsed = origin.elapsed().min(config.duration).as_secs_f64();
    Ok(KeepaliveReport {
        connections: opened,
        requests,
        requests_per_s: if elapsed > 0.0 {
            requests as f64 / elapsed
        } else {
            0.0
        },
        latency_us: latency.percentiles(),
        failures,
        elapsed_s: elapsed,
    })
}

/// One connection of a closed-loop run.
struct KeptConnection {
    stream: TcpStream,
    /// Bytes of the current request out.
    sent: usize,
    sent_at: Instant,
    /// The reply so far.
    received: Vec<u8>,
}

impl KeptConnection {
    /// Sends the request and reads its reply as far as the socket allows: `true` once the
    /// reply is complete (with the expected text), `false` while the socket would block.
    fn advance(
        &mut self,
        request: &[u8],
        expect: &Needle,
        chunk: &mut [u8],
    ) -> Result<bool, Failure> {
        let exchanging = |error: &io::Error| match error.kind() {
            io::ErrorKind::WouldBlock => Ok(false),
            _ => Err(Failure::exchanging(error)),
        };
        while self.sent < request.len() {
            match self.stream.write(&request[self.sent..]) {
                Ok(written) => self.sent += written,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return exchanging(&error),
            }
        }
        loop {
            if let Some(length) = reply_length(&self.received)? {
                let mut matched = 0;
                expect.advance(&mut matched, &self.received[..length]);
                if !expect.is_found(matched) {
                    return Err(Failure::BadReply);
                }
                self.received.drain(..length);
                return Ok(true);
            }
            match self.stream.read(chunk) {
                // Closed before the reply was complete.
                Ok(0) => return Err(Failure::Reset),
                Ok(read) => self.received.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return exchanging(&error),
            }
        }
    }
}

/// The length of the HTTP reply at the start of `bytes` once it is all there; a reply
/// without a `Content-Length`, or longer than [`MAX_REPLY`], is a bad one.
fn reply_length(bytes: &[u8]) -> Result<Option<usize>, Failure> {
    let Some(head) = head_length(bytes) else {
        return if bytes.len() < MAX_REPLY {
            Ok(None)
        } else {
            Err(Failure::BadReply)
        };
    };
    let body = header_values(&bytes[..head], "content-length")
        .next()
        .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
        .ok_or(Failure::BadReply)?;
    match head.checked_add(body) {
        Some(length) if length <= MAX_REPLY => Ok((bytes.len() >= length).then_some(length)),
        _ => Err(Failure::BadReply),
    }
}

/// Why an attempt or a connection failed: a field of [`FailureCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Timeout,
    Refused,
    Reset,
    Unreachable,
    ReplyTimeout,
    BadReply,
    Overloaded,
    Other,
}

impl Failure {
    /// A connect() that failed.
    fn connecting(error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::TimedOut => Failure::Timeout,
            kind => Failure::of(kind),
        }
    }

    /// An established connection that failed.
    fn exchanging(error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::TimedOut => Failure::ReplyTimeout,
            kind => Failure::of(kind),
        }
    }

    fn of(kind: io::ErrorKind) -> Failure {
        match kind {
            io::ErrorKind::ConnectionRefused => Failure::Refused,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::Reset,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
                Failure::Unreachable
            }
            _ => Failure::Other,
        }
    }

    fn count(self, failures: &mut FailureCounts) {
        let counter = match self {
            Failure::Timeout => &mut failures.timeout,
            Failure::Refused => &mut failures.refused,
            Failure::Reset => &mut failures.reset,
            Failure::Unreachable => &mut failures.unreachable,
            Failure::ReplyTimeout => &mut failures.reply_timeout,
            Failure::BadReply => &mut failures.bad_reply,
            Failure::Overloaded => &mut failures.overloaded,
            Failure::Other => &mut failures.other,
        };
        *counter += 1;
    }
}

/// Finds a fixed text in a stream read in pieces (Knuth–Morris–Pratt), with one `usize` of
/// state per stream: how many bytes of the text the stream's end matches.
struct Needle {
    text: Vec<u8>,
    /// For a match of `i + 1` bytes that fails at the next byte: the longest shorter match
    /// still standing.
    fallback: Vec<usize>,
}

impl Needle {
    fn new(text: &[u8]) -> Needle {
        let mut fallback = vec![0; text.len()];
        let mut matched = 0;
        for i in 1..text.len() {
            while matched > 0 && text[i] != text[matched] {
                matched = fallback[matched - 1];
            }
            if text[i] == text[matched] {
                matched += 1;
            }
            fallback[i] = matched;
        }
        Needle {
            text: text.to_vec(),
            fallback,
        }
    }

    /// Moves `matched` over `bytes`; once the whole text was seen, it stays found.
    fn advance(&self, matched: &mut usize, bytes: &[u8]) {
        for &byte in bytes {
            if self.is_found(*matched) {
                return;
            }
            while *matched > 0 && byte != self.text[*matched] {
                *matched = self.fallback[*matched - 1];
            }
            if byte == self.text[*matched] {
                *matched += 1;
            }
        }
    }

    fn is_found(&self, matched: usize) -> bool {
        matched == self.text.len()
    }
}

/// A latency histogram (1 µs to 60 s, three significant digits).
struct Latencies(Histogram<u64>);

impl Latencies {
    fn new() -> Latencies {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .expect("constant, valid histogram bounds");
        Latencies(histogram)
    }

    fn record(&mut self, latency: Duration) {
        self.0
            .saturating_record(micros(latency).clamp(1, MAX_LATENCY_US));
    }

    /// None when nothing was recorded.
    fn percentiles(&self) -> Option<Percentiles> {
        let histogram = &self.0;
        (!histogram.is_empty()).then(|| Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        })
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::service::testing::serving;
    use crate::lab::service::{REPLY_MARK, ServiceConfig};
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::atomic::Ordering;

    const GET_10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
    const GET_11: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";

    /// 30 attempts at 100/s to `target` from 127.0.0.1, with generous timeouts.
    fn low_rate(target: SocketAddr) -> ConnectionsConfig {
        ConnectionsConfig {
            target,
            sources: vec![Ipv4Addr::LOCALHOST.into()],
            rate: 100,
            duration: Duration::from_millis(300),
            timeout: Duration::from_secs(5),
            max_in_flight: 64,
            request: GET_10.to_vec(),
            expect: REPLY_MARK.as_bytes().to_vec(),
        }
    }

    /// A loopback address nothing listens on (the port was just free).
    fn closed_port() -> SocketAddr {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.local_addr().unwrap()
    }

    #[test]
    fn test_low_rate_every_attempt_succeeds() {
        serving(&ServiceConfig::default(), |address, counters| {
            let report = connections(&low_rate(address)).unwrap();
            assert_eq!((report.attempts, report.ok), (30, 30), "{report:?}");
            assert_eq!(report.failures, FailureCounts::default());
            let (connect, exchange) = (report.connect_us.unwrap(), report.exchange_us.unwrap());
            assert!(connect.p50 <= exchange.max, "{report:?}");
            assert!(report.meets(1.0, Duration::from_secs(60)));
            assert_eq!(counters.requests.load(Ordering::Relaxed), 30);
        });
    }

    #[test]
    fn test_connections_without_a_listener_are_refused() {
        let config = ConnectionsConfig {
            duration: Duration::from_millis(100),
            ..low_rate(closed_port())
        };
        let report = connections(&config).unwrap();
        assert_eq!(report.attempts, 10);
        assert_eq!(report.failures.refused, 10, "{report:?}");
        assert_eq!(
            (report.ok, report.connect_us, report.exchange_us),
            (0, None, None)
        );
        assert!(!report.meets(0.0, Duration::from_secs(60)));
    }

    #[test]
    fn test_silent_server_gives_reply_timeouts() {
        // The kernel completes the handshakes; nobody ever answers.
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let config = ConnectionsConfig {
            rate: 20,
            duration: Duration::from_millis(100),
            timeout: Duration::from_millis(300),
            ..low_rate(listener.local_addr().unwrap())
        };
        let report = connections(&config).unwrap();
        assert_eq!(report.attempts, 2);
        assert_eq!(report.failures.reply_timeout, 2, "{report:?}");
        assert!(report.connect_us.is_some() && report.exchange_us.is_none());
    }

    #[test]
    fn test_attempts_beyond_the_in_flight_limit_are_overloaded() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let config = ConnectionsConfig {
            rate: 50,
            duration: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            max_in_flight: 2,
            ..low_rate(listener.local_addr().unwrap())
        };
        let report = connections(&config).unwrap();
        assert_eq!(report.attempts, 5);
        assert_eq!(report.failures.overloaded, 3, "{report:?}");
        assert_eq!(report.failures.reply_timeout, 2, "{report:?}");
    }

    #[test]
    fn test_keepalive_reuses_its_connections() {
        serving(&ServiceConfig::default(), |address, counters| {
            let config = KeepaliveConfig {
                target: address,
                connections: 4,
                duration: Duration::from_secs(1),
                timeout: Duration::from_secs(5),
                request: GET_11.to_vec(),
                expect: REPLY_MARK.as_bytes().to_vec(),
            };
            let report = keepalive(&config).unwrap();
            assert_eq!(report.connections, 4);
            assert_eq!(report.failures, FailureCounts::default());
            assert!(report.requests > 4, "{report:?}");
            assert!(report.latency_us.is_some());
            assert_eq!(counters.accepted.load(Ordering::Relaxed), 4);
            assert!(counters.requests.load(Ordering::Relaxed) >= report.requests);
        });
    }

    #[test]
    fn test_keepalive_counts_a_server_that_closes() {
        // HTTP/1.0: the service answers and closes, so each connection ends after one reply.
        serving(&ServiceConfig::default(), |address, _| {
            let config = KeepaliveConfig {
                target: address,
                connections: 2,
                duration: Duration::from_secs(10),
                timeout: Duration::from_secs(5),
                request: GET_10.to_vec(),
                expect: REPLY_MARK.as_bytes().to_vec(),
            };
            let report = keepalive(&config).unwrap();
            assert_eq!((report.connections, report.requests), (2, 2));
            assert_eq!(report.failures.reset, 2, "{report:?}");
        });
    }

    #[test]
    fn test_rate_search_at_low_rates() {
        serving(&ServiceConfig::default(), |address, _| {
            let ladder = RateLadder {
                start: 50,
                max_rate: 400,
                step: Duration::from_millis(200),
                settle: Duration::ZERO,
                // Lenient, so that it holds on a loaded machine.
                success: 0.99,
                p99: Duration::from_secs(5),
                ..RateLadder::default()
            };
            let search = max_connection_rate(&low_rate(address), &ladder).unwrap();
            let rates: Vec<u32> = search.steps.iter().map(|step| step.rate).collect();
            assert_eq!(rates.first(), Some(&50));
            assert!(rates.len() <= ladder.max_steps);
            assert!(rates.iter().all(|&rate| rate <= 400), "{rates:?}");
            let best = search.best.expect("50/s meets a lenient objective");
            assert!(best.meets(ladder.success, ladder.p99));
            assert!(rates.contains(&best.rate));
        });
    }

    /// A report that meets the objective when `passes`.
    fn report(rate: u32, passes: bool) -> ConnectionsReport {
        let latency = Percentiles {
            p50: 100,
            p90: 100,
            p99: 100,
            max: 100,
        };
        ConnectionsReport {
            rate,
            attempts: 100,
            ok: if passes { 100 } else { 50 },
            failures: FailureCounts {
                timeout: if passes { 0 } else { 50 },
                ..FailureCounts::default()
            },
            connect_us: Some(latency),
            exchange_us: Some(latency),
            max_start_lag_us: 0,
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn test_search_climbs_then_bisects() {
        let ladder = RateLadder {
            start: 100,
            factor: 2.0,
            max_rate: 10_000,
            bisections: 5,
            ..RateLadder::default()
        };
        let search = search(&ladder, |rate| Ok(report(rate, rate <= 1_000))).unwrap();
        let rates: Vec<u32> = search.steps.iter().map(|step| step.rate).collect();
        assert_eq!(
            rates,
            [100, 200, 400, 800, 1600, 1200, 1000, 1100, 1050, 1025]
        );
        assert_eq!(search.best.unwrap().rate, 1_000);
    }

    #[test]
    fn test_search_bounds() {
        let ladder = RateLadder {
            start: 100,
            factor: 2.0,
            max_rate: 500,
            ..RateLadder::default()
        };
        let top = search(&ladder, |rate| Ok(report(rate, true))).unwrap();
        let rates: Vec<u32> = top.steps.iter().map(|step| step.rate).collect();
        assert_eq!(rates, [100, 200, 400, 500]);
        assert_eq!(top.best.unwrap().rate, 500);
        let none = search(&ladder, |rate| Ok(report(rate, false))).unwrap();
        assert_eq!((none.steps.len(), none.best), (1, None));
        let few = RateLadder {
            max_steps: 2,
            ..ladder
        };
        let cut = search(&few, |rate| Ok(report(rate, rate < 150))).unwrap();
        assert_eq!(cut.steps.len(), 2);
        assert_eq!(cut.best.unwrap().rate, 100);
    }

    #[test]
    fn test_meets_the_objective() {
        let mut passing = report(100, true);
        assert!(passing.meets(SLO_SUCCESS, SLO_P99));
        passing.exchange_us.as_mut().unwrap().p99 = 10_000;
        assert!(!passing.meets(SLO_SUCCESS, SLO_P99));
        assert!(!report(100, false).meets(SLO_SUCCESS, SLO_P99));
        assert!(report(100, false).meets(0.5, SLO_P99));
    }

    #[test]
    fn test_schedule_is_absolute() {
        let origin = Instant::now();
        let schedule = Schedule::new(3, Duration::from_secs(2), origin);
        assert_eq!(schedule.attempts, 6);
        assert_eq!(schedule.due(0), origin);
        assert_eq!(schedule.due(3), origin + Duration::from_secs(1));
        assert_eq!(
            schedule.due(4) - schedule.due(3),
            Duration::from_nanos(333_333_333)
        );
        assert_eq!(schedule.burst(), 1);
        assert_eq!(Schedule::new(100_000, Duration::ZERO, origin).burst(), 200);
    }

    #[test]
    fn test_needle_across_pieces() {
        let needle = Needle::new(b"aab");
        let mut matched = 0;
        needle.advance(&mut matched, b"xaa");
        needle.advance(&mut matched, b"a");
        assert!(!needle.is_found(matched));
        needle.advance(&mut matched, b"bzzz");
        assert!(needle.is_found(matched));
        let mark = Needle::new(REPLY_MARK.as_bytes());
        let reply = b"HTTP/1.1 200 OK\r\n\r\nsynwall-lab\n";
        for split in 0..reply.len() {
            let mut matched = 0;
            mark.advance(&mut matched, &reply[..split]);
            mark.advance(&mut matched, &reply[split..]);
            assert!(mark.is_found(matched), "split at {split}");
        }
        let mut matched = 0;
        mark.advance(&mut matched, b"synwall la synwall-lab");
        assert!(!mark.is_found(matched));
        assert!(Needle::new(b"").is_found(0));
    }

    #[test]
    fn test_reply_length() {
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody";
        assert_eq!(reply_length(reply), Ok(Some(reply.len())));
        assert_eq!(reply_length(&reply[..reply.len() - 1]), Ok(None));
        assert_eq!(reply_length(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert_eq!(
            reply_length(b"HTTP/1.1 200 OK\r\n\r\n"),
            Err(Failure::BadReply)
        );
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n";
        assert_eq!(reply_length(huge), Err(Failure::BadReply));
    }

    #[test]
    fn test_errors_map_to_failure_kinds() {
        use io::ErrorKind::*;
        let connecting = |kind| Failure::connecting(&io::Error::from(kind));
        let exchanging = |kind| Failure::exchanging(&io::Error::from(kind));
        assert_eq!(connecting(TimedOut), Failure::Timeout);
        assert_eq!(exchanging(TimedOut), Failure::ReplyTimeout);
        assert_eq!(connecting(ConnectionRefused), Failure::Refused);
        assert_eq!(exchanging(BrokenPipe), Failure::Reset);
        assert_eq!(connecting(NetworkUnreachable), Failure::Unreachable);
        assert_eq!(exchanging(InvalidData), Failure::Other);
    }
}
