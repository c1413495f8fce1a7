//! The XDP steering program's decisions, frame by frame, through BPF_PROG_TEST_RUN: nothing is
//! sent. With no AF_XDP socket registered, "ours" shows as XDP_DROP and "the kernel's" as
//! XDP_PASS. The frames' addresses are benchmarking addresses (198.18.0.0/15, 2001:2::/48); they
//! never reach a wire.

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use common::privileged_lab;
use lab::{CraftedClient, full_checksums_from_the_server, in_ns};
use loadgen::lab::SERVER_V4;
use synwall::device::LocalDelivery;
use synwall::sys::inject::RawInjector;
use synwall::sys::{SteeringProgram, SynAnswerer, XdpAction, XdpMode};
use synwall::wire::{FourTuple, TcpOptions, TcpRepr};

const OURS: XdpAction = XdpAction::Drop;
const KERNEL: XdpAction = XdpAction::Pass;

const SERVED4: [u8; 4] = SERVER_V4.octets();
const OTHER4: [u8; 4] = [198, 18, 0, 9];
const PEER4: [u8; 4] = [198, 18, 0, 2];
const SERVED6: [u8; 16] = [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const OTHER6: [u8; 16] = [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
const PEER6: [u8; 16] = [0x20, 0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const PORT: u16 = 7000;
const OTHER_PORT: u16 = 7001;

const ICMP: u8 = 1;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV6: u8 = 58;
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_ARP: u16 = 0x0806;
/// IPv4 flags and fragment offset: "more fragments", offset 0.
const FIRST_FRAGMENT: u16 = 0x2000;

/// An Ethernet header with `vlan_tags` 802.1Q tags.
fn ethernet(ethertype: u16, vlan_tags: usize) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    for _ in 0..vlan_tags {
        frame.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    }
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// A 20-byte TCP header.
fn tcp(source: u16, destination: u16, flags: u8) -> Vec<u8> {
    let mut header = vec![0u8; 20];
    header[0..2].copy_from_slice(&source.to_be_bytes());
    header[2..4].copy_from_slice(&destination.to_be_bytes());
    header[12] = 5 << 4;
    header[13] = flags;
    header
}

/// An IPv4 packet.
struct V4<'a> {
    source: [u8; 4],
    destination: [u8; 4],
    protocol: u8,
    fragment: u16,
    option_words: u8,
    vlan_tags: usize,
    payload: &'a [u8],
}

impl<'a> V4<'a> {
    fn tcp(destination: [u8; 4], payload: &'a [u8]) -> Self {
        V4 {
            source: PEER4,
            destination,
            protocol: TCP,
            fragment: 0,
            option_words: 0,
            vlan_tags: 0,
            payload,
        }
    }

    fn frame(&self) -> Vec<u8> {
        let header_len = 20 + usize::from(self.option_words) * 4;
        let total_len = u16::try_from(header_len + self.payload.len()).unwrap();
        let mut frame = ethernet(ETHERTYPE_IPV4, self.vlan_tags);
        let mut header = vec![0u8; header_len];
        header[0] = 0x40 | (5 + self.option_words);
        header[2..4].copy_from_slice(&total_len.to_be_bytes());
        header[6..8].copy_from_slice(&self.fragment.to_be_bytes());
        header[8] = 64;
        header[9] = self.protocol;
        header[12..16].copy_from_slice(&self.source);
        header[16..20].copy_from_slice(&self.destination);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(self.payload);
        frame
    }
}

/// An IPv6 extension header: hop-by-hop, routing or destination options of `units` extra
/// 8-byte units, or a fragment header whose fragment offset is `units`.
#[derive(Clone, Copy)]
struct Extension {
    kind: u8,
    units: u8,
}

const fn ext(kind: u8, units: u8) -> Extension {
    Extension { kind, units }
}

/// An IPv6 frame: fixed header, `extensions`, then an `upper` protocol `payload`.
fn v6_frame(destination: [u8; 16], extensions: &[Extension], upper: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, extension) in extensions.iter().enumerate() {
        let next = extensions.get(i + 1).map_or(upper, |e| e.kind);
        let header = if extension.kind == FRAGMENT {
            let mut header = vec![next, 0, 0, 0, 0, 0, 0, 1];
            header[2..4].copy_from_slice(&(u16::from(extension.units) << 3).to_be_bytes());
            header
        } else {
            let mut header = vec![0u8; 8 * (usize::from(extension.units) + 1)];
            header[0] = next;
            header[1] = extension.units;
            header
        };
        body.extend_from_slice(&header);
    }
    body.extend_from_slice(payload);
    let mut frame = ethernet(ETHERTYPE_IPV6, 0);
    let mut header = vec![0u8; 40];
    header[0] = 0x60;
    header[4..6].copy_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
    header[6] = extensions.first().map_or(upper, |e| e.kind);
    header[7] = 64;
    header[8..24].copy_from_slice(&PEER6);
    header[24..40].copy_from_slice(&destination);
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&body);
    frame
}

