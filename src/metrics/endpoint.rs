//! The HTTP endpoint (`GET /metrics`, tiny_http) and its client side: [`fetch_text`] and
//! [`Scrape`], which `synwall stats` and the tests read a running synwall with.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The HTTP endpoint; stops when dropped (which unblocks its thread at once).
pub struct MetricsServer {
    address: SocketAddr,
    server: Arc<tiny_http::Server>,
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
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = thread::Builder::new()
            .name("synwall-metrics".to_owned())
            .spawn(move || {
                // Ends when dropping the MetricsServer unblocks the server.
                for request in serving.incoming_requests() {
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
            server,
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
        self.server.unblock();
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
pub(super) fn parse_series(series: &str) -> Option<(&str, Vec<(&str, String)>)> {
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
