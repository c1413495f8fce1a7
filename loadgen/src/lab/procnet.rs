//! The server namespace's kernel figures, read from its /proc/net files: frames through the
//! server's veth (/proc/net/dev), the TCP MIB counters (/proc/net/netstat), the kernel's
//! SYN queue (SYN_RECV entries in /proc/net/tcp and tcp6), and nftables synproxy's counters
//! (/proc/net/stat/synproxy, once the XDP SYN proxy's rules have loaded it).
//!
//! The files are opened by a thread that has entered the server namespace
//! (`/proc/thread-self/net/...`); an open /proc/net file keeps reporting on the namespace it
//! was opened in, so the lab's own threads read them from anywhere, without `ip netns exec`.
//! Reading costs one pass over the file; /proc/net/tcp{,6} hold at most one line per SYN-queue
//! entry and socket of the namespace.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

use crate::lab::error::LabError;
use crate::lab::topology::Topology;
use synwall::counters::Counter;
use synwall::metrics::names::CounterNames;

/// The listener counters whose kernel TcpExt counterparts the lab reports for the kernel's
/// listener, under their MIB names ([`CounterNames::kernel_mib`]).
pub const KERNEL_COUNTERS: [Counter; 6] = [
    Counter::CookiesSent,
    Counter::CookieAcksValid,
    Counter::CookieAcksInvalid,
    Counter::SynQueueOverflow,
    Counter::AcceptQueueOverflow,
    Counter::SynQueueFullDrops,
];

/// The kernel's name of a listener counter that has one.
pub fn kernel_mib(counter: Counter) -> &'static str {
    counter
        .kernel_mib()
        .unwrap_or_else(|| panic!("{counter:?} has no kernel MIB counter"))
}

/// Frames through one interface since it was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Frames {
    pub rx: u64,
    pub tx: u64,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ProcNet {
    interface: String,
    dev: File,
    netstat: File,
    tcp: File,
    tcp6: File,
    /// None where nftables synproxy is not loaded.
    synproxy: Option<File>,
}

impl ProcNet {
    /// Opens the files of the server namespace, for `interface` in it.
    pub fn open(topology: &Topology) -> Result<ProcNet, LabError> {
        let interface = topology.server_if.clone();
        let opened = topology
            .spawn_in(&topology.server_ns, move || {
                let open = |name: &str| File::open(format!("/proc/thread-self/net/{name}"));
                let synproxy = match open("stat/synproxy") {
                    Ok(file) => Some(file),
                    Err(error) if error.kind() == io::ErrorKind::NotFound => None,
                    Err(error) => return Err(error),
                };
                Ok::<_, io::Error>(ProcNet {
                    interface,
                    dev: open("dev")?,
                    netstat: open("netstat")?,
                    tcp: open("tcp")?,
                    tcp6: open("tcp6")?,
                    synproxy,
                })
            })
            .join()
            .map_err(|_| probe("files", io::Error::other("the opening thread panicked")))?;
        opened
            .and_then(|files| files)
            .map_err(|source| probe("/proc/net files", source))
    }

    /// The server interface's frame counters.
    pub fn frames(&mut self) -> Result<Frames, LabError> {
        let text = read(&mut self.dev).map_err(|source| probe("/proc/net/dev", source))?;
        parse_dev(&text, &self.interface).ok_or_else(|| {
            probe(
                "/proc/net/dev",
                io::Error::other(format!("no line for {}", self.interface)),
            )
        })
    }

    /// The kernel TcpExt counterparts of `counters`, in that order (0 for one the kernel
    /// lacks).
    pub fn tcp_ext<const N: usize>(
        &mut self,
        counters: [Counter; N],
    ) -> Result<[u64; N], LabError> {
        let text = read(&mut self.netstat).map_err(|source| probe("/proc/net/netstat", source))?;
        Ok(parse_tcp_ext(&text, counters.map(kernel_mib)))
    }

    /// Connections in SYN_RECV to local `port`, over IPv4 and IPv6: the kernel's SYN queue.
    pub fn syn_recv(&mut self, port: u16) -> Result<u64, LabError> {
        let v4 = read(&mut self.tcp).map_err(|source| probe("/proc/net/tcp", source))?;
        let v6 = read(&mut self.tcp6).map_err(|source| probe("/proc/net/tcp6", source))?;
        Ok(count_syn_recv(&v4, port) + count_syn_recv(&v6, port))
    }

    /// nftables synproxy's counters, summed over the CPUs, named `Synproxy` and the kernel's
    /// column name in camel case (`SynproxyCookieValid`).
    pub fn synproxy(&mut self) -> Result<Vec<(String, u64)>, LabError> {
        const WHAT: &str = "/proc/net/stat/synproxy";
        let Some(file) = &mut self.synproxy else {
            let absent = "it was not there when the lab opened its files: nftables synproxy was \
                          not loaded";
            return Err(probe(WHAT, io::Error::other(absent)));
        };
        let text = read(file).map_err(|source| probe(WHAT, source))?;
        parse_synproxy(&text).ok_or_else(|| {
            probe(
                WHAT,
                io::Error::other(format!("unexpected contents: {text:?}")),
            )
        })
    }
}

fn probe(what: &'static str, source: io::Error) -> LabError {
    LabError::Probe { what, source }
}

