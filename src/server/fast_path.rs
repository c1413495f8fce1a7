//! One fast-path thread per rx queue: it sets up the queue's AF_XDP socket and listener shard,
//! then loops over bounded rounds of frames until the server shuts down (a failure of its loop
//! shuts the whole server down); and the thread that logs when a SYN flood starts and ends.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};

use crate::accept_queue::AcceptSender;
use crate::cookie::keys::{KeyRing, Secret};
use crate::counters::{Counter, Counters};
use crate::flood::{FLOOD_OVER_AFTER, FloodEvent, FloodWatch, SynQueueCounts};
use crate::handoff::{HandoffCounters, NativeInline};
use crate::kernel_completion::{KernelCompletionCounters, NativeCompletion};
use crate::listener::{Listener, ListenerUpdate};
use crate::shard::Shard;
use crate::shutdown::Shutdown;
use crate::sys::inject::RawInjector;
use crate::sys::native::NativeHandoff;
use crate::sys::{SteeringProgram, TAKEOVER_HOLD, XdpDevice, XskStatistics, affinity, sha256};

use super::{ServerConfig, ServerError, ShardHandle, stop_failed};

/// Updates waiting for a fast-path thread, at most.
const UPDATES: usize = 4;
/// How often a fast-path thread publishes its AF_XDP ring statistics.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);
/// A takeover that follows this long without one starts a new log line: during a flood each
/// CPU's takeover is renewed every `TAKEOVER_HOLD` while the listener's SYN queue stays full.
const TAKEOVERS_QUIET: Duration = Duration::from_secs(3 * TAKEOVER_HOLD.as_secs());

/// What one fast-path thread needs.
pub(super) struct FastPath {
    pub(super) config: ServerConfig,
    pub(super) queue: u32,
    pub(super) cpu: Option<usize>,
    pub(super) secret: Secret,
    pub(super) program: Arc<SteeringProgram>,
    pub(super) accept: AcceptSender,
    /// Native handoff, done by this thread; `None` in repair mode.
    pub(super) native: Option<Arc<NativeHandoff>>,
    pub(super) handoff_counters: Arc<HandoffCounters>,
    pub(super) kernel_counters: Arc<KernelCompletionCounters>,
    pub(super) shutdown: Shutdown,
    pub(super) failure: Arc<Mutex<Option<ServerError>>>,
}

impl FastPath {
    /// Sets up the queue's socket and shard, tells `started` how that went, then loops until
    /// stopped. A failure of the loop stops the whole server.
    pub(super) fn run(self, started: &Sender<Result<ShardHandle, ServerError>>) {
        let FastPath {
            config,
            queue,
            cpu,
            secret,
            program,
            mut accept,
            native,
            handoff_counters,
            kernel_counters,
            shutdown,
            failure,
        } = self;
        let (updates_tx, updates) = crossbeam_channel::bounded(UPDATES);
        let setup = (|| {
            if let Some(cpu) = cpu {
                affinity::pin_current_thread(cpu)
                    .map_err(|source| ServerError::FastPath { queue, source })?;
            }
            let device = XdpDevice::open(&config.interface, queue, config.device)?;
            program.register(&device)?;
            // What ends the thread's wait besides frames and timers: a finished handoff, an
            // update (`ShardHandle::waker`), the stop.
            accept.set_waker(device.waker());
            let waker = device.waker();
            shutdown.also_wake(move || waker.wake());
            let injector =
                RawInjector::new().map_err(|source| ServerError::RawSocket { source })?;
            let keys = KeyRing::new(secret, config.key_period, unix_time());
            let (lanes, lanes_name) = sha256::fastest();
            tracing::info!(queue, "cookie MACs: a batch at a time, {lanes_name}");
            let mut listener = Listener::new(config.listener.clone(), keys, Instant::now())?
                .with_sha256_lanes(lanes);
            if config.secret.is_some() {
                // A given secret is shared (a fleet, or this host before a restart): handshakes
                // begun elsewhere may end here.
                listener.open_cookie_gate(Instant::now());
            }
            let handle = ShardHandle {
                queue,
                syn_queue_capacity: config.listener.max_syn_backlog,
                zero_copy: device.is_zero_copy(),
                counters: listener.counters(),
                xsk: Arc::default(),
                updates: updates_tx,
                waker: device.waker(),
            };
            let shard = Shard::new(listener, device, injector, accept, config.budget);
            let shard = match native {
                Some(native) => shard
                    .with_kernel_completion(Box::new(NativeCompletion::new(
                        Arc::clone(&native),
                        queue,
                        Arc::clone(&handoff_counters),
                        kernel_counters,
                    )))
                    .with_inline_handoff(Box::new(NativeInline {
                        native,
                        injector: RawInjector::new()
                            .map_err(|source| ServerError::RawSocket { source })?,
                        counters: handoff_counters,
                        steering: Arc::clone(&program),
                    })),
                None => shard,
            };
            Ok((shard, handle))
        })();
        let (mut shard, handle) = match setup {
            Ok(ready) => ready,
            Err(error) => {
                let _ = started.send(Err(error));
                return;
            }
        };
        let xsk = Arc::clone(&handle.xsk);
        let _ = started.send(Ok(handle));
        if let Err(source) = serve(&mut shard, config.budget, &shutdown, &xsk, &updates) {
            stop_failed(&failure, &shutdown, ServerError::FastPath { queue, source });
        }
    }
}

