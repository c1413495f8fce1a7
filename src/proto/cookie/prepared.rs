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

/// The most jobs between two clears: one per frame of a batch. A job asked for beyond it is
/// not prepared, and its MAC is computed when the frame is decided.
pub(crate) const MAX_PREPARED: usize = 64;

/// The jobs of one batch, in arrays made with the listener: a batch allocates nothing, and the
/// first batch of a new listener costs what every later one does.
pub(crate) struct PreparedMacs {
    /// Jobs asked for since the last clear: the first `len` entries of each array.
    len: usize,
    /// Jobs whose tags are computed: the first `computed` of them. A tag of an earlier batch
    /// is never taken for a job not computed yet.
    computed: usize,
    kinds: [JobKind; MAX_PREPARED],
    /// Each job's key slot (a cookie's parity bit), an index into [`KeyRing::slots`].
    parities: [u8; MAX_PREPARED],
    blocks: [Block; MAX_PREPARED],
    tags: [u32; MAX_PREPARED],
    /// The job of the frame being decided.
    selected: Option<usize>,
}

impl Default for PreparedMacs {
    fn default() -> PreparedMacs {
        PreparedMacs {
            len: 0,
            computed: 0,
            kinds: [JobKind::Encode; MAX_PREPARED],
            parities: [0; MAX_PREPARED],
            blocks: [[0; 64]; MAX_PREPARED],
            tags: [0; MAX_PREPARED],
            selected: None,
        }
    }
}

impl PreparedMacs {
    /// Forgets every job.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.computed = 0;
        self.selected = None;
    }

    /// Asks for the MAC of the block `write` fills (from zeroes, where it is kept) under the key
    /// of slot `parity`; returns the job's number, or `None` when [`MAX_PREPARED`] jobs are
    /// already waiting.
    pub(crate) fn push_with(
        &mut self,
        kind: JobKind,
        parity: u32,
        write: impl FnOnce(&mut Block),
    ) -> Option<usize> {
        let job = self.len;
        let block = self.blocks.get_mut(job)?;
        *block = [0; 64];
        write(block);
        self.kinds[job] = kind;
        self.parities[job] = slot_of_parity(parity);
        self.len += 1;
        Some(job)
    }

    /// Computes every job asked for since [`PreparedMacs::clear`].
    pub(crate) fn compute(&mut self, lanes: &dyn Sha256Lanes, keys: &KeyRing) {
        let len = self.len;
        tags32(
            lanes,
            keys.slots(),
            &self.parities[..len],
            &self.blocks[..len],
            &mut self.tags[..len],
        );
        self.computed = len;
    }

    /// Selects the job of the frame about to be decided (`None`: it has none).
    pub(crate) fn select(&mut self, job: Option<usize>) {
        self.selected = job;
    }

    /// The tag of the selected job, if it is a computed one of `kind` under slot `parity`;
    /// deselects it.
    pub(crate) fn take(&mut self, kind: JobKind, parity: u32) -> Option<u32> {
        let job = self.selected.take().filter(|&job| job < self.computed)?;
        (self.kinds[job] == kind && self.parities[job] == slot_of_parity(parity))
            .then_some(self.tags[job])
    }
}

impl Drop for PreparedMacs {
    fn drop(&mut self) {
        // The messages hold client addresses; the tags are cookies, some not yet sent.
        self.blocks.zeroize();
        self.tags.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::cookie::OneAtATime;
    use crate::cookie::keys::Secret;

    /// A block that tells job `i` apart.
    fn write_job(i: usize) -> impl FnOnce(&mut Block) {
        move |block: &mut Block| block[..8].copy_from_slice(&i.to_be_bytes())
    }

    #[test]
    fn test_jobs_past_the_arrays_are_refused_not_lost() {
        let keys = KeyRing::new(
            Secret::from_bytes([3; 32]),
            Duration::from_secs(64),
            Duration::from_secs(6400),
        );
        let mut prepared = PreparedMacs::default();
        for i in 0..MAX_PREPARED {
            assert_eq!(prepared.push_with(JobKind::Check, 0, write_job(i)), Some(i));
        }
        assert_eq!(prepared.push_with(JobKind::Check, 0, write_job(0)), None);
        prepared.compute(&OneAtATime, &keys);
        for i in [0, MAX_PREPARED - 1] {
            let mut block = [0; 64];
            write_job(i)(&mut block);
            prepared.select(Some(i));
            let tag = prepared.take(JobKind::Check, 0);
            assert_eq!(tag, Some(keys.by_parity(0).tag32_of(&block)));
        }
        // Another kind or key slot takes nothing: the caller computes its own MAC.
        prepared.select(Some(1));
        assert_eq!(prepared.take(JobKind::Encode, 0), None);
        prepared.select(Some(1));
        assert_eq!(prepared.take(JobKind::Check, 1), None);
        // A clear forgets every tag, and the arrays take new jobs from the first; a job not
        // computed yet has no tag, not the last batch's.
        prepared.clear();
        prepared.select(Some(0));
        assert_eq!(prepared.take(JobKind::Check, 0), None);
        assert_eq!(prepared.push_with(JobKind::Check, 0, write_job(0)), Some(0));
        prepared.select(Some(0));
        assert_eq!(prepared.take(JobKind::Check, 0), None);
    }
}
