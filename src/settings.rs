//! Settings of `synwall listen`: one [`Settings`] struct is both the command-line flags and the
//! keys of the TOML configuration file (the same kebab-case names, documented once, here and in
//! `deploy/synwall.toml`). Flags override the file; [`Settings::resolve`] checks everything and
//! loads the secret before anything is attached, and every error names its setting.
//!
//! Reloadable on SIGHUP ([`Settings::reloadable`]): the secret file, `syncookies`,
//! `abort-on-overflow`, `invalid-ack-rsts-per-sec`, `upstream`, `upstream-timeout`,
//! `max-connections` and `proxy-protocol`. Everything else sizes memory or threads, changes
//! what a cookie means or how connections are handed over, and takes a restart.
//!
//! `upstream` is needed in repair mode only: in native mode the service listens on the served
//! address itself. Which mode `handoff = auto` gets is known once the kernel has been asked
//! ([`crate::server::Server::bind`]); [`Resolved::proxy`] is `None` without an upstream.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cookie::MssTable;
use crate::cookie::keys::{KeyError, Secret};
use crate::handoff::HandoffMode;
use crate::listener::{ConfigError, ListenerUpdate, SyncookiesMode};
use crate::proxy::{ProxyConfig, ProxyProtocol};
use crate::server::ServerConfig;
use crate::sys::XdpMode;

/// The settings a SIGHUP applies; every other change takes a restart.
pub const RELOADABLE: [&str; 8] = [
    "secret-file",
    "syncookies",
    "abort-on-overflow",
    "invalid-ack-rsts-per-sec",
    "upstream",
    "upstream-timeout",
    "max-connections",
    "proxy-protocol",
];

/// The spellings of [`SyncookiesMode`] in flags and files: `never`, `when-full`, `always`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Syncookies {
    /// tcp_syncookies=0: every SYN needs a SYN-queue entry.
    Never,
    /// tcp_syncookies=1: cookies when the SYN queue is full.
    WhenFull,
    /// tcp_syncookies=2: cookies for every SYN.
    Always,
}

impl From<Syncookies> for SyncookiesMode {
    fn from(setting: Syncookies) -> SyncookiesMode {
        match setting {
            Syncookies::Never => SyncookiesMode::Never,
            Syncookies::WhenFull => SyncookiesMode::WhenFull,
            Syncookies::Always => SyncookiesMode::Always,
        }
    }
}

impl From<SyncookiesMode> for Syncookies {
    fn from(mode: SyncookiesMode) -> Syncookies {
        match mode {
            SyncookiesMode::Never => Syncookies::Never,
            SyncookiesMode::WhenFull => Syncookies::WhenFull,
            SyncookiesMode::Always => Syncookies::Always,
        }
    }
}

/// The default address of the Prometheus endpoint: loopback only.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9464";

