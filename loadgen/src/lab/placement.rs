//! CPU placement, so that the server side gets exactly one core and the generator another
//! (LAB-NOTES): the receive work of a veth otherwise runs on the *sender's* core.
//!
//! - Server veth, synwall in native mode: threaded NAPI (only possible while a DRV program is
//!   attached), its `napi/<dev>-<id>` kernel threads pinned to the server CPU at nice 19, so
//!   that synwall's fast path, which consumes what NAPI produces, runs first: with both at
//!   nice 0 the NAPI thread takes the larger share, fills the AF_XDP ring faster than the fast
//!   path empties it and spends the core on frames that are dropped (receive livelock).
//! - Server veth, the kernel's listener: GRO on (a veth gets a NAPI instance without XDP),
//!   threaded NAPI pinned to the server CPU: the same delivery as synwall's up to the XDP
//!   hook. Or RPS (`--kernel-rx rps`), which moves the work to the server CPU too but makes
//!   the generator pay for a remote enqueue per packet, so it offers about half the load. Or
//!   (`--kernel-rx xdp-pass`) a do-nothing DRV program, threaded NAPI pinned to the server CPU
//!   at nice 0: synwall's receive path without synwall.
//! - Server veth, synwall in generic mode: RPS.
//! - Server veth, the XDP SYN proxy: its DRV program, threaded NAPI pinned to the server CPU at
//!   nice 0 (all of its work is in NAPI).
//! - Client veth: RPS to the client CPU, so the client namespace handles the SYN-ACKs it
//!   receives on the generator's core, not on the server's. Against the XDP SYN proxy the
//!   client veth runs a pass program (XDP_TX frames need one), so its frames are built into
//!   skbs by its own NAPI instance, which would run on the server's core: threaded, pinned to
//!   the client CPU at nice 0.
//!
//! The NAPI thread at nice 19 gets almost nothing while any other runnable task of nice 0
//! shares the server CPU (a build, say): synwall's figures then collapse, so the lab measures
//! how busy the server CPU was just before each run and after the last ([`busy_percent`]) and
//! reports it. [`CpuTimes`] is also what the server CPU's busy time per SYN-ACK is made of.
//!
//! Sysfs is written from inside the namespace (`ip netns exec` remounts /sys for it). Kernel
//! threads are pinned with `taskset` and reniced with `renice`. Nothing here outlives the
//! namespaces.

use std::fs;
use std::io;
use std::thread;
use std::time::Duration;

use crate::lab::topology::Topology;

/// The longest a task name (`comm`) gets; longer names are cut.
const TASK_COMM_LEN: usize = 15;

/// The mask of one CPU as sysfs takes it: comma-separated 32-bit hex words, highest first.
fn mask(cpu: usize) -> String {
    let words: Vec<String> = (0..=cpu / 32)
        .rev()
        .map(|word| {
            let bits = if word == cpu / 32 {
                1u32 << (cpu % 32)
            } else {
                0
            };
            format!("{bits:08x}")
        })
        .collect();
    words.join(",")
}

/// Writes `value` to `path` (a sysfs file) inside namespace `ns`.
fn write_sysfs(topology: &Topology, ns: &str, path: &str, value: &str) -> io::Result<()> {
    // The value and path travel as positional parameters, never as shell text.
    let script = r#"echo "$1" > "$2""#;
    topology.run_in(ns, &["sh", "-c", script, "sh", value, path])?;
    Ok(())
}

/// Steers the receive work of `dev` (in `ns`) to `cpu` with RPS.
pub fn rps(topology: &Topology, ns: &str, dev: &str, cpu: usize) -> io::Result<()> {
    let path = format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus");
    write_sysfs(topology, ns, &path, &mask(cpu))
}

/// Turns on GRO for `dev` in `ns`, which gives a veth a NAPI instance without XDP.
pub fn gro(topology: &Topology, ns: &str, dev: &str) -> io::Result<()> {
    topology.run_in(ns, &["ethtool", "-K", dev, "gro", "on"])?;
    Ok(())
}

/// Turns on threaded NAPI for the server veth (it must have a NAPI instance: a DRV program
/// attached, or GRO on), pins its NAPI threads to `cpu` at `nice`; returns their pids.
pub fn threaded_napi(topology: &Topology, cpu: usize, nice: i8) -> io::Result<Vec<u32>> {
    let (ns, dev) = (&topology.server_ns, &topology.server_if);
    threaded_napi_of(topology, ns, dev, cpu, nice, &[])
}

