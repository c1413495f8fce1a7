//! The `synwall` command.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use synwall::cookie::keys::Secret;
use synwall::counters::{Counter, Gauge};
use synwall::handoff::HandoffMode;
use synwall::kernel;
use synwall::metrics::{self, MetricsServer, Scrape};
use synwall::proxy::Proxy;
use synwall::server::Server;
use synwall::settings::{DEFAULT_METRICS, Resolved, Settings, SettingsError};
use synwall::sys::native;

#[derive(Parser)]
#[command(version, about = "A SYN-flood-resistant TCP listener")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Front a TCP service: answer handshakes on the NIC, hand each completed one to the
    /// service's own listening socket (native) or proxy it to the upstream (repair). SIGHUP
    /// reloads the secret and the reloadable settings; SIGINT/SIGTERM stop.
    Listen(ListenArgs),
    /// Check a configuration (file and flags) as `listen` would, without attaching anything.
    CheckConfig(ListenArgs),
    /// The lab (as root): a bounded SYN flood and real clients against synwall or the Linux
    /// kernel's listener (--compare: both), between two network namespaces it creates.
    Lab(synwall::lab::LabArgs),
    /// Write a new cookie secret (mode 0600) for a fleet of synwall instances to share.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        path: PathBuf,
    },
    /// A live view of a running synwall's figures, read from its metrics endpoint.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
struct ListenArgs {
    /// A configuration file (TOML; every key is documented in deploy/synwall.toml). Flags of
    /// the same names override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
}

impl ListenArgs {
    /// The flags over the configuration file, read now.
    fn settings(&self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        Ok(self.settings.clone().over(file))
    }
}

#[derive(clap::Args)]
struct StatsArgs {
    /// The metrics endpoint of the synwall to watch.
    #[arg(long, default_value = DEFAULT_METRICS)]
    metrics: SocketAddr,
    /// Time between lines.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Stop after this many lines.
    #[arg(long)]
    count: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never into the journal or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Listen(args) => listen(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Lab(args) => Ok(synwall::lab::command(args)?),
        Command::Keygen { path } => {
            Secret::random()?
                .store(&path)
                .with_context(|| format!("writing the secret to {}", path.display()))?;
            println!("wrote a new secret to {}", path.display());
            Ok(())
        }
        Command::Stats(args) => stats(&args),
    }
}

fn check_config(args: &ListenArgs) -> anyhow::Result<()> {
    let resolved = args.settings()?.resolve()?;
    let server = &resolved.server;
    let handoff = match (server.handoff, resolved.proxy) {
        (HandoffMode::Repair, Some(proxy)) => format!("repair, proxied to {}", proxy.upstream),
        (mode, proxy) => format!(
            "{}{}",
            mode.name(),
            proxy.map_or(String::new(), |proxy| format!(
                " (repair proxies to {})",
                proxy.upstream
            ))
        ),
    };
    println!(
        "configuration OK: {} on {}, syncookies {:?}, handoff {handoff}, metrics on {}",
        server
            .listener
            .served
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        server.interface,
        server.listener.syncookies,
        resolved.metrics,
    );
    Ok(())
}

fn listen(args: &ListenArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    // Every setting is checked, the secret loaded and the handoff mode settled before
    // anything is attached.
    let mut resolved = settings.resolve()?;
    settle_handoff(&mut resolved)?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload))
        .context("installing signal handlers")?;

    let interface = resolved.server.interface.clone();
    let server = Arc::new(
        Server::bind(resolved.server.clone())
            .with_context(|| format!("starting synwall on {interface}"))?,
    );
    let proxy = match server.handoff_mode() {
        HandoffMode::Repair => Some(Arc::new(Proxy::new(
            resolved.repair_proxy(server.handoff_reason())?,
        ))),
        _ => {
            if let Some(unused) = resolved.proxy {
                tracing::warn!(
                    upstream = %unused.upstream,
                    "the upstream is not used: in native mode the service listening on the \
                     served address takes the connections"
                );
            }
            None
        }
    };
    let metrics = MetricsServer::spawn(resolved.metrics, {
        let server = Arc::clone(&server);
        let counters = proxy
            .as_ref()
            .map(|proxy| proxy.counters())
            .unwrap_or_default();
        move || metrics::render(&server.stats(), &counters)
    })?;
    tracing::info!(address = %metrics.address(), "metrics endpoint");
    let proxying = proxy.as_ref().map(|proxy| {
        let (server, proxy, stop) = (Arc::clone(&server), Arc::clone(proxy), Arc::clone(&stop));
        thread::spawn(move || proxy.run(&server, &stop))
    });

    let mut running = settings;
    while !stop.load(Ordering::Relaxed)
        && server.is_running()
        && !proxying.as_ref().is_some_and(|thread| thread.is_finished())
    {
        thread::sleep(Duration::from_millis(100));
        if reload.swap(false, Ordering::Relaxed) {
            running = reload_settings(args, &running, &server, proxy.as_deref());
        }
    }
    stop.store(true, Ordering::Relaxed);
    tracing::info!("stopping");
    let served = match proxying {
        Some(thread) => thread.join().expect("the proxy thread panicked"),
        None => Ok(()),
    };
    let failure = server.failure();
    drop(metrics);
    drop(server);
    served.and(failure.map_or(Ok(()), Err)).context("serving")
}

