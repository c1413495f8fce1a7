//! Compiles the BPF programs, `src/bpf/steer.bpf.c` (XDP), `src/bpf/handoff.bpf.c` (TC) and,
//! with the feature `lab`, the lab's `src/bpf/synproxy.bpf.c` (XDP), into
//! `$OUT_DIR/<name>.bpf.o` with `clang -O2 -g -target bpf`.
//!
//! Headers, in this order:
//! - libbpf's `bpf/bpf_helpers.h` and `bpf/bpf_endian.h`: the copy that the `libbpf-sys`
//!   dependency installs into its own OUT_DIR (`DEP_BPF_INCLUDE`, always present because
//!   libbpf-sys builds its vendored libbpf), else the system's (Debian package libbpf-dev).
//! - the kernel UAPI headers (`linux/bpf.h`, ...) from /usr/include (package linux-libc-dev),
//!   and `asm/types.h` from the multiarch directory `/usr/include/<triple>` (Debian puts it
//!   there; the triple is what `cc -dumpmachine` prints).
//!
//! Every missing tool or header stops the build with the package that provides it.
//!
//! The numbers the programs and the Rust side share (counter indices, outcome codes) are
//! written once, as a C `enum` in each program, and generated from there into
//! `$OUT_DIR/<name>.enums.rs` (one `const` per enumerator, see [`SHARED_ENUMS`]), which the
//! Rust side includes: they cannot drift apart.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The product's programs.
const SOURCES: [&str; 2] = ["steer", "handoff"];
/// The lab's comparison target, built with the feature `lab` only.
const LAB_SOURCE: &str = "synproxy";

/// Per program: the C `enum` whose enumerators the Rust side uses, and their Rust type.
const SHARED_ENUMS: [(&str, &str, &str); 5] = [
    ("steer", "counter", "u32"),
    ("steer", "served_flag", "u8"),
    ("handoff", "status", "i32"),
    ("handoff", "injected", "i32"),
    ("synproxy", "outcome", "usize"),
];

/// The programs this build needs.
fn sources() -> Vec<&'static str> {
    let lab = env::var_os("CARGO_FEATURE_LAB").map(|_| LAB_SOURCE);
    SOURCES.into_iter().chain(lab).collect()
}

fn main() {
    for name in SOURCES.into_iter().chain([LAB_SOURCE]) {
        println!("cargo:rerun-if-changed=src/bpf/{name}.bpf.c");
    }
    println!("cargo:rerun-if-changed=src/bpf/kernel_handshake.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");
    println!("cargo:rerun-if-env-changed=BPF_MULTIARCH_INCLUDE");

    if let Err(message) = build() {
        // A panic message is printed in full by cargo; keep it one readable paragraph.
        panic!("\n\nbuilding the BPF programs in src/bpf failed:\n{message}\n");
    }
}

