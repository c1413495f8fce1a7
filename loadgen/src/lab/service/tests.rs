//! Tests of the built-in service: its replies and keep-alive rule, the spoofed-source
//! prefixes, and the service on loopback answering, counting and closing connections.

use super::testing::{GET_10, GET_11, proxy_v2, proxy_v2_tcp4, serving, wait_until};
use super::*;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::thread;

/// Waits until `counter` reads `expected` (it may be counted just after a close is seen).
#[track_caller]
fn expect_count(counter: &AtomicU64, expected: u64) {
    wait_until(&format!("a count of {expected}"), || {
        counter.load(Ordering::Relaxed) == expected
    });
}

/// A blocking client of the service with a safety timeout on every read.
#[track_caller]
fn client(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Everything until the service closes; a reset counts as a close.
#[track_caller]
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    if let Err(error) = stream.read_to_end(&mut received) {
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{error}");
    }
    received
}

/// Sends `bytes`, then reads until the service closes.
#[track_caller]
fn exchange(address: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut stream = client(address);
    stream.write_all(bytes).unwrap();
    read_to_close(&mut stream)
}

#[test]
fn test_replies_carry_the_mark_and_frame_their_body() {
    for reply in [REPLY_KEEP_ALIVE, REPLY_CLOSE] {
        let head = head_length(reply).unwrap();
        let length: Vec<&[u8]> = header_values(&reply[..head], "content-length").collect();
        let length: usize = std::str::from_utf8(length[0]).unwrap().parse().unwrap();
        assert_eq!(head + length, reply.len());
        assert!(String::from_utf8_lossy(&reply[head..]).contains(REPLY_MARK));
    }
}

