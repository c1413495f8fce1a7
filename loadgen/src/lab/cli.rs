//! The command line of `synwall-lab` ([`LabArgs`], clap) and its validation into a
//! [`LabConfig`].
//!
//! Validation bounds every flood before anything is built, within the [`limits`] loadgen
//! enforces: the duration is capped at [`MAX_DURATION`], and the packet count passed to the
//! generator is derived from rate and duration ([`Flood`]), so each run stops by itself twice
//! over. A run has the flood asked for and, for the efficiency figure, optionally a SYN flood
//! at a fixed rate (`--fixed-rate`, 200k by default with `--compare`).
//!
//! [`limits`]: crate::lab::limits

use std::path::PathBuf;
use std::time::Duration;

use crate::lab::error::LabError;
use crate::lab::limits::{
    MAX_DURATION, MAX_LEGIT_RATE, MAX_LEGIT_TIMEOUT, MAX_PACKETS, parse_count,
};
use crate::lab::topology::Family;
use synwall::handoff::HandoffMode;
use synwall::sys::SynAnswerer;

/// The packet bound of a max-rate run, per second of flood: above what one generator core
/// reaches on veth (about 1.9 M/s measured), so the duration is what stops it (up to
/// loadgen's [`MAX_PACKETS`], which a run of over 500 s at that speed reaches first).
const MAX_RATE_BOUND_PPS: u64 = 3_000_000;

/// The fixed-rate flood of `--compare` when no `--fixed-rate` is given (SYNs per second): below
/// what every target answers on one core of this lab (LAB-NOTES).
pub const DEFAULT_FIXED_RATE: u64 = 200_000;

/// The new connections per second of `--peacetime`'s cost phase when no `--cost-rate` is given:
/// below what synwall in repair mode, the slowest target, sustains on one core of this lab.
pub const DEFAULT_COST_RATE: u32 = 2_000;

/// The first line of `synwall-lab --help`.
const ABOUT: &str = "Flood synwall (or the kernel, or the kernel's XDP SYN proxy) between two network \
     namespaces and measure it (root)";
/// `synwall-lab --help`.
const LONG_ABOUT: &str = "\
Flood synwall (or the kernel's listener, or the kernel's XDP SYN proxy) between two network \
namespaces and measure how it holds up. Needs root.

Builds its own namespaces and veth pair (198.18.0.0/15, and 2001:2::/48 with --ipv6), places the server side on one CPU \
(synwall's fast path and its receive work: threaded NAPI, or RPS for the kernel) and the \
generator on another, then runs loadgen (found next to this executable) in the client \
namespace: a bounded flood plus legit clients. Prints a table per second and a summary; with \
--compare, synwall, the kernel and the XDP SYN proxy, each on fresh namespaces, side by side. \
The same service runs behind all three: in native handoff (the default) it listens on the \
served port itself, in repair mode synwall proxies to it; the XDP SYN proxy answers SYNs with \
the kernel's cookies from XDP and passes cookie ACKs to nftables synproxy in front of it.

--fixed-rate (200k with --compare) adds, per target, a SYN flood at that rate, below every \
target's saturation: the server CPU's busy time per SYN-ACK (from /proc/stat), SYN-ACKs per \
second of server CPU, and legit connect latency where nothing is dropped. That figure does not \
depend on how the client side keeps up, as the maximum-rate one does. A server CPU busy with \
other work before a run or after the last one withholds every ratio.

With --peacetime there is no flood: the same service behind synwall and behind the kernel \
alone, side by side: request latency at 100 new connections/s (the request sent right after \
connect()), the server CPU's busy time per new connection at --cost-rate (2,000/s by default, \
below every target's saturation), the most new connections/s of which 99.9 % succeed with a \
p99 under 10 ms, and keep-alive requests/s over 20 connections.

Everything is removed on exit, on failure and on Ctrl-C (a first Ctrl-C stops the flood \
cleanly).";

/// What the flood sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FloodMode {
    /// SYNs from spoofed sources (real clients' options).
    Syn,
    /// ACKs with random tuples, sequence and acknowledgment numbers.
    Ack,
    /// ACKs made from the target's own cookies, each nearly right.
    NearMiss,
    /// A weighted mix of kinds (see --mix).
    Mix,
}

/// Which listener faces the flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// synwall on AF_XDP, in front of the built-in service.
    Synwall,
    /// The Linux listener (tcp_syncookies=1) in front of the same service.
    Kernel,
    /// The kernel's cookies answered from XDP (XDP_TX), cookie ACKs passed to nftables
    /// synproxy, in front of the same service.
    XdpSynproxy,
}

