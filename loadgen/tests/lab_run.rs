//! `synwall-lab` end to end, as a user runs it: short floods against synwall, the kernel and the
//! kernel's XDP SYN proxy, over IPv4 and IPv6, in every attack mode; the fixed-rate figure (the
//! server CPU per SYN-ACK); the JSON report; teardown (nothing of the run left in `ip netns
//! list`, nor in the host's nftables and sysctls), Ctrl-C, and the message when loadgen is
//! missing. The tests assert behaviour, never speed.
//!
//! Privileged tests skip without root outside CI (`require_privileges`) and run one at a time
//! (they flood). `synwall-lab` and loadgen are this package's binaries, which cargo builds
//! for its tests, so a test never runs a missing or stale generator.

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "support/synwall_lab.rs"]
mod synwall_lab;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::assert_namespaces_gone;
use loadgen::lab::run;
use synwall_lab::{
    Session, TARGETS, assert_compared, assert_torn_down, bounded, drain, finish, number, positive,
    run_to_end, spawn_lab, target,
};

#[test]
fn test_lab_compare_runs_every_target_and_tears_down() {
    let Some(session) = Session::start() else {
        return;
    };
    let finished = session.run(&bounded("3s", "50k", &["--compare", "--fixed-rate", "0"]));
    let report = finished.report();
    assert_eq!(report["interrupted"], false);
    assert_eq!(report["ipv6"], false);
    assert!(report["fixed_rate"].is_null(), "{report}");
    for name in TARGETS {
        let run = target(&report, name);
        assert!(number(run, "offered_syn_pps") > 0, "{run}");
        assert!(number(run, "syn_ack_pps") > 0, "{run}");
        assert!(!run["seconds"].as_array().unwrap().is_empty(), "{run}");
        assert_eq!(number(run, "forged_accepted"), 0, "{run}");
        assert!(number(&run["legit"], "ok") > 0, "{run}");
        assert_torn_down(run);
    }
    let synwall = target(&report, "synwall");
    assert_eq!(synwall["xdp_mode"], "native");
    // Every legit client gets in under the flood, on a server CPU with nothing else to do.
    // Another process on it (the lab then withholds the comparison, and says so) takes the
    // time some handshakes need within the clients' timeout.
    if !report["comparison"].is_null() {
        let legit = &synwall["legit"];
        assert_eq!(number(legit, "ok"), number(legit, "attempts"), "{legit}");
        assert_eq!(synwall["legit_success_pct"].as_f64(), Some(100.0));
    }
    assert_compared(&report, "syn_ack_ratio", None, &finished.stderr);
    // The table went to stderr, with its legends.
    for legend in ["SYN-ACK/s =", "Server CPU per SYN-ACK ="] {
        assert!(finished.stderr.contains(legend), "{}", finished.stderr);
    }
}

#[test]
fn test_lab_ipv6_compare_serves_floods_and_clients_over_ipv6() {
    let Some(session) = Session::start() else {
        return;
    };
    let finished = session.run(&bounded(
        "2s",
        "20k",
        &["--ipv6", "--compare", "--fixed-rate", "0"],
    ));
    let report = finished.report();
    assert_eq!(report["ipv6"], true, "{report}");
    assert_eq!(report["interrupted"], false);
    for name in TARGETS {
        let run = target(&report, name);
        // loadgen flooded the server's IPv6 address from the IPv6 spoofed sources.
        let loadgen = &run["loadgen"];
        assert_eq!(loadgen["target"], "[2001:2::1]:80", "{run}");
        assert_eq!(
            loadgen["src_cidr"],
            loadgen::lab::SPOOFED_SOURCES_V6,
            "{run}"
        );
        assert!(number(run, "offered_syn_pps") > 0, "{run}");
        // Every target answered the flood.
        assert!(number(run, "syn_ack_pps") > 0, "{run}");
        // The legit clients, over IPv6, got in; no spoofed source did.
        let legit = &run["legit"];
        assert!(number(legit, "ok") > 0, "{name}: {legit}");
        assert!(number(run, "accepted") >= number(legit, "ok"), "{run}");
        assert_eq!(number(run, "forged_accepted"), 0, "{run}");
    }
    let synwall = target(&report, "synwall");
    let legit = &synwall["legit"];
    assert_eq!(number(legit, "ok"), number(legit, "attempts"), "{legit}");
    // A client that reuses a port whose 4-tuple the server holds in TIME-WAIT is the
    // service's own listener's to take over (native mode), as without synwall; so is one whose
    // SYN came before the flood filled the listener's SYN queue, or as it did (the listener's
    // own cookie; answer-syns = kernel-first).
    let counters = &synwall["counters"];
    assert!(
        number(counters, "HandoffsCompleted")
            + number(counters, "KernelReopens")
            + number(counters, "KernelAnswers")
            + number(counters, "KernelCookies")
            >= number(legit, "ok"),
        "every connection is accounted for: {synwall}"
    );
    assert!(number(counters, "Takeovers") > 0, "{counters}");
    // The run header says which family the run was over.
    assert!(
        finished.stderr.contains("over IPv6 to [2001:2::1]:80"),
        "{}",
        finished.stderr
    );
}

