//! Checks of a server configuration against this host, made before anything is attached, so
//! that an impossible setting is refused with its cause (the queue, the CPU, the address)
//! instead of a kernel's "Invalid argument" halfway through start-up.
//!
//! - [`check`]: the interface and its rx queues, the CPUs, the served addresses;
//! - [`check_handoff`]: whether connections can be handed over in a mode;
//! - [`listener_warnings`]: what the kernel's own listeners on the served addresses will do in
//!   a mode (they are the service in native mode, and bypassed in repair mode).
//!
//! [`Server::bind`](crate::server::Server::bind) runs all three; `synwall check-config` runs
//! them without attaching anything. Reads only, in the calling thread's network namespace.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use crate::handoff::HandoffMode;
use crate::kernel;
use crate::server::ServerConfig;
use crate::sys::native::{self, NativeUnavailable};
use crate::sys::{XdpError, addresses, affinity, channels, repair};

/// A setting this host cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Interface(#[from] XdpError),
    #[error(
        "queues: rx queue {queue} does not exist: {interface} has {count} rx queue(s), \
         numbered from 0 (`ethtool -l {interface}`)"
    )]
    NoSuchQueue {
        queue: u32,
        interface: String,
        count: u32,
    },
    #[error("queues: rx queue {queue} is given twice")]
    RepeatedQueue { queue: u32 },
    #[error("cpus: CPU {cpu} is not one synwall may run on (allowed: {allowed})")]
    NoSuchCpu { cpu: usize, allowed: String },
    #[error(
        "listen: {address} is not an address of this host (in this network namespace): serve \
         one of its addresses, or 0.0.0.0 / [::] for all of them"
    )]
    NotHostAddress { address: SocketAddr },
    #[error("native handoff is unavailable: {0}")]
    Native(#[from] NativeUnavailable),
    #[error(
        "synwall cannot hand connections for {local} to the kernel in repair mode: {source}; \
         grant CAP_NET_ADMIN (TCP_REPAIR) and, for a port below \
         net.ipv4.ip_unprivileged_port_start, CAP_NET_BIND_SERVICE"
    )]
    Repair {
        local: SocketAddr,
        source: io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
}

/// What [`check`] found out about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The rx queues to serve: the configured ones, or every queue of the interface.
    pub queues: Vec<u32>,
    /// How many rx queues the interface has.
    pub rx_queue_count: u32,
}

/// Checks that the interface exists, that every configured rx queue is one of its queues (each
/// once), that every CPU is one the process may run on, and that every served address is the
/// host's (or a wildcard).
pub fn check(config: &ServerConfig) -> Result<Checked, PreflightError> {
    let rx_queue_count = channels::rx_queue_count(&config.interface)?;
    let queues = if config.queues.is_empty() {
        (0..rx_queue_count).collect()
    } else {
        check_queues(&config.queues, &config.interface, rx_queue_count)?;
        config.queues.clone()
    };
    if !config.cpus.is_empty() {
        let allowed = affinity::allowed_cpus().map_err(|source| PreflightError::Io {
            what: "cpus: reading the CPUs synwall may run on",
            source,
        })?;
        check_cpus(&config.cpus, &allowed)?;
    }
    let served: Vec<SocketAddr> = config.listener.served.iter().copied().collect();
    if served.iter().any(|address| !address.ip().is_unspecified()) {
        let host = addresses::host_addresses().map_err(|source| PreflightError::Io {
            what: "listen: reading the host's addresses",
            source,
        })?;
        let host: Vec<_> = host.into_iter().map(|entry| entry.address).collect();
        check_addresses(&served, &host)?;
    }
    Ok(Checked {
        queues,
        rx_queue_count,
    })
}

fn check_queues(queues: &[u32], interface: &str, count: u32) -> Result<(), PreflightError> {
    for (index, &queue) in queues.iter().enumerate() {
        if queue >= count {
            return Err(PreflightError::NoSuchQueue {
                queue,
                interface: interface.to_owned(),
                count,
            });
        }
        if queues[..index].contains(&queue) {
            return Err(PreflightError::RepeatedQueue { queue });
        }
    }
    Ok(())
}

fn check_cpus(cpus: &[usize], allowed: &[usize]) -> Result<(), PreflightError> {
    match cpus.iter().find(|cpu| !allowed.contains(cpu)) {
        Some(&cpu) => Err(PreflightError::NoSuchCpu {
            cpu,
            allowed: cpu_list(allowed),
        }),
        None => Ok(()),
    }
}

fn check_addresses(served: &[SocketAddr], host: &[std::net::IpAddr]) -> Result<(), PreflightError> {
    match served
        .iter()
        .find(|address| !address.ip().is_unspecified() && !host.contains(&address.ip()))
    {
        Some(&address) => Err(PreflightError::NotHostAddress { address }),
        None => Ok(()),
    }
}

