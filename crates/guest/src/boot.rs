//! Entry points.
//!
//! * `_start64`, the ELF entry point: the Linux x86-64 boot protocol. The VMM
//!   (kvmlab) enters in 64-bit long mode with paging on (identity-mapped low
//!   memory), interrupts off, and `%rsi` pointing at the Linux zero page
//!   (`struct boot_params`).
//! * `_start32`, named by the Xen PVH ELF note: the PVH boot protocol used by
//!   QEMU's microvm machine. The VMM enters in 32-bit protected mode, paging off,
//!   with `%ebx` pointing at `struct hvm_start_info`. We build identity page
//!   tables for the first GiB, switch to long mode and join the 64-bit path.
//!
//! Both paths set CR4.OSFXSR/OSXMMEXCPT because Rust code for this target may use
//! SSE, then call [`crate::guest_main`] with the boot protocol and the pointer.

use core::arch::global_asm;

/// Which boot protocol started the guest (first argument of `guest_main`).
pub const BOOT_LINUX: u64 = 0;
/// The PVH boot protocol.
pub const BOOT_PVH: u64 = 1;

global_asm!(
    r#"
    .section .text.boot, "ax"

    .code32
    .global _start32
_start32:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %ebx, %edi

    /* PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] -> i * 2 MiB (present, writable, huge). */
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd+4(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jb 1b

    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x620, %eax          /* PAE | OSFXSR | OSXMMEXCPT */
    movl %eax, %cr4
    movl $0xc0000080, %ecx    /* EFER */
    rdmsr
    orl $0x100, %eax          /* LME */
    wrmsr
    movl %cr0, %eax
    andl $0xfffffffb, %eax    /* clear EM */
    orl $0x80000003, %eax     /* PG | MP | PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $2f

    .code64
2:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %edi, %esi
    movq ${pvh}, %rdi
    jmp 3f

    .global _start64
_start64:
    cli
    cld
    movq %cr4, %rax
    orq $0x600, %rax          /* OSFXSR | OSXMMEXCPT */
    movq %rax, %cr4
    movq %cr0, %rax
    andq $~0x4, %rax          /* clear EM */
    orq $0x2, %rax            /* MP */
    movq %rax, %cr0
    movq ${linux}, %rdi
3:
    movabsq $boot_stack_top, %rsp
    xorl %ebp, %ebp
    call guest_main
4:
    cli
    hlt
    jmp 4b

    .section .note.Xen, "a"
    .p2align 2
    .long 4                   /* name size: "Xen\0" */
    .long 4                   /* descriptor size */
    .long 18                  /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .p2align 2
    .long _start32

    .section .rodata.boot_gdt, "a"
    .p2align 3
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff  /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff  /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .quad boot_gdt

    .section .bss.boot_tables, "aw", @nobits
    .p2align 12
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096
    .p2align 4
boot_stack:
    .skip 65536
boot_stack_top:
    "#,
    linux = const BOOT_LINUX,
    pvh = const BOOT_PVH,
    options(att_syntax)
);
