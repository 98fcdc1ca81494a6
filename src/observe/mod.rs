//! Observe: what the host's network looks like now, read in one pass of netlink
//! dumps (links, bridge VLAN membership, then addresses) into plain data. Read-only.

pub mod bridge;
mod vlan;

use std::collections::BTreeMap;
use std::io;

use netlink_packet_core::Nla;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, LinkAttribute, LinkExtentMask, LinkFlags,
    LinkInfo, LinkMessage,
};
use serde::{Deserialize, Serialize};

use crate::netlink::Netlink;

pub use vlan::{VlanEntry, membership_request, parse_membership, probe_vlan_filtering};

/// Prefix of the interface alias kvmlab gives everything it creates.
pub const MARKER_PREFIX: &str = "kvmlab:";

/// The alias that marks an interface as created by lab `lab`.
pub fn marker(lab: &str) -> String {
    format!("{MARKER_PREFIX}{lab}")
}

/// What kind of interface a link is, as far as kvmlab cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    /// A Linux bridge.
    Bridge,
    /// A TAP device (a `tun` link in TAP mode).
    Tap,
    /// A TUN device (a `tun` link in TUN mode).
    Tun,
    /// One end of a veth pair.
    Veth,
    /// Anything else, with the kernel's kind name (empty for plain devices).
    Other(String),
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkKind::Bridge => f.write_str("bridge"),
            LinkKind::Tap => f.write_str("tap"),
            LinkKind::Tun => f.write_str("tun"),
            LinkKind::Veth => f.write_str("veth"),
            LinkKind::Other(kind) if kind.is_empty() => f.write_str("device"),
            LinkKind::Other(kind) => f.write_str(kind),
        }
    }
}

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Interface kind.
    pub kind: LinkKind,
    /// The interface alias (IFLA_IFALIAS), where kvmlab keeps its marker.
    pub alias: Option<String>,
    /// Name of the bridge (or other master) this interface is a port of.
    pub master: Option<String>,
    /// For a veth end: the name of its peer, when the peer is in this namespace.
    pub peer: Option<String>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// Operational state as the kernel names it (`up`, `down`, `unknown`, ...).
    pub oper_state: String,
    /// For a bridge: whether STP runs.
    pub stp: Option<bool>,
    /// For a bridge: whether VLAN filtering is on.
    pub vlan_filtering: Option<bool>,
    /// For a bridge: whether the kernel reports VLAN settings at all, which it does
    /// only when built with CONFIG_BRIDGE_VLAN_FILTERING.
    pub vlan_support: Option<bool>,
    /// Addresses in CIDR form, link-local IPv6 addresses left out.
    pub addresses: Vec<String>,
    /// VLAN membership, sorted by id: a bridge port's, or for a bridge its own
    /// ("self") entries. Empty where the kernel reports none (no VLAN filtering).
    #[serde(default)]
    pub vlans: Vec<VlanEntry>,
}

impl Link {
    /// The lab whose marker this interface carries, if any.
    pub fn owner(&self) -> Option<&str> {
        self.alias.as_deref()?.strip_prefix(MARKER_PREFIX)
    }
}

/// The network of one namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Every interface, by name.
    pub links: BTreeMap<String, Link>,
}

impl Observed {
    /// The interface called `name`.
    pub fn get(&self, name: &str) -> Option<&Link> {
        self.links.get(name)
    }

    /// Interfaces carrying lab `lab`'s marker.
    pub fn marked<'a>(&'a self, lab: &'a str) -> impl Iterator<Item = &'a Link> + 'a {
        self.links.values().filter(move |l| l.owner() == Some(lab))
    }

    /// Whether the kernel supports bridge VLAN filtering, judged from any bridge.
    pub fn vlan_support(&self) -> Option<bool> {
        self.links.values().find_map(|l| l.vlan_support)
    }
}

