//! The destination MAC address: the target's entry in the kernel's neighbour table on the
//! generator's interface (ARP for IPv4, neighbour discovery for IPv6).
//!
//! When there is no complete entry yet, one UDP datagram to the target's discard port (9)
//! makes the kernel resolve it; the table of the calling thread's network namespace is then
//! polled. IPv4's is read from `/proc/thread-self/net/arp`; IPv6's has no /proc file, so it is
//! the output of `ip -6 neigh show`, which the child process inherits the namespace for. The
//! target must be on the generator's link: for a target behind a router, pass the router's
//! MAC with `--dst-mac`. The datagram goes to the target only, which the address guard has
//! already checked.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::MacArg;

/// How long resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// The discard service (RFC 863): whatever answers, nothing is done with the datagram.
const DISCARD_PORT: u16 = 9;
/// ATF_COM in the flags column of /proc/net/arp: the entry is complete.
const ATF_COM: u32 = 0x2;

/// Why the MAC address could not be found.
#[derive(Debug, thiserror::Error)]
pub enum NeighborError {
    #[error(
        "no neighbour entry for {target} on {ifname} after {timeout:?}: is the target on this \
         link? (give the next hop's MAC with --dst-mac)"
    )]
    Unresolved {
        target: IpAddr,
        ifname: String,
        timeout: Duration,
    },
    #[error(
        "{target} is reached through {actual}, not {ifname}: flood from {actual}, or give \
         --dst-mac"
    )]
    OtherInterface {
        target: IpAddr,
        ifname: String,
        actual: String,
    },
    #[error("probing {target} to resolve its MAC address: {source}")]
    Probe { target: IpAddr, source: io::Error },
    #[error("reading the neighbour table: {0}")]
    Table(io::Error),
}

/// The MAC address of `target` on `ifname`, resolving it if needed.
pub fn resolve(target: IpAddr, ifname: &str) -> Result<[u8; 6], NeighborError> {
    let found = || match complete_entry(target)? {
        Some((mac, dev)) if dev == ifname => Ok(Some(mac)),
        Some((_, dev)) => Err(NeighborError::OtherInterface {
            target,
            ifname: ifname.to_owned(),
            actual: dev,
        }),
        None => Ok(None),
    };
    if let Some(mac) = found()? {
        return Ok(mac);
    }
    let probe = |error| NeighborError::Probe {
        target,
        source: error,
    };
    let unspecified = match target {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0)).map_err(probe)?;
    let start = Instant::now();
    let mut last_probe: Option<Instant> = None;
    while start.elapsed() < RESOLVE_TIMEOUT {
        if last_probe.is_none_or(|at| at.elapsed() >= RESEND_INTERVAL) {
            socket
                .send_to(&[0], SocketAddr::new(target, DISCARD_PORT))
                .map_err(probe)?;
            last_probe = Some(Instant::now());
        }
        thread::sleep(POLL_INTERVAL);
        if let Some(mac) = found()? {
            return Ok(mac);
        }
    }
    Err(NeighborError::Unresolved {
        target,
        ifname: ifname.to_owned(),
        timeout: RESOLVE_TIMEOUT,
    })
}

/// The complete entry for `target` in the neighbour table of its family: its MAC and device.
fn complete_entry(target: IpAddr) -> Result<Option<([u8; 6], String)>, NeighborError> {
    let entry = match target {
        IpAddr::V4(target) => {
            let table =
                fs::read_to_string("/proc/thread-self/net/arp").map_err(NeighborError::Table)?;
            lookup_arp(&table, target).map(|(mac, dev)| (mac, dev.to_owned()))
        }
        IpAddr::V6(target) => {
            let table = ipv6_neighbors().map_err(NeighborError::Table)?;
            lookup_ndisc(&table, target).map(|(mac, dev)| (mac, dev.to_owned()))
        }
    };
    Ok(entry)
}

