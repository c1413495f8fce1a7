//! The lab: synwall, a flood and real clients between two network namespaces on one machine.
//!
//! - [`report`]: the flood generator's JSON records, shared with loadgen (one schema).
//!
//! Network safety: traffic only crosses the veth pair between namespaces created here, with
//! IPv4 addresses in 198.18.0.0/15 (and an IPv6 ULA that exists only inside them); everything
//! is deleted when the [`Topology`] is dropped, also when a run fails.

pub mod report;
mod topology;

pub use topology::{CLIENT_V4, CLIENT_V6, SERVER_V4, SERVER_V6, SPOOFED_SOURCES, Topology, run};
