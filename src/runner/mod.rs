//! VM processes: each VM of a lab runs in its own background process, kvmlab
//! re-executed as `kvmlab __vmm --dir DIR [--netns NS]`, in a session of its own
//! (setsid) so that it outlives the command that started it.
//!
//! Everything about one VM lives in its folder of the lab's state directory
//! ([`VmFiles`]): the resolved VM (`vm.json`), the pid, the serial console log, the
//! VMM's own log, the console socket and the exit statistics. The parent side
//! ([`spawn`], [`stop`], [`ready`]) and the child side ([`child`]) meet only there.

pub mod child;
pub mod console;
mod pidfd;
mod proc;
mod spawn;
mod spec;

use std::io;
use std::path::{Path, PathBuf};

pub use proc::{ProcInfo, blocks_signal, proc_info};
pub use spawn::{ReadyError, Starting, spawn, stop, wait_ready};
pub use spec::{LabDisk, LabNic, LabVm, NicVlans, show_size};

/// The hidden subcommand that runs one VM.
pub const VMM_SUBCOMMAND: &str = "__vmm";

/// The files of one VM in the lab's state directory (`<lab dir>/vms/<vm>/`).
#[derive(Debug, Clone)]
pub struct VmFiles {
    /// The VM's folder.
    pub dir: PathBuf,
}

/// Where the VM folders of a lab live.
pub fn vms_dir(lab_dir: &Path) -> PathBuf {
    lab_dir.join("vms")
}

impl VmFiles {
    /// The files of VM `vm` of the lab whose state is in `lab_dir`.
    pub fn new(lab_dir: &Path, vm: &str) -> VmFiles {
        VmFiles {
            dir: vms_dir(lab_dir).join(vm),
        }
    }

    /// The VM folders present in `lab_dir`, sorted by VM name.
    pub fn all(lab_dir: &Path) -> Vec<(String, VmFiles)> {
        let mut all: Vec<(String, VmFiles)> = std::fs::read_dir(vms_dir(lab_dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let files = VmFiles::new(lab_dir, &name);
                (name, files)
            })
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The resolved VM the process runs (`vm.json`).
    pub fn config(&self) -> PathBuf {
        self.dir.join("vm.json")
    }
    /// The pid of the VM process.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }
    /// Everything the guest printed on its serial console.
    pub fn serial_log(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    /// What the VM process itself reported (start, notes, errors, how it stopped).
    pub fn vmm_log(&self) -> PathBuf {
        self.dir.join("vmm.log")
    }
    /// The unix socket `kvmlab console` connects to.
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    /// Exit statistics, saved when the VM stops.
    pub fn stats(&self) -> PathBuf {
        self.dir.join("stats.json")
    }

    /// Reads `vm.json`.
    pub fn read_config(&self) -> io::Result<LabVm> {
        let bytes = std::fs::read(self.config())?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Writes `vm.json` (creating the folder).
    pub fn write_config(&self, vm: &LabVm) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(vm).map_err(io::Error::other)?;
        let temporary = self.dir.join(".vm.json.tmp");
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(temporary, self.config())
    }

    /// The pid in the pid file, if any.
    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pid of this VM's live process: the pid file names a process that is not
    /// a zombie and runs `kvmlab __vmm` for this folder (so a reused pid does not
    /// count).
    pub fn running_pid(&self) -> Option<i32> {
        let pid = self.pid()?;
        let (cmdline, zombie) = proc::identity(pid)?;
        let dir = self.dir.to_string_lossy();
        let ours =
            cmdline.iter().any(|a| a == VMM_SUBCOMMAND) && cmdline.iter().any(|a| *a == *dir);
        (ours && !zombie).then_some(pid)
    }

    /// The last `lines` lines of the serial console log.
    pub fn console_tail(&self, lines: usize) -> String {
        tail(&self.serial_log(), lines)
    }
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