/// The output of `ip -6 neigh show`: every IPv6 neighbour entry of the namespace.
fn ipv6_neighbors() -> io::Result<String> {
    let output = Command::new("ip")
        .args(["-6", "neigh", "show"])
        .output()
        .map_err(|error| io::Error::new(error.kind(), format!("running `ip -6 neigh`: {error}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "`ip -6 neigh show` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The complete entry for `target` in the text of /proc/net/arp: its MAC and device.
fn lookup_arp(table: &str, target: Ipv4Addr) -> Option<([u8; 6], &str)> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [ip, _hw_type, flags, mac, _mask, dev] = fields[..] else {
            return None;
        };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        if ip.parse::<Ipv4Addr>().ok()? != target || flags & ATF_COM == 0 {
            return None;
        }
        Some((mac.parse::<MacArg>().ok()?.0, dev))
    })
}

/// The complete entry for `target` in the text of `ip -6 neigh show`, lines of the form
/// `ADDRESS dev DEV [lladdr MAC] [router] STATE`: its MAC and device. An entry is complete
/// when it has a link-layer address (INCOMPLETE and FAILED entries have none).
fn lookup_ndisc(table: &str, target: Ipv6Addr) -> Option<([u8; 6], &str)> {
    table.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()?.parse::<Ipv6Addr>().ok()? != target {
            return None;
        }
        let (mut dev, mut mac) = (None, None);
        while let Some(word) = words.next() {
            match word {
                "dev" => dev = words.next(),
                "lladdr" => mac = words.next(),
                _ => {}
            }
        }
        Some((mac?.parse::<MacArg>().ok()?.0, dev?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARP_TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
198.18.0.9       0x1         0x0         00:00:00:00:00:00     *        veth0
198.18.0.1       0x1         0x2         4a:1b:00:c3:9e:01     *        veth0
198.18.0.5       0x1         0x2         4a:1b:00:c3:9e:05     *        eth1
";

    const NDISC_TABLE: &str = "\
2001:2::9 dev veth0 INCOMPLETE
2001:2::1 dev veth0 lladdr 4a:1b:00:c3:9e:01 REACHABLE
2001:2::5 dev eth1 lladdr 4a:1b:00:c3:9e:05 router STALE
2001:2::7 dev veth0 FAILED
";

    #[test]
    fn test_lookup_arp_finds_complete_entries_only() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            lookup_arp(ARP_TABLE, ip("198.18.0.1")),
            Some(([0x4a, 0x1b, 0, 0xc3, 0x9e, 0x01], "veth0"))
        );
        assert_eq!(lookup_arp(ARP_TABLE, ip("198.18.0.5")).unwrap().1, "eth1");
        assert_eq!(lookup_arp(ARP_TABLE, ip("198.18.0.9")), None);
        assert_eq!(lookup_arp(ARP_TABLE, ip("198.18.0.2")), None);
        assert_eq!(lookup_arp("", ip("198.18.0.1")), None);
    }

    #[test]
    fn test_lookup_ndisc_finds_complete_entries_only() {
        let ip = |text: &str| text.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            lookup_ndisc(NDISC_TABLE, ip("2001:2::1")),
            Some(([0x4a, 0x1b, 0, 0xc3, 0x9e, 0x01], "veth0"))
        );
        assert_eq!(
            lookup_ndisc(NDISC_TABLE, ip("2001:2::5")),
            Some(([0x4a, 0x1b, 0, 0xc3, 0x9e, 0x05], "eth1"))
        );
        assert_eq!(lookup_ndisc(NDISC_TABLE, ip("2001:2::9")), None);
        assert_eq!(lookup_ndisc(NDISC_TABLE, ip("2001:2::7")), None);
        assert_eq!(lookup_ndisc(NDISC_TABLE, ip("2001:2::2")), None);
        assert_eq!(lookup_ndisc("", ip("2001:2::1")), None);
    }
}
