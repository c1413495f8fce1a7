//! Operating synwall, its secret and its settings: SIGHUP reload (as systemd's Type=notify
//! unit does it) with a connection and a handshake in flight, a broken file refused, and a
//! fleet of two instances sharing a secret. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/operate.rs"]
mod operate;

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::privileged_lab;
use lab::{EchoUpstream, SynwallProcess, listen, synwall_output, upstream};
use loadgen::lab::Topology;
use operate::{LAB, connect, echo, hold_final_acks, scrape, write_secret};

#[test]
fn test_sighup_reloads_without_dropping_anything() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let dir = tempfile::tempdir().unwrap();
    let (secret_a, secret_b) = (write_secret(dir.path(), "a"), write_secret(dir.path(), "b"));
    let config = dir.path().join("synwall.toml");
    write_config(&config, &topology, &secret_a, "always", 1024);
    let config_path = config.to_str().unwrap();
    // systemd's side of Type=notify: a datagram socket named by $NOTIFY_SOCKET.
    let mut systemd = Notifications::bind(&dir.path().join("notify"));
    let mut synwall = SynwallProcess::spawn_with(
        &topology.server_ns,
        &["env", &systemd.variable()],
        &["listen", "--config", config_path],
    );
    synwall.wait_serving();
    assert_ready_as_configured(&mut systemd, &synwall, &secret_a);

    // An established connection, and a handshake whose final ACK synwall has not seen yet.
    let mut established = connect(&topology);
    assert_eq!(echo(&mut established, b"one").unwrap(), b"one");
    hold_final_acks(&topology, true);
    let mut in_flight = connect(&topology);
    hold_final_acks(&topology, false);

    // A new secret, new reloadable settings, and one that needs a restart.
    write_config(&config, &topology, &secret_b, "when-full", 2048);
    reload_checked(&topology, &mut synwall, &mut systemd, config_path);

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

    // A broken file changes nothing, and says so.
    std::fs::write(&config, "interface = 7\n").unwrap();
    reload_refused(&topology, &mut synwall, &mut systemd, config_path);
    let mut after_error = connect(&topology);
    assert_eq!(echo(&mut after_error, b"five").unwrap(), b"five");
    synwall.stop();
    systemd.wait_for("STOPPING=1");
}

/// Writes the configuration of synwall on `topology`'s server interface, proxying to the
/// upstream, to `path`.
fn write_config(path: &Path, topology: &Topology, secret: &str, syncookies: &str, backlog: u32) {
    let text = format!(
        "interface = \"{}\"\nlisten = [\"198.18.0.1:80\"]\nupstream = \"{}\"\n\
         secret-file = \"{secret}\"\nsyncookies = \"{syncookies}\"\nmax-syn-backlog = {backlog}\n",
        topology.server_if,
        upstream()
    );
    std::fs::write(path, text).unwrap();
}

/// synwall told the service manager it is ready, serving with `secret`, and logged that with
/// nothing on the served port it proxies.
fn assert_ready_as_configured(systemd: &mut Notifications, synwall: &SynwallProcess, secret: &str) {
    let ready = systemd.wait_for("READY=1");
    assert!(
        ready.contains("STATUS=serving 198.18.0.1:80 on ") && ready.contains("handoff repair"),
        "{ready}"
    );
    assert!(ready.contains(&format!("secret from {secret}")), "{ready}");
    // No handoff key, an upstream and nothing on the served port: auto keeps proxying.
    assert!(
        synwall
            .log()
            .contains("nothing listens on 198.18.0.1:80 and the upstream"),
        "{}",
        synwall.log()
    );
}

/// `synwall check-config` on the file `config`, in `topology`'s server namespace.
fn check_config(topology: &Topology, config: &str) -> Output {
    synwall_output(&topology.server_ns, &[], &["check-config", "-c", config])
}

/// Reloads `config` as systemd does (check-config, then SIGHUP): it checks out, synwall
/// reloads and tells the service manager and the metrics, and names the setting that needs a
/// restart.
fn reload_checked(
    topology: &Topology,
    synwall: &mut SynwallProcess,
    systemd: &mut Notifications,
    config: &str,
) {
    // What ExecReload= runs before the signal: a file that checks out.
    let check = check_config(topology, config);
    assert!(check.status.success(), "{check:?}");
    synwall.signal("HUP");
    synwall.wait_for_log("reloaded");
    systemd.wait_for("RELOADING=1");
    let reloaded = systemd.wait_for("READY=1");
    assert!(!reloaded.contains("refused"), "{reloaded}");
    let reloads = scrape(topology);
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
}

/// A broken `config` changes nothing, and says so: check-config (ExecReload=) fails, and the
/// status and the metrics tell when the signal came anyway.
fn reload_refused(
    topology: &Topology,
    synwall: &mut SynwallProcess,
    systemd: &mut Notifications,
    config: &str,
) {
    let check = check_config(topology, config);
    assert!(!check.status.success(), "check-config passed a broken file");
    synwall.signal("HUP");
    synwall.wait_for_log("the running settings stay");
    let refused = systemd.wait_for("READY=1");
    assert!(refused.contains("the last reload was refused"), "{refused}");
    let after = scrape(topology);
    assert_eq!(after.get("synwall_config_last_reload_successful"), 0.0);
    assert!(
        after.get("synwall_config_last_reload_attempt_timestamp_seconds")
            > after.get("synwall_config_last_reload_success_timestamp_seconds")
    );
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
