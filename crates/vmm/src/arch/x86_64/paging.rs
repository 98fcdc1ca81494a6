//! Identity-mapped boot page tables: the first GiB with 2 MiB pages, enough for
//! the kernel, the zero page and the command line until the kernel builds its own.

use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::layout::{PD_START, PDPT_START, PML4_START};

const PRESENT_WRITABLE: u64 = 0x3;
const HUGE_PAGE: u64 = 0x80;
/// Bytes mapped by one page-directory entry.
pub const PAGE_2M: u64 = 2 << 20;

/// The three tables as `(guest address, 512 entries)`.
pub fn boot_page_tables() -> [(u64, Box<[u64; 512]>); 3] {
    let mut pml4 = Box::new([0u64; 512]);
    let mut pdpt = Box::new([0u64; 512]);
    let mut pd = Box::new([0u64; 512]);
    pml4[0] = PDPT_START | PRESENT_WRITABLE;
    pdpt[0] = PD_START | PRESENT_WRITABLE;
    for (i, entry) in pd.iter_mut().enumerate() {
        *entry = (i as u64 * PAGE_2M) | PRESENT_WRITABLE | HUGE_PAGE;
    }
    [(PML4_START, pml4), (PDPT_START, pdpt), (PD_START, pd)]
}

/// Writes the boot page tables into guest memory; returns the value for CR3.
pub fn write_boot_page_tables<M: Bytes<GuestAddress, E = GuestMemoryError>>(
    mem: &M,
) -> Result<u64, GuestMemoryError> {
    for (addr, table) in boot_page_tables() {
        for (i, entry) in table.iter().enumerate() {
            mem.write_obj(*entry, GuestAddress(addr + i as u64 * 8))?;
        }
    }
    Ok(PML4_START)
}

/// Walks the tables as the MMU would and returns the physical address that
/// `virt` maps to, if mapped (used by tests).
pub fn translate<M: Bytes<GuestAddress, E = GuestMemoryError>>(
    mem: &M,
    cr3: u64,
    virt: u64,
) -> Option<u64> {
    let read = |table: u64, index: u64| -> Option<u64> {
        let entry: u64 = mem
            .read_obj(GuestAddress((table & !0xfff) + index * 8))
            .ok()?;
        (entry & 1 == 1).then_some(entry)
    };
    let pml4e = read(cr3, (virt >> 39) & 0x1ff)?;
    let pdpte = read(pml4e, (virt >> 30) & 0x1ff)?;
    let pde = read(pdpte, (virt >> 21) & 0x1ff)?;
    if pde & HUGE_PAGE == 0 {
        return None;
    }
    Some((pde & !(PAGE_2M - 1) & 0x000f_ffff_ffff_ffff) | (virt & (PAGE_2M - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn first_gib_is_identity_mapped() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let cr3 = write_boot_page_tables(&mem).unwrap();
        assert_eq!(cr3, PML4_START);
        for addr in [0u64, 0x7000, 0x10_0000, 0x100_0000 + 0x1234, (1 << 30) - 1] {
            assert_eq!(translate(&mem, cr3, addr), Some(addr), "{addr:#x}");
        }
        assert_eq!(translate(&mem, cr3, 1 << 30), None);
    }

    #[test]
    fn entries_are_present_writable_huge() {
        let [(_, pml4), (_, pdpt), (_, pd)] = boot_page_tables();
        assert_eq!(pml4[0], PDPT_START | 0x3);
        assert_eq!(pdpt[0], PD_START | 0x3);
        assert_eq!(pd[1], 0x20_0000 | 0x83);
        assert_eq!(pd[511], (511 * PAGE_2M) | 0x83);
        assert!(pml4[1..].iter().all(|&e| e == 0));
    }
}
