//! Addresses: MACs unique per lab, IP addresses unique per L2 segment.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use super::super::derive::{self, MacAddr};
use super::super::diagnostic::{Finding, clip};
use super::super::model::Topology;
use super::super::spans::{FieldPath, Part};
use super::syntax::mac_problem;
use super::{Checker, IpCidr, root};

impl Checker<'_> {
    pub(super) fn check_macs(&mut self) {
        let t = self.topology;
        let mut seen: HashMap<MacAddr, FieldPath> = HashMap::new();
        for (i, vm) in t.vms.iter().enumerate() {
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = root().key("vms").index(i).key("nics").index(n);
                let (mac, path) = match &nic.mac {
                    Some(text) => {
                        let path = nic_path.key("mac");
                        let Some(mac) = MacAddr::parse(text) else {
                            let finding = mac_problem(text).unwrap_or_else(|| {
                                Finding::new(
                                    format!("invalid MAC address `{}`", clip(text)),
                                    "not a MAC address",
                                )
                                .help(
                                    "write six hex bytes separated by `:`, like 52:54:00:12:34:56",
                                )
                            });
                            self.report(path, Part::Value, finding);
                            continue;
                        };
                        if mac.is_multicast() {
                            self.report(
                                path,
                                Part::Value,
                                Finding::new(format!("MAC address {mac} is multicast"), "a NIC needs a unicast address")
                                    .help("the lowest bit of the first byte must be 0, as in 52:54:00:12:34:56"),
                            );
                            continue;
                        }
                        (mac, path)
                    }
                    None => (derive::nic_mac(&t.name, &vm.name, n), nic_path),
                };
                if let Some(first) = seen.get(&mac) {
                    self.report(
                        path,
                        Part::Value,
                        Finding::new(
                            format!("MAC address {mac} is used twice"),
                            "same MAC as another NIC",
                        )
                        .help(format!(
                            "{first} already has this address; give each NIC its own `mac:`"
                        )),
                    );
                } else {
                    seen.insert(mac, path);
                }
            }
        }
    }

    /// Addresses are valid CIDR and no two are equal on one L2 segment: bridges joined
    /// by links form one segment per VLAN.
    pub(super) fn check_addresses(&mut self) {
        let t = self.topology;
        let segment_of = segments(t);
        let mut seen: BTreeMap<(usize, Option<u16>, IpAddr), FieldPath> = BTreeMap::new();
        // (where, address, bridge, VLAN, held by a built-in guest)
        let mut entries: Vec<(FieldPath, &str, &str, Option<u16>, bool)> = Vec::new();
        for (i, bridge) in t.bridges.iter().enumerate() {
            if let Some(address) = &bridge.address {
                entries.push((
                    root().key("bridges").index(i).key("address"),
                    address,
                    &bridge.name,
                    None,
                    false,
                ));
            }
        }
        for (i, vm) in t.vms.iter().enumerate() {
            let builtin = vm.kernel.is_none();
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = root().key("vms").index(i).key("nics").index(n);
                if let Some(ip) = &nic.ip {
                    entries.push((nic_path.key("ip"), ip, &nic.bridge, nic.vlan, builtin));
                }
                for (id, ip) in &nic.vlan_ips {
                    entries.push((
                        nic_path.key("vlan_ips").key(&id.to_string()),
                        ip,
                        &nic.bridge,
                        Some(*id),
                        builtin,
                    ));
                }
            }
        }
        for (path, text, bridge, vlan, builtin) in entries {
            let cidr = match IpCidr::parse(text) {
                Ok(cidr) => cidr,
                Err(finding) => {
                    self.report(path, Part::Value, finding);
                    continue;
                }
            };
            if builtin && cidr.addr.is_ipv6() {
                self.report(
                    path.clone(),
                    Part::Value,
                    Finding::new(
                        format!("the built-in guest cannot take the IPv6 address {text}"),
                        "IPv6 address",
                    )
                    .help("the built-in lab guest speaks IPv4 only: give this NIC an IPv4 address, or boot a Linux kernel (`kernel:`) on this VM"),
                );
            }
            let Some(&segment) = segment_of.get(bridge) else {
                continue; // an unknown bridge is reported by the reference check
            };
            let key = (segment, vlan, cidr.addr);
            if let Some(first) = seen.get(&key) {
                let on = match vlan {
                    Some(id) => format!("bridge `{bridge}` (VLAN {id})"),
                    None => format!("bridge `{bridge}`"),
                };
                self.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("address {} is used twice on the segment of {on}", cidr.addr),
                        "duplicate address",
                    )
                    .help(format!(
                        "{first} already has this address; give each host its own"
                    )),
                );
            } else {
                seen.insert(key, path);
            }
        }
    }
}

/// Numbers each bridge by the L2 segment it belongs to: bridges joined by links share one.
fn segments(t: &Topology) -> HashMap<&str, usize> {
    let mut segment: HashMap<&str, usize> = t
        .bridges
        .iter()
        .enumerate()
        .map(|(i, b)| (b.name.as_str(), i))
        .collect();
    // Few bridges, few links: relabel until stable rather than keep a union-find.
    let mut changed = true;
    while changed {
        changed = false;
        for link in &t.links {
            if let (Some(&a), Some(&b)) =
                (segment.get(link.a.as_str()), segment.get(link.b.as_str()))
            {
                if a != b {
                    let (keep, drop) = (a.min(b), a.max(b));
                    for value in segment.values_mut() {
                        if *value == drop {
                            *value = keep;
                        }
                    }
                    changed = true;
                }
            }
        }
    }
    segment
}
