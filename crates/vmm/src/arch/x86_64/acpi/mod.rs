//! ACPI tables for x86-64 guests: RSDP, XSDT, FADT, MADT and a DSDT.
//!
//! kvmlab announces its virtio-mmio devices on the kernel command line, which
//! kernels with a built-in virtio-mmio driver read. Stock distribution kernels
//! build that driver as a module, loaded from the initramfs long after the
//! command line was parsed; they find the devices through ACPI instead, as
//! `LNRO0005` devices in the DSDT. So kvmlab writes both.
//!
//! The tables describe a hardware-reduced ACPI platform (no PM registers, no
//! SCI, no legacy PIC, no fixed-feature buttons): the vCPUs' local APICs and the
//! IOAPIC in the MADT; COM1 and the virtio-mmio devices in the DSDT. They lie in
//! the BIOS area at [`ACPI_START`], RSDP first, where Linux also finds the RSDP
//! by scanning; the zero page points at it as well (`acpi_rsdp_addr`).
//!
//! Layout, each table on a 16-byte boundary: RSDP, DSDT, FADT, MADT, XSDT (last,
//! so that every other table's address is known when it is built).

use acpi_tables::Aml;
use acpi_tables::aml::{
    Device, EISAName, IO, Interrupt, Memory32Fixed, Name, Path, ResourceTemplate, Scope,
};
use acpi_tables::fadt::{FADT, FADTBuilder, Flags};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, MADT, ProcessorLocalApic,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::layout::{ACPI_END, ACPI_START, IOAPIC_START, LAPIC_START};
use crate::devices::virtio::attach::MmioSlot;

#[cfg(test)]
mod tests;

/// OEM id in every table's header.
const OEM_ID: [u8; 6] = *b"KVMLAB";
/// OEM revision in every table's header.
const OEM_REVISION: u32 = 1;
/// DSDT revision: 2 and up means 64-bit AML integers.
const DSDT_REVISION: u8 = 2;
/// Every table starts on this boundary (the RSDP needs 16 bytes).
const TABLE_ALIGN: u64 = 16;
/// Length of the header common to all tables but the RSDP.
const SDT_HEADER_LEN: u64 = 36;
/// IOAPIC id in the MADT: KVM's in-kernel IOAPIC resets its id register to 0.
const IOAPIC_ID: u8 = 0;
/// First global system interrupt of the IOAPIC: its 24 pins are GSIs 0-23.
const IOAPIC_GSI_BASE: u32 = 0;
/// `_HID` of a virtio-mmio device, as Linux's virtio_mmio driver matches it.
pub const VIRTIO_MMIO_HID: &str = "LNRO0005";
/// `_HID` of a 16550-compatible serial port.
pub const SERIAL_HID: &str = "PNP0501";

/// FADT IA-PC boot architecture flags (ACPI 6.5, table 5.11): the i8042 is
/// there (kvmlab's, for reset); there is no VGA, no MSI (no PCI at all) and
/// no CMOS RTC, so Linux does not probe for them.
const IAPC_8042: u16 = 1 << 1;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
const IAPC_MSI_NOT_SUPPORTED: u16 = 1 << 3;
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

/// A legacy device on I/O ports with an edge-triggered ISA interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortDevice {
    /// First I/O port.
    pub base: u16,
    /// Number of ports.
    pub len: u8,
    /// Interrupt line (GSI).
    pub irq: u32,
}

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct AcpiConfig<'a> {
    /// Number of vCPUs; vCPU `i` has APIC id and ACPI processor UID `i`.
    pub vcpus: u8,
    /// COM1, if the VM has it.
    pub serial: Option<PortDevice>,
    /// The virtio-mmio devices, in the order they were attached.
    pub virtio_mmio: &'a [MmioSlot],
}

/// Errors building the tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    /// A virtio-mmio window the DSDT cannot describe with 32-bit addresses.
    #[error("the virtio-mmio window at {base:#x} ({size:#x} bytes) does not lie below 4 GiB")]
    WindowAbove4GiB {
        /// Start of the window.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// The tables do not fit between [`ACPI_START`] and [`ACPI_END`].
    #[error(
        "the ACPI tables need {needed} bytes, the area at {ACPI_START:#x} holds {}",
        ACPI_END - ACPI_START
    )]
    TooBig {
        /// Bytes the tables need, alignment included.
        needed: u64,
    },
}

/// The tables, placed and ready to be written into guest memory.
#[derive(Clone, Debug)]
pub struct AcpiTables {
    /// Guest address of the RSDP, for the zero page.
    pub rsdp_addr: u64,
    /// Each table's guest address and bytes, RSDP first.
    pub tables: Vec<(u64, Vec<u8>)>,
}

impl AcpiTables {
    /// Writes every table into `memory`.
    pub fn write_to<M: Bytes<GuestAddress, E = GuestMemoryError>>(
        &self,
        memory: &M,
    ) -> Result<(), GuestMemoryError> {
        for (addr, bytes) in &self.tables {
            memory.write_slice(bytes, GuestAddress(*addr))?;
        }
        Ok(())
    }
}

