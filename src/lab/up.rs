//! `plan` and `up`: what the file asks for, planned against the host, applied, and
//! the lab's VMs started.

use std::path::Path;

use serde::Serialize;

use super::*;

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
    /// Whether the lab has any VLAN (only then does `vlan_mode` matter).
    pub vlans: bool,
    /// Things worth knowing.
    pub notes: Vec<String>,
}

impl PlanReport {
    /// Whether `up` would change anything.
    pub fn has_changes(&self) -> bool {
        self.create_netns || !self.plan.is_empty() || !self.vms.is_empty()
    }
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
    // What `up` would refuse, `plan` refuses alike.
    let old = meta::read_meta(&dir).map_err(|e| read_error(&dir, e))?;
    check_netns(old.as_ref(), &lab, &netns)?;
    let (_, observed) = observe_in(netns.as_deref())?;
    let state = LabJournal::read(&dir).map_err(|e| read_error(&dir, e))?;
    let features = features(&observed);
    let plan = plan::plan(&desired, &observed, &state, features)?;
    let create_netns = netns.as_deref().is_some_and(|n| !netns::exists(n));
    let mode = features.vlan_mode();
    let wanted = wanted_vms(topology, &lab, file, mode);
    Ok(PlanReport {
        vms: vms::plan_vms(&wanted, &vms::seen_vms(&dir)),
        notes: file_notes(&desired, mode, topology),
        vlans: has_vlans(&desired),
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
    /// Whether the lab has any VLAN (only then does `vlan_mode` matter).
    pub vlans: bool,
    /// Whether a namespace was created (`up`) or removed (`down`).
    pub netns_changed: bool,
    /// Things worth knowing.
    pub notes: Vec<String>,
}

/// Brings the network of `topology` up (or repairs it), from `file`. `planned` is
/// shown the plan (network, then VMs) before anything changes, so that a person
/// reads what will change before the VMs' progress.
pub fn up(
    topology: &Topology,
    file: Option<&Path>,
    options: &LabOptions,
    planned: &mut dyn FnMut(&Plan, &[VmAction]),
) -> Result<RunReport, LabError> {
    let (lab, netns) = identity(topology, options);
    require_caps("up", netns.is_some())?;
    let desired = Desired::from_topology(topology, &lab);
    let dir = options.root.lab_dir(&lab);
    let fresh = !dir.exists();
    let lock = LabLock::take(&dir, &lab, lock_wait())?;
    let old = meta::read_meta(&dir).map_err(state_error(&dir))?;
    check_netns(old.as_ref(), &lab, &netns)?;
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
    planned(&plan, &vm_actions);
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
        notes: file_notes(&desired, mode, topology),
        vlans: has_vlans(&desired),
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

/// What `plan` and `up` say besides the plan: the lab's notes (how VLANs behave
/// here) and the file's warnings.
fn file_notes(desired: &Desired, mode: VlanMode, topology: &Topology) -> Vec<String> {
    notes(desired, mode)
        .into_iter()
        .chain(crate::topology::warnings(topology))
        .collect()
}
