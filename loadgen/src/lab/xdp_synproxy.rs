//! The kernel's XDP SYN proxy as a lab target (`--target xdp-synproxy`): sets up the peer
//! synwall is measured against on a lab [`Topology`], and reads its counters.
//!
//! In the server namespace:
//! - nftables `synproxy` in front of the served port, in a table of its own: SYNs untracked
//!   in raw prerouting, untracked or invalid segments to synproxy, which checks their cookie and
//!   opens the connection to the kernel's listener behind it, the rest of the invalid ones
//!   dropped; conntrack with `nf_conntrack_tcp_loose=0` (an ACK never starts a connection) and
//!   the listener with `tcp_syncookies=2`, as the kernel's own XDP SYN proxy example sets them;
//! - the proxy program ([`SynProxy`]) on the server veth in native mode: SYNs answered with
//!   the kernel's cookies by XDP_TX, ACKs checked against them there.
//!
//! On the client veth, the pass program: a frame sent with XDP_TX reaches a veth peer only when
//! the peer runs XDP. And the client's kernel leaves TCP checksums to the "hardware" again
//! (`ethtool -K tx on`; the lab turns it off for synwall, which reads frames in user space): its
//! segments then arrive as checksum-unnecessary, which nftables synproxy needs over IPv6, since it
//! checks a segment's checksum as IPv4's whatever the family (`nf_ip_checksum` in
//! net/netfilter/nft_synproxy.c) and so drops every software-checksummed IPv6 ACK. The flood's
//! frames are checksummed in software whatever the lab does: over IPv6 no forged ACK reaches
//! synproxy's check, and the peer's forgery figure says nothing (the run's placement says so).
//!
//! State: the nftables table and the sysctls belong to the server namespace (both are per
//! network namespace) and go with it; the programs stay attached while the [`XdpSynProxyPeer`]
//! lives (BPF links), and at most as long as the process.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::lab::error::LabError;
use crate::lab::topology::Topology;
use synwall::sys::XdpError;
use synwall::sys::synproxy::{SynProxy, SynProxyCounters};

/// The nftables table the lab's rules live in.
const TABLE: &str = "swlab_synproxy";
/// The options nftables synproxy offers the client for a cookie ACK it accepts (those of the
/// kernel's example).
const SYNPROXY_OPTIONS: &str = "mss 1460 wscale 7 timestamp sack-perm";

/// See the module documentation.
pub struct XdpSynProxyPeer {
    // Field order is drop order: the links go first, so the programs are detached before the
    // object holding them is closed.
    _links: [OwnedFd; 2],
    proxy: Arc<SynProxy>,
}

impl XdpSynProxyPeer {
    /// Sets the peer up in front of `served` (the server's address and port) on `topology`;
    /// the service listens there itself.
    pub fn start(topology: &Topology, served: SocketAddr) -> Result<XdpSynProxyPeer, LabError> {
        let error = |what: &'static str| move |source| LabError::SynProxy { what, source };
        let client = (&topology.client_ns, &topology.client_if);
        topology
            .run_in(client.0, &["ethtool", "-K", client.1, "tx", "on"])
            .map_err(error("offloading the client's TCP checksums again"))?;
        let ns = &topology.server_ns;
        load_rules(topology, served.port()).map_err(error(
            "loading the nftables synproxy rules (package nftables)",
        ))?;
        // The conntrack setting exists once the rules have loaded conntrack.
        for setting in [
            "net.netfilter.nf_conntrack_tcp_loose=0",
            "net.ipv4.tcp_syncookies=2",
        ] {
            topology
                .run_in(ns, &["sysctl", "-qw", setting])
                .map_err(error("setting its sysctls"))?;
        }
        let proxy = SynProxy::load(served).map_err(io::Error::other);
        let proxy = Arc::new(proxy.map_err(error("loading its programs"))?);
        let (server, client) = (&topology.server_ns, &topology.client_ns);
        let server_link = attach_in(
            topology,
            server,
            &topology.server_if,
            &proxy,
            Program::Proxy,
        )
        .map_err(error("attaching the proxy to the server veth"))?;
        let client_link = attach_in(topology, client, &topology.client_if, &proxy, Program::Pass)
            .map_err(error("attaching the pass program to the client veth"))?;
        Ok(XdpSynProxyPeer {
            _links: [server_link, client_link],
            proxy,
        })
    }

    /// The loaded programs (to test-run the proxy, say).
    pub fn proxy(&self) -> &SynProxy {
        &self.proxy
    }

    /// The proxy program's counters now.
    pub fn counters(&self) -> Result<SynProxyCounters, LabError> {
        self.proxy.counters().map_err(|source| LabError::SynProxy {
            what: "reading its counters",
            source: io::Error::other(source),
        })
    }
}

/// Loads the nftables rules (see the module documentation) for `port` into the server
/// namespace, from a file named after it.
fn load_rules(topology: &Topology, port: u16) -> io::Result<()> {
    let rules = format!(
        "table inet {TABLE} {{
            chain prerouting {{
                type filter hook prerouting priority raw; policy accept;
                tcp dport {port} tcp flags syn notrack
            }}
            chain input {{
                type filter hook input priority filter; policy accept;
                tcp dport {port} ct state invalid,untracked synproxy {SYNPROXY_OPTIONS}
                tcp dport {port} ct state invalid drop
            }}
        }}\n"
    );
    let file = std::env::temp_dir().join(format!("{}-synproxy.nft", topology.server_ns));
    std::fs::write(&file, rules)?;
    let loaded = topology.run_in(&topology.server_ns, &["nft", "-f", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    loaded.map(drop)
}

/// A do-nothing XDP program (the SYN proxy object's pass program) on one interface, for as long
/// as it lives: the kernel target's receive path with XDP on the veth (`--kernel-rx xdp-pass`).
pub struct PassProgram {
    // Field order is drop order: the link first.
    _link: OwnedFd,
    _object: Arc<SynProxy>,
}

impl PassProgram {
    /// Attaches the pass program to `ifname` in the namespace `ns` of `topology`. The SYN proxy
    /// object is loaded for `served`, which its pass program ignores.
    pub fn attach(
        topology: &Topology,
        ns: &str,
        ifname: &str,
        served: SocketAddr,
    ) -> Result<PassProgram, LabError> {
        let attached = SynProxy::load(served)
            .map_err(io::Error::other)
            .map(Arc::new)
            .and_then(|object| {
                let link = attach_in(topology, ns, ifname, &object, Program::Pass)?;
                Ok(PassProgram {
                    _link: link,
                    _object: object,
                })
            });
        attached.map_err(|source| LabError::SynProxy {
            what: "attaching a pass program to the server veth",
            source,
        })
    }
}

/// One of the SYN proxy object's two programs.
#[derive(Clone, Copy)]
enum Program {
    Proxy,
    Pass,
}

/// Attaches `program` of `object` to `ifname`, from a thread in the namespace `ns`.
fn attach_in(
    topology: &Topology,
    ns: &str,
    ifname: &str,
    object: &Arc<SynProxy>,
    program: Program,
) -> io::Result<OwnedFd> {
    let (object, ifname) = (Arc::clone(object), ifname.to_owned());
    topology
        .spawn_in(ns, move || -> Result<OwnedFd, XdpError> {
            match program {
                Program::Proxy => object.attach(&ifname),
                Program::Pass => object.attach_pass(&ifname),
            }
        })
        .join()
        .map_err(|_| io::Error::other("the attaching thread panicked"))?
        .and_then(|attached| attached.map_err(io::Error::other))
}
