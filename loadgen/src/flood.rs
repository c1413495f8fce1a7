//! Flood workers: one thread per `--threads`, each with its own transmit device, crafter and
//! pacer, and its own share of the rate and of the packet count.
//!
//! Start-up is two-phase, so that a device that cannot open fails the run before a single
//! packet leaves: every worker pins itself, opens its device and reports; only when all have
//! reported success does the run send each of them the common start instant. A worker stops
//! at its packet quota, at the deadline, or when the shared stop flag is raised (by a signal,
//! or by another worker's error); it checks all three once per batch, so it overruns by at
//! most one batch.
//!
//! The loop: grant a batch from the pacer (or sleep until one is due), write that many frames
//! straight into the device's transmit buffers ([`FrameIo::transmit`]), [`FrameIo::flush`],
//! publish the running totals. Nothing in it allocates.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use synwall::device::FrameIo;
use synwall::sys::{PacketSocket, PacketSocketConfig, XdpDevice, XdpDeviceConfig, affinity};

use crate::cli::{Config, TxChoice};
use crate::craft::{Crafter, Path, Templates};
use crate::error::LoadgenError;
use crate::harvest::SynAck;
use crate::mix::KIND_COUNT;
use crate::pacer::{self, Pacer};
use crate::report::{Backend, StopReason};
use crate::stats::{Counters, PerKind, WorkerSlot};

/// The longest a worker sleeps before it looks at the stop flag again.
const MAX_NAP: Duration = Duration::from_millis(20);
/// Flushes tried at the end to get the last staged frames out.
const FINAL_FLUSHES: usize = 16;

/// Why and when a worker stopped (after its last flush).
pub type Ended = (StopReason, Instant);

/// A worker's device.
enum TxDevice {
    /// Boxed: the socket, its rings and their scratch are large, and move once.
    Xdp(Box<XdpDevice>),
    Packet(PacketSocket),
}

/// What a worker reports once its device is open.
pub struct Ready {
    pub worker: usize,
    pub backend: Backend,
    /// Why AF_XDP was not used, when `--tx auto` fell back to AF_PACKET.
    pub fallback: Option<String>,
}

/// The running workers.
pub struct Flood {
    workers: Vec<thread::JoinHandle<Result<Ended, LoadgenError>>>,
    /// Sends the start instant to each worker; dropped unsent, it releases them without one.
    go: Option<crossbeam_channel::Sender<Instant>>,
}

