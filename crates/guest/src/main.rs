//! kvmlab's built-in lab guest.
//!
//! A freestanding program that kvmlab boots when a VM names no kernel: a small
//! lab PC. It prints a banner (boot protocol, memory size, command line) on COM1,
//! finds its virtio-mmio devices on the command line, gives its NICs the
//! addresses the command line names (VLAN sub-interfaces on trunks), answers ARP
//! and ICMP echo, runs the pings and arpings it was asked for and prints one
//! machine-readable `kvmlab-report {...}` line per result. It boots through the
//! Linux 64-bit boot protocol (kvmlab) and through PVH (QEMU's microvm), see
//! `boot.rs`. The command line, the ready marker and the report lines are the
//! contract with the host, defined in `kvmlab-guest-proto` (its `cmdline` module
//! documents every word).
//!
//! After its tasks it keeps answering forever, halted between interrupts,
//! unless `kvmlab.poweroff` is given; a guest without NICs has nothing to answer
//! and powers off.
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

extern crate alloc;

mod boot;
mod bootinfo;
mod clock;
mod disk;
mod heap;
mod irq;
mod mem;
mod net;
mod paging;
mod port;
mod power;
mod probe;
mod serial;
mod shell;

use alloc::vec::Vec;
use core::fmt::Write;
use core::ptr::NonNull;

use smoltcp::time::Instant;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

use kvmlab_guest_proto::READY_MARKER;
use kvmlab_guest_proto::cmdline::Config;
use kvmlab_guest_proto::mmio::MmioDevice;
use kvmlab_guest_proto::report::{DONE_LINE, DiskReport, ProbeKind};

use bootinfo::BootInfo;
use net::{Net, Nic, Transport};
use probe::Prober;
use serial::Serial;
use shell::Shell;

/// "virt" in little-endian: the magic value of a virtio-mmio register block.
const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;
const VIRTIO_ID_NET: u32 = 1;
const VIRTIO_ID_BLOCK: u32 = 2;

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

    // The command line, in one pass (a word-by-word search per flag would
    // cost milliseconds where every guest instruction is emulated).
    let cmdline = core::str::from_utf8(info.cmdline).unwrap_or("");
    let config = Config::parse(cmdline);
    if config.verbose {
        let _ = writeln!(
            console,
            "kvmlab-guest: {} bytes of RAM usable in {} ranges",
            info.ram_bytes, info.ram_ranges
        );
    }
    if config.cpuid {
        let leaf1 = core::arch::x86_64::__cpuid(1);
        let _ = writeln!(
            console,
            "kvmlab-guest: cpuid 1: ecx={:#010x} edx={:#010x} ebx={:#010x}",
            leaf1.ecx, leaf1.edx, leaf1.ebx
        );
    }

    let test = |what: &str| config.tests.contains(&what);
    if test("triple-fault") {
        console.write_bytes(b"kvmlab-guest: triple fault requested\n");
        power::triple_fault();
    }
    if test("sse") {
        console.write_bytes(b"kvmlab-guest: running an SSE instruction\n");
        power::sse_instruction();
        console.write_bytes(b"kvmlab-guest: SSE instruction done\n");
    }
    if test("halt") {
        console.write_bytes(b"kvmlab-guest: halting\n");
        power::halt_forever();
    }

    paging::init();
    irq::init(&mut console);
    for word in &config.invalid {
        let _ = writeln!(console, "kvmlab-guest: warning: cannot parse \"{word}\"");
    }
    run(&config, &mut console)
}

