//! Why a lab run could not start or did not finish. Each message says what was being done and,
//! where an operator can act, what to do.

use std::io;
use std::path::PathBuf;

use synwall::server::ServerError;

/// See the module documentation.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{0}")]
    Setting(String),
    #[error(
        "the flood generator is not at {}: build it with `cargo build --release --workspace` \
         (synwall looks for loadgen next to its own executable), or pass --loadgen PATH",
        .0.display()
    )]
    LoadgenMissing(PathBuf),
    #[error("the lab needs root (network namespaces, XDP, CPU placement of kernel threads)")]
    NotRoot,
    #[error("building the lab topology: {0}")]
    Topology(io::Error),
    #[error("placing the server side on CPU {cpu}: {source}")]
    Placement { cpu: usize, source: io::Error },
    #[error("starting synwall in the lab: {0}")]
    Synwall(#[from] ServerError),
    #[error("the kernel listener in the lab: {0}")]
    Kernel(io::Error),
    #[error("the XDP SYN proxy in the lab, {what}: {source}")]
    SynProxy {
        what: &'static str,
        source: io::Error,
    },
    #[error("the server side stopped during the run: {0}")]
    ServerSide(String),
    #[error("reading the server namespace's {what}: {source}")]
    Probe {
        what: &'static str,
        source: io::Error,
    },
    #[error("loadgen: {0}")]
    Generator(String),
    #[error("the lab's clients: {0}")]
    Clients(io::Error),
    #[error("installing signal handlers: {0}")]
    Signals(io::Error),
    #[error("writing the output: {0}")]
    Output(io::Error),
    #[error("interrupted")]
    Interrupted,
}
