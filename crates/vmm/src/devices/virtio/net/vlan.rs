//! 802.1Q VLAN membership enforced at a VM's NIC, for hosts whose bridges cannot
//! filter VLANs themselves (see DESIGN.md, "VLANs").
//!
//! Frames pass through the policy with their virtio-net header in front; inserting or
//! removing a tag moves the Ethernet payload by four bytes, so checksum and
//! segmentation offsets in the header move with it.

/// The 802.1Q tag protocol identifier.
const TPID_8021Q: u16 = 0x8100;
/// Destination and source MAC: the tag goes right after them.
const MAC_HEADERS: usize = 12;
/// Length of an 802.1Q tag.
pub const TAG_LEN: usize = 4;

/// virtio_net_hdr flag: `csum_start`/`csum_offset` are valid.
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
/// virtio_net_hdr gso type: none.
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;

/// Which VLANs a NIC belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VlanPolicy {
    /// Every frame passes unchanged: the NIC's bridge declares no VLANs.
    Transparent,
    /// Access port: the guest sends and receives untagged frames, which are this VLAN's
    /// on the wire.
    Access(u16),
    /// Trunk port: tagged frames of the listed VLANs pass tagged; untagged frames pass
    /// when `untagged` is set. Everything else is dropped.
    Trunk {
        /// The VLAN ids whose tagged frames pass.
        vlans: Vec<u16>,
        /// Whether untagged frames pass too.
        untagged: bool,
    },
}

/// What happened to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it (possibly changed).
    Pass,
    /// Drop it: it does not belong to this NIC's VLANs.
    Drop,
}

/// The VLAN id of a tagged frame (`frame` starts at the destination MAC).
pub fn frame_vlan(frame: &[u8]) -> Option<u16> {
    if frame.len() < MAC_HEADERS + TAG_LEN {
        return None;
    }
    let tpid = u16::from_be_bytes([frame[12], frame[13]]);
    (tpid == TPID_8021Q).then(|| u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)
}

/// Moves the header's checksum start and segmentation header length by `delta` bytes.
fn shift_offsets(hdr: &mut [u8], delta: i32) {
    // virtio_net_hdr: flags(1) gso_type(1) hdr_len(2) gso_size(2) csum_start(2) csum_offset(2)
    if hdr.len() < 10 {
        return;
    }
    let shift = |lo: u8, hi: u8| {
        let value = i32::from(u16::from_le_bytes([lo, hi])) + delta;
        (value.clamp(0, i32::from(u16::MAX)) as u16).to_le_bytes()
    };
    if hdr[1] != VIRTIO_NET_HDR_GSO_NONE {
        let v = shift(hdr[2], hdr[3]);
        hdr[2..4].copy_from_slice(&v);
    }
    if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let v = shift(hdr[6], hdr[7]);
        hdr[6..8].copy_from_slice(&v);
    }
}

/// Inserts an 802.1Q tag for `vlan` into the frame that starts at `buf[hdr_len..]`
/// and is `len` bytes long with its header; `buf` has room for the tag.
fn insert_tag(buf: &mut [u8], len: &mut usize, hdr_len: usize, vlan: u16) -> Verdict {
    if *len + TAG_LEN > buf.len() {
        return Verdict::Drop;
    }
    let at = hdr_len + MAC_HEADERS;
    buf.copy_within(at..*len, at + TAG_LEN);
    buf[at..at + 2].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[at + 2..at + 4].copy_from_slice(&(vlan & 0x0fff).to_be_bytes());
    *len += TAG_LEN;
    shift_offsets(&mut buf[..hdr_len], TAG_LEN as i32);
    Verdict::Pass
}

/// Removes the 802.1Q tag of the frame that starts at `buf[hdr_len..]`.
fn strip_tag(buf: &mut [u8], len: &mut usize, hdr_len: usize) {
    let at = hdr_len + MAC_HEADERS;
    buf.copy_within(at + TAG_LEN..*len, at);
    *len -= TAG_LEN;
    shift_offsets(&mut buf[..hdr_len], -(TAG_LEN as i32));
}

impl VlanPolicy {
    /// A frame the guest sent, on its way to the TAP: `buf[..len]` holds a virtio-net
    /// header of `hdr_len` bytes and then the frame. A tag may be inserted, so `buf`
    /// should have four bytes of room past `len`.
    pub fn egress(&self, buf: &mut [u8], len: &mut usize, hdr_len: usize) -> Verdict {
        if *len < hdr_len + MAC_HEADERS + 2 {
            return Verdict::Drop;
        }
        let tag = frame_vlan(&buf[hdr_len..*len]);
        match self {
            VlanPolicy::Transparent => Verdict::Pass,
            VlanPolicy::Access(vlan) => match tag {
                Some(_) => Verdict::Drop,
                None => insert_tag(buf, len, hdr_len, *vlan),
            },
            VlanPolicy::Trunk { vlans, untagged } => trunk_verdict(tag, vlans, *untagged),
        }
    }

