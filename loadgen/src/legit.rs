//! Legit clients: real kernel TCP connections (`TcpStream::connect_timeout`, to an IPv4 or
//! IPv6 target alike) from the generator's namespace, started at a steady rate while the flood runs; each sends a request
//! and checks that the reply contains the expected text.
//!
//! A scheduler thread paces the attempts ([`Pacer`]) and hands tickets to a fixed pool of
//! client threads through a bounded queue; a ticket that finds the queue full is counted as
//! [`Failure::Overloaded`] rather than queued, so memory and threads stay bounded. The pool
//! has room for every attempt that can be in flight at the configured rate and timeout (at
//! most [`MAX_CLIENT_THREADS`]). Outcomes are tallied twice: per reporting interval and for the
//! whole run. Connect latencies go into fixed-size histograms (hdrhistogram, 1 µs to 60 s,
//! three significant digits).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::TrySendError;
use hdrhistogram::Histogram;

use crate::pacer::{Pacer, Rate};
use crate::report::{FailureCounts, LegitReport, Percentiles};

/// The most client threads, whatever the rate and timeout.
pub const MAX_CLIENT_THREADS: usize = 256;
/// The most reply bytes read while looking for the expected text.
const MAX_REPLY: usize = 64 * 1024;
/// The longest a histogram records, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long the scheduler sleeps at most before it checks whether to stop.
const MAX_NAP: Duration = Duration::from_millis(50);

/// What the legit clients do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegitConfig {
    pub target: SocketAddr,
    /// Connections started per second; positive.
    pub rate: u32,
    /// For connect() and again for the reply.
    pub timeout: Duration,
    pub request: Vec<u8>,
    pub expect: Vec<u8>,
}

/// Why a legit connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// connect() did not complete in time.
    Timeout,
    /// The target answered the SYN with a RST.
    Refused,
    /// The connection was reset after it was established.
    Reset,
    /// No route, or ICMP unreachable.
    Unreachable,
    /// Connected, but no (complete) reply in time.
    ReplyTimeout,
    /// The reply ended without the expected text.
    BadReply,
    /// Not started: every client thread was busy.
    Overloaded,
    /// Anything else.
    Other,
}

impl Failure {
    /// A connect() that failed.
    pub(crate) fn connecting(error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::Timeout,
            kind => Failure::after_connect(kind),
        }
    }

    /// An established connection that failed.
    pub(crate) fn replying(error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Failure::ReplyTimeout,
            kind => Failure::after_connect(kind),
        }
    }

    /// Counts this failure in its field of `counts`.
    pub(crate) fn count(self, counts: &mut FailureCounts) {
        *match self {
            Failure::Timeout => &mut counts.timeout,
            Failure::Refused => &mut counts.refused,
            Failure::Reset => &mut counts.reset,
            Failure::Unreachable => &mut counts.unreachable,
            Failure::ReplyTimeout => &mut counts.reply_timeout,
            Failure::BadReply => &mut counts.bad_reply,
            Failure::Overloaded => &mut counts.overloaded,
            Failure::Other => &mut counts.other,
        } += 1;
    }

    fn after_connect(kind: io::ErrorKind) -> Failure {
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
}

/// Outcomes of one stretch of time.
#[derive(Debug, Clone)]
struct Tally {
    ok: u64,
    failures: FailureCounts,
    connect_us: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            failures: FailureCounts::default(),
            connect_us: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .expect("constant, valid histogram bounds"),
        }
    }

    fn record(&mut self, outcome: &Outcome) {
        if let Some(connect) = outcome.connect {
            let micros = u64::try_from(connect.as_micros()).unwrap_or(u64::MAX);
            self.connect_us
                .saturating_record(micros.clamp(1, MAX_LATENCY_US));
        }
        match outcome.failure {
            None => self.ok += 1,
            Some(failure) => failure.count(&mut self.failures),
        }
    }

    fn report(&self) -> LegitReport {
        let failed = self.failures.total();
        let histogram = &self.connect_us;
        let connect_us = (!histogram.is_empty()).then(|| Percentiles {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        });
        LegitReport {
            attempts: self.ok + failed,
            ok: self.ok,
            failed,
            failures: self.failures,
            connect_us,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Outcome {
    /// How long connect() took, if it completed.
    connect: Option<Duration>,
    failure: Option<Failure>,
}

#[derive(Debug)]
struct Tallies {
    interval: Tally,
    total: Tally,
}

impl Tallies {
    fn record(&mut self, outcome: &Outcome) {
        self.interval.record(outcome);
        self.total.record(outcome);
    }
}

/// The running legit clients; see the module documentation.
#[derive(Debug)]
pub struct LegitClients {
    tallies: Arc<Mutex<Tallies>>,
    scheduler: thread::JoinHandle<()>,
    clients: Vec<thread::JoinHandle<()>>,
}

impl LegitClients {
    /// Starts the scheduler and the client threads; attempts start from `origin` until
    /// `deadline` or `stop`.
    pub fn start(
        config: LegitConfig,
        origin: Instant,
        deadline: Instant,
        stop: Arc<AtomicBool>,
    ) -> LegitClients {
        let tallies = Arc::new(Mutex::new(Tallies {
            interval: Tally::new(),
            total: Tally::new(),
        }));
        // Each attempt takes at most two timeouts (connect, then reply).
        let in_flight = f64::from(config.rate) * 2.0 * config.timeout.as_secs_f64();
        let threads = (in_flight.ceil() as usize + 1).min(MAX_CLIENT_THREADS);
        let (tickets, queue) = crossbeam_channel::bounded::<()>(threads);
        let config = Arc::new(config);
        let clients = (0..threads)
            .map(|_| {
                let queue = queue.clone();
                let config = Arc::clone(&config);
                let tallies = Arc::clone(&tallies);
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    for () in queue.iter() {
                        // Tickets still queued when the run stops are not started.
                        if stop.load(Ordering::Relaxed) {
                            continue;
                        }
                        let outcome = attempt(&config);
                        lock(&tallies).record(&outcome);
                    }
                })
            })
            .collect();
        let scheduler = {
            let tallies = Arc::clone(&tallies);
            let rate = Rate::PerSecond(u64::from(config.rate));
            thread::spawn(move || {
                let mut pacer = Pacer::new(rate, origin);
                loop {
                    let now = Instant::now();
                    if now >= deadline || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if pacer.grant(now, 1) == 0 {
                        let due = pacer.due_at(1).unwrap_or(deadline).min(deadline);
                        thread::sleep(due.saturating_duration_since(now).min(MAX_NAP));
                        continue;
                    }
                    pacer.record(1);
                    if let Err(TrySendError::Full(())) = tickets.try_send(()) {
                        let overloaded = Outcome {
                            connect: None,
                            failure: Some(Failure::Overloaded),
                        };
                        lock(&tallies).record(&overloaded);
                    }
                }
                // Dropping `tickets` lets the clients finish what is queued, then exit.
            })
        };
        LegitClients {
            tallies,
            scheduler,
            clients,
        }
    }

    /// The outcomes since the previous call (or the start).
    pub fn take_interval(&self) -> LegitReport {
        let mut tallies = lock(&self.tallies);
        let report = tallies.interval.report();
        tallies.interval = Tally::new();
        report
    }

    /// Waits for the scheduler to stop and every attempt started to end (at most two timeouts
    /// after `stop`: connect, then reply); the whole run's outcomes.
    pub fn finish(self) -> LegitReport {
        // A thread that panicked recorded nothing more; the tallies still hold.
        let _ = self.scheduler.join();
        for client in self.clients {
            let _ = client.join();
        }
        lock(&self.tallies).total.report()
    }
}

