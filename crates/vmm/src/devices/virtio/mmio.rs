//! The virtio-mmio transport, version 2 ("modern"): the register window through which
//! a guest discovers a device, negotiates features, sets up queues and notifies them.
//!
//! The guest finds each window from `virtio_mmio.device=<size>@<base>:<irq>` on its
//! command line or from the ACPI tables.

use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::{ActivateError, Activation, Interrupt, VirtioDevice, status};

/// Size of one device's register window.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of the QueueNotify register, where the engine places its ioeventfds.
pub const QUEUE_NOTIFY_OFFSET: u64 = 0x50;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR_ID: u32 = 0x4c4d_564b; // "KVML"
const CONFIG_SPACE: u64 = 0x100;

/// One device and the transport state the driver programs.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemoryMmap,
    interrupt: Arc<Interrupt>,
    notifiers: Vec<EventFd>,
    queues: Vec<Queue>,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    config_generation: u32,
    activated: bool,
}

/// Splits a 64-bit value into the 32-bit half that `select` picks.
fn half(value: u64, select: u32) -> u32 {
    match select {
        0 => value as u32,
        1 => (value >> 32) as u32,
        _ => 0,
    }
}

impl MmioTransport {
    /// Wraps `device`; its interrupt fires `irq`.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemoryMmap,
        irq: EventFd,
    ) -> std::io::Result<Self> {
        let sizes = device.queue_max_sizes().to_vec();
        let mut queues = Vec::with_capacity(sizes.len());
        let mut notifiers = Vec::with_capacity(sizes.len());
        for size in sizes {
            queues.push(Queue::new(size).map_err(|e| std::io::Error::other(e.to_string()))?);
            notifiers.push(EventFd::new(EFD_NONBLOCK)?);
        }
        Ok(MmioTransport {
            device,
            mem,
            interrupt: Arc::new(Interrupt::new(irq)),
            notifiers,
            queues,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            activated: false,
        })
    }

    /// The event fd of each queue (the engine registers them as ioeventfds on
    /// [`QUEUE_NOTIFY_OFFSET`] with the queue index as data).
    pub fn queue_notifiers(&self) -> &[EventFd] {
        &self.notifiers
    }

    /// The device's interrupt (the engine registers its fd as an irqfd).
    pub fn interrupt(&self) -> &Arc<Interrupt> {
        &self.interrupt
    }

    /// Whether the driver has started the device.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_select as usize)
    }

    /// A guest read of `data.len()` bytes at `offset` in the window.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_SPACE {
            self.device.read_config(offset - CONFIG_SPACE, data);
            return;
        }
        if data.len() != 4 {
            data.fill(0);
            return;
        }
        let queue = self.queues.get(self.queue_select as usize);
        let value = match offset {
            0x00 => MAGIC,
            0x04 => VERSION,
            0x08 => self.device.device_type(),
            0x0c => VENDOR_ID,
            0x10 => half(self.device.features(), self.device_features_select),
            0x34 => queue.map_or(0, |q| u32::from(q.max_size())),
            0x44 => queue.map_or(0, |q| u32::from(q.ready())),
            0x60 => self.interrupt.status(),
            0x70 => self.status,
            0xfc => self.config_generation,
            _ => 0,
        };
        data.copy_from_slice(&value.to_le_bytes());
    }

    /// A guest write of `data` at `offset` in the window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_SPACE {
            self.device.write_config(offset - CONFIG_SPACE, data);
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let value = u32::from_le_bytes(bytes);
        // Queue and feature setup is only allowed before the driver starts the device.
        let setting_up = self.status & status::DRIVER_OK == 0;
        match offset {
            0x14 => self.device_features_select = value,
            0x20 if setting_up => {
                let shift = if self.driver_features_select == 1 {
                    32
                } else {
                    0
                };
                if self.driver_features_select <= 1 {
                    let mask = 0xffff_ffffu64 << shift;
                    self.driver_features =
                        (self.driver_features & !mask) | (u64::from(value) << shift);
                }
            }
            0x24 => self.driver_features_select = value,
            0x30 => self.queue_select = value,
            0x38 if setting_up => {
                if let Some(q) = self.selected_queue() {
                    q.set_size(value as u16);
                }
            }
            // A driver may stop using a queue at any time: it writes 0 and reads
            // QueueReady back until it is 0 (virtio 1.2, 4.2.2.2).
            0x44 if setting_up || value == 0 => {
                if let Some(q) = self.selected_queue() {
                    q.set_ready(value == 1);
                }
            }
            0x50 => {
                if let Some(notifier) = self.notifiers.get(value as usize) {
                    let _ = notifier.write(1);
                }
            }
            0x64 => self.interrupt.acknowledge(value),
            0x70 => self.write_status(value),
            0x80 | 0x84 | 0x90 | 0x94 | 0xa0 | 0xa4 if setting_up => {
                let low = offset & 4 == 0;
                let (lo, hi) = if low {
                    (Some(value), None)
                } else {
                    (None, Some(value))
                };
                if let Some(q) = self.selected_queue() {
                    match offset & !4 {
                        0x80 => q.set_desc_table_address(lo, hi),
                        0x90 => q.set_avail_ring_address(lo, hi),
                        _ => q.set_used_ring_address(lo, hi),
                    }
                }
            }
            _ => {}
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let newly = value & !self.status;
        if newly & status::FEATURES_OK != 0 {
            let offered = self.device.features();
            if self.driver_features & !offered != 0 {
                // The driver accepted a feature we never offered: refuse FEATURES_OK.
                self.status = value & !status::FEATURES_OK;
                return;
            }
            self.device.ack_features(self.driver_features);
        }
        self.status = value;
        if newly & status::DRIVER_OK != 0 && self.status & status::FEATURES_OK != 0 {
            if let Err(error) = self.activate() {
                eprintln!(
                    "virtio: device type {} failed to start: {error}",
                    self.device.device_type()
                );
                self.status |= status::DEVICE_NEEDS_RESET;
            }
        }
    }

    fn activate(&mut self) -> Result<(), ActivateError> {
        let event_idx = self.driver_features
            & (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
            != 0;
        for (i, queue) in self.queues.iter_mut().enumerate() {
            if !queue.is_valid(&self.mem) {
                return Err(ActivateError::InvalidQueue(i));
            }
            queue.set_event_idx(event_idx);
        }
        let notifiers = self
            .notifiers
            .iter()
            .map(EventFd::try_clone)
            .collect::<Result<Vec<_>, _>>()
            .map_err(ActivateError::Worker)?;
        self.device.activate(Activation {
            mem: self.mem.clone(),
            // The device gets its own copies; the transport keeps the registers' state.
            queues: self
                .queues
                .iter()
                .map(|q| Queue::try_from(q.state()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ActivateError::InvalidQueue(0))?,
            notifiers,
            interrupt: Arc::clone(&self.interrupt),
        })?;
        self.activated = true;
        Ok(())
    }

    fn reset(&mut self) {
        self.device.reset();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.interrupt.acknowledge(u32::MAX);
        self.status = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        self.activated = false;
        self.config_generation = self.config_generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::devices::virtio::{VIRTIO_F_VERSION_1, read_config_bytes, testing};

    /// A device that records what the transport did to it.
    #[derive(Default)]
    struct Probe {
        acked: Arc<Mutex<u64>>,
        activated_with: Arc<Mutex<Option<usize>>>,
    }

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            1
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 16]
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | 1 << 5
        }
        fn ack_features(&mut self, features: u64) {
            *self.acked.lock().unwrap() = features;
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            read_config_bytes(&[1, 2, 3, 4, 5, 6], offset, data);
        }
        fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
            *self.activated_with.lock().unwrap() = Some(activation.queues.len());
            Ok(())
        }
        fn reset(&mut self) {
            *self.activated_with.lock().unwrap() = None;
        }
    }

    fn read32(t: &MmioTransport, offset: u64) -> u32 {
        let mut data = [0u8; 4];
        t.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
        t.write(offset, &value.to_le_bytes());
    }

    /// What the probe saw: acknowledged features, and the queue count it started with.
    type Seen = (Arc<Mutex<u64>>, Arc<Mutex<Option<usize>>>);

    fn transport() -> (MmioTransport, Seen) {
        let probe = Probe::default();
        let seen = (probe.acked.clone(), probe.activated_with.clone());
        let t = MmioTransport::new(
            Box::new(probe),
            testing::memory(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        )
        .unwrap();
        (t, seen)
    }

    fn set_up_queue(t: &mut MmioTransport, index: u32, base: u64) {
        write32(t, 0x30, index);
        write32(t, 0x38, 16);
        write32(t, 0x80, base as u32);
        write32(t, 0x90, (base + 0x1000) as u32);
        write32(t, 0xa0, (base + 0x2000) as u32);
        write32(t, 0x44, 1);
    }

    #[test]
    fn identifies_itself() {
        let (t, _) = transport();
        assert_eq!(read32(&t, 0x00), MAGIC);
        assert_eq!(read32(&t, 0x04), 2);
        assert_eq!(read32(&t, 0x08), 1);
        let mut config = [0u8; 2];
        t.read(0x104, &mut config);
        assert_eq!(config, [5, 6]);
    }

    #[test]
    fn negotiates_features_and_activates_on_driver_ok() {
        let (mut t, (acked, activated)) = transport();
        write32(&mut t, 0x14, 1);
        assert_eq!(read32(&t, 0x10), 1, "VERSION_1 is bit 32");
        write32(&mut t, 0x70, status::ACKNOWLEDGE | status::DRIVER);
        write32(&mut t, 0x24, 0);
        write32(&mut t, 0x20, 1 << 5);
        write32(&mut t, 0x24, 1);
        write32(&mut t, 0x20, 1);
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_ne!(read32(&t, 0x70) & status::FEATURES_OK, 0);
        assert_eq!(*acked.lock().unwrap(), VIRTIO_F_VERSION_1 | 1 << 5);
        set_up_queue(&mut t, 0, 0x10000);
        set_up_queue(&mut t, 1, 0x20000);
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(*activated.lock().unwrap(), Some(2));
        assert!(t.is_activated());
        write32(&mut t, 0x70, 0);
        assert_eq!(
            *activated.lock().unwrap(),
            None,
            "status 0 resets the device"
        );
        assert_eq!(read32(&t, 0x44), 0);
    }

    #[test]
    fn refuses_features_it_never_offered() {
        let (mut t, _) = transport();
        write32(&mut t, 0x24, 0);
        write32(&mut t, 0x20, 1 << 7);
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(read32(&t, 0x70) & status::FEATURES_OK, 0);
    }

    #[test]
    fn notify_signals_the_queue_and_ack_clears_the_interrupt() {
        let (mut t, _) = transport();
        write32(&mut t, 0x50, 1);
        assert_eq!(t.queue_notifiers()[1].read().unwrap(), 1);
        assert!(
            t.queue_notifiers()[0].read().is_err(),
            "queue 0 was not notified"
        );
        t.interrupt()
            .raise(crate::devices::virtio::INTERRUPT_VRING)
            .unwrap();
        assert_eq!(read32(&t, 0x60), 1);
        write32(&mut t, 0x64, 1);
        assert_eq!(read32(&t, 0x60), 0);
    }

    #[test]
    fn a_running_queue_can_be_stopped_and_reads_back_stopped() {
        let (mut t, _) = transport();
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        set_up_queue(&mut t, 0, 0x10000);
        set_up_queue(&mut t, 1, 0x20000);
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        write32(&mut t, 0x30, 0);
        write32(&mut t, 0x44, 1);
        write32(&mut t, 0x44, 0);
        assert_eq!(
            read32(&t, 0x44),
            0,
            "the driver polls for 0 after stopping a queue"
        );
        write32(&mut t, 0x38, 8);
        assert_eq!(t.queues[0].size(), 16, "no other queue setup once running");
    }

    #[test]
    fn invalid_queue_is_not_activated() {
        let (mut t, (_, activated)) = transport();
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        // Queue addresses beyond guest memory.
        write32(&mut t, 0x30, 0);
        write32(&mut t, 0x84, 0xffff);
        write32(&mut t, 0x44, 1);
        write32(
            &mut t,
            0x70,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(*activated.lock().unwrap(), None);
        assert_ne!(read32(&t, 0x70) & status::DEVICE_NEEDS_RESET, 0);
    }
}
