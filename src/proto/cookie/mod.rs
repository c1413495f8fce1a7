//! SYN cookies: the whole state of a handshake folded into the server's initial sequence
//! number, so a SYN needs no memory until its ACK proves the peer's address.
//!
//! # Layout of the 32-bit cookie (our ISN)
//!
//! ```text
//!    31   30  29  28                                                0
//!  +----+--------+---------------------------------------------------+
//!  | kp |  mssi  |                  MAC (29 bits)                    |
//!  +----+--------+---------------------------------------------------+
//! ```
//! - `kp`: parity of the key epoch; selects one of the two key slots ([`keys::KeyRing`]).
//! - `mssi`: index into the MSS table of the address family ([`MssTable`]).
//! - `MAC`: the first 29 bits of HMAC-SHA256(epoch key, local address ‖ peer address ‖
//!   local port ‖ peer port ‖ client ISN ‖ mssi ‖ option byte). The option byte is
//!   `0x40 | option bits` when the client sent timestamps, else 0.
//!
//! When the client sends timestamps, the options of its SYN that the ACK does not repeat travel
//! in the low 6 bits of our TSval, which the client echoes in every TSecr ([`SynOptions`]):
//!
//! ```text
//!    5     4      3     0
//!  +-----+------+---------+
//!  | ecn | sack | wscale  |     wscale 15 = no window scaling
//!  +-----+------+---------+
//! ```
//! Unlike the kernel's cookies, those bits are covered by the MAC: a forged TSecr cannot turn
//! on window scaling or SACK. Without timestamps the bits have nowhere to travel, so a cookie
//! handshake without timestamps gets no window scaling and no SACK (the kernel does the same).
//!
//! # Cost and forgery odds
//!
//! One MAC per SYN and at most one per ACK: HMAC-SHA256 from a pre-keyed state is two SHA-256
//! compressions (the message fits one block; see `mac.rs`). The listener computes the MACs of a
//! batch of frames together (`prepared.rs`, and synwall's `sys::sha256` for the SIMD forms).
//! A blind attacker picks the ACK
//! number; for a given 4-tuple, client ISN and option bits, exactly 2 (key parities) × 4 (MSS
//! indexes) = 8 of the 2^32 values carry a valid MAC, so an ACK is accepted with probability
//! 8 / 2^32 = 2^-29, the figure of the kernel's cookies. A cheap check comes first in the
//! listener: the cookie gate, closed unless cookies were sent within a cookie lifetime, so
//! outside a SYN flood forged ACKs cost no MAC. (The echoed timestamp is not checked for age:
//! replicas sharing a secret, and a restarted synwall, run other timestamp clocks.)
//!
//! # Validity
//!
//! A cookie is valid while its key epoch is the current or the previous one: between one and
//! two rotation periods after it was issued (64–128 s with the default 64 s period; the kernel
//! accepts cookies up to 2 minutes old).

pub mod keys;
mod mac;
mod prepared;

pub use mac::{Block, MAX_KEYS, OneAtATime, PrekeyedMac, Sha256Lanes, State, outer_block};

use std::net::SocketAddr;

use subtle::ConstantTimeEq;

use crate::seq::SeqNumber;
use keys::KeyRing;
use mac::write_message_block;
pub(crate) use prepared::MAX_PREPARED;
use prepared::{JobKind, PreparedMacs};

/// Bits of the TS value that carry [`SynOptions`].
pub const TS_OPTION_BITS: u32 = 6;
const TS_OPTION_MASK: u32 = (1 << TS_OPTION_BITS) - 1;
const NO_WINDOW_SCALE: u32 = 0xf;
const SACK_BIT: u32 = 1 << 4;
const ECN_BIT: u32 = 1 << 5;
const OPTION_BYTE_TIMESTAMPS: u8 = 0x40;

const MAC_BITS: u32 = 29;
const MAC_MASK: u32 = (1 << MAC_BITS) - 1;
const MSS_INDEX_SHIFT: u32 = MAC_BITS;
const PARITY_SHIFT: u32 = 31;

/// The four MSS values a cookie can encode. A client's MSS is rounded down to the largest
/// entry not above it (to the first entry when below all of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MssTable(pub [u16; 4]);

