//! synwall as the listener itself (repair mode): there is no listening socket of the program's
//! own; `Server::accept` gives every connection that completed its handshake as an ordinary
//! `TcpStream`: without a flood one the kernel completed on synwall's own listening socket,
//! during a flood one synwall built with TCP_REPAIR. For kernels without native handoff, for
//! connections the program relays elsewhere, or to see who completed each handshake.
//!
//! ```sh
//! cargo build --example repair_accept
//! sudo target/debug/examples/repair_accept eth0 203.0.113.10:8080
//! ```
//! (Root, or the capabilities of deploy/README.md.)

use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use synwall::handoff::HandoffMode;
use synwall::server::Server;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(address)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: repair_accept INTERFACE ADDRESS:PORT");
    };
    let address: SocketAddr = address.parse().context("ADDRESS:PORT")?;

    let server = Server::builder(&interface, &[address])
        .handoff(HandoffMode::Repair)
        .bind()
        .context("starting synwall")?;

    // The first error (the server stopped, and why) ends the loop and the program.
    for connection in server.incoming() {
        let connection = connection.context("synwall stopped")?;
        let mut stream = connection.stream;
        writeln!(
            stream,
            "hello, {}: your handshake was completed by {:?}, options {:?}",
            connection.peer, connection.completed_by, connection.options
        )?;
    }
    Ok(())
}