impl Flood {
    /// Spawns the workers and waits until each has opened its device; on any failure, stops
    /// the others and returns the first error. The workers then wait for [`Flood::start`].
    pub fn open(
        config: &Config,
        path: Path,
        counters: &Arc<Counters>,
        harvested: Option<&Receiver<SynAck>>,
        stop: &Arc<AtomicBool>,
    ) -> Result<(Flood, Vec<Ready>), LoadgenError> {
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(config.threads);
        let (go_tx, go_rx) = crossbeam_channel::bounded::<Instant>(config.threads);
        let workers = (0..config.threads)
            .map(|index| {
                let job = WorkerJob {
                    index,
                    config: config.clone(),
                    path,
                    counters: Arc::clone(counters),
                    harvested: harvested.cloned(),
                    stop: Arc::clone(stop),
                };
                let ready_tx = ready_tx.clone();
                let go_rx = go_rx.clone();
                thread::Builder::new()
                    .name(format!("flood-{index}"))
                    .spawn(move || job.run(ready_tx, &go_rx))
                    .map_err(LoadgenError::Spawn)
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(ready_tx);
        let mut flood = Flood {
            workers,
            go: Some(go_tx),
        };
        let mut ready = Vec::with_capacity(config.threads);
        for _ in 0..config.threads {
            match ready_rx.recv() {
                Ok(Ok(report)) => ready.push(report),
                Ok(Err(error)) => {
                    flood.go = None;
                    // The error is the one to report; the others only stopped.
                    let _ = flood.join();
                    return Err(error);
                }
                Err(_) => {
                    // Every worker is gone, one without reporting: its join says why.
                    flood.go = None;
                    return Err(flood.join().err().unwrap_or(LoadgenError::WorkerPanicked));
                }
            }
        }
        ready.sort_by_key(|report| report.worker);
        Ok((flood, ready))
    }

    /// Starts every worker's schedule at `at`.
    pub fn start(&mut self, at: Instant) {
        if let Some(go) = self.go.take() {
            for _ in 0..self.workers.len() {
                // A worker that already exited does not need its start.
                let _ = go.send(at);
            }
        }
    }

    /// Whether every worker has stopped; once true, every count they published is visible to
    /// the caller.
    pub fn is_finished(&self) -> bool {
        let finished = self.workers.iter().all(thread::JoinHandle::is_finished);
        if finished {
            // A worker's exit releases what it published; this acquires it (is_finished itself
            // need not order anything).
            fence(Ordering::Acquire);
        }
        finished
    }

    /// Waits for every worker; why the run stopped (the first reason other than the packet
    /// count, if any) and when the last worker did, or the first error.
    pub fn join(self) -> Result<Ended, LoadgenError> {
        drop(self.go);
        let mut reason = StopReason::Packets;
        let mut last: Option<Instant> = None;
        let mut first_error = None;
        for worker in self.workers {
            match worker.join() {
                Ok(Ok((stopped, at))) => {
                    if reason == StopReason::Packets {
                        reason = stopped;
                    }
                    last = last.max(Some(at));
                }
                Ok(Err(error)) => {
                    first_error.get_or_insert(error);
                }
                Err(_) => {
                    first_error.get_or_insert(LoadgenError::WorkerPanicked);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok((reason, last.unwrap_or_else(Instant::now))),
        }
    }
}

/// Everything a worker thread needs.
struct WorkerJob {
    index: usize,
    config: Config,
    path: Path,
    counters: Arc<Counters>,
    harvested: Option<Receiver<SynAck>>,
    stop: Arc<AtomicBool>,
}

impl WorkerJob {
    fn run(
        self,
        ready: crossbeam_channel::Sender<Result<Ready, LoadgenError>>,
        go: &Receiver<Instant>,
    ) -> Result<Ended, LoadgenError> {
        let opened = self.pin().and_then(|()| self.open_device());
        let device = match opened {
            Ok((device, fallback)) => {
                let backend = match device {
                    TxDevice::Xdp(_) => Backend::Afxdp,
                    TxDevice::Packet(_) => Backend::Packet,
                };
                let _ = ready.send(Ok(Ready {
                    worker: self.index,
                    backend,
                    fallback,
                }));
                drop(ready);
                device
            }
            Err(error) => {
                let _ = ready.send(Err(error));
                return Ok((StopReason::Interrupted, Instant::now()));
            }
        };
        let Ok(start) = go.recv() else {
            return Ok((StopReason::Interrupted, Instant::now()));
        };
        let result = match device {
            TxDevice::Xdp(mut device) => self.flood(&mut *device, start),
            TxDevice::Packet(mut device) => self.flood(&mut device, start),
        };
        if result.is_err() {
            self.stop.store(true, Ordering::Relaxed);
        }
        result
            .map(|reason| (reason, Instant::now()))
            .map_err(|source| LoadgenError::Worker {
                worker: self.index,
                source,
            })
    }

    fn pin(&self) -> Result<(), LoadgenError> {
        if self.config.cpus.is_empty() {
            return Ok(());
        }
        let cpu = self.config.cpus[self.index % self.config.cpus.len()];
        affinity::pin_current_thread(cpu).map_err(|source| LoadgenError::Pin {
            worker: self.index,
            cpu,
            source,
        })
    }

    fn open_device(&self) -> Result<(TxDevice, Option<String>), LoadgenError> {
        let ifname = &self.config.interface;
        let packet = || {
            let cfg = PacketSocketConfig {
                batch: self.config.batch,
                receive: false,
                qdisc_bypass: true,
            };
            PacketSocket::open(ifname, cfg).map(TxDevice::Packet)
        };
        let xdp = || {
            let queue = self.index as u32;
            match XdpDevice::open(ifname, queue, XdpDeviceConfig::default()) {
                Ok(device) => Ok(TxDevice::Xdp(Box::new(device))),
                Err(error) if queue > 0 => Err(LoadgenError::XdpQueue { queue, error }),
                Err(error) => Err(LoadgenError::Xdp(error)),
            }
        };
        match self.config.tx {
            TxChoice::Packet => Ok((packet()?, None)),
            TxChoice::Afxdp => Ok((xdp()?, None)),
            TxChoice::Auto => match xdp() {
                Ok(device) => Ok((device, None)),
                Err(xdp_error) => Ok((packet()?, Some(xdp_error.to_string()))),
            },
        }
    }

    /// The worker's share of the packets.
    fn quota(&self) -> u64 {
        pacer::share(self.config.packets, self.index, self.config.threads)
    }

    fn crafter(&self) -> Crafter {
        Crafter::new(
            Templates::new(&self.path),
            &self.config.mix,
            self.config.sources,
            SmallRng::from_os_rng(),
            self.harvested.clone(),
        )
    }

    /// The transmit loop (see the module documentation).
    fn flood<D: FrameIo>(&self, device: &mut D, start: Instant) -> io::Result<StopReason> {
        let rate = self.config.rate.share(self.index, self.config.threads);
        let batch = rate.batch(self.config.batch) as u64;
        let deadline = start + self.config.duration;
        let quota = self.quota();
        let slot: &WorkerSlot = self.counters.worker(self.index);
        let mut crafter = self.crafter();
        let mut pacer = Pacer::new(rate, start);
        let mut totals: PerKind = [0; KIND_COUNT];
        let mut sent = 0u64;
        let reason = loop {
            if sent >= quota {
                break StopReason::Packets;
            }
            if self.stop.load(Ordering::Relaxed) {
                break StopReason::Interrupted;
            }
            let now = Instant::now();
            if now >= deadline {
                break StopReason::Duration;
            }
            let want = (quota - sent).min(batch);
            let granted = pacer.grant(now, want);
            if granted == 0 {
                let due = pacer.due_at(want).unwrap_or(now).min(deadline);
                thread::sleep(due.saturating_duration_since(now).min(MAX_NAP));
                continue;
            }
            let queued = device.transmit(granted as usize, |buf| {
                let (kind, len) = crafter.write_next(buf)?;
                totals[kind.index()] += 1;
                Some(len)
            })?;
            device.flush()?;
            pacer.record(queued as u64);
            sent += queued as u64;
            slot.publish(&totals);
        };
        for _ in 0..FINAL_FLUSHES {
            device.flush()?;
        }
        Ok(reason)
    }
}
