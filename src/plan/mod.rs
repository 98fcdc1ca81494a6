//! Plan: a pure function from (desired, observed, lab state) to the ordered list of
//! typed actions that makes the host match. `down` is the plan for [`Desired::empty`].
//!
//! Ordering rules, each checked by a unit test:
//! 1. deletions first (ports before bridges, newest first), so names can be reused;
//! 2. adoption of objects an interrupted run created but did not mark;
//! 3. bridges (create, STP, VLAN filtering, own VLANs, MTU, up), before anything is
//!    attached to them;
//! 4. ports (create with attach and up; or repair master, MTU, up), each port's
//!    VLAN membership right after its creation or attachment and before its MTU
//!    and up repairs;
//! 5. addresses last (removal of stale ones before new ones).
//!
//! VLAN actions come only on kernels with bridge VLAN filtering (see [`vlan`]);
//! elsewhere the VMM enforces VLANs at VM NICs and host-side VLAN ports are refused.
//!
//! VM actions (issue 6) slot in as more [`Action`] variants (start, restart with a
//! reason, stop) after rule 5, since a VM opens its TAPs by name; `down` stops VMs
//! before rule 1. [`Desired`] then carries the VMs and `LabState` their pids.

mod action;
mod desired;
mod owned;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_vlan;
pub mod vlan;

use std::collections::BTreeSet;

pub use action::{Action, ObjectKind};
pub use desired::{Desired, PortKind, PortVlans, WantBridge, WantPort};
pub use owned::{LabJournal, LabState, Object};
use serde::{Deserialize, Serialize};

use crate::observe::{Link, LinkKind, Observed, marker};

/// An ordered list of actions for one lab.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The lab.
    pub lab: String,
    /// What to do, in order.
    pub actions: Vec<Action>,
}

impl Plan {
    /// Whether the host already matches.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Why no plan can be made. Nothing has been changed.
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// Interfaces the lab wants exist but belong to someone else.
    #[error("interface{} {} already exist{} and {} not created by lab {lab}", plural(.names), .names.join(", "), if .names.len() == 1 { "s" } else { "" }, if .names.len() == 1 { "was" } else { "were" })]
    #[diagnostic(
        code(kvmlab::plan::foreign_interface),
        help(
            "kvmlab never touches interfaces it did not create: rename or remove them, or run the lab in its own namespace with --netns"
        )
    )]
    Foreign {
        /// The lab.
        lab: String,
        /// `name (kind, owner)` of each foreign interface.
        names: Vec<String>,
    },
    /// Host-side VLAN ports need bridge VLAN filtering, which the kernel lacks.
    #[error("this kernel has no bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING), which host-side VLAN ports need: {}", .ports.join("; "))]
    #[diagnostic(
        code(kvmlab::plan::no_vlan_filtering),
        help(
            "VLANs of VM NICs still work (the VMM enforces them); drop vlan/trunk from these TAPs and the address from bridges with VLANs, or use a kernel built with CONFIG_BRIDGE_VLAN_FILTERING=y"
        )
    )]
    NoVlanFiltering {
        /// The offending ports.
        ports: Vec<String>,
    },
}

fn plural(names: &[String]) -> &'static str {
    if names.len() == 1 { "" } else { "s" }
}

/// Kernel facts the plan depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFeatures {
    /// The kernel has bridge VLAN filtering.
    pub vlan_filtering: bool,
}

impl HostFeatures {
    /// Where a lab on this kernel has its VLANs enforced.
    pub fn vlan_mode(self) -> VlanMode {
        if self.vlan_filtering {
            VlanMode::Bridge
        } else {
            VlanMode::VmNics
        }
    }
}

/// How a lab's VLANs are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// By the bridges' VLAN filtering.
    Bridge,
    /// By the VMM at each VM NIC, because the kernel lacks bridge VLAN filtering.
    VmNics,
}

