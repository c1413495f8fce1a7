//! The frame accounting of [`TxFrames`] against a model kernel (an oracle, after s2n-quic-xdp's
//! ring tests): random sequences of lends (with every kind of answer from the writer), pushes,
//! kernel sends and reclaims. After every step each frame is in exactly one place, the counts of
//! `TxFrames` agree with the model's rings, and every frame the kernel sends carries the bytes
//! and the length its writer gave it, in the order written. At the end, once the kernel has sent
//! everything, every frame is free again and every staged frame was sent exactly once.

use std::cell::RefCell;
use std::collections::VecDeque;

use proptest::prelude::*;

use super::{FrameData, FromKernel, ToKernel, TxFrames};

/// Bytes in a model frame's data area.
const CAPACITY: usize = 32;

/// A model descriptor: which frame, and the length written into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Desc {
    frame: usize,
    len: usize,
}

/// The model kernel: the frames' data areas, the tx ring (bounded) and the completion ring.
struct Kernel {
    data: RefCell<Vec<[u8; CAPACITY]>>,
    tx_ring: VecDeque<Desc>,
    tx_capacity: usize,
    completion: VecDeque<Desc>,
}

impl FrameData<Desc> for Kernel {
    unsafe fn write(&self, desc: &mut Desc, write: impl FnOnce(&mut [u8]) -> Option<usize>) {
        let mut data = self.data.borrow_mut();
        if let Some(len) = write(&mut data[desc.frame]) {
            assert!(
                len <= CAPACITY,
                "a length beyond the frame reached the UMEM"
            );
            desc.len = len;
        }
    }
}

impl ToKernel<Desc> for Kernel {
    unsafe fn produce(&mut self, descs: &[Desc]) -> usize {
        if self.tx_ring.len() + descs.len() > self.tx_capacity {
            return 0;
        }
        self.tx_ring.extend(descs);
        descs.len()
    }
}

impl FromKernel<Desc> for Kernel {
    unsafe fn consume(&mut self, descs: &mut [Desc]) -> usize {
        let count = descs.len().min(self.completion.len());
        for (slot, desc) in descs.iter_mut().zip(self.completion.drain(..count)) {
            *slot = desc;
        }
        count
    }
}

/// What the writer of a lent frame answers.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// Nothing to send.
    Nothing,
    /// A length of 0.
    Empty,
    /// A length that fits, `1..=CAPACITY`.
    Fits(usize),
    /// A length beyond the frame.
    TooLong,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Lend(Answer),
    Push,
    /// The kernel sends up to this many frames off the tx ring onto the completion ring.
    Send(usize),
    Reclaim,
}

fn step() -> impl Strategy<Value = Step> {
    let answer = prop_oneof![
        Just(Answer::Nothing),
        Just(Answer::Empty),
        (1..=CAPACITY).prop_map(Answer::Fits),
        Just(Answer::TooLong),
    ];
    prop_oneof![
        4 => answer.prop_map(Step::Lend),
        2 => Just(Step::Push),
        2 => (0..8usize).prop_map(Step::Send),
        2 => Just(Step::Reclaim),
    ]
}

/// The oracle: what `TxFrames` must have done, and what the kernel must send.
struct Oracle {
    frames: usize,
    /// (tag, length) of each frame written and not yet sent, in the order written.
    unsent: VecDeque<(u8, usize)>,
    next_tag: u8,
    sent: usize,
}

impl Oracle {
    /// Lends a frame whose writer answers `answer`, and checks the outcome.
    fn lend(&mut self, frames: &mut TxFrames<Desc>, kernel: &Kernel, answer: Answer) {
        let was_free = frames.free.len();
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        let staged = frames.lend(kernel, |data| {
            assert_eq!(data.len(), CAPACITY, "the writer gets the whole data area");
            data.fill(tag);
            match answer {
                Answer::Nothing => None,
                Answer::Empty => Some(0),
                Answer::Fits(len) => Some(len),
                Answer::TooLong => Some(CAPACITY + 1),
            }
        });
        match (was_free, answer, staged) {
            (0, _, None) => {}
            (1.., Answer::Fits(len), Some(true)) => self.unsent.push_back((tag, len)),
            (1.., Answer::Nothing | Answer::Empty | Answer::TooLong, Some(false)) => {}
            other => panic!("lend: (free, answer, staged) = {other:?}"),
        }
    }

