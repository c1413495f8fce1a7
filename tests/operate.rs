//! Operating synwall: metrics scraped during a flood, `synwall status` against iproute2 and
//! `ss`, SIGHUP reload with a connection and a handshake in flight, a fleet of two instances
//! sharing a secret, running as nobody with the capabilities the deployment files grant and
//! stopping clearly without one. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;
#[path = "support/metrics_doc.rs"]
mod metrics_doc;

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CAPABILITIES, privileged_lab, require_tool};
use lab::{
    EchoUpstream, SynwallProcess, as_nobody_with, in_ns, listen, listen_args, listen_behind,
    served_v4, syn_flood, synwall_output, upstream,
};
use loadgen::lab::Topology;
use synwall::cookie::keys::Secret;
use synwall::metrics::Scrape;

/// Namespace names of this file's labs start with this.
const LAB: &str = "swo";

/// The text synwall's metrics endpoint serves (loopback of the server namespace).
fn scrape_text(topology: &Topology) -> String {
    in_ns(topology, &topology.server_ns, || {
        synwall::metrics::fetch_text(synwall::settings::DEFAULT_METRICS.parse().unwrap())
    })
    .expect("the metrics endpoint answers")
}

/// Scrapes synwall's metrics endpoint.
fn scrape(topology: &Topology) -> Scrape {
    Scrape::parse(&scrape_text(topology))
}

/// A client connection in the client namespace that outlives one call.
fn connect(topology: &Topology) -> TcpStream {
    in_ns(topology, &topology.client_ns, || {
        TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))
    })
    .expect("connected through synwall")
}

/// Writes `message` and reads the echo back.
fn echo(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(message)?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

/// Drops the client's pure ACKs to port 80: its handshake completes on its side only, and its
/// next segment carries the cookie.
fn hold_final_acks(topology: &Topology, hold: bool) {
    let args: &[&str] = if hold {
        &[
            "nft",
            "add table inet synwall_hold; add chain inet synwall_hold out { type filter hook output priority 0; }; add rule inet synwall_hold out tcp dport 80 tcp flags == ack drop",
        ]
    } else {
        &["nft", "delete table inet synwall_hold"]
    };
    topology.run_in(&topology.client_ns, args).expect("nft");
}

fn write_secret(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    Secret::random().unwrap().store(&path).unwrap();
    path.to_str().unwrap().to_owned()
}

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
    // The socket statistics are published once a second: scrape until they have caught up (a
    // loaded machine takes longer; the loop ends as soon as they have).
    let flooded = |scrape: &Scrape| {
        let grew = |family: &str| scrape.family(family) - before.family(family);
        grew("synwall_syn_received_total")
            + grew("synwall_xsk_rx_dropped_total")
            + grew("synwall_xsk_rx_ring_full_total")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = scrape(&topology);
    while flooded(&after) < 19_000.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&topology);
    }

    let grew = |family: &str| after.family(family) - before.family(family);
    // Every SYN of the flood is accounted for: read by synwall, or dropped by the kernel
    // because synwall's rx ring was full (counted by the socket, exported as a metric).
    let redirected = after.sum("synwall_xdp_frames_total", &[("verdict", "redirected")]);
    assert!(redirected >= 19_000.0, "{after:?}");
    assert!(grew("synwall_syn_received_total") > 0.0, "{after:?}");
    assert!(flooded(&after) >= 19_000.0, "unaccounted SYNs: {after:?}");
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
    let text = scrape_text(&topology);
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

    // The terminal view reads the same endpoint.
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

    // One log line when the SYN queue (64 entries) starts overflowing, not one per packet.
    // The flood monitor looks once a second: the flood may have ended before its first look.
    synwall.wait_for_log("SYN flood: the SYN queue is full");
    drop(client);
    let log = synwall.stop();
    assert_eq!(log.matches("SYN flood: ").count(), 1, "{log}");
}

