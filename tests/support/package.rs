//! The .deb of the binary under test, and running the tools that check deployment files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository: deployment files and tools are read and run from here.
pub const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// Runs `tool` with `args`; fails with what it said unless it succeeded.
#[track_caller]
pub fn check_with(tool: &str, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .current_dir(MANIFEST)
        .output()
        .unwrap();
    let said = said(&output);
    assert!(output.status.success(), "{tool} {args:?}:\n{said}");
    said
}

/// What a command wrote, standard output then standard error.
pub fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Builds the package of the binary under test in `dir` (cargo-deb, as `make deb` does, but
/// without a release build: cargo-deb takes target/release/ from CARGO_TARGET_DIR, here a
/// directory holding a link to the binary); returns the .deb's path.
pub fn build_deb(dir: &Path) -> PathBuf {
    let release = dir.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_synwall"), release.join("synwall")).unwrap();
    check_with("deploy/deb-assets.sh", &[env!("CARGO_BIN_EXE_synwall")]);
    let out = dir.join("out");
    let output = Command::new("cargo")
        .args([
            "deb",
            "--package",
            "synwall",
            "--no-build",
            "--fast",
            "--output",
        ])
        .arg(&out)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .current_dir(MANIFEST)
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo deb: {output:?}");
    std::fs::read_dir(&out)
        .unwrap()
        .next()
        .expect("a .deb")
        .unwrap()
        .path()
}
