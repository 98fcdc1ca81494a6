//! One action as kernel requests: the rtnetlink messages (and TAP ioctls) it takes.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    BridgeStpState, InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo,
    LinkMessage,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::tap::create_persistent_tap;
use super::vlan::{self, VlanTarget};
use crate::netlink::Netlink;
use crate::observe::VlanEntry;
use crate::plan::Action;

/// Runs actions against one namespace, remembering interface indexes it looked up.
pub struct Executor<'a> {
    netlink: &'a mut Netlink,
    marker: String,
    indexes: HashMap<String, u32>,
    /// A fail point armed inside this step (its number): the process ends after the
    /// step's first kernel request.
    #[cfg(feature = "fault-injection")]
    pub(super) die_midway: Option<usize>,
}

fn named(name: &str) -> LinkMessage {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_string()));
    message
}

fn set_up(message: &mut LinkMessage) {
    message.header.flags |= LinkFlags::Up;
    message.header.change_mask |= LinkFlags::Up;
}

fn stp_state(on: bool) -> BridgeStpState {
    if on {
        BridgeStpState::KernelStp
    } else {
        BridgeStpState::Disabled
    }
}

fn address_message(bridge_index: u32, cidr: &str) -> io::Result<AddressMessage> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, format!("bad address {cidr}"));
    let (ip, prefix) = cidr.split_once('/').ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
    let mut message = AddressMessage::default();
    message.header.family = if ip.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    message.header.prefix_len = prefix;
    message.header.index = bridge_index;
    message.attributes.push(AddressAttribute::Local(ip));
    message.attributes.push(AddressAttribute::Address(ip));
    Ok(message)
}

/// Turns the host's own IPv6 off on an interface the lab just made (its bridges,
/// TAPs and cables). They are switch ports and a switch: without this, the host
/// greets every new one with IPv6 router solicitations and MLD reports, which reach
/// every guest on the bridge (waking idle guests and cluttering students'
/// captures), while the lab's host-side addresses are IPv4 (`address:`). Bridging
/// itself is unaffected: guests still speak IPv6 to each other across the bridge.
/// Best effort: a kernel without IPv6 has no such setting.
fn host_ipv6_off(name: &str) {
    // The thread is in the lab's namespace, and /proc/sys/net shows the opener's.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), b"1");
}