impl Target {
    /// Every target, in the order --compare runs them.
    pub const ALL: [Target; 3] = [Target::Synwall, Target::Kernel, Target::XdpSynproxy];

    /// The name, as --target takes it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Synwall => "synwall",
            Target::Kernel => "kernel",
            Target::XdpSynproxy => "xdp-synproxy",
        }
    }
}

/// synwall's XDP attach mode in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabXdpMode {
    /// Native (driver) mode, with threaded NAPI pinned to the server CPU.
    Native,
    /// Generic (SKB) mode, with RPS steering receive work to the server CPU.
    Generic,
}

/// synwall's handoff mode in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabHandoff {
    /// The service listens on the served port; synwall hands it each connection natively.
    Native,
    /// The service listens on another port; synwall repairs each connection and proxies it
    /// there, announcing the client with a PROXY protocol v2 header.
    Repair,
}

impl LabHandoff {
    pub fn mode(self) -> HandoffMode {
        match self {
            LabHandoff::Native => HandoffMode::Native,
            LabHandoff::Repair => HandoffMode::Repair,
        }
    }
}

/// Where the service listens behind synwall's proxy (repair mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabUpstream {
    /// A TCP port of the server's address: a second TCP connection on the loopback per
    /// client.
    Tcp,
    /// A Unix stream socket (synwall's `upstream = "unix:/PATH"`).
    Unix,
}

impl LabUpstream {
    pub fn name(self) -> &'static str {
        match self {
            LabUpstream::Tcp => "tcp",
            LabUpstream::Unix => "unix",
        }
    }
}

/// Who answers new connections' SYNs (synwall's `answer-syns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabAnswerSyns {
    /// The kernel's listener (the service's in native handoff, synwall's own in repair mode)
    /// while its SYN queue has room; synwall from the moment a flood fills it, for at least
    /// 10 s.
    KernelFirst,
    /// synwall, every SYN.
    Synwall,
}

impl LabAnswerSyns {
    pub fn answerer(self) -> SynAnswerer {
        match self {
            LabAnswerSyns::KernelFirst => SynAnswerer::KernelFirst,
            LabAnswerSyns::Synwall => SynAnswerer::Synwall,
        }
    }
}

/// How the kernel's receive work gets to the server CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelRx {
    /// Threaded NAPI (GRO on), as synwall's: the generator offers the same flood to both.
    Napi,
    /// RPS: the generator pays a remote enqueue per packet and offers about half the load.
    Rps,
    /// Threaded NAPI with a do-nothing XDP program on the server veth: the receive path that
    /// synwall's program puts every packet on (a veth copies each cloned TCP packet into a page
    /// for XDP, which a NIC's driver does not), without synwall. Against it, synwall's peacetime
    /// figures show synwall's own cost; against `napi`, also the veth's.
    XdpPass,
}

