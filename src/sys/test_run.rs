//! Test runs of a loaded XDP or TC program (BPF_PROG_TEST_RUN), for the lab and the tests only
//! (feature `lab`): what the program decides for a frame, and what it costs per frame.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use libxdp_sys as ffi;

use super::error::neg_errno;
use super::steer::XdpAction;

/// Runs XDP program `prog_fd` `repeat` times on `frame` (BPF_PROG_TEST_RUN, rx queue 0, in the
/// calling thread's network namespace): its decision, and the kernel's mean time per run.
/// Nothing is sent or redirected.
pub(super) fn test_run(
    prog_fd: RawFd,
    frame: &[u8],
    repeat: u32,
) -> io::Result<(XdpAction, Duration)> {
    let (retval, duration) = run(prog_fd, frame, &[], repeat)?;
    Ok((XdpAction::from(retval), duration))
}

/// What a tcx program decided for a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcxVerdict {
    /// `TCX_NEXT`: on to the next program, or the stack.
    Next,
    /// `TCX_PASS`: to the stack.
    Pass,
    /// `TCX_DROP`.
    Drop,
    /// Any other value.
    Other(i32),
}

/// Runs TC program `prog_fd` once on `frame`, an Ethernet frame as it reaches tcx ingress (in
/// the calling thread's network namespace, on its loopback device), the packet's priority
/// `priority`: its verdict. Nothing is delivered.
pub(super) fn test_run_tc(prog_fd: RawFd, frame: &[u8], priority: u32) -> io::Result<TcxVerdict> {
    // The start of a `struct __sk_buff` up to its `priority` (offset 32), the only field set:
    // the kernel takes a shorter context as zero-filled.
    let mut context = [0u8; 36];
    context[32..].copy_from_slice(&priority.to_ne_bytes());
    let (retval, _) = run(prog_fd, frame, &context, 1)?;
    Ok(match i32::from_ne_bytes(retval.to_ne_bytes()) {
        -1 => TcxVerdict::Next,
        0 => TcxVerdict::Pass,
        2 => TcxVerdict::Drop,
        other => TcxVerdict::Other(other),
    })
}

/// BPF_PROG_TEST_RUN of `prog_fd`, `repeat` times on `frame` with the program's context
/// starting as `context` (none when empty): the return value of the last run and the kernel's
/// mean time per run.
fn run(prog_fd: RawFd, frame: &[u8], context: &[u8], repeat: u32) -> io::Result<(u32, Duration)> {
    let too_large = |_| io::Error::new(io::ErrorKind::InvalidInput, "test-run input too large");
    let size = u32::try_from(frame.len()).map_err(too_large)?;
    let context_size = u32::try_from(context.len()).map_err(too_large)?;
    // SAFETY: bpf_test_run_opts is a plain C struct; all-zero is its documented default.
    let mut opts: ffi::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of::<ffi::bpf_test_run_opts>();
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = size;
    if !context.is_empty() {
        opts.ctx_in = context.as_ptr().cast();
        opts.ctx_size_in = context_size;
    }
    opts.repeat = i32::try_from(repeat.max(1)).unwrap_or(i32::MAX);
    // SAFETY: opts is initialised with its size; data_in points to `size` readable bytes and
    // ctx_in, when set, to `context_size`, both outliving the call; data_out and ctx_out are
    // null, so the kernel writes no output.
    let ret = unsafe { ffi::bpf_prog_test_run_opts(prog_fd, &mut opts) };
    if ret < 0 {
        return Err(neg_errno(ret));
    }
    Ok((opts.retval, Duration::from_nanos(u64::from(opts.duration))))
}