fn v6_tcp(destination: [u8; 16], extensions: &[Extension], segment: &[u8]) -> Vec<u8> {
    v6_frame(destination, extensions, TCP, segment)
}

/// A frame the program is given, by name, and where it must go.
type Case = (&'static str, Vec<u8>, XdpAction);

/// Runs each case; the names of those that went elsewhere than expected.
fn misrouted(program: &SteeringProgram, cases: &[(&str, Vec<u8>, XdpAction)]) -> Vec<String> {
    cases
        .iter()
        .filter_map(|(name, frame, expected)| {
            let got = program
                .dry_run(frame)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            (got != *expected).then(|| format!("{name}: expected {expected:?}, got {got:?}"))
        })
        .collect()
}

fn served(addresses: &[&str]) -> Vec<SocketAddr> {
    addresses.iter().map(|a| a.parse().unwrap()).collect()
}

/// Runs `f` in the server namespace of a fresh lab, with the program attached for `addresses`.
fn with_program(
    addresses: &'static [&'static str],
    f: impl FnOnce(&Arc<SteeringProgram>) + Send + 'static,
) {
    let Some(topology) = privileged_lab("sws") else {
        return;
    };
    let interface = topology.server_if.clone();
    topology
        .spawn_in(&topology.server_ns, move || {
            let program = SteeringProgram::attach(&interface, XdpMode::Generic, &served(addresses))
                .expect("attaching the steering program");
            f(&Arc::new(program));
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        .expect("entering the server namespace");
}

#[test]
fn test_frames_go_where_the_design_says() {
    with_program(&["198.18.0.1:7000", "[2001:2::1]:7000"], |program| {
        let syn = tcp(40000, PORT, SYN);
        let cases: Vec<Case> = [
            other_protocols(),
            ipv4_segments(&syn),
            ipv4_fragments_and_cuts(&syn),
            ipv6_segments(&syn),
            ipv6_extension_headers(&syn),
        ]
        .concat();
        let failures = misrouted(program, &cases);
        assert!(failures.is_empty(), "{failures:#?}");
        let counters = program.counters().unwrap();
        let ours = cases.iter().filter(|case| case.2 == OURS).count() as u64;
        assert_eq!(counters.dropped_no_xsk, ours, "{counters:?}");
        assert_eq!(counters.passed, cases.len() as u64 - ours, "{counters:?}");
        assert_eq!(counters.redirected, 0, "{counters:?}");
    });
}

/// Frames that carry no TCP segment (ARP, a runt, ICMP, UDP): all the kernel's.
fn other_protocols() -> Vec<Case> {
    vec![
        (
            "ARP",
            [ethernet(ETHERTYPE_ARP, 0), vec![0; 28]].concat(),
            KERNEL,
        ),
        ("runt IPv4", ethernet(ETHERTYPE_IPV4, 0), KERNEL),
        (
            "ICMP to the served address",
            V4 {
                protocol: ICMP,
                ..V4::tcp(SERVED4, &[8, 0, 0, 0, 0, 0, 0, 0])
            }
            .frame(),
            KERNEL,
        ),
        (
            "UDP to the served port",
            V4 {
                protocol: UDP,
                ..V4::tcp(SERVED4, &tcp(40000, PORT, 0))
            }
            .frame(),
            KERNEL,
        ),
    ]
}

/// TCP over IPv4, unfragmented: `syn` (to the served port) and its variations.
fn ipv4_segments(syn: &[u8]) -> Vec<Case> {
    let v4_syn = V4::tcp(SERVED4, syn);
    vec![
        ("SYN to the served port", v4_syn.frame(), OURS),
        (
            "SYN to another port",
            V4::tcp(SERVED4, &tcp(40000, OTHER_PORT, SYN)).frame(),
            KERNEL,
        ),
        (
            "SYN to another address",
            V4::tcp(OTHER4, syn).frame(),
            KERNEL,
        ),
        (
            "ACK without a kernel socket",
            V4::tcp(SERVED4, &tcp(40000, PORT, ACK)).frame(),
            OURS,
        ),
        (
            "SYN-ACK to the served port",
            V4::tcp(SERVED4, &tcp(40000, PORT, SYN | ACK)).frame(),
            OURS,
        ),
        (
            "SYN with IP options",
            V4 {
                option_words: 2,
                ..v4_syn
            }
            .frame(),
            OURS,
        ),
        (
            "SYN with the longest IP options",
            V4 {
                option_words: 10,
                ..v4_syn
            }
            .frame(),
            OURS,
        ),
        (
            "SYN behind the tag of a VLAN with no served address",
            V4 {
                vlan_tags: 1,
                ..v4_syn
            }
            .frame(),
            KERNEL,
        ),
        // The kernel strips at most one tag before XDP on the NICs we support; QinQ is not
        // followed and stays with the kernel (which drops it: no such VLAN device).
        (
            "SYN behind two VLAN tags",
            V4 {
                vlan_tags: 2,
                ..v4_syn
            }
            .frame(),
            KERNEL,
        ),
    ]
}

/// IPv4 fragments, and TCP headers cut short: taken when the ports, or where they are hidden
/// the address, are served; a non-first fragment is the kernel's.
fn ipv4_fragments_and_cuts(syn: &[u8]) -> Vec<Case> {
    let v4_syn = V4::tcp(SERVED4, syn);
    vec![
        (
            "first fragment, ports visible",
            V4 {
                fragment: FIRST_FRAGMENT,
                ..v4_syn
            }
            .frame(),
            OURS,
        ),
        (
            "first fragment to another port",
            V4 {
                fragment: FIRST_FRAGMENT,
                ..V4::tcp(SERVED4, &tcp(1, OTHER_PORT, SYN))
            }
            .frame(),
            KERNEL,
        ),
        (
            "first fragment, ports hidden, served address",
            V4 {
                fragment: FIRST_FRAGMENT,
                ..V4::tcp(SERVED4, &syn[..2])
            }
            .frame(),
            OURS,
        ),
        (
            "first fragment, ports hidden, other address",
            V4 {
                fragment: FIRST_FRAGMENT,
                ..V4::tcp(OTHER4, &syn[..2])
            }
            .frame(),
            KERNEL,
        ),
        (
            "non-first fragment",
            V4 {
                fragment: 3,
                ..v4_syn
            }
            .frame(),
            KERNEL,
        ),
        (
            "TCP header cut after the ports",
            V4::tcp(SERVED4, &syn[..8]).frame(),
            OURS,
        ),
        (
            "TCP header cut, other port",
            V4::tcp(SERVED4, &tcp(40000, OTHER_PORT, SYN)[..8]).frame(),
            KERNEL,
        ),
    ]
}

/// IPv6 without extension headers: `syn`, other ports and addresses, ICMPv6 and UDP.
fn ipv6_segments(syn: &[u8]) -> Vec<Case> {
    vec![
        (
            "IPv6 SYN to the served port",
            v6_tcp(SERVED6, &[], syn),
            OURS,
        ),
        (
            "IPv6 SYN to another port",
            v6_tcp(SERVED6, &[], &tcp(40000, OTHER_PORT, SYN)),
            KERNEL,
        ),
        (
            "IPv6 SYN to another address",
            v6_tcp(OTHER6, &[], syn),
            KERNEL,
        ),
        (
            "ICMPv6 (neighbour solicitation) to the served address",
            v6_frame(SERVED6, &[], ICMPV6, &[135, 0, 0, 0, 0, 0, 0, 0]),
            KERNEL,
        ),
        (
            "IPv6 UDP to the served port",
            v6_frame(SERVED6, &[], UDP, &tcp(1, PORT, 0)),
            KERNEL,
        ),
    ]
}

/// IPv6 with extension headers, walked to the TCP header up to a limit (past it, or cut short,
/// the address decides), fragments among them.
fn ipv6_extension_headers(syn: &[u8]) -> Vec<Case> {
    let chain_past_limit = [
        ext(HOP_BY_HOP, 0),
        ext(DEST_OPTS, 0),
        ext(ROUTING, 0),
        ext(DEST_OPTS, 0),
        ext(DEST_OPTS, 0),
    ];
    vec![
        (
            "IPv6 hop-by-hop, routing, destination options",
            v6_tcp(
                SERVED6,
                &[ext(HOP_BY_HOP, 0), ext(ROUTING, 1), ext(DEST_OPTS, 0)],
                syn,
            ),
            OURS,
        ),
        (
            "IPv6 extension headers, other port",
            v6_tcp(
                SERVED6,
                &[ext(HOP_BY_HOP, 0), ext(DEST_OPTS, 2)],
                &tcp(1, OTHER_PORT, SYN),
            ),
            KERNEL,
        ),
        (
            "IPv6 first fragment",
            v6_tcp(SERVED6, &[ext(FRAGMENT, 0)], syn),
            OURS,
        ),
        (
            "IPv6 non-first fragment",
            v6_tcp(SERVED6, &[ext(FRAGMENT, 3)], syn),
            KERNEL,
        ),
        (
            "IPv6 four extension headers",
            v6_tcp(SERVED6, &chain_past_limit[..4], syn),
            OURS,
        ),
        (
            "IPv6 chain past the walk limit, served address",
            v6_tcp(SERVED6, &chain_past_limit, syn),
            OURS,
        ),
        (
            "IPv6 chain past the walk limit, other address",
            v6_tcp(OTHER6, &chain_past_limit, syn),
            KERNEL,
        ),
        (
            "IPv6 extension header cut short, served address",
            v6_tcp(SERVED6, &[ext(DEST_OPTS, 4)], &[])[..14 + 40 + 1].to_vec(),
            OURS,
        ),
        (
            "IPv6 extension header cut short, other address",
            v6_tcp(OTHER6, &[ext(DEST_OPTS, 4)], &[])[..14 + 40 + 1].to_vec(),
            KERNEL,
        ),
    ]
}

#[test]
fn test_tagged_frames_are_taken_only_for_served_vlans() {
    with_program(&["198.18.0.1:7000"], |program| {
        let tagged = V4 {
            vlan_tags: 1,
            ..V4::tcp(SERVED4, &tcp(40000, PORT, SYN))
        }
        .frame();
        let before = misrouted(program, &[("VLAN 5, not served", tagged.clone(), KERNEL)]);
        assert!(before.is_empty(), "{before:?}");
        program.serve_vlan(5).unwrap();
        let after = misrouted(program, &[("VLAN 5, served", tagged, OURS)]);
        assert!(after.is_empty(), "{after:?}");
        assert!(program.serve_vlan(4096).is_err(), "VLAN ids end at 4095");
    });
}

#[test]
fn test_wildcard_addresses_serve_every_address_of_their_family() {
    with_program(&["0.0.0.0:8000", "[::]:8000"], |program| {
        let cases = vec![
            (
                "IPv4 wildcard",
                V4::tcp(OTHER4, &tcp(40000, 8000, SYN)).frame(),
                OURS,
            ),
            (
                "IPv4 wildcard, other port",
                V4::tcp(OTHER4, &tcp(40000, 8001, SYN)).frame(),
                KERNEL,
            ),
            (
                "IPv4 wildcard, ports hidden",
                V4 {
                    fragment: FIRST_FRAGMENT,
                    ..V4::tcp(OTHER4, &[0, 1])
                }
                .frame(),
                OURS,
            ),
            (
                "IPv6 wildcard",
                v6_tcp(OTHER6, &[], &tcp(40000, 8000, SYN)),
                OURS,
            ),
            (
                "IPv6 wildcard, other port",
                v6_tcp(OTHER6, &[], &tcp(40000, 7000, SYN)),
                KERNEL,
            ),
        ];
        let failures = misrouted(program, &cases);
        assert!(failures.is_empty(), "{failures:#?}");
    });
}

/// A segment from `from` to the served port, as the program sees it arrive.
fn segment(from: SocketAddr, flags: u8) -> Vec<u8> {
    let SocketAddr::V4(from) = from else {
        panic!("an IPv4 peer")
    };
    V4 {
        source: from.ip().octets(),
        ..V4::tcp(SERVED4, &tcp(from.port(), PORT, flags))
    }
    .frame()
}

/// Waits until a kernel socket of `peer`'s connection is in `state` (as `ss` spells it).
fn wait_for_socket(state: &str, peer: SocketAddr) {
    let what = format!("a {state} socket for {peer}");
    common::wait_until(&what, Duration::from_secs(5), || {
        let ss = std::process::Command::new("ss")
            .args(["-tan", "state", state])
            .output()
            .expect("running ss");
        String::from_utf8_lossy(&ss.stdout).contains(&peer.to_string())
    });
}

#[test]
fn test_kernel_sockets_keep_their_segments_unless_shielded() {
    with_program(&["198.18.0.1:7000"], |program| {
        let listener = TcpListener::bind((SERVER_V4, PORT)).unwrap();
        let client = TcpStream::connect((SERVER_V4, PORT)).unwrap();
        let peer = client.local_addr().unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let mut stray = peer;
        stray.set_port(peer.port().wrapping_add(1));
        let goes = |from, flags| program.dry_run(&segment(from, flags)).unwrap();

        assert_eq!(goes(peer, ACK), KERNEL, "established");
        assert_eq!(goes(stray, ACK), OURS, "only the listener");
        // A SYN on a live connection is its socket's to answer (a challenge ACK, RFC 5961),
        // as is a retransmitted SYN of a handshake a kernel request socket answers.
        assert_eq!(
            goes(peer, SYN),
            KERNEL,
            "a SYN on an established connection"
        );

        let tuple = FourTuple {
            local: (SERVER_V4, PORT).into(),
            remote: peer,
        };
        let shield = program.shield(&tuple).unwrap();
        assert_eq!(goes(peer, ACK), OURS, "shielded");
        drop(shield);
        assert_eq!(goes(peer, ACK), KERNEL, "shield lowered");

        // The server closes first: its side of the connection goes to TIME-WAIT.
        drop(server_side);
        drop(client);
        wait_for_socket("time-wait", peer);
        assert_eq!(goes(peer, ACK), KERNEL, "TIME-WAIT");
        // A new handshake over the TIME-WAIT tuple is ours, from its SYN to its ACK.
        assert_eq!(goes(peer, SYN), OURS, "SYN over TIME-WAIT");
        assert_eq!(goes(peer, ACK), OURS, "its ACK");
        // Its handoff (shield raised, then lowered) ends the exception: a TIME-WAIT socket of
        // the tuple (here still the old one) gets its segments again.
        drop(program.shield(&tuple).unwrap());
        assert_eq!(goes(peer, ACK), KERNEL, "TIME-WAIT after the handoff");

        let counters = program.counters().unwrap();
        assert_eq!(counters.kernel_owned, 5, "{counters:?}");
        assert_eq!(counters.dropped_no_xsk, 4, "{counters:?}");
    });
}

#[test]
fn test_a_duplicate_syn_goes_to_the_request_socket_that_answers_it() {
    with_program(&["198.18.0.1:7000"], |program| {
        let _listener = TcpListener::bind((SERVER_V4, PORT)).unwrap();
        let client = common::Client {
            server: (SERVER_V4, PORT).into(),
            ..common::Client::new("198.18.0.9:41000", 7, TcpOptions::default())
        };
        let mut syn = [0u8; 128];
        let len = synwall::wire::emit(&client.syn(), &mut syn).unwrap();
        let syn = &syn[..len];
        assert_eq!(
            program.dry_run(syn).unwrap(),
            OURS,
            "a new connection attempt"
        );
        // The kernel's listener takes the SYN: a request socket holds the tuple until the
        // handshake completes (its SYN-ACK goes nowhere).
        let packet = synwall::wire::ip_packet_range(syn).unwrap();
        RawInjector::new().unwrap().deliver(&syn[packet]).unwrap();
        wait_for_socket("syn-recv", client.addr);
        assert_eq!(
            program.dry_run(syn).unwrap(),
            KERNEL,
            "its retransmission, which the request socket answers"
        );
    });
}

/// A listener on the served port whose SYN queue is full with two request sockets: a listen
/// backlog of 1, and two SYNs the kernel takes (their SYN-ACKs go nowhere).
fn listener_with_a_full_syn_queue() -> socket2::Socket {
    let listener = listener_with_backlog_1();
    let mut injector = RawInjector::new().unwrap();
    for port in [41001, 41002] {
        let client = common::Client {
            server: (SERVER_V4, PORT).into(),
            ..common::Client::new(&format!("198.18.0.9:{port}"), 7, TcpOptions::default())
        };
        let syn = common::frame(&client.syn());
        let packet = synwall::wire::ip_packet_range(&syn).unwrap();
        injector.deliver(&syn[packet]).unwrap();
    }
    wait_for_socket("syn-recv", "198.18.0.9:41001".parse().unwrap());
    listener
}

/// A listener on the served port with a listen backlog of 1. The port may still be held for a
/// moment by the listener a test has just dropped: a child that another test thread forked
/// keeps a copy of every descriptor until it execs, and the kernel closes the socket only with
/// the last copy. So a bind that finds the port in use is tried again, for up to 2 s.
fn listener_with_backlog_1() -> socket2::Socket {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.set_reuse_address(true).unwrap();
    let address = SocketAddr::from((SERVER_V4, PORT)).into();
    common::wait_until(
        "the served port free to bind",
        Duration::from_secs(2),
        || match listener.bind(&address) {
            Ok(()) => true,
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => false,
            Err(error) => panic!("binding the listener: {error}"),
        },
    );
    listener.listen(1).unwrap();
    listener
}

#[test]
fn test_the_service_answers_syns_until_its_syn_queue_is_full() {
    with_program(&["198.18.0.1:7000"], |program| {
        // The takeover is a CPU's: the test runs on one.
        let cpu = synwall::sys::affinity::allowed_cpus().unwrap()[0];
        synwall::sys::affinity::pin_current_thread(cpu).unwrap();
        program.service_listens(SynAnswerer::KernelFirst).unwrap();
        let syn = |port| segment(SocketAddr::from(([198, 18, 0, 2], port)), SYN);

        let listener = listener_with_backlog_1();
        assert_eq!(program.dry_run(&syn(42000)).unwrap(), KERNEL, "room");
        drop(listener);
        let full = listener_with_a_full_syn_queue();
        assert_eq!(program.dry_run(&syn(42001)).unwrap(), OURS, "full queue");
        // A new listener has room, but the CPU holds to its takeover.
        drop(full);
        let _empty = listener_with_backlog_1();
        assert_eq!(
            program.dry_run(&syn(42002)).unwrap(),
            OURS,
            "takeover holds"
        );

        let counters = program.counters().unwrap();
        assert_eq!(counters.kernel_answers, 1, "{counters:?}");
        assert_eq!(counters.takeovers, 1, "{counters:?}");
        assert_eq!(counters.dropped_no_xsk, 2, "{counters:?}");
    });
}

#[test]
fn test_an_ack_with_a_syncookie_of_the_services_own_listener_is_the_kernels() {
    let Some(topology) = privileged_lab("swk") else {
        return;
    };
    // A spoofed-range client (routed through the client namespace), without options: the
    // kernel's cookie then carries only the MSS.
    let client = common::Client {
        link: CraftedClient::link(&topology),
        server: (SERVER_V4, PORT).into(),
        ..common::Client::new("198.18.128.7:43000", 7, TcpOptions::default())
    };
    // The kernel's SYN-ACK with its checksums complete, which the crafted client verifies.
    full_checksums_from_the_server(&topology);
    let (ifname, link) = (topology.client_if.clone(), client.link);
    let (ready, client_ready) = std::sync::mpsc::channel();
    let capture = topology.spawn_in(&topology.client_ns, move || {
        let mut crafted = CraftedClient::open(&ifname, link);
        ready.send(()).unwrap();
        crafted.answer(&client, Duration::from_secs(10))
    });
    client_ready.recv().unwrap();
    // The service's listener, its SYN queue full, gets a SYN that did not pass the program (as
    // the SYNs of one receive batch pass it before the kernel takes the first, the queue filling
    // in between): it answers with its own syncookie.
    let interface = topology.server_if.clone();
    let (program, listener) = in_ns(&topology, &topology.server_ns, move || {
        let program =
            SteeringProgram::attach(&interface, XdpMode::Generic, &served(&["198.18.0.1:7000"]))
                .expect("attaching the steering program");
        program.service_listens(SynAnswerer::KernelFirst).unwrap();
        let listener = listener_with_a_full_syn_queue();
        let syn = common::frame(&client.syn());
        let packet = synwall::wire::ip_packet_range(&syn).unwrap();
        RawInjector::new().unwrap().deliver(&syn[packet]).unwrap();
        (program, listener)
    });
    let syn_ack = capture
        .join()
        .unwrap()
        .unwrap()
        .expect("the listener's SYN-ACK");
    let ack = common::frame(&client.ack(&syn_ack, b""));
    // The kernel's cookie keeps its minute counter in the top 8 bits (its MSS index in the low
    // ones takes a near miss as another MSS): this one claims a time 64 minutes away.
    let forged = common::frame(&TcpRepr {
        ack: syn_ack.seq + 1 + (1 << 30),
        ..client.ack(&syn_ack, b"")
    });

    let (program, ack) = in_ns(&topology, &topology.server_ns, move || {
        // The check is asked only after a takeover: an ACK flood alone costs no second lookup.
        assert_eq!(program.dry_run(&ack).unwrap(), OURS, "before any takeover");
        // A SYN of the flood finds the queue full, and this CPU takes the SYNs over.
        let flood_syn = segment(SocketAddr::from(([198, 18, 0, 2], 42000)), SYN);
        assert_eq!(program.dry_run(&flood_syn).unwrap(), OURS, "takeover");
        assert_eq!(
            program.dry_run(&ack).unwrap(),
            KERNEL,
            "the listener's cookie"
        );
        assert_eq!(
            program.dry_run(&forged).unwrap(),
            OURS,
            "a cookie of another time"
        );
        (program, ack)
    });
    // And the kernel completes it: the service accepts the client.
    let ifname = topology.client_if.clone();
    in_ns(&topology, &topology.client_ns, move || {
        CraftedClient::open(&ifname, link).send_frame(&ack);
    });
    listener.set_nonblocking(true).unwrap();
    let mut accepted = None;
    common::wait_until(
        "the service accepts the client",
        Duration::from_secs(5),
        || {
            accepted = listener
                .accept()
                .ok()
                .map(|(_, peer)| peer.as_socket().unwrap());
            accepted.is_some()
        },
    );
    assert_eq!(accepted, Some(client.addr));
    let counters = program.counters().unwrap();
    assert_eq!(counters.kernel_cookies, 2, "{counters:?}");
    assert_eq!(counters.takeovers, 1, "{counters:?}");
}
