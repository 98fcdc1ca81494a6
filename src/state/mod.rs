//! The lab's state directory (`/run/kvmlab/<lab>/` unless told otherwise): what the
//! lab is (`lab.json`), the journal of every step (`journal`), and the lock held for
//! the whole of `up` and `down` (`lock`).
//!
//! This layer only persists: what the files hold is defined by the layers above
//! (the plan's steps and lab state, the lab's `lab.json`).

mod journal;
mod lock;

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use journal::{Journal, Replay};
pub use lock::{LabLock, LockError};

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

/// The file of a lab's state directory that says what the lab is (`lab.json`): a
/// folder holding one is a lab's.
pub const META_FILE: &str = "lab.json";

/// Reads the JSON file `name` of the lab in `dir`, if there is one.
pub fn read_json<T: DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the JSON file `name` of the lab in `dir` atomically (write aside, then
/// rename).
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(temporary, dir.join(name))
}

/// Removes the lab's state directory (the caller holds its lock).
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