fn build() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    check_clang(&clang)?;
    let libbpf_include = libbpf_include()?;
    let multiarch_include = multiarch_include()?;
    if !Path::new("/usr/include/linux/bpf.h").exists() {
        return Err(
            "missing /usr/include/linux/bpf.h: install the kernel UAPI headers \
                    (Debian/Ubuntu: apt-get install linux-libc-dev)"
                .to_owned(),
        );
    }

    // One file per program, holding the constants of each of its shared enums.
    let mut files: Vec<(&str, String)> = Vec::new();
    for (name, enum_name, rust_type) in SHARED_ENUMS {
        let source = format!("src/bpf/{name}.bpf.c");
        let text =
            std::fs::read_to_string(&source).map_err(|e| format!("reading {source}: {e}"))?;
        let consts = enum_consts(&text, enum_name, rust_type)
            .ok_or_else(|| format!("{source}: no readable `enum {enum_name} {{ ... }};`"))?;
        match files.iter_mut().find(|(file, _)| *file == name) {
            Some((_, text)) => text.push_str(&consts),
            None => files.push((name, consts)),
        }
    }
    for (name, consts) in files {
        std::fs::write(out_dir.join(format!("{name}.enums.rs")), consts)
            .map_err(|e| format!("writing the constants of src/bpf/{name}.bpf.c: {e}"))?;
    }
    for name in sources() {
        let source = format!("src/bpf/{name}.bpf.c");
        let output = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Wextra", "-Werror"])
            .arg("-I")
            .arg(&libbpf_include)
            .arg("-I")
            .arg(&multiarch_include)
            .args(["-c", &source, "-o"])
            .arg(out_dir.join(format!("{name}.bpf.o")))
            .output()
            .map_err(|e| format!("could not run {clang}: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "{clang} failed on {source} ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    Ok(())
}

fn check_clang(clang: &str) -> Result<(), String> {
    let output = Command::new(clang).arg("--version").output().map_err(|e| {
        format!(
            "could not run `{clang}` ({e}): install clang (Debian/Ubuntu: apt-get install clang), \
             or point the CLANG environment variable at a clang with the BPF target"
        )
    })?;
    if !output.status.success() {
        return Err(format!("`{clang} --version` failed ({})", output.status));
    }
    Ok(())
}

/// The directory holding `bpf/bpf_helpers.h`.
fn libbpf_include() -> Result<PathBuf, String> {
    let candidates = env::var_os("DEP_BPF_INCLUDE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/include")]);
    for dir in candidates {
        if dir.join("bpf/bpf_helpers.h").exists() && dir.join("bpf/bpf_endian.h").exists() {
            return Ok(dir);
        }
    }
    Err(
        "no libbpf headers (bpf/bpf_helpers.h): neither the libbpf-sys build \
         (DEP_BPF_INCLUDE) nor /usr/include has them; install libbpf-dev \
         (Debian/Ubuntu: apt-get install libbpf-dev)"
            .to_owned(),
    )
}

/// The multiarch include directory holding `asm/types.h` (needed by `linux/types.h`).
fn multiarch_include() -> Result<PathBuf, String> {
    if let Some(dir) = env::var_os("BPF_MULTIARCH_INCLUDE") {
        return Ok(PathBuf::from(dir));
    }
    let triple = host_triple()?;
    let dir = PathBuf::from("/usr/include").join(&triple);
    if dir.join("asm/types.h").exists() {
        return Ok(dir);
    }
    if Path::new("/usr/include/asm/types.h").exists() {
        return Ok(PathBuf::from("/usr/include"));
    }
    Err(format!(
        "missing {}/asm/types.h: install the kernel UAPI headers (Debian/Ubuntu: apt-get install \
         linux-libc-dev), or set BPF_MULTIARCH_INCLUDE to the directory that holds asm/types.h",
        dir.display()
    ))
}

/// The Debian multiarch triple: `cc -dumpmachine`, else derived from the cargo target.
fn host_triple() -> Result<String, String> {
    let from_cc = ["cc", "gcc"].iter().find_map(|cc| {
        let output = Command::new(cc).arg("-dumpmachine").output().ok()?;
        let triple = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && !triple.is_empty()).then_some(triple)
    });
    if let Some(triple) = from_cc {
        return Ok(triple);
    }
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|e| e.to_string())?;
    let env_abi = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = if arch == "x86" { "i386" } else { arch.as_str() };
    Ok(format!(
        "{arch}-linux-{}",
        if env_abi.is_empty() { "gnu" } else { &env_abi }
    ))
}

/// `enum <name> { A = 1, B, ... };` in C `source` as Rust constants of `rust_type`, one per
/// enumerator, numbered as C numbers them (from 0, or from an explicit value, each next one
/// plus one). None when the enum is missing or holds something else than names and numbers.
fn enum_consts(source: &str, name: &str, rust_type: &str) -> Option<String> {
    let start = source.find(&format!("enum {name} {{"))?;
    let body = &source[start..];
    let body = &body[body.find('{')? + 1..body.find("};")?];
    let mut consts = format!("// Generated by build.rs from `enum {name}`: do not edit.\n");
    let mut next: i64 = 0;
    for line in body.lines() {
        // Comments are C's `/* ... */`, at the end of a line here.
        let code = line.split("/*").next().unwrap_or_default();
        for item in code
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (ident, value) = match item.split_once('=') {
                Some((ident, value)) => (ident.trim(), value.trim().parse().ok()?),
                None => (item, next),
            };
            if !ident.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            consts.push_str(&format!(
                "pub(super) const {ident}: {rust_type} = {value};\n"
            ));
            next = value + 1;
        }
    }
    Some(consts)
}
