mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use synwall::lab::{SERVER_V4, Topology};
use synwall::listener::SyncookiesMode;
use synwall::server::{Server, ServerConfig};

#[test]
fn smoke() {
    if !common::require_privileges() {
        return;
    }
    let topo = Topology::create("swz").unwrap();
    let addr: SocketAddr = (SERVER_V4, 80).into();
    let iface = topo.server_if.clone();
    let server = topo.spawn_in(&topo.server_ns, move || {
        let mut config = ServerConfig::new(&iface, &[addr]);
        config.listener.syncookies = SyncookiesMode::Always;
        let server = Server::bind(config).unwrap();
        let mut conn = server.accept().unwrap();
        eprintln!(
            "accepted {:?} {:?} {:?}",
            conn.peer, conn.path, conn.options
        );
        let mut buf = [0u8; 5];
        conn.stream.read_exact(&mut buf).unwrap();
        conn.stream.write_all(&buf).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        eprintln!("stats {:?}", server.stats().listener.non_zero());
    });
    std::thread::sleep(Duration::from_millis(500));
    let client = topo.spawn_in(&topo.client_ns, move || {
        let t = std::time::Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
        eprintln!("connected after {:?}", t.elapsed());
        s.write_all(b"hello").unwrap();
        let mut buf = [0u8; 5];
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        eprintln!("echo after {:?}", t.elapsed());
    });
    client.join().unwrap().unwrap();
    server.join().unwrap().unwrap();
}
