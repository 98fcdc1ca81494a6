//! NICs and their smoltcp interfaces.
//!
//! Each virtio-net NIC carries one *port* per VLAN the command line gives it an
//! address in (`None` for untagged traffic). A port is one smoltcp `Interface`
//! with its own sockets. Frames received on a NIC are demultiplexed by their
//! 802.1Q tag (which is stripped) into the queue of the matching port, and a
//! port's frames are tagged on their way out, so smoltcp only sees untagged
//! Ethernet.

mod echo;
mod route;

pub use echo::EchoAnswer;
mod sockets;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::icmp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, Icmpv4Message, Icmpv4Packet, IpAddress, IpCidr, IpProtocol,
    Ipv4Address, Ipv4Packet,
};
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::mmio::MmioTransport;

use kvmlab_guest_proto::cmdline::{IpConfig, RouteConfig};
use kvmlab_guest_proto::ipv4::Ipv4;
use kvmlab_guest_proto::vlan::{tag_in_place, untag};

use crate::heap::GuestHal;

/// Descriptors per virtqueue, so also receive buffers posted at once. Each
/// posted buffer costs the boot about 0.4 ms under emulated KVM (the driver's
/// bookkeeping and a queue notification), and a lab PC answering pings never
/// has many frames in flight; frames that find the ring full wait in the
/// VMM's TAP queue, they are not dropped.
const QUEUE_SIZE: usize = 8;
/// Receive buffer size: a 1518-byte tagged frame plus the virtio-net header.
const RX_BUFFER_LEN: usize = 2048;
/// Echo replies whose TTL is remembered (for the shell's `ping` lines).
const ECHO_REPLIES: usize = 16;
/// Neighbours remembered per port (for `ip neigh`).
const NEIGHBOURS: usize = 32;

/// Frames waiting for one port before we drop more.
const PORT_QUEUE_MAX: usize = 64;
/// Ethernet MTU as smoltcp counts it (header included, tag excluded).
const ETHERNET_MTU: usize = 1514;

pub type Transport = MmioTransport<'static>;

/// One virtio-net device.
pub struct Nic {
    /// Boxed: the driver is a couple of KiB, and every move of it is a copy
    /// that KVM's emulator (PVM) runs 8 bytes at a time.
    dev: Box<VirtIONet<GuestHal, Transport, QUEUE_SIZE>>,
    pub mac: [u8; 6],
    /// Frames we could not deliver (no port for their VLAN, queue full) or send.
    pub dropped: u64,
    /// Frames and bytes received and sent, as `ip -s link` counts them.
    pub counters: Counters,
}

/// A NIC's traffic counters.
#[derive(Clone, Copy, Default)]
pub struct Counters {
    /// Frames received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// One (NIC, VLAN) with its smoltcp interface.
pub struct Port {
    pub nic: usize,
    pub vlan: Option<u16>,
    pub addrs: Vec<(Ipv4, u8)>,
    /// Boxed for the same reason as [`Nic::dev`].
    iface: Box<Interface>,
    sockets: SocketSet<'static>,
    /// The ICMP sockets of the pings in progress, by echo identifier.
    icmp: Vec<(u16, SocketHandle)>,
    rx_queue: VecDeque<Vec<u8>>,
    /// Addresses and MACs heard in ARP on this port (replies, and requests for
    /// one of our addresses), as Linux learns its neighbours.
    pub neighbours: Vec<(Ipv4, [u8; 6])>,
}

/// An ICMP echo reply as it came off the wire.
#[derive(Clone, Copy)]
pub struct EchoReply {
    /// Who answered.
    pub from: Ipv4,
    /// The echo identifier and sequence number.
    pub ident: u16,
    /// The sequence number.
    pub seq: u16,
    /// The TTL the reply arrived with (the ICMP socket does not tell it).
    pub ttl: u8,
}

/// An arping in progress: which port it runs on and whether the target answered.
pub struct ArpWatch {
    pub port: usize,
    pub target: Ipv4,
    pub answered: bool,
}

/// All NICs and ports.
#[derive(Default)]
pub struct Net {
    pub nics: Vec<Nic>,
    pub ports: Vec<Port>,
    pub arp_watch: Option<ArpWatch>,
    /// The latest echo replies received, newest last.
    pub echo_replies: VecDeque<EchoReply>,
    /// The latest ICMP errors about our echo requests, newest last.
    pub echo_errors: VecDeque<EchoError>,
    /// Static routes, the default gateway among them.
    pub routes: Vec<RouteConfig>,
    /// Whether this computer forwards IPv4 between its ports (a router).
    pub forward: bool,
    /// Forwarded frames waiting for their next hop's MAC.
    pending: Vec<route::Pending>,
    /// TCP sockets closing, removed once closed (port, socket).
    closing: Vec<(usize, SocketHandle)>,
}

/// An ICMP error (time exceeded, destination unreachable) about one of our echo
/// requests, as it came off the wire.
#[derive(Clone, Copy)]
pub struct EchoError {
    /// Who sent the error (a router on the way).
    pub from: Ipv4,
    /// ICMP type (3: unreachable, 11: time exceeded) and code.
    pub kind: (u8, u8),
    /// The echo request's identifier and sequence number.
    pub ident: u16,
    /// The sequence number.
    pub seq: u16,
}

impl Nic {
    /// Initialises a virtio-net device behind `transport`.
    pub fn new(transport: Transport) -> Result<Nic, virtio_drivers::Error> {
        let dev = Box::new(VirtIONet::new(transport, RX_BUFFER_LEN)?);
        let mac = dev.mac_address();
        Ok(Nic {
            dev,
            mac,
            dropped: 0,
            counters: Counters::default(),
        })
    }
}

/// The smoltcp view of one port: untagged frames in and out.
struct PortDevice<'a> {
    nic: &'a mut Nic,
    vlan: Option<u16>,
    rx_queue: &'a mut VecDeque<Vec<u8>>,
}

