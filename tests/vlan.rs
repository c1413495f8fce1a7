//! 802.1Q tags in the lab: synwall takes a tagged frame only for a VLAN whose device on the
//! served interface holds a served address; any other tag stays with the kernel, which answers
//! nothing for a VLAN the host lacks. Privileged tier.
//!
//! This machine's kernel has no 802.1Q support (CONFIG_VLAN_8021Q is not set), so no VLAN
//! device can be made here: the served-VLAN side is tested by the steering program's dry runs
//! (tests/steering.rs) and in memory (a tagged handshake gets tagged answers, tests/listener.rs).

mod common;
#[path = "common/lab.rs"]
mod lab;

use std::time::Duration;

use common::{Client, linux_options, privileged_lab};
use lab::*;
use synwall::counters::Counter;
use synwall::handoff::HandoffMode;
use synwall::sys::SynAnswerer;

#[test]
fn test_a_tag_for_a_vlan_the_host_lacks_gets_no_answer_and_no_connection() {
    let Some(topology) = privileged_lab("swv") else {
        return;
    };
    full_checksums_from_the_server(&topology);
    let _service = service(&topology, served_v4());
    // synwall answers every SYN: the untagged one shows what reached it.
    let wall = Wall::start(&topology, HandoffMode::Native, |config| {
        config.answer_syns = SynAnswerer::Synwall;
    });
    let (ifname, link) = (topology.client_if.clone(), CraftedClient::link(&topology));
    let (tagged, untagged) = in_ns(&topology, &topology.client_ns, move || {
        let mut client = CraftedClient::open(&ifname, link);
        let mut tagged = Client::new("198.18.200.1:40001", 1, linux_options(1));
        tagged.link.vlan = Some(100);
        let untagged = Client::new("198.18.200.1:40002", 1, linux_options(1));
        let wait = Duration::from_secs(2);
        (
            client.syn(&tagged, served_v4(), wait),
            client.syn(&untagged, served_v4(), wait),
        )
    });
    assert!(
        tagged.is_none(),
        "a SYN of VLAN 100 was answered: {tagged:?}"
    );
    assert!(untagged.is_some(), "the same SYN untagged is answered");
    let stats = wall.stats();
    assert_eq!(
        stats.listener.get(Counter::SynReceived),
        1,
        "only the untagged SYN reached synwall"
    );
    assert!(
        stats.steering.passed > 0,
        "the tagged one went to the kernel"
    );
}
