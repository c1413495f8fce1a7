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
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use crate::lab::cli::{Flood, FloodMode, LabConfig, Phase, Rate, Target};
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

/// synwall's figures over another target's, on the same flood.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Steady SYN-ACK rates.
    pub syn_ack_ratio: Option<f64>,
    /// Legit connect p99s.
    pub connect_p99_ratio: Option<f64>,
    /// Server CPU per SYN-ACK: below 1, synwall spends less of it per SYN-ACK.
    pub cpu_per_syn_ack_ratio: Option<f64>,
}

impl Ratios {
    fn new(synwall: &TargetReport, other: &TargetReport) -> Ratios {
        let over = |left: Option<f64>, right: Option<f64>| {
            left.zip(right.filter(|&right| right > 0.0))
                .map(|(left, right)| left / right)
        };
        let float = |value: Option<u64>| value.map(|value| value as f64);
        Ratios {
            syn_ack_ratio: over(
                Some(synwall.syn_ack_pps as f64),
                Some(other.syn_ack_pps as f64),
            ),
            connect_p99_ratio: over(float(synwall.connect_p99_us), float(other.connect_p99_us)),
            cpu_per_syn_ack_ratio: over(
                synwall.server_cpu_us_per_syn_ack,
                other.server_cpu_us_per_syn_ack,
            ),
        }
    }
}

/// One flood against every target: the runs, and synwall's ratios to the others.
#[derive(Debug, Clone, Serialize)]
pub struct FloodReport {
    pub mode: FloodMode,
    /// The flood rate asked for; null for max.
    pub rate_pps: Option<u64>,
    pub runs: Vec<TargetReport>,
    /// synwall over each other target that ran, by target. None when synwall or every other
    /// target did not run, or when the server CPU was busy with other work before a run or after
    /// the last (`server_cpu_busy_before_pct`, `server_cpu_busy_after_pct`).
    pub comparison: Option<BTreeMap<Target, Ratios>>,
}

impl FloodReport {
    /// `runs` of `flood`, compared when `quiet`.
    fn new(flood: &Flood, runs: Vec<TargetReport>, quiet: bool) -> FloodReport {
        let synwall = runs.iter().find(|run| run.target == Target::Synwall);
        let comparison: Option<BTreeMap<Target, Ratios>> = synwall
            .filter(|_| quiet)
            .map(|synwall| {
                runs.iter()
                    .filter(|run| run.target != Target::Synwall)
                    .map(|other| (other.target, Ratios::new(synwall, other)))
                    .collect()
            })
            .filter(|ratios: &BTreeMap<_, _>| !ratios.is_empty());
        FloodReport {
            mode: flood.mode,
            rate_pps: flood.rate_pps(),
            runs,
            comparison,
        }
    }

    /// What this flood was, for a table's title.
    fn title(&self) -> String {
        match self.rate_pps {
            None => format!("{} flood at max rate", mode_name(self.mode)),
            Some(rate) => format!("{} flood at {rate} pkt/s", mode_name(self.mode)),
        }
    }
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

/// Whether the server CPU was quiet before each of `runs` and `after` the last: a ratio with a
/// busy run in it measures the other work too, and none is given.
fn quiet<'a>(runs: impl IntoIterator<Item = &'a TargetReport>, after: Option<f64>) -> bool {
    runs.into_iter()
        .map(|run| run.server_cpu_busy_before_pct)
        .chain(after)
        .all(|busy| busy <= BUSY_LIMIT)
}

/// "syn", "near-miss", …
fn mode_name(mode: FloodMode) -> &'static str {
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
        let counters: Vec<String> = run
            .counters
            .iter()
            .map(|(name, value)| format!("{name} {value}"))
            .collect();
        writeln!(self.out, "   counters: {}", counters.join(", "))?;
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

