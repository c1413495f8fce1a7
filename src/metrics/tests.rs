//! The exposition's families, labels and values, the endpoint and its scrape.

use std::collections::BTreeSet;
use std::time::Duration;

use super::endpoint::parse_series;
use super::render::{XSK_FAMILIES, label};
use super::*;
use crate::counters::{Counter, Counters};
use crate::proxy::ProxyCounters;
use crate::server::{QueueStats, ServerStats};
use crate::sys::XskStatistics;

fn instance() -> Instance {
    Instance {
        secret: SecretSource::File,
        reload: ReloadStatus::new(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
        serving: Serving {
            interface: "lo".to_owned(),
            served: vec![
                "198.18.0.1:80".parse().unwrap(),
                "[2001:2::1]:443".parse().unwrap(),
            ],
        },
    }
}

/// Two queues whose SYN counters differ.
fn stats() -> ServerStats {
    let queue = |number: u32, syns: usize| {
        let counters = Counters::default();
        counters.add(Counter::SynReceived, syns);
        counters.add(Counter::CookiesSent, syns);
        QueueStats {
            queue: number,
            listener: counters.snapshot(),
            syn_queue_capacity: 4096,
            zero_copy: number == 3,
            ..QueueStats::default()
        }
    };
    let mut stats = ServerStats {
        handoffs_completed: 7,
        own_listener_accepted: 11,
        queues: vec![queue(0, 2), queue(3, 5)],
        ..ServerStats::default()
    };
    stats.handoff_failures[1] = 3;
    stats
}

#[test]
fn test_exposition_is_well_formed_and_reads_back() {
    let text = render(&stats(), &ProxyCounters::default(), &instance());
    let mut families = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let family = rest.split(' ').next().unwrap();
            assert!(
                families.insert(family.to_owned()),
                "{family} described twice"
            );
        } else if !line.starts_with("# HELP ") {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (family, _) = parse_series(series).expect(series);
            let base = family
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(
                families.contains(family) || families.contains(base),
                "{series} has no TYPE"
            );
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
    let scrape = Scrape::parse(&text);
    assert_eq!(scrape.get("synwall_handoffs_total"), 7.0);
    assert_eq!(scrape.get("synwall_own_listener_accepted_total"), 11.0);
    assert_eq!(
        scrape.get("synwall_handoff_failures_total{reason=\"no_listener\"}"),
        3.0,
        "{text}"
    );
    assert_eq!(scrape.family("synwall_handoff_failures_total"), 3.0);
    assert_eq!(scrape.get("synwall_handshake_duration_seconds_count"), 0.0);
    assert_eq!(
        scrape.get(&format!(
            "synwall_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(scrape.get("synwall_secret_info{source=\"file\"}"), 1.0);
    assert_eq!(scrape.get("synwall_config_last_reload_successful"), 1.0);
    assert_eq!(
        scrape.get("synwall_config_last_reload_attempt_timestamp_seconds"),
        1_700_000_000.25
    );
    assert!(
        scrape
            .0
            .contains_key("synwall_accepted_total{queue=\"3\",path=\"cookie\"}")
    );
    assert_eq!(scrape.family("synwall_accepted_total"), 0.0);
    assert!(scrape.get("process_resident_memory_bytes") > 0.0);
}

#[test]
fn test_listener_series_are_per_queue_and_sum_to_the_server() {
    let scrape = Scrape::parse(&render(&stats(), &ProxyCounters::default(), &instance()));
    assert_eq!(scrape.family("synwall_syn_received_total"), 7.0);
    assert_eq!(
        scrape.sum("synwall_syn_received_total", &[("queue", "3")]),
        5.0
    );
    assert_eq!(
        scrape.sum(
            "synwall_synacks_sent_total",
            &[("queue", "0"), ("kind", "cookie")]
        ),
        2.0
    );
    assert_eq!(
        scrape.label_values("synwall_syn_queue_capacity", "queue"),
        BTreeSet::from(["0".to_owned(), "3".to_owned()])
    );
    assert_eq!(scrape.sum("synwall_syn_queue_capacity", &[]), 8192.0);
}

#[test]
fn test_every_afxdp_statistic_is_exported() {
    // Every field named: a new statistic fails to compile here until it is exported.
    let xsk = XskStatistics {
        rx_dropped: 1,
        rx_ring_full: 2,
        rx_fill_ring_empty: 4,
        tx_invalid: 8,
        tx_ring_empty: 16,
    };
    let stats = ServerStats {
        queues: vec![QueueStats {
            xsk,
            ..QueueStats::default()
        }],
        ..ServerStats::default()
    };
    let scrape = Scrape::parse(&render(&stats, &ProxyCounters::default(), &instance()));
    let exported: f64 = XSK_FAMILIES
        .iter()
        .map(|(family, _, _)| scrape.family(family))
        .sum();
    assert_eq!(exported, 31.0);
}

#[test]
fn test_what_is_served_is_exported() {
    let scrape = Scrape::parse(&render(&stats(), &ProxyCounters::default(), &instance()));
    assert_eq!(
        scrape.label_values("synwall_served_info", "address"),
        BTreeSet::from(["198.18.0.1:80".to_owned(), "[2001:2::1]:443".to_owned()])
    );
    assert_eq!(scrape.get("synwall_xsk_zero_copy{queue=\"0\"}"), 0.0);
    assert_eq!(scrape.get("synwall_xsk_zero_copy{queue=\"3\"}"), 1.0);
    // The loopback device reports no channels: one rx queue.
    assert_eq!(
        scrape.get("synwall_interface_rx_queues{interface=\"lo\"}"),
        1.0
    );
}

#[test]
fn test_label_values_are_escaped_and_read_back() {
    let odd = "a\"b\\c\nd";
    let series = format!("x{{{}}}", label("interface", odd));
    assert_eq!(
        parse_series(&series),
        Some(("x", vec![("interface", odd.to_owned())]))
    );
}

#[test]
fn test_a_failed_reload_shows() {
    let instance = instance();
    let later = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
    instance.reload.record(later, false);
    let scrape = Scrape::parse(&render(
        &ServerStats::default(),
        &ProxyCounters::default(),
        &instance,
    ));
    assert_eq!(scrape.get("synwall_config_last_reload_successful"), 0.0);
    assert_eq!(
        scrape.get("synwall_config_last_reload_attempt_timestamp_seconds"),
        1_700_000_100.0
    );
    assert_eq!(
        scrape.get("synwall_config_last_reload_success_timestamp_seconds"),
        1_700_000_000.25
    );
}

#[test]
fn test_series_parse_with_escapes() {
    assert_eq!(parse_series("a_total"), Some(("a_total", vec![])));
    assert_eq!(
        parse_series(r#"a{x="1",y="q\"u,o\\te"}"#),
        Some((
            "a",
            vec![("x", "1".to_owned()), ("y", r#"q"u,o\te"#.to_owned())]
        ))
    );
    assert_eq!(parse_series("a{x=\"1\""), None);
    assert_eq!(parse_series("a{x=1}"), None);
}

#[test]
fn test_endpoint_serves_and_is_scraped() {
    let server = MetricsServer::spawn("127.0.0.1:0".parse().unwrap(), || {
        "# TYPE synwall_x counter\nsynwall_x 42\n".to_owned()
    })
    .unwrap();
    let scrape = Scrape::fetch(server.address()).unwrap();
    assert_eq!(scrape.get("synwall_x"), 42.0);
}
