//! The names a command takes (a lab, a VM, a bridge), looked up in the lab's state;
//! a name that is not there is an error that lists those that are and suggests the
//! closest, as `git` and `cargo` do for a mistyped command.

use std::path::Path;

use super::LabError;
use super::meta::{self, LabMeta};
use crate::runner::VmFiles;
use crate::state::StateRoot;
use crate::topology::diagnostic::did_you_mean;

/// The help for a name that is not among `known` (`kind` in the plural: "labs").
fn help(name: &str, kind: &str, known: &[String], none: &str) -> String {
    if known.is_empty() {
        return none.to_string();
    }
    let list = format!("{kind}: {}", known.join(", "));
    match did_you_mean(name, known.iter().map(String::as_str)) {
        Some(suggestion) => format!("{suggestion} ({list})"),
        None => list,
    }
}

/// The error for lab `lab`, which has no state under `root`.
pub fn no_such_lab(lab: &str, root: &StateRoot) -> LabError {
    let labs = root.labs();
    LabError::NoSuchLab {
        lab: lab.to_string(),
        root: root.0.clone(),
        help: help(
            lab,
            &format!("the labs in {}", root.0.display()),
            &labs,
            &format!(
                "there are no labs in {} (`kvmlab up FILE` makes one; --state-dir looks elsewhere)",
                root.0.display()
            ),
        ),
    }
}

/// Lab `lab`'s `lab.json`, or an error naming the labs there are.
pub fn lab(lab: &str, root: &StateRoot) -> Result<LabMeta, LabError> {
    let dir = root.lab_dir(lab);
    match meta::read_meta(&dir) {
        Ok(Some(meta)) => Ok(meta),
        Ok(None) => Err(no_such_lab(lab, root)),
        Err(source) => Err(super::read_error(&dir, source)),
    }
}

/// The files of VM `vm` of lab `lab`, or an error naming the VMs the lab has.
pub fn vm(lab: &str, vm: &str, root: &StateRoot) -> Result<VmFiles, LabError> {
    self::lab(lab, root)?;
    let lab_dir = root.lab_dir(lab);
    let files = VmFiles::new(&lab_dir, vm);
    if files.dir.exists() {
        return Ok(files);
    }
    let vms: Vec<String> = VmFiles::all(&lab_dir).into_iter().map(|v| v.0).collect();
    Err(LabError::NoSuchVm {
        lab: lab.to_string(),
        vm: vm.to_string(),
        help: help(vm, "its VMs", &vms, "it has no VMs"),
    })
}

/// Checks that lab `lab` (as `meta` says) has bridge `bridge`.
pub fn bridge(meta: &LabMeta, bridge: &str) -> Result<(), LabError> {
    let bridges: Vec<String> = meta
        .desired
        .bridges
        .iter()
        .map(|b| b.name.clone())
        .collect();
    if bridges.iter().any(|b| b == bridge) {
        return Ok(());
    }
    Err(LabError::NoSuchBridge {
        lab: meta.lab.clone(),
        bridge: bridge.to_string(),
        help: help(bridge, "its bridges", &bridges, "it has no bridges"),
    })
}

/// Whether `path` exists but this process may not open it as `write` says: the
/// lab's files are root's.
pub fn forbidden(path: &Path, write: bool) -> bool {
    let mode = if write {
        nix::unistd::AccessFlags::W_OK
    } else {
        nix::unistd::AccessFlags::R_OK
    };
    matches!(
        nix::unistd::access(path, mode),
        Err(nix::errno::Errno::EACCES | nix::errno::Errno::EPERM)
    )
}

/// The names of what `kind` asks for, for shell completion: `labs`, or the `vms`
/// or `bridges` of lab `lab`. Nothing (never an error) where there is nothing.
pub fn complete(root: &StateRoot, kind: NameKind, lab: Option<&str>) -> Vec<String> {
    match (kind, lab) {
        (NameKind::Labs, _) => root.labs(),
        (NameKind::Vms, Some(lab)) => VmFiles::all(&root.lab_dir(lab))
            .into_iter()
            .map(|(name, _)| name)
            .collect(),
        (NameKind::Bridges, Some(lab)) => meta::read_meta(&root.lab_dir(lab))
            .ok()
            .flatten()
            .map(|m| m.desired.bridges.into_iter().map(|b| b.name).collect())
            .unwrap_or_default(),
        (_, None) => Vec::new(),
    }
}

/// What names [`complete`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// The labs with state.
    Labs,
    /// A lab's VMs.
    Vms,
    /// A lab's bridges.
    Bridges,
}