/// Settles `handoff = auto`: native where the kernel can, unless an upstream is set and
/// nothing listens on a served address (a deployment that proxies, as before native handoff
/// existed); repair where the kernel cannot, which then needs the upstream. Logs which, and why.
fn settle_handoff(resolved: &mut Resolved) -> anyhow::Result<()> {
    if resolved.server.handoff != HandoffMode::Auto {
        return Ok(());
    }
    let unlistened = resolved
        .server
        .listener
        .served
        .iter()
        .copied()
        .find(|&address| !kernel::listening_on(address).unwrap_or(true));
    let (mode, why) = match (native::check(), resolved.proxy, unlistened) {
        (Err(unavailable), None, _) => {
            return Err(SettingsError::NoUpstream {
                why: format!("handoff = auto, but {unavailable}"),
            }
            .into());
        }
        (Err(unavailable), Some(_), _) => (HandoffMode::Repair, unavailable.to_string()),
        (Ok(()), Some(proxy), Some(address)) => (
            HandoffMode::Repair,
            format!(
                "nothing listens on {address} and the upstream {} is set",
                proxy.upstream
            ),
        ),
        (Ok(()), ..) => (HandoffMode::Native, "the kernel can".to_owned()),
    };
    tracing::info!(handoff = mode.name(), why, "handoff = auto settled");
    resolved.server.handoff = mode;
    Ok(())
}

/// Re-reads the configuration (SIGHUP) and applies what can change while running; returns the
/// settings now in force. A configuration that does not check out changes nothing.
fn reload_settings(
    args: &ListenArgs,
    running: &Settings,
    server: &Server,
    proxy: Option<&Proxy>,
) -> Settings {
    let new = match args.settings() {
        Ok(new) => new,
        Err(error) => {
            tracing::error!("reload: {error:#}; the running settings stay");
            return running.clone();
        }
    };
    let reloadable = match new.reloadable() {
        Ok(reloadable) => reloadable,
        Err(error) => {
            tracing::error!("reload: {error}; the running settings stay");
            return running.clone();
        }
    };
    let restart = running.restart_needed(&new);
    if !restart.is_empty() {
        tracing::warn!(keys = ?restart, "reload: these settings take a restart; their old values stay");
    }
    server.reload(&reloadable.listener);
    if let Some(proxy) = proxy {
        match reloadable.proxy {
            Some(config) => proxy.reconfigure(config),
            None => tracing::warn!("reload: repair mode keeps its upstream; it cannot be removed"),
        }
    }
    tracing::info!("reloaded");
    running.with_reloadable_from(&new)
}

/// One line per interval: rates of the counters, current values of the gauges.
fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let fetch = || {
        Scrape::fetch(args.metrics)
            .with_context(|| format!("reading the metrics of the synwall at {}", args.metrics))
    };
    let mut previous = fetch()?;
    let seconds = args.interval.as_secs_f64();
    println!(
        "{:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8}",
        "SYN/s",
        "SYN-ACK/s",
        "cookie/s",
        "valid/s",
        "invalid/s",
        "accept/s",
        "synq",
        "acceptq",
        "handoffs",
        "reject/s",
        "proxied"
    );
    for _ in 0..args.count.unwrap_or(u64::MAX) {
        thread::sleep(args.interval);
        let now = fetch()?;
        // Whole families: a labelled counter's family sums its series (every path, reason,
        // layer).
        let rate = |counter: Counter| {
            (now.family(counter.family()) - previous.family(counter.family())) / seconds
        };
        let gauge = |gauge: Gauge| now.get(gauge.series());
        let syn_acks = rate(Counter::SynAcksSent)
            + rate(Counter::CookiesSent)
            + rate(Counter::SynAckRetransmits);
        println!(
            "{:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8} {:>8} {:>8} {:>9.0} {:>8}",
            rate(Counter::SynReceived),
            syn_acks,
            rate(Counter::CookiesSent),
            rate(Counter::CookieAcksValid),
            rate(Counter::CookieAcksInvalid),
            rate(Counter::AcceptedFromQueue),
            gauge(Gauge::SynQueueDepth),
            now.get("synwall_accept_queue_depth"),
            gauge(Gauge::HandoffsPending),
            rate(Counter::AckMismatch) + rate(Counter::MalformedTcpChecksum),
            now.get("synwall_proxy_connections"),
        );
        previous = now;
    }
    Ok(())
}
