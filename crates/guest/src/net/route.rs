//! Layer 3: the routing table (the ports' subnets, static routes, the default
//! gateway) and, on a router (`kvmlab.forward`), IPv4 forwarding between ports as
//! Linux does it: TTL decremented, next hop resolved with ARP, ICMP time exceeded
//! and destination unreachable sent back.

use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4DstUnreachable,
    Icmpv4Message, Icmpv4Packet, Icmpv4Repr, Icmpv4TimeExceeded, IpAddress, IpCidr, IpProtocol,
    Ipv4Packet, Ipv4Repr,
};

use kvmlab_guest_proto::cmdline::RouteConfig;
use kvmlab_guest_proto::ipv4::{Ipv4, in_subnet};

use super::{FrameTx, Net, ipv4};

/// Frames a router holds while it asks for their next hop's MAC.
const PENDING_MAX: usize = 32;
/// Between ARP requests for a next hop, and how many before giving up (Linux: 1 s, 3).
const ARP_RETRY_US: u64 = 1_000_000;
const ARP_TRIES: u8 = 3;
/// TTL of the packets the guest makes itself (ICMP errors).
const OWN_TTL: u8 = 64;
/// How much of the offending packet an ICMP error quotes: its header and 8 bytes.
const QUOTED_PAYLOAD: usize = 8;

/// A frame waiting for its next hop's MAC.
pub(super) struct Pending {
    port: usize,
    hop: Ipv4,
    /// The IPv4 packet, TTL already decremented.
    packet: Vec<u8>,
    /// Where it came from, for the error if the hop never answers.
    from_port: usize,
    from_mac: [u8; 6],
    tries: u8,
    next_try_us: u64,
}

/// Where a packet goes: out of `port`, to `hop` (the destination itself when on
/// the link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The port to send from.
    pub port: usize,
    /// The address whose MAC the frame is for.
    pub hop: Ipv4,
    /// The gateway, when the destination is not on the port's link.
    pub via: Option<Ipv4>,
}

