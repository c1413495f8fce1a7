//! Replays the fuzz targets' inputs through the fuzz harness (`tests/fuzz/harness/`, the same
//! code cargo-fuzz runs): every file of `tests/fuzz/corpus/<target>/` and
//! `tests/fuzz/regressions/<target>/`. The seeds stay valid inputs, and a crash found by fuzzing,
//! once its artifact is copied into `regressions/<target>/`, fails here until it is fixed. A
//! target without a corpus fails too.

#[path = "fuzz/harness/mod.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// The input files in `tests/fuzz/<kind>/<target>/`: all but hidden files (`.gitkeep`) and
/// READMEs.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(kind)
        .join(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("reading a directory entry").path())
        .filter(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            path.is_file() && !name.starts_with('.') && name != "README.md"
        })
        .collect();
    files.sort();
    files
}

/// Runs every input of `target` through `harness`; fails naming each input that panicked.
fn replay(target: &str, harness: fn(&[u8])) {
    let corpus = inputs("corpus", target);
    assert!(
        !corpus.is_empty(),
        "tests/fuzz/corpus/{target}/ has no seed input"
    );
    let regressions = inputs("regressions", target);
    let failed: Vec<&PathBuf> = corpus
        .iter()
        .chain(&regressions)
        .filter(|path| {
            let data =
                std::fs::read(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            std::panic::catch_unwind(|| harness(&data)).is_err()
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{target} panicked on {failed:?} (each panic is printed above)"
    );
}

#[test]
fn test_wire_parse_inputs() {
    replay("wire_parse", harness::wire_parse);
}

#[test]
fn test_listener_frames_inputs() {
    replay("listener_frames", harness::listener_frames);
}
