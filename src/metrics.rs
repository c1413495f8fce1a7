//! Prometheus metrics: everything synwall counts, as the text exposition format (version
//! 0.0.4), served on `GET /metrics` (default 127.0.0.1 only), and read back by `synwall stats`
//! ([`view`]).
//!
//! Contract: every family [`render`] writes is listed in `deploy/METRICS.md` with its type,
//! labels and meaning, and nothing else is listed there (`tests/metrics.rs` checks both ways
//! and runs `promtool check metrics`). Names follow Prometheus practice: the unit is the suffix
//! (`_seconds`, `_bytes`, and `_total` on every counter), kinds of one thing are one family
//! with a label (`synwall_synacks_sent_total{kind="cookie"}`), constant facts are `_info`
//! series of value 1, and the `process_*` series are those of the official client libraries.
//!
//! Labels are bounded by configuration: `queue` (one per rx queue served; the listener's
//! figures and the AF_XDP socket's are per queue, sum them with `sum without (queue)`), the
//! served `address`es and the `interface`, and fixed sets of kinds and reasons. No label value
//! is ever taken from a packet, so an attacker choosing addresses cannot grow the exposition.

pub mod names;
mod process;
pub mod view;

use std::collections::{BTreeSet, HashMap};
use std::fmt::{Display, Write as _};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::counters::{Counter, Gauge};
use crate::handoff::HandoffFailure;
use crate::histogram::BOUNDS;
use crate::proxy::ProxyCounters;
use crate::server::{QueueStats, ServerStats};
use crate::sys::{SteerCounters, XskStatistics, channels};
use names::{CounterNames, gauge_series};

/// Where the cookie secret of a running synwall came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `secret-file`: shared by a fleet, kept across restarts.
    File,
    /// Drawn at start: cookies of another replica, or of this one before a restart, fail.
    Random,
}

impl SecretSource {
    /// The label value of `synwall_secret_info`.
    pub fn name(self) -> &'static str {
        match self {
            SecretSource::File => "file",
            SecretSource::Random => "random",
        }
    }
}

/// How the last configuration reload (SIGHUP) went. Written by the thread that reloads, read
/// by the metrics endpoint.
#[derive(Debug)]
pub struct ReloadStatus {
    successful: AtomicBool,
    /// Milliseconds since the Unix epoch.
    attempted_at: AtomicU64,
    succeeded_at: AtomicU64,
}

impl ReloadStatus {
    /// The configuration was loaded, successfully, at `loaded_at` (the start).
    pub fn new(loaded_at: SystemTime) -> ReloadStatus {
        let at = unix_millis(loaded_at);
        ReloadStatus {
            successful: AtomicBool::new(true),
            attempted_at: AtomicU64::new(at),
            succeeded_at: AtomicU64::new(at),
        }
    }

    /// Records a reload attempted at `at`.
    pub fn record(&self, at: SystemTime, successful: bool) {
        let at = unix_millis(at);
        self.attempted_at.store(at, Ordering::Relaxed);
        if successful {
            self.succeeded_at.store(at, Ordering::Relaxed);
        }
        self.successful.store(successful, Ordering::Relaxed);
    }

    /// Whether the last reload applied its configuration.
    pub fn successful(&self) -> bool {
        self.successful.load(Ordering::Relaxed)
    }
}

fn unix_millis(at: SystemTime) -> u64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch, from milliseconds, as Prometheus timestamps are written.
fn seconds(millis: &AtomicU64) -> f64 {
    millis.load(Ordering::Relaxed) as f64 / 1000.0
}

/// What the exposition tells about the running instance besides the server's figures.
#[derive(Debug)]
pub struct Instance {
    pub secret: SecretSource,
    pub reload: ReloadStatus,
    pub serving: Serving,
}

/// Where the instance serves, fixed at start.
#[derive(Debug, Clone)]
pub struct Serving {
    /// The interface the steering program is attached to.
    pub interface: String,
    /// The served addresses and ports.
    pub served: Vec<SocketAddr>,
}

/// A family of one figure per rx queue: name, help, and the figure of a queue's statistics.
type QueueFamily<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The AF_XDP ring statistics, one family each.
const XSK_FAMILIES: [QueueFamily<XskStatistics>; 5] = [
    (
        "synwall_xsk_rx_dropped_total",
        "AF_XDP: received frames the kernel dropped for other reasons than a full rx ring.",
        |xsk| xsk.rx_dropped,
    ),
    (
        "synwall_xsk_rx_ring_full_total",
        "AF_XDP: received frames the kernel dropped because the rx ring was full.",
        |xsk| xsk.rx_ring_full,
    ),
    (
        "synwall_xsk_fill_ring_empty_total",
        "AF_XDP: times the kernel found the fill ring empty.",
        |xsk| xsk.rx_fill_ring_empty,
    ),
    (
        "synwall_xsk_tx_invalid_total",
        "AF_XDP: invalid transmit descriptors.",
        |xsk| xsk.tx_invalid,
    ),
    (
        "synwall_xsk_tx_ring_empty_total",
        "AF_XDP: times the kernel found the tx ring empty.",
        |xsk| xsk.tx_ring_empty,
    ),
];

