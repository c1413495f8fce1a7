//! Prometheus metrics: everything synwall counts, as the text exposition format (version
//! 0.0.4), served on `GET /metrics` (default 127.0.0.1 only), and read back by `synwall stats`
//! ([`view`]).
//!
//! Contract: every family [`render`] writes is listed in `deploy/METRICS.md` with its type,
//! labels and meaning, and nothing else is listed there (`tests/metrics.rs` checks both ways
//! and runs `promtool check metrics`). Names follow Prometheus practice: the unit is the suffix
//! (`_seconds`, `_bytes`, and `_total` on every counter), kinds of one thing are one family
//! with a label (`synwall_synacks_sent_total{kind="cookie"}`), constant facts are `_info`
//! series of value 1, and the `process_*` series are those of the official client libraries.
//!
//! Labels are bounded by configuration: `queue` (one per rx queue served; the listener's
//! figures and the AF_XDP socket's are per queue, sum them with `sum without (queue)`), the
//! served `address`es and the `interface`, and fixed sets of kinds and reasons. No label value
//! is ever taken from a packet, so an attacker choosing addresses cannot grow the exposition.

mod endpoint;
pub mod names;
mod process;
mod render;
#[cfg(test)]
mod tests;
pub mod view;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub use endpoint::{MetricsServer, Scrape, fetch_text};

/// Where the Prometheus endpoint listens by default: loopback only.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:9464";
pub use render::render;

/// Where the cookie secret of a running synwall came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret-file`: shared by a fleet, kept across restarts.
    File,
    /// Drawn at start: cookies of another replica, or of this one before a restart, fail.
    Random,
}

impl SecretSource {
    /// The label value of `synwall_secret_info`.
    pub fn name(self) -> &'static str {
        match self {
            SecretSource::File => "file",
            SecretSource::Random => "random",
        }
    }
}

/// How the last configuration reload (SIGHUP) went. Written by the thread that reloads, read
/// by the metrics endpoint.
#[derive(Debug)]
pub struct ReloadStatus {
    successful: AtomicBool,
    /// Milliseconds since the Unix epoch.
    attempted_at: AtomicU64,
    succeeded_at: AtomicU64,
}

impl ReloadStatus {
    /// The configuration was loaded, successfully, at `loaded_at` (the start).
    pub fn new(loaded_at: SystemTime) -> ReloadStatus {
        let at = unix_millis(loaded_at);
        ReloadStatus {
            successful: AtomicBool::new(true),
            attempted_at: AtomicU64::new(at),
            succeeded_at: AtomicU64::new(at),
        }
    }

    /// Records a reload attempted at `at`.
    pub fn record(&self, at: SystemTime, successful: bool) {
        let at = unix_millis(at);
        self.attempted_at.store(at, Ordering::Relaxed);
        if successful {
            self.succeeded_at.store(at, Ordering::Relaxed);
        }
        self.successful.store(successful, Ordering::Relaxed);
    }

    /// Whether the last reload applied its configuration.
    pub fn successful(&self) -> bool {
        self.successful.load(Ordering::Relaxed)
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch, from milliseconds, as Prometheus timestamps are written.
pub(super) fn seconds(millis: &AtomicU64) -> f64 {
    millis.load(Ordering::Relaxed) as f64 / 1000.0
}

/// What the exposition tells about the running instance besides the server's figures.
#[derive(Debug)]
pub struct Instance {
    pub secret: SecretSource,
    pub reload: ReloadStatus,
    pub serving: Serving,
}

/// Where the instance serves, fixed at start.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The interface the steering program is attached to.
    pub interface: String,
    /// The served addresses and ports.
    pub served: Vec<SocketAddr>,
}