impl Net {
    /// Adds a static route; its next hop must lie in a subnet of one of the ports.
    pub fn add_route(&mut self, route: RouteConfig) -> Result<(), &'static str> {
        let port = self
            .connected(route.via)
            .ok_or("the next hop is on none of this computer's subnets")?;
        let cidr = IpCidr::new(IpAddress::Ipv4(ipv4(route.net)), route.prefix);
        let mut added = false;
        self.ports[port].iface.routes_mut().update(|routes| {
            routes.retain(|r| r.cidr != cidr);
            added = routes
                .push(smoltcp::iface::Route {
                    cidr,
                    via_router: IpAddress::Ipv4(ipv4(route.via)),
                    preferred_until: None,
                    expires_at: None,
                })
                .is_ok();
        });
        if !added {
            return Err("too many routes");
        }
        self.routes
            .retain(|r| (r.net, r.prefix) != (route.net, route.prefix));
        self.routes.push(route);
        Ok(())
    }

    /// Removes the route to `net/prefix`; false if there is none.
    pub fn remove_route(&mut self, net: Ipv4, prefix: u8) -> bool {
        let Some(at) = self
            .routes
            .iter()
            .position(|r| (r.net, r.prefix) == (net, prefix))
        else {
            return false;
        };
        self.routes.remove(at);
        let cidr = IpCidr::new(IpAddress::Ipv4(ipv4(net)), prefix);
        for port in &mut self.ports {
            port.iface
                .routes_mut()
                .update(|routes| routes.retain(|r| r.cidr != cidr));
        }
        true
    }

    /// Forgets every neighbour (`ip neigh flush`): the ports' interfaces are made
    /// anew with their addresses and routes, so that their ARP caches start empty
    /// and the next packet to a neighbour asks for it again.
    pub fn flush_neighbours(&mut self, now: smoltcp::time::Instant, seed: u64) {
        for p in 0..self.ports.len() {
            let port = &mut self.ports[p];
            let mut device = super::PortDevice {
                nic: &mut self.nics[port.nic],
                vlan: port.vlan,
                rx_queue: &mut port.rx_queue,
            };
            let mac = device.nic.mac;
            let mut config = smoltcp::iface::Config::new(smoltcp::wire::HardwareAddress::Ethernet(
                EthernetAddress(mac),
            ));
            config.random_seed = seed.wrapping_add(p as u64);
            let mut iface = smoltcp::iface::Interface::new(config, &mut device, now);
            iface.update_ip_addrs(|addrs| {
                for &(addr, prefix) in &port.addrs {
                    let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(ipv4(addr)), prefix));
                }
            });
            *port.iface = iface;
            port.neighbours.clear();
        }
        for route in core::mem::take(&mut self.routes) {
            let _ = self.add_route(route);
        }
    }

    /// The port whose subnet holds `addr` (the longest prefix wins).
    fn connected(&self, addr: Ipv4) -> Option<usize> {
        self.on_link(addr).map(|(port, _)| port)
    }

    /// The port whose subnet holds `addr` and that subnet's prefix length (the
    /// longest prefix wins).
    fn on_link(&self, addr: Ipv4) -> Option<(usize, u8)> {
        self.ports
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.addrs.iter().map(move |&(a, prefix)| (i, a, prefix)))
            .filter(|&(_, a, prefix)| in_subnet(addr, a, prefix))
            .max_by_key(|&(_, _, prefix)| prefix)
            .map(|(i, _, prefix)| (i, prefix))
    }

    /// The route to `target`: the longest matching prefix among the ports' subnets
    /// and the static routes; `None` when nothing matches. On equal prefixes the
    /// link beats a gateway, as in Linux's table.
    pub fn route(&self, target: Ipv4) -> Option<NextHop> {
        let link = self.on_link(target).map(|(port, prefix)| {
            let hop = NextHop {
                port,
                hop: target,
                via: None,
            };
            (prefix, hop)
        });
        let routed = self
            .routes
            .iter()
            .filter(|r| in_subnet(target, r.net, r.prefix))
            .filter(|r| link.is_none_or(|(prefix, _)| r.prefix > prefix))
            .max_by_key(|r| r.prefix)
            .and_then(|r| {
                let port = self.connected(r.via)?;
                let hop = NextHop {
                    port,
                    hop: r.via,
                    via: Some(r.via),
                };
                Some((r.prefix, hop))
            });
        routed.or(link).map(|(_, hop)| hop)
    }

    /// Whether `addr` is one of this computer's addresses.
    fn is_ours(&self, addr: Ipv4) -> bool {
        self.ports
            .iter()
            .any(|p| p.addrs.iter().any(|&(a, _)| a == addr))
    }

    /// Takes a frame received on port `p` for forwarding, if it is one: IPv4, sent
    /// to this NIC's MAC, for an address that is not ours. Returns the frame back
    /// when it is for this computer itself.
    pub(super) fn try_forward(&mut self, p: usize, frame: Vec<u8>, now_us: u64) -> Option<Vec<u8>> {
        if !self.forward {
            return Some(frame);
        }
        let nic_mac = self.nics[self.ports[p].nic].mac;
        let (dst, src_mac) = {
            let Ok(ethernet) = EthernetFrame::new_checked(&frame[..]) else {
                return Some(frame);
            };
            if ethernet.ethertype() != EthernetProtocol::Ipv4
                || ethernet.dst_addr() != EthernetAddress(nic_mac)
            {
                return Some(frame);
            }
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                return Some(frame);
            };
            (ip.dst_addr().octets(), ethernet.src_addr().0)
        };
        if self.is_ours(dst) || dst == [255; 4] {
            return Some(frame);
        }
        let mut packet = frame[EthernetFrame::<&[u8]>::header_len()..].to_vec();
        let ttl = packet[8];
        if ttl <= 1 {
            self.send_icmp_error(p, src_mac, &packet, IcmpError::TimeExceeded);
            return None;
        }
        let Some(next) = self.route(dst) else {
            self.send_icmp_error(p, src_mac, &packet, IcmpError::NetUnreachable);
            return None;
        };
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut packet[..]);
            ip.set_hop_limit(ttl - 1);
            ip.fill_checksum();
        }
        let pending = Pending {
            port: next.port,
            hop: next.hop,
            packet,
            from_port: p,
            from_mac: src_mac,
            tries: 0,
            next_try_us: now_us,
        };
        match self.neighbour(next.port, next.hop) {
            Some(mac) => self.send_ipv4(next.port, mac, &pending.packet),
            None if self.pending.len() < PENDING_MAX => {
                self.pending.push(pending);
                self.forward_pending(now_us);
            }
            None => {}
        }
        None
    }

    /// Sends the frames whose next hop answered, asks again for those that did
    /// not, and gives up (ICMP host unreachable) after three requests. Returns when
    /// to call again.
    pub fn forward_pending(&mut self, now_us: u64) -> Option<u64> {
        let mut waiting = core::mem::take(&mut self.pending);
        waiting.retain_mut(|pending| {
            if let Some(mac) = self.neighbour(pending.port, pending.hop) {
                self.send_ipv4(pending.port, mac, &pending.packet);
                return false;
            }
            if now_us < pending.next_try_us {
                return true;
            }
            if pending.tries == ARP_TRIES {
                let (port, mac) = (pending.from_port, pending.from_mac);
                self.send_icmp_error(port, mac, &pending.packet, IcmpError::HostUnreachable);
                return false;
            }
            pending.tries += 1;
            pending.next_try_us = now_us + ARP_RETRY_US;
            self.send_arp_request(pending.port, pending.hop);
            true
        });
        self.pending = waiting;
        self.pending.iter().map(|p| p.next_try_us).min()
    }

    /// The MAC of `addr` on port `p`, if it has been heard.
    fn neighbour(&self, p: usize, addr: Ipv4) -> Option<[u8; 6]> {
        self.ports[p]
            .neighbours
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|&(_, mac)| mac)
    }

    /// Sends an IPv4 packet out of port `p` to the MAC `dst`.
    fn send_ipv4(&mut self, p: usize, dst: [u8; 6], packet: &[u8]) {
        let port = &mut self.ports[p];
        let nic = &mut self.nics[port.nic];
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress(nic.mac),
            dst_addr: EthernetAddress(dst),
            ethertype: EthernetProtocol::Ipv4,
        };
        let len = ethernet.buffer_len() + packet.len();
        smoltcp::phy::TxToken::consume(
            FrameTx {
                nic,
                vlan: port.vlan,
            },
            len,
            |buffer| {
                let mut frame = EthernetFrame::new_unchecked(buffer);
                ethernet.emit(&mut frame);
                frame.payload_mut().copy_from_slice(packet);
            },
        );
    }

    /// Answers `offending` (an IPv4 packet that came in on port `p` from the MAC
    /// `to`) with an ICMP error from port `p`'s address.
    fn send_icmp_error(&mut self, p: usize, to: [u8; 6], offending: &[u8], error: IcmpError) {
        let Some(&(source, _)) = self.ports[p].addrs.first() else {
            return;
        };
        let Ok(original) = Ipv4Packet::new_checked(offending) else {
            return;
        };
        // Never an error about an error (RFC 1122), nor about a fragment's tail.
        if original.next_header() == IpProtocol::Icmp
            && let Ok(icmp) = Icmpv4Packet::new_checked(original.payload())
            && !matches!(
                icmp.msg_type(),
                Icmpv4Message::EchoRequest | Icmpv4Message::EchoReply
            )
        {
            return;
        }
        let caps = ChecksumCapabilities::ignored();
        let Ok(header) = Ipv4Repr::parse(&original, &caps) else {
            return;
        };
        let payload = original.payload();
        let data = &payload[..payload.len().min(QUOTED_PAYLOAD)];
        let icmp = match error {
            IcmpError::TimeExceeded => Icmpv4Repr::TimeExceeded {
                reason: Icmpv4TimeExceeded::TtlExpired,
                header,
                data,
            },
            IcmpError::NetUnreachable => Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::NetUnreachable,
                header,
                data,
            },
            IcmpError::HostUnreachable => Icmpv4Repr::DstUnreachable {
                reason: Icmpv4DstUnreachable::HostUnreachable,
                header,
                data,
            },
        };
        let ip = Ipv4Repr {
            src_addr: ipv4(source),
            dst_addr: header.src_addr,
            next_header: IpProtocol::Icmp,
            payload_len: icmp.buffer_len(),
            hop_limit: OWN_TTL,
        };
        let mut packet = alloc::vec![0u8; ip.buffer_len() + icmp.buffer_len()];
        let checksums = ChecksumCapabilities::default();
        let mut ip_packet = Ipv4Packet::new_unchecked(&mut packet[..]);
        ip.emit(&mut ip_packet, &checksums);
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(ip_packet.payload_mut()),
            &checksums,
        );
        self.send_ipv4(p, to, &packet);
    }
}

/// The ICMP errors a router sends.
#[derive(Clone, Copy)]
enum IcmpError {
    TimeExceeded,
    NetUnreachable,
    HostUnreachable,
}
