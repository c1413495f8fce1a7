//! The `synwall` binary in a lab namespace: [`SynwallProcess`], a child process whose log is
//! collected, `synwall listen` started with the lab's arguments ([`listen`]), and a run to
//! completion for start-up errors ([`synwall_output`]).

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use loadgen::lab::Topology;

/// The `synwall` binary as a child process in namespace `ns`, its log (stderr) collected;
/// killed on drop.
pub struct SynwallProcess {
    child: Child,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    /// Reads stderr into `log` until the process closes it.
    reader: Option<JoinHandle<()>>,
}

impl SynwallProcess {
    pub fn spawn(ns: &str, args: &[&str]) -> SynwallProcess {
        SynwallProcess::spawn_with(ns, &[], args)
    }

    /// Runs it under `prefix` (for example `setpriv ...`) inside the namespace.
    pub fn spawn_with(ns: &str, prefix: &[&str], args: &[&str]) -> SynwallProcess {
        let mut child = synwall_command(ns, prefix, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start synwall");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        let reader = thread::spawn(move || {
            use std::io::BufRead;
            for line in io::BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        SynwallProcess {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a line of its log contains `text`; panics with the log if it exits first or
    /// 30 s pass.
    pub fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
        {
            let exited = self.child.try_wait().expect("waiting for synwall");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "no {text:?} from synwall ({exited:?}): {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until it serves.
    pub fn wait_serving(&mut self) {
        self.wait_for_log("serving");
    }

    /// Sends it a signal (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Stops it with SIGTERM, as systemd does, and returns its log.
    pub fn stop(&mut self) -> String {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "synwall did not stop on SIGTERM: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
        // The reader thread takes the last lines, up to the end of the closed pipe.
        if let Some(reader) = self.reader.take() {
            reader.join().expect("the log reader");
        }
        self.log()
    }

    /// Kills it with SIGKILL: nothing of it gets to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SynwallProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The arguments of `synwall listen` on `interface`, proxying 198.18.0.1:80 to `upstream` in
/// repair mode with synwall answering every SYN (unless `extra` names another `--handoff`, or
/// `--answer-syns`), followed by `extra`.
pub fn listen_args<'a>(interface: &'a str, upstream: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "listen",
        "--interface",
        interface,
        "--listen",
        "198.18.0.1:80",
        "--upstream",
        upstream,
    ];
    if !extra.contains(&"--handoff") {
        args.extend(["--handoff", "repair"]);
        if !extra.contains(&"--answer-syns") {
            args.extend(["--answer-syns", "synwall"]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// `synwall listen` on the lab's server interface (see [`listen_args`]), serving.
pub fn listen(topology: &Topology, upstream: &str, extra: &[&str]) -> SynwallProcess {
    listen_behind(topology, &[], upstream, extra)
}

/// Like [`listen`], run through the command `prefix` (`setpriv ...`).
pub fn listen_behind(
    topology: &Topology,
    prefix: &[&str],
    upstream: &str,
    extra: &[&str],
) -> SynwallProcess {
    let args = listen_args(&topology.server_if, upstream, extra);
    let mut synwall = SynwallProcess::spawn_with(&topology.server_ns, prefix, &args);
    synwall.wait_serving();
    synwall
}

/// Runs `synwall` to completion in namespace `ns` (for start-up errors).
pub fn synwall_output(ns: &str, prefix: &[&str], args: &[&str]) -> Output {
    synwall_command(ns, prefix, args)
        .output()
        .expect("running synwall")
}

/// `synwall args` in namespace `ns`, under `prefix` (for example `setpriv ...`).
fn synwall_command(ns: &str, prefix: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", ns])
        .args(prefix)
        .arg(env!("CARGO_BIN_EXE_synwall"))
        .args(args);
    command
}
