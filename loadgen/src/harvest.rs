//! Replies to spoofed packets, watched on the generator's interface: SYN-ACKs (the cookies
//! that near-miss ACKs are made from) and RSTs (how the target rejects forged segments).
//!
//! The sniffer is one thread with an AF_PACKET receive socket ([`PacketSocket`]) on the
//! generator's interface; no XDP program is involved. It keeps only replies from the target
//! to an address in the spoofed range, over IPv4 or IPv6 as the target is, counts them, and offers each SYN-ACK to a bounded
//! queue that the flood workers drain; when the queue is full the SYN-ACK is counted and
//! dropped, so memory stays bounded however fast the target answers.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use synwall::device::FrameIo;
use synwall::seq::SeqNumber;
use synwall::sys::{PacketError, PacketSocket, PacketSocketConfig};

use crate::guard::Cidr;
use crate::stats::Counters;

/// How many harvested SYN-ACKs wait for the workers at most.
pub const HARVEST_QUEUE: usize = 4096;
/// Frames taken per receive call.
const RECEIVE_BUDGET: usize = 256;
/// How long the sniffer sleeps without traffic before it checks whether to stop.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// A SYN-ACK the target sent to one of our spoofed sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynAck {
    /// The spoofed source the SYN came from.
    pub client: SocketAddr,
    /// The target's ISN: the SYN cookie, if it answered statelessly.
    pub cookie: SeqNumber,
    /// What it acknowledged: our ISN + 1, the sequence number of the final ACK.
    pub client_next: SeqNumber,
    /// The target's TSval, which a final ACK echoes (it may encode cookie bits).
    pub server_timestamp: Option<u32>,
}

/// What a received frame is to the sniffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    SynAck(SynAck),
    Rst,
}

/// Classifies `frame`: a SYN-ACK or RST from `target` to an address in `sources`, or None.
/// IPv6 extension headers before the TCP header are skipped.
pub fn classify(frame: &[u8], target: SocketAddr, sources: &Cidr) -> Option<Reply> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let (source, destination): (IpAddr, IpAddr) = match packet.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Arp(_) => return None,
    };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    if SocketAddr::new(source, tcp.source_port()) != target || !sources.contains(destination) {
        return None;
    }
    if tcp.rst() {
        return Some(Reply::Rst);
    }
    if !(tcp.syn() && tcp.ack()) {
        return None;
    }
    let server_timestamp = tcp.options_iterator().find_map(|option| match option {
        Ok(TcpOptionElement::Timestamp(value, _)) => Some(value),
        _ => None,
    });
    Some(Reply::SynAck(SynAck {
        client: SocketAddr::new(destination, tcp.destination_port()),
        cookie: SeqNumber(tcp.sequence_number()),
        client_next: SeqNumber(tcp.acknowledgment_number()),
        server_timestamp,
    }))
}

