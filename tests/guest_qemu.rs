//! Network tests of the built-in guest, with QEMU's microvm machine as the VMM
//! (kvmlab's own virtio devices are tested elsewhere): guests on a Linux bridge
//! in a fresh network namespace ping each other and the host, the host's own
//! stack pings them, VLAN sub-interfaces on trunks isolate traffic, and a
//! guest checksums its disk's first sector.
//!
//! They need root, /dev/kvm, /dev/net/tun, `ip` (iproute2), `ping` (iputils-ping)
//! and `qemu-system-x86_64` (qemu-system-x86), and fail, not skip, without them.
//! Every wait is bounded; QEMU processes are killed and the namespace deleted
//! even when a test fails.
//!
//! QEMU runs with `-M microvm,ioapic2=off,acpi=off`: then it appends
//! `virtio_mmio.device=512@0xfeb00e00:12` (and so on) to the guest's command
//! line itself, and routes the devices to pins of the first IOAPIC, which is
//! what kvmlab does too.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How long guests get to finish their tasks (they need a few seconds).
const DONE_TIMEOUT: Duration = Duration::from_secs(90);

fn require(what: &str, ok: bool, hint: &str) {
    assert!(ok, "{what} is missing: {hint}");
}

fn require_environment() {
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
    for (program, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("ip", "iproute2"),
        ("ping", "iputils-ping"),
        ("timeout", "coreutils"),
    ] {
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
fn run(args: &[&str]) -> String {
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
struct Lab {
    ns: String,
    dir: PathBuf,
    guest: PathBuf,
    vms: Vec<Guest>,
}

/// One QEMU process; its serial console lines arrive on `lines`.
struct Guest {
    child: Child,
    lines: Receiver<String>,
    console: Vec<String>,
}

impl Lab {
    fn new(name: &str) -> Lab {
        require_environment();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("kvmlab-guest-qemu-{name}-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let guest = dir.join("kvmlab-guest");
        std::fs::write(&guest, kvmlab::vmm::BUILTIN_GUEST).unwrap();
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

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.ns];
        all.extend_from_slice(args);
        run(&all)
    }

    /// Boots a guest on a new TAP with `cmdline` and extra QEMU arguments.
    fn boot(&mut self, cmdline: &str, qemu_args: &[&str]) {
        let n = self.vms.len() + 1;
        let tap = format!("tap{n}");
        self.ip(&["tuntap", "add", &tap, "mode", "tap"]);
        self.ip(&["link", "set", &tap, "master", "br0"]);
        self.ip(&["link", "set", &tap, "up"]);
        let mut child = Command::new("ip")
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
            .args(qemu_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start qemu-system-x86_64");
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
    /// lines (JSON) of each guest.
    fn wait_done(&mut self) -> Vec<Vec<serde_json::Value>> {
        let deadline = Instant::now() + DONE_TIMEOUT;
        for vm in &mut self.vms {
            while !vm
                .console
                .iter()
                .any(|l| l == r#"kvmlab-report {"type":"done"}"#)
            {
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
                    .filter_map(|l| l.strip_prefix("kvmlab-report "))
                    .map(|json| serde_json::from_str(json).expect("report is JSON"))
                    .collect()
            })
            .collect()
    }

    fn consoles(&self) -> String {
        let mut text = String::new();
        for (i, vm) in self.vms.iter().enumerate() {
            text += &format!("--- guest {}\n{}\n", i + 1, vm.console.join("\n"));
        }
        text
    }

    /// Pings `addr` from the namespace's own stack; returns packets received.
    fn host_ping(&self, addr: &str) -> u32 {
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

/// The report of `kind` for `target` among `reports`.
fn report<'a>(reports: &'a [serde_json::Value], kind: &str, target: &str) -> &'a serde_json::Value {
    reports
        .iter()
        .find(|r| r["type"] == kind && r["target"] == target)
        .unwrap_or_else(|| panic!("no {kind} report for {target} in {reports:?}"))
}

fn received(report: &serde_json::Value) -> (u64, u64) {
    (
        report["sent"].as_u64().unwrap(),
        report["received"].as_u64().unwrap(),
    )
}

#[test]
fn two_guests_ping_each_other_and_the_host() {
    let mut lab = Lab::new("ping");
    lab.boot(
        "kvmlab.ip=0:10.0.0.1/24 kvmlab.ping=10.0.0.2,10.0.0.254 kvmlab.arping=10.0.0.2",
        &[],
    );
    lab.boot("kvmlab.ip=0:10.0.0.2/24 kvmlab.ping=10.0.0.1", &[]);
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    assert!(consoles.contains("kvmlab-guest: ready"), "{consoles}");
    // The peer may still be booting when the first probe leaves; later ones
    // must all be answered.
    for (guest, kind, target) in [
        (0, "ping", "10.0.0.2"),
        (0, "ping", "10.0.0.254"),
        (0, "arping", "10.0.0.2"),
        (1, "ping", "10.0.0.1"),
    ] {
        let (sent, got) = received(report(&reports[guest], kind, target));
        assert_eq!(sent, 3, "{consoles}");
        assert!(
            got >= 2,
            "{kind} {target} from guest {}: {got}/3\n{consoles}",
            guest + 1
        );
    }
    // The host's own stack pings the guests, which are idle (halted) now.
    assert_eq!(lab.host_ping("10.0.0.1"), 3, "{}", lab.consoles());
    assert_eq!(lab.host_ping("10.0.0.2"), 3, "{}", lab.consoles());
}

#[test]
fn vlan_subinterfaces_isolate_and_disk_checksum() {
    let mut lab = Lab::new("vlan");
    let disk = lab.dir.join("disk.img");
    let mut image = vec![0u8; 1 << 20];
    for (i, byte) in image.iter_mut().take(512).enumerate() {
        *byte = (i * 7 + 3) as u8;
    }
    std::fs::write(&disk, &image).unwrap();
    let expected = image[..512]
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    let drive = format!(
        "file={},if=none,id=d0,format=raw,readonly=on",
        disk.display()
    );

    // A trunk guest in VLANs 10 and 20, a VLAN-10 guest with a disk, and a
    // guest in VLAN 20 that also has an untagged address in VLAN 10's subnet.
    // QEMU 7.2's virtio-mmio is legacy (version 1) unless told otherwise; this
    // test uses version 2, as kvmlab does (the other test covers version 1).
    let modern = ["-global", "virtio-mmio.force-legacy=false"];
    lab.boot(
        "kvmlab.ip=0.10:10.0.10.1/24 kvmlab.ip=0.20:10.0.20.1/24 kvmlab.ping=10.0.10.2,10.0.20.3",
        &modern,
    );
    lab.boot(
        "kvmlab.ip=0.10:10.0.10.2/24 kvmlab.ping=10.0.10.1 kvmlab.disk-checksum",
        &[
            &modern[..],
            &["-drive", &drive, "-device", "virtio-blk-device,drive=d0"],
        ]
        .concat(),
    );
    lab.boot(
        "kvmlab.ip=0.20:10.0.20.3/24 kvmlab.ip=0:10.0.10.9/24 kvmlab.ping=10.0.20.1,10.0.10.1 kvmlab.timeout_ms=300",
        &modern,
    );
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    for (guest, target) in [
        (0, "10.0.10.2"),
        (0, "10.0.20.3"),
        (1, "10.0.10.1"),
        (2, "10.0.20.1"),
    ] {
        let (_, got) = received(report(&reports[guest], "ping", target));
        assert!(
            got >= 2,
            "ping {target} from guest {}: {got}/3\n{consoles}",
            guest + 1
        );
    }
    // Untagged frames do not reach VLAN 10's sub-interfaces.
    assert_eq!(
        received(report(&reports[2], "ping", "10.0.10.1")),
        (3, 0),
        "{consoles}"
    );

    let disk_report = reports[1]
        .iter()
        .find(|r| r["type"] == "disk")
        .expect("disk report");
    assert_eq!(disk_report["index"], 0, "{consoles}");
    assert_eq!(disk_report["sectors"], 2048, "{consoles}");
    assert_eq!(
        disk_report["fnv1a64"],
        format!("{expected:#018x}"),
        "{consoles}"
    );
}
