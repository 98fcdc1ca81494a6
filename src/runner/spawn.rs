//! The parent side of VM processes: start one detached, stop one (SIGTERM, a grace
//! period, SIGKILL), and wait until VMs print their ready marker.

use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::Signal;

use super::pidfd::{self, PidFd};
use super::{VMM_SUBCOMMAND, VmFiles};

/// Starts the VM whose `vm.json` is in `files` as a background process of its own
/// session, in namespace `netns`. Clears the previous run's logs first, so that
/// readiness is judged on this boot only. Writes the pid file.
pub fn spawn(files: &VmFiles, netns: Option<&str>) -> io::Result<Child> {
    for old in [files.serial_log(), files.stats(), files.pid_file()] {
        match std::fs::remove_file(old) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let log = std::fs::File::create(files.vmm_log())?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(VMM_SUBCOMMAND)
        .arg("--dir")
        .arg(&files.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir("/");
    if let Some(name) = netns {
        command.arg("--netns").arg(name);
    }
    // SAFETY: the closure runs in the forked child before exec and only calls
    // setsid, which is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn()?;
    std::fs::write(files.pid_file(), format!("{}\n", child.id()))?;
    Ok(child)
}

/// Stops the VM processes of `vms` that run, all at once: SIGTERM to each (the VMM
/// stops its VM and saves its statistics), up to `grace` for all to exit, then
/// SIGKILL to those left. Fails naming a process that survives SIGKILL for 5 s.
pub fn stop(vms: &[&VmFiles], grace: Duration) -> io::Result<()> {
    let mut handles = Vec::new();
    for files in vms {
        let Some(pid) = files.running_pid() else {
            continue;
        };
        // Checked again once the pidfd is open: a process that exited in between
        // (and whose pid was reused) is not ours to signal.
        match PidFd::open(pid) {
            Ok(handle) if files.running_pid() == Some(pid) => handles.push(handle),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot watch VM process {pid} (pidfd_open, Linux 5.3 or later): {e}"),
                ));
            }
        }
    }
    for handle in &handles {
        handle.signal(Signal::SIGTERM)?;
    }
    let left = pidfd::wait_exit(handles, Instant::now() + grace)?;
    for handle in &left {
        handle.signal(Signal::SIGKILL)?;
    }
    match pidfd::wait_exit(left, Instant::now() + KILL_WAIT)?.first() {
        Some(survivor) => Err(io::Error::other(format!(
            "VM process {} survived SIGKILL for {} seconds",
            survivor.pid(),
            KILL_WAIT.as_secs()
        ))),
        None => Ok(()),
    }
}

/// How long a process may take to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A VM that did not become ready.
#[derive(Debug)]
pub struct ReadyError {
    /// The VM.
    pub vm: String,
    /// What happened (`did not print "..." within 30s`, `exited: ...`).
    pub reason: String,
    /// The end of its serial console.
    pub console_tail: String,
    /// The end of its VMM log.
    pub vmm_tail: String,
}

/// One VM being waited for.
pub struct Starting {
    /// The VM's name.
    pub name: String,
    /// Its files.
    pub files: VmFiles,
    /// What it prints when ready.
    pub marker: String,
    /// The process.
    pub child: Child,
}

/// Waits until every VM in `starting` printed its marker, or one fails (its process
/// exits, or `timeout` passes). `on_ready` is called once per VM as it becomes
/// ready, with the time it took. Fails on the first VM found not ready.
///
/// Woken by inotify when a VM's folder changes (its console log grows), so a
/// VM counts as ready within microseconds of printing its marker; only the
/// bytes each log gained since the last look are read.
pub fn wait_ready(
    starting: &mut [Starting],
    timeout: Duration,
    mut on_ready: impl FnMut(&str, Duration),
) -> Result<(), ReadyError> {
    let began = Instant::now();
    let watcher = LogWatcher::new(starting.iter().map(|vm| vm.files.dir.as_path()));
    let mut scans: Vec<LogScan> = starting.iter().map(|_| LogScan::default()).collect();
    let mut done = vec![false; starting.len()];
    loop {
        for (i, vm) in starting.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if scans[i].found(&vm.files.serial_log(), vm.marker.as_bytes()) {
                done[i] = true;
                on_ready(&vm.name, began.elapsed());
                continue;
            }
            if let Ok(Some(status)) = vm.child.try_wait() {
                return Err(not_ready(vm, format!("its VM process exited ({status})")));
            }
        }
        if done.iter().all(|&d| d) {
            return Ok(());
        }
        let left = timeout.saturating_sub(began.elapsed());
        if left.is_zero() {
            let i = done.iter().position(|&d| !d).unwrap_or(0);
            let vm = &starting[i];
            let reason = format!(
                "it did not print {:?} on its console within {:.0?}",
                vm.marker, timeout
            );
            return Err(not_ready(vm, reason));
        }
        // A process that dies writes nothing, hence the cap on each wait.
        watcher.wait(left.min(EXIT_CHECK_INTERVAL));
    }
}

