//! The XDP steering program (`src/bpf/steer.bpf.c`): loading, attaching, replacing a stale copy,
//! and its maps (`served`, `xsks`, `counters`, `vlans`, and `handing_off` and `tw_handshakes`
//! through [`HandoffShield`]).
//!
//! Owns the libbpf object (the program and its maps) and the BPF link that keeps the program
//! attached. Invariants:
//! - While a [`SteeringProgram`] exists, its program is attached to its interface through the
//!   link. Dropping it closes the link, which detaches the program; so does the death of the
//!   process by any means (SIGINT, SIGTERM, SIGKILL, abort), because the kernel detaches a
//!   link-attached XDP program when the last fd of the link is closed. No bpffs pin is made.
//! - A program attached the old way (netlink, which outlives its process) with our name is
//!   stale by construction and is removed at attach, in both generic and native mode. A
//!   link-attached program with our name belongs to a live process and is never touched.
//!   Any other program is left alone and reported.
//! - The `served` and `vlans` maps are filled before the program is attached, so it never runs
//!   half-filled. `vlans` lists the VLANs whose device on the interface holds a served address
//!   (from `/proc/net/vlan/config` and the host's addresses at attach): a tagged frame of any
//!   other VLAN stays with the kernel, as for a host without synwall. A VLAN device made later
//!   takes a restart, or [`SteeringProgram::serve_vlan`].

use std::ffi::{CStr, c_void};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr;
use std::sync::Arc;
use std::{fs, io};

use libxdp_sys as ffi;

use super::attached::{XdpAttachMode, XdpProgram, xdp_programs};
use super::bpf::{KERNEL_HANDSHAKE_LEN, Map, Object, SOCK_TUPLE_LEN, link, sock_tuple};
use super::error::{XdpError, neg_errno};
use super::interface_index;
use super::xsk::XdpDevice;
use crate::wire::FourTuple;

/// The compiled program, embedded at build time (see build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/steer.bpf.o"));
/// The program's function name in steer.bpf.c; also how a stale copy is recognised, and how
/// `synwall status` tells synwall's program from others.
pub const PROGRAM_NAME: &CStr = c"synwall_steer";
/// Entries of the XSKMAP (`MAX_QUEUES` in steer.bpf.c).
const MAX_QUEUES: u32 = 256;
/// Entries of the `served` map (`MAX_SERVED` in steer.bpf.c).
const MAX_SERVED_KEYS: usize = 256;
/// Size of `struct served_key` in steer.bpf.c.
const SERVED_KEY_LEN: usize = 20;
/// The largest VLAN id (the `vlans` map has 4096 entries).
const VLAN_ID_MAX: u16 = 4095;

// From linux/if_link.h (not in libxdp-sys's bindings).
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// How the steering program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Native (driver) mode if the driver supports it, generic (SKB) mode otherwise.
    Auto,
    /// Native (driver, DRV) mode only.
    Native,
    /// Generic (SKB) mode only.
    Generic,
}

/// The program's per-action counters, summed over all CPUs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SteerCounters {
    /// Frames that are not ours, passed to the kernel.
    pub passed: u64,
    /// Frames redirected to an AF_XDP socket.
    pub redirected: u64,
    /// Frames of ours dropped because no AF_XDP socket is registered on their rx queue.
    pub dropped_no_xsk: u64,
    /// Segments to a served port that a non-listening kernel socket owns, passed to the kernel.
    pub kernel_owned: u64,
    /// Final ACKs (and the segments right after them) of handshakes the kernel completes
    /// itself (native mode), passed to the kernel.
    pub kernel_completes: u64,
    /// SYNs over the 4-tuple of a TIME-WAIT socket, passed to the kernel, whose listener takes
    /// the connection over as without synwall (native mode: the service's listener; repair
    /// mode with kernel-first: synwall's own).
    pub kernel_reopens: u64,
    /// SYNs the port's listener answered (the service's in native mode, synwall's own in repair
    /// mode), its SYN queue having room and no takeover holding ([`SynAnswerer::KernelFirst`]).
    pub kernel_answers: u64,
    /// Times a CPU found the listener's SYN queue full and took over answering SYNs for synwall
    /// for [`TAKEOVER_HOLD`] ([`SynAnswerer::KernelFirst`]).
    pub takeovers: u64,
    /// ACKs carrying a syncookie the port's listener sent (for a SYN passed to it just
    /// as its SYN queue filled, before a takeover), passed to the kernel, which completes the
    /// handshake from it ([`SynAnswerer::KernelFirst`]).
    pub kernel_cookies: u64,
}

