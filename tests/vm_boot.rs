//! VM tests: boot the built-in guest and Debian's kernel with `kvmlab vm run`.
//!
//! They need root and /dev/kvm (CI has both) and fail, not skip, without them.
//! Every run is bounded: a VM still running at its deadline is killed.

use std::path::PathBuf;
use std::time::Duration;

mod common;
use common::{Vm, debian_kernel, temp_dir};

#[test]
fn builtin_guest_prints_banner_and_powers_off() {
    let dir = temp_dir("banner");
    let stats = dir.join("stats.json");
    let cmdline = "hello from the test kvmlab.x=1";
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "banner",
        "--memory",
        "96MiB",
        "--cmdline",
        cmdline,
        "--stats",
        stats.to_str().unwrap(),
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(0),
        "kvmlab did not exit 0\nconsole:\n{out}\nstderr:\n{err}"
    );
    assert!(
        out.contains("): memory 96 MiB"),
        "no memory size in banner:\n{out}"
    );
    assert!(
        out.contains(&format!("kvmlab-guest: cmdline \"{cmdline}\"")),
        "no command line in banner:\n{out}"
    );
    assert!(out.contains("(linux boot)"), "{out}");
    // The VMM's CPUID timing leaf spares the guest a 10 ms PIT calibration.
    assert!(
        out.lines()
            .any(|l| l.starts_with("kvmlab-guest: clock:") && l.ends_with("(hypervisor)")),
        "the guest did not take its clock rates from the hypervisor leaf:\n{out}"
    );
    assert!(out.contains("powering off"), "{out}");

    // Exit statistics: printed and saved.
    assert!(err.contains("VM 'banner' stopped (guest reset)"), "{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(json["vm"], "banner");
    assert_eq!(json["outcome"], "guest reset");
    // Console output reaches kvmlab either as exits or, while the guest polls
    // the UART, as writes KVM buffered and kvmlab replayed.
    let serial = json["by_device"]["serial 0x3f8-0x3ff"].as_u64().unwrap()
        + json["coalesced_writes"].as_u64().unwrap();
    assert!(serial > 100, "{json}");
    assert_eq!(json["by_device"]["i8042 0x60-0x64"], 1, "{json}");
    // KVM's own counters: every exit to kvmlab is an exit from guest mode.
    let user_exits = json["total_exits"].as_u64().unwrap();
    assert!(
        json["kvm"]["exits"].as_u64().unwrap_or(0) >= user_exits,
        "{json}"
    );
    assert!(json["by_reason"]["io_out"].as_u64().unwrap() > 0, "{json}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn builtin_guest_with_two_vcpus_and_more_memory() {
    let vm = Vm::start(&[
        "vm",
        "run",
        "--memory",
        "1GiB",
        "--vcpus",
        "2",
        "--cmdline",
        "two",
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(0), "console:\n{out}\nstderr:\n{err}");
    assert!(out.contains("): memory 1024 MiB"), "{out}");
    assert!(err.contains("on 2 vCPU(s)"), "{err}");
}

#[test]
fn triple_fault_is_a_clear_error() {
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "crashy",
        "--cmdline",
        "kvmlab.test=triple-fault",
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(1), "console:\n{out}\nstderr:\n{err}");
    assert!(out.contains("triple fault requested"), "{out}");
    assert!(err.contains("VM 'crashy': vCPU 0: triple fault"), "{err}");
    assert!(
        err.contains("RIP=0x") && err.contains("CR3=0x"),
        "no register dump:\n{err}"
    );
}

fn host_has_hardware_virtualization() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .split_whitespace()
        .any(|flag| flag == "vmx" || flag == "svm")
}

/// An instruction KVM cannot emulate stops the VM with RIP and the instruction
/// bytes. Only hosts without VMX/SVM (PVM, as on CI) emulate guest code; with
/// hardware virtualisation the instruction simply runs.
#[test]
fn emulation_failure_is_a_clear_error() {
    let vm = Vm::start(&["vm", "run", "--name", "emu", "--cmdline", "kvmlab.test=sse"]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert!(out.contains("running an SSE instruction"), "{out}");
    if host_has_hardware_virtualization() {
        assert_eq!(code, Some(0), "console:\n{out}\nstderr:\n{err}");
        assert!(out.contains("SSE instruction done"), "{out}");
    } else {
        assert_eq!(code, Some(1), "console:\n{out}\nstderr:\n{err}");
        assert!(
            err.contains("VM 'emu': vCPU 0: KVM cannot emulate the guest instruction at RIP 0x"),
            "{err}"
        );
        assert!(
            err.contains("(bytes: 0f 57 c0"),
            "no instruction bytes:\n{err}"
        );
        assert!(err.contains("RIP=0x"), "no register dump:\n{err}");
    }
}

#[test]
fn garbage_kernel_is_a_clear_error() {
    let dir = temp_dir("garbage");
    let kernel = dir.join("garbage.bin");
    std::fs::write(&kernel, b"definitely not a kernel\n".repeat(100)).unwrap();
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "junk",
        "--kernel",
        kernel.to_str().unwrap(),
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(2), "console:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains("VM 'junk':") && err.contains("is not a kernel kvmlab can boot"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_kernel_and_tiny_memory_are_clear_errors() {
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "nofile",
        "--kernel",
        "/nonexistent/vmlinuz",
    ]);
    let (code, _, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("VM 'nofile': cannot read kernel /nonexistent/vmlinuz"),
        "{err}"
    );

    let vm = Vm::start(&["vm", "run", "--name", "tiny", "--memory", "1MiB"]);
    let (code, _, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("VM 'tiny': 1 MiB of memory is too small"),
        "{err}"
    );
}

