//! The 16550 UART on COM1 (vm-superio), whose interrupt reaches the in-kernel
//! irqchip through an irqfd, whose output goes to a writer chosen by the caller
//! (the terminal, a log file) and whose input the caller may feed.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::devices::bus::{BusDevice, lock};

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

/// Collects the bytes a guest sends in one burst and hands them to the console
/// in one write: at a newline, when the guest next reads any UART register (it
/// reads the line status before each FIFO load and when it waits for input),
/// or when a few KiB piled up. The UART's own per-byte flushes are ignored.
pub struct BurstWriter {
    inner: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

/// More than this is written out without waiting for the end of the burst.
const BURST_MAX: usize = 4096;

impl BurstWriter {
    fn new(inner: Box<dyn Write + Send>) -> Self {
        BurstWriter {
            inner,
            pending: Vec::with_capacity(256),
        }
    }

    /// Hands what was collected to the console.
    fn deliver(&mut self) {
        if !self.pending.is_empty() {
            // A console that cannot be written to (closed pipe) must not stop the VM.
            let _ = self.inner.write_all(&self.pending);
            let _ = self.inner.flush();
            self.pending.clear();
        }
    }
}

impl Write for BurstWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if buf.contains(&b'\n') || self.pending.len() >= BURST_MAX {
            self.deliver();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BurstWriter {
    fn drop(&mut self) {
        self.deliver();
    }
}

/// Called with `true` when the guest drives the UART by polling (transmit
/// interrupt off) and `false` when it waits for transmit interrupts.
pub type PollingModeHook = Box<dyn FnMut(bool) + Send>;

/// The COM1 device.
pub struct SerialConsole {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, BurstWriter>,
    /// Line control register, for its divisor-latch bit: with it set, offset 1
    /// is the divisor's high byte, not the interrupt enable register.
    lcr: u8,
    /// Whether the transmit-holding-register-empty interrupt is enabled.
    thri: bool,
    on_polling: Option<PollingModeHook>,
}

/// IER bit: interrupt when the transmit holding register is empty.
const IER_THRI: u8 = 0x02;
/// LCR bit: divisor latch access.
const LCR_DLAB: u8 = 0x80;

impl SerialConsole {
    /// A UART that writes to `out` and raises its interrupt through `irq`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialConsole {
            uart: Serial::new(IrqTrigger(irq), BurstWriter::new(out)),
            lcr: 0,
            thri: false,
            on_polling: None,
        }
    }

    /// Calls `hook` whenever the guest switches between polled and
    /// interrupt-driven transmission (the builder lets KVM buffer transmit
    /// writes only while the guest polls).
    pub fn on_polling_mode(&mut self, hook: PollingModeHook) {
        self.on_polling = Some(hook);
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
        // A read ends the guest's burst of output: show it now.
        self.uart.writer_mut().deliver();
        if let (Ok(offset), [byte]) = (u8::try_from(offset), &mut *data) {
            *byte = self.uart.read(offset);
        } else {
            data.fill(0xff);
        }
    }

    /// Several bytes at once come from a string instruction (`rep outsb`),
    /// which KVM hands over in one exit: each goes to the same register.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let Ok(offset) = u8::try_from(offset) else {
            return;
        };
        for byte in data {
            let _ = self.uart.write(offset, *byte);
        }
        match (offset, data.last()) {
            (3, Some(&lcr)) => self.lcr = lcr,
            (1, Some(&ier)) if self.lcr & LCR_DLAB == 0 => {
                let thri = ier & IER_THRI != 0;
                if thri != self.thri {
                    self.thri = thri;
                    if let Some(hook) = &mut self.on_polling {
                        hook(!thri);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A console sink the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn console() -> (SerialConsole, Sink) {
        let sink = Sink::default();
        let irq = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).unwrap();
        (SerialConsole::new(irq, Box::new(sink.clone())), sink)
    }

    #[test]
    fn output_is_delivered_per_burst_not_per_byte() {
        let (mut uart, sink) = console();
        uart.write(0, b"hello");
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "held until the burst ends"
        );
        let mut lsr = [0u8];
        uart.read(5, &mut lsr);
        uart.write(0, b" world\nmore");
        assert_eq!(
            *sink.0.lock().unwrap(),
            vec![b"hello".to_vec(), b" world\n".to_vec()]
        );
        drop(uart);
        assert_eq!(sink.0.lock().unwrap().last().unwrap(), b"more");
    }

    #[test]
    fn reports_switches_between_polling_and_interrupts() {
        let (mut uart, _) = console();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        uart.on_polling_mode(Box::new(move |polling| {
            record.lock().unwrap().push(polling)
        }));
        uart.write(1, &[IER_THRI]); // transmit interrupt on
        uart.write(1, &[IER_THRI | 0x01]); // no change to it
        uart.write(3, &[LCR_DLAB]);
        uart.write(1, &[0x00]); // divisor high byte, not the IER
        uart.write(3, &[0x03]);
        uart.write(1, &[0x01]); // transmit interrupt off
        assert_eq!(*seen.lock().unwrap(), vec![false, true]);
    }
}
