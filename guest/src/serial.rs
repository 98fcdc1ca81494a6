//! Polled 16550 UART on COM1 (I/O port 0x3f8).

use core::fmt;

use crate::port::{inb, outb};

const COM1: u16 = 0x3f8;
const LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 0x20;

/// The serial console. Writing never fails and never blocks for long: the
/// transmit-empty wait is bounded, so a missing UART cannot hang the guest.
pub struct Serial;

impl Serial {
    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init() -> Self {
        outb(COM1 + 1, 0x00); // IER: no interrupts
        outb(COM1 + 3, 0x80); // LCR: DLAB
        outb(COM1, 0x01); // DLL: divisor 1 (115200)
        outb(COM1 + 1, 0x00); // DLM
        outb(COM1 + 3, 0x03); // LCR: 8N1
        outb(COM1 + 2, 0xc7); // FCR: enable and clear FIFOs
        outb(COM1 + 4, 0x03); // MCR: DTR | RTS
        Serial
    }

    fn put(&mut self, byte: u8) {
        let mut spins = 0u32;
        while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 && spins < 100_000 {
            spins += 1;
        }
        outb(COM1, byte);
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
