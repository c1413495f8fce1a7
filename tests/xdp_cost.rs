//! What each XDP program costs per frame, measured by the kernel (BPF_PROG_TEST_RUN): synwall's
//! steering program and the lab's XDP SYN proxy, on a SYN and on an ACK. Each run gets a fresh
//! copy of the frame (the proxy turns a SYN into its SYN-ACK in place, so repeats within one
//! test run would measure the SYN-ACK); the kernel's time of each run is averaged.
//! The inputs of the zero-copy estimate in the README; a measurement, not a test:
//!
//! ```sh
//! sudo cargo test --release --test xdp_cost -- --ignored --nocapture
//! ```

mod common;
#[path = "common/lab.rs"]
mod lab;

use common::{Client, linux_options, privileged_lab};
use lab::*;
use synwall::seq::SeqNumber;
use synwall::sys::synproxy::SynProxy;
use synwall::sys::{SteeringProgram, XdpMode};
use synwall::wire::TcpFlags;

const RUNS: u32 = 20_000;

/// The mean of the kernel's time per run over [`RUNS`] runs of one frame each.
fn mean(run: impl Fn() -> (synwall::sys::XdpAction, std::time::Duration)) -> String {
    let mut total = std::time::Duration::ZERO;
    let mut action = None;
    for _ in 0..RUNS {
        let (this, time) = run();
        total += time;
        action = Some(this);
    }
    format!("{:?} per frame ({action:?})", total / RUNS)
}

#[test]
#[ignore = "a measurement: run it alone, on a quiet machine"]
fn measure_xdp_cost_per_frame() {
    let Some(topology) = privileged_lab("swx") else {
        return;
    };
    let client = Client {
        server: served_v4(),
        ..Client::new("198.18.200.1:40000", 1, linux_options(1))
    };
    let syn = common::frame(&client.syn());
    let ack = common::frame(&client.segment(TcpFlags::ACK, SeqNumber(2), SeqNumber(12_345)));
    let interface = topology.server_if.clone();
    let lines = in_ns(&topology, &topology.server_ns, move || {
        let steering =
            SteeringProgram::attach(&interface, XdpMode::Generic, &[served_v4()]).unwrap();
        let proxy = SynProxy::load(served_v4()).unwrap();
        let mut lines = Vec::new();
        for (name, frame) in [("SYN", &syn), ("ACK, no cookie", &ack)] {
            let steered = mean(|| steering.time_per_frame(frame, 1).unwrap());
            lines.push(format!("synwall steering, {name}: {steered}"));
            let proxied = mean(|| proxy.time_per_frame(frame, 1).unwrap());
            lines.push(format!("XDP SYN proxy, {name}: {proxied}"));
        }
        lines
    });
    for line in lines {
        println!("{line}");
    }
}
