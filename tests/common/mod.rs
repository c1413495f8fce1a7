//! Helpers shared by the integration tests and benchmarks: clients that build handshake
//! segments, a harness driving a listener through virtual time, and tool checks.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use synwall::cookie::keys::{KeyRing, Secret};
use synwall::listener::{Listener, ListenerConfig, SyncookiesMode, Verdict};
use synwall::seq::SeqNumber;
use synwall::wire::{
    self, Endpoints, LinkAddrs, Parsed, TcpFlags, TcpOptions, TcpRepr, Timestamps,
};

pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Wall-clock time of the harness's start: the first second of a key epoch.
pub const START_UNIX: Duration = Duration::from_secs(64 * 26_562_500);
pub const KEY_PERIOD: Duration = Duration::from_secs(64);

pub fn server_v4() -> SocketAddr {
    "198.18.0.1:80".parse().unwrap()
}

/// In-memory tests only: the IPv6 documentation prefix never reaches a wire.
pub fn server_v6() -> SocketAddr {
    "[2001:2::1]:80".parse().unwrap()
}

pub fn secret() -> Secret {
    Secret::from_bytes(*b"synwall test secret, not secret!")
}

pub fn keys(unix_time: Duration) -> KeyRing {
    KeyRing::new(secret(), KEY_PERIOD, unix_time)
}

/// A listener serving [`server_v4`] and [`server_v6`].
pub fn config(syncookies: SyncookiesMode) -> ListenerConfig {
    ListenerConfig {
        served: Endpoints::new([server_v4(), server_v6()]),
        syncookies,
        ..ListenerConfig::default()
    }
}

/// The options of a Linux SYN: MSS, SACK-permitted, timestamps, window scale 7.
pub fn linux_options(tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(Timestamps {
            value: tsval,
            echo: 0,
        }),
    }
}

/// The options of a Windows SYN: MSS, window scale 8, SACK-permitted, no timestamps.
pub fn windows_options() -> TcpOptions {
    TcpOptions {
        mss: Some(1460),
        window_scale: Some(8),
        sack_permitted: true,
        timestamps: None,
    }
}

/// The options of a macOS SYN: MSS, window scale 6, timestamps, SACK-permitted.
pub fn macos_options(tsval: u32) -> TcpOptions {
    TcpOptions {
        window_scale: Some(6),
        ..linux_options(tsval)
    }
}

/// A TCP client, as far as the handshake goes.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub addr: SocketAddr,
    pub server: SocketAddr,
    pub isn: SeqNumber,
    pub options: TcpOptions,
    pub link: LinkAddrs,
}

impl Client {
    pub fn new(addr: &str, isn: u32, options: TcpOptions) -> Client {
        let addr: SocketAddr = addr.parse().unwrap();
        let server = if addr.is_ipv4() {
            server_v4()
        } else {
            server_v6()
        };
        Client {
            addr,
            server,
            isn: SeqNumber(isn),
            options,
            link: LinkAddrs {
                src: CLIENT_MAC,
                dst: SERVER_MAC,
                vlan: None,
            },
        }
    }

    /// A segment from this client with no options and no payload.
    pub fn segment(&self, flags: TcpFlags, seq: SeqNumber, ack: SeqNumber) -> TcpRepr<'static> {
        TcpRepr {
            link: self.link,
            src: self.addr,
            dst: self.server,
            hop_limit: 64,
            seq,
            ack,
            flags,
            window: 502,
            options: TcpOptions::default(),
            payload: &[],
        }
    }

    pub fn syn(&self) -> TcpRepr<'static> {
        TcpRepr {
            window: 64240,
            options: self.options,
            ..self.segment(TcpFlags::SYN, self.isn, SeqNumber(0))
        }
    }

    /// The final ACK answering `syn_ack`, carrying `payload`, echoing its timestamp.
    pub fn ack<'a>(&self, syn_ack: &TcpRepr<'_>, payload: &'a [u8]) -> TcpRepr<'a> {
        let timestamps = match (self.options.timestamps, syn_ack.options.timestamps) {
            (Some(ours), Some(theirs)) => Some(Timestamps {
                value: ours.value + 1,
                echo: theirs.value,
            }),
            _ => None,
        };
        let flags = if payload.is_empty() {
            TcpFlags::ACK
        } else {
            TcpFlags::ACK | TcpFlags::PSH
        };
        TcpRepr {
            options: TcpOptions {
                timestamps,
                ..TcpOptions::default()
            },
            payload,
            ..self.segment(flags, self.isn + 1, syn_ack.seq + 1)
        }
    }

    /// A data segment `offset` bytes after the final ACK `ack`, carrying its options.
    pub fn data<'a>(
        &self,
        ack: &TcpRepr<'_>,
        offset: u32,
        payload: &'a [u8],
        flags: TcpFlags,
    ) -> TcpRepr<'a> {
        TcpRepr {
            payload,
            options: ack.options,
            ..self.segment(TcpFlags::ACK | flags, ack.seq + offset, ack.ack)
        }
    }
}

/// The bytes of `repr` as a frame.
pub fn frame(repr: &TcpRepr<'_>) -> Vec<u8> {
    let mut buf = vec![0; wire::emitted_len(repr)];
    wire::emit(repr, &mut buf).unwrap();
    buf
}

/// Parses a frame sent to `client`.
#[track_caller]
pub fn parse_reply(frame: &[u8], client: SocketAddr) -> TcpRepr<'_> {
    match wire::parse(frame, &Endpoints::new([client])) {
        Parsed::Ours(repr) => repr,
        other => panic!("not a valid segment to {client}: {other:?}"),
    }
}

