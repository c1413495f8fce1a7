//! `synwall listen`: the server, the proxy of repair mode and the metrics endpoint, started in
//! that order; then it waits for a signal (SIGHUP reloads, SIGINT and SIGTERM stop), for the
//! server to stop or for the proxy to end, and tells systemd each step.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::SystemTime;

use crate::settings::spelling::XdpMode;
use crate::settings::{Lookup, Resolved, Settings, SettingsError};
use anyhow::Context;
use clap::ValueEnum;
use crossbeam_channel::Receiver;
use sd_notify::NotifyState;
use synwall::handoff::HandoffMode;
use synwall::kernel;
use synwall::metrics::{self, Instance, MetricsServer, ReloadStatus, SecretSource, Serving};
use synwall::proxy::Proxy;
use synwall::server::{Server, ServerConfig, syns_answered_by};
use synwall::shutdown::{Never, Shutdown};
use synwall::sys::native;

use crate::ListenArgs;

/// What the main thread of `listen` is told by signals.
enum Event {
    /// SIGINT or SIGTERM.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals `listen` answers, as [`Event`]s on a channel that a signal-hook thread feeds;
/// the handle ends that thread.
fn signal_events() -> anyhow::Result<(Receiver<Event>, signal_hook::iterator::Handle)> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    let handle = signals.handle();
    let (events_tx, events) = crossbeam_channel::bounded(8);
    thread::Builder::new()
        .name("synwall-signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                let event = if signal == SIGHUP {
                    Event::Reload
                } else {
                    Event::Stop
                };
                if events_tx.send(event).is_err() {
                    return;
                }
            }
        })
        .context("starting the signal thread")?;
    Ok((events, handle))
}

/// A SIGHUP: applies the reloadable settings of the file and flags as they are now, tells
/// systemd and the metrics how it went, and returns the settings running afterwards.
fn reload(
    args: &ListenArgs,
    running: Settings,
    server: &Server,
    proxy: Option<&Proxy>,
    instance: &Instance,
    serving: &str,
) -> Settings {
    let mut reloading = vec![NotifyState::Reloading];
    reloading.extend(NotifyState::monotonic_usec_now().ok());
    notify_systemd(&reloading);
    let outcome = reload_settings(args, &running, server, proxy);
    instance.reload.record(SystemTime::now(), outcome.is_ok());
    let (running, status) = match outcome {
        Ok(settings) => {
            tracing::info!("reloaded");
            (settings, serving.to_owned())
        }
        Err(error) => {
            tracing::error!("reload: {error:#}; the running settings stay");
            let status = format!("{serving}; the last reload was refused: {error:#}");
            (running, status)
        }
    };
    notify_systemd(&[NotifyState::Ready, NotifyState::Status(&status)]);
    running
}

pub(crate) fn listen(args: &ListenArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    // Every setting is checked, the secret loaded and the handoff mode settled before
    // anything is attached.
    let mut resolved = settings.resolve(Lookup::Dns)?;
    settle_handoff(&mut resolved)?;
    let (events, signals) = signal_events()?;

    let interface = resolved.server.interface.clone();
    let server = Arc::new(
        Server::bind(resolved.server.clone())
            .with_context(|| format!("starting synwall on {interface}"))?,
    );
    let proxy = repair_proxy(&resolved, &server)?;
    let instance = Arc::new(instance_of(&resolved));
    let metrics = spawn_metrics(resolved.metrics, &server, proxy.as_ref(), &instance)?;
    let proxy_stop = Shutdown::default();
    let (proxying, proxy_ended) = spawn_proxy(&server, proxy.as_ref(), &proxy_stop);
    let serving = startup_line(&resolved, &settings, &server);
    tracing::info!("{serving}");
    notify_systemd(&[NotifyState::Ready, NotifyState::Status(&serving)]);

    let mut running = settings;
    loop {
        crossbeam_channel::select! {
            recv(events) -> event => match event {
                Ok(Event::Reload) => {
                    running = reload(args, running, &server, proxy.as_deref(), &instance, &serving);
                }
                Ok(Event::Stop) | Err(_) => break,
            },
            recv(server.stopped()) -> _ => break,
            recv(proxy_ended) -> _ => break,
        }
    }
    signals.close();
    proxy_stop.trigger();
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

/// The proxy of repair mode; `None` in native mode (where an upstream set is not used, and
/// said so).
fn repair_proxy(resolved: &Resolved, server: &Server) -> anyhow::Result<Option<Arc<Proxy>>> {
    if server.handoff_mode() == HandoffMode::Repair {
        let config = resolved.repair_proxy(server.handoff_reason())?;
        return Ok(Some(Arc::new(Proxy::new(config))));
    }
    if let Some(unused) = &resolved.proxy {
        tracing::warn!(
            upstream = %unused.upstream,
            "the upstream is not used: in native mode the service listening on the served \
             address takes the connections"
        );
    }
    Ok(None)
}

/// What the metrics say about this instance.
fn instance_of(resolved: &Resolved) -> Instance {
    Instance {
        secret: match resolved.server.secret {
            Some(_) => SecretSource::File,
            None => SecretSource::Random,
        },
        reload: ReloadStatus::new(SystemTime::now()),
        serving: Serving {
            interface: resolved.server.interface.clone(),
            served: resolved.server.listener.served.iter().copied().collect(),
        },
    }
}

/// The Prometheus endpoint on `address`.
fn spawn_metrics(
    address: SocketAddr,
    server: &Arc<Server>,
    proxy: Option<&Arc<Proxy>>,
    instance: &Arc<Instance>,
) -> anyhow::Result<MetricsServer> {
    let (server, instance) = (Arc::clone(server), Arc::clone(instance));
    let counters = proxy.map(|proxy| proxy.counters()).unwrap_or_default();
    let metrics = MetricsServer::spawn(address, move || {
        metrics::render(&server.stats(), &counters, &instance)
    })?;
    tracing::info!(address = %metrics.address(), "metrics endpoint");
    Ok(metrics)
}

/// The proxy's thread, and a channel that disconnects when it ends (never without a proxy).
fn spawn_proxy(
    server: &Arc<Server>,
    proxy: Option<&Arc<Proxy>>,
    stop: &Shutdown,
) -> (Option<JoinHandle<io::Result<()>>>, Receiver<Never>) {
    let Some(proxy) = proxy else {
        return (None, crossbeam_channel::never());
    };
    let (server, proxy, stop) = (Arc::clone(server), Arc::clone(proxy), stop.clone());
    let (ended_tx, ended) = crossbeam_channel::bounded::<Never>(0);
    let thread = thread::spawn(move || {
        let _ended = ended_tx;
        proxy.run(&server, &stop)
    });
    (Some(thread), ended)
}

/// Settles `handoff = auto`: native where the kernel can, unless an upstream is set and
/// nothing listens on a served address (a deployment that proxies, as before native handoff
/// existed); repair where the kernel cannot, which then needs the upstream. Logs which, and why.
pub(crate) fn settle_handoff(resolved: &mut Resolved) -> anyhow::Result<()> {
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
    let (mode, why) = match (native::check(), &resolved.proxy, unlistened) {
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
    let mode = server.handoff_mode();
    let proxied = match (mode, &resolved.proxy) {
        (HandoffMode::Repair, Some(proxy)) => format!(", proxied to {}", proxy.upstream),
        _ => String::new(),
    };
    let handoff = format!(
        "{}{proxied}, SYNs answered by {}",
        mode.name(),
        syns_answered_by(mode, server.answer_syns())
    );
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
        XdpMode::from(server.xdp_mode())
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
