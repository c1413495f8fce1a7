//! A stop signal that wakes every thread waiting on it at once, instead of each thread waking
//! every so often to look at a flag.
//!
//! [`Shutdown::trigger`] sets a flag (for loops that look at it between rounds of work, at the
//! cost of one relaxed load) and disconnects a channel on which nothing is ever sent: a thread
//! blocked in `crossbeam_channel::select!` on [`Shutdown::signal`] beside its real work, or in
//! [`Shutdown::wait_timeout`], returns as soon as it is triggered; a thread blocked elsewhere
//! (in `poll` on its own eventfd) registers how to wake it with [`Shutdown::also_wake`]. Clones
//! share one signal; triggering twice is harmless.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Never sent: the signal channel only ever disconnects.
#[derive(Debug)]
pub enum Never {}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<Inner>);

/// How to wake one thread that waits elsewhere than on the signal.
type WakeUp = Box<dyn Fn() + Send + Sync>;

struct Inner {
    triggered: AtomicBool,
    /// Dropped by the first trigger, which disconnects `signal`; `None` once triggered.
    sender: Mutex<Option<Sender<Never>>>,
    signal: Receiver<Never>,
    /// Called once, by the first trigger.
    wake_ups: Mutex<Vec<WakeUp>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("triggered", &self.triggered)
            .finish_non_exhaustive()
    }
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        let (sender, signal) = crossbeam_channel::bounded(0);
        Shutdown(Arc::new(Inner {
            triggered: AtomicBool::new(false),
            sender: Mutex::new(Some(sender)),
            signal,
            wake_ups: Mutex::default(),
        }))
    }
}

impl Shutdown {
    /// Stops everything waiting on this signal or any clone of it.
    pub fn trigger(&self) {
        self.0.triggered.store(true, Ordering::Relaxed);
        self.0
            .sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let wake_ups = std::mem::take(&mut *self.lock_wake_ups());
        for wake_up in wake_ups {
            wake_up();
        }
    }

    /// Calls `wake_up` when triggered (at once if it has been already): for a thread that
    /// waits on something of its own, such as an AF_XDP socket and its eventfd.
    pub fn also_wake(&self, wake_up: impl Fn() + Send + Sync + 'static) {
        let mut wake_ups = self.lock_wake_ups();
        if self.is_triggered() {
            drop(wake_ups);
            wake_up();
        } else {
            wake_ups.push(Box::new(wake_up));
        }
    }

    fn lock_wake_ups(&self) -> std::sync::MutexGuard<'_, Vec<WakeUp>> {
        self.0
            .wake_ups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_triggered(&self) -> bool {
        self.0.triggered.load(Ordering::Relaxed)
    }

    /// Ready (disconnected) once triggered: a `recv` branch of `select!`.
    pub fn signal(&self) -> &Receiver<Never> {
        &self.0.signal
    }

    /// Sleeps for `timeout` or until triggered, whichever comes first; whether it was.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match self.0.signal.recv_timeout(timeout) {
            Err(RecvTimeoutError::Timeout) => self.is_triggered(),
            Err(RecvTimeoutError::Disconnected) => true,
            Ok(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Instant;

    use super::*;

    #[test]
    fn test_a_trigger_wakes_every_waiter_at_once() {
        let shutdown = Shutdown::default();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let shutdown = shutdown.clone();
                thread::spawn(move || {
                    let started = Instant::now();
                    (shutdown.wait_timeout(Duration::from_secs(600)), started)
                })
            })
            .collect();
        shutdown.trigger();
        shutdown.trigger();
        for waiter in waiters {
            let (triggered, started) = waiter.join().unwrap();
            assert!(triggered);
            // Far below the wait asked for: the trigger ended it.
            assert!(started.elapsed() < Duration::from_secs(60));
        }
        assert!(shutdown.is_triggered());
        assert!(shutdown.signal().recv().is_err(), "disconnected");
    }

    #[test]
    fn test_also_wake_is_called_once_by_the_trigger_or_at_once_after_it() {
        use std::sync::atomic::AtomicUsize;
        let shutdown = Shutdown::default();
        let woken = Arc::new(AtomicUsize::new(0));
        let counting = || {
            let woken = Arc::clone(&woken);
            move || {
                woken.fetch_add(1, Ordering::Relaxed);
            }
        };
        shutdown.also_wake(counting());
        shutdown.also_wake(counting());
        assert_eq!(woken.load(Ordering::Relaxed), 0, "not before the trigger");
        shutdown.trigger();
        shutdown.trigger();
        assert_eq!(woken.load(Ordering::Relaxed), 2, "each once");
        shutdown.also_wake(counting());
        assert_eq!(
            woken.load(Ordering::Relaxed),
            3,
            "at once when already triggered"
        );
    }

    #[test]
    fn test_an_untriggered_wait_times_out() {
        let shutdown = Shutdown::default();
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        assert!(!shutdown.is_triggered());
    }
}
