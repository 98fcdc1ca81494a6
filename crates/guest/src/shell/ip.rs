//! `ip addr`, `ip link`, `ip route` and `ip neigh`, printed as iproute2 prints
//! them, so that what a student learns here reads the same on a Linux host.

use core::fmt::{self, Write};

use kvmlab_guest_proto::cmdline::RouteConfig;
use kvmlab_guest_proto::ipv4::{Dotted, network, parse_cidr, parse_ipv4};

use crate::net::{Net, Port};
use crate::serial::Serial;

/// What `ip` with no or an unknown object prints.
const USAGE: &str = "Usage: ip [-s] OBJECT\nwhere OBJECT := { address | link | route | neighbour }";

/// Runs `ip ARGS`; returns the exit status.
pub fn run(args: &[&str], net: &mut Net, out: &mut Serial) -> u8 {
    // `-s` (statistics) may come first, as in `ip -s link`.
    let (stats, args) = match args {
        ["-s" | "-stats" | "-statistics", rest @ ..] => (true, rest),
        _ => (false, args),
    };
    let Some(&object) = args.first() else {
        let _ = writeln!(out, "{USAGE}");
        return 1;
    };
    let verb = args.get(1).copied().unwrap_or("show");
    let is_route = "route".starts_with(object);
    let is_neighbour = "neighbour".starts_with(object) || "neighbor".starts_with(object);
    if is_neighbour && verb == "flush" {
        net.flush_neighbours(
            smoltcp::time::Instant::from_micros(crate::clock::now_us() as i64),
            crate::clock::rdtsc(),
        );
        return 0;
    }
    if is_route && matches!(verb, "add" | "del" | "delete") {
        return change_route(verb != "add", &args[2..], net, out);
    }
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
        links(net, out, true, stats);
    } else if is("link", 1) {
        links(net, out, false, stats);
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

/// `ip route add|del (default | NET/PREFIX) [via ADDR]`, with iproute2's errors.
fn change_route(delete: bool, args: &[&str], net: &mut Net, out: &mut Serial) -> u8 {
    let usage = "Usage: ip route { add | del } { default | NETWORK/PREFIX } via ADDRESS";
    let Some(&destination) = args.first() else {
        let _ = writeln!(out, "{usage}");
        return 1;
    };
    let parsed = if destination == "default" {
        Some(([0; 4], 0))
    } else {
        parse_cidr(destination)
    };
    let Some((addr, prefix)) = parsed else {
        let _ = writeln!(
            out,
            "Error: inet prefix is expected rather than \"{destination}\"."
        );
        return 1;
    };
    if network(addr, prefix) != addr {
        let _ = writeln!(out, "Error: Invalid prefix for given prefix length.");
        return 1;
    }
    if delete {
        if net.remove_route(addr, prefix) {
            return 0;
        }
        let _ = writeln!(out, "RTNETLINK answers: No such process");
        return 2;
    }
    let via = match args.get(1..) {
        Some(["via", via]) => parse_ipv4(via),
        _ => {
            let _ = writeln!(out, "{usage}");
            return 1;
        }
    };
    let Some(via) = via else {
        let _ = writeln!(
            out,
            "Error: inet address is expected rather than \"{}\".",
            args[2]
        );
        return 1;
    };
    if net
        .routes
        .iter()
        .any(|r| (r.net, r.prefix) == (addr, prefix))
    {
        let _ = writeln!(out, "RTNETLINK answers: File exists");
        return 2;
    }
    match net.add_route(RouteConfig {
        net: addr,
        prefix,
        via,
    }) {
        Ok(()) => 0,
        Err(_) => {
            let _ = writeln!(out, "Error: Nexthop has invalid gateway.");
            2
        }
    }
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
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// Upper case, as arping prints a MAC (`{:X}`).
impl fmt::UpperHex for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// `ip link` (and with `addresses`, `ip addr`): each NIC, and each VLAN
/// sub-interface with its parent. (The guest has no loopback interface, so it
/// shows none.)
fn links(net: &Net, out: &mut Serial, addresses: bool, stats: bool) {
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
        if stats {
            let c = nic.counters;
            let _ = writeln!(
                out,
                "    RX:  bytes packets errors dropped  missed   mcast\n    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}\n    TX:  bytes packets errors dropped carrier collsns\n    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}",
                c.rx_bytes,
                c.rx_packets,
                0,
                nic.dropped,
                0,
                0,
                c.tx_bytes,
                c.tx_packets,
                0,
                0,
                0,
                0
            );
        }
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

/// `ip route`: the default route and static routes, then the networks of the
/// interfaces' addresses.
fn routes(net: &Net, out: &mut Serial) {
    for route in &net.routes {
        let Some(next) = net.route(route.via) else {
            continue;
        };
        let port = IfName(&net.ports[next.port]);
        if route.is_default() {
            let _ = writeln!(out, "default via {} dev {port}", Dotted(route.via));
        } else {
            let _ = writeln!(
                out,
                "{}/{} via {} dev {port}",
                Dotted(route.net),
                route.prefix,
                Dotted(route.via)
            );
        }
    }
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
