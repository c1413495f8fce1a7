//! `synwall stats` and `synwall status`: what a running synwall does, read from its metrics
//! endpoint and from what the kernel shows attached.

use std::thread;
use std::time::{Instant, SystemTime};

use anyhow::Context;
use synwall::metrics::Scrape;
use synwall::metrics::view::{self, Table};
use synwall::status::Status;

use crate::{StatsArgs, StatusArgs};

/// A line per interval (see [`view`]): every interval measured from the scrapes themselves,
/// the lines kept on the interval's cadence.
pub(crate) fn stats(args: &StatsArgs) -> anyhow::Result<()> {
    let address = args.endpoint.address()?;
    let fetch = || -> anyhow::Result<(Scrape, Instant)> {
        let scrape = Scrape::fetch(address)
            .with_context(|| format!("reading the metrics of the synwall at {address}"))?;
        Ok((scrape, Instant::now()))
    };
    let (mut previous, mut previous_at) = fetch()?;
    let mut table = Table::new(args.per_queue);
    let mut due = previous_at;
    for _ in 0..args.count.unwrap_or(u64::MAX) {
        due += args.interval;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let (now, now_at) = fetch()?;
        let lines = view::lines(
            &previous,
            &now,
            now_at - previous_at,
            SystemTime::now(),
            args.per_queue,
        );
        if args.json {
            for line in &lines {
                println!("{}", line.json());
            }
        } else {
            print!("{}", table.write(&lines));
        }
        (previous, previous_at) = (now, now_at);
    }
    Ok(())
}

/// The report (or its JSON); fails, naming every place looked at, when no synwall is found.
pub(crate) fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let status = Status::gather(args.endpoint.address()?, args.interval);
    if args.json {
        println!("{}", status.json());
    } else {
        print!("{}", status.text());
    }
    anyhow::ensure!(status.synwall_found(), "{}", status.not_found());
    Ok(())
}
