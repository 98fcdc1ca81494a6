//! Named network namespaces, made the way iproute2 makes them (`ip netns add`): a
//! file under `/run/netns` with the namespace bind-mounted on it, so that
//! `ip netns exec NAME` finds the lab.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

/// Where named namespaces live.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The file of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_RUN_DIR).join(name)
}

/// Whether namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) -> io::Result<()> {
    let file = File::open(path(name))?;
    setns(file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Makes `/run/netns` a shared mount point, as iproute2 does, so that namespaces
/// mounted there later are seen from other mount namespaces too.
fn share_run_dir() -> io::Result<()> {
    std::fs::create_dir_all(NETNS_RUN_DIR)?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(
        None::<&str>,
        NETNS_RUN_DIR,
        Some("none"),
        shared,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            mount(
                Some(NETNS_RUN_DIR),
                NETNS_RUN_DIR,
                Some("none"),
                bind,
                None::<&str>,
            )?;
            mount(
                None::<&str>,
                NETNS_RUN_DIR,
                Some("none"),
                shared,
                None::<&str>,
            )
            .map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates namespace `name` and leaves the calling thread in it.
pub fn create(name: &str) -> io::Result<()> {
    share_run_dir()?;
    let target = path(name);
    File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&target)?;
    let made = unshare(CloneFlags::CLONE_NEWNET)
        .map_err(io::Error::from)
        .and_then(|()| {
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)
        });
    if made.is_err() {
        let _ = std::fs::remove_file(&target);
    }
    made
}

/// Removes namespace `name` (its interfaces go with it once nothing holds it).
pub fn delete(name: &str) -> io::Result<()> {
    let target = path(name);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(&target) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
