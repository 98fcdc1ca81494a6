//! Semantic validation: what a well-formed file must also mean. Every check runs, so
//! a file's problems are all reported at once.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::derive::{self, IFNAME_MAX, MacAddr};
use super::diagnostic::{Finding, did_you_mean};
use super::model::{FORMAT_VERSION, Topology};
use super::size::ByteSize;
use super::spans::{FieldPath, Part};

/// Longest lab or VM name: short enough to fit in state paths, markers and netns names.
pub const NAME_MAX: usize = 32;
/// Smallest guest memory kvmlab boots.
pub const MIN_MEMORY: ByteSize = ByteSize::mib(2);
/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 255;

/// What validation needs to know about the world outside the file.
#[derive(Debug, Clone)]
pub struct Context {
    /// The topology file's folder: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The host's memory in bytes, when known; no VM may ask for more.
    pub host_memory: Option<u64>,
}

/// A finding placed at a path in the document.
#[derive(Debug, Clone)]
pub struct Located {
    pub path: FieldPath,
    pub part: Part,
    pub finding: Finding,
}

/// An IP address with its prefix length, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpCidr {
    /// Reads `10.0.0.1/24` or `fd00::1/64`.
    pub fn parse(text: &str) -> Result<IpCidr, Finding> {
        let bad = || {
            Finding::new(
                format!("invalid address `{text}`"),
                "not an address in CIDR form",
            )
            .help("write the address with its prefix length, like 10.0.0.1/24")
        };
        let (addr, prefix) = text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(Finding::new(
                format!("prefix length /{prefix} is out of range in `{text}`"),
                format!("at most /{max}"),
            )
            .help(format!("the prefix length of this address is 0 to {max}")));
        }
        Ok(IpCidr { addr, prefix })
    }
}

/// Checks `topology`, returning every problem found.
pub fn validate(topology: &Topology, ctx: &Context) -> Vec<Located> {
    let mut checker = Checker {
        ctx,
        topology,
        found: Vec::new(),
    };
    checker.run();
    checker.found
}

struct Checker<'a> {
    ctx: &'a Context,
    topology: &'a Topology,
    found: Vec<Located>,
}

/// Who uses an interface name, for the "already used by" label.
struct NameUse {
    path: FieldPath,
    what: String,
}

fn root() -> FieldPath {
    FieldPath::root()
}

