//! Measurements, not tests (ignored by default): the highest SYN rate one generator core
//! reaches on the lab's veth, with AF_XDP, with AF_PACKET, and hping3's for comparison; and
//! how near a paced rate loadgen gets (the tests only check it is never exceeded, which holds
//! on a loaded machine; reaching it needs a quiet one).
//!
//! ```text
//! cargo test -j1 --release -p loadgen --test measure -- --ignored --nocapture
//! ```
//!
//! Set-up, as in LAB-NOTES: the generator runs pinned to CPU 0. The receiver must not eat the
//! generator's core, so the server's veth drops the flood in XDP, native mode (synwall's
//! steering program with no AF_XDP socket registered drops every frame to the served port),
//! with threaded NAPI pinned to CPU 1. Received = the server veth's rx_packets; frames the
//! veth could not hand over (its ring full) show as the client veth's tx_dropped.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use loadgen::lab::SERVER_V4;
use support::{Lab, require_tool, server_v4};
use synwall::sys::{SteeringProgram, XdpMode};

const SECONDS: u64 = 3;

struct Counts {
    received: u64,
    dropped: u64,
}

fn counts(lab: &Lab) -> Counts {
    let t = &lab.topology;
    let client_dropped = format!("/sys/class/net/{}/statistics/tx_dropped", t.client_if);
    Counts {
        received: lab.server_rx_packets(),
        dropped: lab
            .in_client(&["cat", &client_dropped])
            .trim()
            .parse()
            .unwrap(),
    }
}

/// Runs `generate`, which returns how many packets it claims to have sent and over how many
/// seconds; prints and returns the received rate.
fn measure(lab: &Lab, name: &str, generate: impl FnOnce() -> (u64, f64)) -> f64 {
    let before = counts(lab);
    let started = Instant::now();
    let (sent, seconds) = generate();
    let wall = started.elapsed().as_secs_f64();
    let after = counts(lab);
    let received = (after.received - before.received) as f64 / seconds;
    println!(
        "{name:>24}: sent {:>9.0}/s  received {received:>9.0}/s  veth drops {:>8}  ({seconds:.2} s of {wall:.2} s)",
        sent as f64 / seconds,
        after.dropped - before.dropped,
    );
    received
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
fn measure_max_syn_rate_on_one_core() {
    let Some(lab) = Lab::new("lgm") else {
        return;
    };
    let t = &lab.topology;
    let served = SocketAddr::new(SERVER_V4.into(), 80);
    let program = t
        .spawn_in(&t.server_ns, {
            let ifname = t.server_if.clone();
            move || SteeringProgram::attach(&ifname, XdpMode::Native, &[served])
        })
        .join()
        .unwrap()
        .unwrap()
        .expect("attaching the dropping receiver");
    loadgen::lab::threaded_napi(t, 1, 0).expect("the veth's NAPI thread on CPU 1");

    let mut rates = Vec::new();
    for tx in ["afxdp", "packet"] {
        let duration = format!("{SECONDS}s");
        let args = [
            "--tx",
            tx,
            "--rate",
            "max",
            "--duration",
            &duration,
            "--cpus",
            "0",
        ];
        rates.push(measure(&lab, &format!("loadgen --tx {tx}"), || {
            let run = lab.loadgen(server_v4(80), &args, Duration::from_secs(30));
            let summary = run.summary();
            (summary.sent_total, summary.elapsed_s)
        }));
    }
    if require_tool("hping3") {
        let hping = measure(&lab, "hping3 (one source)", || {
            let seconds = SECONDS.to_string();
            let flood = [
                "timeout",
                &seconds,
                "taskset",
                "-c",
                "0",
                "hping3",
                "-S",
                "-p",
                "80",
                "--flood",
                "-a",
                "198.18.128.9",
                "198.18.0.1",
            ];
            // timeout ends hping3 (status 124), which prints "N packets transmitted".
            let output = match t.run_in(&t.client_ns, &flood) {
                Ok(output) => output,
                Err(error) => error.to_string(),
            };
            let words: Vec<&str> = output.split_whitespace().collect();
            let sent = words
                .windows(2)
                .find(|pair| pair[1] == "packets")
                .and_then(|pair| pair[0].parse().ok())
                .unwrap_or(0);
            (sent, SECONDS as f64)
        });
        assert!(
            rates.iter().all(|rate| *rate > hping),
            "{rates:?} vs {hping}"
        );
    }
    let dropped = program.counters().unwrap().dropped_no_xsk;
    println!(
        "receiver: XDP ({:?} mode) dropped {dropped} frames",
        program.mode()
    );
    assert!(rates.iter().all(|rate| *rate > 0.0));
}

#[test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture on a quiet machine"]
fn measure_paced_rate_reaches_its_target() {
    let Some(lab) = Lab::new("lgp") else {
        return;
    };
    const RATE: f64 = 50_000.0;
    let args = ["--rate", "50k", "--duration", "4s", "--cpus", "0"];
    let run = lab.loadgen(server_v4(80), &args, Duration::from_secs(30));
    let summary = run.summary();
    let sent = summary.sent_total as f64 / summary.elapsed_s;
    println!(
        "paced at 50k/s: sent {sent:.0}/s, {:.3} of the rate",
        sent / RATE
    );
    assert!((0.95..=1.05).contains(&(sent / RATE)), "sent {sent:.0}/s");
}
