//! The address guard: loadgen sends only to, and spoofs only from, the benchmarking ranges
//! 198.18.0.0/15 (RFC 2544 §C.2.2, reserved for network device benchmarks by RFC 6890) and
//! 2001:2::/48 (RFC 5180 §5.2, its IPv6 counterpart), unless the operator names
//! `--allow-outside-benchmark-range`.
//!
//! Every address loadgen puts on the wire passes through here once, at configuration time: the
//! target (floods, legit clients, the neighbour probe) and the CIDR spoofed sources are drawn
//! from. [`Cidr`] is the one type for address ranges of either family, so "inside" has one
//! meaning: an address is inside a range of its own family only (an IPv4-mapped IPv6 address
//! is an IPv6 address, inside no IPv4 range).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The only ranges loadgen touches by default: 198.18.0.0/15 and 2001:2::/48.
pub const BENCHMARK_RANGES: [Cidr; 2] = [
    Cidr {
        network: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)),
        prefix_len: 15,
    },
    Cidr {
        network: IpAddr::V6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0)),
        prefix_len: 48,
    },
];

/// The flag that lifts the guard.
pub const OVERRIDE_FLAG: &str = "--allow-outside-benchmark-range";

/// An IPv4 or IPv6 network: an address whose host bits are zero, and a prefix length.
///
/// Host parts are `u128` for both families; an IPv4 network has at most 32 host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// A malformed CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not of the form ADDRESS/LENGTH (a.b.c.d/len or an IPv6 address/len)")]
    Syntax(String),
    #[error("prefix length {prefix_len} is larger than {width}, the length of {network}")]
    PrefixLength {
        network: IpAddr,
        prefix_len: u8,
        width: u8,
    },
    #[error("{addr}/{prefix_len} has host bits set; did you mean {network}/{prefix_len}?")]
    HostBits {
        addr: IpAddr,
        prefix_len: u8,
        network: IpAddr,
    },
}

impl Cidr {
    /// The network `addr/prefix_len`; `addr` must have no host bits set.
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        let width = width(addr);
        if prefix_len > width {
            return Err(CidrError::PrefixLength {
                network: addr,
                prefix_len,
                width,
            });
        }
        let network = from_bits(addr, bits(addr) & network_mask(prefix_len, width));
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

    /// Whether the network is an IPv4 one.
    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// The bits of an address that vary inside the network.
    pub fn host_mask(&self) -> u128 {
        let width = width(self.network);
        all_ones(width) & !network_mask(self.prefix_len, width)
    }

    /// Whether `addr` lies inside (never, for an address of the other family).
    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.is_ipv4()
            && bits(addr) & network_mask(self.prefix_len, width(addr)) == bits(self.network)
    }

    /// Whether every address of `other` lies inside.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.network)
    }

    /// The address of the network with host part `host` (masked to the host bits).
    pub fn address(&self, host: u128) -> IpAddr {
        from_bits(self.network, bits(self.network) | (host & self.host_mask()))
    }

    /// The host part of `addr` (its host bits; `addr` need not lie inside).
    pub fn host(&self, addr: IpAddr) -> u128 {
        bits(addr) & self.host_mask()
    }
}

/// The address length of `addr`'s family, in bits.
fn width(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// The address of `family`'s family with these bits (truncated to 32 for IPv4).
fn from_bits(family: IpAddr, bits: u128) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from_bits(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from_bits(bits)),
    }
}

/// The low `width` bits set.
fn all_ones(width: u8) -> u128 {
    u128::MAX >> (128 - u32::from(width))
}

/// The top `prefix_len` of `width` bits set.
fn network_mask(prefix_len: u8, width: u8) -> u128 {
    let host_bits = all_ones(width)
        .checked_shr(u32::from(prefix_len))
        .unwrap_or(0);
    all_ones(width) & !host_bits
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, CidrError> {
        let syntax = || CidrError::Syntax(text.to_owned());
        let (addr, len) = text.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Cidr::new(addr, len)
    }
}

/// The benchmark ranges in words, for messages.
fn ranges_text() -> String {
    let [v4, v6] = BENCHMARK_RANGES;
    format!("{v4} (RFC 2544) and {v6} (RFC 5180)")
}

/// An address outside the benchmark ranges, refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error(
        "target {0} lies outside the benchmark ranges {ranges}: loadgen refuses to send to it \
         unless {OVERRIDE_FLAG} is given",
        ranges = ranges_text()
    )]
    TargetOutside(IpAddr),
    #[error(
        "spoofed source range {0} is not inside the benchmark ranges {ranges}: loadgen refuses \
         to spoof it unless {OVERRIDE_FLAG} is given",
        ranges = ranges_text()
    )]
    SourcesOutside(Cidr),
}

