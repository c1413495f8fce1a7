//! One event loop of the proxy: a thread on a mio poll, owning a slab of joined connections;
//! it admits handed-over connections and those it accepts from synwall's own listening sockets
//! itself, drives every readiness event, gives up on upstream connects past their deadline and
//! resets whatever is still open when serving stops.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::joined::{Joined, reset};
use super::slots::Slots;
use super::{HANDOVER_CAPACITY, Handover, LoopHandle, ProxyConfig, ProxyCounters, in_force};
use crate::own_listener::{Accepted, ERROR_PAUSE, OwnListenerSockets};

/// Events taken from epoll per wait.
pub(super) const EVENTS_PER_WAIT: usize = 1024;
/// The event loops' own token; connection `i` has tokens `2i` (client) and `2i + 1` (upstream),
/// synwall's own listening socket `i` has `LISTENERS - i`.
pub(super) const WAKER: Token = Token(usize::MAX);
const LISTENERS: usize = usize::MAX - 1;
/// How often a loop that found no free slot looks again for connections in the listening
/// sockets' accept queues, when no connection of its own ends first.
const SLOT_RETRY: Duration = Duration::from_millis(10);
/// Connections accepted from the listening sockets per turn of the loop, at most, before it
/// serves the events of those it has.
const ACCEPTS_PER_TURN: usize = HANDOVER_CAPACITY;

/// Bytes moved since the counters were last updated: added once per loop iteration, so the
/// loops do not share a cache line per write.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) to_upstream: u64,
    pub(super) to_clients: u64,
}

/// One event-loop thread: its epoll instance and the connections it owns.
pub(super) struct EventLoop<'a> {
    poll: Poll,
    handovers: Receiver<Handover>,
    /// Slot `i` holds the connection of tokens `2i` and `2i + 1`.
    joined: Vec<Option<Joined>>,
    /// Empty slots of `joined`.
    free: Vec<usize>,
    /// Connections whose turn ended on the budget, to drive again without an event.
    busy: Vec<usize>,
    tally: Tally,
    /// The earliest deadline of an upstream connect that may still be pending: the loop wakes
    /// then to expire connects (and finds the next one), and otherwise sleeps until an event or
    /// a handover wakes it. No periodic tick.
    next_deadline: Option<Instant>,
    shared: Shared<'a>,
    /// The listening sockets may hold connections this loop has not accepted: a listening
    /// socket was readable, no slot was free or `accept` failed. Edge-triggered, so without
    /// a new connection no event says so again.
    accept_pending: bool,
    /// After an `accept` that failed for want of descriptors or memory: not before then.
    accept_paused_until: Option<Instant>,
}

/// What an event loop shares with the others and the proxy.
pub(super) struct Shared<'a> {
    pub(super) slots: &'a Slots,
    pub(super) counters: &'a ProxyCounters,
    /// Set when serving ends.
    pub(super) finished: &'a AtomicBool,
    /// synwall's own listening sockets, when the proxy took them from the server.
    pub(super) own: Option<&'a OwnListenerSockets>,
    /// What connections accepted from them are joined to (the configuration in force).
    pub(super) config: &'a RwLock<Arc<ProxyConfig>>,
}

