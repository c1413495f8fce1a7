//! A completed handshake: everything needed to build the kernel socket that carries on.

use std::time::Duration;

use crate::seq::SeqNumber;
use crate::wire::{
    self, BufferTooSmall, FourTuple, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};

/// How a handshake completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakePath {
    /// The ACK matched a SYN-queue entry.
    Queue,
    /// The ACK carried a valid cookie.
    Cookie,
}

/// Window-scale shifts agreed in the handshake (RFC 7323 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WindowScale {
    /// The peer's shift: applies to windows the peer announces (`snd_wscale`).
    pub send: u8,
    /// Our shift: applies to windows we announce (`rcv_wscale`).
    pub receive: u8,
}

/// A connection whose three-way handshake completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub tuple: FourTuple,
    /// The link addresses of the final ACK (source = the peer's next hop).
    pub link: LinkAddrs,
    pub path: HandshakePath,
    pub client_isn: SeqNumber,
    pub server_isn: SeqNumber,
    /// The largest segment the peer accepts (for a cookie: its MSS rounded down to the table).
    pub mss: u16,
    pub window_scale: Option<WindowScale>,
    pub sack_permitted: bool,
    /// The timestamps of the final ACK: `value` is the peer's clock, `echo` ours.
    pub timestamps: Option<Timestamps>,
    pub ecn: bool,
    /// The peer's receive window in bytes (the ACK's window, scaled).
    pub peer_window: u32,
    /// The window we announced in the SYN-ACK.
    pub receive_window: u16,
    /// Payload carried by the final ACK, to be delivered before anything else.
    pub early_data: Vec<u8>,
    /// From the SYN to the final ACK; known only for connections from the SYN queue.
    pub handshake_duration: Option<Duration>,
}

impl Accepted {
    /// The first sequence number the peer sends after the handshake.
    pub fn peer_next_seq(&self) -> SeqNumber {
        self.client_isn + 1
    }

    /// The first sequence number we send after the handshake.
    pub fn our_next_seq(&self) -> SeqNumber {
        self.server_isn + 1
    }

    /// The final ACK as the local stack takes it in: an IP packet from the peer (IPv4 without
    /// options, IPv6 without extension headers) with the handshake's sequence numbers, the
    /// peer's window and timestamps, and the early data; written into `buf`, of which the
    /// packet is the returned part.
    pub fn final_ack<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], BufferTooSmall> {
        let shift = self.window_scale.map_or(0, |scale| scale.send);
        let flags = if self.early_data.is_empty() {
            TcpFlags::ACK
        } else {
            TcpFlags::ACK | TcpFlags::PSH
        };
        let repr = TcpRepr {
            link: LinkAddrs::default(),
            src: self.tuple.remote,
            dst: self.tuple.local,
            hop_limit: 64,
            seq: self.peer_next_seq(),
            ack: self.our_next_seq(),
            flags,
            // The ACK's own window field: `peer_window` is it, scaled.
            window: u16::try_from(self.peer_window >> shift).unwrap_or(u16::MAX),
            options: TcpOptions {
                timestamps: self.timestamps,
                ..TcpOptions::default()
            },
            payload: &self.early_data,
        };
        let len = wire::emit(&repr, buf)?;
        let range = wire::ip_packet_range(&buf[..len]).expect("an emitted frame has an IP packet");
        Ok(&buf[range])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    fn tuple(local: &str, remote: &str) -> FourTuple {
        FourTuple {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        }
    }

    #[test]
    fn test_hash_tells_every_field_apart() {
        let tuples = [
            tuple("198.18.0.1:80", "198.18.0.2:4000"),
            tuple("198.18.0.2:4000", "198.18.0.1:80"),
            tuple("198.18.0.1:80", "198.18.0.2:4001"),
            tuple("198.18.0.1:81", "198.18.0.2:4000"),
            tuple("198.18.0.1:80", "198.18.0.3:4000"),
            tuple("198.18.0.9:80", "198.18.0.2:4000"),
            tuple("[2001:2::1]:80", "[2001:2::2]:4000"),
            tuple("[2001:2::2]:4000", "[2001:2::1]:80"),
            tuple("[2001:2::1]:80", "[2001:2::3]:4000"),
        ];
        let hasher = std::hash::RandomState::new();
        let hashes: HashSet<u64> = tuples.iter().map(|t| hasher.hash_one(t)).collect();
        assert_eq!(hashes.len(), tuples.len());
        let again = tuple("198.18.0.1:80", "198.18.0.2:4000");
        assert_eq!(hasher.hash_one(again), hasher.hash_one(tuples[0]));
    }
}
