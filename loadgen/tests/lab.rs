//! loadgen against real receivers in the two-namespace lab: the frames it sends over IPv4 and
//! IPv6 (tshark and synwall's parser on a capture) and the replies they get, its bounds
//! (packets, duration), its rate control, near-miss ACKs against synwall's listener, legit
//! clients against a kernel server, and its errors.
//!
//! Every test skips without root outside CI (`require_privileges`); all traffic stays on the
//! lab's veth pair in 198.18.0.0/15 and 2001:2::/48, and every run is bounded in packets and
//! seconds.

mod support;

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use loadgen::lab::service::REPLY_MARK;
use loadgen::lab::{SPOOFED_SOURCES, SPOOFED_SOURCES_V6};
use loadgen::report::{Backend, Record, StopReason};
use pcap_file::pcap::PcapReader;
use support::{Lab, require_tool, server_v4, server_v6};
use synwall::accept_queue::{AcceptQueue, Pop};
use synwall::cookie::keys::{KeyRing, Secret};
use synwall::counters::Counter;
use synwall::device::FrameIo;
use synwall::listener::{Listener, ListenerConfig, SyncookiesMode};
use synwall::shard::Shard;
use synwall::sys::{SteeringProgram, XdpDevice, XdpDeviceConfig, XdpMode};
use synwall::wire::{self, Endpoints, Parsed, TcpFlags};

const LIMIT: Duration = Duration::from_secs(30);

/// TCP options of the three SYN layouts announcing `mss` (4 hex digits), with the 8 bytes of
/// timestamps as `..`: Linux, Windows, macOS.
fn syn_layouts(mss: &str) -> [String; 3] {
    [
        format!("0204{mss}0402080a................01030307"),
        format!("0204{mss}0103030801010402"),
        format!("0204{mss}010303060101080a................04020000"),
    ]
}

fn matches_layout(options: &str, layout: &str) -> bool {
    options.len() == layout.len()
        && options
            .chars()
            .zip(layout.chars())
            .all(|(have, want)| want == '.' || have == want)
}

/// Captures what loadgen sends to `target` (port 80) over `tx`, a mix with near-miss ACKs,
/// and checks it in tshark and in synwall's parser. A listener must answer the SYNs: the
/// near-miss ACKs are made from its SYN-ACKs.
fn check_frames(lab: &Lab, target: SocketAddr, tx: &str, packets: usize) {
    let (sources, mss, ip_checksum) = match target {
        SocketAddr::V4(_) => (SPOOFED_SOURCES, "05b4", "ip.checksum.status == 1 && "),
        SocketAddr::V6(_) => (SPOOFED_SOURCES_V6, "05a0", ""),
    };
    let capture_file = tempfile::Builder::new().suffix(".pcap").tempfile().unwrap();
    let path = capture_file.path();
    capture_a_run(lab, (target, sources), tx, packets, path);
    check_in_tshark(path, packets, mss, ip_checksum);
    check_in_synwalls_parser(path, target);
}

/// Runs loadgen against `target` from `sources` over `tx` for `packets` packets, the near-miss
/// mix at 2000 packets per second, capturing what it sends into `path`; the SYNs were
/// answered.
fn capture_a_run(
    lab: &Lab,
    (target, sources): (SocketAddr, &str),
    tx: &str,
    packets: usize,
    path: &Path,
) {
    let filter = format!("tcp dst port 80 and src net {sources}");
    let mut dumpcap = lab.capture(&filter, packets, 15, path);
    let run = lab.loadgen(
        target,
        &[
            "--tx",
            tx,
            "--mix",
            "syn=3,ack=1,near-miss=1,rst=1,fin=1",
            "--rate",
            "2000",
            "--packets",
            &packets.to_string(),
        ],
        LIMIT,
    );
    let summary = run.summary();
    assert_eq!(summary.sent_total, packets as u64);
    assert_eq!(summary.src_cidr, sources);
    // The SYNs were answered: SYN-ACKs came back to spoofed sources, and near-miss ACKs were
    // made from them.
    assert!(summary.replies.unwrap().syn_ack > 0, "{summary:?}");
    assert!(summary.sent.near_miss > 0, "{summary:?}");
    assert!(dumpcap.wait().unwrap().success());
}

