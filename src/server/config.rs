//! What [`Server::bind`] needs: [`ServerConfig`], every field public for programs that fill
//! it from their own settings (as `synwall listen` does), and [`ServerBuilder`], the same
//! configuration one call at a time:
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use synwall::handoff::HandoffMode;
//! use synwall::server::Server;
//!
//! let server = Server::builder("eth0", &["198.18.0.1:8080".parse().unwrap()])
//!     .handoff(HandoffMode::Repair)
//!     .workers(4)
//!     .bind()?;
//! for connection in server.incoming() {
//!     let connection = connection?;
//!     println!("{} completed its handshake", connection.peer);
//! }
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use super::{Server, ServerError};
use crate::cookie::keys::Secret;
use crate::handoff::HandoffMode;
use crate::kernel;
use crate::listener::{ListenerConfig, SyncookiesMode};
use crate::sys::{SynAnswerer, XdpDeviceConfig, XdpMode};

/// Everything [`Server::bind`] needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The network interface to serve on.
    pub interface: String,
    /// The rx queues to serve; empty serves every rx queue of the interface.
    pub queues: Vec<u32>,
    pub listener: ListenerConfig,
    /// Completed handshakes waiting for a handoff worker, at most; as many established
    /// connections wait for the application.
    pub backlog: usize,
    /// Handoff worker threads of repair mode (native handoffs are done by the fast path).
    pub workers: usize,
    pub xdp_mode: XdpMode,
    pub device: XdpDeviceConfig,
    /// The cookie secret; `None` draws one from the OS random source.
    pub secret: Option<Secret>,
    /// How often cookie keys rotate.
    pub key_period: Duration,
    /// CPUs to pin the fast-path threads to, in queue order (cycled); empty pins nothing.
    pub cpus: Vec<usize>,
    /// Frames per direction handled in one round of a fast-path loop.
    pub budget: usize,
    /// How completed handshakes become kernel sockets.
    pub handoff: HandoffMode,
    /// Who answers new connections' SYNs; in repair mode [`SynAnswerer::KernelFirst`] makes
    /// synwall listen on the served addresses itself ([`crate::own_listener`]).
    pub answer_syns: SynAnswerer,
}

impl ServerConfig {
    /// A configuration serving `served` on `interface` with every other setting at its default,
    /// and the window scale the kernel's own listener would offer in the calling thread's
    /// network namespace.
    pub fn new(interface: &str, served: &[SocketAddr]) -> ServerConfig {
        let defaults = ListenerConfig::default();
        ServerConfig {
            interface: interface.to_owned(),
            queues: Vec::new(),
            listener: ListenerConfig {
                served: crate::wire::Endpoints::new(served.iter().copied()),
                window_scale: kernel::window_scale().unwrap_or(defaults.window_scale),
                ..defaults
            },
            backlog: 4096,
            workers: 2,
            xdp_mode: XdpMode::Auto,
            device: XdpDeviceConfig::default(),
            secret: None,
            key_period: Duration::from_secs(64),
            cpus: Vec::new(),
            budget: 64,
            handoff: HandoffMode::Auto,
            answer_syns: SynAnswerer::KernelFirst,
        }
    }
}

/// [`ServerConfig`] one setting at a time, from [`Server::builder`]; unset ones keep the
/// defaults of [`ServerConfig::new`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until bind()"]
pub struct ServerBuilder {
    config: ServerConfig,
}

impl ServerBuilder {
    pub(super) fn new(interface: &str, served: &[SocketAddr]) -> ServerBuilder {
        ServerBuilder {
            config: ServerConfig::new(interface, served),
        }
    }

    /// How completed handshakes become kernel sockets (default: auto).
    pub fn handoff(mut self, mode: HandoffMode) -> ServerBuilder {
        self.config.handoff = mode;
        self
    }

    /// Who answers new connections' SYNs (default: kernel-first).
    pub fn answer_syns(mut self, answerer: SynAnswerer) -> ServerBuilder {
        self.config.answer_syns = answerer;
        self
    }

    /// The rx queues to serve (default: every rx queue of the interface).
    pub fn queues(mut self, queues: &[u32]) -> ServerBuilder {
        self.config.queues = queues.to_vec();
        self
    }

    /// CPUs to pin the fast-path threads to, in queue order (default: none).
    pub fn cpus(mut self, cpus: &[usize]) -> ServerBuilder {
        self.config.cpus = cpus.to_vec();
        self
    }

    /// Completed handshakes waiting for a handoff, at most: the listen backlog (default 4096).
    pub fn backlog(mut self, backlog: usize) -> ServerBuilder {
        self.config.backlog = backlog;
        self
    }

    /// Handoff worker threads of repair mode (default 2).
    pub fn workers(mut self, workers: usize) -> ServerBuilder {
        self.config.workers = workers;
        self
    }

    /// XDP attach mode (default: auto).
    pub fn xdp_mode(mut self, mode: XdpMode) -> ServerBuilder {
        self.config.xdp_mode = mode;
        self
    }

    /// The cookie secret, shared by a fleet (default: drawn from the OS random source).
    pub fn secret(mut self, secret: Secret) -> ServerBuilder {
        self.config.secret = Some(secret);
        self
    }

    /// When SYNs are answered with cookies (default: when the SYN queue is full).
    pub fn syncookies(mut self, mode: SyncookiesMode) -> ServerBuilder {
        self.config.listener.syncookies = mode;
        self
    }

    /// SYN-queue entries per rx queue (default 4096).
    pub fn max_syn_backlog(mut self, entries: usize) -> ServerBuilder {
        self.config.listener.max_syn_backlog = entries;
        self
    }

    /// Any other listener setting: `change` edits them in place.
    pub fn listener(mut self, change: impl FnOnce(&mut ListenerConfig)) -> ServerBuilder {
        change(&mut self.config.listener);
        self
    }

    /// The configuration built so far.
    pub fn config(self) -> ServerConfig {
        self.config
    }

    /// Starts serving ([`Server::bind`]).
    pub fn bind(self) -> Result<Server, ServerError> {
        Server::bind(self.config)
    }
}
