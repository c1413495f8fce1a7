//! What `synwall-lab` prints: a table row per second of flood ([`Row`]), a summary per target
//! ([`TargetReport`]), the side-by-side comparison of each flood ([`FloodReport`]), and the
//! whole run as one JSON object ([`LabReport`], `--json`).
//!
//! How the columns are measured is said once, in [`SYN_ACK_MEASURE`], [`SERVER_CPU_MEASURE`]
//! and [`LEGEND`], and printed with the table: the same way for every target. Rates in a
//! summary are "steady" means, over the seconds of flood without the first and the last
//! (start-up and the partial last second), weighted by the length of each second as the lab
//! measured it. A comparison gives synwall's figures over each other target's, on the same
//! flood; none is given when the server CPU was busy with other work before a run or after the
//! last one.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use crate::lab::cli::{Flood, FloodMode, LabConfig, Phase, Rate, Target};
use crate::lab::comparison::{FloodReport, quiet, side_by_side};
use crate::lab::placement::BUSY_LIMIT;
use crate::lab::report::{LegitReport, Progress, Summary};
use crate::lab::server_side::{PORT, Sample};
use crate::lab::topology::Family;

/// How "SYN-ACK/s" is measured, for every target.
pub const SYN_ACK_MEASURE: &str = "frames per second the server side sent on its veth \
    (its tx_packets, which is the client veth's rx_packets): the SYN-ACKs, plus RSTs to forged \
    ACKs and the legit connections' few segments";

/// How the server CPU per SYN-ACK is measured, for every target.
pub const SERVER_CPU_MEASURE: &str = "the server CPU's busy time (/proc/stat: all but idle and \
    iowait; the whole server side: receive work, listener, XDP programs, service) over the \
    steady seconds, divided by the SYN-ACKs of those seconds; at a rate below every target's \
    saturation it does not depend on how the client side keeps up";

/// The column legend of the live table.
const LEGEND: &str = "offered/s: packets loadgen sent per second; SYN-ACK/s: see above; \
    cookies/s: SYN-ACKs with cookies (synwall: CookiesSent; kernel: TcpExt SyncookiesSent; \
    XDP SYN proxy: its program's SynAnswered); SYN-queue: entries now (synwall: SynQueueDepth; \
    kernel and XDP SYN proxy: SYN_RECV sockets); CPU %: how busy the server CPU was; \
    accepted/s: connections the built-in service accepted; legit: loadgen's clients, ok/ended \
    this second; p99: their connect() latency";

/// One second of flood as the table shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Seconds since the flood started (loadgen's clock).
    pub elapsed_s: f64,
    /// Length of this second by the lab's clock, between two samples of the server side.
    pub interval_s: f64,
    pub offered_pps: u64,
    pub offered_syn_pps: u64,
    /// Frames the server's veth received per second.
    pub received_pps: u64,
    pub syn_ack_pps: u64,
    pub cookies_pps: u64,
    pub syn_queue: u64,
    /// How busy the server CPU was in this second (percent).
    pub server_cpu_busy_pct: f64,
    pub accepted_pps: u64,
    pub legit_ok: u64,
    pub legit_ended: u64,
    pub connect_p99_us: Option<u64>,
}

impl Row {
    /// The row of `progress`, with the server side's figures between two samples.
    pub fn new(progress: &Progress, before: &Sample, after: &Sample) -> Row {
        let interval = after.at.saturating_duration_since(before.at).as_secs_f64();
        let rate = |now: u64, then: u64| per_second(now.saturating_sub(then), interval);
        let syn_per_second = per_second(progress.sent.syn, progress.interval_s);
        let legit = progress.legit.as_ref();
        Row {
            elapsed_s: progress.elapsed_s,
            interval_s: interval,
            offered_pps: progress.pps,
            offered_syn_pps: syn_per_second,
            received_pps: rate(after.frames.rx, before.frames.rx),
            syn_ack_pps: rate(after.frames.tx, before.frames.tx),
            cookies_pps: rate(after.cookies_sent, before.cookies_sent),
            syn_queue: after.syn_queue,
            server_cpu_busy_pct: after.server_cpu.busy_percent_since(&before.server_cpu),
            accepted_pps: rate(after.accepted, before.accepted),
            legit_ok: legit.map_or(0, |legit| legit.ok),
            legit_ended: legit.map_or(0, |legit| legit.attempts),
            connect_p99_us: legit.and_then(|legit| legit.connect_us).map(|p| p.p99),
        }
    }
}

