//! A bridge as a class on switching sees it: the spanning tree as this bridge sees
//! it (root bridge, its own id, root port and cost), its ports with their STP
//! states, roles and path costs (the link dump's bridge and bridge-port data, as
//! `bridge -d link` and `brctl showstp` show them) and its forwarding database (an
//! AF_BRIDGE neighbour dump), all straight from the kernel over rtnetlink.

use std::collections::BTreeMap;
use std::io;

use netlink_packet_route::link::{
    BridgeId, BridgePortState, InfoBridge, InfoBridgePort, InfoData, InfoPortData, LinkAttribute,
    LinkExtentMask, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use serde::Serialize;

use crate::netlink::Netlink;

/// One port of a bridge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortView {
    /// Interface name.
    pub name: String,
    /// STP state: `forwarding`, `blocking`, `listening`, `learning`, `disabled`.
    pub stp_state: String,
    /// STP role: `root` (towards the root bridge), `designated` (this bridge
    /// forwards for the segment), `alternate` (another bridge does: kept blocked
    /// to break a loop) or `disabled`; `-` when the kernel did not say.
    pub role: String,
    /// STP path cost of the port.
    pub path_cost: Option<u32>,
}

/// The spanning tree as one bridge sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StpView {
    /// Whether the bridge runs STP.
    pub enabled: bool,
    /// The root bridge's id (`8000.02aabbccddee`: priority, then MAC).
    pub root_id: String,
    /// This bridge's id.
    pub bridge_id: String,
    /// Whether this bridge is the root.
    pub is_root: bool,
    /// The port towards the root (none on the root itself).
    pub root_port: Option<String>,
    /// The cost of the path to the root.
    pub root_path_cost: u32,
}

/// One entry of the forwarding database.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FdbEntry {
    /// The MAC address.
    pub mac: String,
    /// The port it was seen on (the bridge itself for its own addresses).
    pub port: String,
    /// The VLAN, when the entry is per VLAN.
    pub vlan: Option<u16>,
    /// `learned`, `local` (the bridge's or a port's own address) or `static`.
    pub kind: String,
}

/// What `kvmlab inspect` shows of one bridge.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeView {
    /// The bridge.
    pub bridge: String,
    /// The spanning tree as the bridge sees it (when the kernel says).
    pub stp: Option<StpView>,
    /// Its ports, by name.
    pub ports: Vec<PortView>,
    /// Its forwarding database, learned entries first, by port then MAC.
    pub fdb: Vec<FdbEntry>,
}

