//! Errors of the XDP layer, each naming its cause and, where an operator can act, the remedy.
//!
//! Owns the mapping from raw errnos to causes: [`XdpError::from_os`] is the one place that
//! decides that EPERM means a missing capability and ENODEV a missing interface.

use std::io;

/// Why setting up or using the XDP program or an AF_XDP socket failed.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// The interface does not exist in the calling thread's network namespace.
    #[error("network interface {ifname:?} does not exist (in this network namespace)")]
    NoSuchInterface {
        /// The name asked for.
        ifname: String,
    },
    /// The kernel refused for lack of privileges.
    #[error(
        "{action} on {ifname}: {source}; run as root or grant CAP_NET_ADMIN, CAP_BPF and \
         CAP_NET_RAW (CAP_SYS_ADMIN on kernels older than 5.8)"
    )]
    PermissionDenied {
        /// What was being done.
        action: &'static str,
        /// The interface concerned.
        ifname: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The UMEM could not be registered: locked memory is limited.
    #[error(
        "{action} on {ifname}: {source}; the UMEM is locked memory: grant CAP_IPC_LOCK or raise \
         RLIMIT_MEMLOCK (ulimit -l, or LimitMEMLOCK= in a systemd unit)"
    )]
    LockedMemory {
        /// What was being done.
        action: &'static str,
        /// The interface concerned.
        ifname: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// Attaching the steering program failed.
    #[error("attaching the XDP program to {ifname} in {mode} mode: {source}{hint}")]
    Attach {
        /// The interface concerned.
        ifname: String,
        /// The XDP mode(s) tried.
        mode: &'static str,
        /// The kernel's answer.
        source: io::Error,
        /// A remedy, when the errno suggests one (empty otherwise).
        hint: &'static str,
    },
    /// Another program is attached to the interface, and it is not a stale synwall program.
    #[error(
        "{ifname} already runs XDP program {name:?} (id {id}, {mode} mode), which is not \
         synwall's: remove it first (ip link set dev {ifname} {ip_keyword} off)"
    )]
    ForeignProgram {
        /// The interface concerned.
        ifname: String,
        /// The program's name.
        name: String,
        /// The program's id.
        id: u32,
        /// "generic" or "native".
        mode: &'static str,
        /// The `ip link` keyword that removes it.
        ip_keyword: &'static str,
    },
    /// A live process owns the attached synwall program (through a BPF link).
    #[error(
        "{ifname} is already served by another running synwall (XDP program id {id} is held by \
         a BPF link); stop that process first"
    )]
    AlreadyServed {
        /// The interface concerned.
        ifname: String,
        /// The program's id.
        id: u32,
    },
    /// The rx queue already has an AF_XDP socket, and kept it for as long as synwall waited.
    #[error(
        "rx queue {queue_id} of {ifname} already has an AF_XDP socket: another program serves it \
         (or a stopped synwall's socket is still being released by the kernel)"
    )]
    QueueBusy {
        /// The interface concerned.
        ifname: String,
        /// The queue asked for.
        queue_id: u32,
    },
    /// An embedded BPF object could not be opened or loaded (the verifier log went to stderr).
    #[error(
        "loading a BPF program: {what}: {source} (libbpf printed the details, and the verifier log if any, to stderr)"
    )]
    Load {
        /// The step that failed.
        what: &'static str,
        /// The kernel's or libbpf's answer.
        source: io::Error,
    },
    /// A parameter is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Any other failure of a system call, with what was being done.
    #[error("{action} on {ifname}: {source}")]
    Os {
        /// What was being done.
        action: &'static str,
        /// The interface concerned.
        ifname: String,
        /// The kernel's answer.
        source: io::Error,
    },
}

impl XdpError {
    /// Maps an OS error to its cause: ENODEV → [`Self::NoSuchInterface`], EPERM/EACCES →
    /// [`Self::PermissionDenied`], anything else → [`Self::Os`].
    pub(crate) fn from_os(action: &'static str, ifname: &str, source: io::Error) -> Self {
        let ifname = ifname.to_owned();
        match source.raw_os_error() {
            Some(libc::ENODEV) => Self::NoSuchInterface { ifname },
            Some(libc::EPERM | libc::EACCES) => Self::PermissionDenied {
                action,
                ifname,
                source,
            },
            _ => Self::Os {
                action,
                ifname,
                source,
            },
        }
    }

    /// Like [`Self::from_os`], for UMEM registration: ENOBUFS/ENOMEM mean locked memory.
    pub(crate) fn from_umem(action: &'static str, ifname: &str, source: io::Error) -> Self {
        match source.raw_os_error() {
            Some(libc::ENOBUFS | libc::ENOMEM) => Self::LockedMemory {
                action,
                ifname: ifname.to_owned(),
                source,
            },
            _ => Self::from_os(action, ifname, source),
        }
    }
}

/// An [`io::Error`] from a negative errno as libbpf and libxdp return them.
pub(crate) fn neg_errno(ret: i32) -> io::Error {
    io::Error::from_raw_os_error(ret.saturating_neg())
}