/// Every setting of `synwall listen`; unset ones take their defaults.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// The network interface to serve on.
    #[arg(long, visible_alias = "iface")]
    pub interface: Option<String>,
    /// Rx queues to serve, comma-separated [default: all of the interface].
    #[arg(long, value_delimiter = ',')]
    pub queues: Option<Vec<u32>>,
    /// CPUs to pin the fast-path threads to, in queue order, comma-separated [default: none].
    #[arg(long, value_delimiter = ',')]
    pub cpus: Option<Vec<usize>>,
    /// An address and port to serve; repeat for more. 0.0.0.0 or `[::]` serves every address.
    #[arg(long)]
    pub listen: Option<Vec<SocketAddr>>,
    /// XDP attach mode [default: auto: native, else generic].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpMode>,
    /// How completed handshakes reach the service: native (into its own listening socket on
    /// the served address, Linux 6.9+), repair (TCP_REPAIR sockets proxied to --upstream), or
    /// auto (native where the kernel can, unless --upstream is set and nothing listens on the
    /// served address) [default: auto].
    #[arg(long, value_enum)]
    pub handoff: Option<HandoffMode>,
    /// The service connections are proxied to in repair mode, HOST:PORT.
    #[arg(long)]
    pub upstream: Option<String>,
    /// How long to wait for the upstream to accept a connection [default: 3s].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub upstream_timeout: Option<Duration>,
    /// Connections proxied at once, at most [default: 4096].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// The PROXY protocol header sent to the upstream, so that it learns each client's address
    /// (nginx, HAProxy and Envoy read it): off, v1 or v2 [default: off].
    #[arg(long, value_enum)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Event-loop threads of the proxy [default: 1].
    #[arg(long)]
    pub proxy_threads: Option<usize>,
    /// Threads that hand completed handshakes to the kernel [default: 2].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Completed handshakes waiting for a handoff, at most (the listen backlog) [default: 4096].
    #[arg(long)]
    pub backlog: Option<usize>,
    /// When SYNs are answered with cookies (tcp_syncookies 0/1/2) [default: when-full].
    #[arg(long, value_enum)]
    pub syncookies: Option<Syncookies>,
    /// SYN-queue entries per rx queue (tcp_max_syn_backlog) [default: 4096].
    #[arg(long)]
    pub max_syn_backlog: Option<usize>,
    /// SYN-ACK retransmissions of a queued handshake (tcp_synack_retries) [default: 5].
    #[arg(long)]
    pub synack_retries: Option<u8>,
    /// Reset clients whose handshake finds the accept queue full (tcp_abort_on_overflow).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub abort_on_overflow: Option<bool>,
    /// The MSS announced over IPv4 [default: 1460].
    #[arg(long)]
    pub mss_v4: Option<u16>,
    /// The MSS announced over IPv6 [default: 1440].
    #[arg(long)]
    pub mss_v6: Option<u16>,
    /// The four MSS values an IPv4 cookie can carry, ascending [default: 536,1300,1440,1460].
    #[arg(long, value_delimiter = ',')]
    pub cookie_mss_v4: Option<Vec<u16>>,
    /// The four MSS values an IPv6 cookie can carry, ascending [default: 1220,1420,1440,8940].
    #[arg(long, value_delimiter = ',')]
    pub cookie_mss_v6: Option<Vec<u16>>,
    /// The window-scale shift offered [default: what the kernel offers].
    #[arg(long)]
    pub window_scale: Option<u8>,
    /// Offer SACK [default: true].
    #[arg(long)]
    pub sack: Option<bool>,
    /// Use timestamps [default: true].
    #[arg(long)]
    pub timestamps: Option<bool>,
    /// Agree to ECN [default: false].
    #[arg(long)]
    pub ecn: Option<bool>,
    /// RSTs per second at most to invalid ACKs; 0 drops them silently [default: 1000].
    #[arg(long)]
    pub invalid_ack_rsts_per_sec: Option<u32>,
    /// Bytes held for kernel sockets being built, in all [default: 8388608].
    #[arg(long)]
    pub max_held_bytes: Option<usize>,
    /// Connections being handed to the kernel at once, at most [default: 4096].
    #[arg(long)]
    pub max_pending_handoffs: Option<usize>,
    /// How often cookie keys rotate; a cookie is valid for one to two periods [default: 64s].
    #[arg(long, value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde")]
    pub key_rotation: Option<Duration>,
    /// The cookie secret shared by a fleet (`synwall keygen`) [default: a random one].
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// Where the Prometheus endpoint listens [default: 127.0.0.1:9464].
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
}

/// A setting that is missing or cannot work, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{key}: required (in the configuration file, or as --{key})")]
    Missing { key: &'static str },
    #[error(
        "upstream: required in repair mode ({why}): the proxy joins each connection to it \
         (in the configuration file, or as --upstream)"
    )]
    NoUpstream { why: String },
    #[error("{key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error(transparent)]
    Listener(#[from] ConfigError),
    #[error("secret-file: {0}")]
    Secret(#[from] KeyError),
}

/// Everything `synwall listen` runs with.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub server: ServerConfig,
    /// The proxy of repair mode; `None` without an upstream.
    pub proxy: Option<ProxyConfig>,
    pub metrics: SocketAddr,
}

impl Resolved {
    /// The proxy, for a server whose connections are handed over in repair mode `because`.
    pub fn repair_proxy(&self, because: &str) -> Result<ProxyConfig, SettingsError> {
        self.proxy.ok_or_else(|| SettingsError::NoUpstream {
            why: because.to_owned(),
        })
    }
}

/// The settings SIGHUP applies to a running synwall.
#[derive(Debug, Clone)]
pub struct Reloadable {
    pub listener: ListenerUpdate,
    pub proxy: Option<ProxyConfig>,
}

macro_rules! overlay {
    ($top:expr, $base:expr, $($field:ident),+ $(,)?) => {
        Settings { $($field: $top.$field.or($base.$field),)+ }
    };
}

