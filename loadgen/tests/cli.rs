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

/// Runs loadgen on `lo` at one packet per second with `args`; it must fail. Its stderr.
fn refused(args: &[&str]) -> String {
    let all = [&["--interface", "lo", "--rate", "1"], args].concat();
    let (ok, _, stderr) = loadgen(&all);
    assert!(!ok, "{args:?} accepted");
    stderr
}

#[test]
fn test_guard_refuses_a_target_outside_the_benchmark_ranges() {
    for target in [
        "10.1.2.3:80",
        "127.0.0.1:80",
        "192.168.0.1:443",
        "8.8.8.8:53",
        "[::1]:80",
        "[2001:db8::1]:80",
        "[2001:3::1]:80",
        "[::ffff:198.18.0.1]:80",
    ] {
        let stderr = refused(&["--target", target]);
        assert!(
            stderr
                .contains("outside the benchmark ranges 198.18.0.0/15 (RFC 2544) and 2001:2::/48"),
            "{stderr}"
        );
        assert!(
            stderr.contains("--allow-outside-benchmark-range"),
            "{stderr}"
        );
    }
}

#[test]
fn test_guard_refuses_spoofed_sources_outside_the_benchmark_ranges() {
    for (target, cidr) in [
        ("198.18.0.1:80", "10.0.0.0/8"),
        ("198.18.0.1:80", "0.0.0.0/0"),
        ("198.18.0.1:80", "198.16.0.0/14"),
        ("[2001:2::1]:80", "::/0"),
        ("[2001:2::1]:80", "2001:2::/47"),
        ("[2001:2::1]:80", "fd00::/8"),
    ] {
        let stderr = refused(&["--target", target, "--src-cidr", cidr]);
        assert!(
            stderr.contains(&format!("spoofed source range {cidr}")),
            "{stderr}"
        );
    }
}

#[test]
fn test_sources_of_the_other_family_are_refused() {
    for (target, cidr) in [
        ("198.18.0.1:80", "2001:2:0:8000::/49"),
        ("[2001:2::1]:80", "198.18.128.0/17"),
    ] {
        let stderr = refused(&["--target", target, "--src-cidr", cidr]);
        assert!(stderr.contains("different address families"), "{stderr}");
    }
}

#[test]
fn test_hard_caps_are_enforced() {
    for (flag, value) in [("--duration", "11m"), ("--packets", "2000M")] {
        let stderr = refused(&["--target", "198.18.0.1:80", flag, value]);
        assert!(stderr.contains("out of range"), "{stderr}");
    }
}
