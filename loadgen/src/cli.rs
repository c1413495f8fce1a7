//! The command line ([`Args`], clap) and its validation into a [`Config`].
//!
//! Validation is where the safety rules bite: the address guard ([`crate::guard`]), and the
//! hard caps on duration and packet count that bound every run.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use clap::Parser;

use crate::guard::{self, Cidr, GuardError};
use crate::legit::LegitConfig;
use crate::mix::{Kind, Mix};
use crate::pacer::Rate;

/// The shortest duration (also of the legit timeout).
pub const MIN_DURATION: Duration = Duration::from_millis(1);
pub use crate::lab::limits::{MAX_DURATION, MAX_LEGIT_RATE, MAX_LEGIT_TIMEOUT, MAX_PACKETS};
/// The most flood threads.
pub const MAX_THREADS: usize = 64;
/// The largest transmit batch (half the AF_XDP transmit frames).
pub const MAX_BATCH: usize = 1024;

/// Which transmit path the flood takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TxChoice {
    /// AF_XDP, falling back to AF_PACKET if the socket cannot be opened.
    Auto,
    /// AF_XDP only (copy mode on veth; zero-copy where the driver offers it).
    Afxdp,
    /// AF_PACKET with sendmmsg and PACKET_QDISC_BYPASS.
    Packet,
}

/// Bounded SYN/ACK flood generator and legit-client prober for synwall's lab.
///
/// Sends only to a target inside 198.18.0.0/15 or 2001:2::/48 and spoofs only sources inside
/// them (the benchmarking ranges of RFC 2544 and RFC 5180); every run stops by itself after
/// --duration or --packets, whichever comes first. Run it inside the lab's client network
/// namespace (--netns, or ip netns exec).
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version, verbatim_doc_comment)]
pub struct Args {
    /// The generator's network interface (in its network namespace).
    #[arg(short, long, value_name = "IFNAME")]
    pub interface: String,

    /// The target, ADDRESS:PORT (an IPv6 address in brackets), inside 198.18.0.0/15 or
    /// 2001:2::/48.
    #[arg(short, long, value_name = "ADDR:PORT")]
    pub target: SocketAddr,

    /// Enter the network namespace /run/netns/NAME first (needs CAP_SYS_ADMIN).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Spoofed sources are drawn from this range, of the target's family and inside its
    /// benchmark range [default: 198.18.128.0/17 for an IPv4 target, 2001:2:0:8000::/49 for an
    /// IPv6 one]
    #[arg(long, value_name = "CIDR")]
    pub src_cidr: Option<Cidr>,

    /// What to send: one kind of packet.
    #[arg(long, value_enum, default_value_t = Kind::Syn)]
    pub mode: Kind,

    /// Send a mix of kinds by weight instead, e.g. syn=80,ack=15,rst=5
    /// (kinds: syn, ack, near-miss, rst, fin).
    #[arg(long, value_name = "KIND=WEIGHT,...", conflicts_with = "mode")]
    pub mix: Option<Mix>,

    /// Packets per second, all threads together: a number (k and M suffixes allowed) or "max".
    #[arg(long, value_name = "PPS|max")]
    pub rate: RateArg,

    /// Stop after this long: 10s, 500ms, 2m (at most 600 s).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub duration: DurationArg,

    /// Stop after this many packets, all threads together (at most 1e9; k and M suffixes
    /// allowed).
    #[arg(long, value_name = "N", default_value = "10M")]
    pub packets: CountArg,

    /// Flood threads; each has its own socket (AF_XDP: its own queue, queue N for thread N).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,

    /// Pin flood thread N to the N-th CPU of this list (cycling), e.g. 0 or 0,1.
    #[arg(long, value_name = "CPU,...", value_delimiter = ',')]
    pub cpus: Vec<usize>,

    /// Transmit path.
    #[arg(long, value_enum, default_value_t = TxChoice::Auto)]
    pub tx: TxChoice,

    /// Most packets written per transmit round, one pacing step (at most 1024).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,

    /// The next hop's MAC address; by default the target's neighbour entry is resolved.
    #[arg(long, value_name = "MAC")]
    pub dst_mac: Option<MacArg>,

    /// Start this many real (kernel) TCP connections per second to the target; 0 = none.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub legit_rate: u32,

