//! Whole-lab operations the CLI runs: `plan`, `up`, `down` and `status`, tying
//! together state (lock, journal, `lab.json`), namespaces, observe, plan and apply.

mod down;
pub mod meta;
pub mod names;
mod start;
mod status;
mod up;
pub mod vms;
pub mod vmspec;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use down::down;
pub use status::{LabStatus, NicStatus, ObjectStatus, VmStatus, status};
pub use up::{PlanReport, RunReport, plan_up, up};
pub use vms::VmAction;

use crate::apply::{self, ApplyError, Executor};
use crate::netlink::Netlink;
use crate::netns;
use crate::observe::{self, Observed};
use crate::plan::{
    self, Desired, HostFeatures, LabJournal, LabState, Object, Plan, PlanError, VlanMode,
};
use crate::runner::LabVm;
use crate::state::{self, LabLock, LockError, StateRoot};
use crate::topology::Topology;

/// The environment variable that sets how long to wait for a busy lab's lock.
pub const LOCK_WAIT_ENV: &str = "KVMLAB_LOCK_WAIT_MS";

/// What the command line says about where and as what a lab runs.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// `--lab`: overrides the file's lab name.
    pub lab: Option<String>,
    /// `--netns`: overrides the file's namespace.
    pub netns: Option<String>,
    /// Where lab state lives.
    pub root: StateRoot,
    /// How long `up` waits for every VM to be ready.
    pub ready_timeout: Duration,
}

/// How long `up` waits for VMs to be ready unless told otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LabError {
    /// The process lacks a capability.
    #[error("kvmlab {command} needs {capability}, which this process does not have")]
    #[diagnostic(
        code(kvmlab::permission),
        help("run it as root (sudo), or grant the capability")
    )]
    Permission {
        /// The command.
        command: &'static str,
        /// The missing capabilities.
        capability: String,
    },
    /// The lab's lock is taken.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] LockError),
    /// No plan could be made.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(#[from] PlanError),
    /// A step failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Apply(#[from] ApplyError),
    /// The namespace could not be made, entered or removed.
    #[error("network namespace {name}: {source}")]
    #[diagnostic(code(kvmlab::netns))]
    Netns {
        /// The namespace.
        name: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Netlink failed outside a step (opening, observing).
    #[error("cannot read the host's network over netlink: {0}")]
    #[diagnostic(code(kvmlab::netlink))]
    Netlink(#[source] io::Error),
    /// The state directory could not be read or written.
    #[error("lab state in {}: {source}", .dir.display())]
    #[diagnostic(code(kvmlab::state::io))]
    State {
        /// The lab's state directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// After applying, the host still differs from the plan's goal.
    #[error("lab {lab}: the host does not match after applying; still to do: {}", .remaining.join("; "))]
    #[diagnostic(
        code(kvmlab::verify),
        help("something changed the host during the run, or the kernel ignored a setting")
    )]
    Verify {
        /// The lab.
        lab: String,
        /// What a new plan would still do.
        remaining: Vec<String>,
    },
    /// The lab was brought up in another namespace.
    #[error("lab {lab} runs in namespace {old}, not {new}")]
    #[diagnostic(
        code(kvmlab::netns_changed),
        help("run `kvmlab down --lab {lab}` first, or pick another name with --lab")
    )]
    NetnsChanged {
        /// The lab.
        lab: String,
        /// Where it runs.
        old: String,
        /// Where it was asked to run.
        new: String,
    },
    /// A VM process could not be started or stopped.
    #[error("VM {vm}: {source}")]
    #[diagnostic(code(kvmlab::vm_process))]
    VmProcess {
        /// The VM.
        vm: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A VM did not become ready.
    #[error(
        "VM {vm} did not come up: {reason}\nits console ends with:\n{console_tail}\nits VMM log ends with:\n{vmm_tail}"
    )]
    #[diagnostic(
        code(kvmlab::vm_not_ready),
        help("`kvmlab logs LAB {vm}` shows its whole console; `kvmlab down` removes the lab")
    )]
    NotReady {
        /// The VM.
        vm: String,
        /// What went wrong.
        reason: String,
        /// The end of its console, indented.
        console_tail: String,
        /// The end of its VMM log, indented.
        vmm_tail: String,
    },
    /// A command named a lab that has no state.
    #[error("no lab {lab} in {}", .root.display())]
    #[diagnostic(code(kvmlab::no_such_lab))]
    NoSuchLab {
        /// The lab.
        lab: String,
        /// The state root.
        root: PathBuf,
        /// The labs there are, and the likeliest.
        #[help]
        help: String,
    },
    /// A command named a VM the lab does not have.
    #[error("lab {lab} has no VM {vm}")]
    #[diagnostic(code(kvmlab::no_such_vm))]
    NoSuchVm {
        /// The lab.
        lab: String,
        /// The VM.
        vm: String,
        /// The VMs there are, and the likeliest.
        #[help]
        help: String,
    },
    /// A command named a bridge the lab does not have.
    #[error("lab {lab} has no bridge {bridge}")]
    #[diagnostic(code(kvmlab::no_such_bridge))]
    NoSuchBridge {
        /// The lab.
        lab: String,
        /// The bridge.
        bridge: String,
        /// The bridges there are, and the likeliest.
        #[help]
        help: String,
    },
    /// This user may not do it: a lab's state, VMs and namespace are root's.
    #[error("{action} needs root: {reason}")]
    #[diagnostic(
        code(kvmlab::permission),
        help("run it as root (sudo): kvmlab makes a lab's state, VMs and namespace as root")
    )]
    NeedsRoot {
        /// What was tried.
        action: String,
        /// What root has that this process lacks.
        reason: String,
    },
}

