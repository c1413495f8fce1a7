//! Listener settings, named after the sysctls they mirror.

use std::time::Duration;

use crate::cookie::MssTable;
use crate::wire::Endpoints;

/// When SYNs are answered with cookies instead of SYN-queue entries (`tcp_syncookies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncookiesMode {
    /// Never (0): every SYN needs a SYN-queue entry; SYNs that find it full are dropped.
    Never,
    /// When the SYN queue is full (1), the kernel's default.
    #[default]
    WhenFull,
    /// Always (2): no SYN-queue state at all.
    Always,
}

/// Settings of one listener shard.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    /// The addresses and ports served.
    pub served: Endpoints,
    /// `tcp_syncookies`.
    pub syncookies: SyncookiesMode,
    /// SYN-queue capacity (`tcp_max_syn_backlog`): at most 200 bytes per entry, allocated up
    /// front ([`crate::listener::Listener::syn_queue_bytes`]); a full queue takes no more.
    pub max_syn_backlog: usize,
    /// SYN-ACK retransmissions before a queued connection is dropped (`tcp_synack_retries`).
    /// Retransmissions go out 1, 2, 4, 8, 16... s apart; the entry is dropped 2^(retries+1) − 1
    /// seconds after the first SYN-ACK (63 s for 5).
    pub synack_retries: u8,
    /// Answer a completed handshake that finds the accept queue full with a RST
    /// (`tcp_abort_on_overflow`) instead of dropping its ACK.
    pub abort_on_overflow: bool,
    /// The MSS we announce over IPv4 and IPv6.
    pub mss_v4: u16,
    pub mss_v6: u16,
    /// The window-scale shift we offer to clients that offer window scaling.
    pub window_scale: u8,
    /// The receive window in our SYN-ACK (never scaled in a SYN segment).
    pub receive_window: u16,
    /// Offer SACK to clients that offer it.
    pub sack: bool,
    /// Echo timestamps to clients that send them.
    pub timestamps: bool,
    /// Agree to ECN with clients that ask for it (RFC 3168).
    pub ecn: bool,
    /// TTL / hop limit of the segments we send.
    pub hop_limit: u8,
    /// The MSS values cookies can encode.
    pub cookie_mss_v4: MssTable,
    pub cookie_mss_v6: MssTable,
    /// RSTs per second at most to invalid ACKs (RFC 9293 §3.10.7.1); 0 drops them silently.
    /// The bucket holds one second's worth.
    pub invalid_ack_rsts_per_sec: u32,
    /// Bytes of segments held, over all connections being handed off, for their kernel
    /// sockets (the request that follows a final ACK within microseconds); past this they are
    /// dropped and the peers retransmit them.
    pub max_held_bytes: usize,
    /// How long an accepted connection is remembered as being handed off, so that its
    /// retransmitted segments are not taken for new cookie ACKs.
    pub handoff_timeout: Duration,
    /// Connections being handed off, at most; a handshake completing when this is full is
    /// treated as an accept-queue overflow. Worst-case memory: about 200 bytes each.
    pub max_pending_handoffs: usize,
}

impl Default for ListenerConfig {
    fn default() -> ListenerConfig {
        ListenerConfig {
            served: Endpoints::default(),
            syncookies: SyncookiesMode::WhenFull,
            max_syn_backlog: 4096,
            synack_retries: 5,
            abort_on_overflow: false,
            mss_v4: 1460,
            mss_v6: 1440,
            window_scale: 7,
            receive_window: 65535,
            sack: true,
            timestamps: true,
            ecn: false,
            hop_limit: 64,
            cookie_mss_v4: MssTable::IPV4,
            cookie_mss_v6: MssTable::IPV6,
            invalid_ack_rsts_per_sec: 1000,
            max_held_bytes: 8 << 20,
            handoff_timeout: Duration::from_secs(3),
            max_pending_handoffs: 4096,
        }
    }
}

/// A setting that cannot work. Each message starts with the setting's name as the
/// configuration file and the command line spell it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("listen: no address:port to serve")]
    NothingServed,
    #[error("max-syn-backlog: must be at least 1 unless syncookies = always")]
    NoSynQueue,
    #[error("max-syn-backlog: {0} is above the limit of 16777216")]
    SynQueueTooLarge(usize),
    #[error("synack-retries: {0} is above the limit of 10")]
    TooManyRetries(u8),
    #[error("window-scale: {0} is above the RFC 7323 limit of 14")]
    WindowScale(u8),
    #[error("{key}: {value} is below the minimum of 88 (TCP_MIN_MSS)")]
    MssTooSmall { key: &'static str, value: u16 },
    #[error("{key}: {table:?} must be strictly ascending")]
    MssTable { key: &'static str, table: [u16; 4] },
    #[error("max-pending-handoffs: must be at least 1")]
    NoPendingHandoffs,
}

/// The smallest MSS the kernel works with (`TCP_MIN_MSS`).
const MIN_MSS: u16 = 88;
const MAX_SYN_BACKLOG: usize = 1 << 24;
const MAX_SYNACK_RETRIES: u8 = 10;

impl ListenerConfig {
    /// Checks every setting; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.served.iter().next().is_none() {
            return Err(ConfigError::NothingServed);
        }
        if self.max_syn_backlog == 0 && self.syncookies != SyncookiesMode::Always {
            return Err(ConfigError::NoSynQueue);
        }
        if self.max_syn_backlog > MAX_SYN_BACKLOG {
            return Err(ConfigError::SynQueueTooLarge(self.max_syn_backlog));
        }
        if self.synack_retries > MAX_SYNACK_RETRIES {
            return Err(ConfigError::TooManyRetries(self.synack_retries));
        }
        if self.window_scale > 14 {
            return Err(ConfigError::WindowScale(self.window_scale));
        }
        for (key, value) in [("mss-v4", self.mss_v4), ("mss-v6", self.mss_v6)] {
            if value < MIN_MSS {
                return Err(ConfigError::MssTooSmall { key, value });
            }
        }
        for (key, table) in [
            ("cookie-mss-v4", self.cookie_mss_v4),
            ("cookie-mss-v6", self.cookie_mss_v6),
        ] {
            if !table.is_ascending() {
                return Err(ConfigError::MssTable {
                    key,
                    table: table.0,
                });
            }
        }
        if self.max_pending_handoffs == 0 {
            return Err(ConfigError::NoPendingHandoffs);
        }
        Ok(())
    }
}
