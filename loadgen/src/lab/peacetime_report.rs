//! What `synwall-lab --peacetime` reports: per target ([`PeacetimeRun`]) the request latency
//! at a low connection rate, the server CPU's busy time per new connection at a fixed rate
//! below saturation ([`ConnectionCost`]), the most new connections per second within the
//! service-level objective, and keep-alive requests per second; then both targets side by side
//! ([`PeacetimeReport`], also the `--json` object).
//!
//! Plain data and formatting: the measurements come from [`crate::lab::peacetime`].

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use serde::Serialize;

use crate::lab::cli::Target;
use crate::lab::output::{busy_note, counters_text, micros_unit, millis_unit, times};
use crate::lab::peacetime::{ConnectionsReport, KeepaliveReport, RateSearch, SLO_P99, SLO_SUCCESS};
use crate::lab::placement::BUSY_LIMIT;
use crate::lab::report::Percentiles;
use crate::lab::topology::Family;

/// One target's peacetime measurements.
#[derive(Debug, Clone, Serialize)]
pub struct PeacetimeRun {
    pub target: Target,
    /// synwall's handoff mode; null for the kernel.
    pub handoff: Option<&'static str>,
    /// Who answered new connections' SYNs (synwall's `answer-syns`); null for the kernel.
    pub answer_syns: Option<&'static str>,
    /// Where synwall's proxy joins connections to the service (repair mode): `tcp` or `unix`;
    /// null otherwise.
    pub upstream: Option<&'static str>,
    /// Where each part ran.
    pub placement: String,
    /// How busy the server CPU was with other work just before the run (percent).
    pub server_cpu_busy_before_pct: f64,
    /// New connections at a low rate, each sending its request right after connect().
    pub latency: ConnectionsReport,
    /// What new connections cost the server CPU at `--cost-rate`.
    pub cost: ConnectionCost,
    /// The most new connections per second within the objective, and every step tried.
    pub search: RateSearch,
    pub keepalive: KeepaliveReport,
    /// The server side's own counters after the run.
    pub counters: BTreeMap<String, u64>,
}

impl PeacetimeRun {
    /// The best rate that met the objective; 0 when none did.
    pub fn connection_rate(&self) -> u32 {
        self.search.best.as_ref().map_or(0, |best| best.rate)
    }
}

/// The server CPU's busy time per new connection, over a phase of new connections at a fixed
/// rate that every target sustains: the whole server side (receive work, synwall or the
/// kernel's listener, the service), as /proc/stat counts it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionCost {
    /// The phase's connections, each sending its request right after connect().
    pub connections: ConnectionsReport,
    /// How busy the server CPU was over the phase (percent).
    pub server_cpu_busy_pct: f64,
    /// The server CPU's busy time over the connections that got their whole reply, in
    /// microseconds; None when none did.
    pub server_cpu_us_per_connection: Option<f64>,
}

impl ConnectionCost {
    /// `connections` ran while the server CPU was `busy_pct` busy over `elapsed`.
    pub fn new(connections: ConnectionsReport, busy_pct: f64, elapsed: Duration) -> Self {
        let busy_us = busy_pct / 100.0 * elapsed.as_secs_f64() * 1e6;
        ConnectionCost {
            server_cpu_us_per_connection: (connections.ok > 0)
                .then(|| busy_us / connections.ok as f64),
            server_cpu_busy_pct: busy_pct,
            connections,
        }
    }
}

/// synwall against the kernel.
#[derive(Debug, Clone, Serialize)]
pub struct PeacetimeComparison {
    /// synwall's most new connections/s within the objective over the kernel's.
    pub connection_rate_ratio: Option<f64>,
    /// synwall's keep-alive requests/s over the kernel's.
    pub keepalive_ratio: Option<f64>,
    /// synwall's server CPU per new connection over the kernel's, at `--cost-rate`.
    pub cost_ratio: Option<f64>,
    /// synwall's request-latency p99 at the low rate minus the kernel's, in milliseconds.
    pub latency_p99_difference_ms: Option<f64>,
}

/// The whole `synwall-lab --peacetime` run (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct PeacetimeReport {
    /// The command line as given.
    pub command: String,
    /// The objective of the connection-rate search.
    pub objective: String,
    /// Whether the clients connected over IPv6 (to 2001:2::1) rather than IPv4.
    pub ipv6: bool,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub runs: Vec<PeacetimeRun>,
    /// None when only one target ran, or when the server CPU was busy with other work before
    /// a run (see `server_cpu_busy_before_pct`).
    pub comparison: Option<PeacetimeComparison>,
    /// A signal stopped the run early.
    pub interrupted: bool,
}

