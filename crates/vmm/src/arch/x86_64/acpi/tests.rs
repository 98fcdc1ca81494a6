//! Unit tests of the ACPI tables: they are written into a guest memory and read
//! back the way a kernel reads them, from the RSDP down.

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::arch::x86_64::layout::{BIOS_AREA_START, HIMEM_START};

const SLOTS: [MmioSlot; 3] = [
    MmioSlot {
        base: 0xd000_0000,
        size: 0x1000,
        irq: 5,
    },
    MmioSlot {
        base: 0xd000_1000,
        size: 0x1000,
        irq: 6,
    },
    MmioSlot {
        base: 0xd000_2000,
        size: 0x1000,
        irq: 7,
    },
];

const COM1: PortDevice = PortDevice {
    base: 0x3f8,
    len: 8,
    irq: 4,
};

fn config(vcpus: u8, slots: &[MmioSlot]) -> AcpiConfig<'_> {
    AcpiConfig {
        vcpus,
        serial: Some(COM1),
        virtio_mmio: slots,
    }
}

/// The tables of `config`, written into a 2 MiB guest memory.
fn guest(config: &AcpiConfig<'_>) -> (AcpiTables, GuestMemoryMmap) {
    let tables = build(config).unwrap();
    let memory = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    tables.write_to(&memory).unwrap();
    (tables, memory)
}

fn read_u8(memory: &GuestMemoryMmap, addr: u64) -> u8 {
    memory.read_obj(GuestAddress(addr)).unwrap()
}

fn read_u32(memory: &GuestMemoryMmap, addr: u64) -> u32 {
    memory.read_obj(GuestAddress(addr)).unwrap()
}

fn read_u64(memory: &GuestMemoryMmap, addr: u64) -> u64 {
    memory.read_obj(GuestAddress(addr)).unwrap()
}

fn read_bytes(memory: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    memory.read_slice(&mut bytes, GuestAddress(addr)).unwrap();
    bytes
}

/// A system description table at `addr`, checked: its signature is
/// `signature` and its bytes, as many as its length field says, sum to zero.
fn table(memory: &GuestMemoryMmap, addr: u64, signature: &[u8; 4]) -> Vec<u8> {
    let len = read_u32(memory, addr + 4) as usize;
    let bytes = read_bytes(memory, addr, len);
    assert_eq!(&bytes[..4], signature, "table at {addr:#x}");
    assert_eq!(
        sum(&bytes),
        0,
        "{} checksum",
        String::from_utf8_lossy(signature)
    );
    bytes
}

fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap())
}

/// Where `needle` occurs in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

/// The XSDT's entries, found from the RSDP as Linux finds them.
fn xsdt_entries(tables: &AcpiTables, memory: &GuestMemoryMmap) -> Vec<u64> {
    let rsdp = tables.rsdp_addr;
    let xsdt = table(memory, read_u64(memory, rsdp + 24), b"XSDT");
    xsdt[36..].chunks(8).map(|e| u64_at(e, 0)).collect()
}

/// The table with `signature` among the XSDT's entries.
fn find_table(tables: &AcpiTables, memory: &GuestMemoryMmap, signature: &[u8; 4]) -> Vec<u8> {
    let addr = xsdt_entries(tables, memory)
        .into_iter()
        .find(|a| &read_bytes(memory, *a, 4)[..] == signature)
        .unwrap_or_else(|| panic!("no {signature:?} in the XSDT"));
    table(memory, addr, signature)
}

/// The DSDT, through the FADT's X_DSDT.
fn dsdt_of(tables: &AcpiTables, memory: &GuestMemoryMmap) -> Vec<u8> {
    let fadt = find_table(tables, memory, b"FACP");
    table(memory, u64_at(&fadt, 140), b"DSDT")
}

#[test]
fn every_table_sums_to_zero() {
    let (tables, _) = guest(&config(2, &SLOTS));
    assert_eq!(tables.tables.len(), 5);
    let (rsdp_addr, rsdp) = &tables.tables[0];
    assert_eq!(*rsdp_addr, tables.rsdp_addr);
    assert_eq!(rsdp.len(), 36);
    // ACPI 1.0 checksum over the first 20 bytes, extended one over all 36.
    assert_eq!(sum(&rsdp[..20]), 0);
    assert_eq!(sum(rsdp), 0);
    for (addr, bytes) in &tables.tables[1..] {
        assert_eq!(
            u32_at(bytes, 4) as usize,
            bytes.len(),
            "length at {addr:#x}"
        );
        assert_eq!(sum(bytes), 0, "checksum of the table at {addr:#x}");
    }
}

