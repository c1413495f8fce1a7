//! IPv6 over the lab's wire (2001:2::/48): extension headers in front of a handshake, ICMPv6
//! and neighbour discovery untouched while synwall is attached, reconnects over a TIME-WAIT
//! 4-tuple in both handoff modes. Handshakes through the SYN queue and cookies, handoffs,
//! negotiated options and early data over IPv6 are in tests/native.rs and tests/repair.rs.
//! Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use common::{Client, linux_options, privileged_lab};
use lab::*;
use loadgen::lab::{CLIENT_V6, SERVER_V6, Topology};
use synwall::counters::Counter;
use synwall::handoff::HandoffMode;
use synwall::sys::SynAnswerer;

const LAB: &str = "sw6";
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const DEST_OPTS: u8 = 60;

/// `frame` (Ethernet, IPv6, TCP) with the extension headers `kinds` (each 8 bytes, padding
/// only; a routing header with no segments left) between the IPv6 header and TCP. The TCP
/// checksum does not cover them.
fn with_extension_headers(frame: &[u8], kinds: &[u8]) -> Vec<u8> {
    const IPV6_AT: usize = 14;
    const TCP_AT: usize = IPV6_AT + 40;
    let mut headers = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(6);
        let mut header = [0u8; 8];
        header[0] = next;
        if kind == ROUTING {
            header[2] = 4; // routing type 4 (segment routing), 0 segments left
        } else {
            header[2] = 1; // a PadN option of four bytes fills the header
            header[3] = 4;
        }
        headers.extend_from_slice(&header);
    }
    let mut out = frame[..TCP_AT].to_vec();
    out[IPV6_AT + 6] = kinds[0];
    let payload = u16::from_be_bytes([out[IPV6_AT + 4], out[IPV6_AT + 5]]) + headers.len() as u16;
    out[IPV6_AT + 4..IPV6_AT + 6].copy_from_slice(&payload.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(&frame[TCP_AT..]);
    out
}

#[test]
fn test_ipv6_extension_headers_in_front_of_a_syn_are_walked() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _service = service(&topology, served_v6());
    // synwall answers every SYN: the frames are for its parser, not the service's listener.
    let wall = Wall::start(&topology, HandoffMode::Native, |config| {
        config.answer_syns = SynAnswerer::Synwall;
    });
    let (ifname, link) = (topology.client_if.clone(), CraftedClient::link(&topology));
    let answers = in_ns(&topology, &topology.client_ns, move || {
        let mut client = CraftedClient::open(&ifname, link);
        let chains: [&[u8]; 3] = [
            &[HOP_BY_HOP, DEST_OPTS, ROUTING],
            &[HOP_BY_HOP, DEST_OPTS, ROUTING, DEST_OPTS],
            // Longer than the steering program follows: it takes the whole frame to synwall,
            // which walks the chain to the end.
            &[HOP_BY_HOP, DEST_OPTS, ROUTING, DEST_OPTS, DEST_OPTS],
        ];
        chains
            .iter()
            .enumerate()
            .map(|(i, chain)| {
                let syn = Client {
                    server: served_v6(),
                    ..Client::new(
                        &format!("[2001:2:0:8000::1]:{}", 41000 + i),
                        7,
                        linux_options(1),
                    )
                };
                let frame = client.syn_frame(&syn, served_v6());
                client.send_frame(&with_extension_headers(&frame, chain));
                client.answer(&syn, Duration::from_secs(2)).is_some()
            })
            .collect::<Vec<_>>()
    });
    assert_eq!(answers, [true, true, true]);
    // Every one reached synwall, none the service's kernel listener.
    let stats = wall.stats();
    assert_eq!(stats.listener.get(Counter::SynReceived), 3);
    assert_eq!(stats.listener.get(Counter::SynAcksSent), 3);
}

#[test]
fn test_icmpv6_and_neighbour_discovery_pass_while_attached() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    let _service = service(&topology, served_v6());
    let _wall = Wall::start(&topology, HandoffMode::Native, |_| {});
    for (ns, peer) in [
        (&topology.client_ns, SERVER_V6.to_string()),
        (&topology.server_ns, CLIENT_V6.to_string()),
    ] {
        // Forget the neighbour first, so the ping needs a solicitation and an advertisement.
        topology
            .run_in(ns, &["ip", "-6", "neigh", "flush", "all"])
            .unwrap();
        topology
            .run_in(ns, &["ping", "-6", "-c", "2", "-W", "2", &peer])
            .expect("ICMPv6 echo and neighbour discovery work while synwall is attached");
    }
}

/// A client's "ping" from `port` to the served IPv6 address, in the client namespace.
fn exchange(
    topology: &Topology,
    port: u16,
) -> std::thread::JoinHandle<std::io::Result<std::io::Result<Vec<u8>>>> {
    topology.spawn_in(&topology.client_ns, move || {
        lab::ping_from((CLIENT_V6, port).into(), served_v6())
    })
}

#[test]
fn test_ipv6_reconnect_over_a_time_wait_tuple_in_both_modes() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    for (mode, port) in [(HandoffMode::Native, 45679), (HandoffMode::Repair, 45680)] {
        let listener = (mode == HandoffMode::Native).then(|| service(&topology, served_v6()));
        let wall = Wall::start(&topology, mode, |_| {});
        for round in 0..2 {
            let client = exchange(&topology, port);
            lab::answer_ping(match &listener {
                Some(listener) => listener.accept().expect("the service's connection").0,
                None => wall.accept().expect("synwall's connection").stream,
            });
            assert_eq!(
                client.join().unwrap().unwrap().unwrap(),
                b"ping",
                "{mode:?}, round {round}"
            );
            lab::wait_time_wait(&topology, port);
        }
        assert_eq!(wall.stats().handoffs_failed, 0, "{mode:?}");
    }
}