    /// Time a legit client allows for connect() (3s: one SYN retransmission) and for the reply.
    #[arg(long, value_name = "DURATION", default_value = "3s")]
    pub legit_timeout: DurationArg,

    /// What a legit client sends once connected; \r, \n, \t and \\ are unescaped.
    #[arg(long, value_name = "TEXT", default_value = r"GET / HTTP/1.0\r\n\r\n")]
    pub legit_request: String,

    /// A legit reply must contain this text.
    #[arg(long, value_name = "TEXT", default_value = "HTTP/")]
    pub legit_expect: String,

    /// Print JSON lines (one progress object per second, then a summary) instead of text.
    #[arg(long)]
    pub json: bool,

    /// DANGER: allow a target or spoofed range outside 198.18.0.0/15 and 2001:2::/48. Never on
    /// a network you do not own.
    #[arg(long)]
    pub allow_outside_benchmark_range: bool,
}

/// A validated run configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub interface: String,
    pub netns: Option<String>,
    pub target: SocketAddr,
    /// Of the target's family.
    pub sources: Cidr,
    pub mix: Mix,
    pub rate: Rate,
    pub duration: Duration,
    pub packets: u64,
    pub threads: usize,
    pub cpus: Vec<usize>,
    pub tx: TxChoice,
    pub batch: usize,
    pub dst_mac: Option<[u8; 6]>,
    pub legit: Option<LegitConfig>,
    pub json: bool,
    /// Guard violations let through by `--allow-outside-benchmark-range`.
    pub overridden: Vec<GuardError>,
}

/// A command line that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{}", join(.0))]
    Guard(Vec<GuardError>),
    #[error(
        "--src-cidr {sources} and target {target} are of different address families: spoofed \
         sources must be of the target's family"
    )]
    FamilyMismatch { target: SocketAddr, sources: Cidr },
    #[error("--{name} {value} is out of range: {limit}")]
    OutOfRange {
        name: &'static str,
        value: String,
        limit: String,
    },
}

fn join(errors: &[GuardError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("; ")
}

/// `value` if `range` contains it, else the error for `--name`.
fn within<T: PartialOrd + fmt::Debug>(
    name: &'static str,
    value: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    Err(ConfigError::OutOfRange {
        name,
        value: format!("{value:?}"),
        limit: format!("{:?} to {:?}", range.start(), range.end()),
    })
}

impl Args {
    /// Validates the command line.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let target = self.target;
        let sources = self
            .src_cidr
            .unwrap_or_else(|| lab_spoofed_sources(target.ip()));
        if sources.is_ipv4() != target.is_ipv4() {
            return Err(ConfigError::FamilyMismatch { target, sources });
        }
        let violations = guard::violations(target.ip(), &sources);
        if !violations.is_empty() && !self.allow_outside_benchmark_range {
            return Err(ConfigError::Guard(violations));
        }
        let duration = within("duration", self.duration.0, MIN_DURATION..=MAX_DURATION)?;
        let packets = within("packets", self.packets.0, 1..=MAX_PACKETS)?;
        let threads = within("threads", self.threads, 1..=MAX_THREADS)?;
        let batch = within("batch", self.batch, 1..=MAX_BATCH)?;
        let legit_rate = within("legit-rate", self.legit_rate, 0..=MAX_LEGIT_RATE)?;
        let legit_timeout = within(
            "legit-timeout",
            self.legit_timeout.0,
            MIN_DURATION..=MAX_LEGIT_TIMEOUT,
        )?;
        let legit = (legit_rate > 0).then(|| LegitConfig {
            target,
            rate: legit_rate,
            timeout: legit_timeout,
            request: unescape(&self.legit_request).into_bytes(),
            expect: self.legit_expect.into_bytes(),
        });
        Ok(Config {
            interface: self.interface,
            netns: self.netns,
            target,
            sources,
            mix: self.mix.unwrap_or(Mix::only(self.mode)),
            rate: self.rate.0,
            duration,
            packets,
            threads,
            cpus: self.cpus,
            tx: self.tx,
            batch,
            dst_mac: self.dst_mac.map(|mac| mac.0),
            legit,
            json: self.json,
            overridden: violations,
        })
    }
}

