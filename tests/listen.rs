//! `synwall listen`, the binary, in the lab: a real HTTP server behind it, curl in front; the
//! documented start-up errors; a restart after kill -9. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{require_privileges, require_tool};
use lab::{SynwallProcess, served_v4};
use synwall::lab::{SERVER_V4, Topology};

const UPSTREAM_PORT: u16 = 8080;

fn lab() -> Option<Topology> {
    require_privileges().then(|| Topology::create("swl").expect("creating the lab"))
}

fn upstream() -> String {
    format!("{SERVER_V4}:{UPSTREAM_PORT}")
}

/// `synwall listen` on the lab's server interface, proxying port 80 to `upstream`.
fn listen(topology: &Topology, upstream: &str, extra: &[&str]) -> SynwallProcess {
    let mut args = vec![
        "listen",
        "--interface",
        &topology.server_if,
        "--listen",
        "198.18.0.1:80",
        "--upstream",
        upstream,
    ];
    args.extend_from_slice(extra);
    let mut synwall = SynwallProcess::spawn(&topology.server_ns, &args);
    synwall.wait_serving();
    synwall
}

/// Runs `synwall` to completion in namespace `ns` (for start-up errors).
fn synwall_output(ns: &str, prefix: &[&str], args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(prefix)
        .arg(env!("CARGO_BIN_EXE_synwall"))
        .args(args)
        .output()
        .expect("running synwall")
}

/// A static HTTP server (python3) in the server namespace; killed on drop.
struct HttpServer {
    child: Child,
    /// The directory it serves, removed on drop.
    _root: tempfile::TempDir,
}

impl HttpServer {
    fn start(topology: &Topology, body: &[u8]) -> HttpServer {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), body).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &topology.server_ns,
                "python3",
                "-m",
                "http.server",
            ])
            .args(["--bind", &SERVER_V4.to_string(), &UPSTREAM_PORT.to_string()])
            .arg("--directory")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let port_open = || {
            topology
                .run_in(
                    &topology.server_ns,
                    &["ss", "-tln", &format!("( sport = :{UPSTREAM_PORT} )")],
                )
                .is_ok_and(|out| out.contains(&format!(":{UPSTREAM_PORT}")))
        };
        while !port_open() {
            assert!(Instant::now() < deadline, "the HTTP server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        HttpServer { child, _root: dir }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(topology: &Topology) -> std::io::Result<String> {
    topology.run_in(
        &topology.client_ns,
        &[
            "curl",
            "-sS",
            "--max-time",
            "5",
            "http://198.18.0.1/index.html",
        ],
    )
}

#[test]
fn test_curl_through_synwall_listen() {
    if !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let Some(topology) = lab() else { return };
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
    if !require_tool("curl") || !require_tool("python3") {
        return;
    }
    let Some(topology) = lab() else { return };
    let _http = HttpServer::start(&topology, b"still here\n");
    let mut first = listen(&topology, &upstream(), &[]);
    assert_eq!(curl(&topology).unwrap(), "still here\n");
    first.0.kill().unwrap(); // SIGKILL: no clean-up of any kind
    first.0.wait().unwrap();
    let _second = listen(&topology, &upstream(), &[]);
    assert_eq!(
        curl(&topology).expect("works again after kill -9"),
        "still here\n"
    );
}

#[test]
fn test_upstream_down_resets_the_client() {
    let Some(topology) = lab() else { return };
    let _synwall = listen(
        &topology,
        &format!("{SERVER_V4}:8081"),
        &["--upstream-timeout", "1s"],
    );
    let outcome = topology
        .spawn_in(&topology.client_ns, || {
            let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).map(|_| reply)
        })
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::ConnectionReset);
}

#[test]
fn test_startup_errors_name_their_cause() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = lab() else { return };
    let common_args = |iface: &'static str| {
        vec![
            "listen",
            "--interface",
            iface,
            "--listen",
            "198.18.0.1:80",
            "--upstream",
            "198.18.0.1:8080",
        ]
    };

    let missing = synwall_output(&topology.server_ns, &[], &common_args("nosuchif0"));
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("\"nosuchif0\" does not exist"), "{stderr}");

    let iface: &'static str = Box::leak(topology.server_if.clone().into_boxed_str());
    let unprivileged = synwall_output(
        &topology.server_ns,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ],
        &common_args(iface),
    );
    assert!(!unprivileged.status.success());
    let stderr = String::from_utf8_lossy(&unprivileged.stderr);
    assert!(
        stderr.contains("CAP_NET_ADMIN") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );

    // veth refuses native XDP with a 9000-byte MTU.
    for (ns, dev) in [
        (&topology.server_ns, &topology.server_if),
        (&topology.client_ns, &topology.client_if),
    ] {
        topology
            .run_in(ns, &["ip", "link", "set", dev, "mtu", "9000"])
            .unwrap();
    }
    let mut args = common_args(iface);
    args.extend(["--xdp-mode", "native"]);
    let native = synwall_output(&topology.server_ns, &[], &args);
    assert!(!native.status.success());
    let stderr = String::from_utf8_lossy(&native.stderr);
    assert!(
        stderr.contains("attaching the XDP program") && stderr.contains("native"),
        "{stderr}"
    );
}