#[test]
fn test_lab_ack_floods_run_against_every_target_and_none_gets_through_synwall() {
    let Some(session) = Session::start() else {
        return;
    };
    for mode in ["ack", "near-miss"] {
        // synwall answers every SYN: the ACKs meet its handshakes, not the kernel's.
        let finished = session.run(&bounded(
            "2s",
            "100k",
            &[
                "--compare",
                "--fixed-rate",
                "0",
                "--mode",
                mode,
                "--answer-syns",
                "synwall",
            ],
        ));
        let report = finished.report();
        assert_eq!(report["mode"], mode, "{report}");
        // Every target faced the flood and counted what got through it (the kernel's cookies
        // let some near-miss ACKs in, so no number is asserted for the other targets).
        for name in TARGETS {
            let run = target(&report, name);
            assert!(number(run, "offered_pps") > 0, "{mode}: {run}");
            assert!(number(&run["legit"], "attempts") > 0, "{mode}: {run}");
            number(run, "forged_accepted");
        }
        let run = target(&report, "synwall");
        let legit = &run["legit"];
        assert_eq!(
            number(legit, "ok"),
            number(legit, "attempts"),
            "{mode}: {legit}"
        );
        assert_eq!(number(run, "forged_accepted"), 0, "{mode}: {run}");
        let counters = &run["counters"];
        let accepted =
            number(counters, "AcceptedFromCookie") + number(counters, "AcceptedFromQueue");
        assert_eq!(accepted, number(legit, "ok"), "{mode}: {counters}");
        assert_eq!(
            number(run, "accepted"),
            number(legit, "ok"),
            "{mode}: {run}"
        );
        // The XDP SYN proxy checked the ACKs in XDP.
        let proxy = &target(&report, "xdp-synproxy")["counters"];
        assert!(number(proxy, "AckInvalid") > 0, "{mode}: {proxy}");
    }
}

#[test]
fn test_lab_xdp_synproxy_target_runs_end_to_end_and_leaves_nothing_behind() {
    let Some(session) = Session::start() else {
        return;
    };
    if !common::require_tool("nft") {
        return;
    }
    let syncookies = "/proc/sys/net/ipv4/tcp_syncookies";
    let loose = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose";
    let host = |path: &str| std::fs::read_to_string(path).ok();
    let before = (host(syncookies), host(loose));
    let finished = session.run(&bounded("2s", "20k", &["--target", "xdp-synproxy"]));
    let report = finished.report();
    let proxy = target(&report, "xdp-synproxy");
    assert_eq!(proxy["xdp_mode"], "native", "{proxy}");
    assert!(number(proxy, "syn_ack_pps") > 0, "{proxy}");
    assert!(number(proxy, "cookies_pps") > 0, "{proxy}");
    let legit = &proxy["legit"];
    assert!(number(legit, "ok") > 0, "{legit}");
    assert_eq!(number(proxy, "forged_accepted"), 0, "{proxy}");
    // The legit clients got in through the program and nftables synproxy.
    let counters = &proxy["counters"];
    assert!(number(counters, "SynAnswered") > 0, "{counters}");
    assert!(
        number(counters, "SynproxyCookieValid") >= number(legit, "ok"),
        "{counters}"
    );
    assert!(
        proxy["placement"]
            .as_str()
            .unwrap()
            .contains("XDP SYN proxy")
    );
    // Nothing of it is left: the namespaces, and the nftables table and sysctls that lived in
    // them only.
    assert_torn_down(proxy);
    let tables = run(&["nft", "list", "tables"]).unwrap();
    assert!(!tables.contains("swlab_synproxy"), "{tables}");
    let after = (host(syncookies), host(loose));
    assert_eq!(after.0, before.0, "the host's tcp_syncookies changed");
    if before.1.is_some() {
        assert_eq!(
            after.1, before.1,
            "the host's nf_conntrack_tcp_loose changed"
        );
    }
}