/// The whole file, generated afresh (a /proc file rewinds to a new snapshot).
fn read(file: &mut File) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// `  name: rx_bytes rx_packets (6 more) tx_bytes tx_packets ...`
fn parse_dev(text: &str, interface: &str) -> Option<Frames> {
    text.lines().find_map(|line| {
        let (name, values) = line.split_once(':')?;
        if name.trim() != interface {
            return None;
        }
        let values: Vec<u64> = values
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Frames {
            rx: *values.get(1)?,
            tx: *values.get(9)?,
        })
    })
}

/// A header line `TcpExt: Name ...` followed by a value line `TcpExt: 1 ...`.
fn parse_tcp_ext<const N: usize>(text: &str, names: [&str; N]) -> [u64; N] {
    let mut lines = text.lines().filter(|line| line.starts_with("TcpExt:"));
    let (Some(header), Some(values)) = (lines.next(), lines.next()) else {
        return [0; N];
    };
    let pairs: Vec<(&str, u64)> = header
        .split_whitespace()
        .zip(values.split_whitespace())
        .skip(1)
        .filter_map(|(name, value)| Some((name, value.parse().ok()?)))
        .collect();
    names.map(|wanted| {
        pairs
            .iter()
            .find(|(name, _)| *name == wanted)
            .map_or(0, |&(_, value)| value)
    })
}

/// A header line of column names, then one line of hex counts per CPU; the counts summed per
/// column, but for `entries` (always 0 since Linux 4.x). None when a count is not hex.
fn parse_synproxy(text: &str) -> Option<Vec<(String, u64)>> {
    let mut lines = text.lines();
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let mut sums = vec![0u64; names.len()];
    for line in lines {
        for (sum, value) in sums.iter_mut().zip(line.split_whitespace()) {
            *sum += u64::from_str_radix(value, 16).ok()?;
        }
    }
    Some(
        names
            .into_iter()
            .zip(sums)
            .filter(|(name, _)| *name != "entries")
            .map(|(name, sum)| {
                let camel: String = name
                    .split('_')
                    .flat_map(|word| {
                        let mut chars = word.chars();
                        chars
                            .next()
                            .map(|first| first.to_ascii_uppercase())
                            .into_iter()
                            .chain(chars)
                    })
                    .collect();
                (format!("Synproxy{camel}"), sum)
            })
            .collect(),
    )
}

/// Lines `sl local rem st ...` with st = 03 (SYN_RECV) and local port `port` (hex).
fn count_syn_recv(text: &str, port: u16) -> u64 {
    let local_port = format!(":{port:04X}");
    text.lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace().skip(1);
            let local = fields.next().unwrap_or("");
            let state = fields.nth(1).unwrap_or("");
            state == "03" && local.ends_with(&local_port)
        })
        .count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_dev() {
        let text = "Inter-|   Receive   |  Transmit\n face |bytes packets ...\n\
                    \x20   lo:  10  1 0 0 0 0 0 0   10  1 0 0 0 0 0 0\n\
                    swl1x0s: 600 11 0 0 0 0 0 0 9000 22 0 0 0 0 0 0\n";
        assert_eq!(parse_dev(text, "swl1x0s"), Some(Frames { rx: 11, tx: 22 }));
        assert_eq!(parse_dev(text, "swl1x0"), None);
    }

    #[test]
    fn test_parse_tcp_ext() {
        let text = "TcpExt: SyncookiesSent SyncookiesRecv ListenDrops\nTcpExt: 5 6 7\n\
                    IpExt: InNoRoutes\nIpExt: 9\n";
        assert_eq!(
            parse_tcp_ext(text, ["ListenDrops", "SyncookiesSent", "Missing"]),
            [7, 5, 0]
        );
        assert_eq!(parse_tcp_ext("", ["ListenDrops"]), [0]);
    }

    #[test]
    fn test_parse_synproxy() {
        let text = "entries\t\tsyn_received\tcookie_invalid\tcookie_valid\tcookie_retrans\t\
                    conn_reopened\n\
                    00000000\t0000000a\t00000001\t00000002\t00000000\t00000000\n\
                    00000000\t00000010\t00000000\t00000003\t00000001\t00000000\n";
        assert_eq!(
            parse_synproxy(text).unwrap(),
            [
                ("SynproxySynReceived".to_owned(), 26),
                ("SynproxyCookieInvalid".to_owned(), 1),
                ("SynproxyCookieValid".to_owned(), 5),
                ("SynproxyCookieRetrans".to_owned(), 1),
                ("SynproxyConnReopened".to_owned(), 0),
            ]
        );
        assert_eq!(parse_synproxy("entries\n0000zz00\n"), None);
    }

    #[test]
    fn test_count_syn_recv() {
        let text = "  sl  local_address rem_address   st tx_queue\n\
           0: 010012C6:0050 00000000:0000 0A 00000000:00000000\n\
           1: 010012C6:0050 0B8012C6:D431 03 00000000:00000000\n\
           2: 010012C6:0050 0C8012C6:D432 03 00000000:00000000\n\
           3: 010012C6:0051 0C8012C6:D432 03 00000000:00000000\n\
           4: 010012C6:0050 0C8012C6:D433 01 00000000:00000000\n";
        assert_eq!(count_syn_recv(text, 80), 2);
        let tcp6 = "  sl  local_address                         remote_address                        st\n\
           0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A\n\
           1: 01200000000000000000000001000000:0050 01200000000080000000000002000000:C350 03\n";
        assert_eq!(count_syn_recv(tcp6, 80), 1);
    }
}