/// The exposition of a server's figures, its proxy's and the instance's.
pub fn render(stats: &ServerStats, proxy: &ProxyCounters, instance: &Instance) -> String {
    let mut out = Exposition::default();
    render_queues(&mut out, &stats.queues);
    render_server(&mut out, stats);
    render_proxy(&mut out, proxy);
    render_instance(&mut out, instance);
    if let Ok(process) = process::ProcessStats::read() {
        process.render(&mut out);
    }
    out.0
}

/// The per-queue families: listener counters and gauges, SYN-queue capacity, AF_XDP rings.
fn render_queues(out: &mut Exposition, queues: &[QueueStats]) {
    let mut families: Vec<&str> = Vec::new();
    for counter in Counter::ALL {
        if !families.contains(&counter.family()) {
            families.push(counter.family());
        }
    }
    for family in families {
        let members: Vec<Counter> = Counter::ALL
            .iter()
            .copied()
            .filter(|counter| counter.family() == family)
            .collect();
        out.describe(family, "counter", members[0].family_help());
        for queue in queues {
            for &counter in &members {
                let labels = [queue_label(queue), counter.labels().to_owned()];
                out.sample(family, &labels, queue.listener.get(counter));
            }
        }
    }
    for &gauge in Gauge::ALL {
        out.per_queue(
            gauge_series(gauge),
            "gauge",
            gauge.help(),
            queues,
            |queue| queue.listener.gauge(gauge),
        );
    }
    out.per_queue(
        "synwall_syn_queue_capacity",
        "gauge",
        "SYN-queue entries at most (max-syn-backlog).",
        queues,
        |queue| queue.syn_queue_capacity as u64,
    );
    out.per_queue(
        "synwall_xsk_zero_copy",
        "gauge",
        "1 when the queue's AF_XDP socket works in zero-copy mode, 0 in copy mode.",
        queues,
        |queue| u64::from(queue.zero_copy),
    );
    for (family, help, field) in XSK_FAMILIES {
        out.per_queue(family, "counter", help, queues, |queue| field(&queue.xsk));
    }
}

/// The families of the whole server: steering verdicts, accept queue, handoffs.
fn render_server(out: &mut Exposition, stats: &ServerStats) {
    let xdp = "synwall_xdp_frames_total";
    out.describe(
        xdp,
        "counter",
        "Frames the XDP program saw, by verdict: passed (not for a served port), redirected \
         (to synwall), kernel_owned (a kernel socket owns the connection), dropped_no_socket \
         (for a served port, on an rx queue without an AF_XDP socket).",
    );
    // Every field, by name: a new verdict of the program does not go unexported.
    let SteerCounters {
        passed,
        redirected,
        kernel_owned,
        dropped_no_xsk,
    } = stats.steering;
    for (verdict, value) in [
        ("passed", passed),
        ("redirected", redirected),
        ("kernel_owned", kernel_owned),
        ("dropped_no_socket", dropped_no_xsk),
    ] {
        out.sample(xdp, &[format!("verdict=\"{verdict}\"")], value);
    }
    for (family, kind, help, value) in [
        (
            "synwall_accept_queue_depth",
            "gauge",
            "Handshakes waiting for a handoff worker (repair mode).",
            stats.accept_queue_depth as u64,
        ),
        (
            "synwall_accept_queue_capacity",
            "gauge",
            "Handshakes that may wait for a handoff worker, at most (backlog).",
            stats.accept_queue_capacity as u64,
        ),
        (
            "synwall_ready_queue_depth",
            "gauge",
            "Established connections waiting for the application or the proxy.",
            stats.ready_depth as u64,
        ),
        (
            "synwall_handoffs_total",
            "counter",
            "Completed handshakes the kernel took as sockets.",
            stats.handoffs_completed,
        ),
    ] {
        out.single(family, kind, help, value);
    }
    let failures = "synwall_handoff_failures_total";
    out.describe(
        failures,
        "counter",
        "Handoffs that failed, by reason (and errno for refused); each peer was reset.",
    );
    for (failure, count) in HandoffFailure::ALL.iter().zip(stats.handoff_failures) {
        let labels = failure
            .series()
            .split_once('{')
            .map_or("", |(_, labels)| labels.trim_end_matches('}'));
        out.sample(failures, &[labels.to_owned()], count);
    }
    out.describe(
        "synwall_handoff_info",
        "gauge",
        "How completed handshakes are handed to the kernel: native or repair (always 1).",
    );
    out.sample(
        "synwall_handoff_info",
        &[format!("mode=\"{}\"", stats.handoff.name())],
        1,
    );
    let histogram = &stats.handshake_duration;
    let name = "synwall_handshake_duration_seconds";
    out.describe(
        name,
        "histogram",
        "From SYN to final ACK, for handshakes completed from the SYN queue.",
    );
    let bucket = format!("{name}_bucket");
    for (bound, count) in BOUNDS.iter().zip(histogram.cumulative) {
        out.sample(&bucket, &[format!("le=\"{bound}\"")], count);
    }
    out.sample(&bucket, &["le=\"+Inf\"".to_owned()], histogram.count);
    out.sample(&format!("{name}_sum"), &NO_LABELS, histogram.sum_seconds);
    out.sample(&format!("{name}_count"), &NO_LABELS, histogram.count);
}