#[test]
fn test_lab_fixed_rate_reports_server_cpu_per_syn_ack_for_every_target() {
    let Some(session) = Session::start() else {
        return;
    };
    let finished = session.run(&bounded(
        "2s",
        "10k",
        &["--compare", "--mode", "ack", "--fixed-rate", "20k"],
    ));
    let report = finished.report();
    // The flood asked for ran, and the fixed-rate SYN flood after it.
    assert_eq!(report["mode"], "ack", "{report}");
    let fixed = &report["fixed_rate"];
    assert_eq!(fixed["mode"], "syn", "{fixed}");
    assert_eq!(number(fixed, "rate_pps"), 20_000, "{fixed}");
    for name in TARGETS {
        assert!(number(target(&report, name), "offered_pps") > 0);
        let run = target(fixed, name);
        assert!(number(run, "syn_ack_pps") > 0, "{name}: {run}");
        // /proc/stat counts in ticks: at a low rate a target as cheap as the kernel's
        // listener may show no busy tick over the run's steady second, and then no figure.
        let busy = run["server_cpu_busy_pct"].as_f64().expect("a busy share");
        if busy > 0.0 {
            positive(run, "server_cpu_us_per_syn_ack");
            positive(run, "syn_acks_per_server_cpu_s");
        } else {
            assert!(run["server_cpu_us_per_syn_ack"].is_null(), "{name}: {run}");
        }
        positive(run, "answered_pct");
        positive(run, "legit_success_pct");
        assert!(
            number(run, "connect_p50_us") <= number(run, "connect_p99_us"),
            "{run}"
        );
        assert_torn_down(run);
    }
    assert_compared(
        fixed,
        "cpu_per_syn_ack_ratio",
        Some("server_cpu_us_per_syn_ack"),
        &finished.stderr,
    );
    assert!(
        finished.stderr.contains("syn flood at 20000 pkt/s")
            || finished.stderr.contains("no comparison: the server CPU"),
        "{}",
        finished.stderr
    );
}

#[test]
fn test_lab_repair_handoff_serves_through_the_proxy() {
    let Some(session) = Session::start() else {
        return;
    };
    let finished = session.run(&bounded("2s", "20k", &["--handoff", "repair"]));
    let report = finished.report();
    let run = target(&report, "synwall");
    let legit = &run["legit"];
    assert!(number(legit, "ok") > 0, "{legit}");
    assert_eq!(number(legit, "ok"), number(legit, "attempts"), "{legit}");
    // The service behind the proxy learnt each client's address from its PROXY v2 header:
    // none is counted as coming from a spoofed source.
    assert_eq!(number(run, "forged_accepted"), 0, "{run}");
    assert_eq!(number(run, "accepted"), number(legit, "ok"), "{run}");
}