/// A segment without payload, detached from the frame it was parsed from.
#[track_caller]
pub fn detach(repr: TcpRepr<'_>) -> TcpRepr<'static> {
    assert!(
        repr.payload.is_empty(),
        "only segments without payload detach"
    );
    TcpRepr {
        link: repr.link,
        src: repr.src,
        dst: repr.dst,
        hop_limit: repr.hop_limit,
        seq: repr.seq,
        ack: repr.ack,
        flags: repr.flags,
        window: repr.window,
        options: repr.options,
        payload: &[],
    }
}

/// A listener driven through virtual time.
pub struct Harness {
    pub listener: Listener,
    pub now: Instant,
    pub unix: Duration,
    tx: Vec<u8>,
}

impl Harness {
    pub fn new(config: ListenerConfig) -> Harness {
        let now = Instant::now();
        Harness {
            listener: Listener::new(config, keys(START_UNIX), now).unwrap(),
            now,
            unix: START_UNIX,
            tx: vec![0; synwall::device::MIN_TX_FRAME],
        }
    }

    /// Hands `repr` to the listener; returns the verdict and the reply frame, if any.
    #[track_caller]
    pub fn send(&mut self, repr: &TcpRepr<'_>) -> (Verdict, Option<Vec<u8>>) {
        self.send_frame(&frame(repr))
    }

    #[track_caller]
    pub fn send_frame(&mut self, frame: &[u8]) -> (Verdict, Option<Vec<u8>>) {
        let verdict = self.listener.handle_frame(self.now, frame, &mut self.tx);
        let reply = self.transmitted(&verdict);
        (verdict, reply)
    }

    /// The frame a verdict wrote into the transmit buffer, if it wrote one.
    fn transmitted(&self, verdict: &Verdict) -> Option<Vec<u8>> {
        match *verdict {
            Verdict::Transmit(len) => Some(self.tx[..len].to_vec()),
            _ => None,
        }
    }

    /// Sends a SYN and returns the SYN-ACK frame.
    #[track_caller]
    pub fn syn_ack(&mut self, client: &Client) -> Vec<u8> {
        match self.send(&client.syn()) {
            (Verdict::Transmit(_), Some(reply)) => reply,
            other => panic!("no SYN-ACK for {client:?}: {other:?}"),
        }
    }

    /// Sends a SYN and returns the parsed SYN-ACK.
    #[track_caller]
    pub fn syn_ack_repr(&mut self, client: &Client) -> TcpRepr<'static> {
        detach(parse_reply(&self.syn_ack(client), client.addr))
    }

    /// Tells the listener the kernel owns `accepted`; returns the frame it sent (an ACK of early
    /// data), if any, and the packets it held for the kernel.
    pub fn handoff_complete(
        &mut self,
        accepted: &synwall::listener::Accepted,
    ) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
        let done = self
            .listener
            .handle_handoff_complete(self.now, accepted, true, &mut self.tx);
        (self.transmitted(&done.ack), done.reinject)
    }

    /// Moves time forward; runs due timers; returns the frames they sent.
    pub fn advance(&mut self, by: Duration) -> Vec<Vec<u8>> {
        self.now += by;
        self.unix += by;
        self.listener.rotate_keys(self.unix);
        let mut sent = Vec::new();
        if self
            .listener
            .poll_timeout()
            .is_some_and(|deadline| deadline <= self.now)
        {
            self.listener.handle_timeout(self.now);
            while let Some(len) = self.listener.poll_transmit(&mut self.tx) {
                sent.push(self.tx[..len].to_vec());
            }
        }
        sent
    }
}

/// Whether the external tool `name` can run. Outside CI a missing tool skips the test with a
/// message; in CI (`CI` set) it fails the test.
pub fn require_tool(name: &str) -> bool {
    let found = std::process::Command::new(name)
        .arg(if name == "ip" { "-V" } else { "--version" })
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required in CI; run the README's test command, which installs it"
        );
        eprintln!("SKIPPED: {name} is not installed (the README's test command installs it)");
    }
    found
}

/// The capabilities deploy/ grants synwall (and its tests run it with), without `CAP_`.
pub const CAPABILITIES: [&str; 5] = [
    "NET_ADMIN",
    "NET_RAW",
    "BPF",
    "IPC_LOCK",
    "NET_BIND_SERVICE",
];

/// Fails unless every namespace whose name contains one of `names` is gone.
#[track_caller]
pub fn assert_namespaces_gone(names: &[&str]) {
    let left = loadgen::lab::run(&["ip", "netns", "list"]).unwrap();
    for name in names {
        assert!(!left.contains(name), "{name} left behind: {left}");
    }
}

/// A fresh lab (see `loadgen::lab::Topology`) whose namespace names start with `prefix`, or
/// `None` when privileged tests cannot run here (see [`require_privileges`]).
pub fn privileged_lab(prefix: &str) -> Option<loadgen::lab::Topology> {
    require_privileges().then(|| loadgen::lab::Topology::create(prefix).expect("creating the lab"))
}

/// Whether privileged tests (network namespaces, XDP, AF_XDP) can run: root and `ip` present.
/// Outside CI they are skipped with a message; in CI (`CI` set) a missing privilege fails.
pub fn require_privileges() -> bool {
    // The effective uid, from /proc/self/status.
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .and_then(|line| line.split_whitespace().nth(2))
            == Some("0")
    });
    let ok = root && require_tool("ip") && require_tool("ethtool");
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "privileged tests must run in CI: run them as root (the README's test command)"
        );
        eprintln!(
            "SKIPPED: needs root for network namespaces and AF_XDP (run the README's test command as root)"
        );
    }
    ok
}

/// Polls `ready` every 20 ms until it returns true; fails, naming `what`, after `timeout`.
#[track_caller]
pub fn wait_until(what: &str, timeout: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
