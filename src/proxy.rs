//! The proxy behind `synwall listen`: every accepted connection is joined to a new connection
//! to the upstream service, bytes copied both ways until each side closes its half.
//!
//! Bounded: at most `max_connections` proxied at once (two threads each); when the limit is
//! reached the proxy stops taking connections, the accept queue fills and the listener applies
//! its overflow policy. An upstream that does not answer within `connect_timeout` gets the
//! client a RST (counted), never a connection that silently goes nowhere. The configuration
//! can change while running ([`Proxy::reconfigure`]); connections already joined keep going.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use socket2::SockRef;

use crate::handoff::Connection;
use crate::server::{Server, ServerError};

/// How long the accept loop waits before looking at the stop flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyConfig {
    pub upstream: SocketAddr,
    pub connect_timeout: Duration,
    pub max_connections: usize,
}

/// What the proxy counts (read from any thread).
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Connections joined to the upstream.
    pub proxied: AtomicU64,
    /// Clients reset because the upstream could not be reached.
    pub upstream_failures: AtomicU64,
    /// Connections being proxied now.
    pub active: AtomicUsize,
    /// Bytes from clients to the upstream, and back.
    pub bytes_to_upstream: AtomicU64,
    pub bytes_to_clients: AtomicU64,
}

/// The proxy of one server.
pub struct Proxy {
    config: RwLock<ProxyConfig>,
    slots: Arc<Slots>,
    counters: Arc<ProxyCounters>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Proxy {
        Proxy {
            slots: Arc::new(Slots::new(config.max_connections)),
            config: RwLock::new(config),
            counters: Arc::default(),
        }
    }

    pub fn counters(&self) -> Arc<ProxyCounters> {
        Arc::clone(&self.counters)
    }

    /// Applies to connections accepted from now on.
    pub fn reconfigure(&self, config: ProxyConfig) {
        self.slots.set_limit(config.max_connections);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
    }

    /// Proxies every connection `server` accepts until `stop` is set or the server fails.
    pub fn run(&self, server: &Server, stop: &AtomicBool) -> Result<(), ServerError> {
        while !stop.load(Ordering::Relaxed) {
            if !self.slots.acquire(POLL) {
                continue;
            }
            let Some(connection) = server.accept_timeout(POLL)? else {
                self.slots.release();
                continue;
            };
            let config = *self.config.read().unwrap_or_else(|p| p.into_inner());
            let (slots, counters) = (Arc::clone(&self.slots), Arc::clone(&self.counters));
            let spawned = thread::Builder::new()
                .name("synwall-proxy".to_owned())
                .spawn(move || {
                    counters.active.fetch_add(1, Ordering::Relaxed);
                    proxy(connection, config, &counters);
                    counters.active.fetch_sub(1, Ordering::Relaxed);
                    slots.release();
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start a proxy thread; the connection is dropped");
                self.slots.release();
            }
        }
        Ok(())
    }
}

fn proxy(connection: Connection, config: ProxyConfig, counters: &ProxyCounters) {
    let client = connection.stream;
    let upstream = match TcpStream::connect_timeout(&config.upstream, config.connect_timeout) {
        Ok(upstream) => upstream,
        Err(error) => {
            counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %connection.peer, %error, "upstream unreachable; resetting the client");
            reset(client);
            return;
        }
    };
    counters.proxied.fetch_add(1, Ordering::Relaxed);
    let _ = upstream.set_nodelay(true);
    let (client_read, upstream_write) = match (client.try_clone(), upstream.try_clone()) {
        (Ok(client_read), Ok(upstream_write)) => (client_read, upstream_write),
        _ => return reset(client),
    };
    let pumping = thread::Builder::new()
        .name("synwall-proxy".to_owned())
        .spawn(move || pump(client_read, upstream_write));
    let to_upstream = match pumping {
        Ok(to_upstream) => to_upstream,
        Err(error) => {
            tracing::warn!(%error, "cannot start a proxy thread; resetting the client");
            return reset(client);
        }
    };
    let down = pump(upstream, client);
    let up = to_upstream.join().unwrap_or(0);
    counters.bytes_to_upstream.fetch_add(up, Ordering::Relaxed);
    counters.bytes_to_clients.fetch_add(down, Ordering::Relaxed);
}

/// Copies until `from` ends, then closes `to`'s sending half: one direction of a half-close.
/// Returns the bytes copied.
fn pump(mut from: TcpStream, mut to: TcpStream) -> u64 {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    // The other side is gone: stop reading too.
                    let _ = from.shutdown(Shutdown::Read);
                    break;
                }
                total += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    total
}

/// Closes `stream` with a RST (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
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
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (mut state, _) = self
            .released
            .wait_timeout_while(state, timeout, |(taken, limit)| *taken >= *limit)
            .unwrap_or_else(|p| p.into_inner());
        if state.0 >= state.1 {
            return false;
        }
        state.0 += 1;
        true
    }

    fn release(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0 -= 1;
        self.released.notify_one();
    }

    fn set_limit(&self, limit: usize) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = limit;
        self.released.notify_all();
    }
}