    /// A frame from the TAP, on its way to the guest; arguments as for [`Self::egress`].
    pub fn ingress(&self, buf: &mut [u8], len: &mut usize, hdr_len: usize) -> Verdict {
        if *len < hdr_len + MAC_HEADERS + 2 {
            return Verdict::Drop;
        }
        let tag = frame_vlan(&buf[hdr_len..*len]);
        match self {
            VlanPolicy::Transparent => Verdict::Pass,
            VlanPolicy::Access(vlan) => match tag {
                Some(id) if id == *vlan => {
                    strip_tag(buf, len, hdr_len);
                    Verdict::Pass
                }
                _ => Verdict::Drop,
            },
            VlanPolicy::Trunk { vlans, untagged } => trunk_verdict(tag, vlans, *untagged),
        }
    }
}

fn trunk_verdict(tag: Option<u16>, vlans: &[u16], untagged: bool) -> Verdict {
    let allowed = match tag {
        Some(id) => vlans.contains(&id),
        None => untagged,
    };
    if allowed {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: usize = 12;

    /// A virtio-net header asking for a checksum at `csum_start`, then an IPv4 frame.
    fn frame(tag: Option<u16>) -> Vec<u8> {
        let mut buf = vec![0u8; HDR];
        buf[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
        buf[6..8].copy_from_slice(&34u16.to_le_bytes());
        buf.extend_from_slice(&[0xff; 6]); // destination
        buf.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]); // source
        if let Some(id) = tag {
            buf.extend_from_slice(&TPID_8021Q.to_be_bytes());
            buf.extend_from_slice(&id.to_be_bytes());
        }
        buf.extend_from_slice(&0x0800u16.to_be_bytes());
        buf.extend_from_slice(&[0x45; 20]);
        buf
    }

    type Direction = fn(&VlanPolicy, &mut [u8], &mut usize, usize) -> Verdict;

    /// Runs `direction` on `frame` in a buffer with room for a tag; the frame after.
    fn run(direction: Direction, policy: &VlanPolicy, frame: Vec<u8>) -> (Verdict, Vec<u8>) {
        let mut len = frame.len();
        let mut buf = frame;
        buf.resize(len + TAG_LEN, 0);
        let verdict = direction(policy, &mut buf, &mut len, HDR);
        buf.truncate(len);
        (verdict, buf)
    }

    fn csum_start(buf: &[u8]) -> u16 {
        u16::from_le_bytes([buf[6], buf[7]])
    }

    #[test]
    fn access_port_tags_what_the_guest_sends() {
        let (verdict, buf) = run(VlanPolicy::egress, &VlanPolicy::Access(10), frame(None));
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(frame_vlan(&buf[HDR..]), Some(10));
        assert_eq!(buf.len(), frame(None).len() + TAG_LEN);
        assert_eq!(
            csum_start(&buf),
            38,
            "the checksum start moves with the payload"
        );
        assert_eq!(&buf[HDR + 16..HDR + 18], &0x0800u16.to_be_bytes());
    }

    #[test]
    fn access_port_drops_tagged_frames_from_the_guest() {
        let (verdict, _) = run(VlanPolicy::egress, &VlanPolicy::Access(10), frame(Some(20)));
        assert_eq!(verdict, Verdict::Drop);
    }

    #[test]
    fn access_port_untags_its_vlan_and_drops_the_rest() {
        let policy = VlanPolicy::Access(10);
        let (verdict, own) = run(VlanPolicy::ingress, &policy, frame(Some(10)));
        assert_eq!(verdict, Verdict::Pass);
        assert_eq!(own, {
            let mut plain = frame(None);
            plain[6..8].copy_from_slice(&30u16.to_le_bytes());
            plain
        });
        assert_eq!(
            run(VlanPolicy::ingress, &policy, frame(Some(20))).0,
            Verdict::Drop
        );
        assert_eq!(
            run(VlanPolicy::ingress, &policy, frame(None)).0,
            Verdict::Drop
        );
    }

    #[test]
    fn trunk_passes_its_vlans_tagged_and_drops_others() {
        let policy = VlanPolicy::Trunk {
            vlans: vec![10, 20],
            untagged: false,
        };
        let directions: [Direction; 2] = [VlanPolicy::egress, VlanPolicy::ingress];
        for direction in directions {
            let (verdict, tagged) = run(direction, &policy, frame(Some(20)));
            assert_eq!(verdict, Verdict::Pass);
            assert_eq!(tagged, frame(Some(20)), "a trunk leaves tags alone");
            assert_eq!(run(direction, &policy, frame(Some(30))).0, Verdict::Drop);
            assert_eq!(run(direction, &policy, frame(None)).0, Verdict::Drop);
        }
        let native = VlanPolicy::Trunk {
            vlans: vec![10],
            untagged: true,
        };
        assert_eq!(
            run(VlanPolicy::ingress, &native, frame(None)).0,
            Verdict::Pass
        );
    }

    #[test]
    fn transparent_passes_everything_unchanged() {
        for tag in [None, Some(10)] {
            let (verdict, buf) = run(VlanPolicy::egress, &VlanPolicy::Transparent, frame(tag));
            assert_eq!(verdict, Verdict::Pass);
            assert_eq!(buf, frame(tag));
        }
    }

    #[test]
    fn runt_frames_are_dropped() {
        let (verdict, _) = run(
            VlanPolicy::egress,
            &VlanPolicy::Access(10),
            vec![0u8; HDR + 6],
        );
        assert_eq!(verdict, Verdict::Drop);
    }
}
