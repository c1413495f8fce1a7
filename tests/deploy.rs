//! The deployment files agree with the program: the systemd unit verifies, the unit and the
//! DaemonSet grant the same five capabilities, the Kubernetes configuration checks out.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use synwall::settings::Settings;

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST).join(file)).unwrap()
}

#[test]
fn test_systemd_unit_verifies() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("synwall.service");
    // verify checks that ExecStart exists: point it at the binary under test.
    let text = read("deploy/synwall.service")
        .replace("/usr/local/bin/synwall", env!("CARGO_BIN_EXE_synwall"));
    std::fs::write(&unit, text).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

#[test]
fn test_unit_and_daemonset_grant_the_same_five_capabilities() {
    let expected: BTreeSet<&str> = common::CAPABILITIES.into();
    let unit = read("deploy/synwall.service");
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let line = unit.lines().find(|line| line.starts_with(key)).unwrap();
        let granted: BTreeSet<&str> = line[key.len()..]
            .split_whitespace()
            .map(|cap| cap.strip_prefix("CAP_").unwrap())
            .collect();
        assert_eq!(granted, expected, "{key}");
    }
    let manifest = read("deploy/kubernetes.yaml");
    let add = manifest
        .lines()
        .find(|line| line.trim_start().starts_with("add:"))
        .unwrap();
    let granted: BTreeSet<&str> = add
        .split(['[', ']', ',', '"'])
        .map(str::trim)
        .filter(|word| !word.is_empty() && *word != "add:")
        .collect();
    assert_eq!(granted, expected);
    assert!(manifest.contains("drop: [\"ALL\"]"));
    assert!(manifest.contains("hostNetwork: true"));
    assert!(
        manifest.contains("defaultMode: 0400"),
        "the key must not be group- or world-readable"
    );
}

#[test]
fn test_kubernetes_configuration_checks_out() {
    let manifest = read("deploy/kubernetes.yaml");
    // The indented block under `synwall.toml: |`.
    let mut lines = manifest
        .lines()
        .skip_while(|line| !line.trim_end().ends_with("synwall.toml: |"));
    lines.next();
    let block: String = lines
        .take_while(|line| line.starts_with("    ") || line.is_empty())
        .map(|line| format!("{}\n", line.trim_start()))
        .collect();
    let settings: Settings =
        toml::from_str(&block).expect("the ConfigMap holds a valid configuration");
    assert_eq!(
        settings.secret_file.as_deref(),
        Some(Path::new("/etc/synwall/key/secret"))
    );
    assert!(
        manifest.contains("mountPath: /etc/synwall/key"),
        "the Secret is mounted where the configuration looks"
    );
    // Everything but the secret, which exists only in the cluster.
    Settings {
        secret_file: None,
        ..settings
    }
    .resolve()
    .expect("every value checks out");
}