/// The lab's spoofed sources of `target`'s family: `crate::lab::SPOOFED_SOURCES` or
/// `SPOOFED_SOURCES_V6`, routed through the generator by the lab's server namespace.
fn lab_spoofed_sources(target: IpAddr) -> Cidr {
    let sources = match target {
        IpAddr::V4(_) => crate::lab::SPOOFED_SOURCES,
        IpAddr::V6(_) => crate::lab::SPOOFED_SOURCES_V6,
    };
    sources
        .parse()
        .expect("the lab's spoofed sources are CIDRs")
}

/// `\r`, `\n`, `\t` and `\\` replaced by the characters they name; anything else kept.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A malformed argument value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArgError(String);

/// `--rate`: "max" or packets per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateArg(pub Rate);

impl FromStr for RateArg {
    type Err = ArgError;
    fn from_str(text: &str) -> Result<Self, ArgError> {
        if text == "max" {
            return Ok(RateArg(Rate::Max));
        }
        match CountArg::from_str(text)?.0 {
            0 => Err(ArgError(
                "the rate must be positive (or \"max\")".to_owned(),
            )),
            rate => Ok(RateArg(Rate::PerSecond(rate))),
        }
    }
}

/// A count with an optional k (10^3) or M (10^6) suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountArg(pub u64);

impl FromStr for CountArg {
    type Err = ArgError;
    fn from_str(text: &str) -> Result<Self, ArgError> {
        crate::lab::limits::parse_count(text)
            .map(CountArg)
            .ok_or_else(|| ArgError(format!("{text:?} is not a count like 50000, 50k or 1M")))
    }
}

/// A duration: a number with an optional unit, ms, s (the default) or m.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = ArgError;
    fn from_str(text: &str) -> Result<Self, ArgError> {
        let (number, seconds_per_unit) = if let Some(n) = text.strip_suffix("ms") {
            (n, 0.001)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1.0)
        } else if let Some(n) = text.strip_suffix('m') {
            (n, 60.0)
        } else {
            (text, 1.0)
        };
        number
            .parse::<f64>()
            .ok()
            .and_then(|n| Duration::try_from_secs_f64(n * seconds_per_unit).ok())
            .map(DurationArg)
            .ok_or_else(|| ArgError(format!("{text:?} is not a duration like 10s or 500ms")))
    }
}

/// An Ethernet address, aa:bb:cc:dd:ee:ff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacArg(pub [u8; 6]);

