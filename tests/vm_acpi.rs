//! ACPI end to end: Debian's kernel, booted by kvmlab with a NIC and a disk,
//! finds kvmlab's ACPI tables (RSDP, XSDT, FADT, DSDT, MADT) and takes its CPUs
//! and its IOAPIC from the MADT.
//!
//! Needs root, /dev/kvm and /dev/net/tun (CI has them) and fails, not skips,
//! without them. The NIC's TAP lives in a network namespace the test creates
//! under a unique name and removes, even when the test fails. Every wait is
//! bounded: a VM still running at its deadline is killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;
use common::{Vm, debian_kernel, kvmlab, temp_dir};

/// Longest a helper command (`ip ...`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `command` to completion within [`COMMAND_TIMEOUT`] (killing it then);
/// says what went wrong, if anything did.
fn run_bounded(command: &mut Command) -> Result<(), String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| format!("wait: {e}"))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(status.to_string()),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {COMMAND_TIMEOUT:?}"));
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// [`run_bounded`], panicking with `what` on failure.
fn run(command: &mut Command, what: &str) {
    if let Err(e) = run_bounded(command) {
        panic!("{what}: {e}");
    }
}

/// A network namespace of this test's own, removed when dropped (also while a
/// failing test unwinds).
struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace whose name no other test or run uses.
    fn create(purpose: &str) -> Netns {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("kvmlab-{purpose}-{}-{nanos}", std::process::id());
        run(
            Command::new("ip").args(["netns", "add", &name]),
            &format!("ip netns add {name}"),
        );
        Netns { name }
    }

    /// `program` to be run inside the namespace (`ip netns exec` execs it, so
    /// the child is the program itself).
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name, program]);
        command
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let removed = run_bounded(Command::new("ip").args(["netns", "del", &self.name]));
        if let Err(e) = removed {
            eprintln!("ip netns del {}: {e}", self.name);
        }
    }
}

fn require_root_and_tun() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    assert!(
        root,
        "this test creates a network namespace and a TAP: run it as root (CI does)"
    );
    assert!(
        Path::new("/dev/net/tun").exists(),
        "/dev/net/tun is missing: this test needs TAP devices (load the tun module; CI has it)"
    );
}

/// The line of `out` where the kernel lists the ACPI table `signature`, e.g.
/// `ACPI: DSDT 0x00000000000E0030 0000D7 (v02 KVMLAB KVMLDSDT ...)`; returns it
/// and the table's address.
fn table_line<'a>(out: &'a str, signature: &str) -> (&'a str, u64) {
    let prefix = format!("ACPI: {signature} 0x");
    let mut lines = out.lines().filter(|l| l.contains(&prefix));
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("the kernel did not list {signature}:\n{out}"));
    assert!(lines.next().is_none(), "{signature} listed twice:\n{out}");
    let rest = &line[line.find(&prefix).unwrap() + prefix.len()..];
    let hex: String = rest.chars().take_while(char::is_ascii_hexdigit).collect();
    let addr = u64::from_str_radix(&hex, 16).unwrap_or_else(|e| panic!("{line}: {e}"));
    (line, addr)
}

/// Debian's kernel with a virtio-net NIC and a virtio-blk disk: it must list
/// every table kvmlab wrote, in the BIOS area and with kvmlab's OEM id, and use
/// the MADT for its 2 CPUs and the IOAPIC. Under emulated KVM the kernel gets
/// through table discovery in about a minute, then stops at its INT3 self-test,
/// before it would probe the devices; the test stops the VM once it has seen
/// the lines it needs.
#[test]
fn debian_kernel_lists_our_acpi_tables() {
    require_root_and_tun();
    let kernel = debian_kernel();
    let dir = temp_dir("acpi");
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(1 << 20))
        .expect("create the disk image");

    let netns = Netns::create("acpi");
    let tap = "acpitap0";
    run(
        netns
            .command("ip")
            .args(["tuntap", "add", "dev", tap, "mode", "tap"]),
        "ip tuntap add",
    );
    let cmdline = "earlyprintk=serial console=ttyS0 reboot=k panic=-1 kvmlab.test=acpi";
    let mut command = netns.command(kvmlab());
    command.args([
        "vm",
        "run",
        "--name",
        "acpi",
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "256MiB",
        "--vcpus",
        "2",
        "--net",
        &format!("tap={tap}"),
        "--disk",
        disk.to_str().unwrap(),
        "--cmdline",
        cmdline,
        "--timeout",
        "170",
    ]);
    let mut vm = Vm::spawn(command);
    let needed = [
        "ACPI: RSDP 0x",
        "ACPI: XSDT 0x",
        "ACPI: FACP 0x",
        "ACPI: DSDT 0x",
        "ACPI: APIC 0x",
        "IOAPIC[0]:",
        "ACPI: Using ACPI (MADT) for SMP configuration information",
        "smpboot: Allowing 2 CPUs",
    ];
    let seen = vm.read_until(Duration::from_secs(150), |lines| {
        needed.iter().all(|n| lines.iter().any(|l| l.contains(n)))
    });
    let (code, out, err) = vm.finish(Duration::ZERO);
    drop(netns);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        seen,
        "missing ACPI lines (exit {code:?})\nconsole:\n{out}\nstderr:\n{err}"
    );

    // Both devices are attached (and announced on the command line too).
    let line = out.lines().find(|l| l.contains("Command line:")).unwrap();
    assert!(
        line.ends_with(&format!(
            "{cmdline} virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6"
        )),
        "{line}"
    );
    // The RSDP where Linux scans for it, ACPI 2.0 (with an XSDT), 36 bytes.
    let (rsdp, _) = table_line(&out, "RSDP");
    assert!(
        rsdp.ends_with("ACPI: RSDP 0x00000000000E0000 000024 (v02 KVMLAB)"),
        "{rsdp}"
    );
    for (signature, table_id) in [
        ("XSDT", "KVMLXSDT"),
        ("FACP", "KVMLFACP"),
        ("DSDT", "KVMLDSDT"),
        ("APIC", "KVMLMADT"),
    ] {
        let (line, addr) = table_line(&out, signature);
        assert!(
            (0xe_0000..0xf_0000).contains(&addr),
            "{signature} outside the BIOS area: {line}"
        );
        assert!(line.contains(&format!("KVMLAB {table_id} ")), "{line}");
    }
    // The MADT's IOAPIC, and no complaint about any table.
    assert!(
        out.contains("IOAPIC[0]: apic_id 0, version 17, address 0xfec00000, GSI 0-23"),
        "{out}"
    );
    let complaints: Vec<&str> = out
        .lines()
        .filter(|l| {
            l.contains("ACPI BIOS Error")
                || l.contains("ACPI Error")
                || l.contains("ACPI BIOS Warning")
                || l.contains("ACPI Warning")
                || l.contains("Incorrect checksum")
        })
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}\n{out}");
    // The BIOS area that holds the tables is reserved.
    assert!(
        out.contains("BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] reserved"),
        "{out}"
    );
}