/// The fast-path loop: a bounded round, then, when the round was not full, a sleep until frames
/// arrive, a timer of the listener is due, the statistics are to be published, or the device is
/// woken (a finished handoff, an update, the stop).
fn serve(
    shard: &mut Shard<XdpDevice, RawInjector>,
    budget: usize,
    shutdown: &Shutdown,
    xsk: &Mutex<XskStatistics>,
    updates: &Receiver<ListenerUpdate>,
) -> io::Result<()> {
    let mut published = Instant::now();
    while !shutdown.is_triggered() {
        let now = Instant::now();
        for update in updates.try_iter() {
            shard.listener_mut().apply(now, &update);
        }
        if shard.poll(now, unix_time())? < budget {
            let until_statistics = (published + STATISTICS_INTERVAL).saturating_duration_since(now);
            shard.wait(now, until_statistics)?;
        }
        if now.duration_since(published) >= STATISTICS_INTERVAL {
            published = now;
            if let Ok(stats) = shard.device_mut().statistics() {
                *xsk.lock().unwrap_or_else(PoisonError::into_inner) = stats;
            }
        }
    }
    Ok(())
}

/// Logs when a SYN flood starts and ends (see [`FloodWatch`]), and when a flood makes synwall
/// take the SYNs over from the kernel's listener (answer-syns = kernel-first): once per
/// takeover that follows [`TAKEOVERS_QUIET`] without one. Samples once a second until the
/// server shuts down.
pub(super) fn monitor_flood(
    shards: &[Arc<Counters>],
    program: &SteeringProgram,
    shutdown: &Shutdown,
) {
    let counts = || SynQueueCounts {
        overflowed: shards
            .iter()
            .map(|counters| counters.get(Counter::SynQueueOverflow))
            .sum(),
        dropped: shards
            .iter()
            .map(|counters| counters.get(Counter::SynQueueFullDrops))
            .sum(),
    };
    let mut watch = FloodWatch::new(Instant::now(), counts());
    let takeovers = || program.counters().map_or(0, |counters| counters.takeovers);
    let (mut last_takeovers, mut last_takeover) = (takeovers(), None::<Instant>);
    while !shutdown.wait_timeout(Duration::from_secs(1)) {
        let now = Instant::now();
        let seen = takeovers();
        if seen > last_takeovers {
            if last_takeover.is_none_or(|at| now.duration_since(at) >= TAKEOVERS_QUIET) {
                tracing::warn!(
                    "SYN flood: the listening socket's SYN queue is full; synwall answers \
                     the SYNs (answer-syns = kernel-first) while it stays full"
                );
            }
            (last_takeovers, last_takeover) = (seen, Some(now));
        }
        match watch.sample(now, counts()) {
            Some(FloodEvent::Started {
                overflowed_per_second,
                dropped_per_second,
            }) => tracing::warn!(
                overflowed_per_second,
                dropped_per_second,
                "SYN flood: the SYN queue is full; SYNs that find it full are answered with \
                 cookies (syncookies = when-full) or dropped (never)"
            ),
            Some(FloodEvent::Over {
                overflowed,
                dropped,
                lasted,
            }) => tracing::info!(
                overflowed,
                dropped,
                lasted_s = lasted.as_secs(),
                "SYN flood over: the SYN queue has not overflowed for {} s",
                FLOOD_OVER_AFTER.as_secs()
            ),
            None => {}
        }
    }
}

/// Wall-clock time since the Unix epoch (cookie key epochs).
fn unix_time() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}
