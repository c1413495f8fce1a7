//! The proxy behind `synwall listen`: every accepted connection is joined to a new connection
//! to the upstream service, bytes copied both ways until each side closes its half.
//!
//! ```text
//!  next() ─► accept loop (the caller of Proxy::serve / Proxy::run)
//!               │ takes a slot (max_connections), snapshots the configuration
//!               ▼ round robin: bounded channel + mio::Waker
//!            event loop 0 … event loop threads-1  (mio, edge-triggered epoll)  ◄─ accept()
//!               each owns a slab of joined connections:         synwall's own listening
//!               client ⇄ 2 × 16 KiB ⇄ upstream                   sockets (Proxy::run)
//! ```
//!
//! Threads: the caller's thread takes what `next` gives; `threads` event-loop threads (fixed
//! when [`Proxy::serve`] starts) do every system call of the joined connections, none
//! blocking. No thread per connection. [`Proxy::run`] also takes the server's own listening
//! sockets (repair mode, `answer-syns = kernel-first`: where every connection comes from
//! without a flood) and every event loop accepts from them itself, when a slot is free: such a
//! connection wakes one thread, not three (the server's accepting thread, the accept loop and
//! an event loop). With several loops, each is woken by a new connection and one of them gets
//! it.
//!
//! Memory per connection is bounded: one [`BUFFER_LEN`] buffer per direction, 2 × 16 KiB = 32 KiB,
//! plus 168 bytes of state (measured; a test keeps it under 200), so 128 MiB at 4096
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
//! The upstream is a TCP address or, for a service on the same host, a Unix stream socket
//! ([`Upstream`]): no second TCP connection per client on the loopback (handshake, segments,
//! TIME-WAIT), which costs the host more than the proxy itself does. A Unix socket has no RST:
//! where the proxy resets a TCP upstream, it closes a Unix one, which then reads end-of-file
//! (ECONNRESET if it had bytes unread), and the client side is reset as always.
//!
//! Per connection: the upstream connect is non-blocking and gives up after `connect_timeout`
//! (checked every 100 ms while one is pending, so up to 100 ms late; an idle loop sleeps until an
//! event or a handover wakes it); an upstream that refuses or does not answer gets the client a RST
//! (counted in `upstream_failures`), never a connection that silently goes nowhere. A Unix socket
//! whose accept queue is full refuses at once (EAGAIN), where a TCP one would drop the SYN and keep
//! the client waiting for a retransmission: that client is reset and counted too. With a PROXY
//! protocol header configured, the header is the first thing the upstream receives. A read
//! returning end-of-file is passed on as a half-close (`shutdown(Write)` of the other side once the
//! buffered bytes are written); the connection ends when both directions have. A reset or any other
//! error on one side resets the other (SO_LINGER 0). There is no idle timeout.
//!
//! Bounded: at most `max_connections` joined at once, over all loops (connecting ones included);
//! when the limit is reached the proxy stops taking connections (the accept loop holds the one
//! `next` gave until a slot frees), the accept queues fill and the listener applies its overflow
//! policy. The configuration can change while running ([`Proxy::reconfigure`]): upstream, timeout,
//! PROXY protocol and limit apply to connections accepted from then on; connections already joined
//! keep going; the number of threads stays as it was when serving started. When serving stops,
//! every connection still open is reset.
//!
//! Panics: an event-loop thread panics only if `epoll_wait` fails with something else than
//! EINTR, which it cannot on a valid epoll descriptor.

mod event_loop;
mod header;
mod joined;
mod slots;
#[cfg(test)]
mod tests;
mod upstream;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Select, SendError, Sender};
use mio::Waker;

use crate::handoff::Connection;
use crate::own_listener::OwnListenerSockets;
use crate::server::{Server, ServerError};
use crate::shutdown::Shutdown;
use event_loop::{EventLoop, Shared};
use joined::reset;
use slots::Slots;

pub use header::ProxyProtocol;
pub use upstream::Upstream;