/// The `synwall-lab` command line (`synwall-lab --help` tells what it does).
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "synwall-lab", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct LabArgs {
    /// The listener facing the flood.
    #[arg(long, value_enum, default_value_t = Target::Synwall, conflicts_with = "compare")]
    pub target: Target,
    /// Run synwall, the kernel and the XDP SYN proxy, each on a fresh lab, and compare them.
    #[arg(long)]
    pub compare: bool,
    /// No flood: new connections/s, request latency and keep-alive requests/s through synwall
    /// against the kernel alone, side by side.
    #[arg(long, conflicts_with_all = ["target", "compare"])]
    pub peacetime: bool,
    /// How synwall hands connections to the service: into its own listening socket (native),
    /// or built with TCP_REPAIR and proxied to it (repair).
    #[arg(long, value_enum, default_value_t = LabHandoff::Native)]
    pub handoff: LabHandoff,
    /// Who answers new connections' SYNs: the kernel's listener until a flood fills its SYN
    /// queue (kernel-first, synwall's default; the service's own in native handoff, synwall's
    /// own listening socket in repair mode), or synwall (every SYN).
    #[arg(long, value_enum, default_value_t = LabAnswerSyns::KernelFirst)]
    pub answer_syns: LabAnswerSyns,
    /// With --handoff repair: where the service listens behind synwall's proxy, a TCP port
    /// (8080) or a Unix stream socket (in the temporary directory, removed afterwards).
    #[arg(long, value_enum, default_value_t = LabUpstream::Tcp)]
    pub upstream: LabUpstream,
    /// Run over IPv6 (2001:2::/48): the service and synwall serve port 80 of 2001:2::1, the
    /// flood spoofs IPv6 sources, the legit and peacetime clients connect over IPv6.
    #[arg(long)]
    pub ipv6: bool,
    /// Rx and tx queues of the lab's veth, both ends (at most the host's CPUs): one synwall
    /// shard and one generator thread per queue, every queue's receive work on the server CPU.
    /// With two cores this is a correctness run: it cannot show scaling.
    #[arg(long, default_value_t = 1, conflicts_with = "peacetime")]
    pub queues: u32,
    /// --peacetime: how long the latency and the keep-alive phases each last.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub phase: Duration,
    /// --peacetime: how long each step of the connection-rate search lasts (a rate misses
    /// the objective when two steps of it in a row miss).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub search_step: Duration,
    /// --peacetime: the highest connection rate the search tries (per second).
    #[arg(long, default_value_t = 200_000)]
    pub search_max_rate: u32,
    /// --peacetime: the new connections per second at which the server CPU's busy time per
    /// connection is measured; below every target's saturation, so that the figure does not
    /// depend on how the search's steps fall. At most --search-max-rate. Default: 2000, or
    /// --search-max-rate when that is lower.
    #[arg(long)]
    pub cost_rate: Option<u32>,
    /// What the flood sends.
    #[arg(long, value_enum, default_value_t = FloodMode::Syn)]
    pub mode: FloodMode,
    /// The weights of --mode mix, as loadgen takes them (kinds: syn, ack, near-miss, rst, fin).
    #[arg(
        long,
        value_name = "KIND=WEIGHT,...",
        default_value = "syn=80,ack=10,near-miss=10"
    )]
    pub mix: String,
    /// Flood packets per second: a number (k and M suffixes allowed) or "max".
    #[arg(long, value_name = "PPS|max", default_value = "max", value_parser = parse_rate)]
    pub rate: Rate,
    /// After the flood of --rate, a SYN flood at this fixed rate (k and M suffixes allowed)
    /// against each target, for the server CPU per SYN-ACK; 0: none. Default: 200k with
    /// --compare, none without.
    #[arg(long, value_name = "PPS", value_parser = parse_fixed_rate, conflicts_with = "peacetime")]
    pub fixed_rate: Option<u64>,
    /// How long each flood lasts (at most 600 s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Legit connections started per second during the flood (0: none).
    #[arg(long, default_value_t = 100)]
    pub legit_rate: u32,
    /// How long a legit client waits for connect() and again for the reply.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub legit_timeout: Duration,
    /// The CPU of the whole server side (synwall's fast path, its receive work, the service).
    #[arg(long, default_value_t = 1)]
    pub server_cpu: usize,
    /// The CPU of the generator and of the lab's own threads.
    #[arg(long, default_value_t = 0)]
    pub client_cpu: usize,
    /// synwall's XDP mode.
    #[arg(long, value_enum, default_value_t = LabXdpMode::Native)]
    pub xdp_mode: LabXdpMode,
    /// How the kernel's receive work reaches the server CPU, for --target kernel.
    #[arg(long, value_enum, default_value_t = KernelRx::Napi)]
    pub kernel_rx: KernelRx,
    /// The loadgen binary (default: next to this executable).
    #[arg(long, value_name = "PATH")]
    pub loadgen: Option<PathBuf>,
    /// Print one JSON summary object on stdout; the live table goes to stderr.
    #[arg(long)]
    pub json: bool,
}

/// The flood rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// As fast as the generator's core goes.
    Max,
    PerSecond(u64),
}

/// A count with an optional k or M suffix; 0 turns the fixed-rate flood off.
fn parse_fixed_rate(text: &str) -> Result<u64, String> {
    parse_count(text).ok_or_else(|| format!("{text:?} is not a rate like 200000, 200k or 0"))
}

/// "max", or a positive count with an optional k or M suffix.
fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match parse_count(text) {
        Some(rate) if rate > 0 => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "{text:?} is not \"max\" or a rate like 50000, 50k or 1M"
        )),
    }
}

/// One flood of a run: what loadgen sends, how fast, and its packet bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    pub mode: FloodMode,
    pub rate: Rate,
    /// The generator's packet bound: the rate (or, at max rate, [`MAX_RATE_BOUND_PPS`]) times
    /// the duration, within loadgen's [`MAX_PACKETS`].
    pub packets: u64,
}