struct FrameRx(Vec<u8>);

struct FrameTx<'a> {
    nic: &'a mut Nic,
    vlan: Option<u16>,
}

impl RxToken for FrameRx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for FrameTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let tag = if self.vlan.is_some() && len >= 14 {
            4
        } else {
            0
        };
        let mut buffer = self.nic.dev.new_tx_buffer(len + tag);
        let result = f(&mut buffer.packet_mut()[tag..]);
        if let (Some(vid), 4) = (self.vlan, tag) {
            tag_in_place(buffer.packet_mut(), vid);
        }
        if self.nic.dev.send(buffer).is_err() {
            self.nic.dropped += 1;
        } else {
            self.nic.counters.tx_packets += 1;
            self.nic.counters.tx_bytes += (len + tag) as u64;
        }
        result
    }
}

impl Device for PortDevice<'_> {
    type RxToken<'a>
        = FrameRx
    where
        Self: 'a;
    type TxToken<'a>
        = FrameTx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(FrameRx, FrameTx<'_>)> {
        let frame = self.rx_queue.pop_front()?;
        Some((
            FrameRx(frame),
            FrameTx {
                nic: self.nic,
                vlan: self.vlan,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<FrameTx<'_>> {
        self.nic.dev.can_send().then_some(FrameTx {
            nic: self.nic,
            vlan: self.vlan,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = ETHERNET_MTU;
        caps.max_burst_size = Some(1);
        caps
    }
}

fn ipv4(addr: Ipv4) -> Ipv4Address {
    Ipv4Address::from(addr)
}

impl Net {
    /// Gives NIC `ip.nic` the address `ip` on its untagged port or VLAN port.
    pub fn add_address(
        &mut self,
        ip: &IpConfig,
        now: Instant,
        seed: u64,
    ) -> Result<(), &'static str> {
        let nic = self.nics.get_mut(ip.nic).ok_or("no such NIC")?;
        let index = match self
            .ports
            .iter()
            .position(|p| p.nic == ip.nic && p.vlan == ip.vlan)
        {
            Some(index) => index,
            None => {
                let mut rx_queue = VecDeque::new();
                let mut device = PortDevice {
                    nic,
                    vlan: ip.vlan,
                    rx_queue: &mut rx_queue,
                };
                let mut config =
                    IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(device.nic.mac)));
                config.random_seed = seed;
                let iface = Box::new(Interface::new(config, &mut device, now));
                let sockets = SocketSet::new(Vec::new());
                self.ports.push(Port {
                    nic: ip.nic,
                    vlan: ip.vlan,
                    addrs: Vec::new(),
                    iface,
                    sockets,
                    icmp: Vec::new(),
                    rx_queue,
                    neighbours: Vec::new(),
                });
                self.ports.len() - 1
            }
        };
        let port = &mut self.ports[index];
        let cidr = IpCidr::new(IpAddress::Ipv4(ipv4(ip.addr)), ip.prefix);
        let mut pushed = false;
        port.iface
            .update_ip_addrs(|addrs| pushed = addrs.push(cidr).is_ok());
        if !pushed {
            return Err("too many addresses on this port");
        }
        port.addrs.push((ip.addr, ip.prefix));
        Ok(())
    }

    /// The port to reach `target` from: the one the routing table gives, else
    /// the first port (the start-up probes then find out that nothing answers).
    pub fn port_for(&self, target: Ipv4) -> Option<usize> {
        let routed = self.route(target).map(|next| next.port);
        routed.or(if self.ports.is_empty() { None } else { Some(0) })
    }

    /// Acknowledges the NICs' interrupts and moves received frames to their
    /// ports' queues. Acknowledging first means that a frame arriving after
    /// this point raises a new interrupt, so halting afterwards loses nothing.
    pub fn pump(&mut self, now_us: u64) {
        for n in 0..self.nics.len() {
            let nic = &mut self.nics[n];
            nic.dev.ack_interrupt();
            while let Ok(buffer) = self.nics[n].dev.receive() {
                let nic = &mut self.nics[n];
                nic.counters.rx_packets += 1;
                nic.counters.rx_bytes += buffer.packet().len() as u64;
                let frame = untag(buffer.packet());
                if nic.dev.recycle_rx_buffer(buffer).is_err() {
                    nic.dropped += 1;
                }
                let Some((vlan, frame)) = frame else {
                    nic.dropped += 1;
                    continue;
                };
                let Some(p) = self.ports.iter().position(|p| p.nic == n && p.vlan == vlan) else {
                    nic.dropped += 1;
                    continue;
                };
                note(
                    &frame,
                    &mut self.ports[p],
                    &mut self.echo_replies,
                    &mut self.echo_errors,
                );
                let Some(frame) = self.try_forward(p, frame, now_us) else {
                    continue;
                };
                let watched = self.arp_watch.as_mut().filter(|w| w.port == p);
                if let Some(watch) = watched.filter(|w| is_arp_reply_from(&frame, w.target)) {
                    watch.answered = true;
                }
                let queue = &mut self.ports[p].rx_queue;
                if queue.len() < PORT_QUEUE_MAX {
                    queue.push_back(frame);
                } else {
                    self.nics[n].dropped += 1;
                }
            }
        }
    }

    /// Lets every interface process its received frames and send what it must.
    pub fn poll(&mut self, now: Instant) {
        for port in &mut self.ports {
            let mut device = PortDevice {
                nic: &mut self.nics[port.nic],
                vlan: port.vlan,
                rx_queue: &mut port.rx_queue,
            };
            port.iface.poll(now, &mut device, &mut port.sockets);
        }
        if !self.closing.is_empty() {
            self.reap_closed();
        }
    }

    /// Microseconds until some interface wants to be polled again, if ever.
    pub fn poll_delay_us(&mut self, now: Instant) -> Option<u64> {
        self.ports
            .iter_mut()
            .filter_map(|port| port.iface.poll_delay(now, &port.sockets))
            .map(|delay| delay.total_micros())
            .min()
    }

    /// The ICMP socket of port `p` for echo identifier `ident`, made and bound at
    /// the first call.
    pub fn icmp_socket(&mut self, p: usize, ident: u16) -> &mut icmp::Socket<'static> {
        let port = &mut self.ports[p];
        let handle = match port.icmp.iter().find(|(i, _)| *i == ident) {
            Some(&(_, handle)) => handle,
            None => {
                // Room for a few requests of the largest payload the shell sends.
                let buffer =
                    || icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 6144]);
                let mut socket = icmp::Socket::new(buffer(), buffer());
                // A fresh socket binds to any identifier.
                let _ = socket.bind(icmp::Endpoint::Ident(ident));
                let handle = port.sockets.add(socket);
                port.icmp.push((ident, handle));
                handle
            }
        };
        port.sockets.get_mut::<icmp::Socket>(handle)
    }

    /// Closes port `p`'s ICMP socket for `ident`, once its ping is over: requests
    /// still waiting for the target's ARP answer are dropped with it, so the
    /// interface stops asking for a target nobody pings any more.
    pub fn close_icmp(&mut self, p: usize, ident: u16) {
        let port = &mut self.ports[p];
        if let Some(at) = port.icmp.iter().position(|(i, _)| *i == ident) {
            let (_, handle) = port.icmp.swap_remove(at);
            port.sockets.remove(handle);
        }
    }

    /// Broadcasts an ARP request for `target` from port `p`'s first address.
    pub fn send_arp_request(&mut self, p: usize, target: Ipv4) {
        let port = &mut self.ports[p];
        let nic = &mut self.nics[port.nic];
        let Some(&(source, _)) = port.addrs.first() else {
            return;
        };
        let arp = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(nic.mac),
            source_protocol_addr: ipv4(source),
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: ipv4(target),
        };
        let ethernet = EthernetRepr {
            src_addr: EthernetAddress(nic.mac),
            dst_addr: EthernetAddress::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        };
        let len = ethernet.buffer_len() + arp.buffer_len();
        FrameTx {
            nic,
            vlan: port.vlan,
        }
        .consume(len, |buffer| {
            let mut frame = EthernetFrame::new_unchecked(buffer);
            ethernet.emit(&mut frame);
            arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        });
    }
}

