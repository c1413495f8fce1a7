//! The lab topology: two namespaces that reach each other over IPv4 and IPv6, with addresses
//! from the benchmarking ranges only, and nothing left after drop.

mod common;

use loadgen::lab::{CLIENT_V4, CLIENT_V6, Topology, run};

#[test]
fn test_topology_connects_and_cleans_up() {
    let Some(topology) = common::privileged_lab("swt") else {
        return;
    };
    let names = (topology.server_ns.clone(), topology.client_ns.clone());
    for client in [CLIENT_V4.to_string(), CLIENT_V6.to_string()] {
        topology
            .run_in(&topology.server_ns, &["ping", "-c1", "-W2", &client])
            .unwrap();
    }
    // Only addresses in 198.18.0.0/15 and 2001:2::/48 (and the loopback's): no link-local.
    for ns in [&topology.server_ns, &topology.client_ns] {
        let v6 = topology
            .run_in(ns, &["ip", "-6", "-o", "addr", "show", "scope", "global"])
            .unwrap();
        assert!(v6.lines().all(|line| line.contains(" 2001:2:")), "{v6}");
        assert_eq!(v6.lines().count(), 1, "{v6}");
        let link_local = topology
            .run_in(ns, &["ip", "-6", "-o", "addr", "show", "scope", "link"])
            .unwrap();
        assert_eq!(link_local.trim(), "", "link-local addresses in {ns}");
        let v4 = topology
            .run_in(ns, &["ip", "-4", "-o", "addr", "show", "scope", "global"])
            .unwrap();
        assert!(v4.lines().all(|line| line.contains(" 198.18.")), "{v4}");
    }
    let mac = topology
        .mac(&topology.client_ns, &topology.client_if)
        .unwrap();
    assert_ne!(mac, [0; 6]);
    drop(topology);
    common::assert_namespaces_gone(&[&names.0, &names.1]);
}

#[test]
fn test_namespaces_of_a_killed_run_are_deleted_at_the_next_start() {
    if !common::require_privileges() {
        return;
    }
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("swk-{dead}x0-srv");
    // Process 1 always exists: its namespace belongs to a live run and must stay.
    let live = "swk-1x0-cli";
    let _cleanup = NamespacesDeletedOnDrop(vec![stale.clone(), live.to_owned()]);
    for ns in [stale.as_str(), live] {
        run(&["ip", "netns", "add", ns]).unwrap();
    }
    let topology = Topology::create("swk").unwrap();
    let listed = run(&["ip", "netns", "list"]).unwrap();
    assert!(!listed.contains(&stale), "{listed}");
    assert!(listed.contains(live), "{listed}");
    assert!(listed.contains(&topology.server_ns), "{listed}");
}

struct NamespacesDeletedOnDrop(Vec<String>);

impl Drop for NamespacesDeletedOnDrop {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
