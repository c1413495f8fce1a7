//! The lab for loadgen's privileged tests: a [`Topology`] (server and client namespaces, one
//! veth pair, addresses in 198.18.0.0/15 and 2001:2::/48, deleted on drop), the loadgen binary run in the client
//! namespace with a time limit, captures on the server's veth, and small servers.
//!
//! Floods never overlap: a [`Lab`] holds a process-wide lock for its lifetime, so the tests of
//! one binary run their floods one after another (and rate measurements stay honest).
#![allow(dead_code)] // Each test crate uses a different subset.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

pub use common::{require_privileges, require_tool};
use loadgen::lab::{SERVER_V4, SERVER_V6, Topology};
use loadgen::report::{Progress, Record, Summary};

static FLOODS: Mutex<()> = Mutex::new(());

/// The lab server's IPv4 address and `port`.
pub fn server_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_V4), port)
}

/// The lab server's IPv6 address and `port`.
pub fn server_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(SERVER_V6), port)
}

/// What a loadgen run printed.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub records: Vec<Record>,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn summary(&self) -> &Summary {
        assert!(self.status.success(), "loadgen failed: {}", self.stderr);
        match self.records.last() {
            Some(Record::Summary(summary)) => summary,
            other => panic!("the last record is not a summary: {other:?}"),
        }
    }

    pub fn progress(&self) -> Vec<&Progress> {
        self.records
            .iter()
            .filter_map(|record| match record {
                Record::Progress(progress) => Some(progress),
                Record::Summary(_) => None,
            })
            .collect()
    }
}

/// A running loadgen whose JSON lines are read as they come. A watchdog kills it at its
/// deadline, so a hung run fails the test instead of blocking it.
pub struct Running {
    child: Arc<Mutex<Child>>,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    records: Vec<Record>,
}

impl Running {
    fn start(mut command: Command, limit: Duration) -> Running {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting loadgen");
        let stdout = child.stdout.take().expect("piped stdout");
        let child = Arc::new(Mutex::new(child));
        let watched = Arc::clone(&child);
        let deadline = Instant::now() + limit;
        thread::spawn(move || {
            while Instant::now() < deadline {
                thread::sleep(Duration::from_millis(20));
                if Arc::strong_count(&watched) == 1 {
                    return;
                }
            }
            let mut child = watched.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("loadgen overran its limit of {limit:?}: killed");
                let _ = child.kill();
            }
        });
        Running {
            child,
            lines: BufReader::new(stdout).lines(),
            records: Vec::new(),
        }
    }

    /// The next record, or None at the end of the output.
    pub fn next_record(&mut self) -> Option<&Record> {
        let line = self.lines.next()?.expect("reading loadgen's output");
        let record = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        self.records.push(record);
        self.records.last()
    }

    /// Reads to the end of the output and waits for the exit.
    pub fn finish(mut self) -> Run {
        while self.next_record().is_some() {}
        // Polled, so that the watchdog can take the lock and kill a process that hangs.
        let status = loop {
            let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(status) = child.try_wait().expect("waiting for loadgen") {
                break status;
            }
            drop(child);
            thread::sleep(Duration::from_millis(10));
        };
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_string(&mut stderr).expect("reading stderr");
        }
        Run {
            status,
            records: std::mem::take(&mut self.records),
            stderr,
        }
    }
}

/// See the module documentation.
pub struct Lab {
    pub topology: Topology,
    _floods: MutexGuard<'static, ()>,
}

impl Lab {
    /// A fresh lab, or None when the test must be skipped (no privileges, outside CI).
    pub fn new(prefix: &str) -> Option<Lab> {
        if !require_privileges() {
            return None;
        }
        let floods = FLOODS.lock().unwrap_or_else(PoisonError::into_inner);
        Some(Lab {
            topology: Topology::create(prefix).expect("creating the lab topology"),
            _floods: floods,
        })
    }

