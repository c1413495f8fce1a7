//! The cookie MACs of a batch of frames, computed together before the frames are decided one by
//! one.
//!
//! While preparing a batch, the listener asks for the MAC each frame's decision will need
//! ([`PreparedMacs::push_with`] numbers the job) and computes them all at once through the
//! [`Sha256Lanes`]. Before deciding a frame it selects that frame's job; the next `encode` or
//! `check` takes the tag if the job is of its kind and key slot, and computes its own
//! otherwise. Rotating or replacing the keys forgets every job.

use zeroize::Zeroize;

use super::keys::{KeyRing, slot_of_parity};
use super::mac::{Block, Sha256Lanes, tags32};

/// What a prepared MAC is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobKind {
    /// The cookie of a SYN-ACK.
    Encode,
    /// The cookie an ACK carries.
    Check,
}

#[derive(Default)]
pub(crate) struct PreparedMacs {
    kinds: Vec<JobKind>,
    /// Each job's key slot (a cookie's parity bit), an index into [`KeyRing::slots`].
    parities: Vec<u8>,
    blocks: Vec<Block>,
    tags: Vec<u32>,
    /// The job of the frame being decided.
    selected: Option<usize>,
}

impl PreparedMacs {
    /// Forgets every job.
    pub(crate) fn clear(&mut self) {
        self.kinds.clear();
        self.parities.clear();
        self.blocks.clear();
        self.tags.clear();
        self.selected = None;
    }

    /// Asks for the MAC of the block `write` fills (from zeroes, where it is kept) under the key
    /// of slot `parity`; returns the job's number. The caller bounds the jobs of a batch.
    pub(crate) fn push_with(
        &mut self,
        kind: JobKind,
        parity: u32,
        write: impl FnOnce(&mut Block),
    ) -> usize {
        self.kinds.push(kind);
        self.parities.push(slot_of_parity(parity));
        self.blocks.push([0; 64]);
        write(self.blocks.last_mut().expect("just pushed"));
        self.blocks.len() - 1
    }

    /// Computes every job asked for since [`PreparedMacs::clear`].
    pub(crate) fn compute(&mut self, lanes: &dyn Sha256Lanes, keys: &KeyRing) {
        tags32(
            lanes,
            keys.slots(),
            &self.parities,
            &self.blocks,
            &mut self.tags,
        );
    }

    /// Selects the job of the frame about to be decided (`None`: it has none).
    pub(crate) fn select(&mut self, job: Option<usize>) {
        self.selected = job;
    }

    /// The tag of the selected job, if it is a computed one of `kind` under slot `parity`;
    /// deselects it.
    pub(crate) fn take(&mut self, kind: JobKind, parity: u32) -> Option<u32> {
        let job = self.selected.take()?;
        (self.kinds.get(job) == Some(&kind) && self.parities[job] == slot_of_parity(parity))
            .then(|| self.tags.get(job).copied())
            .flatten()
    }
}

impl Drop for PreparedMacs {
    fn drop(&mut self) {
        // The messages hold client addresses; the tags are cookies, some not yet sent.
        self.blocks.zeroize();
        self.tags.zeroize();
    }
}
