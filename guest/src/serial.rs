//! Polled 16550 UART on COM1 (I/O port 0x3f8).

use core::fmt;

use crate::port::{inb, outb, outsb};

const COM1: u16 = 0x3f8;
const LSR: u16 = 5;
const LSR_THR_EMPTY: u8 = 0x20;
/// Bytes the 16550A's transmit FIFO takes once it reports empty.
const TX_FIFO: usize = 16;
/// Bytes collected before they are sent (a line is sent at its end).
const LINE_BUFFER: usize = 128;

/// The serial console. Writing never fails and never blocks for long: the
/// transmit-empty wait is bounded, so a missing UART cannot hang the guest.
///
/// Output is collected per line and sent in FIFO-sized chunks with one
/// `rep outsb` each: under KVM that is one VM exit per 16 bytes (plus one
/// status read) instead of two per byte, which matters when KVM emulates
/// every guest instruction.
pub struct Serial {
    buf: [u8; LINE_BUFFER],
    len: usize,
}

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
        Self::unbuffered_start()
    }

    /// A console on an already programmed UART (for the panic handler).
    pub const fn unbuffered_start() -> Self {
        Serial {
            buf: [0; LINE_BUFFER],
            len: 0,
        }
    }

    /// Sends what is buffered, a FIFO load at a time.
    pub fn flush(&mut self) {
        for chunk in self.buf[..self.len].chunks(TX_FIFO) {
            wait_tx_empty();
            outsb(COM1, chunk);
        }
        // Wait for the last load too: the line is out before anything else the
        // guest does, and the status read is the exit at which a VMM that
        // buffers transmit-register writes (kvmlab) delivers them.
        if self.len > 0 {
            wait_tx_empty();
        }
        self.len = 0;
    }

    /// Writes `value` in decimal, without `core::fmt` (whose machinery costs
    /// thousands of instructions, each emulated under PVM).
    pub fn write_u64(&mut self, mut value: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.push(d);
        }
    }

    /// Writes raw bytes (a line feed flushes the line).
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.push(b'\r');
                self.push(b'\n');
                self.flush();
            } else {
                self.push(b);
            }
        }
    }

    fn push(&mut self, byte: u8) {
        if self.len == LINE_BUFFER {
            self.flush();
        }
        self.buf[self.len] = byte;
        self.len += 1;
    }
}

fn wait_tx_empty() {
    let mut spins = 0u32;
    while inb(COM1 + LSR) & LSR_THR_EMPTY == 0 && spins < 100_000 {
        spins += 1;
    }
}

impl fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
