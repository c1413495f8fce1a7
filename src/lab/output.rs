//! What `synwall lab` prints: a table row per second of flood ([`Row`]), a summary per target
//! ([`TargetReport`]), the side-by-side comparison, and the whole run as one JSON object
//! ([`LabReport`], `--json`).
//!
//! How the columns are measured is said once, in [`SYN_ACK_MEASURE`] and [`LEGEND`], and
//! printed with the table: the same way for both targets. Rates in a summary are "steady"
//! means, over the seconds of flood without the first and the last (start-up and the partial
//! last second), weighted by the length of each second as the lab measured it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;

use serde::Serialize;

use crate::lab::cli::{FloodMode, LabConfig, Rate, Target};
use crate::lab::placement::BUSY_LIMIT;
use crate::lab::report::{LegitReport, Progress, Summary};
use crate::lab::server_side::{PORT, Sample};
use crate::lab::topology::Family;

/// How "SYN-ACK/s" is measured, for both targets.
pub const SYN_ACK_MEASURE: &str = "frames per second the server side sent on its veth \
    (its tx_packets, which is the client veth's rx_packets): the SYN-ACKs, plus RSTs to forged \
    ACKs and the legit connections' few segments";

/// The column legend of the live table.
const LEGEND: &str = "offered/s: packets loadgen sent per second; SYN-ACK/s: see above; \
    cookies/s: SYN-ACKs with cookies (synwall: CookiesSent; kernel: TcpExt SyncookiesSent); \
    SYN-queue: entries now (synwall: SynQueueDepth; kernel: SYN_RECV sockets); \
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
    /// synwall's XDP mode; null for the kernel.
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
    /// Connections the built-in service accepted, and those from spoofed sources.
    pub accepted: u64,
    pub forged_accepted: u64,
    /// Connections the service closed unanswered because it served too many at once.
    pub service_turned_away: u64,
    pub legit: Option<LegitReport>,
    pub legit_success_pct: Option<f64>,
    pub connect_p99_us: Option<u64>,
    /// The server side's own counters (synwall's listener and handoffs, or the kernel's
    /// TcpExt counters).
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
        TargetReport {
            target: facts.target,
            xdp_mode: facts.xdp_mode,
            placement: facts.placement,
            namespaces: facts.namespaces,
            server_cpu_busy_before_pct: facts.server_cpu_busy_before_pct,
            offered_pps: loadgen.pps,
            offered_syn_pps: per_second(loadgen.sent.syn, loadgen.elapsed_s),
            received_pps: mean(steady, |row| row.received_pps),
            syn_ack_pps: mean(steady, |row| row.syn_ack_pps),
            cookies_pps: mean(steady, |row| row.cookies_pps),
            syn_ack_pps_max: rows.iter().map(|row| row.syn_ack_pps).max().unwrap_or(0),
            syn_queue_max: rows.iter().map(|row| row.syn_queue).max().unwrap_or(0),
            accepted: facts.last.accepted,
            forged_accepted: facts.last.forged,
            service_turned_away: facts.last.turned_away,
            legit_success_pct: legit.as_ref().and_then(success_pct),
            connect_p99_us: legit.as_ref().and_then(|l| l.connect_us).map(|p| p.p99),
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

/// The mean of `value` over `rows`, weighted by their lengths.
fn mean(rows: &[Row], value: impl Fn(&Row) -> u64) -> u64 {
    let seconds: f64 = rows.iter().map(|row| row.interval_s).sum();
    let count: f64 = rows
        .iter()
        .map(|row| value(row) as f64 * row.interval_s)
        .sum();
    per_second(count.round() as u64, seconds)
}

fn success_pct(legit: &LegitReport) -> Option<f64> {
    (legit.attempts > 0).then(|| 100.0 * legit.ok as f64 / legit.attempts as f64)
}

/// synwall against the kernel, when both ran.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// synwall's steady SYN-ACK rate over the kernel's.
    pub syn_ack_ratio: Option<f64>,
    /// synwall's legit connect p99 over the kernel's.
    pub connect_p99_ratio: Option<f64>,
}

/// The whole `synwall lab` run (`--json`).
#[derive(Debug, Clone, Serialize)]
pub struct LabReport {
    /// The command line as given.
    pub command: String,
    /// Whether the run was over IPv6 (2001:2::/48) rather than IPv4.
    pub ipv6: bool,
    pub mode: FloodMode,
    /// The flood rate asked for; null for max.
    pub rate_pps: Option<u64>,
    pub duration_s: f64,
    pub legit_rate: u32,
    pub legit_timeout_s: f64,
    pub server_cpu: usize,
    pub client_cpu: usize,
    pub syn_ack_measure: &'static str,
    pub runs: Vec<TargetReport>,
    /// None when only one target ran, or when the server CPU was busy with other work before
    /// a run (see `server_cpu_busy_before_pct`).
    pub comparison: Option<Comparison>,
    /// A signal stopped the run early.
    pub interrupted: bool,
}

