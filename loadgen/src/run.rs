//! A run: enter the namespace, find both MAC addresses, start the sniffer (near-miss runs), open
//! the flood workers' devices, start flood and legit clients on one common instant, report
//! once per second until the workers stop, then stop everything else and summarise.
//!
//! Two flags: `stop` (from the caller, e.g. a signal handler) stops the workers early; `done`
//! (raised here once the workers have stopped, for whatever reason) stops the sniffer and the
//! legit clients, so nothing outlives the flood by more than two legit timeouts (an attempt
//! under way finishes its connect and its reply).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use synwall::sys::{interface_mac, netns};

use crate::cli::Config;
use crate::craft::Path;
use crate::error::LoadgenError;
use crate::flood::Flood;
use crate::guard::OVERRIDE_FLAG;
use crate::harvest::{HARVEST_QUEUE, spawn_sniffer};
use crate::legit::LegitClients;
use crate::mix::{KIND_COUNT, Kind};
use crate::neighbor;
use crate::pacer::Rate;
use crate::report::{
    Backend, KindCounts, LegitReport, Progress, Record, Replies, Reporter, Summary,
};
use crate::stats::{Counters, PerKind};

const REPORT_INTERVAL: Duration = Duration::from_secs(1);
/// How often the reporter looks whether the workers are done.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Runs `config`, writing records to `out` and operator notes (fallbacks, overrides) to
/// `notes`; returns the summary also written last.
pub fn run(
    config: &Config,
    stop: &Arc<AtomicBool>,
    out: impl Write,
    mut notes: impl Write,
) -> Result<Summary, LoadgenError> {
    let note = |notes: &mut dyn Write, text: String| {
        // Notes are advice; a closed stderr must not fail the run.
        let _ = writeln!(notes, "loadgen: {text}");
    };
    for violation in &config.overridden {
        note(
            &mut notes,
            format!("WARNING: {violation}; proceeding because {OVERRIDE_FLAG} was given"),
        );
    }
    if let Some(name) = &config.netns {
        netns::enter(name).map_err(|source| LoadgenError::netns(name, source))?;
    }
    let src_mac = interface_mac(&config.interface)?;
    let dst_mac = match config.dst_mac {
        Some(mac) => mac,
        None => neighbor::resolve(*config.target.ip(), &config.interface)?,
    };
    let path = Path {
        src_mac,
        dst_mac,
        target: config.target,
    };
    let counters = Arc::new(Counters::new(config.threads));
    let done = Arc::new(AtomicBool::new(false));

    let (harvested, sniffer) = if config.mix.includes(Kind::NearMiss) {
        let (sender, receiver) = crossbeam_channel::bounded(HARVEST_QUEUE);
        let sniffer = spawn_sniffer(
            &config.interface,
            config.target,
            config.sources,
            sender,
            Arc::clone(&counters),
            Arc::clone(&done),
        )?;
        (Some(receiver), Some(sniffer))
    } else {
        (None, None)
    };
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
    for report in &ready {
        if let Some(reason) = &report.fallback {
            note(
                &mut notes,
                format!(
                    "flood thread {}: AF_XDP unavailable ({reason}); using AF_PACKET",
                    report.worker
                ),
            );
        }
    }

    let start = Instant::now();
    flood.start(start);
    let legit = config
        .legit
        .clone()
        .map(|legit| LegitClients::start(legit, start, start + config.duration, Arc::clone(&done)));
    let mut reporter = Reporter::new(out, config.json);
    let replies_on = sniffer.is_some();
    let mut previous = Snapshot::take(&counters, start);
    let mut next_report = start + REPORT_INTERVAL;
    let written = loop {
        let finished = flood.is_finished();
        let now = Instant::now();
        if now >= next_report || finished {
            let current = Snapshot::take(&counters, now);
            let progress = current.progress_since(
                &previous,
                start,
                replies_on,
                legit.as_ref().map(LegitClients::take_interval),
            );
            previous = current;
            next_report += REPORT_INTERVAL;
            // The last, partial interval is reported only if it sent packets.
            let empty_tail = finished && progress.sent.total() == 0;
            if !empty_tail && let Err(error) = reporter.write(&Record::Progress(progress)) {
                stop.store(true, Ordering::Relaxed);
                break Err(LoadgenError::Output(error));
            }
        }
        if finished {
            break Ok(());
        }
        thread::sleep(
            next_report
                .saturating_duration_since(now)
                .min(POLL_INTERVAL),
        );
    };
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
    written?;
    let (stop_reason, last_packet) = ended?;
    sniffed?;
    let elapsed = last_packet.saturating_duration_since(start);

    let sent = KindCounts::from(counters.sent());
    let summary = Summary {
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
        replies: replies_on.then_some(previous.replies),
        legit,
    };
    reporter
        .write(&Record::Summary(summary.clone()))
        .map_err(LoadgenError::Output)?;
    Ok(summary)
}

/// The counters at one instant.
struct Snapshot {
    at: Instant,
    sent: PerKind,
    replies: Replies,
}

impl Snapshot {
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