impl Settings {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        let file_error = |message: String| SettingsError::File {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|error| file_error(error.to_string()))?;
        toml::from_str(&text).map_err(|error| file_error(error.to_string()))
    }

    /// These settings, with `base` filling the unset ones.
    pub fn over(self, base: Settings) -> Settings {
        overlay!(
            self,
            base,
            interface,
            queues,
            cpus,
            listen,
            xdp_mode,
            handoff,
            upstream,
            upstream_timeout,
            max_connections,
            proxy_protocol,
            proxy_threads,
            workers,
            backlog,
            syncookies,
            max_syn_backlog,
            synack_retries,
            abort_on_overflow,
            mss_v4,
            mss_v6,
            cookie_mss_v4,
            cookie_mss_v6,
            window_scale,
            sack,
            timestamps,
            ecn,
            invalid_ack_rsts_per_sec,
            max_held_bytes,
            max_pending_handoffs,
            key_rotation,
            secret_file,
            metrics,
        )
    }

    /// Checks every setting, loads the secret and builds the configuration to run with.
    pub fn resolve(&self) -> Result<Resolved, SettingsError> {
        let interface = self
            .interface
            .clone()
            .ok_or(SettingsError::Missing { key: "interface" })?;
        let served = self
            .listen
            .as_deref()
            .ok_or(SettingsError::Missing { key: "listen" })?;
        let mut server = ServerConfig::new(&interface, served);
        let listener = &mut server.listener;
        set(&mut listener.syncookies, self.syncookies.map(Into::into));
        set(&mut listener.max_syn_backlog, self.max_syn_backlog);
        set(&mut listener.synack_retries, self.synack_retries);
        set(&mut listener.abort_on_overflow, self.abort_on_overflow);
        set(&mut listener.mss_v4, self.mss_v4);
        set(&mut listener.mss_v6, self.mss_v6);
        set(&mut listener.window_scale, self.window_scale);
        set(&mut listener.sack, self.sack);
        set(&mut listener.timestamps, self.timestamps);
        set(&mut listener.ecn, self.ecn);
        set(
            &mut listener.invalid_ack_rsts_per_sec,
            self.invalid_ack_rsts_per_sec,
        );
        set(&mut listener.max_held_bytes, self.max_held_bytes);
        set(
            &mut listener.max_pending_handoffs,
            self.max_pending_handoffs,
        );
        if let Some(table) = &self.cookie_mss_v4 {
            listener.cookie_mss_v4 = mss_table("cookie-mss-v4", table)?;
        }
        if let Some(table) = &self.cookie_mss_v6 {
            listener.cookie_mss_v6 = mss_table("cookie-mss-v6", table)?;
        }
        listener.validate()?;
        set(&mut server.queues, self.queues.clone());
        set(&mut server.cpus, self.cpus.clone());
        set(&mut server.xdp_mode, self.xdp_mode);
        set(&mut server.handoff, self.handoff);
        set(&mut server.workers, positive("workers", self.workers)?);
        set(&mut server.backlog, positive("backlog", self.backlog)?);
        if let Some(period) = self.key_rotation {
            if period < Duration::from_secs(1) {
                return Err(invalid("key-rotation", "must be at least 1s"));
            }
            server.key_period = period;
        }
        if let Some(path) = &self.secret_file {
            server.secret = Some(Secret::load(path)?);
        }
        let proxy = self.proxy()?;
        if server.handoff == HandoffMode::Repair && proxy.is_none() {
            return Err(SettingsError::NoUpstream {
                why: "handoff = repair".to_owned(),
            });
        }
        Ok(Resolved {
            server,
            proxy,
            metrics: self
                .metrics
                .unwrap_or_else(|| DEFAULT_METRICS.parse().expect("a valid address")),
        })
    }

    /// Every setting as `resolved` (resolved from these settings) runs with it, defaults
    /// included, in the configuration file's own spelling: what `synwall check-config` prints,
    /// like `sshd -T`. The secret is named by its file, never shown; the proxy's settings are
    /// present only with an upstream.
    pub fn effective(&self, resolved: &Resolved) -> Settings {
        let server = &resolved.server;
        let listener = &server.listener;
        let proxy = resolved.proxy.as_ref();
        Settings {
            interface: Some(server.interface.clone()),
            queues: Some(server.queues.clone()),
            cpus: Some(server.cpus.clone()),
            listen: Some(listener.served.iter().copied().collect()),
            xdp_mode: Some(server.xdp_mode),
            handoff: Some(server.handoff),
            upstream: proxy.map(|proxy| proxy.upstream.to_string()),
            upstream_timeout: proxy.map(|proxy| proxy.connect_timeout),
            max_connections: proxy.map(|proxy| proxy.max_connections),
            proxy_protocol: proxy.map(|proxy| proxy.proxy_protocol),
            proxy_threads: proxy.map(|proxy| proxy.threads),
            workers: Some(server.workers),
            backlog: Some(server.backlog),
            syncookies: Some(listener.syncookies.into()),
            max_syn_backlog: Some(listener.max_syn_backlog),
            synack_retries: Some(listener.synack_retries),
            abort_on_overflow: Some(listener.abort_on_overflow),
            mss_v4: Some(listener.mss_v4),
            mss_v6: Some(listener.mss_v6),
            cookie_mss_v4: Some(listener.cookie_mss_v4.0.to_vec()),
            cookie_mss_v6: Some(listener.cookie_mss_v6.0.to_vec()),
            window_scale: Some(listener.window_scale),
            sack: Some(listener.sack),
            timestamps: Some(listener.timestamps),
            ecn: Some(listener.ecn),
            invalid_ack_rsts_per_sec: Some(listener.invalid_ack_rsts_per_sec),
            max_held_bytes: Some(listener.max_held_bytes),
            max_pending_handoffs: Some(listener.max_pending_handoffs),
            key_rotation: Some(server.key_period),
            secret_file: self.secret_file.clone(),
            metrics: Some(resolved.metrics),
        }
    }

    /// These settings as a configuration file.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings are TOML")
    }

    /// The keys whose value differs in `new` and that take a restart.
    pub fn restart_needed(&self, new: &Settings) -> Vec<String> {
        let (old, new) = (self.as_table(), new.as_table());
        let mut keys: Vec<String> = old
            .keys()
            .chain(new.keys())
            .filter(|key| !RELOADABLE.contains(&key.as_str()) && old.get(*key) != new.get(*key))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// What runs after a reload to `new`: its reloadable settings, and ours for the rest.
    pub fn with_reloadable_from(&self, new: &Settings) -> Settings {
        Settings {
            secret_file: new.secret_file.clone(),
            syncookies: new.syncookies,
            abort_on_overflow: new.abort_on_overflow,
            invalid_ack_rsts_per_sec: new.invalid_ack_rsts_per_sec,
            upstream: new.upstream.clone(),
            upstream_timeout: new.upstream_timeout,
            max_connections: new.max_connections,
            proxy_protocol: new.proxy_protocol,
            ..self.clone()
        }
    }

    fn as_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("settings are TOML")
    }

    /// The settings a SIGHUP applies, checked like [`Settings::resolve`] checks them.
    pub fn reloadable(&self) -> Result<Reloadable, SettingsError> {
        let resolved = self.resolve()?;
        let listener = &resolved.server.listener;
        Ok(Reloadable {
            listener: ListenerUpdate {
                secret: resolved.server.secret,
                syncookies: listener.syncookies,
                abort_on_overflow: listener.abort_on_overflow,
                invalid_ack_rsts_per_sec: listener.invalid_ack_rsts_per_sec,
            },
            proxy: resolved.proxy,
        })
    }

    /// The proxy's configuration; `None` without an upstream.
    fn proxy(&self) -> Result<Option<ProxyConfig>, SettingsError> {
        let Some(upstream) = self.upstream.as_deref() else {
            return Ok(None);
        };
        let address = upstream
            .to_socket_addrs()
            .map_err(|error| {
                invalid(
                    "upstream",
                    &format!("{upstream:?}: {error} (expected HOST:PORT)"),
                )
            })?
            .next()
            .ok_or_else(|| invalid("upstream", &format!("{upstream:?} resolves to no address")))?;
        Ok(Some(ProxyConfig {
            upstream: address,
            connect_timeout: self.upstream_timeout.unwrap_or(Duration::from_secs(3)),
            max_connections: positive("max-connections", self.max_connections)?.unwrap_or(4096),
            threads: positive("proxy-threads", self.proxy_threads)?.unwrap_or(1),
            proxy_protocol: self.proxy_protocol.unwrap_or_default(),
        }))
    }
}

