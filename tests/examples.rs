//! The library examples (tests/examples), each run in the lab as a user would run it: a client
//! in the other namespace gets its greeting, with its own address in it. Privileged tier.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::privileged_lab;
use lab::{in_ns, served_v4};
use loadgen::lab::CLIENT_V4;

/// The example's executable: cargo builds examples next to the test executables' `deps`.
fn example(name: &str) -> PathBuf {
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(|deps| deps.parent()).unwrap();
    profile.join("examples").join(name)
}

#[test]
fn test_examples_greet_clients_through_synwall() {
    let Some(topology) = privileged_lab("swe") else {
        return;
    };
    for name in ["native_std", "native_tokio", "repair_accept"] {
        let path = example(name);
        assert!(path.is_file(), "{} is built by cargo test", path.display());
        let mut child = Command::new("ip")
            .args(["netns", "exec", &topology.server_ns])
            .arg(&path)
            .args([&topology.server_if, &served_v4().to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        // Once the XDP program is on the interface, every handshake goes through synwall.
        let what = format!("{name} attaching synwall");
        common::wait_until(&what, Duration::from_secs(30), || {
            topology
                .run_in(
                    &topology.server_ns,
                    &["ip", "-o", "link", "show", &topology.server_if],
                )
                .unwrap()
                .contains(" xdp")
        });
        let greeting = in_ns(&topology, &topology.client_ns, || {
            let mut stream = TcpStream::connect_timeout(&served_v4(), Duration::from_secs(3))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut greeting = String::new();
            stream.read_to_string(&mut greeting).map(|_| greeting)
        });
        let _ = child.kill();
        let _ = child.wait();
        let greeting = greeting.unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(
            greeting.starts_with(&format!("hello, {CLIENT_V4}:")),
            "{name}: {greeting}"
        );
    }
}
