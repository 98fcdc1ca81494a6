//! Unit tests of planning in VLAN mode "bridge" (a kernel with bridge VLAN
//! filtering), no root and no such kernel needed: every VLAN action, its diff
//! rendering and JSON, and where it goes in the plan.

use super::*;
use crate::observe::{Link, LinkKind, Observed, VlanEntry};
use crate::plan::LabState;
use crate::topology::Topology;

const FILTERING: HostFeatures = HostFeatures {
    vlan_filtering: true,
};
const NO_FILTERING: HostFeatures = HostFeatures {
    vlan_filtering: false,
};

/// sw1 (VLANs 10, 20, with an address) and sw2 (VLAN 10), an access TAP, a trunk
/// NIC, a NIC without VLAN, and a trunk link carrying VLAN 10. Built from the file
/// format (serde defaults fill the rest), so new optional fields need no change.
fn topology() -> Topology {
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "name": "lab",
        "bridges": [
            {"name": "sw1", "stp": true, "vlans": [10, 20], "address": "10.0.10.254/24"},
            {"name": "sw2", "vlans": [10]},
        ],
        "taps": [{"name": "ext0", "bridge": "sw1", "vlan": 10}],
        "links": [{"a": "sw1", "b": "sw2", "trunk": [10]}],
        "vms": [
            {"name": "pc1", "nics": [{"bridge": "sw1", "trunk": [20, 10]}]},
            {"name": "pc2", "nics": [{"bridge": "sw2"}]},
        ],
    }))
    .expect("a valid topology")
}

fn link(name: &str, kind: LinkKind, master: Option<&str>, vlans: Vec<VlanEntry>) -> Link {
    Link {
        index: 0,
        name: name.into(),
        stp: (kind == LinkKind::Bridge).then_some(false),
        vlan_filtering: (kind == LinkKind::Bridge).then_some(true),
        vlan_support: (kind == LinkKind::Bridge).then_some(true),
        kind,
        alias: Some("kvmlab:lab".into()),
        master: master.map(Into::into),
        peer: None,
        mtu: 1500,
        up: true,
        oper_state: "up".into(),
        addresses: vec![],
        vlans,
    }
}

/// The host exactly as `topology()` wants it on a filtering kernel.
fn converged() -> Observed {
    // A trunk: the listed VLANs tagged, and VLAN 1 untagged (native).
    let tagged = |v: &[u16]| {
        let mut entries = VlanEntry::kernel_default();
        entries.extend(v.iter().map(|v| VlanEntry::tagged(*v)));
        entries
    };
    let mut sw1 = link("sw1", LinkKind::Bridge, None, vec![VlanEntry::access(10)]);
    sw1.stp = Some(true);
    sw1.addresses = vec!["10.0.10.254/24".into()];
    let sw2 = link("sw2", LinkKind::Bridge, None, VlanEntry::kernel_default());
    let ext0 = link(
        "ext0",
        LinkKind::Tap,
        Some("sw1"),
        vec![VlanEntry::access(10)],
    );
    let pc1 = link("pc1-eth0", LinkKind::Tap, Some("sw1"), tagged(&[10, 20]));
    let pc2 = link(
        "pc2-eth0",
        LinkKind::Tap,
        Some("sw2"),
        VlanEntry::kernel_default(),
    );
    let mut a = link("sw1-sw2", LinkKind::Veth, Some("sw1"), tagged(&[10]));
    a.peer = Some("sw2-sw1".into());
    let mut b = link("sw2-sw1", LinkKind::Veth, Some("sw2"), tagged(&[10]));
    b.peer = Some("sw1-sw2".into());
    Observed {
        links: [sw1, sw2, ext0, pc1, pc2, a, b]
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect(),
    }
}

fn plan_with(t: &Topology, o: &Observed, features: HostFeatures) -> Vec<String> {
    super::tests::plan_lines(t, o, &LabState::default(), features)
}

