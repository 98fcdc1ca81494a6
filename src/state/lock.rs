//! The per-lab lock: an exclusive `flock` on `<state dir>/lock`, holding the pid of
//! the process that has it, so a second `up`/`down` can say who is in the way.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

/// Names the private files of [`lock`] apart, within this process too.
static NEXT_CANDIDATE: AtomicU64 = AtomicU64::new(0);

/// Takes lab `lab`'s lock in `dir` (created if missing), waiting up to `wait`.
///
/// The lock is an exclusive `flock` on the file `lock`, and that file names its
/// holder's pid from the moment it exists: a taker writes its pid into a private
/// file, locks that, and only then links it in as `lock` (which fails if one is
/// there). So a waiter never reads a lock file that is held but still empty, as it
/// could when the pid was written after taking the lock. A `lock` file nobody holds
/// (its holder ended) is removed by whoever takes its `flock` first, and the taker
/// tries again.
pub fn lock(dir: &Path, lab: &str, wait: Duration) -> Result<LabLock, LockError> {
    let path = dir.join("lock");
    let io_error = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let deadline = Instant::now() + wait;
    loop {
        std::fs::create_dir_all(dir).map_err(io_error)?;
        let candidate = dir.join(format!(
            ".lock.{}.{}",
            std::process::id(),
            NEXT_CANDIDATE.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
            .map_err(io_error)?;
        let written = write!(file, "{}", std::process::id());
        let ours = match written {
            Ok(()) => Flock::lock(file, FlockArg::LockExclusiveNonblock)
                .map_err(|(_, errno)| io_error(errno.into())),
            Err(e) => Err(io_error(e)),
        };
        let linked = ours.and_then(|ours| match std::fs::hard_link(&candidate, &path) {
            Ok(()) => Ok(Some(ours)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
            // `down` removed the directory under us: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        });
        let _ = std::fs::remove_file(&candidate);
        if let Some(ours) = linked? {
            return Ok(LabLock {
                _file: ours,
                dir: dir.to_path_buf(),
            });
        }
        // Someone's lock file is there: held, or left by a holder that ended.
        let file = match OpenOptions::new().read(true).open(&path) {
            Ok(file) => file,
            // Removed meanwhile: try to take it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(e)),
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(stale) => {
                // Nobody holds it. While we hold its flock, nobody else can remove
                // it or link another; remove it if it is still the one at `path`.
                if same_file(&stale, &path) {
                    let _ = std::fs::remove_file(&path);
                }
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                if Instant::now() >= deadline {
                    // The pid went in before the file was linked: it is whole.
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    if !same_file(&file, &path) {
                        // Replaced while we read: ask the new one.
                        continue;
                    }
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

/// Whether `file` is the file now at `path` (`down` removes a lab's directory
/// while holding its lock; stale lock files are removed too).
fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
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

    /// A waiter never reads the lock file between its holder taking it and the
    /// holder's pid being in it: the pid is there from the moment the lock is.
    #[test]
    fn a_waiter_always_finds_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("kvmlab-lock-race-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let holder = {
            let (dir, stop) = (dir.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(held) = lock(&dir, "lab", Duration::ZERO) {
                        drop(held);
                    }
                }
            })
        };
        let mut busy = 0;
        let started = Instant::now();
        while busy < 2000 && started.elapsed() < Duration::from_secs(20) {
            match lock(&dir, "lab", Duration::ZERO) {
                Err(LockError::Busy { pid, .. }) => {
                    busy += 1;
                    assert_eq!(pid, std::process::id().to_string(), "after {busy} tries");
                }
                Err(e) => panic!("{e}"),
                Ok(held) => drop(held),
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        holder.join().unwrap();
        assert!(busy > 0, "the lock was never found busy");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
