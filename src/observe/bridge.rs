//! A bridge as a class on switching sees it: its ports with their STP states (from
//! the link dump's bridge-port data) and its forwarding database (an AF_BRIDGE
//! neighbour dump), both straight from the kernel over rtnetlink.

use std::collections::BTreeMap;
use std::io;

use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoPortData, LinkAttribute, LinkExtentMask, LinkInfo,
    LinkMessage,
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

struct LinkRow {
    name: String,
    master: Option<u32>,
    stp_state: Option<String>,
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
        let mut row = LinkRow {
            name: String::new(),
            master: None,
            stp_state: None,
        };
        for attribute in &link.attributes {
            match attribute {
                LinkAttribute::IfName(name) => row.name = name.clone(),
                LinkAttribute::Controller(index) => row.master = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for info in infos {
                        if let LinkInfo::PortData(InfoPortData::BridgePort(port)) = info {
                            for item in port {
                                if let InfoBridgePort::State(state) = item {
                                    row.stp_state = Some(state_name(state));
                                }
                            }
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
    let Some((&bridge_index, _)) = rows.iter().find(|(_, r)| r.name == bridge) else {
        return Ok(None);
    };
    let mut ports: Vec<PortView> = rows
        .values()
        .filter(|r| r.master == Some(bridge_index))
        .map(|r| PortView {
            name: r.name.clone(),
            stp_state: r.stp_state.clone().unwrap_or_else(|| "-".to_string()),
        })
        .collect();
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
        ports,
        fdb,
    }))
}