fn set<T>(target: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *target = value;
    }
}

fn invalid(key: &'static str, reason: &str) -> SettingsError {
    SettingsError::Invalid {
        key,
        reason: reason.to_owned(),
    }
}

fn positive(key: &'static str, value: Option<usize>) -> Result<Option<usize>, SettingsError> {
    match value {
        Some(0) => Err(invalid(key, "must be at least 1")),
        value => Ok(value),
    }
}

fn mss_table(key: &'static str, values: &[u16]) -> Result<MssTable, SettingsError> {
    let table: [u16; 4] = values.try_into().map_err(|_| {
        invalid(
            key,
            &format!("needs exactly 4 values, not {}", values.len()),
        )
    })?;
    Ok(MssTable(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|error: toml::de::Error| error.to_string())
    }

    fn minimal() -> Settings {
        Settings {
            interface: Some("lo".into()),
            listen: Some(vec!["127.0.0.1:80".parse().unwrap()]),
            upstream: Some("127.0.0.1:8080".into()),
            ..Settings::default()
        }
    }

    #[test]
    fn test_file_keys_match_flags() {
        let settings = parse(
            r#"
            interface = "eth0"
            listen = ["0.0.0.0:443", "[::]:443"]
            upstream = "127.0.0.1:8443"
            upstream-timeout = "500ms"
            syncookies = "always"
            max-syn-backlog = 1024
            abort-on-overflow = true
            cookie-mss-v4 = [536, 1200, 1400, 1460]
            xdp-mode = "generic"
            key-rotation = "2m"
            "#,
        )
        .unwrap();
        assert_eq!(settings.syncookies, Some(Syncookies::Always));
        assert_eq!(settings.upstream_timeout, Some(Duration::from_millis(500)));
        assert_eq!(settings.key_rotation, Some(Duration::from_secs(120)));
        assert_eq!(settings.xdp_mode, Some(XdpMode::Generic));
        assert_eq!(settings.listen.as_ref().map(Vec::len), Some(2));
    }

    #[test]
    fn test_iface_is_an_alias_of_interface() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            settings: Settings,
        }
        for flag in ["--iface", "--interface"] {
            let cli = <Cli as clap::Parser>::try_parse_from(["synwall", flag, "eth1"]).unwrap();
            assert_eq!(cli.settings.interface.as_deref(), Some("eth1"));
        }
    }

    #[test]
    fn test_unknown_key_is_named() {
        let error = parse("interface = \"eth0\"\nmax-syn-backlogg = 5\n").unwrap_err();
        assert!(error.contains("max-syn-backlogg"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn test_flags_override_the_file() {
        let file = Settings {
            max_syn_backlog: Some(10),
            backlog: Some(20),
            ..minimal()
        };
        let flags = Settings {
            max_syn_backlog: Some(30),
            ..Settings::default()
        };
        let merged = flags.over(file);
        assert_eq!(merged.max_syn_backlog, Some(30));
        assert_eq!(merged.backlog, Some(20));
        let resolved = merged.resolve().unwrap();
        assert_eq!(resolved.server.listener.max_syn_backlog, 30);
        assert_eq!(resolved.server.backlog, 20);
    }

    #[test]
    fn test_invalid_settings_name_their_key() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    interface: None,
                    ..minimal()
                },
                "interface: required",
            ),
            (
                Settings {
                    upstream: None,
                    handoff: Some(HandoffMode::Repair),
                    ..minimal()
                },
                "upstream: required in repair mode (handoff = repair)",
            ),
            (
                Settings {
                    proxy_threads: Some(0),
                    ..minimal()
                },
                "proxy-threads: must be at least 1",
            ),
            (
                Settings {
                    window_scale: Some(15),
                    ..minimal()
                },
                "window-scale: 15",
            ),
            (
                Settings {
                    mss_v4: Some(20),
                    ..minimal()
                },
                "mss-v4: 20",
            ),
            (
                Settings {
                    cookie_mss_v6: Some(vec![1, 2]),
                    ..minimal()
                },
                "cookie-mss-v6: needs exactly 4",
            ),
            (
                Settings {
                    cookie_mss_v4: Some(vec![4, 3, 2, 1]),
                    ..minimal()
                },
                "cookie-mss-v4: [4, 3, 2, 1]",
            ),
            (
                Settings {
                    workers: Some(0),
                    ..minimal()
                },
                "workers: must be at least 1",
            ),
            (
                Settings {
                    upstream: Some("nowhere".into()),
                    ..minimal()
                },
                "upstream: \"nowhere\"",
            ),
            (
                Settings {
                    key_rotation: Some(Duration::from_millis(10)),
                    ..minimal()
                },
                "key-rotation",
            ),
            (
                Settings {
                    secret_file: Some("/nonexistent/secret".into()),
                    ..minimal()
                },
                "secret-file: ",
            ),
        ];
        for (settings, expected) in cases {
            let error = settings.resolve().unwrap_err().to_string();
            assert!(
                error.starts_with(expected),
                "{error:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn test_native_mode_needs_no_upstream() {
        let native = Settings {
            upstream: None,
            handoff: Some(HandoffMode::Native),
            ..minimal()
        };
        let resolved = native.resolve().unwrap();
        assert!(resolved.proxy.is_none());
        let error = resolved
            .repair_proxy("handoff = auto, but ...")
            .unwrap_err();
        assert!(error.to_string().contains("handoff = auto, but"), "{error}");
        let with_upstream = minimal().resolve().unwrap();
        assert_eq!(
            with_upstream.proxy.unwrap().proxy_protocol,
            ProxyProtocol::Off
        );
    }

    #[test]
    fn test_reload_tells_what_takes_a_restart() {
        let old = minimal();
        let new = Settings {
            syncookies: Some(Syncookies::Always),
            upstream: Some("127.0.0.1:9090".into()),
            proxy_protocol: Some(ProxyProtocol::V2),
            max_syn_backlog: Some(8),
            interface: Some("eth1".into()),
            handoff: Some(HandoffMode::Repair),
            ..minimal()
        };
        assert_eq!(
            old.restart_needed(&new),
            ["handoff", "interface", "max-syn-backlog"]
        );
        let running = old.with_reloadable_from(&new);
        assert_eq!(running.syncookies, Some(Syncookies::Always));
        assert_eq!(running.upstream.as_deref(), Some("127.0.0.1:9090"));
        assert_eq!(running.proxy_protocol, Some(ProxyProtocol::V2));
        assert_eq!(running.max_syn_backlog, None, "kept until a restart");
        assert_eq!(running.interface.as_deref(), Some("lo"));
        assert!(running.restart_needed(&new).len() == 3);
    }

    #[test]
    fn test_effective_settings_are_a_configuration_that_runs_the_same() {
        let given = Settings {
            max_syn_backlog: Some(512),
            proxy_protocol: Some(ProxyProtocol::V1),
            ..minimal()
        };
        let resolved = given.resolve().unwrap();
        let effective = given.effective(&resolved);
        let text = effective.to_toml();
        assert!(text.contains("syncookies = \"when-full\""), "{text}");
        assert!(text.contains("max-syn-backlog = 512"), "{text}");
        assert!(text.contains("proxy-protocol = \"v1\""), "{text}");
        assert!(text.contains("upstream-timeout = \"3s\""), "{text}");
        assert!(!text.contains("WhenFull"), "{text}");
        let reread: Settings = toml::from_str(&text).unwrap();
        assert_eq!(reread, effective);
        // Every key but the secret file (none given) is there, defaults included, spelt as
        // its flag.
        let flags = <Settings as clap::Args>::augment_args(clap::Command::new("synwall"));
        let mut flags: Vec<&str> = flags
            .get_arguments()
            .filter_map(clap::Arg::get_long)
            .filter(|&flag| flag != "secret-file")
            .collect();
        let table = effective.as_table();
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        flags.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, flags);
        assert_eq!(reread.effective(&reread.resolve().unwrap()), effective);
    }

    #[test]
    fn test_example_configuration_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/synwall.toml");
        let example = Settings::load(Path::new(path)).expect("deploy/synwall.toml parses");
        assert!(
            example.secret_file.is_some(),
            "the example shows the secret file"
        );
        // Everything but the secret, which exists only on a deployed host.
        let resolved = Settings {
            secret_file: None,
            ..example
        }
        .resolve()
        .expect("every value of the example is valid");
        assert_eq!(resolved.server.listener.max_syn_backlog, 4096);
        assert_eq!(resolved.metrics, DEFAULT_METRICS.parse().unwrap());
    }
}
