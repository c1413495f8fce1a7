//! loadgen: a bounded SYN/ACK flood generator and legit-client prober for synwall's lab.
//!
//! It floods one target with spoofed TCP segments (SYNs with real client stacks' options,
//! random ACKs, near-miss ACKs made from the target's own SYN cookies, RST and FIN noise) at a
//! paced rate, while real kernel clients connect to the same target and measure whether, and
//! how fast, they get in.
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
//! - [`guard`]: the benchmark-range guard (198.18.0.0/15) and [`guard::Ipv4Cidr`].
//! - [`cli`]: the command line and its validation (guard, hard caps) into a [`cli::Config`].
//! - [`fingerprint`], [`template`]: client stacks' SYN layouts; frames built once with
//!   `synwall::wire::emit` and patched per packet with incremental checksums.
//! - [`mix`], [`craft`]: which kind of packet goes next and its spoofed fields.
//! - [`pacer`]: batch pacing on an absolute schedule.
//! - [`flood`]: the worker threads and their transmit devices.
//! - [`harvest`]: the reply sniffer feeding near-miss ACKs.
//! - [`legit`]: the real clients, their failures by kind and latency percentiles.
//! - [`neighbor`]: the destination MAC from the kernel's neighbour table.
//! - [`stats`], [`report`], [`mod@run`]: counters, output records, and the run that joins it all.
//!
//! # Safety of the network
//!
//! Every address loadgen sends to or spoofs lies in 198.18.0.0/15 unless
//! `--allow-outside-benchmark-range` is given; every run stops by itself at `--duration`
//! (default 10 s, at most 600 s) or `--packets` (default 10 M, at most 10^9), whichever comes
//! first. No XDP program is attached anywhere: the AF_XDP socket is opened with
//! `XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD`, and transmit needs none.
//!
//! # JSON output (`--json`)
//!
//! One JSON object per line on stdout; notes and errors go to stderr. Each second a progress
//! object, and one more for the last partial second if it sent packets; then exactly one
//! summary object, last.
//! Counts are integers; `*_s` fields are seconds as floats; latencies are microseconds.
//!
//! ```text
//! {"type":"progress",
//!  "elapsed_s": f64,          seconds since the flood started
//!  "interval_s": f64,         length of this interval (about 1)
//!  "sent": {"syn":u64,"ack":u64,"near_miss":u64,"rst":u64,"fin":u64},   in this interval
//!  "pps": u64,                packets per second in this interval
//!  "sent_total": u64,         since the start
//!  "replies": null | {"syn_ack":u64,"rst":u64,"harvest_dropped":u64},  in this interval;
//!                             only when near-miss is in the mix (the sniffer runs)
//!  "legit": null | LEGIT}     attempts that ended in this interval; null without --legit-rate
//!
//! {"type":"summary",
//!  "tx": "afxdp" | "packet" | "mixed",
//!  "stop_reason": "packets" | "duration" | "interrupted",
//!  "elapsed_s": f64, "target": "198.18.0.1:80", "src_cidr": "198.18.128.0/17",
//!  "mix": "syn=80,ack=15,rst=5", "rate_pps": u64 | null (max), "threads": usize,
//!  "sent": {...as above...}, "sent_total": u64, "pps": u64 (average),
//!  "replies": null | {...as above, whole run...},
//!  "legit": null | LEGIT}     whole run
//!
//! LEGIT = {"attempts": u64, "ok": u64, "failed": u64,
//!          "failures": {"timeout","refused","reset","unreachable","reply_timeout",
//!                       "bad_reply","overloaded","other": u64},
//!          "connect_us": null | {"p50":u64,"p90":u64,"p99":u64,"max":u64}}
//! ```
//! `connect_us` covers every connect() that completed (null when none did). `sent` counts
//! frames handed to the transmit device; a device or veth that is overrun may still drop some
//! (AF_PACKET frames refused with ENOBUFS are kept and sent again; AF_XDP copy mode cannot
//! tell), so compare with the receiver's count when measuring. The Rust types are
//! [`report::Record`] (serde, both directions).

pub mod cli;
pub mod craft;
pub mod error;
pub mod fingerprint;
pub mod flood;
pub mod guard;
pub mod harvest;
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
