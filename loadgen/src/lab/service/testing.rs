//! The service on loopback, and what clients send it (requests, PROXY headers), for the
//! service's tests, the PROXY header parser's and the peacetime clients'.

use std::net::{Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use super::{Running, ServiceConfig, ServiceCounters};
use crate::lab::proxy_protocol::PROXY_V2_SIGNATURE;

/// An HTTP/1.0 request: the service answers and closes.
pub(in crate::lab) const GET_10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
/// An HTTP/1.1 request: the connection stays open.
pub(in crate::lab) const GET_11: &[u8] = b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n";

/// Runs the service on 127.0.0.1 with `config` while `test` runs with its address and
/// counters; fails if the service failed.
pub(in crate::lab) fn serving(
    config: &ServiceConfig,
    test: impl FnOnce(SocketAddr, &ServiceCounters),
) {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let address = listener.local_addr().unwrap();
    let service = Running::start(listener, config.clone());
    test(address, service.counters());
    service.stop().unwrap();
}

/// Waits until `condition` holds, failing after 10 s.
#[track_caller]
pub(in crate::lab) fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// A v2 PROXY header with `command`, `family` (and protocol) and `addresses`.
pub(in crate::lab) fn proxy_v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = PROXY_V2_SIGNATURE.to_vec();
    header.extend([0x20 | command, family]);
    header.extend((addresses.len() as u16).to_be_bytes());
    header.extend(addresses);
    header
}

pub(in crate::lab) fn proxy_v2_tcp4(source: Ipv4Addr) -> Vec<u8> {
    let mut addresses = source.octets().to_vec();
    addresses.extend(Ipv4Addr::new(198, 18, 0, 1).octets());
    addresses.extend(40_000u16.to_be_bytes());
    addresses.extend(80u16.to_be_bytes());
    proxy_v2(1, 0x11, &addresses)
}
