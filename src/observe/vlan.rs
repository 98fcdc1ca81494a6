//! Does this kernel have bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)?
//!
//! Asked without changing anything: an existing bridge reports VLAN settings only
//! when the kernel has the feature; failing that, an RTM_GETVLAN dump, whose handler
//! the kernel registers only with the feature, is answered or refused.

use std::io;

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

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
