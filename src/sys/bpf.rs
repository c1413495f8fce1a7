//! The BPF objects synwall embeds (src/bpf/*.bpf.c, compiled by build.rs), loaded with libbpf,
//! and their maps.
//!
//! Owns one libbpf object per [`Object`]: its programs and maps live as long as it does. A
//! [`Map`] is a map's fd with its key and value sizes, checked against the object's own BTF
//! sizes when it is looked up, so the Rust side and the C side cannot silently disagree on a
//! layout: a mismatch fails at load with the map's name.
//!
//! Keys and values cross as byte arrays (`[u8; K]`, `[u8; V]`), built field by field by the
//! caller: no Rust struct with padding is ever handed to the kernel.

use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};

use libxdp_sys as ffi;

use super::error::{XdpError, neg_errno};
use crate::wire::FourTuple;

/// A loaded libbpf object; closing it releases the program and map fds it holds.
pub(super) struct Object {
    raw: NonNull<ffi::bpf_object>,
    /// The object's name, for errors.
    name: &'static CStr,
}

// SAFETY: the pointer is only dereferenced by libbpf in calls that take `&self` to look up
// programs and maps (read-only walks of the loaded object) and in `Drop`, which has exclusive
// access; every other use goes through fds, and the bpf() system call is thread-safe.
unsafe impl Send for Object {}
// SAFETY: as above; nothing mutates the object through `&self`.
unsafe impl Sync for Object {}

impl Drop for Object {
    fn drop(&mut self) {
        // SAFETY: the pointer came from a successful bpf_object__open_mem and is closed once.
        unsafe { ffi::bpf_object__close(self.raw.as_ptr()) };
    }
}

impl Object {
    /// Opens `bytes` (an ELF object embedded at build time) as `name` and loads it into the
    /// kernel. `context` names the interface or device for permission errors.
    pub fn load(
        bytes: &'static [u8],
        name: &'static CStr,
        context: &str,
    ) -> Result<Object, XdpError> {
        Object::load_sharing(bytes, name, context, &[])
    }

    /// [`Object::load`], with each map named in `shared` being the given map of another object
    /// (the fd of a map with the same definition) instead of a new one.
    pub fn load_sharing(
        bytes: &'static [u8],
        name: &'static CStr,
        context: &str,
        shared: &[(&CStr, RawFd)],
    ) -> Result<Object, XdpError> {
        // SAFETY: bpf_object_open_opts is a plain C struct; all-zero is its documented default.
        let mut opts: ffi::bpf_object_open_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<ffi::bpf_object_open_opts>();
        opts.object_name = name.as_ptr();
        // SAFETY: `bytes` is a 'static buffer that libbpf only reads; opts is initialised with its
        // size and its string is 'static.
        let raw = unsafe { ffi::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len(), &opts) };
        let Some(raw) = NonNull::new(raw) else {
            return Err(XdpError::Load {
                what: "opening the embedded object",
                source: io::Error::last_os_error(),
            });
        };
        let object = Object { raw, name };
        for &(map_name, fd) in shared {
            let map = object.find_map(map_name)?;
            // SAFETY: `map` belongs to the open object; libbpf duplicates `fd`, which stays ours.
            let ret = unsafe { ffi::bpf_map__reuse_fd(map, fd) };
            if ret < 0 {
                return Err(XdpError::Load {
                    what: "sharing a map with another BPF object",
                    source: neg_errno(ret),
                });
            }
        }
        // SAFETY: the object is open; libbpf returns its status as a negative errno.
        let ret = unsafe { ffi::bpf_object__load(object.raw.as_ptr()) };
        if ret < 0 {
            let source = neg_errno(ret);
            if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
                return Err(XdpError::from_os("loading a BPF program", context, source));
            }
            return Err(XdpError::Load {
                what: "loading into the kernel",
                source,
            });
        }
        Ok(object)
    }

    /// The fd of program `name` (its function name in the C source).
    pub fn program_fd(&self, name: &CStr) -> Result<RawFd, XdpError> {
        // SAFETY: the object is open and loaded; the name is a valid C string.
        let program =
            unsafe { ffi::bpf_object__find_program_by_name(self.raw.as_ptr(), name.as_ptr()) };
        if program.is_null() {
            return Err(self.missing("a program", name));
        }
        // SAFETY: `program` belongs to the loaded object.
        let fd = unsafe { ffi::bpf_program__fd(program) };
        if fd < 0 {
            return Err(self.missing("the fd of a program", name));
        }
        Ok(fd)
    }

    /// Map `name`, whose keys must be `K` bytes and values `V` bytes (per CPU, for per-CPU
    /// maps).
    pub fn map<const K: usize, const V: usize>(&self, name: &CStr) -> Result<Map<K, V>, XdpError> {
        let map = self.find_map(name)?;
        // SAFETY: `map` belongs to the loaded object; these read its definition.
        let (fd, key_size, value_size) = unsafe {
            (
                ffi::bpf_map__fd(map),
                ffi::bpf_map__key_size(map),
                ffi::bpf_map__value_size(map),
            )
        };
        if fd < 0 {
            return Err(self.missing("the fd of a map", name));
        }
        if (key_size as usize, value_size as usize) != (K, V) {
            return Err(XdpError::Config(format!(
                "BPF object {:?}: map {name:?} has {key_size}-byte keys and {value_size}-byte \
                 values, synwall expects {K} and {V}: the C and Rust layouts disagree",
                self.name
            )));
        }
        Ok(Map { fd })
    }

    /// The fd and data size of ring buffer `name`.
    pub fn ring_buffer(&self, name: &CStr) -> Result<(RawFd, usize), XdpError> {
        let map = self.find_map(name)?;
        // SAFETY: `map` belongs to the loaded object; these read its definition.
        let (fd, kind, size) = unsafe {
            (
                ffi::bpf_map__fd(map),
                ffi::bpf_map__type(map),
                ffi::bpf_map__max_entries(map),
            )
        };
        if fd < 0 || kind != ffi::bpf_map_type_BPF_MAP_TYPE_RINGBUF {
            return Err(self.missing("a ring buffer", name));
        }
        Ok((fd, size as usize))
    }

    /// Map `name` of the object (open, loaded or not).
    fn find_map(&self, name: &CStr) -> Result<*mut ffi::bpf_map, XdpError> {
        // SAFETY: the object is open; the name is a valid C string.
        let map = unsafe { ffi::bpf_object__find_map_by_name(self.raw.as_ptr(), name.as_ptr()) };
        if map.is_null() {
            return Err(self.missing("a map", name));
        }
        Ok(map)
    }

    fn missing(&self, what: &'static str, name: &CStr) -> XdpError {
        XdpError::Config(format!(
            "BPF object {:?} has no {what} named {name:?}",
            self.name
        ))
    }
}

