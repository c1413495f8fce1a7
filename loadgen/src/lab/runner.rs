//! `synwall-lab`: one run per flood and target, each on a fresh [`Topology`], then the report.
//! The flood asked for runs against every target, then the fixed-rate SYN flood, if any, against
//! every target again; after the last run of a comparison the server CPU is looked at once more.
//!
//! A run: look how busy the server CPU is with other work (warned about, and reported);
//! build the topology; start the server side ([`ServerSide`], which places it on the
//! server CPU); start loadgen ([`Generator`]) in the client namespace; for every progress
//! record loadgen prints, sample the server side and print a table row; at loadgen's summary,
//! collect the server side's counters and tear down in order: generator, server side (XDP
//! detached), topology (namespaces, veth). The same order holds on every error path, since
//! the locals drop in reverse.
//!
//! The lab's own threads, and loadgen with them, run on the client CPU: [`command`] pins the
//! calling thread first. Signals (SIGINT, SIGTERM): the first one stops the flood cleanly
//! (loadgen prints its summary, the report is printed and marked interrupted, no further
//! target starts); a second one kills loadgen at once. Either way everything is torn down and
//! the command fails with [`LabError::Interrupted`].

use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use serde::Serialize;

use crate::lab::cli::{Flood, LabArgs, LabConfig, LabHandoff, Phase, Target};
use crate::lab::error::LabError;
use crate::lab::generator::{Generator, Next};
use crate::lab::output::{LabReport, Printer, Row, RunFacts, TargetReport};
use crate::lab::peacetime::{self, ConnectionsConfig, KeepaliveConfig, RateLadder};
use crate::lab::peacetime_report::{self, ConnectionCost, PeacetimeReport, PeacetimeRun};
use crate::lab::placement::{self, BUSY_LIMIT};
use crate::lab::report::Record;
use crate::lab::server_side::{PORT, ServerSide};
use crate::lab::service::REPLY_MARK;
use crate::lab::topology::Topology;
use synwall::sys::affinity;

/// Names of the lab's namespaces and links start with this.
pub const PREFIX: &str = "swl";
/// How long the server CPU is watched for other work before a run.
const BUSY_WINDOW: Duration = Duration::from_millis(300);
/// How long a run waits for the server CPU to be quiet (the last run's teardown, other work).
const QUIET_WAIT: Duration = Duration::from_secs(15);
/// How long the lab waits for loadgen's next line before it looks at signals again.
const POLL: Duration = Duration::from_millis(100);
/// Peacetime: the new-connection rate of the latency phase (per second).
const LATENCY_RATE: u32 = 100;
/// Peacetime: how long a client waits for connect(), and again for the reply.
const PEACETIME_TIMEOUT: Duration = Duration::from_secs(3);
/// Peacetime: connections open at once, at most, in the connection phases: far more than a
/// rate within the objective keeps open (30,000/s at 10 ms is 300).
const MAX_IN_FLIGHT: usize = 4096;
/// Peacetime: connections of the keep-alive phase (as `wrk -c20`).
const KEEPALIVE_CONNECTIONS: usize = 20;
/// Peacetime: client source addresses, so that no 4-tuple comes back while the server holds
/// it in TIME-WAIT (128 addresses × 28,000 ports at 30,000 connections/s: over two minutes).
const CLIENT_SOURCES: u8 = 128;

/// Runs `synwall-lab` as the command line asks; see the module documentation.
pub fn command(args: LabArgs) -> Result<(), LabError> {
    let command_line: Vec<String> = std::env::args().collect();
    let config = args.into_config()?;
    if std::fs::metadata("/proc/self").map_or(true, |status| status.uid() != 0) {
        return Err(LabError::NotRoot);
    }
    affinity::pin_current_thread(config.client_cpu).map_err(|source| LabError::Placement {
        cpu: config.client_cpu,
        source,
    })?;
    // Both sides of a peacetime run are threads of this process, with thousands of sockets.
    synwall::sys::raise_limit(libc::RLIMIT_NOFILE);
    let signals = Interrupts::install()?;
    let table: Box<dyn Write> = if config.json {
        Box::new(io::stderr())
    } else {
        Box::new(io::stdout())
    };
    let command_line = command_line.join(" ");
    if config.peacetime {
        let mut table = table;
        let mut runs = Vec::new();
        for &target in &config.targets {
            runs.push(run_peacetime(&config, target, &signals, &mut *table)?);
            if signals.count() > 0 {
                break;
            }
        }
        let cpus = (config.server_cpu, config.client_cpu);
        let report =
            PeacetimeReport::new(command_line, config.family, cpus, runs, signals.count() > 0);
        peacetime_report::print_end(&mut *table, &report).map_err(LabError::Output)?;
        return finish(&config, &report, report.interrupted);
    }
    let mut printer = Printer::new(table);
    let mut floods = Vec::new();
    for flood in config.floods() {
        let mut runs = Vec::new();
        for &target in &config.targets {
            runs.push(run_target(&config, target, flood, &signals, &mut printer)?);
            if signals.count() > 0 {
                break;
            }
        }
        floods.push(runs);
        if signals.count() > 0 {
            break;
        }
    }
    let interrupted = signals.count() > 0;
    // Only a comparison needs the server CPU quiet to the end.
    let busy_after = if interrupted || config.targets.len() < 2 {
        None
    } else {
        Some(server_cpu_busy(&config, "after the last run")?)
    };
    let mut floods = floods.into_iter();
    let asked = floods.next().unwrap_or_default();
    let report = LabReport::new(
        command_line,
        &config,
        asked,
        floods.next(),
        busy_after,
        interrupted,
    );
    printer.end(&report).map_err(LabError::Output)?;
    drop(printer);
    finish(&config, &report, interrupted)
}