/// CPUs as `taskset` and cpusets write them: `0-3,6`.
fn cpu_list(cpus: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == cpu => *end = cpu,
            _ => ranges.push((cpu, cpu)),
        }
    }
    ranges
        .iter()
        .map(|&(start, end)| match start == end {
            true => start.to_string(),
            false => format!("{start}-{end}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether connections to `served` can be handed to the kernel in `mode`, as far as can be
/// told without attaching anything: native needs the kernel's support, repair TCP_REPAIR and
/// a bind to each served address. `Auto` is settled by the caller first; it checks nothing.
pub fn check_handoff(mode: HandoffMode, served: &[SocketAddr]) -> Result<(), PreflightError> {
    match mode {
        HandoffMode::Native => Ok(native::check()?),
        HandoffMode::Repair => served.iter().try_for_each(|&local| {
            repair::check_handoff_possible(local)
                .map_err(|source| PreflightError::Repair { local, source })
        }),
        HandoffMode::Auto => Ok(()),
    }
}

/// What the kernel's listener on a served address will do, worth an operator's attention.
#[derive(Debug)]
pub enum ListenerWarning {
    /// Native mode, and no socket listens: clients are reset until the service listens.
    NothingListens(SocketAddr),
    /// Repair mode, and a socket listens: it gets no connections (`ss -ltn` shows it; the
    /// connections synwall hands over are not its).
    BypassedListener(SocketAddr),
    /// /proc could not be read.
    Unknown(SocketAddr, io::Error),
}

impl fmt::Display for ListenerWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenerWarning::NothingListens(address) => write!(
                f,
                "nothing listens on {address} yet: in native mode clients are reset until the \
                 service listens there"
            ),
            ListenerWarning::BypassedListener(address) => write!(
                f,
                "a kernel socket listens on {address}: in repair mode it gets no connections \
                 (synwall takes them all)"
            ),
            ListenerWarning::Unknown(address, error) => write!(
                f,
                "cannot tell whether the service listens on {address}: {error}"
            ),
        }
    }
}

/// The [`ListenerWarning`]s of serving `served` in `mode` (native or repair).
pub fn listener_warnings(mode: HandoffMode, served: &[SocketAddr]) -> Vec<ListenerWarning> {
    served
        .iter()
        .filter_map(|&address| match (mode, kernel::listening_on(address)) {
            (HandoffMode::Native, Ok(false)) => Some(ListenerWarning::NothingListens(address)),
            (HandoffMode::Repair, Ok(true)) => Some(ListenerWarning::BypassedListener(address)),
            (_, Err(error)) => Some(ListenerWarning::Unknown(address, error)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_queue_errors_name_the_queue_and_the_count() {
        let error = check_queues(&[0, 7], "eth0", 2).unwrap_err().to_string();
        assert!(
            error.starts_with("queues: rx queue 7 does not exist: eth0 has 2 rx queue(s)"),
            "{error}"
        );
        let error = check_queues(&[1, 0, 1], "eth0", 2).unwrap_err().to_string();
        assert_eq!(error, "queues: rx queue 1 is given twice");
        assert!(check_queues(&[1, 0], "eth0", 2).is_ok());
    }

    #[test]
    fn test_cpu_errors_name_the_cpu_and_the_allowed_ones() {
        let error = check_cpus(&[1, 99], &[0, 1, 2, 3, 6])
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "cpus: CPU 99 is not one synwall may run on (allowed: 0-3,6)"
        );
        assert!(check_cpus(&[3, 0], &[0, 1, 2, 3]).is_ok());
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[0, 2, 3, 4, 7, 8]), "0,2-4,7-8");
    }

    #[test]
    fn test_served_addresses_must_be_the_hosts_or_a_wildcard() {
        let host = ["198.18.0.1".parse().unwrap(), "2001:2::1".parse().unwrap()];
        let served = |list: &[&str]| -> Vec<SocketAddr> {
            list.iter()
                .map(|address| address.parse().unwrap())
                .collect()
        };
        assert!(check_addresses(&served(&["198.18.0.1:80", "[2001:2::1]:443"]), &host).is_ok());
        assert!(check_addresses(&served(&["0.0.0.0:80", "[::]:80"]), &host).is_ok());
        let error = check_addresses(&served(&["198.18.0.1:80", "198.18.9.9:80"]), &host)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("listen: 198.18.9.9:80 is not an address of this host"),
            "{error}"
        );
    }

    #[test]
    fn test_this_thread_may_run_on_some_cpu() {
        let allowed = affinity::allowed_cpus().unwrap();
        assert!(!allowed.is_empty());
        assert!(allowed.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