#[test]
fn test_sighup_reloads_without_dropping_anything() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let dir = tempfile::tempdir().unwrap();
    let (secret_a, secret_b) = (write_secret(dir.path(), "a"), write_secret(dir.path(), "b"));
    let config = dir.path().join("synwall.toml");
    let write_config = |secret: &str, syncookies: &str, backlog: u32| {
        let text = format!(
            "interface = \"{}\"\nlisten = [\"198.18.0.1:80\"]\nupstream = \"{}\"\n\
             secret-file = \"{secret}\"\nsyncookies = \"{syncookies}\"\nmax-syn-backlog = {backlog}\n",
            topology.server_if,
            upstream()
        );
        std::fs::write(&config, text).unwrap();
    };
    write_config(&secret_a, "always", 1024);
    let config_path = config.to_str().unwrap();
    // systemd's side of Type=notify: a datagram socket named by $NOTIFY_SOCKET.
    let mut systemd = Notifications::bind(&dir.path().join("notify"));
    let mut synwall = SynwallProcess::spawn_with(
        &topology.server_ns,
        &["env", &systemd.variable()],
        &["listen", "--config", config_path],
    );
    synwall.wait_serving();
    let ready = systemd.wait_for("READY=1");
    assert!(
        ready.contains("STATUS=serving 198.18.0.1:80 on ") && ready.contains("handoff repair"),
        "{ready}"
    );
    assert!(
        ready.contains(&format!("secret from {secret_a}")),
        "{ready}"
    );
    // No handoff key, an upstream and nothing on the served port: auto keeps proxying.
    assert!(
        synwall
            .log()
            .contains("nothing listens on 198.18.0.1:80 and the upstream"),
        "{}",
        synwall.log()
    );

    // An established connection, and a handshake whose final ACK synwall has not seen yet.
    let mut established = connect(&topology);
    assert_eq!(echo(&mut established, b"one").unwrap(), b"one");
    hold_final_acks(&topology, true);
    let mut in_flight = connect(&topology);
    hold_final_acks(&topology, false);

    // A new secret, new reloadable settings, and one that needs a restart.
    write_config(&secret_b, "when-full", 2048);
    // What ExecReload= runs before the signal: a file that checks out.
    let check = synwall_output(
        &topology.server_ns,
        &[],
        &["check-config", "-c", config_path],
    );
    assert!(check.status.success(), "{check:?}");
    synwall.signal("HUP");
    synwall.wait_for_log("reloaded");
    systemd.wait_for("RELOADING=1");
    let reloaded = systemd.wait_for("READY=1");
    assert!(!reloaded.contains("refused"), "{reloaded}");
    let reloads = scrape(&topology);
    assert_eq!(reloads.get("synwall_config_last_reload_successful"), 1.0);
    assert!(
        reloads.get("synwall_config_last_reload_success_timestamp_seconds")
            > reloads.get("process_start_time_seconds")
    );
    assert!(
        synwall.log().contains("max-syn-backlog"),
        "the restart-only change is named: {}",
        synwall.log()
    );

    assert_eq!(
        echo(&mut established, b"two").unwrap(),
        b"two",
        "the connection survived"
    );
    assert_eq!(
        echo(&mut in_flight, b"three").unwrap(),
        b"three",
        "the handshake in flight completed with its old-key cookie"
    );
    let mut new = connect(&topology);
    assert_eq!(echo(&mut new, b"four").unwrap(), b"four");

    // A broken file changes nothing, and says so: check-config (ExecReload=) fails, and the
    // status and the metrics tell when the signal came anyway.
    std::fs::write(&config, "interface = 7\n").unwrap();
    let check = synwall_output(
        &topology.server_ns,
        &[],
        &["check-config", "-c", config_path],
    );
    assert!(!check.status.success(), "check-config passed a broken file");
    synwall.signal("HUP");
    synwall.wait_for_log("the running settings stay");
    let refused = systemd.wait_for("READY=1");
    assert!(refused.contains("the last reload was refused"), "{refused}");
    let after = scrape(&topology);
    assert_eq!(after.get("synwall_config_last_reload_successful"), 0.0);
    assert!(
        after.get("synwall_config_last_reload_attempt_timestamp_seconds")
            > after.get("synwall_config_last_reload_success_timestamp_seconds")
    );
    let mut after_error = connect(&topology);
    assert_eq!(echo(&mut after_error, b"five").unwrap(), b"five");
    synwall.stop();
    systemd.wait_for("STOPPING=1");
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
    // Nothing running: said plainly, naming what was looked at, and exit status 1.
    let (code, _, stderr) = status(&topology, false);
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
    let (code, json, _) = status(&topology, true);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(json["synwall_found"], false, "{json}");

    let _upstream = EchoUpstream::start(&topology);
    // Repair first, with nothing listening on the served port; then native, beside the service.
    let mut service = None;
    for handoff in ["repair", "native"] {
        if handoff == "native" {
            service = Some(EchoUpstream::start_on(&topology, lab::PORT));
        }
        let synwall = listen(&topology, &upstream(), &["--handoff", handoff]);
        let (id, mode) = xdp_seen_by_ip(&topology);
        let (code, text, stderr) = status(&topology, false);
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

        let (code, json, stderr) = status(&topology, true);
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

        // What README and deploy/README say: in repair mode no kernel socket listens on the
        // served port, so `ss -ltn` shows nothing there, though synwall serves it.
        if handoff == "repair" {
            let listening = topology
                .run_in(&topology.server_ns, &["ss", "-Hltn", "sport", "=", ":80"])
                .expect("ss");
            assert!(listening.trim().is_empty(), "{listening}");
        }
    }
    drop(service);
}

