//! The VMs of a lab: which to start, restart or stop (a pure plan from the wanted
//! VMs and what the state directory says runs), and carrying that plan out with
//! one background process per VM.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::runner::LabVm;
use crate::runner::{self, VmFiles};

/// How long a VM gets to stop after SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// One VM step of `up` or `down`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum VmAction {
    /// Start a VM that does not run.
    StartVm {
        /// The VM.
        vm: String,
    },
    /// Stop a running (or crashed) VM and start it again.
    RestartVm {
        /// The VM.
        vm: String,
        /// Why: what changed, or that its process is gone.
        reason: String,
    },
    /// Stop a VM the lab no longer has, and forget it.
    StopVm {
        /// The VM.
        vm: String,
    },
}

impl VmAction {
    /// The VM the action is about.
    pub fn vm(&self) -> &str {
        match self {
            VmAction::StartVm { vm } | VmAction::RestartVm { vm, .. } | VmAction::StopVm { vm } => {
                vm
            }
        }
    }
}

impl fmt::Display for VmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmAction::StartVm { vm } => write!(f, "+ start vm {vm}"),
            VmAction::RestartVm { vm, reason } => write!(f, "~ restart {vm}: {reason}"),
            VmAction::StopVm { vm } => write!(f, "- stop vm {vm}"),
        }
    }
}

/// A VM the lab's state knows about.
#[derive(Debug, Clone, PartialEq)]
pub struct SeenVm {
    /// The VM.
    pub name: String,
    /// What it was started as (`vm.json`), if readable.
    pub config: Option<LabVm>,
    /// Its process runs.
    pub running: bool,
}

/// What the state directory of a lab says about its VMs.
pub fn seen_vms(lab_dir: &Path) -> Vec<SeenVm> {
    VmFiles::all(lab_dir)
        .into_iter()
        .map(|(name, files)| SeenVm {
            config: files.read_config().ok(),
            running: files.running_pid().is_some(),
            name,
        })
        .collect()
}

/// The VM actions that take the VMs `seen` to `wanted`: stops of VMs no longer
/// wanted first, then restarts (changed or crashed VMs), then starts, each group
/// in the order of the file. An unchanged running VM is left alone.
pub fn plan_vms(wanted: &[LabVm], seen: &[SeenVm]) -> Vec<VmAction> {
    let mut stops = Vec::new();
    let mut restarts = Vec::new();
    let mut starts = Vec::new();
    for old in seen {
        if !wanted.iter().any(|w| w.name == old.name) {
            stops.push(VmAction::StopVm {
                vm: old.name.clone(),
            });
        }
    }
    for vm in wanted {
        let Some(old) = seen.iter().find(|s| s.name == vm.name) else {
            starts.push(VmAction::StartVm {
                vm: vm.name.clone(),
            });
            continue;
        };
        let changes = match &old.config {
            Some(config) => vm.changes_from(config),
            None => vec!["its state is unreadable".to_string()],
        };
        let reason = match (old.running, changes.is_empty()) {
            (true, true) => continue,
            (true, false) => changes.join(", "),
            (false, true) => "crashed (its process is gone)".to_string(),
            (false, false) => format!("crashed (its process is gone); {}", changes.join(", ")),
        };
        restarts.push(VmAction::RestartVm {
            vm: vm.name.clone(),
            reason,
        });
    }
    stops.into_iter().chain(restarts).chain(starts).collect()
}

/// The plan of `down`: stop every VM the state knows.
pub fn plan_vms_down(seen: &[SeenVm]) -> Vec<VmAction> {
    seen.iter()
        .map(|s| VmAction::StopVm { vm: s.name.clone() })
        .collect()
}

/// Carries out the stopping half of `actions`: stops VMs to be stopped or
/// restarted (all at once); forgets (removes the folder of) VMs to be stopped.
pub fn stop_phase(actions: &[VmAction], lab_dir: &Path) -> Result<(), (String, std::io::Error)> {
    let to_stop: Vec<(&VmAction, VmFiles)> = actions
        .iter()
        .filter(|a| !matches!(a, VmAction::StartVm { .. }))
        .map(|a| (a, VmFiles::new(lab_dir, a.vm())))
        .collect();
    let files: Vec<&VmFiles> = to_stop.iter().map(|(_, f)| f).collect();
    runner::stop(&files, STOP_GRACE).map_err(|e| ("(stopping VMs)".to_string(), e))?;
    for (action, files) in &to_stop {
        if let VmAction::StopVm { vm } = action {
            match std::fs::remove_dir_all(&files.dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err((vm.clone(), e));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