/// Checks the target and the spoofed source range against [`BENCHMARK_RANGES`]; returns every
/// violation (empty when both lie inside a range).
pub fn violations(target: IpAddr, sources: &Cidr) -> Vec<GuardError> {
    let mut found = Vec::new();
    if !BENCHMARK_RANGES.iter().any(|range| range.contains(target)) {
        found.push(GuardError::TargetOutside(target));
    }
    if !BENCHMARK_RANGES
        .iter()
        .any(|range| range.contains_cidr(sources))
    {
        found.push(GuardError::SourcesOutside(*sources));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(text: &str) -> Cidr {
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
        assert!(violations(ip("2001:2::1"), &cidr("2001:2:0:8000::/49")).is_empty());
        assert!(
            violations(
                ip("2001:2:0:ffff:ffff:ffff:ffff:ffff"),
                &cidr("2001:2::/48")
            )
            .is_empty()
        );
        let last = "2001:2:0:ffff:ffff:ffff:ffff:ffff/128";
        assert!(violations(ip("2001:2::"), &cidr(last)).is_empty());
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
            "::",
            "::ffff:198.18.0.1",
            "2001:1:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:2:1::",
            "2001:db8::1",
            "fe80::1",
            "fd00::1",
        ] {
            let sources = if ip(target).is_ipv4() {
                cidr("198.18.128.0/17")
            } else {
                cidr("2001:2:0:8000::/49")
            };
            assert_eq!(
                violations(ip(target), &sources),
                vec![GuardError::TargetOutside(ip(target))],
                "{target}"
            );
        }
    }

    #[test]
    fn test_sources_outside_are_refused() {
        for (target, sources) in [
            ("198.18.0.1", "198.16.0.0/14"), // wider than the range, containing it
            ("198.18.0.1", "0.0.0.0/0"),
            ("198.18.0.1", "10.0.0.0/8"),
            ("198.18.0.1", "198.20.0.0/16"),
            ("198.18.0.1", "198.17.255.255/32"),
            ("2001:2::1", "2001:2::/47"), // wider, containing it
            ("2001:2::1", "::/0"),
            ("2001:2::1", "2001:db8::/32"),
            ("2001:2::1", "2001:2:1::/48"),
            ("2001:2::1", "::ffff:198.18.0.0/111"), // IPv4-mapped: IPv6, outside
        ] {
            let sources = cidr(sources);
            assert_eq!(
                violations(ip(target), &sources),
                vec![GuardError::SourcesOutside(sources)],
                "{sources}"
            );
        }
    }

    #[test]
    fn test_both_outside_reports_both() {
        assert_eq!(violations(ip("10.1.1.1"), &cidr("10.0.0.0/8")).len(), 2);
        assert_eq!(violations(ip("fd00::1"), &cidr("fd00::/64")).len(), 2);
    }

    #[test]
    fn test_error_names_the_override_and_both_ranges() {
        let message = violations(ip("8.8.8.8"), &cidr("198.18.0.0/16"))[0].to_string();
        assert!(message.contains(OVERRIDE_FLAG), "{message}");
        assert!(message.contains("198.18.0.0/15"), "{message}");
        assert!(message.contains("2001:2::/48"), "{message}");
    }

    #[test]
    fn test_inside_means_the_same_family() {
        let [v4, v6] = BENCHMARK_RANGES;
        assert!(v4.contains(ip("198.18.0.1")) && !v6.contains(ip("198.18.0.1")));
        assert!(v6.contains(ip("2001:2::1")) && !v4.contains(ip("2001:2::1")));
        assert!(!v4.contains(ip("::ffff:198.18.0.1")));
        assert!(!v4.contains_cidr(&cidr("2001:2::/64")));
        assert!(!v6.contains_cidr(&cidr("198.18.0.0/16")));
        // Every IPv4 address is "inside" 0.0.0.0/0, and no IPv6 one.
        assert!(!cidr("0.0.0.0/0").contains(ip("::")));
    }

    #[test]
    fn test_cidr_parsing() {
        assert_eq!(cidr("198.18.128.0/17").host_mask(), 0x7fff);
        assert_eq!(cidr("0.0.0.0/0").host_mask(), u128::from(u32::MAX));
        assert_eq!(cidr("1.2.3.4/32").host_mask(), 0);
        assert_eq!(cidr("2001:2:0:8000::/49").host_mask(), u128::MAX >> 49);
        assert_eq!(cidr("::/0").host_mask(), u128::MAX);
        assert_eq!(cidr("2001:2::1/128").host_mask(), 0);
        assert_eq!(cidr("2001:2:0:8000::/49").to_string(), "2001:2:0:8000::/49");
        assert!(matches!(
            "198.18.128.1/17".parse::<Cidr>(),
            Err(CidrError::HostBits { .. })
        ));
        assert!(matches!(
            "2001:2:0:8001::/49".parse::<Cidr>(),
            Err(CidrError::HostBits { .. })
        ));
        assert!(matches!(
            "198.18.0.0/33".parse::<Cidr>(),
            Err(CidrError::PrefixLength { width: 32, .. })
        ));
        assert!(matches!(
            "2001:2::/129".parse::<Cidr>(),
            Err(CidrError::PrefixLength { width: 128, .. })
        ));
        for bad in [
            "198.18.0.0",
            "198.18.0/16",
            "x/1",
            "198.18.0.0/-1",
            "",
            "[::1]/8",
        ] {
            assert!(
                matches!(bad.parse::<Cidr>(), Err(CidrError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn test_address_stays_inside() {
        for range in [
            "198.18.128.0/17",
            "2001:2:0:8000::/49",
            "198.18.0.7/32",
            "::/0",
        ] {
            let range = cidr(range);
            for host in [0, 1, 0x7fff, 0x8000, u128::from(u32::MAX), u128::MAX] {
                assert!(range.contains(range.address(host)), "{range} {host}");
                assert_eq!(range.host(range.address(host)), host & range.host_mask());
            }
        }
        assert_eq!(cidr("198.18.128.0/17").address(9), ip("198.18.128.9"));
        assert_eq!(
            cidr("2001:2:0:8000::/49").address(0x1_0000_0009),
            ip("2001:2:0:8000::1:0:9")
        );
    }
}
