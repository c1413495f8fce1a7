//! The `synwall` command.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use synwall::cookie::keys::Secret;
use synwall::listener::SyncookiesMode;
use synwall::proxy::{self, ProxyConfig, ProxyCounters};
use synwall::server::{Server, ServerConfig};
use synwall::sys::XdpMode;

#[derive(Parser)]
#[command(version, about = "A SYN-flood-resistant TCP listener")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Front a TCP service: answer handshakes on the NIC, proxy connections to the upstream.
    Listen(ListenArgs),
    Lab(synwall::lab::LabArgs),
    /// Write a new cookie secret (mode 0600) for a fleet of synwall instances to share.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        path: PathBuf,
    },
}

#[derive(clap::Args)]
struct ListenArgs {
    /// The network interface to serve on.
    #[arg(long)]
    iface: String,
    /// An address and port to serve (repeat for more; 0.0.0.0 or [::] serves every address).
    #[arg(long = "listen", required = true)]
    listen: Vec<SocketAddr>,
    /// The service to proxy connections to, as HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// When to answer SYNs with cookies (tcp_syncookies 0/1/2).
    #[arg(long, value_enum, default_value_t = Cookies::WhenFull)]
    syncookies: Cookies,
    /// Completed handshakes waiting for a handoff worker, at most (listen backlog).
    #[arg(long, default_value_t = 4096)]
    backlog: usize,
    /// SYN-queue entries per rx queue (tcp_max_syn_backlog).
    #[arg(long, default_value_t = 4096)]
    max_syn_backlog: usize,
    /// SYN-ACK retransmissions before a queued handshake is dropped (tcp_synack_retries).
    #[arg(long, default_value_t = 5)]
    synack_retries: u8,
    /// Reset clients whose handshake finds the accept queue full (tcp_abort_on_overflow).
    #[arg(long)]
    abort_on_overflow: bool,
    /// Handoff worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Rx queues to serve, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    queues: Vec<u32>,
    /// CPUs to pin the fast-path threads to, comma-separated, in queue order.
    #[arg(long, value_delimiter = ',')]
    cpus: Vec<usize>,
    /// XDP attach mode.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    xdp_mode: Mode,
    /// The cookie secret shared by a fleet (see `synwall keygen`); random if absent.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Connections proxied at once, at most.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// How long to wait for the upstream to accept a connection.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    upstream_timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum Cookies {
    Never,
    WhenFull,
    Always,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Auto,
    Native,
    Generic,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Listen(args) => listen(args),
        Command::Lab(args) => Ok(synwall::lab::command(args)?),
        Command::Keygen { path } => {
            Secret::random()?
                .store(&path)
                .with_context(|| format!("writing the secret to {}", path.display()))?;
            println!("wrote a new secret to {}", path.display());
            Ok(())
        }
    }
}

fn listen(args: ListenArgs) -> anyhow::Result<()> {
    let upstream = resolve(&args.upstream)?;
    let mut config = ServerConfig::new(&args.iface, &args.listen);
    config.listener.syncookies = match args.syncookies {
        Cookies::Never => SyncookiesMode::Never,
        Cookies::WhenFull => SyncookiesMode::WhenFull,
        Cookies::Always => SyncookiesMode::Always,
    };
    config.listener.max_syn_backlog = args.max_syn_backlog;
    config.listener.synack_retries = args.synack_retries;
    config.listener.abort_on_overflow = args.abort_on_overflow;
    config.backlog = args.backlog;
    config.workers = args.workers;
    config.queues = args.queues;
    config.cpus = args.cpus;
    config.xdp_mode = match args.xdp_mode {
        Mode::Auto => XdpMode::Auto,
        Mode::Native => XdpMode::Native,
        Mode::Generic => XdpMode::Generic,
    };
    if let Some(path) = &args.secret_file {
        config.secret = Some(Secret::load(path)?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let server =
        Server::bind(config).with_context(|| format!("starting synwall on {}", args.iface))?;
    let proxy_config = ProxyConfig {
        upstream,
        connect_timeout: args.upstream_timeout,
        max_connections: args.max_connections,
    };
    let counters = Arc::new(ProxyCounters::default());
    let result = proxy::run(&server, proxy_config, &counters, &stop);
    tracing::info!("stopping");
    drop(server);
    result.context("serving")
}

fn resolve(upstream: &str) -> anyhow::Result<SocketAddr> {
    let mut addresses = upstream
        .to_socket_addrs()
        .with_context(|| format!("resolving the upstream {upstream:?} (expected HOST:PORT)"))?;
    match addresses.next() {
        Some(address) => Ok(address),
        None => bail!("the upstream {upstream:?} resolves to no address"),
    }
}