#[test]
fn test_keeps_alive_only_http11_without_close() {
    assert!(keeps_alive(GET_11));
    assert!(!keeps_alive(GET_10));
    assert!(!keeps_alive(
        b"GET / HTTP/1.1\r\nconnection: Keep-Alive, CLOSE\r\n\r\n"
    ));
    assert!(keeps_alive(
        b"GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!keeps_alive(b"nonsense\r\n\r\n"));
}

#[test]
fn test_ip_prefix() {
    let v4 = IpPrefix::parse("198.18.128.0/17").unwrap();
    let inside = |a, b| v4.contains(Ipv4Addr::new(198, 18, a, b).into());
    assert!(inside(128, 0) && inside(255, 255));
    assert!(!inside(127, 255) && !inside(0, 2));
    let mapped = Ipv4Addr::new(198, 18, 200, 1).to_ipv6_mapped();
    assert!(v4.contains(mapped.into()));
    assert!(!v4.contains(Ipv6Addr::LOCALHOST.into()));
    let v6 = IpPrefix::parse("2001:2:0:8000::/49").unwrap();
    let inside = |text: &str| v6.contains(text.parse().unwrap());
    assert!(inside("2001:2:0:8000::1") && inside("2001:2:0:ffff:ffff::"));
    assert!(!inside("2001:2::2") && !inside("2001:3:0:8000::"));
    assert!(!v6.contains(Ipv4Addr::new(198, 18, 200, 1).into()));
    let everything = IpPrefix::parse("0.0.0.0/0").unwrap();
    assert!(everything.contains(Ipv4Addr::BROADCAST.into()));
    assert!(
        IpPrefix::parse("::/0")
            .unwrap()
            .contains(Ipv6Addr::LOCALHOST.into())
    );
    assert_eq!(IpPrefix::parse("198.18.0.0/33"), None);
    assert_eq!(IpPrefix::parse("::/129"), None);
    assert_eq!(IpPrefix::parse("198.18.0.0"), None);
    let default = ServiceConfig::default().spoofed;
    assert!(default.iter().any(|prefix| prefix.contains(mapped.into())));
}

#[test]
fn test_http10_answered_and_closed() {
    let config = ServiceConfig::default();
    serving(&config, |address, counters| {
        assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
        expect_count(&counters.requests, 1);
        expect_count(&counters.accepted, 1);
        expect_count(&counters.forged, 0);
    });
}

#[test]
fn test_peers_in_the_spoofed_range_are_forged() {
    let config = ServiceConfig {
        spoofed: vec![IpPrefix::parse("127.0.0.0/8").unwrap()],
        ..ServiceConfig::default()
    };
    serving(&config, |address, counters| {
        assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
        expect_count(&counters.forged, 1);
    });
}

#[test]
fn test_http11_keep_alive_answers_several_requests() {
    let config = ServiceConfig::default();
    serving(&config, |address, counters| {
        let mut stream = client(address);
        let mut reply = [0u8; REPLY_KEEP_ALIVE.len()];
        for _ in 0..3 {
            stream.write_all(GET_11).unwrap();
            stream.read_exact(&mut reply).unwrap();
            assert_eq!(reply, REPLY_KEEP_ALIVE);
        }
        // Two requests in one segment are answered in turn, the second one closing.
        let close = b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
        stream.write_all(&[GET_11, close].concat()).unwrap();
        let replies = read_to_close(&mut stream);
        assert_eq!(replies, [REPLY_KEEP_ALIVE, REPLY_CLOSE].concat());
        expect_count(&counters.accepted, 1);
        expect_count(&counters.requests, 5);
    });
}

#[test]
fn test_connection_close_honoured() {
    let config = ServiceConfig::default();
    serving(&config, |address, counters| {
        let request = b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n";
        assert_eq!(exchange(address, request), REPLY_CLOSE);
        expect_count(&counters.requests, 1);
    });
}

#[test]
fn test_proxy_headers_give_the_client_address() {
    let config = ServiceConfig {
        proxy_protocol: true,
        ..ServiceConfig::default()
    };
    let spoofed = Ipv4Addr::new(198, 18, 200, 7);
    let legit = Ipv4Addr::new(198, 18, 0, 2);
    let headers = [
        format!("PROXY TCP4 {spoofed} 198.18.0.1 40000 80\r\n").into_bytes(),
        format!("PROXY TCP4 {legit} 198.18.0.1 40000 80\r\n").into_bytes(),
        proxy_v2_tcp4(spoofed),
        proxy_v2_tcp4(legit),
        // The peer, 127.0.0.1, is the client.
        b"PROXY UNKNOWN\r\n".to_vec(),
        proxy_v2(0, 0, &[]),
    ];
    serving(&config, |address, counters| {
        for header in &headers {
            assert_eq!(exchange(address, &[header, GET_10].concat()), REPLY_CLOSE);
        }
        // The header and the request in separate segments.
        let mut stream = client(address);
        stream.write_all(&proxy_v2_tcp4(spoofed)).unwrap();
        expect_count(&counters.forged, 3);
        stream.write_all(GET_10).unwrap();
        assert_eq!(read_to_close(&mut stream), REPLY_CLOSE);
        expect_count(&counters.accepted, 7);
        expect_count(&counters.requests, 7);
        expect_count(&counters.bad_proxy_header, 0);
    });
}

#[test]
fn test_missing_proxy_header_counted_and_closed() {
    let config = ServiceConfig {
        proxy_protocol: true,
        ..ServiceConfig::default()
    };
    serving(&config, |address, counters| {
        assert_eq!(exchange(address, GET_10), b"");
        expect_count(&counters.bad_proxy_header, 1);
        expect_count(&counters.requests, 0);
    });
}

#[test]
fn test_idle_connections_closed_after_the_timeout() {
    let idle_timeout = Duration::from_millis(200);
    let config = ServiceConfig {
        idle_timeout,
        ..ServiceConfig::default()
    };
    serving(&config, |address, counters| {
        let started = Instant::now();
        let mut silent = client(address);
        let mut partial = client(address);
        partial.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        assert_eq!(read_to_close(&mut silent), b"");
        assert_eq!(read_to_close(&mut partial), b"");
        assert!(started.elapsed() >= idle_timeout);
        expect_count(&counters.idle_closed, 2);
        // A keep-alive connection gets the timeout again after each request: it outlives
        // the first while it sends requests.
        let mut kept = client(address);
        let opened = Instant::now();
        let mut reply = [0u8; REPLY_KEEP_ALIVE.len()];
        let last_request = loop {
            let sent = Instant::now();
            kept.write_all(GET_11).unwrap();
            kept.read_exact(&mut reply).unwrap();
            if opened.elapsed() > idle_timeout * 3 / 2 {
                break sent;
            }
            thread::sleep(idle_timeout / 10);
        };
        assert_eq!(read_to_close(&mut kept), b"");
        assert!(last_request.elapsed() >= idle_timeout);
        expect_count(&counters.idle_closed, 3);
    });
}

#[test]
fn test_connection_limit_turns_away_the_next_connection() {
    let config = ServiceConfig {
        max_connections: 2,
        ..ServiceConfig::default()
    };
    serving(&config, |address, counters| {
        let mut open = [client(address), client(address)];
        expect_count(&counters.accepted, 2);
        let mut turned_away = client(address);
        assert_eq!(read_to_close(&mut turned_away), b"");
        expect_count(&counters.turned_away, 1);
        for stream in &mut open {
            stream.write_all(GET_10).unwrap();
            assert_eq!(read_to_close(stream), REPLY_CLOSE);
        }
        // Their slots are free again.
        assert_eq!(exchange(address, GET_10), REPLY_CLOSE);
        expect_count(&counters.accepted, 4);
        expect_count(&counters.turned_away, 1);
    });
}
