//! A run: enter the namespace, find both MAC addresses, start the sniffer (near-miss runs), open
//! the flood workers' devices, start flood and legit clients on one common instant, report
//! once per second until the workers stop, then stop everything else and summarise.
//!
//! Two flags: `stop` (from the caller, e.g. a signal handler) stops the workers early; `done`
//! (raised here once the workers have stopped, for whatever reason) stops the sniffer and the
//! legit clients, so nothing outlives the flood by more than two legit timeouts (an attempt
//! under way finishes its connect and its reply).

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use synwall::sys::{interface_mac, netns};

use crate::cli::Config;
use crate::craft::Path;
use crate::error::LoadgenError;
use crate::flood::{Flood, Ready};
use crate::guard::OVERRIDE_FLAG;
use crate::harvest::{HARVEST_QUEUE, SynAck, spawn_sniffer};
use crate::legit::LegitClients;
use crate::mix::{KIND_COUNT, Kind};
use crate::neighbor;
use crate::pacer::Rate;
use crate::report::{
    Backend, KindCounts, LegitReport, Progress, Record, Replies, Reporter, StopReason, Summary,
};
use crate::stats::{Counters, PerKind};

const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often the reporter looks whether the workers are done.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The thread of the sniffer that harvests SYN-ACKs.
type Sniffer = thread::JoinHandle<io::Result<()>>;

/// Runs `config`, writing records to `out` and operator notes (fallbacks, overrides) to
/// `notes`; returns the summary also written last.
pub fn run(
    config: &Config,
    stop: &Arc<AtomicBool>,
    out: impl Write,
    mut notes: impl Write,
) -> Result<Summary, LoadgenError> {
    for violation in &config.overridden {
        note(
            &mut notes,
            format!("WARNING: {violation}; proceeding because {OVERRIDE_FLAG} was given"),
        );
    }
    if let Some(name) = &config.netns {
        netns::enter(name).map_err(|source| LoadgenError::netns(name, source))?;
    }
    let path = path_to_target(config)?;
    let counters = Arc::new(Counters::new(config.threads));
    let done = Arc::new(AtomicBool::new(false));

    let (harvested, sniffer) = start_sniffer(config, &counters, &done)?.unzip();
    let opened = Flood::open(config, path, &counters, harvested.as_ref(), stop);
    let (mut flood, ready) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            done.store(true, Ordering::Relaxed);
            if let Some(sniffer) = sniffer {
                let _ = sniffer.join();
            }
            return Err(error);
        }
    };
    note_fallbacks(&ready, &mut notes);

    let start = Instant::now();
    flood.start(start);
    let legit = config
        .legit
        .clone()
        .map(|legit| LegitClients::start(legit, start, start + config.duration, Arc::clone(&done)));
    let mut reporter = Reporter::new(out, config.json);
    let replies_on = sniffer.is_some();
    let reported = report_progress(
        &counters,
        start,
        Reporting {
            interval: REPORT_INTERVAL,
            replies_on,
            legit: legit.as_ref(),
        },
        || flood.is_finished(),
        &mut reporter,
    );
    if reported.is_err() {
        stop.store(true, Ordering::Relaxed);
    }
    let ended = flood.join();
    done.store(true, Ordering::Relaxed);
    let legit = legit.map(LegitClients::finish);
    let sniffed = match sniffer {
        Some(sniffer) => sniffer
            .join()
            .unwrap_or(Ok(()))
            .map_err(LoadgenError::Sniffer),
        None => Ok(()),
    };
    let last = reported.map_err(LoadgenError::Output)?;
    let (stop_reason, last_packet) = ended?;
    sniffed?;
    let elapsed = last_packet.saturating_duration_since(start);
    let summary = summarize(
        config,
        &ready,
        (stop_reason, elapsed),
        last,
        replies_on,
        legit,
    );
    reporter
        .write(&Record::Summary(summary.clone()))
        .map_err(LoadgenError::Output)?;
    Ok(summary)
}

/// Writes an operator note to `notes`.
fn note(notes: &mut dyn Write, text: String) {
    // Notes are advice; a closed stderr must not fail the run.
    let _ = writeln!(notes, "loadgen: {text}");
}

