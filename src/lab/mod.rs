//! Whole-lab operations the CLI runs: `plan`, `up`, `down` and `status`, tying
//! together state (lock, journal, `lab.json`), namespaces, observe, plan and apply.

pub mod meta;
mod start;
mod status;
pub mod vms;
pub mod vmspec;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use status::{LabStatus, NicStatus, ObjectStatus, VmStatus, status};
pub use vms::VmAction;

use crate::apply::{self, ApplyError, Executor};
use crate::netlink::Netlink;
use crate::netns;
use crate::observe::{self, Observed};
use crate::plan::{self, Desired, HostFeatures, LabJournal, LabState, Object, Plan, PlanError, VlanMode};
use crate::state::{self, LabLock, LockError, StateRoot};
use crate::topology::Topology;
use crate::runner::LabVm;

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
    /// `status` or `down --lab` of a lab without state.
    #[error("no lab {lab} in {}", .root.display())]
    #[diagnostic(
        code(kvmlab::no_such_lab),
        help("`kvmlab status` lists the labs there; --state-dir picks another place")
    )]
    NoSuchLab {
        /// The lab.
        lab: String,
        /// The state root.
        root: PathBuf,
    },
}

fn state_error(dir: &Path) -> impl Fn(io::Error) -> LabError + '_ {
    move |source| LabError::State {
        dir: dir.to_path_buf(),
        source,
    }
}

fn netns_error(name: &str) -> impl Fn(io::Error) -> LabError + '_ {
    move |source| LabError::Netns {
        name: name.to_string(),
        source,
    }
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
        netns::enter(name).map_err(netns_error(name))?;
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

/// What `kvmlab plan` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    /// The lab.
    pub lab: String,
    /// Its namespace.
    pub netns: Option<String>,
    /// Whether `up` would create the namespace.
    pub create_netns: bool,
    /// The actions.
    pub plan: Plan,
    /// What would happen to VMs.
    pub vms: Vec<VmAction>,
    /// How VLANs would be enforced.
    pub vlan_mode: VlanMode,
    /// Things worth knowing.
    pub notes: Vec<String>,
}

