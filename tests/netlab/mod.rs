//! A network lab for VM tests: a fresh network namespace with a Linux bridge
//! `br0` (host address 10.0.0.254/24), one TAP per guest, and built-in guests
//! booted by QEMU's microvm or by kvmlab's own engine, their consoles read line
//! by line. Everything is bounded in time and removed on drop, also when a test
//! fails.

// Each test crate that includes this module uses only some of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use kvmlab_guest_proto::ipv4::Dotted;
use kvmlab_guest_proto::report::{DONE_LINE, DiskReport, ProbeReport, REPORT_PREFIX, Report};

/// How long guests get to finish their tasks (they need a few seconds).
const DONE_TIMEOUT: Duration = Duration::from_secs(90);

pub fn require(what: &str, ok: bool, hint: &str) {
    assert!(ok, "{what} is missing: {hint}");
}

pub fn require_environment(programs: &[(&str, &str)]) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    require(
        "root",
        root,
        "these tests create network namespaces (CI runs as root)",
    );
    require(
        "/dev/kvm",
        Path::new("/dev/kvm").exists(),
        "load the kvm module; CI has it",
    );
    require(
        "/dev/net/tun",
        Path::new("/dev/net/tun").exists(),
        "load the tun module",
    );
    let basics = [
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("timeout", "coreutils"),
    ];
    for &(program, package) in basics.iter().chain(programs) {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        require(program, found, &format!("apt-get install {package}"));
    }
}

