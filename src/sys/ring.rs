//! A BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`) read from user space: its pages mapped into the
//! process, its records read in the order they were reserved, with no system call.
//!
//! The kernel's layout (kernel/bpf/ringbuf.c): the first page of the map holds the consumer
//! position, which the reader writes; the next page the producer position, then the data,
//! mapped twice in a row so that a record never wraps. Each record starts with an 8-byte
//! header: its length, with a busy bit while the producer is writing it and a discard bit
//! when it gave it up, then 4 bytes of the kernel's own. Records are 8-byte aligned.

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The record header's size.
const HEADER_LEN: u64 = 8;
const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;

/// See the module documentation. Owns its two mappings.
pub(super) struct RingReader {
    /// The consumer page (read-write).
    consumer: Mapping,
    /// The producer page and the data, twice (read-only).
    producer: Mapping,
    page: usize,
    /// The data size minus one (the size is a power of two).
    mask: u64,
}

// SAFETY: the mappings are plain shared memory owned by this value; the positions in it are
// only accessed atomically, and `consume` takes `&mut self`.
unsafe impl Send for RingReader {}

struct Mapping {
    at: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: RawFd, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Mapping> {
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset out of range"))?;
        // SAFETY: a new shared mapping of the map's fd, at a place the kernel chooses; nothing
        // else in the process is touched.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd,
                offset,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            at: NonNull::new(at.cast()).ok_or_else(io::Error::last_os_error)?,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `Mapping::new` with this length and is unmapped once.
        unsafe { libc::munmap(self.at.as_ptr().cast(), self.len) };
    }
}

impl RingReader {
    /// Maps ring buffer `fd`, whose data size is `size` bytes (its `max_entries`).
    pub fn new(fd: RawFd, size: usize) -> io::Result<RingReader> {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::last_os_error())?;
        if !size.is_power_of_two() || size < page {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a ring buffer of {size} bytes: not a power of two of at least a page"),
            ));
        }
        let consumer = Mapping::new(fd, page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = Mapping::new(fd, page + 2 * size, libc::PROT_READ, page)?;
        Ok(RingReader {
            consumer,
            producer,
            page,
            mask: size as u64 - 1,
        })
    }

    /// Calls `f` with each record written since the last call, in order, then frees their
    /// space for the producer. Returns how many it read.
    pub fn consume(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        // SAFETY: both positions are 8-byte aligned u64s at the start of their pages, which
        // stay mapped while `self` lives; the kernel accesses them atomically too. The producer
        // page is read-only and only loaded from, which atomics of the native width allow
        // (std::sync::atomic, "Atomic accesses to read-only memory").
        let (consumer_pos, producer_pos) = unsafe {
            (
                &*self.consumer.at.as_ptr().cast::<AtomicU64>(),
                &*self.producer.at.as_ptr().cast::<AtomicU64>(),
            )
        };
        let mut position = consumer_pos.load(Ordering::Acquire);
        let end = producer_pos.load(Ordering::Acquire);
        let mut read = 0;
        while position < end {
            // `mask` keeps the offset within the data, and `page` is where the data starts.
            let offset =
                self.page + usize::try_from(position & self.mask).expect("within a mapping");
            // SAFETY: the header lies within the data (the offset is masked and the data is
            // mapped twice, so 8 bytes past any offset are mapped); it is 8-byte aligned, as
            // every record is, and only loaded from.
            let header = unsafe {
                (*self.producer.at.as_ptr().add(offset).cast::<AtomicU32>()).load(Ordering::Acquire)
            };
            if header & BUSY_BIT != 0 {
                break; // still being written: it and what follows are for the next call
            }
            let len = header & !(BUSY_BIT | DISCARD_BIT);
            if header & DISCARD_BIT == 0 {
                // SAFETY: the producer committed `len` bytes after the header, all within the
                // doubly mapped data; they stay untouched until the consumer position passes them.
                let record = unsafe {
                    std::slice::from_raw_parts(
                        self.producer.at.as_ptr().add(offset + HEADER_LEN as usize),
                        len as usize,
                    )
                };
                f(record);
                read += 1;
            }
            position += (u64::from(len) + HEADER_LEN).next_multiple_of(HEADER_LEN);
            consumer_pos.store(position, Ordering::Release);
        }
        read
    }
}
