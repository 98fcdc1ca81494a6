//! Helpers shared by the VM tests: run `kvmlab` with every wait bounded, read
//! its console line by line, find Debian's kernel.

// Each test crate that includes this module uses only some of the helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Fails with a clear message where /dev/kvm is missing.
pub fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests boot VMs and need KVM (load the kvm module; CI has it)"
    );
}

/// A running `kvmlab` whose stdout lines arrive on a channel.
pub struct Vm {
    child: Child,
    lines: Receiver<String>,
    stdout: Vec<String>,
    stderr: thread::JoinHandle<String>,
}

impl Vm {
    /// Starts `kvmlab ARGS...`.
    pub fn start(args: &[&str]) -> Vm {
        let mut command = Command::new(kvmlab());
        command.args(args);
        Vm::spawn(command)
    }

    /// Starts `command`, which runs kvmlab (possibly through a wrapper such as
    /// `ip netns exec` that execs it, so that killing the child kills kvmlab).
    pub fn spawn(mut command: Command) -> Vm {
        require_kvm();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kvmlab");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Vm {
            child,
            lines,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// Reads console lines until `done` holds for what was read, or `timeout`.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&[String]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.stdout) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.stdout.push(line),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return done(&self.stdout);
                }
            }
        }
        true
    }

    /// Waits for the process to exit (killing it after `timeout`); returns its
    /// exit code (None if killed), the console output and stderr.
    pub fn finish(mut self, timeout: Duration) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + timeout;
        let code = loop {
            match self.child.try_wait().expect("wait for kvmlab") {
                Some(status) => break status.code(),
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        self.stdout.extend(self.lines.try_iter());
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.stdout.push(line);
        }
        let stderr = self.stderr.join().unwrap_or_default();
        (code, self.stdout.join("\n"), stderr)
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kvmlab-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The path of the kvmlab binary under test.
pub fn kvmlab() -> &'static str {
    env!("CARGO_BIN_EXE_kvmlab")
}

/// Debian's kernel (package linux-image-amd64), the newest /boot/vmlinuz-*.
pub fn debian_kernel() -> PathBuf {
    std::fs::read_dir("/boot")
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .max()
        .expect("no /boot/vmlinuz-*: install Debian's kernel (apt-get install linux-image-amd64)")
}