fn per_second(count: u64, seconds: f64) -> u64 {
    if seconds > 0.0 {
        (count as f64 / seconds).round() as u64
    } else {
        0
    }
}

/// One target's run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    pub target: Target,
    /// The XDP mode of the target's program (synwall's, the XDP SYN proxy's); null for the
    /// kernel.
    pub xdp_mode: Option<&'static str>,
    /// Where each part ran.
    pub placement: String,
    /// The lab's namespaces (deleted when the run ended).
    pub namespaces: [String; 2],
    /// How busy the server CPU was with other work just before the run (percent).
    pub server_cpu_busy_before_pct: f64,
    /// loadgen's average over the whole flood.
    pub offered_pps: u64,
    pub offered_syn_pps: u64,
    /// Steady means (see the module documentation).
    pub received_pps: u64,
    pub syn_ack_pps: u64,
    pub cookies_pps: u64,
    /// The highest second.
    pub syn_ack_pps_max: u64,
    pub syn_queue_max: u64,
    /// SYN-ACK/s over offered SYN/s (steady means), in percent: about 100 while the target
    /// keeps up; null without SYNs.
    pub answered_pct: Option<f64>,
    /// The server CPU over the steady seconds ([`SERVER_CPU_MEASURE`]): how busy it was
    /// (percent), its busy time per SYN-ACK (µs) and SYN-ACKs per second of it busy.
    pub server_cpu_busy_pct: f64,
    pub server_cpu_us_per_syn_ack: Option<f64>,
    pub syn_acks_per_server_cpu_s: Option<u64>,
    /// Connections the built-in service accepted, and those from spoofed sources.
    pub accepted: u64,
    pub forged_accepted: u64,
    /// Connections the service closed unanswered because it served too many at once.
    pub service_turned_away: u64,
    pub legit: Option<LegitReport>,
    pub legit_success_pct: Option<f64>,
    pub connect_p50_us: Option<u64>,
    pub connect_p99_us: Option<u64>,
    /// The server side's own counters (synwall's listener and handoffs, or the kernel's
    /// TcpExt counters, with the XDP SYN proxy's and nftables synproxy's for that target).
    pub counters: BTreeMap<String, u64>,
    pub seconds: Vec<Row>,
    /// loadgen's summary record, as it wrote it.
    pub loadgen: Summary,
}

/// The parts of a [`TargetReport`] that are not derived from the rows and the summary.
pub struct RunFacts {
    pub target: Target,
    pub xdp_mode: Option<&'static str>,
    pub placement: String,
    pub namespaces: [String; 2],
    pub server_cpu_busy_before_pct: f64,
    pub last: Sample,
    pub counters: BTreeMap<String, u64>,
}

