//! Operating synwall confined as its deployment files confine it: running as nobody with the
//! capabilities they grant, stopping clearly, with the missing one's name, without one, and
//! making only the system calls and sockets the unit's filters allow. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;
#[path = "common/operate.rs"]
mod operate;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{CAPABILITIES, privileged_lab, require_tool};
use lab::{
    EchoUpstream, SynwallProcess, as_nobody_with, listen_args, listen_behind, synwall_output,
    upstream,
};
use operate::{LAB, connect, echo, scrape, write_secret};

#[test]
fn test_runs_as_nobody_with_the_documented_capabilities() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    // Repair: the echo service behind the proxy, synwall's own listener on the served port;
    // native: the echo service on the served port.
    let _upstream = EchoUpstream::start(&topology);
    // tests/deploy.rs checks that the unit and the DaemonSet grant exactly these.
    let prefix = as_nobody_with(&CAPABILITIES);
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    for handoff in ["repair", "native"] {
        let _service = (handoff == "native").then(|| EchoUpstream::start_on(&topology, lab::PORT));
        let synwall = listen_behind(&topology, &prefix, &upstream(), &["--handoff", handoff]);
        let started = Instant::now();
        let mut client = connect(&topology);
        let echoed = echo(&mut client, b"as nobody");
        assert_eq!(
            echoed.as_deref().ok(),
            Some(&b"as nobody"[..]),
            "{handoff}: {echoed:?}; synwall's log:\n{}",
            synwall.log()
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(synwall.log().contains(&format!("; handoff {handoff}")));
    }
}

#[test]
fn test_a_missing_capability_stops_the_start_with_its_name() {
    if !require_tool("setpriv") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let without = |missing: &str, handoff: &str| {
        let caps: Vec<&str> = CAPABILITIES
            .into_iter()
            .filter(|cap| *cap != missing)
            .collect();
        let prefix = as_nobody_with(&caps);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let upstream = upstream();
        let args = listen_args(&topology.server_if, &upstream, &["--handoff", handoff]);
        let output = synwall_output(&topology.server_ns, &prefix, &args);
        assert!(!output.status.success(), "started without {missing}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // CAP_IPC_LOCK is left out: LimitMEMLOCK stands in for it.
    for missing in ["NET_BIND_SERVICE", "NET_ADMIN", "BPF", "NET_RAW"] {
        let stderr = without(missing, "repair");
        let named = format!("CAP_{missing}");
        assert!(stderr.contains(&named), "repair, without {named}: {stderr}");
    }
    // Native handoff binds no socket: it needs no CAP_NET_BIND_SERVICE.
    for missing in ["NET_ADMIN", "BPF", "NET_RAW"] {
        let stderr = without(missing, "native");
        let named = format!("CAP_{missing}");
        assert!(stderr.contains(&named), "native, without {named}: {stderr}");
    }
}

/// What a process traced by `strace -f -C -o FILE` did: the system calls it made (the names in
/// strace's summary table), and the address families of the sockets it opened.
#[derive(Debug, Default)]
struct Traced {
    calls: BTreeSet<String>,
    families: BTreeSet<String>,
}

impl Traced {
    fn add(&mut self, file: &Path) {
        let text = std::fs::read_to_string(file).expect("strace's output");
        // Calls: `PID socket(AF_XDP, SOCK_RAW, 0) = 5`.
        self.families.extend(text.lines().filter_map(|line| {
            let (_, arguments) = line.split_once(" socket(")?;
            Some(arguments.split(',').next()?.to_owned())
        }));
        // The summary's rows: `% time  seconds  usecs/call  calls  [errors]  syscall`, between
        // the dashed line and the total.
        self.calls.extend(
            text.lines()
                .skip_while(|line| !line.starts_with("% time"))
                .skip(2)
                .take_while(|line| !line.starts_with("------"))
                .filter_map(|line| line.split_whitespace().last())
                .map(str::to_owned),
        );
    }
}

/// The values of the unit's `key=` lines, split at white space.
fn unit_values(key: &str) -> Vec<String> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/synwall.service"
    ))
    .unwrap();
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .inspect(|values| assert!(!values.starts_with('~'), "{key}: an allow-list only"))
        .flat_map(|values| values.split_whitespace().map(str::to_owned))
        .collect()
}