/// Brings up the devices, runs the tasks and serves the network.
fn run(config: &Config<'_>, console: &mut Serial) -> ! {
    let mut net = Net::default();
    // Longest halt when some NIC cannot interrupt us.
    let mut poll_us = None;
    let mut disks = Vec::new();
    for device in &config.devices {
        let Some((id, transport)) = open_device(device, console) else {
            continue;
        };
        match id {
            VIRTIO_ID_NET => match Nic::new(transport) {
                Ok(nic) => {
                    if !irq::route(device.irq) {
                        let _ = writeln!(
                            console,
                            "kvmlab-guest: warning: irq {} is not a pin of the IOAPIC at 0xfec00000: polling every 10 ms",
                            device.irq
                        );
                        poll_us = Some(10_000);
                    }
                    // As `nic {}: virtio-net at {:#x} irq {} mac {:02x}:...`,
                    // without core::fmt.
                    console.write_bytes(b"kvmlab-guest: nic ");
                    console.write_u64(net.nics.len() as u64);
                    console.write_bytes(b": virtio-net at ");
                    console.write_hex(device.base);
                    console.write_bytes(b" irq ");
                    console.write_u64(u64::from(device.irq));
                    console.write_bytes(b" mac ");
                    console.write_mac(&nic.mac);
                    console.end_line();
                    net.nics.push(nic);
                }
                Err(e) => {
                    let _ = writeln!(
                        console,
                        "kvmlab-guest: warning: virtio-net at {:#x}: {e}",
                        device.base
                    );
                }
            },
            VIRTIO_ID_BLOCK => {
                let _ = writeln!(
                    console,
                    "kvmlab-guest: disk {}: virtio-blk at {:#x}",
                    disks.len(),
                    device.base
                );
                disks.push(transport);
            }
            _ => {}
        }
    }
    let now = Instant::from_micros(clock::now_us() as i64);
    for ip in &config.ips {
        let vlan = ip.vlan.unwrap_or(0);
        match net.add_address(ip, now, clock::rdtsc()) {
            Ok(()) => {
                console.write_bytes(b"kvmlab-guest: nic ");
                console.write_u64(ip.nic as u64);
                console.write_bytes(b" vlan ");
                console.write_u64(u64::from(vlan));
                console.write_bytes(b": ");
                console.write_ipv4(ip.addr);
                console.write_bytes(b"/");
                console.write_u64(u64::from(ip.prefix));
                console.end_line();
            }
            Err(e) => {
                let _ = writeln!(
                    console,
                    "kvmlab-guest: warning: nic {} vlan {vlan}: {e}",
                    ip.nic
                );
            }
        }
    }
    for route in &config.routes {
        if let Err(e) = net.add_route(*route) {
            let _ = writeln!(console, "kvmlab-guest: warning: route {route}: {e}");
        }
    }
    net.forward = config.forward;
    console.write_bytes(READY_MARKER.as_bytes());
    console.end_line();

    if config.disk_checksum {
        for (index, transport) in disks.into_iter().enumerate() {
            let (sectors, checksum) = disk::first_sector_checksum(transport);
            let report = DiskReport {
                index,
                sectors,
                checksum,
            };
            let _ = report.write_line(console);
        }
    }

    let targets = config
        .ping
        .iter()
        .map(|&ip| (ProbeKind::Ping, ip))
        .chain(config.arping.iter().map(|&ip| (ProbeKind::Arping, ip)))
        .collect();
    let mut prober = Prober::new(targets, config.count, config.timeout_ms);
    let mut reported = false;
    // The console's shell: keys raise COM1's interrupt, so an idle guest still
    // sleeps until something happens.
    let mut shell = Shell::new(config.hostname.unwrap_or("guest"));
    let keys_interrupt = irq::route(serial::COM1_IRQ);
    if keys_interrupt {
        console.enable_rx_interrupt();
    }
    loop {
        let now_us = clock::now_us();
        let now = Instant::from_micros(now_us as i64);
        net.pump(now_us);
        net.poll(now);
        let step = prober.step(&mut net, now_us, console);
        if step.sent {
            net.poll(Instant::from_micros(clock::now_us() as i64));
        }
        if prober.done() && !reported {
            reported = true;
            console.write_bytes(DONE_LINE.as_bytes());
            console.end_line();
            if config.poweroff || net.nics.is_empty() {
                console.write_bytes(b"kvmlab-guest: powering off\n");
                power::power_off();
            }
            shell.start(&mut net, console);
        }
        while let Some(key) = console.read_byte() {
            shell.key(key, &mut net, console);
        }
        let shell_at = shell.step(&mut net, console);
        if shell.busy() {
            net.poll(Instant::from_micros(clock::now_us() as i64));
        }
        let now_us = clock::now_us();
        let net_delay = net.poll_delay_us(Instant::from_micros(now_us as i64));
        let probe_delay = step
            .deadline
            .map(|deadline| deadline.saturating_sub(now_us));
        let shell_delay = shell_at.map(|at| at.saturating_sub(now_us));
        let forward_delay = net
            .forward_pending(now_us)
            .map(|at| at.saturating_sub(now_us));
        // Without the UART's interrupt, look at the keyboard ten times a second.
        let keys_delay = (!keys_interrupt).then_some(100_000);
        let timeout = [
            net_delay,
            probe_delay,
            shell_delay,
            forward_delay,
            keys_delay,
            poll_us,
        ]
        .into_iter()
        .flatten()
        .min();
        irq::wait(timeout);
    }
}

/// Checks the virtio-mmio register block `device` and opens a transport on it;
/// returns the device id with it. `None` for an empty slot or a bad block.
fn open_device(device: &MmioDevice, console: &mut Serial) -> Option<(u32, Transport)> {
    if !paging::map_mmio(device.base, device.size) {
        let _ = writeln!(
            console,
            "kvmlab-guest: warning: virtio-mmio at {:#x} is above 4 GiB",
            device.base
        );
        return None;
    }
    // SAFETY: the VMM announced a virtio-mmio register block of `size` bytes at
    // `base`, which is now identity-mapped (paging.rs); the magic value and
    // device id are 32-bit registers at offsets 0 and 8.
    let (magic, id) = unsafe {
        (
            core::ptr::read_volatile(device.base as *const u32),
            core::ptr::read_volatile((device.base + 8) as *const u32),
        )
    };
    if magic != VIRTIO_MMIO_MAGIC {
        let _ = writeln!(
            console,
            "kvmlab-guest: warning: no virtio-mmio device at {:#x}",
            device.base
        );
        return None;
    }
    if id != VIRTIO_ID_NET && id != VIRTIO_ID_BLOCK {
        return None;
    }
    let header = NonNull::new(device.base as *mut VirtIOHeader)?;
    // SAFETY: as above; nothing else in the guest uses this register block, and
    // it stays mapped for the guest's life ('static).
    match unsafe { MmioTransport::new(header, device.size as usize) } {
        Ok(transport) => Some((id, transport)),
        Err(e) => {
            let _ = writeln!(
                console,
                "kvmlab-guest: warning: virtio-mmio at {:#x}: {e}",
                device.base
            );
            None
        }
    }
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
