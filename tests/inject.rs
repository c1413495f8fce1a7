//! Local delivery through raw sockets: an injected packet reaches the local socket it is
//! addressed to, and the injector's sockets receive nothing of the host's own traffic.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};

use etherparse::PacketBuilder;
use loadgen::lab::SERVER_V4;
use synwall::device::LocalDelivery;
use synwall::sys::inject::RawInjector;

#[test]
fn test_injected_packet_is_delivered_and_nothing_is_received() {
    let Some(topology) = common::privileged_lab("swi") else {
        return;
    };
    let ns = topology.server_ns.clone();
    topology
        .spawn_in(&ns, || {
            let mut injector = RawInjector::new().unwrap();
            let receiver = UdpSocket::bind((SERVER_V4, 0)).unwrap();
            let port = receiver.local_addr().unwrap().port();
            let mut packet = Vec::new();
            PacketBuilder::ipv4([198, 18, 0, 2], SERVER_V4.octets(), 64)
                .udp(4000, port)
                .write(&mut packet, b"injected")
                .unwrap();
            injector.deliver(&packet).unwrap();
            let mut buffer = [0u8; 64];
            receiver
                .set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let (len, from) = receiver.recv_from(&mut buffer).unwrap();
            assert_eq!(&buffer[..len], b"injected");
            assert_eq!(from, SocketAddr::from((Ipv4Addr::new(198, 18, 0, 2), 4000)));

            // TCP traffic of the host: none of it may queue up on the injector's sockets.
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            client.write_all(&[7; 1000]).unwrap();
            server.read_exact(&mut [0; 1000]).unwrap();
            // This thread's namespace: /proc/self would show the main thread's.
            let raw = std::fs::read_to_string("/proc/thread-self/net/raw").unwrap();
            let queued: Vec<&str> = raw
                .lines()
                .skip(1)
                .filter(|line| {
                    // "sl local rem st tx_queue:rx_queue ...": a non-zero rx_queue.
                    let queues = line.split_whitespace().nth(4).unwrap_or("");
                    queues.split(':').nth(1).is_some_and(|rx| rx != "00000000")
                })
                .collect();
            assert!(queued.is_empty(), "raw sockets received: {queued:?}\n{raw}");
            drop(injector);
        })
        .join()
        .unwrap()
        .unwrap();
}
