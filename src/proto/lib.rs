//! synwall's protocol core: the TCP handshake of a listener under a SYN flood, as data in and
//! data out.
//!
//! Contract: frames go in with the time as an argument, replies and completed handshakes come
//! out; nothing here owns a clock, a thread, a socket, a channel or a file descriptor, nothing
//! on the per-frame path allocates (except a completed handshake's early data and segments held
//! for a handoff, both bounded by configuration), and no input frame can make it panic. There is
//! no `unsafe` in this crate.
//!
//! Must not depend on: command-line or configuration formats (clap, serde, toml), HTTP or
//! metrics exposition, libbpf/libxdp or anything that needs clang or kernel headers to build.
//! How its settings are spelled, and how its counters are named for Prometheus or matched to
//! the kernel's MIB counters, is the business of the layers that present them.
//!
//! Modules, bottom up; each module's doc states its contract:
//! - [`seq`]: sequence-number arithmetic modulo 2^32.
//! - [`wire`]: parse and emit Ethernet/VLAN/IPv4/IPv6/TCP; never panics on input.
//! - [`cookie`]: SYN cookies (HMAC-SHA256) and their keys.
//! - [`listener`]: the handshake state machine, with its bounded SYN queue.
//! - [`counters`]: a counter for every outcome, lock-free to read.
//! - [`rate_limit`]: the token bucket that bounds the RSTs a listener sends.

pub mod cookie;
pub mod counters;
pub mod listener;
pub mod rate_limit;
pub mod seq;
mod table;
pub mod wire;