/// How often `wait_ready` looks for VM processes that exited.
const EXIT_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How long to sleep between looks where inotify is unavailable.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Wakes its owner when a file in one of the watched folders is written.
struct LogWatcher {
    inotify: Option<Inotify>,
}

impl LogWatcher {
    fn new<'a>(dirs: impl Iterator<Item = &'a Path>) -> LogWatcher {
        let flags = AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE;
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|inotify| {
                let mut all = true;
                for dir in dirs {
                    all &= inotify.add_watch(dir, flags).is_ok();
                }
                all
            });
        LogWatcher { inotify }
    }

    /// Waits at most `limit` for a change in a watched folder.
    fn wait(&self, limit: Duration) {
        let Some(inotify) = &self.inotify else {
            std::thread::sleep(limit.min(POLL_INTERVAL));
            return;
        };
        let mut poll = libc::pollfd {
            fd: inotify.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let timeout = i32::try_from(limit.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd that lives across the call.
        let ready = unsafe { libc::poll(&mut poll, 1, timeout) };
        if ready > 0 {
            // Drain the queue: what changed is re-read from the logs themselves.
            while inotify.read_events().is_ok_and(|events| !events.is_empty()) {}
        }
    }
}

/// How far one console log has been searched for the ready marker.
#[derive(Debug, Default)]
struct LogScan {
    /// Bytes of the log already searched.
    offset: u64,
    /// The end of what was searched, in case the marker straddles two reads.
    carry: Vec<u8>,
}

impl LogScan {
    /// Reads what `log` gained since the last call; whether `marker` has appeared.
    fn found(&mut self, log: &Path, marker: &[u8]) -> bool {
        let Ok(mut file) = std::fs::File::open(log) else {
            return false;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        if len < self.offset {
            // A new log (the VM restarted): search it from the start.
            *self = LogScan::default();
        }
        let mut fresh = Vec::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err() || file.read_to_end(&mut fresh).is_err()
        {
            return false;
        }
        self.offset += fresh.len() as u64;
        let mut searched = std::mem::take(&mut self.carry);
        searched.extend_from_slice(&fresh);
        if contains(&searched, marker) {
            return true;
        }
        let keep = marker.len().saturating_sub(1).min(searched.len());
        self.carry = searched[searched.len() - keep..].to_vec();
        false
    }
}

fn not_ready(vm: &Starting, reason: String) -> ReadyError {
    ReadyError {
        vm: vm.name.clone(),
        reason,
        console_tail: vm.files.console_tail(15),
        vmm_tail: super::tail(&vm.files.vmm_log(), 10),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, bytes: &[u8]) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn a_marker_split_across_two_writes_is_found_and_only_new_bytes_are_read() {
        let dir = std::env::temp_dir().join(format!("kvmlab-logscan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("serial.log");
        let _ = std::fs::remove_file(&log);
        let marker = b"kvmlab-guest: ready";
        let mut scan = LogScan::default();
        assert!(!scan.found(&log, marker), "no log yet");
        append(&log, b"banner\nkvmlab-guest: re");
        assert!(!scan.found(&log, marker));
        assert_eq!(scan.offset, 23);
        append(&log, b"ady\n");
        assert!(scan.found(&log, marker));

        // A restarted VM starts a new, shorter log: searched from its start.
        std::fs::write(&log, b"x\n").unwrap();
        let mut scan = LogScan {
            offset: 100,
            carry: b"kvmlab-guest: rea".to_vec(),
        };
        assert!(!scan.found(&log, marker), "the old carry must not leak");
        append(&log, b"kvmlab-guest: ready\n");
        assert!(scan.found(&log, marker));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_watcher_wakes_on_a_write_in_a_watched_folder() {
        let dir = std::env::temp_dir().join(format!("kvmlab-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let watcher = LogWatcher::new([dir.as_path()].into_iter());
        assert!(watcher.inotify.is_some(), "inotify works on Linux");
        let log = dir.join("serial.log");
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                append(&log, b"hello\n");
            })
        };
        let started = Instant::now();
        watcher.wait(Duration::from_secs(20));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "woken by the write, not by the time limit"
        );
        writer.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
