//! Unit tests of the steering program's user-space side: CPU lists, the VLAN devices of an
//! interface, and the keys of the served-addresses map.

use super::*;

#[test]
fn cpu_lists_are_counted() {
    assert_eq!(parse_cpu_list("0"), Some(1));
    assert_eq!(parse_cpu_list("0-1"), Some(2));
    assert_eq!(parse_cpu_list("0-3,8,10-11"), Some(7));
    assert_eq!(parse_cpu_list("3-1"), None);
    assert_eq!(parse_cpu_list(""), None);
}

#[test]
fn vlan_devices_of_the_interface_are_listed() {
    let config = "VLAN Dev name\t | VLAN ID\n\
                  Name-Type: VLAN_NAME_TYPE_RAW_PLUS_VID_NO_PAD\n\
                  eth0.100       | 100  | eth0\n\
                  storage        | 7  | eth0\n\
                  eth1.100       | 100  | eth1\n\
                  broken         | x  | eth0\n";
    assert_eq!(
        vlan_devices(config, "eth0"),
        [("eth0.100".to_owned(), 100), ("storage".to_owned(), 7)]
    );
    assert!(vlan_devices(config, "eth2").is_empty());
}

#[test]
fn served_keys_have_markers_and_no_duplicates() {
    let served: Vec<SocketAddr> = vec![
        "198.18.0.1:80".parse().unwrap(),
        "198.18.0.1:443".parse().unwrap(),
        "[::]:80".parse().unwrap(),
    ];
    let keys = served_keys(&served).unwrap();
    assert_eq!(keys.len(), 5); // 2 ports + 1 marker for v4, 1 port + 1 marker for v6
    assert_eq!(&keys[0][..8], &[4, 0, 0, 80, 198, 18, 0, 1]);
    assert_eq!(&keys[1][..8], &[4, 0, 0, 0, 198, 18, 0, 1]);
    assert_eq!(keys[3], {
        let mut k = [0u8; SERVED_KEY_LEN];
        k[0] = 6;
        k[3] = 80;
        k
    });
    assert!(served_keys(&["198.18.0.1:0".parse().unwrap()]).is_err());
}
