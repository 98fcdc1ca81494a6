//! Bridge VLAN requests, built as plain messages so tests can compare them with
//! what iproute2 sends:
//! - membership: RTM_SETLINK (add, or change flags) and RTM_DELLINK (remove) with
//!   family AF_BRIDGE, the port's index, and IFLA_AF_SPEC holding one
//!   IFLA_BRIDGE_VLAN_INFO per VLAN, the way `bridge vlan add dev tap0 vid 10 pvid
//!   untagged` does; for the bridge device itself IFLA_BRIDGE_FLAGS =
//!   BRIDGE_FLAGS_SELF comes first, as with `bridge vlan add ... self`;
//! - the filtering flag: RTM_NEWLINK on the bridge with IFLA_LINKINFO {kind bridge,
//!   IFLA_BR_VLAN_FILTERING}, as `ip link set br0 type bridge vlan_filtering 1`.

use netlink_packet_route::link::{
    BridgeVlanInfoFlags, InfoBridge, InfoData, InfoKind, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::LinkBridgeVlan;

use crate::observe::VlanEntry;

/// Whom a membership request is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanTarget {
    /// A bridge port: the request goes to its master (no IFLA_BRIDGE_FLAGS, which
    /// the kernel reads as BRIDGE_FLAGS_MASTER).
    Port,
    /// The bridge device itself (BRIDGE_FLAGS_SELF).
    BridgeSelf,
}

fn membership(
    index: u32,
    target: VlanTarget,
    entries: &[(u16, BridgeVlanInfoFlags)],
) -> LinkMessage {
    let mut builder = LinkBridgeVlan::new(index);
    if target == VlanTarget::BridgeSelf {
        builder = builder.bridge_self();
    }
    for (vid, flags) in entries {
        builder = builder.vlan(*vid, *flags);
    }
    builder.build()
}

/// The body of an RTM_SETLINK that adds `entries` to interface `index` (or updates
/// their pvid/untagged flags where the VLAN is already there).
pub fn add_message(index: u32, target: VlanTarget, entries: &[VlanEntry]) -> LinkMessage {
    let entries: Vec<_> = entries.iter().map(|e| (e.vid, e.flags())).collect();
    membership(index, target, &entries)
}

/// The body of an RTM_DELLINK that removes VLANs `vids` from interface `index`.
pub fn remove_message(index: u32, target: VlanTarget, vids: &[u16]) -> LinkMessage {
    let entries: Vec<_> = vids
        .iter()
        .map(|v| (*v, BridgeVlanInfoFlags::empty()))
        .collect();
    membership(index, target, &entries)
}

