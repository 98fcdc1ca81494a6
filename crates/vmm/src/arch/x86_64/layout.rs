//! The guest-physical memory layout kvmlab gives a VM.
//!
//! ```text
//! 0x0000_0500  boot GDT            0x0000_7000  zero page (boot_params)
//! 0x0000_0520  boot IDT (empty)    0x0000_8ff0  initial stack pointer
//! 0x0000_9000  PML4                0x0002_0000  kernel command line
//! 0x0000_a000  PDPT                0x0009_fc00  EBDA: hole up to 1 MiB
//! 0x0000_b000  PD (1 GiB, 2 MiB pages)
//! 0x000e_0000  BIOS area, reserved in the E820 map up to 1 MiB: ACPI tables
//!              (RSDP first) up to 0xf_0000, then the MP configuration table
//! 0x0010_0000  kernel (ELF at its physical addresses, bzImage at 1 MiB)
//! ...          initrd, at the top of low RAM
//! 0xc000_0000  MMIO gap (devices, KVM's TSS) up to 4 GiB
//! 0xfec0_0000  IOAPIC            0xfee0_0000  local APICs
//! 0x1_0000_0000  RAM above 3 GiB, if the VM has more than 3 GiB
//! ```

/// Boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// Boot IDT (an empty one: exceptions during early boot triple-fault).
pub const BOOT_IDT_START: u64 = 0x520;
/// Linux zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 of the boot page tables.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table of the boot page tables.
pub const PDPT_START: u64 = 0xa000;
/// Page directory of the boot page tables.
pub const PD_START: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x2_0000;
/// Longest command line kvmlab passes, NUL included.
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the Extended BIOS Data Area: RAM below it is usable.
pub const EBDA_START: u64 = 0x9_fc00;
/// MP configuration table, in the legacy BIOS area (its floating pointer is at
/// `EBDA_START`).
pub const MPTABLE_START: u64 = 0xf_0000;
/// Start of the BIOS area (up to 1 MiB), reserved in the E820 map, that holds
/// firmware tables. Linux scans it for the ACPI RSDP and the MP floating pointer.
pub const BIOS_AREA_START: u64 = 0xe_0000;
/// The ACPI tables, RSDP first, at the start of the BIOS area.
pub const ACPI_START: u64 = BIOS_AREA_START;
/// End of the ACPI tables' room (exclusive): the upper 64 KiB of the BIOS
/// area are left to other firmware tables.
pub const ACPI_END: u64 = 0xf_0000;
/// First byte above the legacy hole, where kernels are loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the gap below 4 GiB kept free of RAM for devices.
pub const MMIO_GAP_START: u64 = 0xc000_0000;
/// End of the MMIO gap: RAM resumes here.
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The in-kernel IOAPIC's registers (KVM's fixed default address).
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs' registers (the architectural default address).
pub const LAPIC_START: u64 = 0xfee0_0000;
/// Three pages for KVM's real-mode TSS (needed on Intel), inside the MMIO gap.
pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;

/// Guest-physical RAM ranges `(start, length)` for a VM with `mem_size` bytes:
/// one range below the MMIO gap and, for large VMs, one above 4 GiB.
pub fn ram_ranges(mem_size: u64) -> Vec<(u64, u64)> {
    let low = mem_size.min(MMIO_GAP_START);
    let mut ranges = vec![(0, low)];
    if mem_size > MMIO_GAP_START {
        ranges.push((MMIO_GAP_END, mem_size - MMIO_GAP_START));
    }
    ranges
}

/// End of RAM below the MMIO gap.
pub fn low_ram_end(mem_size: u64) -> u64 {
    mem_size.min(MMIO_GAP_START)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_vm_has_one_range() {
        assert_eq!(ram_ranges(64 << 20), vec![(0, 64 << 20)]);
    }

    #[test]
    fn large_vm_skips_the_mmio_gap() {
        let four_gib = 4u64 << 30;
        assert_eq!(
            ram_ranges(four_gib),
            vec![
                (0, MMIO_GAP_START),
                (MMIO_GAP_END, four_gib - MMIO_GAP_START)
            ]
        );
        assert_eq!(low_ram_end(four_gib), MMIO_GAP_START);
    }
}
