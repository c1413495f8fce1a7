//! Native handoff in the lab: the service listens on the served port itself and accepts every
//! connection from its own socket, with the client's address. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::privileged_lab;
use lab::*;
use synwall::lab::CLIENT_V4;
use synwall::listener::SyncookiesMode;

const LAB: &str = "swn";

#[test]
fn test_native_handoff_delivers_to_the_service_with_the_client_address() {
    let Some(topology) = privileged_lab(LAB) else {
        return;
    };
    for mode in [SyncookiesMode::Never, SyncookiesMode::Always] {
        let service = in_ns(&topology, &topology.server_ns, || {
            TcpListener::bind(served_v4()).unwrap()
        });
        let wall = NativeWall::start(&topology, |config| config.listener.syncookies = mode);
        let client = topology.spawn_in(&topology.client_ns, || {
            let mut stream =
                TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3)).unwrap();
            stream.write_all(b"hello").unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply).unwrap();
            reply
        });
        let (mut accepted, peer) = service.accept().unwrap();
        assert_eq!(peer.ip(), std::net::IpAddr::V4(CLIENT_V4), "{mode:?}");
        let mut request = [0u8; 5];
        accepted.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"hello");
        accepted.write_all(b"world").unwrap();
        assert_eq!(&client.join().unwrap().unwrap(), b"world");
        let stats = wall.stats();
        assert_eq!(stats.handoffs_completed, 1, "{mode:?}: {stats:?}");
        assert_eq!(stats.handoffs_failed, 0);
    }
}
