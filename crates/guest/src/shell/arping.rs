//! `arping`: ARP requests for an address on one of this computer's subnets, a line
//! per reply with the answering MAC, as iputils' arping prints them.

use core::fmt::Write;

use kvmlab_guest_proto::ipv4::{Dotted, Ipv4, parse_ipv4};

use super::ip::Mac;
use super::ping::Fixed3;
use crate::net::{ArpWatch, Net};
use crate::serial::Serial;

/// Between requests.
const INTERVAL_US: u64 = 1_000_000;

/// An arping in progress.
pub struct Arping {
    target: Ipv4,
    port: usize,
    count: Option<u32>,
    sent: u32,
    received: u32,
    sent_us: u64,
}

/// Reads `arping [-c COUNT] ADDRESS`.
pub fn parse(args: &[&str], net: &Net) -> Result<Arping, &'static str> {
    let mut count = None;
    let mut target = None;
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "-c" => {
                let value = args.next().ok_or("option needs a value")?;
                count = Some(
                    value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("bad number of probes")?,
                );
            }
            _ if arg.starts_with('-') => return Err("unknown option"),
            _ => target = Some(parse_ipv4(arg).ok_or("not an IPv4 address")?),
        }
    }
    let target = target.ok_or("usage: arping [-c COUNT] ADDRESS")?;
    // ARP reaches only the link: the target must be on one of our subnets.
    let next = net
        .route(target)
        .filter(|next| next.via.is_none())
        .ok_or("the address is on none of this computer's subnets")?;
    Ok(Arping {
        target,
        port: next.port,
        count,
        sent: 0,
        received: 0,
        sent_us: 0,
    })
}

impl Arping {
    /// Prints the first line.
    pub fn start(&self, net: &Net, out: &mut Serial) {
        let port = &net.ports[self.port];
        let source = port.addrs.first().map_or([0; 4], |&(a, _)| a);
        let _ = write!(
            out,
            "ARPING {} from {} eth{}",
            Dotted(self.target),
            Dotted(source),
            port.nic
        );
        if let Some(vlan) = port.vlan {
            let _ = write!(out, ".{vlan}");
        }
        let _ = writeln!(out);
    }

    /// Sends what is due, prints replies; returns when to run again, or `None`
    /// once done (the statistics printed).
    pub fn step(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) -> Option<u64> {
        if let Some(watch) = net.arp_watch.as_mut().filter(|w| w.answered) {
            watch.answered = false;
            self.received += 1;
            let mac = net.ports[self.port]
                .neighbours
                .iter()
                .find(|(a, _)| *a == self.target)
                .map_or([0; 6], |&(_, mac)| mac);
            let _ = writeln!(
                out,
                "Unicast reply from {} [{:X}]  {}ms",
                Dotted(self.target),
                Mac(mac),
                Fixed3(now_us.saturating_sub(self.sent_us))
            );
        }
        let next = self.sent_us + INTERVAL_US;
        if self.sent > 0 && now_us < next {
            return Some(next);
        }
        if self.count.is_some_and(|count| self.sent >= count) {
            self.finish(net, out);
            return None;
        }
        net.arp_watch = Some(ArpWatch {
            port: self.port,
            target: self.target,
            answered: false,
        });
        net.send_arp_request(self.port, self.target);
        self.sent += 1;
        self.sent_us = now_us;
        Some(now_us + INTERVAL_US)
    }

    /// Ctrl-C, or the count reached: the statistics.
    pub fn finish(&mut self, net: &mut Net, out: &mut Serial) {
        net.arp_watch = None;
        let _ = writeln!(
            out,
            "Sent {0} probes ({0} broadcast(s))\nReceived {1} response(s)",
            self.sent, self.received
        );
    }
}
