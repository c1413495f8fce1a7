//! `synwall status`: what a running synwall does, on one screen (or as one JSON object), from
//! two sources, each reported as read or with the reason it could not be:
//!
//! - **the kernel**, in the calling process's network namespace: the XDP programs of every
//!   interface (id, name, mode, whether it is synwall's `synwall_steer`), and the programs on
//!   `lo`'s tcx ingress, where native handoff attaches `synwall_handoff`;
//! - **the metrics endpoint** of the running synwall, scraped twice `interval` apart: the
//!   interface and the addresses served, the rx queues served against the interface's, copy or
//!   zero-copy per queue, the handoff mode, the secret's source, the uptime, and the flood state
//!   (cookies sent per second over the interval, SYN-queue depth against capacity).
//!
//! Contract: [`Status::gather`] does not fail; whatever it cannot read is part of the status.
//! [`Status::synwall_found`] is false when no program of synwall is attached here and no
//! endpoint answered, and [`Status::not_found`] then says what was checked. Nothing is changed
//! anywhere. Program names take CAP_SYS_ADMIN to read and the tcx query CAP_NET_ADMIN (see
//! [`crate::sys::attached`]): without them the report says so instead of guessing.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::metrics::Scrape;
use crate::metrics::view::counter_increase;
use crate::sys::attached::{self, AttachedProgram, XdpProgram};
use crate::sys::native::FINISH_PROGRAM_NAME;
use crate::sys::{HANDOFF_PROGRAM_NAME, STEER_PROGRAM_NAME};

/// The interface whose tcx ingress holds native handoff's program.
const HANDOFF_INTERFACE: &str = "lo";

/// One interface and its XDP programs.
#[derive(Debug, Clone)]
pub struct InterfaceStatus {
    pub index: u32,
    pub name: String,
    /// The attached programs, or why they could not be read.
    pub xdp: Result<Vec<XdpProgram>, String>,
    /// Its tcx ingress programs, where synwall's steering program is attached (native mode
    /// adds its completion program there), or why they could not be read; `None` elsewhere.
    pub tcx: Option<Result<Vec<AttachedProgram>, String>>,
}

/// One rx queue served, as the metrics tell.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStatus {
    pub queue: u32,
    /// `None` when the endpoint does not export it (an older synwall).
    pub zero_copy: Option<bool>,
    pub syn_queue_depth: f64,
    pub syn_queue_capacity: f64,
}

/// What the metrics endpoint tells of the running synwall.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStatus {
    pub version: Option<String>,
    /// The interface served, and its rx queues as the driver reports them.
    pub interface: Option<String>,
    pub interface_rx_queues: Option<u32>,
    pub served: Vec<String>,
    pub queues: Vec<QueueStatus>,
    pub handoff: Option<String>,
    /// Who answers new connections' SYNs (`answer-syns`).
    pub answer_syns: Option<String>,
    pub secret: Option<String>,
    pub uptime: Option<Duration>,
    /// Cookie SYN-ACKs per second over the time between the two scrapes.
    pub cookies_per_second: f64,
    /// The time between the two scrapes.
    pub interval: Duration,
}

/// Everything `synwall status` shows.
#[derive(Debug, Clone)]
pub struct Status {
    /// Every interface of this network namespace, or why they could not be listed.
    pub interfaces: Result<Vec<InterfaceStatus>, String>,
    /// The programs on `lo`'s tcx ingress, or why they could not be read.
    pub handoff_hook: Result<Vec<AttachedProgram>, String>,
    /// Where the endpoint was asked.
    pub metrics_address: SocketAddr,
    /// What it answered, or why it did not.
    pub instance: Result<InstanceStatus, String>,
}

impl Status {
    /// Reads the kernel's side and scrapes `metrics_address` twice, `interval` apart.
    pub fn gather(metrics_address: SocketAddr, interval: Duration) -> Status {
        let interfaces: Result<Vec<InterfaceStatus>, String> = attached::interfaces()
            .map(|interfaces| {
                interfaces
                    .into_iter()
                    .map(|(index, name)| {
                        let xdp = attached::xdp_programs(index).map_err(|error| error.to_string());
                        let steered = xdp.iter().flatten().any(is_steering);
                        InterfaceStatus {
                            index,
                            tcx: steered.then(|| tcx_programs(index)),
                            xdp,
                            name,
                        }
                    })
                    .collect()
            })
            .map_err(|error| format!("listing the interfaces: {error}"));
        let handoff_hook = match &interfaces {
            Ok(interfaces) => handoff_hook_programs(interfaces),
            Err(error) => Err(error.clone()),
        };
        let instance = scrape_twice(metrics_address, interval);
        Status {
            interfaces,
            handoff_hook,
            metrics_address,
            instance,
        }
    }

