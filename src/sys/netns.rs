//! Entering a named network namespace (`ip netns add NAME`, i.e. `/run/netns/NAME`).
//!
//! Owns nothing: the switch applies to the calling thread only, and threads it spawns
//! afterwards inherit it. Sockets, XDP attachments and interface lookups made by that thread
//! then belong to the namespace. `/sys` is not remounted (unlike `ip netns exec`).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Moves the calling thread into the network namespace `name` (a file in /run/netns).
pub fn enter(name: &str) -> io::Result<()> {
    if name.contains('/') || name.is_empty() || name == "." || name == ".." {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad network namespace name {name:?}"),
        ));
    }
    let file = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: the fd is open for the duration of the call; setns only reads it.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