/// Every system call the unit's `SystemCallFilter=` lines allow (groups expanded by
/// `systemd-analyze syscall-filter`).
fn allowed_by_the_unit() -> BTreeSet<String> {
    let mut pending = unit_values("SystemCallFilter");
    assert!(!pending.is_empty(), "the unit has a SystemCallFilter");
    let mut allowed = BTreeSet::new();
    while let Some(entry) = pending.pop() {
        if !allowed.insert(entry.clone()) || !entry.starts_with('@') {
            continue;
        }
        let output = Command::new("systemd-analyze")
            .args(["syscall-filter", &entry])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "systemd-analyze syscall-filter {entry}"
        );
        pending.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .skip(1)
                .map(str::trim)
                .filter(|line| !line.is_empty() && !line.starts_with('#'))
                .map(str::to_owned),
        );
    }
    allowed
}

/// The pid of the only child of `parent` (strace's tracee).
fn only_child(parent: u32) -> u32 {
    let children =
        std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap();
    children.trim().parse().expect("one child")
}

/// Waits until process `pid` has exited (a zombie, or gone).
fn wait_exited(pid: u32) {
    common::wait_until(&format!("{pid} exiting"), Duration::from_secs(10), || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .is_none_or(|stat| stat.rsplit_once(") ").unwrap().1.starts_with('Z'))
    });
}

#[test]
fn test_system_calls_stay_within_the_units_filter() {
    if !require_tool("strace") || !require_tool("systemd-analyze") {
        return;
    }
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _upstream = EchoUpstream::start(&topology);
    let dir = tempfile::tempdir().unwrap();
    let secret = write_secret(dir.path(), "secret");
    let mut traced = Traced::default();
    // Repair twice: the kernel completing the handshakes on synwall's own listener (no flood,
    // kernel-first), and synwall answering them and building each socket with TCP_REPAIR.
    for (handoff, answer_syns) in [
        ("native", "kernel-first"),
        ("repair", "kernel-first"),
        ("repair", "synwall"),
    ] {
        // Native: the echo service on the served port; repair: synwall's own listener there.
        let _service = (handoff == "native").then(|| EchoUpstream::start_on(&topology, lab::PORT));
        let run = format!("{handoff}-{answer_syns}");
        let summary = dir.path().join(format!("{run}.strace"));
        let strace = ["strace", "-f", "-qq", "-C", "-o", summary.to_str().unwrap()];
        let upstream = upstream();
        // Pinned to a CPU: the fast path's affinity call is made too.
        let extra = [
            "--handoff",
            handoff,
            "--answer-syns",
            answer_syns,
            "--secret-file",
            &secret,
            "--cpus",
            "0",
        ];
        let args = listen_args(&topology.server_if, &upstream, &extra);
        // What systemd runs: ExecStartPre= (check-config), ExecStart= (listen), and on reload
        // check-config and SIGHUP; then the stop.
        let check_args: Vec<&str> = ["check-config", "--host"]
            .into_iter()
            .chain(args[1..].iter().copied())
            .collect();
        let check = dir.path().join(format!("{run}-check.strace"));
        let check_strace = ["strace", "-f", "-qq", "-C", "-o", check.to_str().unwrap()];
        let output = synwall_output(&topology.server_ns, &check_strace, &check_args);
        assert!(output.status.success(), "{output:?}");
        traced.add(&check);

        let mut synwall = SynwallProcess::spawn_with(&topology.server_ns, &strace, &args);
        synwall.wait_serving();
        for round in 0..3 {
            let mut client = connect(&topology);
            assert_eq!(
                echo(&mut client, b"filtered").unwrap(),
                b"filtered",
                "{round}"
            );
        }
        scrape(&topology);
        // Signals go to synwall, strace's child, not to strace.
        let tracee = only_child(synwall.pid()).to_string();
        let kill = |signal: &str| {
            let status = Command::new("kill")
                .args([signal, &tracee])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} {tracee}");
        };
        kill("-HUP");
        synwall.wait_for_log("reloaded");
        kill("-TERM");
        wait_exited(synwall.pid());
        traced.add(&summary);
    }
    let allowed = allowed_by_the_unit();
    let refused: Vec<&String> = traced.calls.difference(&allowed).collect();
    assert!(
        refused.is_empty(),
        "system calls synwall makes that SystemCallFilter= refuses: {refused:?}"
    );
    assert!(traced.calls.contains("bpf"), "{traced:?}");
    let families: BTreeSet<String> = unit_values("RestrictAddressFamilies").into_iter().collect();
    let refused: Vec<&String> = traced.families.difference(&families).collect();
    assert!(
        refused.is_empty(),
        "sockets synwall opens that RestrictAddressFamilies= refuses: {refused:?}"
    );
    eprintln!("address families used: {:?}", traced.families);
}