impl Flood {
    fn new(mode: FloodMode, rate: Rate, duration: Duration) -> Flood {
        let per_second = match rate {
            Rate::Max => MAX_RATE_BOUND_PPS,
            Rate::PerSecond(rate) => rate,
        };
        let packets = (per_second as f64 * duration.as_secs_f64()).ceil() as u64;
        Flood {
            mode,
            rate,
            packets: packets.clamp(1, MAX_PACKETS),
        }
    }

    /// The rate asked for; None for max.
    pub fn rate_pps(&self) -> Option<u64> {
        match self.rate {
            Rate::Max => None,
            Rate::PerSecond(rate) => Some(rate),
        }
    }
}

/// Why a flood runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The flood asked for with --mode and --rate.
    Asked,
    /// The SYN flood at --fixed-rate, for the server CPU per SYN-ACK.
    FixedRate,
}

/// A validated lab run.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Run one after another, each on a fresh topology.
    pub targets: Vec<Target>,
    /// No flood: the peacetime measurement.
    pub peacetime: bool,
    pub handoff: LabHandoff,
    pub answer_syns: LabAnswerSyns,
    pub upstream: LabUpstream,
    /// The family of every address of the run.
    pub family: Family,
    pub phase: Duration,
    pub search_step: Duration,
    pub search_max_rate: u32,
    pub cost_rate: u32,
    /// The flood asked for (--mode, --rate), against every target.
    pub flood: Flood,
    /// The SYN flood at a fixed rate for the efficiency figure, against every target after
    /// [`LabConfig::flood`]; None when there is none.
    pub fixed_rate: Option<Flood>,
    pub mix: String,
    pub duration: Duration,
    pub legit_rate: u32,
    pub legit_timeout: Duration,
    pub server_cpu: usize,
    pub client_cpu: usize,
    /// Rx and tx queues of the veth's ends; a synwall shard and a generator thread each.
    pub queues: u32,
    pub xdp_mode: LabXdpMode,
    pub kernel_rx: KernelRx,
    pub loadgen: PathBuf,
    pub json: bool,
}

impl LabConfig {
    /// The floods of the run in order, each against every target.
    pub fn floods(&self) -> impl Iterator<Item = (Phase, Flood)> {
        let fixed_rate = self.fixed_rate.map(|flood| (Phase::FixedRate, flood));
        std::iter::once((Phase::Asked, self.flood)).chain(fixed_rate)
    }
}

impl LabArgs {
    /// Checks the settings and finds the generator; builds nothing.
    pub fn into_config(self) -> Result<LabConfig, LabError> {
        let loadgen = self.generator()?;
        self.check_durations()?;
        self.check_legit_clients()?;
        self.check_cpus()?;
        self.check_cost_rate()?;
        if self.upstream == LabUpstream::Unix && self.handoff != LabHandoff::Repair {
            return Err(LabError::Setting(
                "--upstream unix needs --handoff repair: only repair mode proxies".to_owned(),
            ));
        }
        let fixed_rate = match self.fixed_rate {
            Some(rate) => rate,
            None if self.compare => DEFAULT_FIXED_RATE,
            None => 0,
        };
        Ok(LabConfig {
            targets: if self.compare {
                Target::ALL.to_vec()
            } else if self.peacetime {
                vec![Target::Synwall, Target::Kernel]
            } else {
                vec![self.target]
            },
            peacetime: self.peacetime,
            handoff: self.handoff,
            answer_syns: self.answer_syns,
            upstream: self.upstream,
            family: if self.ipv6 { Family::V6 } else { Family::V4 },
            phase: self.phase,
            search_step: self.search_step,
            search_max_rate: self.search_max_rate,
            cost_rate: self
                .cost_rate
                .unwrap_or(DEFAULT_COST_RATE.min(self.search_max_rate)),
            flood: Flood::new(self.mode, self.rate, self.duration),
            fixed_rate: (fixed_rate > 0 && !self.peacetime)
                .then(|| Flood::new(FloodMode::Syn, Rate::PerSecond(fixed_rate), self.duration)),
            mix: self.mix,
            duration: self.duration,
            legit_rate: self.legit_rate,
            legit_timeout: self.legit_timeout,
            server_cpu: self.server_cpu,
            client_cpu: self.client_cpu,
            queues: self.queues,
            xdp_mode: self.xdp_mode,
            kernel_rx: self.kernel_rx,
            loadgen,
            json: self.json,
        })
    }