/// The `fields` of the frames of the capture at `path` that match the display `filter`, as
/// tshark prints them, checking IP and TCP checksums.
fn tshark(path: &Path, filter: &str, fields: &[&str]) -> String {
    let mut args = vec![
        "tshark",
        "-r",
        path.to_str().unwrap(),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "tcp.analyze_sequence_numbers:FALSE",
        "-Y",
        filter,
        "-T",
        "fields",
    ];
    for field in fields {
        args.extend(["-e", field]);
    }
    loadgen::lab::run(&args).unwrap()
}

/// tshark on the capture at `path`: `packets` frames, every one TCP with good IP (`ip_checksum`
/// for IPv4) and TCP checksums, none malformed, no error; the SYNs carry the three stacks'
/// option layouts with the family's `mss`.
fn check_in_tshark(path: &Path, packets: usize, mss: &str, ip_checksum: &str) {
    let all = tshark(path, "frame", &["frame.number"]);
    assert_eq!(all.lines().count(), packets, "frames captured");
    let good = tshark(
        path,
        &format!("tcp && {ip_checksum}tcp.checksum.status == 1"),
        &["frame.number"],
    );
    assert_eq!(good.lines().count(), packets, "frames with good checksums");
    let bad = tshark(
        path,
        "_ws.malformed || _ws.expert.severity >= 8388608 || _ws.expert.group == 0x01000000 \
         || _ws.expert.group == 0x07000000",
        &["frame.number", "_ws.expert.message"],
    );
    assert_eq!(bad, "", "malformed, checksum or error expert info");
    // The SYNs carry exactly the three stacks' option layouts, each of them, with the MSS of
    // the family.
    let syn_options = tshark(path, "tcp.flags == 0x002", &["tcp.options"]);
    let layouts = syn_layouts(mss);
    let mut seen = [0; 3];
    for options in syn_options.lines() {
        let stack = layouts
            .iter()
            .position(|layout| matches_layout(options, layout))
            .unwrap_or_else(|| panic!("unexpected SYN options {options}"));
        seen[stack] += 1;
    }
    assert!(seen.iter().all(|n| *n > 0), "SYN layouts seen: {seen:?}");
}

/// synwall's parser on the capture at `path`: every frame a TCP segment to `target`,
/// checksums verified, with SYN, ACK, RST and FIN+ACK among them.
fn check_in_synwalls_parser(path: &Path, target: SocketAddr) {
    let served = Endpoints::new([target]);
    let mut reader = PcapReader::new(File::open(path).unwrap()).unwrap();
    let mut flags_seen = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.unwrap();
        match wire::parse(&packet.data, &served) {
            Parsed::Ours(repr) => {
                if !flags_seen.contains(&repr.flags) {
                    flags_seen.push(repr.flags);
                }
            }
            other => panic!("not a valid segment to the target: {other:?}"),
        }
    }
    for flags in [
        TcpFlags::SYN,
        TcpFlags::ACK,
        TcpFlags::RST,
        TcpFlags::FIN | TcpFlags::ACK,
    ] {
        assert!(flags_seen.contains(&flags), "{flags:?} in {flags_seen:?}");
    }
}

#[test]
fn test_frames_are_valid_tcp_over_afxdp_and_af_packet() {
    let Some(lab) = Lab::new("lgf") else {
        return;
    };
    if !require_tool("tshark") || !require_tool("dumpcap") {
        return;
    }
    // A kernel listener answers SYNs with SYN-ACKs, which near-miss ACKs are made from.
    let _listener = lab.listen(server_v4(80));
    check_frames(&lab, server_v4(80), "afxdp", 700);
    check_frames(&lab, server_v4(80), "packet", 700);
}

