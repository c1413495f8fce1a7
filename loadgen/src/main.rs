//! `loadgen`: bounded flood generator for synwall's lab.

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Bounded SYN/ACK flood generator for synwall's lab")]
struct Cli {}

fn main() {
    let _ = Cli::parse();
}
