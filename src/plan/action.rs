//! The typed actions of a plan and their one-line diff rendering.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::observe::VlanEntry;

/// The kinds of host objects kvmlab creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    /// A Linux bridge.
    Bridge,
    /// A persistent TAP device.
    Tap,
    /// A veth pair (named by either end).
    Veth,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Bridge => "bridge",
            ObjectKind::Tap => "tap",
            ObjectKind::Veth => "veth",
        })
    }
}

/// One step of a plan. Creations include marking the new object, and for ports,
/// attaching them to their bridge and setting them up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create a bridge, up, with STP on or off and an MTU.
    CreateBridge {
        /// Name.
        name: String,
        /// STP state.
        stp: bool,
        /// MTU, if set by the file.
        mtu: Option<u32>,
        /// Created with VLAN filtering on (a bridge with `vlans:`, on a kernel
        /// that filters).
        #[serde(default)]
        vlan_filtering: bool,
    },
    /// Turn STP on or off.
    SetStp {
        /// The bridge.
        bridge: String,
        /// Now.
        from: bool,
        /// Wanted.
        to: bool,
    },
    /// Change an MTU.
    SetMtu {
        /// The interface.
        name: String,
        /// Now.
        from: u32,
        /// Wanted.
        to: u32,
    },
    /// Create a persistent TAP, attached to `bridge` and up.
    CreateTap {
        /// Name.
        name: String,
        /// Its bridge.
        bridge: String,
        /// MTU, if the bridge's is set.
        mtu: Option<u32>,
    },
    /// Create a veth pair: `name` on `bridge`, `peer` on `peer_bridge`, both up.
    CreateVeth {
        /// One end.
        name: String,
        /// Its bridge.
        bridge: String,
        /// The other end.
        peer: String,
        /// The other end's bridge.
        peer_bridge: String,
        /// MTU of both ends, if set.
        mtu: Option<u32>,
    },
    /// Make `port` a port of `bridge`.
    Attach {
        /// The port.
        port: String,
        /// Wanted bridge.
        bridge: String,
        /// Its master now.
        from: Option<String>,
    },
    /// Set an interface administratively up.
    SetUp {
        /// The interface.
        name: String,
    },
    /// Put the lab's marker on an object an interrupted run created.
    Mark {
        /// The interface.
        name: String,
        /// What it is.
        kind: ObjectKind,
    },
    /// Add a host address to a bridge.
    AddAddress {
        /// The bridge.
        bridge: String,
        /// CIDR.
        address: String,
    },
    /// Remove a host address from a bridge.
    DelAddress {
        /// The bridge.
        bridge: String,
        /// CIDR.
        address: String,
    },
    /// Delete an interface (for a veth, both ends go).
    Delete {
        /// The interface.
        name: String,
        /// What it is.
        kind: ObjectKind,
    },
    /// Turn a bridge's VLAN filtering on or off.
    SetVlanFiltering {
        /// The bridge.
        bridge: String,
        /// Wanted.
        on: bool,
    },
    /// Change the VLAN membership of a bridge port (TAP or veth end).
    SetPortVlans {
        /// The port.
        port: String,
        /// Entries to add, or whose flags (pvid, untagged) change.
        add: Vec<VlanEntry>,
        /// VLAN ids to leave.
        remove: Vec<u16>,
    },
    /// Change the bridge device's own ("self") VLAN membership, which decides in
    /// which VLAN the host's address on the bridge lives.
    SetBridgeVlans {
        /// The bridge.
        bridge: String,
        /// Entries to add, or whose flags change.
        add: Vec<VlanEntry>,
        /// VLAN ids to leave.
        remove: Vec<u16>,
    },
}

impl Action {
    /// Whether this action creates interface `name`.
    pub fn creates(&self, name: &str) -> bool {
        match self {
            Action::CreateBridge { name: n, .. } | Action::CreateTap { name: n, .. } => n == name,
            Action::CreateVeth { name: n, peer, .. } => n == name || peer == name,
            _ => false,
        }
    }

