//! x86 port I/O.

use core::arch::asm;

/// Writes one byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; the guest owns the
    // whole machine and only touches ports of devices it knows.
    unsafe {
        asm!("outb %al, %dx", in("dx") port, in("al") value, options(att_syntax, nomem, nostack, preserves_flags))
    };
}

/// Reads one byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe {
        asm!("inb %dx, %al", in("dx") port, out("al") value, options(att_syntax, nomem, nostack, preserves_flags))
    };
    value
}

/// Writes `bytes` to one I/O port with a single `rep outsb`.
pub fn outsb(port: u16, bytes: &[u8]) {
    // SAFETY: reads `bytes.len()` bytes from the slice and writes them to the
    // port; the direction flag is clear (entry code executes `cld`).
    unsafe {
        asm!("rep outsb", in("dx") port, inout("rsi") bytes.as_ptr() => _, inout("rcx") bytes.len() => _,
             options(att_syntax, nostack, preserves_flags, readonly));
    }
}
