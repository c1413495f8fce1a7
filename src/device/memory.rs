//! An in-memory [`FrameIo`]: frames injected by the caller are received, frames transmitted
//! are collected. A fixed pool of buffers is shared by both directions, like a UMEM: when every
//! buffer waits in the transmit queue, received frames get no transmit buffer.
//! Nothing is allocated after creation.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use super::{FrameIo, LocalDelivery, MAX_RX_BATCH, MIN_TX_FRAME, TxLender};

struct Frame {
    buf: Box<[u8]>,
    len: usize,
}

/// See the module documentation.
pub struct MemoryDevice {
    rx: VecDeque<Frame>,
    tx: VecDeque<Frame>,
    free: Vec<Frame>,
    /// The frames of the batch being received.
    batch: Vec<Frame>,
}

impl MemoryDevice {
    /// A device with a pool of `frames` buffers of [`MIN_TX_FRAME`] bytes.
    pub fn new(frames: usize) -> MemoryDevice {
        MemoryDevice {
            rx: VecDeque::with_capacity(frames),
            tx: VecDeque::with_capacity(frames),
            free: (0..frames)
                .map(|_| Frame {
                    buf: vec![0; MIN_TX_FRAME].into_boxed_slice(),
                    len: 0,
                })
                .collect(),
            batch: Vec::with_capacity(MAX_RX_BATCH),
        }
    }

    /// Queues a frame for reception. Returns `false` (the frame is lost, as on a full ring)
    /// when no buffer is free or the frame is larger than a buffer.
    pub fn inject(&mut self, frame: &[u8]) -> bool {
        if frame.len() > MIN_TX_FRAME {
            return false;
        }
        let Some(mut buf) = self.free.pop() else {
            return false;
        };
        buf.buf[..frame.len()].copy_from_slice(frame);
        buf.len = frame.len();
        self.rx.push_back(buf);
        true
    }

    /// Hands every transmitted frame to `sink`, oldest first, and frees its buffer.
    pub fn drain_tx(&mut self, mut sink: impl FnMut(&[u8])) {
        while let Some(frame) = self.tx.pop_front() {
            sink(&frame.buf[..frame.len]);
            self.free.push(frame);
        }
    }

    /// Frames waiting to be received.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    /// Frames transmitted and not yet drained.
    pub fn tx_len(&self) -> usize {
        self.tx.len()
    }
}

impl FrameIo for MemoryDevice {
    fn receive_batches<F>(&mut self, budget: usize, mut on_batch: F) -> io::Result<usize>
    where
        F: FnMut(&[&[u8]], &mut dyn TxLender),
    {
        let mut received = 0;
        while received < budget && !self.rx.is_empty() {
            let count = (budget - received).min(MAX_RX_BATCH).min(self.rx.len());
            self.batch.extend(self.rx.drain(..count));
            let mut frames: [&[u8]; MAX_RX_BATCH] = [&[]; MAX_RX_BATCH];
            for (slot, frame) in frames.iter_mut().zip(&self.batch) {
                *slot = &frame.buf[..frame.len];
            }
            let mut lender = MemoryLender {
                free: &mut self.free,
                tx: &mut self.tx,
            };
            on_batch(&frames[..count], &mut lender);
            self.free.append(&mut self.batch);
            received += count;
        }
        Ok(received)
    }

    fn transmit<F>(&mut self, budget: usize, mut fill: F) -> io::Result<usize>
    where
        F: FnMut(&mut [u8]) -> Option<usize>,
    {
        let mut lender = MemoryLender {
            free: &mut self.free,
            tx: &mut self.tx,
        };
        let mut sent = 0;
        while sent < budget {
            match lender.lend_free(&mut fill) {
                Some(true) => sent += 1,
                Some(false) | None => break,
            }
        }
        Ok(sent)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn wait(&mut self, _timeout: Duration) -> io::Result<bool> {
        Ok(!self.rx.is_empty())
    }
}

/// A [`LocalDelivery`] that keeps what it is given, for tests to inspect.
#[derive(Debug, Default)]
pub struct MemoryDelivery {
    pub delivered: Vec<Vec<u8>>,
}

/// Lends the free buffers of a [`MemoryDevice`].
struct MemoryLender<'a> {
    free: &'a mut Vec<Frame>,
    tx: &'a mut VecDeque<Frame>,
}

impl TxLender for MemoryLender<'_> {
    fn lend_free(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> Option<bool> {
        let mut tx = self.free.pop()?;
        match fill(&mut tx.buf) {
            Some(len) => {
                tx.len = len;
                self.tx.push_back(tx);
                Some(true)
            }
            None => {
                self.free.push(tx);
                Some(false)
            }
        }
    }
}

impl LocalDelivery for MemoryDelivery {
    fn deliver(&mut self, packet: &[u8]) -> io::Result<()> {
        self.delivered.push(packet.to_vec());
        Ok(())
    }
}
