//! The lab for loadgen's privileged tests: a [`Topology`] (server and client namespaces, one
//! veth pair, addresses in 198.18.0.0/15 and 2001:2::/48, deleted on drop), the loadgen binary
//! run in the client namespace with a time limit (by the lab's driver), captures on the server's
//! veth, and the lab's HTTP service.
//!
//! Floods never overlap: a [`Lab`] holds a process-wide lock for its lifetime, so the tests of
//! one binary run their floods one after another (and rate measurements stay honest).
#![allow(dead_code)] // Each test crate uses a different subset.

#[path = "../../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

pub use common::{require_privileges, require_tool};
use loadgen::lab::generator::{Generator, Next};
use loadgen::lab::service;
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

/// A running loadgen whose JSON lines are read as they come, driven by the lab's own driver
/// ([`Generator`]): killed once it overruns its limit, and when dropped.
pub struct Running {
    generator: Generator,
    records: Vec<Record>,
}

impl Running {
    fn start(command: Command, limit: Duration) -> Running {
        Running {
            generator: Generator::start(command, limit).expect("starting loadgen"),
            records: Vec::new(),
        }
    }

    /// The next record, or None at the end of the output.
    pub fn next_record(&mut self) -> Option<&Record> {
        loop {
            match self.generator.next(Duration::from_secs(1)) {
                Ok(Next::Record(record)) => {
                    self.records.push(*record);
                    return self.records.last();
                }
                Ok(Next::Nothing) => {}
                Ok(Next::Ended) => return None,
                Err(error) => panic!("loadgen: {error}"),
            }
        }
    }

    /// Reads to the end of the output and waits for the exit.
    pub fn finish(mut self) -> Run {
        while self.next_record().is_some() {}
        let (status, stderr) = self.generator.exit().expect("waiting for loadgen");
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

    /// The lab's HTTP service on `address` (one of the server's), until dropped or stopped;
    /// every reply carries [`REPLY_MARK`](loadgen::lab::service::REPLY_MARK).
    pub fn http_server(&self, address: SocketAddr) -> service::Running {
        service::Running::start(self.listen(address), service::ServiceConfig::default())
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
