//! `synwall listen` and `check-config`, the binary, in the lab: the lab's HTTP service behind
//! it, curl in front, and 20 KB each way through an echo upstream; start-up errors that name their cause once, before anything is attached; the
//! settings in effect; JSON logs and the start-up line; a restart after kill -9. Privileged
//! tier, but for the one-line failure.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{privileged_lab, require_tool};
use lab::{
    EchoUpstream, HttpServer, as_nobody_with, curl, http_reply, in_ns, listen, listen_args,
    served_v4, synwall_output, upstream,
};
use loadgen::lab::{SERVER_V4, Topology};

/// Namespace names of this file's labs start with this.
const LAB: &str = "swl";

/// A lab for the HTTP tests: curl on the client side, the lab's HTTP service upstream.
fn http_lab() -> Option<Topology> {
    if !require_tool("curl") {
        return None;
    }
    privileged_lab(LAB)
}

#[test]
fn test_curl_through_synwall_listen() {
    let Some(topology) = http_lab() else {
        return;
    };
    let _http = HttpServer::start(&topology);
    let _synwall = listen(&topology, &upstream(), &["--syncookies", "always"]);
    for _ in 0..20 {
        assert_eq!(curl(&topology).expect("curl through synwall"), http_reply());
    }
}

/// The service on a Unix socket behind synwall's proxy: every exchange answered, each
/// connection announced by a PROXY v2 header the service reads.
#[test]
fn test_curl_through_a_unix_upstream() {
    let Some(topology) = http_lab() else {
        return;
    };
    let directory = tempfile::tempdir().expect("a temporary directory");
    let path = directory.path().join("service.sock");
    let http = HttpServer::start_unix(&path);
    let upstream = format!("unix:{}", path.display());
    let _synwall = listen(&topology, &upstream, &["--proxy-protocol", "v2"]);
    for _ in 0..20 {
        assert_eq!(curl(&topology).expect("curl through synwall"), http_reply());
    }
    let counters = http.counters();
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    assert_eq!(count(&counters.accepted), 20);
    assert_eq!(count(&counters.requests), 20);
    assert_eq!(count(&counters.bad_proxy_header), 0);
}

#[test]
fn test_20_kb_each_way_through_synwall_listen() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _echo = EchoUpstream::start(&topology);
    let _synwall = listen(&topology, &upstream(), &[]);
    let sent: Vec<u8> = (0..20_000).map(|i| b'a' + (i % 26) as u8).collect();
    let echoed = {
        let sent = sent.clone();
        in_ns(&topology, &topology.client_ns, move || {
            let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(&sent)?;
            stream.shutdown(std::net::Shutdown::Write)?;
            let mut echoed = Vec::new();
            stream.read_to_end(&mut echoed).map(|_| echoed)
        })
    };
    assert!(
        echoed.expect("an echo through synwall") == sent,
        "the bytes came back intact"
    );
}

#[test]
fn test_restart_after_kill_9() {
    let Some(topology) = http_lab() else {
        return;
    };
    let _http = HttpServer::start(&topology);
    let mut first = listen(&topology, &upstream(), &[]);
    assert_eq!(curl(&topology).unwrap(), http_reply());
    first.kill(); // SIGKILL: no clean-up of any kind
    let _second = listen(&topology, &upstream(), &[]);
    assert_eq!(
        curl(&topology).expect("works again after kill -9"),
        http_reply()
    );
}

#[test]
fn test_upstream_down_resets_the_client() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _synwall = listen(
        &topology,
        &format!("{SERVER_V4}:8081"),
        &["--upstream-timeout", "1s"],
    );
    let outcome = in_ns(&topology, &topology.client_ns, || {
        let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).map(|_| reply)
    });
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

