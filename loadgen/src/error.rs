//! Why a run could not start or ended in error. Each message is self-contained: what was being
//! done, the cause, and where an operator can act, the remedy (a capability, a flag); the
//! device layers' own errors ([`XdpError`], [`PacketError`]) already name the missing
//! capability. So a binary prints the top message only, never the chain of sources.

use std::io;

use synwall::sys::{PacketError, XdpError};

use crate::cli::ConfigError;
use crate::neighbor::NeighborError;

/// See the module documentation.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("entering network namespace {name:?}: {source}{hint}")]
    Netns {
        name: String,
        source: io::Error,
        /// A remedy, when the errno suggests one (empty otherwise).
        hint: &'static str,
    },
    #[error(transparent)]
    Xdp(#[from] XdpError),
    #[error(
        "AF_XDP socket on queue {queue}: {error}; flood thread N uses queue N, so --threads \
         needs as many queues on the interface (a veth has one unless created with \
         numrxqueues/numtxqueues): use fewer threads, or --tx packet"
    )]
    XdpQueue { queue: u32, error: XdpError },
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error(transparent)]
    Neighbor(#[from] NeighborError),
    #[error("pinning flood thread {worker} to CPU {cpu}: {source}")]
    Pin {
        worker: usize,
        cpu: usize,
        source: io::Error,
    },
    #[error("starting a thread: {0}")]
    Spawn(io::Error),
    #[error("flood thread {worker}: {source}")]
    Worker { worker: usize, source: io::Error },
    #[error("a flood thread panicked")]
    WorkerPanicked,
    #[error("reply sniffer: {0}")]
    Sniffer(io::Error),
    #[error("writing the report: {0}")]
    Output(io::Error),
}

impl LoadgenError {
    /// The error of entering namespace `name`, with a remedy for the usual causes.
    pub fn netns(name: &str, source: io::Error) -> LoadgenError {
        let hint = match source.kind() {
            io::ErrorKind::NotFound => " (no such namespace: see `ip netns list`)",
            io::ErrorKind::PermissionDenied => " (needs CAP_SYS_ADMIN: run as root)",
            _ => "",
        };
        LoadgenError::Netns {
            name: name.to_owned(),
            source,
            hint,
        }
    }
}
