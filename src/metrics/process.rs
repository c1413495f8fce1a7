//! The `process_*` series of the Prometheus client libraries, read from `/proc/self` at each
//! scrape: CPU time, memory, file descriptors and start time (Linux only; a scrape where
//! `/proc` cannot be read leaves them out).

use std::fs;
use std::io;

use super::render::Exposition;

/// Clock ticks per second of the times in `/proc/<pid>/stat`: USER_HZ, 100 in the Linux ABI of
/// every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// The figures of this process now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: u64,
    max_fds: u64,
    start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads `/proc/self/{stat,status,fd,limits}` and `/proc/stat`.
    pub(super) fn read() -> io::Result<ProcessStats> {
        let stat = Stat::parse(&fs::read_to_string("/proc/self/stat")?)?;
        let boot_time: u64 = field_after(&fs::read_to_string("/proc/stat")?, "btime")?;
        let resident_kib: u64 = field_after(&fs::read_to_string("/proc/self/status")?, "VmRSS:")?;
        let max_fds = field_after(&fs::read_to_string("/proc/self/limits")?, "Max open files")?;
        Ok(ProcessStats {
            cpu_seconds: (stat.user_ticks + stat.system_ticks) as f64 / TICKS_PER_SECOND,
            resident_bytes: resident_kib * 1024,
            virtual_bytes: stat.virtual_bytes,
            open_fds: fs::read_dir("/proc/self/fd")?.count() as u64,
            max_fds,
            start_time_seconds: boot_time as f64 + stat.start_ticks as f64 / TICKS_PER_SECOND,
        })
    }

    pub(super) fn render(&self, out: &mut Exposition) {
        out.single(
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            self.cpu_seconds,
        );
        out.single(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes,
        );
        out.single(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes,
        );
        out.single(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            self.open_fds,
        );
        out.single(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            self.max_fds,
        );
        out.single(
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            self.start_time_seconds,
        );
    }
}

/// The fields of `/proc/<pid>/stat` used here (proc(5) numbers them from 1).
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// Field 14.
    user_ticks: u64,
    /// Field 15.
    system_ticks: u64,
    /// Field 22: since boot.
    start_ticks: u64,
    /// Field 23.
    virtual_bytes: u64,
}

impl Stat {
    fn parse(text: &str) -> io::Result<Stat> {
        // Field 2, the command, is in parentheses and may itself hold spaces and ')': the
        // fields after the last ')' start with field 3.
        let (_, after_command) = text
            .rsplit_once(')')
            .ok_or_else(|| malformed("/proc/self/stat"))?;
        let fields: Vec<&str> = after_command.split_whitespace().collect();
        let field = |number: usize| -> io::Result<u64> {
            fields
                .get(number - 3)
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| malformed("/proc/self/stat"))
        };
        Ok(Stat {
            user_ticks: field(14)?,
            system_ticks: field(15)?,
            start_ticks: field(22)?,
            virtual_bytes: field(23)?,
        })
    }
}

/// The first number after `key` on the line that starts with it.
fn field_after(text: &str, key: &str) -> io::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| malformed(key))
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected /proc format ({what})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_stat_fields_are_found_after_an_awkward_command_name() {
        let line = "4242 (syn wall) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 \
                    150 50 0 0 20 0 9 0 123456 987654321 3000 18446744073709551615";
        assert_eq!(
            Stat::parse(line).unwrap(),
            Stat {
                user_ticks: 150,
                system_ticks: 50,
                start_ticks: 123456,
                virtual_bytes: 987654321,
            }
        );
        assert!(Stat::parse("4242 (truncated").is_err());
    }

    #[test]
    fn test_limits_and_status_lines_are_read() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(field_after(limits, "Max open files").unwrap(), 1024);
        assert_eq!(
            field_after("Name:\tsynwall\nVmRSS:\t  5120 kB\n", "VmRSS:").unwrap(),
            5120
        );
        assert!(field_after("Name:\tsynwall\n", "VmRSS:").is_err());
    }

    #[test]
    fn test_this_process_reads() {
        let process = ProcessStats::read().unwrap();
        assert!(process.resident_bytes > 0 && process.virtual_bytes >= process.resident_bytes);
        assert!(process.open_fds >= 3 && process.max_fds >= process.open_fds);
        assert!(process.start_time_seconds > 1.6e9, "{process:?}");
    }
}
