//! Operating synwall: metrics scraped during a flood, SIGHUP reload with a connection and a
//! handshake in flight, a fleet of two instances sharing a secret, running as nobody with the
//! capabilities the deployment files grant and stopping clearly without one. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{CAPABILITIES, privileged_lab, require_tool};
use lab::{
    EchoUpstream, SynwallProcess, as_nobody_with, in_ns, listen, listen_args, listen_behind,
    served_v4, syn_flood, synwall_output, upstream,
};
use synwall::cookie::keys::Secret;
use synwall::lab::Topology;
use synwall::metrics::Scrape;

/// Namespace names of this file's labs start with this.
const LAB: &str = "swo";

/// Scrapes synwall's metrics endpoint (loopback of the server namespace).
fn scrape(topology: &Topology) -> Scrape {
    in_ns(topology, &topology.server_ns, || {
        Scrape::fetch(synwall::settings::DEFAULT_METRICS.parse().unwrap())
    })
    .expect("the metrics endpoint answers")
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
    // The socket statistics are published once a second: scrape until they have caught up.
    let flooded = |scrape: &Scrape| {
        let grew = |family: &str| scrape.family(family) - before.family(family);
        grew("synwall_syn_received_total")
            + grew("synwall_xsk_rx_dropped_total")
            + grew("synwall_xsk_rx_ring_full_total")
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut after = scrape(&topology);
    while flooded(&after) < 19_000.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(&topology);
    }

    let grew = |family: &str| after.family(family) - before.family(family);
    // Every SYN of the flood is accounted for: read by synwall, or dropped by the kernel
    // because synwall's rx ring was full (counted by the socket, exported as a metric).
    let redirected = grew("synwall_xdp_redirected_total");
    assert!(redirected >= 19_000.0, "{after:?}");
    assert!(grew("synwall_syn_received_total") > 0.0, "{after:?}");
    assert!(flooded(&after) >= 19_000.0, "unaccounted SYNs: {after:?}");
    assert!(
        grew("synwall_cookies_sent_total") > 0.0,
        "the queue of 64 overflowed into cookies"
    );
    assert!(grew("synwall_syn_queue_overflow_total") > 0.0);
    assert!(after.get("synwall_syn_queue_depth") <= 64.0);
    assert!(grew("synwall_accepted_total") >= 1.0);
    assert_eq!(
        after.get("synwall_handoffs_total"),
        after.family("synwall_accepted_total")
    );
    assert!(after.get("synwall_proxied_total") >= 1.0);
    assert!(after.0.contains_key("synwall_xsk_rx_ring_full_total"));
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
    let sources = after
        .0
        .keys()
        .filter(|series| series.contains("198.18."))
        .count();
    assert_eq!(sources, 0, "no per-source labels");

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

    // One log line when cookies start, not one per packet. The flood monitor looks once a
    // second: the flood may have ended before its first look.
    synwall.wait_for_log("SYN flood: answering with cookies");
    drop(client);
    let log = synwall.stop();
    assert_eq!(
        log.matches("SYN flood: answering with cookies").count(),
        1,
        "{log}"
    );
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
    let mut synwall = SynwallProcess::spawn(
        &topology.server_ns,
        &["listen", "--config", config.to_str().unwrap()],
    );
    synwall.wait_serving();
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
    synwall.signal("HUP");
    synwall.wait_for_log("reloaded");
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

    // A broken file changes nothing.
    std::fs::write(&config, "interface = 7\n").unwrap();
    synwall.signal("HUP");
    synwall.wait_for_log("the running settings stay");
    let mut after_error = connect(&topology);
    assert_eq!(echo(&mut after_error, b"five").unwrap(), b"five");
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
        assert!(synwall.log().contains(&format!("handoff=\"{handoff}\"")));
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
