//! What a run prints: once per second a [`Progress`] record, at the end a [`Summary`]; as one
//! line of text each, or as JSON lines (`--json`, see the crate documentation for the schema).
//!
//! The records are plain data (serde), so a parent process (`synwall lab`) and the tests read
//! back exactly what was written. Every line is flushed as it is written.

use std::io::{self, Write};

use serde::{Deserialize, Serialize};

use crate::flood::{Backend, StopReason};
use crate::legit::{LegitReport, Percentiles};
use crate::mix::Kind;
use crate::stats::PerKind;

/// Packets per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    pub syn: u64,
    pub ack: u64,
    pub near_miss: u64,
    pub rst: u64,
    pub fin: u64,
}

impl KindCounts {
    pub fn total(&self) -> u64 {
        self.syn + self.ack + self.near_miss + self.rst + self.fin
    }

    fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Syn => self.syn,
            Kind::Ack => self.ack,
            Kind::NearMiss => self.near_miss,
            Kind::Rst => self.rst,
            Kind::Fin => self.fin,
        }
    }
}

impl From<PerKind> for KindCounts {
    fn from(counts: PerKind) -> Self {
        let [syn, ack, near_miss, rst, fin] = counts;
        KindCounts {
            syn,
            ack,
            near_miss,
            rst,
            fin,
        }
    }
}

/// Replies from the target to spoofed sources, seen by the sniffer (near-miss runs only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replies {
    pub syn_ack: u64,
    pub rst: u64,
    /// SYN-ACKs not kept because the harvest queue was full.
    pub harvest_dropped: u64,
}

/// One second of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds since the flood started.
    pub elapsed_s: f64,
    /// Length of this interval in seconds (about 1).
    pub interval_s: f64,
    /// Packets sent in this interval, per kind.
    pub sent: KindCounts,
    /// Packets per second in this interval.
    pub pps: u64,
    /// Packets sent since the start.
    pub sent_total: u64,
    /// Replies seen in this interval; null unless near-miss ACKs are in the mix.
    pub replies: Option<Replies>,
    /// Legit connections that ended in this interval; null without --legit-rate.
    pub legit: Option<LegitReport>,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The transmit path ("afxdp", "packet", or "mixed" when `--tx auto` fell back on some
    /// threads only).
    pub tx: Backend,
    /// "packets", "duration" or "interrupted".
    pub stop_reason: StopReason,
    /// Seconds from the start to the last packet.
    pub elapsed_s: f64,
    pub target: String,
    pub src_cidr: String,
    pub mix: String,
    /// The configured rate; null for "max".
    pub rate_pps: Option<u64>,
    pub threads: usize,
    pub sent: KindCounts,
    pub sent_total: u64,
    /// Average packets per second.
    pub pps: u64,
    pub replies: Option<Replies>,
    pub legit: Option<LegitReport>,
}

/// A line of `--json` output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Progress(Progress),
    Summary(Summary),
}

/// Writes records as text or JSON lines.
pub struct Reporter<W: Write> {
    out: W,
    json: bool,
}

impl<W: Write> Reporter<W> {
    pub fn new(out: W, json: bool) -> Reporter<W> {
        Reporter { out, json }
    }

    /// Writes one record and flushes.
    pub fn write(&mut self, record: &Record) -> io::Result<()> {
        if self.json {
            serde_json::to_writer(&mut self.out, record)?;
            writeln!(self.out)?;
        } else {
            match record {
                Record::Progress(progress) => write_progress(&mut self.out, progress)?,
                Record::Summary(summary) => write_summary(&mut self.out, summary)?,
            }
        }
        self.out.flush()
    }
}

fn write_progress(out: &mut impl Write, progress: &Progress) -> io::Result<()> {
    write!(
        out,
        "[{:7.1}s] {:>9} pkt/s ({})",
        progress.elapsed_s,
        progress.pps,
        kinds(&progress.sent)
    )?;
    if let Some(replies) = &progress.replies {
        write!(out, " | {}", replies_text(replies))?;
    }
    if let Some(legit) = &progress.legit {
        write!(
            out,
            " | legit {} ok {} failed, connect p99 {}",
            legit.ok,
            legit.failed,
            millis(legit.connect_us.map(|p| p.p99))
        )?;
    }
    writeln!(out)
}