/// Bytes buffered per direction of a connection.
pub const BUFFER_LEN: usize = 16 * 1024;
/// Connections waiting in the channel to one event loop; the accept loop waits when it is full.
const HANDOVER_CAPACITY: usize = 256;
/// What the proxy joins clients to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub upstream: Upstream,
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
    /// Shared with every connection accepted under it (a reference count per connection).
    config: RwLock<Arc<ProxyConfig>>,
    slots: Slots,
    counters: Arc<ProxyCounters>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Proxy {
        Proxy {
            slots: Slots::new(config.max_connections),
            config: RwLock::new(Arc::new(config)),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<ProxyCounters> {
        Arc::clone(&self.counters)
    }

    /// Applies to connections accepted from now on (all but `threads`).
    pub fn reconfigure(&self, config: ProxyConfig) {
        self.slots.set_limit(config.max_connections);
        *self.config.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// Proxies every connection `server` accepts until `shutdown` or the server fails; the
    /// event loops accept from the server's own listening sockets themselves when they can
    /// take them ([`Server::take_own_listeners`]). Once per server: those sockets close when
    /// this returns, and the kernel then refuses new connections on them.
    pub fn run(&self, server: &Server, shutdown: &Shutdown) -> io::Result<()> {
        let own = server.take_own_listeners();
        self.serve_with(
            own.as_ref(),
            |shutdown| server.accept_until(shutdown),
            shutdown,
        )
    }

    /// Proxies every connection `next` gives until `shutdown` or `next` fails; `next` waits
    /// for a connection and gives `None` only once `shutdown` has been triggered. Returns once
    /// the event loops have ended (every connection still open is reset then).
    pub fn serve(
        &self,
        next: impl FnMut(&Shutdown) -> io::Result<Option<Connection>>,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        self.serve_with(None, next, shutdown)
    }

    /// [`Proxy::serve`], the event loops also accepting from `own`.
    fn serve_with(
        &self,
        own: Option<&OwnListenerSockets>,
        mut next: impl FnMut(&Shutdown) -> io::Result<Option<Connection>>,
        shutdown: &Shutdown,
    ) -> io::Result<()> {
        let finished = AtomicBool::new(false);
        let mut loops = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..self.config().threads.max(1) {
            let shared = Shared {
                slots: &self.slots,
                counters: &self.counters,
                finished: &finished,
                own,
                config: &self.config,
            };
            let (event_loop, handle) = EventLoop::new(shared)
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
                .and_then(|()| self.accept_loop(&mut next, shutdown, &handles));
            finished.store(true, Ordering::Relaxed);
            for handle in &handles {
                handle.wake();
            }
            served
        })
    }

    /// Hands connections to the loops in turn, each once a slot is free (taken after the
    /// connection, so that a loop accepting from the server's own listening sockets never
    /// waits for a slot that this one holds while `next` waits). Returns on `shutdown`, when
    /// `next` fails, or when a loop is gone (it panicked: the scope passes the panic on).
    fn accept_loop(
        &self,
        next: &mut impl FnMut(&Shutdown) -> io::Result<Option<Connection>>,
        shutdown: &Shutdown,
        loops: &[LoopHandle],
    ) -> io::Result<()> {
        let mut turn = 0;
        while let Some(connection) = next(shutdown)? {
            if !self.slots.acquire(shutdown) {
                reset(&connection.stream);
                return Ok(());
            }
            let handover = Handover {
                connection,
                config: self.config(),
            };
            if !loops[turn].hand(handover, shutdown) {
                self.slots.release();
                return Ok(());
            }
            turn = (turn + 1) % loops.len();
        }
        Ok(())
    }

    fn config(&self) -> Arc<ProxyConfig> {
        in_force(&self.config)
    }
}

/// The configuration in force, for a connection taken now.
fn in_force(config: &RwLock<Arc<ProxyConfig>>) -> Arc<ProxyConfig> {
    Arc::clone(&config.read().unwrap_or_else(PoisonError::into_inner))
}

/// A connection on its way to an event loop, with the configuration in force when it came.
struct Handover {
    connection: Connection,
    config: Arc<ProxyConfig>,
}

/// The accept loop's end of one event loop.
struct LoopHandle {
    handovers: Sender<Handover>,
    waker: Waker,
}

impl LoopHandle {
    /// Gives `handover` to the loop and wakes it; false when it could not be taken (shutdown
    /// came first, or the loop is gone): the client is reset.
    fn hand(&self, handover: Handover, shutdown: &Shutdown) -> bool {
        let mut select = Select::new();
        let send = select.send(&self.handovers);
        select.recv(shutdown.signal());
        let operation = select.select();
        let refused = if operation.index() == send {
            match operation.send(&self.handovers, handover) {
                Ok(()) => None,
                Err(SendError(back)) => Some(back),
            }
        } else {
            let _ = operation.recv(shutdown.signal());
            Some(handover)
        };
        match refused {
            None => {
                self.wake();
                true
            }
            Some(handover) => {
                reset(&handover.connection.stream);
                false
            }
        }
    }

    /// Wakes the loop. A failed wake (the eventfd counter full, which cannot happen at one
    /// write per connection) only delays the loop until its next tick.
    fn wake(&self) {
        if let Err(error) = self.waker.wake() {
            tracing::debug!(%error, "cannot wake a proxy event loop");
        }
    }
}