/// The link-layer path to the target: the interface's MAC address, and the target's
/// (--dst-mac, or the neighbour's).
fn path_to_target(config: &Config) -> Result<Path, LoadgenError> {
    let src_mac = interface_mac(&config.interface)?;
    let dst_mac = match config.dst_mac {
        Some(mac) => mac,
        None => neighbor::resolve(config.target.ip(), &config.interface)?,
    };
    Ok(Path {
        src_mac,
        dst_mac,
        target: config.target,
    })
}

/// The sniffer that harvests the target's SYN-ACKs for near-miss packets, when the mix has
/// any: the harvest, and the sniffer's thread, which stops once `done` is raised.
fn start_sniffer(
    config: &Config,
    counters: &Arc<Counters>,
    done: &Arc<AtomicBool>,
) -> Result<Option<(Receiver<SynAck>, Sniffer)>, LoadgenError> {
    if !config.mix.includes(Kind::NearMiss) {
        return Ok(None);
    }
    let (sender, receiver) = crossbeam_channel::bounded(HARVEST_QUEUE);
    let sniffer = spawn_sniffer(
        &config.interface,
        config.target,
        config.sources,
        sender,
        Arc::clone(counters),
        Arc::clone(done),
    )?;
    Ok(Some((receiver, sniffer)))
}

/// Notes each flood thread that fell back from AF_XDP to AF_PACKET.
fn note_fallbacks(ready: &[Ready], notes: &mut dyn Write) {
    for report in ready {
        if let Some(reason) = &report.fallback {
            note(
                notes,
                format!(
                    "flood thread {}: AF_XDP unavailable ({reason}); using AF_PACKET",
                    report.worker
                ),
            );
        }
    }
}

/// The run's summary: how it ended, after `elapsed`, and `last`, the reporter's last snapshot,
/// taken once every worker had stopped: the total of its intervals.
fn summarize(
    config: &Config,
    ready: &[Ready],
    (stop_reason, elapsed): (StopReason, Duration),
    last: Snapshot,
    replies_on: bool,
    legit: Option<LegitReport>,
) -> Summary {
    let sent = KindCounts::from(last.sent);
    Summary {
        tx: Backend::of_run(ready.iter().map(|report| report.backend)),
        stop_reason,
        elapsed_s: elapsed.as_secs_f64(),
        target: config.target.to_string(),
        src_cidr: config.sources.to_string(),
        mix: config.mix.to_string(),
        rate_pps: match config.rate {
            Rate::Max => None,
            Rate::PerSecond(rate) => Some(rate),
        },
        threads: config.threads,
        sent,
        sent_total: sent.total(),
        pps: per_second(sent.total(), elapsed),
        replies: replies_on.then_some(last.replies),
        legit,
    }
}

/// How [`report_progress`] reports.
struct Reporting<'a> {
    interval: Duration,
    /// Whether the sniffer runs (replies are reported).
    replies_on: bool,
    legit: Option<&'a LegitClients>,
}

/// Writes a progress record each `reporting.interval` after `start`, until `finished()` says
/// every worker has stopped; then one more for the last, partial interval if it sent packets.
/// Returns the last snapshot, taken after `finished()` said so: the run's totals.
///
/// Every interval runs from the previous snapshot to the next, and the first from zero (the
/// counters start at zero, before any worker exists), not from a first look at the counters
/// that packets sent since `start` could precede: the records add up to every packet sent.
fn report_progress<W: Write>(
    counters: &Counters,
    start: Instant,
    reporting: Reporting<'_>,
    mut finished: impl FnMut() -> bool,
    reporter: &mut Reporter<W>,
) -> io::Result<Snapshot> {
    let mut previous = Snapshot::zero(start);
    let mut next_report = start + reporting.interval;
    loop {
        let finished = finished();
        let now = Instant::now();
        if now >= next_report || finished {
            let current = Snapshot::take(counters, now);
            let progress = current.progress_since(
                &previous,
                start,
                reporting.replies_on,
                reporting.legit.map(LegitClients::take_interval),
            );
            previous = current;
            next_report += reporting.interval;
            // The last, partial interval is reported only if it sent packets.
            let empty_tail = finished && progress.sent.total() == 0;
            if !empty_tail {
                reporter.write(&Record::Progress(progress))?;
            }
        }
        if finished {
            return Ok(previous);
        }
        thread::sleep(
            next_report
                .saturating_duration_since(now)
                .min(POLL_INTERVAL),
        );
    }
}

