//! Ending the guest.

use core::arch::asm;

use crate::port::outb;

/// Resets the machine through the i8042 keyboard controller (command 0xfe on
/// port 0x64), which kvmlab treats as a clean exit; halts if nothing happens.
pub fn power_off() -> ! {
    outb(0x64, 0xfe);
    halt_forever()
}

/// Reboots through the reset control register (port 0xcf9, "reset CPU"), which
/// kvmlab's engine answers by booting the VM again; halts if nothing happens.
pub fn reboot() -> ! {
    outb(0xcf9, 0x06);
    halt_forever()
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: with interrupts off, `hlt` just stops the CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Executes `xorps %xmm0, %xmm0` (the guest is otherwise built without SSE).
pub fn sse_instruction() {
    // SAFETY: clears xmm0, which no guest code uses (built without SSE); the
    // entry code enabled SSE (CR4.OSFXSR, CR0.EM clear).
    unsafe { asm!("xorps %xmm0, %xmm0", out("xmm0") _, options(att_syntax, nomem, nostack)) };
}

/// Triple-faults on purpose: loads an empty IDT and raises #UD, so that the
/// CPU cannot deliver the exception nor the double fault that follows.
pub fn triple_fault() -> ! {
    #[repr(C, packed)]
    struct Idtr {
        limit: u16,
        base: u64,
    }
    let empty = Idtr { limit: 0, base: 0 };
    // SAFETY: deliberately crashes the guest; nothing runs afterwards.
    unsafe {
        asm!("lidt [{}]", "ud2", in(reg) &empty, options(nostack));
    }
    halt_forever()
}