/// The IFLA_LINKINFO that turns a bridge's VLAN filtering on or off.
pub fn filtering_info(on: bool) -> LinkAttribute {
    LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Bridge),
        LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(on)])),
    ])
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{
        Emitable, NLM_F_ACK, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::RouteNetlinkMessage;

    use super::*;

    /// Serialises `message` as a whole netlink message (header included).
    fn bytes(message: RouteNetlinkMessage) -> Vec<u8> {
        let mut message = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::InnerMessage(message),
        );
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        message.header.sequence_number = 1;
        message.finalize();
        let mut buffer = vec![0; message.buffer_len()];
        message.serialize(&mut buffer);
        buffer
    }

    /// What iproute2 sends for `bridge vlan add dev tap0 vid 10 pvid untagged`
    /// with tap0 at index 7 (bridge/vlan.c, vlan_modify; rtnl_talk adds NLM_F_ACK):
    /// no IFLA_BRIDGE_FLAGS since neither `self` nor `master` was given, and
    /// IFLA_AF_SPEC opened by addattr_nest, which sets no NLA_F_NESTED bit.
    fn iproute2(kind: u16, index: u8, inner: &[u8]) -> Vec<u8> {
        let spec_len = 4 + inner.len() as u16;
        let total = 16 + 16 + spec_len as u32;
        let mut out = Vec::new();
        out.extend_from_slice(&total.to_ne_bytes()); // nlmsg_len
        out.extend_from_slice(&kind.to_ne_bytes()); // nlmsg_type
        out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        out.extend_from_slice(&1u32.to_ne_bytes()); // seq
        out.extend_from_slice(&0u32.to_ne_bytes()); // pid
        // struct ifinfomsg: family AF_BRIDGE (7), pad, type 0, index, flags 0, change 0
        out.extend_from_slice(&[7, 0, 0, 0, index, 0, 0, 0]);
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&spec_len.to_ne_bytes());
        out.extend_from_slice(&26u16.to_ne_bytes()); // IFLA_AF_SPEC
        out.extend_from_slice(inner);
        out
    }

    /// One IFLA_BRIDGE_VLAN_INFO (type 2): struct bridge_vlan_info {flags, vid}.
    fn vlan_info(flags: u16, vid: u16) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&2u16.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&vid.to_ne_bytes());
        out
    }

    const RTM_DELLINK: u16 = 17;
    const RTM_SETLINK: u16 = 19;
    /// BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED.
    const PVID_UNTAGGED: u16 = 0x2 | 0x4;

    #[test]
    fn access_port_add_matches_iproute2_bytes() {
        let message = add_message(7, VlanTarget::Port, &[VlanEntry::access(10)]);
        let got = bytes(RouteNetlinkMessage::SetLink(message));
        assert_eq!(got, iproute2(RTM_SETLINK, 7, &vlan_info(PVID_UNTAGGED, 10)));
    }

    #[test]
    fn trunk_add_and_removal_match_iproute2_bytes() {
        let entries = [VlanEntry::tagged(10), VlanEntry::tagged(20)];
        let got = bytes(RouteNetlinkMessage::SetLink(add_message(
            7,
            VlanTarget::Port,
            &entries,
        )));
        // iproute2 sends one VLAN per command; the kernel (br_afspec) walks every
        // IFLA_BRIDGE_VLAN_INFO of one message, so both go in one request.
        let inner = [vlan_info(0, 10), vlan_info(0, 20)].concat();
        assert_eq!(got, iproute2(RTM_SETLINK, 7, &inner));
        // `bridge vlan del dev tap0 vid 1`
        let got = bytes(RouteNetlinkMessage::DelLink(remove_message(
            7,
            VlanTarget::Port,
            &[1],
        )));
        assert_eq!(got, iproute2(RTM_DELLINK, 7, &vlan_info(0, 1)));
    }

    #[test]
    fn bridge_self_carries_bridge_flags_self_first() {
        // `bridge vlan add dev br0 vid 10 pvid untagged self`: IFLA_BRIDGE_FLAGS
        // (type 0, u16 BRIDGE_FLAGS_SELF = 2, padded to 8 bytes) before the info.
        let message = add_message(3, VlanTarget::BridgeSelf, &[VlanEntry::access(10)]);
        let got = bytes(RouteNetlinkMessage::SetLink(message));
        let mut inner = Vec::new();
        inner.extend_from_slice(&6u16.to_ne_bytes());
        inner.extend_from_slice(&0u16.to_ne_bytes());
        inner.extend_from_slice(&2u16.to_ne_bytes());
        inner.extend_from_slice(&[0, 0]);
        inner.extend(vlan_info(PVID_UNTAGGED, 10));
        assert_eq!(got, iproute2(RTM_SETLINK, 3, &inner));
    }

    #[test]
    fn filtering_info_is_ifla_br_vlan_filtering() {
        // IFLA_LINKINFO { IFLA_INFO_KIND "bridge", IFLA_INFO_DATA {
        // IFLA_BR_VLAN_FILTERING (7) = u8 1 } }
        let attribute = filtering_info(true);
        let mut buffer = vec![0; attribute.buffer_len()];
        attribute.emit(&mut buffer);
        let data = buffer
            .windows(5)
            .position(|w| w == [5, 0, 7, 0, 1])
            .expect("IFLA_BR_VLAN_FILTERING = 1");
        assert!(buffer[..data].windows(6).any(|w| w == b"bridge"));
    }
}
