//! The guest's own identity map of the low 4 GiB.
//!
//! Both boot paths leave only the first GiB mapped (kvmlab's boot page tables,
//! or ours in `boot.rs` for PVH). The virtio-mmio devices (0xd000_0000 with
//! kvmlab, 0xfeb0_0000 with QEMU microvm), the IOAPIC (0xfec0_0000) and the
//! local APIC (0xfee0_0000) live in the fourth GiB, so we switch to tables that
//! map all of 0..4 GiB with 2 MiB pages, the fourth GiB uncached.

use core::arch::asm;
use core::cell::UnsafeCell;

const PRESENT_WRITABLE: u64 = 0x3;
const WRITE_THROUGH_NO_CACHE: u64 = 0x18;
const HUGE: u64 = 0x80;
const GIB: u64 = 1 << 30;
const PAGE_2M: u64 = 2 << 20;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// PML4, PDPT and four page directories.
struct Tables(UnsafeCell<[Table; 6]>);

// SAFETY: the guest runs on one CPU and only `map_low_4g` touches the tables.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables(UnsafeCell::new([const { Table([0; 512]) }; 6]));

/// Builds the identity map of 0..4 GiB and loads it into CR3.
pub fn map_low_4g() {
    let tables = TABLES.0.get();
    // SAFETY: called once at boot on the only CPU, before anything else uses the
    // tables; the new map is identity for all memory the old one mapped (the
    // first GiB, where the guest's code, data and stack are), so execution
    // continues unchanged after the CR3 write.
    unsafe {
        let [pml4, pdpt, pds @ ..] = &mut *tables;
        pml4.0[0] = pdpt.0.as_ptr() as u64 | PRESENT_WRITABLE;
        for (gib, pd) in pds.iter_mut().enumerate() {
            pdpt.0[gib] = pd.0.as_ptr() as u64 | PRESENT_WRITABLE;
            let flags = if gib == 3 {
                PRESENT_WRITABLE | HUGE | WRITE_THROUGH_NO_CACHE
            } else {
                PRESENT_WRITABLE | HUGE
            };
            for (i, entry) in pd.0.iter_mut().enumerate() {
                *entry = (gib as u64 * GIB + i as u64 * PAGE_2M) | flags;
            }
        }
        asm!("mov cr3, {}", in(reg) pml4.0.as_ptr() as u64, options(nostack, preserves_flags));
    }
}
