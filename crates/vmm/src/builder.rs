//! Assembles a VM from a [`VmConfig`]: memory, kernel, boot structures,
//! devices and vCPUs, ready to run.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use kvm_ioctls::{Cap, IoEventAddress};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::arch::x86_64::{acpi, boot_params, cpuid, e820, layout, mptable, paging, regs};
use crate::builtin::BUILTIN_GUEST;
use crate::config::{ConsoleIo, KernelSource, VmConfig};
use crate::devices::Bus;
use crate::devices::legacy::i8042::{I8042_BASE, I8042_PORTS};
use crate::devices::legacy::serial::SERIAL_PORTS;
use crate::devices::legacy::{
    COM1_BASE, I8042, RESET_CONTROL_PORT, ResetControl, SERIAL_IRQ, SerialConsole,
};
use crate::devices::virtio::block::Block;
use crate::devices::virtio::net::{Net, NetCounters};
use crate::devices::virtio::{VirtioDevice, attach};
use crate::error::{VmError, VmErrorKind};
use crate::loader;
use crate::runtime::Vmm;
use crate::vstate::vcpu::{BootEntry, Buses, Vcpu};
use crate::vstate::vm::Vm;
use crate::vstate::{StopReason, VmControl};

/// Smallest VM: the boot structures below 1 MiB and a kernel above it.
pub const MIN_MEMORY: u64 = 2 << 20;

/// Builds the VM described by `config`, with its console on `console`.
pub fn build(config: &VmConfig, console: ConsoleIo) -> Result<Vmm, VmError> {
    let fail = |kind| VmError {
        vm: config.name.clone(),
        kind,
    };
    validate(config).map_err(fail)?;

    // Read the files before touching KVM, so that a wrong path or a file that
    // is no kernel is reported as such even on a host without KVM.
    let (image, kernel_name): (Cow<'static, [u8]>, String) = match &config.kernel {
        KernelSource::Builtin => (
            Cow::Borrowed(BUILTIN_GUEST),
            "the built-in guest".to_string(),
        ),
        KernelSource::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| {
                fail(VmErrorKind::ReadFile {
                    what: "kernel",
                    path: path.clone(),
                    source,
                })
            })?;
            (Cow::Owned(bytes), path.display().to_string())
        }
    };
    if !loader::bzimage::is_bzimage(&image) && !image.starts_with(b"\x7fELF") {
        return Err(fail(VmErrorKind::BadKernel {
            kernel: kernel_name,
            reason:
                "neither a bzImage (no \"HdrS\" setup header) nor an ELF vmlinux (no ELF magic)"
                    .to_string(),
        }));
    }
    let initrd = match &config.initrd {
        Some(path) => Some(std::fs::read(path).map_err(|source| {
            fail(VmErrorKind::ReadFile {
                what: "initrd",
                path: path.clone(),
                source,
            })
        })?),
        None => None,
    };

    let vm = Vm::new(&config.kvm_device, config.memory_bytes).map_err(fail)?;
    let max_vcpus = vm.kvm.get_max_vcpus();
    if usize::from(config.vcpus) > max_vcpus {
        return Err(fail(VmErrorKind::InvalidConfig(format!(
            "{} vCPUs asked for, KVM on this host allows at most {max_vcpus}",
            config.vcpus
        ))));
    }

    let low_end = layout::low_ram_end(config.memory_bytes);
    let kernel = loader::load_kernel(
        &vm.memory,
        low_end,
        &image,
        &kernel_name,
        config.bzimage_mode,
    )
    .map_err(fail)?;
    drop(image);
    let initrd_range = match &initrd {
        Some(data) => Some((
            loader::load_initrd(&vm.memory, low_end, &kernel, data).map_err(fail)?,
            data.len() as u64,
        )),
        None => None,
    };
    drop(initrd);

    let control = Arc::new(VmControl::default());
    let mut buses = legacy_devices(&vm, &control, console).map_err(fail)?;
    let mut nic_counters = Vec::new();
    let attached = virtio_devices(&vm, config, &mut buses.mmio, &mut nic_counters).map_err(fail)?;
    let buses = Arc::new(buses);
    let cmdline = match (config.cmdline.trim(), attached.cmdline.as_str()) {
        (user, "") => user.to_string(),
        ("", words) => words.to_string(),
        (user, words) => format!("{user} {words}"),
    };
    let cmdline_size = loader::load_cmdline(&vm.memory, &cmdline, &kernel).map_err(fail)?;

    let acpi = acpi::build(&acpi::AcpiConfig {
        vcpus: config.vcpus,
        serial: Some(acpi::PortDevice {
            base: COM1_BASE as u16,
            len: SERIAL_PORTS as u8,
            irq: SERIAL_IRQ,
        }),
        virtio_mmio: &attached.slots,
    })
    .map_err(|e| fail(VmErrorKind::Setup(format!("building the ACPI tables: {e}"))))?;

    let map = e820::memory_map(config.memory_bytes);
    let zero_page = boot_params::build(&boot_params::ZeroPage {
        setup_header: kernel.setup_header,
        cmdline_addr: layout::CMDLINE_START,
        cmdline_size,
        initrd: initrd_range,
        e820: &map,
        acpi_rsdp_addr: Some(acpi.rsdp_addr),
    })
    .map_err(|e| fail(VmErrorKind::Setup(e.to_string())))?;
    let setup = |what: &str, e: vm_memory::GuestMemoryError| {
        fail(VmErrorKind::Setup(format!("writing {what}: {e}")))
    };
    vm.memory
        .write_obj(zero_page, GuestAddress(layout::ZERO_PAGE_START))
        .map_err(|e| setup("the zero page", e))?;
    acpi.write_to(&vm.memory)
        .map_err(|e| setup("the ACPI tables", e))?;
    regs::write_boot_tables(&vm.memory).map_err(|e| setup("the boot GDT", e))?;
    mptable::write(&vm.memory, config.vcpus).map_err(|e| setup("the MP table", e))?;
    let cr3 =
        paging::write_boot_page_tables(&vm.memory).map_err(|e| setup("the boot page tables", e))?;

    let hide = !cpuid::host_has_hardware_virtualization();
    let mut notes = Vec::new();
    let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
    for index in 0..config.vcpus {
        let vcpu = Vcpu::new(&vm, index, buses.clone(), control.clone()).map_err(fail)?;
        let boot = (index == 0).then_some(BootEntry {
            entry: kernel.entry,
            cr3,
        });
        vcpu.configure(&vm.kvm, config.vcpus, hide, boot)
            .map_err(fail)?;
        if hide && index == 0 {
            notes.extend(vcpu.unhidden_features());
        }
        vcpus.push(vcpu);
    }
    Ok(Vmm {
        name: config.name.clone(),
        _vm: vm,
        vcpus,
        buses,
        control,
        kernel_description: kernel.description,
        notes,
        nics: nic_counters,
    })
}