#[test]
fn test_lab_peacetime_measures_both_targets_side_by_side() {
    let Some(session) = Session::start() else {
        return;
    };
    // The kernel on synwall's receive path (a do-nothing XDP program on its veth) once.
    for (handoff, answer_syns, kernel_rx) in [
        ("native", "kernel-first", "xdp-pass"),
        ("native", "synwall", "napi"),
        ("repair", "synwall", "napi"),
    ] {
        let finished = session.run(&[
            "--peacetime",
            "--handoff",
            handoff,
            "--answer-syns",
            answer_syns,
            "--kernel-rx",
            kernel_rx,
            "--phase",
            "1s",
            "--search-step",
            "500ms",
            "--search-max-rate",
            "800",
            "--json",
        ]);
        let report = finished.report();
        for name in ["synwall", "kernel"] {
            let run = target(&report, name);
            let latency = &run["latency"];
            assert!(number(latency, "attempts") > 0, "{handoff}: {run}");
            assert_eq!(
                number(latency, "ok"),
                number(latency, "attempts"),
                "{handoff}: every client of the latency phase got its reply: {latency}"
            );
            assert!(
                !run["search"]["steps"].as_array().unwrap().is_empty(),
                "{handoff}: {run}"
            );
            assert!(
                number(&run["keepalive"], "requests") > 0,
                "{handoff}: {run}"
            );
            // The cost phase ran at the search's highest rate (800/s, below the default) and
            // every connection of it was served; its server CPU time was counted.
            let cost = &run["cost"];
            assert_eq!(number(&cost["connections"], "rate"), 800, "{cost}");
            assert!(number(&cost["connections"], "attempts") > 0, "{cost}");
            assert_eq!(
                number(&cost["connections"], "ok"),
                number(&cost["connections"], "attempts"),
                "{handoff}: {cost}"
            );
            assert!(
                cost["server_cpu_us_per_connection"].as_f64().unwrap() > 0.0,
                "{handoff}: {cost}"
            );
        }
        let kernel_placement = target(&report, "kernel")["placement"].as_str().unwrap();
        assert_eq!(
            kernel_placement.contains("a do-nothing XDP program on its veth"),
            kernel_rx == "xdp-pass",
            "{kernel_placement}"
        );
        let synwall = target(&report, "synwall");
        assert_eq!(synwall["handoff"], handoff);
        let counters = &synwall["counters"];
        if (handoff, answer_syns) == ("native", "kernel-first") {
            // No flood: the service's own listener answered every SYN, as without synwall.
            assert_eq!(synwall["answer_syns"], answer_syns);
            assert!(number(counters, "KernelAnswers") > 0, "{synwall}");
            assert_eq!(number(counters, "Takeovers"), 0, "{synwall}");
            assert_eq!(number(counters, "HandoffsCompleted"), 0, "{synwall}");
        } else {
            assert!(
                number(counters, "HandoffsCompleted") > 0,
                "{handoff}: the connections went through synwall: {synwall}"
            );
        }
        // The side-by-side table, or why there is none (a busy server CPU).
        match report["comparison"]["keepalive_ratio"].as_f64() {
            Some(ratio) => {
                assert!(ratio > 0.0, "{report}");
                assert!(report["comparison"]["cost_ratio"].as_f64().unwrap() > 0.0);
                assert!(
                    finished
                        .stderr
                        .contains("| new connections/s within the objective |"),
                    "{}",
                    finished.stderr
                );
            }
            None => assert!(
                finished.stderr.contains("no comparison: the server CPU"),
                "{report}: {}",
                finished.stderr
            ),
        }
    }
}

/// `--queues 2`: a veth with two queues, a generator thread and a synwall shard on each; both
/// queues answer SYNs and complete legit connections, and the run says it measures no scaling.
#[test]
fn test_lab_two_queues_answer_and_hand_off_on_each() {
    let Some(session) = Session::start() else {
        return;
    };
    let finished = session.run(&bounded("2s", "10k", &["--queues", "2"]));
    let report = finished.report();
    let run = target(&report, "synwall");
    let counters = &run["counters"];
    for queue in 0..2 {
        for name in ["SynReceived", "SynAcksAndCookiesSent", "Accepted"] {
            let field = format!("Queue{queue}{name}");
            assert!(number(counters, &field) > 0, "{field}: {counters}");
        }
    }
    assert_eq!(number(run, "forged_accepted"), 0, "{run}");
    assert!(positive(run, "legit_success_pct") > 0.0);
    let placement = run["placement"].as_str().unwrap();
    assert!(
        placement.contains("2 queues on the veth") && placement.contains("correctness run"),
        "{placement}"
    );
    assert_torn_down(run);
}

#[test]
fn test_lab_ctrl_c_stops_cleanly_and_tears_down() {
    let Some(session) = Session::start() else {
        return;
    };
    let mut child = session.spawn(&["--duration", "30s", "--rate", "20k"]);
    let pid = child.id();
    // Wait for the first table row, then interrupt as a terminal would.
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("synwall-lab ended before its first row: {seen}");
        }
        seen.push_str(&line);
        if line.trim_start().starts_with("1.0s") {
            break;
        }
    }
    run(&["kill", "-INT", &pid.to_string()]).unwrap();
    let rest = drain(stdout);
    let started = Instant::now();
    let finished = finish(child, rest);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?} to stop",
        started.elapsed()
    );
    assert!(!finished.status.success());
    assert!(
        finished.stderr.contains("interrupted"),
        "{}",
        finished.stderr
    );
    assert!(
        finished.stdout.contains("-- synwall:"),
        "{}",
        finished.stdout
    );
    assert_namespaces_gone(&[&format!("swl-{pid}x")]);
}

#[test]
fn test_lab_without_loadgen_says_how_to_build_it() {
    let finished = run_to_end(spawn_lab(&["--loadgen", "/nonexistent/loadgen"]));
    assert!(!finished.status.success());
    assert!(
        finished
            .stderr
            .contains("cargo build --release --workspace"),
        "{}",
        finished.stderr
    );
}
