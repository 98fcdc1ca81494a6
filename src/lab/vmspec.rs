//! From a topology's VM to the runner's [`LabVm`]: a pure mapping.

use std::path::{Path, PathBuf};

use kvmlab_guest_proto::READY_MARKER;
use kvmlab_guest_proto::cmdline::{IpConfig, RouteConfig, Word};
use kvmlab_guest_proto::ipv4::{parse_cidr, parse_ipv4};

use crate::runner::{LabDisk, LabNic, LabVm, NicVlans};
use crate::topology::derive::{MacAddr, nic_mac, nic_tap_name};
use crate::topology::{Topology, VmSpec};

/// The resolved VM `index` of `topology`, run as lab `lab`, with relative paths taken
/// from `base_dir` (the topology file's folder). `vlans_at_nics` says whether the VMM
/// enforces VLANs (the kernel lacks bridge VLAN filtering).
///
/// A VM without a kernel runs the built-in guest, which takes its addresses and
/// pings from `kvmlab.*` words on its command line (written with
/// [`kvmlab_guest_proto::cmdline::Word`]) and is ready at
/// [`kvmlab_guest_proto::READY_MARKER`]. The guest speaks IPv4 only: an address
/// it could not read (an IPv6 one) gets no word.
pub fn lab_vm(
    topology: &Topology,
    lab: &str,
    index: usize,
    base_dir: &Path,
    vlans_at_nics: bool,
) -> LabVm {
    let spec = &topology.vms[index];
    let resolve = |p: &PathBuf| base_dir.join(p);
    let mut words: Vec<String> = spec.cmdline.iter().map(|c| c.trim().to_string()).collect();
    words.retain(|w| !w.is_empty());
    if spec.kernel.is_none() {
        words.push(Word::Hostname(&spec.name).to_string());
    }
    let mut nics = Vec::new();
    for (n, nic) in spec.nics.iter().enumerate() {
        let bridge_vlans = topology
            .bridges
            .iter()
            .find(|b| b.name == nic.bridge)
            .is_some_and(|b| !b.vlans.is_empty());
        let vlans = match (&nic.vlan, &nic.trunk) {
            _ if !vlans_at_nics => NicVlans::Transparent,
            (Some(id), _) => NicVlans::Access(*id),
            (None, Some(trunk)) => NicVlans::Trunk(trunk.clone()),
            (None, None) if bridge_vlans => NicVlans::Trunk(Vec::new()),
            (None, None) => NicVlans::Transparent,
        };
        let mac = nic
            .mac
            .as_deref()
            .and_then(MacAddr::parse)
            .unwrap_or_else(|| nic_mac(lab, &spec.name, n));
        if spec.kernel.is_none() {
            let untagged = nic.ip.as_ref().map(|ip| (None, ip));
            let tagged = nic.vlan_ips.iter().map(|(vlan, ip)| (Some(*vlan), ip));
            for (vlan, ip) in untagged.into_iter().chain(tagged) {
                if let Some((addr, prefix)) = parse_cidr(ip) {
                    let ip = IpConfig {
                        nic: n,
                        vlan,
                        addr,
                        prefix,
                    };
                    words.push(Word::Ip(ip).to_string());
                }
            }
        }
        nics.push(LabNic {
            tap: nic_tap_name(&spec.name, n),
            mac: mac.to_string(),
            bridge: nic.bridge.clone(),
            vlans,
        });
    }
    if spec.kernel.is_none() {
        words.extend(route_words(spec));
        let targets: Vec<_> = spec.ping.iter().filter_map(|t| parse_ipv4(t)).collect();
        if !targets.is_empty() {
            words.push(Word::Ping(targets).to_string());
        }
    }
    LabVm {
        name: spec.name.clone(),
        memory_bytes: spec.memory.bytes(),
        vcpus: u8::try_from(spec.vcpus).unwrap_or(u8::MAX),
        kernel: spec.kernel.as_ref().map(resolve),
        initrd: spec.initrd.as_ref().map(resolve),
        cmdline: words.join(" "),
        ready: spec
            .ready
            .clone()
            .unwrap_or_else(|| READY_MARKER.to_string()),
        nics,
        disks: spec
            .disks
            .iter()
            .map(|d| LabDisk {
                path: resolve(&d.path),
                read_only: d.read_only,
            })
            .collect(),
    }
}

/// The built-in guest's layer 3: its default gateway (the route to 0.0.0.0/0), its
/// static routes, and whether it forwards. Validation has checked the addresses;
/// one that still does not read gets no word.
fn route_words(spec: &VmSpec) -> Vec<String> {
    let gateways = spec.nics.iter().filter_map(|nic| nic.gateway.as_deref());
    let default = gateways.filter_map(parse_ipv4).map(|via| RouteConfig {
        net: [0; 4],
        prefix: 0,
        via,
    });
    let routes = spec.routes.iter().filter_map(|route| {
        let (net, prefix) = parse_cidr(&route.to)?;
        Some(RouteConfig {
            net,
            prefix,
            via: parse_ipv4(&route.via)?,
        })
    });
    let mut words: Vec<String> = default
        .take(1)
        .chain(routes)
        .map(|route| Word::Route(route).to_string())
        .collect();
    if spec.forward {
        words.push(Word::Forward.to_string());
    }
    words
}

/// Every VM of `topology`, resolved (see [`lab_vm`]).
pub fn lab_vms(topology: &Topology, lab: &str, base_dir: &Path, vlans_at_nics: bool) -> Vec<LabVm> {
    (0..topology.vms.len())
        .map(|i| lab_vm(topology, lab, i, base_dir, vlans_at_nics))
        .collect()
}

#[cfg(test)]
mod tests;