impl TargetReport {
    pub fn new(facts: RunFacts, rows: Vec<Row>, loadgen: Summary) -> TargetReport {
        let steady = steady(&rows);
        let legit = loadgen.legit.clone();
        let syn_ack_pps = mean(steady, |row| row.syn_ack_pps as f64);
        let offered_syn_pps = mean(steady, |row| row.offered_syn_pps as f64);
        let busy = mean(steady, |row| row.server_cpu_busy_pct) / 100.0;
        let positive = |value: f64| (value > 0.0).then_some(value);
        let connect = legit.as_ref().and_then(|legit| legit.connect_us);
        TargetReport {
            target: facts.target,
            xdp_mode: facts.xdp_mode,
            placement: facts.placement,
            namespaces: facts.namespaces,
            server_cpu_busy_before_pct: facts.server_cpu_busy_before_pct,
            offered_pps: loadgen.pps,
            offered_syn_pps: per_second(loadgen.sent.syn, loadgen.elapsed_s),
            received_pps: mean(steady, |row| row.received_pps as f64).round() as u64,
            syn_ack_pps: syn_ack_pps.round() as u64,
            cookies_pps: mean(steady, |row| row.cookies_pps as f64).round() as u64,
            syn_ack_pps_max: rows.iter().map(|row| row.syn_ack_pps).max().unwrap_or(0),
            syn_queue_max: rows.iter().map(|row| row.syn_queue).max().unwrap_or(0),
            answered_pct: positive(offered_syn_pps).map(|offered| 100.0 * syn_ack_pps / offered),
            server_cpu_busy_pct: 100.0 * busy,
            server_cpu_us_per_syn_ack: positive(busy)
                .zip(positive(syn_ack_pps))
                .map(|(busy, rate)| busy * 1e6 / rate),
            syn_acks_per_server_cpu_s: positive(busy)
                .zip(positive(syn_ack_pps))
                .map(|(busy, rate)| (rate / busy).round() as u64),
            accepted: facts.last.accepted,
            forged_accepted: facts.last.forged,
            service_turned_away: facts.last.turned_away,
            legit_success_pct: legit.as_ref().and_then(success_pct),
            connect_p50_us: connect.map(|p| p.p50),
            connect_p99_us: connect.map(|p| p.p99),
            legit,
            counters: facts.counters,
            seconds: rows,
            loadgen,
        }
    }
}

/// The rows without the first and the last, when there are more than two.
fn steady(rows: &[Row]) -> &[Row] {
    if rows.len() > 2 {
        &rows[1..rows.len() - 1]
    } else {
        rows
    }
}

/// The mean of `value` over `rows`, weighted by their lengths; 0 over no time.
fn mean(rows: &[Row], value: impl Fn(&Row) -> f64) -> f64 {
    let seconds: f64 = rows.iter().map(|row| row.interval_s).sum();
    let total: f64 = rows.iter().map(|row| value(row) * row.interval_s).sum();
    if seconds > 0.0 { total / seconds } else { 0.0 }
}

fn success_pct(legit: &LegitReport) -> Option<f64> {
    (legit.attempts > 0).then(|| 100.0 * legit.ok as f64 / legit.attempts as f64)
}

/// The whole `synwall-lab` run (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    /// The command line as given.
    pub command: String,
    /// Whether the run was over IPv6 (2001:2::/48) rather than IPv4.
    pub ipv6: bool,
    /// The flood asked for (--mode, --rate): `mode`, `rate_pps`, `runs` and `comparison`.
    #[serde(flatten)]
    pub flood: FloodReport,
    /// The SYN flood at --fixed-rate, for the server CPU per SYN-ACK; null without one.
    pub fixed_rate: Option<FloodReport>,
    pub duration_s: f64,
    pub legit_rate: u32,
    pub legit_timeout_s: f64,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub syn_ack_measure: &'static str,
    pub server_cpu_measure: &'static str,
    /// How busy the server CPU was with other work after the last run (percent); null when the
    /// run was interrupted or had one target only.
    pub server_cpu_busy_after_pct: Option<f64>,
    /// A signal stopped the run early.
    pub interrupted: bool,
}

impl LabReport {
    /// The report of the runs of the flood asked for, `asked`, and of the fixed-rate flood.
    pub fn new(
        command: String,
        config: &LabConfig,
        asked: Vec<TargetReport>,
        fixed_rate: Option<Vec<TargetReport>>,
        busy_after: Option<f64>,
        interrupted: bool,
    ) -> LabReport {
        let quiet = quiet(asked.iter().chain(fixed_rate.iter().flatten()), busy_after);
        let fixed_rate = config
            .fixed_rate
            .as_ref()
            .zip(fixed_rate)
            .map(|(flood, runs)| FloodReport::new(flood, runs, quiet));
        LabReport {
            command,
            ipv6: config.family == Family::V6,
            flood: FloodReport::new(&config.flood, asked, quiet),
            fixed_rate,
            duration_s: config.duration.as_secs_f64(),
            legit_rate: config.legit_rate,
            legit_timeout_s: config.legit_timeout.as_secs_f64(),
            server_cpu: config.server_cpu,
            client_cpu: config.client_cpu,
            syn_ack_measure: SYN_ACK_MEASURE,
            server_cpu_measure: SERVER_CPU_MEASURE,
            server_cpu_busy_after_pct: busy_after,
            interrupted,
        }
    }