    /// The interface the action is about (for a veth, the end that names it).
    pub fn subject(&self) -> &str {
        match self {
            Action::CreateBridge { name, .. }
            | Action::SetMtu { name, .. }
            | Action::CreateTap { name, .. }
            | Action::CreateVeth { name, .. }
            | Action::SetUp { name }
            | Action::Mark { name, .. }
            | Action::Delete { name, .. } => name,
            Action::SetStp { bridge, .. }
            | Action::SetVlanFiltering { bridge, .. }
            | Action::SetBridgeVlans { bridge, .. }
            | Action::AddAddress { bridge, .. }
            | Action::DelAddress { bridge, .. } => bridge,
            Action::Attach { port, .. } | Action::SetPortVlans { port, .. } => port,
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// ` +10(pvid untagged) +20 -1`: what joins, then what leaves.
fn vlan_changes(f: &mut fmt::Formatter<'_>, add: &[VlanEntry], remove: &[u16]) -> fmt::Result {
    for entry in add {
        write!(f, " +{entry}")?;
    }
    for vid in remove {
        write!(f, " -{vid}")?;
    }
    Ok(())
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mtu = |m: &Option<u32>| m.map(|m| format!(", mtu {m}")).unwrap_or_default();
        match self {
            Action::CreateBridge {
                name,
                stp,
                mtu: m,
                vlan_filtering,
            } => {
                let filtering = if *vlan_filtering {
                    ", vlan filtering"
                } else {
                    ""
                };
                write!(
                    f,
                    "+ create bridge {name} (stp {}{}{filtering})",
                    on_off(*stp),
                    mtu(m)
                )
            }
            Action::SetStp { bridge, from, to } => {
                write!(f, "~ {bridge}: stp {} -> {}", on_off(*from), on_off(*to))
            }
            Action::SetMtu { name, from, to } => write!(f, "~ {name}: mtu {from} -> {to}"),
            Action::CreateTap {
                name,
                bridge,
                mtu: m,
            } => {
                write!(f, "+ create tap {name} on {bridge}")?;
                if let Some(m) = m {
                    write!(f, " (mtu {m})")?;
                }
                Ok(())
            }
            Action::CreateVeth {
                name,
                bridge,
                peer,
                peer_bridge,
                mtu: m,
            } => {
                write!(
                    f,
                    "+ create veth {name} on {bridge} <-> {peer} on {peer_bridge}"
                )?;
                if let Some(m) = m {
                    write!(f, " (mtu {m})")?;
                }
                Ok(())
            }
            Action::Attach { port, bridge, from } => write!(
                f,
                "~ {port}: master {} -> {bridge}",
                from.as_deref().unwrap_or("none")
            ),
            Action::SetUp { name } => write!(f, "~ {name}: down -> up"),
            Action::Mark { name, kind } => write!(
                f,
                "~ {name}: adopt {kind} left unmarked by an interrupted run"
            ),
            Action::AddAddress { bridge, address } => {
                write!(f, "+ add address {address} to {bridge}")
            }
            Action::DelAddress { bridge, address } => {
                write!(f, "- remove address {address} from {bridge}")
            }
            Action::Delete { name, kind } => write!(f, "- delete {kind} {name}"),
            Action::SetVlanFiltering { bridge, on } => write!(
                f,
                "~ {bridge}: vlan filtering {} -> {}",
                on_off(!*on),
                on_off(*on)
            ),
            Action::SetPortVlans { port, add, remove } => {
                write!(f, "~ {port}: vlans")?;
                vlan_changes(f, add, remove)
            }
            Action::SetBridgeVlans {
                bridge,
                add,
                remove,
            } => {
                write!(f, "~ {bridge} (self): vlans")?;
                vlan_changes(f, add, remove)
            }
        }
    }
}
