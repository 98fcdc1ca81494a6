//! Table-driven tests of topology validation: each invalid file is rejected with the
//! expected message, at the expected line and column, with a help line.

use std::path::PathBuf;

use kvmlab::topology::{self, Context};

struct Case {
    name: &'static str,
    yaml: &'static str,
    message: &'static str,
    line: usize,
    column: usize,
    help: &'static str,
}

const HEAD: &str = "version: 1\nname: lab\n";

fn context() -> Context {
    Context {
        base_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests"),
        host_memory: Some(1 << 30),
    }
}

/// Each case's YAML is appended to `HEAD` unless it starts with `version:` or is
/// marked raw by a leading `!`.
fn source(case: &Case) -> String {
    if let Some(raw) = case.yaml.strip_prefix('!') {
        raw.to_string()
    } else {
        format!("{HEAD}{}", case.yaml)
    }
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    // The YAML layer: syntax, types, unknown and missing keys.
    Case { name: "unclosed flow sequence", yaml: "bridges: [ { name: sw1 }\nvms: []\n",
        message: "did not find expected ',' or ']'", line: 4, column: 1, help: "indentation" },
    Case { name: "bad indentation", yaml: "!version: 1\nname: lab\n  stray: 1\n",
        message: "mapping values are not allowed", line: 3, column: 8, help: "indentation" },
    Case { name: "empty file", yaml: "!\n\n",
        message: "the topology file is empty", line: 1, column: 1, help: "version: 1" },
    Case { name: "top level is a list", yaml: "!- version: 1\n",
        message: "invalid type: sequence, expected struct Topology", line: 1, column: 1, help: "mapping" },
    Case { name: "vcpus is text", yaml: "vms:\n  - { name: pc1, vcpus: two }\n",
        message: "invalid type: string \"two\", expected u32", line: 4, column: 25, help: "whole number" },
    Case { name: "vlans not a list", yaml: "bridges:\n  - { name: sw1, vlans: 10 }\n",
        message: "invalid type: integer `10`, expected a sequence", line: 4, column: 25, help: "write a list" },
    Case { name: "stp not a boolean", yaml: "bridges:\n  - { name: sw1, stp: maybe }\n",
        message: "expected a boolean", line: 4, column: 23, help: "`true` or `false`" },
    Case { name: "VLAN id beyond u16", yaml: "bridges:\n  - { name: sw1, vlans: [70000] }\n",
        message: "invalid value: integer `70000`, expected u16", line: 4, column: 26, help: "1 to 4094" },
    Case { name: "misspelt top-level key", yaml: "bridge:\n  - { name: sw1 }\n",
        message: "unknown key `bridge`", line: 3, column: 1, help: "did you mean `bridges`?" },
    Case { name: "misspelt NIC key", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics:\n      - { bridg: sw1 }\n",
        message: "unknown key `bridg`", line: 7, column: 11, help: "did you mean `bridge`?" },
    Case { name: "misspelt VM key", yaml: "vms:\n  - name: pc1\n    memroy: 64MiB\n",
        message: "unknown key `memroy`", line: 5, column: 5, help: "did you mean `memory`?" },
    Case { name: "unknown key far from any", yaml: "bridges:\n  - { name: sw1, colour: red }\n",
        message: "unknown key `colour`", line: 4, column: 18, help: "allowed here: address, mtu, name, stp, vlans" },
    Case { name: "bridge without name", yaml: "bridges:\n  - stp: true\n",
        message: "missing key `name`", line: 4, column: 5, help: "add `name:`" },
    Case { name: "no version", yaml: "!name: lab\n",
        message: "missing key `version`", line: 1, column: 1, help: "add `version:`" },
    Case { name: "memory without unit sense", yaml: "vms:\n  - { name: pc1, memory: lots }\n",
        message: "`lots` is not a size", line: 4, column: 26, help: "64MiB" },
    Case { name: "memory in decimal megabytes", yaml: "vms:\n  - { name: pc1, memory: 64MB }\n",
        message: "unknown unit `MB`", line: 4, column: 26, help: "64MiB" },
    // Names.
    Case { name: "unsupported version", yaml: "!version: 2\nname: lab\n",
        message: "unsupported format version 2", line: 1, column: 10, help: "set `version: 1`" },
    Case { name: "lab name not a DNS label", yaml: "!version: 1\nname: My_Lab\n",
        message: "invalid lab name `My_Lab`", line: 2, column: 7, help: "lowercase letters" },
    Case { name: "netns name with a slash", yaml: "netns: a/b\n",
        message: "invalid network namespace name `a/b`", line: 3, column: 8, help: "1 to 64" },
    Case { name: "bridge name too long", yaml: "bridges:\n  - name: a-very-long-bridge\n",
        message: "interface name `a-very-long-bridge` is 18 bytes long", line: 4, column: 11, help: "at most 15 bytes" },
    Case { name: "bridge name with a space", yaml: "bridges:\n  - name: sw 1\n",
        message: "interface name `sw 1` contains ` `", line: 4, column: 11, help: "only letters" },
    Case { name: "two bridges of one name", yaml: "bridges:\n  - name: sw1\n  - name: sw1\n",
        message: "duplicate interface name `sw1`", line: 5, column: 11, help: "already the bridge at bridges[0].name" },
    Case { name: "TAP named like a bridge", yaml: "bridges: [{ name: sw1 }]\ntaps:\n  - { name: sw1, bridge: sw1 }\n",
        message: "duplicate interface name `sw1`", line: 5, column: 13, help: "already the bridge" },
    Case { name: "TAP named like a VM NIC's TAP", yaml: "bridges: [{ name: sw1 }]\ntaps: [{ name: pc1-eth0, bridge: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1 }]\n",
        message: "duplicate interface name `pc1-eth0`", line: 6, column: 11, help: "already the TAP at taps[0].name" },
    Case { name: "VM name with capitals", yaml: "vms:\n  - name: PC1\n",
        message: "invalid VM name `PC1`", line: 4, column: 11, help: "lowercase letters" },
    Case { name: "two VMs of one name", yaml: "vms:\n  - name: pc1\n  - name: pc1\n",
        message: "duplicate VM name `pc1`", line: 5, column: 11, help: "vms[0] is already called `pc1`" },
    // References.
    Case { name: "NIC on a bridge that does not exist", yaml: "bridges: [{ name: sw1 }, { name: sw2 }]\nvms:\n  - name: pc1\n    nics:\n      - { bridge: sw3 }\n",
        message: "unknown bridge `sw3`", line: 7, column: 19, help: "did you mean `sw1` or `sw2`?" },
    Case { name: "TAP on a bridge nothing is close to", yaml: "bridges: [{ name: sw1 }]\ntaps:\n  - { name: ext0, bridge: backbone }\n",
        message: "unknown bridge `backbone`", line: 5, column: 27, help: "use one of: sw1" },
    Case { name: "link to a missing bridge", yaml: "bridges: [{ name: sw1 }]\nlinks:\n  - { a: sw1, b: sw9 }\n",
        message: "unknown bridge `sw9`", line: 5, column: 18, help: "did you mean `sw1`?" },
    Case { name: "link to itself", yaml: "bridges: [{ name: sw1 }]\nlinks:\n  - { a: sw1, b: sw1 }\n",
        message: "link joins bridge `sw1` to itself", line: 5, column: 18, help: "two different bridges" },
    // VLANs.
    Case { name: "VLAN 0 on a bridge", yaml: "bridges:\n  - { name: sw1, vlans: [0] }\n",
        message: "VLAN id 0 is out of range", line: 4, column: 26, help: "1 to 4094" },
    Case { name: "VLAN 4095 on a NIC", yaml: "bridges: [{ name: sw1, vlans: [10] }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, vlan: 4095 }]\n",
        message: "VLAN id 4095 is out of range", line: 6, column: 33, help: "1 to 4094" },
    Case { name: "VLAN not on the bridge", yaml: "bridges: [{ name: sw1, vlans: [10, 20] }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, vlan: 30 }]\n",
        message: "VLAN 30 is not declared on bridge `sw1`", line: 6, column: 33, help: "add 30 to the `vlans:` of bridge `sw1` (it has 10, 20)" },
    Case { name: "vlan and trunk together", yaml: "bridges: [{ name: sw1, vlans: [10] }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, vlan: 10, trunk: [10] }]\n",
        message: "`vlan` and `trunk` are exclusive", line: 6, column: 37, help: "not both" },
    Case { name: "trunk lists a VLAN twice", yaml: "bridges: [{ name: sw1, vlans: [10, 20] }]\ntaps:\n  - { name: ext0, bridge: sw1, trunk: [10, 20, 10] }\n",
        message: "VLAN 10 is listed twice in this trunk", line: 5, column: 48, help: "remove the repeated" },
    Case { name: "bridge declares a VLAN twice", yaml: "bridges:\n  - { name: sw1, vlans: [10, 10] }\n",
        message: "VLAN 10 is declared twice on bridge `sw1`", line: 4, column: 30, help: "remove the repeated" },
    Case { name: "link trunk VLAN missing on one end", yaml: "bridges: [{ name: sw1, vlans: [10] }, { name: sw2 }]\nlinks:\n  - { a: sw1, b: sw2, trunk: [10] }\n",
        message: "VLAN 10 is not declared on bridge `sw2`", line: 5, column: 31, help: "it declares no VLANs" },
    Case { name: "VLAN address outside the trunk", yaml: "bridges: [{ name: sw1, vlans: [10, 20] }]\nvms:\n  - name: pc1\n    nics:\n      - bridge: sw1\n        trunk: [10]\n        vlan_ips: { 20: 10.0.20.1/24 }\n",
        message: "`vlan_ips` names VLAN 20", line: 9, column: 21, help: "add 20 to `trunk:`" },
    // MACs and addresses.
    Case { name: "malformed MAC", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, mac: \"52:54:00:zz:00:01\" }]\n",
        message: "invalid MAC address `52:54:00:zz:00:01`", line: 6, column: 32, help: "six hex bytes" },
    Case { name: "multicast MAC", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, mac: \"01:00:5e:00:00:01\" }]\n",
        message: "MAC address 01:00:5e:00:00:01 is multicast", line: 6, column: 32, help: "lowest bit of the first byte" },
    Case { name: "two NICs with one MAC", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, mac: \"52:54:00:00:00:01\" }]\n  - name: pc2\n    nics: [{ bridge: sw1, mac: \"52:54:00:00:00:01\" }]\n",
        message: "MAC address 52:54:00:00:00:01 is used twice", line: 8, column: 32, help: "vms[0].nics[0].mac already has this address" },
    Case { name: "address without prefix", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1 }]\n",
        message: "invalid address `10.0.0.1`", line: 6, column: 31, help: "like 10.0.0.1/24" },
    Case { name: "address with an octet over 255", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.300/24 }]\n",
        message: "invalid address `10.0.0.300/24`: octet 300 is out of range", line: 6, column: 31, help: "0 to 255" },
    Case { name: "address with three parts", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.1/24 }]\n",
        message: "`10.0.1` has 3 parts where an IPv4 address has 4", line: 6, column: 31, help: "four numbers from 0 to 255" },
    Case { name: "address with a leading zero", yaml: "bridges:\n  - { name: sw1, address: 10.0.0.01/24 }\n",
        message: "octet `01` has a leading zero", line: 4, column: 27, help: "write it as 1" },
    Case { name: "address with nothing after the slash", yaml: "bridges:\n  - { name: sw1, address: 10.0.0.1/ }\n",
        message: "invalid address `10.0.0.1/`: nothing after `/`", line: 4, column: 27, help: "0 to 32, like 10.0.0.1/24" },
    Case { name: "prefix length that is not a number", yaml: "bridges:\n  - { name: sw1, address: 10.0.0.1/ab }\n",
        message: "prefix length `ab` is not a number", line: 4, column: 27, help: "whole number from 0 to 32" },
    Case { name: "a name where an address belongs", yaml: "bridges:\n  - { name: sw1, address: gateway/24 }\n",
        message: "`gateway` is not an IP address", line: 4, column: 27, help: "does not resolve names" },
    Case { name: "malformed IPv6 address", yaml: "bridges:\n  - name: sw1\n    address: \"fd00:::1/64\"\n",
        message: "`fd00:::1` is not a valid IPv6 address", line: 5, column: 14, help: "`::` for one run" },
    Case { name: "MAC with five bytes", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, mac: \"52:54:00:00:01\" }]\n",
        message: "it has 5 parts where a MAC address has 6", line: 6, column: 32, help: "six hex bytes" },
    Case { name: "malformed MAC names its bad byte", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, mac: \"52:54:00:zz:00:01\" }]\n",
        message: "`zz` is not a byte in two hex digits", line: 6, column: 32, help: "six hex bytes" },
    Case { name: "IPv6 ping target", yaml: "vms:\n  - name: pc1\n    ping: [\"fd00::1\"]\n",
        message: "ping target `fd00::1` is not an IPv4 address: it is IPv6", line: 5, column: 12, help: "pings IPv4 only" },
    Case { name: "ping target with an octet over 255", yaml: "vms:\n  - name: pc1\n    ping: [10.0.0.256]\n",
        message: "octet 256 is out of range", line: 5, column: 12, help: "0 to 255" },
    Case { name: "ping target with a prefix", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    ping: [10.0.0.2/24]\n",
        message: "ping target `10.0.0.2/24` is not an IPv4 address", line: 6, column: 12, help: "plain address such as 10.0.0.2" },
    Case { name: "ping target that is a name", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    ping:\n      - 10.0.0.1\n      - pc2\n",
        message: "ping target `pc2` is not an IPv4 address", line: 8, column: 9, help: "no name" },
    Case { name: "prefix too long", yaml: "bridges:\n  - { name: sw1, address: 10.0.0.254/33 }\n",
        message: "prefix length /33 is out of range", line: 4, column: 27, help: "0 to 32" },
    Case { name: "one address twice on a bridge", yaml: "bridges: [{ name: sw1, address: 10.0.0.1/24 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24 }]\n",
        message: "address 10.0.0.1 is used twice on the segment of bridge `sw1`", line: 6, column: 31, help: "bridges[0].address already has this address" },
    Case { name: "one address twice across a link", yaml: "bridges: [{ name: sw1 }, { name: sw2 }]\nlinks: [{ a: sw1, b: sw2 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24 }]\n  - name: pc2\n    nics: [{ bridge: sw2, ip: 10.0.0.1/24 }]\n",
        message: "address 10.0.0.1 is used twice on the segment of bridge `sw2`", line: 9, column: 31, help: "vms[0].nics[0].ip" },
    Case { name: "IPv6 on the built-in guest", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: fd00::1/64 }]\n",
        message: "the built-in guest cannot take the IPv6 address fd00::1/64", line: 6, column: 31, help: "speaks IPv4 only" },
    // Layer 3: gateways and routes.
    Case { name: "gateway outside the NIC's subnet", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24, gateway: 10.0.1.254 }]\n",
        message: "gateway 10.0.1.254 is outside this NIC's subnet 10.0.0.0/24", line: 6, column: 53, help: "use an address in 10.0.0.0/24" },
    Case { name: "gateway without an address", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, gateway: 10.0.0.254 }]\n",
        message: "gateway 10.0.0.254 on a NIC without an address", line: 6, column: 36, help: "give this NIC an `ip:`" },
    Case { name: "gateway not an address", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24, gateway: 10.0.0.254/24 }]\n",
        message: "gateway `10.0.0.254/24` is not an IPv4 address", line: 6, column: 53, help: "without a prefix length" },
    Case { name: "two gateways", yaml: "bridges: [{ name: sw1 }, { name: sw2 }]\nvms:\n  - name: pc1\n    nics:\n      - { bridge: sw1, ip: 10.0.0.1/24, gateway: 10.0.0.254 }\n      - { bridge: sw2, ip: 10.0.1.1/24, gateway: 10.0.1.254 }\n",
        message: "pc1 has a second default gateway", line: 8, column: 41, help: "one default route" },
    Case { name: "route next hop unreachable", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24 }]\n    routes: [{ to: 10.9.0.0/24, via: 10.0.5.1 }]\n",
        message: "next hop 10.0.5.1 is on none of pc1's subnets", line: 7, column: 38, help: "(10.0.0.0/24)" },
    Case { name: "route to a host address", yaml: "bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24 }]\n    routes: [{ to: 10.9.0.1/24, via: 10.0.0.9 }]\n",
        message: "route destination 10.9.0.1/24 is not a network address", line: 7, column: 20, help: "write the network: 10.9.0.0/24" },
    // Sizes and files.
    Case { name: "no vCPUs", yaml: "vms:\n  - { name: pc1, vcpus: 0 }\n",
        message: "vcpus must be 1 to 255, not 0", line: 4, column: 25, help: "between 1 and 255" },
    Case { name: "too many vCPUs", yaml: "vms:\n  - { name: pc1, vcpus: 300 }\n",
        message: "vcpus must be 1 to 255, not 300", line: 4, column: 25, help: "between 1 and 255" },
    Case { name: "memory below 2MiB", yaml: "vms:\n  - { name: pc1, memory: 1M }\n",
        message: "memory 1MiB is too small", line: 4, column: 26, help: "at least 2MiB" },
    Case { name: "memory beyond the host", yaml: "vms:\n  - { name: pc1, memory: 2GiB }\n",
        message: "memory 2GiB is more than this host has (1GiB)", line: 4, column: 26, help: "less memory" },
    Case { name: "kernel file missing", yaml: "vms:\n  - name: pc1\n    kernel: no-such-vmlinuz\n",
        message: "kernel file not found: ", line: 5, column: 13, help: "relative paths start from the topology file's folder" },
    Case { name: "disk is a folder", yaml: "vms:\n  - name: pc1\n    disks: [{ path: . }]\n",
        message: "disk path is not a file: ", line: 5, column: 21, help: "regular file" },
    Case { name: "initrd without kernel", yaml: "vms:\n  - name: pc1\n    initrd: topology_errors.rs\n",
        message: "an initrd needs a kernel", line: 5, column: 5, help: "add `kernel:`" },
    Case { name: "MTU too small", yaml: "bridges:\n  - { name: sw1, mtu: 40 }\n",
        message: "MTU 40 is out of range", line: 4, column: 23, help: "68 to 65535" },
];

