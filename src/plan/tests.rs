//! Unit tests of planning: every action and every ordering rule, no root needed.

use super::*;
use crate::observe::{Link, LinkKind, Observed};
use crate::plan::{LabState, Object};
use crate::topology::{BridgeSpec, LinkSpec, NicSpec, TapSpec, Topology, VmSpec};

const NO_VLANS: HostFeatures = HostFeatures {
    vlan_filtering: false,
};

fn bridge(name: &str, stp: bool) -> BridgeSpec {
    BridgeSpec {
        name: name.into(),
        stp,
        vlans: vec![],
        address: None,
        mtu: None,
    }
}

fn tap(name: &str, bridge: &str) -> TapSpec {
    TapSpec {
        name: name.into(),
        bridge: bridge.into(),
        vlan: None,
        trunk: None,
    }
}

fn topology() -> Topology {
    let mut sw1 = bridge("sw1", true);
    sw1.address = Some("10.0.0.254/24".into());
    Topology {
        version: 1,
        name: "lab".into(),
        netns: None,
        bridges: vec![sw1, bridge("sw2", false)],
        taps: vec![tap("ext0", "sw1")],
        links: vec![LinkSpec {
            a: "sw1".into(),
            b: "sw2".into(),
            vlan: None,
            trunk: None,
        }],
        vms: vec![],
    }
}

fn link(name: &str, kind: LinkKind) -> Link {
    Link {
        index: 0,
        name: name.into(),
        stp: (kind == LinkKind::Bridge).then_some(false),
        kind,
        alias: Some("kvmlab:lab".into()),
        master: None,
        peer: None,
        mtu: 1500,
        up: true,
        oper_state: "up".into(),
        vlan_filtering: None,
        vlan_support: None,
        addresses: vec![],
        vlans: vec![],
    }
}

/// The host exactly as `topology()` wants it.
fn converged() -> Observed {
    let mut sw1 = link("sw1", LinkKind::Bridge);
    sw1.stp = Some(true);
    sw1.addresses = vec!["10.0.0.254/24".into()];
    let sw2 = link("sw2", LinkKind::Bridge);
    let mut ext0 = link("ext0", LinkKind::Tap);
    ext0.master = Some("sw1".into());
    let mut a = link("sw1-sw2", LinkKind::Veth);
    a.master = Some("sw1".into());
    a.peer = Some("sw2-sw1".into());
    let mut b = link("sw2-sw1", LinkKind::Veth);
    b.master = Some("sw2".into());
    b.peer = Some("sw1-sw2".into());
    let lo = Link {
        alias: None,
        ..link("lo", LinkKind::Other(String::new()))
    };
    Observed {
        links: [sw1, sw2, ext0, a, b, lo]
            .into_iter()
            .map(|l| (l.name.clone(), l))
            .collect(),
    }
}

