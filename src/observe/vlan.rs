//! Does this kernel have bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)?
//!
//! Asked without changing anything: an existing bridge reports VLAN settings only
//! when the kernel has the feature; failing that, an RTM_GETVLAN dump, whose handler
//! the kernel registers only with the feature, is answered or refused.
//!
//! Also here: per-port VLAN membership ([`VlanEntry`]) as the AF_BRIDGE link dump
//! reports it (the same dump `bridge vlan show` reads).

use std::fmt;
use std::io;

use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use serde::{Deserialize, Serialize};

use super::Observed;

/// RTM_GETVLAN from linux/rtnetlink.h.
const RTM_GETVLAN: u16 = 114;
/// NLMSG_ERROR and NLMSG_DONE from linux/netlink.h.
const NLMSG_ERROR: u16 = 2;

/// Whether bridges can filter VLANs here. `observed` is consulted first; an error
/// only means the question could not be asked.
pub fn probe_vlan_filtering(observed: &Observed) -> io::Result<bool> {
    if let Some(known) = observed.vlan_support() {
        return Ok(known);
    }
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    // struct nlmsghdr (16 bytes) followed by struct br_vlan_msg (8 bytes).
    let mut request = Vec::with_capacity(24);
    request.extend_from_slice(&24u32.to_ne_bytes());
    request.extend_from_slice(&RTM_GETVLAN.to_ne_bytes());
    let flags = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes()); // sequence number
    request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
    request.push(libc::AF_BRIDGE as u8);
    request.extend_from_slice(&[0u8; 7]); // reserved bytes and ifindex 0: all ports
    socket.send(&request, 0)?;
    let (answer, _) = socket.recv_from_full()?;
    if answer.len() < 20 {
        return Err(io::Error::other("short answer to RTM_GETVLAN"));
    }
    let kind = u16::from_ne_bytes([answer[4], answer[5]]);
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]);
        if code == -libc::EOPNOTSUPP {
            return Ok(false);
        }
        if code != 0 {
            return Err(io::Error::from_raw_os_error(-code));
        }
    }
    Ok(true)
}

/// One VLAN a bridge port (or the bridge itself, "self") is a member of, as
/// `bridge vlan show` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VlanEntry {
    /// VLAN id.
    pub vid: u16,
    /// Untagged frames arriving on the port join this VLAN (BRIDGE_VLAN_INFO_PVID).
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged (BRIDGE_VLAN_INFO_UNTAGGED).
    pub untagged: bool,
}

impl VlanEntry {
    /// An access membership: the port's pvid, egress untagged.
    pub fn access(vid: u16) -> VlanEntry {
        VlanEntry {
            vid,
            pvid: true,
            untagged: true,
        }
    }

    /// A trunk membership: tagged both ways.
    pub fn tagged(vid: u16) -> VlanEntry {
        VlanEntry {
            vid,
            pvid: false,
            untagged: false,
        }
    }

    /// What a port gets from the kernel when it joins a bridge (default_pvid 1).
    pub fn kernel_default() -> Vec<VlanEntry> {
        vec![VlanEntry::access(1)]
    }

    /// The kernel's flag bits for this entry.
    pub fn flags(&self) -> BridgeVlanInfoFlags {
        let mut flags = BridgeVlanInfoFlags::empty();
        if self.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if self.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        flags
    }
}

impl fmt::Display for VlanEntry {
    /// `10(pvid untagged)`, `10(pvid)`, `10(untagged)` or plain `10` (tagged).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.vid)?;
        match (self.pvid, self.untagged) {
            (true, true) => f.write_str("(pvid untagged)"),
            (true, false) => f.write_str("(pvid)"),
            (false, true) => f.write_str("(untagged)"),
            (false, false) => Ok(()),
        }
    }
}

/// The AF_BRIDGE link dump that reports VLAN membership: RTM_GETLINK with family
/// AF_BRIDGE and IFLA_EXT_MASK = RTEXT_FILTER_BRVLAN, as `bridge vlan show` sends.
pub fn membership_request() -> LinkMessage {
    let mut request = LinkMessage::default();
    request.header.interface_family = AddressFamily::Bridge;
    request
        .attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
    request
}

