//! The destination MAC address: the target's entry in the kernel's neighbour (ARP) table on the
//! generator's interface.
//!
//! When there is no complete entry yet, one UDP datagram to the target's discard port (9)
//! makes the kernel resolve it; the table (`/proc/thread-self/net/arp`, the calling thread's
//! network namespace) is then polled. The target must be on the generator's link: for a
//! target behind a router, pass the router's MAC with `--dst-mac`. The datagram goes to the
//! target only, which the address guard has already checked.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::thread;
use std::time::{Duration, Instant};

use crate::cli::MacArg;

/// How long resolution may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
const RESEND_INTERVAL: Duration = Duration::from_millis(500);
/// The discard service (RFC 863): whatever answers, nothing is done with the datagram.
const DISCARD_PORT: u16 = 9;
/// ATF_COM in the flags column: the entry is complete.
const ATF_COM: u32 = 0x2;

/// Why the MAC address could not be found.
#[derive(Debug, thiserror::Error)]
pub enum NeighborError {
    #[error(
        "no ARP entry for {target} on {ifname} after {timeout:?}: is the target on this link? \
         (give the next hop's MAC with --dst-mac)"
    )]
    Unresolved {
        target: Ipv4Addr,
        ifname: String,
        timeout: Duration,
    },
    #[error(
        "{target} is reached through {actual}, not {ifname}: flood from {actual}, or give \
         --dst-mac"
    )]
    OtherInterface {
        target: Ipv4Addr,
        ifname: String,
        actual: String,
    },
    #[error("probing {target} to resolve its MAC address: {source}")]
    Probe { target: Ipv4Addr, source: io::Error },
    #[error("reading the ARP table: {0}")]
    Table(io::Error),
}

/// The MAC address of `target` on `ifname`, resolving it if needed.
pub fn resolve(target: Ipv4Addr, ifname: &str) -> Result<[u8; 6], NeighborError> {
    let read_table =
        || fs::read_to_string("/proc/thread-self/net/arp").map_err(NeighborError::Table);
    let found = |table: &str| match lookup(table, target) {
        Some((mac, dev)) if dev == ifname => Ok(Some(mac)),
        Some((_, dev)) => Err(NeighborError::OtherInterface {
            target,
            ifname: ifname.to_owned(),
            actual: dev.to_owned(),
        }),
        None => Ok(None),
    };
    if let Some(mac) = found(&read_table()?)? {
        return Ok(mac);
    }
    let probe = |error| NeighborError::Probe {
        target,
        source: error,
    };
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(probe)?;
    let start = Instant::now();
    let mut last_probe: Option<Instant> = None;
    while start.elapsed() < RESOLVE_TIMEOUT {
        if last_probe.is_none_or(|at| at.elapsed() >= RESEND_INTERVAL) {
            socket
                .send_to(&[0], SocketAddrV4::new(target, DISCARD_PORT))
                .map_err(probe)?;
            last_probe = Some(Instant::now());
        }
        thread::sleep(POLL_INTERVAL);
        if let Some(mac) = found(&read_table()?)? {
            return Ok(mac);
        }
    }
    Err(NeighborError::Unresolved {
        target,
        ifname: ifname.to_owned(),
        timeout: RESOLVE_TIMEOUT,
    })
}

/// The complete entry for `target` in the text of /proc/net/arp: its MAC and device.
fn lookup(table: &str, target: Ipv4Addr) -> Option<([u8; 6], &str)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
IP address       HW type     Flags       HW address            Mask     Device
198.18.0.9       0x1         0x0         00:00:00:00:00:00     *        veth0
198.18.0.1       0x1         0x2         4a:1b:00:c3:9e:01     *        veth0
198.18.0.5       0x1         0x2         4a:1b:00:c3:9e:05     *        eth1
";

    #[test]
    fn test_lookup_finds_complete_entries_only() {
        let ip = |text: &str| text.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            lookup(TABLE, ip("198.18.0.1")),
            Some(([0x4a, 0x1b, 0, 0xc3, 0x9e, 0x01], "veth0"))
        );
        assert_eq!(lookup(TABLE, ip("198.18.0.5")).unwrap().1, "eth1");
        assert_eq!(lookup(TABLE, ip("198.18.0.9")), None);
        assert_eq!(lookup(TABLE, ip("198.18.0.2")), None);
        assert_eq!(lookup("", ip("198.18.0.1")), None);
    }
}