/// The service manager's end of `$NOTIFY_SOCKET`: the notifications synwall sends.
struct Notifications {
    socket: UnixDatagram,
    path: String,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Notifications {
            socket,
            path: path.to_str().unwrap().to_owned(),
        }
    }

    /// `NOTIFY_SOCKET=...`, for `env`.
    fn variable(&self) -> String {
        format!("NOTIFY_SOCKET={}", self.path)
    }

    /// The next notification holding a line `line`, skipping others; panics after 10 s.
    #[track_caller]
    fn wait_for(&mut self, line: &str) -> String {
        let mut buffer = [0; 4096];
        loop {
            let length = self
                .socket
                .recv(&mut buffer)
                .unwrap_or_else(|error| panic!("no {line} from synwall: {error}"));
            let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
            if message.lines().any(|sent| sent == line) {
                return message;
            }
        }
    }
}

/// Runs the fleet scenario: instance one answers the SYN, dies; instance two (with `secret_two`)
/// gets the client's next segment. Returns what the client saw.
fn handshake_across_instances(
    topology: &Topology,
    secret_one: &str,
    secret_two: &str,
) -> std::io::Result<Vec<u8>> {
    let start = |secret: &str| {
        let extra = ["--syncookies", "always", "--secret-file", secret];
        listen(topology, &upstream(), &extra)
    };
    let one = start(secret_one);
    hold_final_acks(topology, true);
    let mut client = connect(topology);
    hold_final_acks(topology, false);
    drop(one); // SIGKILL: no state survives it
    let _two = start(secret_two);
    echo(&mut client, b"which replica?")
}

#[test]
fn test_fleet_sharing_a_secret_validates_each_others_cookies() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let dir = tempfile::tempdir().unwrap();
    let shared = write_secret(dir.path(), "fleet");
    let other = write_secret(dir.path(), "other");
    assert_eq!(
        handshake_across_instances(&topology, &shared, &shared)
            .expect("the second instance took it over"),
        b"which replica?"
    );
    let error = handshake_across_instances(&topology, &shared, &other).unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::ConnectionReset,
        "a foreign cookie is refused"
    );
}

#[test]
fn test_runs_as_nobody_with_the_documented_capabilities() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    // Repair: the echo service behind the proxy; native: the echo service on the served port.
    let _upstream = EchoUpstream::start(&topology);
    let _service = EchoUpstream::start_on(&topology, lab::PORT);
    // tests/deploy.rs checks that the unit and the DaemonSet grant exactly these.
    let prefix = as_nobody_with(&CAPABILITIES);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    for handoff in ["repair", "native"] {
        let synwall = listen_behind(&topology, &prefix, &upstream(), &["--handoff", handoff]);
        let started = Instant::now();
        let mut client = connect(&topology);
        let echoed = echo(&mut client, b"as nobody");
        assert_eq!(
            echoed.as_deref().ok(),
            Some(&b"as nobody"[..]),
            "{handoff}: {echoed:?}; synwall's log:\n{}",
            synwall.log()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(synwall.log().contains(&format!("; handoff {handoff}")));
    }
}

#[test]
fn test_a_missing_capability_stops_the_start_with_its_name() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let without = |missing: &str, handoff: &str| {
        let caps: Vec<&str> = CAPABILITIES
            .into_iter()
            .filter(|cap| *cap != missing)
            .collect();
        let prefix = as_nobody_with(&caps);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let upstream = upstream();
        let args = listen_args(&topology.server_if, &upstream, &["--handoff", handoff]);
        let output = synwall_output(&topology.server_ns, &prefix, &args);
        assert!(!output.status.success(), "started without {missing}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // CAP_IPC_LOCK is left out: LimitMEMLOCK stands in for it.
    for missing in ["NET_BIND_SERVICE", "NET_ADMIN", "BPF", "NET_RAW"] {
        let stderr = without(missing, "repair");
        let named = format!("CAP_{missing}");
        assert!(stderr.contains(&named), "repair, without {named}: {stderr}");
    }
    // Native handoff binds no socket: it needs no CAP_NET_BIND_SERVICE.
    for missing in ["NET_ADMIN", "BPF", "NET_RAW"] {
        let stderr = without(missing, "native");
        let named = format!("CAP_{missing}");
        assert!(stderr.contains(&named), "native, without {named}: {stderr}");
    }
}

/// What a process traced by `strace -f -C -o FILE` did: the system calls it made (the names in
/// strace's summary table), and the address families of the sockets it opened.
#[derive(Debug, Default)]
struct Traced {
    calls: BTreeSet<String>,
    families: BTreeSet<String>,
}

impl Traced {
    fn add(&mut self, file: &Path) {
        let text = std::fs::read_to_string(file).expect("strace's output");
        // Calls: `PID socket(AF_XDP, SOCK_RAW, 0) = 5`.
        self.families.extend(text.lines().filter_map(|line| {
            let (_, arguments) = line.split_once(" socket(")?;
            Some(arguments.split(',').next()?.to_owned())
        }));
        // The summary's rows: `% time  seconds  usecs/call  calls  [errors]  syscall`, between
        // the dashed line and the total.
        self.calls.extend(
            text.lines()
                .skip_while(|line| !line.starts_with("% time"))
                .skip(2)
                .take_while(|line| !line.starts_with("------"))
                .filter_map(|line| line.split_whitespace().last())
                .map(str::to_owned),
        );
    }
}

/// The values of the unit's `key=` lines, split at white space.
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/synwall.service"
    ))
    .unwrap();
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .inspect(|values| assert!(!values.starts_with('~'), "{key}: an allow-list only"))
        .flat_map(|values| values.split_whitespace().map(str::to_owned))
        .collect()
}

