//! synwall: a TCP listener that a SYN flood cannot knock over.
//!
//! The flood-facing half of the TCP handshake runs in user space on AF_XDP; every connection
//! that completes it is handed to the kernel as an ordinary established socket.
//!
//! Contract: this library is the system layer and the server around the protocol core
//! (`synwall-proto`): the XDP and TC programs, AF_XDP, the handoffs, the proxy and the metrics
//! endpoint. The `synwall` binary (`src/cli/`, feature `cli`, on by default) is the CLI layer:
//! it alone holds the settings and their spelling in flags and files.
//! Must not depend on: the lab or the load generator (`loadgen`, which depends on this crate,
//! not the other way round), so the product ships no lab; clap, serde, toml, anyhow or
//! tracing-subscriber (the CLI's; `make lint` builds the library with
//! `--no-default-features` and checks `cargo tree`).
//!
//! ```text
//!   NIC rx queue ─► XDP program ─┬─ not ours / kernel-owned connection ─► kernel
//!                                └─ SYN, ACK, RST to a served port ─► AF_XDP socket
//!   ┌──────────────────────────── one shard per rx queue ─────────────────────────────┐
//!   │ device (FrameIo) ─► wire::parse ─► Listener (sans-IO) ─► wire::emit ─► device │
//!   │                                     │  SYN queue (bounded)  cookies (HMAC)     │
//!   └─────────────────────────────────────┼───────────────────────────────────────────┘
//!                                         ▼ Accepted
//!                        accept queue (bounded, crossbeam) ─► workers ─► kernel socket
//! ```
//!
//! Layers, bottom up; each module's doc states its contract:
//! - the protocol core, the crate `synwall-proto` (re-exported here): [`seq`], [`wire`],
//!   [`cookie`], [`listener`], [`counters`], [`rate_limit`]; sans I/O, and Cargo keeps it
//!   free of everything below this line.
//! - [`flood`]: when a SYN flood starts and ends, from the counters.
//! - [`device`]: the batched frame-I/O trait, and an in-memory device.
//! - [`accept_queue`], [`shard`]: the bounded hand-over to workers and the fast-path loop;
//!   [`shutdown`]: the stop signal that wakes every thread of a server at once; [`log_gate`]:
//!   at most one log line per 10 s about a failure its counter counts.
//! - [`handoff`], [`server`]: kernel sockets for completed handshakes, and the whole server
//!   (threads, steering program, `accept()`) for applications; [`own_listener`] accepts the
//!   connections the kernel completes without a flood in repair mode; [`proxy`] joins connections to
//!   an upstream for `synwall listen`; [`preflight`] checks a configuration against the host
//!   before anything is attached.
//! - [`metrics`] exports the figures (Prometheus) and reads them back for `synwall stats`;
//!   [`status`] joins them with what the kernel shows attached, for `synwall status`.
//! - [`sys`]: the XDP steering program, the AF_XDP device, and every line of `unsafe`. It names
//!   only the core and [`device`] of this crate, none of the modules above (`make lint` checks).
//!
//! Invariants: memory is bounded by configuration (SYN queue, handoff markers, segments held
//! for a handoff, accept queue; frame pools are allocated once); nothing on the per-packet path
//! allocates, except the early data of a completed handshake and the segments held for a
//! handoff (bounded by `max_held_bytes`); no `unsafe` outside [`sys`].

#![deny(unsafe_code)]

pub use synwall_proto::{cookie, counters, listener, rate_limit, seq, wire};

pub mod accept_queue;
pub mod device;
pub mod flood;
pub mod handoff;
pub mod histogram;
pub mod kernel;
pub mod kernel_completion;
pub mod log_gate;
pub mod metrics;
pub mod own_listener;
pub mod preflight;
pub mod proxy;
pub mod server;
pub mod shard;
pub mod shutdown;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
