//! `loadgen`: parses the command line, stops the run cleanly on SIGINT/SIGTERM, and exits
//! non-zero with the error's cause chain when the run fails. See the library for the rest.

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
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;
    }
    loadgen::run(&config, &stop, io::stdout().lock(), io::stderr())?;
    Ok(())
}
