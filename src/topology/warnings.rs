//! Warnings: what a valid file may well not mean. Unlike a problem, a warning
//! does not stop anything; `validate`, `plan` and `up` say it.

use super::model::Topology;

/// The warnings about `topology`, each naming the place in the file and the fix.
pub fn warnings(topology: &Topology) -> Vec<String> {
    let mut found = Vec::new();
    for (i, vm) in topology.vms.iter().enumerate() {
        // The guest's interfaces: a NIC's untagged address, and each VLAN's.
        let interfaces: usize = vm
            .nics
            .iter()
            .map(|nic| usize::from(nic.ip.is_some()) + nic.vlan_ips.len())
            .sum();
        if vm.forward && interfaces < 2 {
            found.push(format!(
                "vms[{i}].forward: {} forwards but has {} interface{}, so it has nothing to route between (give it a NIC on a second subnet, or a trunk with `vlan_ips`)",
                vm.name,
                if interfaces == 0 { "no" } else { "one" },
                if interfaces == 0 { "s" } else { "" },
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Topology {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_router_with_one_interface_is_warned_about() {
        let one = parse(
            "version: 1\nname: lab\nvms:\n  - name: r1\n    forward: true\n    nics: [{ bridge: sw1, ip: 10.0.0.1/24 }]\n",
        );
        let warnings = warnings(&one);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("vms[0].forward: r1 forwards but has one interface"),
            "{warnings:?}"
        );
        // A router on a stick has two interfaces on one NIC; a PC needs none.
        let stick = parse(
            "version: 1\nname: lab\nvms:\n  - name: r1\n    forward: true\n    nics: [{ bridge: sw1, trunk: [10, 20], vlan_ips: { 10: 10.0.10.1/24, 20: 10.0.20.1/24 } }]\n  - name: pc1\n    nics: [{ bridge: sw1, ip: 10.0.0.2/24 }]\n",
        );
        assert!(super::warnings(&stick).is_empty());
    }
}
