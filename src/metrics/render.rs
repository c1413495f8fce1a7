//! The text exposition: every family [`render`] writes, with its type and help, one sample
//! per queue where the figure is per queue.

use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use super::names::{CounterNames, gauge_series};
use super::{Instance, Serving, process, seconds};
use crate::counters::{Counter, Gauge};
use crate::handoff::HandoffFailure;
use crate::histogram::BOUNDS;
use crate::proxy::ProxyCounters;
use crate::server::{KernelCompletionStats, QueueStats, ServerStats};
use crate::sys::{SteerCounters, XskStatistics, channels};

/// A family of one figure per rx queue: name, help, and the figure of a queue's statistics.
type QueueFamily<T> = (&'static str, &'static str, fn(&T) -> u64);

/// The AF_XDP ring statistics, one family each.
pub(super) const XSK_FAMILIES: [QueueFamily<XskStatistics>; 5] = [
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
    render_steering(out, stats.steering);
    render_queues_and_handoffs(out, stats);
    render_handshake_duration(out, stats);
}

/// The XDP program's verdicts.
fn render_steering(out: &mut Exposition, steering: SteerCounters) {
    let xdp = "synwall_xdp_frames_total";
    out.describe(
        xdp,
        "counter",
        "Frames the XDP program saw, by verdict: passed (not for a served port), redirected \
         (to synwall), kernel_owned (a kernel socket owns the connection), kernel_completes (the \
         final ACK of a handshake the kernel completes itself, native mode), kernel_reopens (a SYN \
         over a TIME-WAIT socket's 4-tuple, which the port's listener takes: the service's in \
         native mode, synwall's own in repair mode with kernel-first), \
         kernel_answers (a SYN the port's listener answers, the service's in native mode or \
         synwall's own in repair mode, its SYN queue having room, answer-syns = kernel-first), \
         kernel_cookies (an ACK carrying a syncookie that listener sent, which the kernel \
         completes, answer-syns = kernel-first), \
         dropped_no_socket (for a served port, on an rx queue without an AF_XDP socket).",
    );
    // Every field, by name: a new verdict of the program does not go unexported.
    let SteerCounters {
        passed,
        redirected,
        kernel_owned,
        kernel_completes,
        kernel_reopens,
        kernel_answers,
        kernel_cookies,
        takeovers,
        dropped_no_xsk,
    } = steering;
    for (verdict, value) in [
        ("passed", passed),
        ("redirected", redirected),
        ("kernel_owned", kernel_owned),
        ("kernel_completes", kernel_completes),
        ("kernel_reopens", kernel_reopens),
        ("kernel_answers", kernel_answers),
        ("kernel_cookies", kernel_cookies),
        ("dropped_no_socket", dropped_no_xsk),
    ] {
        out.sample(xdp, &[format!("verdict=\"{verdict}\"")], value);
    }
    let takeover = "synwall_syn_takeovers_total";
    out.describe(
        takeover,
        "counter",
        "Times a CPU found the listener's SYN queue full and synwall took over answering the SYNs \
         that CPU receives, for at least 10 s (answer-syns = kernel-first).",
    );
    out.sample(takeover, &NO_LABELS, takeovers);
}

/// The accept and ready queues, and the handoffs: how many, how they failed, in which mode.
fn render_queues_and_handoffs(out: &mut Exposition, stats: &ServerStats) {
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
        (
            "synwall_own_listener_accepted_total",
            "counter",
            "Repair mode, answer-syns = kernel-first: connections whose handshake the kernel \
             completed on synwall's own listening socket (no flood), accepted and given to the \
             application or the proxy.",
            stats.own_listener_accepted,
        ),
        (
            "synwall_own_listener_accept_errors_total",
            "counter",
            "Repair mode, answer-syns = kernel-first: accept() calls on synwall's own listening \
             socket that failed (a client that reset before it was accepted, or out of file \
             descriptors or memory).",
            stats.own_listener_errors,
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
    let kernel = "synwall_kernel_completion_errors_total";
    out.describe(
        kernel,
        "counter",
        "Native mode: handshakes of the SYN queue the kernel did not complete itself, by kind; \
         none lost a client: refused (completed in user space instead), occupied (another \
         socket had the tuple), unrecorded (not recorded for the kernel: completed in user \
         space), lost_report (the kernel completed it, its report was lost: it stays queued \
         until it expires).",
    );
    let KernelCompletionStats {
        refused,
        occupied,
        unrecorded,
        lost_reports,
    } = stats.kernel_completion;
    for (kind, value) in [
        ("refused", refused),
        ("occupied", occupied),
        ("unrecorded", unrecorded),
        ("lost_report", lost_reports),
    ] {
        out.sample(kernel, &[format!("kind=\"{kind}\"")], value);
    }
    out.describe(
        "synwall_handoff_info",
        "gauge",
        "How completed handshakes are handed to the kernel: native or repair; who answers new \
         connections' SYNs: kernel-first or synwall (always 1).",
    );
    out.sample(
        "synwall_handoff_info",
        &[
            format!("mode=\"{}\"", stats.handoff.name()),
            format!("answer_syns=\"{}\"", stats.answer_syns.name()),
        ],
        1,
    );
}

/// How long handshakes completed from the SYN queue took.
fn render_handshake_duration(out: &mut Exposition, stats: &ServerStats) {
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
pub(super) struct Exposition(String);

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
    pub(super) fn single(&mut self, family: &str, kind: &str, help: &str, value: impl Display) {
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
pub(super) fn label(name: &str, value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{name}=\"{escaped}\"")
}
