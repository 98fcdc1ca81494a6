//! Registers of the boot vCPU for the Linux x86-64 boot protocol: 64-bit mode,
//! paging on with identity-mapped low memory, `%rsi` = zero page.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress, GuestMemoryError};

use super::gdt::{self, CODE_INDEX, DATA_INDEX, TSS_INDEX};
use super::layout::{BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, ZERO_PAGE_START};

/// CR0: protected mode.
pub const CR0_PE: u64 = 1 << 0;
/// CR0: monitor coprocessor.
pub const CR0_MP: u64 = 1 << 1;
/// CR0: x87 emulation (must be clear for SSE).
pub const CR0_EM: u64 = 1 << 2;
/// CR0: extension type (always 1).
pub const CR0_ET: u64 = 1 << 4;
/// CR0: paging.
pub const CR0_PG: u64 = 1 << 31;
/// CR4: physical address extension.
pub const CR4_PAE: u64 = 1 << 5;
/// CR4: OS supports FXSAVE/FXRSTOR (lets code use SSE).
pub const CR4_OSFXSR: u64 = 1 << 9;
/// CR4: OS handles unmasked SIMD exceptions.
pub const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// EFER: long mode enable.
pub const EFER_LME: u64 = 1 << 8;
/// EFER: long mode active.
pub const EFER_LMA: u64 = 1 << 10;

/// General-purpose registers at the kernel's 64-bit entry point.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

/// Special registers for 64-bit mode: flat segments from the boot GDT, the
/// (empty) boot IDT, and paging with `cr3` as page-table root. Starts from the
/// vCPU's current `sregs` so that fields we do not set keep KVM's values.
pub fn boot_sregs(mut sregs: kvm_sregs, cr3: u64) -> kvm_sregs {
    let table = gdt::boot_gdt();
    let code = gdt::segment_from_gdt(table[CODE_INDEX as usize], CODE_INDEX);
    let data = gdt::segment_from_gdt(table[DATA_INDEX as usize], DATA_INDEX);
    let tss = gdt::segment_from_gdt(table[TSS_INDEX as usize], TSS_INDEX);

    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&table) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = (std::mem::size_of::<u64>() - 1) as u16;

    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;

    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_MP | CR0_ET | CR0_PG) & !CR0_EM;
    sregs.cr3 = cr3;
    sregs.cr4 |= CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// Writes the boot GDT and the empty boot IDT into guest memory.
pub fn write_boot_tables<M: Bytes<GuestAddress, E = GuestMemoryError>>(
    mem: &M,
) -> Result<(), GuestMemoryError> {
    for (i, entry) in gdt::boot_gdt().iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + i as u64 * 8))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
}

/// FPU state at reset: x87 control word 0x37f, SSE exceptions masked.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regs_point_at_entry_and_zero_page() {
        let regs = boot_regs(0x100_0000);
        assert_eq!(
            (regs.rip, regs.rsi, regs.rsp, regs.rflags),
            (0x100_0000, ZERO_PAGE_START, BOOT_STACK_POINTER, 2)
        );
    }

    #[test]
    fn sregs_enter_long_mode() {
        let sregs = boot_sregs(
            kvm_sregs {
                cr0: CR0_EM | 0x10,
                ..Default::default()
            },
            0x9000,
        );
        assert_eq!(sregs.cr3, 0x9000);
        assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE | CR0_PG);
        assert_eq!(sregs.cr0 & CR0_EM, 0);
        assert_eq!(sregs.cr4 & CR4_PAE, CR4_PAE);
        assert_eq!(
            sregs.cr4 & (CR4_OSFXSR | CR4_OSXMMEXCPT),
            CR4_OSFXSR | CR4_OSXMMEXCPT
        );
        assert_eq!(sregs.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!((sregs.cs.selector, sregs.cs.l), (0x8, 1));
        assert_eq!(sregs.ss.selector, 0x10);
        assert_eq!((sregs.gdt.base, sregs.gdt.limit), (BOOT_GDT_START, 31));
    }
}