/// Who answers the SYNs of new connections (the `answer-syns` setting): in native handoff the
/// service listens on the served port itself; in repair mode synwall does, with
/// [`SynAnswerer::KernelFirst`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SynAnswerer {
    /// The kernel's listener on the served port (the service's, or synwall's own in repair
    /// mode), as without synwall, while its SYN queue has room. From the moment a CPU finds the
    /// queue full, the point where the kernel would start answering with syncookies, synwall
    /// answers every SYN that CPU receives for at least [`TAKEOVER_HOLD`]. Without a flood,
    /// synwall's fast path handles no handshake.
    #[default]
    KernelFirst,
    /// synwall, every SYN.
    Synwall,
}

impl SynAnswerer {
    /// The value's name, as the setting spells it.
    pub fn name(self) -> &'static str {
        match self {
            SynAnswerer::KernelFirst => "kernel-first",
            SynAnswerer::Synwall => "synwall",
        }
    }
}

/// How long a CPU keeps sending every SYN to synwall after it found the listener's SYN queue
/// full (`TAKEOVER_HOLD_NS` in steer.bpf.c).
pub const TAKEOVER_HOLD: std::time::Duration = std::time::Duration::from_secs(10);

/// What the program decided for one frame (a test run: `SteeringProgram::dry_run`, feature lab).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    /// XDP_ABORTED.
    Aborted,
    /// XDP_DROP.
    Drop,
    /// XDP_PASS.
    Pass,
    /// XDP_TX.
    Tx,
    /// XDP_REDIRECT.
    Redirect,
    /// Any other value.
    Other(u32),
}

impl From<u32> for XdpAction {
    fn from(value: u32) -> Self {
        match value {
            ffi::xdp_action_XDP_ABORTED => Self::Aborted,
            ffi::xdp_action_XDP_DROP => Self::Drop,
            ffi::xdp_action_XDP_PASS => Self::Pass,
            ffi::xdp_action_XDP_TX => Self::Tx,
            ffi::xdp_action_XDP_REDIRECT => Self::Redirect,
            other => Self::Other(other),
        }
    }
}

/// `COUNTER_*`, the indices of the `counters` map, and `SERVED*`, the bits of a `served` value,
/// generated by build.rs from `enum counter` and `enum served_flag` in steer.bpf.c.
mod shared {
    include!(concat!(env!("OUT_DIR"), "/steer.enums.rs"));
}
use shared::{
    COUNTER_DROPPED_NO_XSK, COUNTER_KERNEL_ANSWERS, COUNTER_KERNEL_COMPLETES,
    COUNTER_KERNEL_COOKIES, COUNTER_KERNEL_OWNED, COUNTER_KERNEL_REOPENS, COUNTER_MAX,
    COUNTER_PASSED, COUNTER_REDIRECTED, COUNTER_TAKEOVERS, SERVED, SERVED_KERNEL_FIRST,
    SERVED_KERNEL_LISTENS, SERVED_KERNEL_REOPENS,
};

/// The loaded object and the maps synwall uses.
struct Loaded {
    _object: Object,
    prog_fd: RawFd,
    served: Map<SERVED_KEY_LEN, 1>,
    xsks: Map<4, 4>,
    /// Per-CPU: each value is one u64 per possible CPU.
    counters: Map<4, 8>,
    handing_off: Map<SOCK_TUPLE_LEN, 1>,
    tw_handshakes: Map<SOCK_TUPLE_LEN, 1>,
    vlans: Map<4, 1>,
    /// Shared with the native handoff's completion program (kernel_handshake.h), as is
    /// `completions_until`, that program's gate.
    kernel_handshakes: Map<SOCK_TUPLE_LEN, KERNEL_HANDSHAKE_LEN>,
    completions_until: Map<4, 8>,
}

