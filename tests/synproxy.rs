//! The lab's XDP SYN proxy, the peer synwall is measured against, set up as `synwall-lab
//! --target xdp-synproxy` sets it up: a kernel client gets in through it (SYN-ACK with the
//! kernel's cookie from XDP, the ACK checked there and by nftables synproxy, the connection made
//! to the kernel's listener), and the program counts both; an ACK with no valid cookie is
//! dropped. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, privileged_lab, require_tool};
use lab::*;
use loadgen::lab::XdpSynProxyPeer;
use synwall::seq::SeqNumber;
use synwall::sys::XdpAction;
use synwall::wire::TcpFlags;

#[test]
fn test_a_client_gets_in_through_the_xdp_syn_proxy_and_a_forged_ack_does_not() {
    if !require_tool("nft") {
        return;
    }
    let Some(topology) = privileged_lab("swp") else {
        return;
    };
    let listener = service(&topology, served_v4());
    let proxy = std::sync::Arc::new(XdpSynProxyPeer::start(&topology, served_v4()).unwrap());
    let client = topology.spawn_in(&topology.client_ns, || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply)?;
        Ok(reply.to_vec())
    });
    let (mut accepted, peer) = listener.accept().expect("the listener got the connection");
    assert_eq!(peer.ip(), std::net::IpAddr::from(loadgen::lab::CLIENT_V4));
    let mut request = [0u8; 4];
    accepted.read_exact(&mut request).unwrap();
    accepted.write_all(&request).unwrap();
    assert_eq!(client.join().unwrap().unwrap().unwrap(), b"ping");
    // The SYN was answered from XDP and the ACK passed (a segment racing the connection's
    // making may be checked as well).
    let counters = proxy.counters().unwrap();
    assert!(counters.syn_answered >= 1, "{counters:?}");
    assert!(counters.ack_passed >= 1, "{counters:?}");
    assert_eq!(counters.ack_invalid, 0, "{counters:?}");

    // An ACK that no cookie of the kernel's matches stops in XDP; a SYN is turned around.
    let forger = Client::new("198.18.200.1:40000", 1, common::linux_options(1));
    let forged = common::frame(&synwall::wire::TcpRepr {
        ..forger.segment(TcpFlags::ACK, SeqNumber(2), SeqNumber(12_345))
    });
    let syn = common::frame(&forger.syn());
    let (forged_action, syn_action) = {
        let proxy = std::sync::Arc::clone(&proxy);
        in_ns(&topology, &topology.server_ns, move || {
            (
                proxy.proxy().time_per_frame(&forged, 1).unwrap().0,
                proxy.proxy().time_per_frame(&syn, 1).unwrap().0,
            )
        })
    };
    assert_eq!(forged_action, XdpAction::Drop);
    assert_eq!(syn_action, XdpAction::Tx);
    // Test runs count as well.
    let after = proxy.counters().unwrap();
    assert_eq!(after.ack_invalid, counters.ack_invalid + 1, "{after:?}");
    assert_eq!(after.syn_answered, counters.syn_answered + 1, "{after:?}");
}
