//! An address bus: maps ranges of I/O ports or MMIO addresses to devices.
//!
//! The vCPU run loop asks the bus which device owns an address, and passes the
//! access on with the offset inside the device's range. Each range has a name
//! ("serial 0x3f8-0x3ff") under which exits are counted.

use std::sync::{Arc, Mutex};

/// A device reachable through a bus.
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset` into the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset` into the device's range.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// Errors inserting a device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps a device already on the bus.
    #[error("{new} overlaps {existing}")]
    Overlap {
        /// Name of the device being inserted.
        new: String,
        /// Name of the device already there.
        existing: String,
    },
    /// The range is empty or wraps around the address space.
    #[error("{0}: empty or wrapping address range")]
    BadRange(String),
}

struct Range {
    base: u64,
    len: u64,
    name: String,
    device: Arc<Mutex<dyn BusDevice>>,
}

/// Devices on one bus (port I/O or MMIO), kept sorted by address.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<Range>,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `base..base + len` under the name `name`.
    pub fn insert(
        &mut self,
        base: u64,
        len: u64,
        name: &str,
        device: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or_else(|| BusError::BadRange(name.to_string()))?;
        if let Some(existing) = self
            .ranges
            .iter()
            .find(|r| base < r.base + r.len && r.base < end)
        {
            return Err(BusError::Overlap {
                new: name.to_string(),
                existing: existing.name.clone(),
            });
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(
            at,
            Range {
                base,
                len,
                name: name.to_string(),
                device,
            },
        );
        Ok(())
    }

    /// The index of the device owning `addr` and the offset of `addr` in it.
    pub fn find(&self, addr: u64) -> Option<(usize, u64)> {
        let at = self.ranges.partition_point(|r| r.base <= addr);
        let range = self.ranges.get(at.checked_sub(1)?)?;
        (addr - range.base < range.len).then(|| (at - 1, addr - range.base))
    }

    /// The names of the devices, in the order of their indices.
    pub fn names(&self) -> Vec<String> {
        self.ranges.iter().map(|r| r.name.clone()).collect()
    }

    /// Routes a read; returns the device index, or `None` (and fills `data`
    /// with 0xff, as an empty ISA bus reads) when no device owns `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Option<usize> {
        match self.find(addr) {
            Some((index, offset)) => {
                lock(&self.ranges[index].device).read(offset, data);
                Some(index)
            }
            None => {
                data.fill(0xff);
                None
            }
        }
    }

    /// Routes a write; returns the device index, or `None` when no device
    /// owns `addr` (the write is dropped).
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<usize> {
        let (index, offset) = self.find(addr)?;
        lock(&self.ranges[index].device).write(offset, data);
        Some(index)
    }
}

/// Locks a device even if another vCPU thread panicked while holding it: device
/// state stays usable, and the engine must not panic in turn.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn routes_by_range() {
        let mut bus = Bus::new();
        let a = Arc::new(Mutex::new(Recorder::default()));
        let b = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x3f8, 8, "serial", a.clone()).unwrap();
        bus.insert(0x60, 5, "i8042", b.clone()).unwrap();
        assert_eq!(bus.names(), vec!["i8042", "serial"]);

        let mut data = [0u8; 1];
        assert_eq!(bus.read(0x3fd, &mut data), Some(1));
        assert_eq!(data, [5]);
        assert_eq!(bus.write(0x64, &[0xfe]), Some(0));
        assert_eq!(b.lock().unwrap().writes, vec![(4, vec![0xfe])]);

        assert_eq!(bus.read(0x80, &mut data), None);
        assert_eq!(data, [0xff]);
        assert_eq!(bus.write(0x400, &[1]), None);
        assert_eq!(bus.find(0x3f7), None);
        assert_eq!(bus.find(0x400), None);
    }

    #[test]
    fn rejects_overlaps_and_empty_ranges() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        bus.insert(0x100, 0x10, "a", dev.clone()).unwrap();
        assert!(matches!(
            bus.insert(0x10f, 1, "b", dev.clone()),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(0xf8, 9, "c", dev.clone()),
            Err(BusError::Overlap { .. })
        ));
        assert_eq!(
            bus.insert(0x200, 0, "d", dev.clone()),
            Err(BusError::BadRange("d".into()))
        );
        bus.insert(0x110, 1, "e", dev).unwrap();
    }
}
