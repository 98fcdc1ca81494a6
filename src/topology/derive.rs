//! Values the file may leave out and kvmlab derives, always the same way: the TAP
//! behind each VM NIC, the NIC's MAC address, and the names of a link's veth ends.

use std::fmt;

/// Longest Linux interface name, in bytes (IFNAMSIZ less the NUL).
pub const IFNAME_MAX: usize = 15;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Multicast (and broadcast) addresses cannot be a NIC's own address.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Reads `52:54:00:12:34:56` (or with `-` between the bytes).
    pub fn parse(text: &str) -> Option<MacAddr> {
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next()?;
            if part.len() != 2 {
                return None;
            }
            *byte = u8::from_str_radix(part, 16).ok()?;
        }
        parts.next().is_none().then_some(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// FNV-1a: small, stable across releases and platforms, which is all a derived name
/// or address needs (std's hasher may change between Rust versions).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The MAC of NIC `index` of VM `vm` in lab `lab`: locally administered, unicast, and
/// the same on every run, so guests keep their ARP caches and DHCP leases meaningful.
pub fn nic_mac(lab: &str, vm: &str, index: usize) -> MacAddr {
    let hash = fnv1a(&[lab, vm, &index.to_string()]).to_be_bytes();
    // 0x02: the locally administered bit set, the multicast bit clear.
    MacAddr([0x02, hash[0], hash[1], hash[2], hash[3], hash[4]])
}

/// Shortens `name` to at most 15 bytes, replacing its tail with a hash of the whole
/// name when it is too long, so distinct long names stay distinct.
fn fit_ifname(name: &str, suffix: &str) -> String {
    let full = format!("{name}{suffix}");
    if full.len() <= IFNAME_MAX {
        return full;
    }
    let tag = format!("{:04x}", fnv1a(&[name]) & 0xffff);
    let keep = IFNAME_MAX.saturating_sub(tag.len() + suffix.len());
    let mut cut = keep.min(name.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tag}{suffix}", &name[..cut])
}

/// The TAP behind NIC `index` of VM `vm`: `pc1-eth0`, shortened with a hash of the VM
/// name when longer than 15 bytes.
pub fn nic_tap_name(vm: &str, index: usize) -> String {
    fit_ifname(vm, &format!("-eth{index}"))
}

/// The names of a link's two veth ends: `a-b` (a port of `a`) and `b-a` (a port of
/// `b`). `parallel` counts earlier links between the same two bridges, so a second
/// cable becomes `a-b-2`/`b-a-2`.
pub fn link_end_names(a: &str, b: &str, parallel: usize) -> (String, String) {
    let suffix = if parallel == 0 {
        String::new()
    } else {
        format!("-{}", parallel + 1)
    };
    (
        fit_ifname(&format!("{a}-{b}"), &suffix),
        fit_ifname(&format!("{b}-{a}"), &suffix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_is_stable_unicast_and_local() {
        let mac = nic_mac("lab", "pc1", 0);
        assert_eq!(mac, nic_mac("lab", "pc1", 0));
        assert_ne!(mac, nic_mac("lab", "pc1", 1));
        assert_ne!(mac, nic_mac("lab2", "pc1", 0));
        assert!(!mac.is_multicast());
        assert_eq!(mac.0[0] & 2, 2);
    }

    #[test]
    fn mac_parses_and_prints() {
        let mac = MacAddr::parse("52:54:00:AB:cd:0f").unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        assert!(MacAddr::parse("52:54:00:ab:cd").is_none());
        assert!(MacAddr::parse("52:54:00:ab:cd:0f:00").is_none());
        assert!(MacAddr::parse("52:54:00:ab:cd:zz").is_none());
        assert!(MacAddr::parse("ff:ff:ff:ff:ff:ff").unwrap().is_multicast());
    }

    #[test]
    fn tap_names_fit_ifnamsiz() {
        assert_eq!(nic_tap_name("pc1", 0), "pc1-eth0");
        let long = nic_tap_name("a-very-long-vm-name", 3);
        assert_eq!(long.len(), IFNAME_MAX);
        assert!(long.ends_with("-eth3"));
        assert_ne!(long, nic_tap_name("a-very-long-vm-nameX", 3));
    }

    #[test]
    fn link_ends_are_named_after_their_bridges() {
        assert_eq!(
            link_end_names("sw1", "sw2", 0),
            ("sw1-sw2".to_string(), "sw2-sw1".to_string())
        );
        assert_eq!(
            link_end_names("sw1", "sw2", 1),
            ("sw1-sw2-2".to_string(), "sw2-sw1-2".to_string())
        );
        let (a, b) = link_end_names("core-switch", "access-switch", 0);
        assert!(a.len() <= IFNAME_MAX && b.len() <= IFNAME_MAX);
        assert_ne!(a, b);
    }
}
