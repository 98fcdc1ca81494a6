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
//! * `kvmlab.test=sse`: execute one SSE instruction (`xorps`), which runs on
//!   hardware virtualisation but which KVM's instruction emulator (PVM)
//!   cannot execute: tests the VMM's emulation-failure report.
//! * `kvmlab.cpuid`: also print CPUID leaf 1 as the guest sees it.
//! * `kvmlab.verbose`: also print the usable RAM in bytes and its ranges.
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

    // The banner: two short lines, the second one ends it. Written without
    // core::fmt and kept short: under emulated KVM every guest instruction is
    // emulated and every byte written to the UART is a VM exit.
    console.write_bytes(concat!("kvmlab-guest ", env!("CARGO_PKG_VERSION"), " (").as_bytes());
    console.write_bytes(info.protocol.as_bytes());
    console.write_bytes(b" boot): memory ");
    console.write_u64(info.ram_mib());
    console.write_bytes(b" MiB\nkvmlab-guest: cmdline \"");
    console.write_bytes(info.cmdline);
    console.write_bytes(b"\"\n");

    if info.has_arg(b"kvmlab.verbose") {
        let _ = writeln!(
            console,
            "kvmlab-guest: {} bytes of RAM usable in {} ranges",
            info.ram_bytes, info.ram_ranges
        );
    }
    if info.has_arg(b"kvmlab.cpuid") {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        let _ = writeln!(
            console,
            "kvmlab-guest: cpuid 1: ecx={:#010x} edx={:#010x} ebx={:#010x}",
            leaf1.ecx, leaf1.edx, leaf1.ebx
        );
    }

    if info.has_arg(b"kvmlab.test=triple-fault") {
        console.write_bytes(b"kvmlab-guest: triple fault requested\n");
        power::triple_fault();
    }
    if info.has_arg(b"kvmlab.test=sse") {
        console.write_bytes(b"kvmlab-guest: running an SSE instruction\n");
        power::sse_instruction();
        console.write_bytes(b"kvmlab-guest: SSE instruction done\n");
    }
    if info.has_arg(b"kvmlab.test=halt") {
        console.write_bytes(b"kvmlab-guest: halting\n");
        power::halt_forever();
    }
    console.write_bytes(b"kvmlab-guest: powering off\n");
    power::power_off()
}

#[panic_handler]
fn panic(panic: &core::panic::PanicInfo) -> ! {
    let mut console = Serial::unbuffered_start();
    let _ = writeln!(console, "kvmlab-guest: panic: {panic}");
    power::halt_forever()
}

/// The prebuilt `core` references this symbol; with panic=abort nothing calls it.
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}
