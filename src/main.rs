//! The `synwall` command.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use sd_notify::NotifyState;
use synwall::cookie::keys::Secret;
use synwall::handoff::HandoffMode;
use synwall::kernel;
use synwall::metrics::view::{self, Table};
use synwall::metrics::{
    self, Instance, MetricsServer, ReloadStatus, Scrape, SecretSource, Serving,
};
use synwall::preflight;
use synwall::proxy::Proxy;
use synwall::server::{Server, ServerConfig};
use synwall::settings::{DEFAULT_METRICS, Resolved, Settings, SettingsError};
use synwall::status::Status;
use synwall::sys::native;

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
    /// Check a configuration (file and flags) as `listen` would, against this host, without
    /// attaching anything; print every setting in effect as a configuration file (like
    /// `sshd -T`).
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
        Ok(configured.unwrap_or_else(|| DEFAULT_METRICS.parse().expect("a valid address")))
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
        Command::Listen(args) => listen(&args),
        Command::CheckConfig(args) => check_config(&args),
        Command::Keygen { path } => {
            // The error names the file.
            Secret::random()?.store(&path)?;
            println!("wrote a new secret to {}", path.display());
            Ok(())
        }
        Command::Stats(args) => stats(&args),
        Command::Status(args) => status(&args),
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

