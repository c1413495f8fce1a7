//! What BPF programs are attached where, read without changing anything, in the calling thread's
//! network namespace: the interfaces ([`interfaces`]), the XDP programs of one interface and
//! their modes ([`xdp_programs`], libbpf's `bpf_xdp_query` over netlink), the programs on an
//! interface's tcx ingress ([`tcx_ingress_programs`], `BPF_PROG_QUERY`), each with its name
//! when it can be read. `synwall status` and the steering program's stale-copy check read here.
//!
//! Owns nothing past a call. Privileges: listing interfaces and XDP program ids needs none; the
//! tcx query needs CAP_NET_ADMIN, and a program's name CAP_SYS_ADMIN (the kernel's rule for
//! `BPF_PROG_GET_FD_BY_ID`). Without them the tcx query fails with EPERM, which is returned as
//! such (never taken for "nothing attached"), and names are `None`.

use std::ffi::CStr;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use libxdp_sys as ffi;

use super::error::neg_errno;

/// The most tcx programs one query reads: far more than any interface carries.
const MAX_TCX_PROGRAMS: usize = 64;

/// How an XDP program is attached to its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (`xdpdrv`).
    Native,
    /// On the generic path, after the socket buffer is built (`xdpgeneric`).
    Generic,
    /// In the NIC itself (`xdpoffload`).
    Offloaded,
}

impl XdpAttachMode {
    /// As `synwall status` and `xdp-loader status` spell it: native, generic, offloaded.
    pub fn name(self) -> &'static str {
        match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
            XdpAttachMode::Offloaded => "offloaded",
        }
    }
}

/// A program attached somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    /// The kernel's id of the program (`bpftool prog show id ID`).
    pub id: u32,
    /// The program's name (its function's name, cut at 15 bytes); `None` when it cannot be read
    /// here (no CAP_SYS_ADMIN) or the program went away meanwhile.
    pub name: Option<String>,
}

impl AttachedProgram {
    fn with_id(id: u32) -> AttachedProgram {
        AttachedProgram {
            id,
            name: program_name(id),
        }
    }

    /// Whether the program is named `name`.
    pub fn is_named(&self, name: &CStr) -> bool {
        self.name.as_deref().map(str::as_bytes) == Some(name.to_bytes())
    }
}

/// An XDP program on an interface, and how it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XdpProgram {
    pub mode: XdpAttachMode,
    pub program: AttachedProgram,
}

/// Every network interface: index and name, in index order.
pub fn interfaces() -> io::Result<Vec<(u32, String)>> {
    let mut interfaces: Vec<(u32, String)> = nix::net::if_::if_nameindex()
        .map_err(io::Error::from)?
        .iter()
        .map(|interface| {
            (
                interface.index(),
                interface.name().to_string_lossy().into_owned(),
            )
        })
        .collect();
    interfaces.sort_unstable();
    Ok(interfaces)
}

/// The XDP programs attached to the interface `ifindex`: at most one per mode.
pub fn xdp_programs(ifindex: u32) -> io::Result<Vec<XdpProgram>> {
    let ifindex = c_ifindex(ifindex)?;
    // SAFETY: bpf_xdp_query_opts is a plain C struct; all-zero is its documented default.
    let mut query: ffi::bpf_xdp_query_opts = unsafe { mem::zeroed() };
    query.sz = mem::size_of::<ffi::bpf_xdp_query_opts>();
    // SAFETY: query is initialised with its size and outlives the call.
    let ret = unsafe { ffi::bpf_xdp_query(ifindex, 0, &mut query) };
    if ret < 0 {
        return Err(neg_errno(ret));
    }
    Ok([
        (query.drv_prog_id, XdpAttachMode::Native),
        (query.skb_prog_id, XdpAttachMode::Generic),
        (query.hw_prog_id, XdpAttachMode::Offloaded),
    ]
    .into_iter()
    .filter(|&(id, _)| id != 0)
    .map(|(id, mode)| XdpProgram {
        mode,
        program: AttachedProgram::with_id(id),
    })
    .collect())
}

/// The programs on the tcx ingress hook of the interface `ifindex`, in the order they run.
/// Fails with EINVAL on kernels without tcx (before 6.6), EPERM without CAP_NET_ADMIN.
pub fn tcx_ingress_programs(ifindex: u32) -> io::Result<Vec<AttachedProgram>> {
    let ifindex = c_ifindex(ifindex)?;
    let mut ids = [0u32; MAX_TCX_PROGRAMS];
    // SAFETY: bpf_prog_query_opts is a plain C struct; all-zero is its documented default.
    let mut query: ffi::bpf_prog_query_opts = unsafe { mem::zeroed() };
    query.sz = mem::size_of::<ffi::bpf_prog_query_opts>();
    query.prog_ids = ids.as_mut_ptr();
    query.__bindgen_anon_1.count = MAX_TCX_PROGRAMS as u32;
    // SAFETY: query is initialised with its size and outlives the call; prog_ids points at
    // `ids`, which holds the `count` entries the kernel may write.
    let ret = unsafe { ffi::bpf_prog_query_opts(ifindex, libbpf_sys::BPF_TCX_INGRESS, &mut query) };
    // ENOSPC: more programs than `ids` holds; the first ones were written.
    if ret < 0 && ret != -libc::ENOSPC {
        return Err(neg_errno(ret));
    }
    // SAFETY: both members of the union are the same u32; the kernel wrote the count.
    let count = unsafe { query.__bindgen_anon_1.count } as usize;
    Ok(ids[..count.min(MAX_TCX_PROGRAMS)]
        .iter()
        .map(|&id| AttachedProgram::with_id(id))
        .collect())
}

/// The name of the program with this id; `None` when it no longer exists or cannot be opened
/// here.
fn program_name(id: u32) -> Option<String> {
    // SAFETY: plain call with a scalar argument.
    let fd = unsafe { ffi::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh program fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: bpf_prog_info is a plain C struct; all-zero asks for no arrays.
    let mut info: ffi::bpf_prog_info = unsafe { mem::zeroed() };
    let mut len = u32::try_from(mem::size_of::<ffi::bpf_prog_info>()).ok()?;
    // SAFETY: info and len are live and len is info's size; all array pointers in info are
    // null with zero counts, so the kernel writes nothing else.
    let ret = unsafe { ffi::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if ret < 0 {
        return None;
    }
    let bytes: Vec<u8> = info
        .name
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn c_ifindex(ifindex: u32) -> io::Result<i32> {
    i32::try_from(ifindex).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("ifindex {ifindex} out of range"),
        )
    })
}