fn state_name(state: &BridgePortState) -> String {
    match state {
        BridgePortState::Disabled => "disabled".to_string(),
        BridgePortState::Listening => "listening".to_string(),
        BridgePortState::Learning => "learning".to_string(),
        BridgePortState::Forwarding => "forwarding".to_string(),
        BridgePortState::Blocking => "blocking".to_string(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A bridge id as `brctl` writes it: priority in hex, a dot, the MAC's digits.
fn bridge_id_text(id: &BridgeId) -> String {
    let mac: String = id.address.iter().map(|b| format!("{b:02x}")).collect();
    format!("{:04x}.{mac}", id.priority)
}

#[derive(Default)]
struct LinkRow {
    name: String,
    master: Option<u32>,
    stp_state: Option<String>,
    // A port's STP data.
    cost: Option<u32>,
    port_no: Option<u16>,
    port_id: Option<u16>,
    designated_bridge: Option<BridgeId>,
    designated_port: Option<u16>,
    // A bridge's STP data.
    stp_enabled: bool,
    root_id: Option<BridgeId>,
    bridge_id: Option<BridgeId>,
    root_port: Option<u16>,
    root_path_cost: Option<u32>,
}

impl LinkRow {
    fn port(&mut self, item: &InfoBridgePort) {
        match item {
            InfoBridgePort::State(state) => self.stp_state = Some(state_name(state)),
            InfoBridgePort::Cost(cost) => self.cost = Some(*cost),
            InfoBridgePort::PortNumber(n) => self.port_no = Some(*n),
            InfoBridgePort::PortId(id) => self.port_id = Some(*id),
            InfoBridgePort::BridgeId(id) => self.designated_bridge = Some(id.clone()),
            InfoBridgePort::DesignatedPort(id) => self.designated_port = Some(*id),
            _ => {}
        }
    }

    fn bridge(&mut self, item: &InfoBridge) {
        match item {
            // 0 is "no STP"; 1 (kernel) and 2 (user-space daemon) both run it.
            InfoBridge::StpState(state) => self.stp_enabled = u32::from(*state) != 0,
            InfoBridge::RootId(id) => self.root_id = Some(id.clone()),
            InfoBridge::BridgeId(id) => self.bridge_id = Some(id.clone()),
            InfoBridge::RootPort(port) => self.root_port = Some(*port),
            InfoBridge::RootPathCost(cost) => self.root_path_cost = Some(*cost),
            _ => {}
        }
    }

    /// The port's STP role on `bridge`, derived as 802.1D does: the root port
    /// leads to the root; a port for whose segment this bridge is the designated
    /// bridge forwards for it; any other port is an alternate, kept blocked.
    fn role(&self, bridge: &LinkRow) -> String {
        if self.stp_state.as_deref() == Some("disabled") {
            return "disabled".to_string();
        }
        let (Some(port_no), Some(root_port)) = (self.port_no, bridge.root_port) else {
            return "-".to_string();
        };
        if root_port != 0 && port_no == root_port {
            return "root".to_string();
        }
        match (&self.designated_bridge, &bridge.bridge_id) {
            (Some(designated), Some(own))
                if designated == own && self.designated_port == self.port_id =>
            {
                "designated".to_string()
            }
            (Some(_), Some(_)) => "alternate".to_string(),
            _ => "-".to_string(),
        }
    }
}

fn link_rows(netlink: &mut Netlink) -> io::Result<BTreeMap<u32, LinkRow>> {
    let mut request = LinkMessage::default();
    request
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let mut rows = BTreeMap::new();
    for message in netlink.dump(RouteNetlinkMessage::GetLink(request))? {
        let RouteNetlinkMessage::NewLink(link) = message else {
            continue;
        };
        let mut row = LinkRow::default();
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(name) => row.name = name.clone(),
                LinkAttribute::Controller(index) => row.master = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        match info {
                            LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                                port.iter().for_each(|item| row.port(item));
                            }
                            LinkInfo::Data(InfoData::Bridge(data)) => {
                                data.iter().for_each(|item| row.bridge(item));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        rows.insert(link.header.index, row);
    }
    Ok(rows)
}

fn mac_text(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Reads bridge `bridge` of the connection's namespace; `None` if there is none.
pub fn inspect_bridge(netlink: &mut Netlink, bridge: &str) -> io::Result<Option<BridgeView>> {
    let rows = link_rows(netlink)?;
    let Some((&bridge_index, bridge_row)) = rows.iter().find(|(_, r)| r.name == bridge) else {
        return Ok(None);
    };
    let mut ports: Vec<PortView> = rows
        .values()
        .filter(|r| r.master == Some(bridge_index))
        .map(|r| PortView {
            name: r.name.clone(),
            stp_state: r.stp_state.clone().unwrap_or_else(|| "-".to_string()),
            role: r.role(bridge_row),
            path_cost: r.cost,
        })
        .collect();
    let root_port = bridge_row.root_port.filter(|p| *p != 0).map(|p| {
        rows.values()
            .find(|r| r.master == Some(bridge_index) && r.port_no == Some(p))
            .map_or_else(|| format!("port {p}"), |r| r.name.clone())
    });
    let stp = match (&bridge_row.root_id, &bridge_row.bridge_id) {
        (Some(root), Some(own)) => Some(StpView {
            enabled: bridge_row.stp_enabled,
            root_id: bridge_id_text(root),
            bridge_id: bridge_id_text(own),
            is_root: root == own,
            root_port,
            root_path_cost: bridge_row.root_path_cost.unwrap_or(0),
        }),
        _ => None,
    };
    ports.sort_by(|a, b| a.name.cmp(&b.name));

    let mut request = NeighbourMessage::default();
    request.header.family = AddressFamily::Bridge;
    let mut fdb = Vec::new();
    for message in netlink.dump(RouteNetlinkMessage::GetNeighbour(request))? {
        let RouteNetlinkMessage::NewNeighbour(entry) = message else {
            continue;
        };
        let index = entry.header.ifindex;
        let on_bridge =
            index == bridge_index || rows.get(&index).and_then(|r| r.master) == Some(bridge_index);
        // Entries flagged "self" belong to the port device's own table (a TAP's
        // multicast list), not to the bridge's forwarding database.
        if !on_bridge || entry.header.flags.contains(NeighbourFlags::Own) {
            continue;
        }
        let mut mac = None;
        let mut vlan = None;
        for attribute in &entry.attributes {
            match attribute {
                NeighbourAttribute::LinkLayerAddress(bytes) => mac = Some(mac_text(bytes)),
                NeighbourAttribute::Vlan(id) => vlan = Some(*id),
                _ => {}
            }
        }
        let Some(mac) = mac else { continue };
        let kind = match entry.header.state {
            NeighbourState::Permanent => "local",
            NeighbourState::Noarp => "static",
            _ => "learned",
        };
        fdb.push(FdbEntry {
            mac,
            port: rows
                .get(&index)
                .map_or(index.to_string(), |r| r.name.clone()),
            vlan,
            kind: kind.to_string(),
        });
    }
    fdb.sort_by(|a, b| {
        (a.kind != "learned", &a.port, &a.mac).cmp(&(b.kind != "learned", &b.port, &b.mac))
    });
    Ok(Some(BridgeView {
        bridge: bridge.to_string(),
        stp,
        ports,
        fdb,
    }))
}