impl Checker<'_> {
    fn report(&mut self, path: FieldPath, part: Part, finding: Finding) {
        self.found.push(Located {
            path,
            part,
            finding,
        });
    }

    fn run(&mut self) {
        let t = self.topology;
        if t.version != FORMAT_VERSION {
            self.report(
                root().key("version"),
                Part::Value,
                Finding::new(
                    format!("unsupported format version {}", t.version),
                    format!("this kvmlab reads version {FORMAT_VERSION}"),
                )
                .help(format!("set `version: {FORMAT_VERSION}`")),
            );
        }
        self.check_dns_label(root().key("name"), &t.name, "lab");
        if let Some(netns) = &t.netns {
            self.check_netns(netns);
        }
        self.check_names();
        self.check_bridges();
        self.check_taps();
        self.check_links();
        self.check_vms();
        self.check_macs();
        self.check_addresses();
    }

    fn check_dns_label(&mut self, path: FieldPath, name: &str, what: &str) {
        let valid = !name.is_empty()
            && name.len() <= NAME_MAX
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.report(
                path,
                Part::Value,
                Finding::new(
                    format!("invalid {what} name `{name}`"),
                    "not a short DNS label",
                )
                .help(format!(
                    "a {what} name has 1 to {NAME_MAX} lowercase letters, digits and `-`, \
                     starts with a letter and does not end with `-` (for example `pc-1`)"
                )),
            );
        }
    }

    fn check_netns(&mut self, netns: &str) {
        let valid = !netns.is_empty()
            && netns.len() <= 64
            && netns != "."
            && netns != ".."
            && netns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.report(
                root().key("netns"),
                Part::Value,
                Finding::new(
                    format!("invalid network namespace name `{netns}`"),
                    "not a usable namespace name",
                )
                .help("use 1 to 64 letters, digits, `-`, `_` or `.` (for example `lab1`)"),
            );
        }
    }

    /// Checks that `name` is a valid Linux interface name; false when it is not.
    fn check_ifname(&mut self, path: FieldPath, name: &str) -> bool {
        let problem = if name.is_empty() {
            Some((
                "is empty".to_string(),
                "an interface needs a name".to_string(),
            ))
        } else if name.len() > IFNAME_MAX {
            Some((
                format!("is {} bytes long", name.len()),
                format!("Linux interface names are at most {IFNAME_MAX} bytes: shorten it"),
            ))
        } else if name == "." || name == ".." {
            Some(("is reserved".to_string(), "choose another name".to_string()))
        } else {
            name.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map(|c| {
                    (
                        format!("contains `{c}`"),
                        "use only letters, digits, `-`, `_` and `.`".to_string(),
                    )
                })
        };
        let Some((what, help)) = problem else {
            return true;
        };
        let message = format!("interface name `{name}` {what}");
        self.report(
            path,
            Part::Value,
            Finding::new(message, "invalid interface name").help(help),
        );
        false
    }

    /// Every interface the lab creates has a valid name no other of its interfaces has.
    fn check_names(&mut self) {
        let t = self.topology;
        let mut uses: HashMap<String, NameUse> = HashMap::new();
        let mut claim = |checker: &mut Self, name: String, path: FieldPath, what: String| {
            if let Some(earlier) = uses.get(&name) {
                checker.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("duplicate interface name `{name}`"),
                        format!("{what} would reuse this name"),
                    )
                    .help(format!(
                        "`{name}` is already the {} at {}; interface names must be unique in a lab",
                        earlier.what, earlier.path
                    )),
                );
            } else {
                uses.insert(name, NameUse { path, what });
            }
        };
        for (i, bridge) in t.bridges.iter().enumerate() {
            let path = root().key("bridges").index(i).key("name");
            if self.check_ifname(path.clone(), &bridge.name) {
                claim(self, bridge.name.clone(), path, "bridge".into());
            }
        }
        for (i, tap) in t.taps.iter().enumerate() {
            let path = root().key("taps").index(i).key("name");
            if self.check_ifname(path.clone(), &tap.name) {
                claim(self, tap.name.clone(), path, "TAP".into());
            }
        }
        for (i, (a, b)) in link_end_names(t).into_iter().enumerate() {
            let link = root().key("links").index(i);
            claim(self, a, link.key("a"), format!("veth end of links[{i}]"));
            claim(self, b, link.key("b"), format!("veth end of links[{i}]"));
        }
        let mut vm_names: HashMap<&str, usize> = HashMap::new();
        for (i, vm) in t.vms.iter().enumerate() {
            let path = root().key("vms").index(i).key("name");
            self.check_dns_label(path.clone(), &vm.name, "VM");
            if let Some(first) = vm_names.insert(&vm.name, i) {
                self.report(
                    path.clone(),
                    Part::Value,
                    Finding::new(
                        format!("duplicate VM name `{}`", vm.name),
                        "a second VM with this name",
                    )
                    .help(format!(
                        "vms[{first}] is already called `{}`; VM names must be unique in a lab",
                        vm.name
                    )),
                );
            }
            for n in 0..vm.nics.len() {
                let tap = derive::nic_tap_name(&vm.name, n);
                claim(self, tap, path.clone(), format!("TAP of NIC {n}"));
            }
        }
    }

    fn bridge_vlans(&self, name: &str) -> Option<&[u16]> {
        self.topology
            .bridges
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.vlans.as_slice())
    }

    /// Reports a reference to a bridge that does not exist; returns its VLANs if it does.
    fn check_bridge_ref(&mut self, path: FieldPath, name: &str) -> Option<Vec<u16>> {
        if let Some(vlans) = self.bridge_vlans(name) {
            return Some(vlans.to_vec());
        }
        let known: Vec<&str> = self
            .topology
            .bridges
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        let help = match did_you_mean(name, known.iter().copied()) {
            Some(suggestion) => suggestion,
            None if known.is_empty() => "declare the bridge under `bridges:`".to_string(),
            None => format!(
                "declare it under `bridges:`, or use one of: {}",
                known.join(", ")
            ),
        };
        self.report(
            path,
            Part::Value,
            Finding::new(format!("unknown bridge `{name}`"), "no bridge of this name").help(help),
        );
        None
    }

    fn check_vlan_id(&mut self, path: FieldPath, id: u16) -> bool {
        if (1..=4094).contains(&id) {
            return true;
        }
        self.report(
            path,
            Part::Value,
            Finding::new(
                format!("VLAN id {id} is out of range"),
                "not a usable VLAN id",
            )
            .help("VLAN ids are 1 to 4094 (0 and 4095 are reserved by 802.1Q)"),
        );
        false
    }

    /// The VLAN settings of one bridge port: `vlan` and `trunk` exclusive, no VLAN
    /// listed twice, ids in range. Returns the valid ids with where they are written.
    fn check_port_vlans(
        &mut self,
        port: &FieldPath,
        vlan: Option<u16>,
        trunk: Option<&[u16]>,
    ) -> Vec<(FieldPath, u16)> {
        if vlan.is_some() && trunk.is_some() {
            self.report(
                port.key("trunk"),
                Part::Key,
                Finding::new("`vlan` and `trunk` are exclusive", "`trunk` set together with `vlan`")
                    .help("use `vlan:` for an untagged access port or `trunk:` for a tagged trunk port, not both"),
            );
        }
        let trunk = trunk.unwrap_or_default();
        let mut ids: Vec<(FieldPath, u16)> = Vec::new();
        if let Some(id) = vlan {
            ids.push((port.key("vlan"), id));
        }
        for (i, id) in trunk.iter().enumerate() {
            let path = port.key("trunk").index(i);
            if trunk[..i].contains(id) {
                self.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("VLAN {id} is listed twice in this trunk"),
                        "listed again here",
                    )
                    .help("remove the repeated VLAN id"),
                );
            } else {
                ids.push((path, *id));
            }
        }
        ids.retain(|(path, id)| self.check_vlan_id(path.clone(), *id));
        ids
    }

    /// Every VLAN a port uses is declared on its bridge.
    fn check_vlan_membership(&mut self, ids: &[(FieldPath, u16)], bridge: &str, declared: &[u16]) {
        for (path, id) in ids {
            if declared.contains(id) {
                continue;
            }
            let has = if declared.is_empty() {
                "it declares no VLANs".to_string()
            } else {
                let list: Vec<String> = declared.iter().map(u16::to_string).collect();
                format!("it has {}", list.join(", "))
            };
            self.report(
                path.clone(),
                Part::Value,
                Finding::new(
                    format!("VLAN {id} is not declared on bridge `{bridge}`"),
                    "VLAN not on this bridge",
                )
                .help(format!(
                    "add {id} to the `vlans:` of bridge `{bridge}` ({has})"
                )),
            );
        }
    }

    /// A port on `bridge`: the bridge exists, and the port's VLANs are valid and declared.
    fn check_port(
        &mut self,
        port: &FieldPath,
        bridge: &str,
        vlan: Option<u16>,
        trunk: Option<&[u16]>,
    ) {
        let declared = self.check_bridge_ref(port.key("bridge"), bridge);
        let ids = self.check_port_vlans(port, vlan, trunk);
        if let Some(declared) = declared {
            self.check_vlan_membership(&ids, bridge, &declared);
        }
    }

    fn check_bridges(&mut self) {
        for (i, bridge) in self.topology.bridges.iter().enumerate() {
            let path = root().key("bridges").index(i);
            for (j, id) in bridge.vlans.iter().enumerate() {
                let at = path.key("vlans").index(j);
                if bridge.vlans[..j].contains(id) {
                    self.report(
                        at,
                        Part::Value,
                        Finding::new(
                            format!("VLAN {id} is declared twice on bridge `{}`", bridge.name),
                            "declared again here",
                        )
                        .help("remove the repeated VLAN id"),
                    );
                } else {
                    self.check_vlan_id(at, *id);
                }
            }
            if let Some(mtu) = bridge.mtu {
                if !(68..=65535).contains(&mtu) {
                    self.report(
                        path.key("mtu"),
                        Part::Value,
                        Finding::new(format!("MTU {mtu} is out of range"), "not a usable MTU")
                            .help("an MTU is 68 to 65535 bytes; 1500 is Ethernet's usual"),
                    );
                }
            }
        }
    }

    fn check_taps(&mut self) {
        for (i, tap) in self.topology.taps.iter().enumerate() {
            let path = root().key("taps").index(i);
            self.check_port(&path, &tap.bridge, tap.vlan, tap.trunk.as_deref());
        }
    }

    fn check_links(&mut self) {
        for (i, link) in self.topology.links.iter().enumerate() {
            let path = root().key("links").index(i);
            let a = self.check_bridge_ref(path.key("a"), &link.a);
            let b = self.check_bridge_ref(path.key("b"), &link.b);
            if link.a == link.b {
                self.report(
                    path.key("b"),
                    Part::Value,
                    Finding::new(
                        format!("link joins bridge `{}` to itself", link.a),
                        "same bridge as `a`",
                    )
                    .help("a link is a cable between two different bridges"),
                );
            }
            let ids = self.check_port_vlans(&path, link.vlan, link.trunk.as_deref());
            for (end, declared) in [(&link.a, a), (&link.b, b)] {
                if let Some(declared) = declared {
                    self.check_vlan_membership(&ids, end, &declared);
                }
            }
        }
    }

    fn check_vms(&mut self) {
        for (i, vm) in self.topology.vms.iter().enumerate() {
            let path = root().key("vms").index(i);
            if !(1..=MAX_VCPUS).contains(&vm.vcpus) {
                self.report(
                    path.key("vcpus"),
                    Part::Value,
                    Finding::new(
                        format!("vcpus must be 1 to {MAX_VCPUS}, not {}", vm.vcpus),
                        "out of range",
                    )
                    .help("give the VM between 1 and 255 virtual CPUs"),
                );
            }
            if vm.memory < MIN_MEMORY {
                self.report(
                    path.key("memory"),
                    Part::Value,
                    Finding::new(format!("memory {} is too small", vm.memory), "below 2MiB").help(
                        format!("a VM needs at least {MIN_MEMORY}; 64MiB suits the built-in guest"),
                    ),
                );
            } else if let Some(host) = self.ctx.host_memory {
                if vm.memory.bytes() > host {
                    self.report(
                        path.key("memory"),
                        Part::Value,
                        Finding::new(
                            format!(
                                "memory {} is more than this host has ({})",
                                vm.memory,
                                ByteSize(host)
                            ),
                            "more than the host's memory",
                        )
                        .help("give the VM less memory"),
                    );
                }
            }
            if vm.initrd.is_some() && vm.kernel.is_none() {
                self.report(
                    path.key("initrd"),
                    Part::Key,
                    Finding::new("an initrd needs a kernel", "initrd without `kernel`")
                        .help("add `kernel:`, or remove `initrd:` to run the built-in guest"),
                );
            }
            for (key, file) in [("kernel", &vm.kernel), ("initrd", &vm.initrd)] {
                if let Some(file) = file {
                    self.check_file(path.key(key), key, file);
                }
            }
            for (d, disk) in vm.disks.iter().enumerate() {
                self.check_file(path.key("disks").index(d).key("path"), "disk", &disk.path);
            }
            for (p, target) in vm.ping.iter().enumerate() {
                if target.parse::<std::net::Ipv4Addr>().is_err() {
                    self.report(
                        path.key("ping").index(p),
                        Part::Value,
                        Finding::new(
                            format!("ping target `{target}` is not an IPv4 address"),
                            "not an IPv4 address",
                        )
                        .help("give a plain address such as 10.0.0.2 (no prefix, no name)"),
                    );
                }
            }
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = path.key("nics").index(n);
                self.check_port(&nic_path, &nic.bridge, nic.vlan, nic.trunk.as_deref());
                for id in nic.vlan_ips.keys() {
                    if !nic.trunk.as_deref().unwrap_or_default().contains(id) {
                        self.report(
                            nic_path.key("vlan_ips").key(&id.to_string()),
                            Part::Key,
                            Finding::new(
                                format!("`vlan_ips` names VLAN {id}, which this NIC's trunk does not carry"),
                                "not in `trunk`",
                            )
                            .help(format!("add {id} to `trunk:`, or use `ip:` for an access port")),
                        );
                    }
                }
            }
        }
    }

    fn check_file(&mut self, path: FieldPath, what: &str, file: &Path) {
        let resolved = self.ctx.base_dir.join(file);
        let relative_help = format!(
            "relative paths start from the topology file's folder ({})",
            self.ctx.base_dir.display()
        );
        let problem = match std::fs::metadata(&resolved) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some((
                format!("{what} file not found: {}", resolved.display()),
                relative_help,
            )),
            Err(e) => Some((
                format!("cannot read {what} file {}: {e}", resolved.display()),
                relative_help,
            )),
            Ok(meta) if !meta.is_file() => Some((
                format!("{what} path is not a file: {}", resolved.display()),
                format!("point `{what}` at a regular file"),
            )),
            Ok(_) => match std::fs::File::open(&resolved) {
                Err(e) => Some((
                    format!("cannot read {what} file {}: {e}", resolved.display()),
                    "check the file's permissions".to_string(),
                )),
                Ok(_) => None,
            },
        };
        if let Some((message, help)) = problem {
            self.report(
                path,
                Part::Value,
                Finding::new(message, "this path").help(help),
            );
        }
    }

    fn check_macs(&mut self) {
        let t = self.topology;
        let mut seen: HashMap<MacAddr, FieldPath> = HashMap::new();
        for (i, vm) in t.vms.iter().enumerate() {
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = root().key("vms").index(i).key("nics").index(n);
                let (mac, path) = match &nic.mac {
                    Some(text) => {
                        let path = nic_path.key("mac");
                        let Some(mac) = MacAddr::parse(text) else {
                            self.report(
                                path,
                                Part::Value,
                                Finding::new(
                                    format!("invalid MAC address `{text}`"),
                                    "not a MAC address",
                                )
                                .help(
                                    "write six hex bytes separated by `:`, like 52:54:00:12:34:56",
                                ),
                            );
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
    fn check_addresses(&mut self) {
        let t = self.topology;
        let segment_of = segments(t);
        let mut seen: BTreeMap<(usize, Option<u16>, IpAddr), FieldPath> = BTreeMap::new();
        let mut entries: Vec<(FieldPath, &str, &str, Option<u16>)> = Vec::new();
        for (i, bridge) in t.bridges.iter().enumerate() {
            if let Some(address) = &bridge.address {
                entries.push((
                    root().key("bridges").index(i).key("address"),
                    address,
                    &bridge.name,
                    None,
                ));
            }
        }
        for (i, vm) in t.vms.iter().enumerate() {
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = root().key("vms").index(i).key("nics").index(n);
                if let Some(ip) = &nic.ip {
                    entries.push((nic_path.key("ip"), ip, &nic.bridge, nic.vlan));
                }
                for (id, ip) in &nic.vlan_ips {
                    entries.push((
                        nic_path.key("vlan_ips").key(&id.to_string()),
                        ip,
                        &nic.bridge,
                        Some(*id),
                    ));
                }
            }
        }
        for (path, text, bridge, vlan) in entries {
            let cidr = match IpCidr::parse(text) {
                Ok(cidr) => cidr,
                Err(finding) => {
                    self.report(path, Part::Value, finding);
                    continue;
                }
            };
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

/// The veth end names of every link, in order.
pub fn link_end_names(t: &Topology) -> Vec<(String, String)> {
    let mut pairs: HashMap<(&str, &str), usize> = HashMap::new();
    t.links
        .iter()
        .map(|link| {
            let key = if link.a <= link.b {
                (link.a.as_str(), link.b.as_str())
            } else {
                (link.b.as_str(), link.a.as_str())
            };
            let parallel = pairs.entry(key).or_insert(0);
            let names = derive::link_end_names(&link.a, &link.b, *parallel);
            *parallel += 1;
            names
        })
        .collect()
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
