//! synwall protecting an async listener: the program accepts from its own
//! `tokio::net::TcpListener`, exactly as it would without synwall; synwall runs beside it in
//! native mode (its threads are its own, outside the runtime) and hands each completed
//! handshake to that listener, with the client's own address.
//!
//! ```sh
//! cargo build --example native_tokio
//! sudo target/debug/examples/native_tokio eth0 203.0.113.10:8080
//! ```
//! (Root, or the capabilities of deploy/README.md; Linux 6.9 or later for native handoff.)

use std::net::SocketAddr;

use anyhow::Context;
use synwall::handoff::HandoffMode;
use synwall::server::{Server, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(interface), Some(address)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: native_tokio INTERFACE ADDRESS:PORT");
    };
    let address: SocketAddr = address.parse().context("ADDRESS:PORT")?;

    // The program's own listener, as without synwall.
    let listener = TcpListener::bind(address)
        .await
        .context("binding the listener")?;

    // synwall beside it; dropping `_wall` detaches it again.
    let mut config = ServerConfig::new(&interface, &[address]);
    config.handoff = HandoffMode::Native;
    let _wall = Server::bind(config).context("starting synwall")?;

    loop {
        let (mut stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = stream
                .write_all(format!("hello, {peer}\n").as_bytes())
                .await;
        });
    }
}
