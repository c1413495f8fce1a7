//! The lab: synwall, a flood and real clients between two network namespaces on one machine,
//! and `synwall-lab`, which runs it against synwall, the kernel's own listener, or the kernel's
//! XDP SYN proxy.
//!
//! ```text
//!  client namespace (client CPU)                    server namespace (server CPU)
//!  loadgen: flood + legit clients ──veth pair──►  synwall (AF_XDP), the kernel listener, or
//!     ▲ JSON lines (report::Record)               the XDP SYN proxy + nftables synproxy
//!     │                                               └─► built-in service (HTTP/1.1 200)
//!  synwall-lab: table per second, summary, comparison ◄── /proc/net of the server namespace,
//!                                                         /proc/stat of the server CPU
//! ```
//!
//! Modules:
//! - [`topology`](Topology): the two namespaces and the veth pair; deleted on drop.
//! - [`report`]: the generator's JSON records, shared with loadgen (one schema);
//!   [`limits`]: the bounds of every flood, shared with loadgen too.
//! - `cli`: the `synwall-lab` command line ([`LabArgs`]); `runner`: [`command`], the runs
//!   in order; `server_side`: synwall or the kernel fronting `service` (the built-in HTTP
//!   service: one event loop, keep-alive), which reads `proxy_protocol` headers and keeps its
//!   connections in `slots` (reused slots with deadlines, shared with the peacetime clients);
//!   [`peacetime`]: clients measuring new connections per second (the open loop, and
//!   `peacetime_search` for the highest rate within the objective) and keep-alive requests
//!   per second (`peacetime_keepalive`) with no flood, sharing `peacetime_client`, and
//!   `peacetime_report` what it prints; [`XdpSynProxyPeer`]: the XDP SYN proxy set up as a
//!   target; `placement`: which CPU does what, and how busy the server CPU is; `procnet`: the
//!   server namespace's kernel counters;
//!   `generator`: loadgen as a child process; `output`: the table, summaries and JSON, and
//!   `comparison`: synwall's ratios to each other target, side by side; `error`: [`LabError`].
//!
//! Network safety: traffic only crosses the veth pair between namespaces created here, with
//! addresses in 198.18.0.0/15 and 2001:2::/48 only (see [`Topology`]); spoofed sources come
//! from [`SPOOFED_SOURCES`] and [`SPOOFED_SOURCES_V6`]; every flood is bounded in packets and
//! seconds (loadgen enforces both), and so is every peacetime phase; everything is deleted when
//! the [`Topology`] is dropped, also when a run fails or is interrupted. Names carry the
//! process id and a counter, so concurrent runs never collide.

mod cli;
mod comparison;
mod error;
pub mod generator;
pub mod limits;
mod output;
pub mod peacetime;
mod peacetime_client;
mod peacetime_keepalive;
mod peacetime_report;
mod peacetime_search;
mod placement;
mod procnet;
mod proxy_protocol;
pub mod report;
mod runner;
mod server_side;
pub mod service;
mod slots;
mod topology;
mod xdp_synproxy;

pub use cli::{FloodMode, KernelRx, LabArgs, LabHandoff, LabXdpMode, Rate, Target};
pub use error::LabError;
pub use placement::threaded_napi;
pub use runner::command;
pub use topology::{
    CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, SPOOFED_SOURCES, SPOOFED_SOURCES_V6, Topology, run,
};
pub use xdp_synproxy::XdpSynProxyPeer;
