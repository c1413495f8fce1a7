//! A connection's identity: its two endpoints.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// A connection's addresses, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FourTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// Hashes what identifies a connection in as few writes as possible: the SYN queue and the
/// handoff records hash every segment's tuple with SipHash, whose cost grows with each
/// `write` (a derived `Hash` makes ten, discriminants and length prefixes included).
/// Equal tuples hash equally: IPv6 flow labels and scope ids, which `Eq` also compares, are
/// left out.
impl Hash for FourTuple {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let ports = u32::from(self.local.port()) << 16 | u32::from(self.remote.port());
        match (self.local, self.remote) {
            (SocketAddr::V4(local), SocketAddr::V4(remote)) => {
                let addresses =
                    u64::from(local.ip().to_bits()) << 32 | u64::from(remote.ip().to_bits());
                state.write_u128(u128::from(addresses) << 32 | u128::from(ports));
            }
            (SocketAddr::V6(local), SocketAddr::V6(remote)) => {
                state.write_u128(local.ip().to_bits());
                state.write_u128(remote.ip().to_bits());
                state.write_u32(ports);
            }
            (local, remote) => {
                local.hash(state);
                remote.hash(state);
            }
        }
    }
}
