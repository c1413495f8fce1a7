//! Unit tests of `synwall status`: the report built from a metrics scrape, as text and as JSON.

use super::*;
use crate::sys::attached::XdpAttachMode;

fn scrape(series: &[(&str, f64)]) -> Scrape {
    Scrape(
        series
            .iter()
            .map(|(series, value)| ((*series).to_owned(), *value))
            .collect(),
    )
}

/// A synwall on eth0 serving queues 0 and 1 of 4, started at Unix time 1000.
fn running(cookies: f64, depth: f64) -> Scrape {
    scrape(&[
        ("synwall_build_info{version=\"0.1.0\"}", 1.0),
        ("synwall_served_info{address=\"198.18.0.1:80\"}", 1.0),
        ("synwall_served_info{address=\"[2001:2::1]:443\"}", 1.0),
        ("synwall_interface_rx_queues{interface=\"eth0\"}", 4.0),
        ("synwall_syn_queue_capacity{queue=\"1\"}", 64.0),
        ("synwall_syn_queue_capacity{queue=\"0\"}", 64.0),
        ("synwall_syn_queue_depth{queue=\"0\"}", depth),
        ("synwall_syn_queue_depth{queue=\"1\"}", 3.0),
        ("synwall_xsk_zero_copy{queue=\"0\"}", 1.0),
        ("synwall_xsk_zero_copy{queue=\"1\"}", 0.0),
        (
            "synwall_handoff_info{mode=\"native\",answer_syns=\"kernel-first\"}",
            1.0,
        ),
        ("synwall_secret_info{source=\"file\"}", 1.0),
        ("process_start_time_seconds", 1000.0),
        (
            "synwall_synacks_sent_total{queue=\"0\",kind=\"cookie\"}",
            cookies,
        ),
        (
            "synwall_synacks_sent_total{queue=\"0\",kind=\"queued\"}",
            9.0,
        ),
    ])
}

fn instance(before: f64, after: f64) -> InstanceStatus {
    InstanceStatus::from_scrapes(
        &running(before, 0.0),
        &running(after, 64.0),
        Duration::from_millis(500),
        UNIX_EPOCH + Duration::from_secs(1000 + 3723),
    )
}

fn status(instance: Result<InstanceStatus, String>, steering: bool) -> Status {
    let program = |id, name: &str| AttachedProgram {
        id,
        name: Some(name.to_owned()),
    };
    let xdp = if steering {
        vec![XdpProgram {
            mode: XdpAttachMode::Native,
            program: program(42, "synwall_steer"),
        }]
    } else {
        vec![]
    };
    Status {
        interfaces: Ok(vec![
            InterfaceStatus {
                index: 1,
                name: "lo".to_owned(),
                xdp: Ok(vec![]),
                tcx: None,
            },
            InterfaceStatus {
                index: 2,
                name: "eth0".to_owned(),
                xdp: Ok(xdp),
                tcx: steering.then(|| Ok(vec![program(44, "synwall_finish")])),
            },
        ]),
        handoff_hook: Ok(if steering {
            vec![program(43, "synwall_handoff")]
        } else {
            vec![]
        }),
        metrics_address: "127.0.0.1:9464".parse().unwrap(),
        instance,
    }
}

#[test]
fn test_scrapes_give_queues_modes_and_flood() {
    let instance = instance(100.0, 600.0);
    assert_eq!(instance.version.as_deref(), Some("0.1.0"));
    assert_eq!(instance.interface.as_deref(), Some("eth0"));
    assert_eq!(instance.interface_rx_queues, Some(4));
    assert_eq!(instance.served, ["198.18.0.1:80", "[2001:2::1]:443"]);
    assert_eq!(
        instance.queues[0],
        QueueStatus {
            queue: 0,
            zero_copy: Some(true),
            syn_queue_depth: 64.0,
            syn_queue_capacity: 64.0,
        }
    );
    assert_eq!(instance.queues[1].zero_copy, Some(false));
    assert_eq!(instance.handoff.as_deref(), Some("native"));
    assert_eq!(instance.answer_syns.as_deref(), Some("kernel-first"));
    assert_eq!(instance.secret.as_deref(), Some("file"));
    assert_eq!(instance.uptime, Some(Duration::from_secs(3723)));
    assert_eq!(instance.cookies_per_second, 1000.0);
}