/// A map of an [`Object`], with `K`-byte keys and `V`-byte values; valid while the object is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Map<const K: usize, const V: usize> {
    fd: RawFd,
}

impl<const K: usize, const V: usize> Map<K, V> {
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Sets `key` to `value` (BPF_ANY: creates or replaces).
    pub fn update(&self, key: &[u8; K], value: &[u8; V]) -> io::Result<()> {
        // SAFETY: key and value point to live buffers of the map's key and value sizes
        // (checked in `Object::map`).
        let ret = unsafe {
            ffi::bpf_map_update_elem(
                self.fd,
                key.as_ptr().cast(),
                value.as_ptr().cast(),
                u64::from(ffi::BPF_ANY),
            )
        };
        if ret < 0 {
            return Err(neg_errno(ret));
        }
        Ok(())
    }

    /// Inserts or replaces `entries`, in one system call.
    pub fn update_batch(&self, keys: &[[u8; K]], values: &[[u8; V]]) -> io::Result<()> {
        assert_eq!(keys.len(), values.len(), "one value per key");
        let mut count = u32::try_from(keys.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many entries"))?;
        if count == 0 {
            return Ok(());
        }
        // SAFETY: bpf_map_batch_opts is a plain C struct; all-zero is its documented default.
        let mut opts: ffi::bpf_map_batch_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<ffi::bpf_map_batch_opts>();
        // SAFETY: `keys` and `values` hold `count` contiguous keys of K bytes and values of V
        // bytes (arrays of byte arrays have no padding), which the kernel only reads; `count`
        // and `opts` outlive the call.
        let ret = unsafe {
            ffi::bpf_map_update_batch(
                self.fd,
                keys.as_ptr().cast(),
                values.as_ptr().cast(),
                &mut count,
                ptr::from_ref(&opts),
            )
        };
        if ret < 0 {
            return Err(neg_errno(ret));
        }
        Ok(())
    }

    /// The value of `key`, or `None` when the map has no such key.
    pub fn lookup(&self, key: &[u8; K]) -> io::Result<Option<[u8; V]>> {
        let mut value = [0u8; V];
        // SAFETY: key points to a live buffer of the key size, value to a writable one of the
        // value size (checked in `Object::map`); the kernel writes at most that much.
        let ret = unsafe {
            ffi::bpf_map_lookup_elem(self.fd, key.as_ptr().cast(), value.as_mut_ptr().cast())
        };
        match ret {
            0 => Ok(Some(value)),
            ret if ret == -libc::ENOENT => Ok(None),
            ret => Err(neg_errno(ret)),
        }
    }

    /// Removes `key`; false when it was not there.
    pub fn delete(&self, key: &[u8; K]) -> io::Result<bool> {
        // SAFETY: key points to a live buffer of the map's key size (checked in `Object::map`).
        let ret = unsafe { ffi::bpf_map_delete_elem(self.fd, key.as_ptr().cast()) };
        match ret {
            0 => Ok(true),
            ret if ret == -libc::ENOENT => Ok(false),
            ret => Err(neg_errno(ret)),
        }
    }
}

/// Attaches program `prog_fd` to interface `ifindex` at `attach_type` through a BPF link, with
/// link-creation `flags`; the program stays attached as long as the returned fd is open, which
/// is at most as long as the process lives.
pub(super) fn link(
    prog_fd: RawFd,
    ifindex: u32,
    attach_type: ffi::bpf_attach_type,
    flags: u32,
) -> io::Result<OwnedFd> {
    let ifindex = i32::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
    // SAFETY: bpf_link_create_opts is a plain C struct; all-zero is its documented default.
    let mut opts: ffi::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<ffi::bpf_link_create_opts>();
    opts.flags = flags;
    // SAFETY: prog_fd is a loaded program's fd; opts is initialised with its size and outlives
    // the call.
    let fd = unsafe { ffi::bpf_link_create(prog_fd, ifindex, attach_type, ptr::from_ref(&opts)) };
    if fd < 0 {
        return Err(neg_errno(fd));
    }
    // SAFETY: fd is a fresh link fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Size of `struct bpf_sock_tuple` (the IPv6 variant, the larger).
pub(super) const SOCK_TUPLE_LEN: usize = 36;
/// Size of `struct bpf_tcp_req_attrs`, the kfunc's attributes (kernel_handshake.h).
pub(super) const ATTRS_LEN: usize = 20;
/// Size of `struct kernel_handshake` (kernel_handshake.h): the attributes, the final ACK's
/// sequence and acknowledgment numbers, the shard's rx queue and a status.
pub(super) const KERNEL_HANDSHAKE_LEN: usize = ATTRS_LEN + 16;

/// `struct bpf_sock_tuple` for segments from the peer of `tuple`, zero-padded, as the BPF
/// programs build it: source = the peer, addresses and ports in network order.
pub(super) fn sock_tuple(tuple: &FourTuple) -> [u8; SOCK_TUPLE_LEN] {
    let mut key = [0u8; SOCK_TUPLE_LEN];
    let ports_at = match (tuple.remote.ip(), tuple.local.ip()) {
        (IpAddr::V4(peer), IpAddr::V4(local)) => {
            key[0..4].copy_from_slice(&peer.octets());
            key[4..8].copy_from_slice(&local.octets());
            8
        }
        (IpAddr::V6(peer), IpAddr::V6(local)) => {
            key[0..16].copy_from_slice(&peer.octets());
            key[16..32].copy_from_slice(&local.octets());
            32
        }
        _ => unreachable!("a connection's addresses share one family"),
    };
    key[ports_at..ports_at + 2].copy_from_slice(&tuple.remote.port().to_be_bytes());
    key[ports_at + 2..ports_at + 4].copy_from_slice(&tuple.local.port().to_be_bytes());
    key
}

/// The connection of `key`, a `struct bpf_sock_tuple` built as [`sock_tuple`] builds it; its
/// IPv6 variant when `ipv6`.
pub(super) fn four_tuple(key: &[u8; SOCK_TUPLE_LEN], ipv6: bool) -> FourTuple {
    let bytes = |at: usize, len: usize| &key[at..at + len];
    let (peer, local, ports_at): (IpAddr, IpAddr, usize) = if ipv6 {
        let octets = |at| <[u8; 16]>::try_from(bytes(at, 16)).expect("16 bytes");
        (octets(0).into(), octets(16).into(), 32)
    } else {
        let octets = |at| <[u8; 4]>::try_from(bytes(at, 4)).expect("4 bytes");
        (octets(0).into(), octets(4).into(), 8)
    };
    let port = |at| u16::from_be_bytes(bytes(at, 2).try_into().expect("2 bytes"));
    FourTuple {
        remote: SocketAddr::new(peer, port(ports_at)),
        local: SocketAddr::new(local, port(ports_at + 2)),
    }
}
