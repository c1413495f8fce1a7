//! The flood generator: `ip netns exec <client ns> loadgen ... --json` as a child process,
//! with its JSON lines parsed into [`Record`]s as they come. It sends one `Flood` to the
//! server's address of the run's family from the lab's spoofed sources of that family, and its
//! legit clients connect over that family too.
//!
//! The child runs in its own process group, so a Ctrl-C at the terminal reaches only the lab,
//! which passes one SIGINT on ([`Generator::interrupt`]: loadgen then stops cleanly and still
//! prints its summary). It inherits the lab's CPU affinity (the client CPU) and is told
//! `--cpus` as well. Every flood is bounded twice by loadgen itself (`--duration` and
//! `--packets`); dropping a [`Generator`] kills the child if it still runs and reaps it.
//! Two reader threads drain stdout (records) and stderr (its first 16 KiB kept, for error
//! messages); they end with the child's pipes.
//!
//! The one driver of loadgen as a child process: the lab's runs ([`Generator::spawn`]) and
//! loadgen's own tests, with their own arguments ([`Generator::start`]).

use std::io::{self, BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::lab::cli::{Flood, FloodMode, LabConfig, Rate};
use crate::lab::error::LabError;
use crate::lab::report::Record;
use crate::lab::server_side::PORT;
use crate::lab::service::REPLY_MARK;
use crate::lab::topology::Topology;

/// The most stderr kept for an error message.
const MAX_STDERR: usize = 16 * 1024;
/// How long loadgen may take beyond its flood and the legit clients' last attempts.
const GRACE: Duration = Duration::from_secs(20);

/// What [`Generator::next`] found.
#[derive(Debug)]
pub enum Next {
    Record(Box<Record>),
    /// Nothing within the wait.
    Nothing,
    /// The output ended (the child exited or closed stdout).
    Ended,
}

/// See the module documentation.
pub struct Generator {
    child: Child,
    records: Receiver<Result<Box<Record>, String>>,
    stderr: Arc<Mutex<String>>,
    /// The thread that reads stderr into `stderr`, until the child closes it.
    stderr_reader: Option<JoinHandle<()>>,
    /// When the child is killed if it still runs.
    deadline: Instant,
    interrupted: bool,
}

impl Generator {
    /// Starts loadgen in the client namespace: `flood` against the server.
    pub fn spawn(
        topology: &Topology,
        config: &LabConfig,
        flood: &Flood,
    ) -> Result<Generator, LabError> {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &topology.client_ns])
            .arg(&config.loadgen)
            .args(arguments(topology, config, flood));
        let bound = config.duration + config.legit_timeout * 2 + GRACE;
        Generator::start(command, bound).map_err(|error| {
            LabError::Generator(format!("starting {}: {error}", config.loadgen.display()))
        })
    }

    /// Starts `command` (loadgen with `--json`, or a wrapper of it) in a process group of its
    /// own, its output read as described in the module docs; it is killed if it still runs
    /// after `bound`.
    pub fn start(mut command: Command, bound: Duration) -> io::Result<Generator> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn()?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (records_tx, records) = crossbeam_channel::unbounded();
        if let Some(stdout) = stdout {
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let record = serde_json::from_str::<Box<Record>>(&line)
                        .map_err(|error| format!("unreadable output line ({error}): {line}"));
                    if records_tx.send(record).is_err() {
                        break;
                    }
                }
            });
        }
        let kept = Arc::new(Mutex::new(String::new()));
        let stderr_reader = stderr.map(|stderr| {
            let kept = Arc::clone(&kept);
            thread::spawn(move || keep_stderr(stderr, &kept))
        });
        Ok(Generator {
            child,
            records,
            stderr: kept,
            stderr_reader,
            deadline: Instant::now() + bound,
            interrupted: false,
        })
    }

    /// The next record, waiting at most `wait`. Fails when loadgen overruns its bound (it is
    /// killed) or prints something that is not a record.
    pub fn next(&mut self, wait: Duration) -> Result<Next, LabError> {
        if Instant::now() >= self.deadline {
            let _ = self.child.kill();
            return Err(LabError::Generator(format!(
                "overran its time bound and was killed; {}",
                self.stderr()
            )));
        }
        match self.records.recv_timeout(wait) {
            Ok(Ok(record)) => Ok(Next::Record(record)),
            Ok(Err(error)) => Err(LabError::Generator(error)),
            Err(RecvTimeoutError::Timeout) => Ok(Next::Nothing),
            Err(RecvTimeoutError::Disconnected) => Ok(Next::Ended),
        }
    }

    /// Asks loadgen to stop early (one SIGINT: it still prints its summary). Once only.
    pub fn interrupt(&mut self) {
        if !self.interrupted {
            self.interrupted = true;
            let pid = self.child.id().to_string();
            let _ = crate::lab::run(&["kill", "-INT", &pid]);
        }
    }

    /// Stops loadgen at once.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    /// Waits for the exit; an error with loadgen's own message if it failed.
    pub fn wait(mut self) -> Result<(), LabError> {
        let (status, _) = self
            .exit()
            .map_err(|error| LabError::Generator(format!("waiting for it: {error}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(LabError::Generator(format!("{status}; {}", self.stderr())))
        }
    }

    /// Waits for the exit: the status, and all that loadgen wrote to stderr (the first
    /// `MAX_STDERR` bytes).
    pub fn exit(&mut self) -> io::Result<(ExitStatus, String)> {
        let status = self.child.wait()?;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let kept = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        Ok((status, kept.clone()))
    }

    /// What loadgen wrote to stderr so far, or a note that it wrote nothing.
    pub fn stderr(&self) -> String {
        let text = self.stderr.lock().unwrap_or_else(PoisonError::into_inner);
        match text.trim() {
            "" => "it wrote nothing to stderr".to_owned(),
            text => text.to_owned(),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// loadgen's command line for `flood` in a run of `config`.
fn arguments(topology: &Topology, config: &LabConfig, flood: &Flood) -> Vec<String> {
    let millis = |duration: Duration| format!("{}ms", duration.as_millis());
    let rate = match flood.rate {
        Rate::Max => "max".to_owned(),
        Rate::PerSecond(rate) => rate.to_string(),
    };
    let mut options: Vec<(&str, String)> = vec![
        ("--interface", topology.client_if.clone()),
        (
            "--target",
            SocketAddr::new(config.family.server(), PORT).to_string(),
        ),
        ("--src-cidr", config.family.spoofed_sources().to_owned()),
        ("--rate", rate),
        ("--duration", millis(config.duration)),
        ("--packets", flood.packets.to_string()),
        ("--cpus", config.client_cpu.to_string()),
        // Flood thread N sends on the client's tx queue N, which lands on rx queue N.
        ("--threads", config.queues.to_string()),
    ];
    options.push(match flood.mode {
        FloodMode::Syn => ("--mode", "syn".to_owned()),
        FloodMode::Ack => ("--mode", "ack".to_owned()),
        FloodMode::NearMiss => ("--mode", "near-miss".to_owned()),
        FloodMode::Mix => ("--mix", config.mix.clone()),
    });
    if config.legit_rate > 0 {
        options.extend([
            ("--legit-rate", config.legit_rate.to_string()),
            ("--legit-timeout", millis(config.legit_timeout)),
            ("--legit-expect", REPLY_MARK.to_owned()),
        ]);
    }
    let mut args: Vec<String> = options
        .into_iter()
        .flat_map(|(name, value)| [name.to_owned(), value])
        .collect();
    args.push("--json".to_owned());
    args
}

/// Keeps the first [`MAX_STDERR`] bytes of `stderr`, reading it to the end.
fn keep_stderr(mut stderr: impl Read, kept: &Mutex<String>) {
    let mut buffer = [0u8; 4096];
    while let Ok(read) = stderr.read(&mut buffer) {
        if read == 0 {
            break;
        }
        let mut text = kept.lock().unwrap_or_else(PoisonError::into_inner);
        if text.len() < MAX_STDERR {
            text.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    }
}