#[test]
fn every_invalid_topology_is_rejected_where_it_is_wrong() {
    assert!(CASES.len() >= 30, "the table holds {} cases", CASES.len());
    let mut failures = Vec::new();
    for case in CASES {
        let text = source(case);
        let problems = match topology::parse_str("lab.yaml", &text, &context()) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(problems) => problems,
        };
        let Some(problem) = problems.iter().find(|p| p.message.contains(case.message)) else {
            let got: Vec<_> = problems.iter().map(|p| &p.message).collect();
            failures.push(format!(
                "{}: no message containing {:?}; got {got:?}",
                case.name, case.message
            ));
            continue;
        };
        if (problem.line, problem.column) != (case.line, case.column) {
            failures.push(format!(
                "{}: {:?} at {}:{}, expected {}:{}",
                case.name, problem.message, problem.line, problem.column, case.line, case.column
            ));
        }
        let help = problem.help.as_deref().unwrap_or_default();
        if !help.contains(case.help) {
            failures.push(format!(
                "{}: help {help:?} lacks {:?}",
                case.name, case.help
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn all_semantic_problems_are_reported_at_once() {
    let text = format!(
        "{HEAD}bridges: [{{ name: sw1, vlans: [10] }}]\nvms:\n  - name: pc1\n    vcpus: 0\n    nics: [{{ bridge: sw2, vlan: 20, ip: 1.2.3.4 }}]\n"
    );
    let problems = topology::parse_str("lab.yaml", &text, &context()).unwrap_err();
    let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "vcpus must be 1 to 255, not 0",
            "unknown bridge `sw2`",
            "invalid address `1.2.3.4`: no prefix length",
        ]
    );
}

#[test]
fn an_address_error_does_not_blame_a_prefix_that_is_there() {
    let text = format!(
        "{HEAD}bridges: [{{ name: sw1 }}]\nvms:\n  - name: pc1\n    nics: [{{ bridge: sw1, ip: 10.0.0.300/24 }}]\n"
    );
    let problems = topology::parse_str("lab.yaml", &text, &context()).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    let help = problems[0].help.as_deref().unwrap_or_default();
    assert!(!help.contains("prefix"), "{help}");
    assert_eq!(problems[0].label, "300 is more than 255");
}

#[test]
fn all_unknown_keys_are_reported_at_once() {
    let text = format!(
        "{HEAD}bridge:\n  - {{ name: sw1 }}\nvms:\n  - name: pc1\n    memroy: 64MiB\n    nics: [{{ bridg: sw1, vlan_ips: {{ 10: 10.0.0.1/24 }} }}]\n"
    );
    let problems = topology::parse_str("lab.yaml", &text, &context()).unwrap_err();
    let found: Vec<(&str, usize, usize, &str)> = problems
        .iter()
        .map(|p| {
            (
                p.message.as_str(),
                p.line,
                p.column,
                p.help.as_deref().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("unknown key `bridge`", 3, 1, "did you mean `bridges`?"),
            ("unknown key `memroy`", 7, 5, "did you mean `memory`?"),
            ("unknown key `bridg`", 8, 14, "did you mean `bridge`?"),
            // The pass goes on past unknown keys (`bridge:` read as `bridges:`,
            // `bridg:` as `bridge:`), so the file's other problem shows too.
            (
                "`vlan_ips` names VLAN 10, which this NIC's trunk does not carry",
                8,
                38,
                "add 10 to `trunk:`, or use `ip:` for an access port"
            ),
        ]
    );
}

/// The messages, lines and columns of every problem of `yaml` (after `HEAD`).
fn all_problems(yaml: &str) -> Vec<(String, usize, usize)> {
    let text = format!("{HEAD}{yaml}");
    topology::parse_str("lab.yaml", &text, &context())
        .unwrap_err()
        .into_iter()
        .map(|p| (p.message, p.line, p.column))
        .collect()
}

#[test]
fn an_unknown_key_does_not_hide_the_other_problems() {
    let found = all_problems(
        "bridges: [{ name: sw1, colour: red }]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw2 }]\n",
    );
    assert_eq!(
        found,
        [
            ("unknown key `colour`".to_string(), 3, 24),
            ("unknown bridge `sw2`".to_string(), 6, 22),
        ]
    );
}

#[test]
fn a_misspelt_key_is_read_as_the_key_it_misspells() {
    // Not "missing key `bridge`" on top of the misspelling: the value is checked
    // where it is written.
    let found =
        all_problems("bridges: [{ name: sw1 }]\nvms:\n  - name: pc1\n    nics: [{ bridg: sw3 }]\n");
    assert_eq!(
        found,
        [
            ("unknown key `bridg`".to_string(), 6, 14),
            ("unknown bridge `sw3`".to_string(), 6, 21),
        ]
    );
}

#[test]
fn every_value_of_the_wrong_type_is_reported_once() {
    let found = all_problems(
        "bridges:\n  - { name: sw1, stp: maybe, vlans: 10 }\n  - { stp: true }\nvms:\n  - { name: [pc1], vcpus: two, nics: [{ bridge: sw1, vlan: 10 }] }\n  - { name: pc2, vcpus: 0 }\n",
    );
    let messages: Vec<&str> = found.iter().map(|(m, ..)| m.as_str()).collect();
    assert_eq!(
        messages,
        [
            "invalid type: string \"maybe\", expected a boolean",
            "invalid type: integer `10`, expected a sequence",
            "missing key `name`",
            "invalid type: sequence, expected a string",
            "invalid type: string \"two\", expected u32",
            "vcpus must be 1 to 255, not 0",
        ],
        "{found:?}"
    );
    // No "VLAN 10 is not declared" for the unreadable `vlans`, no "missing key
    // `name`" for the unreadable name, no complaint about the placeholder names.
}

#[test]
fn valid_topology_is_accepted_with_defaults() {
    let text = format!(
        "{HEAD}bridges: [{{ name: sw1 }}]\nvms:\n  - name: pc1\n    nics: [{{ bridge: sw1 }}]\n"
    );
    let topology = topology::parse_str("lab.yaml", &text, &context()).unwrap();
    assert_eq!(topology.vms[0].vcpus, 1);
    assert_eq!(topology.vms[0].memory.bytes(), 64 << 20);
}

#[test]
fn a_list_entry_that_is_no_mapping_is_reported_once() {
    let found = all_problems("bridges: [5]\nvms:\n  - name: pc1\n    nics: [{ bridge: sw1 }]\n");
    let messages: Vec<&str> = found.iter().map(|(m, ..)| m.as_str()).collect();
    // Not "missing key `name`" for the entry, nor "unknown bridge `sw1`" for the NIC.
    assert_eq!(
        messages,
        ["invalid type: integer `5`, expected struct BridgeSpec"],
        "{found:?}"
    );
}

#[test]
fn a_file_of_many_wrong_types_says_where_reading_stopped() {
    let bridges: String = (0..100)
        .map(|i| format!("  - {{ name: sw{i}, stp: maybe }}\n"))
        .collect();
    let found = all_problems(&format!("bridges:\n{bridges}"));
    assert_eq!(found.len(), 65, "{:?}", found.last());
    assert!(
        found[..64]
            .iter()
            .all(|(m, ..)| m.contains("expected a boolean"))
    );
    assert_eq!(
        found[64].0,
        "kvmlab stopped reading after 64 values of the wrong type"
    );
}
