//! The lab's XDP SYN proxy, the peer synwall is measured against: a kernel client gets in
//! through it (SYN-ACK with the kernel's cookie from XDP, the ACK checked there and by
//! nftables synproxy, the connection made to the kernel's listener); an ACK with no valid
//! cookie is dropped. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{Client, privileged_lab, require_tool};
use lab::*;
use synwall::lab::Topology;
use synwall::seq::SeqNumber;
use synwall::sys::XdpAction;
use synwall::sys::synproxy::SynProxy;
use synwall::wire::TcpFlags;

/// nftables synproxy in front of port 80 of the server namespace, as behind the kernel's own
/// XDP SYN proxy.
fn synproxy_rules(topology: &Topology) {
    let rules = "table inet swlab_synproxy {
        chain prerouting {
            type filter hook prerouting priority raw; policy accept;
            tcp dport 80 tcp flags syn notrack
        }
        chain input {
            type filter hook input priority filter; policy accept;
            tcp dport 80 ct state invalid,untracked synproxy mss 1460 wscale 7 timestamp sack-perm
            tcp dport 80 ct state invalid drop
        }
    }";
    let file = std::env::temp_dir().join(format!("{}-synproxy.nft", topology.server_ns));
    std::fs::write(&file, rules).unwrap();
    let ns = &topology.server_ns;
    topology
        .run_in(ns, &["nft", "-f", file.to_str().unwrap()])
        .expect("nft");
    let _ = std::fs::remove_file(file);
    for setting in [
        "net.netfilter.nf_conntrack_tcp_loose=0",
        "net.ipv4.tcp_syncookies=2",
    ] {
        topology.run_in(ns, &["sysctl", "-qw", setting]).unwrap();
    }
}

#[test]
fn test_a_client_gets_in_through_the_xdp_syn_proxy_and_a_forged_ack_does_not() {
    if !require_tool("nft") {
        return;
    }
    let Some(topology) = privileged_lab("swp") else {
        return;
    };
    synproxy_rules(&topology);
    let listener = service(&topology, served_v4());
    let proxy = std::sync::Arc::new(SynProxy::load(served_v4()).unwrap());
    let server_link = {
        let (proxy, ifname) = (std::sync::Arc::clone(&proxy), topology.server_if.clone());
        in_ns(&topology, &topology.server_ns, move || {
            proxy.attach(&ifname).unwrap()
        })
    };
    let client_link = {
        let (proxy, ifname) = (std::sync::Arc::clone(&proxy), topology.client_if.clone());
        in_ns(&topology, &topology.client_ns, move || {
            proxy.attach_pass(&ifname).unwrap()
        })
    };
    let client = topology.spawn_in(&topology.client_ns, || -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(b"ping")?;
        let mut reply = [0u8; 4];
        stream.read_exact(&mut reply)?;
        Ok(reply.to_vec())
    });
    let (mut accepted, peer) = listener.accept().expect("the listener got the connection");
    assert_eq!(peer.ip(), std::net::IpAddr::from(synwall::lab::CLIENT_V4));
    let mut request = [0u8; 4];
    accepted.read_exact(&mut request).unwrap();
    accepted.write_all(&request).unwrap();
    assert_eq!(client.join().unwrap().unwrap().unwrap(), b"ping");

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
                proxy.time_per_frame(&forged, 1).unwrap().0,
                proxy.time_per_frame(&syn, 1).unwrap().0,
            )
        })
    };
    assert_eq!(forged_action, XdpAction::Drop);
    assert_eq!(syn_action, XdpAction::Tx);
    drop((server_link, client_link));
}