/// Runs a command (bounded by coreutils' `timeout`) and returns its stdout;
/// panics with its output if it fails.
pub fn run(args: &[&str]) -> String {
    let output = Command::new("timeout")
        .arg("30")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{args:?} failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A network namespace with a bridge `br0` (host address 10.0.0.254/24) and
/// one TAP per guest; deleted on drop.
pub struct Lab {
    pub ns: String,
    pub dir: PathBuf,
    guest: PathBuf,
    vms: Vec<Guest>,
}

/// One VMM process; its serial console lines arrive on `lines`.
struct Guest {
    child: Child,
    lines: Receiver<String>,
    console: Vec<String>,
}

impl Lab {
    /// Writes a 1 MiB raw disk image whose first sector is a pattern made from
    /// `seed`; returns its path and the FNV-1a 64 of that sector, which is what
    /// the guest reports for it.
    pub fn disk_image(&self, seed: usize) -> (PathBuf, u64) {
        let path = self.dir.join(format!("disk-{seed}.img"));
        let mut image = vec![0u8; 1 << 20];
        for (i, byte) in image.iter_mut().take(512).enumerate() {
            *byte = (i * seed + 3) as u8;
        }
        std::fs::write(&path, &image).unwrap();
        let checksum = image[..512]
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
            });
        (path, checksum)
    }

    /// A lab whose tests need `programs` (program, Debian package) besides the basics.
    pub fn new(name: &str, programs: &[(&str, &str)]) -> Lab {
        require_environment(programs);
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("kvmlab-guest-qemu-{name}-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let guest = dir.join("kvmlab-guest");
        std::fs::write(&guest, kvmlab_vmm::BUILTIN_GUEST).unwrap();
        let lab = Lab {
            ns: format!("kvmlab-gq-{id}"),
            dir,
            guest,
            vms: Vec::new(),
        };
        run(&["ip", "netns", "add", &lab.ns]);
        lab.ip(&["link", "set", "lo", "up"]);
        lab.ip(&["link", "add", "br0", "type", "bridge"]);
        lab.ip(&["link", "set", "br0", "up"]);
        lab.ip(&["addr", "add", "10.0.0.254/24", "dev", "br0"]);
        lab
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.ns];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Adds a TAP for the next guest to the bridge; returns its name.
    fn add_tap(&self) -> String {
        let tap = format!("tap{}", self.vms.len() + 1);
        self.ip(&["tuntap", "add", &tap, "mode", "tap"]);
        self.ip(&["link", "set", &tap, "master", "br0"]);
        self.ip(&["link", "set", &tap, "up"]);
        tap
    }

    /// Boots a guest with kvmlab's engine, on a new TAP with the `--net` options
    /// `nic` (such as `vlan=10`), the command line `cmdline` and extra arguments
    /// of `kvmlab vm run` (such as `--disk`).
    pub fn boot_kvmlab(&mut self, cmdline: &str, nic: &str, extra: &[&str]) {
        let tap = self.add_tap();
        let net = if nic.is_empty() {
            format!("tap={tap}")
        } else {
            format!("tap={tap},{nic}")
        };
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.ns,
                env!("CARGO_BIN_EXE_kvmlab"),
                "vm",
                "run",
            ])
            .args([
                "--name",
                &tap,
                "--net",
                &net,
                "--cmdline",
                cmdline,
                "--timeout",
                "300",
            ])
            .args(extra);
        self.spawn(command);
    }

    /// Boots a guest with QEMU's microvm on a new TAP, with `cmdline` and extra
    /// QEMU arguments.
    pub fn boot_qemu(&mut self, cmdline: &str, qemu_args: &[&str]) {
        let n = self.vms.len() + 1;
        let tap = self.add_tap();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns, "qemu-system-x86_64"])
            .args([
                "-M",
                "microvm,ioapic2=off,acpi=off",
                "-accel",
                "kvm",
                "-cpu",
                "qemu64,-cx16",
            ])
            .args([
                "-m",
                "64M",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
            ])
            .args(["-no-reboot", "-serial", "stdio", "-kernel"])
            .arg(&self.guest)
            .args(["-append", &format!("console=ttyS0 {cmdline}")])
            .args([
                "-netdev",
                &format!("tap,id=n0,ifname={tap},script=no,downscript=no"),
            ])
            .args([
                "-device",
                &format!("virtio-net-device,netdev=n0,mac=52:54:00:00:00:{n:02x}"),
            ])
            .args(qemu_args);
        self.spawn(command);
    }

    /// Starts a VMM whose stdout is the guest's console.
    fn spawn(&mut self, mut command: Command) {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the VMM");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                    break;
                }
            }
        });
        self.vms.push(Guest {
            child,
            lines,
            console: Vec::new(),
        });
    }

    /// Waits until every guest printed its `done` report; returns the report
    /// lines of each guest.
    pub fn wait_done(&mut self) -> Vec<Vec<Report>> {
        let deadline = Instant::now() + DONE_TIMEOUT;
        for vm in &mut self.vms {
            while !vm.console.iter().any(|l| l == DONE_LINE) {
                let left = deadline.saturating_duration_since(Instant::now());
                match vm.lines.recv_timeout(left) {
                    Ok(line) => vm.console.push(line),
                    Err(_) => panic!("guest not done in time; consoles:\n{}", self.consoles()),
                }
            }
        }
        self.vms
            .iter()
            .map(|vm| {
                vm.console
                    .iter()
                    .filter(|l| l.starts_with(REPORT_PREFIX))
                    .map(|l| Report::parse(l).unwrap_or_else(|| panic!("not a report: {l}")))
                    .collect()
            })
            .collect()
    }

    pub fn consoles(&self) -> String {
        let mut text = String::new();
        for (i, vm) in self.vms.iter().enumerate() {
            text += &format!("--- guest {}\n{}\n", i + 1, vm.console.join("\n"));
        }
        text
    }

    /// Pings `addr` from the namespace's own stack; returns packets received.
    pub fn host_ping(&self, addr: &str) -> u32 {
        let output = Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &self.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2",
                addr,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run ping");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|l| {
                l.split(", ")
                    .find_map(|part| part.strip_suffix(" received"))
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no ping statistics:\n{text}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for vm in &mut self.vms {
            let _ = vm.child.kill();
            let _ = vm.child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The report of `kind` (`ping`, `arping`) for `target` among `reports`.
pub fn report<'a>(reports: &'a [Report], kind: &str, target: &str) -> &'a ProbeReport {
    reports
        .iter()
        .find_map(|r| match r {
            Report::Probe(p) if p.kind.name() == kind && Dotted(p.target).to_string() == target => {
                Some(p)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {kind} report for {target} in {reports:?}"))
}

/// The first disk report among `reports`.
pub fn disk_report(reports: &[Report]) -> Option<&DiskReport> {
    reports.iter().find_map(|r| match r {
        Report::Disk(disk) => Some(disk),
        _ => None,
    })
}

/// Probes sent and answered.
pub fn received(report: &ProbeReport) -> (u64, u64) {
    (u64::from(report.sent), u64::from(report.received))
}