/// Learns from a received frame what the shell shows: the sender of an ARP reply,
/// or of a request for one of `port`'s addresses, as a neighbour; the TTL of an
/// ICMP echo reply.
fn note(
    frame: &[u8],
    port: &mut Port,
    echo_replies: &mut VecDeque<EchoReply>,
    echo_errors: &mut VecDeque<EchoError>,
) {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return;
    };
    match ethernet.ethertype() {
        EthernetProtocol::Arp => {
            let Ok(packet) = ArpPacket::new_checked(ethernet.payload()) else {
                return;
            };
            let Ok(ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_protocol_addr,
                ..
            }) = ArpRepr::parse(&packet)
            else {
                return;
            };
            let for_us = port
                .addrs
                .iter()
                .any(|&(addr, _)| ipv4(addr) == target_protocol_addr);
            if operation != ArpOperation::Reply && !for_us {
                return;
            }
            let ip = source_protocol_addr.octets();
            let mac = source_hardware_addr.0;
            if let Some(entry) = port.neighbours.iter_mut().find(|(known, _)| *known == ip) {
                entry.1 = mac;
            } else if port.neighbours.len() < NEIGHBOURS {
                port.neighbours.push((ip, mac));
            }
        }
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
                return;
            };
            if ip.next_header() != IpProtocol::Icmp {
                return;
            }
            let Ok(icmp) = Icmpv4Packet::new_checked(ip.payload()) else {
                return;
            };
            let kind = match icmp.msg_type() {
                Icmpv4Message::EchoReply => None,
                Icmpv4Message::DstUnreachable => Some(3),
                Icmpv4Message::TimeExceeded => Some(11),
                _ => return,
            };
            if let Some(kind) = kind {
                // The error quotes our request: its IPv4 header, then the first
                // 8 bytes of the ICMP echo (type, code, checksum, ident, seq).
                // (Only those 8 bytes: the quoted header's length field does not
                // match what is there, so it is read by hand.)
                let quoted = icmp.data();
                let header_len = usize::from(quoted.first().map_or(0, |b| b & 0x0f)) * 4;
                let Some(echo) = quoted.get(header_len..header_len + 8) else {
                    return;
                };
                if header_len < 20 || quoted[9] != 1 || echo[0] != 8 {
                    return;
                }
                if echo_errors.len() == ECHO_REPLIES {
                    echo_errors.pop_front();
                }
                echo_errors.push_back(EchoError {
                    from: ip.src_addr().octets(),
                    kind: (kind, icmp.msg_code()),
                    ident: u16::from_be_bytes([echo[4], echo[5]]),
                    seq: u16::from_be_bytes([echo[6], echo[7]]),
                });
                return;
            }
            if echo_replies.len() == ECHO_REPLIES {
                echo_replies.pop_front();
            }
            echo_replies.push_back(EchoReply {
                from: ip.src_addr().octets(),
                ident: icmp.echo_ident(),
                seq: icmp.echo_seq_no(),
                ttl: ip.hop_limit(),
            });
        }
        _ => {}
    }
}

/// Whether an untagged frame is an ARP reply sent by `target`.
fn is_arp_reply_from(frame: &[u8], target: Ipv4) -> bool {
    let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
        return false;
    };
    if ethernet.ethertype() != EthernetProtocol::Arp {
        return false;
    }
    let Ok(packet) = ArpPacket::new_checked(ethernet.payload()) else {
        return false;
    };
    matches!(
        ArpRepr::parse(&packet),
        Ok(ArpRepr::EthernetIpv4 { operation: ArpOperation::Reply, source_protocol_addr, .. })
            if source_protocol_addr == ipv4(target)
    )
}