#[test]
fn empty_host_gets_filtering_bridges_and_each_port_its_vlans_after_creation() {
    let got = plan_with(&topology(), &Observed::default(), FILTERING);
    assert_eq!(
        got,
        [
            "+ create bridge sw1 (stp on, vlan filtering)",
            "~ sw1 (self): vlans +10(pvid untagged) -1",
            "+ create bridge sw2 (stp off, vlan filtering)",
            "+ create tap ext0 on sw1",
            "~ ext0: vlans +10(pvid untagged) -1",
            "+ create tap pc1-eth0 on sw1",
            "~ pc1-eth0: vlans +10 +20",
            "+ create tap pc2-eth0 on sw2",
            "+ create veth sw1-sw2 on sw1 <-> sw2-sw1 on sw2",
            "~ sw1-sw2: vlans +10",
            "~ sw2-sw1: vlans +10",
            "+ add address 10.0.10.254/24 to sw1",
        ]
    );
}

#[test]
fn converged_filtering_host_plans_nothing() {
    assert_eq!(
        plan_with(&topology(), &converged(), FILTERING),
        Vec::<String>::new()
    );
}

#[test]
fn without_filtering_no_vlan_actions_and_vm_nic_vlans_are_allowed() {
    // Host-side VLAN ports are refused there (tested in tests.rs); without them
    // the same lab plans no VLAN action at all.
    let mut t = topology();
    t.taps.clear();
    t.bridges[0].address = None;
    let got = plan_with(&t, &Observed::default(), NO_FILTERING);
    assert!(got.iter().all(|a| !a.contains("vlan")), "{got:#?}");
}

#[test]
fn filtering_flag_drift_is_repaired_both_ways() {
    let mut observed = converged();
    observed.links.get_mut("sw1").unwrap().vlan_filtering = Some(false);
    let mut t = topology();
    // sw2 loses its VLANs (and so do the ports on it): filtering goes off there.
    t.bridges[1].vlans.clear();
    t.links[0].trunk = None;
    let got = plan_with(&t, &observed, FILTERING);
    assert_eq!(
        got,
        [
            "~ sw1: vlan filtering off -> on",
            "~ sw2: vlan filtering on -> off",
            "~ sw1-sw2: vlans -10",
        ]
    );
}

#[test]
fn membership_drift_is_repaired_with_flags_and_stale_vlans() {
    let mut observed = converged();
    // ext0 lost its pvid and gained VLAN 20; pc1's trunk gained VLAN 30 and lost
    // its native VLAN 1.
    observed.links.get_mut("ext0").unwrap().vlans = vec![
        VlanEntry {
            vid: 10,
            pvid: false,
            untagged: true,
        },
        VlanEntry::tagged(20),
    ];
    observed.links.get_mut("pc1-eth0").unwrap().vlans = vec![
        VlanEntry::tagged(10),
        VlanEntry::tagged(20),
        VlanEntry::tagged(30),
    ];
    // The bridge's own membership went back to the default.
    observed.links.get_mut("sw1").unwrap().vlans = VlanEntry::kernel_default();
    let got = plan_with(&topology(), &observed, FILTERING);
    assert_eq!(
        got,
        [
            "~ sw1 (self): vlans +10(pvid untagged) -1",
            "~ ext0: vlans +10(pvid untagged) -20",
            "~ pc1-eth0: vlans +1(pvid untagged) -30",
        ]
    );
}

#[test]
fn port_vlans_come_after_attach_and_before_up() {
    let mut observed = converged();
    let ext0 = observed.links.get_mut("ext0").unwrap();
    ext0.master = None;
    ext0.up = false;
    // Membership from before is stale: joining the bridge resets it to the default.
    ext0.vlans = vec![VlanEntry::tagged(99)];
    let got = plan_with(&topology(), &observed, FILTERING);
    assert_eq!(
        got,
        [
            "~ ext0: master none -> sw1",
            "~ ext0: vlans +10(pvid untagged) -1",
            "~ ext0: down -> up",
        ]
    );
}