/// The counters at one instant.
struct Snapshot {
    at: Instant,
    sent: PerKind,
    replies: Replies,
}

impl Snapshot {
    /// The counters as [`Counters::new`] makes them.
    fn zero(at: Instant) -> Snapshot {
        Snapshot {
            at,
            sent: [0; KIND_COUNT],
            replies: Replies::default(),
        }
    }

    fn take(counters: &Counters, at: Instant) -> Snapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Snapshot {
            at,
            sent: counters.sent(),
            replies: Replies {
                syn_ack: load(&counters.syn_acks_seen),
                rst: load(&counters.rsts_seen),
                harvest_dropped: load(&counters.harvest_dropped),
            },
        }
    }

    fn progress_since(
        &self,
        before: &Snapshot,
        start: Instant,
        replies_on: bool,
        legit: Option<LegitReport>,
    ) -> Progress {
        let interval = self.at.saturating_duration_since(before.at);
        let mut sent = [0; KIND_COUNT];
        for ((delta, now), then) in sent.iter_mut().zip(self.sent).zip(before.sent) {
            *delta = now - then;
        }
        let sent = KindCounts::from(sent);
        let replies = Replies {
            syn_ack: self.replies.syn_ack - before.replies.syn_ack,
            rst: self.replies.rst - before.replies.rst,
            harvest_dropped: self.replies.harvest_dropped - before.replies.harvest_dropped,
        };
        Progress {
            elapsed_s: self.at.saturating_duration_since(start).as_secs_f64(),
            interval_s: interval.as_secs_f64(),
            sent,
            pps: per_second(sent.total(), interval),
            sent_total: self.sent.iter().sum(),
            replies: replies_on.then_some(replies),
            legit,
        }
    }
}

fn per_second(count: u64, over: Duration) -> u64 {
    if over.is_zero() {
        0
    } else {
        (count as f64 / over.as_secs_f64()).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_progress_intervals_add_up_to_the_summary() {
        let counters = Counters::new(2);
        let start = Instant::now();
        // Sent after the flood started and before the reporter first looked: the packets the
        // first interval once missed.
        counters.worker(0).publish(&[220, 0, 0, 0, 0]);
        let mut out = Vec::new();
        let mut reporter = Reporter::new(&mut out, true);
        // A fake flood: each look at it finds more sent, until it has stopped.
        let mut looks = 0u64;
        let finished = || {
            looks += 1;
            counters
                .worker(0)
                .publish(&[220 + 1000 * looks, 7 * looks, 0, 0, 0]);
            counters.worker(1).publish(&[0, 0, 0, 3 * looks, 0]);
            looks == 40
        };
        let reporting = Reporting {
            interval: Duration::from_millis(5),
            replies_on: false,
            legit: None,
        };
        let last = report_progress(&counters, start, reporting, finished, &mut reporter)
            .expect("writing to memory");
        let summary_total = KindCounts::from(last.sent).total();
        assert_eq!(summary_total, 220 + 1000 * 40 + 7 * 40 + 3 * 40);
        let text = String::from_utf8(out).unwrap();
        let mut sum = KindCounts::default();
        let mut running_total = 0;
        for line in text.lines() {
            let Record::Progress(progress) = serde_json::from_str(line).unwrap() else {
                panic!("not a progress record: {line}");
            };
            sum = KindCounts::from(std::array::from_fn(|kind| {
                sum.values()[kind] + progress.sent.values()[kind]
            }));
            running_total += progress.sent.total();
            assert_eq!(progress.sent_total, running_total, "{line}");
        }
        assert_eq!(sum, KindCounts::from(last.sent));
        assert_eq!(sum.total(), summary_total);
    }
}