impl MssTable {
    /// IPv4: 536 (the RFC 1122 default, 576-byte datagrams), 1300 (VPN and tunnel paths),
    /// 1440 (PPPoE, IP-in-IP), 1460 (Ethernet's 1500-byte MTU). The kernel uses the same.
    pub const IPV4: MssTable = MssTable([536, 1300, 1440, 1460]);
    /// IPv6: the 1280, 1480, 1500 and 9000-byte MTUs minus 60 bytes of IPv6 and TCP headers.
    pub const IPV6: MssTable = MssTable([1220, 1420, 1440, 8940]);

    /// The index of the largest entry not above `mss`, or 0.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "an index into a table of 4"
    )]
    pub fn index_for(&self, mss: u16) -> u32 {
        self.0.iter().rposition(|&entry| entry <= mss).unwrap_or(0) as u32
    }

    pub fn mss(&self, index: u32) -> u16 {
        self.0[index as usize & 3]
    }

    /// Whether the entries are ascending, as lookups require.
    pub fn is_ascending(&self) -> bool {
        self.0.windows(2).all(|pair| pair[0] < pair[1])
    }
}

/// The SYN options a cookie carries in the TS value when the client sent timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SynOptions {
    /// The client's window scale shift, if it offered window scaling.
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// Whether ECN was negotiated.
    pub ecn: bool,
}

impl SynOptions {
    /// The 6 option bits.
    pub fn to_bits(self) -> u32 {
        let window_scale = self
            .window_scale
            .map_or(NO_WINDOW_SCALE, |shift| u32::from(shift.min(14)));
        let sack = if self.sack_permitted { SACK_BIT } else { 0 };
        let ecn = if self.ecn { ECN_BIT } else { 0 };
        window_scale | sack | ecn
    }

    /// Decodes the low 6 bits of a TS value. Every bit pattern decodes; only the MAC tells
    /// whether they are ours.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "masked to the 4 bits of a window-scale shift"
    )]
    pub fn from_timestamp(ts: u32) -> SynOptions {
        let window_scale = match ts & NO_WINDOW_SCALE {
            NO_WINDOW_SCALE => None,
            shift => Some(shift as u8),
        };
        SynOptions {
            window_scale,
            sack_permitted: ts & SACK_BIT != 0,
            ecn: ts & ECN_BIT != 0,
        }
    }

    /// A TS value for `clock` whose low bits carry `self`, never above `clock` (so the
    /// timestamps a handed-off socket sends later never go backwards).
    pub fn timestamp(self, clock: u32) -> u32 {
        let ts = (clock & !TS_OPTION_MASK) | self.to_bits();
        if ts > clock {
            ts.wrapping_sub(1 << TS_OPTION_BITS)
        } else {
            ts
        }
    }
}

/// What a cookie is made of, apart from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieInput {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub client_isn: SeqNumber,
    /// The SYN options carried in the TS value; `None` when the client sent no timestamps.
    pub options: Option<SynOptions>,
}

/// Makes and checks cookies, one at a time or, for the listener, a batch's MACs together.
pub struct CookieJar {
    keys: KeyRing,
    mss_v4: MssTable,
    mss_v6: MssTable,
    lanes: Box<dyn Sha256Lanes>,
    prepared: PreparedMacs,
}

impl CookieJar {
    /// # Panics
    /// If an MSS table is not strictly ascending.
    pub fn new(keys: KeyRing, mss_v4: MssTable, mss_v6: MssTable) -> CookieJar {
        assert!(mss_v4.is_ascending() && mss_v6.is_ascending());
        CookieJar {
            keys,
            mss_v4,
            mss_v6,
            lanes: Box::new(OneAtATime),
            prepared: PreparedMacs::default(),
        }
    }

    /// Computes prepared MACs with `lanes` (by default [`OneAtATime`]).
    pub(crate) fn set_lanes(&mut self, lanes: Box<dyn Sha256Lanes>) {
        self.lanes = lanes;
    }

    /// The keys, to rotate or replace; forgets the prepared MACs, which were made with them.
    pub fn keys_mut(&mut self) -> &mut KeyRing {
        self.prepared.clear();
        &mut self.keys
    }

