//! The exposition against its documentation and against promtool: every family the endpoint
//! serves is in deploy/METRICS.md with its type and labels, and every family listed there is
//! served; `promtool check metrics` finds nothing. (tests/operate.rs checks the same on a
//! scrape of a running synwall.)

mod common;
#[path = "support/metrics_doc.rs"]
mod metrics_doc;

use std::time::SystemTime;

use synwall::counters::{Counter, Counters};
use synwall::metrics::names::CounterNames;
use synwall::metrics::{self, Instance, ReloadStatus, SecretSource, Serving};
use synwall::proxy::ProxyCounters;
use synwall::server::{QueueStats, ServerStats};

/// What a server of two rx queues in the middle of its work exports.
fn exposition() -> String {
    let queue = |number: u32| {
        let counters = Counters::default();
        QueueStats {
            queue: number,
            listener: counters.snapshot(),
            syn_queue_capacity: 4096,
            zero_copy: number == 1,
            ..QueueStats::default()
        }
    };
    let stats = ServerStats {
        queues: vec![queue(0), queue(1)],
        accept_queue_capacity: 4096,
        ..ServerStats::default()
    };
    let instance = Instance {
        secret: SecretSource::Random,
        reload: ReloadStatus::new(SystemTime::now()),
        // The loopback device, which every host has: its rx queue count is read at the scrape.
        serving: Serving {
            interface: "lo".to_owned(),
            served: vec![common::server_v4()],
        },
    };
    metrics::render(&stats, &ProxyCounters::default(), &instance)
}

#[test]
fn test_the_document_lists_every_series_served_and_no_other() {
    metrics_doc::assert_agrees_with_the_document(&exposition());
}

#[test]
fn test_every_listener_counter_is_documented_under_its_family() {
    let documented = metrics_doc::documented();
    for counter in Counter::ALL {
        let family = documented
            .get(counter.family())
            .unwrap_or_else(|| panic!("{counter:?}: {} is not in METRICS.md", counter.family()));
        if let Some((label, _)) = counter.labels().split_once('=') {
            assert!(family.labels.contains(label), "{counter:?}");
        }
    }
}

#[test]
fn test_promtool_check_metrics_finds_nothing() {
    if !common::require_tool("promtool") {
        return;
    }
    metrics_doc::assert_promtool_finds_nothing(&exposition());
}
