//! Two network namespaces, server and client, joined by one veth pair.
//!
//! Addresses come from the benchmarking ranges only: 198.18.0.0/15 (RFC 2544) for IPv4 and
//! 2001:2::/48 (RFC 5180) for IPv6. IPv6 runs without link-local addresses (address generation
//! off), duplicate address detection, router solicitations or advertisements, so no other
//! address appears on the wire; neighbour discovery works between the two global addresses.
//! A run picks one [`Family`]: the server address it serves and floods, the spoofed sources,
//! and the extra client addresses of [`Topology::add_client_sources`].
//!
//! Names carry a prefix, the process id and a counter, so parallel tests and concurrent runs
//! never collide. Dropping a [`Topology`] deletes both namespaces, and the veth pair with them.
//! A run killed with SIGKILL cannot clean up: the next [`Topology::create`] with the same
//! prefix deletes namespaces whose owning process no longer exists.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use synwall::sys::netns;

pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// Where floods draw spoofed sources from: routed through the client, so the server's kernel
/// sends its answers to the client's MAC instead of resolving every spoofed address.
pub const SPOOFED_SOURCES: &str = "198.18.128.0/17";
/// The same for IPv6.
pub const SPOOFED_SOURCES_V6: &str = "2001:2:0:8000::/49";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// An address family of the lab: which of the server's addresses a run serves, floods and
/// connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The server's address.
    pub fn server(self) -> IpAddr {
        match self {
            Family::V4 => SERVER_V4.into(),
            Family::V6 => SERVER_V6.into(),
        }
    }

    /// Where floods draw spoofed sources from.
    pub fn spoofed_sources(self) -> &'static str {
        match self {
            Family::V4 => SPOOFED_SOURCES,
            Family::V6 => SPOOFED_SOURCES_V6,
        }
    }

    /// "IPv4" or "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The `index`-th extra client address ([`Topology::add_client_sources`]); `index` below
    /// 150.
    fn client_source(self, index: u8) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(198, 18, 0, 100 + index).into(),
            Family::V6 => Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0x100 + u16::from(index)).into(),
        }
    }
}

/// See the module documentation.
#[derive(Debug)]
pub struct Topology {
    pub server_ns: String,
    pub client_ns: String,
    pub server_if: String,
    pub client_if: String,
}

impl Topology {
    /// Creates both namespaces and the veth pair (MTU 1500, so native XDP works on veth),
    /// with addresses, and full checksums on frames the client's kernel sends.
    pub fn create(prefix: &str) -> io::Result<Topology> {
        remove_stale(prefix)?;
        let topology = Topology::named(prefix)?;
        // From the first namespace on, Drop removes whatever was made.
        topology.add_namespaces()?;
        topology.add_veth_pair()?;
        topology.route_spoofed_sources()?;
        topology.complete_client_checksums()?;
        Ok(topology)
    }

