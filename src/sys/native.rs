//! Native handoff: a completed handshake becomes an ordinary socket in the protected service's
//! own accept queue, built by the kernel (kfunc `bpf_sk_assign_tcp_reqsk`, Linux 6.9+) with the
//! values synwall negotiated, the client's real address and the data of its final ACK.
//!
//! [`NativeHandoff::attach`] checks that this kernel and network namespace can do it, loads
//! `src/bpf/handoff.bpf.c` and attaches it to the loopback device's tcx ingress through a BPF
//! link, which goes with the process (as the steering program does): if synwall stops, nothing
//! of it is left on the loopback device. [`NativeHandoff::hand_off`] records the handshake's
//! values in the program's `pending` map, sends the final ACK to the local stack through a raw
//! socket (it crosses `lo`, where the program hands it to the listener), and reads back what the
//! program did. A reconnect over a 4-tuple that a TIME-WAIT socket still holds first ends that
//! socket (`sock_diag`), as the kernel's own listener does for a new SYN.
//!
//! Owns the program, its map and its link. Thread-safe: workers share one.

use std::ffi::CStr;
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::thread;
use std::time::{Duration, Instant};

use super::bpf::{Map, Object, SOCK_TUPLE_LEN, link, sock_tuple};
use super::error::XdpError;
use super::inject::RawInjector;
use super::{interface_index, sock_diag};
use crate::device::LocalDelivery;
use crate::listener::Accepted;

/// The compiled program, embedded at build time (see build.rs).
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/handoff.bpf.o"));
/// The program's function name in handoff.bpf.c; how `synwall status` recognises it.
pub const PROGRAM_NAME: &CStr = c"synwall_handoff";
/// The kfunc, as the kernel's BTF names it.
const KFUNC: &str = "bpf_sk_assign_tcp_reqsk";
/// The kernel's own BTF: every function a BPF program may call is named in it. Readable where
/// /proc/kallsyms is not (systemd's ProtectKernelTunables hides that).
const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";
/// Size of `struct pending_handoff` in handoff.bpf.c: the kfunc's 20-byte attributes and a
/// 4-byte status.
const PENDING_LEN: usize = 24;
/// `enum status` in handoff.bpf.c.
const STATUS_PENDING: i32 = 1;
const STATUS_NO_LISTENER: i32 = 2;
const STATUS_TIME_WAIT: i32 = 3;
const STATUS_OCCUPIED: i32 = 4;
/// How long the program may take to see an injected ACK. The stack takes it in within the
/// `sendto` call, unless the CPU's softirq work is deferred to ksoftirqd (a flood).
const SEEN_WITHIN: Duration = Duration::from_millis(500);
/// The largest final ACK: headers, timestamps and one MSS of early data.
const MAX_ACK: usize = 9100;

/// Why native handoff cannot run here: each names the cause and what to do.
#[derive(Debug, thiserror::Error)]
pub enum NativeUnavailable {
    #[error("this kernel has no {KFUNC} (Linux 6.9 or later, with BTF)")]
    NoKfunc,
    #[error(
        "net.ipv4.tcp_syncookies is 0 in this network namespace: the kernel takes natively \
         handed connections through its SYN-cookie path, so set it to 1 (the default) or 2"
    )]
    SyncookiesOff,
    #[error("cannot attach to the loopback device's tcx ingress (Linux 6.6 or later): {0}")]
    NoTcx(io::Error),
    #[error("loading the native handoff program: {0}")]
    Load(#[from] XdpError),
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        source: io::Error,
    },
}

/// Why one connection could not be handed over natively. Each is counted on its own.
#[derive(Debug, thiserror::Error)]
pub enum NativeRefusal {
    #[error("nothing listens on {0}")]
    NoListener(SocketAddr),
    #[error("another socket holds the connection's 4-tuple")]
    Occupied,
    #[error("a TIME-WAIT socket of the 4-tuple could not be ended: {0}")]
    TimeWait(io::Error),
    /// The kfunc refused the handshake's values; the errno it returned.
    #[error("the kernel refused the handshake's values: {}", io::Error::from_raw_os_error(*.0))]
    Refused(i32),
    #[error("the final ACK did not reach the handoff program within {SEEN_WITHIN:?}")]
    NotSeen,
    #[error("{step}: {source}")]
    Os {
        step: &'static str,
        source: io::Error,
    },
}

/// See the module documentation.
pub struct NativeHandoff {
    // Field order is drop order: the link goes first, so the program is detached before the
    // object holding it is closed.
    _link: OwnedFd,
    _object: Object,
    pending: Map<SOCK_TUPLE_LEN, PENDING_LEN>,
}

impl std::fmt::Debug for NativeHandoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeHandoff").finish_non_exhaustive()
    }
}

/// Whether this kernel has the kfunc and SYN cookies are on in the calling thread's network
/// namespace: what native handoff needs besides the privileges to attach its program.
pub fn check() -> Result<(), NativeUnavailable> {
    let read = |path: &'static str| {
        std::fs::read(path).map_err(|source| NativeUnavailable::Read { path, source })
    };
    let btf = match read(KERNEL_BTF) {
        Ok(btf) => btf,
        Err(NativeUnavailable::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Err(NativeUnavailable::NoKfunc);
        }
        Err(error) => return Err(error),
    };
    // A name in the BTF string section, ended by its NUL.
    let name = [KFUNC.as_bytes(), &[0]].concat();
    if !btf.windows(name.len()).any(|window| window == name) {
        return Err(NativeUnavailable::NoKfunc);
    }
    if read("/proc/sys/net/ipv4/tcp_syncookies")?.trim_ascii() == b"0" {
        return Err(NativeUnavailable::SyncookiesOff);
    }
    Ok(())
}

