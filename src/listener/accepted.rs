//! A completed handshake: everything needed to build the kernel socket that carries on.

use std::net::SocketAddr;
use std::time::Duration;

use crate::seq::SeqNumber;
use crate::wire::{LinkAddrs, Timestamps};

/// A connection's addresses, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourTuple {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

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
}