#[test]
fn recreated_bridge_resets_its_ports_and_its_own_vlans() {
    let mut observed = converged();
    observed.links.get_mut("sw2").unwrap().kind = LinkKind::Tap; // ours, wrong kind
    let got = plan_with(&topology(), &observed, FILTERING);
    assert_eq!(
        got,
        [
            "- delete tap sw2",
            "+ create bridge sw2 (stp off, vlan filtering)",
            "~ pc2-eth0: master none -> sw2",
            "~ sw2-sw1: master none -> sw2",
            "~ sw2-sw1: vlans +10",
        ]
    );
}

#[test]
fn a_bridge_address_lives_untagged_in_the_first_listed_vlan() {
    let mut t = topology();
    t.bridges[0].vlans = vec![20, 10];
    let mut observed = converged();
    observed.links.get_mut("sw1").unwrap().vlans = VlanEntry::kernel_default();
    let got = plan_with(&t, &observed, FILTERING);
    assert_eq!(got, ["~ sw1 (self): vlans +20(pvid untagged) -1"]);
    // Without an address the bridge keeps the kernel's default.
    t.bridges[0].address = None;
    observed.links.get_mut("sw1").unwrap().addresses.clear();
    assert_eq!(plan_with(&t, &observed, FILTERING), Vec::<String>::new());
}

#[test]
fn a_trunk_listing_vlan_1_carries_it_tagged_without_a_native_vlan() {
    let mut t = topology();
    t.bridges[0].vlans.push(1);
    t.vms[0].nics[0].trunk = Some(vec![1, 10]);
    let got = plan_with(&t, &converged(), FILTERING);
    assert_eq!(got, ["~ pc1-eth0: vlans +1 -20"]);
}

#[test]
fn vlan_actions_serialise_with_a_tag() {
    let action = Action::SetPortVlans {
        port: "tap0".into(),
        add: vec![VlanEntry::access(10)],
        remove: vec![1],
    };
    assert_eq!(action.to_string(), "~ tap0: vlans +10(pvid untagged) -1");
    let json = serde_json::to_value(&action).unwrap();
    assert_eq!(json["action"], "set_port_vlans");
    assert_eq!(json["add"][0]["vid"], 10);
    assert_eq!(json["add"][0]["pvid"], true);
    assert_eq!(json["remove"][0], 1);
    assert_eq!(serde_json::from_value::<Action>(json).unwrap(), action);
    for action in [
        Action::SetVlanFiltering {
            bridge: "sw1".into(),
            on: true,
        },
        Action::SetBridgeVlans {
            bridge: "sw1".into(),
            add: vec![],
            remove: vec![1],
        },
    ] {
        let json = serde_json::to_value(&action).unwrap();
        assert_eq!(serde_json::from_value::<Action>(json).unwrap(), action);
    }
    // A journal written before the field existed still reads.
    let old =
        serde_json::json!({"action": "create_bridge", "name": "sw1", "stp": false, "mtu": null});
    assert!(matches!(
        serde_json::from_value::<Action>(old).unwrap(),
        Action::CreateBridge {
            vlan_filtering: false,
            ..
        }
    ));
}

#[test]
fn ports_left_in_the_default_vlan_are_noted() {
    let desired = Desired::from_topology(&topology(), "lab");
    assert_eq!(
        vlan::notes(&desired),
        [
            "ports without vlan/trunk on bridges with VLANs stay in the default VLAN 1 (pvid untagged): pc2-eth0"
        ]
    );
}

#[test]
fn vm_nics_enforce_vlans_only_without_bridge_filtering() {
    use crate::plan::VlanMode;
    assert!(VlanMode::VmNics.enforced_at_vm_nics());
    assert!(!VlanMode::Bridge.enforced_at_vm_nics());
}