/// The steering program, attached to one interface (see the module docs for its invariants).
pub struct SteeringProgram {
    // Field order is drop order: the link goes first, so the program is detached before the
    // object holding it is closed.
    _link: OwnedFd,
    object: Loaded,
    /// The keys of the `served` map.
    served_keys: Vec<[u8; SERVED_KEY_LEN]>,
    ifindex: u32,
    mode: XdpMode,
    possible_cpus: usize,
}

impl std::fmt::Debug for SteeringProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SteeringProgram")
            .field("ifindex", &self.ifindex)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl SteeringProgram {
    /// Loads the program, fills `served`, removes a stale copy left by a killed run and
    /// attaches in `mode` (Auto: native first, then generic).
    ///
    /// An unspecified address in `served` (`0.0.0.0`, `::`) is the wildcard of its family: any
    /// destination address arriving on this interface. IPv4 and IPv6 are separate.
    pub fn attach(ifname: &str, mode: XdpMode, served: &[SocketAddr]) -> Result<Self, XdpError> {
        let ifindex = interface_index(ifname)?;
        let keys = served_keys(served)?;
        let possible_cpus = possible_cpus()?;
        let object = load(ifname)?;
        for key in &keys {
            object
                .served
                .update(key, &[SERVED])
                .map_err(|source| XdpError::from_os("filling the served map", ifname, source))?;
        }
        let vlans = served_vlans(ifname, served)
            .map_err(|source| XdpError::from_os("finding the VLANs served", ifname, source))?;
        for &vlan in &vlans {
            allow_vlan(object.vlans, vlan)
                .map_err(|source| XdpError::from_os("filling the VLAN map", ifname, source))?;
        }
        remove_stale(ifindex, ifname)?;
        let (link, mode) = attach_link(object.prog_fd, ifindex, ifname, mode)?;
        tracing::info!(ifname, ?mode, ?vlans, "XDP steering program attached");
        Ok(Self {
            _link: link,
            object,
            served_keys: keys,
            ifindex,
            mode,
            possible_cpus,
        })
    }

    /// The interface the program is attached to.
    pub(super) fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Tells the program that the protected service listens on the served ports itself (native
    /// handoff): a SYN that finds a TIME-WAIT socket of its 4-tuple then goes to the kernel,
    /// whose TIME-WAIT socket gives way to the service's listener as it would without synwall;
    /// and `answerer` answers the SYNs of new connections.
    pub fn service_listens(&self, answerer: SynAnswerer) -> Result<(), XdpError> {
        let listens = SERVED | SERVED_KERNEL_LISTENS | SERVED_KERNEL_REOPENS;
        self.set_served_flags(match answerer {
            SynAnswerer::KernelFirst => listens | SERVED_KERNEL_FIRST,
            SynAnswerer::Synwall => listens,
        })
    }

    /// Tells the program that synwall listens on the served ports itself (repair mode,
    /// [`SynAnswerer::KernelFirst`]): its listener answers the SYNs of new connections while
    /// its SYN queue has room, and a SYN over a TIME-WAIT socket goes to the kernel, whose
    /// TIME-WAIT socket gives way to that listener. The segments of a connection being
    /// repaired still come to synwall.
    pub fn own_listener_answers(&self) -> Result<(), XdpError> {
        self.set_served_flags(SERVED | SERVED_KERNEL_FIRST | SERVED_KERNEL_REOPENS)
    }

    fn set_served_flags(&self, flags: u8) -> Result<(), XdpError> {
        for key in &self.served_keys {
            self.object
                .served
                .update(key, &[flags])
                .map_err(|source| self.os_error_io("filling the served map", source))?;
        }
        Ok(())
    }

    /// The maps the native handoff's completion program shares (kernel_handshake.h): the
    /// handshakes the kernel completes, and the gate this program opens for them.
    pub(super) fn maps_for_completion(&self) -> [(&'static CStr, RawFd); 2] {
        [
            (c"kernel_handshakes", self.object.kernel_handshakes.fd()),
            (c"completions_until", self.object.completions_until.fd()),
        ]
    }

    /// Takes tagged frames of VLAN `vlan` (0..=4095) too: for a VLAN device with a served
    /// address made after attach (attach lists those that exist then).
    pub fn serve_vlan(&self, vlan: u16) -> Result<(), XdpError> {
        allow_vlan(self.object.vlans, vlan)
            .map_err(|source| self.os_error_io("filling the VLAN map", source))
    }

    /// The mode the program was attached in: [`XdpMode::Native`] or [`XdpMode::Generic`].
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Steers the served segments of `device`'s rx queue to it (its fd goes into the XSKMAP).
    /// The entry disappears by itself when the device is dropped.
    pub fn register(&self, device: &XdpDevice) -> Result<(), XdpError> {
        if device.ifindex() != self.ifindex {
            return Err(XdpError::Config(format!(
                "the AF_XDP socket is bound to interface index {}, the program to {}",
                device.ifindex(),
                self.ifindex
            )));
        }
        let queue_id = checked_queue(device.queue_id())?;
        let fd = u32::try_from(device.as_raw_fd())
            .map_err(|_| XdpError::Config("negative AF_XDP socket fd".to_owned()))?;
        self.object
            .xsks
            .update(&queue_id.to_ne_bytes(), &fd.to_ne_bytes())
            .map_err(|source| {
                XdpError::from_os(
                    "registering the AF_XDP socket in the XSKMAP",
                    device.ifname(),
                    source,
                )
            })?;
        Ok(())
    }

    /// The program's counters, summed over all CPUs.
    pub fn counters(&self) -> Result<SteerCounters, XdpError> {
        let mut per_cpu = vec![0u64; self.possible_cpus];
        let mut totals = [0u64; COUNTER_MAX as usize];
        for (index, total) in (0u32..).zip(totals.iter_mut()) {
            // SAFETY: the key is a live u32; the value buffer holds one u64 per possible CPU,
            // which is what a lookup in a per-CPU array of u64 writes.
            let ret = unsafe {
                ffi::bpf_map_lookup_elem(
                    self.object.counters.fd(),
                    ptr::from_ref(&index).cast(),
                    per_cpu.as_mut_ptr().cast::<c_void>(),
                )
            };
            if ret < 0 {
                return Err(self.os_error("reading the XDP counters", ret));
            }
            *total = per_cpu.iter().sum();
        }
        let total = |counter: u32| totals[counter as usize];
        Ok(SteerCounters {
            passed: total(COUNTER_PASSED),
            redirected: total(COUNTER_REDIRECTED),
            dropped_no_xsk: total(COUNTER_DROPPED_NO_XSK),
            kernel_owned: total(COUNTER_KERNEL_OWNED),
            kernel_completes: total(COUNTER_KERNEL_COMPLETES),
            kernel_reopens: total(COUNTER_KERNEL_REOPENS),
            kernel_answers: total(COUNTER_KERNEL_ANSWERS),
            takeovers: total(COUNTER_TAKEOVERS),
            kernel_cookies: total(COUNTER_KERNEL_COOKIES),
        })
    }

    /// Runs the loaded program once on `frame` (BPF_PROG_TEST_RUN, rx queue 0, in the calling
    /// thread's network namespace) and returns its decision. Nothing is sent or redirected, the
    /// counters do count it. For the tests (feature `lab`): what would happen to this frame?
    #[cfg(feature = "lab")]
    pub fn dry_run(&self, frame: &[u8]) -> Result<XdpAction, XdpError> {
        Ok(self.time_per_frame(frame, 1)?.0)
    }

    /// Runs the program `repeat` times on `frame` as [`SteeringProgram::dry_run`] does; returns
    /// its decision and the kernel's mean time per run: the program's own cost per frame (the
    /// lab's zero-copy estimate; feature `lab`).
    #[cfg(feature = "lab")]
    pub fn time_per_frame(
        &self,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(XdpAction, std::time::Duration), XdpError> {
        super::test_run::test_run(self.object.prog_fd, frame, repeat)
            .map_err(|source| self.os_error_io("test-running the XDP program", source))
    }
}

/// While alive, the segments of one connection go to user space even though its kernel socket
/// exists: the socket is still being built (see `handing_off` in steer.bpf.c). Lowered, it also
/// ends the connection's TIME-WAIT exception (`tw_handshakes`), if its handshake began over a
/// TIME-WAIT socket: once handed off, a later TIME-WAIT socket of the tuple is the kernel's.
/// It travels with the handoff's report, so the shard lowers it only after re-injecting what
/// it held: the connection's segments reach the kernel socket in the order they arrived.
#[must_use = "the shield is lowered when dropped"]
#[derive(Debug)]
pub struct HandoffShield {
    program: Arc<SteeringProgram>,
    key: [u8; SOCK_TUPLE_LEN],
}

impl Drop for HandoffShield {
    fn drop(&mut self) {
        let _ = self.program.object.handing_off.delete(&self.key);
        self.program.end_time_wait_exception(&self.key);
    }
}

impl SteeringProgram {
    /// The kernel owns `tuple`'s connection now: a later TIME-WAIT socket of the tuple is the
    /// kernel's, so the handshake's TIME-WAIT exception (`tw_handshakes`) ends, if it had one.
    pub fn handed_off(&self, tuple: &FourTuple) {
        self.end_time_wait_exception(&sock_tuple(tuple));
    }

    fn end_time_wait_exception(&self, key: &[u8; SOCK_TUPLE_LEN]) {
        // A failure (or no entry) leaves what the LRU map evicts in time; segments only take
        // the longer way.
        let _ = self.object.tw_handshakes.delete(key);
    }

    /// Keeps the segments of `tuple` coming to user space until the returned shield drops.
    pub fn shield(self: &Arc<Self>, tuple: &FourTuple) -> Result<HandoffShield, XdpError> {
        let key = sock_tuple(tuple);
        self.object
            .handing_off
            .update(&key, &[1])
            .map_err(|source| XdpError::Os {
                action: "shielding a connection being handed off",
                ifname: self.ifname(),
                source,
            })?;
        Ok(HandoffShield {
            program: Arc::clone(self),
            key,
        })
    }

    /// The interface, as errors name it after attaching.
    fn ifname(&self) -> String {
        format!("ifindex {}", self.ifindex)
    }

    /// An error of `action`, which returned the negative errno `ret`.
    fn os_error(&self, action: &'static str, ret: libc::c_int) -> XdpError {
        self.os_error_io(action, neg_errno(ret))
    }

    /// An error of `action`, which failed with `source`.
    fn os_error_io(&self, action: &'static str, source: io::Error) -> XdpError {
        XdpError::Os {
            action,
            ifname: self.ifname(),
            source,
        }
    }
}

/// Marks `vlan` as served in the `vlans` map.
fn allow_vlan(vlans: Map<4, 1>, vlan: u16) -> io::Result<()> {
    if vlan > VLAN_ID_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("VLAN id {vlan} is above {VLAN_ID_MAX}"),
        ));
    }
    vlans.update(&u32::from(vlan).to_ne_bytes(), &[1])
}

