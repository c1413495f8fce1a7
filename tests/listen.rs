//! `synwall listen`, the binary, in the lab: a real HTTP server behind it, curl in front; the
//! documented start-up errors; a restart after kill -9. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{privileged_lab, require_tool};
use lab::{
    HttpServer, as_nobody_with, curl, in_ns, listen, listen_args, served_v4, synwall_output,
    upstream,
};
use synwall::lab::{SERVER_V4, Topology};

/// Namespace names of this file's labs start with this.
const LAB: &str = "swl";

/// A lab for the HTTP tests: curl on the client side, python3's http.server upstream.
fn http_lab() -> Option<Topology> {
    if !require_tool("curl") || !require_tool("python3") {
        return None;
    }
    privileged_lab(LAB)
}

#[test]
fn test_curl_through_synwall_listen() {
    let Some(topology) = http_lab() else {
        return;
    };
    let body: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let _http = HttpServer::start(&topology, body.as_bytes());
    let _synwall = listen(&topology, &upstream(), &["--syncookies", "always"]);
    for _ in 0..20 {
        assert_eq!(curl(&topology).expect("curl through synwall"), body);
    }
}

#[test]
fn test_restart_after_kill_9() {
    let Some(topology) = http_lab() else {
        return;
    };
    let _http = HttpServer::start(&topology, b"still here\n");
    let mut first = listen(&topology, &upstream(), &[]);
    assert_eq!(curl(&topology).unwrap(), "still here\n");
    first.kill(); // SIGKILL: no clean-up of any kind
    let _second = listen(&topology, &upstream(), &[]);
    assert_eq!(
        curl(&topology).expect("works again after kill -9"),
        "still here\n"
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