    /// The floods of the run, in order.
    fn floods(&self) -> impl Iterator<Item = &FloodReport> {
        std::iter::once(&self.flood).chain(&self.fixed_rate)
    }

    /// The most the server CPU was busy with other work, before a run or after the last.
    fn busiest(&self) -> f64 {
        self.floods()
            .flat_map(|flood| &flood.runs)
            .map(|run| run.server_cpu_busy_before_pct)
            .chain(self.server_cpu_busy_after_pct)
            .fold(0.0, f64::max)
    }
}

/// "syn", "near-miss", …
pub(super) fn mode_name(mode: FloodMode) -> &'static str {
    match mode {
        FloodMode::Syn => "syn",
        FloodMode::Ack => "ack",
        FloodMode::NearMiss => "near-miss",
        FloodMode::Mix => "mix",
    }
}

/// Prints the human-readable parts to `out` (stdout, or stderr under `--json`).
pub struct Printer<W: Write> {
    out: W,
}

impl<W: Write> Printer<W> {
    pub fn new(out: W) -> Printer<W> {
        Printer { out }
    }

    /// What is about to run, and the table header.
    pub fn start(
        &mut self,
        target: Target,
        placement: &str,
        config: &LabConfig,
        (phase, flood): (Phase, &Flood),
    ) -> io::Result<()> {
        let rate = match flood.rate {
            Rate::Max => "max rate".to_owned(),
            Rate::PerSecond(rate) => format!("{rate} pkt/s"),
        };
        let kind = match flood.mode {
            FloodMode::Mix => format!("mix {}", config.mix),
            mode => mode_name(mode).to_owned(),
        };
        let why = match phase {
            Phase::Asked => "",
            Phase::FixedRate => " (the fixed rate, for the server CPU per SYN-ACK)",
        };
        writeln!(self.out, "\n== {}: {placement}", target.name())?;
        writeln!(
            self.out,
            "   over {} to {}: {kind} flood at {rate}{why} from {} for {:.1} s (at most {} \
             packets); {} legit connections/s (timeout {:.1} s)",
            config.family.name(),
            SocketAddr::new(config.family.server(), PORT),
            config.family.spoofed_sources(),
            config.duration.as_secs_f64(),
            flood.packets,
            config.legit_rate,
            config.legit_timeout.as_secs_f64()
        )?;
        writeln!(
            self.out,
            "{:>7} {:>10} {:>10} {:>10} {:>9} {:>5} {:>10} {:>11} {:>8}",
            "time",
            "offered/s",
            "SYN-ACK/s",
            "cookies/s",
            "SYN-queue",
            "CPU %",
            "accepted/s",
            "legit ok",
            "p99 ms"
        )?;
        self.out.flush()
    }

    pub fn row(&mut self, row: &Row) -> io::Result<()> {
        writeln!(
            self.out,
            "{:>6.1}s {:>10} {:>10} {:>10} {:>9} {:>5.0} {:>10} {:>11} {:>8}",
            row.elapsed_s,
            row.offered_pps,
            row.syn_ack_pps,
            row.cookies_pps,
            row.syn_queue,
            row.server_cpu_busy_pct,
            row.accepted_pps,
            format!("{}/{}", row.legit_ok, row.legit_ended),
            millis(row.connect_p99_us),
        )?;
        self.out.flush()
    }

