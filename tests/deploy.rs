//! The deployment files agree with the program and pass their tools: the systemd unit verifies
//! (`systemd-analyze verify`) and notifies, the unit and the DaemonSet grant the same five
//! capabilities, the DaemonSet validates against the Kubernetes schemas (kubernetes-validate)
//! and follows its configuration, the Dockerfile passes hadolint, the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), the alerts and the
//! dashboard use documented series only, and the .deb (cargo-deb) holds what it should.
//! Each tool missing here skips its test with a message, and fails it in CI (`CI` set). The
//! set-up scripts are tested in `deploy_setup.rs`.

mod common;
#[path = "support/metrics_doc.rs"]
mod metrics_doc;
#[path = "support/package.rs"]
mod package;
#[path = "common/repo_files.rs"]
mod repo_files;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use package::{MANIFEST, check_with};
use repo_files::read;

/// Runs the synwall under test; returns its standard output, failing unless it succeeded.
#[track_caller]
fn synwall(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_synwall"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "synwall {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn test_systemd_unit_verifies() {
    if !common::require_tool("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("synwall.service");
    // verify checks that every Exec*= program exists: point them at the binary under test.
    let text = read("deploy/synwall.service")
        .replace("/usr/local/bin/synwall", env!("CARGO_BIN_EXE_synwall"));
    std::fs::write(&unit, text).unwrap();
    // ... and that `man` finds the pages Documentation= names: the ones synwall writes.
    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    synwall(&["man", pages.to_str().unwrap()]);
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", dir.path())
        .output()
        .unwrap();
    let said = package::said(&output);
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

/// The configuration in the ConfigMap: the indented block under `synwall.toml: |`.
fn configmap_block(manifest: &str) -> String {
    let mut lines = manifest
        .lines()
        .skip_while(|line| !line.trim_end().ends_with("synwall.toml: |"));
    lines.next();
    lines
        .take_while(|line| line.starts_with("    ") || line.is_empty())
        .map(|line| format!("{}\n", line.trim_start()))
        .collect()
}

#[test]
fn test_kubernetes_configuration_checks_out() {
    let manifest = read("deploy/kubernetes.yaml");
    let block = configmap_block(&manifest);
    let settings: toml::Table =
        toml::from_str(&block).expect("the ConfigMap holds a valid configuration");
    assert_eq!(
        settings.get("secret-file").and_then(toml::Value::as_str),
        Some("/etc/synwall/key/secret")
    );
    assert!(
        manifest.contains("mountPath: /etc/synwall/key"),
        "the Secret is mounted where the configuration looks"
    );
    // Everything but the secret, which exists only in the cluster: checked by the binary, as
    // the pod's own `check-config` would (without --host: nothing of this host is read).
    let without_secret: String = block
        .lines()
        .filter(|line| !line.starts_with("secret-file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("synwall.toml");
    std::fs::write(&file, without_secret).unwrap();
    synwall(&[
        "check-config",
        "--quiet",
        "--config",
        file.to_str().unwrap(),
    ]);
}

/// The lines of the unit that set `key`, values only.
fn unit_lines(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn test_unit_notifies_and_checks_the_configuration_before_start_and_reload() {
    let unit = read("deploy/synwall.service");
    assert_eq!(unit_lines(&unit, "Type"), ["notify"]);
    let start = &unit_lines(&unit, "ExecStart")[0];
    let config = start
        .strip_prefix("/usr/local/bin/synwall listen ")
        .expect("ExecStart runs synwall listen");
    // Before start, also against the host (interface, queues, handoff); before a reload, the
    // file alone: what a reload can change does not depend on the host.
    let check_host = format!("/usr/local/bin/synwall check-config --quiet --host {config}");
    assert_eq!(unit_lines(&unit, "ExecStartPre"), [check_host.as_str()]);
    let check = format!("/usr/local/bin/synwall check-config --quiet {config}");
    assert_eq!(
        unit_lines(&unit, "ExecReload"),
        [check.as_str(), "/bin/kill -HUP $MAINPID"],
        "a file that does not check out fails the reload before the signal"
    );
    let filter = unit_lines(&unit, "SystemCallFilter");
    assert_eq!(filter, ["@system-service bpf"]);
}

#[test]
fn test_alert_rules_check_and_pass_their_unit_tests() {
    if !common::require_tool("promtool") {
        return;
    }
    let checked = check_with("promtool", &["check", "rules", "deploy/alerts.yaml"]);
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    check_with("promtool", &["test", "rules", "deploy/alerts.test.yaml"]);
}

/// The metric names in `text`: words that start like synwall's and the process series.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("synwall_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// Fails unless every name is a documented family (a histogram's series count as it).
#[track_caller]
fn assert_documented(names: &BTreeSet<String>, file: &str) {
    let documented = metrics_doc::documented();
    for name in names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| {
                documented
                    .get(*family)
                    .is_some_and(|f| f.kind == "histogram")
            })
            .unwrap_or(name);
        assert!(
            documented.contains_key(family),
            "{file} uses {name}, which deploy/METRICS.md does not list"
        );
    }
}

#[test]
fn test_alerts_cover_every_loss_and_use_documented_series() {
    let rules = read("deploy/alerts.yaml");
    let alerts: BTreeSet<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    let expected = [
        ("SynwallDown", "up{job=\"synwall\"} == 0"),
        (
            "SynwallFramesDroppedNoSocket",
            "verdict=\"dropped_no_socket\"",
        ),
        ("SynwallAfXdpRxDrops", "synwall_xsk_rx_ring_full_total"),
        ("SynwallHandoffFailures", "synwall_handoff_failures_total"),
        (
            "SynwallUpstreamFailures",
            "synwall_proxy_upstream_failures_total",
        ),
        (
            "SynwallAcceptQueueOverflow",
            "synwall_accept_queue_overflow_total",
        ),
        (
            "SynwallConfigReloadFailed",
            "synwall_config_last_reload_successful == 0",
        ),
    ];
    assert_eq!(alerts, expected.iter().map(|(name, _)| *name).collect());
    for (alert, uses) in expected {
        let rule = rules
            .split("- alert: ")
            .find(|rule| rule.starts_with(alert))
            .unwrap();
        assert!(rule.contains(uses), "{alert} should use {uses}");
    }
    let names = metric_names(&rules);
    assert!(names.len() >= 7, "{names:?}");
    assert_documented(&names, "alerts.yaml");
}

#[test]
fn test_dashboard_queries_documented_series() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana-dashboard.json")).expect("valid JSON");
    let mut queries = Vec::new();
    let mut pending = vec![&dashboard];
    while let Some(value) = pending.pop() {
        match value {
            serde_json::Value::Object(object) => {
                if let Some(serde_json::Value::String(expr)) = object.get("expr") {
                    queries.push(expr.clone());
                }
                pending.extend(object.values());
            }
            serde_json::Value::Array(values) => pending.extend(values),
            _ => {}
        }
    }
    assert!(queries.len() > 20, "{queries:?}");
    let names = metric_names(&queries.join("\n"));
    // Losses, and what passes without a flood (the kernel answering, no handoff at all).
    for series in [
        "synwall_xsk_rx_ring_full_total",
        "synwall_xdp_frames_total",
        "synwall_handoff_failures_total",
        "synwall_proxy_upstream_failures_total",
        "synwall_syn_queue_capacity",
        "synwall_own_listener_accepted_total",
        "synwall_own_listener_accept_errors_total",
        "synwall_syn_takeovers_total",
    ] {
        assert!(names.contains(series), "the dashboard shows {series}");
    }
    assert!(
        queries.iter().any(|query| query.contains("kernel_answers")),
        "the dashboard shows the SYNs the kernel answers"
    );
    assert_documented(&names, "grafana-dashboard.json");
}

#[test]
fn test_kubernetes_manifest_validates_against_the_schemas() {
    if !common::require_tool("kubernetes-validate") {
        return;
    }
    let said = check_with(
        "kubernetes-validate",
        &["--strict", "deploy/kubernetes.yaml"],
    );
    assert_eq!(said.matches(" passed ").count(), 2, "{said}");
    // The validator does look: a misspelt field fails.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = read("deploy/kubernetes.yaml").replace("hostNetwork:", "hostNetwrok:");
    std::fs::write(&broken, text).unwrap();
    let output = Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
}

#[test]
fn test_daemonset_follows_its_configuration_and_is_locked_down() {
    let manifest = read("deploy/kubernetes.yaml");
    let config = "/etc/synwall/config/synwall.toml";
    assert!(manifest.contains(&format!("args: [\"listen\", \"--config\", \"{config}\"]")));
    assert!(
        manifest.contains("mountPath: /etc/synwall/config\n"),
        "the ConfigMap is mounted as a directory"
    );
    assert!(
        !manifest
            .lines()
            .any(|line| line.trim_start().starts_with("subPath:")),
        "a subPath mount never updates"
    );
    // The probe reads the metrics address from the same file synwall runs with.
    let probe: Vec<&str> = manifest
        .lines()
        .skip_while(|line| !line.contains("livenessProbe:"))
        .take_while(|line| !line.contains("periodSeconds"))
        .filter_map(|line| line.trim().strip_prefix("- "))
        .collect();
    assert_eq!(
        probe,
        [
            "synwall",
            "stats",
            "--config",
            config,
            "--count",
            "\"1\"",
            "--interval",
            "100ms"
        ]
    );
    assert!(
        !manifest.contains("127.0.0.1\"]"),
        "no address in the probe"
    );
    for needed in [
        "automountServiceAccountToken: false",
        "seccompProfile:\n              type: RuntimeDefault",
        "allowPrivilegeEscalation: false",
        "readOnlyRootFilesystem: true",
        "tolerations:",
    ] {
        assert!(manifest.contains(needed), "{needed}");
    }
    // Memory: 64 MiB, 16 MiB of UMEM and the SYN queue per rx queue, 32 KiB per proxied
    // connection; the limit covers 16 queues in repair mode.
    let block = configmap_block(&manifest);
    let settings: toml::Table = toml::from_str(&block).unwrap();
    let max_syn_backlog = settings["max-syn-backlog"].as_integer().unwrap();
    let syn_queue = max_syn_backlog as f64 * 200.0 / (1 << 20) as f64;
    let needed = 64.0 + 16.0 * (16.0 + syn_queue) + 4096.0 * 32.0 / 1024.0;
    let limit: f64 = manifest
        .lines()
        .skip_while(|line| !line.contains("limits:"))
        .find_map(|line| line.trim().strip_prefix("memory: "))
        .and_then(|memory| memory.strip_suffix("Mi"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(limit >= needed, "{limit} MiB < {needed} MiB");
}

#[test]
fn test_dockerfile_passes_hadolint() {
    if !common::require_tool("hadolint") {
        return;
    }
    check_with("hadolint", &["deploy/Dockerfile"]);
    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains("FROM docker.io/library/rust:1.88-"),
        "builds with the workspace's rust-version"
    );
    assert!(
        dockerfile.contains("CMD [\"listen\", \"--config\", \"/etc/synwall/config/synwall.toml\"]")
    );
}

#[test]
fn test_completions_and_man_pages_are_written() {
    for (shell, mark) in [
        ("bash", "_synwall()"),
        ("zsh", "#compdef synwall"),
        ("fish", "complete -c synwall"),
    ] {
        let script = synwall(&["completions", shell]);
        assert!(script.contains(mark), "{shell}: {script:.200}");
        assert!(script.contains("check-config"), "{shell}");
    }
    let dir = tempfile::tempdir().unwrap();
    synwall(&["man", dir.path().to_str().unwrap()]);
    let listen = std::fs::read_to_string(dir.path().join("synwall-listen.1")).unwrap();
    assert!(listen.contains(".TH synwall-listen 1"), "{listen:.200}");
    assert!(
        listen.contains("max\\-syn\\-backlog"),
        "every flag is there"
    );
    assert!(dir.path().join("synwall.1").exists());
    assert!(
        !dir.path().join("synwall-lab.1").exists(),
        "the product ships no lab"
    );
    let help = synwall(&["--help"]);
    assert!(!help.contains("completions"), "hidden: for packages");
    assert!(
        !help
            .lines()
            .any(|line| line.trim_start().starts_with("lab ")),
        "the lab is loadgen's synwall-lab, not a synwall command: {help}"
    );
}

#[test]
fn test_deb_package_holds_binary_unit_configuration_and_user() {
    if !common::require_tool("cargo-deb") || !common::require_tool("dpkg-deb") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let deb = package::build_deb(dir.path());
    let deb = deb.to_str().unwrap();
    let contents = check_with("dpkg-deb", &["--contents", deb]);
    for path in [
        "./usr/bin/synwall",
        "./usr/lib/systemd/system/synwall.service",
        "./etc/synwall/synwall.toml",
        "./usr/share/man/man1/synwall.1.gz",
        "./usr/share/man/man1/synwall-listen.1.gz",
        "./usr/share/bash-completion/completions/synwall",
        "./usr/share/zsh/vendor-completions/_synwall",
        "./usr/share/fish/vendor_completions.d/synwall.fish",
        "./usr/share/doc/synwall/METRICS.md",
        "./usr/share/doc/synwall/examples/alerts.yaml",
    ] {
        assert!(
            contents.lines().any(|line| line.ends_with(path)),
            "{path}:\n{contents}"
        );
    }
    let control = dir.path().join("control");
    check_with("dpkg-deb", &["--control", deb, control.to_str().unwrap()]);
    let file = |name: &str| std::fs::read_to_string(control.join(name)).unwrap();
    assert_eq!(file("conffiles").trim(), "/etc/synwall/synwall.toml");
    let postinst = file("postinst");
    assert!(postinst.contains("adduser --system --group"), "{postinst}");
    assert!(
        postinst.contains("deb-systemd-helper"),
        "the unit's maintainer scripts"
    );
    // cargo-deb's snippets for a unit that is neither enabled nor started on install (only
    // re-enabled on upgrade if it was, and restarted if it runs).
    assert!(
        postinst.contains("if deb-systemd-helper debian-installed synwall.service"),
        "{postinst}"
    );
    assert!(!postinst.contains("deb-systemd-invoke start"), "{postinst}");
    assert!(
        file("control").contains("Depends: adduser"),
        "{}",
        file("control")
    );
    // The packaged unit runs the packaged binary.
    let unit =
        std::fs::read_to_string(Path::new(MANIFEST).join("target/deb-assets/synwall.service"))
            .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/synwall listen"), "{unit}");
    assert!(!unit.contains("/usr/local/bin"), "{unit}");
}
