//! [`Wakeup`]: an event (eventfd) that wakes a fast-path thread sleeping in `poll(2)` on its
//! AF_XDP socket, so that work arriving from another thread (a handoff report) is taken at once
//! instead of when the sleep times out.
//!
//! Owns one eventfd, non-blocking. Any thread may [`Wakeup::wake`]; the sleeping thread polls
//! [`Wakeup::fd`] beside its socket and [`Wakeup::clear`]s it when it fired.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::device::Wake;

/// See the module documentation.
#[derive(Debug)]
pub struct Wakeup(OwnedFd);

impl Wakeup {
    pub fn new() -> io::Result<Wakeup> {
        // SAFETY: plain call with scalar arguments.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh eventfd that nothing else owns.
        Ok(Wakeup(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The fd to poll for `POLLIN`.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Resets the event after it fired.
    pub fn clear(&self) {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (not fired) leaves it untouched.
        let _ = unsafe {
            libc::read(
                self.0.as_fd().as_raw_fd(),
                (&raw mut count).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

impl Wake for Wakeup {
    fn wake(&self) {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live u64. EAGAIN (the counter is saturated) means the
        // event is pending anyway.
        let _ = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                (&raw const one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

/// Waits until `fd` is readable, `wakeup` fires or `timeout_ms` passes (`poll(2)`; a negative
/// timeout waits forever). Returns whether `fd` is readable; clears `wakeup` if it fired.
pub(super) fn poll_readable(fd: RawFd, wakeup: &Wakeup, timeout_ms: i32) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wakeup.fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live array of two pollfds, and its length is passed.
    let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if ret < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(error);
    }
    if fds[1].revents != 0 {
        wakeup.clear();
    }
    Ok(fds[0].revents & libc::POLLIN != 0)
}
