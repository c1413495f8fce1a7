//! The transmit half of an [`XdpDevice`](super::XdpDevice)'s UMEM: each frame by place (free,
//! staged, or in the kernel), lent to a writer, handed to the tx ring and reclaimed from the
//! completion ring, moving only by value (see the ownership rules in the parent module's docs).

use xsk_rs::{CompQueue, FrameDesc, TxQueue, Umem};

use super::BATCH;

/// A transmit frame owned by user space (see the module docs). Not `Copy`, not `Clone`.
#[derive(Debug)]
pub(super) struct TxFrame(FrameDesc);

/// The transmit half of the UMEM, by place (see the module docs).
#[derive(Debug)]
pub(super) struct TxFrames {
    /// Free, owned by user space.
    pub(super) free: Vec<TxFrame>,
    /// Written, owned by user space, waiting for room on the tx ring.
    staged: Vec<TxFrame>,
    /// On the tx ring or the completion ring, owned by the kernel.
    in_kernel: usize,
    /// Scratch: descriptors being handed to the tx ring.
    descs: Vec<FrameDesc>,
    /// Scratch: descriptors taken off the completion ring, moved into `free` at once.
    completed: Vec<FrameDesc>,
}

impl TxFrames {
    pub(super) fn new(frames: Vec<FrameDesc>) -> Self {
        Self {
            descs: Vec::with_capacity(frames.len()),
            staged: Vec::with_capacity(frames.len()),
            free: frames.into_iter().map(TxFrame).collect(),
            in_kernel: 0,
            completed: vec![FrameDesc::default(); BATCH],
        }
    }

    /// Lends a free frame's whole data area to `write`; stages the frame when `write` returns a
    /// length in `1..=capacity`, frees it again otherwise. Returns whether it staged, or None
    /// when no frame is free.
    pub(super) fn lend(
        &mut self,
        umem: &Umem,
        write: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Option<bool> {
        let mut frame = self.free.pop()?;
        // SAFETY: the frame was in `free`, so neither the kernel nor any other slice refers to
        // it, and it belongs to `umem`. The slice is gone before the frame moves on.
        let mut data = unsafe { umem.data_mut(&mut frame.0) };
        let capacity = {
            let mut cursor = data.cursor();
            let capacity = cursor.buf_len();
            cursor.set_pos(capacity);
            capacity
        };
        let staged = match write(data.contents_mut()) {
            Some(len) if (1..=capacity).contains(&len) => {
                data.cursor().set_pos(len);
                true
            }
            _ => false,
        };
        if staged {
            self.staged.push(frame);
        } else {
            self.free.push(frame);
        }
        Some(staged)
    }

    /// Hands the staged frames to the tx ring, all or none. The ring has room for every
    /// transmit frame, so all, unless the kernel has not yet consumed slots it was given.
    pub(super) fn push(&mut self, tx: &mut TxQueue) {
        if self.staged.is_empty() {
            return;
        }
        self.descs.clear();
        self.descs.extend(self.staged.iter().map(|frame| frame.0));
        // SAFETY: the staged frames are user space's and belong to this UMEM; once produced
        // they leave `staged` and are counted in `in_kernel` until the completion ring
        // returns them.
        let produced = unsafe { tx.produce(&self.descs) };
        if produced == self.staged.len() {
            self.in_kernel += produced;
            self.staged.clear();
        }
    }

    /// Moves completed frames back to `free`.
    pub(super) fn reclaim(&mut self, comp: &mut CompQueue) {
        loop {
            // SAFETY: the completion ring returns frames of this UMEM that the kernel has
            // finished with; each goes into `free` exactly once.
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
