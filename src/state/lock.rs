//! The per-lab lock: an exclusive `flock` on `<state dir>/lock`, holding the pid of
//! the process that has it, so a second `up`/`down` can say who is in the way.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock of one lab, released when dropped.
#[derive(Debug)]
pub struct LabLock {
    _file: Flock<File>,
    /// The lab's state directory.
    pub dir: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    /// Another process holds it.
    #[error("lab {lab} is busy: another kvmlab (pid {pid}) holds its lock {path}")]
    #[diagnostic(
        code(kvmlab::state::locked),
        help("wait for that run to finish, or stop it; the lock goes with its process")
    )]
    Busy {
        /// The lab.
        lab: String,
        /// The holder's pid, as it wrote it (`unknown` if unreadable).
        pid: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be made or read.
    #[error("cannot lock lab state {path}: {source}")]
    #[diagnostic(code(kvmlab::state::io))]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Takes lab `lab`'s lock in `dir` (created if missing), waiting up to `wait`.
pub fn lock(dir: &Path, lab: &str, wait: Duration) -> Result<LabLock, LockError> {
    let path = dir.join("lock");
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let deadline = Instant::now() + wait;
    loop {
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut locked) => {
                // `down` removes the directory while holding the lock: a lock taken
                // on a file that is no longer at `path` protects nothing; retry.
                let same = match (locked.metadata(), std::fs::metadata(&path)) {
                    (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                    _ => false,
                };
                if !same {
                    continue;
                }
                locked.set_len(0).map_err(io_error)?;
                locked.rewind().map_err(io_error)?;
                write!(locked, "{}", std::process::id()).map_err(io_error)?;
                return Ok(LabLock {
                    _file: locked,
                    dir: dir.to_path_buf(),
                });
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    let pid = if pid.trim().is_empty() {
                        "unknown".to_string()
                    } else {
                        pid.trim().to_string()
                    };
                    return Err(LockError::Busy {
                        lab: lab.to_string(),
                        pid,
                        path,
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, errno)) => return Err(io_error(errno.into())),
        }
    }
}

impl LabLock {
    /// Takes the lock of lab `lab` in `dir` (created if missing), waiting up to
    /// `wait`, then failing with the holder's pid.
    pub fn take(dir: &Path, lab: &str, wait: Duration) -> Result<LabLock, LockError> {
        lock(dir, lab, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_taker_fails_naming_the_holder() {
        let dir = std::env::temp_dir().join(format!("kvmlab-lock-{}", std::process::id()));
        let held = lock(&dir, "lab", Duration::ZERO).unwrap();
        let error = lock(&dir, "lab", Duration::from_millis(100)).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(held);
        let again = lock(&dir, "lab", Duration::ZERO).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