impl LabReport {
    pub fn new(
        command: String,
        config: &LabConfig,
        runs: Vec<TargetReport>,
        interrupted: bool,
    ) -> LabReport {
        let find = |target| runs.iter().find(|run| run.target == target);
        // A ratio with a busy run in it measures the other work too: none is given.
        let quiet = runs
            .iter()
            .all(|run| run.server_cpu_busy_before_pct <= BUSY_LIMIT);
        let comparison = match (find(Target::Synwall), find(Target::Kernel)) {
            (Some(synwall), Some(kernel)) if quiet => Some(Comparison {
                syn_ack_ratio: ratio(synwall.syn_ack_pps, kernel.syn_ack_pps),
                connect_p99_ratio: synwall
                    .connect_p99_us
                    .zip(kernel.connect_p99_us)
                    .and_then(|(s, k)| ratio(s, k)),
            }),
            _ => None,
        };
        LabReport {
            command,
            ipv6: config.family == Family::V6,
            mode: config.mode,
            rate_pps: match config.rate {
                Rate::Max => None,
                Rate::PerSecond(rate) => Some(rate),
            },
            duration_s: config.duration.as_secs_f64(),
            legit_rate: config.legit_rate,
            legit_timeout_s: config.legit_timeout.as_secs_f64(),
            server_cpu: config.server_cpu,
            client_cpu: config.client_cpu,
            syn_ack_measure: SYN_ACK_MEASURE,
            runs,
            comparison,
            interrupted,
        }
    }
}

fn ratio(numerator: u64, denominator: u64) -> Option<f64> {
    (denominator > 0).then(|| numerator as f64 / denominator as f64)
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
    pub fn start(&mut self, target: Target, placement: &str, config: &LabConfig) -> io::Result<()> {
        let rate = match config.rate {
            Rate::Max => "max rate".to_owned(),
            Rate::PerSecond(rate) => format!("{rate} pkt/s"),
        };
        let flood = match config.mode {
            FloodMode::Mix => format!("mix {}", config.mix),
            mode => format!("{mode:?}").to_lowercase(),
        };
        writeln!(self.out, "\n== {}: {placement}", target.name())?;
        writeln!(
            self.out,
            "   over {} to {}: {flood} flood at {rate} from {} for {:.1} s (at most {} packets); \
             {} legit connections/s (timeout {:.1} s)",
            config.family.name(),
            SocketAddr::new(config.family.server(), PORT),
            config.family.spoofed_sources(),
            config.duration.as_secs_f64(),
            config.packets,
            config.legit_rate,
            config.legit_timeout.as_secs_f64()
        )?;
        writeln!(
            self.out,
            "{:>7} {:>10} {:>10} {:>10} {:>9} {:>10} {:>11} {:>8}",
            "time",
            "offered/s",
            "SYN-ACK/s",
            "cookies/s",
            "SYN-queue",
            "accepted/s",
            "legit ok",
            "p99 ms"
        )?;
        self.out.flush()
    }

    pub fn row(&mut self, row: &Row) -> io::Result<()> {
        writeln!(
            self.out,
            "{:>6.1}s {:>10} {:>10} {:>10} {:>9} {:>10} {:>11} {:>8}",
            row.elapsed_s,
            row.offered_pps,
            row.syn_ack_pps,
            row.cookies_pps,
            row.syn_queue,
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

    /// The legend, and the side-by-side table when both targets ran.
    pub fn end(&mut self, report: &LabReport) -> io::Result<()> {
        writeln!(self.out, "\nSYN-ACK/s = {SYN_ACK_MEASURE}.\n{LEGEND}.")?;
        let [synwall, kernel] = &report.runs[..] else {
            return self.out.flush();
        };
        let Some(comparison) = &report.comparison else {
            let busy = synwall
                .server_cpu_busy_before_pct
                .max(kernel.server_cpu_busy_before_pct);
            writeln!(self.out, "{}", busy_note(busy))?;
            return self.out.flush();
        };
        let rows = [
            (
                "offered pkt/s",
                synwall.offered_pps.to_string(),
                kernel.offered_pps.to_string(),
                String::new(),
            ),
            (
                "SYN-ACK/s (steady mean)",
                synwall.syn_ack_pps.to_string(),
                kernel.syn_ack_pps.to_string(),
                times(comparison.syn_ack_ratio),
            ),
            (
                "cookies/s",
                synwall.cookies_pps.to_string(),
                kernel.cookies_pps.to_string(),
                String::new(),
            ),
            (
                "legit connections ok",
                ok_text(synwall.legit.as_ref()),
                ok_text(kernel.legit.as_ref()),
                String::new(),
            ),
            (
                "legit connect p99",
                millis_unit(synwall.connect_p99_us),
                millis_unit(kernel.connect_p99_us),
                times(comparison.connect_p99_ratio),
            ),
            (
                "accepted from spoofed sources",
                synwall.forged_accepted.to_string(),
                kernel.forged_accepted.to_string(),
                String::new(),
            ),
        ];
        let mut table =
            String::from("\n| | synwall | kernel | synwall / kernel |\n|---|---:|---:|---:|\n");
        for (name, left, right, ratio) in rows {
            let _ = writeln!(table, "| {name} | {left} | {right} | {ratio} |");
        }
        write!(self.out, "{table}")?;
        writeln!(self.out, "\n{}", report.command)?;
        self.out.flush()
    }
}

fn millis(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{:.2}", us as f64 / 1000.0))
}

/// Why a comparison is withheld: the server CPU was `busy` % busy with other work before a run.
pub(super) fn busy_note(busy: f64) -> String {
    format!(
        "no comparison: the server CPU was {busy:.0} % busy with other work before a run (more \
         than {BUSY_LIMIT:.0} %), so a ratio would measure that work too; run again on a quiet \
         machine"
    )
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

    use crate::lab::procnet::Frames;
    use crate::lab::report::Record;

    fn sample(at: Instant, tx: u64, cookies: u64, accepted: u64) -> Sample {
        Sample {
            at,
            frames: Frames { rx: tx * 2, tx },
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
        assert_eq!(mean(steady(&rows), |r| r.syn_ack_pps), 167);
        assert_eq!(mean(steady(&rows[..2]), |r| r.syn_ack_pps), 51);
        assert_eq!(mean(&[], |r| r.syn_ack_pps), 0);
    }
}