    /// The loadgen binary: --loadgen, or `loadgen` next to this executable. It must exist
    /// unless the run is a peacetime one.
    fn generator(&self) -> Result<PathBuf, LabError> {
        let loadgen = match &self.loadgen {
            Some(path) => path.clone(),
            None => std::env::current_exe()
                .map_err(|source| {
                    LabError::Generator(format!("finding this executable: {source}"))
                })?
                .with_file_name("loadgen"),
        };
        // A peacetime run has no flood: its clients are the lab's own.
        if !self.peacetime && !loadgen.is_file() {
            return Err(LabError::LoadgenMissing(loadgen));
        }
        Ok(loadgen)
    }

    /// --duration, --phase and --search-step are above 0 and at most [`MAX_DURATION`].
    fn check_durations(&self) -> Result<(), LabError> {
        let setting = |text: String| Err(LabError::Setting(text));
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return setting(format!(
                "--duration must be above 0 and at most {} s",
                MAX_DURATION.as_secs()
            ));
        }
        for (name, duration) in [("--phase", self.phase), ("--search-step", self.search_step)] {
            if duration.is_zero() || duration > MAX_DURATION {
                return setting(format!(
                    "{name} must be above 0 and at most {} s",
                    MAX_DURATION.as_secs()
                ));
            }
        }
        Ok(())
    }

    /// --cost-rate is above 0 and at most --search-max-rate.
    fn check_cost_rate(&self) -> Result<(), LabError> {
        let Some(rate) = self.cost_rate else {
            return Ok(());
        };
        if rate == 0 || rate > self.search_max_rate {
            return Err(LabError::Setting(format!(
                "--cost-rate must be above 0 and at most --search-max-rate ({})",
                self.search_max_rate
            )));
        }
        Ok(())
    }

    /// --legit-rate is at most [`MAX_LEGIT_RATE`], --legit-timeout above 0 and at most
    /// [`MAX_LEGIT_TIMEOUT`].
    fn check_legit_clients(&self) -> Result<(), LabError> {
        let setting = |text: String| Err(LabError::Setting(text));
        if self.legit_rate > MAX_LEGIT_RATE {
            return setting(format!("--legit-rate is at most {MAX_LEGIT_RATE}"));
        }
        if self.legit_timeout.is_zero() || self.legit_timeout > MAX_LEGIT_TIMEOUT {
            return setting(format!(
                "--legit-timeout must be above 0 and at most {} s",
                MAX_LEGIT_TIMEOUT.as_secs()
            ));
        }
        Ok(())
    }

    /// --server-cpu and --client-cpu are two different CPUs of this machine, and --queues
    /// at most one per CPU.
    fn check_cpus(&self) -> Result<(), LabError> {
        let setting = |text: String| Err(LabError::Setting(text));
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if self.server_cpu == self.client_cpu || self.server_cpu.max(self.client_cpu) >= cpus {
            return setting(format!(
                "--server-cpu and --client-cpu must be two different CPUs below {cpus}: the \
                 lab needs one core for the server side and one for the generator"
            ));
        }
        if !(1..=cpus).contains(&(self.queues as usize)) {
            return setting(format!(
                "--queues must be between 1 and {cpus}: a veth has at most one queue per CPU"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: LabArgs,
    }

    fn parse(argv: &[&str]) -> Result<LabArgs, String> {
        let argv = std::iter::once("lab").chain(argv.iter().copied());
        Wrapper::try_parse_from(argv)
            .map(|wrapper| wrapper.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn test_rates() {
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert_eq!(parse_rate("50k"), Ok(Rate::PerSecond(50_000)));
        assert_eq!(parse_rate("2M"), Ok(Rate::PerSecond(2_000_000)));
        assert_eq!(parse_rate("700"), Ok(Rate::PerSecond(700)));
        for bad in ["0", "k", "fast", "-5", "99999999999999999M"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn test_defaults_and_conflicts() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.target, Target::Synwall);
        assert_eq!(args.rate, Rate::Max);
        assert_eq!(args.duration, Duration::from_secs(10));
        assert!(parse(&["--compare", "--target", "kernel"]).is_err());
        assert!(parse(&["--peacetime", "--compare"]).is_err());
        assert_eq!(args.handoff, LabHandoff::Native);
        assert_eq!(
            parse(&["--handoff", "repair"]).unwrap().handoff,
            LabHandoff::Repair
        );
        assert!(!args.ipv6);
        assert!(parse(&["--ipv6", "--compare"]).unwrap().ipv6);
        assert!(parse(&["--ipv6", "--peacetime"]).unwrap().ipv6);
        assert_eq!(
            parse(&["--target", "xdp-synproxy"]).unwrap().target,
            Target::XdpSynproxy
        );
        assert_eq!(args.fixed_rate, None);
        assert_eq!(
            parse(&["--fixed-rate", "200k"]).unwrap().fixed_rate,
            Some(200_000)
        );
        assert!(parse(&["--fixed-rate", "fast"]).is_err());
        assert!(parse(&["--peacetime", "--fixed-rate", "1k"]).is_err());
        assert_eq!(args.queues, 1);
        assert_eq!(parse(&["--queues", "2", "--compare"]).unwrap().queues, 2);
        assert!(parse(&["--peacetime", "--queues", "2"]).is_err());
    }

    #[test]
    fn test_validation() {
        // Any existing file passes for the generator here; nothing is run.
        let present = std::env::current_exe().unwrap();
        let error = |loadgen: &str, argv: &[&str]| {
            let mut argv = argv.to_vec();
            argv.extend(["--loadgen", loadgen]);
            parse(&argv).unwrap().into_config().unwrap_err().to_string()
        };
        let present = present.to_str().unwrap();
        assert!(error(present, &["--duration", "11m"]).contains("--duration"));
        let same_cpu = error(present, &["--server-cpu", "0", "--client-cpu", "0"]);
        assert!(same_cpu.contains("two different"), "{same_cpu}");
        assert!(error(present, &["--legit-rate", "10001"]).contains("--legit-rate"));
        assert!(error(present, &["--queues", "0"]).contains("--queues"));
        assert!(error(present, &["--cost-rate", "0"]).contains("--cost-rate"));
        let above_search = &["--cost-rate", "2001", "--search-max-rate", "2000"];
        assert!(error(present, above_search).contains("--search-max-rate (2000)"));
        assert!(error(present, &["--queues", "4097"]).contains("one queue per CPU"));
        let config = |argv: &[&str]| {
            let mut argv = argv.to_vec();
            argv.extend(["--loadgen", present]);
            parse(&argv).unwrap().into_config().unwrap()
        };
        assert_eq!(config(&["--duration", "10s"]).flood.packets, 30_000_000);
        assert_eq!(config(&[]).family, Family::V4);
        assert_eq!(config(&["--ipv6"]).family, Family::V6);
        let slow = config(&["--rate", "1k", "--duration", "2s"]);
        assert_eq!(slow.flood.packets, 2_000);
        // The longest run, at max rate or at a rate no generator reaches, stays within what
        // loadgen accepts.
        assert_eq!(config(&["--duration", "600s"]).flood.packets, MAX_PACKETS);
        let fast = config(&["--rate", "10M", "--duration", "300s"]);
        assert_eq!(fast.flood.packets, MAX_PACKETS);
        // --compare: every target, and the fixed-rate SYN flood at its default rate unless
        // turned off; a single target gets it only when asked.
        let compare = config(&["--compare", "--mode", "near-miss", "--duration", "2s"]);
        assert_eq!(compare.targets, Target::ALL);
        assert_eq!(compare.flood.mode, FloodMode::NearMiss);
        let fixed = compare.fixed_rate.unwrap();
        assert_eq!(fixed.mode, FloodMode::Syn);
        assert_eq!(fixed.rate_pps(), Some(DEFAULT_FIXED_RATE));
        assert_eq!(fixed.packets, 2 * DEFAULT_FIXED_RATE);
        assert_eq!(config(&["--compare", "--fixed-rate", "0"]).fixed_rate, None);
        assert_eq!(config(&[]).fixed_rate, None);
        let single = config(&["--target", "xdp-synproxy", "--fixed-rate", "50k"]);
        assert_eq!(single.targets, [Target::XdpSynproxy]);
        assert_eq!(single.fixed_rate.unwrap().rate_pps(), Some(50_000));
        assert_eq!(
            config(&["--peacetime"]).targets,
            [Target::Synwall, Target::Kernel]
        );
        assert_eq!(config(&["--peacetime"]).cost_rate, DEFAULT_COST_RATE);
        let low_search = config(&["--peacetime", "--search-max-rate", "800"]);
        assert_eq!(low_search.cost_rate, 800);
        let missing = error("/nonexistent/loadgen", &[]);
        assert!(
            missing.contains("cargo build --release --workspace"),
            "{missing}"
        );
    }
}