/// The runs of `flood` side by side, with synwall's ratios to each other target (a markdown
/// table).
fn side_by_side(flood: &FloodReport) -> String {
    type Figure = fn(&TargetReport) -> String;
    type RatioOf = fn(&Ratios) -> Option<f64>;
    let rows: [(&str, Figure, Option<RatioOf>); 12] = [
        ("offered pkt/s", |run| run.offered_pps.to_string(), None),
        ("offered SYN/s", |run| run.offered_syn_pps.to_string(), None),
        (
            "SYN-ACK/s (steady mean)",
            |run| run.syn_ack_pps.to_string(),
            Some(|ratios| ratios.syn_ack_ratio),
        ),
        (
            "SYN-ACKs per offered SYN",
            |run| percent(run.answered_pct),
            None,
        ),
        ("cookies/s", |run| run.cookies_pps.to_string(), None),
        (
            "server CPU busy",
            |run| format!("{:.0} %", run.server_cpu_busy_pct),
            None,
        ),
        (
            "server CPU per SYN-ACK",
            |run| micros_unit(run.server_cpu_us_per_syn_ack),
            Some(|ratios| ratios.cpu_per_syn_ack_ratio),
        ),
        (
            "SYN-ACKs per server-CPU-second",
            |run| count_text(run.syn_acks_per_server_cpu_s),
            None,
        ),
        (
            "legit connections ok",
            |run| ok_text(run.legit.as_ref()),
            None,
        ),
        (
            "legit connect p50",
            |run| millis_unit(run.connect_p50_us),
            None,
        ),
        (
            "legit connect p99",
            |run| millis_unit(run.connect_p99_us),
            Some(|ratios| ratios.connect_p99_ratio),
        ),
        (
            "accepted from spoofed sources",
            |run| run.forged_accepted.to_string(),
            None,
        ),
    ];
    let compared: Vec<(&Target, &Ratios)> = flood.comparison.iter().flatten().collect();
    let mut table = String::from("\n|");
    let names = flood.runs.iter().map(|run| run.target.name().to_owned());
    let ratio_names = compared
        .iter()
        .map(|(target, _)| format!("synwall / {}", target.name()));
    for name in std::iter::once(String::new())
        .chain(names)
        .chain(ratio_names)
    {
        let _ = write!(table, " {name} |");
    }
    table.push_str("\n|---|");
    for _ in 0..flood.runs.len() + compared.len() {
        table.push_str("---:|");
    }
    for (name, figure, ratio) in rows {
        let _ = write!(table, "\n| {name} |");
        for run in &flood.runs {
            let _ = write!(table, " {} |", figure(run));
        }
        for (_, ratios) in &compared {
            let _ = write!(
                table,
                " {} |",
                ratio.map_or(String::new(), |ratio| times(ratio(ratios)))
            );
        }
    }
    table.push('\n');
    table
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

fn micros_unit(micros: Option<f64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{us:.2} µs"))
}

fn count_text(count: Option<u64>) -> String {
    count.map_or("-".to_owned(), |count| count.to_string())
}

fn percent(pct: Option<f64>) -> String {
    pct.map_or("-".to_owned(), |pct| format!("{pct:.1} %"))
}

pub(super) fn millis_unit(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

pub(super) fn times(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_owned(), |ratio| format!("{ratio:.2}×"))
}

fn ok_text(legit: Option<&LegitReport>) -> String {
    match legit {
        None => "-".to_owned(),
        Some(legit) => match success_pct(legit) {
            Some(pct) => format!("{}/{} ({pct:.1} %)", legit.ok, legit.attempts),
            None => "0/0".to_owned(),
        },
    }
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
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use crate::lab::placement::CpuTimes;
    use crate::lab::procnet::Frames;
    use crate::lab::report::Record;

    /// The server side at `at`, its CPU busy half of the time.
    fn sample(at: Instant, tx: u64, cookies: u64, accepted: u64) -> Sample {
        Sample {
            at,
            frames: Frames { rx: tx * 2, tx },
            server_cpu: CpuTimes {
                total: tx * 2,
                idle: tx,
            },
            cookies_sent: cookies,
            syn_queue: 7,
            accepted,
            forged: 0,
            turned_away: 0,
        }
    }

    /// A progress record as loadgen prints it: 1000 SYNs in half a second, `legit_ok` of
    /// `legit_ok + 1` legit connections ok.
    fn progress(legit_ok: u64) -> Progress {
        let line = format!(
            r#"{{"type":"progress","elapsed_s":1.0,"interval_s":0.5,"pps":2000,"sent_total":1000,
                "sent":{{"syn":1000,"ack":0,"near_miss":0,"rst":0,"fin":0}},"replies":null,
                "legit":{{"attempts":{},"ok":{legit_ok},"failed":1,
                  "failures":{{"timeout":1,"refused":0,"reset":0,"unreachable":0,
                               "reply_timeout":0,"bad_reply":0,"overloaded":0,"other":0}},
                  "connect_us":{{"p50":100,"p90":200,"p99":1500,"max":3000}}}}}}"#,
            legit_ok + 1
        );
        match serde_json::from_str(&line).unwrap() {
            Record::Progress(progress) => progress,
            Record::Summary(_) => unreachable!("a progress line"),
        }
    }

    #[test]
    fn test_row_rates_over_the_lab_clock() {
        let start = Instant::now();
        let row = Row::new(
            &progress(9),
            &sample(start, 100, 10, 0),
            &sample(start + Duration::from_millis(500), 600, 260, 5),
        );
        assert_eq!((row.syn_ack_pps, row.received_pps), (1000, 2000));
        assert_eq!((row.cookies_pps, row.accepted_pps), (500, 10));
        assert_eq!(row.offered_syn_pps, 2000);
        assert_eq!((row.legit_ok, row.legit_ended), (9, 10));
        assert_eq!(row.connect_p99_us, Some(1500));
        assert_eq!(millis(row.connect_p99_us), "1.50");
        assert_eq!(row.server_cpu_busy_pct, 50.0);
    }

    #[test]
    fn test_steady_mean_leaves_out_first_and_last() {
        let row = |rate, interval_s| Row {
            syn_ack_pps: rate,
            interval_s,
            ..Row::new(
                &progress(1),
                &sample(Instant::now(), 0, 0, 0),
                &sample(Instant::now(), 0, 0, 0),
            )
        };
        let rows = [row(1, 1.0), row(100, 1.0), row(300, 0.5), row(5, 0.2)];
        let rate = |row: &Row| row.syn_ack_pps as f64;
        assert_eq!(mean(steady(&rows), rate).round(), 167.0);
        assert_eq!(mean(steady(&rows[..2]), rate), 50.5);
        assert_eq!(mean(&[], rate), 0.0);
    }

    /// A run of `target` whose every second answered `syn_ack_pps` of as many SYNs offered, with
    /// the server CPU `busy_pct` busy, and `busy_before` % busy before the run.
    fn run(target: Target, syn_ack_pps: u64, busy_pct: f64, busy_before: f64) -> TargetReport {
        let now = Instant::now();
        let row = Row {
            syn_ack_pps,
            offered_syn_pps: syn_ack_pps,
            server_cpu_busy_pct: busy_pct,
            interval_s: 1.0,
            ..Row::new(&progress(1), &sample(now, 0, 0, 0), &sample(now, 0, 0, 0))
        };
        let summary = r#"{"type":"summary","tx":"afxdp","stop_reason":"duration",
            "elapsed_s":3.0,"target":"198.18.0.1:80","src_cidr":"198.18.128.0/17",
            "mix":"syn=1","rate_pps":200000,"threads":1,
            "sent":{"syn":600000,"ack":0,"near_miss":0,"rst":0,"fin":0},"sent_total":600000,
            "pps":200000,"replies":null,"legit":null}"#;
        let Record::Summary(summary) = serde_json::from_str(summary).unwrap() else {
            unreachable!("a summary line");
        };
        let facts = RunFacts {
            target,
            xdp_mode: None,
            placement: String::new(),
            namespaces: [String::new(), String::new()],
            server_cpu_busy_before_pct: busy_before,
            last: sample(now, 0, 0, 0),
            counters: BTreeMap::new(),
        };
        TargetReport::new(facts, vec![row; 3], summary)
    }

    #[test]
    fn test_server_cpu_per_syn_ack_and_synwall_over_each_other_target() {
        let synwall = run(Target::Synwall, 200_000, 25.0, 0.0);
        assert_eq!(synwall.server_cpu_us_per_syn_ack, Some(1.25));
        assert_eq!(synwall.syn_acks_per_server_cpu_s, Some(800_000));
        assert_eq!(synwall.answered_pct, Some(100.0));
        let idle = run(Target::Kernel, 0, 0.0, 0.0);
        assert_eq!(idle.server_cpu_us_per_syn_ack, None);
        assert_eq!(idle.syn_acks_per_server_cpu_s, None);
        assert_eq!(idle.answered_pct, None);

        let flood = Flood {
            mode: FloodMode::Syn,
            rate: Rate::PerSecond(200_000),
            packets: 600_000,
        };
        let runs = vec![
            synwall,
            run(Target::Kernel, 200_000, 50.0, 0.0),
            run(Target::XdpSynproxy, 100_000, 10.0, 0.0),
        ];
        let report = FloodReport::new(&flood, runs.clone(), true);
        let comparison = report.comparison.as_ref().unwrap();
        let kernel = &comparison[&Target::Kernel];
        assert_eq!(kernel.cpu_per_syn_ack_ratio, Some(0.5));
        assert_eq!(kernel.syn_ack_ratio, Some(1.0));
        let proxy = &comparison[&Target::XdpSynproxy];
        assert_eq!(proxy.cpu_per_syn_ack_ratio, Some(1.25));
        assert_eq!(proxy.syn_ack_ratio, Some(2.0));
        assert_eq!(report.title(), "syn flood at 200000 pkt/s");
        let table = side_by_side(&report);
        assert!(table.contains("| synwall / xdp-synproxy |"), "{table}");
        assert!(
            table.contains("| server CPU per SYN-ACK | 1.25 µs |"),
            "{table}"
        );
        // A busy server CPU withholds every ratio; a lone target has nothing to compare with.
        assert!(
            FloodReport::new(&flood, runs.clone(), false)
                .comparison
                .is_none()
        );
        let alone = FloodReport::new(&flood, runs[..1].to_vec(), true);
        assert!(alone.comparison.is_none());
    }

    #[test]
    fn test_quiet_needs_every_run_and_the_end_quiet() {
        let quiet_run = run(Target::Synwall, 1, 1.0, BUSY_LIMIT);
        let busy_run = run(Target::Kernel, 1, 1.0, BUSY_LIMIT + 1.0);
        assert!(quiet([&quiet_run], Some(0.0)));
        assert!(quiet([&quiet_run], None));
        assert!(!quiet([&quiet_run, &busy_run], Some(0.0)));
        assert!(!quiet([&quiet_run], Some(BUSY_LIMIT + 1.0)));
    }
}