/// [`threaded_napi`] for interface `dev` of namespace `ns`, leaving alone the NAPI threads
/// `placed` before: the two ends of a veth pair differ in the last letter of their names,
/// which a task name may have cut.
pub fn threaded_napi_of(
    topology: &Topology,
    ns: &str,
    dev: &str,
    cpu: usize,
    nice: i8,
    placed: &[u32],
) -> io::Result<Vec<u32>> {
    let path = format!("/sys/class/net/{dev}/threaded");
    write_sysfs(topology, ns, &path, "1")?;
    let mut threads = napi_threads(dev)?;
    threads.retain(|pid| !placed.contains(pid));
    if threads.is_empty() {
        return Err(io::Error::other(format!(
            "threaded NAPI is on for {dev}, but no napi/{dev}-* kernel thread exists"
        )));
    }
    for pid in threads.iter().map(u32::to_string) {
        crate::lab::run(&["taskset", "-p", "-c", &cpu.to_string(), &pid])?;
        crate::lab::run(&["renice", "-n", &nice.to_string(), "-p", &pid])?;
    }
    Ok(threads)
}

/// Other work on the server CPU above this share (in percent) makes a run's figures no result:
/// they measure that work too.
pub const BUSY_LIMIT: f64 = 10.0;

/// The time one CPU spent since boot, from its line in /proc/stat, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// All of it.
    pub total: u64,
    /// Idle and waiting for I/O.
    pub idle: u64,
}

impl CpuTimes {
    /// The times of `cpu` now.
    pub fn of(cpu: usize) -> io::Result<CpuTimes> {
        let stat = fs::read_to_string("/proc/stat")?;
        let label = format!("cpu{cpu} ");
        let line = stat
            .lines()
            .find(|line| line.starts_with(&label))
            .ok_or_else(|| io::Error::other(format!("no {label}line in /proc/stat")))?;
        let values: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|value| value.parse().ok())
            .collect();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        Ok(CpuTimes {
            total: values.iter().sum(),
            idle,
        })
    }

    /// The share of the time since `before` the CPU was busy (everything but idle and iowait),
    /// in percent; 0 when no time passed.
    pub fn busy_percent_since(&self, before: &CpuTimes) -> f64 {
        let elapsed = self.total.saturating_sub(before.total);
        if elapsed == 0 {
            return 0.0;
        }
        let busy = elapsed.saturating_sub(self.idle.saturating_sub(before.idle));
        100.0 * busy as f64 / elapsed as f64
    }
}

/// How busy `cpu` is, in percent of the time over `window` (see [`CpuTimes`]).
pub fn busy_percent(cpu: usize, window: Duration) -> io::Result<f64> {
    let before = CpuTimes::of(cpu)?;
    thread::sleep(window);
    Ok(CpuTimes::of(cpu)?.busy_percent_since(&before))
}

/// The kernel threads named `napi/<dev>-<id>`, as far as the cut name shows.
fn napi_threads(dev: &str) -> io::Result<Vec<u32>> {
    let wanted = napi_comm_prefix(dev);
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc")?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(&wanted) {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// What `comm` of a NAPI thread of `dev` starts with: `napi/<dev>-`, cut to the task-name
/// length.
fn napi_comm_prefix(dev: &str) -> String {
    let mut name = format!("napi/{dev}-");
    name.truncate(TASK_COMM_LEN);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_masks_and_names() {
        assert_eq!(mask(0), "00000001");
        assert_eq!(mask(1), "00000002");
        assert_eq!(mask(70), "00000040,00000000,00000000");
        assert_eq!(napi_comm_prefix("swl1x0s"), "napi/swl1x0s-");
        assert_eq!(napi_comm_prefix("swl1234567x0s"), "napi/swl1234567");
    }

    #[test]
    fn test_busy_share_of_cpu_times() {
        let before = CpuTimes {
            total: 1000,
            idle: 600,
        };
        let after = CpuTimes {
            total: 1200,
            idle: 650,
        };
        assert_eq!(after.busy_percent_since(&before), 75.0);
        assert_eq!(before.busy_percent_since(&before), 0.0);
    }

    #[test]
    fn test_busy_percent_is_a_share() {
        let busy = busy_percent(0, Duration::from_millis(50)).unwrap();
        assert!((0.0..=100.0).contains(&busy), "{busy}");
        assert!(busy_percent(usize::MAX, Duration::ZERO).is_err());
    }
}
