//! Settings of `synwall listen`: one [`Settings`] struct is both the command-line flags and the
//! keys of the TOML configuration file (the same kebab-case names). Each key is declared once,
//! in `keys.rs`, with its doc, default and whether a SIGHUP applies it ([`Change`];
//! [`Settings::reloadable`] checks them);
//! `deploy/synwall.toml` states the same defaults and `[reload]` marks, which the tests check.
//! Flags override the file; [`Settings::resolve`] checks everything and loads the secret
//! before anything is attached, and every error names its setting.
//!
//! `upstream` is needed in repair mode only: in native mode the service listens on the served
//! address itself. Which mode `handoff = auto` gets is known once the kernel has been asked
//! ([`synwall::server::Server::bind`]); [`Resolved::proxy`] is `None` without an upstream.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use synwall::cookie::MssTable;
use synwall::cookie::keys::{KeyError, Secret};
use synwall::handoff::HandoffMode;
use synwall::listener::{ConfigError, ListenerUpdate};
use synwall::proxy::{ProxyConfig, Upstream};
use synwall::server::ServerConfig;

mod keys;
pub(crate) mod spelling;

pub use keys::{Change, Settings, change_of};

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

/// How [`Settings::resolve`] turns an `upstream` host name into an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Through the system's resolver (DNS), as `listen` and a reload do.
    Dns,
    /// No lookup: a name is checked for its form (`HOST:PORT`) only, and the proxy gets the
    /// unspecified address with that port, never connected to. `check-config` without
    /// `--host` resolves this way, so that it reads nothing of this host.
    FormOnly,
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
        self.proxy.clone().ok_or_else(|| SettingsError::NoUpstream {
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

    /// Checks every setting, loads the secret and builds the configuration to run with, an
    /// `upstream` host name looked up as `lookup` says.
    pub fn resolve(&self, lookup: Lookup) -> Result<Resolved, SettingsError> {
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
        set(&mut server.xdp_mode, self.xdp_mode.map(Into::into));
        set(&mut server.handoff, self.handoff.map(Into::into));
        set(&mut server.answer_syns, self.answer_syns.map(Into::into));
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
        let proxy = self.proxy(lookup)?;
        if server.handoff == HandoffMode::Repair && proxy.is_none() {
            return Err(SettingsError::NoUpstream {
                why: "handoff = repair".to_owned(),
            });
        }
        Ok(Resolved {
            server,
            proxy,
            metrics: self.metrics.unwrap_or_else(|| {
                synwall::metrics::DEFAULT_ENDPOINT
                    .parse()
                    .expect("a valid address")
            }),
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
            xdp_mode: Some(server.xdp_mode.into()),
            handoff: Some(server.handoff.into()),
            answer_syns: Some(server.answer_syns.into()),
            upstream: proxy.and(self.upstream.clone()),
            upstream_timeout: proxy.map(|proxy| proxy.connect_timeout),
            max_connections: proxy.map(|proxy| proxy.max_connections),
            proxy_protocol: proxy.map(|proxy| proxy.proxy_protocol.into()),
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
            .filter(|key| change_of(key) != Some(Change::Reload) && old.get(*key) != new.get(*key))
            .cloned()
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    fn as_table(&self) -> toml::Table {
        toml::Table::try_from(self).expect("settings are TOML")
    }

    /// The settings a SIGHUP applies, checked like [`Settings::resolve`] checks them.
    pub fn reloadable(&self) -> Result<Reloadable, SettingsError> {
        let resolved = self.resolve(Lookup::Dns)?;
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
    fn proxy(&self, lookup: Lookup) -> Result<Option<ProxyConfig>, SettingsError> {
        let Some(upstream) = self.upstream.as_deref() else {
            return Ok(None);
        };
        Ok(Some(ProxyConfig {
            upstream: parse_upstream(upstream, lookup)?,
            connect_timeout: self.upstream_timeout.unwrap_or(Duration::from_secs(3)),
            max_connections: positive("max-connections", self.max_connections)?.unwrap_or(4096),
            threads: positive("proxy-threads", self.proxy_threads)?.unwrap_or(1),
            proxy_protocol: self.proxy_protocol.map(Into::into).unwrap_or_default(),
        }))
    }
}

/// `upstream` as the settings spell it: `unix:` and an absolute path, or `HOST:PORT`, a host
/// name looked up as `lookup` says.
fn parse_upstream(upstream: &str, lookup: Lookup) -> Result<Upstream, SettingsError> {
    if let Some(path) = upstream.strip_prefix(Upstream::UNIX_PREFIX) {
        if !path.starts_with('/') {
            return Err(invalid(
                "upstream",
                &format!("{upstream:?}: expected unix:/PATH, an absolute path"),
            ));
        }
        return Ok(Upstream::unix(path));
    }
    let address = match (upstream.parse::<SocketAddr>(), lookup) {
        (Ok(address), _) => address,
        (Err(_), Lookup::Dns) => look_up(upstream)?,
        (Err(_), Lookup::FormOnly) => {
            let port = upstream
                .rsplit_once(':')
                .filter(|(host, _)| !host.is_empty())
                .and_then(|(_, port)| port.parse().ok())
                .ok_or_else(|| {
                    invalid(
                        "upstream",
                        &format!("{upstream:?}: expected HOST:PORT or unix:/PATH"),
                    )
                })?;
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port))
        }
    };
    Ok(Upstream::Tcp(address))
}

/// The first address `upstream` (`HOST:PORT`) resolves to.
fn look_up(upstream: &str) -> Result<SocketAddr, SettingsError> {
    upstream
        .to_socket_addrs()
        .map_err(|error| {
            invalid(
                "upstream",
                &format!("{upstream:?}: {error} (expected HOST:PORT or unix:/PATH)"),
            )
        })?
        .next()
        .ok_or_else(|| invalid("upstream", &format!("{upstream:?} resolves to no address")))
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
mod tests;
