//! The repository's files as the deployment tests (`deploy*.rs`) read them. Included by each
//! of them (`#[path = "common/repo_files.rs"] mod repo_files;`), next to `mod package;`.

use std::path::Path;

use crate::package::MANIFEST;

/// The text of `file`, a path from the repository's root.
pub fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST).join(file)).unwrap()
}
