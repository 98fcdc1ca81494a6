//! `kvmlab status`: each object of a lab, present, missing or drifted, from the
//! lab's state and a fresh look at its namespace. Read-only.

use kvmlab_guest_proto::cmdline::Config;
use kvmlab_guest_proto::ipv4::Dotted;
use serde::Serialize;

use super::{LabError, observe_in, state_error};
use crate::netns;
use crate::observe::Observed;
use crate::plan::{self, Action, Desired, HostFeatures, PortKind};
use crate::plan::{LabJournal, VlanMode};
use crate::runner::VmFiles;
use crate::runner::show_size;
use crate::state::StateRoot;

/// One object of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectStatus {
    /// Interface name.
    pub name: String,
    /// `bridge`, `tap` or `veth`.
    pub kind: String,
    /// What it is for: `bridge`, `tap`, `vm pc1 nic 0`, `link to sw2-sw1`.
    pub role: String,
    /// `present`, `missing`, `drifted` or `foreign` (someone else's interface).
    pub state: String,
    /// For a drifted object, what `up` would do to it.
    pub repairs: Vec<String>,
}

/// One NIC of a VM.
#[derive(Debug, Clone, Serialize)]
pub struct NicStatus {
    /// MAC address.
    pub mac: String,
    /// The TAP behind it.
    pub tap: String,
    /// The bridge the TAP is a port of.
    pub bridge: String,
    /// VLAN membership (`access 10`, `trunk 10,20`, `-`).
    pub vlans: String,
    /// The guest's addresses on it (`10.0.0.1/24`; `10.0.10.254/24 vlan 10` on a
    /// trunk), as the lab gave them to the guest.
    pub addresses: Vec<String>,
}

/// The addresses the lab gives NIC `nic` of a VM, from the `kvmlab.ip=` words of
/// its command line (`config`), which both the built-in guest and a Linux guest's
/// init apply.
fn nic_addresses(config: &Config<'_>, nic: usize) -> Vec<String> {
    config
        .ips
        .iter()
        .filter(|ip| ip.nic == nic)
        .map(|ip| {
            let vlan = ip.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
            format!("{}/{}{vlan}", Dotted(ip.addr), ip.prefix)
        })
        .collect()
}

/// The routes the lab gives a VM (`default via 10.0.0.254`, `10.9.0.0/24 via
/// 10.0.0.9`), from the `kvmlab.route=` words of its command line (`config`).
fn routes(config: &Config<'_>) -> Vec<String> {
    config
        .routes
        .iter()
        .map(|r| match r.is_default() {
            true => format!("default via {}", Dotted(r.via)),
            false => format!("{}/{} via {}", Dotted(r.net), r.prefix, Dotted(r.via)),
        })
        .collect()
}

/// One VM of the lab.
#[derive(Debug, Clone, Serialize)]
pub struct VmStatus {
    /// The VM.
    pub name: String,
    /// `running`, `crashed` (its process is gone) or `stopped` (never started).
    pub state: String,
    /// The VM process.
    pub pid: Option<i32>,
    /// Seconds since the VM process started.
    pub uptime_s: Option<u64>,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// Guest memory as in the file (`64MiB`).
    pub memory: String,
    /// Resident memory of the VM process on the host, in bytes.
    pub rss_bytes: Option<u64>,
    /// Its NICs.
    pub nics: Vec<NicStatus>,
    /// Its routes, the default one first (`default via 10.0.0.254`).
    pub routes: Vec<String>,
    /// Whether it forwards IPv4 between its interfaces (a router).
    pub forward: bool,
}

/// The VMs the lab's state knows.
fn vm_statuses(dir: &std::path::Path) -> Vec<VmStatus> {
    VmFiles::all(dir)
        .into_iter()
        .filter_map(|(name, files)| {
            let vm = files.read_config().ok()?;
            let pid = files.running_pid();
            let info = pid.and_then(crate::runner::proc_info);
            let words = Config::parse(&vm.cmdline);
            let state = match (pid, files.pid()) {
                (Some(_), _) => "running",
                (None, Some(_)) => "crashed",
                (None, None) => "stopped",
            };
            Some(VmStatus {
                name,
                state: state.to_string(),
                pid,
                uptime_s: info.as_ref().map(|i| i.uptime.as_secs()),
                vcpus: vm.vcpus,
                memory_bytes: vm.memory_bytes,
                memory: show_size(vm.memory_bytes),
                rss_bytes: info.as_ref().map(|i| i.rss_bytes),
                nics: vm
                    .nics
                    .iter()
                    .enumerate()
                    .map(|(index, n)| NicStatus {
                        mac: n.mac.clone(),
                        tap: n.tap.clone(),
                        bridge: n.bridge.clone(),
                        vlans: n.vlans.describe(),
                        addresses: nic_addresses(&words, index),
                    })
                    .collect(),
                routes: routes(&words),
                forward: words.forward,
            })
        })
        .collect()
}

