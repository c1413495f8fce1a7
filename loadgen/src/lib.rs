//! loadgen: a bounded SYN/ACK flood generator and legit-client prober for synwall's lab.
//!
//! It floods one target, over IPv4 or IPv6, with spoofed TCP segments (SYNs with real client
//! stacks' options, random ACKs, near-miss ACKs made from the target's own SYN cookies, RST and
//! FIN noise) at a paced rate, while real kernel clients connect to the same target and measure
//! whether, and how fast, they get in.
//!
//! Contract: every flood bounded and inside the benchmarking ranges (below); the lab's
//! namespaces deleted however a run ends. Must not depend on: synwall's CLI layer (it takes the
//! `synwall` library with `default-features = false`, plus the feature `lab` for the sockets
//! and test hooks only the lab and the tests use); nothing in synwall depends on loadgen but
//! synwall's tests.
//!
//! ```text
//!  cli ─► Config ─► run ─┬─ flood workers (one per --threads, pinned) ──► FrameIo ──► wire
//!   (guard, caps)        │    pacer ─► crafter ─► template.write         AF_XDP (XdpDevice)
//!                        │                ▲                              or AF_PACKET
//!                        │                │ harvested SYN-ACKs            (PacketSocket)
//!                        ├─ sniffer (near-miss runs): AF_PACKET rx on the interface
//!                        ├─ legit clients: TcpStream::connect_timeout at --legit-rate
//!                        └─ reporter: one Progress per second, a Summary at the end
//! ```
//!
//! Modules, each with its contract in its own doc:
//! - [`guard`]: the benchmark-range guard (198.18.0.0/15 and 2001:2::/48) and [`guard::Cidr`],
//!   the one range type of both families.
//! - [`cli`]: the command line and its validation (guard, hard caps) into a [`cli::Config`].
//! - [`fingerprint`], [`template`]: client stacks' SYN layouts; frames of either family built
//!   once with `synwall::wire::emit` and patched per packet with incremental checksums.
//! - [`mix`], [`craft`]: which kind of packet goes next and its spoofed fields.
//! - [`pacer`]: batch pacing on an absolute schedule.
//! - [`flood`]: the worker threads and their transmit devices.
//! - [`harvest`]: the reply sniffer feeding near-miss ACKs.
//! - [`legit`]: the real clients, their failures by kind and latency percentiles.
//! - [`neighbor`]: the destination MAC from the kernel's neighbour table (ARP or IPv6
//!   neighbour discovery).
//! - [`stats`], [`report`], [`mod@run`]: counters, writing the output records, and the run that
//!   joins it all.
//! - [`lab`]: the lab that drives this generator against synwall, the kernel and its XDP SYN
//!   proxy, run by the `synwall-lab` binary (`sudo make lab`). It lives here, not in synwall,
//!   so that the product ships no lab.
//!
//! # Safety of the network
//!
//! Every address loadgen sends to or spoofs lies in 198.18.0.0/15 or 2001:2::/48 (RFC 2544's
//! and RFC 5180's benchmarking ranges), and the spoofed sources are of the target's family,
//! unless `--allow-outside-benchmark-range` is given (which lifts the ranges, not the family);
//! every run stops by itself at `--duration` (default 10 s, at most 600 s) or `--packets`
//! (default 10 M, at most 10^9), whichever comes first. No XDP program is attached anywhere: the AF_XDP socket is opened with
//! `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`, and transmit needs none.
//!
//! # JSON output (`--json`)
//!
//! One JSON object per line on stdout (a progress object per second, then one summary);
//! notes and errors go to stderr. The record types and the schema live in
//! [`crate::lab::report`], so that `synwall-lab` reads exactly what loadgen writes; [`report`]
//! re-exports them.

pub mod cli;
pub mod craft;
pub mod error;
pub mod fingerprint;
pub mod flood;
pub mod guard;
pub mod harvest;
pub mod lab;
pub mod legit;
pub mod mix;
pub mod neighbor;
pub mod pacer;
pub mod report;
pub mod run;
pub mod stats;
pub mod template;

pub use cli::{Args, Config};
pub use error::LoadgenError;
pub use run::run;