    /// Whether a synwall shows anywhere: one of its programs attached here, or its endpoint.
    pub fn synwall_found(&self) -> bool {
        self.steering_interfaces().next().is_some()
            || self.handoff_program().is_some()
            || self.instance.is_ok()
    }

    /// The interfaces that carry synwall's steering program.
    fn steering_interfaces(&self) -> impl Iterator<Item = &InterfaceStatus> {
        self.interfaces
            .iter()
            .flatten()
            .filter(|interface| interface.xdp.iter().flatten().any(is_steering))
    }

    /// Synwall's handoff program on `lo`'s tcx ingress, if there.
    fn handoff_program(&self) -> Option<&AttachedProgram> {
        self.handoff_hook
            .iter()
            .flatten()
            .find(|program| program.is_named(HANDOFF_PROGRAM_NAME))
    }

    /// Whether some program's name could not be read (no privilege): names are then unknown.
    fn names_unread(&self) -> bool {
        let xdp = self
            .interfaces
            .iter()
            .flatten()
            .flat_map(|interface| interface.xdp.iter().flatten())
            .map(|xdp| &xdp.program);
        let tcx = self
            .interfaces
            .iter()
            .flatten()
            .flat_map(|interface| interface.tcx.iter().flatten().flatten());
        let hook = self.handoff_hook.iter().flatten();
        xdp.chain(tcx)
            .chain(hook)
            .any(|program| program.name.is_none())
    }

