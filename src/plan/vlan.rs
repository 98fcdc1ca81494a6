//! VLANs on the bridges themselves (VLAN mode "bridge", for kernels with
//! CONFIG_BRIDGE_VLAN_FILTERING): which bridges filter, which VLANs each port and
//! each bridge device ("self") should be a member of, and the actions that get
//! them there from what was observed.
//!
//! Membership rules, for a bridge that declares `vlans:` (a bridge without them
//! does not filter and its ports' membership is left alone):
//! - an access port (`vlan: N`) is in VLAN N only, as pvid and egress untagged;
//!   the kernel's default VLAN 1 membership is removed;
//! - a trunk port (`trunk: [..]`) carries the listed VLANs tagged, and keeps the
//!   bridge's default VLAN 1 as its untagged (native) VLAN, so untagged frames pass
//!   as they do through the VMM's trunk policy at VM NICs (VLAN mode "vm-nics"),
//!   and a lab behaves the same in both modes; a trunk that lists VLAN 1 carries it
//!   tagged and has no untagged VLAN;
//! - a port with neither keeps the bridge's default: VLAN 1, pvid untagged (what
//!   the kernel gives every new port with the default `default_pvid 1`);
//! - the bridge device itself: with an `address`, that address lives untagged in
//!   the first VLAN the bridge lists (self = that VLAN, pvid untagged); without one
//!   it keeps the kernel default (VLAN 1, pvid untagged). The file has no field to
//!   pick another VLAN for the address; the first listed is the documented choice.

use super::{Action, Desired, PortVlans, WantBridge, WantPort};
use crate::observe::{Link, VlanEntry};

/// Whether `bridge` filters VLANs: it does when it declares any.
pub fn wants_filtering(bridge: &WantBridge) -> bool {
    !bridge.vlans.is_empty()
}

/// The membership `port` should have on `bridge` (its wanted bridge), sorted by
/// VLAN id; `None` when the bridge does not filter, so membership is not managed.
pub fn port_membership(port: &WantPort, bridge: Option<&WantBridge>) -> Option<Vec<VlanEntry>> {
    bridge.filter(|b| wants_filtering(b))?;
    Some(match &port.vlans {
        PortVlans::Access(vid) => vec![VlanEntry::access(*vid)],
        PortVlans::Trunk(vids) => {
            let mut entries: Vec<VlanEntry> = vids.iter().map(|v| VlanEntry::tagged(*v)).collect();
            if !vids.contains(&1) {
                entries.extend(VlanEntry::kernel_default());
            }
            entries.sort();
            entries.dedup();
            entries
        }
        PortVlans::None => VlanEntry::kernel_default(),
    })
}

/// The bridge device's own membership (see the module documentation), or `None`
/// when the bridge does not filter.
pub fn bridge_membership(bridge: &WantBridge) -> Option<Vec<VlanEntry>> {
    let first = *bridge.vlans.first()?;
    Some(if bridge.addresses.is_empty() {
        VlanEntry::kernel_default()
    } else {
        vec![VlanEntry::access(first)]
    })
}

/// What to add (missing entries, or entries whose flags differ) and which VLAN ids
/// to remove, to turn `have` into `want`.
pub fn diff(want: &[VlanEntry], have: &[VlanEntry]) -> (Vec<VlanEntry>, Vec<u16>) {
    let add = want.iter().filter(|e| !have.contains(e)).copied().collect();
    let remove = have
        .iter()
        .filter(|h| !want.iter().any(|w| w.vid == h.vid))
        .map(|h| h.vid)
        .collect();
    (add, remove)
}

/// The filtering flag of an existing bridge, when it differs from what is wanted.
/// A kernel that reports no flag (no VLAN support) is left alone.
pub(super) fn filtering_action(bridge: &WantBridge, link: &Link) -> Option<Action> {
    let on = wants_filtering(bridge);
    let now = link.vlan_filtering?;
    (now != on).then(|| Action::SetVlanFiltering {
        bridge: bridge.name.clone(),
        on,
    })
}

/// The port's membership change. `have` is `None` for a port that joins its bridge
/// in this plan (created or re-attached): it starts with the kernel default.
pub(super) fn port_action(
    port: &WantPort,
    bridge: Option<&WantBridge>,
    have: Option<&[VlanEntry]>,
) -> Option<Action> {
    let want = port_membership(port, bridge)?;
    let default = VlanEntry::kernel_default();
    let (add, remove) = diff(&want, have.unwrap_or(&default));
    (!add.is_empty() || !remove.is_empty()).then(|| Action::SetPortVlans {
        port: port.name.clone(),
        add,
        remove,
    })
}

/// The bridge device's membership change; `have` is `None` for a bridge created
/// in this plan.
pub(super) fn bridge_action(bridge: &WantBridge, have: Option<&[VlanEntry]>) -> Option<Action> {
    let want = bridge_membership(bridge)?;
    let default = VlanEntry::kernel_default();
    let (add, remove) = diff(&want, have.unwrap_or(&default));
    (!add.is_empty() || !remove.is_empty()).then(|| Action::SetBridgeVlans {
        bridge: bridge.name.clone(),
        add,
        remove,
    })
}

/// Things worth saying about a lab in VLAN mode "bridge": ports on filtering
/// bridges that declare no VLAN stay in the bridge's default VLAN 1.
pub fn notes(desired: &Desired) -> Vec<String> {
    let default: Vec<&str> = desired
        .ports
        .iter()
        .filter(|p| p.vlans == PortVlans::None)
        .filter(|p| {
            desired
                .bridges
                .iter()
                .any(|b| b.name == p.bridge && wants_filtering(b))
        })
        .map(|p| p.name.as_str())
        .collect();
    if default.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "ports without vlan/trunk on bridges with VLANs stay in the default VLAN 1 (pvid untagged): {}",
        default.join(", ")
    )]
}
