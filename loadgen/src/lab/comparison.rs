//! One flood against every target, compared: synwall's figures over each other target's
//! ([`Ratios`]), given only when the server CPU was quiet before every run and after the last
//! ([`quiet`]), and the side-by-side markdown table `synwall-lab` prints at the end
//! ([`side_by_side`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::lab::cli::{Flood, FloodMode, Target};
use crate::lab::output::{
    TargetReport, count_text, micros_unit, millis_unit, mode_name, ok_text, percent, times,
};
use crate::lab::placement::BUSY_LIMIT;

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
    pub(super) fn new(flood: &Flood, runs: Vec<TargetReport>, quiet: bool) -> FloodReport {
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
    pub(super) fn title(&self) -> String {
        match self.rate_pps {
            None => format!("{} flood at max rate", mode_name(self.mode)),
            Some(rate) => format!("{} flood at {rate} pkt/s", mode_name(self.mode)),
        }
    }
}

/// Whether the server CPU was quiet before each of `runs` and `after` the last: a ratio with a
/// busy run in it measures the other work too, and none is given.
pub(super) fn quiet<'a>(
    runs: impl IntoIterator<Item = &'a TargetReport>,
    after: Option<f64>,
) -> bool {
    runs.into_iter()
        .map(|run| run.server_cpu_busy_before_pct)
        .chain(after)
        .all(|busy| busy <= BUSY_LIMIT)
}

/// A figure of a run, as a cell of the side-by-side table.
type Figure = fn(&TargetReport) -> String;
/// synwall's ratio to another target that goes with a figure.
type RatioOf = fn(&Ratios) -> Option<f64>;

/// The rows of the side-by-side table: a name, the figure of each run, and the ratio, for the
/// figures that have one.
const FIGURES: [(&str, Figure, Option<RatioOf>); 12] = [
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

/// The runs of `flood` side by side, with synwall's ratios to each other target (a markdown
/// table).
pub(super) fn side_by_side(flood: &FloodReport) -> String {
    let compared: Vec<(&Target, &Ratios)> = flood.comparison.iter().flatten().collect();
    let mut table = header(flood, &compared);
    for (name, figure, ratio) in FIGURES {
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

/// The header of the side-by-side table of `flood`: a column per run, then one per target
/// synwall is `compared` with.
fn header(flood: &FloodReport, compared: &[(&Target, &Ratios)]) -> String {
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
    table
}
