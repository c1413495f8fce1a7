//! `synwall stats`: lines of figures computed from two scrapes of a running synwall's metrics
//! endpoint ([`lines`]), as a table ([`Table`]) or as JSON objects ([`Line::json`]).
//!
//! Contract: a rate is the increase of its counters divided by the time measured between the
//! two scrapes, not the nominal interval (a slow scrape or a late wake-up does not inflate
//! it); a counter that went down (synwall restarted) counts from zero. Figures that are not
//! rates (queue depths, connections in flight) are shown as they are now, in columns of their
//! own. With `per_queue`, a line per rx queue comes before the line of the whole server; the
//! columns of server-wide figures are empty (`-`) on queue lines.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::Scrape;

/// The table repeats its header every this many lines.
pub const HEADER_EVERY: usize = 20;

/// The counters or gauges one column reads: a family, and a label the series must carry.
struct Source {
    family: &'static str,
    label: Option<(&'static str, &'static str)>,
}

const fn all(family: &'static str) -> Source {
    Source {
        family,
        label: None,
    }
}

const fn only(family: &'static str, label: &'static str, value: &'static str) -> Source {
    Source {
        family,
        label: Some((label, value)),
    }
}

/// What a column shows.
enum Figure {
    /// Per second over the interval, of the sum of the sources.
    Rate(&'static [Source]),
    /// The sum of the sources now.
    Now(&'static [Source]),
}

/// The columns' groups, separated by `|` in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// What synwall does, per second.
    Rates,
    /// What is lost, per second.
    Losses,
    /// Gauges, now.
    Now,
}

struct Column {
    header: &'static str,
    /// The key in `--json` lines.
    key: &'static str,
    group: Group,
    figure: Figure,
    /// Whether the series carry a `queue` label (else the figure is the whole server's).
    per_queue: bool,
}

const COLUMNS: [Column; 17] = [
    Column {
        header: "SYN/s",
        key: "syns_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[all("synwall_syn_received_total")]),
        per_queue: true,
    },
    Column {
        header: "SYN-ACK/s",
        key: "synacks_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[all("synwall_synacks_sent_total")]),
        per_queue: true,
    },
    Column {
        header: "cookie/s",
        key: "cookies_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[only("synwall_synacks_sent_total", "kind", "cookie")]),
        per_queue: true,
    },
    Column {
        header: "valid/s",
        key: "valid_cookie_acks_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[only("synwall_cookie_acks_total", "result", "valid")]),
        per_queue: true,
    },
    Column {
        header: "invalid/s",
        key: "invalid_cookie_acks_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[only("synwall_cookie_acks_total", "result", "invalid")]),
        per_queue: true,
    },
    Column {
        header: "accept/s",
        key: "accepted_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[all("synwall_accepted_total")]),
        per_queue: true,
    },
    Column {
        header: "reject/s",
        key: "rejected_per_second",
        group: Group::Rates,
        figure: Figure::Rate(&[
            all("synwall_rejected_total"),
            all("synwall_malformed_total"),
        ]),
        per_queue: true,
    },
    Column {
        header: "rxdrop/s",
        key: "xsk_rx_dropped_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[all("synwall_xsk_rx_dropped_total")]),
        per_queue: true,
    },
    Column {
        header: "ringfull/s",
        key: "xsk_rx_ring_full_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[all("synwall_xsk_rx_ring_full_total")]),
        per_queue: true,
    },
    Column {
        header: "nosock/s",
        key: "dropped_no_socket_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[only(
            "synwall_xdp_frames_total",
            "verdict",
            "dropped_no_socket",
        )]),
        per_queue: false,
    },
    Column {
        header: "hofail/s",
        key: "handoff_failures_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[all("synwall_handoff_failures_total")]),
        per_queue: false,
    },
    Column {
        header: "upfail/s",
        key: "upstream_failures_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[all("synwall_proxy_upstream_failures_total")]),
        per_queue: false,
    },
    Column {
        header: "RST/s",
        key: "rsts_sent_per_second",
        group: Group::Losses,
        figure: Figure::Rate(&[all("synwall_rsts_sent_total")]),
        per_queue: true,
    },
    Column {
        header: "synq",
        key: "syn_queue",
        group: Group::Now,
        figure: Figure::Now(&[all("synwall_syn_queue_depth")]),
        per_queue: true,
    },
    Column {
        header: "acceptq",
        key: "accept_queue",
        group: Group::Now,
        figure: Figure::Now(&[all("synwall_accept_queue_depth")]),
        per_queue: false,
    },
    Column {
        header: "handoffs",
        key: "handoffs_pending",
        group: Group::Now,
        figure: Figure::Now(&[all("synwall_handoffs_pending")]),
        per_queue: true,
    },
    Column {
        header: "proxied",
        key: "proxy_connections",
        group: Group::Now,
        figure: Figure::Now(&[all("synwall_proxy_active_connections")]),
        per_queue: false,
    },
];

