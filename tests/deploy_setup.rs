//! The set-up scripts: deploy/install-deps.sh picks the toolchain (the first cargo new enough
//! for the workspace's rust-version, or says what to do), deploy/cargo runs it as the user
//! under sudo and gives back what root made, and every script passes shellcheck. Each tool
//! missing here skips its test with a message, and fails it in CI (`CI` set).

mod common;
#[allow(dead_code)] // The package itself is deploy.rs's and quick_start.rs's.
#[path = "support/package.rs"]
mod package;
#[path = "common/repo_files.rs"]
mod repo_files;

use std::path::Path;
use std::process::Command;

use package::{MANIFEST, check_with};
use repo_files::read;

/// A directory of links to the system tools the set-up scripts call, and nothing else: a PATH
/// of it holds no cargo but the test's own.
fn system_tools(dir: &Path) -> std::path::PathBuf {
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let names = [
        "bash",
        "awk",
        "sed",
        "sort",
        "dirname",
        "head",
        "cut",
        "grep",
        "getent",
        "id",
        "runuser",
        "env",
        "mkdir",
        "chown",
        "apt-cache",
    ];
    for name in names {
        let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
            .iter()
            .map(|bin| Path::new(bin).join(name))
            .find(|path| path.exists());
        if let Some(path) = found {
            std::os::unix::fs::symlink(path, tools.join(name)).unwrap();
        }
    }
    tools
}

/// Writes an executable `dir/cargo` that says it is `version` and otherwise runs `body` (sh).
fn fake_cargo(dir: &Path, version: &str, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).unwrap();
    let cargo = dir.join("cargo");
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'cargo {version} (f00dcafe 2099-01-01)'; exit 0; fi\n{body}\n"
    );
    std::fs::write(&cargo, script).unwrap();
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs `script` in bash with deploy/install-deps.sh's functions defined, `args` as $1..., in an
/// environment of `env` only.
fn with_install_functions(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(format!("source deploy/install-deps.sh && {script}"))
        .arg("install-deps")
        .args(args)
        .current_dir(MANIFEST)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `[workspace.package] rust-version` of Cargo.toml.
fn workspace_rust_version() -> String {
    let manifest: toml::Table = read("Cargo.toml").parse().unwrap();
    manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn test_install_deps_compares_cargo_versions_with_the_workspaces_rust_version() {
    let required = workspace_rust_version();
    let path = [("PATH", "/usr/bin:/bin")];
    let read = with_install_functions("required_rust_version", &[], &path);
    assert_eq!(String::from_utf8_lossy(&read.stdout).trim(), required);

    let (major, minor) = required.split_once('.').unwrap();
    let just_below = format!(
        "cargo {major}.{}.9 (f00dcafe 2099-01-01)",
        minor.parse::<u32>().unwrap() - 1
    );
    let exactly = format!("cargo {required}.0 (f00dcafe 2099-01-01)");
    let cases = [
        ("cargo 1.65.0 (4bc8f24d3 2022-10-20)", false), // Debian 12's cargo
        ("cargo 1.75.0 (1d8b05cdd 2023-11-20)", false), // Ubuntu 24.04's
        (just_below.as_str(), false),
        (exactly.as_str(), true),
        ("cargo 1.100.0 (f00dcafe 2099-01-01)", true),
        ("cargo 2.0.0-nightly (f00dcafe 2099-01-01)", true),
        (
            "error: rustup could not choose a version of cargo to run",
            false,
        ),
        ("", false),
    ];
    for (said, new_enough) in cases {
        let checked = with_install_functions(
            r#"printf '%s\n' "$1" | cargo_new_enough "$(required_rust_version)""#,
            &[said],
            &path,
        );
        assert_eq!(
            checked.status.success(),
            new_enough,
            "{said:?}: {checked:?}"
        );
    }
    for (have, want, at_least) in [
        ("1.9", "1.88", false),
        ("1.88", "1.88.0", true),
        ("1.100", "1.99", true),
        ("2", "1.88", true),
        ("1.88.0", "1.88.1", false),
    ] {
        let compared =
            with_install_functions(r#"version_at_least "$1" "$2""#, &[have, want], &path);
        assert_eq!(compared.status.success(), at_least, "{have} >= {want}");
    }
    let upstream = with_install_functions(
        r#"upstream_version "$1""#,
        &["1.85.0+dfsg3-1~deb12u3"],
        &path,
    );
    assert_eq!(String::from_utf8_lossy(&upstream.stdout).trim(), "1.85.0");
}

#[test]
fn test_install_deps_takes_the_first_cargo_new_enough_or_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let tools = system_tools(dir.path());
    let home = dir.path().join("home");
    // rustup's, too old (Debian 12's), and one on PATH that will do.
    fake_cargo(&home.join(".cargo/bin"), "1.65.0", "");
    let on_path = dir.path().join("rust/bin");
    fake_cargo(&on_path, &format!("{}.0", workspace_rust_version()), "");
    let home = home.to_str().unwrap();
    let path = format!("{}:{}", on_path.display(), tools.display());
    let found = with_install_functions("toolchain_dir", &[], &[("HOME", home), ("PATH", &path)]);
    assert!(found.status.success(), "{found:?}");
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).trim(),
        on_path.to_str().unwrap()
    );

    // Only the old one: the script fails and says what it found and what to do.
    let distro_versioned = std::fs::read_dir("/usr/lib").unwrap().any(|entry| {
        entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("rust-1.")
    });
    if distro_versioned {
        eprintln!("SKIPPED the too-old half: this host has a versioned Rust in /usr/lib");
        return;
    }
    let output = Command::new(Path::new(MANIFEST).join("deploy/install-deps.sh"))
        .arg("--toolchain-dir")
        .current_dir(MANIFEST)
        .env_clear()
        .envs([("HOME", home), ("PATH", tools.to_str().unwrap())])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    for named in [
        format!("needs cargo {} or later", workspace_rust_version()),
        "/.cargo/bin/cargo: cargo 1.65.0".to_owned(),
        "sh.rustup.rs".to_owned(),
        "static.rust-lang.org".to_owned(),
        "SYNWALL_INSTALL_RUSTUP=1".to_owned(),
    ] {
        assert!(said.contains(&named), "{named}: {said}");
    }
}

