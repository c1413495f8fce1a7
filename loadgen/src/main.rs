//! `loadgen`: parses the command line, stops the run cleanly on SIGINT/SIGTERM (at once on the
//! second one), and exits with status 1 and the error's message when the run fails. Messages
//! are self-contained (cause and remedy in one line), so only the top one is printed. See the
//! library for the rest.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;
use loadgen::Args;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadgen: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config = Args::parse().into_config()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        // The first signal stops the run cleanly (summary included); a second one exits at once.
        ctrlc::set_handler(move || {
            if stop.swap(true, Ordering::Relaxed) {
                std::process::exit(130);
            }
        })?;
    }
    loadgen::run(&config, &stop, io::stdout().lock(), io::stderr())?;
    Ok(())
}
