//! `down`: the lab's VMs stopped and every object it created removed, from its
//! state alone.

use super::*;

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
        vlans: meta.as_ref().is_some_and(|m| has_vlans(&m.desired)),
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