    /// The summary of one target.
    pub fn summary(&mut self, run: &TargetReport) -> io::Result<()> {
        let name = run.target.name();
        writeln!(
            self.out,
            "-- {name}: offered {} pkt/s ({} SYN/s); SYN-ACK/s {} (steady mean; best second {}); \
             cookies/s {}; SYN queue at most {}",
            run.offered_pps,
            run.offered_syn_pps,
            run.syn_ack_pps,
            run.syn_ack_pps_max,
            run.cookies_pps,
            run.syn_queue_max
        )?;
        writeln!(
            self.out,
            "   server CPU: busy {:.0} %, {} per SYN-ACK, {} SYN-ACKs per second of it; SYN-ACKs \
             per offered SYN {}",
            run.server_cpu_busy_pct,
            micros_unit(run.server_cpu_us_per_syn_ack),
            count_text(run.syn_acks_per_server_cpu_s),
            percent(run.answered_pct)
        )?;
        writeln!(
            self.out,
            "   legit: {}; accepted {} connections, {} of them from spoofed sources ({} turned \
             away by the service)",
            legit_text(run.legit.as_ref()),
            run.accepted,
            run.forged_accepted,
            run.service_turned_away
        )?;
        writeln!(self.out, "   counters: {}", counters_text(&run.counters))?;
        self.out.flush()
    }

    /// The legends, and a side-by-side table per flood when more than one target ran (or why
    /// there is none).
    pub fn end(&mut self, report: &LabReport) -> io::Result<()> {
        writeln!(
            self.out,
            "\nSYN-ACK/s = {SYN_ACK_MEASURE}.\nServer CPU per SYN-ACK = {SERVER_CPU_MEASURE}.\n\
             {LEGEND}."
        )?;
        if report.flood.runs.len() < 2 {
            return self.out.flush();
        }
        let busiest = report.busiest();
        if busiest > BUSY_LIMIT {
            writeln!(self.out, "{}", busy_note(busiest))?;
            return self.out.flush();
        }
        for flood in report.floods() {
            let table = side_by_side(flood);
            write!(self.out, "\n{}:\n{table}", flood.title())?;
        }
        writeln!(self.out, "\n{}", report.command)?;
        self.out.flush()
    }
}

fn millis(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// Why a comparison is withheld: the server CPU was `busy` % busy with other work before a run
/// (or after the last one).
pub(super) fn busy_note(busy: f64) -> String {
    format!(
        "no comparison: the server CPU was {busy:.0} % busy with other work before a run or \
         after the last one (more than {BUSY_LIMIT:.0} %), so a ratio would measure that work \
         too; run again on a quiet machine"
    )
}

pub(super) fn micros_unit(micros: Option<f64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{us:.2} µs"))
}

pub(super) fn count_text(count: Option<u64>) -> String {
    count.map_or("-".to_owned(), |count| count.to_string())
}

pub(super) fn percent(pct: Option<f64>) -> String {
    pct.map_or("-".to_owned(), |pct| format!("{pct:.1} %"))
}

pub(super) fn millis_unit(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

pub(super) fn times(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.2}×"))
}

pub(super) fn ok_text(legit: Option<&LegitReport>) -> String {
    match legit {
        None => "-".to_owned(),
        Some(legit) => match success_pct(legit) {
            Some(pct) => format!("{}/{} ({pct:.1} %)", legit.ok, legit.attempts),
            None => "0/0".to_owned(),
        },
    }
}

/// A run's own counters on one line: `name value, name value, ...`.
pub(super) fn counters_text(counters: &BTreeMap<String, u64>) -> String {
    let counters: Vec<String> = counters
        .iter()
        .map(|(name, value)| format!("{name} {value}"))
        .collect();
    counters.join(", ")
}

fn legit_text(legit: Option<&LegitReport>) -> String {
    let Some(report) = legit else {
        return "none (--legit-rate 0)".to_owned();
    };
    let failures = &report.failures;
    let latency = match report.connect_us {
        Some(p) => format!(
            "connect p50 {} p99 {} max {}",
            millis_unit(Some(p.p50)),
            millis_unit(Some(p.p99)),
            millis_unit(Some(p.max))
        ),
        None => "no connect completed".to_owned(),
    };
    format!("{} ok; failed: {failures}; {latency}", ok_text(legit))
}

#[cfg(test)]
mod tests;
