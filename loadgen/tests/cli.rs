//! The command line without privileges: help, and the address guard refusing before any socket
//! is opened (so these tests send nothing).

use std::process::Command;

fn loadgen(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("running loadgen");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn test_help_names_the_bounds_and_the_override() {
    let (ok, stdout, _) = loadgen(&["--help"]);
    assert!(ok);
    for flag in [
        "--duration",
        "--packets",
        "--rate",
        "--src-cidr",
        "--allow-outside-benchmark-range",
        "--legit-rate",
        "--json",
    ] {
        assert!(
            stdout.contains(flag),
            "{flag} missing from --help:\n{stdout}"
        );
    }
}

#[test]
fn test_guard_refuses_a_target_outside_the_benchmark_range() {
    for target in [
        "10.1.2.3:80",
        "127.0.0.1:80",
        "192.168.0.1:443",
        "8.8.8.8:53",
    ] {
        let (ok, _, stderr) = loadgen(&["-i", "lo", "-t", target, "--rate", "1"]);
        assert!(!ok, "{target} accepted");
        assert!(
            stderr.contains("outside the benchmark range 198.18.0.0/15"),
            "{stderr}"
        );
        assert!(
            stderr.contains("--allow-outside-benchmark-range"),
            "{stderr}"
        );
    }
}

#[test]
fn test_guard_refuses_spoofed_sources_outside_the_benchmark_range() {
    for cidr in ["10.0.0.0/8", "0.0.0.0/0", "198.16.0.0/14"] {
        let args = [
            "-i",
            "lo",
            "-t",
            "198.18.0.1:80",
            "--rate",
            "1",
            "--src-cidr",
            cidr,
        ];
        let (ok, _, stderr) = loadgen(&args);
        assert!(!ok, "{cidr} accepted");
        assert!(
            stderr.contains(&format!("spoofed source range {cidr}")),
            "{stderr}"
        );
    }
}

#[test]
fn test_hard_caps_are_enforced() {
    for (flag, value) in [("--duration", "11m"), ("--packets", "2000M")] {
        let args = [
            "-i",
            "lo",
            "-t",
            "198.18.0.1:80",
            "--rate",
            "1",
            flag,
            value,
        ];
        let (ok, _, stderr) = loadgen(&args);
        assert!(!ok, "{flag} {value} accepted");
        assert!(stderr.contains("out of range"), "{stderr}");
    }
}
