//! What the host should look like for a topology: the lab's bridges and ports (TAPs
//! from `taps:`, one TAP per VM NIC, and both ends of every link), in file order.

use serde::{Deserialize, Serialize};

use crate::topology::Topology;
use crate::topology::derive::nic_tap_name;
use crate::topology::validate::link_end_names;

/// A bridge the lab wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WantBridge {
    /// Interface name.
    pub name: String,
    /// STP on or off.
    pub stp: bool,
    /// MTU, when the file sets one.
    pub mtu: Option<u32>,
    /// Host-side addresses in CIDR form.
    pub addresses: Vec<String>,
    /// VLANs declared on the bridge.
    pub vlans: Vec<u16>,
}

/// How a port takes part in VLANs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PortVlans {
    /// Untagged, no VLAN.
    #[default]
    None,
    /// Access port in one VLAN.
    Access(u16),
    /// Tagged trunk.
    Trunk(Vec<u16>),
}

/// What kind of port, and who it is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PortKind {
    /// A TAP listed under `taps:`: a host-side port.
    Tap,
    /// The TAP behind NIC `nic` of VM `vm`.
    VmNic {
        /// The VM.
        vm: String,
        /// The NIC's index in the VM's `nics`.
        nic: usize,
    },
    /// One end of a link's veth pair.
    Veth {
        /// The other end.
        peer: String,
        /// The bridge the other end belongs to.
        peer_bridge: String,
    },
}

/// A port (TAP or veth end) the lab wants on a bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WantPort {
    /// Interface name.
    pub name: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: PortKind,
    /// The bridge it is a port of.
    pub bridge: String,
    /// MTU: the bridge's (for a veth, the smaller of both bridges'), when set.
    pub mtu: Option<u32>,
    /// Its VLAN role as the file declares it.
    pub vlans: PortVlans,
}

impl WantPort {
    /// Whether this port is a TAP (from `taps:` or a VM NIC).
    pub fn is_tap(&self) -> bool {
        !matches!(self.kind, PortKind::Veth { .. })
    }
}

/// The host objects a lab wants, in the order the file lists them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Desired {
    /// The lab's name (its marker and state directory).
    pub lab: String,
    /// Bridges.
    pub bridges: Vec<WantBridge>,
    /// TAPs and veth ends.
    pub ports: Vec<WantPort>,
}

fn vlans_of(vlan: Option<u16>, trunk: &Option<Vec<u16>>) -> PortVlans {
    match (vlan, trunk) {
        (Some(v), _) => PortVlans::Access(v),
        (None, Some(t)) => PortVlans::Trunk(t.clone()),
        (None, None) => PortVlans::None,
    }
}

impl Desired {
    /// Nothing: what `down` converges to.
    pub fn empty(lab: &str) -> Desired {
        Desired {
            lab: lab.to_string(),
            ..Desired::default()
        }
    }

    /// The objects of a (validated) topology, for lab `lab`.
    pub fn from_topology(topology: &Topology, lab: &str) -> Desired {
        let mtu_of = |bridge: &str| {
            topology
                .bridges
                .iter()
                .find(|b| b.name == bridge)
                .and_then(|b| b.mtu)
        };
        let bridges = topology
            .bridges
            .iter()
            .map(|b| WantBridge {
                name: b.name.clone(),
                stp: b.stp,
                mtu: b.mtu,
                addresses: b.address.iter().cloned().collect(),
                vlans: b.vlans.clone(),
            })
            .collect();
        let mut ports = Vec::new();
        for tap in &topology.taps {
            ports.push(WantPort {
                name: tap.name.clone(),
                kind: PortKind::Tap,
                bridge: tap.bridge.clone(),
                mtu: mtu_of(&tap.bridge),
                vlans: vlans_of(tap.vlan, &tap.trunk),
            });
        }
        for vm in &topology.vms {
            for (index, nic) in vm.nics.iter().enumerate() {
                ports.push(WantPort {
                    name: nic_tap_name(&vm.name, index),
                    kind: PortKind::VmNic {
                        vm: vm.name.clone(),
                        nic: index,
                    },
                    bridge: nic.bridge.clone(),
                    mtu: mtu_of(&nic.bridge),
                    vlans: vlans_of(nic.vlan, &nic.trunk),
                });
            }
        }
        for (link, (a, b)) in topology.links.iter().zip(link_end_names(topology)) {
            let mtu = match (mtu_of(&link.a), mtu_of(&link.b)) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            };
            let vlans = vlans_of(link.vlan, &link.trunk);
            ports.push(WantPort {
                name: a.clone(),
                kind: PortKind::Veth {
                    peer: b.clone(),
                    peer_bridge: link.b.clone(),
                },
                bridge: link.a.clone(),
                mtu,
                vlans: vlans.clone(),
            });
            ports.push(WantPort {
                name: b,
                kind: PortKind::Veth {
                    peer: a,
                    peer_bridge: link.a.clone(),
                },
                bridge: link.b.clone(),
                mtu,
                vlans,
            });
        }
        Desired {
            lab: lab.to_string(),
            bridges,
            ports,
        }
    }

    /// Whether the lab wants nothing at all.
    pub fn is_empty(&self) -> bool {
        self.bridges.is_empty() && self.ports.is_empty()
    }

    /// Host-side ports that need the kernel's bridge VLAN filtering: TAPs from
    /// `taps:` with a VLAN or trunk, and bridge addresses on a bridge with VLANs.
    /// (VM NICs are tagged by the VMM; links are plain cables without filtering.)
    pub fn host_vlan_ports(&self) -> Vec<String> {
        let mut found = Vec::new();
        for port in &self.ports {
            if port.kind == PortKind::Tap && port.vlans != PortVlans::None {
                found.push(format!("tap {} (vlan/trunk on {})", port.name, port.bridge));
            }
        }
        for bridge in &self.bridges {
            if !bridge.vlans.is_empty() {
                for address in &bridge.addresses {
                    found.push(format!(
                        "address {address} of bridge {} (a bridge with VLANs)",
                        bridge.name
                    ));
                }
            }
        }
        found
    }

    /// Links that carry VLANs by the file but are plain cables here.
    pub fn vlan_links(&self) -> Vec<String> {
        self.ports
            .iter()
            .filter_map(|p| match &p.kind {
                PortKind::Veth { peer, .. } if p.vlans != PortVlans::None && p.name < *peer => {
                    Some(format!("{} <-> {}", p.name, peer))
                }
                _ => None,
            })
            .collect()
    }
}
