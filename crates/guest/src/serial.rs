//! Polled 16550 UART on COM1 (I/O port 0x3f8).

use core::fmt;

use crate::port::{inb, outb, outsb};

const COM1: u16 = 0x3f8;
const IER: u16 = 1;
const LSR: u16 = 5;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
/// IER: interrupt when received data is available.
const IER_RX_AVAILABLE: u8 = 0x01;
/// COM1's ISA interrupt line.
pub const COM1_IRQ: u32 = 4;
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

    /// Asks the UART to interrupt (on [`COM1_IRQ`]) when a key arrives.
    pub fn enable_rx_interrupt(&mut self) {
        outb(COM1 + IER, IER_RX_AVAILABLE);
    }

    /// The next key received, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        (inb(COM1 + LSR) & LSR_DATA_READY != 0).then(|| inb(COM1))
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
        self.write_raw(&digits[i..]);
    }

    /// Writes `value` as `0x` and lowercase hexadecimal digits (as `{:#x}`).
    pub fn write_hex(&mut self, mut value: u64) {
        let mut digits = [0u8; 18];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = HEX_DIGITS[(value & 0xf) as usize];
            value >>= 4;
            if value == 0 {
                break;
            }
        }
        i -= 2;
        digits[i] = b'0';
        digits[i + 1] = b'x';
        self.write_raw(&digits[i..]);
    }

    /// Writes a MAC address as six colon-separated pairs of lowercase hex digits.
    pub fn write_mac(&mut self, mac: &[u8; 6]) {
        let mut text = [b':'; 17];
        for (i, byte) in mac.iter().enumerate() {
            text[3 * i] = HEX_DIGITS[usize::from(byte >> 4)];
            text[3 * i + 1] = HEX_DIGITS[usize::from(byte & 0xf)];
        }
        self.write_raw(&text);
    }

    /// Writes an IPv4 address in dotted decimal.
    pub fn write_ipv4(&mut self, addr: [u8; 4]) {
        for (i, octet) in addr.into_iter().enumerate() {
            if i > 0 {
                self.write_raw(b".");
            }
            self.write_u64(u64::from(octet));
        }
    }

    /// Writes raw bytes; a line feed ends the line (sent as CR LF) and sends it.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while let Some(at) = find_newline(bytes) {
            self.write_raw(&bytes[..at]);
            self.end_line();
            bytes = &bytes[at + 1..];
        }
        self.write_raw(bytes);
    }

    /// Ends the line (CR LF) and sends it.
    pub fn end_line(&mut self) {
        self.write_raw(b"\r\n");
        self.flush();
    }

    /// Appends bytes that hold no line feed, a block copy at a time rather
    /// than a byte at a time (each guest instruction is emulated under PVM).
    #[inline(always)]
    fn write_raw(&mut self, bytes: &[u8]) {
        let len = self.len;
        if bytes.len() <= LINE_BUFFER - len {
            // SAFETY: `len + bytes.len() <= LINE_BUFFER`, so the destination is
            // inside `buf`, which does not overlap `bytes` (we hold it mutably).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    self.buf.as_mut_ptr().add(len),
                    bytes.len(),
                );
            }
            self.len = len + bytes.len();
        } else {
            self.write_raw_split(bytes);
        }
    }

    /// [`Self::write_raw`] for bytes that do not fit in the line buffer.
    #[inline(never)]
    fn write_raw_split(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == LINE_BUFFER {
                self.flush();
            }
            let n = bytes.len().min(LINE_BUFFER - self.len);
            self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
            self.len += n;
            bytes = &bytes[n..];
        }
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Index of the first line feed in `bytes`. One `repne scasb` instead of a
/// loop: a single instruction for KVM's emulator to decode, whatever the length.
fn find_newline(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() {
        return None;
    }
    let left: usize;
    // SAFETY: scans at most `bytes.len()` bytes forward from the slice's start
    // (the direction flag is clear) and writes nothing.
    unsafe {
        core::arch::asm!("repne scasb",
            inout("rcx") bytes.len() => left, inout("rdi") bytes.as_ptr() => _, in("al") b'\n',
            options(nostack, readonly));
    }
    // RCX counts down once per byte scanned, the line feed included; a scan
    // that found nothing also ends with RCX = 0, so check the last byte.
    let at = bytes.len() - left - 1;
    (bytes[at] == b'\n').then_some(at)
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