#[test]
fn rsdp_leads_to_every_table() {
    let (tables, memory) = guest(&config(1, &SLOTS));
    let rsdp = tables.rsdp_addr;
    assert_eq!(rsdp, ACPI_START, "Linux scans the BIOS area for the RSDP");
    assert_eq!(rsdp % 16, 0);
    assert_eq!(&read_bytes(&memory, rsdp, 8)[..], b"RSD PTR ");
    assert_eq!(read_u8(&memory, rsdp + 15), 2, "ACPI 2.0+ RSDP (with XSDT)");
    assert_eq!(read_u32(&memory, rsdp + 16), 0, "no RSDT");
    assert_eq!(read_u32(&memory, rsdp + 20), 36, "RSDP length");

    let entries = xsdt_entries(&tables, &memory);
    let signatures: Vec<Vec<u8>> = entries.iter().map(|a| read_bytes(&memory, *a, 4)).collect();
    assert_eq!(signatures, [b"FACP".to_vec(), b"APIC".to_vec()]);
    for (addr, bytes) in &tables.tables[1..] {
        let found = table(&memory, *addr, bytes[..4].try_into().unwrap());
        assert_eq!(&found, bytes);
    }
    let dsdt = dsdt_of(&tables, &memory);
    assert_eq!(dsdt[8], DSDT_REVISION);
}

#[test]
fn tables_fit_the_bios_area_without_overlapping() {
    let most: Vec<MmioSlot> = (0..19)
        .map(|i| MmioSlot {
            base: 0xd000_0000 + i * 0x1000,
            size: 0x1000,
            irq: 5 + i as u32,
        })
        .collect();
    let tables = build(&config(255, &most)).unwrap();
    let mut ranges: Vec<(u64, u64)> = tables
        .tables
        .iter()
        .map(|(addr, bytes)| (*addr, addr + bytes.len() as u64))
        .collect();
    ranges.sort();
    for (start, end) in &ranges {
        assert!(*start >= ACPI_START && *end <= ACPI_END, "{ranges:x?}");
        assert_eq!(start % TABLE_ALIGN, 0);
    }
    for pair in ranges.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "{ranges:x?}");
    }
}

#[test]
fn fadt_is_hardware_reduced_with_the_dsdt() {
    let (tables, memory) = guest(&config(1, &[]));
    let fadt = find_table(&tables, &memory, b"FACP");
    assert_eq!(fadt.len(), 276, "ACPI 6 FADT");
    let flags = u32_at(&fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "HW_REDUCED_ACPI");
    assert_ne!(flags & (1 << 4), 0, "no fixed power button");
    assert_ne!(flags & (1 << 5), 0, "no fixed sleep button");
    let iapc = u16::from_le_bytes([fadt[109], fadt[110]]);
    assert_eq!(iapc, 0b10_1110, "8042, no VGA, no MSI, no CMOS RTC");
    assert_eq!(u32_at(&fadt, 40), 0, "32-bit DSDT pointer unused");
    let dsdt_addr = u64_at(&fadt, 140);
    assert!(tables.tables.iter().any(|(a, _)| *a == dsdt_addr));
    assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 0, "no SCI");
}

#[test]
fn madt_has_a_local_apic_per_vcpu_and_the_ioapic() {
    let (tables, memory) = guest(&config(3, &[]));
    let madt = find_table(&tables, &memory, b"APIC");
    assert_eq!(u32_at(&madt, 36), 0xfee0_0000, "local APIC address");
    let mut apic_ids = Vec::new();
    let mut ioapics = Vec::new();
    let mut offset = 44;
    while offset < madt.len() {
        let (kind, len) = (madt[offset], madt[offset + 1] as usize);
        assert!(len >= 2, "entry at {offset}");
        let entry = &madt[offset..offset + len];
        match kind {
            0 => {
                assert_eq!(len, 8);
                assert_eq!(entry[2], entry[3], "processor UID = APIC id");
                assert_eq!(u32_at(entry, 4), 1, "enabled");
                apic_ids.push(entry[3]);
            }
            1 => {
                assert_eq!(len, 12);
                ioapics.push((entry[2], u32_at(entry, 4), u32_at(entry, 8)));
            }
            other => panic!("unexpected MADT entry type {other}"),
        }
        offset += len;
    }
    assert_eq!(offset, madt.len());
    assert_eq!(apic_ids, [0, 1, 2]);
    assert_eq!(ioapics, [(0, 0xfec0_0000, 0)]);
}

/// A virtio-mmio device as the ACPI specification encodes it, byte by byte:
///
/// ```text
/// Device (VR00) {
///     Name (_HID, "LNRO0005")
///     Name (_UID, Zero)
///     Name (_CRS, ResourceTemplate () {
///         Memory32Fixed (ReadWrite, 0xD0000000, 0x00001000)
///         Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 }
///     })
/// }
/// ```
#[rustfmt::skip]
const VR00: [u8; 60] = [
    0x5b, 0x82, 0x3a, b'V', b'R', b'0', b'0', // DeviceOp, PkgLength 58, name
    0x08, b'_', b'H', b'I', b'D', 0x0d, // NameOp _HID, StringPrefix
    b'L', b'N', b'R', b'O', b'0', b'0', b'0', b'5', 0x00,
    0x08, b'_', b'U', b'I', b'D', 0x00, // NameOp _UID, ZeroOp
    0x08, b'_', b'C', b'R', b'S', // NameOp _CRS
    0x11, 0x1a, 0x0a, 0x17, // BufferOp, PkgLength 26 (itself included), BufferSize 23
    0x86, 0x09, 0x00, 0x01, // Memory32Fixed, 9 bytes, read-write
    0x00, 0x00, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00, // base, length
    0x89, 0x06, 0x00, 0x03, 0x01, // Extended IRQ, 6 bytes, consumer|edge, 1 irq
    0x05, 0x00, 0x00, 0x00, // IRQ 5
    0x79, 0x00, // End tag
];

