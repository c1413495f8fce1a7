//! The `listener_frames` target: the script reader and the helpers its steps use (see the crate
//! documentation for the script and the invariants).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use synwall_proto::cookie::keys::Secret;
use synwall_proto::listener::SyncookiesMode;
use synwall_proto::seq::SeqNumber;
use synwall_proto::wire::{self, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

use super::session::{Delivery, Session};
use super::wire_parse::be16;
use super::*;

/// The most steps of one `listener_frames` input.
pub(super) const MAX_STEPS: usize = 256;

pub(super) const SYN_BACKLOG: usize = 8;
pub(super) const SYNACK_RETRIES: u8 = 2;
pub(super) const PENDING_HANDOFFS: usize = 4;
pub(super) const HELD_BYTES: usize = 1500;
pub(super) const HANDOFF_TIMEOUT: Duration = Duration::from_secs(2);
pub(super) const WINDOW_SCALE: u8 = 7;
pub(super) const KEY_PERIOD: Duration = Duration::from_secs(64);
/// Wall-clock time at the start: the first second of a key epoch.
pub(super) const START_UNIX: Duration = Duration::from_secs(64 * 26_562_500);
/// As the drivers' transmit frames: room for any reply.
pub(super) const TX_LEN: usize = 2048;
/// SYN-ACKs kept for [`Session::answer`] to pick from.
pub(super) const RECENT_SYN_ACKS: usize = 16;
/// The payload of built segments: its first `len` bytes.
pub(super) const PAYLOAD: [u8; 255] = [0x5a; 255];

/// The `listener_frames` target: see the module documentation. Each script runs twice, its
/// frames handed over one at a time, then in batches.
pub fn listener_frames(data: &[u8]) {
    for delivery in [Delivery::FrameByFrame, Delivery::Batches] {
        run(data, delivery);
    }
}

fn run(data: &[u8], delivery: Delivery) {
    let mut input = Input(data);
    let Some(setup) = input.u8() else {
        return;
    };
    let mut session = Session::new(setup, delivery);
    for step in 0..MAX_STEPS {
        session.step = step;
        if session.run_step(&mut input).is_none() {
            break;
        }
        session.check();
    }
    session.deliver_batch();
    session.check();
}

/// The fuzzer's bytes, read front to back.
pub(super) struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub(super) fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take().map(u8::from_be_bytes)
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    pub(super) fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }
}

pub(super) fn syncookies_mode(bits: u8) -> SyncookiesMode {
    match bits & 0x03 {
        0 => SyncookiesMode::Never,
        2 => SyncookiesMode::Always,
        _ => SyncookiesMode::WhenFull,
    }
}

pub(super) fn secret(byte: u8) -> Secret {
    Secret::from_bytes([byte; 32])
}

/// The client and server endpoints a client byte picks (see the module documentation).
pub(super) fn client(byte: u8) -> (SocketAddr, SocketAddr) {
    let host = byte & 0x03;
    let port = 40000 + u16::from((byte >> 2) & 0x03);
    let (ip, server) = if byte & 0x10 == 0 {
        (IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1 + host)), SERVER_V4)
    } else {
        let ip = Ipv6Addr::new(0x2001, 0x2, 0, 1, 0, 0, 0, 1 + u16::from(host));
        (IpAddr::V6(ip), SERVER_V6)
    };
    let server_port = if byte & 0x20 == 0 { 80 } else { 81 };
    (
        SocketAddr::new(ip, port),
        SocketAddr::new(server.ip(), server_port),
    )
}

/// The options a shape byte asks for (see [`Session::shape`]), their values read from `input`.
pub(super) fn options(input: &mut Input<'_>, shape: u8) -> Option<TcpOptions> {
    Some(TcpOptions {
        mss: if shape & 0x01 != 0 {
            Some(input.u16()?)
        } else {
            None
        },
        window_scale: if shape & 0x02 != 0 {
            Some(input.u8()?)
        } else {
            None
        },
        sack_permitted: shape & 0x04 != 0,
        timestamps: if shape & 0x08 != 0 {
            Some(Timestamps {
                value: input.u32()?,
                echo: input.u32()?,
            })
        } else {
            None
        },
    })
}

/// A segment from `src` to `dst`: an ACK without options or payload, until changed.
pub(super) fn segment(link: LinkAddrs, src: SocketAddr, dst: SocketAddr) -> TcpRepr<'static> {
    TcpRepr {
        link,
        src,
        dst,
        hop_limit: 64,
        seq: SeqNumber(0),
        ack: SeqNumber(0),
        flags: TcpFlags::ACK,
        window: 1024,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// The index of the `which`-th of `len` items counting back from the last, modulo `len`.
pub(super) fn pick(len: usize, which: u8) -> Option<usize> {
    (len > 0).then(|| len - 1 - usize::from(which) % len)
}

/// `ip` with one bit, `bit` modulo its width, flipped.
pub(super) fn flip_bit(ip: IpAddr, bit: u32) -> IpAddr {
    match ip {
        IpAddr::V4(ip) => IpAddr::V4(Ipv4Addr::from_bits(ip.to_bits() ^ (1 << (bit % 32)))),
        IpAddr::V6(ip) => IpAddr::V6(Ipv6Addr::from_bits(ip.to_bits() ^ (1 << (bit % 128)))),
    }
}

/// The destination address and port of a frame the listener emitted (no IP options or
/// extension headers).
pub(super) fn destination(frame: &[u8]) -> Option<SocketAddr> {
    let packet = frame.get(wire::ip_packet_range(frame)?)?;
    let (ip, tcp) = match packet.first()? >> 4 {
        4 => {
            let octets: [u8; 4] = *packet.get(16..)?.first_chunk()?;
            (IpAddr::from(octets), 20)
        }
        6 => {
            let octets: [u8; 16] = *packet.get(24..)?.first_chunk()?;
            (IpAddr::from(octets), 40)
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, be16(packet, tcp + 2)?))
}