impl PlanReport {
    /// Whether `up` would change anything.
    pub fn has_changes(&self) -> bool {
        self.create_netns || !self.plan.is_empty() || !self.vms.is_empty()
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

/// Plans `up` of `topology` (from `file`) without changing anything.
pub fn plan_up(
    topology: &Topology,
    file: Option<&Path>,
    options: &LabOptions,
) -> Result<PlanReport, LabError> {
    let (lab, netns) = identity(topology, options);
    let desired = Desired::from_topology(topology, &lab);
    let dir = options.root.lab_dir(&lab);
    let (_, observed) = observe_in(netns.as_deref())?;
    let state = LabJournal::read(&dir).map_err(state_error(&dir))?;
    let features = features(&observed);
    let plan = plan::plan(&desired, &observed, &state, features)?;
    let create_netns = netns.as_deref().is_some_and(|n| !netns::exists(n));
    let mode = features.vlan_mode();
    let wanted = wanted_vms(topology, &lab, file, mode);
    Ok(PlanReport {
        vms: vms::plan_vms(&wanted, &vms::seen_vms(&dir)),
        notes: notes(&desired, mode),
        lab,
        netns,
        create_netns,
        plan,
        vlan_mode: mode,
    })
}

/// What `up` or `down` did.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// The lab.
    pub lab: String,
    /// Its namespace.
    pub netns: Option<String>,
    /// The plan that was applied.
    pub plan: Plan,
    /// What was done to VMs.
    pub vms: Vec<VmAction>,
    /// Steps run.
    pub steps: usize,
    /// Netlink write requests (and TAP ioctls) sent.
    pub netlink_writes: u64,
    /// How VLANs are enforced.
    pub vlan_mode: VlanMode,
    /// Whether a namespace was created (`up`) or removed (`down`).
    pub netns_changed: bool,
    /// Things worth knowing.
    pub notes: Vec<String>,
}

/// Brings the network of `topology` up (or repairs it), from `file`.
pub fn up(
    topology: &Topology,
    file: Option<&Path>,
    options: &LabOptions,
) -> Result<RunReport, LabError> {
    let (lab, netns) = identity(topology, options);
    require_caps("up", netns.is_some())?;
    let desired = Desired::from_topology(topology, &lab);
    let dir = options.root.lab_dir(&lab);
    let fresh = !dir.exists();
    let lock = LabLock::take(&dir, &lab, lock_wait())?;
    let old = meta::read_meta(&dir).map_err(state_error(&dir))?;
    if let Some(old) = &old {
        if old.netns != netns {
            let show = |n: &Option<String>| n.clone().unwrap_or_else(|| "(host)".into());
            return Err(LabError::NetnsChanged {
                lab,
                old: show(&old.netns),
                new: show(&netns),
            });
        }
    }
    let (mut netlink, observed) = observe_in(netns.as_deref())?;
    let state = LabJournal::read(&dir).map_err(state_error(&dir))?;
    let features = features(&observed);
    let plan = match plan::plan(&desired, &observed, &state, features) {
        Ok(plan) => plan,
        Err(error) => {
            if fresh {
                drop(lock);
                let _ = state::remove_dir(&dir);
            }
            return Err(error.into());
        }
    };
    let create_netns = netns.as_deref().is_some_and(|n| !netns::exists(n));
    let mode = features.vlan_mode();
    let meta = meta::LabMeta {
        lab: lab.clone(),
        netns: netns.clone(),
        netns_created: create_netns || old.as_ref().is_some_and(|m| m.netns_created),
        vlan_mode: mode,
        file: file.map(|f| std::path::absolute(f).unwrap_or_else(|_| f.to_path_buf())),
        desired: desired.clone(),
    };
    if old.as_ref() != Some(&meta) {
        meta::write_meta(&dir, &meta).map_err(state_error(&dir))?;
    }
    let wanted = wanted_vms(topology, &lab, file, mode);
    let vm_actions = vms::plan_vms(&wanted, &vms::seen_vms(&dir));
    vms::stop_phase(&vm_actions, &dir)
        .map_err(|(vm, source)| LabError::VmProcess { vm, source })?;
    if let (true, Some(name)) = (create_netns, netns.as_deref()) {
        netns::create(name).map_err(netns_error(name))?;
        netlink = Some(Netlink::open().map_err(LabError::Netlink)?);
    }
    let mut netlink = match netlink {
        Some(n) => n,
        None => Netlink::open().map_err(LabError::Netlink)?,
    };
    let (steps, writes) = if plan.is_empty() {
        // Nothing applied: the observation stands verified. Forget begun steps
        // that left nothing behind.
        if !state.pending.is_empty() {
            let mut journal = LabJournal::open(&dir).map_err(state_error(&dir))?;
            let objects = owned_objects(&lab, &observed, journal.state());
            journal.compact(objects).map_err(state_error(&dir))?;
        }
        (0, 0)
    } else {
        let mut journal = LabJournal::open(&dir).map_err(state_error(&dir))?;
        let (steps, writes) = {
            let mut executor = Executor::new(&mut netlink, &lab);
            let steps = apply::apply(&plan, &mut executor, &mut journal, dir.clone())?;
            (steps, executor.netlink().writes())
        };
        // Verify: a fresh look at the host must call for nothing more.
        let after = observe::observe(&mut netlink).map_err(LabError::Netlink)?;
        let remaining = plan::plan(&desired, &after, journal.state(), features)?;
        if !remaining.is_empty() {
            return Err(LabError::Verify {
                lab,
                remaining: remaining.actions.iter().map(ToString::to_string).collect(),
            });
        }
        let objects = owned_objects(&lab, &after, journal.state());
        journal.compact(objects).map_err(state_error(&dir))?;
        (steps, writes)
    };
    start::start_phase(
        &vm_actions,
        &wanted,
        &dir,
        netns.as_deref(),
        options.ready_timeout,
    )?;
    drop(lock);
    Ok(RunReport {
        notes: notes(&desired, mode),
        lab,
        netns,
        plan,
        vms: vm_actions,
        steps,
        netlink_writes: writes,
        vlan_mode: mode,
        netns_changed: create_netns,
    })
}

/// The lab's objects now on the host, in creation order where the journal knows it.
fn owned_objects(lab: &str, observed: &Observed, state: &LabState) -> Vec<Object> {
    let mut objects: Vec<Object> = state
        .created
        .iter()
        .filter(|o| {
            observed
                .get(&o.name)
                .is_some_and(|l| l.owner() == Some(lab))
        })
        .cloned()
        .collect();
    for link in observed.marked(lab) {
        if !objects.iter().any(|o| o.name == link.name) {
            let kind = match link.kind {
                observe::LinkKind::Bridge => plan::ObjectKind::Bridge,
                observe::LinkKind::Veth => plan::ObjectKind::Veth,
                _ => plan::ObjectKind::Tap,
            };
            objects.push(Object {
                name: link.name.clone(),
                kind,
                peer: link.peer.clone(),
            });
        }
    }
    objects
}

/// Whether every interface in `observed` but loopback carries `lab`'s marker.
fn only_ours(observed: &Observed, lab: &str) -> bool {
    let mark = observe::marker(lab);
    observed
        .links
        .values()
        .filter(|link| link.name != "lo")
        .all(|link| link.alias.as_deref() == Some(mark.as_str()))
}

/// Takes lab `lab` down: every object it created, its namespace if it made one, and
/// its state directory. `netns` is where to look when the lab has no state.
pub fn down(lab: &str, netns: Option<String>, root: &StateRoot) -> Result<RunReport, LabError> {
    let dir = root.lab_dir(lab);
    let meta = meta::read_meta(&dir).map_err(state_error(&dir))?;
    let netns = meta.as_ref().map_or(netns, |m| m.netns.clone());
    require_caps("down", netns.is_some())?;
    let mut report = RunReport {
        lab: lab.to_string(),
        netns: netns.clone(),
        plan: Plan {
            lab: lab.to_string(),
            actions: Vec::new(),
        },
        vms: Vec::new(),
        steps: 0,
        netlink_writes: 0,
        vlan_mode: meta.as_ref().map_or(VlanMode::VmNics, |m| m.vlan_mode),
        netns_changed: false,
        notes: Vec::new(),
    };
    let lock = LabLock::take(&dir, lab, lock_wait())?;
    // VMs first: they hold the TAPs open.
    report.vms = vms::plan_vms_down(&vms::seen_vms(&dir));
    vms::stop_phase(&report.vms, &dir)
        .map_err(|(vm, source)| LabError::VmProcess { vm, source })?;
    let (netlink, observed) = observe_in(netns.as_deref())?;
    let created_netns = netns
        .as_deref()
        .filter(|_| meta.as_ref().is_some_and(|m| m.netns_created));
    // A namespace kvmlab made that holds nothing but the lab's own interfaces
    // goes as a whole: the kernel removes them with it, far faster than one
    // netlink request each. Anything else in it means deleting ours one by one.
    let whole_namespace = created_netns.is_some() && only_ours(&observed, lab);
    // What is left in the namespace once ours are gone: not ours to delete.
    let mut foreign: Vec<String> = Vec::new();
    if let Some(mut netlink) = netlink.filter(|_| !whole_namespace) {
        let state = LabJournal::read(&dir).map_err(state_error(&dir))?;
        let features = HostFeatures {
            vlan_filtering: report.vlan_mode == VlanMode::Bridge,
        };
        let plan = plan::plan(&Desired::empty(lab), &observed, &state, features)?;
        let mut journal = LabJournal::open(&dir).map_err(state_error(&dir))?;
        {
            let mut executor = Executor::new(&mut netlink, lab);
            report.steps = apply::apply(&plan, &mut executor, &mut journal, dir.clone())?;
            report.netlink_writes = executor.netlink().writes();
        }
        report.plan = plan;
        let after = observe::observe(&mut netlink).map_err(LabError::Netlink)?;
        foreign = after
            .links
            .keys()
            .filter(|name| *name != "lo")
            .cloned()
            .collect();
        let remaining = plan::plan(&Desired::empty(lab), &after, journal.state(), features)?;
        if !remaining.is_empty() {
            return Err(LabError::Verify {
                lab: lab.to_string(),
                remaining: remaining.actions.iter().map(ToString::to_string).collect(),
            });
        }
    }
    if let (Some(name), false) = (created_netns, foreign.is_empty()) {
        report.notes.push(format!(
            "left namespace {name} in place: it holds interfaces kvmlab did not create ({})",
            foreign.join(", ")
        ));
    } else if let Some(name) = created_netns {
        if whole_namespace {
            report.notes.push(format!(
                "removed namespace {name} with the lab's {} interfaces in it",
                observed.links.len().saturating_sub(1)
            ));
        }
        if netns::exists(name) {
            netns::delete(name).map_err(netns_error(name))?;
            report.netns_changed = true;
        }
    }
    state::remove_dir(&dir).map_err(state_error(&dir))?;
    drop(lock);
    Ok(report)
}
