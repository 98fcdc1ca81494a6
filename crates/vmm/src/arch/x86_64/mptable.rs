//! The Intel MultiProcessor Specification (1.4) tables, which tell a guest
//! without ACPI how many CPUs it has and how ISA interrupts reach the I/O APIC.
//! Linux finds the floating pointer by scanning the last KiB of base memory.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::layout::{EBDA_START, MPTABLE_START};

/// Guest-physical address of the local APICs.
pub const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
/// Guest-physical address of KVM's in-kernel I/O APIC.
pub const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
/// The most vCPUs an MP table can describe (8-bit APIC ids, one for the I/O APIC).
pub const MAX_VCPUS: u8 = 254;

const SPEC_REVISION: u8 = 4;
const APIC_VERSION: u8 = 0x14;
const IO_APIC_VERSION: u8 = 0x11;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTPROCESSOR: u8 = 2;
/// CPU signature: family 6, as a generic modern x86-64 CPU.
const CPU_SIGNATURE: u32 = 0x600;
/// CPU feature flags: FPU and APIC.
const CPU_FEATURES: u32 = (1 << 0) | (1 << 9);
const ENTRY_PROCESSOR: u8 = 0;
const ENTRY_BUS: u8 = 1;
const ENTRY_IOAPIC: u8 = 2;
const ENTRY_IO_INTERRUPT: u8 = 3;
const ENTRY_LOCAL_INTERRUPT: u8 = 4;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;
const ISA_IRQS: u8 = 16;

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// The MP configuration table (header and entries) for `vcpus` vCPUs, to be
/// placed at `MPTABLE_START`.
pub fn config_table(vcpus: u8) -> Vec<u8> {
    let ioapic_id = vcpus;
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    let mut entry = |bytes: &[u8]| {
        entries.extend_from_slice(bytes);
        count += 1;
    };
    for id in 0..vcpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOTPROCESSOR } else { 0 };
        let mut cpu = vec![ENTRY_PROCESSOR, id, APIC_VERSION, flags];
        cpu.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        cpu.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        cpu.extend_from_slice(&[0; 8]);
        entry(&cpu);
    }
    entry(&[ENTRY_BUS, 0, b'I', b'S', b'A', b' ', b' ', b' ']);
    let mut ioapic = vec![ENTRY_IOAPIC, ioapic_id, IO_APIC_VERSION, 1];
    ioapic.extend_from_slice(&IO_APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    entry(&ioapic);
    // The legacy PIC on pin 0; ISA IRQ 0 (the PIT) on pin 2, as KVM routes it;
    // the other ISA IRQs on their own pins (2 is the PIC cascade).
    entry(&[
        ENTRY_IO_INTERRUPT,
        INT_TYPE_EXTINT,
        0,
        0,
        0,
        0,
        ioapic_id,
        0,
    ]);
    for irq in 0..ISA_IRQS {
        let pin = match irq {
            0 => 2,
            2 => continue,
            other => other,
        };
        entry(&[
            ENTRY_IO_INTERRUPT,
            INT_TYPE_INT,
            0,
            0,
            0,
            irq,
            ioapic_id,
            pin,
        ]);
    }
    // LINT0: ExtINT, LINT1: NMI, on every local APIC.
    entry(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entry(&[ENTRY_LOCAL_INTERRUPT, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);

    let length = (44 + entries.len()) as u16;
    let mut table = Vec::with_capacity(usize::from(length));
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&length.to_le_bytes());
    table.push(SPEC_REVISION);
    table.push(0); // checksum, below
    table.extend_from_slice(b"KVMLAB  ");
    table.extend_from_slice(b"KVMLAB-VM   ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&APIC_DEFAULT_PHYS_BASE.to_le_bytes());
    table.extend_from_slice(&0u16.to_le_bytes()); // extended table length
    table.push(0); // extended table checksum
    table.push(0); // reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);
    table
}

/// The 16-byte MP floating pointer structure pointing at `table_addr`.
pub fn floating_pointer(table_addr: u32) -> [u8; 16] {
    let mut mpf = [0u8; 16];
    mpf[..4].copy_from_slice(b"_MP_");
    mpf[4..8].copy_from_slice(&table_addr.to_le_bytes());
    mpf[8] = 1; // length in 16-byte units
    mpf[9] = SPEC_REVISION;
    mpf[10] = checksum(&mpf);
    mpf
}

/// Writes the floating pointer (at the start of the EBDA) and the
/// configuration table for `vcpus` vCPUs.
pub fn write<M: Bytes<GuestAddress, E = GuestMemoryError>>(
    mem: &M,
    vcpus: u8,
) -> Result<(), GuestMemoryError> {
    mem.write_slice(&config_table(vcpus), GuestAddress(MPTABLE_START))?;
    mem.write_slice(
        &floating_pointer(MPTABLE_START as u32),
        GuestAddress(EBDA_START),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    #[test]
    fn checksums_are_zero() {
        for vcpus in [1, 2, 8, MAX_VCPUS] {
            assert_eq!(sum(&config_table(vcpus)), 0, "{vcpus} vCPUs");
        }
        assert_eq!(sum(&floating_pointer(0xf0000)), 0);
    }

    #[test]
    fn describes_every_vcpu_and_the_io_apic() {
        let table = config_table(3);
        let length = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(length, table.len());
        let count = u16::from_le_bytes([table[34], table[35]]);
        // 3 CPUs, bus, I/O APIC, ExtINT + 15 ISA IRQs, 2 local interrupts.
        assert_eq!(count, 3 + 1 + 1 + 16 + 2);
        let cpus: Vec<&[u8]> = table[44..44 + 60].chunks(20).collect();
        assert_eq!(
            cpus[0][..4],
            [
                ENTRY_PROCESSOR,
                0,
                APIC_VERSION,
                CPU_ENABLED | CPU_BOOTPROCESSOR
            ]
        );
        assert_eq!(
            cpus[2][..4],
            [ENTRY_PROCESSOR, 2, APIC_VERSION, CPU_ENABLED]
        );
        let ioapic = &table[44 + 60 + 8..44 + 60 + 16];
        assert_eq!(ioapic[..4], [ENTRY_IOAPIC, 3, IO_APIC_VERSION, 1]);
        // ISA IRQ 0 goes to pin 2.
        let irq0 = &table[44 + 60 + 24..44 + 60 + 32];
        assert_eq!(irq0, [ENTRY_IO_INTERRUPT, INT_TYPE_INT, 0, 0, 0, 0, 3, 2]);
    }

    #[test]
    fn written_where_linux_scans() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        write(&mem, 2).unwrap();
        let mut mpf = [0u8; 16];
        mem.read_slice(&mut mpf, GuestAddress(639 * 1024)).unwrap();
        assert_eq!(&mpf[..4], b"_MP_");
        let table_addr = u32::from_le_bytes(mpf[4..8].try_into().unwrap());
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(u64::from(table_addr)))
            .unwrap();
        assert_eq!(&sig, b"PCMP");
    }
}
