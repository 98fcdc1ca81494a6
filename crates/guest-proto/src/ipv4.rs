//! IPv4 addresses as the guest reads and writes them.

use core::fmt;

use crate::text::{cut, pieces};

/// An IPv4 address as its four octets, most significant first.
pub type Ipv4 = [u8; 4];

/// Parses a dotted-quad IPv4 address: four decimal octets of one to three digits
/// each (leading zeros allowed, no signs).
pub fn parse_ipv4(text: &str) -> Option<Ipv4> {
    let mut octets = [0u8; 4];
    let mut parts = pieces(text, b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(octets)
}

/// Parses `<addr>/<prefix>`: an address as [`parse_ipv4`] reads it and a prefix
/// length of 0 to 32.
pub fn parse_cidr(text: &str) -> Option<(Ipv4, u8)> {
    let (addr, prefix) = cut(text, b'/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some((parse_ipv4(addr)?, prefix))
}

/// The network `addr/prefix` lies in: `10.0.0.1/24` gives `10.0.0.0`.
pub fn network(addr: Ipv4, prefix: u8) -> Ipv4 {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    (u32::from_be_bytes(addr) & mask).to_be_bytes()
}

/// Whether `addr` lies in the subnet `net/prefix`.
pub fn in_subnet(addr: Ipv4, net: Ipv4, prefix: u8) -> bool {
    network(addr, prefix) == network(net, prefix)
}

/// An IPv4 address in dotted-quad form, for `write!`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dotted(pub Ipv4);

impl fmt::Display for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(parse_ipv4("192.168.1.254"), Some([192, 168, 1, 254]));
        assert_eq!(parse_ipv4("01.2.3.4"), Some([1, 2, 3, 4]));
        assert_eq!(parse_ipv4("1.2.3.+4"), None);
        assert_eq!(parse_ipv4("1.2.3"), None);
        assert_eq!(parse_ipv4("1.2.3.4.5"), None);
        assert_eq!(parse_ipv4("1.2.3.256"), None);
        assert_eq!(parse_ipv4("1.2.3.0004"), None);
        assert_eq!(parse_ipv4("1..3.4"), None);
    }

    #[test]
    fn dotted_is_what_parse_reads_back() {
        for addr in [
            [0, 0, 0, 0],
            [10, 0, 10, 3],
            [255, 255, 255, 255],
            [1, 22, 199, 0],
        ] {
            let text = Dotted(addr).to_string();
            assert_eq!(parse_ipv4(&text), Some(addr), "{text}");
        }
        assert_eq!(Dotted([10, 0, 0, 1]).to_string(), "10.0.0.1");
    }

    #[test]
    fn cidrs() {
        assert_eq!(parse_cidr("10.0.0.1/24"), Some(([10, 0, 0, 1], 24)));
        assert_eq!(parse_cidr("0.0.0.0/0"), Some(([0, 0, 0, 0], 0)));
        assert_eq!(parse_cidr("10.0.0.1/32"), Some(([10, 0, 0, 1], 32)));
        assert_eq!(parse_cidr("10.0.0.1/33"), None);
        assert_eq!(parse_cidr("10.0.0.1"), None);
        assert_eq!(parse_cidr("10.0.0.1/"), None);
        assert_eq!(parse_cidr("fd00::1/64"), None);
    }

    #[test]
    fn subnets() {
        assert!(in_subnet([10, 0, 0, 7], [10, 0, 0, 1], 24));
        assert!(!in_subnet([10, 0, 1, 7], [10, 0, 0, 1], 24));
        assert!(in_subnet([8, 8, 8, 8], [10, 0, 0, 1], 0));
        assert!(!in_subnet([10, 0, 0, 2], [10, 0, 0, 1], 32));
    }
}
