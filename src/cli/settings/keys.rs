//! The keys of `synwall listen`, each declared once: its flag and file spelling, its type, its
//! doc (with the default it states, which `tests.rs` checks against the one in force and
//! against `deploy/synwall.toml`), and whether a SIGHUP applies it. The struct, the overlay of
//! flags on the file, the reload merge and the list of reloadable keys are all made from that
//! one declaration, so a new key cannot be left out of any of them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spelling::{HandoffMode, ProxyProtocol, SynAnswerer, Syncookies, XdpMode};

/// How a changed setting takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// On SIGHUP.
    Reload,
    /// Only by a restart: it sizes memory or threads, changes what a cookie means, or how
    /// connections are handed over.
    Restart,
}

impl Change {
    /// What runs after a reload: the new value of a reloadable key, the running one otherwise.
    fn pick<T: Clone>(self, running: &Option<T>, new: &Option<T>) -> Option<T> {
        match self {
            Change::Reload => new.clone(),
            Change::Restart => running.clone(),
        }
    }
}

macro_rules! settings {
    ($($(#[$attr:meta])* $key:ident: $ty:ty, $change:ident;)+) => {
        /// Every setting of `synwall listen`; unset ones take their defaults.
        #[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize, Serialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $($(#[$attr])* pub $key: Option<$ty>,)+
        }

        /// Every key, as its field is named, and how a change to it takes effect.
        pub(super) const KEYS: &[(&str, Change)] = &[$((stringify!($key), Change::$change),)+];

        impl Settings {
            /// These settings, with `base` filling the unset ones.
            pub fn over(self, base: Settings) -> Settings {
                Settings {
                    $($key: self.$key.or(base.$key),)+
                }
            }

            /// What runs after a reload to `new`: its reloadable settings, and ours for the
            /// rest.
            pub fn with_reloadable_from(&self, new: &Settings) -> Settings {
                Settings {
                    $($key: Change::$change.pick(&self.$key, &new.$key),)+
                }
            }
        }
    };
}

settings! {
    /// The network interface to serve on.
    #[arg(long, visible_alias = "iface")]
    interface: String, Restart;
    /// Rx queues to serve, comma-separated [default: all of the interface].
    #[arg(long, value_delimiter = ',')]
    queues: Vec<u32>, Restart;
    /// CPUs to pin the fast-path threads to, in queue order, comma-separated [default: none].
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>, Restart;
    /// An address and port to serve; repeat for more. 0.0.0.0 or `[::]` serves every address.
    #[arg(long)]
    listen: Vec<SocketAddr>, Restart;
    /// XDP attach mode [default: auto: native, else generic].
    #[arg(long, value_enum)]
    xdp_mode: XdpMode, Restart;
    /// How completed handshakes reach the service: native (into its own listening socket on
    /// the served address, Linux 6.9+), repair (TCP_REPAIR sockets proxied to --upstream), or
    /// auto (native where the kernel can, unless --upstream is set and nothing listens on the
    /// served address) [default: auto].
    #[arg(long, value_enum)]
    handoff: HandoffMode, Restart;
    /// Who answers new connections' SYNs: kernel-first (the kernel's listener, as without
    /// synwall, until its SYN queue fills, where the kernel would start sending syncookies;
    /// then synwall, for at least 10 s; in native mode the service's own listener, in repair
    /// mode synwall's own on the served port) or synwall (every SYN) [default: kernel-first].
    #[arg(long, value_enum)]
    answer_syns: SynAnswerer, Restart;
    /// The service connections are proxied to in repair mode: HOST:PORT, or unix:/PATH for a
    /// Unix stream socket on this host (no second TCP connection per client on the loopback).
    #[arg(long)]
    upstream: String, Reload;
    /// How long to wait for the upstream to accept a connection [default: 3s].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    upstream_timeout: Duration, Reload;
    /// Connections proxied at once, at most [default: 4096].
    #[arg(long)]
    max_connections: usize, Reload;
    /// The PROXY protocol header sent to the upstream, so that it learns each client's address
    /// (nginx, HAProxy and Envoy read it): off, v1 or v2 [default: off].
    #[arg(long, value_enum)]
    proxy_protocol: ProxyProtocol, Reload;
    /// Event-loop threads of the proxy [default: 1].
    #[arg(long)]
    proxy_threads: usize, Restart;
    /// Threads that hand completed handshakes to the kernel [default: 2].
    #[arg(long)]
    workers: usize, Restart;
    /// Completed handshakes waiting for a handoff, at most (the listen backlog) [default: 4096].
    #[arg(long)]
    backlog: usize, Restart;
    /// When SYNs are answered with cookies (tcp_syncookies 0/1/2) [default: when-full].
    #[arg(long, value_enum)]
    syncookies: Syncookies, Reload;
    /// SYN-queue entries per rx queue (tcp_max_syn_backlog) [default: 4096].
    #[arg(long)]
    max_syn_backlog: usize, Restart;
    /// SYN-ACK retransmissions of a queued handshake (tcp_synack_retries) [default: 5].
    #[arg(long)]
    synack_retries: u8, Restart;
    /// Reset clients whose handshake finds the accept queue full (tcp_abort_on_overflow).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    abort_on_overflow: bool, Reload;
    /// The MSS announced over IPv4 [default: 1460].
    #[arg(long)]
    mss_v4: u16, Restart;
    /// The MSS announced over IPv6 [default: 1440].
    #[arg(long)]
    mss_v6: u16, Restart;
    /// The four MSS values an IPv4 cookie can carry, ascending [default: 536,1300,1440,1460].
    #[arg(long, value_delimiter = ',')]
    cookie_mss_v4: Vec<u16>, Restart;
    /// The four MSS values an IPv6 cookie can carry, ascending [default: 1220,1420,1440,8940].
    #[arg(long, value_delimiter = ',')]
    cookie_mss_v6: Vec<u16>, Restart;
    /// The window-scale shift offered [default: what the kernel offers].
    #[arg(long)]
    window_scale: u8, Restart;
    /// Offer SACK [default: true].
    #[arg(long)]
    sack: bool, Restart;
    /// Use timestamps [default: true].
    #[arg(long)]
    timestamps: bool, Restart;
    /// Agree to ECN [default: false].
    #[arg(long)]
    ecn: bool, Restart;
    /// RSTs per second at most to invalid ACKs; 0 drops them silently [default: 1000].
    #[arg(long)]
    invalid_ack_rsts_per_sec: u32, Reload;
    /// Bytes held for kernel sockets being built, in all [default: 8388608].
    #[arg(long)]
    max_held_bytes: usize, Restart;
    /// Connections being handed to the kernel at once, at most [default: 4096].
    #[arg(long)]
    max_pending_handoffs: usize, Restart;
    /// How often cookie keys rotate; a cookie is valid for one to two periods [default: 64s].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    key_rotation: Duration, Restart;
    /// The cookie secret shared by a fleet (`synwall keygen`) [default: a random one].
    #[arg(long)]
    secret_file: PathBuf, Reload;
    /// Where the Prometheus endpoint listens [default: 127.0.0.1:9464].
    #[arg(long)]
    metrics: SocketAddr, Restart;
}

/// How a change to `key` (in the file's spelling, `max-syn-backlog`) takes effect; `None` for
/// no such key.
pub fn change_of(key: &str) -> Option<Change> {
    KEYS.iter()
        .find(|(field, _)| field.replace('_', "-") == key)
        .map(|&(_, change)| change)
}