    /// The names of a new topology, unique to this process and call; none is made yet.
    fn named(prefix: &str) -> io::Result<Topology> {
        let id = format!(
            "{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let topology = Topology {
            server_ns: format!("{prefix}-{id}-srv"),
            client_ns: format!("{prefix}-{id}-cli"),
            server_if: format!("{prefix}{id}s"),
            client_if: format!("{prefix}{id}c"),
        };
        if topology.server_if.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {} is too long", topology.server_if),
            ));
        }
        Ok(topology)
    }

    /// Adds both namespaces; devices made in them from then on generate no link-local address
    /// and do no DAD, router solicitation or router advertisement.
    fn add_namespaces(&self) -> io::Result<()> {
        for ns in [&self.server_ns, &self.client_ns] {
            run(&["ip", "netns", "add", ns])?;
            // Devices made from now on inherit `default`.
            self.run_in(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.default.addr_gen_mode=1",
                    "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv6.conf.default.accept_ra=0",
                    "net.ipv6.conf.default.router_solicitations=0",
                ],
            )?;
        }
        Ok(())
    }

    /// Adds the veth pair, one end in each namespace, with its addresses, up.
    fn add_veth_pair(&self) -> io::Result<()> {
        run(&[
            "ip",
            "link",
            "add",
            &self.server_if,
            "netns",
            &self.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &self.client_if,
            "netns",
            &self.client_ns,
        ])?;
        for (ns, dev, v4, v6) in [
            (&self.server_ns, &self.server_if, SERVER_V4, SERVER_V6),
            (&self.client_ns, &self.client_if, CLIENT_V4, CLIENT_V6),
        ] {
            self.run_in(ns, &["ip", "link", "set", "lo", "up"])?;
            self.run_in(ns, &["ip", "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            let v6 = format!("{v6}/64");
            self.run_in(ns, &["ip", "addr", "add", &v6, "dev", dev, "nodad"])?;
            self.run_in(ns, &["ip", "link", "set", dev, "mtu", "1500", "up"])?;
        }
        Ok(())
    }

    /// Routes the spoofed sources to the client, so that the server's replies to them cross
    /// the veth.
    fn route_spoofed_sources(&self) -> io::Result<()> {
        for (sources, via) in [
            (SPOOFED_SOURCES, CLIENT_V4.to_string()),
            (SPOOFED_SOURCES_V6, CLIENT_V6.to_string()),
        ] {
            self.run_in(
                &self.server_ns,
                &["ip", "route", "add", sources, "via", &via],
            )?;
        }
        Ok(())
    }

    /// A kernel on a veth sends partial TCP checksums (CHECKSUM_PARTIAL), which fail
    /// verification in user space: make the client's kernel complete them.
    fn complete_client_checksums(&self) -> io::Result<()> {
        self.run_in(
            &self.client_ns,
            &["ethtool", "-K", &self.client_if, "tx", "off"],
        )?;
        Ok(())
    }

    /// Gives the client interface `count` (at most 150) more addresses of `family`, and
    /// returns them: 198.18.0.100 on (in its /24), or 2001:2::100 on (in its /64). Clients that
    /// spread their connections over them do not reuse a 4-tuple that the server still holds in
    /// TIME-WAIT, however many connections they open.
    pub fn add_client_sources(&self, family: Family, count: u8) -> io::Result<Vec<IpAddr>> {
        let sources: Vec<IpAddr> = (0..count.min(150))
            .map(|index| family.client_source(index))
            .collect();
        let (prefix_len, flags) = match family {
            Family::V4 => (24, ""),
            Family::V6 => (64, " nodad"),
        };
        let batch: String = sources
            .iter()
            .map(|address| {
                format!(
                    "addr add {address}/{prefix_len} dev {}{flags}\n",
                    self.client_if
                )
            })
            .collect();
        let file = std::env::temp_dir().join(format!("{}-sources", self.client_ns));
        std::fs::write(&file, batch)?;
        let added = run(&[
            "ip",
            "-n",
            &self.client_ns,
            "-batch",
            &file.to_string_lossy(),
        ]);
        let _ = std::fs::remove_file(&file);
        added?;
        Ok(sources)
    }

    /// Runs a command inside namespace `ns` (`ip netns exec`, which also remounts /sys).
    pub fn run_in(&self, ns: &str, args: &[&str]) -> io::Result<String> {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        run(&full)
    }

    /// Gives both ends of the veth `queues` rx and tx queues (`ethtool -L`): each rx queue has
    /// its own NAPI instance, and a frame the client sends on its tx queue N arrives on the
    /// server's rx queue N. Before any XDP program is attached.
    pub fn set_queues(&self, queues: u32) -> io::Result<()> {
        let count = queues.to_string();
        for (ns, dev) in [
            (&self.server_ns, &self.server_if),
            (&self.client_ns, &self.client_if),
        ] {
            self.run_in(ns, &["ethtool", "-L", dev, "rx", &count, "tx", &count])?;
        }
        Ok(())
    }

    /// The MAC address of interface `dev` in namespace `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> io::Result<[u8; 6]> {
        let dev = dev.to_owned();
        self.spawn_in(ns, move || synwall::sys::interface_mac(&dev))
            .join()
            .map_err(|_| io::Error::other("reading a MAC address panicked"))??
            .map_err(io::Error::other)
    }

    /// Spawns a thread that first enters namespace `ns`.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> thread::JoinHandle<io::Result<T>> {
        let ns = ns.to_owned();
        thread::spawn(move || {
            netns::enter(&ns)?;
            Ok(f())
        })
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Deletes namespaces named `{prefix}-{pid}x{n}-srv|cli` whose process `pid` is gone.
fn remove_stale(prefix: &str) -> io::Result<()> {
    let entries = match std::fs::read_dir("/run/netns") {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(pid) = name.to_str().and_then(|name| owner_pid(prefix, name)) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let name = name.to_string_lossy();
            tracing::warn!(namespace = %name, pid, "deleting a namespace left by a killed run");
            run(&["ip", "netns", "del", &name])?;
        }
    }
    Ok(())
}

/// The process id in a namespace name made by [`Topology::create`] with `prefix`.
fn owner_pid(prefix: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?.strip_prefix('-')?;
    let rest = rest
        .strip_suffix("-srv")
        .or_else(|| rest.strip_suffix("-cli"))?;
    let (pid, counter) = rest.split_once('x')?;
    counter.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Runs a command; its stdout, or an error with its output.
pub fn run(args: &[&str]) -> io::Result<String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", args[0])))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "`{}` failed ({}): {}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::owner_pid;

    #[test]
    fn test_owner_pid_reads_only_our_names() {
        assert_eq!(owner_pid("swl", "swl-25096x0-srv"), Some(25096));
        assert_eq!(owner_pid("swl", "swl-25096x12-cli"), Some(25096));
        assert_eq!(owner_pid("swl", "swt-25096x0-srv"), None);
        assert_eq!(owner_pid("swl", "swl-25096x0-other"), None);
        assert_eq!(owner_pid("swl", "swl-25096-srv"), None);
        assert_eq!(owner_pid("swl", "swl-abcx0-srv"), None);
        assert_eq!(owner_pid("sw", "swl-25096x0-srv"), None);
    }
}
