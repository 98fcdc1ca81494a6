//! The i8042 keyboard controller, reduced to what guests use to end a VM: the
//! CPU reset command (0xfe on port 0x64). kvmlab ends the VM cleanly on it.

use vm_superio::{I8042Device, Trigger};

use crate::devices::bus::BusDevice;

/// First I/O port of the i8042 (data port 0x60; command/status port 0x64).
pub const I8042_BASE: u64 = 0x60;
/// Number of ports from `I8042_BASE` covered (0x60..=0x64).
pub const I8042_PORTS: u64 = 5;

/// Calls a function when the guest resets the CPU.
pub struct ResetTrigger(pub Box<dyn Fn() + Send>);

impl Trigger for ResetTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        (self.0)();
        Ok(())
    }
}

/// The i8042 device.
pub struct I8042 {
    inner: I8042Device<ResetTrigger>,
}

impl I8042 {
    /// A controller that calls `on_reset` when the guest asks for a CPU reset.
    pub fn new(on_reset: Box<dyn Fn() + Send>) -> Self {
        I8042 {
            inner: I8042Device::new(ResetTrigger(on_reset)),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = u8::try_from(offset)
            .map(|o| self.inner.read(o))
            .unwrap_or(0xff);
        data.fill(value);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(offset), [byte]) = (u8::try_from(offset), data) {
            let _ = self.inner.write(offset, *byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn reset_command_calls_back() {
        let resets = Arc::new(AtomicUsize::new(0));
        let counter = resets.clone();
        let mut dev = I8042::new(Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }));
        dev.write(0, &[0xfe]); // data port: ignored
        dev.write(4, &[0xd1]); // another command: ignored
        assert_eq!(resets.load(Ordering::SeqCst), 0);
        dev.write(4, &[0xfe]);
        assert_eq!(resets.load(Ordering::SeqCst), 1);
    }
}