impl<'a> EventLoop<'a> {
    /// A loop with its end for the accept loop; registers synwall's own listening sockets,
    /// if the proxy has them, in this loop's poll.
    pub(super) fn new(shared: Shared<'a>) -> io::Result<(EventLoop<'a>, LoopHandle)> {
        let own = shared.own;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        for (index, listener) in own.iter().flat_map(|own| own.listeners.iter().enumerate()) {
            poll.registry().register(
                &mut SourceFd(&listener.as_raw_fd()),
                Token(LISTENERS - index),
                Interest::READABLE,
            )?;
        }
        let (sender, receiver) = crossbeam_channel::bounded(HANDOVER_CAPACITY);
        let event_loop = EventLoop {
            poll,
            handovers: receiver,
            joined: Vec::new(),
            free: Vec::new(),
            busy: Vec::new(),
            tally: Tally::default(),
            next_deadline: None,
            shared,
            // Connections may have queued before the loop started.
            accept_pending: own.is_some(),
            accept_paused_until: None,
        };
        let handle = LoopHandle {
            handovers: sender,
            waker,
        };
        Ok((event_loop, handle))
    }

    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_PER_WAIT);
        while !self.shared.finished.load(Ordering::Relaxed) {
            let timeout = if !(self.busy.is_empty() && self.handovers.is_empty()) {
                Some(Duration::ZERO)
            } else {
                let now = Instant::now();
                self.next_deadline
                    .map(|deadline| deadline.saturating_duration_since(now))
                    .into_iter()
                    .chain(self.accept_retry(now))
                    .min()
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => panic!("epoll_wait on the proxy's epoll instance failed: {error}"),
            }
            let busy = std::mem::take(&mut self.busy);
            for event in &events {
                match event.token() {
                    WAKER => {}
                    // Listener `i`'s token is `LISTENERS - i`.
                    Token(token) if token > LISTENERS - self.listener_count() => {
                        self.accept_pending = true;
                    }
                    _ => self.handle_event(event),
                }
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
            if self.accept_pending {
                self.accept_own();
            }
            let now = Instant::now();
            if self.next_deadline.is_some_and(|deadline| deadline <= now) {
                self.next_deadline = self.expire_connects(now);
            }
            self.flush_tally();
        }
        self.reset_all();
    }

    fn listener_count(&self) -> usize {
        self.shared.own.map_or(0, |own| own.listeners.len())
    }

    /// When to look at the listening sockets again without an event, if they may hold
    /// connections: at once while a slot is free, at the end of a pause after a failed
    /// `accept`, else after [`SLOT_RETRY`] (a slot freed by another loop).
    fn accept_retry(&self, now: Instant) -> Option<Duration> {
        if !self.accept_pending {
            return None;
        }
        Some(match self.accept_paused_until {
            Some(until) => until.saturating_duration_since(now),
            None if self.shared.slots.any_free() => Duration::ZERO,
            None => SLOT_RETRY,
        })
    }

    /// Accepts what synwall's own listening sockets hold while slots are free, at most
    /// [`ACCEPTS_PER_TURN`]; leaves `accept_pending` set when it stopped before every socket
    /// was drained.
    fn accept_own(&mut self) {
        let Some(own) = self.shared.own else {
            return;
        };
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|until| now < until) {
            return;
        }
        self.accept_paused_until = None;
        self.accept_pending = true;
        let mut budget = ACCEPTS_PER_TURN;
        for index in 0..own.listeners.len() {
            loop {
                if budget == 0 || !self.shared.slots.try_acquire() {
                    return;
                }
                budget -= 1;
                match own.accept(index) {
                    Accepted::Connection(connection) => {
                        own.counters().count_delivered();
                        let config = in_force(self.shared.config);
                        self.admit(Handover { connection, config });
                    }
                    Accepted::Empty => {
                        self.shared.slots.release();
                        break;
                    }
                    Accepted::Again => self.shared.slots.release(),
                    Accepted::Failed => {
                        self.shared.slots.release();
                        self.accept_paused_until = Some(now + ERROR_PAUSE);
                        return;
                    }
                }
            }
        }
        self.accept_pending = false;
    }

    /// Opens the upstream connection of a handed-over client.
    fn admit(&mut self, handover: Handover) {
        let index = self.free.pop().unwrap_or_else(|| {
            self.joined.push(None);
            self.joined.len() - 1
        });
        match Joined::open(handover, self.poll.registry(), index) {
            Ok(joined) => {
                self.next_deadline = self
                    .next_deadline
                    .into_iter()
                    .chain(joined.connect_deadline)
                    .min();
                self.joined[index] = Some(joined);
                self.shared.counters.active.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                self.free.push(index);
                self.count_failure(&failure);
                self.shared.slots.release();
            }
        }
    }

    pub(super) fn handle_event(&mut self, event: &Event) {
        let (index, which) = Which::of(event.token());
        let Some(joined) = self.joined.get_mut(index).and_then(Option::as_mut) else {
            return;
        };
        let was_connecting = joined.is_connecting();
        if let Err(failure) = joined.handle_event(which, event) {
            return self.close(index, Err(failure));
        }
        if was_connecting && !joined.is_connecting() {
            self.shared.counters.proxied.fetch_add(1, Ordering::Relaxed);
        }
        self.drive(index);
    }

    /// Moves what can move on connection `index`, and closes it when it is done or broken.
    pub(super) fn drive(&mut self, index: usize) {
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

    /// Gives up on connects past their deadline; returns the earliest deadline of those still
    /// pending.
    fn expire_connects(&mut self, now: Instant) -> Option<Instant> {
        let mut next = None;
        for index in 0..self.joined.len() {
            let deadline = self.joined[index]
                .as_ref()
                .and_then(|joined| joined.connect_deadline);
            match deadline {
                Some(deadline) if deadline <= now => {
                    let timed_out =
                        io::Error::new(io::ErrorKind::TimedOut, "upstream connect timed out");
                    self.close(index, Err(Failure::Upstream(timed_out)));
                }
                deadline => next = next.into_iter().chain(deadline).min(),
            }
        }
        next
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
        self.shared.counters.active.fetch_sub(1, Ordering::Relaxed);
        self.shared.slots.release();
    }

    fn count_failure(&self, failure: &Failure) {
        match failure {
            Failure::Upstream(error) => {
                self.shared
                    .counters
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
            self.shared
                .counters
                .bytes_to_upstream
                .fetch_add(to_upstream, Ordering::Relaxed);
        }
        if to_clients > 0 {
            self.shared
                .counters
                .bytes_to_clients
                .fetch_add(to_clients, Ordering::Relaxed);
        }
    }

    /// Serving ends: every connection, and every client still in the channel, is reset.
    fn reset_all(mut self) {
        for index in 0..self.joined.len() {
            if let Some(joined) = self.joined[index].take() {
                joined.reset();
                self.shared.counters.active.fetch_sub(1, Ordering::Relaxed);
                self.shared.slots.release();
            }
        }
        for handover in self.handovers.try_iter() {
            reset(&handover.connection.stream);
            self.shared.slots.release();
        }
        self.flush_tally();
    }
}

/// Which socket of a connection a token stands for.
#[derive(Clone, Copy)]
pub(super) enum Which {
    Client,
    Upstream,
}

impl Which {
    /// The token of this socket of connection `index`.
    pub(super) fn token(self, index: usize) -> Token {
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
pub(super) enum Failure {
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
pub(super) enum Turn {
    /// Every operation would block: wait for an event.
    Waiting,
    /// The budget ran out while bytes could still move.
    Busy,
    /// Both directions are closed.
    Done,
}