/// The VLANs whose device on `ifname` holds a served address (any address of the family, for
/// a wildcard), in the calling thread's network namespace. None when the kernel has no 802.1Q
/// support (no /proc/net/vlan).
fn served_vlans(ifname: &str, served: &[SocketAddr]) -> io::Result<Vec<u16>> {
    let config = match fs::read_to_string("/proc/thread-self/net/vlan/config") {
        Ok(config) => config,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let devices = vlan_devices(&config, ifname);
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let addresses = super::addresses::host_addresses()?;
    let serves = |address: IpAddr| {
        served.iter().any(|served| {
            served.ip() == address
                || (served.ip().is_unspecified() && served.is_ipv4() == address.is_ipv4())
        })
    };
    let mut vlans: Vec<u16> = devices
        .into_iter()
        .filter(|(device, _)| {
            addresses
                .iter()
                .any(|host| host.interface == *device && serves(host.address))
        })
        .map(|(_, vlan)| vlan)
        .collect();
    vlans.sort_unstable();
    vlans.dedup();
    Ok(vlans)
}

/// The VLAN devices on `parent` listed in the text of /proc/net/vlan/config, with their ids:
/// after two header lines, `device | id | parent` per line.
fn vlan_devices(config: &str, parent: &str) -> Vec<(String, u16)> {
    config
        .lines()
        .skip(2)
        .filter_map(|line| {
            let mut fields = line.split('|').map(str::trim);
            let (device, id, lower) = (fields.next()?, fields.next()?, fields.next()?);
            (lower == parent).then(|| Some((device.to_owned(), id.parse().ok()?)))?
        })
        .collect()
}

fn checked_queue(queue_id: u32) -> Result<u32, XdpError> {
    if queue_id >= MAX_QUEUES {
        return Err(XdpError::Config(format!(
            "rx queue {queue_id} is beyond the XSKMAP's {MAX_QUEUES} entries"
        )));
    }
    Ok(queue_id)
}

/// The `served` keys for `served`: each address:port, plus the address with port 0 (the
/// "this address serves something" marker for segments whose ports cannot be seen).
fn served_keys(served: &[SocketAddr]) -> Result<Vec<[u8; SERVED_KEY_LEN]>, XdpError> {
    let mut keys = Vec::with_capacity(served.len() * 2);
    for addr in served {
        if addr.port() == 0 {
            return Err(XdpError::Config(format!(
                "served address {addr} has port 0"
            )));
        }
        for port in [addr.port(), 0] {
            let mut key = [0u8; SERVED_KEY_LEN];
            key[2..4].copy_from_slice(&port.to_be_bytes());
            match addr.ip() {
                IpAddr::V4(ip) => {
                    key[0] = 4;
                    key[4..8].copy_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    key[0] = 6;
                    key[4..20].copy_from_slice(&ip.octets());
                }
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    if keys.len() > MAX_SERVED_KEYS {
        return Err(XdpError::Config(format!(
            "too many served addresses: {} map entries needed, {MAX_SERVED_KEYS} available",
            keys.len()
        )));
    }
    Ok(keys)
}

/// The number of possible CPUs, the number of values a per-CPU map lookup returns.
fn possible_cpus() -> Result<usize, XdpError> {
    let path = "/sys/devices/system/cpu/possible";
    let text = fs::read_to_string(path).map_err(|source| XdpError::Os {
        action: "reading the possible CPUs",
        ifname: path.to_owned(),
        source,
    })?;
    parse_cpu_list(text.trim())
        .ok_or_else(|| XdpError::Config(format!("cannot parse {path}: {text:?}")))
}

/// Counts the CPUs of a kernel CPU list such as `0-3,8,10-11`.
fn parse_cpu_list(list: &str) -> Option<usize> {
    list.split(',').try_fold(0usize, |count, range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last) = (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?);
        Some(count + last.checked_sub(first)? + 1)
    })
}

fn load(ifname: &str) -> Result<Loaded, XdpError> {
    let object = Object::load(OBJECT, c"synwall", ifname)?;
    Ok(Loaded {
        prog_fd: object.program_fd(PROGRAM_NAME)?,
        served: object.map(c"served")?,
        xsks: object.map(c"xsks")?,
        counters: object.map(c"counters")?,
        handing_off: object.map(c"handing_off")?,
        tw_handshakes: object.map(c"tw_handshakes")?,
        vlans: object.map(c"vlans")?,
        kernel_handshakes: object.map(c"kernel_handshakes")?,
        completions_until: object.map(c"completions_until")?,
        _object: object,
    })
}

/// Removes synwall programs that were attached the old way (netlink) and so outlived their
/// process; refuses when a foreign program or a live synwall (a BPF link) holds the interface.
fn remove_stale(ifindex: u32, ifname: &str) -> Result<(), XdpError> {
    let ifindex_c = ifindex_c(ifindex)?;
    let attached = xdp_programs(ifindex)
        .map_err(|source| XdpError::from_os("querying attached XDP programs", ifname, source))?;
    for XdpProgram { mode, program } in attached {
        let (flags, ip_keyword) = match mode {
            XdpAttachMode::Generic => (XDP_FLAGS_SKB_MODE, "xdpgeneric"),
            XdpAttachMode::Native => (XDP_FLAGS_DRV_MODE, "xdpdrv"),
            // Offloaded programs run in the NIC and do not hold the driver's hook.
            XdpAttachMode::Offloaded => continue,
        };
        let (id, mode) = (program.id, mode.name());
        let Some(name) = &program.name else {
            continue; // gone meanwhile
        };
        if !program.is_named(PROGRAM_NAME) {
            return Err(XdpError::ForeignProgram {
                ifname: ifname.to_owned(),
                name: name.clone(),
                id,
                mode,
                ip_keyword,
            });
        }
        // SAFETY: plain call with scalar arguments; no options.
        let ret = unsafe { ffi::bpf_xdp_detach(ifindex_c, flags, ptr::null()) };
        if ret == -libc::EBUSY {
            // Only a BPF link refuses a netlink detach, and a link lives as long as its process.
            return Err(XdpError::AlreadyServed {
                ifname: ifname.to_owned(),
                id,
            });
        }
        if ret < 0 {
            return Err(XdpError::from_os(
                "detaching a stale XDP program",
                ifname,
                neg_errno(ret),
            ));
        }
        tracing::warn!(ifname, id, mode, "removed a stale synwall XDP program");
    }
    Ok(())
}

/// Attaches through a BPF link; returns the link and the mode it got.
fn attach_link(
    prog_fd: RawFd,
    ifindex: u32,
    ifname: &str,
    mode: XdpMode,
) -> Result<(OwnedFd, XdpMode), XdpError> {
    let create = |flags: u32| link(prog_fd, ifindex, ffi::bpf_attach_type_BPF_XDP, flags);
    let fail = |mode: &'static str, source: io::Error| {
        if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            return XdpError::from_os("attaching the XDP program", ifname, source);
        }
        let hint = match source.raw_os_error() {
            Some(libc::EBUSY | libc::EEXIST) => {
                "; another XDP program is attached (ip link show dev <ifname>)"
            }
            Some(libc::EOPNOTSUPP) => "; the driver has no native XDP: use generic mode",
            Some(libc::ERANGE | libc::EINVAL) => {
                "; native mode may refuse a large MTU (veth: lower the peer's MTU, e.g. 1500)"
            }
            _ => "",
        };
        XdpError::Attach {
            ifname: ifname.to_owned(),
            mode,
            source,
            hint,
        }
    };
    match mode {
        XdpMode::Native => create(XDP_FLAGS_DRV_MODE)
            .map(|link| (link, XdpMode::Native))
            .map_err(|e| fail("native", e)),
        XdpMode::Generic => create(XDP_FLAGS_SKB_MODE)
            .map(|link| (link, XdpMode::Generic))
            .map_err(|e| fail("generic", e)),
        XdpMode::Auto => match create(XDP_FLAGS_DRV_MODE) {
            Ok(link) => Ok((link, XdpMode::Native)),
            Err(native) => {
                tracing::info!(ifname, error = %native, "native XDP refused, trying generic");
                create(XDP_FLAGS_SKB_MODE)
                    .map(|link| (link, XdpMode::Generic))
                    .map_err(|e| fail("native, then generic", e))
            }
        },
    }
}

fn ifindex_c(ifindex: u32) -> Result<i32, XdpError> {
    i32::try_from(ifindex).map_err(|_| XdpError::Config(format!("ifindex {ifindex} out of range")))
}

#[cfg(test)]
mod tests;
