//! The transmit half of an [`XdpDevice`](super::XdpDevice)'s UMEM: each frame by place (free,
//! staged, or in the kernel), lent to a writer, handed to the tx ring and reclaimed from the
//! completion ring, moving only by value (see the ownership rules in the parent module's docs).
//!
//! [`TxFrames`] sees the kernel's side through three small traits ([`FrameData`], [`ToKernel`],
//! [`FromKernel`]): xsk-rs's UMEM, tx ring and completion ring implement them, and so does the
//! model kernel that the tests check the frame accounting against.

use xsk_rs::{CompQueue, FrameDesc, TxQueue, Umem};

use super::BATCH;

/// The data areas of a UMEM's frames.
pub(super) trait FrameData<D> {
    /// Lends the whole data area of frame `desc` to `write`, then sets the frame's length to
    /// what `write` returns, which is at most the area's length; `None` sets nothing.
    ///
    /// # Safety
    /// `desc` is a frame of this UMEM that user space owns: neither the kernel nor any other
    /// slice refers to it while `write` runs.
    unsafe fn write(&self, desc: &mut D, write: impl FnOnce(&mut [u8]) -> Option<usize>);
}

/// A ring that hands frames to the kernel: the tx ring.
pub(super) trait ToKernel<D> {
    /// Hands every frame of `descs` to the kernel, or none of them; returns how many.
    ///
    /// # Safety
    /// Each of `descs` is a distinct frame of this ring's UMEM that user space owns, and that
    /// it gives up if they are handed over.
    unsafe fn produce(&mut self, descs: &[D]) -> usize;
}

/// A ring that gives frames back from the kernel: the completion ring.
pub(super) trait FromKernel<D> {
    /// Takes at most `descs.len()` frames back into the front of `descs`; returns how many.
    ///
    /// # Safety
    /// The frames returned are user space's again: the caller takes each into its keeping
    /// exactly once.
    unsafe fn consume(&mut self, descs: &mut [D]) -> usize;
}

impl FrameData<FrameDesc> for Umem {
    unsafe fn write(&self, desc: &mut FrameDesc, write: impl FnOnce(&mut [u8]) -> Option<usize>) {
        // SAFETY: the caller's contract: `desc` is this UMEM's and no one else refers to it.
        // The slice is gone before this function returns.
        let mut data = unsafe { self.data_mut(desc) };
        let capacity = {
            let mut cursor = data.cursor();
            let capacity = cursor.buf_len();
            cursor.set_pos(capacity);
            capacity
        };
        if let Some(len) = write(data.contents_mut()) {
            debug_assert!(len <= capacity, "{len} bytes in a {capacity}-byte frame");
            data.cursor().set_pos(len);
        }
    }
}

impl ToKernel<FrameDesc> for TxQueue {
    unsafe fn produce(&mut self, descs: &[FrameDesc]) -> usize {
        // SAFETY: the caller's contract: user space's own frames of this UMEM, given up.
        unsafe { TxQueue::produce(self, descs) }
    }
}

impl FromKernel<FrameDesc> for CompQueue {
    unsafe fn consume(&mut self, descs: &mut [FrameDesc]) -> usize {
        // SAFETY: the caller's contract: it keeps each frame returned exactly once.
        unsafe { CompQueue::consume(self, descs) }
    }
}

/// A transmit frame owned by user space (see the module docs). Not `Copy`, not `Clone`.
#[derive(Debug)]
pub(super) struct TxFrame<D>(D);

/// The transmit half of the UMEM, by place (see the module docs).
#[derive(Debug)]
pub(super) struct TxFrames<D = FrameDesc> {
    /// Free, owned by user space.
    pub(super) free: Vec<TxFrame<D>>,
    /// Written, owned by user space, waiting for room on the tx ring.
    staged: Vec<TxFrame<D>>,
    /// On the tx ring or the completion ring, owned by the kernel.
    in_kernel: usize,
    /// Scratch: descriptors being handed to the tx ring.
    descs: Vec<D>,
    /// Scratch: descriptors taken off the completion ring, moved into `free` at once.
    completed: Vec<D>,
}

impl<D: Copy + Default> TxFrames<D> {
    pub(super) fn new(frames: Vec<D>) -> Self {
        Self {
            descs: Vec::with_capacity(frames.len()),
            staged: Vec::with_capacity(frames.len()),
            free: frames.into_iter().map(TxFrame).collect(),
            in_kernel: 0,
            completed: vec![D::default(); BATCH],
        }
    }

    /// Lends a free frame's whole data area to `write`; stages the frame when `write` returns a
    /// length in `1..=capacity`, frees it again otherwise. Returns whether it staged, or None
    /// when no frame is free.
    pub(super) fn lend(
        &mut self,
        umem: &impl FrameData<D>,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<bool> {
        let mut frame = self.free.pop()?;
        let mut staged = false;
        let checked = |data: &mut [u8]| {
            let capacity = data.len();
            let len = write(data).filter(|len| (1..=capacity).contains(len));
            staged = len.is_some();
            len
        };
        // SAFETY: the frame was in `free`, so neither the kernel nor any other slice refers to
        // it, and it belongs to `umem`.
        unsafe { umem.write(&mut frame.0, checked) };
        if staged {
            self.staged.push(frame);
        } else {
            self.free.push(frame);
        }
        Some(staged)
    }

    /// Hands the staged frames to the tx ring, all or none. The ring has room for every
    /// transmit frame, so all, unless the kernel has not yet consumed slots it was given.
    pub(super) fn push(&mut self, tx: &mut impl ToKernel<D>) {
        if self.staged.is_empty() {
            return;
        }
        self.descs.clear();
        self.descs.extend(self.staged.iter().map(|frame| frame.0));
        // SAFETY: the staged frames are user space's, distinct, and belong to this UMEM; once
        // produced they leave `staged` and are counted in `in_kernel` until the completion ring
        // returns them.
        let produced = unsafe { tx.produce(&self.descs) };
        if produced == self.staged.len() {
            self.in_kernel += produced;
            self.staged.clear();
        }
    }

    /// Moves completed frames back to `free`.
    pub(super) fn reclaim(&mut self, comp: &mut impl FromKernel<D>) {
        loop {
            // SAFETY: each frame the completion ring returns goes into `free` exactly once.
            let done = unsafe { comp.consume(&mut self.completed) };
            self.in_kernel -= done;
            self.free
                .extend(self.completed[..done].iter().map(|desc| TxFrame(*desc)));
            if done < self.completed.len() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod model;