impl FromStr for MacArg {
    type Err = ArgError;
    fn from_str(text: &str) -> Result<Self, ArgError> {
        let error = || {
            ArgError(format!(
                "{text:?} is not a MAC address like 02:00:00:00:00:01"
            ))
        };
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or_else(error)?;
            if part.len() != 2 {
                return Err(error());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| error())?;
        }
        if parts.next().is_some() {
            return Err(error());
        }
        Ok(MacArg(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["loadgen", "-i", "veth0", "--rate", "50k"];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.into_config().map_err(|e| e.to_string())
    }

    #[test]
    fn test_defaults() {
        let config = args(&["-t", "198.18.0.1:80"]).unwrap();
        assert_eq!(config.sources.to_string(), "198.18.128.0/17");
        assert_eq!(config.mix, Mix::only(Kind::Syn));
        assert_eq!(config.rate, Rate::PerSecond(50_000));
        assert_eq!(config.duration, Duration::from_secs(10));
        assert_eq!(config.packets, 10_000_000);
        assert!(config.legit.is_none());
        assert!(config.overridden.is_empty());
    }

    #[test]
    fn test_ipv6_target_defaults_to_the_labs_ipv6_sources() {
        let config = args(&["-t", "[2001:2::1]:80", "--legit-rate", "5"]).unwrap();
        assert_eq!(config.target, "[2001:2::1]:80".parse().unwrap());
        assert_eq!(config.sources.to_string(), crate::lab::SPOOFED_SOURCES_V6);
        assert_eq!(config.legit.unwrap().target, config.target);
        assert!(config.overridden.is_empty());
        let config = args(&["-t", "[2001:2::1]:80", "--src-cidr", "2001:2:0:ff00::/56"]).unwrap();
        assert_eq!(config.sources.to_string(), "2001:2:0:ff00::/56");
    }

    #[test]
    fn test_guard_refuses_outside_target_and_sources() {
        let error = args(&["-t", "10.0.0.1:80"]).unwrap_err();
        assert!(error.contains("outside the benchmark ranges"), "{error}");
        let error = args(&["-t", "198.18.0.1:80", "--src-cidr", "10.0.0.0/8"]).unwrap_err();
        assert!(error.contains("spoofed source range 10.0.0.0/8"), "{error}");
        let error = args(&["-t", "[fd00::1]:80"]).unwrap_err();
        assert!(error.contains("target fd00::1 lies outside"), "{error}");
        let error = args(&["-t", "[2001:2::1]:80", "--src-cidr", "2001:db8::/32"]).unwrap_err();
        assert!(
            error.contains("spoofed source range 2001:db8::/32"),
            "{error}"
        );
    }

    #[test]
    fn test_family_mismatch_is_refused_even_with_the_override() {
        for (target, sources) in [
            ("198.18.0.1:80", "2001:2:0:8000::/49"),
            ("[2001:2::1]:80", "198.18.128.0/17"),
        ] {
            for extra in [&[][..], &["--allow-outside-benchmark-range"]] {
                let mut all = vec!["-t", target, "--src-cidr", sources];
                all.extend_from_slice(extra);
                let error = args(&all).unwrap_err();
                assert!(error.contains("different address families"), "{error}");
            }
        }
    }

    #[test]
    fn test_override_lets_through_and_remembers() {
        let config = args(&[
            "-t",
            "192.0.2.1:80",
            "--src-cidr",
            "192.0.2.128/25",
            "--allow-outside-benchmark-range",
        ])
        .unwrap();
        assert_eq!(config.overridden.len(), 2);
        let config = args(&["-t", "[2001:db8::1]:80", "--allow-outside-benchmark-range"]).unwrap();
        assert_eq!(config.overridden.len(), 1, "the default sources are inside");
    }

    #[test]
    fn test_caps() {
        for extra in [
            &["--duration", "601s"][..],
            &["--duration", "0"],
            &["--packets", "0"],
            &["--packets", "1000000001"],
            &["--threads", "0"],
            &["--batch", "1025"],
            &["--legit-rate", "10001"],
            &["--legit-timeout", "61s"],
        ] {
            let mut all = vec!["-t", "198.18.0.1:80"];
            all.extend_from_slice(extra);
            let error = args(&all).unwrap_err();
            assert!(error.contains("out of range"), "{extra:?}: {error}");
        }
    }

    #[test]
    fn test_mix_conflicts_with_mode() {
        let config = args(&["-t", "198.18.0.1:80", "--mix", "syn=1,rst=1"]).unwrap();
        assert_eq!(config.mix.to_string(), "syn=1,rst=1");
        assert!(args(&["-t", "198.18.0.1:80", "--mix", "syn=1", "--mode", "ack"]).is_err());
    }

    #[test]
    fn test_value_parsers() {
        assert_eq!("max".parse::<RateArg>().unwrap().0, Rate::Max);
        assert_eq!(
            "1M".parse::<RateArg>().unwrap().0,
            Rate::PerSecond(1_000_000)
        );
        assert!("0".parse::<RateArg>().is_err());
        assert!("fast".parse::<RateArg>().is_err());
        assert_eq!("50k".parse::<CountArg>().unwrap().0, 50_000);
        assert!("18446744073709552M".parse::<CountArg>().is_err());
        for (text, ms) in [
            ("3", 3000),
            ("3s", 3000),
            ("500ms", 500),
            ("1.5s", 1500),
            ("2m", 120_000),
        ] {
            assert_eq!(
                text.parse::<DurationArg>().unwrap().0,
                Duration::from_millis(ms),
                "{text}"
            );
        }
        assert!("-1s".parse::<DurationArg>().is_err());
        assert!("soon".parse::<DurationArg>().is_err());
        assert_eq!(
            "02:00:00:0a:bc:ff".parse::<MacArg>().unwrap().0,
            [2, 0, 0, 10, 0xbc, 0xff]
        );
        for bad in [
            "02:00:00:0a:bc",
            "02:00:00:0a:bc:ff:00",
            "2:0:0:0:0:1",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn test_legit_request_unescapes() {
        let config = args(&["-t", "198.18.0.1:80", "--legit-rate", "10"]).unwrap();
        let legit = config.legit.unwrap();
        assert_eq!(legit.request, b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(legit.timeout, Duration::from_secs(3));
        assert_eq!(unescape(r"a\\b\q\"), "a\\b\\q\\");
    }
}