/// Builds the tables for `config` and places them from [`ACPI_START`].
pub fn build(config: &AcpiConfig<'_>) -> Result<AcpiTables, AcpiError> {
    let dsdt = dsdt(config)?;
    let madt = madt(config.vcpus);
    let xsdt_len = SDT_HEADER_LEN + 2 * 8;

    let mut next = ACPI_START;
    let mut place = |len: u64| {
        let at = next;
        next = (at + len).next_multiple_of(TABLE_ALIGN);
        at
    };
    let rsdp_addr = place(Rsdp::len() as u64);
    let dsdt_addr = place(dsdt.len() as u64);
    let fadt_addr = place(FADT::len() as u64);
    let madt_addr = place(madt.len() as u64);
    let xsdt_addr = place(xsdt_len);
    if next > ACPI_END {
        return Err(AcpiError::TooBig {
            needed: next - ACPI_START,
        });
    }

    let mut xsdt = XSDT::new(OEM_ID, *b"KVMLXSDT", OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = to_bytes(&xsdt);
    debug_assert_eq!(xsdt.len() as u64, xsdt_len);

    Ok(AcpiTables {
        rsdp_addr,
        tables: vec![
            (rsdp_addr, to_bytes(&Rsdp::new(OEM_ID, xsdt_addr))),
            (dsdt_addr, dsdt),
            (fadt_addr, fadt(dsdt_addr)),
            (madt_addr, madt),
            (xsdt_addr, xsdt),
        ],
    })
}

/// The bytes of an ACPI object.
fn to_bytes(object: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    object.to_aml_bytes(&mut bytes);
    bytes
}

/// The FADT of a hardware-reduced platform whose DSDT is at `dsdt_addr`.
fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, *b"KVMLFACP", OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        // No fixed-feature power or sleep button.
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch =
        (IAPC_8042 | IAPC_VGA_NOT_PRESENT | IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT)
            .into();
    to_bytes(&fadt.finalize())
}

/// The MADT: one enabled local APIC per vCPU (APIC id = vCPU index, as the
/// CPUID kvmlab gives each vCPU says) and KVM's in-kernel IOAPIC.
///
/// No interrupt source override for IRQ 0: KVM's default GSI routing, which
/// kvmlab keeps, wires the in-kernel PIT's IRQ 0 to IOAPIC pin 0, and a
/// hardware-reduced platform does not use the PIT as its timer anyway.
fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        *b"KVMLMADT",
        OEM_REVISION,
        LocalInterruptController::Address(LAPIC_START as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(IOAPIC_ID, IOAPIC_START as u32, IOAPIC_GSI_BASE));
    to_bytes(&madt)
}

/// The DSDT: COM1 and the virtio-mmio devices under `\_SB_`.
fn dsdt(config: &AcpiConfig<'_>) -> Result<Vec<u8>, AcpiError> {
    let mut devices = Vec::new();
    if let Some(serial) = &config.serial {
        devices.extend(serial_device(serial));
    }
    for (index, slot) in config.virtio_mmio.iter().enumerate() {
        devices.extend(virtio_mmio_device(index, slot)?);
    }
    let scope = Scope::raw(Path::new("\\_SB_"), devices);
    let mut table = Sdt::new(
        *b"DSDT",
        SDT_HEADER_LEN as u32,
        DSDT_REVISION,
        OEM_ID,
        *b"KVMLDSDT",
        OEM_REVISION,
    );
    table.append_slice(&scope);
    Ok(table.as_slice().to_vec())
}

/// `Device (COM1)`: a 16550 on `serial`'s ports and interrupt.
fn serial_device(serial: &PortDevice) -> Vec<u8> {
    let hid = Name::new(Path::new("_HID"), &EISAName::new(SERIAL_HID));
    let uid = Name::new(Path::new("_UID"), &0u8);
    let ports = IO::new(serial.base, serial.base, 1, serial.len);
    let irq = edge_interrupt(serial.irq);
    let resources = ResourceTemplate::new(vec![&ports, &irq]);
    let crs = Name::new(Path::new("_CRS"), &resources);
    to_bytes(&Device::new(Path::new("COM1"), vec![&hid, &uid, &crs]))
}

/// `Device (VRnn)`: the virtio-mmio device number `index`, with its window and
/// interrupt.
fn virtio_mmio_device(index: usize, slot: &MmioSlot) -> Result<Vec<u8>, AcpiError> {
    let below_4gib = slot
        .base
        .checked_add(slot.size)
        .is_some_and(|end| end <= 1 << 32);
    let (Ok(base), Ok(size), true) = (
        u32::try_from(slot.base),
        u32::try_from(slot.size),
        below_4gib,
    ) else {
        return Err(AcpiError::WindowAbove4GiB {
            base: slot.base,
            size: slot.size,
        });
    };
    // At most 19 devices (IOAPIC pins 5-23): two hex digits are plenty.
    let name = format!("VR{:02X}", index & 0xff);
    let hid = Name::new(Path::new("_HID"), &VIRTIO_MMIO_HID);
    let uid = Name::new(Path::new("_UID"), &(index as u32));
    let window = Memory32Fixed::new(true, base, size);
    let irq = edge_interrupt(slot.irq);
    let resources = ResourceTemplate::new(vec![&window, &irq]);
    let crs = Name::new(Path::new("_CRS"), &resources);
    Ok(to_bytes(&Device::new(
        Path::new(&name),
        vec![&hid, &uid, &crs],
    )))
}

/// An exclusive, active-high, edge-triggered interrupt consumed by the device:
/// kvmlab raises its device interrupts through KVM irqfds, which pulse the
/// IOAPIC pin (no resample fd, so no level semantics).
fn edge_interrupt(gsi: u32) -> Interrupt {
    Interrupt::new(true, true, false, false, gsi)
}