fn state_error(dir: &Path) -> impl Fn(io::Error) -> LabError + '_ {
    move |source| LabError::State {
        dir: dir.to_path_buf(),
        source,
    }
}

/// The error for reading the lab's state in `dir`: "needs root" when the
/// kernel says permission denied.
fn read_error(dir: &Path, source: io::Error) -> LabError {
    if source.kind() == io::ErrorKind::PermissionDenied {
        LabError::NeedsRoot {
            action: format!("reading the lab's state in {}", dir.display()),
            reason: format!("{source}; the state is root's"),
        }
    } else {
        state_error(dir)(source)
    }
}

fn netns_error(name: &str) -> impl Fn(io::Error) -> LabError + '_ {
    move |source| LabError::Netns {
        name: name.to_string(),
        source,
    }
}

/// The error for entering namespace `name`: "needs root" for EPERM, which is
/// what a process without CAP_SYS_ADMIN gets from setns(2).
fn enter_error(name: &str, source: io::Error) -> LabError {
    if source.kind() == io::ErrorKind::PermissionDenied {
        LabError::NeedsRoot {
            action: format!("entering the lab's network namespace {name}"),
            reason: "setns(2) into it takes CAP_SYS_ADMIN, which this process does not have"
                .to_string(),
        }
    } else {
        netns_error(name)(source)
    }
}

/// Enters network namespace `name` (for commands that look into a lab), saying
/// that it needs root where this process may not.
pub fn enter_netns(name: &str) -> Result<(), LabError> {
    netns::enter(name).map_err(|source| enter_error(name, source))
}

/// Effective capabilities of this process (CapEff in /proc/self/status).
fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapEff:"))?.to_string();
            u64::from_str_radix(line.split_whitespace().nth(1)?, 16).ok()
        })
        .unwrap_or(0)
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

fn require_caps(command: &'static str, netns: bool) -> Result<(), LabError> {
    let caps = effective_caps();
    let mut missing = Vec::new();
    if caps & (1 << CAP_NET_ADMIN) == 0 {
        missing.push("CAP_NET_ADMIN");
    }
    if netns && caps & (1 << CAP_SYS_ADMIN) == 0 {
        missing.push("CAP_SYS_ADMIN (for the network namespace)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::Permission {
            command,
            capability: missing.join(" and "),
        })
    }
}

