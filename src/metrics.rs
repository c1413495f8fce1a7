//! Prometheus metrics: everything synwall counts, as the text exposition format, served on
//! `GET /metrics` (default 127.0.0.1 only), and read back by `synwall stats`.
//!
//! Series are aggregates: no per-source labels, so an attacker choosing addresses cannot grow
//! them. Families: the listener counters and gauges ([`crate::counters`]), the accept queue,
//! handoffs and their duration histogram, AF_XDP ring statistics, the XDP program's verdicts,
//! the proxy, and `synwall_build_info`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::counters::{Counter, Gauge};
use crate::handoff::HandoffFailure;
use crate::histogram::BOUNDS;
use crate::proxy::ProxyCounters;
use crate::server::ServerStats;

/// The exposition of `stats` and `proxy`.
pub fn render(stats: &ServerStats, proxy: &ProxyCounters) -> String {
    let mut out = Exposition::default();
    let mut seen_family = "";
    for &counter in Counter::ALL {
        if counter.family() != seen_family {
            seen_family = counter.family();
            out.describe(seen_family, "counter", counter.family_help());
        }
        out.sample(counter.series(), stats.listener.get(counter));
    }
    for &gauge in Gauge::ALL {
        out.describe(gauge.series(), "gauge", gauge.help());
        out.sample(gauge.series(), stats.listener.gauge(gauge));
    }
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let simple: [(&str, &str, &str, u64); 17] = [
        (
            "synwall_accept_queue_depth",
            "gauge",
            "Handshakes waiting for a handoff worker.",
            stats.accept_queue_depth as u64,
        ),
        (
            "synwall_ready_queue_depth",
            "gauge",
            "Established connections waiting for the proxy.",
            stats.ready_depth as u64,
        ),
        (
            "synwall_handoffs_total",
            "counter",
            "Kernel sockets built for completed handshakes.",
            stats.handoffs_completed,
        ),
        (
            "synwall_xsk_rx_dropped_total",
            "counter",
            "AF_XDP: frames dropped for other reasons.",
            stats.xsk.rx_dropped,
        ),
        (
            "synwall_xsk_rx_ring_full_total",
            "counter",
            "AF_XDP: frames dropped because the rx ring was full.",
            stats.xsk.rx_ring_full,
        ),
        (
            "synwall_xsk_fill_ring_empty_total",
            "counter",
            "AF_XDP: times the kernel found the fill ring empty.",
            stats.xsk.rx_fill_ring_empty,
        ),
        (
            "synwall_xsk_tx_invalid_total",
            "counter",
            "AF_XDP: invalid transmit descriptors.",
            stats.xsk.tx_invalid,
        ),
        (
            "synwall_xsk_tx_ring_empty_total",
            "counter",
            "AF_XDP: times the kernel found the tx ring empty.",
            stats.xsk.tx_ring_empty,
        ),
        (
            "synwall_xdp_passed_total",
            "counter",
            "XDP: frames not for a served port, left to the kernel.",
            stats.steering.passed,
        ),
        (
            "synwall_xdp_redirected_total",
            "counter",
            "XDP: frames redirected to synwall.",
            stats.steering.redirected,
        ),
        (
            "synwall_xdp_kernel_owned_total",
            "counter",
            "XDP: segments of connections the kernel owns, left to it.",
            stats.steering.kernel_owned,
        ),
        (
            "synwall_xdp_dropped_no_socket_total",
            "counter",
            "XDP: served frames dropped with no AF_XDP socket on their queue.",
            stats.steering.dropped_no_xsk,
        ),
        (
            "synwall_proxied_total",
            "counter",
            "Connections joined to the upstream.",
            load(&proxy.proxied),
        ),
        (
            "synwall_upstream_failures_total",
            "counter",
            "Clients reset because the upstream could not be reached.",
            load(&proxy.upstream_failures),
        ),
        (
            "synwall_proxy_connections",
            "gauge",
            "Connections being proxied now.",
            proxy.active.load(Ordering::Relaxed) as u64,
        ),
        (
            "synwall_proxy_bytes_to_upstream_total",
            "counter",
            "Bytes from clients to the upstream.",
            load(&proxy.bytes_to_upstream),
        ),
        (
            "synwall_proxy_bytes_to_clients_total",
            "counter",
            "Bytes from the upstream to clients.",
            load(&proxy.bytes_to_clients),
        ),
    ];
    for (name, kind, help, value) in simple {
        out.describe(name, kind, help);
        out.sample(name, value);
    }
    out.describe(
        "synwall_handoff_failures_total",
        "counter",
        "Handoffs that failed, by reason; each peer was reset.",
    );
    for (failure, count) in HandoffFailure::ALL.iter().zip(stats.handoff_failures) {
        out.sample(failure.series(), count);
    }
    out.describe(
        "synwall_handoff_mode",
        "gauge",
        "How connections are handed to the kernel: native or repair (always 1).",
    );
    out.sample(
        &format!("synwall_handoff_mode{{mode=\"{}\"}}", stats.handoff.name()),
        1,
    );
    let histogram = &stats.handshake_duration;
    let name = "synwall_handshake_duration_seconds";
    out.describe(
        name,
        "histogram",
        "From SYN to final ACK, for handshakes completed from the SYN queue.",
    );
    for (bound, count) in BOUNDS.iter().zip(histogram.cumulative) {
        out.sample(&format!("{name}_bucket{{le=\"{bound}\"}}"), count);
    }
    out.sample(&format!("{name}_bucket{{le=\"+Inf\"}}"), histogram.count);
    let _ = writeln!(out.0, "{name}_sum {}", histogram.sum_seconds);
    out.sample(&format!("{name}_count"), histogram.count);
    out.describe("synwall_build_info", "gauge", "The running build.");
    out.sample(
        &format!(
            "synwall_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        1,
    );
    out.0
}

#[derive(Default)]
struct Exposition(String);

impl Exposition {
    fn describe(&mut self, family: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {family} {help}\n# TYPE {family} {kind}");
    }

    fn sample(&mut self, series: &str, value: u64) {
        let _ = writeln!(self.0, "{series} {value}");
    }
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
        Ok(Scrape::parse(body))
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
        self.0
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(family))
            .map(|(_, value)| value)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exposition_is_well_formed_and_reads_back() {
        let mut stats = ServerStats {
            handoffs_completed: 7,
            ..ServerStats::default()
        };
        stats.handoff_failures[1] = 3;
        let proxy = ProxyCounters::default();
        let text = render(&stats, &proxy);
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
                let family = series.split('{').next().unwrap();
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
            scrape.get(HandoffFailure::NoListener.series()),
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
        assert!(
            scrape
                .0
                .contains_key("synwall_accepted_total{path=\"cookie\"}")
        );
        assert_eq!(scrape.family("synwall_accepted_total"), 0.0);
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