/// The plan for `t` on host `o` with state `s` and `features`, one line per action.
pub(super) fn plan_lines(
    t: &Topology,
    o: &Observed,
    s: &LabState,
    features: HostFeatures,
) -> Vec<String> {
    let desired = Desired::from_topology(t, "lab");
    plan(&desired, o, s, features)
        .unwrap()
        .actions
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn plan_of(t: &Topology, o: &Observed, s: &LabState) -> Vec<String> {
    plan_lines(t, o, s, NO_VLANS)
}

#[test]
fn empty_host_creates_everything_bridges_first_addresses_last() {
    let got = plan_of(&topology(), &Observed::default(), &LabState::default());
    assert_eq!(
        got,
        [
            "+ create bridge sw1 (stp on)",
            "+ create bridge sw2 (stp off)",
            "+ create tap ext0 on sw1",
            "+ create veth sw1-sw2 on sw1 <-> sw2-sw1 on sw2",
            "+ add address 10.0.0.254/24 to sw1",
        ]
    );
}

#[test]
fn converged_host_plans_nothing() {
    assert!(plan_of(&topology(), &converged(), &LabState::default()).is_empty());
}

#[test]
fn drift_is_repaired_stp_master_up_mtu_address() {
    let mut o = converged();
    o.links.get_mut("sw1").unwrap().stp = Some(false);
    o.links.get_mut("ext0").unwrap().master = None;
    o.links.get_mut("sw2").unwrap().up = false;
    o.links.get_mut("sw1").unwrap().addresses = vec!["10.9.9.9/8".into()];
    let mut t = topology();
    t.bridges[1].mtu = Some(9000);
    let got = plan_of(&t, &o, &LabState::default());
    assert_eq!(
        got,
        [
            "~ sw1: stp off -> on",
            "~ sw2: mtu 1500 -> 9000",
            "~ sw2: down -> up",
            "~ ext0: master none -> sw1",
            // The veth ends follow sw2's MTU.
            "~ sw1-sw2: mtu 1500 -> 9000",
            "~ sw2-sw1: mtu 1500 -> 9000",
            "- remove address 10.9.9.9/8 from sw1",
            "+ add address 10.0.0.254/24 to sw1",
        ]
    );
}

#[test]
fn missing_tap_is_recreated_and_moved_port_reattached() {
    let mut o = converged();
    o.links.remove("ext0");
    o.links.get_mut("sw1-sw2").unwrap().master = Some("sw2".into());
    let got = plan_of(&topology(), &o, &LabState::default());
    assert_eq!(
        got,
        ["+ create tap ext0 on sw1", "~ sw1-sw2: master sw2 -> sw1"]
    );
}

#[test]
fn removed_objects_are_deleted_first_ports_before_bridges() {
    let mut t = topology();
    t.bridges.remove(1);
    t.links.clear();
    t.taps.push(tap("ext1", "sw1"));
    let got = plan_of(&t, &converged(), &LabState::default());
    assert_eq!(
        got,
        [
            // One delete takes a veth pair.
            "- delete veth sw1-sw2",
            "- delete bridge sw2",
            "+ create tap ext1 on sw1",
        ]
    );
}

#[test]
fn deletions_follow_reverse_creation_order() {
    let state = LabState {
        created: ["sw1", "sw2", "sw2-sw1", "ext0"]
            .iter()
            .map(|n| Object {
                name: n.to_string(),
                kind: ObjectKind::Bridge,
                peer: None,
            })
            .collect(),
        pending: Default::default(),
    };
    let desired = Desired::empty("lab");
    let got: Vec<String> = plan(&desired, &converged(), &state, NO_VLANS)
        .unwrap()
        .actions
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "- delete tap ext0",
            // A pair is as old as its older end; either end names it.
            "- delete veth sw1-sw2",
            "- delete bridge sw2",
            "- delete bridge sw1",
        ]
    );
}

#[test]
fn down_never_touches_unmarked_or_other_labs() {
    let mut o = converged();
    o.links.get_mut("ext0").unwrap().alias = Some("kvmlab:other".into());
    o.links.get_mut("sw2").unwrap().alias = None;
    let desired = Desired::empty("lab");
    let got = plan(&desired, &o, &LabState::default(), NO_VLANS).unwrap();
    assert!(got.actions.iter().all(|a| a.subject() != "ext0"));
    assert!(got.actions.iter().all(|a| a.subject() != "sw2"));
    assert!(got.actions.iter().all(|a| a.subject() != "lo"));
}

#[test]
fn foreign_interface_with_a_wanted_name_is_an_error() {
    let mut o = converged();
    o.links.get_mut("ext0").unwrap().alias = None;
    let desired = Desired::from_topology(&topology(), "lab");
    let error = plan(&desired, &o, &LabState::default(), NO_VLANS).unwrap_err();
    assert!(matches!(&error, PlanError::Foreign { names, .. } if names[0].starts_with("ext0")));
    assert!(error.to_string().contains("ext0"));
}

#[test]
fn unmarked_object_begun_by_an_interrupted_run_is_adopted() {
    let mut o = converged();
    o.links.get_mut("ext0").unwrap().alias = None;
    o.links.get_mut("ext0").unwrap().master = None;
    let mut state = LabState::default();
    state.pending.insert("ext0".into(), ObjectKind::Tap);
    let got = plan_of(&topology(), &o, &state);
    assert_eq!(
        got,
        [
            "~ ext0: adopt tap left unmarked by an interrupted run",
            "~ ext0: master none -> sw1",
        ]
    );
    // Pending as a bridge, but it is a TAP: not ours.
    state.pending.insert("ext0".into(), ObjectKind::Bridge);
    let desired = Desired::from_topology(&topology(), "lab");
    assert!(plan(&desired, &o, &state, NO_VLANS).is_err());
}