    /// Starts loadgen with `--netns` (the client namespace), the client interface, `--json`,
    /// `target` (one of the server's addresses), then `args`; it is killed after `limit`.
    pub fn spawn_loadgen(&self, target: SocketAddr, args: &[&str], limit: Duration) -> Running {
        let t = &self.topology;
        let target = target.to_string();
        let mut command = Command::new(env!("CARGO_BIN_EXE_loadgen"));
        command
            .args([
                "--netns",
                &t.client_ns,
                "--interface",
                &t.client_if,
                "--json",
            ])
            .args(["--target", &target])
            .args(args);
        Running::start(command, limit)
    }

    /// Starts `ip netns exec CLIENT_NS WRAPPER... loadgen ARGS` (no arguments added).
    pub fn spawn_in_client(&self, wrapper: &[&str], args: &[&str], limit: Duration) -> Running {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.topology.client_ns])
            .args(wrapper)
            .arg(env!("CARGO_BIN_EXE_loadgen"))
            .args(args);
        Running::start(command, limit)
    }

    /// Runs loadgen to the end (see [`Lab::spawn_loadgen`]).
    pub fn loadgen(&self, target: SocketAddr, args: &[&str], limit: Duration) -> Run {
        self.spawn_loadgen(target, args, limit).finish()
    }

    /// Runs `args` in the server namespace.
    pub fn in_server(&self, args: &[&str]) -> String {
        let t = &self.topology;
        t.run_in(&t.server_ns, args)
            .unwrap_or_else(|e| panic!("{args:?} in the server namespace: {e}"))
    }

    /// Runs `args` in the client namespace.
    pub fn in_client(&self, args: &[&str]) -> String {
        let t = &self.topology;
        t.run_in(&t.client_ns, args)
            .unwrap_or_else(|e| panic!("{args:?} in the client namespace: {e}"))
    }

    /// Frames the server's veth has received.
    pub fn server_rx_packets(&self) -> u64 {
        let path = format!(
            "/sys/class/net/{}/statistics/rx_packets",
            self.topology.server_if
        );
        self.in_server(&["cat", &path]).trim().parse().unwrap()
    }

    /// Starts dumpcap on the server's veth: `filter` (BPF), at most `count` frames or
    /// `seconds`, written as pcap to `path`. Returns once dumpcap is capturing; it stops by
    /// itself at either bound.
    pub fn capture(&self, filter: &str, count: usize, seconds: u32, path: &Path) -> Child {
        let t = &self.topology;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &t.server_ns, "dumpcap", "-q", "-P"])
            .args(["-i", &t.server_if, "-f", filter])
            .args(["-c", &count.to_string()])
            .args(["-a", &format!("duration:{seconds}")])
            .arg("-w")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dumpcap");
        // dumpcap says "Capturing on ..." once the capture is live.
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut line = String::new();
        while stderr.read_line(&mut line).expect("reading dumpcap") > 0 {
            if line.contains("Capturing on") {
                break;
            }
            line.clear();
        }
        thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        child
    }

    /// A kernel TCP server on `address` (one of the server's), answering each request with
    /// `reply`, until the returned flag is raised.
    pub fn http_server(&self, address: SocketAddr, reply: &'static [u8]) -> Arc<AtomicBool> {
        let stop = Arc::new(AtomicBool::new(false));
        let listener = self.listen(address);
        listener.set_nonblocking(true).unwrap();
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                        let mut request = [0u8; 512];
                        let _ = stream.read(&mut request);
                        let _ = stream.write_all(reply);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        stop
    }

    /// A kernel listening socket on `address` (one of the server's; backlog as the kernel
    /// sets it); it lives in the server namespace whichever thread holds it.
    pub fn listen(&self, address: SocketAddr) -> TcpListener {
        let t = &self.topology;
        t.spawn_in(&t.server_ns, move || TcpListener::bind(address))
            .join()
            .expect("the listening thread")
            .expect("entering the server namespace")
            .expect("binding in the server namespace")
    }
}