/// The proxy of repair mode (zero in native mode).
fn render_proxy(out: &mut Exposition, proxy: &ProxyCounters) {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    for (family, kind, help, value) in [
        (
            "synwall_proxied_connections_total",
            "counter",
            "Connections joined to the upstream.",
            load(&proxy.proxied),
        ),
        (
            "synwall_proxy_upstream_failures_total",
            "counter",
            "Clients reset because the upstream could not be reached.",
            load(&proxy.upstream_failures),
        ),
        (
            "synwall_proxy_active_connections",
            "gauge",
            "Connections being proxied now (connecting to the upstream included).",
            proxy.active.load(Ordering::Relaxed) as u64,
        ),
    ] {
        out.single(family, kind, help, value);
    }
    let bytes = "synwall_proxy_bytes_total";
    out.describe(
        bytes,
        "counter",
        "Bytes proxied, by direction: to_upstream (from clients, PROXY protocol headers \
         included) or to_client.",
    );
    for (direction, value) in [
        ("to_upstream", load(&proxy.bytes_to_upstream)),
        ("to_client", load(&proxy.bytes_to_clients)),
    ] {
        out.sample(bytes, &[format!("direction=\"{direction}\"")], value);
    }
}

/// The build, what is served, the secret's source and the last reload.
fn render_instance(out: &mut Exposition, instance: &Instance) {
    let Serving { interface, served } = &instance.serving;
    let info = "synwall_served_info";
    out.describe(
        info,
        "gauge",
        "An address and port served, one series each (always 1).",
    );
    for address in served {
        out.sample(info, &[label("address", &address.to_string())], 1);
    }
    // Read at each scrape: queues added with `ethtool -L` after the start show as unserved.
    if let Ok(rx_queues) = channels::rx_queue_count(interface) {
        let family = "synwall_interface_rx_queues";
        out.describe(
            family,
            "gauge",
            "The rx queues of the interface served, as its driver reports them now.",
        );
        out.sample(family, &[label("interface", interface)], rx_queues);
    }
    for (family, help, label) in [
        (
            "synwall_build_info",
            "The running build (always 1).",
            format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        ),
        (
            "synwall_secret_info",
            "Where the cookie secret came from: file (secret-file) or random (always 1).",
            format!("source=\"{}\"", instance.secret.name()),
        ),
    ] {
        out.describe(family, "gauge", help);
        out.sample(family, &[label], 1);
    }
    let reload = &instance.reload;
    out.single(
        "synwall_config_last_reload_successful",
        "gauge",
        "1 when the last configuration reload (or the start) applied the file, 0 when it was \
         refused.",
        u64::from(reload.successful()),
    );
    for (family, help, at) in [
        (
            "synwall_config_last_reload_attempt_timestamp_seconds",
            "When the configuration was last loaded or a reload attempted (Unix time).",
            &reload.attempted_at,
        ),
        (
            "synwall_config_last_reload_success_timestamp_seconds",
            "When the configuration was last applied (Unix time).",
            &reload.succeeded_at,
        ),
    ] {
        out.single(family, "gauge", help, seconds(at));
    }
}

/// The labels of a series that has none.
const NO_LABELS: [&str; 0] = [];