/// The lock, also when a client thread panicked while holding it (tallies stay consistent:
/// every update is a single counter or histogram write).
fn lock(tallies: &Mutex<Tallies>) -> std::sync::MutexGuard<'_, Tallies> {
    tallies.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One legit connection: connect, send the request, read until the expected text shows up,
/// the peer closes, or [`MAX_REPLY`] bytes came.
fn attempt(config: &LegitConfig) -> Outcome {
    let start = Instant::now();
    let mut stream = match TcpStream::connect_timeout(&config.target, config.timeout) {
        Ok(stream) => stream,
        Err(error) => {
            return Outcome {
                connect: None,
                failure: Some(Failure::connecting(&error)),
            };
        }
    };
    let connect = Some(start.elapsed());
    let failure = exchange(&mut stream, config).err();
    Outcome { connect, failure }
}

fn exchange(stream: &mut TcpStream, config: &LegitConfig) -> Result<(), Failure> {
    let fail = |error: io::Error| Failure::replying(&error);
    stream
        .set_write_timeout(Some(config.timeout))
        .map_err(fail)?;
    stream
        .set_read_timeout(Some(config.timeout))
        .map_err(fail)?;
    stream.write_all(&config.request).map_err(fail)?;
    let mut reply = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while reply.len() < MAX_REPLY {
        let read = stream.read(&mut chunk).map_err(fail)?;
        if read == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..read]);
        if contains(&reply, &config.expect) {
            return Ok(());
        }
    }
    if contains(&reply, &config.expect) {
        Ok(())
    } else {
        Err(Failure::BadReply)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    // Outcomes against real servers are tested in the lab (tests/lab.rs), over both families:
    // tests send only inside 198.18.0.0/15 and 2001:2::/48, between namespaces they create.
    use super::*;

    #[test]
    fn test_tally_reports_percentiles() {
        let mut tally = Tally::new();
        for ms in 1..=100 {
            tally.record(&Outcome {
                connect: Some(Duration::from_millis(ms)),
                failure: None,
            });
        }
        tally.record(&Outcome {
            connect: None,
            failure: Some(Failure::Timeout),
        });
        let report = tally.report();
        assert_eq!((report.attempts, report.ok, report.failed), (101, 100, 1));
        assert_eq!(report.failures.timeout, 1);
        let connect = report.connect_us.unwrap();
        assert!((49_900..=50_100).contains(&connect.p50), "{connect:?}");
        assert!((98_900..=99_100).contains(&connect.p99), "{connect:?}");
        assert!((99_900..=100_100).contains(&connect.max), "{connect:?}");
        assert_eq!(Tally::new().report().connect_us, None);
    }

    #[test]
    fn test_errors_map_to_failure_kinds() {
        use io::ErrorKind::*;
        let connecting = |kind| Failure::connecting(&io::Error::from(kind));
        let replying = |kind| Failure::replying(&io::Error::from(kind));
        let cases = [
            (connecting(TimedOut), Failure::Timeout),
            (replying(WouldBlock), Failure::ReplyTimeout),
            (replying(TimedOut), Failure::ReplyTimeout),
            (connecting(ConnectionRefused), Failure::Refused),
            (replying(ConnectionReset), Failure::Reset),
            (replying(BrokenPipe), Failure::Reset),
            (connecting(HostUnreachable), Failure::Unreachable),
            (connecting(NetworkUnreachable), Failure::Unreachable),
            (replying(InvalidData), Failure::Other),
        ];
        for (mapped, expected) in cases {
            assert_eq!(mapped, expected);
        }
    }

    #[test]
    fn test_contains() {
        assert!(contains(b"HTTP/1.0 200 OK", b"200"));
        assert!(!contains(b"HTTP/1.0 500", b"200"));
        assert!(contains(b"", b""));
    }
}
