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
//! deadlines, see `slots::Slots`), one read buffer, and fixed-size latency histograms
//! (hdrhistogram, 1 µs to 60 s, three significant digits). A keep-alive connection buffers one
//! reply, at most [`MAX_REPLY`] bytes. Setup errors are `io::Error`s; what happens to an
//! attempt is counted ([`FailureCounts`]).
//!
//! The open loop is here; the rate search is in `peacetime_search`, the closed loop in
//! `peacetime_keepalive`, and what the clients share (failure kinds, the expected-text
//! matcher, latency histograms) in `peacetime_client`.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::lab::peacetime_client::{EVENTS, Latencies, Needle, READ_CHUNK, micros, poll_events};
pub use crate::lab::peacetime_keepalive::{KeepaliveConfig, KeepaliveReport, keepalive};
pub use crate::lab::peacetime_search::{RateLadder, RateSearch, max_connection_rate};
use crate::lab::report::{FailureCounts, Percentiles};
use crate::lab::slots::Slots;
use crate::legit::Failure;

/// The share of attempts that must succeed.
pub const SLO_SUCCESS: f64 = 0.999;
/// The exchange p99 must be below this.
pub const SLO_P99: Duration = Duration::from_millis(10);
/// How much of the schedule a late loop starts at once before it looks at its sockets.
pub const CATCH_UP: Duration = Duration::from_millis(2);
/// The longest keep-alive reply, head and body.
pub const MAX_REPLY: usize = 64 * 1024;

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
            _ => Some(Progress::Finished(Err(Failure::replying(error)))),
        }
    }
}

#[cfg(test)]
mod tests;