/// Opens the receive socket on `ifname` and starts the sniffer thread; it runs until `stop`.
pub fn spawn_sniffer(
    ifname: &str,
    target: SocketAddr,
    sources: Cidr,
    harvested: Sender<SynAck>,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<thread::JoinHandle<io::Result<()>>, PacketError> {
    let mut socket = PacketSocket::open(
        ifname,
        PacketSocketConfig {
            batch: 64,
            receive: true,
            qdisc_bypass: false,
        },
    )?;
    Ok(thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if !socket.wait(POLL_INTERVAL)? {
                continue;
            }
            socket.receive(RECEIVE_BUDGET, |frame, _| {
                match classify(frame, target, &sources) {
                    Some(Reply::SynAck(syn_ack)) => {
                        counters.syn_acks_seen.fetch_add(1, Ordering::Relaxed);
                        if let Err(TrySendError::Full(_)) = harvested.try_send(syn_ack) {
                            counters.harvest_dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(Reply::Rst) => {
                        counters.rsts_seen.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
                None
            })?;
        }
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use synwall::wire::{self, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

    /// Per family: the target, the spoofed sources, a client among them, and the generator's
    /// own address (not spoofed).
    const LAB: [(&str, &str, &str, &str); 2] = [
        (
            "198.18.0.1:80",
            crate::lab::SPOOFED_SOURCES,
            "198.18.130.9:40000",
            "198.18.0.2:40000",
        ),
        (
            "[2001:2::1]:80",
            crate::lab::SPOOFED_SOURCES_V6,
            "[2001:2:0:8130::9]:40000",
            "[2001:2::2]:40000",
        ),
    ];

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn reply(from: SocketAddr, to: SocketAddr, flags: TcpFlags, ts: bool) -> Vec<u8> {
        let repr = TcpRepr {
            link: LinkAddrs::default(),
            src: from,
            dst: to,
            hop_limit: 64,
            seq: SeqNumber(0xdead_beef),
            ack: SeqNumber(1001),
            flags,
            window: 65535,
            options: TcpOptions {
                mss: Some(1460),
                timestamps: ts.then_some(Timestamps { value: 77, echo: 5 }),
                ..TcpOptions::default()
            },
            payload: &[],
        };
        let mut frame = vec![0; wire::emitted_len(&repr)];
        wire::emit(&repr, &mut frame).unwrap();
        frame
    }

    #[test]
    fn test_classify_syn_ack_to_a_spoofed_source() {
        for (target, sources, client, _) in LAB {
            let (target, client) = (addr(target), addr(client));
            let sources: Cidr = sources.parse().unwrap();
            for ts in [false, true] {
                let frame = reply(target, client, TcpFlags::SYN | TcpFlags::ACK, ts);
                assert_eq!(
                    classify(&frame, target, &sources),
                    Some(Reply::SynAck(SynAck {
                        client,
                        cookie: SeqNumber(0xdead_beef),
                        client_next: SeqNumber(1001),
                        server_timestamp: ts.then_some(77),
                    }))
                );
            }
            let rst = reply(target, client, TcpFlags::RST | TcpFlags::ACK, false);
            assert_eq!(classify(&rst, target, &sources), Some(Reply::Rst));
        }
    }

    #[test]
    fn test_classify_ignores_other_traffic() {
        for (target, sources, client, own) in LAB {
            let (target, client, own) = (addr(target), addr(client), addr(own));
            let sources: Cidr = sources.parse().unwrap();
            let other_port = SocketAddr::new(target.ip(), 81);
            let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
            for frame in [
                reply(target, own, syn_ack, false),
                reply(other_port, client, syn_ack, false),
                reply(client, target, syn_ack, false),
                reply(target, client, TcpFlags::ACK, false),
                vec![0; 20],
            ] {
                assert_eq!(classify(&frame, target, &sources), None, "{target}");
            }
        }
    }

    #[test]
    fn test_classify_keeps_to_the_targets_family() {
        let [
            (v4_target, v4_sources, v4_client, _),
            (v6_target, v6_sources, v6_client, _),
        ] = LAB;
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        // An IPv6 SYN-ACK is no reply to an IPv4 flood, and the other way round.
        let v6_frame = reply(addr(v6_target), addr(v6_client), syn_ack, false);
        let v4_sources: Cidr = v4_sources.parse().unwrap();
        assert_eq!(classify(&v6_frame, addr(v4_target), &v4_sources), None);
        let v4_frame = reply(addr(v4_target), addr(v4_client), syn_ack, false);
        let v6_sources: Cidr = v6_sources.parse().unwrap();
        assert_eq!(classify(&v4_frame, addr(v6_target), &v6_sources), None);
    }

    #[test]
    fn test_classify_reads_past_ipv6_extension_headers() {
        let (target, sources, client, _) = LAB[1];
        let (target, client) = (addr(target), addr(client));
        let mut frame = reply(target, client, TcpFlags::SYN | TcpFlags::ACK, true);
        // Insert an empty hop-by-hop options header (8 bytes: next header TCP, length 0, PadN).
        let ipv6 = 14;
        let hop_by_hop = [6, 0, 1, 4, 0, 0, 0, 0];
        frame.splice(ipv6 + 40..ipv6 + 40, hop_by_hop);
        frame[ipv6 + 6] = 0; // next header: hop-by-hop
        let payload_len = u16::from_be_bytes([frame[ipv6 + 4], frame[ipv6 + 5]]) + 8;
        frame[ipv6 + 4..ipv6 + 6].copy_from_slice(&payload_len.to_be_bytes());
        let sources: Cidr = sources.parse().unwrap();
        let Some(Reply::SynAck(syn_ack)) = classify(&frame, target, &sources) else {
            panic!("not classified as a SYN-ACK");
        };
        assert_eq!(syn_ack.client, client);
        assert_eq!(syn_ack.server_timestamp, Some(77));
    }
}
