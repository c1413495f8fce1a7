//! The `synwall` command: the CLI layer, which holds what the library must not depend on
//! (clap, serde, toml, anyhow, tracing-subscriber; the Cargo feature `cli`): `settings`, the
//! flags and the configuration file, and how they spell the library's modes. One module per
//! subcommand that does more than a few lines: `listen`, `check_config`, `monitor` (stats and
//! status).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::settings::Settings;
use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use synwall::cookie::keys::Secret;
use synwall::metrics::DEFAULT_ENDPOINT;

mod check_config;
mod listen;
mod monitor;
mod settings;

#[derive(Parser)]
#[command(
    version,
    about = "A SYN-flood-resistant TCP listener",
    after_help = "Logging: RUST_LOG sets what is logged, e.g. RUST_LOG=debug or \
                  RUST_LOG=synwall=debug,synwall::proxy=trace (default: info); logs go to \
                  standard error, coloured only on a terminal."
)]
struct Cli {
    /// How log lines are written: text, or json (one object per line, for log shippers).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Front a TCP service: answer handshakes on the NIC, hand each completed one to the
    /// service's own listening socket (native) or proxy it to the upstream (repair). SIGHUP
    /// reloads the secret and the reloadable settings; SIGINT/SIGTERM stop.
    Listen(ListenArgs),
    /// Check a configuration (file and flags) without attaching anything, and with --host
    /// against this host as `listen` would; print every setting in effect as a configuration
    /// file (like `sshd -T`).
    CheckConfig(CheckConfigArgs),
    /// Write a new cookie secret (mode 0600) for a fleet of synwall instances to share.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        path: PathBuf,
    },
    /// A live view of a running synwall's figures, read from its metrics endpoint.
    Stats(StatsArgs),
    /// What a running synwall does, on one screen: the XDP programs of every interface here
    /// (synwall's and others), the native handoff's program on lo, and from the metrics
    /// endpoint the addresses and queues served, copy or zero-copy, the handoff mode, the
    /// secret's source and the flood state. Exits 1 when no synwall is found.
    Status(StatusArgs),
    /// Write the shell completion script for SHELL to standard output (for packages).
    #[command(hide = true)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (synwall.1, synwall-listen.1, ...) into DIR (for packages).
    #[command(hide = true)]
    Man {
        /// An existing directory.
        dir: PathBuf,
    },
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

#[derive(clap::Args)]
struct CheckConfigArgs {
    #[command(flatten)]
    listen: ListenArgs,
    /// Print nothing but warnings and errors (systemd's ExecStartPre=).
    #[arg(long, short, conflicts_with = "write")]
    quiet: bool,
    /// Also check the configuration against this host, as `listen` does before it attaches
    /// anything: the interface and its queues, the CPUs, the kernel's native handoff (which
    /// settles handoff = auto), what listens on the served addresses, and the upstream.
    /// Without it nothing but the file, the flags and the secret file is read.
    #[arg(long)]
    host: bool,
    /// Save the settings in effect to FILE instead of printing them, once they check out: the
    /// configuration file and the flags given, as one file (replaced atomically, keeping its
    /// owner and mode; a new file gets mode 0640).
    #[arg(long, value_name = "FILE")]
    write: Option<PathBuf>,
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

/// Where the running synwall's metrics endpoint is.
#[derive(clap::Args)]
struct EndpointArgs {
    /// The metrics endpoint of the running synwall [default: the configuration's `metrics`
    /// with --config, else 127.0.0.1:9464].
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// The configuration file of the running synwall: its `metrics` address is read.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl EndpointArgs {
    /// The endpoint: --metrics, else the configuration file's, else the default.
    fn address(&self) -> anyhow::Result<SocketAddr> {
        let configured = match (&self.metrics, &self.config) {
            (Some(address), _) => return Ok(*address),
            (None, Some(path)) => Settings::load(path)?.metrics,
            (None, None) => None,
        };
        Ok(configured.unwrap_or_else(|| DEFAULT_ENDPOINT.parse().expect("a valid address")))
    }
}

/// Every interval, a line of rates (over the time measured between two scrapes), losses per
/// second and gauges; the header again every 20 lines.
#[derive(clap::Args)]
struct StatsArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Time between lines.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Stop after this many intervals.
    #[arg(long)]
    count: Option<u64>,
    /// A JSON object per line instead of the table.
    #[arg(long)]
    json: bool,
    /// A line per rx queue too, before the line of the whole server.
    #[arg(long)]
    per_queue: bool,
}

/// One report of the kernel's programs and the running synwall's figures.
#[derive(clap::Args)]
struct StatusArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Time between the two scrapes the flood state (cookies per second) is measured over.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// One JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not through the log filter: a failure is always told, once.
            eprintln!("synwall: {}", describe(&error));
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour only for a person at a terminal, never into the journal or a file.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

/// An error and its causes on one line, each cause once: a cause whose text the message
/// before it already quotes is not repeated.
fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    let mut previous = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !previous.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        previous = text;
    }
    line
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Listen(args) => listen::listen(&args),
        Command::CheckConfig(args) => check_config::check_config(&args),
        Command::Keygen { path } => {
            // The error names the file.
            Secret::random()?.store(&path)?;
            println!("wrote a new secret to {}", path.display());
            Ok(())
        }
        Command::Stats(args) => monitor::stats(&args),
        Command::Status(args) => monitor::status(&args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "synwall",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man { dir } => clap_mangen::generate_to(Cli::command(), &dir)
            .with_context(|| format!("writing the man pages into {}", dir.display())),
    }
}