/// Text in the exposition format, written family by family.
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn describe(&mut self, family: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {family} {help}\n# TYPE {family} {kind}");
    }

    /// One sample; `labels` are `name="value"` pairs, empty ones skipped.
    fn sample<L: AsRef<str>>(&mut self, name: &str, labels: &[L], value: impl Display) {
        let labels: Vec<&str> = labels
            .iter()
            .map(AsRef::as_ref)
            .filter(|label| !label.is_empty())
            .collect();
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    /// A family of one unlabelled series.
    fn single(&mut self, family: &str, kind: &str, help: &str, value: impl Display) {
        self.describe(family, kind, help);
        self.sample(family, &NO_LABELS, value);
    }

    /// A family with one series per rx queue.
    fn per_queue(
        &mut self,
        family: &str,
        kind: &str,
        help: &str,
        queues: &[QueueStats],
        value: impl Fn(&QueueStats) -> u64,
    ) {
        self.describe(family, kind, help);
        for queue in queues {
            self.sample(family, &[queue_label(queue)], value(queue));
        }
    }
}

fn queue_label(queue: &QueueStats) -> String {
    format!("queue=\"{}\"", queue.queue)
}

/// `name="value"`, the value escaped as the exposition format requires.
fn label(name: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}=\"{escaped}\"")
}

/// The HTTP endpoint; stops when dropped.
pub struct MetricsServer {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Serves `GET /metrics` on `address` with what `render` returns at each request.
    pub fn spawn(
        address: SocketAddr,
        render: impl Fn() -> String + Send + 'static,
    ) -> io::Result<MetricsServer> {
        let server = tiny_http::Server::http(address).map_err(|error| {
            io::Error::other(format!(
                "the metrics endpoint cannot listen on {address}: {error}"
            ))
        })?;
        let address = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("the metrics endpoint has no IP address"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("synwall-metrics".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(100)) else {
                        continue;
                    };
                    let response = if request.url() == "/metrics" {
                        tiny_http::Response::from_string(render()).with_header(
                            "Content-Type: text/plain; version=0.0.4"
                                .parse::<tiny_http::Header>()
                                .expect("a valid header"),
                        )
                    } else {
                        tiny_http::Response::from_string("see /metrics\n").with_status_code(404)
                    };
                    let _ = request.respond(response);
                }
            })?;
        Ok(MetricsServer {
            address,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens (the port is known once bound, also for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One scrape: every sample by series (`name{labels}`), as `synwall stats` reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape(pub HashMap<String, f64>);

impl Scrape {
    /// Fetches `http://address/metrics`.
    pub fn fetch(address: SocketAddr) -> io::Result<Scrape> {
        Ok(Scrape::parse(&fetch_text(address)?))
    }

    /// Reads the text exposition format (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        Scrape(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// A series' value, 0 when absent.
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The sum of every series of a family (all label values).
    pub fn family(&self, family: &str) -> f64 {
        self.sum(family, &[])
    }

    /// The sum of the series of `family` that carry every label of `labels` (name, value).
    pub fn sum(&self, family: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                parse_series(series).is_some_and(|(name, found)| {
                    name == family
                        && labels
                            .iter()
                            .all(|wanted| found.iter().any(|(n, v)| (*n, v.as_str()) == *wanted))
                })
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// The values the label `label` takes in the series of `family`.
    pub fn label_values(&self, family: &str, label: &str) -> BTreeSet<String> {
        self.0
            .keys()
            .filter_map(|series| parse_series(series))
            .filter(|(name, _)| *name == family)
            .flat_map(|(_, labels)| labels)
            .filter(|(name, _)| *name == label)
            .map(|(_, value)| value)
            .collect()
    }
}

/// The body of `GET /metrics` at `address` (HTTP/1.0, a 200 answer).
pub fn fetch_text(address: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: synwall\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("not an HTTP response"))?;
    let status = head.lines().next().unwrap_or("");
    let ok = status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200");
    if !ok {
        return Err(io::Error::other(format!("the endpoint answered {status}")));
    }
    Ok(body.to_owned())
}

/// A series' name and labels (`name{a="x",b="y"}`), label values unescaped; `None` when it is
/// not well formed.
fn parse_series(series: &str) -> Option<(&str, Vec<(&str, String)>)> {
    let Some((name, mut rest)) = series.split_once('{') else {
        return Some((series, Vec::new()));
    };
    rest = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    while !rest.is_empty() {
        let (label, quoted) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next()? {
                (at, '"') => break at,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((label, value));
        rest = &quoted[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Some((name, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;

    fn instance() -> Instance {
        Instance {
            secret: SecretSource::File,
            reload: ReloadStatus::new(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250)),
            serving: Serving {
                interface: "lo".to_owned(),
                served: vec![
                    "198.18.0.1:80".parse().unwrap(),
                    "[2001:db8::1]:443".parse().unwrap(),
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
            BTreeSet::from(["198.18.0.1:80".to_owned(), "[2001:db8::1]:443".to_owned()])
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
}