#[test]
fn dsdt_has_one_lnro0005_device_per_window() {
    let (tables, memory) = guest(&config(1, &SLOTS));
    let dsdt = dsdt_of(&tables, &memory);
    // The first device, exactly as hand-encoded above.
    assert_eq!(find_all(&dsdt, &VR00).len(), 1, "{dsdt:02x?}");

    let hids = find_all(&dsdt, b"\x0dLNRO0005\x00");
    assert_eq!(hids.len(), SLOTS.len());
    for (index, slot) in SLOTS.iter().enumerate() {
        // The device's own bytes: from its _HID to the next device's.
        let end = hids.get(index + 1).copied().unwrap_or(dsdt.len());
        let device = &dsdt[hids[index]..end];
        let mut uid = b"_UID".to_vec();
        uid.extend_from_slice(&[0x0a, index as u8]);
        if index < 2 {
            // Zero and One have their own opcodes.
            uid.truncate(4);
            uid.push(index as u8);
        }
        assert_eq!(find_all(device, &uid).len(), 1, "device {index} _UID");
        let mut window = vec![0x86, 0x09, 0x00, 0x01];
        window.extend_from_slice(&(slot.base as u32).to_le_bytes());
        window.extend_from_slice(&(slot.size as u32).to_le_bytes());
        assert_eq!(find_all(device, &window).len(), 1, "device {index} window");
        let mut irq = vec![0x89, 0x06, 0x00, 0x03, 0x01];
        irq.extend_from_slice(&slot.irq.to_le_bytes());
        assert_eq!(find_all(device, &irq).len(), 1, "device {index} IRQ");
        // The device's name precedes its _HID.
        let name = format!("VR{index:02X}");
        assert_eq!(&dsdt[hids[index] - 9..hids[index] - 5], name.as_bytes());
    }
    // Everything lives in \_SB_.
    assert_eq!(&dsdt[36], &0x10, "ScopeOp");
    // PkgLength (1 to 4 bytes) then the name.
    assert_eq!(find_all(&dsdt[37..46], b"\\_SB_").len(), 1);
}

#[test]
fn dsdt_has_com1() {
    let (tables, memory) = guest(&config(1, &[]));
    let dsdt = dsdt_of(&tables, &memory);
    assert_eq!(find_all(&dsdt, b"LNRO0005").len(), 0);
    assert_eq!(find_all(&dsdt, b"\x5b\x82").len(), 1, "one device");
    assert_eq!(find_all(&dsdt, b"COM1").len(), 1);
    // _HID EISAID ("PNP0501"): the compressed id 0x0105d041 as a DWord.
    assert_eq!(
        find_all(&dsdt, b"_HID\x0c\x41\xd0\x05\x01").len(),
        1,
        "{dsdt:02x?}"
    );
    // IO (Decode16, 0x3F8, 0x3F8, 1, 8) and Interrupt (..., Edge, ActiveHigh) { 4 }.
    let ports = [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08];
    assert_eq!(find_all(&dsdt, &ports).len(), 1);
    let irq = [0x89, 0x06, 0x00, 0x03, 0x01, 0x04, 0x00, 0x00, 0x00];
    assert_eq!(find_all(&dsdt, &irq).len(), 1);
}

#[test]
fn window_above_4_gib_is_refused() {
    let slot = MmioSlot {
        base: 1 << 32,
        size: 0x1000,
        irq: 5,
    };
    assert_eq!(
        build(&config(1, &[slot])).unwrap_err(),
        AcpiError::WindowAbove4GiB {
            base: 1 << 32,
            size: 0x1000
        }
    );
    let straddling = MmioSlot {
        base: 0xffff_f000,
        size: 0x2000,
        irq: 5,
    };
    assert!(build(&config(1, &[straddling])).is_err());
}

#[test]
fn rsdp_is_found_by_a_bios_area_scan() {
    // What Linux does without a pointer: look for the signature on every
    // 16-byte boundary from 0xe0000 to 0xfffff and check its checksum.
    let (tables, memory) = guest(&config(2, &SLOTS));
    let found: Vec<u64> = (BIOS_AREA_START..HIMEM_START)
        .step_by(16)
        .filter(|a| read_bytes(&memory, *a, 8) == b"RSD PTR ")
        .filter(|a| sum(&read_bytes(&memory, *a, 20)) == 0)
        .collect();
    assert_eq!(found, [tables.rsdp_addr]);
}
