//! `lab.json`: what `down` and `status` need to know of a lab without its topology
//! file.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Desired, VlanMode};
use crate::state::{self, META_FILE};

/// The contents of `lab.json`.
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

/// Reads `lab.json` of the lab in `dir`, if there is one.
pub fn read_meta(dir: &Path) -> io::Result<Option<LabMeta>> {
    state::read_json(dir, META_FILE)
}

/// Writes `lab.json` of the lab in `dir` atomically.
pub fn write_meta(dir: &Path, meta: &LabMeta) -> io::Result<()> {
    state::write_json(dir, META_FILE, meta)
}
