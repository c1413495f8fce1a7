//! Replies to spoofed packets, watched on the generator's interface: SYN-ACKs (the cookies
//! that near-miss ACKs are made from) and RSTs (how the target rejects forged segments).
//!
//! The sniffer is one thread with an AF_PACKET receive socket ([`PacketSocket`]) on the
//! generator's interface; no XDP program is involved. It keeps only replies from the target
//! to an address in the spoofed range, counts them, and offers each SYN-ACK to a bounded
//! queue that the flood workers drain; when the queue is full the SYN-ACK is counted and
//! dropped, so memory stays bounded however fast the target answers.

use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use etherparse::{NetSlice, SlicedPacket, TcpOptionElement, TransportSlice};
use synwall::device::FrameIo;
use synwall::seq::SeqNumber;
use synwall::sys::{PacketError, PacketSocket, PacketSocketConfig};

use crate::guard::Ipv4Cidr;
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
    pub client: SocketAddrV4,
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
pub fn classify(frame: &[u8], target: SocketAddrV4, sources: &Ipv4Cidr) -> Option<Reply> {
    let packet = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(NetSlice::Ipv4(ip)) = packet.net else {
        return None;
    };
    let Some(TransportSlice::Tcp(tcp)) = packet.transport else {
        return None;
    };
    let header = ip.header();
    if header.source_addr() != *target.ip()
        || tcp.source_port() != target.port()
        || !sources.contains(header.destination_addr())
    {
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
        client: SocketAddrV4::new(header.destination_addr(), tcp.destination_port()),
        cookie: SeqNumber(tcp.sequence_number()),
        client_next: SeqNumber(tcp.acknowledgment_number()),
        server_timestamp,
    }))
}

/// Opens the receive socket on `ifname` and starts the sniffer thread; it runs until `stop`.
pub fn spawn_sniffer(
    ifname: &str,
    target: SocketAddrV4,
    sources: Ipv4Cidr,
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
    use std::net::{Ipv4Addr, SocketAddr};
    use synwall::wire::{self, LinkAddrs, TcpFlags, TcpOptions, TcpRepr, Timestamps};

    const TARGET: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80);

    fn sources() -> Ipv4Cidr {
        "198.18.128.0/17".parse().unwrap()
    }

    fn reply(from: SocketAddrV4, to: SocketAddrV4, flags: TcpFlags, ts: bool) -> Vec<u8> {
        let repr = TcpRepr {
            link: LinkAddrs::default(),
            src: SocketAddr::V4(from),
            dst: SocketAddr::V4(to),
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
        let client = SocketAddrV4::new(Ipv4Addr::new(198, 18, 130, 9), 40000);
        for ts in [false, true] {
            let frame = reply(TARGET, client, TcpFlags::SYN | TcpFlags::ACK, ts);
            assert_eq!(
                classify(&frame, TARGET, &sources()),
                Some(Reply::SynAck(SynAck {
                    client,
                    cookie: SeqNumber(0xdead_beef),
                    client_next: SeqNumber(1001),
                    server_timestamp: ts.then_some(77),
                }))
            );
        }
        let rst = reply(TARGET, client, TcpFlags::RST | TcpFlags::ACK, false);
        assert_eq!(classify(&rst, TARGET, &sources()), Some(Reply::Rst));
    }

    #[test]
    fn test_classify_ignores_other_traffic() {
        let client = SocketAddrV4::new(Ipv4Addr::new(198, 18, 130, 9), 40000);
        let legit = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 40000);
        let other_port = SocketAddrV4::new(*TARGET.ip(), 81);
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        for frame in [
            reply(TARGET, legit, syn_ack, false),
            reply(other_port, client, syn_ack, false),
            reply(client, TARGET, syn_ack, false),
            reply(TARGET, client, TcpFlags::ACK, false),
            vec![0; 20],
        ] {
            assert_eq!(classify(&frame, TARGET, &sources()), None);
        }
    }
}