#[test]
fn test_a_restarted_synwall_counts_cookies_from_zero() {
    assert_eq!(instance(600.0, 50.0).cookies_per_second, 100.0);
}

#[test]
fn test_text_names_programs_queues_and_flood() {
    let text = status(Ok(instance(0.0, 10.0)), true).text();
    assert!(
        text.contains("eth0                   42  synwall_steer    native     yes"),
        "{text}"
    );
    assert!(text.contains("lo                      -"), "{text}");
    assert!(
        text.contains("lo tcx ingress: synwall_handoff (id 43): native handoff is attached"),
        "{text}"
    );
    assert!(
        text.contains("eth0 tcx ingress: synwall_finish (id 44): the kernel completes queued"),
        "{text}"
    );
    assert!(
        text.contains("synwall 0.1.0 at 127.0.0.1:9464, up 1h 2m 3s:"),
        "{text}"
    );
    assert!(
        text.contains("serves     198.18.0.1:80, [2001:2::1]:443 on eth0"),
        "{text}"
    );
    assert!(
        text.contains("rx queues  2 served of the interface's 4: 0 (zero-copy), 1 (copy); frames"),
        "{text}"
    );
    assert!(
        text.contains("handoff    native (answer-syns kernel-first)"),
        "{text}"
    );
    assert!(text.contains("secret     file"), "{text}");
    assert!(
        text.contains("flood      cookies being sent: 20/s; SYN queue 67 of 128"),
        "{text}"
    );
    assert!(
        !text.contains("is this synwall's network namespace"),
        "{text}"
    );
}

#[test]
fn test_an_endpoint_without_the_program_here_is_pointed_out() {
    let text = status(Ok(instance(0.0, 0.0)), false).text();
    assert!(
        text.contains("lo tcx ingress: native handoff is not attached"),
        "{text}"
    );
    assert!(
        text.contains("the kernel shows no synwall_steer on eth0 here"),
        "{text}"
    );
    assert!(
        text.contains("flood      none: no cookies sent in the last 500ms"),
        "{text}"
    );
}

#[test]
fn test_nothing_found_names_what_was_checked() {
    let status = status(Err("Connection refused (os error 111)".to_owned()), false);
    assert!(!status.synwall_found());
    assert_eq!(
        status.not_found(),
        "no synwall found: no synwall_steer XDP program on the 2 interfaces of this \
         network namespace (lo, eth0), no synwall_handoff on lo's tcx ingress, and no \
         metrics endpoint answers at 127.0.0.1:9464 (Connection refused (os error 111); \
         --metrics or --config name another)"
    );
    assert!(
        status
            .text()
            .contains("No synwall answers at 127.0.0.1:9464")
    );
    assert_eq!(status.json()["synwall_found"], false);
}

#[test]
fn test_json_carries_programs_and_instance() {
    let json = status(Ok(instance(0.0, 10.0)), true).json();
    assert_eq!(json["synwall_found"], true);
    let eth0 = &json["interfaces"][1];
    assert_eq!(eth0["name"], "eth0");
    assert_eq!(
        eth0["xdp"]["programs"][0],
        json!({"id": 42, "name": "synwall_steer", "mode": "native", "synwall": true})
    );
    assert_eq!(json["lo_tcx_ingress"]["programs"][0]["synwall"], true);
    let eth0 = &json["interfaces"][1];
    assert_eq!(eth0["tcx_ingress"]["programs"][0]["name"], "synwall_finish");
    assert_eq!(eth0["tcx_ingress"]["programs"][0]["synwall"], true);
    let instance = &json["metrics"]["instance"];
    assert_eq!(instance["handoff"], "native");
    assert_eq!(instance["answer_syns"], "kernel-first");
    assert_eq!(instance["served"][0], "198.18.0.1:80");
    assert_eq!(instance["queues"][1]["zero_copy"], false);
    assert_eq!(instance["flood"]["cookies_per_second"], 20.0);
    assert_eq!(instance["uptime_seconds"], 3723.0);
}
