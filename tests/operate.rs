//! Operating synwall, what it shows: metrics scraped during a flood (and `synwall stats`,
//! which reads them), and `synwall status` against iproute2 and `ss`. Reloads and secrets are
//! tested in `operate_reload.rs`, running confined in `operate_confinement.rs`. Privileged
//! tier.

mod common;
#[path = "common/lab.rs"]
mod lab;
#[path = "support/metrics_doc.rs"]
mod metrics_doc;
#[path = "common/operate.rs"]
mod operate;

use std::time::{Duration, Instant};

use common::{privileged_lab, require_tool};
use lab::{EchoUpstream, SynwallProcess, listen, syn_flood, synwall_output, upstream};
use loadgen::lab::Topology;
use operate::{LAB, connect, echo, scrape, scrape_text};
use synwall::metrics::Scrape;

#[test]
fn test_metrics_scraped_during_a_flood() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let mut synwall = listen(&topology, &upstream(), &["--max-syn-backlog", "64"]);
    let before = scrape(&topology);
    syn_flood(&topology, 20_000);
    let mut client = connect(&topology);
    assert_eq!(
        echo(&mut client, b"during a flood").unwrap(),
        b"during a flood"
    );
    let after = scrape_once_the_flood_is_counted(&topology, &before);
    assert_flood_accounted_for(&before, &after);
    assert_series_as_documented(&topology, &after);
    assert_stats_reads_the_endpoint(&topology);

    // One log line when the SYN queue (64 entries) starts overflowing, not one per packet.
    // The flood monitor looks once a second: the flood may have ended before its first look.
    synwall.wait_for_log("SYN flood: the SYN queue is full");
    drop(client);
    let log = synwall.stop();
    assert_eq!(log.matches("SYN flood: ").count(), 1, "{log}");
}

/// The SYNs the metrics account for since `before`: read by synwall, or dropped by the kernel
/// because synwall's rx ring was full.
fn flood_counted(before: &Scrape, scrape: &Scrape) -> f64 {
    let grew = |family: &str| scrape.family(family) - before.family(family);
    grew("synwall_syn_received_total")
        + grew("synwall_xsk_rx_dropped_total")
        + grew("synwall_xsk_rx_ring_full_total")
}

/// Scrapes until the metrics account for nearly all of the flood's 20,000 SYNs, for 30 s at
/// most.
fn scrape_once_the_flood_is_counted(topology: &Topology, before: &Scrape) -> Scrape {
    // The socket statistics are published once a second: scrape until they have caught up (a
    // loaded machine takes longer; the loop ends as soon as they have).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = scrape(topology);
    while flood_counted(before, &after) < 19_000.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(topology);
    }
    after
}

/// Every SYN of the flood between `before` and `after` is accounted for, the SYN queue of 64
/// overflowed into cookies, and the client's connection was accepted, handed off and proxied.
fn assert_flood_accounted_for(before: &Scrape, after: &Scrape) {
    let grew = |family: &str| after.family(family) - before.family(family);
    // Every SYN of the flood is accounted for: read by synwall, or dropped by the kernel
    // because synwall's rx ring was full (counted by the socket, exported as a metric).
    let redirected = after.sum("synwall_xdp_frames_total", &[("verdict", "redirected")]);
    assert!(redirected >= 19_000.0, "{after:?}");
    assert!(grew("synwall_syn_received_total") > 0.0, "{after:?}");
    assert!(
        flood_counted(before, after) >= 19_000.0,
        "unaccounted SYNs: {after:?}"
    );
    assert!(
        after.sum("synwall_synacks_sent_total", &[("kind", "cookie")]) > 0.0,
        "the queue of 64 overflowed into cookies"
    );
    assert!(grew("synwall_syn_queue_overflow_total") > 0.0);
    assert!(after.family("synwall_syn_queue_depth") <= 64.0);
    assert_eq!(after.family("synwall_syn_queue_capacity"), 64.0);
    assert!(grew("synwall_accepted_total") >= 1.0);
    assert_eq!(
        after.get("synwall_handoffs_total"),
        after.family("synwall_accepted_total")
    );
    assert!(after.get("synwall_proxied_connections_total") >= 1.0);
}