/// The figures of one line: the whole server's, or one rx queue's.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// When the second scrape was taken.
    pub time: SystemTime,
    /// The time measured between the two scrapes.
    pub interval: Duration,
    /// The rx queue; `None` for the whole server.
    pub queue: Option<u32>,
    /// One per column; `None` where a figure is the whole server's and the line a queue's.
    pub values: Vec<Option<f64>>,
}

/// The lines for the interval from `before` to `now` (measured: `interval`, ending at `time`):
/// with `per_queue` one per rx queue in `now`, then the server's.
pub fn lines(
    before: &Scrape,
    now: &Scrape,
    interval: Duration,
    time: SystemTime,
    per_queue: bool,
) -> Vec<Line> {
    let queues: Vec<u32> = if per_queue {
        let mut queues: Vec<u32> = now
            .label_values("synwall_syn_queue_capacity", "queue")
            .iter()
            .filter_map(|queue| queue.parse().ok())
            .collect();
        queues.sort_unstable();
        queues
    } else {
        Vec::new()
    };
    let seconds = interval.as_secs_f64().max(f64::MIN_POSITIVE);
    let line = |queue: Option<u32>| {
        let queue_label = queue.map(|queue| queue.to_string());
        let values = COLUMNS
            .iter()
            .map(|column| {
                if queue.is_some() && !column.per_queue {
                    return None;
                }
                let sum = |scrape: &Scrape, sources: &[Source]| -> f64 {
                    sources
                        .iter()
                        .map(|source| {
                            let mut labels: Vec<(&str, &str)> = source.label.into_iter().collect();
                            if let Some(queue) = &queue_label {
                                labels.push(("queue", queue));
                            }
                            scrape.sum(source.family, &labels)
                        })
                        .sum()
                };
                Some(match column.figure {
                    Figure::Rate(sources) => {
                        counter_increase(sum(before, sources), sum(now, sources)) / seconds
                    }
                    Figure::Now(sources) => sum(now, sources),
                })
            })
            .collect();
        Line {
            time,
            interval,
            queue,
            values,
        }
    };
    queues
        .iter()
        .map(|&queue| line(Some(queue)))
        .chain([line(None)])
        .collect()
}

/// How much a counter grew from `then` to `now`; a counter that went down (synwall restarted)
/// counts from zero.
pub fn counter_increase(then: f64, now: f64) -> f64 {
    if now >= then { now - then } else { now }
}

impl Line {
    /// One JSON object, on one line: `time` (RFC 3339, UTC), `interval_seconds`, `queue`
    /// (a number, or `"all"`), then every column's key with its figure (server-wide figures
    /// are left out of a queue's line).
    pub fn json(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert(
            "time".into(),
            humantime::format_rfc3339_millis(self.time)
                .to_string()
                .into(),
        );
        object.insert(
            "interval_seconds".into(),
            self.interval.as_secs_f64().into(),
        );
        object.insert(
            "queue".into(),
            self.queue.map_or("all".into(), serde_json::Value::from),
        );
        for (column, value) in COLUMNS.iter().zip(&self.values) {
            if let Some(value) = value {
                object.insert(column.key.into(), (*value).into());
            }
        }
        serde_json::Value::Object(object).to_string()
    }
}

/// The table: a header, then a row per line, the header again every [`HEADER_EVERY`] rows.
#[derive(Debug)]
pub struct Table {
    per_queue: bool,
    rows: usize,
}

