//! deploy/METRICS.md against an exposition: the families each lists, their types and label
//! names must be the same. Included by the test crates that check it
//! (`#[path = "support/metrics_doc.rs"] mod metrics_doc;`).

#![allow(dead_code)] // Each test crate uses a different subset.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

/// A family's type and the names of the labels its series carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Family {
    pub kind: String,
    pub labels: BTreeSet<String>,
}

/// The families listed in deploy/METRICS.md: the rows `| `name` | type | labels | meaning |`.
pub fn documented() -> BTreeMap<String, Family> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/METRICS.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut families = BTreeMap::new();
    for line in text.lines() {
        let Some(row) = line.strip_prefix('|').and_then(|row| row.strip_suffix('|')) else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let [name, kind, labels, _meaning] = cells[..] else {
            continue;
        };
        let Some(name) = name.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
            continue;
        };
        if !["counter", "gauge", "histogram"].contains(&kind) {
            continue;
        }
        let labels = labels
            .split(',')
            .map(|label| label.trim().trim_matches('`'))
            .filter(|label| !label.is_empty())
            .map(str::to_owned)
            .collect();
        let family = Family {
            kind: kind.to_owned(),
            labels,
        };
        assert!(
            families.insert(name.to_owned(), family).is_none(),
            "{name} is listed twice in METRICS.md"
        );
    }
    assert!(
        families.len() > 40,
        "METRICS.md lists {} families",
        families.len()
    );
    families
}

/// The families of an exposition in the text format: `# TYPE` lines and the label names of
/// every sample (a histogram's `_bucket`, `_sum` and `_count` samples count as its own).
pub fn exposed(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let family = Family {
                kind: kind.to_owned(),
                labels: BTreeSet::new(),
            };
            assert!(
                families.insert(name.to_owned(), family).is_none(),
                "{name} typed twice"
            );
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.rsplit_once(' ').unwrap().0;
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = [
                name,
                name.trim_end_matches("_bucket"),
                name.trim_end_matches("_sum"),
                name.trim_end_matches("_count"),
            ]
            .into_iter()
            .find_map(|candidate| families.get_mut(candidate).map(|_| candidate.to_owned()))
            .unwrap_or_else(|| panic!("{series} has no # TYPE before it"));
            let family = families.get_mut(&family).unwrap();
            for label in labels
                .trim_end_matches('}')
                .split("\",")
                .filter(|l| !l.is_empty())
            {
                family
                    .labels
                    .insert(label.split_once('=').unwrap().0.to_owned());
            }
        }
    }
    families
}

/// Fails unless `text` and METRICS.md list the same families with the same types and labels.
#[track_caller]
pub fn assert_agrees_with_the_document(text: &str) {
    let (documented, exposed) = (documented(), exposed(text));
    let undocumented: Vec<&String> = exposed
        .keys()
        .filter(|n| !documented.contains_key(*n))
        .collect();
    let missing: Vec<&String> = documented
        .keys()
        .filter(|n| !exposed.contains_key(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in METRICS.md: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "in METRICS.md but not served: {missing:?}"
    );
    for (name, family) in &exposed {
        assert_eq!(
            family, &documented[name],
            "{name}: served (left) and documented (right)"
        );
    }
}

/// Runs `promtool check metrics` on `text`; fails with what it said unless it said nothing.
#[track_caller]
pub fn assert_promtool_finds_nothing(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}"
    );
}