#[test]
fn our_object_of_the_wrong_kind_is_replaced() {
    let mut o = converged();
    let mut ext0 = link("ext0", LinkKind::Bridge);
    ext0.stp = Some(false);
    o.links.insert("ext0".into(), ext0);
    let got = plan_of(&topology(), &o, &LabState::default());
    assert_eq!(got, ["- delete bridge ext0", "+ create tap ext0 on sw1"]);
}

#[test]
fn recreated_bridge_gets_its_kept_ports_back() {
    let mut o = converged();
    o.links.insert("sw2".into(), link("sw2", LinkKind::Tap));
    let got = plan_of(&topology(), &o, &LabState::default());
    assert_eq!(
        got,
        [
            "- delete tap sw2",
            "+ create bridge sw2 (stp off)",
            "~ sw2-sw1: master none -> sw2",
        ]
    );
}

#[test]
fn broken_veth_pair_is_recreated() {
    let mut o = converged();
    o.links.remove("sw2-sw1");
    o.links.get_mut("sw1-sw2").unwrap().peer = None;
    let got = plan_of(&topology(), &o, &LabState::default());
    assert_eq!(
        got,
        [
            "- delete veth sw1-sw2",
            "+ create veth sw1-sw2 on sw1 <-> sw2-sw1 on sw2",
        ]
    );
}

#[test]
fn vm_nics_get_taps_with_the_bridge_mtu() {
    let mut t = topology();
    t.bridges[1].mtu = Some(9000);
    t.vms.push(VmSpec {
        name: "pc1".into(),
        vcpus: 1,
        memory: crate::topology::ByteSize::mib(64),
        kernel: None,
        initrd: None,
        cmdline: None,
        ready: None,
        disks: vec![],
        nics: vec![NicSpec {
            bridge: "sw2".into(),
            vlan: Some(10),
            trunk: None,
            mac: None,
            ip: None,
            vlan_ips: Default::default(),
            gateway: None,
        }],
        ping: vec![],
        routes: vec![],
        forward: false,
    });
    let got = plan_of(&t, &Observed::default(), &LabState::default());
    assert!(got.contains(&"+ create tap pc1-eth0 on sw2 (mtu 9000)".to_string()));
    assert!(got.contains(&"+ create bridge sw2 (stp off, mtu 9000)".to_string()));
}

#[test]
fn host_side_vlan_ports_need_bridge_vlan_filtering() {
    let mut t = topology();
    t.taps[0].vlan = Some(10);
    t.bridges[0].vlans = vec![10];
    let desired = Desired::from_topology(&t, "lab");
    let error = plan(
        &desired,
        &Observed::default(),
        &LabState::default(),
        NO_VLANS,
    )
    .unwrap_err();
    let text = error.to_string();
    assert!(text.contains("CONFIG_BRIDGE_VLAN_FILTERING"), "{text}");
    assert!(text.contains("tap ext0") && text.contains("address 10.0.0.254/24"));
    // Links with VLANs are plain cables: allowed, and noted.
    let mut t = topology();
    t.links[0].trunk = Some(vec![10, 20]);
    let desired = Desired::from_topology(&t, "lab");
    assert!(
        plan(
            &desired,
            &Observed::default(),
            &LabState::default(),
            NO_VLANS
        )
        .is_ok()
    );
    assert_eq!(desired.vlan_links(), ["sw1-sw2 <-> sw2-sw1"]);
}

#[test]
fn actions_serialise_with_a_tag() {
    let action = Action::SetStp {
        bridge: "sw1".into(),
        from: false,
        to: true,
    };
    let json = serde_json::to_value(&action).unwrap();
    assert_eq!(json["action"], "set_stp");
    let back: Action = serde_json::from_value(json).unwrap();
    assert_eq!(back, action);
}