impl PeacetimeReport {
    pub fn new(
        command: String,
        family: Family,
        (server_cpu, client_cpu): (usize, usize),
        runs: Vec<PeacetimeRun>,
        interrupted: bool,
    ) -> PeacetimeReport {
        let find = |target| runs.iter().find(|run| run.target == target);
        // A ratio with a busy run in it measures the other work too: none is given.
        let quiet = runs
            .iter()
            .all(|run| run.server_cpu_busy_before_pct <= BUSY_LIMIT);
        let comparison = find(Target::Synwall)
            .zip(find(Target::Kernel))
            .filter(|_| quiet)
            .map(|(synwall, kernel)| PeacetimeComparison {
                connection_rate_ratio: ratio(
                    f64::from(synwall.connection_rate()),
                    f64::from(kernel.connection_rate()),
                ),
                keepalive_ratio: ratio(
                    synwall.keepalive.requests_per_s,
                    kernel.keepalive.requests_per_s,
                ),
                cost_ratio: synwall
                    .cost
                    .server_cpu_us_per_connection
                    .zip(kernel.cost.server_cpu_us_per_connection)
                    .and_then(|(synwall, kernel)| ratio(synwall, kernel)),
                latency_p99_difference_ms: exchange_p99(&synwall.latency)
                    .zip(exchange_p99(&kernel.latency))
                    .map(|(synwall, kernel)| (synwall as f64 - kernel as f64) / 1000.0),
            });
        PeacetimeReport {
            command,
            objective: objective(),
            ipv6: family == Family::V6,
            server_cpu,
            client_cpu,
            runs,
            comparison,
            interrupted,
        }
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

fn exchange_p99(report: &ConnectionsReport) -> Option<u64> {
    report.exchange_us.map(|p| p.p99)
}

/// The connection-rate objective, in words.
fn objective() -> String {
    format!(
        "at least {:.1} % of new connections get their reply, with a p99 under {} ms from \
         connect() to the whole reply",
        SLO_SUCCESS * 100.0,
        SLO_P99.as_millis()
    )
}

/// Prints what is about to run.
pub fn print_start(
    out: &mut dyn Write,
    target: Target,
    family: Family,
    placement: &str,
) -> io::Result<()> {
    writeln!(
        out,
        "\n== {} (no flood, over {}): {placement}",
        target.name(),
        family.name()
    )?;
    out.flush()
}

/// synwall's handoff mode, and who answered SYNs in native mode; None for the kernel.
fn synwall_setup(run: &PeacetimeRun) -> Option<String> {
    let handoff = run.handoff?;
    let mut setup = format!("{handoff} handoff");
    if let Some(answer_syns) = run.answer_syns {
        setup += &format!(", answer-syns {answer_syns}");
    }
    if let Some(upstream) = run.upstream {
        setup += &format!(", {upstream} upstream");
    }
    Some(setup)
}

/// Prints one target's figures.
pub fn print_run(out: &mut dyn Write, run: &PeacetimeRun) -> io::Result<()> {
    let name = match synwall_setup(run) {
        Some(setup) => format!("{} ({setup})", run.target.name()),
        None => run.target.name().to_owned(),
    };
    writeln!(
        out,
        "-- {name}: at {} new connections/s: {}",
        run.latency.rate,
        connections_text(&run.latency)
    )?;
    writeln!(
        out,
        "   at {} new connections/s: server CPU {:.0} % busy, {} per connection; {}",
        run.cost.connections.rate,
        run.cost.server_cpu_busy_pct,
        micros_unit(run.cost.server_cpu_us_per_connection),
        connections_text(&run.cost.connections)
    )?;
    let steps: Vec<String> = run
        .search
        .steps
        .iter()
        .map(|step| {
            let verdict = if step.meets(SLO_SUCCESS, SLO_P99) {
                "met"
            } else {
                "missed"
            };
            format!(
                "{}/s {verdict} ({:.2} %, p99 {})",
                step.rate,
                success_pct(step),
                millis_unit(step.exchange_us.map(|p| p.p99))
            )
        })
        .collect();
    writeln!(
        out,
        "   most new connections/s within the objective: {}; steps: {}",
        run.connection_rate(),
        steps.join(", ")
    )?;
    let keepalive = &run.keepalive;
    writeln!(
        out,
        "   keep-alive over {} connections: {:.0} requests/s, latency {}; failed: {}",
        keepalive.connections,
        keepalive.requests_per_s,
        percentiles_text(keepalive.latency_us),
        keepalive.failures
    )?;
    writeln!(out, "   counters: {}", counters_text(&run.counters))?;
    out.flush()
}

/// Prints the objective and, when both targets ran, the side-by-side table.
pub fn print_end(out: &mut dyn Write, report: &PeacetimeReport) -> io::Result<()> {
    writeln!(
        out,
        "\nobjective of the connection-rate search: {}.",
        report.objective
    )?;
    let [synwall, kernel] = &report.runs[..] else {
        return out.flush();
    };
    let Some(comparison) = &report.comparison else {
        let busy = synwall
            .server_cpu_busy_before_pct
            .max(kernel.server_cpu_busy_before_pct);
        writeln!(out, "{}", busy_note(busy))?;
        return out.flush();
    };
    let rows = [
        (
            "new connections/s within the objective".to_owned(),
            synwall.connection_rate().to_string(),
            kernel.connection_rate().to_string(),
            times(comparison.connection_rate_ratio),
        ),
        (
            format!(
                "server CPU per new connection at {} connections/s",
                synwall.cost.connections.rate
            ),
            micros_unit(synwall.cost.server_cpu_us_per_connection),
            micros_unit(kernel.cost.server_cpu_us_per_connection),
            times(comparison.cost_ratio),
        ),
        (
            format!(
                "request latency p99 at {} connections/s",
                synwall.latency.rate
            ),
            millis_unit(exchange_p99(&synwall.latency)),
            millis_unit(exchange_p99(&kernel.latency)),
            comparison
                .latency_p99_difference_ms
                .map_or("-".to_owned(), |ms| format!("{ms:+.2} ms")),
        ),
        (
            format!(
                "keep-alive requests/s ({} connections)",
                synwall.keepalive.connections
            ),
            format!("{:.0}", synwall.keepalive.requests_per_s),
            format!("{:.0}", kernel.keepalive.requests_per_s),
            times(comparison.keepalive_ratio),
        ),
    ];
    let synwall_name =
        synwall_setup(synwall).map_or("synwall".to_owned(), |setup| format!("synwall ({setup})"));
    let mut table =
        format!("\n| | {synwall_name} | kernel | synwall / kernel |\n|---|---:|---:|---:|\n");
    for (name, left, right, ratio) in rows {
        table.push_str(&format!("| {name} | {left} | {right} | {ratio} |\n"));
    }
    write!(out, "{table}")?;
    writeln!(out, "\n{}", report.command)?;
    out.flush()
}

fn success_pct(report: &ConnectionsReport) -> f64 {
    if report.attempts == 0 {
        return 0.0;
    }
    100.0 * report.ok as f64 / report.attempts as f64
}

fn connections_text(report: &ConnectionsReport) -> String {
    format!(
        "{}/{} ok ({:.2} %); connect {}; request to whole reply {}; failed: {}",
        report.ok,
        report.attempts,
        success_pct(report),
        percentiles_text(report.connect_us),
        percentiles_text(report.exchange_us),
        report.failures
    )
}

fn percentiles_text(percentiles: Option<Percentiles>) -> String {
    percentiles.map_or("none completed".to_owned(), |p| {
        format!(
            "p50 {} p99 {} max {}",
            millis_unit(Some(p.p50)),
            millis_unit(Some(p.p99)),
            millis_unit(Some(p.max))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::report::FailureCounts;

    fn connections(ok: u64) -> ConnectionsReport {
        ConnectionsReport {
            rate: 2_000,
            attempts: ok,
            ok,
            failures: FailureCounts::default(),
            connect_us: None,
            exchange_us: None,
            max_start_lag_us: 0,
            elapsed_s: 5.0,
        }
    }

    #[test]
    fn test_cost_is_busy_time_over_connections_served() {
        // Half of 5 s busy for 10,000 connections: 250 µs each.
        let cost = ConnectionCost::new(connections(10_000), 50.0, Duration::from_secs(5));
        assert_eq!(cost.server_cpu_us_per_connection, Some(250.0));
        assert_eq!(cost.server_cpu_busy_pct, 50.0);
        // No connection served, no cost to give.
        let none = ConnectionCost::new(connections(0), 50.0, Duration::from_secs(5));
        assert_eq!(none.server_cpu_us_per_connection, None);
    }
}