fn validate(config: &VmConfig) -> Result<(), VmErrorKind> {
    if config.vcpus == 0 {
        return Err(VmErrorKind::InvalidConfig(
            "a VM needs at least one vCPU".to_string(),
        ));
    }
    if config.vcpus > mptable::MAX_VCPUS {
        return Err(VmErrorKind::InvalidConfig(format!(
            "{} vCPUs asked for, kvmlab supports at most {}",
            config.vcpus,
            mptable::MAX_VCPUS
        )));
    }
    if config.memory_bytes % 4096 != 0 {
        return Err(VmErrorKind::InvalidConfig(format!(
            "memory must be a multiple of 4 KiB, not {} bytes",
            config.memory_bytes
        )));
    }
    if config.memory_bytes < MIN_MEMORY {
        return Err(VmErrorKind::MemoryTooSmall {
            memory: config.memory_bytes,
            needed: MIN_MEMORY,
            what: "kvmlab's boot structures and a kernel at 1 MiB".to_string(),
        });
    }
    Ok(())
}

/// The VM's NICs, then its disks, as virtio-mmio devices; returns where they are
/// and the command-line words that announce them.
fn virtio_devices(
    vm: &Vm,
    config: &VmConfig,
    mmio: &mut Bus,
    nic_counters: &mut Vec<(String, Arc<NetCounters>)>,
) -> Result<attach::Attached, VmErrorKind> {
    let mut devices: Vec<(String, Box<dyn VirtioDevice>)> = Vec::new();
    for net in &config.nets {
        let device = Net::new(net.clone());
        nic_counters.push((net.tap.clone(), device.counters()));
        devices.push((format!("virtio-net {}", net.tap), Box::new(device)));
    }
    for disk in &config.disks {
        let block = Block::new(disk.clone()).map_err(|e| VmErrorKind::Setup(e.to_string()))?;
        devices.push((
            format!("virtio-blk {}", disk.path.display()),
            Box::new(block),
        ));
    }
    attach::attach(&vm.fd, &vm.memory, mmio, devices)
}