#[test]
fn missing_kvm_device_is_a_clear_error() {
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "nokvm",
        "--kvm-device",
        "/nonexistent/kvm",
    ]);
    let (code, _, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("VM 'nokvm': cannot open /nonexistent/kvm: No such file or directory"),
        "{err}"
    );
    assert!(err.contains("kvmlab needs KVM"), "{err}");
}

#[test]
fn timeout_stops_a_halted_guest() {
    let vm = Vm::start(&[
        "vm",
        "run",
        "--cmdline",
        "kvmlab.test=halt",
        "--timeout",
        "1",
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(30));
    assert_eq!(code, Some(124), "console:\n{out}\nstderr:\n{err}");
    assert!(out.contains("halting"), "{out}");
    assert!(err.contains("time limit"), "{err}");
}

/// The bzImage booted as it is, through the 64-bit boot protocol: its
/// decompressor (built without verbose output, so it prints nothing) parses our
/// command line, finds `earlyprintk=serial` and programs COM1, which the exit
/// statistics show. Decompressing takes minutes under emulated KVM, so the run
/// is cut short; on hardware KVM the kernel may even get to reboot (exit 0).
#[test]
fn debian_bzimage_direct_boot_runs_its_decompressor() {
    let dir = temp_dir("bzimage");
    let stats = dir.join("stats.json");
    let kernel = debian_kernel();
    let vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "bz",
        "--bzimage-direct",
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "256MiB",
        "--cmdline",
        "earlyprintk=serial console=ttyS0 reboot=k panic=-1",
        "--timeout",
        "8",
        "--stats",
        stats.to_str().unwrap(),
    ]);
    let (code, out, err) = vm.finish(Duration::from_secs(60));
    assert!(
        matches!(code, Some(124) | Some(0)),
        "exit {code:?}\nconsole:\n{out}\nstderr:\n{err}"
    );
    assert!(
        err.contains("booting bzImage (64-bit boot protocol"),
        "{err}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let serial = json["by_device"]["serial 0x3f8-0x3ff"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        serial >= 8,
        "the decompressor did not program the UART: {json}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Debian's kernel (package linux-image-amd64): kvmlab unpacks the vmlinux ELF
/// from /boot/vmlinuz-* and boots it; the kernel must print its version, our
/// exact command line and the E820 map we built, find its initrd, and find
/// both vCPUs in our MP table. Under emulated KVM it cannot get much further, so the test stops the
/// VM once it has seen those lines.
#[test]
fn debian_kernel_prints_boot_protocol_lines() {
    let kernel = debian_kernel();
    // The initrd that came with it (initramfs-tools builds it at install).
    let version = kernel
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("vmlinuz-");
    let initrd = PathBuf::from(format!("/boot/initrd.img-{version}"));
    assert!(
        initrd.exists(),
        "{} is missing (apt-get install linux-image-amd64 builds it)",
        initrd.display()
    );
    // acpi=off: this test covers the MP table; tests/vm_acpi.rs covers ACPI.
    let cmdline = "earlyprintk=serial console=ttyS0 reboot=k panic=-1 acpi=off kvmlab.test=debian";
    let mut vm = Vm::start(&[
        "vm",
        "run",
        "--name",
        "debian",
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "256MiB",
        "--vcpus",
        "2",
        "--initrd",
        initrd.to_str().unwrap(),
        "--cmdline",
        cmdline,
        "--timeout",
        "170",
    ]);
    let expected_e820 = [
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "BIOS-e820: [mem 0x00000000000e0000-0x00000000000fffff] reserved",
        "BIOS-e820: [mem 0x0000000000100000-0x000000000fffffff] usable",
    ];
    let command_line = format!("Command line: {cmdline}");
    let seen = vm.read_until(Duration::from_secs(150), |lines| {
        let has = |needle: &str| lines.iter().any(|l| l.contains(needle));
        has("Linux version ")
            && lines.iter().any(|l| l.ends_with(&command_line))
            && expected_e820.iter().all(|e| has(e))
            && has("RAMDISK: [mem 0x")
            && has("MPTABLE: OEM ID: KVMLAB")
            && has("smpboot: Allowing 2 CPUs")
    });
    let (code, out, err) = vm.finish(Duration::ZERO);
    assert!(
        seen,
        "missing boot lines (exit {code:?})\nconsole:\n{out}\nstderr:\n{err}"
    );
    assert!(
        err.contains("vmlinux ELF unpacked from the bzImage"),
        "{err}"
    );
    // Exactly what we passed, nothing appended.
    let line = out.lines().find(|l| l.contains("Command line:")).unwrap();
    assert!(line.ends_with(&format!("] {command_line}")), "{line}");
    // The memory map has exactly our two RAM ranges and the BIOS area.
    assert_eq!(
        out.lines().filter(|l| l.contains("BIOS-e820:")).count(),
        3,
        "{out}"
    );
}
