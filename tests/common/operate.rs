//! Helpers of the operating tests (`operate*.rs`): their labs' namespace prefix, scrapes of
//! synwall's metrics endpoint, clients through synwall in the client namespace, handshakes
//! whose final ACK synwall does not see, and secret files. Included by each of them
//! (`#[path = "common/operate.rs"] mod operate;`), next to `mod common;` and `mod lab;`.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use loadgen::lab::Topology;
use synwall::cookie::keys::Secret;
use synwall::metrics::Scrape;

use crate::lab::{in_ns, served_v4};

/// Namespace names of the operating tests' labs start with this.
pub const LAB: &str = "swo";

/// The text synwall's metrics endpoint serves (loopback of the server namespace).
pub fn scrape_text(topology: &Topology) -> String {
    in_ns(topology, &topology.server_ns, || {
        synwall::metrics::fetch_text(synwall::metrics::DEFAULT_ENDPOINT.parse().unwrap())
    })
    .expect("the metrics endpoint answers")
}

/// Scrapes synwall's metrics endpoint.
pub fn scrape(topology: &Topology) -> Scrape {
    Scrape::parse(&scrape_text(topology))
}

/// A client connection in the client namespace that outlives one call.
pub fn connect(topology: &Topology) -> TcpStream {
    in_ns(topology, &topology.client_ns, || {
        TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))
    })
    .expect("connected through synwall")
}

/// Writes `message` and reads the echo back.
pub fn echo(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(message)?;
    let mut reply = vec![0; message.len()];
    stream.read_exact(&mut reply)?;
    Ok(reply)
}

/// Drops the client's pure ACKs to port 80: its handshake completes on its side only, and its
/// next segment carries the cookie.
pub fn hold_final_acks(topology: &Topology, hold: bool) {
    let args: &[&str] = if hold {
        &[
            "nft",
            "add table inet synwall_hold; add chain inet synwall_hold out { type filter hook output priority 0; }; add rule inet synwall_hold out tcp dport 80 tcp flags == ack drop",
        ]
    } else {
        &["nft", "delete table inet synwall_hold"]
    };
    topology.run_in(&topology.client_ns, args).expect("nft");
}

/// A new random secret in file `name` of `dir`: its path.
pub fn write_secret(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    Secret::random().unwrap().store(&path).unwrap();
    path.to_str().unwrap().to_owned()
}