fn lock_wait() -> Duration {
    let ms = std::env::var(LOCK_WAIT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    Duration::from_millis(ms)
}

/// The lab's name and namespace for `topology` under `options`.
pub fn identity(topology: &Topology, options: &LabOptions) -> (String, Option<String>) {
    let lab = options.lab.clone().unwrap_or_else(|| topology.name.clone());
    let netns = options.netns.clone().or_else(|| topology.netns.clone());
    (lab, netns)
}

/// The lab whose last `up` was from `file`, when the file itself cannot be read.
pub fn lab_from_file(file: &Path, root: &StateRoot) -> Option<String> {
    let file = std::path::absolute(file).ok()?;
    root.labs().into_iter().find(|lab| {
        meta::read_meta(&root.lab_dir(lab))
            .ok()
            .flatten()
            .is_some_and(|m| m.file.as_deref() == Some(file.as_path()))
    })
}

/// Observes the lab's namespace: enters it if it exists, else sees an empty host.
/// Returns the open connection when there is a namespace to talk to.
fn observe_in(netns: Option<&str>) -> Result<(Option<Netlink>, Observed), LabError> {
    if let Some(name) = netns {
        if !netns::exists(name) {
            return Ok((None, Observed::default()));
        }
        netns::enter(name).map_err(|source| enter_error(name, source))?;
    }
    let mut netlink = Netlink::open().map_err(LabError::Netlink)?;
    let observed = observe::observe(&mut netlink).map_err(LabError::Netlink)?;
    Ok((Some(netlink), observed))
}

fn features(observed: &Observed) -> HostFeatures {
    // An unanswerable question counts as "no": then only host-side VLAN ports,
    // which need the feature, are refused.
    let vlan_filtering = observe::probe_vlan_filtering(observed).unwrap_or(false);
    HostFeatures { vlan_filtering }
}

/// Whether the lab has any VLAN (on a bridge, a port or a VM NIC): only then is
/// how VLANs are enforced worth saying.
pub fn has_vlans(desired: &Desired) -> bool {
    desired.bridges.iter().any(|b| !b.vlans.is_empty())
        || desired
            .ports
            .iter()
            .any(|p| p.vlans != plan::PortVlans::None)
}

/// Refuses to run lab `lab` in `netns` when its last `up` (`old`) put it in
/// another namespace: `up` and `plan` both say so.
fn check_netns(
    old: Option<&meta::LabMeta>,
    lab: &str,
    netns: &Option<String>,
) -> Result<(), LabError> {
    match old {
        Some(old) if old.netns != *netns => {
            let show = |n: &Option<String>| n.clone().unwrap_or_else(|| "(host)".into());
            Err(LabError::NetnsChanged {
                lab: lab.to_string(),
                old: show(&old.netns),
                new: show(netns),
            })
        }
        _ => Ok(()),
    }
}

fn notes(desired: &Desired, mode: VlanMode) -> Vec<String> {
    let mut notes = Vec::new();
    let links = desired.vlan_links();
    if mode == VlanMode::VmNics && !links.is_empty() {
        notes.push(format!(
            "links with vlan/trunk are plain cables on this host (all tags pass): {}",
            links.join(", ")
        ));
    }
    if mode == VlanMode::Bridge {
        notes.extend(plan::vlan::notes(desired));
    }
    notes
}

/// The folder a topology file's relative paths start from.
fn base_dir(file: Option<&Path>) -> PathBuf {
    file.and_then(|f| std::path::absolute(f).ok())
        .and_then(|f| f.parent().map(Path::to_path_buf))
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The lab's VMs as `up` would run them.
fn wanted_vms(topology: &Topology, lab: &str, file: Option<&Path>, mode: VlanMode) -> Vec<LabVm> {
    vmspec::lab_vms(topology, lab, &base_dir(file), mode.enforced_at_vm_nics())
}
