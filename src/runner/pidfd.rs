//! Process file descriptors: a handle on a process that is not our child, which
//! the kernel makes readable the moment the process exits, so that `down` waits
//! for VM processes without polling `/proc`, and signals the exact process it
//! checked even if its pid were reused meanwhile.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use nix::sys::signal::Signal;

/// An open pidfd on one process.
#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd on `pid` (Linux 5.3 and later).
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and a flags word and returns a new file
        // descriptor or -1; it reads and writes no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a descriptor the kernel just returned to us, owned by
        // nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(PidFd { pid, fd })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `signal` to the process (not to a later one with the same pid).
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a null siginfo pointer and no flags reads
        // no memory of ours; `self.fd` is an open pidfd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signal as i32,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        match rc {
            0 => Ok(()),
            _ => match io::Error::last_os_error() {
                // Already exited: nothing left to signal.
                e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
                e => Err(e),
            },
        }
    }
}

/// Waits until every process of `procs` has exited or `deadline` passes; returns
/// those still running.
pub fn wait_exit(mut procs: Vec<PidFd>, deadline: Instant) -> io::Result<Vec<PidFd>> {
    loop {
        if procs.is_empty() {
            return Ok(procs);
        }
        let mut polls: Vec<libc::pollfd> = procs
            .iter()
            .map(|p| libc::pollfd {
                fd: p.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `polls` is a valid array of `polls.len()` pollfd structures that
        // lives across the call.
        let ready = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, timeout) };
        if ready < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut still = Vec::new();
        for (proc, poll) in procs.into_iter().zip(&polls) {
            if poll.revents == 0 {
                still.push(proc);
            }
        }
        procs = still;
        if ready == 0 || Instant::now() >= deadline {
            return Ok(procs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::Duration;

    #[test]
    fn exit_is_seen_at_once_and_a_live_process_times_out() {
        let mut sleeper = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = sleeper.id() as i32;
        let fd = PidFd::open(pid).unwrap();
        assert_eq!(fd.pid(), pid);
        let left = wait_exit(vec![fd], Instant::now() + Duration::from_millis(50)).unwrap();
        assert_eq!(left.len(), 1, "a sleeping process has not exited");

        let fd = left.into_iter().next().unwrap();
        fd.signal(Signal::SIGTERM).unwrap();
        // Our own child stays a zombie until reaped, yet its pidfd is readable.
        let started = Instant::now();
        let left = wait_exit(vec![fd], Instant::now() + Duration::from_secs(10)).unwrap();
        assert!(left.is_empty(), "SIGTERM ends sleep");
        assert!(started.elapsed() < Duration::from_secs(5));
        sleeper.wait().unwrap();
    }
}
