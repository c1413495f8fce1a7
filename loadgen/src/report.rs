//! What a run prints: once per second a [`Progress`] record, at the end a [`Summary`]; as one
//! line of text each, or as JSON lines (`--json`, see the crate documentation for the schema).
//!
//! The records are plain data defined once in [`crate::lab::report`] (serde, with the JSON
//! schema), so a parent process (`synwall-lab`) and the tests read back exactly what was
//! written. Every line is flushed as it is written.

use std::io::{self, Write};

pub use crate::lab::report::{
    Backend, FailureCounts, KindCounts, LegitReport, Percentiles, Progress, Record, Replies,
    StopReason, Summary,
};

use crate::mix::Kind;

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
        let failures = &legit.failures;
        writeln!(
            out,
            "  legit: {} attempts, {} ok, {} failed ({failures})",
            legit.attempts, legit.ok, legit.failed
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
        .zip(counts.values())
        .filter(|&(_, count)| count > 0)
        .map(|(kind, count)| format!("{} {count}", kind.name()))
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
