//! What the SYNs of common client stacks look like on the wire: TTL, window and the exact TCP
//! option layout, byte for byte, as p0f's signature database (`p0f.fp`) records them.
//!
//! | stack | p0f signature (ttl:…:window,scale:layout) |
//! |---|---|
//! | Linux 3.x–6.x | `64:…:mss*44,7:mss,sok,ts,nop,ws` |
//! | Windows 10/11 | `128:…:64240,8:mss,nop,ws,nop,nop,sok` |
//! | macOS / iOS | `64:…:65535,6:mss,nop,ws,nop,nop,ts,sok,eol+1` |
//!
//! The layouts are the same over IPv6; what changes is the MSS a client on Ethernet announces
//! ([`ethernet_mss`]: 1460 over IPv4, 1440 over IPv6, whose header is 20 bytes longer) and,
//! for Linux and Windows, the window, the largest multiple of that MSS up to 65535 (64240 over
//! IPv4, 64800 over IPv6). The hop limit starts where the TTL does.
//!
//! Every layout is a multiple of 4 bytes and starts with the MSS option, and the timestamps
//! value sits at an even offset, so a [`Template`](crate::template::Template) can patch it with
//! 16-bit checksum words.

use std::net::IpAddr;

/// The TSval offset inside an options block of the form `NOP, NOP, TS` (an ACK's options).
pub const NOP_NOP_TIMESTAMPS_VALUE_AT: usize = 4;
/// `NOP, NOP, TS(value 0, echo 0)`: the options of a Linux segment after the handshake.
pub const NOP_NOP_TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];
/// Where the MSS value sits in every layout: right after the kind and length of the first
/// option.
const MSS_VALUE_AT: usize = 2;

/// The MSS a client on Ethernet (MTU 1500) announces to `target`: the MTU less the IP and TCP
/// headers.
pub fn ethernet_mss(target: IpAddr) -> u16 {
    match target {
        IpAddr::V4(_) => 1500 - 20 - 20,
        IpAddr::V6(_) => 1500 - 40 - 20,
    }
}

/// How a stack sizes the window of its SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynWindow {
    /// The largest multiple of the MSS up to 65535.
    MssMultiple,
    /// This window, whatever the MSS.
    Fixed(u16),
}

/// A client stack's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynFingerprint {
    /// The stack, for reports.
    pub name: &'static str,
    /// The IPv4 TTL, or IPv6 hop limit, it starts with.
    pub ttl: u8,
    /// How it sizes the window of its SYN ([`SynFingerprint::window_for`]).
    pub window: SynWindow,
    /// Its TCP options, byte for byte, with the MSS value and the timestamps zero: see
    /// [`SynFingerprint::options`].
    pub layout: &'static [u8],
    /// Where TSval starts inside the layout, if it sends timestamps.
    pub timestamps_value_at: Option<usize>,
}

impl SynFingerprint {
    /// The window of its SYN when it announces `mss`.
    pub fn window_for(&self, mss: u16) -> u16 {
        match self.window {
            SynWindow::MssMultiple => u16::MAX / mss * mss,
            SynWindow::Fixed(window) => window,
        }
    }

    /// Its TCP options announcing `mss` (TSval and TSecr zero, to be patched).
    pub fn options(&self, mss: u16) -> Vec<u8> {
        let mut options = self.layout.to_vec();
        options[MSS_VALUE_AT..MSS_VALUE_AT + 2].copy_from_slice(&mss.to_be_bytes());
        options
    }
}

/// Linux: MSS, SACK-permitted, timestamps, NOP, window scale 7.
pub const LINUX: SynFingerprint = SynFingerprint {
    name: "linux",
    ttl: 64,
    window: SynWindow::MssMultiple,
    layout: &[
        2, 4, 0, 0, // MSS
        4, 2, // SACK-permitted
        8, 10, 0, 0, 0, 0, 0, 0, 0, 0, // timestamps
        1, // NOP
        3, 3, 7, // window scale 7
    ],
    timestamps_value_at: Some(8),
};

/// Windows 10/11: MSS, NOP, window scale 8, NOP, NOP, SACK-permitted; no timestamps.
pub const WINDOWS: SynFingerprint = SynFingerprint {
    name: "windows",
    ttl: 128,
    window: SynWindow::MssMultiple,
    layout: &[
        2, 4, 0, 0, // MSS
        1, // NOP
        3, 3, 8, // window scale 8
        1, 1, // NOP, NOP
        4, 2, // SACK-permitted
    ],
    timestamps_value_at: None,
};

/// macOS: MSS, NOP, window scale 6, NOP, NOP, timestamps, SACK-permitted, EOL, padding.
pub const MACOS: SynFingerprint = SynFingerprint {
    name: "macos",
    ttl: 64,
    window: SynWindow::Fixed(65535),
    layout: &[
        2, 4, 0, 0, // MSS
        1, // NOP
        3, 3, 6, // window scale 6
        1, 1, // NOP, NOP
        8, 10, 0, 0, 0, 0, 0, 0, 0, 0, // timestamps
        4, 2, // SACK-permitted
        0, 0, // EOL, padding
    ],
    timestamps_value_at: Some(12),
};

/// The stacks SYN floods rotate through, one per packet.
pub const ALL: [SynFingerprint; 3] = [LINUX, WINDOWS, MACOS];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_layouts_are_aligned() {
        for fingerprint in ALL {
            let layout = fingerprint.layout;
            assert_eq!(layout.len() % 4, 0, "{}", fingerprint.name);
            assert!(layout.len() <= 40, "{}", fingerprint.name);
            assert_eq!(&layout[..MSS_VALUE_AT], &[2, 4], "{}", fingerprint.name);
            if let Some(at) = fingerprint.timestamps_value_at {
                assert_eq!(at % 2, 0, "{}", fingerprint.name);
                assert_eq!(&layout[at - 2..at], &[8, 10]);
            }
        }
        assert_eq!(
            &NOP_NOP_TIMESTAMPS[NOP_NOP_TIMESTAMPS_VALUE_AT - 2..NOP_NOP_TIMESTAMPS_VALUE_AT],
            &[8, 10]
        );
    }

    #[test]
    fn test_mss_and_window_per_family() {
        let v4 = ethernet_mss("198.18.0.1".parse().unwrap());
        let v6 = ethernet_mss("2001:2::1".parse().unwrap());
        assert_eq!((v4, v6), (1460, 1440));
        assert_eq!(LINUX.options(v4)[..4], [2, 4, 0x05, 0xb4]);
        assert_eq!(WINDOWS.options(v6)[..4], [2, 4, 0x05, 0xa0]);
        for stack in [LINUX, WINDOWS] {
            assert_eq!((stack.window_for(v4), stack.window_for(v6)), (64240, 64800));
        }
        assert_eq!((MACOS.window_for(v4), MACOS.window_for(v6)), (65535, 65535));
    }
}