/// Reads every link and address of the connection's namespace.
pub fn observe(netlink: &mut Netlink) -> io::Result<Observed> {
    // Statistics are most of a link's bytes and of no use here.
    let mut request = LinkMessage::default();
    request
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let links = netlink.dump(RouteNetlinkMessage::GetLink(request))?;
    let mut by_index: BTreeMap<u32, Link> = BTreeMap::new();
    let mut masters: Vec<(u32, u32)> = Vec::new();
    let mut peers: Vec<(u32, u32)> = Vec::new();
    for message in links {
        if let RouteNetlinkMessage::NewLink(message) = message {
            let (link, master, peer) = parse_link(&message);
            if let Some(m) = master {
                masters.push((link.index, m));
            }
            if let Some(p) = peer {
                peers.push((link.index, p));
            }
            by_index.insert(link.index, link);
        }
    }
    let name_of = |index: u32, all: &BTreeMap<u32, Link>| all.get(&index).map(|l| l.name.clone());
    for (index, master) in masters {
        let name = name_of(master, &by_index);
        if let Some(link) = by_index.get_mut(&index) {
            link.master = name;
        }
    }
    for (index, peer) in peers {
        let name = name_of(peer, &by_index);
        if let Some(link) = by_index.get_mut(&index) {
            link.peer = name;
        }
    }
    // VLAN membership comes from a second link dump, in the AF_BRIDGE family; only
    // bridges and their ports have any, so a host without bridges skips it.
    if by_index.values().any(|l| l.kind == LinkKind::Bridge) {
        let answers = netlink.dump(RouteNetlinkMessage::GetLink(membership_request()))?;
        for message in answers {
            if let RouteNetlinkMessage::NewLink(message) = message {
                if let Some((index, entries)) = parse_membership(&message) {
                    if let Some(link) = by_index.get_mut(&index) {
                        link.vlans = entries;
                    }
                }
            }
        }
    }
    let addresses = netlink.dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))?;
    for message in addresses {
        if let RouteNetlinkMessage::NewAddress(message) = message {
            if let Some((index, cidr)) = parse_address(&message) {
                if let Some(link) = by_index.get_mut(&index) {
                    link.addresses.push(cidr);
                }
            }
        }
    }
    let links = by_index
        .into_values()
        .map(|mut l| {
            l.addresses.sort();
            (l.name.clone(), l)
        })
        .collect();
    Ok(Observed { links })
}

/// IFLA_TUN_TYPE: the tun driver's attribute holding IFF_TUN or IFF_TAP.
const IFLA_TUN_TYPE: u16 = 1;

fn parse_link(message: &LinkMessage) -> (Link, Option<u32>, Option<u32>) {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: LinkKind::Other(String::new()),
        alias: None,
        master: None,
        peer: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        oper_state: String::new(),
        stp: None,
        vlan_filtering: None,
        vlan_support: None,
        addresses: Vec::new(),
        vlans: Vec::new(),
    };
    let (mut master, mut peer, mut peer_elsewhere) = (None, None, false);
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::IfAlias(alias) if !alias.is_empty() => link.alias = Some(alias.clone()),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Controller(index) => master = Some(*index),
            LinkAttribute::Link(index) => peer = Some(*index),
            LinkAttribute::LinkNetNsId(_) => peer_elsewhere = true,
            LinkAttribute::OperState(state) => {
                link.oper_state = format!("{state:?}").to_lowercase()
            }
            LinkAttribute::LinkInfo(infos) => parse_info(infos, &mut link),
            _ => {}
        }
    }
    let peer = if link.kind == LinkKind::Veth && !peer_elsewhere {
        peer
    } else {
        None
    };
    (link, master, peer)
}

fn parse_info(infos: &[LinkInfo], link: &mut Link) {
    for info in infos {
        match info {
            LinkInfo::Kind(kind) => {
                link.kind = match kind {
                    InfoKind::Bridge => LinkKind::Bridge,
                    // A TAP unless the tun driver's data says TUN (below).
                    InfoKind::Tun => LinkKind::Tap,
                    InfoKind::Veth => LinkKind::Veth,
                    other => LinkKind::Other(other.to_string()),
                }
            }
            LinkInfo::Data(InfoData::Bridge(options)) => {
                link.vlan_support = Some(false);
                for option in options {
                    match option {
                        InfoBridge::StpState(state) => {
                            link.stp = Some(*state != BridgeStpState::Disabled)
                        }
                        InfoBridge::VlanFiltering(on) => link.vlan_filtering = Some(*on),
                        InfoBridge::VlanDefaultPvid(_) => link.vlan_support = Some(true),
                        _ => {}
                    }
                }
            }
            LinkInfo::Data(InfoData::Tun(options)) => {
                for option in options {
                    let netlink_packet_route::link::InfoTun::Other(nla) = option else {
                        continue;
                    };
                    let mut value = vec![0u8; nla.value_len()];
                    nla.emit_value(&mut value);
                    if nla.kind() == IFLA_TUN_TYPE && value.first() == Some(&(libc::IFF_TUN as u8))
                    {
                        link.kind = LinkKind::Tun;
                    }
                }
            }
            _ => {}
        }
    }
}

fn parse_address(message: &AddressMessage) -> Option<(u32, String)> {
    // Link-local addresses come and go with the link; they are never kvmlab's.
    if message.header.scope == AddressScope::Link {
        return None;
    }
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            // IFA_LOCAL is the interface's own address on point-to-point links.
            AddressAttribute::Local(ip) => address = Some(*ip),
            AddressAttribute::Address(ip) if address.is_none() => address = Some(*ip),
            _ => {}
        }
    }
    let address = address?;
    Some((
        message.header.index,
        format!("{address}/{}", message.header.prefix_len),
    ))
}
