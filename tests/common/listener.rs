//! Helpers of the listener's packet-level test files (`listener*.rs`): a harness per cookie
//! mode, counter reads, the accepted connection out of a verdict, and the time steps the
//! tests take. Included by each of them (`#[path = "common/listener.rs"] mod
//! listener_support;`), next to `mod common;`.
#![allow(dead_code)] // Each test crate uses a different subset.

use std::time::Duration;

use synwall::counters::Counter;
use synwall::listener::{Accepted, SyncookiesMode, Verdict};

use crate::common::{Harness, config};

/// The harness's smallest step.
pub const MS: Duration = Duration::from_millis(1);
pub const SECOND: Duration = Duration::from_secs(1);

/// A harness with the listener of [`config`]`(syncookies)`.
pub fn harness(syncookies: SyncookiesMode) -> Harness {
    Harness::new(config(syncookies))
}

/// The listener's `counter`.
pub fn count(harness: &Harness, counter: Counter) -> u64 {
    harness.listener.counters().get(counter)
}

/// The connection a verdict accepted; panics on any other verdict.
#[track_caller]
pub fn expect_accepted(verdict: Verdict) -> Accepted {
    match verdict {
        Verdict::Accepted(accepted) => accepted,
        other => panic!("expected Accepted, got {other:?}"),
    }
}