/// The state of one lab.
#[derive(Debug, Clone, Serialize)]
pub struct LabStatus {
    /// The lab.
    pub lab: String,
    /// Its namespace.
    pub netns: Option<String>,
    /// Whether that namespace exists.
    pub netns_present: bool,
    /// How VLANs are enforced.
    pub vlan_mode: VlanMode,
    /// The same, in words.
    pub vlan_mode_text: String,
    /// Whether the lab has any VLAN (only then does `vlan_mode` matter).
    pub vlans: bool,
    /// The topology file of the last `up`.
    pub file: Option<std::path::PathBuf>,
    /// The lab's objects.
    pub objects: Vec<ObjectStatus>,
    /// The lab's VMs.
    pub vms: Vec<VmStatus>,
    /// Interfaces carrying the lab's marker that the lab no longer wants.
    pub stale: Vec<String>,
    /// Things worth knowing.
    pub notes: Vec<String>,
}

impl LabStatus {
    /// Whether every object is present and as wanted and every VM runs.
    pub fn healthy(&self) -> bool {
        self.stale.is_empty()
            && self.objects.iter().all(|o| o.state == "present")
            && self.vms.iter().all(|v| v.state == "running")
    }
}

fn role(kind: &PortKind) -> String {
    match kind {
        PortKind::Tap => "tap".to_string(),
        PortKind::VmNic { vm, nic } => format!("vm {vm} nic {nic}"),
        PortKind::Veth { peer, .. } => format!("link to {peer}"),
    }
}

/// Reports on lab `lab`. Enters the lab's namespace if it has one.
pub fn status(lab: &str, root: &StateRoot) -> Result<LabStatus, LabError> {
    let dir = root.lab_dir(lab);
    let meta = super::names::lab(lab, root)?;
    let (_, observed) = observe_in(meta.netns.as_deref())?;
    let journal = LabJournal::read(&dir).map_err(state_error(&dir))?;
    let desired = &meta.desired;
    let features = HostFeatures {
        vlan_filtering: meta.vlan_mode == VlanMode::Bridge,
    };
    let mark = crate::observe::marker(lab);
    let foreign = |name: &str| {
        observed.get(name).is_some_and(|l| {
            l.alias.as_deref() != Some(mark.as_str()) && !journal.pending.contains_key(name)
        })
    };
    // Plan without the foreign objects, so the rest can still be judged.
    let mut judged: Desired = desired.clone();
    judged.bridges.retain(|b| !foreign(&b.name));
    judged.ports.retain(|p| !foreign(&p.name));
    let actions = plan::plan(&judged, &observed, &journal, features)
        .map(|p| p.actions)
        .unwrap_or_default();
    let mut objects = Vec::new();
    let mut add = |name: &str, kind: &str, role: String, observed: &Observed| {
        let repairs: Vec<String> = actions
            .iter()
            .filter(|a| a.subject() == name && !matches!(a, Action::Delete { .. }))
            .map(ToString::to_string)
            .collect();
        let state = if foreign(name) {
            "foreign"
        } else if observed.get(name).is_none() {
            "missing"
        } else if repairs.is_empty() {
            "present"
        } else {
            "drifted"
        };
        objects.push(ObjectStatus {
            name: name.to_string(),
            kind: kind.to_string(),
            role,
            state: state.to_string(),
            repairs,
        });
    };
    for bridge in &desired.bridges {
        add(&bridge.name, "bridge", "bridge".to_string(), &observed);
    }
    for port in &desired.ports {
        let kind = if port.is_tap() { "tap" } else { "veth" };
        add(&port.name, kind, role(&port.kind), &observed);
    }
    let stale = actions
        .iter()
        .filter_map(|a| match a {
            Action::Delete { name, kind } => Some(format!("{kind} {name}")),
            _ => None,
        })
        .collect();
    let netns_present = meta.netns.as_deref().is_none_or(netns::exists);
    Ok(LabStatus {
        lab: lab.to_string(),
        netns: meta.netns.clone(),
        netns_present,
        vlan_mode: meta.vlan_mode,
        vlan_mode_text: meta.vlan_mode.describe().to_string(),
        vlans: super::has_vlans(desired),
        file: meta.file.clone(),
        objects,
        vms: vm_statuses(&dir),
        stale,
        notes: super::notes(desired, meta.vlan_mode),
    })
}
