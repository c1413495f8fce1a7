//! The lab topology: two namespaces that reach each other, and nothing left after drop.

mod common;

use synwall::lab::{CLIENT_V4, SERVER_V6, Topology, run};

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
    topology
        .run_in(
            &topology.client_ns,
            &["ping", "-6", "-c1", "-W2", &SERVER_V6.to_string()],
        )
        .unwrap();
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