fn write_summary(out: &mut impl Write, summary: &Summary) -> io::Result<()> {
    let rate = summary
        .rate_pps
        .map_or("max".to_owned(), |rate| format!("{rate} pkt/s"));
    writeln!(
        out,
        "summary: stopped by {} after {:.2} s; {} via {}, {} thread(s), rate {rate}, mix {}",
        summary.stop_reason,
        summary.elapsed_s,
        summary.target,
        summary.tx,
        summary.threads,
        summary.mix
    )?;
    writeln!(
        out,
        "  sent {} packets from {}, {} pkt/s on average ({})",
        summary.sent_total,
        summary.src_cidr,
        summary.pps,
        kinds(&summary.sent)
    )?;
    if let Some(replies) = &summary.replies {
        writeln!(out, "  {}", replies_text(replies))?;
    }
    if let Some(legit) = &summary.legit {
        let f = &legit.failures;
        writeln!(
            out,
            "  legit: {} attempts, {} ok, {} failed (timeout {}, refused {}, reset {}, \
             unreachable {}, reply timeout {}, bad reply {}, overloaded {}, other {})",
            legit.attempts,
            legit.ok,
            legit.failed,
            f.timeout,
            f.refused,
            f.reset,
            f.unreachable,
            f.reply_timeout,
            f.bad_reply,
            f.overloaded,
            f.other
        )?;
        writeln!(
            out,
            "  legit connect latency: {}",
            percentiles(legit.connect_us)
        )?;
    }
    Ok(())
}

/// "syn 10 ack 3" for the kinds with packets, "nothing" when none has.
fn kinds(counts: &KindCounts) -> String {
    let parts: Vec<String> = Kind::ALL
        .into_iter()
        .filter(|kind| counts.get(*kind) > 0)
        .map(|kind| format!("{} {}", kind.name(), counts.get(kind)))
        .collect();
    if parts.is_empty() {
        "nothing".to_owned()
    } else {
        parts.join(" ")
    }
}

fn replies_text(replies: &Replies) -> String {
    format!(
        "replies: {} SYN-ACK, {} RST ({} SYN-ACKs dropped)",
        replies.syn_ack, replies.rst, replies.harvest_dropped
    )
}

fn millis(micros: Option<u64>) -> String {
    micros.map_or("-".to_owned(), |us| format!("{:.2} ms", us as f64 / 1000.0))
}

fn percentiles(connect: Option<Percentiles>) -> String {
    match connect {
        None => "no connection completed".to_owned(),
        Some(p) => format!(
            "p50 {} p90 {} p99 {} max {}",
            millis(Some(p.p50)),
            millis(Some(p.p90)),
            millis(Some(p.p99)),
            millis(Some(p.max))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legit::FailureCounts;

    fn progress() -> Progress {
        Progress {
            elapsed_s: 1.0,
            interval_s: 1.0,
            sent: KindCounts::from([50_000, 0, 0, 10, 0]),
            pps: 50_010,
            sent_total: 50_010,
            replies: None,
            legit: Some(LegitReport {
                attempts: 10,
                ok: 9,
                failed: 1,
                failures: FailureCounts {
                    timeout: 1,
                    ..FailureCounts::default()
                },
                connect_us: Some(Percentiles {
                    p50: 100,
                    p90: 200,
                    p99: 1234,
                    max: 5000,
                }),
            }),
        }
    }

    #[test]
    fn test_json_lines_round_trip() {
        let mut out = Vec::new();
        let record = Record::Progress(progress());
        Reporter::new(&mut out, true).write(&record).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        assert!(
            text.starts_with(r#"{"type":"progress","elapsed_s":1.0,"#),
            "{text}"
        );
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn test_text_line() {
        let mut out = Vec::new();
        Reporter::new(&mut out, false)
            .write(&Record::Progress(progress()))
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[    1.0s]     50010 pkt/s (syn 50000 rst 10) | legit 9 ok 1 failed, connect p99 \
             1.23 ms\n"
        );
    }
}