#[test]
fn test_ipv6_flood_is_valid_tcp_and_answered_by_the_kernel() {
    let Some(lab) = Lab::new("lg6") else {
        return;
    };
    if !require_tool("tshark") || !require_tool("dumpcap") {
        return;
    }
    // The server's kernel answers the spoofed IPv6 SYNs, through the route of the spoofed
    // range via the client, to the sniffer on the client's veth.
    let _listener = lab.listen(server_v6(80));
    check_frames(&lab, server_v6(80), "afxdp", 700);
    check_frames(&lab, server_v6(80), "packet", 700);
}

#[test]
fn test_run_stops_at_its_packet_count() {
    let Some(lab) = Lab::new("lgp") else {
        return;
    };
    let before = lab.server_rx_packets();
    let run = lab.loadgen(
        server_v4(80),
        &["--rate", "20k", "--packets", "12345", "--duration", "20s"],
        LIMIT,
    );
    let received = lab.server_rx_packets() - before;
    let summary = run.summary();
    assert_eq!(summary.stop_reason, StopReason::Packets);
    assert_eq!(summary.sent_total, 12345);
    assert_eq!(summary.sent.syn, 12345);
    // 0.62 s at 20k/s; a bound that holds on a loaded machine, far below the 20 s duration.
    assert!(summary.elapsed_s < 5.0, "{summary:?}");
    // Besides the flood: the neighbour probe and ARP.
    assert!((12345..12345 + 10).contains(&received), "{received}");
    let progress_total: u64 = run.progress().iter().map(|p| p.sent.total()).sum();
    assert_eq!(progress_total, 12345);
}

#[test]
fn test_run_stops_at_its_duration_and_leaves_no_xdp_program() {
    let Some(lab) = Lab::new("lgd") else {
        return;
    };
    let started = Instant::now();
    let mut running = lab.spawn_loadgen(
        server_v4(80),
        &["--tx", "afxdp", "--rate", "1000", "--duration", "2s"],
        LIMIT,
    );
    // While the AF_XDP socket is open, no XDP program is attached to the generator's
    // interface (XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD), so its kernel keeps ARP and replies.
    assert!(matches!(running.next_record(), Some(Record::Progress(_))));
    let link = lab.in_client(&[
        "ip",
        "-details",
        "link",
        "show",
        "dev",
        &lab.topology.client_if,
    ]);
    assert!(!link.contains("xdp"), "{link}");
    let run = running.finish();
    let wall = started.elapsed();
    let summary = run.summary();
    assert_eq!(summary.stop_reason, StopReason::Duration);
    assert_eq!(summary.tx, Backend::Afxdp);
    // It lasts its duration and never sends more than the rate allows in it; how close to the
    // rate it gets depends on the machine's load (loadgen/tests/measure.rs measures that).
    assert!(summary.elapsed_s >= 1.95, "{summary:?}");
    assert!((1..=2000).contains(&summary.sent_total), "{summary:?}");
    assert!(wall < LIMIT, "{wall:?}");
}

#[test]
fn test_rate_is_never_exceeded_and_what_is_sent_arrives() {
    let Some(lab) = Lab::new("lgr") else {
        return;
    };
    const RATE: f64 = 50_000.0;
    let received_before = lab.server_rx_packets();
    let running = lab.spawn_loadgen(
        server_v4(80),
        &["--rate", "50k", "--duration", "4s", "--cpus", "0"],
        LIMIT,
    );
    let run = running.finish();
    let summary = run.summary();
    // What was sent arrived (the veth and the server's kernel keep up with 50k/s). Counted
    // over the whole run, not over a window timed by this thread, which a busy machine delays.
    let received = lab.server_rx_packets() - received_before;
    assert!(summary.sent_total > 0, "{summary:?}");
    assert!(
        received as f64 >= 0.95 * summary.sent_total as f64,
        "received {received} of {} sent",
        summary.sent_total
    );
    // The pacing never sends faster than asked, on the whole or in any interval. How near the
    // rate it gets is a measurement (loadgen/tests/measure.rs), not a test: a loaded machine
    // falls short.
    let sent = summary.sent_total as f64 / summary.elapsed_s;
    assert!(sent <= 1.05 * RATE, "sent {sent:.0}/s");
    for progress in run.progress() {
        assert!(progress.pps as f64 <= 1.05 * RATE, "{progress:?}");
    }
}

