//! The README's quick start, as far as a test may go on a host it does not own. Its five
//! commands are read from the README and each is run as written, but for the interface and the
//! address (the lab's) and for what would change the host:
//! 1. `make deb`: the package of the binary under test, built by cargo-deb as `make deb` does;
//! 2. `apt install`: the package unpacked into a directory (`dpkg-deb -x`), with the secret its
//!    postinst makes, instead of installed; its /etc/synwall stands for the host's;
//! 3. `check-config ... --write`: as written, in the lab's server namespace;
//! 4. `systemctl enable --now`: what the packaged unit runs, ExecStartPre= then ExecStart=
//!    (CI has no systemd);
//! 5. `synwall status`: as written.
//!
//! The service listens before synwall starts, as the README assumes; a client then reaches it
//! through synwall, handed over natively. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;
#[path = "support/package.rs"]
mod package;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{privileged_lab, require_tool};
use lab::{SynwallProcess, in_ns, served_v4, service, synwall_output};
use loadgen::lab::Topology;
use package::{MANIFEST, check_with};

/// The README's stand-ins, and what the lab has instead.
const README_INTERFACE: &str = "eth0";
const README_ADDRESS: &str = "203.0.113.10:443";

/// The quick start's commands, comments dropped.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(MANIFEST).join("README.md")).unwrap();
    let (_, after) = readme
        .split_once("<!-- quick-start")
        .expect("the README marks its quick start");
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, block)| block.split_once("```"))
        .expect("a shell block")
        .0;
    block
        .lines()
        .map(|line| line.split_once("  #").map_or(line, |(command, _)| command))
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

/// `command`'s words after its prefix `expected` (which it must start with).
#[track_caller]
fn words_after<'a>(command: &'a str, expected: &str) -> Vec<&'a str> {
    command
        .strip_prefix(expected)
        .unwrap_or_else(|| panic!("{command:?} should start with {expected:?}"))
        .split_whitespace()
        .collect()
}

/// The values of `key=` lines of a systemd unit.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn test_the_readme_quick_start_protects_a_running_service_natively() {
    let commands = quick_start();
    let (check_config, status) = expect_the_five_commands(&commands);
    if !require_tool("cargo-deb") || !require_tool("dpkg-deb") {
        return;
    }
    let Some(topology) = privileged_lab("swq") else {
        return;
    };

    // 1 and 2: the package, unpacked; its postinst's secret.
    let dir = tempfile::tempdir().unwrap();
    let root = install_unpacked(dir.path());
    let etc = root.join("etc/synwall");
    let etc_text = etc.to_str().unwrap().to_owned();
    let local = |word: &str| -> String {
        word.replace("/etc/synwall", &etc_text)
            .replace(README_INTERFACE, &topology.server_if)
            .replace(README_ADDRESS, &served_v4().to_string())
    };

    // The service, already running.
    let service = service(&topology, served_v4());

    // 3: check-config, as written: it saves the settings in effect.
    let args: Vec<String> = check_config.iter().map(|word| local(word)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let checked = synwall_output(&topology.server_ns, &[], &args);
    assert!(checked.status.success(), "{checked:?}");
    let saved = std::fs::read_to_string(etc.join("synwall.toml")).unwrap();
    assert!(saved.contains("handoff = \"native\""), "{saved}");
    assert!(
        saved.contains(&format!("interface = \"{}\"", topology.server_if)),
        "{saved}"
    );

    // 4: what the packaged unit runs.
    let mut synwall = start_as_the_unit_does(&topology, &root, &local);

    // 5: status, as written.
    let output = synwall_output(&topology.server_ns, &[], &status);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(report.contains("native"), "{report}");

    assert_a_client_reaches(&topology, &service);
    let log = synwall.stop();
    assert!(!log.contains("ERROR"), "{log}");
}