    /// The kernel sends up to `count` frames; each must be the next one written.
    fn send(&mut self, kernel: &mut Kernel, count: usize) {
        for _ in 0..count {
            let Some(desc) = kernel.tx_ring.pop_front() else {
                return;
            };
            let (tag, len) = self
                .unsent
                .pop_front()
                .expect("a frame sent that was not written");
            assert_eq!(desc.len, len, "the length written");
            let data = kernel.data.borrow()[desc.frame];
            assert!(
                data[..len].iter().all(|&byte| byte == tag),
                "the bytes written"
            );
            kernel.completion.push_back(desc);
            self.sent += 1;
        }
    }

    /// Every frame in exactly one place, and `frames` counts what the model's rings hold.
    fn check(&self, frames: &TxFrames<Desc>, kernel: &Kernel) {
        let in_rings = kernel.tx_ring.len() + kernel.completion.len();
        assert_eq!(frames.in_kernel, in_rings, "in_kernel counts the rings");
        let mut seen = vec![0u32; self.frames];
        let owned = frames
            .free
            .iter()
            .chain(&frames.staged)
            .map(|frame| frame.0);
        for desc in owned
            .chain(kernel.tx_ring.iter().copied())
            .chain(kernel.completion.iter().copied())
        {
            seen[desc.frame] += 1;
        }
        assert!(
            seen.iter().all(|&count| count == 1),
            "places per frame: {seen:?}"
        );
        let written = frames.staged.len() + kernel.tx_ring.len();
        assert_eq!(written, self.unsent.len(), "written frames not yet sent");
    }
}

/// Runs `steps` with `frame_count` transmit frames and a tx ring of `tx_capacity` slots.
/// XdpDevice makes the ring hold every transmit frame; a smaller one here makes pushes fail.
fn run(frame_count: usize, tx_capacity: usize, steps: &[Step]) {
    let mut kernel = Kernel {
        data: RefCell::new(vec![[0; CAPACITY]; frame_count]),
        tx_ring: VecDeque::new(),
        tx_capacity,
        completion: VecDeque::new(),
    };
    let descs = (0..frame_count)
        .map(|frame| Desc { frame, len: 0 })
        .collect();
    let mut frames = TxFrames::new(descs);
    let mut oracle = Oracle {
        frames: frame_count,
        unsent: VecDeque::new(),
        next_tag: 1,
        sent: 0,
    };
    let mut staged_in_all = 0;
    for &step in steps {
        match step {
            Step::Lend(answer) => {
                let before = oracle.unsent.len();
                oracle.lend(&mut frames, &kernel, answer);
                staged_in_all += oracle.unsent.len() - before;
            }
            Step::Push => {
                let (staged, in_kernel) = (frames.staged.len(), frames.in_kernel);
                frames.push(&mut kernel);
                let moved = in_kernel + staged == frames.in_kernel && frames.staged.is_empty();
                let kept = frames.staged.len() == staged && frames.in_kernel == in_kernel;
                assert!(moved || kept, "all or none");
            }
            Step::Send(count) => oracle.send(&mut kernel, count),
            Step::Reclaim => frames.reclaim(&mut kernel),
        }
        oracle.check(&frames, &kernel);
    }
    // The kernel sends everything: every frame comes back, every staged one was sent once,
    // unless more are staged than the ring can ever take at once (all or none).
    for _ in 0..2 {
        frames.push(&mut kernel);
        oracle.send(&mut kernel, frame_count);
        frames.reclaim(&mut kernel);
    }
    oracle.check(&frames, &kernel);
    if frames.staged.len() > tx_capacity {
        assert!(
            tx_capacity < frame_count,
            "stuck with a ring as large as XdpDevice's"
        );
        return;
    }
    assert_eq!(frames.free.len(), frame_count, "every frame free again");
    assert_eq!(
        oracle.sent, staged_in_all,
        "every staged frame sent exactly once"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prop_tx_frames_match_the_model_kernel(
        (frame_count, tx_capacity) in
            (1..12usize).prop_flat_map(|frames| (Just(frames), 1..frames + 4)),
        steps in prop::collection::vec(step(), 0..200),
    ) {
        run(frame_count, tx_capacity, &steps);
    }
}

/// More frames than one completion batch: reclaim takes them back over several batches.
#[test]
fn test_reclaim_takes_more_than_a_batch() {
    let frame_count = 2 * super::BATCH + 3;
    let steps: Vec<Step> = std::iter::repeat_n(Step::Lend(Answer::Fits(4)), frame_count)
        .chain([Step::Push, Step::Send(frame_count), Step::Reclaim])
        .collect();
    run(frame_count, frame_count, &steps);
}
