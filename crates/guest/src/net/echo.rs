//! ICMP echo from the guest's own tools (the start-up probes, `ping`,
//! `traceroute`): each on an ICMP socket of its own echo identifier.

use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

use kvmlab_guest_proto::ipv4::Ipv4;

use super::{Net, ipv4};

/// An echo reply taken off a socket.
#[derive(Clone, Copy)]
pub struct EchoAnswer {
    /// Its sequence number.
    pub seq: u16,
    /// Who answered.
    pub from: Ipv4,
    /// Bytes of ICMP (header and data), as ping prints them.
    pub len: usize,
}

impl Net {
    /// Queues an echo request (`ident`, `seq`, `data`) for `target` on port `p`'s
    /// socket for `ident`, with TTL `ttl` (the interface's default when `None`);
    /// false when the socket's buffer is full.
    pub fn send_echo(
        &mut self,
        p: usize,
        ident: u16,
        seq: u16,
        data: &[u8],
        target: Ipv4,
        ttl: Option<u8>,
    ) -> bool {
        let socket = self.icmp_socket(p, ident);
        socket.set_hop_limit(ttl);
        let repr = Icmpv4Repr::EchoRequest {
            ident,
            seq_no: seq,
            data,
        };
        let Ok(buffer) = socket.send(repr.buffer_len(), IpAddress::Ipv4(ipv4(target))) else {
            return false;
        };
        repr.emit(
            &mut Icmpv4Packet::new_unchecked(buffer),
            &ChecksumCapabilities::default(),
        );
        true
    }

    /// The echo replies for `ident` that port `p`'s socket has received, oldest
    /// first.
    pub fn take_echo_answers(&mut self, p: usize, ident: u16) -> Vec<EchoAnswer> {
        let socket = self.icmp_socket(p, ident);
        let mut answers = Vec::new();
        while let Ok((payload, from)) = socket.recv() {
            let Ok(packet) = Icmpv4Packet::new_checked(payload) else {
                continue;
            };
            if let Ok(Icmpv4Repr::EchoReply {
                ident: got,
                seq_no,
                data,
            }) = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default())
                && got == ident
            {
                let IpAddress::Ipv4(from) = from;
                answers.push(EchoAnswer {
                    seq: seq_no,
                    from: from.octets(),
                    len: data.len() + 8,
                });
            }
        }
        answers
    }
}
