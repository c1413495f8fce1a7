//! `synwall-lab` (`sudo make lab`): synwall, the kernel's listener and the kernel's XDP SYN
//! proxy against a bounded flood and real clients, between two network namespaces it creates.
//! The lab is not part of the product: it lives beside the generator it drives. Logs go to
//! standard error, filtered by `RUST_LOG` (default `info`); a failure is printed once, with its
//! cause, and exits with status 1. See [`loadgen::lab`] for the rest.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use loadgen::lab::{self, LabArgs};

fn main() -> ExitCode {
    let args = LabArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match lab::command(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("synwall-lab: {error}");
            ExitCode::FAILURE
        }
    }
}