/// Every system call the unit's `SystemCallFilter=` lines allow (groups expanded by
/// `systemd-analyze syscall-filter`).
fn allowed_by_the_unit() -> BTreeSet<String> {
    let mut pending = unit_values("SystemCallFilter");
    assert!(!pending.is_empty(), "the unit has a SystemCallFilter");
    let mut allowed = BTreeSet::new();
    while let Some(entry) = pending.pop() {
        if !allowed.insert(entry.clone()) || !entry.starts_with('@') {
            continue;
        }
        let output = Command::new("systemd-analyze")
            .args(["syscall-filter", &entry])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "systemd-analyze syscall-filter {entry}"
        );
        pending.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned),
        );
    }
    allowed
}

/// The pid of the only child of `parent` (strace's tracee).
fn only_child(parent: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    children.trim().parse().expect("one child")
}

/// Waits until process `pid` has exited (a zombie, or gone).
fn wait_exited(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit_once(") ").unwrap().1.starts_with('Z'))
    {
        assert!(Instant::now() < deadline, "{pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn test_system_calls_stay_within_the_units_filter() {
    if !require_tool("strace") || !require_tool("systemd-analyze") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let _service = EchoUpstream::start_on(&topology, lab::PORT);
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path(), "secret");
    let mut traced = Traced::default();
    for handoff in ["native", "repair"] {
        let summary = dir.path().join(format!("{handoff}.strace"));
        let strace = ["strace", "-f", "-qq", "-C", "-o", summary.to_str().unwrap()];
        let upstream = upstream();
        // Pinned to a CPU: the fast path's affinity call is made too.
        let extra = [
            "--handoff",
            handoff,
            "--secret-file",
            &secret,
            "--cpus",
            "0",
        ];
        let args = listen_args(&topology.server_if, &upstream, &extra);
        // What systemd runs: ExecStartPre= (check-config), ExecStart= (listen), and on reload
        // check-config and SIGHUP; then the stop.
        let check_args: Vec<&str> = ["check-config"]
            .into_iter()
            .chain(args[1..].iter().copied())
            .collect();
        let check = dir.path().join(format!("{handoff}-check.strace"));
        let check_strace = ["strace", "-f", "-qq", "-C", "-o", check.to_str().unwrap()];
        let output = synwall_output(&topology.server_ns, &check_strace, &check_args);
        assert!(output.status.success(), "{output:?}");
        traced.add(&check);

        let mut synwall = SynwallProcess::spawn_with(&topology.server_ns, &strace, &args);
        synwall.wait_serving();
        for round in 0..3 {
            let mut client = connect(&topology);
            assert_eq!(
                echo(&mut client, b"filtered").unwrap(),
                b"filtered",
                "{round}"
            );
        }
        scrape(&topology);
        // Signals go to synwall, strace's child, not to strace.
        let tracee = only_child(synwall.pid()).to_string();
        let kill = |signal: &str| {
            let status = Command::new("kill")
                .args([signal, &tracee])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} {tracee}");
        };
        kill("-HUP");
        synwall.wait_for_log("reloaded");
        kill("-TERM");
        wait_exited(synwall.pid());
        traced.add(&summary);
    }
    let allowed = allowed_by_the_unit();
    let refused: Vec<&String> = traced.calls.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "system calls synwall makes that SystemCallFilter= refuses: {refused:?}"
    );
    assert!(traced.calls.contains("bpf"), "{traced:?}");
    let families: BTreeSet<String> = unit_values("RestrictAddressFamilies").into_iter().collect();
    let refused: Vec<&String> = traced.families.difference(&families).collect();
    assert!(
        refused.is_empty(),
        "sockets synwall opens that RestrictAddressFamilies= refuses: {refused:?}"
    );
    eprintln!("address families used: {:?}", traced.families);
}