/// The VLAN entries of one answer to [`membership_request`]: the interface index
/// and its entries sorted by VLAN id, or `None` when the message is not an AF_BRIDGE
/// one or carries no IFLA_AF_SPEC (a kernel without VLAN filtering sends none).
/// Range entries (RANGE_BEGIN .. RANGE_END, only sent when asked for compressed
/// answers) are expanded.
pub fn parse_membership(message: &LinkMessage) -> Option<(u32, Vec<VlanEntry>)> {
    if message.header.interface_family != AddressFamily::Bridge {
        return None;
    }
    let specs = message.attributes.iter().find_map(|a| match a {
        LinkAttribute::AfSpecBridge(specs) => Some(specs),
        _ => None,
    })?;
    let mut entries = Vec::new();
    let mut range_start = None;
    for spec in specs {
        let AfSpecBridge::VlanInfo(info) = spec else {
            continue;
        };
        let entry = |vid| VlanEntry {
            vid,
            pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
            untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
        };
        if info.flags.contains(BridgeVlanInfoFlags::RangeBegin) {
            range_start = Some(info.vid);
        } else if info.flags.contains(BridgeVlanInfoFlags::RangeEnd) {
            let start = range_start.take().unwrap_or(info.vid);
            entries.extend((start..=info.vid).map(entry));
        } else {
            entries.push(entry(info.vid));
        }
    }
    entries.sort();
    entries.dedup_by_key(|e| e.vid);
    Some((message.header.index, entries))
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{Emitable, Parseable};

    use super::*;

    /// One netlink attribute: length, type, value padded to 4 bytes.
    fn attr(kind: u16, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(4 + value.len() as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(value);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn vlan_info(flags: u16, vid: u16) -> Vec<u8> {
        attr(2, &[flags.to_ne_bytes(), vid.to_ne_bytes()].concat())
    }

    /// The body of an RTM_NEWLINK the kernel's br_fill_ifinfo sends for a port in
    /// answer to an AF_BRIDGE dump with RTEXT_FILTER_BRVLAN: struct ifinfomsg
    /// (family AF_BRIDGE), IFLA_IFNAME, IFLA_MASTER, then IFLA_AF_SPEC (opened
    /// without NLA_F_NESTED) holding `spec`.
    fn kernel_answer(family: u8, index: u32, spec: Option<&[u8]>) -> LinkMessage {
        let mut body = vec![family, 0, 1, 0]; // family, pad, type ARPHRD_ETHER
        body.extend_from_slice(&index.to_ne_bytes());
        body.extend_from_slice(&0x1043u32.to_ne_bytes()); // UP|BROADCAST|RUNNING|MULTICAST
        body.extend_from_slice(&0u32.to_ne_bytes());
        body.extend(attr(3, b"tap0\0")); // IFLA_IFNAME
        body.extend(attr(10, &3u32.to_ne_bytes())); // IFLA_MASTER
        if let Some(spec) = spec {
            body.extend(attr(26, spec)); // IFLA_AF_SPEC
        }
        LinkMessage::parse(body.as_slice()).expect("a valid link message")
    }

    const PVID: u16 = 0x2;
    const UNTAGGED: u16 = 0x4;
    const RANGE_BEGIN: u16 = 0x8;
    const RANGE_END: u16 = 0x10;

    #[test]
    fn access_and_trunk_entries_are_read_with_their_flags() {
        let spec = [
            vlan_info(0, 20),
            vlan_info(PVID | UNTAGGED, 10),
            vlan_info(UNTAGGED, 30),
        ]
        .concat();
        let (index, entries) = parse_membership(&kernel_answer(7, 5, Some(&spec))).unwrap();
        assert_eq!(index, 5);
        assert_eq!(
            entries,
            [
                VlanEntry::access(10),
                VlanEntry::tagged(20),
                VlanEntry {
                    vid: 30,
                    pvid: false,
                    untagged: true
                }
            ]
        );
        let shown: Vec<String> = entries.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10(pvid untagged)", "20", "30(untagged)"]);
    }

    #[test]
    fn compressed_ranges_are_expanded() {
        let spec = [
            vlan_info(PVID | UNTAGGED, 1),
            vlan_info(RANGE_BEGIN, 100),
            vlan_info(RANGE_END, 102),
        ]
        .concat();
        let (_, entries) = parse_membership(&kernel_answer(7, 5, Some(&spec))).unwrap();
        let vids: Vec<u16> = entries.iter().map(|e| e.vid).collect();
        assert_eq!(vids, [1, 100, 101, 102]);
        assert!(entries[1..].iter().all(|e| !e.pvid && !e.untagged));
    }

    #[test]
    fn no_af_spec_or_another_family_means_no_membership() {
        // A kernel without VLAN filtering answers without IFLA_AF_SPEC.
        assert_eq!(parse_membership(&kernel_answer(7, 5, None)), None);
        // An AF_UNSPEC link message is not an answer to the bridge dump.
        assert_eq!(parse_membership(&kernel_answer(0, 5, None)), None);
    }

    #[test]
    fn the_dump_request_asks_for_bridge_vlans() {
        // ifinfomsg with family AF_BRIDGE, then IFLA_EXT_MASK (29) =
        // RTEXT_FILTER_BRVLAN (2), as iproute2's rtnl_wilddump_req_filter sends.
        let request = membership_request();
        let mut buffer = vec![0; request.buffer_len()];
        request.emit(&mut buffer);
        let mut expected = vec![7u8];
        expected.extend_from_slice(&[0; 15]);
        expected.extend(attr(29, &2u32.to_ne_bytes()));
        assert_eq!(buffer, expected);
    }
}
