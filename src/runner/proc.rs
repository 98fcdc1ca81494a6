//! What `/proc` says about a process: its command line, whether it is a zombie, its
//! resident memory and when it started.

use std::time::{Duration, SystemTime};

/// A process as `/proc/<pid>` shows it.
#[derive(Debug, Clone)]
pub struct ProcInfo {
    /// The arguments.
    pub cmdline: Vec<String>,
    /// Exited but not yet reaped.
    pub zombie: bool,
    /// Resident set size in bytes (VmRSS).
    pub rss_bytes: u64,
    /// How long it has been running.
    pub uptime: Duration,
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

fn boot_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold
/// spaces and so ends at the last ')'.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    )
}

fn is_zombie(fields: &[String]) -> bool {
    fields.first().is_some_and(|s| s == "Z" || s == "X")
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Just what tells whose a process is: its arguments and whether it is a zombie
/// (two small reads; `down` asks this of every VM). `None` when there is no such
/// process.
pub(super) fn identity(pid: i32) -> Option<(Vec<String>, bool)> {
    let zombie = is_zombie(&stat_fields(pid)?);
    Some((cmdline(pid), zombie))
}

/// Whether the main thread of `pid` blocks signal `signo` (its `SigBlk` mask),
/// which is how a VM process waits for signals it handles in a thread of its own.
pub fn blocks_signal(pid: i32, signo: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigBlk:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| signo >= 1 && mask & (1 << (signo - 1)) != 0)
}

/// Reads `/proc/<pid>`; `None` when there is no such process.
pub fn proc_info(pid: i32) -> Option<ProcInfo> {
    let fields = stat_fields(pid)?;
    let zombie = is_zombie(&fields);
    // Field 22 of stat (starttime) is index 19 after the state (field 3).
    let start_ticks: u64 = fields.get(19).and_then(|s| s.parse().ok()).unwrap_or(0);
    let uptime = boot_time()
        .map(|boot| {
            let started = boot + start_ticks / clock_ticks();
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            Duration::from_secs(now.saturating_sub(started))
        })
        .unwrap_or_default();
    let cmdline = cmdline(pid);
    let base = format!("/proc/{pid}");
    let rss_bytes = std::fs::read_to_string(format!("{base}/status"))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    Some(ProcInfo {
        cmdline,
        zombie,
        rss_bytes,
        uptime,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen() {
        let info = proc_info(std::process::id() as i32).expect("own /proc entry");
        assert!(!info.zombie);
        assert!(info.rss_bytes > 0);
        assert!(!info.cmdline.is_empty());
        let (cmdline, zombie) = identity(std::process::id() as i32).unwrap();
        assert_eq!(cmdline, info.cmdline);
        assert!(!zombie);
        assert!(identity(i32::MAX).is_none(), "no such pid");
        assert!(!blocks_signal(i32::MAX, libc::SIGUSR1));
    }

    #[test]
    fn a_blocked_signal_shows_in_the_mask() {
        // A child that blocks SIGUSR1 (bash's `trap '' USR1` ignores rather than
        // blocks, so block it through the spawn's signal mask instead).
        use std::os::unix::process::CommandExt;
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        // SAFETY: the closure runs in the forked child before exec and only calls
        // sigprocmask, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let pid = child.id() as i32;
        assert!(blocks_signal(pid, libc::SIGUSR1));
        assert!(!blocks_signal(pid, libc::SIGUSR2));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
