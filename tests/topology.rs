//! The lab topology: two namespaces that reach each other over IPv4 only, and nothing left
//! after drop.

mod common;

use synwall::lab::{CLIENT_V4, Topology, run};

#[test]
fn test_topology_connects_and_cleans_up() {
    if !common::require_privileges() {
        return;
    }
    let topology = Topology::create("swt").unwrap();
    let names = (topology.server_ns.clone(), topology.client_ns.clone());
    topology
        .run_in(
            &topology.server_ns,
            &["ping", "-c1", "-W2", &CLIENT_V4.to_string()],
        )
        .unwrap();
    // Only addresses in 198.18.0.0/15: no IPv6 address at all, not even link-local.
    for ns in [&topology.server_ns, &topology.client_ns] {
        let v6 = topology.run_in(ns, &["ip", "-6", "addr", "show"]).unwrap();
        assert_eq!(v6.trim(), "", "IPv6 addresses in {ns}");
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
    let left = run(&["ip", "netns", "list"]).unwrap();
    assert!(
        !left.contains(&names.0) && !left.contains(&names.1),
        "{left}"
    );
}