    /// The cookie for a SYN whose client announced `client_mss`.
    #[inline]
    pub fn encode(&mut self, input: &CookieInput, client_mss: u16) -> u32 {
        let mss_index = self.table(input.local).index_for(client_mss);
        let (parity, _) = self.keys.current();
        let mac = self.mac29(JobKind::Encode, parity, input, mss_index);
        parity << PARITY_SHIFT | mss_index << MSS_INDEX_SHIFT | mac
    }

    /// Checks `cookie` against `input`; returns the MSS it encodes if valid.
    #[inline]
    pub fn check(&mut self, input: &CookieInput, cookie: u32) -> Option<u16> {
        let mss_index = (cookie >> MSS_INDEX_SHIFT) & 3;
        let expected = self.mac29(JobKind::Check, cookie >> PARITY_SHIFT, input, mss_index);
        bool::from(expected.ct_eq(&(cookie & MAC_MASK)))
            .then(|| self.table(input.local).mss(mss_index))
    }

    /// Forgets the MACs prepared for the last batch.
    pub(crate) fn clear_prepared(&mut self) {
        self.prepared.clear();
    }

    /// Asks for the MAC a later [`CookieJar::encode`] with these arguments needs; returns the
    /// job to select before it (`None`: [`MAX_PREPARED`] jobs wait already).
    pub(crate) fn prepare_encode(&mut self, input: &CookieInput, client_mss: u16) -> Option<usize> {
        let mss_index = self.table(input.local).index_for(client_mss);
        let (parity, _) = self.keys.current();
        self.prepared.push_with(JobKind::Encode, parity, |block| {
            write_cookie_message(block, input, mss_index)
        })
    }

    /// Asks for the MAC a later [`CookieJar::check`] with these arguments needs; returns the
    /// job to select before it (`None`: [`MAX_PREPARED`] jobs wait already).
    pub(crate) fn prepare_check(&mut self, input: &CookieInput, cookie: u32) -> Option<usize> {
        let mss_index = (cookie >> MSS_INDEX_SHIFT) & 3;
        self.prepared
            .push_with(JobKind::Check, cookie >> PARITY_SHIFT, |block| {
                write_cookie_message(block, input, mss_index)
            })
    }

    /// Computes the MACs asked for since [`CookieJar::clear_prepared`], all at once.
    pub(crate) fn compute_prepared(&mut self) {
        self.prepared.compute(self.lanes.as_ref(), &self.keys);
    }

    /// Selects the prepared job (if any) of the frame about to be decided: the next
    /// [`CookieJar::encode`] or [`CookieJar::check`] takes its MAC when it is the one asked for.
    pub(crate) fn select_prepared(&mut self, job: Option<usize>) {
        self.prepared.select(job);
    }

    /// The first 29 bits of the MAC of a cookie made of `input` and `mss_index` under the key of
    /// slot `parity`: the selected prepared one, or computed now.
    fn mac29(&mut self, kind: JobKind, parity: u32, input: &CookieInput, mss_index: u32) -> u32 {
        let key = self.keys.by_parity(parity);
        let tag = match self.prepared.take(kind, parity) {
            Some(tag) => {
                debug_assert_eq!(
                    tag,
                    key.tag32_of(&cookie_message(input, mss_index)),
                    "a prepared MAC is the one asked for"
                );
                tag
            }
            None => key.tag32_of(&cookie_message(input, mss_index)),
        };
        tag >> (32 - MAC_BITS)
    }

    /// The MSS the cookie of a SYN announcing `client_mss` will carry.
    pub fn encoded_mss(&self, local: SocketAddr, client_mss: u16) -> u16 {
        let table = self.table(local);
        table.mss(table.index_for(client_mss))
    }

    fn table(&self, local: SocketAddr) -> &MssTable {
        if local.is_ipv4() {
            &self.mss_v4
        } else {
            &self.mss_v6
        }
    }
}

/// The MAC message of a cookie, in its padded block.
fn cookie_message(input: &CookieInput, mss_index: u32) -> Block {
    let mut block = [0; 64];
    write_cookie_message(&mut block, input, mss_index);
    block
}