impl<'a> Executor<'a> {
    /// An executor marking what it creates for lab `lab`.
    pub fn new(netlink: &'a mut Netlink, lab: &str) -> Executor<'a> {
        Executor {
            netlink,
            marker: crate::observe::marker(lab),
            indexes: HashMap::new(),
            #[cfg(feature = "fault-injection")]
            die_midway: None,
        }
    }

    /// Between the kernel requests of a multi-request action: where a test's fail
    /// point may end the process. Nothing at all in a build without fail points.
    #[inline(always)]
    fn midway(&self) {
        #[cfg(feature = "fault-injection")]
        if let Some(step) = self.die_midway {
            super::faults::die_at("apply-mid-step", step);
        }
    }

    /// The connection, for its write count.
    pub fn netlink(&self) -> &Netlink {
        self.netlink
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        if let Some(index) = self.indexes.get(name) {
            return Ok(*index);
        }
        let answer = self
            .netlink
            .query(RouteNetlinkMessage::GetLink(named(name)))?;
        let index = answer
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("no interface {name}")))?;
        self.indexes.insert(name.to_string(), index);
        Ok(index)
    }

    fn new_link(&mut self, message: LinkMessage, flags: u16) -> io::Result<()> {
        self.netlink
            .write(RouteNetlinkMessage::NewLink(message), flags)
    }

    fn set_link(&mut self, message: LinkMessage) -> io::Result<()> {
        self.netlink.write(RouteNetlinkMessage::SetLink(message), 0)
    }

    /// Marks `name`, and optionally attaches it to `bridge`, sets its MTU and up:
    /// one RTM_SETLINK.
    fn finish(&mut self, name: &str, bridge: Option<&str>, mtu: Option<u32>) -> io::Result<()> {
        let mut message = named(name);
        message
            .attributes
            .push(LinkAttribute::IfAlias(self.marker.clone()));
        if let Some(mtu) = mtu {
            message.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(bridge) = bridge {
            let index = self.index(bridge)?;
            message.attributes.push(LinkAttribute::Controller(index));
            set_up(&mut message);
        }
        self.set_link(message)
    }

    /// Adds (or re-flags) then removes VLAN memberships of `name`: one RTM_SETLINK
    /// and one RTM_DELLINK in family AF_BRIDGE. Adding first keeps an access port
    /// from being left without a pvid in between.
    fn set_vlans(
        &mut self,
        name: &str,
        target: VlanTarget,
        add: &[VlanEntry],
        remove: &[u16],
    ) -> io::Result<()> {
        let index = self.index(name)?;
        if !add.is_empty() {
            let message = vlan::add_message(index, target, add);
            self.netlink
                .write(RouteNetlinkMessage::SetLink(message), 0)?;
            self.midway();
        }
        if !remove.is_empty() {
            let message = vlan::remove_message(index, target, remove);
            self.netlink
                .write(RouteNetlinkMessage::DelLink(message), 0)?;
        }
        Ok(())
    }

    /// Test fail point: creates an unmarked bridge called `name` (when free), an
    /// interface kvmlab does not own, in its way.
    #[cfg(feature = "fault-injection")]
    pub(super) fn place_obstacle(&mut self, name: &str) {
        let mut message = named(name);
        message
            .attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        let _ = self.new_link(message, NLM_F_CREATE | NLM_F_EXCL);
    }

    /// Carries out `action`.
    pub fn run(&mut self, action: &Action) -> io::Result<()> {
        match action {
            Action::CreateBridge {
                name,
                stp,
                mtu,
                vlan_filtering,
            } => {
                let mut message = named(name);
                set_up(&mut message);
                let mut options = vec![InfoBridge::StpState(stp_state(*stp))];
                if *vlan_filtering {
                    options.push(InfoBridge::VlanFiltering(true));
                }
                message.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Bridge),
                    LinkInfo::Data(InfoData::Bridge(options)),
                ]));
                self.new_link(message, NLM_F_CREATE | NLM_F_EXCL)?;
                self.midway();
                host_ipv6_off(name);
                // The MTU goes with the marker: set after creation, the bridge keeps
                // it as set by the user rather than follow its ports'.
                self.finish(name, None, *mtu)
            }
            Action::SetStp { bridge, to, .. } => {
                let mut message = named(bridge);
                message.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Bridge),
                    LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::StpState(stp_state(*to))])),
                ]));
                self.new_link(message, 0)
            }
            Action::SetMtu { name, to, .. } => {
                let mut message = named(name);
                message.attributes.push(LinkAttribute::Mtu(*to));
                self.set_link(message)
            }
            Action::CreateTap { name, bridge, mtu } => {
                create_persistent_tap(name)?;
                self.netlink.count_write();
                self.midway();
                host_ipv6_off(name);
                self.finish(name, Some(bridge), *mtu)
            }
            Action::CreateVeth {
                name,
                bridge,
                peer,
                peer_bridge,
                mtu,
            } => {
                let mut peer_message = named(peer);
                let mut message = named(name);
                if let Some(mtu) = mtu {
                    peer_message.attributes.push(LinkAttribute::Mtu(*mtu));
                    message.attributes.push(LinkAttribute::Mtu(*mtu));
                }
                message.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
                ]));
                self.new_link(message, NLM_F_CREATE | NLM_F_EXCL)?;
                self.midway();
                host_ipv6_off(name);
                host_ipv6_off(peer);
                self.finish(name, Some(bridge), None)?;
                self.finish(peer, Some(peer_bridge), None)
            }
            Action::Attach { port, bridge, .. } => {
                let index = self.index(bridge)?;
                let mut message = named(port);
                message.attributes.push(LinkAttribute::Controller(index));
                self.set_link(message)
            }
            Action::SetUp { name } => {
                let mut message = named(name);
                set_up(&mut message);
                self.set_link(message)
            }
            Action::Mark { name, .. } => {
                host_ipv6_off(name);
                self.finish(name, None, None)
            }
            Action::AddAddress { bridge, address } => {
                let message = address_message(self.index(bridge)?, address)?;
                self.netlink.write(
                    RouteNetlinkMessage::NewAddress(message),
                    NLM_F_CREATE | NLM_F_EXCL,
                )
            }
            Action::DelAddress { bridge, address } => {
                let message = address_message(self.index(bridge)?, address)?;
                self.netlink
                    .write(RouteNetlinkMessage::DelAddress(message), 0)
            }
            Action::SetVlanFiltering { bridge, on } => {
                let mut message = named(bridge);
                message.attributes.push(vlan::filtering_info(*on));
                self.new_link(message, 0)
            }
            Action::SetPortVlans { port, add, remove } => {
                self.set_vlans(port, VlanTarget::Port, add, remove)
            }
            Action::SetBridgeVlans {
                bridge,
                add,
                remove,
            } => self.set_vlans(bridge, VlanTarget::BridgeSelf, add, remove),
            Action::Delete { name, .. } => {
                self.indexes.remove(name);
                match self
                    .netlink
                    .write(RouteNetlinkMessage::DelLink(named(name)), 0)
                {
                    // Already gone (with its veth peer, say): the goal is met.
                    Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
                    other => other,
                }
            }
        }
    }
}
