//! The `synwall` command.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use synwall::cookie::keys::Secret;

#[derive(Parser)]
#[command(version, about = "A SYN-flood-resistant TCP listener")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new cookie secret (mode 0600) for a fleet of synwall instances to share.
    Keygen {
        /// Where to write it; an existing file is never overwritten.
        path: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keygen { path } => {
            Secret::random()?
                .store(&path)
                .with_context(|| format!("writing the secret to {}", path.display()))?;
            println!("wrote a new secret to {}", path.display());
        }
    }
    Ok(())
}