impl NativeHandoff {
    /// [`check`]s, then loads the program and attaches it to the calling thread's network
    /// namespace's `lo`.
    pub fn attach() -> Result<NativeHandoff, NativeUnavailable> {
        check()?;
        let object = Object::load(OBJECT, c"synwall_handoff", "lo")?;
        let prog_fd = object.program_fd(PROGRAM_NAME)?;
        let pending = object.map(c"pending")?;
        let lo = interface_index("lo")?;
        let link =
            link(prog_fd, lo, libbpf_sys::BPF_TCX_INGRESS, 0).map_err(NativeUnavailable::NoTcx)?;
        Ok(NativeHandoff {
            _link: link,
            _object: object,
            pending,
        })
    }

    /// Hands `accepted` to the listener of its local address; `injector` takes the final ACK
    /// to the local stack. On success the service's `accept()` has (or will have) it.
    pub fn hand_off(
        &self,
        accepted: &Accepted,
        injector: &mut RawInjector,
    ) -> Result<(), NativeRefusal> {
        let key = sock_tuple(&accepted.tuple);
        let mut buffer = [0u8; MAX_ACK];
        let ack = accepted
            .final_ack(&mut buffer)
            .map_err(|error| NativeRefusal::Os {
                step: "building the final ACK",
                source: io::Error::new(io::ErrorKind::InvalidInput, error),
            })?;
        let mut status = self.attempt(&key, accepted, ack, injector)?;
        if status == STATUS_TIME_WAIT {
            // As the kernel's listener does for a new SYN over a TIME-WAIT socket: end it.
            sock_diag::destroy_time_wait(&accepted.tuple).map_err(NativeRefusal::TimeWait)?;
            status = self.attempt(&key, accepted, ack, injector)?;
        }
        match status {
            0 => Ok(()),
            STATUS_NO_LISTENER => Err(NativeRefusal::NoListener(accepted.tuple.local)),
            STATUS_OCCUPIED | STATUS_TIME_WAIT => Err(NativeRefusal::Occupied),
            errno if errno < 0 => Err(NativeRefusal::Refused(-errno)),
            _ => Err(NativeRefusal::NotSeen),
        }
    }

    /// Records `accepted`, injects `ack` and returns the program's status for it.
    fn attempt(
        &self,
        key: &[u8; SOCK_TUPLE_LEN],
        accepted: &Accepted,
        ack: &[u8],
        injector: &mut RawInjector,
    ) -> Result<i32, NativeRefusal> {
        let os = |step| move |source| NativeRefusal::Os { step, source };
        self.pending
            .update(key, &pending_entry(accepted))
            .map_err(os("recording the handshake for the handoff program"))?;
        let outcome = injector
            .deliver(ack)
            .map_err(os("sending the final ACK to the local stack"))
            .and_then(|()| self.wait_for_status(key));
        // Whatever happened, the entry goes: a late ACK then meets no entry and is not
        // handed over behind the worker's back.
        let _ = self.pending.delete(key);
        outcome
    }

    /// The status the program wrote for `key`, waiting until it wrote one.
    fn wait_for_status(&self, key: &[u8; SOCK_TUPLE_LEN]) -> Result<i32, NativeRefusal> {
        let deadline = Instant::now() + SEEN_WITHIN;
        let mut nap = Duration::from_micros(20);
        loop {
            let entry = self
                .pending
                .lookup(key)
                .map_err(|source| NativeRefusal::Os {
                    step: "reading the handoff program's outcome",
                    source,
                })?
                .ok_or(NativeRefusal::NotSeen)?;
            let status = i32::from_ne_bytes(entry[20..24].try_into().expect("4 bytes"));
            if status != STATUS_PENDING {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(NativeRefusal::NotSeen);
            }
            thread::sleep(nap);
            nap = (nap * 2).min(Duration::from_millis(5));
        }
    }
}

/// `struct pending_handoff` for `accepted`: the kfunc's attributes (`struct bpf_tcp_req_attrs`)
/// and the status `STATUS_PENDING`.
fn pending_entry(accepted: &Accepted) -> [u8; PENDING_LEN] {
    let mut entry = [0u8; PENDING_LEN];
    if let Some(timestamps) = accepted.timestamps {
        // rcv_tsval: the peer's clock; rcv_tsecr: ours as the SYN-ACK carried it, from which
        // the kernel's clock for the connection continues.
        entry[0..4].copy_from_slice(&timestamps.value.to_ne_bytes());
        entry[4..8].copy_from_slice(&timestamps.echo.to_ne_bytes());
        entry[15] = 1; // tstamp_ok
    }
    entry[8..10].copy_from_slice(&accepted.mss.to_ne_bytes());
    if let Some(scale) = accepted.window_scale {
        entry[10] = scale.receive; // rcv_wscale: ours
        entry[11] = scale.send; // snd_wscale: the peer's
        entry[13] = 1; // wscale_ok
    }
    entry[12] = u8::from(accepted.ecn);
    entry[14] = u8::from(accepted.sack_permitted);
    // usec_ts_ok (16) and reserved (17..20) stay zero.
    entry[20..24].copy_from_slice(&STATUS_PENDING.to_ne_bytes());
    entry
}
