//! The lab's XDP SYN proxy (`src/bpf/synproxy.bpf.c`): the kernel's own SYN cookies answered
//! from XDP, in front of nftables `synproxy` and the kernel's listener. A peer that synwall is
//! measured against (`synwall-lab --target xdp-synproxy`), not part of synwall.
//!
//! Owns the loaded object. [`SynProxy::attach`] and [`SynProxy::attach_pass`] return BPF links:
//! each program stays on its interface as long as its link is open, at most as long as the
//! process lives, as synwall's own programs do. [`SynProxy::counters`] reads what the proxy
//! did with every segment to the served address and port ([`SynProxyCounters`]), test runs
//! included.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use super::bpf::{Map, Object, link};
use super::error::XdpError;
use super::interface_index;
use super::steer::XdpAction;
use super::test_run::test_run;

/// The compiled programs, embedded at build time (see build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/synproxy.bpf.o"));
const PROXY: &CStr = c"synproxy_xdp";
const PASS: &CStr = c"synproxy_pass";
/// Size of `struct served` in synproxy.bpf.c: port, family, pad, 16 address bytes.
const SERVED_LEN: usize = 20;
/// Counters in `struct outcomes` of synproxy.bpf.c (`OUTCOME_COUNT`), eight bytes each.
const OUTCOME_COUNT: usize = 6;
const OUTCOMES_LEN: usize = OUTCOME_COUNT * 8;
// From linux/if_link.h: native (driver) XDP.
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// What the proxy did with the segments to the served address and port since it was loaded,
/// one counter per outcome (`enum outcome` in synproxy.bpf.c, in its order).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynProxyCounters {
    /// SYNs answered with a cookie SYN-ACK (XDP_TX).
    pub syn_answered: u64,
    /// SYNs dropped because the cookie helper or the frame's resizing failed.
    pub syn_unanswered: u64,
    /// ACKs with a valid cookie, passed to nftables synproxy.
    pub ack_passed: u64,
    /// ACKs without a valid cookie, dropped.
    pub ack_invalid: u64,
    /// Segments of connections a kernel socket owns, passed.
    pub owned: u64,
    /// Other segments (a bad header length, other flags), dropped.
    pub other_dropped: u64,
}

impl SynProxyCounters {
    /// Every counter with its name, in the program's order.
    pub fn named(&self) -> [(&'static str, u64); OUTCOME_COUNT] {
        [
            ("SynAnswered", self.syn_answered),
            ("SynUnanswered", self.syn_unanswered),
            ("AckPassed", self.ack_passed),
            ("AckInvalid", self.ack_invalid),
            ("Owned", self.owned),
            ("OtherDropped", self.other_dropped),
        ]
    }
}

/// See the module documentation.
pub struct SynProxy {
    _object: Object,
    proxy_fd: RawFd,
    pass_fd: RawFd,
    outcomes: Map<4, OUTCOMES_LEN>,
}

impl SynProxy {
    /// Loads the programs for the served address `served`.
    pub fn load(served: SocketAddr) -> Result<SynProxy, XdpError> {
        let object = Object::load(OBJECT, c"synwall_synproxy", "the XDP SYN proxy")?;
        let map: Map<4, SERVED_LEN> = object.map(c"served")?;
        let mut value = [0u8; SERVED_LEN];
        value[0..2].copy_from_slice(&served.port().to_be_bytes());
        match served.ip() {
            IpAddr::V4(address) => {
                value[2] = 4;
                value[4..8].copy_from_slice(&address.octets());
            }
            IpAddr::V6(address) => {
                value[2] = 6;
                value[4..20].copy_from_slice(&address.octets());
            }
        }
        map.update(&0u32.to_ne_bytes(), &value).map_err(|source| {
            XdpError::from_os("filling the served map", "the SYN proxy", source)
        })?;
        Ok(SynProxy {
            proxy_fd: object.program_fd(PROXY)?,
            pass_fd: object.program_fd(PASS)?,
            outcomes: object.map(c"outcomes")?,
            _object: object,
        })
    }

    /// Attaches the proxy to `ifname` in native mode, in the calling thread's namespace.
    pub fn attach(&self, ifname: &str) -> Result<OwnedFd, XdpError> {
        attach(self.proxy_fd, ifname)
    }

    /// Attaches the pass program to `ifname` (the client's end of the veth pair, so that the
    /// proxy's XDP_TX frames reach it), in the calling thread's namespace.
    pub fn attach_pass(&self, ifname: &str) -> Result<OwnedFd, XdpError> {
        attach(self.pass_fd, ifname)
    }

    /// The proxy's counters now.
    pub fn counters(&self) -> Result<SynProxyCounters, XdpError> {
        let read = |source| XdpError::from_os("reading the outcomes map", "the SYN proxy", source);
        let bytes = self
            .outcomes
            .lookup(&0u32.to_ne_bytes())
            .map_err(read)?
            .ok_or_else(|| read(io::Error::other("its one entry is missing")))?;
        let (counts, _) = bytes.as_chunks::<8>();
        let [
            syn_answered,
            syn_unanswered,
            ack_passed,
            ack_invalid,
            owned,
            other_dropped,
        ]: [u64; OUTCOME_COUNT] = std::array::from_fn(|index| u64::from_ne_bytes(counts[index]));
        Ok(SynProxyCounters {
            syn_answered,
            syn_unanswered,
            ack_passed,
            ack_invalid,
            owned,
            other_dropped,
        })
    }

    /// Runs the proxy `repeat` times on `frame` (BPF_PROG_TEST_RUN, in the calling thread's
    /// namespace): its decision, and the kernel's mean time per run.
    pub fn time_per_frame(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(XdpAction, Duration), XdpError> {
        test_run(self.proxy_fd, frame, repeat).map_err(|source| {
            XdpError::from_os("test-running the XDP SYN proxy", "the SYN proxy", source)
        })
    }
}

fn attach(prog_fd: RawFd, ifname: &str) -> Result<OwnedFd, XdpError> {
    let ifindex = interface_index(ifname)?;
    link(
        prog_fd,
        ifindex,
        libxdp_sys::bpf_attach_type_BPF_XDP,
        XDP_FLAGS_DRV_MODE,
    )
    .map_err(|source| XdpError::from_os("attaching the XDP SYN proxy", ifname, source))
}