    /// The sentence for a host where no synwall was found: every place that was looked at.
    pub fn not_found(&self) -> String {
        let interfaces = match &self.interfaces {
            Ok(interfaces) => format!(
                "no {} XDP program on the {} interfaces of this network namespace ({})",
                STEER_PROGRAM_NAME.to_string_lossy(),
                interfaces.len(),
                interfaces
                    .iter()
                    .map(|interface| interface.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(error) => format!("no XDP program seen ({error})"),
        };
        let hook = match &self.handoff_hook {
            Ok(_) => format!(
                "no {} on {HANDOFF_INTERFACE}'s tcx ingress",
                HANDOFF_PROGRAM_NAME.to_string_lossy()
            ),
            Err(error) => format!("{HANDOFF_INTERFACE}'s tcx ingress unread ({error})"),
        };
        let endpoint = match &self.instance {
            Ok(_) => "a metrics endpoint answered".to_owned(),
            Err(error) => format!(
                "no metrics endpoint answers at {} ({error}; --metrics or --config name another)",
                self.metrics_address
            ),
        };
        let privileges = if self.names_unread() {
            "; program names are unreadable without CAP_SYS_ADMIN: run as root"
        } else {
            ""
        };
        format!("no synwall found: {interfaces}, {hook}, and {endpoint}{privileges}")
    }

    /// The report for people.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_programs(&mut out);
        out.push('\n');
        self.write_instance(&mut out);
        out
    }

    fn write_programs(&self, out: &mut String) {
        let _ = writeln!(out, "XDP programs in this network namespace:");
        program_row(out, ["interface", "prog id", "name", "mode", "synwall's"]);
        match &self.interfaces {
            Ok(interfaces) => {
                for interface in interfaces {
                    match &interface.xdp {
                        Ok(programs) if programs.is_empty() => {
                            program_row(out, [&interface.name, "-", "", "", ""]);
                        }
                        Ok(programs) => {
                            for xdp in programs {
                                program_row(
                                    out,
                                    [
                                        &interface.name,
                                        &xdp.program.id.to_string(),
                                        program_name(&xdp.program),
                                        xdp.mode.name(),
                                        yes_no(is_steering(xdp)),
                                    ],
                                );
                            }
                        }
                        Err(error) => {
                            let _ = writeln!(out, "  {:<16} cannot query: {error}", interface.name);
                        }
                    }
                }
            }
            Err(error) => {
                let _ = writeln!(out, "  {error}");
            }
        }
        let hook = format!("{HANDOFF_INTERFACE} tcx ingress:");
        match &self.handoff_hook {
            Ok(programs) => {
                let handoff = self.handoff_program().map_or_else(
                    || "native handoff is not attached".to_owned(),
                    |program| {
                        format!(
                            "{} (id {}): native handoff is attached",
                            HANDOFF_PROGRAM_NAME.to_string_lossy(),
                            program.id
                        )
                    },
                );
                let others: Vec<String> = programs
                    .iter()
                    .filter(|program| !program.is_named(HANDOFF_PROGRAM_NAME))
                    .map(|program| format!("{} (id {})", program_name(program), program.id))
                    .collect();
                let others = if others.is_empty() {
                    String::new()
                } else {
                    format!("; also {}", others.join(", "))
                };
                let _ = writeln!(out, "{hook} {handoff}{others}");
            }
            Err(error) => {
                let _ = writeln!(out, "{hook} cannot query: {error}");
            }
        }
        for interface in self.steering_interfaces() {
            let hook = format!("{} tcx ingress:", interface.name);
            match &interface.tcx {
                Some(Ok(programs)) => {
                    let finish = programs
                        .iter()
                        .find(|program| program.is_named(FINISH_PROGRAM_NAME))
                        .map_or_else(
                            || "the kernel does not complete queued handshakes".to_owned(),
                            |program| {
                                format!(
                                    "{} (id {}): the kernel completes queued handshakes",
                                    FINISH_PROGRAM_NAME.to_string_lossy(),
                                    program.id
                                )
                            },
                        );
                    let _ = writeln!(out, "{hook} {finish}");
                }
                Some(Err(error)) => {
                    let _ = writeln!(out, "{hook} cannot query: {error}");
                }
                None => {}
            }
        }
        if self.names_unread() {
            let _ = writeln!(
                out,
                "(\"?\": the program's name is unreadable without CAP_SYS_ADMIN: run as root)"
            );
        }
    }

    fn write_instance(&self, out: &mut String) {
        let instance = match &self.instance {
            Ok(instance) => instance,
            Err(error) => {
                let _ = writeln!(
                    out,
                    "No synwall answers at {}: {error}",
                    self.metrics_address
                );
                return;
            }
        };
        let unknown = || "?".to_owned();
        let version = instance.version.clone().unwrap_or_else(unknown);
        let uptime = instance.uptime.map_or_else(unknown, |uptime| {
            humantime::format_duration(Duration::from_secs(uptime.as_secs())).to_string()
        });
        let _ = writeln!(
            out,
            "synwall {version} at {}, up {uptime}:",
            self.metrics_address
        );
        let interface = instance.interface.clone().unwrap_or_else(unknown);
        let row = |out: &mut String, key: &str, value: &str| {
            let _ = writeln!(out, "  {key:<10} {value}");
        };
        row(
            out,
            "serves",
            &format!("{} on {interface}", instance.served.join(", ")),
        );
        if let Some(name) = &instance.interface
            && self.interfaces.is_ok()
            && !self
                .steering_interfaces()
                .any(|steering| steering.name == *name)
        {
            row(
                out,
                "",
                &format!(
                    "(the kernel shows no {} on {name} here: is this synwall's network \
                     namespace?)",
                    STEER_PROGRAM_NAME.to_string_lossy()
                ),
            );
        }
        row(out, "rx queues", &queues_line(instance));
        let handoff = instance.handoff.clone().unwrap_or_else(unknown);
        let handoff = match &instance.answer_syns {
            Some(answer_syns) => format!("{handoff} (answer-syns {answer_syns})"),
            None => handoff,
        };
        row(out, "handoff", &handoff);
        row(
            out,
            "secret",
            &instance.secret.clone().unwrap_or_else(unknown),
        );
        row(out, "flood", &flood_line(instance));
    }

    /// The report as one JSON object.
    pub fn json(&self) -> Value {
        let program = |program: &AttachedProgram, synwall: bool| json!({"id": program.id, "name": program.name, "synwall": synwall});
        let interfaces = match &self.interfaces {
            Ok(interfaces) => Value::from(
                interfaces
                    .iter()
                    .map(|interface| {
                        let xdp = match &interface.xdp {
                            Ok(programs) => json!({"programs": programs
                                .iter()
                                .map(|xdp| {
                                    let mut entry = program(&xdp.program, is_steering(xdp));
                                    entry["mode"] = xdp.mode.name().into();
                                    entry
                                })
                                .collect::<Vec<_>>()}),
                            Err(error) => json!({"error": error}),
                        };
                        let tcx = match &interface.tcx {
                            Some(Ok(programs)) => json!({"programs": programs
                                .iter()
                                .map(|entry| program(entry, entry.is_named(FINISH_PROGRAM_NAME)))
                                .collect::<Vec<_>>()}),
                            Some(Err(error)) => json!({"error": error}),
                            None => Value::Null,
                        };
                        json!({
                            "name": interface.name,
                            "index": interface.index,
                            "xdp": xdp,
                            "tcx_ingress": tcx,
                        })
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(error) => json!({"error": error}),
        };
        let handoff_hook = match &self.handoff_hook {
            Ok(programs) => json!({"programs": programs
                .iter()
                .map(|entry| program(entry, entry.is_named(HANDOFF_PROGRAM_NAME)))
                .collect::<Vec<_>>()}),
            Err(error) => json!({"error": error}),
        };
        let metrics = match &self.instance {
            Ok(instance) => json!({
                "version": instance.version,
                "interface": instance.interface,
                "interface_rx_queues": instance.interface_rx_queues,
                "served": instance.served,
                "queues": instance.queues.iter().map(|queue| json!({
                    "queue": queue.queue,
                    "zero_copy": queue.zero_copy,
                    "syn_queue_depth": queue.syn_queue_depth,
                    "syn_queue_capacity": queue.syn_queue_capacity,
                })).collect::<Vec<_>>(),
                "handoff": instance.handoff,
                "answer_syns": instance.answer_syns,
                "secret": instance.secret,
                "uptime_seconds": instance.uptime.map(|uptime| uptime.as_secs_f64()),
                "flood": {
                    "cookies_per_second": instance.cookies_per_second,
                    "interval_seconds": instance.interval.as_secs_f64(),
                    "active": instance.cookies_per_second > 0.0,
                },
            }),
            Err(error) => json!({"error": error}),
        };
        json!({
            "synwall_found": self.synwall_found(),
            "interfaces": interfaces,
            "lo_tcx_ingress": handoff_hook,
            "metrics": {"address": self.metrics_address.to_string(), "instance": metrics},
        })
    }
}

impl InstanceStatus {
    /// What two scrapes, `interval` apart, the second taken at `now`, tell.
    pub fn from_scrapes(
        before: &Scrape,
        after: &Scrape,
        interval: Duration,
        now: SystemTime,
    ) -> InstanceStatus {
        let first = |family: &str, label: &str| after.label_values(family, label).pop_first();
        let interface = first("synwall_interface_rx_queues", "interface");
        let mut queues: Vec<QueueStatus> = after
            .label_values("synwall_syn_queue_capacity", "queue")
            .iter()
            .filter_map(|queue| {
                let number = queue.parse().ok()?;
                let labels = [("queue", queue.as_str())];
                Some(QueueStatus {
                    queue: number,
                    zero_copy: after
                        .0
                        .get(&format!("synwall_xsk_zero_copy{{queue=\"{queue}\"}}"))
                        .map(|&value| value == 1.0),
                    syn_queue_depth: after.sum("synwall_syn_queue_depth", &labels),
                    syn_queue_capacity: after.sum("synwall_syn_queue_capacity", &labels),
                })
            })
            .collect();
        queues.sort_by_key(|queue| queue.queue);
        let cookies =
            |scrape: &Scrape| scrape.sum("synwall_synacks_sent_total", &[("kind", "cookie")]);
        let started = after
            .0
            .get("process_start_time_seconds")
            .map(|&seconds| UNIX_EPOCH + Duration::from_secs_f64(seconds.max(0.0)));
        InstanceStatus {
            version: first("synwall_build_info", "version"),
            interface_rx_queues: interface
                .as_ref()
                .map(|_| after.family("synwall_interface_rx_queues") as u32),
            interface,
            served: after
                .label_values("synwall_served_info", "address")
                .into_iter()
                .collect(),
            queues,
            handoff: first("synwall_handoff_info", "mode"),
            answer_syns: first("synwall_handoff_info", "answer_syns"),
            secret: first("synwall_secret_info", "source"),
            uptime: started.and_then(|started| now.duration_since(started).ok()),
            cookies_per_second: counter_increase(cookies(before), cookies(after))
                / interval.as_secs_f64().max(f64::MIN_POSITIVE),
            interval,
        }
    }
}

/// `2 of the interface's 4: 0 (zero-copy), 1 (copy)`.
fn queues_line(instance: &InstanceStatus) -> String {
    let each: Vec<String> = instance
        .queues
        .iter()
        .map(|queue| {
            let mode = match queue.zero_copy {
                Some(true) => "zero-copy",
                Some(false) => "copy",
                None => "copy or zero-copy unknown",
            };
            format!("{} ({mode})", queue.queue)
        })
        .collect();
    let of = instance
        .interface_rx_queues
        .map_or_else(|| "?".to_owned(), |count| count.to_string());
    let mut line = format!(
        "{} served of the interface's {of}: {}",
        instance.queues.len(),
        each.join(", ")
    );
    if instance
        .interface_rx_queues
        .is_some_and(|count| count as usize > instance.queues.len())
    {
        line.push_str(
            "; frames for a served port on the other queues are dropped (serve every queue, or \
             steer the port to these)",
        );
    }
    line
}

/// `cookies being sent: 1234/s; SYN queue 64 of 64` or `none: ...`.
fn flood_line(instance: &InstanceStatus) -> String {
    let depth: f64 = instance
        .queues
        .iter()
        .map(|queue| queue.syn_queue_depth)
        .sum();
    let capacity: f64 = instance
        .queues
        .iter()
        .map(|queue| queue.syn_queue_capacity)
        .sum();
    let queue = format!("SYN queue {depth:.0} of {capacity:.0}");
    if instance.cookies_per_second > 0.0 {
        format!(
            "cookies being sent: {:.0}/s; {queue}",
            instance.cookies_per_second
        )
    } else {
        format!(
            "none: no cookies sent in the last {}; {queue}",
            humantime::format_duration(Duration::from_millis(instance.interval.as_millis() as u64))
        )
    }
}

/// The programs on the tcx ingress of `lo`, one of `interfaces`.
fn handoff_hook_programs(interfaces: &[InterfaceStatus]) -> Result<Vec<AttachedProgram>, String> {
    let lo = interfaces
        .iter()
        .find(|interface| interface.name == HANDOFF_INTERFACE)
        .ok_or_else(|| format!("there is no {HANDOFF_INTERFACE}"))?;
    tcx_programs(lo.index)
}

/// The programs on the tcx ingress of interface `index`, or why they could not be read.
fn tcx_programs(index: u32) -> Result<Vec<AttachedProgram>, String> {
    attached::tcx_ingress_programs(index).map_err(|error| {
        let hint = match error.raw_os_error() {
            Some(libc::EPERM) => "; it takes CAP_NET_ADMIN: run as root",
            Some(libc::EINVAL) => "; tcx needs Linux 6.6 or later",
            _ => "",
        };
        format!("{error}{hint}")
    })
}

/// Two scrapes of `address`, `interval` apart, read into an [`InstanceStatus`].
fn scrape_twice(address: SocketAddr, interval: Duration) -> Result<InstanceStatus, String> {
    let fetch = || Scrape::fetch(address).map_err(|error| error.to_string());
    let (before, started) = (fetch()?, Instant::now());
    thread::sleep(interval);
    let after = fetch()?;
    Ok(InstanceStatus::from_scrapes(
        &before,
        &after,
        started.elapsed(),
        SystemTime::now(),
    ))
}

/// A row of the XDP programs' table: interface, id, name, mode, synwall's.
fn program_row(out: &mut String, [interface, id, name, mode, synwall]: [&str; 5]) {
    let row = format!("  {interface:<16} {id:>8}  {name:<16} {mode:<10} {synwall}");
    let _ = writeln!(out, "{}", row.trim_end());
}

fn is_steering(xdp: &XdpProgram) -> bool {
    xdp.program.is_named(STEER_PROGRAM_NAME)
}

fn program_name(program: &AttachedProgram) -> &str {
    program.name.as_deref().unwrap_or("?")
}

fn yes_no(yes: bool) -> &'static str {
    if yes { "yes" } else { "no" }
}

#[cfg(test)]
mod tests;