impl Table {
    /// A table with a `queue` column when `per_queue`.
    pub fn new(per_queue: bool) -> Table {
        Table { per_queue, rows: 0 }
    }

    /// The text of `lines`, headers included where they are due, each line ending in `\n`.
    pub fn write(&mut self, lines: &[Line]) -> String {
        let mut text = String::new();
        for line in lines {
            if self.rows.is_multiple_of(HEADER_EVERY) {
                self.cells(&mut text, "time (UTC)", "queue", |column| {
                    column.header.to_owned()
                });
            }
            self.rows += 1;
            let time = humantime::format_rfc3339_seconds(line.time).to_string();
            let queue = line
                .queue
                .map_or_else(|| "all".to_owned(), |queue| queue.to_string());
            let mut values = line.values.iter();
            self.cells(&mut text, &time, &queue, |_| match values.next() {
                Some(Some(value)) => format!("{value:.0}"),
                _ => "-".to_owned(),
            });
        }
        text
    }

    /// One row: the time, the queue (when per queue), then a cell per column.
    fn cells(
        &self,
        text: &mut String,
        time: &str,
        queue: &str,
        mut cell: impl FnMut(&Column) -> String,
    ) {
        let _ = write!(text, "{time:<20}");
        if self.per_queue {
            let _ = write!(text, " {queue:>5}");
        }
        let mut group = Group::Rates;
        for column in &COLUMNS {
            if column.group != group {
                group = column.group;
                text.push_str(" |");
            }
            let width = column.header.len().max(8);
            let _ = write!(text, " {:>width$}", cell(column));
        }
        text.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn scrape(lines: &[(&str, f64)]) -> Scrape {
        Scrape(
            lines
                .iter()
                .map(|(series, value)| ((*series).to_owned(), *value))
                .collect(),
        )
    }

    fn column(header: &str) -> usize {
        COLUMNS
            .iter()
            .position(|column| column.header == header)
            .unwrap()
    }

    fn two_queues(syns: (f64, f64), depth: f64) -> Scrape {
        scrape(&[
            ("synwall_syn_received_total{queue=\"0\"}", syns.0),
            ("synwall_syn_received_total{queue=\"1\"}", syns.1),
            ("synwall_syn_queue_capacity{queue=\"0\"}", 64.0),
            ("synwall_syn_queue_capacity{queue=\"1\"}", 64.0),
            ("synwall_syn_queue_depth{queue=\"1\"}", depth),
            (
                "synwall_synacks_sent_total{queue=\"0\",kind=\"cookie\"}",
                syns.0,
            ),
            (
                "synwall_synacks_sent_total{queue=\"0\",kind=\"queued\"}",
                1.0,
            ),
            (
                "synwall_xdp_frames_total{verdict=\"dropped_no_socket\"}",
                syns.1,
            ),
            ("synwall_xdp_frames_total{verdict=\"passed\"}", 1e6),
        ])
    }

    #[test]
    fn test_every_column_reads_series_the_endpoint_serves() {
        use crate::metrics::{Instance, ReloadStatus, SecretSource, Serving, render};
        use crate::proxy::ProxyCounters;
        use crate::server::{QueueStats, ServerStats};
        let stats = ServerStats {
            queues: vec![QueueStats::default()],
            ..ServerStats::default()
        };
        let instance = Instance {
            secret: SecretSource::Random,
            reload: ReloadStatus::new(UNIX_EPOCH),
            serving: Serving {
                interface: "lo".to_owned(),
                served: vec!["198.18.0.1:80".parse().unwrap()],
            },
        };
        let served = Scrape::parse(&render(&stats, &ProxyCounters::default(), &instance));
        for column in &COLUMNS {
            let (Figure::Rate(sources) | Figure::Now(sources)) = &column.figure;
            for source in *sources {
                let found = served.0.keys().any(|series| {
                    super::super::endpoint::parse_series(series).is_some_and(|(family, labels)| {
                        family == source.family
                            && labels.iter().any(|(name, _)| *name == "queue") == column.per_queue
                            && source.label.is_none_or(|(name, value)| {
                                labels
                                    .iter()
                                    .any(|(n, v)| (*n, v.as_str()) == (name, value))
                            })
                    })
                });
                assert!(found, "{}: no series {}", column.header, source.family);
            }
        }
    }

    #[test]
    fn test_rates_use_the_measured_interval() {
        let before = two_queues((100.0, 0.0), 0.0);
        let now = two_queues((400.0, 50.0), 7.0);
        let [line] = &lines(
            &before,
            &now,
            Duration::from_millis(1500),
            UNIX_EPOCH,
            false,
        )[..] else {
            panic!("one line without --per-queue");
        };
        assert_eq!(line.queue, None);
        assert_eq!(line.values[column("SYN/s")], Some(350.0 / 1.5));
        assert_eq!(line.values[column("cookie/s")], Some(300.0 / 1.5));
        assert_eq!(line.values[column("nosock/s")], Some(50.0 / 1.5));
        assert_eq!(
            line.values[column("synq")],
            Some(7.0),
            "a gauge, not a rate"
        );
    }

    #[test]
    fn test_per_queue_lines_come_before_the_servers() {
        let before = two_queues((100.0, 0.0), 0.0);
        let now = two_queues((400.0, 50.0), 7.0);
        let lines = lines(&before, &now, Duration::from_secs(1), UNIX_EPOCH, true);
        let queues: Vec<Option<u32>> = lines.iter().map(|line| line.queue).collect();
        assert_eq!(queues, [Some(0), Some(1), None]);
        assert_eq!(lines[1].values[column("SYN/s")], Some(50.0));
        assert_eq!(lines[1].values[column("synq")], Some(7.0));
        assert_eq!(lines[0].values[column("nosock/s")], None, "server-wide");
        assert_eq!(lines[2].values[column("nosock/s")], Some(50.0));
    }

    #[test]
    fn test_a_restarted_synwall_counts_from_zero() {
        let before = two_queues((1000.0, 0.0), 0.0);
        let now = two_queues((30.0, 0.0), 0.0);
        let line = &lines(&before, &now, Duration::from_secs(1), UNIX_EPOCH, false)[0];
        assert_eq!(line.values[column("SYN/s")], Some(30.0));
    }

    #[test]
    fn test_header_repeats_every_twenty_rows() {
        let scrape = two_queues((0.0, 0.0), 0.0);
        let mut table = Table::new(false);
        let mut text = String::new();
        for _ in 0..45 {
            text += &table.write(&lines(
                &scrape,
                &scrape,
                Duration::from_secs(1),
                UNIX_EPOCH,
                false,
            ));
        }
        let headers: Vec<usize> = text
            .lines()
            .enumerate()
            .filter(|(_, line)| line.starts_with("time (UTC)"))
            .map(|(number, _)| number)
            .collect();
        assert_eq!(headers, [0, 21, 42]);
        let row = text.lines().nth(1).unwrap();
        assert!(row.starts_with("1970-01-01T00:00:00Z"), "{row}");
        let header = text.lines().next().unwrap();
        assert_eq!(row.len(), header.len(), "columns line up:\n{header}\n{row}");
        assert_eq!(header.matches(" |").count(), 2, "{header}");
    }

    #[test]
    fn test_json_lines_carry_time_queue_and_figures() {
        let before = two_queues((100.0, 0.0), 0.0);
        let now = two_queues((400.0, 50.0), 7.0);
        let lines = lines(&before, &now, Duration::from_millis(500), UNIX_EPOCH, true);
        let queue: serde_json::Value = serde_json::from_str(&lines[0].json()).unwrap();
        assert_eq!(queue["queue"], 0);
        assert_eq!(queue["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(queue["interval_seconds"], 0.5);
        assert_eq!(queue["syns_per_second"], 600.0);
        assert!(queue.get("dropped_no_socket_per_second").is_none());
        let server: serde_json::Value = serde_json::from_str(&lines[2].json()).unwrap();
        assert_eq!(server["queue"], "all");
        assert_eq!(server["dropped_no_socket_per_second"], 100.0);
        assert_eq!(server["syn_queue"], 7.0);
    }
}
