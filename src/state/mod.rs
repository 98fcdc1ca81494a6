//! The lab's state directory (`/run/kvmlab/<lab>/` unless told otherwise): what the
//! lab is (`lab.json`), the journal of every step (`journal`), and the lock held for
//! the whole of `up` and `down` (`lock`).

mod journal;
mod lock;

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use journal::{Journal, LabState, Object};
pub use lock::{LabLock, LockError};

use crate::plan::Desired;

/// Where labs keep their state unless `--state-dir` or `KVMLAB_STATE_DIR` says.
pub const DEFAULT_STATE_ROOT: &str = "/run/kvmlab";
/// The environment variable that moves the state root (tests use it).
pub const STATE_DIR_ENV: &str = "KVMLAB_STATE_DIR";

/// The folder holding every lab's state directory.
#[derive(Debug, Clone)]
pub struct StateRoot(pub PathBuf);

impl StateRoot {
    /// `--state-dir` if given, else `KVMLAB_STATE_DIR`, else `/run/kvmlab`.
    pub fn resolve(flag: Option<&Path>) -> StateRoot {
        let path = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(STATE_DIR_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT));
        StateRoot(path)
    }

    /// The state directory of lab `lab`.
    pub fn lab_dir(&self, lab: &str) -> PathBuf {
        self.0.join(lab)
    }

    /// Names of labs with a state directory, sorted.
    pub fn labs(&self) -> Vec<String> {
        let mut labs: Vec<String> = std::fs::read_dir(&self.0)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join(META_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        labs.sort();
        labs
    }
}

/// How a lab's VLANs are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VlanMode {
    /// By the bridges' VLAN filtering.
    Bridge,
    /// By the VMM at each VM NIC, because the kernel lacks bridge VLAN filtering.
    VmNics,
}

impl VlanMode {
    /// Whether the VMM must enforce each VM NIC's VLANs (tag on the way out, drop
    /// or untag on the way in). In [`VlanMode::Bridge`] it must not: the bridge
    /// port already does, so the NIC passes frames unchanged (transparent), or an
    /// access NIC's frames would be tagged twice. Whoever maps a NIC's `vlan`/`trunk`
    /// to a VMM policy asks this, with the mode recorded in the lab's `lab.json`.
    pub fn enforced_at_vm_nics(self) -> bool {
        self == VlanMode::VmNics
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            VlanMode::Bridge => "VLANs enforced by bridge VLAN filtering",
            VlanMode::VmNics => {
                "VLANs enforced at VM NICs (kernel lacks CONFIG_BRIDGE_VLAN_FILTERING)"
            }
        }
    }
}

/// `lab.json`: what `down` and `status` need without the topology file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabMeta {
    /// The lab's name.
    pub lab: String,
    /// The network namespace the lab lives in, if any.
    pub netns: Option<String>,
    /// Whether kvmlab created that namespace (and `down` removes it).
    pub netns_created: bool,
    /// How VLANs are enforced.
    pub vlan_mode: VlanMode,
    /// The topology file of the last `up`.
    pub file: Option<PathBuf>,
    /// What the last `up` wanted.
    pub desired: Desired,
}

const META_FILE: &str = "lab.json";

/// Reads `lab.json` of the lab in `dir`, if there is one.
pub fn read_meta(dir: &Path) -> io::Result<Option<LabMeta>> {
    match std::fs::read(dir.join(META_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `lab.json` atomically (write aside, then rename).
pub fn write_meta(dir: &Path, meta: &LabMeta) -> io::Result<()> {
    let temporary = dir.join(".lab.json.tmp");
    let bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(temporary, dir.join(META_FILE))
}

/// Removes the lab's state directory (the caller holds its lock).
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
