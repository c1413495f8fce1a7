//! What the SYNs of common client stacks look like on the wire: TTL, window and the exact TCP
//! option layout, byte for byte, as p0f's signature database (`p0f.fp`) records them.
//!
//! | stack | p0f signature (ttl:…:window,scale:layout) |
//! |---|---|
//! | Linux 3.x–6.x | `64:…:mss*44,7:mss,sok,ts,nop,ws` |
//! | Windows 10/11 | `128:…:64240,8:mss,nop,ws,nop,nop,sok` |
//! | macOS / iOS | `64:…:65535,6:mss,nop,ws,nop,nop,ts,sok,eol+1` |
//!
//! Every layout is a multiple of 4 bytes, and the timestamps value sits at an even offset, so a
//! [`Template`](crate::template::Template) can patch it with 16-bit checksum words.

/// The TSval offset inside an options block of the form `NOP, NOP, TS` (an ACK's options).
pub const NOP_NOP_TIMESTAMPS_VALUE_AT: usize = 4;
/// `NOP, NOP, TS(value 0, echo 0)`: the options of a Linux segment after the handshake.
pub const NOP_NOP_TIMESTAMPS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0];

/// A client stack's SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynFingerprint {
    /// The stack, for reports.
    pub name: &'static str,
    /// The IPv4 TTL it starts with.
    pub ttl: u8,
    /// The window of its SYN.
    pub window: u16,
    /// Its TCP options, byte for byte (TSval and TSecr zero, to be patched).
    pub options: &'static [u8],
    /// Where TSval starts inside `options`, if it sends timestamps.
    pub timestamps_value_at: Option<usize>,
}

/// Linux: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
pub const LINUX: SynFingerprint = SynFingerprint {
    name: "linux",
    ttl: 64,
    window: 64240,
    options: &[
        2, 4, 0x05, 0xb4, // MSS 1460
        4, 2, // SACK-permitted
        8, 10, 0, 0, 0, 0, 0, 0, 0, 0, // timestamps
        1, // NOP
        3, 3, 7, // window scale 7
    ],
    timestamps_value_at: Some(8),
};

/// Windows 10/11: MSS 1460, NOP, window scale 8, NOP, NOP, SACK-permitted; no timestamps.
pub const WINDOWS: SynFingerprint = SynFingerprint {
    name: "windows",
    ttl: 128,
    window: 64240,
    options: &[
        2, 4, 0x05, 0xb4, // MSS 1460
        1,    // NOP
        3, 3, 8, // window scale 8
        1, 1, // NOP, NOP
        4, 2, // SACK-permitted
    ],
    timestamps_value_at: None,
};

/// macOS: MSS 1460, NOP, window scale 6, NOP, NOP, timestamps, SACK-permitted, EOL, padding.
pub const MACOS: SynFingerprint = SynFingerprint {
    name: "macos",
    ttl: 64,
    window: 65535,
    options: &[
        2, 4, 0x05, 0xb4, // MSS 1460
        1,    // NOP
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
            assert_eq!(fingerprint.options.len() % 4, 0, "{}", fingerprint.name);
            assert!(fingerprint.options.len() <= 40, "{}", fingerprint.name);
            if let Some(at) = fingerprint.timestamps_value_at {
                assert_eq!(at % 2, 0, "{}", fingerprint.name);
                assert_eq!(&fingerprint.options[at - 2..at], &[8, 10]);
            }
        }
        assert_eq!(
            &NOP_NOP_TIMESTAMPS[NOP_NOP_TIMESTAMPS_VALUE_AT - 2..NOP_NOP_TIMESTAMPS_VALUE_AT],
            &[8, 10]
        );
    }
}
