//! What the listener sends, written to a pcap and read by tshark with checksum verification on:
//! no malformed frames, no expert warnings, every checksum good.

mod common;

use std::fs::File;
use std::process::Command;
use std::time::Duration;

use common::*;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use synwall::listener::SyncookiesMode;
use synwall::wire::TcpOptions;

/// Whole handshakes: every client's SYN, our SYN-ACK, its ACK with a request.
fn handshakes() -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    for (mode, base) in [(SyncookiesMode::WhenFull, 1), (SyncookiesMode::Always, 2)] {
        let mut h = Harness::new(config(mode));
        let layouts = [
            linux_options(100),
            windows_options(),
            macos_options(200),
            TcpOptions::default(),
        ];
        for (i, options) in layouts.into_iter().enumerate() {
            for (j, addr) in [
                format!("198.18.{base}.{i}:4000{i}"),
                format!("[2001:2::{base}:{i}]:4100{i}"),
            ]
            .iter()
            .enumerate()
            {
                let mut client = Client::new(addr, 1000 * i as u32 + 7, options);
                client.link.vlan = (j == 1 && i % 2 == 0).then_some(100 + i as u16);
                let syn = frame(&client.syn());
                let syn_ack = h.syn_ack(&client);
                let ack = frame(&client.ack(
                    &parse_reply(&syn_ack, client.addr),
                    b"GET / HTTP/1.1\r\n\r\n",
                ));
                h.send_frame(&ack);
                frames.extend([syn, syn_ack, ack]);
            }
        }
    }
    frames
}

#[test]
fn test_synacks_pass_tshark_checks() {
    if !require_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handshakes.pcap");
    let frames = handshakes();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(File::create(&path).unwrap(), header).unwrap();
    for (i, frame) in frames.iter().enumerate() {
        let at = Duration::from_millis(i as u64);
        writer
            .write_packet(&PcapPacket::new(at, frame.len() as u32, frame))
            .unwrap();
    }
    drop(writer);

    let count = |filter: &str| -> usize {
        let output = Command::new("tshark")
            .args(["-r", path.to_str().unwrap()])
            .args([
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
            ])
            .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).lines().count()
    };
    assert_eq!(count("tcp"), frames.len());
    assert_eq!(
        count("tcp.checksum.status == 1"),
        frames.len(),
        "TCP checksums"
    );
    assert_eq!(
        count("ip.checksum.status == 1"),
        count("ip"),
        "IPv4 header checksums"
    );
    assert_eq!(count("ipv6"), frames.len() / 2);
    assert_eq!(count("vlan"), 3 * 2 * 2);
    assert_eq!(count("tcp.flags == 0x012"), frames.len() / 3, "SYN-ACKs");
    assert_eq!(
        count("tcp.options.wscale.shift == 7 && tcp.flags == 0x012"),
        6 + 4
    );
    assert_eq!(count("_ws.malformed"), 0, "malformed frames");
    assert_eq!(
        count("_ws.expert.severity >= 0x00600000"),
        0,
        "expert warnings or errors"
    );
}
