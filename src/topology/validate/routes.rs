//! Layer 3 of each VM: its default gateway (a NIC's `gateway`) and static routes
//! must name routers the VM can reach on one of its own subnets, and a route's
//! destination must be a network address.

use std::net::{IpAddr, Ipv4Addr};

use kvmlab_guest_proto::ipv4;

use super::super::diagnostic::Finding;
use super::super::model::VmSpec;
use super::super::spans::{FieldPath, Part};
use super::{Checker, IpCidr, root};

/// An IPv4 subnet of a VM: one of its addresses and the prefix length.
type Subnet = (Ipv4Addr, u8);

/// Whether `addr` lies in `subnet` (the guest's own rule, from the contract crate).
fn contains(subnet: Subnet, addr: Ipv4Addr) -> bool {
    ipv4::in_subnet(addr.octets(), subnet.0.octets(), subnet.1)
}

/// The network of `subnet`: `10.0.0.1/24` gives `10.0.0.0`.
fn network(subnet: Subnet) -> Ipv4Addr {
    Ipv4Addr::from(ipv4::network(subnet.0.octets(), subnet.1))
}

/// The IPv4 subnets of one NIC: its `ip` and its `vlan_ips` (unparsable ones are
/// reported by the address check).
fn nic_subnets(nic: &super::super::model::NicSpec) -> Vec<Subnet> {
    nic.ip
        .iter()
        .chain(nic.vlan_ips.values())
        .filter_map(|text| match IpCidr::parse(text) {
            Ok(IpCidr {
                addr: IpAddr::V4(addr),
                prefix,
            }) => Some((addr, prefix)),
            _ => None,
        })
        .collect()
}

/// Subnets for people: `10.0.0.0/24, 10.0.1.0/24`.
fn describe(subnets: &[Subnet]) -> String {
    let names: Vec<String> = subnets
        .iter()
        .map(|&s| format!("{}/{}", network(s), s.1))
        .collect();
    names.join(", ")
}

impl Checker<'_> {
    pub(super) fn check_routes(&mut self) {
        for (i, vm) in self.topology.vms.iter().enumerate() {
            let path = root().key("vms").index(i);
            self.check_gateways(&path, vm);
            let subnets: Vec<Subnet> = vm.nics.iter().flat_map(nic_subnets).collect();
            for (r, route) in vm.routes.iter().enumerate() {
                let route_path = path.key("routes").index(r);
                self.check_route_destination(route_path.key("to"), &route.to);
                let Some(via) = self.ipv4(route_path.key("via"), &route.via, "next hop") else {
                    continue;
                };
                if !subnets.iter().any(|&s| contains(s, via)) {
                    let help = if subnets.is_empty() {
                        "give one of the VM's NICs an `ip:` on the router's subnet".to_string()
                    } else {
                        format!(
                            "a next hop is a router on one of the VM's own subnets ({}): use its address there",
                            describe(&subnets)
                        )
                    };
                    self.report(
                        route_path.key("via"),
                        Part::Value,
                        Finding::new(
                            format!("next hop {via} is on none of {}'s subnets", vm.name),
                            "not reachable",
                        )
                        .help(help),
                    );
                }
            }
        }
    }

    /// Each NIC's `gateway` lies on that NIC's subnet, and a VM has one at most.
    fn check_gateways(&mut self, path: &FieldPath, vm: &VmSpec) {
        let mut first: Option<FieldPath> = None;
        for (n, nic) in vm.nics.iter().enumerate() {
            let Some(gateway) = &nic.gateway else {
                continue;
            };
            let gateway_path = path.key("nics").index(n).key("gateway");
            if let Some(first) = &first {
                self.report(
                    gateway_path,
                    Part::Key,
                    Finding::new(
                        format!("{} has a second default gateway", vm.name),
                        "second gateway",
                    )
                    .help(format!(
                        "a VM has one default route ({first} is the first); reach other networks with `routes:`"
                    )),
                );
                continue;
            }
            first = Some(gateway_path.clone());
            let Some(addr) = self.ipv4(gateway_path.clone(), gateway, "gateway") else {
                continue;
            };
            let subnets = nic_subnets(nic);
            if subnets.is_empty() {
                self.report(
                    gateway_path,
                    Part::Value,
                    Finding::new(
                        format!("gateway {addr} on a NIC without an address"),
                        "this NIC has no `ip`",
                    )
                    .help("give this NIC an `ip:` on the gateway's subnet"),
                );
            } else if subnets.iter().any(|&(own, _)| own == addr) {
                self.report(
                    gateway_path,
                    Part::Value,
                    Finding::new(
                        format!("gateway {addr} is this NIC's own address"),
                        "own address",
                    )
                    .help("the gateway is the router's address on this subnet, not the VM's"),
                );
            } else if !subnets.iter().any(|&s| contains(s, addr)) {
                self.report(
                    gateway_path,
                    Part::Value,
                    Finding::new(
                        format!(
                            "gateway {addr} is outside this NIC's subnet {}",
                            describe(&subnets)
                        ),
                        "not on this NIC's subnet",
                    )
                    .help(format!(
                        "a gateway is a router on the NIC's own subnet: use an address in {}, or put the gateway on the NIC that reaches it",
                        describe(&subnets)
                    )),
                );
            }
        }
    }

    /// A route's `to`: an IPv4 network in CIDR form with its host bits zero.
    fn check_route_destination(&mut self, path: FieldPath, text: &str) {
        let cidr = match IpCidr::parse(text) {
            Ok(cidr) => cidr,
            Err(finding) => {
                self.report(path, Part::Value, finding);
                return;
            }
        };
        let IpAddr::V4(addr) = cidr.addr else {
            self.report(
                path,
                Part::Value,
                Finding::new(
                    format!("route destination {text} is not an IPv4 network"),
                    "IPv6",
                )
                .help("the built-in lab guest routes IPv4 only"),
            );
            return;
        };
        let net = network((addr, cidr.prefix));
        if net != addr {
            self.report(
                path,
                Part::Value,
                Finding::new(
                    format!("route destination {text} is not a network address"),
                    "host bits set",
                )
                .help(format!("write the network: {net}/{}", cidr.prefix)),
            );
        }
    }

    /// Reads an IPv4 address (no prefix), reporting what is wrong with it.
    fn ipv4(&mut self, path: FieldPath, text: &str, what: &str) -> Option<Ipv4Addr> {
        match text.parse::<Ipv4Addr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let help = if text.contains('/') {
                    format!("write the {what} without a prefix length, like 10.0.0.254")
                } else {
                    format!("the {what} is an IPv4 address, like 10.0.0.254")
                };
                self.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("{what} `{text}` is not an IPv4 address"),
                        "not an address",
                    )
                    .help(help),
                );
                None
            }
        }
    }
}
