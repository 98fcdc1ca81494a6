//! The guest's page tables: the boot identity map of the first GiB, plus the
//! MMIO ranges the guest uses above it.
//!
//! Both boot paths leave only the first GiB mapped (kvmlab's boot page tables,
//! or ours in `boot.rs` for PVH). The virtio-mmio devices (0xd000_0000 with
//! kvmlab, 0xfeb0_0000 with QEMU microvm), the IOAPIC (0xfec0_0000) and the
//! local APIC (0xfee0_0000) live in the fourth GiB. [`init`] switches to our own
//! top-level tables, which keep the boot mapping of the first GiB and have
//! empty page directories for GiBs 1 to 3; [`map_mmio`] then maps, uncached
//! with 2 MiB pages, just the ranges a driver is about to use. Filling whole
//! directories (2048 entries) would cost milliseconds where KVM emulates every
//! guest instruction.

use core::arch::asm;
use core::cell::UnsafeCell;

const PRESENT_WRITABLE: u64 = 0x3;
const WRITE_THROUGH_NO_CACHE: u64 = 0x18;
const HUGE: u64 = 0x80;
const GIB: u64 = 1 << 30;
const PAGE_2M: u64 = 2 << 20;
const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

#[repr(C, align(4096))]
struct Table([u64; 512]);

/// PML4, PDPT and the page directories of GiBs 1, 2 and 3.
struct Tables(UnsafeCell<[Table; 5]>);

// SAFETY: the guest runs on one CPU and only this module touches the tables.
unsafe impl Sync for Tables {}

static TABLES: Tables = Tables(UnsafeCell::new([const { Table([0; 512]) }; 5]));

/// Loads our tables into CR3: the first GiB mapped as the boot tables map it,
/// nothing else yet. Call once at boot, before [`map_mmio`].
pub fn init() {
    let tables = TABLES.0.get();
    let cr3: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) cr3, options(nomem, nostack, preserves_flags)) };
    // SAFETY: called once at boot on the only CPU, before anything else uses the
    // tables. The boot tables are identity-mapped (they lie in the first GiB),
    // and both boot paths map the first GiB through PML4[0] and PDPT[0], so
    // copying PDPT[0] keeps every mapping the guest uses (its code, data and
    // stack are in the first GiB) and execution continues unchanged after the
    // CR3 write.
    unsafe {
        let boot_pml4 = (cr3 & ADDRESS_MASK) as *const u64;
        let boot_pdpt = (*boot_pml4 & ADDRESS_MASK) as *const u64;
        let [pml4, pdpt, pds @ ..] = &mut *tables;
        pml4.0[0] = pdpt.0.as_ptr() as u64 | PRESENT_WRITABLE;
        pdpt.0[0] = *boot_pdpt;
        for (gib, pd) in pds.iter().enumerate() {
            pdpt.0[gib + 1] = pd.0.as_ptr() as u64 | PRESENT_WRITABLE;
        }
        asm!("mov cr3, {}", in(reg) pml4.0.as_ptr() as u64, options(nostack, preserves_flags));
    }
}

/// Identity-maps `[base, base + len)` uncached, in 2 MiB pages, so that the
/// caller can access device registers there. Returns false (and maps nothing)
/// for a range that reaches above 4 GiB. A range in the first GiB is RAM-mapped
/// already and left as it is.
pub fn map_mmio(base: u64, len: u64) -> bool {
    let Some(end) = base.checked_add(len.max(1)).filter(|&end| end <= 4 * GIB) else {
        return false;
    };
    let tables = TABLES.0.get();
    let mut page = base & !(PAGE_2M - 1);
    while page < end {
        let gib = (page / GIB) as usize;
        if gib > 0 {
            // SAFETY: only this module touches the tables and the guest runs on
            // one CPU; `gib` is 1..=3 here. The entry was not present or
            // already maps `page` the same way, so no stale translation of it
            // can be cached and no TLB flush is needed.
            unsafe {
                let pd = &mut (*tables)[gib + 1];
                pd.0[((page % GIB) / PAGE_2M) as usize] =
                    page | PRESENT_WRITABLE | HUGE | WRITE_THROUGH_NO_CACHE;
            }
        }
        page += PAGE_2M;
    }
    true
}