/// Prints `report` as one JSON object with `--json`; fails when the run was interrupted.
fn finish(config: &LabConfig, report: &impl Serialize, interrupted: bool) -> Result<(), LabError> {
    if config.json {
        let mut out = io::stdout().lock();
        serde_json::to_writer(&mut out, report).map_err(|e| LabError::Output(e.into()))?;
        writeln!(out).map_err(LabError::Output)?;
    }
    if interrupted {
        return Err(LabError::Interrupted);
    }
    Ok(())
}

/// Waits, at most [`QUIET_WAIT`], until the server CPU is quiet (other work under
/// [`BUSY_LIMIT`] % of a [`BUSY_WINDOW`]); returns how busy it was last. A busy CPU is warned
/// about (`when`: "before this run", …), and the report then prints no ratio.
fn server_cpu_busy(config: &LabConfig, when: &str) -> Result<f64, LabError> {
    let deadline = Instant::now() + QUIET_WAIT;
    loop {
        let busy = placement::busy_percent(config.server_cpu, BUSY_WINDOW).map_err(|source| {
            LabError::Placement {
                cpu: config.server_cpu,
                source,
            }
        })?;
        if busy <= BUSY_LIMIT {
            return Ok(busy);
        }
        if Instant::now() >= deadline {
            eprintln!(
                "synwall-lab: warning: CPU {} stayed {busy:.0} % busy with other work for {} s \
                 {when}; the figures measure that work too, and no ratio is printed",
                config.server_cpu,
                QUIET_WAIT.as_secs()
            );
            return Ok(busy);
        }
    }
}

/// One target without a flood, on a fresh topology: latency at a low rate, the connection-rate
/// search, keep-alive; each phase a bounded run of the clients in the client namespace.
fn run_peacetime(
    config: &LabConfig,
    target: Target,
    signals: &Interrupts,
    out: &mut dyn Write,
) -> Result<PeacetimeRun, LabError> {
    let busy_before = server_cpu_busy(config, "before this run")?;
    let topology = Topology::create(PREFIX).map_err(LabError::Topology)?;
    let sources = topology
        .add_client_sources(config.family, CLIENT_SOURCES)
        .map_err(LabError::Topology)?;
    let mut server = ServerSide::start(&topology, config, target)?;
    peacetime_report::print_start(out, target, config.family, &server.placement)
        .map_err(LabError::Output)?;
    let connections = ConnectionsConfig {
        target: (config.family.server(), PORT).into(),
        sources,
        rate: LATENCY_RATE,
        duration: config.phase,
        timeout: PEACETIME_TIMEOUT,
        max_in_flight: MAX_IN_FLIGHT,
        request: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
        expect: REPLY_MARK.as_bytes().to_vec(),
    };
    let keepalive = KeepaliveConfig {
        target: connections.target,
        connections: KEEPALIVE_CONNECTIONS,
        duration: config.phase,
        timeout: PEACETIME_TIMEOUT,
        request: b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n".to_vec(),
        expect: REPLY_MARK.as_bytes().to_vec(),
    };
    let latency = in_client(&topology, signals, {
        let connections = connections.clone();
        move || peacetime::connections(&connections)
    })?;
    let cost = connection_cost(
        &topology,
        &server,
        signals,
        ConnectionsConfig {
            rate: config.cost_rate,
            ..connections.clone()
        },
    )?;
    let defaults = RateLadder::default();
    let ladder = RateLadder {
        start: defaults.start.min(config.search_max_rate),
        step: config.search_step,
        max_rate: config.search_max_rate,
        ..defaults
    };
    let search = in_client(&topology, signals, move || {
        peacetime::max_connection_rate(&connections, &ladder)
    })?;
    let keepalive = in_client(&topology, signals, move || peacetime::keepalive(&keepalive))?;
    server.check()?;
    let run = PeacetimeRun {
        target,
        handoff: (target == Target::Synwall).then(|| config.handoff.mode().name()),
        answer_syns: (target == Target::Synwall).then(|| config.answer_syns.answerer().name()),
        upstream: (target == Target::Synwall && config.handoff == LabHandoff::Repair)
            .then(|| config.upstream.name()),
        placement: server.placement.clone(),
        server_cpu_busy_before_pct: busy_before,
        latency,
        cost,
        search,
        keepalive,
        counters: server.counters()?,
    };
    // Teardown in order: the server side (XDP program detached), then the namespaces.
    drop(server);
    drop(topology);
    peacetime_report::print_run(out, &run).map_err(LabError::Output)?;
    Ok(run)
}

