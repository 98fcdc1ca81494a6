//! `ip addr`, `ip link`, `ip route` and `ip neigh`, printed as iproute2 prints
//! them, so that what a student learns here reads the same on a Linux host.

use core::fmt::{self, Write};

use kvmlab_guest_proto::ipv4::Dotted;

use crate::net::{Net, Port};
use crate::serial::Serial;

/// What `ip` with no or an unknown object prints.
const USAGE: &str = "Usage: ip OBJECT\nwhere OBJECT := { address | link | route | neighbour }";

/// Runs `ip ARGS`; returns the exit status.
pub fn run(args: &[&str], net: &Net, out: &mut Serial) -> u8 {
    let Some(&object) = args.first() else {
        let _ = writeln!(out, "{USAGE}");
        return 1;
    };
    let verb = args.get(1).copied().unwrap_or("show");
    if !matches!(verb, "show" | "list" | "ls") {
        let _ = writeln!(
            out,
            "ip: `{verb}` is not supported here: this guest shows its settings (the lab file sets them)"
        );
        return 1;
    }
    // iproute2 takes any prefix of an object's name.
    let is = |name: &str, shortest: usize| object.len() >= shortest && name.starts_with(object);
    if is("address", 1) {
        links(net, out, true);
    } else if is("link", 1) {
        links(net, out, false);
    } else if is("route", 1) {
        routes(net, out);
    } else if is("neighbour", 1) || is("neighbor", 1) {
        neighbours(net, out);
    } else {
        let _ = writeln!(out, "Object \"{object}\" is unknown, try \"ip help\".");
        return 1;
    }
    0
}

/// A port's interface name: `eth0`, or `eth0.10` for VLAN 10 on a trunk.
struct IfName<'a>(&'a Port);

impl fmt::Display for IfName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "eth{}", self.0.nic)?;
        match self.0.vlan {
            Some(vlan) => write!(f, ".{vlan}"),
            None => Ok(()),
        }
    }
}

/// A MAC address as `52:54:00:12:34:56`.
struct Mac([u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// `ip link` (and with `addresses`, `ip addr`): each NIC, and each VLAN
/// sub-interface with its parent. (The guest has no loopback interface, so it
/// shows none.)
fn links(net: &Net, out: &mut Serial, addresses: bool) {
    let mut index = 1;
    for (n, nic) in net.nics.iter().enumerate() {
        // A NIC whose only port is a VLAN one still shows as a link of its own.
        let untagged = net.ports.iter().find(|p| p.nic == n && p.vlan.is_none());
        let _ = writeln!(
            out,
            "{index}: eth{n}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n    link/ether {} brd ff:ff:ff:ff:ff:ff",
            Mac(nic.mac)
        );
        index += 1;
        if let (true, Some(port)) = (addresses, untagged) {
            inet_lines(port, out);
        }
        for port in net.ports.iter().filter(|p| p.nic == n && p.vlan.is_some()) {
            let _ = writeln!(
                out,
                "{index}: {}@eth{n}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n    link/ether {} brd ff:ff:ff:ff:ff:ff",
                IfName(port),
                Mac(nic.mac)
            );
            index += 1;
            if addresses {
                inet_lines(port, out);
            }
        }
    }
}

fn inet_lines(port: &Port, out: &mut Serial) {
    for &(addr, prefix) in &port.addrs {
        let _ = writeln!(
            out,
            "    inet {}/{prefix} scope global {}",
            Dotted(addr),
            IfName(port)
        );
    }
}

/// The network an address is in: `10.0.0.1/24` gives `10.0.0.0`.
fn network(addr: [u8; 4], prefix: u8) -> [u8; 4] {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    (u32::from_be_bytes(addr) & mask).to_be_bytes()
}

/// `ip route`: the networks of the interfaces' addresses.
fn routes(net: &Net, out: &mut Serial) {
    for port in &net.ports {
        for &(addr, prefix) in &port.addrs {
            let _ = writeln!(
                out,
                "{}/{prefix} dev {} proto kernel scope link src {}",
                Dotted(network(addr, prefix)),
                IfName(port),
                Dotted(addr)
            );
        }
    }
}

/// `ip neigh`: the neighbours heard on each interface.
fn neighbours(net: &Net, out: &mut Serial) {
    for port in &net.ports {
        for &(addr, mac) in &port.neighbours {
            let _ = writeln!(
                out,
                "{} dev {} lladdr {} REACHABLE",
                Dotted(addr),
                IfName(port),
                Mac(mac)
            );
        }
    }
}