/// Every check `listen` makes before attaching, then the effective settings as a configuration
/// file on standard output (like `sshd -T`); warnings on standard error.
fn check_config(args: &CheckConfigArgs) -> anyhow::Result<()> {
    let settings = args.listen.settings()?;
    let mut resolved = settings.resolve()?;
    settle_handoff(&mut resolved)?;
    let server = &mut resolved.server;
    let checked = preflight::check(server)?;
    let served: Vec<SocketAddr> = server.listener.served.iter().copied().collect();
    preflight::check_handoff(server.handoff, &served)?;
    for warning in preflight::listener_warnings(server.handoff, &served) {
        tracing::warn!("{warning}");
    }
    if let (HandoffMode::Repair, Some(proxy)) = (server.handoff, resolved.proxy) {
        // Not an error: the service may start after synwall; the proxy counts each failure.
        if let Err(error) = TcpStream::connect_timeout(&proxy.upstream, proxy.connect_timeout) {
            tracing::warn!(
                "upstream {}: {error}; connections fail until it accepts",
                proxy.upstream
            );
        }
    }
    if args.quiet {
        return Ok(());
    }
    server.queues = checked.queues;
    let text = format!(
        "# synwall check-config: valid, and this host can serve it ({} has {} rx queue(s)).\n\
         # Every setting in effect, defaults included (deploy/synwall.toml documents each):\n{}",
        resolved.server.interface,
        checked.rx_queue_count,
        settings.effective(&resolved).to_toml()
    );
    match &args.write {
        Some(path) => {
            write_replacing(path, &text)
                .with_context(|| format!("writing the settings to {}", path.display()))?;
            println!("wrote the settings in effect to {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Replaces `path` with `text` atomically (a file beside it, then a rename), keeping the
/// owner, group and mode of the file replaced; a new file gets mode 0640.
fn write_replacing(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let previous = std::fs::metadata(path).ok();
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.new", std::process::id()));
    let new = path.with_file_name(name);
    let written = (|| {
        std::fs::write(&new, text)?;
        let mode = previous.as_ref().map_or(0o640, |meta| meta.mode() & 0o7777);
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode))?;
        if let Some(meta) = &previous {
            std::os::unix::fs::chown(&new, Some(meta.uid()), Some(meta.gid()))?;
        }
        std::fs::rename(&new, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&new);
    }
    written
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
    let instance = Arc::new(Instance {
        secret: match resolved.server.secret {
            Some(_) => SecretSource::File,
            None => SecretSource::Random,
        },
        reload: ReloadStatus::new(SystemTime::now()),
        serving: Serving {
            interface: interface.clone(),
            served: resolved.server.listener.served.iter().copied().collect(),
        },
    });
    let metrics = MetricsServer::spawn(resolved.metrics, {
        let (server, instance) = (Arc::clone(&server), Arc::clone(&instance));
        let counters = proxy
            .as_ref()
            .map(|proxy| proxy.counters())
            .unwrap_or_default();
        move || metrics::render(&server.stats(), &counters, &instance)
    })?;
    tracing::info!(address = %metrics.address(), "metrics endpoint");
    let proxying = proxy.as_ref().map(|proxy| {
        let (server, proxy, stop) = (Arc::clone(&server), Arc::clone(proxy), Arc::clone(&stop));
        thread::spawn(move || proxy.run(&server, &stop))
    });
    let serving = startup_line(&resolved, &settings, &server);
    tracing::info!("{serving}");
    notify_systemd(&[NotifyState::Ready, NotifyState::Status(&serving)]);

    let mut running = settings;
    while !stop.load(Ordering::Relaxed)
        && server.is_running()
        && !proxying.as_ref().is_some_and(|thread| thread.is_finished())
    {
        thread::sleep(Duration::from_millis(100));
        if reload.swap(false, Ordering::Relaxed) {
            let mut reloading = vec![NotifyState::Reloading];
            reloading.extend(NotifyState::monotonic_usec_now().ok());
            notify_systemd(&reloading);
            let outcome = reload_settings(args, &running, &server, proxy.as_deref());
            instance.reload.record(SystemTime::now(), outcome.is_ok());
            let status = match outcome {
                Ok(settings) => {
                    running = settings;
                    tracing::info!("reloaded");
                    serving.clone()
                }
                Err(error) => {
                    tracing::error!("reload: {error:#}; the running settings stay");
                    format!("{serving}; the last reload was refused: {error:#}")
                }
            };
            notify_systemd(&[NotifyState::Ready, NotifyState::Status(&status)]);
        }
    }
    stop.store(true, Ordering::Relaxed);
    tracing::info!("stopping");
    notify_systemd(&[NotifyState::Stopping]);
    let served = match proxying {
        Some(thread) => thread.join().expect("the proxy thread panicked"),
        None => Ok(()),
    };
    let failure = server.failure();
    drop(metrics);
    drop(server);
    served
        .and(failure.map_or(Ok(()), |failure| Err(failure.into())))
        .context("serving")
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

/// The start-up line (also systemd's STATUS): what is served, how, and with which secret.
fn startup_line(resolved: &Resolved, settings: &Settings, server: &Server) -> String {
    let queues = server.stats().queues;
    let zero_copy: Vec<u32> = queues
        .iter()
        .filter(|queue| queue.zero_copy)
        .map(|queue| queue.queue)
        .collect();
    let copy = match zero_copy.len() {
        0 => "copy mode".to_owned(),
        all if all == queues.len() => "zero-copy".to_owned(),
        _ => format!("zero-copy on queues {zero_copy:?}, copy mode on the others"),
    };
    let handoff = match (server.handoff_mode(), resolved.proxy) {
        (HandoffMode::Repair, Some(proxy)) => format!("repair, proxied to {}", proxy.upstream),
        (mode, _) => mode.name().to_owned(),
    };
    let secret = match &settings.secret_file {
        Some(path) => format!("from {}", path.display()),
        None => "random (this instance's own: no other shares its cookies)".to_owned(),
    };
    format!(
        "serving {} on {} rx queues {:?}: XDP {}, {copy}; handoff {handoff} ({}); secret {secret}",
        served_list(&resolved.server),
        resolved.server.interface,
        queues.iter().map(|queue| queue.queue).collect::<Vec<_>>(),
        // The setting's own spelling (native, generic).
        server
            .xdp_mode()
            .to_possible_value()
            .map_or_else(String::new, |mode| mode.get_name().to_owned()),
        server.handoff_reason(),
    )
}

/// The served addresses, for people: `198.18.0.1:80, [::]:443`.
fn served_list(server: &ServerConfig) -> String {
    server
        .listener
        .served
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tells systemd how synwall is doing (`Type=notify`); nothing without `$NOTIFY_SOCKET`.
fn notify_systemd(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd ($NOTIFY_SOCKET)");
    }
}

/// Re-reads the configuration (SIGHUP) and applies what can change while running; returns the
/// settings now in force. A configuration that does not check out changes nothing.
fn reload_settings(
    args: &ListenArgs,
    running: &Settings,
    server: &Server,
    proxy: Option<&Proxy>,
) -> anyhow::Result<Settings> {
    let new = args.settings()?;
    let reloadable = new.reloadable()?;
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
    Ok(running.with_reloadable_from(&new))
}

/// A line per interval (see [`view`]): every interval measured from the scrapes themselves,
/// the lines kept on the interval's cadence.
fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let address = args.endpoint.address()?;
    let fetch = || -> anyhow::Result<(Scrape, Instant)> {
        let scrape = Scrape::fetch(address)
            .with_context(|| format!("reading the metrics of the synwall at {address}"))?;
        Ok((scrape, Instant::now()))
    };
    let (mut previous, mut previous_at) = fetch()?;
    let mut table = Table::new(args.per_queue);
    let mut due = previous_at;
    for _ in 0..args.count.unwrap_or(u64::MAX) {
        due += args.interval;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let (now, now_at) = fetch()?;
        let lines = view::lines(
            &previous,
            &now,
            now_at - previous_at,
            SystemTime::now(),
            args.per_queue,
        );
        if args.json {
            for line in &lines {
                println!("{}", line.json());
            }
        } else {
            print!("{}", table.write(&lines));
        }
        (previous, previous_at) = (now, now_at);
    }
    Ok(())
}

/// The report (or its JSON); fails, naming every place looked at, when no synwall is found.
fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let status = Status::gather(args.endpoint.address()?, args.interval);
    if args.json {
        println!("{}", status.json());
    } else {
        print!("{}", status.text());
    }
    anyhow::ensure!(status.synwall_found(), "{}", status.not_found());
    Ok(())
}
