//! Privileged helpers: synwall serving inside a lab's server namespace, clients in its client
//! namespace. Included by the test crates that use them (`#[path = "common/lab.rs"] mod lab;`).
//! Network safety: only the lab's namespaces, 198.18.0.0/15 and 2001:2::/48; everything is
//! deleted when the [`Topology`] drops.
//!
//! Here: the served addresses, running code in a namespace and waiting for a condition. In
//! its modules, all re-exported here: synwall as a library ([`library`]), the `synwall`
//! binary as a child process ([`process`]), what stands around it ([`upstream`]), and
//! handshakes crafted by the test ([`crafted`]).

#![allow(dead_code)] // Each test crate uses a different subset.

#[path = "lab/crafted.rs"]
pub mod crafted;
#[path = "lab/library.rs"]
pub mod library;
#[path = "lab/process.rs"]
pub mod process;
#[path = "lab/upstream.rs"]
pub mod upstream;

#[allow(unused_imports)] // Each test crate uses a different subset.
pub use self::{crafted::*, library::*, process::*, upstream::*};
pub use crate::common::wait_until;

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::lab::{SERVER_V4, SERVER_V6, Topology};
use sha2::{Digest, Sha256};

pub const PORT: u16 = 80;

pub fn served_v4() -> SocketAddr {
    (SERVER_V4, PORT).into()
}

pub fn served_v6() -> SocketAddr {
    (SERVER_V6, PORT).into()
}

/// `setpriv` arguments: run as nobody with exactly `caps` (names from
/// [`crate::common::CAPABILITIES`]; none at all when empty).
pub fn as_nobody_with(caps: &[&str]) -> Vec<String> {
    let caps = std::iter::once("-all".to_owned())
        .chain(caps.iter().map(|cap| format!("+{}", cap.to_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        "setpriv".to_owned(),
        "--reuid=65534".to_owned(),
        "--regid=65534".to_owned(),
        "--clear-groups".to_owned(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set={caps}"),
    ]
}

/// Runs `f` on a thread in namespace `ns` and returns its result.
pub fn in_ns<T: Send + 'static>(
    topology: &Topology,
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    topology
        .spawn_in(ns, f)
        .join()
        .expect("the thread in the namespace panicked")
        .expect("entering the namespace")
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// From `client` (address and port, bound with SO_REUSEADDR so it can reuse a 4-tuple the
/// server holds in TIME-WAIT), sends "ping" to `served` and returns all it reads until the
/// server closes. Run it in the client namespace.
pub fn ping_from(client: SocketAddr, served: SocketAddr) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};

    let domain = socket2::Domain::for_address(client);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&client.into())?;
    socket.connect_timeout(&served.into(), Duration::from_secs(3))?;
    let mut stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"ping")?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    // The client closes a moment after the server, as clients do. A segment that the XDP
    // program sent to synwall just before a repair handoff ended can reach the server's socket
    // after later ones that went to it directly; at a TIME-WAIT socket whose peer has already
    // closed, such a late ACK is answered, and the peer's RST ends the TIME-WAIT that the
    // tests reconnecting over it need (see `listener::handoffs`).
    std::thread::sleep(Duration::from_millis(50));
    Ok(reply)
}

/// The server's half of [`ping_from`]: reads the 4-byte request from `stream`, echoes it and
/// closes first, so that the server's kernel holds the 4-tuple in TIME-WAIT.
pub fn answer_ping(mut stream: std::net::TcpStream) {
    use std::io::{Read, Write};

    let mut request = [0u8; 4];
    stream.read_exact(&mut request).unwrap();
    stream.write_all(&request).unwrap();
}

/// Waits until the server namespace's kernel holds a connection from client port `port` in
/// TIME-WAIT (any family): after the server closed first, the client's FIN may still be on
/// its way. Fails after 5 s.
pub fn wait_time_wait(topology: &Topology, port: u16) {
    let filter = format!("( dport = :{port} )");
    let what = format!("a server-side TIME-WAIT socket for client port {port}");
    wait_until(&what, Duration::from_secs(5), || {
        topology
            .run_in(
                &topology.server_ns,
                &["ss", "-tan", "state", "time-wait", &filter],
            )
            .unwrap()
            .contains(&format!(":{port}"))
    });
}
