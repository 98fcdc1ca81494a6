//! 802.1Q tags on the guest's trunk NICs: received frames are untagged before the
//! TCP/IP stack sees them, and a VLAN port's frames are tagged on their way out.

use alloc::vec::Vec;

/// TPID of an 802.1Q tag.
pub const TPID_8021Q: u16 = 0x8100;

/// Splits a received Ethernet frame into its VLAN and the untagged frame.
///
/// An 802.1Q-tagged frame yields `Some(vid)` and a copy without the tag; a
/// priority-tagged frame (VID 0) counts as untagged. Runts yield `None`.
pub fn untag(frame: &[u8]) -> Option<(Option<u16>, Vec<u8>)> {
    if frame.len() < 14 {
        return None;
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != TPID_8021Q {
        return Some((None, frame.to_vec()));
    }
    if frame.len() < 18 {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    let mut inner = Vec::with_capacity(frame.len() - 4);
    inner.extend_from_slice(&frame[..12]);
    inner.extend_from_slice(&frame[16..]);
    Some(((vid != 0).then_some(vid), inner))
}

/// Tags a frame in place: `buf` holds 4 spare bytes followed by an untagged
/// frame (destination, source, EtherType, ...); afterwards it holds the same
/// frame with an 802.1Q tag for `vid` (priority 0) after the MAC addresses.
///
/// # Panics
///
/// When `buf` is shorter than 18 bytes (4 spare ones and an Ethernet header).
pub fn tag_in_place(buf: &mut [u8], vid: u16) {
    assert!(buf.len() >= 18, "frame too short to tag");
    buf.copy_within(4..16, 0);
    buf[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ARP-sized frame: broadcast destination, a source MAC, `ethertype`.
    fn frame(ethertype: [u8; 2], payload_len: usize) -> Vec<u8> {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        frame.extend_from_slice(&ethertype);
        frame.extend((0..payload_len).map(|i| i as u8));
        frame
    }

    #[test]
    fn vlan_tag_round_trip() {
        let untagged = frame([0x08, 0x06], 28);
        let mut buffer = vec![0u8; 4];
        buffer.extend_from_slice(&untagged);
        tag_in_place(&mut buffer, 10);
        assert_eq!(&buffer[..12], &untagged[..12]);
        assert_eq!(&buffer[12..16], &[0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(&buffer[16..], &untagged[12..]);
        assert_eq!(untag(&buffer), Some((Some(10), untagged.clone())));
        // Priority bits are ignored, VID 0 is untagged, a plain frame passes as is.
        buffer[14] |= 0xe0;
        assert_eq!(untag(&buffer), Some((Some(10), untagged.clone())));
        buffer[14] = 0;
        buffer[15] = 0;
        assert_eq!(untag(&buffer), Some((None, untagged.clone())));
        assert_eq!(untag(&untagged), Some((None, untagged.clone())));
        // Runts.
        assert_eq!(untag(&untagged[..13]), None);
        assert_eq!(untag(&buffer[..17]), None);
    }
}