/// The series of `after`, and the text `topology`'s endpoint serves: one queue's, with the
/// secret's source and the UMEM in the resident memory, as the metrics document says (and
/// promtool finds nothing), with the handshake histogram and the build, and no address but
/// the served one.
fn assert_series_as_documented(topology: &Topology, after: &Scrape) {
    // The lab's veth has one rx queue: every per-queue series is queue 0's.
    assert_eq!(
        after.label_values("synwall_xsk_rx_ring_full_total", "queue"),
        ["0".to_owned()].into()
    );
    assert_eq!(
        after.sum("synwall_syn_received_total", &[("queue", "0")]),
        after.family("synwall_syn_received_total")
    );
    assert_eq!(after.get("synwall_secret_info{source=\"random\"}"), 1.0);
    assert!(
        after.get("process_resident_memory_bytes") > 16.0 * 1024.0 * 1024.0,
        "the UMEM"
    );
    let text = scrape_text(topology);
    metrics_doc::assert_agrees_with_the_document(&text);
    if require_tool("promtool") {
        metrics_doc::assert_promtool_finds_nothing(&text);
    }
    assert!(
        after
            .0
            .keys()
            .any(|series| series.starts_with("synwall_handshake_duration_seconds_bucket"))
    );
    assert_eq!(
        after.get(&format!(
            "synwall_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    // No per-source labels: the only address in a series is the served one, from the
    // configuration.
    let addressed: Vec<&String> = after
        .0
        .keys()
        .filter(|series| series.contains("198.18."))
        .collect();
    assert_eq!(
        addressed,
        ["synwall_served_info{address=\"198.18.0.1:80\"}"],
        "{after:?}"
    );
}

/// `synwall stats`, the terminal view, reads the same endpoint: a line per interval, or JSON
/// lines per queue.
fn assert_stats_reads_the_endpoint(topology: &Topology) {
    let view = topology
        .run_in(
            &topology.server_ns,
            &[
                env!("CARGO_BIN_EXE_synwall"),
                "stats",
                "--count",
                "1",
                "--interval",
                "200ms",
            ],
        )
        .expect("synwall stats");
    assert!(view.lines().next().unwrap().contains("SYN/s"), "{view}");
    assert_eq!(view.lines().count(), 2, "{view}");
    let json = topology
        .run_in(
            &topology.server_ns,
            &[
                env!("CARGO_BIN_EXE_synwall"),
                "stats",
                "--json",
                "--per-queue",
                "--count",
                "2",
                "--interval",
                "100ms",
            ],
        )
        .expect("synwall stats --json --per-queue");
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect();
    let queues: Vec<String> = lines.iter().map(|line| line["queue"].to_string()).collect();
    assert_eq!(queues, ["0", "\"all\"", "0", "\"all\""], "{json}");
    for line in &lines {
        // Measured between the scrapes: about the interval, which keeps the lines' cadence.
        let interval = line["interval_seconds"].as_f64().unwrap();
        assert!((0.05..1.0).contains(&interval), "{line}");
        assert!(line["syns_per_second"].is_number(), "{line}");
    }
    assert!(lines[1]["dropped_no_socket_per_second"].is_number());
}

/// `synwall status` in the server namespace: its exit status, standard output and error.
fn status(topology: &Topology, json: bool) -> (Option<i32>, String, String) {
    let mut args = vec!["status", "--interval", "100ms"];
    if json {
        args.push("--json");
    }
    let output = synwall_output(&topology.server_ns, &[], &args);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The XDP program on the server's interface as iproute2 sees it: its id and its mode
/// (`native` for the driver's hook, `generic` for the socket-buffer one).
fn xdp_seen_by_ip(topology: &Topology) -> (u64, &'static str) {
    let text = topology
        .run_in(
            &topology.server_ns,
            &["ip", "-json", "link", "show", "dev", &topology.server_if],
        )
        .expect("ip link show");
    let links: serde_json::Value = serde_json::from_str(&text).expect("ip's JSON");
    let xdp = &links[0]["xdp"];
    // XDP_ATTACHED_DRV = 1, XDP_ATTACHED_SKB = 2 (linux/if_link.h).
    let mode = match xdp["mode"].as_u64() {
        Some(1) => "native",
        Some(2) => "generic",
        other => panic!("unexpected XDP mode {other:?}: {text}"),
    };
    (xdp["prog"]["id"].as_u64().expect("a program id"), mode)
}

#[test]
fn test_status_tells_what_is_attached_and_served() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    assert_status_finds_nothing(&topology);

    let _upstream = EchoUpstream::start(&topology);
    // Repair first, with nothing listening on the served port; then native, beside the service.
    let mut service = None;
    for handoff in ["repair", "native"] {
        if handoff == "native" {
            service = Some(EchoUpstream::start_on(&topology, lab::PORT));
        }
        let synwall = listen(&topology, &upstream(), &["--handoff", handoff]);
        let program = xdp_seen_by_ip(&topology);
        assert_status_text(&topology, handoff, program, &synwall);
        assert_status_json(&topology, handoff, program);

        // What README and deploy/README say: in repair mode, with answer-syns = kernel-first
        // (the default), `ss -ltnp` shows synwall's own listener on the served port.
        if handoff == "repair" {
            let listening = topology
                .run_in(&topology.server_ns, &["ss", "-Hltnp", "sport", "=", ":80"])
                .expect("ss");
            assert!(listening.contains("\"synwall\""), "{listening}");
        }
    }
    drop(service);
}

/// With nothing running, `synwall status` says so plainly, naming what it looked at, and
/// exits with status 1.
fn assert_status_finds_nothing(topology: &Topology) {
    let (code, _, stderr) = status(topology, false);
    assert_eq!(code, Some(1), "{stderr}");
    for named in [
        "no synwall found",
        "synwall_steer",
        topology.server_if.as_str(),
        "synwall_handoff on lo's tcx ingress",
        "127.0.0.1:9464",
    ] {
        assert!(stderr.contains(named), "{named}: {stderr}");
    }
    let (code, json, _) = status(topology, true);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["synwall_found"], false, "{json}");
}

/// `synwall status` names synwall's `program` (id and mode) on the server's interface, what it
/// serves, its `handoff` mode, its secret, its queues and the flood state.
fn assert_status_text(
    topology: &Topology,
    handoff: &str,
    (id, mode): (u64, &str),
    synwall: &SynwallProcess,
) {
    let (code, text, stderr) = status(topology, false);
    assert_eq!(code, Some(0), "{stderr}\n{text}\n{}", synwall.log());
    let row = text
        .lines()
        .find(|line| line.trim_start().starts_with(topology.server_if.as_str()))
        .unwrap_or_else(|| panic!("no row of {}: {text}", topology.server_if));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[1..],
        [id.to_string().as_str(), "synwall_steer", mode, "yes"],
        "{text}"
    );
    let served = format!("serves     198.18.0.1:80 on {}", topology.server_if);
    assert!(text.contains(&served), "{text}");
    assert!(text.contains(&format!("handoff    {handoff}")), "{text}");
    assert!(text.contains("secret     random"), "{text}");
    // A veth works in copy mode only.
    assert!(text.contains(": 0 (copy)"), "{text}");
    assert!(text.contains("flood      none"), "{text}");
    let attached = text.contains("lo tcx ingress: synwall_handoff (id");
    assert_eq!(attached, handoff == "native", "{text}");
    let finish = format!("{} tcx ingress: synwall_finish (id", topology.server_if);
    assert_eq!(text.contains(&finish), handoff == "native", "{text}");
}

/// `synwall status --json` tells the same as JSON, with the instance's metrics.
fn assert_status_json(topology: &Topology, handoff: &str, (id, mode): (u64, &str)) {
    let (code, json, stderr) = status(topology, true);
    assert_eq!(code, Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["synwall_found"], true);
    let interface = json["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|interface| interface["name"] == topology.server_if.as_str())
        .expect("the server's interface");
    assert_eq!(
        interface["xdp"]["programs"],
        serde_json::json!([{"id": id, "name": "synwall_steer", "mode": mode, "synwall": true}])
    );
    let handoff_programs = json["lo_tcx_ingress"]["programs"].as_array().unwrap();
    assert_eq!(
        handoff_programs
            .iter()
            .any(|program| program["name"] == "synwall_handoff" && program["synwall"] == true),
        handoff == "native",
        "{json}"
    );
    let instance = &json["metrics"]["instance"];
    assert_eq!(instance["handoff"], handoff, "{json}");
    assert_eq!(instance["served"], serde_json::json!(["198.18.0.1:80"]));
    assert_eq!(instance["interface"], topology.server_if.as_str());
    assert_eq!(instance["queues"][0]["zero_copy"], false, "{json}");
    assert!(
        instance["interface_rx_queues"].as_u64().unwrap()
            >= instance["queues"].as_array().unwrap().len() as u64
    );
    assert!(instance["uptime_seconds"].as_f64().unwrap() < 600.0);
}
