//! The PC's reset control register (I/O port 0xcf9): a write with the "reset CPU"
//! bit asks for a reboot, as Linux's `reboot=pci` and the built-in guest's `reboot`
//! do. The i8042's reset command stays what ends a VM (its power off).

use crate::devices::bus::BusDevice;

/// The register's port.
pub const RESET_CONTROL_PORT: u64 = 0xcf9;
/// The bit that resets the CPU (with bit 1, a hard reset; both mean reboot here).
const RESET_CPU: u8 = 1 << 2;

/// The reset control register.
pub struct ResetControl {
    on_reboot: Box<dyn Fn() + Send>,
    /// The last value written (bits other than "reset CPU" are kept, as hardware
    /// keeps them for the next write).
    value: u8,
}

impl ResetControl {
    /// A register that calls `on_reboot` when the guest asks for a reset.
    pub fn new(on_reboot: Box<dyn Fn() + Send>) -> Self {
        ResetControl {
            on_reboot,
            value: 0,
        }
    }
}

impl BusDevice for ResetControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let [byte] = data {
            self.value = *byte & !RESET_CPU;
            if byte & RESET_CPU != 0 {
                (self.on_reboot)();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn only_the_reset_cpu_bit_reboots() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        let mut register = ResetControl::new(Box::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }));
        register.write(0, &[0x02]);
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        let mut value = [0u8];
        register.read(0, &mut value);
        assert_eq!(value, [0x02]);
        register.write(0, &[0x06]);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        register.write(0, &[0x0e]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
