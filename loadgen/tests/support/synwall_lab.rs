//! `synwall-lab` as its end-to-end tests (`lab_run.rs`) run it: this package's binary in a
//! child process, bounded in time, one flood at a time ([`Session`]), and the figures of its
//! JSON report the tests check. Included by `lab_run.rs` (`#[path = "support/synwall_lab.rs"]
//! mod synwall_lab;`), next to `mod common;`.

use std::io::{BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, assert_namespaces_gone};

/// One flood at a time in this test binary.
static FLOODS: Mutex<()> = Mutex::new(());
/// No test run of the lab may take longer (it is bounded far below this, but for the wait for
/// a quiet server CPU, up to 15 s before each run on a busy machine).
const LIMIT: Duration = Duration::from_secs(240);
/// Every target, by name, as `--compare` runs them.
pub const TARGETS: [&str; 3] = ["synwall", "kernel", "xdp-synproxy"];

/// What a `synwall-lab` run left.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The JSON report of a `--json` run that succeeded.
    #[track_caller]
    pub fn report(&self) -> Value {
        assert!(
            self.status.success(),
            "synwall-lab failed ({}): {}",
            self.status,
            self.stderr
        );
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: stdout {:?}, stderr {}", self.stdout, self.stderr))
    }
}

pub fn spawn_lab(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_synwall-lab"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting synwall-lab")
}

/// Drains `pipe` on a thread.
pub fn drain(pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// Waits for `child` at most [`LIMIT`], killing it (and failing) past that.
pub fn finish(mut child: Child, stdout: thread::JoinHandle<String>) -> Finished {
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for synwall-lab") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("synwall-lab overran {LIMIT:?}: {}", stderr.join().unwrap());
        }
        thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

pub fn run_to_end(mut child: Child) -> Finished {
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    finish(child, stdout)
}

/// The named run of a flood's report (the whole report for the flood asked for, or its
/// `fixed_rate` part).
#[track_caller]
pub fn target<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|run| run["target"] == name)
        .unwrap_or_else(|| panic!("no {name} run in {report}"))
}

#[track_caller]
pub fn positive(value: &Value, field: &str) -> f64 {
    let number = value[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} is not a number in {value}"));
    assert!(number > 0.0, "{field} is {number} in {value}");
    number
}

#[track_caller]
pub fn number(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {value}"))
}

/// synwall's `ratio` over each other target in `flood` (a report, or its `fixed_rate` part) is
/// a positive number, or, when another process kept the server CPU busy before a run or after
/// the last, there is no comparison and the lab said why. A ratio of a per-run `figure` that
/// either side lacks (no busy tick counted) is absent; `figure` None means every run has one.
#[track_caller]
pub fn assert_compared(flood: &Value, ratio: &str, figure: Option<&str>, stderr: &str) {
    if flood["comparison"].is_null() {
        assert!(
            stderr.contains("no comparison: the server CPU"),
            "{flood}: {stderr}"
        );
        return;
    }
    let has_figure = |name: &str| figure.is_none_or(|field| !target(flood, name)[field].is_null());
    for other in &TARGETS[1..] {
        let value = flood["comparison"][other][ratio].as_f64();
        if has_figure(TARGETS[0]) && has_figure(other) {
            let value = value.unwrap_or_else(|| panic!("{other}: no {ratio} in {flood}"));
            assert!(value > 0.0, "{other}: {ratio} {value}");
        } else {
            assert!(
                value.is_none(),
                "{other}: {ratio} without a figure in {flood}"
            );
        }
    }
}

/// The names of `run`'s namespaces, which must be gone.
#[track_caller]
pub fn assert_torn_down(run: &Value) {
    let namespaces: Vec<&str> = run["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert_namespaces_gone(&namespaces);
}

/// What the privileged tests share: the loadgen binary, and the flood lock while they run.
pub struct Session {
    loadgen: PathBuf,
    _floods: MutexGuard<'static, ()>,
}

impl Session {
    /// None when privileged tests are skipped (no root, outside CI).
    pub fn start() -> Option<Session> {
        if !common::require_privileges() {
            return None;
        }
        Some(Session {
            loadgen: PathBuf::from(env!("CARGO_BIN_EXE_loadgen")),
            _floods: FLOODS.lock().unwrap_or_else(PoisonError::into_inner),
        })
    }

    /// `synwall-lab ARGS --loadgen LOADGEN`, started.
    pub fn spawn(&self, args: &[&str]) -> Child {
        let mut args = args.to_vec();
        args.extend(["--loadgen", self.loadgen.to_str().expect("a UTF-8 path")]);
        spawn_lab(&args)
    }

    /// `synwall-lab ARGS --loadgen LOADGEN`, to the end.
    pub fn run(&self, args: &[&str]) -> Finished {
        run_to_end(self.spawn(args))
    }
}

/// A bounded run's arguments: a flood of `duration` at `rate`, 50 legit connections per second,
/// the JSON report, then `extra`.
pub fn bounded<'a>(duration: &'a str, rate: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--duration",
        duration,
        "--rate",
        rate,
        "--legit-rate",
        "50",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}