/// Runs `connections` (at a rate below saturation) and measures the server CPU around them.
fn connection_cost(
    topology: &Topology,
    server: &ServerSide,
    signals: &Interrupts,
    connections: ConnectionsConfig,
) -> Result<ConnectionCost, LabError> {
    let before = server.cpu_times()?;
    let started = Instant::now();
    let report = in_client(topology, signals, move || {
        peacetime::connections(&connections)
    })?;
    let elapsed = started.elapsed();
    let busy = server.cpu_times()?.busy_percent_since(&before);
    Ok(ConnectionCost::new(report, busy, elapsed))
}

/// Runs one bounded phase of the clients on a thread in the client namespace (which inherits
/// the client CPU). A signal during the phase lets it finish, then stops the run.
fn in_client<T: Send + 'static>(
    topology: &Topology,
    signals: &Interrupts,
    phase: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, LabError> {
    let outcome = topology
        .spawn_in(&topology.client_ns, phase)
        .join()
        .map_err(|_| LabError::Clients(io::Error::other("a client thread panicked")))?;
    let result = outcome
        .and_then(|result| result)
        .map_err(LabError::Clients)?;
    if signals.count() > 0 {
        return Err(LabError::Interrupted);
    }
    Ok(result)
}

/// One flood against one target, on a fresh topology.
fn run_target(
    config: &LabConfig,
    target: Target,
    (phase, flood): (Phase, Flood),
    signals: &Interrupts,
    printer: &mut Printer<impl Write>,
) -> Result<TargetReport, LabError> {
    let busy_before = server_cpu_busy(config, "before this run")?;
    let topology = Topology::create(PREFIX).map_err(LabError::Topology)?;
    if config.queues > 1 {
        topology
            .set_queues(config.queues)
            .map_err(LabError::Topology)?;
    }
    let mut server = ServerSide::start(&topology, config, target)?;
    printer
        .start(target, &server.placement, config, (phase, &flood))
        .map_err(LabError::Output)?;
    let mut previous = server.sample()?;
    let mut generator = Generator::spawn(&topology, config, &flood)?;
    let mut rows = Vec::new();
    let summary = loop {
        server.check()?;
        match signals.count() {
            0 => {}
            1 => generator.interrupt(),
            _ => {
                generator.kill();
                return Err(LabError::Interrupted);
            }
        }
        match generator.next(POLL)? {
            Next::Record(record) => match *record {
                Record::Progress(progress) => {
                    let now = server.sample()?;
                    let row = Row::new(&progress, &previous, &now);
                    printer.row(&row).map_err(LabError::Output)?;
                    rows.push(row);
                    previous = now;
                }
                Record::Summary(summary) => break summary,
            },
            Next::Nothing => {}
            Next::Ended => {
                let ended = generator.stderr();
                generator.wait()?;
                return Err(LabError::Generator(format!(
                    "ended without a summary; {ended}"
                )));
            }
        }
    };
    generator.wait()?;
    let facts = RunFacts {
        target,
        xdp_mode: server.xdp_mode_name(),
        placement: server.placement.clone(),
        namespaces: [topology.server_ns.clone(), topology.client_ns.clone()],
        server_cpu_busy_before_pct: busy_before,
        last: server.sample()?,
        counters: server.counters()?,
    };
    // Teardown in order: the server side (XDP program detached), then the namespaces.
    drop(server);
    drop(topology);
    let report = TargetReport::new(facts, rows, summary);
    printer.summary(&report).map_err(LabError::Output)?;
    Ok(report)
}

/// Counts SIGINT and SIGTERM from a signal-hook thread; see the module documentation.
struct Interrupts {
    count: Arc<AtomicUsize>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Interrupts {
    fn install() -> Result<Interrupts, LabError> {
        let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(LabError::Signals)?;
        let count = Arc::new(AtomicUsize::new(0));
        let handle = signals.handle();
        let counted = Arc::clone(&count);
        let thread = thread::spawn(move || {
            for _ in signals.forever() {
                if counted.fetch_add(1, Ordering::Relaxed) == 0 {
                    eprintln!("synwall-lab: stopping the flood (again to kill it at once)");
                }
            }
        });
        Ok(Interrupts {
            count,
            handle,
            thread: Some(thread),
        })
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
