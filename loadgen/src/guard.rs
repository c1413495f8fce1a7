//! The address guard: loadgen sends only to, and spoofs only from, the benchmarking range
//! 198.18.0.0/15 (RFC 2544 §C.2.2, reserved for network device benchmarks by RFC 6890), unless
//! the operator names `--allow-outside-benchmark-range`.
//!
//! Every address loadgen puts on the wire passes through here once, at configuration time: the
//! target (floods, legit clients, the neighbour probe) and the CIDR spoofed sources are drawn
//! from. [`Ipv4Cidr`] is the one type for address ranges, so "inside" has one meaning.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// 198.18.0.0/15: the only range loadgen touches by default.
pub const BENCHMARK_RANGE: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::new(198, 18, 0, 0),
    prefix_len: 15,
};

/// The flag that lifts the guard.
pub const OVERRIDE_FLAG: &str = "--allow-outside-benchmark-range";

/// An IPv4 network: an address whose host bits are zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

/// A malformed CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not of the form a.b.c.d/len")]
    Syntax(String),
    #[error("prefix length {0} is larger than 32")]
    PrefixLength(u8),
    #[error("{addr}/{prefix_len} has host bits set; did you mean {network}/{prefix_len}?")]
    HostBits {
        addr: Ipv4Addr,
        prefix_len: u8,
        network: Ipv4Addr,
    },
}

impl Ipv4Cidr {
    /// The network `addr/prefix_len`; `addr` must have no host bits set.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::PrefixLength(prefix_len));
        }
        let network = Ipv4Addr::from(u32::from(addr) & network_mask(prefix_len));
        if network != addr {
            return Err(CidrError::HostBits {
                addr,
                prefix_len,
                network,
            });
        }
        Ok(Self {
            network,
            prefix_len,
        })
    }

    /// The bits of an address that vary inside the network.
    pub fn host_mask(&self) -> u32 {
        !network_mask(self.prefix_len)
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & network_mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether every address of `other` lies inside.
    pub fn contains_cidr(&self, other: &Ipv4Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }

    /// The address of the network with host part `host` (masked to the host bits).
    pub fn address(&self, host: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | (host & self.host_mask()))
    }
}

fn network_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0)
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Ipv4Cidr::new(addr, len)
    }
}

/// An address outside the benchmark range, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(
        "target {0} lies outside the benchmark range {BENCHMARK_RANGE} (RFC 2544): loadgen \
         refuses to send to it unless {OVERRIDE_FLAG} is given"
    )]
    TargetOutside(IpAddr),
    #[error(
        "spoofed source range {0} is not inside the benchmark range {BENCHMARK_RANGE} \
         (RFC 2544): loadgen refuses to spoof it unless {OVERRIDE_FLAG} is given"
    )]
    SourcesOutside(Ipv4Cidr),
}

/// Checks the target and the spoofed source range against [`BENCHMARK_RANGE`]; returns every
/// violation (empty when both lie inside).
pub fn violations(target: IpAddr, sources: &Ipv4Cidr) -> Vec<GuardError> {
    let mut found = Vec::new();
    let target_inside = match target {
        IpAddr::V4(v4) => BENCHMARK_RANGE.contains(v4),
        IpAddr::V6(_) => false,
    };
    if !target_inside {
        found.push(GuardError::TargetOutside(target));
    }
    if !BENCHMARK_RANGE.contains_cidr(sources) {
        found.push(GuardError::SourcesOutside(*sources));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Ipv4Cidr {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn test_lab_addresses_pass() {
        assert!(violations(ip("198.18.0.1"), &cidr("198.18.128.0/17")).is_empty());
        assert!(violations(ip("198.19.255.255"), &cidr("198.18.0.0/15")).is_empty());
        assert!(violations(ip("198.18.0.0"), &cidr("198.19.255.255/32")).is_empty());
    }

    #[test]
    fn test_target_outside_is_refused() {
        for target in [
            "198.17.255.255",
            "198.20.0.0",
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "8.8.8.8",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::ffff:198.18.0.1",
        ] {
            assert_eq!(
                violations(ip(target), &cidr("198.18.128.0/17")),
                vec![GuardError::TargetOutside(ip(target))],
                "{target}"
            );
        }
    }

    #[test]
    fn test_sources_outside_are_refused() {
        for sources in [
            "198.16.0.0/14", // wider than the range, containing it
            "0.0.0.0/0",
            "10.0.0.0/8",
            "198.20.0.0/16",
            "198.17.255.255/32",
        ] {
            let sources = cidr(sources);
            assert_eq!(
                violations(ip("198.18.0.1"), &sources),
                vec![GuardError::SourcesOutside(sources)],
                "{sources}"
            );
        }
    }

    #[test]
    fn test_both_outside_reports_both() {
        assert_eq!(violations(ip("10.1.1.1"), &cidr("10.0.0.0/8")).len(), 2);
    }

    #[test]
    fn test_error_names_the_override() {
        let message = violations(ip("8.8.8.8"), &cidr("198.18.0.0/16"))[0].to_string();
        assert!(message.contains(OVERRIDE_FLAG), "{message}");
        assert!(message.contains("198.18.0.0/15"), "{message}");
    }

    #[test]
    fn test_cidr_parsing() {
        assert_eq!(cidr("198.18.128.0/17").host_mask(), 0x7fff);
        assert_eq!(cidr("0.0.0.0/0").host_mask(), u32::MAX);
        assert_eq!(cidr("1.2.3.4/32").host_mask(), 0);
        assert!(matches!(
            "198.18.128.1/17".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits { .. })
        ));
        assert!(matches!(
            "198.18.0.0/33".parse::<Ipv4Cidr>(),
            Err(CidrError::PrefixLength(33))
        ));
        for bad in ["198.18.0.0", "198.18.0/16", "x/1", "198.18.0.0/-1", ""] {
            assert!(
                matches!(bad.parse::<Ipv4Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn test_address_stays_inside() {
        let range = cidr("198.18.128.0/17");
        for host in [0, 1, 0x7fff, 0x8000, u32::MAX] {
            assert!(range.contains(range.address(host)));
        }
        assert_eq!(
            range.address(9),
            "198.18.128.9".parse::<Ipv4Addr>().unwrap()
        );
    }
}