impl VlanMode {
    /// Whether the VMM must enforce each VM NIC's VLANs (tag on the way out, drop
    /// or untag on the way in). In [`VlanMode::Bridge`] it must not: the bridge
    /// port already does, so the NIC passes frames unchanged (transparent), or an
    /// access NIC's frames would be tagged twice. Whoever maps a NIC's `vlan`/`trunk`
    /// to a VMM policy asks this, with the mode recorded in the lab's `lab.json`.
    pub fn enforced_at_vm_nics(self) -> bool {
        self == VlanMode::VmNics
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            VlanMode::Bridge => "VLANs enforced by bridge VLAN filtering",
            VlanMode::VmNics => {
                "VLANs enforced at VM NICs (kernel lacks CONFIG_BRIDGE_VLAN_FILTERING)"
            }
        }
    }
}

fn object_kind(kind: &LinkKind) -> Option<ObjectKind> {
    match kind {
        LinkKind::Bridge => Some(ObjectKind::Bridge),
        LinkKind::Tap => Some(ObjectKind::Tap),
        LinkKind::Veth => Some(ObjectKind::Veth),
        _ => None,
    }
}

/// Makes the plan that takes the host from `observed` to `desired`.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    state: &LabState,
    features: HostFeatures,
) -> Result<Plan, PlanError> {
    let lab = desired.lab.as_str();
    let mark = marker(lab);
    // Ours: carries our marker, or an interrupted run began creating it (journal)
    // and it has the kind that run was creating.
    let pending = |link: &Link| {
        link.alias.is_none()
            && state.pending.contains_key(&link.name)
            && state.pending.get(&link.name) == object_kind(&link.kind).as_ref()
    };
    let ours = |link: &Link| link.alias.as_deref() == Some(mark.as_str()) || pending(link);

    let host_vlans = desired.host_vlan_ports();
    if !host_vlans.is_empty() && !features.vlan_filtering {
        return Err(PlanError::NoVlanFiltering { ports: host_vlans });
    }
    let filtering = features.vlan_filtering;

    // Wanted names held by someone else stop everything.
    let wanted: Vec<(&str, ObjectKind)> = desired
        .bridges
        .iter()
        .map(|b| (b.name.as_str(), ObjectKind::Bridge))
        .chain(desired.ports.iter().map(|p| {
            let kind = if p.is_tap() {
                ObjectKind::Tap
            } else {
                ObjectKind::Veth
            };
            (p.name.as_str(), kind)
        }))
        .collect();
    let foreign: Vec<String> = wanted
        .iter()
        .filter_map(|(name, _)| observed.get(name))
        .filter(|link| !ours(link))
        .map(|link| match &link.alias {
            Some(alias) => format!("{} ({}, alias `{alias}`)", link.name, link.kind),
            None => format!("{} ({})", link.name, link.kind),
        })
        .collect();
    if !foreign.is_empty() {
        return Err(PlanError::Foreign {
            lab: lab.to_string(),
            names: foreign,
        });
    }

    let mut actions = Vec::new();
    // The objects that will be (re)created: absent, or ours but unfit.
    let mut gone: BTreeSet<String> = BTreeSet::new();

    // 1. Deletions: ours and not wanted, or wanted as something else.
    let fits = |link: &Link| -> bool {
        let Some(&(_, kind)) = wanted.iter().find(|(n, _)| *n == link.name) else {
            return false;
        };
        if object_kind(&link.kind) != Some(kind) {
            return false;
        }
        // A veth end must still be paired with the end the file names.
        match desired
            .ports
            .iter()
            .find(|p| p.name == link.name)
            .map(|p| &p.kind)
        {
            Some(PortKind::Veth { peer, .. }) => link.peer.as_deref() == Some(peer.as_str()),
            _ => true,
        }
    };
    let mut doomed: Vec<&Link> = observed
        .links
        .values()
        .filter(|l| ours(l) && !fits(l))
        .collect();
    doomed.sort_by_key(|l| {
        let bridge = l.kind == LinkKind::Bridge;
        // Newest first; a veth pair is as old as either end; unknown ages last.
        let age = state
            .created_index(&l.name)
            .or_else(|| l.peer.as_deref().and_then(|p| state.created_index(p)));
        (
            bridge,
            age.is_none(),
            std::cmp::Reverse(age),
            l.name.clone(),
        )
    });
    for link in doomed {
        if gone.contains(&link.name) {
            continue; // went with its veth peer
        }
        gone.insert(link.name.clone());
        if let Some(peer) = &link.peer {
            gone.insert(peer.clone());
        }
        actions.push(Action::Delete {
            name: link.name.clone(),
            kind: object_kind(&link.kind).unwrap_or(ObjectKind::Tap),
        });
    }
    let present = |name: &str| observed.get(name).filter(|_| !gone.contains(name));

    // 2. Adoption of what an interrupted run created without marking.
    for link in observed.links.values() {
        if pending(link) && !gone.contains(&link.name) {
            actions.push(Action::Mark {
                name: link.name.clone(),
                kind: object_kind(&link.kind).unwrap_or(ObjectKind::Tap),
            });
        }
    }

    // 3. Bridges.
    for bridge in &desired.bridges {
        match present(&bridge.name) {
            None => {
                actions.push(Action::CreateBridge {
                    name: bridge.name.clone(),
                    stp: bridge.stp,
                    mtu: bridge.mtu,
                    vlan_filtering: filtering && vlan::wants_filtering(bridge),
                });
                if filtering {
                    actions.extend(vlan::bridge_action(bridge, None));
                }
            }
            Some(link) => {
                if link.stp != Some(bridge.stp) {
                    actions.push(Action::SetStp {
                        bridge: bridge.name.clone(),
                        from: link.stp.unwrap_or(false),
                        to: bridge.stp,
                    });
                }
                if filtering {
                    actions.extend(vlan::filtering_action(bridge, link));
                    actions.extend(vlan::bridge_action(bridge, Some(&link.vlans)));
                }
                push_mtu_and_up(&mut actions, link, bridge.mtu);
            }
        }
    }

    // 4. Ports.
    for port in &desired.ports {
        let want_bridge = desired.bridges.iter().find(|b| b.name == port.bridge);
        let vlan_step = |actions: &mut Vec<Action>, have: Option<&[_]>| {
            if filtering {
                actions.extend(vlan::port_action(port, want_bridge, have));
            }
        };
        match (present(&port.name), &port.kind) {
            (None, PortKind::Veth { peer, peer_bridge }) => {
                // One action creates both ends; the end listed first makes it.
                if !actions.iter().any(|a| a.creates(&port.name)) {
                    actions.push(Action::CreateVeth {
                        name: port.name.clone(),
                        bridge: port.bridge.clone(),
                        peer: peer.clone(),
                        peer_bridge: peer_bridge.clone(),
                        mtu: port.mtu,
                    });
                }
                vlan_step(&mut actions, None);
            }
            (None, _) => {
                actions.push(Action::CreateTap {
                    name: port.name.clone(),
                    bridge: port.bridge.clone(),
                    mtu: port.mtu,
                });
                vlan_step(&mut actions, None);
            }
            (Some(link), _) => {
                // A port of a bridge being deleted is left without a master.
                let master = link.master.clone().filter(|m| !gone.contains(m));
                // A port joining its bridge now starts from the kernel's default.
                let joins = master.as_deref() != Some(port.bridge.as_str());
                if joins {
                    actions.push(Action::Attach {
                        port: port.name.clone(),
                        bridge: port.bridge.clone(),
                        from: master,
                    });
                }
                vlan_step(&mut actions, (!joins).then_some(link.vlans.as_slice()));
                push_mtu_and_up(&mut actions, link, port.mtu);
            }
        }
    }

    // 5. Addresses.
    for bridge in &desired.bridges {
        let have: &[String] = present(&bridge.name).map_or(&[], |l| &l.addresses);
        for stale in have.iter().filter(|a| !bridge.addresses.contains(a)) {
            actions.push(Action::DelAddress {
                bridge: bridge.name.clone(),
                address: stale.clone(),
            });
        }
        for missing in bridge.addresses.iter().filter(|a| !have.contains(a)) {
            actions.push(Action::AddAddress {
                bridge: bridge.name.clone(),
                address: missing.clone(),
            });
        }
    }

    Ok(Plan {
        lab: lab.to_string(),
        actions,
    })
}

fn push_mtu_and_up(actions: &mut Vec<Action>, link: &Link, mtu: Option<u32>) {
    if let Some(mtu) = mtu.filter(|m| *m != link.mtu) {
        actions.push(Action::SetMtu {
            name: link.name.clone(),
            from: link.mtu,
            to: mtu,
        });
    }
    if !link.up {
        actions.push(Action::SetUp {
            name: link.name.clone(),
        });
    }
}
