//! The IP addresses of this host's interfaces, in the calling thread's network namespace
//! (`getifaddrs`, which asks the kernel over a netlink socket of that namespace).
//!
//! Owns nothing past the call.

use std::io;
use std::net::IpAddr;

/// An address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddress {
    /// The interface's name (a VLAN device has its own, e.g. `eth0.100`).
    pub interface: String,
    pub address: IpAddr,
}

/// Every IPv4 and IPv6 address of every interface.
pub fn host_addresses() -> io::Result<Vec<InterfaceAddress>> {
    Ok(nix::ifaddrs::getifaddrs()
        .map_err(io::Error::from)?
        .filter_map(|entry| {
            let address = entry.address?;
            let address = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => IpAddr::V4(v4.ip()),
                (_, Some(v6)) => IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some(InterfaceAddress {
                interface: entry.interface_name,
                address,
            })
        })
        .collect())
}