/// Writes the MAC message of a cookie into a zeroed `block`, padded.
#[inline]
#[allow(
    clippy::cast_possible_truncation,
    reason = "option bits fit in 6 bits and an MSS index in 2 (MssTable has 4 entries)"
)]
fn write_cookie_message(block: &mut Block, input: &CookieInput, mss_index: u32) {
    write_message_block(block, |block| {
        let mut len = 0;
        let mut put = |bytes: &[u8]| {
            block[len..len + bytes.len()].copy_from_slice(bytes);
            len += bytes.len();
        };
        match (input.local, input.remote) {
            (SocketAddr::V4(local), SocketAddr::V4(remote)) => {
                put(&local.ip().octets());
                put(&remote.ip().octets());
            }
            (SocketAddr::V6(local), SocketAddr::V6(remote)) => {
                put(&local.ip().octets());
                put(&remote.ip().octets());
            }
            _ => unreachable!("a connection's addresses share one family"),
        }
        put(&input.local.port().to_be_bytes());
        put(&input.remote.port().to_be_bytes());
        put(&input.client_isn.0.to_be_bytes());
        let option_byte = input.options.map_or(0, |options| {
            OPTION_BYTE_TIMESTAMPS | options.to_bits() as u8
        });
        put(&[mss_index as u8, option_byte]);
        len
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use keys::Secret;
    use std::time::Duration;

    fn jar() -> CookieJar {
        let keys = KeyRing::new(
            Secret::from_bytes([42; 32]),
            Duration::from_secs(64),
            Duration::from_secs(1_000_000),
        );
        CookieJar::new(keys, MssTable::IPV4, MssTable::IPV6)
    }

    fn input() -> CookieInput {
        CookieInput {
            local: "198.18.0.1:80".parse().unwrap(),
            remote: "198.18.7.9:40000".parse().unwrap(),
            client_isn: SeqNumber(u32::MAX),
            options: Some(SynOptions {
                window_scale: Some(7),
                sack_permitted: true,
                ecn: false,
            }),
        }
    }

    #[test]
    fn test_mss_table_rounds_down() {
        let table = MssTable::IPV4;
        assert_eq!(table.mss(table.index_for(1460)), 1460);
        assert_eq!(table.mss(table.index_for(1459)), 1440);
        assert_eq!(table.mss(table.index_for(9000)), 1460);
        assert_eq!(table.mss(table.index_for(536)), 536);
        assert_eq!(table.mss(table.index_for(100)), 536);
        assert!(MssTable::IPV6.is_ascending());
    }

    #[test]
    fn test_cookie_round_trip_near_wraparound() {
        let mut jar = jar();
        let cookie = jar.encode(&input(), 1400);
        assert_eq!(jar.check(&input(), cookie), Some(1300));
    }

    #[test]
    fn test_cookie_valid_for_one_more_epoch_only() {
        let mut jar = jar();
        let cookie = jar.encode(&input(), 1460);
        let epoch_start = Duration::from_secs(1_000_000 / 64 * 64);
        // One tick before the next epoch, at its start, and through its last second.
        jar.keys_mut().rotate(epoch_start + Duration::from_secs(63));
        assert_eq!(jar.check(&input(), cookie), Some(1460));
        jar.keys_mut().rotate(epoch_start + Duration::from_secs(64));
        assert_eq!(jar.check(&input(), cookie), Some(1460));
        jar.keys_mut()
            .rotate(epoch_start + Duration::from_secs(127));
        assert_eq!(jar.check(&input(), cookie), Some(1460));
        jar.keys_mut()
            .rotate(epoch_start + Duration::from_secs(128));
        assert_eq!(jar.check(&input(), cookie), None);
    }

    #[test]
    fn test_option_bits_round_trip() {
        for window_scale in (0..=14).map(Some).chain([None]) {
            for sack_permitted in [false, true] {
                for ecn in [false, true] {
                    let options = SynOptions {
                        window_scale,
                        sack_permitted,
                        ecn,
                    };
                    let ts = options.timestamp(0x1234_5678);
                    assert!(ts <= 0x1234_5678);
                    assert_eq!(SynOptions::from_timestamp(ts), options);
                }
            }
        }
    }

    #[test]
    fn test_timestamp_never_exceeds_clock() {
        let options = SynOptions::default(); // bits 0x0f
        assert_eq!(options.timestamp(0x40), 0x0f);
        assert_eq!(options.timestamp(0x4f), 0x4f);
        assert_eq!(options.timestamp(0x5f), 0x4f);
    }
}
