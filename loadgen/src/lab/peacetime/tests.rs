//! Tests of the peacetime clients against the built-in service on loopback (or no service,
//! or a silent one): the open loop's counts and failures, the keep-alive loop, a rate search
//! at low rates, and the open loop's schedule.

use super::*;
use crate::lab::service::testing::{GET_10, GET_11, serving, wait_until};
use crate::lab::service::{REPLY_MARK, ServiceConfig};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::Ordering;

/// 30 attempts at 100/s to `target` from 127.0.0.1, with generous timeouts.
fn low_rate(target: SocketAddr) -> ConnectionsConfig {
    ConnectionsConfig {
        target,
        sources: vec![Ipv4Addr::LOCALHOST.into()],
        rate: 100,
        duration: Duration::from_millis(300),
        timeout: Duration::from_secs(5),
        max_in_flight: 64,
        request: GET_10.to_vec(),
        expect: REPLY_MARK.as_bytes().to_vec(),
    }
}

/// A loopback address nothing listens on (the port was just free).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn test_low_rate_every_attempt_succeeds() {
    serving(&ServiceConfig::default(), |address, counters| {
        let report = connections(&low_rate(address)).unwrap();
        assert_eq!((report.attempts, report.ok), (30, 30), "{report:?}");
        assert_eq!(report.failures, FailureCounts::default());
        let (connect, exchange) = (report.connect_us.unwrap(), report.exchange_us.unwrap());
        assert!(connect.p50 <= exchange.max, "{report:?}");
        assert!(report.meets(1.0, Duration::from_secs(60)));
        assert_eq!(counters.requests.load(Ordering::Relaxed), 30);
    });
}

#[test]
fn test_connections_without_a_listener_are_refused() {
    let config = ConnectionsConfig {
        duration: Duration::from_millis(100),
        ..low_rate(closed_port())
    };
    let report = connections(&config).unwrap();
    assert_eq!(report.attempts, 10);
    assert_eq!(report.failures.refused, 10, "{report:?}");
    assert_eq!(
        (report.ok, report.connect_us, report.exchange_us),
        (0, None, None)
    );
    assert!(!report.meets(0.0, Duration::from_secs(60)));
}

#[test]
fn test_silent_server_gives_reply_timeouts() {
    // The kernel completes the handshakes; nobody ever answers.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let config = ConnectionsConfig {
        rate: 20,
        duration: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        ..low_rate(listener.local_addr().unwrap())
    };
    let report = connections(&config).unwrap();
    assert_eq!(report.attempts, 2);
    assert_eq!(report.failures.reply_timeout, 2, "{report:?}");
    assert!(report.connect_us.is_some() && report.exchange_us.is_none());
}

#[test]
fn test_attempts_beyond_the_in_flight_limit_are_overloaded() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let config = ConnectionsConfig {
        rate: 50,
        duration: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
        max_in_flight: 2,
        ..low_rate(listener.local_addr().unwrap())
    };
    let report = connections(&config).unwrap();
    assert_eq!(report.attempts, 5);
    assert_eq!(report.failures.overloaded, 3, "{report:?}");
    assert_eq!(report.failures.reply_timeout, 2, "{report:?}");
}

#[test]
fn test_keepalive_reuses_its_connections() {
    serving(&ServiceConfig::default(), |address, counters| {
        let config = KeepaliveConfig {
            target: address,
            connections: 4,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
            request: GET_11.to_vec(),
            expect: REPLY_MARK.as_bytes().to_vec(),
        };
        let report = keepalive(&config).unwrap();
        assert_eq!(report.connections, 4);
        assert_eq!(report.failures, FailureCounts::default());
        assert!(report.requests > 4, "{report:?}");
        assert!(report.latency_us.is_some());
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 4);
        // The service counts a request once its reply is written, which the client may read
        // first.
        wait_until("the service's count of requests", || {
            counters.requests.load(Ordering::Relaxed) >= report.requests
        });
    });
}

#[test]
fn test_keepalive_counts_a_server_that_closes() {
    // HTTP/1.0: the service answers and closes, so each connection ends after one reply.
    serving(&ServiceConfig::default(), |address, _| {
        let config = KeepaliveConfig {
            target: address,
            connections: 2,
            duration: Duration::from_secs(10),
            timeout: Duration::from_secs(5),
            request: GET_10.to_vec(),
            expect: REPLY_MARK.as_bytes().to_vec(),
        };
        let report = keepalive(&config).unwrap();
        assert_eq!((report.connections, report.requests), (2, 2));
        assert_eq!(report.failures.reset, 2, "{report:?}");
    });
}

#[test]
fn test_rate_search_at_low_rates() {
    serving(&ServiceConfig::default(), |address, _| {
        let ladder = RateLadder {
            start: 50,
            max_rate: 400,
            step: Duration::from_millis(200),
            settle: Duration::ZERO,
            // Lenient, so that it holds on a loaded machine.
            success: 0.99,
            p99: Duration::from_secs(5),
            ..RateLadder::default()
        };
        let search = max_connection_rate(&low_rate(address), &ladder).unwrap();
        let rates: Vec<u32> = search.steps.iter().map(|step| step.rate).collect();
        assert_eq!(rates.first(), Some(&50));
        assert!(rates.len() <= ladder.max_steps);
        assert!(rates.iter().all(|&rate| rate <= 400), "{rates:?}");
        let best = search.best.expect("50/s meets a lenient objective");
        assert!(best.meets(ladder.success, ladder.p99));
        assert!(rates.contains(&best.rate));
    });
}

#[test]
fn test_schedule_is_absolute() {
    let origin = Instant::now();
    let schedule = Schedule::new(3, Duration::from_secs(2), origin);
    assert_eq!(schedule.attempts, 6);
    assert_eq!(schedule.due(0), origin);
    assert_eq!(schedule.due(3), origin + Duration::from_secs(1));
    assert_eq!(
        schedule.due(4) - schedule.due(3),
        Duration::from_nanos(333_333_333)
    );
    assert_eq!(schedule.burst(), 1);
    assert_eq!(Schedule::new(100_000, Duration::ZERO, origin).burst(), 200);
}
