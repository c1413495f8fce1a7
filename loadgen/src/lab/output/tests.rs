//! Unit tests of the lab's output: the rows, a target's steady means and server CPU per
//! SYN-ACK, the comparison of synwall with each other target, and when it is withheld.

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
