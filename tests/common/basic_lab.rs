//! The reconciler tests' basic lab (`tests/fixtures/net/basic.yaml`): what it
//! declares, and checks that the host holds exactly that, or nothing of it.

// Each test crate that includes this module uses only some of the helpers.
#![allow(dead_code)]

use super::netns::Sandbox;

/// Sorted owned pairs from string pairs.
pub fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

/// The basic lab's interfaces and their kinds as `ip -j -d link` names them.
pub const BASIC: &[(&str, &str)] = &[
    ("sw1", "bridge"),
    ("sw2", "bridge"),
    ("ext0", "tun"),
    ("pc1-eth0", "tun"),
    ("pc2-eth0", "tun"),
    ("sw1-sw2", "veth"),
    ("sw2-sw1", "veth"),
];

/// The basic lab's bridge ports: (port, bridge).
pub const BASIC_PORTS: &[(&str, &str)] = &[
    ("ext0", "sw1"),
    ("pc1-eth0", "sw1"),
    ("pc2-eth0", "sw2"),
    ("sw1-sw2", "sw1"),
    ("sw2-sw1", "sw2"),
];

/// The STP state the kernel reports for `bridge`.
pub fn stp(sandbox: &Sandbox, bridge: &str) -> u64 {
    sandbox.link(bridge).unwrap()["linkinfo"]["info_data"]["stp_state"]
        .as_u64()
        .unwrap()
}

/// The basic lab as declared: interfaces, kinds, ports, STP, MTU, address, up.
pub fn check_basic(sandbox: &Sandbox) {
    assert_eq!(sandbox.marked("basic"), owned(BASIC));
    // Nothing else besides loopback.
    let mut all: Vec<String> = sandbox
        .links()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    all.sort();
    let mut want: Vec<String> = BASIC.iter().map(|(n, _)| n.to_string()).collect();
    want.push("lo".into());
    want.sort();
    assert_eq!(all, want);
    assert_eq!(sandbox.bridge_ports(), owned(BASIC_PORTS));
    assert_eq!(stp(sandbox, "sw1"), 1);
    assert_eq!(stp(sandbox, "sw2"), 0);
    for name in ["sw2", "pc2-eth0", "sw1-sw2", "sw2-sw1"] {
        assert_eq!(sandbox.link(name).unwrap()["mtu"], 9000, "{name}");
    }
    for (name, _) in BASIC {
        let link = sandbox.link(name).unwrap();
        let flags = link["flags"].as_array().unwrap();
        assert!(flags.iter().any(|f| f == "UP"), "{name} is not up: {link}");
    }
    let tap = sandbox.link("ext0").unwrap();
    assert_eq!(tap["linkinfo"]["info_data"]["type"], "tap");
    assert_eq!(tap["linkinfo"]["info_data"]["pi"], false);
    assert_eq!(tap["linkinfo"]["info_data"]["vnet_hdr"], true);
    let out = std::process::Command::new("ip")
        .args(["-n", &sandbox.netns, "-j", "addr", "show", "sw1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"10.0.0.254\""), "{text}");
    // The host's own IPv6 is off on the lab's switches and ports: no link-local
    // addresses, no router solicitations to wake the guests.
    for (name, _) in BASIC {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &sandbox.netns, "cat"])
            .arg(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1", "{name}");
    }
    let out = std::process::Command::new("ip")
        .args(["-n", &sandbox.netns, "-j", "-6", "addr", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("fe80"), "{text}");
}

/// Down leaves no marked interface, no state directory and no namespace.
pub fn check_gone(sandbox: &Sandbox, lab: &str) {
    assert!(!sandbox.netns_exists(), "namespace {} left", sandbox.netns);
    assert!(!sandbox.lab_dir(lab).exists(), "state directory left");
}
