//! kvmlab's built-in lab guest.
//!
//! A freestanding program that kvmlab boots when a VM names no kernel. This first
//! version prints a banner (boot protocol, memory size, command line) on COM1 and
//! powers off. It boots through the Linux 64-bit boot protocol (kvmlab) and
//! through PVH (QEMU's microvm), see `boot.rs`.
//!
//! Command-line words it understands:
//! * `kvmlab.test=triple-fault`: crash on purpose, to test the VMM's error path.
//! * `kvmlab.test=halt`: stay halted instead of powering off.
//! * `kvmlab.cpuid`: also print CPUID leaf 1 as the guest sees it.
#![no_std]
#![no_main]

mod boot;
mod bootinfo;
mod mem;
mod port;
mod power;
mod serial;

use core::fmt::Write;

use bootinfo::BootInfo;
use serial::Serial;

/// Rust entry, called by the assembly in `boot.rs`.
#[unsafe(no_mangle)]
extern "C" fn guest_main(protocol: u64, boot_ptr: u64) -> ! {
    let mut console = Serial::init();
    // SAFETY: `protocol` and `boot_ptr` are what the entry code got from the VMM.
    let info = unsafe { BootInfo::parse(protocol, boot_ptr) };
    let cmdline = core::str::from_utf8(info.cmdline).unwrap_or("<not UTF-8>");
    let _ = writeln!(
        console,
        "kvmlab-guest {}: booted via {}",
        env!("CARGO_PKG_VERSION"),
        info.protocol
    );
    let _ = writeln!(
        console,
        "kvmlab-guest: memory {} MiB ({} bytes usable in {} RAM ranges)",
        info.ram_mib(),
        info.ram_bytes,
        info.ram_ranges
    );
    let _ = writeln!(console, "kvmlab-guest: cmdline \"{cmdline}\"");
    if info.has_arg(b"kvmlab.cpuid") {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        let _ = writeln!(console, "kvmlab-guest: cpuid 1: ecx={:#010x} edx={:#010x} ebx={:#010x}", leaf1.ecx, leaf1.edx, leaf1.ebx);
    }

    if info.has_arg(b"kvmlab.test=triple-fault") {
        let _ = writeln!(console, "kvmlab-guest: triple fault requested");
        power::triple_fault();
    }
    if info.has_arg(b"kvmlab.test=halt") {
        let _ = writeln!(console, "kvmlab-guest: halting");
        power::halt_forever();
    }
    let _ = writeln!(console, "kvmlab-guest: powering off");
    power::power_off()
}

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Serial, "kvmlab-guest: panic: {panic}");
    power::halt_forever()
}

/// The prebuilt `core` references this symbol; with panic=abort nothing calls it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
