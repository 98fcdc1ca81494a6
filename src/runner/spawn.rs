//! The parent side of VM processes: start one detached, stop one (SIGTERM, a grace
//! period, SIGKILL), and wait until VMs print their ready marker.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

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
    let mut unwatched = Vec::new();
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
            // No pidfds (a kernel before 5.3): signal by pid and poll /proc.
            Err(_) => unwatched.push((*files, Pid::from_raw(pid))),
        }
    }
    for handle in &handles {
        handle.signal(Signal::SIGTERM)?;
    }
    for (_, pid) in &unwatched {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let left = pidfd::wait_exit(handles, deadline)?;
    for handle in &left {
        handle.signal(Signal::SIGKILL)?;
    }
    let mut unwatched_left = Vec::new();
    for (files, pid) in unwatched {
        if !wait_gone(files, deadline.saturating_duration_since(Instant::now())) {
            let _ = kill(pid, Signal::SIGKILL);
            unwatched_left.push((files, pid));
        }
    }
    if let Some(survivor) = pidfd::wait_exit(left, Instant::now() + KILL_WAIT)?.first() {
        return Err(survivor_error(survivor.pid()));
    }
    for (files, pid) in unwatched_left {
        if !wait_gone(files, KILL_WAIT) {
            return Err(survivor_error(pid.as_raw()));
        }
    }
    Ok(())
}

/// How long a process may take to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

fn survivor_error(pid: i32) -> io::Error {
    io::Error::other(format!(
        "VM process {pid} survived SIGKILL for {} seconds",
        KILL_WAIT.as_secs()
    ))
}

fn wait_gone(files: &VmFiles, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if files.running_pid().is_none() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

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
pub fn wait_ready(
    starting: &mut [Starting],
    timeout: Duration,
    mut on_ready: impl FnMut(&str, Duration),
) -> Result<(), ReadyError> {
    let began = Instant::now();
    let mut done = vec![false; starting.len()];
    loop {
        for (i, vm) in starting.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            let log = std::fs::read(vm.files.serial_log()).unwrap_or_default();
            if contains(&log, vm.marker.as_bytes()) {
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
        if began.elapsed() >= timeout {
            let i = done.iter().position(|&d| !d).unwrap_or(0);
            let vm = &starting[i];
            let reason = format!(
                "it did not print {:?} on its console within {:.0?}",
                vm.marker, timeout
            );
            return Err(not_ready(vm, reason));
        }
        std::thread::sleep(Duration::from_millis(20));
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