/// A synwall listener (cookies always) serving `served` on the server's veth until `stop`;
/// returns how many handshakes it accepted and how many cookie ACKs it found invalid.
fn synwall_server(
    lab: &Lab,
    served: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(u64, u64)> {
    let ifname = lab.topology.server_if.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn({
        let ns = lab.topology.server_ns.clone();
        move || {
            synwall::sys::netns::enter(&ns).unwrap();
            let program = SteeringProgram::attach(&ifname, XdpMode::Generic, &[served]).unwrap();
            let device = XdpDevice::open(&ifname, 0, XdpDeviceConfig::default()).unwrap();
            program.register(&device).unwrap();
            let unix = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let config = ListenerConfig {
                served: Endpoints::new([served]),
                syncookies: SyncookiesMode::Always,
                ..ListenerConfig::default()
            };
            let keys = KeyRing::new(Secret::random().unwrap(), Duration::from_secs(64), unix());
            let listener = Listener::new(config, keys, Instant::now()).unwrap();
            let counters = listener.counters();
            let queue = AcceptQueue::new(1024);
            let accepted = queue.receiver();
            let injector = synwall::sys::inject::RawInjector::new().unwrap();
            let mut shard = Shard::new(listener, device, injector, queue.sender(64), 64);
            ready_tx.send(()).unwrap();
            while !stop.load(Ordering::Relaxed) {
                shard.poll(Instant::now(), unix()).unwrap();
                let _ = shard.device_mut().wait(Duration::from_millis(5));
            }
            let mut handshakes = 0;
            while let Pop::Handshake(_) = accepted.pop(Duration::ZERO) {
                handshakes += 1;
            }
            (handshakes, counters.get(Counter::CookieAcksInvalid))
        }
    });
    ready_rx.recv().expect("the synwall server started");
    handle
}

#[test]
fn test_near_miss_acks_are_all_rejected_by_synwall() {
    let Some(lab) = Lab::new("lgn") else {
        return;
    };
    for served in [server_v4(80), server_v6(80)] {
        let stop = Arc::new(AtomicBool::new(false));
        let server = synwall_server(&lab, served, Arc::clone(&stop));
        let run = lab.loadgen(
            served,
            &["--mode", "near-miss", "--rate", "4000", "--duration", "3s"],
            LIMIT,
        );
        stop.store(true, Ordering::Relaxed);
        let (accepted, invalid) = server.join().unwrap();
        let summary = run.summary();
        let replies = summary.replies.unwrap();
        assert!(summary.sent.near_miss > 0, "{served}: {summary:?}");
        assert!(
            replies.syn_ack >= summary.sent.near_miss,
            "{served}: {summary:?}"
        );
        assert_eq!(accepted, 0, "{served}: a near-miss ACK was accepted");
        assert_eq!(
            invalid, summary.sent.near_miss,
            "{served}: every near-miss ACK checked, and failed"
        );
    }
}

#[test]
fn test_legit_clients_report_success_and_failures_by_kind() {
    let Some(lab) = Lab::new("lgl") else {
        return;
    };
    let server = lab.http_server(server_v4(8080));
    // Served, under a light SYN flood to the same port.
    let args = [
        "--rate",
        "2000",
        "--duration",
        "2s",
        "--legit-rate",
        "20",
        "--legit-expect",
        REPLY_MARK,
    ];
    let run = lab.loadgen(server_v4(8080), &args, LIMIT);
    let legit = run.summary().legit.clone().unwrap();
    assert!(legit.attempts > 0, "{legit:?}");
    assert_eq!(legit.ok, legit.attempts, "{legit:?}");
    let connect = legit.connect_us.unwrap();
    assert!(connect.p50 <= connect.p99 && connect.p99 <= connect.max);
    assert!(
        run.progress()
            .iter()
            .any(|p| p.legit.as_ref().is_some_and(|l| l.ok > 0))
    );

    // The reply lacks the expected text.
    let run = lab.loadgen(
        server_v4(8080),
        &[
            "--rate",
            "100",
            "--duration",
            "1s",
            "--legit-rate",
            "10",
            "--legit-expect",
            "nope",
        ],
        LIMIT,
    );
    let legit = run.summary().legit.clone().unwrap();
    assert!(legit.attempts > 0, "{legit:?}");
    assert_eq!(legit.failures.bad_reply, legit.attempts, "{legit:?}");
    server.stop().unwrap();

    // Nothing listens: refused.
    let run = lab.loadgen(
        server_v4(8081),
        &["--rate", "100", "--duration", "1s", "--legit-rate", "10"],
        LIMIT,
    );
    let legit = run.summary().legit.clone().unwrap();
    assert!(legit.attempts > 0, "{legit:?}");
    assert_eq!(legit.failures.refused, legit.attempts, "{legit:?}");
}

#[test]
fn test_legit_clients_connect_over_ipv6() {
    let Some(lab) = Lab::new("lgl6") else {
        return;
    };
    let server = lab.http_server(server_v6(8080));
    // Served, under a light spoofed IPv6 SYN flood to the same port.
    let run = lab.loadgen(
        server_v6(8080),
        &[
            "--rate",
            "2000",
            "--duration",
            "2s",
            "--legit-rate",
            "20",
            "--legit-expect",
            REPLY_MARK,
        ],
        LIMIT,
    );
    server.stop().unwrap();
    let summary = run.summary();
    assert_eq!(summary.target, "[2001:2::1]:8080");
    assert_eq!(summary.src_cidr, SPOOFED_SOURCES_V6);
    assert!(summary.sent.syn > 0, "{summary:?}");
    let legit = summary.legit.clone().unwrap();
    assert!(legit.attempts > 0, "{legit:?}");
    assert_eq!(legit.ok, legit.attempts, "{legit:?}");
}

#[test]
fn test_errors_name_their_cause() {
    let Some(lab) = Lab::new("lge") else {
        return;
    };
    let t = &lab.topology;
    let fails = |wrapper: &[&str], args: &[&[&str]]| {
        let args = args.concat();
        let run = lab.spawn_in_client(wrapper, &args, LIMIT).finish();
        assert!(!run.status.success(), "{args:?} succeeded");
        run.stderr
    };
    let bounded = [
        "--target",
        "198.18.0.1:80",
        "--rate",
        "10",
        "--packets",
        "10",
    ];
    let ours = ["--interface", t.client_if.as_str()];
    let known_mac = ["--dst-mac", "02:00:00:00:00:01"];
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];

    let stderr = fails(&[], &[&bounded, &["--interface", "nosuch0"]]);
    assert!(stderr.contains("\"nosuch0\" does not exist"), "{stderr}");
    // Without privileges, each step names the capability it lacks.
    let stderr = fails(&nobody, &[&bounded, &ours, &known_mac, &["--tx", "packet"]]);
    assert!(stderr.contains("CAP_NET_RAW"), "{stderr}");
    let stderr = fails(&nobody, &[&bounded, &ours, &known_mac, &["--tx", "afxdp"]]);
    assert!(stderr.contains("CAP_"), "{stderr}");
    let stderr = fails(&nobody, &[&bounded, &ours, &["--netns", &t.client_ns]]);
    assert!(stderr.contains("CAP_SYS_ADMIN"), "{stderr}");
}