/// COM1 (output to the caller's sink, interrupt through an irqfd on IRQ 4) and
/// the i8042 (a guest reset stops the VM cleanly).
fn legacy_devices(
    vm: &Vm,
    control: &Arc<VmControl>,
    console: ConsoleIo,
) -> Result<Buses, VmErrorKind> {
    let irq =
        EventFd::new(EFD_NONBLOCK).map_err(|e| VmErrorKind::Setup(format!("eventfd: {e}")))?;
    vm.fd
        .register_irqfd(&irq, SERIAL_IRQ)
        .map_err(|source| VmErrorKind::Kvm {
            op: "KVM_IRQFD",
            source,
        })?;
    let mut serial = SerialConsole::new(irq, console.output);
    if coalesce_serial_output(vm) {
        // Weak: the console input thread keeps the serial device for the life of
        // the process, and must not keep the VM with it. Closing the VM fd while
        // the process lives lets KVM drop its memory notifier then, which spares
        // the process's exit a second SRCU grace period.
        let fd = Arc::downgrade(&vm.fd);
        let zone = || IoEventAddress::Pio(COM1_BASE);
        serial.on_polling_mode(Box::new(move |polling| {
            let Some(fd) = fd.upgrade() else {
                return;
            };
            // Best effort: without buffering every byte exits, which is only slower.
            let _ = if polling {
                fd.register_coalesced_mmio(zone(), 1)
            } else {
                fd.unregister_coalesced_mmio(zone(), 1)
            };
        }));
    }
    let serial = Arc::new(Mutex::new(serial));
    if let Some(input) = console.input {
        SerialConsole::spawn_input(serial.clone(), input)
            .map_err(|e| VmErrorKind::Setup(format!("starting the console input thread: {e}")))?;
    }
    let on_reset = control.clone();
    let i8042 = Arc::new(Mutex::new(I8042::new(Box::new(move || {
        on_reset.request_stop(StopReason::GuestReset)
    }))));

    let mut pio = Bus::new();
    let name = format!(
        "serial {:#x}-{:#x}",
        COM1_BASE,
        COM1_BASE + SERIAL_PORTS - 1
    );
    pio.insert(COM1_BASE, SERIAL_PORTS, &name, serial)
        .map_err(|e| VmErrorKind::Setup(e.to_string()))?;
    let name = format!(
        "i8042 {:#x}-{:#x}",
        I8042_BASE,
        I8042_BASE + I8042_PORTS - 1
    );
    pio.insert(I8042_BASE, I8042_PORTS, &name, i8042)
        .map_err(|e| VmErrorKind::Setup(e.to_string()))?;
    let on_reboot = control.clone();
    let reset_control = Arc::new(Mutex::new(ResetControl::new(Box::new(move || {
        on_reboot.request_stop(StopReason::GuestReboot)
    }))));
    pio.insert(RESET_CONTROL_PORT, 1, "reset control 0xcf9", reset_control)
        .map_err(|e| VmErrorKind::Setup(e.to_string()))?;
    Ok(Buses {
        pio,
        mmio: Bus::new(),
        coalesced: Mutex::new(()),
    })
}

/// Lets KVM buffer the guest's writes to COM1's transmit register instead of
/// exiting to kvmlab for every byte, while the guest polls the UART (as firmware,
/// early consoles and the built-in guest do); returns whether it does. The vCPUs
/// replay buffered writes, in order, at their next exit (a polling guest reads
/// the line status before each FIFO load, and that read exits) and a flusher
/// thread within milliseconds. Under emulated KVM an exit costs tens of
/// microseconds, so a line of console output gets a few exits instead of eighty.
/// A guest that turns the transmit interrupt on waits for it after each FIFO
/// load, which needs the writes at once: buffering stops then (`SerialConsole`).
fn coalesce_serial_output(vm: &Vm) -> bool {
    vm.kvm.check_extension(Cap::CoalescedMmio)
        && vm.kvm.check_extension(Cap::CoalescedPio)
        && vm
            .fd
            .register_coalesced_mmio(IoEventAddress::Pio(COM1_BASE), 1)
            .is_ok()
}
