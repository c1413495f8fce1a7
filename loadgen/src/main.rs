//! `loadgen`: parses the command line, stops the run cleanly on SIGINT/SIGTERM (at once on the
//! second one), and exits non-zero with the error's cause chain when the run fails. See the
//! library for the rest.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;
use loadgen::Args;

fn main() -> anyhow::Result<()> {
    let config = Args::parse().into_config()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // The first signal stops the run cleanly (summary included); a second one exits at once.
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        })
        .context("installing the SIGINT/SIGTERM handler")?;
    }
    loadgen::run(&config, &stop, io::stdout().lock(), io::stderr())?;
    Ok(())
}
