//! The 16550 UART on COM1 (vm-superio), whose interrupt reaches the in-kernel
//! irqchip through an irqfd, whose output goes to a writer chosen by the caller
//! (the terminal, a log file) and whose input the caller may feed.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::vmm::devices::bus::{BusDevice, lock};

/// I/O port base of COM1.
pub const COM1_BASE: u64 = 0x3f8;
/// Number of ports of a 16550.
pub const SERIAL_PORTS: u64 = 8;
/// ISA IRQ of COM1.
pub const SERIAL_IRQ: u32 = 4;

/// Raises the UART's interrupt by signalling an eventfd registered as irqfd.
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;

    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// A writer that flushes after every write, so that the console shows what the
/// guest printed at once (prompts without a newline included).
pub struct Unbuffered<W: Write + Send>(pub W);

impl<W: Write + Send> Write for Unbuffered<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.0.flush()?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// The COM1 device.
pub struct SerialConsole {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl SerialConsole {
    /// A UART that writes to `out` and raises its interrupt through `irq`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialConsole {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Starts a thread that feeds `input` to the guest until end of file. The
    /// thread waits while the UART's receive FIFO is full.
    pub fn spawn_input(
        console: Arc<Mutex<SerialConsole>>,
        mut input: Box<dyn Read + Send>,
    ) -> io::Result<()> {
        thread::Builder::new()
            .name("serial-input".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                loop {
                    let n = match input.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut pending = &buf[..n];
                    while !pending.is_empty() {
                        let taken = lock(&console).uart.enqueue_raw_bytes(pending).unwrap_or(0);
                        pending = &pending[taken..];
                        if !pending.is_empty() {
                            thread::sleep(Duration::from_millis(5));
                        }
                    }
                }
            })?;
        Ok(())
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), &mut *data) {
            *byte = self.uart.read(offset);
        } else {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            // A console that cannot be written to (closed pipe) must not stop the VM.
            let _ = self.uart.write(offset, *byte);
        }
    }
}