#[test]
fn test_under_sudo_cargo_builds_as_the_user_and_root_gives_back_what_it_made() {
    if !common::require_privileges() {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tools = system_tools(dir.path());
    let id = |args: &[&str]| -> String {
        let output = Command::new("id").args(args).output().unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let (uid, gid) = (id(&["-u", "nobody"]), id(&["-g", "nobody"]));
    let home = String::from_utf8(
        Command::new("getent")
            .args(["passwd", "nobody"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .split(':')
    .nth(5)
    .unwrap()
    .to_owned();
    // A cargo that leaves a file saying who ran it, with which home.
    let bin = dir.path().join("bin");
    fake_cargo(
        &bin,
        "99.0.0",
        r#"mkdir -p "$CARGO_TARGET_DIR/made" && echo "$(id -u) $HOME" >"$CARGO_TARGET_DIR/made/by-$(id -u)""#,
    );
    // The user's target directory, as a build of theirs left it.
    let target = dir.path().join("target");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::chown(&target, uid.parse().ok(), gid.parse().ok()).unwrap();
    let path = format!("{}:{}", bin.display(), tools.display());
    let run = |as_root: bool| {
        let mut command = Command::new(Path::new(MANIFEST).join("deploy/cargo"));
        command
            .arg("build")
            .current_dir(MANIFEST)
            .env_clear()
            .envs([
                ("PATH", path.as_str()),
                ("HOME", "/root"),
                ("SUDO_UID", uid.as_str()),
                ("SUDO_GID", gid.as_str()),
                ("SUDO_USER", "nobody"),
                ("CARGO_TARGET_DIR", target.to_str().unwrap()),
            ]);
        if as_root {
            command.env("SYNWALL_CARGO_AS_ROOT", "1");
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
    };
    run(false);
    run(true);
    let made = |who: &str| std::fs::read_to_string(target.join("made").join(format!("by-{who}")));
    assert_eq!(
        made(&uid).unwrap().trim(),
        format!("{uid} {home}"),
        "built as the user"
    );
    assert_eq!(
        made("0").unwrap().trim(),
        format!("0 {home}"),
        "root, with the user's toolchain home"
    );
    for entry in [
        target.join("made"),
        target.join("made/by-0"),
        target.join(format!("made/by-{uid}")),
    ] {
        let owner = std::fs::metadata(&entry).unwrap().uid().to_string();
        assert_eq!(owner, uid, "{} is not given back", entry.display());
    }
}

#[test]
fn test_set_up_scripts_pass_shellcheck() {
    if !common::require_tool("shellcheck") {
        return;
    }
    check_with(
        "shellcheck",
        &[
            "--external-sources",
            "deploy/install-deps.sh",
            "deploy/cargo",
            "deploy/deb-assets.sh",
            ".ci/run",
            "bench/lab-compare.sh",
            "bench/peacetime.sh",
            "bench/bpf-cost.sh",
        ],
    );
}