#[test]
fn test_startup_errors_name_their_cause() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let upstream = upstream();

    let missing = synwall_output(
        &topology.server_ns,
        &[],
        &listen_args("nosuchif0", &upstream, &[]),
    );
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("\"nosuchif0\" does not exist"), "{stderr}");

    let iface = &topology.server_if;
    let nobody = as_nobody_with(&[]);
    let nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    let unprivileged = synwall_output(
        &topology.server_ns,
        &nobody,
        &listen_args(iface, &upstream, &[]),
    );
    assert!(!unprivileged.status.success());
    let stderr = String::from_utf8_lossy(&unprivileged.stderr);
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");

    // What the host cannot serve is refused by check-config and by listen alike, before
    // anything is attached, naming the queue, the CPU or the address, each cause once.
    let refused = [
        (
            vec!["--queues", "0,7"],
            format!("queues: rx queue 7 does not exist: {iface} has 1 rx queue(s)"),
        ),
        (
            vec!["--cpus", "0,99"],
            "cpus: CPU 99 is not one synwall may run on (allowed: ".to_owned(),
        ),
        (
            vec!["--listen", "198.18.9.9:80"],
            "listen: 198.18.9.9:80 is not an address of this host".to_owned(),
        ),
    ];
    for (extra, cause) in &refused {
        for command in ["check-config", "listen"] {
            let mut args = listen_args(iface, &upstream, extra);
            args[0] = command;
            if command == "check-config" {
                args.push("--host");
            }
            let output = synwall_output(&topology.server_ns, &[], &args);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{command} {extra:?}: {stderr}");
            assert_eq!(stderr.matches(cause.as_str()).count(), 1, "{stderr}");
            for premature in ["attached", "zero-copy refused", "os error"] {
                assert!(!stderr.contains(premature), "{command} {extra:?}: {stderr}");
            }
        }
    }

    // veth refuses native XDP with a 9000-byte MTU.
    for (ns, dev) in [
        (&topology.server_ns, &topology.server_if),
        (&topology.client_ns, &topology.client_if),
    ] {
        topology
            .run_in(ns, &["ip", "link", "set", dev, "mtu", "9000"])
            .unwrap();
    }
    let mut args = listen_args(iface, &upstream, &[]);
    args.extend(["--xdp-mode", "native"]);
    let native = synwall_output(&topology.server_ns, &[], &args);
    assert!(!native.status.success());
    let stderr = String::from_utf8_lossy(&native.stderr);
    assert!(
        stderr.contains("attaching the XDP program") && stderr.contains("native"),
        "{stderr}"
    );
}

/// `synwall COMMAND` serving `served` on the lab's server interface in native mode, then
/// `extra`.
fn native<'a>(
    topology: &'a Topology,
    served: &'a str,
    command: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        command,
        "--interface",
        &topology.server_if,
        "--listen",
        served,
        "--handoff",
        "native",
    ];
    args.extend_from_slice(extra);
    args
}

/// Without --host, check-config reads the file, the flags and the secret file, nothing of the
/// host: an interface that does not exist here passes. Needs no privilege.
#[test]
fn test_check_config_alone_does_not_look_at_the_host() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_synwall"))
        .args(["check-config", "--interface", "nonexistent0", "--listen"])
        .args([
            "198.18.0.1:80",
            "--handoff",
            "native",
            "--max-syn-backlog",
            "512",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("not checked against this host: --host does"),
        "{stdout}"
    );
    assert!(stdout.contains("max-syn-backlog = 512"), "{stdout}");
    assert!(stderr.is_empty(), "nothing to warn about: {stderr}");
    // The same with --host names what this host lacks.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_synwall"))
        .args(["check-config", "--interface", "nonexistent0", "--listen"])
        .args(["198.18.0.1:80", "--handoff", "native", "--host"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nonexistent0"), "{stderr}");
}

#[test]
fn test_check_config_prints_the_settings_in_effect() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let served = served_v4().to_string();
    let args = native(
        &topology,
        &served,
        "check-config",
        &["--syncookies", "always", "--host"],
    );
    let check = synwall_output(&topology.server_ns, &[], &args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
    );
    assert!(check.status.success(), "{stderr}");
    // A configuration file, in its own spelling, every default filled in.
    let effective: toml::Table = toml::from_str(&stdout).expect("TOML");
    assert_eq!(
        effective["queues"],
        toml::Value::Array(vec![0.into()]),
        "{stdout}"
    );
    assert!(stdout.contains("syncookies = \"always\""), "{stdout}");
    assert!(stdout.contains("handoff = \"native\""), "{stdout}");
    assert!(stdout.contains("max-syn-backlog = 4096"), "{stdout}");
    assert!(!stdout.contains("Always"), "no Rust names: {stdout}");
    // Native mode, and the service does not listen yet: said, not refused.
    assert!(
        stderr.contains(&format!("nothing listens on {served} yet")),
        "{stderr}"
    );
}

#[test]
fn test_json_logs_and_the_startup_line() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let served = served_v4().to_string();
    let _service = lab::service(&topology, served_v4());
    let args = native(
        &topology,
        &served,
        "listen",
        &["--log-format", "json", "--metrics", "127.0.0.1:0"],
    );
    let mut synwall = lab::SynwallProcess::spawn(&topology.server_ns, &args);
    synwall.wait_for_log("serving");
    let log = synwall.stop();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let startup = lines
        .iter()
        .filter_map(|line| line["message"].as_str())
        .find(|message| message.starts_with("serving"))
        .expect("a start-up line");
    for part in [
        served.as_str(),
        &format!("on {} rx queues [0]", topology.server_if),
        "XDP ",
        "copy mode",
        "handoff native, SYNs answered by the service's listener until its SYN queue fills",
        "secret random",
    ] {
        assert!(startup.contains(part), "{part:?} missing from {startup:?}");
    }
    assert!(lines.iter().all(|line| line["level"].is_string()));
}

#[test]
fn test_a_failure_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, b"").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_synwall"))
        .arg("keygen")
        .arg(&path)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("synwall: "), "{stderr}");
    assert_eq!(stderr.matches("File exists").count(), 1, "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
}
