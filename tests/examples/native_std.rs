//! synwall protecting a listener a Rust program already has: the program binds and accepts
//! from its own `std::net::TcpListener`, exactly as it would without synwall; synwall runs beside
//! it in native mode, answers the handshakes on the NIC, and hands each completed one to that
//! listener, with the client's own address. If synwall stops, the listener keeps serving.
//!
//! ```sh
//! cargo build --example native_std
//! sudo target/debug/examples/native_std eth0 203.0.113.10:8080
//! ```
//! (Root, or the capabilities of deploy/README.md; Linux 6.9 or later for native handoff.)

use std::io::Write;
use std::net::{SocketAddr, TcpListener};

use anyhow::Context;
use synwall::handoff::HandoffMode;
use synwall::server::{Server, ServerConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(address)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: native_std INTERFACE ADDRESS:PORT");
    };
    let address: SocketAddr = address.parse().context("ADDRESS:PORT")?;

    // The program's own listener, as without synwall.
    let listener = TcpListener::bind(address).context("binding the listener")?;

    // synwall beside it; dropping `_wall` detaches it again.
    let mut config = ServerConfig::new(&interface, &[address]);
    config.handoff = HandoffMode::Native;
    let _wall = Server::bind(config).context("starting synwall")?;

    for stream in listener.incoming() {
        let mut stream = stream?;
        let peer = stream.peer_addr()?;
        writeln!(stream, "hello, {peer}")?;
    }
    Ok(())
}