/// The README's five commands are the quick start's: returns the words of the third
/// (check-config) and the fifth (status) after `sudo synwall`.
fn expect_the_five_commands(commands: &[String]) -> (Vec<&str>, Vec<&str>) {
    assert_eq!(commands.len(), 5, "five commands: {commands:#?}");
    assert_eq!(commands[0], "sudo make deb");
    assert_eq!(
        commands[1],
        "sudo apt install ./target/debian/synwall_*.deb"
    );
    let check_config = words_after(&commands[2], "sudo synwall ");
    assert_eq!(commands[3], "sudo systemctl enable --now synwall");
    let status = words_after(&commands[4], "sudo synwall ");
    (check_config, status)
}

/// Builds the package and unpacks it under `dir`, making the secret its postinst makes and
/// pointing its configuration at the unpacked /etc/synwall; returns the unpacked root.
fn install_unpacked(dir: &Path) -> PathBuf {
    let deb = package::build_deb(dir);
    let root = dir.join("root");
    check_with(
        "dpkg-deb",
        &["-x", deb.to_str().unwrap(), root.to_str().unwrap()],
    );
    let control = dir.join("control");
    check_with(
        "dpkg-deb",
        &[
            "--control",
            deb.to_str().unwrap(),
            control.to_str().unwrap(),
        ],
    );
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(
        postinst.contains("/usr/bin/synwall keygen /etc/synwall/secret"),
        "{postinst}"
    );
    let etc = root.join("etc/synwall");
    let binary = root.join("usr/bin/synwall");
    let run = |args: &[&str]| {
        std::process::Command::new(&binary)
            .args(args)
            .output()
            .unwrap()
    };
    assert!(
        run(&["keygen", etc.join("secret").to_str().unwrap()])
            .status
            .success()
    );
    // The unpacked /etc/synwall for the host's, wherever the package names it.
    let config_file = etc.join("synwall.toml");
    let shipped = std::fs::read_to_string(&config_file).unwrap();
    std::fs::write(
        &config_file,
        shipped.replace("/etc/synwall", etc.to_str().unwrap()),
    )
    .unwrap();
    root
}

/// Runs what the packaged unit under `root` runs, ExecStartPre= then ExecStart=, with its
/// words made `local`; returns synwall, serving with native handoff.
fn start_as_the_unit_does(
    topology: &Topology,
    root: &Path,
    local: &dyn Fn(&str) -> String,
) -> SynwallProcess {
    let unit =
        std::fs::read_to_string(root.join("usr/lib/systemd/system/synwall.service")).unwrap();
    let unit_args = |key: &str| -> Vec<String> {
        let values = unit_values(&unit, key);
        assert_eq!(values.len(), 1, "{key}: {values:?}");
        words_after(values[0], "/usr/bin/synwall ")
            .into_iter()
            .map(local)
            .collect()
    };
    let pre = unit_args("ExecStartPre");
    let pre: Vec<&str> = pre.iter().map(String::as_str).collect();
    let output = synwall_output(&topology.server_ns, &[], &pre);
    assert!(output.status.success(), "ExecStartPre: {output:?}");
    let start = unit_args("ExecStart");
    let start: Vec<&str> = start.iter().map(String::as_str).collect();
    let mut synwall = SynwallProcess::spawn(&topology.server_ns, &start);
    synwall.wait_serving();
    assert!(
        synwall.log().contains("handoff native"),
        "{}",
        synwall.log()
    );
    synwall
}

/// A client reaches `service` through synwall, with its own address.
fn assert_a_client_reaches(topology: &Topology, service: &TcpListener) {
    let client = in_ns(topology, &topology.client_ns, || {
        let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(5))?;
        stream.write_all(b"protected")?;
        stream.local_addr()
    })
    .unwrap();
    let (mut accepted, peer) = service
        .accept()
        .expect("the connection reaches the service");
    assert_eq!(peer, client);
    let mut received = Vec::new();
    accepted.read_to_end(&mut received).unwrap();
    assert_eq!(received, b"protected");
}
